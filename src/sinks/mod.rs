//! Sinks: components that read the store by their own cursor and ship it elsewhere.
//!
//! Shared machinery: a cursor per sink per stream in `sink_cursors` (moved only
//! after the remote accepted the rows, so nothing is lost to a crash or an
//! outage), streamed bounded batches read by `id > cursor`, retries with
//! backoff, splitting of rejected batches into a dead-letter table, a final
//! push on shutdown, and the status `/health` shows. Sinks read the STORE, never memory.

pub mod delivery;
pub mod live;
pub mod otlp_export;
pub mod push;

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::model::now_ns;
use crate::pipeline::Pipeline;
use crate::store::{ReadPool, StoreError};
use crate::util::time::format_ns;
use delivery::{Attempt, Backoff, Redactor};

/// Dead letters kept per sink; older ones are dropped first.
const DEAD_LETTERS_KEPT: i64 = 10_000;

/// The sinks' settings (each declared beside its sink).
#[derive(Clone, Copy)]
pub struct SinksConfig<'a> {
    pub push: &'a push::PushConfig,
    pub otlp_export: &'a otlp_export::OtlpExportConfig,
}

/// Names of the sinks enabled by this configuration: retention deletes what
/// they have not shipped yet last (see `store::retention::Policy::active_sinks`).
pub fn active_sinks(cfg: &SinksConfig) -> Vec<String> {
    let mut out = Vec::new();
    if push::enabled(cfg.push) {
        out.push(push::SINK.to_string());
    }
    if otlp_export::enabled(cfg.otlp_export, &otlp_export::process_env) {
        out.push(otlp_export::SINK.to_string());
    }
    out
}

/// What the enabled sinks need written with each batch: the change log of spans merged
/// after they were stored, when a push ships them again (v2).
pub fn write_hooks(cfg: &SinksConfig) -> Vec<std::sync::Arc<dyn crate::pipeline::WriteHook>> {
    let mut out: Vec<std::sync::Arc<dyn crate::pipeline::WriteHook>> = Vec::new();
    if push::enabled(cfg.push) && cfg.push.format == push::PushFormat::V2 {
        out.push(std::sync::Arc::new(
            crate::store::span_changes::SpanChangeLog,
        ));
    }
    out
}

/// A table a sink ships, read by row id under its own cursor key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    pub table: &'static str,
    /// The `tbl` key in `sink_cursors` (the table name, or `table#purpose` for a second reader).
    pub cursor: &'static str,
    /// A disabled stream is skipped: its cursor follows the table's end so retention is not held back.
    pub enabled: bool,
    /// Time column used for the backlog's age.
    pub arrival_col: &'static str,
}

/// One record ready to send, remembering the row it came from.
pub trait Item: Send + Sync + 'static {
    fn row_id(&self) -> i64;
    /// Stable across retries and restarts, so a receiver can dedupe.
    fn record_id(&self) -> &str;
    /// What the dead-letter table keeps of it (JSON).
    fn payload(&self) -> String;
}

/// A bounded batch read after a cursor.
pub struct Batch<I> {
    pub items: Vec<I>,
    /// The last row consumed (rows a format does not ship are consumed without an item).
    pub last_row_id: i64,
}

impl<I> Batch<I> {
    pub fn empty(after: i64) -> Self {
        Batch {
            items: Vec::new(),
            last_row_id: after,
        }
    }
}

/// What a sink provides; the driver does the rest.
pub trait Sink: Send + Sync + 'static {
    type Item: Item;
    fn name(&self) -> &'static str;
    fn streams(&self) -> Vec<Stream>;
    /// Reads and encodes rows after `after`, streaming and bounded in count and bytes.
    fn read(
        &self,
        conn: &Connection,
        stream: &Stream,
        after: i64,
    ) -> Result<Batch<Self::Item>, StoreError>;
    /// One attempt to deliver `items` (never retries itself).
    fn send(&self, stream: &Stream, items: &[Self::Item]) -> impl Future<Output = Attempt> + Send;
    /// Replaces secrets in text bound for logs, errors and /health.
    fn redactor(&self) -> &Redactor;
}

