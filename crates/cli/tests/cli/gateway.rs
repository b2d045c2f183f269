//! `keys` and `serve`: the gateway as a process, with the official SDKs,
//! its access log, SIGTERM and SIGKILL, restarts, connection caps and the
//! internal listener.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use crate::support::*;

#[test]
fn keys_are_shown_once_listed_without_secrets_and_revoked() {
    let d = Dir::new("keys");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let out = dg(&[
        "keys",
        "create",
        "--account",
        "acct_9",
        "--tier",
        "tier2",
        "--db",
        db,
    ]);
    assert!(out.status.success());
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(key.starts_with("dg_"), "{key}");
    let id = key.split('_').nth(1).unwrap().to_string();
    let list = ok(&["keys", "list", "--format", "json", "--db", db]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["tier"], "tier2");
    assert!(
        !list.contains(key.rsplit('_').next().unwrap()),
        "the secret was listed"
    );
    ok(&[
        "keys",
        "revoke",
        &id,
        "--db",
        db,
        "--reason",
        "left the company",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["keys", "list", "--format", "json", "--db", db])).unwrap();
    assert_eq!(v[0]["revoked"], true);
    // The table shows when, in RFC 3339 (not epoch seconds), and the JSON
    // keeps both.
    let created = v[0]["created_at"].as_str().unwrap().to_string();
    assert!(
        created.starts_with("20") && created.ends_with('Z'),
        "{created}"
    );
    let table = ok(&["keys", "list", "--db", db]);
    let row = table.lines().nth(1).unwrap();
    assert!(row.contains(&created), "{table}");
    assert!(!row.contains(&v[0]["created"].to_string()), "{table}");
    // Both actions are in the audit log, newest first, with who and why;
    // no secret is.
    let audit = ok(&["keys", "audit", "--format", "json", "--db", db]);
    let v: serde_json::Value = serde_json::from_str(&audit).unwrap();
    assert_eq!(v[0]["action"], "key.revoke", "{audit}");
    assert_eq!(v[0]["target"], id.as_str());
    assert_eq!(v[0]["detail"], "left the company");
    assert_eq!(v[1]["action"], "key.create");
    assert!(
        v[1]["actor"].as_str().unwrap().starts_with("cli:"),
        "{audit}"
    );
    assert!(!audit.contains(key.rsplit('_').next().unwrap()));
    let table = ok(&["keys", "audit", "--db", db]);
    assert!(
        table.lines().count() >= 3 && table.contains("key.revoke"),
        "{table}"
    );
    // A tier that is not built in is accepted with a note (the gateway's
    // [limits.tiers] may define it); a malformed name is refused.
    let custom = dg(&[
        "keys",
        "create",
        "--account",
        "a",
        "--tier",
        "platinum",
        "--db",
        db,
    ]);
    assert!(custom.status.success());
    assert!(String::from_utf8_lossy(&custom.stderr).contains("[limits.tiers.platinum]"));
    let bad = dg(&[
        "keys",
        "create",
        "--account",
        "a",
        "--tier",
        "tier 9!",
        "--db",
        db,
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tier \"tier 9!\""));
    // An empty account is refused; listing a store that does not exist is
    // an error and creates nothing.
    let empty = dg(&["keys", "create", "--account", "", "--db", db]);
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("--account \"\""));
    let missing = d.path("missing.db");
    let out = dg(&["keys", "list", "--db", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    assert!(!missing.exists());
    // An admin token: printed once; the config line with its hash on stderr.
    let t = dg(&["keys", "admin-token"]);
    assert!(t.status.success());
    let token = String::from_utf8_lossy(&t.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&t.stderr).to_string();
    assert!(
        token.starts_with("dgadmin_") && token.len() == 40,
        "{token}"
    );
    assert!(
        err.contains(&format!(
            "token_sha256 = \"{}\"",
            distillguard_storage::sha256_hex(&token)
        )),
        "{err}"
    );
    assert!(!err.contains(&token));
}

#[test]
fn the_official_sdks_work_through_the_gateway_and_get_the_right_errors() {
    let bin = py_venv();
    let d = Dir::new("sdk");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let key_for = |account: &str, tier: &str| create_key(db, account, tier);
    let key = key_for("acct_sdk", "tier2");
    let free = key_for("acct_free", "free");
    let revoked = key_for("acct_gone", "tier1");
    let batchkey = key_for("acct_batch", "tier2");
    ok(&[
        "keys",
        "revoke",
        revoked.split('_').nth(1).unwrap(),
        "--db",
        db,
    ]);
    let (mut mock, up) = start_mock(&["--reasoning"]);
    let both = ["openai", "anthropic"];
    let config = |name: &str, extra: &str| {
        let head = format!("max_body_bytes = 100000\nkeys_db = \"{db}\"\n{extra}");
        gateway_config(&d, name, &up, &both, &head)
    };
    let (mut normal, gw) = start_gateway(&config("normal.toml", ""));
    let (mut blocking, bgw) = start_gateway(&config(
        "blocking.toml",
        "[detect]\nthresholds = { monitor = 0.0, throttle = 0.0, block = 0.0, min_requests = 1 }",
    ));
    let (mut faulty_mock, fup) = start_mock(&["--fault", "reset"]);
    let faulty_cfg = gateway_config(
        &d,
        "faulty.toml",
        &fup,
        &both,
        &format!("keys_db = \"{db}\""),
    );
    let (mut faulty, fgw) = start_gateway(&faulty_cfg);
    let out = Command::new(bin.join("python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/clients.py"))
        .env("GATEWAY", &gw)
        .env("BLOCKING", &bgw)
        .env("FAULTY", &fgw)
        .env("KEY", &key)
        .env("FREE", &free)
        .env("REVOKED", &revoked)
        .env("BATCHKEY", &batchkey)
        .output()
        .unwrap();
    for c in [
        &mut normal,
        &mut blocking,
        &mut mock,
        &mut faulty,
        &mut faulty_mock,
    ] {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// The issue-11 target: one key harvesting through the gateway with the
/// official SDK is blocked within 100 requests, with the default weights
/// and thresholds, both when it asks for reasoning in a system prompt at
/// fixed settings and when it scrapes log-probabilities and samples.
/// Issue 11's gateway target. Not met by the shipped model: the shapes
/// reach risk 0.66–0.82 (monitor is 0.843, throttle 0.9919), because
/// honest chain-of-thought benchmark harnesses and coding agents in the
/// training worlds are as fast, as regular and as fixed in their settings
/// (docs/detection.md, "What is not met"). Run it with `--ignored`.
#[test]
#[ignore = "issue 11 target not met yet: see docs/detection.md"]
fn the_gateway_blocks_a_single_harvesting_key_within_100_requests() {
    let bin = py_venv();
    let d = Dir::new("harvest");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let (mut mock, up) = start_mock(&["--reasoning"]);
    let cfg = gateway_config(
        &d,
        "gw.toml",
        &up,
        &["openai"],
        &format!("max_body_bytes = 100000\nkeys_db = \"{db}\""),
    );
    let (mut gw, url) = start_gateway(&cfg);
    let mut blocked_at = Vec::new();
    for (account, shape) in [("acct_cot", "system"), ("acct_scrape", "scraper")] {
        let key = ok(&[
            "keys",
            "create",
            "--account",
            account,
            "--tier",
            "tier4",
            "--db",
            db,
        ])
        .trim()
        .to_string();
        let out = Command::new(bin.join("python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/harvest.py"))
            .env("GATEWAY", &url)
            .env("KEY", &key)
            .env("SHAPE", shape)
            .env("LIMIT", "150")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        blocked_at.push((
            shape,
            said.parse::<u32>().ok(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        ));
    }
    for c in [&mut gw, &mut mock] {
        let _ = c.kill();
        let _ = c.wait();
    }
    for (shape, at, err) in blocked_at {
        let n = at.unwrap_or_else(|| panic!("{shape}: never blocked in 150 requests\n{err}"));
        assert!(n <= 100, "{shape}: first refused at request {n}");
    }
}

#[test]
fn the_gateway_finishes_in_flight_streams_on_sigterm_and_flushes_its_log() {
    use std::io::{Read, Write};
    let d = Dir::new("shutdown");
    // 60 chunks 50 ms apart: about three seconds of streaming.
    let (mut mock, up) = start_mock(&["--chunk-ms", "50"]);
    let log = d.path("events.jsonl");
    let cfg = gateway_config(
        &d,
        "gateway.toml",
        &up,
        &["openai"],
        &format!("[log]\npath = \"{}\"", log.display()),
    );
    let (gw, url) = start_gateway(&cfg);
    let addr = url.trim_start_matches("http://").to_string();
    let body = r#"{"model":"atlas-3","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"Explain TCP"}]}"#;
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The answer has started…
    let mut first = [0u8; 64];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    // …when the gateway is told to stop.
    terminate(&gw);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("[DONE]"), "the stream was cut: {rest}");
    let _ = mock.kill();
    let _ = mock.wait();
    wait_clean_exit(gw);
    // The request reached the event log before the process ended.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let e = distillguard_core::parse_event_line(text.lines().next().unwrap()).unwrap();
    assert!(e.response.unwrap().output_tokens.unwrap() >= 32);
    // Without keys, the client's address (the TCP peer here) is the account.
    assert_eq!(e.account_id, "ip:127.0.0.1");
    assert_eq!(e.client.ip.as_deref(), Some("127.0.0.1"));
}

#[test]
fn the_gateway_writes_an_access_line_per_request_without_secrets_or_prompts() {
    let d = Dir::new("access");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let key = ok(&["keys", "create", "--account", "acct_log", "--db", db])
        .trim()
        .to_string();
    let (mut mock, up) = start_mock(&[]);
    let cfg = gateway_config(
        &d,
        "gw.toml",
        &up,
        &["openai"],
        &format!("keys_db = \"{db}\""),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    let prompt = "zebra-quartz-prompt-text";
    let body = format!(
        r#"{{"model":"atlas-3","max_tokens":5,"messages":[{{"role":"user","content":"{prompt}"}}]}}"#
    );
    let (st, head, _) = http_full(
        "POST",
        &url,
        "/v1/chat/completions",
        &body,
        &format!("Authorization: Bearer {key}\r\n"),
    );
    assert_eq!(st, 200);
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("no x-request-id header")
        .trim()
        .to_string();
    let (st, head, _) = http_full("POST", &url, "/v1/chat/completions", &body, "");
    assert_eq!(st, 401);
    assert!(head.contains("x-request-id: req_"), "{head}");
    terminate(&child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success());
    mock.kill().unwrap();
    let _ = mock.wait();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|v| v["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no access line for {id}: {err}"));
    assert_eq!(access["status"], 200);
    assert_eq!(access["account"], "acct_log");
    assert_eq!(access["path"], "/v1/chat/completions");
    assert_eq!(access["client"], "127.0.0.1");
    assert!(access["key_id"].as_str().is_some_and(|k| key.contains(k)));
    assert!(lines.iter().any(|v| v["status"] == 401));
    assert!(
        lines
            .iter()
            .any(|v| v["message"] == "gateway stopped: every request in flight finished")
    );
    // Never the key's secret, never the prompt.
    let secret = key.rsplit('_').next().unwrap();
    assert!(!err.contains(secret), "{err}");
    assert!(!err.contains(prompt), "{err}");
}

/// Requests answered in full (status 200 and the whole JSON body) while a
/// gateway with an event log in `durability` mode is killed with SIGKILL
/// under load, and the ids found in its log afterwards. The kill comes
/// once 200 requests were answered (or after 30 s), not after a fixed
/// time: a busy machine answers fewer in any fixed window.
fn kill9_under_load(d: &Dir, up: &str, durability: &str) -> (Vec<String>, Vec<String>) {
    let log = d.path(&format!("events-{durability}.jsonl"));
    let cfg = gateway_config(
        d,
        &format!("gw-{durability}.toml"),
        up,
        &["openai"],
        &format!(
            "[detect]\nenabled = false\n[log]\npath = \"{}\"\ndurability = \"{durability}\"",
            log.display()
        ),
    );
    let (mut gw, url) = start_gateway(&cfg);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (url, stop) = (url.clone(), std::sync::Arc::clone(&stop));
            let answered = std::sync::Arc::clone(&answered);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for n in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("req-{t}-{n}");
                    let body = format!(
                        r#"{{"model":"atlas-3","max_tokens":5,"messages":[{{"role":"user","content":"{id}"}}]}}"#
                    );
                    let host = url.trim_start_matches("http://");
                    let Ok(mut s) = std::net::TcpStream::connect(host) else {
                        break;
                    };
                    let sent = write!(
                        s,
                        "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let mut resp = String::new();
                    if sent.is_err() || s.read_to_string(&mut resp).is_err() {
                        break;
                    }
                    let whole = resp.starts_with("HTTP/1.1 200")
                        && resp
                            .split_once("\r\n\r\n")
                            .is_some_and(|(_, b)| serde_json::from_str::<serde_json::Value>(b).is_ok());
                    if !whole {
                        break;
                    }
                    acked.push(id);
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                acked
            })
        })
        .collect();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 200
        && std::time::Instant::now() < until
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    gw.kill().unwrap();
    let _ = gw.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let logged: Vec<String> = text
        .lines()
        .filter_map(|l| distillguard_core::parse_event_line(l).ok())
        .map(|e| e.request.last_user_text)
        .collect();
    (acked, logged)
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_request_in_sync_mode() {
    let d = Dir::new("kill9");
    let (mut mock, up) = start_mock(&[]);
    let (acked, logged) = kill9_under_load(&d, &up, "sync");
    let logged: std::collections::HashSet<&String> = logged.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !logged.contains(id)).collect();
    assert!(
        acked.len() > 50,
        "too little load to judge: {}",
        acked.len()
    );
    eprintln!("sync mode: 0 of {} answered requests lost", acked.len());
    assert!(
        lost.is_empty(),
        "{} of {} answered requests are not in the log: {lost:?}",
        lost.len(),
        acked.len()
    );
    // The interval mode, for the record (its loss is bounded by the
    // writer's interval, not zero).
    let (acked, logged) = kill9_under_load(&d, &up, "interval");
    let logged: std::collections::HashSet<&String> = logged.iter().collect();
    let lost = acked.iter().filter(|id| !logged.contains(id)).count();
    eprintln!(
        "interval mode: {lost} of {} answered requests lost",
        acked.len()
    );
    mock.kill().unwrap();
    let _ = mock.wait();
}

