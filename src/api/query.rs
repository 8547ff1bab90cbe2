//! Query endpoints over the store.

use std::collections::HashMap;
use std::io::Write;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, SharedState};
use crate::model::{SpanId, StatusCode as SpanStatus, TraceId};
use crate::store::query::{DEFAULT_LIMIT, EventFilter, MAX_LIMIT, TraceFilter, TraceSort};
use crate::store::scores::{ScoreCondition, ScoreFilter, ScoreGrouping};
use crate::util::time::parse_query_time;

type Params = Query<HashMap<String, String>>;

pub fn text(p: &HashMap<String, String>, k: &str) -> Option<String> {
    p.get(k)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub fn time_param(p: &HashMap<String, String>, k: &str) -> Result<Option<i64>, ApiError> {
    match text(p, k) {
        None => Ok(None),
        Some(v) => parse_query_time(&v).map(Some).ok_or_else(|| {
            ApiError::bad_param(k, "expected an RFC 3339 timestamp or unix milliseconds")
        }),
    }
}

pub fn limit_param(p: &HashMap<String, String>) -> Result<usize, ApiError> {
    match text(p, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_param(
                "limit",
                format!("expected a number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

fn trace_id_param(name: &str, v: &str) -> Result<TraceId, ApiError> {
    TraceId::parse_hex(v.trim()).ok_or_else(|| ApiError::bad_param(name, "expected 32 hex digits"))
}

pub fn trace_filter(p: &HashMap<String, String>) -> Result<TraceFilter, ApiError> {
    let status = text(p, "status");
    if let Some(s) = &status
        && SpanStatus::parse(s).is_none()
    {
        return Err(ApiError::bad_param("status", "expected ok, error or unset"));
    }
    Ok(TraceFilter {
        agent_id: text(p, "agent_id"),
        session_id: text(p, "session_id"),
        user_id: text(p, "user_id"),
        status,
        provider: text(p, "provider"),
        model: text(p, "model"),
        name: text(p, "name"),
        from_ns: time_param(p, "from")?,
        to_ns: time_param(p, "to")?,
        q: text(p, "q"),
        min_cost: text(p, "min_cost")
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|c| c.is_finite() && *c >= 0.0)
                    .ok_or_else(|| ApiError::bad_param("min_cost", "expected a number of USD >= 0"))
            })
            .transpose()?,
        instance: text(p, "instance"),
        score: text(p, "score")
            .map(|v| {
                ScoreCondition::parse(&v).ok_or_else(|| {
                    ApiError::bad_param(
                        "score",
                        "expected NAME<OP>NUMBER, OP one of < <= > >= = != (e.g. relevance<0.5)",
                    )
                })
            })
            .transpose()?,
        sort: match text(p, "sort") {
            None => TraceSort::Start,
            Some(s) => TraceSort::parse(&s)
                .ok_or_else(|| ApiError::bad_param("sort", "expected start, duration or cost"))?,
        },
        ascending: match text(p, "order").map(|o| o.to_ascii_lowercase()).as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => return Err(ApiError::bad_param("order", "expected desc or asc")),
        },
    })
}

pub async fn list_traces(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let filter = trace_filter(&p)?;
    let limit = limit_param(&p)?;
    let cursor = text(&p, "cursor");
    let page = st.store.list_traces(filter, limit, cursor).await?;
    Ok(
        axum::Json(json!({ "traces": page.items, "next_cursor": page.next_cursor }))
            .into_response(),
    )
}

pub async fn get_trace(
    State(st): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = trace_id_param("trace_id", &id)?;
    match st.store.trace(id).await? {
        Some(d) => Ok(axum::Json(d).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no such trace")),
    }
}

pub async fn export_trace(
    State(st): State<SharedState>,
    Path(id): Path<String>,
    ext: axum::http::Extensions,
) -> Result<Response, ApiError> {
    let tid = trace_id_param("trace_id", &id)?;
    let Some(export) = st.store.trace_export(tid).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such trace"));
    };
    // Exports made go to the activity log.
    st.activity.record(crate::store::activity::Activity {
        time_ns: crate::model::now_ns(),
        kind: "export".into(),
        remote_addr: ext
            .get::<axum::extract::ConnectInfo<super::admission::Remote>>()
            .map(|c| c.0.0.to_string()),
        path: Some(format!("/v1/traces/{}/export", tid.to_hex())),
        message: format!("trace {} exported over the API", tid.to_hex()),
        detail: Some(serde_json::json!({ "format": "json.gz", "trace_id": tid.to_hex() })),
        id: None,
    });
    let body = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        serde_json::to_writer(&mut gz, &export)?;
        gz.flush()?;
        gz.finish()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"trace-{}.json.gz\"", tid.to_hex()),
            ),
        ],
        body,
    )
        .into_response())
}

