//! Reading metric points: the names stored, one metric's series aggregated per
//! step, and the latest value of a metric (for `status`).

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;
use serde_json::{Map, Value};

use super::StoreError;
use crate::util::time::format_ns;

/// Rows one query may read, at most; a wider range must be narrowed.
pub const MAX_ROWS: usize = 2_000_000;
/// Buckets per series, at most.
pub const MAX_BUCKETS: i64 = 10_000;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MetricName {
    pub name: String,
    pub unit: String,
    pub kind: String,
    pub last_time: String,
    pub last_ns: i64,
}

/// Every metric name stored, with its unit, kind and last sample time.
/// The distinct metric names as `n(name)` (and a last NULL), by a skip scan over the
/// (name, time) index: one seek per name, however many points are stored. The same
/// SQL on SQLite and PostgreSQL.
pub const NAMES_SKIP_SCAN: &str = "WITH RECURSIVE n(name) AS (
         SELECT min(name) FROM metric_points
         UNION ALL
         SELECT (SELECT min(name) FROM metric_points WHERE name > n.name) FROM n
         WHERE n.name IS NOT NULL
     )";

pub fn names(conn: &Connection) -> Result<Vec<MetricName>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "{NAMES_SKIP_SCAN}
         SELECT n.name, p.unit, p.kind, p.time_ns FROM n
         JOIN metric_points p ON p.id = (
             SELECT id FROM metric_points WHERE name = n.name ORDER BY time_ns DESC LIMIT 1)
         WHERE n.name IS NOT NULL ORDER BY n.name"
    ))?;
    let mut all = stmt
        .query_map([], name_row)?
        .collect::<Result<Vec<_>, _>>()?;
    // Metrics whose raw points are all rolled up (host health off for a while) are
    // still stored: list them too, from the rollups (a scan of a small table).
    let mut rolled =
        conn.prepare("SELECT name, unit, kind, max(last_ns) FROM metric_rollups GROUP BY name")?;
    for m in rolled.query_map([], name_row)? {
        let m = m?;
        if let Err(at) = all.binary_search_by(|n: &MetricName| n.name.cmp(&m.name)) {
            all.insert(at, m);
        }
    }
    Ok(all)
}

impl MetricName {
    /// A metric with its unit, kind and last sample time (ns).
    pub fn new(name: String, unit: String, kind: String, last_ns: i64) -> MetricName {
        MetricName {
            name,
            unit,
            kind,
            last_time: format_ns(last_ns),
            last_ns,
        }
    }
}

