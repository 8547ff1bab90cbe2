//! The OpenClaw gateway as a source of the daemon (src/sources/openclaw_gateway.rs),
//! against the REAL gateway 2026.9.6 (see tests/openclaw_e2e.rs): one daemon polls it with
//! the token and `operator.read` (up, version, skills, cron jobs, the session index,
//! OpenClaw's sessions.usage agreeing with ours, in /health, the views, the CLI and
//! doctor); one connects without any scope and one with a wrong token (each one named
//! condition in /health, never a crash); then the gateway stops (`unreachable`, capture
//! through the API goes on) and starts again (the condition clears).

mod common;
#[path = "openclaw/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use common::*;
use harness::{
    FakeLlm, GATEWAY_TOKEN, Gateway, free_port, gateway_config, install_dir, node, wait_until,
};
use serde_json::{Value, json};

fn gateway_of(d: &Daemon) -> Value {
    d.get_json("/health")["openclaw_gateway"].clone()
}

fn wait_condition(d: &Daemon, want: &str, within: Duration) -> Value {
    wait_until(&format!("the gateway condition {want}"), within, || {
        let g = gateway_of(d);
        (g["condition"] == want).then_some(g)
    })
}

#[test]
fn the_daemon_polls_the_real_gateway_and_names_each_condition() {
    let install = install_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let llm = FakeLlm::start(&node(&install), dir);
    let gw_port = free_port();
    let url = format!("ws://127.0.0.1:{gw_port}");
    let sidecar_port = free_port().to_string();
    let common = [
        ("OCT_LOG_PATH", "off"),
        ("OCT_OPENCLAW_STATE_DIR", "off"),
        ("OCT_OPENCLAW_GATEWAY_URL", url.as_str()),
        ("OCT_OPENCLAW_GATEWAY_POLL_INTERVAL", "1s"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, &str)> = common.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let mut env_a = with(&[("OCT_OPENCLAW_GATEWAY_TOKEN", GATEWAY_TOKEN)]);
    env_a.push(("OCT_PORT", sidecar_port.as_str()));
    let a = Daemon::start(&env_a);
    let no_scope = Daemon::start(&with(&[
        ("OCT_OPENCLAW_GATEWAY_TOKEN", GATEWAY_TOKEN),
        ("OCT_OPENCLAW_GATEWAY_SCOPES", "none"),
    ]));
    let wrong = Daemon::start(&with(&[("OCT_OPENCLAW_GATEWAY_TOKEN", "wrong-s3cret")]));

    // Before the gateway runs: unreachable, said in /health, the daemon serving.
    let g = wait_condition(&a, "unreachable", Duration::from_secs(20));
    assert_eq!(g["up"], false);
    let h = a.get_json("/health");
    assert!(
        h["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("openclaw gateway unreachable")),
        "{h:#}"
    );

    let config = gateway_config(
        gw_port,
        llm.port,
        &logs,
        json!({"url": format!("http://127.0.0.1:{sidecar_port}"), "flushIntervalMs": 200}),
    );
    let state = dir.join("state");
    let mut gw = Gateway::start(&install, &state, gw_port, &config);
    let turn = gw.turn("Say hi");
    assert_eq!(
        turn["choices"][0]["message"]["content"],
        "Hello from the fake LLM."
    );

    // The daemon with the token: up, version, and OpenClaw's totals agreeing with ours.
    let g = wait_until(
        "the gateway up, its sessions.usage agreeing",
        Duration::from_secs(90),
        || {
            let g = gateway_of(&a);
            let c = &g["comparison"];
            (g["condition"] == "ok"
                && c["agree"] == true
                && c["openclaw_trace"]["total_tokens"] == 140)
                .then_some(g)
        },
    );
    eprintln!("gateway: {g:#}");
    assert_eq!(g["version"], "2026.9.6");
    assert_eq!(g["protocol"], 4);
    assert_eq!(g["up"], true);
    assert_eq!(g["comparison"]["openclaw"]["total_tokens"], 140.0);
    assert_eq!(g["comparison"]["openclaw_trace"]["total_tokens"], 140);
    assert!(g["detail"].is_null(), "{g:#}");

    // The full view: skills, cron jobs, the session index with the model's window.
    let full = a.get_json("/v1/openclaw/gateway");
    assert_eq!(full["condition"], "ok");
    let sessions = full["sessions"]["sessions"].as_array().unwrap();
    assert!(
        sessions
            .iter()
            .any(|s| s["context_tokens"] == 128_000 && s["input_tokens"] == 123),
        "{:#}",
        full["sessions"]
    );
    let skills = a.get_json("/v1/openclaw/skills");
    assert_eq!(skills["condition"], "ok");
    let n = skills["totals"]["skills"].as_u64().unwrap();
    assert!(n >= 10, "{n} skills");
    assert_eq!(skills["skills"].as_array().unwrap().len() as u64, n);
    let sched = a.get_json("/v1/openclaw/scheduled");
    let jobs: Vec<&str> = sched["gateway"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert!(jobs.contains(&"heartbeat-main"), "{jobs:?}");

    // The CLI: skills from the daemon; doctor says the gateway agrees.
    let port = a.addr.port().to_string();
    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(BIN);
        c.args(args)
            .env_clear()
            .env("HOME", dir)
            .env("OCT_PORT", &port)
            .env("OCT_DB_PATH", &a.db_path)
            .env("OCT_LOG_PATH", "off")
            .env("OCT_OPENCLAW_STATE_DIR", "off")
            .env("OCT_OPENCLAW_GATEWAY_URL", &url)
            .env("OCT_OPENCLAW_GATEWAY_TOKEN", GATEWAY_TOKEN);
        c.output().unwrap()
    };
    let out = cli(&["openclaw", "skills"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with(&format!("{n} skills, ")), "{text}");
    let out = cli(&["doctor", "--json"]);
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "openclaw gateway")
        .cloned()
        .unwrap();
    assert_eq!(check["level"], "ok", "{check:#}");
    assert!(
        check["detail"].as_str().unwrap().contains("agrees"),
        "{check:#}"
    );

    // Without a scope: the gateway answers `health` but refuses the rest.
    let g = wait_condition(&no_scope, "scope_missing", Duration::from_secs(30));
    assert!(
        g["detail"].as_str().unwrap().contains("missing scope"),
        "{g:#}"
    );
    assert_eq!(g["up"], true);
    let h = no_scope.get_json("/health");
    assert!(
        h["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("scope_missing")),
        "{h:#}"
    );
    assert_eq!(
        no_scope.get_json("/v1/openclaw/skills")["condition"],
        "scope_missing"
    );
    // A wrong token: refused, the token never shown.
    let g = wait_condition(&wrong, "auth_refused", Duration::from_secs(30));
    let shown = wrong.get_json("/health").to_string();
    assert!(
        g["detail"]
            .as_str()
            .unwrap()
            .contains("AUTH_TOKEN_MISMATCH")
    );
    assert!(!shown.contains("wrong-s3cret"));

    // The gateway stops: unreachable, and capture through the API goes on.
    let stopped = Instant::now();
    gw.proc.stop();
    let g = wait_condition(&a, "unreachable", Duration::from_secs(30));
    eprintln!("down after {:?}: {g}", stopped.elapsed());
    let r = post_json(
        &a.url("/v1/traces"),
        &json!({"provider": "openai", "model": "gpt-4o", "name": "while the gateway is down", "prompt_tokens": 5, "completion_tokens": 1}),
    );
    assert_eq!(r.status().as_u16(), 202);
    a.wait_count(
        "SELECT count(*) FROM spans WHERE name = 'while the gateway is down'",
        1,
        Duration::from_secs(10),
    );
    // It starts again: the condition clears.
    let restarted = Instant::now();
    let _gw = Gateway::start_existing(&install, &state, gw_port);
    let g = wait_condition(&a, "ok", Duration::from_secs(60));
    eprintln!("ok again {:?} after the restart", restarted.elapsed());
    assert_eq!(g["version"], "2026.9.6");
    let h = a.get_json("/health");
    assert!(
        !h["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("openclaw gateway unreachable")),
        "{h:#}"
    );
    drop(llm);
}
