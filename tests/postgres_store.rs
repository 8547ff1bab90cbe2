//! The PostgreSQL store against a real private server (`scripts/pg-private.sh`):
//! batches land in day partitions, a batch sent again is stored once, retention drops
//! whole days, a row dated outside the partition window waits in the default partition
//! and moves when its day is made, and a newer schema is refused. Counts are read with
//! `psql`, PostgreSQL's own client.

mod common;

use std::sync::Arc;

use common::PgServer;
use openclaw_trace::model::{
    Event, EventType, MetricPoint, Record, Span, SpanId, SpanKind, TraceId,
};
use openclaw_trace::store::postgres::{CURRENT_VERSION, PgStore};
use openclaw_trace::store::write::WriteEffect;
use serde_json::{Map, json};

const DAY_NS: i64 = 86_400 * 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn resource(instance: &str) -> Arc<Map<String, serde_json::Value>> {
    let v =
        json!({"service.name": "openclaw", "service.instance.id": instance, "cloud.region": "ams"});
    Arc::new(v.as_object().unwrap().clone())
}

fn span(i: u64, start_ns: i64, instance: &str) -> Record {
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&(0x0c7a_0000_0000 + i / 4).to_be_bytes());
    t[15] = 1;
    let mut s = Span::new(
        TraceId(t),
        SpanId((i + 1).to_be_bytes()),
        "chat gpt-4o".into(),
        SpanKind::LlmCall,
        start_ns,
    );
    s.end_ns = Some(start_ns + 800_000_000);
    s.provider = Some("openai".into());
    s.request_model = Some("gpt-4o".into());
    s.input_tokens = Some(1000 + i as i64);
    s.output_tokens = Some(100);
    s.cost_usd = Some(0.002);
    s.agent_id = Some("main".into());
    s.attributes
        .insert("gen_ai.operation.name".into(), json!("chat"));
    s.resource = resource(instance);
    Record::Span(Box::new(s))
}

fn event(i: u64, time_ns: i64) -> Record {
    let mut e = Event::new(EventType::Custom, "deploy".into(), time_ns);
    e.uid = format!("0193a1b2-0000-7000-8000-{i:012x}");
    e.message = Some(format!("release {i}"));
    e.resource = resource("side-a");
    Record::Event(Box::new(e))
}

/// A host metric point of a sidecar; `pushed`: one a client may send again (keyed).
fn point(i: u64, time_ns: i64, instance: &str, pushed: bool) -> Record {
    let mut m = MetricPoint::gauge("system.disk.used_pct", "%", time_ns, 40.0 + i as f64);
    m.attributes.insert("mount".into(), json!("/data"));
    m.resource = resource(instance);
    m.deduplicate = pushed;
    Record::Metric(Box::new(m))
}

fn tables(pg: &PgServer, parent: &str) -> String {
    pg.psql(&format!(
        "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{parent}'::regclass"
    ))
}

fn day_name(table: &str, ns: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(ns.div_euclid(1_000_000_000)).unwrap();
    format!(
        "{table}_{:04}{:02}{:02}",
        d.year(),
        d.month() as u8,
        d.day()
    )
}

