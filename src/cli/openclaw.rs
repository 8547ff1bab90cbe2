//! `openclaw-trace openclaw setup`: installs the OpenClaw plugin this binary carries
//! (integrations/openclaw, embedded) where the gateway discovers plugins
//! (`<state dir>/extensions/openclaw-trace`), and enables it in the gateway config,
//! pointed at this daemon's address and token. The config is backed up before it
//! changes; a second run changes nothing; `--dry-run` prints the change; `--remove`
//! undoes it.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rust_embed::RustEmbed;
use serde_json::{Map, Value, json};

use crate::config::Config;

/// The plugin's files (its tests excluded when written).
#[derive(RustEmbed)]
#[folder = "integrations/openclaw/"]
struct Plugin;

/// The plugin's id (openclaw.plugin.json) and its directory name under extensions/.
pub const PLUGIN_ID: &str = "openclaw-trace";

#[derive(Args, Debug)]
pub struct OpenclawArgs {
    #[command(subcommand)]
    pub command: OpenclawCmd,
}

#[derive(Subcommand, Debug)]
pub enum OpenclawCmd {
    /// Install the plugin into OpenClaw and enable it in the gateway config
    Setup(SetupArgs),
    /// Prompt cache: reads, writes, hit rate and dollars saved per agent, model or session
    Cache(super::openclaw_views::CacheArgs),
    /// Heartbeat and cron runs: cost per day and job, HEARTBEAT_OK / NO_REPLY counted
    Scheduled(super::openclaw_views::ViewArgs),
    /// Sub-agents linked to the runs that spawned them, cost rolled up
    Subagents(super::openclaw_views::ViewArgs),
    /// Context tokens against the model's window per session, and compactions
    Context(super::openclaw_views::ViewArgs),
    /// Runs, tokens and cost per channel, and tool use
    Channels(super::openclaw_views::ViewArgs),
    /// Model fallback decisions from the gateway log, by model pair
    Fallbacks(super::openclaw_views::ViewArgs),
    /// Runs flagged as waste: tool loops, bloated contexts, retries of a failing provider
    Waste(super::openclaw_views::WasteArgs),
    /// Ask the gateway itself over its WebSocket: health, status, usage.cost, sessions.usage, cron.list
    Gateway(GatewayArgs),
    /// The gateway's skills (skills.status): eligible or not, and what each lacks
    Skills(SkillsArgs),
}

#[derive(Args, Debug)]
pub struct SkillsArgs {
    /// Print JSON (the same as GET /v1/openclaw/skills)
    #[arg(long)]
    pub json: bool,
    /// Time allowed for each step
    #[arg(long, default_value = "10s")]
    pub timeout: String,
}

