//! Read queries, on read-only connections. Shapes here are the API's JSON.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row, params_from_iter};
use serde::Serialize;
use serde_json::Value;

use crate::model::{SpanId, TraceId};
use crate::util::hex;
use crate::util::time::format_ns;

use super::StoreError;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

#[derive(Clone, Debug, Default)]
pub struct TraceFilter {
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub status: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub name: Option<String>,
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    /// A case-insensitive (ASCII) substring of the root name.
    pub q: Option<String>,
    /// Runs whose known cost is at least this many dollars.
    pub min_cost: Option<f64>,
    /// Runs with a span from this sidecar (`service.instance.id`, on a fleet's central).
    pub instance: Option<String>,
    /// Runs with an evaluation score that satisfies this (`score=relevance<0.5`).
    pub score: Option<super::scores::ScoreCondition>,
    pub sort: TraceSort,
    /// Ascending instead of the default descending order.
    pub ascending: bool,
}

/// What a trace listing is ordered by (ties broken by trace id, in the same direction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TraceSort {
    #[default]
    Start,
    /// End minus start; unfinished traces count as -1 (last when descending).
    Duration,
    /// Known cost; traces without one count as -1 (last when descending).
    Cost,
}

impl TraceSort {
    pub fn parse(s: &str) -> Option<TraceSort> {
        match s.trim().to_ascii_lowercase().as_str() {
            "start" | "start_time" | "time" => Some(TraceSort::Start),
            "duration" => Some(TraceSort::Duration),
            "cost" | "cost_usd" => Some(TraceSort::Cost),
            _ => None,
        }
    }

    /// The SQL expression sorted on (start has an index; duration and cost are a scan);
    /// the same on SQLite and PostgreSQL.
    pub(crate) fn expr(self) -> &'static str {
        match self {
            TraceSort::Start => "t.start_ns",
            TraceSort::Duration => "COALESCE(t.end_ns - t.start_ns, -1)",
            TraceSort::Cost => "COALESCE(t.cost_usd, -1.0)",
        }
    }

    /// The sort key of a row, as the cursor carries it.
    pub(crate) fn key_of(self, t: &TraceSummary) -> String {
        match self {
            TraceSort::Start => t.start_ns.to_string(),
            TraceSort::Duration => t.end_ns.map_or(-1, |e| e - t.start_ns).to_string(),
            // `{:?}` writes the shortest text that reads back as the same f64.
            TraceSort::Cost => format!("{:?}", t.cost_usd.unwrap_or(-1.0)),
        }
    }

    fn key_value(self, s: &str) -> Option<SqlValue> {
        match self {
            TraceSort::Start | TraceSort::Duration => s.parse().ok().map(SqlValue::Integer),
            TraceSort::Cost => s
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(SqlValue::Real),
        }
    }
}

/// `%` and `_` in a LIKE pattern taken literally (escape character `\`).
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_span_id: Option<String>,
    pub parent_trace_id: Option<String>,
    pub name: Option<String>,
    pub start_time: String,
    pub end_time: Option<String>,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub duration_ms: Option<f64>,
    pub status: String,
    pub span_count: i64,
    pub error_count: i64,
    pub llm_calls: i64,
    pub tool_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_usd: Option<f64>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
}

/// An agent and a time range: what the sessions and anomalies lists filter by.
#[derive(Clone, Debug, Default)]
pub struct AgentRange {
    pub agent_id: Option<String>,
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

fn hex_opt(b: Option<Vec<u8>>) -> Option<String> {
    b.map(|b| hex::encode(&b))
}

fn json_col(s: Option<String>) -> Value {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Object(Default::default()))
}

pub(crate) const TRACE_COLS: &str =
    "trace_id, root_span_id, parent_trace_id, root_name, start_ns, end_ns, status,
    span_count, error_count, llm_calls, tool_calls, input_tokens, output_tokens, total_tokens,
    cache_read_tokens, cache_write_tokens, cost_usd, agent_id, session_id, user_id";

