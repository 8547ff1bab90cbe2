//! The command line: `serve` (the default) and readers of the local database.

pub mod analytics;
pub mod audit;
pub mod doctor;
pub mod export;
pub mod fleet;
pub mod health;
pub mod metrics;
pub mod openclaw;
pub mod openclaw_views;
pub mod remote;
pub mod tail;
pub mod traces;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches, Parser, Subcommand};

use crate::config::{self, Config, ConfigError, Sources};

/// Every component's settings as global flags, generated from the settings registry.
#[derive(Clone, Debug, Default)]
pub struct SettingFlags(pub BTreeMap<String, String>);

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut out = SettingFlags::default();
        out.update_from_arg_matches(m)?;
        Ok(out)
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for s in config::settings() {
            if let Ok(Some(v)) = m.try_get_one::<String>(s.name) {
                self.0.insert(s.name.to_string(), v.clone());
            }
        }
        Ok(())
    }
}

impl Args for SettingFlags {
    /// At the top level every setting is accepted (`openclaw-trace --port 9191` runs
    /// the daemon, `serve` being the default) but none is shown: `serve --help` lists them.
    fn augment_args(cmd: Command) -> Command {
        add_settings(cmd, |_| false)
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// The settings a command's help shows; every command accepts them all.
fn shows(command: &str, setting: &str) -> bool {
    match command {
        "serve" => true,
        // Commands that talk to the running daemon.
        "tail" | "health" | "setup" => {
            matches!(setting, "bind" | "port" | "auth_token")
        }
        "verify" | "audit" | "audit-readiness" => matches!(
            setting,
            "db_path" | "audit_key_file" | "audit_head_file" | "retention_days" | "redact"
        ),
        // Readers of the database.
        _ => setting == "db_path",
    }
}

fn add_settings(mut cmd: Command, show: impl Fn(&str) -> bool) -> Command {
    let heading = if cmd.get_name() == "serve" {
        "Settings (flag > environment > config file > default)"
    } else {
        "Settings (every daemon setting is accepted: see `serve --help`)"
    };
    for s in config::settings() {
        let flag: &'static str = Box::leak(s.flag().into_boxed_str());
        let default = if s.default.is_empty() {
            "unset"
        } else {
            s.default
        };
        cmd = cmd.arg(
            Arg::new(s.name)
                .long(flag)
                .value_name("VALUE")
                .hide(!show(s.name))
                .help_heading(heading)
                .help(format!(
                    "{} [env: {}] [default: {}]",
                    s.help, s.env, default
                )),
        );
    }
    cmd
}

/// Gives every subcommand, at every depth, the settings flags.
fn with_settings(mut cmd: Command) -> Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for n in names {
        cmd = cmd.mut_subcommand(&n, |sub| {
            let name = sub.get_name().to_string();
            with_settings(add_settings(sub, |s| shows(&name, s)))
        });
    }
    cmd
}

/// The whole command line: [`Cli`] with the settings flags on every subcommand.
pub fn command() -> Command {
    with_settings(<Cli as clap::CommandFactory>::command())
}

/// The commit a release build names (scripts/release.sh sets `OCT_BUILD_COMMIT`).
pub const COMMIT: Option<&str> = option_env!("OCT_BUILD_COMMIT");

/// `0.1.0 (abc1234)`, or `0.1.0` when the build named no commit.
pub fn version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| match COMMIT {
        Some(c) if !c.is_empty() => format!("{} ({c})", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    })
}

#[derive(Parser, Debug)]
#[command(
    name = "openclaw-trace",
    version = version(),
    about = "Captures what an AI agent does, what it costs and how healthy its host is.",
    long_about = None,
    after_help = "The daemon's settings (flags, OCT_* variables, config file keys): openclaw-trace serve --help"
)]
pub struct Cli {
    /// TOML config file [env: OCT_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingFlags,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the daemon (the default when no command is given)
    Serve,
    /// List traces from the local database, newest first
    Traces(traces::TracesArgs),
    /// Show one trace: its spans as a tree, and its events
    Trace(traces::TraceArgs),
    /// Print what the running daemon captures, live (spans, errors, events, log lines)
    Tail(tail::TailArgs),
    /// Calls, tokens, cost and latency from the usage rollups
    Usage(analytics::UsageArgs),
    /// Per-agent baselines, and whether a run is anomalous (exit 1 when it is)
    Baseline(analytics::BaselineArgs),
    /// Export stored data once: OTLP or JSON, to an endpoint or a file
    Export(export::ExportArgs),
    /// List stored metric names, or show one metric's series over time
    Metrics(metrics::MetricsArgs),
    /// One screen: host, agent and sidecar now, and the open conditions
    Status(metrics::StatusArgs),
    /// Check this setup (settings, database, port, OpenClaw, endpoints, clock, prices); exit 1 when a check fails
    Doctor(doctor::DoctorArgs),
    /// Exit 0 when the daemon at OCT_BIND:OCT_PORT answers ready, 1 otherwise
    Health(health::HealthArgs),
    /// OpenClaw: install the plugin (setup), and views on what only OpenClaw knows (cache, scheduled, subagents, context, channels, fallbacks, waste)
    Openclaw(openclaw::OpenclawArgs),
    /// Check the tamper-evident record: exit 0 intact, 1 not (naming the first bad entry), 2 cannot check
    Verify(audit::VerifyArgs),
    /// The audit chain's signing key (`audit key` prints its public key)
    Audit(audit::AuditArgs),
    /// The daemon's own administrative and security events (start, stop, refused requests, retention), newest first
    Activity(audit::ActivityArgs),
    /// What a review asks for (chain intact, key private, head file, retention >= 183 days, clock, redaction), each ok or with a fix; exit 1 when any needs one
    #[command(name = "audit-readiness")]
    AuditReadiness(audit::ReadinessArgs),
    /// On a fleet's central: the sidecars pushing to it (last push, lag, backlog, disk, conditions); exit 1 when one is stale or unwell
    Instances(fleet::InstancesArgs),
}

impl Cli {
    /// Parses the process's arguments (exits with clap's message on a bad one).
    pub fn parse_args() -> Cli {
        Cli::from_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the first is the program name).
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::from_matches(&command().try_get_matches_from(args)?)
    }

    /// The settings given to a subcommand win over those before it.
    fn from_matches(m: &ArgMatches) -> Result<Cli, clap::Error> {
        let mut cli = <Cli as FromArgMatches>::from_arg_matches(m)?;
        let mut at = m;
        while let Some((_, sub)) = at.subcommand() {
            cli.settings.update_from_arg_matches(sub)?;
            at = sub;
        }
        Ok(cli)
    }

    /// Resolves the configuration from this command line and the process environment.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::load(&Sources {
            file: self.config.clone(),
            flags: self.settings.0.clone(),
            env: std::env::vars().collect(),
        })
    }
}
