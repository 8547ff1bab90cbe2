//! Views on what only OpenClaw knows, read from what its plugin, log and transcripts
//! already delivered (no extra capture): prompt cache, heartbeats and cron jobs,
//! sub-agents, context windows, channels and tools, model fallbacks, waste flags.
//!
//! Every view reads a time window of stored rows (spans, traces, events; the cache
//! view reads the usage rollups, so it outlives span retention). Where OpenClaw does
//! not report something, the view says so rather than guess (`notes`).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::pricing::PriceTable;
use super::usage::{DAY_NS, HOUR_NS};
use crate::model::TraceId;
use crate::sources::openclaw::REPLY_TOKEN;
use crate::store::StoreError;
use crate::store::rows::{Arg, Dialect, Rows};

/// The window every view reads: `[from_ns, to_ns)`, optionally one agent and, on a
/// fleet's central, one sidecar.
#[derive(Clone, Debug, Default)]
pub struct Window {
    pub from_ns: i64,
    pub to_ns: i64,
    pub agent: Option<String>,
    /// The sidecar (`instance_id`) whose runs to read: a central's question only.
    pub instance: Option<String>,
}

impl Window {
    /// `?1`, `?2`, `?3`: from, to, agent.
    fn args(&self) -> [Arg; 3] {
        [
            self.from_ns.into(),
            self.to_ns.into(),
            self.agent.as_deref().into(),
        ]
    }

    /// A sidecar is a central's to filter by: SQLite keeps none.
    fn check(&self, d: Dialect) -> Result<(), StoreError> {
        match (d, &self.instance) {
            (Dialect::Sqlite, Some(_)) => Err(StoreError::BadRequest(
                "instance: runs by sidecar are kept by a fleet's central on PostgreSQL (OCT_DATABASE_URL); this store keeps no sidecar".into(),
            )),
            _ => Ok(()),
        }
    }

    /// With a sidecar asked for: ` AND {col} = ?n`, the sidecar appended to `args` as
    /// `?n`; without one, nothing (so SQLite's queries never name the column).
    fn sidecar(&self, col: &str, args: &mut Vec<Arg>) -> String {
        match &self.instance {
            None => String::new(),
            Some(i) => {
                args.push(Some(i.as_str()).into());
                format!(" AND {col} = ?{}", args.len())
            }
        }
    }
}

fn ms(ns: i64) -> i64 {
    (ns + 500_000).div_euclid(1_000_000)
}

fn hex(b: Option<&[u8]>) -> Option<String> {
    b.and_then(TraceId::from_slice).map(|t| t.to_hex())
}

fn day_of(ns: i64) -> String {
    let d = ns.div_euclid(DAY_NS) * 86_400;
    time::OffsetDateTime::from_unix_timestamp(d)
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------- cache

/// What the cache view groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheBy {
    Agent,
    Model,
    Session,
}

impl CacheBy {
    pub fn parse(s: &str) -> Option<CacheBy> {
        match s {
            "agent" => Some(CacheBy::Agent),
            "model" => Some(CacheBy::Model),
            "session" => Some(CacheBy::Session),
            _ => None,
        }
    }
    fn column(self) -> &'static str {
        match self {
            CacheBy::Agent => "agent_id",
            CacheBy::Model => "model",
            CacheBy::Session => "session_id",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CacheRow {
    pub key: String,
    pub calls: i64,
    pub input_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    /// Prompt tokens: input including the cached ones (see README, token conventions).
    pub prompt_tokens: i64,
    /// cache_read / prompt tokens; null without prompt tokens.
    pub hit_rate: Option<f64>,
    /// What the cache reads would have cost at the input price, less what they cost.
    pub saved_usd: f64,
    /// What cache writes cost above the input price (Anthropic charges a premium).
    pub write_premium_usd: f64,
    pub net_saved_usd: f64,
    /// Models in the row without a price: their savings are not counted.
    pub unpriced_models: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub by: &'static str,
    pub rows: Vec<CacheRow>,
    pub totals: CacheRow,
}

impl CacheRow {
    fn finish(&mut self) {
        self.hit_rate = (self.prompt_tokens > 0)
            .then(|| self.cache_read_tokens as f64 / self.prompt_tokens as f64);
        self.net_saved_usd = self.saved_usd - self.write_premium_usd;
    }
    fn add(&mut self, o: &CacheRow) {
        self.calls += o.calls;
        self.input_tokens += o.input_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.prompt_tokens += o.prompt_tokens;
        self.saved_usd += o.saved_usd;
        self.write_premium_usd += o.write_premium_usd;
        for m in &o.unpriced_models {
            if !self.unpriced_models.contains(m) {
                self.unpriced_models.push(m.clone());
            }
        }
    }
}

/// Cache reads and writes, hit rate and dollars saved, from the usage rollups. Each
/// (key, provider, model, day) is priced at that day's price of the model.
pub fn cache(
    db: &dyn Rows,
    prices: &PriceTable,
    w: &Window,
    by: CacheBy,
) -> Result<CacheReport, StoreError> {
    w.check(db.dialect())?;
    let mut args = w.args().to_vec();
    let sidecar = w.sidecar("instance_id", &mut args);
    let table = match (db.dialect(), by) {
        (Dialect::Sqlite, CacheBy::Session) => "usage_all".to_string(),
        (Dialect::Sqlite, _) => "usage_all_nosession".to_string(),
        // A central's hourly usage keeps no session: the window's model calls, summed
        // as the rollups sum them (each call in the hour it started, a missing count 0).
        (Dialect::Postgres, CacheBy::Session) => format!(
            "(SELECT COALESCE(session_id, '') AS session_id, COALESCE(agent_id, '') AS agent_id,
                instance_id,
                COALESCE(provider, '') AS provider,
                COALESCE(response_model, request_model, '') AS model,
                start_ns - mod(start_ns, {HOUR_NS}) AS hour_ns, 1 AS calls,
                COALESCE(input_tokens, 0) AS input_tokens,
                COALESCE(cache_read_tokens, 0) AS cache_read_tokens,
                COALESCE(cache_write_tokens, 0) AS cache_write_tokens
             FROM spans WHERE kind IN ('llm_call', 'embedding')
                AND start_ns >= ?1 AND start_ns < ?2 + {HOUR_NS}) AS calls"
        ),
        (Dialect::Postgres, _) => "usage_hourly".to_string(),
    };
    let sql = format!(
        "SELECT {col}, provider, model, hour_ns / {DAY_NS} AS day, CAST(sum(calls) AS BIGINT),
            CAST(sum(input_tokens) AS BIGINT), CAST(sum(cache_read_tokens) AS BIGINT),
            CAST(sum(cache_write_tokens) AS BIGINT)
         FROM {table} WHERE hour_ns >= ?1 AND hour_ns < ?2 AND (?3 IS NULL OR agent_id = ?3){sidecar}
         GROUP BY 1, 2, 3, 4",
        col = by.column()
    );
    let mut out: BTreeMap<String, CacheRow> = BTreeMap::new();
    for r in db.rows(&sql, &args)? {
        let key = r.text(0);
        let provider = r.text(1);
        let model = r.text(2);
        let day = r.int(3);
        let calls = r.int(4);
        let input = r.int(5);
        let read = r.int(6);
        let write = r.int(7);
        // Input counts the cached tokens, unless they exceed it (then it did not).
        let prompt = if read + write > input {
            input + read + write
        } else {
            input
        };
        let mut row = CacheRow {
            key: if key.is_empty() {
                "(none)".into()
            } else {
                key.clone()
            },
            calls,
            input_tokens: input,
            cache_read_tokens: read,
            cache_write_tokens: write,
            prompt_tokens: prompt,
            ..Default::default()
        };
        if read > 0 || write > 0 {
            let provider = (!provider.is_empty()).then_some(provider.as_str());
            match prices.lookup_at(provider, &model, day * 86_400) {
                Ok(m) if !m.free => {
                    let p = m.price;
                    row.saved_usd =
                        read as f64 * (p.input - p.cache_read.unwrap_or(p.input)).max(0.0) / 1e6;
                    row.write_premium_usd =
                        write as f64 * (p.cache_write.unwrap_or(p.input) - p.input).max(0.0) / 1e6;
                }
                Ok(_) => {}
                Err(_) => row.unpriced_models.push(model.clone()),
            }
        }
        out.entry(row.key.clone())
            .or_insert_with(|| CacheRow {
                key: row.key.clone(),
                ..Default::default()
            })
            .add(&row);
    }
    let mut totals = CacheRow {
        key: "total".into(),
        ..Default::default()
    };
    let mut rows: Vec<CacheRow> = out.into_values().collect();
    for r in &mut rows {
        r.finish();
        totals.add(r);
    }
    totals.finish();
    rows.sort_by(|a, b| {
        b.net_saved_usd
            .total_cmp(&a.net_saved_usd)
            .then(b.cache_read_tokens.cmp(&a.cache_read_tokens))
    });
    Ok(CacheReport {
        from_ms: ms(w.from_ns),
        to_ms: ms(w.to_ns),
        by: match by {
            CacheBy::Agent => "agent",
            CacheBy::Model => "model",
            CacheBy::Session => "session",
        },
        rows,
        totals,
    })
}

// ---------------------------------------------------------------- runs

/// One OpenClaw run (a trace whose root is OpenClaw's agent run) and what its root knows.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub trace_id: String,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub status: String,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub session_key: Option<String>,
    pub trigger: Option<String>,
    pub channel: Option<String>,
    pub silent_reply: Option<String>,
    pub model: Option<String>,
    pub llm_calls: i64,
    pub tool_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: Option<f64>,
    pub context_used: Option<i64>,
    pub context_limit: Option<i64>,
    #[serde(skip)]
    start_ns: i64,
}

