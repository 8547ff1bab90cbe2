//! The receiving end of remote push (`POST /v1/push`): a central openclaw-trace takes
//! its sidecars' batches, in both envelopes the push sink sends (v1, the Go version's;
//! v2, every record), and turns them back into records. Every record is stamped with
//! its origin (`service.instance.id`, `cloud.region` in its resource), and keeps the
//! ids the sidecar gave it, so a retried or repeated batch is stored once: spans by
//! trace and span id, events by uid, metric points by series and time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::ingest::FieldError;
use crate::model::{
    CappedText, CostSource, Event, EventType, Histogram, MetricKind, MetricPoint, Record,
    SharedMap, Span, SpanId, SpanKind, SpanMerge, StatusCode, TraceId,
};
use crate::settings::{Setting, parse_duration};

/// Resource attributes that name a record's origin (OpenTelemetry's).
pub const INSTANCE_ATTRIBUTE: &str = "service.instance.id";
pub const REGION_ATTRIBUTE: &str = "cloud.region";
/// Headers the push sink sends with every request, in both formats.
pub const INSTANCE_HEADER: &str = "x-oct-instance-id";
pub const REGION_HEADER: &str = "x-oct-region";
/// A sidecar's own state, sent with every push as compact JSON ([`SidecarStatus`]).
pub const STATUS_HEADER: &str = "x-oct-sidecar-status";

/// What a sidecar tells its central of itself with each push: how far its push is
/// behind, how full its store and volume are, and its open host conditions.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct SidecarStatus {
    /// Records stored on the sidecar and not pushed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_records: Option<u64>,
    /// Its database file, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_bytes: Option<u64>,
    /// Percent in use of the volume holding its database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_used_percent: Option<f64>,
    /// Names of its open host conditions (at most [`MAX_STATUS_CONDITIONS`]).
    #[serde(default)]
    pub conditions: Vec<String>,
}

/// Conditions named in one status header, at most (a header stays small).
pub const MAX_STATUS_CONDITIONS: usize = 16;

impl SidecarStatus {
    /// The header's value; a status that does not parse is ignored (the records in
    /// the same push are still taken: a sidecar's state is never worth refusing data).
    pub fn parse(header: &str) -> Option<SidecarStatus> {
        let mut s: SidecarStatus = serde_json::from_str(header).ok()?;
        s.conditions.truncate(MAX_STATUS_CONDITIONS);
        s.disk_used_percent = s
            .disk_used_percent
            .filter(|p| p.is_finite() && (0.0..=100.0).contains(p));
        Some(s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FleetConfig {
    /// A sidecar silent for longer is an error condition.
    pub stale_after: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            stale_after: Duration::from_secs(15 * 60),
        }
    }
}

pub const SETTINGS: &[Setting<FleetConfig>] = &[Setting {
    name: "instance_stale_after",
    env: "OCT_INSTANCE_STALE_AFTER",
    default: "15m",
    help: "On a central receiving pushes: a sidecar silent for longer is an error condition (/v1/instances, /health)",
    set: |c, v| {
        c.stale_after = parse_duration(v)?;
        Ok(())
    },
}];

/// What the central knows of each sidecar that pushed to it. Kept in memory, and
/// recorded as an [`INSTANCE_EVENT`] at most every [`RECORD_EVERY_MS`] per sidecar, from
/// which a restarted central knows its sidecars again (the silent ones included).
#[derive(Default)]
pub struct Registry {
    seen: Mutex<BTreeMap<String, Instance>>,
    recorded_ms: Mutex<BTreeMap<String, i64>>,
}

/// The event that records a sidecar's state on the central.
pub const INSTANCE_EVENT: &str = "openclaw_trace.instance";
/// At most one [`INSTANCE_EVENT`] per sidecar this often.
pub const RECORD_EVERY_MS: i64 = 60_000;

/// One sidecar, as `GET /v1/instances` shows it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Instance {
    pub instance_id: String,
    pub region: Option<String>,
    pub version: Option<String>,
    pub host: Option<String>,
    pub agent_id: Option<String>,
    /// Envelope of its last push (1: the Go version's, 2: every record).
    pub format: u8,
    pub first_push_ms: i64,
    pub last_push_ms: i64,
    pub pushes: u64,
    pub records: u64,
    /// The newest record time in its last push: how far behind its data arrives.
    pub newest_record_ms: Option<i64>,
    /// What it said of itself with its last push (sidecars before this field: none).
    #[serde(default)]
    pub status: Option<SidecarStatus>,
}

impl Registry {
    /// Notes a batch accepted from `origin` at `now_ms`.
    pub fn saw(&self, b: &Batch, now_ms: i64) {
        let newest = b
            .records
            .iter()
            .map(|r| match r {
                Record::Span(s) => s.end_ns.unwrap_or(s.start_ns),
                Record::Event(e) => e.time_ns,
                Record::Metric(m) => m.time_ns,
            })
            .max()
            .map(|ns| ns / 1_000_000);
        let o = &b.origin;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let i = seen.entry(o.instance.clone()).or_insert_with(|| Instance {
            instance_id: o.instance.clone(),
            region: None,
            version: None,
            host: None,
            agent_id: None,
            format: b.format,
            first_push_ms: now_ms,
            last_push_ms: now_ms,
            pushes: 0,
            records: 0,
            newest_record_ms: None,
            status: None,
        });
        i.region = o.region.clone().or(i.region.take());
        i.version = o.version.clone().or(i.version.take());
        i.host = o.host.clone().or(i.host.take());
        i.agent_id = o.agent_id.clone().or(i.agent_id.take());
        i.format = b.format;
        i.last_push_ms = now_ms;
        i.pushes += 1;
        i.records += b.records.len() as u64;
        i.newest_record_ms = newest.max(i.newest_record_ms);
        if o.status.is_some() {
            i.status = o.status.clone();
        }
    }

