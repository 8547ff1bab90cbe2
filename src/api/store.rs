//! The store as the query surface sees it: one interface, a SQLite and a PostgreSQL
//! implementation. The views written once over [`Rows`] (the OpenClaw views, baselines)
//! run on either through [`QueryStore::view`].

use std::sync::Arc;

use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::ApiError;
use crate::analytics::openclaw::SpawnedSubagent;
use crate::analytics::overview::{self, AgentNow, Figures, OpenCondition, Range};
use crate::analytics::usage::{Dim, UsageQuery, UsageReport};
use crate::model::TraceId;
use crate::store::activity::{self, Activity, Filter as ActivityFilter};
use crate::store::metric_query::{self, MetricName, SeriesQuery, SeriesResult};
use crate::store::postgres::queries::PgRows;
use crate::store::postgres::queries::{PgReader, QueryError};
use crate::store::query::{
    self, EventFilter, EventOut, Page, TraceDetail, TraceExport, TraceFilter, TraceSummary,
};
use crate::store::rows::Rows;
use crate::store::scores::{self, ScoreFilter, ScoreGroup, ScoreGrouping};
use crate::store::sessions::{self, SessionDetail, SessionFilter, SessionRow};
use crate::store::{ReadPool, StoreError};

/// What `/v1/overview` reads from the store.
pub struct OverviewParts {
    pub figures: Figures,
    pub conditions: Vec<OpenCondition>,
    pub agent: AgentNow,
}

