//! The daemon's own log: JSON when not on a terminal (or when asked), text otherwise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::Setting;

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

/// Stderr that never fails: a closed or full log pipe must not take the daemon down.
struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Installs the global subscriber; logs go to stderr.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::new(format!(
        "{lvl},openclaw_trace={lvl},hyper=warn,h2=warn,tower=warn,reqwest=warn",
        lvl = cfg.level
    ));
    let json = match cfg.format.as_deref() {
        Some("json") => true,
        Some(_) => false,
        None => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| QuietStderr)
        .with_target(false);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
