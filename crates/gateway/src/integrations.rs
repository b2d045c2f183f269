/*!
Endpoints for the gateways a provider already runs (`[integrations]`), on
the internal listener:

- `POST /v1/events[?format=events|litellm|otlp|kong[&account=key|end-user]]`:
  batched log lines (the event log, LiteLLM's payloads, or OTLP/HTTP JSON
  export requests of GenAI spans; gzip with `Content-Encoding: gzip`) into
  the
  same detector as this gateway's own traffic. The answer names every
  malformed line; the good ones are kept.
- `GET /v1/verdicts/{account}[?key=ID]`: the verdict in force, as JSON, for
  a custom gateway.
- `/v1/auth` (any method, any path below it): forward-auth for nginx
  `auth_request`, Envoy's `ext_authz` HTTP service and Traefik/Caddy
  `forward_auth`. 2xx allows; 403 denies with the API's error body; 429
  with `Retry-After` throttles. The account comes from a header the
  caller's gateway sets (`account_header`), else from a distillguard key
  on the request. The answer reads verdicts already published; it never
  waits for the detector.

Every call carries the integration token (`token_sha256`), in
`X-Distillguard-Token` or, for the first two, `Authorization: Bearer`.
Without `[integrations]` the endpoints answer 404.
*/

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use distillguard_core::report::Verdict;
use serde_json::json;

use crate::Gateway;
use crate::config::{Action, Integrations};
use crate::dialect::Dialect;
use crate::dialect::of_path as dialect_of;
use crate::error::GatewayError;
use crate::limits::Unit;
use crate::observed::Published;

use distillguard_core::import::Parse;

/// The routes (merged into the internal router).
pub(crate) fn router(max_batch_bytes: usize) -> Router<Arc<Gateway>> {
    Router::new()
        .route(
            "/v1/events",
            post(ingest).layer(axum::extract::DefaultBodyLimit::max(max_batch_bytes)),
        )
        .route(
            "/v1/traces",
            post(traces).layer(axum::extract::DefaultBodyLimit::max(max_batch_bytes)),
        )
        .route("/v1/verdicts/{account}", get(verdict_of))
        .route("/v1/auth", any(forward_auth))
        .route("/v1/auth/{*rest}", any(forward_auth))
}

/// A refusal: a status and a message, answered as `{"error": message}`.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

fn plain(status: StatusCode, message: &str) -> Refusal {
    Refusal(status, message.to_string())
}

/// The integration settings and a checked token, or the answer to give.
fn authorize(gw: &Gateway, h: &HeaderMap, bearer: bool) -> Result<Integrations, Refusal> {
    let cfg = gw.config();
    let Some(i) = cfg.integrations.clone() else {
        return Err(plain(
            StatusCode::NOT_FOUND,
            "integrations are off (no [integrations] in the config)",
        ));
    };
    let text = |v: &HeaderValue| v.to_str().ok().map(str::trim).map(str::to_string);
    let presented = h.get("x-distillguard-token").and_then(text).or_else(|| {
        bearer
            .then(|| h.get(header::AUTHORIZATION).and_then(text))
            .flatten()
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
    });
    let Some(presented) = presented else {
        return Err(plain(
            StatusCode::UNAUTHORIZED,
            "integration token required (X-Distillguard-Token)",
        ));
    };
    let digest = distillguard_storage::sha256_hex(presented.trim());
    if !crate::admin::hash_matches(&digest, &i.token_sha256) {
        return Err(plain(StatusCode::UNAUTHORIZED, "wrong integration token"));
    }
    Ok(i)
}

/// The values of `names` in a query string (percent-escapes decoded), in
/// their order; any other parameter is a 400.
fn params<const N: usize>(uri: &Uri, names: [&str; N]) -> Result<[Option<String>; N], Refusal> {
    let mut values = [const { None }; N];
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let slot = pair
            .split_once('=')
            .and_then(|(k, v)| names.iter().position(|n| *n == k).map(|i| (i, v)));
        match slot {
            Some((i, v)) => values[i] = Some(unescape(v)),
            None => {
                return Err(plain(
                    StatusCode::BAD_REQUEST,
                    &format!("the query {pair:?}: only {} are known", names.join(", ")),
                ));
            }
        }
    }
    Ok(values)
}

fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lines shown with their errors in one answer (the rest are counted).
const SHOWN: usize = 100;

async fn ingest(
    State(gw): State<Arc<Gateway>>,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let limit = authorize(&gw, &h, true)?.max_batch_bytes.get();
    let [format, account] = params(&uri, ["format", "account"])?;
    use distillguard_core::import::litellm::AccountFrom;
    let from = match account.as_deref() {
        None => AccountFrom::Key,
        Some(a) => AccountFrom::parse(a).ok_or_else(|| {
            plain(
                StatusCode::BAD_REQUEST,
                &format!("account {a:?}: expected key or end-user"),
            )
        })?,
    };
    let format = format.as_deref().unwrap_or("events");
    let parse = Parse::by_name(format, from)
        .filter(|_| account.is_none() || format == "litellm")
        .ok_or_else(|| {
            plain(
                StatusCode::BAD_REQUEST,
                &format!(
                    "format {format:?}: expected events, litellm, otlp, kong or helicone (account= is for litellm)"
                ),
            )
        })?;
    no_destination(&gw)?;
    let text = inflate(&h, &body, limit)?;
    let g = Arc::clone(&gw);
    let job = tokio::task::spawn_blocking(move || {
        let (mut accepted, mut malformed, mut shown) = (0u64, 0u64, Vec::new());
        let mut down = false;
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = std::str::from_utf8(raw)
                .map_err(|_| distillguard_core::EventError::Utf8)
                .and_then(|l| parse.events(l));
            match parsed {
                Ok(events) => {
                    // Blocks while the detector's queue is full: a batch is
                    // slowed, never dropped.
                    let sent = events.try_for_each(|e| match deliver(&g, e) {
                        true => {
                            accepted += 1;
                            Ok(())
                        }
                        false => Err(()),
                    });
                    if sent.is_err() {
                        down = true;
                        break;
                    }
                }
                Err(e) => {
                    malformed += 1;
                    if shown.len() < SHOWN {
                        shown.push(json!({"line": i + 1, "error": e.to_string()}));
                    }
                }
            }
        }
        (accepted, malformed, shown, down)
    });
    let Ok((accepted, malformed, shown, down)) = job.await else {
        return Err(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the ingest task failed",
        ));
    };
    gw.metrics.ingested(accepted, malformed);
    if down {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "detection is down", "accepted": accepted})),
        )
            .into_response());
    }
    let status = if accepted == 0 && malformed > 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({"accepted": accepted, "malformed": malformed, "errors": shown})),
    )
        .into_response())
}

/// 503 when an event handed in would go nowhere: no detection here and no
/// event bus to the cluster's workers.
fn no_destination(gw: &Gateway) -> Result<(), Refusal> {
    match gw.detector.is_none() && gw.bus.is_none() {
        true => Err(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "detection is off on this gateway ([detect] enabled = false) and there is no event bus ([cluster.nats])",
        )),
        false => Ok(()),
    }
}

/// Hands an event in: onto the event bus (`[cluster.nats]`, with an id
/// the bus deduplicates by, drawn here when it came without one), and to
/// this gateway's detector. False when the detector is down. Blocks while
/// the detector's queue is full: a batch is slowed, never dropped.
fn deliver(gw: &Gateway, mut e: distillguard_core::Event) -> bool {
    if let Some(bus) = &gw.bus {
        let id = e.id.get_or_insert_with(|| gw.ids.next()).clone();
        bus.publish(Arc::new(Published::Ingested {
            id,
            event: Box::new(e.clone()),
        }));
    }
    gw.detector.as_ref().is_none_or(|d| d.submit_event(e))
}

