//! Budgets: spending limits per agent or overall, per UTC day or month, in USD
//! or tokens. Crossing 50, 80 and 100 % alerts once per threshold per period (an
//! event, `/health`, the webhook). The state lives in memory, loaded from the
//! usage rollups at startup and kept current by a write hook, so `GET /v1/budget`
//! answers without touching the database.
//!
//! `OCT_BUDGETS` syntax: entries separated by `,` or `;`, each `SCOPE/PERIOD=LIMIT`:
//! SCOPE is `global` (or `*`) or `agent:NAME`; PERIOD is `day` or `month`;
//! LIMIT is dollars (`$10`, `10usd`) or tokens (`2000000tokens`, `2M tokens`, `500k tokens`).
//! Example: `global/month=$200, agent:main/day=$5, agent:coder/day=2M tokens`.

use std::collections::BTreeSet;
use std::sync::{Mutex, RwLock};

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::json;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::alert::AlertSender;
use super::cost::is_usage_span;
use super::usage::DAY_NS;
use crate::model::{Event, EventType, Record, Span, now_ns};
use crate::pipeline::{AlertClaim, HookError, HookTx, WriteHook};
use crate::store::write::WriteEffect;
use crate::util::time::format_ns;

/// Percentages of a limit that alert.
pub const THRESHOLDS: [u32; 3] = [50, 80, 100];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Global,
    Agent(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Usd,
    Tokens,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BudgetRule {
    pub scope: Scope,
    pub period: Period,
    pub unit: Unit,
    pub limit: f64,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Usd => "usd",
            Unit::Tokens => "tokens",
        }
    }
}

impl BudgetRule {
    /// A stable name: `global/day/usd`, `agent:main/month/tokens`.
    pub fn key(&self) -> String {
        let scope = match &self.scope {
            Scope::Global => "global".to_string(),
            Scope::Agent(a) => format!("agent:{a}"),
        };
        format!("{scope}/{}/{}", self.period.as_str(), self.unit.as_str())
    }

    pub fn agent(&self) -> Option<&str> {
        match &self.scope {
            Scope::Global => None,
            Scope::Agent(a) => Some(a),
        }
    }

    fn applies_to(&self, agent: Option<&str>) -> bool {
        match &self.scope {
            Scope::Global => true,
            Scope::Agent(a) => agent == Some(a.as_str()),
        }
    }

    /// What a call adds to this budget: its cost (unknown counts as nothing) or its tokens.
    fn amount(&self, s: &Span) -> f64 {
        match self.unit {
            Unit::Usd => s.cost_usd.unwrap_or(0.0),
            Unit::Tokens => s
                .total_tokens
                .unwrap_or(s.input_tokens.unwrap_or(0) + s.output_tokens.unwrap_or(0))
                as f64,
        }
    }

    pub fn format_amount(&self, v: f64) -> String {
        match self.unit {
            Unit::Usd => format!("${v:.4}"),
            Unit::Tokens => format!("{v:.0} tokens"),
        }
    }
}