pub trait QueryStore: Send + Sync {
    /// `sqlite` or `postgresql`, as `/health` says.
    fn kind(&self) -> &'static str;
    /// The SQLite read pool, for the queries not on this interface yet.
    fn sqlite(&self) -> Option<&Arc<ReadPool>>;
    /// `GET /v1/traces`.
    fn list_traces(
        &self,
        filter: TraceFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Page<TraceSummary>, ApiError>>;
    /// `GET /v1/traces/{id}`: the run's detail with its sub-agents and cost rollup.
    fn trace(&self, id: TraceId) -> BoxFuture<'_, Result<Option<Value>, ApiError>>;
    /// `GET /v1/traces/{id}/export`: the trace with its spans, events and sub-traces.
    fn trace_export(&self, id: TraceId) -> BoxFuture<'_, Result<Option<TraceExport>, ApiError>>;
    /// `GET /v1/errors`, `/v1/events`, `/v1/logs`.
    fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Page<EventOut>, ApiError>>;
    /// `GET /v1/overview`: the figures, the open host conditions (at most
    /// `conditions`) and the watched agent now (when `agent_since` is given: samples
    /// after it count).
    fn overview(
        &self,
        range: Range,
        by: Dim,
        conditions: usize,
        agent_since: Option<i64>,
    ) -> BoxFuture<'_, Result<OverviewParts, ApiError>>;
    /// `GET /v1/usage`.
    fn usage(&self, q: UsageQuery) -> BoxFuture<'_, Result<UsageReport, ApiError>>;
    /// `GET /v1/metrics`: one metric's series per step.
    fn metric_series(&self, q: SeriesQuery) -> BoxFuture<'_, Result<SeriesResult, ApiError>>;
    /// `GET /v1/metrics/names`.
    fn metric_names(&self) -> BoxFuture<'_, Result<Vec<MetricName>, ApiError>>;
    /// The attributes of the newest `custom` event named `name` per value of `key`.
    fn latest_event_attributes(
        &self,
        name: &'static str,
        key: &'static str,
    ) -> BoxFuture<'_, Result<Vec<Value>, ApiError>>;
    /// Host conditions this daemon left open (uid, time, attributes), newest first:
    /// those whose records name `instance` (`None`: name none). The host source
    /// adopts them at start, so none is reported twice.
    fn open_host_conditions(
        &self,
        instance: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<crate::store::query::StoredCondition>, ApiError>>;
    /// `GET /v1/activity`: the daemon's own activity, newest first.
    fn activity(&self, filter: ActivityFilter) -> BoxFuture<'_, Result<Vec<Activity>, ApiError>>;
    /// `GET /v1/scores`: evaluation scores aggregated by name (and agent and day).
    fn scores(
        &self,
        filter: ScoreFilter,
        by: ScoreGrouping,
    ) -> BoxFuture<'_, Result<Vec<ScoreGroup>, ApiError>>;
    /// A view written once over [`Rows`] (the OpenClaw views), answered by this store
    /// off the async workers.
    fn view(&self, f: ViewFn) -> BoxFuture<'_, Result<Value, ApiError>>;
    /// `GET /v1/sessions`.
    fn list_sessions(
        &self,
        filter: SessionFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Page<SessionRow>, ApiError>>;
    /// `GET /v1/sessions/{id}`: the session and a page of its turns.
    fn session(
        &self,
        id: String,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Option<SessionDetail>, ApiError>>;
}

/// A view's answer, once the heap's free pages went back to the OS: a view over a week
/// of a fleet's runs reads hundreds of thousands of rows, and the daemon stays small.
fn released(v: Result<Value, StoreError>) -> Result<Value, StoreError> {
    crate::util::heap::release_free_pages();
    v
}

/// A store-neutral view, its answer as JSON.
pub type ViewFn = Box<dyn FnOnce(&dyn Rows) -> Result<Value, StoreError> + Send>;

/// The local SQLite file.
pub struct SqliteQueries(pub Arc<ReadPool>);

impl SqliteQueries {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        on_pool(self.0.clone(), f).await
    }
}

/// Runs a blocking query on a connection of `pool`, off the async workers.
pub async fn on_pool<T: Send + 'static>(
    pool: Arc<ReadPool>,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || pool.with(f))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("query task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

impl QueryStore for SqliteQueries {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn sqlite(&self) -> Option<&Arc<ReadPool>> {
        Some(&self.0)
    }

    fn list_traces(
        &self,
        filter: TraceFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Page<TraceSummary>, ApiError>> {
        Box::pin(self.run(move |c| query::list_traces(c, &filter, limit, cursor.as_deref())))
    }

    fn trace(&self, id: TraceId) -> BoxFuture<'_, Result<Option<Value>, ApiError>> {
        Box::pin(self.run(move |c| {
            let Some(mut d) = query::trace_detail(c, &id)? else {
                return Ok(None);
            };
            let spawned = crate::analytics::openclaw::subagents_of_run(c, &id)?;
            for tid in subagent_runs_to_add(&d, &spawned) {
                if let Some(sum) = query::trace_summary(c, &tid)? {
                    d.sub_traces.push(sum);
                }
            }
            Ok(Some(detail_json(d, json!(spawned))))
        }))
    }

    fn trace_export(&self, id: TraceId) -> BoxFuture<'_, Result<Option<TraceExport>, ApiError>> {
        Box::pin(self.run(move |c| query::trace_export(c, &id)))
    }

    fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Page<EventOut>, ApiError>> {
        Box::pin(self.run(move |c| query::list_events(c, &filter, limit, cursor.as_deref())))
    }

    fn overview(
        &self,
        range: Range,
        by: Dim,
        conditions: usize,
        agent_since: Option<i64>,
    ) -> BoxFuture<'_, Result<OverviewParts, ApiError>> {
        Box::pin(self.run(move |c| {
            let figures = overview::figures(c, range, by)?;
            let open = overview::open_conditions(c, conditions)?;
            let agent = match agent_since {
                Some(since) => overview::agent_now(c, since)?,
                None => AgentNow::default(),
            };
            Ok(OverviewParts {
                figures,
                conditions: open,
                agent,
            })
        }))
    }

    fn usage(&self, q: UsageQuery) -> BoxFuture<'_, Result<UsageReport, ApiError>> {
        Box::pin(self.run(move |c| crate::analytics::usage::query(c, &q)))
    }

