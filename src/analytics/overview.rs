//! The dashboard's overview: a range's totals against the period just before it, cost
//! over time by model or agent, the LLM error rate over time, from the usage rollups
//! (so they are the same numbers as `/v1/usage` over the same range), plus the count
//! of runs and tool calls from the trace summaries.
//!
//! The range is widened to whole hours (the rollups' resolution): `to` up to the end
//! of its hour, `from` so that the length is a whole number of hours. The previous
//! period has the same length and ends where the range starts, so the two never overlap.

use std::collections::HashMap;

use rusqlite::{Connection, params};
use serde::Serialize;

use super::usage::{DAY_NS, Dim, HOUR_NS, RollupSums, has_day_rollups, hour_of, whole_days};
use crate::store::StoreError;

/// Ranges longer than this are shown in day buckets.
pub const HOURLY_UP_TO_NS: i64 = 72 * HOUR_NS;
/// Cost series kept by name; the rest are summed into one series named `(other)`.
pub const MAX_SERIES: usize = 12;
/// The series key of calls without the dimension (no model, no agent).
pub const UNSET_KEY: &str = "(none)";
pub const OTHER_KEY: &str = "(other)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub from_ns: i64,
    pub to_ns: i64,
}

/// See [`Range::aligned`].
pub const MAX_RANGE_NS: i64 = 367 * 24 * HOUR_NS;

impl Range {
    /// `to` (default now) rounded up to its hour's end; `from` (default 24 h before
    /// `to`) moved so that the range holds a whole number of hours (at least one).
    /// The longest range shown (a year and a day: 367 daily buckets); a longer one is
    /// cut to its last MAX_RANGE_NS (the answer's `from_ms` says where it starts).
    pub fn aligned(from_ns: Option<i64>, to_ns: Option<i64>, now_ns: i64) -> Range {
        let to = to_ns.unwrap_or(now_ns);
        let from = from_ns.unwrap_or(to.saturating_sub(24 * HOUR_NS));
        let to_al = ceil_hour(to);
        // At most MAX_RANGE_NS: every bucket of the series is in the answer.
        let len = ceil_hour_len(to.saturating_sub(from).clamp(1, MAX_RANGE_NS));
        Range {
            from_ns: to_al - len,
            to_ns: to_al,
        }
    }

    pub fn previous(self) -> Range {
        let len = self.to_ns - self.from_ns;
        Range {
            from_ns: self.from_ns - len,
            to_ns: self.from_ns,
        }
    }

    pub fn bucket_width(self) -> i64 {
        if self.to_ns - self.from_ns > HOURLY_UP_TO_NS {
            DAY_NS
        } else {
            HOUR_NS
        }
    }
}

fn ceil_hour(ns: i64) -> i64 {
    let h = hour_of(ns);
    if h == ns { h } else { h + HOUR_NS }
}

fn ceil_hour_len(len: i64) -> i64 {
    len.div_euclid(HOUR_NS) * HOUR_NS + if len % HOUR_NS == 0 { 0 } else { HOUR_NS }
}