pub fn event_filter(
    p: &HashMap<String, String>,
    event_type: &str,
) -> Result<EventFilter, ApiError> {
    Ok(EventFilter {
        event_type: Some(event_type.to_string()),
        trace_id: text(p, "trace_id")
            .map(|t| trace_id_param("trace_id", &t))
            .transpose()?,
        span_id: text(p, "span_id")
            .map(|s| {
                SpanId::parse_hex(&s)
                    .ok_or_else(|| ApiError::bad_param("span_id", "expected 16 hex digits"))
            })
            .transpose()?,
        agent_id: text(p, "agent_id"),
        session_id: text(p, "session_id"),
        severity: text(p, "severity").map(|s| s.to_ascii_lowercase()),
        name: text(p, "name").or_else(|| text(p, "error_type")),
        category: text(p, "category"),
        // Conditions (host errors) are `active` until they end, then `resolved`.
        state: match text(p, "state").map(|s| s.to_ascii_lowercase()).as_deref() {
            None => None,
            Some("open" | "active") => Some("active".into()),
            Some("resolved" | "closed") => Some("resolved".into()),
            Some(_) => return Err(ApiError::bad_param("state", "expected open or resolved")),
        },
        from_ns: time_param(p, "from")?,
        to_ns: time_param(p, "to")?,
    })
}

async fn list_of(
    st: SharedState,
    p: HashMap<String, String>,
    event_type: &'static str,
    key: &str,
) -> Result<Response, ApiError> {
    let filter = event_filter(&p, event_type)?;
    let limit = limit_param(&p)?;
    let cursor = text(&p, "cursor");
    let page = st.store.list_events(filter, limit, cursor).await?;
    Ok(axum::Json(json!({ key: page.items, "next_cursor": page.next_cursor })).into_response())
}

pub async fn list_errors(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    list_of(st, p, "error", "errors").await
}

pub async fn list_events(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    list_of(st, p, "custom", "events").await
}

/// `GET /v1/logs`: log records (OTLP logs), filtered by name, severity, time, trace/span.
pub async fn list_logs(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    list_of(st, p, "log", "logs").await
}

/// `GET /v1/scores`: evaluation scores aggregated by name, and by agent and day on request
/// (`group_by=agent,day`); filters `from`, `to`, `name`, `agent_id`.
pub async fn score_summary(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let mut by = ScoreGrouping::default();
    for g in text(&p, "group_by").unwrap_or_default().split(',') {
        match g.trim() {
            "" | "name" => {}
            "agent" | "agent_id" => by.agent = true,
            "day" => by.day = true,
            _ => {
                return Err(ApiError::bad_param(
                    "group_by",
                    "expected a list of agent and day (the name is always a group)",
                ));
            }
        }
    }
    let filter = ScoreFilter {
        from_ns: time_param(&p, "from")?,
        to_ns: time_param(&p, "to")?,
        name: text(&p, "name"),
        agent_id: text(&p, "agent_id"),
    };
    let groups = st.store.scores(filter, by).await?;
    Ok(axum::Json(json!({ "scores": groups })).into_response())
}
