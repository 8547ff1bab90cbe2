//! The tamper-evident record on the real binary: a real database tampered with through
//! the `sqlite3` shell (scripts/setup-audit.sh installs it), with the daemon stopped and
//! while it runs; `openclaw-trace verify` must catch each change (exit 1, the right
//! kind) and pass an untouched database (exit 0), also after retention pruned it and
//! after a kill -9 under load.
mod common;
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use openclaw_trace::store::audit::{
    CHAINED, Change, Changes, ENTRY_COLUMNS, Entry, hex_bytes, latest_changes, row_digest,
};

const ENV: &[(&str, &str)] = &[("OCT_AUDIT", "on"), ("OCT_AUDIT_CHECKPOINT_INTERVAL", "1s")];

/// Runs SQL through the sqlite3 shell, as someone with shell access would.
fn shell(db: &Path, sql: &str) {
    let out = Command::new("sqlite3")
        .arg("-bail")
        .arg("-cmd")
        .arg(".timeout 10000")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 shell (scripts/setup-audit.sh installs it)");
    assert!(
        out.status.success(),
        "sqlite3 failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn verify(d: &Daemon) -> (i32, Value) {
    let out = d.cli(&["verify", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "verify printed no JSON: {text} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn assert_intact(d: &Daemon, when: &str) {
    let (code, v) = verify(d);
    assert_eq!(code, 0, "{when}: {v:#}");
    assert_eq!(v["ok"], true, "{when}: {v:#}");
}

/// Exit 1 and the first problem of the given kind; returns it.
fn assert_caught(d: &Daemon, kind: &str) -> Value {
    let (code, v) = verify(d);
    assert_eq!(code, 1, "{v:#}");
    let first = v["problems"][0].clone();
    assert_eq!(first["kind"], kind, "{v:#}");
    // The human report names it too.
    let text = String::from_utf8_lossy(&d.cli(&["verify"]).stdout).to_string();
    assert!(text.contains("NOT INTACT") && text.contains(kind), "{text}");
    first
}

/// 10 errors, then 40 LLM calls (so the newest rows are spans).
fn seed(d: &Daemon, tag: &str) {
    let c = client();
    let errors: Vec<Value> = (0..10)
        .map(|i| json!({"error_type": "E", "message": format!("{tag} error {i}")}))
        .collect();
    assert!(
        c.post(d.url("/v1/errors"))
            .json(&Value::Array(errors))
            .send()
            .unwrap()
            .status()
            .is_success()
    );
    for chunk in 0..4 {
        let spans: Vec<Value> = (0..10)
            .map(|i| {
                json!({"provider": "openai", "model": "gpt-4o", "prompt_tokens": 100 + i,
                       "completion_tokens": 7, "input_text": format!("{tag} call {chunk}/{i}"),
                       "agent_id": "a1"})
            })
            .collect();
        assert!(
            c.post(d.url("/v1/traces"))
                .json(&Value::Array(spans))
                .send()
                .unwrap()
                .status()
                .is_success()
        );
    }
}

fn one(db: &Path, sql: &str) -> i64 {
    count(db, sql)
}

/// Waits until the chain's newest entry is signed (running daemon, 1 s checkpoints).
fn wait_signed(d: &Daemon) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let last = one(&d.db_path, "SELECT COALESCE(MAX(seq), 0) FROM audit_chain");
        let signed = one(&d.db_path, "SELECT COALESCE(MAX(seq), -1) FROM audit_heads");
        if last > 0 && signed == last {
            return;
        }
        assert!(
            Instant::now() < until,
            "head never signed: {last} / {signed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon with seeded, signed data: stopped (its shutdown signs the head) or running.
fn seeded(dir: &Path, running: bool) -> Daemon {
    let mut d = Daemon::start_in(dir, ENV);
    seed(&d, "first");
    d.wait_count("SELECT count(*) FROM spans", 40, Duration::from_secs(10));
    d.wait_count("SELECT count(*) FROM events", 10, Duration::from_secs(10));
    wait_signed(&d);
    if !running {
        assert!(d.stop().success());
    }
    assert_intact(&d, "before tampering");
    d
}

/// A database kept with the chain off, then opened with it on (as after an upgrade,
/// the chain being on by default): the rows already stored are adopted into the chain
/// and verify from then on, new rows are chained as they come, and an edit of an
/// adopted row is caught. Turned off and on again, what was written meanwhile is not
/// hidden: it shows as added.
#[test]
fn a_database_kept_without_the_chain_is_adopted_when_it_turns_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), &[("OCT_AUDIT", "off")]);
    seed(&d, "before");
    d.wait_count("SELECT count(*) FROM spans", 40, Duration::from_secs(10));
    assert!(d.stop().success());
    assert_eq!(one(&d.db_path, "SELECT count(*) FROM audit_chain"), 0);
    // On by default now: no OCT_AUDIT given.
    let mut d = Daemon::start_in(dir.path(), &[("OCT_AUDIT_CHECKPOINT_INTERVAL", "1s")]);
    let adopted = one(
        &d.db_path,
        "SELECT count(*) FROM audit_chain WHERE op = 'changes' AND detail = 'adopted'",
    );
    assert!(
        adopted >= 2,
        "one adopting entry per table with rows: {adopted}"
    );
    seed(&d, "after");
    d.wait_count("SELECT count(*) FROM spans", 80, Duration::from_secs(10));
    wait_signed(&d);
    assert!(d.stop().success());
    let (code, v) = verify(&d);
    assert_eq!(code, 0, "{v:#}");
    assert!(v["rows_checked"].as_u64().unwrap() >= 100, "{v:#}");
    // An adopted row is held to its digest like any other.
    let first = one(&d.db_path, "SELECT MIN(id) FROM spans");
    shell(
        &d.db_path,
        &format!("UPDATE spans SET input_tokens = 999 WHERE id = {first}"),
    );
    let p = assert_caught(&d, "edited");
    assert_eq!(p["row_id"], first);
    shell(
        &d.db_path,
        &format!("UPDATE spans SET input_tokens = 100 WHERE id = {first}"),
    );
    assert_intact(&d, "the edit undone");
    // Off for a while, then on again: the chain exists, so nothing is adopted again and
    // the rows written while it was off are reported.
    let d2 = Daemon::start_in(dir.path(), &[("OCT_AUDIT", "off")]);
    seed(&d2, "gap");
    d2.wait_count("SELECT count(*) FROM spans", 120, Duration::from_secs(10));
    let mut d2 = d2;
    assert!(d2.stop().success());
    let mut d3 = Daemon::start_in(dir.path(), &[]);
    assert!(d3.stop().success());
    assert_eq!(
        one(
            &d3.db_path,
            "SELECT count(*) FROM audit_chain WHERE detail = 'adopted'"
        ),
        adopted
    );
    assert_caught(&d3, "added");
}

fn middle_span(db: &Path) -> i64 {
    one(
        db,
        "SELECT id FROM spans ORDER BY id LIMIT 1 OFFSET (SELECT count(*) / 2 FROM spans)",
    )
}

#[test]
fn an_untouched_record_verifies_and_the_key_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = seeded(dir.path(), false);
    let key = d.db_path.with_extension("db.audit-key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let out = d.cli(&["audit", "key"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.starts_with("ed25519 ") && text.trim().len() == 8 + 64,
        "{text}"
    );
    // The head file holds the signed head the shutdown wrote.
    let heads = std::fs::read_to_string(d.db_path.with_extension("db.audit-heads")).unwrap();
    let last: Value = serde_json::from_str(heads.lines().last().unwrap()).unwrap();
    let (_, v) = verify(&d);
    assert_eq!(last["seq"], v["last_seq"], "{heads}");
    let rows = one(
        &d.db_path,
        "SELECT (SELECT count(*) FROM spans) + (SELECT count(*) FROM events) + (SELECT count(*) FROM activity)",
    );
    assert_eq!(v["rows_checked"], rows, "{v}");
    let kinds = one(
        &d.db_path,
        "SELECT count(*) FROM activity WHERE kind IN ('start', 'stop')",
    );
    assert_eq!(kinds, 2, "start and stop recorded");
    // Restarted, it goes on from the same chain.
    d = Daemon::start_in(dir.path(), ENV);
    seed(&d, "second");
    d.wait_count("SELECT count(*) FROM spans", 80, Duration::from_secs(10));
    assert_intact(&d, "running after a restart");
    assert!(d.stop().success());
    assert_intact(&d, "stopped after a restart");
    // No key: it cannot check (exit 2).
    std::fs::rename(&key, d.dir.join("elsewhere")).unwrap();
    let out = d.cli(&["verify"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn both(f: impl Fn(&Daemon)) {
    for running in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let d = seeded(dir.path(), running);
        f(&d);
    }
}

#[test]
fn a_changed_token_count_is_caught() {
    both(|d| {
        let id = middle_span(&d.db_path);
        shell(
            &d.db_path,
            &format!("UPDATE spans SET input_tokens = input_tokens + 1 WHERE id = {id}"),
        );
        let p = assert_caught(d, "edited");
        assert_eq!(p["table"], "spans");
        assert_eq!(p["row_id"], id);
    });
}

/// The derived tables are recomputed from the rows: an edited trace summary, usage
/// hour, usage day or latency bucket is caught, named by table and key; put back, the
/// record verifies again.
#[test]
fn an_edited_rollup_or_summary_is_caught() {
    both(|d| {
        let edits = [
            (
                "UPDATE usage_days SET output_tokens = output_tokens + 1 WHERE agent_id = 'a1'",
                "UPDATE usage_days SET output_tokens = output_tokens - 1 WHERE agent_id = 'a1'",
                "usage_days",
                "output_tokens",
            ),
            (
                "UPDATE usage_hourly SET input_tokens = input_tokens + 5 WHERE agent_id = 'a1'",
                "UPDATE usage_hourly SET input_tokens = input_tokens - 5 WHERE agent_id = 'a1'",
                "usage_hourly",
                "input_tokens",
            ),
            (
                "UPDATE usage_hourly_nosession SET cost_usd = cost_usd + 1 WHERE agent_id = 'a1'",
                "UPDATE usage_hourly_nosession SET cost_usd = cost_usd - 1 WHERE agent_id = 'a1'",
                "usage_hourly_nosession",
                "cost_usd",
            ),
            (
                "INSERT INTO usage_latency_hourly SELECT hour_ns, agent_id, session_id, user_id, \
                 provider, model, 999, 1 FROM usage_hourly WHERE agent_id = 'a1' LIMIT 1",
                "DELETE FROM usage_latency_hourly WHERE bucket = 999",
                "usage_latency_hourly",
                "bucket 999",
            ),
            (
                "UPDATE traces SET input_tokens = input_tokens + 3 \
                 WHERE trace_id = (SELECT trace_id FROM spans ORDER BY id LIMIT 1)",
                "UPDATE traces SET input_tokens = input_tokens - 3 \
                 WHERE trace_id = (SELECT trace_id FROM spans ORDER BY id LIMIT 1)",
                "traces",
                "input_tokens",
            ),
        ];
        for (edit, undo, table, what) in edits {
            shell(&d.db_path, edit);
            let p = assert_caught(d, "derived");
            assert_eq!(p["table"], table, "{p:#}");
            let msg = p["message"].as_str().unwrap();
            assert!(msg.contains(what) && msg.contains("edited"), "{msg}");
            if table != "traces" {
                assert!(msg.contains("agent 'a1'"), "the key is named: {msg}");
            }
            shell(&d.db_path, undo);
            assert_intact(d, &format!("{table} put back"));
        }
        // A usage row deleted is missing.
        shell(&d.db_path, "DELETE FROM usage_days WHERE agent_id = 'a1'");
        let p = assert_caught(d, "derived");
        assert_eq!(p["table"], "usage_days");
        assert!(p["message"].as_str().unwrap().contains("missing"), "{p:#}");
    });
}

#[test]
fn a_deleted_middle_span_is_caught() {
    both(|d| {
        let id = middle_span(&d.db_path);
        shell(&d.db_path, &format!("DELETE FROM spans WHERE id = {id}"));
        let p = assert_caught(d, "missing");
        assert_eq!(p["row_id"], id);
    });
}

#[test]
fn a_cut_tail_is_caught() {
    both(|d| {
        // The newest five spans and the chain from their entries on, as if never written.
        let max_id = one(&d.db_path, "SELECT max(id) FROM spans");
        let from = latest_changes(&d.db())
            .unwrap()
            .iter()
            .filter(|((t, id), _)| *t == 0 && *id > max_id - 5)
            .map(|(_, (seq, _))| *seq)
            .min()
            .unwrap();
        shell(
            &d.db_path,
            &format!(
                "DELETE FROM audit_chain WHERE seq >= {from};
                 DELETE FROM spans WHERE id > {max_id} - 5;"
            ),
        );
        let p = assert_caught(d, "truncated");
        assert!(
            p["message"]
                .as_str()
                .unwrap()
                .contains("newest entries were cut"),
            "{p}"
        );
    });
}

#[test]
fn swapped_entries_are_caught() {
    both(|d| {
        let k = one(&d.db_path, "SELECT max(seq) / 2 FROM audit_chain");
        shell(
            &d.db_path,
            &format!(
                "UPDATE audit_chain SET seq = -1 WHERE seq = {k};
                 UPDATE audit_chain SET seq = {k} WHERE seq = {k} + 1;
                 UPDATE audit_chain SET seq = {k} + 1 WHERE seq = -1;"
            ),
        );
        let p = assert_caught(d, "reordered");
        assert_eq!(p["seq"], k, "{p}");
    });
}

/// What someone who knows the format can do: change a row, then recompute its entry and
/// every later one so every link holds. Only the signed heads can tell.
#[test]
fn a_rewritten_chain_is_caught_by_the_signature() {
    both(|d| {
        let id = middle_span(&d.db_path);
        shell(
            &d.db_path,
            &format!("UPDATE spans SET output_tokens = 1 WHERE id = {id}"),
        );
        let conn = d.db();
        let cols = CHAINED[0].1;
        let ncols = cols.split(',').count();
        let digest = conn
            .query_row(
                &format!("SELECT {cols} FROM spans WHERE id = {id}"),
                [],
                |r| row_digest(r, ncols),
            )
            .unwrap();
        let from = latest_changes(&conn).unwrap()[&(0, id)].0;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM audit_chain WHERE seq >= ?1 - 1 ORDER BY seq"
            ))
            .unwrap();
        let entries: Vec<Entry> = stmt
            .query_map([from], Entry::from_row_pub)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut prev = entries[0].hash.clone();
        let mut sql = String::from("BEGIN;");
        for mut e in entries.into_iter().skip(1) {
            if e.seq == from {
                let mut packed = Changes::default();
                for c in Change::unpack(&e.digest) {
                    if c.table == 0 && c.row_id == id {
                        packed.push(&Change::new(c.table, c.update, c.row_id, digest));
                    } else {
                        packed.push(&c);
                    }
                }
                e.digest = packed.bytes().to_vec();
            }
            e.prev_hash = prev;
            e.hash = e.compute_hash().to_vec();
            sql.push_str(&format!(
                "UPDATE audit_chain SET digest = X'{}', prev_hash = X'{}', hash = X'{}' WHERE seq = {};",
                hex_bytes::encode(&e.digest),
                hex_bytes::encode(&e.prev_hash),
                hex_bytes::encode(&e.hash),
                e.seq
            ));
            prev = e.hash;
        }
        sql.push_str("COMMIT;");
        drop(stmt);
        drop(conn);
        shell(&d.db_path, &sql);
        let p = assert_caught(d, "rewritten");
        assert!(
            p["message"].as_str().unwrap().contains("signed head"),
            "{p}"
        );
        // Rewriting the stored head's hash too breaks its signature.
        shell(
            &d.db_path,
            &format!(
                "UPDATE audit_heads SET hash = X'{}' WHERE seq = (SELECT max(seq) FROM audit_heads)",
                hex_bytes::encode(&prev)
            ),
        );
        let (code, v) = verify(d);
        assert_eq!(code, 1);
        assert!(
            v["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["kind"] == "bad_signature"),
            "{v:#}"
        );
    });
}

#[test]
fn an_older_head_file_is_caught() {
    for running in [false, true] {
        let mut d = Daemon::start(ENV);
        seed(&d, "first");
        d.wait_count("SELECT count(*) FROM spans", 40, Duration::from_secs(10));
        wait_signed(&d);
        let file = d.db_path.with_extension("db.audit-heads");
        let old = std::fs::read(&file).unwrap();
        seed(&d, "second");
        d.wait_count("SELECT count(*) FROM spans", 80, Duration::from_secs(10));
        wait_signed(&d);
        if !running {
            assert!(d.stop().success());
        }
        assert_intact(&d, "before the head file is replaced");
        std::fs::write(&file, old).unwrap();
        assert_caught(&d, "stale_head_file");
    }
}

#[test]
fn retention_prunes_and_what_remains_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let day = 86_400_000i64;
    let now = now_ms();
    let mut d = Daemon::start_in(
        dir.path(),
        &[
            ("OCT_RETENTION_DAYS", "30"),
            ("OCT_AUDIT", "on"),
            ("OCT_LOG_PATH", "off"),
        ],
    );
    let c = client();
    let old: Vec<Value> = (0..30)
        .map(
            |i| json!({"provider":"p","model":"m","prompt_tokens": i, "timestamp": now - 10 * day}),
        )
        .collect();
    let errors: Vec<Value> = (0..10)
        .map(|i| json!({"error_type":"Old","message": format!("m{i}"),"timestamp": now - 10 * day}))
        .collect();
    let new: Vec<Value> = (0..20)
        .map(|i| json!({"provider":"p","model":"m","prompt_tokens": i, "timestamp": now - 1000}))
        .collect();
    for (path, body) in [
        ("/v1/traces", old),
        ("/v1/errors", errors),
        ("/v1/traces", new),
    ] {
        assert!(
            c.post(d.url(path))
                .json(&Value::Array(body))
                .send()
                .unwrap()
                .status()
                .is_success()
        );
        // Each in its own transaction (so in its own chain link).
        std::thread::sleep(Duration::from_millis(300));
    }
    d.wait_count("SELECT count(*) FROM spans", 50, Duration::from_secs(10));
    assert!(d.stop().success());
    assert_intact(&d, "before retention");
    let mut d = Daemon::start_in(
        dir.path(),
        &[
            ("OCT_RETENTION_DAYS", "3"),
            ("OCT_CLEANUP_INTERVAL", "1s"),
            ("OCT_AUDIT_CHECKPOINT_INTERVAL", "1s"),
            ("OCT_AUDIT", "on"),
            ("OCT_LOG_PATH", "off"),
        ],
    );
    let until = Instant::now() + Duration::from_secs(20);
    while count(&d.db_path, "SELECT count(*) FROM spans") > 20
        || count(&d.db_path, "SELECT count(*) FROM events") > 0
    {
        assert!(Instant::now() < until, "retention did not run");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_signed(&d);
    assert!(
        count(
            &d.db_path,
            "SELECT count(*) FROM audit_chain WHERE op = 'prune'"
        ) >= 2
    );
    let (code, v) = verify(&d);
    assert_eq!(code, 0, "running, after pruning: {v:#}");
    // Trimmed: entries only about deleted rows are gone (the start rows' stay).
    assert!(
        v["entries"].as_i64().unwrap() < v["last_seq"].as_i64().unwrap(),
        "the chain was trimmed: {v}"
    );
    assert!(
        count(
            &d.db_path,
            "SELECT count(*) FROM audit_chain WHERE op = 'trim'"
        ) >= 1
    );
    assert!(d.stop().success());
    assert_intact(&d, "stopped, after pruning");
    // A row deleted by hand among the kept ones is still caught.
    let id = one(&d.db_path, "SELECT min(id) FROM spans");
    shell(&d.db_path, &format!("DELETE FROM spans WHERE id = {id}"));
    assert_caught(&d, "missing");
}

#[test]
fn a_kill_9_under_load_is_not_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), ENV);
    let url = d.url("/v1/traces");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..2)
        .map(|t| {
            let (url, stop) = (url.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 2000 {
                    let body: Vec<Value> = (0..20)
                        .map(|k| {
                            json!({"provider":"p","model":"m","prompt_tokens": k,
                                        "input_text": format!("load {t}/{i}/{k}")})
                        })
                        .collect();
                    let _ = c.post(&url).json(&Value::Array(body)).send();
                    i += 1;
                }
            })
        })
        .collect();
    // Let it write (and sign) for a while, then kill it mid-write.
    d.wait_count("SELECT count(*) FROM spans", 2000, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    d.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
    assert!(count(&d.db_path, "SELECT count(*) FROM audit_heads") > 0);
    assert_intact(&d, "after kill -9 under load");
    // It starts again on the same chain.
    let mut d = Daemon::start_in(dir.path(), ENV);
    seed(&d, "after");
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.stop().success());
    assert_intact(&d, "restarted after kill -9");
}

