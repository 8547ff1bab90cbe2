//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the inputs that once
//! crashed a target (`fuzz/regressions/<target>/`) through the same entry points the
//! `cargo fuzz` targets call (`openclaw_trace::fuzzing`), on the stable toolchain: every
//! input must be handled without a panic, within a time bound.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openclaw_trace::fuzzing;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str, min_per_target: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    for target in fuzzing::TARGETS {
        let files = inputs(&root.join(target));
        assert!(
            files.len() >= min_per_target,
            "{kind}/{target}: {} inputs, want at least {min_per_target}",
            files.len()
        );
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let start = Instant::now();
            assert!(fuzzing::run(target, &data));
            // Generous for a debug build on a busy machine; a quadratic path takes minutes.
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{} took {:?}",
                f.display(),
                start.elapsed()
            );
        }
    }
}

#[test]
fn every_target_has_a_seed_corpus_and_handles_it() {
    replay("corpus", 1);
}

#[test]
fn inputs_that_once_crashed_a_target_are_handled() {
    replay("regressions", 0);
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    for target in fuzzing::TARGETS {
        assert!(
            dir.join(format!("{target}.rs")).is_file(),
            "fuzz/fuzz_targets/{target}.rs is missing"
        );
    }
    assert!(!fuzzing::run("no-such-target", b""));
}

fn regression(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions")
            .join(target)
            .join(name),
    )
    .unwrap()
}

/// Found by `cargo fuzz` (openclaw target): a plugin event whose `ts`/`durationMs` in
/// milliseconds overflowed i64 nanoseconds (a panic in debug builds, a wrapped time in
/// release ones). Times now saturate.
#[test]
fn openclaw_event_times_beyond_i64_nanoseconds_do_not_overflow() {
    fuzzing::openclaw(&regression("openclaw", "ms-to-ns-overflow"));
    let body = br#"[{"kind":"tdiag:model.call.started","ts":1e300,"event":{"durationMs":-1e300}},
        {"kind":"diag:diagnostic.phase.completed","ts":9223372036854775807,"event":{"durationMs":1e300}}]"#;
    fuzzing::openclaw(body);
}

/// Found by `cargo fuzz` (transcript target): an assistant message whose `timestamp`
/// (unix ms) overflowed i64 nanoseconds.
#[test]
fn transcript_rows_with_huge_timestamps_do_not_overflow() {
    fuzzing::transcript(&regression("transcript", "timestamp-ms-overflow"));
    let row = br#"{"type":"message","message":{"role":"assistant","usage":{"input":1},"timestamp":9223372036854775807}}"#;
    fuzzing::transcript(&[&[0u8][..], row].concat());
}
