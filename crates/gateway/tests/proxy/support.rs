//! What the test modules share: temporary folders, running the binary,
//! servers and their ports, HTTP, and Python environments.

use crate::common::{mock_with, request_with};
use distillguard_gateway::{Config, router};
use std::time::Duration;

pub(crate) async fn mock(latency: Duration) -> String {
    mock_with(latency, None).await
}

pub(crate) fn config(upstream: &str, timeout: u64, cap: usize) -> Config {
    Config::from_toml(&format!(
        "auth = \"none\"\nmax_body_bytes = {cap}\nupstream_timeout_secs = {timeout}\n\
         [[upstreams]]\nname = \"mock-openai\"\nurl = \"http://{upstream}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n\
         [[upstreams]]\nname = \"mock-anthropic\"\nurl = \"http://{upstream}\"\ndialect = \"anthropic\"\nmodels = [\"atlas-3\"]\n"
    ))
    .unwrap()
}

pub(crate) fn router_ok(c: Config) -> axum::Router {
    router(c).unwrap()
}

pub(crate) async fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    let (status, _, payload) = post_with(addr, path, body, "").await;
    (status, payload)
}

pub(crate) const CHAT: &str =
    r#"{"model":"atlas-3","messages":[{"role":"user","content":"Explain TCP"}],"max_tokens":20}"#;

pub(crate) async fn post_with(
    addr: &str,
    path: &str,
    body: &str,
    header: &str,
) -> (u16, String, String) {
    request_with("POST", addr, path, body, header).await
}

pub(crate) async fn metric(addr: &str, name: &str) -> f64 {
    let (_, _, body) = get_with(addr, "/metrics", "").await;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `probe` every 20 ms for up to 5 s (verdicts and counts come from
/// the detector thread, asynchronously); its first `Some`.
pub(crate) async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
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
pub(crate) async fn account_state(gw: &str, auth: &str, id: &str) -> serde_json::Value {
    let (_, _, b) = get_with(gw, &format!("/admin/accounts/{id}"), auth).await;
    serde_json::from_str(&b).unwrap()
}

pub(crate) async fn get_with(addr: &str, path: &str, header: &str) -> (u16, String, String) {
    request_with("GET", addr, path, "", header).await
}

pub(crate) fn keyed(upstream: &str, db: &std::path::Path, extra: &str) -> Config {
    Config::from_toml(&format!(
        "keys_db = \"{}\"\n{extra}\n\
         [[upstreams]]\nname = \"mock-openai\"\nurl = \"http://{upstream}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n\
         [[upstreams]]\nname = \"mock-anthropic\"\nurl = \"http://{upstream}\"\ndialect = \"anthropic\"\nmodels = [\"atlas-3\"]\n",
        db.display()
    ))
    .unwrap()
}

pub(crate) fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dg-gw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
