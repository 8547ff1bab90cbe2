//! Overload (#18): many concurrent connections get only 202, 429 or 503 with Retry-After,
//! never a reset or a hang; the in-flight budget refuses before reading a body; the
//! connection cap holds.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Daemon;

fn batch(n: usize) -> String {
    let events: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"type":"tool_call","name":"t{i}","input":{{"q":"{}"}}}}"#,
                "x".repeat(100)
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

fn addr(d: &Daemon) -> String {
    d.url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// One raw request; the status and whether Retry-After was there, or the I/O error.
fn post(addr: &str, path: &str, body: &str) -> std::io::Result<(u16, bool)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_write_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((
        status,
        text.to_ascii_lowercase().contains("\r\nretry-after:"),
    ))
}

#[test]
fn three_hundred_connections_get_answers_never_resets() {
    let d = Daemon::start(&[
        ("OCT_QUEUE_CAPACITY", "500"),
        ("OCT_MAX_CONNECTIONS", "64"),
        ("OCT_MAX_INFLIGHT_BYTES", "256KiB"),
    ]);
    let a = addr(&d);
    let body = batch(100);
    let started = Instant::now();
    let threads: Vec<_> = (0..300)
        .map(|_| {
            let (a, body) = (a.clone(), body.clone());
            std::thread::spawn(move || {
                (0..3)
                    .map(|_| post(&a, "/v1/events", &body))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut by_status = std::collections::BTreeMap::new();
    for t in threads {
        for r in t.join().unwrap() {
            let (status, retry_after) = r.expect("no reset, no hang");
            assert!(
                status == 202 || ((status == 429 || status == 503) && retry_after),
                "status {status}, retry-after {retry_after}"
            );
            *by_status.entry(status).or_insert(0) += 1;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(by_status.contains_key(&202), "{by_status:?}");
    let h = d.get_json("/health");
    assert_eq!(h["max_connections"], 64);
    assert_eq!(h["max_inflight_bytes"], 256 * 1024);
    assert_eq!(h["inflight_bytes"], 0);
    let m = common::client()
        .get(d.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.contains("openclaw_trace_inflight_max_bytes 262144"),
        "{m}"
    );
    assert!(m.contains("openclaw_trace_http_connections_max 64"), "{m}");
}

#[test]
fn over_the_budget_is_refused_before_its_body_is_read() {
    let d = Daemon::start(&[("OCT_MAX_INFLIGHT_BYTES", "4KiB")]);
    let a = addr(&d);
    // A holds 3 KiB of the budget: its headers announce them, its body never comes.
    let mut holder = TcpStream::connect(&a).unwrap();
    write!(
        holder,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3072\r\n\r\n["
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // B announces 2 KiB and waits for 100 Continue: refused without sending a byte of it.
    let mut s = TcpStream::connect(&a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 2048\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 429"), "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(head.contains("oct_max_inflight_bytes"), "{head}");
    drop(holder);
    // With the budget free again, a small batch goes in.
    let (status, _) = post(&a, "/v1/events", &batch(2)).unwrap();
    assert_eq!(status, 202);
}

#[test]
fn the_connection_cap_holds() {
    let d = Daemon::start(&[("OCT_MAX_CONNECTIONS", "4")]);
    let a = addr(&d);
    // Four idle keep-alive connections take every place.
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, retry_after) = post(&a, "/v1/events", &batch(2)).expect("answered, not reset");
    assert_eq!((status, retry_after), (503, true));
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = post(&a, "/v1/events", &batch(2)).unwrap();
        if status == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after the idle ones closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
