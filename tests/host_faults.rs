//! Host health against faults made for real: an unresolvable DNS host, a zombie,
//! an agent SIGKILLed and restarted (and a restart loop), an agent OOM-killed by
//! a cgroup memory limit, a tmpfs volume filled to its end, a burst of 429s.
//! Each must produce exactly the expected event, opened once and closed once.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Host error events: (name, category, attributes).
fn host_events(d: &Daemon) -> Vec<(String, String, Value)> {
    let db = d.db();
    let mut stmt = db
        .prepare("SELECT name, category, attributes FROM events WHERE source = 'host' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        let a: Option<String> = r.get(2)?;
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            a.and_then(|a| serde_json::from_str(&a).ok())
                .unwrap_or(Value::Null),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Waits until `pred` holds over the host events, at most `timeout`.
fn wait_events(
    d: &Daemon,
    timeout: Duration,
    pred: impl Fn(&[(String, String, Value)]) -> bool,
) -> Vec<(String, String, Value)> {
    let until = Instant::now() + timeout;
    loop {
        let ev = host_events(d);
        if pred(&ev) || Instant::now() > until {
            return ev;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `n` more samples of a metric (by counting its points).
fn wait_samples(d: &Daemon, metric: &str, n: i64) {
    let sql = format!("SELECT count(*) FROM metric_points WHERE name = '{metric}'");
    let now = count(&d.db_path, &sql).max(0);
    let got = d.wait_count(&sql, now + n, Duration::from_secs(30));
    assert!(got >= now + n, "{metric}: {got} points, wanted {}", now + n);
}

fn of<'a>(ev: &'a [(String, String, Value)], name: &str) -> Vec<&'a (String, String, Value)> {
    ev.iter().filter(|e| e.0 == name).collect()
}

const FAST: &[(&str, &str)] = &[
    // Every collector on (the harness turns them off for other tests).
    ("OCT_HOST_DISABLE", ""),
    ("OCT_METRICS_INTERVAL", "500ms"),
    ("OCT_DNS_PROBE_HOSTS", "localhost"),
];

fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = FAST.to_vec();
    v.extend_from_slice(extra);
    v
}

#[test]
fn unresolvable_dns_host_is_one_event_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(&[("OCT_DNS_PROBE_HOSTS", "localhost,nonexistent.invalid")]);
    let mut d = Daemon::start_in(dir.path(), &e);
    let ev = wait_events(&d, Duration::from_secs(20), |e| {
        !of(e, "dns_failure").is_empty()
    });
    wait_samples(&d, "dns.lookup.duration", 4);
    let ev2 = host_events(&d);
    let fails = of(&ev2, "dns_failure");
    assert_eq!(fails.len(), 1, "{ev:?}");
    assert_eq!(fails[0].1, "dns");
    assert_eq!(fails[0].2["host"], "nonexistent.invalid");
    assert_eq!(fails[0].2["state"], "active");

    // The query API sees it, and the localhost probe's timings.
    let errs: Value = client()
        .get(d.url("/v1/errors?category=dns"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(errs["errors"].as_array().unwrap().len(), 1);
    let m: Value = client()
        .get(d.url("/v1/metrics?name=dns.lookup.duration&step=1s"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(m["unit"], "s");
    let series = m["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{m}");
    assert_eq!(series[0]["attributes"]["dns.question.name"], "localhost");
    assert!(series[0]["points"][0]["avg"].as_f64().unwrap() < 1.0);
    let names: Value = client()
        .get(d.url("/v1/metrics/names"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = names["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    for want in [
        "system.cpu.utilization",
        "system.cpu.time",
        "system.memory.usage",
        "system.filesystem.usage",
        "system.network.io",
        "system.network.connections",
        "system.process.count",
        "process.memory.usage",
        "oct.queue.depth",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let bad = client().get(d.url("/v1/metrics?step=1s")).send().unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().unwrap()["field"], "name");

    // The CLI reads the same database.
    let out = d.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("host     cpu"), "{text}");
    assert!(text.contains("dns_failure"), "{text}");
    let out = d.cli(&[
        "metrics",
        "system.memory.usage",
        "--since",
        "1m",
        "--attr",
        "system.memory.state=used",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("system.memory.state=used") && (text.contains("GiB") || text.contains("MiB")),
        "{text}"
    );

    // A restarted sidecar takes the open condition over instead of opening another.
    assert!(d.stop().success());
    let d = Daemon::start_in(dir.path(), &e);
    wait_samples(&d, "dns.lookup.duration", 4);
    assert_eq!(of(&host_events(&d), "dns_failure").len(), 1);
}

#[test]
fn a_zombie_left_by_its_parent_is_one_event() {
    let d = Daemon::start(&env(&[]));
    // sh forks a short-lived child, then becomes `sleep`, which never reaps it.
    let mut parent = Reaped(
        Command::new("sh")
            .args(["-c", "sleep 0 & exec sleep 30"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ppid = parent.0.id() as i64;
    let mine = |e: &[(String, String, Value)]| -> Vec<Value> {
        of(e, "zombie_processes")
            .into_iter()
            .filter(|z| z.2["parent_pid"] == json!(ppid))
            .map(|z| z.2.clone())
            .collect()
    };
    let ev = wait_events(&d, Duration::from_secs(20), |e| !mine(e).is_empty());
    wait_samples(&d, "system.process.count", 8);
    let z = mine(&host_events(&d));
    assert_eq!(z.len(), 1, "{ev:?}");
    assert_eq!(z[0]["zombies"], 1);
    assert_eq!(z[0]["parent_name"], "sleep");
    let zpid = z[0]["zombie_pids"][0].as_i64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{zpid}/stat")).unwrap_or_default();
    assert!(stat.contains(") Z "), "{stat}");
    kill9(&mut parent);
    let ev = wait_events(&d, Duration::from_secs(20), |e| {
        mine(e).first().is_some_and(|z| z["state"] == "resolved")
    });
    assert_eq!(mine(&ev).len(), 1);
    assert_eq!(mine(&ev)[0]["state"], "resolved", "{ev:?}");
}

/// A child process killed and reaped on drop, so a failing test leaves none behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_agent(tag: &str) -> Reaped {
    Reaped(
        Command::new("sleep")
            .arg(tag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn kill9(c: &mut Reaped) {
    c.0.kill().unwrap();
    c.0.wait().unwrap();
}

#[test]
fn agent_sigkilled_and_restarted_then_a_restart_loop() {
    // A number no other process has on its command line.
    let tag = format!("{}.{}", 900_000 + std::process::id() % 99_999, 7);
    let pattern = format!("sleep {tag}");
    let d = Daemon::start(&env(&[
        ("OCT_AGENT_PROCESS", &pattern),
        ("OCT_AGENT_POLL_INTERVAL", "100ms"),
        ("OCT_AGENT_RESTART_LOOP_COUNT", "3"),
        ("OCT_AGENT_RESTART_LOOP_WINDOW", "1m"),
    ]));
    let mut agent = spawn_agent(&tag);
    d.wait_count(
        "SELECT count(*) FROM metric_points WHERE name = 'oct.agent.up' AND value = 1",
        1,
        Duration::from_secs(20),
    );
    let first_pid = agent.0.id();
    kill9(&mut agent);
    // Down long enough to be seen down.
    std::thread::sleep(Duration::from_millis(1500));
    agent = spawn_agent(&tag);
    let ev = wait_events(&d, Duration::from_secs(20), |e| {
        of(e, "agent_exited")
            .iter()
            .any(|a| a.2["state"] == "resolved")
    });
    let exits = of(&ev, "agent_exited");
    assert_eq!(exits.len(), 1, "{ev:?}");
    let a = &exits[0].2;
    assert_eq!(exits[0].1, "agent");
    assert_eq!(a["pid"], json!(first_pid));
    assert_eq!(a["new_pid"], json!(agent.0.id()));
    assert_eq!(a["restarted"], true);
    let down = a["down_ms"].as_i64().unwrap();
    assert!((1300..5000).contains(&down), "down_ms {down}");
    assert!(of(&ev, "agent_restart_loop").is_empty());

    // Two more restarts within the window make a loop: one event for it.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(400));
        kill9(&mut agent);
        std::thread::sleep(Duration::from_millis(400));
        agent = spawn_agent(&tag);
    }
    let ev = wait_events(&d, Duration::from_secs(20), |e| {
        !of(e, "agent_restart_loop").is_empty()
            && of(e, "agent_exited")
                .iter()
                .all(|a| a.2["state"] == "resolved")
            && of(e, "agent_exited").len() == 3
    });
    wait_samples(&d, "oct.agent.up", 3);
    let ev2 = host_events(&d);
    assert_eq!(of(&ev2, "agent_exited").len(), 3, "{ev:?}");
    let loops = of(&ev2, "agent_restart_loop");
    assert_eq!(loops.len(), 1, "{ev2:?}");
    assert_eq!(loops[0].1, "restart_loop");
    assert_eq!(loops[0].2["restarts_in_window"], 3);
    assert!(of(&ev2, "agent_oom_killed").is_empty());
    let restarts = d.wait_count(
        "SELECT CAST(max(value) AS INTEGER) FROM metric_points WHERE name = 'oct.agent.restarts'",
        3,
        Duration::from_secs(10),
    );
    assert_eq!(restarts, 3);
    kill9(&mut agent);
}

/// A memory cgroup with a limit, removed on drop; `None` where this machine
/// does not let us make one.
struct MemCgroup {
    dir: PathBuf,
    procs: PathBuf,
}

impl MemCgroup {
    fn create(limit: u64) -> Option<MemCgroup> {
        let name = format!("oct-test-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup");
        let v2_ok = std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.contains("memory"));
        let (dir, limit_file) = if v2_ok {
            (v2.join(&name), "memory.max")
        } else {
            (
                Path::new("/sys/fs/cgroup/memory").join(&name),
                "memory.limit_in_bytes",
            )
        };
        std::fs::create_dir(&dir).ok()?;
        let cg = MemCgroup {
            procs: dir.join("cgroup.procs"),
            dir,
        };
        std::fs::write(cg.dir.join(limit_file), limit.to_string()).ok()?;
        if !v2_ok {
            // Without swap accounting limited too, the hog would swap instead of dying.
            let _ = std::fs::write(
                cg.dir.join("memory.memsw.limit_in_bytes"),
                limit.to_string(),
            );
        } else {
            let _ = std::fs::write(cg.dir.join("memory.swap.max"), "0");
        }
        Some(cg)
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn agent_oom_killed_by_a_cgroup_memory_limit() {
    let Some(cg) = MemCgroup::create(32 << 20) else {
        eprintln!("SKIPPED: this machine does not allow creating a memory cgroup with a limit");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("agent.pid");
    let d = Daemon::start(&env(&[
        ("OCT_AGENT_PID_FILE", pid_file.to_str().unwrap()),
        ("OCT_AGENT_POLL_INTERVAL", "100ms"),
    ]));
    // The agent joins the cgroup, lives a moment, then grows without bound
    // (`tail` buffering a newline-free stream) until the kernel kills it.
    let script = format!(
        "echo $$ > {procs}; echo $$ > {pidf}; sleep 2; exec tail /dev/zero",
        procs = cg.procs.display(),
        pidf = pid_file.display()
    );
    let mut agent = Reaped(
        Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let status = agent.0.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the hog should die of SIGKILL: {status:?}"
    );
    let ev = wait_events(&d, Duration::from_secs(20), |e| {
        !of(e, "agent_oom_killed").is_empty()
    });
    wait_samples(&d, "oct.agent.up", 3);
    let ev2 = host_events(&d);
    let oom = of(&ev2, "agent_oom_killed");
    assert_eq!(oom.len(), 1, "{ev:?}");
    assert_eq!(oom[0].1, "oom");
    assert_eq!(oom[0].2["pid"], json!(agent.0.id()));
    assert!(of(&ev2, "agent_exited").is_empty(), "{ev2:?}");
    assert!(
        of(&ev2, "oom_kill").is_empty(),
        "reported once, as the agent's: {ev2:?}"
    );
    drop(cg);
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_volume_filled_to_its_end_is_disk_high_then_disk_full() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let Some(_mount) = Tmpfs::mount(&vol, "4m") else {
        eprintln!("SKIPPED: mounting a tmpfs is not allowed here");
        return;
    };
    let mp = vol.canonicalize().unwrap().display().to_string();
    let d = Daemon::start(&env(&[
        ("OCT_WATCH_PATHS", vol.to_str().unwrap()),
        ("OCT_DISK_ALERT_THRESHOLD", "50"),
    ]));
    let disk_events = |d: &Daemon| -> Vec<(String, String, Value)> {
        host_events(d)
            .into_iter()
            .filter(|e| e.1 == "disk")
            .collect()
    };
    wait_samples(&d, "system.filesystem.limit", 2);
    assert!(disk_events(&d).is_empty());
    let fill = vol.join("fill");
    let mut f = std::fs::File::create(&fill).unwrap();
    let chunk = vec![7u8; 64 << 10];
    let mut wrote = 0usize;
    let err = loop {
        match f.write_all(&chunk) {
            Ok(()) => wrote += chunk.len(),
            Err(e) => break e,
        }
        assert!(wrote < 8 << 20, "a 4 MiB volume took 8 MiB");
    };
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
    let _ = f.flush();
    let ev = wait_events(&d, Duration::from_secs(20), |e| {
        !of(e, "disk_full").is_empty()
    });
    wait_samples(&d, "system.filesystem.limit", 4);
    let ev2 = disk_events(&d);
    let high = of(&ev2, "disk_high");
    let full = of(&ev2, "disk_full");
    assert_eq!((high.len(), full.len()), (1, 1), "{ev:?}");
    assert_eq!(full[0].1, "disk");
    assert_eq!(full[0].2["mountpoint"], json!(mp));
    assert_eq!(full[0].2["free_bytes"], 0);
    assert_eq!(ev2.len(), 2, "nothing else: {ev2:?}");
    // The usage series shows it too.
    let m: Value = client()
        .get(d.url(&format!("/v1/metrics?name=system.filesystem.utilization&step=1s&attr.system.filesystem.mountpoint={mp}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let last = m["series"][0]["points"].as_array().unwrap().last().unwrap()["last"]
        .as_f64()
        .unwrap();
    assert!(last > 0.99, "{m}");

    drop(f);
    std::fs::remove_file(&fill).unwrap();
    wait_events(&d, Duration::from_secs(20), |e| {
        e.iter()
            .filter(|x| x.1 == "disk")
            .all(|x| x.2["state"] == "resolved")
    });
    let ev = disk_events(&d);
    assert_eq!(ev.len(), 2);
    for e in &ev {
        assert_eq!(e.2["state"], "resolved", "{ev:?}");
        assert!(e.2["duration_ms"].as_i64().unwrap() >= 0);
    }
}

#[test]
fn a_burst_of_rate_limited_llm_calls_is_one_event() {
    let d = Daemon::start(&env(&[
        ("OCT_LLM_BURST_COUNT", "3"),
        ("OCT_LLM_BURST_WINDOW", "1m"),
    ]));
    let span = |status: &str| json!({"provider": "openai", "model": "gpt-4o", "status": status});
    // Two failures and successes: below the burst count.
    let r = post_json(
        &d.url("/v1/traces"),
        &json!([
            span("rate_limited"),
            span("ok"),
            span("429 Too Many Requests"),
            span("ok")
        ]),
    );
    assert_eq!(r.status(), 202);
    wait_samples(&d, "oct.queue.depth", 3);
    assert!(of(&host_events(&d), "llm_rate_limited").is_empty());
    let r = post_json(
        &d.url("/v1/traces"),
        &json!([span("rate_limited"), span("rate_limited")]),
    );
    assert_eq!(r.status(), 202);
    let ev = wait_events(&d, Duration::from_secs(20), |e| {
        !of(e, "llm_rate_limited").is_empty()
    });
    let r = post_json(&d.url("/v1/traces"), &json!([span("rate_limited")]));
    assert_eq!(r.status(), 202);
    wait_samples(&d, "oct.queue.depth", 3);
    let ev2 = host_events(&d);
    let bursts = of(&ev2, "llm_rate_limited");
    assert_eq!(bursts.len(), 1, "{ev:?}");
    assert_eq!(bursts[0].1, "llm");
    assert!(bursts[0].2["calls"].as_i64().unwrap() >= 4);
    assert!(of(&ev2, "llm_timeouts").is_empty());
}

/// Starts the daemon from a thread whose capability bounding set lacks the
/// permission overrides (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so that as root
/// too it gets EACCES on a path whose mode denies it. The bounding set is per
/// thread and inherited by the child; an exec'd root process keeps only what it
/// allows. Not root: nothing to drop, the mode alone denies.
fn start_without_permission_overrides(env: Vec<(&'static str, String)>) -> Daemon {
    std::thread::spawn(move || {
        if unsafe { libc::geteuid() } == 0 {
            for cap in [1, 2] {
                // SAFETY: prctl with integer arguments only; affects this thread.
                let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
                assert_eq!(
                    rc,
                    0,
                    "PR_CAPBSET_DROP {cap}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Daemon::start(&env)
    })
    .join()
    .unwrap()
}

#[test]
fn a_watched_path_made_unwritable_is_one_permission_denied_event() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).unwrap();
    let mut env: Vec<(&str, String)> = FAST.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.push(("OCT_WATCH_PATHS", watched.display().to_string()));
    let d = start_without_permission_overrides(env);
    wait_samples(&d, "system.filesystem.limit", 2);
    assert!(of(&host_events(&d), "permission_denied").is_empty());

    std::fs::set_permissions(&watched, std::fs::Permissions::from_mode(0o000)).unwrap();
    let ev = wait_events(&d, Duration::from_secs(20), |e| {
        !of(e, "permission_denied").is_empty()
    });
    let denied = of(&ev, "permission_denied");
    assert_eq!(denied.len(), 1, "{ev:?}");
    assert_eq!(denied[0].1, "permission");
    assert_eq!(denied[0].2["state"], "active");
    // Several more samples while it lasts: still one event.
    wait_samples(&d, "system.filesystem.limit", 4);
    assert_eq!(of(&host_events(&d), "permission_denied").len(), 1);

    std::fs::set_permissions(&watched, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ev = wait_events(&d, Duration::from_secs(20), |e| {
        of(e, "permission_denied")
            .iter()
            .any(|x| x.2["state"] == "resolved")
    });
    wait_samples(&d, "system.filesystem.limit", 3);
    let ev2 = host_events(&d);
    let denied = of(&ev2, "permission_denied");
    assert_eq!(denied.len(), 1, "{ev:?}");
    let a = &denied[0].2;
    assert_eq!(a["state"], "resolved", "{a}");
    assert!(
        a["started_at"].is_string() && a["ended_at"].is_string(),
        "{a}"
    );
    assert!(a["duration_ms"].as_i64().unwrap() > 0, "{a}");
    assert!(a["condition"].as_str().unwrap().ends_with("watched"), "{a}");
    assert!(ev2.iter().all(|e| e.0 != "db_write_failure"), "{ev2:?}");
}

#[test]
fn a_database_on_a_full_volume_is_one_db_write_failure_until_it_recovers() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("dbvol");
    let Some(_mount) = Tmpfs::mount(&vol, "16m") else {
        eprintln!("SKIPPED: mounting a tmpfs is not allowed here");
        return;
    };
    // The volume's own disk_full is another test's: watch somewhere else.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let mut d = Daemon::start_in(
        &vol,
        &env(&[("OCT_WATCH_PATHS", elsewhere.to_str().unwrap())]),
    );
    wait_samples(&d, "oct.queue.depth", 2);
    let fail_events = |d: &Daemon| -> Vec<(String, String, Value)> {
        host_events(d)
            .into_iter()
            .filter(|e| e.0 == "db_write_failure")
            .collect()
    };
    assert!(fail_events(&d).is_empty());

    // Fill the volume: the write-ahead log can no longer grow, commits fail.
    let fill = vol.join("fill");
    let mut f = std::fs::File::create(&fill).unwrap();
    let chunk = vec![7u8; 64 << 10];
    let mut wrote = 0usize;
    let err = loop {
        match f.write_all(&chunk) {
            Ok(()) => wrote += chunk.len(),
            Err(e) => break e,
        }
        assert!(wrote < 32 << 20, "a 16 MiB volume took 32 MiB");
    };
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
    drop(f);
    let until = Instant::now() + Duration::from_secs(20);
    while !d.logs().iter().any(|l| l.contains("database write failed")) {
        assert!(
            Instant::now() < until,
            "writes never failed: {:?}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Failing for several samples: the condition is seen each time, reported once.
    std::thread::sleep(Duration::from_secs(3));
    std::fs::remove_file(&fill).unwrap();

    let ev = {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let ev = fail_events(&d);
            if ev.iter().any(|e| e.2["state"] == "resolved") || Instant::now() > until {
                break ev;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(ev.len(), 1, "{ev:?}");
    let a = &ev[0].2;
    assert_eq!(ev[0].1, "db");
    assert_eq!(a["state"], "resolved", "{a}");
    assert!(a["error"].as_str().unwrap().contains("full"), "{a}");
    assert!(a["duration_ms"].as_i64().unwrap() >= 2000, "{a}");
    // Later samples add nothing.
    wait_samples(&d, "oct.queue.depth", 3);
    assert_eq!(fail_events(&d).len(), 1);
    assert!(
        d.logs()
            .iter()
            .any(|l| l.contains("database writes recovered"))
    );
    d.stop();
}
