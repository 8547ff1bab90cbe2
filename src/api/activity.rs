//! `GET /v1/activity`: the daemon's own administrative and security events, newest first.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::query::{limit_param, time_param};
use super::{ApiError, SharedState};
use crate::store::activity::Filter;
use crate::util::time::format_ns;

pub async fn list(
    State(st): State<SharedState>,
    Query(p): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = limit_param(&p)?;
    let before_id = match p.get("cursor").map(|c| c.trim()).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse()
                .map_err(|_| ApiError::bad_param("cursor", "not a cursor this API returned"))?,
        ),
    };
    let f = Filter {
        kind: p
            .get("kind")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        from_ns: time_param(&p, "from")?,
        to_ns: time_param(&p, "to")?,
        before_id,
        limit: limit + 1,
    };
    let mut items = st.store.activity(f).await?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().and_then(|a| a.id).map(|id| id.to_string())
    } else {
        None
    };
    let items: Vec<_> = items
        .into_iter()
        .map(|a| {
            let mut v = serde_json::to_value(&a).unwrap_or_default();
            v["time"] = json!(format_ns(a.time_ns));
            v
        })
        .collect();
    Ok(axum::Json(json!({ "items": items, "next_cursor": next_cursor })).into_response())
}
