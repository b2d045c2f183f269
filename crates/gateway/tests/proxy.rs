//! The gateway in front of `upstream-mock`: pass-through (JSON and
//! streaming, both APIs), and errors in each API's format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use distillguard_gateway::{Config, router};
use distillguard_mock::{Config as MockConfig, Source};
mod common;
use common::{mock_with, post_within, request_with, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn mock(latency: Duration) -> String {
    mock_with(latency, None).await
}

fn config(upstream: &str, timeout: u64, cap: usize) -> Config {
    Config::from_toml(&format!(
        "auth = \"none\"\nmax_body_bytes = {cap}\nupstream_timeout_secs = {timeout}\n\
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
    request_with("POST", addr, path, body, header).await
}

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

#[tokio::test]
async fn the_responses_api_passes_through_and_is_metered_and_logged() {
    let dir = temp_dir("responses");
    let up = mock(Duration::ZERO).await;
    let mut cfg = config(&up, 5, 1 << 20);
    cfg.log = Some(distillguard_gateway::eventlog::LogConfig {
        path: dir.join("events.jsonl"),
        max_bytes: 1 << 20,
        keep: 1,
        durability: distillguard_gateway::eventlog::Durability::Sync,
        flush_interval_ms: std::num::NonZeroU64::MIN,
    });
    let gw = spawn(router_ok(cfg)).await;
    let body = r#"{"model":"atlas-3","instructions":"Think it through.","max_output_tokens":400,"reasoning":{"effort":"high","summary":"detailed"},"input":[{"role":"user","content":[{"type":"input_text","text":"Explain TCP step by step"}]}]}"#;
    // The same answer directly and through the gateway.
    let direct = post(&up, "/v1/responses", body).await;
    let via = post(&gw, "/v1/responses", body).await;
    assert_eq!(direct, via);
    let v: serde_json::Value = serde_json::from_str(&via.1).unwrap();
    assert_eq!(v["output"][0]["type"], "reasoning");
    let streamed = body.replacen("{", r#"{"stream":true,"#, 1);
    let (st, sse) = post(&gw, "/v1/responses", &streamed).await;
    assert_eq!(st, 200);
    assert!(
        sse.contains("event: response.reasoning_summary_text.delta"),
        "{sse}"
    );
    // A Responses body the detector cannot read is refused in OpenAI's
    // format.
    let (st, err) = post(
        &gw,
        "/v1/responses",
        r#"{"model":"atlas-3","input":[{"role":"user","content":7}]}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(err.contains("request.input[0].content"), "{err}");
    // Both answers are in the log (sync: written before the answers
    // completed), as Responses events with their metered accounting.
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let events: Vec<_> = text
        .lines()
        .map(|l| distillguard_core::parse_event_line(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    for e in &events {
        assert_eq!(e.dialect, distillguard_core::Dialect::Responses);
        assert_eq!(e.request.last_user_text, "Explain TCP step by step");
        assert!(e.request.sampling.reasoning_summary);
        let r = e.response.as_ref().unwrap();
        assert!(r.reasoning_returned, "{text}");
        assert!(
            r.reasoning_tokens.unwrap() > 0 && r.output_tokens.unwrap() > 0,
            "{text}"
        );
        assert_eq!(r.finish_reason.as_deref(), Some("completed"));
    }
    let _ = std::fs::remove_dir_all(&dir);
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
        durability: Default::default(),
        flush_interval_ms: std::num::NonZeroU64::MIN,
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
        // Without keys, a client is known by its (canonical) address.
        assert_eq!(e.account_id, "ip:127.0.0.1");
        assert_eq!(e.client.ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(e.request.last_user_text, "Explain TCP");
        // The answer's accounting, as metered on its way back.
        let r = e.response.unwrap();
        assert!(r.output_tokens.unwrap() >= 1, "{l}");
        assert!(r.reasoning_returned, "{l}");
        assert_eq!(e.status, Some(200));
        assert!(e.latency_ms.is_some());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request that must finish (whatever it gets) within `secs`.
const STREAM_CHAT: &str = r#"{"model":"atlas-3","stream":true,"max_tokens":60,"messages":[{"role":"user","content":"Explain TCP"}]}"#;
const STREAM_MSG: &str = r#"{"model":"atlas-3","stream":true,"max_tokens":60,"messages":[{"role":"user","content":"Explain TCP"}]}"#;

async fn metric(addr: &str, name: &str) -> f64 {
    let (_, _, body) = get_with(addr, "/metrics", "").await;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `probe` every 20 ms for up to 5 s (verdicts and counts come from
/// the detector thread, asynchronously); its first `Some`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    mut probe: impl FnMut() -> F,
) -> Option<T> {
    for _ in 0..250 {
        if let Some(v) = probe().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The admin view of an account.
async fn account_state(gw: &str, auth: &str, id: &str) -> serde_json::Value {
    let (_, _, b) = get_with(gw, &format!("/admin/accounts/{id}"), auth).await;
    serde_json::from_str(&b).unwrap()
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

async fn get_with(addr: &str, path: &str, header: &str) -> (u16, String, String) {
    request_with("GET", addr, path, "", header).await
}

#[tokio::test]
async fn upstream_faults_get_the_right_status_and_never_hang_the_client() {
    use distillguard_mock::Fault;
    // 5xx from the model server: 502, in each API's format, with its status.
    let e500 = mock_with(Duration::ZERO, Some(Fault::Status(500))).await;
    let gw = spawn(router_ok(config(&e500, 5, 1 << 20))).await;
    let (st, _, body) = post_within(5, &gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(st, 502, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("answered 500"),
        "{body}"
    );
    let (st, _, body) = post_within(5, &gw, "/v1/messages", STREAM_MSG).await;
    assert_eq!(st, 502);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["type"],
        "error"
    );

    // Reset mid-answer: a stream ends with the API's error event; a JSON
    // answer is cut short (fewer bytes than its length), never hung.
    let reset = mock_with(Duration::ZERO, Some(Fault::Reset)).await;
    let gw = spawn(router_ok(config(&reset, 5, 1 << 20))).await;
    let (st, _, sse) = post_within(5, &gw, "/v1/chat/completions", STREAM_CHAT).await;
    assert_eq!(st, 200, "{sse}");
    assert!(sse.contains(r#""code":"upstream_error""#), "{sse}");
    assert!(!sse.contains("[DONE]"), "{sse}");
    let (st, _, sse) = post_within(5, &gw, "/v1/messages", STREAM_MSG).await;
    assert_eq!(st, 200);
    assert!(sse.contains("event: error"), "{sse}");
    assert!(!sse.contains("message_stop"), "{sse}");
    let (st, head, body) = post_within(5, &gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(st, 200);
    // Cut short: fewer bytes than the length, or no last chunk.
    let head = head.to_ascii_lowercase();
    match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        Some(len) => assert!(body.len() < len.trim().parse::<usize>().unwrap()),
        None => {
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
            assert!(!body.ends_with("0\r\n\r\n"), "{body}");
        }
    }
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());

    // A slow drip (16 bytes every 1.5 s) against a 1 s idle timeout: cut
    // off with an error event after about a second.
    let drip = mock_with(
        Duration::ZERO,
        Some(Fault::Drip(Duration::from_millis(1500))),
    )
    .await;
    let mut cfg = config(&drip, 5, 1 << 20);
    cfg.stream_idle_timeout_secs = 1;
    let gw = spawn(router_ok(cfg)).await;
    let started = std::time::Instant::now();
    let (st, _, sse) = post_within(6, &gw, "/v1/chat/completions", STREAM_CHAT).await;
    assert_eq!(st, 200);
    assert!(sse.contains("sent nothing for 1s"), "{sse}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Never answers: 504 at the head timeout.
    let hang = mock_with(Duration::ZERO, Some(Fault::Hang)).await;
    let gw2 = spawn(router_ok(config(&hang, 1, 1 << 20))).await;
    let (st, _, _) = post_within(4, &gw2, "/v1/messages", STREAM_MSG).await;
    assert_eq!(st, 504);

    // Each fault is counted by how the answer ended.
    assert_eq!(
        metric(&gw, "distillguard_answers_total{outcome=\"stalled\"}").await,
        1.0
    );
}

fn keyed(upstream: &str, db: &std::path::Path, extra: &str) -> Config {
    Config::from_toml(&format!(
        "keys_db = \"{}\"\n{extra}\n\
         [[upstreams]]\nname = \"mock-openai\"\nurl = \"http://{upstream}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n\
         [[upstreams]]\nname = \"mock-anthropic\"\nurl = \"http://{upstream}\"\ndialect = \"anthropic\"\nmodels = [\"atlas-3\"]\n",
        db.display()
    ))
    .unwrap()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dg-gw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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
async fn a_client_that_leaves_mid_stream_is_counted_and_its_request_still_observed() {
    let up = spawn(distillguard_mock::router(MockConfig {
        models: vec!["atlas-3".into()],
        first_token: Duration::ZERO,
        between_chunks: Duration::from_millis(100),
        reasoning: false,
        source: Source::Canned,
        fault: None,
    }))
    .await;
    let gw = spawn(router_ok(config(&up, 5, 1 << 20))).await;
    let mut s = tokio::net::TcpStream::connect(&gw).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {gw}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{STREAM_CHAT}",
        STREAM_CHAT.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(s);
    let g = &gw;
    let positive = |name: &'static str| async move {
        let v = metric(g, name).await;
        (v > 0.0).then_some(v)
    };
    let gone = eventually(|| positive("distillguard_answers_total{outcome=\"client_gone\"}")).await;
    assert_eq!(gone, Some(1.0));
    // The request still reached the detector.
    let processed = eventually(|| positive("distillguard_detector_processed_total")).await;
    assert_eq!(processed, Some(1.0));
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

#[tokio::test]
async fn a_continued_responses_conversation_is_known_by_the_answers_the_gateway_served() {
    // The client sends only its new turn with `previous_response_id`; the
    // gateway adds the depth of the answers it served (crates/gateway/src/
    // chains.rs), streamed or not, and counts what it could not resolve.
    let up = mock(Duration::ZERO).await;
    let gw = spawn(router_ok(config(&up, 10, 1 << 20))).await;
    let first = r#"{"model":"atlas-3","input":"Explain TCP","max_output_tokens":20}"#;
    let (st, body) = post(&gw, "/v1/responses", first).await;
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    // A streamed continuation of it, then a continuation of an id the
    // gateway never served.
    let next = format!(
        r#"{{"model":"atlas-3","input":"and UDP?","max_output_tokens":20,"stream":true,"previous_response_id":"{id}"}}"#
    );
    assert_eq!(post(&gw, "/v1/responses", &next).await.0, 200);
    let stray = r#"{"model":"atlas-3","input":"more","max_output_tokens":20,"previous_response_id":"resp_elsewhere"}"#;
    assert_eq!(post(&gw, "/v1/responses", stray).await.0, 200);
    assert_eq!(
        metric(
            &gw,
            "distillguard_responses_continued_total{known=\"true\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &gw,
            "distillguard_responses_continued_total{known=\"false\"}"
        )
        .await,
        1.0
    );
}
