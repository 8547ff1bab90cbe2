//! Cost and usage end to end: the real binary, real HTTP, a real database.
mod common;
use common::*;
use openclaw_trace::model::{Record, Span, SpanId, SpanKind, TraceId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An LLM call as the native API takes it.
fn call(agent: &str, model: &str, at_ms: i64, input: i64, output: i64, cost: Option<f64>) -> Value {
    let mut v = json!({
        "provider": "openai", "model": model, "agent_id": agent, "session_id": format!("s-{agent}"),
        "timestamp": at_ms, "latency_ms": 100 + (input % 900),
        "prompt_tokens": input, "completion_tokens": output,
    });
    if let Some(c) = cost {
        v["cost_usd"] = json!(c);
    }
    v
}

/// Usage per hour, agent and model, straight from the raw spans.
/// (hour, agent, model) → (calls, input, output, cost, priced calls).
type Direct = BTreeMap<(i64, String, String), (i64, i64, i64, f64, i64)>;

fn direct(d: &Daemon) -> Direct {
    let conn = d.db();
    let mut st = conn
        .prepare(
            "SELECT start_ns - (start_ns % 3600000000000), COALESCE(agent_id, ''),
                COALESCE(response_model, request_model, ''), count(*), sum(input_tokens),
                sum(output_tokens), COALESCE(sum(cost_usd), 0), count(cost_usd)
             FROM spans WHERE kind = 'llm_call' GROUP BY 1, 2, 3",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get(2)?),
            (r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?),
        ))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn usage(d: &Daemon, query: &str) -> Value {
    let r = client()
        .get(d.url(&format!("/v1/usage?{query}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

fn assert_matches_direct(d: &Daemon) {
    let want = direct(d);
    let got = usage(d, "group_by=model,agent&bucket=hour");
    let rows = got["rows"].as_array().unwrap();
    assert_eq!(rows.len(), want.len(), "{got:#}");
    for row in rows {
        let t =
            openclaw_trace::util::time::parse_timestamp_str(row["bucket_start"].as_str().unwrap())
                .unwrap();
        let key = (
            t,
            row["agent_id"].as_str().unwrap_or("").to_string(),
            row["model"].as_str().unwrap_or("").to_string(),
        );
        let w = want
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} not in {want:?}"));
        assert_eq!(row["calls"], w.0, "{key:?}");
        assert_eq!(row["input_tokens"], w.1, "{key:?}");
        assert_eq!(row["output_tokens"], w.2, "{key:?}");
        assert_eq!(
            row["calls"].as_i64().unwrap() - row["unpriced_calls"].as_i64().unwrap(),
            w.4
        );
        let cost = row["cost_usd"].as_f64();
        if w.4 == 0 {
            assert_eq!(cost, None, "unknown cost is null, not 0");
        } else {
            assert!(
                (cost.unwrap() - w.3).abs() < 1e-9,
                "{key:?}: {cost:?} vs {}",
                w.3
            );
        }
    }
}

#[test]
fn rollups_match_raw_spans_through_late_arrivals_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), &[]);
    let base = (now_ms() / HOUR_MS - 30) * HOUR_MS;
    // Newest hours first, then late calls for older hours.
    let mut batch = Vec::new();
    for h in (0..6).rev() {
        for (i, agent) in ["main", "coder"].iter().enumerate() {
            let model = ["gpt-4o", "gpt-4o-mini-2024-07-18", "my-local-model"][(h + i) % 3];
            let cost = (h % 2 == 0 && model != "my-local-model").then_some(0.01 * (h + 1) as f64);
            batch.push(call(
                agent,
                model,
                base + h as i64 * HOUR_MS + 60_000 * i as i64,
                1000 + 10 * h as i64,
                200,
                cost,
            ));
        }
    }
    assert_eq!(post_json(&d.url("/v1/traces"), &json!(batch)).status(), 202);
    let late = vec![
        call("main", "gpt-4o", base + 30 * 60_000, 500, 50, None),
        call(
            "main",
            "gpt-4o",
            base + 2 * HOUR_MS + 5_000,
            700,
            70,
            Some(0.5),
        ),
    ];
    assert_eq!(post_json(&d.url("/v1/traces"), &json!(late)).status(), 202);
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 14, Duration::from_secs(10)),
        14
    );
    assert_matches_direct(&d);
    // The same spans again (a client retry) change nothing.
    let first = d
        .db()
        .query_row(
            "SELECT lower(hex(trace_id)), lower(hex(span_id)) FROM spans LIMIT 1",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .unwrap();
    let mut dup = call("main", "gpt-4o", base, 1, 1, None);
    dup["trace_id"] = json!(first.0);
    dup["span_id"] = json!(first.1);
    assert_eq!(post_json(&d.url("/v1/traces"), &dup).status(), 202);
    assert!(d.stop().success());

    // While the daemon is down, spans land without rollups (an older build wrote them).
    {
        let mut conn = openclaw_trace::store::open_writer(&d.db_path).unwrap();
        let tx = conn.transaction().unwrap();
        let mut recs = Vec::new();
        for h in [1i64, 7, 8] {
            let start = (base + h * HOUR_MS + 90_000) * 1_000_000;
            let mut s = Span::new(
                TraceId::generate(),
                SpanId::generate(),
                "chat gpt-4o".into(),
                SpanKind::LlmCall,
                start,
            );
            s.end_ns = Some(start + 250_000_000);
            s.agent_id = Some("main".into());
            s.provider = Some("openai".into());
            s.request_model = Some("gpt-4o".into());
            s.input_tokens = Some(100);
            s.output_tokens = Some(10);
            s.cost_usd = Some(0.002);
            recs.push(Record::Span(Box::new(s)));
        }
        openclaw_trace::store::write::write_records(&tx, &recs, 0).unwrap();
        tx.commit().unwrap();
    }
    let d = Daemon::start_in(dir.path(), &[]);
    // Backfill runs before the first request is served... or just after: wait for it.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while usage(&d, "")["totals"]["calls"] != 17 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_matches_direct(&d);
    assert!(
        d.logs()
            .iter()
            .any(|l| l.contains("usage rollups backfilled"))
    );

    // Days are sums of hours; the CLI prints the same figures.
    let days = usage(&d, "bucket=day");
    let day_calls: i64 = days["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["calls"].as_i64().unwrap())
        .sum();
    assert_eq!(day_calls, 17);
    let out = d.cli(&["usage", "--since", "3d", "--by", "model", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["totals"]["calls"], 17);
    assert_eq!(cli["rows"].as_array().unwrap().len(), 3);
    let table = d.cli(&["usage", "--since", "3d", "--by", "agent,day"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("CALLS") && table.contains("main") && table.contains("TOTAL"),
        "{table}"
    );
    assert!(table.contains("have no known cost"), "{table}");
}

#[test]
fn costs_are_reported_computed_or_unknown() {
    let d = Daemon::start(&[]);
    let body = json!([
        // Computed: 1 000 × 2.50 + 500 × 10.00 = 7 500 µ$.
        {"provider": "openai", "model": "gpt-4o-2024-08-06", "prompt_tokens": 1000, "completion_tokens": 500, "span_id": "00000000000000a1"},
        // Reported and equal to the table's figure: one number.
        {"provider": "openai", "model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 500, "cost_usd": 0.0075, "span_id": "00000000000000a2"},
        // Reported and different: both kept.
        {"provider": "openai", "model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 500, "cost_usd": 0.02, "span_id": "00000000000000a3"},
        // Cached input: (10 000 − 8 000) × 3 + 8 000 × 0.30 + 1 000 × 15 = 23 400 µ$.
        {"provider": "anthropic", "model": "claude-sonnet-4-20250514", "prompt_tokens": 10000, "cache_read_tokens": 8000, "completion_tokens": 1000, "span_id": "00000000000000a4"},
        // No price: unknown.
        {"provider": "local", "model": "my-local-model", "prompt_tokens": 10, "completion_tokens": 5, "span_id": "00000000000000a5"},
    ]);
    assert_eq!(post_json(&d.url("/v1/traces"), &body).status(), 202);
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 5, Duration::from_secs(10)),
        5
    );
    type CostRow = (String, Option<f64>, Option<String>, Option<f64>);
    let rows: Vec<CostRow> = {
        let conn = d.db();
        let mut st = conn
            .prepare("SELECT lower(hex(span_id)), cost_usd, cost_source, cost_computed_usd FROM spans ORDER BY span_id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
    assert!(
        close(rows[0].1, 0.0075) && rows[0].2.as_deref() == Some("computed") && rows[0].3.is_none()
    );
    assert!(
        close(rows[1].1, 0.0075) && rows[1].2.as_deref() == Some("reported") && rows[1].3.is_none()
    );
    assert!(
        close(rows[2].1, 0.02)
            && rows[2].2.as_deref() == Some("reported")
            && close(rows[2].3, 0.0075)
    );
    assert!(close(rows[3].1, 0.0234) && rows[3].2.as_deref() == Some("computed"));
    assert_eq!((rows[4].1, rows[4].2.as_deref()), (None, None));
    // The trace API shows both figures.
    let tid: String = d
        .db()
        .query_row(
            "SELECT lower(hex(trace_id)) FROM spans WHERE span_id = x'00000000000000a3'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let t = d.get_json(&format!("/v1/traces/{tid}"));
    assert_eq!(t["spans"][0]["cost_computed_usd"], 0.0075);
    // /health and /v1/pricing name the model without a price.
    let h = d.get_json("/health");
    assert_eq!(
        h["analytics"]["unpriced_models"][0]["model"],
        "my-local-model"
    );
    let r = client()
        .get(d.url("/v1/pricing?model=my-local-model"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: Value = r.json().unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("no price for model"),
        "{e}"
    );
    let m = d.get_json("/v1/pricing?model=claude-sonnet-4-20250514");
    assert_eq!(m["match"]["id"], "claude-sonnet-4-0");
    assert_eq!(m["match"]["origin"], "bundled");
    // /health dates the price table and names its source.
    let a = &h["analytics"];
    assert!(
        a["price_table_source"]
            .as_str()
            .unwrap()
            .starts_with("genai-prices "),
        "{a}"
    );
    assert_eq!(a["price_table_as_of"].as_str().unwrap().len(), 10, "{a}");
}

#[test]
fn openclaw_config_prices_apply() {
    let dir = tempfile::tempdir().unwrap();
    // The shape of OpenClaw's config (shared/samples/openclaw/openclaw.config.json).
    let cfg = dir.path().join("openclaw.json");
    std::fs::write(
        &cfg,
        r#"{"models":{"mode":"merge","providers":{"fake":{"baseUrl":"http://127.0.0.1:18080/v1","apiKey":"sk-local",
            "api":"openai-completions","models":[{"id":"fake-model","name":"Fake Model","reasoning":false,"input":["text"],
            "cost":{"input":1.0,"output":2.0,"cacheRead":0,"cacheWrite":0},"contextWindow":128000,"maxTokens":4096}]}}}}"#,
    )
    .unwrap();
    let d = Daemon::start(&[("OCT_PRICING_FILE", cfg.to_str().unwrap())]);
    // The sample transcript's call: 123 in, 17 out → 0.000123 + 0.000034.
    let r = post_json(
        &d.url("/v1/traces"),
        &json!({"provider": "fake", "model": "fake-model", "prompt_tokens": 123, "completion_tokens": 17}),
    );
    assert_eq!(r.status(), 202);
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 1, Duration::from_secs(10)),
        1
    );
    let cost: f64 = d
        .db()
        .query_row("SELECT cost_usd FROM spans", [], |r| r.get(0))
        .unwrap();
    assert!((cost - 0.000157).abs() < 1e-12, "{cost}");
}

#[test]
fn bad_settings_and_parameters_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("prices.toml");
    std::fs::write(&bad, "[[model]]\nid = \"x\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .env_clear()
        .env("OCT_PORT", "0")
        .env("OCT_DB_PATH", dir.path().join("t.db"))
        .env("OCT_PRICING_FILE", &bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OCT_PRICING_FILE") && err.contains("prices.toml"),
        "{err}"
    );

    let d = Daemon::start(&[]);
    for (q, field) in [
        ("group_by=colour", "group_by"),
        ("bucket=week", "bucket"),
        ("from=yesterday", "from"),
    ] {
        let r = client()
            .get(d.url(&format!("/v1/usage?{q}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let e: Value = r.json().unwrap();
        assert_eq!(e["field"], field, "{e}");
    }
    let empty = usage(&d, "group_by=session");
    assert_eq!(empty["totals"]["calls"], 0);
    assert_eq!(empty["totals"]["cost_usd"], Value::Null);
}

/// Usage rows by (day, model, agent): (calls, input tokens, output tokens, cost, p50 latency).
type Days = BTreeMap<(String, String, String), (i64, i64, i64, f64, f64)>;

fn by_day(d: &Daemon) -> Days {
    usage(d, "bucket=day&group_by=model,agent")["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["bucket_start"].as_str().unwrap().to_string(),
                    r["model"].as_str().unwrap_or("").to_string(),
                    r["agent_id"].as_str().unwrap_or("").to_string(),
                ),
                (
                    r["calls"].as_i64().unwrap(),
                    r["input_tokens"].as_i64().unwrap(),
                    r["output_tokens"].as_i64().unwrap(),
                    r["cost_usd"].as_f64().unwrap_or(0.0),
                    r["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
                ),
            )
        })
        .collect()
}

#[test]
fn retention_folds_old_hours_into_days_and_drops_days_past_the_usage_retention() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let day_ms = 24 * HOUR_MS;
    // Midday ten days ago, so its hours share one UTC day.
    let ten_days_ago = now - 10 * day_ms - now.rem_euclid(day_ms) + 12 * HOUR_MS;
    let calls = vec![
        call("main", "gpt-4o", now - HOUR_MS, 100, 10, Some(0.01)),
        call("main", "gpt-4o", ten_days_ago, 200, 20, Some(0.02)),
        call(
            "main",
            "gpt-4o",
            ten_days_ago + HOUR_MS,
            300,
            30,
            Some(0.03),
        ),
        call(
            "coder",
            "gpt-4o-mini",
            ten_days_ago + 2 * HOUR_MS,
            400,
            40,
            None,
        ),
        call("main", "gpt-4o", now - 50 * day_ms, 500, 50, Some(0.05)),
    ];
    // Stored with every retention off: the rollups hold all of it, hour by hour.
    let mut d = Daemon::start_in(
        dir.path(),
        &[
            ("OCT_RETENTION_DAYS", "0"),
            ("OCT_USAGE_RETENTION_DAYS", "0"),
        ],
    );
    assert_eq!(post_json(&d.url("/v1/traces"), &json!(calls)).status(), 202);
    d.wait_count("SELECT count(*) FROM spans", 5, Duration::from_secs(10));
    let before = by_day(&d);
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(d.stop().success());

    // Spans and hours for 3 days, usage for 30, retention every second.
    let env = [
        ("OCT_RETENTION_DAYS", "3"),
        ("OCT_USAGE_RETENTION_DAYS", "30"),
        ("OCT_CLEANUP_INTERVAL", "1s"),
    ];
    let mut d = Daemon::start_in(dir.path(), &env);
    let three_days_ago_ns = (now - 3 * day_ms) * 1_000_000;
    let old_hours =
        format!("SELECT count(*) FROM usage_hourly WHERE hour_ns < {three_days_ago_ns}");
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while (count(&d.db_path, &old_hours) > 0 || count(&d.db_path, "SELECT count(*) FROM spans") > 1)
        && std::time::Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&d.db_path, &old_hours), 0, "old hours are folded");
    assert_eq!(
        count(&d.db_path, "SELECT count(*) FROM spans"),
        1,
        "old spans are gone"
    );
    assert_eq!(
        count(&d.db_path, "SELECT count(*) FROM usage_daily"),
        2,
        "one row per day, agent, session and model ten days ago; none fifty days ago"
    );
    assert_eq!(count(&d.db_path, "SELECT count(*) FROM usage_hourly"), 1);
    // Days read the same as before, except the one past the usage retention.
    let after = by_day(&d);
    let mut want = before.clone();
    let fifty = want
        .keys()
        .find(|k| k.0 < format_day(now - 40 * day_ms))
        .cloned()
        .unwrap();
    want.remove(&fifty);
    assert_eq!(after.len(), want.len(), "{after:?}");
    for (k, w) in &want {
        let a = after[k];
        assert_eq!((a.0, a.1, a.2), (w.0, w.1, w.2), "{k:?}");
        assert!(
            (a.3 - w.3).abs() < 1e-12 && a.4 == w.4,
            "{k:?}: {a:?} vs {w:?}"
        );
    }
    // A late call for a folded day lands in its hour, counts at once, and folds in later.
    let late = call(
        "main",
        "gpt-4o",
        ten_days_ago + 3 * HOUR_MS,
        1000,
        100,
        Some(0.1),
    );
    assert_eq!(
        post_json(&d.url("/v1/traces"), &json!([late])).status(),
        202
    );
    let day_key = before
        .keys()
        .find(|k| k.1 == "gpt-4o" && k.0 == format_day(ten_days_ago))
        .cloned()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while by_day(&d)[&day_key].0 != before[&day_key].0 + 1 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while count(&d.db_path, &old_hours) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&d.db_path, &old_hours), 0);
    let got = by_day(&d)[&day_key];
    assert_eq!(
        (got.0, got.1),
        (before[&day_key].0 + 1, before[&day_key].1 + 1000)
    );
    assert!(d.stop().success());
}

/// The UTC day holding `ms`, as `bucket_start` writes it.
fn format_day(ms: i64) -> String {
    let day = ms - ms.rem_euclid(24 * HOUR_MS);
    openclaw_trace::util::time::format_ns(day * 1_000_000)
}
