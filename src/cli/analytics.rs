//! `openclaw-trace usage` and `openclaw-trace baseline show|check`: read the
//! local database (read-only, also while the daemon runs).

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::traces::{CliError, cost, duration, reader, store};
use crate::analytics::baseline::{self, AgentBaseline, Check};
use crate::analytics::parse_threshold;
use crate::analytics::usage::{self, Bucket, DAY_NS, Dim, UsageQuery};
use crate::config::Config;
use crate::model::{TraceId, now_ns};

#[derive(Args, Debug)]
pub struct UsageArgs {
    /// Since midnight UTC (the default)
    #[arg(long, conflicts_with = "since")]
    pub today: bool,
    /// Within this long ago (1h, 7d, 30d)
    #[arg(long)]
    pub since: Option<String>,
    /// Group by model, agent, session, user, provider, day or hour (comma-separated)
    #[arg(long, default_value = "model")]
    pub by: String,
    /// Only this agent
    #[arg(long)]
    pub agent: Option<String>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BaselineArgs {
    #[command(subcommand)]
    pub command: BaselineCmd,
}

#[derive(Subcommand, Debug)]
pub enum BaselineCmd {
    /// Each agent's baseline: median and MAD of every metric over its last runs
    Show {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Compare one run with its agent's baseline; exits 1 when it is anomalous
    Check {
        /// The run's trace id (32 hex digits)
        run_id: String,
        /// Robust z-score beyond which a metric is anomalous [default: OCT_BASELINE_THRESHOLD]
        #[arg(long)]
        threshold: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn usage_query(a: &UsageArgs) -> Result<UsageQuery, CliError> {
    let now = now_ns();
    let from = match &a.since {
        Some(s) => {
            let d = crate::util::duration::parse(s)
                .map_err(|e| CliError::Usage(format!("--since: {e}")))?;
            now - d.as_nanos() as i64
        }
        None => now - now.rem_euclid(DAY_NS),
    };
    let mut q = UsageQuery {
        from_ns: Some(from),
        ..Default::default()
    };
    for part in a.by.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match (Dim::parse(part), Bucket::parse(part)) {
            (Some(d), _) => q.group_by.push(d),
            (None, Some(b)) => q.bucket = Some(b),
            _ => {
                return Err(CliError::Usage(format!(
                    "--by: {part:?} is not one of model, agent, session, user, provider, day, hour"
                )));
            }
        }
    }
    if let Some(agent) = &a.agent {
        q.filters.push((Dim::Agent, agent.clone()));
    }
    Ok(q)
}

pub fn run_usage(cfg: &Config, a: &UsageArgs) -> Result<String, CliError> {
    let q = usage_query(a)?;
    if cfg.store.database_url.is_some() {
        // A central on PostgreSQL: its API answers.
        let v = super::remote::get_json_blocking(
            cfg,
            "/v1/usage",
            &[
                (
                    "group_by",
                    Some(
                        q.group_by
                            .iter()
                            .map(|d| d.name())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                ),
                ("bucket", q.bucket.map(|b| b.name().to_string())),
                ("from", q.from_ns.map(|t| (t / 1_000_000).to_string())),
                (
                    "agent_id",
                    q.filters
                        .iter()
                        .find(|(d, _)| *d == Dim::Agent)
                        .map(|(_, v)| v.clone()),
                ),
            ],
        )?;
        if a.json {
            return Ok(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n");
        }
        let rows: Vec<usage::UsageRow> = super::remote::field(&v, "rows")?;
        let totals: usage::UsageRow = super::remote::field(&v, "totals")?;
        return Ok(usage_table(&q, &rows, &totals));
    }
    let conn = reader(cfg)?;
    let report = usage::query(&conn, &q)?;
    if a.json {
        return Ok(serde_json::to_string_pretty(&report).unwrap_or_default() + "\n");
    }
    Ok(usage_table(&q, &report.rows, &report.totals))
}

pub fn usage_table(q: &UsageQuery, rows: &[usage::UsageRow], totals: &usage::UsageRow) -> String {
    let mut dims = q.group_by.clone();
    dims.sort();
    dims.dedup();
    let mut out = String::new();
    let mut head: Vec<String> = Vec::new();
    if q.bucket.is_some() {
        head.push(format!("{:<20}", "PERIOD"));
    }
    for d in &dims {
        head.push(format!("{:<24}", d.name().to_uppercase()));
    }
    let _ = writeln!(
        out,
        "{}{:>7} {:>6} {:>11} {:>10} {:>10} {:>10} {:>11} {:>8} {:>8} {:>8}",
        head.join(" ") + if head.is_empty() { "" } else { " " },
        "CALLS",
        "ERRORS",
        "INPUT",
        "OUTPUT",
        "CACHE_RD",
        "CACHE_WR",
        "COST",
        "P50",
        "P95",
        "P99"
    );
    let mut line = |label: Vec<String>, row: &usage::UsageRow| {
        let cost_text = match (row.cost_usd, row.unpriced_calls) {
            (c, 0) => cost(c),
            (None, _) => "unknown".into(),
            (c, _) => format!("{}+?", cost(c)),
        };
        let _ = writeln!(
            out,
            "{}{:>7} {:>6} {:>11} {:>10} {:>10} {:>10} {:>11} {:>8} {:>8} {:>8}",
            label.join(" ") + if label.is_empty() { "" } else { " " },
            row.calls,
            row.errors,
            row.input_tokens,
            row.output_tokens,
            row.cache_read_tokens,
            row.cache_write_tokens,
            cost_text,
            duration(row.latency_ms.p50),
            duration(row.latency_ms.p95),
            duration(row.latency_ms.p99),
        );
    };
    for row in rows {
        let mut label = Vec::new();
        if let Some(b) = &row.bucket_start {
            let shown = match q.bucket {
                Some(Bucket::Day) => b.get(..10).unwrap_or(b),
                _ => b.get(..16).unwrap_or(b),
            };
            label.push(format!("{shown:<20}"));
        }
        for d in &dims {
            let v = row.dim(*d).unwrap_or("-");
            label.push(format!("{:<24}", v.chars().take(24).collect::<String>()));
        }
        line(label, row);
    }
    if rows.is_empty() {
        out.push_str("(no usage in this range)\n");
    } else if rows.len() > 1 {
        let mut label = vec![format!("{:<20}", "TOTAL")];
        let width = dims.len() + q.bucket.is_some() as usize;
        for _ in 1..width {
            label.push(format!("{:<24}", ""));
        }
        if width == 0 {
            label.clear();
        }
        line(label, totals);
    }
    if totals.unpriced_calls > 0 {
        let _ = writeln!(
            out,
            "{} calls have no known cost (no price for the model); see /v1/pricing and OCT_PRICING_FILE",
            totals.unpriced_calls
        );
    }
    out
}

/// `baseline show|check`: prints the answer; `check` exits 1 when the run is anomalous.
pub fn run_baseline(cfg: &Config, a: &BaselineArgs) -> ExitCode {
    let result = match &a.command {
        BaselineCmd::Show { agent, json } => show(cfg, agent.as_deref(), *json).map(|s| (s, false)),
        BaselineCmd::Check {
            run_id,
            threshold,
            json,
        } => check(cfg, run_id, threshold.as_deref(), *json),
    };
    match result {
        Ok((text, anomalous)) => {
            print!("{text}");
            if anomalous {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(CliError::Usage(m)) => {
            eprintln!("openclaw-trace: {m}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("openclaw-trace: {e}");
            ExitCode::from(2)
        }
    }
}

fn show(cfg: &Config, agent: Option<&str>, json: bool) -> Result<String, CliError> {
    let agents = baseline::show(&*store(cfg)?, agent, cfg.analytics.baseline_runs)?;
    if json {
        return Ok(serde_json::to_string_pretty(&agents).unwrap_or_default() + "\n");
    }
    Ok(show_table(&agents))
}

fn show_table(agents: &[AgentBaseline]) -> String {
    let mut out = String::new();
    for a in agents {
        let _ = writeln!(
            out,
            "agent {}  runs {}  last run {}",
            a.agent_id,
            a.runs,
            a.last_run.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            out,
            "  {:<14} {:>14} {:>14} {:>14} {:>14}",
            "METRIC", "MEDIAN", "MAD", "P5", "P95"
        );
        for m in &a.metrics {
            let _ = writeln!(
                out,
                "  {:<14} {:>14.4} {:>14.4} {:>14.4} {:>14.4}",
                m.metric, m.median, m.mad, m.p5, m.p95
            );
        }
    }
    if agents.is_empty() {
        out.push_str("(no agent runs)\n");
    }
    out
}

fn check(
    cfg: &Config,
    run_id: &str,
    threshold: Option<&str>,
    json: bool,
) -> Result<(String, bool), CliError> {
    let id = TraceId::parse_hex(run_id.trim())
        .ok_or_else(|| CliError::Usage("run id: expected 32 hex digits".into()))?;
    let mut settings = cfg.analytics.baseline();
    if let Some(t) = threshold {
        settings.threshold =
            parse_threshold(t).map_err(|e| CliError::Usage(format!("--threshold: {e}")))?;
    }
    let c = baseline::check(&*store(cfg)?, &id, &settings).map_err(|e| match e {
        baseline::BaselineError::Store(e) => CliError::Store(e),
        other => CliError::NotFound(other.to_string()),
    })?;
    let text = if json {
        serde_json::to_string_pretty(&c).unwrap_or_default() + "\n"
    } else {
        check_table(&c)
    };
    Ok((text, c.anomalous))
}

fn check_table(c: &Check) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}  agent {}  {}  (threshold {}, {} runs in the baseline)",
        c.run_id,
        c.agent_id.as_deref().unwrap_or("-"),
        c.status.to_uppercase(),
        c.threshold,
        c.baseline_runs
    );
    let _ = writeln!(
        out,
        "  {:<14} {:>14} {:>14} {:>10}",
        "METRIC", "VALUE", "MEDIAN", "Z"
    );
    let num = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    for m in &c.metrics {
        let _ = writeln!(
            out,
            "  {:<14} {:>14} {:>14} {:>10}{}",
            m.metric,
            num(m.value),
            num(m.median),
            m.z.map(|z| format!("{z:.2}")).unwrap_or_else(|| "-".into()),
            if m.anomalous { "  ANOMALOUS" } else { "" }
        );
    }
    for sc in &c.scores {
        let m = &sc.check;
        let _ = writeln!(
            out,
            "  {:<14} {:>14} {:>14} {:>10}{}",
            format!("score.{}", sc.name),
            num(m.value),
            num(m.median),
            m.z.map(|z| format!("{z:.2}")).unwrap_or_else(|| "-".into()),
            if m.anomalous { "  ANOMALOUS" } else { "" }
        );
    }
    out
}
