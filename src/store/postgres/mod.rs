//! PostgreSQL: the store of a fleet's central (`OCT_DATABASE_URL`), for when one
//! openclaw-trace collects many sidecars.
//!
//! Spans, events and metric points are partitioned by UTC day (declarative range
//! partitions on their time), so retention drops whole partitions instead of deleting
//! rows. A batch's spans go by binary `COPY` straight into `spans`; a batch holding a
//! span already stored (a retried push) is rolled back to a savepoint and goes again
//! through a staging table with `ON CONFLICT DO NOTHING`, so a record sent twice is
//! stored once: a span by trace, span id and start, an event by uid and time, a metric
//! point by its series and time. The runs' summaries (`traces`) and the hourly usage
//! are added from exactly the new spans, and the hooks' writes (budget alerts) made,
//! in the batch's one transaction. Every row
//! names the sidecar it came from (`instance_id`, `region`: the resource's
//! `service.instance.id` and `cloud.region`).
//!
//! A day partition is created when the first row of that day arrives, for days from
//! [`PAST_DAYS`] before today to [`FUTURE_DAYS`] after; a row dated outside that window
//! (a clock far off, a replayed archive) goes to the default partition and moves to its
//! day's partition if that day is created later, so nothing a client sends can make
//! thousands of tables.

pub mod queries;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::pin::pin;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Map, Value};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::analytics::cost::is_usage_span;
use crate::analytics::usage::{CallUsage, hour_of, latency_bucket};
use crate::model::{
    CappedText, CostSource, Event, MetricPoint, Record, SharedMap, Span, SpanId, SpanKind,
    StatusCode, TraceId,
};
use crate::pipeline::AlertClaim;
use crate::sources::fleet::{INSTANCE_ATTRIBUTE, REGION_ATTRIBUTE};
use crate::store::activity::Activity;
use crate::store::merge;
use crate::store::write::{MergedSpan, WriteEffect, metric_point_key};

/// Day partitions are made for rows this many days before today at most...
pub const PAST_DAYS: i64 = 400;
/// ... and this many after (clocks a little ahead).
pub const FUTURE_DAYS: i64 = 2;

const DAY_NS: i64 = 86_400 * 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL: {}", with_causes(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("PostgreSQL TLS: sslrootcert {path}: {reason}")]
    RootCert { path: String, reason: String },
    #[error("PostgreSQL TLS: {0}")]
    TlsSetup(String),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(String),
    #[error(
        "database schema version {found} is newer than this build understands ({supported}); upgrade openclaw-trace"
    )]
    TooNew { found: i64, supported: i64 },
}

/// An error and what caused it ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer"): tokio-postgres keeps the reason in its source.
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Forward-only migrations, each applied once in its own transaction.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE spans (
        id BIGSERIAL NOT NULL,
        trace_id BYTEA NOT NULL,
        span_id BYTEA NOT NULL,
        parent_span_id BYTEA,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        start_ns BIGINT NOT NULL,
        end_ns BIGINT,
        status TEXT NOT NULL,
        status_message TEXT,
        agent_id TEXT,
        session_id TEXT,
        user_id TEXT,
        operation TEXT,
        provider TEXT,
        request_model TEXT,
        response_model TEXT,
        input_tokens BIGINT,
        output_tokens BIGINT,
        total_tokens BIGINT,
        cache_read_tokens BIGINT,
        cache_write_tokens BIGINT,
        reasoning_tokens BIGINT,
        cost_usd DOUBLE PRECISION,
        cost_source TEXT,
        finish_reasons TEXT,
        tool_name TEXT,
        tool_call_id TEXT,
        error_type TEXT,
        latency_ms DOUBLE PRECISION,
        input_text TEXT,
        input_text_len BIGINT,
        output_text TEXT,
        output_text_len BIGINT,
        attributes TEXT,
        resource TEXT,
        source TEXT NOT NULL,
        received_ns BIGINT NOT NULL,
        cost_computed_usd DOUBLE PRECISION,
        instance_id TEXT,
        region TEXT
    ) PARTITION BY RANGE (start_ns);
    CREATE TABLE spans_default PARTITION OF spans DEFAULT;
    CREATE UNIQUE INDEX spans_identity ON spans (trace_id, span_id, start_ns);
    CREATE INDEX spans_start ON spans (start_ns);

    CREATE TABLE events (
        id BIGSERIAL NOT NULL,
        uid TEXT NOT NULL,
        type TEXT NOT NULL,
        time_ns BIGINT NOT NULL,
        name TEXT NOT NULL,
        severity TEXT NOT NULL,
        message TEXT,
        stack_trace TEXT,
        category TEXT,
        trace_id BYTEA,
        span_id BYTEA,
        agent_id TEXT,
        session_id TEXT,
        user_id TEXT,
        attributes TEXT,
        resource TEXT,
        source TEXT NOT NULL,
        received_ns BIGINT NOT NULL,
        instance_id TEXT,
        region TEXT
    ) PARTITION BY RANGE (time_ns);
    CREATE TABLE events_default PARTITION OF events DEFAULT;
    CREATE UNIQUE INDEX events_uid ON events (uid, time_ns);
    CREATE INDEX events_time ON events (time_ns);
    CREATE INDEX events_trace ON events (trace_id) WHERE trace_id IS NOT NULL;
"#,
    // 2: what the runs list and usage read, kept by the write that stores the spans.
    r#"
    CREATE TABLE traces (
        trace_id BYTEA PRIMARY KEY,
        root_span_id BYTEA,
        root_name TEXT,
        start_ns BIGINT NOT NULL,
        end_ns BIGINT,
        status TEXT NOT NULL,
        span_count BIGINT NOT NULL,
        error_count BIGINT NOT NULL,
        llm_calls BIGINT NOT NULL,
        tool_calls BIGINT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        total_tokens BIGINT NOT NULL,
        cache_read_tokens BIGINT NOT NULL,
        cache_write_tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION,
        agent_id TEXT,
        session_id TEXT,
        user_id TEXT,
        instance_id TEXT,
        updated_ns BIGINT NOT NULL
    );
    CREATE INDEX traces_start ON traces (start_ns, trace_id);
    CREATE INDEX traces_agent_start ON traces (agent_id, start_ns) WHERE agent_id IS NOT NULL;
    CREATE INDEX traces_session_start ON traces (session_id, start_ns) WHERE session_id IS NOT NULL;
    CREATE INDEX traces_instance_start ON traces (instance_id, start_ns) WHERE instance_id IS NOT NULL;

    -- LLM calls by hour, sidecar, agent, provider and model ('' where unknown).
    CREATE TABLE usage_hourly (
        hour_ns BIGINT NOT NULL,
        instance_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        calls BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        total_tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        priced_calls BIGINT NOT NULL,
        PRIMARY KEY (hour_ns, instance_id, agent_id, provider, model)
    );
"#,
    // 3: what the SQLite store's run summaries and usage rollups also keep: the run a
    // run was spawned by (its sub-runs), and every sum `/v1/usage` shows.
    r#"
    ALTER TABLE traces ADD COLUMN parent_trace_id BYTEA;
    CREATE INDEX traces_parent ON traces (parent_trace_id) WHERE parent_trace_id IS NOT NULL;
    ALTER TABLE usage_hourly
        ADD COLUMN cache_read_tokens BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN reasoning_tokens BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN latency_ms_sum DOUBLE PRECISION NOT NULL DEFAULT 0,
        ADD COLUMN latency_count BIGINT NOT NULL DEFAULT 0;
