//! The sampling thread: runs every collector on the metrics interval, polls the
//! agent on its own interval, turns conditions into events, and keeps records it
//! could not submit (queue full, database failing) to submit them later.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::detector::{Detector, Resolution};
use super::rollup::{RELEASE_PAGES_EVERY, RollupSchedule, release_cached_pages};
use super::{HostConfig, HostError, Sample, agent, llm};
use crate::model::{Record, SharedMap, now_ns};
use crate::pipeline::Pipeline;

/// One collector: samples when asked and says what it saw.
pub(crate) trait Collector: Send {
    fn name(&self) -> &'static str;
    /// Consecutive runs a condition must be seen before its event opens.
    fn confirm(&self) -> u32 {
        1
    }
    /// `HostError::Unavailable` turns the collector off for good (logged once).
    fn collect(&mut self, s: &mut Sample, shared: &mut Shared) -> Result<(), HostError>;
}

/// State several collectors read or update.
pub(crate) struct Shared {
    pub pipeline: Pipeline,
    /// Per cgroup directory, the `oom_kill` count already reported, so an OOM kill
    /// seen by both the agent watcher and the cgroup collector is reported once.
    pub oom_reported: HashMap<PathBuf, u64>,
}

/// Records kept while the pipeline refuses them, at most this many.
const OUTBOX_MAX: usize = 20_000;

