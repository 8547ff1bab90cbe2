//! Baselines: is this run unusual for its agent? A run is a trace whose root span
//! is an `agent_run`. Its metrics are compared with the agent's previous N runs
//! (the run itself excluded) by a robust z-score, z = (x − median) / (1.4826 · MAD).
//!
//! A metric is anomalous when |z| exceeds the threshold AND the value lies outside
//! the baseline's 5th–95th percentile range: counts and rates are often mostly 0
//! (MAD 0), and a value that one run in five shows is not an anomaly. The scale
//! has a floor per metric (10% of the median, and an absolute minimum) for the
//! same reason.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use super::alert::AlertSender;
use crate::model::{Event, EventType, Record, Span, SpanKind, TraceId, now_ns};
use crate::pipeline::{HookError, WriteHook};
use crate::store::StoreError;
use crate::store::rows::{Arg, Row, Rows};
use crate::store::sqlite::SqliteHookTx;
use crate::store::write::WriteEffect;
use crate::util::time::format_ns;

/// What a run is measured by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Cost,
    Duration,
    LlmCalls,
    ToolCalls,
    Tokens,
    ErrorRate,
    RetryRate,
    /// Failed tool calls / tool calls.
    ToolErrorRate,
    /// Distinct files written or edited by the run's tool calls.
    BlastRadius,
    /// Total tokens / LLM calls.
    TokensPerCall,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::Cost,
        Metric::Duration,
        Metric::LlmCalls,
        Metric::ToolCalls,
        Metric::Tokens,
        Metric::ErrorRate,
        Metric::RetryRate,
        Metric::ToolErrorRate,
        Metric::BlastRadius,
        Metric::TokensPerCall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Cost => "cost_usd",
            Metric::Duration => "duration_ms",
            Metric::LlmCalls => "llm_calls",
            Metric::ToolCalls => "tool_calls",
            Metric::Tokens => "total_tokens",
            Metric::ErrorRate => "error_rate",
            Metric::RetryRate => "retry_rate",
            Metric::ToolErrorRate => "tool_error_rate",
            Metric::BlastRadius => "blast_radius",
            Metric::TokensPerCall => "tokens_per_call",
        }
    }

    /// The smallest scale a deviation is measured in.
    fn floor(self) -> f64 {
        match self {
            Metric::Cost => 0.0001,
            Metric::Duration => 10.0,
            Metric::LlmCalls | Metric::ToolCalls => 1.0,
            Metric::Tokens => 10.0,
            Metric::ErrorRate | Metric::RetryRate | Metric::ToolErrorRate => 0.1,
            Metric::BlastRadius => 1.0,
            Metric::TokensPerCall => 10.0,
        }
    }
}

/// One run's figures (a metric is `None` when unknown, such as an unpriced cost).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    pub run_id: String,
    pub agent_id: Option<String>,
    pub start_ns: i64,
    pub start_time: String,
    pub values: BTreeMap<&'static str, Option<f64>>,
    /// The run's evaluation scores by name (the mean when a name has several).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, f64>,
}

impl Run {
    fn get(&self, m: Metric) -> Option<f64> {
        self.values.get(m.name()).copied().flatten()
    }
}

/// Runs: traces whose root span is a finished `agent_run`.
const RUN_SELECT: &str = "SELECT t.trace_id, t.agent_id, s.start_ns, s.end_ns, t.cost_usd,
        t.llm_calls, t.tool_calls, t.total_tokens, t.error_count, t.span_count
    FROM traces t JOIN spans s ON s.trace_id = t.trace_id AND s.span_id = t.root_span_id
    WHERE s.kind = 'agent_run' AND s.end_ns IS NOT NULL";

/// What a run's tool calls say of its behaviour (agent-strace's measures).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolBehaviour {
    /// Calls that repeat the call just before: the same tool with the same arguments,
    /// over all tool calls.
    pub retry_rate: f64,
    /// Failed tool calls over tool calls.
    pub error_rate: f64,
    /// Distinct files the calls wrote or edited.
    pub blast_radius: usize,
}

/// One tool call, as the measures need it.
pub struct ToolCall<'a> {
    pub tool: Option<&'a str>,
    pub arguments: Option<&'a str>,
    pub failed: bool,
}

/// Tools that write or edit files (OpenClaw's and the common agent shapes).
const WRITING_TOOLS: &[&str] = &[
    "write",
    "edit",
    "multiedit",
    "multi_edit",
    "apply_patch",
    "write_file",
    "edit_file",
    "create_file",
    "str_replace",
    "str_replace_editor",
    "str_replace_based_edit_tool",
    "replace",
    "patch",
];