/// OpenClaw's runs that started in the window, oldest first. A run's root is OpenClaw's
/// request span (`invoke_agent`, from `model.usage`), or, where OpenClaw sends no
/// `model.usage` (heartbeat runs in 2026.9.6), the attempt's harness span.
pub fn runs(db: &dyn Rows, w: &Window) -> Result<Vec<Run>, StoreError> {
    w.check(db.dialect())?;
    let a = db.dialect().run_root("t", "s");
    let mut args = w.args().to_vec();
    let sidecar = w.sidecar("t.instance_id", &mut args);
    let sql = format!(
        "SELECT t.trace_id, t.start_ns, t.end_ns, t.status, t.agent_id, t.session_id,
            {key}, {trigger}, {channel}, {reply}, s.request_model, t.llm_calls, t.tool_calls,
            t.input_tokens, t.output_tokens, t.cache_read_tokens, t.total_tokens, t.cost_usd,
            {used}, {limit}
         {ROOT_FROM} {join} WHERE {ROOT_IS}
           AND t.start_ns >= ?1 AND t.start_ns < ?2 AND (?3 IS NULL OR t.agent_id = ?3){sidecar}
           -- The root starts with its run or after (a run starts with its first span),
           -- and within a day of it: PostgreSQL reads only those days' partitions.
           AND s.start_ns >= ?1 AND s.start_ns < ?2 + {DAY_NS}
         ORDER BY t.start_ns, t.trace_id",
        key = a.attr("openclaw.session_key"),
        trigger = a.attr("openclaw.trigger"),
        channel = a.attr("openclaw.channel"),
        reply = a.attr(REPLY_TOKEN),
        used = a.num("openclaw.context.used"),
        limit = a.num("openclaw.context.limit"),
        join = a.join,
    );
    let mut out = Vec::new();
    db.each(&sql, &args, &mut |r| {
        let start_ns = r.int(1);
        out.push(Run {
            trace_id: hex(r.blob(0)).unwrap_or_default(),
            start_ms: ms(start_ns),
            end_ms: r.opt_int(2).map(ms),
            status: r.text(3),
            agent_id: r.opt_text(4),
            session_id: r.opt_text(5),
            session_key: r.opt_text(6),
            trigger: r.opt_text(7),
            channel: r.opt_text(8),
            silent_reply: r.opt_text(9),
            model: r.opt_text(10),
            llm_calls: r.int(11),
            tool_calls: r.int(12),
            input_tokens: r.int(13),
            output_tokens: r.int(14),
            cache_read_tokens: r.int(15),
            total_tokens: r.int(16),
            cost_usd: r.opt_real(17),
            context_used: r.opt_real(18).map(|v| v as i64),
            context_limit: r.opt_real(19).map(|v| v as i64),
            start_ns,
        });
        Ok(())
    })?;
    Ok(out)
}

// ---------------------------------------------------------------- heartbeats and crons

