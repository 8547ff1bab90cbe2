use super::*;
use crate::sources::ingest::IngestConfig;
use crate::store::write::write_records;

const TRANSCRIPT: &str = include_str!("../../../tests/fixtures/openclaw/transcript_events.jsonl");
const BRIDGE: &str = include_str!("../../../tests/fixtures/openclaw/bridge_events.jsonl");
const TOOL_RUN: &str = "chatcmpl_e830117c-fbda-4d66-bcfc-c6685a8448c1";

fn rows() -> Vec<(String, i64, Value)> {
    TRANSCRIPT
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["session_id"].as_str().unwrap().to_string(),
                v["seq"].as_i64().unwrap(),
                v["event"].clone(),
            )
        })
        .collect()
}

/// An agent database shaped like OpenClaw's, every other row zstd-compressed.
fn agent_db(dir: &Path) -> PathBuf {
    let path = dir.join("openclaw-agent.sqlite");
    let c = Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE transcript_events (session_id TEXT NOT NULL, seq INTEGER NOT NULL,
            event_json TEXT, created_at INTEGER NOT NULL, event_zstd BLOB, event_utf8_bytes INTEGER,
            navigation_json TEXT, PRIMARY KEY (session_id, seq))",
    )
    .unwrap();
    for (i, (sid, seq, ev)) in rows().into_iter().enumerate() {
        let text = ev.to_string();
        if i % 2 == 0 {
            let z = ruzstd::encoding::compress_to_vec(
                text.as_bytes(),
                ruzstd::encoding::CompressionLevel::Fastest,
            );
            c.execute(
                "INSERT INTO transcript_events (session_id, seq, event_zstd, event_utf8_bytes, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![sid, seq, z, text.len() as i64, 1_000 + i as i64],
            )
            .unwrap();
        } else {
            c.execute(
                "INSERT INTO transcript_events (session_id, seq, event_json, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![sid, seq, text, 1_000 + i as i64],
            )
            .unwrap();
        }
    }
    path
}

fn spans(records: &[Record]) -> Vec<&Span> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Span(s) => Some(s.as_ref()),
            _ => None,
        })
        .collect()
}

#[test]
fn reads_the_agent_database_incrementally_with_compressed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = agent_db(dir.path());
    let all = read_db(&db, Some("main"), 0, i64::MAX).unwrap();
    assert_eq!(all.rows, rows().len());
    let (calls, tools): (Vec<&Span>, Vec<&Span>) = spans(&all.records)
        .into_iter()
        .partition(|s| s.kind == SpanKind::LlmCall);
    // Every assistant message with usage, the failed one included.
    assert_eq!(calls.len(), 8);
    // Two `ls` calls, each a piece with its arguments and one with its result.
    assert_eq!(tools.len(), 4);
    assert!(tools.iter().all(|s| s.tool_name.as_deref() == Some("ls")));
    assert_eq!(tools.iter().filter(|s| s.input.is_some()).count(), 2);
    assert_eq!(tools.iter().filter(|s| s.output.is_some()).count(), 2);
    let input: i64 = calls.iter().filter_map(|s| s.input_tokens).sum();
    assert_eq!(input, 123 * 5 + 200 * 2);
    let cost: f64 = calls.iter().filter_map(|s| s.cost_usd).sum();
    assert!((cost - (0.000157 * 5.0 + 0.000218 * 2.0)).abs() < 1e-12);
    assert!(calls.iter().all(|s| s.agent_id.as_deref() == Some("main")));
    let errors = all
        .records
        .iter()
        .filter(|r| matches!(r, Record::Event(_)))
        .count();
    assert_eq!(errors, 1);
    // From where it stopped, nothing repeats; rows younger than the grace wait.
    let none = read_db(&db, Some("main"), all.last_rowid, i64::MAX).unwrap();
    assert_eq!(none.rows, 0);
    let early = read_db(&db, Some("main"), 0, 1_010).unwrap();
    assert_eq!(early.rows, 11);
}

fn store(c: &mut Connection, records: &[Record]) {
    let tx = c.transaction().unwrap();
    write_records(&tx, records, 1).unwrap();
    tx.commit().unwrap();
}

