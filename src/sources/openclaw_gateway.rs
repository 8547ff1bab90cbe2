//! The OpenClaw gateway as a source of the daemon: a read-only poller of its WebSocket
//! protocol (client in [`super::gateway`]). Each poll asks `health` and `status` (up,
//! version, channels connected), `usage.cost` and `sessions.usage` (OpenClaw's own totals,
//! compared with ours), `cron.list` and `cron.runs` (scheduled jobs and their runs),
//! `skills.status`, and `sessions.list` (the session index: context tokens, compactions).
//!
//! What it learns is kept in memory ([`GatewayState`]) for `/health`, `GET
//! /v1/openclaw/gateway`, `/v1/openclaw/skills` and the scheduled view. The gateway down,
//! a token refused, a connection without the `operator.read` scope, or a protocol this
//! client does not speak is one named condition, never a crash; polls back off (the
//! interval doubled up to eight times) while it lasts, and the other doors keep capturing.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::gateway::{GatewayClient, GatewayError};
use crate::model::now_ns;
use crate::settings::{Setting, parse_duration, parse_list};

pub const DEFAULT_URL: &str = "ws://127.0.0.1:18789";

#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    /// `ws://host:port`; None: the OpenClaw config's `gateway.port` on loopback, else the
    /// default; `off` disables.
    pub url: Option<String>,
    /// None: `gateway.auth.token` of the OpenClaw config.
    pub token: Option<String>,
    pub poll_interval: Duration,
    /// The operator scopes asked for at connect.
    pub scopes: Vec<String>,
    pub timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            url: None,
            token: None,
            poll_interval: Duration::from_secs(60),
            scopes: vec!["operator.read".into()],
            timeout: Duration::from_secs(15),
        }
    }
}

pub const SETTINGS: &[Setting<GatewayConfig>] = &[
    Setting {
        name: "openclaw_gateway_url",
        env: "OCT_OPENCLAW_GATEWAY_URL",
        default: "gateway.port of the OpenClaw config on 127.0.0.1, else ws://127.0.0.1:18789",
        help: "The OpenClaw gateway's WebSocket, polled read-only (health, usage, crons, skills, sessions); off disables",
        set: |c, v| {
            let v = v.trim();
            if v != "off" && !v.starts_with("ws://") {
                return Err(format!("expected ws://host:port or off, got {v:?}"));
            }
            c.url = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        name: "openclaw_gateway_token",
        env: "OCT_OPENCLAW_GATEWAY_TOKEN",
        default: "gateway.auth.token of the OpenClaw config",
        help: "The OpenClaw gateway's token (never logged or shown)",
        set: |c, v| {
            c.token = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        name: "openclaw_gateway_poll_interval",
        env: "OCT_OPENCLAW_GATEWAY_POLL_INTERVAL",
        default: "60s",
        help: "How often the OpenClaw gateway is polled; while it is down or refuses, the wait doubles up to 8 times this",
        set: |c, v| {
            c.poll_interval = parse_duration(v)?.max(Duration::from_millis(200));
            Ok(())
        },
    },
    Setting {
        name: "openclaw_gateway_scopes",
        env: "OCT_OPENCLAW_GATEWAY_SCOPES",
        default: "operator.read",
        help: "Operator scopes asked of the OpenClaw gateway at connect (comma-separated; none asks for none; read-only needs operator.read)",
        set: |c, v| {
            c.scopes = parse_list(v);
            if c.scopes == ["none"] {
                c.scopes.clear();
            }
            Ok(())
        },
    },
];

/// Where the poller goes, and whether anyone asked for it (a gateway configured here or
/// an OpenClaw config found): an unreachable gateway nobody configured is no warning.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub url: String,
    pub token: String,
    pub configured: bool,
    /// The OpenClaw config the defaults came from.
    pub config_file: Option<PathBuf>,
}

/// Where OpenClaw keeps its config: `$OPENCLAW_CONFIG_PATH`, else `<state>/openclaw.json`.
pub fn openclaw_config_path(state: Option<&std::path::Path>) -> Option<PathBuf> {
    std::env::var_os("OPENCLAW_CONFIG_PATH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| state.map(|s| s.join("openclaw.json")))
}

/// The gateway to poll, or None when off.
pub fn target(
    cfg: &GatewayConfig,
    transcripts: &super::transcripts::TranscriptsConfig,
) -> Option<Target> {
    if cfg.url.as_deref() == Some("off") {
        return None;
    }
    let state = super::transcripts::state_dir(transcripts);
    let config_file = openclaw_config_path(state.as_deref()).filter(|p| p.is_file());
    let oc: Value = config_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let url = match &cfg.url {
        Some(u) if !u.is_empty() => u.clone(),
        _ => match oc["gateway"]["port"].as_u64() {
            Some(p) => format!("ws://127.0.0.1:{p}"),
            None => DEFAULT_URL.to_string(),
        },
    };
    let token = cfg
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| oc["gateway"]["auth"]["token"].as_str().map(str::to_string))
        .unwrap_or_default();
    Some(Target {
        url,
        token,
        configured: cfg.url.is_some() || cfg.token.is_some() || config_file.is_some(),
        config_file,
    })
}

/// The one condition the gateway source is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Not polled yet.
    Starting,
    /// Answering every read-only method.
    Ok,
    /// Nothing answers and nobody configured a gateway: no warning.
    NotFound,
    /// Configured (or seen before), and nothing answers.
    Unreachable,
    /// The gateway refused the token (`AUTH_*`).
    AuthRefused,
    /// Connected, but the connection lacks a scope the read-only methods need.
    ScopeMissing,
    /// The gateway speaks a protocol this client does not (`PROTOCOL_MISMATCH`).
    ProtocolMismatch,
    /// Anything else: a timeout, a malformed answer.
    Error,
    Disabled,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::Starting => "starting",
            Condition::Ok => "ok",
            Condition::NotFound => "not_found",
            Condition::Unreachable => "unreachable",
            Condition::AuthRefused => "auth_refused",
            Condition::ScopeMissing => "scope_missing",
            Condition::ProtocolMismatch => "protocol_mismatch",
            Condition::Error => "error",
            Condition::Disabled => "disabled",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Condition::Unreachable => {
                "start the gateway, or set OCT_OPENCLAW_GATEWAY_URL (off disables this source)"
            }
            Condition::AuthRefused => {
                "set OCT_OPENCLAW_GATEWAY_TOKEN to the gateway's gateway.auth.token"
            }
            Condition::ScopeMissing => {
                "give the connection operator.read (OCT_OPENCLAW_GATEWAY_SCOPES, or the token's scopes)"
            }
            Condition::ProtocolMismatch => {
                "upgrade OpenClaw (this client speaks gateway protocol 3 to 4)"
            }
            _ => "",
        }
    }
}

