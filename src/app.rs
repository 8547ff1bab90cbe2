//! Wires sources, pipeline, store and sinks into a running daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::store::QueryStore;
use crate::api::{self, AppState, SharedState};
use crate::config::Config;
use crate::pipeline::{self, Pipeline, StoreWriter, WriterHandle, WriterSetup};
use crate::store::{self, ReadPool, retention};

/// A running daemon: its address, and what `shutdown` needs to stop it cleanly.
pub struct Daemon {
    pub addr: SocketAddr,
    pub state: SharedState,
    server: JoinHandle<std::io::Result<()>>,
    stop: watch::Sender<bool>,
    writer: WriterHandle,
    tasks: Vec<JoinHandle<()>>,
    /// The audit chain's signer and its head file, when the chain is on.
    audit: Option<(Arc<store::audit::Signer>, std::path::PathBuf)>,
    host: Option<crate::sources::host::HostHandle>,
    /// The dedicated OTLP listeners (stopped gracefully with the API).
    pub otlp: crate::sources::otlp::Listeners,
}

fn retention_policy(cfg: &Config) -> retention::Policy {
    retention::Policy {
        max_age: (cfg.store.retention_days > 0)
            .then(|| Duration::from_secs(cfg.store.retention_days * 86_400)),
        max_db_bytes: cfg.store.cleanup_db_threshold_bytes,
        disk_threshold_pct: cfg.store.cleanup_disk_threshold,
        active_sinks: crate::sinks::active_sinks(&sinks_config(cfg)),
    }
}

/// The SQLite file and what the sidecar's own components read it with.
struct Local {
    db_path: PathBuf,
    reads: Arc<ReadPool>,
    /// The audit chain's signer, when the chain is on.
    audit: Option<Arc<store::audit::Signer>>,
}

/// Opens (creating and migrating) the SQLite file, with its audit chain when on.
fn open_sqlite(
    cfg: &Config,
    policy: &retention::Policy,
) -> anyhow::Result<(Local, Box<dyn StoreWriter>)> {
    let db_path = cfg.store.db_path();
    let mut conn = store::open_writer(&db_path)?;
    // Keep the WAL small relative to the size cap, so the cap holds between checks.
    let wal_pages = (cfg.store.cleanup_db_threshold_bytes / 16 / 4096).clamp(64, 1000);
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint = {wal_pages}; PRAGMA journal_size_limit = {};",
        wal_pages * 4096
    ))?;
    // The tamper-evident chain: on the writer's connection, with its signing key.
    let audit = if cfg.audit.enabled {
        store::audit::install(&mut conn)?;
        let adopted = store::audit::adopt_existing(&mut conn)?;
        if adopted > 0 {
            tracing::info!(
                rows = adopted,
                "audit chain started over the rows already stored"
            );
        }
        let key = cfg.audit.key_path(&db_path);
        let signer = store::audit::Signer::load_or_create(&key)?;
        Some((Arc::new(signer), key))
    } else {
        None
    };
    tracing::info!(db_path = %db_path.display(), schema_version = store::schema::CURRENT_VERSION, "database open");
    let audit = audit.map(|(signer, key)| {
        tracing::info!(key_file = %key.display(), head_file = %cfg.audit.head_path(&db_path).display(), "audit chain on");
        signer
    });
    let writer = store::sqlite::SqliteWriter::new(
        conn,
        db_path.clone(),
        policy.clone(),
        cfg.store.pack_values,
    );
    let reads = Arc::new(ReadPool::new(db_path.clone(), 4));
    Ok((
        Local {
            db_path,
            reads,
            audit,
        },
        Box::new(writer),
    ))
}

