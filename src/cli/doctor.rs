//! `openclaw-trace doctor`: one screen of checks of this machine's setup, each ok,
//! warning or failed with the fix in one line; exit 1 when any failed.
//!
//! Every check looks at the real thing: the database directory is written to, the port
//! is bound, the endpoints are resolved, connected to and sent an empty batch with the
//! configured credentials, the OpenClaw files are opened.

use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::analytics::pricing::PriceTable;
use crate::config::{Config, ConfigError};
use crate::sinks::Sink;
use crate::sinks::delivery::Attempt;
use crate::sinks::otlp_export::{self, Resolved, Transport};
use crate::sinks::push::PushSink;
use crate::sources::host::disk;
use crate::sources::{tail, transcripts};

/// A price table older than this gets a warning.
pub const PRICE_TABLE_MAX_AGE_DAYS: i64 = 90;
/// Local clock against a remote's `Date`: beyond these, a warning, then a failure.
const CLOCK_WARN: Duration = Duration::from_secs(60);
const CLOCK_FAIL: Duration = Duration::from_secs(300);

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Print the checks as JSON
    #[arg(long)]
    pub json: bool,
    /// Time allowed for each network check (name lookup, connect, request)
    #[arg(long, default_value = "3s", value_parser = crate::settings::parse_duration)]
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Failed,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    /// What to do, in one line (warnings and failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Warning,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Failed,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Runs the checks, prints them and says how to exit.
pub fn run(cfg: Result<Config, ConfigError>, args: &DoctorArgs) -> ExitCode {
    let checks = checks(cfg, args.timeout);
    let failed = checks.iter().any(|c| c.level == Level::Failed);
    if args.json {
        let count = |l| checks.iter().filter(|c| c.level == l).count();
        let out = serde_json::json!({
            "ok": !failed,
            "counts": {"ok": count(Level::Ok), "warning": count(Level::Warning), "failed": count(Level::Failed)},
            "checks": checks,
        });
        println!("{out:#}");
    } else {
        print!("{}", render(&checks));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The checks as a screen of text.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warning => "WARN",
            Level::Failed => "FAIL",
        };
        out.push_str(&format!("{tag}  {:<16} {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:<16} fix: {fix}\n", ""));
        }
    }
    let n = |l| checks.iter().filter(|c| c.level == l).count();
    out.push_str(&format!(
        "{} ok, {} warning(s), {} failed\n",
        n(Level::Ok),
        n(Level::Warning),
        n(Level::Failed)
    ));
    out
}

/// Every check, in screen order.
pub fn checks(cfg: Result<Config, ConfigError>, timeout: Duration) -> Vec<Check> {
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            return vec![fail(
                "settings",
                e.to_string(),
                "correct that setting (`openclaw-trace --help` lists every setting and its form)",
            )];
        }
    };
    let mut out = vec![ok("settings", "valid")];
    out.push(database(&cfg));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let mut remote_dates = Vec::new();
    match rt {
        Ok(rt) => {
            let port_check = rt.block_on(port(&cfg, timeout));
            let ours = port_check.detail.contains("held by this daemon");
            out.push(port_check);
            out.push(otlp_ports(&cfg, ours));
            out.push(exposure(&cfg));
            out.extend(openclaw(&cfg));
            out.push(rt.block_on(gateway(&cfg, timeout)));
            let (c, d) = rt.block_on(push(&cfg, timeout));
            out.push(c);
            remote_dates.extend(d);
            let (c, d) = rt.block_on(export(&cfg, timeout));
            out.push(c);
            remote_dates.extend(d);
            // A name lookup that timed out may still hold a thread: do not wait for it.
            rt.shutdown_timeout(Duration::from_millis(100));
        }
        Err(e) => out.push(fail(
            "endpoints",
            format!("cannot start a runtime: {e}"),
            "report this",
        )),
    }
    let (prices_check, table) = price_table(&cfg);
    out.push(clock(table.as_ref(), &remote_dates));
    out.push(prices_check);
    out
}

// ---------------------------------------------------------------- database

