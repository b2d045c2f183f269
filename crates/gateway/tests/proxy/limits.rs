//! Keys and limits: 401 without a key, 429 with Retry-After, token limits
//! that count prompts and metered answers, throttling.

use crate::common::spawn;
use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn keys_are_required_and_limits_answer_429_with_retry_after() {
    let dir = std::env::temp_dir().join(format!("dg-gw-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("keys.db");
    let _ = std::fs::remove_file(&db);
    let store = distillguard_storage::open(db.to_str().unwrap()).unwrap();
    let (_, key) = store.create_key("acct_free", "free", "test").unwrap();
    let (rec2, key2) = store.create_key("acct_other", "tier1", "test").unwrap();
    store.revoke_key(&rec2.id, "test", "").unwrap();
    drop(store);
    let up = mock(Duration::ZERO).await;
    let mut cfg = config(&up, 5, 1 << 20);
    cfg.keys_db = Some(db.to_str().unwrap().to_string());
    cfg.auth = distillguard_gateway::config::Auth::Keys;
    let gw = spawn(router_ok(cfg)).await;
    // No key: 401 in OpenAI's format; a revoked key: 401 in Anthropic's.
    let (st, _, body) = post_with(&gw, "/v1/chat/completions", CHAT, "").await;
    assert_eq!(st, 401);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["type"],
        "authentication_error"
    );
    let msg = r#"{"model":"atlas-3","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let (st, _, body) =
        post_with(&gw, "/v1/messages", msg, &format!("x-api-key: {key2}\r\n")).await;
    assert_eq!(st, 401);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["type"],
        "authentication_error"
    );
    // A good key works, in both header styles.
    let bearer = format!("Authorization: Bearer {key}\r\n");
    assert_eq!(
        post_with(&gw, "/v1/chat/completions", CHAT, &bearer)
            .await
            .0,
        200
    );
    assert_eq!(
        post_with(&gw, "/v1/messages", msg, &format!("x-api-key: {key}\r\n"))
            .await
            .0,
        200
    );
    // The free tier allows 20 requests a minute as a burst: the rest get 429.
    let mut limited = None;
    for _ in 0..25 {
        let r = post_with(&gw, "/v1/chat/completions", CHAT, &bearer).await;
        if r.0 == 429 {
            limited = Some(r);
            break;
        }
    }
    let (_, head, body) = limited.expect("no 429 within 27 requests on a 20 rpm tier");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn token_limits_count_prompts_and_metered_answers() {
    let dir = temp_dir("tokens");
    let db = dir.join("keys.db");
    let store = distillguard_storage::open(db.to_str().unwrap()).unwrap();
    let (_, key) = store.create_key("acct_t", "tiny", "test").unwrap();
    drop(store);
    let up = mock(Duration::ZERO).await;
    // Plenty of requests, 400 tokens a minute.
    let cfg = keyed(&up, &db, "[limits.tiers.tiny]\nrpm = 1000\ntpm = 400\n");
    let gw = spawn(router_ok(cfg)).await;
    let bearer = format!("Authorization: Bearer {key}\r\n");
    let mut served = 0u64;
    let mut limited = None;
    for _ in 0..30 {
        let r = post_with(&gw, "/v1/chat/completions", CHAT, &bearer).await;
        match r.0 {
            200 => served += 1,
            429 => {
                limited = Some(r);
                break;
            }
            s => panic!("status {s}: {}", r.2),
        }
        // Answers are charged when they end, just after the client has them.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, head, body) = limited.expect("no 429 under a 400-token minute");
    assert!(body.contains("token limit"), "{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    // The mock answers 20 tokens (max_tokens) to a prompt estimated at
    // about 20: a 400-token minute holds about ten such requests, not 30.
    assert!((5..=15).contains(&served), "{served} served");
    assert_eq!(
        metric(&gw, "distillguard_rate_limited_total{limit=\"tokens\"}").await,
        1.0
    );
    assert!(
        metric(&gw, "distillguard_tokens_total{kind=\"output\"}").await >= served as f64 * 20.0
    );
    // Every served JSON answer ended complete (not as a client gone).
    assert_eq!(
        metric(&gw, "distillguard_answers_total{outcome=\"complete\"}").await,
        served as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_throttled_account_gets_a_tenth_of_its_request_rate() {
    let dir = temp_dir("throttle");
    let db = dir.join("keys.db");
    let store = distillguard_storage::open(db.to_str().unwrap()).unwrap();
    let (_, key) = store.create_key("acct_slow", "fifty", "test").unwrap();
    drop(store);
    let up = mock(Duration::ZERO).await;
    // Throttled from the first request on; 50 requests a minute, so 5.
    let token = "dgadmin_throttle";
    let cfg = keyed(
        &up,
        &db,
        &format!(
            "[admin]\ntoken_sha256 = \"{}\"\n[limits.tiers.fifty]\nrpm = 50\ntpm = 100000000\n\
             [detect.thresholds]\nmonitor = 0.0\nthrottle = 0.0\nblock = 1.0\nmin_requests = 1\n",
            distillguard_storage::sha256_hex(token)
        ),
    );
    let gw = spawn(router_ok(cfg)).await;
    let bearer = format!("Authorization: Bearer {key}\r\n");
    assert_eq!(
        post_with(&gw, "/v1/chat/completions", CHAT, &bearer)
            .await
            .0,
        200
    );
    // Wait for the verdict.
    let g = &gw;
    eventually(|| async move {
        (metric(g, "distillguard_accounts{verdict=\"throttle\"}").await == 1.0).then_some(())
    })
    .await;
    let mut served = 1;
    loop {
        let (st, _, body) = post_with(&gw, "/v1/chat/completions", CHAT, &bearer).await;
        if st == 429 {
            assert!(body.contains("request limit"), "{body}");
            break;
        }
        assert_eq!(st, 200);
        served += 1;
        assert!(served <= 10, "still served after {served} requests");
    }
    // Five throttled requests a minute as a burst, less what was taken at
    // full rate before the verdict (one fiftieth of a minute each).
    assert!((4..=6).contains(&served), "{served}");
    assert!(metric(&gw, "distillguard_actions_total{action=\"throttle\"}").await >= 3.0);
    // Refusals are counted for the account.
    let bad = r#"{"model":"atlas-3","max_tokens":"5","messages":[{"role":"user","content":"hi"}]}"#;
    let _ = post_with(&gw, "/v1/chat/completions", bad, &bearer).await;
    let auth = format!("Authorization: Bearer {token}\r\n");
    let state = account_state(&gw, &auth, "acct_slow").await;
    // (Over its limit, even an unreadable body is refused with 429 first.)
    assert!(state["rejected"]["429"].as_u64().unwrap() >= 2, "{state}");
    let _ = std::fs::remove_dir_all(&dir);
}