/// A cron job's id from its session key (`agent:<id>:cron:<job>[:run:<uuid>]`, `cron:<job>`).
pub fn cron_job_of(session_key: &str) -> Option<&str> {
    let mut parts = session_key.split(':');
    while let Some(p) = parts.next() {
        if p == "cron" {
            return parts.next().filter(|j| !j.is_empty());
        }
    }
    None
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ScheduledDay {
    /// `heartbeat` or `cron`.
    pub kind: String,
    /// The cron job's id (from the session key); null for heartbeats.
    pub job: Option<String>,
    pub agent_id: Option<String>,
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub runs: i64,
    /// Runs that answered `HEARTBEAT_OK` (nothing to report).
    pub heartbeat_ok: i64,
    /// Runs that answered `NO_REPLY`.
    pub no_reply: i64,
    pub errors: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    /// Runs whose cost is unknown (not in `cost_usd`).
    pub unpriced_runs: i64,
    pub cost_per_run_usd: Option<f64>,
    /// The cost per run is above 1.5 times the median of this job's earlier days in the window.
    pub rising: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ScheduledReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub days: Vec<ScheduledDay>,
    pub runs: Vec<Run>,
    pub totals: ScheduledTotals,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ScheduledTotals {
    pub heartbeat_runs: i64,
    pub heartbeat_cost_usd: f64,
    pub heartbeat_ok: i64,
    pub no_reply: i64,
    pub cron_runs: i64,
    pub cron_cost_usd: f64,
}

/// Heartbeat and cron runs (OpenClaw's `trigger`), each its own kind, with their cost
/// per day and per job, and the silent replies counted.
pub fn scheduled(db: &dyn Rows, w: &Window, limit: usize) -> Result<ScheduledReport, StoreError> {
    let all = runs(db, w)?;
    let mut days: BTreeMap<(String, Option<String>, Option<String>, String), ScheduledDay> =
        BTreeMap::new();
    let mut totals = ScheduledTotals::default();
    let mut listed = Vec::new();
    for r in all {
        let kind = match r.trigger.as_deref() {
            Some("heartbeat") => "heartbeat",
            Some("cron") => "cron",
            _ => continue,
        };
        let job = (kind == "cron")
            .then(|| r.session_key.as_deref().and_then(cron_job_of))
            .flatten()
            .map(str::to_string);
        let day = day_of(r.start_ns);
        let d = days
            .entry((kind.into(), job.clone(), r.agent_id.clone(), day.clone()))
            .or_insert_with(|| ScheduledDay {
                kind: kind.into(),
                job: job.clone(),
                agent_id: r.agent_id.clone(),
                day,
                ..Default::default()
            });
        d.runs += 1;
        match r.silent_reply.as_deref() {
            Some("HEARTBEAT_OK") => {
                d.heartbeat_ok += 1;
                totals.heartbeat_ok += 1;
            }
            Some("NO_REPLY") => {
                d.no_reply += 1;
                totals.no_reply += 1;
            }
            _ => {}
        }
        if r.status == "error" {
            d.errors += 1;
        }
        d.total_tokens += r.total_tokens;
        match r.cost_usd {
            Some(c) => d.cost_usd += c,
            None => d.unpriced_runs += 1,
        }
        if kind == "heartbeat" {
            totals.heartbeat_runs += 1;
            totals.heartbeat_cost_usd += r.cost_usd.unwrap_or(0.0);
        } else {
            totals.cron_runs += 1;
            totals.cron_cost_usd += r.cost_usd.unwrap_or(0.0);
        }
        listed.push(r);
    }
    let mut days: Vec<ScheduledDay> = days.into_values().collect();
    for d in &mut days {
        let priced = d.runs - d.unpriced_runs;
        d.cost_per_run_usd = (priced > 0).then(|| d.cost_usd / priced as f64);
    }
    // A job's cost per run against the median of its earlier days.
    let mut history: HashMap<(String, Option<String>, Option<String>), Vec<f64>> = HashMap::new();
    for d in &mut days {
        let h = history
            .entry((d.kind.clone(), d.job.clone(), d.agent_id.clone()))
            .or_default();
        if let Some(c) = d.cost_per_run_usd {
            if !h.is_empty() {
                let mut sorted = h.clone();
                sorted.sort_by(f64::total_cmp);
                let median = sorted[sorted.len() / 2];
                d.rising = median > 0.0 && c > median * 1.5;
            }
            h.push(c);
        }
    }
    listed.reverse();
    listed.truncate(limit);
    Ok(ScheduledReport {
        from_ms: ms(w.from_ns),
        to_ms: ms(w.to_ns),
        days,
        runs: listed,
        totals,
    })
}

/// A scheduled job, as the baselines compare its runs: the kind (`heartbeat`, `cron`),
/// the cron job's id (from the session key) and the agent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduledJob {
    pub kind: String,
    pub job: Option<String>,
    pub agent_id: Option<String>,
}

impl ScheduledJob {
    pub fn describe(&self) -> String {
        match &self.job {
            Some(j) => format!("{} job {j}", self.kind),
            None => self.kind.clone(),
        }
    }
}

/// A scheduled job whose cost per run rose: the median cost of its last `RISE_RECENT`
/// runs (the one checked among them) against the runs before them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduledRise {
    pub job: ScheduledJob,
    /// The median cost of the recent runs.
    pub cost_per_run_usd: f64,
    pub baseline_median_usd: f64,
    pub baseline_mad_usd: f64,
    pub z: f64,
    pub baseline_runs: usize,
}

/// Runs whose median is the job's current cost per run: one costly run is not a rise.
pub const RISE_RECENT: usize = 3;

/// The job a run belongs to, when it is a heartbeat or cron run.
pub fn scheduled_job_of(
    db: &dyn Rows,
    id: &TraceId,
) -> Result<Option<(ScheduledJob, i64)>, StoreError> {
    let d = db.dialect();
    let row = db.row(
        &format!(
            "SELECT {trigger}, {key}, t.agent_id, t.start_ns {OPENCLAW_ROOT} AND t.trace_id = ?1",
            trigger = d.attr("s", "openclaw.trigger"),
            key = d.attr("s", "openclaw.session_key"),
        ),
        &[Some(&id.0[..]).into()],
    )?;
    let Some((Some(trigger), key, agent_id, start)) =
        row.map(|r| (r.opt_text(0), r.opt_text(1), r.opt_text(2), r.int(3)))
    else {
        return Ok(None);
    };
    if trigger != "heartbeat" && trigger != "cron" {
        return Ok(None);
    }
    let job = (trigger == "cron")
        .then(|| key.as_deref().and_then(cron_job_of).map(str::to_string))
        .flatten();
    Ok(Some((
        ScheduledJob {
            kind: trigger,
            job,
            agent_id,
        },
        start,
    )))
}

/// The known costs of the job's runs that started at or before `until_ns`, newest first,
/// at most `n`.
fn job_costs(
    db: &dyn Rows,
    job: &ScheduledJob,
    until_ns: i64,
    n: usize,
) -> Result<Vec<f64>, StoreError> {
    let d = db.dialect();
    // Cron runs of other jobs are read and skipped: read a few times more than needed.
    let want = if job.job.is_some() { n * 4 } else { n };
    let rows = db.rows(
        &format!(
            "SELECT t.cost_usd, {key} {OPENCLAW_ROOT}
               AND t.agent_id IS NOT DISTINCT FROM ?1 AND {trigger} = ?2 AND t.start_ns <= ?3
               AND t.cost_usd IS NOT NULL
             ORDER BY t.start_ns DESC, t.trace_id DESC LIMIT ?4",
            key = d.attr("s", "openclaw.session_key"),
            trigger = d.attr("s", "openclaw.trigger"),
        ),
        &[
            job.agent_id.as_deref().into(),
            job.kind.as_str().into(),
            until_ns.into(),
            (want as i64).into(),
        ],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let key = r.opt_text(1);
        if job.job.is_some() && key.as_deref().and_then(cron_job_of) != job.job.as_deref() {
            continue;
        }
        out.push(r.opt_real(0).unwrap_or(0.0));
        if out.len() >= n {
            break;
        }
    }
    Ok(out)
}

fn rise_in(
    costs: &[f64],
    min_runs: usize,
    threshold: f64,
) -> Option<(f64, super::baseline::Stats)> {
    use super::baseline::{Metric, Stats};
    if costs.len() < RISE_RECENT + min_runs.max(1) {
        return None;
    }
    let mut recent = costs[..RISE_RECENT].to_vec();
    recent.sort_by(f64::total_cmp);
    let med = recent[RISE_RECENT / 2];
    let st = Stats::of(Metric::Cost, &costs[RISE_RECENT..])?;
    // The run checked must itself cost more than usual, and the recent median must be
    // outside what the job has shown (the baselines' rule: |z| over the threshold and
    // beyond the 95th percentile).
    (costs[0] > st.median && med > st.p95 && st.z(med) > threshold).then_some((med, st))
}

/// Whether the run `id` of a heartbeat or cron job shows its job's cost per run rising:
/// the median of its last [`RISE_RECENT`] runs against the `runs` before them. Reported
/// once, at the run where the rise starts (the job's previous run did not show it).
pub fn scheduled_rise(
    db: &dyn Rows,
    id: &TraceId,
    runs: usize,
    min_runs: usize,
    threshold: f64,
) -> Result<Option<ScheduledRise>, StoreError> {
    let Some((job, start)) = scheduled_job_of(db, id)? else {
        return Ok(None);
    };
    let own = db
        .row(
            "SELECT cost_usd FROM traces WHERE trace_id = ?1",
            &[Some(&id.0[..]).into()],
        )?
        .and_then(|r| r.opt_real(0));
    if own.is_none() {
        return Ok(None);
    }
    let costs = job_costs(db, &job, start, RISE_RECENT + runs + 1)?;
    let Some((med, st)) = rise_in(
        &costs[..costs.len().min(RISE_RECENT + runs)],
        min_runs,
        threshold,
    ) else {
        return Ok(None);
    };
    if rise_in(&costs[1..], min_runs, threshold).is_some() {
        return Ok(None);
    }
    Ok(Some(ScheduledRise {
        job,
        cost_per_run_usd: med,
        baseline_median_usd: st.median,
        baseline_mad_usd: st.mad,
        z: st.z(med),
        baseline_runs: st.runs,
    }))
}

