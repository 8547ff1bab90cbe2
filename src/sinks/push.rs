//! Remote batch push: the Go version's envelope by default
//! (`{"events":[{"type":"llm_trace"|"error_event"|"system_metric","data":{...}}]}`),
//! or `OCT_PUSH_FORMAT=v2` with every record, a schema version and the source's identity.
//! Each item carries a stable `id` and each request a stable `Idempotency-Key`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::delivery::{self, Attempt, Redactor, parse_headers, redact_url};
use super::{
    Batch, Item, METRIC_COLS, MetricRow, Pacing, Selection, Sink, Stream, data_streams, metric_row,
    scan,
};
use crate::settings::{Setting, parse_bool, parse_bytes, parse_duration, parse_u64};
use crate::sources::fleet::{MAX_STATUS_CONDITIONS, STATUS_HEADER, SidecarStatus};
use crate::store::StoreError;
use crate::store::query::{
    EVENT_COLS, EventOut, SPAN_COLS, SPAN_COLS_LEN, SpanOut, event_row, span_row,
};
use crate::store::span_changes;

pub const SINK: &str = "push";

/// Which envelope a push sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushFormat {
    /// The Go version's envelope, field for field.
    V1,
    /// Everything, with a schema version and the source's identity.
    V2,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PushConfig {
    pub endpoint: Option<String>,
    pub interval: Duration,
    pub max_payload_bytes: u64,
    pub token: Option<String>,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub format: PushFormat,
    pub timeout: Duration,
    pub batch_records: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub cycle_budget: Duration,
    pub agent_id: Option<String>,
    /// This sidecar's identity on a central (`OCT_INSTANCE_ID`; default: the Fly.io
    /// machine id, else the host name) and its region (`OCT_REGION`; default `FLY_REGION`).
    pub instance_id: Option<String>,
    pub region: Option<String>,
}

/// The instance id a push names when `OCT_INSTANCE_ID` is not set.
pub fn default_instance_id() -> String {
    std::env::var("FLY_MACHINE_ID")
        .ok()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(super::hostname)
}

impl PushConfig {
    /// This daemon's instance id and region, as it names itself to a central (and, on
    /// a central, on its own host records).
    pub fn origin(&self) -> (String, Option<String>) {
        let instance = self.instance_id.clone().unwrap_or_else(default_instance_id);
        let region = self.region.clone().or_else(|| {
            std::env::var("FLY_REGION")
                .ok()
                .filter(|r| !r.trim().is_empty())
        });
        (instance, region)
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            endpoint: None,
            interval: Duration::from_secs(300),
            max_payload_bytes: 5_242_880,
            token: None,
            headers: Vec::new(),
            gzip: false,
            format: PushFormat::V1,
            timeout: Duration::from_secs(30),
            batch_records: 5000,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(300),
            cycle_budget: Duration::from_secs(60),
            agent_id: None,
            instance_id: None,
            region: None,
        }
    }
}

impl PushConfig {
    pub fn pacing(&self) -> Pacing {
        Pacing {
            interval: self.interval,
            cycle_budget: self.cycle_budget,
            retry_initial: self.retry_initial,
            retry_max: self.retry_max,
            // The Go version tried a batch 5 times before giving up the cycle.
            attempts_per_cycle: 5,
            first_delay: Duration::from_secs(1),
        }
    }
}

pub fn enabled(cfg: &PushConfig) -> bool {
    cfg.endpoint
        .as_deref()
        .is_some_and(|e| !e.trim().is_empty())
}

