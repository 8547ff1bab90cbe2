//! The live tail against the real binary: `GET /v1/stream` (replay, filters, redaction,
//! slow subscribers dropped without slowing ingest), `openclaw-trace tail`, and shutdown
//! with streams open.

mod common;
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Reads SSE `data:` payloads of `url` on a thread; they arrive on the channel.
fn subscribe(url: &str) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .get(url)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    std::thread::spawn(move || {
        for line in BufReader::new(resp).lines().map_while(Result::ok) {
            if let Some(d) = line.strip_prefix("data: ")
                && let Ok(v) = serde_json::from_str::<Value>(d)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    rx
}

fn next(rx: &mpsc::Receiver<Value>) -> Value {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("no stream item within 10s")
}

#[test]
fn stream_replays_filters_and_redacts() {
    let mut d = Daemon::start(&[]);
    // Captured before anyone subscribes: replayed to new subscribers.
    let early = json!({"error_type":"Early","message":"before","agent_id":"a1"});
    assert_eq!(post_json(&d.url("/v1/errors"), &early).status(), 202);
    let span = json!({"provider":"openai","model":"gpt-4o","agent_id":"a1","prompt_tokens":3,
                      "input_text":"use key sk-proj-abcdefghijklmnopqrstuvwxyz please"});
    assert_eq!(post_json(&d.url("/v1/traces"), &span).status(), 202);
    d.wait_count("SELECT count(*) FROM spans", 1, Duration::from_secs(5));

    let all = subscribe(&d.url("/v1/stream"));
    let errors = subscribe(&d.url("/v1/stream?kind=error"));
    let agent_b = subscribe(&d.url("/v1/stream?agent=b2&level=warn"));

    let first = next(&all);
    assert_eq!(first["kind"], "error");
    assert_eq!(first["name"], "Early");
    let second = next(&all);
    assert_eq!(second["kind"], "llm_call");
    assert_eq!(second["input"], "use key [REDACTED] please");
    assert_eq!(second["model"], "gpt-4o");
    assert!(second["trace_id"].as_str().unwrap().len() == 32);
    assert_eq!(next(&errors)["name"], "Early");

    // Live items, after the replay.
    let late = json!({"error_type":"Late","message":"token=abc123 leaked","agent_id":"b2",
                      "trace_id":"0123456789abcdef0123456789abcdef"});
    assert_eq!(post_json(&d.url("/v1/errors"), &late).status(), 202);
    let info = json!({"name":"note","agent_id":"b2","severity":"info"});
    assert_eq!(post_json(&d.url("/v1/events"), &info).status(), 202);
    let e = next(&errors);
    assert_eq!(e["name"], "Late");
    assert_eq!(e["message"], "token=[REDACTED] leaked");
    assert_eq!(e["trace_id"], "0123456789abcdef0123456789abcdef");
    let b = next(&agent_b);
    assert_eq!(b["name"], "Late", "the info event is below level warn");
    assert_eq!(next(&all)["name"], "Late");
    assert_eq!(next(&all)["name"], "note");
    assert!(
        agent_b.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing else matches agent b2 at warn"
    );
    // Bad filters name the parameter.
    let r = client().get(d.url("/v1/stream?kind=nope")).send().unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["field"], "kind");
    let r = client().get(d.url("/v1/stream?level=loud")).send().unwrap();
    assert_eq!(r.status(), 400);

    // Open streams do not hold shutdown up.
    let started = Instant::now();
    assert!(d.stop().success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
}

#[test]
fn slow_subscriber_is_dropped_and_ingest_never_waits() {
    let mut d = Daemon::start(&[]);
    // A subscriber that never reads.
    let mut slow = std::net::TcpStream::connect(d.addr).unwrap();
    write!(
        slow,
        "GET /v1/stream HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        d.addr
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Enough items to overflow socket buffers and the subscriber's channel many times.
    let text = "x".repeat(180);
    let batches = 25;
    let per_batch = 1000;
    let started = Instant::now();
    for b in 0..batches {
        let items: Vec<Value> = (0..per_batch)
            .map(|i| json!({"kind":"tool_call","tool_name":format!("t{b}-{i}"),"input_text":text}))
            .collect();
        let body = json!(items);
        // 429 means the queue is full for a moment: retry, bounded.
        let mut tries = 0;
        loop {
            let r = post_json(&d.url("/v1/traces"), &body);
            if r.status() == 202 {
                break;
            }
            assert_eq!(r.status(), 429);
            tries += 1;
            assert!(tries < 200, "ingest kept refusing");
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    let total = (batches * per_batch) as i64;
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", total, Duration::from_secs(60)),
        total
    );
    let ingest_time = started.elapsed();
    // The slow subscriber's stream ends with a `dropped` event once it reads again.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let until = Instant::now() + Duration::from_secs(30);
    let dropped = loop {
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => break false,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                // Keep only the tail: the marker is at the end.
                if seen.len() > 1 << 20 {
                    seen.drain(..seen.len() - 4096);
                }
                if String::from_utf8_lossy(&seen).contains("event: dropped") {
                    break true;
                }
            }
        }
        if Instant::now() > until {
            break false;
        }
    };
    assert!(dropped, "the slow subscriber was never dropped");
    let m = client()
        .get(d.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.lines()
            .any(|l| l == "openclaw_trace_stream_dropped_subscribers_total 1"),
        "{m}"
    );
    // A new subscriber still works, and gets the replay.
    let fresh = subscribe(&d.url("/v1/stream?kind=tool_call"));
    let first = next(&fresh);
    assert_eq!(first["kind"], "tool_call");
    eprintln!("ingested {total} spans in {ingest_time:?} with a stalled subscriber");
    assert!(d.stop().success());
}

#[test]
fn tail_command_prints_live_items() {
    let mut d = Daemon::start(&[]);
    let before = json!({"error_type":"Before","message":"replayed","agent_id":"x"});
    assert_eq!(post_json(&d.url("/v1/errors"), &before).status(), 202);
    d.wait_count("SELECT count(*) FROM events", 1, Duration::from_secs(5));
    let mut tail = Command::new(BIN)
        .args([
            "tail",
            "--kind",
            "error",
            "--url",
            &format!("http://{}", d.addr),
        ])
        .env_clear()
        .env("HOME", &d.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tail printed nothing");
    assert!(line.contains("error") && line.contains("Before"), "{line}");
    // A span (filtered out) and a new error (shown).
    let span = json!({"provider":"p","model":"m"});
    assert_eq!(post_json(&d.url("/v1/traces"), &span).status(), 202);
    let after = json!({"error_type":"After","message":"password=hunter2","agent_id":"x"});
    assert_eq!(post_json(&d.url("/v1/errors"), &after).status(), 202);
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no live line");
    assert!(line.contains("After"), "{line}");
    assert!(line.contains("password=[REDACTED]"), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
    // The daemon stopping ends the tail.
    assert!(d.stop().success());
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = tail.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > until {
            let _ = tail.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.is_some(),
        "tail did not exit when the daemon stopped"
    );
}
