//! The OpenClaw views (`/v1/openclaw/*` and `openclaw-trace openclaw ...`): the real
//! daemon fed plugin events shaped as OpenClaw 2026.9.6 sends them (hook contexts with
//! `trigger` and `channel`, `model.call.completed` with usage and cost, `model.usage`
//! with the context window) and the recorded gateway log (fallback decisions, retries),
//! all moved to now.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const RETRY_TRACE: &str = "590290b6c4e5f2264479c9bd422f332c";

struct RunSpec<'a> {
    trace: String,
    agent: &'a str,
    session_key: &'a str,
    session_id: &'a str,
    run_id: String,
    trigger: &'a str,
    channel: Option<&'a str>,
    provider: &'a str,
    model: &'a str,
    input: i64,
    output: i64,
    cache_read: i64,
    cache_write: i64,
    cost: f64,
    reply: Option<&'a str>,
    context: Option<(i64, i64)>,
    tools: Vec<(&'a str, &'a str)>,
    at_ms: i64,
}

fn span_hex(seed: &str, n: u8) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seed, n).hash(&mut h);
    format!("{:016x}", h.finish() | 1)
}

/// One run as the plugin delivers it: hooks (root and attempt), a model call, tools, usage.
fn run_events(r: &RunSpec) -> Vec<Value> {
    let root = span_hex(&r.trace, 1);
    let attempt = span_hex(&r.trace, 2);
    let call = span_hex(&r.trace, 3);
    let mut ctx = json!({
        "runId": r.run_id, "agentId": r.agent, "sessionKey": r.session_key,
        "sessionId": r.session_id, "trigger": r.trigger,
        "trace": {"traceId": r.trace, "spanId": attempt, "parentSpanId": root}});
    if let Some(c) = r.channel {
        ctx["channel"] = c.into();
        ctx["messageProvider"] = c.into();
    }
    let t = r.at_ms;
    let mut out = vec![json!({"kind": "hook:llm_input", "ts": t,
        "event": {"runId": r.run_id, "sessionId": r.session_id, "provider": r.provider,
                  "model": r.model, "promptChars": 10}, "ctx": ctx})];
    out.push(json!({"kind": "tdiag:model.call.completed", "ts": t + 400,
        "event": {"type": "model.call.completed", "runId": r.run_id,
            "callId": format!("{}:model:1", r.run_id), "sessionKey": r.session_key,
            "sessionId": r.session_id, "provider": r.provider, "model": r.model,
            "durationMs": 300, "contextTokenBudget": r.context.map(|c| c.1),
            "usage": {"input": r.input, "output": r.output, "cacheRead": r.cache_read,
                "cacheWrite": r.cache_write, "total": r.input + r.output + r.cache_read + r.cache_write,
                "cost": {"total": r.cost}},
            "trace": {"traceId": r.trace, "spanId": call, "parentSpanId": attempt},
            "ts": t + 400}, "ctx": {"trusted": true}}));
    for (i, (tool, hash)) in r.tools.iter().enumerate() {
        let id = format!("call_{i}");
        let ev = json!({"toolName": tool, "toolCallId": id, "runId": r.run_id, "paramsHash": hash});
        out.push(json!({"kind": "hook:before_tool_call", "ts": t + 500 + i as i64 * 10, "event": ev, "ctx": ctx}));
        let mut done = ev.clone();
        done["durationMs"] = 5.into();
        out.push(json!({"kind": "hook:after_tool_call", "ts": t + 505 + i as i64 * 10, "event": done, "ctx": ctx}));
    }
    let mut output = json!({"runId": r.run_id, "assistantTextsChars": 12,
        "lastAssistant": {"stopReason": "stop"}});
    if let Some(tok) = r.reply {
        output["silentReply"] = tok.into();
    }
    out.push(json!({"kind": "hook:llm_output", "ts": t + 900, "event": output, "ctx": ctx}));
    out.push(json!({"kind": "hook:agent_end", "ts": t + 1000,
        "event": {"runId": r.run_id, "success": true, "durationMs": 1000}, "ctx": ctx}));
    let mut usage = json!({"type": "model.usage", "sessionKey": r.session_key,
        "sessionId": r.session_id, "provider": r.provider, "model": r.model,
        "usage": {"input": r.input, "output": r.output}, "costUsd": r.cost, "durationMs": 1000,
        "trace": {"traceId": r.trace, "spanId": root}, "ts": t + 1001});
    if let Some(c) = r.channel {
        usage["channel"] = c.into();
    }
    if let Some((used, limit)) = r.context {
        usage["context"] = json!({"used": used, "limit": limit});
    }
    out.push(json!({"kind": "tdiag:model.usage", "ts": t + 1001, "event": usage, "ctx": {"trusted": true}}));
    out
}

