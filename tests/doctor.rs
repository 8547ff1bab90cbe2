//! `openclaw-trace doctor`: each check is made to fail for real (a directory that is a
//! file, a read-only mount, a port taken, an open bind, a refusing endpoint, refused
//! credentials, a remote clock an hour away, a bad price file, unreadable OpenClaw files)
//! and to pass.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{BIN, Daemon, keep_clock, now_ms};
use serde_json::{Value, json};

/// Runs `doctor --json` with a clean environment rooted in `dir`; returns the exit code
/// and the checks by name.
fn doctor(dir: &Path, env: &[(&str, &str)]) -> (i32, Value) {
    let free_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut cmd = Command::new(BIN);
    cmd.args(["doctor", "--json", "--timeout", "2s"])
        .env_clear();
    keep_clock(&mut cmd);
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("OCT_DB_PATH", dir.join("trace.db"))
        .env("OCT_PORT", &free_port)
        .env(
            "OCT_LOG_PATH",
            dir.join("openclaw-*.log").to_string_lossy().as_ref(),
        )
        .env("OCT_OTLP_HTTP_ADDR", "127.0.0.1:0")
        .env("OCT_OTLP_GRPC_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    let mut by_name = serde_json::Map::new();
    for c in v["checks"].as_array().unwrap() {
        by_name.insert(c["name"].as_str().unwrap().to_string(), c.clone());
    }
    (out.status.code().unwrap_or(-1), Value::Object(by_name))
}

fn level(checks: &Value, name: &str) -> String {
    checks[name]["level"]
        .as_str()
        .unwrap_or_else(|| panic!("no check {name}: {checks:#}"))
        .to_string()
}

fn detail(checks: &Value, name: &str) -> String {
    checks[name]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_plain_setup_passes_with_every_check_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (code, c) = doctor(dir.path(), &[]);
    for name in [
        "settings",
        "database",
        "port",
        "otlp ports",
        "bind and token",
        "openclaw",
        "gateway log",
        "transcripts",
        "push",
        "otlp export",
        "clock",
        "price table",
    ] {
        assert!(c.get(name).is_some(), "{name} missing: {c:#}");
        assert_ne!(level(&c, name), "failed", "{name}: {c:#}");
    }
    assert_eq!(code, 0, "{c:#}");
    assert!(detail(&c, "database").contains("writable, on "), "{c:#}");
    assert!(detail(&c, "price table").contains("genai-prices"), "{c:#}");
    assert!(detail(&c, "price table").contains("as of 20"), "{c:#}");
    // OpenClaw is not installed here: a warning with a fix, not a failure.
    assert_eq!(level(&c, "openclaw"), "warning");
    assert!(c["openclaw"]["fix"].as_str().is_some());
    // The text form fits a screen: one line per check, a fix line per warning.
    let out = Command::new(BIN)
        .args(["doctor", "--timeout", "2s"])
        .env_clear()
        .env("HOME", dir.path())
        .env("OCT_DB_PATH", dir.path().join("trace.db"))
        .env("OCT_PORT", "0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() <= 24, "{text}");
    assert!(text.contains("fix: "), "{text}");
}

#[test]
fn invalid_settings_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (code, c) = doctor(dir.path(), &[("OCT_PORT", "ninety")]);
    assert_eq!(code, 1);
    assert_eq!(level(&c, "settings"), "failed");
    assert!(detail(&c, "settings").contains("OCT_PORT"), "{c:#}");
}

#[test]
fn a_database_under_a_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let db = file.join("sub").join("trace.db");
    let (code, c) = doctor(dir.path(), &[("OCT_DB_PATH", db.to_str().unwrap())]);
    assert_eq!(code, 1, "{c:#}");
    assert_eq!(level(&c, "database"), "failed");
    assert!(detail(&c, "database").contains("not a directory"), "{c:#}");
}