#[tokio::test(flavor = "current_thread")]
async fn batches_land_in_day_partitions_once_and_retention_drops_whole_days() {
    let pg = PgServer::start();
    let mut store = PgStore::connect(&pg.url).await.unwrap();
    let now = now_ns();
    let today = now - now.rem_euclid(DAY_NS) + DAY_NS / 2;
    let yesterday = today - DAY_NS;
    let long_ago = today - 1000 * DAY_NS;

    // 600 spans over two days and 3 from 1,000 days ago, from two sidecars; 20 events.
    let mut batch = Vec::new();
    for i in 0..600u64 {
        // A run's four spans on one day; alternate runs on each day.
        let at = if (i / 4) % 2 == 0 { today } else { yesterday };
        batch.push(span(
            i,
            at + i as i64 * 1_000_000,
            if i % 3 == 0 { "side-b" } else { "side-a" },
        ));
    }
    for i in 600..603u64 {
        batch.push(span(i, long_ago + i as i64, "side-a"));
    }
    for i in 0..20u64 {
        batch.push(event(i, today + i as i64));
    }
    // 30 pushed metric points of two sidecars over both days (a point of each sidecar
    // at the same time: each its own series).
    for i in 0..30u64 {
        let at = if i < 15 { today } else { yesterday } + (i % 15) as i64 * 1_000_000_000;
        batch.push(point(
            i,
            at,
            if i % 2 == 0 { "side-a" } else { "side-b" },
            true,
        ));
    }
    let w = store.write(&batch, now).await.unwrap();
    assert_eq!(
        (w.spans, w.events, w.points, w.duplicates),
        (603, 20, 30, 0)
    );
    assert_eq!(w.effects.len(), batch.len());
    assert!(w.effects.iter().all(|e| *e == WriteEffect::Inserted));
    // Sent again (a retried push), in two halves: nothing new.
    let (a, b) = batch.split_at(300);
    let again = store.write(a, now).await.unwrap();
    let again2 = store.write(b, now).await.unwrap();
    assert_eq!((again.spans, again.events), (0, 0));
    assert_eq!(again.duplicates + again2.duplicates, 653);
    assert_eq!(pg.psql("SELECT count(*) FROM metric_points"), "30");
    assert_eq!(
        pg.psql(
            "SELECT string_agg(instance_id || '=' || n, ',' ORDER BY instance_id)
             FROM (SELECT instance_id, count(*) n FROM metric_points GROUP BY 1) x"
        ),
        "side-a=15,side-b=15"
    );
    // A point made where it is stored (not keyed) is never a duplicate.
    let own = [
        point(99, today, "central", false),
        point(99, today, "central", false),
    ];
    let w = store.write(&own, now).await.unwrap();
    assert_eq!((w.points, w.duplicates), (2, 0));
    assert_eq!(
        pg.psql("SELECT count(*) FROM metric_points WHERE point_key IS NULL"),
        "2"
    );

    assert_eq!(pg.psql("SELECT count(*) FROM spans"), "603");
    assert_eq!(pg.psql("SELECT count(*) FROM events"), "20");
    assert_eq!(
        pg.psql("SELECT count(DISTINCT (trace_id, span_id)) FROM spans"),
        "603"
    );
    let (t, y) = (day_name("spans", today), day_name("spans", yesterday));
    let mut want = [t.clone(), y.clone(), "spans_default".to_string()];
    want.sort();
    assert_eq!(tables(&pg, "spans"), want.join(","));
    assert_eq!(pg.psql(&format!("SELECT count(*) FROM {t}")), "300");
    assert_eq!(pg.psql("SELECT count(*) FROM spans_default"), "3");
    // Every row names its sidecar.
    assert_eq!(
        pg.psql(
            "SELECT string_agg(instance_id || '=' || n, ',' ORDER BY instance_id)
             FROM (SELECT instance_id, count(*) n FROM spans GROUP BY 1) x"
        ),
        "side-a=403,side-b=200"
    );
    assert_eq!(
        pg.psql("SELECT sum(input_tokens) FROM spans WHERE region = 'ams'"),
        (0..603).map(|i| 1000 + i).sum::<i64>().to_string()
    );

    // The runs' summaries and the hourly usage count each span once, however often
    // it was sent: the same totals as the spans themselves.
    let tokens: i64 = (0..603).map(|i| 1000 + i).sum();
    assert_eq!(
        pg.psql("SELECT count(*), sum(span_count), sum(llm_calls), sum(input_tokens) FROM traces"),
        format!("151|603|603|{tokens}")
    );
    assert_eq!(
        pg.psql(
            "SELECT string_agg(instance_id || '=' || calls || '/' || input_tokens, ',' ORDER BY instance_id)
             FROM (SELECT instance_id, sum(calls) calls, sum(input_tokens) input_tokens
                   FROM usage_hourly GROUP BY 1) x"
        ),
        pg.psql(
            "SELECT string_agg(instance_id || '=' || calls || '/' || input_tokens, ',' ORDER BY instance_id)
             FROM (SELECT instance_id, count(*) calls, sum(input_tokens) input_tokens
                   FROM spans WHERE kind = 'llm_call' GROUP BY 1) x"
        )
    );
    assert_eq!(
        pg.psql("SELECT round(sum(cost_usd)::numeric, 6) FROM usage_hourly"),
        "1.206000"
    );

    // A batch with two stored spans, two new ones and one of them twice: the new ones
    // are stored and counted once.
    let mixed = vec![
        span(0, today, "side-a"),
        span(700, today + 7, "side-a"),
        span(1, today + 1_000_000, "side-b"),
        span(701, today + 8, "side-a"),
        span(700, today + 7, "side-a"),
    ];
    let w = store.write(&mixed, now).await.unwrap();
    assert_eq!((w.spans, w.duplicates), (2, 3));
    // Each record's effect, in order: the span seen twice in the batch is new once.
    use WriteEffect::{Duplicate, Inserted};
    assert_eq!(
        w.effects[w.effects.len() - 5..],
        [Duplicate, Inserted, Duplicate, Inserted, Duplicate]
    );
    assert_eq!(
        pg.psql("SELECT count(*), sum(span_count), sum(input_tokens) FROM traces"),
        format!("152|605|{}", tokens + 1700 + 1701)
    );
    assert_eq!(pg.psql("SELECT sum(calls) FROM usage_hourly"), "605");

    // Retention: everything before today goes, yesterday as a whole table.
    let dropped = store.drop_before(today - DAY_NS / 2).await.unwrap();
    assert_eq!(
        dropped,
        vec![y.clone(), day_name("metric_points", yesterday)]
    );
    assert_eq!(pg.psql("SELECT count(*) FROM spans"), "302");
    assert_eq!(pg.psql("SELECT count(*) FROM spans_default"), "0");
    assert_eq!(
        tables(&pg, "spans"),
        [t.as_str(), "spans_default"].join(",")
    );
    assert_eq!(pg.psql("SELECT count(*) FROM events"), "20");
    // Yesterday's metric points went with their day's table.
    assert_eq!(pg.psql("SELECT count(*) FROM metric_points"), "17");
    assert_eq!(
        tables(&pg, "metric_points"),
        [
            day_name("metric_points", today).as_str(),
            "metric_points_default"
        ]
        .join(",")
    );
    assert_eq!(
        pg.psql("SELECT sum(span_count) FROM traces"),
        pg.psql("SELECT count(*) FROM spans")
    );

    // Yesterday's rows sent again after retention make its day again (a late push).
    store.write(&batch[4..5], now).await.unwrap();
    assert_eq!(pg.psql(&format!("SELECT count(*) FROM {y}")), "1");
}

