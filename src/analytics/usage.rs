//! Usage rollups: calls, errors, tokens by type, cost and a latency histogram per
//! hour, agent, session, user, provider and model. Maintained inside each batch's
//! transaction (so they never disagree with the spans), backfilled on startup for
//! spans stored while they were not maintained, and kept when retention deletes spans.
//!
//! Days are UTC and are the sums of their hours. Retention folds hours older than the
//! age retention into days (`usage_daily`), and deletes days older than the usage
//! retention; queries read both (a folded day counts as its first hour). Latency percentiles come from a
//! log-bucketed histogram (DDSketch-style, bucket ratio γ = 1.0202): any percentile
//! over any range and grouping is within 1% of the exact nearest-rank value.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Transaction, params, params_from_iter};
use serde::Serialize;

use super::cost::is_usage_span;
use crate::model::{Record, Span, StatusCode};
use crate::pipeline::{HookError, HookTx, WriteHook};
use crate::store::StoreError;
use crate::store::write::{SpanChange, WriteEffect};
use crate::util::time::format_ns;

pub const HOUR_NS: i64 = 3_600_000_000_000;
pub const DAY_NS: i64 = 24 * HOUR_NS;

/// The histogram's relative error bound.
pub const LATENCY_RELATIVE_ERROR: f64 = 0.01;
/// Latencies below this many milliseconds share one bucket, reported as 0.
const MIN_LATENCY_MS: f64 = 0.001;
const ZERO_BUCKET: i64 = i64::MIN / 2;

fn gamma() -> f64 {
    (1.0 + LATENCY_RELATIVE_ERROR) / (1.0 - LATENCY_RELATIVE_ERROR)
}

/// The histogram bucket of a latency: bucket i holds (γ^(i-1), γ^i].
pub fn latency_bucket(ms: f64) -> i64 {
    if ms.is_nan() || ms < MIN_LATENCY_MS {
        return ZERO_BUCKET;
    }
    (ms.ln() / gamma().ln()).ceil() as i64
}

/// The value reported for a bucket: within the relative error of anything in it.
pub fn bucket_value(bucket: i64) -> f64 {
    if bucket == ZERO_BUCKET {
        return 0.0;
    }
    let g = gamma();
    2.0 * g.powf(bucket as f64) / (g + 1.0)
}

/// The nearest-rank `q` quantile (0 < q ≤ 1) of a histogram given as sorted (bucket, count).
pub fn quantile(buckets: &BTreeMap<i64, i64>, q: f64) -> Option<f64> {
    let n: i64 = buckets.values().sum();
    if n <= 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as i64).clamp(1, n);
    let mut seen = 0;
    for (b, c) in buckets {
        seen += c;
        if seen >= rank {
            return Some(bucket_value(*b));
        }
    }
    None
}

/// Buckets kept apart from the zero bucket span at most this range (a latency of about
/// 1.7e17 ms, beyond anything a span can carry, lands in the last one).
const MIN_BUCKET: i64 = -400;
const MAX_BUCKET: i64 = 2_000;

/// A latency histogram being summed: counts by bucket in one dense run (the buckets a
/// row's latencies span), so merging thousands of rollup rows is array additions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hist {
    zero: i64,
    lo: i64,
    counts: Vec<i64>,
}

impl Hist {
    pub fn add(&mut self, bucket: i64, count: i64) {
        if bucket == ZERO_BUCKET {
            self.zero += count;
            return;
        }
        let b = bucket.clamp(MIN_BUCKET, MAX_BUCKET);
        if self.counts.is_empty() {
            self.lo = b;
        } else if b < self.lo {
            let grow = (self.lo - b) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.lo = b;
        }
        let i = (b - self.lo) as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += count;
    }

    pub fn merge(&mut self, o: &Hist) {
        if o.zero != 0 {
            self.zero += o.zero;
        }
        if o.counts.is_empty() {
            return;
        }
        // Make room for o's run once, then add element-wise.
        self.add(o.lo, 0);
        self.add(o.lo + o.counts.len() as i64 - 1, 0);
        let off = (o.lo - self.lo) as usize;
        for (a, b) in self.counts[off..].iter_mut().zip(&o.counts) {
            *a += b;
        }
    }

    pub fn total(&self) -> i64 {
        self.zero + self.counts.iter().sum::<i64>()
    }

    pub fn is_empty(&self) -> bool {
        self.zero == 0 && self.counts.iter().all(|c| *c == 0)
    }

    /// (bucket, count) for every non-empty bucket, in order.
    pub fn buckets(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        (self.zero != 0)
            .then_some((ZERO_BUCKET, self.zero))
            .into_iter()
            .chain(
                self.counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c != 0)
                    .map(|(i, c)| (self.lo + i as i64, *c)),
            )
    }

    /// The nearest-rank `q` quantile (0 < q ≤ 1), as [`quantile`].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.total();
        if n <= 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as i64).clamp(1, n);
        let mut seen = 0;
        for (b, c) in self.buckets() {
            seen += c;
            if seen >= rank {
                return Some(bucket_value(b));
            }
        }
        None
    }

    /// Adds a histogram stored as text (`usage_days.latency_hist`): `bucket:count`
    /// pairs joined by `,`. Pairs that do not parse are skipped.
    pub fn add_text(&mut self, text: &str) {
        // By hand over the bytes: a month's query parses about 250,000 pairs.
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let pair = int_at(b, i).and_then(|(bucket, j)| {
                (b.get(j) == Some(&b':')).then_some(())?;
                let (count, k) = int_at(b, j + 1)?;
                matches!(b.get(k), None | Some(b',')).then_some((bucket, count, k))
            });
            match pair {
                Some((bucket, count, k)) => {
                    self.add(bucket, count);
                    i = k + 1;
                }
                // Not a pair: skip to the next one.
                None => {
                    i = b[i..]
                        .iter()
                        .position(|c| *c == b',')
                        .map_or(b.len(), |p| i + p + 1)
                }
            }
        }
    }

    /// The text form: the non-empty buckets in order.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (b, c) in self.buckets() {
            if !out.is_empty() {
                out.push(',');
            }
            let _ = write!(out, "{b}:{c}");
        }
        out
    }
}

/// The integer (optional `-`, then digits) starting at `i`, and where it ends.
fn int_at(b: &[u8], mut i: usize) -> Option<(i64, usize)> {
    let neg = b.get(i) == Some(&b'-');
    if neg {
        i += 1;
    }
    let start = i;
    let mut v: i64 = 0;
    while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
        v = v.checked_mul(10)?.checked_add((d - b'0') as i64)?;
        i += 1;
    }
    (i > start).then_some((if neg { -v } else { v }, i))
}

/// What one call adds to its rollup row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallUsage<'a> {
    pub start_ns: i64,
    // Borrowed from the span on the writer (cloning five strings per call showed in profiles).
    pub agent_id: Cow<'a, str>,
    pub session_id: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
    pub provider: Cow<'a, str>,
    pub model: Cow<'a, str>,
    pub error: bool,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: Option<f64>,
    pub latency_ms: Option<f64>,
}

impl<'a> CallUsage<'a> {
    pub fn of_span(s: &'a Span) -> CallUsage<'a> {
        let n = |v: Option<i64>| v.unwrap_or(0);
        let text = |v: &'a Option<String>| Cow::Borrowed(v.as_deref().unwrap_or_default());
        CallUsage {
            start_ns: s.start_ns,
            agent_id: text(&s.agent_id),
            session_id: text(&s.session_id),
            user_id: text(&s.user_id),
            provider: text(&s.provider),
            model: Cow::Borrowed(
                s.response_model
                    .as_deref()
                    .or(s.request_model.as_deref())
                    .unwrap_or_default(),
            ),
            error: s.status == StatusCode::Error,
            input_tokens: n(s.input_tokens),
            output_tokens: n(s.output_tokens),
            cache_read_tokens: n(s.cache_read_tokens),
            cache_write_tokens: n(s.cache_write_tokens),
            reasoning_tokens: n(s.reasoning_tokens),
            // The same total the trace summary counts.
            total_tokens: s
                .total_tokens
                .unwrap_or(n(s.input_tokens) + n(s.output_tokens)),
            cost_usd: s.cost_usd,
            latency_ms: s.latency_ms(),
        }
    }
}

/// The hour a timestamp falls in.
pub fn hour_of(ns: i64) -> i64 {
    ns - ns.rem_euclid(HOUR_NS)
}

/// The UTC day a timestamp falls in.
pub fn day_of(ns: i64) -> i64 {
    ns - ns.rem_euclid(DAY_NS)
}

/// One rollup row: hour, agent, session, user, provider, model.
type RollupKey<'a> = (
    i64,
    Cow<'a, str>,
    Cow<'a, str>,
    Cow<'a, str>,
    Cow<'a, str>,
    Cow<'a, str>,
);

/// What a batch adds to one rollup row.
#[derive(Default)]
struct RowDelta {
    calls: i64,
    errors: i64,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    total_tokens: i64,
    cost_usd: f64,
    priced_calls: i64,
    latency_ms_sum: f64,
    latency_count: i64,
    /// Something was taken back: the row may be left without calls.
    took_back: bool,
}

/// One set of rollup rows and histogram buckets gathered for a batch.
#[derive(Default)]
struct Gathered<'a> {
    rows: HashMap<RollupKey<'a>, RowDelta>,
    buckets: HashMap<(RollupKey<'a>, i64), (i64, bool)>,
}

