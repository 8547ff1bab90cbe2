//! `/health` (always 200, the Go version's fields plus what an operator needs) and `/ready`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::SharedState;
use crate::model::now_ns;
use crate::store::{file_sizes, volume_space};
use crate::util::time::format_ns;

#[derive(Serialize)]
pub struct Health {
    // The Go version's fields, exactly.
    pub status: &'static str,
    pub uptime_seconds: u64,
    pub version: &'static str,
    pub db_status: String,
    pub db_size_bytes: u64,
    pub wal_size_bytes: u64,
    pub queue_depth: usize,
    pub events_received: u64,
    pub events_dropped: u64,
    pub last_push_time: Option<i64>,
    pub last_push_status: String,
    pub unsynced_count: u64,
    pub generated_at: String,
    pub warnings: Vec<String>,
    // Added.
    pub db_path: String,
    /// `sqlite`, or `postgresql` on a fleet's central (`db_path` is then empty).
    pub store: &'static str,
    /// This daemon's own instance id (what it names itself to a central; on a central,
    /// what its own host records carry in `service.instance.id`).
    pub instance_id: String,
    pub queue_capacity: usize,
    pub queue_bytes: usize,
    pub queue_max_bytes: usize,
    /// Bytes of capture bodies being read and parsed now, and the most allowed
    /// (`OCT_MAX_INFLIGHT_BYTES`).
    pub inflight_bytes: usize,
    pub max_inflight_bytes: usize,
    /// Open HTTP connections now, and the most allowed (`OCT_MAX_CONNECTIONS`).
    pub connections: usize,
    pub max_connections: usize,
    /// Requests refused before their body was kept (queue full, in-flight budget spent)
    /// and connections refused over the cap: their records are not in `events_dropped`.
    pub requests_refused: u64,
    pub events_written: u64,
    pub duplicates_skipped: u64,
    pub writer: WriterHealth,
    pub disk_free_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
    pub retention_deleted: u64,
    pub retention_unshipped_deleted: u64,
    /// Records that arrived older than the age-retention window: counted, not stored.
    pub records_expired: u64,
    /// `OCT_TRACE_VERBOSE`, and the bytes kept of each input or output text.
    pub trace_verbose: bool,
    pub text_limit_bytes: usize,
    pub analytics: crate::analytics::AnalyticsHealth,
    /// Every running sink: status, backlog and its age, failures, dead letters.
    pub sinks: Vec<crate::sinks::SinkHealth>,
    /// The OpenClaw gateway source: its condition, version, channels, and OpenClaw's
    /// own usage totals against ours.
    pub openclaw_gateway: serde_json::Value,
}

#[derive(Serialize)]
pub struct WriterHealth {
    pub state: &'static str,
    pub last_error: Option<String>,
    pub last_commit: Option<String>,
    pub last_batch_ms: f64,
    pub batches: u64,
}

