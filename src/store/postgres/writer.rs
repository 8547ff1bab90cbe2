//! The pipeline's writer on PostgreSQL: each batch goes to [`PgStore::begin_write`] on a
//! small runtime of the writer thread's own (its connection is driven only while a
//! batch is written, and never competes with the API's tasks). A lost connection (the
//! server restarted) is made again on the next attempt; the batch is retried until
//! it is stored.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Batch, PgStore};
use crate::model::{Event, Record, now_ns};
use crate::pipeline::{AlertClaim, HookError, HookTx, Job, Stats, StoreWriter, WriteHook};
use crate::store::write::WriteOutcome;

pub struct PgWriter {
    url: String,
    runtime: tokio::runtime::Runtime,
    store: Option<PgStore>,
    /// Rows older than this go, by whole day partitions (`None`: kept).
    max_age: Option<Duration>,
    cleanup_interval: Duration,
    next_cleanup: Instant,
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

/// The hooks' writes in a PostgreSQL batch's transaction, each run to its end on the
/// writer's runtime (the hooks are synchronous; the writer thread is outside it).
struct PgHookTx<'a> {
    batch: Batch<'a>,
    runtime: &'a tokio::runtime::Runtime,
}

impl HookTx for PgHookTx<'_> {
    fn sqlite(&self) -> Option<&rusqlite::Transaction<'_>> {
        None
    }

    fn claim_alert(&mut self, claim: &AlertClaim) -> Result<bool, HookError> {
        self.runtime
            .block_on(self.batch.claim_alert(claim))
            .map_err(|e| HookError::Store(e.to_string()))
    }

    fn store_event(&mut self, event: Event) -> Result<(), HookError> {
        self.runtime
            .block_on(self.batch.store_event(&event))
            .map_err(|e| HookError::Store(e.to_string()))
    }

    fn queue_alert(&mut self, payload: &serde_json::Value) -> Result<(), HookError> {
        self.runtime
            .block_on(self.batch.queue_alert(payload))
            .map_err(|e| HookError::Store(e.to_string()))
    }
}

impl StoreWriter for PgWriter {
    /// The batch and the hooks' writes in one transaction. Hooks whose tables only
    /// SQLite keeps are not registered on this store.
    fn commit(
        &mut self,
        records: &[Record],
        hooks: &[Arc<dyn WriteHook>],
    ) -> Result<WriteOutcome, String> {
        let store = connected(&mut self.store, &self.runtime, &self.url)?;
        let (batch, written) = self
            .runtime
            .block_on(store.begin_write(records, now_ns()))
            .map_err(|e| e.to_string())?;
        let mut hook_tx = PgHookTx {
            batch,
            runtime: &self.runtime,
        };
        for h in hooks {
            h.in_transaction(&mut hook_tx, records, &written.effects)
                .map_err(|e| e.to_string())?;
        }
        self.runtime
            .block_on(hook_tx.batch.commit())
            .map_err(|e| e.to_string())?;
        Ok(WriteOutcome {
            written: written.spans + written.events + written.points,
            duplicates: written.duplicates,
            expired: 0,
            effects: written.effects,
        })
    }

    fn run_job(&mut self, job: Job) {
        match job {
            Job::Sqlite(_) => {
                tracing::debug!("a SQLite job was queued on the PostgreSQL store; skipped")
            }
            Job::Activity(a) => {
                let result = connected(&mut self.store, &self.runtime, &self.url).and_then(|s| {
                    self.runtime
                        .block_on(s.insert_activity(&a))
                        .map_err(|e| e.to_string())
                });
                if let Err(e) = result {
                    tracing::warn!(error = %e, kind = %a.kind, "cannot record activity");
                }
            }
            Job::PatchEvent(p) => {
                let result = connected(&mut self.store, &self.runtime, &self.url).and_then(|s| {
                    self.runtime
                        .block_on(s.patch_event(&p.uid, &p.patch))
                        .map_err(|e| e.to_string())
                });
                if let Err(e) = result {
                    tracing::warn!(error = %e, "cannot update a stored event; will retry");
                    (p.on_failure)();
                }
            }
        }
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
