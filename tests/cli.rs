//! The command line and configuration: help, version, invalid values, precedence.
mod common;
use common::*;
use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args).env_clear().env("HOME", std::env::temp_dir());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn serve_help_lists_every_setting_with_env_and_default() {
    let (code, out, _) = run(&["serve", "--help"], &[]);
    assert_eq!(code, 0);
    for (flag, env, default) in [
        ("--port", "OCT_PORT", "9090"),
        ("--db-path", "OCT_DB_PATH", "/data/openclaw-trace.db"),
        ("--log-level", "OCT_LOG_LEVEL", "info"),
        ("--push-endpoint", "OCT_PUSH_ENDPOINT", "unset"),
        ("--push-interval", "OCT_PUSH_INTERVAL", "5m"),
        (
            "--push-max-payload-bytes",
            "OCT_PUSH_MAX_PAYLOAD_BYTES",
            "5242880",
        ),
        (
            "--log-path",
            "OCT_LOG_PATH",
            "/tmp/openclaw/openclaw-*.log*",
        ),
        ("--retention-days", "OCT_RETENTION_DAYS", "3"),
        ("--max-text-bytes", "OCT_MAX_TEXT_BYTES", "16384"),
        ("--metrics-interval", "OCT_METRICS_INTERVAL", "15s"),
        ("--cleanup-interval", "OCT_CLEANUP_INTERVAL", "5m"),
        (
            "--wal-checkpoint-interval",
            "OCT_WAL_CHECKPOINT_INTERVAL",
            "10m",
        ),
        (
            "--wal-restart-threshold-bytes",
            "OCT_WAL_RESTART_THRESHOLD_BYTES",
            "52428800",
        ),
        (
            "--cleanup-disk-threshold",
            "OCT_CLEANUP_DISK_THRESHOLD",
            "80",
        ),
        (
            "--cleanup-db-threshold-bytes",
            "OCT_CLEANUP_DB_THRESHOLD_BYTES",
            "104857600",
        ),
        ("--bind", "OCT_BIND", "127.0.0.1"),
        ("--auth-token", "OCT_AUTH_TOKEN", "unset"),
        ("--shutdown-timeout", "OCT_SHUTDOWN_TIMEOUT", "15s"),
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing:\n{out}"));
        let block: String = out
            .lines()
            .skip_while(|l| *l != line)
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(block.contains(&format!("[env: {env}]")), "{flag}: {block}");
        assert!(
            block.contains(&format!("[default: {default}")),
            "{flag}: {block}"
        );
    }
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("openclaw-trace "), "{out}");
}

#[test]
fn each_command_help_fits_a_screen_and_shows_its_own_options() {
    // (command, at most this many lines, a flag it shows, a daemon setting it hides)
    for (args, max, shown) in [
        (&["--help"][..], 30, "--config"),
        (&["traces", "--help"], 24, "--db-path"),
        (&["trace", "--help"], 24, "--db-path"),
        (&["tail", "--help"], 24, "--auth-token"),
        (&["usage", "--help"], 24, "--db-path"),
        (&["baseline", "--help"], 24, "--db-path"),
        (&["export", "--help"], 24, "--db-path"),
        (&["metrics", "--help"], 24, "--db-path"),
        (&["status", "--help"], 24, "--db-path"),
        (&["health", "--help"], 24, "--port"),
        (&["openclaw", "setup", "--help"], 24, "--auth-token"),
    ] {
        let (code, out, err) = run(args, &[]);
        assert_eq!(code, 0, "{args:?}: {err}");
        let n = out.lines().count();
        assert!(n <= max, "{args:?}: {n} lines\n{out}");
        assert!(out.contains(shown), "{args:?} lacks {shown}:\n{out}");
        for hidden in [
            "--push-endpoint",
            "--wal-checkpoint-interval",
            "--log-level",
        ] {
            assert!(!out.contains(hidden), "{args:?} shows {hidden}:\n{out}");
        }
    }
    assert!(run(&["--help"], &[]).1.contains("serve --help"));
    // Hidden is not refused: settings are accepted before and after the command.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    for args in [
        vec![
            "--db-path",
            db.to_str().unwrap(),
            "--log-level",
            "debug",
            "traces",
        ],
        vec![
            "traces",
            "--db-path",
            db.to_str().unwrap(),
            "--log-level",
            "debug",
        ],
    ] {
        let (code, out, err) = run(&args, &[]);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!("no database at {}", db.display())),
            "{err}"
        );
    }
    // A setting given after the command wins over one given before it.
    let (code, out, err) = run(
        &["--port", "1", "health", "--port", "2", "--timeout", "1s"],
        &[],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("127.0.0.1:2"), "{out}");
}