pub const SETTINGS: &[Setting<PushConfig>] = &[
    Setting {
        name: "push_endpoint",
        env: "OCT_PUSH_ENDPOINT",
        default: "",
        help: "URL batches are pushed to (push is off when empty); a token in its query is redacted in logs",
        set: |c, v| {
            let v = v.trim();
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(format!(
                    "expected an http:// or https:// URL, got {:?}",
                    redact_url(v)
                ));
            }
            c.endpoint = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        name: "push_interval",
        env: "OCT_PUSH_INTERVAL",
        default: "5m",
        help: "How often to push",
        set: |c, v| {
            c.interval = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "push_max_payload_bytes",
        env: "OCT_PUSH_MAX_PAYLOAD_BYTES",
        default: "5242880",
        help: "Largest request body one push sends (before gzip)",
        set: |c, v| {
            c.max_payload_bytes = parse_bytes(v)?.max(1024);
            Ok(())
        },
    },
    Setting {
        name: "push_token",
        env: "OCT_PUSH_TOKEN",
        default: "",
        help: "Sent as Authorization: Bearer <token>",
        set: |c, v| {
            c.token = Some(v.trim().to_string());
            Ok(())
        },
    },
    Setting {
        name: "push_headers",
        env: "OCT_PUSH_HEADERS",
        default: "",
        help: "Extra request headers, name=value pairs separated by commas (values may be %-encoded)",
        set: |c, v| {
            c.headers = parse_headers(v)?;
            Ok(())
        },
    },
    Setting {
        name: "push_gzip",
        env: "OCT_PUSH_GZIP",
        default: "off",
        help: "Compress request bodies with gzip",
        set: |c, v| {
            c.gzip = parse_bool(v)?;
            Ok(())
        },
    },
    Setting {
        name: "push_format",
        env: "OCT_PUSH_FORMAT",
        default: "v1",
        help: "v1: the Go version's envelope (LLM calls, errors, host metrics); v2: every record with a schema version",
        set: |c, v| {
            c.format = match v.trim().to_ascii_lowercase().as_str() {
                "v1" | "1" => PushFormat::V1,
                "v2" | "2" => PushFormat::V2,
                _ => return Err(format!("expected v1 or v2, got {v:?}")),
            };
            Ok(())
        },
    },
    Setting {
        name: "push_timeout",
        env: "OCT_PUSH_TIMEOUT",
        default: "30s",
        help: "Time allowed for one push request",
        set: |c, v| {
            c.timeout = parse_duration(v)?.max(Duration::from_millis(10));
            Ok(())
        },
    },
    Setting {
        name: "push_batch_records",
        env: "OCT_PUSH_BATCH_RECORDS",
        default: "5000",
        help: "Records in one push request, at most",
        set: |c, v| {
            c.batch_records = parse_u64(v)?.clamp(1, 100_000) as usize;
            Ok(())
        },
    },
    Setting {
        name: "push_retry_initial",
        env: "OCT_PUSH_RETRY_INITIAL",
        default: "500ms",
        help: "First wait after a failed push (then doubling, with full jitter)",
        set: |c, v| {
            c.retry_initial = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "push_retry_max",
        env: "OCT_PUSH_RETRY_MAX",
        default: "5m",
        help: "Longest wait between push attempts while the remote stays down",
        set: |c, v| {
            c.retry_max = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "push_cycle_budget",
        env: "OCT_PUSH_CYCLE_BUDGET",
        default: "60s",
        help: "Time one push cycle may spend draining a backlog before pausing",
        set: |c, v| {
            c.cycle_budget = parse_duration(v)?.max(Duration::from_millis(100));
            Ok(())
        },
    },
    Setting {
        name: "push_agent_id",
        env: "OCT_PUSH_AGENT_ID",
        default: "",
        help: "The agent's identity in the v2 envelope",
        set: |c, v| {
            c.agent_id = Some(v.trim().to_string());
            Ok(())
        },
    },
    Setting {
        name: "instance_id",
        env: "OCT_INSTANCE_ID",
        default: "",
        help: "This daemon's name: a sidecar's on a central, sent with every push; a central's, on its own host records (default: FLY_MACHINE_ID, else the host name)",
        set: |c, v| {
            c.instance_id = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            Ok(())
        },
    },
    Setting {
        name: "region",
        env: "OCT_REGION",
        default: "",
        help: "This sidecar's region, sent with every push (default: FLY_REGION)",
        set: |c, v| {
            c.region = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            Ok(())
        },
    },
];

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push: invalid header {0}")]
    Header(String),
    #[error("push: cannot build the HTTP client: {0}")]
    Client(String),
}

/// One record freshly encoded (one JSON object of the envelope's array).
pub struct PushRecord {
    row_id: i64,
    id: String,
    json: Vec<u8>,
}

impl PushRecord {
    pub fn json(&self) -> &[u8] {
        &self.json
    }
}

/// One record of a batch: a slice of the batch's request body, so a batch is held once.
pub struct PushItem {
    row_id: i64,
    id: String,
    body: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl PushItem {
    /// The item as it is in the envelope (one JSON object).
    pub fn json(&self) -> &[u8] {
        &self.body[self.range.clone()]
    }
}

impl Item for PushItem {
    fn row_id(&self) -> i64 {
        self.row_id
    }
    fn record_id(&self) -> &str {
        &self.id
    }
    fn payload(&self) -> String {
        String::from_utf8_lossy(self.json()).into_owned()
    }
}

/// Encodes records straight into one request body (envelope head, items, tail).
pub struct Packer {
    body: Vec<u8>,
    items: Vec<(i64, String, Range<usize>)>,
    last_row_id: i64,
}

impl Packer {
    fn new(head: &[u8], after: i64) -> Self {
        Packer {
            body: head.to_vec(),
            items: Vec::new(),
            last_row_id: after,
        }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    /// The body's size once `extra` more bytes of item are added (separator and tail included).
    fn size_with(&self, extra: usize) -> usize {
        self.body.len() + 1 + extra + 2
    }

    fn push(&mut self, r: PushRecord) {
        if !self.items.is_empty() {
            self.body.push(b',');
        }
        let start = self.body.len();
        self.body.extend_from_slice(&r.json);
        self.items.push((r.row_id, r.id, start..self.body.len()));
    }

    fn finish(mut self, tail: &[u8]) -> Batch<PushItem> {
        self.body.extend_from_slice(tail);
        let body = Arc::new(self.body);
        Batch {
            items: self
                .items
                .into_iter()
                .map(|(row_id, id, range)| PushItem {
                    row_id,
                    id,
                    body: body.clone(),
                    range,
                })
                .collect(),
            last_row_id: self.last_row_id,
        }
    }
}

/// Lets a whole batch's body go out as is, without a copy.
struct SharedBody(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

pub struct PushSink {
    endpoint: String,
    client: reqwest::Client,
    headers: HeaderMap,
    gzip: bool,
    format: PushFormat,
    batch_records: usize,
    /// Lowered when the remote answers 413, so later batches fit.
    payload_cap: AtomicU64,
    /// The v2 envelope's opening, up to the records array.
    v2_head: Vec<u8>,
    redactor: Redactor,
    /// This sidecar's state, sent to the central with each push.
    own_status: Mutex<OwnStatus>,
}

/// What [`PushSink`] knows of its own sidecar, refreshed as it reads.
#[derive(Default)]
struct OwnStatus {
    /// Rows after the cursor, per stream (as of its latest read).
    backlog: BTreeMap<&'static str, u64>,
    status: SidecarStatus,
    refreshed: Option<Instant>,
}

/// The store's and volume's figures and the open conditions are re-read this often.
const OWN_STATUS_EVERY: Duration = Duration::from_secs(10);

impl PushSink {
    pub fn from_config(cfg: &PushConfig) -> Result<Option<PushSink>, PushError> {
        let Some(endpoint) = cfg.endpoint.clone().filter(|_| enabled(cfg)) else {
            return Ok(None);
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if cfg.gzip {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
        }
        let token = cfg.token.clone().filter(|t| !t.is_empty());
        if let Some(t) = &token {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                PushError::Header("OCT_PUSH_TOKEN has characters a header cannot carry".into())
            })?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        for (k, v) in &cfg.headers {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|_| PushError::Header(k.clone()))?;
            let mut value = HeaderValue::from_str(v).map_err(|_| PushError::Header(k.clone()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("openclaw-trace/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PushError::Client(e.to_string()))?;
        let (instance, region) = cfg.origin();
        // Both formats name the sender in headers too (v1 bodies have no room for it).
        for (name, value) in [
            (crate::sources::fleet::INSTANCE_HEADER, Some(&instance)),
            (crate::sources::fleet::REGION_HEADER, region.as_ref()),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        let source = json!({
            "service": "openclaw-trace",
            "version": env!("CARGO_PKG_VERSION"),
            "host": {"name": super::hostname(), "os": std::env::consts::OS, "arch": std::env::consts::ARCH},
            "agent": {"id": cfg.agent_id.clone().filter(|a| !a.is_empty())},
            "instance": {"id": instance, "region": region},
        });
        let v2_head =
            format!("{{\"schema_version\":2,\"source\":{source},\"records\":[").into_bytes();
        let redactor = Redactor::new(
            &[endpoint.as_str()],
            &token.iter().map(String::as_str).collect::<Vec<_>>(),
            &cfg.headers,
        );
        Ok(Some(PushSink {
            endpoint,
            client,
            headers,
            gzip: cfg.gzip,
            format: cfg.format,
            batch_records: cfg.batch_records,
            payload_cap: AtomicU64::new(cfg.max_payload_bytes),
            v2_head,
            redactor,
            own_status: Mutex::new(OwnStatus::default()),
        }))
    }

    pub fn target(&self) -> String {
        redact_url(&self.endpoint)
    }

    pub fn format_name(&self) -> &'static str {
        match self.format {
            PushFormat::V1 => "v1",
            PushFormat::V2 => "v2",
        }
    }

    fn frame(&self) -> (&[u8], &'static [u8]) {
        match self.format {
            PushFormat::V1 => (b"{\"events\":[", b"]}"),
            PushFormat::V2 => (&self.v2_head, b"]}"),
        }
    }

    /// The request body for `items`: the batch's own body when they are the whole
    /// batch (no copy), else built from their slices (a part of a split batch).
    pub fn body(&self, items: &[PushItem]) -> Bytes {
        let (head, tail) = self.frame();
        // The batch's own tail (it may carry the audit head), else the plain one.
        let tail = items
            .last()
            .map(|l| &l.body[l.range.end..])
            .filter(|t| t.first() == Some(&b']'))
            .unwrap_or(tail);
        if let (Some(first), Some(last)) = (items.first(), items.last())
            && Arc::ptr_eq(&first.body, &last.body)
            && first.range.start == head.len()
            && last.range.end + tail.len() == last.body.len()
        {
            return Bytes::from_owner(SharedBody(first.body.clone()));
        }
        let len = head.len() + tail.len() + items.iter().map(|i| i.range.len() + 1).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(head);
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(it.json());
        }
        out.extend_from_slice(tail);
        Bytes::from(out)
    }

    /// Notes the stream's backlog at this read and, now and then, the store's size, the
    /// volume's use and the open host conditions: what the central shows of this sidecar.
    fn note_own_status(&self, conn: &Connection, stream: &Stream, after: i64) {
        let newest: i64 = conn
            .query_row(
                &format!("SELECT coalesce(max(id), 0) FROM {}", stream.table),
                [],
                |r| r.get(0),
            )
            .unwrap_or(after);
        let mut own = self.own_status.lock().unwrap_or_else(|p| p.into_inner());
        own.backlog
            .insert(stream.table, (newest - after).max(0) as u64);
        if own
            .refreshed
            .is_some_and(|t| t.elapsed() < OWN_STATUS_EVERY)
        {
            return;
        }
        own.refreshed = Some(Instant::now());
        if let Some(db) = conn.path().filter(|p| !p.is_empty()).map(Path::new) {
            let (file, wal) = crate::store::file_sizes(db);
            own.status.db_bytes = Some(file + wal);
            own.status.disk_used_percent = crate::store::volume_space(db)
                .filter(|(_, total)| *total > 0)
                .map(|(free, total)| {
                    (1000.0 * total.saturating_sub(free) as f64 / total as f64).round() / 10.0
                });
        }
        if let Ok(open) = crate::analytics::overview::open_conditions(conn, MAX_STATUS_CONDITIONS) {
            own.status.conditions = open.into_iter().map(|c| c.name).collect();
        }
    }

    fn own_status_header(&self) -> Option<HeaderValue> {
        let own = self.own_status.lock().unwrap_or_else(|p| p.into_inner());
        let status = SidecarStatus {
            backlog_records: Some(own.backlog.values().sum()),
            ..own.status.clone()
        };
        HeaderValue::from_str(&serde_json::to_string(&status).ok()?).ok()
    }

    /// Records as one batch (for the one-shot export).
    pub fn pack(&self, records: Vec<PushRecord>) -> Vec<PushItem> {
        let (head, tail) = self.frame();
        let mut p = Packer::new(head, 0);
        for r in records {
            p.push(r);
        }
        p.finish(tail).items
    }
}

/// Same records, same key: a receiver can recognise a retried batch.
pub fn idempotency_key(items: &[PushItem]) -> String {
    let mut h = Sha256::new();
    for it in items {
        h.update(it.id.as_bytes());
        h.update(b"\n");
    }
    crate::util::hex::encode(&h.finalize()[..16])
}

impl Sink for PushSink {
    type Item = PushItem;

    fn name(&self) -> &'static str {
        SINK
    }

    fn streams(&self) -> Vec<Stream> {
        // Spans changed after they were shipped go again in v2, which a central merges;
        // the Go version's receiver would count them twice.
        data_streams(true, true, true, self.format == PushFormat::V2)
    }

    fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn read(
        &self,
        conn: &Connection,
        stream: &Stream,
        after: i64,
    ) -> Result<Batch<PushItem>, StoreError> {
        let (head, tail) = self.frame();
        // The audit chain's newest signed head goes with every batch (#17), so a copy
        // of it lives outside this machine: `],"audit_head":{...}}`. Receivers that do
        // not know the field (the Go server) ignore it.
        let audit_tail = crate::store::audit::last_signed(conn)
            .ok()
            .flatten()
            .and_then(|h| serde_json::to_string(&h).ok())
            .map(|h| format!("],\"audit_head\":{h}}}").into_bytes());
        let tail: &[u8] = audit_tail.as_deref().unwrap_or(tail);
        self.note_own_status(conn, stream, after);
        let mut packer = Packer::new(head, after);
        let cap = self.payload_cap.load(Ordering::Relaxed) as usize;
        // Adds a record unless the payload would overflow (a lone oversized record still goes, alone).
        let take = |p: &mut Packer, rec: Option<PushRecord>, row_id: i64| -> bool {
            if let Some(r) = rec {
                if p.len() > 0 && p.size_with(r.json.len()) > cap {
                    return false;
                }
                p.push(r);
            }
            p.last_row_id = row_id;
            true
        };
        let limit = self.batch_records;
        let all = Selection::default();
        let mut full = false;
        match stream.table {
            "spans" => scan(
                conn,
                "spans",
                &format!("{SPAN_COLS}, id"),
                after,
                limit,
                &all,
                |r| {
                    let id: i64 = r.get(SPAN_COLS_LEN)?;
                    let item = self.span_item(id, span_row(r)?);
                    Ok(take(&mut packer, item, id) && packer.len() < limit)
                },
            )?,
            "events" => scan(conn, "events", EVENT_COLS, after, limit, &all, |r| {
                let e = event_row(r)?;
                let id = e.rowid;
                Ok(take(&mut packer, self.event_item(e), id) && packer.len() < limit)
            })?,
            "metric_points" if self.format == PushFormat::V2 => scan(
                conn,
                "metric_points",
                METRIC_COLS,
                after,
                limit,
                &all,
                |r| {
                    let m = metric_row(r)?;
                    let id = m.id;
                    Ok(take(&mut packer, Some(metric_item_v2(m)), id) && packer.len() < limit)
                },
            )?,
            "metric_points" => {
                // v1: one system_metric per host sample (the rows written together at one time).
                let mut read = 0usize;
                let mut sample: Vec<MetricRow> = Vec::new();
                scan(
                    conn,
                    "metric_points",
                    METRIC_COLS,
                    after,
                    limit,
                    &all,
                    |r| {
                        read += 1;
                        let m = metric_row(r)?;
                        if sample
                            .first()
                            .is_some_and(|s| s.time_ns != m.time_ns || s.source != m.source)
                        {
                            let last = sample.last().map_or(after, |s| s.id);
                            let done = std::mem::take(&mut sample);
                            if !take(&mut packer, system_metric_item(&done), last) {
                                full = true;
                                return Ok(false);
                            }
                        }
                        sample.push(m);
                        Ok(true)
                    },
                )?;
                // The last sample may continue past the limit: it waits for the next batch
                // unless it is all this batch has.
                if !full && !sample.is_empty() && (read < limit || packer.len() == 0) {
                    let last = sample.last().map_or(after, |s| s.id);
                    take(&mut packer, system_metric_item(&sample), last);
                }
            }
            "span_changes" if self.format == PushFormat::V2 => {
                let (changes, last) = span_changes::changes_after(conn, after, limit)?;
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {SPAN_COLS} FROM spans WHERE trace_id = ?1 AND span_id = ?2"
                ))?;
                for c in &changes {
                    let now = stmt
                        .query_row(params![&c.trace_id.0[..], &c.span_id.0[..]], span_row)
                        .optional()?;
                    // A span retention deleted since: nothing to ship.
                    let item = now.map(|s| span_update_item(c.id, s));
                    if !take(&mut packer, item, c.id) {
                        // The payload is full: the rest go in the next batch.
                        return Ok(packer.finish(tail));
                    }
                }
                // Every change read is consumed, those folded into a later one too.
                packer.last_row_id = last;
            }
            _ => {}
        }
        Ok(packer.finish(tail))
    }

    async fn send(&self, _stream: &Stream, items: &[PushItem]) -> Attempt {
        let body = self.body(items);
        let body_len = body.len();
        let body = if self.gzip {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body_len / 4),
                flate2::Compression::fast(),
            );
            match enc.write_all(&body).and_then(|_| enc.finish()) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    return Attempt::Retry {
                        reason: format!("gzip failed: {e}"),
                        retry_after: None,
                    };
                }
            }
        } else {
            body
        };
        let mut headers = self.headers.clone();
        if let Ok(v) = HeaderValue::from_str(&idempotency_key(items)) {
            headers.insert("idempotency-key", v);
        }
        if let Some(v) = self.own_status_header() {
            headers.insert(HeaderName::from_static(STATUS_HEADER), v);
        }
        let resp = self
            .client
            .post(&self.endpoint)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return delivery::classify_reqwest(e),
        };
        let (status, retry_after, text) = delivery::read_answer(resp).await;
        if status == 413 && items.len() > 1 {
            // Too large for this remote: later batches aim below what was refused.
            let lower = (body_len as u64 / 2).max(1024);
            self.payload_cap.fetch_min(lower, Ordering::Relaxed);
        }
        delivery::classify_http(status, retry_after, &text)
    }
}

