//! `POST /v1/openclaw/events`: batches from the OpenClaw plugin (integrations/openclaw).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ingest::{BodyKind, body_kind, invalid, read_body};
use super::{ApiError, SharedState, refusing};
use crate::sources::openclaw;

pub async fn post_events(
    State(st): State<SharedState>,
    req: Request,
) -> Result<Response, ApiError> {
    if refusing(&st) {
        return Err(ApiError::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
            5,
        ));
    }
    if body_kind(req.headers())? != BodyKind::Json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this endpoint takes JSON",
        ));
    }
    let mut read = read_body(&st, req).await?;
    read.reserve_json_tree()?;
    let batch = openclaw::parse_batch(&read.bytes, &st.config.ingest).map_err(invalid)?;
    if batch.dropped_by_plugin > 0 {
        tracing::warn!(
            dropped = batch.dropped_by_plugin,
            "the OpenClaw plugin dropped events (its queue was full)"
        );
    }
    let n = st.pipeline.submit("openclaw", batch.records)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": n, "ignored": batch.ignored })),
    )
        .into_response())
}

// ---- views on what only OpenClaw knows (analytics::openclaw) ----

use std::collections::HashMap;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;

use serde::Serialize;
use serde_json::Value;

use super::query::{limit_param, text, time_param};
use crate::analytics::openclaw::{self as views, CacheBy, WasteRules, Window};
use crate::model::{TraceId, now_ns};
use crate::store::StoreError;
use crate::store::rows::Rows;

type Params = Query<HashMap<String, String>>;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/openclaw/cache", get(get_cache))
        .route("/v1/openclaw/scheduled", get(get_scheduled))
        .route("/v1/openclaw/subagents", get(get_subagents))
        .route("/v1/openclaw/context", get(get_context))
        .route("/v1/openclaw/channels", get(get_channels))
        .route("/v1/openclaw/fallbacks", get(get_fallbacks))
        .route("/v1/openclaw/waste", get(get_waste))
        .route("/v1/openclaw/gateway", get(get_gateway))
        .route("/v1/openclaw/skills", get(get_skills))
}

/// Runs a view on whichever store this daemon keeps; its report as JSON.
async fn view<R: Serialize>(
    st: &SharedState,
    f: impl FnOnce(&dyn Rows) -> Result<R, StoreError> + Send + 'static,
) -> Result<Value, ApiError> {
    st.store
        .view(Box::new(move |db| {
            Ok(serde_json::to_value(f(db)?).unwrap_or_default())
        }))
        .await
}

/// `from` (default: 24 h before `to`), `to` (default: now), `agent`, and on a central
/// `instance` (one sidecar's runs).
fn window(p: &HashMap<String, String>) -> Result<Window, ApiError> {
    let to = time_param(p, "to")?.unwrap_or_else(now_ns);
    let from = time_param(p, "from")?.unwrap_or(to - 86_400 * 1_000_000_000);
    if from >= to {
        return Err(ApiError::bad_param("from", "must be before `to`"));
    }
    Ok(Window {
        from_ns: from,
        to_ns: to,
        agent: text(p, "agent").or_else(|| text(p, "agent_id")),
        instance: text(p, "instance").or_else(|| text(p, "instance_id")),
    })
}

async fn get_cache(State(st): State<SharedState>, Query(p): Params) -> Result<Response, ApiError> {
    let w = window(&p)?;
    let by = match text(&p, "by") {
        None => CacheBy::Agent,
        Some(b) => CacheBy::parse(&b)
            .ok_or_else(|| ApiError::bad_param("by", "expected agent, model or session"))?,
    };
    let prices = st.analytics.prices.clone();
    let r = view(&st, move |db| views::cache(db, &prices, &w, by)).await?;
    Ok(axum::Json(r).into_response())
}

async fn get_scheduled(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let w = window(&p)?;
    let limit = limit_param(&p)?;
    let mut v = view(&st, move |db| views::scheduled(db, &w, limit)).await?;
    // The gateway's own jobs and their runs (`cron.list`, `cron.runs`), when it answered.
    let g = st.gateway.snapshot();
    v["gateway"] = serde_json::json!({
        "condition": g.condition,
        "last_ok_ms": g.last_ok_ms,
        "jobs": g.cron.as_ref().map(|c| c["jobs"].clone()),
        "runs": g.cron.as_ref().map(|c| c["runs"].clone()),
    });
    Ok(axum::Json(v).into_response())
}

async fn get_subagents(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let w = window(&p)?;
    let r = view(&st, move |db| views::subagents(db, &w)).await?;
    Ok(axum::Json(r).into_response())
}

async fn get_context(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let w = window(&p)?;
    let limit = limit_param(&p)?;
    let near = match text(&p, "near") {
        None => 0.8,
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|n| *n > 0.0 && *n <= 1.0)
            .ok_or_else(|| ApiError::bad_param("near", "expected a ratio above 0, at most 1"))?,
    };
    let r = view(&st, move |db| views::context(db, &w, near, limit)).await?;
    Ok(axum::Json(r).into_response())
}

async fn get_channels(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let w = window(&p)?;
    let r = view(&st, move |db| views::channels(db, &w)).await?;
    Ok(axum::Json(r).into_response())
}

async fn get_fallbacks(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let w = window(&p)?;
    let r = view(&st, move |db| views::fallbacks(db, &w)).await?;
    Ok(axum::Json(r).into_response())
}

async fn get_waste(State(st): State<SharedState>, Query(p): Params) -> Result<Response, ApiError> {
    let w = window(&p)?;
    let trace = match text(&p, "trace_id") {
        None => None,
        Some(t) => Some(
            TraceId::parse_hex(&t)
                .ok_or_else(|| ApiError::bad_param("trace_id", "expected 32 hex digits"))?,
        ),
    };
    let r = view(&st, move |db| {
        views::waste(db, &w, &WasteRules::default(), trace)
    })
    .await?;
    Ok(axum::Json(r).into_response())
}

/// What the OpenClaw gateway poller knows: its condition, version, channels, OpenClaw's
/// totals against ours, crons, skills, the session index.
async fn get_gateway(State(st): State<SharedState>) -> Response {
    axum::Json(st.gateway.snapshot()).into_response()
}

/// The gateway's skills (`skills.status`): each skill, eligible or not, and what it lacks.
async fn get_skills(State(st): State<SharedState>) -> Response {
    let g = st.gateway.snapshot();
    let mut v = g
        .skills
        .unwrap_or_else(|| serde_json::json!({"skills": [], "totals": null}));
    v["condition"] = serde_json::json!(g.condition);
    v["detail"] = serde_json::json!(g.detail);
    v["last_ok_ms"] = serde_json::json!(g.last_ok_ms);
    axum::Json(v).into_response()
}