/// The body, inflated when it says gzip, at most `limit` bytes.
fn inflate(h: &HeaderMap, body: &Bytes, limit: usize) -> Result<Vec<u8>, Refusal> {
    let gzip = h
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    match flate2::read::MultiGzDecoder::new(&body[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
    {
        Ok(_) if out.len() > limit => Err(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the batch inflates to over {limit} bytes (max_batch_bytes)"),
        )),
        Ok(_) => Ok(out),
        Err(e) => Err(plain(StatusCode::BAD_REQUEST, &format!("gzip: {e}"))),
    }
}

/// An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf or JSON,
/// gzip or not): an application's OpenTelemetry GenAI spans feed the
/// detector as they happen, as `/v1/events` lines do. Answers as OTLP
/// wants: 200 with an `ExportTraceServiceResponse` in the request's
/// encoding, its `partialSuccess` counting the GenAI spans that could not
/// be read (the first one's error); 400 for a body that is not an export
/// request at all.
async fn traces(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let limit = authorize(&gw, &h, true)?.max_batch_bytes.get();
    no_destination(&gw)?;
    let proto = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-protobuf"));
    let raw = inflate(&h, &body, limit)?;
    let g = Arc::clone(&gw);
    let job = tokio::task::spawn_blocking(move || {
        use distillguard_core::import::{otel, otlp_proto};
        let doc = match proto {
            true => otlp_proto::decode_traces(&raw),
            false => serde_json::from_slice::<serde_json::Value>(&raw)
                .map_err(|e| distillguard_core::EventError::Invalid(e.to_string())),
        }?;
        let (mut accepted, mut rejected, mut first) = (0u64, 0u64, None::<String>);
        let mut down = false;
        otel::each_span(&doc, &mut |r| match r {
            Ok(e) if !down => match deliver(&g, e) {
                true => accepted += 1,
                false => down = true,
            },
            Ok(_) => {}
            Err(e) => {
                rejected += 1;
                first.get_or_insert_with(|| e.to_string());
            }
        })?;
        Ok::<_, distillguard_core::EventError>((accepted, rejected, first, down))
    });
    let (accepted, rejected, first, down) = match job.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Err(plain(
                StatusCode::BAD_REQUEST,
                &format!("not an OTLP trace export request: {e}"),
            ));
        }
        Err(_) => {
            return Err(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the ingest task failed",
            ));
        }
    };
    gw.metrics.ingested(accepted, rejected);
    if down {
        return Err(plain(StatusCode::SERVICE_UNAVAILABLE, "detection is down"));
    }
    let message = first.unwrap_or_default();
    Ok(match proto {
        true => {
            use distillguard_core::import::otlp_proto::encode;
            let mut out = Vec::new();
            if rejected > 0 {
                let mut partial = Vec::new();
                encode::uint(1, rejected, &mut partial);
                encode::bytes(2, message.as_bytes(), &mut partial);
                encode::bytes(1, &partial, &mut out);
            }
            ([(header::CONTENT_TYPE, "application/x-protobuf")], out).into_response()
        }
        false => {
            let v = match rejected {
                0 => json!({}),
                n => {
                    json!({"partialSuccess": {"rejectedSpans": n.to_string(), "errorMessage": message}})
                }
            };
            axum::Json(v).into_response()
        }
    })
}

/// Where a verdict came from.
fn source_of(gw: &Gateway, account: &str) -> &'static str {
    if gw.override_of(account).is_some() {
        "override"
    } else {
        "detector"
    }
}

async fn verdict_of(
    State(gw): State<Arc<Gateway>>,
    Path(account): Path<String>,
    uri: Uri,
    h: HeaderMap,
) -> Result<Response, Refusal> {
    authorize(&gw, &h, true)?;
    let [key] = params(&uri, ["key"])?;
    let verdict = gw.verdict(&account, key.as_deref());
    let cfg = gw.config();
    let actions: Vec<String> = cfg
        .actions
        .for_verdict(verdict)
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    Ok(axum::Json(json!({
        "account": account,
        "key": key,
        "verdict": verdict,
        "source": source_of(&gw, &account),
        "actions": actions,
        "detection_alive": gw.detector.as_ref().is_none_or(|d| d.is_alive()),
    }))
    .into_response())
}