/// A period's figures. `cost_usd` sums the known costs (0 when none is known);
/// `unpriced_calls` says how many calls had no cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub runs: i64,
    pub llm_calls: i64,
    pub tool_calls: i64,
    /// LLM calls that failed.
    pub errors: i64,
    /// errors / llm_calls (0 without calls).
    pub error_rate: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub unpriced_calls: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Series {
    pub key: String,
    /// `[bucket_start_ms, cost_usd]`, one per bucket of the range.
    pub points: Vec<(i64, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    pub current: Totals,
    pub previous: Totals,
    pub bucket: &'static str,
    pub cost_series: Vec<Series>,
    /// `[bucket_start_ms, errors, llm_calls]`.
    pub error_series: Vec<(i64, i64, i64)>,
}

fn usage_sums(
    conn: &Connection,
    r: Range,
    width: i64,
    by: Option<Dim>,
) -> Result<Vec<(i64, String, RollupSums)>, StoreError> {
    let key = by.map_or("''", |d| d.column());
    let cols = format!(
        "{key}, calls, errors, input_tokens, output_tokens, cache_read_tokens,
            cache_write_tokens, total_tokens, cost_usd, priced_calls"
    );
    // Whole days from the day rollups when the buckets are days (or only the totals
    // count), the hours around them from the hourly ones.
    let mut reads: Vec<(String, i64, i64)> = Vec::new();
    let hours = format!(
        "SELECT hour_ns, {cols} FROM usage_all_nosession WHERE hour_ns >= ?1 AND hour_ns < ?2"
    );
    match ((width % DAY_NS == 0 || by.is_none()) && has_day_rollups(conn)?)
        .then(|| whole_days(Some(r.from_ns), Some(r.to_ns)))
        .flatten()
    {
        Some((Some(first), Some(end))) => {
            reads.push((
                format!("SELECT day_ns, {cols} FROM usage_days WHERE day_ns >= ?1 AND day_ns < ?2"),
                first,
                end,
            ));
            reads.push((hours.clone(), r.from_ns, first));
            reads.push((hours, end, r.to_ns));
        }
        _ => reads.push((hours, r.from_ns, r.to_ns)),
    }
    // bucket -> key -> index in `out`; keys are read in place, copied once per new key.
    let mut index: HashMap<i64, HashMap<String, usize>> = HashMap::new();
    let mut out: Vec<(i64, String, RollupSums)> = Vec::new();
    for (sql, lo, hi) in reads {
        if lo >= hi {
            continue;
        }
        // Summed here, not by a GROUP BY that would sort every rollup row of the range.
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![lo, hi])?;
        sum_rows(&mut rows, width, &mut index, &mut out)?;
    }
    Ok(out)
}

type SumIndex = HashMap<i64, HashMap<String, usize>>;

fn sum_rows(
    rows: &mut rusqlite::Rows,
    width: i64,
    index: &mut SumIndex,
    out: &mut Vec<(i64, String, RollupSums)>,
) -> Result<(), StoreError> {
    while let Some(row) = rows.next()? {
        let hour: i64 = row.get(0)?;
        let b = hour - hour.rem_euclid(width);
        let k = row.get_ref(1)?;
        let k = k.as_str().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, k.data_type(), Box::new(e))
        })?;
        let keys = index.entry(b).or_default();
        let i = match keys.get(k) {
            Some(i) => *i,
            None => {
                out.push((b, k.to_string(), RollupSums::default()));
                keys.insert(k.to_string(), out.len() - 1);
                out.len() - 1
            }
        };
        let s = &mut out[i].2;
        s.calls += row.get::<_, i64>(2)?;
        s.errors += row.get::<_, i64>(3)?;
        s.input_tokens += row.get::<_, i64>(4)?;
        s.output_tokens += row.get::<_, i64>(5)?;
        s.cache_read_tokens += row.get::<_, i64>(6)?;
        s.cache_write_tokens += row.get::<_, i64>(7)?;
        s.total_tokens += row.get::<_, i64>(8)?;
        s.cost_usd += row.get::<_, f64>(9)?;
        s.priced_calls += row.get::<_, i64>(10)?;
    }
    Ok(())
}

/// Runs (traces starting in the range) and their tool calls.
fn run_counts(conn: &Connection, r: Range) -> Result<(i64, i64), StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), COALESCE(sum(tool_calls), 0) FROM traces
             WHERE start_ns >= ?1 AND start_ns < ?2",
        )?
        .query_row(params![r.from_ns, r.to_ns], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?)
}

