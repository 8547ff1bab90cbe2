//! `openclaw-trace verify` and `openclaw-trace audit key`: the tamper-evident record
//! (see `store::audit`).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::store::audit::{Signer, hex_bytes};
use crate::store::audit_verify::{Report, verify_path};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Check an EU AI Act package (from `export --format eu-ai-act`) offline instead
    #[arg(long, value_name = "FILE")]
    pub from_export: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCmd,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Print the public key that signs the chain's heads (creating the key when absent)
    Key,
}

/// Exit 0 when intact, 1 when not (naming the first bad entry), 2 when it cannot check.
pub fn run_verify(cfg: &Config, a: &VerifyArgs) -> ExitCode {
    if let Some(f) = &a.from_export {
        return run_verify_export(cfg, a, f);
    }
    // The audit chain is the SQLite file's; a central on PostgreSQL keeps none.
    if cfg.store.database_url.is_some() {
        eprintln!(
            "openclaw-trace: cannot verify: {}",
            crate::cli::traces::CliError::OnPostgres
        );
        return ExitCode::from(2);
    }
    let db = cfg.store.db_path();
    let key = cfg.audit.key_path(&db);
    let heads = cfg.audit.head_path(&db);
    match verify_path(&db, &key, &heads, retention_age(cfg)) {
        Ok(rep) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rep).unwrap_or_default());
            } else {
                print!("{}", render(&rep));
            }
            if rep.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string()})
                );
            }
            eprintln!("openclaw-trace: cannot verify: {e}");
            ExitCode::from(2)
        }
    }
}

/// The age-retention window when it is on (`verify` leaves the usage hours before it).
fn retention_age(cfg: &Config) -> Option<std::time::Duration> {
    (cfg.store.retention_days > 0)
        .then(|| std::time::Duration::from_secs(cfg.store.retention_days * 86_400))
}

pub fn render(rep: &Report) -> String {
    let mut out = String::new();
    let range = match (rep.first_seq, rep.last_seq) {
        (Some(f), Some(l)) => format!("entries {f} to {l}"),
        _ => "no entries".into(),
    };
    out.push_str(&format!(
        "chain: {range} ({} entries), {} rows checked, {} derived rows recomputed, {} signed heads checked{}\n",
        rep.entries,
        rep.rows_checked,
        rep.derived_rows_checked,
        rep.signed_heads_checked,
        rep.last_signed_seq
            .map(|s| format!(", last signed at entry {s}"))
            .unwrap_or_default()
    ));
    if let Some(h) = &rep.head_hash {
        out.push_str(&format!("head: {}\n", hex_bytes::encode(h)));
    }
    if rep.ok {
        out.push_str("intact\n");
    } else {
        out.push_str(&format!("NOT INTACT: {} problem(s)\n", rep.problems.len()));
        for p in rep.problems.iter().take(50) {
            out.push_str(&format!("  {}: {}\n", p.kind, p.message));
        }
    }
    out
}