"#,
    // 4: the overview counts a range's runs and their tool calls from the index alone
    // (an index-only scan: 24 hours of 2.5 million runs took 300 ms from the table).
    r#"
    DROP INDEX traces_start;
    CREATE INDEX traces_start ON traces (start_ns, trace_id) INCLUDE (tool_calls);
"#,
    // 5: fleet budgets: each threshold alerts once per period (claimed in the batch's
    // transaction), and the alerts wait here for their destinations, each of which
    // keeps its cursor.
    r#"
    CREATE TABLE budget_alerts (
        budget TEXT NOT NULL,
        period TEXT NOT NULL,
        threshold INTEGER NOT NULL,
        spent DOUBLE PRECISION NOT NULL,
        limit_value DOUBLE PRECISION NOT NULL,
        fired_ns BIGINT NOT NULL,
        PRIMARY KEY (budget, period, threshold)
    );
    CREATE TABLE alert_outbox (
        id BIGSERIAL PRIMARY KEY,
        created_ns BIGINT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE TABLE alert_cursors (
        sink TEXT PRIMARY KEY,
        last_id BIGINT NOT NULL,
        updated_ns BIGINT NOT NULL
    );
"#,
    // 6: the sidecars' metric points (host health, OTLP metrics), partitioned by day
    // like spans and events; a point a client may send again has a key (its series),
    // so a retried push stores it once.
    r#"
    CREATE TABLE metric_points (
        id BIGSERIAL NOT NULL,
        name TEXT NOT NULL,
        unit TEXT NOT NULL,
        kind TEXT NOT NULL,
        time_ns BIGINT NOT NULL,
        start_time_ns BIGINT,
        value DOUBLE PRECISION,
        count BIGINT,
        sum DOUBLE PRECISION,
        min DOUBLE PRECISION,
        max DOUBLE PRECISION,
        bounds TEXT,
        bucket_counts TEXT,
        temporality TEXT,
        monotonic BOOLEAN,
        attributes TEXT,
        resource TEXT,
        source TEXT NOT NULL,
        point_key BIGINT,
        received_ns BIGINT NOT NULL,
        instance_id TEXT,
        region TEXT
    ) PARTITION BY RANGE (time_ns);
    CREATE TABLE metric_points_default PARTITION OF metric_points DEFAULT;
    CREATE UNIQUE INDEX metric_points_key ON metric_points (point_key, time_ns);
    CREATE INDEX metric_points_name_time ON metric_points (name, time_ns);
    CREATE INDEX metric_points_instance ON metric_points (instance_id, time_ns)
        WHERE instance_id IS NOT NULL;
"#,
    // 7: each usage_hourly row's latency histogram (log buckets of ratio 1.0202, as
    // SQLite's: `analytics::usage::latency_bucket`), so usage answers its percentiles.
    r#"
    CREATE TABLE usage_latency_hourly (
        hour_ns BIGINT NOT NULL,
        instance_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (hour_ns, instance_id, agent_id, provider, model, bucket)
    );
"#,
    // 8: the central's own administrative and security events (`store::activity`).
    r#"
    CREATE TABLE activity (
        id BIGSERIAL PRIMARY KEY,
        time_ns BIGINT NOT NULL,
        kind TEXT NOT NULL,
        remote_addr TEXT,
        path TEXT,
        message TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX activity_time ON activity (time_ns);
"#,
    // 9: the root span's OpenClaw attributes kept on its run, so the OpenClaw views read
    // a few hundred bytes a run rather than parse the root's whole attributes
    // (`store::rows::Dialect::run_root`). Filled in for the runs already stored.
    r#"
    ALTER TABLE traces ADD COLUMN root_attributes TEXT;
    UPDATE traces t SET root_attributes = (
        SELECT jsonb_object_agg(k, v)::text FROM jsonb_each(s.attributes::jsonb) AS e(k, v)
        WHERE k LIKE 'openclaw.%')
    FROM spans s
    WHERE s.trace_id = t.trace_id AND s.span_id = t.root_span_id AND s.attributes LIKE '%openclaw.%';
"#,
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies every migration not yet applied. Several processes may start at once: an
/// advisory lock makes them take turns.
pub async fn migrate(client: &mut Client) -> Result<i64, PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(7478251)", &[])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS oct_schema (version BIGINT NOT NULL)")
        .await?;
    let found: i64 = match tx.query_opt("SELECT version FROM oct_schema", &[]).await? {
        Some(r) => r.get(0),
        None => {
            tx.execute("INSERT INTO oct_schema VALUES (0)", &[]).await?;
            0
        }
    };
    if found > CURRENT_VERSION {
        return Err(PgError::TooNew {
            found,
            supported: CURRENT_VERSION,
        });
    }
    for sql in &MIGRATIONS[found as usize..] {
        tx.batch_execute(sql).await?;
    }
    tx.execute("UPDATE oct_schema SET version = $1", &[&CURRENT_VERSION])
        .await?;
    tx.commit().await?;
    Ok(CURRENT_VERSION)
}

/// The partitioned tables and the time column each is partitioned by.
const PARTITIONED: [(&str, &str); 3] = [
    ("spans", "start_ns"),
    ("events", "time_ns"),
    ("metric_points", "time_ns"),
];

/// Day number (days since 1970-01-01 UTC) of a time in nanoseconds.
fn day_of(ns: i64) -> i64 {
    ns.div_euclid(DAY_NS)
}

fn partition_name(table: &str, day: i64) -> String {
    let date = time::Date::from_julian_day(day as i32 + 2_440_588)
        .map(|d| format!("{:04}{:02}{:02}", d.year(), d.month() as u8, d.day()))
        .unwrap_or_else(|_| format!("x{day}"));
    format!("{table}_{date}")
}