impl<'a> Gathered<'a> {
    fn add(&mut self, key: RollupKey<'a>, c: &CallUsage<'a>, sign: i64) {
        let latency = c.latency_ms.map(|l| l.max(0.0));
        if let Some(ms) = latency {
            let b = self
                .buckets
                .entry((key.clone(), latency_bucket(ms)))
                .or_default();
            b.0 += sign;
            b.1 |= sign < 0;
        }
        self.rows.entry(key).or_default().add(c, latency, sign);
    }
}

impl RowDelta {
    fn add(&mut self, c: &CallUsage, latency: Option<f64>, sign: i64) {
        let d = self;
        let f = sign as f64;
        d.calls += sign;
        d.errors += sign * c.error as i64;
        d.input_tokens += sign * c.input_tokens;
        d.output_tokens += sign * c.output_tokens;
        d.cache_read_tokens += sign * c.cache_read_tokens;
        d.cache_write_tokens += sign * c.cache_write_tokens;
        d.reasoning_tokens += sign * c.reasoning_tokens;
        d.total_tokens += sign * c.total_tokens;
        d.cost_usd += f * c.cost_usd.unwrap_or(0.0);
        d.priced_calls += sign * c.cost_usd.is_some() as i64;
        d.latency_ms_sum += f * latency.unwrap_or(0.0);
        d.latency_count += sign * latency.is_some() as i64;
        d.took_back |= sign < 0;
    }
}

/// The statements writing one set of hourly tables (literal SQL, prepared once per batch).
struct HourlySql {
    upsert: &'static str,
    drop_empty: &'static str,
    bucket_upsert: &'static str,
    bucket_drop: &'static str,
}

macro_rules! hourly_sql {
    ($rows:literal, $lat:literal) => {
        HourlySql {
            upsert: concat!(
                "INSERT INTO ",
                $rows,
                " (hour_ns, agent_id, session_id, user_id, provider, model, calls,
                errors, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                reasoning_tokens, total_tokens, cost_usd, priced_calls, latency_ms_sum, latency_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
             ON CONFLICT DO UPDATE SET
                calls = calls + excluded.calls,
                errors = errors + excluded.errors,
                input_tokens = input_tokens + excluded.input_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
                cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
                reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
                total_tokens = total_tokens + excluded.total_tokens,
                cost_usd = cost_usd + excluded.cost_usd,
                priced_calls = priced_calls + excluded.priced_calls,
                latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum,
                latency_count = latency_count + excluded.latency_count"
            ),
            drop_empty: concat!(
                "DELETE FROM ",
                $rows,
                " WHERE hour_ns = ?1 AND agent_id = ?2 AND session_id = ?3
                AND user_id = ?4 AND provider = ?5 AND model = ?6 AND calls = 0"
            ),
            bucket_upsert: concat!(
                "INSERT INTO ",
                $lat,
                " (hour_ns, agent_id, session_id, user_id, provider,
                model, bucket, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT DO UPDATE SET count = count + excluded.count"
            ),
            bucket_drop: concat!(
                "DELETE FROM ",
                $lat,
                " WHERE hour_ns = ?1 AND agent_id = ?2
                AND session_id = ?3 AND user_id = ?4 AND provider = ?5 AND model = ?6
                AND bucket = ?7 AND count = 0"
            ),
        }
    };
}

const BY_SESSION: HourlySql = hourly_sql!("usage_hourly", "usage_latency_hourly");
const NO_SESSION: HourlySql =
    hourly_sql!("usage_hourly_nosession", "usage_latency_hourly_nosession");

impl Gathered<'_> {
    /// Writes what was gathered; rows and buckets left empty go.
    fn flush(&mut self, tx: &Transaction, sql: &HourlySql) -> rusqlite::Result<()> {
        let mut upsert = tx.prepare_cached(sql.upsert)?;
        let mut drop_empty = tx.prepare_cached(sql.drop_empty)?;
        for (k, d) in self.rows.drain() {
            upsert.execute(params![
                k.0,
                k.1,
                k.2,
                k.3,
                k.4,
                k.5,
                d.calls,
                d.errors,
                d.input_tokens,
                d.output_tokens,
                d.cache_read_tokens,
                d.cache_write_tokens,
                d.reasoning_tokens,
                d.total_tokens,
                d.cost_usd,
                d.priced_calls,
                d.latency_ms_sum,
                d.latency_count,
            ])?;
            if d.took_back {
                drop_empty.execute(params![k.0, k.1, k.2, k.3, k.4, k.5])?;
            }
        }
        let mut bucket_upsert = tx.prepare_cached(sql.bucket_upsert)?;
        let mut bucket_drop = tx.prepare_cached(sql.bucket_drop)?;
        for ((k, bucket), (count, took_back)) in self.buckets.drain() {
            bucket_upsert.execute(params![k.0, k.1, k.2, k.3, k.4, k.5, bucket, count])?;
            if took_back {
                bucket_drop.execute(params![k.0, k.1, k.2, k.3, k.4, k.5, bucket])?;
            }
        }
        Ok(())
    }
}

/// A batch's rollup changes gathered in memory, so each row and histogram bucket
/// is written once per batch instead of once per call (sums commute: same result).
/// Each call goes to two sets of tables: by session (`usage_hourly`, ...), and the
/// same without the session (`usage_hourly_nosession`, ...), many times smaller, which
/// every query that neither groups nor filters by session reads.
#[derive(Default)]
pub struct RollupBatch<'a> {
    by_session: Gathered<'a>,
    no_session: Gathered<'a>,
    days: Days<'a>,
}

/// One `usage_days` row: day, agent, user, provider, model.
type DayKey<'a> = (i64, Cow<'a, str>, Cow<'a, str>, Cow<'a, str>, Cow<'a, str>);

/// A batch's changes to `usage_days`: sums and the histogram to merge into each row.
#[derive(Default)]
struct Days<'a> {
    rows: HashMap<DayKey<'a>, (RowDelta, Hist)>,
}

impl<'a> Days<'a> {
    fn add(&mut self, c: &CallUsage<'a>, sign: i64) {
        let key = (
            day_of(c.start_ns),
            c.agent_id.clone(),
            c.user_id.clone(),
            c.provider.clone(),
            c.model.clone(),
        );
        let (d, h) = self.rows.entry(key).or_default();
        let latency = c.latency_ms.map(|l| l.max(0.0));
        if let Some(ms) = latency {
            h.add(latency_bucket(ms), sign);
        }
        d.add(c, latency, sign);
    }

    /// Writes what was gathered: sums added in SQL, histograms merged here (read, add,
    /// write back); rows left without calls go.
    fn flush(&mut self, tx: &Transaction) -> rusqlite::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut read = tx.prepare_cached(
            "SELECT latency_hist FROM usage_days WHERE day_ns = ?1 AND agent_id = ?2
             AND user_id = ?3 AND provider = ?4 AND model = ?5",
        )?;
        let mut upsert = tx.prepare_cached(
            "INSERT INTO usage_days (day_ns, agent_id, user_id, provider, model, calls,
                errors, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                reasoning_tokens, total_tokens, cost_usd, priced_calls, latency_ms_sum,
                latency_count, latency_hist)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
             ON CONFLICT DO UPDATE SET
                calls = calls + excluded.calls,
                errors = errors + excluded.errors,
                input_tokens = input_tokens + excluded.input_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
                cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
                reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
                total_tokens = total_tokens + excluded.total_tokens,
                cost_usd = cost_usd + excluded.cost_usd,
                priced_calls = priced_calls + excluded.priced_calls,
                latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum,
                latency_count = latency_count + excluded.latency_count,
                latency_hist = COALESCE(excluded.latency_hist, latency_hist)",
        )?;
        let mut drop_empty = tx.prepare_cached(
            "DELETE FROM usage_days WHERE day_ns = ?1 AND agent_id = ?2 AND user_id = ?3
             AND provider = ?4 AND model = ?5 AND calls = 0",
        )?;
        for (k, (d, h)) in self.rows.drain() {
            // NULL keeps the stored histogram (no latency in this batch for the row).
            let hist = if h.is_empty() {
                None
            } else {
                let mut merged = Hist::default();
                let stored: Option<Option<String>> = read
                    .query_row(params![k.0, k.1, k.2, k.3, k.4], |r| r.get(0))
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })?;
                if let Some(Some(text)) = stored {
                    merged.add_text(&text);
                }
                merged.merge(&h);
                Some(merged.to_text())
            };
            upsert.execute(params![
                k.0,
                k.1,
                k.2,
                k.3,
                k.4,
                d.calls,
                d.errors,
                d.input_tokens,
                d.output_tokens,
                d.cache_read_tokens,
                d.cache_write_tokens,
                d.reasoning_tokens,
                d.total_tokens,
                d.cost_usd,
                d.priced_calls,
                d.latency_ms_sum,
                d.latency_count,
                hist,
            ])?;
            if d.took_back {
                drop_empty.execute(params![k.0, k.1, k.2, k.3, k.4])?;
            }
        }
        Ok(())
    }
}

impl<'a> RollupBatch<'a> {
    /// Adds (`sign` 1) or takes back (`sign` -1) one call.
    pub fn add(&mut self, c: &CallUsage<'a>, sign: i64) {
        let hour = hour_of(c.start_ns);
        self.no_session.add(
            (
                hour,
                c.agent_id.clone(),
                Cow::Borrowed(""),
                c.user_id.clone(),
                c.provider.clone(),
                c.model.clone(),
            ),
            c,
            sign,
        );
        self.by_session.add(
            (
                hour,
                c.agent_id.clone(),
                c.session_id.clone(),
                c.user_id.clone(),
                c.provider.clone(),
                c.model.clone(),
            ),
            c,
            sign,
        );
        self.days.add(c, sign);
    }

