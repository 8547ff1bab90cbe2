//! Model calls reported in pieces (OpenClaw's start hook, end hook and assistant
//! message, shaped as in tests/fixtures/openclaw/bridge_events.jsonl) against the real
//! binary: whatever order the pieces arrive in, `/v1/usage`, `/metrics` and
//! `/v1/budget` count each call's tokens and cost exactly once, equal to the trace
//! summaries, and re-deliveries change nothing.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const OFF: [(&str, &str); 3] = [
    ("OCT_LOG_PATH", "off"),
    ("OCT_OPENCLAW_STATE_DIR", "off"),
    ("OCT_BUDGETS", "global/day=$100, global/month=10M tokens"),
];

/// One model call's three pieces: started (model, no provider, no usage), ended
/// (provider, end time, outcome), and the assistant message (usage and reported cost).
struct Call {
    trace: String,
    n: u64,
    error: bool,
}

impl Call {
    fn input(&self) -> i64 {
        100 * self.n as i64 + 7
    }
    fn output(&self) -> i64 {
        10 * self.n as i64 + 1
    }
    fn cache_read(&self) -> i64 {
        5 * self.n as i64
    }
    fn cost(&self) -> f64 {
        0.001 * self.n as f64 + 0.0005
    }
    fn span(&self) -> String {
        format!("{:016x}", 0x5f35_4592_3d8b_0000u64 + self.n)
    }
    fn run(&self) -> String {
        format!("chatcmpl_run_{}", self.n)
    }
    fn ctx(&self) -> Value {
        json!({
            "runId": self.run(),
            "agentId": "main",
            "sessionId": "6cbd573f-cf55-40e4-9f5a-2951a972e3f6",
            "sessionKey": "agent:main:openai:3e598f30",
            "trace": {"traceId": self.trace, "spanId": self.span(), "parentSpanId": "44092c3cc721315b", "traceFlags": "01"},
        })
    }
    fn pieces(&self, now_ms: i64) -> [Value; 3] {
        let t0 = now_ms - 60_000 + self.n as i64 * 1_000;
        let call_id = format!("{}:model:1", self.run());
        let started = json!({
            "kind": "hook:model_call_started", "ts": t0,
            "event": {"runId": self.run(), "callId": call_id, "model": "fake-model",
                "api": "openai-completions", "transport": "auto"},
            "ctx": self.ctx(),
        });
        let ended = json!({
            "kind": "hook:model_call_ended", "ts": t0 + 800,
            "event": {"runId": self.run(), "callId": call_id, "provider": "fake",
                "model": "fake-model", "durationMs": 800,
                "outcome": if self.error { "error" } else { "completed" }},
            "ctx": self.ctx(),
        });
        let mut call = self.ctx();
        call["callId"] = json!(call_id);
        let message = json!({
            "kind": "hook:before_message_write", "ts": t0 + 810,
            "event": {"message": {
                "role": "assistant", "provider": "fake", "model": "fake-model",
                "usage": {"input": self.input(), "output": self.output(), "cacheRead": self.cache_read(),
                    "cacheWrite": 0, "totalTokens": self.input() + self.output() + self.cache_read(),
                    "cost": {"total": self.cost()}},
                "stopReason": "stop", "timestamp": t0 + 790, "responseId": format!("chatcmpl-{}", self.n),
            }},
            "ctx": {"agentId": "main", "call": call},
        });
        [started, ended, message]
    }
}