pub(crate) fn trace_row(r: &Row) -> rusqlite::Result<TraceSummary> {
    let start_ns: i64 = r.get(4)?;
    let end_ns: Option<i64> = r.get(5)?;
    Ok(TraceSummary {
        trace_id: hex::encode(&r.get::<_, Vec<u8>>(0)?),
        root_span_id: hex_opt(r.get(1)?),
        parent_trace_id: hex_opt(r.get(2)?),
        name: r.get(3)?,
        start_time: format_ns(start_ns),
        end_time: end_ns.map(format_ns),
        start_ns,
        end_ns,
        duration_ms: end_ns.map(|e| (e - start_ns) as f64 / 1e6),
        status: r.get(6)?,
        span_count: r.get(7)?,
        error_count: r.get(8)?,
        llm_calls: r.get(9)?,
        tool_calls: r.get(10)?,
        input_tokens: r.get(11)?,
        output_tokens: r.get(12)?,
        total_tokens: r.get(13)?,
        cache_read_tokens: r.get(14)?,
        cache_write_tokens: r.get(15)?,
        cost_usd: r.get(16)?,
        agent_id: r.get(17)?,
        session_id: r.get(18)?,
        user_id: r.get(19)?,
    })
}

/// A position in a newest-first listing: the last row's time and id.
fn parse_cursor(c: &str) -> Result<(i64, String), StoreError> {
    let (t, id) = c
        .split_once('.')
        .ok_or_else(|| StoreError::BadRequest("cursor: not a cursor this API returned".into()))?;
    let t: i64 = t
        .parse()
        .map_err(|_| StoreError::BadRequest("cursor: not a cursor this API returned".into()))?;
    Ok((t, id.to_string()))
}

pub fn list_traces(
    conn: &Connection,
    f: &TraceFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<TraceSummary>, StoreError> {
    let mut sql = format!("SELECT {TRACE_COLS} FROM traces t WHERE 1=1");
    let mut args: Vec<SqlValue> = Vec::new();
    let mut eq = |col: &str, v: &Option<String>, sql: &mut String| {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} = ?"));
            args.push(SqlValue::Text(v.clone()));
        }
    };
    eq("t.agent_id", &f.agent_id, &mut sql);
    eq("t.session_id", &f.session_id, &mut sql);
    eq("t.user_id", &f.user_id, &mut sql);
    eq("t.status", &f.status, &mut sql);
    eq("t.root_name", &f.name, &mut sql);
    if let Some(p) = &f.provider {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND s.provider = ?)",
        );
        args.push(SqlValue::Text(p.clone()));
    }
    if let Some(m) = &f.model {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND (s.request_model = ? OR s.response_model = ?))",
        );
        args.push(SqlValue::Text(m.clone()));
        args.push(SqlValue::Text(m.clone()));
    }
    if let Some(from) = f.from_ns {
        sql.push_str(" AND t.start_ns >= ?");
        args.push(SqlValue::Integer(from));
    }
    if let Some(to) = f.to_ns {
        sql.push_str(" AND t.start_ns < ?");
        args.push(SqlValue::Integer(to));
    }
    if let Some(q) = &f.q {
        sql.push_str(" AND t.root_name LIKE ? ESCAPE '\\'");
        args.push(SqlValue::Text(format!("%{}%", like_escape(q))));
    }
    if let Some(c) = f.min_cost {
        sql.push_str(" AND t.cost_usd >= ?");
        args.push(SqlValue::Real(c));
    }
    if let Some(c) = &f.score {
        sql.push_str(&c.sql(&mut args));
    }
    if let Some(i) = &f.instance {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id \
             AND json_extract(unpack(s.resource), '$.\"service.instance.id\"') = ?)",
        );
        args.push(SqlValue::Text(i.clone()));
    }
    let key = f.sort.expr();
    let (cmp, dir) = if f.ascending {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(c) = cursor {
        let bad = || StoreError::BadRequest("cursor: not a cursor this API returned".into());
        // A cursor is the last row's sort key and trace id: "<key>.<trace id>".
        let (k, id) = c.rsplit_once('.').ok_or_else(bad)?;
        let k = f.sort.key_value(k).ok_or_else(bad)?;
        let tid = TraceId::parse_hex(id).ok_or_else(bad)?;
        sql.push_str(&format!(
            " AND ({key} {cmp} ? OR ({key} = ? AND t.trace_id {cmp} ?))"
        ));
        args.push(k.clone());
        args.push(k);
        args.push(SqlValue::Blob(tid.0.to_vec()));
    }
    sql.push_str(&format!(" ORDER BY {key} {dir}, t.trace_id {dir} LIMIT ?"));
    args.push(SqlValue::Integer(limit as i64 + 1));
    let mut stmt = conn.prepare(&sql)?;
    let mut items: Vec<TraceSummary> = stmt
        .query_map(params_from_iter(args), trace_row)?
        .collect::<Result<_, _>>()?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|t| format!("{}.{}", f.sort.key_of(t), t.trace_id))
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

