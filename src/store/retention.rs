//! Retention: by age, by the database's size and by the volume's fullness.
//! Oldest first, in small batches, space given back by incremental vacuum.
//! Rows some sink has not shipped yet are deleted last, and counted when they are.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::schema::DATA_TABLES;
use super::{file_sizes, volume_space};

/// Rows per delete transaction: small, so ingest never waits long and the WAL stays small.
const AGE_BATCH: i64 = 500;
const SIZE_BATCH: i64 = 100;

/// How the size cap is shared, in percent of it. Size retention starts when the live
/// pages pass `LIVE_HIGH_PCT` and deletes the oldest rows down to `LIVE_LOW_PCT`; the
/// file keeps at most `FILE_MAX_PCT` (freed pages above it go back to the volume); the
/// WAL is checkpointed past `WAL_MAX_PCT`. File and WAL at their most leave 8 % for the
/// commit that lands between two checks; past `FORCE_PCT` of the cap a pass runs whatever
/// the live pages say. (Until #20 these were 60, 50, 70, 25 and 90: about 55 % of the cap
/// held data; now about 71 %.)
pub const LIVE_HIGH_PCT: u64 = 75;
pub const LIVE_LOW_PCT: u64 = 68;
pub const FILE_MAX_PCT: u64 = 80;
pub const WAL_MAX_PCT: u64 = 12;
pub const FORCE_PCT: u64 = 95;

/// `pct` percent of `bytes`.
pub fn share(bytes: u64, pct: u64) -> u64 {
    bytes / 100 * pct
}

/// What retention must hold to.
#[derive(Clone, Debug)]
pub struct Policy {
    pub max_age: Option<Duration>,
    /// Database plus WAL stays under this many bytes.
    pub max_db_bytes: u64,
    /// Percent of the volume in use above which old data is deleted.
    pub disk_threshold_pct: f64,
    /// Sinks whose cursors hold rows back (only those enabled in this run).
    pub active_sinks: Vec<String>,
}

impl Policy {
    /// Records older than this when they arrive need not be stored: age retention
    /// would delete them at its next pass. None when age retention is off, or when a
    /// sink is enabled (it must ship them first: age retention waits for it).
    pub fn expire_before(&self, now_ns: i64) -> Option<i64> {
        let age = self.max_age.filter(|a| !a.is_zero())?;
        self.active_sinks
            .is_empty()
            .then(|| now_ns - age.as_nanos() as i64)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub deleted: u64,
    pub unshipped_deleted: u64,
    pub by_age: u64,
    pub by_size: u64,
}

/// The highest row id every active sink has shipped, per table (everything when no sink is active).
pub fn shipped_upto(conn: &Connection, table: &str, sinks: &[String]) -> rusqlite::Result<i64> {
    let mut lowest = i64::MAX;
    for sink in sinks {
        let last: Option<i64> = conn
            .query_row(
                "SELECT last_id FROM sink_cursors WHERE sink = ?1 AND tbl = ?2",
                params![sink, table],
                |r| r.get(0),
            )
            .ok();
        lowest = lowest.min(last.unwrap_or(0));
    }
    Ok(lowest)
}

/// Bytes of the database's pages in use (free pages excluded).
pub fn live_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * page_size) as u64)
}

/// Live bytes of the database plus the WAL file.
pub fn used_bytes(conn: &Connection, db_path: &Path) -> rusqlite::Result<u64> {
    Ok(live_bytes(conn)? + file_sizes(db_path).1)
}

/// Binds ?1 (shipped id) and, when the filter uses it, ?2 (time cutoff).
fn filter_params(stmt: &rusqlite::Statement, shipped: i64, cutoff: i64) -> Vec<i64> {
    if stmt.parameter_count() >= 2 {
        vec![shipped, cutoff]
    } else {
        vec![shipped]
    }
}

