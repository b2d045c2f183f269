/*!
The enforcement gateway: an OpenAI- and Anthropic-compatible proxy in
front of the provider's model servers, which records every request, feeds
the detectors and enforces their verdicts inline.

Where things are:
- [`phases`]: one request, phase by phase (authenticate, enforce, read,
  route, forward, complete);
- [`tap`]: the answer on its way back (metering, stalls, mid-answer
  faults);
- [`limits`]: requests and tokens per minute, per key and per account;
- [`detector`]: the detection thread (engine and campaign linker) and the
  verdicts it publishes;
- [`withhold`]: the withhold-reasoning action;
- [`observed`], [`eventlog`]: a finished request, and the event log;
- [`admin`]: verdict overrides, the allowlist, config reload;
- [`metrics`]: the `/metrics` endpoint;
- [`listener`]: the connection cap and `TCP_NODELAY`;
- [`server`]: the accept loop, header deadline, body budget and drain;
- [`tls`]: TLS on the listener and to `https://` upstreams;
- [`client_ip`]: the client's address, and which proxies are believed;
- [`rejections`]: requests refused before a model, per account;
- [`error`]: errors by side, in each API's format;
- [`config`]: the TOML file.

Endpoints: `POST /v1/chat/completions`, `POST /v1/messages`,
`POST /v1/responses`,
`GET /v1/models`, `GET /healthz`, `GET /metrics` (Prometheus), and
`/admin/…` when an admin token is configured. The server shuts down
gracefully on Ctrl-C or SIGTERM and lets in-flight streams finish.
*/

pub mod admin;
mod batches;
pub mod chains;
pub mod client_ip;
pub mod config;
mod console;
pub mod detector;
pub mod error;
pub mod eventlog;
mod integrations;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod observed;
mod phases;
pub mod rejections;
pub mod server;
pub mod shared_limits;
pub mod tap;
pub mod tls;
pub mod withhold;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use distillguard_core::Verdict;
use distillguard_storage::{KeyRecord, Store};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

pub use config::{Config, Dialect};
pub use error::GatewayError;

/// How long a verified key is trusted without asking the store again (a
/// revocation takes effect within this).
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// An operator's verdict for an account.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: String,
    /// Seconds since the epoch.
    pub created: i64,
}

pub(crate) struct Gateway {
    cfg: RwLock<Arc<Config>>,
    /// Where the config came from (for reload).
    config_path: Option<PathBuf>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    /// Keys, overrides and the audit log (SQLite or PostgreSQL).
    keys: Option<Mutex<Box<dyn Store>>>,
    /// SHA-256 of a presented key → its record, when verified.
    key_cache: Mutex<HashMap<String, (KeyRecord, Instant)>>,
    limits: Mutex<limits::Limiter>,
    detector: Option<detector::Detector>,
    metrics: metrics::Metrics,
    log: Option<eventlog::EventLog>,
    overrides: RwLock<HashMap<String, Decision>>,
    /// Open connections (when serving through the capped listener).
    connections: Option<listener::OpenConnections>,
    /// Request body bytes held across connections.
    body_budget: server::BodyBudget,
    /// The listener's certificate (reloadable), with `[tls] cert`.
    tls: Option<Arc<tls::Listener>>,
    /// Requests refused before a model, per account.
    rejections: rejections::Rejections,
    /// Who created which batch file and batch.
    batch_owners: batches::Owners,
    /// Limits shared with the other replicas (`[cluster] redis_url`).
    shared: Option<Arc<shared_limits::Shared>>,
    /// Responses conversations served (their depth behind an answer id).
    chains: chains::Chains,
    /// Ids of the events this process observes.
    ids: EventIds,
    /// The event bus (`[cluster.nats]`).
    bus: Option<distillguard_bus::Publisher<observed::Observed>>,
    /// The verdict board the cluster's workers post to (`[cluster.nats]`).
    board: Option<distillguard_bus::board::Watcher>,
}

/// Event ids: a random prefix drawn at start and a counter, so that ids
/// are unique across replicas and restarts without coordination.
pub(crate) struct EventIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl EventIds {
    fn new() -> EventIds {
        let prefix = distillguard_storage::random_token()
            .map(|t| t[..12].to_string())
            .unwrap_or_else(|_| format!("{:012x}", std::process::id()));
        EventIds {
            prefix,
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("ev_{}_{n}", self.prefix)
    }
}

impl Gateway {
    /// The config in force (a reload swaps it; requests keep the one they
    /// started with).
    fn config(&self) -> Arc<Config> {
        self.cfg
            .read()
            .map_or_else(|p| Arc::clone(&p.into_inner()), |c| Arc::clone(&c))
    }

