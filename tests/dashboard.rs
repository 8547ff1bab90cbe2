//! The endpoints the dashboard reads, on the real binary with known data: the runs
//! table's filters and sorts, the overview, sessions, anomalies, usage as CSV and
//! conditions by state. Every time is relative to now.
mod common;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

const R1: &str = "d1000000000000000000000000000001";
const R2: &str = "d1000000000000000000000000000002";
const R3: &str = "d1000000000000000000000000000003";
const R4: &str = "d1000000000000000000000000000004";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn sid(n: u64) -> String {
    format!("{n:016x}")
}

/// A long answer, cut by the session view.
fn long_answer() -> String {
    format!("Hotel booked{}", ".".repeat(4988))
}

/// Four runs: three in the last two hours (two in session sess-a, one failing in
/// sess-b), one 30 hours ago (the previous period of a 24 h overview).
fn seed(d: &Daemon) -> i64 {
    let now = now_ms();
    let (t1, t2, t3, t4) = (
        now - 100 * MIN,
        now - 90 * MIN,
        now - 80 * MIN,
        now - 30 * HOUR,
    );
    let spans = json!([
        // R1: alpha plans a trip: two LLM calls and a tool call between them.
        {"kind":"agent_run","name":"Plan the trip","trace_id":R1,"span_id":sid(1),"timestamp":t1,"latency_ms":5000,
         "agent_id":"alpha","session_id":"sess-a","input_text":"Book me a flight to Oslo, please","output_text":"Booked"},
        {"provider":"openai","model":"gpt-4o","trace_id":R1,"span_id":sid(2),"parent_span_id":sid(1),"timestamp":t1+100,"latency_ms":1000,
         "agent_id":"alpha","session_id":"sess-a","prompt_tokens":100,"completion_tokens":20,"cost_usd":0.01,
         "input_text":"Book me a flight to Oslo","output_text":"Let me search flights"},
        {"kind":"tool_call","tool_name":"search_flights","tool_call_id":"call_1","trace_id":R1,"span_id":sid(3),"parent_span_id":sid(1),
         "timestamp":t1+1200,"latency_ms":300,"agent_id":"alpha","session_id":"sess-a","input_text":"{\"to\":\"OSL\"}","output_text":"3 flights"},
        {"provider":"openai","model":"gpt-4o","trace_id":R1,"span_id":sid(4),"parent_span_id":sid(1),"timestamp":t1+1600,"latency_ms":2000,
         "agent_id":"alpha","session_id":"sess-a","prompt_tokens":200,"completion_tokens":30,"cost_usd":0.02,
         "input_text":"3 flights","output_text":"Booked flight SK123"},
        // R2: alpha follows up in the same session, on another provider.
        {"kind":"agent_run","name":"Follow up","trace_id":R2,"span_id":sid(1),"timestamp":t2,"latency_ms":3000,
         "agent_id":"alpha","session_id":"sess-a"},
        {"provider":"anthropic","model":"claude-sonnet-4","trace_id":R2,"span_id":sid(2),"parent_span_id":sid(1),"timestamp":t2+50,"latency_ms":900,
         "agent_id":"alpha","session_id":"sess-a","prompt_tokens":50,"completion_tokens":10,"cost_usd":0.005,
         "input_text":"And a hotel?","output_text":long_answer()},
        // R3: beta crashes.
        {"kind":"agent_run","name":"Debug CRASH 100%","trace_id":R3,"span_id":sid(1),"timestamp":t3,"latency_ms":20000,
         "agent_id":"beta","session_id":"sess-b","status":"error"},
        {"provider":"openai","model":"gpt-4o","trace_id":R3,"span_id":sid(2),"parent_span_id":sid(1),"timestamp":t3+10,"latency_ms":100,
         "agent_id":"beta","session_id":"sess-b","prompt_tokens":10,"completion_tokens":0,"cost_usd":0.001,"status":"error","error_type":"rate_limited"},
        // R4: an older, costlier run.
        {"kind":"agent_run","name":"old run","trace_id":R4,"span_id":sid(1),"timestamp":t4,"latency_ms":1000,
         "agent_id":"alpha","session_id":"sess-old"},
        {"provider":"openai","model":"gpt-4o","trace_id":R4,"span_id":sid(2),"parent_span_id":sid(1),"timestamp":t4+10,"latency_ms":500,
         "agent_id":"alpha","session_id":"sess-old","prompt_tokens":1000,"completion_tokens":100,"cost_usd":0.5},
    ]);
    let r = post_json(&d.url("/v1/traces"), &spans);
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 10, Duration::from_secs(10)),
        10
    );
    now
}

fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let r = client().get(d.url(path)).send().unwrap();
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

fn ids(v: &Value, list: &str, key: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {v}"))
        .iter()
        .map(|t| t[key].as_str().unwrap().to_string())
        .collect()
}

/// Every page of `path` (which has a query string), `limit` rows at a time.
fn walk(d: &Daemon, path: &str, list: &str, key: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let p = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={}", urlenc(c)),
            None => format!("{path}&limit={limit}"),
        };
        let (s, r) = get(d, &p);
        assert_eq!(s, 200, "{p}: {r}");
        seen.extend(ids(&r, list, key));
        cursor = r["next_cursor"].as_str().map(String::from);
        if cursor.is_none() {
            return seen;
        }
    }
    panic!("paging did not end: {seen:?}");
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

fn assert_bad(d: &Daemon, path: &str, field: &str) {
    let (s, r) = get(d, path);
    assert_eq!(s, 400, "{path}: {r}");
    assert_eq!(r["field"], field, "{path}: {r}");
}

#[test]
fn runs_table_searches_filters_by_cost_and_sorts_with_paging() {
    let d = Daemon::start(&[]);
    seed(&d);
    for (q, want) in [
        ("q=crash", vec![R3]),
        ("q=CRASH%20100%25", vec![R3]),
        ("q=%25", vec![R3]),
        ("q=_", Vec::<&str>::new()),
        ("q=the%20TRIP", vec![R1]),
        ("min_cost=0.01", vec![R1, R4]),
        ("min_cost=0.02&agent_id=alpha", vec![R1, R4]),
        ("min_cost=0.6", vec![]),
        ("sort=cost", vec![R4, R1, R2, R3]),
        ("sort=cost&order=asc", vec![R3, R2, R1, R4]),
        ("sort=duration", vec![R3, R1, R2, R4]),
        ("sort=duration&order=asc", vec![R4, R2, R1, R3]),
        ("sort=start&order=asc", vec![R4, R1, R2, R3]),
        ("order=desc", vec![R3, R2, R1, R4]),
        ("status=error&sort=cost", vec![R3]),
    ] {
        let (s, r) = get(&d, &format!("/v1/traces?{q}"));
        assert_eq!(s, 200, "{q}: {r}");
        assert_eq!(ids(&r, "traces", "trace_id"), want, "{q}");
        // One row at a time, the cursor walks the same order.
        assert_eq!(
            walk(&d, &format!("/v1/traces?{q}"), "traces", "trace_id", 1),
            want,
            "{q} paged"
        );
    }
    // Rows keep their fields.
    let (_, r) = get(&d, "/v1/traces?sort=cost&limit=1");
    let t = &r["traces"][0];
    assert_eq!(t["trace_id"], R4);
    assert!(close(&t["cost_usd"], 0.5));
    assert_eq!(t["name"], "old run");
    assert_eq!(t["llm_calls"], 1);
    // A cursor from one sort is refused by another when it cannot be read.
    let (_, r) = get(&d, "/v1/traces?sort=cost&limit=1");
    let c = r["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(c, format!("0.5.{R4}"));
    for (bad, field) in [
        ("sort=name", "sort"),
        ("order=up", "order"),
        ("min_cost=-1", "min_cost"),
        ("min_cost=x", "min_cost"),
        ("sort=duration&cursor=0.5.abc", "cursor"),
    ] {
        assert_bad(&d, &format!("/v1/traces?{bad}"), field);
    }
}

#[test]
fn overview_totals_match_usage_and_the_previous_period() {
    let d = Daemon::start(&[]);
    let now = seed(&d);
    let (s, o) = get(&d, "/v1/overview");
    assert_eq!(s, 200, "{o}");
    let (from, to) = (o["from_ms"].as_i64().unwrap(), o["to_ms"].as_i64().unwrap());
    assert_eq!(to - from, 24 * HOUR, "{o}");
    assert!(to >= now && to - now <= HOUR && to % HOUR == 0, "{o}");
    assert_eq!(o["prev_to_ms"], from);
    assert_eq!(o["prev_from_ms"], from - 24 * HOUR);
    assert_eq!(o["bucket"], "hour");
    let cur = &o["current"];
    assert_eq!(cur["runs"], 3, "{o}");
    assert_eq!(cur["llm_calls"], 4);
    assert_eq!(cur["tool_calls"], 1);
    assert_eq!(cur["errors"], 1);
    assert!(close(&cur["error_rate"], 0.25));
    assert_eq!(cur["input_tokens"], 360);
    assert_eq!(cur["output_tokens"], 60);
    assert_eq!(cur["total_tokens"], 420);
    assert_eq!(cur["cache_read_tokens"], 0);
    assert!(close(&cur["cost_usd"], 0.036), "{cur}");
    let prev = &o["previous"];
    assert_eq!(prev["runs"], 1, "{o}");
    assert_eq!(prev["llm_calls"], 1);
    assert_eq!(prev["tool_calls"], 0);
    assert_eq!(prev["errors"], 0);
    assert_eq!(prev["input_tokens"], 1000);
    assert!(close(&prev["cost_usd"], 0.5));

    // The same numbers as /v1/usage over the same ranges.
    for (period, a, b) in [("current", from, to), ("previous", from - 24 * HOUR, from)] {
        let (_, u) = get(&d, &format!("/v1/usage?from={a}&to={b}"));
        let t = &u["totals"];
        let o = &o[period];
        assert_eq!(o["llm_calls"], t["calls"], "{period}");
        assert_eq!(o["errors"], t["errors"], "{period}");
        for k in ["input_tokens", "output_tokens", "total_tokens"] {
            assert_eq!(o[k], t[k], "{period} {k}");
        }
        assert!(close(&o["cost_usd"], t["cost_usd"].as_f64().unwrap()));
    }

    // Cost by model: one point per hour, summing to the total; errors by hour.
    let series = o["cost_series"].as_array().unwrap();
    let keys: Vec<&str> = series.iter().map(|s| s["key"].as_str().unwrap()).collect();
    assert_eq!(keys, vec!["gpt-4o", "claude-sonnet-4"], "costliest first");
    let mut total = 0.0;
    for s in series {
        let pts = s["points"].as_array().unwrap();
        assert_eq!(pts.len(), 24);
        assert_eq!(pts[0][0], from);
        total += pts.iter().map(|p| p[1].as_f64().unwrap()).sum::<f64>();
    }
    assert!((total - 0.036).abs() < 1e-9);
    let errs = o["error_series"].as_array().unwrap();
    assert_eq!(errs.len(), 24);
    let (e, c): (i64, i64) = errs.iter().fold((0, 0), |(e, c), p| {
        (e + p[1].as_i64().unwrap(), c + p[2].as_i64().unwrap())
    });
    assert_eq!((e, c), (1, 4));
    // The failing call's hour holds the error.
    let t3_hour = (now - 80 * MIN) - (now - 80 * MIN).rem_euclid(HOUR);
    assert!(
        errs.iter().any(|p| p[0] == t3_hour && p[1] == 1),
        "{errs:?}"
    );

    // By agent, and a 30-day range in days.
    let (_, o) = get(&d, "/v1/overview?by=agent");
    let keys: Vec<&str> = o["cost_series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["alpha", "beta"]);
    let (_, o) = get(
        &d,
        &format!("/v1/overview?from={}&to={now}", now - 30 * 24 * HOUR),
    );
    assert_eq!(o["bucket"], "day");
    assert_eq!(o["current"]["runs"], 4);
    assert!(close(&o["current"]["cost_usd"], 0.536));
    let pts = o["cost_series"][0]["points"].as_array().unwrap();
    assert!((30..=31).contains(&pts.len()), "{}", pts.len());

    // No agent watched; nothing open; pricing and budgets present.
    assert_eq!(o["agent"]["watched"], false);
    assert!(o["agent"]["up"].is_null());
    assert_eq!(o["conditions"], json!([]));
    assert!(o["budgets"].is_array());
    assert!(o["pricing"]["as_of"].is_string());
    assert!(o["pricing"]["unpriced_models"].is_array());

    assert_bad(&d, "/v1/overview?by=user", "by");
    assert_bad(&d, "/v1/overview?from=soon", "from");
    assert_bad(
        &d,
        &format!("/v1/overview?from={now}&to={}", now - HOUR),
        "from",
    );
}

#[test]
fn sessions_list_and_one_session_as_a_conversation() {
    let d = Daemon::start(&[]);
    let now = seed(&d);
    let (s, r) = get(&d, "/v1/sessions");
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        ids(&r, "sessions", "session_id"),
        vec!["sess-b", "sess-a", "sess-old"],
        "latest run first"
    );
    let a = &r["sessions"][1];
    assert_eq!(a["agent_id"], "alpha");
    assert_eq!(a["runs"], 2);
    assert_eq!(a["llm_calls"], 3);
    assert_eq!(a["tool_calls"], 1);
    assert_eq!(a["input_tokens"], 350);
    assert_eq!(a["output_tokens"], 60);
    assert_eq!(a["total_tokens"], 410);
    assert!(close(&a["cost_usd"], 0.035), "{a}");
    assert_eq!(a["errors"], 0);
    assert_eq!(a["start_ms"], now - 100 * MIN);
    assert_eq!(a["end_ms"], now - 90 * MIN + 3000);
    assert_eq!(r["sessions"][0]["errors"], 2, "the run and its call failed");
    assert_eq!(
        walk(&d, "/v1/sessions?x=1", "sessions", "session_id", 1),
        vec!["sess-b", "sess-a", "sess-old"]
    );
    let (_, r) = get(&d, "/v1/sessions?agent_id=beta");
    assert_eq!(ids(&r, "sessions", "session_id"), vec!["sess-b"]);
    let (_, r) = get(&d, &format!("/v1/sessions?from={}", now - 2 * HOUR));
    assert_eq!(ids(&r, "sessions", "session_id"), vec!["sess-b", "sess-a"]);

    // One session: its runs oldest first, each as messages.
    let (s, r) = get(&d, "/v1/sessions/sess-a");
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["session"], a.clone());
    assert_eq!(ids(&r, "turns", "trace_id"), vec![R1, R2]);
    let t1 = &r["turns"][0];
    assert_eq!(t1["name"], "Plan the trip");
    assert_eq!(t1["status"], "ok");
    assert_eq!(t1["input_tokens"], 300);
    assert!(close(&t1["cost_usd"], 0.03));
    let m = t1["messages"].as_array().unwrap();
    let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        vec!["user", "assistant", "tool", "assistant"],
        "{m:#?}"
    );
    assert_eq!(m[0]["text"], "Book me a flight to Oslo");
    assert_eq!(m[0]["span_id"], sid(2));
    assert_eq!(m[0]["text_truncated"], false);
    assert_eq!(m[1]["text"], "Let me search flights");
    assert_eq!(m[1]["model"], "gpt-4o");
    assert_eq!(m[1]["input_tokens"], 100);
    assert_eq!(m[1]["output_tokens"], 20);
    assert!(close(&m[1]["cost_usd"], 0.01));
    assert_eq!(m[1]["time_ms"], now - 100 * MIN + 100);
    assert_eq!(m[2]["tool_name"], "search_flights");
    assert_eq!(m[2]["tool_call_id"], "call_1");
    assert_eq!(m[2]["arguments"], "{\"to\":\"OSL\"}");
    assert_eq!(m[2]["result"], "3 flights");
    assert_eq!(m[3]["text"], "Booked flight SK123");
    let m2 = r["turns"][1]["messages"].as_array().unwrap();
    assert_eq!(m2[0]["role"], "user");
    assert_eq!(m2[0]["text"], "And a hotel?");
    assert_eq!(m2[1]["role"], "assistant");
    assert_eq!(m2[1]["model"], "claude-sonnet-4");
    let text = m2[1]["text"].as_str().unwrap();
    assert_eq!(text.chars().count(), 4000);
    assert!(text.starts_with("Hotel booked"));
    assert_eq!(m2[1]["text_truncated"], true);
    assert_eq!(m2[1]["text_length"], 5000);

    // Paged by run.
    let (_, p1) = get(&d, "/v1/sessions/sess-a?limit=1");
    assert_eq!(ids(&p1, "turns", "trace_id"), vec![R1]);
    let c = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = get(&d, &format!("/v1/sessions/sess-a?limit=1&cursor={c}"));
    assert_eq!(ids(&p2, "turns", "trace_id"), vec![R2]);
    assert!(p2["next_cursor"].is_null());

    let (s, _) = get(&d, "/v1/sessions/nope");
    assert_eq!(s, 404);
    assert_bad(&d, "/v1/sessions/sess-a?limit=201", "limit");
    assert_bad(&d, "/v1/sessions/sess-a?cursor=zzz", "cursor");
    assert_bad(&d, "/v1/sessions?cursor=zzz", "cursor");
    assert_bad(&d, "/v1/sessions?from=x", "from");
}

