//! Spans reported in pieces. One OpenClaw model call is described by a hook when it
//! starts, a hook when it ends, a diagnostic event with usage and cost, the message
//! written to the transcript...; each piece is a `Span` with `merge` set, and they
//! all end up as ONE row holding the union of what they said:
//! - same (trace_id, span_id): columns are COALESCEd (the first value stays), start
//!   is the earliest, end the latest, an error status wins, attributes are united;
//! - same `merge.key` (a natural key such as an LLM response): a provisional piece
//!   (ids made up by its source) joins the span with real ids; a stored provisional
//!   span moves to the real ids when they arrive (its events follow it).
//!
//! The trace's summary row is recomputed from its spans after each piece, so totals
//! never count a call twice whatever order the pieces arrive in. Each piece also
//! reports the rows it changed, before and after (`WriteEffect::Merged`), so the
//! write hooks (rollups, budgets, metrics) add exactly what changed.
//!
//! A cost the agent reported wins over one computed from the price table (the
//! computed one is kept in `cost_computed_usd` when they differ); otherwise the
//! first known cost stays.

use rusqlite::{OptionalExtension, Row, Transaction, params};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::write::{MergedSpan, WriteEffect, write_span_row};
use crate::model::{CostSource, Span, SpanId, SpanKind, StatusCode, TraceId};

/// Columns where the first known value is kept.
const COALESCED: &[&str] = &[
    "status_message",
    "agent_id",
    "session_id",
    "user_id",
    "operation",
    "provider",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "finish_reasons",
    "tool_name",
    "tool_call_id",
    "error_type",
    "input_text",
    "input_text_len",
    "output_text",
    "output_text_len",
];

/// `SET` assignments merging `new` into `old` (table aliases), `old` winning ties.
fn merge_assignments(old: &str, new: &str) -> String {
    let mut parts: Vec<String> = COALESCED
        .iter()
        .map(|c| format!("{c} = COALESCE({old}.{c}, {new}.{c})"))
        .collect();
    parts.push(format!(
        "parent_span_id = COALESCE({old}.parent_span_id, {new}.parent_span_id)"
    ));
    parts.push(format!("start_ns = MIN({old}.start_ns, {new}.start_ns)"));
    parts.push(format!(
        "end_ns = MAX(COALESCE({old}.end_ns, {new}.end_ns), COALESCE({new}.end_ns, {old}.end_ns))"
    ));
    parts.push(format!(
        "status = CASE WHEN {old}.status = 'error' OR {new}.status = 'error' THEN 'error'
                       WHEN {old}.status = 'ok' OR {new}.status = 'ok' THEN 'ok' ELSE 'unset' END"
    ));
    // Which piece's cost stays: the first known, unless a reported one meets a computed one.
    let new_wins = format!(
        "({new}.cost_usd IS NOT NULL AND ({old}.cost_usd IS NULL
            OR ({new}.cost_source IS 'reported' AND {old}.cost_source IS NOT 'reported')))"
    );
    let winner = |c: &str| format!("CASE WHEN {new_wins} THEN {new}.{c} ELSE {old}.{c} END");
    let loser = |c: &str| format!("CASE WHEN {new_wins} THEN {old}.{c} ELSE {new}.{c} END");
    let (w_cost, l_cost) = (winner("cost_usd"), loser("cost_usd"));
    parts.push(format!("cost_usd = {w_cost}"));
    parts.push(format!("cost_source = {}", winner("cost_source")));
    // Beside a reported cost: the price table's figure when it differs (as `analytics::cost`).
    parts.push(format!(
        "cost_computed_usd = CASE WHEN {ws} IS 'reported' THEN COALESCE({wc}, {lc},
            CASE WHEN {ls} IS 'computed' AND abs({w_cost} - {l_cost})
                > max(1e-12, max(abs({w_cost}), abs({l_cost})) * 1e-6) THEN {l_cost} END)
            ELSE {wc} END",
        ws = winner("cost_source"),
        ls = loser("cost_source"),
        wc = winner("cost_computed_usd"),
        lc = loser("cost_computed_usd"),
    ));
    for col in ["attributes", "resource"] {
        parts.push(format!(
            "{col} = pack(NULLIF(json_patch(COALESCE(unpack({new}.{col}), '{{}}'),
                COALESCE(unpack({old}.{col}), '{{}}')), '{{}}'))"
        ));
    }
    parts.join(",\n")
}