pub fn trace_summary(conn: &Connection, id: &TraceId) -> Result<Option<TraceSummary>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TRACE_COLS} FROM traces WHERE trace_id = ?1"
    ))?;
    let mut rows = stmt.query_map([&id.0[..]], trace_row)?;
    Ok(rows.next().transpose()?)
}

#[derive(Clone, Debug, Serialize)]
pub struct SpanOut {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: String,
    pub start_time: String,
    pub end_time: Option<String>,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub duration_ms: Option<f64>,
    pub status: String,
    pub status_message: Option<String>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub operation: Option<String>,
    pub provider: Option<String>,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub cost_source: Option<String>,
    /// Set when the price table's figure differs from a reported `cost_usd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_computed_usd: Option<f64>,
    pub finish_reasons: Value,
    pub tool_name: Option<String>,
    pub tool_call_id: Option<String>,
    pub error_type: Option<String>,
    pub latency_ms: Option<f64>,
    pub input_text: Option<String>,
    pub input_text_len: Option<i64>,
    pub output_text: Option<String>,
    pub output_text_len: Option<i64>,
    pub attributes: Value,
    pub resource: Value,
    pub source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<SpanOut>,
}

pub const SPAN_COLS: &str = "trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status,
    status_message, agent_id, session_id, user_id, operation, provider, request_model, response_model,
    input_tokens, output_tokens, total_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    cost_usd, cost_source, finish_reasons, tool_name, tool_call_id, error_type, latency_ms,
    unpack(input_text), input_text_len, unpack(output_text), output_text_len, unpack(attributes),
    unpack(resource), source, cost_computed_usd";

/// How many columns `SPAN_COLS` names: a query selecting `{SPAN_COLS}, x` reads `x` at this index.
pub const SPAN_COLS_LEN: usize = 37;

