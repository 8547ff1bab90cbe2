//! Entry points for the fuzz targets (`fuzz/`, `cargo fuzz`) and for the replay of their
//! committed corpus in the normal test suite (`tests/fuzz_corpus.rs`): each takes the raw
//! bytes a client, a file or a remote could send and runs every parser that reads them.
//! They must return for any input: no panic, no endless loop, no unbounded allocation.
//! Results are dropped; only the absence of a crash is checked.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::analytics::{budgets, pricing};
use crate::config::{self, Config, Sources};
use crate::sinks::delivery;
use crate::sources::ingest::{self, Endpoint, IngestConfig};
use crate::sources::otlp::convert::{self, Limits};
use crate::sources::otlp::{Rejects, Signal, decode};
use crate::sources::{openclaw, tail, transcripts};
use crate::{api, redact, settings, util};

/// The names of the targets, as in `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: &[&str] = &[
    "native",
    "otlp_protobuf",
    "otlp_json",
    "openclaw",
    "gateway_log",
    "transcript",
    "settings",
    "prices",
    "query",
    "push_response",
];

/// Runs the target `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "native" => native(data),
        "otlp_protobuf" => otlp_protobuf(data),
        "otlp_json" => otlp_json(data),
        "openclaw" => openclaw(data),
        "gateway_log" => gateway_log(data),
        "transcript" => transcript(data),
        "settings" => settings(data),
        "prices" => prices(data),
        "query" => query(data),
        "push_response" => push_response(data),
        _ => return false,
    }
    true
}

/// The first byte picks a variant; the rest is the input.
fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((b, rest)) => (*b, rest),
        None => (0, data),
    }
}

fn redact_all(records: &mut [crate::model::Record]) {
    for r in records {
        redact::redact_record(r);
    }
}

/// The native capture API (`POST /v1/traces`, `/v1/errors`, `/v1/events`).
pub fn native(data: &[u8]) {
    let (b, body) = split(data);
    let endpoint = match b % 3 {
        0 => Endpoint::Traces,
        1 => Endpoint::Errors,
        _ => Endpoint::Events,
    };
    if let Ok(mut records) = ingest::parse(endpoint, body, &IngestConfig::default()) {
        redact_all(&mut records);
        for r in &records {
            let _ = ingest::record_id(r);
        }
    }
}

fn limits() -> Limits {
    Limits {
        max_text_bytes: IngestConfig::default().max_text_bytes,
        now_ns: 1_700_000_000_000_000_000,
    }
}

fn signal(b: u8) -> Signal {
    match b % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    }
}

fn finish(mut c: convert::Converted) {
    redact_all(&mut c.records);
}

/// OTLP protobuf bodies (OTLP/HTTP and gRPC messages), decoded and converted.
pub fn otlp_protobuf(data: &[u8]) {
    let (b, body) = split(data);
    match signal(b) {
        Signal::Traces => {
            if let Ok(r) = decode::protobuf(body) {
                finish(convert::traces(r, &limits(), Rejects::default()));
            }
        }
        Signal::Metrics => {
            if let Ok(r) = decode::protobuf(body) {
                finish(convert::metrics(r, Rejects::default()));
            }
        }
        Signal::Logs => {
            if let Ok(r) = decode::protobuf(body) {
                finish(convert::logs(r, &limits(), Rejects::default()));
            }
        }
    }
}

/// OTLP/HTTP JSON bodies, decoded and converted.
pub fn otlp_json(data: &[u8]) {
    let (b, body) = split(data);
    let doc = body;
    let signal = signal(b);
    let _ = decode::is_otlp_json(doc, signal);
    match signal {
        Signal::Traces => {
            if let Ok((r, rejects)) = decode::json_traces(doc) {
                finish(convert::traces(r, &limits(), rejects));
            }
        }
        Signal::Metrics => {
            if let Ok((r, rejects)) = decode::json_metrics(doc) {
                finish(convert::metrics(r, rejects));
            }
        }
        Signal::Logs => {
            if let Ok((r, rejects)) = decode::json_logs(doc) {
                finish(convert::logs(r, &limits(), rejects));
            }
        }
    }
}