    /// Writes what was gathered; rows and buckets left empty go.
    pub fn flush(&mut self, tx: &Transaction) -> rusqlite::Result<()> {
        self.by_session.flush(tx, &BY_SESSION)?;
        self.no_session.flush(tx, &NO_SESSION)?;
        self.days.flush(tx)
    }
}

/// Applies what a span record changed: takes back the calls of the rows it replaced and
/// adds the row now stored, so a call reported in pieces counts once, with all its usage.
pub fn apply_change<'a>(batch: &mut RollupBatch<'a>, change: &SpanChange<'a>) {
    let after = is_usage_span(change.after).then(|| CallUsage::of_span(change.after));
    let before: Vec<CallUsage> = change
        .before
        .iter()
        .filter(|s| is_usage_span(s))
        .map(CallUsage::of_span)
        .collect();
    if let ([b], Some(a)) = (before.as_slice(), &after)
        && b == a
    {
        // Nothing the rollups hold changed (new attributes, a later end of a non-call...).
        return;
    }
    for b in &before {
        batch.add(b, -1);
    }
    if let Some(a) = &after {
        batch.add(a, 1);
    }
}

/// Every span with an id up to this one is in the rollups.
const WATERMARK: &str = "usage.rolled_up_span_id";

fn set_watermark(tx: &Transaction, id: i64) -> rusqlite::Result<()> {
    // Cached: this runs once per batch on the writer.
    tx.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![WATERMARK, id])?;
    Ok(())
}

/// Keeps the rollups current, batch by batch, inside the batch's transaction.
pub struct RollupHook;

impl WriteHook for RollupHook {
    fn sqlite_only(&self) -> bool {
        true
    }

    fn in_transaction(
        &self,
        tx: &mut dyn HookTx,
        records: &[Record],
        effects: &[WriteEffect],
    ) -> Result<(), HookError> {
        // Its tables are the SQLite file's; registered only there.
        let Some(tx) = tx.sqlite() else {
            return Ok(());
        };
        let mut any_span = false;
        let mut batch = RollupBatch::default();
        for (r, effect) in records.iter().zip(effects) {
            if let Some(change) = effect.span_change(r) {
                any_span = true;
                apply_change(&mut batch, &change);
            }
        }
        batch.flush(tx)?;
        if any_span {
            // Everything stored before this batch was rolled up (backfill runs first).
            let max: i64 = tx
                .prepare_cached("SELECT COALESCE(max(id), 0) FROM spans")?
                .query_row([], |r| r.get(0))?;
            set_watermark(tx, max)?;
        }
        Ok(())
    }
}

/// Spans per backfill transaction, so the writer stays responsive.
const BACKFILL_CHUNK: i64 = 5_000;

/// Rolls up the spans stored since the watermark (written while rollups were not
/// maintained: an older version, or a database from before this feature).
/// Returns how many calls it added.
pub fn backfill(conn: &Connection) -> rusqlite::Result<u64> {
    let mark: i64 = conn
        .query_row(
            "SELECT value FROM counters WHERE name = ?1",
            [WATERMARK],
            |r| r.get(0),
        )
        .unwrap_or(0);
    let upto: i64 = conn.query_row("SELECT COALESCE(max(id), 0) FROM spans", [], |r| r.get(0))?;
    let mut added = 0u64;
    let mut lo = mark;
    while lo < upto {
        let hi = (lo + BACKFILL_CHUNK).min(upto);
        let tx = conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "SELECT start_ns, agent_id, session_id, user_id, provider,
                    COALESCE(response_model, request_model), status, input_tokens, output_tokens,
                    cache_read_tokens, cache_write_tokens, reasoning_tokens, total_tokens,
                    cost_usd, latency_ms
                 FROM spans WHERE id > ?1 AND id <= ?2 AND kind IN ('llm_call', 'embedding')",
            )?;
            let calls = stmt
                .query_map(params![lo, hi], |r| {
                    let n = |i: usize| -> rusqlite::Result<i64> {
                        Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0))
                    };
                    let opt = |i: usize| -> rusqlite::Result<Cow<'static, str>> {
                        Ok(Cow::Owned(
                            r.get::<_, Option<String>>(i)?.unwrap_or_default(),
                        ))
                    };
                    let total: Option<i64> = r.get(12)?;
                    Ok(CallUsage {
                        start_ns: r.get(0)?,
                        agent_id: opt(1)?,
                        session_id: opt(2)?,
                        user_id: opt(3)?,
                        provider: opt(4)?,
                        model: opt(5)?,
                        error: r.get::<_, String>(6)? == "error",
                        input_tokens: n(7)?,
                        output_tokens: n(8)?,
                        cache_read_tokens: n(9)?,
                        cache_write_tokens: n(10)?,
                        reasoning_tokens: n(11)?,
                        total_tokens: total.unwrap_or(n(7)? + n(8)?),
                        cost_usd: r.get(13)?,
                        latency_ms: r.get(14)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut batch = RollupBatch::default();
            for c in &calls {
                batch.add(c, 1);
            }
            batch.flush(&tx)?;
            added += calls.len() as u64;
        }
        set_watermark(&tx, hi)?;
        tx.commit()?;
        lo = hi;
    }
    Ok(added)
}

const ROLLUP_SUMS: &str = "calls, errors, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, total_tokens, cost_usd, priced_calls, latency_ms_sum,
    latency_count";

/// Folds the hourly rows of the UTC days that end at or before `before_ns` into daily
/// rows (added to what a day already holds: a late call for a folded day lands in its
/// hour and is folded again later), one day per transaction. Returns the hourly rows folded.
pub fn fold_hours_into_days(conn: &Connection, before_ns: i64) -> rusqlite::Result<u64> {
    let before = before_ns - before_ns.rem_euclid(DAY_NS);
    let sums: Vec<&str> = ROLLUP_SUMS.split(',').map(str::trim).collect();
    let select: String = sums.iter().map(|c| format!(", sum({c})")).collect();
    let update: Vec<String> = sums
        .iter()
        .map(|c| format!("{c} = {c} + excluded.{c}"))
        .collect();
    // (hourly, daily, hourly latency, daily latency): by session, then without.
    let sets = [
        (
            "",
            "usage_hourly",
            "usage_daily",
            "usage_latency_hourly",
            "usage_latency_daily",
        ),
        (
            "_nosession",
            "usage_hourly_nosession",
            "usage_daily_nosession",
            "usage_latency_hourly_nosession",
            "usage_latency_daily_nosession",
        ),
    ];
    let mut folded = 0u64;
    // At most a long retention's worth of days per run; the next run goes on.
    for _ in 0..1000 {
        let oldest: Option<i64> = conn.query_row(
            "SELECT min(hour_ns) FROM (SELECT min(hour_ns) hour_ns FROM usage_hourly
             UNION ALL SELECT min(hour_ns) FROM usage_latency_hourly
             UNION ALL SELECT min(hour_ns) FROM usage_hourly_nosession
             UNION ALL SELECT min(hour_ns) FROM usage_latency_hourly_nosession)",
            [],
            |r| r.get(0),
        )?;
        let Some(oldest) = oldest.filter(|o| *o < before) else {
            break;
        };
        let day = oldest - oldest.rem_euclid(DAY_NS);
        let tx = conn.unchecked_transaction()?;
        for (suffix, hourly, daily, lat_hourly, lat_daily) in sets {
            tx.execute(
                &format!(
                    "INSERT INTO {daily} (day_ns, agent_id, session_id, user_id, provider, model, {ROLLUP_SUMS})
                     SELECT ?1, agent_id, session_id, user_id, provider, model{select}
                     FROM {hourly} WHERE hour_ns >= ?1 AND hour_ns < ?2
                     GROUP BY agent_id, session_id, user_id, provider, model
                     ON CONFLICT DO UPDATE SET {}",
                    update.join(", ")
                ),
                params![day, day + DAY_NS],
            )?;
            tx.execute(
                &format!(
                    "INSERT INTO {lat_daily} (day_ns, agent_id, session_id, user_id,
                        provider, model, bucket, count)
                     SELECT ?1, agent_id, session_id, user_id, provider, model, bucket, sum(count)
                     FROM {lat_hourly} WHERE hour_ns >= ?1 AND hour_ns < ?2
                     GROUP BY agent_id, session_id, user_id, provider, model, bucket
                     ON CONFLICT DO UPDATE SET count = count + excluded.count"
                ),
                params![day, day + DAY_NS],
            )?;
            let n = tx.execute(
                &format!("DELETE FROM {hourly} WHERE hour_ns >= ?1 AND hour_ns < ?2"),
                params![day, day + DAY_NS],
            )? as u64;
            // The count reported is of the rows by session, as before.
            if suffix.is_empty() {
                folded += n;
            }
            tx.execute(
                &format!("DELETE FROM {lat_hourly} WHERE hour_ns >= ?1 AND hour_ns < ?2"),
                params![day, day + DAY_NS],
            )?;
            // Rows a take-back left at zero calls say nothing.
            tx.execute(
                &format!("DELETE FROM {daily} WHERE day_ns = ?1 AND calls = 0"),
                [day],
            )?;
            tx.execute(
                &format!("DELETE FROM {lat_daily} WHERE day_ns = ?1 AND count = 0"),
                [day],
            )?;
        }
        tx.commit()?;
    }
    Ok(folded)
}

