//! Verbose capture (`OCT_TRACE_VERBOSE`): a 150 KB prompt, tool arguments and tool
//! result round-trip byte for byte from every capture door with it on, and are cut at
//! `OCT_MAX_TEXT_BYTES` with their original length kept with it off.

mod common;

use std::time::Duration;

use common::{Daemon, client, now_ms, post_json};
use serde_json::{Value, json};

const KB150: usize = 150 * 1024;

/// About `len` bytes of distinct text with multi-byte characters, so a cut on a byte
/// boundary that is not a character's would show.
fn big_text(tag: &str, len: usize) -> String {
    let mut s = String::with_capacity(len + 64);
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            "{tag} {i}: héllo wörld 日本語 \"quoted\" \\ line\n"
        ));
        i += 1;
    }
    s
}

struct Texts {
    prompt: String,
    completion: String,
    native_args: String,
    native_result: String,
    otlp_args: String,
    otlp_result: String,
    plugin_params: Value,
    plugin_result: Value,
}

fn texts() -> Texts {
    Texts {
        prompt: big_text("prompt", KB150),
        completion: big_text("completion", KB150),
        native_args: big_text("native-args", KB150),
        native_result: big_text("native-result", KB150),
        otlp_args: big_text("otlp-args", KB150),
        otlp_result: big_text("otlp-result", KB150),
        plugin_params: json!({"path": big_text("plugin-params", KB150)}),
        plugin_result: json!({"content": [{"type": "text", "text": big_text("plugin-result", KB150)}]}),
    }
}

const NATIVE_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const OTLP_TRACE: &str = "5b8efff798038103d269b633813fc60c";

