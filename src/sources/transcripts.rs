//! OpenClaw session transcripts: usage from before the sidecar started, from deleted
//! sessions, and from calls the plugin did not see.
//!
//! Reads the agent database `$OPENCLAW_STATE_DIR/agents/<id>/agent/openclaw-agent.sqlite`
//! (table `transcript_events`, read-only, short reads, `event_zstd` rows decompressed)
//! and legacy `agents/<id>/sessions/*.jsonl` files, `*.jsonl.deleted.*` and
//! `*.jsonl.reset.*` included. Each assistant message with `usage` becomes an LLM call
//! piece with provisional ids and the key (run id, message time) the plugin also uses,
//! so a call seen by both is stored once (see `store::merge`). Where it stopped
//! persists in the database.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use serde_json::{Map, Value};

use crate::model::{Record, Span, SpanKind, SpanMerge, now_ns};
use crate::pipeline::Pipeline;
use crate::settings::{Setting, parse_duration};
use crate::sources::openclaw::ids::{hash_span_id, hash_trace_id};
use crate::sources::openclaw::{assistant_error_event, assistant_message_piece, message_key};
use crate::sources::tail::Follower;
use crate::store::offsets::{self, Offset};

#[derive(Clone, Debug, PartialEq)]
pub struct TranscriptsConfig {
    /// OpenClaw's state directory; None means `$OPENCLAW_STATE_DIR` or `~/.openclaw`.
    pub state_dir: Option<String>,
    pub poll_interval: Duration,
    /// Messages younger than this wait, so the plugin's record of a call comes first.
    pub grace: Duration,
    /// Bytes kept of each text (tool arguments and results, what the model said): the
    /// ingest limit, `OCT_MAX_TEXT_BYTES` or `OCT_TRACE_VERBOSE`'s (set by the app).
    pub text_limit: usize,
}

impl Default for TranscriptsConfig {
    fn default() -> Self {
        TranscriptsConfig {
            state_dir: None,
            poll_interval: Duration::from_secs(5),
            grace: Duration::from_secs(10),
            text_limit: crate::sources::ingest::IngestConfig::default().text_limit(),
        }
    }
}