/// Deletes usage of the UTC days before the one holding `before_ns`, days and hours
/// alike (whole days, so `usage_days` and the hours always cover the same time).
/// Returns the rows deleted.
pub fn prune_usage(conn: &Connection, before_ns: i64) -> rusqlite::Result<u64> {
    let before_ns = day_of(before_ns);
    let tx = conn.unchecked_transaction()?;
    let mut n = 0u64;
    for (table, col) in [
        ("usage_daily", "day_ns"),
        ("usage_latency_daily", "day_ns"),
        ("usage_hourly", "hour_ns"),
        ("usage_latency_hourly", "hour_ns"),
        ("usage_daily_nosession", "day_ns"),
        ("usage_latency_daily_nosession", "day_ns"),
        ("usage_hourly_nosession", "hour_ns"),
        ("usage_latency_hourly_nosession", "hour_ns"),
        ("usage_days", "day_ns"),
    ] {
        let deleted = tx.execute(
            &format!("DELETE FROM {table} WHERE {col} < ?1"),
            [before_ns],
        )?;
        if !table.contains("latency") && !table.contains("nosession") && table != "usage_days" {
            n += deleted as u64;
        }
    }
    tx.commit()?;
    Ok(n)
}

/// How long usage is kept: hours as long as the spans (`OCT_RETENTION_DAYS`), then as
/// days until `OCT_USAGE_RETENTION_DAYS`. `None` keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageRetention {
    pub hours_ns: Option<i64>,
    pub days_ns: Option<i64>,
}

impl UsageRetention {
    /// Folds and prunes as the settings say; logs what it did. Runs on the writer.
    pub fn run(&self, conn: &Connection, now_ns: i64) {
        let folded = match self.hours_ns {
            Some(age) => fold_hours_into_days(conn, now_ns - age),
            None => Ok(0),
        };
        let pruned = match self.days_ns {
            Some(age) => prune_usage(conn, now_ns - age),
            None => Ok(0),
        };
        match (folded, pruned) {
            (Ok(0), Ok(0)) => {}
            (Ok(folded), Ok(deleted)) => {
                tracing::info!(
                    hourly_rows_folded = folded,
                    rows_deleted = deleted,
                    "usage retention"
                )
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "usage retention failed; will retry")
            }
        }
    }
}

/// A dimension usage can be grouped or filtered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dim {
    Agent,
    Session,
    User,
    Provider,
    Model,
    /// The sidecar a call came from: kept by a fleet's central on PostgreSQL.
    Instance,
}

impl Dim {
    pub const ALL: &'static [Dim] = &[
        Dim::Agent,
        Dim::Session,
        Dim::User,
        Dim::Provider,
        Dim::Model,
        Dim::Instance,
    ];

    pub fn parse(s: &str) -> Option<Dim> {
        match s.trim().to_ascii_lowercase().as_str() {
            "agent" | "agent_id" => Some(Dim::Agent),
            "session" | "session_id" => Some(Dim::Session),
            "user" | "user_id" => Some(Dim::User),
            "provider" => Some(Dim::Provider),
            "model" => Some(Dim::Model),
            "instance" | "instance_id" => Some(Dim::Instance),
            _ => None,
        }
    }
    /// The name `group_by` and `--by` take.
    pub fn name(self) -> &'static str {
        match self {
            Dim::Agent => "agent",
            Dim::Session => "session",
            Dim::User => "user",
            Dim::Provider => "provider",
            Dim::Model => "model",
            Dim::Instance => "instance",
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Dim::Agent => "agent_id",
            Dim::Session => "session_id",
            Dim::User => "user_id",
            Dim::Provider => "provider",
            Dim::Model => "model",
            Dim::Instance => "instance_id",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(s: &str) -> Option<Bucket> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hour" | "hourly" => Some(Bucket::Hour),
            "day" | "daily" => Some(Bucket::Day),
            _ => None,
        }
    }
    pub fn width(self) -> i64 {
        match self {
            Bucket::Hour => HOUR_NS,
            Bucket::Day => DAY_NS,
        }
    }
    /// As `bucket=` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct UsageQuery {
    pub group_by: Vec<Dim>,
    /// Split by time; `None` sums the whole range.
    pub bucket: Option<Bucket>,
    /// Hours starting at or after the hour holding `from_ns` and before `to_ns`.
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    pub filters: Vec<(Dim, String)>,
    /// Leave out the latency histogram: p50/p95/p99 are null (the mean stays). Reading
    /// the histogram is most of a long range's cost (a row per bucket per rollup row).
    pub skip_percentiles: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Latency {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// (Read back by the CLI from a central's API; the fields it does not show default.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UsageRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_start: Option<String>,
    #[serde(skip)]
    pub bucket_ns: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Option<String>>,
    pub calls: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub total_tokens: i64,
    /// Sum over the calls with a known cost; `null` when none had one.
    pub cost_usd: Option<f64>,
    /// Calls whose cost is unknown (no price for the model, no token counts).
    pub unpriced_calls: i64,
    pub latency_ms: Latency,
    #[serde(skip)]
    latency_hist: Hist,
    #[serde(skip)]
    latency_sum: f64,
    #[serde(skip)]
    latency_count: i64,
    #[serde(skip)]
    priced_calls: i64,
}

impl UsageRow {
    fn dim_mut(&mut self, d: Dim) -> &mut Option<Option<String>> {
        match d {
            Dim::Agent => &mut self.agent_id,
            Dim::Session => &mut self.session_id,
            Dim::User => &mut self.user_id,
            Dim::Provider => &mut self.provider,
            Dim::Model => &mut self.model,
            Dim::Instance => &mut self.instance_id,
        }
    }

    pub fn dim(&self, d: Dim) -> Option<&str> {
        let v = match d {
            Dim::Agent => &self.agent_id,
            Dim::Session => &self.session_id,
            Dim::User => &self.user_id,
            Dim::Provider => &self.provider,
            Dim::Model => &self.model,
            Dim::Instance => &self.instance_id,
        };
        v.as_ref().and_then(|v| v.as_deref())
    }

    fn absorb(&mut self, o: &UsageRow) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.total_tokens += o.total_tokens;
        self.cost_usd = match (self.cost_usd, o.cost_usd) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.priced_calls += o.priced_calls;
        self.latency_sum += o.latency_sum;
        self.latency_count += o.latency_count;
        self.latency_hist.merge(&o.latency_hist);
    }

    fn finish(&mut self) {
        self.unpriced_calls = self.calls - self.priced_calls;
        if self.priced_calls == 0 {
            self.cost_usd = None;
        }
        self.latency_ms = Latency {
            mean: (self.latency_count > 0).then(|| self.latency_sum / self.latency_count as f64),
            p50: self.latency_hist.quantile(0.50),
            p95: self.latency_hist.quantile(0.95),
            p99: self.latency_hist.quantile(0.99),
        };
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct UsageReport {
    pub bucket: Option<&'static str>,
    pub group_by: Vec<&'static str>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub rows: Vec<UsageRow>,
    pub totals: UsageRow,
}

/// The parameter asking for usage by instance (`group_by` or the filter), if any.
fn instance_field(q: &UsageQuery) -> Option<&'static str> {
    if q.group_by.contains(&Dim::Instance) {
        Some("group_by")
    } else if q.filters.iter().any(|(d, _)| *d == Dim::Instance) {
        Some("instance_id")
    } else {
        None
    }
}

/// Rows, at most; a larger answer is cut and says so.
pub const MAX_ROWS: usize = 10_000;

/// The time range and filters: rows of `col` (`hour_ns`, `day_ns`) at or after `lo`
/// and before `hi`.
fn where_clause(
    col: &str,
    lo: Option<i64>,
    hi: Option<i64>,
    q: &UsageQuery,
    args: &mut Vec<SqlValue>,
) -> String {
    let mut sql = String::from(" WHERE 1=1");
    if let Some(lo) = lo {
        sql.push_str(&format!(" AND {col} >= ?"));
        args.push(SqlValue::Integer(lo));
    }
    if let Some(hi) = hi {
        sql.push_str(&format!(" AND {col} < ?"));
        args.push(SqlValue::Integer(hi));
    }
    for (d, v) in &q.filters {
        sql.push_str(&format!(" AND {} = ?", d.column()));
        // '' stands for "not set" in the rollups.
        args.push(SqlValue::Text(if v == "-" {
            String::new()
        } else {
            v.clone()
        }));
    }
    sql
}

/// Whether the database has `usage_days` (schema 9): a reader (the CLI) may open a
/// database that a daemon of an older version still holds at schema 8.
pub(crate) fn has_day_rollups(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage_days')",
    )?
    .query_row([], |r| r.get(0))
}

/// The whole UTC days of the hours in [`lo`, `hi`) (every hour of the day starts in
/// it), as [first day, end of the last day); `None` bounds are open. `None` when no day is whole.
pub(crate) fn whole_days(lo: Option<i64>, hi: Option<i64>) -> Option<(Option<i64>, Option<i64>)> {
    let first = lo.map(|lo| {
        let d = day_of(lo);
        if d == lo { d } else { d.saturating_add(DAY_NS) }
    });
    let end = hi.map(|hi| day_of(hi.saturating_add(HOUR_NS - 1)));
    match (first, end) {
        (Some(f), Some(e)) if f >= e => None,
        b => Some(b),
    }
}