/// A tmpfs, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, opts: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_volume_fails_and_a_small_one_warns() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    let Some(_ro) = Tmpfs::mount(&ro, "ro,size=1m") else {
        eprintln!("SKIPPED: mounting a tmpfs is not allowed here");
        return;
    };
    let db = ro.join("trace.db");
    let (code, c) = doctor(dir.path(), &[("OCT_DB_PATH", db.to_str().unwrap())]);
    assert_eq!(code, 1, "{c:#}");
    assert_eq!(level(&c, "database"), "failed");
    assert!(detail(&c, "database").contains("Read-only"), "{c:#}");
    // A volume smaller than the database's size cap (100 MiB by default).
    let small = dir.path().join("small");
    let _small = Tmpfs::mount(&small, "size=4m").unwrap();
    let db = small.join("trace.db");
    let (code, c) = doctor(dir.path(), &[("OCT_DB_PATH", db.to_str().unwrap())]);
    assert_eq!(code, 0, "{c:#}");
    assert_eq!(level(&c, "database"), "warning", "{c:#}");
    assert!(detail(&c, "database").contains("(tmpfs"), "{c:#}");
    let (_, c) = doctor(
        dir.path(),
        &[
            ("OCT_DB_PATH", db.to_str().unwrap()),
            ("OCT_CLEANUP_DB_THRESHOLD_BYTES", "1MiB"),
        ],
    );
    assert_eq!(level(&c, "database"), "ok", "{c:#}");
}

#[test]
fn a_taken_port_fails_and_this_daemons_port_passes() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, c) = doctor(dir.path(), &[("OCT_PORT", &port)]);
    assert_eq!(code, 1, "{c:#}");
    assert_eq!(level(&c, "port"), "failed");
    assert!(
        detail(&c, "port").contains("taken by another program"),
        "{c:#}"
    );
    drop(taken);
    // The daemon itself holds its port: that is fine.
    let d = Daemon::start(&[]);
    let port = d.addr.port().to_string();
    let (_, c) = doctor(
        &d.dir,
        &[
            ("OCT_PORT", &port),
            ("OCT_DB_PATH", d.db_path.to_str().unwrap()),
        ],
    );
    assert_eq!(level(&c, "port"), "ok", "{c:#}");
    assert!(detail(&c, "port").contains("held by this daemon"), "{c:#}");
    // Another openclaw-trace (another database) on the port: a warning.
    let (_, c) = doctor(dir.path(), &[("OCT_PORT", &port)]);
    assert_eq!(level(&c, "port"), "warning", "{c:#}");
}

#[test]
fn a_taken_otlp_port_that_was_set_fails() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, c) = doctor(dir.path(), &[("OCT_OTLP_GRPC_ADDR", &addr)]);
    assert_eq!(code, 1, "{c:#}");
    assert_eq!(level(&c, "otlp ports"), "failed", "{c:#}");
    assert!(detail(&c, "otlp ports").contains("will not start"), "{c:#}");
    let (_, c) = doctor(
        dir.path(),
        &[
            ("OCT_OTLP_GRPC_ADDR", "off"),
            ("OCT_OTLP_HTTP_ADDR", "127.0.0.1:0"),
        ],
    );
    assert_eq!(level(&c, "otlp ports"), "ok", "{c:#}");
}

#[test]
fn an_open_bind_without_a_token_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (code, c) = doctor(dir.path(), &[("OCT_BIND", "0.0.0.0")]);
    assert_eq!(code, 1, "{c:#}");
    assert_eq!(level(&c, "bind and token"), "failed");
    let (code, c) = doctor(
        dir.path(),
        &[("OCT_BIND", "0.0.0.0"), ("OCT_AUTH_TOKEN", "s3cret")],
    );
    assert_eq!(level(&c, "bind and token"), "ok", "{c:#}");
    assert_eq!(code, 0, "{c:#}");
}

