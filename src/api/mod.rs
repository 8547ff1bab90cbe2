//! The HTTP API: one more source (capture endpoints) and the query surface.

pub mod activity;
pub mod admission;
pub mod analytics;
pub mod dashboard;
pub mod dead_letters;
pub mod fleet;
pub mod health;
pub mod ingest;
pub mod metric_query;
pub mod metrics;
pub mod openclaw;
pub mod query;
pub mod store;
pub mod stream;
pub mod web;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::pipeline::{Pipeline, SubmitError};
use crate::settings::{Setting, parse_bytes, parse_duration, parse_port};
use crate::sources::otlp;

#[derive(Clone, Debug, PartialEq)]
pub struct ApiConfig {
    pub port: u16,
    pub bind: String,
    pub auth_token: Option<String>,
    pub max_body_bytes: u64,
    /// Bytes of capture bodies being read, decompressed and parsed, at most, across all requests.
    pub max_inflight_bytes: u64,
    /// Open HTTP connections across the API and OTLP/HTTP listeners, at most.
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            port: 9090,
            bind: "127.0.0.1".into(),
            auth_token: None,
            max_body_bytes: 8 << 20,
            max_inflight_bytes: 4 << 20,
            max_connections: 64,
            shutdown_timeout: Duration::from_secs(15),
        }
    }
}

impl ApiConfig {
    /// A fleet central's defaults: room for many sidecars' pushes in flight at once
    /// (a sidecar's 4 MiB refuses most of fifty sidecars' batches with 429).
    pub fn central() -> Self {
        ApiConfig {
            max_inflight_bytes: 32 << 20,
            ..ApiConfig::default()
        }
    }

    /// Where a client on this machine reaches the API: the bind address, with an
    /// unspecified one (0.0.0.0, ::) replaced by loopback.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let ip = match self.bind.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Ok(IpAddr::V6(a)) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            Ok(a) => a,
            Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        std::net::SocketAddr::new(ip, self.port)
    }

    /// `http://` and [`local_addr`](Self::local_addr).
    pub fn local_url(&self) -> String {
        format!("http://{}", self.local_addr())
    }
}

