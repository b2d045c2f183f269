//! Replicas sharing their limits in Redis (`[cluster] redis_url`), against
//! the real Redis of the machine (`REDIS_URL`, default
//! redis://127.0.0.1:6379; `.ci/run` starts it when it is down).
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
    let store = distillguard_storage::KeyStore::open(db.to_str().unwrap()).unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (_, key) = store
        .create(&format!("acct_{name}_{nanos}"), "ten")
        .unwrap();
    (db, key)
}

fn config(up: &str, db: &std::path::Path, cluster: &str) -> Config {
    Config::from_toml(&format!(
        "keys_db = \"{}\"\n[detect]\nenabled = false\n[limits.tiers.ten]\nrpm = 10\ntpm = 100000000\n[cluster]\n{cluster}\n\
         [[upstreams]]\nname = \"o\"\nurl = \"http://{up}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n",
        db.display()
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
