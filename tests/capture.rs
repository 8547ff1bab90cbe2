//! The capture API against the real binary: Go-compatible shapes, batches, and
//! every bad-input class (each gets its 4xx and loses nothing else).
mod common;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const SPANS: &str = "SELECT count(*) FROM spans";
const EVENTS: &str = "SELECT count(*) FROM events";

/// The Go version's request bodies, as its clients send them.
fn go_trace() -> Value {
    json!({
        "provider": "anthropic", "model": "claude-sonnet-4-20250514",
        "input_text": "What is 2+2?", "output_text": "4",
        "prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13,
        "cost_usd": 0.000051, "latency_ms": 840, "status": "ok", "error_type": "",
        "metadata": "{\"agent\":\"main\",\"channel\":\"webchat\"}"
    })
}

fn go_error() -> Value {
    json!({"error_type": "ProviderTimeout", "message": "upstream timed out", "stack_trace": "at x\nat y", "severity": "warning", "metadata": "{}"})
}

#[test]
fn go_shapes_are_accepted_and_stored_faithfully() {
    let d = Daemon::start(&[]);
    let r = post_json(&d.url("/v1/traces"), &go_trace());
    assert_eq!(r.status(), 202);
    let body: Value = r.json().unwrap();
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["ids"].as_array().unwrap().len(), 1);
    let r = post_json(&d.url("/v1/errors"), &go_error());
    assert_eq!(r.status(), 202);
    assert_eq!(d.wait_count(SPANS, 1, Duration::from_secs(5)), 1);
    assert_eq!(d.wait_count(EVENTS, 1, Duration::from_secs(5)), 1);
    let db = d.db();
    let (provider, model, inp, out, total, cost, src, lat, status, attrs, text): (
        String, String, i64, i64, i64, f64, String, f64, String, String, String,
    ) = db
        .query_row(
            "SELECT provider, request_model, input_tokens, output_tokens, total_tokens, cost_usd, cost_source, latency_ms, status, attributes, input_text FROM spans",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?)),
        )
        .unwrap();
    assert_eq!(
        (provider.as_str(), model.as_str()),
        ("anthropic", "claude-sonnet-4-20250514")
    );
    assert_eq!((inp, out, total), (12, 1, 13));
    assert!((cost - 0.000051).abs() < 1e-12);
    assert_eq!(src, "reported");
    assert!((lat - 840.0).abs() < 1e-6);
    assert_eq!(status, "ok");
    assert_eq!(text, "What is 2+2?");
    let attrs: Value = serde_json::from_str(&attrs).unwrap();
    assert_eq!(
        attrs["channel"], "webchat",
        "metadata given as a JSON string is kept as an object"
    );
    let (ty, msg, sev): (String, String, String) = db
        .query_row("SELECT name, message, severity FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(
        (ty.as_str(), msg.as_str(), sev.as_str()),
        ("ProviderTimeout", "upstream timed out", "warning")
    );
    // Read back through the API with the Go field names.
    let errs = d.get_json("/v1/errors");
    assert_eq!(errs["errors"][0]["message"], "upstream timed out");
    assert_eq!(errs["errors"][0]["stack_trace"], "at x\nat y");
}

