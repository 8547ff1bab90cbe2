//! Every statement the dashboard's main pages run reads the big tables through an
//! index. A database is filled through the real write path, the queries behind the
//! runs list (plain and filtered), one run, the sessions list, one session, usage, the
//! overview, the events list, the OpenClaw views, baselines and anomalies run on it with SQLite's statement trace on, and each
//! statement traced is put to `EXPLAIN QUERY PLAN`: no step may read all of `spans`,
//! `traces`, `events` or `span_keys` (a `SCAN`, or a walk of a whole index that no
//! LIMIT stops), since each costs what the whole cap holds on every request. The plans are printed for the record.

use std::collections::BTreeSet;
use std::sync::Mutex;

use openclaw_trace::analytics::baseline::{self, BaselineSettings};
use openclaw_trace::analytics::openclaw::{self, CacheBy, WasteRules, Window};
use openclaw_trace::analytics::overview::{self, Range};
use openclaw_trace::analytics::pricing::PriceTable;
use openclaw_trace::analytics::usage::{self, Dim, UsageQuery};
use openclaw_trace::model::{Event, EventType, Record, Span, SpanId, SpanKind, TraceId};
use openclaw_trace::store::query::{self, AgentRange, EventFilter, TraceFilter, TraceSort};
use openclaw_trace::store::{open_writer, sessions, write};
use rusqlite::Connection;
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use serde_json::json;

/// Each statement run: its text with `?` placeholders, and with the values bound.
static TRACED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn trace_sql(event: TraceEvent<'_>) {
    if let TraceEvent::Stmt(stmt, sql) = event {
        // Explained with the values bound, as run: a plan can depend on them.
        let bound = stmt.expanded_sql().unwrap_or_else(|| sql.to_string());
        TRACED.lock().unwrap().push((stmt.sql().to_string(), bound));
    }
}

/// Sorting every run ever kept by cost or duration reads the whole `traces` table (a
/// top-k sort, about 20 ms per 40,000 runs): an index for it would cost every run about
/// 30 bytes, for a sort a user asks for by clicking a column over all time. Any
/// filter or time range, and the default order, use an index.
/// The sessions list walks the runs newest first through an index and stops reading
/// once its page is full (`sessions::MAX_SCANNED_RUNS` at most).
const ALLOWED_SCANS: &[&str] = &[
    "FROM traces t WHERE 1=1 ORDER BY COALESCE(t.cost_usd, -1.0) DESC",
    "FROM traces t WHERE 1=1 ORDER BY COALESCE(t.end_ns - t.start_ns, -1) DESC",
    "SELECT session_id, start_ns FROM traces WHERE session_id IS NOT NULL ORDER BY start_ns DESC",
];

const BIG_TABLES: &[&str] = &["spans", "traces", "events", "span_keys", "audit_chain"];

fn fill(conn: &mut Connection, now_ns: i64) {
    let mut records = Vec::new();
    for run in 0..400u64 {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&(0x9a_0000 + run).to_be_bytes());
        t[15] = 7;
        // Twenty days of runs, one every 72 minutes: a day's window holds a twentieth.
        let start = now_ns - (400 - run as i64) * 72 * 60_000_000_000;
        let session = format!("session-{}", run / 10);
        let mut root = Span::new(
            TraceId(t),
            SpanId([1, 0, 0, 0, 0, 0, 0, 1]),
            "invoke_agent main".into(),
            SpanKind::AgentRun,
            start,
        );
        root.end_ns = Some(start + 9_000_000_000);
        root.agent_id = Some(format!("agent-{}", run % 3));
        root.session_id = Some(session.clone());
        let mut resource = serde_json::Map::new();
        resource.insert(
            "service.instance.id".into(),
            json!(format!("side-{}", run % 2)),
        );
        root.resource = std::sync::Arc::new(resource);
        for c in 0..4u8 {
            let mut s = Span::new(
                TraceId(t),
                SpanId([2, c, 0, 0, 0, 0, 0, 1]),
                "chat gpt-4o".into(),
                SpanKind::LlmCall,
                start + c as i64 * 1_000_000_000,
            );
            s.parent_span_id = Some(root.span_id);
            s.end_ns = Some(s.start_ns + 800_000_000);
            s.provider = Some("openai".into());
            s.request_model = Some("gpt-4o".into());
            s.input_tokens = Some(1000);
            s.output_tokens = Some(100);
            s.cost_usd = Some(0.002);
            s.agent_id = root.agent_id.clone();
            s.session_id = Some(session.clone());
            s.resource = root.resource.clone();
            records.push(Record::Span(Box::new(s)));
        }
        records.push(Record::Span(Box::new(root)));
        let mut e = Event::new(EventType::Error, "ToolError".into(), start + 5);
        e.trace_id = Some(TraceId(t));
        e.agent_id = Some(format!("agent-{}", run % 3));
        records.push(Record::Event(Box::new(e)));
    }
    let tx = conn.transaction().unwrap();
    write::write_records(&tx, &records, now_ns).unwrap();
    tx.commit().unwrap();
}

