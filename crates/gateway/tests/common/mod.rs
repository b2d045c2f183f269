//! Helpers shared by the gateway's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use distillguard_mock::{Config as MockConfig, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn spawn(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = app.into_make_service_with_connect_info::<distillguard_gateway::listener::Peer>();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("127.0.0.1:{}", addr.port())
}

pub async fn mock_with(latency: Duration, fault: Option<distillguard_mock::Fault>) -> String {
    spawn(distillguard_mock::router(MockConfig {
        models: vec!["atlas-3".into()],
        first_token: latency,
        between_chunks: Duration::ZERO,
        reasoning: true,
        source: Source::Canned,
        fault,
    }))
    .await
}

pub async fn request_with(
    method: &str,
    addr: &str,
    path: &str,
    body: &str,
    header: &str,
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{header}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// A POST, answered within `secs` (else the test fails: the client hung).
pub async fn post_within(secs: u64, addr: &str, path: &str, body: &str) -> (u16, String, String) {
    tokio::time::timeout(
        Duration::from_secs(secs),
        request_with("POST", addr, path, body, ""),
    )
    .await
    .expect("the client hung")
}
