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

/// A private PostgreSQL server, and two daemons with the same token: one on a SQLite
/// file, one on that server (the parity tests send both the same data).
fn both_stores() -> (PgServer, Daemon, Daemon) {
    let pg = PgServer::start();
    let sqlite = Daemon::start(&[("OCT_AUTH_TOKEN", TOKEN)]);
    let postgres = Daemon::start(&[
        ("OCT_AUTH_TOKEN", TOKEN),
        ("OCT_DATABASE_URL", pg.url.as_str()),
    ]);
    (pg, sqlite, postgres)
}

/// A private PostgreSQL server, a central on it, and one sidecar (`id`, with `more`
/// settings) pushing v2 to it every second.
fn central_and_sidecar(id: &str, more: &[(&str, &str)]) -> (PgServer, Daemon, Daemon) {
    let pg = PgServer::start();
    let central = Daemon::start(&[
        ("OCT_AUTH_TOKEN", TOKEN),
        ("OCT_DATABASE_URL", pg.url.as_str()),
    ]);
    let side = sidecar_with(central.addr.port(), id, "v2", more);
    (pg, central, side)
}

/// The CLI beside daemon `d` (its file, port and token), with `OCT_DATABASE_URL` when
/// given: whether it succeeded, its output and its errors.
fn cli_beside(d: &Daemon, args: &[&str], pg_url: Option<&str>) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(args)
        .env_clear()
        .env("HOME", &d.dir)
        .env("OCT_DB_PATH", &d.db_path)
        .env("OCT_AUTH_TOKEN", TOKEN)
        .env("OCT_PORT", d.addr.port().to_string());
    if let Some(u) = pg_url {
        cmd.env("OCT_DATABASE_URL", u);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

    // The anomalies list answers from PostgreSQL too.
    let (status, body) = get(&central, "/v1/anomalies");
    assert_eq!(status, 200, "{body}");
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
    let (pg, sqlite, postgres) = both_stores();
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

    // Usage from either store's hourly rollups, latency percentiles from their
    // histograms.
    let hour = t_ns / 1_000_000 / 3_600_000 * 3_600_000;
    for path in [
        "/v1/usage".to_string(),
        "/v1/usage?group_by=model,agent&bucket=hour".into(),
        "/v1/usage?format=csv&group_by=provider".into(),
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
    // The four calls' latencies (900, 700, 500 and 300 ms; ±1 %): p50 is the second.
    let (_, with) = get(&postgres, "/v1/usage");
    let p50 = with["totals"]["latency_ms"]["p50"].as_f64().unwrap_or(0.0);
    assert!((p50 - 500.0).abs() <= 5.0, "{with}");
    let p99 = with["totals"]["latency_ms"]["p99"].as_f64().unwrap_or(0.0);
    assert!((p99 - 900.0).abs() <= 9.0, "{with}");

    // A run's export (gzipped JSON: the run, its spans, events and sub-runs) is the same.
    let export = |d: &Daemon, trace: &str| -> (u16, Value) {
        let r = client()
            .get(d.url(&format!("/v1/traces/{trace}/export")))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let body = r.bytes().unwrap();
        let mut json = String::new();
        if status == 200 {
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut json)
                .unwrap();
        }
        (status, serde_json::from_str(&json).unwrap_or(Value::Null))
    };
    let runs = get(&sqlite, "/v1/traces?limit=100").1;
    let ids: Vec<String> = runs["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() >= 2, "{runs}");
    for id in &ids {
        let (s1, a) = export(&sqlite, id);
        let (s2, b) = export(&postgres, id);
        assert_eq!((s1, s2), (200, 200), "{id}");
        let no_ids = |mut v: Value| {
            v = without_event_ids(v, "events");
            v
        };
        assert_eq!(no_ids(a.clone()), no_ids(b), "{id}");
        assert!(!a["spans"].as_array().unwrap().is_empty(), "{a}");
    }
    let missing = format!("{:032x}", 9);
    assert_eq!(export(&postgres, &missing).0, 404);
    // A central runs no sink: its dead letters are none.
    let (status, dl) = get(&postgres, "/v1/dead-letters");
    assert_eq!(status, 200, "{dl}");
    assert_eq!(dl, json!({"items": [], "next_cursor": null}));

    // Usage by session or user: the central sums its spans as SQLite's rollups do, by
    // the hour each call started in (`to` inside an hour takes that hour whole).
    let hour = t_ns / 1_000_000 - (t_ns / 1_000_000).rem_euclid(3_600_000);
    for path in [
        "/v1/usage?group_by=session".to_string(),
        "/v1/usage?group_by=session,model&bucket=hour".into(),
        "/v1/usage?percentiles=false&group_by=user,agent&bucket=day".into(),
        "/v1/usage?user_id=u1".into(),
        "/v1/usage?session_id=s1&group_by=provider".into(),
        "/v1/usage?session_id=-&group_by=model".into(),
        "/v1/usage?format=csv&group_by=session,user".into(),
        format!(
            "/v1/usage?group_by=session&from={}&to={}",
            hour + 1,
            hour + 1_800_000
        ),
        format!("/v1/usage?group_by=session&from={}", hour + 3_600_000),
        format!("/v1/usage?group_by=user&to={hour}"),
    ] {
        let text = |d: &Daemon| {
            let r = client()
                .get(d.url(&path))
                .bearer_auth(TOKEN)
                .send()
                .unwrap();
            (r.status().as_u16(), r.text().unwrap())
        };
        let ((s1, a), (s2, b)) = (text(&sqlite), text(&postgres));
        assert_eq!((s1, s2), (200, 200), "{path}: {a} / {b}");
        match (
            serde_json::from_str::<Value>(&a),
            serde_json::from_str::<Value>(&b),
        ) {
            (Ok(a), Ok(b)) => same_json(&a, &b, &path).unwrap(),
            _ => assert_eq!(a, b, "{path}"),
        }
    }
    let (_, by_session) = get(&postgres, "/v1/usage?group_by=session&percentiles=false");
    let calls = |v: &Value, key: &str| {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["session_id"] == key)
            .map(|r| r["calls"].clone())
    };
    assert_eq!(calls(&by_session, "s1"), Some(json!(1)), "{by_session}");
    assert_eq!(by_session["totals"]["calls"], 4, "{by_session}");
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

/// The CLI's readers beside a central on PostgreSQL ask its API: `traces`, `usage` and
/// `activity` print what they print on SQLite for the same data; one that reads SQLite
/// only says where the data is, and never shows the URL's password.
#[test]
fn the_cli_beside_a_central_on_postgresql_reads_through_its_api() {
    let (pg, sqlite, postgres) = both_stores();
    let t_ns = (now_ms() - 60_000) * 1_000_000;
    for d in [&sqlite, &postgres] {
        same_capture(d, t_ns);
    }
    wait_until(
        "the capture stored on both",
        Duration::from_secs(20),
        || {
            n(&pg, "SELECT count(*) FROM spans") == 8
                && common::count(&sqlite.db_path, "SELECT count(*) FROM spans") == 8
        },
    );
    let cli = cli_beside;
    for args in [
        &["traces"][..],
        &["traces", "--agent", "planner"],
        &["traces", "--json", "--limit", "2"],
        &["usage", "--since", "2h"],
        &["usage", "--since", "2h", "--by", "model,agent"],
        &[
            "usage",
            "--since",
            "2h",
            "--by",
            "provider,hour",
            "--agent",
            "main",
        ],
    ] {
        let a = cli(&sqlite, args, None);
        let b = cli(&postgres, args, Some(&pg.url));
        assert!(a.0 && b.0, "{args:?}: {} / {}", a.2, b.2);
        assert_eq!(a.1, b.1, "{args:?}");
        assert!(a.1.lines().count() >= 2, "{args:?}: {}", a.1);
    }
    let (ok, out, err) = cli(&postgres, &["activity", "--kind", "start"], Some(&pg.url));
    assert!(ok, "{err}");
    assert!(out.contains("start"), "{out}");
    // A reader of SQLite's own tables says where the data is, without the password.
    let (ok, _, err) = cli(&postgres, &["verify"], Some(&pg.url));
    assert!(!ok);
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(
        !err.contains(pg.url.split('@').next().unwrap_or("-")),
        "{err}"
    );
    // A central that is not there: a clear error.
    let mut gone = std::process::Command::new(common::BIN);
    let out = gone
        .args(["traces"])
        .env_clear()
        .env("HOME", &postgres.dir)
        .env("OCT_DATABASE_URL", "postgres://oct:secret@127.0.0.1:1/oct")
        .env("OCT_PORT", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the daemon"), "{err}");
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

/// Sessions on both stores: the same list (by range, agent, page) and the same
/// conversations, from runs with texts and tools, and an OpenClaw-shaped run (prompts
/// and answers on its run attempts).
#[test]
fn sessions_and_their_conversations_answer_the_same_on_sqlite_and_postgresql() {
    let (pg, sqlite, postgres) = both_stores();
    let now = now_ms();
    let min = 60_000;
    let sid = |i: u64| format!("{i:016x}");
    let run = |i: u64| format!("{:032x}", 0x5e55_0000 + i);
    let long: String = "Hotel booked. ".repeat(400);
    let mut spans = vec![
        // sess-a: two runs, texts, a tool call between two LLM calls, a long answer.
        json!({"kind":"agent_run","name":"Plan the trip","trace_id":run(1),"span_id":sid(1),"timestamp":now-100*min,"latency_ms":5000,
         "agent_id":"alpha","session_id":"sess-a","input_text":"Book me a flight","output_text":"Booked"}),
        json!({"provider":"openai","model":"gpt-4o","trace_id":run(1),"span_id":sid(2),"parent_span_id":sid(1),"timestamp":now-100*min+100,"latency_ms":1000,
         "agent_id":"alpha","session_id":"sess-a","prompt_tokens":100,"completion_tokens":20,"cost_usd":0.01,
         "input_text":"Book me a flight","output_text":"Let me search"}),
        json!({"kind":"tool_call","tool_name":"search_flights","tool_call_id":"call_1","trace_id":run(1),"span_id":sid(3),"parent_span_id":sid(1),
         "timestamp":now-100*min+1200,"latency_ms":300,"agent_id":"alpha","session_id":"sess-a","input_text":"{\"to\":\"OSL\"}","output_text":"3 flights"}),
        json!({"provider":"openai","model":"gpt-4o","trace_id":run(1),"span_id":sid(4),"parent_span_id":sid(1),"timestamp":now-100*min+1600,"latency_ms":2000,
         "agent_id":"alpha","session_id":"sess-a","prompt_tokens":200,"completion_tokens":30,"cost_usd":0.02,
         "input_text":"3 flights","output_text":"Booked SK123"}),
        json!({"kind":"agent_run","name":"Follow up","trace_id":run(2),"span_id":sid(1),"timestamp":now-90*min,"latency_ms":3000,
         "agent_id":"alpha","session_id":"sess-a"}),
        json!({"provider":"anthropic","model":"claude-sonnet-4","trace_id":run(2),"span_id":sid(2),"parent_span_id":sid(1),"timestamp":now-90*min+50,"latency_ms":900,
         "agent_id":"alpha","session_id":"sess-a","prompt_tokens":50,"completion_tokens":10,"cost_usd":0.005,
         "input_text":"And a hotel?","output_text":long}),
        // sess-b: a failing run of another agent.
        json!({"kind":"agent_run","name":"crash","trace_id":run(3),"span_id":sid(1),"timestamp":now-80*min,"latency_ms":20000,
         "agent_id":"beta","session_id":"sess-b","status":"error"}),
        json!({"provider":"openai","model":"gpt-4o","trace_id":run(3),"span_id":sid(2),"parent_span_id":sid(1),"timestamp":now-80*min+10,"latency_ms":100,
         "agent_id":"beta","session_id":"sess-b","prompt_tokens":10,"completion_tokens":0,"status":"error","error_type":"rate_limited"}),
        // An old session, and one whose id holds a dot (its cursor splits at the first).
        json!({"kind":"agent_run","name":"old","trace_id":run(4),"span_id":sid(1),"timestamp":now-30*60*min,"latency_ms":1000,
         "agent_id":"alpha","session_id":"sess-old","input_text":"hello","output_text":"hi"}),
        json!({"kind":"agent_run","name":"dotted","trace_id":run(5),"span_id":sid(1),"timestamp":now-70*min,"latency_ms":1000,
         "agent_id":"gamma","session_id":"agent:main.v2","input_text":"dots?","output_text":"fine"}),
    ];
    // Runs that start at the same moment in sessions of their own (ties in the walk).
    for i in 0..4u64 {
        spans.push(json!({"kind":"agent_run","name":format!("tie {i}"),"trace_id":run(10 + i),"span_id":sid(1),
            "timestamp":now-60*min,"latency_ms":100,"agent_id":"tie","session_id":format!("tie-{i}")}));
    }
    // An OpenClaw-shaped run: its model calls carry no text; the prompt and answer of
    // each attempt are on the attempt (`openclaw.harness`).
    let oc = run(20);
    let t0 = now - 50 * min;
    let piece = |i: u64, parent: u64, at: i64, more: Value| {
        let mut v = json!({"trace_id": oc, "span_id": sid(i), "parent_span_id": sid(parent),
            "timestamp": t0 + at, "latency_ms": 100, "agent_id": "main", "session_id": "oc-1"});
        v.as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        v
    };
    spans.extend([
        json!({"kind":"agent_run","name":"agent main","trace_id":oc,"span_id":sid(1),"timestamp":t0,"latency_ms":9000,
               "agent_id":"main","session_id":"oc-1"}),
        piece(2, 1, 10, json!({"kind":"other","name":"openclaw.harness a1","latency_ms":4000,
               "input_text":"Please list files","output_text":"[\"\", \"There are 3 files.\"]"})),
        piece(3, 2, 20, json!({"provider":"fake","model":"fake-model","prompt_tokens":30,"completion_tokens":5})),
        piece(4, 2, 200, json!({"kind":"tool_call","tool_name":"ls","tool_call_id":"c1","input_text":"{}","output_text":"a b c"})),
        piece(5, 2, 400, json!({"provider":"fake","model":"fake-model","prompt_tokens":40,"completion_tokens":9})),
        piece(6, 1, 5000, json!({"kind":"other","name":"openclaw.harness a2","latency_ms":3000,
               "input_text":"And now?","output_text":"[\"Done.\"]"})),
        piece(7, 6, 5010, json!({"provider":"fake","model":"fake-model","prompt_tokens":50,"completion_tokens":2})),
    ]);
    for d in [&sqlite, &postgres] {
        post(d, "/v1/traces", &Value::Array(spans.clone()));
    }
    let spans_sql = "SELECT count(*) FROM spans";
    let want = spans.len() as i64;
    wait_until("every span on both stores", Duration::from_secs(20), || {
        n(&pg, spans_sql) == want && common::count(&sqlite.db_path, spans_sql) == want
    });
    let same = |path: &str| -> Value {
        let (s1, a) = get(&sqlite, path);
        let (s2, b) = get(&postgres, path);
        assert_eq!((s1, &a), (s2, &b), "{path}");
        a
    };
    // Every item of `key` on every page of `path`, one at a time, by each store's cursor.
    let walk = |path: &str, key: &str| -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut cursor: Option<String> = None;
        let mut items = Vec::new();
        for _ in 0..30 {
            let p = match &cursor {
                Some(c) => format!("{path}{sep}limit=1&cursor={}", urlenc(c)),
                None => format!("{path}{sep}limit=1"),
            };
            let page = same(&p);
            items.extend(page[key].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        items
    };
    let from = now - 2 * 60 * min;
    let lists = [
        "/v1/sessions".to_string(),
        "/v1/sessions?agent_id=alpha".into(),
        "/v1/sessions?agent=tie".into(),
        format!("/v1/sessions?from={from}"),
        format!("/v1/sessions?from={from}&to={}", now - 65 * min),
        format!("/v1/sessions?to={}", now - 85 * min),
    ];
    let mut all = Vec::new();
    for path in &lists {
        let first = same(path);
        for s in first["sessions"].as_array().unwrap() {
            all.push(s["session_id"].as_str().unwrap().to_string());
        }
        // Page by page, one session at a time, each store by its own cursor.
        let paged: Vec<Value> = walk(path, "sessions")
            .iter()
            .map(|s| s["session_id"].clone())
            .collect();
        let whole: Vec<Value> = first["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session_id"].clone())
            .collect();
        assert_eq!(paged, whole, "{path} page by page");
    }
    all.sort();
    all.dedup();
    for id in ["sess-a", "sess-b", "sess-old", "agent:main.v2", "tie-3"] {
        assert!(all.iter().any(|s| s == id), "{id} in {all:?}");
    }
    assert_eq!(all.len(), 9, "{all:?}");
    // Every session whole, and paged one run at a time.
    for id in &all {
        let path = format!("/v1/sessions/{}", urlenc(id));
        let whole = same(&path);
        let turns = walk(&path, "turns");
        assert_eq!(&Value::Array(turns), &whole["turns"], "{path} page by page");
    }
    let a = same("/v1/sessions/sess-a");
    assert_eq!(a["session"]["runs"], 2, "{a}");
    assert_eq!(a["session"]["total_tokens"], 410, "{a}");
    let roles: Vec<&str> = a["turns"][0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"], "{a}");
    assert_eq!(a["turns"][1]["messages"][1]["text_truncated"], true, "{a}");
    // An OpenClaw turn: each attempt's prompt, its calls and tool, and its answer on
    // its last call.
    let oc = same("/v1/sessions/oc-1");
    let said: Vec<(&str, &str)> = oc["turns"][0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap(),
                m["text"].as_str().or(m["tool_name"].as_str()).unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            ("user", "Please list files"),
            ("assistant", ""),
            ("tool", "ls"),
            ("assistant", "There are 3 files."),
            ("user", "And now?"),
            ("assistant", "Done.")
        ],
        "{oc}"
    );
    // Bad input and absent sessions: the same clear answers.
    for path in [
        "/v1/sessions/nope",
        "/v1/sessions/sess-a?limit=201",
        "/v1/sessions/sess-a?cursor=zzz",
        "/v1/sessions/sess-a?cursor=12.zz",
        "/v1/sessions?cursor=zzz",
        "/v1/sessions?from=x",
        "/v1/sessions?limit=0",
    ] {
        let v = same(path);
        assert!(v["error"].is_string(), "{path}: {v}");
    }
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What each run adds up to: a text per run, `trace_id` first, to compare both stores.
fn run_figures(rows: Vec<Vec<String>>) -> Vec<String> {
    let mut v: Vec<String> = rows.into_iter().map(|r| r.join(" ")).collect();
    v.sort();
    v
}

/// An OpenClaw sidecar's calls reach the central whole: the sidecar pushes each span
/// when its first piece arrives (the start hooks), and again, merged, when the pieces
/// that end it arrive (end hooks, usage, cost); the central merges each into the row
/// it holds. At the end the central's spans, runs and hourly usage hold the sidecar's
/// figures, each span once.
#[test]
fn an_openclaw_sidecars_spans_merged_after_they_were_pushed_reach_the_central_whole() {
    let (pg, central, side) = central_and_sidecar(
        "oc-side",
        &[("OCT_LOG_PATH", "off"), ("OCT_OPENCLAW_STATE_DIR", "off")],
    );
    let text = common::fixture_at_now(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/openclaw/bridge_events.jsonl"),
        )
        .unwrap(),
    );
    // What ends a call or a run, its usage and cost: the second half.
    let ending = [
        "hook:model_call_ended",
        "hook:llm_output",
        "hook:agent_end",
        "hook:after_tool_call",
        "tdiag:model.call.completed",
        "tdiag:model.usage",
        "tdiag:run.completed",
        "tdiag:harness.run.completed",
        "tdiag:tool.execution.completed",
    ];
    let (mut first, mut second) = (String::new(), String::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let kind = serde_json::from_str::<Value>(line).unwrap()["kind"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let half = if ending.contains(&kind.as_str()) {
            &mut second
        } else {
            &mut first
        };
        half.push_str(line);
        half.push('\n');
    }
    let send = |body: &str| {
        let r = client()
            .post(side.url("/v1/openclaw/events"))
            .header("content-type", "application/x-ndjson")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    };
    let side_spans = || common::count(&side.db_path, "SELECT count(*) FROM spans");
    let central_spans = || n(&pg, "SELECT count(*) FROM spans");
    send(&first);
    // The first pieces are stored and pushed as they are.
    let mut last = -1;
    wait_until("the first half pushed", Duration::from_secs(30), || {
        let s = side_spans();
        let settled = s > 0 && s == last && central_spans() == s;
        last = s;
        std::thread::sleep(Duration::from_millis(300));
        settled
    });
    let tokens_before = n(&pg, "SELECT COALESCE(sum(total_tokens), 0) FROM spans");
    send(&second);
    let runs_sql = "SELECT count(*) FROM traces WHERE end_ns IS NOT NULL";
    let sidecar_sums = || {
        common::count(
            &side.db_path,
            "SELECT COALESCE(sum(total_tokens), 0) FROM spans",
        )
    };
    wait_until(
        "the second half merged and pushed",
        Duration::from_secs(30),
        || {
            let want = sidecar_sums();
            want > tokens_before
                && common::count(&side.db_path, runs_sql) > 0
                && n(&pg, "SELECT COALESCE(sum(total_tokens), 0) FROM spans") == want
                && n(&pg, runs_sql) == common::count(&side.db_path, runs_sql)
        },
    );
    // The sidecar sent changed spans again, and the central merged them.
    assert!(
        common::count(&side.db_path, "SELECT count(*) FROM span_changes") > 0,
        "no span changed after it was stored"
    );
    assert_eq!(central_spans(), side_spans(), "each span once");
    assert_eq!(
        n(
            &pg,
            "SELECT count(*) FROM (SELECT trace_id, span_id FROM spans GROUP BY 1, 2 HAVING count(*) > 1) d"
        ),
        0
    );
    // Each span as the sidecar holds it.
    let span_cols = "lower(encode(trace_id, 'hex')) || lower(encode(span_id, 'hex')), kind, start_ns, \
        COALESCE(end_ns, -1), status, COALESCE(input_tokens, -1), COALESCE(output_tokens, -1), \
        COALESCE(total_tokens, -1), COALESCE(cache_read_tokens, -1), COALESCE(round(cost_usd::numeric, 9)::text, '-'), \
        COALESCE(response_model, request_model, '-')";
    let pg_rows = |sql: &str| -> Vec<Vec<String>> {
        pg.psql(sql)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect()
    };
    let sqlite_rows = |sql: &str, n: usize| -> Vec<Vec<String>> {
        let conn = rusqlite::Connection::open(&side.db_path).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| {
            (0..n)
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Real(f) => format!("{f:.9}"),
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let sqlite_span_cols = "lower(hex(trace_id)) || lower(hex(span_id)), kind, start_ns, \
        COALESCE(end_ns, -1), status, COALESCE(input_tokens, -1), COALESCE(output_tokens, -1), \
        COALESCE(total_tokens, -1), COALESCE(cache_read_tokens, -1), CASE WHEN cost_usd IS NULL THEN '-' ELSE printf('%.9f', cost_usd) END, \
        COALESCE(response_model, request_model, '-')";
    let at_central = run_figures(pg_rows(&format!("SELECT {span_cols} FROM spans")));
    let at_sidecar = run_figures(sqlite_rows(
        &format!("SELECT {sqlite_span_cols} FROM spans"),
        11,
    ));
    assert_eq!(at_central, at_sidecar, "the spans");
    // Each run's summary, and the hourly usage.
    let run_cols = "span_count, error_count, llm_calls, tool_calls, input_tokens, output_tokens, \
        total_tokens, cache_read_tokens, COALESCE(end_ns, -1), status";
    let at_central = run_figures(pg_rows(&format!(
        "SELECT lower(encode(trace_id, 'hex')), {run_cols} FROM traces"
    )));
    let at_sidecar = run_figures(sqlite_rows(
        &format!("SELECT lower(hex(trace_id)), {run_cols} FROM traces"),
        11,
    ));
    assert_eq!(at_central, at_sidecar, "the runs");
    let (_, c) = get(&central, "/v1/usage");
    let s: Value = client()
        .get(side.url("/v1/usage"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for k in [
        "calls",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "errors",
        "latency_ms",
    ] {
        assert_eq!(c["totals"][k], s["totals"][k], "usage {k}: {c} / {s}");
    }
    assert!(c["totals"]["latency_ms"]["p95"].is_number(), "{c}");
    assert!(s["totals"]["calls"].as_i64().unwrap() > 0, "{s}");
}

/// Evaluation scores on both stores: the same aggregates (by name, agent and day, with
/// filters) and the same runs for `score=`, from native scores, an OTLP log record and
/// raw events whose values are a numeric string, a boolean, a label alone or text.
#[test]
fn scores_answer_the_same_on_sqlite_and_postgresql() {
    let (pg, sqlite, postgres) = both_stores();
    let t = now_ms() - 120_000;
    let run = |i: u64| format!("{:032x}", 0x5c0e_0000 + i);
    let runs: Vec<Value> = (0..4u64)
        .map(|i| {
            json!({"kind": "agent_run", "name": format!("answer {i}"), "trace_id": run(i),
                   "span_id": format!("{:016x}", i + 1), "agent_id": if i < 2 { "alpha" } else { "beta" },
                   "timestamp": t + i as i64, "latency_ms": 1000})
        })
        .collect();
    let scores = json!([
        {"trace_id": run(0), "name": "relevance", "value": 0.9, "label": "good"},
        {"trace_id": run(1), "name": "relevance", "value": 0.3, "label": "poor"},
        {"trace_id": run(1), "name": "relevance", "value": 0.45},
        {"trace_id": run(0), "name": "human", "label": "approved"},
        {"trace_id": run(2), "name": "toxicity", "value": -0.5},
        {"trace_id": run(3), "name": "Relevance", "value": 0.1},
    ]);
    let raw = |i: u64, value: Value, label: Value| {
        let mut a = json!({"gen_ai.evaluation.name": "judge"});
        if !value.is_null() {
            a["gen_ai.evaluation.score.value"] = value;
        }
        if !label.is_null() {
            a["gen_ai.evaluation.score.label"] = label;
        }
        json!({"name": "gen_ai.evaluation.result", "trace_id": run(i), "timestamp": t + 10 + i as i64,
               "uid": format!("0193a1b2-0000-7000-8000-00000000000{i}"), "attributes": a})
    };
    let events = json!([
        raw(0, json!("0.75"), Value::Null),
        raw(1, json!(true), json!("yes")),
        raw(2, Value::Null, json!("unsure")),
        raw(3, json!("high"), json!(7)),
    ]);
    for d in [&sqlite, &postgres] {
        post(d, "/v1/traces", &Value::Array(runs.clone()));
        post(d, "/v1/scores", &scores);
        post(d, "/v1/events", &events);
    }
    let sql = "SELECT count(*) FROM events";
    wait_until("the scores stored on both", Duration::from_secs(20), || {
        n(&pg, sql) == 10 && common::count(&sqlite.db_path, sql) == 10
    });
    let day = t - t.rem_euclid(86_400_000);
    for path in [
        "/v1/scores".to_string(),
        "/v1/scores?group_by=agent".into(),
        "/v1/scores?group_by=agent,day".into(),
        "/v1/scores?name=judge&group_by=day".into(),
        "/v1/scores?agent_id=beta".into(),
        format!("/v1/scores?from={day}&to={}", day + 86_400_000),
        format!("/v1/scores?from={}", t + 5),
        "/v1/scores?group_by=model".into(),
        "/v1/traces?score=relevance<0.5".into(),
        "/v1/traces?score=relevance>=0.3&sort=start&order=asc".into(),
        "/v1/traces?score=judge!=0".into(),
        "/v1/traces?score=judge=1".into(),
        "/v1/traces?score=human<1".into(),
        "/v1/traces?score=nonsense".into(),
    ] {
        let (s1, a) = get(&sqlite, &path);
        let (s2, b) = get(&postgres, &path);
        assert_eq!((s1, &a), (s2, &b), "{path}");
    }
    let (_, all) = get(&postgres, "/v1/scores");
    let judge = all["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "judge")
        .cloned()
        .unwrap_or_default();
    // "0.75", true (1), no value, "high" (0): four scores, three values.
    assert_eq!(
        (judge["count"].as_i64(), judge["value_count"].as_i64()),
        (Some(4), Some(3)),
        "{all}"
    );
    let (_, low) = get(&postgres, "/v1/traces?score=relevance<0.5");
    assert_eq!(low["traces"].as_array().unwrap().len(), 1, "{low}");
}

/// The central's own activity (its start, requests refused for a wrong token) is kept
/// in PostgreSQL and listed as SQLite's is: the same kinds and paths, filters and pages.
#[test]
fn the_centrals_own_activity_is_kept_and_listed_as_on_sqlite() {
    let (pg, sqlite, postgres) = both_stores();
    for d in [&sqlite, &postgres] {
        let r = client()
            .get(d.url("/v1/traces"))
            .bearer_auth("wrong")
            .send()
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    wait_until("the refusal recorded", Duration::from_secs(20), || {
        n(
            &pg,
            "SELECT count(*) FROM activity WHERE kind = 'auth_refused'",
        ) == 1
    });
    let shape = |v: &Value| -> Vec<(String, String)> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["kind"].as_str().unwrap_or("").to_string(),
                    a["path"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    for path in [
        "/v1/activity",
        "/v1/activity?kind=auth_refused",
        "/v1/activity?kind=start",
    ] {
        let (s1, a) = get(&sqlite, path);
        let (s2, b) = get(&postgres, path);
        assert_eq!((s1, s2), (200, 200), "{path}: {a} / {b}");
        assert_eq!(shape(&a), shape(&b), "{path}: {a} / {b}");
    }
    let (_, all) = get(&postgres, "/v1/activity");
    let kinds: Vec<(String, String)> = shape(&all);
    assert!(
        kinds.contains(&("auth_refused".into(), "/v1/traces".into())),
        "{all}"
    );
    assert!(kinds.iter().any(|(k, _)| k == "start"), "{all}");
    // One row a page, by the cursor, to the end.
    let (_, first) = get(&postgres, "/v1/activity?limit=1");
    let c = first["next_cursor"].as_str().unwrap().to_string();
    let (_, second) = get(&postgres, &format!("/v1/activity?limit=1&cursor={c}"));
    assert_eq!(shape(&second)[0], kinds[1], "{second}");
    for path in ["/v1/activity?cursor=x", "/v1/activity?from=soon"] {
        assert_eq!(get(&sqlite, path), get(&postgres, path), "{path}");
    }
}

/// `a` and `b` equal, numbers within a part in 10^9 (sums added in another order).
fn same_json(a: &Value, b: &Value, at: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0) {
                Ok(())
            } else {
                Err(format!("{at}: {x} != {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .try_for_each(|(i, (x, y))| same_json(x, y, &format!("{at}[{i}]"))),
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => {
            x.iter().try_for_each(|(k, v)| {
                same_json(v, y.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"))
            })
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{at}: {a} != {b}")),
    }
}

/// The OpenClaw views (`/v1/openclaw/*`) and a run's sub-agents answer on a central on
/// PostgreSQL what the sidecar that captured and pushed the data answers on SQLite: the
/// same day of OpenClaw runs (heartbeats, a cron job, a sub-agent, a compaction, a tool
/// loop) and the recorded gateway log's fallback decisions and retries.
#[test]
fn the_openclaw_views_answer_on_a_central_as_on_the_sidecar_that_pushed_the_data() {
    use common::openclaw_day::{RETRY_TRACE, deliver_view_day, gateway_log_of_runs, trace_of};
    let tmp = tempfile::tempdir().unwrap();
    let glob = gateway_log_of_runs(tmp.path());
    let (pg, central, side) = central_and_sidecar(
        "oc-side",
        &[
            ("OCT_LOG_PATH", glob.as_str()),
            ("OCT_LOG_POLL_INTERVAL", "200ms"),
            ("OCT_OPENCLAW_STATE_DIR", "off"),
        ],
    );
    let (base, _) = deliver_view_day(&side);
    // Everything the sidecar holds has reached the central, merged.
    let figures = "SELECT count(*) || '/' || COALESCE(sum(total_tokens), 0) || '/' \
                   || COALESCE(sum(input_tokens), 0) FROM spans";
    let side_events = "SELECT count(*) FROM events WHERE source != 'host'";
    let mut last = String::new();
    wait_until(
        "the sidecar's data on the central",
        Duration::from_secs(30),
        || {
            let conn = rusqlite::Connection::open(&side.db_path).unwrap();
            let mine: String = conn.query_row(figures, [], |r| r.get(0)).unwrap();
            let theirs = pg.psql(figures).trim().to_string();
            let events_there = n(
                &pg,
                "SELECT count(*) FROM events WHERE source != 'host' AND name != 'openclaw_trace.instance'",
            );
            let events_here = common::count(&side.db_path, side_events);
            let settled = mine == theirs && mine == last && events_there == events_here;
            last = mine;
            std::thread::sleep(Duration::from_millis(300));
            settled
        },
    );
    let window = format!("from={}&to={}", base - 60_000, now_ms() + 60_000);
    let paths = [
        "/v1/openclaw/cache?by=agent".to_string(),
        "/v1/openclaw/cache?by=model".into(),
        "/v1/openclaw/cache?by=model&agent=main".into(),
        "/v1/openclaw/cache?by=session".into(),
        "/v1/openclaw/cache?by=session&agent=main".into(),
        "/v1/openclaw/scheduled".into(),
        "/v1/openclaw/scheduled?agent=main&limit=2".into(),
        "/v1/openclaw/subagents".into(),
        "/v1/openclaw/subagents?agent=nobody".into(),
        "/v1/openclaw/context".into(),
        "/v1/openclaw/context?near=0.5&limit=3".into(),
        "/v1/openclaw/channels".into(),
        "/v1/openclaw/fallbacks".into(),
        "/v1/openclaw/fallbacks?agent=main".into(),
        "/v1/openclaw/fallbacks?agent=nobody".into(),
        "/v1/openclaw/waste".into(),
        format!("/v1/openclaw/waste?trace_id={}", trace_of(50)),
        format!("/v1/openclaw/waste?trace_id={RETRY_TRACE}"),
    ];
    for p in &paths {
        let sep = if p.contains('?') { '&' } else { '?' };
        let path = format!("{p}{sep}{window}");
        let (s1, mut here) = get(&side, &path);
        let (s2, mut there) = get(&central, &path);
        assert_eq!((s1, s2), (200, 200), "{path}: {here} / {there}");
        // The gateway poller's snapshot is each daemon's own.
        for v in [&mut here, &mut there] {
            if let Some(o) = v.as_object_mut() {
                o.remove("gateway");
            }
        }
        same_json(&here, &there, &path).unwrap_or_else(|e| panic!("{e}\n{here}\n{there}"));
    }
    // One sidecar's runs: all of them here (the central holds this sidecar's alone), none
    // of another's; SQLite keeps no sidecar and says so.
    for p in &paths {
        let sep = if p.contains('?') { '&' } else { '?' };
        let path = format!("{p}{sep}{window}");
        let (_, mut here) = get(&side, &path);
        let (s, mut mine) = get(&central, &format!("{path}&instance=oc-side"));
        assert_eq!(s, 200, "{path}: {mine}");
        for v in [&mut here, &mut mine] {
            if let Some(o) = v.as_object_mut() {
                o.remove("gateway");
            }
        }
        same_json(&here, &mine, &path).unwrap_or_else(|e| panic!("{e}\n{here}\n{mine}"));
        let (s, theirs) = get(&central, &format!("{path}&instance=other-side"));
        assert_eq!(s, 200, "{path}: {theirs}");
        let (s, refused) = get(&side, &format!("{path}&instance=oc-side"));
        assert_eq!(s, 400, "{path}: {refused}");
        assert_eq!(refused["field"], "instance", "{path}: {refused}");
    }
    let other = |view: &str| {
        get(
            &central,
            &format!("/v1/openclaw/{view}?{window}&instance=other-side"),
        )
        .1
    };
    assert_eq!(other("scheduled")["runs"], json!([]));
    assert_eq!(other("subagents")["subagents"], json!([]));
    assert_eq!(other("waste")["runs"], json!([]));
    assert_eq!(other("fallbacks")["decisions"], 0);
    assert_eq!(other("cache")["rows"], json!([]));
    // Not empty: each view found what the day holds.
    let (_, sub) = get(&central, &format!("/v1/openclaw/subagents?{window}"));
    assert_eq!(sub["subagents"][0]["parent_trace_id"], trace_of(1), "{sub}");
    let (_, waste) = get(&central, &format!("/v1/openclaw/waste?{window}"));
    assert_eq!(waste["runs"].as_array().unwrap().len(), 3, "{waste}");
    let (_, fb) = get(&central, &format!("/v1/openclaw/fallbacks?{window}"));
    assert_eq!(fb["decisions"], 3, "{fb}");
    let (_, ctx) = get(&central, &format!("/v1/openclaw/context?{window}"));
    assert_eq!(ctx["compactions"][0]["message_count"], 12, "{ctx}");
    // The run that spawned the sub-agent lists it and its run, cost rolled up.
    let (_, here) = get(&side, &format!("/v1/traces/{}", trace_of(1)));
    let (_, there) = get(&central, &format!("/v1/traces/{}", trace_of(1)));
    assert_eq!(there["subagents"][0]["runs"][0], trace_of(40), "{there}");
    for key in ["subagents", "rollup"] {
        same_json(&here[key], &there[key], key).unwrap_or_else(|e| panic!("{e}"));
    }
    let ids = |v: &Value| -> Vec<Value> {
        v["sub_traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trace_id"].clone())
            .collect()
    };
    assert_eq!(ids(&here), ids(&there));
    // The CLI prints the same on the central's PostgreSQL as on the sidecar's file.
    let cli = |args: &[&str], pg_url: Option<&str>| cli_beside(&side, args, pg_url);
    for args in [
        &["openclaw", "scheduled"][..],
        &["openclaw", "subagents"],
        &["openclaw", "context"],
        &["openclaw", "channels"],
        &["openclaw", "fallbacks"],
        &["openclaw", "waste"],
        &["openclaw", "cache", "--by", "model"],
        &["openclaw", "scheduled", "--agent", "main"],
    ] {
        let a = cli(args, None);
        let b = cli(args, Some(&pg.url));
        assert!(a.0 && b.0, "{args:?}: {} / {}", a.2, b.2);
        assert_eq!(a.1, b.1, "{args:?}");
        assert!(a.1.lines().count() >= 2, "{args:?}: {}", a.1);
    }
    // One sidecar's runs through the CLI; SQLite keeps no sidecar.
    let a = cli(&["openclaw", "waste"], None);
    let b = cli(
        &["openclaw", "waste", "--instance", "oc-side"],
        Some(&pg.url),
    );
    assert!(a.0 && b.0, "{} / {}", a.2, b.2);
    assert_eq!(a.1, b.1);
    let (ok, _, err) = cli(&["openclaw", "waste", "--instance", "oc-side"], None);
    assert!(!ok && err.contains("instance"), "{err}");
    // By session: from the central's spans, as the sidecar's rollups have it.
    let a = cli(&["openclaw", "cache", "--by", "session"], None);
    let b = cli(&["openclaw", "cache", "--by", "session"], Some(&pg.url));
    assert!(a.0 && b.0, "{} / {}", a.2, b.2);
    assert_eq!(a.1, b.1);
    // The cache view counts whole hours: a window on hour boundaries holds every call.
    let hour = 3_600_000;
    let whole_hours = format!(
        "from={}&to={}",
        (base - 60_000) / hour * hour,
        (now_ms() + 60_000) / hour * hour + hour
    );
    let path = format!("/v1/openclaw/cache?by=session&{whole_hours}");
    let (_, here) = get(&side, &path);
    let (_, by_session) = get(&central, &path);
    same_json(&here, &by_session, &path).unwrap_or_else(|e| panic!("{e}\n{here}\n{by_session}"));
    assert!(
        by_session["rows"].as_array().unwrap().len() >= 2,
        "{by_session}"
    );
}

/// One agent run posted to `d`: the root, `calls` LLM calls of `tokens` each, and the
/// tools called in order (their arguments as the input text).
fn post_agent_run(
    d: &Daemon,
    trace: &str,
    start_ms: i64,
    calls: usize,
    tokens: i64,
    tools: &[&str],
) {
    let root = "00000000000000a1";
    let mut spans = vec![json!({
        "kind": "agent_run", "name": "invoke_agent", "agent_id": "planner", "trace_id": trace,
        "span_id": root, "timestamp": start_ms, "latency_ms": 9_000 + calls as i64 * 100,
    })];
    let mut t = start_ms + 10;
    for (i, tool) in tools.iter().enumerate() {
        spans.push(json!({
            "kind": "tool_call", "tool_name": tool, "agent_id": "planner", "trace_id": trace,
            "span_id": format!("{:016x}", 0xb00 + i), "parent_span_id": root, "timestamp": t,
            "latency_ms": 5, "input_text": format!("{{\"path\": \"/tmp/{tool}\"}}"),
        }));
        t += 10;
    }
    for c in 0..calls {
        spans.push(json!({
            "provider": "openai", "model": "gpt-4o", "agent_id": "planner", "trace_id": trace,
            "span_id": format!("{:016x}", 0xc00 + c), "parent_span_id": root, "timestamp": t,
            "latency_ms": 50, "prompt_tokens": tokens * 9 / 10, "completion_tokens": tokens / 10,
            "cost_usd": tokens as f64 * 1e-5,
        }));
        t += 20;
    }
    post(d, "/v1/traces", &json!(spans));
}

/// Baselines and anomalies answer on a central on PostgreSQL what the sidecar that
/// captured the runs answers on SQLite: a run's check against its agent's history
/// (with evaluation scores), the agents' baselines, and the anomalies the sidecar found
/// and pushed; the CLI prints the same on the central's PostgreSQL.
#[test]
fn baselines_and_anomalies_answer_on_a_central_as_on_the_sidecar_that_pushed_the_runs() {
    let (pg, central, side) = central_and_sidecar("bl-side", &[("OCT_BASELINE_SETTLE", "100ms")]);
    let base = now_ms() - 3 * 3_600_000;
    let trace = |i: usize| format!("{:032x}", 0xba5e_0000 + i);
    // Twelve ordinary runs, then one with ten times the calls and tokens.
    for i in 0..12 {
        let tools: &[&str] = if i % 4 == 0 {
            &["read", "read", "write"]
        } else {
            &["read", "write"]
        };
        post_agent_run(
            &side,
            &trace(i),
            base + i as i64 * 60_000,
            3 + i % 2,
            1_000 + (i as i64 % 3) * 50,
            tools,
        );
        post(
            &side,
            "/v1/scores",
            &json!({"trace_id": trace(i), "name": "helpfulness", "value": 0.8 + (i % 3) as f64 * 0.05}),
        );
    }
    post_agent_run(
        &side,
        &trace(12),
        base + 12 * 60_000,
        30,
        10_000,
        &["read", "write", "exec", "exec"],
    );
    post(
        &side,
        "/v1/scores",
        &json!({"trace_id": trace(12), "name": "helpfulness", "value": 0.1}),
    );
    side.wait_count(
        "SELECT count(*) FROM events WHERE name = 'baseline_anomaly'",
        1,
        Duration::from_secs(30),
    );
    let figures = "SELECT count(*) || '/' || COALESCE(sum(total_tokens), 0) FROM spans";
    let events_sql = "SELECT count(*) FROM events WHERE name IN ('baseline_anomaly', 'gen_ai.evaluation.result')";
    wait_until(
        "the sidecar's runs and anomalies on the central",
        Duration::from_secs(30),
        || {
            let conn = rusqlite::Connection::open(&side.db_path).unwrap();
            let mine: String = conn.query_row(figures, [], |r| r.get(0)).unwrap();
            let same = mine == pg.psql(figures).trim()
                && common::count(&side.db_path, events_sql) == n(&pg, events_sql);
            std::thread::sleep(Duration::from_millis(200));
            same
        },
    );
    for path in [
        format!("/v1/baseline?run_id={}", trace(12)),
        format!("/v1/baseline?run_id={}&threshold=2", trace(12)),
        format!("/v1/baseline?run_id={}", trace(5)),
        "/v1/baseline".to_string(),
        "/v1/baseline?agent=planner".into(),
        "/v1/anomalies".into(),
        "/v1/anomalies?agent_id=planner&limit=1".into(),
        "/v1/anomalies?agent_id=nobody".into(),
    ] {
        let (s1, mut here) = get(&side, &path);
        let (s2, mut there) = get(&central, &path);
        assert_eq!((s1, s2), (200, 200), "{path}: {here} / {there}");
        // Cursors are each store's own.
        for v in [&mut here, &mut there] {
            if let Some(o) = v.as_object_mut() {
                o.remove("next_cursor");
            }
        }
        same_json(&here, &there, &path).unwrap_or_else(|e| panic!("{e}\n{here}\n{there}"));
    }
    let (_, check) = get(&central, &format!("/v1/baseline?run_id={}", trace(12)));
    assert_eq!(check["anomalous"], true, "{check}");
    let anomalous: Vec<&str> = check["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["anomalous"] == true)
        .map(|m| m["metric"].as_str().unwrap())
        .collect();
    assert!(
        anomalous.contains(&"llm_calls") && anomalous.contains(&"total_tokens"),
        "{check}"
    );
    assert_eq!(check["scores"][0]["anomalous"], true, "{check}");
    let (_, list) = get(&central, "/v1/anomalies");
    assert_eq!(list["anomalies"][0]["trace_id"], trace(12), "{list}");
    // A run that is not there: 404 on both.
    let missing = format!("/v1/baseline?run_id={:032x}", 7);
    assert_eq!(get(&central, &missing).0, 404);
    assert_eq!(get(&side, &missing).0, 404);
    // The CLI on the central's PostgreSQL prints what it prints on the sidecar's file.
    let cli = |args: &[&str], pg_url: Option<&str>| {
        let (ok, out, _) = cli_beside(&side, args, pg_url);
        (ok, out)
    };
    let t12 = trace(12);
    for args in [
        &["baseline", "show"][..],
        &["baseline", "show", "--agent", "planner"],
        &["baseline", "check", &t12],
        &["baseline", "check", &t12, "--json"],
    ] {
        let a = cli(args, None);
        let b = cli(args, Some(&pg.url));
        assert_eq!(a, b, "{args:?}");
        assert!(a.1.lines().count() >= 2, "{args:?}: {}", a.1);
    }
}

/// Host events of the central's own host in PostgreSQL: (uid, attributes).
fn own_host_events(pg: &PgServer, name: &str, instance: &str) -> Vec<(String, Value)> {
    pg.psql(&format!(
        "SELECT uid || ' ' || attributes FROM events WHERE source = 'host' AND name = '{name}'
           AND instance_id = '{instance}' ORDER BY id"
    ))
    .lines()
    .filter_map(|l| {
        let (uid, a) = l.split_once(' ')?;
        Some((uid.to_string(), serde_json::from_str(a).ok()?))
    })
    .collect()
}

#[test]
fn a_central_watches_its_own_host_and_keeps_a_condition_once_across_a_restart() {
    let pg = PgServer::start();
    let env = [
        ("OCT_AUTH_TOKEN", TOKEN),
        ("OCT_DATABASE_URL", pg.url.as_str()),
        ("OCT_INSTANCE_ID", "central-1"),
        ("OCT_HOST_DISABLE", ""),
        ("OCT_METRICS_INTERVAL", "500ms"),
        ("OCT_DNS_PROBE_HOSTS", "localhost"),
    ];
    let mut central = Daemon::start(&env);
    // sh forks a short-lived child, then becomes `sleep`, which never reaps it: a
    // zombie, a condition of the central's own host.
    let mut parent = std::process::Command::new("sh")
        .args(["-c", "sleep 0 & exec sleep 60"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ppid = parent.id() as i64;
    let mine = || -> Vec<(String, Value)> {
        own_host_events(&pg, "zombie_processes", "central-1")
            .into_iter()
            .filter(|(_, a)| a["parent_pid"] == json!(ppid))
            .collect()
    };
    wait_until("the zombie's event", Duration::from_secs(30), || {
        !mine().is_empty()
    });
    let points = |name: &str| {
        n(
            &pg,
            &format!(
                "SELECT count(*) FROM metric_points WHERE name = '{name}' AND instance_id = 'central-1'"
            ),
        )
    };
    wait_until("the central's own samples", Duration::from_secs(30), || {
        points("system.process.count") >= 2
    });
    // Through the API as the host page asks: the central's series by its instance id.
    let (status, series) = get(
        &central,
        "/v1/metrics?name=system.process.count&attr.service.instance.id=central-1",
    );
    assert_eq!(status, 200, "{series}");
    assert!(!series["series"].as_array().unwrap().is_empty(), "{series}");
    assert_eq!(mine()[0].1["state"], "active");
    // A sidecar's open condition of the same kind, pushed: the central must not take it
    // for its own after the restart (it would close it, since it does not hold here).
    let mut theirs_attrs = mine()[0].1.clone();
    let condition = format!("{}-on-side-9", theirs_attrs["condition"].as_str().unwrap());
    theirs_attrs["condition"] = json!(condition);
    theirs_attrs["parent_pid"] = json!(999_999);
    let their_uid = "side-9-zombie-condition";
    post(
        &central,
        "/v1/push",
        &json!({"schema_version": 2, "source": {"instance": {"id": "side-9"}},
            "records": [{"type": "error", "id": their_uid, "data": {"id": their_uid,
                "name": "zombie_processes", "time_ns": now_ms() * 1_000_000, "source": "host",
                "severity": "error", "attributes": theirs_attrs}}]}),
    );
    let theirs = || own_host_events(&pg, "zombie_processes", "side-9");
    wait_until("the sidecar's condition", Duration::from_secs(30), || {
        !theirs().is_empty()
    });
    // Restarted while the zombie lasts: the open condition is adopted, not reported again.
    central.stop();
    let before = points("system.process.count");
    let central = Daemon::start(&env);
    wait_until("samples after the restart", Duration::from_secs(30), || {
        points("system.process.count") >= before + 4
    });
    assert_eq!(mine().len(), 1, "{:?}", mine());
    // The sidecar's condition is left as it was sent: still open, once.
    let t = theirs();
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(
        (t[0].0.as_str(), &t[0].1["state"]),
        (their_uid, &json!("active")),
        "{t:?}"
    );
    // The parent goes, the zombie with it: the same event is closed in PostgreSQL.
    let _ = parent.kill();
    let _ = parent.wait();
    wait_until("the condition's end", Duration::from_secs(30), || {
        mine()
            .first()
            .is_some_and(|(_, a)| a["state"] == "resolved")
    });
    let ev = mine();
    assert_eq!(ev.len(), 1, "{ev:?}");
    let a = &ev[0].1;
    assert!(
        a["started_at"].is_string() && a["ended_at"].is_string(),
        "{a}"
    );
    assert!(a["duration_ms"].as_i64().unwrap() > 0, "{a}");
    // No other host's condition was taken for the central's: the one host event not the
    // central's is the sidecar's, still open.
    assert_eq!(
        n(
            &pg,
            "SELECT count(*) FROM events WHERE source = 'host' AND instance_id IS DISTINCT FROM 'central-1'"
        ),
        1
    );
    assert_eq!(theirs()[0].1["state"], "active");
    drop(central);
}