/// Each alias in `sql` (`FROM spans s`, `JOIN traces AS t`) and the table it names.
fn aliases(sql: &str) -> std::collections::HashMap<String, String> {
    const NOT_ALIASES: &[&str] = &[
        "WHERE", "JOIN", "LEFT", "INNER", "CROSS", "ON", "GROUP", "ORDER", "LIMIT", "UNION",
        "USING", "NATURAL", "INDEXED", "NOT", "WINDOW", "HAVING",
    ];
    let words: Vec<&str> = sql
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = std::collections::HashMap::new();
    for (i, w) in words.iter().enumerate() {
        if !(w.eq_ignore_ascii_case("FROM") || w.eq_ignore_ascii_case("JOIN")) {
            continue;
        }
        let (Some(table), Some(mut next)) = (words.get(i + 1), words.get(i + 2)) else {
            continue;
        };
        if next.eq_ignore_ascii_case("AS") {
            let Some(n) = words.get(i + 3) else { continue };
            next = n;
        }
        if !NOT_ALIASES.iter().any(|k| next.eq_ignore_ascii_case(k)) {
            out.insert(next.to_string(), table.to_string());
        }
    }
    out
}

#[test]
fn the_dashboards_queries_read_the_big_tables_through_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open_writer(&dir.path().join("trace.db")).unwrap();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    fill(&mut conn, now_ns);
    let first_trace = {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&(0x9a_0000u64 + 17).to_be_bytes());
        t[15] = 7;
        TraceId(t)
    };

    conn.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, Some(trace_sql))
        .unwrap();
    let page = query::list_traces(&conn, &TraceFilter::default(), 50, None).unwrap();
    assert_eq!(page.items.len(), 50);
    let next = page.next_cursor.clone();
    query::list_traces(&conn, &TraceFilter::default(), 50, next.as_deref()).unwrap();
    for f in [
        TraceFilter {
            agent_id: Some("agent-1".into()),
            ..Default::default()
        },
        TraceFilter {
            session_id: Some("session-3".into()),
            ..Default::default()
        },
        TraceFilter {
            sort: TraceSort::Cost,
            ..Default::default()
        },
        TraceFilter {
            sort: TraceSort::Duration,
            ..Default::default()
        },
        TraceFilter {
            sort: TraceSort::Cost,
            from_ns: Some(now_ns - 3_600_000_000_000),
            ..Default::default()
        },
        TraceFilter {
            instance: Some("side-1".into()),
            ..Default::default()
        },
        TraceFilter {
            model: Some("gpt-4o".into()),
            ..Default::default()
        },
        TraceFilter {
            from_ns: Some(now_ns - 3_600_000_000_000),
            ..Default::default()
        },
    ] {
        query::list_traces(&conn, &f, 50, None).unwrap();
    }
    let detail = query::trace_detail(&conn, &first_trace).unwrap().unwrap();
    assert_eq!(detail.spans.len(), 1);
    let sessions = sessions::list_sessions(&conn, &AgentRange::default(), 50, None).unwrap();
    assert_eq!(sessions.items.len(), 40);
    sessions::session_detail(&conn, "session-7", 50, None)
        .unwrap()
        .unwrap();
    usage::query(
        &conn,
        &UsageQuery {
            group_by: vec![Dim::Model],
            from_ns: Some(now_ns - 24 * 3_600_000_000_000),
            to_ns: Some(now_ns),
            ..Default::default()
        },
    )
    .unwrap();
    overview::figures(&conn, Range::aligned(None, None, now_ns), Dim::Model).unwrap();
    query::list_events(
        &conn,
        &EventFilter {
            event_type: Some("error".into()),
            ..Default::default()
        },
        50,
        None,
    )
    .unwrap();
    // The OpenClaw views, over the last day.
    let w = Window {
        from_ns: now_ns - 24 * 3_600_000_000_000,
        to_ns: now_ns,
        ..Default::default()
    };
    openclaw::context(&conn, &w, 0.8, 50).unwrap();
    openclaw::subagents(&conn, &w).unwrap();
    openclaw::channels(&conn, &w).unwrap();
    openclaw::fallbacks(&conn, &w).unwrap();
    openclaw::scheduled(&conn, &w, 50).unwrap();
    openclaw::waste(&conn, &w, &WasteRules::default(), None).unwrap();
    openclaw::waste(&conn, &w, &WasteRules::default(), Some(first_trace)).unwrap();
    let prices = PriceTable::load(None).unwrap();
    for by in [CacheBy::Agent, CacheBy::Model, CacheBy::Session] {
        openclaw::cache(&conn, &prices, &w, by).unwrap();
    }
    // Baselines, anomalies and what the overview shows beside its figures.
    let settings = BaselineSettings {
        runs: 20,
        min_runs: 5,
        threshold: 3.0,
    };
    baseline::show(&conn, None, 20).unwrap();
    baseline::show(&conn, Some("agent-1"), 20).unwrap();
    baseline::check(&conn, &first_trace, &settings).unwrap();
    baseline::list_anomalies(&conn, &AgentRange::default(), 50, None).unwrap();
    overview::open_conditions(&conn, 20).unwrap();
    overview::agent_now(&conn, now_ns - 3_600_000_000_000).unwrap();
    conn.trace_v2(TraceEventCodes::empty(), None::<fn(TraceEvent<'_>)>)
        .unwrap();

    // One of each statement (a session's figures run once per session listed).
    let mut seen = BTreeSet::new();
    let statements: Vec<String> = TRACED
        .lock()
        .unwrap()
        .iter()
        .filter(|(template, _)| {
            let head = template.split_whitespace().next().unwrap_or("");
            (head.eq_ignore_ascii_case("SELECT") || head.eq_ignore_ascii_case("WITH"))
                && seen.insert(template.clone())
        })
        .map(|(_, bound)| bound.trim().to_string())
        .collect();
    assert!(statements.len() >= 10, "{statements:?}");
    // The daemon never runs ANALYZE, so its planner goes by heuristics; a database a
    // user ran ANALYZE on (or a later version's `PRAGMA optimize`) gives it statistics.
    // Both must plan well.
    let mut scans = Vec::new();
    for stats in ["without statistics", "after ANALYZE"] {
        if stats == "after ANALYZE" {
            conn.execute_batch("ANALYZE").unwrap();
        }
        eprintln!("== {stats}");
        scans.extend(
            full_scans(&conn, &statements)
                .into_iter()
                .map(|s| format!("{stats}: {s}")),
        );
    }
    assert!(
        scans.is_empty(),
        "full scans of big tables:\n{}",
        scans.join("\n")
    );
}

/// The steps of `statements`' plans that read a whole big table, each with its statement.
fn full_scans(conn: &Connection, statements: &[String]) -> Vec<String> {
    let mut scans = Vec::new();
    for sql in statements {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = st
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        eprintln!(
            "{}\n    {}",
            &one_line[..one_line.len().min(160)],
            plan.join("\n    ")
        );
        let aliases = aliases(sql);
        for step in &plan {
            let words: Vec<&str> = step.split_whitespace().collect();
            let table = words
                .get(1)
                .map(|w| aliases.get(*w).map(String::as_str).unwrap_or(w));
            // A walk of a whole index is a scan too, unless a LIMIT stops it early.
            let bounded = step.contains("USING") && one_line.contains(" LIMIT ");
            if words.first() == Some(&"SCAN")
                && table.is_some_and(|t| BIG_TABLES.contains(&t))
                && !bounded
                && !ALLOWED_SCANS.iter().any(|a| one_line.contains(a))
            {
                scans.push(format!("{step}   <- {one_line}"));
            }
        }
    }
    scans
}
