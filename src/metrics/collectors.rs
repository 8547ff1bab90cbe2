//! Values read at scrape time: openclaw-trace's own state (pipeline, store, process),
//! sink backlogs from their cursors, and the latest host samples as gauges.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use rusqlite::Connection;
use serde_json::Value;

use crate::model::now_ns;
use crate::pipeline::Pipeline;
use crate::store::schema::DATA_TABLES;
use crate::store::{ReadPool, StoreError, file_sizes, volume_space};

type Labels = Vec<(&'static str, String)>;

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: f64,
) -> fmt::Result {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: f64,
) -> fmt::Result {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, unit, MetricType::Counter)?)
}

/// A family of labelled values of one type.
fn family<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    ty: MetricType,
    series: &[(L, f64)],
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut me = enc.encode_descriptor(name, help, unit, ty)?;
    for (labels, v) in series {
        let fe = me.encode_family(labels)?;
        match ty {
            MetricType::Counter => ConstCounter::new(*v).encode(fe)?,
            _ => ConstGauge::new(*v).encode(fe)?,
        }
    }
    Ok(())
}

/// The pipeline's counters, the database's size and the process itself.
pub struct SelfCollector {
    pipeline: Pipeline,
    db_path: PathBuf,
    start_time_secs: f64,
}

impl SelfCollector {
    pub fn new(pipeline: Pipeline, db_path: PathBuf) -> Self {
        SelfCollector {
            pipeline,
            db_path,
            start_time_secs: now_ns() as f64 / 1e9,
        }
    }
}

impl fmt::Debug for SelfCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfCollector")
            .field("db_path", &self.db_path)
            .finish()
    }
}

impl Collector for SelfCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let stats = self.pipeline.stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        let by_source: Vec<(&'static str, (u64, u64))> = stats
            .by_source
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        let received: Vec<(Labels, f64)> = by_source
            .iter()
            .map(|(s, (r, _))| (vec![("source", s.to_string())], *r as f64))
            .collect();
        let dropped: Vec<(Labels, f64)> = by_source
            .iter()
            .map(|(s, (_, d))| (vec![("source", s.to_string())], *d as f64))
            .collect();
        family(
            &mut enc,
            "openclaw_trace_records_received",
            "Records accepted into the queue, by source",
            None,
            MetricType::Counter,
            &received,
        )?;
        family(
            &mut enc,
            "openclaw_trace_records_dropped",
            "Records refused (queue full or store failing), by source",
            None,
            MetricType::Counter,
            &dropped,
        )?;
        counter(
            &mut enc,
            "openclaw_trace_records_written",
            "Records committed to the database",
            None,
            load(&stats.written),
        )?;
        counter(
            &mut enc,
            "openclaw_trace_records_duplicate",
            "Records skipped as duplicates of stored ones",
            None,
            load(&stats.duplicates),
        )?;
        gauge(
            &mut enc,
            "openclaw_trace_queue_depth",
            "Records accepted and not yet committed",
            None,
            self.pipeline.depth() as f64,
        )?;
        gauge(
            &mut enc,
            "openclaw_trace_queue_capacity",
            "Most records the queue holds before ingest answers 429",
            None,
            self.pipeline.capacity() as f64,
        )?;
        let (queue_bytes, queue_max_bytes) = self.pipeline.depth_bytes();
        gauge(
            &mut enc,
            "openclaw_trace_queue_bytes",
            "Approximate bytes of records accepted and not yet committed",
            None,
            queue_bytes as f64,
        )?;
        gauge(
            &mut enc,
            "openclaw_trace_queue_max_bytes",
            "Most bytes the queue holds before ingest answers 429",
            None,
            queue_max_bytes as f64,
        )?;
        counter(
            &mut enc,
            "openclaw_trace_write_batches",
            "Batches committed",
            None,
            load(&stats.batches),
        )?;
        counter(
            &mut enc,
            "openclaw_trace_batch_write",
            "Time spent committing batches (divide by write_batches for the mean)",
            Some(&Unit::Seconds),
            load(&stats.write_micros_total) / 1e6,
        )?;
        gauge(
            &mut enc,
            "openclaw_trace_last_batch_write",
            "Time the last batch took to commit",
            Some(&Unit::Seconds),
            load(&stats.last_batch_micros) / 1e6,
        )?;
        gauge(
            &mut enc,
            "openclaw_trace_writer_failing",
            "1 while database writes are failing and being retried",
            None,
            if stats.failing.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        )?;
        counter(
            &mut enc,
            "openclaw_trace_retention_deleted_rows",
            "Rows deleted by retention (age, size or disk limits)",
            None,
            load(&stats.retention_deleted),
        )?;
        counter(
            &mut enc,
            "openclaw_trace_records_expired",
            "Records older than the age-retention window on arrival: counted in usage, budgets and metrics, not stored",
            None,
            load(&stats.expired),
        )?;
        counter(
            &mut enc,
            "openclaw_trace_retention_unshipped_deleted_rows",
            "Rows retention deleted before every sink had shipped them",
            None,
            load(&stats.retention_unshipped_deleted),
        )?;
        let (db, wal) = file_sizes(&self.db_path);
        gauge(
            &mut enc,
            "openclaw_trace_db_size",
            "Size of the database file",
            Some(&Unit::Bytes),
            db as f64,
        )?;
        gauge(
            &mut enc,
            "openclaw_trace_wal_size",
            "Size of the database's write-ahead log",
            Some(&Unit::Bytes),
            wal as f64,
        )?;
        if let Some((free, total)) = volume_space(&self.db_path) {
            gauge(
                &mut enc,
                "openclaw_trace_volume_free",
                "Free space on the database's volume",
                Some(&Unit::Bytes),
                free as f64,
            )?;
            gauge(
                &mut enc,
                "openclaw_trace_volume_size",
                "Size of the database's volume",
                Some(&Unit::Bytes),
                total as f64,
            )?;
        }
        gauge(
            &mut enc,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            None,
            self.start_time_secs,
        )?;
        if let Ok(stat) = procfs::process::Process::myself().and_then(|p| p.stat()) {
            let ticks = procfs::ticks_per_second().max(1) as f64;
            counter(
                &mut enc,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                (stat.utime + stat.stime) as f64 / ticks,
            )?;
            gauge(
                &mut enc,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                (stat.rss * procfs::page_size()) as f64,
            )?;
        }
        Ok(())
    }
}

