//! The static binary, built by scripts/release.sh (here with the quick `static-test`
//! profile into target/static): no dynamic section, and it runs in an empty root —
//! a chroot holding only the binary, /etc/resolv.conf and a data directory, the file
//! layout of the `scratch` image of deploy/docker/Dockerfile (Docker cannot run on the
//! test machines, so this is how that image's layout is tested). Name resolution for
//! push, OTLP export (gRPC, through tonic's channel) and the DNS probes works there
//! against a DNS server this test runs on loopback, which answers a made-up name with
//! 127.0.0.1 where the receivers listen. It also runs in a root whose only C library is
//! musl (as on Alpine), beside a musl-built program resolving names there.
//!
//! chroot needs root (CI runs as root); elsewhere the tests say so and pass, unless CI is set.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const NAME: &str = "receiver.oct-test.internal";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn can_chroot() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "the static binary tests need root (chroot)"
        );
        eprintln!("skipped: chroot needs root");
    }
    root
}

/// What scripts/release.sh built: (binary, its .sha256 file, the script's output).
struct Release {
    bin: PathBuf,
    sha_file: PathBuf,
    said: String,
}

/// Runs scripts/release.sh once per test process (cargo makes it a no-op when fresh).
fn release() -> &'static Release {
    static BUILT: OnceLock<Release> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Path::new(ROOT).join("target/static/dist-test");
        let _ = std::fs::remove_dir_all(&out);
        let t = Instant::now();
        let run = Command::new("bash")
            .arg(Path::new(ROOT).join("scripts/release.sh"))
            .env("PROFILE", "static-test")
            .env("OUT", &out)
            .env("OCT_BUILD_COMMIT", "abc1234")
            .output()
            .expect("run scripts/release.sh");
        let said = String::from_utf8_lossy(&run.stdout).to_string();
        assert!(
            run.status.success(),
            "release.sh failed: {said}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        eprintln!("static build: {:.0?}", t.elapsed());
        let mut bin = None;
        let mut sha_file = None;
        for e in std::fs::read_dir(&out).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "sha256") {
                sha_file = Some(p);
            } else {
                bin = Some(p);
            }
        }
        Release {
            bin: bin.expect("a binary in OUT"),
            sha_file: sha_file.expect("a .sha256 in OUT"),
            said,
        }
    })
}

/// An empty root: the binary as /openclaw-trace, /etc/resolv.conf naming `ns`, /data.
fn empty_root(ns: Ipv4Addr) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::create_dir_all(root.path().join("data")).unwrap();
    std::fs::copy(&release().bin, root.path().join("openclaw-trace")).unwrap();
    std::fs::write(
        root.path().join("etc/resolv.conf"),
        format!("nameserver {ns}\noptions timeout:2 attempts:2\n"),
    )
    .unwrap();
    root
}

/// A DNS server on UDP port 53 of a loopback address (127.0.0.1, or another 127.x
/// address when that port is taken): `NAME` has the A record 127.0.0.1 and no AAAA;
/// any other name does not exist. Returns its address and the count of queries for `NAME`.
fn dns_server() -> (Ipv4Addr, Arc<AtomicU64>) {
    let mut candidates = vec![Ipv4Addr::LOCALHOST];
    for _ in 0..20 {
        candidates.push(Ipv4Addr::new(
            127,
            53,
            fastrand::u8(1..255),
            fastrand::u8(1..255),
        ));
    }
    let (sock, addr) = candidates
        .into_iter()
        .find_map(|a| UdpSocket::bind((a, 53)).ok().map(|s| (s, a)))
        .expect("no loopback address with UDP port 53 free");
    let asked = Arc::new(AtomicU64::new(0));
    let counter = asked.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if let Some((reply, ours)) = dns_answer(&buf[..n]) {
                if ours {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                let _ = sock.send_to(&reply, from);
            }
        }
    });
    (addr, asked)
}

/// The reply to one query, and whether it asked for `NAME`.
fn dns_answer(q: &[u8]) -> Option<(Vec<u8>, bool)> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = &q[12..i + 4];
    let ours = labels.join(".") == NAME;
    let rd = q[2] & 1;
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&q[0..2]);
    r.push(0x80 | 0x04 | rd); // response, authoritative, recursion desired as asked
    r.push(0x80 | if ours { 0 } else { 3 }); // recursion available; NXDOMAIN for others
    let answers: u16 = if ours && qtype == 1 { 1 } else { 0 };
    for v in [1u16, answers, 0, 0] {
        r.extend_from_slice(&v.to_be_bytes());
    }
    r.extend_from_slice(question);
    if answers == 1 {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 1]);
    }
    Some((r, ours))
}