/// The files a writing tool call names: path-like arguments, and the files an
/// `apply_patch` body adds, updates, deletes or moves.
pub fn files_written(tool: &str, arguments: &str) -> Vec<String> {
    let tool = tool.to_ascii_lowercase();
    if !WRITING_TOOLS.contains(&tool.as_str()) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let from_patch = |text: &str, out: &mut Vec<String>| {
        for line in text.lines() {
            for prefix in [
                "*** Add File: ",
                "*** Update File: ",
                "*** Delete File: ",
                "*** Move to: ",
                "+++ b/",
            ] {
                if let Some(p) = line.strip_prefix(prefix) {
                    out.push(p.trim().to_string());
                }
            }
        }
    };
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(serde_json::Value::Object(m)) => {
            for key in [
                "path",
                "file_path",
                "filePath",
                "file",
                "filename",
                "target_file",
            ] {
                if let Some(p) = m.get(key).and_then(|v| v.as_str()) {
                    out.push(p.to_string());
                }
            }
            for key in ["input", "patch", "diff"] {
                if let Some(p) = m.get(key).and_then(|v| v.as_str()) {
                    from_patch(p, &mut out);
                }
            }
            if let Some(edits) = m.get("edits").and_then(|v| v.as_array()) {
                for e in edits {
                    for key in ["path", "file_path", "filePath"] {
                        if let Some(p) = e.get(key).and_then(|v| v.as_str()) {
                            out.push(p.to_string());
                        }
                    }
                }
            }
        }
        // A raw patch as the whole argument.
        _ => from_patch(arguments, &mut out),
    }
    out.retain(|p| !p.is_empty());
    out
}

pub fn tool_behaviour(calls: &[ToolCall]) -> ToolBehaviour {
    if calls.is_empty() {
        return ToolBehaviour::default();
    }
    let n = calls.len() as f64;
    let repeats = calls
        .windows(2)
        .filter(|w| {
            w[0].tool.is_some() && w[0].tool == w[1].tool && w[0].arguments == w[1].arguments
        })
        .count();
    let failed = calls.iter().filter(|c| c.failed).count();
    let files: std::collections::BTreeSet<String> = calls
        .iter()
        .filter(|c| !c.failed)
        .filter_map(|c| Some(files_written(c.tool?, c.arguments.unwrap_or(""))))
        .flatten()
        .collect();
    ToolBehaviour {
        retry_rate: repeats as f64 / n,
        error_rate: failed as f64 / n,
        blast_radius: files.len(),
    }
}

/// The run's tool calls, in order, measured.
fn run_tools(db: &dyn Rows, trace_id: &[u8]) -> Result<ToolBehaviour, StoreError> {
    let rows: Vec<(Option<String>, Option<String>, String)> = db
        .rows(
            &format!(
                "SELECT tool_name, {}, status FROM spans WHERE trace_id = ?1 AND kind = 'tool_call' ORDER BY start_ns, id",
                db.dialect().text("input_text")
            ),
            &[Some(trace_id).into()],
        )?
        .into_iter()
        .map(|r| (r.opt_text(0), r.opt_text(1), r.text(2)))
        .collect();
    let calls: Vec<ToolCall> = rows
        .iter()
        .map(|(t, a, s)| ToolCall {
            tool: t.as_deref(),
            arguments: a.as_deref(),
            failed: s == "error",
        })
        .collect();
    Ok(tool_behaviour(&calls))
}

fn run_row(db: &dyn Rows, r: &Row) -> Result<Run, StoreError> {
    let id: Vec<u8> = r.blob(0).unwrap_or_default().to_vec();
    let start = r.int(2);
    let end = r.int(3);
    let spans = r.int(9);
    let errors = r.int(8);
    let mut values = BTreeMap::new();
    values.insert(Metric::Cost.name(), r.opt_real(4));
    values.insert(
        Metric::Duration.name(),
        Some((end - start).max(0) as f64 / 1e6),
    );
    values.insert(Metric::LlmCalls.name(), Some(r.int(5) as f64));
    values.insert(Metric::ToolCalls.name(), Some(r.int(6) as f64));
    values.insert(Metric::Tokens.name(), Some(r.int(7) as f64));
    values.insert(
        Metric::ErrorRate.name(),
        Some(if spans > 0 {
            errors as f64 / spans as f64
        } else {
            0.0
        }),
    );
    // A run sampling dropped kept its tool figures, not its tool spans.
    let tools = match super::sampling::dropped_behaviour(db, &id)? {
        Some(t) => t,
        None => run_tools(db, &id)?,
    };
    values.insert(Metric::RetryRate.name(), Some(tools.retry_rate));
    values.insert(Metric::ToolErrorRate.name(), Some(tools.error_rate));
    values.insert(Metric::BlastRadius.name(), Some(tools.blast_radius as f64));
    let llm_calls = r.int(5);
    let tokens = r.int(7);
    values.insert(
        Metric::TokensPerCall.name(),
        (llm_calls > 0).then(|| tokens as f64 / llm_calls as f64),
    );
    Ok(Run {
        run_id: crate::util::hex::encode(&id),
        agent_id: r.opt_text(1),
        start_ns: start,
        start_time: format_ns(start),
        values,
        scores: run_scores(db, &id)?,
    })
}