/// Deletes up to `BATCH` rows of `table` matching `filter` (which may use ?1 = shipped id, ?2 = cutoff).
fn delete_batch(
    conn: &Connection,
    table: &str,
    filter: &str,
    shipped: i64,
    cutoff: i64,
    limit: i64,
) -> rusqlite::Result<u64> {
    let tx = conn.unchecked_transaction()?;
    let mut note = super::audit::PruneNote::default();
    let n = if table == ROLLUPS {
        tx.prepare_cached(&format!(
            "DELETE FROM {ROLLUPS} WHERE (bucket_ns, name, attributes) IN (
                 SELECT bucket_ns, name, attributes FROM {ROLLUPS} ORDER BY bucket_ns LIMIT {limit})"
        ))?
        .execute([])? as u64
    } else if table == "spans" {
        // Traces whose last span goes go too.
        let mut stmt = tx.prepare_cached(&format!(
            "DELETE FROM spans WHERE id IN (SELECT id FROM spans WHERE {filter} ORDER BY id LIMIT {limit}) RETURNING trace_id, start_ns"
        ))?;
        let p = filter_params(&stmt, shipped, cutoff);
        let ids: Vec<(Vec<u8>, i64)> = stmt
            .query_map(rusqlite::params_from_iter(p), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        let mut gone = tx.prepare_cached(
            "DELETE FROM traces WHERE trace_id = ?1 AND NOT EXISTS (SELECT 1 FROM spans WHERE trace_id = ?1)",
        )?;
        let mut seen = std::collections::HashSet::new();
        for (id, start) in &ids {
            note.max_start_ns = note.max_start_ns.max(Some(*start));
            // A trace left with some of its spans: its summary still counts those gone.
            if seen.insert(id.as_slice()) && gone.execute([id])? == 0 {
                note.partial_traces.push(crate::util::hex::encode(id));
            }
        }
        ids.len() as u64
    } else {
        let mut stmt = tx.prepare_cached(&format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {filter} ORDER BY id LIMIT {limit})"
        ))?;
        let p = filter_params(&stmt, shipped, cutoff);
        stmt.execute(rusqlite::params_from_iter(p))? as u64
    };
    // The chain records what went, in the same transaction.
    super::audit::seal_with(&tx, "prune", Some(&note))?;
    tx.commit()?;
    Ok(n)
}

