//! Replicas sharing their limits in Redis (`[cluster] redis_url`) and
//! their key store in PostgreSQL (`keys_db = "postgres://…"`), against
//! the real servers of the machine (`REDIS_URL`, default
//! redis://127.0.0.1:6379; `DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/test; `.ci/run` starts them when
//! they are down).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use distillguard_gateway::{Config, router};

mod common;
use common::{mock_with, request_with, spawn};

const CHAT: &str =
    r#"{"model":"atlas-3","messages":[{"role":"user","content":"Explain TCP"}],"max_tokens":5}"#;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key store with one key of a fresh account (fresh per run, so that
/// earlier runs' limits in Redis do not count) on a tier of 10 requests a
/// minute.
fn store(name: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("dg-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("keys.db");
    let store = distillguard_storage::open(db.to_str().unwrap()).unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (_, key) = store
        .create_key(&format!("acct_{name}_{nanos}"), "ten", "test")
        .unwrap();
    (db, key)
}

fn config(up: &str, db: &std::path::Path, cluster: &str) -> Config {
    config_on(up, &db.display().to_string(), cluster, "")
}

fn config_on(up: &str, keys_db: &str, cluster: &str, more: &str) -> Config {
    Config::from_toml(&format!(
        "keys_db = \"{keys_db}\"\n{more}\n[detect]\nenabled = false\n[limits.tiers.ten]\nrpm = 10\ntpm = 100000000\n[cluster]\n{cluster}\n\
         [[upstreams]]\nname = \"o\"\nurl = \"http://{up}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n"
    ))
    .unwrap()
}

/// Sends `n` requests alternating over `gateways`; returns the statuses.
async fn alternate(gateways: &[String], key: &str, n: usize) -> Vec<u16> {
    let h = format!("Authorization: Bearer {key}\r\n");
    let mut out = Vec::new();
    for i in 0..n {
        let gw = &gateways[i % gateways.len()];
        out.push(
            request_with("POST", gw, "/v1/chat/completions", CHAT, &h)
                .await
                .0,
        );
    }
    out
}

async fn two(up: &str, db: &std::path::Path, cluster: &str) -> Vec<String> {
    let mut v = Vec::new();
    for _ in 0..2 {
        v.push(spawn(router(config(up, db, cluster)).unwrap()).await);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limit_holds_across_two_gateways_sharing_redis() {
    let up = mock_with(Duration::ZERO, None).await;
    // Without shared limits each replica admits the whole minute: 20 of 30.
    let (db, key) = store("local");
    let alone = alternate(&two(&up, &db, "").await, &key, 30).await;
    assert_eq!(alone.iter().filter(|s| **s == 200).count(), 20, "{alone:?}");
    // Sharing Redis: 10 of 30 (one more if the test outlasts 6 s, the
    // time the rate frees a request in).
    let (db, key) = store("shared");
    let shared = two(&up, &db, &format!("redis_url = \"{}\"", redis_url())).await;
    let got = alternate(&shared, &key, 30).await;
    let ok = got.iter().filter(|s| **s == 200).count();
    assert!((10..=11).contains(&ok), "{ok} admitted: {got:?}");
    assert!(got.iter().all(|s| *s == 200 || *s == 429), "{got:?}");
    // Both replicas refused: the limit is one.
    assert!(got[20..].iter().all(|s| *s == 429), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_requests_are_served_on_local_limits_or_refused_closed() {
    let up = mock_with(Duration::ZERO, None).await;
    let (db, key) = store("down");
    // Nothing listens on port 9 here.
    let open =
        spawn(router(config(&up, &db, "redis_url = \"redis://127.0.0.1:9\"")).unwrap()).await;
    let got = alternate(std::slice::from_ref(&open), &key, 12).await;
    // The gateway's own limit applies: 10 served, then 429.
    assert_eq!(got.iter().filter(|s| **s == 200).count(), 10, "{got:?}");
    let page = request_with("GET", &open, "/metrics", "", "").await.2;
    let errors: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("distillguard_limits_shared_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(errors >= 12, "{errors}");
    let closed = spawn(
        router(config(
            &up,
            &db,
            "redis_url = \"redis://127.0.0.1:9\"\nredis_fail_closed = true",
        ))
        .unwrap(),
    )
    .await;
    let (st, _, body) = request_with(
        "POST",
        &closed,
        "/v1/chat/completions",
        CHAT,
        &format!("Authorization: Bearer {key}\r\n"),
    )
    .await;
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("shared limits"), "{body}");
}

/// A Responses conversation started on one replica and continued on
/// another is known to the second (its depth counted): the answers'
/// entries are kept in the shared Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responses_conversation_continued_on_another_gateway_is_known() {
    let up = mock_with(Duration::ZERO, None).await;
    let cluster = format!("redis_url = \"{}\"", redis_url());
    let cfg = || {
        Config::from_toml(&format!(
            "auth = \"none\"\n[detect]\nenabled = false\n[cluster]\n{cluster}\n\
             [[upstreams]]\nname = \"o\"\nurl = \"http://{up}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n"
        ))
        .unwrap()
    };
    let a = spawn(router(cfg()).unwrap()).await;
    let b = spawn(router(cfg()).unwrap()).await;
    let first = r#"{"model":"atlas-3","input":"Explain TCP","max_output_tokens":20}"#;
    let (st, _, body) = request_with("POST", &a, "/v1/responses", first, "").await;
    assert_eq!(st, 200, "{body}");
    let id = body
        .split("\"id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let next = format!(
        r#"{{"model":"atlas-3","input":"and UDP?","max_output_tokens":20,"previous_response_id":"{id}"}}"#
    );
    let known = "distillguard_responses_continued_total{known=\"true\"}";
    // The first gateway writes the entry as the answer ends, off the
    // request's path: a few tries at most.
    let mut tries = 0;
    while counter(&b, known).await == 0 && tries < 20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (st, _, body) = request_with("POST", &b, "/v1/responses", &next, "").await;
        assert_eq!(st, 200, "{body}");
        tries += 1;
    }
    assert_eq!(counter(&b, known).await, 1, "after {tries} tries");
    // An id no replica served stays unknown.
    let stray = r#"{"model":"atlas-3","input":"more","max_output_tokens":20,"previous_response_id":"resp_nowhere_0"}"#;
    assert_eq!(
        request_with("POST", &b, "/v1/responses", stray, "").await.0,
        200
    );
    assert_eq!(counter(&b, known).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_postgresql_key_store_and_its_audit_log() {
    let schema = distillguard_storage::testing::Schema::new()
        .expect("PostgreSQL at DATABASE_URL (.ci/run starts it)");
    let url = schema.url();
    let store = distillguard_storage::open(&url).unwrap();
    let (_, key) = store.create_key("acct_pg", "ten", "test").unwrap();
    let up = mock_with(Duration::ZERO, None).await;
    let token = "dgadmin_pg";
    let admin = format!(
        "[admin]\ntoken_sha256 = \"{}\"",
        distillguard_storage::sha256_hex(token)
    );
    let mut gws = Vec::new();
    for _ in 0..2 {
        gws.push(spawn(router(config_on(&up, &url, "", &admin)).unwrap()).await);
    }
    // A key made in the shared store serves on both.
    assert_eq!(alternate(&gws, &key, 2).await, vec![200, 200]);
    // A key made after they started, too; revoked, it is refused by both.
    let (rec, late) = store.create_key("acct_late", "ten", "test").unwrap();
    assert_eq!(alternate(&gws, &late, 2).await, vec![200, 200]);
    let (rec2, unused) = store.create_key("acct_unused", "ten", "test").unwrap();
    store
        .revoke_key(&rec2.id, "test", "never handed out")
        .unwrap();
    assert_eq!(alternate(&gws, &unused, 2).await, vec![401, 401]);
    // An override set on one gateway is saved in the shared store: a
    // replica started later enforces it, and the audit log names it.
    let auth = format!("Authorization: Bearer {token}\r\n");
    let (st, _, body) = request_with(
        "PUT",
        &gws[0],
        "/admin/accounts/acct_late/override",
        r#"{"verdict":"block","reason":"ticket 9"}"#,
        &auth,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let third = spawn(router(config_on(&up, &url, "", &admin)).unwrap()).await;
    assert_eq!(alternate(&[third], &late, 1).await, vec![403]);
    let log = store.audit_log(10).unwrap();
    assert_eq!(log[0].action, "override.set");
    assert_eq!(log[0].target, "acct_late");
    assert!(
        log.iter()
            .any(|e| e.action == "key.revoke" && e.target == rec2.id)
    );
    assert!(
        log.iter()
            .any(|e| e.action == "key.create" && e.target == rec.id)
    );
}

/// A batch file uploaded through one replica is read back through
/// another by its owner, and refused to anyone else: who owns which file
/// is kept in the shared key store, not in one gateway's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_file_uploaded_on_one_gateway_is_read_back_on_another() {
    let schema = distillguard_storage::testing::Schema::new()
        .expect("PostgreSQL at DATABASE_URL (.ci/run starts it)");
    let url = schema.url();
    let store = distillguard_storage::open(&url).unwrap();
    let (_, owner) = store.create_key("acct_owner", "ten", "test").unwrap();
    let (_, other) = store.create_key("acct_other", "ten", "test").unwrap();
    let up = mock_with(Duration::ZERO, None).await;
    let mut gws = Vec::new();
    for _ in 0..2 {
        gws.push(spawn(router(config_on(&up, &url, "", "")).unwrap()).await);
    }
    let line = r#"{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"atlas-3","messages":[{"role":"user","content":"Explain TCP"}]}}"#;
    let body = format!(
        "--XB\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{line}\n\r\n--XB--\r\n"
    );
    let as_key = |k: &str, extra: &str| format!("Authorization: Bearer {k}\r\n{extra}");
    let (st, _, answer) = request_with(
        "POST",
        &gws[0],
        "/v1/files",
        &body,
        &as_key(&owner, "Content-Type: multipart/form-data; boundary=XB\r\n"),
    )
    .await;
    assert_eq!(st, 200, "{answer}");
    let id = answer
        .split("\"id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    assert!(store.batch_owner(&id).unwrap().is_some());
    let path = format!("/v1/files/{id}");
    let (st, _, read) = request_with("GET", &gws[1], &path, "", &as_key(&owner, "")).await;
    assert_eq!(st, 200, "the owner, on the other replica: {read}");
    assert!(read.contains(&id), "{read}");
    for gw in &gws {
        let (st, _, _) = request_with("GET", gw, &path, "", &as_key(&other, "")).await;
        assert_eq!(st, 404, "another account");
    }
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A stream and subject prefix of this test's own.
fn bus_names(name: &str) -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (
        format!("DGTEST_{name}_{nanos}"),
        format!("dgtest.{name}.{nanos}"),
    )
}

async fn counter(gw: &str, name: &str) -> u64 {
    let page = request_with("GET", gw, "/metrics", "", "").await.2;
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (up to 10 s) for a counter to reach `n`.
async fn counter_reaches(gw: &str, name: &str, n: u64) -> u64 {
    let mut got = 0;
    for _ in 0..200 {
        got = counter(gw, name).await;
        if got >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    got
}

/// Events handed to a gateway (`POST /v1/events`) go onto the bus as
/// well, for the cluster's workers, even where the gateway itself does
/// not detect: each message is an event-log line in its normalised form,
/// read back as the very event that was posted, with an id (drawn by the
/// gateway when the line had none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_events_go_onto_the_bus_for_the_workers() {
    use futures_util::StreamExt;
    let up = mock_with(Duration::ZERO, None).await;
    let (stream, prefix) = bus_names("ingest");
    let token = "dgingest_test";
    let cfg = Config::from_toml(&format!(
        "auth = \"none\"\n[detect]\nenabled = false\n[integrations]\ntoken_sha256 = \"{}\"\n\
         [cluster.nats]\nurl = \"{}\"\npartitions = 2\nstream = \"{stream}\"\nsubject_prefix = \"{prefix}\"\n\
         [[upstreams]]\nname = \"o\"\nurl = \"http://{up}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n",
        distillguard_storage::sha256_hex(token),
        nats_url()
    ))
    .unwrap();
    let gw = spawn(router(cfg).unwrap()).await;
    let with_id = r#"{"id":"ev_posted_1","ts":"2026-12-01T10:00:00Z","account_id":"acct_a","request":{"model":"atlas-3","messages":[{"role":"system","content":"Think step by step."},{"role":"user","content":"Why is the sky blue?"}]}}"#;
    let without = r#"{"ts":"2026-12-01T10:00:01Z","account_id":"acct_b","endpoint":"/v1/messages","request":{"model":"atlas-3","max_tokens":64,"messages":[{"role":"user","content":"Explain TCP"}]}}"#;
    let (st, _, body) = request_with(
        "POST",
        &gw,
        "/v1/events",
        &format!("{with_id}\n{without}\n"),
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"accepted\":2"), "{body}");
    assert_eq!(
        counter_reaches(&gw, "distillguard_bus_published_total", 2).await,
        2
    );
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let s = js.get_stream(&stream).await.unwrap();
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap().take(2);
    let mut got = std::collections::BTreeMap::new();
    while let Some(m) = msgs.next().await {
        let m = m.unwrap();
        let text = std::str::from_utf8(&m.payload).unwrap().to_string();
        let e = distillguard_core::parse_event_line(&text).unwrap();
        got.insert(e.account_id.clone(), e);
    }
    let posted_a = distillguard_core::parse_event_line(with_id).unwrap();
    assert_eq!(got["acct_a"], posted_a);
    let mut posted_b = distillguard_core::parse_event_line(without).unwrap();
    let b = &got["acct_b"];
    assert!(
        b.id.as_deref().is_some_and(|i| i.starts_with("ev_")),
        "{b:?}"
    );
    posted_b.id = b.id.clone();
    assert_eq!(*b, posted_b);
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_jetstream_by_partition_and_spill_while_nats_is_down() {
    use futures_util::StreamExt;
    let up = mock_with(Duration::ZERO, None).await;
    let (stream, prefix) = bus_names("events");
    let dir = std::env::temp_dir().join(format!("dg-bus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bus = |url: &str, spill: &std::path::Path| {
        format!(
            "[cluster.nats]\nurl = \"{url}\"\npartitions = 4\nstream = \"{stream}\"\nsubject_prefix = \"{prefix}\"\nspill = \"{}\"\n",
            spill.display()
        )
    };
    let gw_of = |url: &str, spill: &std::path::Path| {
        Config::from_toml(&format!(
            "auth = \"none\"\n[detect]\nenabled = false\n{}\n[[upstreams]]\nname = \"o\"\nurl = \"http://{up}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n",
            bus(url, spill)
        ))
        .unwrap()
    };
    let spill_up = dir.join("spill-up.jsonl");
    let gw = spawn(router(gw_of(&nats_url(), &spill_up)).unwrap()).await;
    // Six requests from six client addresses (six accounts without keys).
    for i in 0..6 {
        let h = format!("X-Forwarded-For: 198.51.100.{i}\r\n");
        let st = request_with("POST", &gw, "/v1/chat/completions", CHAT, &h)
            .await
            .0;
        assert_eq!(st, 200);
    }
    assert_eq!(
        counter_reaches(&gw, "distillguard_bus_published_total", 6).await,
        6
    );
    assert_eq!(counter(&gw, "distillguard_bus_spilled_total").await, 0);
    assert!(!spill_up.exists());
    // In the stream: six events, each on its account's partition, with
    // its id as the message id.
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(&stream).await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 6);
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap().take(6);
    let mut ids = std::collections::BTreeSet::new();
    let parts = std::num::NonZeroU16::new(4).unwrap();
    while let Some(m) = msgs.next().await {
        let m = m.unwrap();
        let e: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let account = e["account_id"].as_str().unwrap();
        let p = distillguard_bus::partition_of(account, parts);
        assert_eq!(m.subject.as_str(), format!("{prefix}.{p}"));
        let id = e["id"].as_str().unwrap().to_string();
        let header = m.headers.as_ref().unwrap();
        assert_eq!(
            header
                .get(async_nats::header::NATS_MESSAGE_ID)
                .unwrap()
                .as_str(),
            id
        );
        // The line is one `analyze` reads.
        distillguard_core::parse_event_line(std::str::from_utf8(&m.payload).unwrap()).unwrap();
        ids.insert(id);
    }
    assert_eq!(ids.len(), 6);

    // NATS down (nothing listens on port 9): served all the same; the
    // events spill to the local file, counted.
    let spill = dir.join("spill.jsonl");
    let down = spawn(router(gw_of("nats://127.0.0.1:9", &spill)).unwrap()).await;
    for i in 0..4 {
        let h = format!("X-Forwarded-For: 203.0.113.{i}\r\n");
        let st = request_with("POST", &down, "/v1/chat/completions", CHAT, &h)
            .await
            .0;
        assert_eq!(st, 200);
    }
    assert_eq!(
        counter_reaches(&down, "distillguard_bus_spilled_total", 4).await,
        4
    );
    assert_eq!(counter(&down, "distillguard_bus_published_total").await, 0);
    let text = std::fs::read_to_string(&spill).unwrap();
    assert_eq!(text.lines().count(), 4);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&spill).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "raw prompts: owner only");
    }
    // Replayed when NATS is back: into the same stream, the file removed.
    let mut cfg = distillguard_bus::BusConfig::new(&nats_url());
    cfg.partitions = parts;
    cfg.stream = stream.clone();
    cfg.subject_prefix = prefix.clone();
    let done = distillguard_bus::replay(&cfg, &spill).await.unwrap();
    assert_eq!(done.published, 4);
    assert!(done.removed && !spill.exists());
    assert_eq!(s.info().await.unwrap().state.messages, 10);
    // Replaying the same lines again within the duplicate window stores
    // nothing twice.
    std::fs::write(&spill, &text).unwrap();
    let again = distillguard_bus::replay(&cfg, &spill).await.unwrap();
    assert_eq!(again.published, 4);
    assert_eq!(s.info().await.unwrap().state.messages, 10);
    // A line that is not an event is named, and the file kept.
    std::fs::write(
        &spill,
        format!(
            "{}not json\n",
            text.lines().next().unwrap().to_owned() + "\n"
        ),
    )
    .unwrap();
    let bad = distillguard_bus::replay(&cfg, &spill).await.unwrap();
    assert_eq!(bad.malformed.len(), 1);
    assert_eq!(bad.malformed[0].0, 2);
    assert!(!bad.removed && bad.moved_to.exists());
    js.delete_stream(&stream).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
