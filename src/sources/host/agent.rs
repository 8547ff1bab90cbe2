//! The agent's process, named by `OCT_AGENT_PID_FILE` or `OCT_AGENT_PROCESS`:
//! up/down, pid, start time, restarts, CPU, RSS, threads, open files. Exits,
//! OOM kills (the cgroup's `oom_kill` count, the kernel log where readable) and
//! restart loops become error events, one per condition.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Map, json};

use super::cgroup::{self, CgroupDirs};
use super::detector::{Condition, Detector, Resolution, instant};
use super::procfs::{self, PidStat};
use super::runner::Shared;
use super::{HostConfig, Sample};
use crate::model::{Record, now_ns};
use crate::util::time::format_ns;

const DOWN_KEY: &str = "agent_down";
const LOOP_KEY: &str = "agent_restart_loop";
const OWNER: &str = "agent";

/// One process: a pid with its start time (pids are reused).
#[derive(Clone, Debug, PartialEq)]
struct Proc {
    pid: i32,
    start_ticks: u64,
    name: String,
}

impl Proc {
    fn start_ns(&self, now_ns: i64) -> i64 {
        procfs::process_start_ns(self.start_ticks, now_ns)
    }
}

pub struct AgentWatcher {
    pattern: Option<String>,
    pid_file: Option<PathBuf>,
    loop_count: usize,
    loop_window: Duration,
    started_ns: i64,
    current: Option<Proc>,
    cgroup: Option<CgroupDirs>,
    last_alive_ns: i64,
    /// OOM kills counted in the agent's cgroup while it still looked alive.
    pending_oom: u64,
    restarts: u64,
    restart_times: VecDeque<Instant>,
    first_poll: bool,
    logged_missing: bool,
    kmsg: Option<File>,
    /// Pids the kernel log says were OOM-killed recently.
    oom_killed: VecDeque<i32>,
    last_cpu: Option<(i32, u64, Instant)>,
    buf: String,
}

