/*!
The enforcement gateway: an OpenAI- and Anthropic-compatible proxy in
front of the provider's model servers.

This is the first slice of issue 5. The proxy is written as phases over a
per-request context, in the style of Pingora: **read** (the body, capped),
**route** (the upstream serving the model), **forward** (the request
upstream, the response streamed back chunk by chunk, never buffered whole).
Errors are tagged by side: `Downstream` (the client's request), `Upstream`
(the model server: refused, timed out, failed), `Internal`. Each is
answered in the API's own error format, so that the official SDKs raise
the right exception.

Phase 0 (**authenticate**) checks the API key against the hashed store and
applies the key's and the account's request limits (429 with
`Retry-After`). Still to come (issue 5): token limits, the detection queue
and verdict actions, the admin API, metrics.

Endpoints: `POST /v1/chat/completions`, `POST /v1/messages`,
`GET /v1/models`, `GET /healthz`, `GET /metrics` (Prometheus). The server shuts down gracefully on
Ctrl-C and lets in-flight streams finish.
*/

pub mod config;
pub mod detector;
pub mod eventlog;
pub mod metrics;
pub mod withhold;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

pub use config::{Config, Dialect};

/// Which side an error is on.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The client's request is wrong (status 4xx).
    #[error("{message}")]
    Downstream {
        status: StatusCode,
        kind: &'static str,
        message: String,
    },
    /// The model server failed.
    #[error("upstream {upstream}: {message}")]
    Upstream {
        status: StatusCode,
        upstream: String,
        message: String,
    },
    #[error("internal: {0}")]
    Internal(String),
    /// Over a limit (429 with Retry-After).
    #[error("rate limit of {who} reached; retry after {retry_after}s")]
    Limited { retry_after: u64, who: String },
}

impl GatewayError {
    fn into_response(self, dialect: Dialect) -> Response {
        let retry = match &self {
            GatewayError::Limited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let (status, kind, message) = match &self {
            GatewayError::Limited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                self.to_string(),
            ),
            GatewayError::Downstream {
                status,
                kind,
                message,
            } => (*status, *kind, message.clone()),
            GatewayError::Upstream { status, .. } => (*status, "api_error", self.to_string()),
            GatewayError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                self.to_string(),
            ),
        };
        let body = match dialect {
            Dialect::Openai => {
                json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
            }
            Dialect::Anthropic => {
                json!({"type": "error", "error": {"type": anthropic_kind(status, kind), "message": message}})
            }
        };
        let mut r = (status, axum::Json(body)).into_response();
        if let Some(s) = retry
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

fn anthropic_kind(status: StatusCode, kind: &str) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ if kind == "invalid_request_error" => "invalid_request_error",
        _ => "api_error",
    }
}

struct Gateway {
    cfg: Config,
    client: Client<HttpConnector, Body>,
    keys: Option<std::sync::Mutex<distillguard_storage::KeyStore>>,
    limits: std::sync::Mutex<Limiter>,
    detector: Option<detector::Detector>,
    metrics: metrics::Metrics,
    log: Option<eventlog::EventLog>,
}

/// Per key and per account request limits (GCRA: a minute's allowance as
/// burst, refilling continuously), from the account tier's published-style
/// limits (`core::tier`).
#[derive(Default)]
struct Limiter {
    /// Theoretical arrival time per key or account, in ms.
    tat: std::collections::HashMap<String, f64>,
}

impl Limiter {
    /// Admits a request at `now_ms` for `who` at `rpm`; else the seconds to wait.
    fn admit(&mut self, who: &str, rpm: u32, now_ms: f64) -> Result<(), u64> {
        let interval = 60_000.0 / f64::from(rpm.max(1));
        let burst = 60_000.0;
        let tat = self.tat.get(who).copied().unwrap_or(now_ms).max(now_ms);
        if tat - now_ms > burst - interval {
            return Err(((tat - now_ms - (burst - interval)) / 1000.0)
                .ceil()
                .max(1.0) as u64);
        }
        self.tat.insert(who.to_string(), tat + interval);
        Ok(())
    }
}