fn human(bytes: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Creates and removes a file in `dir`: the real test of writability (root included).
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".openclaw-trace-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// The closest existing ancestor of `p` (where a missing directory would be created).
fn existing_ancestor(p: &Path) -> Option<&Path> {
    p.ancestors().find(|a| a.exists())
}

fn database(cfg: &Config) -> Check {
    const NAME: &str = "database";
    let path = cfg.store.db_path();
    let shown = path.display().to_string();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fix_path = "point OCT_DB_PATH at a file in a writable directory (or fix that directory's permissions or mount)";
    let Some(existing) = existing_ancestor(dir) else {
        return fail(
            NAME,
            format!("{shown}: no part of the path exists"),
            fix_path,
        );
    };
    if !existing.is_dir() {
        return fail(
            NAME,
            format!("{shown}: {} is not a directory", existing.display()),
            fix_path,
        );
    }
    if let Err(e) = probe_write(existing) {
        return fail(
            NAME,
            format!("{shown}: cannot write in {}: {e}", existing.display()),
            fix_path,
        );
    }
    if path.exists()
        && let Err(e) = std::fs::OpenOptions::new().append(true).open(&path)
    {
        return fail(
            NAME,
            format!("{shown}: cannot open for writing: {e}"),
            fix_path,
        );
    }
    let canonical = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    let mount = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|m| disk::mount_of(&m, &canonical));
    let volume = mount.as_ref().map_or_else(
        || "an unknown volume".to_string(),
        |m| format!("{} ({}, {})", m.mountpoint, m.fs_type, m.device),
    );
    let vol = match disk::statvfs(&canonical) {
        Ok(v) => v,
        Err(e) => {
            return warn(
                NAME,
                format!("{shown}: writable, on {volume}; free space unknown: {e}"),
                "check the volume with `df`",
            );
        }
    };
    let cap = cfg.store.cleanup_db_threshold_bytes;
    let detail = format!(
        "{shown}: writable, on {volume}, {} free of {}; size cap {}",
        human(vol.avail),
        human(vol.total),
        human(cap)
    );
    if vol.avail == 0 {
        return fail(
            NAME,
            detail,
            "free space on that volume, or move OCT_DB_PATH",
        );
    }
    if vol.avail < cap {
        return warn(
            NAME,
            detail,
            "free space on that volume, or lower OCT_CLEANUP_DB_THRESHOLD_BYTES below the free space",
        );
    }
    if vol.used_pct() >= cfg.store.cleanup_disk_threshold {
        return warn(
            NAME,
            format!(
                "{detail}; the volume is {:.0}% used, over OCT_CLEANUP_DISK_THRESHOLD={}%, so retention deletes old data early",
                vol.used_pct(),
                cfg.store.cleanup_disk_threshold
            ),
            "free space on that volume, or raise OCT_CLEANUP_DISK_THRESHOLD",
        );
    }
    ok(NAME, detail)
}

// ---------------------------------------------------------------- port and bind

async fn http_get(url: &str, token: Option<&str>, timeout: Duration) -> Option<Value> {
    let client = reqwest::Client::builder().timeout(timeout).build().ok()?;
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let body = req.send().await.ok()?.bytes().await.ok()?;
    serde_json::from_slice(&body).ok()
}

async fn port(cfg: &Config, timeout: Duration) -> Check {
    const NAME: &str = "port";
    let (bind, port) = (cfg.api.bind.as_str(), cfg.api.port);
    if port == 0 {
        return ok(NAME, format!("{bind}:0: a free port is picked at start"));
    }
    let addr = format!("{bind}:{port}");
    let Some(sa) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return fail(
            NAME,
            format!("OCT_BIND={bind} is not an address of this machine"),
            "set OCT_BIND to an IP address (127.0.0.1, or 0.0.0.0 for every interface)",
        );
    };
    match TcpListener::bind(sa) {
        Ok(l) => {
            drop(l);
            ok(NAME, format!("{addr} is free"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let host = match sa.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
                IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            };
            let url = format!("http://{host}:{port}/health");
            let health = http_get(&url, cfg.api.auth_token.as_deref(), timeout).await;
            let ours = cfg.store.db_path();
            match health {
                Some(h) if h.get("db_status").is_some() && h.get("writer").is_some() => {
                    let theirs = h["db_path"].as_str().unwrap_or_default();
                    let version = h["version"].as_str().unwrap_or("?");
                    if Path::new(theirs) == ours {
                        ok(
                            NAME,
                            format!(
                                "{addr} is held by this daemon (openclaw-trace {version}, running)"
                            ),
                        )
                    } else {
                        warn(
                            NAME,
                            format!(
                                "{addr} is held by another openclaw-trace (database {theirs}, not {})",
                                ours.display()
                            ),
                            "give this one the same OCT_DB_PATH, or another OCT_PORT",
                        )
                    }
                }
                _ => fail(
                    NAME,
                    format!("{addr} is taken by another program"),
                    format!("stop it (`ss -ltnp 'sport = :{port}'` names it), or set OCT_PORT"),
                ),
            }
        }
        Err(e) => fail(
            NAME,
            format!("cannot listen on {addr}: {e}"),
            "set OCT_BIND to an address of this machine, or OCT_PORT to a port you may use",
        ),
    }
}

