//! `verify`'s check of the derived tables: trace summaries and the usage rollups are
//! recomputed from the stored spans (which the chain covers) and compared; the rollups
//! that outlive their spans are checked against each other (the tables without the
//! session dimension against those with it, `usage_days` against the hours and folded
//! days). A mismatch names the table and the row's key.
//!
//! What cannot be recomputed is left out, not guessed: a trace that retention took
//! some spans of (the prune entries name it), and usage hours whose spans may be gone
//! or were never stored: hours at or before the latest start of a pruned span (the
//! prune and trim entries carry it) and, with age retention, hours at or before the
//! retention cutoff (records older than it are counted but not stored).

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::Connection;

use super::audit_verify::Problem;
use crate::analytics::usage::{HOUR_NS, Hist, day_of, hour_of, latency_bucket};

/// What the chain says about rows retention removed.
#[derive(Clone, Debug, Default)]
pub struct Pruned {
    /// The latest start of a span retention deleted.
    pub max_start_ns: Option<i64>,
    /// Traces that lost some of their spans to retention (hex ids).
    pub partial_traces: HashSet<String>,
}

impl Pruned {
    /// Takes in what a `prune` (a `Deleted`) or `trim` (a `Trimmed`) entry says.
    pub fn absorb_detail(&mut self, op: &str, detail: &str) {
        let (max, traces) = match op {
            "prune" => match serde_json::from_str::<super::audit::Deleted>(detail) {
                Ok(d) => (d.max_start_ns, d.partial_traces),
                Err(_) => return,
            },
            "trim" => match serde_json::from_str::<super::audit::Trimmed>(detail) {
                Ok(t) => (t.pruned_max_start_ns, t.partial_traces),
                Err(_) => return,
            },
            _ => return,
        };
        self.max_start_ns = self.max_start_ns.max(max);
        self.partial_traces.extend(traces);
    }
}

/// Sums of one usage row.
#[derive(Clone, Debug, Default, PartialEq)]
struct Sums {
    ints: [i64; 10],
    cost_usd: f64,
    latency_ms_sum: f64,
}

const INT_COLS: [&str; 10] = [
    "calls",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "priced_calls",
    "latency_count",
];

impl Sums {
    fn absorb(&mut self, o: &Sums) {
        for (a, b) in self.ints.iter_mut().zip(o.ints) {
            *a += b;
        }
        self.cost_usd += o.cost_usd;
        self.latency_ms_sum += o.latency_ms_sum;
    }
    /// The first figure that differs: (column, stored, recomputed).
    fn differs(&self, want: &Sums) -> Option<(&'static str, String, String)> {
        for (i, c) in INT_COLS.iter().enumerate() {
            if self.ints[i] != want.ints[i] {
                return Some((c, self.ints[i].to_string(), want.ints[i].to_string()));
            }
        }
        if !close(self.cost_usd, want.cost_usd) {
            return Some((
                "cost_usd",
                self.cost_usd.to_string(),
                want.cost_usd.to_string(),
            ));
        }
        if !close(self.latency_ms_sum, want.latency_ms_sum) {
            return Some((
                "latency_ms_sum",
                self.latency_ms_sum.to_string(),
                want.latency_ms_sum.to_string(),
            ));
        }
        None
    }
}

/// Equal but for the rounding of sums added in another order.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

const SUM_COLS: &str = "calls, errors, input_tokens, output_tokens, cache_read_tokens, \
    cache_write_tokens, reasoning_tokens, total_tokens, priced_calls, latency_count, cost_usd, \
    latency_ms_sum";

fn sums_at(r: &rusqlite::Row, at: usize) -> rusqlite::Result<Sums> {
    let mut s = Sums::default();
    for i in 0..10 {
        s.ints[i] = r.get(at + i)?;
    }
    s.cost_usd = r.get(at + 10)?;
    s.latency_ms_sum = r.get(at + 11)?;
    Ok(s)
}

/// (time, agent, session, user, provider, model).
type Key = (i64, String, String, String, String, String);