/// What one request carries through the phases.
struct Ctx {
    dialect: Dialect,
    path: &'static str,
    body: Bytes,
    model: String,
    /// The authenticated key's record (when keys are configured); the
    /// detection and verdict phases will read it.
    #[allow(dead_code)]
    key: Option<distillguard_storage::KeyRecord>,
    /// Strip reasoning from the answer (the account's verdict says so).
    withhold: bool,
}

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::Downstream {
        status: StatusCode::UNAUTHORIZED,
        kind: "authentication_error",
        message: message.into(),
    }
}

/// Phase 0: the API key (OpenAI `Authorization: Bearer`, Anthropic
/// `x-api-key`), then the key's and the account's request limits.
fn authenticate(
    gw: &Gateway,
    req: &Request,
) -> Result<Option<distillguard_storage::KeyRecord>, GatewayError> {
    let Some(store) = &gw.keys else {
        return Ok(None);
    };
    let h = req.headers();
    let presented = h
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            h.get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .ok_or_else(|| unauthorized("no API key (Authorization: Bearer … or x-api-key)"))?;
    let rec = store
        .lock()
        .map_err(|_| GatewayError::Internal("key store lock poisoned".into()))?
        .verify(presented.trim())
        .map_err(|e| GatewayError::Internal(e.to_string()))?
        .ok_or_else(|| unauthorized("invalid or revoked API key"))?;
    let mut rpm = distillguard_core::tier::limits_of(Some(&rec.tier)).rpm;
    if let Some(d) = &gw.detector
        && gw
            .cfg
            .actions
            .for_verdict(d.verdict(&rec.account))
            .contains(&config::Action::Throttle)
    {
        // Throttled accounts get a tenth of their tier's rate.
        rpm = (rpm / 10).max(1);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let mut lim = gw
        .limits
        .lock()
        .map_err(|_| GatewayError::Internal("limiter lock poisoned".into()))?;
    // Each key has its limit, and the account's is shared by all its keys.
    for who in [
        format!("key {}", rec.id),
        format!("account {}", rec.account),
    ] {
        if let Err(wait) = lim.admit(&who, rpm, now) {
            return Err(GatewayError::Limited {
                retry_after: wait,
                who,
            });
        }
    }
    Ok(Some(rec))
}

/// Phase: enforce the account's verdict (block: 403; throttle is applied to
/// the limits in [`authenticate`]). With `fail_closed`, a dead detector
/// answers 503.
fn enforce(gw: &Gateway, account: &str) -> Result<bool, GatewayError> {
    let Some(d) = &gw.detector else {
        return Ok(false);
    };
    if !d.is_alive() && gw.cfg.detect.fail_closed {
        return Err(GatewayError::Upstream {
            status: StatusCode::SERVICE_UNAVAILABLE,
            upstream: "detector".into(),
            message: "detection is down and the gateway fails closed".into(),
        });
    }
    let actions = gw.cfg.actions.for_verdict(d.verdict(account));
    if actions.contains(&config::Action::Block) {
        return Err(GatewayError::Downstream {
            status: StatusCode::FORBIDDEN,
            kind: "permission_error",
            message: format!(
                "account {account} is blocked: its traffic matches a distillation pattern; contact support"
            ),
        });
    }
    Ok(actions.contains(&config::Action::WithholdReasoning))
}

/// Phase: the request becomes an event; its record goes to the detector
/// (never waiting for it).
fn observe(
    gw: &Gateway,
    dialect: Dialect,
    path: &str,
    body: &[u8],
    account: &str,
    key: Option<&distillguard_storage::KeyRecord>,
    headers: &axum::http::HeaderMap,
) {
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let ip =
        header("x-forwarded-for").and_then(|v| v.split(',').next().map(|s| s.trim().to_string()));
    if let Some(log) = &gw.log {
        log.write(
            json!({
                "ts": distillguard_core::Timestamp(now).to_string(),
                "account_id": account,
                "api_key_id": key.map(|k| k.id.clone()),
                "endpoint": path,
                "request": serde_json::from_str::<Value>(text).unwrap_or(Value::Null),
                "client": {"ip": ip, "user_agent": header("user-agent")},
            })
            .to_string(),
        );
    }
    let Some(d) = &gw.detector else { return };
    let core_dialect = match dialect {
        Dialect::Openai => distillguard_core::Dialect::OpenAi,
        Dialect::Anthropic => distillguard_core::Dialect::Anthropic,
    };
    let Ok((dl, request)) =
        distillguard_core::normalize::normalize_request(text, Some(core_dialect))
    else {
        return;
    };
    let event = distillguard_core::Event {
        id: None,
        ts: distillguard_core::Timestamp(now),
        account_id: account.to_string(),
        api_key_id: key.map(|k| k.id.clone()),
        endpoint: Some(path.to_string()),
        dialect: dl,
        model: request.model.clone(),
        request,
        response: None,
        status: None,
        latency_ms: None,
        client: distillguard_core::ClientInfo {
            ip,
            user_agent: header("user-agent"),
            ..Default::default()
        },
        account: None,
    };
    d.submit(distillguard_detect::engine::pre(&event));
}

/// Phase 1: read the body (capped) and the model.
async fn read(
    gw: &Gateway,
    dialect: Dialect,
    path: &'static str,
    req: Request,
) -> Result<Ctx, GatewayError> {
    let key = authenticate(gw, &req)?;
    let account = key
        .as_ref()
        .map_or("anonymous", |k| k.account.as_str())
        .to_string();
    let withhold = enforce(gw, &account)?;
    let headers = req.headers().clone();
    let cap = gw.cfg.max_body_bytes;
    let body = axum::body::to_bytes(req.into_body(), cap)
        .await
        .map_err(|_| GatewayError::Downstream {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "invalid_request_error",
            message: format!("request body larger than {cap} bytes"),
        })?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| GatewayError::Downstream {
        status: StatusCode::BAD_REQUEST,
        kind: "invalid_request_error",
        message: format!("the body is not JSON: {e}"),
    })?;
    let model = v["model"]
        .as_str()
        .map(str::to_string)
        .ok_or(GatewayError::Downstream {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: "missing \"model\"".into(),
        })?;
    observe(gw, dialect, path, &body, &account, key.as_ref(), &headers);
    Ok(Ctx {
        dialect,
        path,
        body,
        model,
        key,
        withhold,
    })
}

