//! Downsampling: host metric points older than a raw window are rolled into one
//! row per series and step (count, sum, min, max, last, and for running totals
//! the increase), then deleted. `metric_query::series` reads both, so a query
//! spanning the window sees one continuous series.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rusqlite::{Connection, params};

/// Raw points rolled per run at most, so the writer is never held long; a run
/// that hits it reports a backlog and the caller runs again soon.
pub const MAX_ROWS_PER_RUN: usize = 20_000;
/// Rollup rows deleted per statement by age.
const AGE_BATCH: i64 = 1_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Points younger than this stay raw.
    pub raw_window: Duration,
    /// The rollup's resolution.
    pub step: Duration,
    /// Rollups older than this are deleted (`None`: kept).
    pub max_age: Option<Duration>,
    /// Only raw rows with an id at most this (shipped by every active sink) are rolled.
    pub shipped_upto: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Raw points rolled (and deleted).
    pub rolled: u64,
    /// Rollup rows written or updated.
    pub buckets: u64,
    /// Rollup rows deleted by age.
    pub expired: u64,
    /// More raw points wait past the window: run again soon.
    pub backlog: bool,
}

/// One series' aggregate over one step.
#[derive(Clone, Debug, PartialEq)]
struct Agg {
    count: i64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
    last_ns: i64,
    increase: f64,
    increase_secs: f64,
}

/// Series identity and description, as the raw rows carry them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    name: String,
    attributes: String,
}

struct SeriesMeta {
    unit: String,
    kind: String,
    temporality: Option<String>,
    monotonic: Option<i64>,
    source: String,
    /// The point before this run's first one (time, value), for running totals.
    prev: Option<(i64, f64)>,
    buckets: BTreeMap<i64, Agg>,
}

/// Rolls host points older than the raw window into `metric_rollups`, deletes
/// them, and expires old rollups; one transaction.
pub fn run(conn: &Connection, p: &Policy, now_ns: i64) -> rusqlite::Result<Report> {
    let step = (p.step.as_nanos() as i64).max(1_000_000);
    // Only whole steps: a bucket is rolled once every point in it is past the window.
    let cutoff = (now_ns - p.raw_window.as_nanos() as i64).div_euclid(step) * step;
    let tx = conn.unchecked_transaction()?;
    let mut report = Report::default();
    let mut series: HashMap<SeriesKey, SeriesMeta> = HashMap::new();
    let mut ids = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, name, COALESCE(attributes, ''), time_ns, value, unit, kind, temporality,
                    monotonic, source
             FROM metric_points
             WHERE source = 'host' AND time_ns < ?1 AND id <= ?2
               AND kind IN ('gauge', 'sum') AND value IS NOT NULL
             ORDER BY time_ns, id LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![cutoff, p.shipped_upto, MAX_ROWS_PER_RUN as i64 + 1])?;
        while let Some(r) = rows.next()? {
            if ids.len() == MAX_ROWS_PER_RUN {
                report.backlog = true;
                break;
            }
            ids.push(r.get::<_, i64>(0)?);
            let key = SeriesKey {
                name: r.get(1)?,
                attributes: r.get(2)?,
            };
            let t: i64 = r.get(3)?;
            let v: f64 = r.get(4)?;
            let meta = match series.entry(key) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let temporality: Option<String> = r.get(7)?;
                    let monotonic: Option<i64> = r.get(8)?;
                    let prev = if is_running_total(&temporality, monotonic) {
                        last_rolled(&tx, slot.key())?
                    } else {
                        None
                    };
                    slot.insert(SeriesMeta {
                        unit: r.get(5)?,
                        kind: r.get(6)?,
                        temporality,
                        monotonic,
                        source: r.get(9)?,
                        prev,
                        buckets: BTreeMap::new(),
                    })
                }
            };
            let running_total = is_running_total(&meta.temporality, meta.monotonic);
            let (mut increase, mut increase_secs) = (0.0, 0.0);
            if running_total {
                if let Some((pt, pv)) = meta.prev
                    && t > pt
                {
                    // A drop means the counter restarted from zero (as the raw query reads it).
                    increase = if v >= pv { v - pv } else { v };
                    increase_secs = (t - pt) as f64 / 1e9;
                }
                meta.prev = Some((t, v));
            }
            let agg = meta
                .buckets
                .entry(t.div_euclid(step) * step)
                .or_insert(Agg {
                    count: 0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    last: v,
                    last_ns: t,
                    increase: 0.0,
                    increase_secs: 0.0,
                });
            agg.count += 1;
            agg.sum += v;
            agg.min = agg.min.min(v);
            agg.max = agg.max.max(v);
            if t >= agg.last_ns {
                agg.last = v;
                agg.last_ns = t;
            }
            agg.increase += increase;
            agg.increase_secs += increase_secs;
        }
    }
    {
        // A bucket rolled in two runs (a run's row limit, a sink catching up) is merged.
        let mut upsert = tx.prepare_cached(
            "INSERT INTO metric_rollups (name, attributes, bucket_ns, step_ns, unit, kind,
                 temporality, monotonic, source, count, sum, min, max, last, last_ns,
                 increase, increase_secs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT (bucket_ns, name, attributes) DO UPDATE SET
                 count = count + excluded.count,
                 sum = sum + excluded.sum,
                 min = min(min, excluded.min),
                 max = max(max, excluded.max),
                 last = CASE WHEN excluded.last_ns >= last_ns THEN excluded.last ELSE last END,
                 last_ns = max(last_ns, excluded.last_ns),
                 increase = increase + excluded.increase,
                 increase_secs = increase_secs + excluded.increase_secs",
        )?;
        for (key, meta) in &series {
            let running_total = is_running_total(&meta.temporality, meta.monotonic);
            for (bucket, a) in &meta.buckets {
                upsert.execute(params![
                    key.name,
                    key.attributes,
                    bucket,
                    step,
                    meta.unit,
                    meta.kind,
                    meta.temporality,
                    meta.monotonic,
                    meta.source,
                    a.count,
                    a.sum,
                    a.min,
                    a.max,
                    a.last,
                    a.last_ns,
                    running_total.then_some(a.increase),
                    running_total.then_some(a.increase_secs),
                ])?;
                report.buckets += 1;
            }
        }
        let mut delete = tx.prepare_cached("DELETE FROM metric_points WHERE id = ?1")?;
        for id in &ids {
            delete.execute([id])?;
        }
        report.rolled = ids.len() as u64;
    }
    if let Some(age) = p.max_age.filter(|a| !a.is_zero()) {
        let oldest = now_ns - age.as_nanos() as i64;
        report.expired = tx.execute(
            "DELETE FROM metric_rollups WHERE (bucket_ns, name, attributes) IN (
                 SELECT bucket_ns, name, attributes FROM metric_rollups
                 WHERE bucket_ns < ?1 LIMIT ?2)",
            params![oldest, AGE_BATCH],
        )? as u64;
        report.backlog |= report.expired == AGE_BATCH as u64;
    }
    tx.commit()?;
    Ok(report)
}

