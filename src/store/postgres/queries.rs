//! Read queries on PostgreSQL, answering in the same shapes as the SQLite store's
//! (`store::query`): the runs list, one run, errors and events, usage, the overview,
//! and the sidecars' recorded states.
//! Connections come from a small pool (deadpool-postgres), made again when lost.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{PgError, take_root_cert, tls_config};
use crate::analytics::alert::{AlertQueue, Pending};
use crate::analytics::budgets::{PeriodQuery, Standing};
use crate::analytics::overview::{Figures, OpenCondition, Range, figures_of};
use crate::analytics::usage::{
    Dim, HOUR_NS, RollupSums, UsageQuery, UsageReport, hour_of, latency_bucket, report_of_sums,
};
use crate::model::TraceId;
use crate::model::evaluation as ev;
use crate::store::StoreError;
use crate::store::activity::{Activity, Filter as ActivityFilter};
use crate::store::metric_query::{
    self, MAX_ROWS, MetricName, NAMES_SKIP_SCAN, PointRow, SeriesBuilder, SeriesQuery, SeriesResult,
};
use crate::store::query::{
    EventFilter, EventOut, MAX_SUB_TRACES, Page, SpanOut, TraceDetail, TraceExport, TraceFilter,
    TraceSort, TraceSummary, build_tree, like_escape,
};
use crate::store::rows::{self, Arg, Cell, Dialect, Rows};
use crate::store::scores::{ScoreFilter, ScoreFold, ScoreGroup, ScoreGrouping, ScoreRow};
use crate::store::sessions::{
    CONVERSATION_SPANS, ConvSpan, CutText, MAX_MESSAGES, SessionDetail, SessionFilter, SessionRow,
    SessionWalk, parse_run_cursor, runs_page, turn_of,
};
use crate::util::hex;
use crate::util::time::{format_ns, ms_of};

/// Connections kept for queries, at most.
const POOL_SIZE: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("PostgreSQL: no connection: {0}")]
    Pool(String),
    /// A request the store cannot answer as asked; the text starts with the field.
    #[error("{0}")]
    BadRequest(String),
    /// A result column of a type the store-neutral views do not read.
    #[error("column {0}")]
    Column(String),
}

/// A request SQLite's rules refuse, refused the same way here.
fn bad_request(e: crate::store::StoreError) -> QueryError {
    QueryError::BadRequest(e.to_string())
}

impl From<tokio_postgres::Error> for QueryError {
    fn from(e: tokio_postgres::Error) -> Self {
        QueryError::Pg(PgError::Db(e))
    }
}

/// A query's parameters as they are added, each giving its `$n` placeholder.
#[derive(Default)]
struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    fn add(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect()
    }
}

/// The read side of the PostgreSQL store (and the alert queue's, which its
/// destinations move through).
#[derive(Clone)]
pub struct PgReader {
    pool: Pool,
}

impl PgReader {
    /// A pool over `url` (the form [`super::connect`] takes). Connects on first use.
    pub fn new(url: &str) -> Result<PgReader, PgError> {
        let (url, root_cert) = take_root_cert(url);
        let config: tokio_postgres::Config = url.parse().map_err(PgError::Db)?;
        let tls = MakeRustlsConnect::new(tls_config(root_cert.as_deref())?);
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        Ok(PgReader { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, QueryError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => QueryError::from(e),
            other => QueryError::Pool(other.to_string()),
        })
    }

