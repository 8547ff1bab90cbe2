//! An OpenClaw day for the view tests: runs as the OpenClaw 2026.9.6 plugin delivers
//! them (hook contexts with `trigger` and `channel`, `model.call.completed` with usage
//! and cost, `model.usage` with the context window), and the recorded gateway log's
//! fallback decisions and retries, moved to now.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Daemon, fixture_at_now, now_ms, post_json};

pub const RETRY_TRACE: &str = "590290b6c4e5f2264479c9bd422f332c";

pub struct RunSpec<'a> {
    pub trace: String,
    pub agent: &'a str,
    pub session_key: &'a str,
    pub session_id: &'a str,
    pub run_id: String,
    pub trigger: &'a str,
    pub channel: Option<&'a str>,
    pub provider: &'a str,
    pub model: &'a str,
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
    pub cost: f64,
    pub reply: Option<&'a str>,
    pub context: Option<(i64, i64)>,
    pub tools: Vec<(&'a str, &'a str)>,
    pub at_ms: i64,
}

pub fn span_hex(seed: &str, n: u8) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seed, n).hash(&mut h);
    format!("{:016x}", h.finish() | 1)
}

/// One run as the plugin delivers it: hooks (root and attempt), a model call, tools, usage.
pub fn run_events(r: &RunSpec) -> Vec<Value> {
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

pub fn trace_of(n: u32) -> String {
    format!("{n:08x}aaaabbbbccccdddd00000000")
}

pub fn spec<'a>(n: u32, at_ms: i64) -> RunSpec<'a> {
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

/// The day's runs (from `base_ms`, a minute or so apart) and the plugin events that
/// deliver them, with a sub-agent spawn and a compaction.
pub fn view_day(base: i64) -> (Vec<RunSpec<'static>>, Vec<Value>) {
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
    (runs, events)
}

/// Writes the recorded gateway log's lines about runs (fallback decisions, retries),
/// moved to now, under `dir`; returns the glob `OCT_LOG_PATH` takes.
pub fn gateway_log_of_runs(dir: &Path) -> String {
    let log_dir = dir.join("logs");
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
    glob
}

/// Sends the day (from half an hour ago) to `d`'s plugin endpoint and waits until its
/// runs and the gateway log's three fallback decisions are stored; the day's runs.
pub fn deliver_view_day(d: &Daemon) -> (i64, Vec<RunSpec<'static>>) {
    let base = now_ms() - 30 * 60_000;
    let (runs, events) = view_day(base);
    let r = post_json(
        &d.url("/v1/openclaw/events"),
        &json!({"plugin": {"version": "test"}, "events": events}),
    );
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
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
    (base, runs)
}