fn collect_runs(db: &dyn Rows, sql: &str, args: &[Arg]) -> Result<Vec<Run>, StoreError> {
    db.rows(sql, args)?.iter().map(|r| run_row(db, r)).collect()
}

/// One run, if it is a finished agent run.
pub fn run(db: &dyn Rows, id: &TraceId) -> Result<Option<Run>, StoreError> {
    Ok(collect_runs(
        db,
        &format!("{RUN_SELECT} AND t.trace_id = ?1"),
        &[Some(&id.0[..]).into()],
    )?
    .pop())
}

/// The agent's last `n` runs that started before `before` (newest first), `exclude` left out.
pub fn history(
    db: &dyn Rows,
    agent: &str,
    before: Option<i64>,
    exclude: Option<&TraceId>,
    n: usize,
) -> Result<Vec<Run>, StoreError> {
    collect_runs(
        db,
        &format!(
            "{RUN_SELECT} AND t.agent_id = ?1 AND t.start_ns <= ?2 AND t.trace_id != ?3
             ORDER BY t.start_ns DESC, t.trace_id DESC LIMIT ?4"
        ),
        &[
            agent.into(),
            before.unwrap_or(i64::MAX).into(),
            Arg::Blob(Some(exclude.map(|t| t.0.to_vec()).unwrap_or_default())),
            (n as i64).into(),
        ],
    )
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A metric's baseline over some runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub metric: &'static str,
    pub runs: usize,
    pub median: f64,
    pub mad: f64,
    /// The z-score's denominator: 1.4826 · MAD, at least the metric's floor.
    pub scale: f64,
    pub p5: f64,
    pub p95: f64,
}

