//! The spans that changed after they were stored: a piece of a span (OpenClaw's end
//! hook, its usage event, a transcript row...) merged into a row a sink may already have
//! shipped in its first form. Each change is a row here, read by a sink by its own
//! cursor like any table, so a push ships the span again as it is now and a central
//! merges it (`{"type":"span","update":true}`). Written only while a sink reads it
//! (the composer registers [`SpanChangeLog`]); each retention pass deletes the changes
//! every sink has passed ([`prune`]). Ids are never reused (AUTOINCREMENT), so a
//! cursor is never ahead of a new change.

use rusqlite::{Connection, params};

use crate::model::{Record, SpanId, TraceId};
use crate::pipeline::{HookError, HookTx, WriteHook};
use crate::store::StoreError;
use crate::store::write::WriteEffect;

/// Schema 15.
pub const MIGRATION: &str = r#"
    CREATE TABLE span_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        trace_id BLOB NOT NULL,
        span_id BLOB NOT NULL,
        time_ns INTEGER NOT NULL
    );
    CREATE INDEX span_changes_time ON span_changes(time_ns);
"#;

/// Writes a change row for every stored span a batch's pieces merged into.
pub struct SpanChangeLog;

impl WriteHook for SpanChangeLog {
    fn sqlite_only(&self) -> bool {
        true
    }

    fn in_transaction(
        &self,
        tx: &mut dyn HookTx,
        _records: &[Record],
        effects: &[WriteEffect],
    ) -> Result<(), HookError> {
        let changed = || {
            effects.iter().filter_map(|e| match e {
                WriteEffect::Merged(m) => Some(&m.after),
                _ => None,
            })
        };
        if changed().next().is_none() {
            return Ok(());
        }
        let conn = tx.sqlite().ok_or_else(|| {
            HookError::Store("the span change log is kept in the SQLite file".into())
        })?;
        let now = crate::model::now_ns();
        let mut insert = conn.prepare_cached(
            "INSERT INTO span_changes (trace_id, span_id, time_ns) VALUES (?1, ?2, ?3)",
        )?;
        for s in changed() {
            insert.execute(params![&s.trace_id.0[..], &s.span_id.0[..], now])?;
        }
        Ok(())
    }
}

/// Deletes the changes every active sink has passed (all of them with no sink): they
/// are of no more use. Returns how many went.
pub fn prune(conn: &Connection, sinks: &[String]) -> rusqlite::Result<usize> {
    let shipped = crate::store::retention::shipped_upto(conn, "span_changes", sinks)?;
    conn.execute("DELETE FROM span_changes WHERE id <= ?1", [shipped])
}

/// One change read after a cursor: its row id and the span it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub id: i64,
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

/// Up to `limit` changes after row `after`, oldest first; a span changed twice in them
/// appears once, at its last change (what a sink ships is the row as it is now).
pub fn changes_after(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<(Vec<Change>, i64), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, trace_id, span_id FROM span_changes WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let mut last = after;
    let mut read: Vec<Change> = Vec::new();
    let mut rows = stmt.query(params![after, limit as i64])?;
    while let Some(r) = rows.next()? {
        last = r.get(0)?;
        if let (Some(trace_id), Some(span_id)) = (
            TraceId::from_slice(&r.get::<_, Vec<u8>>(1)?),
            SpanId::from_slice(&r.get::<_, Vec<u8>>(2)?),
        ) {
            read.push(Change {
                id: last,
                trace_id,
                span_id,
            });
        }
    }
    // Each span at its last change.
    let latest: std::collections::HashMap<(TraceId, SpanId), i64> = read
        .iter()
        .map(|c| ((c.trace_id, c.span_id), c.id))
        .collect();
    let out = read
        .into_iter()
        .filter(|c| latest[&(c.trace_id, c.span_id)] == c.id)
        .collect();
    Ok((out, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_every_sink_passed_are_pruned_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_writer(&dir.path().join("c.db")).unwrap();
        let add = |n: i64| {
            for _ in 0..n {
                conn.execute(
                    "INSERT INTO span_changes (trace_id, span_id, time_ns) VALUES (zeroblob(16), zeroblob(8), 1)",
                    [],
                )
                .unwrap();
            }
        };
        let left = || -> i64 {
            conn.query_row("SELECT count(*) FROM span_changes", [], |r| r.get(0))
                .unwrap()
        };
        add(5);
        let push = vec!["push".to_string()];
        // The push has not read them yet: all stay.
        assert_eq!(prune(&conn, &push).unwrap(), 0);
        conn.execute(
            "INSERT INTO sink_cursors (sink, tbl, last_id, updated_ns) VALUES ('push', 'span_changes', 3, 0)",
            [],
        )
        .unwrap();
        assert_eq!(prune(&conn, &push).unwrap(), 3);
        assert_eq!(left(), 2);
        // No sink reads them: all go; the next change still gets a new id.
        assert_eq!(prune(&conn, &[]).unwrap(), 2);
        add(1);
        let id: i64 = conn
            .query_row("SELECT max(id) FROM span_changes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, 6);
        let (changes, last) = changes_after(&conn, 5, 10).unwrap();
        assert_eq!((changes.len(), last), (1, 6));
    }
}