#[test]
fn health_exits_0_when_the_daemon_is_ready_and_1_otherwise() {
    // The daemon requires a token; /ready does not, nor does `health`.
    let d = Daemon::start(&[("OCT_AUTH_TOKEN", "s3cret"), ("OCT_BIND", "0.0.0.0")]);
    let port = d.addr.port().to_string();
    let (code, out, err) = run(&["health"], &[("OCT_PORT", &port), ("OCT_BIND", "0.0.0.0")]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("ready: 127.0.0.1:{port}"));
    let (code, out, _) = run(&["health", "--port", &port, "-q"], &[]);
    assert_eq!((code, out.as_str()), (0, ""));
    // Nothing listening: 1, saying why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let (code, out, _) = run(&["health"], &[("OCT_PORT", &closed_port)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("not ready: cannot reach the daemon at 127.0.0.1:"),
        "{out}"
    );
    // Something that is not an HTTP server (it closes at once): 1.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    let (code, out, _) = run(&["health", "--addr", &addr, "--timeout", "2s"], &[]);
    assert_eq!(code, 1, "{out}");
    // A daemon that does not answer in time: 1.
    d.signal("STOP");
    let (code, out, _) = run(&["health", "--port", &port, "--timeout", "300ms"], &[]);
    assert_eq!(code, 1, "a stopped process does not answer: {out}");
    d.signal("CONT");
}

#[test]
fn invalid_values_are_one_line_and_exit_2() {
    for (env, val) in [
        ("OCT_PORT", "http"),
        ("OCT_PUSH_INTERVAL", "5 minutes"),
        ("OCT_RETENTION_DAYS", "-1"),
        ("OCT_CLEANUP_DISK_THRESHOLD", "150"),
        ("OCT_LOG_LEVEL", "loud"),
        ("OCT_BIND", "localhost:80"),
        ("OCT_CLEANUP_DB_THRESHOLD_BYTES", "lots"),
    ] {
        let (code, out, err) = run(&[], &[(env, val)]);
        assert_eq!(code, 2, "{env}={val}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "{env}: {err}");
        assert!(err.contains(env), "{env}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, _, err) = run(&["--port", "x"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--port"), "{err}");
}

#[test]
fn config_file_env_and_flags_layer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("oct.toml");
    let db = dir.path().join("from-file.db");
    std::fs::write(&cfg, format!("db_path = \"{}\"\nport = 1\n", db.display())).unwrap();
    // The file sets the db path; env sets the port (0); the daemon starts on it.
    let mut d = {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("HOME", dir.path())
            .env("OCT_CONFIG", &cfg)
            .env("OCT_PORT", "0")
            .env("OCT_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let stderr = d.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok);
    let listening = lines
        .find(|l| l.contains("\"listening\""))
        .expect("listening");
    // Keep reading so the daemon's log never hits a closed pipe.
    let rest = std::thread::spawn(move || lines.collect::<Vec<_>>());

    assert!(
        !listening.contains(":1\""),
        "env beats the file: {listening}"
    );
    assert!(db.exists(), "the file's db_path was used");

    let _ = Command::new("kill")
        .args(["-TERM", &d.id().to_string()])
        .status();
    let st = d.wait().unwrap();
    let rest = rest.join().unwrap();
    assert!(st.success(), "{st:?} {rest:?}");

    // Unknown keys in the file are an error naming them.
    std::fs::write(&cfg, "colour = \"blue\"\n").unwrap();
    let (code, _, err) = run(&["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn default_database_path_works_without_root_or_flags() {
    let home = tempfile::tempdir().unwrap();
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("HOME", home.path())
        .env("OCT_PORT", "0")
        .env("OCT_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let first = lines.next().unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["message"], "database open");
    let path = v["db_path"].as_str().unwrap().to_string();
    drop(lines);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(
        child.wait().unwrap().success(),
        "a closed log pipe does not take the daemon down"
    );
    if std::path::Path::new("/data").is_dir() {
        return; // /data exists here: the Go default applies, checked by the log line above.
    }
    assert_eq!(
        path,
        home.path()
            .join(".local/share/openclaw-trace/openclaw-trace.db")
            .display()
            .to_string()
    );
}

#[test]
fn readme_documents_every_setting() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for s in openclaw_trace::config::settings() {
        assert!(
            readme.contains(&format!("`{}`", s.env)),
            "README.md does not document {}",
            s.env
        );
    }
}