/// `piece` merged into `stored` in memory, by the rules [`merge_assignments`] gives
/// SQLite (the first known value stays, start the earliest, end the latest, an error
/// wins, the reported cost wins, attributes united with the stored ones winning): a
/// store that merges outside SQL (PostgreSQL's) gets the same row.
pub fn merge_into(stored: &mut Span, piece: &Span) {
    macro_rules! first_known {
        ($($f:ident),*) => {$(
            if stored.$f.is_none() {
                stored.$f = piece.$f.clone();
            }
        )*};
    }
    first_known!(
        status_message,
        agent_id,
        session_id,
        user_id,
        operation,
        provider,
        request_model,
        response_model,
        input_tokens,
        output_tokens,
        total_tokens,
        cache_read_tokens,
        cache_write_tokens,
        reasoning_tokens,
        tool_name,
        tool_call_id,
        error_type,
        input,
        output,
        parent_span_id,
        parent_trace_id
    );
    if stored.finish_reasons.is_empty() {
        stored.finish_reasons = piece.finish_reasons.clone();
    }
    stored.start_ns = stored.start_ns.min(piece.start_ns);
    stored.end_ns = match (stored.end_ns, piece.end_ns) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    stored.status = match (stored.status, piece.status) {
        (StatusCode::Error, _) | (_, StatusCode::Error) => StatusCode::Error,
        (StatusCode::Ok, _) | (_, StatusCode::Ok) => StatusCode::Ok,
        _ => StatusCode::Unset,
    };
    let reported = |c: Option<CostSource>| c == Some(CostSource::Reported);
    let new_wins = piece.cost_usd.is_some()
        && (stored.cost_usd.is_none()
            || (reported(piece.cost_source) && !reported(stored.cost_source)));
    // (cost, its source, the price table's figure) of the winner and the loser.
    let costs = |s: &Span| (s.cost_usd, s.cost_source, s.cost_computed_usd);
    let (w, l) = if new_wins {
        (costs(piece), costs(stored))
    } else {
        (costs(stored), costs(piece))
    };
    stored.cost_usd = w.0;
    stored.cost_source = w.1;
    stored.cost_computed_usd = if reported(w.1) {
        w.2.or(l.2).or(match (w.0, l.0) {
            (Some(wc), Some(lc))
                if l.1 == Some(CostSource::Computed)
                    && (wc - lc).abs() > 1e-12_f64.max(wc.abs().max(lc.abs()) * 1e-6) =>
            {
                Some(lc)
            }
            _ => None,
        })
    } else {
        w.2
    };
    let mut attributes = Value::Object(piece.attributes.clone());
    merge_patch(
        &mut attributes,
        &Value::Object(std::mem::take(&mut stored.attributes)),
    );
    if let Value::Object(m) = attributes {
        stored.attributes = m;
    }
    if stored.resource != piece.resource {
        let mut resource = Value::Object(Map::clone(&piece.resource));
        merge_patch(&mut resource, &Value::Object(Map::clone(&stored.resource)));
        if let Value::Object(m) = resource {
            stored.resource = std::sync::Arc::new(m);
        }
    }
}

/// JSON Merge Patch (RFC 7396), as SQLite's `json_patch`.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return;
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn span_exists(tx: &Transaction, t: &TraceId, s: &SpanId) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached("SELECT id FROM spans WHERE trace_id = ?1 AND span_id = ?2")?
        .query_row(params![&t.0[..], &s.0[..]], |r| r.get(0))
        .optional()
}

/// A natural key as `span_keys` stores it: the first 16 bytes of its SHA-256. Keys are
/// long texts (an OpenClaw tool call's is about 75 characters) and only ever looked up
/// whole; 128 bits keep two keys from meeting among any number a database can hold.
pub fn key_digest(key: &[u8]) -> [u8; 16] {
    let full = Sha256::digest(key);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Schema 14: `span_keys` keyed by [`key_digest`] instead of the key's text (a third of
/// the table and its index). Needs [`register`] on the connection.
pub const MIGRATION: &str = r#"
    CREATE TABLE span_keys_by_digest (
        key BLOB PRIMARY KEY,
        trace_id BLOB NOT NULL,
        span_id BLOB NOT NULL,
        provisional INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT OR REPLACE INTO span_keys_by_digest
        SELECT span_key_digest(key), trace_id, span_id, provisional FROM span_keys;
    DROP TABLE span_keys;
    ALTER TABLE span_keys_by_digest RENAME TO span_keys;
    CREATE INDEX span_keys_span ON span_keys(trace_id, span_id);
"#;

/// Adds `span_key_digest(text)` (what [`MIGRATION`] converts stored keys with) to `conn`.
pub fn register(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "span_key_digest",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let bytes = match ctx.get_raw(0) {
                rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => b,
                _ => &[][..],
            };
            Ok(key_digest(bytes).to_vec())
        },
    )
}

