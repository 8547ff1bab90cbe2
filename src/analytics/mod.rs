//! Analytics over the stored spans: cost from a price table, usage rollups,
//! budgets with alerts, and per-agent baselines that flag unusual runs.
//! Plugs into the pipeline as a transform (cost) and write hooks (rollups,
//! budgets, finished runs); the API and CLI read what they maintain.

pub mod alert;
pub mod alert_chat;
pub mod baseline;
pub mod budgets;
pub mod cost;
pub mod openclaw;
pub mod overview;
pub mod pricing;
pub mod run_metrics;
pub mod sampling;
pub mod usage;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::model::{TraceId, now_ns};
use crate::pipeline::{Pipeline, Transform, WriteHook};
use crate::settings::{Setting, parse_duration, parse_u64};
use crate::store::ReadPool;
use baseline::BaselineSettings;
use budgets::{BudgetRule, BudgetStatus, Budgets};
use cost::{CostTransform, Unpriced};
use pricing::PriceTable;

#[derive(Clone, Debug, PartialEq)]
pub struct AnalyticsConfig {
    pub pricing_file: Option<PathBuf>,
    pub budgets: Vec<BudgetRule>,
    pub alert_webhook: Option<String>,
    /// Slack incoming webhook URL.
    pub alert_slack_webhook: Option<String>,
    /// Discord webhook URL.
    pub alert_discord_webhook: Option<String>,
    /// Telegram bot token (a secret: its Debug is masked) and chat id.
    pub alert_telegram_bot_token: Option<alert::Secret>,
    pub alert_telegram_chat_id: Option<String>,
    /// The Bot API's base URL (tests point it at a local server).
    pub alert_telegram_api: String,
    pub baseline_runs: usize,
    pub baseline_min_runs: usize,
    pub baseline_threshold: f64,
    /// Wait after a run's root span before checking it, so late child spans count.
    pub baseline_settle: Duration,
    /// Days usage rollups are kept (as daily rows once older than the age retention); 0 keeps them.
    pub usage_retention_days: u64,
    /// `OCT_SAMPLING` as given, and its rules (`None`: every run is kept).
    pub sampling: Option<(String, sampling::SamplingRules)>,
    /// A run without an ended root is decided this long after its first span.
    pub sampling_decision_wait: Duration,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            pricing_file: None,
            budgets: Vec::new(),
            alert_webhook: None,
            alert_slack_webhook: None,
            alert_discord_webhook: None,
            alert_telegram_bot_token: None,
            alert_telegram_chat_id: None,
            alert_telegram_api: "https://api.telegram.org".into(),
            baseline_runs: 50,
            baseline_min_runs: 10,
            baseline_threshold: 3.5,
            baseline_settle: Duration::from_secs(5),
            usage_retention_days: 400,
            sampling: None,
            sampling_decision_wait: Duration::from_secs(30),
        }
    }
}

