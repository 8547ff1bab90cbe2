//! Sampling that keeps the numbers exact (`OCT_SAMPLING`).
//!
//! A run (a trace) is decided once: when its root span has ended, or
//! `OCT_SAMPLING_DECISION_WAIT` after its first span if no ended root came. It is
//! kept when it has an error, when it is slower or costlier than a threshold, when
//! its agent's baseline flags it, or when its trace id falls in the ratio; otherwise
//! it is dropped.
//!
//! Why the totals stay exact, and cheaply: everything that adds up (usage rollups,
//! budgets, `/metrics`, the per-run histograms) is kept by write hooks from the
//! records of each committed batch, never by re-reading span rows. So every span
//! is written and counted as before, and a dropped run loses its rows only after
//! it was counted: the decision job deletes its spans and its text-bearing events,
//! and nothing already summed changes. The rows go one decision wait after the
//! decision, not at once: a late piece of a call (OpenClaw's transcript copy of a call
//! the plugin reported) still merges into its row and counts once, as without
//! sampling. What reads rows rather than sums is kept whole for a dropped run:
//! - its `traces` summary row (run counts, tool calls, cost by run, sessions);
//! - one *anchor* span (its root, or its earliest span), texts cleared, so a
//!   baseline still finds the run's kind, start and end;
//! - its tool-call behaviour (retry rate, tool error rate, blast radius), stored in
//!   `run_sampling` before its tool spans go, and read by the baselines instead of
//!   the spans (`dropped_behaviour`);
//! - its evaluation scores and baseline events.
//!
//! A dropped run thus costs one span row and one `run_sampling` row instead of all
//! its spans, texts and events; the decision costs a few indexed statements per run
//! (a baseline check only for agent runs that no cheaper rule keeps).
//!
//! Sinks read the store by their own cursor: `sinks::scan` reads spans and events
//! only up to `ship_upto` (the rows before the first row of any undecided run),
//! and never the rows of a dropped run (its anchor, late pieces). Kept runs' spans
//! carry `sampling.ratio` (the probability the run was kept with: 1 for a run a
//! rule kept, the ratio for one kept by its trace id, so a backend scales counts by
//! 1/ratio) and `sampling.rule` (why it was kept).
//!
//! The ratio is decided by the trace id alone, as OpenTelemetry's consistent
//! probability sampling does: the id's last 56 bits as a number R, kept when
//! R ≥ (1 − ratio) · 2^56. A sidecar and a central instance decide alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::baseline::{self, BaselineSettings, ToolBehaviour, ToolCall};
use crate::model::{Record, SpanId, TraceId, now_ns};
use crate::pipeline::{HookError, HookTx, Pipeline, WriteHook};
use crate::store::StoreError;
use crate::store::rows::{Dialect, Rows};
use crate::store::write::WriteEffect;

/// The decisions, and what a dropped run keeps (see the module comment).
/// kept: NULL while undecided, 1 kept, 0 dropped. first_span_id: the run's first
/// stored span row (sinks ship nothing from there on until the run is decided).
pub const MIGRATION: &str = r#"
    CREATE TABLE run_sampling (
        trace_id BLOB PRIMARY KEY,
        seen_ns INTEGER NOT NULL,
        ended_ns INTEGER,
        first_span_id INTEGER NOT NULL,
        kept INTEGER,
        rule TEXT,
        ratio REAL,
        decided_ns INTEGER,
        anchor_id INTEGER,
        retry_rate REAL,
        tool_error_rate REAL,
        blast_radius INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX run_sampling_undecided ON run_sampling(seen_ns) WHERE kept IS NULL;
"#;

/// Runs decided per job at most, so the writer is never held long.
const DECIDE_BATCH: usize = 1_000;
/// How often undecided runs are looked at.
const TICK: Duration = Duration::from_millis(500);
/// `counters` keys: kept and dropped runs, and how far sinks may read.
const KEPT: &str = "sampling.kept";
const DROPPED: &str = "sampling.dropped";
const SHIP_UPTO_SPANS: &str = "sampling.ship_upto.spans";
const SHIP_UPTO_EVENTS: &str = "sampling.ship_upto.events";
/// Events a dropped run keeps: its scores and its baseline verdict.
const KEPT_EVENTS: &str = "('gen_ai.evaluation.result', 'baseline_anomaly')";

/// The rules of `OCT_SAMPLING`.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingRules {
    /// Share of the runs no other rule keeps that is kept, by trace id (0..=1).
    pub ratio: f64,
    /// Runs lasting longer than this are kept.
    pub slower_than: Option<Duration>,
    /// Runs costing more than this (USD) are kept.
    pub costlier_than: Option<f64>,
    /// Runs with an error are kept (default).
    pub errors: bool,
    /// Runs their agent's baseline flags are kept (default).
    pub baseline: bool,
}