fn totals_of<'a>(sums: impl Iterator<Item = &'a RollupSums>, runs: (i64, i64)) -> Totals {
    let mut t = Totals {
        runs: runs.0,
        tool_calls: runs.1,
        ..Default::default()
    };
    let mut priced = 0;
    for s in sums {
        t.llm_calls += s.calls;
        t.errors += s.errors;
        t.input_tokens += s.input_tokens;
        t.output_tokens += s.output_tokens;
        t.cache_read_tokens += s.cache_read_tokens;
        t.cache_write_tokens += s.cache_write_tokens;
        t.total_tokens += s.total_tokens;
        t.cost_usd += s.cost_usd;
        priced += s.priced_calls;
    }
    t.unpriced_calls = t.llm_calls - priced;
    if t.llm_calls > 0 {
        t.error_rate = t.errors as f64 / t.llm_calls as f64;
    }
    t
}

/// The figures of a range, `by` model or agent for the cost series.
pub fn figures(conn: &Connection, r: Range, by: Dim) -> Result<Figures, StoreError> {
    let width = r.bucket_width();
    let cur = usage_sums(conn, r, width, Some(by))?;
    let prev = usage_sums(conn, r.previous(), width, None)?;
    Ok(figures_of(
        r,
        &cur,
        &prev,
        run_counts(conn, r)?,
        run_counts(conn, r.previous())?,
    ))
}

/// The figures from a store's sums: `cur`, the range's usage by (bucket of
/// [`Range::bucket_width`], key), `prev` the previous range's; and each range's runs
/// and tool calls.
pub fn figures_of(
    r: Range,
    cur: &[(i64, String, RollupSums)],
    prev: &[(i64, String, RollupSums)],
    runs: (i64, i64),
    prev_runs: (i64, i64),
) -> Figures {
    let width = r.bucket_width();
    let current = totals_of(cur.iter().map(|(_, _, s)| s), runs);
    let previous = totals_of(prev.iter().map(|(_, _, s)| s), prev_runs);
    // Every bucket of the range, so stacked series line up.
    let first = r.from_ns - r.from_ns.rem_euclid(width);
    let buckets: Vec<i64> = (0..)
        .map(|i| first + i * width)
        .take_while(|b| *b < r.to_ns)
        .take(10_000)
        .collect();
    let index: HashMap<i64, usize> = buckets.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let mut errors = vec![(0i64, 0i64); buckets.len()];
    let mut by_key: HashMap<String, (f64, Vec<f64>)> = HashMap::new();
    for (b, k, s) in cur {
        let Some(&i) = index.get(b) else { continue };
        errors[i].0 += s.errors;
        errors[i].1 += s.calls;
        let key = if k.is_empty() { UNSET_KEY } else { k.as_str() };
        let e = by_key
            .entry(key.to_string())
            .or_insert_with(|| (0.0, vec![0.0; buckets.len()]));
        e.0 += s.cost_usd;
        e.1[i] += s.cost_usd;
    }
    // The costliest keys first (ties by name), the rest summed.
    let mut keys: Vec<(String, (f64, Vec<f64>))> = by_key.into_iter().collect();
    keys.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    let mut cost_series = Vec::new();
    let mut other: Option<Vec<f64>> = None;
    for (i, (key, (_, pts))) in keys.into_iter().enumerate() {
        if i < MAX_SERIES {
            cost_series.push((key, pts));
        } else {
            let o = other.get_or_insert_with(|| vec![0.0; buckets.len()]);
            for (a, b) in o.iter_mut().zip(pts) {
                *a += b;
            }
        }
    }
    if let Some(o) = other {
        cost_series.push((OTHER_KEY.to_string(), o));
    }
    let ms = crate::util::time::ms_of;
    Figures {
        current,
        previous,
        bucket: if width == DAY_NS { "day" } else { "hour" },
        cost_series: cost_series
            .into_iter()
            .map(|(key, pts)| Series {
                key,
                points: buckets.iter().map(|b| ms(*b)).zip(pts).collect(),
            })
            .collect(),
        error_series: buckets
            .iter()
            .zip(errors)
            .map(|(b, (e, c))| (ms(*b), e, c))
            .collect(),
    }
}

