//! The endpoints for other gateways (`[integrations]`): batched events into
//! the detector, verdicts as JSON, forward-auth in the APIs' formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Duration;

use distillguard_gateway::Config;
mod common;
use common::{mock_with, request_with, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "dgint_test-token";
const ADMIN: &str = "dgadmin_test-token";

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dg-int-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A gateway whose detector blocks an account from its first request.
async fn gateway(name: &str, extra: &str) -> (String, String) {
    let dir = temp_dir(name);
    let db = dir.join("keys.db");
    let store = distillguard_storage::open(db.to_str().unwrap()).unwrap();
    let (_, key) = store.create_key("acct_keyed", "tier4", "test").unwrap();
    drop(store);
    let up = mock_with(Duration::ZERO, None).await;
    let cfg = Config::from_toml(&format!(
        "keys_db = \"{}\"\n\
         [admin]\ntoken_sha256 = \"{}\"\n\
         [integrations]\ntoken_sha256 = \"{}\"\nthrottle_rpm = 2\n{extra}\n\
         [detect]\nthresholds = {{ monitor = 0.0, throttle = 0.0, block = 0.0, min_requests = 1 }}\n\
         [[upstreams]]\nname = \"mock-openai\"\nurl = \"http://{up}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n",
        db.display(),
        distillguard_storage::sha256_hex(ADMIN),
        distillguard_storage::sha256_hex(TOKEN),
    ))
    .unwrap();
    (spawn(distillguard_gateway::router(cfg).unwrap()).await, key)
}

fn line(account: &str, i: usize) -> String {
    format!(
        r#"{{"ts":"2026-12-01T10:00:{:02}Z","account_id":"{account}","request":{{"model":"atlas-3","messages":[{{"role":"user","content":"Solve step by step: {i} + {i}"}}]}}}}"#,
        i % 60
    )
}

fn token() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

/// A raw POST of bytes (a gzip body); the answer as text.
async fn post_bytes(addr: &str, path: &str, body: &[u8], header: &str) -> (u16, String) {
    let (status, _, payload) = post_raw(addr, path, body, header).await;
    (status, String::from_utf8_lossy(&payload).to_string())
}

async fn verdict(gw: &str, account: &str) -> serde_json::Value {
    let (st, _, b) =
        request_with("GET", gw, &format!("/v1/verdicts/{account}"), "", &token()).await;
    assert_eq!(st, 200, "{b}");
    serde_json::from_str(&b).unwrap()
}

/// The account's verdict once the detector has blocked it (polled for up
/// to two seconds; the last answer otherwise).
async fn blocked_verdict(gw: &str, account: &str) -> serde_json::Value {
    let mut seen = serde_json::Value::Null;
    for _ in 0..100 {
        seen = verdict(gw, account).await;
        if seen["verdict"] == "block" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

#[tokio::test]
async fn posted_events_reach_the_detector_and_bad_lines_are_named() {
    let (gw, _) = gateway("ingest", "").await;
    let batch = format!("{}\nnot json\n\n{}\n", line("acct_x", 1), line("acct_x", 2));
    // The token is required, and is not the admin token.
    assert_eq!(
        request_with("POST", &gw, "/v1/events", &batch, "").await.0,
        401
    );
    let admin = format!("Authorization: Bearer {ADMIN}\r\n");
    assert_eq!(
        request_with("POST", &gw, "/v1/events", &batch, &admin)
            .await
            .0,
        401
    );
    let (st, _, b) = request_with("POST", &gw, "/v1/events", &batch, &token()).await;
    assert_eq!(st, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["accepted"], 2, "{b}");
    assert_eq!(v["malformed"], 1);
    assert_eq!(v["errors"][0]["line"], 2);
    assert!(v["errors"][0]["error"].as_str().unwrap().contains("JSON"));
    // Only bad lines: 400. An unknown format or parameter: 400.
    assert_eq!(
        request_with("POST", &gw, "/v1/events", "{}\n", &token())
            .await
            .0,
        400
    );
    for q in ["?format=csv", "?limit=3"] {
        let path = format!("/v1/events{q}");
        assert_eq!(
            request_with("POST", &gw, &path, &batch, &token()).await.0,
            400
        );
    }
    // Gzip, and LiteLLM's payloads.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(line("acct_y", 3).as_bytes()).unwrap();
    let h = format!("{}Content-Encoding: gzip\r\n", token());
    let (st, b) = post_bytes(&gw, "/v1/events", &gz.finish().unwrap(), &h).await;
    assert_eq!((st, b.contains(r#""accepted":1"#)), (200, true), "{b}");
    let litellm = r#"{"startTime":1764590400.0,"endTime":1764590401.0,"status":"success","model_group":"atlas-3","metadata":{"user_api_key_hash":"abcdef0123456789ff","user_api_key_user_id":"acct_z"},"messages":[{"role":"user","content":"hi"}],"model_parameters":{"max_tokens":8}}"#;
    let (st, _, b) =
        request_with("POST", &gw, "/v1/events?format=litellm", litellm, &token()).await;
    assert_eq!(st, 200, "{b}");
    assert!(b.contains(r#""accepted":1"#), "{b}");
    // OpenTelemetry GenAI spans: two in one export request.
    let span = |id: &str| {
        format!(
            r#"{{"spanId":"{id}","startTimeUnixNano":"1764590400000000000","attributes":[{{"key":"gen_ai.request.model","value":{{"stringValue":"atlas-3"}}}},{{"key":"user.id","value":{{"stringValue":"acct_w"}}}}]}}"#
        )
    };
    let otlp = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{},{}]}}]}}]}}"#,
        span("a1"),
        span("a2")
    );
    let (st, _, b) = request_with("POST", &gw, "/v1/events?format=otlp", &otlp, &token()).await;
    assert_eq!(st, 200, "{b}");
    assert!(b.contains(r#""accepted":2"#), "{b}");
    // The detector scored them: each account is blocked (thresholds 0).
    for account in ["acct_x", "acct_y", "acct_z", "acct_w"] {
        let seen = blocked_verdict(&gw, account).await;
        assert_eq!(seen["verdict"], "block", "{account}: {seen}");
        assert_eq!(seen["source"], "detector");
    }
    assert_eq!(verdict(&gw, "acct_never_seen").await["verdict"], "allow");
    let (_, _, m) = request_with("GET", &gw, "/metrics", "", "").await;
    assert!(
        m.contains("distillguard_ingested_total{line=\"accepted\"} 6"),
        "{m}"
    );
    assert!(
        m.contains("distillguard_ingested_total{line=\"malformed\"} 2"),
        "{m}"
    );
}

/// An OTLP/HTTP protobuf export request: GenAI chat spans of `accounts`
/// (one each), and a span of the `bad` account without a user.
fn otlp_protobuf(accounts: &[&str], bad: bool) -> Vec<u8> {
    use distillguard_core::import::otlp_proto::encode::*;
    let mut scope = Vec::new();
    let mut spans: Vec<(Option<&str>, u64)> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (Some(*a), i as u64))
        .collect();
    if bad {
        spans.push((None, 99));
    }
    for (user, i) in spans {
        let mut span = Vec::new();
        bytes(2, &i.to_be_bytes(), &mut span);
        bytes(5, b"chat atlas-3", &mut span);
        fixed64(7, 1_764_590_400_000_000_000 + i * 1_000_000_000, &mut span);
        fixed64(8, 1_764_590_401_000_000_000 + i * 1_000_000_000, &mut span);
        bytes(9, &kv_str("gen_ai.operation.name", "chat"), &mut span);
        bytes(9, &kv_str("gen_ai.request.model", "atlas-3"), &mut span);
        bytes(9, &kv_int("gen_ai.usage.output_tokens", 500), &mut span);
        if let Some(u) = user {
            bytes(9, &kv_str("user.id", u), &mut span);
        }
        bytes(2, &span, &mut scope);
    }
    let mut rs = Vec::new();
    bytes(2, &scope, &mut rs);
    let mut req = Vec::new();
    bytes(1, &rs, &mut req);
    req
}