/// Parses `OCT_SAMPLING`: `off` (or empty), or rules separated by `,` or `;`:
/// `ratio=R` (required; `0.1` or `10%`), `slower_than=DURATION`, `costlier_than=USD`
/// (`0.5` or `$0.5`), `errors=keep|sample`, `baseline=keep|sample`.
pub fn parse_rules(v: &str) -> Result<Option<SamplingRules>, String> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let mut ratio = None;
    let mut r = SamplingRules {
        ratio: 1.0,
        slower_than: None,
        costlier_than: None,
        errors: true,
        baseline: true,
    };
    let keep = |k: &str, x: &str| match x {
        "keep" => Ok(true),
        "sample" => Ok(false),
        _ => Err(format!("{k}: expected keep or sample, got {x:?}")),
    };
    for item in v.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()) {
        let (k, x) = item
            .split_once('=')
            .map(|(k, x)| (k.trim(), x.trim()))
            .ok_or_else(|| format!("{item:?}: expected NAME=VALUE"))?;
        match k {
            "ratio" => {
                let (num, scale) = match x.strip_suffix('%') {
                    Some(p) => (p.trim(), 100.0),
                    None => (x, 1.0),
                };
                let p: f64 = num
                    .parse()
                    .map_err(|_| format!("ratio: not a number: {x:?}"))?;
                let p = p / scale;
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!(
                        "ratio: must be between 0 and 1 (or 0% and 100%): {x:?}"
                    ));
                }
                ratio = Some(p);
            }
            "slower_than" => {
                r.slower_than = Some(
                    crate::settings::parse_duration(x).map_err(|e| format!("slower_than: {e}"))?,
                )
            }
            "costlier_than" => {
                let usd: f64 = x
                    .trim_start_matches('$')
                    .parse()
                    .ok()
                    .filter(|c: &f64| c.is_finite() && *c >= 0.0)
                    .ok_or_else(|| format!("costlier_than: not an amount in USD: {x:?}"))?;
                r.costlier_than = Some(usd);
            }
            "errors" => r.errors = keep(k, x)?,
            "baseline" => r.baseline = keep(k, x)?,
            _ => {
                return Err(format!(
                    "unknown rule {k:?} (ratio, slower_than, costlier_than, errors, baseline)"
                ));
            }
        }
    }
    r.ratio = ratio.ok_or("ratio=R is required (for instance ratio=10%)")?;
    Ok(Some(r))
}

/// Whether the ratio keeps this trace: its last 56 bits R ≥ (1 − ratio) · 2^56.
pub fn ratio_keeps(trace_id: &[u8; 16], ratio: f64) -> bool {
    const SPAN: f64 = (1u64 << 56) as f64;
    let mut b = [0u8; 8];
    b[1..].copy_from_slice(&trace_id[9..16]);
    let r = u64::from_be_bytes(b);
    // In integers: R's top values do not round up to 2^56 (ratio 0 keeps nothing).
    let threshold = ((1.0 - ratio.clamp(0.0, 1.0)) * SPAN).round() as u64;
    r >= threshold
}

/// What `/health` shows.
#[derive(Clone, Debug, Serialize)]
pub struct SamplingHealth {
    pub rules: String,
    pub ratio: f64,
    pub kept_runs: u64,
    pub dropped_runs: u64,
    /// Runs waiting for their decision (their spans are not shipped yet).
    pub undecided_runs: u64,
}

type Labels = Vec<(&'static str, &'static str)>;

