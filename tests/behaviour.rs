//! Behavioural metrics per run (agent-strace's): a scripted OpenClaw run, fed through the
//! plugin endpoint from the recorded session with known tool calls added, gives exact
//! retry rate, tool error rate, blast radius and tokens per call.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const TRACE: &str = "aaba956574194340ee2c2c3950ac5107";

/// The recorded session with four more tool calls after its first run's `ls`: write
/// notes.md, the same write again (a retry), a failed edit, and a patch of two files.
/// Each comes as OpenClaw sends it: the hook with arguments and result, and the
/// diagnostic event that places it in the run's trace.
fn scripted_session() -> String {
    let text = std::fs::read_to_string(
        Path::new(ROOT).join("tests/fixtures/openclaw/bridge_events.jsonl"),
    )
    .unwrap();
    let text = fixture_at_now(&text);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let diag = lines
        .iter()
        .find(|v| {
            v["kind"] == "tdiag:tool.execution.completed" && v["event"]["trace"]["traceId"] == TRACE
        })
        .expect("the run's tool diagnostic")
        .clone();
    let mut out = String::new();
    let mut added = false;
    for v in &lines {
        out.push_str(&v.to_string());
        out.push('\n');
        if added || v["kind"] != "hook:after_tool_call" {
            continue;
        }
        added = true;
        let ts = v["ts"].as_i64().unwrap();
        let patch = "*** Begin Patch\n*** Update File: src/main.rs\n@@\n-a\n+b\n*** Add File: docs/new.md\n+hello\n*** End Patch";
        let extra = [
            ("write", json!({"path": "notes.md", "content": "a"}), None),
            ("write", json!({"path": "notes.md", "content": "a"}), None),
            (
                "edit",
                json!({"path": "src/lib.rs", "oldText": "x", "newText": "y"}),
                Some("no match"),
            ),
            ("apply_patch", json!({"input": patch}), None),
        ];
        for (i, (tool, params, error)) in extra.into_iter().enumerate() {
            let id = format!("call_extra_{i}");
            let at = ts + 2 + 2 * i as i64;
            let mut e = v.clone();
            e["ts"] = json!(at);
            e["event"]["toolName"] = json!(tool);
            e["event"]["params"] = params;
            e["event"]["toolCallId"] = json!(id);
            e["event"]["durationMs"] = json!(1);
            e["ctx"]["toolName"] = json!(tool);
            e["ctx"]["toolCallId"] = json!(id);
            if let Some(err) = error {
                e["event"]["error"] = json!(err);
            }
            let mut g = diag.clone();
            let kind = if error.is_some() {
                "tool.execution.error"
            } else {
                "tool.execution.completed"
            };
            g["kind"] = json!(format!("tdiag:{kind}"));
            g["ts"] = json!(at);
            g["event"]["type"] = json!(kind);
            g["event"]["ts"] = json!(at);
            g["event"]["toolName"] = json!(tool);
            g["event"]["toolCallId"] = json!(id);
            g["event"]["durationMs"] = json!(1);
            g["event"]["trace"]["spanId"] = json!(format!("e{i:015x}"));
            g["event"]["seq"] = json!(1000 + i);
            out.push_str(&format!("{e}\n{g}\n"));
        }
    }
    out
}

#[test]
fn a_scripted_openclaw_run_gives_exact_behaviour_metrics() {
    let d = Daemon::start(&[
        ("OCT_LOG_PATH", "off"),
        ("OCT_OPENCLAW_STATE_DIR", "off"),
        ("OCT_BASELINE_SETTLE", "100ms"),
    ]);
    let r = client()
        .post(d.url("/v1/openclaw/events"))
        .header("content-type", "application/x-ndjson")
        .body(scripted_session())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    let sql = format!(
        "SELECT count(*) FROM traces WHERE hex(trace_id) = upper('{TRACE}') AND tool_calls = 5"
    );
    if d.wait_count(&sql, 1, Duration::from_secs(10)) != 1 {
        let spans: Vec<(String, String, Option<String>)> = d
            .db()
            .prepare("SELECT hex(trace_id), kind, tool_name FROM spans WHERE kind = 'tool_call'")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        panic!("{spans:?}");
    }
    let (llm_calls, tokens): (i64, i64) = d
        .db()
        .query_row(
            &format!(
                "SELECT llm_calls, total_tokens FROM traces WHERE hex(trace_id) = upper('{TRACE}')"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(llm_calls, 2);

    let check = d.get_json(&format!("/v1/baseline?run_id={TRACE}"));
    let value = |m: &str| {
        check["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["metric"] == m)
            .unwrap_or_else(|| panic!("{m} in {check}"))["value"]
            .as_f64()
    };
    assert_eq!(value("tool_calls"), Some(5.0));
    // ls, write, write (same tool, same arguments: one retry), edit, apply_patch.
    assert_eq!(value("retry_rate"), Some(1.0 / 5.0));
    // The edit failed.
    assert_eq!(value("tool_error_rate"), Some(1.0 / 5.0));
    // notes.md, src/main.rs, docs/new.md; the failed edit of src/lib.rs wrote nothing.
    assert_eq!(value("blast_radius"), Some(3.0));
    assert_eq!(value("tokens_per_call"), Some(tokens as f64 / 2.0));

    // Each finished run goes into the per-agent histograms of /metrics once checked.
    let metrics = || {
        client()
            .get(d.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let sample = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let start = std::time::Instant::now();
    let mut text = metrics();
    while sample(&text, "openclaw_trace_run_blast_radius_sum{agent=\"main\"}") != Some(3.0) {
        assert!(start.elapsed() < Duration::from_secs(10), "{text}");
        std::thread::sleep(Duration::from_millis(200));
        text = metrics();
    }
    // This run's three files are in the agent's histogram (the session's other runs
    // wrote none).
    let runs = sample(
        &text,
        "openclaw_trace_run_blast_radius_count{agent=\"main\"}",
    );
    assert!(runs >= Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "openclaw_trace_run_blast_radius_sum{agent=\"main\"}"),
        Some(3.0)
    );
    assert!(
        text.contains("openclaw_trace_run_tool_error_rate_bucket{"),
        "{text}"
    );
}
