//! `openclaw-trace instances`: on a fleet's central, the sidecars that push to it, as the
//! running daemon knows them (`GET /v1/instances`): last push, lag, push backlog, disk,
//! open conditions, and whether each has gone silent.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::openclaw_views::short as clip;
use super::traces::CliError;
use crate::config::Config;

#[derive(Args, Debug)]
pub struct InstancesArgs {
    /// The central's address (default: from --bind/--port, i.e. OCT_BIND/OCT_PORT)
    #[arg(long)]
    pub url: Option<String>,
    /// Print the daemon's JSON answer
    #[arg(long)]
    pub json: bool,
}

/// Asks the daemon for its sidecars.
async fn fetch(cfg: &Config, a: &InstancesArgs) -> Result<Value, CliError> {
    super::remote::get_json(cfg, a.url.as_deref(), "/v1/instances", &[]).await
}

fn age(seconds: Option<i64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) => format!("{}h", s / 3600),
    }
}

/// The table `instances` prints.
pub fn format_instances(v: &Value) -> String {
    let list = v["instances"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if list.is_empty() {
        return "no sidecar has pushed to this daemon\n".into();
    }
    let mut out = format!(
        "{:<24} {:<8} {:<9} {:>9} {:>6} {:>8} {:>6} {:<6} CONDITIONS\n",
        "INSTANCE", "REGION", "VERSION", "LAST PUSH", "LAG", "BACKLOG", "DISK", "STATE"
    );
    for i in list {
        let s = |k: &str| i[k].as_str().unwrap_or("-");
        let status = &i["status"];
        let conditions: Vec<&str> = status["conditions"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:<9} {:>9} {:>6} {:>8} {:>6} {:<6} {}",
            clip(s("instance_id"), 24),
            clip(s("region"), 8),
            clip(s("version"), 9),
            age(i["last_push_age_seconds"].as_i64()),
            age(i["lag_seconds"].as_i64()),
            status["backlog_records"]
                .as_u64()
                .map_or("-".into(), |b| b.to_string()),
            status["disk_used_percent"]
                .as_f64()
                .map_or("-".into(), |d| format!("{d:.0}%")),
            if i["stale"] == true { "STALE" } else { "ok" },
            if conditions.is_empty() {
                "-".to_string()
            } else {
                conditions.join(", ")
            },
        );
    }
    out
}

/// Exit 0 when every sidecar is pushing, 1 when one is stale or reports a condition.
pub fn run(cfg: &Config, a: &InstancesArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("openclaw-trace: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let v = match rt.block_on(fetch(cfg, a)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("openclaw-trace: {e}");
            return ExitCode::from(2);
        }
    };
    if a.json {
        println!("{v}");
    } else {
        print!("{}", format_instances(&v));
    }
    let unwell = v["instances"].as_array().is_some_and(|l| {
        l.iter().any(|i| {
            i["stale"] == true
                || i["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty())
        })
    });
    if unwell {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
