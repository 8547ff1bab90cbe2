//! The remote push against a scripted fake remote (axum on 127.0.0.1:0):
//! down, 500s, 429 with Retry-After, a hang past the timeout, 413, a poison
//! record answered 400, duplicates; then kill -9 mid-push and a restart.

mod common;
use common::*;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
enum Step {
    Status(u16),
    TooManyRequests,
    /// Answers after this long (past the client's timeout); stores nothing.
    Hang(Duration),
    /// Stores the records, then answers 500: the retry brings duplicates.
    AcceptThen500,
}

#[derive(Default)]
struct Remote {
    script: VecDeque<Step>,
    /// Every request from now on hangs (for the kill -9 test).
    hang_all: bool,
    max_body: usize,
    requests: u64,
    /// Item ids in arrival order, duplicates included.
    arrivals: Vec<String>,
    /// Idempotency-Key of each request, with the ids it carried.
    keys: Vec<(String, Vec<String>)>,
    auth: Vec<String>,
    bodies: Vec<Value>,
}

type Shared = Arc<Mutex<Remote>>;

async fn receive(State(r): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let step = {
        let mut g = r.lock().unwrap();
        g.requests += 1;
        if g.hang_all {
            Some(Step::Hang(Duration::from_secs(30)))
        } else {
            g.script.pop_front()
        }
    };
    match step {
        Some(Step::Status(s)) => return StatusCode::from_u16(s).unwrap().into_response(),
        Some(Step::TooManyRequests) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response();
        }
        Some(Step::Hang(d)) => {
            tokio::time::sleep(d).await;
            return StatusCode::OK.into_response();
        }
        _ => {}
    }
    let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    let mut g = r.lock().unwrap();
    // A refused body does not use up the step that stores and then fails.
    let keep = |g: &mut Remote| {
        if let Some(s @ Step::AcceptThen500) = step {
            g.script.push_front(s);
        }
    };
    if raw.len() > g.max_body {
        keep(&mut g);
        return (StatusCode::PAYLOAD_TOO_LARGE, "too large").into_response();
    }
    let v: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(_) => return (StatusCode::BAD_REQUEST, "bad json").into_response(),
    };
    let items = v["events"]
        .as_array()
        .or(v["records"].as_array())
        .cloned()
        .unwrap_or_default();
    if items.iter().any(|i| i["data"]["model"] == "poison-model") {
        keep(&mut g);
        return (StatusCode::BAD_REQUEST, "poison record").into_response();
    }
    let ids: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap_or("").to_string())
        .collect();
    let key = headers
        .get("idempotency-key")
        .and_then(|k| k.to_str().ok())
        .unwrap_or("")
        .to_string();
    g.keys.push((key, ids.clone()));
    g.auth.push(
        headers
            .get("authorization")
            .and_then(|k| k.to_str().ok())
            .unwrap_or("")
            .to_string(),
    );
    g.arrivals.extend(ids);
    g.bodies.push(v);
    if let Some(Step::AcceptThen500) = step {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    StatusCode::OK.into_response()
}

/// Serves the fake remote on `listener` from a runtime of its own.
fn serve(listener: std::net::TcpListener, remote: Shared) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new()
                .route("/ingest", axum::routing::post(receive))
                .with_state(remote);
            axum::serve(l, app).await.unwrap();
        });
    })
}