    fn latest_event_attributes(
        &self,
        name: &'static str,
        key: &'static str,
    ) -> BoxFuture<'_, Result<Vec<Value>, ApiError>> {
        Box::pin(self.run(move |c| query::latest_event_attributes(c, name, key)))
    }

    fn metric_series(&self, q: SeriesQuery) -> BoxFuture<'_, Result<SeriesResult, ApiError>> {
        Box::pin(self.run(move |c| metric_query::series(c, &q)))
    }

    fn metric_names(&self) -> BoxFuture<'_, Result<Vec<MetricName>, ApiError>> {
        Box::pin(self.run(metric_query::names))
    }

    fn open_host_conditions(
        &self,
        instance: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<crate::store::query::StoredCondition>, ApiError>> {
        Box::pin(self.run(move |c| query::open_host_conditions(c, instance.as_deref())))
    }

    fn activity(&self, filter: ActivityFilter) -> BoxFuture<'_, Result<Vec<Activity>, ApiError>> {
        Box::pin(self.run(move |c| Ok(activity::list(c, &filter)?)))
    }

    fn scores(
        &self,
        filter: ScoreFilter,
        by: ScoreGrouping,
    ) -> BoxFuture<'_, Result<Vec<ScoreGroup>, ApiError>> {
        Box::pin(self.run(move |c| scores::aggregate(c, &filter, by)))
    }

    fn view(&self, f: ViewFn) -> BoxFuture<'_, Result<Value, ApiError>> {
        Box::pin(self.run(move |c| released(f(c))))
    }

    fn list_sessions(
        &self,
        filter: SessionFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Page<SessionRow>, ApiError>> {
        Box::pin(self.run(move |c| sessions::list_sessions(c, &filter, limit, cursor.as_deref())))
    }

    fn session(
        &self,
        id: String,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Option<SessionDetail>, ApiError>> {
        Box::pin(self.run(move |c| sessions::session_detail(c, &id, limit, cursor.as_deref())))
    }
}

/// A fleet's central on PostgreSQL.
pub struct PgQueries(pub PgReader);

impl PgQueries {
    /// Runs `f` over this store's [`Rows`] on a blocking thread.
    async fn on_rows<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Rows) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Result<T, StoreError>, ApiError> {
        let rows = PgRows {
            reader: self.0.clone(),
            handle: tokio::runtime::Handle::current(),
            own_runtime: None,
        };
        tokio::task::spawn_blocking(move || f(&rows))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("query task failed: {e}"),
                )
            })
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            // The same answer as SQLite's for the same bad request.
            QueryError::BadRequest(m) => crate::store::StoreError::BadRequest(m).into(),
            other => {
                tracing::warn!(error = %other, "query failed");
                ApiError::retry(StatusCode::SERVICE_UNAVAILABLE, other.to_string(), 5)
            }
        }
    }
}

