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
    let db = cfg.store.db_path();
    let key = cfg.audit.key_path(&db);
    let heads = cfg.audit.head_path(&db);
    match verify_path(&db, &key, &heads) {
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

pub fn render(rep: &Report) -> String {
    let mut out = String::new();
    let range = match (rep.first_seq, rep.last_seq) {
        (Some(f), Some(l)) => format!("entries {f} to {l}"),
        _ => "no entries".into(),
    };
    out.push_str(&format!(
        "chain: {range} ({} entries), {} rows checked, {} signed heads checked{}\n",
        rep.entries,
        rep.rows_checked,
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
    let conn = crate::cli::traces::reader(cfg)?;
    let f = crate::store::activity::Filter {
        kind: a.kind.clone(),
        from_ns,
        limit: a.limit.clamp(1, 10_000),
        ..Default::default()
    };
    let items = crate::store::activity::list(&conn, &f)
        .map_err(|e| CliError::Store(crate::store::StoreError::Sqlite(e)))?;
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
