//! Gateway log tailer: follows OpenClaw's file log (tslog JSON, one object a line)
//! and turns WARN/ERROR lines (INFO when asked) into events linked to their trace.
//!
//! Files are known by identity (device and inode, plus a fingerprint of their first
//! bytes), not by name, so renames (size rotation to `.1`…`.5`, `.deleted`) do not
//! make lines repeat; a truncated or replaced file starts over. Positions persist in
//! the database only after the lines before them are committed. Lines may be of any
//! length; a partial last line waits for its newline. Reading is rate-limited and
//! pauses while the capture queue is half full, so a flood never starves it: lines
//! wait in the file instead.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::Digest;

use crate::model::{Event, EventType, Record, SpanId, TraceId, now_ns};
use crate::pipeline::Pipeline;
use crate::settings::{Setting, parse_bool, parse_duration, parse_u64};
use crate::sources::openclaw::ids::stable_uid;
use crate::store::offsets::{self, Offset};

#[derive(Clone, Debug, PartialEq)]
pub struct TailConfig {
    /// A file or a glob; empty means discover OpenClaw's default log location; `off` disables.
    pub log_path: Option<String>,
    /// Keep INFO lines too (WARN and ERROR are always kept).
    pub keep_info: bool,
    /// Lines read per second at most (a flood waits in the file).
    pub max_lines_per_sec: u64,
    pub poll_interval: Duration,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            log_path: None,
            keep_info: false,
            max_lines_per_sec: 2000,
            poll_interval: Duration::from_secs(1),
        }
    }
}