fn key_text(table: &str, k: &Key) -> String {
    let time = crate::util::time::format_ns(k.0);
    if table == "usage_days" {
        format!(
            "day {time}, agent '{}', user '{}', provider '{}', model '{}'",
            k.1, k.3, k.4, k.5
        )
    } else {
        format!(
            "{time}, agent '{}', session '{}', user '{}', provider '{}', model '{}'",
            k.1, k.2, k.3, k.4, k.5
        )
    }
}

fn read_rows(
    conn: &Connection,
    table: &str,
    time_col: &str,
) -> rusqlite::Result<HashMap<Key, Sums>> {
    let session = if table == "usage_days" {
        "''"
    } else {
        "session_id"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {time_col}, agent_id, {session}, user_id, provider, model, {SUM_COLS} FROM {table}"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = HashMap::new();
    while let Some(r) = rows.next()? {
        let k = key_at(r)?;
        out.insert(k, sums_at(r, 6)?);
    }
    Ok(out)
}

/// A rollup row's key from its first six columns (time, agent, session, user, provider,
/// model).
fn key_at(r: &rusqlite::Row) -> rusqlite::Result<Key> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

/// (key, bucket) -> count.
fn read_buckets(
    conn: &Connection,
    table: &str,
    time_col: &str,
) -> rusqlite::Result<HashMap<(Key, i64), i64>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {time_col}, agent_id, session_id, user_id, provider, model, bucket, count FROM {table}"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = HashMap::new();
    while let Some(r) = rows.next()? {
        let k = key_at(r)?;
        *out.entry((k, r.get::<_, i64>(6)?)).or_insert(0) += r.get::<_, i64>(7)?;
    }
    Ok(out)
}

fn problem(table: &str, message: String) -> Problem {
    Problem {
        kind: "derived",
        seq: None,
        table: Some(table.to_string()),
        row_id: None,
        message,
    }
}

/// Compares `stored` with `want` over the keys `scope` accepts; reports each row
/// edited, missing or added.
fn compare(
    table: &str,
    stored: &HashMap<Key, Sums>,
    want: &HashMap<Key, Sums>,
    scope: impl Fn(&Key) -> bool,
    problems: &mut Vec<Problem>,
) -> u64 {
    let mut checked = 0;
    let mut keys: Vec<&Key> = stored
        .keys()
        .chain(want.keys())
        .filter(|k| scope(k))
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        checked += 1;
        let zero = Sums::default();
        match (stored.get(k), want.get(k)) {
            (Some(s), w) => {
                if let Some((col, got, exp)) = s.differs(w.unwrap_or(&zero)) {
                    problems.push(problem(
                        table,
                        format!(
                            "{table} row ({}): {col} is {got}, the rows it sums give {exp}: the rollup was edited",
                            key_text(table, k)
                        ),
                    ));
                }
            }
            (None, Some(w)) if w.ints[0] != 0 => problems.push(problem(
                table,
                format!(
                    "{table} row ({}) is missing: the rows it sums give {} calls",
                    key_text(table, k),
                    w.ints[0]
                ),
            )),
            _ => {}
        }
    }
    checked
}

fn compare_buckets(
    table: &str,
    stored: &HashMap<(Key, i64), i64>,
    want: &HashMap<(Key, i64), i64>,
    scope: impl Fn(&Key) -> bool,
    problems: &mut Vec<Problem>,
) -> u64 {
    let mut keys: Vec<&(Key, i64)> = stored
        .keys()
        .chain(want.keys())
        .filter(|(k, _)| scope(k))
        .collect();
    keys.sort();
    keys.dedup();
    let mut checked = 0;
    for k in keys {
        checked += 1;
        let (s, w) = (
            stored.get(k).copied().unwrap_or(0),
            want.get(k).copied().unwrap_or(0),
        );
        if s != w {
            problems.push(problem(
                table,
                format!(
                    "{table} row ({}, bucket {}): count is {s}, the rows it sums give {w}: the rollup was edited",
                    key_text(table, &k.0),
                    k.1
                ),
            ));
        }
    }
    checked
}

fn sum_without_session<V: Clone>(m: &HashMap<Key, V>, add: impl Fn(&mut V, &V)) -> HashMap<Key, V> {
    let mut out: HashMap<Key, V> = HashMap::new();
    for (k, v) in m {
        let nk = (
            k.0,
            k.1.clone(),
            String::new(),
            k.3.clone(),
            k.4.clone(),
            k.5.clone(),
        );
        match out.get_mut(&nk) {
            Some(o) => add(o, v),
            None => {
                out.insert(nk, v.clone());
            }
        }
    }
    out
}