    /// `GET /v1/traces`: newest first (or by `sort`), `limit` a page, `cursor` from the
    /// page before.
    pub async fn list_traces(
        &self,
        f: &TraceFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<TraceSummary>, QueryError> {
        let mut sql = format!("SELECT {TRACE_COLS} FROM traces t WHERE true");
        let mut args = Params::default();
        if let Some(c) = &f.score {
            let (kind, name) = (args.add(ev::EVENT), args.add(c.name.clone()));
            let value = args.add(c.value);
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM events e WHERE e.trace_id = t.trace_id AND e.name = {kind} \
                 AND e.attributes::jsonb ->> '{}' = {name} AND {} {} {value})",
                ev::NAME,
                score_value("e"),
                c.op
            ));
        }
        for (col, v) in [
            ("t.agent_id", &f.agent_id),
            ("t.session_id", &f.session_id),
            ("t.user_id", &f.user_id),
            ("t.status", &f.status),
            ("t.root_name", &f.name),
        ] {
            if let Some(v) = v {
                let p = args.add(v.clone());
                sql.push_str(&format!(" AND {col} = {p}"));
            }
        }
        if let Some(v) = &f.provider {
            let p = args.add(v.clone());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND s.provider = {p})"
            ));
        }
        if let Some(v) = &f.model {
            let p = args.add(v.clone());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND (s.request_model = {p} OR s.response_model = {p}))"
            ));
        }
        if let Some(v) = &f.instance {
            // The run's sidecar as its summary names it (the first its spans came
            // from), by index: probing each run's spans took 60 ms a page at 200,000
            // spans from 50 sidecars.
            let p = args.add(v.clone());
            sql.push_str(&format!(" AND t.instance_id = {p}"));
        }
        if let Some(v) = f.from_ns {
            let p = args.add(v);
            sql.push_str(&format!(" AND t.start_ns >= {p}"));
        }
        if let Some(v) = f.to_ns {
            let p = args.add(v);
            sql.push_str(&format!(" AND t.start_ns < {p}"));
        }
        if let Some(q) = &f.q {
            // ASCII case-insensitive, as on SQLite (LIKE).
            let p = args.add(format!("%{}%", like_escape(q)));
            sql.push_str(&format!(
                " AND lower(t.root_name) LIKE lower({p}) ESCAPE '\\'"
            ));
        }
        if let Some(c) = f.min_cost {
            let p = args.add(c);
            sql.push_str(&format!(" AND t.cost_usd >= {p}"));
        }
        let key = f.sort.expr();
        let (cmp, dir) = if f.ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        if let Some(c) = cursor {
            let bad = || QueryError::BadRequest("cursor: not a cursor this API returned".into());
            let (k, id) = c.rsplit_once('.').ok_or_else(bad)?;
            let tid = TraceId::parse_hex(id).ok_or_else(bad)?;
            let pk = match f.sort {
                TraceSort::Start | TraceSort::Duration => {
                    args.add(k.parse::<i64>().map_err(|_| bad())?)
                }
                TraceSort::Cost => args.add(
                    k.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .ok_or_else(bad)?,
                ),
            };
            let pt = args.add(tid.0.to_vec());
            sql.push_str(&format!(
                " AND ({key} {cmp} {pk} OR ({key} = {pk} AND t.trace_id {cmp} {pt}))"
            ));
        }
        let pl = args.add(limit as i64 + 1);
        sql.push_str(&format!(
            " ORDER BY {key} {dir}, t.trace_id {dir} LIMIT {pl}"
        ));
        let client = self.client().await?;
        let rows = client.query(&sql, &args.refs()).await?;
        let mut items: Vec<TraceSummary> = rows.iter().map(trace_row).collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|t| format!("{}.{}", f.sort.key_of(t), t.trace_id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// `GET /v1/traces/{id}`: the run, its spans as a tree, its events and scores, and
    /// the runs that name it as their parent. (The OpenClaw sub-agents a run spawned are
    /// found on SQLite only so far.)
    pub async fn trace_detail(&self, id: &TraceId) -> Result<Option<TraceDetail>, QueryError> {
        let client = self.client().await?;
        let key = id.0.to_vec();
        let Some(row) = client
            .query_opt(
                &format!("SELECT {TRACE_COLS} FROM traces t WHERE trace_id = $1"),
                &[&key],
            )
            .await?
        else {
            return Ok(None);
        };
        let trace = trace_row(&row);
        let (spans, events) = spans_and_events(&client, &key).await?;
        let sub_traces = client
            .query(
                &format!(
                    "SELECT {TRACE_COLS} FROM traces WHERE parent_trace_id = $1 AND trace_id <> $1
                     ORDER BY start_ns LIMIT {MAX_SUB_TRACES}"
                ),
                &[&key],
            )
            .await?
            .iter()
            .map(trace_row)
            .collect();
        Ok(Some(TraceDetail {
            trace,
            spans: build_tree(spans),
            scores: crate::store::scores::scores_of(&events),
            events,
            sub_traces,
        }))
    }

    /// `GET /v1/traces/{id}/export`: the trace with its spans, events and sub-traces,
    /// recursively, as SQLite's (`query::trace_export`, cycles cut).
    pub async fn trace_export(&self, id: &TraceId) -> Result<Option<TraceExport>, QueryError> {
        let mut seen = std::collections::HashSet::new();
        self.export_of(*id, &mut seen).await
    }

    fn export_of<'a>(
        &'a self,
        id: TraceId,
        seen: &'a mut std::collections::HashSet<TraceId>,
    ) -> BoxFuture<'a, Result<Option<TraceExport>, QueryError>> {
        Box::pin(async move {
            if !seen.insert(id) || seen.len() > 10_000 {
                return Ok(None);
            }
            let Some(trace) = self.trace_summary(&id).await? else {
                return Ok(None);
            };
            let key = id.0.to_vec();
            let (spans, events, children) = {
                let client = self.client().await?;
                let (spans, events) = spans_and_events(&client, &key).await?;
                let children: Vec<TraceId> = client
                    .query(
                        "SELECT trace_id FROM traces WHERE parent_trace_id = $1 ORDER BY start_ns",
                        &[&key],
                    )
                    .await?
                    .iter()
                    .filter_map(|r| TraceId::from_slice(r.get::<_, &[u8]>(0)))
                    .collect();
                (spans, events, children)
            };
            let mut sub_traces = Vec::new();
            for child in children {
                if let Some(t) = self.export_of(child, seen).await? {
                    sub_traces.push(t);
                }
            }
            Ok(Some(TraceExport {
                trace,
                spans,
                events,
                sub_traces,
            }))
        })
    }

    /// One run's summary, as the runs list shows it.
    pub async fn trace_summary(&self, id: &TraceId) -> Result<Option<TraceSummary>, QueryError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {TRACE_COLS} FROM traces t WHERE trace_id = $1"),
                &[&id.0.to_vec()],
            )
            .await?;
        Ok(row.as_ref().map(trace_row))
    }

    /// `GET /v1/sessions`: sessions whose latest run started in the range, the latest
    /// first. Walks the runs newest first in chunks (an index), as SQLite's does
    /// ([`SessionWalk`]), looking up the latest run of each chunk's new sessions at once.
    pub async fn list_sessions(
        &self,
        f: &SessionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<SessionRow>, QueryError> {
        /// Runs read per round trip.
        const CHUNK: i64 = 2_000;
        let mut walk = SessionWalk::new(cursor, limit).map_err(bad_request)?;
        let client = self.client().await?;
        // The walk's position: the last run read, by (start, session, run).
        let mut last: Option<(i64, String, Vec<u8>)> = None;
        while !walk.done() {
            let mut args = Params::default();
            let mut sql = String::from(
                "SELECT session_id, start_ns, trace_id FROM traces WHERE session_id IS NOT NULL",
            );
            if let Some(a) = &f.agent_id {
                sql.push_str(&format!(" AND agent_id = {}", args.add(a.clone())));
            }
            if let Some(from) = f.from_ns {
                sql.push_str(&format!(" AND start_ns >= {}", args.add(from)));
            }
            if let Some(to) = f.to_ns {
                sql.push_str(&format!(" AND start_ns < {}", args.add(to)));
            }
            if let Some(t) = walk.starts_at_most() {
                sql.push_str(&format!(" AND start_ns <= {}", args.add(t)));
            }
            // Byte order, as SQLite's and the cursor's.
            if let Some((t, s, id)) = &last {
                let (t, s, id) = (args.add(*t), args.add(s.clone()), args.add(id.clone()));
                sql.push_str(&format!(
                    " AND (start_ns, session_id COLLATE \"C\", trace_id) < ({t}, {s} COLLATE \"C\", {id})"
                ));
            }
            sql.push_str(&format!(
                " ORDER BY start_ns DESC, session_id COLLATE \"C\" DESC, trace_id DESC LIMIT {CHUNK}"
            ));
            let rows = client.query(&sql, &args.refs()).await?;
            let mut met: Vec<(String, i64)> = Vec::new();
            for r in &rows {
                if walk.done() {
                    break;
                }
                let id: String = r.get(0);
                if walk.meet(&id) {
                    met.push((id, r.get(1)));
                }
            }
            if !met.is_empty() {
                let ids: Vec<&str> = met.iter().map(|(id, _)| id.as_str()).collect();
                let latest: std::collections::HashMap<String, i64> = client
                    .query(
                        "SELECT session_id, max(start_ns) FROM traces
                         WHERE session_id = ANY($1) AND ($2::text IS NULL OR agent_id = $2)
                         GROUP BY session_id",
                        &[&ids, &f.agent_id],
                    )
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                for (id, start) in met {
                    let l = latest.get(&id).copied();
                    walk.offer(id, start, l);
                }
            }
            match rows.last() {
                Some(r) if rows.len() as i64 == CHUNK => {
                    last = Some((r.get(1), r.get(0), r.get(2)));
                }
                _ => break,
            }
        }
        let (ids, next_cursor) = walk.finish();
        let mut rows = self.session_rows(&client, &ids).await?;
        let items = ids.iter().filter_map(|id| rows.remove(id)).collect();
        Ok(Page { items, next_cursor })
    }

    /// The sums of each of `ids`' sessions that has a run.
    async fn session_rows(
        &self,
        client: &deadpool_postgres::Object,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, SessionRow>, QueryError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let rows = client
            .query(
                "SELECT session_id, count(*), min(start_ns), max(COALESCE(end_ns, start_ns)),
                    sum(llm_calls)::int8, sum(tool_calls)::int8, sum(input_tokens)::int8,
                    sum(output_tokens)::int8, sum(total_tokens)::int8, sum(cost_usd),
                    sum(error_count)::int8,
                    (SELECT a.agent_id FROM traces a WHERE a.session_id = t.session_id
                     AND a.agent_id IS NOT NULL ORDER BY a.start_ns LIMIT 1)
                 FROM traces t WHERE session_id = ANY($1) GROUP BY session_id",
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                let row = SessionRow {
                    session_id: id.clone(),
                    agent_id: r.get(11),
                    start_ms: ms_of(r.get(2)),
                    end_ms: ms_of(r.get(3)),
                    runs: r.get(1),
                    llm_calls: r.get(4),
                    tool_calls: r.get(5),
                    input_tokens: r.get(6),
                    output_tokens: r.get(7),
                    total_tokens: r.get(8),
                    cost_usd: r.get(9),
                    errors: r.get(10),
                };
                (id, row)
            })
            .collect())
    }

    /// `GET /v1/sessions/{id}`: the session's sums and a page of its runs, oldest
    /// first, each as its conversation; `None` when no run has this session id.
    pub async fn session_detail(
        &self,
        id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Option<SessionDetail>, QueryError> {
        let client = self.client().await?;
        let Some(session) = self
            .session_rows(&client, &[id.to_string()])
            .await?
            .remove(id)
        else {
            return Ok(None);
        };
        let mut args = Params::default();
        let mut sql = format!(
            "SELECT {TRACE_COLS} FROM traces t WHERE session_id = {}",
            args.add(id.to_string())
        );
        if let Some(c) = cursor {
            let (t, tid) = parse_run_cursor(c).map_err(bad_request)?;
            let (t, tid) = (args.add(t), args.add(tid.0.to_vec()));
            sql.push_str(&format!(
                " AND (start_ns > {t} OR (start_ns = {t} AND trace_id > {tid}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY start_ns, trace_id LIMIT {}",
            args.add(limit as i64 + 1)
        ));
        let mut runs: Vec<TraceSummary> = client
            .query(&sql, &args.refs())
            .await?
            .iter()
            .map(trace_row)
            .collect();
        let next_cursor = runs_page(&mut runs, limit);
        // Every run's conversation spans in one query, `MAX_MESSAGES + 1` each at most.
        let keys: Vec<Vec<u8>> = runs
            .iter()
            .filter_map(|t| TraceId::parse_hex(&t.trace_id).map(|t| t.0.to_vec()))
            .collect();
        let rows = client
            .query(
                &format!(
                    "SELECT * FROM (
                        SELECT trace_id, span_id, parent_span_id, kind, start_ns, end_ns, status,
                            COALESCE(response_model, request_model), input_tokens, output_tokens,
                            cost_usd, tool_name, tool_call_id, input_text, input_text_len,
                            output_text, output_text_len, kind = 'other',
                            row_number() OVER (PARTITION BY trace_id ORDER BY start_ns, id) AS n
                        FROM spans WHERE trace_id = ANY($1) AND {CONVERSATION_SPANS}
                     ) c WHERE n <= $2 ORDER BY trace_id, n"
                ),
                &[&keys, &(MAX_MESSAGES as i64 + 2)],
            )
            .await?;
        let mut spans_of: std::collections::HashMap<Vec<u8>, Vec<ConvSpan>> =
            std::collections::HashMap::new();
        for r in &rows {
            spans_of.entry(r.get(0)).or_default().push(ConvSpan {
                span_id: hex::encode(&r.get::<_, Vec<u8>>(1)),
                parent: hex_opt(r.get(2)),
                kind: r.get(3),
                start_ns: r.get(4),
                end_ns: r.get(5),
                status: r.get(6),
                model: r.get(7),
                input_tokens: r.get(8),
                output_tokens: r.get(9),
                cost_usd: r.get(10),
                tool_name: r.get(11),
                tool_call_id: r.get(12),
                input: CutText::new(r.get(13), r.get(14)),
                output: CutText::new(r.get(15), r.get(16)),
                attempt: r.get(17),
            });
        }
        let turns = runs
            .into_iter()
            .map(|t| {
                let key = TraceId::parse_hex(&t.trace_id)
                    .map(|t| t.0.to_vec())
                    .unwrap_or_default();
                let mut spans = spans_of.remove(&key).unwrap_or_default();
                let cut = spans.len() > MAX_MESSAGES + 1;
                spans.truncate(MAX_MESSAGES + 1);
                turn_of(t, spans, cut)
            })
            .collect();
        Ok(Some(SessionDetail {
            session,
            turns,
            next_cursor,
        }))
    }

    /// `GET /v1/usage` from the hourly rollups, grouped by sidecar, agent, provider and
    /// model, with latency percentiles from their histograms (as SQLite's); by session
    /// or user from the spans themselves ([`PgReader::usage_from_spans`]).
    pub async fn usage(&self, q: &UsageQuery) -> Result<UsageReport, QueryError> {
        let not_kept = |d: &Dim| matches!(d, Dim::Session | Dim::User);
        if q.group_by
            .iter()
            .chain(q.filters.iter().map(|(d, _)| d))
            .any(not_kept)
        {
            return self.usage_from_spans(q).await;
        }
        let mut dims = q.group_by.clone();
        dims.sort();
        dims.dedup();
        let mut args = Params::default();
        let bucket = match q.bucket {
            Some(b) => {
                let w = args.add(b.width());
                format!("hour_ns - mod(hour_ns, {w})")
            }
            None => "0::int8".into(),
        };
        let mut filter = String::from(" WHERE true");
        if let Some(lo) = q.from_ns.map(hour_of) {
            filter.push_str(&format!(" AND hour_ns >= {}", args.add(lo)));
        }
        if let Some(hi) = q.to_ns {
            filter.push_str(&format!(" AND hour_ns < {}", args.add(hi)));
        }
        for (d, v) in &q.filters {
            // '-' stands for "not set", kept as '' in the rollups.
            let v = if v == "-" { String::new() } else { v.clone() };
            filter.push_str(&format!(" AND {} = {}", d.column(), args.add(v)));
        }
        let dim_cols: String = dims.iter().map(|d| format!(", {}", d.column())).collect();
        let sql = format!(
            "SELECT {bucket} AS b{dim_cols}, sum(calls)::int8, sum(errors)::int8,
                sum(input_tokens)::int8, sum(output_tokens)::int8, sum(cache_read_tokens)::int8,
                sum(cache_write_tokens)::int8, sum(reasoning_tokens)::int8, sum(total_tokens)::int8,
                sum(cost_usd), sum(priced_calls)::int8, sum(latency_ms_sum), sum(latency_count)::int8
             FROM usage_hourly{filter} GROUP BY 1{dim_cols}"
        );
        let client = self.client().await?;
        let rows = client.query(&sql, &args.refs()).await?;
        let latencies = if q.skip_percentiles {
            Vec::new()
        } else {
            client
                .query(
                    &format!(
                        "SELECT {bucket} AS b{dim_cols}, bucket, sum(count)::int8
                         FROM usage_latency_hourly{filter} GROUP BY 1{dim_cols}, bucket"
                    ),
                    &args.refs(),
                )
                .await?
        };
        let n = dims.len();
        let key = |r: &Row| -> Vec<String> { (1..=n).map(|i| r.get::<_, String>(i)).collect() };
        Ok(report_of_sums(
            q,
            rows.iter().map(|r| {
                let k = (1..=n).map(|i| r.get::<_, String>(i)).collect();
                let at = |i: usize| 1 + n + i;
                let sums = RollupSums {
                    calls: r.get(at(0)),
                    errors: r.get(at(1)),
                    input_tokens: r.get(at(2)),
                    output_tokens: r.get(at(3)),
                    cache_read_tokens: r.get(at(4)),
                    cache_write_tokens: r.get(at(5)),
                    reasoning_tokens: r.get(at(6)),
                    total_tokens: r.get(at(7)),
                    cost_usd: r.get(at(8)),
                    priced_calls: r.get(at(9)),
                    latency_ms_sum: r.get(at(10)),
                    latency_count: r.get(at(11)),
                };
                (r.get(0), k, sums)
            }),
            latencies
                .iter()
                .map(|r| (r.get(0), key(r), r.get(1 + n), r.get(2 + n))),
        ))
    }

    /// Usage by session or user. The hourly rollups leave those out (a row per session
    /// and hour would multiply them on a fleet), so the range's model calls are read from
    /// `spans` (its day partitions pruned by start) and summed here exactly as the rollups
    /// sum them: a call in the hour `from` falls in counts, one in the hour of `to` does
    /// not unless that hour starts before `to`. Cost: a scan of the range's calls (230 ms
    /// for a day of 107,000 calls in BENCHMARKS.md, linear in the calls); the central's
    /// other questions stay on the rollups.
    pub async fn usage_from_spans(&self, q: &UsageQuery) -> Result<UsageReport, QueryError> {
        let mut dims = q.group_by.clone();
        dims.sort();
        dims.dedup();
        let value = |d: Dim| match d {
            Dim::Model => "COALESCE(response_model, request_model, '')".to_string(),
            d => format!("COALESCE({}, '')", d.column()),
        };
        let mut args = Params::default();
        let mut sql = format!(
            "SELECT start_ns, end_ns, status = 'error', input_tokens, output_tokens,
                cache_read_tokens, cache_write_tokens, reasoning_tokens, total_tokens, cost_usd{}
             FROM spans WHERE kind IN ('llm_call', 'embedding')",
            dims.iter()
                .map(|d| format!(", {}", value(*d)))
                .collect::<String>()
        );
        if let Some(lo) = q.from_ns.map(hour_of) {
            sql.push_str(&format!(" AND start_ns >= {}", args.add(lo)));
        }
        if let Some(hi) = q.to_ns {
            // The first hour boundary at or after `to`: a call before it is in an hour
            // that starts before `to`.
            let end = hour_of(hi.saturating_sub(1)).saturating_add(HOUR_NS);
            sql.push_str(&format!(" AND start_ns < {}", args.add(end)));
        }
        for (d, v) in &q.filters {
            let v = if v == "-" { String::new() } else { v.clone() };
            sql.push_str(&format!(" AND {} = {}", value(*d), args.add(v)));
        }
        let width = q.bucket.map(|b| b.width());
        let client = self.client().await?;
        let rows = client.query_raw(&sql, args.refs()).await?;
        let mut rows = std::pin::pin!(rows);
        let mut sums: std::collections::HashMap<(i64, Vec<String>), RollupSums> =
            std::collections::HashMap::new();
        let mut latencies: std::collections::HashMap<(i64, Vec<String>, i64), i64> =
            std::collections::HashMap::new();
        while let Some(r) = rows.try_next().await? {
            let start: i64 = r.get(0);
            let hour = hour_of(start);
            let bucket = width.map_or(0, |w| hour - hour.rem_euclid(w));
            let key: Vec<String> = (0..dims.len()).map(|i| r.get(10 + i)).collect();
            let n = |i: usize| r.get::<_, Option<i64>>(i).unwrap_or(0);
            let cost: Option<f64> = r.get(9);
            let latency = r
                .get::<_, Option<i64>>(1)
                .map(|end| ((end - start) as f64 / 1e6).max(0.0));
            if let Some(ms) = latency.filter(|_| !q.skip_percentiles) {
                *latencies
                    .entry((bucket, key.clone(), latency_bucket(ms)))
                    .or_default() += 1;
            }
            let s = sums.entry((bucket, key)).or_default();
            s.calls += 1;
            s.errors += i64::from(r.get::<_, bool>(2));
            s.input_tokens += n(3);
            s.output_tokens += n(4);
            s.cache_read_tokens += n(5);
            s.cache_write_tokens += n(6);
            s.reasoning_tokens += n(7);
            s.total_tokens += r.get::<_, Option<i64>>(8).unwrap_or(n(3) + n(4));
            s.cost_usd += cost.unwrap_or(0.0);
            s.priced_calls += i64::from(cost.is_some());
            s.latency_ms_sum += latency.unwrap_or(0.0);
            s.latency_count += i64::from(latency.is_some());
        }
        Ok(report_of_sums(
            q,
            sums.into_iter().map(|((b, k), s)| (b, k, s)),
            latencies.into_iter().map(|((b, k, l), c)| (b, k, l, c)),
        ))
    }

    /// `GET /v1/scores`: evaluation scores by name (and agent and UTC day), as
    /// [`scores::aggregate`] reads them on SQLite.
    pub async fn scores(
        &self,
        f: &ScoreFilter,
        by: ScoreGrouping,
    ) -> Result<Vec<ScoreGroup>, QueryError> {
        let a = |k: &str| format!("e.attributes::jsonb -> '{k}'");
        let name = format!("e.attributes::jsonb ->> '{}'", ev::NAME);
        let agent = "COALESCE(e.agent_id, t.agent_id)";
        let day =
            "to_char(to_timestamp(div(e.time_ns, 1000000000)) AT TIME ZONE 'UTC', 'YYYY-MM-DD')";
        let mut args = Params::default();
        let mut sql = format!(
            "SELECT {name} AS n, {} AS a, {} AS d, {} AS v, \
                (e.attributes::jsonb ->> '{}') IS NOT NULL AS hv, \
                CASE WHEN jsonb_typeof({}) = 'string' THEN e.attributes::jsonb ->> '{}' END AS l, \
                e.time_ns AS tn, e.uid AS u \
             FROM events e LEFT JOIN traces t ON t.trace_id = e.trace_id \
             WHERE e.name = {} AND jsonb_typeof({}) = 'string'",
            if by.agent { agent } else { "NULL::text" },
            if by.day { day } else { "NULL::text" },
            score_value("e"),
            ev::SCORE_VALUE,
            a(ev::SCORE_LABEL),
            ev::SCORE_LABEL,
            args.add(ev::EVENT),
            a(ev::NAME),
        );
        if let Some(from) = f.from_ns {
            sql.push_str(&format!(" AND e.time_ns >= {}", args.add(from)));
        }
        if let Some(to) = f.to_ns {
            sql.push_str(&format!(" AND e.time_ns < {}", args.add(to)));
        }
        if let Some(n) = &f.name {
            sql.push_str(&format!(
                " AND e.attributes::jsonb ->> '{}' = {}",
                ev::NAME,
                args.add(n.clone())
            ));
        }
        if let Some(ag) = &f.agent_id {
            sql.push_str(&format!(" AND {agent} = {}", args.add(ag.clone())));
        }
        // SQLite's order: bytes, absent first; then time and uid (the mean's sum).
        let sql = format!(
            "SELECT n, a, d, v, hv, l FROM ({sql}) s \
             ORDER BY n COLLATE \"C\", a COLLATE \"C\" NULLS FIRST, d NULLS FIRST, tn, u COLLATE \"C\""
        );
        let client = self.client().await?;
        let mut fold = ScoreFold::new(by);
        for r in client.query(&sql, &args.refs()).await? {
            fold.add(ScoreRow {
                name: r.get(0),
                agent: r.get(1),
                day: r.get(2),
                value: r.get(3),
                has_value: r.get(4),
                label: r.get(5),
            });
        }
        Ok(fold.finish())
    }

    /// `GET /v1/activity`: the central's own activity, newest first (`Filter` as on
    /// SQLite: `limit` rows before `before_id`).
    pub async fn activity(&self, f: &ActivityFilter) -> Result<Vec<Activity>, QueryError> {
        let mut args = Params::default();
        let mut sql = String::from(
            "SELECT id, time_ns, kind, remote_addr, path, message, detail FROM activity WHERE true",
        );
        if let Some(k) = &f.kind {
            sql.push_str(&format!(" AND kind = {}", args.add(k.clone())));
        }
        if let Some(t) = f.from_ns {
            sql.push_str(&format!(" AND time_ns >= {}", args.add(t)));
        }
        if let Some(t) = f.to_ns {
            sql.push_str(&format!(" AND time_ns < {}", args.add(t)));
        }
        if let Some(b) = f.before_id {
            sql.push_str(&format!(" AND id < {}", args.add(b)));
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT {}",
            args.add(f.limit as i64)
        ));
        let client = self.client().await?;
        Ok(client
            .query(&sql, &args.refs())
            .await?
            .iter()
            .map(|r| Activity {
                id: Some(r.get(0)),
                time_ns: r.get(1),
                kind: r.get(2),
                remote_addr: r.get(3),
                path: r.get(4),
                message: r.get(5),
                detail: r
                    .get::<_, Option<String>>(6)
                    .and_then(|d| serde_json::from_str(&d).ok()),
            })
            .collect())
    }

    /// `GET /v1/errors`, `/v1/events`, `/v1/logs`: newest first, `limit` a page,
    /// `cursor` from the page before (this store's own: its row ids).
    pub async fn list_events(
        &self,
        f: &EventFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<EventOut>, QueryError> {
        let mut sql = format!("SELECT {EVENT_COLS} FROM events WHERE true");
        let mut args = Params::default();
        for (col, v) in [
            ("type", &f.event_type),
            ("agent_id", &f.agent_id),
            ("session_id", &f.session_id),
            ("severity", &f.severity),
            ("name", &f.name),
            ("category", &f.category),
        ] {
            if let Some(v) = v {
                sql.push_str(&format!(" AND {col} = {}", args.add(v.clone())));
            }
        }
        if let Some(t) = &f.trace_id {
            sql.push_str(&format!(" AND trace_id = {}", args.add(t.0.to_vec())));
        }
        if let Some(s) = &f.span_id {
            sql.push_str(&format!(" AND span_id = {}", args.add(s.0.to_vec())));
        }
        if let Some(s) = &f.state {
            sql.push_str(&format!(
                " AND attributes::jsonb ->> 'state' = {}",
                args.add(s.clone())
            ));
        }
        if let Some(from) = f.from_ns {
            sql.push_str(&format!(" AND time_ns >= {}", args.add(from)));
        }
        if let Some(to) = f.to_ns {
            sql.push_str(&format!(" AND time_ns < {}", args.add(to)));
        }
        if let Some(c) = cursor {
            let bad = || QueryError::BadRequest("cursor: not a cursor this API returned".into());
            let (t, id) = c.split_once('.').ok_or_else(bad)?;
            let t = args.add(t.parse::<i64>().map_err(|_| bad())?);
            let id = args.add(id.parse::<i64>().map_err(|_| bad())?);
            sql.push_str(&format!(
                " AND (time_ns < {t} OR (time_ns = {t} AND id < {id}))"
            ));
        }
        let l = args.add(limit as i64 + 1);
        sql.push_str(&format!(" ORDER BY time_ns DESC, id DESC LIMIT {l}"));
        let client = self.client().await?;
        let mut items: Vec<EventOut> = client
            .query(&sql, &args.refs())
            .await?
            .iter()
            .map(event_row)
            .collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| format!("{}.{}", e.time_ns, e.rowid))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// `GET /v1/overview`'s figures (`by` model or agent) and the open host conditions,
    /// at most `conditions`.
    pub async fn overview(
        &self,
        r: Range,
        by: Dim,
        conditions: usize,
    ) -> Result<(Figures, Vec<OpenCondition>), QueryError> {
        let client = self.client().await?;
        let width = r.bucket_width();
        let sums = |key: &'static str, r: Range| {
            let client = &client;
            async move {
                let sql = format!(
                    "SELECT hour_ns - mod(hour_ns, $3), {key}, sum(calls)::int8, sum(errors)::int8,
                        sum(input_tokens)::int8, sum(output_tokens)::int8,
                        sum(cache_read_tokens)::int8, sum(cache_write_tokens)::int8,
                        sum(total_tokens)::int8, sum(cost_usd), sum(priced_calls)::int8
                     FROM usage_hourly WHERE hour_ns >= $1 AND hour_ns < $2 GROUP BY 1, 2"
                );
                let rows = client.query(&sql, &[&r.from_ns, &r.to_ns, &width]).await?;
                Ok::<_, QueryError>(
                    rows.iter()
                        .map(|row| {
                            let s = RollupSums {
                                calls: row.get(2),
                                errors: row.get(3),
                                input_tokens: row.get(4),
                                output_tokens: row.get(5),
                                cache_read_tokens: row.get(6),
                                cache_write_tokens: row.get(7),
                                total_tokens: row.get(8),
                                cost_usd: row.get(9),
                                priced_calls: row.get(10),
                                ..Default::default()
                            };
                            (row.get::<_, i64>(0), row.get::<_, String>(1), s)
                        })
                        .collect::<Vec<_>>(),
                )
            }
        };
        let runs = |r: Range| {
            let client = &client;
            async move {
                let row = client
                    .query_one(
                        "SELECT count(*), COALESCE(sum(tool_calls), 0)::int8 FROM traces
                         WHERE start_ns >= $1 AND start_ns < $2",
                        &[&r.from_ns, &r.to_ns],
                    )
                    .await?;
                Ok::<_, QueryError>((row.get::<_, i64>(0), row.get::<_, i64>(1)))
            }
        };
        let cur = sums(by.column(), r).await?;
        let prev = sums("''::text", r.previous()).await?;
        let figures = figures_of(r, &cur, &prev, runs(r).await?, runs(r.previous()).await?);
        let open = client
            .query(
                "SELECT uid, category, name, severity, message, time_ns, trace_id FROM events
                 WHERE type = 'error' AND source = 'host'
                   AND attributes::jsonb ->> 'state' = 'active'
                 ORDER BY time_ns DESC, id DESC LIMIT $1",
                &[&(conditions as i64)],
            )
            .await?
            .iter()
            .map(|r| OpenCondition {
                id: r.get(0),
                category: r.get(1),
                name: r.get(2),
                severity: r.get(3),
                message: r.get(4),
                since_ms: crate::util::time::ms_of(r.get::<_, i64>(5)),
                trace_id: hex_opt(r.get(6)),
            })
            .collect();
        Ok((figures, open))
    }

    /// The newest `custom` event named `name` for each value of its attribute `key`
    /// (what the fleet registry records of each sidecar), its attributes.
    pub async fn latest_event_attributes(
        &self,
        name: &str,
        key: &str,
    ) -> Result<Vec<Value>, QueryError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT ON (attributes::jsonb ->> $2) attributes FROM events
                 WHERE type = 'custom' AND name = $1 AND attributes IS NOT NULL
                 ORDER BY attributes::jsonb ->> $2, time_ns DESC, id DESC",
                &[&name, &key],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect())
    }
}