impl Stats {
    pub fn of(metric: Metric, values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let med = median(&v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
        dev.sort_by(f64::total_cmp);
        let mad = median(&dev);
        let scale = (1.4826 * mad).max(metric.floor()).max(0.1 * med.abs());
        Some(Stats {
            metric: metric.name(),
            runs: v.len(),
            median: med,
            mad,
            scale,
            p5: percentile(&v, 0.05),
            p95: percentile(&v, 0.95),
        })
    }

    pub fn z(&self, x: f64) -> f64 {
        (x - self.median) / self.scale
    }
}

/// The baseline of an agent from a set of runs.
pub fn baseline(runs: &[Run]) -> Vec<Stats> {
    Metric::ALL
        .iter()
        .filter_map(|m| {
            let vals: Vec<f64> = runs.iter().filter_map(|r| r.get(*m)).collect();
            Stats::of(*m, &vals)
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricCheck {
    pub metric: &'static str,
    pub value: Option<f64>,
    pub median: Option<f64>,
    pub mad: Option<f64>,
    pub z: Option<f64>,
    pub anomalous: bool,
    /// `above` or `below` the baseline, when anomalous.
    pub direction: Option<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub run_id: String,
    pub agent_id: Option<String>,
    /// `ok`, `anomalous`, or `insufficient_history`.
    pub status: &'static str,
    pub anomalous: bool,
    pub threshold: f64,
    pub baseline_runs: usize,
    pub metrics: Vec<MetricCheck>,
    /// The run's evaluation scores against the agent's: a score falling is flagged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<ScoreCheck>,
}

impl Check {
    /// The anomalous metrics, for a one-line message.
    pub fn summary(&self) -> String {
        let line = |metric: &str, m: &MetricCheck| {
            format!(
                "{} {} (median {}, z {:.1})",
                metric,
                fmt_num(m.value),
                fmt_num(m.median),
                m.z.unwrap_or(0.0)
            )
        };
        self.metrics
            .iter()
            .filter(|m| m.anomalous)
            .map(|m| line(m.metric, m))
            .chain(
                self.scores
                    .iter()
                    .filter(|s| s.check.anomalous)
                    .map(|s| line(&format!("score.{}", s.name), &s.check)),
            )
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.4}"),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BaselineSettings {
    pub runs: usize,
    pub min_runs: usize,
    pub threshold: f64,
}

/// Compares a run with the agent's runs before it.
pub fn check_run(run: &Run, history: &[Run], s: &BaselineSettings) -> Check {
    let enough = history.len() >= s.min_runs.max(1);
    let stats: BTreeMap<&str, Stats> = baseline(history)
        .into_iter()
        .map(|st| (st.metric, st))
        .collect();
    let mut metrics = Vec::new();
    for m in Metric::ALL {
        let value = run.get(m);
        let st = stats.get(m.name());
        let z = match (value, st) {
            (Some(v), Some(st)) => Some(st.z(v)),
            _ => None,
        };
        let outside = match (value, st) {
            (Some(v), Some(st)) => v > st.p95 || v < st.p5,
            _ => false,
        };
        let anomalous = enough && outside && z.is_some_and(|z| z.abs() > s.threshold);
        metrics.push(MetricCheck {
            metric: m.name(),
            value,
            median: st.map(|s| s.median),
            mad: st.map(|s| s.mad),
            z,
            anomalous,
            direction: anomalous.then(|| {
                if z.unwrap_or(0.0) > 0.0 {
                    "above"
                } else {
                    "below"
                }
            }),
        });
    }
    let scores = check_scores(run, history, s);
    let anomalous = metrics.iter().any(|m| m.anomalous) || scores.iter().any(|c| c.check.anomalous);
    Check {
        run_id: run.run_id.clone(),
        agent_id: run.agent_id.clone(),
        status: if !enough {
            "insufficient_history"
        } else if anomalous {
            "anomalous"
        } else {
            "ok"
        },
        anomalous,
        threshold: s.threshold,
        baseline_runs: history.len(),
        metrics,
        scores,
    }
}

/// One evaluation score of a run against the agent's runs with that score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreCheck {
    pub name: String,
    /// Runs of the baseline with this score.
    pub runs: usize,
    #[serde(flatten)]
    pub check: MetricCheck,
}

impl ScoreCheck {
    /// As a metric of an anomaly event: `score.NAME`.
    fn as_metric(&self) -> serde_json::Value {
        let mut v = json!(self.check);
        v["metric"] = json!(format!("score.{}", self.name));
        v
    }
}

/// The smallest scale a score's deviation is measured in (scores are mostly 0..1).
const SCORE_FLOOR: f64 = 0.05;

/// Each of the run's scores against the agent's earlier runs with that score: anomalous
/// when it falls below the baseline (|z| over the threshold, under the 5th percentile),
/// with at least `min_runs` runs scored so.
fn check_scores(run: &Run, history: &[Run], s: &BaselineSettings) -> Vec<ScoreCheck> {
    run.scores
        .iter()
        .map(|(name, &value)| {
            let vals: Vec<f64> = history
                .iter()
                .filter_map(|r| r.scores.get(name).copied())
                .collect();
            let st = Stats::of(Metric::ErrorRate, &vals).map(|mut st| {
                st.scale = (1.4826 * st.mad)
                    .max(SCORE_FLOOR)
                    .max(0.1 * st.median.abs());
                st
            });
            let z = st.as_ref().map(|st| st.z(value));
            let enough = vals.len() >= s.min_runs.max(1);
            let anomalous = enough
                && st.as_ref().is_some_and(|st| value < st.p5)
                && z.is_some_and(|z| z < -s.threshold);
            ScoreCheck {
                name: name.clone(),
                runs: vals.len(),
                check: MetricCheck {
                    metric: "score",
                    value: Some(value),
                    median: st.as_ref().map(|s| s.median),
                    mad: st.as_ref().map(|s| s.mad),
                    z,
                    anomalous,
                    direction: anomalous.then_some("below"),
                },
            }
        })
        .collect()
}

/// A run's evaluation scores by name, the mean of each name's values.
fn run_scores(db: &dyn Rows, trace_id: &[u8]) -> Result<BTreeMap<String, f64>, StoreError> {
    use crate::model::evaluation as ev;
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let rows = db.rows(
        "SELECT attributes FROM events WHERE trace_id = ?1 AND name = ?2 AND attributes IS NOT NULL",
        &[Some(trace_id).into(), ev::EVENT.into()],
    )?;
    for a in rows {
        let v: serde_json::Value = serde_json::from_str(&a.text(0)).unwrap_or_default();
        let name = v.get(ev::NAME).and_then(|n| n.as_str());
        let value = match v.get(ev::SCORE_VALUE) {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|x: &f64| x.is_finite());
        if let (Some(n), Some(x)) = (name, value) {
            let e = sums.entry(n.to_string()).or_default();
            e.0 += x;
            e.1 += 1.0;
        }
    }
    Ok(sums.into_iter().map(|(k, (sum, n))| (k, sum / n)).collect())
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("no finished agent run with id {0}")]
    NoSuchRun(String),
    #[error("run {0} has no agent_id, so it has no baseline")]
    NoAgent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for BaselineError {
    fn from(e: rusqlite::Error) -> Self {
        BaselineError::Store(e.into())
    }
}

impl From<BaselineError> for StoreError {
    fn from(e: BaselineError) -> Self {
        match e {
            BaselineError::Store(e) => e,
            other => StoreError::BadRequest(format!("run_id: {other}")),
        }
    }
}

/// Checks the run `id` against its agent's previous runs.
pub fn check(db: &dyn Rows, id: &TraceId, s: &BaselineSettings) -> Result<Check, BaselineError> {
    let run = run(db, id)?.ok_or_else(|| BaselineError::NoSuchRun(id.to_hex()))?;
    let agent = run
        .agent_id
        .clone()
        .ok_or_else(|| BaselineError::NoAgent(id.to_hex()))?;
    let hist = history(db, &agent, Some(run.start_ns), Some(id), s.runs)?;
    Ok(check_run(&run, &hist, s))
}

/// One agent's baseline, as `baseline show` and `GET /v1/baseline` print it.
#[derive(Clone, Debug, Serialize)]
pub struct AgentBaseline {
    pub agent_id: String,
    pub runs: usize,
    pub last_run: Option<String>,
    pub metrics: Vec<Stats>,
}

/// Baselines of one agent, or of every agent with runs (at most 200).
pub fn show(
    db: &dyn Rows,
    agent: Option<&str>,
    runs: usize,
) -> Result<Vec<AgentBaseline>, StoreError> {
    let agents: Vec<String> = match agent {
        Some(a) => vec![a.to_string()],
        None => db
            .rows(
                "SELECT DISTINCT t.agent_id FROM traces t
                 JOIN spans s ON s.trace_id = t.trace_id AND s.span_id = t.root_span_id
                 WHERE t.agent_id IS NOT NULL AND s.kind = 'agent_run' ORDER BY 1 LIMIT 200",
                &[],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect(),
    };
    let mut out = Vec::new();
    for a in agents {
        let hist = history(db, &a, None, None, runs)?;
        out.push(AgentBaseline {
            agent_id: a,
            runs: hist.len(),
            last_run: hist.first().map(|r| r.start_time.clone()),
            metrics: baseline(&hist),
        });
    }
    Ok(out)
}

/// What checking a finished run found: the agent's baseline check (when it is a finished
/// agent run with an agent) and, for an OpenClaw heartbeat or cron run, whether its job's
/// cost per run rose.
#[derive(Clone, Debug, PartialEq)]
pub struct RunCheck {
    pub check: Option<Check>,
    pub rise: Option<super::openclaw::ScheduledRise>,
}

impl RunCheck {
    /// The check to record, when something is anomalous (the rise as `cost_per_run`).
    pub fn anomaly(&self, s: &BaselineSettings, id: &TraceId) -> Option<Check> {
        let Some(rise) = &self.rise else {
            return self.check.clone().filter(|c| c.anomalous);
        };
        let mut c = self.check.clone().unwrap_or_else(|| Check {
            run_id: id.to_hex(),
            agent_id: rise.job.agent_id.clone(),
            status: "anomalous",
            anomalous: true,
            threshold: s.threshold,
            baseline_runs: rise.baseline_runs,
            metrics: Vec::new(),
            scores: Vec::new(),
        });
        c.status = "anomalous";
        c.anomalous = true;
        c.metrics.push(MetricCheck {
            metric: "cost_per_run",
            value: Some(rise.cost_per_run_usd),
            median: Some(rise.baseline_median_usd),
            mad: Some(rise.baseline_mad_usd),
            z: Some(rise.z),
            anomalous: true,
            direction: Some("above"),
        });
        Some(c)
    }

    /// Records the anomaly, if any (on the writer's connection).
    pub fn record(
        &self,
        conn: &Connection,
        id: &TraceId,
        s: &BaselineSettings,
        alerts: &AlertSender,
    ) -> rusqlite::Result<()> {
        match self.anomaly(s, id) {
            Some(c) => record_anomaly_of(conn, id, &c, self.rise.as_ref().map(|r| &r.job), alerts),
            None => Ok(()),
        }
    }
}

/// Checks a finished run: against its agent's runs, and a heartbeat or cron run against
/// its job's runs.
pub fn check_run_and_job(
    db: &dyn Rows,
    id: &TraceId,
    s: &BaselineSettings,
) -> Result<RunCheck, StoreError> {
    let check = match check(db, id, s) {
        Ok(c) => Some(c),
        Err(BaselineError::Store(e)) => return Err(e),
        Err(_) => None,
    };
    let rise = super::openclaw::scheduled_rise(db, id, s.runs, s.min_runs, s.threshold)?;
    Ok(RunCheck { check, rise })
}

/// Checks a finished run and records an event when it is anomalous. Runs on the
/// writer's connection (a pipeline job). Returns the check, if the run could be checked.
pub fn check_and_record(
    conn: &Connection,
    id: &TraceId,
    s: &BaselineSettings,
    alerts: &AlertSender,
) -> Result<Option<Check>, StoreError> {
    let rc = check_run_and_job(conn, id, s)?;
    rc.record(conn, id, s, alerts)?;
    Ok(rc.anomaly(s, id).or(rc.check))
}

/// Records an anomalous run's event and alert, once per run (on the writer's connection).
pub fn record_anomaly(
    conn: &Connection,
    id: &TraceId,
    c: &Check,
    alerts: &AlertSender,
) -> rusqlite::Result<()> {
    record_anomaly_of(conn, id, c, None, alerts)
}

/// `record_anomaly`, naming the scheduled job (heartbeat, cron) whose cost per run rose.
fn record_anomaly_of(
    conn: &Connection,
    id: &TraceId,
    c: &Check,
    job: Option<&super::openclaw::ScheduledJob>,
    alerts: &AlertSender,
) -> rusqlite::Result<()> {
    // Once per run, even if its root span were checked again.
    let already: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM events WHERE trace_id = ?1 AND name = 'baseline_anomaly' LIMIT 1",
            [&id.0[..]],
            |r| r.get(0),
        )
        .optional()?;
    if already.is_some() {
        return Ok(());
    }
    let now = now_ns();
    let mut e = Event::new(EventType::Custom, "baseline_anomaly".into(), now);
    e.severity = "warning".into();
    e.category = Some("baseline".into());
    e.trace_id = Some(*id);
    e.agent_id = c.agent_id.clone();
    e.message = Some(format!(
        "run {} of agent {} is unusual: {}{}",
        c.run_id,
        c.agent_id.as_deref().unwrap_or("-"),
        c.summary(),
        job.map(|j| format!(" ({}: cost per run rising)", j.describe()))
            .unwrap_or_default()
    ));
    e.source = "baseline";
    let mut payload = json!({
        "type": "baseline_anomaly",
        "run_id": c.run_id,
        "agent_id": c.agent_id,
        "threshold": c.threshold,
        "baseline_runs": c.baseline_runs,
        "metrics": c.metrics.iter().filter(|m| m.anomalous).map(|m| json!(m))
            .chain(c.scores.iter().filter(|s| s.check.anomalous).map(ScoreCheck::as_metric))
            .collect::<Vec<_>>(),
        "time": format_ns(now),
    });
    if let Some(j) = job {
        payload["scheduled_job"] = json!(j);
    }
    if let serde_json::Value::Object(m) = &payload {
        e.attributes = m.clone();
    }
    let tx = conn.unchecked_transaction()?;
    alerts
        .record(&mut SqliteHookTx(&tx), e, &payload)
        .map_err(HookError::into_sqlite)?;
    tx.commit()?;
    tracing::warn!(run_id = %c.run_id, agent_id = c.agent_id.as_deref().unwrap_or(""), anomalies = %c.summary(), "anomalous run");
    alerts.wake();
    Ok(())
}

/// Runs that finished since `since_ns` (newest first, at most `limit`): at startup,
/// the ones a stop may have left unchecked. Checking twice records nothing twice.
pub fn finished_since(
    conn: &Connection,
    since_ns: i64,
    limit: usize,
) -> rusqlite::Result<Vec<TraceId>> {
    let mut stmt = conn.prepare(
        "SELECT trace_id FROM spans WHERE kind = 'agent_run' AND parent_span_id IS NULL
            AND agent_id IS NOT NULL AND end_ns >= ?1 ORDER BY end_ns DESC LIMIT ?2",
    )?;
    let ids = stmt
        .query_map(params![since_ns, limit as i64], |r| r.get::<_, Vec<u8>>(0))?
        .filter_map(|r| r.ok().and_then(|b| TraceId::from_slice(&b)))
        .collect();
    Ok(ids)
}

/// Tells the checker about every finished agent run that was just stored.
/// The id goes with `true` when a score arrived for the run (a re-check: the run's
/// figures were observed at its first check).
pub struct FinishedRuns(pub tokio::sync::mpsc::UnboundedSender<(TraceId, bool)>);

impl WriteHook for FinishedRuns {
    fn sqlite_only(&self) -> bool {
        true
    }

    fn after_commit(&self, records: &[Record], effects: &[WriteEffect]) {
        let finished_run = |s: &Span| {
            s.kind == SpanKind::AgentRun
                && s.parent_span_id.is_none()
                && s.end_ns.is_some()
                && s.agent_id.is_some()
        };
        // An OpenClaw heartbeat or cron run without `model.usage` has its attempt
        // (`openclaw.harness`) as its root: checked against its job's runs.
        let finished_scheduled = |s: &Span| {
            s.source == "openclaw"
                && s.name.starts_with("openclaw.harness ")
                && s.end_ns.is_some()
                && matches!(
                    s.attributes
                        .get("openclaw.trigger")
                        .and_then(|v| v.as_str()),
                    Some("heartbeat" | "cron")
                )
        };
        for (r, effect) in records.iter().zip(effects) {
            // A run reported in pieces is checked once, when the piece that ends it arrives
            // (one that expired on arrival is not stored, so there is nothing to check).
            if *effect != WriteEffect::Expired
                && let Some(change) = effect.span_change(r)
                && (change.became(finished_run) || change.became(finished_scheduled))
            {
                let _ = self.0.send((change.after.trace_id, false));
            }
            // A score (often later than the run: a judge, a person) checks the run again.
            if let (WriteEffect::Inserted, Record::Event(e)) = (effect, r)
                && e.name == crate::model::evaluation::EVENT
                && let Some(t) = e.trace_id
            {
                let _ = self.0.send((t, true));
            }
        }
    }
}

/// One metric of a recorded anomaly, with how far it was from the median in percent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnomalyMetric {
    pub metric: String,
    pub value: Option<f64>,
    pub median: Option<f64>,
    pub mad: Option<f64>,
    pub z: Option<f64>,
    /// (value − median) / |median| × 100; `null` when the median is 0.
    pub deviation_pct: Option<f64>,
}

/// A run the baselines flagged (a `baseline_anomaly` event).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    pub trace_id: Option<String>,
    pub agent_id: Option<String>,
    pub time_ms: i64,
    pub run_name: Option<String>,
    pub metrics: Vec<AnomalyMetric>,
    #[serde(skip)]
    pub time_ns: i64,
    #[serde(skip)]
    pub rowid: i64,
}

pub use crate::store::query::AgentRange as AnomalyFilter;

fn anomaly_metrics(attrs: Option<String>) -> Vec<AnomalyMetric> {
    let v: serde_json::Value = attrs
        .and_then(|a| serde_json::from_str(&a).ok())
        .unwrap_or_default();
    let Some(list) = v["metrics"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|m| {
            let value = m["value"].as_f64();
            let median = m["median"].as_f64();
            AnomalyMetric {
                metric: m["metric"].as_str().unwrap_or_default().to_string(),
                value,
                median,
                mad: m["mad"].as_f64(),
                z: m["z"].as_f64(),
                deviation_pct: match (value, median) {
                    (Some(v), Some(md)) if md != 0.0 => Some((v - md) / md.abs() * 100.0),
                    _ => None,
                },
            }
        })
        .collect()
}

/// Recorded anomalies, newest first; `cursor` is `"<time ns>.<row id>"`.
pub fn list_anomalies(
    db: &dyn Rows,
    f: &AnomalyFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<crate::store::query::Page<Anomaly>, StoreError> {
    let mut sql = String::from(
        "SELECT e.time_ns, e.id, e.trace_id, e.agent_id, e.attributes, t.root_name
         FROM events e LEFT JOIN traces t ON t.trace_id = e.trace_id
         WHERE e.type = 'custom' AND e.name = 'baseline_anomaly'",
    );
    let mut args: Vec<Arg> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, a: Arg| {
        args.push(a);
        sql.push_str(&clause.replace('#', &format!("?{}", args.len())));
    };
    if let Some(a) = &f.agent_id {
        arg(&mut sql, " AND e.agent_id = #", a.as_str().into());
    }
    if let Some(from) = f.from_ns {
        arg(&mut sql, " AND e.time_ns >= #", from.into());
    }
    if let Some(to) = f.to_ns {
        arg(&mut sql, " AND e.time_ns < #", to.into());
    }
    if let Some(c) = cursor {
        let bad = || StoreError::BadRequest("cursor: not a cursor this API returned".into());
        let (t, id) = c.split_once('.').ok_or_else(bad)?;
        let t: i64 = t.parse().map_err(|_| bad())?;
        let id: i64 = id.parse().map_err(|_| bad())?;
        arg(&mut sql, " AND (e.time_ns < # ", t.into());
        arg(&mut sql, "OR (e.time_ns = # ", t.into());
        arg(&mut sql, "AND e.id < #))", id.into());
    }
    arg(
        &mut sql,
        " ORDER BY e.time_ns DESC, e.id DESC LIMIT #",
        (limit as i64 + 1).into(),
    );
    let mut items: Vec<Anomaly> = db
        .rows(&sql, &args)?
        .into_iter()
        .map(|r| {
            let t = r.int(0);
            Anomaly {
                time_ns: t,
                rowid: r.int(1),
                time_ms: crate::util::time::ms_of(t),
                trace_id: r.blob(2).map(crate::util::hex::encode),
                agent_id: r.opt_text(3),
                metrics: anomaly_metrics(r.opt_text(4)),
                run_name: r.opt_text(5),
            }
        })
        .collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|a| format!("{}.{}", a.time_ns, a.rowid))
    } else {
        None
    };
    Ok(crate::store::query::Page { items, next_cursor })
}

