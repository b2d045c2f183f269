//! Verdicts enforced: blocks, withheld reasoning, the admin API's
//! overrides, campaigns linked in the gateway.

use crate::common::{request_with, spawn};
use distillguard_gateway::{Config, router};
use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn a_blocked_account_gets_403_in_its_apis_format() {
    let up = mock(Duration::ZERO).await;
    let mut cfg = config(&up, 5, 1 << 20);
    // Block at any risk from the first request: the verdict comes from the
    // detector thread, asynchronously, and applies to the next requests.
    cfg.detect.thresholds = Some(distillguard_detect::engine::Thresholds {
        monitor: 0.0,
        throttle: 0.0,
        block: 0.0,
        min_requests: 1,
    });
    let gw = spawn(router_ok(cfg)).await;
    assert_eq!(post(&gw, "/v1/chat/completions", CHAT).await.0, 200);
    let mut blocked = None;
    for _ in 0..100 {
        let r = post(
            &gw,
            "/v1/messages",
            r#"{"model":"atlas-3","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
        if r.0 == 403 {
            blocked = Some(r.1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = blocked.expect("the account was never blocked");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "permission_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("blocked"));
}

#[tokio::test]
async fn a_throttled_account_gets_answers_without_reasoning() {
    let up = mock(Duration::ZERO).await;
    let mut cfg = config(&up, 5, 1 << 20);
    // Every account reaches "throttle" at once (never "block"): the default
    // actions for throttle withhold reasoning.
    cfg.detect.thresholds = Some(distillguard_detect::engine::Thresholds {
        monitor: 0.0,
        throttle: 0.0,
        block: 1.0,
        min_requests: 1,
    });
    let gw = spawn(router_ok(cfg)).await;
    let (_, first) = post(&gw, "/v1/chat/completions", CHAT).await;
    assert!(first.contains("reasoning_content"), "{first}");
    let mut stripped = None;
    for _ in 0..100 {
        let (st, body) = post(&gw, "/v1/chat/completions", CHAT).await;
        assert_eq!(st, 200);
        if !body.contains("reasoning_content") {
            stripped = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = stripped.expect("reasoning was never withheld");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len()
            > 10
    );
    // Streaming, Anthropic: no thinking block, text block renumbered to 0.
    let (st, sse) = post(
        &gw,
        "/v1/messages",
        r#"{"model":"atlas-3","stream":true,"max_tokens":12,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(st, 200);
    assert!(!sse.contains("thinking"), "{sse}");
    assert!(
        sse.contains("text_delta") && sse.contains("message_stop"),
        "{sse}"
    );
    assert!(!sse.contains("\"index\":1"), "{sse}");
    // Responses, JSON and streamed: no reasoning item, no summary, no
    // encrypted reasoning to hand back; the message item renumbered to 0.
    let ask = |stream: bool| {
        format!(
            r#"{{"model":"atlas-3","stream":{stream},"max_output_tokens":12,"reasoning":{{"effort":"high","summary":"auto"}},"input":"hi"}}"#
        )
    };
    let (st, body) = post(&gw, "/v1/responses", &ask(false)).await;
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let output = v["output"].as_array().unwrap();
    assert!(output.iter().all(|i| i["type"] != "reasoning"), "{body}");
    assert!(
        !body.contains("encrypted_content") && !body.contains("summary_text"),
        "{body}"
    );
    assert_eq!(output[0]["type"], "message");
    let (st, sse) = post(&gw, "/v1/responses", &ask(true)).await;
    assert_eq!(st, 200);
    // (`reasoning_tokens` stays in the usage: it is accounting, not text.)
    assert!(
        !sse.contains("\"type\":\"reasoning\"")
            && !sse.contains("response.reasoning")
            && !sse.contains("encrypted_content"),
        "{sse}"
    );
    // (12 tokens: the mock ends it as `response.incomplete`.)
    assert!(
        sse.contains("response.output_text.delta")
            && sse.contains("\"type\":\"response.incomplete\""),
        "{sse}"
    );
    assert!(!sse.contains("\"output_index\":1"), "{sse}");
}

/// Whether every one of `ids` is blocked as a campaign member.
async fn blocked_as_campaign(gw: &str, auth: &str, ids: &[String]) -> bool {
    for id in ids {
        let v = account_state(gw, auth, id).await;
        if !(v["detected"]["campaign"] == true && v["verdict"] == "block") {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn the_admin_api_overrides_allowlists_and_reloads() {
    let dir = temp_dir("admin");
    let db = dir.join("keys.db");
    let store = distillguard_storage::open(db.to_str().unwrap()).unwrap();
    let (_, key) = store.create_key("acct_a", "tier4", "test").unwrap();
    drop(store);
    let up = mock(Duration::ZERO).await;
    let token = "dgadmin_test-token";
    let admin = format!(
        "[admin]\ntoken_sha256 = \"{}\"\n",
        distillguard_storage::sha256_hex(token)
    );
    let text = |models: &str| {
        format!(
            "keys_db = \"{}\"\n{admin}\n[detect]\nenabled = false\n\
             [[upstreams]]\nname = \"mock-openai\"\nurl = \"http://{up}\"\ndialect = \"openai\"\nmodels = [{models}]\n",
            db.display()
        )
    };
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text("\"atlas-3\"")).unwrap();
    let cfg = Config::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let gw = spawn(distillguard_gateway::router_from(cfg, Some(path.clone())).unwrap()).await;
    let bearer = format!("Authorization: Bearer {key}\r\n");
    let auth = format!("Authorization: Bearer {token}\r\n");
    // No token, a wrong one: 401.
    assert_eq!(get_with(&gw, "/admin/overrides", "").await.0, 401);
    assert_eq!(
        get_with(&gw, "/admin/overrides", "Authorization: Bearer nope\r\n")
            .await
            .0,
        401
    );
    // Block by hand: the next request gets 403.
    assert_eq!(
        post_with(&gw, "/v1/chat/completions", CHAT, &bearer)
            .await
            .0,
        200
    );
    // A body the detector cannot read is refused, and counted for the
    // account.
    let bad = r#"{"model":"atlas-3","max_tokens":"5","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        post_with(&gw, "/v1/chat/completions", bad, &bearer).await.0,
        400
    );
    let (_, _, b) = get_with(&gw, "/admin/accounts/acct_a", &auth).await;
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["rejected"], serde_json::json!({"400": 1}), "{b}");
    let (st, _, body) = request_with(
        "PUT",
        &gw,
        "/admin/accounts/acct_a/override",
        r#"{"verdict":"block","reason":"ticket 7"}"#,
        &auth,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        post_with(&gw, "/v1/chat/completions", CHAT, &bearer)
            .await
            .0,
        403
    );
    let (_, _, body) = get_with(&gw, "/admin/accounts/acct_a", &auth).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["verdict"], "block");
    assert_eq!(v["override"]["reason"], "ticket 7");
    // A bad verdict is refused, naming what is expected.
    let (st, _, body) = request_with(
        "PUT",
        &gw,
        "/admin/accounts/acct_a/override",
        r#"{"verdict":"nuke"}"#,
        &auth,
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("allow|monitor|throttle|block"), "{body}");
    // Allowlisted: served again; the override list shows it.
    let (st, _, _) = request_with(
        "PUT",
        &gw,
        "/admin/allowlist/acct_a",
        r#"{"reason":"partner"}"#,
        &auth,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        post_with(&gw, "/v1/chat/completions", CHAT, &bearer)
            .await
            .0,
        200
    );
    let (_, _, body) = get_with(&gw, "/admin/overrides", &auth).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["overrides"][0]["verdict"], "allow");
    // Overrides outlive a restart (a new gateway on the same store).
    let cfg = Config::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let gw2 = spawn(router_ok(cfg)).await;
    let (_, _, body) = get_with(&gw2, "/admin/accounts/acct_a", &auth).await;
    assert!(body.contains("partner"), "{body}");
    // Removed (by a named operator, with a reason): twice is 404.
    let carol = format!("{auth}X-Distillguard-Operator: carol\r\n");
    assert_eq!(
        request_with(
            "DELETE",
            &gw,
            "/admin/allowlist/acct_a",
            r#"{"reason":"contract ended"}"#,
            &carol
        )
        .await
        .0,
        200
    );
    assert_eq!(
        request_with("DELETE", &gw, "/admin/allowlist/acct_a", "", &auth)
            .await
            .0,
        404
    );
    // Reload: a model added to the file is served at once; a broken file
    // is refused and the old config stays.
    let other = CHAT.replace("atlas-3", "atlas-9");
    assert_eq!(
        post_with(&gw, "/v1/chat/completions", &other, &bearer)
            .await
            .0,
        404
    );
    std::fs::write(&path, text("\"atlas-3\", \"atlas-9\"")).unwrap();
    let (st, _, body) = request_with("POST", &gw, "/admin/reload", "", &auth).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(r#""restart_needed":[]"#), "{body}");
    assert_eq!(
        post_with(&gw, "/v1/chat/completions", &other, &bearer)
            .await
            .0,
        200
    );
    std::fs::write(&path, "listen = 5").unwrap();
    let (st, _, body) = request_with("POST", &gw, "/admin/reload", "", &auth).await;
    assert_eq!(st, 400);
    assert!(body.contains("old config stays"), "{body}");
    assert_eq!(
        post_with(&gw, "/v1/chat/completions", &other, &bearer)
            .await
            .0,
        200
    );
    assert_eq!(metric(&gw, "distillguard_config_reloads_total").await, 1.0);
    // Every change is in the audit log, newest first, with who and why.
    let token_id = &distillguard_storage::sha256_hex(token)[..8];
    let (st, _, body) = get_with(&gw, "/admin/audit?limit=4", &auth).await;
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let seen: Vec<String> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["actor"], e["action"], e["target"], e["detail"]
            )
        })
        .collect();
    let me = format!("admin:{token_id}");
    assert_eq!(
        seen,
        vec![
            format!("\"{me}\" \"config.reload\" \"{}\" \"\"", path.display()),
            format!("\"{me} (carol)\" \"override.clear\" \"acct_a\" \"contract ended\""),
            format!("\"{me}\" \"override.set\" \"acct_a\" \"allow: partner\""),
            format!("\"{me}\" \"override.set\" \"acct_a\" \"block: ticket 7\""),
        ]
    );
    // A failed reload changed nothing and is not logged; a bad query is
    // refused.
    assert_eq!(get_with(&gw, "/admin/audit?limit=x", &auth).await.0, 400);
    assert_eq!(get_with(&gw, "/admin/audit?since=3", &auth).await.0, 400);
    let (_, _, body) = get_with(&gw, "/admin/audit", &auth).await;
    assert!(body.contains("key.create"), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_campaign_linked_in_the_gateway_is_blocked_as_a_whole() {
    let dir = temp_dir("campaign");
    let db = dir.join("keys.db");
    let store = distillguard_storage::open(db.to_str().unwrap()).unwrap();
    let keys: Vec<String> = (0..4)
        .map(|i| {
            store
                .create_key(&format!("hydra_{i}"), "bulk", "test")
                .unwrap()
                .1
        })
        .collect();
    let (_, honest) = store.create_key("honest", "bulk", "test").unwrap();
    drop(store);
    let up = mock(Duration::ZERO).await;
    let token = "dgadmin_t";
    // Every account is flagged from its first request (throttle at any
    // risk, block never by risk alone), so that only linking can block.
    let cfg = keyed(
        &up,
        &db,
        &format!(
            "trusted_proxies = [\"127.0.0.1\"]\n[admin]\ntoken_sha256 = \"{}\"\n[limits.tiers.bulk]\nrpm = 100000\ntpm = 100000000\n\
             [detect.thresholds]\nmonitor = 0.0\nthrottle = 0.0\nblock = 1.0\nmin_requests = 1\n\
             [link]\nlink_risk = 0.0\n",
            distillguard_storage::sha256_hex(token)
        ),
    );
    let gw = spawn(router_ok(cfg)).await;
    // The hydra: four accounts behind the same two proxy exits, one system
    // prompt, one template.
    let body = |i: usize| {
        format!(
            r#"{{"model":"atlas-3","max_tokens":20,"messages":[{{"role":"system","content":"You are a careful solver. Always show every step."}},{{"role":"user","content":"Solve step by step: what is {i} times {}? Explain your reasoning."}}]}}"#,
            i + 7
        )
    };
    for round in 0..12 {
        for (a, k) in keys.iter().enumerate() {
            let ip = if (round + a) % 2 == 0 {
                "198.51.100.7"
            } else {
                "198.51.100.8"
            };
            let h = format!(
                "Authorization: Bearer {k}\r\nX-Forwarded-For: {ip}\r\nUser-Agent: python-httpx/0.27\r\n"
            );
            let st = post_with(&gw, "/v1/chat/completions", &body(round * 4 + a), &h)
                .await
                .0;
            assert!(st == 200 || st == 403, "{st}");
        }
    }
    let honest_h = format!("Authorization: Bearer {honest}\r\nX-Forwarded-For: 203.0.113.50\r\n");
    assert_eq!(
        post_with(&gw, "/v1/chat/completions", CHAT, &honest_h)
            .await
            .0,
        200
    );
    // The verdicts come from the detector thread: wait for them.
    let auth = format!("Authorization: Bearer {token}\r\n");
    let hydra: Vec<String> = (0..4).map(|a| format!("hydra_{a}")).collect();
    let (g, a, h) = (&gw, &auth, &hydra);
    let all = eventually(|| async move { blocked_as_campaign(g, a, h).await.then_some(()) }).await;
    assert!(all.is_some(), "the campaign was not linked and blocked");
    for (a, k) in keys.iter().enumerate() {
        let h = format!("Authorization: Bearer {k}\r\nX-Forwarded-For: 198.51.100.7\r\n");
        let (st, _, b) = post_with(&gw, "/v1/chat/completions", &body(a), &h).await;
        assert_eq!(st, 403, "{b}");
    }
    // The honest account is flagged (throttle at any risk) but in no
    // campaign (once the detector has seen it).
    let v = eventually(|| async move {
        let v = account_state(g, a, "honest").await;
        (!v["detected"].is_null()).then_some(v)
    })
    .await
    .expect("the detector never saw the honest account");
    assert_eq!(v["detected"]["verdict"], "throttle", "{v}");
    assert_eq!(v["detected"]["campaign"], false, "{v}");
    assert_eq!(metric(&gw, "distillguard_campaign_accounts").await, 4.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn account_records_link_a_shared_card_in_the_gateway() {
    let dir = temp_dir("card");
    let db = dir.join("keys.db");
    let store = distillguard_storage::open(db.to_str().unwrap()).unwrap();
    let keys: Vec<String> = (0..3)
        .map(|i| {
            store
                .create_key(&format!("card_{i}"), "bulk", "test")
                .unwrap()
                .1
        })
        .collect();
    let (_, other) = store.create_key("own_card", "bulk", "test").unwrap();
    drop(store);
    // Three accounts pay with one card; a fourth with its own.
    let accounts = dir.join("accounts.jsonl");
    let mut lines = String::new();
    for i in 0..3 {
        lines.push_str(&format!(
            "{{\"account_id\":\"card_{i}\",\"tier\":\"tier2\",\"payment_fingerprint\":\"pm_shared_77\"}}\n"
        ));
    }
    lines.push_str(
        "{\"account_id\":\"own_card\",\"tier\":\"tier2\",\"payment_fingerprint\":\"pm_own_1\"}\n",
    );
    std::fs::write(&accounts, lines).unwrap();
    let up = mock(Duration::ZERO).await;
    let token = "dgadmin_c";
    let cfg = keyed(
        &up,
        &db,
        &format!(
            "trusted_proxies = [\"127.0.0.1\"]\n[admin]\ntoken_sha256 = \"{}\"\n[limits.tiers.bulk]\nrpm = 100000\ntpm = 100000000\n\
             [detect]\naccounts = \"{}\"\n\
             [detect.thresholds]\nmonitor = 0.0\nthrottle = 0.0\nblock = 1.0\nmin_requests = 1\n\
             [link]\nlink_risk = 0.0\n",
            distillguard_storage::sha256_hex(token),
            accounts.display()
        ),
    );
    let gw = spawn(router_ok(cfg)).await;
    // Nothing in the requests links them: own addresses, own prompts.
    let prompts = [
        "What is the capital of France?",
        "Write a haiku about autumn leaves",
        "How do I sort a list in Python",
        "Recommend a good book on history",
    ];
    for round in 0..3 {
        for (a, k) in keys.iter().chain([&other]).enumerate() {
            let h = format!(
                "Authorization: Bearer {k}\r\nX-Forwarded-For: 203.0.113.{}\r\n",
                10 + a * 10 + round
            );
            let body = CHAT.replace("Explain TCP", prompts[a]);
            let st = post_with(&gw, "/v1/chat/completions", &body, &h).await.0;
            assert!(st == 200 || st == 403, "{st}");
        }
    }
    let auth = format!("Authorization: Bearer {token}\r\n");
    let cards: Vec<String> = (0..3).map(|a| format!("card_{a}")).collect();
    let (g, a, c) = (&gw, &auth, &cards);
    let linked =
        eventually(|| async move { blocked_as_campaign(g, a, c).await.then_some(()) }).await;
    assert!(
        linked.is_some(),
        "the shared card did not link the accounts"
    );
    // The detector works behind the requests: its verdict on the last
    // account may come after the campaign's.
    let v = eventually(|| async move {
        let v = account_state(g, a, "own_card").await;
        (!v["detected"].is_null()).then_some(v)
    })
    .await
    .expect("own_card was never scored");
    assert_eq!(v["detected"]["campaign"], false, "{v}");
    // A malformed record stops the gateway from starting, naming its line.
    std::fs::write(&accounts, "{\"account_id\":\"x\"}\nnot json\n").unwrap();
    let cfg = keyed(
        &up,
        &db,
        &format!("[detect]\naccounts = \"{}\"\n", accounts.display()),
    );
    let err = match router(cfg) {
        Ok(_) => panic!("a bad accounts file was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("detect.accounts") && err.contains(":2"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