impl PgReader {
    /// Host conditions still open, as [`crate::store::query::open_host_conditions`]:
    /// the central's own (`instance`), not those its sidecars pushed.
    pub async fn open_host_conditions(
        &self,
        instance: Option<&str>,
    ) -> Result<Vec<crate::store::query::StoredCondition>, QueryError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT uid, time_ns, attributes FROM events
                 WHERE source = 'host' AND type = 'error'
                   AND attributes::jsonb ->> 'state' = 'active'
                   AND instance_id IS NOT DISTINCT FROM $1
                 ORDER BY time_ns DESC, id DESC LIMIT 10000",
                &[&instance],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let a = r
                    .get::<_, Option<String>>(2)
                    .and_then(|a| serde_json::from_str(&a).ok())
                    .unwrap_or(Value::Null);
                (r.get(0), r.get(1), a)
            })
            .collect())
    }

    /// A budget's standing: its period's usage across the fleet and the thresholds
    /// already alerted (`Budgets::restore` at start).
    pub async fn budget_standing(&self, q: &PeriodQuery) -> Result<Standing, QueryError> {
        let client = self.client().await?;
        let column = if q.tokens { "total_tokens" } else { "cost_usd" };
        let row = client
            .query_one(
                &format!(
                    "SELECT COALESCE(sum({column}), 0)::float8, COALESCE(sum(calls - priced_calls), 0)::bigint
                     FROM usage_hourly WHERE hour_ns >= $1 AND hour_ns < $2
                     AND ($3::text IS NULL OR agent_id = $3)"
                ),
                &[&q.start_ns, &q.end_ns, &q.agent],
            )
            .await?;
        let alerted = client
            .query(
                "SELECT threshold FROM budget_alerts WHERE budget = $1 AND period = $2",
                &[&q.budget, &q.period],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, i32>(0) as u32)
            .collect();
        Ok(Standing {
            spent: row.get(0),
            unpriced_calls: row.get(1),
            alerted,
        })
    }
}

