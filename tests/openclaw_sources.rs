//! The OpenClaw sources against the real binary, without the gateway: the plugin
//! endpoint fed with captured data, the log tailer and the transcript reader on files
//! laid out as OpenClaw does, across restarts. (The real gateway: tests/openclaw_e2e.rs.)

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A recorded fixture, its times moved so that its newest is a minute ago.
fn fixture(name: &str) -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join("tests/fixtures/openclaw").join(name))
        .unwrap();
    fixture_at_now(&text)
}

/// A gateway log line's time: a minute ago, as OpenClaw writes it.
fn log_time() -> String {
    utc_text(now_ms() - 60_000, 3, "+00:00")
}

fn post_raw(url: &str, body: String) -> reqwest::blocking::Response {
    client()
        .post(url)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap()
}

const OFF: [(&str, &str); 2] = [("OCT_LOG_PATH", "off"), ("OCT_OPENCLAW_STATE_DIR", "off")];

#[test]
fn plugin_batches_become_run_traces_and_repeat_deliveries_are_stored_once() {
    let mut d = Daemon::start(&OFF);
    let url = d.url("/v1/openclaw/events");
    let body = fixture("bridge_events.jsonl");
    let r = post_raw(&url, body.clone());
    assert_eq!(r.status(), 202);
    let answer: Value = r.json().unwrap();
    assert!(answer["accepted"].as_u64().unwrap() > 0);
    assert!(answer["ignored"].as_u64().unwrap() > 0);
    let trace = "aaba956574194340ee2c2c3950ac5107";
    let sql = format!(
        "SELECT count(*) FROM traces WHERE hex(trace_id) = upper('{trace}') AND input_tokens = 323 AND llm_calls = 2 AND tool_calls = 1"
    );
    assert_eq!(d.wait_count(&sql, 1, Duration::from_secs(10)), 1);
    // The same events again (a plugin retry): nothing changes.
    assert_eq!(post_raw(&url, body.clone()).status(), 202);
    let sums = || {
        d.db()
            .query_row(
                "SELECT (SELECT count(*) FROM spans), (SELECT count(*) FROM events), sum(input_tokens), total(cost_usd) FROM traces",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, f64>(3)?)),
            )
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = sums();
    assert_eq!(post_raw(&url, body).status(), 202);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sums(), before);

    // The trace API shows the tree.
    let t = d.get_json(&format!("/v1/traces/{trace}"));
    let text = t.to_string();
    for name in [
        "invoke_agent main",
        "openclaw.run",
        "chat fake-model",
        "execute_tool ls",
    ] {
        assert!(text.contains(name), "{name} in {text:.300}");
    }

    // `openclaw-trace traces` lists the runs with their tokens.
    let out = d.cli(&["traces"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(table.contains("invoke_agent main"), "{table}");
    assert!(d.stop().success());
}

#[test]
fn bad_batches_are_refused_with_the_item_and_field() {
    let d = Daemon::start(&OFF);
    let url = d.url("/v1/openclaw/events");
    let r = post_json(&url, &json!([{"kind": "hook:agent_end"}, {"ts": 1}]));
    assert_eq!(r.status(), 400);
    let body: Value = r.json().unwrap();
    assert_eq!(body["item"], 1);
    assert_eq!(body["field"], "kind");
    let r = post_json(
        &url,
        &json!({"kind": "tdiag:run.started", "event": {"trace": {"traceId": "nothex"}}}),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["field"], "event.trace.traceId");
    let r = client()
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
}

fn warn_line(i: usize, trace: &str) -> String {
    json!({
        "0": "{\"subsystem\":\"agent/embedded\"}",
        "1": {"event": "model_fallback_decision", "runId": format!("run-{i}"), "reason": "rate_limit"},
        "2": "model fallback decision",
        "_meta": {"logLevelName": "WARN"},
        "time": log_time(),
        "message": format!("decision {i}"),
        "traceId": trace,
        "spanId": "3d845fcc32279291"
    })
    .to_string()
}

fn info_line(i: usize) -> String {
    json!({"0": "{\"subsystem\":\"gateway\"}", "1": format!("info {i}"),
        "_meta": {"logLevelName": "INFO"}, "time": log_time()})
    .to_string()
}

#[test]
fn the_log_tailer_neither_repeats_nor_skips_across_restarts_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("openclaw-2026-11-21.log");
    let glob = format!("{}/openclaw-*.log*", logs.display());
    let env = [
        ("OCT_LOG_PATH", glob.as_str()),
        ("OCT_LOG_POLL_INTERVAL", "100ms"),
        ("OCT_OPENCLAW_STATE_DIR", "off"),
    ];
    let trace = "590290b6c4e5f2264479c9bd422f332c";
    let mut f = std::fs::File::create(&log).unwrap();
    for i in 0..10 {
        writeln!(f, "{}", warn_line(i, trace)).unwrap();
        writeln!(f, "{}", info_line(i)).unwrap();
    }
    writeln!(f, "plain text that is not JSON").unwrap();
    write!(f, "{{\"partial\": ").unwrap();
    f.flush().unwrap();
    let mut d = Daemon::start_in(dir.path(), &env);
    let count = "SELECT count(*) FROM events WHERE source = 'openclaw-log'";
    assert_eq!(d.wait_count(count, 10, Duration::from_secs(10)), 10);
    let linked = format!(
        "SELECT count(*) FROM events WHERE type = 'error' AND name = 'model_fallback_decision' AND hex(trace_id) = upper('{trace}')"
    );
    assert_eq!(d.wait_count(&linked, 10, Duration::from_secs(1)), 10);
    assert!(d.stop().success());

    // While it is down: the partial line completes, more lines, then a size rotation.
    writeln!(f, "\"line\"}}").unwrap();
    for i in 10..15 {
        writeln!(f, "{}", warn_line(i, trace)).unwrap();
    }
    drop(f);
    std::fs::rename(&log, logs.join("openclaw-2026-11-21.log.1")).unwrap();
    let mut f = std::fs::File::create(&log).unwrap();
    for i in 15..20 {
        writeln!(f, "{}", warn_line(i, trace)).unwrap();
    }
    drop(f);
    let mut d = Daemon::start_in(dir.path(), &env);
    assert_eq!(d.wait_count(count, 20, Duration::from_secs(10)), 20);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count_of(&d, count), 20, "nothing repeated");
    let distinct =
        "SELECT count(DISTINCT json_extract(attributes, '$.\"openclaw.run_id\"')) FROM events";
    assert_eq!(count_of(&d, distinct), 20, "nothing skipped");
    assert!(d.stop().success());
}