/// How an error of a connect or a call reads as a condition.
pub fn classify(e: &GatewayError) -> Condition {
    match e {
        GatewayError::Io(_) => Condition::Unreachable,
        GatewayError::Handshake(_) => Condition::ProtocolMismatch,
        GatewayError::Refused { code, .. } => {
            if code == "MISSING_SCOPE" || code == "FORBIDDEN" {
                Condition::ScopeMissing
            } else if code.contains("PROTOCOL") {
                Condition::ProtocolMismatch
            } else if code.starts_with("AUTH") || code.contains("UNAUTHORIZED") {
                Condition::AuthRefused
            } else {
                Condition::Error
            }
        }
        _ => Condition::Error,
    }
}

/// What the poller knows, for `/health` and the views.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub enabled: bool,
    pub url: Option<String>,
    pub condition: Condition,
    pub detail: Option<String>,
    /// What to do about the condition, in one line.
    pub fix: Option<String>,
    /// When the condition began (ms since the epoch).
    pub since_ms: Option<i64>,
    pub last_poll_ms: Option<i64>,
    pub last_ok_ms: Option<i64>,
    pub polls: u64,
    pub consecutive_failures: u32,
    /// The gateway answered `health` with `ok: true` at the last poll.
    pub up: bool,
    pub version: Option<String>,
    pub protocol: Option<i64>,
    pub channels: Vec<ChannelState>,
    pub channels_connected: usize,
    /// Methods that failed at the last poll, with the gateway's reason.
    pub method_errors: Vec<String>,
    /// `usage.cost`'s totals over its days.
    pub usage_cost: Option<Value>,
    /// OpenClaw's `sessions.usage` against ours (see [`compare`]).
    pub comparison: Option<Value>,
    /// `cron.list` and `cron.runs`: the scheduled jobs and their runs.
    pub cron: Option<Value>,
    /// `skills.status`, one row a skill.
    pub skills: Option<Value>,
    /// `sessions.list`: the session index (context tokens, compactions).
    pub sessions: Option<Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChannelState {
    pub channel: String,
    pub configured: Option<bool>,
    pub running: Option<bool>,
    pub connected: bool,
}

