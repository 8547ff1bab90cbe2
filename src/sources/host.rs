//! Host health collectors. The interval is declared now so the Go version's
//! `OCT_METRICS_INTERVAL` is accepted; the collectors follow.

use std::time::Duration;

use crate::config::{Setting, parse_duration};

#[derive(Clone, Debug, PartialEq)]
pub struct HostConfig {
    pub metrics_interval: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            metrics_interval: Duration::from_secs(15),
        }
    }
}

pub const SETTINGS: &[Setting<HostConfig>] = &[Setting {
    name: "metrics_interval",
    env: "OCT_METRICS_INTERVAL",
    default: "15s",
    help: "How often host metrics are sampled",
    set: |c, v| {
        c.metrics_interval = parse_duration(v)?;
        Ok(())
    },
}];
