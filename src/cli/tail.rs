//! `openclaw-trace tail`: follows the running daemon's `/v1/stream` and prints each item.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::config::Config;

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Only these kinds (comma-separated): llm_call, tool_call, agent_run, embedding, other,
    /// error (errors and failed spans), custom, log
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this agent
    #[arg(long)]
    pub agent: Option<String>,
    /// Lowest level shown: trace, debug, info, warn, error, fatal
    #[arg(long)]
    pub level: Option<String>,
    /// The daemon's address (default: from --bind/--port, i.e. OCT_BIND/OCT_PORT)
    #[arg(long)]
    pub url: Option<String>,
    /// Print each item as a JSON line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("cannot reach the daemon at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the daemon answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the stream broke: {0}")]
    Stream(#[source] reqwest::Error),
    #[error("dropped by the daemon: {0}")]
    Dropped(String),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The stream URL for this configuration and these filters.
pub fn stream_url(cfg: &Config, a: &TailArgs) -> String {
    let base = a.url.clone().unwrap_or_else(|| cfg.api.local_url());
    let mut url = format!("{}/v1/stream", base.trim_end_matches('/'));
    let params: Vec<String> = [("kind", &a.kind), ("agent", &a.agent), ("level", &a.level)]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode_component(v))))
        .collect();
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
}

fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One human-readable line for an item.
pub fn format_item(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let time = s("time");
    let clock = time.get(11..23).unwrap_or(time);
    let mut parts = vec![
        format!("{clock:<12}"),
        format!("{:<9}", s("kind")),
        format!("{:<5}", s("level")),
        format!(
            "{:<12}",
            v.get("agent_id").and_then(Value::as_str).unwrap_or("-")
        ),
        s("name").to_string(),
    ];
    if let Some(m) = v.get("model").and_then(Value::as_str) {
        parts.push(format!("model={m}"));
    }
    let tokens = |k: &str| v.get(k).and_then(Value::as_i64);
    if tokens("input_tokens").is_some() || tokens("output_tokens").is_some() {
        parts.push(format!(
            "tokens={}/{}",
            tokens("input_tokens").unwrap_or(0),
            tokens("output_tokens").unwrap_or(0)
        ));
    }
    if let Some(c) = v.get("cost_usd").and_then(Value::as_f64) {
        parts.push(format!("cost=${c:.4}"));
    }
    if let Some(ms) = v.get("duration_ms").and_then(Value::as_f64) {
        parts.push(super::traces::duration(Some(ms)));
    }
    if let Some(st) = v
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| *s == "error")
    {
        parts.push(format!("status={st}"));
    }
    if let Some(m) = v.get("message").and_then(Value::as_str) {
        parts.push(format!("{m:?}"));
    }
    if let Some(t) = v.get("trace_id").and_then(Value::as_str) {
        parts.push(format!("trace={t}"));
    }
    parts.join("  ")
}

/// Reads the stream until it ends; each item is printed as it arrives.
async fn follow(cfg: &Config, a: &TailArgs) -> Result<(), TailError> {
    let url = stream_url(cfg, a);
    let client = reqwest::Client::new();
    let mut req = client.get(&url).header("accept", "text/event-stream");
    if let Some(t) = &cfg.api.auth_token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.map_err(|source| TailError::Connect {
        url: url.clone(),
        source,
    })?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        return Err(TailError::Refused { status, body });
    }
    let mut pending = String::new();
    let mut event_name = String::new();
    let mut data = String::new();
    let stdout = std::io::stdout();
    while let Some(chunk) = resp.chunk().await.map_err(TailError::Stream)? {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(nl) = pending.find('\n') {
            let line: String = pending.drain(..=nl).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                // End of one event.
                if event_name == "dropped" {
                    return Err(TailError::Dropped(data));
                }
                if !data.is_empty() {
                    let out = if a.json {
                        data.clone()
                    } else {
                        match serde_json::from_str::<Value>(&data) {
                            Ok(v) => format_item(&v),
                            Err(_) => data.clone(),
                        }
                    };
                    let mut lock = stdout.lock();
                    let _ = writeln!(lock, "{out}");
                    let _ = lock.flush();
                }
                event_name.clear();
                data.clear();
            } else if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if let Some(e) = line.strip_prefix("event:") {
                event_name = e.trim().to_string();
            }
        }
    }
    Ok(())
}

pub fn run(cfg: &Config, a: &TailArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TailError::Runtime)
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("openclaw-trace: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = follow(cfg, a) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openclaw-trace: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_line() {
        let cfg = Config::default();
        let a = TailArgs {
            kind: Some("error".into()),
            agent: Some("my agent".into()),
            level: None,
            url: None,
            json: false,
        };
        assert_eq!(
            stream_url(&cfg, &a),
            "http://127.0.0.1:9090/v1/stream?kind=error&agent=my%20agent"
        );
        let line = format_item(&serde_json::json!({
            "time": "2024-01-01T10:00:01.234Z", "kind": "llm_call", "level": "info",
            "name": "chat gpt-4o", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 2,
            "trace_id": "ab"
        }));
        assert!(line.starts_with("10:00:01.234"), "{line}");
        assert!(line.contains("tokens=10/2"), "{line}");
        assert!(line.contains("trace=ab"), "{line}");
    }
}