/// The OTLP receiver's own listeners: a taken default port is skipped by the daemon
/// (warning), a taken port that was set stops it (failed).
fn otlp_ports(cfg: &Config, daemon_running: bool) -> Check {
    const NAME: &str = "otlp ports";
    let o = &cfg.otlp;
    let listeners = [
        ("OCT_OTLP_HTTP_ADDR", o.http_addr, o.http_addr_explicit),
        ("OCT_OTLP_GRPC_ADDR", o.grpc_addr, o.grpc_addr_explicit),
    ];
    let mut free = Vec::new();
    let mut worst: Option<Check> = None;
    for (var, addr, explicit) in listeners {
        let Some(addr) = addr else { continue };
        if addr.port() == 0 {
            free.push(format!("{addr}"));
            continue;
        }
        match TcpListener::bind(addr) {
            Ok(_) => free.push(format!("{addr}")),
            Err(_) if daemon_running => free.push(format!("{addr} (this daemon's)")),
            Err(e) if explicit => {
                worst = Some(fail(
                    NAME,
                    format!("{var}={addr} cannot be bound ({e}): the daemon will not start"),
                    format!("stop what holds {addr}, or set {var} to another address (or off)"),
                ));
            }
            Err(e) => {
                if worst.is_none() {
                    worst = Some(warn(
                        NAME,
                        format!(
                            "{addr} is taken ({e}; another collector?): the daemon runs without that listener"
                        ),
                        format!("set {var} to a free address, or to off"),
                    ));
                }
            }
        }
    }
    if let Some(c) = worst {
        return c;
    }
    if free.is_empty() {
        ok(NAME, "off")
    } else {
        ok(NAME, format!("{} free", free.join(", ")))
    }
}

