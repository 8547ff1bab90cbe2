//! Configuration: each component declares its own settings beside its code;
//! this module only composes them and layers the sources:
//! flags over environment over the TOML file over defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::settings::Setting;
use crate::{analytics, api, logging, metrics, pipeline, redact, sinks, sources, store};

/// Every component's configuration, composed.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub api: api::ApiConfig,
    pub ingest: sources::ingest::IngestConfig,
    pub pipeline: pipeline::PipelineConfig,
    pub store: store::StoreConfig,
    pub log: logging::LogConfig,
    pub tail: sources::tail::TailConfig,
    pub transcripts: sources::transcripts::TranscriptsConfig,
    pub openclaw_gateway: sources::openclaw_gateway::GatewayConfig,
    pub host: sources::host::HostConfig,
    pub push: sinks::push::PushConfig,
    pub redact: redact::RedactConfig,
    pub metrics: metrics::MetricsConfig,
    pub analytics: analytics::AnalyticsConfig,
    pub otlp_export: sinks::otlp_export::OtlpExportConfig,
    pub otlp: sources::otlp::OtlpConfig,
    pub fleet: sources::fleet::FleetConfig,
    pub audit: store::audit::AuditConfig,
}

type Apply = Box<dyn Fn(&mut Config, &str) -> Result<(), String> + Send + Sync>;

/// A setting lifted to the whole `Config`.
pub struct AnySetting {
    pub name: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    apply: Apply,
}

impl AnySetting {
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }
}

fn lift<C: 'static>(
    out: &mut Vec<AnySetting>,
    settings: &'static [Setting<C>],
    part: fn(&mut Config) -> &mut C,
) {
    for s in settings {
        let set = s.set;
        out.push(AnySetting {
            name: s.name,
            env: s.env,
            default: s.default,
            help: s.help,
            apply: Box::new(move |cfg, v| set(part(cfg), v)),
        });
    }
}

/// All settings of all components, in help order.
pub fn settings() -> Vec<AnySetting> {
    let mut out = Vec::new();
    lift(&mut out, api::SETTINGS, |c| &mut c.api);
    lift(&mut out, store::SETTINGS, |c| &mut c.store);
    lift(&mut out, store::audit::SETTINGS, |c| &mut c.audit);
    lift(&mut out, pipeline::SETTINGS, |c| &mut c.pipeline);
    lift(&mut out, sources::ingest::SETTINGS, |c| &mut c.ingest);
    lift(&mut out, logging::SETTINGS, |c| &mut c.log);
    lift(&mut out, sources::tail::SETTINGS, |c| &mut c.tail);
    lift(&mut out, sources::transcripts::SETTINGS, |c| {
        &mut c.transcripts
    });
    lift(&mut out, sources::openclaw_gateway::SETTINGS, |c| {
        &mut c.openclaw_gateway
    });
    lift(&mut out, sources::host::SETTINGS, |c| &mut c.host);
    lift(&mut out, sinks::push::SETTINGS, |c| &mut c.push);
    lift(&mut out, redact::SETTINGS, |c| &mut c.redact);
    lift(&mut out, metrics::SETTINGS, |c| &mut c.metrics);
    lift(&mut out, analytics::SETTINGS, |c| &mut c.analytics);
    lift(&mut out, sinks::otlp_export::SETTINGS, |c| {
        &mut c.otlp_export
    });
    lift(&mut out, sources::otlp::SETTINGS, |c| &mut c.otlp);
    lift(&mut out, sources::fleet::SETTINGS, |c| &mut c.fleet);
    out
}

/// A configuration mistake: one line naming where it came from and the expected form.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where raw values come from, lowest precedence first.
#[derive(Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// Values from command-line flags, keyed by setting name.
    pub flags: BTreeMap<String, String>,
    /// The environment to read (`std::env::vars()` in the binary; explicit in tests).
    pub env: BTreeMap<String, String>,
}

impl Config {
    /// Builds the configuration from defaults, then the file, the environment and the
    /// flags. A fleet's central (`OCT_DATABASE_URL`) starts from a central's defaults
    /// (its queue, in-flight budget and transactions sized for many sidecars), under
    /// the same settings.
    pub fn load(src: &Sources) -> Result<Config, ConfigError> {
        let cfg = Config::load_over(Config::default(), src)?;
        if cfg.store.database_url.is_none() {
            return Ok(cfg);
        }
        let central = Config {
            api: api::ApiConfig::central(),
            pipeline: pipeline::PipelineConfig::central(),
            ..Config::default()
        };
        Config::load_over(central, src)
    }