/// Reads the store at scrape time: sink backlogs and the latest host samples.
pub struct StoreCollector {
    reads: Arc<ReadPool>,
    /// Host samples older than this are not shown (the sampler stopped or is off).
    host_window: Duration,
}

/// Most host series shown, whatever the host collectors record.
const MAX_HOST_SERIES: usize = 1000;

impl StoreCollector {
    pub fn new(reads: Arc<ReadPool>, host_window: Duration) -> Self {
        StoreCollector { reads, host_window }
    }
}

impl fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreCollector")
            .field("host_window", &self.host_window)
            .finish()
    }
}

/// One sink's position in one table.
struct Backlog {
    sink: String,
    table: &'static str,
    rows: i64,
    updated_ns: i64,
}

fn sink_backlogs(conn: &Connection) -> Result<Vec<Backlog>, StoreError> {
    let mut out = Vec::new();
    let mut stmt =
        conn.prepare_cached("SELECT sink, tbl, last_id, updated_ns FROM sink_cursors")?;
    let cursors: Vec<(String, String, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut max_ids = BTreeMap::new();
    for (table, _) in DATA_TABLES {
        let max: i64 = conn.query_row(
            &format!("SELECT coalesce(max(id), 0) FROM {table}"),
            [],
            |r| r.get(0),
        )?;
        max_ids.insert(*table, max);
    }
    for (sink, tbl, last_id, updated_ns) in cursors {
        if let Some((table, max)) = max_ids.iter().find(|(t, _)| **t == tbl) {
            out.push(Backlog {
                sink,
                table,
                rows: (max - last_id).max(0),
                updated_ns,
            });
        }
    }
    Ok(out)
}

/// One host series: its exported name, type, labels and latest value.
struct HostSeries {
    name: String,
    counter: bool,
    source_name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// `system.cpu.utilization` + `1` → `openclaw_trace_host_system_cpu_utilization_ratio`.
pub fn host_metric_name(name: &str, unit: &str) -> String {
    let base = name
        .strip_prefix("host.")
        .or_else(|| name.strip_prefix("host_"))
        .unwrap_or(name);
    let mut out = String::from("openclaw_trace_host_");
    for c in base.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c.to_ascii_lowercase());
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    // These suffixes belong to histograms and summaries; promtool rejects them elsewhere
    // (`process.open_file_descriptor.count` becomes `..._open_file_descriptor`).
    for reserved in ["_count", "_sum", "_bucket"] {
        if let Some(stripped) = out.strip_suffix(reserved) {
            out.truncate(stripped.len());
        }
    }
    let suffix = match unit {
        "By" | "bytes" | "B" => "bytes",
        "s" | "seconds" => "seconds",
        "1" | "ratio" => "ratio",
        "%" | "percent" => "percent",
        _ => "",
    };
    if !suffix.is_empty() && !out.ends_with(suffix) {
        out.push('_');
        out.push_str(suffix);
    }
    out
}

fn label_name(k: &str) -> String {
    let mut out: String = k
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.starts_with("__") || out.is_empty() {
        out.insert(0, 'l');
    }
    out
}

fn host_series(conn: &Connection, since_ns: i64) -> Result<Vec<HostSeries>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, unit, kind, monotonic, value, attributes FROM metric_points
         WHERE id IN (SELECT max(id) FROM metric_points
                      WHERE source = 'host' AND time_ns >= ?1 AND kind IN ('gauge', 'sum')
                      GROUP BY name, attributes)
         ORDER BY name LIMIT ?2",
    )?;
    let rows = stmt.query_map(rusqlite::params![since_ns, MAX_HOST_SERIES as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<bool>>(3)?,
            r.get::<_, Option<f64>>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, unit, kind, monotonic, value, attrs) = row?;
        let Some(value) = value.filter(|v| v.is_finite()) else {
            continue;
        };
        let mut labels: Vec<(String, String)> = attrs
            .and_then(|a| serde_json::from_str::<serde_json::Map<String, Value>>(&a).ok())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((label_name(&k), v))
            })
            .collect();
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        let counter = kind == "sum" && monotonic == Some(true);
        out.push(HostSeries {
            name: host_metric_name(&name, &unit),
            counter,
            source_name: name,
            labels,
            value,
        });
    }
    // One family per name; families must not mix types.
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.counter.cmp(&b.counter)));
    out.dedup_by(|a, b| a.name == b.name && a.labels == b.labels);
    Ok(out)
}

