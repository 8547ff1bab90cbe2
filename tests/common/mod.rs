//! Test harness: the real binary, started on 127.0.0.1:0 with its own database file.
#![allow(dead_code)]

pub mod fleet;
pub mod openclaw_day;
pub mod webhook;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_openclaw-trace");

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub db_path: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts the daemon in a fresh temporary directory.
    pub fn start(env: &[(&str, &str)]) -> Daemon {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut d = Daemon::start_in(&dir, env);
        d._tmp = Some(tmp);
        d
    }

    /// Starts the daemon on the database in `dir` (for restarts); the caller keeps the dir.
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let db_path = dir.join("trace.db");
        let mut cmd = Command::new(BIN);
        cmd.env_clear();
        keep_clock(&mut cmd);
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("OCT_DB_PATH", &db_path);
        Daemon::spawn(cmd, dir, db_path, env)
    }

    /// Starts a command under `chroot root`, with its data
    /// in `root/data` (seen as `/data` by the daemon); the caller keeps `root`.
    /// `argv` is the command inside the root; `userspec` (`uid:gid`) runs it as that user.
    pub fn start_chroot(
        root: &Path,
        userspec: Option<&str>,
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = root.join("data");
        let mut cmd = Command::new("chroot");
        if let Some(u) = userspec {
            cmd.arg(format!("--userspec={u}"));
        }
        cmd.arg(root)
            .args(argv)
            .env_clear()
            // For finding chroot itself; nothing in the root uses it.
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", "/data")
            .env("OCT_DB_PATH", "/data/trace.db");
        Daemon::spawn(cmd, &dir, dir.join("trace.db"), env)
    }

    fn spawn(mut cmd: Command, dir: &Path, db_path: PathBuf, env: &[(&str, &str)]) -> Daemon {
        cmd.env("OCT_PORT", "0")
            .env("OCT_LOG_FORMAT", "json")
            // Host samples would add records to every test's exact counts, and DNS
            // probes of LLM providers fail without an outside network: host tests
            // turn the collectors back on themselves.
            .env("OCT_HOST_DISABLE", "all")
            // The gateway log's default place (/tmp/openclaw) is the machine's: a real
            // gateway run by another test or person writes there, and its lines would add
            // to exact counts. Tests of the log source set OCT_LOG_PATH themselves.
            .env("OCT_LOG_PATH", "off")
            // Dedicated OTLP listeners on free ports, so parallel tests never contend.
            .env("OCT_OTLP_HTTP_ADDR", "127.0.0.1:0")
            .env("OCT_OTLP_GRPC_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn openclaw-trace");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let logs2 = logs.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                    && let Some(a) = v["addr"].as_str()
                {
                    let _ = tx.send(a.to_string());
                    sent = true;
                }
                logs2.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("addr"),
            Err(_) => {
                let _ = child.kill();
                panic!("daemon did not start: {:?}", logs.lock().unwrap());
            }
        };
        Daemon {
            child,
            addr,
            dir: dir.to_path_buf(),
            db_path,
            logs,
            _tmp: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GETs `path` and reads the answer as JSON (whatever its status).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        client().get(self.url(path)).send().unwrap().json().unwrap()
    }

    /// Runs the CLI on this daemon's database, with no other environment.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env_clear();
        keep_clock(&mut cmd);
        cmd.env("HOME", &self.dir)
            .env("OCT_DB_PATH", &self.db_path)
            .output()
            .expect("run the CLI")
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait(Duration::from_secs(30))
            .expect("daemon did not stop after SIGTERM")
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A read-only connection on the daemon's database.
    pub fn db(&self) -> rusqlite::Connection {
        open_db(&self.db_path)
    }

    /// Waits until `count(sql)` reaches `want`, at most `timeout`; returns the last count.
    pub fn wait_count(&self, sql: &str, want: i64, timeout: Duration) -> i64 {
        let until = Instant::now() + timeout;
        loop {
            let n = count(&self.db_path, sql);
            if n >= want || Instant::now() > until {
                return n;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn open_db(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open db");
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    // Span values may be stored packed: `unpack(col)` reads them.
    openclaw_trace::store::codec::register(&c).unwrap();
    c
}

pub fn count(path: &Path, sql: &str) -> i64 {
    open_db(path).query_row(sql, [], |r| r.get(0)).unwrap_or(-1)
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn post_json(url: &str, body: &serde_json::Value) -> reqwest::blocking::Response {
    client().post(url).json(body).send().expect("request")
}

/// Sends a chunked request (no Content-Length) over a raw socket and returns the
/// status code and body; the server may answer before the whole body is sent.
pub fn post_chunked(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(head.as_bytes());
        for chunk in body.chunks(8192) {
            if w.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || w.write_all(chunk).is_err()
                || w.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
        let _ = w.write_all(b"0\r\n\r\n");
    });
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Passes on a moved clock (libfaketime: the test command runs the suites that read
/// dated data a year ahead) to a command whose environment is otherwise cleared.
pub fn keep_clock(cmd: &mut Command) {
    for (k, v) in std::env::vars() {
        if k == "LD_PRELOAD" || k.starts_with("FAKETIME") {
            cmd.env(k, v);
        }
    }
}

/// Unix milliseconds now, on the clock the test (and the daemon it starts) sees.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits (at most `ms` plus a second) while the UTC day is younger than `ms`, then
/// returns [`now_ms`]: a test that writes spans dated up to `ms` before now and reads
/// today's (or this month's) budget sees them all in the current period, on any date
/// and at any hour.
pub fn now_ms_with_today_reaching_back(ms: i64) -> i64 {
    now_ms_within_today(ms, 0)
}

/// [`now_ms_with_today_reaching_back`] for a test that also runs `ahead` ms on and
/// reads today's budget at its end: waits past midnight when the day has less than
/// that left, so every span it writes and reads is in one UTC day.
pub fn now_ms_within_today(back: i64, ahead: i64) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    assert!(
        back < DAY_MS / 4 && ahead < DAY_MS / 4,
        "a test reaches back {back} ms and runs {ahead} ms: too far to wait for"
    );
    loop {
        let now = now_ms();
        let into_day = now.rem_euclid(DAY_MS);
        if into_day > back + 1_000 && into_day < DAY_MS - ahead {
            return now;
        }
        let wait = if into_day <= back + 1_000 {
            back + 1_001 - into_day
        } else {
            DAY_MS - into_day + back + 1_001
        };
        std::thread::sleep(std::time::Duration::from_millis(wait as u64));
    }
}

/// Fixture text with every time in it (unix milliseconds, RFC 3339 in UTC) moved by
/// the same amount so that its newest is a minute ago (give or take a second): recorded data keeps its shape
/// and spacing, and no test depends on the day it runs (retention would age it out).
pub fn fixture_at_now(text: &str) -> String {
    let times = find_times(text);
    let Some(newest) = times.iter().map(|t| t.ms).max() else {
        return text.to_string();
    };
    // Whole seconds, so a time written without a fraction moves exactly as the others.
    let delta = (now_ms() - 60_000 - newest).div_euclid(1000) * 1000;
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for t in &times {
        out.push_str(&text[at..t.start]);
        out.push_str(&t.render(t.ms + delta));
        at = t.end;
    }
    out.push_str(&text[at..]);
    out
}

pub struct FoundTime {
    start: usize,
    end: usize,
    pub ms: i64,
    /// Digits after the seconds' point, and the zone as written (`Z`, `+00:00`); None for a number.
    iso: Option<(usize, &'static str)>,
}

impl FoundTime {
    fn render(&self, ms: i64) -> String {
        match self.iso {
            None => ms.to_string(),
            Some((frac, zone)) => utc_text(ms, frac, zone),
        }
    }
}

/// Unix milliseconds as RFC 3339 in UTC, with `frac` digits after the seconds and `zone`
/// (`Z` or `+00:00`) written as given.
pub fn utc_text(ms: i64, frac: usize, zone: &str) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if frac > 0 {
        let digits = format!("{:03}", t.millisecond());
        s.push('.');
        s.push_str(&format!("{digits:0<frac$}")[..frac]);
    }
    s.push_str(zone);
    s
}

/// Unix-millisecond numbers (13 digits, 2020 to 2039) and RFC 3339 UTC times in `text`.
pub fn find_times(text: &str) -> Vec<FoundTime> {
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let num = |from: usize, len: usize| -> i64 { text[from..from + len].parse().unwrap_or(-1) };
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !digit(i) || (i > 0 && digit(i - 1)) {
            i += 1;
            continue;
        }
        let mut j = i;
        while digit(j) {
            j += 1;
        }
        let run = j - i;
        if run == 13 {
            let ms = num(i, 13);
            if (1_577_836_800_000..2_208_988_800_000).contains(&ms) {
                found.push(FoundTime {
                    start: i,
                    end: j,
                    ms,
                    iso: None,
                });
            }
        } else if run == 4 && b.len() >= i + 19 && &b[i + 4..i + 5] == b"-" {
            // YYYY-MM-DDTHH:MM:SS
            let shape = b"dddd-dd-ddTdd:dd:dd";
            let fits = shape.iter().enumerate().all(|(k, c)| match c {
                b'd' => digit(i + k),
                c => b[i + k] == *c,
            });
            if fits {
                let mut end = i + 19;
                let mut frac = 0;
                if b.get(end) == Some(&b'.') {
                    while digit(end + 1 + frac) {
                        frac += 1;
                    }
                    end += 1 + frac;
                }
                let zone: Option<&'static str> = if text[end..].starts_with('Z') {
                    Some("Z")
                } else if text[end..].starts_with("+00:00") {
                    Some("+00:00")
                } else {
                    None
                };
                if let Some(zone) = zone {
                    let date = time::Date::from_calendar_date(
                        num(i, 4) as i32,
                        time::Month::try_from(num(i + 5, 2) as u8).unwrap(),
                        num(i + 8, 2) as u8,
                    )
                    .unwrap();
                    let clock = time::Time::from_hms(
                        num(i + 11, 2) as u8,
                        num(i + 14, 2) as u8,
                        num(i + 17, 2) as u8,
                    )
                    .unwrap();
                    let mut ms = (time::PrimitiveDateTime::new(date, clock)
                        .assume_utc()
                        .unix_timestamp_nanos()
                        / 1_000_000) as i64;
                    if frac > 0 {
                        let f = &text[i + 20..i + 20 + frac.min(3)];
                        ms += format!("{f:0<3}").parse::<i64>().unwrap();
                    }
                    let end = end + zone.len();
                    found.push(FoundTime {
                        start: i,
                        end,
                        ms,
                        iso: Some((frac, zone)),
                    });
                    i = end;
                    continue;
                }
            }
        }
        i = j;
    }
    found
}

/// Serves `app` (a fake remote: a push receiver, an OTLP backend) on a free loopback
/// port from a runtime of its own thread; its base URL.
pub fn serve_in_thread(app: axum::Router) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

/// Polls `f` until it holds, at most `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// A private PostgreSQL server for one test (`scripts/pg-private.sh`): its own data
/// directory and a free port on 127.0.0.1, stopped when dropped.
pub struct PgServer {
    pub url: String,
    dir: tempfile::TempDir,
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::start_with(false)
    }

    /// With TLS on: the CA that signed the server's certificate is [`PgServer::ca_cert`].
    pub fn start_tls() -> PgServer {
        PgServer::start_with(true)
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("pg/ca.crt")
    }

    fn start_with(tls: bool) -> PgServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-private.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg("start")
            .arg(dir.path().join("pg"))
            .arg(port.to_string())
            .env("PG_TLS", if tls { "1" } else { "0" })
            .output()
            .expect("run pg-private.sh");
        assert!(
            out.status.success(),
            "PostgreSQL did not start (bash scripts/setup-postgres.sh installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PgServer {
            url: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            dir,
        }
    }

    /// What `psql` prints for `sql` (unaligned, tuples only): the count a test checks,
    /// read by PostgreSQL's own client.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([&self.url, "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl PgServer {
    fn control(&self, what: &str) -> bool {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-private.sh");
        Command::new("bash")
            .arg(script)
            .arg(what)
            .arg(self.dir.path().join("pg"))
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the server at once (`-m immediate`: as if it crashed).
    pub fn stop(&self) {
        self.control("stop");
    }

    /// Starts it again after [`PgServer::stop`]: same port, same data.
    pub fn resume(&self) {
        assert!(self.control("resume"), "PostgreSQL did not start again");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.control("stop");
    }
}