/// True for loopback addresses and `localhost`.
fn is_loopback(bind: &str) -> bool {
    let b = bind.trim().trim_start_matches('[').trim_end_matches(']');
    b.eq_ignore_ascii_case("localhost") || b.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn exposure(cfg: &Config) -> Check {
    const NAME: &str = "bind and token";
    let bind = cfg.api.bind.as_str();
    let token = cfg.api.auth_token.as_deref().is_some_and(|t| !t.is_empty());
    match (is_loopback(bind), token) {
        (true, _) => ok(
            NAME,
            format!(
                "{bind}: loopback only{}",
                if token { ", token set" } else { "" }
            ),
        ),
        (false, true) => ok(
            NAME,
            format!("{bind}: reachable from the network, token required"),
        ),
        (false, false) => fail(
            NAME,
            format!(
                "{bind}: the API (prompts, replies, costs) is open to the network without a token"
            ),
            "set OCT_AUTH_TOKEN, or OCT_BIND=127.0.0.1",
        ),
    }
}

// ---------------------------------------------------------------- OpenClaw

/// Where OpenClaw keeps its config: `$OPENCLAW_CONFIG_PATH`, else `<state>/openclaw.json`.
fn openclaw_config_path(state: Option<&Path>) -> Option<PathBuf> {
    std::env::var_os("OPENCLAW_CONFIG_PATH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| state.map(|s| s.join("openclaw.json")))
}

fn openclaw(cfg: &Config) -> Vec<Check> {
    let state = transcripts::state_dir(&cfg.transcripts);
    let mut out = Vec::new();
    let config_path = openclaw_config_path(state.as_deref());
    let config: Option<Value> = match &config_path {
        None => {
            out.push(warn(
                "openclaw",
                "no OpenClaw state directory (HOME unset, OCT_OPENCLAW_STATE_DIR off)",
                "set OCT_OPENCLAW_STATE_DIR to OpenClaw's state directory",
            ));
            None
        }
        Some(p) if !p.exists() => {
            out.push(warn(
                "openclaw",
                format!("no OpenClaw config at {}", p.display()),
                "ignore this without OpenClaw; else set OCT_OPENCLAW_STATE_DIR (or OPENCLAW_CONFIG_PATH) to its location",
            ));
            None
        }
        Some(p) => match std::fs::read_to_string(p) {
            Err(e) => {
                out.push(fail(
                    "openclaw",
                    format!("{}: cannot read: {e}", p.display()),
                    "let openclaw-trace read OpenClaw's config (permissions), or point OPENCLAW_CONFIG_PATH at it",
                ));
                None
            }
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(v) => {
                    out.push(ok("openclaw", format!("config {}", p.display())));
                    Some(v)
                }
                Err(e) => {
                    out.push(warn(
                        "openclaw",
                        format!(
                            "{}: not plain JSON ({e}); the plugin check is skipped",
                            p.display()
                        ),
                        "check the plugin by hand: plugins.entries.openclaw-trace.enabled",
                    ));
                    None
                }
            },
        },
    };
    if let Some(c) = &config {
        out.push(plugin(cfg, c, state.as_deref()));
    }
    out.push(gateway_log(cfg));
    out.push(transcripts_check(state.as_deref(), config.is_some()));
    out
}

/// The OpenClaw gateway source: the running daemon's view of it (its condition, and
/// OpenClaw's own sessions.usage against ours), else the gateway asked directly and its
/// totals compared with this database.
async fn gateway(cfg: &Config, timeout: Duration) -> Check {
    use crate::sources::openclaw_gateway::{self as og, Condition};
    const NAME: &str = "openclaw gateway";
    let Some(t) = og::target(&cfg.openclaw_gateway, &cfg.transcripts) else {
        return ok(NAME, "off (OCT_OPENCLAW_GATEWAY_URL=off)");
    };
    let health = http_get(
        &format!("{}/health", cfg.api.local_url()),
        cfg.api.auth_token.as_deref(),
        timeout,
    )
    .await;
    let mut url = t.url.clone();
    let (condition, detail, version, comparison) = match health
        .as_ref()
        .map(|h| &h["openclaw_gateway"])
        .filter(|g| g.is_object() && g["condition"] != "starting")
    {
        Some(g) => {
            if let Some(u) = g["url"].as_str() {
                url = u.to_string();
            }
            (
                g["condition"].as_str().unwrap_or("error").to_string(),
                g["detail"].as_str().unwrap_or("").to_string(),
                g["version"].as_str().unwrap_or("?").to_string(),
                g["comparison"].clone(),
            )
        }
        None => {
            let direct = async {
                let mut c =
                    crate::sources::gateway::GatewayClient::connect(&t.url, &t.token, timeout)
                        .await?;
                let su = c.call("sessions.usage", serde_json::json!({})).await?;
                Ok::<_, crate::sources::gateway::GatewayError>((c.hello.clone(), su))
            };
            match direct.await {
                Err(e) => {
                    let mut c = og::classify(&e);
                    if c == Condition::Unreachable && !t.configured {
                        c = Condition::NotFound;
                    }
                    (c.name().to_string(), e.to_string(), "?".into(), Value::Null)
                }
                Ok((hello, su)) => {
                    let cmp = crate::cli::traces::reader(cfg)
                        .ok()
                        .map(|conn| og::compare_with_db(&conn, &su))
                        .unwrap_or(Value::Null);
                    (
                        "ok".into(),
                        String::new(),
                        hello["server"]["version"]
                            .as_str()
                            .unwrap_or("?")
                            .to_string(),
                        cmp,
                    )
                }
            }
        }
    };
    match condition.as_str() {
        "ok" => {
            if comparison["agree"] == false {
                warn(
                    NAME,
                    format!(
                        "{} (OpenClaw {version}) up; its sessions.usage and openclaw-trace differ by {:.1}% in tokens, {:.1}% in cost: {}",
                        url,
                        comparison["tokens_diff_pct"].as_f64().unwrap_or(0.0),
                        comparison["cost_diff_pct"].as_f64().unwrap_or(0.0),
                        comparison["which_side_counts_what"].as_str().unwrap_or("")
                    ),
                    "nothing to fix when the difference is named above; else check that the plugin and the transcripts reader both run",
                )
            } else {
                ok(
                    NAME,
                    format!(
                        "{} (OpenClaw {version}) up{}",
                        url,
                        if comparison["agree"] == true {
                            "; its sessions.usage agrees with openclaw-trace within 1 %"
                        } else {
                            ""
                        }
                    ),
                )
            }
        }
        "not_found" | "disabled" => ok(NAME, format!("no gateway at {} (none configured)", url)),
        c => warn(
            NAME,
            format!("{} {c}: {detail}", url),
            match c {
                "unreachable" => {
                    "start the gateway, or set OCT_OPENCLAW_GATEWAY_URL (off disables this source)"
                }
                "auth_refused" => {
                    "set OCT_OPENCLAW_GATEWAY_TOKEN to the gateway's gateway.auth.token"
                }
                "scope_missing" => {
                    "give the connection operator.read (OCT_OPENCLAW_GATEWAY_SCOPES, or the token's scopes)"
                }
                "protocol_mismatch" => {
                    "upgrade OpenClaw (this client speaks gateway protocol 3 to 4)"
                }
                _ => "see the gateway's log",
            },
        ),
    }
}

/// Whether `dir` holds the openclaw-trace plugin (its manifest names it).
fn holds_plugin(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("openclaw.plugin.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|m| m["id"] == "openclaw-trace")
}

fn plugin(cfg: &Config, c: &Value, state: Option<&Path>) -> Check {
    const NAME: &str = "openclaw plugin";
    let entry = &c["plugins"]["entries"]["openclaw-trace"];
    let loaded_from = c["plugins"]["load"]["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(PathBuf::from)
        .chain(state.map(|s| s.join("extensions").join("openclaw-trace")))
        .find(|d| holds_plugin(d));
    let Some(dir) = loaded_from else {
        return fail(
            NAME,
            "not installed: no plugins.load.paths entry or extensions/openclaw-trace holds it",
            "install it: see README, \"The plugin\" (plugins.load.paths + plugins.entries.openclaw-trace)",
        );
    };
    if entry["enabled"] != Value::Bool(true) {
        return fail(
            NAME,
            format!("installed ({}) but not enabled", dir.display()),
            "set plugins.entries.openclaw-trace.enabled to true in OpenClaw's config and restart the gateway",
        );
    }
    let pc = &entry["config"];
    let url = pc["url"].as_str().unwrap_or("http://127.0.0.1:9090");
    let port_ok = cfg.api.port == 0
        || url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            == Some(cfg.api.port);
    let needs_token = cfg.api.auth_token.as_deref().is_some_and(|t| !t.is_empty());
    let token_ok = !needs_token || pc["token"].as_str() == cfg.api.auth_token.as_deref();
    if !token_ok {
        return fail(
            NAME,
            format!(
                "enabled, sends to {url}, but without this daemon's OCT_AUTH_TOKEN (its events get 401)"
            ),
            "set plugins.entries.openclaw-trace.config.token to OCT_AUTH_TOKEN's value",
        );
    }
    if !port_ok {
        return warn(
            NAME,
            format!("enabled, but it sends to {url}, not port {}", cfg.api.port),
            format!(
                "set plugins.entries.openclaw-trace.config.url to http://127.0.0.1:{}",
                cfg.api.port
            ),
        );
    }
    if c["diagnostics"]["enabled"] != Value::Bool(true) {
        return warn(
            NAME,
            format!("enabled, sends to {url}; diagnostics off (no usage or cost events)"),
            "set diagnostics.enabled to true in OpenClaw's config",
        );
    }
    ok(
        NAME,
        format!("installed ({}), enabled, sends to {url}", dir.display()),
    )
}

fn gateway_log(cfg: &Config) -> Check {
    const NAME: &str = "gateway log";
    let Some(spec) = tail::log_spec(&cfg.tail) else {
        return ok(NAME, "off (OCT_LOG_PATH=off)");
    };
    let spec_path = Path::new(&spec);
    let glob = spec_path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains(['*', '?']));
    let files = if glob {
        tail::list_files(&spec)
    } else if spec_path.exists() {
        vec![spec_path.to_path_buf()]
    } else {
        Vec::new()
    };
    let Some(newest) = files.last() else {
        return warn(
            NAME,
            format!("nothing matches {spec} yet"),
            "ignore until the gateway has logged; else set OCT_LOG_PATH to its log file",
        );
    };
    let mut buf = [0u8; 1];
    match std::fs::File::open(newest).and_then(|mut f| std::io::Read::read(&mut f, &mut buf)) {
        Ok(_) => ok(
            NAME,
            format!("{} readable ({} file(s))", newest.display(), files.len()),
        ),
        Err(e) => fail(
            NAME,
            format!("{}: cannot read: {e}", newest.display()),
            "let openclaw-trace read the gateway log (permissions), or set OCT_LOG_PATH to the log file",
        ),
    }
}

fn transcripts_check(state: Option<&Path>, openclaw_found: bool) -> Check {
    const NAME: &str = "transcripts";
    let Some(state) = state else {
        return ok(NAME, "off");
    };
    let agents = state.join("agents");
    if !state.exists() || (!agents.exists() && !openclaw_found) {
        return warn(
            NAME,
            format!("{} does not exist", agents.display()),
            "ignore this without OpenClaw; else set OCT_OPENCLAW_STATE_DIR",
        );
    }
    if !agents.exists() {
        return ok(NAME, format!("{}: no agent has run yet", agents.display()));
    }
    let entries = match std::fs::read_dir(&agents) {
        Ok(e) => e,
        Err(e) => {
            return fail(
                NAME,
                format!("{}: cannot read: {e}", agents.display()),
                "let openclaw-trace read OpenClaw's state directory, or set OCT_OPENCLAW_STATE_DIR",
            );
        }
    };
    let (mut readable, mut errors) = (0usize, Vec::new());
    for agent in entries.filter_map(Result::ok) {
        let db = agent.path().join("agent").join("openclaw-agent.sqlite");
        let sessions = agent.path().join("sessions");
        if db.exists() {
            match std::fs::File::open(&db) {
                Ok(_) => readable += 1,
                Err(e) => errors.push(format!("{}: {e}", db.display())),
            }
        }
        if sessions.exists() {
            match std::fs::read_dir(&sessions) {
                Ok(_) => readable += 1,
                Err(e) => errors.push(format!("{}: {e}", sessions.display())),
            }
        }
    }
    if let Some(first) = errors.first() {
        return fail(
            NAME,
            format!("cannot read {first}"),
            "let openclaw-trace read OpenClaw's state directory (same user, or group read)",
        );
    }
    ok(
        NAME,
        format!(
            "{}: {readable} transcript store(s) readable",
            agents.display()
        ),
    )
}

// ---------------------------------------------------------------- endpoints

/// Host and port of a URL (default ports by scheme).
fn host_port(url: &str) -> Option<(String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    Some((u.host_str()?.to_string(), u.port_or_known_default()?))
}

/// Resolves and connects; a failure is the check's detail.
async fn reach(url: &str, timeout: Duration) -> Result<SocketAddr, String> {
    let (host, port) = host_port(url).ok_or_else(|| "not a URL with a host".to_string())?;
    let lookup = tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)));
    let addrs: Vec<SocketAddr> = match lookup.await {
        Err(_) => return Err(format!("{host} does not resolve within {timeout:?}")),
        Ok(Err(e)) => return Err(format!("{host} does not resolve: {e}")),
        Ok(Ok(a)) => a.collect(),
    };
    let mut last = format!("{host} has no address");
    for a in addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(_)) => return Ok(a),
            Ok(Err(e)) => last = format!("{a}: {e}"),
            Err(_) => last = format!("{a}: no answer within {timeout:?}"),
        }
    }
    Err(last)
}

