//! Answers pass through unchanged in every API, errors come in each API's
//! format, upstream failures and faults are tagged and never hang a client,
//! and what the gateway observes replays as the event log.

use crate::common::{mock_with, post_within, spawn};
use distillguard_mock::{Config as MockConfig, Source};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

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