impl Collector for StoreCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let since = now_ns() - self.host_window.as_nanos() as i64;
        let read = self
            .reads
            .with(|conn| Ok((sink_backlogs(conn)?, host_series(conn, since)?)));
        let (backlogs, host) = match read {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "metrics: cannot read the store");
                return Ok(());
            }
        };
        let rows: Vec<(Labels, f64)> = backlogs
            .iter()
            .map(|b| {
                (
                    vec![("sink", b.sink.clone()), ("table", b.table.to_string())],
                    b.rows as f64,
                )
            })
            .collect();
        family(
            &mut enc,
            "openclaw_trace_sink_backlog_rows",
            "Rows stored but not yet shipped by a sink",
            None,
            MetricType::Gauge,
            &rows,
        )?;
        let updated: Vec<(Labels, f64)> = backlogs
            .iter()
            .map(|b| {
                (
                    vec![("sink", b.sink.clone()), ("table", b.table.to_string())],
                    b.updated_ns as f64 / 1e9,
                )
            })
            .collect();
        family(
            &mut enc,
            "openclaw_trace_sink_cursor_updated_timestamp_seconds",
            "When a sink last moved its position in a table",
            None,
            MetricType::Gauge,
            &updated,
        )?;
        let mut i = 0;
        while i < host.len() {
            let first = &host[i];
            let mut j = i;
            while j < host.len() && host[j].name == first.name {
                j += 1;
            }
            let series: Vec<(Vec<(String, String)>, f64)> = host[i..j]
                .iter()
                .filter(|s| s.counter == first.counter)
                .map(|s| (s.labels.clone(), s.value))
                .collect();
            let (name, ty) = if first.counter {
                // prometheus-client appends `_total` to counters itself.
                (
                    first.name.trim_end_matches("_total").to_string(),
                    MetricType::Counter,
                )
            } else {
                (first.name.clone(), MetricType::Gauge)
            };
            family(
                &mut enc,
                &name,
                &format!("Latest host sample of {}", first.source_name),
                None,
                ty,
                &series,
            )?;
            i = j;
        }
        Ok(())
    }
}

