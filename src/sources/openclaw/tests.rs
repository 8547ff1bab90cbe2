//! Mapping tests on real data captured from OpenClaw 2026.9.6 (tests/fixtures/openclaw).

use super::*;
use crate::store::write::write_records;
use rusqlite::Connection;
use serde_json::json;

const BRIDGE: &str = include_str!("../../../tests/fixtures/openclaw/bridge_events.jsonl");

fn db() -> Connection {
    let mut c = Connection::open_in_memory().unwrap();
    crate::store::schema::migrate(&mut c).unwrap();
    c
}

fn store(c: &mut Connection, records: &[Record]) {
    let tx = c.transaction().unwrap();
    write_records(&tx, records, 1).unwrap();
    tx.commit().unwrap();
}

fn hex(s: &str) -> Vec<u8> {
    let mut out = vec![0u8; s.len() / 2];
    assert!(crate::util::hex::decode_into(s, &mut out));
    out
}

struct TraceRow {
    spans: i64,
    llm: i64,
    tools: i64,
    input: i64,
    output: i64,
    cost: Option<f64>,
    status: String,
    root: Option<Vec<u8>>,
    name: Option<String>,
}

fn trace(c: &Connection, id: &str) -> TraceRow {
    c.query_row(
        "SELECT span_count, llm_calls, tool_calls, input_tokens, output_tokens, cost_usd, status,
            root_span_id, root_name FROM traces WHERE trace_id = ?1",
        [hex(id)],
        |r| {
            Ok(TraceRow {
                spans: r.get(0)?,
                llm: r.get(1)?,
                tools: r.get(2)?,
                input: r.get(3)?,
                output: r.get(4)?,
                cost: r.get(5)?,
                status: r.get(6)?,
                root: r.get(7)?,
                name: r.get(8)?,
            })
        },
    )
    .unwrap()
}

fn parent_of(c: &Connection, span: &str) -> Option<Vec<u8>> {
    c.query_row(
        "SELECT parent_span_id FROM spans WHERE span_id = ?1",
        [hex(span)],
        |r| r.get(0),
    )
    .unwrap()
}

const TOOL_RUN: &str = "aaba956574194340ee2c2c3950ac5107";
const FAILED_RUN: &str = "590290b6c4e5f2264479c9bd422f332c";

