//! The pipeline: a bounded queue that every source submits to, and one writer
//! thread that commits batches to the store (a [`StoreWriter`]: SQLite, or PostgreSQL
//! on a fleet's central). Handlers only validate and enqueue; the writer never dies: a
//! failed batch is kept and retried with backoff.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::model::{Event, Record, now_ns};
use crate::settings::{Setting, parse_bytes, parse_u64};
use crate::store::write::{WriteEffect, WriteOutcome};

#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    /// Records waiting to be committed, at most.
    pub queue_capacity: usize,
    /// Approximate bytes of records waiting to be committed, at most: what bounds the
    /// daemon's memory under load, whatever the size of the records.
    pub queue_max_bytes: usize,
    /// Records in one transaction, at most.
    pub batch_max: usize,
    /// Nice value of the writer and observer threads, so the agent and the capture
    /// endpoints get the CPU before the daemon's background work.
    pub background_nice: i32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            queue_capacity: 10_000,
            queue_max_bytes: 8 << 20,
            batch_max: 2_000,
            background_nice: DEFAULT_BACKGROUND_NICE,
        }
    }
}

const DEFAULT_BACKGROUND_NICE: i32 = 0;

impl PipelineConfig {
    /// A fleet central's defaults (on PostgreSQL): a queue for many sidecars' pushes
    /// instead of one agent's, and bigger transactions, which PostgreSQL writes 10 to
    /// 20 % faster (BENCHMARKS.md, session 18). Settings given still win.
    pub fn central() -> Self {
        PipelineConfig {
            queue_capacity: 50_000,
            queue_max_bytes: 64 << 20,
            batch_max: 10_000,
            ..PipelineConfig::default()
        }
    }
}

pub const SETTINGS: &[Setting<PipelineConfig>] = &[
    Setting {
        name: "background_nice",
        env: "OCT_BACKGROUND_NICE",
        default: "0",
        help: "Nice value (0-19) of the writer and observer threads: higher leaves the CPU to the agent and to the capture endpoints first",
        set: |c, v| {
            c.background_nice = match parse_u64(v) {
                Ok(n) if n <= 19 => n as i32,
                _ => return Err(format!("expected a nice value 0-19, got {v:?}")),
            };
            Ok(())
        },
    },
    Setting {
        name: "queue_capacity",
        env: "OCT_QUEUE_CAPACITY",
        default: "10000; 50000 on PostgreSQL",
        help: "Records accepted but not yet committed, at most; beyond it ingest answers 429",
        set: |c, v| {
            c.queue_capacity = parse_u64(v)?.max(1) as usize;
            Ok(())
        },
    },
    Setting {
        name: "queue_max_bytes",
        env: "OCT_QUEUE_MAX_BYTES",
        default: "8MiB; 64MiB on PostgreSQL",
        help: "Approximate bytes of records accepted but not yet committed, at most; beyond it ingest answers 429",
        set: |c, v| {
            c.queue_max_bytes = parse_bytes(v)?.max(1) as usize;
            Ok(())
        },
    },
    Setting {
        name: "batch_max",
        env: "OCT_BATCH_MAX",
        default: "2000; 10000 on PostgreSQL",
        help: "Records committed in one transaction, at most",
        set: |c, v| {
            c.batch_max = parse_u64(v)?.max(1) as usize;
            Ok(())
        },
    },
];

/// Why a submission was refused. Nothing of a refused submission is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full; retry shortly")]
    Full,
    #[error("the store cannot write right now: {0}")]
    Unavailable(String),
    #[error("shutting down")]
    Closed,
}

/// Work run on the SQLite writer's connection, between batches (upkeep, offsets...).
/// Work queued behind the batches before it, run on the writer.
pub enum Job {
    /// On the SQLite connection; a store without one drops it.
    Sqlite(Box<dyn FnOnce(&Connection) + Send>),
    /// A row of the daemon's own activity (`store::activity`), on either store.
    Activity(crate::store::activity::Activity),
    /// Keys merged into a stored event's attributes (a host condition's end), on
    /// either store.
    PatchEvent(EventPatch),
}

/// What [`Job::PatchEvent`] changes, and what to do when the store cannot.
pub struct EventPatch {
    pub uid: String,
    /// Top-level keys set on the event's attributes (none is null).
    pub patch: serde_json::Map<String, serde_json::Value>,
    /// Called when the store could not write it (to try again later).
    pub on_failure: Box<dyn FnOnce() + Send>,
}

