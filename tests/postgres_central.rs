//! A fleet's central on PostgreSQL (`OCT_DATABASE_URL`): the real binary against a
//! private PostgreSQL server. Real sidecars push to it; it is killed with SIGKILL in the
//! middle and restarted; at the end PostgreSQL holds every record exactly once, counted
//! with `psql`. And the store interface answers the same on both stores: the same
//! requests to a SQLite daemon and to a PostgreSQL one give the same runs list and run.

mod common;

use std::time::Duration;

use common::fleet::{TOKEN, capture, free_port, post, sidecar, sidecar_with, wait_until};
use common::webhook::fake_webhook;
use common::{Daemon, PgServer, client, now_ms, now_ms_within_today};
use serde_json::{Value, json};

fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let r = client().get(d.url(path)).bearer_auth(TOKEN).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// A number `psql` printed.
fn n(pg: &PgServer, sql: &str) -> i64 {
    let out = pg.psql(sql);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: {out:?}"))
}

/// Rows per sidecar in the central's table (the central's own record of each sidecar
/// is not the sidecar's data).
fn per_instance(pg: &PgServer, table: &str, id: &str) -> i64 {
    // Nor the host conditions its host may have (a disk nearly full).
    let own = if table == "events" {
        " AND name != 'openclaw_trace.instance' AND source != 'host'"
    } else {
        ""
    };
    n(
        pg,
        &format!("SELECT count(*) FROM {table} WHERE instance_id = '{id}'{own}"),
    )
}