#[test]
fn a_blocked_account_stays_blocked_across_a_gateway_restart() {
    let d = Dir::new("restart");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let key = ok(&[
        "keys",
        "create",
        "--account",
        "acct_r",
        "--tier",
        "tier2",
        "--db",
        db,
    ])
    .trim()
    .to_string();
    let token = dg(&["keys", "admin-token"]);
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let (mut mock, up) = start_mock(&[]);
    let config = |name: &str, extra: &str| {
        let head = format!(
            "keys_db = \"{db}\"\n[admin]\ntoken_sha256 = \"{}\"\n{extra}",
            distillguard_storage::sha256_hex(&token)
        );
        gateway_config(&d, name, &up, &["openai"], &head)
    };
    let auth = format!("Authorization: Bearer {key}\r\n");
    let chat = r#"{"model":"atlas-3","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    // First life: the detector blocks at once.
    let (gw, url) = start_gateway(&config(
        "blocking.toml",
        "[detect]\nthresholds = { monitor = 0.0, throttle = 0.0, block = 0.0, min_requests = 1 }",
    ));
    let mut blocked = false;
    for _ in 0..100 {
        if http("POST", &url, "/v1/chat/completions", chat, &auth).0 == 403 {
            blocked = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(blocked);
    stop(gw);
    // Second life, with the embedded thresholds, which would not block one
    // request: the saved verdict still does.
    let (gw, url) = start_gateway(&config("normal.toml", ""));
    let (st, body) = http("POST", &url, "/v1/chat/completions", chat, &auth);
    assert_eq!(st, 403, "{body}");
    // An operator's allowlisting lifts it.
    let admin = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(
        http("PUT", &url, "/admin/allowlist/acct_r", "", &admin).0,
        200
    );
    assert_eq!(
        http("POST", &url, "/v1/chat/completions", chat, &auth).0,
        200
    );
    stop(gw);
    let _ = mock.kill();
    let _ = mock.wait();
}

#[test]
fn the_gateway_caps_open_connections() {
    use std::io::{Read, Write};
    let d = Dir::new("conncap");
    let (mut mock, up) = start_mock(&[]);
    let cfg = gateway_config(&d, "gateway.toml", &up, &["openai"], "max_connections = 2");
    let (gw, url) = start_gateway(&cfg);
    let addr = url.trim_start_matches("http://").to_string();
    // Two idle clients take both places.
    let idle1 = std::net::TcpStream::connect(&addr).unwrap();
    let _idle2 = std::net::TcpStream::connect(&addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // A third is connected by the kernel but not served…
    let mut third = std::net::TcpStream::connect(&addr).unwrap();
    third
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    write!(
        third,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 256];
    assert!(third.read(&mut buf).is_err(), "served beyond the cap");
    // …until a place frees up.
    drop(idle1);
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut resp = String::new();
    third.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (_, metrics) = http("GET", &url, "/metrics", "", "");
    assert!(
        metrics.contains("distillguard_connections_max 2"),
        "{metrics}"
    );
    stop(gw);
    let _ = mock.kill();
    let _ = mock.wait();
}

#[test]
fn metrics_and_admin_can_live_on_an_internal_address_only() {
    let d = Dir::new("internal");
    let (mut mock, up) = start_mock(&[]);
    let token = "dgadmin_internal";
    let head = format!(
        "internal_listen = \"127.0.0.1:0\"\n[admin]\ntoken_sha256 = \"{}\"",
        distillguard_storage::sha256_hex(token)
    );
    let cfg = gateway_config(&d, "gateway.toml", &up, &["openai"], &head);
    let (gw, urls) = start_gateway_urls(&cfg, 2);
    let (public, internal) = (&urls[0], &urls[1]);
    let chat = r#"{"model":"atlas-3","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(http_post(public, "/v1/chat/completions", chat).0, 200);
    // Not on the public address…
    assert_eq!(http("GET", public, "/metrics", "", "").0, 404);
    let auth = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(http("GET", public, "/admin/overrides", "", &auth).0, 404);
    // …but on the internal one, which serves no API.
    let (st, metrics) = http("GET", internal, "/metrics", "", "");
    assert_eq!(st, 200);
    assert!(
        metrics.contains("distillguard_requests_total{api=\"openai\",code=\"200\"} 1"),
        "{metrics}"
    );
    assert_eq!(http("GET", internal, "/admin/overrides", "", &auth).0, 200);
    assert_eq!(http_post(internal, "/v1/chat/completions", chat).0, 404);
    assert_eq!(http("GET", internal, "/healthz", "", "").0, 200);
    // One SIGTERM stops both.
    stop(gw);
    let _ = mock.kill();
    let _ = mock.wait();
}