/// Connects to PostgreSQL and migrates (so a wrong URL or a newer schema stops the
/// start with its reason), for a fleet's central.
async fn open_postgres(cfg: &Config, url: &str) -> anyhow::Result<Central> {
    let shown = crate::sinks::delivery::redact_url(url);
    store::postgres::PgStore::connect(url)
        .await
        .with_context(|| format!("OCT_DATABASE_URL {shown}"))?;
    if !crate::sinks::active_sinks(&sinks_config(cfg)).is_empty() {
        anyhow::bail!(
            "OCT_PUSH_ENDPOINT and OTLP export read the SQLite store; on PostgreSQL (OCT_DATABASE_URL) they are not available yet"
        );
    }
    if cfg.audit.enabled {
        tracing::warn!("the audit chain is kept on SQLite only; it is off on PostgreSQL");
    }
    if cfg.analytics.sampling.is_some() {
        tracing::warn!(
            "OCT_SAMPLING runs on SQLite only; on PostgreSQL every run received is kept"
        );
    }
    tracing::info!(database = %shown, schema_version = store::postgres::CURRENT_VERSION, "PostgreSQL store open");
    let max_age = (cfg.store.retention_days > 0)
        .then(|| Duration::from_secs(cfg.store.retention_days * 86_400));
    let writer = store::postgres::writer::PgWriter::new(
        url.to_string(),
        max_age,
        cfg.store.cleanup_interval,
    )?;
    let reader = store::postgres::queries::PgReader::new(url)?;
    Ok(Central {
        queries: Arc::new(api::store::PgQueries(reader.clone())),
        writer: Box::new(writer),
        reader,
    })
}

/// A fleet central's store: PostgreSQL.
struct Central {
    queries: Arc<dyn QueryStore>,
    writer: Box<dyn StoreWriter>,
    /// Budgets' standings at start, and the alert queue.
    reader: store::postgres::queries::PgReader,
}

/// Each budget's standing in its current period, read from PostgreSQL (before any
/// ingest: SQLite's is a job on its writer, after the rollups' backfill).
async fn restore_budgets(
    budgets: &crate::analytics::budgets::Budgets,
    reader: &store::postgres::queries::PgReader,
) -> anyhow::Result<()> {
    let now = crate::model::now_ns();
    let mut standings = Vec::new();
    for q in budgets.periods(now) {
        let standing = reader
            .budget_standing(&q)
            .await
            .with_context(|| format!("cannot read budget {}'s standing", q.budget))?;
        standings.push(standing);
    }
    budgets.restore(now, standings);
    Ok(())
}