impl AgentWatcher {
    /// `None` when no agent is configured or the `agent` collector is off.
    pub fn new(cfg: &HostConfig) -> Option<Self> {
        if !cfg.enabled("agent") || (cfg.agent_process.is_none() && cfg.agent_pid_file.is_none()) {
            return None;
        }
        let kmsg = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .and_then(|mut f| f.seek(SeekFrom::End(0)).map(|_| f));
        let kmsg = match kmsg {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::info!(error = %e, "kernel log (/dev/kmsg) not readable; OOM kills are told by cgroup counters only");
                None
            }
        };
        Some(AgentWatcher {
            pattern: cfg.agent_process.clone(),
            pid_file: cfg.agent_pid_file.clone(),
            loop_count: cfg.restart_loop_count as usize,
            loop_window: cfg.restart_loop_window,
            started_ns: now_ns(),
            current: None,
            cgroup: None,
            last_alive_ns: 0,
            pending_oom: 0,
            restarts: 0,
            restart_times: VecDeque::new(),
            first_poll: true,
            logged_missing: false,
            kmsg,
            oom_killed: VecDeque::new(),
            last_cpu: None,
            buf: String::new(),
        })
    }

    fn alive(&mut self, p: &Proc) -> Option<PidStat> {
        procfs::read_pid_stat(p.pid, &mut self.buf)
            .filter(|s| s.start_ticks == p.start_ticks && !matches!(s.state, 'Z' | 'X'))
    }

    /// Looks the agent up by pid file, else by name or command line (the oldest match).
    fn find(&mut self) -> Option<Proc> {
        if let Some(f) = &self.pid_file
            && let Ok(text) = std::fs::read_to_string(f)
            && let Ok(pid) = text.trim().parse::<i32>()
            && let Some(st) = procfs::read_pid_stat(pid, &mut self.buf)
            && !matches!(st.state, 'Z' | 'X')
        {
            return Some(Proc {
                pid,
                start_ticks: st.start_ticks,
                name: st.comm,
            });
        }
        let pattern = self.pattern.as_deref()?;
        let me = std::process::id() as i32;
        let mut best: Option<Proc> = None;
        for pid in procfs::pids().ok()? {
            if pid == me {
                continue;
            }
            let Some(st) = procfs::read_pid_stat(pid, &mut self.buf) else {
                continue;
            };
            if matches!(st.state, 'Z' | 'X') {
                continue;
            }
            let matches =
                st.comm == pattern || procfs::cmdline(pid).is_some_and(|c| c.contains(pattern));
            if matches && best.as_ref().is_none_or(|b| st.start_ticks < b.start_ticks) {
                best = Some(Proc {
                    pid,
                    start_ticks: st.start_ticks,
                    name: st.comm,
                });
            }
        }
        best
    }

    /// Pids named in new kernel OOM-kill messages.
    fn read_kmsg(&mut self) {
        let Some(f) = self.kmsg.as_mut() else { return };
        let mut rec = [0u8; 8192];
        // Each read returns one record; a bounded number per poll.
        for _ in 0..1000 {
            match f.read(&mut rec) {
                Ok(0) => break,
                Ok(n) => {
                    let text = String::from_utf8_lossy(&rec[..n]);
                    if let Some(pid) = oom_killed_pid(&text) {
                        self.oom_killed.push_back(pid);
                        if self.oom_killed.len() > 64 {
                            self.oom_killed.pop_front();
                        }
                    }
                }
                // Older records were overwritten while we were not reading: go on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
    }

    /// Kills counted in the agent's cgroup since the last look.
    fn new_cgroup_ooms(&self, shared: &mut Shared) -> u64 {
        match self.cgroup.as_ref().and_then(|c| c.oom_kills()) {
            Some((dir, n)) => cgroup::new_oom_kills(shared, dir, n),
            None => 0,
        }
    }

    pub fn poll(
        &mut self,
        now: i64,
        det: &mut Detector,
        shared: &mut Shared,
        opened: &mut Vec<Record>,
        closed: &mut Vec<Resolution>,
    ) {
        self.read_kmsg();
        let first = std::mem::replace(&mut self.first_poll, false);
        let prev = self.current.take();
        let still = prev.as_ref().and_then(|p| self.alive(p).map(|_| p.clone()));
        if let Some(p) = still {
            // Alive. An OOM kill counted now may be the agent's own, still dying:
            // decide at the next poll.
            let new = self.new_cgroup_ooms(shared);
            if self.pending_oom > 0 {
                let c = Condition::new(
                    "oom_kill:agent_cgroup".into(),
                    "oom_kill",
                    "oom",
                    format!(
                        "the kernel killed {} process(es) in the agent's cgroup for exceeding its memory limit; the agent ({}) lives on",
                        self.pending_oom, p.pid
                    ),
                )
                .attr("oom_kills", self.pending_oom);
                opened.push(instant(OWNER, &c, now, now));
            }
            self.pending_oom = new;
            self.current = Some(p);
            self.last_alive_ns = now;
            self.check_loop(now, det, opened, closed);
            return;
        }
        let found = self.find();
        if let Some(old) = prev {
            let new_ooms = self.new_cgroup_ooms(shared) + std::mem::take(&mut self.pending_oom);
            let by_kernel = self.oom_killed.contains(&old.pid);
            let oom = new_ooms > 0 || by_kernel;
            let (name, category, what) = if oom {
                (
                    "agent_oom_killed",
                    "oom",
                    "was killed by the kernel for running out of memory",
                )
            } else {
                ("agent_exited", "agent", "exited")
            };
            let mut c = Condition::new(
                DOWN_KEY.into(),
                name,
                category,
                format!("agent process {} ({}) {what}", old.pid, old.name),
            )
            .attr("pid", old.pid)
            .attr("process_name", old.name.clone())
            .attr("process_started_at", format_ns(old.start_ns(now)))
            .attr("last_seen_alive_at", format_ns(self.last_alive_ns));
            if oom {
                c = c.attr("oom_kills", new_ooms).attr(
                    "oom_source",
                    if by_kernel {
                        "kernel log"
                    } else {
                        "cgroup memory events"
                    },
                );
            }
            tracing::warn!(pid = old.pid, name = %old.name, oom, "agent process went away");
            opened.extend(det.open(OWNER, c, now));
        }
        match found {
            Some(p) => {
                self.cgroup = cgroup::locate(&p.pid.to_string());
                // Remember the current count so older kills are not blamed on this run.
                self.new_cgroup_ooms(shared);
                if det.is_active(DOWN_KEY) {
                    let start = p.start_ns(now);
                    let mut extra = Map::new();
                    extra.insert("restarted".into(), json!(true));
                    extra.insert("new_pid".into(), json!(p.pid));
                    extra.insert("new_process_started_at".into(), json!(format_ns(start)));
                    if self.last_alive_ns > 0 {
                        // Exact to within one poll interval.
                        extra.insert(
                            "down_ms".into(),
                            json!((start - self.last_alive_ns).max(0) / 1_000_000),
                        );
                    }
                    closed.extend(det.close(DOWN_KEY, now, extra));
                    if !first {
                        self.restarts += 1;
                        self.restart_times.push_back(Instant::now());
                    }
                    tracing::info!(
                        pid = p.pid,
                        restarts = self.restarts,
                        "agent process is back"
                    );
                } else if !first {
                    tracing::info!(pid = p.pid, "agent process found");
                }
                self.logged_missing = false;
                self.last_alive_ns = now;
                self.last_cpu = None;
                self.current = Some(p);
            }
            None => {
                if !self.logged_missing {
                    self.logged_missing = true;
                    tracing::warn!(pattern = ?self.pattern, pid_file = ?self.pid_file, "agent process not found");
                }
            }
        }
        self.check_loop(now, det, opened, closed);
    }

    /// Opens a restart-loop condition at the count, closes it once the window calms.
    fn check_loop(
        &mut self,
        now: i64,
        det: &mut Detector,
        opened: &mut Vec<Record>,
        closed: &mut Vec<Resolution>,
    ) {
        let t = Instant::now();
        while self
            .restart_times
            .front()
            .is_some_and(|r| t.duration_since(*r) > self.loop_window)
        {
            self.restart_times.pop_front();
        }
        let n = self.restart_times.len();
        if n >= self.loop_count {
            let c = Condition::new(
                LOOP_KEY.into(),
                "agent_restart_loop",
                "restart_loop",
                format!(
                    "the agent restarted {n} times within {:?}",
                    self.loop_window
                ),
            )
            .attr("restarts_in_window", n)
            .attr("window_seconds", self.loop_window.as_secs_f64());
            opened.extend(det.open(OWNER, c, now));
        } else if det.is_active(LOOP_KEY) {
            closed.extend(det.close(LOOP_KEY, now, Map::new()));
        }
    }

    /// The agent's figures, on the metrics interval.
    pub fn metrics(&mut self, s: &mut Sample) {
        let up = self
            .current
            .clone()
            .and_then(|p| self.alive(&p).map(|st| (p, st)));
        s.gauge(
            "oct.agent.up",
            "1",
            if up.is_some() { 1.0 } else { 0.0 },
            &[],
        );
        s.counter(
            "oct.agent.restarts",
            "{restart}",
            self.restarts as f64,
            self.started_ns,
            &[],
        );
        let Some((p, st)) = up else { return };
        let a = [
            ("oct.process.role", json!("agent")),
            ("process.pid", json!(p.pid)),
            ("process.executable.name", json!(p.name)),
        ];
        s.gauge(
            "process.memory.usage",
            "By",
            (st.rss_pages * procfs::page_size()) as f64,
            &a,
        );
        s.gauge("process.thread.count", "{thread}", st.threads as f64, &a);
        if let Some(n) = procfs::open_fds(&p.pid.to_string()) {
            s.gauge(
                "process.open_file_descriptor.count",
                "{file_descriptor}",
                n as f64,
                &a,
            );
        }
        let start = p.start_ns(s.time_ns);
        s.gauge(
            "process.uptime",
            "s",
            (s.time_ns - start).max(0) as f64 / 1e9,
            &a,
        );
        let now = Instant::now();
        if let Some((pid, ticks, at)) = self.last_cpu
            && pid == p.pid
        {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let cores =
                    st.cpu_ticks.saturating_sub(ticks) as f64 / procfs::clock_ticks() / secs;
                s.gauge(
                    "process.cpu.utilization",
                    "1",
                    cores / procfs::cpu_count(),
                    &a,
                );
            }
        }
        self.last_cpu = Some((p.pid, st.cpu_ticks, now));
    }
}

/// The pid in a kernel "Killed process 1234 (name)" OOM message.
pub fn oom_killed_pid(record: &str) -> Option<i32> {
    let msg = record.split_once(';').map_or(record, |(_, m)| m);
    let rest = msg.split("Killed process ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_oom_kill_messages() {
        assert_eq!(
            oom_killed_pid(
                "3,812,12345,-;Memory cgroup out of memory: Killed process 4321 (python3) total-vm:1000kB"
            ),
            Some(4321)
        );
        assert_eq!(oom_killed_pid("6,1,2,-;eth0: link up"), None);
    }
}
