//! OTLP/HTTP: the handlers (shared by the main port and the dedicated listener) and the
//! dedicated listener's router. Answers follow the OTLP specification: 200 with the
//! Export*ServiceResponse, errors as `google.rpc.Status`, both in the request's encoding.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use serde_json::Value;

use super::decode::{self, RpcStatus};
use super::{Encoding, ExportError, Payload, Signal, export};
use crate::api::{ApiError, SharedState, ingest};
use crate::sources::ingest::Endpoint;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The request's encoding from its Content-Type (no Content-Type means JSON).
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ct.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "" | "application/json" => Ok(Encoding::Json),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(Encoding::Json),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {other:?} is not OTLP; send application/x-protobuf or application/json"
            ),
        )),
    }
}

/// The gRPC code matching an HTTP status, for `google.rpc.Status.code`.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 415 => tonic::Code::InvalidArgument as i32,
        401 => tonic::Code::Unauthenticated as i32,
        403 => tonic::Code::PermissionDenied as i32,
        404 | 405 => tonic::Code::Unimplemented as i32,
        413 | 429 => tonic::Code::ResourceExhausted as i32,
        503 => tonic::Code::Unavailable as i32,
        _ => tonic::Code::Internal as i32,
    }
}

/// An error answer: `google.rpc.Status` in the request's encoding. In JSON it also keeps
/// the API's `error`/`field` keys, so one body serves OTLP clients and people alike.
pub fn error_response(e: ApiError, enc: Encoding) -> Response {
    let message = e
        .body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let code = grpc_code(e.status);
    let (content_type, body) = match enc {
        Encoding::Json => {
            let mut b = e.body;
            b["code"] = Value::from(code);
            b["message"] = Value::from(message);
            (JSON, b.to_string().into_bytes())
        }
        Encoding::Protobuf => (
            PROTOBUF,
            RpcStatus::new(code, message, e.retry_after).encode_to_vec(),
        ),
    };
    let mut r = (e.status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(s) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Decode(d) => ApiError::new(StatusCode::BAD_REQUEST, d.to_string()),
            ExportError::Submit(s) => ApiError::from(s),
            ExportError::ShuttingDown => {
                ApiError::retry(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), 5)
            }
        }
    }
}

/// Decodes, stores and answers a body already read.
async fn respond(
    st: &SharedState,
    signal: Signal,
    enc: Encoding,
    payload: Payload<'_>,
) -> Response {
    match export(st, signal, payload).await {
        Ok(done) => {
            let content_type = match enc {
                Encoding::Json => JSON,
                Encoding::Protobuf => PROTOBUF,
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, content_type)],
                decode::response(signal, &done, enc),
            )
                .into_response()
        }
        Err(e) => error_response(e.into(), enc),
    }
}

/// One OTLP/HTTP export of `signal`. A JSON body is walked straight into the protobuf
/// structs (no tree of the whole document), so it costs about what a protobuf body
/// does and counts `PARSE_FACTOR` times its size in the in-flight budget, as one does.
async fn handle(st: SharedState, signal: Signal, req: Request) -> Response {
    let enc = match encoding(req.headers()) {
        Ok(e) => e,
        Err(e) => return error_response(e, Encoding::Json),
    };
    let read = match ingest::read_body(&st, req).await {
        Ok(b) => b,
        Err(e) => return error_response(e, enc),
    };
    let payload = match enc {
        Encoding::Protobuf => Payload::Protobuf(&read.bytes),
        Encoding::Json => Payload::Json(&read.bytes),
    };
    respond(&st, signal, enc, payload).await
}

pub async fn post_traces(State(st): State<SharedState>, req: Request) -> Response {
    handle(st, Signal::Traces, req).await
}

pub async fn post_metrics(State(st): State<SharedState>, req: Request) -> Response {
    handle(st, Signal::Metrics, req).await
}

pub async fn post_logs(State(st): State<SharedState>, req: Request) -> Response {
    handle(st, Signal::Logs, req).await
}

/// `POST /v1/traces` on the main port: protobuf, or JSON holding `resourceSpans`, is OTLP;
/// any other body is the native capture API's, exactly as before.
pub async fn post_traces_main(State(st): State<SharedState>, req: Request) -> Response {
    if matches!(encoding(req.headers()), Ok(Encoding::Protobuf)) {
        return handle(st, Signal::Traces, req).await;
    }
    let read = match ingest::read_body(&st, req).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let key = Signal::Traces.json_key();
    let mentions_key = read
        .bytes
        .windows(key.len() + 2)
        .any(|w| w[0] == b'"' && &w[1..=key.len()] == key.as_bytes() && w[key.len() + 1] == b'"');
    let (headers, body) = (&read.headers, &read.bytes);
    if mentions_key && decode::is_otlp_json(body, Signal::Traces) {
        return match encoding(headers) {
            Ok(enc) => respond(&st, Signal::Traces, enc, Payload::Json(body)).await,
            Err(e) => error_response(e, Encoding::Json),
        };
    }
    let kind = match ingest::body_kind(headers) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    if crate::api::refusing(&st) {
        return crate::api::ApiError::retry(StatusCode::SERVICE_UNAVAILABLE, "shutting down", 5)
            .into_response();
    }
    match ingest::accept_native_body(st, Endpoint::Traces, kind, read).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The dedicated OTLP/HTTP listener: the three export paths, same limits and token as the API.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/v1/traces", post(post_traces))
        .route("/v1/metrics", post(post_metrics))
        .route("/v1/logs", post(post_logs))
        .fallback(|| async {
            error_response(
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no such endpoint; OTLP/HTTP takes POST /v1/traces, /v1/metrics, /v1/logs",
                ),
                Encoding::Json,
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::api::require_token,
        ))
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn encodings_from_content_type() {
        assert_eq!(
            encoding(&headers("application/x-protobuf")).unwrap(),
            Encoding::Protobuf
        );
        assert_eq!(
            encoding(&headers("application/json; charset=utf-8")).unwrap(),
            Encoding::Json
        );
        assert_eq!(encoding(&HeaderMap::new()).unwrap(), Encoding::Json);
        let e = encoding(&headers("text/xml")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn retryable_errors_carry_retry_after_in_both_encodings() {
        let e = || ApiError::retry(StatusCode::TOO_MANY_REQUESTS, "full", 1);
        let r = error_response(e(), Encoding::Protobuf);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROTOBUF);
        let r = error_response(e(), Encoding::Json);
        assert_eq!(r.headers()[header::CONTENT_TYPE], JSON);
    }
}
