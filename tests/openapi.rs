//! The OpenAPI contract: `GET /openapi.json` documents every route the router has, and
//! schemathesis (scripts/setup-schemathesis.sh, into .cache/venv-schemathesis) runs a
//! bounded number of generated requests against the real daemon: no 5xx, every answer
//! matching the document.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, client};

/// The paths the router serves, read from the `.route("...")` calls of the source.
fn router_paths() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = BTreeSet::new();
    let files = std::fs::read_dir(root.join("src/api"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain([root.join("src/sources/otlp/http.rs")]);
    for f in files.filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + 7..];
            let Some(start) = rest.find('"') else { break };
            let tail = &rest[start + 1..];
            let end = tail.find('"').unwrap();
            out.insert(tail[..end].replace("{*", "{"));
        }
    }
    out
}

#[test]
fn the_document_is_served_and_lists_every_route() {
    let d = Daemon::start(&[("OCT_AUTH_TOKEN", "secret-token")]);
    // Served without the token, like /health.
    let r = client().get(d.url("/openapi.json")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: serde_json::Value = r.json().unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let served = router_paths();
    assert!(served.len() > 20, "{served:?}");
    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes not in openapi.json: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(extra.is_empty(), "documented, not served: {extra:?}");
    // Every operation documents its error answers with the error schema.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {path}: no success answer"
            );
            let query_params = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p.get("$ref").is_some()
                        || p["in"] == "query"
                        || p["schema"].get("pattern").is_some()
                })
            });
            if query_params || op.get("requestBody").is_some() {
                assert!(
                    responses.contains_key("400"),
                    "{method} {path}: takes checked input but documents no 400"
                );
            }
        }
    }
}

fn st_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/venv-schemathesis/bin/st")
}

#[test]
fn schemathesis_finds_no_failure() {
    let bin = st_bin();
    assert!(
        bin.exists(),
        "schemathesis is not installed: run scripts/setup-schemathesis.sh (scripts/test.sh does)"
    );
    let d = Daemon::start(&[]);
    let examples = std::env::var("OCT_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let out = Command::new(bin)
        .arg("--config-file")
        .arg(&config)
        .args([
            "run",
            &d.url("/openapi.json"),
            "--checks",
            "all",
            "--max-examples",
            &examples,
            // Reproducible: the same requests each run.
            "--seed",
            "18",
            "--no-color",
            // The live tail never ends by itself.
            "--exclude-path",
            "/v1/stream",
            "--request-timeout",
            "20",
            // One worker: hypothesis is not thread-safe on Python 3.11 (AST errors seen).
            "--workers",
            "1",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(&d.dir)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    assert!(
        !d.logs().iter().any(|l| l.contains("panicked")),
        "the daemon panicked"
    );
}