/// Makes the day partition of `table` for `day`, moving any rows of that day out of the
/// default partition first. Safe to race with another writer doing the same.
async fn create_day(
    client: &mut Client,
    table: &str,
    column: &str,
    day: i64,
) -> Result<(), PgError> {
    let name = partition_name(table, day);
    let (from, to) = (day * DAY_NS, (day + 1) * DAY_NS);
    let tx = client.transaction().await?;
    // One writer at a time changes a table's partitions.
    tx.execute(
        "SELECT pg_advisory_xact_lock(7478252, hashtext($1))",
        &[&table],
    )
    .await?;
    let exists: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await?
        .get(0);
    if !exists {
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE moved ON COMMIT DROP AS
                SELECT * FROM {table}_default WHERE {column} >= {from} AND {column} < {to};
             DELETE FROM {table}_default WHERE {column} >= {from} AND {column} < {to};
             CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ({from}) TO ({to});
             INSERT INTO {table} SELECT * FROM moved;"
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The store: one connection (a writer) and the partitions it knows exist.
pub struct PgStore {
    client: Client,
    known_days: BTreeSet<(usize, i64)>,
    /// The staging tables' column types (binary COPY sends them), once made.
    staging: Option<[Vec<Type>; 3]>,
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Written {
    pub spans: u64,
    pub events: u64,
    /// Metric points.
    pub points: u64,
    /// Records already stored (a batch sent again).
    pub duplicates: u64,
    /// One per record of the batch, in order: `Inserted` or `Duplicate`, or `Merged`
    /// for a piece that changed a stored span.
    pub effects: Vec<WriteEffect>,
}

/// Opens a connection and drives it on the current tokio runtime.
///
/// `url` is what libpq takes (`postgres://user:password@host:port/db?sslmode=require`,
/// or `host=… user=…`), plus `sslrootcert=FILE`: PEM certificates to trust beside the
/// public roots (a private CA, a managed database's own). TLS is by rustls: with
/// `sslmode=prefer` (the default) it is used when the server offers it, with `require`
/// it must be; the server's certificate and name are always verified.
pub async fn connect(url: &str) -> Result<Client, PgError> {
    let (url, root_cert) = take_root_cert(url);
    let tls = MakeRustlsConnect::new(tls_config(root_cert.as_deref())?);
    let (client, connection) = tokio_postgres::connect(&url, tls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// `url` without its `sslrootcert` (which tokio-postgres does not know), and that file.
fn take_root_cert(url: &str) -> (String, Option<String>) {
    let is_key = |kv: &str| {
        kv.split_once('=')
            .is_some_and(|(k, _)| k.trim() == "sslrootcert")
    };
    let value = |kv: &str| kv.split_once('=').map(|(_, v)| v.trim().to_string());
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), None);
        };
        let (found, kept): (Vec<&str>, Vec<&str>) = query.split('&').partition(|kv| is_key(kv));
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let path = found
            .last()
            .and_then(|kv| value(kv))
            .map(|p| crate::util::percent_decode(&p));
        (url, path)
    } else {
        let (found, kept): (Vec<&str>, Vec<&str>) =
            url.split_whitespace().partition(|kv| is_key(kv));
        (kept.join(" "), found.last().and_then(|kv| value(kv)))
    }
}

/// Public roots (Mozilla's, built in: a scratch image has no certificate store), and
/// the certificates in `root_cert`.
fn tls_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root_cert {
        let err = |reason: String| PgError::RootCert {
            path: path.to_string(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no PEM certificate in it".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::TlsSetup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl PgStore {
    /// Connects to `url` (see [`connect`]) and migrates.
    pub async fn connect(url: &str) -> Result<PgStore, PgError> {
        let mut client = connect(url).await?;
        migrate(&mut client).await?;
        Ok(PgStore {
            client,
            known_days: BTreeSet::new(),
            staging: None,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Makes sure every day in `times` (nanoseconds) that gets its own partition has one.
    async fn ensure_days(
        &mut self,
        table: usize,
        times: impl Iterator<Item = i64>,
        now_ns: i64,
    ) -> Result<(), PgError> {
        let today = day_of(now_ns);
        let days: BTreeSet<i64> = times
            .map(day_of)
            .filter(|d| (today - PAST_DAYS..=today + FUTURE_DAYS).contains(d))
            .collect();
        for day in days {
            if self.known_days.insert((table, day)) {
                let (name, column) = PARTITIONED[table];
                if let Err(e) = create_day(&mut self.client, name, column, day).await {
                    self.known_days.remove(&(table, day));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Stores a batch (its spans with their summaries, its events and metric points) in
    /// one transaction. A record already stored is skipped, so a batch sent again
    /// stores nothing twice.
    pub async fn write(
        &mut self,
        records: &[Record],
        received_ns: i64,
    ) -> Result<Written, PgError> {
        let (batch, written) = self.begin_write(records, received_ns).await?;
        batch.commit().await?;
        Ok(written)
    }

    /// [`PgStore::write`] with the transaction left open, for the hooks' writes
    /// ([`Batch`]); nothing is stored until [`Batch::commit`].
    pub async fn begin_write(
        &mut self,
        records: &[Record],
        received_ns: i64,
    ) -> Result<(Batch<'_>, Written), PgError> {
        let spans = spans_of(records);
        let events: Vec<&Event> = records
            .iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(&**e),
                _ => None,
            })
            .collect();
        self.ensure_days(0, spans.iter().map(|s| s.start_ns), received_ns)
            .await?;
        // Today's too: the events hooks add (alerts) are dated now.
        let event_days = events.iter().map(|e| e.time_ns).chain([received_ns]);
        self.ensure_days(1, event_days, received_ns).await?;
        let points: Vec<&MetricPoint> = records
            .iter()
            .filter_map(|r| match r {
                Record::Metric(m) => Some(&**m),
                _ => None,
            })
            .collect();
        self.ensure_days(2, points.iter().map(|m| m.time_ns), received_ns)
            .await?;
        if self.staging.is_none() {
            self.staging = Some(make_staging(&self.client).await?);
        }
        let Some([span_types, event_types, metric_types]) = &self.staging else {
            unreachable!("made above");
        };
        let mut tx = self.client.transaction().await?;
        let (pieces, plain): (Vec<&Span>, Vec<&Span>) =
            spans.iter().partition(|s| s.merge.is_some());
        let span_new = if plain.is_empty() {
            Vec::new()
        } else {
            store_spans(&mut tx, span_types, &plain, received_ns).await?
        };
        let piece_effects = merge_spans(&tx, span_types, &pieces, received_ns).await?;
        let event_new = insert_events(&tx, event_types, &events, received_ns).await?;
        let point_new = insert_points(&tx, metric_types, &points, received_ns).await?;
        let mut out = Written::default();
        let (mut spans_new, mut events_new, mut points_new) = (
            span_new.into_iter(),
            event_new.into_iter(),
            point_new.into_iter(),
        );
        let mut piece_effects = piece_effects.into_iter();
        for r in records {
            if let Record::Span(s) = r
                && s.merge.is_some()
            {
                let effect = piece_effects.next().unwrap_or(WriteEffect::Duplicate);
                match effect {
                    WriteEffect::Duplicate => out.duplicates += 1,
                    _ => out.spans += 1,
                }
                out.effects.push(effect);
                continue;
            }
            let new = match r {
                Record::Span(_) => spans_new.next().unwrap_or(false),
                Record::Event(_) => events_new.next().unwrap_or(false),
                Record::Metric(_) => points_new.next().unwrap_or(false),
            };
            match (new, r) {
                (true, Record::Span(_)) => out.spans += 1,
                (true, Record::Event(_)) => out.events += 1,
                (true, Record::Metric(_)) => out.points += 1,
                (false, _) => out.duplicates += 1,
            }
            out.effects.push(if new {
                WriteEffect::Inserted
            } else {
                WriteEffect::Duplicate
            });
        }
        let batch = Batch {
            tx,
            event_types,
            received_ns,
        };
        Ok((batch, out))
    }

    /// Sets `patch`'s keys on the attributes of the event `uid` (a host condition's
    /// end); its top-level keys replace, as SQLite's `json_patch` does for values
    /// that are not objects.
    pub async fn patch_event(&self, uid: &str, patch: &Map<String, Value>) -> Result<(), PgError> {
        // A map of JSON values always serializes.
        let patch = serde_json::to_string(patch).unwrap_or_else(|_| "{}".into());
        self.client
            .execute(
                "UPDATE events SET attributes = (COALESCE(attributes, '{}')::jsonb || $1::text::jsonb)::text
                 WHERE uid = $2",
                &[&patch, &uid],
            )
            .await?;
        Ok(())
    }

    /// Stores a row of the daemon's own activity.
    pub async fn insert_activity(&self, a: &Activity) -> Result<(), PgError> {
        self.client
            .execute(
                "INSERT INTO activity (time_ns, kind, remote_addr, path, message, detail)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &a.time_ns,
                    &a.kind,
                    &a.remote_addr,
                    &a.path,
                    &a.message,
                    &a.detail.as_ref().map(|d| d.to_string()),
                ],
            )
            .await?;
        Ok(())
    }

    /// Drops the day partitions that end at or before `cutoff_ns` and deletes older
    /// rows from the default partitions. Returns the partitions dropped.
    pub async fn drop_before(&mut self, cutoff_ns: i64) -> Result<Vec<String>, PgError> {
        let mut dropped = Vec::new();
        for (i, (table, column)) in PARTITIONED.iter().enumerate() {
            let rows = self
                .client
                .query(
                    "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = $1::text::regclass",
                    &[&table],
                )
                .await?;
            for r in rows {
                let name: String = r.get(0);
                let Some(day) = day_of_partition(table, &name) else {
                    continue;
                };
                if (day + 1) * DAY_NS <= cutoff_ns {
                    self.client
                        .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                        .await?;
                    self.known_days.remove(&(i, day));
                    dropped.push(name);
                }
            }
            self.client
                .execute(
                    &format!("DELETE FROM {table}_default WHERE {column} < $1"),
                    &[&cutoff_ns],
                )
                .await?;
        }
        // The runs and the usage of what went.
        self.client
            .execute("DELETE FROM traces WHERE start_ns < $1", &[&cutoff_ns])
            .await?;
        self.client
            .execute("DELETE FROM activity WHERE time_ns < $1", &[&cutoff_ns])
            .await?;
        for table in ["usage_hourly", "usage_latency_hourly"] {
            self.client
                .execute(
                    &format!("DELETE FROM {table} WHERE hour_ns < $1 - $1 % 3600000000000"),
                    &[&cutoff_ns],
                )
                .await?;
        }
        Ok(dropped)
    }
}

/// The day a partition made by [`create_day`] holds (`None` for the default one).
fn day_of_partition(table: &str, name: &str) -> Option<i64> {
    let digits = name.strip_prefix(table)?.strip_prefix('_')?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = (&digits[..4], &digits[4..6], &digits[6..]);
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(date.to_julian_day() as i64 - 2_440_588)
}

/// The span columns a batch carries, in the order they are sent.
macro_rules! span_columns {
    () => {
        "trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, \
        status_message, agent_id, session_id, user_id, operation, provider, request_model, \
        response_model, input_tokens, output_tokens, total_tokens, cache_read_tokens, \
        cache_write_tokens, reasoning_tokens, cost_usd, cost_source, finish_reasons, tool_name, \
        tool_call_id, error_type, latency_ms, input_text, input_text_len, output_text, \
        output_text_len, attributes, resource, source, received_ns, cost_computed_usd, \
        instance_id, region"
    };
}
/// Stores `spans` with their runs' summaries and hourly usage in `tx`; returns which
/// were new. A batch goes by COPY straight into the table; one holding a span already
/// stored (a retried push) fails as a whole, is rolled back to a savepoint and goes
/// again through the staging table, inserting only what is new. The summaries add
/// exactly the new spans, so a span sent twice counts once.
async fn store_spans(
    tx: &mut tokio_postgres::Transaction<'_>,
    types: &[Type],
    spans: &[&Span],
    received_ns: i64,
) -> Result<Vec<bool>, PgError> {
    let direct = tx.savepoint("direct_copy").await?;
    let copied = async {
        let sink = direct
            .copy_in(concat!(
                "COPY spans (",
                span_columns!(),
                ") FROM STDIN BINARY"
            ))
            .await?;
        send_spans(sink, types, spans, received_ns).await
    }
    .await;
    match copied {
        Ok(_) => {
            direct.commit().await?;
            add_summaries(tx, spans, received_ns).await?;
            Ok(vec![true; spans.len()])
        }
        Err(PgError::Db(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            direct.rollback().await?;
            copy_spans(tx, types, spans, received_ns).await?;
            let stored: HashSet<(Vec<u8>, Vec<u8>, i64)> = tx
                .query(
                    concat!(
                        "INSERT INTO spans (", span_columns!(), ") SELECT ", span_columns!(),
                        " FROM spans_in ON CONFLICT DO NOTHING RETURNING trace_id, span_id, start_ns"
                    ),
                    &[],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            // Each new span once, even when the batch held it twice.
            let mut seen = HashSet::new();
            let is_new: Vec<bool> = spans
                .iter()
                .map(|s| {
                    let k = (s.trace_id.0.to_vec(), s.span_id.0.to_vec(), s.start_ns);
                    stored.contains(&k) && seen.insert(k)
                })
                .collect();
            let new: Vec<&Span> = spans
                .iter()
                .zip(&is_new)
                .filter(|(_, n)| **n)
                .map(|(s, _)| *s)
                .collect();
            add_summaries(tx, &new, received_ns).await?;
            Ok(is_new)
        }
        Err(e) => Err(e),
    }
}

/// Stores spans reported in pieces (a sidecar's span sent again after pieces merged into
/// it, an OpenClaw piece): each joins the stored row of its trace and span id as SQLite
/// merges them ([`merge::merge_into`]), whatever day its start moved to. The stored rows
/// are taken out and go back merged; the runs' summaries and the hourly usage take back
/// what the old rows counted and add the merged ones. Returns each piece's effect.
/// (A piece with made-up ids that names its span by a natural key is stored as it is.)
async fn merge_spans(
    tx: &tokio_postgres::Transaction<'_>,
    types: &[Type],
    pieces: &[&Span],
    received_ns: i64,
) -> Result<Vec<WriteEffect>, PgError> {
    if pieces.is_empty() {
        return Ok(Vec::new());
    }
    let keys: BTreeSet<(&[u8], &[u8])> = pieces
        .iter()
        .map(|s| (&s.trace_id.0[..], &s.span_id.0[..]))
        .collect();
    let (traces, span_ids): (Vec<&[u8]>, Vec<&[u8]>) = keys.into_iter().unzip();
    let old: Vec<Span> = tx
        .query(
            concat!(
                "DELETE FROM spans WHERE (trace_id, span_id) IN
                    (SELECT * FROM unnest($1::bytea[], $2::bytea[])) RETURNING ",
                span_columns!()
            ),
            &[&traces, &span_ids],
        )
        .await?
        .iter()
        .filter_map(|r| span_of_row(r, pieces[0].source))
        .collect();
    let mut now: BTreeMap<([u8; 16], [u8; 8]), Span> = BTreeMap::new();
    for o in &old {
        // Two stored rows of one span (in two days' partitions): one, merged.
        now.entry((o.trace_id.0, o.span_id.0))
            .and_modify(|e| merge::merge_into(e, o))
            .or_insert_with(|| o.clone());
    }
    let mut effects = Vec::with_capacity(pieces.len());
    for p in pieces {
        let mut p = (*p).clone();
        p.merge = None;
        let Some(row) = now.get_mut(&(p.trace_id.0, p.span_id.0)) else {
            now.insert((p.trace_id.0, p.span_id.0), p);
            effects.push(WriteEffect::Inserted);
            continue;
        };
        let before = row.clone();
        merge::merge_into(row, &p);
        effects.push(if *row == before {
            WriteEffect::Duplicate
        } else {
            WriteEffect::Merged(Box::new(MergedSpan {
                before: vec![before],
                after: row.clone(),
            }))
        });
    }
    let rows: Vec<&Span> = now.values().collect();
    let sink = tx
        .copy_in(concat!(
            "COPY spans (",
            span_columns!(),
            ") FROM STDIN BINARY"
        ))
        .await?;
    send_spans(sink, types, &rows, received_ns).await?;
    let taken: Vec<&Span> = old.iter().collect();
    summaries(tx, &rows, &taken, received_ns).await?;
    Ok(effects)
}

/// A stored span read back (`span_columns!()` in order), named as from `source` (the
/// piece's that reads it). `None` for ids of the wrong length.
fn span_of_row(r: &tokio_postgres::Row, source: &'static str) -> Option<Span> {
    let trace = TraceId::from_slice(r.get::<_, &[u8]>(0))?;
    let span = SpanId::from_slice(r.get::<_, &[u8]>(1))?;
    let kind: &str = r.get(4);
    let mut s = Span::new(
        trace,
        span,
        r.get(3),
        SpanKind::parse(kind).unwrap_or(SpanKind::Other),
        r.get(5),
    );
    s.parent_span_id = r.get::<_, Option<&[u8]>>(2).and_then(SpanId::from_slice);
    s.end_ns = r.get(6);
    s.status = StatusCode::parse(r.get(7)).unwrap_or(StatusCode::Unset);
    s.status_message = r.get(8);
    s.agent_id = r.get(9);
    s.session_id = r.get(10);
    s.user_id = r.get(11);
    s.operation = r.get(12);
    s.provider = r.get(13);
    s.request_model = r.get(14);
    s.response_model = r.get(15);
    s.input_tokens = r.get(16);
    s.output_tokens = r.get(17);
    s.total_tokens = r.get(18);
    s.cache_read_tokens = r.get(19);
    s.cache_write_tokens = r.get(20);
    s.reasoning_tokens = r.get(21);
    s.cost_usd = r.get(22);
    s.cost_source = r.get::<_, Option<&str>>(23).and_then(CostSource::parse);
    s.finish_reasons = r
        .get::<_, Option<&str>>(24)
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default();
    s.tool_name = r.get(25);
    s.tool_call_id = r.get(26);
    s.error_type = r.get(27);
    let text = |at: usize| {
        r.get::<_, Option<String>>(at).map(|text| CappedText {
            original_len: r
                .get::<_, Option<i64>>(at + 1)
                .map_or(text.len(), |l| l.max(0) as usize),
            text,
        })
    };
    s.input = text(29);
    s.output = text(31);
    let map = |at: usize| match r.get::<_, Option<&str>>(at).map(serde_json::from_str) {
        Some(Ok(Value::Object(m))) => m,
        _ => Map::new(),
    };
    s.attributes = map(33);
    s.resource = Arc::new(map(34));
    s.source = source;
    s.cost_computed_usd = r.get(37);
    Some(s)
}

/// Inserts the events not already stored (by uid and time) through the staging table;
/// returns which were new.
async fn insert_events(
    tx: &tokio_postgres::Transaction<'_>,
    types: &[Type],
    events: &[&Event],
    received_ns: i64,
) -> Result<Vec<bool>, PgError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    copy_events(tx, types, events, received_ns).await?;
    let stored: HashSet<(String, i64)> = tx
        .query(
            &format!("INSERT INTO events ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} FROM events_in ON CONFLICT DO NOTHING RETURNING uid, time_ns"),
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // The staging table is emptied at commit; a second use in this transaction must
    // not see these rows again.
    tx.execute("DELETE FROM events_in", &[]).await?;
    let mut seen = HashSet::new();
    Ok(events
        .iter()
        .map(|e| {
            let k = (e.uid.clone(), e.time_ns);
            stored.contains(&k) && seen.insert(k)
        })
        .collect())
}

/// Inserts the metric points through the staging table: one with a key (a point a
/// client may send again) when no point of that key and time is stored, one without
/// always. Returns which were new.
async fn insert_points(
    tx: &tokio_postgres::Transaction<'_>,
    types: &[Type],
    points: &[&MetricPoint],
    received_ns: i64,
) -> Result<Vec<bool>, PgError> {
    if points.is_empty() {
        return Ok(Vec::new());
    }
    let keys = copy_points(tx, types, points, received_ns).await?;
    let stored: HashSet<(i64, i64)> = tx
        .query(
            &format!("INSERT INTO metric_points ({POINT_COLUMNS}) SELECT {POINT_COLUMNS} FROM metric_points_in ON CONFLICT DO NOTHING RETURNING point_key, time_ns"),
            &[],
        )
        .await?
        .iter()
        .filter_map(|r| Some((r.get::<_, Option<i64>>(0)?, r.get(1))))
        .collect();
    let mut seen = HashSet::new();
    Ok(points
        .iter()
        .zip(keys)
        .map(|(m, key)| match key {
            Some(k) => stored.contains(&(k, m.time_ns)) && seen.insert((k, m.time_ns)),
            None => true,
        })
        .collect())
}

/// Sends `points` to the staging table; returns each one's key.
async fn copy_points(
    tx: &tokio_postgres::Transaction<'_>,
    types: &[Type],
    points: &[&MetricPoint],
    received_ns: i64,
) -> Result<Vec<Option<i64>>, PgError> {
    let sink = tx
        .copy_in(&format!(
            "COPY metric_points_in ({POINT_COLUMNS}) FROM STDIN BINARY"
        ))
        .await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    let mut keys = Vec::with_capacity(points.len());
    for m in points {
        let h = m.histogram.as_ref();
        let attributes = json_or_null(&m.attributes);
        let resource = json_or_null(&m.resource);
        let key = metric_point_key(m, attributes.as_deref(), resource.as_deref());
        keys.push(key);
        let (instance, region) = origin(&m.resource);
        let row: [&(dyn ToSql + Sync); 21] = [
            &m.name,
            &m.unit,
            &m.kind.as_str(),
            &m.time_ns,
            &m.start_time_ns,
            &m.value,
            &h.map(|h| h.count as i64),
            &h.and_then(|h| h.sum),
            &h.and_then(|h| h.min),
            &h.and_then(|h| h.max),
            &h.map(|h| serde_json::to_string(&h.bounds).unwrap_or_default()),
            &h.map(|h| serde_json::to_string(&h.bucket_counts).unwrap_or_default()),
            &m.temporality,
            &m.monotonic,
            &attributes,
            &resource,
            &m.source,
            &key,
            &received_ns,
            &instance,
            &region,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(keys)
}

/// A batch's open transaction on PostgreSQL, with its records written: the hooks'
/// writes (alerts) go in it, and all commit together.
pub struct Batch<'a> {
    tx: tokio_postgres::Transaction<'a>,
    event_types: &'a [Type],
    received_ns: i64,
}

impl Batch<'_> {
    /// Claims `(key, period, threshold)` in `budget_alerts`: true the first time.
    pub async fn claim_alert(&self, c: &AlertClaim<'_>) -> Result<bool, PgError> {
        let claimed = self
            .tx
            .execute(
                "INSERT INTO budget_alerts (budget, period, threshold, spent, limit_value, fired_ns)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[&c.key, &c.period, &(c.threshold as i32), &c.spent, &c.limit, &c.time_ns],
            )
            .await?;
        Ok(claimed > 0)
    }

    /// Stores an event a hook made.
    pub async fn store_event(&self, e: &Event) -> Result<(), PgError> {
        insert_events(&self.tx, self.event_types, &[e], self.received_ns).await?;
        Ok(())
    }

    /// Queues an alert's payload for the destinations.
    pub async fn queue_alert(&self, payload: &Value) -> Result<(), PgError> {
        self.tx
            .execute(
                "INSERT INTO alert_outbox (created_ns, kind, payload) VALUES ($1, $2, $3)",
                &[
                    &self.received_ns,
                    &payload["type"].as_str().unwrap_or("alert"),
                    &payload.to_string(),
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn commit(self) -> Result<(), PgError> {
        Ok(self.tx.commit().await?)
    }
}

/// One run's share of a batch, added to its `traces` row: the same figures, by the same
/// rules, as the SQLite store's summaries (`store::write`).
#[derive(Default)]
struct RunShare<'a> {
    /// The last span without a parent seen: (id, name, its OpenClaw attributes).
    root: Option<(&'a [u8], &'a str, Option<String>)>,
    /// The earliest span's name, the run's name while it has no root.
    earliest_name: &'a str,
    parent_trace_id: Option<&'a [u8]>,
    start_ns: i64,
    end_ns: Option<i64>,
    status: &'static str,
    spans: i64,
    errors: i64,
    llm_calls: i64,
    tool_calls: i64,
    /// input, output, total, cache read, cache write: of LLM calls and embeddings only.
    tokens: [i64; 5],
    cost_usd: Option<f64>,
    agent_id: Option<&'a str>,
    session_id: Option<&'a str>,
    user_id: Option<&'a str>,
    instance_id: Option<&'a str>,
}

impl<'a> RunShare<'a> {
    /// What a new span says of its run beyond the sums: its root, start, end, status
    /// and who it belongs to.
    fn share_of(&mut self, s: &'a Span, instance: Option<&'a str>) {
        if s.parent_span_id.is_none() {
            self.root = Some((&s.span_id.0[..], &s.name, root_attributes(&s.attributes)));
        }
        if s.start_ns < self.start_ns {
            self.start_ns = s.start_ns;
            self.earliest_name = &s.name;
        }
        self.parent_trace_id = self
            .parent_trace_id
            .or(s.parent_trace_id.as_ref().map(|t| &t.0[..]));
        self.end_ns = self.end_ns.max(s.end_ns);
        self.status = match (self.status, s.status.as_str()) {
            ("error", _) | (_, "error") => "error",
            ("ok", _) | (_, "ok") => "ok",
            _ => "unset",
        };
        self.agent_id = self.agent_id.or(s.agent_id.as_deref());
        self.session_id = self.session_id.or(s.session_id.as_deref());
        self.user_id = self.user_id.or(s.user_id.as_deref());
        self.instance_id = self.instance_id.or(instance);
    }
}

/// A root span's OpenClaw attributes (`openclaw.*`) as JSON, what the OpenClaw views
/// read of a run's root; `None` when it has none.
fn root_attributes(attributes: &Map<String, Value>) -> Option<String> {
    let kept: Map<String, Value> = attributes
        .iter()
        .filter(|(k, _)| k.starts_with("openclaw."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json_or_null(&kept)
}

/// Adds `spans` (each new) to their runs' summaries and to the hourly usage.
async fn add_summaries(
    tx: &tokio_postgres::Transaction<'_>,
    spans: &[&Span],
    now_ns: i64,
) -> Result<(), PgError> {
    summaries(tx, spans, &[], now_ns).await
}

/// Adds `added` to their runs' summaries and to the hourly usage, and takes `taken`
/// (rows a merge replaced) back out of what they counted: their calls, spans, tokens
/// and cost. What only grows (a run's end, its status, its root) is left as it is.
async fn summaries(
    tx: &tokio_postgres::Transaction<'_>,
    added: &[&Span],
    taken: &[&Span],
    now_ns: i64,
) -> Result<(), PgError> {
    let mut runs: BTreeMap<&[u8], RunShare> = BTreeMap::new();
    type UsageKey<'a> = (i64, &'a str, &'a str, &'a str, &'a str);
    let mut usage: BTreeMap<UsageKey, [f64; 12]> = BTreeMap::new();
    let mut latencies: BTreeMap<(UsageKey, i64), i64> = BTreeMap::new();
    let signed = added
        .iter()
        .map(|s| (*s, 1i64))
        .chain(taken.iter().map(|s| (*s, -1)));
    for (s, sign) in signed {
        let (instance, _) = origin(&s.resource);
        let adds = sign > 0;
        let r = runs.entry(&s.trace_id.0[..]).or_insert_with(|| RunShare {
            // A run only taken from keeps its start (the upsert takes the least).
            start_ns: if adds { s.start_ns } else { i64::MAX },
            earliest_name: &s.name,
            status: "unset",
            ..Default::default()
        });
        r.spans += sign;
        r.errors += sign * i64::from(s.status.as_str() == "error");
        r.llm_calls += sign * i64::from(s.kind == SpanKind::LlmCall);
        r.tool_calls += sign * i64::from(s.kind == SpanKind::ToolCall);
        if adds {
            r.share_of(s, instance);
        }
        if !is_usage_span(s) {
            continue;
        }
        let c = CallUsage::of_span(s);
        for (sum, v) in r.tokens.iter_mut().zip([
            c.input_tokens,
            c.output_tokens,
            c.total_tokens,
            c.cache_read_tokens,
            c.cache_write_tokens,
        ]) {
            *sum += sign * v;
        }
        if let Some(cost) = c.cost_usd {
            r.cost_usd = Some(r.cost_usd.unwrap_or(0.0) + sign as f64 * cost);
        }
        let key = (
            hour_of(s.start_ns),
            instance.unwrap_or(""),
            s.agent_id.as_deref().unwrap_or(""),
            s.provider.as_deref().unwrap_or(""),
            s.response_model
                .as_deref()
                .or(s.request_model.as_deref())
                .unwrap_or(""),
        );
        let latency = c.latency_ms.map(|l| l.max(0.0));
        if let Some(ms) = latency {
            *latencies.entry((key, latency_bucket(ms))).or_default() += sign;
        }
        let u = usage.entry(key).or_default();
        for (sum, v) in u.iter_mut().zip([
            1.0,
            f64::from(u8::from(c.error)),
            c.input_tokens as f64,
            c.output_tokens as f64,
            c.cache_read_tokens as f64,
            c.cache_write_tokens as f64,
            c.reasoning_tokens as f64,
            c.total_tokens as f64,
            c.cost_usd.unwrap_or(0.0),
            f64::from(u8::from(c.cost_usd.is_some())),
            latency.unwrap_or(0.0),
            f64::from(u8::from(latency.is_some())),
        ]) {
            *sum += sign as f64 * v;
        }
    }
    if !runs.is_empty() {
        let col = |f: &dyn Fn(&RunShare) -> i64| -> Vec<i64> { runs.values().map(f).collect() };
        let text =
            |f: &dyn for<'r> Fn(&'r RunShare<'r>) -> Option<&'r str>| -> Vec<Option<String>> {
                runs.values().map(|r| f(r).map(str::to_owned)).collect()
            };
        let ids: Vec<&[u8]> = runs.keys().copied().collect();
        let roots: Vec<Option<&[u8]>> = runs
            .values()
            .map(|r| r.root.as_ref().map(|x| x.0))
            .collect();
        let root_attributes: Vec<Option<&str>> = runs
            .values()
            .map(|r| r.root.as_ref().and_then(|x| x.2.as_deref()))
            .collect();
        let parents: Vec<Option<&[u8]>> = runs.values().map(|r| r.parent_trace_id).collect();
        let end: Vec<Option<i64>> = runs.values().map(|r| r.end_ns).collect();
        let cost: Vec<Option<f64>> = runs.values().map(|r| r.cost_usd).collect();
        let tok = |i: usize| col(&|r| r.tokens[i]);
        tx.execute(
            TRACES_UPSERT,
            &[
                &ids,
                &roots,
                &text(&|r| Some(r.root.as_ref().map_or(r.earliest_name, |x| x.1))),
                &col(&|r| r.start_ns),
                &end,
                &text(&|r| Some(r.status)),
                &col(&|r| r.spans),
                &col(&|r| r.errors),
                &col(&|r| r.llm_calls),
                &col(&|r| r.tool_calls),
                &tok(0),
                &tok(1),
                &tok(2),
                &tok(3),
                &tok(4),
                &cost,
                &text(&|r| r.agent_id),
                &text(&|r| r.session_id),
                &text(&|r| r.user_id),
                &text(&|r| r.instance_id),
                &parents,
                &now_ns,
                &root_attributes,
            ],
        )
        .await?;
    }
    if !usage.is_empty() {
        let key =
            |f: &dyn Fn(&UsageKey) -> String| -> Vec<String> { usage.keys().map(f).collect() };
        let sum = |i: usize| -> Vec<i64> { usage.values().map(|v| v[i] as i64).collect() };
        let real = |i: usize| -> Vec<f64> { usage.values().map(|v| v[i]).collect() };
        let hours: Vec<i64> = usage.keys().map(|k| k.0).collect();
        tx.execute(
            USAGE_UPSERT,
            &[
                &hours,
                &key(&|k| k.1.to_owned()),
                &key(&|k| k.2.to_owned()),
                &key(&|k| k.3.to_owned()),
                &key(&|k| k.4.to_owned()),
                &sum(0),
                &sum(1),
                &sum(2),
                &sum(3),
                &sum(4),
                &sum(5),
                &sum(6),
                &sum(7),
                &real(8),
                &sum(9),
                &real(10),
                &sum(11),
            ],
        )
        .await?;
    }
    latencies.retain(|_, n| *n != 0);
    if !latencies.is_empty() {
        let key = |f: &dyn Fn(&UsageKey) -> String| -> Vec<String> {
            latencies.keys().map(|(k, _)| f(k)).collect()
        };
        let hours: Vec<i64> = latencies.keys().map(|(k, _)| k.0).collect();
        let buckets: Vec<i64> = latencies.keys().map(|(_, b)| *b).collect();
        let counts: Vec<i64> = latencies.values().copied().collect();
        tx.execute(
            LATENCY_UPSERT,
            &[
                &hours,
                &key(&|k| k.1.to_owned()),
                &key(&|k| k.2.to_owned()),
                &key(&|k| k.3.to_owned()),
                &key(&|k| k.4.to_owned()),
                &buckets,
                &counts,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Adds a batch's runs to `traces` (the same merge rules as SQLite's `TRACE_UPSERT`).
const TRACES_UPSERT: &str = "INSERT INTO traces AS t (trace_id, root_span_id, root_name,
        start_ns, end_ns, status, span_count, error_count, llm_calls, tool_calls, input_tokens,
        output_tokens, total_tokens, cache_read_tokens, cache_write_tokens, cost_usd, agent_id,
        session_id, user_id, instance_id, parent_trace_id, updated_ns, root_attributes)
    SELECT r.trace_id, r.root_span_id, r.root_name, r.start_ns, r.end_ns, r.status,
        r.span_count, r.error_count, r.llm_calls, r.tool_calls, r.input_tokens,
        r.output_tokens, r.total_tokens, r.cache_read_tokens, r.cache_write_tokens, r.cost_usd,
        r.agent_id, r.session_id, r.user_id, r.instance_id, r.parent_trace_id, $22,
        r.root_attributes
    FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::int8[], $5::int8[],
        $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[],
        $13::int8[], $14::int8[], $15::int8[], $16::float8[], $17::text[], $18::text[],
        $19::text[], $20::text[], $21::bytea[], $23::text[]) AS r(trace_id, root_span_id,
        root_name, start_ns, end_ns, status, span_count, error_count, llm_calls, tool_calls,
        input_tokens, output_tokens, total_tokens, cache_read_tokens, cache_write_tokens,
        cost_usd, agent_id, session_id, user_id, instance_id, parent_trace_id, root_attributes)
    ON CONFLICT (trace_id) DO UPDATE SET
        root_span_id = COALESCE(excluded.root_span_id, t.root_span_id),
        root_attributes = CASE WHEN excluded.root_span_id IS NOT NULL
            THEN excluded.root_attributes ELSE t.root_attributes END,
        root_name = CASE WHEN excluded.root_span_id IS NOT NULL THEN excluded.root_name
            WHEN t.root_span_id IS NULL AND excluded.start_ns < t.start_ns THEN excluded.root_name
            ELSE t.root_name END,
        parent_trace_id = COALESCE(t.parent_trace_id, excluded.parent_trace_id),
        start_ns = LEAST(t.start_ns, excluded.start_ns),
        end_ns = GREATEST(t.end_ns, excluded.end_ns),
        status = CASE WHEN 'error' IN (t.status, excluded.status) THEN 'error'
            WHEN 'ok' IN (t.status, excluded.status) THEN 'ok' ELSE 'unset' END,
        span_count = t.span_count + excluded.span_count,
        error_count = t.error_count + excluded.error_count,
        llm_calls = t.llm_calls + excluded.llm_calls,
        tool_calls = t.tool_calls + excluded.tool_calls,
        input_tokens = t.input_tokens + excluded.input_tokens,
        output_tokens = t.output_tokens + excluded.output_tokens,
        total_tokens = t.total_tokens + excluded.total_tokens,
        cache_read_tokens = t.cache_read_tokens + excluded.cache_read_tokens,
        cache_write_tokens = t.cache_write_tokens + excluded.cache_write_tokens,
        cost_usd = CASE WHEN excluded.cost_usd IS NULL THEN t.cost_usd
            ELSE COALESCE(t.cost_usd, 0) + excluded.cost_usd END,
        agent_id = COALESCE(t.agent_id, excluded.agent_id),
        session_id = COALESCE(t.session_id, excluded.session_id),
        user_id = COALESCE(t.user_id, excluded.user_id),
        instance_id = COALESCE(t.instance_id, excluded.instance_id),
        updated_ns = excluded.updated_ns";

/// Adds a batch's LLM calls and embeddings by hour, sidecar, agent, provider and model
/// to `usage_hourly`.
const USAGE_UPSERT: &str = "INSERT INTO usage_hourly AS u (hour_ns, instance_id, agent_id,
        provider, model, calls, errors, input_tokens, output_tokens, cache_read_tokens,
        cache_write_tokens, reasoning_tokens, total_tokens, cost_usd, priced_calls,
        latency_ms_sum, latency_count)
    SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[],
        $13::int8[], $14::float8[], $15::int8[], $16::float8[], $17::int8[])
    ON CONFLICT (hour_ns, instance_id, agent_id, provider, model) DO UPDATE SET
        calls = u.calls + excluded.calls,
        errors = u.errors + excluded.errors,
        input_tokens = u.input_tokens + excluded.input_tokens,
        output_tokens = u.output_tokens + excluded.output_tokens,
        cache_read_tokens = u.cache_read_tokens + excluded.cache_read_tokens,
        cache_write_tokens = u.cache_write_tokens + excluded.cache_write_tokens,
        reasoning_tokens = u.reasoning_tokens + excluded.reasoning_tokens,
        total_tokens = u.total_tokens + excluded.total_tokens,
        cost_usd = u.cost_usd + excluded.cost_usd,
        priced_calls = u.priced_calls + excluded.priced_calls,
        latency_ms_sum = u.latency_ms_sum + excluded.latency_ms_sum,
        latency_count = u.latency_count + excluded.latency_count";

/// Adds a batch's call latencies, by bucket, to `usage_latency_hourly`.
const LATENCY_UPSERT: &str = "INSERT INTO usage_latency_hourly AS u (hour_ns, instance_id,
        agent_id, provider, model, bucket, count)
    SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::int8[], $7::int8[])
    ON CONFLICT (hour_ns, instance_id, agent_id, provider, model, bucket) DO UPDATE SET
        count = u.count + excluded.count";

const SPAN_COLUMNS: &str = span_columns!();

const EVENT_COLUMNS: &str = "uid, type, time_ns, name, severity, message, stack_trace, category, \
    trace_id, span_id, agent_id, session_id, user_id, attributes, resource, source, received_ns, \
    instance_id, region";

const POINT_COLUMNS: &str = "name, unit, kind, time_ns, start_time_ns, value, count, sum, min, \
    max, bounds, bucket_counts, temporality, monotonic, attributes, resource, source, point_key, \
    received_ns, instance_id, region";

/// Makes this connection's staging tables (emptied at each commit) and returns their
/// column types, in `SPAN_COLUMNS` and `EVENT_COLUMNS` order.
async fn make_staging(client: &Client) -> Result<[Vec<Type>; 3], PgError> {
    let mut types = Vec::with_capacity(3);
    for (table, columns) in [
        ("spans", SPAN_COLUMNS),
        ("events", EVENT_COLUMNS),
        ("metric_points", POINT_COLUMNS),
    ] {
        client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {table}_in ON COMMIT DELETE ROWS AS
                    SELECT {columns} FROM {table} WITH NO DATA"
            ))
            .await?;
        let stmt = client
            .prepare(&format!("SELECT {columns} FROM {table}_in LIMIT 0"))
            .await?;
        types.push(stmt.columns().iter().map(|c| c.type_().clone()).collect());
    }
    let [spans, events, points]: [Vec<Type>; 3] = types.try_into().expect("three tables");
    Ok([spans, events, points])
}

fn spans_of(records: &[Record]) -> Vec<&Span> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Span(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

fn json_or_null(map: &Map<String, Value>) -> Option<String> {
    (!map.is_empty()).then(|| serde_json::to_string(map).unwrap_or_default())
}

/// The sidecar a record came from, by its resource.
fn origin(resource: &SharedMap) -> (Option<&str>, Option<&str>) {
    let get = |k: &str| resource.get(k).and_then(Value::as_str);
    (get(INSTANCE_ATTRIBUTE), get(REGION_ATTRIBUTE))
}

async fn copy_spans(
    tx: &tokio_postgres::Transaction<'_>,
    types: &[Type],
    spans: &[&Span],
    received_ns: i64,
) -> Result<u64, PgError> {
    let sink = tx
        .copy_in(&format!("COPY spans_in ({SPAN_COLUMNS}) FROM STDIN BINARY"))
        .await?;
    send_spans(sink, types, spans, received_ns).await
}

/// A raw binary `COPY` of the spans in `records` into `table` (which has at least the
/// span columns): no staging, no check for what is already stored. What
/// `examples/pg_store_bench.rs` measures the store's write path against.
pub async fn raw_copy(
    client: &Client,
    table: &str,
    records: &[Record],
    received_ns: i64,
) -> Result<u64, PgError> {
    let spans = spans_of(records);
    let stmt = client
        .prepare(&format!("SELECT {SPAN_COLUMNS} FROM {table} LIMIT 0"))
        .await?;
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    let sink = client
        .copy_in(&format!("COPY {table} ({SPAN_COLUMNS}) FROM STDIN BINARY"))
        .await?;
    send_spans(sink, &types, &spans, received_ns).await
}

/// Sends `spans` as the rows of a binary COPY in `SPAN_COLUMNS` order; returns the rows
/// copied.
async fn send_spans(
    sink: tokio_postgres::CopyInSink<bytes::Bytes>,
    types: &[Type],
    spans: &[&Span],
    received_ns: i64,
) -> Result<u64, PgError> {
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    // Spans of one sidecar share their resource: encoded once while it repeats.
    let mut last_resource: Option<(SharedMap, Option<String>)> = None;
    for s in spans {
        if !last_resource
            .as_ref()
            .is_some_and(|(r, _)| Arc::ptr_eq(r, &s.resource))
        {
            last_resource = Some((s.resource.clone(), json_or_null(&s.resource)));
        }
        let resource: &Option<String> = &last_resource.as_ref().expect("set above").1;
        let finish = (!s.finish_reasons.is_empty())
            .then(|| serde_json::to_string(&s.finish_reasons).unwrap_or_default());
        let (instance, region) = origin(&s.resource);
        let row: [&(dyn ToSql + Sync); 40] = [
            &&s.trace_id.0[..],
            &&s.span_id.0[..],
            &s.parent_span_id.as_ref().map(|p| &p.0[..]),
            &s.name,
            &s.kind.as_str(),
            &s.start_ns,
            &s.end_ns,
            &s.status.as_str(),
            &s.status_message,
            &s.agent_id,
            &s.session_id,
            &s.user_id,
            &s.operation,
            &s.provider,
            &s.request_model,
            &s.response_model,
            &s.input_tokens,
            &s.output_tokens,
            &s.total_tokens,
            &s.cache_read_tokens,
            &s.cache_write_tokens,
            &s.reasoning_tokens,
            &s.cost_usd,
            &s.cost_source.map(|c| c.as_str()),
            &finish,
            &s.tool_name,
            &s.tool_call_id,
            &s.error_type,
            &s.latency_ms(),
            &s.input.as_ref().map(|t| t.text.as_str()),
            &s.input.as_ref().map(|t| t.original_len as i64),
            &s.output.as_ref().map(|t| t.text.as_str()),
            &s.output.as_ref().map(|t| t.original_len as i64),
            &json_or_null(&s.attributes),
            &resource,
            &s.source,
            &received_ns,
            &s.cost_computed_usd,
            &instance,
            &region,
        ];
        writer.as_mut().write(&row).await?;
    }
    Ok(writer.finish().await?)
}

async fn copy_events(
    tx: &tokio_postgres::Transaction<'_>,
    types: &[Type],
    events: &[&Event],
    received_ns: i64,
) -> Result<(), PgError> {
    let sink = tx
        .copy_in(&format!(
            "COPY events_in ({EVENT_COLUMNS}) FROM STDIN BINARY"
        ))
        .await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    for e in events {
        let (instance, region) = origin(&e.resource);
        let row: [&(dyn ToSql + Sync); 19] = [
            &e.uid,
            &e.event_type.as_str(),
            &e.time_ns,
            &e.name,
            &e.severity,
            &e.message,
            &e.stack_trace,
            &e.category,
            &e.trace_id.as_ref().map(|t| &t.0[..]),
            &e.span_id.as_ref().map(|s| &s.0[..]),
            &e.agent_id,
            &e.session_id,
            &e.user_id,
            &json_or_null(&e.attributes),
            &json_or_null(&e.resource),
            &e.source,
            &received_ns,
            &instance,
            &region,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_certificate_is_taken_out_of_either_form_of_url() {
        assert_eq!(
            take_root_cert("postgres://a@h:5/db?sslmode=require&sslrootcert=/etc/my%20ca.pem"),
            (
                "postgres://a@h:5/db?sslmode=require".to_string(),
                Some("/etc/my ca.pem".to_string())
            )
        );
        assert_eq!(
            take_root_cert("postgres://a@h/db?sslrootcert=ca.pem"),
            ("postgres://a@h/db".to_string(), Some("ca.pem".to_string()))
        );
        assert_eq!(
            take_root_cert("postgres://a@h/db"),
            ("postgres://a@h/db".to_string(), None)
        );
        assert_eq!(
            take_root_cert("host=h user=a sslrootcert=/ca.pem sslmode=require"),
            (
                "host=h user=a sslmode=require".to_string(),
                Some("/ca.pem".to_string())
            )
        );
    }

    #[test]
    fn partitions_are_named_by_their_utc_day() {
        assert_eq!(partition_name("spans", 0), "spans_19700101");
        // 2026-12-07 is day 20,794.
        assert_eq!(partition_name("events", 20_794), "events_20261207");
        assert_eq!(day_of(20_429 * DAY_NS + 5), 20_429);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of_partition("events", "events_20261207"), Some(20_794));
        assert_eq!(day_of_partition("spans", "spans_default"), None);
        assert_eq!(day_of_partition("spans", "events_20261207"), None);
    }
}