/// A raw POST whose answer body is kept as bytes (a protobuf answer).
async fn post_raw(addr: &str, path: &str, body: &[u8], header: &str) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..at]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, resp[at + 4..].to_vec())
}

#[tokio::test]
async fn an_otlp_receiver_feeds_the_detector_from_protobuf_and_json_exports() {
    let (gw, _) = gateway("otlp", "").await;
    let proto = format!("{}Content-Type: application/x-protobuf\r\n", token());
    // The token is required.
    let body = otlp_protobuf(&["acct_p1", "acct_p2"], false);
    let (st, _, _) = post_raw(
        &gw,
        "/v1/traces",
        &body,
        "Content-Type: application/x-protobuf\r\n",
    )
    .await;
    assert_eq!(st, 401);
    // Protobuf: an empty ExportTraceServiceResponse, in protobuf.
    let (st, head, answer) = post_raw(&gw, "/v1/traces", &body, &proto).await;
    assert_eq!(st, 200, "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: application/x-protobuf"),
        "{head}"
    );
    assert!(answer.is_empty(), "{answer:?}");
    // A span without a user: the others are kept, the answer's partial
    // success counts it (field 1 { rejected_spans = 1, error_message }).
    let (st, _, answer) = post_raw(
        &gw,
        "/v1/traces",
        &otlp_protobuf(&["acct_p3"], true),
        &proto,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(answer[0], 0x0a, "field 1, length-delimited: {answer:?}");
    let inner = if answer[1] & 0x80 != 0 { 3 } else { 2 };
    assert_eq!(
        &answer[inner..inner + 2],
        &[0x08, 0x01],
        "rejected_spans = 1: {answer:?}"
    );
    assert!(
        String::from_utf8_lossy(&answer).contains("user"),
        "{answer:?}"
    );
    // Gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&otlp_protobuf(&["acct_p4"], false)).unwrap();
    let h = format!("{proto}Content-Encoding: gzip\r\n");
    assert_eq!(
        post_raw(&gw, "/v1/traces", &gz.finish().unwrap(), &h)
            .await
            .0,
        200
    );
    // JSON, with a span without a user: partialSuccess in JSON.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"startTimeUnixNano":"1764590400000000000","attributes":[{"key":"gen_ai.request.model","value":{"stringValue":"atlas-3"}},{"key":"user.id","value":{"stringValue":"acct_j1"}}]},
        {"startTimeUnixNano":"1764590400000000000","attributes":[{"key":"gen_ai.request.model","value":{"stringValue":"atlas-3"}}]}]}]}]}"#
        .replace('\n', "");
    let h = format!("{}Content-Type: application/json\r\n", token());
    let (st, b) = post_bytes(&gw, "/v1/traces", json.as_bytes(), &h).await;
    assert_eq!(st, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{b}");
    // Not an export request at all: 400, named.
    let (st, _, answer) = post_raw(&gw, "/v1/traces", &[0x0b, 0x00], &proto).await;
    assert_eq!(st, 400);
    assert!(String::from_utf8_lossy(&answer).contains("OTLP"));
    // The detector scored every good span: blocked at thresholds 0.
    for account in ["acct_p1", "acct_p2", "acct_p3", "acct_p4", "acct_j1"] {
        let seen = blocked_verdict(&gw, account).await;
        assert_eq!(seen["verdict"], "block", "{account}: {seen}");
    }
}