pub fn span_row(r: &Row) -> rusqlite::Result<SpanOut> {
    debug_assert_eq!(SPAN_COLS.split(',').count(), SPAN_COLS_LEN);
    let start_ns: i64 = r.get(5)?;
    let end_ns: Option<i64> = r.get(6)?;
    let finish: Option<String> = r.get(24)?;
    Ok(SpanOut {
        trace_id: hex::encode(&r.get::<_, Vec<u8>>(0)?),
        span_id: hex::encode(&r.get::<_, Vec<u8>>(1)?),
        parent_span_id: hex_opt(r.get(2)?),
        name: r.get(3)?,
        kind: r.get(4)?,
        start_time: format_ns(start_ns),
        end_time: end_ns.map(format_ns),
        start_ns,
        end_ns,
        duration_ms: end_ns.map(|e| (e - start_ns) as f64 / 1e6),
        status: r.get(7)?,
        status_message: r.get(8)?,
        agent_id: r.get(9)?,
        session_id: r.get(10)?,
        user_id: r.get(11)?,
        operation: r.get(12)?,
        provider: r.get(13)?,
        request_model: r.get(14)?,
        response_model: r.get(15)?,
        input_tokens: r.get(16)?,
        output_tokens: r.get(17)?,
        total_tokens: r.get(18)?,
        cache_read_tokens: r.get(19)?,
        cache_write_tokens: r.get(20)?,
        reasoning_tokens: r.get(21)?,
        cost_usd: r.get(22)?,
        cost_source: r.get(23)?,
        cost_computed_usd: r.get(36)?,
        finish_reasons: finish
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Array(vec![])),
        tool_name: r.get(25)?,
        tool_call_id: r.get(26)?,
        error_type: r.get(27)?,
        latency_ms: r.get(28)?,
        input_text: r.get(29)?,
        input_text_len: r.get(30)?,
        output_text: r.get(31)?,
        output_text_len: r.get(32)?,
        attributes: json_col(r.get(33)?),
        resource: json_col(r.get(34)?),
        source: r.get(35)?,
        children: Vec::new(),
    })
}

