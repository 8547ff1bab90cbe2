//! Inserting records. Runs only on the pipeline's writer thread, inside its batch transaction.

use rusqlite::{CachedStatement, Statement, Transaction, params};
use serde_json::{Map, Value};

use std::collections::HashMap;

use crate::model::{
    Event, MetricPoint, Record, SharedMap, Span, SpanId, SpanKind, StatusCode, TraceId,
};
use std::sync::Arc;

/// What a batch did: rows written, duplicates skipped, and what each record changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteOutcome {
    /// Records that added a row or changed one (a merged piece).
    pub written: u64,
    pub duplicates: u64,
    /// Records older than the age-retention window: counted, not stored (`WriteEffect::Expired`).
    pub expired: u64,
    /// One per record of the batch, in order.
    pub effects: Vec<WriteEffect>,
}

/// What one record changed in the store; write hooks add exactly this to what they keep.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteEffect {
    /// A new row holding what the record says.
    Inserted,
    /// Nothing changed (the same record again, or a piece that said nothing new).
    Duplicate,
    /// A piece of a span merged into stored rows (see `store::merge`).
    Merged(Box<MergedSpan>),
    /// Older than the age-retention window when it arrived and no sink waits for it:
    /// not stored (the next retention pass would delete it), but what it says counts,
    /// as a new row would, in what outlives the rows (usage rollups, budgets, `/metrics`).
    Expired,
}

/// Stored span rows before and after a piece merged in. Rows are read back without
/// their texts and resource (`input`, `output`, `resource` and `finish_reasons` are empty).
#[derive(Clone, Debug, PartialEq)]
pub struct MergedSpan {
    /// The rows the piece changed, as they were: the span it joined and, when a
    /// provisional span moved to real ids, that one too (it is gone now).
    pub before: Vec<Span>,
    /// The row now stored.
    pub after: Span,
}

/// How a span record changed the stored rows: `after` replaced every row in `before`.
/// A hook adds what `after` contributes and takes back what `before` contributed, so
/// a span reported in pieces counts once whatever the order its pieces arrive in.
#[derive(Clone, Copy, Debug)]
pub struct SpanChange<'a> {
    pub before: &'a [Span],
    pub after: &'a Span,
}

impl SpanChange<'_> {
    /// A new row: nothing stored before.
    pub fn is_new(&self) -> bool {
        self.before.is_empty()
    }
    /// `pred` holds for the row now and held for none of the rows it replaced
    /// (a span that just ended, just failed, just got its tokens...).
    pub fn became(&self, pred: impl Fn(&Span) -> bool) -> bool {
        pred(self.after) && !self.before.iter().any(pred)
    }
    /// `after`'s figure minus the sum of `before`'s (unknown counts as 0).
    pub fn delta<T>(&self, get: impl Fn(&Span) -> Option<T>) -> T
    where
        T: Default + std::ops::Add<Output = T> + std::ops::Sub<Output = T>,
    {
        let before = self
            .before
            .iter()
            .fold(T::default(), |acc, s| acc + get(s).unwrap_or_default());
        get(self.after).unwrap_or_default() - before
    }
}

impl WriteEffect {
    pub fn is_inserted(&self) -> bool {
        matches!(self, WriteEffect::Inserted)
    }
    /// The record counts as new: stored as a new row, or expired on arrival.
    pub fn is_new(&self) -> bool {
        matches!(self, WriteEffect::Inserted | WriteEffect::Expired)
    }
    /// For a span record that changed the store (or counts as if it had: expired on
    /// arrival): which rows it replaced with which.
    pub fn span_change<'a>(&'a self, record: &'a Record) -> Option<SpanChange<'a>> {
        match (self, record) {
            (WriteEffect::Inserted | WriteEffect::Expired, Record::Span(s)) => Some(SpanChange {
                before: &[],
                after: s,
            }),
            (WriteEffect::Merged(m), _) => Some(SpanChange {
                before: &m.before,
                after: &m.after,
            }),
            _ => None,
        }
    }
}

pub(super) fn json_or_null(m: &Map<String, Value>) -> Option<String> {
    // Serialized in place: cloning the map first cost an allocation per key on the writer.
    (!m.is_empty()).then(|| serde_json::to_string(m).unwrap_or_default())
}

/// Writes every record of a batch; duplicates (same trace and span id, same event uid) are skipped.
pub fn write_records(
    tx: &Transaction,
    records: &[Record],
    received_ns: i64,
) -> rusqlite::Result<WriteOutcome> {
    write_records_expiring(tx, records, received_ns, None)
}