type Key = (i64, Vec<String>);

/// Rows gathered by (time bucket, dimension values), summed here rather than by a
/// GROUP BY: SQLite would sort every rollup row of the range first, which on a month
/// of busy hours is most of the query's time.
#[derive(Default)]
struct Gather {
    rows: Vec<(Key, UsageRow)>,
    /// bucket -> the dimension values joined by U+001F -> index in `rows`.
    index: HashMap<i64, HashMap<String, usize>>,
    buf: String,
}

impl Gather {
    /// The joined dimension values of a row (columns 1..=dims) in `buf`.
    fn key_text(&mut self, r: &rusqlite::Row, dims: usize) -> rusqlite::Result<()> {
        self.buf.clear();
        for i in 1..=dims {
            if i > 1 {
                self.buf.push('\u{1f}');
            }
            let v = r.get_ref(i)?;
            let v = v.as_str().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e))
            })?;
            self.buf.push_str(v);
        }
        Ok(())
    }

    fn find(
        &mut self,
        bucket: i64,
        r: &rusqlite::Row,
        dims: usize,
    ) -> rusqlite::Result<Option<usize>> {
        self.key_text(r, dims)?;
        Ok(self
            .index
            .get(&bucket)
            .and_then(|m| m.get(self.buf.as_str()))
            .copied())
    }

    fn slot(&mut self, bucket: i64, r: &rusqlite::Row, dims: usize) -> rusqlite::Result<usize> {
        if let Some(i) = self.find(bucket, r, dims)? {
            return Ok(i);
        }
        let mut k = Vec::with_capacity(dims);
        for i in 1..=dims {
            k.push(r.get::<_, String>(i)?);
        }
        self.rows.push(((bucket, k), UsageRow::default()));
        let i = self.rows.len() - 1;
        self.index
            .entry(bucket)
            .or_default()
            .insert(self.buf.clone(), i);
        Ok(i)
    }
}

/// Usage over a range, grouped as asked, with totals.
pub fn query(conn: &Connection, q: &UsageQuery) -> Result<UsageReport, StoreError> {
    if let Some(field) = instance_field(q) {
        return Err(StoreError::BadRequest(format!(
            "{field}: usage by instance (sidecar) is kept by a fleet's central on PostgreSQL (OCT_DATABASE_URL); this store's rollups do not have it"
        )));
    }
    let mut dims = q.group_by.clone();
    dims.sort();
    dims.dedup();
    let width = q.bucket.map(|b| b.width());
    let bucket_of = |hour_ns: i64| width.map_or(0, |w| hour_ns - hour_ns.rem_euclid(w));
    let dim_cols: String = dims.iter().map(|d| format!(", {}", d.column())).collect();
    // Without sessions in the question, the rollups without the session dimension answer.
    let sessions =
        dims.contains(&Dim::Session) || q.filters.iter().any(|(d, _)| *d == Dim::Session);
    let (rows_view, lat_view) = if sessions {
        ("usage_all", "usage_latency_all")
    } else {
        ("usage_all_nosession", "usage_latency_all_nosession")
    };
    let n = dims.len();
    let lo = q.from_ns.map(hour_of);
    let hi = q.to_ns;
    // Whole days come from `usage_days` (one row per day and key, its histogram in one
    // field), unless the question is about sessions or hours; the hours around them from
    // the hourly rollups. A month with percentiles: a few thousand rows, not 400,000.
    let days = if sessions || q.bucket == Some(Bucket::Hour) || !has_day_rollups(conn)? {
        None
    } else {
        whole_days(lo, hi)
    };
    let hour_ranges: Vec<(Option<i64>, Option<i64>)> = match days {
        None => vec![(lo, hi)],
        Some((first, end)) => {
            let mut v = Vec::new();
            if let Some(first) = first
                && lo.is_none_or(|lo| lo < first)
            {
                v.push((lo, Some(first)));
            }
            if let Some(end) = end
                && hi.is_none_or(|hi| end < hi)
            {
                v.push((Some(end), hi));
            }
            v
        }
    };
    let sum_cols = "calls, errors, input_tokens, output_tokens, cache_read_tokens,
        cache_write_tokens, reasoning_tokens, total_tokens, cost_usd, priced_calls,
        latency_ms_sum, latency_count";
    let mut g = Gather::default();
    let mut read_sums = |sql: &str, args: &[SqlValue], hist: bool| -> Result<(), StoreError> {
        let mut stmt = conn.prepare(sql)?;
        let mut it = stmt.query(params_from_iter(args.iter()))?;
        while let Some(r) = it.next()? {
            let i = g.slot(bucket_of(r.get(0)?), r, n)?;
            let row = &mut g.rows[i].1;
            let base = 1 + n;
            row.calls += r.get::<_, i64>(base)?;
            row.errors += r.get::<_, i64>(base + 1)?;
            row.input_tokens += r.get::<_, i64>(base + 2)?;
            row.output_tokens += r.get::<_, i64>(base + 3)?;
            row.cache_read_tokens += r.get::<_, i64>(base + 4)?;
            row.cache_write_tokens += r.get::<_, i64>(base + 5)?;
            row.reasoning_tokens += r.get::<_, i64>(base + 6)?;
            row.total_tokens += r.get::<_, i64>(base + 7)?;
            // Kept as a sum here; `finish` turns it to null when no call was priced.
            row.cost_usd = Some(row.cost_usd.unwrap_or(0.0) + r.get::<_, f64>(base + 8)?);
            row.priced_calls += r.get::<_, i64>(base + 9)?;
            row.latency_sum += r.get::<_, f64>(base + 10)?;
            row.latency_count += r.get::<_, i64>(base + 11)?;
            if hist && let Some(text) = r.get_ref(base + 12)?.as_str_or_null().ok().flatten() {
                row.latency_hist.add_text(text);
            }
        }
        Ok(())
    };
    if let Some((first, end)) = days {
        let mut args = Vec::new();
        let filter = where_clause("day_ns", first, end, q, &mut args);
        let hist = if q.skip_percentiles {
            "NULL"
        } else {
            "latency_hist"
        };
        read_sums(
            &format!("SELECT day_ns{dim_cols}, {sum_cols}, {hist} FROM usage_days{filter}"),
            &args,
            !q.skip_percentiles,
        )?;
    }
    for (lo, hi) in &hour_ranges {
        let mut args = Vec::new();
        let filter = where_clause("hour_ns", *lo, *hi, q, &mut args);
        read_sums(
            &format!("SELECT hour_ns{dim_cols}, {sum_cols} FROM {rows_view}{filter}"),
            &args,
            false,
        )?;
    }
    for (_, row) in g.rows.iter_mut() {
        if row.priced_calls == 0 {
            row.cost_usd = None;
        }
    }
    if !q.skip_percentiles {
        for (lo, hi) in &hour_ranges {
            let mut args = Vec::new();
            let filter = where_clause("hour_ns", *lo, *hi, q, &mut args);
            let hist = format!("SELECT hour_ns{dim_cols}, bucket, count FROM {lat_view}{filter}");
            let mut stmt = conn.prepare(&hist)?;
            let mut it = stmt.query(params_from_iter(args.iter()))?;
            while let Some(r) = it.next()? {
                if let Some(i) = g.find(bucket_of(r.get(0)?), r, n)? {
                    let b: i64 = r.get(1 + n)?;
                    let c: i64 = r.get(2 + n)?;
                    g.rows[i].1.latency_hist.add(b, c);
                }
            }
        }
    }
    Ok(assemble(q, &dims, g.rows))
}

/// What one rollup row sums (either store's hourly rollups).
#[derive(Clone, Copy, Debug, Default)]
pub struct RollupSums {
    pub calls: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub priced_calls: i64,
    pub latency_ms_sum: f64,
    pub latency_count: i64,
}

/// The report from rows summed by a store that keeps no latency histogram (so p50,
/// p95 and p99 are null): each row its time bucket (0 without one), the grouped
/// dimensions' values ('' for not set) in the order of `q.group_by` sorted, and its sums.
pub fn report_of_sums(
    q: &UsageQuery,
    rows: impl IntoIterator<Item = (i64, Vec<String>, RollupSums)>,
    latencies: impl IntoIterator<Item = (i64, Vec<String>, i64, i64)>,
) -> UsageReport {
    let mut dims = q.group_by.clone();
    dims.sort();
    dims.dedup();
    let mut rows: Vec<(Key, UsageRow)> = rows
        .into_iter()
        .map(|(b, k, s)| {
            let row = UsageRow {
                calls: s.calls,
                errors: s.errors,
                input_tokens: s.input_tokens,
                output_tokens: s.output_tokens,
                cache_read_tokens: s.cache_read_tokens,
                cache_write_tokens: s.cache_write_tokens,
                reasoning_tokens: s.reasoning_tokens,
                total_tokens: s.total_tokens,
                cost_usd: (s.priced_calls > 0).then_some(s.cost_usd),
                priced_calls: s.priced_calls,
                latency_sum: s.latency_ms_sum,
                latency_count: s.latency_count,
                ..Default::default()
            };
            ((b, k), row)
        })
        .collect();
    let at: HashMap<Key, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.clone(), i))
        .collect();
    for (b, k, bucket, count) in latencies {
        if let Some(i) = at.get(&(b, k)) {
            rows[*i].1.latency_hist.add(bucket, count);
        }
    }
    // Calls stored before the histograms were kept (an older central's) leave a row's
    // histogram short of its latencies: no percentile is then better than a wrong one.
    if rows
        .iter()
        .any(|(_, r)| r.latency_hist.total() != r.latency_count)
    {
        for (_, r) in &mut rows {
            r.latency_hist = Hist::default();
        }
    }
    assemble(q, &dims, rows)
}