#[test]
fn openclaw_files_plugin_log_and_transcripts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".openclaw");
    std::fs::create_dir_all(state.join("agents/main/agent")).unwrap();
    std::fs::write(state.join("agents/main/agent/openclaw-agent.sqlite"), "").unwrap();
    let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/integrations/openclaw");
    let write = |config: Value| {
        std::fs::write(state.join("openclaw.json"), config.to_string()).unwrap();
    };
    // Config without the plugin.
    write(json!({"gateway": {"mode": "local"}}));
    let (code, c) = doctor(dir.path(), &[]);
    assert_eq!(level(&c, "openclaw"), "ok", "{c:#}");
    assert_eq!(level(&c, "openclaw plugin"), "failed", "{c:#}");
    assert!(detail(&c, "openclaw plugin").contains("not installed"));
    assert_eq!(code, 1);
    // Installed, not enabled.
    let mut config = json!({
        "diagnostics": {"enabled": true},
        "plugins": {"load": {"paths": [plugin]}, "entries": {"openclaw-trace": {"enabled": false}}}
    });
    write(config.clone());
    let (_, c) = doctor(dir.path(), &[]);
    assert_eq!(level(&c, "openclaw plugin"), "failed", "{c:#}");
    assert!(detail(&c, "openclaw plugin").contains("not enabled"));
    // Enabled, but the daemon needs a token the plugin does not send.
    config["plugins"]["entries"]["openclaw-trace"]["enabled"] = json!(true);
    write(config.clone());
    let (_, c) = doctor(dir.path(), &[("OCT_AUTH_TOKEN", "t0k")]);
    assert_eq!(level(&c, "openclaw plugin"), "failed", "{c:#}");
    // Enabled and sending to this port.
    let port = "47123";
    config["plugins"]["entries"]["openclaw-trace"]["config"] =
        json!({"url": format!("http://127.0.0.1:{port}")});
    write(config);
    std::fs::write(dir.path().join("openclaw-2026-01-01.log"), "{}\n").unwrap();
    let (code, c) = doctor(dir.path(), &[("OCT_PORT", port)]);
    assert_eq!(level(&c, "openclaw plugin"), "ok", "{c:#}");
    assert_eq!(level(&c, "gateway log"), "ok", "{c:#}");
    assert_eq!(level(&c, "transcripts"), "ok", "{c:#}");
    assert!(
        detail(&c, "transcripts").contains("1 transcript store"),
        "{c:#}"
    );
    assert_eq!(code, 0, "{c:#}");
    // A log path that cannot be read (a directory), and transcripts that cannot be
    // listed (`agents` is a file).
    let not_a_file = dir.path().join("logdir");
    std::fs::create_dir(&not_a_file).unwrap();
    std::fs::remove_dir_all(state.join("agents")).unwrap();
    std::fs::write(state.join("agents"), "x").unwrap();
    let (code, c) = doctor(
        dir.path(),
        &[
            ("OCT_PORT", port),
            ("OCT_LOG_PATH", not_a_file.to_str().unwrap()),
        ],
    );
    assert_eq!(level(&c, "gateway log"), "failed", "{c:#}");
    assert_eq!(level(&c, "transcripts"), "failed", "{c:#}");
    assert_eq!(code, 1);
}

/// A loopback HTTP server: 401 without `authorization: Bearer good` (or the
/// `x-key: good` header), 200 with it; its `Date` is `skew_secs` away from now.
struct Remote {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Remote {
    fn start(skew_secs: i64) -> Remote {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => serve(s, skew_secs),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Remote { port, stop }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn http_date(skew_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + skew_secs;
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{now}"), "+%a, %d %b %Y %H:%M:%S GMT"])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn serve(mut s: TcpStream, skew_secs: i64) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return, // a bare connect probe
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let authorized = head.contains("authorization: bearer good") || head.contains("x-key: good");
    let status = if head.starts_with("head ") || authorized {
        "200 OK"
    } else {
        "401 Unauthorized"
    };
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\ndate: {}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}",
        http_date(skew_secs)
    );
}

#[test]
fn endpoints_that_refuse_or_do_not_resolve_fail() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!(
        "http://127.0.0.1:{}/ingest",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let (code, c) = doctor(dir.path(), &[("OCT_PUSH_ENDPOINT", &closed_url)]);
    assert_eq!(code, 1);
    assert_eq!(level(&c, "push"), "failed", "{c:#}");
    assert!(detail(&c, "push").contains("refused"), "{c:#}");
    let (_, c) = doctor(
        dir.path(),
        &[(
            "OCT_OTLP_EXPORT_ENDPOINT",
            "http://no-such-host.invalid:4318",
        )],
    );
    assert_eq!(level(&c, "otlp export"), "failed", "{c:#}");
    assert!(detail(&c, "otlp export").contains("resolve"), "{c:#}");
}

#[test]
fn endpoints_check_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let r = Remote::start(0);
    let push = format!("{}/ingest", r.url());
    let (code, c) = doctor(
        dir.path(),
        &[("OCT_PUSH_ENDPOINT", &push), ("OCT_PUSH_TOKEN", "bad")],
    );
    assert_eq!(code, 1);
    assert_eq!(level(&c, "push"), "failed", "{c:#}");
    assert!(
        detail(&c, "push").contains("credentials refused (401"),
        "{c:#}"
    );
    assert!(!detail(&c, "push").contains("bad"), "token shown: {c:#}");
    let (code, c) = doctor(
        dir.path(),
        &[
            ("OCT_PUSH_ENDPOINT", &push),
            ("OCT_PUSH_TOKEN", "good"),
            ("OCT_OTLP_EXPORT_ENDPOINT", &r.url()),
            ("OCT_OTLP_EXPORT_HEADERS", "x-key=good"),
        ],
    );
    assert_eq!(level(&c, "push"), "ok", "{c:#}");
    assert_eq!(level(&c, "otlp export"), "ok", "{c:#}");
    assert_eq!(level(&c, "clock"), "ok", "{c:#}");
    assert_eq!(code, 0, "{c:#}");
    let (_, c) = doctor(
        dir.path(),
        &[
            ("OCT_OTLP_EXPORT_ENDPOINT", &r.url()),
            ("OCT_OTLP_EXPORT_HEADERS", "x-key=wrong"),
        ],
    );
    assert_eq!(level(&c, "otlp export"), "failed", "{c:#}");
}

