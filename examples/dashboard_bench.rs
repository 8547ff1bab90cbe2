//! Dashboard speed: builds a database of about 1,000,000 spans (agent runs with LLM and
//! tool calls across agents, sessions, users and models over 30 days, plus one
//! 2,000-span run) through the store's own writer and rollup hook, starts the release
//! binary on it, and prints p50/p95/max of the API calls behind each dashboard view.
//!
//! Usage: cargo run --release --example dashboard_bench -- target/release/openclaw-trace
//!        [--spans N] [--db PATH (kept and reused when it exists)] [--runs N]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openclaw_trace::analytics::usage::RollupHook;
use openclaw_trace::model::{
    CappedText, Event, EventType, Record, Span, SpanId, SpanKind, StatusCode, TraceId, now_ns,
};
use openclaw_trace::pipeline::WriteHook;
use openclaw_trace::store::{open_writer, write::write_records};
use serde_json::{Value, json};

const MIN_NS: i64 = 60_000_000_000;
const DAY_NS: i64 = 24 * 60 * MIN_NS;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Agents with their share of sessions (in tenths) and usual models.
const AGENTS: &[(&str, u64)] = &[
    ("main", 35),
    ("coder", 25),
    ("researcher", 15),
    ("support", 15),
    ("cron", 10),
];
/// Provider, model, USD per input and output token.
const MODELS: &[(&str, &str, f64, f64)] = &[
    ("openai", "gpt-4o", 2.5e-6, 10e-6),
    ("openai", "gpt-4o-mini", 0.15e-6, 0.6e-6),
    ("anthropic", "claude-sonnet-4", 3e-6, 15e-6),
    ("anthropic", "claude-3-5-haiku", 0.8e-6, 4e-6),
    ("openai", "o3", 2e-6, 8e-6),
    ("google", "gemini-2.5-pro", 1.25e-6, 10e-6),
];
const TOOLS: &[&str] = &[
    "read_file",
    "write_file",
    "bash",
    "web_search",
    "fetch_url",
    "grep",
    "list_dir",
    "send_message",
];
const PROMPT: &str = "Please look at the failing build and tell me what changed since yesterday; \
the error mentions a missing symbol in the linker output and the tests time out after 60 s.";
const ANSWER: &str = "The linker error comes from the new feature flag: the symbol is only \
compiled with `--features tls`. I will check the CI config next.";
const TOOL_ARGS: &str = r#"{"path":"src/main.rs","offset":120,"limit":80}"#;
const TOOL_OUT: &str =
    "fn main() {\n    let cfg = Config::from_env()?;\n    run(cfg)\n}\n... 76 more lines ...";

fn span(
    trace: TraceId,
    id: u64,
    parent: Option<u64>,
    kind: SpanKind,
    name: &str,
    start: i64,
    dur: i64,
) -> Span {
    let mut s = Span::new(
        trace,
        SpanId((id + 1).to_be_bytes()),
        name.into(),
        kind,
        start,
    );
    s.parent_span_id = parent.map(|p| SpanId((p + 1).to_be_bytes()));
    s.end_ns = Some(start + dur);
    s.status = StatusCode::Ok;
    s.source = "bench";
    s
}

struct Ids {
    agent: &'static str,
    session: String,
    user: String,
}

/// What one run does: LLM calls, tool calls (spread after them), whether one fails.
struct Shape {
    llm: usize,
    tools: usize,
    fail: bool,
}