/// The original request's path, as the calling proxy passes it.
fn original_path(h: &HeaderMap) -> String {
    ["x-original-uri", "x-forwarded-uri", "x-envoy-original-path"]
        .iter()
        .find_map(|n| h.get(*n).and_then(|v| v.to_str().ok()))
        .unwrap_or("/")
        .to_string()
}

async fn forward_auth(State(gw): State<Arc<Gateway>>, h: HeaderMap) -> Response {
    let i = match authorize(&gw, &h, false) {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let dialect = if h.contains_key("anthropic-version") {
        Dialect::Anthropic
    } else {
        dialect_of(&original_path(&h))
    };
    // Who: the caller gateway's own header, else a distillguard key.
    let named = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let mut account = named(&i.account_header);
    let mut key = named(&i.key_header);
    if account.is_none() {
        let presented = named("x-api-key").or_else(|| {
            named(header::AUTHORIZATION.as_str())
                .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
        });
        if let Some(p) = presented
            && let Ok(Some(rec)) = gw.verify_key(p.trim())
        {
            account = Some(rec.account);
            key = Some(rec.id);
        }
    }
    let Some(account) = account else {
        gw.metrics.forward_auth("unknown");
        return if i.fail_closed {
            GatewayError::Downstream {
                status: StatusCode::UNAUTHORIZED,
                kind: "authentication_error",
                message: format!("no account: set {} on the request", i.account_header),
            }
            .into_response(dialect)
        } else {
            with_verdict(StatusCode::OK.into_response(), "unknown")
        };
    };
    if i.fail_closed
        && gw.override_of(&account).is_none()
        && gw.detector.as_ref().is_some_and(|d| !d.is_alive())
    {
        gw.metrics.forward_auth("unavailable");
        return GatewayError::Upstream {
            status: StatusCode::SERVICE_UNAVAILABLE,
            upstream: "detector".into(),
            message: "detection is down and forward-auth fails closed".into(),
        }
        .into_response(dialect);
    }
    let verdict = gw.verdict(&account, key.as_deref());
    let label = verdict_label(verdict);
    let actions = gw.config().actions.for_verdict(verdict).to_vec();
    if actions.contains(&Action::Block) {
        gw.metrics.forward_auth("deny");
        gw.metrics.action(Action::Block);
        let r = GatewayError::Downstream {
            status: StatusCode::FORBIDDEN,
            kind: "permission_error",
            message: format!(
                "account {account} is blocked: its traffic matches a distillation pattern; contact support"
            ),
        }
        .into_response(dialect);
        return with_verdict(r, label);
    }
    if actions.contains(&Action::Throttle) {
        gw.metrics.action(Action::Throttle);
        // The gateway's own admission: its key and account limits, shared
        // in Redis across replicas when they are, at the throttled rate.
        // A request named only by account is limited under that account.
        let rec = distillguard_storage::KeyRecord {
            id: key.unwrap_or_else(|| format!("account:{account}")),
            account: account.clone(),
            tier: String::new(),
            created: 0,
            revoked: false,
        };
        let limit = [(Unit::Requests, 1.0, f64::from(i.throttle_rpm.get()))];
        if let Err(e) = crate::phases::admit_all(&gw, &rec, &limit).await {
            let outcome = match e {
                GatewayError::Limited { .. } => "throttle",
                _ => "unavailable",
            };
            gw.metrics.forward_auth(outcome);
            return with_verdict(e.into_response(dialect), label);
        }
    }
    gw.metrics.forward_auth("allow");
    with_verdict(StatusCode::OK.into_response(), label)
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Monitor => "monitor",
        Verdict::Throttle => "throttle",
        Verdict::Block => "block",
    }
}

/// `X-Distillguard-Verdict` on every forward-auth answer (a proxy can pass
/// it on, or log it).
fn with_verdict(mut r: Response, label: &'static str) -> Response {
    r.headers_mut()
        .insert("x-distillguard-verdict", HeaderValue::from_static(label));
    r
}