impl QueryStore for PgQueries {
    fn kind(&self) -> &'static str {
        "postgresql"
    }

    fn sqlite(&self) -> Option<&Arc<ReadPool>> {
        None
    }

    fn list_traces(
        &self,
        filter: TraceFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Page<TraceSummary>, ApiError>> {
        Box::pin(async move {
            Ok(self
                .0
                .list_traces(&filter, limit, cursor.as_deref())
                .await?)
        })
    }

    fn trace(&self, id: TraceId) -> BoxFuture<'_, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            let Some(mut d) = self.0.trace_detail(&id).await? else {
                return Ok(None);
            };
            let spawned = self
                .on_rows(move |db| crate::analytics::openclaw::subagents_of_run(db, &id))
                .await??;
            for tid in subagent_runs_to_add(&d, &spawned) {
                if let Some(sum) = self.0.trace_summary(&tid).await? {
                    d.sub_traces.push(sum);
                }
            }
            Ok(Some(detail_json(d, json!(spawned))))
        })
    }

    fn trace_export(&self, id: TraceId) -> BoxFuture<'_, Result<Option<TraceExport>, ApiError>> {
        Box::pin(async move { Ok(self.0.trace_export(&id).await?) })
    }

    fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Page<EventOut>, ApiError>> {
        Box::pin(async move {
            Ok(self
                .0
                .list_events(&filter, limit, cursor.as_deref())
                .await?)
        })
    }

    /// The watched agent's samples are the central's own host's, not kept here.
    fn overview(
        &self,
        range: Range,
        by: Dim,
        conditions: usize,
        _agent_since: Option<i64>,
    ) -> BoxFuture<'_, Result<OverviewParts, ApiError>> {
        Box::pin(async move {
            let (figures, conditions) = self.0.overview(range, by, conditions).await?;
            Ok(OverviewParts {
                figures,
                conditions,
                agent: AgentNow::default(),
            })
        })
    }

    fn usage(&self, q: UsageQuery) -> BoxFuture<'_, Result<UsageReport, ApiError>> {
        Box::pin(async move { Ok(self.0.usage(&q).await?) })
    }

    fn latest_event_attributes(
        &self,
        name: &'static str,
        key: &'static str,
    ) -> BoxFuture<'_, Result<Vec<Value>, ApiError>> {
        Box::pin(async move { Ok(self.0.latest_event_attributes(name, key).await?) })
    }

    fn metric_series(&self, q: SeriesQuery) -> BoxFuture<'_, Result<SeriesResult, ApiError>> {
        Box::pin(async move { Ok(self.0.metric_series(&q).await?) })
    }

    fn metric_names(&self) -> BoxFuture<'_, Result<Vec<MetricName>, ApiError>> {
        Box::pin(async move { Ok(self.0.metric_names().await?) })
    }

    fn open_host_conditions(
        &self,
        instance: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<crate::store::query::StoredCondition>, ApiError>> {
        Box::pin(async move { Ok(self.0.open_host_conditions(instance.as_deref()).await?) })
    }

    fn activity(&self, filter: ActivityFilter) -> BoxFuture<'_, Result<Vec<Activity>, ApiError>> {
        Box::pin(async move { Ok(self.0.activity(&filter).await?) })
    }

    fn scores(
        &self,
        filter: ScoreFilter,
        by: ScoreGrouping,
    ) -> BoxFuture<'_, Result<Vec<ScoreGroup>, ApiError>> {
        Box::pin(async move { Ok(self.0.scores(&filter, by).await?) })
    }

    fn view(&self, f: ViewFn) -> BoxFuture<'_, Result<Value, ApiError>> {
        Box::pin(async move { Ok(self.on_rows(move |db| released(f(db))).await??) })
    }

    fn list_sessions(
        &self,
        filter: SessionFilter,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Page<SessionRow>, ApiError>> {
        Box::pin(async move {
            Ok(self
                .0
                .list_sessions(&filter, limit, cursor.as_deref())
                .await?)
        })
    }

    fn session(
        &self,
        id: String,
        limit: usize,
        cursor: Option<String>,
    ) -> BoxFuture<'_, Result<Option<SessionDetail>, ApiError>> {
        Box::pin(async move { Ok(self.0.session_detail(&id, limit, cursor.as_deref()).await?) })
    }
}

/// A run's detail as `GET /v1/traces/{id}` answers it: the run, with the OpenClaw
/// sub-agents it spawned (`subagents`) and its cost with its sub-runs' (`rollup`).
/// The runs of the sub-agents a run spawned that its sub-runs do not list yet, in
/// order, as many as still fit under [`query::MAX_SUB_TRACES`].
fn subagent_runs_to_add(d: &TraceDetail, spawned: &[SpawnedSubagent]) -> Vec<TraceId> {
    let mut out: Vec<TraceId> = Vec::new();
    for t in spawned.iter().flat_map(|s| s.runs.iter()) {
        if d.sub_traces.len() + out.len() >= query::MAX_SUB_TRACES {
            break;
        }
        let Some(tid) = TraceId::parse_hex(t) else {
            continue;
        };
        if *t != d.trace.trace_id
            && !d.sub_traces.iter().any(|s| &s.trace_id == t)
            && !out.contains(&tid)
        {
            out.push(tid);
        }
    }
    out
}

fn detail_json(mut d: TraceDetail, subagents: Value) -> Value {
    d.sub_traces
        .sort_by(|a, b| (a.start_ns, &a.trace_id).cmp(&(b.start_ns, &b.trace_id)));
    // `+ 0.0`: an empty sum is -0.0, which JSON would show as such.
    let sub_cost: f64 = d.sub_traces.iter().filter_map(|s| s.cost_usd).sum::<f64>() + 0.0;
    let rollup = json!({
        "own_cost_usd": d.trace.cost_usd,
        "sub_traces_cost_usd": sub_cost,
        "total_cost_usd": d.trace.cost_usd.unwrap_or(0.0) + sub_cost,
        "sub_traces_unpriced": d.sub_traces.iter().filter(|s| s.cost_usd.is_none()).count(),
    });
    let mut v = serde_json::to_value(&d).unwrap_or_default();
    v["subagents"] = subagents;
    v["rollup"] = rollup;
    v
}
