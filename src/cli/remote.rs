//! The CLI's readers on a fleet's central: with `OCT_DATABASE_URL` the data is in
//! PostgreSQL, which the CLI does not open; it asks the running daemon's API instead
//! (`--url` or OCT_BIND/OCT_PORT, with OCT_AUTH_TOKEN) and prints the same tables.

use std::time::Duration;

use serde_json::Value;

use super::openclaw_views::short as clip;
use super::traces::CliError;
use crate::config::Config;

/// `GET base + path` with `params` (those set), as JSON.
pub async fn get_json(
    cfg: &Config,
    base: Option<&str>,
    path: &str,
    params: &[(&str, Option<String>)],
) -> Result<Value, CliError> {
    let base = base.map_or_else(|| cfg.api.local_url(), str::to_string);
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let query: Vec<(&str, &str)> = params
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    let mut req = client.get(&url).query(&query);
    if let Some(t) = &cfg.api.auth_token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| CliError::Failed(format!("cannot reach the daemon at {url}: {e}")))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(CliError::Failed(format!(
            "the daemon answered {status}: {}",
            clip(&body, 200)
        )));
    }
    serde_json::from_str(&body).map_err(|e| CliError::Failed(format!("not JSON: {e}")))
}

/// [`get_json`] from a command that is not async.
pub fn get_json_blocking(
    cfg: &Config,
    path: &str,
    params: &[(&str, Option<String>)],
) -> Result<Value, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the runtime: {e}")))?
        .block_on(get_json(cfg, None, path, params))
}

/// `v[key]` as `T`, or a clear error naming what the daemon's answer lacked.
pub fn field<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> Result<T, CliError> {
    serde_json::from_value(v[key].clone())
        .map_err(|e| CliError::Failed(format!("the daemon's answer has no usable `{key}`: {e}")))
}
