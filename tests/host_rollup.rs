//! Host metric rollups on a real database: points past the raw window are rolled
//! into per-step aggregates by the daemon's writer and deleted, and
//! `GET /v1/metrics` answers over rollups and raw points as one series; the
//! Prometheus endpoint and `openclaw-trace status` keep working.

mod common;
use common::*;

use std::time::{Duration, Instant};

use serde_json::Value;

const S: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn metrics(d: &Daemon, query: &str) -> Value {
    let r = client()
        .get(d.url(&format!("/v1/metrics?{query}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

/// Polls `sql` (a count) until `ok` holds, at most `timeout`; returns the last count.
fn wait_until(d: &Daemon, sql: &str, timeout: Duration, ok: impl Fn(i64) -> bool) -> i64 {
    let until = Instant::now() + timeout;
    loop {
        let n = count(&d.db_path, sql);
        if ok(n) || Instant::now() > until {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn old_host_points_are_rolled_up_and_still_answer_queries() {
    let d = Daemon::start(&[
        ("OCT_HOST_DISABLE", "dns"),
        ("OCT_METRICS_INTERVAL", "500ms"),
        ("OCT_METRICS_RAW_RETENTION", "3s"),
        ("OCT_METRICS_ROLLUP_STEP", "1s"),
    ]);
    let started = now_ns();

    // A minute of known host points an hour ago: a gauge 0..59 and a running
    // total rising 100 a second, one point a second.
    let base = (started - 3600 * S) / (60 * S) * (60 * S);
    {
        let db = rusqlite::Connection::open(&d.db_path).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        let tx = db.unchecked_transaction().unwrap();
        for i in 0..60i64 {
            tx.execute(
                "INSERT INTO metric_points (name, unit, kind, time_ns, value, attributes, source)
                 VALUES ('test.rollup.gauge', '1', 'gauge', ?1, ?2, '{\"k\":\"a\"}', 'host')",
                rusqlite::params![base + i * S, i as f64],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO metric_points (name, unit, kind, time_ns, start_time_ns, value,
                     temporality, monotonic, source)
                 VALUES ('test.rollup.total', 'By', 'sum', ?1, ?2, ?3, 'cumulative', 1, 'host')",
                rusqlite::params![base + i * S, base, (i * 100) as f64],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let rolled = wait_until(
        &d,
        "SELECT count(*) FROM metric_rollups WHERE name LIKE 'test.rollup.%'",
        Duration::from_secs(20),
        |n| n >= 120,
    );
    assert_eq!(rolled, 120, "one rollup row per series and second");
    assert_eq!(
        count(
            &d.db_path,
            "SELECT count(*) FROM metric_points WHERE name LIKE 'test.rollup.%'"
        ),
        0,
        "rolled points are deleted"
    );
    // A metric with only rolled points is still listed.
    let names = d.get_json("/v1/metrics/names");
    let listed = names.to_string();
    assert!(
        listed.contains("\"test.rollup.gauge\"") && listed.contains("\"test.rollup.total\""),
        "{names}"
    );
    let range = format!(
        "from={}&to={}",
        base / 1_000_000,
        (base + 60 * S) / 1_000_000
    );
    let g = metrics(&d, &format!("name=test.rollup.gauge&{range}&step=60s"));
    let p = &g["series"][0]["points"][0];
    assert_eq!(g["series"][0]["attributes"]["k"], "a");
    assert_eq!(
        (&p["count"], &p["avg"], &p["min"], &p["max"], &p["last"]),
        (
            &Value::from(60),
            &Value::from(29.5),
            &Value::from(0.0),
            &Value::from(59.0),
            &Value::from(59.0)
        )
    );
    let g10 = metrics(&d, &format!("name=test.rollup.gauge&{range}&step=10s"));
    let pts = g10["series"][0]["points"].as_array().unwrap();
    assert_eq!(pts.len(), 6);
    assert!(pts.iter().all(|p| p["count"] == 10));
    assert_eq!(pts[5]["avg"], 54.5);
    let t = metrics(&d, &format!("name=test.rollup.total&{range}&step=30s"));
    for p in t["series"][0]["points"].as_array().unwrap() {
        assert_eq!(p["rate"], 100.0, "the rate survives the rollup: {p}");
    }

    // The daemon's own samples: the oldest are rolled, the newest raw, and one
    // query over both sees every sample since the start without a gap.
    let old_raw = format!(
        "SELECT count(*) FROM metric_points WHERE source = 'host' AND time_ns < {}",
        started + 2 * S
    );
    assert!(
        wait_until(
            &d,
            &format!(
                "SELECT count(*) FROM metric_rollups WHERE name = 'system.memory.limit' AND bucket_ns < {}",
                started + 2 * S
            ),
            Duration::from_secs(20),
            |n| n >= 2
        ) >= 2,
        "the first seconds of samples are rolled up"
    );
    assert_eq!(
        wait_until(&d, &old_raw, Duration::from_secs(10), |n| n == 0),
        0,
        "raw host points past the window are gone"
    );
    let raw_now = count(
        &d.db_path,
        "SELECT count(*) FROM metric_points WHERE name = 'system.memory.limit'",
    );
    assert!(raw_now > 0, "recent points stay raw");
    let q = format!(
        "name=system.memory.limit&from={}&to={}&step=1s",
        started / 1_000_000,
        now_ns() / 1_000_000 + 1000
    );
    let m = metrics(&d, &q);
    let pts = m["series"][0]["points"].as_array().unwrap();
    let samples: u64 = pts.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    let rolled_samples = count(
        &d.db_path,
        "SELECT COALESCE(sum(count), 0) FROM metric_rollups WHERE name = 'system.memory.limit'",
    );
    assert!(rolled_samples >= 2);
    assert!(
        samples as i64 >= rolled_samples + raw_now - 2,
        "{samples} samples answered, {rolled_samples} rolled + {raw_now} raw"
    );
    for w in pts.windows(2) {
        let gap = w[1]["time_ns"].as_i64().unwrap() - w[0]["time_ns"].as_i64().unwrap();
        assert!(
            gap <= 3 * S,
            "a gap of {gap} ns between {} and {}",
            w[0],
            w[1]
        );
    }

    // What reads the newest points still works.
    let prom = client()
        .get(d.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(prom.contains("system_memory_limit"), "{prom}");
    let out = d.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(st["last_sample"].is_string(), "{st}");
}