/// As `write_records`; records whose time (a span's start, an event's or a point's time:
/// what age retention goes by) is before `expire_before_ns` are not stored but reported
/// as `WriteEffect::Expired`. A piece of a span that merges into a stored row is
/// merged whatever its age, so a call is never counted twice.
pub fn write_records_expiring(
    tx: &Transaction,
    records: &[Record],
    received_ns: i64,
    expire_before_ns: Option<i64>,
) -> rusqlite::Result<WriteOutcome> {
    let expired = |t: i64| expire_before_ns.is_some_and(|cutoff| t < cutoff);
    let mut out = WriteOutcome {
        effects: Vec::with_capacity(records.len()),
        ..Default::default()
    };
    let effect_of = |inserted: bool| {
        if inserted {
            WriteEffect::Inserted
        } else {
            WriteEffect::Duplicate
        }
    };
    // One summary upsert per trace and batch, not per span (a trace's spans arrive together).
    let mut traces = TraceDeltas::default();
    // Prepared once per batch: looking a statement up in the cache hashes its whole SQL.
    let mut span_insert: Option<CachedStatement> = None;
    let mut event_insert: Option<CachedStatement> = None;
    let mut metric_insert: Option<CachedStatement> = None;
    let mut json = RowJson::default();
    for r in records {
        let effect = match r {
            Record::Span(s) if s.merge.is_some() => {
                // A merge recomputes its trace's summary from the stored spans:
                // what this batch added so far must be in the summary first.
                traces.flush(tx, received_ns)?;
                super::merge::merge_span(tx, s, received_ns, expired(s.start_ns))?
            }
            Record::Span(s) if expired(s.start_ns) => WriteEffect::Expired,
            Record::Event(e) if expired(e.time_ns) => WriteEffect::Expired,
            Record::Metric(m) if expired(m.time_ns) => WriteEffect::Expired,
            Record::Span(s) => {
                let stmt = prepared(tx, &mut span_insert, || span_insert_sql("DO NOTHING"))?;
                let new = bind_span_row(tx, stmt, s, received_ns, &mut json)? > 0;
                if new {
                    traces.add(s);
                }
                effect_of(new)
            }
            Record::Event(e) => {
                let stmt = prepared(tx, &mut event_insert, || EVENT_INSERT.into())?;
                effect_of(insert_event(tx, stmt, e, received_ns, &mut json)?)
            }
            Record::Metric(m) => {
                let stmt = prepared(tx, &mut metric_insert, || METRIC_INSERT.into())?;
                effect_of(insert_metric(stmt, m, &mut json)?)
            }
        };
        if matches!(effect, WriteEffect::Duplicate) {
            out.duplicates += 1;
        } else if matches!(effect, WriteEffect::Expired) {
            out.expired += 1;
        } else {
            out.written += 1;
        }
        out.effects.push(effect);
    }
    traces.flush(tx, received_ns)?;
    Ok(out)
}

/// What a batch's new spans add to one trace's summary row.
struct TraceDelta<'a> {
    trace_id: TraceId,
    /// The (last) root span of the batch: its id and name.
    root: Option<(SpanId, &'a str)>,
    /// The name of the earliest span, the trace's name until its root arrives.
    earliest_name: &'a str,
    parent_trace_id: Option<TraceId>,
    start_ns: i64,
    end_ns: Option<i64>,
    status: StatusCode,
    spans: i64,
    errors: i64,
    llm_calls: i64,
    tool_calls: i64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    cost_usd: Option<f64>,
    agent_id: Option<&'a str>,
    session_id: Option<&'a str>,
    user_id: Option<&'a str>,
}

#[derive(Default)]
struct TraceDeltas<'a> {
    deltas: Vec<TraceDelta<'a>>,
    index: HashMap<TraceId, usize, crate::util::fast_hash::FastHashing>,
}

impl<'a> TraceDeltas<'a> {
    /// Applies what was gathered to the summary rows, and starts over.
    fn flush(&mut self, tx: &Transaction, now: i64) -> rusqlite::Result<()> {
        if self.deltas.is_empty() {
            return Ok(());
        }
        let mut stmt = tx.prepare_cached(TRACE_UPSERT)?;
        for d in &self.deltas {
            upsert_trace(&mut stmt, d, now)?;
        }
        self.deltas.clear();
        self.index.clear();
        Ok(())
    }