    fn limiter(&self) -> Result<MutexGuard<'_, limits::Limiter>, GatewayError> {
        self.limits
            .lock()
            .map_err(|_| GatewayError::Internal("limiter lock poisoned".into()))
    }

    fn verify_key(&self, presented: &str) -> Result<Option<KeyRecord>, GatewayError> {
        let Some(store) = &self.keys else {
            return Ok(None);
        };
        let digest = distillguard_storage::sha256_hex(presented);
        if let Ok(c) = self.key_cache.lock()
            && let Some((rec, at)) = c.get(&digest)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(Some(rec.clone()));
        }
        let rec = store
            .lock()
            .map_err(|_| GatewayError::Internal("key store lock poisoned".into()))?
            .verify(presented)
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        if let (Some(r), Ok(mut c)) = (&rec, self.key_cache.lock()) {
            if c.len() > 100_000 {
                c.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
            }
            c.insert(digest, (r.clone(), Instant::now()));
        }
        Ok(rec)
    }

    /// An operator's override for the account, if any: this gateway's,
    /// else one another replica posted to the board.
    fn override_of(&self, account: &str) -> Option<Verdict> {
        self.overrides
            .read()
            .ok()
            .and_then(|m| m.get(account).map(|d| d.verdict))
            .or_else(|| {
                self.board.as_ref()?.lookup(
                    distillguard_bus::board::Scope::Override,
                    account,
                    |p| Verdict::parse(&p.verdict),
                )?
            })
    }

    /// The detectors' verdict for a request of `account` on `key`: this
    /// gateway's own and the cluster's workers' (on the board), the
    /// stricter (allow without either).
    fn detected(&self, account: &str, key: Option<&str>) -> Verdict {
        let scope = self.config().actions.scope;
        let local = self
            .detector
            .as_ref()
            .map_or(Verdict::Allow, |d| d.verdict_for(account, key, &scope));
        let Some(b) = &self.board else {
            return local;
        };
        use distillguard_bus::board::Scope as On;
        let parse = |v: Option<&str>| v.and_then(Verdict::parse).unwrap_or(Verdict::Allow);
        let (own, keys) = b
            .lookup(On::Account, account, |p| {
                (parse(Some(&p.verdict)), parse(p.keys.as_deref()))
            })
            .unwrap_or_default();
        let of_key = key
            .and_then(|k| b.lookup(On::Key, k, |p| parse(Some(&p.verdict))))
            .unwrap_or_default();
        local.max(scope.combine(own, keys, of_key))
    }

    /// The verdict in force: an operator's override, else the detector's.
    /// A decision on the key (`key:ID`) comes before one on its account:
    /// the more specific wins.
    fn verdict(&self, account: &str, key: Option<&str>) -> Verdict {
        key.and_then(|k| self.override_of(&format!("{KEY_PREFIX}{k}")))
            .or_else(|| self.override_of(account))
            .unwrap_or_else(|| self.detected(account, key))
    }
}

/// How an operator's decision on a key is named among account decisions.
pub(crate) const KEY_PREFIX: &str = "key:";

async fn metrics_text(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(&gw),
    )
        .into_response()
}

async fn chat(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    phases::handle(gw, Dialect::Openai, "/v1/chat/completions", req).await
}

/// OpenAI Responses: routed to the OpenAI upstreams, in OpenAI's error format.
async fn responses(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    phases::handle(gw, Dialect::Openai, "/v1/responses", req).await
}

async fn messages(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    phases::handle(gw, Dialect::Anthropic, "/v1/messages", req).await
}

async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    let cfg = gw.config();
    let mut ids: Vec<&str> = cfg
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

/// The API whose error format suits a path (Anthropic's under
/// `/v1/messages`, else OpenAI's).
fn dialect_of(path: &str) -> Dialect {
    if path.starts_with("/v1/messages") {
        Dialect::Anthropic
    } else {
        Dialect::Openai
    }
}