/// The table whose oldest row (by arrival) is oldest, among rows passing `filter`;
/// `with_rollups` in the shipped phase (rollups are never shipped).
fn oldest_table(
    conn: &Connection,
    filter: &str,
    with_rollups: bool,
    sinks: &[String],
) -> rusqlite::Result<Option<(&'static str, i64)>> {
    let mut best: Option<(&'static str, i64, i64)> = None;
    for (table, time_col) in DATA_TABLES {
        let shipped = shipped_upto(conn, table, sinks)?;
        let t: Option<i64> = conn
            .query_row(
                &format!("SELECT {time_col} FROM {table} WHERE {filter} ORDER BY id LIMIT 1"),
                [shipped],
                |r| r.get(0),
            )
            .ok();
        if let Some(t) = t
            && best.is_none_or(|(_, bt, _)| t < bt)
        {
            best = Some((table, t, shipped));
        }
    }
    // Rollups are never shipped: they compete with shipped rows, by their bucket's time.
    // Without this, with age retention off they would grow past any cap.
    if with_rollups {
        let t: Option<i64> =
            conn.query_row(&format!("SELECT min(bucket_ns) FROM {ROLLUPS}"), [], |r| {
                r.get(0)
            })?;
        if let Some(t) = t
            && best.is_none_or(|(_, bt, _)| t < bt)
        {
            best = Some((ROLLUPS, t, 0));
        }
    }
    Ok(best.map(|(t, _, s)| (t, s)))
}

/// Host metric rollups (see `store::rollup`), deleted oldest bucket first when over the cap.
const ROLLUPS: &str = "metric_rollups";

/// How many bytes the database may use now: the configured cap, lowered while
/// the volume is fuller than the threshold (but never below a tenth of the cap,
/// so a disk filled by something else does not wipe all history).
fn target_bytes(conn: &Connection, db_path: &Path, p: &Policy) -> rusqlite::Result<u64> {
    let mut target = p.max_db_bytes;
    if let Some((free, total)) = volume_space(db_path)
        && total > 0
    {
        let used = total - free.min(total);
        let allowed = (p.disk_threshold_pct / 100.0 * total as f64) as u64;
        if used > allowed {
            let over = used - allowed;
            let live = used_bytes(conn, db_path)?;
            target = target.min(live.saturating_sub(over).max(p.max_db_bytes / 10));
        }
    }
    Ok(target)
}

/// Runs age and size retention, then gives space back.
pub fn run(conn: &Connection, db_path: &Path, p: &Policy, now_ns: i64) -> rusqlite::Result<Report> {
    let mut report = Report::default();
    super::span_changes::prune(conn, &p.active_sinks)?;
    // Age: only rows every sink has shipped; unshipped ones wait for the size limit.
    if let Some(age) = p.max_age.filter(|a| !a.is_zero()) {
        let cutoff = now_ns - age.as_nanos() as i64;
        for (table, time_col) in DATA_TABLES {
            // Through the time index: without this check the delete below walks
            // the whole table by id (and through the page cache) to find nothing.
            let any_old = conn
                .query_row(
                    &format!("SELECT 1 FROM {table} WHERE {time_col} < ?1 LIMIT 1"),
                    [cutoff],
                    |_| Ok(()),
                )
                .optional()?;
            if any_old.is_none() {
                continue;
            }
            let shipped = shipped_upto(conn, table, &p.active_sinks)?;
            loop {
                let n = delete_batch(
                    conn,
                    table,
                    &format!("id <= ?1 AND {time_col} < ?2"),
                    shipped,
                    cutoff,
                    AGE_BATCH,
                )?;
                report.by_age += n;
                if n < AGE_BATCH as u64 {
                    break;
                }
            }
        }
    }
    // Size: keep live data under the cap with room for the file's free pages (which
    // it reuses) and the WAL. Shipped rows first, then unshipped ones (counted).
    let target = target_bytes(conn, db_path, p)?;
    let (high, low) = (share(target, LIVE_HIGH_PCT), share(target, LIVE_LOW_PCT));
    if live_bytes(conn)? > high {
        'phases: for (filter, unshipped) in [("id <= ?1", false), ("id > ?1", true)] {
            while live_bytes(conn)? > low {
                let Some((table, shipped)) =
                    oldest_table(conn, filter, !unshipped, &p.active_sinks)?
                else {
                    continue 'phases;
                };
                let n = delete_batch(conn, table, filter, shipped, 0, SIZE_BATCH)?;
                if n == 0 {
                    continue 'phases;
                }
                report.by_size += n;
                if unshipped {
                    report.unshipped_deleted += n;
                }
                keep_wal_small(conn, db_path, target)?;
            }
            break;
        }
    }
    // Give space back to the volume only when the file itself is too big, in
    // small steps so the WAL never balloons.
    shrink_file(conn, db_path, share(target, FILE_MAX_PCT))?;
    report.deleted = report.by_age + report.by_size;
    if report.deleted > 0 {
        super::audit::trim(conn)?;
        clamp_cursors(conn)?;
        checkpoint(conn, true)?;
        let tx = conn.unchecked_transaction()?;
        super::write::bump_counter(&tx, "retention_deleted", report.deleted as i64)?;
        super::write::bump_counter(
            &tx,
            "retention_unshipped_deleted",
            report.unshipped_deleted as i64,
        )?;
        tx.commit()?;
    }
    Ok(report)
}

/// Row ids are reused once a table's newest rows are gone (an idle agent past
/// the retention age empties its tables). A cursor beyond the table's end would
/// then skip the new rows, so it is brought back to the end; runs on the writer,
/// before any new row is inserted.
fn clamp_cursors(conn: &Connection) -> rusqlite::Result<()> {
    for (table, _) in DATA_TABLES {
        conn.execute(
            &format!(
                "UPDATE sink_cursors SET last_id = (SELECT COALESCE(MAX(id), 0) FROM {table})
                 WHERE (tbl = ?1 OR substr(tbl, 1, length(?1) + 1) = ?1 || '#')
                   AND last_id > (SELECT COALESCE(MAX(id), 0) FROM {table})"
            ),
            [table],
        )?;
    }
    Ok(())
}

/// Checkpoints once the WAL holds more than its share of the target.
fn keep_wal_small(conn: &Connection, db_path: &Path, target: u64) -> rusqlite::Result<()> {
    if file_sizes(db_path).1 > share(target, WAL_MAX_PCT) {
        checkpoint(conn, true)?;
    }
    Ok(())
}