impl PgReader {
    async fn next_alert(&self, sink: &str) -> Result<Option<Pending>, QueryError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, created_ns, kind, payload FROM alert_outbox
                 WHERE id > COALESCE((SELECT last_id FROM alert_cursors WHERE sink = $1), 0)
                 ORDER BY id LIMIT 1",
                &[&sink],
            )
            .await?;
        Ok(row.map(|r| Pending {
            id: r.get(0),
            created_ns: r.get(1),
            kind: r.get(2),
            payload: r.get(3),
        }))
    }

    async fn alert_done(&self, sink: &str, all: &[&str], id: i64) -> Result<(), QueryError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO alert_cursors (sink, last_id, updated_ns) VALUES ($1, $2, $3)
             ON CONFLICT (sink) DO UPDATE SET last_id = excluded.last_id, updated_ns = excluded.updated_ns",
            &[&sink, &id, &crate::model::now_ns()],
        )
        .await?;
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        // Every destination's cursor, a missing one at 0: the queue keeps what any has not passed.
        let passed: i64 = tx
            .query_one(
                "SELECT COALESCE(min(COALESCE(c.last_id, 0)), 0)::bigint
                 FROM unnest($1::text[]) AS s(sink) LEFT JOIN alert_cursors c USING (sink)",
                &[&all],
            )
            .await?
            .get(0);
        tx.execute("DELETE FROM alert_outbox WHERE id <= $1", &[&passed])
            .await?;
        Ok(tx.commit().await?)
    }
}

