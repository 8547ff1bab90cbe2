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
