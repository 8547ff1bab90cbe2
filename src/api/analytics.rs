//! `/v1/usage`, `/v1/budget`, `/v1/baseline` and `/v1/pricing`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::query::{text, time_param};
use super::{ApiError, SharedState};
use crate::analytics::usage::{self, Bucket, Dim, UsageQuery};
use crate::analytics::{baseline, parse_threshold};
use crate::model::TraceId;

type Params = Query<HashMap<String, String>>;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/usage", get(get_usage))
        .route("/v1/budget", get(get_budget))
        .route("/v1/baseline", get(get_baseline))
        .route("/v1/pricing", get(get_pricing))
}

/// Builds a usage query from `group_by`, `bucket`, `from`, `to` and dimension filters.
pub fn usage_query(p: &HashMap<String, String>) -> Result<UsageQuery, ApiError> {
    let mut q = UsageQuery::default();
    if let Some(g) = text(p, "group_by") {
        for part in g.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            q.group_by.push(Dim::parse(part).ok_or_else(|| {
                ApiError::bad_param(
                    "group_by",
                    format!(
                        "{part:?} is not one of model, agent, session, user, provider, instance"
                    ),
                )
            })?);
        }
    }
    q.bucket = text(p, "bucket")
        .map(|b| {
            Bucket::parse(&b).ok_or_else(|| ApiError::bad_param("bucket", "expected hour or day"))
        })
        .transpose()?;
    q.from_ns = time_param(p, "from")?;
    q.to_ns = time_param(p, "to")?;
    for d in Dim::ALL {
        if let Some(v) = text(p, d.column()).or_else(|| text(p, d.name())) {
            q.filters.push((*d, v));
        }
    }
    q.skip_percentiles = match text(p, "percentiles")
        .map(|v| v.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("true" | "1" | "yes") => false,
        Some("false" | "0" | "no") => true,
        Some(_) => return Err(ApiError::bad_param("percentiles", "expected true or false")),
    };
    Ok(q)
}

pub async fn get_usage(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let q = usage_query(&p)?;
    let csv = match text(&p, "format")
        .map(|f| f.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::bad_param("format", "expected json or csv")),
    };
    let report = st.store.usage(q).await?;
    if csv {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"usage.csv\"",
                ),
            ],
            usage::to_csv(&report),
        )
            .into_response());
    }
    Ok(axum::Json(report).into_response())
}

/// Whether an agent (or anyone, without `agent`) is over budget. From memory: no database read.
pub async fn get_budget(State(st): State<SharedState>, Query(p): Params) -> Response {
    let agent = text(&p, "agent").or_else(|| text(&p, "agent_id"));
    let budgets = st.analytics.budgets.status_for(agent.as_deref());
    let over = budgets.iter().any(|b| b.over);
    axum::Json(json!({
        "agent_id": agent,
        "over": over,
        "allowed": !over,
        "budgets": budgets,
    }))
    .into_response()
}

/// `?run_id=` checks a run; otherwise the baselines (of `agent`, or of every agent).
pub async fn get_baseline(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let mut settings = st.config.analytics.baseline();
    if let Some(t) = text(&p, "threshold") {
        settings.threshold =
            parse_threshold(&t).map_err(|e| ApiError::bad_param("threshold", e))?;
    }
    if let Some(id) = text(&p, "run_id").or_else(|| text(&p, "trace_id")) {
        let id = TraceId::parse_hex(&id)
            .ok_or_else(|| ApiError::bad_param("run_id", "expected 32 hex digits"))?;
        let check = st
            .store
            .view(Box::new(move |db| {
                Ok(serde_json::to_value(baseline::check(db, &id, &settings)?).unwrap_or_default())
            }))
            .await
            .map_err(|e| match e.status {
                StatusCode::BAD_REQUEST => ApiError {
                    status: StatusCode::NOT_FOUND,
                    ..e
                },
                _ => e,
            })?;
        return Ok(axum::Json(check).into_response());
    }
    let agent = text(&p, "agent").or_else(|| text(&p, "agent_id"));
    let runs = settings.runs;
    let agents = st
        .store
        .view(Box::new(move |db| {
            Ok(
                serde_json::to_value(baseline::show(db, agent.as_deref(), runs)?)
                    .unwrap_or_default(),
            )
        }))
        .await?;
    Ok(axum::Json(json!({ "baseline_runs": runs, "agents": agents })).into_response())
}

/// Which price applies to `model` (and `provider`), or why none does.
pub async fn get_pricing(
    State(st): State<SharedState>,
    Query(p): Params,
) -> Result<Response, ApiError> {
    let prices = &st.analytics.prices;
    let Some(model) = text(&p, "model") else {
        return Ok(axum::Json(json!({
            "as_of": prices.as_of,
            "source": prices.source,
            "models": prices.entries,
            "unpriced_models": st.analytics.cost.unpriced(),
        }))
        .into_response());
    };
    match prices.lookup(text(&p, "provider").as_deref(), &model) {
        Ok(m) => Ok(axum::Json(
            json!({ "as_of": prices.as_of, "source": prices.source, "match": m }),
        )
        .into_response()),
        Err(e) => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({ "error": e.to_string(), "field": "model", "tried": e.tried }),
            retry_after: None,
        }),
    }
}