/// The alert queue of a fleet's central. Alerts are queued by the one writer, in id
/// order, so a cursor past an id has seen every alert before it.
impl AlertQueue for PgReader {
    fn next(&self, sink: &'static str) -> BoxFuture<'_, Option<Result<Option<Pending>, String>>> {
        Box::pin(async move { Some(self.next_alert(sink).await.map_err(|e| e.to_string())) })
    }

    fn done(
        &self,
        sink: &'static str,
        all: Vec<&'static str>,
        id: i64,
    ) -> BoxFuture<'_, Option<Result<(), String>>> {
        Box::pin(async move {
            Some(
                self.alert_done(sink, &all, id)
                    .await
                    .map_err(|e| e.to_string()),
            )
        })
    }
}

/// A fleet's series are its sidecars': each point's attributes carry the sidecar it
/// came from, so the same metric of two machines is two series (and
/// `attr.service.instance.id=` picks one).
const POINT_ATTRIBUTES: &str = "CASE WHEN instance_id IS NULL THEN attributes
     ELSE (COALESCE(attributes, '{}')::jsonb || jsonb_build_object('service.instance.id', instance_id))::text END";

impl PgReader {
    /// `GET /v1/metrics`: one metric's series per step, from the raw points.
    pub async fn metric_series(&self, q: &SeriesQuery) -> Result<SeriesResult, QueryError> {
        metric_query::check(q).map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let client = self.client().await?;
        let sql = format!(
            "SELECT {POINT_ATTRIBUTES}, time_ns,
                    COALESCE(value, CASE WHEN count > 0 THEN sum / count END),
                    unit, kind, temporality = 'cumulative' AND monotonic IS TRUE
             FROM metric_points WHERE name = $1 AND time_ns >= $2 AND time_ns < $3
             ORDER BY time_ns, id LIMIT $4"
        );
        let limit = MAX_ROWS as i64 + 1;
        let params: [&(dyn ToSql + Sync); 4] = [&q.name, &q.from_ns, &q.to_ns, &limit];
        let rows = client.query_raw(&sql, params).await?;
        let mut rows = std::pin::pin!(rows);
        let mut out = SeriesBuilder::new(q);
        while let Some(r) = rows.try_next().await? {
            let t: i64 = r.get(1);
            let v: Option<f64> = r.get(2);
            out.push(PointRow {
                attributes: r.get::<_, Option<String>>(0).unwrap_or_default(),
                time_ns: t,
                count: 1,
                total: v,
                min: v.unwrap_or_default(),
                max: v.unwrap_or_default(),
                last: v.unwrap_or_default(),
                last_ns: t,
                rolled_increase: None,
                unit: r.get(3),
                kind: r.get(4),
                running_total: r.get::<_, Option<bool>>(5).unwrap_or(false),
            })
            .map_err(|e| QueryError::BadRequest(e.to_string()))?;
        }
        Ok(out.finish())
    }