#[test]
fn sidecars_push_to_a_central_on_postgresql_that_survives_sigkill_and_keeps_each_record_once() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    // A fleet budget across every sidecar's calls, whose alerts go to a webhook
    // (which fails its first delivery).
    let hook = fake_webhook();
    let central_env = [
        ("OCT_PORT", port_s.as_str()),
        ("OCT_AUTH_TOKEN", TOKEN),
        ("OCT_DATABASE_URL", pg.url.as_str()),
        ("OCT_BUDGETS", "global/day=20000 tokens"),
        ("OCT_ALERT_WEBHOOK", hook.url.as_str()),
    ];
    let mut central = Daemon::start_in(dir.path(), &central_env);
    let (_, health) = get(&central, "/health");
    assert_eq!(health["store"], "postgresql", "{health}");
    assert!(
        !dir.path().join("trace.db").exists(),
        "no SQLite file on PostgreSQL"
    );

    // Sidecars a and b sample their host's memory and disk every second.
    let host = [
        (
            "OCT_HOST_DISABLE",
            "cpu,cgroup,diskio,network,dns,processes,self,agent,llm",
        ),
        ("OCT_METRICS_INTERVAL", "1s"),
    ];
    let mut a = sidecar_with(port, "side-a", "v2", &host);
    let mut b = sidecar_with(port, "side-b", "v1", &host);
    // A third sidecar pushes once and goes away before the central's restart.
    let mut c = sidecar(port, "side-c", "v2");
    // The fleet budget is read at the end, minutes on: all of it in one UTC day.
    let t = now_ms_within_today(30_000, 300_000) - 30_000;
    let mut tokens_a = capture(&a, "alpha", 0, 40, t);
    let mut tokens_b = capture(&b, "beta", 0, 40, t);
    let tokens_c = capture(&c, "gamma", 0, 3, t);
    wait_until(
        "the first half at the central",
        Duration::from_secs(30),
        || {
            per_instance(&pg, "spans", "side-a") == 40
                && per_instance(&pg, "spans", "side-b") == 40
                && per_instance(&pg, "spans", "side-c") == 3
        },
    );
    c.stop();
    // The first half (10,693 tokens) crossed half the fleet budget: alerted, and
    // delivered (the queue is empty once the webhook took it).
    wait_until("the 50 % alert delivered", Duration::from_secs(30), || {
        n(&pg, "SELECT count(*) FROM alert_outbox") == 0 && hook.received.lock().unwrap().len() == 1
    });
    assert_eq!(
        n(&pg, "SELECT count(*) FROM budget_alerts"),
        1,
        "{}",
        pg.psql("SELECT * FROM budget_alerts")
    );

    // The central dies mid-stream; the sidecars keep capturing and retry.
    central.kill9();
    tokens_a += capture(&a, "alpha", 40, 60, t);
    tokens_b += capture(&b, "beta", 40, 60, t);
    std::thread::sleep(Duration::from_millis(1500));
    let central = Daemon::start_in(dir.path(), &central_env);
    wait_until("everything at the central", Duration::from_secs(40), || {
        per_instance(&pg, "spans", "side-a") == 100
            && per_instance(&pg, "spans", "side-b") == 100
            && per_instance(&pg, "events", "side-a") == 4
            && per_instance(&pg, "events", "side-b") == 4
    });
    // A few more push cycles: nothing is stored twice.
    std::thread::sleep(Duration::from_millis(2500));
    for (id, tokens) in [("side-a", tokens_a), ("side-b", tokens_b)] {
        assert_eq!(per_instance(&pg, "spans", id), 100, "{id} spans once each");
        assert_eq!(per_instance(&pg, "events", id), 4, "{id} errors once each");
        assert_eq!(
            n(
                &pg,
                &format!(
                    "SELECT count(DISTINCT (trace_id, span_id)) FROM spans WHERE instance_id = '{id}'"
                )
            ),
            100
        );
        // The numbers agree with each sidecar's own, in the spans, the runs and the
        // hourly usage the central keeps.
        for sql in [
            "SELECT sum(total_tokens) FROM spans WHERE instance_id = '{id}'",
            "SELECT sum(total_tokens) FROM traces WHERE instance_id = '{id}'",
            "SELECT sum(total_tokens) FROM usage_hourly WHERE instance_id = '{id}'",
        ] {
            assert_eq!(n(&pg, &sql.replace("{id}", id)), tokens, "{sql} for {id}");
        }
    }
    assert_eq!(
        common::count(&a.db_path, "SELECT sum(total_tokens) FROM spans"),
        tokens_a
    );
    // Host metrics: each sidecar's samples, once each, through the SIGKILL. Stopped,
    // a sidecar has pushed what its cursor says (its last push included); the central
    // holds exactly that: every point in v2; in v1 (the Go format: one
    // `system_metric` per sample, fewer figures) every sample.
    a.stop();
    b.stop();
    for (id, d) in [("side-a", &a), ("side-b", &b)] {
        let pushed = |what: &str| {
            common::count(
                &d.db_path,
                &format!(
                    "SELECT {what} FROM metric_points WHERE id <= (SELECT last_id FROM sink_cursors WHERE sink = 'push' AND tbl = 'metric_points')"
                ),
            )
        };
        assert_eq!(
            pushed("count(*)"),
            common::count(&d.db_path, "SELECT count(*) FROM metric_points"),
            "{id}: the last push's cursor is kept"
        );
        let samples = pushed("count(DISTINCT time_ns)");
        assert!(samples >= 5, "{id}: {samples} samples pushed");
        let held = |what: &str| {
            n(
                &pg,
                &format!("SELECT {what} FROM metric_points WHERE instance_id = '{id}'"),
            )
        };
        // The last push was acknowledged; its commit follows within moments.
        wait_until("the last push committed", Duration::from_secs(10), || {
            held("count(DISTINCT time_ns)") >= samples
        });
        assert_eq!(held("count(DISTINCT time_ns)"), samples, "{id}");
        assert_eq!(
            held("count(*)"),
            held("count(DISTINCT (name, attributes, time_ns))"),
            "{id}: each point once"
        );
        if id == "side-a" {
            assert_eq!(held("count(*)"), pushed("count(*)"), "{id}: every point");
        }
    }
    // Which machine is short of disk: the fleet's disk series, one per sidecar, and
    // one sidecar's alone.
    let (status, names) = get(&central, "/v1/metrics/names");
    assert_eq!(status, 200, "{names}");
    // (A v1 push carries a host's disk usage, used and free, as the Go format has it.)
    let disk = "system.filesystem.usage";
    assert!(
        names["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == disk),
        "{names}"
    );
    let instances_of = |q: &str| {
        let (status, r) = get(&central, &format!("/v1/metrics?name={disk}{q}"));
        assert_eq!(status, 200, "{r}");
        let mut ids: Vec<String> = r["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["attributes"]["service.instance.id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    assert_eq!(instances_of(""), ["side-a", "side-b"]);
    assert_eq!(
        instances_of("&attr.system.filesystem.state=used"),
        ["side-a", "side-b"]
    );
    assert_eq!(instances_of("&attr.service.instance.id=side-b"), ["side-b"]);

    // The fleet budget: what every sidecar spent, each threshold alerted once (the
    // 50 % before the SIGKILL was not alerted again after it), stored as events and
    // delivered to the webhook once each.
    let fleet_tokens = tokens_a + tokens_b + tokens_c;
    assert!(fleet_tokens >= 20_000, "{fleet_tokens}");
    let (status, budget) = get(&central, "/v1/budget");
    assert_eq!(status, 200, "{budget}");
    let global = &budget["budgets"][0];
    assert_eq!(global["budget"], "global/day/tokens", "{budget}");
    assert_eq!(global["spent"], fleet_tokens as f64, "{budget}");
    assert_eq!(global["alerted"], json!([50, 80, 100]), "{budget}");
    assert_eq!(
        pg.psql("SELECT string_agg(threshold::text, ',' ORDER BY threshold) FROM budget_alerts WHERE budget = 'global/day/tokens'").trim(),
        "50,80,100"
    );
    assert_eq!(
        n(
            &pg,
            "SELECT count(*) FROM events WHERE name = 'budget_alert' AND instance_id IS NULL"
        ),
        3
    );
    wait_until("three alerts delivered", Duration::from_secs(30), || {
        hook.received.lock().unwrap().len() >= 3 && n(&pg, "SELECT count(*) FROM alert_outbox") == 0
    });
    let mut delivered: Vec<i64> = hook
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|a| a["threshold_pct"].as_i64().unwrap())
        .collect();
    delivered.sort();
    assert_eq!(delivered, [50, 80, 100], "each alert delivered once");
    assert!(
        *hook.attempts.lock().unwrap() >= 4,
        "the failed first delivery was retried"
    );

    // The fleet's usage through the API: every sidecar's calls, once.
    let (status, usage) = get(&central, "/v1/usage?percentiles=false&group_by=agent");
    assert_eq!(status, 200, "{usage}");
    assert_eq!(
        usage["totals"]["total_tokens"],
        tokens_a + tokens_b + tokens_c,
        "{usage}"
    );
    assert_eq!(usage["totals"]["calls"], 203, "{usage}");
    // Per sidecar: each one's own totals, as each sidecar counts them itself.
    let (status, by_instance) = get(&central, "/v1/usage?percentiles=false&group_by=instance");
    assert_eq!(status, 200, "{by_instance}");
    let own = |d: &Daemon| {
        common::count(
            &d.db_path,
            "SELECT sum(total_tokens) FROM spans WHERE kind = 'llm_call'",
        )
    };
    let want = [
        ("side-a", tokens_a, own(&a)),
        ("side-b", tokens_b, own(&b)),
        ("side-c", tokens_c, own(&c)),
    ];
    let rows = by_instance["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{by_instance}");
    for (id, tokens, sidecar_own) in want {
        let row = rows.iter().find(|r| r["instance_id"] == id).unwrap();
        assert_eq!(row["total_tokens"], tokens, "{id}: {row}");
        assert_eq!(row["total_tokens"], sidecar_own, "{id}: {row}");
    }
    let (status, one) = get(&central, "/v1/usage?percentiles=false&instance=side-b");
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["totals"]["total_tokens"], tokens_b, "{one}");
    // v2 keeps everything a sidecar knows: texts, sessions, agents.
    assert_eq!(
        n(
            &pg,
            "SELECT count(*) FROM spans WHERE session_id = 'alpha-s' AND input_text LIKE 'alpha question %'"
        ),
        100
    );

    // The runs list filters by sidecar and pages by cursor.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = get(
            &central,
            &format!("/v1/traces?instance=side-b&limit=30{cursor}"),
        );
        assert_eq!(status, 200, "{page}");
        for r in page["traces"].as_array().unwrap() {
            assert!(r["agent_id"].is_null(), "v1 carries no agent: {r}");
            seen.push(r["trace_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 100);
    // One run, with its span.
    let (status, run) = get(&central, &format!("/v1/traces/{}", seen[0]));
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["trace"]["span_count"], 1, "{run}");
    assert_eq!(run["spans"][0]["provider"], "openai", "{run}");

    // The sidecars, known again after the restart (side-c has not pushed since).
    let (_, list) = get(&central, "/v1/instances");
    let ids: Vec<&str> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["instance_id"].as_str())
        .collect();
    for id in ["side-a", "side-b", "side-c"] {
        assert!(ids.contains(&id), "{id} in {list}");
    }

    // Which agent is failing: every sidecar's errors, once each.
    let (status, errors) = get(&central, "/v1/errors?limit=1000");
    assert_eq!(status, 200, "{errors}");
    let captured = errors["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] != "host")
        .count();
    assert_eq!(captured, 10, "{errors}");
    let (_, alpha) = get(&central, "/v1/errors?agent_id=alpha&limit=1000");
    assert_eq!(alpha["errors"].as_array().unwrap().len(), 4, "{alpha}");

    // What is not on PostgreSQL yet says so, naming the endpoint.
    let (status, body) = get(&central, "/v1/scores");
    assert_eq!(status, 501, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("GET /v1/scores"),
        "{body}"
    );
}

/// Spans and an error, the same on both daemons: two runs, one of two spans with an
/// error, priced, and one with a tool call.
fn same_capture(d: &Daemon, t_ns: i64) {
    let tid = "4bf92f3577b34da6a3ce929d0e0e4736";
    let spans = json!({"resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "agent"}}]},
    "scopeSpans": [{"spans": [
        {"traceId": tid, "spanId": "00f067aa0ba902b7", "name": "invoke_agent planner",
         "startTimeUnixNano": t_ns.to_string(), "endTimeUnixNano": (t_ns + 3_000_000_000i64).to_string(),
         "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "invoke_agent"}},
                        {"key": "gen_ai.agent.id", "value": {"stringValue": "planner"}},
                        {"key": "session.id", "value": {"stringValue": "s-1"}}]},
        {"traceId": tid, "spanId": "00f067aa0ba902b8", "parentSpanId": "00f067aa0ba902b7",
         "name": "chat gpt-4o", "startTimeUnixNano": (t_ns + 1_000_000).to_string(),
         "endTimeUnixNano": (t_ns + 900_000_000i64).to_string(),
         "status": {"code": 2, "message": "rate limited"},
         "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                        {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1200"}},
                        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "80"}},
                        {"key": "gen_ai.agent.id", "value": {"stringValue": "planner"}}]}
    ]}]}]});
    post(d, "/v1/traces", &spans);
    post(
        d,
        "/v1/traces",
        &json!([{"trace_id": "5bf92f3577b34da6a3ce929d0e0e4736", "span_id": "10f067aa0ba902b7",
                 "provider": "anthropic", "model": "claude-sonnet-4-5", "prompt_tokens": 500,
                 "completion_tokens": 40, "agent_id": "writer", "timestamp": t_ns / 1_000_000 + 5,
                 "latency_ms": 700, "input_text": "write it", "output_text": "done"}]),
    );
    post(
        d,
        "/v1/errors",
        &json!([{"error_type": "timeout", "message": "slow tool", "agent_id": "writer",
                 "trace_id": tid, "timestamp": t_ns / 1_000_000 + 9}]),
    );
    // A run with a tool call, an error call and a sub-run (by parent_trace_id), its
    // children before its root; errors and custom events.
    let ms = t_ns / 1_000_000;
    let (t1, t3) = (
        "11111111111111111111111111111111",
        "33333333333333333333333333333333",
    );
    post(
        d,
        "/v1/traces",
        &json!([
            {"provider":"openai","model":"gpt-4o","trace_id":t1,"span_id":"0000000000000002","parent_span_id":"0000000000000001","prompt_tokens":100,"completion_tokens":20,"cost_usd":0.002,"timestamp":ms+1000,"latency_ms":500,"agent_id":"main","session_id":"s1"},
            {"kind":"tool_call","tool_name":"ls","trace_id":t1,"span_id":"0000000000000003","parent_span_id":"0000000000000002","timestamp":ms+1600,"latency_ms":50},
            {"provider":"local","model":"my-local-model","trace_id":t1,"span_id":"0000000000000004","parent_span_id":"0000000000000001","prompt_tokens":50,"completion_tokens":5,"timestamp":ms+2000,"latency_ms":300,"status":"error","error_type":"rate_limited"},
            {"kind":"agent_run","name":"agent main","trace_id":t1,"span_id":"0000000000000001","timestamp":ms,"latency_ms":3000,"agent_id":"main","session_id":"s1","user_id":"u1"},
            {"kind":"agent_run","name":"sub agent","trace_id":t3,"span_id":"00000000000000aa","parent_trace_id":t1,"timestamp":ms+3000,"latency_ms":200,"agent_id":"sub"}
        ]),
    );
    post(
        d,
        "/v1/errors",
        &json!({"error_type":"RateLimit","message":"429 from provider","trace_id":t1,"span_id":"0000000000000004","category":"provider","timestamp":ms+2001}),
    );
    post(
        d,
        "/v1/events",
        &json!([{"name":"checkpoint","attributes":{"step":1},"trace_id":t1,"timestamp":ms+2500},
                {"name":"other","agent_id":"helper","timestamp":ms+2600}]),
    );
    // OTLP metrics: a gauge of two series and a cumulative counter (its rate), over
    // four minutes.
    let point = |i: i64, v: f64, attrs: Value| json!({"timeUnixNano": (t_ns + i * 60_000_000_000).to_string(), "asDouble": v, "attributes": attrs});
    let queue = |i: i64, q: &str, v: f64| {
        point(i, v, json!([{"key": "queue", "value": {"stringValue": q}}]))
    };
    let gauge: Vec<Value> = (0..4)
        .flat_map(|i| {
            [
                queue(i, "a", 10.0 + i as f64),
                queue(i, "b", 5.0 * i as f64),
            ]
        })
        .collect();
    let counter: Vec<Value> = (0..4)
        .map(|i| {
            let mut p = point(i, 100.0 * i as f64, json!([]));
            p["startTimeUnixNano"] = json!(t_ns.to_string());
            p
        })
        .collect();
    post(
        d,
        "/v1/metrics",
        &json!({"resourceMetrics": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "agent"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "agent.queue.depth", "unit": "1", "gauge": {"dataPoints": gauge}},
            {"name": "agent.requests", "unit": "1", "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": counter}}
        ]}]}]}),
    );
}