impl Snapshot {
    fn new(target: Option<&Target>) -> Snapshot {
        Snapshot {
            enabled: target.is_some(),
            url: target.map(|t| t.url.clone()),
            condition: if target.is_some() {
                Condition::Starting
            } else {
                Condition::Disabled
            },
            detail: None,
            fix: None,
            since_ms: None,
            last_poll_ms: None,
            last_ok_ms: None,
            polls: 0,
            consecutive_failures: 0,
            up: false,
            version: None,
            protocol: None,
            channels: Vec::new(),
            channels_connected: 0,
            method_errors: Vec::new(),
            usage_cost: None,
            comparison: None,
            cron: None,
            skills: None,
            sessions: None,
        }
    }

    /// What `/health` shows: the condition and the figures, not the lists.
    pub fn brief(&self) -> Value {
        json!({
            "enabled": self.enabled,
            "url": self.url,
            "condition": self.condition,
            "detail": self.detail,
            "fix": self.fix,
            "since_ms": self.since_ms,
            "last_poll_ms": self.last_poll_ms,
            "last_ok_ms": self.last_ok_ms,
            "up": self.up,
            "version": self.version,
            "protocol": self.protocol,
            "channels_connected": self.channels_connected,
            "channels": self.channels,
            "usage_agree": self.comparison.as_ref().map(|c| c["agree"].clone()),
            "comparison": self.comparison,
        })
    }

    /// The lines `/health` adds to its warnings.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.condition {
            Condition::Ok | Condition::Starting | Condition::NotFound | Condition::Disabled => {}
            c => out.push(format!(
                "openclaw gateway {}: {} ({})",
                c.name(),
                self.detail.as_deref().unwrap_or(""),
                c.fix()
            )),
        }
        if let Some(c) = &self.comparison
            && c["agree"] == false
            && c["settled"] == true
        {
            out.push(format!(
                "openclaw gateway usage differs: OpenClaw's sessions.usage and openclaw-trace differ by {:.1}% in tokens and {:.1}% in cost: {}",
                c["tokens_diff_pct"].as_f64().unwrap_or(0.0),
                c["cost_diff_pct"].as_f64().unwrap_or(0.0),
                c["which_side_counts_what"].as_str().unwrap_or("")
            ));
        }
        out
    }
}

/// The poller's shared state.
pub struct GatewayState {
    snap: Mutex<Snapshot>,
}