    /// `GET /v1/metrics/names`: a skip scan over the (name, time) index, one seek per
    /// name however many points are kept.
    pub async fn metric_names(&self) -> Result<Vec<MetricName>, QueryError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "{NAMES_SKIP_SCAN}
                     SELECT n.name, p.unit, p.kind, p.time_ns FROM n
                     CROSS JOIN LATERAL (SELECT unit, kind, time_ns FROM metric_points
                         WHERE name = n.name ORDER BY time_ns DESC LIMIT 1) p
                     WHERE n.name IS NOT NULL ORDER BY n.name"
                ),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| MetricName::new(r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect())
    }
}

/// A score's value as SQLite's `CAST(json_extract(..) AS REAL)` reads it: a number as
/// it is, true and false as 1 and 0, a numeric string parsed, anything else 0; null
/// when absent.
fn score_value(e: &str) -> String {
    let v = format!("{e}.attributes::jsonb -> '{}'", ev::SCORE_VALUE);
    let t = format!("{e}.attributes::jsonb ->> '{}'", ev::SCORE_VALUE);
    format!(
        "CASE jsonb_typeof({v}) WHEN 'null' THEN NULL WHEN 'number' THEN ({t})::float8 \
         WHEN 'boolean' THEN CASE WHEN ({v})::boolean THEN 1.0 ELSE 0.0 END \
         WHEN 'string' THEN CASE WHEN {t} ~ '^\\s*[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$' \
             THEN ({t})::float8 ELSE 0.0 END \
         WHEN 'object' THEN 0.0 WHEN 'array' THEN 0.0 END"
    )
}

