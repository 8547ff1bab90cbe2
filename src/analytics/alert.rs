//! Alerts (budget thresholds, anomalous runs, host conditions): stored as events in the
//! same transaction that caused them and, when a destination is set (the generic JSON
//! webhook `OCT_ALERT_WEBHOOK`, Slack, Discord, Telegram), queued in the same
//! transaction in `alert_outbox`. One task per destination delivers the queue in order,
//! past its own cursor (`sink_cursors`, sink `alert_webhook`, `alert_slack`, ...),
//! retrying with backoff; an alert not yet delivered when the daemon stops is delivered
//! after it starts again. A row leaves the queue once every destination is past it.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::Notify;

use super::alert_chat;
use crate::model::{Event, EventType, Record, now_ns};
use crate::pipeline::{HookError, HookTx, Pipeline, WriteHook};
use crate::store::write::WriteEffect;

/// The queue's table, as a cursor's table name.
const CURSOR_TABLE: &str = "alert_outbox";
/// An alert still undelivered this long after it fired is dropped (its event stays).
const MAX_AGE_NS: i64 = 24 * 3_600 * 1_000_000_000;
/// How often the queue is looked at without a wake-up (alerts queued by another path).
const IDLE_POLL: Duration = Duration::from_secs(30);

/// A secret setting: shown as `[REDACTED]` by `Debug`, so it never reaches a log.
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Where alerts are delivered.
#[derive(Clone, PartialEq)]
pub enum Destination {
    /// The alert's JSON as it is.
    Webhook(String),
    /// A Slack incoming webhook: `{"text": ...}`.
    Slack(String),
    /// A Discord webhook: `{"content": ..., "allowed_mentions": {"parse": []}}`.
    Discord(String),
    /// A Telegram bot's `sendMessage` to one chat. The token is a secret: never logged.
    Telegram {
        api: String,
        token: String,
        chat_id: String,
    },
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl Destination {
    /// Its cursor's name in `sink_cursors`.
    pub fn sink(&self) -> &'static str {
        match self {
            Destination::Webhook(_) => "alert_webhook",
            Destination::Slack(_) => "alert_slack",
            Destination::Discord(_) => "alert_discord",
            Destination::Telegram { .. } => "alert_telegram",
        }
    }

    /// For logs: the kind and host only (URLs and tokens may hold secrets).
    pub fn label(&self) -> String {
        match self {
            Destination::Webhook(u) => format!("webhook {}", host_of(u)),
            Destination::Slack(u) => format!("slack {}", host_of(u)),
            Destination::Discord(u) => format!("discord {}", host_of(u)),
            Destination::Telegram { api, chat_id, .. } => {
                format!("telegram {} chat {chat_id}", host_of(api))
            }
        }
    }

    /// The URL and JSON body that deliver `payload` (the alert's JSON) here.
    fn request(&self, payload: &str) -> (String, String) {
        let alert: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
        match self {
            Destination::Webhook(u) => (u.clone(), payload.to_string()),
            Destination::Slack(u) => (u.clone(), alert_chat::slack(&alert).to_string()),
            Destination::Discord(u) => (u.clone(), alert_chat::discord(&alert).to_string()),
            Destination::Telegram {
                api,
                token,
                chat_id,
            } => (
                format!("{}/bot{token}/sendMessage", api.trim_end_matches('/')),
                alert_chat::telegram(chat_id, &alert).to_string(),
            ),
        }
    }
}

/// Where alerts go besides the events table: the destinations' queue, when any is set.
#[derive(Clone, Default)]
pub struct AlertSender(Vec<Arc<Notify>>);

impl AlertSender {
    /// Alerts are queued for `n` destinations (none: not queued at all).
    pub fn for_destinations(n: usize) -> AlertSender {
        AlertSender((0..n).map(|_| Arc::new(Notify::new())).collect())
    }

    /// Alerts are queued for one webhook.
    pub fn webhook() -> AlertSender {
        AlertSender::for_destinations(1)
    }

    /// Stores the alert's event and, with a destination, queues its payload, inside `tx`.
    pub fn record(
        &self,
        tx: &mut dyn HookTx,
        event: Event,
        payload: &Value,
    ) -> Result<(), HookError> {
        tx.store_event(event)?;
        self.queue(tx, payload)
    }