/// Where the writer thread commits batches. One implementation per store backend:
/// `store::sqlite::SqliteWriter`, `store::postgres::PgWriter`.
pub trait StoreWriter: Send {
    /// Stores one batch and, where the store takes them, the hooks' `in_transaction`
    /// writes, all or nothing. The error says why, for `/health` and the log.
    fn commit(
        &mut self,
        records: &[Record],
        hooks: &[Arc<dyn WriteHook>],
    ) -> Result<WriteOutcome, String>;
    /// Runs a job queued with [`Pipeline::run_job`]; a store without a SQLite
    /// connection drops it.
    fn run_job(&mut self, job: Job);
    /// After every round, and once a second when idle (size caps, upkeep). Cheap.
    fn upkeep(&mut self, _stats: &Stats) {}
    /// After a failed commit, before the retry: make room if the store can.
    fn after_failure(&mut self, _stats: &Stats) {}
    /// The queue is drained: leave the store tidy.
    fn finish(&mut self) {}
}

/// Changes records before they are queued (redaction, cost from a price table, ...).
/// Runs on the submitting thread, so it must be cheap and must not block.
pub trait Transform: Send + Sync {
    fn apply(&self, record: &mut Record);
}

/// What a hook writes inside a batch's transaction, on whichever store holds it. The
/// writes every store takes (alerts) are methods; a hook whose tables only the SQLite
/// file keeps (rollups, sampling, the audit chain) takes the SQLite transaction, and is
/// registered only on SQLite.
pub trait HookTx {
    /// The batch's SQLite transaction; `None` on another store.
    fn sqlite(&self) -> Option<&rusqlite::Transaction<'_>>;
    /// Claims an alert for good: true the first time `(key, period, threshold)` is
    /// claimed on this store, false ever after (across restarts).
    fn claim_alert(&mut self, claim: &AlertClaim) -> Result<bool, HookError>;
    /// Stores an event the hook made (an alert).
    fn store_event(&mut self, event: Event) -> Result<(), HookError>;
    /// Puts an alert's payload on the alert destinations' queue.
    fn queue_alert(&mut self, payload: &serde_json::Value) -> Result<(), HookError>;
}

/// A threshold an alert crossed, claimed once (`budget_alerts`).
pub struct AlertClaim<'a> {
    /// What crossed it: a budget's name (`global/day/usd`).
    pub key: &'a str,
    /// The period it crossed it in (`2026-12-07`).
    pub period: &'a str,
    pub threshold: u32,
    /// What was spent when it crossed it, and the limit.
    pub spent: f64,
    pub limit: f64,
    pub time_ns: i64,
}

/// Why a hook's write failed (the batch is retried).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Store(String),
}

impl HookError {
    /// For callers on SQLite, where a hook's write fails only with SQLite's errors.
    pub fn into_sqlite(self) -> rusqlite::Error {
        match self {
            HookError::Sqlite(e) => e,
            HookError::Store(s) => rusqlite::Error::UserFunctionError(s.into()),
        }
    }
}

/// Sees every committed batch (rollups, live tail, budgets, ...).
/// `effects[i]` says what `records[i]` changed in the store: a new row, nothing (a
/// duplicate), or a merged piece with the rows before and after (`WriteEffect::span_change`
/// gives both cases of a span the same shape, so a hook counts exactly what changed).
pub trait WriteHook: Send + Sync {
    /// Inside the batch's transaction: writes here commit or fail with the batch.
    fn in_transaction(
        &self,
        _tx: &mut dyn HookTx,
        _records: &[Record],
        _effects: &[WriteEffect],
    ) -> Result<(), HookError> {
        Ok(())
    }
    /// Whether it keeps tables only the SQLite file has (rollups, sampling, the audit
    /// chain) or reads them after the commit: such a hook runs on SQLite only.
    fn sqlite_only(&self) -> bool {
        false
    }
    /// Right after the commit, on the writer thread, before the next transaction: for
    /// state the next transaction relies on. Must be tiny.
    fn at_commit(&self) {}
    /// After the commit, on the observer thread, batch by batch in commit order
    /// (metrics, the live tail, logs): off the writer, so it never slows commits.
    fn after_commit(&self, _records: &[Record], _effects: &[WriteEffect]) {}
}

enum Msg {
    /// Records and their approximate size, as reserved in the queue.
    Records(Vec<Record>, usize),
    Job(Job),
    /// Answered once everything before it is committed and observed.
    Flush(tokio::sync::oneshot::Sender<()>),
    Shutdown,
}