    fn add(&mut self, s: &'a Span) {
        let counts_usage = matches!(s.kind, SpanKind::LlmCall | SpanKind::Embedding);
        let usage = |v: Option<i64>| if counts_usage { v.unwrap_or(0) } else { 0 };
        let total = if counts_usage {
            s.total_tokens
                .unwrap_or(s.input_tokens.unwrap_or(0) + s.output_tokens.unwrap_or(0))
        } else {
            0
        };
        let i = *self.index.entry(s.trace_id).or_insert_with(|| {
            self.deltas.push(TraceDelta {
                trace_id: s.trace_id,
                root: None,
                earliest_name: &s.name,
                parent_trace_id: None,
                start_ns: s.start_ns,
                end_ns: None,
                status: StatusCode::Unset,
                spans: 0,
                errors: 0,
                llm_calls: 0,
                tool_calls: 0,
                input_tokens: 0,
                output_tokens: 0,
                total_tokens: 0,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                cost_usd: None,
                agent_id: None,
                session_id: None,
                user_id: None,
            });
            self.deltas.len() - 1
        });
        let d = &mut self.deltas[i];
        if s.parent_span_id.is_none() {
            d.root = Some((s.span_id, &s.name));
        }
        if s.start_ns < d.start_ns {
            d.start_ns = s.start_ns;
            d.earliest_name = &s.name;
        }
        d.parent_trace_id = d.parent_trace_id.or(s.parent_trace_id);
        d.end_ns = d.end_ns.max(s.end_ns);
        d.status = match (d.status, s.status) {
            (StatusCode::Error, _) | (_, StatusCode::Error) => StatusCode::Error,
            (StatusCode::Ok, _) | (_, StatusCode::Ok) => StatusCode::Ok,
            _ => StatusCode::Unset,
        };
        d.spans += 1;
        d.errors += (s.status == StatusCode::Error) as i64;
        d.llm_calls += (s.kind == SpanKind::LlmCall) as i64;
        d.tool_calls += (s.kind == SpanKind::ToolCall) as i64;
        d.input_tokens += usage(s.input_tokens);
        d.output_tokens += usage(s.output_tokens);
        d.total_tokens += total;
        d.cache_read_tokens += usage(s.cache_read_tokens);
        d.cache_write_tokens += usage(s.cache_write_tokens);
        if counts_usage && let Some(c) = s.cost_usd {
            d.cost_usd = Some(d.cost_usd.unwrap_or(0.0) + c);
        }
        d.agent_id = d.agent_id.or(s.agent_id.as_deref());
        d.session_id = d.session_id.or(s.session_id.as_deref());
        d.user_id = d.user_id.or(s.user_id.as_deref());
    }
}

/// The statement in `slot`, prepared on first use.
fn prepared<'s, 'tx>(
    tx: &'tx Transaction,
    slot: &'s mut Option<CachedStatement<'tx>>,
    sql: impl FnOnce() -> String,
) -> rusqlite::Result<&'s mut CachedStatement<'tx>> {
    if slot.is_none() {
        *slot = Some(tx.prepare_cached(&sql())?);
    }
    slot.as_mut()
        .ok_or_else(|| rusqlite::Error::InvalidParameterName("statement".into()))
}

/// Inserts one span row; `on_conflict` says what a row with the same ids does.
pub(super) fn write_span_row(
    tx: &Transaction,
    s: &Span,
    received_ns: i64,
    on_conflict: &str,
) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached(&span_insert_sql(on_conflict))?;
    bind_span_row(tx, &mut stmt, s, received_ns, &mut RowJson::default())
}

fn span_insert_sql(on_conflict: &str) -> String {
    format!(
        "INSERT INTO spans (trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status,
            status_message, agent_id, session_id, user_id, operation, provider, request_model,
            response_model, input_tokens, output_tokens, total_tokens, cache_read_tokens,
            cache_write_tokens, reasoning_tokens, cost_usd, cost_source, finish_reasons, tool_name,
            tool_call_id, error_type, latency_ms, input_text, input_text_len, output_text,
            output_text_len, attributes, resource, source, received_ns, cost_computed_usd)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, pack(?30), ?31, pack(?32), ?33, pack(?34), pack(?35), ?36, ?37, ?38)
         ON CONFLICT(trace_id, span_id) {on_conflict}"
    )
}

/// The JSON of a row's attributes and resource. The items of one export share their
/// resource, so it is serialized once, not once per span; attributes are written into
/// one buffer reused row after row (a fresh string per span grew several times).
#[derive(Default)]
struct RowJson {
    last_resource: Option<(SharedMap, Option<String>)>,
    attributes: Vec<u8>,
}

