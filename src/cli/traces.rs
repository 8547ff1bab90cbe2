//! `openclaw-trace traces` and `openclaw-trace trace ID`: read the local DB,
//! also while the daemon runs (read-only connection).

use std::fmt::Write as _;

use clap::Args;

use crate::config::Config;
use crate::model::TraceId;
use crate::store::open_reader;
use crate::store::postgres::queries::PgRows;
use crate::store::query::{self, SpanOut, TraceFilter, TraceSummary};
use crate::store::rows::Rows;

#[derive(Args, Debug)]
pub struct TracesArgs {
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub session: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    /// ok, error or unset
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// Root span name
    #[arg(long)]
    pub name: Option<String>,
    /// Only traces that started within this long ago (15m, 1h, 7d)
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Trace id (32 hex digits)
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

/// A user-facing failure of a CLI command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("no database at {0} (set OCT_DB_PATH or --db-path to the daemon's database)")]
    NoDatabase(String),
    #[error(
        "this command reads a SQLite database; with OCT_DATABASE_URL the data is in PostgreSQL: `traces`, `usage`, `activity`, `instances`, `baseline` and the `openclaw` views read it there, and the central's dashboard shows it"
    )]
    OnPostgres,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
}

pub fn reader(cfg: &Config) -> Result<rusqlite::Connection, CliError> {
    if cfg.store.database_url.is_some() {
        return Err(CliError::OnPostgres);
    }
    let path = cfg.store.db_path();
    if !path.exists() {
        return Err(CliError::NoDatabase(path.display().to_string()));
    }
    Ok(open_reader(&path)?)
}

/// The store the store-neutral readers (the OpenClaw views, baselines) read: the SQLite
/// file, or a central's PostgreSQL (`OCT_DATABASE_URL`), asked directly.
pub fn store(cfg: &Config) -> Result<Box<dyn Rows>, CliError> {
    match &cfg.store.database_url {
        None => Ok(Box::new(reader(cfg)?)),
        Some(url) => Ok(Box::new(
            PgRows::standalone(url).map_err(|e| CliError::Failed(e.to_string()))?,
        )),
    }
}

pub fn cost(c: Option<f64>) -> String {
    c.map(|c| format!("${c:.4}")).unwrap_or_else(|| "-".into())
}

pub fn duration(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000.0 => format!("{ms:.0}ms"),
        Some(ms) => format!("{:.2}s", ms / 1000.0),
    }
}

pub fn run_traces(cfg: &Config, a: &TracesArgs) -> Result<String, CliError> {
    let mut filter = TraceFilter {
        agent_id: a.agent.clone(),
        session_id: a.session.clone(),
        user_id: a.user.clone(),
        status: a.status.clone(),
        provider: a.provider.clone(),
        model: a.model.clone(),
        name: a.name.clone(),
        ..Default::default()
    };
    if let Some(s) = &a.since {
        let d = crate::util::duration::parse(s)
            .map_err(|e| CliError::Usage(format!("--since: {e}")))?;
        filter.from_ns = Some(crate::model::now_ns() - d.as_nanos() as i64);
    }
    let limit = a.limit.clamp(1, query::MAX_LIMIT);
    let items = if cfg.store.database_url.is_some() {
        // A central on PostgreSQL: its API answers.
        let v = super::remote::get_json_blocking(
            cfg,
            "/v1/traces",
            &[
                ("agent_id", filter.agent_id),
                ("session_id", filter.session_id),
                ("user_id", filter.user_id),
                ("status", filter.status),
                ("provider", filter.provider),
                ("model", filter.model),
                ("name", filter.name),
                ("from", filter.from_ns.map(|t| (t / 1_000_000).to_string())),
                ("limit", Some(limit.to_string())),
            ],
        )?;
        super::remote::field(&v, "traces")?
    } else {
        let conn = reader(cfg)?;
        query::list_traces(&conn, &filter, limit, None)?.items
    };
    if a.json {
        return Ok(serde_json::to_string_pretty(&items).unwrap_or_default() + "\n");
    }
    Ok(traces_table(&items))
}

pub fn traces_table(items: &[TraceSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32}  {:<20}  {:>8}  {:<6}  {:>5}  {:>8}  {:>9}  {:<12}  NAME",
        "TRACE", "START", "DURATION", "STATUS", "SPANS", "TOKENS", "COST", "AGENT"
    );
    for t in items {
        let _ = writeln!(
            out,
            "{:<32}  {:<20}  {:>8}  {:<6}  {:>5}  {:>8}  {:>9}  {:<12}  {}",
            t.trace_id,
            t.start_time.get(..19).unwrap_or(&t.start_time),
            duration(t.duration_ms),
            t.status,
            t.span_count,
            t.total_tokens,
            cost(t.cost_usd),
            t.agent_id.as_deref().unwrap_or("-"),
            t.name.as_deref().unwrap_or("-"),
        );
    }
    if items.is_empty() {
        out.push_str("(no traces)\n");
    }
    out
}

pub fn run_trace(cfg: &Config, a: &TraceArgs) -> Result<String, CliError> {
    let id = TraceId::parse_hex(a.id.trim())
        .ok_or_else(|| CliError::Usage("trace id: expected 32 hex digits".into()))?;
    let conn = reader(cfg)?;
    let detail = query::trace_detail(&conn, &id)?
        .ok_or_else(|| CliError::NotFound(format!("trace {}", a.id)))?;
    if a.json {
        return Ok(serde_json::to_string_pretty(&detail).unwrap_or_default() + "\n");
    }
    let t = &detail.trace;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trace {}  {}  {}  status {}  spans {}  tokens {} (in {}, out {})  cost {}",
        t.trace_id,
        t.name.as_deref().unwrap_or("-"),
        duration(t.duration_ms),
        t.status,
        t.span_count,
        t.total_tokens,
        t.input_tokens,
        t.output_tokens,
        cost(t.cost_usd)
    );
    fn walk(s: &SpanOut, depth: usize, out: &mut String) {
        let mut extra = Vec::new();
        if let Some(m) = s.response_model.as_deref().or(s.request_model.as_deref()) {
            extra.push(format!("model {m}"));
        }
        if s.input_tokens.is_some() || s.output_tokens.is_some() {
            extra.push(format!(
                "tokens {}/{}",
                s.input_tokens.unwrap_or(0),
                s.output_tokens.unwrap_or(0)
            ));
        }
        if s.cost_usd.is_some() {
            extra.push(format!("cost {}", cost(s.cost_usd)));
        }
        if let Some(m) = &s.status_message {
            extra.push(m.clone());
        }
        let _ = writeln!(
            out,
            "{:indent$}- {} [{}] {} {}  {}",
            "",
            s.name,
            s.kind,
            duration(s.duration_ms),
            s.status,
            extra.join("  "),
            indent = depth * 2
        );
        for c in &s.children {
            walk(c, depth + 1, out);
        }
    }
    for s in &detail.spans {
        walk(s, 1, &mut out);
    }
    if !detail.events.is_empty() {
        let _ = writeln!(out, "events:");
        for e in &detail.events {
            let _ = writeln!(
                out,
                "  {} {} {} {}",
                e.time,
                e.severity,
                e.name,
                e.message.as_deref().unwrap_or("")
            );
        }
    }
    Ok(out)
}