/// An HTTP receiver on 127.0.0.1: answers every request 200 `{}` and keeps the
/// request lines it saw.
fn http_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            seen2.lock().unwrap().push(line.trim().to_string());
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
            );
        }
    });
    (port, seen)
}

/// The address a listener logged (`OTLP/gRPC listening`), waiting for it.
fn listener_addr(d: &Daemon, message: &str) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let found = d
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == message)
            .and_then(|v| v["addr"].as_str().map(str::to_string));
        if let Some(a) = found {
            return a;
        }
        assert!(Instant::now() < until, "no {message:?} in {:?}", d.logs());
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn wait_until(what: &str, d: &Daemon, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < until, "{what}: {:#?}", d.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_release_binary_is_static_and_named_by_its_commit() {
    if !can_chroot() {
        return;
    }
    let r = release();
    let ldd = Command::new("ldd").arg(&r.bin).output().expect("ldd");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(said.contains("not a dynamic executable"), "ldd: {said}");
    // The SHA-256 file checks with sha256sum, beside the binary.
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg(r.sha_file.file_name().unwrap())
        .current_dir(r.sha_file.parent().unwrap())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let v = Command::new(&r.bin).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&v.stdout);
    assert_eq!(
        v.trim(),
        format!("openclaw-trace {} (abc1234)", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        r.said.contains(&format!("version {}", v.trim())),
        "{}",
        r.said
    );
}

#[test]
fn the_static_binary_reports_errors_with_rust_backtrace_set() {
    // Without unwind tables a captured backtrace aborts: an error (here a port in use)
    // was a SIGABRT without a message when RUST_BACKTRACE=1 was set.
    let r = release();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&r.bin)
        .env("RUST_BACKTRACE", "1")
        .env("OCT_DB_PATH", dir.path().join("db"))
        .env("OCT_PORT", port.to_string())
        .env("OCT_OTLP_HTTP_ADDR", "off")
        .env("OCT_OTLP_GRPC_ADDR", "off")
        .env("OCT_LOG_PATH", "off")
        .env("OCT_OPENCLAW_STATE_DIR", "off")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{:?}: {said}", out.status);
    assert!(said.contains("cannot listen"), "{said}");
}

#[test]
fn the_static_binary_serves_and_resolves_names_in_an_empty_root() {
    if !can_chroot() {
        return;
    }
    let (ns, asked) = dns_server();
    let root = empty_root(ns);
    // glibc's resolver would read this and never ask DNS for a host name (its files
    // and dns lookups are built into libc since 2.34, so an empty root alone would not
    // tell them apart): a name that resolves here was resolved by hickory.
    std::fs::write(root.path().join("etc/nsswitch.conf"), "hosts: files\n").unwrap();
    let (push_port, pushed) = http_receiver();
    // The OTLP/gRPC destination: a (dynamic) daemon, reached as NAME from the chroot.
    let receiver = Daemon::start(&[]);
    let grpc = listener_addr(&receiver, "OTLP/gRPC listening");
    let grpc_port = grpc.rsplit(':').next().unwrap();
    let push_url = format!("http://{NAME}:{push_port}/ingest");
    let export_url = format!("http://{NAME}:{grpc_port}");
    let d = Daemon::start_chroot(
        root.path(),
        None,
        &["/openclaw-trace"],
        &[
            ("OCT_PUSH_ENDPOINT", &push_url),
            ("OCT_PUSH_INTERVAL", "1s"),
            ("OCT_OTLP_EXPORT_ENDPOINT", &export_url),
            ("OCT_OTLP_EXPORT_PROTOCOL", "grpc"),
            ("OCT_OTLP_EXPORT_SIGNALS", "traces"),
            ("OCT_OTLP_EXPORT_INTERVAL", "1s"),
            (
                "OCT_HOST_DISABLE",
                "cpu,memory,cgroup,disk,diskio,network,processes,self,agent,llm",
            ),
            ("OCT_METRICS_INTERVAL", "500ms"),
            (
                "OCT_DNS_PROBE_HOSTS",
                &format!("{NAME},missing.oct-test.internal"),
            ),
        ],
    );
    let health = d.get_json("/health");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["db_status"], "ok", "{health}");
    assert!(root.path().join("data/trace.db").exists());

    let trace = "5a".repeat(16);
    let span = json!({"provider": "openai", "model": "gpt-4o", "prompt_tokens": 12,
        "completion_tokens": 3, "trace_id": trace, "span_id": "5b".repeat(8), "latency_ms": 900});
    assert_eq!(
        post_json(&d.url("/v1/traces"), &json!([span])).status(),
        202
    );

    // Push: the HTTP receiver saw a POST on its path.
    wait_until("a push reaches the receiver", &d, || {
        pushed
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("POST /ingest"))
    });
    // OTLP/gRPC export through tonic's channel: the receiving daemon stored the span.
    let got = receiver.wait_count(
        &format!("SELECT count(*) FROM spans WHERE lower(hex(trace_id)) = '{trace}'"),
        1,
        Duration::from_secs(30),
    );
    assert_eq!(got, 1, "exporter: {:#?}", d.logs());
    // DNS probes: the made-up name resolves (timed), the missing one is a failure.
    wait_until("a DNS probe of the made-up name", &d, || {
        let m = d.get_json("/v1/metrics?name=dns.lookup.duration&step=1s");
        m["series"].as_array().is_some_and(|s| {
            s.iter()
                .any(|x| x["attributes"]["dns.question.name"] == NAME)
        })
    });
    let errs = d.get_json("/v1/errors?category=dns");
    let errs = errs["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].to_string().contains("missing.oct-test.internal"),
        "{errs:?}"
    );
    assert!(
        asked.load(Ordering::Relaxed) >= 3,
        "every lookup asked the server"
    );
    let health = d.get_json("/health");
    assert_eq!(health["last_push_status"], "ok", "{health}");
}