/// Opens the store, starts the writer and the HTTP API, and schedules maintenance.
/// On SQLite (a sidecar) every component runs; on PostgreSQL (a fleet's central) those
/// that read or keep state in the SQLite file (the OpenClaw tails, the SQLite usage
/// rollups, sampling, the run checker, sinks, the audit chain) do not, yet; host
/// health, budgets and alerts run on both.
pub async fn start(cfg: Config) -> anyhow::Result<Daemon> {
    let policy = retention_policy(&cfg);
    let (local, central, queries, writer_store) = match &cfg.store.database_url {
        None => {
            let (local, writer) = open_sqlite(&cfg, &policy)?;
            let queries: Arc<dyn QueryStore> =
                Arc::new(api::store::SqliteQueries(local.reads.clone()));
            (Some(local), None, queries, writer)
        }
        Some(url) => {
            let central = open_postgres(&cfg, url).await?;
            let (queries, writer) = (central.queries.clone(), central.writer);
            (None, Some(central.reader), queries, writer)
        }
    };
    if cfg.ingest.verbose {
        tracing::warn!(
            text_limit_bytes = cfg.ingest.text_limit(),
            "verbose capture on (OCT_TRACE_VERBOSE): LLM and tool texts kept up to 200 KiB each; the size cap fills faster"
        );
    }
    let audit = local.as_ref().and_then(|l| l.audit.clone());
    // Components plug in here: transforms run before records are queued,
    // hooks inside and after each committed batch.
    let analytics = crate::analytics::Analytics::new(&cfg.analytics)?;
    let mut transforms: Vec<Arc<dyn pipeline::Transform>> = Vec::new();
    let mut hooks: Vec<Arc<dyn pipeline::WriteHook>> = Vec::new();
    // Redaction first, so nothing downstream (cost, hooks, the store) sees a secret.
    if cfg.redact.enabled {
        transforms.push(Arc::new(crate::redact::Redactor));
    }
    let metrics = Arc::new(crate::metrics::Registry::new());
    hooks.push(Arc::new(crate::metrics::records::RecordMetrics::new(
        &metrics,
        cfg.metrics.label_limit,
    )));
    let live = Arc::new(crate::sinks::live::LiveHub::new());
    hooks.push(live.clone());
    hooks.push(Arc::new(crate::logging::CaptureLog::default()));
    analytics.register_metrics(&metrics, cfg.metrics.label_limit);
    transforms.extend(analytics.transforms());
    // Usage rollups, sampling and the run checker keep their tables in the SQLite file;
    // budgets and alerts write in the batch's transaction on either store.
    hooks.extend(
        analytics
            .hooks()
            .into_iter()
            .filter(|h| local.is_some() || !h.sqlite_only()),
    );
    let llm_failures = Arc::new(crate::sources::host::LlmFailures::default());
    hooks.push(llm_failures.clone());
    if local.is_some() {
        hooks.extend(crate::sinks::write_hooks(&sinks_config(&cfg)));
    }
    // Last: it chains what the batch and every hook before it wrote.
    if audit.is_some() {
        hooks.push(Arc::new(store::audit::ChainHook));
    }
    let (pipeline, writer) = Pipeline::start(
        &cfg.pipeline,
        transforms,
        WriterSetup {
            store: writer_store,
            batch_max: cfg.pipeline.batch_max,
            batch_max_bytes: batch_max_bytes(&cfg),
            hooks,
        },
    );
    // Queued before the listener opens, so backfill runs ahead of any ingest.
    let analytics_tasks = match (&local, central) {
        (Some(l), _) => analytics.start(&pipeline, &l.reads),
        (None, Some(reader)) => {
            restore_budgets(&analytics.budgets, &reader).await?;
            analytics.deliver_alerts(Arc::new(reader))
        }
        (None, None) => Vec::new(),
    };
    let fleet = Arc::new(crate::sources::fleet::Registry::default());
    match queries
        .latest_event_attributes(crate::sources::fleet::INSTANCE_EVENT, "instance_id")
        .await
    {
        Ok(recorded) => fleet.restore(
            recorded
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect(),
        ),
        Err(e) => tracing::warn!(error = ?e.body, "cannot read the fleet's sidecars back"),
    }
    let db_path = local
        .as_ref()
        .map(|l| l.db_path.clone())
        .unwrap_or_default();
    // This daemon's own name and region: what it names itself to a central, and on a
    // central what its own host records carry.
    let origin = cfg.push.origin();
    let host = start_host(
        &cfg,
        &origin,
        local.as_ref(),
        &queries,
        &pipeline,
        llm_failures,
        &policy,
    )
    .await;
    metrics.register_collector(Box::new(crate::metrics::collectors::SelfCollector::new(
        pipeline.clone(),
        db_path.clone(),
    )));
    if let Some(l) = &local {
        metrics.register_collector(Box::new(crate::metrics::collectors::StoreCollector::new(
            l.reads.clone(),
            (cfg.host.metrics_interval * 4).max(Duration::from_secs(300)),
        )));
    }
    metrics.register_collector(Box::new(crate::sinks::live::LiveHubCollector(live.clone())));
    metrics.register(
        "openclaw_trace_build",
        "The running version",
        prometheus_client::metrics::info::Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    let price_date =
        prometheus_client::metrics::gauge::Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    price_date.set(analytics.prices.as_of_unix().unwrap_or(0) as f64);
    metrics.register(
        "openclaw_trace_price_table_as_of_timestamp_seconds",
        "When the bundled price data was taken from its source (genai-prices)",
        price_date,
    );
    let bind: std::net::IpAddr = cfg
        .api
        .bind
        .parse()
        .with_context(|| format!("OCT_BIND: not an IP address: {}", cfg.api.bind))?;
    let listener = crate::util::listen::listen(std::net::SocketAddr::new(bind, cfg.api.port))
        .with_context(|| format!("cannot listen on {}:{}", cfg.api.bind, cfg.api.port))?;
    let addr = listener.local_addr()?;
    let sinks = Arc::new(match &local {
        Some(l) => crate::sinks::Registry::start(
            &sinks_config(&cfg),
            crate::sinks::Ctx {
                pipeline: pipeline.clone(),
                reads: l.reads.clone(),
            },
            addr,
        )?,
        None => crate::sinks::Registry::none(),
    });
    metrics.register_collector(Box::new(crate::metrics::collectors::ShippingAndBudgets {
        sinks: sinks.statuses().to_vec(),
        budgets: analytics.budgets.clone(),
    }));
    let admission = api::admission::Admission::new(
        cfg.api.max_inflight_bytes as usize,
        cfg.api.max_connections,
    );
    admission.register(&metrics);
    let gateway_target =
        crate::sources::openclaw_gateway::target(&cfg.openclaw_gateway, &cfg.transcripts);
    let gateway = crate::sources::openclaw_gateway::GatewayState::new(gateway_target.as_ref());
    let state: SharedState = Arc::new(AppState {
        config: api::ApiSettings {
            api: cfg.api.clone(),
            ingest: cfg.ingest.clone(),
            store: cfg.store.clone(),
            fleet: cfg.fleet.clone(),
            host: cfg.host.clone(),
            analytics: cfg.analytics.clone(),
            otlp: cfg.otlp.clone(),
            instance_id: origin.0.clone(),
        },
        pipeline: pipeline.clone(),
        store: queries,
        sinks,
        started: Instant::now(),
        ready: AtomicBool::new(false),
        shutting_down: AtomicBool::new(false),
        metrics,
        live,
        analytics,
        admission: admission.clone(),
        fleet,
        activity: Arc::new(store::activity::ActivityLog::new(pipeline.clone())),
        gateway: gateway.clone(),
    });
    state.activity.record(store::activity::Activity {
        time_ns: crate::model::now_ns(),
        kind: "start".into(),
        message: format!("openclaw-trace {} started", env!("CARGO_PKG_VERSION")),
        detail: Some(effective_settings(&cfg, &db_path)),
        ..Default::default()
    });
    let (stop, mut stop_rx) = watch::channel(false);
    let otlp = crate::sources::otlp::start(&state, stop_rx.clone()).await?;
    let app = api::router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(
            api::admission::CappedListener::new(listener, admission),
            app.into_make_service_with_connect_info::<api::admission::Remote>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        })
        .await
    });
    let mut tasks = match &local {
        Some(l) => sqlite_tasks(&cfg, l, &pipeline, policy, gateway_target, gateway),
        None => Vec::new(),
    };
    tasks.extend(analytics_tasks);
    state.ready.store(true, Ordering::Relaxed);
    tracing::info!(addr = %addr, version = env!("CARGO_PKG_VERSION"), "listening");
    Ok(Daemon {
        addr,
        state,
        server,
        stop,
        writer,
        tasks,
        audit: audit.map(|signer| (signer, cfg.audit.head_path(&db_path))),
        host,
        otlp,
    })
}

