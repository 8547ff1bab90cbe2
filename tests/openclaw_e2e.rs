//! End to end with the REAL OpenClaw gateway (npm openclaw@2026.9.6 on Node 24, installed
//! into .cache/openclaw by scripts/setup-openclaw.sh): our plugin loaded from
//! integrations/openclaw, a fake streaming LLM on loopback, the sidecar tailing the
//! gateway's file log and reading its transcripts. Drives a plain turn, a tool turn
//! (while the sidecar is down: the plugin keeps and resends) and a failing turn, then
//! checks the sidecar against what OpenClaw itself wrote to its transcript.

mod common;
#[path = "openclaw/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use harness::{FakeLlm, Gateway, free_port, gateway_config, install_dir, node, wait_until};
use serde_json::{Value, json};

/// What OpenClaw wrote to its transcript: (run id, input, output, cost) per assistant message.
fn transcript_usage(state: &Path) -> Vec<(String, i64, i64, f64)> {
    let db = state.join("agents/main/agent/openclaw-agent.sqlite");
    let c = open_db(&db);
    let mut stmt = c
        .prepare(
            "SELECT event_json FROM transcript_events WHERE event_json IS NOT NULL
             AND json_extract(event_json, '$.message.role') = 'assistant'
             AND json_extract(event_json, '$.message.usage') IS NOT NULL",
        )
        .unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.iter()
        .map(|t| {
            let v: Value = serde_json::from_str(t).unwrap();
            let m = &v["message"];
            (
                m["__openclaw"]["runId"].as_str().unwrap_or("").to_string(),
                m["usage"]["input"].as_i64().unwrap_or(0),
                m["usage"]["output"].as_i64().unwrap_or(0),
                m["usage"]["cost"]["total"].as_f64().unwrap_or(0.0),
            )
        })
        .collect()
}