pub fn spans_of(conn: &Connection, id: &TraceId) -> Result<Vec<SpanOut>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SPAN_COLS} FROM spans WHERE trace_id = ?1 ORDER BY start_ns, id"
    ))?;
    let rows = stmt
        .query_map([&id.0[..]], span_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Nests spans under their parents; spans whose parent is missing become roots.
pub fn build_tree(spans: Vec<SpanOut>) -> Vec<SpanOut> {
    use std::collections::HashMap;
    let ids: std::collections::HashSet<String> = spans.iter().map(|s| s.span_id.clone()).collect();
    let mut children: HashMap<String, Vec<SpanOut>> = HashMap::new();
    let mut roots = Vec::new();
    for s in spans {
        match &s.parent_span_id {
            Some(p) if ids.contains(p) && p != &s.span_id => {
                children.entry(p.clone()).or_default().push(s)
            }
            _ => roots.push(s),
        }
    }
    fn attach(node: &mut SpanOut, children: &mut HashMap<String, Vec<SpanOut>>, depth: usize) {
        if depth > 512 {
            return;
        }
        if let Some(mut kids) = children.remove(&node.span_id) {
            for k in kids.iter_mut() {
                attach(k, children, depth + 1);
            }
            node.children = kids;
        }
    }
    for r in roots.iter_mut() {
        attach(r, &mut children, 0);
    }
    // A cycle of parents leaves spans unattached: show them rather than lose them.
    for (_, rest) in children.drain() {
        roots.extend(rest);
    }
    roots
}

#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub severity: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    /// A condition's `state` attribute (`active` or `resolved`).
    pub state: Option<String>,
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EventOut {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: String,
    pub time_ns: i64,
    pub name: String,
    pub severity: String,
    pub message: Option<String>,
    pub stack_trace: Option<String>,
    pub category: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub attributes: Value,
    pub resource: Value,
    pub source: String,
    #[serde(skip)]
    pub rowid: i64,
}

pub const EVENT_COLS: &str =
    "uid, type, time_ns, name, severity, message, stack_trace, category, trace_id,
    span_id, agent_id, session_id, user_id, attributes, resource, source, id";

pub fn event_row(r: &Row) -> rusqlite::Result<EventOut> {
    let t: i64 = r.get(2)?;
    Ok(EventOut {
        id: r.get(0)?,
        event_type: r.get(1)?,
        time: format_ns(t),
        time_ns: t,
        name: r.get(3)?,
        severity: r.get(4)?,
        message: r.get(5)?,
        stack_trace: r.get(6)?,
        category: r.get(7)?,
        trace_id: hex_opt(r.get(8)?),
        span_id: hex_opt(r.get(9)?),
        agent_id: r.get(10)?,
        session_id: r.get(11)?,
        user_id: r.get(12)?,
        attributes: json_col(r.get(13)?),
        resource: json_col(r.get(14)?),
        source: r.get(15)?,
        rowid: r.get(16)?,
    })
}

pub fn list_events(
    conn: &Connection,
    f: &EventFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<EventOut>, StoreError> {
    let mut sql = format!("SELECT {EVENT_COLS} FROM events WHERE 1=1");
    let mut args: Vec<SqlValue> = Vec::new();
    for (col, v) in [
        ("type", &f.event_type),
        ("agent_id", &f.agent_id),
        ("session_id", &f.session_id),
        ("severity", &f.severity),
        ("name", &f.name),
        ("category", &f.category),
    ] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} = ?"));
            args.push(SqlValue::Text(v.clone()));
        }
    }
    if let Some(t) = &f.trace_id {
        sql.push_str(" AND trace_id = ?");
        args.push(SqlValue::Blob(t.0.to_vec()));
    }
    if let Some(s) = &f.span_id {
        sql.push_str(" AND span_id = ?");
        args.push(SqlValue::Blob(s.0.to_vec()));
    }
    if let Some(s) = &f.state {
        sql.push_str(" AND json_extract(attributes, '$.state') = ?");
        args.push(SqlValue::Text(s.clone()));
    }
    if let Some(from) = f.from_ns {
        sql.push_str(" AND time_ns >= ?");
        args.push(SqlValue::Integer(from));
    }
    if let Some(to) = f.to_ns {
        sql.push_str(" AND time_ns < ?");
        args.push(SqlValue::Integer(to));
    }
    if let Some(c) = cursor {
        let (t, id) = parse_cursor(c)?;
        let id: i64 = id
            .parse()
            .map_err(|_| StoreError::BadRequest("cursor: not a cursor this API returned".into()))?;
        sql.push_str(" AND (time_ns < ? OR (time_ns = ? AND id < ?))");
        args.push(SqlValue::Integer(t));
        args.push(SqlValue::Integer(t));
        args.push(SqlValue::Integer(id));
    }
    sql.push_str(" ORDER BY time_ns DESC, id DESC LIMIT ?");
    args.push(SqlValue::Integer(limit as i64 + 1));
    let mut stmt = conn.prepare(&sql)?;
    let mut items: Vec<EventOut> = stmt
        .query_map(params_from_iter(args), event_row)?
        .collect::<Result<_, _>>()?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|e| format!("{}.{}", e.time_ns, e.rowid))
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// The attributes of the newest custom event named `name` for each value of its
/// attribute `key` (e.g. the latest state recorded of each fleet sidecar).
pub fn latest_event_attributes(
    conn: &Connection,
    name: &str,
    key: &str,
) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT attributes FROM events WHERE id IN (SELECT max(id) FROM events \
         WHERE type = 'custom' AND name = ?1 GROUP BY json_extract(attributes, '$.' || ?2))",
    )?;
    let rows = stmt
        .query_map(rusqlite::params![name, key], |r| {
            r.get::<_, Option<String>>(0)
        })?
        .filter_map(|r| r.ok().flatten())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect();
    Ok(rows)
}

/// A host condition's stored event: its uid, when it opened (ns) and its attributes.
pub type StoredCondition = (String, i64, Value);

/// Host conditions still open (host error events whose `state` is `active`), newest
/// first, as (uid, time, attributes): this daemon's own, those whose resource names
/// `instance` (`None`: names none, as a sidecar's own records), not a pushing
/// sidecar's.
pub fn open_host_conditions(
    conn: &Connection,
    instance: Option<&str>,
) -> Result<Vec<StoredCondition>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT uid, time_ns, attributes FROM events
         WHERE source = 'host' AND type = 'error'
           AND json_extract(attributes, '$.state') = 'active'
           AND json_extract(resource, '$.\"service.instance.id\"') IS ?1
         ORDER BY id DESC LIMIT 10000",
    )?;
    let rows = stmt
        .query_map([instance], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .map(|(uid, t, a)| {
            let a = a
                .and_then(|a| serde_json::from_str(&a).ok())
                .unwrap_or(Value::Null);
            (uid, t, a)
        })
        .collect())
}