#[tokio::test(flavor = "current_thread")]
async fn a_row_outside_the_window_waits_in_the_default_partition_until_its_day_is_made() {
    let pg = PgServer::start();
    let mut store = PgStore::connect(&pg.url).await.unwrap();
    let day = now_ns() - now_ns().rem_euclid(DAY_NS) + 3_600 * 1_000_000_000;
    // Seen from 1,000 days later, the day is outside the window: the default partition.
    store
        .write(&[span(1, day, "side-a")], day + 1000 * DAY_NS)
        .await
        .unwrap();
    assert_eq!(pg.psql("SELECT count(*) FROM spans_default"), "1");
    // Seen from that day, it gets its table, and the waiting row moves into it.
    store
        .write(&[span(2, day + 1, "side-a")], day)
        .await
        .unwrap();
    let name = day_name("spans", day);
    assert_eq!(pg.psql("SELECT count(*) FROM spans_default"), "0");
    assert_eq!(pg.psql(&format!("SELECT count(*) FROM {name}")), "2");
    // A second store (another central process) finds the day made and adds to it.
    let mut other = PgStore::connect(&pg.url).await.unwrap();
    other
        .write(&[span(3, day + 2, "side-b")], day)
        .await
        .unwrap();
    assert_eq!(pg.psql(&format!("SELECT count(*) FROM {name}")), "3");
}

