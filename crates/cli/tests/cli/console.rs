//! The analyst's console, offline and live: its API, Chromium rendering,
//! and actions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// Playwright's Python package, for the console's browser tests (it drives
/// Debian's chromium; no browser is downloaded). CI fills the venv first.
const PLAYWRIGHT: &str = "playwright==1.65.2";

/// A venv with [`PLAYWRIGHT`]; returns its `bin` folder.
fn console_venv() -> PathBuf {
    venv_with("console-venv", "playwright.sync_api", &[PLAYWRIGHT]).join("bin")
}

/// Where the browser tests leave their screenshots (docs/console.md shows
/// copies: `DG_UPDATE_SCREENSHOTS=1` writes them into docs/console).
fn screenshot_dir() -> PathBuf {
    let p = if std::env::var_os("DG_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-shots")
    };
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Runs the browser script; panics with its output unless it says "ok".
fn run_browser(envs: &[(&str, String)]) {
    let bin = console_venv();
    let out = Command::new(bin.join("python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.py"))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SHOTS", screenshot_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `distillguard console` on a report (`extra`: more arguments);
/// returns it and its URL.
fn start_console(report: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let mut args = vec![
        "console",
        report.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    spawn_with_url(&args)
}

fn get_json(url: &str, path: &str) -> serde_json::Value {
    let (status, body) = http("GET", url.trim_end_matches('/'), path, "", "");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// `small` seed 31 simulated into `d` and analysed with `--timeline`;
/// returns the simulation's folder and the report's path.
fn small_report_with_timelines(d: &Dir) -> (PathBuf, PathBuf) {
    let out = simulate_small(d, "s", 31);
    let report = d.path("report.json");
    ok(&[
        "analyze",
        out.join("events.jsonl.gz").to_str().unwrap(),
        "--accounts",
        out.join("accounts.jsonl").to_str().unwrap(),
        "--models",
        out.join("models.jsonl").to_str().unwrap(),
        "--timeline",
        "--format",
        "json",
        "--quiet",
        "--out",
        report.to_str().unwrap(),
    ]);
    (out, report)
}

#[test]
fn the_console_serves_a_report_with_paged_filtered_lists_and_named_errors() {
    let d = Dir::new("console-api");
    let (_, report) = small_report_with_timelines(&d);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let (mut c, url) = start_console(&report, &[]);
    let u = url.trim_end_matches('/');
    // The page and its assets, from the binary, with a strict policy.
    let (status, head, page) = http_full("GET", u, "/", "", "");
    assert_eq!(status, 200);
    assert!(
        page.contains("app.js") && !page.contains("http"),
        "no CDN: {page}"
    );
    assert!(head.contains("default-src 'self'"), "{head}");
    for asset in ["/app.js", "/app.css"] {
        assert_eq!(http("GET", u, asset, "", "").0, 200, "{asset}");
    }
    // The overview counts what the report holds.
    let o = get_json(u, "/api/overview");
    let blocked = r["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["verdict"] == "block")
        .count() as u64;
    assert_eq!(o["verdicts"]["block"], blocked);
    assert_eq!(
        o["campaign_count"],
        r["campaigns"].as_array().unwrap().len()
    );
    assert_eq!(o["histogram"]["counts"].as_array().unwrap().len(), 50);
    let hist: u64 = o["histogram"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(
        hist,
        r["stats"]["accounts"].as_u64().unwrap(),
        "every account"
    );
    assert!(o["thresholds"]["throttle"].as_f64().unwrap() > 0.5);
    // Lists page on the server, sort and filter.
    let page1 = get_json(u, "/api/accounts?limit=7&sort=risk");
    assert_eq!(page1["items"].as_array().unwrap().len(), 7);
    assert_eq!(page1["total"], r["accounts"].as_array().unwrap().len());
    let risks: Vec<f64> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["risk"].as_f64().unwrap())
        .collect();
    assert!(risks.windows(2).all(|w| w[0] >= w[1]), "{risks:?}");
    let page2 = get_json(u, "/api/accounts?limit=7&offset=7&sort=risk");
    assert_ne!(page1["items"][0], page2["items"][0]);
    let camp = r["campaigns"][0]["campaign_id"].as_str().unwrap();
    let members = get_json(u, &format!("/api/accounts?campaign={camp}&limit=500"));
    let in_report = r["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["campaign_id"] == camp)
        .count();
    assert_eq!(members["total"], in_report);
    // An indicator finds the accounts that carry it.
    let ind = r["campaigns"][0]["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| !i["members"].as_array().unwrap().is_empty())
        .unwrap();
    let value = ind["value"].as_str().unwrap();
    let found = get_json(
        u,
        &format!(
            "/api/accounts?limit=500&q={}",
            value.replace('/', "%2F").replace(' ', "%20")
        ),
    );
    let ids: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    let accounts = r["campaigns"][0]["accounts"].as_array().unwrap();
    for m in ind["members"].as_array().unwrap() {
        let id = accounts[m.as_u64().unwrap() as usize].as_str().unwrap();
        assert!(ids.contains(&id), "{id} carries {value}");
    }
    // The campaign page: a graph whose links point at real nodes.
    let cp = get_json(u, &format!("/api/campaigns/{camp}"));
    let nodes: BTreeSet<&str> = cp["graph"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let edges = cp["graph"]["edges"].as_array().unwrap();
    assert!(!edges.is_empty());
    for e in edges {
        assert!(nodes.contains(e[0].as_str().unwrap()) && nodes.contains(e[1].as_str().unwrap()));
    }
    assert!(cp["activity"]["members_with_timeline"].as_u64().unwrap() > 0);
    // An account's page has its timeline: escalations in time order, the
    // last one the verdict in force.
    let aid = r["accounts"][0]["account_id"].as_str().unwrap();
    let ap = get_json(u, &format!("/api/accounts/{aid}"));
    let esc = ap["account"]["timeline"]["escalations"].as_array().unwrap();
    assert!(!esc.is_empty());
    assert_eq!(esc.last().unwrap()["verdict"], ap["account"]["verdict"]);
    // STIX of one campaign.
    let (status, head, stix) = http_full("GET", u, &format!("/api/campaigns/{camp}/stix"), "", "");
    assert_eq!(status, 200);
    assert!(
        head.to_lowercase()
            .contains("content-disposition: attachment")
    );
    assert!(
        stix.contains("\"type\":\"campaign\""),
        "{}",
        &stix[..stix.len().min(300)]
    );
    // Bad input is named; unknown ids are 404; an offline console refuses actions.
    let (status, body) = http("GET", u, "/api/accounts?verdict=bogus", "", "");
    assert_eq!(status, 400);
    assert!(body.contains("verdict"), "{body}");
    let (status, body) = http("GET", u, "/api/accounts?limit=ten", "", "");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http("GET", u, "/api/campaigns?sort=colour", "", "");
    assert_eq!(status, 400);
    assert!(body.contains("sort"), "{body}");
    assert_eq!(http("GET", u, "/api/accounts/nobody", "", "").0, 404);
    let (status, body) = http_post(
        u,
        "/api/actions",
        r#"{"target":"account","id":"x","decision":"block","reason":"r"}"#,
    );
    assert_eq!(status, 403, "{body}");
    let _ = c.kill();
    let _ = c.wait();
}

/// Issue 17: an exfiltration report is shown beside the campaigns: its
/// principals listed, filtered and sorted, each with its alerts.
#[test]
fn the_console_shows_exfiltration_alerts_beside_the_campaigns() {
    let d = Dir::new("console-exfil");
    let (_, report) = small_report_with_timelines(&d);
    let x = exfil_report(&d);
    let xr: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&x).unwrap()).unwrap();
    let principals = xr["principals"].as_array().unwrap();
    let flagged: Vec<&serde_json::Value> = principals
        .iter()
        .filter(|p| !p["flagged_at"].is_null())
        .collect();
    assert!(!flagged.is_empty());
    // Without --exfil there is no such page.
    let (mut plain, purl) = start_console(&report, &[]);
    let (status, body) = http("GET", purl.trim_end_matches('/'), "/api/exfil", "", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("--exfil"), "{body}");
    assert_eq!(get_json(&purl, "/api/session")["exfil"], false);
    let _ = plain.kill();
    let _ = plain.wait();

    let (mut c, url) = start_console(&report, &["--exfil", x.to_str().unwrap()]);
    let u = url.trim_end_matches('/');
    assert_eq!(get_json(u, "/api/session")["exfil"], true);
    let o = get_json(u, "/api/overview");
    assert_eq!(o["exfil"]["flagged"], flagged.len());
    assert_eq!(o["exfil"]["with_alerts"], principals.len());
    assert_eq!(o["exfil"]["principal_days"], xr["stats"]["principal_days"]);
    // The campaigns are still there beside it.
    assert!(o["campaign_count"].as_u64().unwrap() > 0);
    let list = get_json(u, "/api/exfil?flagged=yes&limit=500");
    assert_eq!(list["total"], flagged.len());
    let listed: BTreeSet<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["principal"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = flagged
        .iter()
        .map(|p| p["principal"].as_str().unwrap())
        .collect();
    assert_eq!(listed, expected);
    // Sorted by score, highest first; by sensitive bytes ascending on request.
    let scores: Vec<f64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let by_bytes = get_json(u, "/api/exfil?sort=bytes&order=asc&limit=500");
    let bytes: Vec<u64> = by_bytes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sensitive_bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(bytes.len(), principals.len());
    assert!(bytes.windows(2).all(|w| w[0] <= w[1]));
    // A signal filter keeps exactly the principals with such an alert.
    let signal = flagged[0]["alerts"][0]["signal"].as_str().unwrap();
    let with_signal = principals
        .iter()
        .filter(|p| {
            p["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["signal"] == signal)
        })
        .count();
    let f = get_json(u, &format!("/api/exfil?signal={signal}&limit=500"));
    assert_eq!(f["total"], with_signal);
    // One principal's page holds every alert the report kept.
    let first = flagged[0]["principal"].as_str().unwrap();
    let page = get_json(
        u,
        &format!(
            "/api/exfil/{}",
            first.replace('/', "%2F").replace(':', "%3A")
        ),
    );
    assert_eq!(page["alerts"], flagged[0]["alerts"]);
    assert_eq!(page["flagged_at"], flagged[0]["flagged_at"]);
    // Named errors.
    let (status, body) = http("GET", u, "/api/exfil?flagged=maybe", "", "");
    assert_eq!(status, 400);
    assert!(body.contains("flagged"), "{body}");
    let (status, body) = http("GET", u, "/api/exfil?sort=volume", "", "");
    assert_eq!(status, 400);
    assert!(body.contains("score, flagged_at, bytes, id"), "{body}");
    assert_eq!(http("GET", u, "/api/exfil/nobody", "", "").0, 404);
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn the_console_renders_in_chromium_with_charts_graph_and_timeline() {
    let d = Dir::new("console-browser");
    let (out, report) = small_report_with_timelines(&d);
    let log = out.join("events.jsonl.gz");
    let x = exfil_report(&d);
    let (mut c, url) = start_console(
        &report,
        &[
            "--events",
            log.to_str().unwrap(),
            "--exfil",
            x.to_str().unwrap(),
        ],
    );
    let u = url.trim_end_matches('/');
    let xl = get_json(u, "/api/exfil?flagged=yes&limit=500");
    let principal = xl["items"][0]["principal"].as_str().unwrap().to_string();
    let alerts = get_json(
        u,
        &format!(
            "/api/exfil/{}",
            principal.replace('/', "%2F").replace(':', "%3A")
        ),
    )["alerts"]
        .as_array()
        .unwrap()
        .len();
    let camps = get_json(u, "/api/campaigns?limit=1");
    let camp = camps["items"][0]["campaign_id"]
        .as_str()
        .unwrap()
        .to_string();
    let cp = get_json(u, &format!("/api/campaigns/{camp}"));
    let nodes = cp["graph"]["nodes"].as_array().unwrap().len();
    // The log's windows: every member request of the campaign in one.
    let windows = cp["activity"]["windows"].as_array().unwrap();
    let in_windows: u64 = windows
        .iter()
        .map(|w| w["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(in_windows, cp["summary"]["requests"].as_u64().unwrap());
    assert!(windows.iter().all(|w| w["members"].as_u64().unwrap() >= 1));
    let accts = get_json(u, "/api/accounts?limit=1&verdict=block");
    let account = accts["items"][0]["account_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ap = get_json(u, &format!("/api/accounts/{account}"));
    let escalations = ap["account"]["timeline"]["escalations"]
        .as_array()
        .unwrap()
        .len();
    run_browser(&[
        ("MODE", "offline".into()),
        ("URL", url.clone()),
        ("CAMPAIGN", camp),
        ("NODES", nodes.to_string()),
        ("ACCOUNT", account),
        ("ESCALATIONS", escalations.to_string()),
        ("WINDOWS", windows.len().to_string()),
        ("FLAGGED", xl["total"].to_string()),
        ("PRINCIPAL", principal),
        ("ALERTS", alerts.to_string()),
    ]);
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn blocking_in_the_live_console_stops_the_account_and_lifting_it_serves_it_again() {
    let d = Dir::new("console-live");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let key = create_key(db, "acct_console", "tier2");
    let token = String::from_utf8(dg(&["keys", "admin-token"]).stdout).unwrap();
    let token = token.trim().to_string();
    let (mut mock, up) = start_mock(&[]);
    let cfg = gateway_config(
        &d,
        "gw.toml",
        &up,
        &["openai"],
        &format!(
            "keys_db = \"{db}\"\ninternal_listen = \"127.0.0.1:0\"\n[admin]\ntoken_sha256 = \"{}\"\n",
            distillguard_storage::sha256_hex(&token)
        ),
    );
    let (mut gw, urls) = start_gateway_urls(&cfg, 2);
    let (public, internal) = (urls[0].clone(), urls[1].clone());
    // Without a session, the data is refused; `/ui` leads to `/ui/`.
    let (status, _) = http("GET", &internal, "/ui/api/overview", "", "");
    assert_eq!(status, 401);
    let (status, head, _) = http_full("GET", &internal, "/ui", "", "");
    assert_eq!(status, 308, "{head}");
    assert!(head.contains("/ui/"), "{head}");
    // The console is only on the internal listener.
    assert_eq!(http("GET", &public, "/ui/", "", "").0, 404);
    run_browser(&[
        ("MODE", "live".into()),
        ("URL", format!("{internal}/ui/")),
        ("TOKEN", token.clone()),
        ("ACCOUNT", "acct_console".into()),
        ("GATEWAY", public.clone()),
        ("KEY", key.clone()),
    ]);
    // A decision on one key stops that key, not the account's other keys.
    let other = create_key(db, "acct_console", "tier2");
    let (status, head, body) = http_full(
        "POST",
        &internal,
        "/ui/api/login",
        &format!(r#"{{"token":"{token}"}}"#),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    assert!(head.to_lowercase().contains("httponly"), "{head}");
    let csrf = serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let key_id = key.split('_').nth(1).unwrap();
    let act = |decision: &str, csrf: &str| {
        http(
            "POST",
            &internal,
            "/ui/api/actions",
            &format!(
                r#"{{"target":"key","id":"{key_id}","decision":"{decision}","reason":"one key harvests"}}"#
            ),
            &format!("Cookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\n"),
        )
    };
    assert_eq!(
        act("block", "wrong").0,
        403,
        "a wrong CSRF token is refused"
    );
    let (status, body) = act("block", &csrf);
    assert_eq!(status, 200, "{body}");
    let chat = |k: &str| {
        http(
            "POST",
            &public,
            "/v1/chat/completions",
            r#"{"model":"atlas-3","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
            &format!("Authorization: Bearer {k}\r\n"),
        )
        .0
    };
    assert_eq!(chat(&key), 403);
    assert_eq!(chat(&other), 200);
    assert_eq!(act("clear", &csrf).0, 200);
    assert_eq!(chat(&key), 200);
    for c in [&mut gw, &mut mock] {
        let _ = c.kill();
        let _ = c.wait();
    }
}