const TRACE_COLS: &str = "trace_id, root_span_id, parent_trace_id, root_name, start_ns, end_ns,
    status, span_count, error_count, llm_calls, tool_calls, input_tokens, output_tokens,
    total_tokens, cache_read_tokens, cache_write_tokens, cost_usd, agent_id, session_id, user_id";

fn hex_opt(b: Option<Vec<u8>>) -> Option<String> {
    b.map(|b| hex::encode(&b))
}

fn json_col(s: Option<String>) -> Value {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Object(Default::default()))
}

fn trace_row(r: &Row) -> TraceSummary {
    let start_ns: i64 = r.get(4);
    let end_ns: Option<i64> = r.get(5);
    TraceSummary {
        trace_id: hex::encode(&r.get::<_, Vec<u8>>(0)),
        root_span_id: hex_opt(r.get(1)),
        parent_trace_id: hex_opt(r.get(2)),
        name: r.get(3),
        start_time: format_ns(start_ns),
        end_time: end_ns.map(format_ns),
        start_ns,
        end_ns,
        duration_ms: end_ns.map(|e| (e - start_ns) as f64 / 1e6),
        status: r.get(6),
        span_count: r.get(7),
        error_count: r.get(8),
        llm_calls: r.get(9),
        tool_calls: r.get(10),
        input_tokens: r.get(11),
        output_tokens: r.get(12),
        total_tokens: r.get(13),
        cache_read_tokens: r.get(14),
        cache_write_tokens: r.get(15),
        cost_usd: r.get(16),
        agent_id: r.get(17),
        session_id: r.get(18),
        user_id: r.get(19),
    }
}

const SPAN_COLS: &str = "trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status,
    status_message, agent_id, session_id, user_id, operation, provider, request_model, response_model,
    input_tokens, output_tokens, total_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
    cost_usd, cost_source, finish_reasons, tool_name, tool_call_id, error_type, latency_ms,
    input_text, input_text_len, output_text, output_text_len, attributes,
    resource, source, cost_computed_usd";