/// Decides runs (a write hook keeps track of them; `start` runs the decisions).
pub struct Sampler {
    rules: SamplingRules,
    text: String,
    wait: Duration,
    baseline: BaselineSettings,
    kept: AtomicU64,
    dropped: AtomicU64,
    undecided: AtomicU64,
    /// Decision passes so far.
    passes: AtomicU64,
    runs: Family<Labels, Counter>,
    undecided_gauge: Gauge,
}

/// One pass of the decision job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decided {
    pub kept: u64,
    pub dropped: u64,
    /// More runs were due than one pass decides.
    pub more: bool,
}

impl Sampler {
    pub fn new(
        rules: SamplingRules,
        text: &str,
        wait: Duration,
        baseline: BaselineSettings,
    ) -> Self {
        Sampler {
            rules,
            text: text.trim().to_string(),
            wait,
            baseline,
            kept: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            undecided: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            runs: Family::default(),
            undecided_gauge: Gauge::default(),
        }
    }

    pub fn register_metrics(&self, registry: &crate::metrics::Registry) {
        registry.register(
            "openclaw_trace_sampling_runs",
            "Runs decided by sampling (OCT_SAMPLING), by decision: dropped runs still count in every total",
            self.runs.clone(),
        );
        registry.register(
            "openclaw_trace_sampling_undecided_runs",
            "Runs waiting for their sampling decision",
            self.undecided_gauge.clone(),
        );
    }

    pub fn health(&self) -> SamplingHealth {
        SamplingHealth {
            rules: self.text.clone(),
            ratio: self.rules.ratio,
            kept_runs: self.kept.load(Ordering::Relaxed),
            dropped_runs: self.dropped.load(Ordering::Relaxed),
            undecided_runs: self.undecided.load(Ordering::Relaxed),
        }
    }

    fn count(&self, kept: u64, dropped: u64) {
        self.kept.fetch_add(kept, Ordering::Relaxed);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
        self.runs
            .get_or_create(&vec![("decision", "kept")])
            .inc_by(kept);
        self.runs
            .get_or_create(&vec![("decision", "dropped")])
            .inc_by(dropped);
    }

    /// Loads the counts kept so far (on the writer, before any ingest).
    pub fn load(&self, conn: &Connection) -> rusqlite::Result<()> {
        let get = |name: &str| -> rusqlite::Result<u64> {
            Ok(conn
                .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()?
                .unwrap_or(0)
                .max(0) as u64)
        };
        self.count(get(KEPT)?, get(DROPPED)?);
        // Sinks wait for decisions from the start.
        let tx = conn.unchecked_transaction()?;
        update_ship_upto(&tx)?;
        tx.commit()
    }

