//! `openclaw-trace openclaw cache|scheduled|subagents|context|channels|fallbacks|waste`:
//! the OpenClaw views (analytics::openclaw) over the local database, read-only.

use std::fmt::Write as _;

use clap::Args;

use super::traces::{CliError, cost, store};
use crate::analytics::openclaw::{self as views, CacheBy, WasteFlag, WasteRules, Window};
use crate::analytics::pricing::PriceTable;
use crate::config::Config;
use crate::model::{TraceId, now_ns};

#[derive(Args, Debug, Clone)]
pub struct ViewArgs {
    /// Within this long ago (1h, 1d, 7d)
    #[arg(long, default_value = "1d")]
    pub since: String,
    /// Only this agent
    #[arg(long)]
    pub agent: Option<String>,
    /// Only this sidecar's runs (a fleet's central on PostgreSQL)
    #[arg(long)]
    pub instance: Option<String>,
    /// Print JSON (the same as the HTTP API's answer)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    #[command(flatten)]
    pub view: ViewArgs,
    /// Group by agent, model or session
    #[arg(long, default_value = "agent")]
    pub by: String,
}

#[derive(Args, Debug, Clone)]
pub struct WasteArgs {
    #[command(flatten)]
    pub view: ViewArgs,
    /// Only this run (trace id)
    #[arg(long)]
    pub run: Option<String>,
}

fn window(a: &ViewArgs) -> Result<Window, CliError> {
    let d = crate::util::duration::parse(&a.since)
        .map_err(|e| CliError::Usage(format!("--since: {e}")))?;
    let now = now_ns();
    Ok(Window {
        from_ns: now - d.as_nanos() as i64,
        to_ns: now + 1,
        agent: a.agent.clone(),
        instance: a.instance.clone(),
    })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

pub fn run_cache(cfg: &Config, a: &CacheArgs) -> Result<String, CliError> {
    let by = CacheBy::parse(&a.by)
        .ok_or_else(|| CliError::Usage("--by: expected agent, model or session".into()))?;
    let w = window(&a.view)?;
    let prices = PriceTable::load(cfg.analytics.pricing_file.as_deref())
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let r = views::cache(&*store(cfg)?, &prices, &w, by)?;
    if a.view.json {
        return Ok(json(&r));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:>6} {:>12} {:>12} {:>12} {:>7} {:>10} {:>10}",
        r.by.to_uppercase(),
        "CALLS",
        "PROMPT",
        "CACHE_READ",
        "CACHE_WRITE",
        "HIT",
        "SAVED",
        "NET"
    );
    for row in r.rows.iter().chain(std::iter::once(&r.totals)) {
        let _ = writeln!(
            out,
            "{:<40} {:>6} {:>12} {:>12} {:>12} {:>7} {:>10} {:>10}",
            short(&row.key, 40),
            row.calls,
            row.prompt_tokens,
            row.cache_read_tokens,
            row.cache_write_tokens,
            pct(row.hit_rate),
            cost(Some(row.saved_usd)),
            cost(Some(row.net_saved_usd)),
        );
    }
    if !r.totals.unpriced_models.is_empty() {
        let _ = writeln!(
            out,
            "no price (savings not counted): {}",
            r.totals.unpriced_models.join(", ")
        );
    }
    Ok(out)
}

pub fn run_scheduled(cfg: &Config, a: &ViewArgs) -> Result<String, CliError> {
    let r = views::scheduled(&*store(cfg)?, &window(a)?, 50)?;
    if a.json {
        return Ok(json(&r));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<10} {:<24} {:<12} {:>5} {:>12} {:>8} {:>6} {:>10} {:>10}",
        "DAY",
        "KIND",
        "JOB",
        "AGENT",
        "RUNS",
        "HEARTBEAT_OK",
        "NO_REPLY",
        "ERRORS",
        "COST",
        "PER RUN"
    );
    for d in &r.days {
        let _ = writeln!(
            out,
            "{:<10} {:<10} {:<24} {:<12} {:>5} {:>12} {:>8} {:>6} {:>10} {:>10}{}",
            d.day,
            d.kind,
            short(d.job.as_deref().unwrap_or("-"), 24),
            short(d.agent_id.as_deref().unwrap_or("-"), 12),
            d.runs,
            d.heartbeat_ok,
            d.no_reply,
            d.errors,
            cost(Some(d.cost_usd)),
            cost(d.cost_per_run_usd),
            if d.rising { "  rising" } else { "" }
        );
    }
    let t = &r.totals;
    let _ = writeln!(
        out,
        "heartbeats: {} runs, {} ({} HEARTBEAT_OK, {} NO_REPLY); crons: {} runs, {}",
        t.heartbeat_runs,
        cost(Some(t.heartbeat_cost_usd)),
        t.heartbeat_ok,
        t.no_reply,
        t.cron_runs,
        cost(Some(t.cron_cost_usd))
    );
    Ok(out)
}