// ---------------------------------------------------------------- sub-agents

/// A session key names a sub-agent: `agent:<id>:subagent:<uuid>`.
pub fn is_subagent_key(key: &str) -> bool {
    key.starts_with("agent:") && key.contains(":subagent:")
}

#[derive(Clone, Debug, Serialize)]
pub struct SubagentLink {
    pub child_session_key: String,
    pub child_agent_id: Option<String>,
    /// The session that spawned it (from the `subagent_spawned` hook), when known.
    pub requester_session_key: Option<String>,
    /// The run that spawned it: the requester session's run under way at the spawn.
    pub parent_trace_id: Option<String>,
    pub spawned_ms: Option<i64>,
    pub label: Option<String>,
    pub child_runs: Vec<String>,
    pub child_llm_calls: i64,
    pub child_total_tokens: i64,
    pub child_cost_usd: f64,
    /// The sub-agent ran inside its parent's trace (OpenClaw 2026.9.6): the parent run's
    /// own figures exclude it here.
    pub in_parent_trace: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ParentRollup {
    pub trace_id: String,
    pub own_cost_usd: Option<f64>,
    pub subagent_cost_usd: f64,
    /// The run's own cost plus its sub-agents'.
    pub total_cost_usd: f64,
    pub subagents: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SubagentReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub subagents: Vec<SubagentLink>,
    pub parents: Vec<ParentRollup>,
}

/// A `subagent_spawned` event: requester session key, time, label, trace.
type Spawn = (Option<String>, i64, Option<String>, Option<String>);

/// Sub-agents (session keys `agent:<id>:subagent:<uuid>`) with their runs, linked to the
/// run that spawned them, and each parent's cost with its sub-agents' rolled up.
pub fn subagents(db: &dyn Rows, w: &Window) -> Result<SubagentReport, StoreError> {
    let d = db.dialect();
    let all = runs(
        db,
        &Window {
            agent: None,
            ..w.clone()
        },
    )?;
    // Spawn events: child key -> (requester key, time, label).
    let mut spawns: HashMap<String, Spawn> = HashMap::new();
    let mut spawn_args = w.args()[..2].to_vec();
    let spawn_sidecar = w.sidecar("instance_id", &mut spawn_args);
    let spawn_sql = format!(
        "SELECT {child}, {requester}, time_ns, {label}, trace_id
         FROM events WHERE name = 'openclaw.subagent_spawned' AND time_ns >= ?1 AND time_ns < ?2{spawn_sidecar}",
        child = d.event_attr("openclaw.child_session_key"),
        requester = d.event_attr("openclaw.requester_session_key"),
        label = d.event_attr("openclaw.label"),
    );
    for r in db.rows(&spawn_sql, &spawn_args)? {
        let Some(child) = r.opt_text(0) else {
            continue;
        };
        spawns.insert(
            child.to_ascii_lowercase(),
            (r.opt_text(1), r.int(2), r.opt_text(3), hex(r.blob(4))),
        );
    }
    let mut links: BTreeMap<String, SubagentLink> = BTreeMap::new();
    for r in all.iter() {
        let Some(key) = r.session_key.as_deref().filter(|k| is_subagent_key(k)) else {
            continue;
        };
        let lk = key.to_ascii_lowercase();
        let l = links.entry(lk.clone()).or_insert_with(|| {
            let spawn = spawns.get(&lk);
            SubagentLink {
                child_session_key: key.to_string(),
                child_agent_id: r.agent_id.clone(),
                requester_session_key: spawn.and_then(|s| s.0.clone()),
                parent_trace_id: spawn.and_then(|s| s.3.clone()),
                spawned_ms: spawn.map(|s| ms(s.1)),
                label: spawn.and_then(|s| s.2.clone()),
                child_runs: Vec::new(),
                child_llm_calls: 0,
                child_total_tokens: 0,
                child_cost_usd: 0.0,
                in_parent_trace: false,
            }
        });
        if agent_ok(w, r.agent_id.as_deref()) || agent_ok(w, l.child_agent_id.as_deref()) {
            l.child_runs.push(r.trace_id.clone());
            l.child_llm_calls += r.llm_calls;
            l.child_total_tokens += r.total_tokens;
            l.child_cost_usd += r.cost_usd.unwrap_or(0.0);
        }
    }
    // OpenClaw 2026.9.6 runs a sub-agent inside the trace of the run that spawned it: its
    // attempt (a harness span with the sub-agent's session key) hangs under the parent's
    // spans, so it is no trace root. Each such attempt is a child run of that trace; its
    // calls are the model calls beneath it.
    let mut nested_args = w.args()[..2].to_vec();
    let nested_sidecar = w.sidecar("s.instance_id", &mut nested_args);
    let nested_sql = format!(
        "WITH RECURSIVE sub(top, trace_id, span_id) AS (
            SELECT s.span_id, s.trace_id, s.span_id FROM spans s
              JOIN traces t ON t.trace_id = s.trace_id
              LEFT JOIN spans r ON r.trace_id = t.trace_id AND r.span_id = t.root_span_id
            WHERE s.source = 'openclaw' AND s.name LIKE 'openclaw.harness %'
              AND s.parent_span_id IS NOT NULL AND {key} LIKE 'agent:%:subagent:%'
              AND s.start_ns >= ?1 AND s.start_ns < ?2{nested_sidecar}
              -- not the sub-agent's own trace (its root has its key): its parent's
              AND coalesce({rkey}, '') != {key}
            UNION ALL
            SELECT sub.top, c.trace_id, c.span_id FROM spans c
              JOIN sub ON c.trace_id = sub.trace_id AND c.parent_span_id = sub.span_id)
         SELECT h.trace_id, {hkey}, h.agent_id, count(l.span_id),
            CAST(coalesce(sum(l.total_tokens), 0) AS BIGINT), sum(l.cost_usd)
         FROM sub {outer_first} spans h ON h.trace_id = sub.trace_id AND h.span_id = sub.top
         LEFT JOIN spans l ON l.trace_id = sub.trace_id AND l.span_id = sub.span_id
            AND l.kind = 'llm_call'
         GROUP BY h.trace_id, h.span_id, h.start_ns, h.agent_id, {hkey} ORDER BY h.start_ns",
        key = d.attr("s", "openclaw.session_key"),
        hkey = d.attr("h", "openclaw.session_key"),
        rkey = d.attr("r", "openclaw.session_key"),
        // SQLite: CROSS JOIN keeps `sub` (the window's few sub-agent spans) the outer
        // loop; left to itself the planner walked every stored span in id order to save
        // a sort. PostgreSQL plans it without the hint (and takes no ON after CROSS JOIN).
        outer_first = match d {
            Dialect::Sqlite => "CROSS JOIN",
            Dialect::Postgres => "JOIN",
        },
    );
    let nested = db.rows(&nested_sql, &nested_args)?.into_iter().map(|r| {
        (
            hex(r.blob(0)).unwrap_or_default(),
            r.text(1),
            r.opt_text(2),
            r.int(3),
            r.int(4),
            r.opt_real(5),
        )
    });
    for (trace, key, agent, calls, tokens, cost) in nested {
        if !(agent_ok(w, agent.as_deref())) {
            continue;
        }
        let lk = key.to_ascii_lowercase();
        let spawn = spawns.get(&lk);
        let l = links.entry(lk).or_insert_with(|| SubagentLink {
            child_session_key: key.clone(),
            child_agent_id: agent.clone(),
            requester_session_key: spawn.and_then(|s| s.0.clone()),
            parent_trace_id: Some(trace.clone()),
            spawned_ms: spawn.map(|s| ms(s.1)),
            label: spawn.and_then(|s| s.2.clone()),
            child_runs: Vec::new(),
            child_llm_calls: 0,
            child_total_tokens: 0,
            child_cost_usd: 0.0,
            in_parent_trace: true,
        });
        l.in_parent_trace = true;
        l.parent_trace_id = Some(trace.clone());
        if !l.child_runs.contains(&trace) {
            l.child_runs.push(trace);
        }
        l.child_llm_calls += calls;
        l.child_total_tokens += tokens;
        l.child_cost_usd += cost.unwrap_or(0.0);
    }
    // The parent run: the requester session's latest run that started before the spawn.
    for l in links.values_mut() {
        if l.parent_trace_id.is_some() {
            continue;
        }
        let (Some(req), Some(at)) = (l.requester_session_key.as_deref(), l.spawned_ms) else {
            continue;
        };
        l.parent_trace_id = all
            .iter()
            .filter(|r| {
                r.session_key
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case(req))
                    && r.start_ms <= at
            })
            .max_by_key(|r| r.start_ms)
            .map(|r| r.trace_id.clone());
    }
    let mut parents: BTreeMap<String, ParentRollup> = BTreeMap::new();
    for l in links.values() {
        let Some(p) = &l.parent_trace_id else {
            continue;
        };
        let own = all
            .iter()
            .find(|r| &r.trace_id == p)
            .and_then(|r| r.cost_usd);
        let e = parents.entry(p.clone()).or_insert(ParentRollup {
            trace_id: p.clone(),
            own_cost_usd: own,
            subagent_cost_usd: 0.0,
            total_cost_usd: 0.0,
            subagents: 0,
        });
        e.subagent_cost_usd += l.child_cost_usd;
        e.subagents += 1;
        // Its calls are in the parent trace's cost already.
        if l.in_parent_trace {
            e.own_cost_usd = e.own_cost_usd.map(|c| (c - l.child_cost_usd).max(0.0));
        }
    }
    for p in parents.values_mut() {
        p.total_cost_usd = p.own_cost_usd.unwrap_or(0.0) + p.subagent_cost_usd;
    }
    let subagents = links
        .into_values()
        .filter(|l| !l.child_runs.is_empty())
        .collect();
    Ok(SubagentReport {
        from_ms: ms(w.from_ns),
        to_ms: ms(w.to_ns),
        subagents,
        parents: parents.into_values().collect(),
    })
}

