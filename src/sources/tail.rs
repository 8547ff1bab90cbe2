//! Gateway log tailer (OpenClaw's file log). Its setting is declared now so the
//! Go version's `OCT_LOG_PATH` is accepted; the tailer itself follows.

use crate::config::Setting;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TailConfig {
    /// A file or a glob; empty means discover OpenClaw's default log location.
    pub log_path: Option<String>,
}

pub const SETTINGS: &[Setting<TailConfig>] = &[Setting {
    name: "log_path",
    env: "OCT_LOG_PATH",
    default: "",
    help: "Agent log file (or glob) to follow",
    set: |c, v| {
        c.log_path = Some(v.to_string());
        Ok(())
    },
}];