/// One agent run: the root, then its LLM calls each followed by its share of tool calls.
/// Returns the run's end.
fn run(
    rng: &mut Lcg,
    trace: TraceId,
    ids: &Ids,
    start: i64,
    shape: Shape,
    out: &mut Vec<Record>,
) -> i64 {
    let Shape { llm, tools, fail } = shape;
    let model = *rng.pick(MODELS);
    let mut t = start + 5_000_000;
    let mut children = Vec::with_capacity(llm + tools);
    let mut sid = 1u64;
    let fail_at = if fail {
        rng.range(0, (llm + tools) as i64 - 1) as usize
    } else {
        usize::MAX
    };
    let mut kinds = Vec::with_capacity(llm + tools);
    let mut tools_left = tools;
    for i in 0..llm {
        kinds.push(true);
        let k = if i + 1 == llm {
            tools_left
        } else {
            tools_left / (llm - i)
        };
        kinds.extend(std::iter::repeat_n(false, k));
        tools_left -= k;
    }
    for (i, is_llm) in kinds.into_iter().enumerate() {
        let mut s = if is_llm {
            let dur = rng.range(400, 9_000) * 1_000_000;
            let mut s = span(
                trace,
                sid,
                Some(0),
                SpanKind::LlmCall,
                &format!("chat {}", model.1),
                t,
                dur,
            );
            let inp = rng.range(300, 12_000);
            let outp = rng.range(20, 1_500);
            s.provider = Some(model.0.into());
            s.request_model = Some(model.1.into());
            s.response_model = Some(model.1.into());
            s.operation = Some("chat".into());
            s.input_tokens = Some(inp);
            s.output_tokens = Some(outp);
            s.total_tokens = Some(inp + outp);
            if rng.chance(40) {
                s.cache_read_tokens = Some(inp / 2);
            }
            s.cost_usd = Some(inp as f64 * model.2 + outp as f64 * model.3);
            s.finish_reasons = vec!["stop".into()];
            s.input = Some(CappedText::new(PROMPT.into(), 16384));
            s.output = Some(CappedText::new(ANSWER.into(), 16384));
            s
        } else {
            let dur = rng.range(5, 3_000) * 1_000_000;
            let tool = *rng.pick(TOOLS);
            let mut s = span(
                trace,
                sid,
                Some(0),
                SpanKind::ToolCall,
                &format!("execute_tool {tool}"),
                t,
                dur,
            );
            s.tool_name = Some(tool.into());
            s.tool_call_id = Some(format!("call_{sid}"));
            s.input = Some(CappedText::new(TOOL_ARGS.into(), 16384));
            s.output = Some(CappedText::new(TOOL_OUT.into(), 16384));
            s
        };
        if i == fail_at {
            s.status = StatusCode::Error;
            s.status_message = Some("rate_limited".into());
            s.error_type = Some("rate_limited".into());
        }
        s.agent_id = Some(ids.agent.into());
        s.session_id = Some(ids.session.clone());
        s.user_id = Some(ids.user.clone());
        t = s.end_ns.unwrap_or(t) + rng.range(1, 200) * 1_000_000;
        sid += 1;
        children.push(s);
    }
    let mut root = span(
        trace,
        0,
        None,
        SpanKind::AgentRun,
        &format!("invoke_agent {}", ids.agent),
        start,
        t - start,
    );
    root.agent_id = Some(ids.agent.into());
    root.session_id = Some(ids.session.clone());
    root.user_id = Some(ids.user.clone());
    root.operation = Some("invoke_agent".into());
    if fail {
        root.status = StatusCode::Error;
    }
    out.push(Record::Span(Box::new(root)));
    out.extend(children.into_iter().map(|s| Record::Span(Box::new(s))));
    t
}

struct Built {
    typical: String,
    big: String,
    session: String,
    spans: u64,
}