/// A sub-agent one run spawned, for the run view (`GET /v1/traces/{id}`: `subagents`).
#[derive(Clone, Debug, Serialize)]
pub struct SpawnedSubagent {
    pub child_session_key: String,
    pub label: Option<String>,
    pub spawned_ms: i64,
    /// The child session's runs (trace ids), oldest first, at most 100.
    pub runs: Vec<String>,
    /// Their known cost.
    pub cost_usd: f64,
}

/// The root of an OpenClaw run, as `runs` reads it (joined as `t`/`s`): the tables...
macro_rules! root_from {
    () => {
        "FROM traces t JOIN spans s ON s.trace_id = t.trace_id AND s.span_id = t.root_span_id"
    };
}
/// ...and what makes the root OpenClaw's run.
macro_rules! root_is {
    () => {
        "s.source = 'openclaw' AND (s.kind = 'agent_run' OR s.name LIKE 'openclaw.harness %')"
    };
}
const ROOT_FROM: &str = root_from!();
const ROOT_IS: &str = root_is!();
/// Both, as a query's `FROM ... WHERE ...`.
const OPENCLAW_ROOT: &str = concat!(root_from!(), " WHERE ", root_is!());

/// How long after its spawn a sub-agent's runs are looked for.
const SUBAGENT_HORIZON_NS: i64 = DAY_NS;

/// The sub-agents the run `id` spawned, the same links the sub-agents view makes: a
/// `subagent_spawned` event in this run's trace, or one whose requester session is this
/// run's and whose time falls after this run started and before the session's next run;
/// each with the runs of the child session (`agent:<id>:subagent:<uuid>`) after the spawn.
pub fn subagents_of_run(db: &dyn Rows, id: &TraceId) -> Result<Vec<SpawnedSubagent>, StoreError> {
    let d = db.dialect();
    let key_of_root = d.attr("s", "openclaw.session_key");
    let requester = d.event_attr("openclaw.requester_session_key");
    let trace: Arg = Some(&id.0[..]).into();
    let root = db.row(
        &format!("SELECT t.start_ns, {key_of_root} {OPENCLAW_ROOT} AND t.trace_id = ?1"),
        std::slice::from_ref(&trace),
    )?;
    let Some((start_ns, key)) = root.map(|r| (r.int(0), r.opt_text(1))) else {
        return Ok(Vec::new());
    };
    // Spawns not linked to a trace, claimed by this run's session key after it started:
    // only then is the session's next run looked for (it scans the later runs).
    let unlinked = match &key {
        Some(k) => db
            .row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM events WHERE type = 'custom'
                        AND name = 'openclaw.subagent_spawned' AND trace_id IS NULL
                        AND time_ns >= ?1 AND lower({requester}) = lower(?2))"
                ),
                &[start_ns.into(), k.as_str().into()],
            )?
            .is_some_and(|r| r.int(0) != 0),
        None => false,
    };
    // The session's next run bounds the spawns its requester key can claim.
    let next_ns: Option<i64> = match key.as_ref().filter(|_| unlinked) {
        Some(k) => db
            .row(
                &format!(
                    // In start order, stopping at the first: `min()` would unpack every later run.
                    "SELECT t.start_ns {OPENCLAW_ROOT} AND t.start_ns > ?1
                       AND lower({key_of_root}) = lower(?2) ORDER BY t.start_ns LIMIT 1"
                ),
                &[start_ns.into(), k.as_str().into()],
            )?
            .and_then(|r| r.opt_int(0)),
        None => None,
    };
    let spawns = db.rows(
        &format!(
            "SELECT {child}, {label}, time_ns
             FROM events WHERE type = 'custom' AND name = 'openclaw.subagent_spawned'
               AND (trace_id = ?1 OR (trace_id IS NULL AND ?2 IS NOT NULL AND time_ns >= ?3
                    AND (?4 IS NULL OR time_ns < ?4) AND lower({requester}) = lower(?2)))
             ORDER BY time_ns LIMIT 100",
            child = d.event_attr("openclaw.child_session_key"),
            label = d.event_attr("openclaw.label"),
        ),
        &[
            trace,
            key.as_deref().into(),
            start_ns.into(),
            next_ns.into(),
        ],
    )?;
    let runs_sql = format!(
        "SELECT t.trace_id, t.cost_usd {OPENCLAW_ROOT}
           AND t.start_ns >= ?1 AND t.start_ns < ?2 AND lower({key_of_root}) = lower(?3)
         ORDER BY t.start_ns LIMIT 100"
    );
    let mut out: Vec<SpawnedSubagent> = Vec::new();
    for r in spawns {
        let (child, label, at) = (r.opt_text(0), r.opt_text(1), r.int(2));
        let Some(child) = child.filter(|c| is_subagent_key(c)) else {
            continue;
        };
        if out
            .iter()
            .any(|o| o.child_session_key.eq_ignore_ascii_case(&child))
        {
            continue;
        }
        // A minute's slack: the hook and the child's first call may arrive out of order.
        let rows = db.rows(
            &runs_sql,
            &[
                (at - 60_000_000_000).into(),
                (at + SUBAGENT_HORIZON_NS).into(),
                child.as_str().into(),
            ],
        )?;
        out.push(SpawnedSubagent {
            child_session_key: child,
            label,
            spawned_ms: ms(at),
            cost_usd: rows.iter().filter_map(|r| r.opt_real(1)).sum(),
            runs: rows.iter().filter_map(|r| hex(r.blob(0))).collect(),
        });
    }
    Ok(out)
}

