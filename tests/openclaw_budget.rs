//! The plugin's budget gate against the REAL OpenClaw gateway (see tests/openclaw_e2e.rs
//! for the setup): a tiny token budget, a turn that spends it, then
//! - with `refuseOverBudget` off (the default) the next turn still reaches the LLM;
//! - switched on (the gateway reloads the plugin), the next turn never reaches the LLM
//!   and the user reads a clear refusal;
//! - with the sidecar down, the gate fails open at once: the turn reaches the LLM.

mod common;
#[path = "openclaw/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use common::*;
use harness::{FakeLlm, Gateway, free_port, gateway_config, install_dir, node, wait_until};
use serde_json::{Value, json};

fn reply_text(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

#[test]
fn over_budget_runs_are_refused_before_the_llm_only_when_asked() {
    let started = Instant::now();
    let install = install_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let llm = FakeLlm::start(&node(&install), dir);

    // One plain turn is 140 tokens: over a 100-token daily budget for agent main.
    let sidecar_port = free_port();
    let port_text = sidecar_port.to_string();
    let sidecar_dir = dir.join("sidecar");
    std::fs::create_dir_all(&sidecar_dir).unwrap();
    let mut sidecar = Daemon::start_in(
        &sidecar_dir,
        &[
            ("OCT_PORT", port_text.as_str()),
            ("OCT_BUDGETS", "agent:main/day=100 tokens"),
            ("OCT_LOG_PATH", "off"),
        ],
    );
    let plugin_config = |refuse: bool| {
        json!({"url": format!("http://127.0.0.1:{sidecar_port}"), "flushIntervalMs": 200,
            "refuseOverBudget": refuse, "budgetCacheMs": 200})
    };
    let gw_port = free_port();
    let gateway = Gateway::start(
        &install,
        &state,
        gw_port,
        &gateway_config(gw_port, llm.port, &logs, plugin_config(false)),
    );
    eprintln!("gateway ready after {:?}", started.elapsed());

    // 1. A turn spends the budget.
    let first = gateway.turn("Say hi");
    assert_eq!(reply_text(&first), "Hello from the fake LLM.");
    let budget = || -> Value {
        reqwest::blocking::get(sidecar.url("/v1/budget?agent=main"))
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    };
    wait_until("agent main over budget", Duration::from_secs(30), || {
        (budget()["over"] == true).then_some(())
    });

    // 2. The option is off: over budget or not, the call goes through.
    let second = gateway.turn("Say hi again");
    assert_eq!(reply_text(&second), "Hello from the fake LLM.");
    assert_eq!(llm.requests().len(), 2);

    // 3. Switched on: the gateway reloads the plugin with the new config.
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&gateway.config_path).unwrap()).unwrap();
    config["plugins"]["entries"]["openclaw-trace"]["config"] = plugin_config(true);
    std::fs::write(
        &gateway.config_path,
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let gate_on = "refusing model calls while over budget";
    let log_text = || {
        let mut text = gateway.output();
        for e in std::fs::read_dir(&logs).unwrap().flatten() {
            text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        text
    };
    wait_until(
        "the plugin reloaded with the gate on",
        Duration::from_secs(60),
        || log_text().contains(gate_on).then_some(()),
    );
    let t = Instant::now();
    let refused = gateway.turn("Say hi once more");
    let refusal = reply_text(&refused);
    eprintln!("refused in {:?}: {refusal}", t.elapsed());
    if !refusal.contains("Budget exceeded") {
        let text = log_text();
        eprintln!("{}", &text[text.len().saturating_sub(6000)..]);
    }
    assert!(
        refusal.contains("Budget exceeded")
            && refusal.contains("agent:main/day/tokens spent")
            && refusal.contains("of 100 tokens"),
        "a clear refusal: {refused}"
    );
    assert_eq!(
        llm.requests().len(),
        2,
        "the refused turn never reached the LLM"
    );

    // 4. The sidecar is down: the gate fails open, without stalling the turn.
    assert!(sidecar.stop().success());
    std::thread::sleep(Duration::from_millis(300)); // past the cached answer
    let t = Instant::now();
    let open = gateway.turn("Say hi while the sidecar is down");
    let took = t.elapsed();
    eprintln!("fail-open turn took {took:?}");
    assert_eq!(reply_text(&open), "Hello from the fake LLM.");
    assert_eq!(llm.requests().len(), 3);
    assert!(took < Duration::from_secs(20), "{took:?}");
    drop(gateway);
    drop(llm);
    eprintln!("budget gate test took {:?}", started.elapsed());
}
