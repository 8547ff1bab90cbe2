//! OTLP export: traces in the GenAI semantic conventions v1.41, logs/events, and
//! metrics (stored points plus `gen_ai.client.*` histograms derived from spans),
//! to any OTLP backend over http/protobuf, http/json or gRPC.
//!
//! Configuration: the `OCT_OTLP_EXPORT_*` settings, each falling back to the
//! standard `OTEL_*` variable when unset (the settings registry only knows `OCT_*`
//! names, so the `OTEL_*` ones are read here, with lower precedence).
//! Original trace ids, span ids and parent links are kept exactly.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, logs_service_client::LogsServiceClient,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, trace_service_client::TraceServiceClient,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use rusqlite::Connection;
use serde_json::Value;

use super::delivery::{self, Attempt, Redactor, parse_headers, redact_url};
use super::{
    Batch, Item, METRIC_COLS, MetricRow, Pacing, Selection, Sink, Stream, metric_row, scan,
};
use crate::settings::{Setting, parse_bool, parse_duration, parse_list, parse_u64};
use crate::store::StoreError;
use crate::store::query::{
    EVENT_COLS, EventOut, SPAN_COLS, SPAN_COLS_LEN, SpanOut, event_row, span_row,
};
use crate::util::hex;

pub const SINK: &str = "otlp_export";

/// Output attribute and metric names, kept together so the OTLP receiver's
/// mapping can share them.
pub mod names {
    pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const USAGE_CACHE_READ: &str = "gen_ai.usage.cache_read.input_tokens";
    pub const USAGE_CACHE_CREATION: &str = "gen_ai.usage.cache_creation.input_tokens";
    pub const USAGE_REASONING: &str = "gen_ai.usage.reasoning.output_tokens";
    pub const FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    pub const TOOL_NAME: &str = "gen_ai.tool.name";
    pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    pub const TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
    pub const TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
    pub const AGENT_ID: &str = "gen_ai.agent.id";
    pub const AGENT_NAME: &str = "gen_ai.agent.name";
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    pub const INPUT_MESSAGES: &str = "gen_ai.input.messages";
    pub const OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
    pub const SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
    pub const TOKEN_TYPE: &str = "gen_ai.token.type";
    pub const ERROR_TYPE: &str = "error.type";
    pub const USER_ID: &str = "user.id";
    pub const EXCEPTION: &str = "exception";
    pub const EXCEPTION_TYPE: &str = "exception.type";
    pub const EXCEPTION_MESSAGE: &str = "exception.message";
    pub const EXCEPTION_STACKTRACE: &str = "exception.stacktrace";
    pub const SERVICE_NAME: &str = "service.name";
    pub const HOST_NAME: &str = "host.name";
    // Names that predate semantic conventions 1.37, added by OCT_OTLP_EXPORT_FORMAT=legacy.
    pub const LEGACY_SYSTEM: &str = "gen_ai.system";
    pub const LEGACY_PROMPT_TOKENS: &str = "gen_ai.usage.prompt_tokens";
    pub const LEGACY_COMPLETION_TOKENS: &str = "gen_ai.usage.completion_tokens";
    pub const LEGACY_PROMPT: &str = "gen_ai.prompt";
    pub const LEGACY_COMPLETION: &str = "gen_ai.completion";
    // No convention exists for these; ours.
    pub const COST_USD: &str = "openclaw.cost.usd";
    pub const COST_SOURCE: &str = "openclaw.cost.source";
    pub const SPAN_KIND: &str = "openclaw.span.kind";
    pub const SOURCE: &str = "openclaw.source";
    pub const EVENT_TYPE: &str = "openclaw.event.type";
    pub const EVENT_CATEGORY: &str = "openclaw.event.category";
    // Metrics.
    pub const METRIC_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    pub const METRIC_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
    /// The specification's explicit bucket boundaries.
    pub const TOKEN_USAGE_BOUNDS: &[f64] = &[
        1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
        4194304.0, 16777216.0, 67108864.0,
    ];
    pub const DURATION_BOUNDS: &[f64] = &[
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ];
}