pub const SETTINGS: &[Setting<ApiConfig>] = &[
    Setting {
        name: "port",
        env: "OCT_PORT",
        default: "9090",
        help: "HTTP port (0 picks a free one; the log says which)",
        set: |c, v| {
            c.port = parse_port(v)?;
            Ok(())
        },
    },
    Setting {
        name: "bind",
        env: "OCT_BIND",
        default: "127.0.0.1",
        help: "Address the HTTP API listens on (0.0.0.0 exposes it to the network)",
        set: |c, v| {
            v.trim()
                .parse::<std::net::IpAddr>()
                .map_err(|_| format!("expected an IP address such as 127.0.0.1, got {v:?}"))?;
            c.bind = v.trim().to_string();
            Ok(())
        },
    },
    Setting {
        name: "auth_token",
        env: "OCT_AUTH_TOKEN",
        default: "",
        help: "When set, every endpoint but /health, /ready and the dashboard's static files requires Authorization: Bearer <token>",
        set: |c, v| {
            c.auth_token = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        name: "max_body_bytes",
        env: "OCT_MAX_BODY_BYTES",
        default: "8388608",
        help: "Largest request body accepted (after decompression); larger ones get 413",
        set: |c, v| {
            c.max_body_bytes = parse_bytes(v)?.max(1024);
            Ok(())
        },
    },
    Setting {
        name: "max_inflight_bytes",
        env: "OCT_MAX_INFLIGHT_BYTES",
        default: "4MiB; 32MiB on PostgreSQL",
        help: "Bytes of capture bodies being read, decompressed and parsed at once, across all requests (a body counts three times its size while parsed); beyond it ingest answers 429 without keeping the body",
        set: |c, v| {
            c.max_inflight_bytes = parse_bytes(v)?.max(1024);
            Ok(())
        },
    },
    Setting {
        name: "max_connections",
        env: "OCT_MAX_CONNECTIONS",
        default: "64",
        help: "Open HTTP connections, at most, across the API and OTLP/HTTP listeners; beyond it a connection gets 503 with Retry-After and is closed",
        set: |c, v| {
            c.max_connections = crate::settings::parse_u64(v)?.max(1) as usize;
            Ok(())
        },
    },
    Setting {
        name: "shutdown_timeout",
        env: "OCT_SHUTDOWN_TIMEOUT",
        default: "15s",
        help: "Time allowed on SIGTERM/SIGINT to drain the queue, commit and checkpoint",
        set: |c, v| {
            c.shutdown_timeout = parse_duration(v)?;
            Ok(())
        },
    },
];

/// The settings the API reads: its own, and those of the components whose state or
/// limits it shows (the composer hands them over; the API never sees the whole).
#[derive(Clone, Debug)]
pub struct ApiSettings {
    pub api: ApiConfig,
    pub ingest: crate::sources::ingest::IngestConfig,
    pub store: crate::store::StoreConfig,
    pub fleet: crate::sources::fleet::FleetConfig,
    pub host: crate::sources::host::HostConfig,
    pub analytics: crate::analytics::AnalyticsConfig,
    pub otlp: crate::sources::otlp::OtlpConfig,
    /// This daemon's own instance id (`OCT_INSTANCE_ID`, else the Fly.io machine id,
    /// else the host name): what it names itself to a central, and on a central what
    /// its own host records carry.
    pub instance_id: String,
}

/// Everything a handler can reach.
pub struct AppState {
    pub config: ApiSettings,
    pub pipeline: Pipeline,
    /// The store's query side: SQLite, or PostgreSQL on a fleet's central.
    pub store: Arc<dyn store::QueryStore>,
    pub sinks: Arc<crate::sinks::Registry>,
    pub started: Instant,
    pub ready: AtomicBool,
    pub shutting_down: AtomicBool,
    /// Where components register what `/metrics` shows.
    pub metrics: Arc<crate::metrics::Registry>,
    /// The live tail behind `/v1/stream`.
    pub live: Arc<crate::sinks::live::LiveHub>,
    pub analytics: Arc<crate::analytics::Analytics>,
    /// The in-flight byte budget and the connection count (see `admission`).
    pub admission: Arc<admission::Admission>,
    /// The sidecars that pushed to this instance (when it is a fleet's central).
    pub fleet: Arc<crate::sources::fleet::Registry>,
    /// The daemon's own administrative and security events (`GET /v1/activity`).
    pub activity: Arc<crate::store::activity::ActivityLog>,
    /// What the OpenClaw gateway poller knows (`sources::openclaw_gateway`).
    pub gateway: Arc<crate::sources::openclaw_gateway::GatewayState>,
}

pub type SharedState = Arc<AppState>;

/// An error answer: a status and a JSON body naming what was wrong.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
            retry_after: None,
        }
    }

    pub fn bad_param(param: &str, message: impl std::fmt::Display) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": format!("{param}: {message}"), "field": param }),
            retry_after: None,
        }
    }

    pub fn retry(status: StatusCode, message: impl Into<String>, secs: u64) -> Self {
        let mut e = ApiError::new(status, message);
        e.retry_after = Some(secs);
        e
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Full => ApiError::retry(StatusCode::TOO_MANY_REQUESTS, e.to_string(), 1),
            SubmitError::Unavailable(_) | SubmitError::Closed => {
                ApiError::retry(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), 5)
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::BadRequest(m) => {
                let field = m.split(':').next().unwrap_or("").to_string();
                ApiError {
                    status: StatusCode::BAD_REQUEST,
                    body: json!({ "error": m, "field": field }),
                    retry_after: None,
                }
            }
            other => {
                tracing::warn!(error = %other, "query failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn require_token(
    State(st): State<SharedState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = st.config.api.auth_token.as_deref() else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/health" || path == "/ready" || path == "/openapi.json" || web::is_public(path) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => {
            let remote = req
                .extensions()
                .get::<axum::extract::ConnectInfo<admission::Remote>>()
                .map(|c| c.0.0.to_string());
            st.activity.refused(remote, path);
            let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
                .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

/// The OpenAPI 3.1 document of this API (`src/api/openapi.json`, checked against the
/// router by tests/openapi.rs and schemathesis).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The whole HTTP surface.
pub fn router(state: SharedState) -> Router {
    let app = Router::new()
        .route(
            "/v1/traces",
            post(otlp::http::post_traces_main).get(query::list_traces),
        )
        .route(
            "/v1/errors",
            post(ingest::post_errors).get(query::list_errors),
        )
        .route(
            "/v1/events",
            post(ingest::post_events).get(query::list_events),
        )
        .route(
            "/v1/scores",
            post(ingest::post_scores).get(query::score_summary),
        )
        .route("/v1/push", post(fleet::post_push))
        .route("/v1/instances", get(fleet::list_instances))
        .route("/v1/openclaw/events", post(openclaw::post_events))
        .route("/v1/metrics", post(otlp::http::post_metrics))
        .route(
            "/v1/logs",
            post(otlp::http::post_logs).get(query::list_logs),
        )
        .route("/v1/traces/{trace_id}", get(query::get_trace))
        .route("/v1/traces/{trace_id}/export", get(query::export_trace))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/stream", get(stream::stream))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/activity", get(activity::list))
        .route("/v1/metrics", get(metric_query::get_metrics))
        .route("/v1/metrics/names", get(metric_query::get_names))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/openapi.json", get(openapi))
        .merge(analytics::routes())
        .merge(openclaw::routes())
        .merge(dashboard::routes())
        .merge(web::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    app.layer(tower_http::decompression::RequestDecompressionLayer::new())
        .with_state(state)
}

/// True while the daemon refuses new work.
pub fn refusing(st: &AppState) -> bool {
    st.shutting_down.load(Ordering::Relaxed)
}
