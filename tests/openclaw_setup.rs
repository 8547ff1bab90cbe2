//! `openclaw-trace openclaw setup` against the REAL OpenClaw gateway of the end-to-end
//! test (scripts/setup-openclaw.sh): a gateway without our plugin captures nothing;
//! after `setup` (the plugin this binary carries, written under the state directory's
//! extensions/, enabled in the gateway config with the sidecar's address and token) and
//! a restart, a turn is captured; `--remove` and a restart stop it again.

mod common;
#[path = "openclaw/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use harness::{FakeLlm, Gateway, free_port, gateway_config, install_dir, node, wait_until};
use serde_json::{Value, json};

const TOKEN: &str = "setup-token";

fn setup(state: &Path, sidecar_port: u16, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["openclaw", "setup", "--state-dir"])
        .arg(state)
        .args(extra)
        .env_clear()
        .env("HOME", state)
        .env("OCT_PORT", sidecar_port.to_string())
        .env("OCT_AUTH_TOKEN", TOKEN)
        .output()
        .expect("run openclaw setup")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn setup_installs_the_plugin_into_a_real_gateway_and_remove_undoes_it() {
    let install = install_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let state = dir.join("state");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let llm = FakeLlm::start(&node(&install), dir);

    let sidecar_port = free_port();
    let sidecar_dir = dir.join("sidecar");
    std::fs::create_dir_all(&sidecar_dir).unwrap();
    let port_text = sidecar_port.to_string();
    let sidecar = Daemon::start_in(
        &sidecar_dir,
        &[
            ("OCT_PORT", port_text.as_str()),
            ("OCT_AUTH_TOKEN", TOKEN),
            ("OCT_OPENCLAW_STATE_DIR", "off"),
            ("OCT_LOG_PATH", "/nonexistent/none-*.log"),
        ],
    );
    let llm_calls = || {
        sidecar.wait_count(
            "SELECT count(*) FROM spans WHERE kind = 'llm_call'",
            i64::MAX,
            Duration::ZERO,
        )
    };

    // The e2e test's gateway config without our plugin and diagnostics.
    let mut config = gateway_config(free_port(), llm.port, &logs, json!({}));
    let obj = config.as_object_mut().unwrap();
    obj.remove("plugins");
    obj.remove("diagnostics");
    let gw_port = config["gateway"]["port"].as_u64().unwrap() as u16;
    let mut gateway = Gateway::start(&install, &state, gw_port, &config);
    let reply = gateway.turn("Say hi");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "Hello from the fake LLM."
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(llm_calls(), 0, "no plugin, nothing captured");

    // --dry-run shows the change and makes none.
    let cfg_path = state.join("openclaw.json");
    let before = std::fs::read(&cfg_path).unwrap();
    let dry = setup(&state, sidecar_port, &["--dry-run"]);
    let said = text(&dry);
    assert!(dry.status.success(), "{said}");
    assert!(said.contains("would write"), "{said}");
    assert!(said.contains("+         \"enabled\": true"), "{said}");
    assert!(!said.contains(TOKEN), "the token is never printed: {said}");
    assert!(!said.contains("e2e-token"), "nor the gateway's: {said}");
    assert_eq!(std::fs::read(&cfg_path).unwrap(), before);
    assert!(!state.join("extensions").exists());

    // setup: plugin files, config entry, a backup of the config as it was.
    let done = setup(&state, sidecar_port, &[]);
    assert!(done.status.success(), "{}", text(&done));
    let plugin = state.join("extensions/openclaw-trace");
    for f in ["index.js", "openclaw.plugin.json", "package.json"] {
        assert_eq!(
            std::fs::read(plugin.join(f)).unwrap(),
            std::fs::read(
                Path::new(harness::ROOT)
                    .join("integrations/openclaw")
                    .join(f)
            )
            .unwrap(),
            "{f}"
        );
    }
    assert!(!plugin.join("test").exists());
    let cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let entry = &cfg["plugins"]["entries"]["openclaw-trace"];
    assert_eq!(entry["enabled"], true);
    assert_eq!(
        entry["config"]["url"],
        format!("http://127.0.0.1:{sidecar_port}")
    );
    assert_eq!(entry["config"]["token"], TOKEN);
    assert_eq!(cfg["diagnostics"]["enabled"], true);
    assert_eq!(cfg["gateway"], config["gateway"], "the rest is kept");
    let backups: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("openclaw.json.bak-")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read(backups[0].path()).unwrap(), before);

    // Idempotent: a second run changes nothing.
    let again = setup(&state, sidecar_port, &[]);
    assert!(again.status.success());
    assert!(
        text(&again).starts_with("nothing to change"),
        "{}",
        text(&again)
    );

    // After a restart the gateway loads the plugin and a turn is captured.
    gateway.proc.stop();
    let mut gateway = Gateway::start_existing(&install, &state, gw_port);
    gateway.turn("Say hi");
    wait_until("the turn in the sidecar", Duration::from_secs(30), || {
        (llm_calls() >= 1).then_some(())
    });

    // --remove, a restart: not captured any more; the plugin files are gone.
    let removed = setup(&state, sidecar_port, &["--remove"]);
    assert!(removed.status.success(), "{}", text(&removed));
    assert!(!plugin.exists());
    let cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    assert!(
        cfg["plugins"]["entries"].get("openclaw-trace").is_none(),
        "{cfg}"
    );
    gateway.proc.stop();
    let gateway = Gateway::start_existing(&install, &state, gw_port);
    let n = llm_calls();
    gateway.turn("Say hi");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(llm_calls(), n, "removed: nothing new captured");
}
