//! `openclaw-trace openclaw gateway`: the hand-rolled WebSocket client against the REAL
//! gateway 2026.9.6 (see tests/openclaw_e2e.rs): the protocol's challenge and connect,
//! `health`, `status`, `usage.cost`, `sessions.usage` and `cron.list`; a wrong token and a
//! stopped gateway are one clear line each, and the token is never printed.

mod common;
#[path = "openclaw/harness.rs"]
mod harness;

use std::process::Command;

use std::time::Duration;

use common::{BIN, Daemon};
use harness::{
    FakeLlm, GATEWAY_TOKEN, Gateway, free_port, gateway_config, install_dir, node, wait_until,
};
use serde_json::{Value, json};

fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(args).env_clear().env("HOME", "/nonexistent");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn the_gateway_answers_its_read_only_methods_over_websocket() {
    let install = install_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let llm = FakeLlm::start(&node(&install), dir);
    let sidecar_port = free_port().to_string();
    let sidecar = Daemon::start(&[
        ("OCT_PORT", sidecar_port.as_str()),
        ("OCT_LOG_PATH", "off"),
        ("OCT_OPENCLAW_STATE_DIR", "off"),
    ]);
    let port = free_port();
    let config = gateway_config(
        port,
        llm.port,
        &logs,
        json!({"url": format!("http://127.0.0.1:{sidecar_port}"), "flushIntervalMs": 200}),
    );
    let mut gw = Gateway::start(&install, &dir.join("state"), port, &config);
    let turn = gw.turn("Say hi");
    assert_eq!(
        turn["choices"][0]["message"]["content"],
        "Hello from the fake LLM."
    );
    let url = format!("ws://127.0.0.1:{port}");

    // The token from the environment, as OCT_OPENCLAW_GATEWAY_TOKEN.
    let out = cli(
        &["openclaw", "gateway", "--url", &url, "--timeout", "20s"],
        &[("OCT_OPENCLAW_GATEWAY_TOKEN", GATEWAY_TOKEN)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap["server"]["version"], "2026.9.6");
    assert_eq!(snap["health"]["ok"], true);
    assert_eq!(snap["status"]["runtimeVersion"], "2026.9.6");
    let jobs: Vec<&str> = snap["cron.list"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert!(jobs.contains(&"heartbeat-main"), "{jobs:?}");
    // OpenClaw's own totals are there to compare with ours (its numbers for the turn may lag).
    assert!(
        snap["sessions.usage"]["totals"]["totalTokens"].is_number(),
        "{}",
        snap["sessions.usage"]
    );
    assert!(snap["usage.cost"]["totals"].is_object() || snap["usage.cost"]["daily"].is_array());

    // OpenClaw's own totals against ours over its days: the turn's 140 tokens and its cost.
    sidecar.wait_count(
        "SELECT count(*) FROM spans WHERE kind = 'llm_call' AND cost_usd IS NOT NULL",
        1,
        Duration::from_secs(20),
    );
    let db = sidecar.db_path.display().to_string();
    let cmp = wait_until(
        "OpenClaw's sessions.usage to agree",
        Duration::from_secs(60),
        || {
            let out = cli(
                &[
                    "openclaw",
                    "gateway",
                    "--url",
                    &url,
                    "--compare",
                    "--timeout",
                    "20s",
                ],
                &[
                    ("OCT_OPENCLAW_GATEWAY_TOKEN", GATEWAY_TOKEN),
                    ("OCT_DB_PATH", &db),
                ],
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            eprintln!("comparison: {}", v["comparison"]);
            out.status.success().then(|| v["comparison"].clone())
        },
    );
    assert_eq!(cmp["agree"], true);
    assert_eq!(cmp["openclaw_trace"]["total_tokens"], 140, "{cmp}");
    assert_eq!(cmp["openclaw"]["total_tokens"], 140.0, "{cmp}");

    // A wrong token: the gateway's reason, not the token.
    let out = cli(
        &[
            "openclaw",
            "gateway",
            "--url",
            &url,
            "--token",
            "wrong-s3cret",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AUTH_TOKEN_MISMATCH"), "{err}");
    assert!(
        !err.contains("wrong-s3cret") && out.stdout.is_empty(),
        "{err}"
    );

    // The gateway stopped: one line, exit 1.
    gw.proc.stop();
    let out = cli(
        &[
            "openclaw",
            "gateway",
            "--url",
            &url,
            "--token",
            GATEWAY_TOKEN,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the gateway"));
    drop(llm);
}
