//! What the test modules share: temporary folders, running the binary,
//! servers and their ports, HTTP, and Python environments.

use distillguard_core::{EventReader, RecordReader, TruthRecord};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) struct Dir(pub(crate) PathBuf);

impl Dir {
    pub(crate) fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("dg-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn dg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args(args)
        .output()
        .expect("binary runs")
}

pub(crate) fn ok(args: &[&str]) -> String {
    let out = dg(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn simulate_small(dir: &Dir, sub: &str, seed: u64) -> PathBuf {
    let out = dir.path(sub);
    ok(&[
        "simulate",
        "--scenario",
        "small",
        "--seed",
        &seed.to_string(),
        "--corpus",
        "embedded",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--format",
        "json",
    ]);
    out
}

pub(crate) fn read_events(path: &Path) -> Vec<distillguard_core::Event> {
    let mut r = EventReader::open(path).unwrap();
    let mut v = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        v.push(e.unwrap());
    }
    v
}

pub(crate) fn truth(dir: &Path) -> Vec<TruthRecord> {
    RecordReader::<TruthRecord>::open(&dir.join("truth.jsonl"))
        .unwrap()
        .read_all(true)
        .unwrap()
        .0
}

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Runs `analyze` on a simulation directory's log; returns the JSON report.
pub(crate) fn analyze_dir(out: &Path, log: &Path) -> serde_json::Value {
    let text = ok(&[
        "analyze",
        log.to_str().unwrap(),
        "--accounts",
        out.join("accounts.jsonl").to_str().unwrap(),
        "--models",
        out.join("models.jsonl").to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
        "--all",
    ]);
    serde_json::from_str(&text).unwrap()
}

/// Python packages the tests use, pinned.
pub(crate) const PY_PACKAGES: [&str; 4] = [
    "stix2-validator==3.3.2",
    "openai==3.54.0",
    "anthropic==2.12.0",
    "prometheus-client==0.26.0",
];

/// A venv under the target directory with [`PY_PACKAGES`], created and
/// filled on first use (CI fills it beforehand; see `.ci/run`). Returns
/// its `bin` folder.
pub(crate) fn py_venv() -> PathBuf {
    // Tests run on threads: one of them fills the venv, the others wait.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stix-venv");
    let bin = venv.join("bin");
    let ready = bin.join("stix2_validator").exists()
        && std::process::Command::new(bin.join("python"))
            .args(["-c", "import openai, anthropic, prometheus_client"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        if !bin.join("pip").exists() {
            let st = std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 -m venv");
            assert!(st.success(), "could not create {}", venv.display());
        }
        let st = std::process::Command::new(bin.join("pip"))
            .args(["install", "-q"])
            .args(PY_PACKAGES)
            .status()
            .expect("pip");
        assert!(st.success(), "pip install {PY_PACKAGES:?} failed");
    }
    bin
}

pub(crate) fn stix2_validator() -> PathBuf {
    py_venv().join("stix2_validator")
}

/// Starts `distillguard upstream-mock` on a free port; returns the child and its URL.
pub(crate) fn start_mock(extra: &[&str]) -> (std::process::Child, String) {
    let mut args = vec!["upstream-mock", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    spawn_with_url(&args)
}

/// Starts the binary with `args`; returns it and the URL that ends its
/// first line of output (a server saying where it listens).
pub(crate) fn spawn_with_url(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (child, url)
}

pub(crate) fn http_post(url: &str, path: &str, body: &str) -> (u16, String) {
    http("POST", url, path, body, "")
}

/// One HTTP/1.1 request; `headers`: extra lines, each ending in `\r\n`.
pub(crate) fn http(
    method: &str,
    url: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String) {
    let (status, _, payload) = http_full(method, url, path, body, headers);
    (status, payload)
}

/// Status, head and body.
pub(crate) fn http_full(
    method: &str,
    url: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String, String) {
    let host = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, payload) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), payload.to_string())
}

/// A new key of `account` in the store `db` (a file or a PostgreSQL URL).
pub(crate) fn create_key(db: &str, account: &str, tier: &str) -> String {
    ok(&[
        "keys",
        "create",
        "--account",
        account,
        "--tier",
        tier,
        "--db",
        db,
    ])
    .trim()
    .to_string()
}

/// Starts `distillguard serve` with `config`; returns the child and its URL.
pub(crate) fn start_gateway(config: &Path) -> (std::process::Child, String) {
    let (child, mut urls) = start_gateway_urls(config, 1);
    (child, urls.remove(0))
}

/// Starts `distillguard serve`; returns the child and the first `n` URLs it
/// prints (the public one, then the internal one).
pub(crate) fn start_gateway_urls(config: &Path, n: usize) -> (std::process::Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let urls = (0..n)
        .map(|_| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            let url = line.trim().rsplit(' ').next().unwrap().to_string();
            assert!(
                url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
                "{line}"
            );
            url
        })
        .collect();
    (child, urls)
}

