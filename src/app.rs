//! Wires sources, pipeline, store and sinks into a running daemon.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState, SharedState};
use crate::config::Config;
use crate::pipeline::{self, Pipeline, WriterHandle, WriterSetup};
use crate::store::{self, ReadPool, retention};

/// A running daemon: its address, and what `shutdown` needs to stop it cleanly.
pub struct Daemon {
    pub addr: SocketAddr,
    pub state: SharedState,
    server: JoinHandle<std::io::Result<()>>,
    stop: watch::Sender<bool>,
    writer: WriterHandle,
    tasks: Vec<JoinHandle<()>>,
    /// The dedicated OTLP listeners (stopped gracefully with the API).
    pub otlp: crate::sources::otlp::Listeners,
}

fn retention_policy(cfg: &Config) -> retention::Policy {
    retention::Policy {
        max_age: (cfg.store.retention_days > 0)
            .then(|| Duration::from_secs(cfg.store.retention_days * 86_400)),
        max_db_bytes: cfg.store.cleanup_db_threshold_bytes,
        disk_threshold_pct: cfg.store.cleanup_disk_threshold,
        active_sinks: Vec::new(),
    }
}

/// Opens the store, starts the writer and the HTTP API, and schedules maintenance.
pub async fn start(cfg: Config) -> anyhow::Result<Daemon> {
    let db_path = cfg.store.db_path();
    let policy = retention_policy(&cfg);
    let conn = store::open_writer(&db_path)?;
    // Keep the WAL small relative to the size cap, so the cap holds between checks.
    let wal_pages = (cfg.store.cleanup_db_threshold_bytes / 16 / 4096).clamp(64, 1000);
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint = {wal_pages}; PRAGMA journal_size_limit = {};",
        wal_pages * 4096
    ))?;
    tracing::info!(db_path = %db_path.display(), schema_version = store::schema::CURRENT_VERSION, "database open");
    // Components plug in here: transforms run before records are queued,
    // hooks inside and after each committed batch.
    let transforms: Vec<Arc<dyn pipeline::Transform>> = Vec::new();
    let hooks: Vec<Arc<dyn pipeline::WriteHook>> = Vec::new();
    let (pipeline, writer) = Pipeline::start(
        &cfg.pipeline,
        transforms,
        WriterSetup {
            conn,
            db_path: db_path.clone(),
            batch_max: cfg.pipeline.batch_max,
            retention: policy.clone(),
            hooks,
        },
    );
    let reads = Arc::new(ReadPool::new(db_path.clone(), 4));
    let bind: std::net::IpAddr = cfg
        .api
        .bind
        .parse()
        .with_context(|| format!("OCT_BIND: not an IP address: {}", cfg.api.bind))?;
    let listener = tokio::net::TcpListener::bind((bind, cfg.api.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", cfg.api.bind, cfg.api.port))?;
    let addr = listener.local_addr()?;
    let state: SharedState = Arc::new(AppState {
        config: cfg.clone(),
        pipeline: pipeline.clone(),
        reads,
        started: Instant::now(),
        ready: AtomicBool::new(false),
        shutting_down: AtomicBool::new(false),
    });
    let (stop, mut stop_rx) = watch::channel(false);
    let otlp = crate::sources::otlp::start(&state, stop_rx.clone()).await?;
    let app = api::router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });
    let tasks = vec![
        spawn_every(cfg.store.cleanup_interval, {
            let p = pipeline.clone();
            let path = db_path.clone();
            move || {
                let stats = p.stats().clone();
                let (path, policy) = (path.clone(), policy.clone());
                p.run_job(move |conn| pipeline::run_retention(conn, &path, &policy, &stats));
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
    state.ready.store(true, Ordering::Relaxed);
    tracing::info!(addr = %addr, version = env!("CARGO_PKG_VERSION"), "listening");
    Ok(Daemon {
        addr,
        state,
        server,
        stop,
        writer,
        tasks,
        otlp,
    })
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

    /// Refuses new work, drains the queue, commits and checkpoints, within the shutdown timeout.
    /// True when everything finished in time.
    pub async fn shutdown(self) -> bool {
        let deadline = Instant::now() + self.state.config.api.shutdown_timeout;
        self.state.shutting_down.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.stop.send(true);
        let left = deadline.saturating_duration_since(Instant::now());
        // In-flight requests get half the budget; the writer's drain the rest.
        let servers = async {
            let _ = self.server.await;
            for t in self.otlp.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(left / 2, servers).await.is_err() {
            tracing::warn!("open connections did not close in time");
        }
        self.state.pipeline.close();
        let writer = self.writer;
        let left = deadline.saturating_duration_since(Instant::now());
        let done = tokio::task::spawn_blocking(move || writer.join(left))
            .await
            .unwrap_or(false);
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

/// Waits for SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = i.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The daemon from start to a clean stop.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let daemon = start(cfg).await?;
    wait_for_signal().await;
    if daemon.shutdown().await {
        Ok(())
    } else {
        anyhow::bail!("shutdown did not finish within OCT_SHUTDOWN_TIMEOUT")
    }
}