/// What an empty batch sent with the configured credentials says about an endpoint.
fn judge(name: &'static str, target: &str, at: SocketAddr, a: Attempt, creds: &str) -> Check {
    // HTTP 401, 403, 407; gRPC UNAUTHENTICATED (16), PERMISSION_DENIED (7).
    let refused_creds = |status: u16, reason: &str| {
        matches!(status, 401 | 403 | 407)
            || (reason.starts_with("gRPC") && matches!(status, 7 | 16))
    };
    match a {
        Attempt::Delivered => ok(
            name,
            format!("{target} ({at}) accepts an empty batch with the configured credentials"),
        ),
        Attempt::Refused { status, reason } if refused_creds(status, &reason) => fail(
            name,
            format!("{target}: credentials refused ({status}: {reason})"),
            format!("check {creds}"),
        ),
        Attempt::Refused { status, reason } => fail(
            name,
            format!("{target}: refuses everything ({status}: {reason})"),
            "check the endpoint URL (path included)",
        ),
        Attempt::Reject { status, reason } => warn(
            name,
            format!("{target}: reachable, but answered {status} to an empty batch ({reason})"),
            "check that the endpoint speaks this format",
        ),
        Attempt::Retry { reason, .. } => warn(
            name,
            format!("{target}: reachable, but not accepting now ({reason})"),
            "check the receiver; the sink retries with backoff meanwhile",
        ),
    }
}

