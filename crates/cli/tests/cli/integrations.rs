//! Other gateways enforcing our verdicts and feeding our detector: nginx
//! `auth_request`, the LiteLLM plugin, the OpenTelemetry SDK.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// A gateway whose forward-auth endpoint another gateway asks, in front of
/// `upstream-mock`: three keys, one allowed, one whose account an operator
/// blocked, one throttled (`throttle_rpm` 2).
struct ForwardAuth {
    d: Dir,
    allowed: String,
    blocked: String,
    throttled: String,
    /// The integration token (not its hash).
    token: String,
    /// The gateway's internal listener, where `/v1/auth` answers.
    internal: String,
    /// The model API.
    up: String,
    _servers: [Server; 2],
}

impl ForwardAuth {
    fn start(name: &str) -> ForwardAuth {
        let d = Dir::new(name);
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
        let (admin, token) = (&tokens[0], &tokens[1]);
        let (mock, up) = start_mock(&[]);
        let mock = Server(mock);
        let head = format!(
            "keys_db = \"{db}\"\ninternal_listen = \"127.0.0.1:0\"\n\
             [admin]\ntoken_sha256 = \"{}\"\n\
             [integrations]\ntoken_sha256 = \"{}\"\nthrottle_rpm = 2\n",
            distillguard_storage::sha256_hex(admin),
            distillguard_storage::sha256_hex(token),
        );
        let cfg = gateway_config(&d, "gw.toml", &up, &["openai"], &head);
        let (gw, urls) = start_gateway_urls(&cfg, 2);
        let gw = Server(gw);
        let internal = urls[1].clone();
        let auth = format!("Authorization: Bearer {admin}\r\n");
        for (account, verdict) in [("acct_bad", "block"), ("acct_slow", "throttle")] {
            let (st, body) = http(
                "PUT",
                &internal,
                &format!("/admin/accounts/{account}/override"),
                &format!(r#"{{"verdict":"{verdict}","reason":"test"}}"#),
                &auth,
            );
            assert_eq!(st, 200, "{body}");
        }
        ForwardAuth {
            d,
            allowed,
            blocked,
            throttled,
            token: token.clone(),
            internal,
            up,
            _servers: [mock, gw],
        }
    }

    /// The official OpenAI SDK through the other gateway at `proxy`
    /// (`tests/sdk/forward_auth.py`): the allowed key answered, the blocked
    /// one refused with 403, the throttled one with 429 on its third
    /// request. Panics with `log` on failure; then checks that
    /// distillguard counted the one denial.
    fn check_through(&self, proxy: &str, log: impl Fn() -> String) {
        let out = Command::new(py_venv().join("python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/forward_auth.py"))
            .env("PROXY", proxy)
            .env("ALLOWED", &self.allowed)
            .env("BLOCKED", &self.blocked)
            .env("THROTTLED", &self.throttled)
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
            "{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log()
        );
        let (_, metrics) = http("GET", &self.internal, "/metrics", "", "");
        assert!(
            metrics.contains("distillguard_forward_auth_total{outcome=\"deny\"} 1"),
            "{metrics}"
        );
    }
}

/// nginx (Debian's, with `auth_request`) in front of `upstream-mock`,
/// asking distillguard's forward-auth endpoint before each request, as
/// `examples/nginx/distillguard.conf` shows; the client is the official
/// OpenAI SDK. An allowed account is answered by the model; an account an
/// operator blocked gets 403 (PermissionDeniedError); a throttled one gets
/// 429 with Retry-After (RateLimitError) past its rate.
#[test]
fn nginx_enforces_distillguard_verdicts_with_auth_request() {
    let f = ForwardAuth::start("nginx");
    // nginx from the shipped recipe, its placeholders filled.
    let port = free_port();
    let recipe = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nginx/distillguard.conf"),
    )
    .unwrap();
    let dir = f.d.path("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = recipe
        .replace("{listen}", &format!("127.0.0.1:{port}"))
        .replace("{upstream}", &format!("{}/v1/", f.up))
        .replace("{verdicts}", &f.internal)
        .replace("{token}", &f.token)
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
    f.check_through(&format!("http://127.0.0.1:{port}"), || {
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    });
}

