//! What the dashboard reads beside the trace, usage and metric endpoints:
//! `/v1/overview`, `/v1/sessions`, `/v1/sessions/{id}` and `/v1/anomalies`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::query::{limit_param, text, time_param};
use super::{ApiError, SharedState};
use crate::analytics::baseline;
use crate::analytics::overview::Range;
use crate::analytics::usage::Dim;
use crate::model::now_ns;
use crate::store::StoreError;
use crate::store::query::{AgentRange, Page};
use crate::store::rows::Rows;
use crate::store::sessions::{DEFAULT_TURNS, MAX_TURNS};

type Params = Query<HashMap<String, String>>;

/// Open conditions listed by the overview, at most.
const MAX_CONDITIONS: usize = 50;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/overview", get(get_overview))
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{session_id}", get(get_session))
        .route("/v1/anomalies", get(list_anomalies))
}

pub async fn get_overview(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let by = match text(&p, "by").as_deref() {
        None | Some("model") => Dim::Model,
        Some("agent") => Dim::Agent,
        Some(_) => return Err(ApiError::bad_param("by", "expected model or agent")),
    };
    let from = time_param(&p, "from")?;
    let to = time_param(&p, "to")?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(ApiError::bad_param("from", "must be before to"));
    }
    let now = now_ns();
    let range = Range::aligned(from, to, now);
    let host = &st.config.host;
    let watched = host.agent_process.is_some() || host.agent_pid_file.is_some();
    // Ten agent polls back (a minute at least): an older sample is not "now".
    let window = (host
        .agent_poll_interval
        .max(host.metrics_interval)
        .as_nanos() as i64
        * 10)
        .max(60_000_000_000);
    let super::store::OverviewParts {
        figures,
        conditions,
        agent,
    } = st
        .store
        .overview(range, by, MAX_CONDITIONS, watched.then_some(now - window))
        .await?;
    let prev = range.previous();
    let ms = crate::util::time::ms_of;
    let mut unpriced: Vec<String> = st
        .analytics
        .cost
        .unpriced()
        .into_iter()
        .map(|u| u.model)
        .collect();
    unpriced.sort();
    unpriced.dedup();
    Ok(axum::Json(json!({
        "from_ms": ms(range.from_ns),
        "to_ms": ms(range.to_ns),
        "prev_from_ms": ms(prev.from_ns),
        "prev_to_ms": ms(prev.to_ns),
        "by": by.name(),
        "current": figures.current,
        "previous": figures.previous,
        "bucket": figures.bucket,
        "cost_series": figures.cost_series,
        "error_series": figures.error_series,
        "agent": agent,
        "conditions": conditions,
        "budgets": st.analytics.budgets.status(),
        "pricing": {"as_of": st.analytics.prices.as_of, "unpriced_models": unpriced},
    }))
    .into_response())
}

/// The agent and range a list filters by (`agent_id` or `agent`, `from`, `to`).
fn agent_range(p: &HashMap<String, String>) -> Result<AgentRange, ApiError> {
    Ok(AgentRange {
        agent_id: text(p, "agent_id").or_else(|| text(p, "agent")),
        from_ns: time_param(p, "from")?,
        to_ns: time_param(p, "to")?,
    })
}

/// One page of a list filtered by agent and range, as `{<key>: [...], next_cursor}`,
/// read on either store.
async fn list_page<T, F>(
    st: &SharedState,
    p: &HashMap<String, String>,
    key: &'static str,
    list: F,
) -> Result<Response, ApiError>
where
    T: serde::Serialize + Send + 'static,
    F: FnOnce(&dyn Rows, &AgentRange, usize, Option<&str>) -> Result<Page<T>, StoreError>
        + Send
        + 'static,
{
    let filter = agent_range(p)?;
    let limit = limit_param(p)?;
    let cursor = text(p, "cursor");
    let page = st
        .store
        .view(Box::new(move |db| {
            let page = list(db, &filter, limit, cursor.as_deref())?;
            Ok(json!({ key: page.items, "next_cursor": page.next_cursor }))
        }))
        .await?;
    Ok(axum::Json(page).into_response())
}

pub async fn list_sessions(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let filter = agent_range(&p)?;
    let limit = limit_param(&p)?;
    let page = st
        .store
        .list_sessions(filter, limit, text(&p, "cursor"))
        .await?;
    Ok(
        axum::Json(json!({ "sessions": page.items, "next_cursor": page.next_cursor }))
            .into_response(),
    )
}

pub async fn get_session(
    State(st): State<SharedState>,
    Path(id): Path<String>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let limit = match text(&p, "limit") {
        None => DEFAULT_TURNS,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_TURNS).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_param(
                    "limit",
                    format!("expected a number from 1 to {MAX_TURNS}"),
                ));
            }
        },
    };
    let cursor = text(&p, "cursor");
    match st.store.session(id, limit, cursor).await? {
        Some(d) => Ok(axum::Json(d).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no such session")),
    }
}

pub async fn list_anomalies(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    list_page(&st, &p, "anomalies", baseline::list_anomalies).await
}
