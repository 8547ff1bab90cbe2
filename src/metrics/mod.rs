//! Prometheus metrics: one registry every component adds its metrics or collectors to,
//! served by `GET /metrics` (see `api::metrics`) in OpenMetrics or Prometheus text.
//!
//! - `records`: LLM, tool, agent and error metrics fed from committed records (a `WriteHook`).
//! - `collectors`: openclaw-trace's own state read at scrape time (pipeline, store, sinks),
//!   and the latest host samples from the store as gauges.
//!
//! Other components register here: `state.metrics.register(...)` for a metric they update,
//! `state.metrics.register_collector(...)` for values read at scrape time.

pub mod collectors;
pub mod records;

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::registry::{Metric, Unit};

use crate::settings::{Setting, parse_u64};

#[derive(Clone, Debug, PartialEq)]
pub struct MetricsConfig {
    /// Distinct values kept per label (models, tools, agents, ...); the rest count under `other`.
    pub label_limit: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { label_limit: 50 }
    }
}

pub const SETTINGS: &[Setting<MetricsConfig>] = &[Setting {
    name: "metrics_label_limit",
    env: "OCT_METRICS_LABEL_LIMIT",
    default: "50",
    help: "Distinct values per /metrics label (models, tools, agents, error types); later ones are counted under \"other\"",
    set: |c, v| {
        c.label_limit = parse_u64(v)?.clamp(1, 10_000) as usize;
        Ok(())
    },
}];

/// The registration point for everything `/metrics` shows.
#[derive(Debug, Default)]
pub struct Registry {
    inner: RwLock<prometheus_client::registry::Registry>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metric the caller keeps a clone of and updates (counter, gauge, family, ...).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        if let Ok(mut r) = self.inner.write() {
            r.register(name, help, metric);
        }
    }

    /// Like `register`, with the unit appended to the name (`_seconds`, `_bytes`).
    pub fn register_with_unit(&self, name: &str, help: &str, unit: Unit, metric: impl Metric) {
        if let Ok(mut r) = self.inner.write() {
            r.register_with_unit(name, help, unit, metric);
        }
    }

    /// Adds a collector asked for its values on every scrape.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        if let Ok(mut r) = self.inner.write() {
            r.register_collector(collector);
        }
    }

    /// The OpenMetrics text exposition (ends with `# EOF`). Collectors may read the store:
    /// call it off the async workers.
    pub fn encode_openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        let r = self.inner.read().map_err(|_| std::fmt::Error)?;
        prometheus_client::encoding::text::encode(&mut out, &r)?;
        Ok(out)
    }
}

/// Rewrites an OpenMetrics text exposition into the Prometheus text format 0.0.4:
/// no `# EOF` or `# UNIT`, counters described under their `_total` name, info metrics as gauges.
pub fn openmetrics_to_prometheus(om: &str) -> String {
    // Family name -> the name Prometheus text describes it under.
    let mut renamed: std::collections::HashMap<&str, String> = Default::default();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, ty)) = rest.split_once(' ')
        {
            match ty {
                "counter" => {
                    renamed.insert(name, format!("{name}_total"));
                }
                "info" => {
                    renamed.insert(name, format!("{name}_info"));
                }
                _ => {}
            }
        }
    }
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = renamed.get(name).map(String::as_str).unwrap_or(name);
                let tail = match (*prefix, tail) {
                    ("# TYPE ", "info") => "gauge",
                    ("# TYPE ", "unknown") => "untyped",
                    (_, t) => t,
                };
                out.push_str(prefix);
                out.push_str(name);
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Keeps a label's distinct values bounded: the first `limit` values seen are kept,
/// later ones become `other`, so a misbehaving agent cannot blow up a scraper.
#[derive(Debug)]
pub struct LabelCap {
    limit: usize,
    seen: Mutex<HashSet<String>>,
}

/// Longest label value kept, in bytes.
const MAX_LABEL_VALUE: usize = 120;

impl LabelCap {
    pub fn new(limit: usize) -> Self {
        LabelCap {
            limit,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// The label value to use for `v` (`unknown` when absent).
    pub fn value(&self, v: Option<&str>) -> String {
        let v = match v.map(str::trim).filter(|s| !s.is_empty()) {
            None => return "unknown".into(),
            Some(v) => v,
        };
        let mut cut = v.len().min(MAX_LABEL_VALUE);
        while !v.is_char_boundary(cut) {
            cut -= 1;
        }
        let v = &v[..cut];
        let Ok(mut seen) = self.seen.lock() else {
            return "other".into();
        };
        if seen.contains(v) {
            return v.to_string();
        }
        if seen.len() < self.limit {
            seen.insert(v.to_string());
            return v.to_string();
        }
        "other".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::info::Info;

    #[test]
    fn label_cap_puts_the_rest_under_other() {
        let cap = LabelCap::new(2);
        assert_eq!(cap.value(Some("a")), "a");
        assert_eq!(cap.value(Some("b")), "b");
        assert_eq!(cap.value(Some("c")), "other");
        assert_eq!(cap.value(Some("a")), "a");
        assert_eq!(cap.value(None), "unknown");
        assert_eq!(cap.value(Some("  ")), "unknown");
        let long = "é".repeat(100);
        let cap = LabelCap::new(5);
        assert!(cap.value(Some(&long)).len() <= MAX_LABEL_VALUE);
    }

    #[test]
    fn prometheus_text_from_openmetrics() {
        let reg = Registry::new();
        let c: Counter = Counter::default();
        c.inc();
        reg.register_with_unit("oct_write", "Write time", Unit::Seconds, c.clone());
        reg.register("oct_build", "Build", Info::new(vec![("version", "1")]));
        let om = reg.encode_openmetrics().unwrap();
        assert!(om.ends_with("# EOF\n"));
        let text = openmetrics_to_prometheus(&om);
        assert_eq!(
            text,
            "# HELP oct_write_seconds_total Write time.\n\
             # TYPE oct_write_seconds_total counter\n\
             oct_write_seconds_total 1\n\
             # HELP oct_build_info Build.\n\
             # TYPE oct_build_info gauge\n\
             oct_build_info{version=\"1\"} 1\n"
        );
    }
}