/// Phase 2: the upstream for the model.
fn route<'a>(gw: &'a Gateway, ctx: &Ctx) -> Result<&'a config::Upstream, GatewayError> {
    gw.cfg
        .route(ctx.dialect, &ctx.model)
        .ok_or_else(|| GatewayError::Downstream {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error",
            message: format!("model {:?} is not served here", ctx.model),
        })
}

/// Phase 3: forward, and stream the answer back as it comes.
async fn forward(gw: &Gateway, up: &config::Upstream, ctx: Ctx) -> Result<Response, GatewayError> {
    let ctx_withhold = ctx.withhold;
    let uri = format!("{}{}", up.url.trim_end_matches('/'), ctx.path);
    let req = axum::http::Request::post(&uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(ctx.body))
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let timeout = Duration::from_secs(gw.cfg.upstream_timeout_secs);
    let resp = match tokio::time::timeout(timeout, gw.client.request(req)).await {
        Err(_) => {
            return Err(GatewayError::Upstream {
                status: StatusCode::GATEWAY_TIMEOUT,
                upstream: up.name.clone(),
                message: format!("no response within {}s", timeout.as_secs()),
            });
        }
        Ok(Err(e)) => {
            return Err(GatewayError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                upstream: up.name.clone(),
                message: format!("request failed: {e}"),
            });
        }
        Ok(Ok(r)) => r,
    };
    let (parts, body) = resp.into_parts();
    let body = Body::new(body);
    let streaming = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = match (ctx_withhold, streaming) {
        (false, _) => body,
        (true, true) => withhold::strip_stream(body),
        (true, false) => {
            let cap = 64 << 20;
            let bytes =
                axum::body::to_bytes(body, cap)
                    .await
                    .map_err(|e| GatewayError::Upstream {
                        status: StatusCode::BAD_GATEWAY,
                        upstream: up.name.clone(),
                        message: format!("reading the answer: {e}"),
                    })?;
            Body::from(withhold::strip_json(&bytes).unwrap_or_else(|| bytes.to_vec()))
        }
    };
    let mut out = Response::new(body);
    *out.status_mut() = parts.status;
    for h in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(v) = parts.headers.get(&h) {
            out.headers_mut().insert(h, v.clone());
        }
    }
    out.headers_mut().insert(
        "x-distillguard-upstream",
        HeaderValue::from_str(&up.name).unwrap_or(HeaderValue::from_static("?")),
    );
    Ok(out)
}

