//! `openclaw-trace export --format otlp|json [--trace ID | --since 7d] [--endpoint URL | --output FILE]`:
//! a one-shot export of the local database (read-only, also while the daemon runs).
//!
//! - `otlp` to an endpoint: OTLP over the configured protocol (the OTLP export settings);
//!   to a file: OTLP/JSON, one export request per line (the Collector's file format).
//! - `json` to an endpoint: the push v2 envelope (the push settings' token and headers);
//!   to a file: the v2 records, one per line.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::traces::{CliError, reader};
use crate::config::Config;
use crate::model::TraceId;
use crate::sinks::delivery::{Attempt, Backoff, redact_url};
use crate::sinks::otlp_export::{Converter, Resolved, Transport, process_env};
use crate::sinks::push::{PushConfig, PushFormat, PushRecord, PushSink, metric_item_v2};
use crate::sinks::{METRIC_COLS, Selection, Sink, data_streams, metric_row, scan};
use crate::store::query::{self, EVENT_COLS, SPAN_COLS, event_row, span_row};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// otlp, json, or eu-ai-act (one signed JSON package for a review; needs --output)
    #[arg(long, default_value = "otlp")]
    pub format: String,
    /// One trace (32 hex digits), with its sub-agent traces
    #[arg(long, conflicts_with = "since")]
    pub trace: Option<String>,
    /// Only data from within this long ago (15m, 1h, 7d); everything when neither is given
    #[arg(long)]
    pub since: Option<String>,
    /// Send to this URL
    #[arg(long, conflicts_with = "output")]
    pub endpoint: Option<String>,
    /// Write to this file (`-` or nothing: standard output)
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// eu-ai-act: only data before this time (RFC 3339 or unix ms)
    #[arg(long)]
    pub until: Option<String>,
    /// eu-ai-act: only this agent
    #[arg(long)]
    pub agent: Option<String>,
}

const BATCH: usize = 512;

enum Dest {
    Writer(Box<dyn Write>),
    Endpoint,
}

