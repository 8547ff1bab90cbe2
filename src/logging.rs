//! The daemon's own log: JSON when not on a terminal (or when asked), text otherwise.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::model::{Record, StatusCode};
use crate::pipeline::WriteHook;
use crate::settings::Setting;
use crate::store::write::WriteEffect;

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    pub level: String,
    /// `json`, `text`, or `None` for "JSON unless stderr is a terminal".
    pub format: Option<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: None,
        }
    }
}

pub const SETTINGS: &[Setting<LogConfig>] = &[
    Setting {
        name: "log_level",
        env: "OCT_LOG_LEVEL",
        default: "info",
        help: "error, warn, info, debug or trace",
        set: |c, v| {
            let l = v.trim().to_ascii_lowercase();
            match l.as_str() {
                "error" | "warn" | "warning" | "info" | "debug" | "trace" => {
                    c.level = if l == "warning" { "warn".into() } else { l };
                    Ok(())
                }
                _ => Err(format!(
                    "expected error, warn, info, debug or trace, got {v:?}"
                )),
            }
        },
    },
    Setting {
        name: "log_format",
        env: "OCT_LOG_FORMAT",
        default: "json when stderr is not a terminal, else text",
        help: "json or text",
        set: |c, v| match v.trim() {
            "json" | "text" => {
                c.format = Some(v.trim().to_string());
                Ok(())
            }
            _ => Err(format!("expected json or text, got {v:?}")),
        },
    },
];

/// Installs the global subscriber; logs go to stderr, masked by `redact` when on.
pub fn init(cfg: &LogConfig, redact: bool) {
    let lvl: LevelFilter = cfg.level.parse().unwrap_or(LevelFilter::INFO);
    // Our level for everything, libraries' chatter from warn up.
    let quiet = lvl.min(LevelFilter::WARN);
    let filter = Targets::new().with_default(lvl).with_targets(
        [
            "hyper",
            "hyper_util",
            "h2",
            "tower",
            "reqwest",
            "hickory_proto",
            "hickory_resolver",
        ]
        .map(|t| (t, quiet)),
    );
    let json = match cfg.format.as_deref() {
        Some("json") => true,
        Some(_) => false,
        None => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(StderrWriter { redact })
        .with_target(false);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish()
            .with(filter)
            .try_init()
    } else {
        builder.finish().with(filter).try_init()
    };
}

/// Makes one `LineWriter` per log event.
struct StderrWriter {
    redact: bool,
}

impl<'a> MakeWriter<'a> for StderrWriter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            buf: Vec::with_capacity(256),
            redact: self.redact,
        }
    }
}

/// Collects one formatted event and writes it, masked, to stderr when dropped.
struct LineWriter {
    buf: Vec<u8>,
    redact: bool,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let line = if self.redact {
            crate::redact::redact_text(&text)
        } else {
            text
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Logs what was captured, with `trace_id`/`span_id` so a line leads to
/// `openclaw-trace trace <id>`: every record at debug, agent errors at info
/// (at most `ERRORS_PER_SECOND` lines a second, so an error loop cannot flood the log).
#[derive(Default)]
pub struct CaptureLog {
    second: AtomicI64,
    this_second: AtomicU64,
}

const ERRORS_PER_SECOND: u64 = 10;

impl CaptureLog {
    fn error_allowed(&self) -> bool {
        let now = crate::model::now_ns() / 1_000_000_000;
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.this_second.store(0, Ordering::Relaxed);
        }
        self.this_second.fetch_add(1, Ordering::Relaxed) < ERRORS_PER_SECOND
    }
}

impl WriteHook for CaptureLog {
    fn after_commit(&self, records: &[Record], effects: &[WriteEffect]) {
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        for (r, effect) in records.iter().zip(effects) {
            // A span reported in pieces is logged as failed when a piece fails it.
            if let Some(change) = effect.span_change(r) {
                let s = change.after;
                if change.became(|s| s.status == StatusCode::Error) && self.error_allowed() {
                    tracing::info!(
                        trace_id = %s.trace_id.to_hex(),
                        span_id = %s.span_id.to_hex(),
                        kind = s.kind.as_str(),
                        name = %s.name,
                        error_type = s.error_type.as_deref().unwrap_or(""),
                        "captured failed span"
                    );
                } else if debug && change.is_new() {
                    tracing::debug!(
                        trace_id = %s.trace_id.to_hex(),
                        span_id = %s.span_id.to_hex(),
                        kind = s.kind.as_str(),
                        name = %s.name,
                        "captured span"
                    );
                }
                continue;
            }
            if !effect.is_new() {
                continue;
            }
            match r {
                Record::Event(e) => {
                    let is_error = e.event_type == crate::model::EventType::Error;
                    if !(debug || is_error && self.error_allowed()) {
                        continue;
                    }
                    // Absent ids leave the fields out.
                    let trace_id = e.trace_id.map(|t| t.to_hex());
                    let span_id = e.span_id.map(|t| t.to_hex());
                    let msg = e.message.as_deref().unwrap_or("");
                    if is_error {
                        tracing::info!(trace_id, span_id, error_type = %e.name, error_message = msg, "captured error");
                    } else {
                        tracing::debug!(trace_id, span_id, event_type = e.event_type.as_str(), name = %e.name, "captured event");
                    }
                }
                Record::Span(_) | Record::Metric(_) => {}
            }
        }
    }
}