/// Milliseconds since the epoch from nanoseconds (the Go version's `created_at`).
fn ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

/// The Go version's `metadata`: a JSON string of the attributes, or null.
fn metadata(attrs: &Value) -> Value {
    match attrs {
        Value::Object(m) if !m.is_empty() => Value::String(attrs.to_string()),
        _ => Value::Null,
    }
}

/// A span's stable record id: its trace and span ids.
pub fn span_record_id(s: &SpanOut) -> String {
    format!("{}-{}", s.trace_id, s.span_id)
}

/// One record as the body carries it, `type` before `data`, so a central reads each
/// record in one pass (`sources::fleet`).
#[derive(Serialize)]
struct ItemJson<'a, D> {
    #[serde(rename = "type")]
    ty: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    update: bool,
    data: &'a D,
}

fn item<D: Serialize>(row_id: i64, id: String, ty: &str, data: &D) -> PushRecord {
    record(row_id, id, ty, false, data)
}

fn record<D: Serialize>(row_id: i64, id: String, ty: &str, update: bool, data: &D) -> PushRecord {
    let json = serde_json::to_vec(&ItemJson {
        ty,
        id: &id,
        update,
        data,
    })
    .unwrap_or_default();
    PushRecord { row_id, id, json }
}

/// A span changed after it was shipped, as it is now (v2 only): a central merges it
/// into what it holds. Its id names the change, so it is not taken for a retry.
fn span_update_item(change_id: i64, s: SpanOut) -> PushRecord {
    let id = format!("{}@{change_id}", span_record_id(&s));
    record(change_id, id, "span", true, &s)
}