/// Sends the texts through the native API, OTLP/HTTP JSON and the OpenClaw plugin endpoint.
fn capture(d: &Daemon, t: &Texts) {
    let now = now_ms();
    let r = post_json(
        &d.url("/v1/traces"),
        &json!([
            {"provider": "openai", "model": "gpt-4o", "trace_id": NATIVE_TRACE,
             "span_id": "b7ad6b7169203331", "input_text": t.prompt, "output_text": t.completion},
            {"kind": "tool_call", "name": "read_file", "trace_id": NATIVE_TRACE,
             "span_id": "b7ad6b7169203332", "parent_span_id": "b7ad6b7169203331",
             "input_text": t.native_args, "output_text": t.native_result},
        ]),
    );
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());

    let start_ns = (now - 1000) as u128 * 1_000_000;
    let otlp = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "agent"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": OTLP_TRACE, "spanId": "eee19b7ec3c1b174", "name": "execute_tool grep",
            "kind": 1, "startTimeUnixNano": start_ns.to_string(),
            "endTimeUnixNano": (start_ns + 5_000_000).to_string(),
            "attributes": [
                {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                {"key": "gen_ai.tool.name", "value": {"stringValue": "grep"}},
                {"key": "gen_ai.tool.call.arguments", "value": {"stringValue": t.otlp_args}},
                {"key": "gen_ai.tool.call.result", "value": {"stringValue": t.otlp_result}}
            ]
        }]}]
    }]});
    let r = post_json(&d.url("/v1/traces"), &otlp);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());

    let ctx = json!({"toolName": "ls", "agentId": "main", "sessionKey": "agent:main:main",
                     "sessionId": "6cbd573f-cf55-40e4-9f5a-2951a972e3f6",
                     "runId": "run-verbose", "toolCallId": "call_verbose"});
    let event = json!({"kind": "hook:after_tool_call", "ts": now - 500,
        "event": {"toolName": "ls", "params": t.plugin_params, "runId": "run-verbose",
                  "toolCallId": "call_verbose", "result": t.plugin_result, "durationMs": 141},
        "ctx": ctx});
    let r = client()
        .post(d.url("/v1/openclaw/events"))
        .header("content-type", "application/x-ndjson")
        .body(format!("{event}\n"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
}

/// (input_text, input_text_len, output_text, output_text_len) of the span `where_` picks.
fn stored(d: &Daemon, where_: &str) -> (String, i64, String, i64) {
    d.db()
        .query_row(
            &format!(
                "SELECT input_text, input_text_len, output_text, output_text_len FROM spans WHERE {where_}"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap_or_else(|e| panic!("span {where_}: {e}"))
}

fn wait_for_spans(d: &Daemon) {
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 4, Duration::from_secs(10)),
        4,
        "the LLM call, the native and OTLP tool calls and the plugin's tool call"
    );
}

/// Every captured text in one place: (which, sent, stored row).
fn pairs(d: &Daemon, t: &Texts) -> Vec<(&'static str, String, String, i64)> {
    let llm = stored(d, "lower(hex(span_id)) = 'b7ad6b7169203331'");
    let native = stored(d, "lower(hex(span_id)) = 'b7ad6b7169203332'");
    let otlp = stored(d, "lower(hex(span_id)) = 'eee19b7ec3c1b174'");
    let plugin = stored(d, "source = 'openclaw' AND tool_name = 'ls'");
    vec![
        ("prompt", t.prompt.clone(), llm.0, llm.1),
        ("completion", t.completion.clone(), llm.2, llm.3),
        (
            "native tool arguments",
            t.native_args.clone(),
            native.0,
            native.1,
        ),
        (
            "native tool result",
            t.native_result.clone(),
            native.2,
            native.3,
        ),
        ("OTLP tool arguments", t.otlp_args.clone(), otlp.0, otlp.1),
        ("OTLP tool result", t.otlp_result.clone(), otlp.2, otlp.3),
        (
            "plugin tool params",
            t.plugin_params.to_string(),
            plugin.0,
            plugin.1,
        ),
        (
            "plugin tool result",
            t.plugin_result.to_string(),
            plugin.2,
            plugin.3,
        ),
    ]
}

#[test]
fn verbose_capture_keeps_150_kb_texts_byte_for_byte_from_every_door() {
    let d = Daemon::start(&[("OCT_TRACE_VERBOSE", "1")]);
    let t = texts();
    capture(&d, &t);
    wait_for_spans(&d);
    for (which, sent, kept, len) in pairs(&d, &t) {
        assert!(sent.len() > KB150 - 1, "{which}: the test sends 150 KB");
        assert_eq!(len as usize, sent.len(), "{which}: original length");
        assert!(
            kept == sent,
            "{which}: kept {} of {} bytes, or changed",
            kept.len(),
            sent.len()
        );
    }
    // Through the query API too, not only in the table.
    let trace = d.get_json(&format!("/v1/traces/{NATIVE_TRACE}"));
    assert!(
        trace
            .to_string()
            .contains(&serde_json::to_string(&t.prompt).unwrap()[1..100])
    );
    let health = d.get_json("/health");
    assert_eq!(health["trace_verbose"], true);
    assert_eq!(health["text_limit_bytes"], 200 * 1024);
    let said = health["warnings"].to_string();
    assert!(said.contains("verbose capture on"), "{said}");
    assert!(
        d.logs().iter().any(|l| l.contains("verbose capture on")),
        "the log says it at start"
    );
}

#[test]
fn without_verbose_texts_are_cut_at_the_limit_with_their_length_kept() {
    let d = Daemon::start(&[]);
    let t = texts();
    capture(&d, &t);
    wait_for_spans(&d);
    for (which, sent, kept, len) in pairs(&d, &t) {
        assert_eq!(len as usize, sent.len(), "{which}: original length kept");
        assert!(
            kept.len() <= 16384 && kept.len() > 16384 - 4,
            "{which}: {}",
            kept.len()
        );
        assert!(
            sent.starts_with(&kept),
            "{which}: a prefix, cut on a char boundary"
        );
    }
    let health = d.get_json("/health");
    assert_eq!(health["trace_verbose"], false);
    assert_eq!(health["text_limit_bytes"], 16384);
}
