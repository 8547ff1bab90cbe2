//! `openclaw-trace metrics [NAME]` and `openclaw-trace status`: read the local
//! database the daemon writes (read-only, also while it runs).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::Args;
use serde_json::{Map, Value};

use super::traces::{CliError, reader};
use crate::config::Config;
use crate::model::now_ns;
use crate::store::metric_query::{self, SeriesQuery};
use crate::store::query::{self as q, EventFilter};
use crate::util::time::format_ns;

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// A metric name (e.g. system.cpu.utilization); without it, the names stored are listed
    pub name: Option<String>,
    /// How far back (15m, 1h, 7d)
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Aggregation step (30s, 5m); default: about 20 rows per series
    #[arg(long)]
    pub step: Option<String>,
    /// Only series with this attribute value, as KEY=VALUE (repeatable)
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub attrs: Vec<String>,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

fn duration_arg(flag: &str, v: &str) -> Result<i64, CliError> {
    crate::util::duration::parse(v)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .map_err(|e| CliError::Usage(format!("--{flag}: {e}")))
}

pub fn run_metrics(cfg: &Config, a: &MetricsArgs) -> Result<String, CliError> {
    let conn = reader(cfg)?;
    let Some(name) = &a.name else {
        let names = metric_query::names(&conn)?;
        if a.json {
            return Ok(serde_json::to_string_pretty(&names).unwrap_or_default() + "\n");
        }
        let mut out = format!("{:<40}  {:<14}  {:<9}  LAST\n", "NAME", "UNIT", "KIND");
        for n in &names {
            let _ = writeln!(
                out,
                "{:<40}  {:<14}  {:<9}  {}",
                n.name, n.unit, n.kind, n.last_time
            );
        }
        if names.is_empty() {
            out.push_str("(no metrics yet)\n");
        }
        return Ok(out);
    };
    let since = duration_arg("since", &a.since)?;
    let to_ns = now_ns();
    let from_ns = to_ns - since.max(1);
    let step_ns = match &a.step {
        Some(s) => duration_arg("step", s)?.max(1_000_000),
        None => (since / 20).max(1_000_000_000),
    };
    let mut attributes = BTreeMap::new();
    for kv in &a.attrs {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--attr: expected KEY=VALUE, got {kv:?}")))?;
        attributes.insert(k.to_string(), v.to_string());
    }
    let r = metric_query::series(
        &conn,
        &SeriesQuery {
            name: name.clone(),
            from_ns,
            to_ns,
            step_ns,
            attributes,
        },
    )?;
    if a.json {
        return Ok(serde_json::to_string_pretty(&r).unwrap_or_default() + "\n");
    }
    let unit = r.unit.clone().unwrap_or_default();
    let mut out = format!("{} ({unit}), step {}s\n", r.name, r.step_seconds);
    for s in &r.series {
        let _ = writeln!(out, "\n{}", attrs_line(&s.attributes));
        let rate = s.points.iter().any(|p| p.rate.is_some());
        let _ = writeln!(
            out,
            "  {:<20}  {:>14}  {:>14}  {:>14}{}",
            "TIME",
            "AVG",
            "MIN",
            "MAX",
            if rate { "          RATE/s" } else { "" }
        );
        for p in &s.points {
            let _ = write!(
                out,
                "  {:<20}  {:>14}  {:>14}  {:>14}",
                p.time.get(..19).unwrap_or(&p.time),
                value(p.avg, &unit),
                value(p.min, &unit),
                value(p.max, &unit)
            );
            if let Some(r) = p.rate {
                let _ = write!(out, "  {:>14}", value(r, &unit));
            }
            out.push('\n');
        }
    }
    if r.series.is_empty() {
        let _ = writeln!(out, "(no points in the last {})", a.since);
    }
    Ok(out)
}

fn attrs_line(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str().map_or_else(|| v.to_string(), String::from)
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => "(no attributes)".into(),
    }
}

/// A value in its unit, readable: bytes in KiB/MiB/GiB, ratios as percent.
pub fn value(v: f64, unit: &str) -> String {
    match unit {
        "By" => bytes(v),
        "1" => format!("{:.1}%", v * 100.0),
        "s" if v < 1.0 => format!("{:.1}ms", v * 1000.0),
        _ if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        _ => format!("{v:.3}"),
    }
}

pub fn bytes(v: f64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 1024.0 && i + 1 < UNITS.len() {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{x:.0} B")
    } else {
        format!("{x:.1} {}", UNITS[i])
    }
}

