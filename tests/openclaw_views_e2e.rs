//! The OpenClaw views against the REAL gateway 2026.9.6 (see tests/openclaw_e2e.rs): a
//! heartbeat every minute that answers `HEARTBEAT_OK` (the fake LLM's answer to OpenClaw's
//! heartbeat prompt), and a chat turn over the OpenAI-compatible endpoint. Checks what the
//! gateway really sends: the hook context's `trigger` and `channel`, the silent reply,
//! `model.usage`'s context window, and the cost the fake LLM's usage makes.

mod common;
#[path = "openclaw/harness.rs"]
mod harness;

use std::time::Duration;

use common::*;
use harness::{FakeLlm, Gateway, free_port, gateway_config, install_dir, node, wait_until};
use serde_json::{Value, json};

#[test]
fn real_gateway_heartbeats_channels_and_context() {
    let install = install_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    let state = dir.join("state");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // A heartbeat checklist with something in it (an empty one is skipped by OpenClaw).
    std::fs::create_dir_all(state.join("workspace")).unwrap();
    std::fs::write(
        state.join("workspace/HEARTBEAT.md"),
        "# Heartbeat\n\n- Check whether anything needs attention.\n",
    )
    .unwrap();
    let llm = FakeLlm::start(&node(&install), dir);
    let sidecar_port = free_port();
    let port_text = sidecar_port.to_string();
    let log_glob = format!("{}/openclaw-*.log*", logs.display());
    let sidecar = Daemon::start(&[
        ("OCT_PORT", port_text.as_str()),
        ("OCT_LOG_PATH", log_glob.as_str()),
        ("OCT_LOG_POLL_INTERVAL", "200ms"),
        ("OCT_OPENCLAW_STATE_DIR", "off"),
    ]);
    let gw_port = free_port();
    let mut config = gateway_config(
        gw_port,
        llm.port,
        &logs,
        json!({"url": format!("http://127.0.0.1:{sidecar_port}"), "flushIntervalMs": 200}),
    );
    // No delivery channel here: `target: "none"` runs the heartbeat without one.
    config["agents"]["defaults"]["heartbeat"] = json!({"every": "1m", "target": "none"});
    let gateway = Gateway::start(&install, &state, gw_port, &config);

    let turn = gateway.turn("Say hi");
    assert_eq!(
        turn["choices"][0]["message"]["content"],
        "Hello from the fake LLM."
    );

    // The first heartbeat comes within a minute or two of the start.
    let start = std::time::Instant::now();
    let sched = wait_until("a heartbeat run", Duration::from_secs(200), || {
        let s = sidecar.get_json("/v1/openclaw/scheduled");
        if start.elapsed() > Duration::from_secs(190) {
            let log: String = std::fs::read_dir(&logs)
                .unwrap()
                .flatten()
                .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("")
                .lines()
                .filter(|l| l.to_lowercase().contains("heartbeat"))
                .collect::<Vec<_>>()
                .join("\n");
            let traces = sidecar.get_json("/v1/traces");
            panic!(
                "no heartbeat run. LLM requests: {:?}\nlog: {log}\ntraces: {traces}\nspans: {:?}",
                llm.requests(),
                sidecar
                    .db()
                    .prepare("SELECT name, attributes FROM spans WHERE kind = 'agent_run'")
                    .unwrap()
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .unwrap()
                    .collect::<Vec<_>>()
            );
        }
        // A finished one: its answer and its model call's cost have arrived.
        let done = s["runs"].as_array().is_some_and(|rs| {
            rs.iter().any(|r| {
                r["trigger"] == "heartbeat"
                    && !r["silent_reply"].is_null()
                    && !r["cost_usd"].is_null()
            })
        });
        done.then_some(s)
    });
    eprintln!("scheduled: {sched:#}");
    let hb: Vec<&Value> = sched["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"] == "heartbeat" && !r["cost_usd"].is_null())
        .collect();
    // The main session's key: OpenClaw runs heartbeats there.
    assert_eq!(hb[0]["session_key"], "agent:main:main");
    assert_eq!(hb[0]["silent_reply"], "HEARTBEAT_OK", "{sched:#}");
    assert!(sched["totals"]["heartbeat_ok"].as_i64().unwrap() >= 1);
    // The fake model costs $1/$2 per million tokens: 90 in, 3 out per heartbeat call.
    let per_call = (90.0 * 1.0 + 3.0 * 2.0) / 1e6;
    let cost = hb[0]["cost_usd"].as_f64().unwrap();
    let calls = hb[0]["llm_calls"].as_i64().unwrap();
    assert!(
        (cost - per_call * calls as f64).abs() < 1e-9,
        "{cost} for {calls} calls"
    );

    // Channels: the chat turn came through the HTTP endpoint (OpenClaw says "webchat").
    let ch = sidecar.get_json("/v1/openclaw/channels");
    eprintln!("channels: {ch:#}");
    assert!(
        ch["channels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["runs"].as_i64() >= Some(1) && c["channel"] != "(unknown)"),
        "{ch:#}"
    );
    // Context: model.usage carries the window the config gives the model (128,000).
    let ctx = sidecar.get_json("/v1/openclaw/context");
    eprintln!("context: {ctx:#}");
    assert!(
        ctx["turns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["context_window"] == 128_000),
        "{ctx:#}"
    );
    let requests = llm.requests();
    assert!(
        requests.iter().any(|r| r["behavior"] == "heartbeat"),
        "{requests:?}"
    );
}