/// Probes the push endpoint; also returns the remote's `Date` when it answered.
async fn push(cfg: &Config, timeout: Duration) -> (Check, Option<SystemTime>) {
    const NAME: &str = "push";
    let sink = match PushSink::from_config(&cfg.push) {
        Ok(None) => return (ok(NAME, "off (OCT_PUSH_ENDPOINT unset)"), None),
        Ok(Some(s)) => s,
        Err(e) => {
            return (
                fail(
                    NAME,
                    e.to_string(),
                    "correct OCT_PUSH_TOKEN / OCT_PUSH_HEADERS",
                ),
                None,
            );
        }
    };
    let target = sink.target();
    let endpoint = cfg.push.endpoint.clone().unwrap_or_default();
    let at = match reach(&endpoint, timeout).await {
        Ok(a) => a,
        Err(e) => {
            return (
                fail(
                    NAME,
                    format!("{target}: {e}"),
                    "check OCT_PUSH_ENDPOINT's host and port, and the network",
                ),
                None,
            );
        }
    };
    let date = remote_date(&endpoint, timeout).await;
    let streams = sink.streams();
    let Some(stream) = streams.first() else {
        return (ok(NAME, format!("{target} reachable")), date);
    };
    let attempt = match tokio::time::timeout(timeout, sink.send(stream, &[])).await {
        Ok(a) => a,
        Err(_) => Attempt::Retry {
            reason: format!("no answer within {timeout:?}"),
            retry_after: None,
        },
    };
    (
        judge(
            NAME,
            &target,
            at,
            attempt,
            "OCT_PUSH_TOKEN and OCT_PUSH_HEADERS",
        ),
        date,
    )
}

