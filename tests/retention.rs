//! Retention by size and by age, on the real binary.
mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn db_plus_wal(d: &Daemon) -> u64 {
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    size(d.db_path.clone()) + size(d.db_path.with_extension("db-wal"))
}

#[test]
fn a_10_mib_cap_holds_while_100_mib_is_ingested() {
    let cap: u64 = 10 << 20;
    let d = Daemon::start(&[
        ("OCT_CLEANUP_DB_THRESHOLD_BYTES", "10MiB"),
        ("OCT_CLEANUP_DISK_THRESHOLD", "100"),
        ("OCT_CLEANUP_INTERVAL", "1s"),
    ]);
    let url = d.url("/v1/traces");
    let c = client();
    let text = "lorem ipsum dolor sit amet ".repeat(600); // ~16 KB per span
    let mut sent_bytes = 0usize;
    let mut max_seen = 0u64;
    let mut i = 0u64;
    let started = Instant::now();
    while sent_bytes < 100 << 20 {
        let body = Value::Array(
            (0..20)
                .map(|_| {
                    i += 1;
                    json!({"provider":"p","model":"m","input_text": text, "span_id": format!("{i:016x}")})
                })
                .collect(),
        );
        let payload = body.to_string();
        let r = c
            .post(&url)
            .header("content-type", "application/json")
            .body(payload.clone())
            .send()
            .unwrap();
        match r.status().as_u16() {
            202 => sent_bytes += payload.len(),
            429 => std::thread::sleep(Duration::from_millis(10)),
            s => panic!("unexpected {s}"),
        }
        max_seen = max_seen.max(db_plus_wal(&d));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let end = db_plus_wal(&d);
    let h: Value = c.get(d.url("/health")).send().unwrap().json().unwrap();
    eprintln!(
        "ingested {} MiB in {:?}; DB+WAL max {} KiB, at end {} KiB; retention deleted {}",
        sent_bytes >> 20,
        started.elapsed(),
        max_seen >> 10,
        end >> 10,
        h["retention_deleted"]
    );
    for l in d
        .logs()
        .iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        eprintln!("daemon: {l}");
    }
    assert!(end <= cap, "DB+WAL {end} over the cap {cap}");
    assert!(
        max_seen <= cap,
        "DB+WAL peaked at {max_seen}, over the cap {cap}"
    );
    assert!(h["retention_deleted"].as_u64().unwrap() > 0);
    // The newest data is what is kept.
    let newest = format!("{i:016x}");
    let db = d.db();
    let kept: i64 = db
        .query_row(
            "SELECT count(*) FROM spans WHERE hex(span_id) = upper(?1)",
            [newest],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 1, "the most recent span survives");
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn wait_for(d: &Daemon, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&d.db_path, sql) != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(&d.db_path, sql), want, "{sql}");
}