pub const SETTINGS: &[Setting<TranscriptsConfig>] = &[
    Setting {
        name: "openclaw_state_dir",
        env: "OCT_OPENCLAW_STATE_DIR",
        default: "$OPENCLAW_STATE_DIR, else ~/.openclaw",
        help: "OpenClaw state directory whose session transcripts are read for usage and cost; off disables",
        set: |c, v| {
            c.state_dir = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        name: "transcript_poll_interval",
        env: "OCT_TRANSCRIPT_POLL_INTERVAL",
        default: "5s",
        help: "How often OpenClaw's session transcripts are checked for new messages",
        set: |c, v| {
            c.poll_interval = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "transcript_grace",
        env: "OCT_TRANSCRIPT_GRACE",
        default: "10s",
        help: "Transcript messages younger than this wait, so the plugin's record of the same call arrives first",
        set: |c, v| {
            c.grace = parse_duration(v)?;
            Ok(())
        },
    },
];

const SQLITE_SOURCE: &str = "openclaw-transcript-db";
const JSONL_SOURCE: &str = "openclaw-transcript-jsonl";
const SOURCE: &str = "openclaw-transcript";
const ROWS_PER_READ: i64 = 500;
const MAX_EVENT_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("cannot read {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("compressed transcript row {0} does not decode: {1}")]
    Zstd(i64, String),
}

/// The state directory to read, or None when off.
pub fn state_dir(cfg: &TranscriptsConfig) -> Option<PathBuf> {
    match cfg.state_dir.as_deref().map(str::trim) {
        Some("off") => None,
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => std::env::var_os("OPENCLAW_STATE_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".openclaw"))),
    }
}

/// The records one transcript event stands for, texts cut at the default limit.
pub fn records_from_event(
    event: &Value,
    session_id: &str,
    agent_id: Option<&str>,
    origin: &str,
) -> Vec<Record> {
    let limit = crate::sources::ingest::IngestConfig::default().text_limit();
    records_from_event_capped(event, session_id, agent_id, origin, limit)
}

/// The LLM call an assistant message with usage stands for (and an error event when it
/// failed), and the tool calls it asked for (with their arguments) or whose result it
/// is (with the result's text): each text kept up to `text_limit` bytes.
pub fn records_from_event_capped(
    event: &Value,
    session_id: &str,
    agent_id: Option<&str>,
    origin: &str,
    text_limit: usize,
) -> Vec<Record> {
    let mut out = tool_records(event, session_id, agent_id, origin, text_limit);
    out.extend(llm_records(event, session_id, agent_id, origin, text_limit));
    out
}

/// The text parts of a message's content (`{"type": "text", "text": ...}`).
fn text_parts(msg: &Map<String, Value>) -> impl Iterator<Item = &str> {
    msg.get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
}

/// A transcript message's OpenClaw run id, and its row's own timestamp.
fn run_and_time<'a>(msg: &'a Map<String, Value>, event: &Value) -> (Option<&'a str>, Option<i64>) {
    let run_id = msg
        .get("__openclaw")
        .and_then(|o| o.get("runId"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    let event_time = event
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(crate::util::time::parse_timestamp_str);
    (run_id, event_time)
}

/// The tool calls of an assistant message (`toolCall` parts: id, name, arguments) and a
/// tool's result (`toolResult` message: its text, `isError`), as pieces of the tool span
/// the OpenClaw plugin reports: the same ids and natural key, so they merge into one.
fn tool_records(
    event: &Value,
    session_id: &str,
    agent_id: Option<&str>,
    origin: &str,
    text_limit: usize,
) -> Vec<Record> {
    if event.get("type").and_then(Value::as_str) != Some("message") {
        return Vec::new();
    }
    let Some(msg) = event.get("message").and_then(Value::as_object) else {
        return Vec::new();
    };
    let (run_id, event_time) = run_and_time(msg, event);
    let msg_time = msg
        .get("timestamp")
        .and_then(Value::as_i64)
        .map(|ms| ms.saturating_mul(1_000_000));
    let trace = match run_id {
        Some(r) => hash_trace_id(&["openclaw-run", r]),
        None => hash_trace_id(&["openclaw-session", session_id]),
    };
    let run = run_id.unwrap_or("");
    let piece = |call_id: &str, tool: &str, start: i64| {
        let mut p = Span::new(
            trace,
            hash_span_id(&["openclaw-tool", run, call_id]),
            format!("execute_tool {tool}"),
            SpanKind::ToolCall,
            start,
        );
        p.merge = Some(SpanMerge {
            key: Some(format!("openclaw-tool:{run}:{call_id}")),
            provisional: true,
        });
        p.operation = Some("execute_tool".into());
        p.tool_name = Some(tool.to_string());
        p.tool_call_id = Some(call_id.to_string());
        p.session_id = Some(session_id.to_string());
        p.agent_id = agent_id.map(str::to_string);
        p.source = SOURCE;
        p.attributes
            .insert("gen_ai.operation.name".into(), "execute_tool".into());
        p.attributes
            .insert("openclaw.transcript".into(), origin.into());
        if let Some(r) = run_id {
            p.attributes.insert("openclaw.run_id".into(), r.into());
        }
        p
    };
    let text = |t: String| crate::model::CappedText::new(t, text_limit);
    let mut out = Vec::new();
    match msg.get("role").and_then(Value::as_str) {
        Some("assistant") => {
            // The call starts when the message asking for it is written.
            let Some(start) = event_time.or(msg_time) else {
                return out;
            };
            let parts = msg.get("content").and_then(Value::as_array);
            for part in parts.into_iter().flatten() {
                if part.get("type").and_then(Value::as_str) != Some("toolCall") {
                    continue;
                }
                let (Some(id), Some(name)) = (
                    part.get("id")
                        .and_then(Value::as_str)
                        .filter(|i| !i.is_empty()),
                    part.get("name").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let mut p = piece(id, name, start);
                p.input = match part.get("arguments") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(a)) => Some(text(a.clone())),
                    Some(a) => Some(text(a.to_string())),
                };
                out.push(Record::Span(Box::new(p)));
            }
        }
        Some("toolResult") => {
            let (Some(id), Some(time)) = (
                msg.get("toolCallId")
                    .and_then(Value::as_str)
                    .filter(|i| !i.is_empty()),
                msg_time.or(event_time),
            ) else {
                return out;
            };
            let tool = msg
                .get("toolName")
                .and_then(Value::as_str)
                .unwrap_or("tool");
            let mut p = piece(id, tool, time);
            p.end_ns = Some(time);
            let said: Vec<&str> = text_parts(msg).collect();
            let result = match msg.get("content") {
                Some(Value::String(t)) => Some(t.clone()),
                _ if !said.is_empty() => Some(said.join("\n")),
                _ => None,
            };
            p.output = result.map(text);
            let failed = msg.get("isError").and_then(Value::as_bool) == Some(true);
            p.status = if failed {
                crate::model::StatusCode::Error
            } else {
                crate::model::StatusCode::Ok
            };
            out.push(Record::Span(Box::new(p)));
        }
        _ => {}
    }
    out
}

/// The LLM call an assistant message with usage stands for (and an error event when it failed).
fn llm_records(
    event: &Value,
    session_id: &str,
    agent_id: Option<&str>,
    origin: &str,
    text_limit: usize,
) -> Vec<Record> {
    let Some(msg) = message_with_usage(event) else {
        return Vec::new();
    };
    let (run_id, event_time) = run_and_time(msg, event);
    let Some(ts_ms) = msg
        .get("timestamp")
        .and_then(Value::as_i64)
        .or(event_time.map(|t| t / 1_000_000))
    else {
        return Vec::new();
    };
    let message_id = event
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| ts_ms.to_string());
    // Provisional ids: one trace per run; the real ones come from the plugin.
    let (trace, key, scope) = match run_id {
        Some(r) => (
            hash_trace_id(&["openclaw-run", r]),
            message_key(r, ts_ms),
            r,
        ),
        None => (
            hash_trace_id(&["openclaw-session", session_id]),
            format!("openclaw:session:{session_id}:{ts_ms}"),
            session_id,
        ),
    };
    let span_id = hash_span_id(&["openclaw-message", session_id, &message_id]);
    let model = msg
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let start = ts_ms.saturating_mul(1_000_000);
    let mut span = Span::new(
        trace,
        span_id,
        format!("chat {model}"),
        SpanKind::LlmCall,
        start,
    );
    span.end_ns = event_time.filter(|e| *e >= start);
    span.status = crate::model::StatusCode::Ok;
    span.operation = Some("chat".into());
    span.session_id = Some(session_id.to_string());
    span.agent_id = agent_id.map(str::to_string);
    span.source = SOURCE;
    assistant_message_piece(msg, &mut span);
    // What the model said: the message's text parts (its tool calls are the tool spans').
    let said: Vec<&str> = text_parts(msg)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if !said.is_empty() {
        span.output = Some(crate::model::CappedText::new(said.join("\n\n"), text_limit));
    }
    span.attributes
        .insert("gen_ai.operation.name".into(), "chat".into());
    span.attributes
        .insert("openclaw.transcript".into(), origin.into());
    if let Some(r) = run_id {
        span.attributes.insert("openclaw.run_id".into(), r.into());
    }
    span.merge = Some(SpanMerge {
        key: Some(key),
        provisional: true,
    });
    let mut out = Vec::new();
    if let Some(mut e) = assistant_error_event(msg, scope, start) {
        e.trace_id = Some(trace);
        e.span_id = Some(span_id);
        e.session_id = span.session_id.clone();
        e.agent_id = span.agent_id.clone();
        e.source = SOURCE;
        out.push(Record::Event(Box::new(e)));
    }
    out.push(Record::Span(Box::new(span)));
    out
}

fn message_with_usage(event: &Value) -> Option<&Map<String, Value>> {
    if event.get("type").and_then(Value::as_str) != Some("message") {
        return None;
    }
    let msg = event.get("message")?.as_object()?;
    (msg.get("role").and_then(Value::as_str) == Some("assistant") && msg.contains_key("usage"))
        .then_some(msg)
}

/// Decodes a zstd-compressed transcript row (plain frames, as Node's zlib writes them).
pub fn decode_zstd(bytes: &[u8], rowid: i64) -> Result<String, TranscriptError> {
    let mut decoder = ruzstd::decoding::StreamingDecoder::new(bytes)
        .map_err(|e| TranscriptError::Zstd(rowid, e.to_string()))?;
    let mut out = Vec::new();
    (&mut decoder)
        .take(MAX_EVENT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| TranscriptError::Zstd(rowid, e.to_string()))?;
    if out.len() as u64 > MAX_EVENT_BYTES {
        return Err(TranscriptError::Zstd(rowid, "larger than 4 MiB".into()));
    }
    String::from_utf8(out).map_err(|e| TranscriptError::Zstd(rowid, e.to_string()))
}

/// One read of new rows from an agent database.
pub struct DbRead {
    pub records: Vec<Record>,
    /// The last row read (the position to save once `records` are committed).
    pub last_rowid: i64,
    pub rows: usize,
}

/// Reads rows after `after_rowid`, stopping at rows younger than `newest_ms`.
/// Read-only and brief: it never holds the gateway's write lock.
pub fn read_db(
    path: &Path,
    agent_id: Option<&str>,
    after_rowid: i64,
    newest_ms: i64,
) -> Result<DbRead, TranscriptError> {
    let limit = crate::sources::ingest::IngestConfig::default().text_limit();
    read_db_capped(path, agent_id, after_rowid, newest_ms, limit)
}

/// As `read_db`, each text kept up to `text_limit` bytes.
pub fn read_db_capped(
    path: &Path,
    agent_id: Option<&str>,
    after_rowid: i64,
    newest_ms: i64,
    text_limit: usize,
) -> Result<DbRead, TranscriptError> {
    let err = |source| TranscriptError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(Duration::from_millis(200)).map_err(err)?;
    let mut stmt = conn
        .prepare(
            "SELECT rowid, session_id, event_json, event_zstd, created_at FROM transcript_events
             WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )
        .map_err(err)?;
    type Row = (i64, String, Option<String>, Option<Vec<u8>>, i64);
    let rows: Vec<Row> = stmt
        .query_map(params![after_rowid, ROWS_PER_READ], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    drop(stmt);
    drop(conn);
    let mut out = DbRead {
        records: Vec::new(),
        last_rowid: after_rowid,
        rows: 0,
    };
    for (rowid, session_id, json, zstd, created_at) in rows {
        if created_at > newest_ms {
            break;
        }
        let text = match (json, zstd) {
            (Some(j), _) => Some(j),
            (None, Some(z)) => match decode_zstd(&z, rowid) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping a transcript row");
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(event) = text.and_then(|t| serde_json::from_str::<Value>(&t).ok()) {
            out.records.extend(records_from_event_capped(
                &event,
                &session_id,
                agent_id,
                "sqlite",
                text_limit,
            ));
        }
        out.last_rowid = rowid;
        out.rows += 1;
    }
    Ok(out)
}

/// `agents/<id>` directories of a state dir, with the agent id.
fn agent_dirs(state: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(state.join("agents")) else {
        return Vec::new();
    };
    let mut dirs: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    dirs.sort();
    dirs
}

/// Legacy session files: `<session>.jsonl`, `.jsonl.deleted.<ts>`, `.jsonl.reset.<ts>`.
fn session_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (session, rest) = name.split_once(".jsonl")?;
            let kept =
                rest.is_empty() || rest.starts_with(".deleted") || rest.starts_with(".reset");
            (kept && e.path().is_file()).then(|| (session.to_string(), e.path()))
        })
        .collect();
    files.sort();
    files
}

struct Reader {
    state: PathBuf,
    grace: Duration,
    text_limit: usize,
    pipeline: Pipeline,
    db_offsets: HashMap<String, Offset>,
    jsonl: Follower,
}

impl Reader {
    fn poll(&mut self) {
        for (agent, dir) in agent_dirs(&self.state) {
            let db = dir.join("agent").join("openclaw-agent.sqlite");
            if db.is_file() && !self.poll_db(&agent, &db) {
                return;
            }
            for (session, file) in session_files(&dir.join("sessions")) {
                if !self.poll_jsonl(&agent, &session, &file) {
                    return;
                }
            }
        }
    }

    /// False when the queue refused records (try again next poll).
    fn poll_db(&mut self, agent: &str, path: &Path) -> bool {
        let key = path.display().to_string();
        // The database file's identity: a recreated database is read from its start.
        let identity = std::fs::metadata(path)
            .map(|m| format!("{}:{}", m.dev(), m.ino()))
            .ok();
        let saved = self.db_offsets.get(&key).cloned().unwrap_or_default();
        let mut after = if saved.fingerprint == identity {
            saved.position
        } else {
            0
        };
        let newest_ms = (now_ns() - self.grace.as_nanos() as i64) / 1_000_000;
        loop {
            let read = match read_db_capped(path, Some(agent), after, newest_ms, self.text_limit) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "transcript database not readable now");
                    return true;
                }
            };
            if read.rows == 0 {
                return true;
            }
            if let Err(e) = self.pipeline.submit(SOURCE, read.records) {
                tracing::debug!(error = %e, "transcript rows wait: the queue refused them");
                return false;
            }
            let next = Offset {
                fingerprint: identity.clone(),
                position: read.last_rowid,
            };
            self.db_offsets.insert(key.clone(), next.clone());
            let k = key.clone();
            self.pipeline.run_job(move |conn| {
                if let Err(e) = offsets::save(conn, SQLITE_SOURCE, &k, &next, now_ns()) {
                    tracing::warn!(error = %e, "cannot save the transcript position");
                }
            });
            after = read.last_rowid;
            if (read.rows as i64) < ROWS_PER_READ {
                return true;
            }
        }
    }

    fn poll_jsonl(&mut self, agent: &str, session: &str, path: &Path) -> bool {
        // Files still being written wait for the grace period, like database rows.
        let young = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < self.grace);
        if young {
            return true;
        }
        loop {
            let chunk = match self.jsonl.read(path, 1000) {
                Ok(Some(c)) => c,
                Ok(None) => return true,
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot read a session file");
                    return true;
                }
            };
            let records: Vec<Record> = chunk
                .lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(&l.text).ok())
                .flat_map(|ev| {
                    records_from_event_capped(&ev, session, Some(agent), "jsonl", self.text_limit)
                })
                .collect();
            if let Err(e) = self.pipeline.submit(SOURCE, records) {
                tracing::debug!(error = %e, "session file lines wait: the queue refused them");
                return false;
            }
            self.jsonl.advance(&chunk);
            self.jsonl.save_job(&self.pipeline, &chunk);
            if chunk.lines.len() < 1000 {
                return true;
            }
        }
    }
}

/// Starts reading transcripts; the task runs until aborted.
pub fn spawn(
    cfg: &TranscriptsConfig,
    pipeline: Pipeline,
    db_path: &Path,
) -> Option<tokio::task::JoinHandle<()>> {
    let state = state_dir(cfg)?;
    tracing::info!(state_dir = %state.display(), "reading OpenClaw session transcripts");
    let every = cfg.poll_interval.max(Duration::from_millis(100));
    let mut reader = Some(Reader {
        state,
        grace: cfg.grace,
        text_limit: cfg.text_limit,
        pipeline,
        db_offsets: offsets::load_from(db_path, SQLITE_SOURCE),
        jsonl: Follower::new(JSONL_SOURCE, offsets::load_from(db_path, JSONL_SOURCE)),
    });
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(mut r) = reader.take() else { return };
            match tokio::task::spawn_blocking(move || {
                r.poll();
                r
            })
            .await
            {
                Ok(r) => reader = Some(r),
                Err(e) => {
                    tracing::error!(error = %e, "the transcript reader stopped");
                    return;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests;