    /// The event to store for this sidecar now, when its last one is older than
    /// [`RECORD_EVERY_MS`] (or it has none since this daemon started).
    pub fn record_due(&self, instance: &str, now_ms: i64) -> Option<Event> {
        let mut recorded = self.recorded_ms.lock().unwrap_or_else(|p| p.into_inner());
        if recorded
            .get(instance)
            .is_some_and(|t| now_ms - t < RECORD_EVERY_MS)
        {
            return None;
        }
        let i = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)?
            .clone();
        recorded.insert(instance.to_string(), now_ms);
        let mut e = Event::new(EventType::Custom, INSTANCE_EVENT.into(), now_ms * 1_000_000);
        e.severity = "info".into();
        e.category = Some("fleet".into());
        e.message = Some(format!("{} pushed {} records", i.instance_id, i.records));
        if let Value::Object(m) = serde_json::to_value(&i).unwrap_or_default() {
            e.attributes = m;
        }
        let mut resource = Map::new();
        resource.insert(INSTANCE_ATTRIBUTE.into(), i.instance_id.clone().into());
        e.resource = Arc::new(resource);
        e.source = "push";
        Some(e)
    }

    /// Knows again the sidecars recorded before a restart (the newest record of each),
    /// without overwriting what pushes since then said.
    pub fn restore(&self, recorded: Vec<Instance>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for i in recorded {
            seen.entry(i.instance_id.clone()).or_insert(i);
        }
    }

    pub fn instances(&self) -> Vec<Instance> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.values().cloned().collect()
    }

    /// Sidecars silent for longer than `stale_after`: (instance, silent for).
    pub fn stale(&self, stale_after: Duration, now_ms: i64) -> Vec<(String, Duration)> {
        self.instances()
            .into_iter()
            .filter_map(|i| {
                let silent = Duration::from_millis((now_ms - i.last_push_ms).max(0) as u64);
                (silent > stale_after).then_some((i.instance_id, silent))
            })
            .collect()
    }
}

/// Who sent a batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Origin {
    pub instance: String,
    pub region: Option<String>,
    pub version: Option<String>,
    pub agent_id: Option<String>,
    pub host: Option<String>,
    pub status: Option<SidecarStatus>,
}

/// A decoded batch: its sender and its records, all or nothing.
#[derive(Debug)]
pub struct Batch {
    pub origin: Origin,
    pub format: u8,
    pub records: Vec<Record>,
}

fn err(item: Option<usize>, field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        item,
        field: Some(field.to_string()),
        message: message.into(),
    }
}

/// Decodes a push body. `instance`/`region` are the request's headers; the v2
/// envelope's own `source.instance` wins over them.
pub fn decode(
    body: &[u8],
    instance: Option<&str>,
    region: Option<&str>,
) -> Result<Batch, FieldError> {
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let (format, source, mut records) = match is_object.then(|| decode_v2_in_one_pass(body)) {
        Some(Some((source, records))) => (2, source, records),
        _ => decode_items(body)?,
    };
    let origin = origin_of(source.as_ref(), instance, region);
    // A sidecar's records mostly share a few resources: each is stamped once and
    // shared by its records (less to allocate, queue and encode).
    let mut stamped = Vec::new();
    for r in &mut records {
        stamp(r, &origin, &mut stamped);
    }
    Ok(Batch {
        origin,
        format,
        records,
    })
}

/// Who sent a batch: the v2 envelope's `source` (absent in v1), else the headers.
fn origin_of(source: Option<&Value>, instance: Option<&str>, region: Option<&str>) -> Origin {
    let clean = |s: Option<&str>| s.map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    let mut origin = Origin {
        instance: clean(instance).unwrap_or_default(),
        region: clean(region),
        ..Origin::default()
    };
    if let Some(Value::Object(src)) = source {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(String::from);
        if let Some(Value::Object(inst)) = src.get("instance") {
            if let Some(id) = clean(inst.get("id").and_then(Value::as_str)) {
                origin.instance = id;
            }
            if let Some(r) = clean(inst.get("region").and_then(Value::as_str)) {
                origin.region = Some(r);
            }
        }
        origin.version = s(src.get("version"));
        origin.agent_id = s(src.get("agent").and_then(|a| a.get("id")));
        origin.host = s(src.get("host").and_then(|h| h.get("name")));
    }
    if origin.instance.is_empty() {
        origin.instance = origin.host.clone().unwrap_or_else(|| "unknown".into());
    }
    origin
}