    /// Decides the runs that are due: ended, or waiting longer than the decision wait.
    pub fn decide(&self, conn: &Connection, now: i64) -> rusqlite::Result<Decided> {
        let tx = conn.unchecked_transaction()?;
        let wait_cutoff = now - self.wait.as_nanos() as i64;
        let due: Vec<Vec<u8>> = tx
            .prepare_cached(
                "SELECT trace_id FROM run_sampling WHERE kept IS NULL
                   AND (ended_ns IS NOT NULL OR seen_ns <= ?1) ORDER BY seen_ns LIMIT ?2",
            )?
            .query_map(params![wait_cutoff, DECIDE_BATCH as i64 + 1], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Decided {
            more: due.len() > DECIDE_BATCH,
            ..Default::default()
        };
        for id in due.iter().take(DECIDE_BATCH) {
            let Some(trace_id) = TraceId::from_slice(id) else {
                tx.execute("DELETE FROM run_sampling WHERE trace_id = ?1", [id])?;
                continue;
            };
            match self.decide_run(&tx, &trace_id, now)? {
                Some(true) => out.kept += 1,
                Some(false) => out.dropped += 1,
                None => {}
            }
        }
        self.prune(&tx, now)?;
        // Now and then, the decisions of runs retention has deleted since.
        if self
            .passes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(FORGET_EVERY)
        {
            forget_gone_runs(&tx)?;
        }
        update_ship_upto(&tx)?;
        let undecided: i64 = tx
            .prepare_cached("SELECT count(*) FROM run_sampling WHERE kept IS NULL")?
            .query_row([], |r| r.get(0))?;
        if out.kept > 0 {
            crate::store::write::bump_counter(&tx, KEPT, out.kept as i64)?;
        }
        if out.dropped > 0 {
            crate::store::write::bump_counter(&tx, DROPPED, out.dropped as i64)?;
        }
        crate::store::audit::seal(&tx, "sampling")?;
        tx.commit()?;
        self.count(out.kept, out.dropped);
        self.undecided
            .store(undecided.max(0) as u64, Ordering::Relaxed);
        self.undecided_gauge.set(undecided);
        Ok(out)
    }

    /// Decides one run: Some(kept), or None when the run is gone (retention).
    fn decide_run(
        &self,
        tx: &Transaction,
        id: &TraceId,
        now: i64,
    ) -> rusqlite::Result<Option<bool>> {
        let key = &id.0[..];
        type Row = (
            String,
            i64,
            Option<f64>,
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let row: Option<Row> = tx
            .prepare_cached(
                "SELECT t.status, t.error_count, t.cost_usd, t.start_ns, t.end_ns,
                        s.id, s.start_ns, s.end_ns
                 FROM traces t LEFT JOIN spans s ON s.trace_id = t.trace_id AND s.span_id = t.root_span_id
                 WHERE t.trace_id = ?1",
            )?
            .query_row([key], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .optional()?;
        let Some((status, errors, cost, t_start, t_end, _root, root_start, root_end)) = row else {
            tx.execute("DELETE FROM run_sampling WHERE trace_id = ?1", [key])?;
            return Ok(None);
        };
        let duration_ns = match (root_start, root_end) {
            (Some(s), Some(e)) => e - s,
            _ => t_end.unwrap_or(t_start) - t_start,
        };
        let r = &self.rules;
        let rule = if r.errors && (errors > 0 || status == "error") {
            Some("error")
        } else if r
            .slower_than
            .is_some_and(|t| duration_ns > t.as_nanos() as i64)
        {
            Some("slow")
        } else if r.costlier_than.is_some_and(|c| cost.is_some_and(|x| x > c)) {
            Some("cost")
        } else if r.baseline
            && baseline::check(&**tx, id, &self.baseline).is_ok_and(|c| c.anomalous)
        {
            Some("baseline")
        } else if ratio_keeps(&id.0, r.ratio) {
            Some("ratio")
        } else {
            None
        };
        if let Some(rule) = rule {
            let ratio = if rule == "ratio" { r.ratio } else { 1.0 };
            tx.prepare_cached(
                "UPDATE spans SET attributes = pack(json_set(COALESCE(unpack(attributes), '{}'),
                    '$.\"sampling.ratio\"', ?2, '$.\"sampling.rule\"', ?3)) WHERE trace_id = ?1",
            )?
            .execute(params![key, ratio, rule])?;
            tx.prepare_cached(
                "UPDATE run_sampling SET kept = 1, rule = ?2, ratio = ?3, decided_ns = ?4 WHERE trace_id = ?1",
            )?
            .execute(params![key, rule, ratio, now])?;
            return Ok(Some(true));
        }
        // Its rows go later (`prune`): sinks skip them from now on.
        tx.prepare_cached(
            "UPDATE run_sampling SET kept = 0, rule = NULL, ratio = ?2, decided_ns = ?3
             WHERE trace_id = ?1",
        )?
        .execute(params![key, r.ratio, now])?;
        Ok(Some(false))
    }

    /// Deletes the rows of runs dropped at least the decision wait ago (late pieces,
    /// such as a transcript's copy of a call, merged into them meanwhile and counted
    /// exactly), keeping the anchor span and the tool figures. Returns spans deleted.
    fn prune(&self, tx: &Transaction, now: i64) -> rusqlite::Result<u64> {
        let cutoff = now - self.wait.as_nanos() as i64;
        let due: Vec<Vec<u8>> = tx
            .prepare_cached(
                "SELECT trace_id FROM run_sampling WHERE kept = 0 AND anchor_id IS NULL
                   AND decided_ns <= ?1 LIMIT ?2",
            )?
            .query_map(params![cutoff, DECIDE_BATCH as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut deleted = 0;
        for key in &due {
            let tools = tool_behaviour(tx, key)?;
            let anchor: Option<i64> = tx
                .prepare_cached(
                    "SELECT COALESCE(
                        (SELECT s.id FROM traces t JOIN spans s
                           ON s.trace_id = t.trace_id AND s.span_id = t.root_span_id
                         WHERE t.trace_id = ?1),
                        (SELECT min(id) FROM spans WHERE trace_id = ?1))",
                )?
                .query_row([key], |r| r.get(0))?;
            let anchor = anchor.unwrap_or(0);
            tx.prepare_cached(
                "UPDATE spans SET input_text = NULL, output_text = NULL WHERE id = ?1",
            )?
            .execute([anchor])?;
            deleted += tx
                .prepare_cached("DELETE FROM spans WHERE trace_id = ?1 AND id != ?2")?
                .execute(params![key, anchor])? as u64;
            tx.prepare_cached(&format!(
                "DELETE FROM events WHERE trace_id = ?1 AND name NOT IN {KEPT_EVENTS}"
            ))?
            .execute([key])?;
            tx.prepare_cached(
                "UPDATE run_sampling SET anchor_id = ?2, retry_rate = ?3, tool_error_rate = ?4,
                    blast_radius = ?5 WHERE trace_id = ?1",
            )?
            .execute(params![
                key,
                anchor,
                tools.retry_rate,
                tools.error_rate,
                tools.blast_radius as i64
            ])?;
        }
        Ok(deleted)
    }

    /// Starts the decisions: counts loaded first, then a pass every half second (and
    /// at once again while runs are waiting beyond one pass).
    pub fn start(self: &std::sync::Arc<Self>, pipeline: &Pipeline) -> tokio::task::JoinHandle<()> {
        let s = self.clone();
        pipeline.run_job(move |conn| {
            if let Err(e) = s.load(conn) {
                tracing::warn!(error = %e, "cannot load the sampling counts");
            }
        });
        tracing::info!(rules = %self.text, decision_wait = ?self.wait, "sampling on: dropped runs count in every total, their spans and texts are not kept");
        let (s, p) = (self.clone(), pipeline.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                let s2 = s.clone();
                if !p.run_job(move |conn| {
                    let mut more = true;
                    let mut passes = 0;
                    while more && passes < 5 {
                        passes += 1;
                        more = match s2.decide(conn, now_ns()) {
                            Ok(d) => d.more,
                            Err(e) => {
                                tracing::warn!(error = %e, "sampling decisions failed; will retry");
                                false
                            }
                        };
                    }
                    let _ = done_tx.send(());
                }) {
                    break;
                }
                // One job in the queue at a time.
                let _ = done_rx.await;
            }
        })
    }
}

