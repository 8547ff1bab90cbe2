//! Host health: system metrics, the agent's process, and error conditions
//! detected rather than reported. One thread samples every collector on
//! `OCT_METRICS_INTERVAL` and polls the agent more often; points and events go
//! through the pipeline like any other source's records.

mod agent;
mod cgroup;
mod cpu;
mod detector;
pub mod disk;
mod diskio;
mod dns;
mod llm;
mod memory;
mod network;
mod processes;
mod procfs;
mod rollup;
mod runner;
mod self_stats;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::model::{MetricKind, MetricPoint, Record};
use crate::settings::{Setting, parse_duration, parse_list, parse_percent, parse_u64};

pub use llm::LlmFailures;
pub use runner::{HostHandle, HostSetup, start, watch_paths};

/// Every collector's name, as `OCT_HOST_DISABLE` takes them.
pub const COLLECTORS: &[&str] = &[
    "cpu",
    "memory",
    "cgroup",
    "disk",
    "diskio",
    "network",
    "dns",
    "processes",
    "self",
    "agent",
    "llm",
];

/// LLM providers' API hosts, probed by default: the names the agent resolves most.
pub const DEFAULT_DNS_PROBE_HOSTS: &[&str] = &[
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "openrouter.ai",
];

#[derive(Clone, Debug, PartialEq)]
pub struct HostConfig {
    pub metrics_interval: Duration,
    /// Collectors turned off by name.
    pub disabled: BTreeSet<String>,
    /// `None` means the DB's directory and `/data` when it exists.
    pub watch_paths: Option<Vec<PathBuf>>,
    pub dns_probe_hosts: Vec<String>,
    pub dns_probe_timeout: Duration,
    pub top_processes: usize,
    pub disk_alert_threshold: f64,
    pub inode_alert_threshold: f64,
    /// A process name or a command-line substring naming the agent.
    pub agent_process: Option<String>,
    pub agent_pid_file: Option<PathBuf>,
    pub agent_poll_interval: Duration,
    pub restart_loop_count: u32,
    pub restart_loop_window: Duration,
    pub llm_burst_count: u32,
    pub llm_burst_window: Duration,
    /// Host points younger than this stay as sampled; older ones are rolled up (zero: never).
    pub raw_retention: Duration,
    /// The rolled-up points' resolution.
    pub rollup_step: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            metrics_interval: Duration::from_secs(15),
            disabled: BTreeSet::new(),
            watch_paths: None,
            dns_probe_hosts: DEFAULT_DNS_PROBE_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            dns_probe_timeout: Duration::from_secs(5),
            top_processes: 5,
            disk_alert_threshold: 90.0,
            inode_alert_threshold: 90.0,
            agent_process: None,
            agent_pid_file: None,
            agent_poll_interval: Duration::from_secs(2),
            restart_loop_count: 3,
            restart_loop_window: Duration::from_secs(600),
            llm_burst_count: 5,
            llm_burst_window: Duration::from_secs(60),
            raw_retention: Duration::from_secs(2 * 3600),
            rollup_step: Duration::from_secs(300),
        }
    }
}

impl HostConfig {
    pub fn enabled(&self, collector: &str) -> bool {
        !self.disabled.contains(collector) && !self.disabled.contains("all")
    }
}