/// Either envelope, each record read apart from the others, so a fault is named with
/// its item and field: the format, the v2 envelope's `source`, the records.
fn decode_items(body: &[u8]) -> Result<(u8, Option<Value>, Vec<Record>), FieldError> {
    // The envelope with its record lists and each record's `data` left as raw JSON:
    // each is decoded once, into what its type needs.
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        records: Option<&'a RawValue>,
        #[serde(borrow, default)]
        events: Option<&'a RawValue>,
        #[serde(default)]
        source: Option<Value>,
    }
    #[derive(serde::Deserialize)]
    struct Item<'a> {
        #[serde(rename = "type", default)]
        ty: Scalar,
        #[serde(default)]
        id: Scalar,
        #[serde(borrow, default)]
        data: Option<&'a RawValue>,
        /// A span the sidecar sends again, changed since it sent it (pieces merged
        /// into it): it joins the stored span rather than being skipped as a retry.
        #[serde(borrow, default)]
        update: Option<&'a RawValue>,
    }
    let not_envelope = |e: String| FieldError {
        item: None,
        field: None,
        message: format!("not a push envelope: {e}"),
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Not an object: say whether it is JSON at all.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => err(None, "records", "expected a JSON object envelope"),
                Err(e) => not_envelope(e.to_string()),
            },
        );
    }
    let top: Envelope = serde_json::from_slice(body).map_err(|e| not_envelope(e.to_string()))?;
    let (format, source, items) = if let Some(records) = top.records {
        (2, top.source, records)
    } else if let Some(events) = top.events {
        (1, None, events)
    } else {
        return Err(err(
            None,
            "records",
            "expected `records` (v2) or `events` (v1)",
        ));
    };
    let items: Vec<&RawValue> = serde_json::from_str(items.get()).map_err(|_| {
        err(
            None,
            if format == 2 { "records" } else { "events" },
            "expected an array",
        )
    })?;
    let mut records = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let item: Item = serde_json::from_str(item.get())
            .ok()
            .filter(|_| item.get().starts_with('{'))
            .ok_or_else(|| err(Some(i), "type", "expected an object"))?;
        let ty = item
            .ty
            .string()
            .ok_or_else(|| err(Some(i), "type", "required"))?;
        let id = item.id.string();
        let data = item
            .data
            .filter(|d| d.get().starts_with('{'))
            .ok_or_else(|| err(Some(i), "data", "expected an object"))?;
        if (format, ty.as_str()) == (2, "span") {
            let update = match item.update.map(RawValue::get) {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => return Err(err(Some(i), "update", "expected true or false")),
            };
            let mut span =
                span_v2(data.get()).map_err(|(field, message)| err(Some(i), field, message))?;
            if update {
                span.merge = Some(SpanMerge::default());
            }
            records.push(Record::Span(Box::new(span)));
            continue;
        }
        let data: Map<String, Value> = serde_json::from_str(data.get())
            .map_err(|_| err(Some(i), "data", "expected an object"))?;
        let r = match (format, ty.as_str()) {
            (2, "error" | "event" | "log") => {
                event_v2(data, &ty).map(|e| Record::Event(Box::new(e)))
            }
            (2, "metric") => metric_v2(data).map(|m| Record::Metric(Box::new(m))),
            (1, "llm_trace") => span_v1(data, id.as_deref()).map(|s| Record::Span(Box::new(s))),
            (1, "error_event") => event_v1(data, id.as_deref()).map(|e| Record::Event(Box::new(e))),
            (1, "system_metric") => {
                records.extend(
                    system_metric_v1(data)?
                        .into_iter()
                        .map(|m| Record::Metric(Box::new(m))),
                );
                continue;
            }
            _ => Err((
                "type",
                format!("unknown record type {ty:?} in a v{format} envelope"),
            )),
        }
        .map_err(|(field, message)| err(Some(i), field, message))?;
        records.push(r);
    }
    Ok((format, source, records))
}

/// A v2 envelope read in one pass, each record's `data` straight into what its type
/// needs (the push sink writes `type` before `data`), rather than [`decode_items`]'
/// four passes over the bytes. `None` for anything else (v1, `data` before `type`, any
/// fault at all): [`decode_items`] then reads it and names what is wrong, so both
/// agree on every body this one takes.
fn decode_v2_in_one_pass(body: &[u8]) -> Option<(Option<Value>, Vec<Record>)> {
    use serde::de::{Error, IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        records: Option<Vec<ItemRecord>>,
        #[serde(default)]
        source: Option<Value>,
    }
    #[derive(serde::Deserialize)]
    #[serde(field_identifier, rename_all = "lowercase")]
    enum Key {
        Type,
        Id,
        Data,
        Update,
        #[serde(other)]
        Other,
    }
    enum Data<'a> {
        Span(Box<SpanV2>),
        Map(Map<String, Value>),
        Raw(&'a RawValue),
    }
    struct ItemRecord(Record);
    impl<'de> serde::Deserialize<'de> for ItemRecord {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ItemRecord, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = ItemRecord;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a record")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<ItemRecord, A::Error> {
                    let give_up = || A::Error::custom("left to the item by item path");
                    let (mut ty, mut data, mut update, mut id) = (None, None, None, false);
                    while let Some(key) = a.next_key::<Key>()? {
                        match key {
                            Key::Type if ty.is_none() => match a.next_value::<Scalar>()? {
                                Scalar::Str(t) => ty = Some(t),
                                _ => return Err(give_up()),
                            },
                            Key::Data if data.is_none() => {
                                data = Some(match ty.as_deref() {
                                    Some("span") => Data::Span(Box::new(
                                        a.next_value::<ObjectOnly<SpanV2>>()?.0,
                                    )),
                                    Some("error" | "event" | "log" | "metric") => {
                                        Data::Map(a.next_value()?)
                                    }
                                    // Its type comes after it (as older sidecars write it):
                                    // kept as it is, read once the type is known.
                                    None => Data::Raw(a.next_value()?),
                                    Some(_) => return Err(give_up()),
                                })
                            }
                            Key::Update if update.is_none() => {
                                update = Some(a.next_value::<Option<bool>>()?.unwrap_or(false))
                            }
                            Key::Id if !id => {
                                id = true;
                                a.next_value::<IgnoredAny>()?;
                            }
                            Key::Other => {
                                a.next_value::<IgnoredAny>()?;
                            }
                            // A key twice.
                            _ => return Err(give_up()),
                        }
                    }
                    let (Some(ty), Some(data)) = (ty, data) else {
                        return Err(give_up());
                    };
                    let data = match data {
                        Data::Raw(raw) if ty == "span" => Data::Span(Box::new(
                            serde_json::from_str::<ObjectOnly<SpanV2>>(raw.get())
                                .map_err(|_| give_up())?
                                .0,
                        )),
                        Data::Raw(raw)
                            if matches!(ty.as_str(), "error" | "event" | "log" | "metric") =>
                        {
                            Data::Map(serde_json::from_str(raw.get()).map_err(|_| give_up())?)
                        }
                        Data::Raw(_) => return Err(give_up()),
                        known => known,
                    };
                    let record = match data {
                        Data::Raw(_) => unreachable!("read above"),
                        Data::Span(t) => {
                            let mut span = span_of(*t).map_err(|_| give_up())?;
                            if update == Some(true) {
                                span.merge = Some(SpanMerge::default());
                            }
                            Record::Span(Box::new(span))
                        }
                        Data::Map(m) if ty == "metric" => {
                            Record::Metric(Box::new(metric_v2(m).map_err(|_| give_up())?))
                        }
                        Data::Map(m) => {
                            Record::Event(Box::new(event_v2(m, &ty).map_err(|_| give_up())?))
                        }
                    };
                    Ok(ItemRecord(record))
                }
            }
            d.deserialize_map(V)
        }
    }
    /// `T` from a JSON object only (a derived struct also takes an array).
    struct ObjectOnly<T>(T);
    impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectOnly<T> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ObjectOnly<T>, D::Error> {
            struct V<T>(std::marker::PhantomData<T>);
            impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = T;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<T, A::Error> {
                    T::deserialize(serde::de::value::MapAccessDeserializer::new(a))
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
                .map(ObjectOnly)
        }
    }
    let e: Envelope = serde_json::from_slice(body).ok()?;
    Some((e.source, e.records?.into_iter().map(|r| r.0).collect()))
}