/// What the writer hands the observer thread.
enum Observed {
    Batch(Vec<Record>, Vec<WriteEffect>, Held),
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// A committed batch's share of the queue bound (`OCT_QUEUE_CAPACITY`,
/// `OCT_QUEUE_MAX_BYTES`), given back when dropped: after the batch itself is freed.
struct Held {
    inner: Arc<Inner>,
    n: usize,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.inner.depth.fetch_sub(self.n, Ordering::AcqRel);
        self.inner
            .depth_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Counters shown by `/health` and `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub written: AtomicU64,
    pub duplicates: AtomicU64,
    /// Records older than the age-retention window on arrival: counted, not stored.
    pub expired: AtomicU64,
    pub batches: AtomicU64,
    pub last_batch_micros: AtomicU64,
    pub write_micros_total: AtomicU64,
    pub last_commit_ns: AtomicI64,
    pub retention_deleted: AtomicU64,
    pub retention_unshipped_deleted: AtomicU64,
    /// True while the last attempt to commit failed.
    pub failing: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    /// Received and dropped, per source.
    pub by_source: Mutex<BTreeMap<&'static str, (u64, u64)>>,
}

impl Stats {
    fn count_source(&self, source: &'static str, received: u64, dropped: u64) {
        if let Ok(mut m) = self.by_source.lock() {
            let e = m.entry(source).or_default();
            e.0 += received;
            e.1 += dropped;
        }
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

struct Inner {
    transforms: Vec<Arc<dyn Transform>>,
    tx: RwLock<Option<Sender<Msg>>>,
    depth: AtomicUsize,
    capacity: usize,
    depth_bytes: AtomicUsize,
    max_bytes: usize,
    stats: Arc<Stats>,
}

/// A cheap handle to the pipeline, cloned into every source.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

/// What the writer thread needs: its store and the hooks that see every batch.
pub struct WriterSetup {
    pub store: Box<dyn StoreWriter>,
    pub batch_max: usize,
    /// Approximate bytes in one transaction, at most (so a size cap holds between checks).
    pub batch_max_bytes: usize,
    pub hooks: Vec<Arc<dyn WriteHook>>,
}

/// Joins the writer thread when the pipeline is closed.
pub struct WriterHandle {
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl WriterHandle {
    /// Waits for the writer to finish its last commit, at most `timeout`. True when it did.
    pub fn join(mut self, timeout: Duration) -> bool {
        let finished = self.done.recv_timeout(timeout).is_ok();
        if finished && let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        finished
    }
}

impl Pipeline {
    /// Starts the writer thread on an open writer connection.
    pub fn start(
        cfg: &PipelineConfig,
        transforms: Vec<Arc<dyn Transform>>,
        setup: WriterSetup,
    ) -> (Pipeline, WriterHandle) {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let inner = Arc::new(Inner {
            transforms,
            tx: RwLock::new(Some(tx)),
            depth: AtomicUsize::new(0),
            capacity: cfg.queue_capacity,
            depth_bytes: AtomicUsize::new(0),
            max_bytes: cfg.queue_max_bytes,
            stats: stats.clone(),
        });
        let (done_tx, done_rx) = mpsc::channel();
        let pipeline = Pipeline { inner };
        let writer_pipeline = pipeline.clone();
        let nice = cfg.background_nice;
        let thread = std::thread::Builder::new()
            .name("oct-writer".into())
            .spawn(move || {
                crate::util::nice_this_thread(nice);
                let (observer, observer_thread) = spawn_observer(setup.hooks.clone(), nice);
                Writer {
                    setup,
                    pipeline: writer_pipeline,
                    observer,
                    expired_logged: None,
                }
                .run(rx);
                // The observer drains what it was given, then ends with its channel.
                if let Some(t) = observer_thread {
                    let _ = t.join();
                }
                let _ = done_tx.send(());
            });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                // Without a writer nothing can be stored; say so on every submission.
                if let Ok(mut le) = stats.last_error.lock() {
                    *le = Some(format!("cannot start the writer thread: {e}"));
                }
                stats.failing.store(true, Ordering::Relaxed);
                None
            }
        };
        (
            pipeline,
            WriterHandle {
                done: done_rx,
                thread,
            },
        )
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.inner.stats
    }

    pub fn depth(&self) -> usize {
        self.inner.depth.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Approximate bytes waiting in the queue, and the most it takes.
    pub fn depth_bytes(&self) -> (usize, usize) {
        (
            self.inner.depth_bytes.load(Ordering::Relaxed),
            self.inner.max_bytes,
        )
    }

    /// True when `n` records of `bytes` from a client (the HTTP and OTLP APIs) would be
    /// accepted now: within the clients' share of the queue.
    pub fn has_room(&self, n: usize, bytes: usize) -> bool {
        let (depth, depth_bytes) = (self.depth(), self.depth_bytes().0);
        fits(depth, n, client_share(self.inner.capacity))
            && fits(depth_bytes, bytes, client_share(self.inner.max_bytes))
    }

    pub fn is_closed(&self) -> bool {
        self.inner.tx.read().map(|t| t.is_none()).unwrap_or(true)
    }

    /// Enqueues records from `source`. All or nothing: on error none of them is kept.
    pub fn submit(&self, source: &'static str, records: Vec<Record>) -> Result<usize, SubmitError> {
        let bytes = records.iter().map(Record::approx_bytes).sum::<usize>();
        self.submit_sized(source, records, bytes)
    }

    /// `submit`, for a caller that already knows the records' `approx_bytes` total.
    pub fn submit_sized(
        &self,
        source: &'static str,
        mut records: Vec<Record>,
        bytes: usize,
    ) -> Result<usize, SubmitError> {
        let n = records.len();
        if n == 0 {
            return Ok(0);
        }
        let stats = &self.inner.stats;
        if stats.failing.load(Ordering::Relaxed) {
            stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
            stats.count_source(source, 0, n as u64);
            return Err(SubmitError::Unavailable(
                stats.last_error().unwrap_or_else(|| "write failed".into()),
            ));
        }
        // Reserve room, by count and by size; a submission larger than the whole queue
        // still goes in when the queue is empty.
        let reserve = |depth: &AtomicUsize, add: usize, max: usize| {
            depth
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    fits(d, add, max).then_some(d + add)
                })
                .is_ok()
        };
        // Clients fill the queue up to their share; the rest is kept for the daemon's own
        // sources (host metrics, the gateway log, transcripts), so a flood does not drop them.
        let (capacity, max_bytes) = if CLIENT_SOURCES.contains(&source) {
            (
                client_share(self.inner.capacity),
                client_share(self.inner.max_bytes),
            )
        } else {
            (self.inner.capacity, self.inner.max_bytes)
        };
        let reserved = reserve(&self.inner.depth, n, capacity)
            && (reserve(&self.inner.depth_bytes, bytes, max_bytes) || {
                self.inner.depth.fetch_sub(n, Ordering::AcqRel);
                false
            });
        if !reserved {
            stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
            stats.count_source(source, 0, n as u64);
            return Err(SubmitError::Full);
        }
        for t in &self.inner.transforms {
            for r in records.iter_mut() {
                t.apply(r);
            }
        }
        let guard = self.inner.tx.read();
        let sent = match guard.as_ref().ok().and_then(|g| g.as_ref()) {
            Some(tx) => tx.send(Msg::Records(records, bytes)).is_ok(),
            None => false,
        };
        if !sent {
            self.inner.depth.fetch_sub(n, Ordering::AcqRel);
            self.inner.depth_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(SubmitError::Closed);
        }
        stats.received.fetch_add(n as u64, Ordering::Relaxed);
        stats.count_source(source, n as u64, 0);
        Ok(n)
    }

    /// Runs `job` on the writer's connection after everything submitted before it is committed.
    pub fn run_job(&self, job: impl FnOnce(&Connection) + Send + 'static) -> bool {
        self.queue_job(Job::Sqlite(Box::new(job)))
    }

    /// Records a row of the daemon's own activity behind everything queued before, on
    /// whichever store holds the data. False when the pipeline is closed.
    pub fn record_activity(&self, a: crate::store::activity::Activity) -> bool {
        self.queue_job(Job::Activity(a))
    }

    /// Merges `patch.patch` into a stored event's attributes behind everything queued
    /// before, on whichever store holds the data. False when the pipeline is closed.
    pub fn patch_event(&self, patch: EventPatch) -> bool {
        self.queue_job(Job::PatchEvent(patch))
    }

    fn queue_job(&self, job: Job) -> bool {
        match self.inner.tx.read() {
            Ok(g) => g.as_ref().is_some_and(|tx| tx.send(Msg::Job(job)).is_ok()),
            Err(_) => false,
        }
    }

    /// Resolves once everything submitted so far is committed and seen by every hook.
    pub async fn flush(&self) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = match self.inner.tx.read() {
            Ok(g) => g.as_ref().is_some_and(|t| t.send(Msg::Flush(tx)).is_ok()),
            Err(_) => false,
        };
        sent && rx.await.is_ok()
    }

    /// Refuses new work and asks the writer to drain, commit, checkpoint and stop.
    pub fn close(&self) {
        if let Ok(mut g) = self.inner.tx.write()
            && let Some(tx) = g.take()
        {
            let _ = tx.send(Msg::Shutdown);
        }
    }
}

/// `add` more fits beside `depth` under `max` (anything fits in an empty queue).
/// The sources fed by clients over the network; every other source is the daemon's own.
pub const CLIENT_SOURCES: &[&str] = &["api", "otlp", "openclaw"];

/// The part of the queue (records and bytes) clients may fill: 90 %, at least 1.
pub fn client_share(max: usize) -> usize {
    (max - max / 10).max(1)
}

fn fits(depth: usize, add: usize, max: usize) -> bool {
    depth == 0 || depth + add <= max
}

struct Writer {
    setup: WriterSetup,
    pipeline: Pipeline,
    observer: ObserverTx,
    /// When expired records were last logged (at most once a minute).
    expired_logged: Option<Instant>,
}

/// The observer thread's channel; `None` when it could not start (hooks then run inline).
struct ObserverTx(Option<SyncSender<Observed>>, Vec<Arc<dyn WriteHook>>);

/// Committed batches waiting for the observer, at most: should it fall behind, the
/// writer waits rather than let memory grow.
const OBSERVER_BACKLOG: usize = 2;

impl ObserverTx {
    fn send(&self, o: Observed) {
        let undelivered = match &self.0 {
            Some(tx) => tx.send(o).err().map(|e| e.0),
            None => Some(o),
        };
        if let Some(o) = undelivered {
            observe(&self.1, o);
        }
    }
}

/// Starts the thread that runs the hooks' `after_commit` and frees each batch, so the
/// writer goes straight on to the next commit.
fn spawn_observer(
    hooks: Vec<Arc<dyn WriteHook>>,
    nice: i32,
) -> (ObserverTx, Option<JoinHandle<()>>) {
    let (tx, rx) = mpsc::sync_channel::<Observed>(OBSERVER_BACKLOG);
    let thread_hooks = hooks.clone();
    match std::thread::Builder::new()
        .name("oct-observer".into())
        .spawn(move || {
            crate::util::nice_this_thread(nice);
            for o in rx {
                observe(&thread_hooks, o);
            }
        }) {
        Ok(t) => (ObserverTx(Some(tx), hooks), Some(t)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the observer thread; hooks run on the writer");
            (ObserverTx(None, hooks), None)
        }
    }
}

fn observe(hooks: &[Arc<dyn WriteHook>], o: Observed) {
    match o {
        Observed::Batch(records, effects, held) => {
            for h in hooks {
                h.after_commit(&records, &effects);
            }
            // Freed, then given back to the queue bound.
            drop(records);
            drop(held);
        }
        Observed::Barrier(done) => {
            let _ = done.send(());
        }
    }
}

/// What else the messages of one round asked for.
#[derive(Default)]
struct Pending {
    jobs: Vec<Job>,
    barriers: Vec<tokio::sync::oneshot::Sender<()>>,
    shutting_down: bool,
}

impl Pending {
    /// Something waits on this round: end the group commit here.
    fn waiting(&self) -> bool {
        !self.jobs.is_empty() || !self.barriers.is_empty()
    }
}

/// Records gathered for one transaction, with their approximate size.
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    bytes: usize,
}

impl Batch {
    fn take(&mut self, m: Msg, pending: &mut Pending) {
        match m {
            Msg::Records(mut r, bytes) => {
                self.bytes += bytes;
                self.records.append(&mut r);
            }
            Msg::Job(j) => pending.jobs.push(j),
            Msg::Flush(done) => pending.barriers.push(done),
            Msg::Shutdown => pending.shutting_down = true,
        }
    }
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut pending = Pending::default();
        loop {
            let first = if pending.shutting_down {
                match rx.try_recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.setup.store.upkeep(self.pipeline.stats());
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            let mut batch = Batch::default();
            batch.take(first, &mut pending);
            // Group commit: take whatever else is already waiting, up to the batch
            // limits (count and bytes, so the size cap holds between checks).
            while batch.records.len() < self.setup.batch_max
                && batch.bytes < self.setup.batch_max_bytes
                && !pending.waiting()
            {
                match rx.try_recv() {
                    Ok(m) => batch.take(m, &mut pending),
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
                }
            }
            if !batch.records.is_empty() {
                self.commit(batch.records, batch.bytes);
            }
            for job in pending.jobs.drain(..) {
                self.setup.store.run_job(job);
            }
            for done in pending.barriers.drain(..) {
                self.observer.send(Observed::Barrier(done));
            }
            self.setup.store.upkeep(self.pipeline.stats());
        }
        self.setup.store.finish();
    }

    /// Commits one batch, retrying with backoff until it succeeds; acked data is never dropped.
    fn commit(&mut self, records: Vec<Record>, bytes: usize) {
        let batch = &records[..];
        let stats = self.pipeline.stats().clone();
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match self.setup.store.commit(batch, &self.setup.hooks) {
                Ok(out) => {
                    for h in &self.setup.hooks {
                        h.at_commit();
                    }
                    let micros = started.elapsed().as_micros() as u64;
                    stats.written.fetch_add(out.written, Ordering::Relaxed);
                    stats
                        .duplicates
                        .fetch_add(out.duplicates, Ordering::Relaxed);
                    if out.expired > 0 {
                        stats.expired.fetch_add(out.expired, Ordering::Relaxed);
                        self.log_expired(out.expired);
                    }
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    stats.last_batch_micros.store(micros, Ordering::Relaxed);
                    stats
                        .write_micros_total
                        .fetch_add(micros, Ordering::Relaxed);
                    stats.last_commit_ns.store(now_ns(), Ordering::Relaxed);
                    if stats.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("database writes recovered");
                    }
                    // The batch keeps its place in the queue bound until the observer has
                    // freed it: up to three committed batches (OBSERVER_BACKLOG and the
                    // one observed) would otherwise sit in memory beyond the bound.
                    let held = Held {
                        inner: self.pipeline.inner.clone(),
                        n: batch.len(),
                        bytes,
                    };
                    self.observer
                        .send(Observed::Batch(records, out.effects, held));
                    return;
                }
                Err(msg) => {
                    if !stats.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(error = %msg, records = batch.len(), "database write failed; retrying");
                    }
                    if let Ok(mut le) = stats.last_error.lock() {
                        *le = Some(msg);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    self.setup.store.after_failure(&stats);
                }
            }
        }
    }

    /// Says, at most once a minute, that old records were counted but not stored.
    fn log_expired(&mut self, n: u64) {
        let now = Instant::now();
        if self
            .expired_logged
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        self.expired_logged = Some(now);
        tracing::warn!(
            records = n,
            total = self.pipeline.stats().expired.load(Ordering::Relaxed),
            "records older than the retention window arrived: counted in usage, budgets and metrics, not stored"
        );
    }
}

#[cfg(test)]
mod share_tests {
    use super::*;
    use crate::model::{Event, EventType};

    /// A pipeline whose queue nobody drains.
    fn undrained(capacity: usize) -> (Pipeline, Receiver<Msg>) {
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            transforms: Vec::new(),
            tx: RwLock::new(Some(tx)),
            depth: AtomicUsize::new(0),
            capacity,
            depth_bytes: AtomicUsize::new(0),
            max_bytes: usize::MAX / 2,
            stats: Arc::new(Stats::default()),
        });
        (Pipeline { inner }, rx)
    }

    fn events(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record::Event(Box::new(Event::new(EventType::Custom, format!("e{i}"), 1))))
            .collect()
    }

    #[test]
    fn clients_leave_a_share_for_the_daemons_own_sources() {
        let (p, _rx) = undrained(100);
        assert_eq!(p.submit("otlp", events(60)).unwrap(), 60);
        assert!(p.has_room(30, 0));
        assert_eq!(p.submit("api", events(30)).unwrap(), 30);
        // The clients' 90 are taken: more from them is refused, and has_room says so.
        assert!(!p.has_room(1, 0));
        assert!(matches!(
            p.submit("openclaw", events(1)),
            Err(SubmitError::Full)
        ));
        // Host samples and the gateway log still get in, up to the whole queue.
        assert_eq!(p.submit("host", events(6)).unwrap(), 6);
        assert_eq!(p.submit("gateway_log", events(4)).unwrap(), 4);
        assert!(matches!(
            p.submit("host", events(1)),
            Err(SubmitError::Full)
        ));
    }
}