/// An open host condition, as the overview lists it.
#[derive(Clone, Debug, Serialize)]
pub struct OpenCondition {
    pub id: String,
    pub category: Option<String>,
    pub name: String,
    pub severity: String,
    pub message: Option<String>,
    pub since_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Conditions still open (host error events whose `state` is `active`), newest first.
pub fn open_conditions(conn: &Connection, limit: usize) -> Result<Vec<OpenCondition>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT uid, category, name, severity, message, time_ns, trace_id FROM events
         WHERE type = 'error' AND source = 'host'
           AND json_extract(attributes, '$.state') = 'active'
         ORDER BY time_ns DESC, id DESC LIMIT ?1",
    )?;
    let rows = stmt
        .query_map([limit as i64], |r| {
            Ok(OpenCondition {
                id: r.get(0)?,
                category: r.get(1)?,
                name: r.get(2)?,
                severity: r.get(3)?,
                message: r.get(4)?,
                since_ms: crate::util::time::ms_of(r.get::<_, i64>(5)?),
                trace_id: r
                    .get::<_, Option<Vec<u8>>>(6)?
                    .map(|b| crate::util::hex::encode(&b)),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The watched agent process now. All `None` when no sample is recent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentNow {
    /// False when neither `OCT_AGENT_PROCESS` nor `OCT_AGENT_PID_FILE` is set.
    pub watched: bool,
    pub up: Option<bool>,
    pub pid: Option<i64>,
    pub rss_bytes: Option<f64>,
    pub restarts: Option<f64>,
    pub last_seen_ms: Option<i64>,
}

/// The agent's latest samples since `since_ns` (host metrics written by the agent watcher).
pub fn agent_now(conn: &Connection, since_ns: i64) -> Result<AgentNow, StoreError> {
    use crate::store::metric_query::latest;
    let mut a = AgentNow {
        watched: true,
        ..Default::default()
    };
    a.up = latest(conn, "oct.agent.up", since_ns)?
        .first()
        .map(|(_, v, _)| *v >= 1.0);
    a.restarts = latest(conn, "oct.agent.restarts", since_ns)?
        .first()
        .map(|(_, v, _)| *v);
    if let Some((attrs, v, _)) = latest(conn, "process.memory.usage", since_ns)?
        .into_iter()
        .find(|(a, _, _)| a.get("oct.process.role").and_then(|v| v.as_str()) == Some("agent"))
    {
        a.rss_bytes = Some(v);
        a.pid = attrs.get("process.pid").and_then(|p| p.as_i64());
    }
    a.last_seen_ms = conn
        .prepare_cached(
            "SELECT time_ns FROM metric_points WHERE name = 'oct.agent.up' AND value >= 1
             ORDER BY time_ns DESC LIMIT 1",
        )?
        .query_map([], |r| r.get::<_, i64>(0))?
        .next()
        .transpose()?
        .map(crate::util::time::ms_of);
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_000_000 * 1_000_000_000;

    #[test]
    fn ranges_are_whole_hours_and_periods_never_overlap() {
        let h = hour_of(T);
        let now = h + 17 * 60_000_000_000; // 17 minutes into an hour
        let r = Range::aligned(None, None, now);
        assert_eq!(r.to_ns, h + HOUR_NS);
        assert_eq!(r.to_ns - r.from_ns, 24 * HOUR_NS);
        assert_eq!(r.bucket_width(), HOUR_NS);
        let p = r.previous();
        assert_eq!((p.to_ns, p.to_ns - p.from_ns), (r.from_ns, 24 * HOUR_NS));
        // 90 minutes round up to two hours; an exact hour end stays.
        let r = Range::aligned(Some(h - 90 * 60_000_000_000), Some(h), now);
        assert_eq!((r.from_ns, r.to_ns), (h - 2 * HOUR_NS, h));
        // Past 72 hours: days.
        let r = Range::aligned(Some(now - 30 * DAY_NS), None, now);
        assert_eq!(r.bucket_width(), DAY_NS);
        assert_eq!(r.to_ns - r.from_ns, 30 * DAY_NS);
    }

    /// Day buckets read whole days from `usage_days` and the hours around them from the
    /// hourly rollups: the same figures as the hourly rollups alone.
    #[test]
    fn day_buckets_from_the_day_rollups_equal_the_hours() {
        use crate::analytics::usage::{Bucket, RollupHook, UsageQuery, query};
        use crate::model::{Record, Span, SpanId, SpanKind, TraceId};
        use crate::pipeline::WriteHook;
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open_writer(&dir.path().join("o.db")).unwrap();
        let now = hour_of(T) + 17 * 60_000_000_000;
        let mut recs = Vec::new();
        for i in 0..100i64 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            let start = now - i * 2 * HOUR_NS - i * 60_000_000_000;
            let mut s = Span::new(
                TraceId(id),
                SpanId([1; 8]),
                "chat".into(),
                SpanKind::LlmCall,
                start,
            );
            s.end_ns = Some(start + (i + 1) * 7_000_000);
            s.request_model = Some(["gpt-4o", "o3", "claude"][(i % 3) as usize].into());
            s.input_tokens = Some(10 + i);
            s.output_tokens = Some(i);
            s.cost_usd = (i % 4 != 0).then_some(i as f64 / 1000.0);
            recs.push(Record::Span(Box::new(s)));
        }
        let tx = conn.transaction().unwrap();
        let out = crate::store::write::write_records(&tx, &recs, 0).unwrap();
        RollupHook
            .in_transaction(
                &mut crate::store::sqlite::SqliteHookTx(&tx),
                &recs,
                &out.effects,
            )
            .unwrap();
        tx.commit().unwrap();
        let r = Range::aligned(Some(now - 4 * DAY_NS - 5 * HOUR_NS), None, now);
        assert_eq!(r.bucket_width(), DAY_NS);
        let f = figures(&conn, r, Dim::Model).unwrap();
        for (range, totals) in [(r, &f.current), (r.previous(), &f.previous)] {
            let hours = query(
                &conn,
                &UsageQuery {
                    group_by: vec![Dim::Model],
                    bucket: Some(Bucket::Hour),
                    from_ns: Some(range.from_ns),
                    to_ns: Some(range.to_ns),
                    skip_percentiles: true,
                    ..Default::default()
                },
            )
            .unwrap();
            assert!(hours.totals.calls > 10);
            assert_eq!(
                (totals.llm_calls, totals.total_tokens),
                (hours.totals.calls, hours.totals.total_tokens)
            );
            assert!((totals.cost_usd - hours.totals.cost_usd.unwrap_or(0.0)).abs() < 1e-9);
            if range == r {
                // Each model's cost per day, as the hours add up.
                let mut want: HashMap<(i64, String), f64> = HashMap::new();
                for row in &hours.rows {
                    let b = row.bucket_ns.unwrap();
                    let day = b - b.rem_euclid(DAY_NS);
                    *want
                        .entry((
                            crate::util::time::ms_of(day),
                            row.dim(Dim::Model).unwrap().to_string(),
                        ))
                        .or_default() += row.cost_usd.unwrap_or(0.0);
                }
                let mut got: HashMap<(i64, String), f64> = HashMap::new();
                for s in &f.cost_series {
                    for (t, c) in &s.points {
                        if *c != 0.0 {
                            got.insert((*t, s.key.clone()), *c);
                        }
                    }
                }
                want.retain(|_, c| *c != 0.0);
                assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
                for (k, c) in &want {
                    assert!((got[k] - c).abs() < 1e-9, "{k:?}");
                }
            }
        }
    }
}
