//! Gateways and detector workers on NATS JetStream, Redis and PostgreSQL.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use crate::support::*;

/// A NATS server with JetStream keeping its streams in `dir` (so that a
/// restart keeps them).
fn nats_server(port: u16, dir: &Path) -> Server {
    let which = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nats-server");
    let child = Command::new(which)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server (.ci/run installs it)");
    listening(port);
    Server(child)
}

fn redis_server(port: u16) -> Server {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (.ci/run installs it)");
    listening(port);
    Server(child)
}

/// A gauge or counter of a gateway's `/metrics`.
fn metric_of(url: &str, name: &str) -> f64 {
    let (_, page) = http("GET", url, "/metrics", "", "");
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Starts `distillguard detect` with `config`, as worker `name` on
/// `partitions`; returns the child.
fn start_worker(config: &Path, log: &Path, name: &str, partitions: &str) -> std::process::Child {
    start_worker_with(config, log, name, partitions, &[])
}

/// [`start_worker`] with more arguments.
fn start_worker_with(
    config: &Path,
    log: &Path,
    name: &str,
    partitions: &str,
    more: &[&str],
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args([
            "detect",
            "--config",
            config.to_str().unwrap(),
            "--name",
            name,
        ])
        .args(["--partitions", partitions])
        .args(["--idle-flush-ms", "300", "--checkpoint-ms", "200"])
        .args(more)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// A gateway of a test cluster (`name`): the store at `pg`, the admin
/// token, its own event log and spill file, a bulk tier, its own detection
/// off (`detection` is for the workers), then `cluster`: tables ending with
/// `[cluster.nats]`, to which the spill file is added.
fn cluster_gateway(
    d: &Dir,
    name: &str,
    up: &str,
    pg: &str,
    token: &str,
    detection: &str,
    cluster: &str,
) -> std::path::PathBuf {
    let head = format!(
        "keys_db = \"{pg}\"\ntrusted_proxies = [\"127.0.0.1\"]\n[admin]\ntoken_sha256 = \"{}\"\n\
         [log]\npath = \"{}\"\n[limits.tiers.bulk]\nrpm = 100000\ntpm = 100000000\n\
         [detect]\nenabled = false\n{detection}{cluster}spill = \"{}\"\n",
        distillguard_storage::sha256_hex(token),
        d.path(&format!("{name}.jsonl")).display(),
        d.path(&format!("{name}-spill.jsonl")).display(),
    );
    gateway_config(d, &format!("{name}.toml"), up, &["openai"], &head)
}

/// A scripted reasoning request (number `i`) through a gateway, as `key`
/// from `ip`: the status.
fn send_chat(gw: &str, key: &str, ip: &str, i: usize) -> u16 {
    let chat = format!(
        r#"{{"model":"atlas-3","max_tokens":20,"messages":[{{"role":"system","content":"You are a careful solver. Always show every step."}},{{"role":"user","content":"Solve step by step: what is {i} times {}? Explain your reasoning."}}]}}"#,
        i + 7
    );
    let h = format!(
        "Authorization: Bearer {key}\r\nX-Forwarded-For: {ip}\r\nUser-Agent: python-httpx/0.27\r\n"
    );
    http("POST", gw, "/v1/chat/completions", &chat, &h).0
}

/// An account's verdict as a gateway's admin API gives it.
fn admin_verdict(gw: &str, token: &str, account: &str) -> serde_json::Value {
    let admin = format!("Authorization: Bearer {token}\r\n");
    let (_, body) = http("GET", gw, &format!("/admin/accounts/{account}"), "", &admin);
    serde_json::from_str(&body).unwrap()
}

/// Waits until every gateway gives `accounts` the verdict `block` (else
/// fails with `log`), then sees each of their `keys` refused (403) by
/// every gateway.
fn blocked_everywhere(
    gws: &[String],
    token: &str,
    accounts: &[String],
    keys: &[String],
    log: &Path,
) {
    let blocked = within(30, || {
        gws.iter().all(|g| {
            accounts
                .iter()
                .all(|a| admin_verdict(g, token, a)["verdict"] == "block")
        })
    });
    assert!(
        blocked,
        "not blocked on both: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    for (i, k) in keys.iter().enumerate() {
        for g in gws {
            assert_eq!(send_chat(g, k, "198.51.100.7", 100 + i), 403);
        }
    }
}

/// Events folded, per the checkpoints in the store.
fn checkpointed(pg: &str, stream: &str) -> u64 {
    distillguard_storage::open(pg)
        .unwrap()
        .checkpoints(stream)
        .unwrap()
        .iter()
        .map(|c| c.events)
        .sum()
}

#[test]
fn a_cluster_shares_limits_and_verdicts_and_loses_no_event_to_a_kill_or_an_outage() {
    let d = Dir::new("cluster");
    let schema = distillguard_storage::testing::Schema::new()
        .expect("PostgreSQL at DATABASE_URL (.ci/run starts it)");
    let pg = schema.url();
    let (nats_port, redis_port) = (free_port(), free_port());
    let nats_dir = d.path("nats");
    let mut nats = Some(nats_server(nats_port, &nats_dir));
    let mut redis = Some(redis_server(redis_port));
    let key = |account: &str, tier: &str| create_key(&pg, account, tier);
    let hydra: Vec<String> = (0..4).map(|i| key(&format!("hydra_{i}"), "bulk")).collect();
    let honest = key("honest", "bulk");
    let limited = key("limited", "ten");
    let later: Vec<String> = (0..6).map(|i| key(&format!("later_{i}"), "bulk")).collect();
    let token = String::from_utf8(dg(&["keys", "admin-token"]).stdout).unwrap();
    let token = token.trim();
    let (mock, up) = start_mock(&[]);
    let _mock = Server(mock);
    // One cluster config; each gateway its own spill file and event log.
    let detection = "[detect.thresholds]\nmonitor = 0.0\nthrottle = 0.0\nblock = 1.0\nmin_requests = 1\n[link]\nlink_risk = 0.0\n";
    let cluster = format!(
        "[limits.tiers.ten]\nrpm = 10\ntpm = 100000000\n\
         [cluster]\nredis_url = \"redis://127.0.0.1:{redis_port}\"\nredis_timeout_ms = 200\n\
         [cluster.nats]\nurl = \"nats://127.0.0.1:{nats_port}\"\npartitions = 4\nack_timeout_ms = 500\nlinker = true\n"
    );
    let config = |name: &str| cluster_gateway(&d, name, &up, &pg, token, detection, &cluster);
    let (cfg_a, cfg_b) = (config("a"), config("b"));
    let (gw_a, urls_a) = start_gateway_urls(&cfg_a, 1);
    let (gw_b, urls_b) = start_gateway_urls(&cfg_b, 1);
    // Killed if the test fails half-way.
    let (gw_a, gw_b) = (Server(gw_a), Server(gw_b));
    let gws = [urls_a[0].clone(), urls_b[0].clone()];
    // Two workers, half the partitions each, and the cluster's linker.
    let worker_log = d.path("worker.log");
    let worker = Server(start_worker(&cfg_a, &worker_log, "w1", "0-1"));
    let w2 = Server(start_worker(&cfg_a, &d.path("w2.log"), "w2", "2-3"));
    let linker_log = d.path("linker.log");
    let linker = Server(start_linker(&cfg_a, &linker_log));
    let send = |gw: &str, key: &str, ip: &str, i: usize| send_chat(gw, key, ip, i);

    // 1. A per-key limit of 10 a minute holds across both gateways (one
    // more if the test outlasts the 6 s the rate frees a request in).
    let statuses: Vec<u16> = (0..30)
        .map(|i| send(&gws[i % 2], &limited, "203.0.113.9", i))
        .collect();
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!((10..=11).contains(&served), "{statuses:?}");

    // 2. A hydra of four accounts, its traffic split over both gateways,
    // is linked by the linker and blocked on both.
    for round in 0..12 {
        for (a, k) in hydra.iter().enumerate() {
            let ip = ["198.51.100.7", "198.51.100.8"][(round + a) % 2];
            let st = send(&gws[(round + a) % 2], k, ip, round * 4 + a);
            assert!(st == 200 || st == 403, "{st}");
        }
    }
    assert_eq!(send(&gws[0], &honest, "203.0.113.50", 1), 200);
    let verdict_on = |gw: &str, account: &str| admin_verdict(gw, token, account);
    let names: Vec<String> = (0..4).map(|i| format!("hydra_{i}")).collect();
    blocked_everywhere(&gws, token, &names, &hydra, &linker_log);
    for g in &gws {
        assert!(metric_of(g, "distillguard_board_changes_total") > 0.0);
    }

    // 3. kill -9 of a worker while events arrive; a new one rebuilds.
    let mut sent_later = 0;
    for (i, k) in later.iter().enumerate().take(3) {
        for r in 0..10 {
            assert_eq!(send(&gws[r % 2], k, &format!("192.0.2.{i}"), 200 + r), 200);
            sent_later += 1;
        }
    }
    // Some progress is checkpointed (and acknowledged) before the kill.
    assert!(within(10, || checkpointed(&pg, "DISTILLGUARD_EVENTS") > 0));
    Command::new("kill")
        .args(["-9", &worker.0.id().to_string()])
        .status()
        .unwrap();
    drop(worker);
    for (i, k) in later.iter().enumerate().skip(3) {
        for r in 0..10 {
            assert_eq!(send(&gws[r % 2], k, &format!("192.0.2.{i}"), 300 + r), 200);
            sent_later += 1;
        }
    }
    assert_eq!(sent_later, 60);
    let worker = Server(start_worker(&cfg_a, &worker_log, "w1", "0-1"));

    // 4. Redis away: served on local limits, and counted.
    drop(redis.take());
    assert_eq!(send(&gws[0], &honest, "203.0.113.50", 2), 200);
    assert!(metric_of(&gws[0], "distillguard_limits_shared_errors_total") >= 1.0);
    // NATS away: served all the same; the events spill, counted.
    let published = |gws: &[String]| -> f64 {
        gws.iter()
            .map(|g| metric_of(g, "distillguard_bus_published_total"))
            .sum()
    };
    let lines = || -> f64 {
        ["a", "b"]
            .iter()
            .map(|n| {
                std::fs::read_to_string(d.path(&format!("{n}.jsonl")))
                    .map_or(0, |t| t.lines().count())
            })
            .sum::<usize>() as f64
    };
    assert!(
        within(20, || published(&gws) == lines() && lines() > 60.0),
        "{} published, {} logged",
        published(&gws),
        lines()
    );
    // Stopped, not killed: a single JetStream node acknowledges a message
    // up to 8 ms before it writes it, so `kill -9` can lose the last ones
    // (docs/scale.md: replicas).
    if let Some(mut n) = nats.take() {
        terminate(&n.0);
        let _ = n.0.wait();
    }
    for r in 0..4 {
        assert_eq!(send(&gws[r % 2], &honest, "203.0.113.50", 400 + r), 200);
    }
    let spilled = |gws: &[String]| -> f64 {
        gws.iter()
            .map(|g| metric_of(g, "distillguard_bus_spilled_total"))
            .sum()
    };
    assert!(within(10, || spilled(&gws) >= 4.0), "{}", spilled(&gws));
    // NATS back (its streams kept on disk); the spill files replayed.
    nats = Some(nats_server(nats_port, &nats_dir));
    for name in ["a", "b"] {
        let spill = d.path(&format!("{name}-spill.jsonl"));
        if spill.exists() {
            let out = ok(&[
                "bus",
                "replay",
                spill.to_str().unwrap(),
                "--nats",
                &format!("nats://127.0.0.1:{nats_port}"),
                "--partitions",
                "4",
            ]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["removed"], true, "{out}");
        }
    }
    assert!(nats.is_some());

    // Every event the gateways logged is folded exactly once.
    let logged: Vec<distillguard_core::Event> = ["a", "b"]
        .iter()
        .flat_map(|n| read_events(&d.path(&format!("{n}.jsonl"))))
        .collect();
    let ids: BTreeSet<String> = logged.iter().filter_map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), logged.len(), "ids are unique");
    let stream = "DISTILLGUARD_EVENTS";
    let all_folded = within(60, || checkpointed(&pg, stream) == ids.len() as u64);
    assert!(
        all_folded,
        "{} folded of {}: {}",
        checkpointed(&pg, stream),
        ids.len(),
        std::fs::read_to_string(&worker_log).unwrap_or_default()
    );
    let summary = summary_of(worker);
    assert!(
        summary["covered_at_start"].as_u64().unwrap() > 0,
        "{summary}\n{}",
        std::fs::read_to_string(&worker_log).unwrap_or_default()
    );

    // The verdicts on the board are those of one `analyze` over the same
    // events.
    let analyze_cfg = d.path("analyze.toml");
    write(
        &analyze_cfg,
        &detection.replace("[detect.thresholds]", "[thresholds]"),
    );
    let logs: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| d.path(&format!("{n}.jsonl")).display().to_string())
        .collect();
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        &logs[0],
        &logs[1],
        "--config",
        analyze_cfg.to_str().unwrap(),
        "--format",
        "json",
        "-q",
    ]))
    .unwrap();
    let accounts = report["accounts"].as_array().unwrap();
    assert!(accounts.len() >= 12, "{}", accounts.len());
    for a in accounts {
        let id = a["account_id"].as_str().unwrap();
        for g in &gws {
            let v = verdict_on(g, id);
            assert_eq!(v["verdict"], a["verdict"], "{id} on {g}: {v} vs {a}");
        }
    }
    // The linker folded every logged event once (the killed worker's
    // records sent again are duplicates), and found `analyze`'s campaigns.
    let _ = summary_of(w2);
    let linked = summary_of(linker);
    assert_eq!(linked["folded"], ids.len() as u64, "{linked}");
    assert_eq!(linked["campaigns"], campaigns_of(&report), "{linked}");
    assert!(!report["campaigns"].as_array().unwrap().is_empty());
    drop((gw_a, gw_b));
}