    /// Queues a payload whose event is already stored.
    fn queue(&self, tx: &mut dyn HookTx, payload: &Value) -> Result<(), HookError> {
        if !self.0.is_empty() {
            tx.queue_alert(payload)?;
        }
        Ok(())
    }

    /// Wakes the delivery tasks once the transaction that queued alerts has committed.
    pub fn wake(&self) {
        for n in &self.0 {
            n.notify_one();
        }
    }
}

/// Host conditions (disk full, OOM kill, agent down, ...) when first stored: queued for the
/// destinations in the transaction that stores them.
pub struct HostAlerts {
    sender: AlertSender,
    /// Set when the open transaction queued an alert: the commit then wakes the tasks.
    queued: std::sync::atomic::AtomicBool,
}

impl HostAlerts {
    pub fn new(sender: AlertSender) -> HostAlerts {
        HostAlerts {
            sender,
            queued: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// The alert for a newly stored host condition (opened, or begun and ended between two looks).
pub fn host_alert(e: &Event) -> Option<Value> {
    if e.source != "host" || e.event_type != EventType::Error {
        return None;
    }
    let mut payload = serde_json::json!({
        "type": "host_condition",
        "name": e.name,
        "category": e.category,
        "severity": e.severity,
        "message": e.message,
        "agent_id": e.agent_id,
        "time": crate::util::time::format_ns(e.time_ns),
    });
    for k in ["state", "condition", "ended_at", "duration_ms"] {
        if let Some(v) = e.attributes.get(k) {
            payload[k] = v.clone();
        }
    }
    Some(payload)
}

impl WriteHook for HostAlerts {
    fn in_transaction(
        &self,
        tx: &mut dyn HookTx,
        records: &[Record],
        effects: &[WriteEffect],
    ) -> Result<(), HookError> {
        if self.sender.0.is_empty() {
            return Ok(());
        }
        for (r, eff) in records.iter().zip(effects) {
            if let (Record::Event(e), WriteEffect::Inserted) = (r, eff)
                && let Some(p) = host_alert(e)
            {
                self.sender.queue(tx, &p)?;
                self.queued
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }
    fn at_commit(&self) {
        if self
            .queued
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.sender.wake();
        }
    }
}

/// The webhook's host, for logs (the URL itself may carry a secret).
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("{0}")]
    Transport(String),
    #[error("HTTP {0}")]
    Status(u16),
}

impl DeliveryError {
    /// A 4xx (other than 408 and 429) will not get better by sending again.
    fn retryable(&self) -> bool {
        match self {
            DeliveryError::Transport(_) => true,
            DeliveryError::Status(s) => *s >= 500 || *s == 408 || *s == 429,
        }
    }
}

/// Retry schedule: 200 ms doubling to 30 s, for as long as the alert is not too old.
fn schedule() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
        .with_jitter()
}

async fn deliver(client: &reqwest::Client, url: &str, body: &str) -> Result<(), DeliveryError> {
    // Nothing of the URL in errors: it may hold a token (Telegram's is in the path).
    let resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        // Without the URL: it may hold a token.
        .map_err(|e| DeliveryError::Transport(e.without_url().to_string()))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(status.as_u16()))
    }
}

/// One queued alert.
pub struct Pending {
    pub id: i64,
    pub created_ns: i64,
    pub kind: String,
    pub payload: String,
}

