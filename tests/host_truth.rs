//! Truth: Debian's prometheus-node-exporter runs beside openclaw-trace, and the
//! same quantities, sampled at the same moment, must agree. "The same moment":
//! node_exporter is scraped just before and just after one of our samples, and
//! our value must lie within that before/after bracket widened by a tolerance
//! stated per metric (2 % unless said otherwise).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Prometheus text format: (name, labels) -> value.
type Scrape = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn parse_prometheus(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let mut m = BTreeMap::new();
                for kv in rest.trim_end_matches('}').split("\",") {
                    if let Some((k, v)) = kv.split_once("=\"") {
                        m.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                }
                (n.to_string(), m)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.insert((name, labels), v);
    }
    out
}

/// Sum of a node_exporter metric over the series whose labels include `want`.
fn ne(s: &Scrape, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let vals: Vec<f64> = s
        .iter()
        .filter(|((n, l), _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .collect();
    (!vals.is_empty()).then(|| vals.iter().sum())
}

/// Our value of a metric at time `t`, for the series whose attributes include `want`.
fn ours(d: &Daemon, name: &str, t: i64, want: &[(&str, &str)]) -> Option<f64> {
    let db = d.db();
    let mut stmt = db
        .prepare("SELECT attributes, value FROM metric_points WHERE name = ?1 AND time_ns = ?2")
        .unwrap();
    let rows: Vec<(Option<String>, f64)> = stmt
        .query_map(rusqlite::params![name, t], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.into_iter()
        .find(|(a, _)| {
            let a: Value = a
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or(Value::Null);
            want.iter().all(|(k, v)| a[*k].as_str() == Some(*v))
        })
        .map(|(_, v)| v)
}

fn scrape(url: &str) -> (Scrape, Instant) {
    let text = client().get(url).send().unwrap().text().unwrap();
    (parse_prometheus(&text), Instant::now())
}

#[test]
fn figures_match_node_exporter_at_the_same_moment() {
    let bin = ["prometheus-node-exporter", "node_exporter"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("prometheus-node-exporter is not installed: run scripts/setup-host.sh");
    let port = free_port();
    let _exporter = Exporter(
        Command::new(bin)
            .args([
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.meminfo",
                "--collector.filesystem",
                "--collector.netdev",
                "--collector.loadavg",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/metrics");
    let until = Instant::now() + Duration::from_secs(20);
    while client().get(&url).send().is_err() {
        assert!(Instant::now() < until, "node_exporter did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let d = Daemon::start(&[
        ("OCT_METRICS_INTERVAL", "1s"),
        ("OCT_HOST_DISABLE", "dns,processes,diskio"),
    ]);
    let last_sample = |d: &Daemon| -> i64 {
        d.db()
            .query_row("SELECT COALESCE(max(time_ns), 0) FROM metric_points WHERE name = 'system.cpu.load_average.15m'", [], |r| r.get(0))
            .unwrap()
    };
    // Wait for a sample that falls between two scrapes. A sample is written
    // within milliseconds of being taken, so "seen after scrape A" means "taken after A".
    let mut bracket = None;
    for _ in 0..10 {
        let before = last_sample(&d);
        let (a, _) = scrape(&url);
        let until = Instant::now() + Duration::from_secs(5);
        let mut t = before;
        while t == before && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            t = last_sample(&d);
        }
        // The daemon writes a sample's points together; let the batch land.
        std::thread::sleep(Duration::from_millis(50));
        let (b, _) = scrape(&url);
        if t != before {
            bracket = Some((a, b, t));
            break;
        }
    }
    let (a, b, t) = bracket.expect("no sample between two scrapes");
    let fs = [("mountpoint", "/"), ("fstype", "ext4")];
    let root = [("system.filesystem.mountpoint", "/")];
    let cpu_mode = |m: &'static str| [("mode", m)];
    let our_mode = |m: &'static str| [("cpu.mode", m)];
    // (what, node_exporter name and labels, our name and attributes, tolerance)
    let checks: Vec<(String, f64, f64, Option<f64>, f64)> = {
        let mut v = Vec::new();
        let mut add = |what: &str,
                       ne_name: &str,
                       ne_l: &[(&str, &str)],
                       our: &str,
                       our_l: &[(&str, &str)],
                       tol: f64| {
            let (na, nb) = (ne(&a, ne_name, ne_l), ne(&b, ne_name, ne_l));
            let (Some(na), Some(nb)) = (na, nb) else {
                panic!("node_exporter has no {ne_name} {ne_l:?}");
            };
            v.push((what.to_string(), na, nb, ours(&d, our, t, our_l), tol));
        };
        add(
            "memory available",
            "node_memory_MemAvailable_bytes",
            &[],
            "system.linux.memory.available",
            &[],
            0.02,
        );
        add(
            "memory total",
            "node_memory_MemTotal_bytes",
            &[],
            "system.memory.limit",
            &[],
            0.0,
        );
        add(
            "filesystem size /",
            "node_filesystem_size_bytes",
            &fs,
            "system.filesystem.limit",
            &root,
            0.0,
        );
        add(
            "filesystem free /",
            "node_filesystem_avail_bytes",
            &fs,
            "system.filesystem.usage",
            &[root[0], ("system.filesystem.state", "free")],
            0.02,
        );
        for dev in ["lo", "eth0"] {
            if ne(&a, "node_network_receive_bytes_total", &[("device", dev)]).is_none() {
                continue;
            }
            let i = [("network.interface.name", dev)];
            add(
                &format!("network rx bytes {dev}"),
                "node_network_receive_bytes_total",
                &[("device", dev)],
                "system.network.io",
                &[i[0], ("network.io.direction", "receive")],
                0.02,
            );
            add(
                &format!("network tx bytes {dev}"),
                "node_network_transmit_bytes_total",
                &[("device", dev)],
                "system.network.io",
                &[i[0], ("network.io.direction", "transmit")],
                0.02,
            );
        }
        add(
            "load 1m",
            "node_load1",
            &[],
            "system.cpu.load_average.1m",
            &[],
            0.02,
        );
        add(
            "load 5m",
            "node_load5",
            &[],
            "system.cpu.load_average.5m",
            &[],
            0.02,
        );
        add(
            "load 15m",
            "node_load15",
            &[],
            "system.cpu.load_average.15m",
            &[],
            0.02,
        );
        for m in ["user", "system", "idle", "iowait"] {
            add(
                &format!("cpu seconds {m}"),
                "node_cpu_seconds_total",
                &cpu_mode(m),
                "system.cpu.time",
                &our_mode(m),
                0.02,
            );
        }
        v
    };
    let mut failures = Vec::new();
    eprintln!(
        "{:<24} {:>20} {:>20} {:>20}  tolerance",
        "quantity", "node_exporter before", "openclaw-trace", "node_exporter after"
    );
    for (what, na, nb, mine, tol) in &checks {
        let Some(mine) = mine else {
            failures.push(format!("{what}: openclaw-trace has no value"));
            continue;
        };
        eprintln!(
            "{what:<24} {na:>20.2} {mine:>20.2} {nb:>20.2}  {:.0}%",
            tol * 100.0
        );
        let (lo, hi) = (na.min(*nb), na.max(*nb));
        // The bracket widened by the tolerance (float noise aside for exact figures).
        let slack = tol * hi.abs() + 1e-6;
        if *mine < lo - slack || *mine > hi + slack {
            failures.push(format!(
                "{what}: ours {mine} outside [{lo}, {hi}] ± {slack}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
