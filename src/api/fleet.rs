//! A fleet's central: `POST /v1/push` takes a sidecar's remote push, `GET /v1/instances`
//! lists the sidecars that pushed.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ingest::{invalid, read_body};
use super::{ApiError, SharedState, refusing};
use crate::model::{Record, now_ns};
use crate::sources::fleet::{self, INSTANCE_HEADER, REGION_HEADER, STATUS_HEADER, SidecarStatus};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /v1/push`: a batch in either push envelope (gzip or not). All or nothing; the
/// records keep their ids, so a retried batch is stored once.
pub async fn post_push(State(st): State<SharedState>, req: Request) -> Result<Response, ApiError> {
    if refusing(&st) {
        return Err(ApiError::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
            5,
        ));
    }
    let until = std::time::Instant::now() + super::admission::QUEUE_WAIT;
    // While the queue is full, wait holding only the request, before reading it (as OTLP).
    super::admission::wait_for_room(&st, 1, 0, until).await;
    let body = read_body(&st, req).await?;
    let instance = header(&body.headers, INSTANCE_HEADER).map(str::to_string);
    let region = header(&body.headers, REGION_HEADER).map(str::to_string);
    let status = header(&body.headers, STATUS_HEADER).and_then(SidecarStatus::parse);
    let bytes = body.bytes.clone();
    let mut batch = tokio::task::spawn_blocking(move || {
        fleet::decode(&bytes, instance.as_deref(), region.as_deref())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(invalid)?;
    batch.origin.status = status;
    let records = batch.records.len();
    let now_ms = now_ns() / 1_000_000;
    st.fleet.saw(&batch, now_ms);
    let mut batch_records = batch.records;
    // The sidecar's state, now and then, so a restarted central knows it again.
    if let Some(e) = st.fleet.record_due(&batch.origin.instance, now_ms) {
        batch_records.push(Record::Event(Box::new(e)));
    }
    // The queue filled while the batch was decoded: wait for the writer a moment (as the
    // native API and OTLP do) rather than answer 429 and have the sidecar send, and this
    // daemon decode, the same batch again.
    let bytes = batch_records.iter().map(Record::approx_bytes).sum();
    super::admission::wait_for_room(&st, batch_records.len(), bytes, until).await;
    let accepted = st
        .pipeline
        .submit_sized("push", batch_records, bytes)?
        .min(records);
    drop(body);
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "accepted": accepted,
            "records": records,
            "instance_id": batch.origin.instance,
        })),
    )
        .into_response())
}

/// `GET /v1/instances`: each sidecar that pushed since this daemon started, with its
/// last push and whether it has gone silent (`OCT_INSTANCE_STALE_AFTER`).
pub async fn list_instances(State(st): State<SharedState>) -> Response {
    let now_ms = now_ns() / 1_000_000;
    let stale_after = st.config.fleet.stale_after;
    let instances: Vec<_> = st
        .fleet
        .instances()
        .into_iter()
        .map(|i| {
            let silent_ms = (now_ms - i.last_push_ms).max(0);
            let mut v = serde_json::to_value(&i).unwrap_or_default();
            v["last_push_age_seconds"] = json!(silent_ms / 1000);
            v["lag_seconds"] = json!(
                i.newest_record_ms
                    .map(|n| (i.last_push_ms - n).max(0) / 1000)
            );
            v["stale"] = json!(silent_ms as u128 > stale_after.as_millis());
            v
        })
        .collect();
    axum::Json(json!({
        "instances": instances,
        "stale_after_seconds": stale_after.as_secs(),
    }))
    .into_response()
}