impl RowJson {
    /// (attributes, resource), each `None` when empty.
    fn of(
        &mut self,
        attributes: &Map<String, Value>,
        resource: &SharedMap,
    ) -> (Option<&str>, Option<&str>) {
        match &self.last_resource {
            Some((r, _)) if Arc::ptr_eq(r, resource) => {}
            _ => self.last_resource = Some((resource.clone(), json_or_null(resource))),
        }
        self.attributes.clear();
        let attributes = (!attributes.is_empty())
            .then(|| {
                serde_json::to_writer(&mut self.attributes, attributes).ok()?;
                std::str::from_utf8(&self.attributes).ok()
            })
            .flatten();
        let resource = self.last_resource.as_ref().and_then(|(_, j)| j.as_deref());
        (attributes, resource)
    }
}

/// Binds `values` to the insert `stmt` and runs it (the rows it inserted); when it
/// inserted a row, the audit chain gathers that row's canonical bytes from the same
/// values (`audit::digest_inserted`), in the order bound, which is `CHAINED`'s.
macro_rules! insert_chained {
    ($conn:expr, $stmt:expr, $table:expr, [$($v:expr),+ $(,)?]) => {{
        let n = $stmt.execute(params![$($v),+])?;
        if n > 0 {
            super::audit::digest_inserted($table, $conn.last_insert_rowid(), |buf| {
                use super::audit::Canonical;
                $( $v.canon(buf); )+
            });
        }
        n
    }};
}

fn bind_span_row(
    conn: &rusqlite::Connection,
    stmt: &mut Statement,
    s: &Span,
    received_ns: i64,
    json: &mut RowJson,
) -> rusqlite::Result<usize> {
    let finish = (!s.finish_reasons.is_empty())
        .then(|| serde_json::to_string(&s.finish_reasons).unwrap_or_default());
    let (attributes, resource) = json.of(&s.attributes, &s.resource);
    let latency_ms = s.latency_ms();
    let cost_source = s.cost_source.map(|c| c.as_str());
    let input = s.input.as_ref().map(|t| t.text.as_str());
    let input_len = s.input.as_ref().map(|t| t.original_len as i64);
    let output = s.output.as_ref().map(|t| t.text.as_str());
    let output_len = s.output.as_ref().map(|t| t.original_len as i64);
    let n = insert_chained!(
        conn,
        stmt,
        SPANS,
        [
            &s.trace_id.0[..],
            &s.span_id.0[..],
            s.parent_span_id.as_ref().map(|p| &p.0[..]),
            s.name,
            s.kind.as_str(),
            s.start_ns,
            s.end_ns,
            s.status.as_str(),
            s.status_message,
            s.agent_id,
            s.session_id,
            s.user_id,
            s.operation,
            s.provider,
            s.request_model,
            s.response_model,
            s.input_tokens,
            s.output_tokens,
            s.total_tokens,
            s.cache_read_tokens,
            s.cache_write_tokens,
            s.reasoning_tokens,
            s.cost_usd,
            cost_source,
            finish,
            s.tool_name,
            s.tool_call_id,
            s.error_type,
            latency_ms,
            input,
            input_len,
            output,
            output_len,
            attributes,
            resource,
            s.source,
            received_ns,
            s.cost_computed_usd,
        ]
    );
    Ok(n)
}

/// `CHAINED`'s index of each table (see `audit::CHAINED`).
const SPANS: usize = 0;
const EVENTS: usize = 1;

/// Keeps the trace's summary row current whatever order its spans arrive in.
const TRACE_UPSERT: &str = "INSERT INTO traces (trace_id, root_span_id, root_name, parent_trace_id, start_ns, end_ns,
            status, span_count, error_count, llm_calls, tool_calls, input_tokens, output_tokens,
            total_tokens, cache_read_tokens, cache_write_tokens, cost_usd, agent_id, session_id,
            user_id, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?21, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
         ON CONFLICT(trace_id) DO UPDATE SET
            root_span_id = COALESCE(excluded.root_span_id, root_span_id),
            root_name = CASE
                WHEN excluded.root_span_id IS NOT NULL THEN excluded.root_name
                WHEN root_span_id IS NULL AND excluded.start_ns < start_ns THEN excluded.root_name
                ELSE root_name END,
            parent_trace_id = COALESCE(parent_trace_id, excluded.parent_trace_id),
            start_ns = MIN(start_ns, excluded.start_ns),
            end_ns = MAX(COALESCE(end_ns, excluded.end_ns), COALESCE(excluded.end_ns, end_ns)),
            status = CASE
                WHEN status = 'error' OR excluded.status = 'error' THEN 'error'
                WHEN status = 'ok' OR excluded.status = 'ok' THEN 'ok'
                ELSE 'unset' END,
            span_count = span_count + excluded.span_count,
            error_count = error_count + excluded.error_count,
            llm_calls = llm_calls + excluded.llm_calls,
            tool_calls = tool_calls + excluded.tool_calls,
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            total_tokens = total_tokens + excluded.total_tokens,
            cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
            cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
            cost_usd = CASE WHEN excluded.cost_usd IS NULL THEN cost_usd
                            ELSE COALESCE(cost_usd, 0) + excluded.cost_usd END,
            agent_id = COALESCE(agent_id, excluded.agent_id),
            session_id = COALESCE(session_id, excluded.session_id),
            user_id = COALESCE(user_id, excluded.user_id),
            updated_ns = excluded.updated_ns";

