//! The OTLP receiver: traces, metrics and logs over OTLP/HTTP (protobuf or JSON, on the
//! main port and on a dedicated listener) and OTLP/gRPC, stored in the spine's data model.

pub mod convert;
pub mod decode;
pub mod grpc;
pub mod http;
pub mod mapping;

use std::net::SocketAddr;
use std::time::Instant;

use tokio::task::JoinHandle;

use crate::api::{AppState, SharedState, admission, refusing};
use crate::model::{Record, now_ns};
use crate::pipeline::SubmitError;
use crate::settings::Setting;

#[derive(Clone, Debug, PartialEq)]
pub struct OtlpConfig {
    /// The dedicated OTLP/HTTP listener; `None` when turned off.
    pub http_addr: Option<SocketAddr>,
    /// The OTLP/gRPC listener; `None` when turned off.
    pub grpc_addr: Option<SocketAddr>,
    /// True when the addresses were given, not defaults: then failing to bind is fatal.
    pub http_addr_explicit: bool,
    pub grpc_addr_explicit: bool,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 4318))),
            grpc_addr: Some(SocketAddr::from(([127, 0, 0, 1], 4317))),
            http_addr_explicit: false,
            grpc_addr_explicit: false,
        }
    }
}

/// `off` (or `none`, `disabled`) turns a listener off; otherwise an `ip:port` address.
fn parse_listen_addr(v: &str) -> Result<Option<SocketAddr>, String> {
    let t = v.trim();
    if ["off", "none", "disabled", "false"].contains(&t.to_ascii_lowercase().as_str()) {
        return Ok(None);
    }
    t.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| format!("expected an address such as 127.0.0.1:4318, or off; got {v:?}"))
}

pub const SETTINGS: &[Setting<OtlpConfig>] = &[
    Setting {
        name: "otlp_http_addr",
        env: "OCT_OTLP_HTTP_ADDR",
        default: "127.0.0.1:4318",
        help: "Dedicated OTLP/HTTP listener (POST /v1/traces, /v1/metrics, /v1/logs); off turns it off. The main port takes OTLP/HTTP too",
        set: |c, v| {
            c.http_addr = parse_listen_addr(v)?;
            c.http_addr_explicit = true;
            Ok(())
        },
    },
    Setting {
        name: "otlp_grpc_addr",
        env: "OCT_OTLP_GRPC_ADDR",
        default: "127.0.0.1:4317",
        help: "OTLP/gRPC listener (TraceService, MetricsService, LogsService); off turns it off",
        set: |c, v| {
            c.grpc_addr = parse_listen_addr(v)?;
            c.grpc_addr_explicit = true;
            Ok(())
        },
    },
];

/// The three OTLP signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    /// What the signal's items are called in messages.
    pub fn items(&self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }

    /// The top-level key of an OTLP/JSON document of this signal.
    pub fn json_key(&self) -> &'static str {
        match self {
            Signal::Traces => "resourceSpans",
            Signal::Metrics => "resourceMetrics",
            Signal::Logs => "resourceLogs",
        }
    }
}

/// Items refused from a request that was otherwise kept, with the first few reasons.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rejects {
    pub count: u64,
    pub messages: Vec<String>,
}

impl Rejects {
    const MAX_MESSAGES: usize = 5;

    pub fn add(&mut self, n: u64, message: String) {
        self.count += n;
        if self.messages.len() < Self::MAX_MESSAGES {
            self.messages.push(message);
        }
    }

    /// The partial-success message: how many, and why.
    pub fn message(&self, signal: Signal) -> String {
        if self.count == 0 {
            return String::new();
        }
        let mut m = format!(
            "{} {} rejected: {}",
            self.count,
            signal.items(),
            self.messages.join("; ")
        );
        if self.messages.len() == Self::MAX_MESSAGES {
            m.push_str("; ...");
        }
        m
    }
}

/// How a request body (and so its answer) is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// A request body, decoded as far as the transport goes.
pub enum Payload<'a> {
    Protobuf(&'a [u8]),
    /// OTLP/JSON text, decoded without a tree of the whole document.
    Json(&'a [u8]),
}

/// What an accepted export did.
#[derive(Debug, Default)]
pub struct Exported {
    pub accepted: u64,
    pub rejects: Rejects,
}

/// Why an export was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Decode(#[from] decode::DecodeError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("shutting down; retry shortly")]
    ShuttingDown,
}