impl GatewayState {
    pub fn new(target: Option<&Target>) -> Arc<GatewayState> {
        Arc::new(GatewayState {
            snap: Mutex::new(Snapshot::new(target)),
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snap.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.snap.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn set_condition(&self, c: Condition, detail: Option<String>) {
        let now = now_ns() / 1_000_000;
        self.update(|s| {
            if s.condition != c {
                s.since_ms = Some(now);
                match c {
                    Condition::Ok | Condition::NotFound | Condition::Starting => {
                        tracing::info!(condition = c.name(), "openclaw gateway")
                    }
                    _ => tracing::warn!(
                        condition = c.name(),
                        detail = detail.as_deref().unwrap_or(""),
                        "openclaw gateway"
                    ),
                }
            }
            s.condition = c;
            s.fix = (!c.fix().is_empty()).then(|| c.fix().to_string());
            s.detail = detail;
        });
    }
}

/// Starts the poller (None when the source is off).
pub fn spawn(
    target: Option<Target>,
    cfg: &GatewayConfig,
    state: Arc<GatewayState>,
    reads: Arc<crate::store::ReadPool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let target = target?;
    let cfg = cfg.clone();
    Some(tokio::spawn(async move {
        let mut seen = false;
        loop {
            let failed = match poll(&target, &cfg, &state, &reads).await {
                Ok(()) => {
                    seen = true;
                    false
                }
                Err(e) => {
                    let mut c = classify(&e);
                    if c == Condition::Unreachable && !target.configured && !seen {
                        c = Condition::NotFound;
                    }
                    state.update(|s| {
                        s.up = false;
                        s.consecutive_failures += 1;
                        s.last_poll_ms = Some(now_ns() / 1_000_000);
                        s.polls += 1;
                    });
                    state.set_condition(c, Some(e.to_string()));
                    true
                }
            };
            let n = state.snapshot().consecutive_failures.min(3);
            let wait = if failed {
                cfg.poll_interval * (1u32 << n)
            } else {
                cfg.poll_interval
            };
            tokio::time::sleep(wait).await;
        }
    }))
}

/// The read-only methods asked at each poll, in order, with their parameters (usage over
/// every configured agent, not only the default one).
fn methods() -> [(&'static str, Value); 8] {
    [
        ("health", json!({})),
        ("status", json!({})),
        ("usage.cost", json!({"agentScope": "all"})),
        ("sessions.usage", json!({"agentScope": "all"})),
        ("cron.list", json!({})),
        ("cron.runs", json!({})),
        ("skills.status", json!({})),
        ("sessions.list", json!({})),
    ]
}

/// One poll: connect, ask each method, keep what answered. An error means nothing useful
/// came back (the connect failed); a method that fails is named in `method_errors`.
async fn poll(
    target: &Target,
    cfg: &GatewayConfig,
    state: &GatewayState,
    reads: &Arc<crate::store::ReadPool>,
) -> Result<(), GatewayError> {
    let scopes: Vec<&str> = cfg.scopes.iter().map(String::as_str).collect();
    let mut c =
        GatewayClient::connect_with_scopes(&target.url, &target.token, &scopes, cfg.timeout)
            .await?;
    let version = c.hello["server"]["version"].as_str().map(str::to_string);
    let protocol = c.hello["protocol"].as_i64();
    let mut errors: Vec<(String, GatewayError)> = Vec::new();
    let mut got: Vec<Option<Value>> = Vec::new();
    let methods = methods();
    for (m, params) in &methods {
        match c.call(m, params.clone()).await {
            Ok(v) => got.push(Some(v)),
            Err(e) => {
                let closed = matches!(e, GatewayError::Closed(_) | GatewayError::Io(_));
                errors.push((m.to_string(), e));
                got.push(None);
                if closed {
                    break;
                }
            }
        }
    }
    got.resize(methods.len(), None);
    let mut got = got.into_iter();
    let mut next = || got.next().flatten();
    let (health, status, usage_cost, sessions_usage) = (next(), next(), next(), next());
    let (cron_list, cron_runs, skills, sessions) = (next(), next(), next(), next());
    drop(c);

    let channels = health.as_ref().map(channels_of).unwrap_or_default();
    let comparison = match &sessions_usage {
        Some(su) => {
            let su = su.clone();
            let reads = reads.clone();
            tokio::task::spawn_blocking(move || reads.with(|conn| Ok(compare_with_db(conn, &su))))
                .await
                .ok()
                .and_then(|r| r.ok())
        }
        None => None,
    };
    // The worst condition among the methods that failed.
    let worst = errors
        .iter()
        .map(|(_, e)| classify(e))
        .find(|c| *c != Condition::Error)
        .or_else(|| (!errors.is_empty()).then_some(Condition::Error));
    let method_errors: Vec<String> = errors.iter().map(|(m, e)| format!("{m}: {e}")).collect();
    let now = now_ns() / 1_000_000;
    state.update(|s| {
        s.polls += 1;
        s.last_poll_ms = Some(now);
        s.version = version.clone().or_else(|| {
            status
                .as_ref()
                .and_then(|st| st["runtimeVersion"].as_str().map(str::to_string))
        });
        s.protocol = protocol;
        s.up = health.as_ref().is_some_and(|h| h["ok"] == true);
        s.channels_connected = channels.iter().filter(|c| c.connected).count();
        s.channels = channels;
        s.method_errors = method_errors.clone();
        if let Some(u) = &usage_cost {
            s.usage_cost = Some(
                json!({"updated_ms": u["updatedAt"], "days": u["days"], "totals": u["totals"]}),
            );
        }
        if comparison.is_some() {
            s.comparison = comparison;
        }
        if cron_list.is_some() || cron_runs.is_some() {
            s.cron = Some(cron_view(cron_list.as_ref(), cron_runs.as_ref()));
        }
        if let Some(sk) = &skills {
            s.skills = Some(skills_view(sk));
        }
        if let Some(se) = &sessions {
            s.sessions = Some(sessions_view(se));
        }
        if worst.is_none() {
            s.consecutive_failures = 0;
            s.last_ok_ms = Some(now);
        } else {
            s.consecutive_failures += 1;
        }
    });
    match worst {
        None => state.set_condition(Condition::Ok, None),
        Some(c) => state.set_condition(c, Some(method_errors.join("; "))),
    }
    Ok(())
}

/// `health.channels` (`{<channel>: {configured, running, connected, ...}}`), one row each.
pub fn channels_of(health: &Value) -> Vec<ChannelState> {
    let Some(map) = health["channels"].as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, v)| ChannelState {
            channel: name.clone(),
            configured: v["configured"].as_bool(),
            running: v["running"].as_bool(),
            connected: v["connected"]
                .as_bool()
                .or(v["running"].as_bool())
                .unwrap_or(false),
        })
        .collect()
}

/// `cron.list` and `cron.runs`, trimmed to what the scheduled view shows.
pub fn cron_view(list: Option<&Value>, runs: Option<&Value>) -> Value {
    let jobs: Vec<Value> = list
        .and_then(|l| l["jobs"].as_array())
        .map(|js| {
            js.iter()
                .map(|j| {
                    json!({
                        "id": j["id"], "name": j["name"], "display_name": j["displayName"],
                        "agent_id": j["agentId"].as_str().or(j["effectiveAgentId"].as_str()),
                        "enabled": j["enabled"], "schedule": j["schedule"],
                        "kind": j["payload"]["kind"], "session_target": j["sessionTarget"],
                        "next_run_ms": j["nextRunAtMs"].as_i64().or(j["state"]["nextRunAtMs"].as_i64()),
                        "last_run_ms": j["state"]["lastRunAtMs"], "last_status": j["state"]["lastStatus"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let runs: Vec<Value> = runs
        .and_then(|r| r["entries"].as_array())
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    json!({
                        "job_id": r["jobId"], "job_name": r["jobName"], "run_id": r["runId"],
                        "status": r["status"], "completion_status": r["completionStatus"],
                        "started_ms": r["runAtMs"].as_i64().or(r["startedAtMs"].as_i64()).or(r["ts"].as_i64()),
                        "duration_ms": r["durationMs"], "session_key": r["sessionKey"],
                        "session_id": r["sessionId"], "model": r["model"],
                        "usage": r["usage"], "error": r["error"], "summary": r["summary"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"jobs": jobs, "runs": runs})
}

/// `skills.status`, one row a skill, and counts.
pub fn skills_view(status: &Value) -> Value {
    let rows: Vec<Value> = status["skills"]
        .as_array()
        .map(|ss| {
            ss.iter()
                .map(|s| {
                    let missing: Vec<String> = ["bins", "anyBins", "env", "config", "os"]
                        .iter()
                        .flat_map(|k| {
                            s["missing"][*k]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|v| v.as_str())
                                .map(move |v| format!("{k}:{v}"))
                        })
                        .collect();
                    json!({
                        "name": s["name"], "key": s["skillKey"], "description": s["description"],
                        "source": s["source"], "bundled": s["bundled"], "eligible": s["eligible"],
                        "disabled": s["disabled"], "always": s["always"],
                        "model_visible": s["modelVisible"], "user_invocable": s["userInvocable"],
                        "missing": missing,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Value) -> bool| rows.iter().filter(|r| f(r)).count();
    json!({
        "agent_id": status["agentId"],
        "workspace_dir": status["workspaceDir"],
        "totals": {
            "skills": rows.len(),
            "eligible": count(&|r| r["eligible"] == true),
            "disabled": count(&|r| r["disabled"] == true),
            "missing_requirements": count(&|r| r["missing"].as_array().is_some_and(|m| !m.is_empty())),
        },
        "skills": rows,
    })
}

/// `sessions.list`: the session index, one row a session.
pub fn sessions_view(list: &Value) -> Value {
    let rows: Vec<Value> = list["sessions"]
        .as_array()
        .map(|ss| {
            ss.iter()
                .map(|s| {
                    let ctx = s["contextTokens"].as_i64();
                    let used = s["totalTokens"].as_i64();
                    json!({
                        "key": s["key"], "session_id": s["sessionId"], "agent_id": s["agentId"],
                        "kind": s["kind"], "archived": s["archived"], "status": s["status"],
                        "updated_ms": s["updatedAt"], "model": s["model"],
                        "input_tokens": s["inputTokens"], "output_tokens": s["outputTokens"],
                        "total_tokens": used, "context_tokens": ctx,
                        "context_used_ratio": match (used, ctx) {
                            (Some(u), Some(c)) if c > 0 => json!(u as f64 / c as f64),
                            _ => Value::Null,
                        },
                        // Not in 2026.9.6's index (null there): its compactions come from
                        // the `after_compaction` hook (the context view).
                        "compactions": s["compactionCount"],
                        "estimated_cost_usd": s["estimatedCostUsd"],
                        "spawned_by": s["spawnedBy"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "count": list["count"], "total_count": list["totalCount"],
        "default_context_tokens": list["defaults"]["contextTokens"],
        "compactions": rows.iter().filter_map(|r| r["compactions"].as_i64()).reduce(|a, b| a + b),
        "sessions": rows,
    })
}

/// OpenClaw's `sessions.usage` against this database over the same days, with what each
/// side counts that the other does not, from our runs: sessions OpenClaw's report no
/// longer lists (archived `.reset`/`.deleted`), turns that ended silently (`NO_REPLY`,
/// `HEARTBEAT_OK`) and heartbeat turns.
pub fn compare_with_db(conn: &rusqlite::Connection, su: &Value) -> Value {
    let day = |k: &str| {
        su[k]
            .as_str()
            .and_then(|d| crate::util::time::parse_timestamp_str(&format!("{d}T00:00:00Z")))
    };
    let (Some(from), Some(to)) = (day("startDate"), day("endDate")) else {
        return json!({"agree": Value::Null, "error": "sessions.usage has no startDate/endDate"});
    };
    let to = to + 86_400 * 1_000_000_000;
    let q = crate::analytics::usage::UsageQuery {
        from_ns: Some(from),
        to_ns: Some(to),
        skip_percentiles: true,
        ..Default::default()
    };
    let ours = match crate::analytics::usage::query(conn, &q) {
        Ok(o) => o.totals,
        Err(e) => return json!({"agree": Value::Null, "error": e.to_string()}),
    };
    let mut cmp = super::gateway::compare(su, &ours);
    let listed: HashSet<&str> = su["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["sessionId"].as_str())
        .collect();
    let runs = crate::analytics::openclaw::runs(
        conn,
        &crate::analytics::openclaw::Window {
            from_ns: from,
            to_ns: to,
            ..Default::default()
        },
    )
    .unwrap_or_default();
    #[derive(Default, Serialize)]
    struct Part {
        runs: i64,
        total_tokens: i64,
        cost_usd: f64,
    }
    let (mut unlisted, mut silent, mut heartbeats) =
        (Part::default(), Part::default(), Part::default());
    let mut unlisted_sessions = HashSet::new();
    let mut unlisted_keys: Vec<String> = Vec::new();
    for r in &runs {
        let add = |p: &mut Part| {
            p.runs += 1;
            p.total_tokens += r.total_tokens;
            p.cost_usd += r.cost_usd.unwrap_or(0.0);
        };
        if let Some(sid) = r.session_id.as_deref()
            && !listed.is_empty()
            && !listed.contains(sid)
        {
            add(&mut unlisted);
            if unlisted_sessions.insert(sid.to_string()) {
                unlisted_keys.push(r.session_key.clone().unwrap_or_else(|| sid.to_string()));
            }
        }
        if r.silent_reply.is_some() {
            add(&mut silent);
        }
        if r.trigger.as_deref() == Some("heartbeat") {
            add(&mut heartbeats);
        }
    }
    // Model calls no run contains: a compaction summarizes a session with one, and
    // OpenClaw's transcripts, which its usage reads, do not record it.
    let outside_runs = Part {
        runs: 0,
        total_tokens: (ours.total_tokens - runs.iter().map(|r| r.total_tokens).sum::<i64>()).max(0),
        cost_usd: (ours.cost_usd.unwrap_or(0.0)
            - runs.iter().filter_map(|r| r.cost_usd).sum::<f64>())
        .max(0.0),
    };
    let theirs = cmp["openclaw"]["total_tokens"].as_f64().unwrap_or(0.0);
    let our_tokens = ours.total_tokens as f64;
    let mut why = Vec::new();
    if unlisted.runs > 0 {
        why.push(format!(
            "openclaw-trace counts {} tokens (${:.6}) of {} runs in {} sessions OpenClaw's sessions.usage does not list, so leaves out of its totals (archived .reset/.deleted sessions, and in 2026.9.6 cron, webhook and sub-agent sessions: {})",
            unlisted.total_tokens,
            unlisted.cost_usd,
            unlisted.runs,
            unlisted_sessions.len(),
            unlisted_keys.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if outside_runs.total_tokens > 0 {
        why.push(format!(
            "openclaw-trace counts {} tokens (${:.6}) of model calls outside any run (a session's compaction is one), which OpenClaw's transcripts do not record",
            outside_runs.total_tokens, outside_runs.cost_usd
        ));
    }
    if silent.runs > 0 {
        why.push(format!(
            "{} runs ended silently (NO_REPLY/HEARTBEAT_OK; {} tokens, ${:.6}): openclaw-trace counts them, OpenClaw's usage may not",
            silent.runs, silent.total_tokens, silent.cost_usd
        ));
    }
    if heartbeats.runs > 0 {
        why.push(format!(
            "{} heartbeat runs ({} tokens, ${:.6}): OpenClaw may cut heartbeat turns from its transcripts",
            heartbeats.runs, heartbeats.total_tokens, heartbeats.cost_usd
        ));
    }
    if theirs > our_tokens {
        why.push(format!(
            "OpenClaw counts {} tokens more: usage from before openclaw-trace ran or beyond its retention, or calls neither the plugin nor the transcripts reader saw (OCT_OPENCLAW_STATE_DIR)",
            theirs - our_tokens
        ));
    }
    let status = su["cacheStatus"]["status"].as_str().unwrap_or("");
    cmp["openclaw_cache_status"] = json!(status);
    // OpenClaw keeps a sessions.usage answer for 30 s (2026.9.6) and says when it was
    // computed (`updatedAt`): an answer older than our newest call cannot count it.
    let computed_ns = su["updatedAt"]
        .as_i64()
        .map(|ms| ms.saturating_mul(1_000_000));
    let newest_call_ns: Option<i64> = conn
        .query_row(
            "SELECT max(COALESCE(end_ns, start_ns)) FROM spans
             WHERE kind IN ('llm_call', 'embedding') AND start_ns >= ?1 AND start_ns < ?2",
            [from, to],
            |r| r.get(0),
        )
        .unwrap_or(None);
    let behind = matches!((computed_ns, newest_call_ns), (Some(c), Some(n)) if c < n);
    cmp["openclaw_computed_ms"] = json!(computed_ns.map(|c| c / 1_000_000));
    cmp["openclaw_trace_newest_call_ms"] = json!(newest_call_ns.map(|n| n / 1_000_000));
    // OpenClaw's usage cache still reading transcripts, or an answer computed before our
    // newest call: its totals lag.
    cmp["settled"] = json!(status != "refreshing" && !behind);
    if behind {
        why.push(
            "OpenClaw's figures were computed before openclaw-trace's newest call (it keeps a sessions.usage answer 30 s): they lag until its next answer"
                .to_string(),
        );
    }
    cmp["not_in_openclaw"] = json!({"sessions": unlisted_sessions.len(), "session_keys": unlisted_keys, "runs": unlisted.runs,
        "total_tokens": unlisted.total_tokens, "cost_usd": unlisted.cost_usd});
    cmp["outside_runs"] =
        json!({"total_tokens": outside_runs.total_tokens, "cost_usd": outside_runs.cost_usd});
    cmp["silent_replies"] = json!(silent);
    cmp["heartbeats"] = json!(heartbeats);
    cmp["which_side_counts_what"] = if cmp["agree"] == true {
        Value::Null
    } else if why.is_empty() {
        cmp["why_they_may_differ"].clone()
    } else {
        json!(why.join("; "))
    };
    cmp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_computed_before_our_newest_call_has_not_settled() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_writer(&dir.path().join("t.db")).unwrap();
        let day_ns = 86_400_000_000_000i64;
        let now = now_ns();
        let midnight = now - now.rem_euclid(day_ns);
        let call_end = midnight + 2_000_000_000;
        conn.execute(
            "INSERT INTO spans (trace_id, span_id, name, kind, start_ns, end_ns, status,
                 source, received_ns)
             VALUES (x'0102030405060708090a0b0c0d0e0f10', x'0102030405060708', 'chat m',
                 'llm_call', ?1, ?2, 'ok', 'test', ?2)",
            [midnight + 1_000_000_000, call_end],
        )
        .unwrap();
        let date = time::OffsetDateTime::from_unix_timestamp_nanos(midnight as i128)
            .unwrap()
            .date()
            .to_string();
        let answer = |computed_ms: i64| {
            json!({"startDate": date, "endDate": date, "updatedAt": computed_ms,
                "sessions": [], "totals": {"totalTokens": 50, "totalCost": 0.0},
                "cacheStatus": {"status": "fresh"}})
        };
        // Kept from before the call (OpenClaw holds an answer 30 s): not settled, and the
        // difference (its 50 tokens, none in our rollups) put down to that.
        let before = compare_with_db(&conn, &answer(call_end / 1_000_000 - 1_000));
        assert_eq!(before["settled"], false, "{before:#}");
        assert!(
            before["which_side_counts_what"]
                .as_str()
                .is_some_and(|w| w.contains("computed before")),
            "{before:#}"
        );
        let after = compare_with_db(&conn, &answer(call_end / 1_000_000 + 1_000));
        assert_eq!(after["settled"], true, "{after:#}");
    }

    #[test]
    fn conditions_from_the_real_gateways_errors() {
        let refused = |code: &str| GatewayError::Refused {
            method: "m".into(),
            code: code.into(),
            message: "x".into(),
        };
        // What 2026.9.6 answers (details.code): a scope-less connection, a wrong token,
        // a client asking for protocol 5 to 6.
        assert_eq!(classify(&refused("MISSING_SCOPE")), Condition::ScopeMissing);
        assert_eq!(
            classify(&refused("AUTH_TOKEN_MISMATCH")),
            Condition::AuthRefused
        );
        assert_eq!(
            classify(&refused("PROTOCOL_MISMATCH")),
            Condition::ProtocolMismatch
        );
        assert_eq!(
            classify(&GatewayError::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused
            ))),
            Condition::Unreachable
        );
        assert_eq!(classify(&refused("UNAVAILABLE")), Condition::Error);
    }

    #[test]
    fn views_of_the_gateways_answers() {
        let skills = skills_view(&json!({"agentId": "main", "skills": [
            {"name": "1password", "skillKey": "1password", "eligible": false, "disabled": false,
             "missing": {"bins": ["op"], "env": []}},
            {"name": "weather", "eligible": true, "disabled": false, "missing": {}}]}));
        assert_eq!(skills["totals"]["skills"], 2);
        assert_eq!(skills["totals"]["eligible"], 1);
        assert_eq!(skills["totals"]["missing_requirements"], 1);
        assert_eq!(skills["skills"][0]["missing"][0], "bins:op");
        let s = sessions_view(&json!({"count": 1, "sessions": [{"key": "agent:main:main",
            "sessionId": "s1", "totalTokens": 64000, "contextTokens": 128000, "compactionCount": 2}]}));
        assert_eq!(s["compactions"], 2);
        assert_eq!(s["sessions"][0]["context_used_ratio"], 0.5);
        let ch =
            channels_of(&json!({"channels": {"telegram": {"configured": true, "running": true}}}));
        assert!(ch[0].connected);
        let cron = cron_view(
            Some(
                &json!({"jobs": [{"id": "j1", "name": "daily", "payload": {"kind": "agentTurn"},
                "state": {"nextRunAtMs": 5}}]}),
            ),
            Some(&json!({"entries": [{"jobId": "j1", "status": "ok", "runAtMs": 3}]})),
        );
        assert_eq!(cron["jobs"][0]["next_run_ms"], 5);
        assert_eq!(cron["runs"][0]["started_ms"], 3);
    }

    #[test]
    fn target_from_settings() {
        let off = GatewayConfig {
            url: Some("off".into()),
            ..Default::default()
        };
        let tc = super::super::transcripts::TranscriptsConfig {
            state_dir: Some("off".into()),
            ..Default::default()
        };
        assert!(target(&off, &tc).is_none());
        let set = GatewayConfig {
            url: Some("ws://127.0.0.1:1".into()),
            token: Some("t".into()),
            ..Default::default()
        };
        let t = target(&set, &tc).unwrap();
        assert!(t.configured);
        assert_eq!(t.token, "t");
    }
}
