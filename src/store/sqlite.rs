//! The SQLite store's writer: the pipeline commits each batch here, in one transaction
//! with the hooks' own writes, and runs the store's upkeep between batches (size cap,
//! WAL checkpoints, packing dictionaries).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::write::{self, WriteOutcome};
use super::{codec, file_sizes, retention};
use crate::model::{Record, now_ns};
use crate::pipeline::{AlertClaim, HookError, HookTx, Job, Stats, StoreWriter, WriteHook};

/// The writer connection and what its upkeep needs.
pub struct SqliteWriter {
    conn: Connection,
    db_path: PathBuf,
    retention: retention::Policy,
    /// Train dictionaries and pack span values (`store::codec`).
    pack_values: bool,
    codec: codec::Upkeep,
}

impl SqliteWriter {
    pub fn new(
        conn: Connection,
        db_path: PathBuf,
        retention: retention::Policy,
        pack_values: bool,
    ) -> SqliteWriter {
        if pack_values && let Err(e) = codec::use_newest(&conn) {
            tracing::warn!(error = %e, "cannot load the packing dictionary; span values stay plain");
        }
        SqliteWriter {
            conn,
            db_path,
            retention,
            pack_values,
            codec: Default::default(),
        }
    }

    /// Retention by size only (age is the periodic pass's job).
    fn enforce_size(&mut self, stats: &Stats) {
        let mut policy = self.retention.clone();
        policy.max_age = None;
        run_retention(&self.conn, &self.db_path, &policy, stats);
    }
}

impl StoreWriter for SqliteWriter {
    fn commit(
        &mut self,
        records: &[Record],
        hooks: &[Arc<dyn WriteHook>],
    ) -> Result<WriteOutcome, String> {
        let result = (|| {
            let tx = self.conn.transaction()?;
            let now = now_ns();
            let out = write::write_records_expiring(
                &tx,
                records,
                now,
                self.retention.expire_before(now),
            )?;
            let mut hook_tx = SqliteHookTx(&tx);
            for h in hooks {
                h.in_transaction(&mut hook_tx, records, &out.effects)?;
            }
            tx.commit()?;
            Ok::<_, HookError>(out)
        })();
        result.map_err(|e| match e {
            HookError::Sqlite(e) => describe_write_error(&e),
            e => e.to_string(),
        })
    }

    fn run_job(&mut self, job: Job) {
        match job {
            Job::Sqlite(f) => f(&self.conn),
            Job::Activity(a) => {
                if let Err(e) = super::activity::insert(&self.conn, &a) {
                    tracing::warn!(error = %e, kind = %a.kind, "cannot record activity");
                }
            }
            Job::PatchEvent(p) => {
                let patch = serde_json::Value::Object(p.patch).to_string();
                let res = self.conn.unchecked_transaction().and_then(|tx| {
                    tx.execute(
                        "UPDATE events SET attributes = json_patch(COALESCE(attributes, '{}'), ?1)
                         WHERE uid = ?2",
                        rusqlite::params![patch, p.uid],
                    )?;
                    // The chain sees the row changed in place.
                    super::audit::seal(&tx, "delete")?;
                    tx.commit()
                });
                if let Err(e) = res {
                    tracing::warn!(error = %e, "cannot update a stored event; will retry");
                    (p.on_failure)();
                }
            }
        }
    }

    /// Checks the size cap after every commit; cheap (two stat calls). Also the
    /// packing dictionaries' upkeep, which is cheap but when it has work.
    fn upkeep(&mut self, stats: &Stats) {
        if self.pack_values {
            self.codec.tick(&self.conn, now_ns());
        }
        let (db, wal) = file_sizes(&self.db_path);
        let cap = self.retention.max_db_bytes;

        if wal > retention::share(cap, retention::WAL_MAX_PCT) {
            let _ = retention::checkpoint(&self.conn, true);
        }
        // Past half the cap, look at live pages (two header reads) to decide.
        if db + wal > cap / 2 {
            let live = retention::live_bytes(&self.conn).unwrap_or(u64::MAX);
            if live > retention::share(cap, retention::LIVE_HIGH_PCT)
                || db + wal > retention::share(cap, retention::FORCE_PCT)
            {
                self.enforce_size(stats);
            }
        }
    }

    /// Space may be recoverable by retention (our own old rows).
    fn after_failure(&mut self, stats: &Stats) {
        self.enforce_size(stats);
    }

    /// Drained: leave a compact, checkpointed database behind.
    fn finish(&mut self) {
        if let Err(e) = retention::checkpoint(&self.conn, true) {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
    }
}

/// Runs retention and records what it did.
pub fn run_retention(
    conn: &Connection,
    db_path: &std::path::Path,
    policy: &retention::Policy,
    stats: &Stats,
) -> Option<retention::Report> {
    match retention::run(conn, db_path, policy, now_ns()) {
        Ok(r) => {
            if r.deleted > 0 {
                stats
                    .retention_deleted
                    .fetch_add(r.deleted, Ordering::Relaxed);
                stats
                    .retention_unshipped_deleted
                    .fetch_add(r.unshipped_deleted, Ordering::Relaxed);
                if r.unshipped_deleted > 0 {
                    tracing::warn!(
                        deleted = r.deleted,
                        unshipped = r.unshipped_deleted,
                        "retention deleted rows a sink had not shipped yet"
                    );
                } else {
                    tracing::info!(
                        deleted = r.deleted,
                        by_age = r.by_age,
                        by_size = r.by_size,
                        "retention"
                    );
                }
            }
            Some(r)
        }
        Err(e) => {
            tracing::warn!(error = %e, "retention failed; will retry");
            None
        }
    }
}

/// The hooks' writes in a SQLite batch's transaction.
pub struct SqliteHookTx<'a, 'c>(pub &'a rusqlite::Transaction<'c>);

impl HookTx for SqliteHookTx<'_, '_> {
    fn sqlite(&self) -> Option<&rusqlite::Transaction<'_>> {
        Some(self.0)
    }

    fn claim_alert(&mut self, c: &AlertClaim) -> Result<bool, HookError> {
        let claimed = self.0.prepare_cached(
            "INSERT INTO budget_alerts (budget, period, threshold, spent, limit_value, fired_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )?
        .execute(rusqlite::params![c.key, c.period, c.threshold, c.spent, c.limit, c.time_ns])?;
        Ok(claimed > 0)
    }

    fn store_event(&mut self, event: crate::model::Event) -> Result<(), HookError> {
        write::write_records(self.0, &[Record::Event(Box::new(event))], now_ns())?;
        Ok(())
    }

    fn queue_alert(&mut self, payload: &serde_json::Value) -> Result<(), HookError> {
        self.0
            .prepare_cached(
                "INSERT INTO alert_outbox (created_ns, kind, payload) VALUES (?1, ?2, ?3)",
            )?
            .execute(rusqlite::params![
                now_ns(),
                payload["type"].as_str().unwrap_or("alert"),
                payload.to_string()
            ])?;
        Ok(())
    }
}

fn describe_write_error(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => format!("disk full: {e}"),
        Some(rusqlite::ErrorCode::ReadOnly) | Some(rusqlite::ErrorCode::CannotOpen) => {
            format!("database not writable: {e}")
        }
        _ => e.to_string(),
    }
}
