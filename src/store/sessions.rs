//! Sessions: the runs (traces) that share a `session_id`, summed, and one session as
//! the conversation it was (turns of user message, answers and tool calls).

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};
use serde::Serialize;

use super::StoreError;
use super::query::{Page, TraceSummary, trace_row};
use crate::model::TraceId;
use crate::util::hex;

/// Turns per page of a session, by default and at most.
pub const DEFAULT_TURNS: usize = 50;
pub const MAX_TURNS: usize = 200;
/// Messages per turn, at most (a 2,000-span run is summarised, not dumped).
pub const MAX_MESSAGES: usize = 200;
/// Characters of a message's text (and of tool arguments and results) kept.
pub const MAX_TEXT_CHARS: i64 = 4000;

/// Sessions whose latest run started in the range (and of the agent).
pub use super::query::AgentRange as SessionFilter;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SessionRow {
    pub session_id: String,
    /// The agent of the session's first run that names one.
    pub agent_id: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub runs: i64,
    pub llm_calls: i64,
    pub tool_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    /// Sum of the runs' known costs; `null` when none is known.
    pub cost_usd: Option<f64>,
    /// Spans that failed.
    pub errors: i64,
}

use crate::util::time::ms_of as ms;

/// One session's sums, `None` when no run has this session id.
pub fn session_row(conn: &Connection, id: &str) -> Result<Option<SessionRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT count(*), min(start_ns), max(COALESCE(end_ns, start_ns)), sum(llm_calls),
            sum(tool_calls), sum(input_tokens), sum(output_tokens), sum(total_tokens),
            sum(cost_usd), sum(error_count),
            (SELECT agent_id FROM traces WHERE session_id = ?1 AND agent_id IS NOT NULL
             ORDER BY start_ns LIMIT 1)
         FROM traces WHERE session_id = ?1",
    )?;
    let row = stmt.query_row([id], |r| {
        let runs: i64 = r.get(0)?;
        if runs == 0 {
            return Ok(None);
        }
        Ok(Some(SessionRow {
            session_id: id.to_string(),
            agent_id: r.get(10)?,
            start_ms: ms(r.get(1)?),
            end_ms: ms(r.get(2)?),
            runs,
            llm_calls: r.get(3)?,
            tool_calls: r.get(4)?,
            input_tokens: r.get(5)?,
            output_tokens: r.get(6)?,
            total_tokens: r.get(7)?,
            cost_usd: r.get(8)?,
            errors: r.get(9)?,
        }))
    })?;
    Ok(row)
}

fn bad_cursor() -> StoreError {
    StoreError::BadRequest("cursor: not a cursor this API returned".into())
}

/// Runs a session listing looks at, at most, for one page.
pub const MAX_SCANNED_RUNS: usize = 200_000;

/// A page of sessions chosen from the runs walked newest first (either store's walk):
/// the first run met of a session is its latest unless the session has a later run
/// outside the range, so a page costs about as many runs as its sessions hold.
pub struct SessionWalk {
    /// The cursor's position: the latest run start and id of the last session shown.
    after: Option<(i64, String)>,
    limit: usize,
    seen: std::collections::HashSet<String>,
    /// Each session taken, with the start of its latest run (its cursor position).
    found: Vec<(String, i64)>,
    scanned: usize,
}

impl SessionWalk {
    pub fn new(cursor: Option<&str>, limit: usize) -> Result<SessionWalk, StoreError> {
        let after = match cursor {
            None => None,
            Some(c) => {
                // "<latest run start ns>.<session id>" (the id may hold dots: split at the first).
                let (t, id) = c.split_once('.').ok_or_else(bad_cursor)?;
                Some((t.parse::<i64>().map_err(|_| bad_cursor())?, id.to_string()))
            }
        };
        Ok(SessionWalk {
            after,
            limit,
            seen: Default::default(),
            found: Vec::new(),
            scanned: 0,
        })
    }

    /// Runs that started after this belong to earlier pages.
    pub fn starts_at_most(&self) -> Option<i64> {
        self.after.as_ref().map(|(t, _)| *t)
    }

