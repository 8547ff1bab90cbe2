mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn starts_ingests_and_stops_cleanly() {
    let mut d = Daemon::start(&[]);
    let r = post_json(
        &d.url("/v1/traces"),
        &json!({"provider":"openai","model":"gpt-4o","prompt_tokens":3}),
    );
    assert_eq!(r.status(), 202);
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 1, Duration::from_secs(5)),
        1
    );
    assert!(d.stop().success());
}

/// Nice value of each of the daemon's threads, by thread name.
fn thread_nice(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis; nice is field 19 of the line.
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let nice = rest.split_whitespace().nth(16).and_then(|v| v.parse().ok());
        if let Some(nice) = nice {
            out.push((comm.trim().to_string(), nice));
        }
    }
    out
}

#[test]
fn background_threads_run_at_the_configured_nice_value() {
    let mut d = Daemon::start(&[("OCT_BACKGROUND_NICE", "7")]);
    let threads = thread_nice(d.child.id());
    let of = |name: &str| {
        threads
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("oct-writer"), vec![7], "{threads:?}");
    assert_eq!(of("oct-observer"), vec![7], "{threads:?}");
    // The capture endpoints keep the normal priority.
    let workers = of("tokio-rt-worker");
    assert!(
        !workers.is_empty() && workers.iter().all(|n| *n == 0),
        "{threads:?}"
    );
    assert!(d.stop().success());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_openclaw-trace"))
        .env("OCT_BACKGROUND_NICE", "25")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OCT_BACKGROUND_NICE"));
}