pub fn run_subagents(cfg: &Config, a: &ViewArgs) -> Result<String, CliError> {
    let r = views::subagents(&*store(cfg)?, &window(a)?)?;
    if a.json {
        return Ok(json(&r));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<48} {:<32} {:>5} {:>10}",
        "SUB-AGENT SESSION", "PARENT RUN", "RUNS", "COST"
    );
    for l in &r.subagents {
        let _ = writeln!(
            out,
            "{:<48} {:<32} {:>5} {:>10}",
            short(&l.child_session_key, 48),
            l.parent_trace_id.as_deref().unwrap_or("-"),
            l.child_runs.len(),
            cost(Some(l.child_cost_usd))
        );
    }
    if !r.parents.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<32} {:>10} {:>12} {:>10} {:>5}",
            "PARENT RUN", "OWN", "SUB-AGENTS", "TOTAL", "N"
        );
        for p in &r.parents {
            let _ = writeln!(
                out,
                "{:<32} {:>10} {:>12} {:>10} {:>5}",
                p.trace_id,
                cost(p.own_cost_usd),
                cost(Some(p.subagent_cost_usd)),
                cost(Some(p.total_cost_usd)),
                p.subagents
            );
        }
    }
    Ok(out)
}

pub fn run_context(cfg: &Config, a: &ViewArgs) -> Result<String, CliError> {
    let r = views::context(&*store(cfg)?, &window(a)?, 0.8, 50)?;
    if a.json {
        return Ok(json(&r));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<38} {:>5} {:>10} {:>10} {:>10} {:>7} {:>11}",
        "SESSION", "TURNS", "LAST", "MAX", "WINDOW", "MAX %", "COMPACTIONS"
    );
    for s in &r.sessions {
        let _ = writeln!(
            out,
            "{:<38} {:>5} {:>10} {:>10} {:>10} {:>7} {:>11}{}",
            short(&s.session_id, 38),
            s.turns,
            s.last_context_tokens,
            s.max_context_tokens,
            s.context_window,
            pct(Some(s.max_used_ratio)),
            s.compactions,
            if s.near_window {
                "  near its window"
            } else {
                ""
            }
        );
    }
    Ok(out)
}

pub fn run_channels(cfg: &Config, a: &ViewArgs) -> Result<String, CliError> {
    let r = views::channels(&*store(cfg)?, &window(a)?)?;
    if a.json {
        return Ok(json(&r));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>6} {:>6} {:>12} {:>10}",
        "CHANNEL", "RUNS", "CALLS", "TOKENS", "COST"
    );
    for c in &r.channels {
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:>6} {:>12} {:>10}",
            short(&c.channel, 20),
            c.runs,
            c.llm_calls,
            c.total_tokens,
            cost(Some(c.cost_usd))
        );
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:>6} {:>6} {:>6} {:>10}",
        "TOOL", "CALLS", "ERRORS", "RUNS", "RUNS COST"
    );
    for t in &r.tools {
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:>6} {:>6} {:>10}",
            short(&t.tool, 20),
            t.calls,
            t.errors,
            t.runs,
            cost(Some(t.runs_cost_usd))
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    Ok(out)
}

pub fn run_fallbacks(cfg: &Config, a: &ViewArgs) -> Result<String, CliError> {
    let r = views::fallbacks(&*store(cfg)?, &window(a)?)?;
    if a.json {
        return Ok(json(&r));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:<30} {:<20} {:<14} {:>5}",
        "FROM", "TO", "DECISION", "REASON", "COUNT"
    );
    for p in &r.pairs {
        let _ = writeln!(
            out,
            "{:<30} {:<30} {:<20} {:<14} {:>5}",
            short(&p.from, 30),
            short(&p.to, 30),
            short(&p.decision, 20),
            short(p.reason.as_deref().unwrap_or("-"), 14),
            p.count
        );
    }
    Ok(out)
}

pub fn run_waste(cfg: &Config, a: &WasteArgs) -> Result<String, CliError> {
    let trace = match &a.run {
        None => None,
        Some(t) => Some(
            TraceId::parse_hex(t)
                .ok_or_else(|| CliError::Usage("--run: expected 32 hex digits".into()))?,
        ),
    };
    let r = views::waste(
        &*store(cfg)?,
        &window(&a.view)?,
        &WasteRules::default(),
        trace,
    )?;
    if a.view.json {
        return Ok(json(&r));
    }
    let mut out = String::new();
    let _ = writeln!(out, "{:<32} {:<12} {:>10}  FLAGS", "RUN", "AGENT", "COST");
    for run in &r.runs {
        let flags: Vec<String> = run
            .flags
            .iter()
            .map(|f| match f {
                WasteFlag::ToolLoop { tool, repeats } => format!("tool loop ({tool} x{repeats})"),
                WasteFlag::BloatedContext {
                    input_tokens,
                    factor,
                    ..
                } => format!("bloated context ({input_tokens} tokens, {factor}x median)"),
                WasteFlag::ProviderRetries { failures, .. } => {
                    format!("provider retries ({failures} failures)")
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<32} {:<12} {:>10}  {}",
            run.trace_id,
            short(run.agent_id.as_deref().unwrap_or("-"), 12),
            cost(run.cost_usd),
            flags.join(", ")
        );
    }
    for c in &r.agents {
        let _ = writeln!(
            out,
            "agent {}: {} flagged runs ({} tool loops, {} bloated contexts, {} provider retries), {}",
            c.agent_id,
            c.runs,
            c.tool_loop,
            c.bloated_context,
            c.provider_retries,
            cost(Some(c.flagged_cost_usd))
        );
    }
    Ok(out)
}
