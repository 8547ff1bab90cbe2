//! Packed span values (#20, `store::codec`) against the real binary: once enough spans
//! are stored a dictionary is trained, new values are stored packed, the rows written
//! before are packed in place, and every answer (API, export, audit chain) is the same
//! byte for byte. A database written before packing existed (schema 12) converts in
//! place after an upgrade and answers exactly as it did.

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const WORDS: &[&str] = &[
    "weather",
    "forecast",
    "invoice",
    "schedule",
    "refund",
    "deploy",
    "search",
    "summary",
    "contract",
    "ticket",
    "café",
    "naïve",
    "überprüfen",
    "数据",
    "résumé",
    "agent",
    "tool",
];

fn phrase(i: usize, salt: usize, n: usize) -> String {
    (0..n)
        .map(|k| WORDS[(i * 31 + k * 7 + salt * 13 + (i * k) % 11) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Call `i`: distinct texts and attributes; a replacement character (what invalid
/// UTF-8 read from a log becomes) in some.
fn call(i: usize) -> Value {
    let trace = format!("{:032x}", 0xabc0_0000_0000u64 + (i / 10) as u64);
    let span = format!("{:016x}", 0x5000_0000u64 + i as u64);
    let mark = if i.is_multiple_of(7) {
        " \u{fffd} "
    } else {
        " "
    };
    json!({
        "provider": "openai", "model": "gpt-4o-mini", "trace_id": trace, "span_id": span,
        "session_id": format!("session-{}", i / 50), "agent_id": "main",
        "input_text": format!("question {i}:{mark}{}", phrase(i, 1, 30)),
        "output_text": format!("answer {i}: {}", phrase(i, 2, 40)),
        "prompt_tokens": 100 + i % 17, "completion_tokens": 20 + i % 5,
        "metadata": {"openclaw.session_key": format!("agent:main:{}", i / 50),
            "tool.query": phrase(i, 3, 6), "request.n": i, "flag": i.is_multiple_of(2)},
    })
}

fn post_calls(d: &Daemon, range: std::ops::Range<usize>) {
    let calls: Vec<Value> = range.clone().map(call).collect();
    for chunk in calls.chunks(100) {
        let r = post_json(&d.url("/v1/traces"), &Value::Array(chunk.to_vec()));
        assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    }
}

/// Every span of the calls' traces as the API gives them: (span id, input, output, attributes).
fn answers(d: &Daemon, n: usize) -> BTreeMap<String, (Value, Value, Value)> {
    let mut out = BTreeMap::new();
    for t in 0..n.div_ceil(10) {
        let trace = format!("{:032x}", 0xabc0_0000_0000u64 + t as u64);
        let v = d.get_json(&format!("/v1/traces/{trace}"));
        let mut stack: Vec<Value> = v["spans"].as_array().cloned().unwrap_or_default();
        while let Some(s) = stack.pop() {
            stack.extend(s["children"].as_array().cloned().unwrap_or_default());
            out.insert(
                s["span_id"].as_str().unwrap_or_default().to_string(),
                (
                    s["input_text"].clone(),
                    s["output_text"].clone(),
                    s["attributes"].clone(),
                ),
            );
        }
    }
    out
}

fn plain_left(d: &Daemon) -> i64 {
    count(
        &d.db_path,
        "SELECT count(*) FROM spans WHERE (typeof(input_text) = 'text' AND length(input_text) >= 32)
            OR (typeof(output_text) = 'text' AND length(output_text) >= 32)
            OR (typeof(attributes) = 'text' AND length(attributes) >= 32)",
    )
}

fn assert_sent(got: &BTreeMap<String, (Value, Value, Value)>, n: usize) {
    assert_eq!(got.len(), n);
    for i in 0..n {
        let sent = call(i);
        let (input, output, attrs) = &got[sent["span_id"].as_str().unwrap()];
        assert_eq!(input, &sent["input_text"], "call {i}");
        assert_eq!(output, &sent["output_text"], "call {i}");
        for (k, v) in sent["metadata"].as_object().unwrap() {
            assert_eq!(&attrs[k], v, "call {i}: {k}");
        }
    }
}

fn assert_chain_intact(d: &Daemon) {
    let out = d.cli(&["verify", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("verify prints JSON");
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["ok"], true, "{v:#}");
}

#[test]
fn values_are_packed_once_a_dictionary_is_trained_and_read_back_the_same() {
    let d = Daemon::start(&[]);
    post_calls(&d, 0..1500);
    d.wait_count("SELECT count(*) FROM spans", 1500, Duration::from_secs(20));
    // The first dictionary: trained once 1,000 spans are stored (looked at every 10 s).
    let dicts = d.wait_count(
        "SELECT count(*) FROM codec_dicts",
        1,
        Duration::from_secs(40),
    );
    assert_eq!(dicts, 1);
    post_calls(&d, 1500..2000);
    d.wait_count("SELECT count(*) FROM spans", 2000, Duration::from_secs(20));
    // What was written before the dictionary is packed in place, a few hundred rows at a time.
    wait_for("rows packed in place", Duration::from_secs(40), || {
        plain_left(&d) == 0
    });
    let blobs = count(
        &d.db_path,
        "SELECT count(*) FROM spans WHERE typeof(input_text) = 'blob'",
    );
    assert_eq!(blobs, 2000);
    // Packed, the texts and attributes take a fraction of their plain size.
    let (packed, plain) = d
        .db()
        .query_row(
            "SELECT sum(length(input_text) + length(output_text) + length(attributes)),
                sum(length(CAST(unpack(input_text) AS BLOB)) + length(CAST(unpack(output_text) AS BLOB))
                    + length(CAST(unpack(attributes) AS BLOB)))
             FROM spans",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .unwrap();
    assert!(packed * 3 < plain, "packed {packed} bytes of {plain}");
    // Every answer is what was sent, byte for byte.
    assert_sent(&answers(&d, 2000), 2000);
    // The export reads the same.
    let out = d.cli(&["export", "--format", "json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(call(1999)["input_text"].as_str().unwrap()));
    assert!(text.contains(call(7)["input_text"].as_str().unwrap()));
    // The chain digests content: packing in place changed none, and it says so.
    assert_chain_intact(&d);
}

#[test]
fn a_database_from_before_packing_converts_in_place_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), &[("OCT_PACK_VALUES", "false")]);
    post_calls(&d, 0..1500);
    d.wait_count("SELECT count(*) FROM spans", 1500, Duration::from_secs(20));
    let before = answers(&d, 1500);
    assert_sent(&before, 1500);
    let usage_before = d.get_json("/v1/usage?group_by=model");
    d.stop();
    // As an older version left it: schema 12, no dictionaries, every value plain text.
    {
        let c = rusqlite::Connection::open(&d.db_path).unwrap();
        c.execute_batch(
            "DROP TABLE codec_dicts; DROP TABLE span_changes; PRAGMA user_version = 12;",
        )
        .unwrap();
        let blobs: i64 = c
            .query_row(
                "SELECT count(*) FROM spans WHERE typeof(attributes) = 'blob'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(blobs, 0);
    }
    let d = Daemon::start_in(dir.path(), &[]);
    let dicts = d.wait_count(
        "SELECT count(*) FROM codec_dicts",
        1,
        Duration::from_secs(40),
    );
    assert_eq!(dicts, 1);
    wait_for("the old rows packed", Duration::from_secs(40), || {
        plain_left(&d) == 0
    });
    assert_eq!(
        count(&d.db_path, "PRAGMA user_version"),
        openclaw_trace::store::schema::CURRENT_VERSION
    );
    assert_eq!(answers(&d, 1500), before);
    let usage_after = d.get_json("/v1/usage?group_by=model");
    assert_eq!(usage_after["rows"], usage_before["rows"]);
    assert_eq!(usage_after["totals"], usage_before["totals"]);
    assert!(
        usage_before["totals"]["calls"].as_i64().unwrap_or(0) >= 1500,
        "{usage_before}"
    );
    assert_chain_intact(&d);
}