/// The latest values of a few metrics, for `status`.
struct Latest<'a> {
    conn: &'a rusqlite::Connection,
    since_ns: i64,
}

impl Latest<'_> {
    fn all(&self, name: &str) -> Vec<metric_query::LatestPoint> {
        metric_query::latest(self.conn, name, self.since_ns).unwrap_or_default()
    }
    fn one(&self, name: &str, key: &str, val: &str) -> Option<f64> {
        self.all(name)
            .into_iter()
            .find(|(a, _, _)| key.is_empty() || a.get(key).and_then(|v| v.as_str()) == Some(val))
            .map(|(_, v, _)| v)
    }
}

pub fn run_status(cfg: &Config, a: &StatusArgs) -> Result<String, CliError> {
    let conn = reader(cfg)?;
    let now = now_ns();
    // Ten sampling intervals back: older figures are not "now".
    let window = (cfg.host.metrics_interval.as_nanos() as i64 * 10).max(60_000_000_000);
    let l = Latest {
        conn: &conn,
        since_ns: now - window,
    };
    let last_sample = l.all("system.memory.limit").first().map(|(_, _, t)| *t);
    let open = open_conditions(&conn)?;
    let errors_hour = q::list_events(
        &conn,
        &EventFilter {
            event_type: Some("error".into()),
            from_ns: Some(now - 3_600_000_000_000),
            ..Default::default()
        },
        q::MAX_LIMIT,
        None,
    )?
    .items
    .len();
    if a.json {
        let pick = |n: &str| {
            l.all(n)
                .into_iter()
                .map(|(a, v, _)| serde_json::json!({"attributes": a, "value": v}))
                .collect::<Vec<_>>()
        };
        let mut m = Map::new();
        m.insert("last_sample".into(), last_sample.map(format_ns).into());
        for n in [
            "system.cpu.utilization",
            "system.cpu.load_average.1m",
            "system.memory.usage",
            "system.linux.memory.available",
            "system.filesystem.utilization",
            "oct.agent.up",
            "process.memory.usage",
            "oct.queue.depth",
            "oct.write.latency",
        ] {
            m.insert(n.into(), pick(n).into());
        }
        m.insert(
            "open_conditions".into(),
            serde_json::to_value(&open).unwrap_or_default(),
        );
        m.insert("errors_last_hour".into(), errors_hour.into());
        return Ok(serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default() + "\n");
    }
    let mut out = String::new();
    let db = cfg.store.db_path();
    let (db_size, wal_size) = crate::store::file_sizes(&db);
    match last_sample {
        Some(t) => {
            let _ = writeln!(
                out,
                "openclaw-trace status: last host sample {}s ago ({})",
                (now - t) / 1_000_000_000,
                db.display()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "openclaw-trace status: no host sample in the last {}s: is the daemon running? ({})",
                window / 1_000_000_000,
                db.display()
            );
        }
    }
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0));
    let b = |v: Option<f64>| v.map_or("-".into(), bytes);
    let _ = writeln!(
        out,
        "host     cpu {}  load {} {} {}  memory {} used of {} ({} available)  swap {}",
        pct(l.one("system.cpu.utilization", "", "")),
        l.one("system.cpu.load_average.1m", "", "")
            .map_or("-".into(), |v| format!("{v:.2}")),
        l.one("system.cpu.load_average.5m", "", "")
            .map_or("-".into(), |v| format!("{v:.2}")),
        l.one("system.cpu.load_average.15m", "", "")
            .map_or("-".into(), |v| format!("{v:.2}")),
        b(l.one("system.memory.usage", "system.memory.state", "used")),
        b(l.one("system.memory.limit", "", "")),
        b(l.one("system.linux.memory.available", "", "")),
        b(l.one("system.paging.usage", "system.paging.state", "used")),
    );
    if let Some(used) = l.one("container.memory.usage", "", "") {
        let limit = l.one("container.memory.limit", "", "");
        let _ = writeln!(
            out,
            "cgroup   memory {} of {}  cpu {}",
            bytes(used),
            limit.map_or("no limit".into(), bytes),
            pct(l.one("container.cpu.utilization", "", ""))
        );
    }
    for (attrs, util, _) in l.all("system.filesystem.utilization") {
        let mp = attrs
            .get("system.filesystem.mountpoint")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        let free = l
            .all("system.filesystem.usage")
            .into_iter()
            .find(|(a, _, _)| {
                a.get("system.filesystem.mountpoint") == attrs.get("system.filesystem.mountpoint")
                    && a.get("system.filesystem.state").and_then(|v| v.as_str()) == Some("free")
            })
            .map(|(_, v, _)| v);
        let _ = writeln!(
            out,
            "disk     {mp} {:.0}% used ({} free)",
            util * 100.0,
            b(free)
        );
    }
    let role = |r: &str, n: &str| {
        l.all(n)
            .into_iter()
            .find(|(a, _, _)| a.get("oct.process.role").and_then(|v| v.as_str()) == Some(r))
            .map(|(a, v, _)| (a, v))
    };
    match l.one("oct.agent.up", "", "") {
        None => {
            out.push_str("agent    not watched (set OCT_AGENT_PROCESS or OCT_AGENT_PID_FILE)\n")
        }
        Some(up) if up < 1.0 => {
            let _ = writeln!(
                out,
                "agent    DOWN  restarts {}",
                l.one("oct.agent.restarts", "", "").unwrap_or(0.0)
            );
        }
        Some(_) => {
            let rss = role("agent", "process.memory.usage");
            let pid = rss
                .as_ref()
                .and_then(|(a, _)| a.get("process.pid").cloned())
                .unwrap_or(Value::Null);
            let name = rss
                .as_ref()
                .and_then(|(a, _)| {
                    a.get("process.executable.name")
                        .and_then(|v| v.as_str())
                        .map(String::from)
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "agent    up  pid {pid} ({name})  uptime {}  cpu {}  rss {}  threads {}  restarts {}",
                role("agent", "process.uptime").map_or("-".into(), |(_, v)| {
                    crate::util::duration::format(std::time::Duration::from_secs(v as u64))
                }),
                pct(role("agent", "process.cpu.utilization").map(|(_, v)| v)),
                b(rss.map(|(_, v)| v)),
                role("agent", "process.thread.count")
                    .map_or("-".into(), |(_, v)| format!("{v:.0}")),
                l.one("oct.agent.restarts", "", "").unwrap_or(0.0),
            );
        }
    }
    let _ = writeln!(
        out,
        "sidecar  rss {}  cpu {}  threads {}  fds {}  queue {}  write {}  db {} (+{} wal)",
        b(role("self", "process.memory.usage").map(|(_, v)| v)),
        pct(role("self", "process.cpu.utilization").map(|(_, v)| v)),
        role("self", "process.thread.count").map_or("-".into(), |(_, v)| format!("{v:.0}")),
        role("self", "process.open_file_descriptor.count")
            .map_or("-".into(), |(_, v)| format!("{v:.0}")),
        l.one("oct.queue.depth", "", "")
            .map_or("-".into(), |v| format!("{v:.0}")),
        l.one("oct.write.latency", "", "")
            .map_or("-".into(), |v| value(v, "s")),
        bytes(db_size as f64),
        bytes(wal_size as f64),
    );
    let _ = writeln!(out, "errors   {errors_hour} in the last hour");
    if open.is_empty() {
        out.push_str("open conditions: none\n");
    } else {
        let _ = writeln!(out, "open conditions ({}):", open.len());
        for e in &open {
            let _ = writeln!(
                out,
                "  since {}  {:<9} {:<18} {}",
                e.time.get(..19).unwrap_or(&e.time),
                e.severity,
                e.name,
                e.message.as_deref().unwrap_or("")
            );
        }
    }
    Ok(out)
}

/// Host conditions still open (their event's `state` is `active`).
fn open_conditions(conn: &rusqlite::Connection) -> Result<Vec<q::EventOut>, CliError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {} FROM events WHERE source = 'host' AND type = 'error'
               AND json_extract(attributes, '$.state') = 'active'
             ORDER BY time_ns DESC LIMIT 50",
            q::EVENT_COLS
        ))
        .map_err(crate::store::StoreError::from)?;
    let rows = stmt
        .query_map([], q::event_row)
        .and_then(|r| r.collect::<Result<Vec<_>, _>>())
        .map_err(crate::store::StoreError::from)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_values() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(3.5 * 1024.0 * 1024.0), "3.5 MiB");
        assert_eq!(value(0.256, "1"), "25.6%");
        assert_eq!(value(0.0123, "s"), "12.3ms");
        assert_eq!(value(42.0, "{thread}"), "42");
    }
}