#[tokio::test(flavor = "current_thread")]
async fn a_schema_newer_than_this_build_is_refused_by_name() {
    let pg = PgServer::start();
    PgStore::connect(&pg.url).await.unwrap();
    assert_eq!(
        pg.psql("SELECT version FROM oct_schema"),
        CURRENT_VERSION.to_string()
    );
    pg.psql("UPDATE oct_schema SET version = 99");
    let err = PgStore::connect(&pg.url).await.err().unwrap().to_string();
    assert_eq!(
        err,
        format!(
            "database schema version 99 is newer than this build understands ({CURRENT_VERSION}); upgrade openclaw-trace"
        )
    );
}

/// Whether the server says this connection is over TLS.
async fn encrypted(store: &PgStore) -> bool {
    store
        .client()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "current_thread")]
async fn tls_is_used_and_the_servers_certificate_is_verified() {
    let pg = PgServer::start_tls();
    let url = format!(
        "{}?sslmode=require&sslrootcert={}",
        pg.url,
        pg.ca_cert().display()
    );
    let store = PgStore::connect(&url).await.unwrap();
    assert!(encrypted(&store).await, "the connection is encrypted");
    // A certificate no trusted root signed is refused.
    let err = PgStore::connect(&format!("{}?sslmode=require", pg.url))
        .await
        .err()
        .unwrap()
        .to_string();
    eprintln!("without the CA: {err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // A CA file that is not there is named.
    let err = PgStore::connect(&format!(
        "{}?sslmode=require&sslrootcert=/nonexistent/ca.pem",
        pg.url
    ))
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.starts_with("PostgreSQL TLS: sslrootcert /nonexistent/ca.pem: "),
        "{err}"
    );
    // Without TLS when asked.
    let plain = PgStore::connect(&format!("{}?sslmode=disable", pg.url))
        .await
        .unwrap();
    assert!(!encrypted(&plain).await);
}

/// A span sent again with more said of it (`merge` set: a sidecar's span changed after
/// it was pushed, an OpenClaw piece) joins the stored row, even when its start moved to
/// the day before; the run's summary and the hourly usage count the merged row once;
/// the same piece again changes nothing.
#[tokio::test(flavor = "current_thread")]
async fn a_piece_merges_into_the_stored_span_across_days_and_counts_once() {
    let pg = PgServer::start();
    let mut store = PgStore::connect(&pg.url).await.unwrap();
    let now = now_ns();
    let today = now - now.rem_euclid(DAY_NS) + 60_000_000_000;
    // First form: the call started, no end, no usage yet.
    let Record::Span(first) = span(0, today, "side-a") else {
        unreachable!()
    };
    let mut first = *first;
    first.end_ns = None;
    first.input_tokens = None;
    first.output_tokens = None;
    first.cost_usd = None;
    let w = store
        .write(&[Record::Span(Box::new(first.clone()))], now)
        .await
        .unwrap();
    assert_eq!(w.effects, vec![WriteEffect::Inserted]);
    let sums = |pg: &PgServer| {
        pg.psql(
            "SELECT (SELECT count(*) FROM spans), (SELECT string_agg(concat_ws(',', span_count, llm_calls, input_tokens, output_tokens, total_tokens, COALESCE(cost_usd::text, 'null'), end_ns IS NOT NULL), ';') FROM traces),
                    (SELECT string_agg(concat_ws(',', calls, input_tokens, output_tokens, total_tokens, cost_usd, priced_calls), ';') FROM usage_hourly WHERE calls <> 0),
                    (SELECT COALESCE(sum(count), 0) FROM usage_latency_hourly)",
        )
    };
    assert_eq!(sums(&pg), "1|1,1,0,0,0,null,f|1,0,0,0,0,0|0");
    // Whole now, and starting two minutes earlier: the day before.
    let mut whole = first.clone();
    whole.start_ns = today - 120_000_000_000;
    whole.end_ns = Some(today + 800_000_000);
    whole.input_tokens = Some(1000);
    whole.output_tokens = Some(100);
    whole.cost_usd = Some(0.002);
    whole.merge = Some(Default::default());
    let w = store
        .write(&[Record::Span(Box::new(whole.clone()))], now)
        .await
        .unwrap();
    assert!(
        matches!(&w.effects[..], [WriteEffect::Merged(m)] if m.after.input_tokens == Some(1000) && m.before[0].input_tokens.is_none()),
        "{:?}",
        w.effects
    );
    let merged_sums = "1|1,1,1000,100,1100,0.002,t|1,1000,100,1100,0.002,1|1";
    assert_eq!(sums(&pg), merged_sums);
    assert_eq!(
        pg.psql("SELECT count(*), min(start_ns) FROM spans"),
        format!("1|{}", today - 120_000_000_000)
    );
    // The same piece again (a retried push): nothing changes.
    let w = store
        .write(&[Record::Span(Box::new(whole))], now)
        .await
        .unwrap();
    assert_eq!(w.effects, vec![WriteEffect::Duplicate]);
    assert_eq!(sums(&pg), merged_sums);
}