    /// The page and one more are found, or the walk went as far as it may.
    pub fn done(&self) -> bool {
        self.found.len() > self.limit || self.scanned >= MAX_SCANNED_RUNS
    }

    /// A run met on the walk; true when it is the first of its session (whose latest
    /// run the caller then looks up, and [`offer`](Self::offer)s).
    pub fn meet(&mut self, session: &str) -> bool {
        self.scanned += 1;
        self.seen.insert(session.to_string())
    }

    /// A session first met at a run started at `start`, whose latest run (of the
    /// agent) started at `latest`.
    pub fn offer(&mut self, session: String, start: i64, latest: Option<i64>) {
        if self.found.len() > self.limit {
            return;
        }
        // Not its latest run: the session is newer than the range, or on an earlier page.
        if latest != Some(start) {
            return;
        }
        if let Some((t, cid)) = &self.after
            && !(start < *t || (start == *t && session.as_str() < cid.as_str()))
        {
            return;
        }
        self.found.push((session, start));
    }

    /// The page's sessions in order, and the cursor to the next page.
    pub fn finish(mut self) -> (Vec<String>, Option<String>) {
        let more = self.found.len() > self.limit;
        self.found.truncate(self.limit);
        let next_cursor = match self.found.last() {
            Some((id, start)) if more => Some(format!("{start}.{id}")),
            _ => None,
        };
        (
            self.found.into_iter().map(|(id, _)| id).collect(),
            next_cursor,
        )
    }
}

/// Sessions, the one whose latest run started last first. Walks the runs newest
/// first (an index); see [`SessionWalk`].
pub fn list_sessions(
    conn: &Connection,
    f: &SessionFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<SessionRow>, StoreError> {
    let mut walk = SessionWalk::new(cursor, limit)?;
    let mut sql =
        String::from("SELECT session_id, start_ns FROM traces WHERE session_id IS NOT NULL");
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(a) = &f.agent_id {
        sql.push_str(" AND agent_id = ?");
        args.push(SqlValue::Text(a.clone()));
    }
    if let Some(from) = f.from_ns {
        sql.push_str(" AND start_ns >= ?");
        args.push(SqlValue::Integer(from));
    }
    if let Some(to) = f.to_ns {
        sql.push_str(" AND start_ns < ?");
        args.push(SqlValue::Integer(to));
    }
    if let Some(t) = walk.starts_at_most() {
        sql.push_str(" AND start_ns <= ?");
        args.push(SqlValue::Integer(t));
    }
    sql.push_str(" ORDER BY start_ns DESC, session_id DESC");
    let mut latest_of = conn.prepare_cached(
        "SELECT max(start_ns) FROM traces WHERE session_id = ?1
         AND (?2 IS NULL OR agent_id = ?2)",
    )?;
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    while let Some(r) = rows.next()? {
        if walk.done() {
            break;
        }
        let id: String = r.get(0)?;
        if walk.meet(&id) {
            let latest: Option<i64> =
                latest_of.query_row(rusqlite::params![id, f.agent_id], |r| r.get(0))?;
            walk.offer(id, r.get(1)?, latest);
        }
    }
    drop(rows);
    let (ids, next_cursor) = walk.finish();
    let mut items = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(row) = session_row(conn, id)? {
            items.push(row);
        }
    }
    Ok(Page { items, next_cursor })
}