/// Passes between two looks for decisions whose run retention deleted (about a minute).
const FORGET_EVERY: u64 = 120;

/// Deletes the decisions of runs whose summary row retention deleted (at most 1,000 a
/// pass): one row per run, kept as long as the run is.
fn forget_gone_runs(tx: &Transaction) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "DELETE FROM run_sampling WHERE trace_id IN (
             SELECT r.trace_id FROM run_sampling r
             WHERE r.kept IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM traces t WHERE t.trace_id = r.trace_id)
             LIMIT 1000)",
    )?
    .execute([])
}

/// With sampling off: sinks read everything again, but never a dropped run's anchor.
pub fn disable(conn: &Connection) -> rusqlite::Result<()> {
    let any_dropped: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM run_sampling WHERE kept = 0)",
        [],
        |r| r.get(0),
    )?;
    if any_dropped {
        for name in [SHIP_UPTO_SPANS, SHIP_UPTO_EVENTS] {
            conn.execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, i64::MAX],
            )?;
        }
        // Undecided runs are kept as they are.
        conn.execute(
            "UPDATE run_sampling SET kept = 1, rule = 'off', ratio = 1.0 WHERE kept IS NULL",
            [],
        )?;
    } else {
        conn.execute(
            "DELETE FROM counters WHERE name IN (?1, ?2)",
            params![SHIP_UPTO_SPANS, SHIP_UPTO_EVENTS],
        )?;
        conn.execute("DELETE FROM run_sampling", [])?;
    }
    Ok(())
}