/// Stops the sampling thread.
pub struct HostHandle {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl HostHandle {
    /// Stops sampling and hands what is pending to the pipeline; waits at most `timeout`.
    pub fn stop(mut self, timeout: Duration) {
        let _ = self.stop.send(());
        let Some(t) = self.thread.take() else { return };
        let until = Instant::now() + timeout;
        while !t.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}

/// How the composer sets the host source up on its store.
pub struct HostSetup {
    /// The volumes the disk collector watches ([`watch_paths`]).
    pub watch_paths: Vec<PathBuf>,
    /// Raw metric points rolled up on the SQLite writer under this policy; `None`: the
    /// store keeps them raw until its own retention drops them (PostgreSQL's days).
    pub rollups: Option<crate::store::retention::Policy>,
    /// Conditions a previous run left open (uid, start, attributes), adopted so none
    /// is reported twice.
    pub open_conditions: Vec<crate::store::query::StoredCondition>,
    /// Set on every host record that has none (a central's own identity, so its host
    /// is told apart from its sidecars'); `None`: left empty, as on a sidecar.
    pub resource: Option<SharedMap>,
}

/// Starts host sampling; `None` when everything is turned off.
pub fn start(
    cfg: &HostConfig,
    setup: HostSetup,
    pipeline: Pipeline,
    llm: Arc<llm::LlmFailures>,
) -> Option<HostHandle> {
    let metrics_on = !cfg.metrics_interval.is_zero();
    let agent = agent::AgentWatcher::new(cfg);
    if !metrics_on && agent.is_none() {
        tracing::info!("host metrics off (OCT_METRICS_INTERVAL=0) and no agent to watch");
        return None;
    }
    let collectors = if metrics_on {
        build_collectors(cfg, setup.watch_paths, &pipeline, llm)
    } else {
        Vec::new()
    };
    let mut detector = Detector::default();
    adopt_open_conditions(setup.open_conditions, &mut detector);
    let (stop, stop_rx) = mpsc::channel();
    let mut runner = Runner {
        interval: cfg.metrics_interval,
        agent_interval: cfg.agent_poll_interval.max(Duration::from_millis(50)),
        rollup: setup
            .rollups
            .filter(|_| metrics_on)
            .and_then(|policy| RollupSchedule::new(cfg, &policy)),
        resource: setup.resource,
        collectors,
        agent,
        detector,
        shared: Shared {
            pipeline,
            oom_reported: HashMap::new(),
        },
        outbox: VecDeque::new(),
        unresolved: Arc::new(Mutex::new(Vec::new())),
        failing: HashSet::new(),
        submit_failing: false,
    };
    let thread = std::thread::Builder::new()
        .name("oct-host".into())
        .spawn(move || runner.run(stop_rx));
    match thread {
        Ok(t) => Some(HostHandle {
            stop,
            thread: Some(t),
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the host sampling thread; host health is off");
            None
        }
    }
}

/// `dir` (the database's directory on a sidecar, the working directory on a central)
/// and `/data` when it exists, unless `OCT_WATCH_PATHS` says otherwise.
pub fn watch_paths(cfg: &HostConfig, dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = &cfg.watch_paths {
        return p.clone();
    }
    let mut out = Vec::new();
    if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
        out.push(dir.to_path_buf());
    }
    let data = PathBuf::from("/data");
    if data.is_dir() && !out.contains(&data) {
        out.push(data);
    }
    out
}

fn build_collectors(
    cfg: &HostConfig,
    paths: Vec<PathBuf>,
    pipeline: &Pipeline,
    llm: Arc<llm::LlmFailures>,
) -> Vec<Box<dyn Collector>> {
    use super::*;
    let mut all: Vec<Box<dyn Collector>> = vec![
        Box::new(cpu::Cpu::default()),
        Box::new(memory::Memory::default()),
        Box::new(cgroup::Cgroup::default()),
        Box::new(disk::Disk::new(cfg, paths)),
        Box::new(diskio::DiskIo::default()),
        Box::new(network::Network::default()),
        Box::new(dns::Dns::new(cfg)),
        Box::new(processes::Processes::new(cfg)),
        Box::new(self_stats::SelfStats::new(pipeline.clone())),
        Box::new(llm::LlmBursts::new(cfg, llm)),
    ];
    all.retain(|c| {
        let on = cfg.enabled(c.name());
        if !on {
            tracing::info!(
                collector = c.name(),
                "host collector turned off by OCT_HOST_DISABLE"
            );
        }
        on
    });
    all
}

/// Conditions a previous run left open become this run's, so none is reported twice.
fn adopt_open_conditions(open: Vec<crate::store::query::StoredCondition>, detector: &mut Detector) {
    for (uid, start, attrs) in open {
        if let (Some(key), Some(owner)) = (attrs["condition"].as_str(), attrs["owner"].as_str())
            && !detector.is_active(key)
        {
            detector.adopt(key.to_string(), uid, owner.to_string(), start);
        }
    }
}

struct Runner {
    interval: Duration,
    agent_interval: Duration,
    collectors: Vec<Box<dyn Collector>>,
    /// Rolls up old host points; `None` when off.
    rollup: Option<RollupSchedule>,
    /// Set on records without one (`HostSetup::resource`).
    resource: Option<SharedMap>,
    agent: Option<agent::AgentWatcher>,
    detector: Detector,
    shared: Shared,
    /// Records the pipeline refused, oldest first.
    outbox: VecDeque<Record>,
    /// Condition ends not yet written (the database was failing).
    unresolved: Arc<Mutex<Vec<Resolution>>>,
    /// Collectors whose last run failed (logged once per failure streak).
    failing: HashSet<&'static str>,
    submit_failing: bool,
}

impl Runner {
    fn run(&mut self, stop: mpsc::Receiver<()>) {
        let start = Instant::now();
        let mut next_sample = (!self.collectors.is_empty()).then_some(start);
        let mut next_agent = self.agent.is_some().then_some(start);
        let mut next_release = start + RELEASE_PAGES_EVERY;
        loop {
            let now = Instant::now();
            if next_agent.is_some_and(|t| now >= t) {
                self.poll_agent();
                next_agent = Some(later(now, self.agent_interval));
            }
            if next_sample.is_some_and(|t| now >= t) {
                self.sample();
                next_sample = Some(later(now, self.interval));
            }
            self.flush();
            if let Some(r) = self.rollup.as_mut() {
                r.tick(&self.shared.pipeline, Instant::now());
            }
            if next_sample.is_some() && now >= next_release {
                release_cached_pages(&self.shared.pipeline);
                next_release = now + RELEASE_PAGES_EVERY;
            }
            let next_rollup = self.rollup.as_ref().map(|r| r.due());
            let wake = [next_sample, next_agent, next_rollup]
                .into_iter()
                .flatten()
                .min();
            let wait = wake.map_or(Duration::from_secs(3600), |w| {
                w.saturating_duration_since(Instant::now())
            });
            match stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush();
    }

    fn poll_agent(&mut self) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let now = now_ns();
        let mut opened = Vec::new();
        let mut closed = Vec::new();
        agent.poll(
            now,
            &mut self.detector,
            &mut self.shared,
            &mut opened,
            &mut closed,
        );
        self.outbox.extend(opened);
        for r in closed {
            self.resolve(r);
        }
    }