/// How a sink's driver paces itself.
#[derive(Clone, Debug)]
pub struct Pacing {
    pub interval: Duration,
    /// Time one cycle may spend draining a backlog before yielding.
    pub cycle_budget: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Tries of one batch within a cycle before the cycle ends and backs off.
    pub attempts_per_cycle: u32,
    /// Wait before the first cycle after start.
    pub first_delay: Duration,
}

/// A record the remote rejected on its own, kept in `dead_letters`.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub row_id: i64,
    pub record_id: String,
    pub status: u16,
    pub error: String,
    pub payload: String,
}

/// Live state of one sink, shown by `/health`.
pub struct SinkStatus {
    pub name: &'static str,
    /// Where it ships to, with secrets redacted.
    pub target: String,
    pub streams: Vec<Stream>,
    last_success_ms: AtomicI64,
    last_attempt_ms: AtomicI64,
    consecutive_failures: AtomicU64,
    records_sent: AtomicU64,
    dead_lettered: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SinkStatus {
    pub fn new(name: &'static str, target: String, streams: Vec<Stream>) -> Self {
        SinkStatus {
            name,
            target,
            streams,
            last_success_ms: AtomicI64::new(0),
            last_attempt_ms: AtomicI64::new(0),
            consecutive_failures: AtomicU64::new(0),
            records_sent: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    fn attempted(&self) {
        self.last_attempt_ms
            .store(now_ns() / 1_000_000, Ordering::Relaxed);
    }

    fn succeeded(&self, sent: usize, dead: usize) {
        self.last_success_ms
            .store(now_ns() / 1_000_000, Ordering::Relaxed);
        self.records_sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.dead_lettered.fetch_add(dead as u64, Ordering::Relaxed);
    }

    /// A cycle ended with every stream drained and none failing (as the Go version,
    /// a cycle with nothing to send counts as a successful push).
    fn cycle_ok(&self) {
        self.last_success_ms
            .store(now_ns() / 1_000_000, Ordering::Relaxed);
    }

    /// Publishes the failures of the worst stream; the last error stays until all recover.
    fn set_failures(&self, failures: u64, error: Option<&str>) {
        self.consecutive_failures.store(failures, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            match error {
                Some(r) => *e = Some(r.to_string()),
                None if failures == 0 => *e = None,
                None => {}
            }
        }
    }

    /// Unix milliseconds of the last cycle step the remote accepted.
    pub fn last_success_ms(&self) -> Option<i64> {
        Some(self.last_success_ms.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    pub fn records_sent(&self) -> u64 {
        self.records_sent.load(Ordering::Relaxed)
    }
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
    pub fn consecutive_failures(&self) -> u64 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// `ready` before the first attempt, then `ok` or `error` (the Go version's words).
    pub fn state(&self) -> &'static str {
        if self.consecutive_failures() > 0 {
            "error"
        } else if self.last_success_ms().is_some() {
            "ok"
        } else {
            "ready"
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// One sink as `/health` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SinkHealth {
    pub name: &'static str,
    pub target: String,
    pub status: &'static str,
    pub last_success: Option<String>,
    pub last_attempt: Option<String>,
    pub consecutive_failures: u64,
    /// Rows not shipped yet.
    pub backlog: u64,
    /// Age of the oldest row not shipped yet.
    pub backlog_age_seconds: Option<f64>,
    pub records_sent: u64,
    pub dead_letters: u64,
    pub last_error: Option<String>,
}

/// A stream's cursor (0 when the sink never shipped from it).
pub fn load_cursor(conn: &Connection, sink: &str, cursor: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT last_id FROM sink_cursors WHERE sink = ?1 AND tbl = ?2",
            params![sink, cursor],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Backlog of a sink: rows after its cursors, and the arrival time of the oldest.
pub fn backlog(conn: &Connection, status: &SinkStatus) -> Result<(u64, Option<i64>), StoreError> {
    let mut count = 0u64;
    let mut oldest: Option<i64> = None;
    for s in status.streams.iter().filter(|s| s.enabled) {
        let after = load_cursor(conn, status.name, s.cursor)?;
        let n: i64 = conn.query_row(
            &format!("SELECT count(*) FROM {} WHERE id > ?1", s.table),
            [after],
            |r| r.get(0),
        )?;
        count += n.max(0) as u64;
        let t: Option<i64> = conn
            .query_row(
                &format!(
                    "SELECT {} FROM {} WHERE id > ?1 ORDER BY id LIMIT 1",
                    s.arrival_col, s.table
                ),
                [after],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(t) = t {
            oldest = Some(oldest.map_or(t, |o: i64| o.min(t)));
        }
    }
    Ok((count, oldest))
}

pub fn dead_letter_count(conn: &Connection, sink: &str) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM dead_letters WHERE sink = ?1",
        [sink],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// Health of every running sink (reads the store: call off the async workers).
pub fn health(
    conn: &Connection,
    statuses: &[Arc<SinkStatus>],
) -> Result<Vec<SinkHealth>, StoreError> {
    let now = now_ns();
    statuses
        .iter()
        .map(|st| {
            let (backlog, oldest) = backlog(conn, st)?;
            let ms = |v: &AtomicI64| {
                Some(v.load(Ordering::Relaxed))
                    .filter(|t| *t > 0)
                    .map(|t| format_ns(t * 1_000_000))
            };
            Ok(SinkHealth {
                name: st.name,
                target: st.target.clone(),
                status: st.state(),
                last_success: ms(&st.last_success_ms),
                last_attempt: ms(&st.last_attempt_ms),
                consecutive_failures: st.consecutive_failures(),
                backlog,
                backlog_age_seconds: oldest.map(|t| ((now - t).max(0) as f64 / 1e9).round()),
                records_sent: st.records_sent.load(Ordering::Relaxed),
                dead_letters: dead_letter_count(conn, st.name)?,
                last_error: st.last_error(),
            })
        })
        .collect()
}

/// Moves a cursor and stores dead letters in one transaction, on the writer's connection.
fn write_progress(
    conn: &Connection,
    sink: &str,
    stream: &Stream,
    last_id: Option<i64>,
    dead: &[DeadLetter],
) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    let now = now_ns();
    match last_id {
        Some(id) => {
            tx.execute(
                "INSERT INTO sink_cursors (sink, tbl, last_id, updated_ns) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(sink, tbl) DO UPDATE SET last_id = excluded.last_id, updated_ns = excluded.updated_ns",
                params![sink, stream.cursor, id, now],
            )?;
        }
        // Skip to the table's end (a stream this sink does not ship).
        None => {
            tx.execute(
                &format!(
                    "INSERT INTO sink_cursors (sink, tbl, last_id, updated_ns)
                     SELECT ?1, ?2, COALESCE(MAX(id), 0), ?3 FROM {}
                     WHERE true
                     ON CONFLICT(sink, tbl) DO UPDATE SET last_id = excluded.last_id, updated_ns = excluded.updated_ns",
                    stream.table
                ),
                params![sink, stream.cursor, now],
            )?;
        }
    }
    if !dead.is_empty() {
        let mut ins = tx.prepare_cached(
            "INSERT INTO dead_letters (sink, tbl, row_id, record_id, status, error, payload, created_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for d in dead {
            ins.execute(params![
                sink,
                stream.table,
                d.row_id,
                d.record_id,
                d.status,
                d.error,
                d.payload,
                now
            ])?;
        }
        drop(ins);
        let dropped = tx.execute(
            "DELETE FROM dead_letters WHERE sink = ?1 AND id <= (SELECT id FROM dead_letters WHERE sink = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            params![sink, DEAD_LETTERS_KEPT],
        )?;
        // The activity log (on the audit chain): what went to dead letters, and the
        // oldest dropped to keep DEAD_LETTERS_KEPT per sink.
        let first = &dead[0];
        let mut message = format!(
            "{} {} record(s) the remote rejected moved to dead letters",
            dead.len(),
            stream.table
        );
        if dropped > 0 {
            message.push_str(&format!(
                "; {dropped} older dead letter(s) dropped (the newest {DEAD_LETTERS_KEPT} are kept)"
            ));
        }
        crate::store::activity::insert_in(
            &tx,
            &crate::store::activity::Activity {
                time_ns: now,
                kind: "dead_letters".into(),
                message,
                detail: Some(serde_json::json!({
                    "sink": sink,
                    "table": stream.table,
                    "records": dead.len(),
                    "dropped": dropped,
                    "status": first.status,
                    "error": first.error,
                })),
                ..Default::default()
            },
        )?;
        crate::store::audit::seal(&tx, "delete")?;
    }
    tx.commit()
}

/// Why a stream stopped early, and how long to wait before trying it again.
#[derive(Debug)]
struct Stop {
    reason: String,
    wait: Duration,
}

enum CycleEnd {
    Drained,
    OutOfTime,
}

/// What a driver needs from the daemon.
#[derive(Clone)]
pub struct Ctx {
    pub pipeline: Pipeline,
    pub reads: Arc<ReadPool>,
}

/// Each stream backs off on its own: a backend that refuses metrics does not hold traces back.
struct StreamState {
    stream: Stream,
    backoff: Backoff,
    not_before: Instant,
}

struct Driver<S: Sink> {
    sink: Arc<S>,
    ctx: Ctx,
    status: Arc<SinkStatus>,
    pacing: Pacing,
    streams: Vec<StreamState>,
}

impl<S: Sink> Driver<S> {
    fn new(sink: S, ctx: Ctx, status: Arc<SinkStatus>, pacing: Pacing) -> Self {
        let now = Instant::now();
        let streams = sink
            .streams()
            .into_iter()
            .map(|stream| StreamState {
                stream,
                backoff: Backoff::new(pacing.retry_initial, pacing.retry_max),
                not_before: now,
            })
            .collect();
        Driver {
            sink: Arc::new(sink),
            ctx,
            status,
            pacing,
            streams,
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S, &Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Stop> {
        let sink = self.sink.clone();
        let pool = self.ctx.reads.clone();
        match tokio::task::spawn_blocking(move || pool.with(|c| f(&sink, c))).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.stop_local(format!("reading the store: {e}"))),
            Err(e) => Err(self.stop_local(format!("read task failed: {e}"))),
        }
    }

    async fn write(
        &self,
        stream: Stream,
        last_id: Option<i64>,
        dead: Vec<DeadLetter>,
    ) -> Result<(), Stop> {
        let (tx, rx) = oneshot::channel();
        let sink = self.sink.name();
        let queued = self.ctx.pipeline.run_job(move |conn| {
            let _ = tx.send(write_progress(conn, sink, &stream, last_id, &dead));
        });
        if !queued {
            return Err(self.stop_local("the writer is closed".into()));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.stop_local(format!("saving the cursor: {e}"))),
            Err(_) => Err(self.stop_local("the writer dropped the cursor update".into())),
        }
    }

    /// A local failure (store, writer): retried after a short pause, not counted against the remote.
    fn stop_local(&self, reason: String) -> Stop {
        tracing::warn!(sink = self.sink.name(), error = %reason, "sink cycle failed");
        Stop {
            reason,
            wait: self.pacing.retry_initial.max(Duration::from_secs(1)),
        }
    }

    fn publish_failures(&self, error: Option<&str>) {
        let worst = self
            .streams
            .iter()
            .map(|s| s.backoff.failures())
            .max()
            .unwrap_or(0);
        self.status.set_failures(worst as u64, error);
    }

    /// One pass over every stream that is not backing off.
    async fn cycle(&mut self, deadline: Instant) -> CycleEnd {
        for i in 0..self.streams.len() {
            let stream = self.streams[i].stream;
            if !stream.enabled {
                if let Err(stop) = self.write(stream, None, Vec::new()).await {
                    self.streams[i].not_before = Instant::now() + stop.wait;
                }
                continue;
            }
            if Instant::now() < self.streams[i].not_before {
                continue;
            }
            match self.drain(i, deadline).await {
                Ok(CycleEnd::Drained) => {}
                Ok(CycleEnd::OutOfTime) => return CycleEnd::OutOfTime,
                Err(stop) => {
                    tracing::debug!(sink = self.sink.name(), table = stream.table, reason = %stop.reason, "stream paused");
                    self.streams[i].not_before = Instant::now() + stop.wait;
                }
            }
        }
        CycleEnd::Drained
    }

    /// Ships one stream's rows until it is drained, the deadline passes, or the remote fails.
    async fn drain(&mut self, i: usize, deadline: Instant) -> Result<CycleEnd, Stop> {
        let stream = self.streams[i].stream;
        let name = self.sink.name();
        loop {
            if Instant::now() >= deadline {
                return Ok(CycleEnd::OutOfTime);
            }
            let (after, batch) = self
                .read(move |sink, conn| {
                    let after = load_cursor(conn, name, stream.cursor)?;
                    sink.read(conn, &stream, after).map(|b| (after, b))
                })
                .await?;
            if batch.last_row_id <= after {
                return Ok(CycleEnd::Drained);
            }
            let dead = if batch.items.is_empty() {
                Vec::new()
            } else {
                self.deliver(i, &batch.items, deadline).await?
            };
            let (sent, dead_n) = (batch.items.len() - dead.len(), dead.len());
            if dead_n > 0 {
                tracing::warn!(
                    sink = name,
                    table = stream.table,
                    records = dead_n,
                    error = %dead[0].error,
                    "remote rejected records; moved to dead_letters"
                );
            }
            self.write(stream, Some(batch.last_row_id), dead).await?;
            self.status.succeeded(sent, dead_n);
        }
    }

    /// Sends items in order; a rejected part is split until the records at fault are found.
    async fn deliver(
        &mut self,
        i: usize,
        items: &[S::Item],
        deadline: Instant,
    ) -> Result<Vec<DeadLetter>, Stop> {
        let mut dead = Vec::new();
        let mut todo = Vec::with_capacity(8);
        todo.push(0..items.len());
        while let Some(range) = todo.pop() {
            if range.is_empty() {
                continue;
            }
            let part = &items[range.clone()];
            if let Attempt::Reject { status, reason } =
                self.send_with_retry(i, part, deadline).await?
            {
                if part.len() == 1 {
                    let it = &part[0];
                    dead.push(DeadLetter {
                        row_id: it.row_id(),
                        record_id: it.record_id().to_string(),
                        status,
                        error: self.sink.redactor().redact(&reason),
                        payload: it.payload(),
                    });
                } else {
                    let mid = range.start + part.len() / 2;
                    // Right half pushed first so the left half goes first: order is kept.
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
            }
        }
        Ok(dead)
    }

    /// Delivered or Reject, or a Stop once retries in this cycle are used up.
    async fn send_with_retry(
        &mut self,
        i: usize,
        items: &[S::Item],
        deadline: Instant,
    ) -> Result<Attempt, Stop> {
        let stream = self.streams[i].stream;
        let name = self.sink.name();
        let mut tries = 0u32;
        loop {
            tries += 1;
            self.status.attempted();
            let outcome = self.sink.send(&stream, items).await;
            match outcome {
                Attempt::Delivered | Attempt::Reject { .. } => {
                    if self.streams[i].backoff.failures() > 0 {
                        tracing::info!(sink = name, table = stream.table, "remote accepts again");
                    }
                    self.streams[i].backoff.reset();
                    self.publish_failures(None);
                    return Ok(outcome);
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    let reason = self.sink.redactor().redact(&reason);
                    let wait = self.streams[i].backoff.next_delay(retry_after);
                    self.publish_failures(Some(&reason));
                    let failures = self.streams[i].backoff.failures();
                    if tries >= self.pacing.attempts_per_cycle || Instant::now() + wait > deadline {
                        tracing::warn!(
                            sink = name,
                            table = stream.table,
                            error = %reason,
                            consecutive_failures = failures,
                            retry_in_ms = wait.as_millis() as u64,
                            "delivery failed; will retry"
                        );
                        return Err(Stop { reason, wait });
                    }
                    tracing::debug!(sink = name, error = %reason, retry_in_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Attempt::Refused { status, reason } => {
                    let reason = self.sink.redactor().redact(&reason);
                    let wait = self.streams[i].backoff.next_delay(None);
                    self.publish_failures(Some(&reason));
                    tracing::error!(
                        sink = name,
                        table = stream.table,
                        status,
                        error = %reason,
                        consecutive_failures = self.streams[i].backoff.failures(),
                        retry_in_ms = wait.as_millis() as u64,
                        "remote refuses every request for this table (check the endpoint and credentials; a backend without this signal: leave it out of OCT_OTLP_EXPORT_SIGNALS)"
                    );
                    return Err(Stop { reason, wait });
                }
            }
        }
    }

    /// When the next cycle should start: the interval, or sooner if a backing-off stream is due.
    fn next_wake(&self, end: CycleEnd) -> Instant {
        let now = Instant::now();
        if matches!(end, CycleEnd::OutOfTime) {
            return now + Duration::from_millis(5);
        }
        let due = self
            .streams
            .iter()
            .filter(|s| s.stream.enabled && s.not_before > now)
            .map(|s| s.not_before)
            .min();
        let regular = now + self.pacing.interval;
        due.map_or(regular, |d| d.min(regular))
    }

    /// Cycles until the daemon asks for the final push, then does it within its deadline.
    async fn run(mut self, mut final_rx: mpsc::Receiver<(Instant, oneshot::Sender<()>)>) {
        let mut next = Instant::now() + self.pacing.first_delay;
        loop {
            let fin = tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => None,
                f = final_rx.recv() => Some(f),
            };
            if let Some(f) = fin {
                return self.final_push(f).await;
            }
            let deadline = Instant::now() + self.pacing.cycle_budget;
            let end = tokio::select! {
                r = self.cycle(deadline) => r,
                // Cancelling mid-send is safe: the cursor moves only after the remote accepted.
                f = final_rx.recv() => return self.final_push(f).await,
            };
            if matches!(end, CycleEnd::Drained)
                && self.streams.iter().all(|s| s.backoff.failures() == 0)
            {
                self.status.cycle_ok();
            }
            next = self.next_wake(end);
        }
    }

    async fn final_push(mut self, msg: Option<(Instant, oneshot::Sender<()>)>) {
        let Some((deadline, done)) = msg else { return };
        let _ = tokio::time::timeout_at(deadline.into(), self.ctx.pipeline.flush()).await;
        // The last try is not held back by the backoff of earlier failures.
        let now = Instant::now();
        for s in &mut self.streams {
            s.not_before = now;
        }
        let name = self.sink.name();
        match tokio::time::timeout_at(deadline.into(), self.cycle(deadline)).await {
            Ok(CycleEnd::Drained) if self.status.consecutive_failures() == 0 => {
                tracing::info!(sink = name, "final push done")
            }
            Ok(_) | Err(_) => {
                tracing::warn!(
                    sink = name,
                    "final push incomplete; the rest ships after restart"
                )
            }
        }
        let _ = done.send(());
    }
}

/// A running sink.
struct Running {
    status: Arc<SinkStatus>,
    final_tx: mpsc::Sender<(Instant, oneshot::Sender<()>)>,
    task: JoinHandle<()>,
}

/// Starts a sink's driver task.
fn spawn<S: Sink>(sink: S, target: String, ctx: Ctx, pacing: Pacing) -> Running {
    let status = Arc::new(SinkStatus::new(sink.name(), target, sink.streams()));
    let (final_tx, final_rx) = mpsc::channel(1);
    let driver = Driver::new(sink, ctx, status.clone(), pacing);
    let task = tokio::spawn(driver.run(final_rx));
    Running {
        status,
        final_tx,
        task,
    }
}

/// The sinks this daemon runs.
#[derive(Default)]
pub struct Registry {
    running: Mutex<Vec<Running>>,
    statuses: Vec<Arc<SinkStatus>>,
}

impl Registry {
    /// No sink (a store the sinks cannot read yet).
    pub fn none() -> Registry {
        Registry {
            running: Mutex::new(Vec::new()),
            statuses: Vec::new(),
        }
    }

    /// Starts every sink the configuration enables. `own_addr` is the API's address,
    /// so an exporter pointed back at this daemon is refused instead of looping.
    pub fn start(
        cfg: &SinksConfig,
        ctx: Ctx,
        own_addr: std::net::SocketAddr,
    ) -> anyhow::Result<Registry> {
        let mut running = Vec::new();
        if let Some(sink) = push::PushSink::from_config(cfg.push)? {
            let target = sink.target();
            tracing::info!(sink = push::SINK, endpoint = %target, format = sink.format_name(), "push enabled");
            running.push(spawn(sink, target, ctx.clone(), cfg.push.pacing()));
        }
        if let Some(resolved) =
            otlp_export::Resolved::from_config(cfg.otlp_export, &otlp_export::process_env)?
        {
            if resolved.points_at(own_addr) {
                tracing::error!(
                    endpoint = %resolved.target(),
                    "OTLP export points at this daemon's own OTLP receiver; export disabled to avoid a loop"
                );
            } else {
                let pacing = resolved.pacing();
                let target = resolved.target();
                tracing::info!(sink = otlp_export::SINK, endpoint = %target, protocol = resolved.protocol.as_str(), "OTLP export enabled");
                running.push(spawn(
                    otlp_export::OtlpSink::new(resolved)?,
                    target,
                    ctx,
                    pacing,
                ));
            }
        }
        let statuses = running.iter().map(|r| r.status.clone()).collect();
        Ok(Registry {
            running: Mutex::new(running),
            statuses,
        })
    }

    pub fn statuses(&self) -> &[Arc<SinkStatus>] {
        &self.statuses
    }

    pub fn status(&self, name: &str) -> Option<&Arc<SinkStatus>> {
        self.statuses.iter().find(|s| s.name == name)
    }

    /// Asks every sink for a last cycle and waits for them, at most until `deadline`.
    pub async fn final_push(&self, deadline: Instant) {
        let running: Vec<Running> = match self.running.lock() {
            Ok(mut r) => r.drain(..).collect(),
            Err(_) => return,
        };
        let mut waits = Vec::new();
        for r in &running {
            let (tx, rx) = oneshot::channel();
            if r.final_tx.try_send((deadline, tx)).is_ok() {
                waits.push(rx);
            }
        }
        for rx in waits {
            let _ = tokio::time::timeout_at(deadline.into(), rx).await;
        }
        for r in running {
            r.task.abort();
        }
    }
}

/// This machine's host name (for the push envelope and OTLP resources).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// A metric point as stored, for sinks.
#[derive(Clone, Debug, Serialize)]
pub struct MetricRow {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    pub unit: String,
    pub kind: String,
    pub time: String,
    pub time_ns: i64,
    pub start_time_ns: Option<i64>,
    pub value: Option<f64>,
    pub count: Option<i64>,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub bounds: Option<serde_json::Value>,
    pub bucket_counts: Option<serde_json::Value>,
    pub temporality: Option<String>,
    pub monotonic: Option<bool>,
    pub attributes: serde_json::Value,
    pub resource: serde_json::Value,
    pub source: String,
}

pub const METRIC_COLS: &str =
    "id, name, unit, kind, time_ns, start_time_ns, value, count, sum, min, max,
    bounds, bucket_counts, temporality, monotonic, attributes, resource, source";

pub fn metric_row(r: &rusqlite::Row) -> rusqlite::Result<MetricRow> {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    let t: i64 = r.get(4)?;
    Ok(MetricRow {
        id: r.get(0)?,
        name: r.get(1)?,
        unit: r.get(2)?,
        kind: r.get(3)?,
        time: format_ns(t),
        time_ns: t,
        start_time_ns: r.get(5)?,
        value: r.get(6)?,
        count: r.get(7)?,
        sum: r.get(8)?,
        min: r.get(9)?,
        max: r.get(10)?,
        bounds: json(r.get(11)?),
        bucket_counts: json(r.get(12)?),
        temporality: r.get(13)?,
        monotonic: r.get::<_, Option<i64>>(14)?.map(|b| b != 0),
        attributes: json(r.get(15)?).unwrap_or_else(|| serde_json::json!({})),
        resource: json(r.get(16)?).unwrap_or_else(|| serde_json::json!({})),
        source: r.get(17)?,
    })
}

/// Which rows a read takes beyond the cursor (the CLI: one trace, or a time window).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub trace_id: Option<[u8; 16]>,
    pub since_ns: Option<i64>,
}

/// Visits rows of `table` with `id > after` matching `sel`, in id order, at most
/// `limit`, one at a time (never the whole backlog in memory); `each` returns false to stop.
pub fn scan(
    conn: &Connection,
    table: &str,
    cols: &str,
    after: i64,
    limit: usize,
    sel: &Selection,
    mut each: impl FnMut(&rusqlite::Row) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    use rusqlite::types::Value as SqlValue;
    let mut sql = format!("SELECT {cols} FROM {table} WHERE id > ?1");
    let mut args = vec![SqlValue::Integer(after)];
    // Sampling: nothing of a run before its decision, nothing of a dropped run.
    if let Some(upto) = crate::analytics::sampling::ship_upto(conn, table)? {
        args.push(SqlValue::Integer(upto));
        sql.push_str(&format!(
            " AND id <= ?{} AND {}",
            args.len(),
            crate::analytics::sampling::not_dropped(table)
        ));
    }
    if let Some(t) = sel.since_ns {
        let time_col = if table == "spans" {
            "start_ns"
        } else {
            "time_ns"
        };
        args.push(SqlValue::Integer(t));
        sql.push_str(&format!(" AND {time_col} >= ?{}", args.len()));
    }
    if let Some(t) = sel.trace_id
        && table != "metric_points"
    {
        args.push(SqlValue::Blob(t.to_vec()));
        sql.push_str(&format!(" AND trace_id = ?{}", args.len()));
    }
    args.push(SqlValue::Integer(limit.min(i64::MAX as usize) as i64));
    sql.push_str(&format!(" ORDER BY id LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    while let Some(r) = rows.next()? {
        if !each(r)? {
            break;
        }
    }
    Ok(())
}

/// The three data tables as streams, in the order they ship.
pub fn data_streams(spans: bool, events: bool, metrics: bool, span_changes: bool) -> Vec<Stream> {
    vec![
        Stream {
            table: "spans",
            cursor: "spans",
            enabled: spans,
            arrival_col: "received_ns",
        },
        Stream {
            table: "events",
            cursor: "events",
            enabled: events,
            arrival_col: "received_ns",
        },
        Stream {
            table: "metric_points",
            cursor: "metric_points",
            enabled: metrics,
            arrival_col: "time_ns",
        },
        // Spans changed after they were stored (`store::span_changes`): read by a sink
        // that ships them again; the others' cursors follow its end.
        Stream {
            table: "span_changes",
            cursor: "span_changes",
            enabled: span_changes,
            arrival_col: "time_ns",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_writer(&dir.path().join("t.db")).unwrap();
        (dir, conn)
    }

    #[test]
    fn progress_moves_the_cursor_and_keeps_dead_letters() {
        let (_d, conn) = db();
        let stream = data_streams(true, true, true, false)[1];
        assert_eq!(load_cursor(&conn, "push", "events").unwrap(), 0);
        let dl = DeadLetter {
            row_id: 3,
            record_id: "r3".into(),
            status: 400,
            error: "HTTP 400".into(),
            payload: "{}".into(),
        };
        write_progress(&conn, "push", &stream, Some(7), &[dl]).unwrap();
        assert_eq!(load_cursor(&conn, "push", "events").unwrap(), 7);
        assert_eq!(dead_letter_count(&conn, "push").unwrap(), 1);
        // Skipping a stream moves its cursor to the table's end.
        conn.execute_batch(
            "INSERT INTO events (id, uid, type, time_ns, name, severity, source, received_ns)
             VALUES (42, 'u', 'log', 1, 'n', 'info', 'api', 1)",
        )
        .unwrap();
        write_progress(&conn, "push", &stream, None, &[]).unwrap();
        assert_eq!(load_cursor(&conn, "push", "events").unwrap(), 42);
        let st = SinkStatus::new("push", "x".into(), vec![stream]);
        assert_eq!(backlog(&conn, &st).unwrap().0, 0);
        assert_eq!(st.state(), "ready");
    }

    #[test]
    fn retention_brings_cursors_back_when_row_ids_would_be_reused() {
        let (dir, conn) = db();
        for i in 1..=5 {
            conn.execute(
                "INSERT INTO events (id, uid, type, time_ns, name, severity, source, received_ns)
                 VALUES (?1, ?2, 'log', 1, 'n', 'info', 'api', 1)",
                rusqlite::params![i, format!("u{i}")],
            )
            .unwrap();
        }
        let stream = data_streams(true, true, true, false)[1];
        write_progress(&conn, "push", &stream, Some(5), &[]).unwrap();
        let policy = crate::store::retention::Policy {
            max_age: Some(Duration::from_secs(1)),
            max_db_bytes: u64::MAX,
            disk_threshold_pct: 100.0,
            active_sinks: vec!["push".into()],
        };
        let report =
            crate::store::retention::run(&conn, &dir.path().join("t.db"), &policy, now_ns())
                .unwrap();
        assert_eq!(report.deleted, 5);
        // The table is empty: the next row gets id 1, which the cursor must not skip.
        assert_eq!(load_cursor(&conn, "push", "events").unwrap(), 0);
    }
}
