//! Alerts (budget thresholds, anomalous runs): stored as events in the same
//! transaction that caused them and, when `OCT_ALERT_WEBHOOK` is set, queued in the
//! same transaction in `alert_outbox`. One task POSTs the queue in order, past a
//! cursor (`sink_cursors`, sink `alert_webhook`), retrying with backoff; an alert
//! not yet delivered when the daemon stops is delivered after it starts again.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::Notify;

use crate::model::{Event, Record, now_ns};
use crate::pipeline::Pipeline;
use crate::store::write;

/// The cursor's names in `sink_cursors`.
const CURSOR_SINK: &str = "alert_webhook";
const CURSOR_TABLE: &str = "alert_outbox";
/// An alert still undelivered this long after it fired is dropped (its event stays).
const MAX_AGE_NS: i64 = 24 * 3_600 * 1_000_000_000;
/// How often the queue is looked at without a wake-up (alerts queued by another path).
const IDLE_POLL: Duration = Duration::from_secs(30);

/// Where alerts go besides the events table: the webhook's queue, when one is set.
#[derive(Clone, Default)]
pub struct AlertSender(Option<Arc<Notify>>);

impl AlertSender {
    /// Alerts are queued for a webhook.
    pub fn webhook() -> AlertSender {
        AlertSender(Some(Arc::new(Notify::new())))
    }

    /// Stores the alert's event and, with a webhook, queues its payload, inside `tx`.
    pub fn record(
        &self,
        tx: &rusqlite::Transaction,
        event: Event,
        payload: &Value,
    ) -> rusqlite::Result<()> {
        write::write_records(tx, &[Record::Event(Box::new(event))], now_ns())?;
        if self.0.is_some() {
            tx.execute(
                "INSERT INTO alert_outbox (created_ns, kind, payload) VALUES (?1, ?2, ?3)",
                params![
                    now_ns(),
                    payload["type"].as_str().unwrap_or("alert"),
                    payload.to_string()
                ],
            )?;
        }
        Ok(())
    }

    /// Wakes the delivery task once the transaction that queued alerts has committed.
    pub fn wake(&self) {
        if let Some(n) = &self.0 {
            n.notify_one();
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
struct Pending {
    id: i64,
    created_ns: i64,
    kind: String,
    payload: String,
}

/// The first queued alert past the cursor.
fn next_pending(conn: &Connection) -> rusqlite::Result<Option<Pending>> {
    conn.query_row(
        "SELECT id, created_ns, kind, payload FROM alert_outbox
         WHERE id > COALESCE((SELECT last_id FROM sink_cursors WHERE sink = ?1 AND tbl = ?2), 0)
         ORDER BY id LIMIT 1",
        params![CURSOR_SINK, CURSOR_TABLE],
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

/// Moves the cursor past `id` and forgets what it passed, in one transaction.
fn mark_done(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO sink_cursors (sink, tbl, last_id, updated_ns) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (sink, tbl) DO UPDATE SET last_id = excluded.last_id, updated_ns = excluded.updated_ns",
        params![CURSOR_SINK, CURSOR_TABLE, id, now_ns()],
    )?;
    tx.execute("DELETE FROM alert_outbox WHERE id <= ?1", [id])?;
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

/// Delivers the queued alerts in order, each until it is accepted, refused for good,
/// or too old; woken by `sender` when new ones are queued.
pub fn spawn_webhook(
    url: String,
    pipeline: Pipeline,
    sender: &AlertSender,
) -> tokio::task::JoinHandle<()> {
    let wake = sender.0.clone().unwrap_or_default();
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("openclaw-trace/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "alert webhook disabled: cannot build an HTTP client");
                return;
            }
        };
        let host = host_of(&url);
        loop {
            let next = match on_writer(&pipeline, next_pending).await {
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
            let result = (|| deliver(&client, &url, &alert.payload))
                .retry(schedule())
                .sleep(tokio::time::sleep)
                .when(|e| e.retryable() && now_ns() < deadline)
                .notify(|e, after| {
                    tracing::warn!(host = %host, error = %e, retry_in_ms = after.as_millis() as u64, "alert webhook failed; retrying")
                })
                .await;
            match result {
                Ok(()) => tracing::info!(host = %host, alert = %alert.kind, "alert delivered"),
                Err(e) => {
                    tracing::error!(host = %host, alert = %alert.kind, error = %e, "alert webhook gave up")
                }
            }
            let id = alert.id;
            match on_writer(&pipeline, move |c| mark_done(c, id)).await {
                None => return,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    // Sent again later rather than lost.
                    tracing::warn!(error = %e, "cannot move the alert webhook cursor");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}