#[test]
fn real_gateway_end_to_end() {
    let started = Instant::now();
    let install = install_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let mut llm = FakeLlm::start(&node(&install), dir);

    // The sidecar, on a fixed port so the plugin finds it again after a restart.
    let sidecar_port = free_port();
    let port_text = sidecar_port.to_string();
    let log_glob = format!("{}/openclaw-*.log*", logs.display());
    let state_text = state.display().to_string();
    let sidecar_env = [
        ("OCT_PORT", port_text.as_str()),
        ("OCT_LOG_PATH", log_glob.as_str()),
        ("OCT_LOG_POLL_INTERVAL", "200ms"),
        ("OCT_OPENCLAW_STATE_DIR", state_text.as_str()),
        ("OCT_TRANSCRIPT_POLL_INTERVAL", "500ms"),
        ("OCT_TRANSCRIPT_GRACE", "1s"),
    ];
    let sidecar_dir = dir.join("sidecar");
    std::fs::create_dir_all(&sidecar_dir).unwrap();
    let mut sidecar = Daemon::start_in(&sidecar_dir, &sidecar_env);

    let gw_port = free_port();
    let config = gateway_config(
        gw_port,
        llm.port,
        &logs,
        json!({"url": format!("http://127.0.0.1:{sidecar_port}"), "flushIntervalMs": 200}),
    );
    let mut gateway = Gateway::start(&install, &state, gw_port, &config);
    eprintln!("gateway ready after {:?}", started.elapsed());

    // 1. A plain turn.
    let plain = gateway.turn("Say hi");
    assert_eq!(
        plain["choices"][0]["message"]["content"],
        "Hello from the fake LLM."
    );
    let plain_run = plain["id"].as_str().unwrap().to_string();
    wait_until(
        "the plain turn in the sidecar",
        Duration::from_secs(20),
        || {
            (sidecar.wait_count(
                "SELECT count(*) FROM spans WHERE kind = 'llm_call' AND input_tokens IS NOT NULL",
                1,
                Duration::ZERO,
            ) >= 1)
                .then_some(())
        },
    );

    // 2. The sidecar stops; a turn with a tool call happens meanwhile; it starts again.
    assert!(sidecar.stop().success());
    let tool = gateway.turn("Please use a TOOL to list files");
    let tool_run = tool["id"].as_str().unwrap().to_string();
    assert_eq!(
        tool["choices"][0]["message"]["content"],
        "The folder holds a few files."
    );
    std::thread::sleep(Duration::from_secs(1));
    let sidecar = Daemon::start_in(&sidecar_dir, &sidecar_env);

    // 3. A turn whose model call fails (HTTP 400: not retried, so it fails at once).
    let failed = gateway.turn("Please FAIL now");
    assert!(failed.get("error").is_some(), "{failed}");

    // What the LLM saw: the traceparent of each request, in order.
    let requests = llm.requests();
    let behaviors: Vec<&str> = requests
        .iter()
        .map(|r| r["behavior"].as_str().unwrap())
        .collect();
    assert_eq!(behaviors, ["text", "tool_call", "tool_answer", "fail"]);
    let traceparent = |i: usize| -> (String, String) {
        let tp = requests[i]["traceparent"]
            .as_str()
            .expect("traceparent sent to the LLM");
        let parts: Vec<&str> = tp.split('-').collect();
        (parts[1].to_string(), parts[2].to_string())
    };
    let (plain_trace, plain_call) = traceparent(0);
    let (tool_trace, tool_call_1) = traceparent(1);
    let (tool_trace_2, tool_call_2) = traceparent(2);
    let (fail_trace, fail_call) = traceparent(3);
    assert_eq!(tool_trace, tool_trace_2, "one trace per run");

    // OpenClaw's own numbers, from its transcript.
    let usage = wait_until("OpenClaw's transcript", Duration::from_secs(20), || {
        let u = transcript_usage(&state);
        (u.len() >= 4).then_some(u)
    });
    let run_totals = |run: &str| -> (i64, i64, f64) {
        usage
            .iter()
            .filter(|u| u.0 == run)
            .fold((0, 0, 0.0), |a, u| (a.0 + u.1, a.1 + u.2, a.2 + u.3))
    };
    let all: (i64, i64) = usage.iter().fold((0, 0), |a, u| (a.0 + u.1, a.1 + u.2));

    // Everything has arrived: 4 model calls (the tool run's resent by the plugin), a tool
    // call, the transcript read up to its end, and the failure's log lines.
    let db = || sidecar.db();
    let one = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> i64 {
        db().query_row(sql, args, |r| r.get(0)).unwrap_or(-1)
    };
    let hexb = |h: &str| -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    };
    wait_until(
        "all records in the sidecar",
        Duration::from_secs(45),
        || {
            let llm = one("SELECT count(*) FROM spans WHERE kind = 'llm_call'", &[]);
            let with_usage = one(
                "SELECT count(*) FROM spans WHERE kind = 'llm_call' AND input_tokens IS NOT NULL",
                &[],
            );
            let tools = one(
                "SELECT count(*) FROM spans WHERE kind = 'tool_call' AND end_ns IS NOT NULL",
                &[],
            );
            let transcript_read = one(
                "SELECT count(*) FROM source_offsets WHERE source = 'openclaw-transcript-db'",
                &[],
            );
            let log_error = one(
                "SELECT count(*) FROM events WHERE source = 'openclaw-log' AND trace_id = ?1",
                &[&hexb(&fail_trace)],
            );
            (llm == 4 && with_usage == 4 && tools == 1 && transcript_read == 1 && log_error > 0)
                .then_some(())
        },
    );
    // The transcript reader has read past the last message (grace is 1s).
    std::thread::sleep(Duration::from_secs(3));

    // One trace per run, its root an agent_run; model calls carry the traceparent's span id.
    for (run, trace, calls) in [
        (&plain_run, &plain_trace, vec![&plain_call]),
        (&tool_run, &tool_trace, vec![&tool_call_1, &tool_call_2]),
    ] {
        let c = db();
        let (root, llm_calls, input, output, cost, status): (Vec<u8>, i64, i64, i64, f64, String) =
            c.query_row(
                "SELECT root_span_id, llm_calls, input_tokens, output_tokens, cost_usd, status
                 FROM traces WHERE trace_id = ?1",
                [hexb(trace)],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(llm_calls, calls.len() as i64);
        let (t_in, t_out, t_cost) = run_totals(run);
        assert_eq!(
            (input, output),
            (t_in, t_out),
            "tokens as OpenClaw reported them"
        );
        assert!(
            (cost - t_cost).abs() < 1e-12,
            "cost {cost} vs OpenClaw's {t_cost}"
        );
        assert_eq!(status, "ok");
        let root_kind: String = c
            .query_row(
                "SELECT kind FROM spans WHERE trace_id = ?1 AND span_id = ?2 AND parent_span_id IS NULL",
                [hexb(trace), root.clone()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(root_kind, "agent_run");
        for call in calls {
            // Each model call nests under the run, whose ancestors reach the root.
            let mut span = hexb(call);
            let mut depth = 0;
            loop {
                let parent: Option<Vec<u8>> = c
                    .query_row(
                        "SELECT parent_span_id FROM spans WHERE trace_id = ?1 AND span_id = ?2",
                        [hexb(trace), span.clone()],
                        |r| r.get(0),
                    )
                    .unwrap_or_else(|e| panic!("span {} missing: {e}", hex_of(&span)));
                match parent {
                    None => break,
                    Some(p) => span = p,
                }
                depth += 1;
                assert!(depth < 10);
            }
            assert_eq!(
                span, root,
                "the model call's ancestors reach the run's root"
            );
            assert_eq!(depth, 3, "root > harness attempt > run > model call");
        }
    }
    let tool_parent: i64 = one(
        "SELECT count(*) FROM spans t JOIN spans m ON m.trace_id = t.trace_id
            AND m.parent_span_id = t.parent_span_id
         WHERE t.kind = 'tool_call' AND t.tool_name = 'ls' AND m.kind = 'llm_call' AND t.trace_id = ?1",
        &[&hexb(&tool_trace)],
    );
    assert_eq!(
        tool_parent, 2,
        "the tool call sits beside the model calls, under the run"
    );

    // The failure: one error event linked to its trace and its model call span (whether
    // the plugin or the transcript reported it first: a provisional link follows the span).
    let fail_events = one(
        "SELECT count(*) FROM events WHERE type = 'error' AND source LIKE 'openclaw%'
            AND source != 'openclaw-log'
            AND trace_id = ?1 AND span_id = ?2 AND message LIKE '%fake bad request%'",
        &[&hexb(&fail_trace), &hexb(&fail_call)],
    );
    assert_eq!(fail_events, 1);
    let all_fail_events = one(
        "SELECT count(*) FROM events WHERE type = 'error' AND source != 'openclaw-log'
            AND message LIKE '%fake bad request%'",
        &[],
    );
    assert_eq!(all_fail_events, 1, "the failure is reported once");
    let fail_status: String = db()
        .query_row(
            "SELECT status FROM traces WHERE trace_id = ?1",
            [hexb(&fail_trace)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fail_status, "error");
    // Gateway log events joined by trace id: the failover decision OpenClaw logged.
    let log_events = one(
        "SELECT count(*) FROM events WHERE source = 'openclaw-log' AND trace_id = ?1
            AND name IN ('model_fallback_decision', 'embedded_run_agent_end', 'embedded_run_failover_decision')",
        &[&hexb(&fail_trace)],
    );
    assert!(
        log_events >= 1,
        "log events joined to the failed run's trace"
    );

    // No double counting: the store's totals are the transcript's, with every call once.
    let (sum_in, sum_out): (i64, i64) = db()
        .query_row(
            "SELECT sum(input_tokens), sum(output_tokens) FROM spans WHERE kind = 'llm_call'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((sum_in, sum_out), all);
    let (trace_in, trace_out): (i64, i64) = db()
        .query_row(
            "SELECT sum(input_tokens), sum(output_tokens) FROM traces",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((trace_in, trace_out), all);
    assert_eq!(
        one("SELECT count(*) FROM spans WHERE kind = 'llm_call'", &[]),
        4
    );
    let repeated = one(
        "SELECT count(*) FROM (SELECT json_extract(attributes, '$.\"gen_ai.response.id\"') r, count(*) n
            FROM spans WHERE r IS NOT NULL GROUP BY r HAVING n > 1)",
        &[],
    );
    assert_eq!(repeated, 0, "each LLM response is one span");
    let traces = one("SELECT count(*) FROM traces", &[]);
    assert_eq!(
        traces, 3,
        "three runs, three traces (no leftover provisional ones)"
    );

    // `openclaw-trace traces` shows the runs with their numbers.
    let out = Command::new(BIN)
        .args(["traces", "--json"])
        .env("OCT_DB_PATH", &sidecar.db_path)
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = listed.to_string();
    for t in [&plain_trace, &tool_trace, &fail_trace] {
        assert!(text.contains(t.as_str()), "traces lists {t}");
    }

    gateway.proc.stop();
    llm.proc.stop();
    drop(sidecar);
    eprintln!("end to end took {:?}", started.elapsed());
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