/// A run's root keeps its OpenClaw attributes on the run (what the OpenClaw views read),
/// replaced when a later root arrives; a database from before they were kept (schema 8)
/// gets them filled in from the stored roots when it is opened.
#[tokio::test(flavor = "current_thread")]
async fn a_runs_root_openclaw_attributes_are_kept_on_the_run_and_filled_in_on_upgrade() {
    let pg = PgServer::start();
    let mut store = PgStore::connect(&pg.url).await.unwrap();
    let t0 = now_ns();
    let root = |i: u64, key: &str| {
        let Record::Span(mut s) = span(i, t0 + i as i64, "side-a") else {
            unreachable!()
        };
        s.kind = SpanKind::AgentRun;
        s.parent_span_id = None;
        s.attributes
            .insert("openclaw.session_key".into(), json!(key));
        s.attributes
            .insert("openclaw.context.used".into(), json!(1200));
        s.attributes.insert("gen_ai.agent.id".into(), json!("main"));
        Record::Span(s)
    };
    // Spans 0..3 are one run (span() puts four in a trace): its root, then a later one.
    store.write(&[root(0, "agent:main:a")], t0).await.unwrap();
    let kept = || pg.psql("SELECT root_attributes FROM traces WHERE root_span_id IS NOT NULL");
    let want_a = r#"{"openclaw.context.used":1200,"openclaw.session_key":"agent:main:a"}"#;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&kept()).unwrap(),
        serde_json::from_str::<serde_json::Value>(want_a).unwrap()
    );
    // A child changes nothing; a later root replaces the attributes with its own.
    let Record::Span(mut child) = span(1, t0 + 1, "side-a") else {
        unreachable!()
    };
    child.parent_span_id = Some(SpanId(1u64.to_be_bytes()));
    store.write(&[Record::Span(child)], t0).await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&kept()).unwrap(),
        serde_json::from_str::<serde_json::Value>(want_a).unwrap()
    );
    store.write(&[root(2, "agent:main:b")], t0).await.unwrap();
    assert!(kept().contains("agent:main:b"), "{}", kept());
    // As a database of schema 8 was: no column. Opened again, it is filled in from the
    // root span stored.
    pg.psql("ALTER TABLE traces DROP COLUMN root_attributes; UPDATE oct_schema SET version = 8");
    drop(store);
    PgStore::connect(&pg.url).await.unwrap();
    assert_eq!(
        pg.psql("SELECT version FROM oct_schema"),
        CURRENT_VERSION.to_string()
    );
    let filled: serde_json::Value = serde_json::from_str(&kept()).unwrap();
    assert_eq!(
        filled,
        json!({"openclaw.context.used": 1200, "openclaw.session_key": "agent:main:b"})
    );
}
