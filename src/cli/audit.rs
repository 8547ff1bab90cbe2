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
