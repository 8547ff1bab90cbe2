//! The recipes under deploy/: the systemd unit passes `systemd-analyze verify`
//! (installed by scripts/setup-systemd.sh) with its sandboxing in place, and the
//! Fly.io start script runs openclaw-trace beside the REAL OpenClaw gateway of the
//! end-to-end test (in place of the machine's), captures a turn, and stops both
//! cleanly on SIGTERM. (The Dockerfile's layout is run in tests/static_binary.rs.)

mod common;
#[path = "openclaw/harness.rs"]
mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use harness::{FakeLlm, Proc, ROOT, free_port, gateway_config, install_dir, node, wait_until};
use serde_json::json;

#[test]
fn systemd_unit_is_sandboxed_and_verifies() {
    let unit =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/systemd/openclaw-trace.service"))
            .unwrap();
    for want in [
        "DynamicUser=yes",
        "StateDirectory=openclaw-trace",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "MemoryMax=",
        "ExecStart=/usr/local/bin/openclaw-trace serve",
        "Environment=OCT_DB_PATH=/var/lib/openclaw-trace/",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(want)), "{want} missing");
    }
    // verify checks that ExecStart's binary exists: point it at the one built here.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("openclaw-trace.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/openclaw-trace", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/setup-systemd.sh installs it)");
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(
        !said.contains("openclaw-trace.service"),
        "warnings about the unit: {said}"
    );
    // And verify does catch a mistake in such a unit.
    std::fs::write(
        &path,
        unit.replace("ProtectSystem=strict", "ProtectSystem=sometimes")
            .replace("/usr/local/bin/openclaw-trace", BIN),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        said.contains("openclaw-trace.service:") && said.contains("sometimes"),
        "{said}"
    );
}

#[test]
fn fly_start_script_runs_the_sidecar_beside_the_real_gateway_and_stops_both() {
    let install = install_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let state = data.join(".openclaw");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let llm = FakeLlm::start(&node(&install), dir);

    // The gateway's config as a machine would have it: no trace plugin yet.
    let gw_port = free_port();
    let mut config = gateway_config(gw_port, llm.port, &logs, json!({}));
    let obj = config.as_object_mut().unwrap();
    obj.remove("plugins");
    obj.remove("diagnostics");
    std::fs::write(
        state.join("openclaw.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();

    let oct_port = free_port();
    let gateway_cmd = format!(
        "{} {} gateway run",
        node(&install).display(),
        install.join("node_modules/openclaw/openclaw.mjs").display()
    );
    let out_path = dir.join("start.out");
    let out = std::fs::File::create(&out_path).unwrap();
    // The binary's directory on PATH, as in the image (/usr/local/bin).
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut start = Proc::spawn(
        "start.sh",
        Command::new("bash")
            .arg(Path::new(ROOT).join("deploy/fly/start.sh"))
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir)
            .env("DATA_DIR", &data)
            .env("OPENCLAW_STATE_DIR", &state)
            .env("GATEWAY_CMD", gateway_cmd)
            .env("OCT_PORT", oct_port.to_string())
            .env("OCT_AUTH_TOKEN", "fly-token")
            .env("OCT_LOG_FORMAT", "json")
            .env("OCT_HOST_DISABLE", "all")
            .env("OCT_OTLP_HTTP_ADDR", "off")
            .env("OCT_OTLP_GRPC_ADDR", "off")
            .env(
                "OCT_LOG_PATH",
                format!("{}/openclaw-*.log*", logs.display()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out),
    );
    let output = || std::fs::read_to_string(&out_path).unwrap_or_default();

    // The data on the volume, the plugin installed, the gateway up.
    let db = data.join("openclaw-trace/openclaw-trace.db");
    let client = harness::long_client();
    wait_until(
        "the gateway behind start.sh",
        Duration::from_secs(120),
        || {
            client
                .get(format!("http://127.0.0.1:{gw_port}/health"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        },
    );
    assert!(db.exists(), "{}", output());
    assert!(state.join("extensions/openclaw-trace/index.js").exists());

    // A turn reaches the sidecar through the plugin.
    let r = client
        .post(format!("http://127.0.0.1:{gw_port}/v1/chat/completions"))
        .bearer_auth(harness::GATEWAY_TOKEN)
        .json(&json!({"model": "openclaw", "messages": [{"role": "user", "content": "Say hi"}]}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    wait_until("the turn in the sidecar", Duration::from_secs(30), || {
        (count(&db, "SELECT count(*) FROM spans WHERE kind = 'llm_call'") >= 1).then_some(())
    });

    // SIGTERM to the script: the gateway stops, then the sidecar, cleanly; exit 0.
    let t = Instant::now();
    let pid = start.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_until("start.sh to exit", Duration::from_secs(60), || {
        start.child.try_wait().unwrap()
    });
    let said = output();
    assert!(status.success(), "{status:?}\n{said}");
    assert!(said.contains("\"stopped cleanly\""), "{said}");
    assert!(said.contains("start.sh: stopped"), "{said}");
    eprintln!("stopped in {:?}", t.elapsed());
    let gateway_gone = std::net::TcpStream::connect(("127.0.0.1", gw_port)).is_err();
    let sidecar_gone = std::net::TcpStream::connect(("127.0.0.1", oct_port)).is_err();
    assert!(gateway_gone && sidecar_gone, "{said}");
}