impl PushSink {
    pub fn span_item(&self, row_id: i64, s: SpanOut) -> Option<PushRecord> {
        let id = span_record_id(&s);
        match self.format {
            PushFormat::V2 => Some(item(row_id, id, "span", &s)),
            PushFormat::V1 => {
                if !matches!(s.kind.as_str(), "llm_call" | "embedding") {
                    return None;
                }
                // The Go version's status word: `ok`, or what the client reported as the failure.
                let status = match s.status.as_str() {
                    "error" => s
                        .status_message
                        .clone()
                        .filter(|m| m.len() <= 32 && !m.contains(char::is_whitespace))
                        .unwrap_or_else(|| "error".into()),
                    _ => "ok".into(),
                };
                let data = json!({
                    "trace_id": s.trace_id,
                    "created_at": ms(s.start_ns),
                    "provider": s.provider.clone().unwrap_or_default(),
                    "model": s.response_model.clone().or(s.request_model.clone()).unwrap_or_default(),
                    "input_text": s.input_text,
                    "output_text": s.output_text,
                    "prompt_tokens": s.input_tokens,
                    "completion_tokens": s.output_tokens,
                    "total_tokens": s.total_tokens,
                    "cost_usd": s.cost_usd,
                    "latency_ms": s.latency_ms.map(|l| l.round() as i64),
                    "status": status,
                    "error_type": s.error_type,
                    "metadata": metadata(&s.attributes),
                });
                Some(item(row_id, id, "llm_trace", &data))
            }
        }
    }

