//! Capture endpoints: validate, enqueue, answer. Nothing here waits for the disk.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use http_body_util::BodyExt;

use super::admission::{JSON_TREE_FACTOR, PARSE_FACTOR, Permit};
use super::{ApiError, SharedState, refusing};
use crate::sources::ingest::{self, Endpoint};

/// How a body is encoded, from its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Protobuf,
}

pub fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    match essence {
        ""
        | "application/json"
        | "text/json"
        | "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "text/plain" => Ok(BodyKind::Json),
        // `curl -d` labels JSON as a form; the Go version read it anyway.
        "application/x-www-form-urlencoded" => Ok(BodyKind::Json),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(BodyKind::Json),
        "application/x-protobuf" | "application/protobuf" => Ok(BodyKind::Protobuf),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {other:?} is not supported; send application/json or application/x-ndjson"
            ),
        )),
    }
}

/// A body read within the in-flight budget, and the budget it holds until dropped.
pub struct Body {
    pub headers: HeaderMap,
    pub bytes: Bytes,
    pub permit: Permit,
}

impl Body {
    /// Counts the body at `JSON_TREE_FACTOR` times its size (rather than `PARSE_FACTOR`)
    /// before it is parsed into a `serde_json::Value` tree; 429 when that does not fit.
    pub fn reserve_json_tree(&mut self) -> Result<(), ApiError> {
        let extra = self.bytes.len() * (JSON_TREE_FACTOR - PARSE_FACTOR);
        if self.permit.grow(extra) {
            Ok(())
        } else {
            Err(busy("too many bytes in flight (OCT_MAX_INFLIGHT_BYTES)"))
        }
    }
}

fn busy(what: &str) -> ApiError {
    ApiError::retry(
        StatusCode::TOO_MANY_REQUESTS,
        format!("{what}; retry shortly"),
        1,
    )
}

/// Reads the whole body up to the configured limit (413 beyond it, 400 if it cannot be
/// decoded), within the in-flight budget: when the queue has no room or the budget is
/// spent, answers 429 and drains the rest of the body without keeping it. The body's
/// bytes count in the budget as they arrive, then `PARSE_FACTOR` times once read.
pub async fn read_body(st: &SharedState, req: Request) -> Result<Body, ApiError> {
    let limit = st.config.api.max_body_bytes as usize;
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {limit} bytes (OCT_MAX_BODY_BYTES)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    let (parts, mut body) = req.into_parts();
    let mut permit = st.admission.permit();
    let mut refusal = if !st.pipeline.has_room(1, 0) {
        st.admission.refused_counter.inc();
        Some(busy("the queue is full"))
    } else if !permit.grow(declared.unwrap_or(0) as usize) {
        Some(busy("too many bytes in flight (OCT_MAX_INFLIGHT_BYTES)"))
    } else {
        None
    };
    // A client waiting for `100 Continue` has not sent its body: answer now, nothing to drain.
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue && let Some(r) = refusal {
        return Err(r);
    }
    // The first frame is kept as it came (no copy: most bodies are one frame); a second
    // one starts a buffer holding both.
    let mut first: Option<Bytes> = None;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    let mut declared_left = declared.unwrap_or(0) as usize;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                return Err(refusal.unwrap_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the body: {e}"),
                    )
                }));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > limit {
            // Decompressed beyond the limit (a gzip bomb) or longer than declared.
            return Err(refusal.unwrap_or_else(too_big));
        }
        if refusal.is_some() {
            continue; // drained, not kept
        }
        // Bytes beyond what Content-Length announced (or all of a compressed or chunked
        // body) take budget as they arrive.
        let covered = data.len().min(declared_left);
        declared_left -= covered;
        if !permit.grow(data.len() - covered) {
            refusal = Some(busy("too many bytes in flight (OCT_MAX_INFLIGHT_BYTES)"));
            first = None;
            buf = bytes::BytesMut::new();
            continue;
        }
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(f) => {
                buf.reserve(f.len() + data.len());
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
        }
    }
    let bytes = match first {
        Some(f) => f,
        None => buf.freeze(),
    };
    if let Some(r) = refusal {
        return Err(r);
    }
    if !permit.grow(bytes.len() * (PARSE_FACTOR - 1)) {
        return Err(busy("too many bytes in flight (OCT_MAX_INFLIGHT_BYTES)"));
    }
    Ok(Body {
        headers: parts.headers,
        bytes,
        permit,
    })
}

pub(super) fn invalid(e: ingest::FieldError) -> ApiError {
    let mut body = serde_json::to_value(&e).unwrap_or_else(|_| json!({}));
    let prefix = match (&e.item, &e.field) {
        (Some(i), Some(f)) => format!("item {i}, field {f}: "),
        (Some(i), None) => format!("item {i}: "),
        (None, Some(f)) => format!("field {f}: "),
        (None, None) => String::new(),
    };
    body["error"] = json!(format!("{prefix}{}", e.message));
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body,
        retry_after: None,
    }
}

pub(crate) async fn accept_native(
    st: SharedState,
    endpoint: Endpoint,
    req: Request,
) -> Result<Response, ApiError> {
    if refusing(&st) {
        return Err(ApiError::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
            5,
        ));
    }
    let kind = body_kind(req.headers())?;
    let body = read_body(&st, req).await?;
    accept_native_body(st, endpoint, kind, body).await
}

/// `accept_native` for a body already read (its permit is held until the records are queued).
pub(crate) async fn accept_native_body(
    st: SharedState,
    endpoint: Endpoint,
    kind: BodyKind,
    body: Body,
) -> Result<Response, ApiError> {
    let Body {
        bytes: body,
        permit: _permit,
        ..
    } = body;
    if kind == BodyKind::Protobuf {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "protobuf bodies are OTLP; this endpoint takes JSON",
        ));
    }
    // Large bodies are parsed off the async workers so small requests never wait behind them.
    let cfg = st.config.ingest.clone();
    let records = if body.len() > 256 << 10 {
        tokio::task::spawn_blocking(move || ingest::parse(endpoint, &body, &cfg))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    } else {
        ingest::parse(endpoint, &body, &cfg)
    }
    .map_err(invalid)?;

    /// The answer, serialized straight from the ids (a `json!` value copied each one).
    #[derive(serde::Serialize)]
    struct Accepted {
        accepted: usize,
        ids: Vec<String>,
    }
    let ids: Vec<String> = records.iter().map(ingest::record_id).collect();
    // The queue filled while this body was parsed: wait for the writer a moment (as
    // OTLP does) rather than throw the parsed records away with a 429 the client will
    // answer by sending, and the daemon by parsing, the same body again.
    let bytes = records.iter().map(crate::model::Record::approx_bytes).sum();
    let until = std::time::Instant::now() + super::admission::QUEUE_WAIT;
    super::admission::wait_for_room(&st, records.len(), bytes, until).await;
    let accepted = st.pipeline.submit_sized("api", records, bytes)?;
    Ok((StatusCode::ACCEPTED, axum::Json(Accepted { accepted, ids })).into_response())
}

pub async fn post_errors(
    State(st): State<SharedState>,
    req: Request,
) -> Result<Response, ApiError> {
    accept_native(st, Endpoint::Errors, req).await
}

pub async fn post_events(
    State(st): State<SharedState>,
    req: Request,
) -> Result<Response, ApiError> {
    accept_native(st, Endpoint::Events, req).await
}

/// `POST /v1/scores`: evaluation scores on runs and spans.
pub async fn post_scores(
    State(st): State<SharedState>,
    req: Request,
) -> Result<Response, ApiError> {
    accept_native(st, Endpoint::Scores, req).await
}