fn trace_of(n: u32) -> String {
    format!("{n:08x}aaaabbbbccccdddd00000000")
}

fn spec<'a>(n: u32, at_ms: i64) -> RunSpec<'a> {
    RunSpec {
        trace: trace_of(n),
        agent: "main",
        session_key: "agent:main:main",
        session_id: "s-main",
        run_id: format!("run-{n}"),
        trigger: "user",
        channel: None,
        provider: "anthropic",
        model: "claude-sonnet-4-5",
        input: 100,
        output: 20,
        cache_read: 0,
        cache_write: 0,
        cost: 0.001,
        reply: None,
        context: None,
        tools: vec![],
        at_ms,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn openclaw_views_from_plugin_events_and_the_gateway_log() {
    // The recorded gateway log's fallback and retry lines, moved to now.
    let tmp = tempfile::tempdir().unwrap();
    let log_dir = tmp.path().join("logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/openclaw/gateway_log.jsonl"),
    )
    .unwrap();
    // Only the lines about runs (cron lines hold future wake-up times that would move the rest).
    let lines: Vec<&str> = fixture
        .lines()
        .filter(|l| l.contains(RETRY_TRACE) || l.contains("model_fallback_decision"))
        .collect();
    let moved = fixture_at_now(&(lines.join("\n") + "\n"));
    std::fs::write(log_dir.join("openclaw-today.log"), &moved).unwrap();
    let glob = format!("{}/openclaw-*.log", log_dir.display());
    let d = Daemon::start(&[
        ("OCT_LOG_PATH", glob.as_str()),
        ("OCT_LOG_POLL_INTERVAL", "200ms"),
        ("OCT_OPENCLAW_STATE_DIR", "off"),
    ]);

    let base = now_ms() - 30 * 60_000;
    let mut runs = Vec::new();
    // A web chat turn that read most of its prompt from the cache, and spawned a sub-agent.
    let mut a = spec(1, base);
    a.session_key = "agent:main:openai:u1";
    a.session_id = "s-web";
    a.channel = Some("webchat");
    a.input = 100;
    a.cache_read = 900;
    a.cache_write = 50;
    a.cost = 0.01;
    a.context = Some((1050, 200_000));
    runs.push(a);
    // Heartbeats: two HEARTBEAT_OK, one NO_REPLY.
    for (i, reply) in [Some("HEARTBEAT_OK"), Some("HEARTBEAT_OK"), Some("NO_REPLY")]
        .into_iter()
        .enumerate()
    {
        let mut h = spec(10 + i as u32, base + 60_000 * (i as i64 + 1));
        h.trigger = "heartbeat";
        h.reply = reply;
        h.cost = 0.002;
        runs.push(h);
    }
    // A cron job's run.
    let mut c = spec(20, base + 5 * 60_000);
    c.trigger = "cron";
    c.session_key = "agent:main:cron:job-7";
    c.session_id = "s-cron";
    c.cost = 0.005;
    runs.push(c);
    // A Telegram turn whose context is close to the window, then compacted.
    let mut t = spec(30, base + 6 * 60_000);
    t.channel = Some("telegram");
    t.session_key = "agent:main:telegram:direct:42";
    t.session_id = "s-tg";
    t.cost = 0.02;
    t.context = Some((170_000, 200_000));
    runs.push(t);
    // The sub-agent's run.
    let mut s = spec(40, base + 8 * 60_000);
    s.session_key = "agent:main:subagent:abc-123";
    s.session_id = "s-sub";
    s.cost = 0.03;
    runs.push(s);
    // A run looping on one tool with the same arguments.
    let mut l = spec(50, base + 9 * 60_000);
    l.tools = vec![
        ("ls", "aaaa"),
        ("ls", "aaaa"),
        ("ls", "aaaa"),
        ("read", "bbbb"),
    ];
    runs.push(l);
    // The run the recorded log's retries and fallback decision belong to.
    let mut f = spec(60, base + 10 * 60_000);
    f.trace = RETRY_TRACE.into();
    runs.push(f);

    let mut events: Vec<Value> = runs.iter().flat_map(run_events).collect();
    events.push(
        json!({"kind": "hook:subagent_spawned", "ts": base + 7 * 60_000,
        "event": {"runId": "run-40", "childSessionKey": "agent:main:subagent:abc-123",
                  "agentId": "main", "label": "research", "mode": "run"},
        "ctx": {"runId": "run-40", "childSessionKey": "agent:main:subagent:abc-123",
                "requesterSessionKey": "agent:main:openai:u1"}}),
    );
    events.push(json!({"kind": "hook:after_compaction", "ts": base + 6 * 60_000 + 2000,
        "event": {"messageCount": 12, "compactedCount": 1},
        "ctx": {"agentId": "main", "sessionKey": "agent:main:telegram:direct:42", "sessionId": "s-tg",
                "trigger": "overflow"}}));
    let r = post_json(
        &d.url("/v1/openclaw/events"),
        &json!({"plugin": {"version": "test"}, "events": events}),
    );
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    d.wait_count(
        "SELECT count(*) FROM traces",
        runs.len() as i64,
        Duration::from_secs(10),
    );
    d.wait_count(
        "SELECT count(*) FROM events WHERE name = 'model_fallback_decision'",
        3,
        Duration::from_secs(10),
    );

    // Cache: per agent, hit rate and dollars saved at the table's prices.
    let price = d.get_json("/v1/pricing?model=claude-sonnet-4-5&provider=anthropic");
    let p = &price["match"]["price"];
    let (input_p, read_p, write_p) = (
        p["input"].as_f64().unwrap(),
        p["cache_read"].as_f64().unwrap(),
        p["cache_write"].as_f64().unwrap(),
    );
    let cache = d.get_json("/v1/openclaw/cache?by=model");
    let row = &cache["rows"][0];
    assert_eq!(row["key"], "claude-sonnet-4-5", "{cache}");
    assert_eq!(row["cache_read_tokens"], 900);
    assert_eq!(row["cache_write_tokens"], 50);
    let saved = 900.0 * (input_p - read_p) / 1e6;
    let premium = 50.0 * (write_p - input_p) / 1e6;
    assert!(close(row["saved_usd"].as_f64().unwrap(), saved), "{row}");
    assert!(
        close(row["net_saved_usd"].as_f64().unwrap(), saved - premium),
        "{row}"
    );
    // 100 input tokens without the cached ones (OpenClaw's convention): 1050 prompt tokens.
    let prompt = row["prompt_tokens"].as_i64().unwrap();
    assert_eq!(prompt, 100 * (runs.len() as i64) + 900 + 50, "{row}");
    assert!(close(
        row["hit_rate"].as_f64().unwrap(),
        900.0 / prompt as f64
    ));
    let by_session = d.get_json("/v1/openclaw/cache?by=session");
    let web = by_session["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "s-web")
        .unwrap();
    assert!(
        close(web["hit_rate"].as_f64().unwrap(), 900.0 / 1050.0),
        "{web}"
    );

    // Heartbeats and crons: their own kinds, cost per run, silent replies counted.
    let sch = d.get_json("/v1/openclaw/scheduled");
    let tot = &sch["totals"];
    assert_eq!(tot["heartbeat_runs"], 3, "{sch}");
    assert_eq!(tot["heartbeat_ok"], 2);
    assert_eq!(tot["no_reply"], 1);
    assert!(close(tot["heartbeat_cost_usd"].as_f64().unwrap(), 0.006));
    assert_eq!(tot["cron_runs"], 1);
    assert!(close(tot["cron_cost_usd"].as_f64().unwrap(), 0.005));
    let cron_days: Vec<&Value> = sch["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "cron")
        .collect();
    assert_eq!(cron_days[0]["job"], "job-7");
    assert!(close(
        cron_days[0]["cost_per_run_usd"].as_f64().unwrap(),
        0.005
    ));

    // Sub-agents: linked to the run that spawned them, cost rolled up.
    let sub = d.get_json("/v1/openclaw/subagents");
    let link = &sub["subagents"][0];
    assert_eq!(
        link["child_session_key"], "agent:main:subagent:abc-123",
        "{sub}"
    );
    assert_eq!(link["parent_trace_id"], trace_of(1));
    assert_eq!(link["label"], "research");
    assert!(close(link["child_cost_usd"].as_f64().unwrap(), 0.03));
    let parent = &sub["parents"][0];
    assert_eq!(parent["trace_id"], trace_of(1));
    assert!(
        close(parent["total_cost_usd"].as_f64().unwrap(), 0.04),
        "{parent}"
    );

    // Context: per turn against the window; the Telegram session is near it and compacted.
    let ctx = d.get_json("/v1/openclaw/context");
    let tg = ctx["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == "s-tg")
        .unwrap();
    assert_eq!(tg["max_context_tokens"], 170_000, "{ctx}");
    assert_eq!(tg["context_window"], 200_000);
    assert_eq!(tg["near_window"], true);
    assert_eq!(tg["compactions"], 1);
    assert_eq!(ctx["compactions"][0]["message_count"], 12);
    let webs = ctx["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == "s-web")
        .unwrap();
    assert_eq!(webs["near_window"], false);

    // Channels and tools.
    let ch = d.get_json("/v1/openclaw/channels");
    let find = |name: &str| {
        ch["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert!(
        close(find("telegram")["cost_usd"].as_f64().unwrap(), 0.02),
        "{ch}"
    );
    assert!(close(find("webchat")["cost_usd"].as_f64().unwrap(), 0.01));
    assert_eq!(find("telegram")["runs"], 1);
    let ls = ch["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"] == "ls")
        .unwrap();
    assert_eq!(ls["calls"], 3);
    assert_eq!(ls["runs"], 1);

    // Fallbacks from the gateway log, counted by model pair and linked to their runs.
    let fb = d.get_json("/v1/openclaw/fallbacks");
    assert_eq!(fb["decisions"], 3, "{fb}");
    let pair = fb["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["reason"] == "server_error")
        .unwrap();
    assert_eq!(pair["from"], "fake/fake-model");
    assert_eq!(pair["to"], "fake/fake-model");
    assert_eq!(pair["decision"], "candidate_failed");
    assert_eq!(pair["runs"][0], RETRY_TRACE);

    // Waste: the loop and the retries, counted per agent.
    let w = d.get_json("/v1/openclaw/waste");
    let flagged = |trace: &str| {
        w["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["trace_id"] == trace)
            .map(|r| r["flags"].clone())
            .unwrap_or(Value::Null)
    };
    let lf = flagged(&trace_of(50));
    assert_eq!(lf[0]["flag"], "tool_loop", "{w}");
    assert_eq!(lf[0]["tool"], "ls");
    assert_eq!(lf[0]["repeats"], 3);
    let rf = flagged(RETRY_TRACE);
    assert_eq!(rf[0]["flag"], "provider_retries", "{w}");
    assert!(rf[0]["failures"].as_i64().unwrap() >= 7);
    assert_eq!(w["agents"][0]["agent_id"], "main");
    assert_eq!(w["agents"][0]["tool_loop"], 1);
    assert_eq!(w["agents"][0]["provider_retries"], 1);
    let one = d.get_json(&format!("/v1/openclaw/waste?trace_id={}", trace_of(50)));
    assert_eq!(one["runs"].as_array().unwrap().len(), 1, "{one}");

    // Bad parameters name the field.
    for (path, field) in [
        ("/v1/openclaw/cache?by=planet", "by"),
        ("/v1/openclaw/context?near=2", "near"),
        ("/v1/openclaw/waste?trace_id=xyz", "trace_id"),
        ("/v1/openclaw/scheduled?from=yesterday", "from"),
    ] {
        let r = client().get(d.url(path)).send().unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().unwrap();
        assert_eq!(body["field"], field, "{path}");
    }

    // The CLI reads the same database.
    let out = d.cli(&["openclaw", "scheduled", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["totals"], sch["totals"]);
    for (args, want) in [
        (
            &["openclaw", "cache", "--by", "model"][..],
            "claude-sonnet-4-5",
        ),
        (&["openclaw", "scheduled"][..], "job-7"),
        (
            &["openclaw", "subagents"][..],
            "agent:main:subagent:abc-123",
        ),
        (&["openclaw", "context"][..], "near its window"),
        (&["openclaw", "channels"][..], "telegram"),
        (&["openclaw", "fallbacks"][..], "candidate_failed"),
        (&["openclaw", "waste"][..], "tool loop (ls x3)"),
    ] {
        let out = d.cli(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(want), "{args:?}:\n{text}");
    }
    let bad = d.cli(&["openclaw", "cache", "--by", "planet"]);
    assert_eq!(bad.status.code(), Some(2));
}