fn agent_ok(w: &Window, agent: Option<&str>) -> bool {
    w.agent.is_none() || w.agent.as_deref() == agent
}

// ---------------------------------------------------------------- context

#[derive(Clone, Debug, Serialize)]
pub struct ContextTurn {
    pub trace_id: String,
    pub session_id: Option<String>,
    pub session_key: Option<String>,
    pub agent_id: Option<String>,
    pub start_ms: i64,
    pub model: Option<String>,
    /// Tokens in the context at the run's last model call, as OpenClaw measured (`model.usage`).
    pub context_tokens: i64,
    /// The model's window as OpenClaw configured it.
    pub context_window: i64,
    pub used_ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ContextSession {
    pub session_id: String,
    pub agent_id: Option<String>,
    pub turns: i64,
    pub last_context_tokens: i64,
    pub max_context_tokens: i64,
    pub context_window: i64,
    pub max_used_ratio: f64,
    pub compactions: i64,
    /// At or above the `near` ratio of its window at some turn.
    pub near_window: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Compaction {
    pub session_id: Option<String>,
    pub session_key: Option<String>,
    pub time_ms: i64,
    pub trace_id: Option<String>,
    pub message_count: Option<i64>,
    pub compacted_count: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ContextReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub near: f64,
    pub sessions: Vec<ContextSession>,
    pub turns: Vec<ContextTurn>,
    pub compactions: Vec<Compaction>,
}

/// Context tokens against the model's window per turn, per session, and compactions.
pub fn context(
    db: &dyn Rows,
    w: &Window,
    near: f64,
    limit: usize,
) -> Result<ContextReport, StoreError> {
    let d = db.dialect();
    let mut turns = Vec::new();
    for r in runs(db, w)? {
        let (Some(used), Some(window)) = (r.context_used, r.context_limit) else {
            continue;
        };
        if window <= 0 {
            continue;
        }
        turns.push(ContextTurn {
            trace_id: r.trace_id,
            session_id: r.session_id,
            session_key: r.session_key,
            agent_id: r.agent_id,
            start_ms: r.start_ms,
            model: r.model,
            context_tokens: used,
            context_window: window,
            used_ratio: used as f64 / window as f64,
        });
    }
    let mut compaction_args = w.args().to_vec();
    let sidecar = w.sidecar("instance_id", &mut compaction_args);
    let compactions_sql = format!(
        "SELECT session_id, {key}, time_ns, trace_id, {messages}, {compacted}
         FROM events WHERE name = 'openclaw.compaction' AND time_ns >= ?1 AND time_ns < ?2
           AND (?3 IS NULL OR agent_id = ?3){sidecar}
         ORDER BY time_ns",
        key = d.event_attr("openclaw.session_key"),
        messages = d.event_num_attr("openclaw.message_count"),
        compacted = d.event_num_attr("openclaw.compacted_count"),
    );
    let compactions: Vec<Compaction> = db
        .rows(&compactions_sql, &compaction_args)?
        .into_iter()
        .map(|r| Compaction {
            session_id: r.opt_text(0),
            session_key: r.opt_text(1),
            time_ms: ms(r.int(2)),
            trace_id: hex(r.blob(3)),
            message_count: r.opt_real(4).map(|v| v as i64),
            compacted_count: r.opt_real(5).map(|v| v as i64),
        })
        .collect();
    let mut sessions: BTreeMap<String, ContextSession> = BTreeMap::new();
    for t in &turns {
        let sid = t.session_id.clone().unwrap_or_else(|| "(none)".into());
        let s = sessions.entry(sid.clone()).or_insert(ContextSession {
            session_id: sid,
            agent_id: t.agent_id.clone(),
            turns: 0,
            last_context_tokens: 0,
            max_context_tokens: 0,
            context_window: t.context_window,
            max_used_ratio: 0.0,
            compactions: 0,
            near_window: false,
        });
        s.turns += 1;
        s.last_context_tokens = t.context_tokens;
        s.max_context_tokens = s.max_context_tokens.max(t.context_tokens);
        s.context_window = t.context_window;
        s.max_used_ratio = s.max_used_ratio.max(t.used_ratio);
        s.near_window = s.max_used_ratio >= near;
    }
    for c in &compactions {
        if let Some(s) = c.session_id.as_ref().and_then(|id| sessions.get_mut(id)) {
            s.compactions += 1;
        }
    }
    let mut sessions: Vec<ContextSession> = sessions.into_values().collect();
    sessions.sort_by(|a, b| b.max_used_ratio.total_cmp(&a.max_used_ratio));
    turns.reverse();
    turns.truncate(limit);
    Ok(ContextReport {
        from_ms: ms(w.from_ns),
        to_ms: ms(w.to_ns),
        near,
        sessions,
        turns,
        compactions,
    })
}

// ---------------------------------------------------------------- channels and tools

#[derive(Clone, Debug, Default, Serialize)]
pub struct ChannelRow {
    pub channel: String,
    pub runs: i64,
    pub llm_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub unpriced_runs: i64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ToolRow {
    pub tool: String,
    pub calls: i64,
    pub errors: i64,
    pub runs: i64,
    /// The cost of the runs that used the tool (a run using two tools counts in both).
    pub runs_cost_usd: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ChannelReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub channels: Vec<ChannelRow>,
    pub tools: Vec<ToolRow>,
    pub notes: Vec<String>,
}

/// Runs, tokens and cost per channel (the run's `channel`: webchat, telegram, slack...),
/// and tool use with the cost of the runs that used each tool.
pub fn channels(db: &dyn Rows, w: &Window) -> Result<ChannelReport, StoreError> {
    let mut by: BTreeMap<String, ChannelRow> = BTreeMap::new();
    for r in runs(db, w)? {
        let ch = r.channel.clone().unwrap_or_else(|| "(unknown)".into());
        let row = by.entry(ch.clone()).or_insert_with(|| ChannelRow {
            channel: ch,
            ..Default::default()
        });
        row.runs += 1;
        row.llm_calls += r.llm_calls;
        row.input_tokens += r.input_tokens;
        row.output_tokens += r.output_tokens;
        row.total_tokens += r.total_tokens;
        match r.cost_usd {
            Some(c) => row.cost_usd += c,
            None => row.unpriced_runs += 1,
        }
    }
    let mut channels: Vec<ChannelRow> = by.into_values().collect();
    channels.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd));
    let mut tool_args = w.args().to_vec();
    let sidecar = w.sidecar("s.instance_id", &mut tool_args);
    // One pass over the window's tool calls: each tool's calls by run, then the runs'
    // costs joined once per tool and run (a subquery per tool read the window again for
    // each tool).
    let tools = db
        .rows(
            &format!(
                "WITH by_run AS (
                    SELECT s.tool_name AS tool, s.trace_id AS trace_id, count(*) AS calls,
                        sum(CASE WHEN s.status = 'error' THEN 1 ELSE 0 END) AS errors
                    FROM spans s WHERE s.kind = 'tool_call' AND s.source = 'openclaw'
                      AND s.start_ns >= ?1 AND s.start_ns < ?2 AND (?3 IS NULL OR s.agent_id = ?3){sidecar}
                      AND s.tool_name IS NOT NULL
                    GROUP BY s.tool_name, s.trace_id)
                 SELECT b.tool, CAST(sum(b.calls) AS BIGINT), CAST(sum(b.errors) AS BIGINT),
                    count(*), sum(t.cost_usd)
                 FROM by_run b LEFT JOIN traces t ON t.trace_id = b.trace_id
                 GROUP BY b.tool ORDER BY sum(b.calls) DESC, b.tool"
            ),
            &tool_args,
        )?
        .into_iter()
        .map(|r| ToolRow {
            tool: r.text(0),
            calls: r.int(1),
            errors: r.int(2),
            runs: r.int(3),
            runs_cost_usd: r.opt_real(4).unwrap_or(0.0),
        })
        .collect();
    Ok(ChannelReport {
        from_ms: ms(w.from_ns),
        to_ms: ms(w.to_ns),
        channels,
        tools,
        notes: vec![
            "Skills: OpenClaw 2026.9.6 reports no skill on hooks or diagnostic events; a skill shows \
             only as the tool calls it makes (tools above) or through the gateway's skills.status."
                .into(),
        ],
    })
}