    pub fn event_item(&self, e: EventOut) -> Option<PushRecord> {
        let id = e.id.clone();
        match self.format {
            PushFormat::V2 => {
                let ty = match e.event_type.as_str() {
                    "error" => "error",
                    "log" => "log",
                    _ => "event",
                };
                Some(item(e.rowid, id, ty, &e))
            }
            PushFormat::V1 => {
                if e.event_type != "error" {
                    return None;
                }
                let data = json!({
                    "trace_id": e.trace_id.clone().unwrap_or_else(|| e.id.clone()),
                    "created_at": ms(e.time_ns),
                    "error_type": e.name,
                    "message": e.message.clone().unwrap_or_default(),
                    "stack_trace": e.stack_trace,
                    "severity": e.severity,
                    "metadata": metadata(&e.attributes),
                });
                Some(item(e.rowid, id, "error_event", &data))
            }
        }
    }
}

pub fn metric_item_v2(m: MetricRow) -> PushRecord {
    let id = format!("m{}-{}", m.id, m.time_ns);
    let row_id = m.id;
    item(row_id, id, "metric", &m)
}

/// Host metric names (OpenTelemetry system/process conventions) behind each Go field.
/// `Some(state)` matches the `*.state` attribute of a usage metric.
const SYSTEM_METRIC_FIELDS: &[(&str, &str, Option<&str>)] = &[
    ("cpu_pct", "system.cpu.utilization", None),
    ("mem_rss_bytes", "process.memory.usage", None),
    ("mem_available", "system.memory.usage", Some("free")),
    ("mem_available", "system.memory.available", None),
    ("mem_total", "system.memory.limit", None),
    ("disk_used_bytes", "system.filesystem.usage", Some("used")),
    ("disk_free_bytes", "system.filesystem.usage", Some("free")),
    ("disk_total_bytes", "system.filesystem.limit", None),
];