/// Probes the OTLP export endpoint (the first signal it sends).
async fn export(cfg: &Config, timeout: Duration) -> (Check, Option<SystemTime>) {
    const NAME: &str = "otlp export";
    let resolved = match Resolved::from_config(&cfg.otlp_export, &otlp_export::process_env) {
        Ok(None) => return (ok(NAME, "off (OCT_OTLP_EXPORT_ENDPOINT unset)"), None),
        Ok(Some(r)) => r,
        Err(e) => return (fail(NAME, e.to_string(), "correct that variable"), None),
    };
    let target = resolved.target();
    let transport = match Transport::new(&resolved) {
        Ok(t) => t,
        Err(e) => {
            return (
                fail(NAME, e.to_string(), "correct OCT_OTLP_EXPORT_HEADERS"),
                None,
            );
        }
    };
    let (url, which) = if let Some(u) = resolved
        .traces_url
        .clone()
        .filter(|_| resolved.signals.traces)
    {
        (u, 0)
    } else if let Some(u) = resolved
        .metrics_url
        .clone()
        .filter(|_| resolved.signals.metrics)
    {
        (u, 1)
    } else {
        (resolved.logs_url.clone().unwrap_or_default(), 2)
    };
    let at = match reach(&url, timeout).await {
        Ok(a) => a,
        Err(e) => {
            return (
                fail(
                    NAME,
                    format!("{target}: {e}"),
                    "check OCT_OTLP_EXPORT_ENDPOINT's host and port, and the network",
                ),
                None,
            );
        }
    };
    let date = if resolved.protocol == otlp_export::Protocol::Grpc {
        None
    } else {
        remote_date(&url, timeout).await
    };
    let send = async {
        match which {
            0 => transport.traces(&url, Default::default()).await,
            1 => transport.metrics(&url, Default::default()).await,
            _ => transport.logs(&url, Default::default()).await,
        }
    };
    let attempt = match tokio::time::timeout(timeout, send).await {
        Ok(a) => a,
        Err(_) => Attempt::Retry {
            reason: format!("no answer within {timeout:?}"),
            retry_after: None,
        },
    };
    (
        judge(NAME, &target, at, attempt, "OCT_OTLP_EXPORT_HEADERS"),
        date,
    )
}