/// Where a key points, if the span it names is still stored.
fn lookup_key(
    tx: &Transaction,
    key: &[u8; 16],
) -> rusqlite::Result<Option<(TraceId, SpanId, bool)>> {
    let row: Option<(Vec<u8>, Vec<u8>, bool)> = tx
        .prepare_cached("SELECT trace_id, span_id, provisional FROM span_keys WHERE key = ?1")?
        .query_row([&key[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((t, s, provisional)) = row else {
        return Ok(None);
    };
    match (TraceId::from_slice(&t), SpanId::from_slice(&s)) {
        (Some(t), Some(s)) if span_exists(tx, &t, &s)?.is_some() => Ok(Some((t, s, provisional))),
        _ => Ok(None),
    }
}

fn set_key(
    tx: &Transaction,
    key: &[u8; 16],
    t: &TraceId,
    s: &SpanId,
    provisional: bool,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO span_keys (key, trace_id, span_id, provisional) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(key) DO UPDATE SET trace_id = excluded.trace_id, span_id = excluded.span_id,
            provisional = excluded.provisional",
    )?
    .execute(params![&key[..], &t.0[..], &s.0[..], provisional])?;
    Ok(())
}

/// Moves the provisional span `from` to the real ids `to` (merging into `to` when it is
/// already stored), with its keys and linked events; recomputes the trace it left.
fn move_span(
    tx: &Transaction,
    from: (TraceId, SpanId),
    to: (TraceId, SpanId),
    now: i64,
) -> rusqlite::Result<()> {
    let Some(from_id) = span_exists(tx, &from.0, &from.1)? else {
        return Ok(());
    };
    match span_exists(tx, &to.0, &to.1)? {
        Some(to_id) => {
            tx.execute(
                &format!(
                    "UPDATE spans AS t SET {} FROM (SELECT * FROM spans WHERE id = ?1) AS p WHERE t.id = ?2",
                    merge_assignments("t", "p")
                ),
                params![from_id, to_id],
            )?;
            tx.execute("DELETE FROM spans WHERE id = ?1", [from_id])?;
            fix_latency(tx, &to.0, &to.1)?;
        }
        None => {
            // Its parent was made up too; the real pieces bring the real one.
            tx.execute(
                "UPDATE spans SET trace_id = ?1, span_id = ?2, parent_span_id = NULL WHERE id = ?3",
                params![&to.0.0[..], &to.1.0[..], from_id],
            )?;
        }
    }
    tx.execute(
        "UPDATE events SET trace_id = ?1, span_id = ?2 WHERE trace_id = ?3 AND span_id = ?4",
        params![&to.0.0[..], &to.1.0[..], &from.0.0[..], &from.1.0[..]],
    )?;
    tx.execute(
        "UPDATE span_keys SET trace_id = ?1, span_id = ?2, provisional = 0
         WHERE trace_id = ?3 AND span_id = ?4",
        params![&to.0.0[..], &to.1.0[..], &from.0.0[..], &from.1.0[..]],
    )?;
    if from.0 != to.0 {
        recompute_trace(tx, &from.0, None, now)?;
    }
    Ok(())
}

fn fix_latency(tx: &Transaction, t: &TraceId, s: &SpanId) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE spans SET latency_ms = CASE WHEN end_ns IS NULL THEN NULL
            ELSE (end_ns - start_ns) / 1e6 END
         WHERE trace_id = ?1 AND span_id = ?2",
    )?
    .execute(params![&t.0[..], &s.0[..]])?;
    Ok(())
}

/// Columns a row is read back with for the write hooks (see `MergedSpan`).
const ROW_COLUMNS: &str = "trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns,
    status, status_message, agent_id, session_id, user_id, operation, provider, request_model,
    response_model, input_tokens, output_tokens, total_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, cost_usd, cost_source, cost_computed_usd, tool_name,
    tool_call_id, error_type, unpack(attributes)";

fn span_of_row(r: &Row, source: &'static str) -> rusqlite::Result<Option<Span>> {
    let (Some(t), Some(s)) = (
        TraceId::from_slice(&r.get::<_, Vec<u8>>(0)?),
        SpanId::from_slice(&r.get::<_, Vec<u8>>(1)?),
    ) else {
        return Ok(None);
    };
    let kind: String = r.get(4)?;
    let mut sp = Span::new(
        t,
        s,
        r.get(3)?,
        SpanKind::parse(&kind).unwrap_or(SpanKind::Other),
        r.get(5)?,
    );
    sp.parent_span_id = r
        .get::<_, Option<Vec<u8>>>(2)?
        .and_then(|p| SpanId::from_slice(&p));
    sp.end_ns = r.get(6)?;
    sp.status = StatusCode::parse(&r.get::<_, String>(7)?).unwrap_or(StatusCode::Unset);
    sp.status_message = r.get(8)?;
    sp.agent_id = r.get(9)?;
    sp.session_id = r.get(10)?;
    sp.user_id = r.get(11)?;
    sp.operation = r.get(12)?;
    sp.provider = r.get(13)?;
    sp.request_model = r.get(14)?;
    sp.response_model = r.get(15)?;
    sp.input_tokens = r.get(16)?;
    sp.output_tokens = r.get(17)?;
    sp.total_tokens = r.get(18)?;
    sp.cache_read_tokens = r.get(19)?;
    sp.cache_write_tokens = r.get(20)?;
    sp.reasoning_tokens = r.get(21)?;
    sp.cost_usd = r.get(22)?;
    sp.cost_source = r
        .get::<_, Option<String>>(23)?
        .and_then(|c| CostSource::parse(&c));
    sp.cost_computed_usd = r.get(24)?;
    sp.tool_name = r.get(25)?;
    sp.tool_call_id = r.get(26)?;
    sp.error_type = r.get(27)?;
    if let Some(a) = r.get::<_, Option<String>>(28)?
        && let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&a)
    {
        sp.attributes = m;
    }
    sp.source = source;
    Ok(Some(sp))
}

/// A stored span as the hooks see it; `source` names the piece that touched it.
fn load_row(
    tx: &Transaction,
    id: &(TraceId, SpanId),
    source: &'static str,
) -> rusqlite::Result<Option<Span>> {
    tx.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM spans WHERE trace_id = ?1 AND span_id = ?2"
    ))?
    .query_row(params![&id.0.0[..], &id.1.0[..]], |r| {
        span_of_row(r, source)
    })
    .optional()
    .map(Option::flatten)
}