/// `openclaw skills`: the running daemon's view (GET /v1/openclaw/skills); without a
/// daemon, or while its gateway source is not ok, the gateway asked directly
/// (OCT_OPENCLAW_GATEWAY_URL and _TOKEN, else the OpenClaw config's).
pub fn run_skills(cfg: &Config, a: &SkillsArgs) -> Result<String, crate::cli::traces::CliError> {
    use crate::cli::traces::CliError;
    use crate::sources::openclaw_gateway as og;
    let timeout = crate::util::duration::parse(&a.timeout)
        .map_err(|e| CliError::Usage(format!("--timeout: {e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let url = format!("{}/v1/openclaw/skills", cfg.api.local_url());
    let token = cfg.api.auth_token.clone();
    let from_daemon: Option<Value> = rt.block_on(async {
        let client = reqwest::Client::builder().timeout(timeout).build().ok()?;
        let mut req = client.get(&url);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        serde_json::from_slice(&r.bytes().await.ok()?).ok()
    });
    let v = match from_daemon.filter(|v| v["condition"] == "ok") {
        Some(v) => v,
        None => {
            let t = og::target(&cfg.openclaw_gateway, &cfg.transcripts).ok_or_else(|| {
                CliError::Failed(
                    "the OpenClaw gateway source is off (OCT_OPENCLAW_GATEWAY_URL=off)".into(),
                )
            })?;
            let status = rt
                .block_on(async {
                    let mut c =
                        crate::sources::gateway::GatewayClient::connect(&t.url, &t.token, timeout)
                            .await?;
                    c.call("skills.status", json!({})).await
                })
                .map_err(|e| {
                    CliError::Failed(format!(
                        "gateway {}: {} ({e})",
                        t.url,
                        og::classify(&e).name()
                    ))
                })?;
            let mut v = og::skills_view(&status);
            v["condition"] = json!("ok");
            v
        }
    };
    if a.json {
        return Ok(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n");
    }
    let t = &v["totals"];
    let mut out = format!(
        "{} skills, {} eligible, {} disabled, {} missing requirements (agent {})\n",
        t["skills"],
        t["eligible"],
        t["disabled"],
        t["missing_requirements"],
        v["agent_id"].as_str().unwrap_or("?")
    );
    out.push_str(&format!(
        "{:<32} {:<9} {:<18} {}\n",
        "SKILL", "ELIGIBLE", "SOURCE", "MISSING"
    ));
    for s in v["skills"].as_array().into_iter().flatten() {
        let missing: Vec<&str> = s["missing"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str())
            .collect();
        out.push_str(&format!(
            "{:<32} {:<9} {:<18} {}\n",
            s["name"].as_str().unwrap_or("?"),
            if s["disabled"] == true {
                "disabled"
            } else if s["eligible"] == true {
                "yes"
            } else {
                "no"
            },
            s["source"].as_str().unwrap_or(""),
            missing.join(" ")
        ));
    }
    Ok(out)
}

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// The gateway's WebSocket URL
    #[arg(long, default_value = "ws://127.0.0.1:18789")]
    pub url: String,
    /// The gateway's token (gateway.auth.token) [env: OCT_OPENCLAW_GATEWAY_TOKEN]
    #[arg(long, env = "OCT_OPENCLAW_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Time allowed for each step
    #[arg(long, default_value = "5s")]
    pub timeout: String,
    /// Compare OpenClaw's sessions.usage totals with this database's usage over the same
    /// days (exit 1 when they differ by more than 1 %)
    #[arg(long)]
    pub compare: bool,
}

/// `openclaw gateway`: one snapshot of the gateway's own view, as JSON.
pub fn run_gateway(cfg: &Config, a: &GatewayArgs) -> Result<String, crate::cli::traces::CliError> {
    use crate::cli::traces::CliError;
    let timeout = crate::util::duration::parse(&a.timeout)
        .map_err(|e| CliError::Usage(format!("--timeout: {e}")))?;
    let token = a.token.clone().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let mut snap = rt
        .block_on(crate::sources::gateway::snapshot(&a.url, &token, timeout))
        .map_err(|e| CliError::Failed(format!("gateway {}: {e}", a.url)))?;
    if a.compare {
        let su = &snap["sessions.usage"];
        let day = |k: &str| {
            su[k]
                .as_str()
                .and_then(|d| crate::util::time::parse_timestamp_str(&format!("{d}T00:00:00Z")))
        };
        let (Some(from), Some(to)) = (day("startDate"), day("endDate")) else {
            return Err(CliError::Failed(
                "the gateway's sessions.usage has no startDate/endDate to compare over".into(),
            ));
        };
        let q = crate::analytics::usage::UsageQuery {
            from_ns: Some(from),
            to_ns: Some(to + 86_400 * 1_000_000_000),
            skip_percentiles: true,
            ..Default::default()
        };
        let conn = crate::cli::traces::reader(cfg)?;
        let ours = crate::analytics::usage::query(&conn, &q)?;
        let cmp = crate::sources::gateway::compare(su, &ours.totals);
        let agree = cmp["agree"] == true;
        snap["comparison"] = cmp;
        let text = serde_json::to_string_pretty(&snap).unwrap_or_default() + "\n";
        if !agree {
            print!("{text}");
            return Err(CliError::Failed(
                "OpenClaw's sessions.usage and openclaw-trace differ by more than 1 % (see comparison)".into(),
            ));
        }
        return Ok(text);
    }
    Ok(serde_json::to_string_pretty(&snap).unwrap_or_default() + "\n")
}

#[derive(Args, Debug)]
pub struct SetupArgs {
    /// OpenClaw's state directory [default: OCT_OPENCLAW_STATE_DIR, $OPENCLAW_STATE_DIR, else ~/.openclaw]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The gateway config file [default: $OPENCLAW_CONFIG_PATH, else <state dir>/openclaw.json]
    #[arg(long, value_name = "FILE")]
    pub gateway_config: Option<PathBuf>,
    /// The URL the plugin sends to [default: http://OCT_BIND:OCT_PORT]
    #[arg(long)]
    pub url: Option<String>,
    /// Print what would change, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Undo: remove the plugin and its config entry
    #[arg(long)]
    pub remove: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not plain JSON ({why}); it may use JSON5 (comments, trailing commas): \
         add the plugin entry by hand (README, \"The plugin\")"
    )]
    NotJson { path: String, why: String },
    #[error("{path}: `{key}` is not an object; fix it, or add the plugin entry by hand")]
    Shape { path: String, key: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where OpenClaw keeps its state, as OpenClaw itself resolves it.
pub fn state_dir(cfg: &Config, a: &SetupArgs) -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = &a.state_dir {
        return d.clone();
    }
    if let Some(d) = cfg
        .transcripts
        .state_dir
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty() && *d != "off")
    {
        return PathBuf::from(d);
    }
    if let Some(d) = env("OPENCLAW_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(p) = env("OPENCLAW_CONFIG_PATH")
        && let Some(parent) = Path::new(&p).parent()
    {
        return parent.to_path_buf();
    }
    let home = env("OPENCLAW_HOME")
        .or_else(|| env("HOME"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".openclaw")
}

fn config_path(state: &Path, a: &SetupArgs) -> PathBuf {
    a.gateway_config
        .clone()
        .or_else(|| {
            std::env::var_os("OPENCLAW_CONFIG_PATH")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| state.join("openclaw.json"))
}

/// The plugin's files as written: (relative path, contents).
pub fn plugin_files() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = Plugin::iter()
        .filter(|p| !p.starts_with("test/"))
        .filter_map(|p| Plugin::get(&p).map(|f| (p.to_string(), f.data.into_owned())))
        .collect();
    v.sort();
    v
}

fn object<'a>(
    v: &'a mut Value,
    key: &str,
    path: &Path,
) -> Result<&'a mut Map<String, Value>, SetupError> {
    let obj = v.as_object_mut().ok_or_else(|| SetupError::Shape {
        path: path.display().to_string(),
        key: key.into(),
    })?;
    let child = obj.entry(key.to_string()).or_insert_with(|| json!({}));
    let dotted = key.to_string();
    child.as_object_mut().ok_or(SetupError::Shape {
        path: path.display().to_string(),
        key: dotted,
    })
}

/// The gateway config with the plugin enabled and pointed at `url` (and `token`).
pub fn enable(
    before: &Value,
    url: &str,
    token: Option<&str>,
    path: &Path,
) -> Result<Value, SetupError> {
    let mut v = before.clone();
    if !v.is_object() {
        return Err(SetupError::Shape {
            path: path.display().to_string(),
            key: "(top level)".into(),
        });
    }
    object(&mut v, "diagnostics", path)?.insert("enabled".into(), json!(true));
    let plugins = v
        .as_object_mut()
        .and_then(|o| o.get_mut("plugins"))
        .filter(|p| !p.is_object());
    if plugins.is_some() {
        return Err(SetupError::Shape {
            path: path.display().to_string(),
            key: "plugins".into(),
        });
    }
    let mut plugins_v = v
        .as_object_mut()
        .and_then(|o| o.remove("plugins"))
        .unwrap_or_else(|| json!({}));
    // An allowlist, when there is one, must name the plugin.
    if let Some(Value::Array(allow)) = plugins_v.get_mut("allow")
        && !allow.iter().any(|x| x == PLUGIN_ID)
    {
        allow.push(json!(PLUGIN_ID));
    }
    let entries = object(&mut plugins_v, "entries", path)?;
    let mut entry_v = entries.remove(PLUGIN_ID).unwrap_or_else(|| json!({}));
    let entry = entry_v.as_object_mut().ok_or_else(|| SetupError::Shape {
        path: path.display().to_string(),
        key: format!("plugins.entries.{PLUGIN_ID}"),
    })?;
    entry.insert("enabled".into(), json!(true));
    let mut hooks = entry.remove("hooks").unwrap_or_else(|| json!({}));
    if let Some(h) = hooks.as_object_mut() {
        h.insert("allowConversationAccess".into(), json!(true));
    } else {
        hooks = json!({"allowConversationAccess": true});
    }
    entry.insert("hooks".into(), hooks);
    let mut pcfg = entry.remove("config").unwrap_or_else(|| json!({}));
    if !pcfg.is_object() {
        pcfg = json!({});
    }
    if let Some(c) = pcfg.as_object_mut() {
        c.insert("url".into(), json!(url));
        match token {
            Some(t) => c.insert("token".into(), json!(t)),
            None => c.remove("token"),
        };
    }
    entry.insert("config".into(), pcfg);
    entries.insert(PLUGIN_ID.into(), entry_v);
    if let Some(o) = v.as_object_mut() {
        o.insert("plugins".into(), plugins_v);
    }
    Ok(v)
}

/// The gateway config without the plugin (diagnostics left as they are).
pub fn disable(before: &Value, plugin_dir: &Path) -> Value {
    let mut v = before.clone();
    if let Some(plugins) = v.get_mut("plugins").and_then(Value::as_object_mut) {
        if let Some(entries) = plugins.get_mut("entries").and_then(Value::as_object_mut) {
            entries.remove(PLUGIN_ID);
        }
        if let Some(allow) = plugins.get_mut("allow").and_then(Value::as_array_mut) {
            allow.retain(|x| x != PLUGIN_ID);
        }
        let dir = plugin_dir.display().to_string();
        if let Some(paths) = plugins
            .get_mut("load")
            .and_then(|l| l.get_mut("paths"))
            .and_then(Value::as_array_mut)
        {
            paths.retain(|x| x.as_str() != Some(dir.as_str()));
        }
    }
    v
}

/// Pretty JSON with secrets masked, for printing.
fn shown(v: &Value) -> String {
    fn mask(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    let k = k.to_ascii_lowercase();
                    let secret = ["token", "secret", "password", "apikey", "api_key"]
                        .iter()
                        .any(|s| k.contains(s));
                    if secret && x.is_string() {
                        *x = json!("***");
                    } else {
                        mask(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(mask),
            _ => {}
        }
    }
    let mut v = v.clone();
    mask(&mut v);
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// The changed lines of `a` -> `b` (`-`/`+`), from their longest common subsequence.
pub fn line_diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}

/// Runs `setup`; returns what it did (or would do), one line per change.
pub fn run_setup(cfg: &Config, a: &SetupArgs) -> Result<String, SetupError> {
    let state = state_dir(cfg, a);
    let cfg_path = config_path(&state, a);
    let plugin_dir = state.join("extensions").join(PLUGIN_ID);
    let url = a.url.clone().unwrap_or_else(|| cfg.api.local_url());
    let token = cfg.api.auth_token.as_deref().filter(|t| !t.is_empty());

    let existing = match std::fs::read(&cfg_path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&cfg_path)(e)),
    };
    let before: Value = match &existing {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => {
            serde_json::from_slice(b).map_err(|e| SetupError::NotJson {
                path: cfg_path.display().to_string(),
                why: e.to_string(),
            })?
        }
        _ => json!({}),
    };
    let after = if a.remove {
        disable(&before, &plugin_dir)
    } else {
        enable(&before, &url, token, &cfg_path)?
    };
    let config_changes = existing.is_none() && !a.remove || after != before;

    // The plugin's files: which differ from what is on disk.
    let files = plugin_files();
    let stale: Vec<&(String, Vec<u8>)> = files
        .iter()
        .filter(|(p, data)| std::fs::read(plugin_dir.join(p)).ok().as_ref() != Some(data))
        .collect();
    let files_change = if a.remove {
        plugin_dir.exists()
    } else {
        !stale.is_empty()
    };

    let mut out = String::new();
    let verb = |done: &str, would: &str| {
        if a.dry_run {
            would.to_string()
        } else {
            done.to_string()
        }
    };
    if !config_changes && !files_change {
        out.push_str(&format!(
            "nothing to change: the plugin is {} ({}, {})\n",
            if a.remove {
                "not installed"
            } else {
                "installed and enabled"
            },
            plugin_dir.display(),
            cfg_path.display()
        ));
        return Ok(out);
    }
    if files_change {
        if a.remove {
            out.push_str(&format!(
                "{} {}\n",
                verb("removed", "would remove"),
                plugin_dir.display()
            ));
        } else {
            for (p, _) in &stale {
                out.push_str(&format!(
                    "{} {}\n",
                    verb("wrote", "would write"),
                    plugin_dir.join(p).display()
                ));
            }
        }
    }
    if config_changes {
        out.push_str(&format!(
            "{} {}:\n{}",
            verb("changed", "would change"),
            cfg_path.display(),
            line_diff(
                &if existing.is_some() {
                    shown(&before)
                } else {
                    String::new()
                },
                &shown(&after)
            )
        ));
    }
    if a.dry_run {
        return Ok(out);
    }

    if files_change {
        if a.remove {
            std::fs::remove_dir_all(&plugin_dir).map_err(io(&plugin_dir))?;
        } else {
            for (p, data) in &stale {
                let dest = plugin_dir.join(p);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::write(&dest, data).map_err(io(&dest))?;
            }
        }
    }
    if config_changes {
        if let Some(parent) = cfg_path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let perms = std::fs::metadata(&cfg_path).ok().map(|m| m.permissions());
        if existing.is_some() {
            let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
            // A new name each time: an earlier backup is never overwritten.
            let backup = (0..)
                .map(|n| {
                    let mut b = cfg_path.as_os_str().to_owned();
                    b.push(format!(".bak-{stamp}"));
                    if n > 0 {
                        b.push(format!("-{n}"));
                    }
                    PathBuf::from(b)
                })
                .find(|b| !b.exists())
                .unwrap_or_default();
            std::fs::copy(&cfg_path, &backup).map_err(io(&backup))?;
            out.push_str(&format!("backup: {}\n", backup.display()));
        }
        let mut text = serde_json::to_string_pretty(&after).unwrap_or_default();
        text.push('\n');
        let mut tmp = cfg_path.as_os_str().to_owned();
        tmp.push(".oct-tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        if let Some(p) = perms {
            std::fs::set_permissions(&tmp, p).map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &cfg_path).map_err(io(&cfg_path))?;
    }
    out.push_str(if a.remove {
        "restart the gateway to unload the plugin\n"
    } else {
        "restart the gateway (or let it reload its config) to load the plugin\n"
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_keeps_the_rest_and_disable_takes_only_ours_away() {
        let p = Path::new("openclaw.json");
        let before = json!({"gateway": {"port": 1},
            "plugins": {"allow": ["a"], "entries": {"a": {"enabled": true},
                "openclaw-trace": {"config": {"captureContent": true, "token": "old"}}}}});
        let after = enable(&before, "http://127.0.0.1:9", None, p).unwrap();
        let e = &after["plugins"]["entries"]["openclaw-trace"];
        assert_eq!(
            e["config"],
            json!({"captureContent": true, "url": "http://127.0.0.1:9"})
        );
        assert_eq!(e["hooks"]["allowConversationAccess"], true);
        assert_eq!(after["plugins"]["allow"], json!(["a", "openclaw-trace"]));
        assert_eq!(after["gateway"], before["gateway"]);
        assert_eq!(
            enable(&after, "http://127.0.0.1:9", None, p).unwrap(),
            after
        );
        let back = disable(&after, Path::new("/x"));
        assert_eq!(back["plugins"]["entries"], json!({"a": {"enabled": true}}));
        assert_eq!(back["plugins"]["allow"], json!(["a"]));
        let bad = enable(&json!({"plugins": []}), "u", None, p).unwrap_err();
        assert!(bad.to_string().contains("`plugins`"), "{bad}");
    }

    #[test]
    fn line_diff_shows_removed_then_added_lines() {
        assert_eq!(line_diff("a\nb\nc\n", "a\nB\nc\nd\n"), "- b\n+ B\n+ d\n");
        assert_eq!(line_diff("same\n", "same\n"), "");
    }

    #[test]
    fn the_carried_plugin_is_the_one_in_the_repository_without_its_tests() {
        let names: Vec<String> = plugin_files().into_iter().map(|f| f.0).collect();
        assert_eq!(names, ["index.js", "openclaw.plugin.json", "package.json"]);
    }
}