/// Rows of `table` (spans or events) sinks may read up to, when sampling holds some back.
pub fn ship_upto(conn: &Connection, table: &str) -> rusqlite::Result<Option<i64>> {
    let name = match table {
        "spans" => SHIP_UPTO_SPANS,
        "events" => SHIP_UPTO_EVENTS,
        _ => return Ok(None),
    };
    conn.prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}

/// The condition a sink's read adds for `table` (spans or events): no row of a dropped run.
pub fn not_dropped(table: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM run_sampling rs WHERE rs.trace_id = {table}.trace_id AND rs.kept = 0)"
    )
}

/// Sinks may read every row before the first row of an undecided run.
fn update_ship_upto(tx: &Transaction) -> rusqlite::Result<()> {
    let spans: i64 = tx
        .prepare_cached(
            "SELECT COALESCE((SELECT min(first_span_id) - 1 FROM run_sampling WHERE kept IS NULL),
                             (SELECT COALESCE(max(id), 0) FROM spans))",
        )?
        .query_row([], |r| r.get(0))?;
    let events: i64 = tx
        .prepare_cached(
            "SELECT COALESCE((SELECT min(e.id) - 1 FROM events e WHERE e.trace_id IN
                                (SELECT trace_id FROM run_sampling WHERE kept IS NULL)),
                             (SELECT COALESCE(max(id), 0) FROM events))",
        )?
        .query_row([], |r| r.get(0))?;
    let mut set = tx.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
    )?;
    set.execute(params![SHIP_UPTO_SPANS, spans])?;
    set.execute(params![SHIP_UPTO_EVENTS, events])?;
    Ok(())
}