async fn handle(gw: Arc<Gateway>, dialect: Dialect, path: &'static str, req: Request) -> Response {
    let started = std::time::Instant::now();
    let result = async {
        let ctx = read(&gw, dialect, path, req).await?;
        let up = route(&gw, &ctx)?;
        forward(&gw, up, ctx).await
    }
    .await;
    let resp = result.unwrap_or_else(|e| e.into_response(dialect));
    gw.metrics.record(
        usize::from(dialect == Dialect::Anthropic),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

async fn metrics_text(State(gw): State<Arc<Gateway>>) -> Response {
    use std::sync::atomic::Ordering;
    let (enq, drop, up) = gw.detector.as_ref().map_or((0, 0, false), |d| {
        (
            d.enqueued.load(Ordering::Relaxed),
            d.dropped.load(Ordering::Relaxed),
            d.is_alive(),
        )
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(enq, drop, up),
    )
        .into_response()
}

async fn chat(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    handle(gw, Dialect::Openai, "/v1/chat/completions", req).await
}

async fn messages(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    handle(gw, Dialect::Anthropic, "/v1/messages", req).await
}

async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    let mut ids: Vec<&str> = gw
        .cfg
        .upstreams
        .iter()
        .flat_map(|u| u.models.iter().map(String::as_str))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let data: Vec<Value> = ids
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "distillguard"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// The router (for tests and embedding).
pub fn router(cfg: Config) -> Result<Router, ServeError> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let keys = match &cfg.keys_db {
        Some(p) => Some(std::sync::Mutex::new(
            distillguard_storage::KeyStore::open(p).map_err(ServeError::Keys)?,
        )),
        None => None,
    };
    let detector = cfg
        .detect
        .enabled
        .then(|| detector::Detector::start(cfg.detect.thresholds, cfg.detect.queue));
    let log = match &cfg.log {
        Some(l) => Some(eventlog::EventLog::start(l.clone()).map_err(ServeError::Serve)?),
        None => None,
    };
    let gw = Arc::new(Gateway {
        log,
        cfg,
        client,
        keys,
        limits: std::sync::Mutex::new(Limiter::default()),
        detector,
        metrics: metrics::Metrics::default(),
    });
    Ok(Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(gw))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Keys(distillguard_storage::StoreError),
}

/// Serves until Ctrl-C; in-flight responses finish first.
pub async fn serve(
    cfg: Config,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    let addr = cfg.listen.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    ready(listener.local_addr().map_err(ServeError::Serve)?);
    axum::serve(listener, router(cfg)?)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(ServeError::Serve)
}