pub fn events_of_trace(conn: &Connection, id: &TraceId) -> Result<Vec<EventOut>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLS} FROM events WHERE trace_id = ?1 ORDER BY time_ns, id"
    ))?;
    let rows = stmt
        .query_map([&id.0[..]], event_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Traces whose root names `id` as its parent trace.
pub fn child_traces(conn: &Connection, id: &TraceId) -> Result<Vec<TraceId>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT trace_id FROM traces WHERE parent_trace_id = ?1 ORDER BY start_ns",
    )?;
    let rows = stmt
        .query_map([&id.0[..]], |r| r.get::<_, Vec<u8>>(0))?
        .filter_map(|r| r.ok().and_then(|b| TraceId::from_slice(&b)))
        .collect();
    Ok(rows)
}

#[derive(Clone, Debug, Serialize)]
pub struct TraceDetail {
    pub trace: TraceSummary,
    pub spans: Vec<SpanOut>,
    pub events: Vec<EventOut>,
    /// The evaluation scores among `events`, oldest first.
    pub scores: Vec<super::scores::ScoreOut>,
    /// Summaries of the traces whose root names this one as `parent_trace_id` (sub-runs),
    /// oldest first, at most [`MAX_SUB_TRACES`].
    pub sub_traces: Vec<TraceSummary>,
}

/// Sub-runs listed with a trace, at most.
pub const MAX_SUB_TRACES: usize = 100;

pub fn trace_detail(conn: &Connection, id: &TraceId) -> Result<Option<TraceDetail>, StoreError> {
    let Some(trace) = trace_summary(conn, id)? else {
        return Ok(None);
    };
    let mut sub_traces = Vec::new();
    for child in child_traces(conn, id)?.into_iter().take(MAX_SUB_TRACES) {
        if child != *id
            && let Some(t) = trace_summary(conn, &child)?
        {
            sub_traces.push(t);
        }
    }
    let events = events_of_trace(conn, id)?;
    Ok(Some(TraceDetail {
        trace,
        spans: build_tree(spans_of(conn, id)?),
        scores: super::scores::scores_of(&events),
        events,
        sub_traces,
    }))
}

#[derive(Clone, Debug, Serialize)]
pub struct TraceExport {
    pub trace: TraceSummary,
    pub spans: Vec<SpanOut>,
    pub events: Vec<EventOut>,
    pub sub_traces: Vec<TraceExport>,
}

/// The trace with its spans, events and sub-traces, recursively (cycles cut).
pub fn trace_export(conn: &Connection, id: &TraceId) -> Result<Option<TraceExport>, StoreError> {
    fn go(
        conn: &Connection,
        id: &TraceId,
        seen: &mut std::collections::HashSet<TraceId>,
    ) -> Result<Option<TraceExport>, StoreError> {
        if !seen.insert(*id) || seen.len() > 10_000 {
            return Ok(None);
        }
        let Some(trace) = trace_summary(conn, id)? else {
            return Ok(None);
        };
        let mut sub_traces = Vec::new();
        for child in child_traces(conn, id)? {
            if let Some(t) = go(conn, &child, seen)? {
                sub_traces.push(t);
            }
        }
        Ok(Some(TraceExport {
            trace,
            spans: spans_of(conn, id)?,
            events: events_of_trace(conn, id)?,
            sub_traces,
        }))
    }
    go(conn, id, &mut Default::default())
}

/// A persistent counter's value (0 when never bumped).
pub fn counter(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .unwrap_or(0))
}
