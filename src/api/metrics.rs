//! `GET /metrics`: OpenMetrics when the scraper asks for it (`Accept`), Prometheus text otherwise.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, SharedState};
use crate::metrics::openmetrics_to_prometheus;

pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `q` a media range of `accept` gives to types starting with `prefix` (0 when absent).
fn quality(accept: &str, matches: impl Fn(&str) -> bool) -> f32 {
    accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let essence = parts.next()?.to_ascii_lowercase();
            if !matches(&essence) {
                return None;
            }
            let q = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(q)
        })
        .fold(0.0, f32::max)
}

/// True when the client prefers OpenMetrics over the Prometheus text format.
pub fn wants_openmetrics(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let om = quality(accept, |e| e == "application/openmetrics-text");
    let text = quality(accept, |e| e == "text/plain" || e == "text/*" || e == "*/*");
    om > 0.0 && om >= text
}

pub async fn metrics(State(st): State<SharedState>, headers: HeaderMap) -> Response {
    let registry = st.metrics.clone();
    let openmetrics = wants_openmetrics(&headers);
    // Collectors read the store: keep them off the async workers.
    let encoded = tokio::task::spawn_blocking(move || registry.encode_openmetrics()).await;
    let body = match encoded {
        Ok(Ok(b)) => b,
        Ok(Err(_)) | Err(_) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics",
            )
            .into_response();
        }
    };
    let (body, ty) = if openmetrics {
        (body, OPENMETRICS_TYPE)
    } else {
        (openmetrics_to_prometheus(&body), PROMETHEUS_TYPE)
    };
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn negotiation() {
        // What Prometheus 2.x sends.
        assert!(wants_openmetrics(&accept(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(&accept("text/plain")));
        assert!(!wants_openmetrics(&accept("*/*")));
        assert!(!wants_openmetrics(&HeaderMap::new()));
        assert!(!wants_openmetrics(&accept(
            "application/openmetrics-text;q=0.2, text/plain"
        )));
    }
}
