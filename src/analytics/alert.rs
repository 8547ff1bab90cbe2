//! Alerts (budget thresholds, anomalous runs): stored as events in the same
//! transaction that caused them, and optionally POSTed to `OCT_ALERT_WEBHOOK`
//! with retries and backoff.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::model::{Event, Record, now_ns};
use crate::store::write;

/// Where alerts go besides the events table (present only when a webhook is set).
pub type AlertSender = Option<UnboundedSender<Value>>;

/// Stores an alert event inside the caller's transaction.
pub fn record_event(tx: &rusqlite::Transaction, event: Event) -> rusqlite::Result<()> {
    write::write_records(tx, &[Record::Event(Box::new(event))], now_ns())?;
    Ok(())
}

/// Queues an alert for the webhook; never blocks the writer.
pub fn send(to: &AlertSender, payload: Value) {
    if let Some(tx) = to {
        let _ = tx.send(payload);
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

/// Retry schedule: 200 ms doubling to 30 s, 8 retries (about 2 minutes in all).
fn schedule() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(8)
        .with_jitter()
}

async fn deliver(
    client: &reqwest::Client,
    url: &str,
    payload: &Value,
) -> Result<(), DeliveryError> {
    let body = serde_json::to_vec(payload).map_err(|e| DeliveryError::Transport(e.to_string()))?;
    let resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
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

/// Posts each alert in order, retrying failures with backoff.
pub fn spawn_webhook(url: String, mut rx: UnboundedReceiver<Value>) -> tokio::task::JoinHandle<()> {
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
        while let Some(payload) = rx.recv().await {
            let kind = payload["type"].as_str().unwrap_or("alert").to_string();
            let result = (|| deliver(&client, &url, &payload))
                .retry(schedule())
                .sleep(tokio::time::sleep)
                .when(DeliveryError::retryable)
                .notify(|e, after| {
                    tracing::warn!(host = %host, error = %e, retry_in_ms = after.as_millis() as u64, "alert webhook failed; retrying")
                })
                .await;
            match result {
                Ok(()) => tracing::info!(host = %host, alert = %kind, "alert delivered"),
                Err(e) => {
                    tracing::error!(host = %host, alert = %kind, error = %e, "alert webhook gave up")
                }
            }
        }
    })
}