fn buckets_without_session(m: &HashMap<(Key, i64), i64>) -> HashMap<(Key, i64), i64> {
    let mut out = HashMap::new();
    for ((k, b), c) in m {
        let nk = (
            k.0,
            k.1.clone(),
            String::new(),
            k.3.clone(),
            k.4.clone(),
            k.5.clone(),
        );
        *out.entry((nk, *b)).or_insert(0) += c;
    }
    out
}

fn to_day(k: &Key) -> Key {
    (
        day_of(k.0),
        k.1.clone(),
        String::new(),
        k.3.clone(),
        k.4.clone(),
        k.5.clone(),
    )
}

/// What a span contributes to the trace summary and the rollups.
struct SpanRow {
    trace_id: Vec<u8>,
    kind: String,
    start_ns: i64,
    end_ns: Option<i64>,
    status: String,
    agent: Option<String>,
    session: Option<String>,
    user: Option<String>,
    provider: Option<String>,
    model: String,
    input: Option<i64>,
    output: Option<i64>,
    total: Option<i64>,
    cache_read: Option<i64>,
    cache_write: Option<i64>,
    reasoning: Option<i64>,
    cost: Option<f64>,
}

/// A trace summary's figures.
#[derive(Clone, Debug, Default, PartialEq)]
struct TraceSums {
    start_ns: i64,
    end_ns: Option<i64>,
    status: String,
    ints: [i64; 9],
    cost: Option<f64>,
}

const TRACE_INTS: [&str; 9] = [
    "span_count",
    "error_count",
    "llm_calls",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
];

