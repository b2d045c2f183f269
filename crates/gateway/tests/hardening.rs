//! The gateway against slow and hostile clients, through its real server
//! loop (`serve`): half-sent heads and bodies, a budget of body
//! bytes, bodies the detector cannot read, and a shutdown with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use distillguard_gateway::{Config, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::{mock_with, post_within, request_with};

const CHAT: &str =
    r#"{"model":"atlas-3","messages":[{"role":"user","content":"Explain TCP"}],"max_tokens":20}"#;

/// A gateway on a free port in front of a mock, served by the real loop;
/// returns its address, the shutdown trigger and the server's task.
async fn gateway(
    extra: &str,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let up = mock_with(Duration::ZERO, None).await;
    gateway_to(&format!("http://{up}"), extra).await
}

/// The same, in front of `upstream` (a URL).
async fn gateway_to(
    upstream: &str,
    extra: &str,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (gw, _, stop, task) = gateway_full(upstream, extra, "enabled = false").await;
    (gw, stop, task)
}

/// The same with `detect` as the `[detect]` table; also returns the
/// internal listener's address when `extra` asks for one.
async fn gateway_full(
    upstream: &str,
    extra: &str,
    detect: &str,
) -> (
    String,
    Option<String>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let cfg = Config::from_toml(&format!(
        "listen = \"127.0.0.1:0\"\nauth = \"none\"\n{extra}\n[detect]\n{detect}\n\
         [[upstreams]]\nname = \"o\"\nurl = \"{upstream}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n\
         [[upstreams]]\nname = \"a\"\nurl = \"{upstream}\"\ndialect = \"anthropic\"\nmodels = [\"atlas-3\"]\n"
    ))
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        serve(
            cfg,
            None,
            move |a, i| {
                let _ = tx.send((a, i));
            },
            async {
                let _ = stopped.await;
            },
        )
        .await
        .unwrap();
    });
    let (addr, internal) = rx.await.unwrap();
    (
        format!("127.0.0.1:{}", addr.port()),
        internal.map(|i| format!("127.0.0.1:{}", i.port())),
        stop,
        task,
    )
}

/// Opens a connection and sends `bytes`, then nothing more.
async fn half_sent(addr: &str, bytes: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes.as_bytes()).await.unwrap();
    s
}