fn span_row(r: &Row) -> SpanOut {
    let start_ns: i64 = r.get(5);
    let end_ns: Option<i64> = r.get(6);
    let finish: Option<String> = r.get(24);
    SpanOut {
        trace_id: hex::encode(&r.get::<_, Vec<u8>>(0)),
        span_id: hex::encode(&r.get::<_, Vec<u8>>(1)),
        parent_span_id: hex_opt(r.get(2)),
        name: r.get(3),
        kind: r.get(4),
        start_time: format_ns(start_ns),
        end_time: end_ns.map(format_ns),
        start_ns,
        end_ns,
        duration_ms: end_ns.map(|e| (e - start_ns) as f64 / 1e6),
        status: r.get(7),
        status_message: r.get(8),
        agent_id: r.get(9),
        session_id: r.get(10),
        user_id: r.get(11),
        operation: r.get(12),
        provider: r.get(13),
        request_model: r.get(14),
        response_model: r.get(15),
        input_tokens: r.get(16),
        output_tokens: r.get(17),
        total_tokens: r.get(18),
        cache_read_tokens: r.get(19),
        cache_write_tokens: r.get(20),
        reasoning_tokens: r.get(21),
        cost_usd: r.get(22),
        cost_source: r.get(23),
        cost_computed_usd: r.get(36),
        finish_reasons: finish
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Array(vec![])),
        tool_name: r.get(25),
        tool_call_id: r.get(26),
        error_type: r.get(27),
        latency_ms: r.get(28),
        input_text: r.get(29),
        input_text_len: r.get(30),
        output_text: r.get(31),
        output_text_len: r.get(32),
        attributes: json_col(r.get(33)),
        resource: json_col(r.get(34)),
        source: r.get(35),
        children: Vec::new(),
    }
}

const EVENT_COLS: &str = "uid, type, time_ns, name, severity, message, stack_trace, category,
    trace_id, span_id, agent_id, session_id, user_id, attributes, resource, source, id";

fn event_row(r: &Row) -> EventOut {
    let t: i64 = r.get(2);
    EventOut {
        id: r.get(0),
        event_type: r.get(1),
        time: format_ns(t),
        time_ns: t,
        name: r.get(3),
        severity: r.get(4),
        message: r.get(5),
        stack_trace: r.get(6),
        category: r.get(7),
        trace_id: hex_opt(r.get(8)),
        span_id: hex_opt(r.get(9)),
        agent_id: r.get(10),
        session_id: r.get(11),
        user_id: r.get(12),
        attributes: json_col(r.get(13)),
        resource: json_col(r.get(14)),
        source: r.get(15),
        rowid: r.get(16),
    }
}

/// A trace's spans (flat, in start order) and events (in time order).
async fn spans_and_events(
    client: &tokio_postgres::Client,
    key: &Vec<u8>,
) -> Result<(Vec<SpanOut>, Vec<EventOut>), QueryError> {
    let spans = client
        .query(
            &format!("SELECT {SPAN_COLS} FROM spans WHERE trace_id = $1 ORDER BY start_ns, id"),
            &[key],
        )
        .await?
        .iter()
        .map(span_row)
        .collect();
    let events = client
        .query(
            &format!("SELECT {EVENT_COLS} FROM events WHERE trace_id = $1 ORDER BY time_ns, id"),
            &[key],
        )
        .await?
        .iter()
        .map(event_row)
        .collect();
    Ok((spans, events))
}

/// [`Rows`] on PostgreSQL: the store-neutral views run on a blocking thread, each query
/// driven to its end on `handle` (the API's runtime).
pub struct PgRows {
    pub reader: PgReader,
    pub handle: tokio::runtime::Handle,
    /// The runtime behind `handle` when this owns it (the CLI); dropped last.
    pub own_runtime: Option<tokio::runtime::Runtime>,
}

impl PgRows {
    /// Over `url` with a runtime of its own, for a process outside one (the CLI);
    /// connects on the first query.
    pub fn standalone(url: &str) -> Result<PgRows, PgError> {
        // A worker thread drives the connections while the caller blocks on each query.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        let reader = {
            let _in = runtime.enter();
            PgReader::new(url)?
        };
        Ok(PgRows {
            reader,
            handle: runtime.handle().clone(),
            own_runtime: Some(runtime),
        })
    }
}

impl Rows for PgRows {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn each(
        &self,
        sql: &str,
        args: &[Arg],
        f: &mut dyn FnMut(rows::Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let sql = Dialect::Postgres.statement(sql);
        let typed: Vec<(&(dyn ToSql + Sync), Type)> = args
            .iter()
            .map(|a| match a {
                Arg::Int(v) => (v as &(dyn ToSql + Sync), Type::INT8),
                Arg::Text(v) => (v as &(dyn ToSql + Sync), Type::TEXT),
                Arg::Blob(v) => (v as &(dyn ToSql + Sync), Type::BYTEA),
            })
            .collect();
        self.handle.block_on(async {
            let pg = |e: QueryError| StoreError::Postgres(e.to_string());
            let client = self.reader.client().await.map_err(pg)?;
            let stream = client
                .query_typed_raw(&sql, typed)
                .await
                .map_err(|e| pg(e.into()))?;
            futures_util::pin_mut!(stream);
            while let Some(r) = stream.try_next().await.map_err(|e| pg(e.into()))? {
                f(cells_of(&r).map_err(pg)?)?;
            }
            Ok(())
        })
    }
}

/// A PostgreSQL row as plain cells; a column of a type the views do not read is an
/// error naming it (a `sum()` of integers is `numeric`: the SQL casts it).
fn cells_of(r: &Row) -> Result<rows::Row, QueryError> {
    let mut cells = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let t = c.type_();
        let cell = if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Cell::Int)
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(|v| Cell::Int(v.into()))
        } else if *t == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map(|v| Cell::Int(v.into()))
        } else if *t == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?
                .map(|v| Cell::Int(v.into()))
        } else if *t == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i)?.map(Cell::Real)
        } else if *t == Type::FLOAT4 {
            r.try_get::<_, Option<f32>>(i)?
                .map(|v| Cell::Real(v.into()))
        } else if *t == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob)
        } else if [
            Type::TEXT,
            Type::VARCHAR,
            Type::NAME,
            Type::BPCHAR,
            Type::UNKNOWN,
        ]
        .contains(t)
        {
            r.try_get::<_, Option<String>>(i)?.map(Cell::Text)
        } else {
            return Err(QueryError::Column(format!(
                "{} is of type {t}, which the views do not read",
                c.name()
            )));
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(rows::Row(cells))
}