fn build(db: &Path, target: u64) -> Built {
    let mut conn = open_writer(db).expect("open the database");
    let now = now_ns();
    let start = now - 30 * DAY_NS;
    let mut rng = Lcg(20261206);
    let mut spans = 0u64;
    let mut runs = 0u64;
    let mut batch: Vec<Record> = Vec::with_capacity(12_000);
    let mut typical = String::new();
    let mut session_pick = String::new();
    // About 38 spans per session: spread the sessions evenly over the 30 days.
    let sessions = (target / 38).max(1) as i64;
    let gap = 30 * DAY_NS / sessions;
    let reserve = 2_001;
    let mut t = start;
    let mut n = 0u64;
    let flush = |conn: &mut rusqlite::Connection, batch: &mut Vec<Record>| {
        let tx = conn.transaction().unwrap();
        let out = write_records(&tx, batch, now_ns()).unwrap();
        RollupHook
            .in_transaction(
                &mut openclaw_trace::store::sqlite::SqliteHookTx(&tx),
                batch,
                &out.effects,
            )
            .unwrap();
        tx.commit().unwrap();
        batch.clear();
    };
    let t0 = Instant::now();
    while spans + reserve < target && t < now - 3 * 60 * MIN_NS {
        n += 1;
        let mut r = rng.next() % 100;
        let agent = AGENTS
            .iter()
            .find(|(_, share)| {
                if r < *share {
                    true
                } else {
                    r -= share;
                    false
                }
            })
            .map_or("main", |a| a.0);
        let ids = Ids {
            agent,
            session: format!("sess-{n:07}"),
            // Eight users, most runs from two of them (a team's agents, not a public bot).
            user: format!(
                "user-{}",
                if rng.chance(70) {
                    rng.range(1, 2)
                } else {
                    rng.range(3, 8)
                }
            ),
        };
        let mut rt = t;
        for _ in 0..rng.range(1, 8) {
            let llm = rng.range(1, 6) as usize;
            let tools = rng.range(0, 8) as usize;
            let fail = rng.chance(4);
            runs += 1;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&runs.to_be_bytes());
            id[8..].copy_from_slice(&0xb3_u64.to_be_bytes());
            let trace = TraceId(id);
            let before = batch.len();
            let end = run(
                &mut rng,
                trace,
                &ids,
                rt,
                Shape { llm, tools, fail },
                &mut batch,
            );
            spans += (batch.len() - before) as u64;
            if runs.is_multiple_of(500) {
                // Now and then the baselines flagged a run.
                let mut e = Event::new(
                    EventType::Custom,
                    "baseline_anomaly".into(),
                    end + 5 * 1_000_000_000,
                );
                e.severity = "warning".into();
                e.category = Some("baseline".into());
                e.trace_id = Some(trace);
                e.agent_id = Some(agent.into());
                e.source = "baseline";
                if let Value::Object(m) = json!({"type": "baseline_anomaly", "metrics": [
                    {"metric": "cost_usd", "value": 0.9, "median": 0.05, "mad": 0.01, "z": 57.3, "anomalous": true, "direction": "above"}]})
                {
                    e.attributes = m;
                }
                batch.push(Record::Event(Box::new(e)));
            }
            // The typical run and session: the latest of an ordinary size.
            if (2..=4).contains(&llm) && (2..=6).contains(&tools) {
                typical = trace.to_hex();
                session_pick = ids.session.clone();
            }
            rt = end + rng.range(10, 600) * 1_000_000_000;
        }
        if batch.len() >= 10_000 {
            flush(&mut conn, &mut batch);
        }
        // Half to one and a half gaps (the generator draws 31 bits: scale a draw in 0..1000).
        t += gap / 2 + rng.range(0, 1000) * gap / 1000;
        if n.is_multiple_of(5_000) {
            eprintln!(
                "  {spans} spans written ({:.0} s)",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    // One long run: 2,000 spans (1 root, 999 LLM calls, 1,000 tool calls), two hours ago.
    let big_trace = TraceId([0xbb; 16]);
    let ids = Ids {
        agent: "coder",
        session: "sess-big".into(),
        user: "user-1".into(),
    };
    let before = batch.len();
    let shape = Shape {
        llm: 999,
        tools: 1000,
        fail: false,
    };
    run(
        &mut rng,
        big_trace,
        &ids,
        now - 120 * MIN_NS,
        shape,
        &mut batch,
    );
    spans += (batch.len() - before) as u64;
    flush(&mut conn, &mut batch);
    eprintln!(
        "  built: {spans} spans in {runs} runs + 1 big run, {n} sessions, {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    drop(conn);
    Built {
        typical,
        big: big_trace.to_hex(),
        session: session_pick,
        spans,
    }
}

struct Proc {
    child: Child,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &str, db: &Path) -> Proc {
    let mut child = Command::new(bin)
        .env("OCT_PORT", "0")
        .env("OCT_DB_PATH", db)
        .env("OCT_LOG_FORMAT", "json")
        .env("OCT_HOST_DISABLE", "all")
        // Keep the 30 days: retention would otherwise start deleting at once.
        .env("OCT_RETENTION_DAYS", "0")
        .env("OCT_CLEANUP_DB_THRESHOLD_BYTES", "100GiB")
        .env("OCT_CLEANUP_DISK_THRESHOLD", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let l = lines.next().expect("daemon exited").unwrap();
        let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
        if v["message"] == "listening" {
            break v["addr"].as_str().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Proc { child, addr }
}

fn cpu_steal() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    (f.get(7).copied().unwrap_or(0), f.iter().take(8).sum())
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "target/release/openclaw-trace".into());
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let target: u64 = opt("--spans")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let reps: usize = opt("--runs").and_then(|v| v.parse().ok()).unwrap_or(40);
    let tmp = tempfile::tempdir().unwrap();
    let db: PathBuf = opt("--db").map_or_else(|| tmp.path().join("dash.db"), PathBuf::from);
    let meta = db.with_extension("bench.json");
    let built = if db.exists() && meta.exists() {
        let m: Value = serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
        eprintln!("# reusing {} ({} spans)", db.display(), m["spans"]);
        Built {
            typical: m["typical"].as_str().unwrap().into(),
            big: m["big"].as_str().unwrap().into(),
            session: m["session"].as_str().unwrap().into(),
            spans: m["spans"].as_u64().unwrap(),
        }
    } else {
        let _ = std::fs::remove_file(&db);
        eprintln!("# building {} with {target} spans", db.display());
        let b = build(&db, target);
        std::fs::write(
            &meta,
            json!({"typical": b.typical, "big": b.big, "session": b.session, "spans": b.spans})
                .to_string(),
        )
        .unwrap();
        b
    };
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(db.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    let p = start(&bin, &db);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("http://{}", p.addr);
    let get = |path: &str| -> (u16, Vec<u8>) {
        let r = client.get(format!("{base}{path}")).send().unwrap();
        let s = r.status().as_u16();
        (s, r.bytes().unwrap().to_vec())
    };
    // A page-two cursor for the runs table, and the cost sort's.
    let first: Value = serde_json::from_slice(&get("/v1/traces").1).unwrap();
    let cursor = first["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let now_ms = now_ns() / 1_000_000;
    let d30 = now_ms - 30 * 86_400_000;
    let calls: Vec<(&str, String)> = vec![
        ("runs: default list", "/v1/traces".into()),
        ("runs: page 2", format!("/v1/traces?cursor={cursor}")),
        (
            "runs: agent=researcher",
            "/v1/traces?agent_id=researcher".into(),
        ),
        ("runs: status=error", "/v1/traces?status=error".into()),
        ("runs: sort=cost", "/v1/traces?sort=cost".into()),
        (
            "runs: sort=duration asc",
            "/v1/traces?sort=duration&order=asc".into(),
        ),
        ("runs: min_cost=0.1", "/v1/traces?min_cost=0.1".into()),
        ("runs: q=coder", "/v1/traces?q=coder".into()),
        ("one run (typical)", format!("/v1/traces/{}", built.typical)),
        ("one run (2,000 spans)", format!("/v1/traces/{}", built.big)),
        ("overview 24 h", "/v1/overview".into()),
        ("overview 30 d", format!("/v1/overview?from={d30}")),
        (
            "overview 30 d by agent",
            format!("/v1/overview?from={d30}&by=agent"),
        ),
        (
            "usage by model, day, 30 d",
            format!("/v1/usage?group_by=model&bucket=day&from={d30}"),
        ),
        (
            "usage, same, percentiles=false",
            format!("/v1/usage?group_by=model&bucket=day&from={d30}&percentiles=false"),
        ),
        (
            "usage view totals by model, 30 d (p95)",
            format!("/v1/usage?group_by=model&from={d30}"),
        ),
        (
            "usage by agent and user, day, 30 d",
            format!("/v1/usage?group_by=agent,user&bucket=day&from={d30}"),
        ),
        (
            "usage CSV, by model, day, 30 d",
            format!("/v1/usage?group_by=model&bucket=day&from={d30}&format=csv"),
        ),
        (
            "usage CSV, percentiles=false",
            format!("/v1/usage?group_by=model&bucket=day&from={d30}&percentiles=false&format=csv"),
        ),
        ("sessions list", "/v1/sessions".into()),
        ("one session", format!("/v1/sessions/{}", built.session)),
        ("anomalies", "/v1/anomalies".into()),
    ];
    println!(
        "# {} spans, database {:.0} MiB; {reps} sequential requests per call after 3 warm-ups",
        built.spans,
        size as f64 / 1048576.0
    );
    println!("| call | p50 ms | p95 ms | max ms | bytes |");
    println!("|---|---|---|---|---|");
    let steal0 = cpu_steal();
    for (name, path) in &calls {
        for _ in 0..3 {
            let (s, body) = get(path);
            assert_eq!(s, 200, "{path}: {}", String::from_utf8_lossy(&body));
        }
        let mut ms = Vec::with_capacity(reps);
        let mut bytes = 0;
        for _ in 0..reps {
            let t = Instant::now();
            let (_, body) = get(path);
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            bytes = body.len();
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {bytes} |",
            pct(&ms, 0.5),
            pct(&ms, 0.95),
            ms[ms.len() - 1]
        );
    }
    let s1 = cpu_steal();
    let total = s1.1.saturating_sub(steal0.1).max(1);
    println!(
        "# CPU stolen by the hypervisor during the requests: {:.0} %",
        s1.0.saturating_sub(steal0.0) as f64 / total as f64 * 100.0
    );
}