/// Recomputes the derived tables and compares. `pruned`: what retention removed, per
/// the chain; `expire_before_ns`: the age-retention cutoff when it is on (records
/// older than it may be counted without being stored). Returns the rows compared.
pub fn check(
    conn: &Connection,
    pruned: &Pruned,
    expire_before_ns: Option<i64>,
    problems: &mut Vec<Problem>,
) -> rusqlite::Result<u64> {
    let mut checked = 0u64;
    // One pass over the spans.
    let mut traces: HashMap<Vec<u8>, TraceSums> = HashMap::new();
    let mut hours: HashMap<Key, Sums> = HashMap::new();
    let mut hour_buckets: HashMap<(Key, i64), i64> = HashMap::new();
    {
        let mut stmt = conn.prepare(
            "SELECT trace_id, kind, start_ns, end_ns, status, agent_id, session_id, user_id,
                provider, COALESCE(response_model, request_model, ''), input_tokens,
                output_tokens, total_tokens, cache_read_tokens, cache_write_tokens,
                reasoning_tokens, cost_usd FROM spans",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let s = SpanRow {
                trace_id: r.get(0)?,
                kind: r.get(1)?,
                start_ns: r.get(2)?,
                end_ns: r.get(3)?,
                status: r.get(4)?,
                agent: r.get(5)?,
                session: r.get(6)?,
                user: r.get(7)?,
                provider: r.get(8)?,
                model: r.get(9)?,
                input: r.get(10)?,
                output: r.get(11)?,
                total: r.get(12)?,
                cache_read: r.get(13)?,
                cache_write: r.get(14)?,
                reasoning: r.get(15)?,
                cost: r.get(16)?,
            };
            let usage = s.kind == "llm_call" || s.kind == "embedding";
            let n = |v: Option<i64>| v.unwrap_or(0);
            let total = s.total.unwrap_or(n(s.input) + n(s.output));
            let t = traces
                .entry(s.trace_id.clone())
                .or_insert_with(|| TraceSums {
                    start_ns: s.start_ns,
                    status: "unset".into(),
                    ..Default::default()
                });
            t.start_ns = t.start_ns.min(s.start_ns);
            t.end_ns = t.end_ns.max(s.end_ns);
            if s.status == "error" || t.status == "error" {
                t.status = "error".into();
            } else if s.status == "ok" {
                t.status = "ok".into();
            }
            let u = |v: Option<i64>| if usage { n(v) } else { 0 };
            let add = [
                1,
                (s.status == "error") as i64,
                (s.kind == "llm_call") as i64,
                (s.kind == "tool_call") as i64,
                u(s.input),
                u(s.output),
                if usage { total } else { 0 },
                u(s.cache_read),
                u(s.cache_write),
            ];
            for (a, b) in t.ints.iter_mut().zip(add) {
                *a += b;
            }
            if usage && let Some(c) = s.cost {
                t.cost = Some(t.cost.unwrap_or(0.0) + c);
            }
            if !usage {
                continue;
            }
            let key: Key = (
                hour_of(s.start_ns),
                s.agent.unwrap_or_default(),
                s.session.unwrap_or_default(),
                s.user.unwrap_or_default(),
                s.provider.unwrap_or_default(),
                s.model,
            );
            // As the rollups take it (`Span::latency_ms`): from the times, not the column.
            let latency = s.end_ns.map(|e| ((e - s.start_ns) as f64 / 1e6).max(0.0));
            if let Some(ms) = latency {
                *hour_buckets
                    .entry((key.clone(), latency_bucket(ms)))
                    .or_insert(0) += 1;
            }
            let h = hours.entry(key).or_default();
            let add = [
                1,
                (s.status == "error") as i64,
                n(s.input),
                n(s.output),
                n(s.cache_read),
                n(s.cache_write),
                n(s.reasoning),
                total,
                s.cost.is_some() as i64,
                latency.is_some() as i64,
            ];
            for (a, b) in h.ints.iter_mut().zip(add) {
                *a += b;
            }
            h.cost_usd += s.cost.unwrap_or(0.0);
            h.latency_ms_sum += latency.unwrap_or(0.0);
        }
    }

    // Trace summaries.
    {
        let mut stmt = conn.prepare(
            "SELECT trace_id, start_ns, end_ns, status, span_count, error_count, llm_calls,
                tool_calls, input_tokens, output_tokens, total_tokens, cache_read_tokens,
                cache_write_tokens, cost_usd FROM traces",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: Vec<u8> = r.get(0)?;
            let hex = crate::util::hex::encode(&id);
            let want = traces.remove(&id);
            if pruned.partial_traces.contains(&hex) {
                continue;
            }
            checked += 1;
            let mut got = TraceSums {
                start_ns: r.get(1)?,
                end_ns: r.get(2)?,
                status: r.get(3)?,
                cost: r.get(13)?,
                ..Default::default()
            };
            for i in 0..9 {
                got.ints[i] = r.get(4 + i)?;
            }
            let Some(want) = want else {
                problems.push(problem(
                    "traces",
                    format!(
                        "traces row {hex} has no spans: the summary was added or its spans deleted"
                    ),
                ));
                continue;
            };
            let mut diff: Option<(&str, String, String)> = None;
            for (i, c) in TRACE_INTS.iter().enumerate() {
                if got.ints[i] != want.ints[i] {
                    diff = Some((c, got.ints[i].to_string(), want.ints[i].to_string()));
                    break;
                }
            }
            let show = |v: Option<i64>| v.map_or("null".to_string(), |v| v.to_string());
            let showf = |v: Option<f64>| v.map_or("null".to_string(), |v| v.to_string());
            if diff.is_none() && got.start_ns != want.start_ns {
                diff = Some((
                    "start_ns",
                    got.start_ns.to_string(),
                    want.start_ns.to_string(),
                ));
            }
            if diff.is_none() && got.end_ns != want.end_ns {
                diff = Some(("end_ns", show(got.end_ns), show(want.end_ns)));
            }
            if diff.is_none() && got.status != want.status {
                diff = Some(("status", got.status.clone(), want.status.clone()));
            }
            let cost_ok = match (got.cost, want.cost) {
                (None, None) => true,
                (Some(a), Some(b)) => close(a, b),
                _ => false,
            };
            if diff.is_none() && !cost_ok {
                diff = Some(("cost_usd", showf(got.cost), showf(want.cost)));
            }
            if let Some((col, g, w)) = diff {
                problems.push(problem(
                    "traces",
                    format!(
                        "traces row {hex}: {col} is {g}, its spans give {w}: the summary was edited"
                    ),
                ));
            }
        }
        let mut left: Vec<String> = traces.keys().map(|k| crate::util::hex::encode(k)).collect();
        left.sort();
        for hex in left {
            checked += 1;
            problems.push(problem(
                "traces",
                format!("traces row {hex} is missing: spans of that trace are stored"),
            ));
        }
    }

    // Usage hours that every span of is still stored.
    let after = pruned
        .max_start_ns
        .into_iter()
        .chain(expire_before_ns)
        .max()
        .map(|w| hour_of(w) + HOUR_NS)
        .unwrap_or(i64::MIN);
    let recent = |k: &Key| k.0 >= after;
    let hourly = read_rows(conn, "usage_hourly", "hour_ns")?;
    checked += compare("usage_hourly", &hourly, &hours, recent, problems);
    let lat_hourly = read_buckets(conn, "usage_latency_hourly", "hour_ns")?;
    checked += compare_buckets(
        "usage_latency_hourly",
        &lat_hourly,
        &hour_buckets,
        recent,
        problems,
    );

    // The tables without sessions: the sums of those with them, at every age.
    let add_sums = |a: &mut Sums, b: &Sums| a.absorb(b);
    let hourly_ns = read_rows(conn, "usage_hourly_nosession", "hour_ns")?;
    checked += compare(
        "usage_hourly_nosession",
        &hourly_ns,
        &sum_without_session(&hourly, add_sums),
        |_| true,
        problems,
    );
    let daily = read_rows(conn, "usage_daily", "day_ns")?;
    let daily_ns = read_rows(conn, "usage_daily_nosession", "day_ns")?;
    checked += compare(
        "usage_daily_nosession",
        &daily_ns,
        &sum_without_session(&daily, add_sums),
        |_| true,
        problems,
    );
    let lat_hourly_ns = read_buckets(conn, "usage_latency_hourly_nosession", "hour_ns")?;
    checked += compare_buckets(
        "usage_latency_hourly_nosession",
        &lat_hourly_ns,
        &buckets_without_session(&lat_hourly),
        |_| true,
        problems,
    );
    let lat_daily = read_buckets(conn, "usage_latency_daily", "day_ns")?;
    let lat_daily_ns = read_buckets(conn, "usage_latency_daily_nosession", "day_ns")?;
    checked += compare_buckets(
        "usage_latency_daily_nosession",
        &lat_daily_ns,
        &buckets_without_session(&lat_daily),
        |_| true,
        problems,
    );

    // usage_days: the hours and folded days without sessions, by UTC day.
    if super::super::analytics::usage::has_day_rollups(conn)? {
        let mut want: HashMap<Key, Sums> = HashMap::new();
        let mut want_hist: HashMap<Key, BTreeMap<i64, i64>> = HashMap::new();
        for (k, s) in hourly_ns.iter().chain(daily_ns.iter()) {
            want.entry(to_day(k)).or_default().absorb(s);
        }
        for ((k, b), c) in lat_hourly_ns.iter().chain(lat_daily_ns.iter()) {
            *want_hist
                .entry(to_day(k))
                .or_default()
                .entry(*b)
                .or_insert(0) += c;
        }
        let days = read_rows(conn, "usage_days", "day_ns")?;
        checked += compare("usage_days", &days, &want, |_| true, problems);
        let mut stmt = conn.prepare(
            "SELECT day_ns, agent_id, user_id, provider, model, latency_hist FROM usage_days",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let k: Key = (
                r.get(0)?,
                r.get(1)?,
                String::new(),
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            );
            let mut h = Hist::default();
            if let Some(t) = r.get::<_, Option<String>>(5)? {
                h.add_text(&t);
            }
            let got: BTreeMap<i64, i64> = h.buckets().filter(|(_, c)| *c != 0).collect();
            let exp: BTreeMap<i64, i64> = want_hist
                .remove(&k)
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, c)| *c != 0)
                .collect();
            if got != exp {
                problems.push(problem(
                    "usage_days",
                    format!(
                        "usage_days row ({}): latency_hist differs from the latency rollups it sums: the rollup was edited",
                        key_text("usage_days", &k)
                    ),
                ));
            }
        }
    }
    Ok(checked)
}