// ---------------------------------------------------------------- model fallbacks

#[derive(Clone, Debug, Serialize)]
pub struct FallbackPair {
    /// The model that failed (`provider/model`).
    pub from: String,
    /// The model tried (the same one when no fallback is configured).
    pub to: String,
    pub decision: String,
    pub reason: Option<String>,
    pub count: i64,
    pub runs: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FallbackReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub decisions: i64,
    pub pairs: Vec<FallbackPair>,
}

/// OpenClaw's `model_fallback_decision` log lines, counted by model pair and decision,
/// each linked to its run.
pub fn fallbacks(db: &dyn Rows, w: &Window) -> Result<FallbackReport, StoreError> {
    w.check(db.dialect())?;
    let a = |k: &str| db.dialect().event_attr(&format!("openclaw.{k}"));
    let mut args = w.args().to_vec();
    let sidecar = w.sidecar("instance_id", &mut args);
    let sql = format!(
        "SELECT {from_model}, {rp}, {rm}, {cp}, {cm}, {decision}, {reason}, trace_id
         FROM events WHERE name = 'model_fallback_decision' AND time_ns >= ?1 AND time_ns < ?2
           AND (?3 IS NULL OR agent_id = ?3
                OR trace_id IN (SELECT trace_id FROM traces WHERE agent_id = ?3)){sidecar}
         ORDER BY time_ns",
        from_model = a("fallbackStepFromModel"),
        rp = a("requestedProvider"),
        rm = a("requestedModel"),
        cp = a("candidateProvider"),
        cm = a("candidateModel"),
        decision = a("decision"),
        reason = a("reason"),
    );
    // The gateway log names no agent: a decision is the agent's whose run it was in.
    let rows = db.rows(&sql, &args)?;
    let mut pairs: BTreeMap<(String, String, String, Option<String>), FallbackPair> =
        BTreeMap::new();
    let mut n = 0;
    let join = |p: Option<String>, m: Option<String>| match (p, m) {
        (Some(p), Some(m)) => format!("{p}/{m}"),
        (None, Some(m)) => m,
        _ => "(unknown)".into(),
    };
    for r in rows {
        let from = r
            .opt_text(0)
            .unwrap_or_else(|| join(r.opt_text(1), r.opt_text(2)));
        let to = join(r.opt_text(3), r.opt_text(4));
        let decision = r.opt_text(5).unwrap_or_else(|| "(unknown)".into());
        let reason = r.opt_text(6);
        let trace = hex(r.blob(7));
        n += 1;
        let p = pairs
            .entry((from.clone(), to.clone(), decision.clone(), reason.clone()))
            .or_insert(FallbackPair {
                from,
                to,
                decision,
                reason,
                count: 0,
                runs: Vec::new(),
            });
        p.count += 1;
        if let Some(t) = trace
            && !p.runs.contains(&t)
            && p.runs.len() < 100
        {
            p.runs.push(t);
        }
    }
    let mut pairs: Vec<FallbackPair> = pairs.into_values().collect();
    pairs.sort_by_key(|p| std::cmp::Reverse(p.count));
    Ok(FallbackReport {
        from_ms: ms(w.from_ns),
        to_ms: ms(w.to_ns),
        decisions: n,
        pairs,
    })
}

// ---------------------------------------------------------------- waste

/// Thresholds of the waste flags.
#[derive(Clone, Copy, Debug)]
pub struct WasteRules {
    /// The same tool with the same arguments this many times in a run is a loop.
    pub loop_repeats: i64,
    /// A run's largest prompt this many times the agent's median prompt is bloated...
    pub bloat_factor: f64,
    /// ...when it is at least this many tokens,
    pub bloat_min_tokens: i64,
    /// ...and the agent has at least this many calls to take a median from.
    pub bloat_min_calls: usize,
    /// Failed calls to the provider (failed LLM spans and OpenClaw's retry lines) in one run.
    pub retry_failures: i64,
}

