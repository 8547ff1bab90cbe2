//! The pipeline's writer on PostgreSQL: each batch goes to [`PgStore::write`] on a
//! small runtime of the writer thread's own (its connection is driven only while a
//! batch is written, and never competes with the API's tasks). A lost connection (the
//! server restarted) is made again on the next attempt; the batch is retried until
//! it is stored.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::PgStore;
use crate::model::{Record, now_ns};
use crate::pipeline::{Job, Stats, StoreWriter, WriteHook};
use crate::store::write::WriteOutcome;

pub struct PgWriter {
    url: String,
    runtime: tokio::runtime::Runtime,
    store: Option<PgStore>,
    /// Rows older than this go, by whole day partitions (`None`: kept).
    max_age: Option<Duration>,
    cleanup_interval: Duration,
    next_cleanup: Instant,
    /// Whether "metric points are not kept" was said (once).
    said_metrics: bool,
}

impl PgWriter {
    /// Connects on first use: the caller has connected and migrated already, so a bad
    /// URL fails the start.
    pub fn new(
        url: String,
        max_age: Option<Duration>,
        cleanup_interval: Duration,
    ) -> std::io::Result<PgWriter> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(PgWriter {
            url,
            runtime,
            store: None,
            max_age,
            cleanup_interval,
            next_cleanup: Instant::now(),
            said_metrics: false,
        })
    }
}

/// The store in `slot`, connected (again, when the connection was lost) on `runtime`.
/// A free function over the two fields, so the caller can run the store's futures on
/// the same runtime while it holds the store.
fn connected<'a>(
    slot: &'a mut Option<PgStore>,
    runtime: &tokio::runtime::Runtime,
    url: &str,
) -> Result<&'a mut PgStore, String> {
    if slot.as_ref().is_some_and(|s| s.client().is_closed()) {
        *slot = None;
        tracing::info!("PostgreSQL connection lost; connecting again");
    }
    if slot.is_none() {
        *slot = Some(
            runtime
                .block_on(PgStore::connect(url))
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(slot.as_mut().expect("set above"))
}

impl StoreWriter for PgWriter {
    /// Hooks' `in_transaction` writes are SQLite's: on PostgreSQL the composer registers
    /// only hooks that keep state in memory.
    fn commit(
        &mut self,
        records: &[Record],
        _hooks: &[Arc<dyn WriteHook>],
    ) -> Result<WriteOutcome, String> {
        let store = connected(&mut self.store, &self.runtime, &self.url)?;
        let written = self
            .runtime
            .block_on(store.write(records, now_ns()))
            .map_err(|e| e.to_string())?;
        if written.not_kept > 0 && !self.said_metrics {
            self.said_metrics = true;
            tracing::warn!(
                points = written.not_kept,
                "metric points are not kept on PostgreSQL yet (spans and events are)"
            );
        }
        Ok(WriteOutcome {
            written: written.spans + written.events,
            duplicates: written.duplicates,
            expired: 0,
            effects: written.effects,
        })
    }

    fn run_job(&mut self, _job: Job) {
        tracing::debug!("a SQLite job was queued on the PostgreSQL store; skipped");
    }

    /// Age retention, by dropping whole day partitions, every `cleanup_interval`.
    fn upkeep(&mut self, stats: &Stats) {
        let Some(max_age) = self.max_age else {
            return;
        };
        if Instant::now() < self.next_cleanup {
            return;
        }
        self.next_cleanup = Instant::now() + self.cleanup_interval;
        let cutoff = now_ns() - max_age.as_nanos() as i64;
        let result = connected(&mut self.store, &self.runtime, &self.url).and_then(|store| {
            self.runtime
                .block_on(store.drop_before(cutoff))
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(dropped) if !dropped.is_empty() => {
                stats
                    .retention_deleted
                    .fetch_add(dropped.len() as u64, Ordering::Relaxed);
                tracing::info!(partitions = ?dropped, "retention dropped day partitions");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention failed; will retry"),
        }
    }
}
