//! The gateway in front of `upstream-mock`: pass-through (JSON and
//! streaming, both APIs), and errors in each API's format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use distillguard_gateway::{Config, router};
use distillguard_mock::{Config as MockConfig, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn spawn(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("127.0.0.1:{}", addr.port())
}

async fn mock(latency: Duration) -> String {
    spawn(distillguard_mock::router(MockConfig {
        models: vec!["atlas-3".into()],
        first_token: latency,
        between_chunks: Duration::ZERO,
        reasoning: true,
        source: Source::Canned,
        fault: None,
    }))
    .await
}

fn config(upstream: &str, timeout: u64, cap: usize) -> Config {
    Config::from_toml(&format!(
        "max_body_bytes = {cap}\nupstream_timeout_secs = {timeout}\n\
         [[upstreams]]\nname = \"mock-openai\"\nurl = \"http://{upstream}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n\
         [[upstreams]]\nname = \"mock-anthropic\"\nurl = \"http://{upstream}\"\ndialect = \"anthropic\"\nmodels = [\"atlas-3\"]\n"
    ))
    .unwrap()
}

fn router_ok(c: Config) -> axum::Router {
    router(c).unwrap()
}

async fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    let (status, _, payload) = post_with(addr, path, body, "").await;
    (status, payload)
}

const CHAT: &str =
    r#"{"model":"atlas-3","messages":[{"role":"user","content":"Explain TCP"}],"max_tokens":20}"#;

#[tokio::test]
async fn answers_pass_through_unchanged_in_both_apis() {
    let up = mock(Duration::ZERO).await;
    let gw = spawn(router_ok(config(&up, 5, 1 << 20))).await;
    let direct = post(&up, "/v1/chat/completions", CHAT).await;
    let via = post(&gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(via.0, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&via.1).unwrap(),
        serde_json::from_str::<serde_json::Value>(&direct.1).unwrap()
    );
    let stream = r#"{"model":"atlas-3","stream":true,"max_tokens":12,"messages":[{"role":"user","content":"hi"}]}"#;
    let (st, sse) = post(&gw, "/v1/messages", stream).await;
    assert_eq!(st, 200);
    assert!(
        sse.contains("event: message_stop") || sse.contains("message_stop"),
        "{sse}"
    );
    assert!(sse.contains("thinking_delta"));
    let (st, sse) = post(&gw, "/v1/chat/completions", stream).await;
    assert_eq!(st, 200);
    assert!(sse.contains("data: [DONE]"), "{sse}");
    // Metrics count what passed, and the detector saw it.
    let mut s = tokio::net::TcpStream::connect(&gw).await.unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {gw}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut m = String::new();
    s.read_to_string(&mut m).await.unwrap();
    assert!(
        m.contains("distillguard_requests_total{api=\"openai\",code=\"200\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("distillguard_requests_total{api=\"anthropic\",code=\"200\"} 1"),
        "{m}"
    );
    assert!(m.contains("distillguard_detector_enqueued_total 3"), "{m}");
    assert!(m.contains("distillguard_detector_up 1"));
    assert!(m.contains("distillguard_request_duration_seconds_count 3"));
}

#[tokio::test]
async fn client_errors_come_in_the_apis_own_format() {
    let up = mock(Duration::ZERO).await;
    let gw = spawn(router_ok(config(&up, 5, 200))).await;
    // Too large: 413.
    let big = format!(
        r#"{{"model":"atlas-3","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(500)
    );
    let (st, body) = post(&gw, "/v1/chat/completions", &big).await;
    assert_eq!(st, 413);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than 200 bytes")
    );
    let (st, body) = post(&gw, "/v1/messages", &big).await;
    assert_eq!(st, 413);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "request_too_large");
    // Unknown model: 404; not JSON: 400.
    let (st, body) = post(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"nope","messages":[]}"#,
    )
    .await;
    assert_eq!(st, 404, "{body}");
    let (st, _) = post(&gw, "/v1/messages", "not json").await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn upstream_failures_are_tagged_and_answered() {
    // Refused: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("127.0.0.1:{}", a.port())
    };
    let gw = spawn(router_ok(config(&dead, 5, 1 << 20))).await;
    let (st, body) = post(&gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(st, 502);
    assert!(body.contains("upstream mock-openai"), "{body}");
    // Too slow: 504 after the timeout, in Anthropic's format.
    let slow = mock(Duration::from_millis(2500)).await;
    let gw = spawn(router_ok(config(&slow, 1, 1 << 20))).await;
    let started = std::time::Instant::now();
    let (st, body) = post(
        &gw,
        "/v1/messages",
        r#"{"model":"atlas-3","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(st, 504, "{body}");
    assert!(started.elapsed() < Duration::from_millis(2400));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
}

async fn post_with(addr: &str, path: &str, body: &str, header: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{header}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp).to_string();
    let (head, payload) = text.split_once("\r\n\r\n").unwrap();
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        head.to_string(),
        payload.to_string(),
    )
}

#[tokio::test]
async fn keys_are_required_and_limits_answer_429_with_retry_after() {
    let dir = std::env::temp_dir().join(format!("dg-gw-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("keys.db");
    let _ = std::fs::remove_file(&db);
    let store = distillguard_storage::KeyStore::open(db.to_str().unwrap()).unwrap();
    let (_, key) = store.create("acct_free", "free").unwrap();
    let (rec2, key2) = store.create("acct_other", "tier1").unwrap();
    store.revoke(&rec2.id).unwrap();
    drop(store);
    let up = mock(Duration::ZERO).await;
    let mut cfg = config(&up, 5, 1 << 20);
    cfg.keys_db = Some(db.to_str().unwrap().to_string());
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
}

#[tokio::test]
async fn the_event_log_replays_in_the_event_log_format() {
    let dir = std::env::temp_dir().join(format!("dg-gw-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let up = mock(Duration::ZERO).await;
    let mut cfg = config(&up, 5, 1 << 20);
    cfg.log = Some(distillguard_gateway::eventlog::LogConfig {
        path: dir.join("events.jsonl"),
        max_bytes: 600,
        keep: 3,
    });
    let gw = spawn(router_ok(cfg)).await;
    for _ in 0..4 {
        assert_eq!(post(&gw, "/v1/chat/completions", CHAT).await.0, 200);
    }
    // Lines are written off the request path; wait for them.
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines.clear();
        for f in [
            "events.jsonl",
            "events.jsonl.1",
            "events.jsonl.2",
            "events.jsonl.3",
        ] {
            if let Ok(t) = std::fs::read_to_string(dir.join(f)) {
                lines.extend(t.lines().map(str::to_string));
            }
        }
        if lines.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines.len(), 4);
    // Rotated at 600 bytes, and every line parses as an event.
    assert!(dir.join("events.jsonl.1").exists());
    for l in &lines {
        let e = distillguard_core::parse_event_line(l).unwrap();
        assert_eq!(e.account_id, "anonymous");
        assert_eq!(e.request.last_user_text, "Explain TCP");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
