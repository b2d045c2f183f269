//! Other gateways enforcing our verdicts and feeding our detector: nginx
//! `auth_request`, the LiteLLM plugin, the OpenTelemetry SDK.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// nginx (Debian's, with `auth_request`) in front of `upstream-mock`,
/// asking distillguard's forward-auth endpoint before each request, as
/// `examples/nginx/distillguard.conf` shows; the client is the official
/// OpenAI SDK. An allowed account is answered by the model; an account an
/// operator blocked gets 403 (PermissionDeniedError); a throttled one gets
/// 429 with Retry-After (RateLimitError) past its rate.
#[test]
fn nginx_enforces_distillguard_verdicts_with_auth_request() {
    let bin = py_venv();
    let d = Dir::new("nginx");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let allowed = create_key(db, "acct_ok", "tier4");
    let blocked = create_key(db, "acct_bad", "tier4");
    let throttled = create_key(db, "acct_slow", "tier4");
    let tokens: Vec<String> = (0..2)
        .map(|_| {
            let out = String::from_utf8(dg(&["keys", "admin-token"]).stdout).unwrap();
            out.trim().to_string()
        })
        .collect();
    let (admin, integration) = (&tokens[0], &tokens[1]);
    let (mock, up) = start_mock(&[]);
    let _mock = Server(mock);
    let head = format!(
        "keys_db = \"{db}\"\ninternal_listen = \"127.0.0.1:0\"\n\
         [admin]\ntoken_sha256 = \"{}\"\n\
         [integrations]\ntoken_sha256 = \"{}\"\nthrottle_rpm = 2\n",
        distillguard_storage::sha256_hex(admin),
        distillguard_storage::sha256_hex(integration),
    );
    let cfg = gateway_config(&d, "gw.toml", &up, &["openai"], &head);
    let (gw, urls) = start_gateway_urls(&cfg, 2);
    let _gw = Server(gw);
    let internal = &urls[1];
    let auth = format!("Authorization: Bearer {admin}\r\n");
    for (account, verdict) in [("acct_bad", "block"), ("acct_slow", "throttle")] {
        let (st, body) = http(
            "PUT",
            internal,
            &format!("/admin/accounts/{account}/override"),
            &format!(r#"{{"verdict":"{verdict}","reason":"test"}}"#),
            &auth,
        );
        assert_eq!(st, 200, "{body}");
    }
    // nginx from the shipped recipe, its placeholders filled.
    let port = free_port();
    let recipe = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nginx/distillguard.conf"),
    )
    .unwrap();
    let dir = d.path("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = recipe
        .replace("{listen}", &format!("127.0.0.1:{port}"))
        .replace("{upstream}", &format!("{up}/v1/"))
        .replace("{verdicts}", internal)
        .replace("{token}", integration)
        .replace("{dir}", dir.to_str().unwrap());
    let conf_path = dir.join("nginx.conf");
    write(&conf_path, &conf);
    let which = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nginx");
    let nginx = Command::new(which)
        .args(["-e", dir.join("error.log").to_str().unwrap()])
        .args([
            "-p",
            dir.to_str().unwrap(),
            "-c",
            conf_path.to_str().unwrap(),
        ])
        // One process (no workers), so that killing it leaves nothing
        // behind holding the test's output.
        .args(["-g", "daemon off; master_process off;"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx (.ci/run installs nginx-light)");
    let _nginx = Server(nginx);
    listening(port);
    let out = Command::new(bin.join("python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/nginx.py"))
        .env("NGINX", format!("http://127.0.0.1:{port}"))
        .env("ALLOWED", &allowed)
        .env("BLOCKED", &blocked)
        .env("THROTTLED", &throttled)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}\n{}\nnginx: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    let (_, metrics) = http("GET", internal, "/metrics", "", "");
    assert!(
        metrics.contains("distillguard_forward_auth_total{outcome=\"deny\"} 1"),
        "{metrics}"
    );
}

/// The LiteLLM plugin (`integrations/litellm/distillguard_callback.py`)
/// with the real LiteLLM library (PyPI, pinned): its logging callback sends
/// every `litellm.completion` call to `POST /v1/events?format=litellm`, the
/// gateway's detector finds the planted harvest (6 accounts on one
/// step-by-step system prompt), and the plugin's pre-call hook, given
/// LiteLLM's own `UserAPIKeyAuth`, rejects those accounts with 403 and lets
/// the honest one through. (The LiteLLM proxy server itself is not run:
/// its `[proxy]` extra needs packages this machine's mirror lacks.)
#[test]
fn the_litellm_plugin_feeds_the_detector_and_rejects_flagged_accounts() {
    let venv = litellm_venv();
    let d = Dir::new("litellm-plugin");
    let token = String::from_utf8(dg(&["keys", "admin-token"]).stdout).unwrap();
    let token = token.trim();
    let (mock, up) = start_mock(&[]);
    let _mock = Server(mock);
    let head = format!(
        "internal_listen = \"127.0.0.1:0\"\n[integrations]\ntoken_sha256 = \"{}\"\n",
        distillguard_storage::sha256_hex(token)
    );
    let cfg = gateway_config(&d, "gw.toml", &up, &["openai"], &head);
    let (gw, urls) = start_gateway_urls(&cfg, 2);
    let _gw = Server(gw);
    let out = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/litellm_plugin.py"))
        .env("MOCK", format!("{up}/v1"))
        .env("DISTILLGUARD_URL", &urls[1])
        .env("DISTILLGUARD_TOKEN", token)
        .env(
            "PLUGIN_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integrations/litellm"),
        )
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim().ends_with("ok"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// LiteLLM (and FastAPI, which its proxy hooks raise errors with) in a
/// venv of their own; `.ci/run` fills it.
fn litellm_venv() -> PathBuf {
    venv_with("litellm-plugin-venv", "litellm, fastapi", &LITELLM_PACKAGES)
}

/// Pinned, as `.ci/run` installs them.
const LITELLM_PACKAGES: [&str; 2] = ["litellm==1.110.2", "fastapi==0.165.0"];

/// Spans exported by the real OpenTelemetry SDK reach the detector through
/// the gateway's `/v1/traces`: the account is scored (blocked at zero
/// thresholds) and the receiver counted every GenAI span, the one without
/// a user as malformed.
#[test]
fn the_opentelemetry_sdk_exports_genai_spans_into_the_detector() {
    let venv = venv_with(
        "otel-venv",
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        &OTEL_PACKAGES,
    );
    let d = Dir::new("otel-sdk");
    let token = "dgint_otel-test";
    let (mut mock, up) = start_mock(&[]);
    let cfg = gateway_config(
        &d,
        "gw.toml",
        &up,
        &["openai"],
        &format!(
            "internal_listen = \"127.0.0.1:0\"\n[integrations]\ntoken_sha256 = \"{}\"\n\
             [detect]\nthresholds = {{ monitor = 0.0, throttle = 0.0, block = 0.0, min_requests = 1 }}\n",
            distillguard_storage::sha256_hex(token)
        ),
    );
    let (mut gw, urls) = start_gateway_urls(&cfg, 2);
    let internal = urls[1].clone();
    let out = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/otel_export.py"))
        .env("ENDPOINT", format!("{internal}/v1/traces"))
        .env("TOKEN", token)
        .env("ACCOUNT", "acct_otel")
        .env("N", "12")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok 12",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let auth = format!("Authorization: Bearer {token}\r\n");
    let mut seen = String::new();
    for _ in 0..100 {
        seen = http("GET", &internal, "/v1/verdicts/acct_otel", "", &auth).1;
        if seen.contains("\"block\"") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen.contains("\"verdict\":\"block\""), "{seen}");
    let metrics = http("GET", &internal, "/metrics", "", "").1;
    assert!(
        metrics.contains("distillguard_ingested_total{line=\"accepted\"} 12")
            && metrics.contains("distillguard_ingested_total{line=\"malformed\"} 1"),
        "{metrics}"
    );
    for c in [&mut gw, &mut mock] {
        let _ = c.kill();
        let _ = c.wait();
    }
}