/// Rows sorted by bucket and dimension values, at most [`MAX_ROWS`], with the totals.
fn assemble(q: &UsageQuery, dims: &[Dim], mut rows: Vec<(Key, UsageRow)>) -> UsageReport {
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut totals = UsageRow::default();
    let mut out = Vec::with_capacity(rows.len().min(MAX_ROWS));
    for ((b, k), mut row) in rows {
        totals.absorb(&row);
        if out.len() >= MAX_ROWS {
            continue;
        }
        if q.bucket.is_some() {
            row.bucket_ns = Some(b);
            row.bucket_start = Some(format_ns(b));
        }
        for (d, v) in dims.iter().zip(k) {
            *row.dim_mut(*d) = Some((!v.is_empty()).then_some(v));
        }
        row.finish();
        out.push(row);
    }
    totals.finish();
    UsageReport {
        bucket: q.bucket.map(|b| match b {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }),
        group_by: dims.iter().map(|d| d.name()).collect(),
        from: q.from_ns.map(|f| format_ns(hour_of(f))),
        to: q.to_ns.map(format_ns),
        rows: out,
        totals,
    }
}

/// A CSV field: quoted when it holds a comma, quote or line break; a text starting
/// with `=`, `+`, `-`, `@`, tab or CR gets a leading `'` so a spreadsheet does not
/// run it as a formula (captured names are outside data).
fn csv_text(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_num<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The report's rows as CSV, header line first: `bucket_start` when bucketed, the
/// grouped dimensions, then the sums and latency figures (empty for `null`).
pub fn to_csv(r: &UsageReport) -> String {
    let dims: Vec<Dim> = r.group_by.iter().filter_map(|n| Dim::parse(n)).collect();
    let mut head: Vec<&str> = Vec::new();
    if r.bucket.is_some() {
        head.push("bucket_start");
    }
    head.extend(dims.iter().map(|d| d.column()));
    head.extend([
        "calls",
        "errors",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "total_tokens",
        "cost_usd",
        "unpriced_calls",
        "latency_ms_mean",
        "latency_ms_p50",
        "latency_ms_p95",
        "latency_ms_p99",
    ]);
    let mut out = head.join(",");
    out.push_str("\r\n");
    for row in &r.rows {
        let mut f: Vec<String> = Vec::with_capacity(head.len());
        if r.bucket.is_some() {
            f.push(csv_text(row.bucket_start.as_deref().unwrap_or_default()));
        }
        for d in &dims {
            f.push(csv_text(row.dim(*d).unwrap_or_default()));
        }
        f.extend([
            row.calls.to_string(),
            row.errors.to_string(),
            row.input_tokens.to_string(),
            row.output_tokens.to_string(),
            row.cache_read_tokens.to_string(),
            row.cache_write_tokens.to_string(),
            row.reasoning_tokens.to_string(),
            row.total_tokens.to_string(),
            csv_num(row.cost_usd),
            row.unpriced_calls.to_string(),
            csv_num(row.latency_ms.mean),
            csv_num(row.latency_ms.p50),
            csv_num(row.latency_ms.p95),
            csv_num(row.latency_ms.p99),
        ]);
        out.push_str(&f.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanId, SpanKind, SpanMerge, TraceId};
    use crate::store::{open_writer, write};
    use proptest::prelude::*;

    #[test]
    fn buckets_hold_the_error_bound() {
        for ms in [0.0015, 0.5, 1.0, 1.02, 7.3, 99.9, 1234.5, 86_400_000.0] {
            let v = bucket_value(latency_bucket(ms));
            assert!(
                (v - ms).abs() <= ms * LATENCY_RELATIVE_ERROR * (1.0 + 1e-9),
                "{ms} → {v}"
            );
        }
        assert_eq!(bucket_value(latency_bucket(0.0)), 0.0);
        assert_eq!(bucket_value(latency_bucket(-3.0)), 0.0);
    }

    /// One generated call: (hour offset, agent, session, model, status error, tokens, cost, latency).
    #[derive(Clone, Debug)]
    struct Gen {
        hour: i64,
        minute: i64,
        agent: Option<u8>,
        session: u8,
        model: u8,
        error: bool,
        tokens: (Option<i64>, Option<i64>, Option<i64>),
        cost: Option<u32>,
        latency_us: Option<u32>,
        kind_llm: bool,
    }

    fn gen_call() -> impl Strategy<Value = Gen> {
        (
            0i64..72,
            0i64..60,
            proptest::option::of(0u8..3),
            0u8..4,
            0u8..3,
            any::<bool>(),
            (
                proptest::option::of(0i64..50_000),
                proptest::option::of(0i64..5_000),
                proptest::option::of(0i64..1_000),
            ),
            proptest::option::of(0u32..1_000_000),
            proptest::option::of(0u32..120_000_000),
            prop::bool::weighted(0.85),
        )
            .prop_map(
                |(
                    hour,
                    minute,
                    agent,
                    session,
                    model,
                    error,
                    tokens,
                    cost,
                    latency_us,
                    kind_llm,
                )| {
                    Gen {
                        hour,
                        minute,
                        agent,
                        session,
                        model,
                        error,
                        tokens,
                        cost,
                        latency_us,
                        kind_llm,
                    }
                },
            )
    }

    const T0: i64 = 1_795_000_000 * 1_000_000_000;

    fn span_of(g: &Gen, i: usize) -> Span {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        let start = T0 + g.hour * HOUR_NS + g.minute * 60_000_000_000;
        let kind = if g.kind_llm {
            SpanKind::LlmCall
        } else {
            SpanKind::ToolCall
        };
        let mut s = Span::new(TraceId(id), SpanId([1; 8]), "chat".into(), kind, start);
        s.end_ns = g.latency_us.map(|us| start + us as i64 * 1000);
        s.agent_id = g.agent.map(|a| format!("agent-{a}"));
        s.session_id = Some(format!("s-{}", g.session));
        s.provider = Some("openai".into());
        s.request_model = Some(["gpt-4o", "o3", "claude-sonnet-4"][g.model as usize].into());
        s.status = if g.error {
            StatusCode::Error
        } else {
            StatusCode::Ok
        };
        (s.input_tokens, s.output_tokens, s.cache_read_tokens) = g.tokens;
        s.cost_usd = g.cost.map(|c| c as f64 / 1e6);
        s
    }

    type DirectKey = (i64, String, String, String);
    type DirectSums = (i64, i64, i64, i64, i64, i64, f64, i64, i64);

    /// The reference: the same figures aggregated straight from the raw spans.
    fn direct(conn: &Connection) -> BTreeMap<DirectKey, DirectSums> {
        let mut out = BTreeMap::new();
        let mut stmt = conn
            .prepare(
                "SELECT (start_ns - (start_ns % 3600000000000)), COALESCE(agent_id, ''),
                    COALESCE(session_id, ''), COALESCE(response_model, request_model, ''),
                    count(*), sum(status = 'error'), COALESCE(sum(input_tokens), 0),
                    COALESCE(sum(output_tokens), 0), COALESCE(sum(cache_read_tokens), 0),
                    sum(COALESCE(total_tokens, COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0))),
                    COALESCE(sum(cost_usd), 0), count(cost_usd), count(latency_ms)
                 FROM spans WHERE kind IN ('llm_call', 'embedding') GROUP BY 1, 2, 3, 4",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
                    (
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                        r.get(12)?,
                    ),
                ))
            })
            .unwrap();
        for r in rows {
            let (k, v) = r.unwrap();
            out.insert(k, v);
        }
        out
    }

    fn exact_quantile(mut v: Vec<f64>, q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    fn commit(conn: &mut Connection, recs: &[Record], hook: bool) {
        let tx = conn.transaction().unwrap();
        let out = write::write_records(&tx, recs, 0).unwrap();
        if hook {
            RollupHook
                .in_transaction(
                    &mut crate::store::sqlite::SqliteHookTx(&tx),
                    recs,
                    &out.effects,
                )
                .unwrap();
        }
        tx.commit().unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Rollups equal a direct aggregation of the spans: in random order (late
        /// arrivals), with duplicates, and after a stretch written without rollups
        /// (a restart after missed hours) followed by the startup backfill.
        #[test]
        fn rollups_equal_direct_aggregation(
            calls in proptest::collection::vec(gen_call(), 1..120),
            batch in 1usize..17,
            missed_from in 0usize..120,
            missed_len in 0usize..60,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut conn = open_writer(&dir.path().join("t.db")).unwrap();
            let spans: Vec<Record> = calls.iter().enumerate().map(|(i, g)| Record::Span(Box::new(span_of(g, i)))).collect();
            let missed = missed_from..missed_from + missed_len;
            let mut i = 0;
            while i < spans.len() {
                let end = (i + batch).min(spans.len());
                // Every batch also re-sends its first record: a duplicate must not count twice.
                let mut recs: Vec<Record> = spans[i..end].to_vec();
                recs.push(spans[i].clone());
                commit(&mut conn, &recs, !missed.contains(&i));
                if missed.contains(&i) && !missed.contains(&end) {
                    // The daemon comes back: startup backfill before new batches.
                    backfill(&conn).unwrap();
                }
                i = end;
            }
            backfill(&conn).unwrap();
            let want = direct(&conn);
            let got = query(&conn, &UsageQuery {
                group_by: vec![Dim::Agent, Dim::Session, Dim::Model],
                bucket: Some(Bucket::Hour),
                ..Default::default()
            }).unwrap();
            prop_assert_eq!(got.rows.len(), want.len());
            for row in &got.rows {
                let key = (
                    row.bucket_ns.unwrap(),
                    row.dim(Dim::Agent).unwrap_or("").to_string(),
                    row.dim(Dim::Session).unwrap_or("").to_string(),
                    row.dim(Dim::Model).unwrap_or("").to_string(),
                );
                let w = want.get(&key).expect("row in the direct aggregation");
                prop_assert_eq!((row.calls, row.errors, row.input_tokens, row.output_tokens, row.cache_read_tokens, row.total_tokens),
                    (w.0, w.1, w.2, w.3, w.4, w.5));
                prop_assert_eq!(row.calls - row.unpriced_calls, w.7);
                prop_assert!((row.cost_usd.unwrap_or(0.0) - w.6).abs() < 1e-9);
                prop_assert_eq!(row.latency_count, w.8);
            }
            // Days are the sums of their hours.
            let days = query(&conn, &UsageQuery { bucket: Some(Bucket::Day), ..Default::default() }).unwrap();
            let day_calls: i64 = days.rows.iter().map(|r| r.calls).sum();
            prop_assert_eq!(day_calls, got.totals.calls);
            // Percentiles over everything are within the stated error of the exact ones.
            let lat: Vec<f64> = {
                let mut st = conn.prepare("SELECT latency_ms FROM spans WHERE kind = 'llm_call' AND latency_ms IS NOT NULL").unwrap();
                st.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
            };
            let all = query(&conn, &UsageQuery::default()).unwrap();
            if lat.is_empty() {
                prop_assert_eq!(all.totals.latency_ms.p50, None);
            } else {
                for (q, got) in [(0.5, all.totals.latency_ms.p50), (0.95, all.totals.latency_ms.p95), (0.99, all.totals.latency_ms.p99)] {
                    let exact = exact_quantile(lat.clone(), q);
                    let got = got.unwrap();
                    prop_assert!((got - exact).abs() <= exact * LATENCY_RELATIVE_ERROR * (1.0 + 1e-9) + MIN_LATENCY_MS,
                        "q{} exact {} got {}", q, exact, got);
                }
            }
            // The rollups without the session dimension hold the same sums per agent and
            // model as those by session, before and after the hours are folded into days.
            let per_session = query(&conn, &UsageQuery {
                group_by: vec![Dim::Agent, Dim::Session, Dim::Model],
                ..Default::default()
            }).unwrap();
            let mut want: BTreeMap<(String, String), (i64, i64, i64, i64)> = BTreeMap::new();
            for r in &per_session.rows {
                let e = want.entry((r.dim(Dim::Agent).unwrap_or("").into(), r.dim(Dim::Model).unwrap_or("").into())).or_default();
                *e = (e.0 + r.calls, e.1 + r.total_tokens, e.2 + r.latency_count, e.3 + r.errors);
            }
            for fold in [false, true] {
                if fold {
                    fold_hours_into_days(&conn, T0 + 30 * DAY_NS).unwrap();
                }
                for by_session in [false, true] {
                    let mut group_by = vec![Dim::Agent, Dim::Model];
                    if by_session {
                        group_by.push(Dim::Session);
                    }
                    let got = query(&conn, &UsageQuery { group_by, ..Default::default() }).unwrap();
                    let mut sums: BTreeMap<(String, String), (i64, i64, i64, i64)> = BTreeMap::new();
                    for r in &got.rows {
                        let e = sums.entry((r.dim(Dim::Agent).unwrap_or("").into(), r.dim(Dim::Model).unwrap_or("").into())).or_default();
                        *e = (e.0 + r.calls, e.1 + r.total_tokens, e.2 + r.latency_count, e.3 + r.errors);
                    }
                    prop_assert_eq!(&sums, &want, "fold {} by session {}", fold, by_session);
                    prop_assert_eq!(got.totals.latency_ms.p95, all.totals.latency_ms.p95);
                }
            }
        }
    }

    /// A call as OpenClaw reports it: a start piece (no usage), an end piece (end time,
    /// status) and a usage piece (provider, model, tokens, cost). With `provisional`, the
    /// usage piece has made-up ids and joins the others by key (as a transcript row does).
    fn pieces_of(full: &Span, i: usize, provisional: bool) -> Vec<Span> {
        let key = format!("call-{i}");
        let real = SpanMerge {
            key: provisional.then(|| key.clone()),
            provisional: false,
        };
        let mut start = Span::new(
            full.trace_id,
            full.span_id,
            full.name.clone(),
            full.kind,
            full.start_ns,
        );
        start.agent_id = full.agent_id.clone();
        start.session_id = full.session_id.clone();
        start.merge = Some(real.clone());
        let mut end = start.clone();
        end.end_ns = full.end_ns;
        end.status = full.status;
        let mut usage = Span::new(
            full.trace_id,
            full.span_id,
            full.name.clone(),
            full.kind,
            full.start_ns,
        );
        if provisional {
            let mut t = [0xee; 16];
            t[..8].copy_from_slice(&(i as u64).to_be_bytes());
            usage.trace_id = TraceId(t);
            usage.span_id = SpanId([0xee; 8]);
        }
        usage.merge = Some(SpanMerge {
            key: provisional.then_some(key),
            provisional,
        });
        usage.provider = full.provider.clone();
        usage.request_model = full.request_model.clone();
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
        ) = (
            full.input_tokens,
            full.output_tokens,
            full.cache_read_tokens,
        );
        usage.cost_usd = full.cost_usd;
        vec![start, end, usage]
    }

    /// A small deterministic shuffle (the order pieces arrive in).
    fn shuffle<T>(v: &mut [T], mut seed: u64) {
        for i in (1..v.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v.swap(i, (seed % (i as u64 + 1)) as usize);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Calls reported in pieces, in any order, some re-delivered, some joining by key
        /// from made-up ids: the rollups equal a direct aggregation of the merged spans.
        #[test]
        fn rollups_of_pieces_equal_direct_aggregation(
            calls in proptest::collection::vec((gen_call(), any::<bool>()), 1..40),
            batch in 1usize..9,
            seed in 1u64..u64::MAX,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut conn = open_writer(&dir.path().join("t.db")).unwrap();
            let mut pieces: Vec<Record> = Vec::new();
            for (i, (g, provisional)) in calls.iter().enumerate() {
                for p in pieces_of(&span_of(g, i), i, *provisional) {
                    pieces.push(Record::Span(Box::new(p)));
                }
            }
            // Re-deliveries of a few pieces.
            let again: Vec<Record> = pieces.iter().step_by(5).cloned().collect();
            pieces.extend(again);
            shuffle(&mut pieces, seed);
            for chunk in pieces.chunks(batch) {
                commit(&mut conn, chunk, true);
            }
            let spans: i64 = conn.query_row("SELECT count(*) FROM spans", [], |r| r.get(0)).unwrap();
            prop_assert_eq!(spans as usize, calls.len(), "each call is one row");
            let want = direct(&conn);
            let got = query(&conn, &UsageQuery {
                group_by: vec![Dim::Agent, Dim::Session, Dim::Model],
                bucket: Some(Bucket::Hour),
                ..Default::default()
            }).unwrap();
            prop_assert_eq!(got.rows.len(), want.len(), "no rows left behind by pieces that moved");
            for row in &got.rows {
                let key = (
                    row.bucket_ns.unwrap(),
                    row.dim(Dim::Agent).unwrap_or("").to_string(),
                    row.dim(Dim::Session).unwrap_or("").to_string(),
                    row.dim(Dim::Model).unwrap_or("").to_string(),
                );
                let w = want.get(&key).expect("row in the direct aggregation");
                prop_assert_eq!((row.calls, row.errors, row.input_tokens, row.output_tokens, row.cache_read_tokens, row.total_tokens),
                    (w.0, w.1, w.2, w.3, w.4, w.5));
                prop_assert_eq!(row.calls - row.unpriced_calls, w.7);
                prop_assert!((row.cost_usd.unwrap_or(0.0) - w.6).abs() < 1e-9);
                prop_assert_eq!(row.latency_count, w.8);
            }
            let hist: i64 = conn.query_row("SELECT COALESCE(sum(count), 0) FROM usage_latency_hourly", [], |r| r.get(0)).unwrap();
            prop_assert_eq!(hist, got.totals.latency_count);
            // The day rollups (histogram text merged at write time) followed the same
            // take-backs: whole-range totals and percentiles equal the hours'.
            let days = query(&conn, &UsageQuery::default()).unwrap();
            prop_assert_eq!((days.totals.calls, days.totals.total_tokens, days.totals.latency_count),
                (got.totals.calls, got.totals.total_tokens, got.totals.latency_count));
            let (d, h) = (&days.totals.latency_ms, &got.totals.latency_ms);
            prop_assert_eq!((d.p50, d.p95, d.p99), (h.p50, h.p95, h.p99));
            prop_assert!((d.mean.unwrap_or(0.0) - h.mean.unwrap_or(0.0)).abs() < 1e-6);
            let empty: i64 = conn.query_row("SELECT count(*) FROM usage_days WHERE calls <= 0", [], |r| r.get(0)).unwrap();
            prop_assert_eq!(empty, 0);
        }
    }

    #[test]
    fn filters_ranges_and_unknown_cost() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_writer(&dir.path().join("t.db")).unwrap();
        let mut a = span_of(
            &Gen {
                hour: 0,
                minute: 5,
                agent: Some(1),
                session: 1,
                model: 0,
                error: false,
                tokens: (Some(10), Some(5), None),
                cost: None,
                latency_us: Some(1000),
                kind_llm: true,
            },
            0,
        );
        a.cost_usd = None;
        let mut b = a.clone();
        b.trace_id = TraceId([9; 16]);
        b.start_ns += 2 * HOUR_NS;
        b.cost_usd = Some(0.5);
        commit(
            &mut conn,
            &[Record::Span(Box::new(a)), Record::Span(Box::new(b))],
            true,
        );
        let all = query(&conn, &UsageQuery::default()).unwrap();
        assert_eq!(all.totals.calls, 2);
        assert_eq!(all.totals.unpriced_calls, 1);
        assert_eq!(all.totals.cost_usd, Some(0.5));
        let first_hour = query(
            &conn,
            &UsageQuery {
                from_ns: Some(T0 + 10 * 60_000_000_000),
                to_ns: Some(T0 + HOUR_NS),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(first_hour.totals.calls, 1, "from is widened to its hour");
        assert_eq!(first_hour.totals.cost_usd, None, "unknown, not zero");
        let other = query(
            &conn,
            &UsageQuery {
                filters: vec![(Dim::Agent, "agent-2".into())],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(other.totals.calls, 0);
        assert!(other.rows.is_empty());
    }

    /// Calls, tokens, cost and the latencies of one (day, model) of the reference.
    type RefSums = (i64, i64, f64, Vec<f64>);

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        /// Ranges read from the day rollups (`usage_days`, whole days) and the hours
        /// around them: each row's sums equal a direct aggregation of the spans, and its
        /// p50/p95/p99 are within the histogram's stated bound of the exact nearest-rank
        /// latencies. Then the same database as migration 9 found it (no `usage_days`,
        /// some days folded) migrates to the same answers.
        #[test]
        fn day_rollups_hold_sums_and_percentiles_within_the_bound(
            calls in proptest::collection::vec(gen_call(), 1..150),
            batch in 1usize..17,
            ranges in proptest::collection::vec((0i64..80 * 60, 0i64..80 * 60), 1..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut conn = open_writer(&dir.path().join("t.db")).unwrap();
            let spans: Vec<Span> = calls.iter().enumerate().map(|(i, g)| span_of(g, i)).collect();
            let recs: Vec<Record> = spans.iter().map(|s| Record::Span(Box::new(s.clone()))).collect();
            for chunk in recs.chunks(batch) {
                commit(&mut conn, chunk, true);
            }
            let day_rows: i64 = conn.query_row("SELECT count(*) FROM usage_days", [], |r| r.get(0)).unwrap();
            // Only LLM calls roll up: a run of tool spans alone leaves no day row.
            prop_assert_eq!(day_rows > 0, calls.iter().any(|g| g.kind_llm));
            const MIN: i64 = 60_000_000_000;
            let ask = |conn: &Connection, from: Option<i64>, to: Option<i64>, bucket: Option<Bucket>| {
                query(conn, &UsageQuery {
                    group_by: vec![Dim::Model],
                    bucket,
                    from_ns: from,
                    to_ns: to,
                    ..Default::default()
                }).unwrap()
            };
            let mut asked = vec![(None, None)];
            asked.extend(ranges.iter().map(|(a, b)| (Some(T0 + a * MIN), Some(T0 + b * MIN))));
            asked.push((Some(T0 + 90 * MIN), None));
            asked.push((None, Some(T0 + 50 * HOUR_NS)));
            for (from, to) in &asked {
                for bucket in [None, Some(Bucket::Day)] {
                    let got = ask(&conn, *from, *to, bucket);
                    // The reference: the LLM calls whose hour is in the range, by (day, model).
                    let mut want: BTreeMap<(i64, String), RefSums> = BTreeMap::new();
                    for sp in spans.iter().filter(|s| s.kind == SpanKind::LlmCall) {
                        let h = hour_of(sp.start_ns);
                        if from.is_some_and(|f| h < hour_of(f)) || to.is_some_and(|t| h >= t) {
                            continue;
                        }
                        let day = if bucket.is_some() { day_of(sp.start_ns) } else { 0 };
                        let model = sp.request_model.clone().unwrap_or_default();
                        let e = want.entry((day, model)).or_default();
                        e.0 += 1;
                        e.1 += sp.input_tokens.unwrap_or(0) + sp.output_tokens.unwrap_or(0);
                        e.2 += sp.cost_usd.unwrap_or(0.0);
                        if let Some(l) = sp.latency_ms() {
                            e.3.push(l.max(0.0));
                        }
                    }
                    prop_assert_eq!(got.rows.len(), want.len(), "{:?} {:?} {:?}", from, to, bucket);
                    for row in &got.rows {
                        let key = (row.bucket_ns.unwrap_or(0), row.dim(Dim::Model).unwrap_or("").to_string());
                        let w = want.get(&key).expect("row in the reference");
                        prop_assert_eq!((row.calls, row.total_tokens), (w.0, w.1));
                        prop_assert!((row.cost_usd.unwrap_or(0.0) - w.2).abs() < 1e-9);
                        prop_assert_eq!(row.latency_count, w.3.len() as i64);
                        for (q, p) in [(0.5, row.latency_ms.p50), (0.95, row.latency_ms.p95), (0.99, row.latency_ms.p99)] {
                            if w.3.is_empty() {
                                prop_assert_eq!(p, None);
                                continue;
                            }
                            let exact = exact_quantile(w.3.clone(), q);
                            let p = p.unwrap();
                            prop_assert!((p - exact).abs() <= exact * LATENCY_RELATIVE_ERROR * (1.0 + 1e-9) + MIN_LATENCY_MS,
                                "q{} exact {} got {} ({:?} {:?})", q, exact, p, from, to);
                        }
                    }
                }
            }
            // A database as migration 9 finds it: no day rollups, the first day's hours
            // folded by retention. Migrating gives the same answers, percentiles included.
            fold_hours_into_days(&conn, T0 + DAY_NS).unwrap();
            let before: Vec<_> = asked.iter().map(|(f, t)| ask(&conn, *f, *t, Some(Bucket::Day)).rows).collect();
            // (The later migrations' tables go too, so that migrating runs them again.)
            conn.execute_batch(
                "DROP TABLE usage_days; DROP TABLE audit_chain; DROP TABLE audit_heads; \
                 DROP TABLE activity; DROP TABLE run_sampling; DROP TABLE codec_dicts; \
                 DROP TABLE span_changes; PRAGMA user_version = 8;",
            )
            .unwrap();
            // A reader of a schema-8 database (an older daemon's) answers from the hours.
            let old: Vec<_> = asked.iter().map(|(f, t)| ask(&conn, *f, *t, Some(Bucket::Day)).rows).collect();
            crate::store::schema::migrate(&mut conn).unwrap();
            let after: Vec<_> = asked.iter().map(|(f, t)| ask(&conn, *f, *t, Some(Bucket::Day)).rows).collect();
            for (o, a) in old.iter().zip(&after) {
                prop_assert_eq!(o.iter().map(|r| (r.bucket_ns, r.calls, r.latency_ms.p95)).collect::<Vec<_>>(),
                    a.iter().map(|r| (r.bucket_ns, r.calls, r.latency_ms.p95)).collect::<Vec<_>>());
            }
            prop_assert_eq!(before.len(), after.len());
            for (b, a) in before.iter().zip(&after) {
                prop_assert_eq!(b.len(), a.len());
                for (b, a) in b.iter().zip(a) {
                    prop_assert_eq!((b.bucket_ns, b.calls, b.total_tokens, &b.latency_ms.p50, &b.latency_ms.p95, &b.latency_ms.p99),
                        (a.bucket_ns, a.calls, a.total_tokens, &a.latency_ms.p50, &a.latency_ms.p95, &a.latency_ms.p99));
                    prop_assert!((b.cost_usd.unwrap_or(0.0) - a.cost_usd.unwrap_or(0.0)).abs() < 1e-9);
                }
            }
        }
    }

    #[test]
    fn hist_text_round_trips_and_merges() {
        let mut a = Hist::default();
        for (b, c) in [(5, 2), (-3, 1), (ZERO_BUCKET, 4), (40, 1)] {
            a.add(b, c);
        }
        let mut b = Hist::default();
        b.add_text(&a.to_text());
        assert_eq!(
            b.buckets().collect::<Vec<_>>(),
            a.buckets().collect::<Vec<_>>()
        );
        b.add_text("7:3,junk,5:-2,:4,8:,9:1x,99999999999999999999:1");
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(m.total(), 2 * a.total() + 1);
        assert_eq!(m.quantile(0.01), Some(0.0));
        let mut btree = BTreeMap::new();
        for (k, c) in m.buckets() {
            btree.insert(k, c);
        }
        for q in [0.1, 0.5, 0.9, 1.0] {
            assert_eq!(m.quantile(q), quantile(&btree, q));
        }
    }
}

#[cfg(test)]
mod csv_tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_text("gpt-4o"), "gpt-4o");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_text("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_text("@sum,x"), "\"'@sum,x\"");
        assert_eq!(csv_num::<f64>(None), "");
    }
}