#[cfg(test)]
mod tests {
    #[test]
    fn files_written_from_each_tool_shape() {
        assert_eq!(
            files_written("write", r#"{"path":"a.md","content":"x"}"#),
            vec!["a.md"]
        );
        assert_eq!(
            files_written("Edit", r#"{"file_path":"src/x.rs"}"#),
            vec!["src/x.rs"]
        );
        assert!(files_written("read", r#"{"path":"a.md"}"#).is_empty());
        assert!(files_written("ls", r#"{"path":"."}"#).is_empty());
        let patch = "*** Begin Patch\n*** Update File: a.rs\n*** Add File: b.rs\n*** Delete File: c.rs\n*** Move to: d.rs\n*** End Patch";
        assert_eq!(
            files_written(
                "apply_patch",
                &serde_json::json!({"input": patch}).to_string()
            ),
            vec!["a.rs", "b.rs", "c.rs", "d.rs"]
        );
        assert_eq!(
            files_written("apply_patch", patch),
            vec!["a.rs", "b.rs", "c.rs", "d.rs"]
        );
        assert_eq!(
            files_written("multiedit", r#"{"edits":[{"path":"x"},{"file_path":"y"}]}"#),
            vec!["x", "y"]
        );
        assert!(files_written("write", "not json").is_empty());
    }

    #[test]
    fn tool_behaviour_counts_retries_failures_and_files() {
        let call = |tool, arguments, failed| ToolCall {
            tool: Some(tool),
            arguments: Some(arguments),
            failed,
        };
        let b = tool_behaviour(&[
            call("write", r#"{"path":"a"}"#, false),
            call("write", r#"{"path":"a"}"#, false),
            call("write", r#"{"path":"b"}"#, false),
            call("edit", r#"{"path":"c"}"#, true),
        ]);
        assert_eq!(b.retry_rate, 0.25);
        assert_eq!(b.error_rate, 0.25);
        assert_eq!(b.blast_radius, 2);
        assert_eq!(tool_behaviour(&[]), ToolBehaviour::default());
    }

    use super::*;

    fn run_with(values: &[(Metric, f64)]) -> Run {
        Run {
            run_id: "r".into(),
            agent_id: Some("a".into()),
            start_ns: 0,
            start_time: String::new(),
            values: values.iter().map(|(m, v)| (m.name(), Some(*v))).collect(),
            scores: BTreeMap::new(),
        }
    }

    #[test]
    fn robust_stats_by_hand() {
        // 1 2 3 4 100: median 3, deviations 2 1 0 1 97 → MAD 1, scale 1.4826.
        let s = Stats::of(Metric::Tokens, &[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.mad, 1.0);
        // The tokens floor (10) is above 1.4826.
        assert_eq!(s.scale, 10.0);
        let s = Stats::of(Metric::Cost, &[0.1, 0.2, 0.3, 0.4, 10.0]).unwrap();
        assert!((s.scale - 0.148_26).abs() < 1e-9);
        assert!((s.z(1.0) - (1.0 - 0.3) / 0.148_26).abs() < 1e-9);
    }

    #[test]
    fn needs_history_and_respects_threshold() {
        let settings = BaselineSettings {
            runs: 50,
            min_runs: 5,
            threshold: 3.5,
        };
        let hist: Vec<Run> = (0..4)
            .map(|i| run_with(&[(Metric::LlmCalls, 3.0 + i as f64)]))
            .collect();
        let c = check_run(&run_with(&[(Metric::LlmCalls, 100.0)]), &hist, &settings);
        assert_eq!(c.status, "insufficient_history");
        assert!(!c.anomalous);
        let hist: Vec<Run> = (0..20)
            .map(|i| run_with(&[(Metric::LlmCalls, 3.0 + (i % 3) as f64)]))
            .collect();
        let c = check_run(&run_with(&[(Metric::LlmCalls, 100.0)]), &hist, &settings);
        assert!(c.anomalous);
        assert_eq!(c.metrics[2].direction, Some("above"));
        let c = check_run(&run_with(&[(Metric::LlmCalls, 5.0)]), &hist, &settings);
        assert!(!c.anomalous);
        // A value the history has shown often is not anomalous even when MAD is 0.
        let hist: Vec<Run> = (0..20)
            .map(|i| run_with(&[(Metric::RetryRate, if i % 5 == 0 { 0.5 } else { 0.0 })]))
            .collect();
        let c = check_run(&run_with(&[(Metric::RetryRate, 0.5)]), &hist, &settings);
        assert!(!c.anomalous, "{c:?}");
        let c = check_run(&run_with(&[(Metric::RetryRate, 0.9)]), &hist, &settings);
        assert!(c.anomalous, "{c:?}");
    }
}