pub fn snapshot(st: &SharedState) -> Health {
    let stats = st.pipeline.stats();
    let db_path = st
        .store
        .sqlite()
        .map(|r| r.path().to_path_buf())
        .unwrap_or_default();
    let (db_size, wal_size) = file_sizes(&db_path);
    let failing = stats.failing.load(Ordering::Relaxed);
    let last_error = stats.last_error();
    let space = volume_space(&db_path);
    let shutting_down = st.shutting_down.load(Ordering::Relaxed);
    let mut warnings = Vec::new();
    if failing {
        warnings.push(format!(
            "database writes failing: {}",
            last_error.clone().unwrap_or_default()
        ));
    }
    if let Some((free, total)) = space
        && total > 0
    {
        let used_pct = 100.0 * (total - free.min(total)) as f64 / total as f64;
        if used_pct >= st.config.store.cleanup_disk_threshold {
            warnings.push(format!(
                "volume {:.1}% full (threshold {}%)",
                used_pct, st.config.store.cleanup_disk_threshold
            ));
        }
    }
    let depth = st.pipeline.depth();
    let (queue_bytes, queue_max_bytes) = st.pipeline.depth_bytes();
    if depth * 10 >= st.pipeline.capacity() * 9 || queue_bytes / 10 * 10 >= queue_max_bytes / 10 * 9
    {
        warnings.push("queue nearly full".into());
    }
    let unshipped_deleted = stats.retention_unshipped_deleted.load(Ordering::Relaxed);
    if unshipped_deleted > 0 {
        warnings.push(format!(
            "retention deleted {unshipped_deleted} rows before a sink shipped them"
        ));
    }
    if st.config.ingest.verbose {
        warnings.push("verbose capture on (OCT_TRACE_VERBOSE): texts kept up to 200 KiB".into());
    }
    for (instance, silent) in st
        .fleet
        .stale(st.config.fleet.stale_after, now_ns() / 1_000_000)
    {
        warnings.push(format!(
            "instance {instance} silent for {} s (OCT_INSTANCE_STALE_AFTER)",
            silent.as_secs()
        ));
    }
    for i in st.fleet.instances() {
        if let Some(c) = i.status.as_ref().filter(|s| !s.conditions.is_empty()) {
            warnings.push(format!(
                "instance {} reports open conditions: {}",
                i.instance_id,
                c.conditions.join(", ")
            ));
        }
    }
    warnings.extend(st.analytics.warnings());
    let gateway = st.gateway.snapshot();
    warnings.extend(gateway.warnings());
    let last_commit = stats.last_commit_ns.load(Ordering::Relaxed);
    let push = st.sinks.status(crate::sinks::push::SINK);
    for s in st.sinks.statuses() {
        let failures = s.consecutive_failures();
        if failures > 0 {
            warnings.push(format!(
                "{} failing ({failures} consecutive failures): {}",
                s.name,
                s.last_error().unwrap_or_default()
            ));
        }
    }
    Health {
        status: if shutting_down {
            "shutting_down"
        } else if failing {
            "degraded"
        } else {
            "ok"
        },
        uptime_seconds: st.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
        db_status: if failing {
            format!("error: {}", last_error.clone().unwrap_or_default())
        } else {
            "ok".into()
        },
        db_size_bytes: db_size,
        wal_size_bytes: wal_size,
        queue_depth: depth,
        events_received: stats.received.load(Ordering::Relaxed),
        events_dropped: stats.dropped.load(Ordering::Relaxed),
        last_push_time: push.and_then(|p| p.last_success_ms()),
        last_push_status: push.map_or("disabled", |p| p.state()).into(),
        // Filled from the store by the handler (rows after the push cursor).
        unsynced_count: 0,
        generated_at: format_ns(now_ns() / 1_000_000_000 * 1_000_000_000),
        warnings,
        db_path: db_path.display().to_string(),
        store: st.store.kind(),
        instance_id: st.config.instance_id.clone(),
        queue_capacity: st.pipeline.capacity(),
        queue_bytes,
        queue_max_bytes,
        inflight_bytes: st.admission.inflight(),
        max_inflight_bytes: st.admission.max_inflight(),
        connections: st.admission.connections(),
        max_connections: st.admission.max_connections(),
        requests_refused: st.admission.refused_counter.get(),
        events_written: stats.written.load(Ordering::Relaxed),
        duplicates_skipped: stats.duplicates.load(Ordering::Relaxed),
        writer: WriterHealth {
            state: if failing { "retrying" } else { "ok" },
            last_error,
            last_commit: (last_commit > 0).then(|| format_ns(last_commit)),
            last_batch_ms: stats.last_batch_micros.load(Ordering::Relaxed) as f64 / 1000.0,
            batches: stats.batches.load(Ordering::Relaxed),
        },
        disk_free_bytes: space.map(|s| s.0),
        disk_total_bytes: space.map(|s| s.1),
        retention_deleted: stats.retention_deleted.load(Ordering::Relaxed),
        retention_unshipped_deleted: unshipped_deleted,
        records_expired: stats.expired.load(Ordering::Relaxed),
        trace_verbose: st.config.ingest.verbose,
        text_limit_bytes: st.config.ingest.text_limit(),
        analytics: st.analytics.health(),
        sinks: Vec::new(),
        openclaw_gateway: gateway.brief(),
    }
}

pub async fn health(State(st): State<SharedState>) -> Response {
    let mut h = snapshot(&st);
    let statuses = st.sinks.statuses().to_vec();
    // Sinks keep their cursors in SQLite; a central on PostgreSQL runs none.
    let Some(pool) = st.store.sqlite().cloned() else {
        return axum::Json(h).into_response();
    };
    match super::store::on_pool(pool, move |c| crate::sinks::health(c, &statuses)).await {
        Ok(sinks) => {
            if let Some(p) = sinks.iter().find(|s| s.name == crate::sinks::push::SINK) {
                h.unsynced_count = p.backlog;
            }
            for s in sinks.iter().filter(|s| s.dead_letters > 0) {
                h.warnings.push(format!(
                    "{} has {} dead-lettered records (GET /v1/dead-letters)",
                    s.name, s.dead_letters
                ));
            }
            h.sinks = sinks;
        }
        // As the Go version: the count is unknown, say so, keep answering.
        Err(_) => {
            h.warnings.push("unsynced_count_unavailable".into());
            h.status = "degraded";
        }
    }
    axum::Json(h).into_response()
}

pub async fn ready(State(st): State<SharedState>) -> Response {
    let ready = st.ready.load(Ordering::Relaxed) && !st.shutting_down.load(Ordering::Relaxed);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(serde_json::json!({ "ready": ready }))).into_response()
}