/// The `Date` header of any answer from `url` (for the clock check).
async fn remote_date(url: &str, timeout: Duration) -> Option<SystemTime> {
    let client = reqwest::Client::builder().timeout(timeout).build().ok()?;
    let resp = client.head(url).send().await.ok()?;
    let text = resp.headers().get(reqwest::header::DATE)?.to_str().ok()?;
    parse_http_date(text)
}

/// RFC 7231 `IMF-fixdate` (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(s.trim(), &format).ok()?;
    let secs = t.assume_utc().unix_timestamp();
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

// ---------------------------------------------------------------- clock and prices

fn clock(table: Option<&PriceTable>, remote: &[SystemTime]) -> Check {
    const NAME: &str = "clock";
    let now = SystemTime::now();
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // The bundled price data was converted before this binary was built.
    let floor = table
        .and_then(|t| table_day(&t.as_of))
        .unwrap_or(1_735_689_600); // 2025-01-01
    if now_s < floor - 86_400 {
        return fail(
            NAME,
            format!(
                "the system clock says {}, before this build's data ({})",
                crate::util::time::format_ns(now_s.saturating_mul(1_000_000_000)),
                table.map_or("2025-01-01", |t| t.as_of.as_str())
            ),
            "set the clock (enable NTP: `timedatectl set-ntp true`)",
        );
    }
    for r in remote {
        let skew = now
            .duration_since(*r)
            .or_else(|_| r.duration_since(now))
            .unwrap_or_default();
        // HTTP dates have whole seconds; beyond a minute, minutes are enough.
        let secs = skew.as_secs();
        let secs = if secs >= 60 {
            (secs + 30) / 60 * 60
        } else {
            secs.max(1)
        };
        let shown = crate::util::duration::format(Duration::from_secs(secs));
        if skew > CLOCK_FAIL {
            return fail(
                NAME,
                format!("off by {shown} from an endpoint's clock"),
                "set the clock (enable NTP: `timedatectl set-ntp true`)",
            );
        }
        if skew > CLOCK_WARN {
            return warn(
                NAME,
                format!("off by {shown} from an endpoint's clock"),
                "enable NTP (`timedatectl set-ntp true`)",
            );
        }
    }
    if remote.is_empty() {
        ok(NAME, "plausible (no endpoint to compare with)")
    } else {
        ok(NAME, "within a minute of the endpoints' clocks")
    }
}

/// Unix seconds of a `YYYY-MM-DD` date.
fn table_day(d: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(d.get(..10)?, &format).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp())
}

fn price_table(cfg: &Config) -> (Check, Option<PriceTable>) {
    const NAME: &str = "price table";
    let t = match PriceTable::load(cfg.analytics.pricing_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            return (
                fail(NAME, e.to_string(), "correct OCT_PRICING_FILE, or unset it"),
                PriceTable::bundled().ok(),
            );
        }
    };
    let now_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let age = table_day(&t.as_of).map(|d| (now_s - d).div_euclid(86_400));
    let overrides = t
        .entries
        .iter()
        .filter(|e| e.origin == crate::analytics::pricing::Origin::Override)
        .count();
    let detail = format!(
        "{}, as of {}{}, {} models{}",
        t.source.split(" (").next().unwrap_or(&t.source),
        t.as_of,
        age.map_or(String::new(), |a| format!(" ({a} d old)")),
        t.entries.len() - overrides,
        if overrides > 0 {
            format!(" + {overrides} from OCT_PRICING_FILE")
        } else {
            String::new()
        }
    );
    let check = match age {
        Some(a) if a > PRICE_TABLE_MAX_AGE_DAYS => warn(
            NAME,
            detail,
            "update openclaw-trace (or run scripts/update-prices.py); meanwhile OCT_PRICING_FILE overrides prices",
        ),
        _ => ok(NAME, detail),
    };
    (check, Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for b in ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"] {
            assert!(is_loopback(b), "{b}");
        }
        for b in ["0.0.0.0", "::", "10.0.0.1", "example.com"] {
            assert!(!is_loopback(b), "{b}");
        }
    }

    #[test]
    fn http_dates() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
        assert!(parse_http_date("yesterday").is_none());
    }

    #[test]
    fn render_names_fixes() {
        let out = render(&[ok("a", "fine"), fail("b", "broken", "mend it")]);
        assert!(out.contains("FAIL  b"), "{out}");
        assert!(out.contains("fix: mend it"), "{out}");
        assert!(out.ends_with("1 ok, 0 warning(s), 1 failed\n"), "{out}");
    }
}