/// The most bytes of records a transaction takes. On SQLite a sixteenth of the size cap
/// (at most 4 MiB), so one batch never overshoots the cap by much; on PostgreSQL, which
/// has no cap to keep, 32 MiB, so that `OCT_BATCH_MAX` alone sizes a central's batches.
fn batch_max_bytes(cfg: &Config) -> usize {
    if cfg.store.database_url.is_some() {
        return 32 << 20;
    }
    (cfg.store.cleanup_db_threshold_bytes / 16).clamp(64 << 10, 4 << 20) as usize
}

/// Host health on either store. A sidecar watches its database's volume and rolls its
/// points up in the SQLite file; a central watches its working directory, stamps its
/// own records with its instance id (so its host is told apart from its sidecars') and
/// leaves its points to PostgreSQL's day partitions.
async fn start_host(
    cfg: &Config,
    origin: &(String, Option<String>),
    local: Option<&Local>,
    queries: &Arc<dyn QueryStore>,
    pipeline: &Pipeline,
    llm_failures: Arc<crate::sources::host::LlmFailures>,
    policy: &retention::Policy,
) -> Option<crate::sources::host::HostHandle> {
    use crate::sources::fleet::{INSTANCE_ATTRIBUTE, REGION_ATTRIBUTE};
    let (dir, rollups, own) = match local {
        Some(l) => (
            l.db_path.parent().map(Path::to_path_buf),
            Some(policy.clone()),
            None,
        ),
        None => (std::env::current_dir().ok(), None, Some(origin)),
    };
    let resource = own.as_ref().map(|(instance, region)| {
        let mut m = serde_json::Map::new();
        m.insert(INSTANCE_ATTRIBUTE.into(), instance.clone().into());
        if let Some(r) = region {
            m.insert(REGION_ATTRIBUTE.into(), r.clone().into());
        }
        Arc::new(m)
    });
    let open_conditions = match queries
        .open_host_conditions(own.map(|(instance, _)| instance.clone()))
        .await
    {
        Ok(open) => open,
        Err(e) => {
            tracing::warn!(error = ?e.body, "cannot read open host conditions; they may be reported again");
            Vec::new()
        }
    };
    let setup = crate::sources::host::HostSetup {
        watch_paths: crate::sources::host::watch_paths(&cfg.host, dir.as_deref()),
        rollups,
        open_conditions,
        resource,
    };
    crate::sources::host::start(&cfg.host, setup, pipeline.clone(), llm_failures)
}