/// Caddy (Debian's) in front of `upstream-mock` with `forward_auth`, run
/// from `examples/caddy/Caddyfile` as shipped (its settings come from the
/// environment); the same checks as nginx's with the official OpenAI SDK.
/// Caddy hands distillguard's own answer back when it is not 2xx: the 403
/// in the API's format, and the 429 with its Retry-After.
#[test]
fn caddy_enforces_distillguard_verdicts_with_forward_auth() {
    let f = ForwardAuth::start("caddy");
    let port = free_port();
    let log = f.d.path("caddy.log");
    let caddy = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/caddy/Caddyfile"))
        .env("DG_LISTEN", format!("127.0.0.1:{port}"))
        .env("DG_UPSTREAM", &f.up)
        .env("DG_VERDICTS", &f.internal)
        .env("DG_INTEGRATION_TOKEN", &f.token)
        // Caddy's own state (none is kept: admin and autosave are off).
        .env("XDG_DATA_HOME", f.d.path("data"))
        .env("XDG_CONFIG_HOME", f.d.path("config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("caddy (.ci/run installs Debian's caddy)");
    let _caddy = Server(caddy);
    listening(port);
    f.check_through(&format!("http://127.0.0.1:{port}"), || {
        std::fs::read_to_string(&log).unwrap_or_default()
    });
}

/// A gateway in front of `upstream-mock` with the integrations endpoints
/// (ingest, traces, verdicts) on its internal listener, behind a fresh
/// integration token; `extra` is appended to its config.
struct Integrated {
    _servers: [Server; 2],
    d: Dir,
    /// The integration token (not its hash).
    token: String,
    /// The model API.
    up: String,
    /// The gateway's internal listener.
    internal: String,
}

/// Zero thresholds: every scored account is blocked (for tests of what
/// reaches the detector, not of how it judges).
const BLOCK_ALL: &str =
    "[detect]\nthresholds = { monitor = 0.0, throttle = 0.0, block = 0.0, min_requests = 1 }\n";

impl Integrated {
    fn start(name: &str, extra: &str) -> Integrated {
        let d = Dir::new(name);
        let token = String::from_utf8(dg(&["keys", "admin-token"]).stdout).unwrap();
        let token = token.trim().to_string();
        let (mock, up) = start_mock(&[]);
        let mock = Server(mock);
        let head = format!(
            "internal_listen = \"127.0.0.1:0\"\n[integrations]\ntoken_sha256 = \"{}\"\n{extra}",
            distillguard_storage::sha256_hex(&token)
        );
        let cfg = gateway_config(&d, "gw.toml", &up, &["openai"], &head);
        let (gw, urls) = start_gateway_urls(&cfg, 2);
        Integrated {
            _servers: [Server(gw), mock],
            d,
            token,
            up,
            internal: urls[1].clone(),
        }
    }
}

/// The LiteLLM plugin (`integrations/litellm/distillguard_callback.py`)
/// with the real LiteLLM library (PyPI, pinned): its logging callback sends
/// every `litellm.completion` call to `POST /v1/events?format=litellm`, the
/// gateway's detector finds the planted harvest (6 accounts on one
/// step-by-step system prompt), and the plugin's pre-call hook, given
/// LiteLLM's own `UserAPIKeyAuth`, rejects those accounts with 403 and lets
/// the honest one through. (The proxy server runs in the next test.)
#[test]
fn the_litellm_plugin_feeds_the_detector_and_rejects_flagged_accounts() {
    let venv = litellm_venv();
    let g = Integrated::start("litellm-plugin", "");
    let out = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/litellm_plugin.py"))
        .env("MOCK", format!("{}/v1", g.up))
        .env("DISTILLGUARD_URL", &g.internal)
        .env("DISTILLGUARD_TOKEN", &g.token)
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

/// The real LiteLLM proxy (PyPI `litellm[proxy]`, pinned; no virtual keys,
/// so the plugin takes the account from the `user` a client sends) loads
/// the plugin from its config, as `docs/integrations.md` shows, in front of
/// `upstream-mock`. The official OpenAI SDK sends the planted traffic
/// through it: its calls arrive at the gateway's ingest endpoint, the
/// harvest is detected, and LiteLLM itself refuses the harvesting accounts
/// (403) while an honest user is answered. The plugin's export file, the
/// proxy's own `StandardLoggingPayload`s, is then read by `analyze
/// --input-format litellm`, which finds exactly the planted harvest.
#[test]
fn the_litellm_proxy_with_the_plugin_refuses_a_detected_harvest() {
    let venv = venv_with(
        "litellm-proxy-venv",
        "litellm.proxy.proxy_server, openai",
        &LITELLM_PROXY_PACKAGES,
    );
    let g = Integrated::start("litellm-proxy", "");
    let (d, up) = (&g.d, &g.up);

    // The proxy's config, with the plugin beside it, as the docs show.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../integrations/litellm/distillguard_callback.py"),
        d.path("distillguard_callback.py"),
    )
    .unwrap();
    write(
        &d.path("litellm.yaml"),
        &format!(
            "model_list:\n  - model_name: atlas-3\n    litellm_params:\n      model: openai/atlas-3\n\
             \x20     api_base: {up}/v1\n      api_key: none\n\
             litellm_settings:\n  callbacks: distillguard_callback.proxy_handler_instance\n"
        ),
    );
    let export = d.path("litellm-export.jsonl");
    let port = free_port();
    let master = "sk-litellm-master-test";
    let mut proxy = Command::new(venv.join("bin/litellm"))
        .arg("--config")
        .arg(d.path("litellm.yaml"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .current_dir(&d.0)
        // The tests' own services are not the proxy's: with a database
        // URL, LiteLLM wants its Prisma client.
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("LITELLM_MASTER_KEY", master)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("DISTILLGUARD_URL", &g.internal)
        .env("DISTILLGUARD_TOKEN", &g.token)
        .env("DISTILLGUARD_ACCOUNT", "end-user")
        .env("DISTILLGUARD_EXPORT", &export)
        .stdout(std::fs::File::create(d.path("litellm.log")).unwrap())
        .stderr(std::fs::File::create(d.path("litellm.err")).unwrap())
        .spawn()
        .unwrap();
    // Up to three minutes: the proxy imports a great deal on its start.
    let started = within(180, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            || proxy.try_wait().is_ok_and(|s| s.is_some())
    }) && proxy.try_wait().is_ok_and(|s| s.is_none());
    let _proxy = Server(proxy);
    assert!(
        started,
        "the LiteLLM proxy did not start:\n{}\n{}",
        std::fs::read_to_string(d.path("litellm.log")).unwrap_or_default(),
        std::fs::read_to_string(d.path("litellm.err")).unwrap_or_default()
    );

    let calls: Vec<Call> = planted_rounds().into_iter().flatten().collect();
    let honest = calls.iter().filter(|c| c.0.starts_with("user-")).count();
    write(
        &d.path("calls.json"),
        &serde_json::to_string(&calls).unwrap(),
    );
    let client = |phase: &str| {
        let out = Command::new(venv.join("bin/python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/litellm_proxy.py"))
            .env("PROXY", format!("http://127.0.0.1:{port}"))
            .env("KEY", master)
            .env("CALLS", d.path("calls.json"))
            .env("PHASE", phase)
            .env("HARVEST", "harvest-0")
            .env("HONEST", "user-0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}\nproxy: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(d.path("litellm.err")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let sent: serde_json::Value = serde_json::from_str(&client("send")).unwrap();
    let refused = sent["refused"].as_object().unwrap();
    assert!(
        refused.keys().all(|a| a.starts_with("harvest-")),
        "an honest user was refused: {sent}"
    );
    let answered = sent["answered"].as_u64().unwrap() as usize;
    assert!(answered >= honest, "{sent}");

    // Once the gateway has scored the ingested calls, LiteLLM refuses the
    // harvest and answers the honest user.
    let mut codes = String::new();
    let refused_now = within(60, || {
        codes = client("verdict");
        codes == "403 200"
    });
    assert!(refused_now, "harvest-0 and user-0 got {codes}");

    // Every answered call is in the export, as LiteLLM logged it.
    let exported = within(30, || {
        std::fs::read_to_string(&export).is_ok_and(|s| s.lines().count() >= answered)
    });
    assert!(exported, "the plugin's export misses calls");
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        "--input-format",
        "litellm",
        "--litellm-account",
        "end-user",
        export.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]))
    .unwrap();
    assert_flags_the_planted_harvest(&v);
}

/// The LiteLLM proxy as `docs/integrations.md` installs it; `.ci/run`
/// fills its venv.
const LITELLM_PROXY_PACKAGES: [&str; 1] = ["litellm[proxy]==1.106.2"];

/// LiteLLM (and FastAPI, which its proxy hooks raise errors with) in a
/// venv of their own; `.ci/run` fills it.
fn litellm_venv() -> PathBuf {
    venv_with("litellm-plugin-venv", "litellm, fastapi", &LITELLM_PACKAGES)
}

/// Pinned, as `.ci/run` installs them.
const LITELLM_PACKAGES: [&str; 2] = ["litellm==1.110.2", "fastapi==0.165.0"];

/// An application instrumented with the OpenTelemetry instrumentation of
/// the official OpenAI SDK (PyPI `opentelemetry-instrumentation-openai-v2`,
/// pinned), its user named in baggage, exports its spans over OTLP/HTTP to
/// the gateway's receiver: each call becomes one event, read back from the
/// event bus the gateway hands ingested events to, with the model and the
/// token counts the SDK saw and the request's settings (and no prompt text:
/// the instrumentation records none by default); the detector scores the
/// account (blocked at zero thresholds).
#[test]
fn the_openai_sdk_instrumentation_exports_calls_as_events() {
    let venv = venv_with(
        "otel-openai-venv",
        "opentelemetry.instrumentation.openai_v2, opentelemetry.processor.baggage",
        &OTEL_OPENAI_PACKAGES,
    );
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let stream = format!("DGTEST_otel_openai_{nanos}");
    let g = Integrated::start(
        "otel-openai",
        &format!(
            "{BLOCK_ALL}[cluster.nats]\nurl = \"{nats}\"\nstream = \"{stream}\"\nsubject_prefix = \"dgtest.otel.{nanos}\"\n"
        ),
    );
    let n = 8;
    let out = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/otel_openai.py"))
        .env("MOCK", &g.up)
        .env("ENDPOINT", format!("{}/v1/traces", g.internal))
        .env("TOKEN", &g.token)
        .env("ACCOUNT", "acct_instrumented")
        .env("N", n.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen.len(), n);

    // The events as the gateway handed them on, in the bus's stream.
    let events = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use futures_util::StreamExt;
            let js = async_nats::jetstream::new(async_nats::connect(&nats).await.unwrap());
            let mut events = Vec::new();
            for _ in 0..100 {
                if let Ok(s) = js.get_stream(&stream).await
                    && s.cached_info().state.messages >= n as u64
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let s = js.get_stream(&stream).await.unwrap();
            let consumer = s
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
                .await
                .unwrap();
            let mut msgs = consumer.messages().await.unwrap().take(n);
            while let Some(m) = msgs.next().await {
                let text = String::from_utf8(m.unwrap().payload.to_vec()).unwrap();
                events.push(distillguard_core::parse_event_line(&text).unwrap());
            }
            js.delete_stream(&stream).await.unwrap();
            events
        });
    assert_eq!(events.len(), n);
    let mut events = events;
    events.sort_by_key(|e| e.ts);
    for (e, s) in events.iter().zip(&seen) {
        assert_eq!(e.account_id, "acct_instrumented");
        assert_eq!(e.model.as_deref(), s["model"].as_str(), "{e:?}");
        let r = e.response.as_ref().expect("a response");
        assert_eq!(
            r.input_tokens.map(u64::from),
            s["input_tokens"].as_u64(),
            "{e:?}"
        );
        assert_eq!(
            r.output_tokens.map(u64::from),
            s["output_tokens"].as_u64(),
            "{e:?}"
        );
        assert_eq!(e.request.sampling.max_tokens, Some(1024));
        assert_eq!(e.request.sampling.temperature, Some(0.0));
        // The instrumentation's default: no message content on its spans.
        assert_eq!(e.request.last_user_text, "");
    }
    let auth = format!("Authorization: Bearer {}\r\n", g.token);
    let verdict = http(
        "GET",
        &g.internal,
        "/v1/verdicts/acct_instrumented",
        "",
        &auth,
    )
    .1;
    assert!(verdict.contains("\"verdict\":\"block\""), "{verdict}");
}

/// The OpenAI SDK's OpenTelemetry instrumentation and what it exports
/// with; pinned, as `.ci/run` installs them.
/// (2.4b0 needs an `opentelemetry-util-genai` newer than any released;
/// 2.3b0 calls `wrapt` 1's API.)
const OTEL_OPENAI_PACKAGES: [&str; 8] = [
    "openai==3.57.0",
    "httpx==0.28.1",
    "wrapt==1.17.3",
    "opentelemetry-instrumentation-openai-v2==2.3b0",
    "opentelemetry-util-genai==1.3b0",
    "opentelemetry-processor-baggage==0.66b1",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
];

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
    let g = Integrated::start("otel-sdk", BLOCK_ALL);
    let (internal, token) = (&g.internal, &g.token);
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
        seen = http("GET", internal, "/v1/verdicts/acct_otel", "", &auth).1;
        if seen.contains("\"block\"") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen.contains("\"verdict\":\"block\""), "{seen}");
    let metrics = http("GET", internal, "/metrics", "", "").1;
    assert!(
        metrics.contains("distillguard_ingested_total{line=\"accepted\"} 12")
            && metrics.contains("distillguard_ingested_total{line=\"malformed\"} 1"),
        "{metrics}"
    );
}