#[test]
fn an_otlp_session_and_a_run_answered_without_llm_text() {
    let d = Daemon::start(&[]);
    let now = now_ms();
    let ns = |ms: i64| (ms * 1_000_000).to_string();
    let attr = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
    let int = |k: &str, v: i64| json!({"key": k, "value": {"intValue": v.to_string()}});
    let t = "e2000000000000000000000000000001";
    // An OTLP run whose session is gen_ai.conversation.id.
    let otlp = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": t, "spanId": sid(1), "name": "invoke_agent gamma", "kind": 1,
         "startTimeUnixNano": ns(now - 5000), "endTimeUnixNano": ns(now - 3000),
         "attributes": [attr("gen_ai.operation.name", "invoke_agent"), attr("gen_ai.agent.name", "gamma"),
                        attr("gen_ai.conversation.id", "conv-9")]},
        {"traceId": t, "spanId": sid(2), "parentSpanId": sid(1), "name": "chat gpt-4o-mini", "kind": 3,
         "startTimeUnixNano": ns(now - 4900), "endTimeUnixNano": ns(now - 4400),
         "attributes": [attr("gen_ai.operation.name", "chat"), attr("gen_ai.provider.name", "openai"),
                        attr("gen_ai.request.model", "gpt-4o-mini"), attr("gen_ai.conversation.id", "conv-9"),
                        attr("gen_ai.prompt", "What is 2+2?"), attr("gen_ai.completion", "4"),
                        int("gen_ai.usage.input_tokens", 5), int("gen_ai.usage.output_tokens", 1)]}
    ]}]}]});
    let r = post_json(&d.url("/v1/traces"), &otlp);
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
    // A native run whose LLM call carries no text: the run's input and output are the turn.
    let n = "e2000000000000000000000000000002";
    let native = json!([
        {"kind":"agent_run","name":"quick","trace_id":n,"span_id":sid(1),"timestamp":now-2000,"latency_ms":1000,
         "agent_id":"delta","session_id":"sess-n","input_text":"Say hi","output_text":"hi"},
        {"provider":"openai","model":"gpt-4o-mini","trace_id":n,"span_id":sid(2),"parent_span_id":sid(1),
         "timestamp":now-1900,"latency_ms":300,"agent_id":"delta","session_id":"sess-n","prompt_tokens":3,"completion_tokens":1},
    ]);
    assert_eq!(post_json(&d.url("/v1/traces"), &native).status(), 202);
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 4, Duration::from_secs(10)),
        4
    );
    let (_, r) = get(&d, "/v1/sessions");
    assert_eq!(ids(&r, "sessions", "session_id"), vec!["sess-n", "conv-9"]);
    assert_eq!(r["sessions"][1]["input_tokens"], 5);
    let (_, s) = get(&d, "/v1/sessions/conv-9");
    let m = s["turns"][0]["messages"].as_array().unwrap();
    let said: Vec<(&str, &str)> = m
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap(),
                m["text"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        said,
        vec![("user", "What is 2+2?"), ("assistant", "4")],
        "{s}"
    );
    assert_eq!(m[1]["model"], "gpt-4o-mini");
    let (_, s) = get(&d, "/v1/sessions/sess-n");
    let m = s["turns"][0]["messages"].as_array().unwrap();
    let said: Vec<(&str, Option<&str>)> = m
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["text"].as_str()))
        .collect();
    assert_eq!(
        said,
        vec![
            ("user", Some("Say hi")),
            ("assistant", None),
            ("assistant", Some("hi"))
        ],
        "{s}"
    );
    assert_eq!(m[0]["span_id"], sid(1));
}

