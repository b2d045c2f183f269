/*!
The gateway's routes: the public API (chat completions, messages,
responses, models, and the batch endpoints when enabled), and the internal
side (metrics, health, admin, integrations, the console), on one listener
or two.
*/

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::config::Config;
use crate::dialect::{Dialect, of_path};
use crate::error::GatewayError;
use crate::error::ServeError;
use crate::state::Gateway;
use crate::{admin, batches, console, integrations, listener, phases, tls};

async fn metrics_text(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(&gw.snapshot()),
    )
        .into_response()
}

async fn chat(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    phases::handle(gw, Dialect::OpenAi, "/v1/chat/completions", req).await
}

/// OpenAI Responses: routed to the OpenAI upstreams, in OpenAI's error format.
async fn responses(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    phases::handle(gw, Dialect::Responses, "/v1/responses", req).await
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

/// The longest request URI and the most header bytes a request may carry
/// before it is refused (414, 431) in the API's error format. The HTTP
/// parser's own limits are higher (64 KiB of URI, 400 KiB of head) and
/// answer with an empty body; these catch what real clients send first.
pub const MAX_URI_BYTES: usize = 8 << 10;
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// 414 and 431 in the API's format, before any route runs.
async fn head_limits(req: Request, next: axum::middleware::Next) -> Response {
    let dialect = of_path(req.uri().path());
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
    .into_response(of_path(uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    GatewayError::Downstream {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        kind: "invalid_request_error",
        message: format!("{method} is not allowed on {}", uri.path()),
    }
    .into_response(of_path(uri.path()))
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
pub(crate) type Routers = (Router, Option<Router>, Option<Arc<tls::Listener>>);

pub(crate) fn router_with(
    cfg: Config,
    config_path: Option<PathBuf>,
    connections: Option<listener::OpenConnections>,
) -> Result<Routers, ServeError> {
    let split = cfg.internal_listen.is_some();
    let console_on = cfg.console_on();
    let cfg_batches = cfg.batches.enabled;
    let max_batch_bytes = cfg
        .integrations
        .as_ref()
        .map_or(1 << 20, |i| i.max_batch_bytes.get());
    let gw = Gateway::start(cfg, config_path, connections)?;
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