/// Where the alert queue is kept: the SQLite file (through the writer), or PostgreSQL
/// on a fleet's central. Each answer is `None` once the store is closed (shutdown).
pub trait AlertQueue: Send + Sync {
    /// The first alert past `sink`'s cursor.
    fn next(&self, sink: &'static str) -> BoxFuture<'_, Option<Result<Option<Pending>, String>>>;
    /// Moves `sink`'s cursor past `id` and forgets what every destination (`all`) passed.
    fn done(
        &self,
        sink: &'static str,
        all: Vec<&'static str>,
        id: i64,
    ) -> BoxFuture<'_, Option<Result<(), String>>>;
}

/// The queue in the SQLite file, read and moved on the writer's connection.
pub struct SqliteAlertQueue(pub Pipeline);

impl AlertQueue for SqliteAlertQueue {
    fn next(&self, sink: &'static str) -> BoxFuture<'_, Option<Result<Option<Pending>, String>>> {
        Box::pin(async move {
            on_writer(&self.0, move |c| {
                next_pending(c, sink).map_err(|e| e.to_string())
            })
            .await
        })
    }

    fn done(
        &self,
        sink: &'static str,
        all: Vec<&'static str>,
        id: i64,
    ) -> BoxFuture<'_, Option<Result<(), String>>> {
        Box::pin(async move {
            on_writer(&self.0, move |c| {
                mark_done(c, sink, &all, id).map_err(|e| e.to_string())
            })
            .await
        })
    }
}

/// The first queued alert past the cursor.
fn next_pending(conn: &Connection, sink: &str) -> rusqlite::Result<Option<Pending>> {
    conn.query_row(
        "SELECT id, created_ns, kind, payload FROM alert_outbox
         WHERE id > COALESCE((SELECT last_id FROM sink_cursors WHERE sink = ?1 AND tbl = ?2), 0)
         ORDER BY id LIMIT 1",
        params![sink, CURSOR_TABLE],
        |r| {
            Ok(Pending {
                id: r.get(0)?,
                created_ns: r.get(1)?,
                kind: r.get(2)?,
                payload: r.get(3)?,
            })
        },
    )
    .optional()
}

/// Moves this destination's cursor past `id` and forgets what every destination passed,
/// in one transaction.
fn mark_done(conn: &Connection, sink: &str, all: &[&str], id: i64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO sink_cursors (sink, tbl, last_id, updated_ns) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (sink, tbl) DO UPDATE SET last_id = excluded.last_id, updated_ns = excluded.updated_ns",
        params![sink, CURSOR_TABLE, id, now_ns()],
    )?;
    let mut passed = i64::MAX;
    for s in all {
        let at: Option<i64> = tx
            .query_row(
                "SELECT last_id FROM sink_cursors WHERE sink = ?1 AND tbl = ?2",
                params![s, CURSOR_TABLE],
                |r| r.get(0),
            )
            .optional()?;
        passed = passed.min(at.unwrap_or(0));
    }
    tx.execute("DELETE FROM alert_outbox WHERE id <= ?1", [passed])?;
    tx.commit()
}

/// Runs `f` on the writer's connection and returns its result (`None` once the pipeline is closed).
async fn on_writer<T: Send + 'static>(
    pipeline: &Pipeline,
    f: impl FnOnce(&Connection) -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if !pipeline.run_job(move |conn| {
        let _ = tx.send(f(conn));
    }) {
        return None;
    }
    rx.await.ok()
}

/// Delivers the queued alerts to `dest` in order, each until it is accepted, refused for
/// good, or too old; woken by `wake` when new ones are queued. `all` names every enabled
/// destination's cursor (a row leaves the queue once all are past it).
pub fn spawn_destination(
    dest: Destination,
    all: Vec<&'static str>,
    queue: Arc<dyn AlertQueue>,
    wake: Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("openclaw-trace/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "alerts disabled: cannot build an HTTP client");
                return;
            }
        };
        let label = dest.label();
        let sink = dest.sink();
        loop {
            let next = match queue.next(sink).await {
                None => return,
                Some(Ok(next)) => next,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the alert queue; will retry");
                    None
                }
            };
            let Some(alert) = next else {
                let _ = tokio::time::timeout(IDLE_POLL, wake.notified()).await;
                continue;
            };
            let deadline = alert.created_ns.saturating_add(MAX_AGE_NS);
            let (url, body) = dest.request(&alert.payload);
            let result = (|| deliver(&client, &url, &body))
                .retry(schedule())
                .sleep(tokio::time::sleep)
                .when(|e| e.retryable() && now_ns() < deadline)
                .notify(|e, after| {
                    tracing::warn!(destination = %label, error = %e, retry_in_ms = after.as_millis() as u64, "alert delivery failed; retrying")
                })
                .await;
            match result {
                Ok(()) => {
                    tracing::info!(destination = %label, alert = %alert.kind, "alert delivered")
                }
                Err(e) => {
                    tracing::error!(destination = %label, alert = %alert.kind, error = %e, "alert delivery gave up")
                }
            }
            let id = alert.id;
            match queue.done(sink, all.clone(), id).await {
                None => return,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    // Sent again later rather than lost.
                    tracing::warn!(error = %e, "cannot move the alert cursor");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

impl AlertSender {
    /// The wake-up of the `i`th destination.
    pub fn notifier(&self, i: usize) -> Arc<Notify> {
        self.0.get(i).cloned().unwrap_or_default()
    }
}
