//! openclaw-trace's own runtime: RSS, CPU, threads, open files, queue depth and
//! write latency; and database writes failing, as a condition.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::json;

use super::detector::Condition;
use super::procfs::{self, read_into};
use super::runner::{Collector, Shared};
use super::{HostError, Sample};
use crate::pipeline::Pipeline;

pub struct SelfStats {
    pipeline: Pipeline,
    buf: String,
    last_cpu: Option<(u64, Instant)>,
    /// Batches and write time at the last sample, for the mean latency between samples.
    last_writes: (u64, u64),
}

impl SelfStats {
    pub fn new(pipeline: Pipeline) -> Self {
        SelfStats {
            pipeline,
            buf: String::new(),
            last_cpu: None,
            last_writes: (0, 0),
        }
    }
}

impl Collector for SelfStats {
    fn name(&self) -> &'static str {
        "self"
    }

    fn collect(&mut self, s: &mut Sample, _: &mut Shared) -> Result<(), HostError> {
        let me = std::process::id() as i32;
        let p = procfs::read_pid_stat(me, &mut self.buf).ok_or_else(|| HostError::Parse {
            path: "/proc/self/stat".into(),
            what: "unreadable".into(),
        })?;
        let a = [
            ("oct.process.role", json!("self")),
            ("process.pid", json!(me)),
        ];
        // statm's second field is resident pages; cheaper than status.
        read_into("/proc/self/statm", &mut self.buf)?;
        let rss = self
            .buf
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(p.rss_pages);
        s.gauge(
            "process.memory.usage",
            "By",
            (rss * procfs::page_size()) as f64,
            &a,
        );
        s.gauge("process.thread.count", "{thread}", p.threads as f64, &a);
        // SQLite's share of the heap (page caches, statements): what RSS growth is checked against.
        // SAFETY: a read of SQLite's global allocation counter; no arguments.
        let sqlite_bytes = unsafe { rusqlite::ffi::sqlite3_memory_used() };
        s.gauge("oct.sqlite.memory.usage", "By", sqlite_bytes as f64, &[]);
        if let Some(n) = procfs::open_fds("self") {
            s.gauge(
                "process.open_file_descriptor.count",
                "{file_descriptor}",
                n as f64,
                &a,
            );
        }
        let now = Instant::now();
        if let Some((ticks, at)) = self.last_cpu {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let cores = p.cpu_ticks.saturating_sub(ticks) as f64 / procfs::clock_ticks() / secs;
                s.gauge(
                    "process.cpu.utilization",
                    "1",
                    cores / procfs::cpu_count(),
                    &a,
                );
            }
        }
        self.last_cpu = Some((p.cpu_ticks, now));

        let stats = self.pipeline.stats();
        s.gauge(
            "oct.queue.depth",
            "{record}",
            self.pipeline.depth() as f64,
            &[],
        );
        let batches = stats.batches.load(Ordering::Relaxed);
        let micros = stats.write_micros_total.load(Ordering::Relaxed);
        let (b0, m0) = self.last_writes;
        if batches > b0 {
            let mean = (micros.saturating_sub(m0)) as f64 / (batches - b0) as f64 / 1e6;
            s.gauge("oct.write.latency", "s", mean, &[]);
        }
        self.last_writes = (batches, micros);
        if stats.failing.load(Ordering::Relaxed) {
            let why = stats.last_error().unwrap_or_else(|| "unknown error".into());
            s.seen.push(
                Condition::new(
                    "db_write_failure".into(),
                    "db_write_failure",
                    "db",
                    format!("database writes are failing: {why}"),
                )
                .attr("error", why),
            );
        }
        Ok(())
    }
}