/// Distinct resources of a batch remembered for sharing, at most.
const SHARED_RESOURCES: usize = 16;

/// Names the record's origin in its resource (unless the sidecar already did). `seen`
/// holds the batch's resources already stamped (as received, as stamped).
fn stamp(r: &mut Record, o: &Origin, seen: &mut Vec<(SharedMap, SharedMap)>) {
    let resource = r.resource_mut();
    if let Some((_, done)) = seen.iter().find(|(received, _)| **received == **resource) {
        *resource = done.clone();
        return;
    }
    let received = resource.clone();
    let mut map = Map::clone(resource);
    map.entry(INSTANCE_ATTRIBUTE)
        .or_insert_with(|| o.instance.clone().into());
    if let Some(region) = &o.region {
        map.entry(REGION_ATTRIBUTE)
            .or_insert_with(|| region.clone().into());
    }
    *resource = Arc::new(map);
    if seen.len() < SHARED_RESOURCES {
        seen.push((received, resource.clone()));
    }
}

type Bad = (&'static str, String);

fn s(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(String::from)
}
fn i(m: &Map<String, Value>, k: &str) -> Option<i64> {
    m.get(k).and_then(Value::as_i64)
}
fn f(m: &Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64).filter(|f| f.is_finite())
}
fn obj(m: &mut Map<String, Value>, k: &str) -> Map<String, Value> {
    object_of(m.remove(k))
}
/// An object; v1's JSON text of one (`metadata`); anything else: empty.
fn object_of(v: Option<Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(o)) => o,
        // v1 sends `metadata` as a JSON string.
        Some(Value::String(t)) => match serde_json::from_str(&t) {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}
fn shared(m: Map<String, Value>) -> SharedMap {
    Arc::new(m)
}
fn req<T>(v: Option<T>, field: &'static str, what: &str) -> Result<T, Bad> {
    v.ok_or_else(|| (field, format!("required: {what}")))
}

/// The sources a sidecar names; anything else is kept as `push`.
fn source_name(s: Option<&str>) -> &'static str {
    const KNOWN: &[&str] = &[
        "api",
        "otlp",
        "openclaw",
        "openclaw-transcript",
        "host",
        "baseline",
        "budget",
    ];
    s.and_then(|s| KNOWN.iter().find(|k| **k == s).copied())
        .unwrap_or("push")
}

/// A v2 span as sent: the query API's span JSON. Decoded straight from the body, not
/// through `Value` maps (the central's main cost). Each field takes any JSON: one of
/// the wrong kind counts as absent, as a `Value` lookup would have it.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct SpanV2 {
    trace_id: Scalar,
    span_id: Scalar,
    kind: Scalar,
    start_ns: Scalar,
    name: Scalar,
    parent_span_id: Scalar,
    parent_trace_id: Scalar,
    end_ns: Scalar,
    status: Scalar,
    status_message: Scalar,
    agent_id: Scalar,
    session_id: Scalar,
    user_id: Scalar,
    operation: Scalar,
    provider: Scalar,
    request_model: Scalar,
    response_model: Scalar,
    input_tokens: Scalar,
    output_tokens: Scalar,
    total_tokens: Scalar,
    cache_read_tokens: Scalar,
    cache_write_tokens: Scalar,
    reasoning_tokens: Scalar,
    cost_usd: Scalar,
    cost_source: Scalar,
    cost_computed_usd: Scalar,
    finish_reasons: Option<Value>,
    tool_name: Scalar,
    tool_call_id: Scalar,
    error_type: Scalar,
    input_text: Scalar,
    input_text_len: Scalar,
    output_text: Scalar,
    output_text_len: Scalar,
    source: Scalar,
    attributes: Option<Value>,
    resource: Option<Value>,
}

/// A JSON value where a string or a number is expected; anything else is `Other`.
#[derive(Default)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    #[default]
    Other,
}