/// What the server answered on `s` (status), or `None` if it closed the
/// connection without an answer; within `secs`.
async fn outcome(mut s: TcpStream, secs: u64) -> Option<u16> {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(secs), s.read_to_end(&mut buf))
        .await
        .expect("the connection was never closed")
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_heads_are_cut_and_normal_requests_keep_being_answered() {
    let (gw, _stop, _task) = gateway("max_connections = 20\nheader_timeout_secs = 1").await;
    // Fill every connection with half a head.
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(half_sent(&gw, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").await);
    }
    // A normal request waits in the backlog only until the deadline frees
    // a place (before: forever).
    let (st, _, _) = post_within(10, &gw, "/v1/chat/completions", CHAT).await;
    assert_eq!(st, 200);
    // Every half-sent head was closed.
    for s in slow {
        let _ = outcome(s, 5).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_declared_gets_408_at_the_body_deadline() {
    let (gw, _stop, _task) = gateway("body_timeout_secs = 1").await;
    let started = Instant::now();
    let s = half_sent(
        &gw,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":",
    )
    .await;
    assert_eq!(outcome(s, 10).await, Some(408));
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_cannot_hold_more_than_the_body_budget() {
    let (gw, _stop, _task) =
        gateway("body_timeout_secs = 2\nmax_inflight_body_bytes = 65536").await;
    // Two stalled uploads of 30 KB take 60 KiB of the 64 KiB budget.
    let head = |n: usize| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n{{"
        )
    };
    let a = half_sent(&gw, &head(30_000)).await;
    let b = half_sent(&gw, &head(30_000)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third that would pass the budget is refused at once.
    let c = half_sent(&gw, &head(30_000)).await;
    assert_eq!(outcome(c, 5).await, Some(503));
    // The stalled ones time out and give their room back.
    assert_eq!(outcome(a, 10).await, Some(408));
    assert_eq!(outcome(b, 10).await, Some(408));
    assert_eq!(
        post_within(10, &gw, "/v1/chat/completions", CHAT).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_the_detector_cannot_read_are_refused_in_the_apis_format() {
    let (gw, _stop, _task) = gateway("").await;
    let deep = format!(
        r#"{{"model":"atlas-3","messages":[{{"role":"user","content":"hi"}}],"metadata":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let bad = [
        r#"{"model":"atlas-3","max_tokens":"100","messages":[{"role":"user","content":"hi"}]}"#
            .to_string(),
        r#"{"model":"atlas-3","messages":[{"role":"user","content":7}]}"#.to_string(),
        r#"{"model":"atlas-3","temperature":1e400,"messages":[{"role":"user","content":"hi"}]}"#
            .to_string(),
        r#"{"model":"atlas-3","messages":[{"role":"user","content":"\ud800"}]}"#.to_string(),
        deep,
        r#"{"messages":[{"role":"user","content":"hi"}]}"#.to_string(),
    ];
    for body in &bad {
        let (st, _, payload) = post_within(10, &gw, "/v1/chat/completions", body).await;
        assert_eq!(st, 400, "{body:.80}: {payload}");
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{payload}");
    }
    // In Anthropic's format on its path.
    let (st, _, payload) = post_within(
        10,
        &gw,
        "/v1/messages",
        r#"{"model":"atlas-3","max_tokens":"5","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(st, 400);
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // Invalid UTF-8 inside a string.
    let mut s = TcpStream::connect(&gw).await.unwrap();
    let mut raw = br#"{"model":"atlas-3","messages":[{"role":"user","content":"a"#.to_vec();
    raw.extend_from_slice(&[0xff, 0xfe]);
    raw.extend_from_slice(br#""}]}"#);
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            raw.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.write_all(&raw).await.unwrap();
    assert_eq!(outcome(s, 10).await, Some(400));
    // A malformed chunked body is 400, not 413.
    let s = half_sent(
        &gw,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(outcome(s, 10).await, Some(400));
    // And a readable request still passes.
    assert_eq!(
        post_within(10, &gw, "/v1/chat/completions", CHAT).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_what_is_left_at_the_drain_deadline() {
    let (gw, stop, task) = gateway("drain_timeout_secs = 1\nbody_timeout_secs = 600").await;
    // A request whose body never comes holds its connection.
    let _held = half_sent(
        &gw,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the gateway did not stop at its drain deadline")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Nothing listens any more.
    assert!(TcpStream::connect(&gw).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_answer_in_the_apis_format() {
    let (gw, _stop, _task) = gateway("internal_listen = \"127.0.0.1:0\"").await;
    for path in ["/v1/completions", "/v1/embeddings", "/v1/responses/resp_1"] {
        let (st, _, body) = request_with("POST", &gw, path, "{}", "").await;
        assert_eq!(st, 404, "{path}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "not_found_error", "{body}");
    }
    let (st, _, body) = request_with("POST", &gw, "/v1/messages/count_tokens", "{}", "").await;
    assert_eq!(st, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["type"], "error",
        "Anthropic's format under /v1/messages: {body}"
    );
    // A batch without requests: 400, in Anthropic's format too.
    let (st, _, body) = request_with("POST", &gw, "/v1/messages/batches", "{}", "").await;
    assert_eq!(st, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error", "{body}");
    assert!(body.contains("requests"), "{body}");
    let (st, _, body) = request_with("GET", &gw, "/v1/chat/completions", "", "").await;
    assert_eq!(st, 405);
    assert!(body.contains("\"error\""), "{body}");
    // Health and metrics are on the internal listener only.
    assert_eq!(request_with("GET", &gw, "/healthz", "", "").await.0, 404);
    assert_eq!(request_with("GET", &gw, "/metrics", "", "").await.0, 404);
}

/// A CA, and a certificate it signed for 127.0.0.1 and localhost, written
/// as PEM files into a fresh directory: (dir, ca, cert, key).
fn test_pki(name: &str) -> (std::path::PathBuf, String, String, String) {
    let dir = std::env::temp_dir().join(format!("dg-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "distillguard test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
    let write = |f: &str, text: String| {
        let p = dir.join(f);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ca_pem = write("ca.pem", ca.pem());
    let cert = write("cert.pem", leaf.pem());
    let key = write("key.pem", key.serialize_pem());
    (dir, ca_pem, cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_the_listener_and_to_an_https_upstream_with_its_own_ca() {
    let (_dir, ca, cert, key) = test_pki("both");
    // Gateway A speaks TLS to its clients.
    let (a, _stop_a, _task_a) =
        gateway(&format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"")).await;
    // Plain HTTP to a TLS listener gets no answer.
    let mut s = TcpStream::connect(&a).await.unwrap();
    s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    // Gateway B forwards to A over https, trusting the test CA.
    let upstream = format!("https://{a}");
    let (b, _stop_b, _task_b) =
        gateway_to(&upstream, &format!("[tls]\nupstream_ca = \"{ca}\"")).await;
    let (st, _, body) = post_within(10, &b, "/v1/chat/completions", CHAT).await;
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["choices"][0]["message"]["content"].as_str().is_some(),
        "{body}"
    );
    // Without the CA, the upstream's certificate is refused: 502.
    let (c, _stop_c, _task_c) = gateway_to(&upstream, "").await;
    let (st, _, body) = post_within(10, &c, "/v1/chat/completions", CHAT).await;
    assert_eq!(st, 502, "{body}");
}

/// A gauge or counter's value in a `/metrics` page.
fn metric(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_fresh_addresses_is_forgotten_once_idle() {
    // Without keys every client address is an account. 35 addresses
    // (through a trusted proxy) that behave are forgotten once idle, so
    // the detector's state goes back to nothing (before: kept for ever).
    let up = mock_with(Duration::ZERO, None).await;
    let (gw, internal, _stop, _task) = gateway_full(
        &format!("http://{up}"),
        "trusted_proxies = [\"127.0.0.1/32\"]\ninternal_listen = \"127.0.0.1:0\"",
        "forget_idle_secs = 1",
    )
    .await;
    let internal = internal.unwrap();
    for i in 0..35 {
        let hop = if i < 30 {
            format!("198.51.100.{i}")
        } else {
            // One IPv6 client's /64: every address in it is one account.
            format!("2001:db8:7::{i:x}")
        };
        let (st, _, _) = request_with(
            "POST",
            &gw,
            "/v1/chat/completions",
            CHAT,
            &format!("X-Forwarded-For: {hop}\r\n"),
        )
        .await;
        assert_eq!(st, 200);
    }
    let page = |_: ()| async { request_with("GET", &internal, "/metrics", "", "").await.2 };
    // 30 IPv4 accounts and one /64, all tracked while they are fresh.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_max = 0;
    let mut last = String::new();
    while Instant::now() < deadline {
        last = page(()).await;
        let tracked = metric(&last, "distillguard_detector_accounts").unwrap();
        seen_max = seen_max.max(tracked);
        if metric(&last, "distillguard_detector_accounts_forgotten_total") == Some(31) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen_max, 31, "{last}");
    assert_eq!(
        metric(&last, "distillguard_detector_accounts"),
        Some(0),
        "{last}"
    );
    assert_eq!(
        metric(&last, "distillguard_detector_accounts_forgotten_total"),
        Some(31),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_uris_and_large_heads_are_refused_in_the_apis_format() {
    let (gw, _stop, _task) = gateway("").await;
    // 10 KB of query: 414 with an OpenAI error body (before: hyper's own
    // answer, with an empty body, and only past 64 KB).
    let path = format!("/v1/chat/completions?{}", "a".repeat(10_000));
    let (st, _, body) = request_with("POST", &gw, &path, CHAT, "").await;
    assert_eq!(st, 414);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
    // 100 KB of headers under /v1/messages: 431 in Anthropic's format.
    let big = format!("X-Filler: {}\r\n", "b".repeat(100_000));
    let (st, _, body) = request_with("POST", &gw, "/v1/messages", "{}", &big).await;
    assert_eq!(st, 431);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error", "{body}");
    // Normal requests are untouched.
    assert_eq!(
        post_within(10, &gw, "/v1/chat/completions", CHAT).await.0,
        200
    );
}