/// Returns free pages to the file system until the file is at most `max_file` bytes.
fn shrink_file(conn: &Connection, db_path: &Path, max_file: u64) -> rusqlite::Result<()> {
    let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u64;
    let step = (max_file / 16 / page_size.max(1)).max(16);
    for _ in 0..10_000 {
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        if free == 0 || file_sizes(db_path).0 <= max_file {
            break;
        }
        // Each step of this pragma frees one page: step it to the end.
        let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({step})"))?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        drop(rows);
        drop(stmt);
        checkpoint(conn, true)?;
    }
    Ok(())
}

/// Checkpoints the WAL; `truncate` also shrinks its file to zero.
pub fn checkpoint(conn: &Connection, truncate: bool) -> rusqlite::Result<()> {
    let mode = if truncate { "TRUNCATE" } else { "PASSIVE" };
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollups_are_held_to_the_size_cap_with_age_retention_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let conn = crate::store::open_writer(&path).unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        let attrs = format!("{{\"device\":\"{}\"}}", "d".repeat(200));
        for bucket in 0..40_000i64 {
            tx.execute(
                "INSERT INTO metric_rollups (name, attributes, bucket_ns, step_ns, unit, kind,
                     source, count, sum, min, max, last, last_ns)
                 VALUES ('system.cpu.utilization', ?1, ?2, 300, '1', 'gauge', 'host', 1, 1, 1, 1, 1, ?2)",
                params![attrs, bucket * 300],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        checkpoint(&conn, true).unwrap();
        let cap = 2 << 20;
        assert!(live_bytes(&conn).unwrap() > 4 * cap);
        let policy = Policy {
            max_age: None,
            max_db_bytes: cap,
            disk_threshold_pct: 100.0,
            active_sinks: Vec::new(),
        };
        let report = run(&conn, &path, &policy, 0).unwrap();
        assert!(report.by_size > 0);
        let (file, wal) = file_sizes(&path);
        assert!(
            file + wal <= cap,
            "{file} + {wal} bytes over a cap of {cap}"
        );
        // Oldest first: the newest bucket is still there, the first is gone.
        let (min, max): (i64, i64) = conn
            .query_row(
                "SELECT min(bucket_ns), max(bucket_ns) FROM metric_rollups",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(min > 0);
        assert_eq!(max, 39_999 * 300);
    }

    #[test]
    fn size_retention_keeps_rows_in_68_to_75_percent_of_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let conn = crate::store::open_writer(&path).unwrap();
        let cap: u64 = 8 << 20;
        let text = "w".repeat(300);
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..30_000i64 {
            tx.execute(
                "INSERT INTO spans (trace_id, span_id, name, kind, start_ns, status, input_text,
                     source, received_ns)
                 VALUES (?1, ?2, 'chat', 'client', ?3, 'ok', ?4, 'test', ?3)",
                params![(i as u128).to_be_bytes(), i.to_be_bytes(), i, text],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        checkpoint(&conn, true).unwrap();
        assert!(live_bytes(&conn).unwrap() > share(cap, LIVE_HIGH_PCT));
        let policy = Policy {
            max_age: None,
            max_db_bytes: cap,
            disk_threshold_pct: 100.0,
            active_sinks: Vec::new(),
        };
        assert!(run(&conn, &path, &policy, 0).unwrap().by_size > 0);
        let live = live_bytes(&conn).unwrap();
        // Down to 68 % (README), within a batch of small rows: history the cap can hold
        // is not thrown away (the marks were 50 to 60 % before).
        assert!(
            live <= share(cap, 68) && live > share(cap, 65),
            "live {live} of a cap of {cap}"
        );
        let (file, wal) = file_sizes(&path);
        assert!(
            file <= share(cap, FILE_MAX_PCT) && file + wal <= cap,
            "{file} + {wal}"
        );
        // The newest rows are kept.
        let newest: i64 = conn
            .query_row("SELECT max(start_ns) FROM spans", [], |r| r.get(0))
            .unwrap();
        assert_eq!(newest, 29_999);
    }
}