/// One message of a turn.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Message {
    /// `user`, `assistant` or `tool`.
    pub role: &'static str,
    pub span_id: String,
    pub time_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The text (or a tool's arguments or result) is shorter than what was said.
    pub text_truncated: bool,
    /// The text's original length in bytes (UTF-8), when there is a text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_length: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    pub status: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Turn {
    pub trace_id: String,
    pub name: Option<String>,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub status: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: Option<f64>,
    pub messages: Vec<Message>,
    /// More spans than `MAX_MESSAGES` made messages: the run view has them all.
    pub messages_truncated: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionDetail {
    pub session: SessionRow,
    pub turns: Vec<Turn>,
    pub next_cursor: Option<String>,
}

/// A text cut to `MAX_TEXT_CHARS`, whether it was cut (here or at capture), and its
/// original length in bytes (UTF-8), as `input_text_len` counts it.
pub(crate) struct CutText {
    text: Option<String>,
    truncated: bool,
    length: Option<i64>,
}

fn cut_text(r: &rusqlite::Row, at: usize) -> rusqlite::Result<CutText> {
    Ok(CutText::new(r.get(at)?, r.get(at + 1)?))
}

impl CutText {
    /// The stored text (unpacked) and its length at capture.
    pub(crate) fn new(mut text: Option<String>, original: Option<i64>) -> CutText {
        let bytes = text.as_ref().map(|t| t.len() as i64);
        let mut cut = false;
        if let Some(t) = &mut text
            && let Some((end, _)) = t.char_indices().nth(MAX_TEXT_CHARS as usize)
        {
            t.truncate(end);
            cut = true;
        }
        let length = bytes.map(|b| original.unwrap_or(b).max(b));
        CutText {
            truncated: cut || length > bytes,
            text,
            length,
        }
    }
}

/// The spans a conversation is made of (agent runs, LLM calls, tool calls, and
/// OpenClaw's run attempts) of one trace.
pub(crate) struct ConvSpan {
    pub span_id: String,
    pub parent: Option<String>,
    pub kind: String,
    /// An OpenClaw run attempt (`openclaw.harness <id>`): its input is the user's prompt
    /// and its output the assistant's texts of the attempt (OpenClaw's model calls carry
    /// no text; its `llm_input`/`llm_output` hooks land on this span).
    pub attempt: bool,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub status: String,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub tool_name: Option<String>,
    pub tool_call_id: Option<String>,
    pub input: CutText,
    pub output: CutText,
}

/// The spans a conversation is made of, as a `WHERE` term (either store's).
pub(crate) const CONVERSATION_SPANS: &str = "(kind IN ('agent_run', 'llm_call', 'tool_call')
    OR (kind = 'other' AND name LIKE 'openclaw.harness %'))";