impl Default for WasteRules {
    fn default() -> Self {
        WasteRules {
            loop_repeats: 3,
            bloat_factor: 3.0,
            bloat_min_tokens: 1000,
            bloat_min_calls: 5,
            retry_failures: 3,
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "flag", rename_all = "snake_case")]
pub enum WasteFlag {
    ToolLoop {
        tool: String,
        repeats: i64,
    },
    BloatedContext {
        input_tokens: i64,
        agent_median: f64,
        factor: f64,
    },
    ProviderRetries {
        failures: i64,
        provider: Option<String>,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct WastefulRun {
    pub trace_id: String,
    pub agent_id: Option<String>,
    pub start_ms: i64,
    pub cost_usd: Option<f64>,
    pub flags: Vec<WasteFlag>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WasteCounts {
    pub agent_id: String,
    pub runs: i64,
    pub tool_loop: i64,
    pub bloated_context: i64,
    pub provider_retries: i64,
    /// The flagged runs' cost.
    pub flagged_cost_usd: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct WasteReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub runs: Vec<WastefulRun>,
    pub agents: Vec<WasteCounts>,
}

/// Flags per run: a tool loop, a bloated context, a run that kept retrying a failing provider.
pub fn waste(
    db: &dyn Rows,
    w: &Window,
    rules: &WasteRules,
    trace: Option<TraceId>,
) -> Result<WasteReport, StoreError> {
    let d = db.dialect();
    w.check(d)?;
    let mut flags: BTreeMap<Vec<u8>, Vec<WasteFlag>> = BTreeMap::new();
    let tb = trace.map(|t| t.0.to_vec());
    let [from, to, agent] = w.args();
    let trace_arg = Arg::Blob(tb.clone());
    // Loops: the same tool and arguments (OpenClaw's arguments digest, else the text).
    let same_call = format!(
        "COALESCE({}, {})",
        d.attr("s", "openclaw.params_hash"),
        d.text("s.input_text")
    );
    let mut loop_args = vec![
        from.clone(),
        to.clone(),
        agent.clone(),
        trace_arg.clone(),
        rules.loop_repeats.into(),
    ];
    let sidecar = w.sidecar("s.instance_id", &mut loop_args);
    let loops = db.rows(
        &format!(
            "SELECT s.trace_id, s.tool_name, count(*) FROM spans s
             WHERE s.kind = 'tool_call' AND s.start_ns >= ?1 AND s.start_ns < ?2
               AND (?3 IS NULL OR s.agent_id = ?3) AND (?4 IS NULL OR s.trace_id = ?4)
               AND {same_call} IS NOT NULL{sidecar}
             GROUP BY s.trace_id, s.tool_name, {same_call}
             HAVING count(*) >= ?5 ORDER BY 1, 2, 3"
        ),
        &loop_args,
    )?;
    for r in loops {
        let t = r.blob(0).unwrap_or_default().to_vec();
        flags.entry(t).or_default().push(WasteFlag::ToolLoop {
            tool: r.opt_text(1).unwrap_or_else(|| "tool".into()),
            repeats: r.int(2),
        });
    }
    // Bloated context: a run's largest prompt against its agent's median prompt.
    {
        let mut prompt_args = vec![from.clone(), to.clone(), agent.clone()];
        let sidecar = w.sidecar("instance_id", &mut prompt_args);
        let prompts = db.rows(
            &format!(
                "SELECT agent_id, trace_id, input_tokens FROM spans
             WHERE kind = 'llm_call' AND input_tokens IS NOT NULL AND start_ns >= ?1 AND start_ns < ?2
               AND (?3 IS NULL OR agent_id = ?3){sidecar}"
            ),
            &prompt_args,
        )?;
        let mut by_agent: HashMap<Option<String>, Vec<i64>> = HashMap::new();
        let mut run_max: HashMap<Vec<u8>, (Option<String>, i64)> = HashMap::new();
        for r in prompts {
            let agent = r.opt_text(0);
            let t = r.blob(1).unwrap_or_default().to_vec();
            let n = r.int(2);
            by_agent.entry(agent.clone()).or_default().push(n);
            let e = run_max.entry(t).or_insert((agent, 0));
            e.1 = e.1.max(n);
        }
        let medians: HashMap<Option<String>, f64> = by_agent
            .into_iter()
            .filter(|(_, v)| v.len() >= rules.bloat_min_calls)
            .map(|(a, mut v)| {
                v.sort_unstable();
                let m = if v.len() % 2 == 1 {
                    v[v.len() / 2] as f64
                } else {
                    (v[v.len() / 2 - 1] + v[v.len() / 2]) as f64 / 2.0
                };
                (a, m)
            })
            .collect();
        for (t, (agent, max)) in run_max {
            if tb.as_ref().is_some_and(|x| x != &t) {
                continue;
            }
            let Some(&median) = medians.get(&agent) else {
                continue;
            };
            if median > 0.0
                && max >= rules.bloat_min_tokens
                && max as f64 > median * rules.bloat_factor
            {
                flags.entry(t).or_default().push(WasteFlag::BloatedContext {
                    input_tokens: max,
                    agent_median: median,
                    factor: (max as f64 / median * 10.0).round() / 10.0,
                });
            }
        }
    }
    // Retrying a failing provider: failed model calls and OpenClaw's retry log lines.
    let mut retry_args = vec![from, to, agent, trace_arg, rules.retry_failures.into()];
    let sidecar = w.sidecar("instance_id", &mut retry_args);
    let retries = db.rows(
        &format!(
            "SELECT trace_id, CAST(sum(n) AS BIGINT), max(provider) FROM (
            SELECT trace_id, count(*) AS n, max(provider) AS provider FROM spans
             WHERE kind = 'llm_call' AND status = 'error' AND start_ns >= ?1 AND start_ns < ?2
               AND (?3 IS NULL OR agent_id = ?3) AND (?4 IS NULL OR trace_id = ?4){sidecar}
             GROUP BY trace_id
            UNION ALL
            SELECT trace_id, count(*), NULL FROM events
             WHERE trace_id IS NOT NULL AND time_ns >= ?1 AND time_ns < ?2
               AND (?4 IS NULL OR trace_id = ?4){sidecar}
               AND (message LIKE 'transient same-model retry%'
                    OR (name = 'embedded_run_agent_end' AND type = 'error'))
             GROUP BY trace_id) AS failures
         GROUP BY trace_id HAVING sum(n) >= ?5"
        ),
        &retry_args,
    )?;
    for r in retries {
        let t = r.blob(0).unwrap_or_default().to_vec();
        flags
            .entry(t)
            .or_default()
            .push(WasteFlag::ProviderRetries {
                failures: r.int(1),
                provider: r.opt_text(2),
            });
    }
    let mut out = Vec::new();
    let mut agents: BTreeMap<String, WasteCounts> = BTreeMap::new();
    for (t, f) in flags {
        let row = db
            .row(
                "SELECT agent_id, start_ns, cost_usd FROM traces WHERE trace_id = ?1",
                &[Some(&t[..]).into()],
            )?
            .map(|r| (r.opt_text(0), r.int(1), r.opt_real(2)));
        let Some((agent, start, cost)) = row else {
            continue;
        };
        if !agent_ok(w, agent.as_deref()) {
            continue;
        }
        let c = agents
            .entry(agent.clone().unwrap_or_else(|| "(none)".into()))
            .or_insert_with(|| WasteCounts {
                agent_id: agent.clone().unwrap_or_else(|| "(none)".into()),
                ..Default::default()
            });
        c.runs += 1;
        c.flagged_cost_usd += cost.unwrap_or(0.0);
        for fl in &f {
            match fl {
                WasteFlag::ToolLoop { .. } => c.tool_loop += 1,
                WasteFlag::BloatedContext { .. } => c.bloated_context += 1,
                WasteFlag::ProviderRetries { .. } => c.provider_retries += 1,
            }
        }
        out.push(WastefulRun {
            trace_id: hex(Some(&t)).unwrap_or_default(),
            agent_id: agent,
            start_ms: ms(start),
            cost_usd: cost,
            flags: f,
        });
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.start_ms));
    Ok(WasteReport {
        from_ms: ms(w.from_ns),
        to_ms: ms(w.to_ns),
        runs: out,
        agents: agents.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_jobs_and_subagent_keys() {
        assert_eq!(cron_job_of("agent:main:cron:job-1:run:abc"), Some("job-1"));
        assert_eq!(cron_job_of("cron:job-2"), Some("job-2"));
        assert_eq!(cron_job_of("agent:main:main"), None);
        assert!(is_subagent_key("agent:main:subagent:1f2e"));
        assert!(!is_subagent_key("agent:main:main"));
    }

    #[test]
    fn a_rise_is_the_recent_median_above_the_jobs_history() {
        // Newest first.
        let mut flat = vec![0.002; 11];
        assert!(rise_in(&flat, 5, 3.5).is_none());
        // One costly run is not a rise; two out of the last three are.
        flat[0] = 0.01;
        assert!(rise_in(&flat, 5, 3.5).is_none());
        flat[1] = 0.01;
        let (med, st) = rise_in(&flat, 5, 3.5).unwrap();
        assert_eq!(med, 0.01);
        assert_eq!(st.median, 0.002);
        // The run checked must itself cost more than usual.
        flat[0] = 0.002;
        flat[2] = 0.01;
        assert!(rise_in(&flat, 5, 3.5).is_none());
        // Too little history.
        assert!(rise_in(&[0.01, 0.01, 0.01, 0.002, 0.002], 5, 3.5).is_none());
    }

    #[test]
    fn days_are_utc() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(DAY_NS + 1), "1970-01-02");
    }
}