/// The answer without the event ids each daemon made (`id` in each event of `key`).
fn without_event_ids(mut v: Value, key: &str) -> Value {
    if let Some(items) = v[key].as_array_mut() {
        for e in items {
            e["id"] = Value::Null;
        }
    }
    v
}

#[test]
fn the_runs_list_and_one_run_answer_the_same_on_sqlite_and_postgresql() {
    let pg = PgServer::start();
    let sqlite = Daemon::start(&[("OCT_AUTH_TOKEN", TOKEN)]);
    let postgres = Daemon::start(&[
        ("OCT_AUTH_TOKEN", TOKEN),
        ("OCT_DATABASE_URL", pg.url.as_str()),
    ]);
    let t_ns = (now_ms() - 60_000) * 1_000_000;
    for d in [&sqlite, &postgres] {
        same_capture(d, t_ns);
    }
    wait_until("eight spans on PostgreSQL", Duration::from_secs(20), || {
        n(&pg, "SELECT count(*) FROM spans") == 8
            && n(&pg, "SELECT count(*) FROM events") == 4
            && n(&pg, "SELECT count(*) FROM metric_points") == 12
    });
    wait_until("eight spans on SQLite", Duration::from_secs(20), || {
        common::count(&sqlite.db_path, "SELECT count(*) FROM spans") == 8
            && common::count(&sqlite.db_path, "SELECT count(*) FROM events") == 4
            && common::count(&sqlite.db_path, "SELECT count(*) FROM metric_points") == 12
    });
    // Usage by instance is a fleet central's: SQLite's rollups do not keep it.
    let (status, body) = get(&sqlite, "/v1/usage?group_by=instance");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "group_by", "{body}");
    // Metric series and names: the same on both.
    let (from, to) = (t_ns / 1_000_000 - 60_000, t_ns / 1_000_000 + 300_000);
    for path in [
        format!("/v1/metrics?name=agent.queue.depth&from={from}&to={to}&step=120"),
        format!("/v1/metrics?name=agent.queue.depth&from={from}&to={to}&step=60&attr.queue=b"),
        format!("/v1/metrics?name=agent.requests&from={from}&to={to}&step=120"),
        format!("/v1/metrics?name=agent.none&from={from}&to={to}"),
        format!("/v1/metrics?name=agent.requests&from={to}&to={from}"),
        "/v1/metrics/names".to_string(),
    ] {
        let (s1, a) = get(&sqlite, &path);
        let (s2, b) = get(&postgres, &path);
        assert_eq!(s1, s2, "{path}: {a} / {b}");
        assert_eq!(a, b, "{path}");
    }
    let (_, depth) = get(
        &postgres,
        &format!("/v1/metrics?name=agent.queue.depth&from={from}&to={to}&step=120"),
    );
    assert_eq!(depth["series"].as_array().unwrap().len(), 2, "{depth}");
    let (_, requests) = get(
        &postgres,
        &format!("/v1/metrics?name=agent.requests&from={from}&to={to}&step=120"),
    );
    let rate = requests["series"][0]["points"][1]["rate"].as_f64().unwrap();
    assert!((rate - 100.0 / 60.0).abs() < 1e-9, "{requests}");
    let lists = [
        "/v1/traces",
        "/v1/traces?limit=1",
        "/v1/traces?sort=cost",
        "/v1/traces?sort=duration&order=asc",
        "/v1/traces?status=error",
        "/v1/traces?agent_id=planner",
        "/v1/traces?provider=anthropic",
        "/v1/traces?model=gpt-4o",
        "/v1/traces?q=PLANNER",
        "/v1/traces?min_cost=0.000001",
        "/v1/traces?session_id=s-1",
    ];
    let mut ids = Vec::new();
    for path in lists {
        let (s1, a) = get(&sqlite, path);
        let (s2, b) = get(&postgres, path);
        assert_eq!((s1, s2), (200, 200), "{path}: {a} / {b}");
        assert_eq!(a, b, "{path}");
        for t in a["traces"].as_array().unwrap() {
            ids.push(t["trace_id"].as_str().unwrap().to_string());
        }
        // The next page too, from each one's own cursor.
        if let Some(c) = a["next_cursor"].as_str() {
            let next = format!("{path}&cursor={c}");
            assert_eq!(get(&sqlite, &next), get(&postgres, &next), "{next}");
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{ids:?}");
    for id in &ids {
        let path = format!("/v1/traces/{id}");
        let (s1, mut a) = get(&sqlite, &path);
        let (s2, mut b) = get(&postgres, &path);
        assert_eq!((s1, s2), (200, 200), "{path}");
        // Events have their own uid per daemon's capture; the rest is the same.
        for d in [&mut a, &mut b] {
            for e in d["events"].as_array_mut().unwrap() {
                e["id"] = Value::Null;
            }
        }
        assert_eq!(a, b, "{path}");
    }
    // Bad input: the same clear answers on both.
    for path in [
        "/v1/traces?cursor=nonsense",
        "/v1/traces?limit=0",
        "/v1/traces/zz",
        "/v1/traces/4bf92f3577b34da6a3ce929d0e0e4799",
    ] {
        assert_eq!(get(&sqlite, path), get(&postgres, path), "{path}");
    }
    // Errors and events, newest first, filtered, paged by each store's own cursor.
    for (path, key) in [
        ("/v1/errors", "errors"),
        ("/v1/errors?agent_id=writer", "errors"),
        ("/v1/errors?category=provider", "errors"),
        (
            "/v1/errors?trace_id=11111111111111111111111111111111",
            "errors",
        ),
        ("/v1/events", "events"),
        ("/v1/events?name=checkpoint", "events"),
        ("/v1/events?limit=1", "events"),
        ("/v1/logs", "logs"),
    ] {
        let (s1, a) = get(&sqlite, path);
        let (s2, b) = get(&postgres, path);
        assert_eq!((s1, s2), (200, 200), "{path}: {a} / {b}");
        let (a, b) = (without_event_ids(a, key), without_event_ids(b, key));
        assert_eq!(a[key], b[key], "{path}");
        assert_eq!(
            a["next_cursor"].is_null(),
            b["next_cursor"].is_null(),
            "{path}"
        );
        if let (Some(ca), Some(cb)) = (a["next_cursor"].as_str(), b["next_cursor"].as_str()) {
            let sep = if path.contains('?') { '&' } else { '?' };
            let (_, na) = get(&sqlite, &format!("{path}{sep}cursor={ca}"));
            let (_, nb) = get(&postgres, &format!("{path}{sep}cursor={cb}"));
            assert_eq!(
                without_event_ids(na, key)[key],
                without_event_ids(nb, key)[key],
                "{path} page 2"
            );
        }
    }
    let (_, errors) = get(&postgres, "/v1/errors");
    assert_eq!(errors["errors"].as_array().unwrap().len(), 2, "{errors}");

    // Usage from either store's hourly rollups (latency percentiles are SQLite's only).
    let hour = t_ns / 1_000_000 / 3_600_000 * 3_600_000;
    for path in [
        "/v1/usage?percentiles=false".to_string(),
        "/v1/usage?percentiles=false&group_by=model".into(),
        "/v1/usage?percentiles=false&group_by=agent,provider&bucket=hour".into(),
        "/v1/usage?percentiles=false&group_by=model,agent&bucket=day".into(),
        "/v1/usage?percentiles=false&model=gpt-4o".into(),
        "/v1/usage?percentiles=false&provider=anthropic&group_by=agent".into(),
        format!(
            "/v1/usage?percentiles=false&from={hour}&to={}",
            hour + 3_600_000
        ),
        format!("/v1/usage?percentiles=false&from={}", hour + 3_600_000),
        "/v1/usage?percentiles=false&format=csv&group_by=model".into(),
    ] {
        let a = client()
            .get(sqlite.url(&path))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        let b = client()
            .get(postgres.url(&path))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert_eq!(
            (a.status().as_u16(), b.status().as_u16()),
            (200, 200),
            "{path}"
        );
        assert_eq!(a.text().unwrap(), b.text().unwrap(), "{path}");
    }
    // The overview: figures against the previous period, cost and error series. Each
    // range ends an hour after the one the capture started in: the calls, up to 5 s
    // after its start, may fall in the next hour.
    let day_ms = 86_400_000;
    for path in [
        format!(
            "/v1/overview?from={}&to={}",
            hour - day_ms,
            hour + 2 * 3_600_000
        ),
        format!(
            "/v1/overview?from={}&to={}&by=agent",
            hour - 3_600_000,
            hour + 2 * 3_600_000
        ),
        format!(
            "/v1/overview?from={}&to={}",
            hour - 7 * day_ms,
            hour + day_ms
        ),
    ] {
        let (s1, a) = get(&sqlite, &path);
        let (s2, b) = get(&postgres, &path);
        assert_eq!((s1, s2), (200, 200), "{path}: {a} / {b}");
        assert_eq!(a, b, "{path}");
        assert_eq!(a["current"]["llm_calls"], 4, "{path}: {a}");
    }
    let (_, all) = get(&postgres, "/v1/usage?percentiles=false");
    assert_eq!(all["totals"]["calls"], 4, "{all}");
    assert_eq!(
        all["totals"]["total_tokens"],
        1280 + 540 + 120 + 55,
        "{all}"
    );
    assert_eq!(all["totals"]["errors"], 2, "{all}");

    // What PostgreSQL does not answer yet says so rather than answering wrong.
    for (path, field) in [
        ("/v1/traces?score=relevance<0.5", "score"),
        ("/v1/usage?group_by=session", "group_by"),
        ("/v1/usage?user_id=u-1", "user_id"),
    ] {
        let (status, body) = get(&postgres, path);
        assert_eq!(status, 501, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().starts_with(field),
            "{path}: {body}"
        );
    }
}

#[test]
fn a_central_whose_postgresql_goes_away_keeps_what_it_accepted_and_stores_it_when_back() {
    let pg = PgServer::start();
    let central = Daemon::start(&[
        ("OCT_AUTH_TOKEN", TOKEN),
        ("OCT_DATABASE_URL", pg.url.as_str()),
    ]);
    let t = now_ms() - 10_000;
    let mut tokens = capture(&central, "before", 0, 10, t);
    wait_until("the first calls stored", Duration::from_secs(20), || {
        n(&pg, "SELECT count(*) FROM spans") == 10
    });
    pg.stop();
    // Accepted while the server is down (the writer has not failed yet): queued,
    // retried, never lost.
    let during: Vec<Value> = (10..20)
        .map(|i| {
            json!({"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 100 + i,
                   "completion_tokens": 10, "agent_id": "during", "timestamp": t + i as i64})
        })
        .collect();
    post(&central, "/v1/traces", &Value::Array(during));
    tokens += (10..20).map(|i| 110 + i as i64).sum::<i64>();
    wait_until(
        "the writer says it is retrying",
        Duration::from_secs(20),
        || {
            let (_, h) = get(&central, "/health");
            h["writer"]["state"] == "retrying"
        },
    );
    // While writes fail, ingest says so (503 with Retry-After) instead of queueing more.
    let r = client()
        .post(central.url("/v1/traces"))
        .bearer_auth(TOKEN)
        .json(&json!([{"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 1}]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    pg.resume();
    wait_until(
        "what was accepted stored after the server is back",
        Duration::from_secs(30),
        || n(&pg, "SELECT count(*) FROM spans") == 20,
    );
    tokens += capture(&central, "after", 20, 10, t);
    wait_until("and what comes after", Duration::from_secs(20), || {
        n(&pg, "SELECT count(*) FROM spans") == 30
    });
    assert_eq!(n(&pg, "SELECT sum(total_tokens) FROM spans"), tokens);
    assert_eq!(n(&pg, "SELECT sum(total_tokens) FROM usage_hourly"), tokens);
    let (_, h) = get(&central, "/health");
    assert_eq!(h["writer"]["state"], "ok", "{h}");
    // The queries' pool connects again too.
    let (status, page) = get(&central, "/v1/traces?limit=1000");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["traces"].as_array().unwrap().len(), 30);
}

#[test]
fn a_cli_reader_pointed_at_a_postgresql_central_says_where_the_data_is() {
    let out = std::process::Command::new(common::BIN)
        .args(["traces"])
        .env("OCT_DATABASE_URL", "postgres://oct:secret@127.0.0.1:1/oct")
        .env("HOME", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PostgreSQL") && err.contains("/v1/traces"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn a_central_on_postgresql_drops_the_days_older_than_its_retention() {
    let pg = PgServer::start();
    let central = Daemon::start(&[
        ("OCT_AUTH_TOKEN", TOKEN),
        ("OCT_DATABASE_URL", pg.url.as_str()),
        ("OCT_RETENTION_DAYS", "2"),
        ("OCT_CLEANUP_INTERVAL", "1s"),
    ]);
    let day = 86_400_000;
    let now = now_ms() - 1000;
    // Calls of five days ago, of a day ago and of now, each on its own UTC day whatever
    // the hour (exactly a day apart): each day gets its partition.
    for (i, t) in [now - 5 * day, now - day, now].into_iter().enumerate() {
        post(
            &central,
            "/v1/traces",
            &json!([{"provider": "openai", "model": "gpt-4o-mini", "prompt_tokens": 10 + i,
                     "completion_tokens": 1, "timestamp": t}]),
        );
    }
    let partitions = || {
        n(
            &pg,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'spans'::regclass",
        )
    };
    // The old day's partition goes whole (with its runs' summaries); the two recent
    // days stay, beside the default partition.
    // Both recent calls stored and the old one gone (the count alone is 2 as soon as
    // the first two calls are stored, before retention ran).
    wait_until("the old day dropped", Duration::from_secs(20), || {
        n(&pg, "SELECT count(*) FROM spans") == 2
            && n(&pg, "SELECT COALESCE(sum(input_tokens), 0) FROM spans") == 11 + 12
    });
    assert_eq!(partitions(), 3, "two days and the default partition");
    assert_eq!(n(&pg, "SELECT count(*) FROM traces"), 2);
    assert_eq!(n(&pg, "SELECT sum(input_tokens) FROM spans"), 11 + 12);
    let (_, runs) = get(&central, "/v1/traces");
    assert_eq!(runs["traces"].as_array().unwrap().len(), 2, "{runs}");
}