/// OpenClaw's recorded plugin events (tests/fixtures/openclaw, from the real gateway):
/// its model calls carry no text; the prompt and the answer arrive on the run attempt
/// (`openclaw.harness`), and the session view shows them as the conversation.
#[test]
fn an_openclaw_session_shows_the_prompt_and_answer_of_each_attempt() {
    let d = Daemon::start(&[("OCT_LOG_PATH", "off"), ("OCT_OPENCLAW_STATE_DIR", "off")]);
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/openclaw/bridge_events.jsonl"),
    )
    .unwrap();
    let r = client()
        .post(d.url("/v1/openclaw/events"))
        .header("content-type", "application/x-ndjson")
        .body(fixture_at_now(&text))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let sql = "SELECT count(*) FROM traces WHERE hex(trace_id) = upper('aaba956574194340ee2c2c3950ac5107') AND llm_calls = 2 AND tool_calls = 1";
    assert_eq!(d.wait_count(sql, 1, Duration::from_secs(10)), 1);
    let said = |s: &Value| -> Vec<(String, Option<String>)> {
        s["turns"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["messages"].as_array().unwrap().clone())
            .map(|m| {
                let text = m["text"].as_str().map(str::to_string);
                let tool = m["tool_name"].as_str().map(|t| format!("tool {t}"));
                (m["role"].as_str().unwrap().to_string(), text.or(tool))
            })
            .collect()
    };
    let owned = |v: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
        v.iter()
            .map(|(r, t)| (r.to_string(), t.map(str::to_string)))
            .collect()
    };
    // A turn with a tool call: the prompt, the call that asked for the tool, the tool,
    // and the answer on the last call.
    let (status, s) = get(&d, "/v1/sessions/6cbd573f-cf55-40e4-9f5a-2951a972e3f6");
    assert_eq!(status, 200);
    assert_eq!(
        said(&s),
        owned(&[
            (
                "user",
                Some("[Sat 2026-11-21 09:36 UTC] Please use a TOOL to list files")
            ),
            ("assistant", None),
            ("tool", Some("tool ls")),
            (
                "assistant",
                Some("Hello from the fake LLM. The answer is 42.")
            ),
        ]),
        "{s}"
    );
    let m = &s["turns"][0]["messages"];
    assert_eq!(m[3]["model"], "fake-model");
    assert_eq!(m[3]["output_tokens"], 17);
    assert_eq!(m[3]["text_truncated"], false);
    // A plain chat turn.
    let (_, s) = get(&d, "/v1/sessions/bfc88299-c9e1-4bc9-aebb-fbaf91127c21");
    assert_eq!(
        said(&s),
        owned(&[
            ("user", Some("[Sat 2026-11-21 09:19 UTC] Say hi again")),
            (
                "assistant",
                Some("Hello from the fake LLM. The answer is 42.")
            ),
        ]),
        "{s}"
    );
    // The failing run: every attempt's prompt in order, each answered by nothing.
    let (_, s) = get(&d, "/v1/sessions/6acea7b1-e1c0-4f74-9145-b9bb6c1d1691");
    let msgs = said(&s);
    let users: Vec<&str> = msgs
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(users.len(), 8, "one per attempt: {s}");
    assert!(users[0].ends_with("Please FAIL now"), "{users:?}");
    assert!(users[1..].iter().all(|u| u.contains("Queued user message")));
    assert!(
        msgs.iter().all(|(r, t)| r != "assistant" || t.is_none()),
        "{msgs:?}"
    );
}