/// The SQLite file's upkeep (retention, checkpoints, the audit chain's signed head,
/// span keys), and the sources that keep their offsets in it (the OpenClaw gateway
/// log, transcripts and gateway poller).
fn sqlite_tasks(
    cfg: &Config,
    l: &Local,
    pipeline: &Pipeline,
    policy: retention::Policy,
    gateway_target: Option<crate::sources::openclaw_gateway::Target>,
    gateway: Arc<crate::sources::openclaw_gateway::GatewayState>,
) -> Vec<JoinHandle<()>> {
    let db_path = l.db_path.clone();
    let mut tasks = vec![
        spawn_every(cfg.store.cleanup_interval, {
            let p = pipeline.clone();
            let path = db_path.clone();
            let usage_retention = cfg.analytics.usage_retention(cfg.store.retention_days);
            move || {
                let stats = p.stats().clone();
                let (path, policy) = (path.clone(), policy.clone());
                p.run_job(move |conn| {
                    if let Some(r) = store::sqlite::run_retention(conn, &path, &policy, &stats)
                        && r.deleted > 0
                    {
                        let a = store::activity::Activity {
                            time_ns: crate::model::now_ns(),
                            kind: "retention".into(),
                            message: format!("retention deleted {} rows", r.deleted),
                            detail: Some(serde_json::json!({
                                "deleted": r.deleted, "by_age": r.by_age, "by_size": r.by_size,
                                "unshipped_deleted": r.unshipped_deleted,
                            })),
                            ..Default::default()
                        };
                        if let Err(e) = store::activity::insert(conn, &a) {
                            tracing::warn!(error = %e, "cannot record activity");
                        }
                    }
                    usage_retention.run(conn, crate::model::now_ns());
                });
            }
        }),
        spawn_every(cfg.store.wal_checkpoint_interval, {
            let p = pipeline.clone();
            let path = db_path.clone();
            let restart = cfg.store.wal_restart_threshold_bytes;
            move || {
                let path = path.clone();
                p.run_job(move |conn| {
                    let truncate = store::file_sizes(&path).1 > restart;
                    if let Err(e) = retention::checkpoint(conn, truncate) {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                });
            }
        }),
    ];
    if let Some(signer) = &l.audit {
        tasks.push(spawn_every(cfg.audit.checkpoint_interval, {
            let p = pipeline.clone();
            let head_file = cfg.audit.head_path(&db_path);
            let signer = signer.clone();
            move || queue_checkpoint(&p, &signer, &head_file)
        }));
    }
    // Natural keys of merged spans go when retention has deleted their spans.
    tasks.push(spawn_every(cfg.store.cleanup_interval, {
        let p = pipeline.clone();
        move || {
            p.run_job(|conn| {
                if let Err(e) = store::merge::prune_keys(conn) {
                    tracing::warn!(error = %e, "pruning span keys failed");
                }
            });
        }
    }));
    // OpenClaw's gateway log and session transcripts (each off when its path is `off`).
    tasks.extend(crate::sources::tail::spawn(
        &cfg.tail,
        pipeline.clone(),
        &db_path,
    ));
    tasks.extend(crate::sources::transcripts::spawn(
        &crate::sources::transcripts::TranscriptsConfig {
            text_limit: cfg.ingest.text_limit(),
            ..cfg.transcripts.clone()
        },
        pipeline.clone(),
        &db_path,
    ));
    // The OpenClaw gateway, polled read-only (off when its URL is `off`).
    tasks.extend(crate::sources::openclaw_gateway::spawn(
        gateway_target,
        &cfg.openclaw_gateway,
        gateway,
        l.reads.clone(),
    ));
    tasks
}

/// The settings that matter to a review, secrets left out (only whether they are set).
fn effective_settings(cfg: &Config, db_path: &std::path::Path) -> serde_json::Value {
    let url = |u: &Option<String>| u.as_deref().map(crate::sinks::delivery::redact_url);
    serde_json::json!({
        "database_url": url(&cfg.store.database_url),
        "version": env!("CARGO_PKG_VERSION"),
        "bind": cfg.api.bind,
        "port": cfg.api.port,
        "auth_token": if cfg.api.auth_token.as_deref().is_some_and(|t| !t.is_empty()) { "set" } else { "unset" },
        "db_path": db_path.display().to_string(),
        "retention_days": cfg.store.retention_days,
        "cleanup_db_threshold_bytes": cfg.store.cleanup_db_threshold_bytes,
        "redact": cfg.redact.enabled,
        "audit": cfg.audit.enabled,
        "audit_key_file": cfg.audit.key_path(db_path).display().to_string(),
        "audit_head_file": cfg.audit.head_path(db_path).display().to_string(),
        "audit_checkpoint_interval": crate::util::duration::format(cfg.audit.checkpoint_interval),
        "push_endpoint": url(&cfg.push.endpoint),
        "push_token": if cfg.push.token.is_some() { "set" } else { "unset" },
        "otlp_export_endpoint": url(&cfg.otlp_export.endpoint),
    })
}

/// Signs the chain's head on the writer, after everything queued before.
fn queue_checkpoint(p: &Pipeline, signer: &Arc<store::audit::Signer>, head_file: &std::path::Path) {
    let (signer, head_file) = (signer.clone(), head_file.to_path_buf());
    p.run_job(move |conn| {
        if let Err(e) = store::audit::checkpoint(conn, &signer, &head_file) {
            tracing::warn!(error = %e, "signing the audit chain's head failed");
        }
    });
}

/// Runs `f` now and then every `every`.
fn spawn_every(every: Duration, f: impl Fn() + Send + 'static) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            f();
        }
    })
}

