//! Processes: counts by state, zombies by parent (a condition when one persists),
//! and the top N processes by CPU and by memory.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::json;

use super::detector::Condition;
use super::procfs::{self, PidStat};
use super::runner::{Collector, Shared};
use super::{HostConfig, HostError, Sample};

pub struct Processes {
    top: usize,
    buf: String,
    /// CPU ticks per (pid, start) at the last sample.
    last: HashMap<(i32, u64), u64>,
    last_at: Option<Instant>,
}

impl Processes {
    pub fn new(cfg: &HostConfig) -> Self {
        Processes {
            top: cfg.top_processes,
            buf: String::new(),
            last: HashMap::new(),
            last_at: None,
        }
    }
}

/// OpenTelemetry's `process.status` values for the kernel's state letters.
fn status_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "blocked",
        'T' | 't' => "stopped",
        'Z' | 'X' => "defunct",
        'I' => "idle",
        _ => "other",
    }
}

impl Collector for Processes {
    fn name(&self) -> &'static str {
        "processes"
    }

    /// A zombie seen in two samples in a row is not one about to be reaped.
    fn confirm(&self) -> u32 {
        2
    }

    fn collect(&mut self, s: &mut Sample, _: &mut Shared) -> Result<(), HostError> {
        let now = Instant::now();
        let procs: Vec<(i32, PidStat)> = procfs::pids()?
            .into_iter()
            .filter_map(|pid| Some((pid, procfs::read_pid_stat(pid, &mut self.buf)?)))
            .collect();
        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        for st in ["running", "sleeping", "blocked", "defunct"] {
            by_status.insert(st, 0);
        }
        let mut zombies: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (pid, p) in &procs {
            *by_status.entry(status_name(p.state)).or_default() += 1;
            if p.state == 'Z' {
                zombies.entry(p.ppid).or_default().push(*pid);
            }
        }
        s.gauge("system.process.count", "{process}", procs.len() as f64, &[]);
        for (st, n) in &by_status {
            s.gauge(
                "system.process.count",
                "{process}",
                *n as f64,
                &[("process.status", json!(st))],
            );
        }
        let names: HashMap<i32, &str> =
            procs.iter().map(|(p, st)| (*p, st.comm.as_str())).collect();
        for (ppid, kids) in &zombies {
            let parent = names.get(ppid).copied().unwrap_or("?");
            s.seen.push(
                Condition::new(
                    format!("zombies:{ppid}"),
                    "zombie_processes",
                    "zombie",
                    format!(
                        "{} zombie process(es) not reaped by parent {ppid} ({parent})",
                        kids.len()
                    ),
                )
                .warning()
                .attr("parent_pid", *ppid)
                .attr("parent_name", parent)
                .attr("zombie_pids", kids.clone())
                .attr("zombies", kids.len()),
            );
        }

        // Top N: CPU needs the previous sample; memory is RSS now.
        let hz = procfs::clock_ticks();
        let cpus = procfs::cpu_count();
        let secs = self.last_at.map(|t| now.duration_since(t).as_secs_f64());
        let mut cpu: Vec<(f64, usize)> = Vec::new();
        let mut next = HashMap::with_capacity(procs.len());
        for (i, (pid, p)) in procs.iter().enumerate() {
            next.insert((*pid, p.start_ticks), p.cpu_ticks);
            if let (Some(secs), Some(before)) = (secs, self.last.get(&(*pid, p.start_ticks)))
                && secs > 0.0
            {
                cpu.push((
                    p.cpu_ticks.saturating_sub(*before) as f64 / hz / secs / cpus,
                    i,
                ));
            }
        }
        self.last = next;
        self.last_at = Some(now);
        cpu.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut mem: Vec<(u64, usize)> = procs
            .iter()
            .enumerate()
            .map(|(i, (_, p))| (p.rss_pages, i))
            .collect();
        mem.sort_by_key(|m| std::cmp::Reverse(m.0));
        let page = procfs::page_size();
        let cpu_of: HashMap<usize, f64> = cpu.iter().map(|(u, i)| (*i, *u)).collect();
        let mut chosen: Vec<(usize, &str)> = Vec::new();
        for (_, i) in cpu.iter().take(self.top) {
            chosen.push((*i, "cpu"));
        }
        for (_, i) in mem.iter().take(self.top) {
            if !chosen.iter().any(|(c, _)| c == i) {
                chosen.push((*i, "memory"));
            }
        }
        for (i, by) in chosen {
            let (pid, p) = &procs[i];
            let a = [
                ("process.pid", json!(pid)),
                ("process.executable.name", json!(p.comm)),
                ("oct.process.role", json!("top")),
                ("oct.rank_by", json!(by)),
            ];
            if let Some(u) = cpu_of.get(&i) {
                s.gauge("process.cpu.utilization", "1", *u, &a);
            }
            s.gauge(
                "process.memory.usage",
                "By",
                (p.rss_pages * page) as f64,
                &a,
            );
        }
        Ok(())
    }
}