pub const SETTINGS: &[Setting<TailConfig>] = &[
    Setting {
        name: "log_path",
        env: "OCT_LOG_PATH",
        default: "/tmp/openclaw/openclaw-*.log*",
        help: "Agent log file (or glob, * and ? in the file name) to follow; off disables",
        set: |c, v| {
            c.log_path = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        name: "log_keep_info",
        env: "OCT_LOG_KEEP_INFO",
        default: "false",
        help: "Also keep INFO lines of the agent log (WARN and ERROR are always kept)",
        set: |c, v| {
            c.keep_info = parse_bool(v)?;
            Ok(())
        },
    },
    Setting {
        name: "log_max_lines_per_sec",
        env: "OCT_LOG_MAX_LINES_PER_SEC",
        default: "2000",
        help: "Agent log lines read per second at most; a flood waits in the file",
        set: |c, v| {
            c.max_lines_per_sec = parse_u64(v)?.max(1);
            Ok(())
        },
    },
    Setting {
        name: "log_poll_interval",
        env: "OCT_LOG_POLL_INTERVAL",
        default: "1s",
        help: "How often the agent log is checked for new lines",
        set: |c, v| {
            c.poll_interval = parse_duration(v)?;
            Ok(())
        },
    },
];

const SOURCE: &str = "openclaw-log";
const DEFAULT_DIR: &str = "/tmp/openclaw";
const DEFAULT_PATTERN: &str = "openclaw-*.log*";
/// Longer lines keep their first this many bytes (the rest is skipped, not split).
const MAX_LINE: usize = 1 << 20;
const FINGERPRINT_BYTES: usize = 256;
const MAX_MESSAGE: usize = 8192;

// ---------------------------------------------------------------- files

/// `*` and `?` wildcards against a whole name.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The files a path or glob names now, oldest first (so rotated files finish first).
pub fn list_files(spec: &str) -> Vec<PathBuf> {
    let path = Path::new(spec);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| wildcard_match(&name, &e.file_name().to_string_lossy()))
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            Some((m.modified().ok()?, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

fn fingerprint_of(file: &mut File, len: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut buf)?;
    Ok(format!(
        "{len}:{}",
        crate::util::hex::encode(&sha2::Sha256::digest(&buf)[..12])
    ))
}

/// One complete line read from a file, with the byte offset it starts at.
pub struct Line {
    pub offset: u64,
    pub text: String,
}

/// What one read of one file produced: its lines, and the position after them.
pub struct Chunk {
    pub key: String,
    pub path: PathBuf,
    pub lines: Vec<Line>,
    pub next: Offset,
}

/// Follows files by identity and hands out complete lines past the saved position.
pub struct Follower {
    source: &'static str,
    offsets: HashMap<String, Offset>,
}

impl Follower {
    pub fn new(source: &'static str, offsets: HashMap<String, Offset>) -> Self {
        Follower { source, offsets }
    }

    pub fn source(&self) -> &'static str {
        self.source
    }

    /// Reads up to `max_lines` complete lines of `path` past its saved position.
    pub fn read(&self, path: &Path, max_lines: usize) -> std::io::Result<Option<Chunk>> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let key = format!("{}:{}", meta.dev(), meta.ino());
        let size = meta.len();
        let saved = self.offsets.get(&key).cloned().unwrap_or_default();
        let mut start = saved.position.max(0) as u64;
        let mut fingerprint = saved.fingerprint.clone();
        // Same inode, other content (reused inode or rewritten file): start over.
        if let Some(fp) = &saved.fingerprint {
            let len: usize = fp
                .split(':')
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let same =
                len as u64 <= size && fingerprint_of(&mut file, len).ok().as_ref() == Some(fp);
            if !same {
                start = 0;
                fingerprint = None;
            }
        }
        if size < start {
            // Truncated in place.
            start = 0;
            fingerprint = None;
        }
        if fingerprint.is_none() || fingerprint.as_deref().is_some_and(|f| f.starts_with("0:")) {
            let len = (size as usize).min(FINGERPRINT_BYTES);
            fingerprint = Some(fingerprint_of(&mut file, len)?);
        } else if let Some(fp) = &fingerprint {
            // A fingerprint taken while the file was short grows with it.
            let len: usize = fp
                .split(':')
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            if len < FINGERPRINT_BYTES && (size as usize) > len {
                fingerprint = Some(fingerprint_of(
                    &mut file,
                    (size as usize).min(FINGERPRINT_BYTES),
                )?);
            }
        }
        file.seek(SeekFrom::Start(start))?;
        let mut reader = BufReader::with_capacity(64 << 10, file);
        let mut lines = Vec::new();
        let mut pos = start;
        let mut buf = Vec::new();
        while lines.len() < max_lines {
            buf.clear();
            let (n, complete) = read_line_capped(&mut reader, &mut buf)?;
            if n == 0 || !complete {
                break; // end of file, or a partial last line that waits for its newline
            }
            let offset = pos;
            pos += n as u64;
            let text = String::from_utf8_lossy(&buf).trim_end().to_string();
            if !text.is_empty() {
                lines.push(Line { offset, text });
            }
        }
        let next = Offset {
            fingerprint,
            position: pos as i64,
        };
        if lines.is_empty() && next == saved {
            return Ok(None);
        }
        Ok(Some(Chunk {
            key,
            path: path.to_path_buf(),
            lines,
            next,
        }))
    }

    /// Records that everything before `chunk.next` is committed (in memory; the caller
    /// persists it after the commit with `save_job`).
    pub fn advance(&mut self, chunk: &Chunk) {
        self.offsets.insert(chunk.key.clone(), chunk.next.clone());
    }

    /// Saves a position on the writer, after what was submitted before it.
    pub fn save_job(&self, pipeline: &Pipeline, chunk: &Chunk) {
        let (source, key, next) = (self.source, chunk.key.clone(), chunk.next.clone());
        pipeline.run_job(move |conn| {
            if let Err(e) = offsets::save(conn, source, &key, &next, now_ns()) {
                tracing::warn!(source, error = %e, "cannot save the read position");
            }
        });
    }

    /// Forgets positions of files that are gone, keeping those in `present`.
    pub fn forget_missing(&mut self, pipeline: &Pipeline, present: &[String]) {
        let gone: Vec<String> = self
            .offsets
            .keys()
            .filter(|k| !present.contains(k))
            .cloned()
            .collect();
        for key in gone {
            self.offsets.remove(&key);
            let source = self.source;
            pipeline.run_job(move |conn| {
                let _ = offsets::forget(conn, source, &key);
            });
        }
    }
}

/// Reads one line into `buf` (at most `MAX_LINE` bytes kept). Returns the bytes consumed
/// and whether the line ended with a newline.
fn read_line_capped(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return Ok((consumed, false));
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&available[..take.min(room)]);
        r.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, true));
        }
    }
}