#[test]
fn cost_is_unknown_not_zero_when_not_reported() {
    let d = Daemon::start(&[]);
    post_json(
        &d.url("/v1/traces"),
        &json!({"provider":"p","model":"m","prompt_tokens":5}),
    );
    d.wait_count(SPANS, 1, Duration::from_secs(5));
    let (cost, src): (Option<f64>, Option<String>) = d
        .db()
        .query_row("SELECT cost_usd, cost_source FROM spans", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((cost, src), (None, None));
    let t = d.get_json("/v1/traces");
    assert_eq!(t["traces"][0]["cost_usd"], Value::Null);
}

#[test]
fn batches_as_array_and_ndjson() {
    let d = Daemon::start(&[]);
    let arr: Vec<Value> = (0..25)
        .map(|i| json!({"provider":"p","model":"m","prompt_tokens":i}))
        .collect();
    let r = post_json(&d.url("/v1/traces"), &Value::Array(arr));
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().unwrap()["accepted"], 25);
    let nd = (0..5)
        .map(|i| json!({"name": format!("e{i}")}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let r = client()
        .post(d.url("/v1/events"))
        .header("content-type", "application/x-ndjson")
        .body(nd)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(d.wait_count(SPANS, 25, Duration::from_secs(5)), 25);
    assert_eq!(d.wait_count(EVENTS, 5, Duration::from_secs(5)), 5);
}

#[test]
fn every_bad_input_class_gets_its_4xx_and_loses_nothing_else() {
    let d = Daemon::start(&[
        ("OCT_MAX_BODY_BYTES", "65536"),
        ("OCT_AUTH_TOKEN", "s3cret"),
    ]);
    let auth = |rb: reqwest::blocking::RequestBuilder| rb.header("authorization", "Bearer s3cret");
    let good = || json!({"provider":"p","model":"m"});
    let ok = auth(client().post(d.url("/v1/traces")).json(&good()))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 202);
    let url = d.url("/v1/traces");
    let cases: Vec<(&str, reqwest::blocking::RequestBuilder, u16, Option<&str>)> = vec![
        (
            "invalid JSON",
            auth(
                client()
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{\"provider\":"),
            ),
            400,
            None,
        ),
        (
            "wrong type",
            auth(
                client()
                    .post(&url)
                    .json(&json!({"provider":"p","model":"m","prompt_tokens":"ten"})),
            ),
            400,
            Some("prompt_tokens"),
        ),
        (
            "negative count",
            auth(
                client()
                    .post(&url)
                    .json(&json!({"provider":"p","model":"m","completion_tokens":-1})),
            ),
            400,
            Some("completion_tokens"),
        ),
        (
            "missing required",
            auth(client().post(&url).json(&json!({"provider":"p"}))),
            400,
            Some("model"),
        ),
        (
            "bad id",
            auth(
                client()
                    .post(&url)
                    .json(&json!({"provider":"p","model":"m","trace_id":"nothex"})),
            ),
            400,
            Some("trace_id"),
        ),
        (
            "bad timestamp",
            auth(
                client()
                    .post(&url)
                    .json(&json!({"provider":"p","model":"m","timestamp":"yesterday"})),
            ),
            400,
            Some("timestamp"),
        ),
        (
            "invalid UTF-8",
            auth(
                client()
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}']),
            ),
            400,
            None,
        ),
        (
            "deep nesting",
            auth(
                client()
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(format!("{}{}", "[".repeat(5000), "]".repeat(5000))),
            ),
            400,
            None,
        ),
        (
            "huge field over the body limit",
            auth(
                client()
                    .post(&url)
                    .json(&json!({"provider":"p","model":"m","input_text":"x".repeat(100_000)})),
            ),
            413,
            None,
        ),
        (
            "wrong content type",
            auth(
                client()
                    .post(&url)
                    .header("content-type", "application/xml")
                    .body("<a/>"),
            ),
            415,
            None,
        ),
        ("no token", client().post(&url).json(&good()), 401, None),
        (
            "wrong token",
            client()
                .post(&url)
                .header("authorization", "Bearer nope")
                .json(&good()),
            401,
            None,
        ),
        (
            "bad item in a batch",
            auth(
                client()
                    .post(&url)
                    .json(&json!([good(), good(), {"provider":"p","model":5}])),
            ),
            400,
            Some("model"),
        ),
        (
            "empty batch",
            auth(client().post(&url).json(&json!([]))),
            400,
            None,
        ),
        (
            "not an object",
            auth(client().post(&url).json(&json!(["x"]))),
            400,
            None,
        ),
        (
            "errors: missing message",
            auth(
                client()
                    .post(d.url("/v1/errors"))
                    .json(&json!({"error_type":"X"})),
            ),
            400,
            Some("message"),
        ),
        (
            "events: missing name",
            auth(
                client()
                    .post(d.url("/v1/events"))
                    .json(&json!({"attributes":{}})),
            ),
            400,
            Some("name"),
        ),
        (
            "events: attributes wrong type",
            auth(
                client()
                    .post(d.url("/v1/events"))
                    .json(&json!({"name":"n","attributes":[1]})),
            ),
            400,
            Some("attributes"),
        ),
    ];
    for (what, rb, want, field) in cases {
        let r = rb.send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(status, want, "{what}: {text}");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: body is not JSON: {text}"));
        assert!(body["error"].is_string(), "{what}: {text}");
        if let Some(f) = field {
            assert_eq!(body["field"], f, "{what}: {text}");
        }
    }
    // Chunked with no Content-Length, over the limit: 413 all the same.
    let d2 = Daemon::start(&[("OCT_MAX_BODY_BYTES", "65536")]);
    let (status, body) = post_chunked(
        d2.addr,
        "/v1/traces",
        "application/json",
        vec![b' '; 200_000],
    );
    assert_eq!(status, 413, "{body}");
    let (status, _) = post_chunked(
        d2.addr,
        "/v1/traces",
        "application/json",
        good().to_string().into_bytes(),
    );
    assert_eq!(status, 202);
    // The batch with one bad item names that item.
    let r = auth(client().post(&url).json(&json!([good(), {"provider":"p"}])))
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["item"], 1);
    let ok = auth(client().post(d.url("/v1/traces")).json(&good()))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 202);
    // Exactly the two good records are stored: nothing bad got in, nothing good was lost.
    assert_eq!(d.wait_count(SPANS, 2, Duration::from_secs(5)), 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&d.db_path, SPANS), 2);
    assert_eq!(count(&d.db_path, EVENTS), 0);
    // /health and /ready need no token; the rest does.
    assert_eq!(client().get(d.url("/health")).send().unwrap().status(), 200);
    assert_eq!(client().get(d.url("/ready")).send().unwrap().status(), 200);
    assert_eq!(
        client().get(d.url("/v1/traces")).send().unwrap().status(),
        401
    );
    let h = d.get_json("/health");
    assert_eq!(h["status"], "ok");
}