/// A root laid out as a musl distribution (Alpine's): musl's loader and libc as its only C
/// library, /etc/hosts, /etc/resolv.conf, /etc/os-release, and a program built with
/// musl-gcc that looks a name up through musl's own resolver (scripts/setup-musl.sh).
fn musl_root(ns: Ipv4Addr) -> tempfile::TempDir {
    let root = empty_root(ns);
    let p = root.path();
    for d in ["lib", "bin", "tmp"] {
        std::fs::create_dir_all(p.join(d)).unwrap();
    }
    let libc = std::fs::canonicalize("/lib/ld-musl-x86_64.so.1")
        .expect("musl is installed (scripts/setup-musl.sh)");
    std::fs::copy(&libc, p.join("lib/ld-musl-x86_64.so.1")).unwrap();
    std::fs::write(p.join("etc/hosts"), "127.0.0.1\tlocalhost\n").unwrap();
    std::fs::write(
        p.join("etc/os-release"),
        "NAME=\"musl test root\"\nID=alpine\n",
    )
    .unwrap();
    let src = p.join("tmp/lookup.c");
    std::fs::write(
        &src,
        r#"#include <netdb.h>
#include <stdio.h>
#include <arpa/inet.h>
int main(int argc, char **argv) {
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_INET;
    if (getaddrinfo(argv[1], NULL, &hints, &res) != 0) { puts("no answer"); return 1; }
    char buf[64];
    struct sockaddr_in *a = (struct sockaddr_in *)res->ai_addr;
    printf("%s\n", inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf));
    return 0;
}
"#,
    )
    .unwrap();
    let cc = Command::new("musl-gcc")
        .arg("-o")
        .arg(p.join("bin/lookup"))
        .arg(&src)
        .output()
        .expect("musl-gcc (scripts/setup-musl.sh)");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    root
}