/// Writes one piece of a span and says what it changed. An `expired` piece (older than
/// the age-retention window) that joins no stored row is not written: `Expired`.
pub fn merge_span(
    tx: &Transaction,
    s: &Span,
    received_ns: i64,
    expired: bool,
) -> rusqlite::Result<WriteEffect> {
    let spec = s.merge.clone().unwrap_or_default();
    let own = (s.trace_id, s.span_id);
    let mut target = own;
    let mut record_key = false;
    let mut move_from = None;
    // The natural key as stored: its digest, taken once for the lookup and the record.
    let key = spec.key.as_deref().map(|k| key_digest(k.as_bytes()));
    if let Some(key) = &key {
        match lookup_key(tx, key)? {
            None => record_key = true,
            Some((t, sp, _)) if (t, sp) == own => {}
            Some((t, sp, stored_provisional)) => {
                if spec.provisional {
                    target = (t, sp);
                } else if stored_provisional {
                    move_from = Some((t, sp));
                    record_key = true;
                }
                // Two spans with real ids claiming one key stay two spans.
            }
        }
    }
    // The rows this piece changes, as they are now.
    let mut before = Vec::new();
    if let Some(from) = &move_from {
        before.extend(load_row(tx, from, s.source)?);
    }
    before.extend(load_row(tx, &target, s.source)?);
    if expired && before.is_empty() {
        return Ok(WriteEffect::Expired);
    }
    if let Some(from) = move_from {
        move_span(tx, from, own, received_ns)?;
    }
    let folded;
    let piece = if target == own {
        s
    } else {
        // A provisional piece joining a real span: its made-up parent does not apply there.
        let mut f = s.clone();
        f.trace_id = target.0;
        f.span_id = target.1;
        f.parent_span_id = None;
        folded = f;
        &folded
    };
    let on_conflict = format!("DO UPDATE SET {}", merge_assignments("spans", "excluded"));
    write_span_row(tx, piece, received_ns, &on_conflict)?;
    fix_latency(tx, &target.0, &target.1)?;
    if record_key && let Some(key) = &key {
        set_key(tx, key, &target.0, &target.1, spec.provisional)?;
    }
    recompute_trace(tx, &target.0, s.parent_trace_id.as_ref(), received_ns)?;
    if before.is_empty() {
        // A new row: it holds what the piece says.
        return Ok(WriteEffect::Inserted);
    }
    let Some(after) = load_row(tx, &target, s.source)? else {
        return Ok(WriteEffect::Duplicate);
    };
    Ok(match before.as_slice() {
        [only] if *only == after => WriteEffect::Duplicate,
        _ => WriteEffect::Merged(Box::new(MergedSpan { before, after })),
    })
}

/// Rebuilds a trace's summary row from its spans (deletes it when none is left).
pub fn recompute_trace(
    tx: &Transaction,
    trace: &TraceId,
    parent_trace: Option<&TraceId>,
    now: i64,
) -> rusqlite::Result<()> {
    let t = &trace.0[..];
    let spans: i64 = tx
        .prepare_cached("SELECT count(*) FROM spans WHERE trace_id = ?1")?
        .query_row([t], |r| r.get(0))?;
    if spans == 0 {
        tx.prepare_cached("DELETE FROM traces WHERE trace_id = ?1")?
            .execute([t])?;
        return Ok(());
    }
    // Usage counts only for model calls, as in the incremental path (`write::upsert_trace`).
    tx.prepare_cached(
        "INSERT INTO traces (trace_id, root_span_id, root_name, parent_trace_id, start_ns, end_ns,
            status, span_count, error_count, llm_calls, tool_calls, input_tokens, output_tokens,
            total_tokens, cache_read_tokens, cache_write_tokens, cost_usd, agent_id, session_id,
            user_id, updated_ns)
         SELECT ?1,
            (SELECT span_id FROM spans WHERE trace_id = ?1 AND parent_span_id IS NULL
                ORDER BY start_ns, id LIMIT 1),
            COALESCE((SELECT name FROM spans WHERE trace_id = ?1 AND parent_span_id IS NULL
                ORDER BY start_ns, id LIMIT 1),
                (SELECT name FROM spans WHERE trace_id = ?1 ORDER BY start_ns, id LIMIT 1)),
            ?2,
            MIN(start_ns), MAX(end_ns),
            CASE WHEN SUM(status = 'error') > 0 THEN 'error'
                 WHEN SUM(status = 'ok') > 0 THEN 'ok' ELSE 'unset' END,
            COUNT(*), SUM(status = 'error'), SUM(kind = 'llm_call'), SUM(kind = 'tool_call'),
            TOTAL(CASE WHEN kind IN ('llm_call', 'embedding') THEN COALESCE(input_tokens, 0) END),
            TOTAL(CASE WHEN kind IN ('llm_call', 'embedding') THEN COALESCE(output_tokens, 0) END),
            TOTAL(CASE WHEN kind IN ('llm_call', 'embedding') THEN COALESCE(total_tokens,
                COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)) END),
            TOTAL(CASE WHEN kind IN ('llm_call', 'embedding') THEN COALESCE(cache_read_tokens, 0) END),
            TOTAL(CASE WHEN kind IN ('llm_call', 'embedding') THEN COALESCE(cache_write_tokens, 0) END),
            SUM(CASE WHEN kind IN ('llm_call', 'embedding') THEN cost_usd END),
            (SELECT agent_id FROM spans WHERE trace_id = ?1 AND agent_id IS NOT NULL ORDER BY start_ns LIMIT 1),
            (SELECT session_id FROM spans WHERE trace_id = ?1 AND session_id IS NOT NULL ORDER BY start_ns LIMIT 1),
            (SELECT user_id FROM spans WHERE trace_id = ?1 AND user_id IS NOT NULL ORDER BY start_ns LIMIT 1),
            ?3
         FROM spans WHERE trace_id = ?1
         ON CONFLICT(trace_id) DO UPDATE SET
            root_span_id = excluded.root_span_id,
            root_name = excluded.root_name,
            parent_trace_id = COALESCE(traces.parent_trace_id, excluded.parent_trace_id),
            start_ns = excluded.start_ns,
            end_ns = excluded.end_ns,
            status = excluded.status,
            span_count = excluded.span_count,
            error_count = excluded.error_count,
            llm_calls = excluded.llm_calls,
            tool_calls = excluded.tool_calls,
            input_tokens = excluded.input_tokens,
            output_tokens = excluded.output_tokens,
            total_tokens = excluded.total_tokens,
            cache_read_tokens = excluded.cache_read_tokens,
            cache_write_tokens = excluded.cache_write_tokens,
            cost_usd = excluded.cost_usd,
            agent_id = COALESCE(traces.agent_id, excluded.agent_id),
            session_id = COALESCE(traces.session_id, excluded.session_id),
            user_id = COALESCE(traces.user_id, excluded.user_id),
            updated_ns = excluded.updated_ns",
    )?
    .execute(params![t, parent_trace.map(|p| &p.0[..]), now])?;
    Ok(())
}