fn count_of(d: &Daemon, sql: &str) -> i64 {
    d.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_log_flood_waits_in_the_file_and_never_starves_capture() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("openclaw-flood.log");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    let lines = 20_000;
    for i in 0..lines {
        writeln!(f, "{}", warn_line(i, "590290b6c4e5f2264479c9bd422f332c")).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let path = log.display().to_string();
    let d = Daemon::start_in(
        dir.path(),
        &[
            ("OCT_LOG_PATH", path.as_str()),
            ("OCT_LOG_MAX_LINES_PER_SEC", "4000"),
            ("OCT_LOG_POLL_INTERVAL", "50ms"),
            ("OCT_QUEUE_CAPACITY", "2000"),
            ("OCT_OPENCLAW_STATE_DIR", "off"),
        ],
    );
    // Capture keeps being accepted during the flood.
    for i in 0..20 {
        let r = post_json(
            &d.url("/v1/events"),
            &json!({"name": format!("during-flood-{i}")}),
        );
        assert_eq!(r.status(), 202, "capture refused during a log flood");
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = "SELECT count(*) FROM events WHERE source = 'openclaw-log'";
    assert_eq!(
        d.wait_count(all, lines as i64, Duration::from_secs(30)),
        lines as i64,
        "every line arrives, at the rate limit"
    );
    assert_eq!(
        count_of(
            &d,
            "SELECT count(*) FROM events WHERE name LIKE 'during-flood-%'"
        ),
        20
    );
}

#[test]
fn transcripts_are_read_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let sessions = state.join("agents/main/sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    // The sample transcript as legacy session files, one deleted, one reset.
    let mut by_session: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for l in fixture("transcript_events.jsonl").lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        by_session
            .entry(v["session_id"].as_str().unwrap().to_string())
            .or_default()
            .push(v["event"].to_string());
    }
    for (i, (sid, lines)) in by_session.iter().enumerate() {
        let name = match i {
            0 => format!("{sid}.jsonl.deleted.2026-11-21T09-30-00.000Z"),
            1 => format!("{sid}.jsonl.reset.2026-11-21T09-30-00.000Z"),
            _ => format!("{sid}.jsonl"),
        };
        std::fs::write(sessions.join(name), lines.join("\n") + "\n").unwrap();
    }
    let state_text = state.display().to_string();
    let env = [
        ("OCT_LOG_PATH", "off"),
        ("OCT_OPENCLAW_STATE_DIR", state_text.as_str()),
        ("OCT_TRANSCRIPT_POLL_INTERVAL", "200ms"),
        ("OCT_TRANSCRIPT_GRACE", "0s"),
    ];
    let mut d = Daemon::start_in(dir.path(), &env);
    let calls = "SELECT count(*) FROM spans WHERE kind = 'llm_call'";
    assert_eq!(d.wait_count(calls, 8, Duration::from_secs(10)), 8);
    let tokens = "SELECT sum(input_tokens) FROM traces";
    assert_eq!(count_of(&d, tokens), 123 * 5 + 200 * 2);
    // The session view shows what the model said, from the transcript alone: the call
    // that asked for the tool has no text, the tool call (its arguments and result,
    // checked below) sits between, the answer has.
    let s = d.get_json("/v1/sessions/6cbd573f-cf55-40e4-9f5a-2951a972e3f6");
    let said: Vec<(String, Option<String>)> = s["turns"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["messages"].as_array().unwrap().clone())
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["text"].as_str().map(str::to_string),
            )
        })
        .collect();
    let answer = Some("Hello from the fake LLM. The answer is 42.".to_string());
    assert_eq!(
        said,
        vec![
            ("assistant".to_string(), None),
            ("tool".to_string(), None),
            ("assistant".to_string(), answer)
        ],
        "{s}"
    );
    let tool = &s["turns"][0]["messages"][1];
    assert_eq!(tool["arguments"], r#"{"path":"."}"#, "{tool}");
    assert!(
        tool["result"].as_str().unwrap().contains("AGENTS.md"),
        "{tool}"
    );
    assert!(d.stop().success());
    let mut d = Daemon::start_in(dir.path(), &env);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count_of(&d, calls), 8, "nothing read twice after a restart");
    assert_eq!(count_of(&d, tokens), 123 * 5 + 200 * 2);
    assert!(d.stop().success());
}