fn post(d: &Daemon, items: &[Value]) {
    let body: String = items.iter().map(|v| format!("{v}\n")).collect();
    let r = client()
        .post(d.url("/v1/openclaw/events"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
}

fn get(d: &Daemon, path: &str) -> Value {
    client().get(d.url(path)).send().unwrap().json().unwrap()
}

/// Sums of a Prometheus counter's samples whose line contains `filter`.
fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Debug, Default, PartialEq)]
struct Totals {
    calls: i64,
    input: i64,
    output: i64,
    cache_read: i64,
    cost: f64,
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn pieces_in_any_order_count_tokens_and_cost_once_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), &OFF);
    // The pieces are dated up to a minute ago and counted in today's budget.
    let now_ms = now_ms_with_today_reaching_back(60_000);
    let traces = [
        "aaba956574194340ee2c2c3950ac5101",
        "aaba956574194340ee2c2c3950ac5102",
        "aaba956574194340ee2c2c3950ac5103",
    ];
    // Two calls per trace; the last one fails.
    let calls: Vec<Call> = (0..6)
        .map(|n| Call {
            trace: traces[n as usize / 2].to_string(),
            n: n + 1,
            error: n == 5,
        })
        .collect();
    // Orders: started/ended/message; message/ended/started; ended/message/started;
    // each piece in its own batch, or the whole call in one batch.
    let orders: [[usize; 3]; 3] = [[0, 1, 2], [2, 1, 0], [1, 2, 0]];
    let mut all = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        let p = c.pieces(now_ms);
        let ordered: Vec<Value> = orders[i % 3].iter().map(|&k| p[k].clone()).collect();
        if i % 2 == 0 {
            for piece in &ordered {
                post(&d, std::slice::from_ref(piece));
            }
        } else {
            post(&d, &ordered);
        }
        all.extend(ordered);
    }
    // OpenClaw reports input without the cached tokens; stored, input counts them (GenAI).
    let want_input: i64 = calls.iter().map(|c| c.input() + c.cache_read()).sum();
    let sql = format!(
        "SELECT count(*) FROM traces WHERE input_tokens > 0 AND llm_calls = 2 AND (SELECT sum(input_tokens) FROM traces) = {want_input}"
    );
    assert_eq!(d.wait_count(&sql, 3, Duration::from_secs(10)), 3);

    let check = |d: &Daemon, counters: bool| {
        // What the trace summaries say.
        let mut want = Totals::default();
        for t in traces {
            let detail = get(d, &format!("/v1/traces/{t}"));
            let s = detail.get("trace").unwrap_or(&detail);
            want.calls += s["llm_calls"].as_i64().unwrap();
            want.input += s["input_tokens"].as_i64().unwrap();
            want.output += s["output_tokens"].as_i64().unwrap();
            want.cache_read += s["cache_read_tokens"].as_i64().unwrap();
            want.cost += s["cost_usd"].as_f64().unwrap();
        }
        let sent = Totals {
            calls: calls.len() as i64,
            input: want_input,
            output: calls.iter().map(Call::output).sum(),
            cache_read: calls.iter().map(Call::cache_read).sum(),
            cost: calls.iter().map(Call::cost).sum(),
        };
        assert_eq!(
            (want.calls, want.input, want.output, want.cache_read),
            (sent.calls, sent.input, sent.output, sent.cache_read)
        );
        assert!(close(want.cost, sent.cost), "{want:?} vs {sent:?}");

        // /v1/usage: the rollups.
        let u = get(d, "/v1/usage?group_by=provider,model");
        let tot = &u["totals"];
        assert_eq!(tot["calls"], want.calls, "{u}");
        assert_eq!(tot["errors"], 1, "{u}");
        assert_eq!(tot["input_tokens"], want.input, "{u}");
        assert_eq!(tot["output_tokens"], want.output, "{u}");
        assert_eq!(tot["cache_read_tokens"], want.cache_read, "{u}");
        assert_eq!(tot["unpriced_calls"], 0, "{u}");
        assert!(close(tot["cost_usd"].as_f64().unwrap(), want.cost), "{u}");
        // Every call landed under the provider and model it gained; nothing is left under "".
        let rows = u["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{u}");
        assert_eq!(rows[0]["provider"], "fake");
        assert_eq!(rows[0]["model"], "fake-model");

        // /v1/budget: today's and this month's spending.
        let b = get(d, "/v1/budget");
        let budgets = b["budgets"].as_array().or(b.as_array()).unwrap().clone();
        let usd = budgets.iter().find(|x| x["unit"] == "usd").unwrap();
        let tok = budgets.iter().find(|x| x["unit"] == "tokens").unwrap();
        assert!(close(usd["spent"].as_f64().unwrap(), want.cost), "{b}");
        assert_eq!(usd["unpriced_calls"], 0, "{b}");
        let total_tokens: i64 = calls
            .iter()
            .map(|c| c.input() + c.output() + c.cache_read())
            .sum();
        assert_eq!(tok["spent"].as_f64().unwrap(), total_tokens as f64, "{b}");
        // /metrics: counters (they start from zero in a new process, as Prometheus expects).
        if !counters {
            return;
        }
        let text = client()
            .get(d.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let tokens = |ty: &str| {
            metric_sum(
                &text,
                "openclaw_trace_llm_tokens_total",
                &format!("type=\"{ty}\""),
            )
        };
        assert_eq!(tokens("input"), want.input as f64, "{text}");
        assert_eq!(tokens("output"), want.output as f64);
        assert_eq!(tokens("cache_read"), want.cache_read as f64);
        assert!(close(
            metric_sum(&text, "openclaw_trace_llm_cost_usd_total", ""),
            want.cost
        ));
        assert_eq!(
            metric_sum(&text, "openclaw_trace_llm_calls_total", ""),
            want.calls as f64
        );
        assert_eq!(
            metric_sum(&text, "openclaw_trace_llm_calls_total", "status=\"error\""),
            1.0,
            "{text}"
        );
        assert!(
            !text.lines().any(
                |l| l.starts_with("openclaw_trace_llm_calls") && l.contains("status=\"unset\"")
            ),
            "a started call is not counted unset: {text}"
        );
    };
    check(&d, true);

    // Every piece again, in one batch and piece by piece: nothing changes.
    post(&d, &all);
    for piece in all.iter().rev() {
        post(&d, std::slice::from_ref(piece));
    }
    d.wait_count(
        "SELECT count(*) FROM spans WHERE kind = 'llm_call'",
        6,
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_millis(500));
    check(&d, true);

    // After a restart the budgets load from the rollups: the same figures.
    d.stop();
    let d2 = Daemon::start_in(dir.path(), &OFF);
    check(&d2, false);
}