/// Attributes holding message content: sent only when content capture is on.
const CONTENT_ATTRIBUTES: &[&str] = &[
    names::INPUT_MESSAGES,
    names::OUTPUT_MESSAGES,
    names::SYSTEM_INSTRUCTIONS,
    names::TOOL_CALL_ARGUMENTS,
    names::TOOL_CALL_RESULT,
    names::LEGACY_PROMPT,
    names::LEGACY_COMPLETION,
    "input.value",
    "output.value",
];
const CONTENT_PREFIXES: &[&str] = &[
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages",
    "llm.output_messages",
];
const LEGACY_ATTRIBUTES: &[&str] = &[
    names::LEGACY_SYSTEM,
    names::LEGACY_PROMPT_TOKENS,
    names::LEGACY_COMPLETION_TOKENS,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

impl Protocol {
    fn parse(v: &str) -> Result<Self, String> {
        match v.trim() {
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Ok(Protocol::HttpJson),
            "grpc" => Ok(Protocol::Grpc),
            _ => Err(format!(
                "expected http/protobuf, http/json or grpc, got {v:?}"
            )),
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
            Protocol::Grpc => "grpc",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// GenAI semantic conventions v1.41 names only.
    Semconv,
    /// Also the pre-1.37 names (`gen_ai.system`, `gen_ai.usage.prompt_tokens`, ...).
    Legacy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signals {
    pub traces: bool,
    pub metrics: bool,
    pub logs: bool,
}

/// Settings as given; `None` falls back to the `OTEL_*` variable, then the default.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpExportConfig {
    pub endpoint: Option<String>,
    pub traces_endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub logs_endpoint: Option<String>,
    pub headers: Option<Vec<(String, String)>>,
    pub protocol: Option<Protocol>,
    pub timeout: Option<Duration>,
    pub gzip: Option<bool>,
    pub service_name: Option<String>,
    pub resource_attributes: Option<Vec<(String, String)>>,
    pub capture_content: Option<bool>,
    pub interval: Duration,
    pub batch_size: usize,
    pub format: Format,
    pub signals: Signals,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Default for OtlpExportConfig {
    fn default() -> Self {
        OtlpExportConfig {
            endpoint: None,
            traces_endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            headers: None,
            protocol: None,
            timeout: None,
            gzip: None,
            service_name: None,
            resource_attributes: None,
            capture_content: None,
            interval: Duration::from_secs(5),
            batch_size: 512,
            format: Format::Semconv,
            signals: Signals {
                traces: true,
                metrics: true,
                logs: true,
            },
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(120),
        }
    }
}

fn url_setting(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(v.to_string())
    } else {
        Err(format!(
            "expected an http:// or https:// URL, got {:?}",
            redact_url(v)
        ))
    }
}

fn kv_list(v: &str) -> Result<Vec<(String, String)>, String> {
    delivery::parse_pairs(v)
}

pub const SETTINGS: &[Setting<OtlpExportConfig>] = &[
    Setting {
        name: "otlp_export_endpoint",
        env: "OCT_OTLP_EXPORT_ENDPOINT",
        default: "$OTEL_EXPORTER_OTLP_ENDPOINT, else off",
        help: "OTLP base URL to export to (/v1/traces, /v1/metrics, /v1/logs are appended for HTTP); export is off when no endpoint is set",
        set: |c, v| {
            c.endpoint = Some(url_setting(v)?);
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_traces_endpoint",
        env: "OCT_OTLP_EXPORT_TRACES_ENDPOINT",
        default: "$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        help: "Full URL for traces (used as is)",
        set: |c, v| {
            c.traces_endpoint = Some(url_setting(v)?);
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_metrics_endpoint",
        env: "OCT_OTLP_EXPORT_METRICS_ENDPOINT",
        default: "$OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        help: "Full URL for metrics (used as is)",
        set: |c, v| {
            c.metrics_endpoint = Some(url_setting(v)?);
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_logs_endpoint",
        env: "OCT_OTLP_EXPORT_LOGS_ENDPOINT",
        default: "$OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        help: "Full URL for logs (used as is)",
        set: |c, v| {
            c.logs_endpoint = Some(url_setting(v)?);
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_headers",
        env: "OCT_OTLP_EXPORT_HEADERS",
        default: "$OTEL_EXPORTER_OTLP_HEADERS",
        help: "Request headers, name=value pairs separated by commas (values may be %-encoded)",
        set: |c, v| {
            c.headers = Some(parse_headers(v)?);
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_protocol",
        env: "OCT_OTLP_EXPORT_PROTOCOL",
        default: "$OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf",
        help: "http/protobuf, http/json or grpc",
        set: |c, v| {
            c.protocol = Some(Protocol::parse(v)?);
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_timeout",
        env: "OCT_OTLP_EXPORT_TIMEOUT",
        default: "$OTEL_EXPORTER_OTLP_TIMEOUT (milliseconds), else 10s",
        help: "Time allowed for one export request",
        set: |c, v| {
            c.timeout = Some(parse_duration(v)?);
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_compression",
        env: "OCT_OTLP_EXPORT_COMPRESSION",
        default: "$OTEL_EXPORTER_OTLP_COMPRESSION, else none",
        help: "gzip or none",
        set: |c, v| {
            c.gzip = Some(parse_compression(v)?);
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_service_name",
        env: "OCT_OTLP_EXPORT_SERVICE_NAME",
        default: "$OTEL_SERVICE_NAME, else openclaw",
        help: "service.name for records whose source did not name one",
        set: |c, v| {
            c.service_name = Some(v.trim().to_string());
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_resource_attributes",
        env: "OCT_OTLP_EXPORT_RESOURCE_ATTRIBUTES",
        default: "$OTEL_RESOURCE_ATTRIBUTES",
        help: "key=value pairs added to every resource that lacks them",
        set: |c, v| {
            c.resource_attributes = Some(kv_list(v)?);
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_capture_content",
        env: "OCT_OTLP_EXPORT_CAPTURE_CONTENT",
        default: "$OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, else off",
        help: "Export message content (gen_ai.input.messages / gen_ai.output.messages, tool arguments and results)",
        set: |c, v| {
            c.capture_content = Some(parse_bool(v)?);
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_interval",
        env: "OCT_OTLP_EXPORT_INTERVAL",
        default: "5s",
        help: "How often new records are exported",
        set: |c, v| {
            c.interval = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_batch_size",
        env: "OCT_OTLP_EXPORT_BATCH_SIZE",
        default: "512",
        help: "Records in one export request, at most",
        set: |c, v| {
            c.batch_size = parse_u64(v)?.clamp(1, 10_000) as usize;
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_format",
        env: "OCT_OTLP_EXPORT_FORMAT",
        default: "semconv",
        help: "semconv (GenAI conventions v1.41) or legacy (also the pre-1.37 attribute names)",
        set: |c, v| {
            c.format = match v.trim() {
                "semconv" => Format::Semconv,
                "legacy" => Format::Legacy,
                _ => return Err(format!("expected semconv or legacy, got {v:?}")),
            };
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_signals",
        env: "OCT_OTLP_EXPORT_SIGNALS",
        default: "traces,metrics,logs",
        help: "Which signals to export (a trace-only backend such as Jaeger or Tempo: traces)",
        set: |c, v| {
            let list = parse_list(v);
            for s in &list {
                if !["traces", "metrics", "logs"].contains(&s.as_str()) {
                    return Err(format!(
                        "expected a list of traces, metrics, logs, got {s:?}"
                    ));
                }
            }
            let has = |n: &str| list.iter().any(|s| s == n);
            c.signals = Signals {
                traces: has("traces"),
                metrics: has("metrics"),
                logs: has("logs"),
            };
            Ok(())
        },
    },
    Setting {
        name: "otlp_export_retry_max",
        env: "OCT_OTLP_EXPORT_RETRY_MAX",
        default: "2m",
        help: "Longest wait between export attempts while the backend stays down",
        set: |c, v| {
            c.retry_max = parse_duration(v)?;
            Ok(())
        },
    },
];

fn parse_compression(v: &str) -> Result<bool, String> {
    match v.trim() {
        "gzip" => Ok(true),
        "none" | "" => Ok(false),
        _ => Err(format!("expected gzip or none, got {v:?}")),
    }
}

/// The process environment, for the `OTEL_*` fallbacks (set but empty counts as unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// True when an endpoint is configured, in `OCT_*` or `OTEL_*` form.
pub fn enabled(cfg: &OtlpExportConfig, env: &dyn Fn(&str) -> Option<String>) -> bool {
    matches!(Resolved::from_config(cfg, env), Ok(Some(_)))
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Config(String),
    #[error("OTLP export: cannot build the client: {0}")]
    Client(String),
}

/// The export configuration with every fallback applied.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub traces_url: Option<String>,
    pub metrics_url: Option<String>,
    pub logs_url: Option<String>,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub gzip: bool,
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
    pub capture_content: bool,
    pub format: Format,
    pub signals: Signals,
    pub batch_size: usize,
    pub interval: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// `base` with `path` appended (the OTLP/HTTP rule for the base endpoint).
fn signal_url(base: &str, path: &str, protocol: Protocol) -> String {
    if protocol == Protocol::Grpc {
        return base.to_string();
    }
    let (b, query) = match base.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (base, String::new()),
    };
    format!("{}/{path}{query}", b.trim_end_matches('/'))
}

impl Resolved {
    /// None when no endpoint is configured. Errors name the variable at fault.
    pub fn from_config(
        cfg: &OtlpExportConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Resolved>, ExportError> {
        let bad = |var: &str, e: String| ExportError::Config(format!("{var}: {e}"));
        let url_env = |var: &str| -> Result<Option<String>, ExportError> {
            env(var)
                .map(|v| url_setting(&v).map_err(|e| bad(var, e)))
                .transpose()
        };
        let protocol = match cfg.protocol {
            Some(p) => p,
            None => match env("OTEL_EXPORTER_OTLP_PROTOCOL") {
                Some(v) => {
                    Protocol::parse(&v).map_err(|e| bad("OTEL_EXPORTER_OTLP_PROTOCOL", e))?
                }
                None => Protocol::HttpProtobuf,
            },
        };
        let base = match &cfg.endpoint {
            Some(e) => Some(e.clone()),
            None => url_env("OTEL_EXPORTER_OTLP_ENDPOINT")?,
        };
        let pick =
            |own: &Option<String>, var: &str, path: &str| -> Result<Option<String>, ExportError> {
                if let Some(e) = own {
                    return Ok(Some(e.clone()));
                }
                if let Some(e) = url_env(var)? {
                    return Ok(Some(e));
                }
                Ok(base.as_deref().map(|b| signal_url(b, path, protocol)))
            };
        let traces_url = pick(
            &cfg.traces_endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "v1/traces",
        )?;
        let metrics_url = pick(
            &cfg.metrics_endpoint,
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "v1/metrics",
        )?;
        let logs_url = pick(
            &cfg.logs_endpoint,
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "v1/logs",
        )?;
        let signals = Signals {
            traces: cfg.signals.traces && traces_url.is_some(),
            metrics: cfg.signals.metrics && metrics_url.is_some(),
            logs: cfg.signals.logs && logs_url.is_some(),
        };
        if !(signals.traces || signals.metrics || signals.logs) {
            return Ok(None);
        }
        let headers = match &cfg.headers {
            Some(h) => h.clone(),
            None => match env("OTEL_EXPORTER_OTLP_HEADERS") {
                Some(v) => parse_headers(&v).map_err(|e| bad("OTEL_EXPORTER_OTLP_HEADERS", e))?,
                None => Vec::new(),
            },
        };
        let timeout = match cfg.timeout {
            Some(t) => t,
            None => match env("OTEL_EXPORTER_OTLP_TIMEOUT") {
                // The specification gives this one in milliseconds.
                Some(v) => Duration::from_millis(v.trim().parse().map_err(|_| {
                    bad(
                        "OTEL_EXPORTER_OTLP_TIMEOUT",
                        format!("expected milliseconds, got {v:?}"),
                    )
                })?),
                None => Duration::from_secs(10),
            },
        }
        .max(Duration::from_millis(10));
        let gzip = match cfg.gzip {
            Some(g) => g,
            None => match env("OTEL_EXPORTER_OTLP_COMPRESSION") {
                Some(v) => {
                    parse_compression(&v).map_err(|e| bad("OTEL_EXPORTER_OTLP_COMPRESSION", e))?
                }
                None => false,
            },
        };
        let service_name = cfg
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "openclaw".into());
        let resource_attributes = match &cfg.resource_attributes {
            Some(r) => r.clone(),
            None => match env("OTEL_RESOURCE_ATTRIBUTES") {
                Some(v) => kv_list(&v).map_err(|e| bad("OTEL_RESOURCE_ATTRIBUTES", e))?,
                None => Vec::new(),
            },
        };
        let capture_content = match cfg.capture_content {
            Some(c) => c,
            None => match env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT") {
                Some(v) => parse_bool(&v)
                    .map_err(|e| bad("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", e))?,
                None => false,
            },
        };
        Ok(Some(Resolved {
            traces_url,
            metrics_url,
            logs_url,
            protocol,
            headers,
            timeout,
            gzip,
            service_name,
            resource_attributes,
            capture_content,
            format: cfg.format,
            signals,
            batch_size: cfg.batch_size,
            interval: cfg.interval,
            retry_initial: cfg.retry_initial,
            retry_max: cfg.retry_max,
        }))
    }

    /// The first configured URL, redacted, for logs and /health.
    pub fn target(&self) -> String {
        let url = self
            .traces_url
            .as_deref()
            .or(self.metrics_url.as_deref())
            .or(self.logs_url.as_deref())
            .unwrap_or("");
        redact_url(url)
    }

    pub fn pacing(&self) -> Pacing {
        Pacing {
            interval: self.interval,
            cycle_budget: Duration::from_secs(30),
            retry_initial: self.retry_initial,
            retry_max: self.retry_max,
            attempts_per_cycle: 5,
            first_delay: Duration::from_millis(200),
        }
    }

    /// True when an endpoint is this daemon's own API (exporting to ourselves would loop).
    pub fn points_at(&self, own: SocketAddr) -> bool {
        [&self.traces_url, &self.metrics_url, &self.logs_url]
            .into_iter()
            .flatten()
            .any(|u| url_addr_is(u, own))
    }
}

fn url_addr_is(url: &str, own: SocketAddr) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let Some((host, port)) = host_port.rsplit_once(':') else {
        return false;
    };
    let Ok(port) = port.parse::<u16>() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified() || ip == own.ip());
    port == own.port() && local
}

/// Which request a stream's items go into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Traces,
    Logs,
    Metrics,
    /// `gen_ai.client.*` histograms derived from LLM spans.
    GenAiMetrics,
}

const GENAI_METRICS_CURSOR: &str = "spans#genai_metrics";

fn signal_of(stream: &Stream) -> Signal {
    match (stream.table, stream.cursor) {
        ("spans", GENAI_METRICS_CURSOR) => Signal::GenAiMetrics,
        ("spans", _) => Signal::Traces,
        ("events", _) => Signal::Logs,
        _ => Signal::Metrics,
    }
}

/// An LLM call's figures for the `gen_ai.client.*` histograms.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GenAiSample {
    attributes: Vec<(&'static str, String)>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    duration_s: Option<f64>,
    end_ns: i64,
}

#[derive(Clone, Debug)]
pub enum Body {
    Span(Box<Span>),
    Log(Box<LogRecord>),
    Metric(Box<Metric>),
    GenAi(Box<GenAiSample>),
}

/// One record converted to OTLP, with its resource (as stored JSON) to group by.
#[derive(Clone, Debug)]
pub struct OtlpItem {
    row_id: i64,
    id: String,
    resource: Arc<str>,
    pub body: Body,
}

impl Item for OtlpItem {
    fn row_id(&self) -> i64 {
        self.row_id
    }
    fn record_id(&self) -> &str {
        &self.id
    }
    fn payload(&self) -> String {
        let v = match &self.body {
            Body::Span(s) => serde_json::to_value(s.as_ref()),
            Body::Log(l) => serde_json::to_value(l.as_ref()),
            Body::Metric(m) => serde_json::to_value(m.as_ref()),
            Body::GenAi(g) => serde_json::to_value(g.as_ref()),
        };
        v.map(|v| v.to_string()).unwrap_or_default()
    }
}

/// Turns stored rows into OTLP, the same way for the sink and the CLI.
pub struct Converter {
    pub format: Format,
    pub capture_content: bool,
    pub batch_size: usize,
    defaults: Vec<KeyValue>,
}

impl Converter {
    pub fn new(r: &Resolved) -> Self {
        let mut defaults = vec![kv(names::SERVICE_NAME, str_value(&r.service_name))];
        for (k, v) in &r.resource_attributes {
            if k != names::SERVICE_NAME {
                defaults.push(kv(k, str_value(v)));
            } else if let Some(first) = defaults.first_mut() {
                *first = kv(k, str_value(v));
            }
        }
        defaults.push(kv(names::HOST_NAME, str_value(&super::hostname())));
        Converter {
            format: r.format,
            capture_content: r.capture_content,
            batch_size: r.batch_size,
            defaults,
        }
    }

    /// A stored resource plus the configured defaults for keys it lacks.
    fn resource(&self, json: &str) -> Resource {
        let mut attributes = match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(m)) => attrs_from_json(&m),
            _ => Vec::new(),
        };
        for d in &self.defaults {
            if !attributes.iter().any(|a| a.key == d.key) {
                attributes.push(d.clone());
            }
        }
        Resource {
            attributes,
            ..Default::default()
        }
    }

    /// Reads up to a batch of rows of `table` with `id > after` matching `sel`.
    pub fn read(
        &self,
        conn: &Connection,
        table: &str,
        genai_only: bool,
        after: i64,
        sel: &Selection,
    ) -> Result<Batch<OtlpItem>, StoreError> {
        let mut batch = Batch::empty(after);
        let limit = self.batch_size;
        match table {
            "spans" => {
                let mut spans = Vec::new();
                scan(
                    conn,
                    "spans",
                    &format!("{SPAN_COLS}, id"),
                    after,
                    limit,
                    sel,
                    |r| {
                        spans.push((r.get::<_, i64>(SPAN_COLS_LEN)?, span_row(r)?));
                        Ok(true)
                    },
                )?;
                let exceptions = if genai_only {
                    HashMap::new()
                } else {
                    exceptions_for(conn, &spans)?
                };
                for (id, s) in spans {
                    batch.last_row_id = id;
                    let body = if genai_only {
                        // A finished agent run: its behavioural metrics as gauges.
                        for (name, m) in run_gauges(conn, &s)? {
                            batch.items.push(OtlpItem {
                                row_id: id,
                                id: format!("{}-{}-{name}", s.trace_id, s.span_id),
                                resource: Arc::from(s.resource.to_string()),
                                body: Body::Metric(Box::new(m)),
                            });
                        }
                        match genai_sample(&s) {
                            Some(g) => Body::GenAi(Box::new(g)),
                            None => continue,
                        }
                    } else {
                        let exc = exceptions.get(&s.span_id).map(Vec::as_slice).unwrap_or(&[]);
                        Body::Span(Box::new(self.span(&s, exc)))
                    };
                    batch.items.push(OtlpItem {
                        row_id: id,
                        id: format!("{}-{}", s.trace_id, s.span_id),
                        resource: Arc::from(s.resource.to_string()),
                        body,
                    });
                }
            }
            "events" => scan(conn, "events", EVENT_COLS, after, limit, sel, |r| {
                let e = event_row(r)?;
                batch.last_row_id = e.rowid;
                batch.items.push(OtlpItem {
                    row_id: e.rowid,
                    id: e.id.clone(),
                    resource: Arc::from(e.resource.to_string()),
                    body: Body::Log(Box::new(self.log(&e))),
                });
                Ok(true)
            })?,
            "metric_points" => scan(conn, "metric_points", METRIC_COLS, after, limit, sel, |r| {
                let m = metric_row(r)?;
                batch.last_row_id = m.id;
                batch.items.push(OtlpItem {
                    row_id: m.id,
                    id: format!("m{}-{}", m.id, m.time_ns),
                    resource: Arc::from(m.resource.to_string()),
                    body: Body::Metric(Box::new(metric(&m))),
                });
                Ok(true)
            })?,
            _ => {}
        }
        Ok(batch)
    }

    /// A stored span in GenAI semantic conventions, ids and parent kept exactly.
    pub fn span(&self, s: &SpanOut, linked_errors: &[LinkedError]) -> Span {
        let mut attrs: BTreeMap<String, any_value::Value> = BTreeMap::new();
        if let Value::Object(m) = &s.attributes {
            for (k, v) in m {
                if self.drops(k) {
                    continue;
                }
                if let Some(v) = any_value(v) {
                    attrs.insert(k.clone(), v);
                }
            }
        }
        let mut set = |k: &str, v: Option<any_value::Value>| {
            if let Some(v) = v {
                attrs.insert(k.to_string(), v);
            }
        };
        let text =
            |v: &Option<String>| v.as_ref().map(|t| any_value::Value::StringValue(t.clone()));
        let int = |v: Option<i64>| v.map(any_value::Value::IntValue);
        let operation = s
            .operation
            .clone()
            .or_else(|| default_operation(&s.kind).map(String::from));
        let agent_name = match &s.attributes {
            Value::Object(m) => m
                .get(names::AGENT_NAME)
                .and_then(Value::as_str)
                .map(String::from),
            _ => None,
        }
        .or_else(|| s.agent_id.clone());
        let model = s.request_model.clone().or_else(|| s.response_model.clone());
        let name = match (s.kind.as_str(), &operation) {
            ("llm_call" | "embedding", Some(op)) => match &model {
                Some(m) => format!("{op} {m}"),
                None => s.name.clone(),
            },
            ("tool_call", _) => match &s.tool_name {
                Some(t) => format!("execute_tool {t}"),
                None => s.name.clone(),
            },
            ("agent_run", _) => match &agent_name {
                Some(a) => format!("invoke_agent {a}"),
                None => "invoke_agent".into(),
            },
            _ => s.name.clone(),
        };
        set(names::OPERATION_NAME, text(&operation));
        set(names::PROVIDER_NAME, text(&s.provider));
        set(names::REQUEST_MODEL, text(&s.request_model));
        set(names::RESPONSE_MODEL, text(&s.response_model));
        set(names::USAGE_INPUT_TOKENS, int(s.input_tokens));
        set(names::USAGE_OUTPUT_TOKENS, int(s.output_tokens));
        set(names::USAGE_CACHE_READ, int(s.cache_read_tokens));
        set(names::USAGE_CACHE_CREATION, int(s.cache_write_tokens));
        set(names::USAGE_REASONING, int(s.reasoning_tokens));
        if let Value::Array(reasons) = &s.finish_reasons
            && !reasons.is_empty()
        {
            set(names::FINISH_REASONS, any_value(&s.finish_reasons));
        }
        set(names::TOOL_NAME, text(&s.tool_name));
        set(names::TOOL_CALL_ID, text(&s.tool_call_id));
        set(names::AGENT_ID, text(&s.agent_id));
        if s.kind == "agent_run" {
            set(names::AGENT_NAME, text(&agent_name));
        }
        set(names::CONVERSATION_ID, text(&s.session_id));
        set(names::USER_ID, text(&s.user_id));
        let error_type = s
            .error_type
            .clone()
            .or_else(|| (s.status == "error").then(|| "_OTHER".to_string()));
        set(names::ERROR_TYPE, text(&error_type));
        set(
            names::COST_USD,
            s.cost_usd.map(any_value::Value::DoubleValue),
        );
        set(names::COST_SOURCE, text(&s.cost_source));
        set(
            names::SPAN_KIND,
            Some(any_value::Value::StringValue(s.kind.clone())),
        );
        set(
            names::SOURCE,
            Some(any_value::Value::StringValue(s.source.clone())),
        );
        if self.capture_content {
            let finish = match &s.finish_reasons {
                Value::Array(a) => a
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or("stop")
                    .to_string(),
                _ => "stop".into(),
            };
            match s.kind.as_str() {
                "tool_call" => {
                    set(names::TOOL_CALL_ARGUMENTS, text(&s.input_text));
                    set(names::TOOL_CALL_RESULT, text(&s.output_text));
                }
                _ => {
                    set(
                        names::INPUT_MESSAGES,
                        s.input_text
                            .as_deref()
                            .map(|t| any_value::Value::StringValue(input_messages(t))),
                    );
                    set(
                        names::OUTPUT_MESSAGES,
                        s.output_text
                            .as_deref()
                            .map(|t| any_value::Value::StringValue(output_messages(t, &finish))),
                    );
                }
            }
        }
        if self.format == Format::Legacy {
            set(names::LEGACY_SYSTEM, text(&s.provider));
            set(names::LEGACY_PROMPT_TOKENS, int(s.input_tokens));
            set(names::LEGACY_COMPLETION_TOKENS, int(s.output_tokens));
            if self.capture_content && s.kind != "tool_call" {
                set(names::LEGACY_PROMPT, text(&s.input_text));
                set(names::LEGACY_COMPLETION, text(&s.output_text));
            }
        }
        let end_ns = s.end_ns.unwrap_or(s.start_ns);
        let mut events: Vec<span::Event> = linked_errors
            .iter()
            .map(|e| {
                exception_event(
                    e.time_ns,
                    &e.error_type,
                    e.message.as_deref(),
                    e.stack_trace.as_deref(),
                )
            })
            .collect();
        if s.status == "error" && events.is_empty() {
            let ty = s.error_type.clone().unwrap_or_else(|| "error".into());
            events.push(exception_event(
                end_ns,
                &ty,
                s.status_message.as_deref(),
                None,
            ));
        }
        let status = match s.status.as_str() {
            "error" => Some(Status {
                code: 2,
                message: s.status_message.clone().unwrap_or_default(),
            }),
            "ok" => Some(Status {
                code: 1,
                message: String::new(),
            }),
            _ => None,
        };
        Span {
            trace_id: hex_bytes(&s.trace_id),
            span_id: hex_bytes(&s.span_id),
            parent_span_id: s
                .parent_span_id
                .as_deref()
                .map(hex_bytes)
                .unwrap_or_default(),
            name,
            // LLM and embedding calls are calls out of the process; the rest happen inside it.
            kind: if matches!(s.kind.as_str(), "llm_call" | "embedding") {
                3
            } else {
                1
            },
            start_time_unix_nano: s.start_ns.max(0) as u64,
            end_time_unix_nano: end_ns.max(0) as u64,
            attributes: attrs
                .into_iter()
                .map(|(key, v)| KeyValue {
                    key,
                    value: Some(AnyValue { value: Some(v) }),
                    ..Default::default()
                })
                .collect(),
            events,
            status,
            ..Default::default()
        }
    }

    /// Whether an attribute from the source is left out (content when capture is off,
    /// pre-1.37 names unless asked for; ours replace them).
    fn drops(&self, key: &str) -> bool {
        if !self.capture_content
            && (CONTENT_ATTRIBUTES.contains(&key)
                || CONTENT_PREFIXES.iter().any(|p| key.starts_with(p)))
        {
            return true;
        }
        self.format == Format::Semconv && LEGACY_ATTRIBUTES.contains(&key)
    }

    /// An event row as an OTLP log record (errors carry `exception.*`).
    pub fn log(&self, e: &EventOut) -> LogRecord {
        let mut attributes = match &e.attributes {
            Value::Object(m) => attrs_from_json(m),
            _ => Vec::new(),
        };
        attributes.retain(|a| !self.drops(&a.key));
        let mut push = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                attributes.push(kv(k, str_value(v)));
            }
        };
        push(names::EVENT_TYPE, &Some(e.event_type.clone()));
        push(names::EVENT_CATEGORY, &e.category);
        push(names::AGENT_ID, &e.agent_id);
        push(names::CONVERSATION_ID, &e.session_id);
        push(names::USER_ID, &e.user_id);
        let event_name = if e.event_type == "error" {
            push(names::EXCEPTION_TYPE, &Some(e.name.clone()));
            push(names::EXCEPTION_MESSAGE, &e.message);
            push(names::EXCEPTION_STACKTRACE, &e.stack_trace);
            names::EXCEPTION.to_string()
        } else {
            e.name.clone()
        };
        let (number, text) = severity(&e.severity);
        LogRecord {
            time_unix_nano: e.time_ns.max(0) as u64,
            observed_time_unix_nano: e.time_ns.max(0) as u64,
            severity_number: number,
            severity_text: text.to_string(),
            body: Some(str_value(e.message.as_deref().unwrap_or(&e.name))),
            attributes,
            trace_id: e.trace_id.as_deref().map(hex_bytes).unwrap_or_default(),
            span_id: e.span_id.as_deref().map(hex_bytes).unwrap_or_default(),
            event_name,
            ..Default::default()
        }
    }

    pub fn traces_request(&self, items: &[OtlpItem]) -> ExportTraceServiceRequest {
        let groups = group(items, |b| match b {
            Body::Span(s) => Some(s.as_ref().clone()),
            _ => None,
        });
        ExportTraceServiceRequest {
            resource_spans: groups
                .into_iter()
                .map(|(res, spans)| ResourceSpans {
                    resource: Some(self.resource(&res)),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(scope()),
                        spans,
                        schema_url: names::SCHEMA_URL.into(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        }
    }

    pub fn logs_request(&self, items: &[OtlpItem]) -> ExportLogsServiceRequest {
        let groups = group(items, |b| match b {
            Body::Log(l) => Some(l.as_ref().clone()),
            _ => None,
        });
        ExportLogsServiceRequest {
            resource_logs: groups
                .into_iter()
                .map(|(res, log_records)| ResourceLogs {
                    resource: Some(self.resource(&res)),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope()),
                        log_records,
                        schema_url: names::SCHEMA_URL.into(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        }
    }

    pub fn metrics_request(&self, items: &[OtlpItem]) -> ExportMetricsServiceRequest {
        let mut groups = group(items, |b| match b {
            Body::Metric(m) => Some(m.as_ref().clone()),
            _ => None,
        });
        let samples: Vec<(Arc<str>, &GenAiSample)> = items
            .iter()
            .filter_map(|i| match &i.body {
                Body::GenAi(g) => Some((i.resource.clone(), g.as_ref())),
                _ => None,
            })
            .collect();
        for (res, metrics) in genai_metrics(&samples) {
            match groups.iter_mut().find(|(r, _)| **r == *res) {
                Some((_, v)) => v.extend(metrics),
                None => groups.push((res, metrics)),
            }
        }
        ExportMetricsServiceRequest {
            resource_metrics: groups
                .into_iter()
                .map(|(res, metrics)| ResourceMetrics {
                    resource: Some(self.resource(&res)),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(scope()),
                        metrics,
                        schema_url: names::SCHEMA_URL.into(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        }
    }
}

/// Items' bodies grouped by resource, in first-seen order.
fn group<T>(items: &[OtlpItem], pick: impl Fn(&Body) -> Option<T>) -> Vec<(Arc<str>, Vec<T>)> {
    let mut out: Vec<(Arc<str>, Vec<T>)> = Vec::new();
    let mut index: HashMap<Arc<str>, usize> = HashMap::new();
    for it in items {
        let Some(v) = pick(&it.body) else { continue };
        match index.get(&it.resource) {
            Some(&i) => out[i].1.push(v),
            None => {
                index.insert(it.resource.clone(), out.len());
                out.push((it.resource.clone(), vec![v]));
            }
        }
    }
    out
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "openclaw-trace".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

fn default_operation(kind: &str) -> Option<&'static str> {
    match kind {
        "llm_call" => Some("chat"),
        "embedding" => Some("embeddings"),
        "tool_call" => Some("execute_tool"),
        "agent_run" => Some("invoke_agent"),
        _ => None,
    }
}

/// Stored text as `gen_ai.input.messages`: kept as is when it already is a message list.
fn input_messages(text: &str) -> String {
    if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(text)
        && a.iter()
            .all(|m| m.get("role").is_some() && m.get("parts").is_some())
    {
        return text.to_string();
    }
    serde_json::json!([{"role": "user", "parts": [{"type": "text", "content": text}]}]).to_string()
}

fn output_messages(text: &str, finish_reason: &str) -> String {
    if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(text)
        && a.iter()
            .all(|m| m.get("role").is_some() && m.get("parts").is_some())
    {
        return text.to_string();
    }
    serde_json::json!([{"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": finish_reason}])
        .to_string()
}

/// An error event tied to a span, shown on it as an `exception` event.
#[derive(Clone, Debug)]
pub struct LinkedError {
    time_ns: i64,
    error_type: String,
    message: Option<String>,
    stack_trace: Option<String>,
}

/// Error events of the batch's traces, by span id (one indexed lookup per trace).
fn exceptions_for(
    conn: &Connection,
    spans: &[(i64, SpanOut)],
) -> Result<HashMap<String, Vec<LinkedError>>, StoreError> {
    let mut out: HashMap<String, Vec<LinkedError>> = HashMap::new();
    let mut traces: Vec<&str> = spans.iter().map(|(_, s)| s.trace_id.as_str()).collect();
    traces.sort_unstable();
    traces.dedup();
    let mut stmt = conn.prepare_cached(
        "SELECT span_id, time_ns, name, message, stack_trace FROM events
         WHERE trace_id = ?1 AND type = 'error' AND span_id IS NOT NULL ORDER BY time_ns, id",
    )?;
    for t in traces {
        let rows = stmt.query_map([hex_bytes(t)], |r| {
            Ok((
                hex::encode(&r.get::<_, Vec<u8>>(0)?),
                LinkedError {
                    time_ns: r.get(1)?,
                    error_type: r.get(2)?,
                    message: r.get(3)?,
                    stack_trace: r.get(4)?,
                },
            ))
        })?;
        for row in rows {
            let (span_id, e) = row?;
            out.entry(span_id).or_default().push(e);
        }
    }
    Ok(out)
}

fn exception_event(
    time_ns: i64,
    ty: &str,
    message: Option<&str>,
    stack: Option<&str>,
) -> span::Event {
    let mut attributes = vec![kv(names::EXCEPTION_TYPE, str_value(ty))];
    if let Some(m) = message {
        attributes.push(kv(names::EXCEPTION_MESSAGE, str_value(m)));
    }
    if let Some(s) = stack {
        attributes.push(kv(names::EXCEPTION_STACKTRACE, str_value(s)));
    }
    span::Event {
        time_unix_nano: time_ns.max(0) as u64,
        name: names::EXCEPTION.into(),
        attributes,
        ..Default::default()
    }
}

fn severity(s: &str) -> (i32, &'static str) {
    match s.to_ascii_lowercase().as_str() {
        "trace" => (1, "TRACE"),
        "debug" => (5, "DEBUG"),
        "warn" | "warning" => (13, "WARN"),
        "error" => (17, "ERROR"),
        "fatal" | "critical" => (21, "FATAL"),
        _ => (9, "INFO"),
    }
}

/// Prefix of the per-run gauges: `openclaw_trace.run.<metric>` (the baselines' figures).
pub const RUN_GAUGE_PREFIX: &str = "openclaw_trace.run.";

/// A finished agent run's behavioural metrics (the baselines' figures: cost, duration,
/// calls, rates, blast radius, tokens per call) and its evaluation scores, as gauges
/// with one point each at the run's end, by agent (`gen_ai.agent.id`) and run
/// (`openclaw_trace.run.id`). Nothing for other spans.
fn run_gauges(conn: &Connection, s: &SpanOut) -> Result<Vec<(String, Metric)>, StoreError> {
    if s.kind != "agent_run" || s.parent_span_id.is_some() || s.end_ns.is_none() {
        return Ok(Vec::new());
    }
    let Some(id) = crate::model::TraceId::parse_hex(&s.trace_id) else {
        return Ok(Vec::new());
    };
    let Some(run) = crate::analytics::baseline::run(conn, &id)? else {
        return Ok(Vec::new());
    };
    let mut base = vec![kv("openclaw_trace.run.id", str_value(&run.run_id))];
    if let Some(a) = &run.agent_id {
        base.push(kv(names::AGENT_ID, str_value(a)));
    }
    let (start, end) = (
        s.start_ns.max(0) as u64,
        s.end_ns.unwrap_or(s.start_ns).max(0) as u64,
    );
    let gauge = |name: String, unit: &str, value: f64, attributes: Vec<KeyValue>| Metric {
        name,
        description: "A finished agent run's figure (openclaw-trace baselines)".into(),
        unit: unit.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: end,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let mut out = Vec::new();
    for (name, v) in &run.values {
        let Some(v) = v else { continue };
        let unit = if name.ends_with("_usd") {
            "USD"
        } else if name.ends_with("_ms") {
            "ms"
        } else {
            "1"
        };
        out.push((
            name.to_string(),
            gauge(format!("{RUN_GAUGE_PREFIX}{name}"), unit, *v, base.clone()),
        ));
    }
    for (name, v) in &run.scores {
        let mut attributes = base.clone();
        attributes.push(kv(crate::model::evaluation::NAME, str_value(name)));
        out.push((
            format!("score.{name}"),
            gauge(format!("{RUN_GAUGE_PREFIX}score"), "1", *v, attributes),
        ));
    }
    Ok(out)
}

fn genai_sample(s: &SpanOut) -> Option<GenAiSample> {
    if !matches!(s.kind.as_str(), "llm_call" | "embedding") {
        return None;
    }
    let mut attributes = Vec::new();
    let op = s
        .operation
        .clone()
        .or_else(|| default_operation(&s.kind).map(String::from))?;
    attributes.push((names::OPERATION_NAME, op));
    for (k, v) in [
        (names::PROVIDER_NAME, &s.provider),
        (names::REQUEST_MODEL, &s.request_model),
        (names::RESPONSE_MODEL, &s.response_model),
    ] {
        if let Some(v) = v {
            attributes.push((k, v.clone()));
        }
    }
    if s.status == "error" {
        attributes.push((
            names::ERROR_TYPE,
            s.error_type.clone().unwrap_or_else(|| "_OTHER".into()),
        ));
    }
    Some(GenAiSample {
        attributes,
        input_tokens: s.input_tokens,
        output_tokens: s.output_tokens,
        duration_s: s.end_ns.map(|e| (e - s.start_ns).max(0) as f64 / 1e9),
        end_ns: s.end_ns.unwrap_or(s.start_ns),
    })
}

/// Delta histograms over one batch of samples, one point per attribute set, per resource.
fn genai_metrics(samples: &[(Arc<str>, &GenAiSample)]) -> Vec<(Arc<str>, Vec<Metric>)> {
    type Key = (Arc<str>, Vec<(&'static str, String)>);
    let mut tokens: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    let mut durations: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    let (mut start, mut end) = (i64::MAX, i64::MIN);
    for (res, s) in samples {
        start = start.min(s.end_ns);
        end = end.max(s.end_ns);
        for (ty, n) in [("input", s.input_tokens), ("output", s.output_tokens)] {
            if let Some(n) = n {
                let mut a = s.attributes.clone();
                a.push((names::TOKEN_TYPE, ty.into()));
                tokens.entry((res.clone(), a)).or_default().push(n as f64);
            }
        }
        if let Some(d) = s.duration_s {
            durations
                .entry((res.clone(), s.attributes.clone()))
                .or_default()
                .push(d);
        }
    }
    if samples.is_empty() {
        return Vec::new();
    }
    let mut by_resource: Vec<(Arc<str>, Vec<Metric>)> = Vec::new();
    let mut add = |name: &str, unit: &str, bounds: &[f64], data: BTreeMap<Key, Vec<f64>>| {
        let mut per_res: BTreeMap<Arc<str>, Vec<HistogramDataPoint>> = BTreeMap::new();
        for ((res, attrs), values) in data {
            per_res
                .entry(res)
                .or_default()
                .push(histogram_point(&attrs, &values, bounds, start, end));
        }
        for (res, data_points) in per_res {
            let m = Metric {
                name: name.into(),
                unit: unit.into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points,
                    aggregation_temporality: 1,
                })),
                ..Default::default()
            };
            match by_resource.iter_mut().find(|(r, _)| *r == res) {
                Some((_, v)) => v.push(m),
                None => by_resource.push((res, vec![m])),
            }
        }
    };
    add(
        names::METRIC_TOKEN_USAGE,
        "{token}",
        names::TOKEN_USAGE_BOUNDS,
        tokens,
    );
    add(
        names::METRIC_OPERATION_DURATION,
        "s",
        names::DURATION_BOUNDS,
        durations,
    );
    by_resource
}

fn histogram_point(
    attrs: &[(&'static str, String)],
    values: &[f64],
    bounds: &[f64],
    start: i64,
    end: i64,
) -> HistogramDataPoint {
    let mut bucket_counts = vec![0u64; bounds.len() + 1];
    for v in values {
        // Buckets are (previous bound, bound]: the first bound not below the value.
        let i = bounds.iter().position(|b| v <= b).unwrap_or(bounds.len());
        bucket_counts[i] += 1;
    }
    HistogramDataPoint {
        attributes: attrs.iter().map(|(k, v)| kv(k, str_value(v))).collect(),
        start_time_unix_nano: start.max(0) as u64,
        time_unix_nano: end.max(0) as u64,
        count: values.len() as u64,
        sum: Some(values.iter().sum()),
        bucket_counts,
        explicit_bounds: bounds.to_vec(),
        min: values.iter().copied().reduce(f64::min),
        max: values.iter().copied().reduce(f64::max),
        ..Default::default()
    }
}

/// A stored metric point as an OTLP metric with one data point.
fn metric(m: &MetricRow) -> Metric {
    let attributes = match &m.attributes {
        Value::Object(a) => attrs_from_json(a),
        _ => Vec::new(),
    };
    let start = m.start_time_ns.unwrap_or(0).max(0) as u64;
    let time = m.time_ns.max(0) as u64;
    let temporality = match m.temporality.as_deref() {
        Some("delta") => 1,
        _ => 2,
    };
    let number = || NumberDataPoint {
        attributes: attributes.clone(),
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: m.value.map(number_data_point::Value::AsDouble),
        ..Default::default()
    };
    let data = match m.kind.as_str() {
        "sum" => metric::Data::Sum(Sum {
            data_points: vec![number()],
            aggregation_temporality: temporality,
            is_monotonic: m.monotonic.unwrap_or(false),
        }),
        "histogram" => {
            let floats = |v: &Option<Value>| -> Vec<f64> {
                v.as_ref()
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default()
            };
            metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count: m.count.unwrap_or(0).max(0) as u64,
                    sum: m.sum,
                    bucket_counts: floats(&m.bucket_counts)
                        .into_iter()
                        .map(|c| c.max(0.0) as u64)
                        .collect(),
                    explicit_bounds: floats(&m.bounds),
                    min: m.min,
                    max: m.max,
                    ..Default::default()
                }],
                aggregation_temporality: temporality,
            })
        }
        _ => metric::Data::Gauge(Gauge {
            data_points: vec![number()],
        }),
    };
    Metric {
        name: m.name.clone(),
        unit: m.unit.clone(),
        data: Some(data),
        ..Default::default()
    }
}

fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(v),
        ..Default::default()
    }
}

fn str_value(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    }
}

fn any_value(v: &Value) -> Option<any_value::Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64()?),
        },
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        Value::Array(a) => any_value::Value::ArrayValue(ArrayValue {
            values: a
                .iter()
                .filter_map(any_value)
                .map(|v| AnyValue { value: Some(v) })
                .collect(),
        }),
        Value::Object(m) => any_value::Value::KvlistValue(KeyValueList {
            values: attrs_from_json(m),
        }),
    })
}

fn attrs_from_json(m: &serde_json::Map<String, Value>) -> Vec<KeyValue> {
    m.iter()
        .filter_map(|(k, v)| {
            any_value(v).map(|v| KeyValue {
                key: k.clone(),
                value: Some(AnyValue { value: Some(v) }),
                ..Default::default()
            })
        })
        .collect()
}

fn hex_bytes(h: &str) -> Vec<u8> {
    let mut out = vec![0u8; h.len() / 2];
    if hex::decode_into(h, &mut out) {
        out
    } else {
        Vec::new()
    }
}

/// Sends OTLP requests over the configured protocol.
pub struct Transport {
    protocol: Protocol,
    http: reqwest::Client,
    headers: reqwest::header::HeaderMap,
    gzip: bool,
    grpc: Option<tonic::transport::Channel>,
    grpc_headers: tonic::metadata::MetadataMap,
}

impl Transport {
    pub fn new(r: &Resolved) -> Result<Transport, ExportError> {
        use reqwest::header::{HeaderName, HeaderValue};
        let mut headers = reqwest::header::HeaderMap::new();
        let mut grpc_headers = tonic::metadata::MetadataMap::new();
        for (k, v) in &r.headers {
            let bad = || ExportError::Config(format!("OTLP export header {k}: not a valid header"));
            let mut value = HeaderValue::from_str(v).map_err(|_| bad())?;
            value.set_sensitive(true);
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).map_err(|_| bad())?,
                value,
            );
            let key =
                tonic::metadata::AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .map_err(|_| bad())?;
            grpc_headers.insert(key, v.parse().map_err(|_| bad())?);
        }
        let http = reqwest::Client::builder()
            .timeout(r.timeout)
            .connect_timeout(r.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("openclaw-trace/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExportError::Client(e.to_string()))?;
        let grpc = if r.protocol == Protocol::Grpc {
            let url = r
                .traces_url
                .clone()
                .or(r.metrics_url.clone())
                .or(r.logs_url.clone())
                .unwrap_or_default();
            let mut ep = tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|e| {
                    ExportError::Config(format!("OTLP gRPC endpoint {}: {e}", redact_url(&url)))
                })?
                .timeout(r.timeout)
                .connect_timeout(r.timeout.min(Duration::from_secs(10)));
            if url.starts_with("https://") {
                ep = ep
                    .tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())
                    .map_err(|e| ExportError::Client(e.to_string()))?;
            }
            // tonic's own connector resolves with getaddrinfo; this one needs no NSS.
            Some(ep.connect_with_connector_lazy(crate::util::dns::http_connector()))
        } else {
            None
        };
        Ok(Transport {
            protocol: r.protocol,
            http,
            headers,
            gzip: r.gzip,
            grpc,
            grpc_headers,
        })
    }

    async fn post(&self, url: &str, body: Vec<u8>, content_type: &'static str) -> Attempt {
        use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let body = if self.gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            match enc.write_all(&body).and_then(|_| enc.finish()) {
                Ok(b) => {
                    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    b
                }
                Err(_) => body,
            }
        } else {
            body
        };
        let resp = match self.http.post(url).headers(headers).body(body).send().await {
            Ok(r) => r,
            Err(e) => return delivery::classify_reqwest(e),
        };
        let (status, retry_after, text) = delivery::read_answer(resp).await;
        delivery::classify_http(status, retry_after, &text)
    }

    fn grpc_request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        *req.metadata_mut() = self.grpc_headers.clone();
        req
    }

    /// Posts an export request over HTTP in the configured encoding (JSON or protobuf).
    async fn post_message<M: Message + serde::Serialize>(&self, url: &str, req: &M) -> Attempt {
        if self.protocol == Protocol::HttpJson {
            match serde_json::to_vec(req) {
                Ok(b) => self.post(url, b, "application/json").await,
                Err(e) => unencodable(e),
            }
        } else {
            self.post(url, req.encode_to_vec(), "application/x-protobuf")
                .await
        }
    }

    pub async fn traces(&self, url: &str, req: ExportTraceServiceRequest) -> Attempt {
        match (self.protocol, &self.grpc) {
            (Protocol::Grpc, Some(ch)) => {
                let mut c = TraceServiceClient::new(ch.clone());
                if self.gzip {
                    c = c.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                grpc_outcome(c.export(self.grpc_request(req)).await.map(|_| ()))
            }
            _ => self.post_message(url, &req).await,
        }
    }

    pub async fn logs(&self, url: &str, req: ExportLogsServiceRequest) -> Attempt {
        match (self.protocol, &self.grpc) {
            (Protocol::Grpc, Some(ch)) => {
                let mut c = LogsServiceClient::new(ch.clone());
                if self.gzip {
                    c = c.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                grpc_outcome(c.export(self.grpc_request(req)).await.map(|_| ()))
            }
            _ => self.post_message(url, &req).await,
        }
    }

    pub async fn metrics(&self, url: &str, req: ExportMetricsServiceRequest) -> Attempt {
        match (self.protocol, &self.grpc) {
            (Protocol::Grpc, Some(ch)) => {
                let mut c = MetricsServiceClient::new(ch.clone());
                if self.gzip {
                    c = c.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                grpc_outcome(c.export(self.grpc_request(req)).await.map(|_| ()))
            }
            _ => self.post_message(url, &req).await,
        }
    }
}

fn unencodable(e: serde_json::Error) -> Attempt {
    Attempt::Reject {
        status: 0,
        reason: format!("cannot encode as JSON: {e}"),
    }
}

/// gRPC status codes mapped onto the same rules as HTTP answers.
fn grpc_outcome(r: Result<(), tonic::Status>) -> Attempt {
    use tonic::Code;
    let st = match r {
        Ok(()) => return Attempt::Delivered,
        Err(st) => st,
    };
    let reason = format!("gRPC {:?}: {}", st.code(), st.message());
    match st.code() {
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss
        | Code::Internal
        | Code::Unknown => Attempt::Retry {
            reason,
            retry_after: None,
        },
        Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented | Code::NotFound => {
            Attempt::Refused {
                status: st.code() as u16,
                reason,
            }
        }
        _ => Attempt::Reject {
            status: st.code() as u16,
            reason,
        },
    }
}

/// The exporter as a sink.
pub struct OtlpSink {
    resolved: Resolved,
    converter: Converter,
    transport: Transport,
    redactor: Redactor,
}

impl OtlpSink {
    pub fn new(resolved: Resolved) -> Result<OtlpSink, ExportError> {
        let urls: Vec<&str> = [
            &resolved.traces_url,
            &resolved.metrics_url,
            &resolved.logs_url,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
        Ok(OtlpSink {
            converter: Converter::new(&resolved),
            transport: Transport::new(&resolved)?,
            redactor: Redactor::new(&urls, &[], &resolved.headers),
            resolved,
        })
    }
}

impl Sink for OtlpSink {
    type Item = OtlpItem;

    fn name(&self) -> &'static str {
        SINK
    }

    fn streams(&self) -> Vec<Stream> {
        let s = self.resolved.signals;
        let mut v = super::data_streams(s.traces, s.logs, s.metrics, false);
        v.push(Stream {
            table: "spans",
            cursor: GENAI_METRICS_CURSOR,
            enabled: s.metrics,
            arrival_col: "received_ns",
        });
        v
    }

    fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn read(
        &self,
        conn: &Connection,
        stream: &Stream,
        after: i64,
    ) -> Result<Batch<OtlpItem>, StoreError> {
        let genai = signal_of(stream) == Signal::GenAiMetrics;
        self.converter
            .read(conn, stream.table, genai, after, &Selection::default())
    }

    async fn send(&self, stream: &Stream, items: &[OtlpItem]) -> Attempt {
        let url = |u: &Option<String>| u.clone().unwrap_or_default();
        match signal_of(stream) {
            Signal::Traces => {
                let req = self.converter.traces_request(items);
                self.transport
                    .traces(&url(&self.resolved.traces_url), req)
                    .await
            }
            Signal::Logs => {
                let req = self.converter.logs_request(items);
                self.transport
                    .logs(&url(&self.resolved.logs_url), req)
                    .await
            }
            Signal::Metrics | Signal::GenAiMetrics => {
                let req = self.converter.metrics_request(items);
                self.transport
                    .metrics(&url(&self.resolved.metrics_url), req)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn otel_variables_are_the_fallback() {
        let cfg = OtlpExportConfig::default();
        assert!(Resolved::from_config(&cfg, &env(&[])).unwrap().is_none());
        let r = Resolved::from_config(
            &cfg,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://tempo:4318/custom",
                ),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc%3D"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_SERVICE_NAME", "svc"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.traces_url.as_deref(), Some("http://tempo:4318/custom"));
        assert_eq!(
            r.metrics_url.as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        assert_eq!(r.headers, vec![("x-api-key".into(), "abc=".into())]);
        assert_eq!(r.timeout, Duration::from_millis(2500));
        assert_eq!(r.service_name, "svc");
        assert!(r.gzip);
        // OCT_* wins over OTEL_*.
        let cfg = OtlpExportConfig {
            endpoint: Some("http://mine:4318".into()),
            protocol: Some(Protocol::Grpc),
            ..Default::default()
        };
        let r = Resolved::from_config(
            &cfg,
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:1")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            r.traces_url.as_deref(),
            Some("http://mine:4318"),
            "gRPC takes the endpoint as is"
        );
        let e = Resolved::from_config(
            &OtlpExportConfig::default(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
            ]),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("OTEL_EXPORTER_OTLP_PROTOCOL:"),
            "{e}"
        );
    }

    #[test]
    fn loop_guard_recognises_our_own_address() {
        let own: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        assert!(url_addr_is("http://localhost:9090/v1/traces", own));
        assert!(url_addr_is("http://127.0.0.1:9090", own));
        assert!(!url_addr_is("http://127.0.0.1:4318", own));
        assert!(!url_addr_is("http://collector:9090", own));
    }

    fn span_out(kind: &str) -> SpanOut {
        use crate::model::{
            CappedText, Record, Span as ModelSpan, SpanId, SpanKind, StatusCode, TraceId,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open_writer(&dir.path().join("t.db")).unwrap();
        let trace = TraceId::parse_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
        let mut s = ModelSpan::new(
            trace,
            SpanId::parse_hex("b7ad6b7169203331").unwrap(),
            "orig".into(),
            SpanKind::parse(kind).unwrap(),
            1_000_000_000,
        );
        s.parent_span_id = SpanId::parse_hex("00f067aa0ba902b7");
        s.end_ns = Some(3_000_000_000);
        s.status = StatusCode::Error;
        s.status_message = Some("boom".into());
        s.agent_id = Some("main".into());
        s.session_id = Some("s1".into());
        s.provider = Some("openai".into());
        s.request_model = Some("gpt-4o".into());
        s.response_model = Some("gpt-4o-2024".into());
        s.input_tokens = Some(10);
        s.output_tokens = Some(5);
        s.cache_read_tokens = Some(2);
        s.finish_reasons = vec!["stop".into()];
        s.tool_name = Some("ls".into());
        s.error_type = Some("Timeout".into());
        s.input = Some(CappedText::new("hi".into(), 100));
        s.output = Some(CappedText::new("hello".into(), 100));
        s.attributes.insert("gen_ai.system".into(), "openai".into());
        s.attributes
            .insert("gen_ai.input.messages".into(), "secret".into());
        s.attributes.insert("x".into(), 1.into());
        let tx = conn.transaction().unwrap();
        crate::store::write::write_records(&tx, &[Record::Span(Box::new(s))], 1).unwrap();
        tx.commit().unwrap();
        crate::store::query::spans_of(&conn, &trace)
            .unwrap()
            .remove(0)
    }

    fn attr<'a>(s: &'a Span, k: &str) -> Option<&'a any_value::Value> {
        s.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    fn conv(format: Format, capture: bool) -> Converter {
        let mut r = Resolved::from_config(
            &OtlpExportConfig {
                endpoint: Some("http://c:4318".into()),
                format,
                capture_content: Some(capture),
                ..Default::default()
            },
            &env(&[]),
        )
        .unwrap()
        .unwrap();
        r.format = format;
        Converter::new(&r)
    }

    #[test]
    fn spans_follow_genai_semconv_and_keep_ids() {
        let c = conv(Format::Semconv, false);
        let s = c.span(&span_out("llm_call"), &[]);
        assert_eq!(s.name, "chat gpt-4o");
        assert_eq!(s.kind, 3);
        assert_eq!(hex::encode(&s.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex::encode(&s.span_id), "b7ad6b7169203331");
        assert_eq!(hex::encode(&s.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(
            attr(&s, names::OPERATION_NAME),
            Some(&any_value::Value::StringValue("chat".into()))
        );
        assert_eq!(
            attr(&s, names::USAGE_INPUT_TOKENS),
            Some(&any_value::Value::IntValue(10))
        );
        assert_eq!(
            attr(&s, names::USAGE_CACHE_READ),
            Some(&any_value::Value::IntValue(2))
        );
        assert!(
            attr(&s, names::LEGACY_SYSTEM).is_none(),
            "pre-1.37 names only with legacy"
        );
        assert!(
            attr(&s, names::INPUT_MESSAGES).is_none(),
            "content only when capture is on"
        );
        assert_eq!(attr(&s, "x"), Some(&any_value::Value::IntValue(1)));
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        assert_eq!(s.events[0].name, "exception");
        let s = conv(Format::Legacy, true).span(&span_out("llm_call"), &[]);
        assert_eq!(
            attr(&s, names::LEGACY_SYSTEM),
            Some(&any_value::Value::StringValue("openai".into()))
        );
        assert_eq!(
            attr(&s, names::LEGACY_PROMPT_TOKENS),
            Some(&any_value::Value::IntValue(10))
        );
        let Some(any_value::Value::StringValue(m)) = attr(&s, names::INPUT_MESSAGES) else {
            panic!()
        };
        assert!(m.contains("\"parts\""), "{m}");
        let t = c.span(&span_out("tool_call"), &[]);
        assert_eq!(t.name, "execute_tool ls");
        assert_eq!(t.kind, 1);
        let a = c.span(&span_out("agent_run"), &[]);
        assert_eq!(a.name, "invoke_agent main");
    }

    #[test]
    fn histogram_buckets_follow_the_bounds() {
        let p = histogram_point(
            &[],
            &[1.0, 3.0, 100_000_000.0],
            names::TOKEN_USAGE_BOUNDS,
            1,
            2,
        );
        assert_eq!(p.bucket_counts[0], 1);
        assert_eq!(p.bucket_counts[1], 1);
        assert_eq!(*p.bucket_counts.last().unwrap(), 1);
        assert_eq!(p.count, 3);
    }
}