pub fn run_audit(cfg: &Config, a: &AuditArgs) -> ExitCode {
    match a.command {
        AuditCmd::Key => {
            let db = cfg.store.db_path();
            let path = cfg.audit.key_path(&db);
            match Signer::load_or_create(&path) {
                Ok(s) => {
                    println!("ed25519 {}", hex_bytes::encode(&s.public_key()));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("openclaw-trace: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct ActivityArgs {
    /// Only this kind (start, stop, auth_refused, retention, ...)
    #[arg(long)]
    pub kind: Option<String>,
    /// Only the last this long (e.g. 1h, 7d)
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many, newest first
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `openclaw-trace activity`: the daemon's own events from the local database.
pub fn run_activity(
    cfg: &Config,
    a: &ActivityArgs,
) -> Result<String, crate::cli::traces::CliError> {
    use crate::cli::traces::CliError;
    let from_ns = match &a.since {
        Some(s) => {
            let d = crate::util::duration::parse(s)
                .map_err(|e| CliError::Usage(format!("--since: {e}")))?;
            Some(crate::model::now_ns() - d.as_nanos() as i64)
        }
        None => None,
    };
    let f = crate::store::activity::Filter {
        kind: a.kind.clone(),
        from_ns,
        limit: a.limit.clamp(1, 10_000),
        ..Default::default()
    };
    let items: Vec<crate::store::activity::Activity> = if cfg.store.database_url.is_some() {
        // A central on PostgreSQL: its API answers (a page of at most 1,000).
        let v = crate::cli::remote::get_json_blocking(
            cfg,
            "/v1/activity",
            &[
                ("kind", f.kind.clone()),
                ("from", f.from_ns.map(|t| (t / 1_000_000).to_string())),
                ("limit", Some(f.limit.min(1000).to_string())),
            ],
        )?;
        crate::cli::remote::field(&v, "items")?
    } else {
        let conn = crate::cli::traces::reader(cfg)?;
        crate::store::activity::list(&conn, &f)
            .map_err(|e| CliError::Store(crate::store::StoreError::Sqlite(e)))?
    };
    if a.json {
        return Ok(serde_json::to_string_pretty(&items).unwrap_or_default() + "\n");
    }
    let mut out = String::new();
    for i in &items {
        out.push_str(&format!(
            "{}  {:<13} {}{}{}\n",
            crate::util::time::format_ns(i.time_ns),
            i.kind,
            i.message,
            i.remote_addr
                .as_deref()
                .map(|r| format!(" from {r}"))
                .unwrap_or_default(),
            i.path
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
        ));
    }
    if items.is_empty() {
        out.push_str("no activity recorded\n");
    }
    Ok(out)
}

/// `export --format eu-ai-act`: the signed package, written to `--output`.
pub fn run_ai_act_export(
    cfg: &Config,
    a: &crate::cli::export::ExportArgs,
) -> Result<String, crate::cli::traces::CliError> {
    use crate::cli::traces::CliError;
    let Some(out) = a.output.clone().filter(|o| o.as_os_str() != "-") else {
        return Err(CliError::Usage(
            "--format eu-ai-act needs --output FILE".into(),
        ));
    };
    if a.endpoint.is_some() || a.trace.is_some() {
        return Err(CliError::Usage(
            "--format eu-ai-act takes --since, --until, --agent and --output".into(),
        ));
    }
    let now = crate::model::now_ns();
    let from_ns = match &a.since {
        Some(s) => {
            let d = crate::util::duration::parse(s)
                .map_err(|e| CliError::Usage(format!("--since: {e}")))?;
            Some(now - d.as_nanos() as i64)
        }
        None => None,
    };
    let until_ns = match &a.until {
        Some(u) => Some(crate::util::time::parse_timestamp_str(u).ok_or_else(|| {
            CliError::Usage("--until: expected an RFC 3339 timestamp or unix milliseconds".into())
        })?),
        None => None,
    };
    let db = cfg.store.db_path();
    let conn = crate::cli::traces::reader(cfg)?;
    let key = cfg.audit.key_path(&db);
    let signer = Signer::load(&key)
        .map_err(|e| CliError::Failed(format!("{e}: the package is signed with the audit key")))?;
    let sys = crate::store::ai_act::SystemInfo {
        provider: cfg.audit.ai_act_provider.clone(),
        intended_purpose: cfg.audit.ai_act_purpose.clone(),
        contact: cfg.audit.ai_act_contact.clone(),
        retention_days: cfg.store.retention_days,
        usage_retention_days: cfg.analytics.usage_retention_days,
        redaction: cfg.redact.enabled,
    };
    let scope = crate::store::ai_act::Scope {
        from_ns,
        until_ns,
        agent: a.agent.clone(),
    };
    let pkg = crate::store::ai_act::build(&conn, &scope, &sys, Some(&signer), now)
        .map_err(|e| CliError::Store(crate::store::StoreError::Sqlite(e)))?;
    let text = serde_json::to_string_pretty(&pkg).unwrap_or_default() + "\n";
    std::fs::write(&out, text)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", out.display())))?;
    crate::cli::export::record_export(
        cfg,
        format!("eu-ai-act export written to {}", out.display()),
        serde_json::json!({
            "format": "eu-ai-act",
            "output": out.display().to_string(),
            "since": a.since,
            "until": a.until,
            "agent": a.agent,
            "digest": pkg["digest"],
        }),
    );
    Ok(format!(
        "wrote {} (digest {})\n",
        out.display(),
        pkg["digest"].as_str().unwrap_or("")
    ))
}

/// `verify --from-export FILE`: exit 0 when the package is intact, 1 when not, 2 when unreadable.
pub fn run_verify_export(cfg: &Config, a: &VerifyArgs, file: &std::path::Path) -> ExitCode {
    let pkg: serde_json::Value = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("openclaw-trace: cannot verify {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    // This machine's key, when there is one, is the one to trust.
    let db = cfg.store.db_path();
    let trusted = Signer::load(&cfg.audit.key_path(&db))
        .ok()
        .map(|s| s.public_key());
    let rep = crate::store::ai_act::verify_package(&pkg, trusted.as_deref());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep).unwrap_or_default());
    } else if rep.ok {
        println!(
            "package intact: digest and signature good, {} signed checkpoints checked",
            rep.checkpoints_checked
        );
    } else {
        println!("NOT INTACT: {} problem(s)", rep.problems.len());
        for p in &rep.problems {
            println!(
                "  {}: {}",
                p["kind"].as_str().unwrap_or(""),
                p["message"].as_str().unwrap_or("")
            );
        }
    }
    if rep.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[derive(Args, Debug)]
pub struct ReadinessArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `audit-readiness`: what a review asks for, each ok or with a fix. Exit 1 when any is not ok.
pub fn run_readiness(cfg: &Config, a: &ReadinessArgs) -> ExitCode {
    use std::os::unix::fs::PermissionsExt;
    let db = cfg.store.db_path();
    let key = cfg.audit.key_path(&db);
    let heads = cfg.audit.head_path(&db);
    let mut checks: Vec<(&str, bool, String)> = Vec::new();
    checks.push(if cfg.audit.enabled {
        ("audit chain on", true, "OCT_AUDIT=on".into())
    } else {
        ("audit chain on", false, "set OCT_AUDIT=on".into())
    });
    checks.push(match verify_path(&db, &key, &heads, retention_age(cfg)) {
        Ok(r) if r.ok => (
            "chain intact",
            true,
            format!(
                "{} entries, last signed at entry {}",
                r.entries,
                r.last_signed_seq
                    .map(|s| s.to_string())
                    .unwrap_or("-".into())
            ),
        ),
        Ok(r) => (
            "chain intact",
            false,
            format!(
                "{} problem(s), first: {}; see openclaw-trace verify",
                r.problems.len(),
                r.problems.first().map(|p| p.message.as_str()).unwrap_or("")
            ),
        ),
        Err(e) => ("chain intact", false, format!("cannot check: {e}")),
    });
    checks.push(match std::fs::metadata(&key) {
        Ok(m) if m.permissions().mode() & 0o077 == 0 => (
            "key present and private",
            true,
            format!(
                "{} (mode {:o})",
                key.display(),
                m.permissions().mode() & 0o777
            ),
        ),
        Ok(m) => (
            "key present and private",
            false,
            format!(
                "{} is mode {:o}: chmod 600 {}",
                key.display(),
                m.permissions().mode() & 0o777,
                key.display()
            ),
        ),
        Err(_) => (
            "key present and private",
            false,
            format!(
                "no key at {}: start the daemon once or run openclaw-trace audit key",
                key.display()
            ),
        ),
    });
    checks.push(if heads.exists() {
        ("head file present", true, heads.display().to_string())
    } else {
        (
            "head file present",
            false,
            format!(
                "no head file at {}: the daemon writes it every OCT_AUDIT_CHECKPOINT_INTERVAL; keep a copy off this machine (or turn push on)",
                heads.display()
            ),
        )
    });
    let days = cfg.store.retention_days;
    checks.push(if days >= 183 {
        ("retention at least 183 days", true, format!("OCT_RETENTION_DAYS={days}"))
    } else if days == 0 {
        (
            "retention at least 183 days",
            false,
            format!(
                "OCT_RETENTION_DAYS=0 keeps data only while OCT_CLEANUP_DB_THRESHOLD_BYTES ({}) holds it: set OCT_RETENTION_DAYS=183 and size the cap for six months",
                cfg.store.cleanup_db_threshold_bytes
            ),
        )
    } else {
        (
            "retention at least 183 days",
            false,
            format!("OCT_RETENTION_DAYS={days}: set OCT_RETENTION_DAYS=183 (Articles 19 and 26(6): at least six months)"),
        )
    });
    // Clocks: now is after the newest chain entry, and not before this build's year.
    let now = crate::model::now_ns();
    let newest: Option<i64> = crate::store::open_reader(&db).ok().and_then(|c| {
        c.query_row("SELECT max(time_ns) FROM audit_chain", [], |r| r.get(0))
            .ok()
            .flatten()
    });
    checks.push(match newest {
        Some(t) if t > now + 300_000_000_000 => (
            "clock sane",
            false,
            format!(
                "the newest chain entry ({}) is after now ({}): the clock went back; fix NTP (timedatectl)",
                crate::util::time::format_ns(t),
                crate::util::time::format_ns(now)
            ),
        ),
        _ if now < 1_704_067_200_000_000_000 => (
            "clock sane",
            false,
            "the clock is before 2024: set it (timedatectl, NTP)".into(),
        ),
        _ => ("clock sane", true, crate::util::time::format_ns(now)),
    });
    checks.push(if cfg.redact.enabled {
        ("redaction on", true, "OCT_REDACT=on".into())
    } else {
        (
            "redaction on",
            false,
            "set OCT_REDACT=on so credentials are masked before storage".into(),
        )
    });
    let all_ok = checks.iter().all(|c| c.1);
    if a.json {
        let v: Vec<serde_json::Value> = checks
            .iter()
            .map(|(n, ok, d)| serde_json::json!({"check": n, "ok": ok, "detail": d}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"ok": all_ok, "checks": v}))
                .unwrap_or_default()
        );
    } else {
        for (n, ok, d) in &checks {
            println!("{} {n}: {d}", if *ok { "ok " } else { "FIX" });
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