/// The longest request URI and the most header bytes a request may carry
/// before it is refused (414, 431) in the API's error format. The HTTP
/// parser's own limits are higher (64 KiB of URI, 400 KiB of head) and
/// answer with an empty body; these catch what real clients send first.
pub const MAX_URI_BYTES: usize = 8 << 10;
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// 414 and 431 in the API's format, before any route runs.
async fn head_limits(req: Request, next: axum::middleware::Next) -> Response {
    let dialect = dialect_of(req.uri().path());
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return GatewayError::Downstream {
            status: axum::http::StatusCode::URI_TOO_LONG,
            kind: "invalid_request_error",
            message: format!("the request URI is longer than {MAX_URI_BYTES} bytes"),
        }
        .into_response(dialect);
    }
    let head: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if head > MAX_HEADER_BYTES {
        return GatewayError::Downstream {
            status: axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            kind: "invalid_request_error",
            message: format!("the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        }
        .into_response(dialect);
    }
    next.run(req).await
}

/// Unknown paths: 404 in the API's error format (SDKs read it).
async fn not_found(uri: axum::http::Uri) -> Response {
    GatewayError::Downstream {
        status: axum::http::StatusCode::NOT_FOUND,
        kind: "not_found_error",
        message: format!("{} is not served here", uri.path()),
    }
    .into_response(dialect_of(uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    GatewayError::Downstream {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        kind: "invalid_request_error",
        message: format!("{method} is not allowed on {}", uri.path()),
    }
    .into_response(dialect_of(uri.path()))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// The router (for tests and embedding); `config_path` enables reload.
pub fn router(cfg: Config) -> Result<Router, ServeError> {
    router_from(cfg, None)
}

/// The router, with the file the config came from (for `/admin/reload`).
pub fn router_from(cfg: Config, config_path: Option<PathBuf>) -> Result<Router, ServeError> {
    let (public, internal, _) = router_with(cfg, config_path, None)?;
    Ok(match internal {
        Some(i) => public.merge(i),
        None => public,
    })
}

/// The public router and, with `internal_listen`, the internal one
/// (`/metrics`, `/healthz`, `/admin/…`); without it, one router has all.
type Routers = (Router, Option<Router>, Option<Arc<tls::Listener>>);

fn router_with(
    cfg: Config,
    config_path: Option<PathBuf>,
    connections: Option<listener::OpenConnections>,
) -> Result<Routers, ServeError> {
    let split = cfg.internal_listen.is_some();
    let console_on = cfg.console.enabled && cfg.admin.is_some();
    let cfg_batches = cfg.batches.enabled;
    let max_batch_bytes = cfg
        .integrations
        .as_ref()
        .map_or(1 << 20, |i| i.max_batch_bytes.get());
    let shared = match &cfg.cluster.redis_url {
        Some(url) => Some(Arc::new(
            shared_limits::Shared::new(
                url,
                Duration::from_millis(cfg.cluster.redis_timeout_ms.get()),
                cfg.cluster.redis_connections.get(),
            )
            .map_err(|e| ServeError::Config(format!("cluster.redis_url: {e}")))?,
        )),
        None => None,
    };
    let connector = tls::connector(&cfg.tls).map_err(|e| ServeError::Config(e.to_string()))?;
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector);
    let tls_listener =
        tls::Listener::from_config(&cfg.tls).map_err(|e| ServeError::Config(e.to_string()))?;
    cfg.validate()
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let keys = match (cfg.auth, &cfg.keys_db) {
        (config::Auth::Keys, Some(p)) => {
            Some(distillguard_storage::open_existing(p).map_err(ServeError::Keys)?)
        }
        _ => None,
    };
    let overrides = match &keys {
        Some(k) => admin::load_overrides(k.as_ref()).map_err(ServeError::Keys)?,
        None => HashMap::new(),
    };
    let detector = match cfg.detect.enabled {
        true => {
            let mut known =
                detector::Known::load(cfg.detect.accounts.as_deref(), cfg.detect.models.as_deref())
                    .map_err(ServeError::Config)?;
            known.timelines = console_on && cfg.console.timelines;
            Some(detector::Detector::start(
                cfg.detect.thresholds,
                cfg.link,
                cfg.detect.queue,
                cfg.keys_db.as_deref().map(|p| (p, cfg.node_name())),
                known,
                detector::Forgetting {
                    idle: Duration::from_secs(cfg.detect.forget_idle_secs.get()),
                    max_accounts: cfg.detect.max_accounts.get(),
                },
            ))
        }
        false => None,
    };
    let log = match &cfg.log {
        Some(l) => Some(eventlog::EventLog::start(l.clone()).map_err(ServeError::Serve)?),
        None => None,
    };
    let bus = match &cfg.cluster.nats {
        Some(b) => Some(
            distillguard_bus::Publisher::start(b.clone())
                .map_err(|e| ServeError::Config(e.to_string()))?,
        ),
        None => None,
    };
    let board = match &cfg.cluster.nats {
        Some(b) => Some(
            distillguard_bus::board::Watcher::start(&b.url, &b.bucket, b.replicas.get())
                .map_err(|e| ServeError::Config(e.to_string()))?,
        ),
        None => None,
    };
    let body_budget = server::BodyBudget::new(cfg.max_inflight_body_bytes.get());
    let gw = Arc::new(Gateway {
        rejections: rejections::Rejections::default(),
        batch_owners: batches::Owners::default(),
        shared,
        chains: chains::Chains::default(),
        ids: EventIds::new(),
        bus,
        board,
        tls: tls_listener,
        body_budget,
        log,
        cfg: RwLock::new(Arc::new(cfg)),
        config_path,
        client,
        keys: keys.map(Mutex::new),
        key_cache: Mutex::new(HashMap::new()),
        limits: Mutex::new(limits::Limiter::default()),
        detector,
        metrics: metrics::Metrics::default(),
        overrides: RwLock::new(overrides),
        connections,
    });
    let public = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .route("/v1/responses", post(responses))
        .route("/v1/models", get(models));
    let public = if cfg_batches {
        public
            .route("/v1/files", post(batches::openai_file))
            .route("/v1/files/{id}", get(batches::read_back))
            .route("/v1/files/{id}/content", get(batches::read_back))
            .route("/v1/batches", post(batches::openai_batch))
            .route("/v1/batches/{id}", get(batches::read_back))
            .route("/v1/batches/{id}/cancel", post(batches::read_back))
            .route("/v1/messages/batches", post(batches::anthropic_batch))
            .route("/v1/messages/batches/{id}", get(batches::read_back))
            .route("/v1/messages/batches/{id}/results", get(batches::read_back))
            .route("/v1/messages/batches/{id}/cancel", post(batches::read_back))
    } else {
        public
    };
    let public = public
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(head_limits));
    let internal = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .nest("/admin", admin::router())
        .merge(integrations::router(max_batch_bytes));
    // The console, where the admin API is, with its token as the login.
    let internal = match console_on {
        true => internal.nest_service(
            "/ui",
            distillguard_console::router(Arc::new(distillguard_console::Console::live(Arc::new(
                console::LiveGateway::new(Arc::clone(&gw)),
            )))),
        ),
        false => internal,
    };
    let tls = gw.tls.clone();
    Ok(if split {
        (
            public.with_state(Arc::clone(&gw)),
            Some(internal.with_state(gw)),
            tls,
        )
    } else {
        (public.merge(internal).with_state(gw), None, tls)
    })
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
    #[error("{0}")]
    Config(String),
}

/// A future that resolves on Ctrl-C or SIGTERM. The handlers are
/// installed here, before it is first polled, so that a signal sent as soon
/// as the address is printed already stops the server gracefully.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, ServeError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(ServeError::Serve)?;
        let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Serve)?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves until Ctrl-C or SIGTERM (see [`serve_until`]).
pub async fn serve(
    cfg: Config,
    config_path: Option<PathBuf>,
    ready: impl FnOnce(std::net::SocketAddr, Option<std::net::SocketAddr>),
) -> Result<(), ServeError> {
    let signalled = shutdown_signal()?;
    serve_until(cfg, config_path, ready, signalled).await
}

/// Serves until `shutdown` resolves; then requests in flight get
/// `drain_timeout_secs` to finish, and the rest are closed. `ready` gets
/// the public address and, with `internal_listen`, the internal one.
pub async fn serve_until(
    cfg: Config,
    config_path: Option<PathBuf>,
    ready: impl FnOnce(std::net::SocketAddr, Option<std::net::SocketAddr>),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = bind(&cfg.listen).await?;
    let internal = match &cfg.internal_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    ready(
        listener.local_addr().map_err(ServeError::Serve)?,
        match &internal {
            Some(l) => Some(l.local_addr().map_err(ServeError::Serve)?),
            None => None,
        },
    );
    let deadlines = server::Deadlines {
        header: Duration::from_secs(cfg.header_timeout_secs.get()),
        drain: Duration::from_secs(cfg.drain_timeout_secs),
    };
    if cfg.auth == config::Auth::None {
        tracing::warn!(
            "auth = \"none\": requests are not authenticated and each client address is an account; for local testing only"
        );
    }
    tracing::info!(
        upstreams = cfg.upstreams.len(),
        trusted_proxies = cfg.trusted_proxies.len(),
        detection = cfg.detect.enabled,
        event_log = cfg.log.is_some(),
        "gateway started"
    );
    let listener = listener::Capped::new(listener, cfg.max_connections);
    let gauge = listener.gauge();
    let (public, internal_app, tls) = router_with(cfg, config_path, Some(gauge))?;
    // One shutdown stops both servers (a watch channel, as mini-redis
    // broadcasts its shutdown).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown asked: no new connections; draining");
        let _ = stop_tx.send(true);
    });
    let main = server::run(
        listener,
        public,
        deadlines,
        tls.clone(),
        stopped(stop_rx.clone()),
    );
    let drained = match (internal, internal_app) {
        (Some(l), Some(app)) => {
            let side = server::run(l, app, deadlines, tls, stopped(stop_rx));
            let (a, b) = tokio::join!(main, side);
            a && b
        }
        _ => main.await,
    };
    if drained {
        tracing::info!("gateway stopped: every request in flight finished");
    } else {
        tracing::warn!(
            drain_timeout_secs = deadlines.drain.as_secs(),
            "gateway stopped: requests still in flight at the drain deadline were closed"
        );
    }
    Ok(())
}