    fn load_over(mut cfg: Config, src: &Sources) -> Result<Config, ConfigError> {
        let all = settings();
        let file = src.file.clone().or_else(|| {
            src.env
                .get("OCT_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
            apply_toml(&mut cfg, &all, &text, &path.display().to_string())?;
        }
        for s in &all {
            // A variable that is set but empty counts as unset.
            if let Some(v) = src.env.get(s.env).filter(|v| !v.is_empty()) {
                (s.apply)(&mut cfg, v).map_err(|e| ConfigError(format!("{}: {e}", s.env)))?;
            }
        }
        for (name, v) in &src.flags {
            let s = all
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| ConfigError(format!("unknown setting {name}")))?;
            (s.apply)(&mut cfg, v).map_err(|e| ConfigError(format!("--{}: {e}", s.flag())))?;
        }
        Ok(cfg)
    }
}

/// Applies the settings of a TOML file's text (`label` names the file in errors).
pub fn apply_toml(
    cfg: &mut Config,
    all: &[AnySetting],
    text: &str,
    label: &str,
) -> Result<(), ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError(format!("config file {label}: {e}")))?;
    for (key, value) in flatten_toml(&table) {
        let setting = all
            .iter()
            .find(|s| s.name == key)
            .ok_or_else(|| ConfigError(format!("config file {label}: unknown setting {key:?}")))?;
        (setting.apply)(cfg, &value)
            .map_err(|e| ConfigError(format!("config file {label} key {key}: {e}")))?;
    }
    Ok(())
}