pub fn run_export(cfg: &Config, a: &ExportArgs) -> Result<String, CliError> {
    if (a.until.is_some() || a.agent.is_some()) && a.format != "eu-ai-act" {
        return Err(CliError::Usage(
            "--until and --agent go with --format eu-ai-act".into(),
        ));
    }
    let otlp = match a.format.as_str() {
        "otlp" => true,
        "json" => false,
        "eu-ai-act" => return super::audit::run_ai_act_export(cfg, a),
        f => {
            return Err(CliError::Usage(format!(
                "--format: expected otlp, json or eu-ai-act, got {f:?}"
            )));
        }
    };
    if let Some(e) = &a.endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(CliError::Usage(format!(
            "--endpoint: expected an http:// or https:// URL, got {:?}",
            redact_url(e)
        )));
    }
    let conn = reader(cfg)?;
    let mut selections = Vec::new();
    match (&a.trace, &a.since) {
        (Some(t), _) => {
            let id = TraceId::parse_hex(t.trim())
                .ok_or_else(|| CliError::Usage("--trace: expected 32 hex digits".into()))?;
            if query::trace_summary(&conn, &id)?.is_none() {
                return Err(CliError::NotFound(format!("trace {t}")));
            }
            for tid in with_sub_traces(&conn, id)? {
                selections.push(Selection {
                    trace_id: Some(tid.0),
                    since_ns: None,
                });
            }
        }
        (None, Some(s)) => {
            let d = crate::util::duration::parse(s)
                .map_err(|e| CliError::Usage(format!("--since: {e}")))?;
            selections.push(Selection {
                trace_id: None,
                since_ns: Some(crate::model::now_ns() - d.as_nanos() as i64),
            });
        }
        (None, None) => selections.push(Selection::default()),
    }
    let tables: &[&str] = if a.trace.is_some() {
        &["spans", "events"]
    } else {
        &["spans", "events", "metric_points"]
    };
    let (mut dest, shown) = match (&a.endpoint, &a.output) {
        (Some(url), _) => (Dest::Endpoint, redact_url(url)),
        (None, Some(p)) if p.as_os_str() != "-" => {
            let f = std::fs::File::create(p)
                .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", p.display())))?;
            (
                Dest::Writer(Box::new(std::io::BufWriter::new(f))),
                p.display().to_string(),
            )
        }
        _ => (
            Dest::Writer(Box::new(std::io::stdout().lock())),
            "standard output".into(),
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the runtime: {e}")))?;
    let mut counts = [0u64; 3];
    let mut rejected = 0u64;
    if otlp {
        let mut ocfg = cfg.otlp_export.clone();
        if let Some(url) = &a.endpoint {
            ocfg.endpoint = Some(url.clone());
            ocfg.traces_endpoint = None;
            ocfg.metrics_endpoint = None;
            ocfg.logs_endpoint = None;
        } else if ocfg.endpoint.is_none() {
            // Writing a file: only the conversion settings matter.
            ocfg.endpoint = Some("http://localhost".into());
        }
        ocfg.batch_size = BATCH;
        let resolved = Resolved::from_config(&ocfg, &process_env)
            .map_err(|e| CliError::Usage(e.to_string()))?
            .ok_or_else(|| CliError::Usage("no OTLP endpoint".into()))?;
        let converter = Converter::new(&resolved);
        let transport = Transport::new(&resolved).map_err(|e| CliError::Usage(e.to_string()))?;
        for sel in &selections {
            for (ti, table) in tables.iter().enumerate() {
                let mut after = 0;
                loop {
                    let batch = converter.read(&conn, table, false, after, sel)?;
                    if batch.last_row_id <= after {
                        break;
                    }
                    after = batch.last_row_id;
                    let n = batch.items.len() as u64;
                    let outcome = match (&mut dest, *table) {
                        (Dest::Writer(w), "spans") => {
                            write_line(w, &converter.traces_request(&batch.items))?
                        }
                        (Dest::Writer(w), "events") => {
                            write_line(w, &converter.logs_request(&batch.items))?
                        }
                        (Dest::Writer(w), _) => {
                            write_line(w, &converter.metrics_request(&batch.items))?
                        }
                        (Dest::Endpoint, "spans") => {
                            let url = resolved.traces_url.clone().unwrap_or_default();
                            let req = converter.traces_request(&batch.items);
                            rt.block_on(with_retries(|| transport.traces(&url, req.clone())))
                        }
                        (Dest::Endpoint, "events") => {
                            let url = resolved.logs_url.clone().unwrap_or_default();
                            let req = converter.logs_request(&batch.items);
                            rt.block_on(with_retries(|| transport.logs(&url, req.clone())))
                        }
                        (Dest::Endpoint, _) => {
                            let url = resolved.metrics_url.clone().unwrap_or_default();
                            let req = converter.metrics_request(&batch.items);
                            rt.block_on(with_retries(|| transport.metrics(&url, req.clone())))
                        }
                    };
                    tally(outcome, n, &mut counts[ti], &mut rejected, &shown)?;
                }
            }
        }
    } else {
        let pcfg = PushConfig {
            endpoint: Some(
                a.endpoint
                    .clone()
                    .unwrap_or_else(|| "http://localhost".into()),
            ),
            format: PushFormat::V2,
            ..cfg.push.clone()
        };
        let sink = PushSink::from_config(&pcfg)
            .map_err(|e| CliError::Usage(e.to_string()))?
            .ok_or_else(|| CliError::Usage("no endpoint".into()))?;
        let streams = data_streams(true, true, true, false);
        for sel in &selections {
            for (ti, table) in tables.iter().enumerate() {
                let mut after = 0;
                loop {
                    let (items, last) = json_batch(&sink, &conn, table, after, sel)?;
                    if last <= after {
                        break;
                    }
                    after = last;
                    let n = items.len() as u64;
                    let outcome = match &mut dest {
                        Dest::Writer(w) => {
                            for it in &items {
                                w.write_all(it.json())
                                    .and_then(|_| w.write_all(b"\n"))
                                    .map_err(|e| {
                                        CliError::Failed(format!("writing {shown}: {e}"))
                                    })?;
                            }
                            Attempt::Delivered
                        }
                        Dest::Endpoint => {
                            let items = sink.pack(items);
                            rt.block_on(with_retries(|| sink.send(&streams[ti], &items)))
                        }
                    };
                    tally(outcome, n, &mut counts[ti], &mut rejected, &shown)?;
                }
            }
        }
    }
    if let Dest::Writer(w) = &mut dest {
        w.flush()
            .map_err(|e| CliError::Failed(format!("writing {shown}: {e}")))?;
    }
    let summary = format!(
        "exported {} spans, {} events, {} metric points to {shown}{}",
        counts[0],
        counts[1],
        counts[2],
        if rejected > 0 {
            format!(" ({rejected} rejected by the remote)")
        } else {
            String::new()
        }
    );
    // The data may be on standard output: the summary goes to standard error.
    eprintln!("{summary}");
    record_export(
        cfg,
        format!("{} export: {summary}", a.format),
        serde_json::json!({
            "format": a.format,
            "trace_id": a.trace,
            "since": a.since,
            "destination": shown,
            "spans": counts[0],
            "events": counts[1],
            "metric_points": counts[2],
            "rejected": rejected,
        }),
    );
    if rejected > 0 {
        return Err(CliError::Failed(format!(
            "{rejected} records were rejected by {shown}"
        )));
    }
    Ok(String::new())
}

/// Records an export made in the activity log (best effort: a database this command
/// cannot write to leaves a warning, not a failed export).
pub(crate) fn record_export(cfg: &Config, message: String, detail: serde_json::Value) {
    let a = crate::store::activity::Activity {
        time_ns: crate::model::now_ns(),
        kind: "export".into(),
        path: None,
        remote_addr: None,
        message,
        detail: Some(detail),
        id: None,
    };
    if let Err(e) = crate::store::activity::record_from_cli(&cfg.store, &cfg.audit, &a) {
        eprintln!("openclaw-trace: the export was not recorded in the activity log: {e}");
    }
}

/// A trace and its sub-agent traces, recursively (cycles cut, bounded).
fn with_sub_traces(conn: &rusqlite::Connection, id: TraceId) -> Result<Vec<TraceId>, CliError> {
    let mut out = vec![id];
    let mut i = 0;
    while i < out.len() && out.len() < 10_000 {
        for c in query::child_traces(conn, &out[i])? {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        i += 1;
    }
    Ok(out)
}

/// v2 records of one table, a batch at a time.
fn json_batch(
    sink: &PushSink,
    conn: &rusqlite::Connection,
    table: &str,
    after: i64,
    sel: &Selection,
) -> Result<(Vec<PushRecord>, i64), CliError> {
    let mut items = Vec::new();
    let mut last = after;
    match table {
        "spans" => scan(
            conn,
            "spans",
            &format!("{SPAN_COLS}, id"),
            after,
            BATCH,
            sel,
            |r| {
                last = r.get(query::SPAN_COLS_LEN)?;
                items.extend(sink.span_item(last, span_row(r)?));
                Ok(true)
            },
        )?,
        "events" => scan(conn, "events", EVENT_COLS, after, BATCH, sel, |r| {
            let e = event_row(r)?;
            last = e.rowid;
            items.extend(sink.event_item(e));
            Ok(true)
        })?,
        _ => scan(conn, "metric_points", METRIC_COLS, after, BATCH, sel, |r| {
            let m = metric_row(r)?;
            last = m.id;
            items.push(metric_item_v2(m));
            Ok(true)
        })?,
    }
    Ok((items, last))
}

fn write_line(w: &mut Box<dyn Write>, v: &impl serde::Serialize) -> Result<Attempt, CliError> {
    serde_json::to_writer(&mut *w, v)
        .map_err(std::io::Error::other)
        .and_then(|_| w.write_all(b"\n"))
        .map_err(|e| CliError::Failed(format!("writing: {e}")))?;
    Ok(Attempt::Delivered)
}

/// Tries a few times with backoff; a one-shot command does not wait for long outages.
async fn with_retries<F: Future<Output = Attempt>>(send: impl Fn() -> F) -> Attempt {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let mut last = Attempt::Delivered;
    for _ in 0..5 {
        last = send().await;
        match &last {
            Attempt::Retry { retry_after, .. } => {
                tokio::time::sleep(backoff.next_delay(*retry_after)).await
            }
            _ => return last,
        }
    }
    last
}

fn tally(
    outcome: Attempt,
    n: u64,
    count: &mut u64,
    rejected: &mut u64,
    shown: &str,
) -> Result<(), CliError> {
    match outcome {
        Attempt::Delivered => {
            *count += n;
            Ok(())
        }
        Attempt::Reject { reason, .. } => {
            eprintln!("openclaw-trace: {shown} rejected {n} records: {reason}");
            *rejected += n;
            Ok(())
        }
        Attempt::Retry { reason, .. } | Attempt::Refused { reason, .. } => {
            Err(CliError::Failed(format!(
                "export to {shown} failed after {} records: {reason}",
                *count
            )))
        }
    }
}
