//! Remote batch push (the Go version's envelope). Settings are declared now so
//! the Go version's variables are accepted; the sink itself follows.

use std::time::Duration;

use crate::config::{Setting, parse_bytes, parse_duration};

#[derive(Clone, Debug, PartialEq)]
pub struct PushConfig {
    pub endpoint: Option<String>,
    pub interval: Duration,
    pub max_payload_bytes: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            endpoint: None,
            interval: Duration::from_secs(300),
            max_payload_bytes: 5_242_880,
        }
    }
}

pub const SETTINGS: &[Setting<PushConfig>] = &[
    Setting {
        name: "push_endpoint",
        env: "OCT_PUSH_ENDPOINT",
        default: "",
        help: "URL batches are pushed to (push is off when empty)",
        set: |c, v| {
            c.endpoint = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        name: "push_interval",
        env: "OCT_PUSH_INTERVAL",
        default: "5m",
        help: "How often to push",
        set: |c, v| {
            c.interval = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "push_max_payload_bytes",
        env: "OCT_PUSH_MAX_PAYLOAD_BYTES",
        default: "5242880",
        help: "Largest request body one push sends",
        set: |c, v| {
            c.max_payload_bytes = parse_bytes(v)?;
            Ok(())
        },
    },
];