fn is_running_total(temporality: &Option<String>, monotonic: Option<i64>) -> bool {
    temporality.as_deref() == Some("cumulative") && monotonic == Some(1)
}

/// A series' last rolled point (time, value): where its next increase starts.
fn last_rolled(conn: &Connection, key: &SeriesKey) -> rusqlite::Result<Option<(i64, f64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT last_ns, last FROM metric_rollups WHERE name = ?1 AND attributes = ?2
         ORDER BY bucket_ns DESC LIMIT 1",
    )?;
    let mut rows = stmt.query(params![key.name, key.attributes])?;
    match rows.next()? {
        Some(r) => Ok(Some((r.get(0)?, r.get(1)?))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricKind, MetricPoint, Record};
    use crate::store::metric_query::{SeriesQuery, series};
    use serde_json::json;

    const S: i64 = 1_000_000_000;

    fn insert(conn: &mut Connection, points: Vec<MetricPoint>) {
        let tx = conn.transaction().unwrap();
        let recs: Vec<Record> = points
            .into_iter()
            .map(|mut p| {
                p.source = "host";
                Record::Metric(Box::new(p))
            })
            .collect();
        crate::store::write::write_records(&tx, &recs, 0).unwrap();
        tx.commit().unwrap();
    }

    fn points() -> Vec<MetricPoint> {
        let mut pts = Vec::new();
        for i in 0..40i64 {
            let mut g = MetricPoint::gauge("g", "1", i * S, (i % 7) as f64);
            g.attributes.insert("k".into(), json!("a"));
            pts.push(g);
            let mut c = MetricPoint::gauge("c", "By", i * S, (i * 100) as f64);
            c.kind = MetricKind::Sum;
            c.temporality = Some("cumulative");
            c.monotonic = Some(true);
            pts.push(c);
        }
        pts
    }

    /// The same query before and after the rollup gives the same buckets when
    /// the step is a multiple of the rollup's.
    #[test]
    fn rollup_preserves_aggregates_and_rates() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open_writer(&dir.path().join("r.db")).unwrap();
        insert(&mut conn, points());
        let q = |name: &str| SeriesQuery {
            name: name.into(),
            from_ns: 0,
            to_ns: 40 * S,
            step_ns: 10 * S,
            attributes: Default::default(),
        };
        let before_g = series(&conn, &q("g")).unwrap();
        let before_c = series(&conn, &q("c")).unwrap();
        let policy = Policy {
            raw_window: Duration::from_secs(15),
            step: Duration::from_secs(5),
            max_age: None,
            shipped_upto: i64::MAX,
        };
        // "Now" is 40 s: points before 25 s are rolled.
        let r = run(&conn, &policy, 40 * S).unwrap();
        assert_eq!(r.rolled, 50);
        assert_eq!(r.buckets, 10);
        assert!(!r.backlog);
        let raw: i64 = conn
            .query_row("SELECT count(*) FROM metric_points", [], |r| r.get(0))
            .unwrap();
        assert_eq!(raw, 30);
        assert_eq!(series(&conn, &q("g")).unwrap(), before_g);
        assert_eq!(series(&conn, &q("c")).unwrap(), before_c);
        // A second run later rolls the rest, continuing the running total.
        let r = run(&conn, &policy, 60 * S).unwrap();
        assert_eq!(r.rolled, 30);
        assert_eq!(series(&conn, &q("g")).unwrap(), before_g);
        assert_eq!(series(&conn, &q("c")).unwrap(), before_c);
        // Old rollups go by age.
        let aged = Policy {
            max_age: Some(Duration::from_secs(30)),
            ..policy
        };
        let r = run(&conn, &aged, 60 * S).unwrap();
        assert_eq!(r.expired, 12, "buckets before 30 s, two series");
    }

    #[test]
    fn unshipped_points_stay_raw() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open_writer(&dir.path().join("r.db")).unwrap();
        insert(&mut conn, points());
        let policy = Policy {
            raw_window: Duration::from_secs(1),
            step: Duration::from_secs(5),
            max_age: None,
            shipped_upto: 10,
        };
        let r = run(&conn, &policy, 100 * S).unwrap();
        assert_eq!(r.rolled, 10);
    }
}