/// The OpenClaw plugin's event batches (`POST /v1/openclaw/events`).
pub fn openclaw(data: &[u8]) {
    if let Ok(mut b) = openclaw::parse_batch(data, &IngestConfig::default()) {
        redact_all(&mut b.records);
    }
}

/// Gateway log lines, one per line.
pub fn gateway_log(data: &[u8]) {
    let (b, text) = split(data);
    let text = String::from_utf8_lossy(text);
    for line in text.lines() {
        let _ = tail::parse_line(line, &["fuzz", "0"], b & 1 == 1);
    }
}

/// Transcript rows: a zstd frame (first byte odd) or JSON lines, as the agent's
/// session files and database hold them.
pub fn transcript(data: &[u8]) {
    let (b, rest) = split(data);
    let text = if b & 1 == 1 {
        match transcripts::decode_zstd(rest, 1) {
            Ok(t) => t,
            Err(_) => return,
        }
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    for line in text.lines() {
        if let Ok(event) = serde_json::from_str::<Value>(line) {
            let mut records = transcripts::records_from_event(&event, "fuzz", Some("main"), "fuzz");
            redact_all(&mut records);
        }
    }
}

/// Settings: environment lines (`OCT_X=value`) and a TOML file, then each shared parser
/// on every line.
pub fn settings(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let env: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        // A file name in OCT_CONFIG would be read from the disk.
        .filter(|(k, _)| *k != "OCT_CONFIG")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = Config::load(&Sources {
        file: None,
        flags: BTreeMap::new(),
        env,
    });
    let mut cfg = Config::default();
    let _ = config::apply_toml(&mut cfg, &config::settings(), &text, "fuzz.toml");
    for line in text.lines() {
        let _ = settings::parse_u64(line);
        let _ = settings::parse_port(line);
        let _ = settings::parse_duration(line);
        let _ = settings::parse_bool(line);
        let _ = settings::parse_percent(line);
        let _ = settings::parse_bytes(line);
        let _ = settings::parse_list(line);
        let _ = util::duration::parse(line);
        let _ = util::time::parse_timestamp_str(line);
        let _ = budgets::parse_budgets(line);
        let _ = delivery::parse_headers(line);
        let _ = delivery::parse_pairs(line);
        let _ = delivery::redact_url(line);
    }
}

fn bundled_prices() -> &'static pricing::PriceTable {
    static TABLE: OnceLock<pricing::PriceTable> = OnceLock::new();
    TABLE.get_or_init(|| pricing::PriceTable::bundled().expect("the bundled price table"))
}

/// A price override file (TOML or JSON), then look-ups of model names in the result.
pub fn prices(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut table = bundled_prices().clone();
    if let Ok(entries) = pricing::parse_overrides(&text) {
        table.add_overrides(entries);
    }
    for line in text.lines().take(16) {
        let (provider, model) = match line.split_once('/') {
            Some((p, m)) => (Some(p), m),
            None => (None, line),
        };
        let _ = pricing::candidates(model);
        let _ = table.lookup(provider, model);
    }
}

/// A query string, read by every query endpoint's parameter parser.
pub fn query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(uri) = format!("/?{text}").parse::<axum::http::Uri>() else {
        return;
    };
    let Ok(axum::extract::Query(p)) =
        axum::extract::Query::<HashMap<String, String>>::try_from_uri(&uri)
    else {
        return;
    };
    let _ = api::query::trace_filter(&p);
    let _ = api::query::event_filter(&p, "error");
    let _ = api::query::event_filter(&p, "custom");
    let _ = api::query::limit_param(&p);
    let _ = api::query::time_param(&p, "from");
    let _ = api::metric_query::series_query(&p);
    let _ = api::analytics::usage_query(&p);
    let _ = api::stream::parse_filter(&p);
}

/// A remote's answer to a push or an OTLP export: status (first two bytes),
/// `Retry-After` (first line) and body (the rest).
pub fn push_response(data: &[u8]) {
    let status = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]) % 1000,
        _ => 200,
    };
    let rest = data.get(2..).unwrap_or_default();
    let text = String::from_utf8_lossy(rest);
    let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let retry_after = delivery::parse_retry_after(first, now);
    let _ = delivery::classify_http(status, retry_after, body);
}