/// Parses `OCT_BUDGETS` (see the module docs).
pub fn parse_budgets(v: &str) -> Result<Vec<BudgetRule>, String> {
    let mut out: Vec<BudgetRule> = Vec::new();
    for (i, entry) in v
        .split([',', ';', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let rule = parse_entry(entry).map_err(|e| {
            format!(
                "budget {} ({entry:?}): {e}; expected SCOPE/PERIOD=LIMIT such as global/day=$10, agent:main/month=50usd or agent:coder/day=2M tokens",
                i + 1
            )
        })?;
        if out.iter().any(|r| r.key() == rule.key()) {
            return Err(format!(
                "budget {} ({entry:?}): {} is set twice",
                i + 1,
                rule.key()
            ));
        }
        out.push(rule);
    }
    Ok(out)
}

fn parse_entry(entry: &str) -> Result<BudgetRule, String> {
    let (target, limit) = entry.split_once('=').ok_or("missing '='")?;
    let (scope, period) = target.trim().rsplit_once('/').ok_or("missing '/PERIOD'")?;
    let scope = match scope.trim() {
        "global" | "*" | "all" => Scope::Global,
        s => match s.strip_prefix("agent:") {
            Some(a) if !a.trim().is_empty() => Scope::Agent(a.trim().to_string()),
            _ => return Err(format!("scope {s:?} is not global or agent:NAME")),
        },
    };
    let period = match period.trim().to_ascii_lowercase().as_str() {
        "day" | "daily" => Period::Day,
        "month" | "monthly" => Period::Month,
        p => return Err(format!("period {p:?} is not day or month")),
    };
    let (unit, limit) = parse_limit(limit)?;
    Ok(BudgetRule {
        scope,
        period,
        unit,
        limit,
    })
}

fn parse_limit(s: &str) -> Result<(Unit, f64), String> {
    let t = s.trim().to_ascii_lowercase().replace([' ', '_'], "");
    let (unit, num) = if let Some(n) = t.strip_prefix('$') {
        (Unit::Usd, n.to_string())
    } else if let Some(n) = t.strip_suffix("usd") {
        (Unit::Usd, n.to_string())
    } else if let Some(n) = ["tokens", "token", "tok"]
        .iter()
        .find_map(|u| t.strip_suffix(u))
    {
        (Unit::Tokens, n.to_string())
    } else {
        return Err(format!("limit {s:?} needs a unit ($10, 10usd, 2M tokens)"));
    };
    let (num, mult) = match num.chars().last() {
        Some('k') => (&num[..num.len() - 1], 1e3),
        Some('m') => (&num[..num.len() - 1], 1e6),
        _ => (num.as_str(), 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok((unit, v * mult)),
        _ => Err(format!("limit {s:?} is not a positive number")),
    }
}

/// The period holding `ns`: its name (`2026-11-21`, `2026-11`) and [start, end) in ns.
pub fn period_of(period: Period, ns: i64) -> (String, i64, i64) {
    match period {
        Period::Day => {
            let start = ns - ns.rem_euclid(DAY_NS);
            let name = format_ns(start).get(..10).unwrap_or_default().to_string();
            (name, start, start + DAY_NS)
        }
        Period::Month => {
            let t = OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let first = |y: i32, m: Month| -> i64 {
                Date::from_calendar_date(y, m, 1)
                    .map(|d| PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc())
                    .map(|d| d.unix_timestamp_nanos() as i64)
                    .unwrap_or(0)
            };
            let (y, m) = (t.year(), t.month());
            let (ny, nm) = if m == Month::December {
                (y + 1, Month::January)
            } else {
                (y, m.next())
            };
            (format!("{y:04}-{:02}", m as u8), first(y, m), first(ny, nm))
        }
    }
}

/// One budget's standing in its current period.
#[derive(Clone, Debug, PartialEq)]
struct RuleState {
    rule: BudgetRule,
    period: String,
    start_ns: i64,
    end_ns: i64,
    spent: f64,
    /// LLM calls counted with an unknown cost (a USD budget cannot see them).
    unpriced_calls: u64,
    fired: BTreeSet<u32>,
}

impl RuleState {
    fn fresh(rule: BudgetRule, ns: i64) -> RuleState {
        let (period, start_ns, end_ns) = period_of(rule.period, ns);
        RuleState {
            rule,
            period,
            start_ns,
            end_ns,
            spent: 0.0,
            unpriced_calls: 0,
            fired: BTreeSet::new(),
        }
    }
}

/// What `/v1/budget`, `/health` and `/metrics` show for one budget.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetStatus {
    pub budget: String,
    pub agent_id: Option<String>,
    pub period: &'static str,
    pub period_key: String,
    pub period_start: String,
    pub period_end: String,
    pub unit: &'static str,
    pub limit: f64,
    pub spent: f64,
    pub percent: f64,
    pub over: bool,
    /// Thresholds (50, 80, 100) that alerted in this period.
    pub alerted: Vec<u32>,
    pub unpriced_calls: u64,
}

/// A budget's current period, as a store is asked for its standing.
#[derive(Clone, Debug, PartialEq)]
pub struct PeriodQuery {
    /// Its name, as `budget_alerts` keeps it (`agent:main/day/usd`).
    pub budget: String,
    /// Its agent; `None` for a global budget.
    pub agent: Option<String>,
    /// Counts tokens (else dollars).
    pub tokens: bool,
    /// The period's name (`2026-12-07`, `2026-12`) and [start, end) in ns.
    pub period: String,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// What a store holds of a budget's period: the usage rollups' sum and the
/// thresholds already alerted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Standing {
    pub spent: f64,
    /// LLM calls without a known cost.
    pub unpriced_calls: i64,
    pub alerted: BTreeSet<u32>,
}

/// A budget's standing in the SQLite store.
pub fn sqlite_standing(conn: &Connection, q: &PeriodQuery) -> rusqlite::Result<Standing> {
    let column = if q.tokens { "total_tokens" } else { "cost_usd" };
    let (spent, unpriced_calls): (f64, i64) = conn.query_row(
        &format!(
            "SELECT COALESCE(sum({column}), 0), COALESCE(sum(calls - priced_calls), 0)
             FROM usage_all_nosession WHERE hour_ns >= ?1 AND hour_ns < ?2
             AND (?3 IS NULL OR agent_id = ?3)"
        ),
        params![q.start_ns, q.end_ns, q.agent],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let alerted = conn
        .prepare_cached("SELECT threshold FROM budget_alerts WHERE budget = ?1 AND period = ?2")?
        .query_map(params![q.budget, q.period], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Standing {
        spent,
        unpriced_calls,
        alerted,
    })
}

/// Budgets and their live state.
pub struct Budgets {
    live: RwLock<Vec<RuleState>>,
    /// The state a batch computed inside its transaction; live once it commits.
    pending: Mutex<Option<(Vec<RuleState>, Vec<serde_json::Value>)>>,
    alerts: AlertSender,
}

impl Budgets {
    pub fn new(rules: &[BudgetRule], alerts: AlertSender) -> Budgets {
        let now = now_ns();
        Budgets {
            live: RwLock::new(
                rules
                    .iter()
                    .map(|r| RuleState::fresh(r.clone(), now))
                    .collect(),
            ),
            pending: Mutex::new(None),
            alerts,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.live.read().map(|l| l.is_empty()).unwrap_or(true)
    }

    /// Each budget's current period, whose standing the store tells at start.
    pub fn periods(&self, now: i64) -> Vec<PeriodQuery> {
        let Ok(live) = self.live.read() else {
            return Vec::new();
        };
        live.iter()
            .map(|st| {
                let (period, start_ns, end_ns) = period_of(st.rule.period, now);
                PeriodQuery {
                    budget: st.rule.key(),
                    agent: st.rule.agent().map(str::to_string),
                    tokens: st.rule.unit == Unit::Tokens,
                    period,
                    start_ns,
                    end_ns,
                }
            })
            .collect()
    }

    /// Takes the store's standings of [`Budgets::periods`] (in its order) as the state.
    pub fn restore(&self, now: i64, standings: Vec<Standing>) {
        let Ok(mut live) = self.live.write() else {
            return;
        };
        for (st, standing) in live.iter_mut().zip(standings) {
            let mut fresh = RuleState::fresh(st.rule.clone(), now);
            fresh.spent = standing.spent;
            fresh.unpriced_calls = standing.unpriced_calls.max(0) as u64;
            fresh.fired = standing.alerted;
            *st = fresh;
        }
    }

    /// Loads the current periods' spending from the SQLite rollups and the alerts
    /// already sent.
    pub fn load(&self, conn: &Connection, now: i64) -> rusqlite::Result<()> {
        let standings = self
            .periods(now)
            .iter()
            .map(|q| sqlite_standing(conn, q))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        self.restore(now, standings);
        Ok(())
    }

    /// Every budget's standing now.
    pub fn status(&self) -> Vec<BudgetStatus> {
        let now = now_ns();
        let Ok(live) = self.live.read() else {
            return Vec::new();
        };
        live.iter()
            .map(|st| {
                // No call yet in a new period: nothing spent in it.
                let st = if now >= st.end_ns {
                    &RuleState::fresh(st.rule.clone(), now)
                } else {
                    st
                };
                BudgetStatus {
                    budget: st.rule.key(),
                    agent_id: st.rule.agent().map(str::to_string),
                    period: st.rule.period.as_str(),
                    period_key: st.period.clone(),
                    period_start: format_ns(st.start_ns),
                    period_end: format_ns(st.end_ns),
                    unit: st.rule.unit.as_str(),
                    limit: st.rule.limit,
                    spent: st.spent,
                    percent: 100.0 * st.spent / st.rule.limit,
                    over: st.spent >= st.rule.limit,
                    alerted: st.fired.iter().copied().collect(),
                    unpriced_calls: st.unpriced_calls,
                }
            })
            .collect()
    }

    /// The budgets that apply to `agent` (its own and the global ones); all when `None`.
    pub fn status_for(&self, agent: Option<&str>) -> Vec<BudgetStatus> {
        self.status()
            .into_iter()
            .filter(|s| agent.is_none() || s.agent_id.is_none() || s.agent_id.as_deref() == agent)
            .collect()
    }

    /// Applies a batch's new call (`sign` 1) or takes back a replaced one (`sign` -1,
    /// a row a merged piece changed) on a copy of the state; returns the alerts it crossed.
    fn apply(&self, states: &mut [RuleState], s: &Span, sign: i8) -> Vec<(usize, u32)> {
        let mut crossed = Vec::new();
        for (i, st) in states.iter_mut().enumerate() {
            if !st.rule.applies_to(s.agent_id.as_deref()) {
                continue;
            }
            if s.start_ns >= st.end_ns {
                *st = RuleState::fresh(st.rule.clone(), s.start_ns);
            }
            if s.start_ns < st.start_ns {
                // A late call of a past period: counted in the rollups, not in this period.
                continue;
            }
            st.spent += f64::from(sign) * st.rule.amount(s);
            if st.rule.unit == Unit::Usd && s.cost_usd.is_none() {
                st.unpriced_calls = st.unpriced_calls.saturating_add_signed(sign.into());
            }
            if sign < 0 {
                continue;
            }
            for t in THRESHOLDS {
                if st.spent >= st.rule.limit * t as f64 / 100.0 && st.fired.insert(t) {
                    crossed.push((i, t));
                }
            }
        }
        crossed
    }
}

fn alert_payload(st: &RuleState, threshold: u32, now: i64) -> serde_json::Value {
    json!({
        "type": "budget_alert",
        "budget": st.rule.key(),
        "agent_id": st.rule.agent(),
        "period": st.rule.period.as_str(),
        "period_key": st.period,
        "period_start": format_ns(st.start_ns),
        "threshold_pct": threshold,
        "unit": st.rule.unit.as_str(),
        "limit": st.rule.limit,
        "spent": st.spent,
        "percent": 100.0 * st.spent / st.rule.limit,
        "time": format_ns(now),
    })
}

impl WriteHook for Budgets {
    fn in_transaction(
        &self,
        tx: &mut dyn HookTx,
        records: &[Record],
        effects: &[WriteEffect],
    ) -> Result<(), HookError> {
        let mut states = match self.live.read() {
            Ok(l) if !l.is_empty() => l.clone(),
            _ => return Ok(()),
        };
        let now = now_ns();
        let mut alerts = Vec::new();
        for (r, effect) in records.iter().zip(effects) {
            let Some(change) = effect.span_change(r) else {
                continue;
            };
            // A merged piece: what the rows it replaced spent goes back, the row now stored counts.
            for b in change.before.iter().filter(|b| is_usage_span(b)) {
                self.apply(&mut states, b, -1);
            }
            if !is_usage_span(change.after) {
                continue;
            }
            for (i, threshold) in self.apply(&mut states, change.after, 1) {
                let st = &states[i];
                // The table makes an alert once-only even across restarts.
                let fresh = tx.claim_alert(&AlertClaim {
                    key: &st.rule.key(),
                    period: &st.period,
                    threshold,
                    spent: st.spent,
                    limit: st.rule.limit,
                    time_ns: now,
                })?;
                if !fresh {
                    continue;
                }
                let payload = alert_payload(st, threshold, now);
                let mut e = Event::new(EventType::Custom, "budget_alert".into(), now);
                e.severity = if threshold >= 100 { "error" } else { "warning" }.into();
                e.category = Some("budget".into());
                e.agent_id = st.rule.agent().map(str::to_string);
                e.message = Some(format!(
                    "budget {} reached {threshold}%: {} of {} ({})",
                    st.rule.key(),
                    st.rule.format_amount(st.spent),
                    st.rule.format_amount(st.rule.limit),
                    st.period
                ));
                e.source = "budget";
                if let serde_json::Value::Object(m) = &payload {
                    e.attributes = m.clone();
                }
                self.alerts.record(tx, e, &payload)?;
                alerts.push(payload);
            }
        }
        if let Ok(mut p) = self.pending.lock() {
            *p = Some((states, alerts));
        }
        Ok(())
    }

    fn at_commit(&self) {
        let Some((states, alerts)) = self.pending.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        if let Ok(mut live) = self.live.write() {
            *live = states;
        }
        for a in &alerts {
            tracing::warn!(budget = %a["budget"], threshold_pct = %a["threshold_pct"], "budget alert");
        }
        if !alerts.is_empty() {
            self.alerts.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanId, SpanKind, TraceId};
    use crate::store::{open_writer, write};

    #[test]
    fn parses_the_documented_syntax() {
        let r = parse_budgets(
            "global/month=$200, agent:main/day=5usd; agent:coder/daily=2M tokens ,*/day=500k tok",
        )
        .unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            BudgetRule {
                scope: Scope::Global,
                period: Period::Month,
                unit: Unit::Usd,
                limit: 200.0
            }
        );
        assert_eq!(r[1].key(), "agent:main/day/usd");
        assert_eq!(r[1].limit, 5.0);
        assert_eq!(r[2].unit, Unit::Tokens);
        assert_eq!(r[2].limit, 2_000_000.0);
        assert_eq!(r[3].key(), "global/day/tokens");
        assert_eq!(r[3].limit, 500_000.0);
        assert!(parse_budgets("").unwrap().is_empty());
        for (bad, needle) in [
            ("global/day", "missing '='"),
            ("global=5usd", "missing '/PERIOD'"),
            ("team:x/day=$5", "not global or agent:NAME"),
            ("global/week=$5", "not day or month"),
            ("global/day=5", "needs a unit"),
            ("global/day=$-5", "positive"),
            ("global/day=$1, */day=$2", "set twice"),
        ] {
            let e = parse_budgets(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn periods_are_utc_days_and_months() {
        // 2026-11-21T11:00:00Z
        let t = 1_795_258_800_000_000_000;
        let (k, s, e) = period_of(Period::Day, t);
        assert_eq!(k, "2026-11-21");
        assert_eq!(format_ns(s), "2026-11-21T00:00:00Z");
        assert_eq!(e - s, DAY_NS);
        let (k, s, e) = period_of(Period::Month, t);
        assert_eq!(k, "2026-11");
        assert_eq!(format_ns(s), "2026-11-01T00:00:00Z");
        assert_eq!(format_ns(e), "2026-12-01T00:00:00Z");
        let (k, _, e) = period_of(Period::Month, e - 1 + 86_400_000_000_000 * 31);
        assert_eq!(k, "2026-12");
        assert_eq!(format_ns(e), "2027-01-01T00:00:00Z");
    }

    fn call(agent: &str, cost: f64, at: i64) -> Record {
        let mut s = Span::new(
            TraceId::generate(),
            SpanId::generate(),
            "chat".into(),
            SpanKind::LlmCall,
            at,
        );
        s.agent_id = Some(agent.into());
        s.cost_usd = Some(cost);
        s.input_tokens = Some(100);
        s.output_tokens = Some(10);
        Record::Span(Box::new(s))
    }

    fn commit(conn: &mut Connection, b: &Budgets, recs: &[Record]) {
        let tx = conn.transaction().unwrap();
        let out = write::write_records(&tx, recs, 0).unwrap();
        super::super::usage::RollupHook
            .in_transaction(
                &mut crate::store::sqlite::SqliteHookTx(&tx),
                recs,
                &out.effects,
            )
            .unwrap();
        b.in_transaction(
            &mut crate::store::sqlite::SqliteHookTx(&tx),
            recs,
            &out.effects,
        )
        .unwrap();
        tx.commit().unwrap();
        b.at_commit();
    }

    fn alerts(conn: &Connection) -> Vec<(String, i64)> {
        let mut st = conn
            .prepare("SELECT budget, threshold FROM budget_alerts ORDER BY fired_ns, threshold")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn each_threshold_alerts_once_per_period_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_writer(&dir.path().join("t.db")).unwrap();
        let rules = parse_budgets("agent:a/day=$1, global/day=300tokens").unwrap();
        let b = Budgets::new(&rules, AlertSender::default());
        let now = now_ns();
        for _ in 0..4 {
            commit(&mut conn, &b, &[call("a", 0.2, now)]);
        }
        // $0.80 and 440 tokens: 50 and 80 % for the dollars, everything for tokens.
        assert_eq!(
            alerts(&conn)
                .iter()
                .filter(|a| a.0 == "agent:a/day/usd")
                .count(),
            2
        );
        assert_eq!(
            alerts(&conn)
                .iter()
                .filter(|a| a.0 == "global/day/tokens")
                .count(),
            3
        );
        let st = b.status_for(Some("a"));
        assert_eq!(st.len(), 2);
        assert!((st[0].spent - 0.8).abs() < 1e-9);
        assert!(!st[0].over && st[1].over);
        // Another agent's spending does not touch a's budget.
        commit(&mut conn, &b, &[call("b", 5.0, now)]);
        assert!((b.status_for(Some("a"))[0].spent - 0.8).abs() < 1e-9);
        // A restart: the state comes back from the rollups, alerts stay fired.
        let b2 = Budgets::new(&rules, AlertSender::default());
        b2.load(&conn, now).unwrap();
        assert_eq!(b2.status(), b.status());
        for _ in 0..3 {
            commit(&mut conn, &b2, &[call("a", 0.2, now)]);
        }
        let fired: Vec<_> = alerts(&conn)
            .into_iter()
            .filter(|a| a.0 == "agent:a/day/usd")
            .map(|a| a.1)
            .collect();
        assert_eq!(fired, vec![50, 80, 100], "each threshold exactly once");
        let events: i64 = conn
            .query_row(
                "SELECT count(*) FROM events WHERE name = 'budget_alert'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(events, 6);
        // Yesterday's late call counts in the rollups but not in today's budget.
        commit(&mut conn, &b2, &[call("a", 100.0, now - DAY_NS)]);
        assert!((b2.status_for(Some("a"))[0].spent - 1.4).abs() < 1e-9);
        // Tomorrow is a new period: its thresholds alert again.
        commit(&mut conn, &b2, &[call("a", 0.6, now + DAY_NS)]);
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM budget_alerts WHERE budget = 'agent:a/day/usd'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 4);
    }

    #[test]
    fn cost_arriving_in_a_later_piece_is_spent_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_writer(&dir.path().join("t.db")).unwrap();
        let rules = parse_budgets("agent:a/day=$1, global/day=1000tokens").unwrap();
        let b = Budgets::new(&rules, AlertSender::default());
        let now = now_ns();
        let (t, sp) = (TraceId::generate(), SpanId::generate());
        let mut start = Span::new(t, sp, "chat".into(), SpanKind::LlmCall, now);
        start.agent_id = Some("a".into());
        start.merge = Some(crate::model::SpanMerge::default());
        let mut usage = Span::new(t, sp, "chat".into(), SpanKind::LlmCall, now);
        usage.merge = Some(crate::model::SpanMerge::default());
        usage.cost_usd = Some(0.6);
        usage.input_tokens = Some(500);
        let (start, usage) = (Record::Span(Box::new(start)), Record::Span(Box::new(usage)));
        commit(&mut conn, &b, std::slice::from_ref(&start));
        assert_eq!(b.status()[0].spent, 0.0);
        assert_eq!(b.status()[0].unpriced_calls, 1);
        commit(&mut conn, &b, std::slice::from_ref(&usage));
        // Re-deliveries of both pieces change nothing.
        commit(&mut conn, &b, &[usage, start]);
        let st = b.status();
        assert!((st[0].spent - 0.6).abs() < 1e-9, "{st:?}");
        assert_eq!(st[0].unpriced_calls, 0);
        assert_eq!(st[1].spent, 500.0);
        assert_eq!(st[0].alerted, vec![50]);
        assert_eq!(st[1].alerted, vec![50]);
        // The rollups agree, so a restart loads the same state.
        let b2 = Budgets::new(&rules, AlertSender::default());
        b2.load(&conn, now).unwrap();
        assert_eq!(b2.status(), st);
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_writer(&dir.path().join("t.db")).unwrap();
        let b = Budgets::new(
            &parse_budgets("global/day=$1").unwrap(),
            AlertSender::default(),
        );
        let recs = [call("a", 0.9, now_ns())];
        {
            let tx = conn.transaction().unwrap();
            let out = write::write_records(&tx, &recs, 0).unwrap();
            b.in_transaction(
                &mut crate::store::sqlite::SqliteHookTx(&tx),
                &recs,
                &out.effects,
            )
            .unwrap();
            // Rolled back: the writer retries the batch.
        }
        commit(&mut conn, &b, &recs);
        assert!((b.status()[0].spent - 0.9).abs() < 1e-9, "counted once");
        assert_eq!(alerts(&conn).len(), 2);
    }
}