/// Decodes, converts and enqueues one export request; nothing is written on error.
pub async fn export(
    st: &AppState,
    signal: Signal,
    payload: Payload<'_>,
) -> Result<Exported, ExportError> {
    if refusing(st) {
        return Err(ExportError::ShuttingDown);
    }
    let until = Instant::now() + admission::QUEUE_WAIT;
    // While the queue is full, wait holding only the request, before decoding it.
    admission::wait_for_room(st, 1, 0, until).await;
    let converted = convert_payload(st, signal, payload)?;
    let bytes = converted.records.iter().map(Record::approx_bytes).sum();
    admission::wait_for_room(st, converted.records.len(), bytes, until).await;
    st.pipeline.submit_sized("otlp", converted.records, bytes)?;
    Ok(Exported {
        accepted: converted.items,
        rejects: converted.rejects,
    })
}

fn convert_payload(
    st: &AppState,
    signal: Signal,
    payload: Payload,
) -> Result<convert::Converted, ExportError> {
    let limits = convert::Limits {
        max_text_bytes: st.config.ingest.text_limit(),
        now_ns: now_ns(),
    };
    let converted = match (signal, payload) {
        (Signal::Traces, Payload::Protobuf(b)) => {
            convert::traces(decode::protobuf(b)?, &limits, Rejects::default())
        }
        (Signal::Traces, Payload::Json(v)) => {
            let (req, rejects) = decode::json_traces(v)?;
            convert::traces(req, &limits, rejects)
        }
        (Signal::Logs, Payload::Protobuf(b)) => {
            convert::logs(decode::protobuf(b)?, &limits, Rejects::default())
        }
        (Signal::Logs, Payload::Json(v)) => {
            let (req, rejects) = decode::json_logs(v)?;
            convert::logs(req, &limits, rejects)
        }
        (Signal::Metrics, Payload::Protobuf(b)) => {
            convert::metrics(decode::protobuf(b)?, Rejects::default())
        }
        (Signal::Metrics, Payload::Json(v)) => {
            let (req, rejects) = decode::json_metrics(v)?;
            convert::metrics(req, rejects)
        }
    };
    if converted.rejects.count > 0 {
        tracing::debug!(
            signal = ?signal,
            rejected = converted.rejects.count,
            reason = %converted.rejects.message(signal),
            "OTLP items rejected"
        );
    }
    Ok(converted)
}

/// The dedicated listeners, running until `stop` turns true.
pub struct Listeners {
    pub http: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
    pub tasks: Vec<JoinHandle<()>>,
}

async fn bind(
    what: &str,
    addr: Option<SocketAddr>,
    explicit: bool,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    match crate::util::listen::listen(addr) {
        Ok(l) => Ok(Some(l)),
        // The default ports may belong to a collector already running here: run without them.
        Err(e) if !explicit => {
            tracing::warn!(addr = %addr, error = %e, "{what} listener not started (set its address, or off)");
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!("cannot listen for {what} on {addr}: {e}")),
    }
}

/// Binds and starts the dedicated OTLP/HTTP and OTLP/gRPC listeners.
pub async fn start(
    st: &SharedState,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Listeners> {
    let cfg = &st.config.otlp;
    let mut out = Listeners {
        http: None,
        grpc: None,
        tasks: Vec::new(),
    };
    if let Some(l) = bind("OTLP/HTTP", cfg.http_addr, cfg.http_addr_explicit).await? {
        let addr = l.local_addr()?;
        out.http = Some(addr);
        let app = http::router(st.clone());
        let l = crate::api::admission::CappedListener::new(l, st.admission.clone());
        let mut stop = stop.clone();
        out.tasks.push(tokio::spawn(async move {
            let served = axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "OTLP/HTTP listener failed");
            }
        }));
        tracing::info!(addr = %addr, "OTLP/HTTP listening");
    }
    if let Some(l) = bind("OTLP/gRPC", cfg.grpc_addr, cfg.grpc_addr_explicit).await? {
        let addr = l.local_addr()?;
        out.grpc = Some(addr);
        let st = st.clone();
        let mut stop = stop.clone();
        out.tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = grpc::serve(l, st, shutdown).await {
                tracing::error!(error = %e, "OTLP/gRPC listener failed");
            }
        }));
        tracing::info!(addr = %addr, "OTLP/gRPC listening");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen_addr("off").unwrap(), None);
        assert_eq!(parse_listen_addr(" OFF ").unwrap(), None);
        assert_eq!(
            parse_listen_addr("0.0.0.0:4317").unwrap(),
            Some(SocketAddr::from(([0, 0, 0, 0], 4317)))
        );
        assert!(parse_listen_addr("4317").is_err());
        assert!(parse_listen_addr("localhost:4317").is_err());
    }

    #[test]
    fn reject_messages_are_bounded() {
        let mut r = Rejects::default();
        for i in 0..10 {
            r.add(2, format!("span {i}: bad"));
        }
        assert_eq!(r.count, 20);
        let m = r.message(Signal::Traces);
        assert!(m.starts_with("20 spans rejected: span 0: bad;"), "{m}");
        assert!(m.ends_with("; ..."), "{m}");
    }
}