impl Scalar {
    fn str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
    fn string(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
    /// As `Value::as_i64`: an integer that fits.
    fn int(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// As `Value::as_f64`, finite only.
    fn float(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            _ => None,
        }
        .filter(|f| f.is_finite())
    }
}

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                // Too large for i64: a float, as `Value::as_i64` would not give it.
                Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A v2 span from its JSON object (`data`): decoded straight; an object serde's
/// derive refuses (a key given twice) goes through a `Value` map, the last value of a
/// key winning, as before.
fn span_v2(data: &str) -> Result<Span, Bad> {
    let t = match serde_json::from_str::<SpanV2>(data) {
        Ok(t) => t,
        Err(_) => serde_json::from_str::<Value>(data)
            .and_then(SpanV2::deserialize)
            .map_err(|e| ("data", format!("not a span: {e}")))?,
    };
    span_of(t)
}

fn span_of(t: SpanV2) -> Result<Span, Bad> {
    let trace = req(
        t.trace_id.str().and_then(TraceId::parse_hex),
        "trace_id",
        "32 hex digits",
    )?;
    let span = req(
        t.span_id.str().and_then(SpanId::parse_hex),
        "span_id",
        "16 hex digits",
    )?;
    let kind = req(
        t.kind.str().and_then(SpanKind::parse),
        "kind",
        "a span kind",
    )?;
    let start = req(t.start_ns.int(), "start_ns", "unix nanoseconds")?;
    let mut sp = Span::new(
        trace,
        span,
        t.name.string().unwrap_or_default(),
        kind,
        start,
    );
    sp.parent_span_id = t.parent_span_id.str().and_then(SpanId::parse_hex);
    sp.parent_trace_id = t.parent_trace_id.str().and_then(TraceId::parse_hex);
    sp.end_ns = t.end_ns.int();
    sp.status = t
        .status
        .str()
        .and_then(StatusCode::parse)
        .unwrap_or(StatusCode::Unset);
    sp.status_message = t.status_message.string();
    sp.agent_id = t.agent_id.string();
    sp.session_id = t.session_id.string();
    sp.user_id = t.user_id.string();
    sp.operation = t.operation.string();
    sp.provider = t.provider.string();
    sp.request_model = t.request_model.string();
    sp.response_model = t.response_model.string();
    sp.input_tokens = t.input_tokens.int();
    sp.output_tokens = t.output_tokens.int();
    sp.total_tokens = t.total_tokens.int();
    sp.cache_read_tokens = t.cache_read_tokens.int();
    sp.cache_write_tokens = t.cache_write_tokens.int();
    sp.reasoning_tokens = t.reasoning_tokens.int();
    sp.cost_usd = t.cost_usd.float();
    sp.cost_source = t.cost_source.str().and_then(CostSource::parse);
    sp.cost_computed_usd = t.cost_computed_usd.float();
    sp.finish_reasons = match t.finish_reasons {
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    sp.tool_name = t.tool_name.string();
    sp.tool_call_id = t.tool_call_id.string();
    sp.error_type = t.error_type.string();
    let capped = |text: Scalar, len: &Scalar| {
        let text = text.string()?;
        let original_len = len
            .int()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(text.len())
            .max(text.len());
        Some(CappedText { text, original_len })
    };
    sp.input = capped(t.input_text, &t.input_text_len);
    sp.output = capped(t.output_text, &t.output_text_len);
    sp.source = source_name(t.source.str());
    sp.attributes = object_of(t.attributes);
    sp.resource = shared(object_of(t.resource));
    Ok(sp)
}

/// A v2 error, event or log: the query API's event JSON (its `id` is the uid).
fn event_v2(mut d: Map<String, Value>, ty: &str) -> Result<Event, Bad> {
    let event_type = match ty {
        "error" => EventType::Error,
        "log" => EventType::Log,
        _ => s(&d, "type")
            .and_then(|t| EventType::parse(&t))
            .unwrap_or(EventType::Custom),
    };
    let uid = req(
        s(&d, "id").filter(|u| !u.is_empty()),
        "id",
        "the event's id",
    )?;
    let time = req(i(&d, "time_ns"), "time_ns", "unix nanoseconds")?;
    let mut e = Event::new(event_type, s(&d, "name").unwrap_or_default(), time);
    e.uid = uid;
    if let Some(sev) = s(&d, "severity") {
        e.severity = sev;
    }
    e.message = s(&d, "message");
    e.stack_trace = s(&d, "stack_trace");
    e.category = s(&d, "category");
    e.trace_id = s(&d, "trace_id").and_then(|t| TraceId::parse_hex(&t));
    e.span_id = s(&d, "span_id").and_then(|t| SpanId::parse_hex(&t));
    e.agent_id = s(&d, "agent_id");
    e.session_id = s(&d, "session_id");
    e.user_id = s(&d, "user_id");
    e.source = source_name(d.get("source").and_then(Value::as_str));
    e.attributes = obj(&mut d, "attributes");
    e.resource = shared(obj(&mut d, "resource"));
    Ok(e)
}

/// A v2 metric point: the query API's metric JSON.
fn metric_v2(mut d: Map<String, Value>) -> Result<MetricPoint, Bad> {
    let name = req(
        s(&d, "name").filter(|n| !n.is_empty()),
        "name",
        "the metric's name",
    )?;
    let kind = req(
        s(&d, "kind").and_then(|k| MetricKind::parse(&k)),
        "kind",
        "gauge, sum or histogram",
    )?;
    let time = req(i(&d, "time_ns"), "time_ns", "unix nanoseconds")?;
    let mut m = MetricPoint::gauge(name, s(&d, "unit").unwrap_or_default(), time, 0.0);
    m.kind = kind;
    m.value = f(&d, "value");
    m.start_time_ns = i(&d, "start_time_ns");
    if kind == MetricKind::Histogram {
        let nums = |k: &str| -> Vec<Value> {
            match d.get(k) {
                Some(Value::Array(a)) => a.clone(),
                Some(Value::String(t)) => serde_json::from_str(t).unwrap_or_default(),
                _ => Vec::new(),
            }
        };
        m.histogram = Some(Histogram {
            count: i(&d, "count").unwrap_or(0).max(0) as u64,
            sum: f(&d, "sum"),
            min: f(&d, "min"),
            max: f(&d, "max"),
            bounds: nums("bounds").iter().filter_map(Value::as_f64).collect(),
            bucket_counts: nums("bucket_counts")
                .iter()
                .filter_map(Value::as_u64)
                .collect(),
        });
    }
    m.temporality = match s(&d, "temporality").as_deref() {
        Some("cumulative") => Some("cumulative"),
        Some("delta") => Some("delta"),
        _ => None,
    };
    m.monotonic = d.get("monotonic").and_then(Value::as_bool);
    m.source = source_name(d.get("source").and_then(Value::as_str));
    m.attributes = obj(&mut d, "attributes");
    m.resource = shared(obj(&mut d, "resource"));
    // A retried batch carries the same points: stored once per series and time.
    m.deduplicate = true;
    Ok(m)
}

/// The item id v1 gives a span: `<trace id>-<span id>`.
fn v1_ids(id: Option<&str>) -> Option<(TraceId, SpanId)> {
    let (t, s) = id?.split_once('-')?;
    Some((TraceId::parse_hex(t)?, SpanId::parse_hex(s)?))
}

fn ms_to_ns(ms: i64) -> i64 {
    ms.saturating_mul(1_000_000)
}

/// A v1 `llm_trace` (the Go fields).
fn span_v1(mut d: Map<String, Value>, id: Option<&str>) -> Result<Span, Bad> {
    let (trace, span) = req(
        v1_ids(id),
        "id",
        "`<trace id>-<span id>`, as the push sink sends",
    )?;
    let start = ms_to_ns(req(i(&d, "created_at"), "created_at", "unix milliseconds")?);
    let model = s(&d, "model").filter(|m| !m.is_empty());
    let mut sp = Span::new(
        trace,
        span,
        format!("chat {}", model.as_deref().unwrap_or("unknown")),
        SpanKind::LlmCall,
        start,
    );
    sp.operation = Some("chat".into());
    sp.provider = s(&d, "provider").filter(|p| !p.is_empty());
    sp.request_model = model.clone();
    sp.response_model = model;
    sp.input_tokens = i(&d, "prompt_tokens");
    sp.output_tokens = i(&d, "completion_tokens");
    sp.total_tokens = i(&d, "total_tokens");
    sp.cost_usd = f(&d, "cost_usd");
    sp.cost_source = sp.cost_usd.map(|_| CostSource::Reported);
    if let Some(l) = f(&d, "latency_ms") {
        sp.end_ns = Some(start + (l * 1e6) as i64);
    }
    match s(&d, "status").as_deref() {
        None | Some("ok") => sp.status = StatusCode::Ok,
        Some(other) => {
            sp.status = StatusCode::Error;
            sp.status_message = Some(other.to_string());
        }
    }
    sp.error_type = s(&d, "error_type");
    sp.input = s(&d, "input_text").map(|t| CappedText {
        original_len: t.len(),
        text: t,
    });
    sp.output = s(&d, "output_text").map(|t| CappedText {
        original_len: t.len(),
        text: t,
    });
    sp.attributes = obj(&mut d, "metadata");
    sp.source = "push";
    Ok(sp)
}

/// A v1 `error_event`.
fn event_v1(mut d: Map<String, Value>, id: Option<&str>) -> Result<Event, Bad> {
    let uid = req(id.filter(|u| !u.is_empty()), "id", "the item's id")?;
    let time = ms_to_ns(req(i(&d, "created_at"), "created_at", "unix milliseconds")?);
    let mut e = Event::new(
        EventType::Error,
        s(&d, "error_type").unwrap_or_else(|| "error".into()),
        time,
    );
    e.uid = uid.to_string();
    e.message = s(&d, "message");
    e.stack_trace = s(&d, "stack_trace");
    if let Some(sev) = s(&d, "severity") {
        e.severity = sev;
    }
    e.trace_id = s(&d, "trace_id").and_then(|t| TraceId::parse_hex(&t));
    e.attributes = obj(&mut d, "metadata");
    e.source = "push";
    Ok(e)
}

/// A v1 `system_metric` back into the host metric points it was made from.
fn system_metric_v1(d: Map<String, Value>) -> Result<Vec<MetricPoint>, FieldError> {
    let time = ms_to_ns(
        i(&d, "created_at")
            .ok_or_else(|| err(None, "created_at", "required: unix milliseconds"))?,
    );
    let mut out = Vec::new();
    let mut point = |name: &str, unit: &str, value: Option<f64>, state: Option<(&str, &str)>| {
        if let Some(v) = value {
            let mut m = MetricPoint::gauge(name, unit, time, v);
            if let Some((k, s)) = state {
                m.attributes.insert(k.into(), s.into());
            }
            m.source = "host";
            m.deduplicate = true;
            out.push(m);
        }
    };
    point(
        "system.cpu.utilization",
        "1",
        f(&d, "cpu_pct").map(|p| p / 100.0),
        None,
    );
    point("process.memory.usage", "By", f(&d, "mem_rss_bytes"), None);
    point(
        "system.memory.available",
        "By",
        f(&d, "mem_available"),
        None,
    );
    point("system.memory.limit", "By", f(&d, "mem_total"), None);
    point(
        "system.filesystem.usage",
        "By",
        f(&d, "disk_used_bytes"),
        Some(("system.filesystem.state", "used")),
    );
    point(
        "system.filesystem.usage",
        "By",
        f(&d, "disk_free_bytes"),
        Some(("system.filesystem.state", "free")),
    );
    point(
        "system.filesystem.limit",
        "By",
        f(&d, "disk_total_bytes"),
        None,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The one-pass reading takes a body only when the item-by-item one reads the same
    /// records from it; everything else is left to the latter (which names the fault).
    #[test]
    fn the_one_pass_reading_agrees_with_the_item_by_item_one() {
        let ids = json!({"trace_id": "0a".repeat(16), "span_id": "0b".repeat(8),
            "kind": "tool_call", "start_ns": 1});
        let full_span = json!({"trace_id": "0a".repeat(16), "span_id": "0b".repeat(8),
            "parent_span_id": "0c".repeat(8), "kind": "llm_call", "name": "chat m",
            "start_ns": 1_700_000_000_000_000_000i64, "end_ns": 1_700_000_001_000_000_000i64,
            "status": "error", "status_message": "boom", "agent_id": "a", "session_id": "s",
            "user_id": "u", "operation": "chat", "provider": "openai", "request_model": "gpt",
            "response_model": "gpt-2025", "input_tokens": 10, "output_tokens": 2.5,
            "cache_read_tokens": 3, "cost_usd": 0.25, "cost_source": "computed",
            "finish_reasons": ["stop", 3], "tool_name": "t", "input_text": "héllo \"q\" \u{1F600}",
            "input_text_len": 99, "output_text": "ok", "source": "otlp",
            "attributes": {"k": [1, {"x": null}]}, "resource": {"service.name": "svc"}});
        let event = json!({"id": "e1", "type": "error", "time_ns": 5, "message": "m",
            "attributes": {"a": 1}});
        let metric = json!({"name": "cpu", "kind": "gauge", "time_ns": 5, "value": 0.5});
        let item = |ty: &str, data: Value| json!({"type": ty, "id": "x", "data": data});
        let envelope = |records: Value| {
            json!({"schema_version": 2, "records": records,
                "source": {"instance": {"id": "side-1", "region": "ams"}, "version": "1"}})
            .to_string()
        };
        let mut update = item("span", full_span.clone());
        update["update"] = json!(true);
        let taken = [
            envelope(json!([item("span", full_span.clone())])),
            envelope(json!([
                update,
                item("error", event.clone()),
                item("metric", metric.clone()),
                item("log", event.clone())
            ])),
            envelope(json!([])),
            envelope(json!([{"type": "span", "data": ids.clone(), "update": null, "extra": 1}])),
            // `data` before `type`, as older sidecars write it (and `json!` here).
            format!(
                r#"{{"records":[{{"data":{full_span},"type":"span"}},{{"data":{event},"type":"error"}}]}}"#
            ),
            // What the push sink sends, `type` first.
            format!(
                r#"{{"records":[{{"type":"span","id":"a","update":true,"data":{full_span}}}]}}"#
            ),
        ];
        let declined = [
            // A key twice, an array for an object, an unknown type, a bad field.
            format!(r#"{{"records":[{{"type":"span","type":"span","data":{ids}}}]}}"#),
            format!(r#"{{"records":[{{"type":"span","data":{ids},"data":{ids}}}]}}"#),
            format!(r#"{{"records":[{{"type":"span","id":1,"id":2,"data":{ids}}}]}}"#),
            r#"{"records":[{"type":"span","data":["aa","bb","llm_call"]}]}"#.to_string(),
            r#"{"records":[{"type":"mystery","data":{}}]}"#.to_string(),
            r#"{"records":[{"type":"span","data":{"trace_id":"zz"}}]}"#.to_string(),
            format!(r#"{{"records":[{{"type":"span","update":"yes","data":{ids}}}]}}"#),
            format!(
                r#"{{"records":[{{"type":"span","data":{}}}]}}"#,
                r#"{"trace_id":"0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a","trace_id":"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b","span_id":"0b0b0b0b0b0b0b0b","kind":"llm_call","start_ns":1}"#
            ),
            // v1, and no records at all.
            r#"{"events":[{"type":"llm_trace","id":"1","data":{"model":"m"}}]}"#.to_string(),
            r#"{"records":null}"#.to_string(),
            r#"{"records":{}}"#.to_string(),
        ];
        for body in &taken {
            let (source, fast) = decode_v2_in_one_pass(body.as_bytes()).expect(body);
            let (format, slow_source, slow) = decode_items(body.as_bytes()).unwrap();
            assert_eq!((2, source, fast), (format, slow_source, slow), "{body}");
        }
        for body in &declined {
            assert!(decode_v2_in_one_pass(body.as_bytes()).is_none(), "{body}");
        }
        // What the item-by-item reading makes of a key twice stands.
        let b = decode(declined[7].as_bytes(), None, None).unwrap();
        let Record::Span(s) = &b.records[0] else {
            panic!()
        };
        assert_eq!(s.trace_id.0, [0x0b; 16]);
    }

    /// A span sent again as an update joins the stored one (`merge`); a plain one is
    /// skipped as a retry when already stored.
    #[test]
    fn a_span_sent_as_an_update_is_a_piece_to_merge() {
        let span = |update: Option<bool>| {
            let mut item = json!({"type": "span", "id": "x", "data": {"trace_id": "01".repeat(16),
                "span_id": "02".repeat(8), "kind": "llm_call", "name": "chat m", "start_ns": 5}});
            if let Some(u) = update {
                item["update"] = json!(u);
            }
            let body = json!({"schema_version": 2, "records": [item]});
            let b = decode(body.to_string().as_bytes(), None, None).unwrap();
            let Record::Span(s) = &b.records[0] else {
                panic!()
            };
            s.merge.clone()
        };
        assert_eq!(span(Some(true)), Some(SpanMerge::default()));
        assert_eq!(span(Some(false)), None);
        assert_eq!(span(None), None);
        let body = json!({"schema_version": 2, "records": [{"type": "span", "update": "yes",
            "data": {"trace_id": "01".repeat(16), "span_id": "02".repeat(8), "start_ns": 5}}]});
        let e = decode(body.to_string().as_bytes(), None, None).unwrap_err();
        assert_eq!(
            (e.item, e.field.as_deref()),
            (Some(0), Some("update")),
            "{e:?}"
        );
    }

    #[test]
    fn v2_records_keep_their_ids_and_are_stamped_with_the_instance() {
        let body = json!({"schema_version": 2,
        "source": {"service": "openclaw-trace", "version": "0.1.0", "host": {"name": "h1"},
                   "instance": {"id": "fly-123", "region": "ams"}},
        "records": [
            {"type": "span", "id": "x", "data": {"trace_id": "01".repeat(16), "span_id": "02".repeat(8),
              "kind": "llm_call", "name": "chat m", "start_ns": 5, "status": "ok", "input_tokens": 7,
              "input_text": "abc", "input_text_len": 10, "resource": {"service.name": "a"}, "source": "otlp"}},
            {"type": "error", "id": "u1", "data": {"id": "u1", "time_ns": 9, "name": "E", "severity": "error"}}
        ]});
        let b = decode(body.to_string().as_bytes(), Some("header-id"), None).unwrap();
        assert_eq!(
            (
                b.format,
                b.origin.instance.as_str(),
                b.origin.region.as_deref()
            ),
            (2, "fly-123", Some("ams"))
        );
        let Record::Span(s) = &b.records[0] else {
            panic!()
        };
        assert_eq!((s.input_tokens, s.source), (Some(7), "otlp"));
        assert_eq!(s.input.as_ref().map(|t| t.original_len), Some(10));
        assert_eq!(s.resource["service.instance.id"], "fly-123");
        assert_eq!(s.resource["service.name"], "a");
        let Record::Event(e) = &b.records[1] else {
            panic!()
        };
        assert_eq!((e.uid.as_str(), e.event_type), ("u1", EventType::Error));
    }

    #[test]
    fn bad_envelopes_name_the_item_and_field() {
        let e = decode(b"[]", None, None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("records"));
        let e = decode(
            br#"{"records":[{"type":"span","data":{"span_id":"0202020202020202"}}]}"#,
            None,
            None,
        )
        .unwrap_err();
        assert_eq!((e.item, e.field.as_deref()), (Some(0), Some("trace_id")));
        let e = decode(br#"{"events":[{"type":"nope","data":{}}]}"#, None, None).unwrap_err();
        assert_eq!((e.item, e.field.as_deref()), (Some(0), Some("type")));
        let e = decode(
            br#"{"events":[{"type":"llm_trace","id":"bad","data":{"created_at":1}}]}"#,
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("id"));
        for (body, field) in [
            (&br#"not json"#[..], None),
            (br#"null"#, Some("records")),
            (br#"{"records": 5}"#, Some("records")),
            (br#"{"records": [5]}"#, Some("type")),
            (br#"{"records": [{"data": {}}]}"#, Some("type")),
            (
                br#"{"records": [{"type": "span", "data": [1]}]}"#,
                Some("data"),
            ),
            (br#"{"records": [{"type": "span"}]}"#, Some("data")),
        ] {
            let e = decode(body, None, None).unwrap_err();
            assert_eq!(
                e.field.as_deref(),
                field,
                "{}: {e:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    fn one_span(data: &str) -> Result<Span, FieldError> {
        let body = format!(r#"{{"records": [{{"type": "span", "data": {data}}}]}}"#);
        let mut b = decode(body.as_bytes(), Some("side"), None)?;
        match b.records.pop() {
            Some(Record::Span(s)) => Ok(*s),
            other => panic!("{other:?}"),
        }
    }

    /// A v2 span is read straight from the body as a `Value` lookup would read it: a
    /// field of the wrong kind is absent, a number too large for its field too, and a
    /// key given twice keeps its last value.
    #[test]
    fn v2_spans_read_typed_as_a_value_lookup_would() {
        let ids =
            r#""trace_id": "0101010101010101010101010101010a", "span_id": "020202020202020b""#;
        let s = one_span(&format!(
            r#"{{{ids}, "kind": "llm_call", "start_ns": 5, "end_ns": 9, "name": "chat",
               "agent_id": 5, "session_id": "s", "input_tokens": "7", "output_tokens": 3,
               "cost_usd": 0.5, "cost_computed_usd": "x", "finish_reasons": ["stop", 1],
               "attributes": {{"k": [1, {{"a": null}}]}}, "resource": "not an object",
               "output_text": "hé", "output_text_len": 1, "status": {{"code": 1}},
               "unknown": {{"deep": [1, 2]}}}}"#
        ))
        .unwrap();
        assert_eq!(s.trace_id.to_hex(), "0101010101010101010101010101010a");
        assert_eq!(
            (s.start_ns, s.end_ns, s.name.as_str()),
            (5, Some(9), "chat")
        );
        assert_eq!((s.agent_id, s.session_id.as_deref()), (None, Some("s")));
        assert_eq!((s.input_tokens, s.output_tokens), (None, Some(3)));
        assert_eq!((s.cost_usd, s.cost_computed_usd), (Some(0.5), None));
        assert_eq!(s.finish_reasons, ["stop"]);
        assert_eq!(s.attributes["k"], json!([1, {"a": null}]));
        assert_eq!(s.resource["service.instance.id"], "side");
        assert_eq!(s.resource.len(), 1);
        // The original length is never below the text's own.
        assert_eq!(
            s.output.map(|t| (t.text, t.original_len)),
            Some(("hé".into(), 3))
        );
        assert_eq!(s.status, StatusCode::Unset);
        let twice = one_span(&format!(
            r#"{{{ids}, "kind": "tool_call", "start_ns": 5, "agent_id": "a", "agent_id": "b"}}"#
        ))
        .unwrap();
        assert_eq!(twice.agent_id.as_deref(), Some("b"));
        for (start, ok) in [
            ("18446744073709551615", false),
            ("1.5", false),
            ("-3", true),
        ] {
            let r = one_span(&format!(
                r#"{{{ids}, "kind": "llm_call", "start_ns": {start}}}"#
            ));
            assert_eq!(r.is_ok(), ok, "start_ns {start}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.field.as_deref(), Some("start_ns"));
            }
        }
    }
}