/// TOML keys may be flat (`push_endpoint = ...`) or in a table (`[push] endpoint = ...`).
fn flatten_toml(table: &toml::Table) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(inner) => {
                for (ik, iv) in flatten_toml(inner) {
                    out.push((format!("{k}_{ik}"), iv));
                }
            }
            toml::Value::String(s) => out.push((k.clone(), s.clone())),
            toml::Value::Array(items) => out.push((
                k.clone(),
                items
                    .iter()
                    .map(|i| match i {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            other => out.push((k.clone(), other.to_string())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_go_version() {
        let cfg = Config::load(&Sources::default()).unwrap();
        assert_eq!(cfg.api.port, 9090);
        assert_eq!(cfg.api.bind, "127.0.0.1");
        assert_eq!(cfg.store.retention_days, 3);
        assert_eq!(cfg.ingest.max_text_bytes, 16384);
        assert_eq!(cfg.store.cleanup_interval.as_secs(), 300);
        assert_eq!(cfg.store.wal_checkpoint_interval.as_secs(), 600);
        assert_eq!(cfg.store.wal_restart_threshold_bytes, 52_428_800);
        assert_eq!(cfg.store.cleanup_disk_threshold, 80.0);
        assert_eq!(cfg.store.cleanup_db_threshold_bytes, 104_857_600);
        assert_eq!(cfg.push.interval.as_secs(), 300);
        assert_eq!(cfg.push.max_payload_bytes, 5_242_880);
        assert_eq!(cfg.host.metrics_interval.as_secs(), 15);
        assert_eq!(cfg.api.shutdown_timeout.as_secs(), 15);
    }

    #[test]
    fn a_central_starts_from_a_centrals_defaults_under_the_same_settings() {
        let side = Config::load(&Sources::default()).unwrap();
        assert_eq!(side.pipeline.queue_capacity, 10_000);
        assert_eq!(side.pipeline.batch_max, 2_000);
        assert_eq!(side.api.max_inflight_bytes, 4 << 20);
        let url = ("OCT_DATABASE_URL", "postgres://oct@127.0.0.1:5/oct");
        let central = Config::load(&Sources {
            env: env(&[url]),
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(central.pipeline.queue_capacity, 50_000);
        assert_eq!(central.pipeline.queue_max_bytes, 64 << 20);
        assert_eq!(central.pipeline.batch_max, 10_000);
        assert_eq!(central.api.max_inflight_bytes, 32 << 20);
        // What is set wins over either default; the rest is unchanged.
        let set = Config::load(&Sources {
            env: env(&[
                url,
                ("OCT_QUEUE_CAPACITY", "1234"),
                ("OCT_BATCH_MAX", "500"),
            ]),
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(set.pipeline.queue_capacity, 1234);
        assert_eq!(set.pipeline.batch_max, 500);
        assert_eq!(set.api.max_inflight_bytes, 32 << 20);
        assert_eq!(set.api.port, side.api.port);
    }

    #[test]
    fn precedence_is_flags_env_file_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "port = 1111\nretention_days = 9\n[push]\ninterval = \"1m\"\n",
        )
        .unwrap();
        let mut src = Sources {
            file: Some(file),
            env: env(&[("OCT_PORT", "2222"), ("OCT_RETENTION_DAYS", "")]),
            ..Default::default()
        };
        let cfg = Config::load(&src).unwrap();
        assert_eq!(cfg.api.port, 2222, "env beats file");
        assert_eq!(cfg.store.retention_days, 9, "empty env counts as unset");
        assert_eq!(cfg.push.interval.as_secs(), 60, "table keys flatten");
        src.flags.insert("port".into(), "3333".into());
        assert_eq!(Config::load(&src).unwrap().api.port, 3333, "flag beats env");
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let src = Sources {
            env: env(&[("OCT_PUSH_INTERVAL", "5 minutes")]),
            ..Default::default()
        };
        let err = Config::load(&src).unwrap_err().0;
        assert!(
            err.starts_with("OCT_PUSH_INTERVAL: expected a duration"),
            "{err}"
        );
        let src = Sources {
            env: env(&[("OCT_PORT", "99999")]),
            ..Default::default()
        };
        assert!(
            Config::load(&src)
                .unwrap_err()
                .0
                .starts_with("OCT_PORT: expected a port")
        );
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "nonsense = 1\n").unwrap();
        let src = Sources {
            file: Some(file),
            ..Default::default()
        };
        assert!(
            Config::load(&src)
                .unwrap_err()
                .0
                .contains("unknown setting \"nonsense\"")
        );
    }

    #[test]
    fn every_setting_has_a_unique_name_and_env() {
        let all = settings();
        let mut names: Vec<_> = all.iter().map(|s| s.name).collect();
        let mut envs: Vec<_> = all.iter().map(|s| s.env).collect();
        names.sort();
        envs.sort();
        let (n, e) = (names.len(), envs.len());
        names.dedup();
        envs.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(envs.len(), e);
        for s in &all {
            assert!(s.env.starts_with("OCT_"), "{}", s.env);
        }
    }

    #[test]
    fn budgets_come_from_the_config_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "budgets = [\"global/day=$5\", \"agent:a/month=1M tokens\"]\nbaseline_threshold = 4\n",
        )
        .unwrap();
        let mut src = Sources {
            file: Some(file),
            ..Default::default()
        };
        let cfg = Config::load(&src).unwrap();
        assert_eq!(cfg.analytics.budgets.len(), 2);
        assert_eq!(cfg.analytics.budgets[1].key(), "agent:a/month/tokens");
        assert_eq!(cfg.analytics.baseline_threshold, 4.0);
        src.env
            .insert("OCT_BUDGETS".into(), "agent:b/day=$1".into());
        let cfg = Config::load(&src).unwrap();
        assert_eq!(cfg.analytics.budgets.len(), 1, "the environment wins");
        src.env
            .insert("OCT_ALERT_WEBHOOK".into(), "ftp://example".into());
        let e = Config::load(&src).unwrap_err().0;
        assert!(e.starts_with("OCT_ALERT_WEBHOOK"), "{e}");
    }

    #[test]
    fn disable_list_is_checked() {
        let env = [("OCT_HOST_DISABLE".to_string(), "dns, bogus".to_string())];
        let err = Config::load(&Sources {
            env: env.into_iter().collect(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.0.contains("unknown collector \"bogus\""), "{}", err.0);
        let env = [("OCT_HOST_DISABLE".to_string(), "dns,processes".to_string())];
        let cfg = Config::load(&Sources {
            env: env.into_iter().collect(),
            ..Default::default()
        })
        .unwrap();
        assert!(!cfg.host.enabled("dns"));
        assert!(cfg.host.enabled("cpu"));
    }

    /// Components declare their settings with `crate::settings` and never import the
    /// composer: only it (with the entry points that call it: the app, the CLI, the fuzz
    /// harness) knows every component, so there is no import circle.
    #[test]
    fn no_component_imports_the_composer() {
        fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out)
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p)
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let allowed = [
            "config.rs",
            "app.rs",
            "main.rs",
            "lib.rs",
            "fuzzing.rs",
            "cli",
        ];
        let mut offenders = Vec::new();
        for f in &files {
            let rel = f.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            if allowed.contains(&first.as_ref()) {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            if text.contains("crate::config") || text.contains("super::config") {
                offenders.push(rel.display().to_string());
            }
        }
        assert!(
            offenders.is_empty(),
            "components importing the composer: {offenders:?}"
        );
        let leaf = std::fs::read_to_string(src.join("settings.rs")).unwrap();
        let imports: Vec<&str> = leaf
            .lines()
            .filter(|l| l.contains("crate::") && !l.contains("crate::util::duration"))
            .collect();
        assert!(
            imports.is_empty(),
            "settings.rs imports the project: {imports:?}"
        );
    }
}