/// A report's campaigns: id → member count.
fn campaigns_of(report: &serde_json::Value) -> serde_json::Value {
    report["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["campaign_id"].as_str().unwrap().to_string(),
                c["accounts"].as_array().unwrap().len().into(),
            )
        })
        .collect::<serde_json::Map<String, serde_json::Value>>()
        .into()
}

/// Starts `distillguard link` with `config`; returns the child.
fn start_linker(config: &Path, log: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args(["link", "--config", config.to_str().unwrap(), "--name", "l1"])
        .args(["--worker-timeout-ms", "2000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Stops a worker or linker with SIGTERM; its JSON summary.
fn summary_of(mut child: Server) -> serde_json::Value {
    terminate(&child.0);
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.0.wait().unwrap().success(), "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A hydra whose four accounts fall two and two in the partitions of two
/// workers: neither worker sees the three accounts a campaign needs. With
/// `[cluster.nats] linker = true` the workers send their link records to
/// the cluster's linker, which finds the campaign with the id and size one
/// `analyze` over both gateways' logs gives it, and both gateways block
/// all four. A worker stopped and started again resumes from its snapshot;
/// one started without snapshots rebuilds and sends its records again; the
/// linker folds each event once.
#[test]
fn a_campaign_split_over_two_workers_is_found_by_the_cluster_linker() {
    let d = Dir::new("linker");
    let schema = distillguard_storage::testing::Schema::new()
        .expect("PostgreSQL at DATABASE_URL (.ci/run starts it)");
    let pg = schema.url();
    let nats_port = free_port();
    let _nats = nats_server(nats_port, &d.path("nats"));
    let parts = std::num::NonZeroU16::new(4).unwrap();
    // Two accounts in partitions 0-1 and two in 2-3.
    let mut low = Vec::new();
    let mut high = Vec::new();
    for i in 0.. {
        let a = format!("hydra_{i}");
        let p = distillguard_bus::partition_of(&a, parts);
        let side = if p < 2 { &mut low } else { &mut high };
        if side.len() < 2 {
            side.push(a);
        }
        if low.len() == 2 && high.len() == 2 {
            break;
        }
    }
    let hydra: Vec<String> = low.iter().chain(&high).cloned().collect();
    let keys: Vec<String> = hydra.iter().map(|a| create_key(&pg, a, "bulk")).collect();
    let honest = create_key(&pg, "honest", "bulk");
    let token = String::from_utf8(dg(&["keys", "admin-token"]).stdout).unwrap();
    let token = token.trim();
    let (mock, up) = start_mock(&[]);
    let _mock = Server(mock);
    let detection = "[detect.thresholds]\nmonitor = 0.0\nthrottle = 0.0\nblock = 1.0\nmin_requests = 1\n[link]\nlink_risk = 0.0\n";
    let cluster = format!(
        "[cluster.nats]\nurl = \"nats://127.0.0.1:{nats_port}\"\npartitions = 4\nlinker = true\n"
    );
    let config = |name: &str| cluster_gateway(&d, name, &up, &pg, token, detection, &cluster);
    let (cfg_a, cfg_b) = (config("a"), config("b"));
    let (gw_a, urls_a) = start_gateway_urls(&cfg_a, 1);
    let (gw_b, urls_b) = start_gateway_urls(&cfg_b, 1);
    let _gws = (Server(gw_a), Server(gw_b));
    let gws = [urls_a[0].clone(), urls_b[0].clone()];
    let verdicts = |n: &str| d.path(&format!("verdicts-{n}.jsonl"));
    let first_out = verdicts("first");
    let w1 = Server(start_worker_with(
        &cfg_a,
        &d.path("w1.log"),
        "w1",
        "0-1",
        &["--verdicts-out", first_out.to_str().unwrap()],
    ));
    let w2 = Server(start_worker(&cfg_a, &d.path("w2.log"), "w2", "2-3"));
    for round in 0..12 {
        for (a, k) in keys.iter().enumerate() {
            let ip = ["198.51.100.7", "198.51.100.8"][(round + a) % 2];
            let st = send_chat(&gws[(round + a) % 2], k, ip, round * 4 + a);
            assert_eq!(st, 200);
        }
    }
    assert_eq!(send_chat(&gws[0], &honest, "203.0.113.50", 1), 200);
    let sent = 12 * 4 + 1;
    // Both workers folded everything, and linked nothing on their own.
    let folded = within(30, || checkpointed(&pg, "DISTILLGUARD_EVENTS") == sent);
    assert!(folded, "{}", checkpointed(&pg, "DISTILLGUARD_EVENTS"));
    for g in &gws {
        for a in &hydra {
            let v = admin_verdict(g, token, a);
            assert_eq!(v["verdict"], "throttle", "{a} on {g}: {v}");
        }
    }
    let linker_log = d.path("linker.log");
    let linker = Server(start_linker(&cfg_a, &linker_log));
    blocked_everywhere(&gws, token, &hydra, &keys, &linker_log);
    assert_eq!(
        admin_verdict(&gws[1], token, "honest")["verdict"],
        "throttle"
    );

    // A worker stopped (it saves its state) and started again resumes
    // from its snapshot: it folds nothing again, sends nothing again, and
    // its accounts' verdicts are those it had.
    let first = summary_of(w1);
    let resent = first["folded"].as_u64().unwrap();
    assert_eq!(resent, 24, "{first}");
    assert!(first["snapshots"].as_u64().unwrap() >= 1, "{first}");
    // While it is down, a newcomer of its partitions sends a request.
    let newcomer = (0..)
        .map(|i| format!("newcomer_{i}"))
        .find(|a| distillguard_bus::partition_of(a, parts) < 2)
        .unwrap();
    let new_key = create_key(&pg, &newcomer, "bulk");
    assert_eq!(send_chat(&gws[0], &new_key, "203.0.113.77", 7), 200);
    let resumed_out = verdicts("resumed");
    let w1_log = d.path("w1-resumed.log");
    let w1 = Server(start_worker_with(
        &cfg_a,
        &w1_log,
        "w1",
        "0-1",
        &["--verdicts-out", resumed_out.to_str().unwrap()],
    ));
    let log_says = |path: &Path, what: &str| {
        within(30, || {
            std::fs::read_to_string(path).is_ok_and(|t| t.contains(what))
        })
    };
    assert!(log_says(&w1_log, "resumed from the snapshot"));
    let resumed = summary_of(w1);
    // Only the newcomer's request is folded: none twice, none missed.
    assert_eq!(resumed["resumed_from"], 24, "{resumed}");
    assert_eq!(resumed["folded"], 1, "{resumed}");
    assert_eq!(resumed["duplicates"], 0, "{resumed}");
    let lines = |p: &Path| -> BTreeSet<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (before, after) = (lines(&first_out), lines(&resumed_out));
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(before.is_subset(&after), "{before:?}\n{after:?}");
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(added[0].contains(&newcomer), "{added:?}");
    let resent = resent + 1;
    // Without snapshots it rebuilds and sends its records again: the
    // linker counts them as duplicates (its progress line, every ten
    // seconds) and folds nothing twice.
    let w1 = Server(start_worker_with(
        &cfg_a,
        &d.path("w1b.log"),
        "w1",
        "0-1",
        &["--snapshot-secs", "0"],
    ));
    let duplicates = || {
        std::fs::read_to_string(&linker_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["duplicates"].as_u64())
            .next_back()
            .unwrap_or(0)
    };
    assert!(within(40, || duplicates() >= resent), "{}", duplicates());
    let rebuilt = summary_of(w1);
    assert_eq!(rebuilt["folded"], resent, "{rebuilt}");
    let _ = summary_of(w2);
    let summary = summary_of(linker);
    // Every logged event folded once (requests refused before they were
    // read are not events).
    let logged: u64 = ["a", "b"]
        .iter()
        .map(|n| read_events(&d.path(&format!("{n}.jsonl"))).len() as u64)
        .sum();
    assert_eq!(logged, sent + 1);
    assert_eq!(summary["folded"], logged, "{summary}");
    assert_eq!(summary["duplicates"], resent, "{summary}");
    assert_eq!(summary["workers"], serde_json::json!(["w1", "w2"]));

    // The campaign is the one `analyze` finds over both gateways' logs.
    let analyze_cfg = d.path("analyze.toml");
    write(
        &analyze_cfg,
        &detection.replace("[detect.thresholds]", "[thresholds]"),
    );
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        d.path("a.jsonl").to_str().unwrap(),
        d.path("b.jsonl").to_str().unwrap(),
        "--config",
        analyze_cfg.to_str().unwrap(),
        "--format",
        "json",
        "-q",
    ]))
    .unwrap();
    let campaigns = campaigns_of(&report);
    assert_eq!(campaigns.as_object().unwrap().len(), 1, "{campaigns}");
    assert_eq!(summary["campaigns"], campaigns);
    assert_eq!(summary["members"], 4);
}