/// A free loopback port with nothing listening on it (the remote is "down").
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Binds `addr` again, retrying briefly (it was freed just before).
fn bind_again(addr: SocketAddr) -> std::net::TcpListener {
    for _ in 0..100 {
        if let Ok(l) = std::net::TcpListener::bind(addr) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("cannot bind {addr} again");
}

fn health(d: &Daemon) -> Value {
    client()
        .get(d.url("/health"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// LLM calls and errors, with one poison record among them.
fn ingest(d: &Daemon, spans: usize, errors: usize, poison_at: Option<usize>) {
    for chunk in (0..spans).collect::<Vec<_>>().chunks(50) {
        let body: Vec<Value> = chunk
            .iter()
            .map(|i| {
                let model = if Some(*i) == poison_at { "poison-model" } else { "gpt-4o" };
                json!({"provider": "openai", "model": model, "prompt_tokens": i, "completion_tokens": 1,
                       "input_text": "x".repeat(300), "latency_ms": 10})
            })
            .collect();
        assert_eq!(post_json(&d.url("/v1/traces"), &json!(body)).status(), 202);
    }
    for i in 0..errors {
        let r = post_json(
            &d.url("/v1/errors"),
            &json!({"error_type": "Timeout", "message": format!("e{i}")}),
        );
        assert_eq!(r.status(), 202);
    }
    let want = (spans + errors) as i64;
    let n = d.wait_count(
        "SELECT (SELECT count(*) FROM spans) + (SELECT count(*) FROM events)",
        want,
        Duration::from_secs(10),
    );
    assert_eq!(n, want);
}

/// Stored record ids (span `trace-span`, event uid) in row order, poison excluded.
fn expected_ids(d: &Daemon) -> (Vec<String>, Vec<String>, String) {
    let db = d.db();
    let mut spans = Vec::new();
    let mut poison = String::new();
    let mut st = db
        .prepare("SELECT hex(trace_id), hex(span_id), request_model FROM spans ORDER BY id")
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .unwrap();
    for row in rows {
        let (t, s, m) = row.unwrap();
        let id = format!("{}-{}", t.to_lowercase(), s.to_lowercase());
        if m == "poison-model" {
            poison = id;
        } else {
            spans.push(id);
        }
    }
    let mut st = db.prepare("SELECT uid FROM events ORDER BY id").unwrap();
    let events = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (spans, events, poison)
}

/// First arrival of each id, in order.
fn first_arrivals(arrivals: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    arrivals
        .iter()
        .filter(|a| seen.insert((*a).clone()))
        .cloned()
        .collect()
}

#[test]
fn push_survives_a_hostile_remote_and_loses_nothing() {
    let addr = free_port();
    let endpoint = format!("http://{addr}/ingest?token=urlsecret42&x=1");
    let mut d = Daemon::start(&[
        ("OCT_PUSH_ENDPOINT", &endpoint),
        ("OCT_PUSH_TOKEN", "secret-token-99"),
        ("OCT_PUSH_GZIP", "on"),
        ("OCT_PUSH_INTERVAL", "200ms"),
        ("OCT_PUSH_RETRY_INITIAL", "50ms"),
        ("OCT_PUSH_RETRY_MAX", "400ms"),
        ("OCT_PUSH_TIMEOUT", "1s"),
        ("OCT_PUSH_BATCH_RECORDS", "100"),
        ("OCT_PUSH_MAX_PAYLOAD_BYTES", "64KiB"),
        ("OCT_AUDIT", "on"),
    ]);
    ingest(&d, 240, 30, Some(117));
    // Down: nothing listens; the sink keeps failing and backing off.
    wait_until("failures while down", Duration::from_secs(20), || {
        health(&d)["sinks"][0]["consecutive_failures"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    });
    let h = health(&d);
    assert_eq!(h["last_push_status"], "error");
    assert_eq!(h["unsynced_count"], 270);
    assert!(h["sinks"][0]["backlog_age_seconds"].is_number());
    let remote: Shared = Arc::new(Mutex::new(Remote {
        // Stores-then-fails first: two streams push side by side, and a step left
        // for last could find nothing more to send.
        script: VecDeque::from(vec![
            Step::AcceptThen500,
            Step::Status(500),
            Step::Status(500),
            Step::Status(503),
            Step::TooManyRequests,
            Step::Hang(Duration::from_secs(3)),
        ]),
        max_body: 24 * 1024,
        ..Default::default()
    }));
    let _server = serve(bind_again(addr), remote.clone());
    let (spans, events, poison) = expected_ids(&d);
    assert!(!poison.is_empty());
    let want: HashSet<String> = spans.iter().chain(&events).cloned().collect();
    wait_until(
        "every record at the remote",
        Duration::from_secs(60),
        || {
            let got: HashSet<String> = remote.lock().unwrap().arrivals.iter().cloned().collect();
            want.is_subset(&got)
        },
    );
    wait_until(
        "the poison record dead-lettered",
        Duration::from_secs(20),
        || count(&d.db_path, "SELECT count(*) FROM dead_letters") == 1,
    );
    let g = remote.lock().unwrap();
    let firsts = first_arrivals(&g.arrivals);
    assert!(
        !firsts.contains(&poison),
        "the poison record never got through"
    );
    assert_eq!(
        firsts.len(),
        want.len(),
        "exactly the records stored, each once after dedupe"
    );
    // In order: spans in row order, then events in row order.
    let span_order: Vec<&String> = firsts
        .iter()
        .filter(|i| i.contains('-') && i.len() == 49)
        .collect();
    assert_eq!(span_order, spans.iter().collect::<Vec<_>>());
    let event_order: Vec<&String> = firsts
        .iter()
        .filter(|i| !(i.contains('-') && i.len() == 49))
        .collect();
    assert_eq!(event_order, events.iter().collect::<Vec<_>>());
    assert!(
        g.arrivals.len() > firsts.len(),
        "the remote saw duplicates (accepted, then 500)"
    );
    // A retried batch carries the same Idempotency-Key; different batches differ.
    let mut by_key: HashMap<&str, &Vec<String>> = HashMap::new();
    for (k, ids) in &g.keys {
        assert_eq!(k.len(), 32);
        if let Some(prev) = by_key.insert(k, ids) {
            assert_eq!(prev, ids, "one key, one batch");
        }
    }
    assert!(
        by_key.len() < g.keys.len(),
        "the duplicate came with its original key"
    );
    assert!(g.auth.iter().all(|a| a == "Bearer secret-token-99"));
    // The Go envelope, field for field.
    let item = g
        .bodies
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap())
        .find(|i| i["type"] == "llm_trace")
        .unwrap();
    assert!(item["data"]["prompt_tokens"].is_i64());
    assert!(item["data"]["metadata"].is_null() || item["data"]["metadata"].is_string());
    assert!(item["data"]["created_at"].is_i64());
    drop(g);
    // The dead letter is visible through the API and /health.
    let dl = d.get_json("/v1/dead-letters?sink=push");
    assert_eq!(dl["items"][0]["record_id"], poison.as_str());
    assert_eq!(dl["items"][0]["status"], 400);
    assert_eq!(dl["items"][0]["payload"]["data"]["model"], "poison-model");
    wait_until("health settles", Duration::from_secs(10), || {
        let h = health(&d);
        h["unsynced_count"] == 0 && h["last_push_status"] == "ok"
    });
    let h = health(&d);
    assert!(h["last_push_time"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(h["sinks"][0]["dead_letters"], 1);
    assert_eq!(h["sinks"][0]["consecutive_failures"], 0);
    // The activity log (on the audit chain) says what went to dead letters.
    let a = d.get_json("/v1/activity?kind=dead_letters");
    assert_eq!(a["items"].as_array().map(Vec::len), Some(1), "{a:#}");
    let row = &a["items"][0];
    assert_eq!(row["detail"]["sink"], "push", "{a:#}");
    assert_eq!(row["detail"]["records"], 1, "{a:#}");
    assert_eq!(row["detail"]["status"], 400, "{a:#}");
    assert_eq!(row["detail"]["dropped"], 0, "{a:#}");
    assert!(d.stop().success());
    // Everything stored, the dead letter's activity row included, verifies.
    let v = d.cli(&["verify"]);
    assert!(
        v.status.success(),
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    // Secrets never reach the log.
    for line in d.logs() {
        assert!(!line.contains("urlsecret42"), "{line}");
        assert!(!line.contains("secret-token-99"), "{line}");
    }
    assert!(d.logs().iter().any(|l| l.contains("token=[REDACTED]")));
}

#[test]
fn kill_9_mid_push_then_restart_loses_nothing() {
    let remote: Shared = Arc::new(Mutex::new(Remote {
        hang_all: true,
        max_body: usize::MAX,
        ..Default::default()
    }));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = serve(listener, remote.clone());
    let endpoint = format!("http://{addr}/ingest");
    let env = [
        ("OCT_PUSH_ENDPOINT", endpoint.as_str()),
        ("OCT_PUSH_INTERVAL", "200ms"),
        ("OCT_PUSH_RETRY_INITIAL", "50ms"),
        ("OCT_PUSH_TIMEOUT", "20s"),
        ("OCT_PUSH_BATCH_RECORDS", "50"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), &env);
    ingest(&d, 150, 10, None);
    wait_until("a push in flight", Duration::from_secs(20), || {
        remote.lock().unwrap().requests >= 1
    });
    d.kill9();
    let (spans, events, _) = {
        let d2 = Daemon::start_in(dir.path(), &[]);
        let ids = expected_ids(&d2);
        drop(d2);
        ids
    };
    assert_eq!(
        spans.len() + events.len(),
        160,
        "everything accepted was stored"
    );
    remote.lock().unwrap().hang_all = false;
    let mut d = Daemon::start_in(dir.path(), &env);
    let want: HashSet<String> = spans.iter().chain(&events).cloned().collect();
    wait_until(
        "every record at the remote after the restart",
        Duration::from_secs(60),
        || {
            let got: HashSet<String> = remote.lock().unwrap().arrivals.iter().cloned().collect();
            want.is_subset(&got)
        },
    );
    let firsts = first_arrivals(&remote.lock().unwrap().arrivals);
    assert_eq!(firsts.len(), want.len());
    assert!(d.stop().success());
}

#[test]
fn final_push_on_shutdown_and_v2_sends_everything() {
    let remote: Shared = Arc::new(Mutex::new(Remote {
        max_body: usize::MAX,
        ..Default::default()
    }));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = serve(listener, remote.clone());
    let endpoint = format!("http://{addr}/ingest");
    let mut d = Daemon::start(&[
        ("OCT_PUSH_ENDPOINT", endpoint.as_str()),
        ("OCT_PUSH_FORMAT", "v2"),
        ("OCT_PUSH_AGENT_ID", "agent-7"),
        ("OCT_PUSH_HEADERS", "X-Team=blue"),
        // Only the shutdown push can deliver within this test.
        ("OCT_PUSH_INTERVAL", "1h"),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let tool = json!({"kind": "tool_call", "tool_name": "ls", "trace_id": "0af7651916cd43dd8448eb211c80319c",
                      "span_id": "b7ad6b7169203331", "parent_span_id": "00f067aa0ba902b7"});
    assert_eq!(post_json(&d.url("/v1/traces"), &tool).status(), 202);
    assert_eq!(
        post_json(&d.url("/v1/events"), &json!({"name": "deploy"})).status(),
        202
    );
    assert!(d.stop().success());
    let g = remote.lock().unwrap();
    let recs: Vec<&Value> = g
        .bodies
        .iter()
        .flat_map(|b| b["records"].as_array().unwrap())
        .collect();
    assert_eq!(recs.len(), 2, "{:?}", g.bodies);
    assert_eq!(g.bodies[0]["schema_version"], 2);
    assert_eq!(g.bodies[0]["source"]["agent"]["id"], "agent-7");
    let span = recs.iter().find(|r| r["type"] == "span").unwrap();
    assert_eq!(span["data"]["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(span["data"]["kind"], "tool_call");
    assert!(
        recs.iter()
            .any(|r| r["type"] == "event" && r["data"]["name"] == "deploy")
    );
}

/// With the audit chain on, every pushed body carries its newest signed head (a copy of
/// the head outside the machine); the Go envelope is otherwise unchanged.
#[test]
fn pushed_bodies_carry_the_signed_audit_head() {
    let remote: Shared = Arc::new(Mutex::new(Remote {
        max_body: usize::MAX,
        ..Default::default()
    }));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = serve(listener, remote.clone());
    let endpoint = format!("http://{addr}/ingest");
    let d = Daemon::start(&[
        ("OCT_PUSH_ENDPOINT", endpoint.as_str()),
        ("OCT_PUSH_INTERVAL", "1s"),
        ("OCT_AUDIT_CHECKPOINT_INTERVAL", "1s"),
        ("OCT_AUDIT", "on"),
    ]);
    let call = json!({"provider": "openai", "model": "gpt-4o", "prompt_tokens": 3});
    assert_eq!(post_json(&d.url("/v1/traces"), &call).status(), 202);
    d.wait_count(
        "SELECT count(*) FROM audit_heads",
        1,
        Duration::from_secs(10),
    );
    assert_eq!(post_json(&d.url("/v1/traces"), &call).status(), 202);
    wait_until("a body with a signed head", Duration::from_secs(15), || {
        remote
            .lock()
            .unwrap()
            .bodies
            .iter()
            .any(|b| b["audit_head"].is_object())
    });
    let g = remote.lock().unwrap();
    let body = g
        .bodies
        .iter()
        .find(|b| b["audit_head"].is_object())
        .unwrap();
    assert!(body["events"].is_array(), "still the Go envelope: {body}");
    let h: openclaw_trace::store::audit::SignedHead =
        serde_json::from_value(body["audit_head"].clone()).unwrap();
    let out = d.cli(&["audit", "key"]);
    let key_hex = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("ed25519 ")
        .to_string();
    let key = openclaw_trace::store::audit::hex_bytes::decode(&key_hex).unwrap();
    assert!(h.seq >= 1 && h.verify(&key), "{body}");
}