pub const SETTINGS: &[Setting<AnalyticsConfig>] = &[
    Setting {
        name: "pricing_file",
        env: "OCT_PRICING_FILE",
        default: "",
        help: "Prices overriding the bundled table: TOML or JSON [[model]] entries (USD per million tokens), or an OpenClaw config with models.providers.*.models[].cost",
        set: |c, v| {
            c.pricing_file = Some(PathBuf::from(v.trim()));
            Ok(())
        },
    },
    Setting {
        name: "budgets",
        env: "OCT_BUDGETS",
        default: "",
        help: "Spending limits, SCOPE/PERIOD=LIMIT separated by commas: global/month=$200, agent:main/day=$5, agent:coder/day=2M tokens",
        set: |c, v| {
            c.budgets = budgets::parse_budgets(v)?;
            Ok(())
        },
    },
    Setting {
        name: "alert_webhook",
        env: "OCT_ALERT_WEBHOOK",
        default: "",
        help: "URL that budget alerts and anomalous runs are POSTed to as JSON (retried with backoff)",
        set: |c, v| {
            let url = reqwest::Url::parse(v.trim())
                .map_err(|e| format!("expected an http(s) URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err("expected an http(s) URL".into());
            }
            c.alert_webhook = Some(v.trim().to_string());
            Ok(())
        },
    },
    Setting {
        name: "alert_slack_webhook",
        env: "OCT_ALERT_SLACK_WEBHOOK",
        default: "",
        help: "Slack incoming webhook URL: alerts as readable messages",
        set: |c, v| {
            c.alert_slack_webhook = Some(http_url(v)?);
            Ok(())
        },
    },
    Setting {
        name: "alert_discord_webhook",
        env: "OCT_ALERT_DISCORD_WEBHOOK",
        default: "",
        help: "Discord webhook URL: alerts as readable messages",
        set: |c, v| {
            c.alert_discord_webhook = Some(http_url(v)?);
            Ok(())
        },
    },
    Setting {
        name: "alert_telegram_bot_token",
        env: "OCT_ALERT_TELEGRAM_BOT_TOKEN",
        default: "",
        help: "Telegram bot token (from @BotFather; with OCT_ALERT_TELEGRAM_CHAT_ID): alerts as messages; never logged",
        set: |c, v| {
            let t = v.trim();
            let ok = t.split_once(':').is_some_and(|(id, rest)| {
                !id.is_empty()
                    && id.bytes().all(|b| b.is_ascii_digit())
                    && !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            if !ok {
                // The value is not repeated: it is meant to be a secret.
                return Err(
                    "expected a bot token such as 123456:ABC-DEF (digits, a colon, letters)".into(),
                );
            }
            c.alert_telegram_bot_token = Some(alert::Secret(t.to_string()));
            Ok(())
        },
    },
    Setting {
        name: "alert_telegram_chat_id",
        env: "OCT_ALERT_TELEGRAM_CHAT_ID",
        default: "",
        help: "Telegram chat to alert: a numeric id (-100... for a group) or @channel",
        set: |c, v| {
            let t = v.trim();
            let numeric = t.strip_prefix('-').unwrap_or(t);
            let ok = (!numeric.is_empty() && numeric.bytes().all(|b| b.is_ascii_digit()))
                || (t.len() > 1
                    && t.starts_with('@')
                    && t[1..]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            if !ok {
                return Err("expected a numeric chat id or @channelname".into());
            }
            c.alert_telegram_chat_id = Some(t.to_string());
            Ok(())
        },
    },
    Setting {
        name: "alert_telegram_api",
        env: "OCT_ALERT_TELEGRAM_API",
        default: "https://api.telegram.org",
        help: "Telegram Bot API base URL (a local Bot API server, or a test's)",
        set: |c, v| {
            c.alert_telegram_api = http_url(v)?.trim_end_matches('/').to_string();
            Ok(())
        },
    },
    Setting {
        name: "baseline_runs",
        env: "OCT_BASELINE_RUNS",
        default: "50",
        help: "How many of an agent's previous runs make its baseline",
        set: |c, v| {
            c.baseline_runs = parse_u64(v)?.clamp(1, 10_000) as usize;
            Ok(())
        },
    },
    Setting {
        name: "baseline_min_runs",
        env: "OCT_BASELINE_MIN_RUNS",
        default: "10",
        help: "Runs an agent needs before its runs are judged",
        set: |c, v| {
            c.baseline_min_runs = parse_u64(v)?.max(1) as usize;
            Ok(())
        },
    },
    Setting {
        name: "baseline_threshold",
        env: "OCT_BASELINE_THRESHOLD",
        default: "3.5",
        help: "Robust z-score beyond which a run's metric is anomalous",
        set: |c, v| {
            c.baseline_threshold = parse_threshold(v)?;
            Ok(())
        },
    },
    Setting {
        name: "baseline_settle",
        env: "OCT_BASELINE_SETTLE",
        default: "5s",
        help: "Wait after a run ends before checking it against its baseline",
        set: |c, v| {
            c.baseline_settle = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "usage_retention_days",
        env: "OCT_USAGE_RETENTION_DAYS",
        default: "400",
        help: "Days usage rollups (GET /v1/usage, budgets) are kept; hourly rows older than OCT_RETENTION_DAYS become daily rows (0 keeps them forever)",
        set: |c, v| {
            c.usage_retention_days = parse_u64(v)?;
            Ok(())
        },
    },
    Setting {
        name: "sampling",
        env: "OCT_SAMPLING",
        default: "off",
        help: "Keep a share of the runs, totals exact (README: Sampling): ratio=10%,slower_than=30s,costlier_than=$0.50 (errors and baseline outliers are always kept)",
        set: |c, v| {
            c.sampling = sampling::parse_rules(v)?.map(|r| (v.trim().to_string(), r));
            Ok(())
        },
    },
    Setting {
        name: "sampling_decision_wait",
        env: "OCT_SAMPLING_DECISION_WAIT",
        default: "30s",
        help: "A run whose root span has not ended is decided this long after its first span",
        set: |c, v| {
            c.sampling_decision_wait = parse_duration(v)?;
            Ok(())
        },
    },
];

fn http_url(v: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(v.trim()).map_err(|e| format!("expected an http(s) URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("expected an http(s) URL".into());
    }
    Ok(v.trim().to_string())
}

pub fn parse_threshold(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 => Ok(t),
        _ => Err(format!("expected a positive number such as 3.5, got {v:?}")),
    }
}

impl AnalyticsConfig {
    /// Rollup retention: hours for `retention_days` (the spans' age retention), days for ours.
    pub fn usage_retention(&self, retention_days: u64) -> usage::UsageRetention {
        let ns = |days: u64| (days > 0).then(|| days.min(100_000) as i64 * usage::DAY_NS);
        usage::UsageRetention {
            hours_ns: ns(retention_days),
            days_ns: ns(self.usage_retention_days),
        }
    }

    /// Where alerts go: the generic webhook and the chat services that are set.
    pub fn alert_destinations(&self) -> Result<Vec<alert::Destination>, AnalyticsError> {
        use alert::Destination as D;
        let mut out = Vec::new();
        if let Some(u) = &self.alert_webhook {
            out.push(D::Webhook(u.clone()));
        }
        if let Some(u) = &self.alert_slack_webhook {
            out.push(D::Slack(u.clone()));
        }
        if let Some(u) = &self.alert_discord_webhook {
            out.push(D::Discord(u.clone()));
        }
        match (&self.alert_telegram_bot_token, &self.alert_telegram_chat_id) {
            (Some(t), Some(c)) => out.push(D::Telegram {
                api: self.alert_telegram_api.clone(),
                token: t.0.clone(),
                chat_id: c.clone(),
            }),
            (None, None) => {}
            (Some(_), None) => {
                return Err(AnalyticsError::Alerts(
                    "OCT_ALERT_TELEGRAM_BOT_TOKEN is set without OCT_ALERT_TELEGRAM_CHAT_ID".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(AnalyticsError::Alerts(
                    "OCT_ALERT_TELEGRAM_CHAT_ID is set without OCT_ALERT_TELEGRAM_BOT_TOKEN".into(),
                ));
            }
        }
        Ok(out)
    }

    pub fn baseline(&self) -> BaselineSettings {
        BaselineSettings {
            runs: self.baseline_runs,
            min_runs: self.baseline_min_runs,
            threshold: self.baseline_threshold,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("OCT_PRICING_FILE: {0}")]
    Pricing(#[from] pricing::PricingError),
    #[error("{0}")]
    Alerts(String),
}

/// At startup, runs that ended this recently are checked again (at most this many).
const RECHECK_WINDOW_NS: i64 = 15 * 60 * 1_000_000_000;
/// Finished runs waiting for their check, at most; runs finishing faster than checks
/// run (a load test, a replay) are skipped beyond it, and the skips are logged.
const PENDING_CHECKS_MAX: usize = 1_000;
/// Runs remembered as queued, so one that ends twice is checked once.
const RECENTLY_QUEUED_MAX: usize = 4_096;
/// Checks per second, at most: each reads the agent's last runs, and the check must
/// never take the machine from the agent (a check reads up to 100 runs, about 1 ms of CPU;
/// 20 a second is far above any agent's pace of runs).
const CHECKS_PER_SECOND: u32 = 20;

/// Checks each finished run once it has settled, on a read connection (the writer only
/// records the rare anomaly), at a bounded rate.
async fn check_finished_runs(
    mut rx: mpsc::UnboundedReceiver<(TraceId, bool)>,
    pipeline: Pipeline,
    reads: Arc<ReadPool>,
    settle: Duration,
    settings: BaselineSettings,
    alerts: alert::AlertSender,
    histograms: Option<Arc<run_metrics::RunHistograms>>,
) {
    let mut due: VecDeque<(tokio::time::Instant, (TraceId, bool))> = VecDeque::new();
    // A run can end twice over (its root and, for an OpenClaw heartbeat or cron run, its
    // attempt): checked once. A re-check (a score arrived) always goes through.
    let mut seen: VecDeque<TraceId> = VecDeque::new();
    let mut seen_set: std::collections::HashSet<TraceId> = Default::default();
    let mut skipped = 0u64;
    let mut skip_logged = tokio::time::Instant::now();
    let pace = Duration::from_secs(1) / CHECKS_PER_SECOND;
    loop {
        let next = due.front().map(|(t, _)| *t);
        tokio::select! {
            id = rx.recv() => {
                let Some((id, rechecked)) = id else { break };
                if !rechecked {
                    if !seen_set.insert(id) {
                        continue;
                    }
                    seen.push_back(id);
                }
                if seen.len() > RECENTLY_QUEUED_MAX
                    && let Some(old) = seen.pop_front()
                {
                    seen_set.remove(&old);
                }
                if due.len() < PENDING_CHECKS_MAX {
                    due.push_back((tokio::time::Instant::now() + settle, (id, rechecked)));
                } else {
                    skipped += 1;
                    if skip_logged.elapsed() >= Duration::from_secs(60) {
                        tracing::warn!(skipped, "runs finish faster than baseline checks run; some are not checked");
                        skip_logged = tokio::time::Instant::now();
                    }
                }
            }
            _ = tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)), if next.is_some() => {
                let Some((_, (id, rechecked))) = due.pop_front() else { continue };
                let (reads, s) = (reads.clone(), settings.clone());
                let checked = tokio::task::spawn_blocking(move || {
                    // The agent's baseline, and a heartbeat's or cron job's cost per run.
                    reads.with(|conn| Ok(baseline::check_run_and_job(conn, &id, &s)))
                })
                .await;
                match checked {
                    Ok(Ok(Ok(rc))) => {
                        // A re-check (a score arrived) does not count the run twice.
                        if let (Some(h), Some(c), false) = (&histograms, &rc.check, rechecked) {
                            h.observe(c);
                        }
                        if rc.anomaly(&settings, &id).is_some() {
                            let (alerts, s) = (alerts.clone(), settings.clone());
                            pipeline.run_job(move |conn| {
                                if let Err(e) = rc.record(conn, &id, &s, &alerts) {
                                    tracing::warn!(error = %e, run_id = %id.to_hex(), "cannot record a baseline anomaly");
                                }
                            });
                        }
                    }
                    Ok(Ok(Err(e))) => {
                        tracing::warn!(error = %e, run_id = %id.to_hex(), "baseline check failed");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, run_id = %id.to_hex(), "baseline check failed");
                    }
                    // Not a checkable run (no agent, gone), or the runtime is stopping.
                    _ => {}
                }
                tokio::time::sleep(pace).await;
            }
        }
    }
}
const RECHECK_MAX_RUNS: usize = 100;

/// What `/health` shows of analytics.
#[derive(Clone, Debug, Serialize)]
pub struct AnalyticsHealth {
    /// The date the bundled price data was taken from its source.
    pub price_table_as_of: String,
    /// Where the bundled price data comes from (`genai-prices <version> ...`).
    pub price_table_source: String,
    pub budgets: Vec<BudgetStatus>,
    /// Models seen without a price: their calls have no cost.
    pub unpriced_models: Vec<Unpriced>,
    /// Run sampling's decisions (absent when `OCT_SAMPLING` is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling: Option<sampling::SamplingHealth>,
}

/// The analytics components of a running daemon.
pub struct Analytics {
    pub config: AnalyticsConfig,
    pub prices: Arc<PriceTable>,
    pub cost: Arc<CostTransform>,
    pub budgets: Arc<Budgets>,
    alerts: alert::AlertSender,
    runs_tx: mpsc::UnboundedSender<(TraceId, bool)>,
    runs_rx: Mutex<Option<mpsc::UnboundedReceiver<(TraceId, bool)>>>,
    /// Checked runs' figures for `/metrics`, once registered.
    run_histograms: std::sync::OnceLock<Arc<run_metrics::RunHistograms>>,
    /// Run sampling, when `OCT_SAMPLING` is on.
    pub sampler: Option<Arc<sampling::Sampler>>,
}

impl Analytics {
    pub fn new(cfg: &AnalyticsConfig) -> Result<Arc<Analytics>, AnalyticsError> {
        let prices = Arc::new(PriceTable::load(cfg.pricing_file.as_deref())?);
        let alerts = alert::AlertSender::for_destinations(cfg.alert_destinations()?.len());
        let (runs_tx, runs_rx) = mpsc::unbounded_channel();
        Ok(Arc::new(Analytics {
            config: cfg.clone(),
            cost: Arc::new(CostTransform::new(prices.clone())),
            prices,
            budgets: Arc::new(Budgets::new(&cfg.budgets, alerts.clone())),
            alerts,
            runs_tx,
            runs_rx: Mutex::new(Some(runs_rx)),
            run_histograms: std::sync::OnceLock::new(),
            sampler: cfg.sampling.as_ref().map(|(text, rules)| {
                Arc::new(sampling::Sampler::new(
                    rules.clone(),
                    text,
                    cfg.sampling_decision_wait,
                    cfg.baseline(),
                ))
            }),
        }))
    }

    /// Registers the per-run histograms in `/metrics` (before `start`).
    pub fn register_metrics(&self, registry: &crate::metrics::Registry, label_limit: usize) {
        let _ = self
            .run_histograms
            .set(Arc::new(run_metrics::RunHistograms::new(
                registry,
                label_limit,
            )));
        if let Some(s) = &self.sampler {
            s.register_metrics(registry);
        }
    }

    pub fn transforms(&self) -> Vec<Arc<dyn Transform>> {
        vec![self.cost.clone()]
    }

    /// Rollups first: budgets read nothing from them per batch, but load from them.
    /// Sampling last: it deletes the pieces of dropped runs the others have counted.
    pub fn hooks(&self) -> Vec<Arc<dyn WriteHook>> {
        let mut hooks: Vec<Arc<dyn WriteHook>> = vec![
            Arc::new(usage::RollupHook),
            self.budgets.clone(),
            Arc::new(baseline::FinishedRuns(self.runs_tx.clone())),
            Arc::new(alert::HostAlerts::new(self.alerts.clone())),
        ];
        if let Some(s) = &self.sampler {
            hooks.push(s.clone());
        }
        hooks
    }

    /// Queues the startup work on the writer (backfill, then budget state) ahead of
    /// any ingest, and starts the alert deliveries and the run checker.
    pub fn start(
        self: &Arc<Self>,
        pipeline: &Pipeline,
        reads: &Arc<ReadPool>,
    ) -> Vec<JoinHandle<()>> {
        let budgets = self.budgets.clone();
        let (settings, alerts) = (self.config.baseline(), self.alerts.clone());
        pipeline.run_job(move |conn| {
            match usage::backfill(conn) {
                Ok(0) => {}
                Ok(n) => tracing::info!(calls = n, "usage rollups backfilled"),
                Err(e) => tracing::error!(error = %e, "usage backfill failed"),
            }
            if let Err(e) = budgets.load(conn, now_ns()) {
                tracing::error!(error = %e, "cannot load budget state");
            }
            // Runs that ended shortly before a stop may not have been checked.
            let recent =
                baseline::finished_since(conn, now_ns() - RECHECK_WINDOW_NS, RECHECK_MAX_RUNS);
            for id in recent.unwrap_or_default() {
                if let Err(e) = baseline::check_and_record(conn, &id, &settings, &alerts) {
                    tracing::warn!(error = %e, run_id = %id.to_hex(), "baseline check failed");
                }
            }
        });
        let mut tasks = Vec::new();
        match &self.sampler {
            Some(s) => tasks.push(s.start(pipeline)),
            None => {
                pipeline.run_job(|conn| {
                    if let Err(e) = sampling::disable(conn) {
                        tracing::warn!(error = %e, "cannot reset the sampling state");
                    }
                });
            }
        }
        tasks.extend(self.deliver_alerts(Arc::new(alert::SqliteAlertQueue(pipeline.clone()))));
        if let Some(rx) = self.runs_rx.lock().ok().and_then(|mut r| r.take()) {
            tasks.push(tokio::spawn(check_finished_runs(
                rx,
                pipeline.clone(),
                reads.clone(),
                self.config.baseline_settle,
                self.config.baseline(),
                self.alerts.clone(),
                self.run_histograms.get().cloned(),
            )));
        }
        tasks
    }

    /// Starts a delivery task per alert destination, reading `queue`.
    pub fn deliver_alerts(&self, queue: Arc<dyn alert::AlertQueue>) -> Vec<JoinHandle<()>> {
        let dests = self.config.alert_destinations().unwrap_or_default();
        let sinks: Vec<&'static str> = dests.iter().map(|d| d.sink()).collect();
        dests
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                alert::spawn_destination(d, sinks.clone(), queue.clone(), self.alerts.notifier(i))
            })
            .collect()
    }

    pub fn health(&self) -> AnalyticsHealth {
        AnalyticsHealth {
            price_table_as_of: self.prices.as_of.clone(),
            price_table_source: self.prices.source.clone(),
            budgets: self.budgets.status(),
            unpriced_models: self.cost.unpriced(),
            sampling: self.sampler.as_ref().map(|s| s.health()),
        }
    }

    /// Warnings for `/health`: budgets at or over their limit.
    pub fn warnings(&self) -> Vec<String> {
        self.budgets
            .status()
            .into_iter()
            .filter(|b| b.over)
            .map(|b| format!("budget {} over: {:.1}% of its limit", b.budget, b.percent))
            .collect()
    }
}