/// What the plugin sends for the tool run's two transcript messages (before_message_write,
/// tied to the model call spans), built from the sample transcript rows.
fn plugin_message_items() -> String {
    let calls = [
        ("5f3545923d8b3dc7", ":model:1"),
        ("712354fb331b19b1", ":model:2"),
    ];
    let msgs: Vec<Value> = rows()
        .into_iter()
        .filter_map(|(_, _, ev)| message_with_usage(&ev).cloned().map(Value::Object))
        .filter(|m| m["__openclaw"]["runId"] == TOOL_RUN)
        .collect();
    assert_eq!(msgs.len(), 2);
    msgs.iter()
        .zip(calls)
        .map(|(m, (span, call))| {
            let mut m = m.clone();
            m.as_object_mut().unwrap().remove("__openclaw");
            serde_json::json!({
                "kind": "hook:before_message_write",
                "ts": m["timestamp"],
                "event": {"message": m},
                "ctx": {"sessionKey": "agent:main:openai:x", "call": {
                    "trace": {"traceId": "aaba956574194340ee2c2c3950ac5107", "spanId": span,
                              "parentSpanId": "44092c3cc721315b"},
                    "runId": TOOL_RUN, "callId": format!("{TOOL_RUN}{call}")}}
            })
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn totals(c: &Connection) -> (i64, i64, f64, i64) {
    c.query_row(
        "SELECT sum(input_tokens), sum(output_tokens), total(cost_usd), count(*) FROM traces",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .unwrap()
}

#[test]
fn transcript_usage_is_not_counted_twice_whatever_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = agent_db(dir.path());
    let transcript = read_db(&db, Some("main"), 0, i64::MAX).unwrap().records;
    let cfg = IngestConfig::default();
    let mut plugin = parse_batch_records(BRIDGE, &cfg);
    plugin.extend(parse_batch_records(&plugin_message_items(), &cfg));

    let mut plugin_first = Connection::open_in_memory().unwrap();
    crate::store::schema::migrate(&mut plugin_first).unwrap();
    store(&mut plugin_first, &plugin);
    store(&mut plugin_first, &transcript);

    let mut transcript_first = Connection::open_in_memory().unwrap();
    crate::store::schema::migrate(&mut transcript_first).unwrap();
    store(&mut transcript_first, &transcript);
    store(&mut transcript_first, &plugin);
    // And again: re-reads and re-deliveries change nothing.
    store(&mut transcript_first, &transcript);
    store(&mut transcript_first, &plugin);

    let a = totals(&plugin_first);
    let b = totals(&transcript_first);
    assert_eq!((a.0, a.1, a.3), (b.0, b.1, b.3));
    assert!((a.2 - b.2).abs() < 1e-12);
    // The tool run's trace holds exactly OpenClaw's numbers, once.
    for c in [&plugin_first, &transcript_first] {
        let (input, output, llm, cost, resp): (i64, i64, i64, f64, i64) = c
            .query_row(
                "SELECT input_tokens, output_tokens, llm_calls, cost_usd,
                    (SELECT count(*) FROM spans WHERE json_extract(attributes, '$.\"gen_ai.response.id\"')
                        IN ('chatcmpl-4d4828000f98', 'chatcmpl-cdc597fbd004'))
                 FROM traces WHERE trace_id = ?1",
                [crate::model::TraceId::parse_hex("aaba956574194340ee2c2c3950ac5107").unwrap().0],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!((input, output, llm, resp), (323, 26, 2, 2));
        assert!((cost - 0.000375).abs() < 1e-12);
        // No provisional trace is left for that run.
        let run_trace = hash_trace_id(&["openclaw-run", TOOL_RUN]);
        let left: i64 = c
            .query_row(
                "SELECT count(*) FROM spans WHERE trace_id = ?1",
                [&run_trace.0[..]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
    }
}

fn parse_batch_records(body: &str, cfg: &IngestConfig) -> Vec<Record> {
    crate::sources::openclaw::parse_batch(body.as_bytes(), cfg)
        .unwrap()
        .records
}

#[test]
fn legacy_session_files_include_deleted_and_reset_ones() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "a.jsonl",
        "b.jsonl.deleted.2026-01-01T00-00-00Z",
        "c.jsonl.reset.2026-01-01T00-00-00Z",
        "d.jsonl.lock",
        "notes.txt",
    ] {
        std::fs::write(dir.path().join(name), "").unwrap();
    }
    let found: Vec<String> = session_files(dir.path())
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(found, ["a", "b", "c"]);
    // Legacy lines have the same shape as database rows.
    let (sid, _, ev) = rows()
        .into_iter()
        .find(|(_, _, e)| message_with_usage(e).is_some())
        .unwrap();
    let recs = records_from_event(&ev, &sid, Some("main"), "jsonl");
    assert_eq!(spans(&recs).len(), 1);
    assert_eq!(spans(&recs)[0].session_id.as_deref(), Some(sid.as_str()));
}

#[test]
fn assistant_messages_carry_their_text() {
    // The recorded rows: an answer's text parts become the call's output; a message
    // that only called a tool has none.
    let mut texts = Vec::new();
    for (sid, _, ev) in rows() {
        if message_with_usage(&ev).is_none() {
            continue;
        }
        for s in spans(&records_from_event(&ev, &sid, Some("main"), "sqlite")) {
            texts.push(s.output.as_ref().map(|o| o.text.clone()));
        }
    }
    assert!(texts.len() >= 5, "{texts:?}");
    assert!(texts.contains(&Some(
        "Hello from the fake LLM. The answer is 42.".to_string()
    )));
    assert!(texts.contains(&None), "the tool-calling message: {texts:?}");
}