// ---------------------------------------------------------------- lines

fn cap(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Structured events OpenClaw logs at WARN that stand for a failure.
fn is_failure_event(name: &str, obj: &Map<String, Value>) -> bool {
    obj.get("isError") == Some(&Value::Bool(true))
        || matches!(
            name,
            "model_fallback_decision" | "embedded_run_failover_decision"
        )
}

/// Turns one log line into an event, or None when it is not kept.
/// `uid_parts` name the line (file identity and offset) so a re-read dedupes.
pub fn parse_line(line: &str, uid_parts: &[&str], keep_info: bool) -> Option<Event> {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(line) else {
        return parse_plain_line(line, uid_parts, keep_info);
    };
    let level = m
        .get("_meta")
        .and_then(|x| x.get("logLevelName"))
        .and_then(Value::as_str)
        .unwrap_or("INFO")
        .to_ascii_uppercase();
    // Field "0" is a JSON text naming the subsystem, or the message itself.
    let first = m.get("0").and_then(Value::as_str);
    let subsystem = first
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(t).ok())
        .and_then(|o| {
            o.get("subsystem")
                .or_else(|| o.get("module"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let structured = ["1", "2", "3"]
        .iter()
        .filter_map(|k| m.get(*k).and_then(Value::as_object))
        .next();
    let event_name = structured
        .and_then(|o| o.get("event"))
        .and_then(Value::as_str);
    let failure = event_name.is_some_and(|n| structured.is_some_and(|o| is_failure_event(n, o)));
    let ty = match level.as_str() {
        "ERROR" | "FATAL" => EventType::Error,
        _ if failure => EventType::Error,
        "WARN" => EventType::Log,
        _ if keep_info => EventType::Log,
        _ => return None,
    };
    let time = m
        .get("time")
        .and_then(Value::as_str)
        .and_then(crate::util::time::parse_timestamp_str)
        .unwrap_or_else(now_ns);
    let name = event_name
        .map(str::to_string)
        .or_else(|| subsystem.clone())
        .unwrap_or_else(|| "openclaw".into());
    let mut e = Event::new(ty, name, time);
    e.uid = stable_uid(uid_parts);
    e.source = SOURCE;
    e.severity = match level.as_str() {
        "WARN" if failure => "error".into(),
        l => l.to_ascii_lowercase(),
    };
    let message = m
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            let parts: Vec<&str> = ["0", "1", "2"]
                .iter()
                .filter_map(|k| m.get(*k).and_then(Value::as_str))
                .filter(|s| subsystem.is_none() || Some(*s) != first)
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        });
    e.message = message.map(|s| cap(s, MAX_MESSAGE));
    e.category = Some(subsystem.clone().unwrap_or_else(|| "gateway".into()));
    e.trace_id = m
        .get("traceId")
        .and_then(Value::as_str)
        .and_then(TraceId::parse_hex)
        .filter(|t| !t.is_zero());
    e.span_id = m
        .get("spanId")
        .and_then(Value::as_str)
        .and_then(SpanId::parse_hex)
        .filter(|s| !s.is_zero());
    e.session_id = m
        .get("session_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(s) = subsystem {
        e.attributes.insert("openclaw.subsystem".into(), s.into());
    }
    if let Some(p) = m.get("parentSpanId").and_then(Value::as_str) {
        e.attributes
            .insert("openclaw.parent_span_id".into(), p.into());
    }
    if let Some(o) = structured {
        for (k, v) in o {
            let key = match k.as_str() {
                "runId" => "openclaw.run_id".to_string(),
                "event" => continue,
                other => format!("openclaw.{other}"),
            };
            let v = match v {
                Value::String(s) => Value::String(cap(s.clone(), MAX_MESSAGE)),
                other => other.clone(),
            };
            e.attributes.insert(key, v);
        }
        if e.session_id.is_none() {
            e.session_id = o
                .get("sessionId")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
    }
    Some(e)
}

/// A line that is not JSON: kept when it reads like an error (as the Go version did).
fn parse_plain_line(line: &str, uid_parts: &[&str], keep_info: bool) -> Option<Event> {
    let lower = line.to_ascii_lowercase();
    let error = ["error", "exception", "fatal", "panic"]
        .iter()
        .any(|w| lower.contains(w));
    if !error && !keep_info {
        return None;
    }
    let (ty, name, severity) = if error {
        (EventType::Error, "gateway_error", "error")
    } else {
        (EventType::Log, "log", "info")
    };
    let mut e = Event::new(ty, name.into(), now_ns());
    e.uid = stable_uid(uid_parts);
    e.source = SOURCE;
    e.severity = severity.into();
    e.message = Some(cap(line.to_string(), MAX_MESSAGE));
    e.category = Some("gateway".into());
    Some(e)
}

// ---------------------------------------------------------------- the task

/// A token bucket: `rate` lines a second, bursts up to one second's worth.
struct RateLimit {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    fn new(rate: u64) -> Self {
        RateLimit {
            rate: rate as f64,
            tokens: rate as f64,
            at: Instant::now(),
        }
    }
    fn available(&mut self) -> usize {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        self.tokens.max(0.0) as usize
    }
    fn spend(&mut self, n: usize) {
        self.tokens -= n as f64;
    }
}

struct Tailer {
    spec: String,
    keep_info: bool,
    follower: Follower,
    limit: RateLimit,
    pipeline: Pipeline,
}

impl Tailer {
    /// One pass over the files: read, submit, and advance only what was accepted.
    fn poll(&mut self) {
        let files = list_files(&self.spec);
        let mut present = Vec::new();
        for path in files {
            if let Ok(m) = std::fs::metadata(&path) {
                present.push(format!("{}:{}", m.dev(), m.ino()));
            }
            loop {
                // Backpressure: leave lines in the file beyond half the queue, so the
                // log never fills the room capture (the clients' share) needs.
                let half = (self.pipeline.capacity() / 2).max(1);
                let depth = self.pipeline.depth();
                if depth >= half {
                    return;
                }
                let budget = self.limit.available().min(1000).min(half - depth);
                if budget == 0 {
                    return;
                }
                let chunk = match self.follower.read(&path, budget) {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(path = %path.display(), error = %e, "cannot read the agent log");
                        break;
                    }
                };
                self.limit.spend(chunk.lines.len());
                let records: Vec<Record> = chunk
                    .lines
                    .iter()
                    .filter_map(|l| {
                        // The text is part of the name: a file truncated in place reuses offsets.
                        let off = l.offset.to_string();
                        parse_line(
                            &l.text,
                            &[SOURCE, &chunk.key, &off, &l.text],
                            self.keep_info,
                        )
                    })
                    .map(|e| Record::Event(Box::new(e)))
                    .collect();
                if let Err(e) = self.pipeline.submit(SOURCE, records) {
                    tracing::debug!(error = %e, "agent log lines wait: the queue refused them");
                    return;
                }
                self.follower.advance(&chunk);
                self.follower.save_job(&self.pipeline, &chunk);
                if chunk.lines.len() < budget {
                    break;
                }
            }
        }
        self.follower.forget_missing(&self.pipeline, &present);
    }
}

/// The glob the tailer follows, or None when it is off.
pub fn log_spec(cfg: &TailConfig) -> Option<String> {
    match cfg.log_path.as_deref().map(str::trim) {
        Some("off") => None,
        Some(p) if !p.is_empty() => Some(p.to_string()),
        _ => Some(format!("{DEFAULT_DIR}/{DEFAULT_PATTERN}")),
    }
}

/// Starts following the agent log; the task runs until aborted.
pub fn spawn(
    cfg: &TailConfig,
    pipeline: Pipeline,
    db_path: &Path,
) -> Option<tokio::task::JoinHandle<()>> {
    let spec = log_spec(cfg)?;
    tracing::info!(path = %spec, "following the agent log");
    let every = cfg.poll_interval.max(Duration::from_millis(50));
    let mut tailer = Some(Tailer {
        spec,
        keep_info: cfg.keep_info,
        follower: Follower::new(SOURCE, offsets::load_from(db_path, SOURCE)),
        limit: RateLimit::new(cfg.max_lines_per_sec),
        pipeline,
    });
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(mut t) = tailer.take() else { return };
            match tokio::task::spawn_blocking(move || {
                t.poll();
                t
            })
            .await
            {
                Ok(t) => tailer = Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "the agent log tailer stopped");
                    return;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests;