/// One Go `system_metric` from one host sample; None when the sample has none of its fields.
fn system_metric_item(sample: &[MetricRow]) -> Option<PushRecord> {
    let first = sample.first()?;
    if first.source != "host" {
        return None;
    }
    let mut data = Map::new();
    for m in sample {
        let Some(v) = m.value else { continue };
        let state = m
            .attributes
            .as_object()
            .and_then(|a| a.iter().find(|(k, _)| k.ends_with(".state")))
            .and_then(|(_, v)| v.as_str());
        for (field, name, want_state) in SYSTEM_METRIC_FIELDS {
            if m.name == *name
                && (want_state.is_none() || *want_state == state)
                && !data.contains_key(*field)
            {
                let v = if *field == "cpu_pct" {
                    // The convention's utilization is a ratio; the Go field is a percentage.
                    json!(if v <= 1.0 { v * 100.0 } else { v })
                } else {
                    json!(v.round() as i64)
                };
                data.insert(field.to_string(), v);
            }
        }
    }
    if data.is_empty() {
        return None;
    }
    let id = format!("m{}-{}", first.id, first.time_ns);
    let mut out = Map::new();
    out.insert("trace_id".into(), Value::String(id.clone()));
    out.insert("created_at".into(), json!(ms(first.time_ns)));
    for f in [
        "cpu_pct",
        "mem_rss_bytes",
        "mem_available",
        "mem_total",
        "disk_used_bytes",
        "disk_total_bytes",
        "disk_free_bytes",
    ] {
        out.insert(f.into(), data.remove(f).unwrap_or(Value::Null));
    }
    out.insert("metadata".into(), Value::Null);
    let row_id = sample.last().map_or(first.id, |m| m.id);
    Some(item(row_id, id, "system_metric", &out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, EventType, MetricPoint, Record, Span, SpanId, SpanKind, TraceId};

    fn seeded() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open_writer(&dir.path().join("t.db")).unwrap();
        let mut llm = Span::new(
            TraceId([1; 16]),
            SpanId([2; 8]),
            "chat gpt-4o".into(),
            SpanKind::LlmCall,
            1_700_000_000_000_000_000,
        );
        llm.end_ns = Some(llm.start_ns + 1_250_000_000);
        llm.provider = Some("openai".into());
        llm.request_model = Some("gpt-4o".into());
        llm.input_tokens = Some(10);
        llm.output_tokens = Some(5);
        llm.total_tokens = Some(15);
        llm.attributes.insert("k".into(), json!("v"));
        let tool = Span::new(
            TraceId([1; 16]),
            SpanId([3; 8]),
            "execute_tool ls".into(),
            SpanKind::ToolCall,
            1_700_000_000_000_000_000,
        );
        let mut err = Event::new(
            EventType::Error,
            "Timeout".into(),
            1_700_000_000_000_000_000,
        );
        err.message = Some("took too long".into());
        let mut cpu = MetricPoint::gauge("system.cpu.utilization", "1", 5, 0.25);
        cpu.source = "host";
        let mut mem = MetricPoint::gauge("system.memory.limit", "By", 5, 1000.0);
        mem.source = "host";
        let recs = vec![
            Record::Span(Box::new(llm)),
            Record::Span(Box::new(tool)),
            Record::Event(Box::new(err)),
            Record::Metric(Box::new(cpu)),
            Record::Metric(Box::new(mem)),
        ];
        let tx = conn.transaction().unwrap();
        crate::store::write::write_records(&tx, &recs, 1).unwrap();
        tx.commit().unwrap();
        (dir, conn)
    }

    fn sink(format: PushFormat) -> PushSink {
        let cfg = PushConfig {
            endpoint: Some("http://127.0.0.1:1/x?token=abc123".into()),
            format,
            ..Default::default()
        };
        PushSink::from_config(&cfg).unwrap().unwrap()
    }

    fn envelope(s: &PushSink, conn: &Connection, table: &str) -> Value {
        let stream = data_streams(true, true, true, false)
            .into_iter()
            .find(|st| st.table == table)
            .unwrap();
        let b = s.read(conn, &stream, 0).unwrap();
        serde_json::from_slice(&s.body(&b.items)).unwrap()
    }

    #[test]
    fn v1_is_the_go_envelope() {
        let (_d, conn) = seeded();
        let s = sink(PushFormat::V1);
        let v = envelope(&s, &conn, "spans");
        let events = v["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "only LLM calls are llm_trace items");
        let e = &events[0];
        assert_eq!(e["type"], "llm_trace");
        let d = &e["data"];
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "trace_id",
            "created_at",
            "provider",
            "model",
            "input_text",
            "output_text",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cost_usd",
            "latency_ms",
            "status",
            "error_type",
            "metadata",
        ];
        want.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, want);
        assert_eq!(d["created_at"], 1_700_000_000_000i64);
        assert_eq!(d["latency_ms"], 1250);
        assert_eq!(d["prompt_tokens"], 10);
        assert_eq!(d["status"], "ok");
        assert_eq!(d["metadata"], "{\"k\":\"v\"}");
        assert_eq!(e["id"], format!("{}-{}", "01".repeat(16), "02".repeat(8)));
        let v = envelope(&s, &conn, "events");
        assert_eq!(v["events"][0]["type"], "error_event");
        assert_eq!(v["events"][0]["data"]["error_type"], "Timeout");
        assert_eq!(v["events"][0]["data"]["message"], "took too long");
        let v = envelope(&s, &conn, "metric_points");
        let m = &v["events"][0];
        assert_eq!(m["type"], "system_metric");
        assert_eq!(m["data"]["cpu_pct"], 25.0);
        assert_eq!(m["data"]["mem_total"], 1000);
        assert!(m["data"]["disk_free_bytes"].is_null());
    }

    #[test]
    fn v2_sends_everything_with_identity() {
        let (_d, conn) = seeded();
        let s = sink(PushFormat::V2);
        let v = envelope(&s, &conn, "spans");
        assert_eq!(v["schema_version"], 2);
        assert!(v["source"]["host"]["name"].is_string());
        let recs = v["records"].as_array().unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1]["data"]["parent_span_id"], Value::Null);
        assert_eq!(recs[1]["data"]["kind"], "tool_call");
        let v = envelope(&s, &conn, "metric_points");
        assert_eq!(v["records"].as_array().unwrap().len(), 2);
        // A part of a split batch is a valid envelope of its own.
        let stream = data_streams(true, true, true, false)[0];
        let b = s.read(&conn, &stream, 0).unwrap();
        let part: Value = serde_json::from_slice(&s.body(&b.items[1..])).unwrap();
        assert_eq!(part["records"].as_array().unwrap().len(), 1);
        assert_eq!(part["records"][0]["data"]["kind"], "tool_call");
    }

    /// A span changed after it was stored goes again in v2, as it is now, once per batch
    /// however often it changed, marked as an update with an id of its own.
    #[test]
    fn v2_sends_changed_spans_again_as_updates() {
        let (_d, mut conn) = seeded();
        let s = sink(PushFormat::V2);
        let (t, sp) = ("01".repeat(16), "02".repeat(8));
        let changes = || data_streams(true, true, true, true)[3];
        assert_eq!(changes().table, "span_changes");
        let tx = conn.transaction().unwrap();
        for _ in 0..3 {
            tx.execute(
                "INSERT INTO span_changes (trace_id, span_id, time_ns)
                 SELECT trace_id, span_id, 5 FROM spans WHERE span_id = ?1",
                [&[2u8; 8][..]],
            )
            .unwrap();
        }
        // A change of a span retention deleted since.
        tx.execute(
            "INSERT INTO span_changes (trace_id, span_id, time_ns) VALUES (zeroblob(16), zeroblob(8), 6)",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
        let b = s.read(&conn, &changes(), 0).unwrap();
        assert_eq!(b.last_row_id, 4, "every change read is consumed");
        let v: Value = serde_json::from_slice(&s.body(&b.items)).unwrap();
        let recs = v["records"].as_array().unwrap();
        assert_eq!(recs.len(), 1, "{v}");
        assert_eq!(recs[0]["type"], "span");
        assert_eq!(recs[0]["update"], true);
        assert_eq!(recs[0]["id"], format!("{t}-{sp}@3"));
        assert_eq!(recs[0]["data"]["span_id"], sp);
        // v1 (the Go receiver) does not read them.
        let b = sink(PushFormat::V1).read(&conn, &changes(), 0).unwrap();
        assert!(b.items.is_empty());
        assert!(
            !sink(PushFormat::V1)
                .streams()
                .iter()
                .any(|st| st.table == "span_changes" && st.enabled)
        );
    }

    #[test]
    fn batches_respect_the_payload_cap_and_keys_are_stable() {
        let (_d, conn) = seeded();
        let s = sink(PushFormat::V2);
        s.payload_cap.store(10, Ordering::Relaxed);
        let stream = data_streams(true, true, true, false)[0];
        let b = s.read(&conn, &stream, 0).unwrap();
        assert_eq!(b.items.len(), 1, "a lone oversized item still goes");
        assert_eq!(b.last_row_id, b.items[0].row_id);
        let again = s.read(&conn, &stream, 0).unwrap();
        assert_eq!(idempotency_key(&b.items), idempotency_key(&again.items));
        assert!(!s.target().contains("abc123"));
    }
}
