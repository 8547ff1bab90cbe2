//! A fleet in tests: sidecars that push to a central, and what they capture.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Daemon, client};

/// The bearer token of the test fleets' centrals (and their sidecars' pushes).
pub const TOKEN: &str = "central-secret-token";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// POSTs `body` to `d` with the fleet's token; panics unless it is accepted.
pub fn post(d: &Daemon, path: &str, body: &Value) {
    let r = client()
        .post(d.url(path))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .unwrap();
    assert!(
        r.status().is_success(),
        "{path}: {}",
        r.text().unwrap_or_default()
    );
}

/// `n` LLM calls and two errors on `d`, numbered from `from`, at `t` (ms); returns
/// their tokens.
pub fn capture(d: &Daemon, tag: &str, from: usize, n: usize, t: i64) -> i64 {
    let calls: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 100 + i,
                   "completion_tokens": 10, "agent_id": tag, "session_id": format!("{tag}-s"),
                   "timestamp": t + i as i64, "latency_ms": 50, "input_text": format!("{tag} question {i}")})
        })
        .collect();
    post(d, "/v1/traces", &Value::Array(calls));
    post(
        d,
        "/v1/errors",
        &json!([{"error_type": "timeout", "message": format!("{tag} {from} a"), "agent_id": tag},
                {"error_type": "rate_limit", "message": format!("{tag} {from} b"), "agent_id": tag}]),
    );
    (from..from + n).map(|i| 110 + i as i64).sum()
}

pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A sidecar named `id` that pushes every second, in push `format` (`v1`, `v2`),
/// gzipped, to the central on `central_port`.
pub fn sidecar(central_port: u16, id: &str, format: &str) -> Daemon {
    sidecar_with(central_port, id, format, &[])
}

/// [`sidecar`] with more settings.
pub fn sidecar_with(central_port: u16, id: &str, format: &str, more: &[(&str, &str)]) -> Daemon {
    let endpoint = format!("http://127.0.0.1:{central_port}/v1/push");
    let mut env = vec![
        ("OCT_PUSH_ENDPOINT", endpoint.as_str()),
        ("OCT_PUSH_TOKEN", TOKEN),
        ("OCT_PUSH_FORMAT", format),
        ("OCT_PUSH_GZIP", "on"),
        ("OCT_PUSH_INTERVAL", "1s"),
        ("OCT_PUSH_RETRY_INITIAL", "100ms"),
        ("OCT_PUSH_RETRY_MAX", "1s"),
        ("OCT_INSTANCE_ID", id),
        ("OCT_REGION", "ams"),
    ];
    env.extend_from_slice(more);
    Daemon::start(&env)
}