#[test]
fn gzip_bodies_are_read() {
    use std::io::Write;
    let d = Daemon::start(&[]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(
        json!([{"provider":"p","model":"m"},{"provider":"p","model":"n"}])
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let body = gz.finish().unwrap();
    let r = client()
        .post(d.url("/v1/traces"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = client()
        .post(d.url("/v1/traces"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body[..body.len() / 2].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400, "a truncated gzip body is a client error");
    assert_eq!(d.wait_count(SPANS, 2, Duration::from_secs(5)), 2);
}

#[test]
fn text_is_capped_on_a_char_boundary_with_original_length() {
    let d = Daemon::start(&[("OCT_MAX_TEXT_BYTES", "10")]);
    post_json(
        &d.url("/v1/traces"),
        &json!({"provider":"p","model":"m","input_text":"ééééééééé","output_text":"short"}),
    );
    d.wait_count(SPANS, 1, Duration::from_secs(5));
    let (t, n, o, on): (String, i64, String, i64) = d
        .db()
        .query_row(
            "SELECT input_text, input_text_len, output_text, output_text_len FROM spans",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(t, "ééééé");
    assert_eq!(n, 18);
    assert_eq!((o.as_str(), on), ("short", 5));
}

#[test]
fn duplicate_spans_are_stored_once() {
    let d = Daemon::start(&[]);
    let s = json!({"provider":"p","model":"m","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","prompt_tokens":7});
    for _ in 0..3 {
        assert_eq!(post_json(&d.url("/v1/traces"), &s).status(), 202);
    }
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(count(&d.db_path, SPANS), 1);
    let t = d.get_json("/v1/traces");
    assert_eq!(
        t["traces"][0]["input_tokens"], 7,
        "the trace summary counts it once"
    );
    assert_eq!(t["traces"][0]["span_count"], 1);
}