#[test]
fn the_sample_batch_maps_into_run_trees() {
    let batch = parse_batch(BRIDGE.as_bytes(), &IngestConfig::default()).unwrap();
    assert!(batch.ignored > 0, "public diag:* events are not stored");
    let mut c = db();
    store(&mut c, &batch.records);
    let t = trace(&c, TOOL_RUN);
    assert_eq!((t.llm, t.tools), (2, 1));
    // Exactly OpenClaw's numbers: 200+123 in, 9+17 out, $0.000218 + $0.000157.
    assert_eq!((t.input, t.output), (323, 26));
    assert!((t.cost.unwrap() - 0.000375).abs() < 1e-12);
    assert_eq!(t.status, "ok");
    assert_eq!(t.root, Some(hex("980b86ddf7d2e445")));
    assert_eq!(t.name.as_deref(), Some("invoke_agent main"));
    // root > harness attempt > run > model calls and the tool.
    assert_eq!(
        parent_of(&c, "75ff52886d7927db"),
        Some(hex("980b86ddf7d2e445"))
    );
    assert_eq!(
        parent_of(&c, "44092c3cc721315b"),
        Some(hex("75ff52886d7927db"))
    );
    assert_eq!(
        parent_of(&c, "5f3545923d8b3dc7"),
        Some(hex("44092c3cc721315b"))
    );
    assert_eq!(
        parent_of(&c, "712354fb331b19b1"),
        Some(hex("44092c3cc721315b"))
    );
    let tool_parent: Vec<u8> = c
        .query_row(
            "SELECT parent_span_id FROM spans WHERE kind = 'tool_call' AND trace_id = ?1",
            [hex(TOOL_RUN)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tool_parent, hex("44092c3cc721315b"));
    assert_eq!(t.spans, 6);
    // The first call merged a start hook, an end hook and two diagnostic events.
    let (ttfb, start, end, provider): (i64, i64, i64, String) = c
        .query_row(
            "SELECT json_extract(attributes, '$.\"openclaw.time_to_first_byte_ms\"'), start_ns,
                end_ns, provider FROM spans WHERE span_id = ?1",
            [hex("5f3545923d8b3dc7")],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(ttfb, 252);
    assert_eq!(provider, "fake");
    assert_eq!((end - start) / 1_000_000, 309);
}

#[test]
fn delivering_the_batch_twice_changes_nothing() {
    let batch = parse_batch(BRIDGE.as_bytes(), &IngestConfig::default()).unwrap();
    let mut c = db();
    store(&mut c, &batch.records);
    let sums = |c: &Connection| -> (i64, i64, f64, i64) {
        c.query_row(
            "SELECT (SELECT count(*) FROM spans), sum(input_tokens), total(cost_usd),
                (SELECT count(*) FROM events) FROM traces",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    };
    let before = sums(&c);
    store(&mut c, &batch.records);
    assert_eq!(sums(&c), before);
}

#[test]
fn provider_failures_become_error_events_linked_to_their_trace() {
    let batch = parse_batch(BRIDGE.as_bytes(), &IngestConfig::default()).unwrap();
    let mut c = db();
    store(&mut c, &batch.records);
    let t = trace(&c, FAILED_RUN);
    assert_eq!(t.status, "error");
    assert_eq!(t.input, 0);
    // Eight attempts, each ending with stopReason "error".
    let (n, msg): (i64, String) = c
        .query_row(
            "SELECT count(*), max(message) FROM events WHERE type = 'error' AND trace_id = ?1",
            [hex(FAILED_RUN)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(n, 8);
    assert_eq!(msg, "500 fake upstream failure");
    let failed_calls: i64 = c
        .query_row(
            "SELECT count(*) FROM spans WHERE kind = 'llm_call' AND status = 'error' AND trace_id = ?1",
            [hex(FAILED_RUN)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed_calls, 8);
}

#[test]
fn bad_items_are_refused_naming_item_and_field() {
    let cfg = IngestConfig::default();
    let e = parse_batch(br#"[{"kind":"hook:agent_end"},{"ts":1}]"#, &cfg).unwrap_err();
    assert_eq!((e.item, e.field.as_deref()), (Some(1), Some("kind")));
    let e = parse_batch(
        br#"{"kind":"tdiag:run.started","event":{"trace":{"traceId":"zz"}}}"#,
        &cfg,
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("event.trace.traceId"));
    let e = parse_batch(br#"{"plugin":{},"events":{}}"#, &cfg).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("events"));
    let e = parse_batch(br#"{"kind":"hook:x","event":[1]}"#, &cfg).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("event"));
    let ok = parse_batch(
        br#"{"plugin":{"dropped":3},"events":[{"kind":"hook:unknown_hook","ts":1}]}"#,
        &cfg,
    )
    .unwrap();
    assert_eq!((ok.ignored, ok.dropped_by_plugin), (1, 3));
}

#[test]
fn silent_replies_context_subagents_and_compactions() {
    let t = "aaba956574194340ee2c2c3950ac5107";
    let ctx = json!({"trace": {"traceId": t, "spanId": "75ff52886d7927db", "parentSpanId": "980b86ddf7d2e445"},
        "runId": "r1", "agentId": "main", "sessionKey": "agent:main:main", "sessionId": "s1", "trigger": "heartbeat"});
    let body = json!([
        {"kind": "hook:llm_output", "ts": 1000, "event": {"runId": "r1", "silentReply": "HEARTBEAT_OK"}, "ctx": ctx},
        {"kind": "tdiag:model.usage", "ts": 1001, "event": {"type": "model.usage", "sessionKey": "agent:main:main",
            "context": {"limit": 128000, "used": 123}, "trace": {"traceId": t, "spanId": "980b86ddf7d2e445"}}},
        {"kind": "hook:subagent_spawned", "ts": 1002, "event": {"runId": "c1", "childSessionKey": "agent:main:subagent:u1", "label": "x"},
            "ctx": {"requesterSessionKey": "agent:main:main"}},
        {"kind": "hook:after_compaction", "ts": 1003, "event": {"messageCount": 4, "compactedCount": 1},
            "ctx": {"sessionKey": "agent:main:main", "sessionId": "s1"}},
    ]);
    let batch = parse_batch(body.to_string().as_bytes(), &IngestConfig::default()).unwrap();
    assert_eq!(batch.ignored, 0);
    let mut c = db();
    store(&mut c, &batch.records);
    let (reply, trigger, used, limit): (String, String, i64, i64) = c
        .query_row(
            "SELECT json_extract(attributes, '$.\"openclaw.silent_reply\"'),
                json_extract(attributes, '$.\"openclaw.trigger\"'),
                json_extract(attributes, '$.\"openclaw.context.used\"'),
                json_extract(attributes, '$.\"openclaw.context.limit\"')
             FROM spans WHERE span_id = ?1",
            [hex("980b86ddf7d2e445")],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (reply.as_str(), trigger.as_str(), used, limit),
        ("HEARTBEAT_OK", "heartbeat", 123, 128000)
    );
    let (child, requester): (String, String) = c
        .query_row(
            "SELECT json_extract(attributes, '$.\"openclaw.child_session_key\"'),
                json_extract(attributes, '$.\"openclaw.requester_session_key\"')
             FROM events WHERE name = 'openclaw.subagent_spawned'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (child.as_str(), requester.as_str()),
        ("agent:main:subagent:u1", "agent:main:main")
    );
    let (sid, n): (String, i64) = c
        .query_row(
            "SELECT session_id, json_extract(attributes, '$.\"openclaw.message_count\"')
             FROM events WHERE name = 'openclaw.compaction'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((sid.as_str(), n), ("s1", 4));
}

#[test]
fn input_tokens_include_the_cached_ones_as_the_conventions_count_them() {
    let usage = |v: Value| v.as_object().unwrap().clone();
    let mut span = Span::new(
        TraceId([1; 16]),
        SpanId([1; 8]),
        "chat m".into(),
        SpanKind::LlmCall,
        1,
    );
    // OpenClaw's own shape: input without the cache, total of all four.
    apply_usage(
        &mut span,
        &usage(
            json!({"input": 1000, "output": 50, "cacheRead": 900, "cacheWrite": 50,
                      "totalTokens": 2000}),
        ),
    );
    assert_eq!(span.input_tokens, Some(1950));
    assert_eq!(
        (
            span.cache_read_tokens,
            span.cache_write_tokens,
            span.total_tokens
        ),
        (Some(900), Some(50), Some(2000))
    );
    // A usage whose total leaves the cache out already counted it in input.
    apply_usage(
        &mut span,
        &usage(json!({"input": 1000, "output": 50, "cacheRead": 900, "totalTokens": 1050})),
    );
    assert_eq!(span.input_tokens, Some(1000));
    // No total: OpenClaw's convention.
    apply_usage(&mut span, &usage(json!({"input": 10, "cacheRead": 5})));
    assert_eq!(span.input_tokens, Some(15));
    // No cache: as reported.
    apply_usage(
        &mut span,
        &usage(json!({"input": 123, "output": 17, "totalTokens": 140})),
    );
    assert_eq!(span.input_tokens, Some(123));
}