#[test]
fn age_retention_deletes_what_is_old_and_nothing_else() {
    // Stored while a 30-day window keeps them all, then the window shrinks to 3 days.
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), &[("OCT_RETENTION_DAYS", "30")]);
    let c = client();
    let now_ms = now_ms();
    let day = 86_400_000u64;
    let old_trace = "00000000000000000000000000000001";
    let new_trace = "00000000000000000000000000000002";
    let spans = json!([
        {"provider":"p","model":"old","trace_id": old_trace, "timestamp": now_ms - 5 * day},
        {"provider":"p","model":"old","trace_id": old_trace, "timestamp": now_ms - 4 * day},
        {"provider":"p","model":"edge","timestamp": now_ms - 3 * day + 3_600_000},
        {"provider":"p","model":"new","trace_id": new_trace, "timestamp": now_ms - 1000},
    ]);
    assert_eq!(post_json(&d.url("/v1/traces"), &spans).status(), 202);
    let errs = json!([
        {"error_type":"Old","message":"m","timestamp": now_ms - 10 * day},
        {"error_type":"New","message":"m","timestamp": now_ms},
    ]);
    assert_eq!(post_json(&d.url("/v1/errors"), &errs).status(), 202);
    wait_for(&d, "SELECT count(*) FROM spans", 4);
    wait_for(&d, "SELECT count(*) FROM events", 2);
    assert!(d.stop().success());
    let d = Daemon::start_in(
        dir.path(),
        &[("OCT_RETENTION_DAYS", "3"), ("OCT_CLEANUP_INTERVAL", "1s")],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while (count(&d.db_path, "SELECT count(*) FROM spans") != 2
        || count(&d.db_path, "SELECT count(*) FROM events") != 1)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let models: Vec<String> = {
        let db = d.db();
        let mut st = db
            .prepare("SELECT request_model FROM spans ORDER BY start_ns")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(models, vec!["edge", "new"]);
    assert_eq!(count(&d.db_path, "SELECT count(*) FROM events"), 1);
    assert_eq!(
        count(&d.db_path, "SELECT count(*) FROM events WHERE name = 'New'"),
        1
    );
    // The old trace's summary went with its spans; the new one stays.
    let r: Value = c
        .get(d.url(&format!("/v1/traces/{old_trace}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["error"], "no such trace");
    assert_eq!(
        c.get(d.url(&format!("/v1/traces/{new_trace}")))
            .send()
            .unwrap()
            .status(),
        200
    );
}

/// A source that reads late (a sidecar down for a week, then its transcripts read):
/// what is older than the age window is counted where it outlives the rows (usage),
/// not stored only to be deleted at the next pass; unless a sink must ship it first.
#[test]
fn records_older_than_the_window_on_arrival_count_in_usage_but_are_not_stored() {
    let now_ms = now_ms();
    let day = 86_400_000u64;
    let body = json!([
        {"provider":"openai","model":"gpt-4o","prompt_tokens":1000,"completion_tokens":100,
         "cost_usd":0.5,"timestamp": now_ms - 7 * day, "agent_id":"late"},
        {"provider":"openai","model":"gpt-4o","prompt_tokens":10,"completion_tokens":1,
         "cost_usd":0.25,"timestamp": now_ms - 1000, "agent_id":"late"},
    ]);
    let old_error = json!({"error_type":"Old","message":"m","timestamp": now_ms - 8 * day});

    let d = Daemon::start(&[("OCT_RETENTION_DAYS", "3")]);
    assert_eq!(post_json(&d.url("/v1/traces"), &body).status(), 202);
    assert_eq!(post_json(&d.url("/v1/errors"), &old_error).status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.get_json("/health")["records_expired"] != 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = d.get_json("/health");
    assert_eq!(health["records_expired"], 2, "{health}");
    wait_for(&d, "SELECT count(*) FROM spans", 1);
    assert_eq!(count(&d.db_path, "SELECT count(*) FROM traces"), 1);
    assert_eq!(count(&d.db_path, "SELECT count(*) FROM events"), 0);
    // Usage (kept 400 days) has both calls, on their own days.
    let from = now_ms - 10 * day;
    let usage = d.get_json(&format!("/v1/usage?from={from}&group_by=agent"));
    assert_eq!(usage["totals"]["calls"], 2, "{usage}");
    assert_eq!(usage["totals"]["input_tokens"], 1010, "{usage}");
    assert_eq!(usage["totals"]["cost_usd"], 0.75, "{usage}");
    let metrics = client()
        .get(d.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("openclaw_trace_records_expired_total 2"),
        "{metrics}"
    );

    // With a sink enabled the old records are stored: it ships them before retention may go.
    let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/ingest", sink.local_addr().unwrap());
    let d = Daemon::start(&[
        ("OCT_RETENTION_DAYS", "3"),
        ("OCT_PUSH_ENDPOINT", &endpoint),
        ("OCT_PUSH_INTERVAL", "1h"),
    ]);
    assert_eq!(post_json(&d.url("/v1/traces"), &body).status(), 202);
    assert_eq!(post_json(&d.url("/v1/errors"), &old_error).status(), 202);
    wait_for(&d, "SELECT count(*) FROM spans", 2);
    wait_for(&d, "SELECT count(*) FROM events", 1);
    assert_eq!(d.get_json("/health")["records_expired"], 0);
}