#[test]
fn a_clock_an_hour_off_an_endpoints_fails() {
    let dir = tempfile::tempdir().unwrap();
    let r = Remote::start(3600);
    let push = format!("{}/ingest", r.url());
    let (code, c) = doctor(
        dir.path(),
        &[("OCT_PUSH_ENDPOINT", &push), ("OCT_PUSH_TOKEN", "good")],
    );
    assert_eq!(level(&c, "clock"), "failed", "{c:#}");
    assert!(detail(&c, "clock").contains("off by 1h"), "{c:#}");
    assert_eq!(code, 1);
}

#[test]
fn a_bad_price_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("prices.toml");
    std::fs::write(&bad, "[[model]]\nid = 3\n").unwrap();
    let (code, c) = doctor(dir.path(), &[("OCT_PRICING_FILE", bad.to_str().unwrap())]);
    assert_eq!(code, 1);
    assert_eq!(level(&c, "price table"), "failed", "{c:#}");
    assert!(detail(&c, "price table").contains("prices.toml"), "{c:#}");
    let good = dir.path().join("ok.toml");
    std::fs::write(&good, "[[model]]\nid = \"mine\"\ninput = 1\noutput = 2\n").unwrap();
    let (_, c) = doctor(dir.path(), &[("OCT_PRICING_FILE", good.to_str().unwrap())]);
    assert_eq!(level(&c, "price table"), price_level_for_age(&c), "{c:#}");
    assert!(
        detail(&c, "price table").contains("+ 1 from OCT_PRICING_FILE"),
        "{c:#}"
    );
}

/// OTLP/gRPC export: this daemon's own gRPC receiver with a token, asked with a wrong
/// one (UNAUTHENTICATED) and the right one.
#[test]
fn grpc_export_checks_the_credentials() {
    let d = Daemon::start(&[("OCT_AUTH_TOKEN", "good")]);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let grpc = loop {
        let found = d.logs().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "OTLP/gRPC listening").then(|| v["addr"].as_str().map(String::from))?
        });
        if let Some(a) = found {
            break a;
        }
        assert!(
            std::time::Instant::now() < until,
            "no gRPC listener: {:?}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{grpc}");
    let run = |header: &str| {
        doctor(
            dir.path(),
            &[
                ("OCT_OTLP_EXPORT_ENDPOINT", &endpoint),
                ("OCT_OTLP_EXPORT_PROTOCOL", "grpc"),
                ("OCT_OTLP_EXPORT_HEADERS", header),
            ],
        )
    };
    let (code, c) = run("authorization=Bearer%20wrong");
    assert_eq!(code, 1, "{c:#}");
    assert_eq!(level(&c, "otlp export"), "failed", "{c:#}");
    assert!(
        detail(&c, "otlp export").contains("credentials refused"),
        "{c:#}"
    );
    let (_, c) = run("authorization=Bearer%20good");
    assert_eq!(level(&c, "otlp export"), "ok", "{c:#}");
}

/// What the price table check must say for the bundled data's age: ok up to 90 days,
/// a warning after (the data ages with the calendar; the test must not).
fn price_level_for_age(c: &Value) -> &'static str {
    let d = detail(c, "price table");
    let at = d.find("as of ").expect("as of") + 6;
    let date = time::Date::parse(
        &d[at..at + 10],
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap();
    let as_of_ms = date.midnight().assume_utc().unix_timestamp() * 1000;
    let age_days = (now_ms() - as_of_ms) / 86_400_000;
    if age_days > 90 { "warning" } else { "ok" }
}