fn tool_behaviour(tx: &Transaction, key: &[u8]) -> rusqlite::Result<ToolBehaviour> {
    let rows: Vec<(Option<String>, Option<String>, String)> = tx
        .prepare_cached(
            "SELECT tool_name, unpack(input_text), status FROM spans
             WHERE trace_id = ?1 AND kind = 'tool_call' ORDER BY start_ns, id",
        )?
        .query_map([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let calls: Vec<ToolCall> = rows
        .iter()
        .map(|(t, a, s)| ToolCall {
            tool: t.as_deref(),
            arguments: a.as_deref(),
            failed: s == "error",
        })
        .collect();
    Ok(baseline::tool_behaviour(&calls))
}

/// A dropped run's tool-call behaviour, measured before its tool spans went.
pub fn dropped_behaviour(
    db: &dyn Rows,
    trace_id: &[u8],
) -> Result<Option<ToolBehaviour>, StoreError> {
    // Only SQLite samples runs.
    if db.dialect() != Dialect::Sqlite {
        return Ok(None);
    }
    Ok(db
        .row(
            "SELECT retry_rate, tool_error_rate, blast_radius FROM run_sampling
             WHERE trace_id = ?1 AND kept = 0 AND anchor_id IS NOT NULL",
            &[Some(trace_id).into()],
        )?
        .map(|r| ToolBehaviour {
            retry_rate: r.opt_real(0).unwrap_or(0.0),
            error_rate: r.opt_real(1).unwrap_or(0.0),
            blast_radius: r.opt_int(2).unwrap_or(0).max(0) as usize,
        }))
}

impl WriteHook for Sampler {
    fn sqlite_only(&self) -> bool {
        true
    }

    /// Notes every run the batch touched (its first span row, its root's end) and
    /// treats pieces of runs already decided: a kept run's get the ratio, a dropped
    /// run's are deleted (counted already, like the rest of the run).
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
        let mut touched: Vec<(TraceId, bool, Vec<SpanId>)> = Vec::new();
        let mut index: std::collections::HashMap<TraceId, usize> = Default::default();
        for (r, e) in records.iter().zip(effects) {
            if *e == WriteEffect::Expired {
                continue;
            }
            let Some(change) = e.span_change(r) else {
                continue;
            };
            let s = change.after;
            let i = *index.entry(s.trace_id).or_insert_with(|| {
                touched.push((s.trace_id, false, Vec::new()));
                touched.len() - 1
            });
            touched[i].1 |= s.parent_span_id.is_none() && s.end_ns.is_some();
            touched[i].2.push(s.span_id);
        }
        if touched.is_empty() {
            return Ok(());
        }
        let now = now_ns();
        let mut note = tx.prepare_cached(
            "INSERT INTO run_sampling (trace_id, seen_ns, ended_ns, first_span_id)
             VALUES (?1, ?2, ?3, COALESCE((SELECT min(id) FROM spans WHERE trace_id = ?1), 0))
             ON CONFLICT(trace_id) DO UPDATE SET ended_ns = COALESCE(ended_ns, excluded.ended_ns)
             RETURNING kept, ratio, rule, anchor_id",
        )?;
        for (trace, ended, spans) in &touched {
            let key = &trace.0[..];
            let (kept, ratio, rule, anchor): (
                Option<i64>,
                Option<f64>,
                Option<String>,
                Option<i64>,
            ) = note.query_row(params![key, now, ended.then_some(now)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            match kept {
                Some(1) => {
                    let mut tag = tx.prepare_cached(
                        "UPDATE spans SET attributes = pack(json_set(COALESCE(unpack(attributes), '{}'),
                            '$.\"sampling.ratio\"', ?3, '$.\"sampling.rule\"', ?4))
                         WHERE trace_id = ?1 AND span_id = ?2",
                    )?;
                    for s in spans {
                        tag.execute(params![key, &s.0[..], ratio.unwrap_or(1.0), rule])?;
                    }
                }
                // Before its rows go (`prune`), a late piece stays and goes with them.
                Some(0) if anchor.is_some() => {
                    let anchor = anchor.unwrap_or(0);
                    let mut gone = tx.prepare_cached(
                        "DELETE FROM spans WHERE trace_id = ?1 AND span_id = ?2 AND id != ?3",
                    )?;
                    for s in spans {
                        gone.execute(params![key, &s.0[..], anchor])?;
                    }
                    tx.prepare_cached(
                        "UPDATE spans SET input_text = NULL, output_text = NULL WHERE id = ?1",
                    )?
                    .execute([anchor])?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_name_what_is_wrong() {
        let r = parse_rules("ratio=10%, slower_than=30s; costlier_than=$0.50")
            .unwrap()
            .unwrap();
        assert!((r.ratio - 0.1).abs() < 1e-12);
        assert_eq!(r.slower_than, Some(Duration::from_secs(30)));
        assert_eq!(r.costlier_than, Some(0.5));
        assert!(r.errors && r.baseline);
        let r = parse_rules("ratio=0.25,errors=sample,baseline=sample")
            .unwrap()
            .unwrap();
        assert!(!r.errors && !r.baseline);
        assert_eq!(parse_rules("off").unwrap(), None);
        assert_eq!(parse_rules("").unwrap(), None);
        for (bad, says) in [
            ("ratio=2", "ratio"),
            ("ratio=x", "ratio"),
            ("slower_than=1s", "ratio=R is required"),
            ("ratio=0.1,costlier_than=-1", "costlier_than"),
            ("ratio=0.1,fast=1", "unknown rule"),
            ("ratio", "NAME=VALUE"),
            ("ratio=0.1,errors=maybe", "errors"),
        ] {
            let e = parse_rules(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    /// A run of a root, an LLM call with text and a tool call, written as the pipeline
    /// writes a batch (the hook inside the transaction).
    fn write_run(conn: &mut Connection, sampler: &Sampler, id: u8, now: i64) {
        use crate::model::{CappedText, Span, SpanKind, StatusCode};
        let trace = TraceId([id; 16]);
        let mut root = Span::new(
            trace,
            SpanId([1; 8]),
            "run".into(),
            SpanKind::AgentRun,
            now - 1_000,
        );
        root.end_ns = Some(now - 10);
        root.agent_id = Some("a".into());
        root.status = StatusCode::Ok;
        let mut llm = Span::new(
            trace,
            SpanId([2; 8]),
            "chat".into(),
            SpanKind::LlmCall,
            now - 900,
        );
        llm.parent_span_id = Some(root.span_id);
        llm.end_ns = Some(now - 800);
        llm.input_tokens = Some(10);
        llm.input = Some(CappedText::new("hello".into(), 100));
        let mut tool = Span::new(
            trace,
            SpanId([3; 8]),
            "tool".into(),
            SpanKind::ToolCall,
            now - 700,
        );
        tool.parent_span_id = Some(root.span_id);
        tool.tool_name = Some("write".into());
        tool.input = Some(CappedText::new(r#"{"path":"a.md"}"#.into(), 100));
        let records: Vec<Record> = [root, llm, tool]
            .into_iter()
            .map(|s| Record::Span(Box::new(s)))
            .collect();
        let tx = conn.transaction().unwrap();
        let out = crate::store::write::write_records(&tx, &records, now).unwrap();
        sampler
            .in_transaction(
                &mut crate::store::sqlite::SqliteHookTx(&tx),
                &records,
                &out.effects,
            )
            .unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn decisions_prune_dropped_runs_later_and_hold_sinks_back_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open_writer(&dir.path().join("s.db")).unwrap();
        let rules = parse_rules("ratio=0").unwrap().unwrap();
        let wait = Duration::from_secs(10);
        let settings = BaselineSettings {
            runs: 10,
            min_runs: 10,
            threshold: 3.5,
        };
        let s = Sampler::new(rules, "ratio=0", wait, settings);
        let now = 1_000 * 1_000_000_000;
        s.load(&conn).unwrap();
        assert_eq!(ship_upto(&conn, "spans").unwrap(), Some(0));
        write_run(&mut conn, &s, 7, now);
        let count =
            |c: &Connection, sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
        // Undecided: sinks may read nothing of it.
        assert_eq!(ship_upto(&conn, "spans").unwrap(), Some(0));
        // Ended: dropped at once, its rows still there until a decision wait later.
        let d = s.decide(&conn, now).unwrap();
        assert_eq!((d.kept, d.dropped), (0, 1));
        assert_eq!(ship_upto(&conn, "spans").unwrap(), Some(3));
        assert_eq!(count(&conn, "SELECT count(*) FROM spans"), 3);
        assert_eq!(dropped_behaviour(&conn, &[7; 16]).unwrap(), None);
        s.decide(&conn, now + wait.as_nanos() as i64).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM spans"), 1, "the anchor");
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM spans WHERE kind = 'agent_run' AND input_text IS NULL"
            ),
            1
        );
        let b = dropped_behaviour(&conn, &[7; 16]).unwrap().unwrap();
        assert_eq!(
            b.blast_radius, 1,
            "a.md, measured before the tool span went"
        );
        // The summary row stays whole.
        assert_eq!(
            count(
                &conn,
                "SELECT llm_calls + tool_calls + input_tokens FROM traces"
            ),
            1 + 1 + 10
        );
        // A late piece of the dropped run goes at once.
        write_run(&mut conn, &s, 7, now + 1);
        assert_eq!(count(&conn, "SELECT count(*) FROM spans"), 1);
        assert_eq!(s.health().dropped_runs, 1);
        // Retention deletes the run: its decision goes too, at the next look.
        conn.execute_batch("DELETE FROM spans; DELETE FROM traces;")
            .unwrap();
        s.passes.store(0, Ordering::Relaxed);
        s.decide(&conn, now + 2 * wait.as_nanos() as i64).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM run_sampling"), 0);
        // Sampling off: sinks read everything again.
        disable(&conn).unwrap();
        assert_eq!(ship_upto(&conn, "spans").unwrap(), None);
    }

    #[test]
    fn the_ratio_is_decided_by_the_trace_id_alone() {
        let mut id = [0u8; 16];
        assert!(
            !ratio_keeps(&id, 0.1),
            "R = 0 is below every threshold but 0"
        );
        assert!(ratio_keeps(&id, 1.0));
        id[9..16].copy_from_slice(&[0xff; 7]);
        assert!(ratio_keeps(&id, 0.1));
        assert!(!ratio_keeps(&id, 0.0));
        // A deterministic spread of ids: close to the ratio.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut kept = 0;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&x.to_be_bytes());
            kept += ratio_keeps(&id, 0.1) as u32;
        }
        assert!((9_700..=10_300).contains(&kept), "{kept}");
    }
}