    fn sample(&mut self) {
        let now = now_ns();
        let mut records = Vec::new();
        let mut closed = Vec::new();
        let mut off = Vec::new();
        for (i, c) in self.collectors.iter_mut().enumerate() {
            let mut s = Sample::new(now);
            s.active = self.detector.owned_by(c.name());
            match c.collect(&mut s, &mut self.shared) {
                Ok(()) => {
                    if self.failing.remove(c.name()) {
                        tracing::info!(collector = c.name(), "host collector recovered");
                    }
                    records.append(&mut s.records);
                    self.detector.observe(
                        c.name(),
                        s.seen,
                        c.confirm(),
                        now,
                        &mut records,
                        &mut closed,
                    );
                }
                Err(HostError::Unavailable(why)) => {
                    tracing::info!(collector = c.name(), reason = %why, "host collector cannot run here; it is off");
                    off.push(i);
                }
                Err(e) => {
                    if self.failing.insert(c.name()) {
                        tracing::warn!(collector = c.name(), error = %e, "host collector failed; will retry");
                    }
                }
            }
        }
        for i in off.into_iter().rev() {
            self.collectors.remove(i);
        }
        if let Some(agent) = self.agent.as_mut() {
            let mut s = Sample::new(now);
            agent.metrics(&mut s);
            records.append(&mut s.records);
        }
        self.outbox.extend(records);
        for r in closed {
            self.resolve(r);
        }
    }

    /// Writes a condition's end onto its event: in place when the event is still
    /// waiting here, otherwise by an update on the writer after it is committed.
    fn resolve(&mut self, r: Resolution) {
        for rec in self.outbox.iter_mut() {
            if let Record::Event(e) = rec
                && e.uid == r.uid
            {
                e.attributes.extend(r.patch);
                return;
            }
        }
        let retry = self.unresolved.clone();
        let again = r.clone();
        let queued = self
            .shared
            .pipeline
            .patch_event(crate::pipeline::EventPatch {
                uid: r.uid.clone(),
                patch: r.patch.clone(),
                on_failure: Box::new(move || {
                    if let Ok(mut v) = retry.lock() {
                        v.push(again);
                    }
                }),
            });
        if !queued && let Ok(mut v) = self.unresolved.lock() {
            v.push(r);
        }
    }

    /// Submits what is waiting; on refusal keeps it (dropping the oldest metric
    /// points first when too much piles up) and tries again on the next tick.
    fn flush(&mut self) {
        if !self.outbox.is_empty() {
            let mut batch: Vec<Record> = self.outbox.drain(..).collect();
            if let Some(resource) = &self.resource {
                for r in &mut batch {
                    let own = r.resource_mut();
                    if own.is_empty() {
                        *own = resource.clone();
                    }
                }
            }
            match self.shared.pipeline.submit("host", batch.clone()) {
                Ok(_) => {
                    if std::mem::take(&mut self.submit_failing) {
                        tracing::info!("host records accepted again");
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.submit_failing, true) {
                        tracing::warn!(error = %e, records = batch.len(), "host records refused; keeping them to retry");
                    }
                    self.outbox = batch.into();
                    self.trim_outbox();
                }
            }
        }
        if self.submit_failing {
            return;
        }
        let pending: Vec<Resolution> = self
            .unresolved
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        for r in pending {
            self.resolve(r);
        }
    }

    fn trim_outbox(&mut self) {
        let mut excess = self.outbox.len().saturating_sub(OUTBOX_MAX);
        if excess == 0 {
            return;
        }
        // Events (conditions) are few and matter most: drop metric points first.
        self.outbox.retain(|r| {
            if excess > 0 && matches!(r, Record::Metric(_)) {
                excess -= 1;
                false
            } else {
                true
            }
        });
        while self.outbox.len() > OUTBOX_MAX {
            self.outbox.pop_front();
        }
    }
}

/// The next time after `now` on an `every` schedule.
fn later(now: Instant, every: Duration) -> Instant {
    now + every.max(Duration::from_millis(50))
}
