//! Redaction and structured logs against the real binary: secrets never reach the database
//! or the log (unless `OCT_REDACT=off`), and log lines about a trace carry its ids.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const KEY: &str = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123";
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

fn post_secrets(d: &Daemon) {
    let span = json!({"provider":"anthropic","model":"claude","trace_id":TRACE,"span_id":SPAN,
        "input_text":format!("call with {KEY}"),
        "output_text":"Authorization: Bearer abcdefghijklmnop",
        "metadata":{"api_key":"plain-secret","headers":{"cookie":"sid=s3ss10n"},"llm.token_count.prompt":12},
        "status":"error"});
    assert_eq!(post_json(&d.url("/v1/traces"), &span).status(), 202);
    let err = json!({"error_type":"AuthError","message":"postgres://app:hunter2@db/main refused",
        "stack_trace":format!("at call({KEY})"),"trace_id":TRACE,"span_id":SPAN});
    assert_eq!(post_json(&d.url("/v1/errors"), &err).status(), 202);
    d.wait_count("SELECT count(*) FROM events", 1, Duration::from_secs(5));
    d.wait_count("SELECT count(*) FROM spans", 1, Duration::from_secs(5));
}

fn stored(d: &Daemon) -> String {
    let db = d.db();
    let span: (String, String, String) = db
        .query_row(
            "SELECT input_text, output_text, attributes FROM spans",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let event: (String, String) = db
        .query_row("SELECT message, stack_trace FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    format!("{span:?} {event:?}")
}

#[test]
fn secrets_are_masked_in_the_store_and_the_log() {
    let mut d = Daemon::start(&[("OCT_LOG_LEVEL", "debug")]);
    post_secrets(&d);
    let all = stored(&d);
    for secret in [
        KEY,
        "abcdefghijklmnop",
        "plain-secret",
        "s3ss10n",
        "hunter2",
    ] {
        assert!(!all.contains(secret), "{secret} stored in clear: {all}");
    }
    assert!(all.contains("call with [REDACTED]"), "{all}");
    assert!(all.contains("postgres://app:[REDACTED]@db/main"), "{all}");
    assert!(
        all.contains(r#"\"llm.token_count.prompt\":12"#),
        "counts are kept: {all}"
    );
    // Log lines about the trace carry its ids, and no secret.
    let until = Instant::now() + Duration::from_secs(5);
    let lines: Vec<Value> = loop {
        let lines: Vec<Value> = d
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let about_trace = lines.iter().filter(|l| l["trace_id"] == TRACE).count();
        if about_trace >= 2 || Instant::now() > until {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let span_line = lines
        .iter()
        .find(|l| l["message"] == "captured failed span")
        .expect("a log line for the failed span");
    assert_eq!(span_line["trace_id"], TRACE);
    assert_eq!(span_line["span_id"], SPAN);
    let err_line = lines
        .iter()
        .find(|l| l["message"] == "captured error")
        .expect("a log line for the error");
    assert_eq!(err_line["trace_id"], TRACE);
    assert_eq!(err_line["span_id"], SPAN);
    assert_eq!(err_line["level"], "INFO");
    assert!(d.stop().success());
    let log = d.logs().join("\n");
    for secret in [KEY, "hunter2", "plain-secret"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn redaction_off_keeps_raw_content() {
    let mut d = Daemon::start(&[("OCT_REDACT", "off")]);
    post_secrets(&d);
    let all = stored(&d);
    assert!(all.contains(KEY), "{all}");
    assert!(all.contains("plain-secret"), "{all}");
    assert!(d.stop().success());
    let bad = std::process::Command::new(BIN)
        .env_clear()
        .env("OCT_REDACT", "maybe")
        .env("OCT_DB_PATH", d.dir.join("other.db"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("OCT_REDACT: expected on/off"), "{msg}");
}