fn conversation_spans(
    conn: &Connection,
    trace: &TraceId,
) -> Result<(Vec<ConvSpan>, bool), StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT span_id, parent_span_id, kind, start_ns, end_ns, status,
                COALESCE(response_model, request_model), input_tokens, output_tokens, cost_usd,
                tool_name, tool_call_id,
                unpack(input_text), input_text_len, unpack(output_text), output_text_len
                , kind = 'other'
             FROM spans WHERE trace_id = ?1 AND {CONVERSATION_SPANS}
             ORDER BY start_ns, id LIMIT ?2"
    ))?;
    let mut rows: Vec<ConvSpan> = stmt
        .query_map(
            rusqlite::params![&trace.0[..], MAX_MESSAGES as i64 + 2],
            |r| {
                Ok(ConvSpan {
                    span_id: hex::encode(&r.get::<_, Vec<u8>>(0)?),
                    parent: r.get::<_, Option<Vec<u8>>>(1)?.map(|b| hex::encode(&b)),
                    kind: r.get(2)?,
                    start_ns: r.get(3)?,
                    end_ns: r.get(4)?,
                    status: r.get(5)?,
                    model: r.get(6)?,
                    input_tokens: r.get(7)?,
                    output_tokens: r.get(8)?,
                    cost_usd: r.get(9)?,
                    tool_name: r.get(10)?,
                    tool_call_id: r.get(11)?,
                    input: cut_text(r, 12)?,
                    output: cut_text(r, 14)?,
                    attempt: r.get(16)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    let cut = rows.len() > MAX_MESSAGES + 1;
    rows.truncate(MAX_MESSAGES + 1);
    Ok((rows, cut))
}

/// What an OpenClaw attempt's output holds: `assistantTexts`, a JSON array of strings,
/// joined by blank lines (`None` when empty); any other text as it is.
fn assistant_texts(t: &CutText) -> Option<(String, bool, Option<i64>)> {
    let text = t.text.as_deref()?;
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(parts) => {
            let joined = parts
                .into_iter()
                .filter(|p| !p.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n\n");
            (!joined.is_empty()).then(|| {
                let len = joined.len() as i64;
                (joined, false, Some(len))
            })
        }
        Err(_) => Some((text.to_string(), t.truncated, t.length)),
    }
}

/// A run's messages: the user's (the first LLM call's input, else the run's input),
/// each LLM call's answer, each tool call with its arguments and result, in time order.
/// A run with OpenClaw attempts that carry text reads as one exchange per attempt: its
/// prompt, its calls, and its answer on the attempt's last model call.
fn messages_of(root_span: Option<&str>, spans: Vec<ConvSpan>) -> Vec<Message> {
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    // The run's own span: the trace's root, else an agent run without a parent here.
    let root = spans.iter().position(|s| {
        s.kind == "agent_run"
            && (Some(s.span_id.as_str()) == root_span
                || s.parent.as_deref().is_none_or(|p| !ids.contains(p)))
    });
    let first_llm_input = spans
        .iter()
        .position(|s| s.kind == "llm_call" && s.input.text.is_some());
    let attempts_say = spans
        .iter()
        .any(|s| s.attempt && (s.input.text.is_some() || assistant_texts(&s.output).is_some()));
    let attempt_prompts = attempts_say && spans.iter().any(|s| s.attempt && s.input.text.is_some());
    let mut out = Vec::new();
    let user_from = if attempt_prompts {
        None
    } else {
        first_llm_input.or(root.filter(|i| spans[*i].input.text.is_some()))
    };
    let message = |role: &'static str, s: &ConvSpan| Message {
        role,
        span_id: s.span_id.clone(),
        time_ms: ms(s.start_ns),
        model: None,
        text: None,
        text_truncated: false,
        text_length: None,
        tool_name: None,
        tool_call_id: None,
        arguments: None,
        result: None,
        input_tokens: None,
        output_tokens: None,
        cost_usd: None,
        status: s.status.clone(),
    };
    if let Some(i) = user_from {
        let s = &spans[i];
        let mut m = message("user", s);
        m.text = s.input.text.clone();
        m.text_truncated = s.input.truncated;
        m.text_length = s.input.length;
        out.push(m);
    }
    let mut any_answer = spans
        .iter()
        .any(|s| s.kind == "llm_call" && s.output.text.is_some());
    // The attempt whose answer is pending, and where its messages start in `out`.
    let mut pending: Option<(&ConvSpan, usize)> = None;
    let settle = |out: &mut Vec<Message>, pending: Option<(&ConvSpan, usize)>| -> bool {
        let Some((a, from)) = pending else {
            return false;
        };
        let Some((text, truncated, length)) = assistant_texts(&a.output) else {
            return false;
        };
        // Calls with their own text (from the transcript) already said it. Else the
        // attempt's last model call says it, or a message at the attempt's end.
        let said = &mut out[from..];
        if said
            .iter()
            .any(|m| m.role == "assistant" && m.text.is_some())
        {
            return true;
        }
        match said.iter_mut().rev().find(|m| m.role == "assistant") {
            Some(m) => {
                m.text = Some(text);
                m.text_truncated = truncated;
                m.text_length = length;
            }
            None => {
                let mut m = message("assistant", a);
                m.time_ms = ms(a.end_ns.unwrap_or(a.start_ns));
                m.text = Some(text);
                m.text_truncated = truncated;
                m.text_length = length;
                out.push(m);
            }
        }
        true
    };
    for s in &spans {
        if s.attempt {
            if !attempts_say {
                continue;
            }
            any_answer |= settle(&mut out, pending.take());
            if let Some(t) = &s.input.text {
                let mut m = message("user", s);
                m.text = Some(t.clone());
                m.text_truncated = s.input.truncated;
                m.text_length = s.input.length;
                out.push(m);
            }
            pending = Some((s, out.len()));
            continue;
        }
        match s.kind.as_str() {
            "llm_call" => {
                let mut m = message("assistant", s);
                m.model = s.model.clone();
                m.text = s.output.text.clone();
                m.text_truncated = s.output.truncated;
                m.text_length = s.output.length;
                m.input_tokens = s.input_tokens;
                m.output_tokens = s.output_tokens;
                m.cost_usd = s.cost_usd;
                out.push(m);
            }
            "tool_call" => {
                let mut m = message("tool", s);
                m.tool_name = s.tool_name.clone();
                m.tool_call_id = s.tool_call_id.clone();
                m.arguments = s.input.text.clone();
                m.result = s.output.text.clone();
                m.text_truncated = s.input.truncated || s.output.truncated;
                out.push(m);
            }
            _ => {}
        }
    }
    any_answer |= settle(&mut out, pending.take());
    // A run whose answer no LLM call we saw gave: its own output, when it ended.
    if let Some(s) = root.map(|i| &spans[i])
        && !any_answer
        && s.output.text.is_some()
    {
        let mut m = message("assistant", s);
        m.time_ms = ms(s.end_ns.unwrap_or(s.start_ns));
        m.text = s.output.text.clone();
        m.text_truncated = s.output.truncated;
        m.text_length = s.output.length;
        out.push(m);
    }
    out
}

/// A session runs page's cursor: `<start ns>.<trace id>` of the last run shown.
pub(crate) fn parse_run_cursor(c: &str) -> Result<(i64, TraceId), StoreError> {
    let (t, tid) = c.split_once('.').ok_or_else(bad_cursor)?;
    let t: i64 = t.parse().map_err(|_| bad_cursor())?;
    Ok((t, TraceId::parse_hex(tid).ok_or_else(bad_cursor)?))
}

/// The page of runs (`limit` and one more were read) and the cursor to the next.
pub(crate) fn runs_page(runs: &mut Vec<TraceSummary>, limit: usize) -> Option<String> {
    if runs.len() > limit {
        runs.truncate(limit);
        runs.last()
            .map(|t| format!("{}.{}", t.start_ns, t.trace_id))
    } else {
        None
    }
}

/// One run as a turn of its session: its conversation spans (read up to
/// `MAX_MESSAGES + 1`; `cut` when there were more) made messages.
pub(crate) fn turn_of(t: TraceSummary, spans: Vec<ConvSpan>, cut: bool) -> Turn {
    let mut messages = messages_of(t.root_span_id.as_deref(), spans);
    let cut = cut || messages.len() > MAX_MESSAGES;
    messages.truncate(MAX_MESSAGES);
    Turn {
        trace_id: t.trace_id,
        name: t.name,
        start_ms: ms(t.start_ns),
        end_ms: t.end_ns.map(ms),
        status: t.status,
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        total_tokens: t.total_tokens,
        cost_usd: t.cost_usd,
        messages,
        messages_truncated: cut,
    }
}

/// A session with a page of its runs, oldest first; `None` when it has no run.
pub fn session_detail(
    conn: &Connection,
    id: &str,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Option<SessionDetail>, StoreError> {
    let Some(session) = session_row(conn, id)? else {
        return Ok(None);
    };
    let mut sql = format!(
        "SELECT {} FROM traces t WHERE session_id = ?",
        super::query::TRACE_COLS
    );
    let mut args = vec![SqlValue::Text(id.to_string())];
    if let Some(c) = cursor {
        let (t, tid) = parse_run_cursor(c)?;
        sql.push_str(" AND (start_ns > ? OR (start_ns = ? AND trace_id > ?))");
        args.push(SqlValue::Integer(t));
        args.push(SqlValue::Integer(t));
        args.push(SqlValue::Blob(tid.0.to_vec()));
    }
    sql.push_str(" ORDER BY start_ns, trace_id LIMIT ?");
    args.push(SqlValue::Integer(limit as i64 + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut runs: Vec<TraceSummary> = stmt
        .query_map(params_from_iter(args), trace_row)?
        .collect::<Result<_, _>>()?;
    let next_cursor = runs_page(&mut runs, limit);
    let mut turns = Vec::with_capacity(runs.len());
    for t in runs {
        let Some(tid) = TraceId::parse_hex(&t.trace_id) else {
            continue;
        };
        let (spans, cut) = conversation_spans(conn, &tid)?;
        turns.push(turn_of(t, spans, cut));
    }
    Ok(Some(SessionDetail {
        session,
        turns,
        next_cursor,
    }))
}