fn upsert_trace(stmt: &mut Statement, d: &TraceDelta, now: i64) -> rusqlite::Result<()> {
    stmt.execute(params![
        &d.trace_id.0[..],
        d.root.as_ref().map(|(id, _)| &id.0[..]),
        d.root.map(|(_, name)| name).unwrap_or(d.earliest_name),
        d.parent_trace_id.as_ref().map(|t| &t.0[..]),
        d.start_ns,
        d.end_ns,
        d.status.as_str(),
        d.errors,
        d.llm_calls,
        d.tool_calls,
        d.input_tokens,
        d.output_tokens,
        d.total_tokens,
        d.cache_read_tokens,
        d.cache_write_tokens,
        d.cost_usd,
        d.agent_id,
        d.session_id,
        d.user_id,
        now,
        d.spans,
    ])?;
    Ok(())
}

const EVENT_INSERT: &str = "INSERT INTO events (uid, type, time_ns, name, severity, message, stack_trace, category,
            trace_id, span_id, agent_id, session_id, user_id, attributes, resource, source, received_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT(uid) DO NOTHING";

fn insert_event(
    conn: &rusqlite::Connection,
    stmt: &mut Statement,
    e: &Event,
    received_ns: i64,
    json: &mut RowJson,
) -> rusqlite::Result<bool> {
    let (attributes, resource) = json.of(&e.attributes, &e.resource);
    let n = insert_chained!(
        conn,
        stmt,
        EVENTS,
        [
            e.uid,
            e.event_type.as_str(),
            e.time_ns,
            e.name,
            e.severity,
            e.message,
            e.stack_trace,
            e.category,
            e.trace_id.as_ref().map(|t| &t.0[..]),
            e.span_id.as_ref().map(|s| &s.0[..]),
            e.agent_id,
            e.session_id,
            e.user_id,
            attributes,
            resource,
            e.source,
            received_ns,
        ]
    );
    Ok(n > 0)
}

const METRIC_INSERT: &str =
    "INSERT INTO metric_points (name, unit, kind, time_ns, start_time_ns, value, count, sum, min,
            max, bounds, bucket_counts, temporality, monotonic, attributes, resource, source, point_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
         ON CONFLICT (time_ns, point_key) WHERE point_key IS NOT NULL DO NOTHING";

/// The key of a point a client may send again: its series (name, kind, start and
/// every attribute; the time is the unique index's other half). `None` for a point
/// that is never sent twice. `attributes` and `resource` are the JSON stored.
pub fn metric_point_key(
    m: &MetricPoint,
    attributes: Option<&str>,
    resource: Option<&str>,
) -> Option<i64> {
    m.deduplicate.then(|| {
        let start = m.start_time_ns.unwrap_or(0).to_string();
        crate::util::digest::key_of_parts(&[
            &m.name,
            m.kind.as_str(),
            &start,
            attributes.unwrap_or(""),
            resource.unwrap_or(""),
        ])
    })
}

fn insert_metric(
    stmt: &mut Statement,
    m: &MetricPoint,
    json: &mut RowJson,
) -> rusqlite::Result<bool> {
    let h = m.histogram.as_ref();
    let (attributes, resource) = json.of(&m.attributes, &m.resource);
    let point_key = metric_point_key(m, attributes, resource);
    let n = stmt.execute(params![
        m.name,
        m.unit,
        m.kind.as_str(),
        m.time_ns,
        m.start_time_ns,
        m.value,
        h.map(|h| h.count as i64),
        h.and_then(|h| h.sum),
        h.and_then(|h| h.min),
        h.and_then(|h| h.max),
        h.map(|h| serde_json::to_string(&h.bounds).unwrap_or_default()),
        h.map(|h| serde_json::to_string(&h.bucket_counts).unwrap_or_default()),
        m.temporality,
        m.monotonic.map(|b| b as i64),
        attributes,
        resource,
        m.source,
        point_key,
    ])?;
    Ok(n > 0)
}

/// Adds to a persistent counter.
pub fn bump_counter(tx: &Transaction, name: &str, by: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        params![name, by],
    )?;
    Ok(())
}