/// Push and export sinks (sent, failures, dead letters, last success) and budgets
/// (spent, limit, share used), read from their live state at scrape time.
pub struct ShippingAndBudgets {
    pub sinks: Vec<Arc<crate::sinks::SinkStatus>>,
    pub budgets: Arc<crate::analytics::budgets::Budgets>,
}

impl fmt::Debug for ShippingAndBudgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShippingAndBudgets")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl Collector for ShippingAndBudgets {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let per_sink =
            |f: &dyn Fn(&crate::sinks::SinkStatus) -> Option<f64>| -> Vec<(Labels, f64)> {
                self.sinks
                    .iter()
                    .filter_map(|s| f(s).map(|v| (vec![("sink", s.name.to_string())], v)))
                    .collect()
            };
        family(
            &mut enc,
            "openclaw_trace_sink_records_sent",
            "Records a sink's remote accepted",
            None,
            MetricType::Counter,
            &per_sink(&|s| Some(s.records_sent() as f64)),
        )?;
        family(
            &mut enc,
            "openclaw_trace_sink_dead_letters",
            "Records a sink's remote refused on their own (moved to dead letters)",
            None,
            MetricType::Counter,
            &per_sink(&|s| Some(s.dead_lettered() as f64)),
        )?;
        family(
            &mut enc,
            "openclaw_trace_sink_consecutive_failures",
            "Failed attempts in a row (0 when the last one worked)",
            None,
            MetricType::Gauge,
            &per_sink(&|s| Some(s.consecutive_failures() as f64)),
        )?;
        family(
            &mut enc,
            "openclaw_trace_sink_last_success_timestamp_seconds",
            "When a sink last shipped successfully",
            None,
            MetricType::Gauge,
            &per_sink(&|s| s.last_success_ms().map(|ms| ms as f64 / 1000.0)),
        )?;
        let budgets = self.budgets.status();
        let per_budget =
            |f: &dyn Fn(&crate::analytics::budgets::BudgetStatus) -> f64| -> Vec<(Labels, f64)> {
                budgets
                    .iter()
                    .map(|b| {
                        (
                            vec![
                                ("budget", b.budget.clone()),
                                ("period", b.period.to_string()),
                                ("unit", b.unit.to_string()),
                            ],
                            f(b),
                        )
                    })
                    .collect()
            };
        family(
            &mut enc,
            "openclaw_trace_budget_spent",
            "Spent in the current period (USD or tokens, see the unit label)",
            None,
            MetricType::Gauge,
            &per_budget(&|b| b.spent),
        )?;
        family(
            &mut enc,
            "openclaw_trace_budget_limit",
            "The budget's limit per period",
            None,
            MetricType::Gauge,
            &per_budget(&|b| b.limit),
        )?;
        family(
            &mut enc,
            "openclaw_trace_budget_used_ratio",
            "Share of the budget used in the current period (1 = all of it)",
            None,
            MetricType::Gauge,
            &per_budget(&|b| b.percent / 100.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_follow_prometheus_conventions() {
        assert_eq!(
            host_metric_name("system.cpu.utilization", "1"),
            "openclaw_trace_host_system_cpu_utilization_ratio"
        );
        assert_eq!(
            host_metric_name("host.mem_rss_bytes", "By"),
            "openclaw_trace_host_mem_rss_bytes"
        );
        assert_eq!(
            host_metric_name("dns.lookup-time", "s"),
            "openclaw_trace_host_dns_lookup_time_seconds"
        );
        assert_eq!(
            host_metric_name("process.open_file_descriptor.count", "{count}"),
            "openclaw_trace_host_process_open_file_descriptor"
        );
        assert_eq!(label_name("net.if"), "net_if");
        assert_eq!(label_name("9x"), "l9x");
    }
}