#[test]
fn the_static_binary_runs_in_a_musl_root() {
    if !can_chroot() {
        return;
    }
    let (ns, _asked) = dns_server();
    let root = musl_root(ns);
    // The root's C library is musl alone: its own program resolves a name there...
    let lookup = Command::new("chroot")
        .arg(root.path())
        .args(["/bin/lookup", NAME])
        .env_clear()
        // For finding chroot itself; nothing in the root uses it.
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&lookup.stdout).trim(),
        "127.0.0.1",
        "musl's resolver in the root: {}",
        String::from_utf8_lossy(&lookup.stderr)
    );
    let mut files = Vec::new();
    let mut dirs = vec![root.path().to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("libc.so.6") || f.starts_with("ld-linux")),
        "no glibc in the root: {files:?}"
    );
    // ...and the static binary serves there, pushes to a name it resolves, and answers
    // its own health check.
    let (push_port, pushed) = http_receiver();
    let push_url = format!("http://{NAME}:{push_port}/ingest");
    let d = Daemon::start_chroot(
        root.path(),
        None,
        &["/openclaw-trace"],
        &[
            ("OCT_PUSH_ENDPOINT", &push_url),
            ("OCT_PUSH_INTERVAL", "1s"),
        ],
    );
    let span = json!({"provider": "openai", "model": "gpt-4o", "prompt_tokens": 5});
    assert_eq!(post_json(&d.url("/v1/traces"), &span).status(), 202);
    wait_until("a push reaches the receiver", &d, || {
        pushed
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("POST /ingest"))
    });
    let health = Command::new("chroot")
        .arg(root.path())
        .args(["/openclaw-trace", "health", "--addr", &d.addr.to_string()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}{}",
        String::from_utf8_lossy(&health.stdout),
        String::from_utf8_lossy(&health.stderr)
    );
}

/// The final stage of deploy/docker/Dockerfile, as far as running it goes.
#[derive(Debug, Default)]
struct Stage {
    from: String,
    user: String,
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    copied_to: Vec<String>,
}

fn dockerfile_final_stage() -> Stage {
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/docker/Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let json_args = |s: &str| -> Vec<String> {
        serde_json::from_str(s.trim()).unwrap_or_else(|_| panic!("not the JSON form: {s}"))
    };
    let mut st = Stage::default();
    for l in &lines[last_from..] {
        let (word, rest) = l.split_once(' ').unwrap_or((l, ""));
        match word {
            "FROM" => st.from = rest.trim().to_string(),
            "USER" => st.user = rest.trim().to_string(),
            "ENV" => {
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').unwrap();
                    st.env.push((k.to_string(), v.to_string()));
                }
            }
            "ENTRYPOINT" => st.entrypoint = json_args(rest),
            "CMD" => st.cmd = json_args(rest),
            "HEALTHCHECK" => {
                let (_, c) = rest.split_once(" CMD ").unwrap();
                st.healthcheck = json_args(c);
            }
            "COPY" => st
                .copied_to
                .push(rest.split_whitespace().last().unwrap().to_string()),
            _ => {}
        }
    }
    st
}

#[test]
fn the_dockerfile_layout_runs_as_its_user_and_its_healthcheck_passes() {
    if !can_chroot() {
        return;
    }
    let st = dockerfile_final_stage();
    assert_eq!(st.from, "scratch");
    assert_eq!(st.copied_to, ["/openclaw-trace", "/data"]);
    let (uid, gid) = st.user.split_once(':').unwrap();
    let (uid, gid): (u32, u32) = (uid.parse().unwrap(), gid.parse().unwrap());
    assert!(uid != 0 && gid != 0, "not root: {}", st.user);

    // The image's files: the binary, /data owned by the user; Docker adds resolv.conf.
    let (ns, _) = dns_server();
    let root = empty_root(ns);
    std::os::unix::fs::chown(root.path().join("data"), Some(uid), Some(gid)).unwrap();
    let mut env: Vec<(String, String)> = st.env.clone();
    // Free ports instead of the image's fixed ones (this machine runs other tests).
    for (k, v) in env.iter_mut() {
        if k == "OCT_OTLP_HTTP_ADDR" || k == "OCT_OTLP_GRPC_ADDR" {
            *v = "0.0.0.0:0".into();
        }
    }
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let argv: Vec<&str> = st
        .entrypoint
        .iter()
        .chain(&st.cmd)
        .map(String::as_str)
        .collect();
    let userspec = st.user.clone();
    let mut d = Daemon::start_chroot(root.path(), Some(&userspec), &argv, &env_ref);
    let db = root.path().join("data/openclaw-trace.db");
    assert!(db.exists(), "{:?}", d.logs());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&db).unwrap().uid(), uid);

    // HEALTHCHECK, run the way Docker runs it: in the container, as its user, its ENV.
    let health = |port: u16| {
        let mut c = Command::new("chroot");
        c.arg(format!("--userspec={userspec}"))
            .arg(root.path())
            .args(&st.healthcheck)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in &env {
            c.env(k, v);
        }
        c.env("OCT_PORT", port.to_string());
        c.status().unwrap()
    };
    assert!(health(d.addr.port()).success());
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = free.local_addr().unwrap().port();
    drop(free);
    assert_eq!(health(closed).code(), Some(1));
    assert!(d.stop().success());
}