/// Forgets keys whose span is gone (deleted by retention). Returns how many.
pub fn prune_keys(conn: &rusqlite::Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM span_keys WHERE NOT EXISTS (SELECT 1 FROM spans s
            WHERE s.trace_id = span_keys.trace_id AND s.span_id = span_keys.span_id)",
        [],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CostSource, Record, SpanKind, SpanMerge, StatusCode};
    use crate::store::write::write_records;
    use rusqlite::Connection;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        c
    }

    fn piece(t: u8, s: u8, start: i64) -> Span {
        let mut sp = Span::new(
            TraceId([t; 16]),
            SpanId([s; 8]),
            "chat m".into(),
            SpanKind::LlmCall,
            start,
        );
        sp.merge = Some(SpanMerge::default());
        sp
    }

    fn write(c: &mut Connection, spans: Vec<Span>) -> Vec<bool> {
        let tx = c.transaction().unwrap();
        let recs: Vec<Record> = spans
            .into_iter()
            .map(|s| Record::Span(Box::new(s)))
            .collect();
        let out = write_records(&tx, &recs, 1).unwrap();
        tx.commit().unwrap();
        out.effects.iter().map(WriteEffect::is_inserted).collect()
    }

    fn trace_totals(c: &Connection, t: u8) -> (i64, i64, i64, Option<f64>, String) {
        c.query_row(
            "SELECT span_count, input_tokens, llm_calls, cost_usd, status FROM traces WHERE trace_id = ?1",
            [&[t; 16][..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
    }

    fn write_expiring(c: &mut Connection, recs: Vec<Record>, cutoff: i64) -> Vec<WriteEffect> {
        let tx = c.transaction().unwrap();
        let out = crate::store::write::write_records_expiring(&tx, &recs, 1, Some(cutoff)).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            out.expired as usize,
            out.effects
                .iter()
                .filter(|e| **e == WriteEffect::Expired)
                .count()
        );
        out.effects
    }

    /// The in-memory merge (PostgreSQL's) gives the row SQLite's merge stores, for
    /// pieces that disagree on every rule: first known values, start, end, status,
    /// reported and computed costs, attributes.
    #[test]
    fn merge_into_agrees_with_sqlites_merge() {
        let base = |i: u8, start: i64| {
            let mut p = piece(200 + i, i, start);
            p.source = "openclaw";
            p
        };
        let mut cases: Vec<(Span, Span)> = Vec::new();
        // Tokens and model from the second; the first's provider stays; start earlier.
        let (mut a, mut b) = (base(1, 1000), base(1, 900));
        a.provider = Some("openai".into());
        a.end_ns = Some(1500);
        b.provider = Some("other".into());
        b.request_model = Some("gpt-4o".into());
        b.input_tokens = Some(10);
        b.output_tokens = Some(2);
        b.end_ns = Some(1400);
        b.status = StatusCode::Ok;
        a.attributes.insert("k".into(), serde_json::json!("first"));
        b.attributes.insert("k".into(), serde_json::json!("second"));
        b.attributes.insert("only_b".into(), serde_json::json!(1));
        cases.push((a, b));
        // An error wins; a reported cost wins over a computed one, which is kept beside.
        let (mut a, mut b) = (base(2, 1000), base(2, 1000));
        a.status = StatusCode::Ok;
        a.cost_usd = Some(0.5);
        a.cost_source = Some(CostSource::Computed);
        b.status = StatusCode::Error;
        b.error_type = Some("rate_limited".into());
        b.cost_usd = Some(0.4);
        b.cost_source = Some(CostSource::Reported);
        b.end_ns = Some(2000);
        cases.push((a, b));
        // The first known cost stays when neither is reported.
        let (mut a, mut b) = (base(3, 1000), base(3, 1100));
        a.cost_usd = Some(0.1);
        a.cost_source = Some(CostSource::Computed);
        b.cost_usd = Some(0.2);
        b.cost_source = Some(CostSource::Computed);
        b.parent_span_id = Some(SpanId([9; 8]));
        b.tool_name = Some("ls".into());
        cases.push((a, b));
        for (i, (a, b)) in cases.into_iter().enumerate() {
            let mut c = db();
            write(&mut c, vec![a.clone(), b.clone()]);
            let tx = c.transaction().unwrap();
            let stored = load_row(&tx, &(a.trace_id, a.span_id), "openclaw")
                .unwrap()
                .unwrap();
            let mut merged = a.clone();
            merge_into(&mut merged, &b);
            // What the read-back row leaves out.
            merged.merge = None;
            merged.input = None;
            merged.output = None;
            merged.finish_reasons.clear();
            merged.resource = stored.resource.clone();
            merged.parent_trace_id = stored.parent_trace_id;
            assert_eq!(merged, stored, "case {i}");
        }
    }

    fn count(c: &Connection, sql: &str) -> i64 {
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn records_older_than_the_cutoff_are_reported_expired_and_not_stored() {
        use crate::model::{Event, EventType, MetricPoint};
        let mut c = db();
        let mut old = piece(1, 1, 500);
        old.merge = None;
        let mut new = piece(2, 1, 1_500);
        new.merge = None;
        let old_event = Event::new(EventType::Error, "boom".into(), 999);
        let new_event = Event::new(EventType::Error, "boom".into(), 1_000);
        let old_point = MetricPoint::gauge("m", "1", 10, 1.0);
        let effects = write_expiring(
            &mut c,
            vec![
                Record::Span(Box::new(old.clone())),
                Record::Span(Box::new(new)),
                Record::Event(Box::new(old_event)),
                Record::Event(Box::new(new_event)),
                Record::Metric(Box::new(old_point)),
            ],
            1_000,
        );
        use WriteEffect::{Expired, Inserted};
        assert_eq!(effects, vec![Expired, Inserted, Expired, Inserted, Expired]);
        assert_eq!(count(&c, "SELECT count(*) FROM spans"), 1);
        assert_eq!(count(&c, "SELECT count(*) FROM traces"), 1);
        assert_eq!(count(&c, "SELECT count(*) FROM events"), 1);
        assert_eq!(count(&c, "SELECT count(*) FROM metric_points"), 0);
        // An expired span counts as a new row for the hooks: what it says is added.
        let rec = Record::Span(Box::new(old));
        let change = Expired.span_change(&rec).unwrap();
        assert!(change.is_new());
    }

    #[test]
    fn an_old_piece_merges_into_a_stored_row_and_is_expired_when_it_joins_none() {
        let mut c = db();
        let mut start = piece(1, 1, 900);
        start.input_tokens = Some(10);
        assert_eq!(write(&mut c, vec![start]), vec![true]);
        // Later, with the cutoff past the call's start: the end piece still joins it.
        let mut end = piece(1, 1, 900);
        end.end_ns = Some(1_200);
        end.output_tokens = Some(5);
        let effects = write_expiring(&mut c, vec![Record::Span(Box::new(end))], 1_000);
        assert!(matches!(effects[0], WriteEffect::Merged(_)), "{effects:?}");
        assert_eq!(count(&c, "SELECT output_tokens FROM spans"), 5);
        // A piece of another old call, with no stored row: not written.
        let lone = piece(3, 3, 900);
        let effects = write_expiring(&mut c, vec![Record::Span(Box::new(lone))], 1_000);
        assert_eq!(effects, vec![WriteEffect::Expired]);
        assert_eq!(count(&c, "SELECT count(*) FROM spans"), 1);
    }

    #[test]
    fn pieces_of_one_span_merge_without_double_counting() {
        let mut c = db();
        let mut start = piece(1, 1, 1_000);
        start.provider = Some("fake".into());
        start.attributes.insert("a".into(), 1.into());
        let mut end = piece(1, 1, 900);
        end.end_ns = Some(5_000);
        end.status = StatusCode::Ok;
        end.attributes.insert("b".into(), 2.into());
        let mut usage = piece(1, 1, 1_000);
        usage.input_tokens = Some(200);
        usage.cost_usd = Some(0.5);
        usage.cost_source = Some(CostSource::Reported);
        let inserted = write(&mut c, vec![start, end, usage.clone()]);
        assert_eq!(inserted, vec![true, false, false]);
        // The same usage again (a retried delivery) changes nothing.
        write(&mut c, vec![usage]);
        let (n, tokens, calls, cost, status) = trace_totals(&c, 1);
        assert_eq!((n, tokens, calls, cost), (1, 200, 1, Some(0.5)));
        assert_eq!(status, "ok");
        let (start_ns, end_ns, lat, prov, attrs): (i64, i64, f64, String, String) = c
            .query_row(
                "SELECT start_ns, end_ns, latency_ms, provider, attributes FROM spans",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!((start_ns, end_ns), (900, 5_000));
        assert!((lat - 0.0041).abs() < 1e-9);
        assert_eq!(prov, "fake");
        let attrs: serde_json::Value = serde_json::from_str(&attrs).unwrap();
        assert_eq!(attrs, serde_json::json!({"a": 1, "b": 2}));
    }

    #[test]
    fn provisional_piece_joins_the_real_span_by_key() {
        let mut c = db();
        let mut real = piece(1, 1, 1_000);
        real.merge = Some(SpanMerge {
            key: Some("k1".into()),
            provisional: false,
        });
        real.input_tokens = Some(10);
        real.cost_usd = Some(0.1);
        let mut prov = piece(9, 9, 1_001);
        prov.parent_span_id = Some(SpanId([7; 8]));
        prov.merge = Some(SpanMerge {
            key: Some("k1".into()),
            provisional: true,
        });
        prov.input_tokens = Some(10);
        prov.cost_usd = Some(0.1);
        prov.response_model = Some("m-1".into());
        assert_eq!(write(&mut c, vec![real, prov.clone()]), vec![true, false]);
        write(&mut c, vec![prov]);
        assert_eq!(trace_totals(&c, 1).1, 10);
        let n: i64 = c
            .query_row("SELECT count(*) FROM traces", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "the provisional trace never appears");
        let (parent, model): (Option<Vec<u8>>, String) = c
            .query_row(
                "SELECT parent_span_id, response_model FROM spans",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(parent, None);
        assert_eq!(model, "m-1");
    }

    #[test]
    fn keys_stored_as_text_before_schema_14_still_join_their_span() {
        let mut c = db();
        let mut real = piece(1, 1, 1_000);
        real.merge = Some(SpanMerge {
            key: Some("openclaw-tool:run-1:call_1".into()),
            provisional: false,
        });
        write(&mut c, vec![real]);
        // Back to schema 13's table, holding the key's text.
        c.execute_batch(
            "DROP TABLE span_keys;
             CREATE TABLE span_keys (key TEXT PRIMARY KEY, trace_id BLOB NOT NULL,
                span_id BLOB NOT NULL, provisional INTEGER NOT NULL) WITHOUT ROWID;
             CREATE INDEX span_keys_span ON span_keys(trace_id, span_id);
             INSERT INTO span_keys SELECT 'openclaw-tool:run-1:call_1', trace_id, span_id, 0
                FROM spans;
             DROP TABLE span_changes;
             PRAGMA user_version = 13;",
        )
        .unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        let (kind, len): (String, i64) = c
            .query_row("SELECT typeof(key), length(key) FROM span_keys", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((kind.as_str(), len), ("blob", 16));
        // A provisional piece with the same key joins the stored span.
        let mut prov = piece(9, 9, 1_001);
        prov.merge = Some(SpanMerge {
            key: Some("openclaw-tool:run-1:call_1".into()),
            provisional: true,
        });
        prov.response_model = Some("m-2".into());
        assert_eq!(write(&mut c, vec![prov]), vec![false]);
        let (n, model): (i64, String) = c
            .query_row("SELECT count(*), max(response_model) FROM spans", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, model.as_str()), (1, "m-2"));
    }

    #[test]
    fn stored_provisional_span_moves_to_real_ids() {
        let mut c = db();
        let mut prov = piece(9, 9, 1_000);
        prov.merge = Some(SpanMerge {
            key: Some("k1".into()),
            provisional: true,
        });
        prov.input_tokens = Some(10);
        prov.cost_usd = Some(0.25);
        let mut other = piece(9, 8, 2_000);
        other.input_tokens = Some(5);
        write(&mut c, vec![prov.clone(), other]);
        {
            let tx = c.transaction().unwrap();
            let mut e =
                crate::model::Event::new(crate::model::EventType::Error, "boom".into(), 1_000);
            e.trace_id = Some(TraceId([9; 16]));
            e.span_id = Some(SpanId([9; 8]));
            write_records(&tx, &[Record::Event(Box::new(e))], 1).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(trace_totals(&c, 9).1, 15);
        let mut real = piece(1, 1, 1_001);
        real.parent_span_id = Some(SpanId([2; 8]));
        real.merge = Some(SpanMerge {
            key: Some("k1".into()),
            provisional: false,
        });
        real.input_tokens = Some(10);
        real.cost_usd = Some(0.25);
        write(&mut c, vec![real]);
        assert_eq!(trace_totals(&c, 1).1, 10);
        assert_eq!(trace_totals(&c, 1).3, Some(0.25));
        assert_eq!(
            trace_totals(&c, 9).1,
            5,
            "the old trace lost the moved call"
        );
        let ev_trace: Vec<u8> = c
            .query_row("SELECT trace_id FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ev_trace, vec![1; 16], "events follow the span");
        // A late re-read of the provisional piece folds into the real span.
        write(&mut c, vec![prov]);
        assert_eq!(trace_totals(&c, 1).1, 10);
        let total: i64 = c
            .query_row("SELECT sum(input_tokens) FROM spans", [], |r| r.get(0))
            .unwrap();
        assert_eq!(total, 15);
    }

    fn effects(c: &mut Connection, spans: Vec<Span>) -> Vec<WriteEffect> {
        let tx = c.transaction().unwrap();
        let recs: Vec<Record> = spans
            .into_iter()
            .map(|s| Record::Span(Box::new(s)))
            .collect();
        let out = write_records(&tx, &recs, 1).unwrap();
        tx.commit().unwrap();
        out.effects
    }

    fn merged(e: &WriteEffect) -> &MergedSpan {
        match e {
            WriteEffect::Merged(m) => m,
            other => panic!("expected a merge, got {other:?}"),
        }
    }

    #[test]
    fn each_piece_reports_the_row_before_and_after() {
        let mut c = db();
        let start = piece(1, 1, 1_000);
        let mut end = piece(1, 1, 1_000);
        end.end_ns = Some(3_000);
        end.status = StatusCode::Ok;
        let mut usage = piece(1, 1, 1_000);
        usage.provider = Some("openai".into());
        usage.input_tokens = Some(40);
        usage.cost_usd = Some(0.5);
        let e = effects(&mut c, vec![start, end, usage.clone()]);
        assert_eq!(e[0], WriteEffect::Inserted);
        let m = merged(&e[1]);
        assert_eq!(m.before.len(), 1);
        assert_eq!((m.before[0].end_ns, m.after.end_ns), (None, Some(3_000)));
        let m = merged(&e[2]);
        assert_eq!(m.before[0].input_tokens, None);
        assert_eq!(m.after.input_tokens, Some(40));
        assert_eq!(m.after.provider.as_deref(), Some("openai"));
        assert_eq!(m.after.cost_usd, Some(0.5));
        assert_eq!(m.after.status, StatusCode::Ok);
        // A re-delivery changes nothing.
        assert_eq!(effects(&mut c, vec![usage]), vec![WriteEffect::Duplicate]);
    }

    #[test]
    fn a_moved_provisional_span_is_reported_as_replaced() {
        let mut c = db();
        let mut prov = piece(9, 9, 1_000);
        prov.merge = Some(SpanMerge {
            key: Some("k".into()),
            provisional: true,
        });
        prov.input_tokens = Some(10);
        let start = piece(1, 1, 1_000);
        let mut real = piece(1, 1, 1_000);
        real.merge = Some(SpanMerge {
            key: Some("k".into()),
            provisional: false,
        });
        real.end_ns = Some(2_000);
        let e = effects(&mut c, vec![prov, start, real]);
        assert_eq!(e[..2], [WriteEffect::Inserted, WriteEffect::Inserted]);
        let m = merged(&e[2]);
        let ids: Vec<_> = m.before.iter().map(|s| s.trace_id).collect();
        assert_eq!(ids, vec![TraceId([9; 16]), TraceId([1; 16])]);
        assert_eq!(m.after.trace_id, TraceId([1; 16]));
        assert_eq!(m.after.input_tokens, Some(10));
        assert_eq!(m.after.end_ns, Some(2_000));
    }

    #[test]
    fn a_reported_cost_wins_over_a_computed_one() {
        let mut c = db();
        let mut computed = piece(1, 1, 1_000);
        computed.cost_usd = Some(0.3);
        computed.cost_source = Some(CostSource::Computed);
        let mut reported = piece(1, 1, 1_000);
        reported.cost_usd = Some(0.2);
        reported.cost_source = Some(CostSource::Reported);
        let mut later = piece(1, 1, 1_000);
        later.cost_usd = Some(0.9);
        later.cost_source = Some(CostSource::Computed);
        let row = |c: &Connection| -> (f64, String, Option<f64>) {
            c.query_row(
                "SELECT cost_usd, cost_source, cost_computed_usd FROM spans",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
        };
        effects(&mut c, vec![computed]);
        let e = effects(&mut c, vec![reported]);
        assert_eq!(merged(&e[0]).after.cost_usd, Some(0.2));
        assert_eq!(row(&c), (0.2, "reported".into(), Some(0.3)));
        assert_eq!(trace_totals(&c, 1).3, Some(0.2));
        // A computed figure arriving after a reported one changes nothing.
        assert_eq!(effects(&mut c, vec![later]), vec![WriteEffect::Duplicate]);
        assert_eq!(row(&c), (0.2, "reported".into(), Some(0.3)));
        // The first of two reported costs stays; equal figures keep no computed one.
        let mut c = db();
        let mut a = piece(2, 2, 1);
        a.cost_usd = Some(0.1);
        a.cost_source = Some(CostSource::Computed);
        let mut b = piece(2, 2, 1);
        b.cost_usd = Some(0.1);
        b.cost_source = Some(CostSource::Reported);
        effects(&mut c, vec![a, b]);
        assert_eq!(row(&c), (0.1, "reported".into(), None));
    }

    #[test]
    fn keys_of_deleted_spans_are_pruned() {
        let mut c = db();
        let mut p = piece(1, 1, 1);
        p.merge = Some(SpanMerge {
            key: Some("k".into()),
            provisional: false,
        });
        write(&mut c, vec![p]);
        assert_eq!(prune_keys(&c).unwrap(), 0);
        c.execute("DELETE FROM spans", []).unwrap();
        assert_eq!(prune_keys(&c).unwrap(), 1);
    }

    #[test]
    fn moving_the_last_span_deletes_the_empty_trace() {
        let mut c = db();
        let mut prov = piece(9, 9, 1_000);
        prov.merge = Some(SpanMerge {
            key: Some("k".into()),
            provisional: true,
        });
        write(&mut c, vec![prov]);
        let mut real = piece(1, 1, 1_000);
        real.merge = Some(SpanMerge {
            key: Some("k".into()),
            provisional: false,
        });
        write(&mut c, vec![real]);
        let traces: i64 = c
            .query_row("SELECT count(*) FROM traces", [], |r| r.get(0))
            .unwrap();
        assert_eq!(traces, 1);
    }

    #[test]
    fn plain_and_merged_spans_share_correct_totals() {
        let mut c = db();
        let mut root = Span::new(
            TraceId([1; 16]),
            SpanId([5; 8]),
            "invoke_agent main".into(),
            SpanKind::AgentRun,
            500,
        );
        root.end_ns = Some(9_000);
        let mut llm = piece(1, 1, 1_000);
        llm.parent_span_id = Some(SpanId([5; 8]));
        llm.input_tokens = Some(7);
        llm.status = StatusCode::Error;
        write(&mut c, vec![root, llm]);
        let (n, tokens, calls, _, status) = trace_totals(&c, 1);
        assert_eq!((n, tokens, calls, status.as_str()), (2, 7, 1, "error"));
        let (root_id, name, errors): (Vec<u8>, String, i64) = c
            .query_row(
                "SELECT root_span_id, root_name, error_count FROM traces",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(root_id, vec![5; 8]);
        assert_eq!(name, "invoke_agent main");
        assert_eq!(errors, 1);
    }
}