#[test]
fn fixture_times_move_together_to_now() {
    let text = r#"{"ts": 1795253654200, "t": "2026-11-21T09:17:14.713Z", "u": "2026-11-21T09:20:07.835+00:00", "v": "2026-11-21T09:17:14Z", "n": 12345, "f": "x.jsonl.reset.2026-11-21T09-30-00.000Z", "ms": 17952536542001}"#;
    let out = fixture_at_now(text);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ts = v["ts"].as_i64().unwrap();
    let newest = find_times(&out).iter().map(|t| t.ms).max().unwrap();
    assert!((now_ms() - 60_000 - newest).abs() < 5_000, "{out}");
    let iso = |k: &str| {
        let t = time::OffsetDateTime::parse(
            v[k].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        (t.unix_timestamp_nanos() / 1_000_000) as i64
    };
    // Spacing kept: the originals are 1795252634713, 1795253... apart as they were.
    assert_eq!(iso("t") - ts, 1_795_252_634_713 - 1_795_253_654_200);
    assert_eq!(iso("u") - ts, 1_795_252_807_835 - 1_795_253_654_200);
    assert_eq!(iso("v") - ts, 1_795_252_634_000 - 1_795_253_654_200);
    assert!(v["t"].as_str().unwrap().ends_with('Z'));
    assert!(v["u"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(v["n"], 12345);
    assert_eq!(v["f"], "x.jsonl.reset.2026-11-21T09-30-00.000Z");
    assert_eq!(v["ms"], 17952536542001i64);
}

/// Lays the sample transcript out as OpenClaw's session files under `state`.
fn transcript_files(state: &Path) {
    let sessions = state.join("agents/main/sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let mut by_session: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for l in fixture("transcript_events.jsonl").lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        by_session
            .entry(v["session_id"].as_str().unwrap().to_string())
            .or_default()
            .push(v["event"].to_string());
    }
    for (sid, lines) in &by_session {
        std::fs::write(
            sessions.join(format!("{sid}.jsonl")),
            lines.join("\n") + "\n",
        )
        .unwrap();
    }
}

/// The sample's `ls` tool calls: (call id, status, input, input length, output, output length).
type ToolRow = (
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

fn tool_rows(d: &Daemon) -> Vec<ToolRow> {
    let db = d.db();
    let mut st = db
        .prepare(
            "SELECT tool_call_id, status, input_text, input_text_len, output_text, output_text_len
             FROM spans WHERE kind = 'tool_call' ORDER BY tool_call_id",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Transcripts carry each tool call's arguments (the assistant message's `toolCall`)
/// and result text (the `toolResult` message), cut at OCT_MAX_TEXT_BYTES with the
/// original length kept, whole with OCT_TRACE_VERBOSE; with the plugin's events too,
/// each call is still one span.
#[test]
fn transcripts_carry_tool_arguments_and_results_within_the_text_limits() {
    let listing =
        "\".git/\"\n\"AGENTS.md\"\n\"BOOTSTRAP.md\"\n\"IDENTITY.md\"\n\"SOUL.md\"\n\"USER.md\"";
    let args = r#"{"path":"."}"#;
    let mut seen = Vec::new();
    for verbose in ["0", "1"] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        transcript_files(&state);
        let state_text = state.display().to_string();
        let d = Daemon::start_in(
            dir.path(),
            &[
                ("OCT_LOG_PATH", "off"),
                ("OCT_OPENCLAW_STATE_DIR", state_text.as_str()),
                ("OCT_TRANSCRIPT_POLL_INTERVAL", "200ms"),
                ("OCT_TRANSCRIPT_GRACE", "0s"),
                ("OCT_MAX_TEXT_BYTES", "20"),
                ("OCT_TRACE_VERBOSE", verbose),
            ],
        );
        let with_result =
            "SELECT count(*) FROM spans WHERE kind = 'tool_call' AND output_text IS NOT NULL";
        assert_eq!(d.wait_count(with_result, 2, Duration::from_secs(10)), 2);
        let rows = tool_rows(&d);
        assert_eq!(rows.len(), 2, "{rows:?}");
        for (id, status, input, input_len, output, output_len) in &rows {
            assert!(
                ["call_a767ede2", "call_f3d3a081"].contains(&id.as_str()),
                "{id}"
            );
            assert_eq!(status, "ok");
            assert_eq!(input.as_deref(), Some(args));
            assert_eq!(*input_len, Some(args.len() as i64));
            assert_eq!(
                *output_len,
                Some(listing.len() as i64),
                "the original length"
            );
            let want = if verbose == "1" {
                listing
            } else {
                &listing[..20]
            };
            assert_eq!(output.as_deref(), Some(want));
        }
        seen.push(rows);
    }
    // With the plugin's record of the same calls, each is one span (merged by its key).
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state_text = state.display().to_string();
    let d = Daemon::start_in(
        dir.path(),
        &[
            ("OCT_LOG_PATH", "off"),
            ("OCT_OPENCLAW_STATE_DIR", state_text.as_str()),
            ("OCT_TRANSCRIPT_POLL_INTERVAL", "200ms"),
            ("OCT_TRANSCRIPT_GRACE", "0s"),
        ],
    );
    let r = post_raw(
        &d.url("/v1/openclaw/events"),
        fixture("bridge_events.jsonl"),
    );
    assert_eq!(r.status(), 202);
    let tools = "SELECT count(*) FROM spans WHERE kind = 'tool_call'";
    let from_plugin = d.wait_count(tools, 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let from_plugin = from_plugin.max(count(&d.db_path, tools));
    transcript_files(&state);
    let llm = "SELECT count(*) FROM spans WHERE attributes LIKE '%openclaw.transcript%'";
    d.wait_count(llm, 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&d.db_path, tools), from_plugin, "{:?}", tool_rows(&d));
    let rows = tool_rows(&d);
    for id in ["call_a767ede2", "call_f3d3a081"] {
        let r = rows
            .iter()
            .find(|r| r.0 == id)
            .unwrap_or_else(|| panic!("{id}: {rows:?}"));
        assert!(r.2.is_some() && r.4.is_some(), "{r:?}");
    }
}