#[tokio::test]
async fn forward_auth_denies_blocked_throttles_throttled_and_allows_the_rest() {
    let (gw, key) = gateway("auth", "").await;
    let t = format!("X-Distillguard-Token: {TOKEN}\r\n");
    let auth = |extra: &str| format!("{t}{extra}");
    // No token: 401.
    assert_eq!(
        request_with("GET", &gw, "/v1/auth", "", "X-Account-Id: a\r\n")
            .await
            .0,
        401
    );
    // Unknown to the detector: allowed, and said so.
    let (st, head, _) =
        request_with("GET", &gw, "/v1/auth", "", &auth("X-Account-Id: fresh\r\n")).await;
    assert_eq!(st, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("x-distillguard-verdict: allow"),
        "{head}"
    );
    // No account at all: allowed as unknown (fail-open, the default).
    let (st, head, _) = request_with("GET", &gw, "/v1/auth", "", &t).await;
    assert_eq!(st, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("x-distillguard-verdict: unknown")
    );
    // Blocked by the detector: 403 in the API's format (OpenAI's, or
    // Anthropic's for a Messages request), on any path below /v1/auth.
    let (st, _, b) = request_with("POST", &gw, "/v1/events", &line("acct_b", 1), &token()).await;
    assert_eq!(st, 200, "{b}");
    let mut got = (0, String::new(), String::new());
    for _ in 0..100 {
        got = request_with(
            "GET",
            &gw,
            "/v1/auth",
            "",
            &auth("X-Account-Id: acct_b\r\n"),
        )
        .await;
        if got.0 == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got.0, 403, "{}", got.2);
    let v: serde_json::Value = serde_json::from_str(&got.2).unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
    assert!(
        got.1
            .to_ascii_lowercase()
            .contains("x-distillguard-verdict: block")
    );
    let (st, _, b) = request_with(
        "POST",
        &gw,
        "/v1/auth/v1/messages",
        "",
        &auth("X-Account-Id: acct_b\r\nanthropic-version: 2023-06-01\r\n"),
    )
    .await;
    assert_eq!(st, 403);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "permission_error");
    // A distillguard key on the request names its account.
    let admin = format!("Authorization: Bearer {ADMIN}\r\n");
    let (st, _, b) = request_with(
        "PUT",
        &gw,
        "/admin/accounts/acct_keyed/override",
        r#"{"verdict":"throttle","reason":"ticket 9"}"#,
        &admin,
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let bearer = auth(&format!("Authorization: Bearer {key}\r\n"));
    let statuses: Vec<(u16, String)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let (st, head, _) = request_with("GET", &gw, "/v1/auth", "", &bearer).await;
            v.push((st, head));
        }
        v
    };
    // Throttled at 2 a minute: two pass, the third waits.
    assert_eq!(
        statuses.iter().map(|s| s.0).collect::<Vec<_>>(),
        [200, 200, 429]
    );
    let head = statuses[2].1.to_ascii_lowercase();
    assert!(head.contains("retry-after:"), "{head}");
    assert!(head.contains("x-distillguard-verdict: throttle"), "{head}");
    let v = verdict(&gw, "acct_keyed").await;
    assert_eq!(
        (v["verdict"].as_str(), v["source"].as_str()),
        (Some("throttle"), Some("override"))
    );
    let (_, _, m) = request_with("GET", &gw, "/metrics", "", "").await;
    assert!(
        m.contains("distillguard_forward_auth_total{outcome=\"deny\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("distillguard_forward_auth_total{outcome=\"throttle\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn forward_auth_fails_closed_when_asked_and_is_off_without_the_table() {
    let (gw, _) = gateway("closed", "fail_closed = true").await;
    let t = format!("X-Distillguard-Token: {TOKEN}\r\n");
    let (st, _, b) = request_with("GET", &gw, "/v1/auth", "", &t).await;
    assert_eq!(st, 401, "{b}");
    let up = mock_with(Duration::ZERO, None).await;
    let cfg = Config::from_toml(&format!(
        "auth = \"none\"\n[[upstreams]]\nname = \"m\"\nurl = \"http://{up}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n"
    ))
    .unwrap();
    let off = spawn(distillguard_gateway::router(cfg).unwrap()).await;
    assert_eq!(request_with("GET", &off, "/v1/auth", "", &t).await.0, 404);
    // A token equal to the admin token's is refused in the config.
    let same = format!(
        "auth = \"none\"\n[admin]\ntoken_sha256 = \"{h}\"\n[integrations]\ntoken_sha256 = \"{h}\"\n\
         [[upstreams]]\nname = \"m\"\nurl = \"http://{up}\"\ndialect = \"openai\"\nmodels = [\"atlas-3\"]\n",
        h = distillguard_storage::sha256_hex(ADMIN)
    );
    let err = Config::from_toml(&same).unwrap_err().to_string();
    assert!(err.contains("integrations.token_sha256"), "{err}");
}
