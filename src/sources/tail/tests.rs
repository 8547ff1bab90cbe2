use super::*;
use std::io::Write;

const LOG: &str = include_str!("../../../tests/fixtures/openclaw/gateway_log.jsonl");

#[test]
fn wildcards() {
    assert!(wildcard_match("openclaw-*.log*", "openclaw-2026-11-21.log"));
    assert!(wildcard_match(
        "openclaw-*.log*",
        "openclaw-2026-11-21.log.3"
    ));
    assert!(wildcard_match(
        "openclaw-*.log*",
        "openclaw-work-2026-11-21.log"
    ));
    assert!(!wildcard_match("openclaw-*.log*", "other.log"));
    assert!(wildcard_match("a?c", "abc"));
    assert!(!wildcard_match("a?c", "ac"));
}

fn parse_all(keep_info: bool) -> Vec<Event> {
    LOG.lines()
        .enumerate()
        .filter_map(|(i, l)| parse_line(l, &["t", &i.to_string()], keep_info))
        .collect()
}

#[test]
fn the_sample_log_keeps_warnings_and_errors() {
    let kept = parse_all(false);
    let total = LOG.lines().count();
    let warn_or_error = LOG
        .lines()
        .filter(|l| {
            l.contains("\"logLevelName\": \"WARN\"") || l.contains("\"logLevelName\": \"ERROR\"")
        })
        .count();
    assert_eq!(kept.len(), warn_or_error);
    assert_eq!(parse_all(true).len(), total, "every line parses");
    // A failover decision is an error linked to its trace, with its fields.
    let fallback = kept
        .iter()
        .find(|e| e.name == "model_fallback_decision")
        .unwrap();
    assert_eq!(fallback.event_type, EventType::Error);
    assert!(fallback.trace_id.is_some());
    assert_eq!(
        fallback.category.as_deref(),
        Some("model-fallback/decision")
    );
    assert!(fallback.attributes["openclaw.reason"].is_string());
    let end = kept
        .iter()
        .find(|e| e.name == "embedded_run_agent_end")
        .unwrap();
    assert_eq!(end.event_type, EventType::Error);
    assert_eq!(
        end.trace_id.unwrap().to_hex(),
        "590290b6c4e5f2264479c9bd422f332c"
    );
    assert_eq!(
        end.attributes["openclaw.run_id"],
        "chatcmpl_fbcd23a4-a7d5-4892-affc-b5edd51ca246"
    );
    assert_eq!(end.message.as_deref(), Some("embedded run agent end"));
    let plain_warn = kept
        .iter()
        .find(|e| e.category.as_deref() == Some("agent/embedded") && e.event_type == EventType::Log)
        .unwrap();
    assert_eq!(plain_warn.severity, "warn");
    // The same line gives the same uid (a re-read dedupes).
    assert_eq!(parse_all(false)[0].uid, kept[0].uid);
}

#[test]
fn plain_lines_are_tolerated() {
    assert!(parse_line("not json at all", &["x"], false).is_none());
    let e = parse_line("Error: boom", &["x"], false).unwrap();
    assert_eq!(
        (e.event_type, e.name.as_str()),
        (EventType::Error, "gateway_error")
    );
    assert!(parse_line("{\"broken\": ", &["x"], true).is_some());
}

fn follower() -> Follower {
    Follower::new("test", HashMap::new())
}

fn read_texts(f: &mut Follower, p: &Path) -> Vec<String> {
    match f.read(p, 1000).unwrap() {
        Some(c) => {
            f.advance(&c);
            c.lines.into_iter().map(|l| l.text).collect()
        }
        None => Vec::new(),
    }
}

#[test]
fn follows_appends_partial_lines_truncation_and_renames() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    let mut file = File::create(&p).unwrap();
    write!(file, "one\ntwo\npart").unwrap();
    let mut f = follower();
    assert_eq!(read_texts(&mut f, &p), ["one", "two"]);
    assert!(read_texts(&mut f, &p).is_empty(), "a partial line waits");
    writeln!(file, "ial").unwrap();
    assert_eq!(read_texts(&mut f, &p), ["partial"]);
    // Renamed (rotation): same file, nothing repeats; new lines still come.
    let rotated = dir.path().join("a.log.1");
    std::fs::rename(&p, &rotated).unwrap();
    writeln!(file, "three").unwrap();
    assert_eq!(read_texts(&mut f, &rotated), ["three"]);
    // A new file at the old name starts from its beginning.
    std::fs::write(&p, "fresh\n").unwrap();
    assert_eq!(read_texts(&mut f, &p), ["fresh"]);
    // Truncated in place: starts over.
    std::fs::write(&rotated, "x\n").unwrap();
    assert_eq!(read_texts(&mut f, &rotated), ["x"]);
}

#[test]
fn a_rewritten_file_with_the_same_inode_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    std::fs::write(&p, "first line of some length\nsecond\n").unwrap();
    let mut f = follower();
    assert_eq!(read_texts(&mut f, &p).len(), 2);
    // Same inode, other content, longer than before.
    let mut file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    file.write_all(b"other content entirely!!!\nmore\nand more\n")
        .unwrap();
    assert_eq!(
        read_texts(&mut f, &p),
        ["other content entirely!!!", "more", "and more"]
    );
}

#[test]
fn very_long_lines_are_read_whole_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    let long = "x".repeat(MAX_LINE + 10);
    std::fs::write(&p, format!("{long}\nafter\n")).unwrap();
    let mut f = follower();
    let lines = read_texts(&mut f, &p);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].len(), MAX_LINE);
    assert_eq!(lines[1], "after");
}

#[test]
fn lists_globs_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("openclaw-2026-01-01.log");
    let new = dir.path().join("openclaw-2026-01-02.log");
    std::fs::write(&old, "a\n").unwrap();
    std::fs::write(&new, "b\n").unwrap();
    // Both times set: a file's own mtime comes from the kernel's clock, not the one a
    // test may have moved.
    let now = std::time::SystemTime::now();
    for (path, t) in [(&old, now - Duration::from_secs(3600)), (&new, now)] {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    std::fs::write(dir.path().join("other.txt"), "c\n").unwrap();
    let spec = format!("{}/openclaw-*.log*", dir.path().display());
    assert_eq!(list_files(&spec), vec![old.clone(), new]);
    assert_eq!(list_files(old.to_str().unwrap()), vec![old]);
    assert!(list_files("/nonexistent/openclaw-*.log").is_empty());
}