/// A name row: name, unit, kind, last sample time.
fn name_row(r: &rusqlite::Row) -> rusqlite::Result<MetricName> {
    Ok(MetricName::new(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesQuery {
    pub name: String,
    pub from_ns: i64,
    pub to_ns: i64,
    pub step_ns: i64,
    /// Only series whose attributes hold these values (compared as text).
    pub attributes: BTreeMap<String, String>,
}

/// One step of one series.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Bucket {
    pub time: String,
    pub time_ns: i64,
    pub count: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    /// The bucket's latest value.
    pub last: f64,
    /// For running totals (cumulative sums): increase per second over the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Series {
    pub attributes: Value,
    pub points: Vec<Bucket>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SeriesResult {
    pub name: String,
    pub unit: Option<String>,
    pub kind: Option<String>,
    pub from: String,
    pub to: String,
    pub step_seconds: f64,
    pub series: Vec<Series>,
}

/// A series' buckets, and its previous point (time, value) for rates.
type SeriesAcc = (BTreeMap<i64, Acc>, Option<(i64, f64)>);

/// One series at one moment: its attributes, value and time.
pub type LatestPoint = (Map<String, Value>, f64, i64);

struct Acc {
    bucket: Bucket,
    increase: f64,
    increase_secs: f64,
}

/// Checks a series query's range and step (the same on every store).
pub fn check(q: &SeriesQuery) -> Result<(), StoreError> {
    if q.step_ns <= 0 || q.to_ns <= q.from_ns {
        return Err(StoreError::BadRequest(
            "step: must be positive, with from before to".into(),
        ));
    }
    if (q.to_ns - q.from_ns) / q.step_ns > MAX_BUCKETS {
        return Err(StoreError::BadRequest(format!(
            "step: too small for the range (more than {MAX_BUCKETS} steps)"
        )));
    }
    Ok(())
}

/// One row a store reads for a series: a raw point (a rollup of one) or a rollup.
pub struct PointRow {
    /// The series' attributes as JSON ('' when none).
    pub attributes: String,
    pub time_ns: i64,
    pub count: u64,
    /// Sum, min, max and latest of the values (`None`: a point without a value).
    pub total: Option<f64>,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    pub last_ns: i64,
    /// A rollup of a running total: its increase and the seconds it took.
    pub rolled_increase: Option<(f64, f64)>,
    pub unit: String,
    pub kind: String,
    /// A cumulative monotonic sum: its buckets get a rate.
    pub running_total: bool,
}

/// Aggregates a series query's rows (in time order) per series and step.
pub struct SeriesBuilder<'a> {
    q: &'a SeriesQuery,
    unit: Option<String>,
    kind: Option<String>,
    /// Per series: its buckets, and its previous point for rates.
    by_series: BTreeMap<String, SeriesAcc>,
    rows: usize,
}

impl<'a> SeriesBuilder<'a> {
    pub fn new(q: &'a SeriesQuery) -> SeriesBuilder<'a> {
        SeriesBuilder {
            q,
            unit: None,
            kind: None,
            by_series: BTreeMap::new(),
            rows: 0,
        }
    }

    pub fn push(&mut self, r: PointRow) -> Result<(), StoreError> {
        let q = self.q;
        self.rows += 1;
        if self.rows > MAX_ROWS {
            return Err(StoreError::BadRequest(format!(
                "from: the range holds more than {MAX_ROWS} points; narrow from/to"
            )));
        }
        let Some(total) = r.total else {
            return Ok(());
        };
        if self.unit.is_none() {
            self.unit = Some(r.unit);
            self.kind = Some(r.kind);
        }
        if !q.attributes.is_empty() && !matches_attributes(&r.attributes, &q.attributes) {
            return Ok(());
        }
        let (t, v) = (r.time_ns, r.last);
        let b = q.from_ns + (t - q.from_ns) / q.step_ns * q.step_ns;
        let (buckets, prev) = self.by_series.entry(r.attributes).or_default();
        let acc = buckets.entry(b).or_insert_with(|| Acc {
            bucket: Bucket {
                time: format_ns(b),
                time_ns: b,
                count: 0,
                avg: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                last: v,
                rate: None,
            },
            increase: 0.0,
            increase_secs: 0.0,
        });
        let bk = &mut acc.bucket;
        bk.count += r.count;
        bk.avg += total;
        bk.min = bk.min.min(r.min);
        bk.max = bk.max.max(r.max);
        bk.last = v;
        if r.running_total {
            if let Some((inc, secs)) = r.rolled_increase {
                acc.increase += inc;
                acc.increase_secs += secs;
            } else if let Some((pt, pv)) = *prev
                && t > pt
            {
                // A drop means the counter restarted from zero.
                acc.increase += if v >= pv { v - pv } else { v };
                acc.increase_secs += (t - pt) as f64 / 1e9;
            }
            *prev = Some((r.last_ns, v));
        }
        Ok(())
    }

    pub fn finish(self) -> SeriesResult {
        let q = self.q;
        let series = self
            .by_series
            .into_iter()
            .map(|(attrs, (buckets, prev))| Series {
                attributes: serde_json::from_str(&attrs).unwrap_or(Value::Object(Map::new())),
                points: buckets
                    .into_values()
                    .map(|mut a| {
                        a.bucket.avg /= a.bucket.count.max(1) as f64;
                        if prev.is_some() && a.increase_secs > 0.0 {
                            a.bucket.rate = Some(a.increase / a.increase_secs);
                        }
                        a.bucket
                    })
                    .collect(),
            })
            .collect();
        SeriesResult {
            name: q.name.clone(),
            unit: self.unit,
            kind: self.kind,
            from: format_ns(q.from_ns),
            to: format_ns(q.to_ns),
            step_seconds: q.step_ns as f64 / 1e9,
            series,
        }
    }
}

/// One metric between `from` and `to`, each series (distinct attributes) aggregated per step.
pub fn series(conn: &Connection, q: &SeriesQuery) -> Result<SeriesResult, StoreError> {
    check(q)?;
    // Raw points and, before them, rollups of older ones (see `rollup`): a raw
    // point is a rollup of one.
    let mut stmt = conn.prepare(
        "SELECT attributes, time_ns, n, total, lo, hi, last, last_ns, increase, increase_secs,
                unit, kind, temporality, monotonic
         FROM (
             SELECT attributes, bucket_ns AS time_ns, count AS n, sum AS total, min AS lo,
                    max AS hi, last, last_ns, increase, increase_secs, unit, kind,
                    temporality, monotonic, 0 AS id
             FROM metric_rollups WHERE name = ?1 AND bucket_ns >= ?2 AND bucket_ns < ?3
             UNION ALL
             SELECT attributes, time_ns, 1, v, v, v, v, time_ns, NULL, NULL, unit, kind,
                    temporality, monotonic, id
             FROM (SELECT attributes, time_ns, unit, kind, temporality, monotonic, id,
                          COALESCE(value, CASE WHEN count > 0 THEN sum / count END) AS v
                   FROM metric_points WHERE name = ?1 AND time_ns >= ?2 AND time_ns < ?3)
         )
         ORDER BY time_ns, id LIMIT ?4",
    )?;
    let mut rows = stmt.query(rusqlite::params![
        q.name,
        q.from_ns,
        q.to_ns,
        MAX_ROWS as i64 + 1
    ])?;
    let mut out = SeriesBuilder::new(q);
    while let Some(r) = rows.next()? {
        let total: Option<f64> = r.get(3)?;
        out.push(PointRow {
            attributes: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            time_ns: r.get(1)?,
            count: r.get::<_, i64>(2)?.max(0) as u64,
            total,
            min: r.get::<_, Option<f64>>(4)?.unwrap_or_default(),
            max: r.get::<_, Option<f64>>(5)?.unwrap_or_default(),
            last: r.get::<_, Option<f64>>(6)?.unwrap_or_default(),
            last_ns: r.get(7)?,
            rolled_increase: match (r.get(8)?, r.get(9)?) {
                (Some(inc), Some(secs)) => Some((inc, secs)),
                _ => None,
            },
            unit: r.get(10)?,
            kind: r.get(11)?,
            running_total: r.get::<_, Option<String>>(12)?.as_deref() == Some("cumulative")
                && r.get::<_, Option<i64>>(13)? == Some(1),
        })?;
    }
    Ok(out.finish())
}

fn matches_attributes(json: &str, want: &BTreeMap<String, String>) -> bool {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(json) else {
        return false;
    };
    want.iter().all(|(k, v)| match m.get(k) {
        Some(Value::String(s)) => s == v,
        // Numbers and booleans: the wanted text read as JSON.
        Some(other) => serde_json::from_str::<Value>(v).is_ok_and(|w| w == *other),
        None => false,
    })
}

/// The latest sample of a metric since `since_ns`: every series at that moment.
pub fn latest(
    conn: &Connection,
    name: &str,
    since_ns: i64,
) -> Result<Vec<LatestPoint>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT attributes, value, time_ns FROM metric_points
         WHERE name = ?1 AND time_ns = (SELECT max(time_ns) FROM metric_points
                                        WHERE name = ?1 AND time_ns >= ?2)
           AND value IS NOT NULL",
    )?;
    let rows = stmt
        .query_map(rusqlite::params![name, since_ns], |r| {
            let a: Option<String> = r.get(0)?;
            let attrs = a
                .and_then(|a| serde_json::from_str::<Map<String, Value>>(&a).ok())
                .unwrap_or_default();
            Ok((attrs, r.get::<_, f64>(1)?, r.get::<_, i64>(2)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricKind, MetricPoint, Record};
    use serde_json::json;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_writer(&dir.path().join("m.db")).unwrap();
        (dir, conn)
    }

    fn insert(conn: &mut Connection, points: Vec<MetricPoint>) {
        let tx = conn.transaction().unwrap();
        let recs: Vec<Record> = points
            .into_iter()
            .map(|p| Record::Metric(Box::new(p)))
            .collect();
        crate::store::write::write_records(&tx, &recs, 0).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn aggregates_per_step_and_series_with_rates() {
        let (_d, mut conn) = db();
        let s = 1_000_000_000i64;
        let mut pts = Vec::new();
        for i in 0..6i64 {
            let mut g = MetricPoint::gauge("g", "1", i * s, i as f64);
            g.attributes.insert("k".into(), json!("a"));
            pts.push(g);
            let mut c = MetricPoint::gauge("c", "By", i * s, (i * 100) as f64);
            c.kind = MetricKind::Sum;
            c.temporality = Some("cumulative");
            c.monotonic = Some(true);
            pts.push(c);
        }
        let mut other = MetricPoint::gauge("g", "1", 0, 50.0);
        other.attributes.insert("k".into(), json!("b"));
        pts.push(other);
        insert(&mut conn, pts);
        let q = SeriesQuery {
            name: "g".into(),
            from_ns: 0,
            to_ns: 6 * s,
            step_ns: 3 * s,
            attributes: BTreeMap::new(),
        };
        let r = series(&conn, &q).unwrap();
        assert_eq!(r.series.len(), 2);
        let a = &r.series[0];
        assert_eq!(a.attributes, json!({"k": "a"}));
        assert_eq!(a.points.len(), 2);
        assert_eq!(
            (
                a.points[0].avg,
                a.points[0].min,
                a.points[0].max,
                a.points[0].last
            ),
            (1.0, 0.0, 2.0, 2.0)
        );
        assert_eq!(a.points[1].count, 3);
        assert!(a.points[0].rate.is_none(), "gauges have no rate");
        let mut q2 = q.clone();
        q2.attributes.insert("k".into(), "b".into());
        assert_eq!(series(&conn, &q2).unwrap().series.len(), 1);
        let c = series(
            &conn,
            &SeriesQuery {
                name: "c".into(),
                ..q
            },
        )
        .unwrap();
        assert_eq!(c.series[0].points[1].rate, Some(100.0));
        assert_eq!(c.unit.as_deref(), Some("By"));

        let n = names(&conn).unwrap();
        assert_eq!(
            n.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            vec!["c", "g"]
        );
        assert_eq!(n[0].last_ns, 5 * s);
        let l = latest(&conn, "g", 0).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].1, 5.0);
    }

    #[test]
    fn refuses_too_many_steps() {
        let (_d, conn) = db();
        let q = SeriesQuery {
            name: "g".into(),
            from_ns: 0,
            to_ns: 1_000_000_000_000,
            step_ns: 1,
            attributes: BTreeMap::new(),
        };
        assert!(
            matches!(series(&conn, &q), Err(StoreError::BadRequest(m)) if m.starts_with("step:"))
        );
    }
}