#[test]
fn the_activity_log_records_start_refusals_and_stop_on_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-token-value";
    let mut d = Daemon::start_in(
        dir.path(),
        &[
            ("OCT_AUTH_TOKEN", secret),
            ("OCT_AUDIT", "on"),
            ("OCT_LOG_PATH", "off"),
        ],
    );
    let c = client();
    for _ in 0..3 {
        let r = c.get(d.url("/v1/traces")).send().unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = c
        .get(d.url("/v1/traces"))
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let get = |path: &str| -> Value {
        c.get(d.url(path))
            .bearer_auth(secret)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let until = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = get("/v1/activity");
        if v["items"].as_array().is_some_and(|a| a.len() >= 2) {
            break v;
        }
        assert!(Instant::now() < until, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let items = v["items"].as_array().unwrap();
    // Newest first: one refusal row (rate-limited per address), then the start.
    assert_eq!(items.len(), 2, "{v:#}");
    assert_eq!(items[0]["kind"], "auth_refused");
    assert_eq!(items[0]["path"], "/v1/traces");
    assert!(
        items[0]["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(items[1]["kind"], "start");
    assert_eq!(items[1]["detail"]["auth_token"], "set");
    assert!(
        !v.to_string().contains(secret),
        "a secret in the activity log: {v}"
    );
    let only = get("/v1/activity?kind=start");
    assert_eq!(only["items"].as_array().unwrap().len(), 1, "{only}");
    let bad = c
        .get(d.url("/v1/activity?from=yesterday"))
        .bearer_auth(secret)
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().unwrap()["field"], "from");
    assert!(d.stop().success());
    let out = d.cli(&["activity", "--json"]);
    assert!(out.status.success());
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["kind"], "stop", "{rows:#}");
    let text =
        String::from_utf8_lossy(&d.cli(&["activity", "--kind", "auth_refused"]).stdout).to_string();
    assert!(
        text.contains("auth_refused") && text.contains("/v1/traces"),
        "{text}"
    );
    // The activity rows are on the chain: an edit is caught.
    assert_intact(&d, "with activity rows");
    shell(
        &d.db_path,
        "UPDATE activity SET remote_addr = '10.0.0.1:1' WHERE kind = 'auth_refused'",
    );
    let p = assert_caught(&d, "edited");
    assert_eq!(p["table"], "activity");
}

#[test]
fn the_eu_ai_act_package_verifies_offline_and_an_edit_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), ENV);
    seed(&d, "first");
    let extra = json!([{"provider": "anthropic", "model": "claude-sonnet-4", "prompt_tokens": 5,
        "input_text": "mail jane.doe@example.com, key sk-1234567890abcdefghijklmnop", "agent_id": "a2"},
        {"kind": "tool_call", "name": "web_search", "agent_id": "a2"}]);
    assert!(
        client()
            .post(d.url("/v1/traces"))
            .json(&extra)
            .send()
            .unwrap()
            .status()
            .is_success()
    );
    assert!(
        client()
            .post(d.url("/v1/events"))
            .json(&json!({"name": "human_approval", "agent_id": "a2"}))
            .send()
            .unwrap()
            .status()
            .is_success()
    );
    d.wait_count("SELECT count(*) FROM spans", 42, Duration::from_secs(10));
    d.wait_count("SELECT count(*) FROM events", 11, Duration::from_secs(10));
    assert!(d.stop().success());
    let file = dir.path().join("package.json");
    let out = d.cli(&[
        "export",
        "--format",
        "eu-ai-act",
        "--since",
        "1h",
        "--output",
        file.to_str().unwrap(),
        "--ai-act-provider",
        "Example GmbH",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pkg: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let s = &pkg["summary"];
    assert_eq!(s["totals"]["llm_calls"], 41, "{pkg:#}");
    assert_eq!(s["totals"]["tool_calls"], 1);
    assert_eq!(s["errors"], 10);
    assert_eq!(s["systems"], json!(["a1", "a2"]));
    assert_eq!(s["models"][0]["model"], "gpt-4o");
    assert_eq!(s["models"][0]["calls"], 40);
    assert_eq!(s["tools"][0]["tool"], "web_search");
    assert_eq!(s["human_oversight"][0]["name"], "human_approval");
    let cats = s["data_categories"].as_array().unwrap();
    let spans_of = |c: &str| cats.iter().find(|x| x["category"] == c).unwrap()["spans"].clone();
    assert_eq!(spans_of("credentials"), 1, "{cats:?}");
    assert_eq!(spans_of("personal_data.email"), 1, "{cats:?}");
    assert_eq!(pkg["system"]["provider"], "Example GmbH");
    assert_eq!(pkg["retention"]["meets_six_months"], false);
    assert!(
        !pkg["chain"]["signed_checkpoints"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let check = |path: &Path| {
        let out = d.cli(&["verify", "--json", "--from-export", path.to_str().unwrap()]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code().unwrap_or(-1), v)
    };
    let (code, v) = check(&file);
    assert_eq!(code, 0, "{v:#}");
    // One number of the summary changed.
    let mut edited = pkg.clone();
    edited["summary"]["totals"]["llm_calls"] = json!(40);
    let f2 = dir.path().join("edited.json");
    std::fs::write(&f2, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let (code, v) = check(&f2);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["problems"][0]["kind"], "edited", "{v:#}");
    // ... and its digest recomputed: the signature no longer matches.
    edited["digest"] = json!(openclaw_trace::store::ai_act::package_digest(&edited));
    std::fs::write(&f2, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let (code, v) = check(&f2);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["problems"][0]["kind"], "bad_signature", "{v:#}");
}

#[test]
fn audit_readiness_names_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let _d = seeded(dir.path(), false);
    let d = &_d;
    let out = d.cli(&["audit-readiness", "--audit", "on", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failing: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["retention at least 183 days"], "{v:#}");
    let out = d.cli(&[
        "audit-readiness",
        "--audit",
        "on",
        "--retention-days",
        "183",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("ok  chain intact"), "{text}");
    // A key others can read is named, with the fix.
    let key = d.db_path.with_extension("db.audit-key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = d.cli(&[
        "audit-readiness",
        "--audit",
        "on",
        "--retention-days",
        "183",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FIX key present and private") && text.contains("chmod 600"),
        "{text}"
    );
}

/// Exports made, over the API and with the CLI beside the running daemon, go to the
/// activity log on the chain (the CLI's row is chained from its own connection).
#[test]
fn exports_are_recorded_in_the_activity_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), ENV);
    seed(&d, "first");
    d.wait_count("SELECT count(*) FROM spans", 40, Duration::from_secs(10));
    let trace = hex(
        &d.db_path,
        "SELECT lower(hex(trace_id)) FROM spans ORDER BY id LIMIT 1",
    );
    let r = client()
        .get(d.url(&format!("/v1/traces/{trace}/export")))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let file = dir.path().join("out.jsonl");
    let out = d.cli(&[
        "export",
        "--format",
        "json",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pkg = dir.path().join("pkg.json");
    let out = d.cli(&[
        "export",
        "--format",
        "eu-ai-act",
        "--output",
        pkg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // More ingest after the CLI appended to the chain: the daemon links to its entries.
    seed(&d, "second");
    d.wait_count("SELECT count(*) FROM spans", 80, Duration::from_secs(10));
    let until = Instant::now() + Duration::from_secs(10);
    let items = loop {
        let v = d.get_json("/v1/activity?kind=export");
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= 3 {
            break items;
        }
        assert!(Instant::now() < until, "{v:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(items.len(), 3, "{items:#?}");
    // Newest first.
    assert_eq!(items[0]["detail"]["format"], "eu-ai-act");
    assert_eq!(items[1]["detail"]["format"], "json");
    assert_eq!(items[1]["detail"]["spans"], 40);
    assert_eq!(items[2]["detail"]["trace_id"], trace);
    assert!(
        items[2]["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(items[2]["path"], format!("/v1/traces/{}/export", trace));
    wait_signed(&d);
    assert_intact(&d, "running, after exports");
    assert!(d.stop().success());
    assert_intact(&d, "stopped, after exports");
}

fn hex(db: &Path, sql: &str) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}