impl Daemon {
    pub fn pipeline(&self) -> &Pipeline {
        &self.state.pipeline
    }

    /// Refuses new work (503, `/ready` not ready), drains the queue, commits, pushes
    /// the sinks' last batch and checkpoints, then closes the listener; all within the
    /// shutdown timeout.
    /// True when everything finished in time.
    pub async fn shutdown(self) -> bool {
        let deadline = Instant::now() + self.state.config.api.shutdown_timeout;
        self.state.shutting_down.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
        // Host collectors stop first: nothing new is sampled into a closing pipeline.
        if let Some(h) = self.host {
            h.stop(Duration::from_secs(2));
        }
        // The listener stays up while draining so clients get a clear 503 + Retry-After.
        // The stop is recorded, and the chain's head signed last, after everything queued.
        self.state.activity.record(store::activity::Activity {
            time_ns: crate::model::now_ns(),
            kind: "stop".into(),
            message: "openclaw-trace stopping".into(),
            detail: Some(serde_json::json!({
                "written": self.state.pipeline.stats().written.load(Ordering::Relaxed),
                "uptime_seconds": self.state.started.elapsed().as_secs(),
            })),
            ..Default::default()
        });
        // Sinks get a last push of what is committed (they read the store; the push
        // waits for the queue to drain first), within half the budget. The writer
        // closes after it: it moves their cursors, so what the last push sent is not
        // sent again after a restart.
        let left = deadline.saturating_duration_since(Instant::now());
        self.state.sinks.final_push(Instant::now() + left / 2).await;
        if let Some((signer, head_file)) = &self.audit {
            queue_checkpoint(&self.state.pipeline, signer, head_file);
        }
        self.state.pipeline.close();
        let writer = self.writer;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(Duration::from_millis(500));
        let done = tokio::task::spawn_blocking(move || writer.join(left))
            .await
            .unwrap_or(false);
        // Live streams never end on their own; end them so they do not hold the server up.
        self.state.live.close();
        // The API and the dedicated OTLP listeners share the stop signal.
        let _ = self.stop.send(true);
        let left = deadline.saturating_duration_since(Instant::now());
        let servers = async {
            let _ = self.server.await;
            for t in self.otlp.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(left, servers).await.is_err() {
            tracing::warn!("open connections did not close in time");
        }
        if done {
            tracing::info!(
                written = self.state.pipeline.stats().written.load(Ordering::Relaxed),
                "stopped cleanly"
            );
        } else {
            tracing::error!(
                queued = self.state.pipeline.depth(),
                "shutdown timeout reached before the queue was drained"
            );
        }
        done
    }
}

/// SIGTERM and SIGINT handlers, installed before anything starts so that an
/// early signal still means a clean shutdown.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = self.int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
        }
    }
}

/// The daemon from start to a clean stop.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let signals = StopSignals::install().context("cannot install signal handlers")?;
    let daemon = start(cfg).await?;
    signals.wait().await;

    if daemon.shutdown().await {
        Ok(())
    } else {
        anyhow::bail!("shutdown did not finish within OCT_SHUTDOWN_TIMEOUT")
    }
}

fn sinks_config(cfg: &Config) -> crate::sinks::SinksConfig<'_> {
    crate::sinks::SinksConfig {
        push: &cfg.push,
        otlp_export: &cfg.otlp_export,
    }
}