pub const SETTINGS: &[Setting<HostConfig>] = &[
    Setting {
        name: "metrics_interval",
        env: "OCT_METRICS_INTERVAL",
        default: "15s",
        help: "How often host metrics are sampled (0 turns host metrics off)",
        set: |c, v| {
            c.metrics_interval = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "host_disable",
        env: "OCT_HOST_DISABLE",
        default: "",
        help: "Host collectors to turn off, comma-separated: cpu, memory, cgroup, disk, diskio, network, dns, processes, self, agent, llm (or all)",
        set: |c, v| {
            let names = parse_list(v);
            for n in &names {
                if n != "all" && !COLLECTORS.contains(&n.as_str()) {
                    return Err(format!(
                        "unknown collector {n:?} (expected some of {} or all)",
                        COLLECTORS.join(", ")
                    ));
                }
            }
            c.disabled = names.into_iter().collect();
            Ok(())
        },
    },
    Setting {
        name: "watch_paths",
        env: "OCT_WATCH_PATHS",
        default: "the database's directory, and /data when it exists",
        help: "Paths whose volume usage and inodes are sampled and alerted on, comma-separated",
        set: |c, v| {
            c.watch_paths = Some(parse_list(v).into_iter().map(PathBuf::from).collect());
            Ok(())
        },
    },
    Setting {
        name: "dns_probe_hosts",
        env: "OCT_DNS_PROBE_HOSTS",
        default: "api.openai.com,api.anthropic.com,generativelanguage.googleapis.com,openrouter.ai",
        help: "Hosts resolved each sample (resolv.conf name servers, uncached), timed; failures become events",
        set: |c, v| {
            c.dns_probe_hosts = parse_list(v);
            Ok(())
        },
    },
    Setting {
        name: "dns_probe_timeout",
        env: "OCT_DNS_PROBE_TIMEOUT",
        default: "5s",
        help: "A DNS probe taking longer than this counts as a failure",
        set: |c, v| {
            c.dns_probe_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "top_processes",
        env: "OCT_TOP_PROCESSES",
        default: "5",
        help: "How many of the busiest processes (by CPU and by memory) are recorded each sample",
        set: |c, v| {
            c.top_processes = parse_u64(v)?.min(100) as usize;
            Ok(())
        },
    },
    Setting {
        name: "disk_alert_threshold",
        env: "OCT_DISK_ALERT_THRESHOLD",
        default: "90",
        help: "Percent of a watched volume in use at which a disk_high error event opens",
        set: |c, v| {
            c.disk_alert_threshold = parse_percent(v)?;
            Ok(())
        },
    },
    Setting {
        name: "inode_alert_threshold",
        env: "OCT_INODE_ALERT_THRESHOLD",
        default: "90",
        help: "Percent of a watched volume's inodes in use at which an inodes_high error event opens",
        set: |c, v| {
            c.inode_alert_threshold = parse_percent(v)?;
            Ok(())
        },
    },
    Setting {
        name: "agent_process",
        env: "OCT_AGENT_PROCESS",
        default: "",
        help: "The agent's process: its name, or a substring of its command line",
        set: |c, v| {
            c.agent_process = Some(v.trim().to_string()).filter(|s| !s.is_empty());
            Ok(())
        },
    },
    Setting {
        name: "agent_pid_file",
        env: "OCT_AGENT_PID_FILE",
        default: "",
        help: "A file holding the agent's pid (used before OCT_AGENT_PROCESS when both are set)",
        set: |c, v| {
            c.agent_pid_file = Some(PathBuf::from(v.trim()));
            Ok(())
        },
    },
    Setting {
        name: "agent_poll_interval",
        env: "OCT_AGENT_POLL_INTERVAL",
        default: "2s",
        help: "How often the agent's process is checked for exits and restarts",
        set: |c, v| {
            c.agent_poll_interval = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "agent_restart_loop_count",
        env: "OCT_AGENT_RESTART_LOOP_COUNT",
        default: "3",
        help: "This many agent restarts within OCT_AGENT_RESTART_LOOP_WINDOW is a restart loop",
        set: |c, v| {
            c.restart_loop_count = parse_u64(v)?.clamp(1, 10_000) as u32;
            Ok(())
        },
    },
    Setting {
        name: "agent_restart_loop_window",
        env: "OCT_AGENT_RESTART_LOOP_WINDOW",
        default: "10m",
        help: "The window in which agent restarts are counted for a restart loop",
        set: |c, v| {
            c.restart_loop_window = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "llm_burst_count",
        env: "OCT_LLM_BURST_COUNT",
        default: "5",
        help: "This many rate-limited (429) or timed-out LLM calls within OCT_LLM_BURST_WINDOW is a burst",
        set: |c, v| {
            c.llm_burst_count = parse_u64(v)?.clamp(1, 1_000_000) as u32;
            Ok(())
        },
    },
    Setting {
        name: "llm_burst_window",
        env: "OCT_LLM_BURST_WINDOW",
        default: "1m",
        help: "The window in which failed LLM calls are counted for a burst",
        set: |c, v| {
            c.llm_burst_window = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "metrics_raw_retention",
        env: "OCT_METRICS_RAW_RETENTION",
        default: "2h",
        help: "Host metric points older than this are rolled into OCT_METRICS_ROLLUP_STEP aggregates (0 keeps every point)",
        set: |c, v| {
            c.raw_retention = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "metrics_rollup_step",
        env: "OCT_METRICS_ROLLUP_STEP",
        default: "5m",
        help: "The resolution of rolled-up host metrics (count, sum, min, max, last per series and step)",
        set: |c, v| {
            let d = parse_duration(v)?;
            if d < Duration::from_secs(1) {
                return Err("must be at least 1s".into());
            }
            c.rollup_step = d;
            Ok(())
        },
    },
];

/// Why a collector could not sample.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// It cannot run on this machine at all: logged once, then the collector is off.
    #[error("not available here: {0}")]
    Unavailable(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected content in {path}: {what}")]
    Parse { path: String, what: String },
}

/// Attribute pairs for a metric point.
pub(crate) type Attrs<'a> = &'a [(&'a str, Value)];

/// What one collector run produced: metric points and the conditions it saw.
pub(crate) struct Sample {
    pub time_ns: i64,
    pub records: Vec<Record>,
    /// Every condition the collector sees now; those it no longer sees close.
    pub seen: Vec<detector::Condition>,
    /// Keys of this collector's conditions open before this run.
    pub active: std::collections::HashSet<String>,
}

impl Sample {
    pub fn new(time_ns: i64) -> Self {
        Sample {
            time_ns,
            records: Vec::new(),
            seen: Vec::new(),
            active: Default::default(),
        }
    }

    fn push(&mut self, mut p: MetricPoint, attrs: Attrs) {
        p.attributes = to_map(attrs);
        self.records.push(Record::Metric(Box::new(p)));
    }

    /// A value observed now.
    pub fn gauge(&mut self, name: &str, unit: &str, value: f64, attrs: Attrs) {
        if value.is_finite() {
            self.push(MetricPoint::gauge(name, unit, self.time_ns, value), attrs);
        }
    }

    /// A monotonic counter's running total since `start_ns` (boot, process start, ...).
    pub fn counter(&mut self, name: &str, unit: &str, value: f64, start_ns: i64, attrs: Attrs) {
        if !value.is_finite() {
            return;
        }
        let mut p = MetricPoint::gauge(name, unit, self.time_ns, value);
        p.kind = MetricKind::Sum;
        p.start_time_ns = Some(start_ns);
        p.temporality = Some("cumulative");
        p.monotonic = Some(true);
        self.push(p, attrs);
    }
}

pub(crate) fn to_map(attrs: Attrs) -> Map<String, Value> {
    attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}