/// Writes a gateway config `name` in `d`: any free port, the `head` keys
/// and tables, then one upstream per dialect at `upstream` (a mock's URL)
/// serving `atlas-3`.
pub(crate) fn gateway_config(
    d: &Dir,
    name: &str,
    upstream: &str,
    dialects: &[&str],
    head: &str,
) -> std::path::PathBuf {
    // Without a key store, the tests say so (a gateway refuses to start
    // unauthenticated by accident).
    let auth = if head.contains("keys_db") {
        ""
    } else {
        "auth = \"none\"\n"
    };
    let mut text = format!("listen = \"127.0.0.1:0\"\n{auth}{head}\n");
    for dl in dialects {
        text.push_str(&format!(
            "[[upstreams]]\nname = \"up-{dl}\"\nurl = \"{upstream}\"\ndialect = \"{dl}\"\nmodels = [\"atlas-3\"]\n"
        ));
    }
    let p = d.path(name);
    write(&p, &text);
    p
}

/// Sends SIGTERM (a graceful stop).
pub(crate) fn terminate(child: &std::process::Child) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Waits (at most 10 s) for a process to exit with success.
pub(crate) fn wait_clean_exit(mut child: std::process::Child) {
    let started = std::time::Instant::now();
    loop {
        if let Some(c) = child.try_wait().unwrap() {
            assert!(c.success(), "{c:?}");
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the gateway did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Stops a gateway with SIGTERM and waits for it to exit cleanly.
pub(crate) fn stop(child: std::process::Child) {
    terminate(&child);
    wait_clean_exit(child);
}

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private server process (NATS or Redis) of one test, killed with it.
pub(crate) struct Server(pub(crate) std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (at most 10 s) until something listens on `port`.
pub(crate) fn listening(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// Polls `f` every 100 ms for up to `secs`; true once it holds.
pub(crate) fn within(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    f()
}

/// A venv `name` under the target directory that can `import` the
/// modules named, made and filled with `packages` on first use (tests run
/// on threads: one fills it, the others wait). Returns the venv's folder.
pub(crate) fn venv_with(name: &str, import: &str, packages: &[&str]) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let ready = Command::new(venv.join("bin/python"))
        .args(["-c", &format!("import {import}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        if !venv.join("bin/pip").exists() {
            let st = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let st = Command::new(venv.join("bin/pip"))
            .args(["install", "-q"])
            .args(packages)
            .status()
            .unwrap();
        assert!(st.success(), "pip install {packages:?} failed");
    }
    venv
}

/// The traffic planted in other gateways' logs, round by round: 8 accounts
/// harvesting on one step-by-step system prompt (`harvest-0`…`7`), and
/// honest users now and then. Each item: (account, system prompt, question).
pub(crate) type Call = (String, Option<&'static str>, String);

pub(crate) fn planted_rounds() -> Vec<Vec<Call>> {
    let system =
        "You are a meticulous tutor. Always reason step by step and show every intermediate step.";
    let honest = [
        "What's a good name for a bakery?",
        "How do I center a div in CSS?",
        "Write a haiku about autumn rain.",
        "Translate good morning into Spanish.",
    ];
    (0..30)
        .map(|round| {
            let mut calls: Vec<Call> = (0..8)
                .map(|a| {
                    let q = format!(
                        "Problem {round}: a train covers {} km in {} minutes. Average speed in km/h? Explain step by step.",
                        37 * round + a,
                        13 + a
                    );
                    (format!("harvest-{a}"), Some(system), q)
                })
                .collect();
            for u in 0..10 {
                if (round + u) % 7 == 0 {
                    calls.push((format!("user-{u}"), None, honest[(round + u) % 4].to_string()));
                }
            }
            calls
        })
        .collect()
}

/// Asserts that a JSON report flags exactly the planted `harvest-0`…`7`.
pub(crate) fn assert_flags_the_planted_harvest(v: &serde_json::Value) {
    let flagged: std::collections::BTreeSet<&str> = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["verdict"] != "allow")
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    let planted: std::collections::BTreeSet<String> =
        (0..8).map(|i| format!("harvest-{i}")).collect();
    assert_eq!(
        flagged,
        planted
            .iter()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>()
    );
}

/// The simulated organisation (seed 12, 45 days, scale 0.3) analysed by
/// `exfil analyze` into `d`; returns the report's path.
pub(crate) fn exfil_report(d: &Dir) -> PathBuf {
    let report = d.path("exfil-report.json");
    exfil_simulated(&d.0, "12", "0.3", &report);
    report
}

/// `exfil simulate` of an organisation (`seed`, 45 days, `scale`) into
/// `dir`, then `exfil analyze` of its log as JSON into `report`.
pub(crate) fn exfil_simulated(dir: &Path, seed: &str, scale: &str, report: &Path) {
    let s = dir.to_str().unwrap();
    ok(&[
        "exfil", "simulate", "--seed", seed, "--days", "45", "--scale", scale, "--out", s,
    ]);
    ok(&[
        "exfil",
        "analyze",
        &format!("{s}/cloudtrail.jsonl.gz"),
        "--assets",
        &format!("{s}/assets.toml"),
        "--format",
        "json",
        "--out",
        report.to_str().unwrap(),
    ]);
}

/// The official OpenTelemetry Python SDK and its OTLP/HTTP (protobuf)
/// exporter, pinned as `.ci/run` installs them.
pub(crate) const OTEL_PACKAGES: [&str; 2] = [
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
];