#[test]
fn anomalies_list_the_runs_baselines_flag() {
    let d = Daemon::start(&[("OCT_BASELINE_SETTLE", "100ms")]);
    let now = now_ms();
    let base = now - 3 * HOUR;
    let run = |i: u64, start: i64, calls: u64, cost: f64| {
        let trace = format!("{:032x}", 0xa0_0000 + i);
        let mut spans = vec![json!({
            "kind":"agent_run","name":format!("nightly job {i}"),"agent_id":"cron","trace_id":trace,
            "span_id":sid(1),"timestamp":start,"latency_ms":10_000})];
        for c in 0..calls {
            spans.push(json!({
                "provider":"openai","model":"gpt-4o","agent_id":"cron","trace_id":trace,
                "span_id":sid(2 + c),"parent_span_id":sid(1),"timestamp":start + 10 + c as i64,
                "latency_ms":50,"prompt_tokens":900,"completion_tokens":100,"cost_usd":cost}));
        }
        let r = post_json(&d.url("/v1/traces"), &json!(spans));
        assert_eq!(r.status(), 202);
        trace
    };
    for i in 0..15 {
        run(i, base + i as i64 * MIN, 3, 0.01);
    }
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 60, Duration::from_secs(10)),
        60
    );
    std::thread::sleep(Duration::from_millis(500));
    let odd = run(99, base + 30 * MIN, 3, 1.0);
    let mut found = Value::Null;
    for _ in 0..100 {
        let (s, r) = get(&d, "/v1/anomalies");
        assert_eq!(s, 200, "{r}");
        if !r["anomalies"].as_array().unwrap().is_empty() {
            found = r;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = found["anomalies"]
        .as_array()
        .expect("an anomaly within 10 s");
    assert_eq!(list.len(), 1, "{found}");
    let a = &list[0];
    assert_eq!(a["trace_id"], odd.as_str());
    assert_eq!(a["agent_id"], "cron");
    assert_eq!(a["run_name"], "nightly job 99");
    assert!((a["time_ms"].as_i64().unwrap() - now_ms()).abs() < 60_000);
    let cost = a["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "cost_usd")
        .unwrap_or_else(|| panic!("{a}"));
    assert!(close(&cost["value"], 3.0), "{cost}");
    assert!(close(&cost["median"], 0.03), "{cost}");
    assert!(close(&cost["deviation_pct"], 9900.0), "{cost}");
    assert!(cost["z"].as_f64().unwrap() > 3.5);
    assert!(cost["mad"].is_number());
    let (_, r) = get(&d, "/v1/anomalies?agent_id=other");
    assert_eq!(r["anomalies"], json!([]));
    let (_, r) = get(&d, &format!("/v1/anomalies?from={}", now_ms() + HOUR));
    assert_eq!(r["anomalies"], json!([]));
    assert_bad(&d, "/v1/anomalies?limit=0", "limit");
    assert_bad(&d, "/v1/anomalies?cursor=1", "cursor");
}

#[test]
fn usage_as_csv_holds_the_json_rows() {
    let d = Daemon::start(&[]);
    seed(&d);
    let q = "group_by=model,agent&bucket=hour&from=0";
    let (_, j) = get(&d, &format!("/v1/usage?{q}"));
    let r = client()
        .get(d.url(&format!("/v1/usage?{q}&format=csv")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let body = r.text().unwrap();
    let lines: Vec<&str> = body.lines().collect();
    let head: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(
        &head[..6],
        &[
            "bucket_start",
            "agent_id",
            "model",
            "calls",
            "errors",
            "input_tokens"
        ]
    );
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{j}");
    assert_eq!(lines.len(), 1 + rows.len());
    for (line, row) in lines[1..].iter().zip(rows) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), head.len(), "{line}");
        for (h, v) in head.iter().zip(&f) {
            let want = match *h {
                "latency_ms_mean" => row["latency_ms"]["mean"].clone(),
                "latency_ms_p50" => row["latency_ms"]["p50"].clone(),
                "latency_ms_p95" => row["latency_ms"]["p95"].clone(),
                "latency_ms_p99" => row["latency_ms"]["p99"].clone(),
                k => row[k].clone(),
            };
            match want {
                Value::Null => assert_eq!(*v, "", "{h}"),
                Value::String(s) => assert_eq!(*v, s, "{h}"),
                Value::Number(n) => {
                    assert!(
                        (v.parse::<f64>().unwrap() - n.as_f64().unwrap()).abs() < 1e-12,
                        "{h}: {v} vs {n}"
                    )
                }
                other => panic!("{h}: {other}"),
            }
        }
    }
    assert_bad(&d, "/v1/usage?format=xml", "format");
    // Without percentiles: the same sums and mean, no p50/p95/p99.
    let (_, lite) = get(&d, &format!("/v1/usage?{q}&percentiles=false"));
    let lite_rows = lite["rows"].as_array().unwrap();
    assert_eq!(lite_rows.len(), rows.len());
    for (a, b) in lite_rows.iter().zip(rows) {
        for k in [
            "bucket_start",
            "model",
            "agent_id",
            "calls",
            "total_tokens",
            "cost_usd",
        ] {
            assert_eq!(a[k], b[k], "{k}");
        }
        assert_eq!(a["latency_ms"]["mean"], b["latency_ms"]["mean"]);
        assert!(b["latency_ms"]["p95"].is_number());
        assert!(a["latency_ms"]["p95"].is_null());
    }
    assert_bad(&d, "/v1/usage?percentiles=maybe", "percentiles");
}

#[test]
fn errors_filtered_by_condition_state_and_open_conditions_in_the_overview() {
    // Only the LLM burst detector on: three rate-limited calls within a minute open a condition.
    let d = Daemon::start(&[
        (
            "OCT_HOST_DISABLE",
            "cpu,memory,cgroup,disk,diskio,dns,network,processes,self",
        ),
        ("OCT_METRICS_INTERVAL", "200ms"),
        ("OCT_LLM_BURST_COUNT", "3"),
        ("OCT_LLM_BURST_WINDOW", "1m"),
    ]);
    let span = json!({"provider": "openai", "model": "gpt-4o", "status": "rate_limited"});
    let r = post_json(&d.url("/v1/traces"), &json!([span, span, span, span]));
    assert_eq!(r.status(), 202);
    let e = json!({"error_type":"old_disk","message":"was full","category":"disk",
                   "metadata":{"state":"resolved"}});
    assert_eq!(post_json(&d.url("/v1/errors"), &e).status(), 202);
    let mut open = Value::Null;
    for _ in 0..100 {
        let (_, r) = get(&d, "/v1/errors?state=open");
        if !r["errors"].as_array().unwrap().is_empty() {
            open = r;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let errs = open["errors"].as_array().expect("an open condition");
    assert_eq!(errs.len(), 1, "{open}");
    assert_eq!(errs[0]["name"], "llm_rate_limited");
    assert_eq!(errs[0]["attributes"]["state"], "active");
    let (_, r) = get(&d, "/v1/errors?state=resolved");
    assert_eq!(
        r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["old_disk"]
    );
    let (_, o) = get(&d, "/v1/overview");
    let c = o["conditions"].as_array().unwrap();
    assert_eq!(c.len(), 1, "{o}");
    assert_eq!(c[0]["name"], "llm_rate_limited");
    assert_eq!(c[0]["category"], "llm");
    assert_eq!(c[0]["id"], errs[0]["id"]);
    assert!(c[0]["since_ms"].as_i64().unwrap() > now_ms() - 60_000);
    assert_eq!(o["current"]["errors"], 4);
    assert_bad(&d, "/v1/errors?state=maybe", "state");
}

#[test]
fn overview_shows_the_watched_agent_process() {
    // A number no other process has on its command line.
    let tag = format!("{}.{}", 800_000 + std::process::id() % 99_999, 3);
    let pattern = format!("sleep {tag}");
    let d = Daemon::start(&[
        (
            "OCT_HOST_DISABLE",
            "cpu,memory,cgroup,disk,diskio,dns,network,processes,llm",
        ),
        ("OCT_AGENT_PROCESS", &pattern),
        ("OCT_AGENT_POLL_INTERVAL", "100ms"),
        // The agent's figures are written with each host sample (the sidecar's own, here).
        ("OCT_METRICS_INTERVAL", "300ms"),
    ]);
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let agent = Reaped(
        std::process::Command::new("sleep")
            .arg(&tag)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut o = Value::Null;
    for _ in 0..100 {
        o = get(&d, "/v1/overview").1;
        if o["agent"]["up"] == true && o["agent"]["rss_bytes"].is_number() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = &o["agent"];
    assert_eq!(a["watched"], true, "{o}");
    assert_eq!(a["up"], true, "{o}");
    assert_eq!(a["pid"], agent.0.id(), "{a}");
    assert!(a["rss_bytes"].as_f64().unwrap() > 0.0, "{a}");
    assert_eq!(a["restarts"].as_f64(), Some(0.0), "{a}");
    assert!(
        (a["last_seen_ms"].as_i64().unwrap() - now_ms()).abs() < 10_000,
        "{a}"
    );
}
