/*!
The proxy's phases over a per-request context, in the style of Pingora's
`ProxyHttp`. [`handle`] is their literal sequence:

1. **authenticate**: the API key (OpenAI `Authorization: Bearer`,
   Anthropic `x-api-key`), the client's address and account;
2. **enforce**: the verdict in force (an operator's override first):
   block (403), withhold reasoning, throttle (lower limits); then the
   key's and the account's request limits under it;
3. **read**: the body (capped: 413), its model, and the token limits
   (the prompt's estimate);
4. **route**: the upstream serving the model (404 otherwise);
5. **forward**: the request upstream; the answer streamed back through
   [`Tapped`](crate::tap::Tapped), which meters it, cuts off a stalled
   upstream and turns a mid-answer failure into the API's error event;
   an upstream 5xx becomes 502;
6. **complete**: the answer's tokens are charged, and the request goes to
   the detector and the event log as an [`Observed`]. A request read in
   phase 3 is completed exactly once: when its answer ends (the tap calls
   it), or here when it got an error instead;
7. **logging**, always: the access line, the request metrics and the
   request's id.
*/

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use distillguard_core::Verdict;
use distillguard_storage::KeyRecord;

use crate::Gateway;
use crate::config::{Action, Config, Upstream};
use crate::dialect::{Dialect, api};
use crate::error::GatewayError;
use crate::limits::{Unit, Who};
use crate::observed::{Observed, Published};
use crate::tap::{Meter, Outcome, Tapped};

/// What one request carries through the phases; each phase fills its
/// part.
struct Ctx {
    dialect: Dialect,
    path: &'static str,
    started: Instant,
    /// Phases 1 and 2: who sent it, and what its verdict lets it do.
    caller: Option<Caller>,
    /// Phase 3: the model asked for.
    model: Option<String>,
    /// Room held in the body budget until the request is forwarded.
    budget: Option<tokio::sync::OwnedSemaphorePermit>,
    /// From phase 3 until the answer ends or fails: what phase 6 needs,
    /// taken by whichever completes the request.
    pending: Option<Done>,
}

pub(crate) fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::Downstream {
        status: StatusCode::UNAUTHORIZED,
        kind: "authentication_error",
        message: message.into(),
    }
}

fn header_str(
    h: &axum::http::HeaderMap,
    name: impl axum::http::header::AsHeaderName,
) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The presented key's record (`None` when the gateway has no key store).
fn key_of(gw: &Gateway, req: &Request) -> Result<Option<KeyRecord>, GatewayError> {
    if gw.keys.is_none() {
        return Ok(None);
    }
    let h = req.headers();
    let presented = header_str(h, "x-api-key")
        .or_else(|| header_str(h, header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ")))
        .ok_or_else(|| unauthorized("no API key (Authorization: Bearer … or x-api-key)"))?;
    gw.verify_key(presented.trim())?
        .ok_or_else(|| unauthorized("invalid or revoked API key"))
        .map(Some)
}

/// Requests and tokens per minute for a key under `verdict` (the throttle
/// action divides both).
fn rates(cfg: &Config, rec: &KeyRecord, verdict: Verdict) -> (f64, f64) {
    let t = cfg.limits.of(&rec.tier);
    let throttled = cfg.actions.for_verdict(verdict).contains(&Action::Throttle);
    let d = if throttled {
        f64::from(cfg.limits.throttle_divisor)
    } else {
        1.0
    };
    (f64::from(t.rpm) / d, t.tpm as f64 / d)
}

/// Admits `cost` units against the key's limit and then the account's
/// (shared by all its keys); over either, 429 naming it.
pub(crate) async fn admit(
    gw: &Gateway,
    k: &KeyRecord,
    unit: Unit,
    cost: f64,
    per_minute: f64,
) -> Result<(), GatewayError> {
    admit_all(gw, k, &[(unit, cost, per_minute)]).await
}

/// Admits every `(unit, cost, rate per minute)` of `limits` on the key's
/// limit and then the account's (shared by all its keys); over any, 429
/// naming it. With shared limits, all of them in one round trip to Redis,
/// all or nothing; the gateway's own limits when Redis cannot answer
/// (unless the cluster fails closed).
pub(crate) async fn admit_all(
    gw: &Gateway,
    k: &KeyRecord,
    limits: &[(Unit, f64, f64)],
) -> Result<(), GatewayError> {
    let now = now_ms();
    let refuse = |unit: Unit, who: Who, wait: u64| {
        gw.metrics.limited(unit);
        gw.rejections.count(&k.account, 429);
        GatewayError::Limited {
            retry_after: wait,
            who: who.to_string(),
            what: match unit {
                Unit::Requests => "request",
                Unit::Tokens => "token",
            },
        }
    };
    if let Some(sh) = &gw.shared {
        match sh.admit_all(&k.id, &k.account, limits, now).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err((unit, account, wait))) => {
                let who = if account {
                    Who::Account(k.account.clone())
                } else {
                    Who::Key(k.id.clone())
                };
                return Err(refuse(unit, who, wait));
            }
            Err(e) => {
                let n = sh.errors.load(std::sync::atomic::Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(error = %e, errors = n, "shared limits unavailable");
                }
                if gw.config().cluster.redis_fail_closed {
                    return Err(GatewayError::Upstream {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        upstream: "limits".into(),
                        message: "shared limits are unavailable and the gateway fails closed"
                            .into(),
                    });
                }
            }
        }
    }
    let mut lim = gw.limiter()?;
    for &(unit, cost, rate) in limits {
        for who in [Who::Key(k.id.clone()), Who::Account(k.account.clone())] {
            if let Err(wait) = lim.admit(&who, unit, cost, rate, now) {
                return Err(refuse(unit, who, wait));
            }
        }
    }
    Ok(())
}

/// Charges `cost` units to a key and its account without a check (the
/// answer's tokens, a batch's requests): in Redis when limits are shared
/// (off the request's path), and in the gateway's own limits (its
/// fallback) either way.
pub(crate) fn charge(
    gw: &Gateway,
    key: &str,
    account: &str,
    unit: Unit,
    cost: f64,
    per_minute: f64,
) {
    if cost <= 0.0 {
        return;
    }
    let now = now_ms();
    if let Some(sh) = &gw.shared
        && let Ok(rt) = tokio::runtime::Handle::try_current()
    {
        let (sh, key, account) = (Arc::clone(sh), key.to_string(), account.to_string());
        rt.spawn(async move {
            let _ = sh.charge(&key, &account, unit, cost, per_minute, now).await;
        });
    }
    if let Ok(mut lim) = gw.limiter() {
        lim.charge(&Who::Key(key.to_string()), unit, cost, per_minute, now);
        lim.charge(
            &Who::Account(account.to_string()),
            unit,
            cost,
            per_minute,
            now,
        );
    }
}

/// The actions of the account's `verdict`. With `fail_closed`, a dead
/// detector answers 503. Returns whether to withhold reasoning.
fn apply_verdict(
    gw: &Gateway,
    cfg: &Config,
    account: &str,
    verdict: Verdict,
) -> Result<bool, GatewayError> {
    if gw.override_of(account).is_none()
        && let Some(d) = &gw.detector
        && !d.is_alive()
        && cfg.detect.fail_closed
    {
        return Err(GatewayError::Upstream {
            status: StatusCode::SERVICE_UNAVAILABLE,
            upstream: "detector".into(),
            message: "detection is down and the gateway fails closed".into(),
        });
    }
    let actions = cfg.actions.for_verdict(verdict);
    if actions.contains(&Action::Block) {
        gw.metrics.action(Action::Block);
        return Err(GatewayError::Downstream {
            status: StatusCode::FORBIDDEN,
            kind: "permission_error",
            message: format!(
                "account {account} is blocked: its traffic matches a distillation pattern; contact support"
            ),
        });
    }
    if actions.contains(&Action::Throttle) {
        gw.metrics.action(Action::Throttle);
    }
    let withhold = actions.contains(&Action::WithholdReasoning);
    if withhold {
        gw.metrics.action(Action::WithholdReasoning);
    }
    Ok(withhold)
}

/// Who sent a request, and what its verdict lets it do: the outcome of
/// phases 1 and 2 (shared by every API handler, batches included).
pub(crate) struct Caller {
    pub key: Option<KeyRecord>,
    pub account: String,
    pub ip: Option<String>,
    pub rates: Option<(f64, f64)>,
    pub withhold: bool,
    pub user_agent: Option<String>,
    pub pass: Vec<(header::HeaderName, HeaderValue)>,
}

/// Phase 1: the key, the client's address and account (no verdict yet).
fn authenticate(gw: &Gateway, cfg: &Config, req: &Request) -> Result<Caller, GatewayError> {
    let key = key_of(gw, req)?;
    let h = req.headers();
    // The client's address (see `client_ip`): the TCP peer, or behind a
    // trusted proxy the nearest hop it did not write.
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::listener::Peer>>()
        .map(|c| {
            let hops = h
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok());
            crate::client_ip::client_ip(c.0.0.ip(), hops, &cfg.trusted_proxies)
        });
    // Without keys (local testing), each client address is its own account
    // (an IPv6 client's /64).
    let account = match (&key, ip) {
        (Some(k), _) => k.account.clone(),
        (None, Some(ip)) => crate::client_ip::account_of(ip),
        (None, None) => "anonymous".to_string(),
    };
    let user_agent = header_str(h, header::USER_AGENT).map(str::to_string);
    let pass = PASS
        .iter()
        .filter_map(|n| {
            h.get(*n)
                .map(|v| (header::HeaderName::from_static(n), v.clone()))
        })
        .collect();
    Ok(Caller {
        key,
        account,
        ip: ip.map(|i| i.to_string()),
        rates: None,
        withhold: false,
        user_agent,
        pass,
    })
}

/// The verdict in force, looked up once for the limits and the actions.
fn judge(gw: &Gateway, cfg: &Config, c: &mut Caller) -> Result<(), GatewayError> {
    let verdict = gw.verdict(&c.account, c.key.as_ref().map(|k| k.id.as_str()));
    c.rates = c.key.as_ref().map(|k| rates(cfg, k, verdict));
    c.withhold = apply_verdict(gw, cfg, &c.account, verdict)?;
    Ok(())
}

/// Phase 2: the verdict's actions, then (unless limits are shared, where
/// the request and its tokens are admitted together in phase 3, one round
/// trip to Redis instead of two) the key's and the account's request
/// limits under it.
async fn enforce(gw: &Gateway, cfg: &Config, c: &mut Caller) -> Result<(), GatewayError> {
    judge(gw, cfg, c)?;
    if gw.shared.is_none() {
        admit_one(gw, c).await?;
    }
    Ok(())
}

/// Phases 1 and 2 for the handlers outside [`handle`] (batches, forward
/// auth): the request limit is [`admit_one`]'s, called once the request's
/// head is no longer borrowed (it may ask Redis).
pub(crate) fn caller(gw: &Gateway, cfg: &Config, req: &Request) -> Result<Caller, GatewayError> {
    let mut c = authenticate(gw, cfg, req)?;
    judge(gw, cfg, &mut c)?;
    Ok(c)
}

/// One request against the key's and the account's request limits.
pub(crate) async fn admit_one(gw: &Gateway, c: &Caller) -> Result<(), GatewayError> {
    match (&c.key, c.rates) {
        (Some(k), Some((rpm, _))) => admit(gw, k, Unit::Requests, 1.0, rpm).await,
        _ => Ok(()),
    }
}

/// The body, at most `cap` bytes, within the body deadline, with its room
/// in the budget of bytes held across connections (kept until the request
/// is forwarded). Refusals of an authenticated account are counted for it.
pub(crate) async fn read_body(
    gw: &Gateway,
    cfg: &Config,
    req: Request,
    cap: usize,
    key: Option<&KeyRecord>,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), GatewayError> {
    let refuse = |e: GatewayError| {
        if let Some(k) = key {
            gw.rejections.count(&k.account, e.status().as_u16());
        }
        e
    };
    let too_large = || GatewayError::Downstream {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        kind: "invalid_request_error",
        message: format!("request body larger than {cap} bytes"),
    };
    let declared =
        header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(refuse(too_large()));
    }
    let budget = gw
        .body_budget
        .take(declared.unwrap_or(cap))
        .ok_or_else(|| GatewayError::Upstream {
            status: StatusCode::SERVICE_UNAVAILABLE,
            upstream: "gateway".into(),
            message: "too many request bodies in flight; retry shortly".into(),
        })?;
    let deadline = Duration::from_secs(cfg.body_timeout_secs.get());
    let body =
        match tokio::time::timeout(deadline, axum::body::to_bytes(req.into_body(), cap)).await {
            Err(_) => {
                return Err(GatewayError::Downstream {
                    status: StatusCode::REQUEST_TIMEOUT,
                    kind: "invalid_request_error",
                    message: format!(
                        "the request body did not arrive within {}s",
                        deadline.as_secs()
                    ),
                });
            }
            Ok(Err(e)) if is_length_limit(&e) => return Err(refuse(too_large())),
            Ok(Err(e)) => {
                return Err(GatewayError::Downstream {
                    status: StatusCode::BAD_REQUEST,
                    kind: "invalid_request_error",
                    message: format!("malformed request body: {e}"),
                });
            }
            Ok(Ok(b)) => b,
        };
    Ok((body, budget))
}

/// Phase 3: the body (capped), its model, the token limits; the request
/// is pending completion from here on.
async fn read(gw: &Gateway, cfg: &Config, req: Request, ctx: &mut Ctx) -> Result<(), GatewayError> {
    let c = ctx.caller.as_ref().ok_or_else(unphased)?;
    let (body, budget) = read_body(gw, cfg, req, cfg.max_body_bytes, c.key.as_ref()).await?;
    ctx.budget = Some(budget);
    let refuse = |e: GatewayError| {
        if let Some(k) = &c.key {
            gw.rejections.count(&k.account, e.status().as_u16());
        }
        e
    };
    // The gateway forwards only what the detector can read: a body that
    // does not normalise (a string for a number, a number for a message,
    // a lone surrogate, nesting too deep) is refused here, in the API's
    // format, instead of being answered unscored.
    let mut request = normalized(&body, ctx.dialect).map_err(refuse)?;
    // A continued Responses conversation counts the depth behind it.
    if let Some(prev) = request.previous_response_id.clone() {
        let mut known = gw.chains.extend(&c.account, &mut request);
        // Served by another replica: its entry is in Redis.
        if !known
            && gw.chains.get(&prev).is_none()
            && let Some(sh) = &gw.shared
            && let Ok(Some(e)) = sh.chain(&prev).await
        {
            gw.chains.insert(&prev, e);
            known = gw.chains.extend(&c.account, &mut request);
        }
        gw.metrics.continued(known);
    }
    let model = request.model.clone().ok_or(GatewayError::Downstream {
        status: StatusCode::BAD_REQUEST,
        kind: "invalid_request_error",
        message: "missing \"model\"".into(),
    })?;
    ctx.model = Some(model);
    let estimate = (body.len() / 4).min(u32::MAX as usize) as u32;
    if let (Some(k), Some((rpm, tpm))) = (&c.key, c.rates) {
        if gw.shared.is_some() {
            let limits = [
                (Unit::Requests, 1.0, rpm),
                (Unit::Tokens, f64::from(estimate), tpm),
            ];
            admit_all(gw, k, &limits).await?;
        } else {
            admit(gw, k, Unit::Tokens, f64::from(estimate), tpm).await?;
        }
    }
    ctx.pending = Some(Done {
        observed: Observed {
            id: gw.ids.next(),
            ts_ms: now_ms() as i64,
            account: c.account.clone(),
            key_id: c.key.as_ref().map(|k| k.id.clone()),
            path: ctx.path,
            dialect: ctx.dialect,
            body,
            request: Some(request),
            ip: c.ip.clone(),
            user_agent: c.user_agent.clone(),
            response: None,
            status: 0,
            latency_ms: 0.0,
            batch: None,
        },
        key: c.key.as_ref().map(|k| (k.id.clone(), k.account.clone())),
        rates: c.rates,
        estimate,
        started: ctx.started,
    });
    Ok(())
}

/// A phase ran before the one that fills what it needs (a bug, answered
/// 500 rather than a panic).
fn unphased() -> GatewayError {
    GatewayError::Internal("request phases out of order".into())
}

/// Client headers passed to the upstream.
const PASS: [&str; 3] = ["anthropic-version", "anthropic-beta", "openai-beta"];

/// The body as the detector reads it, or 400 naming what is wrong.
pub(crate) fn normalized(
    body: &[u8],
    api: Dialect,
) -> Result<distillguard_core::Request, GatewayError> {
    let bad = |message: String| GatewayError::Downstream {
        status: StatusCode::BAD_REQUEST,
        kind: "invalid_request_error",
        message,
    };
    let text = std::str::from_utf8(body).map_err(|e| bad(format!("the body is not UTF-8: {e}")))?;
    distillguard_core::normalize::normalize_request(text, Some(api))
        .map(|(_, r)| r)
        .map_err(|e| bad(format!("the request cannot be read: {e}")))
}

/// Whether a body error is the body cap (413) rather than a malformed
/// body (400).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Phase 4: the upstream for the model.
fn route<'a>(cfg: &'a Config, ctx: &Ctx) -> Result<&'a Upstream, GatewayError> {
    let model = ctx.model.as_deref().ok_or_else(unphased)?;
    cfg.route(ctx.dialect, model)
        .ok_or_else(|| GatewayError::Downstream {
            status: StatusCode::NOT_FOUND,
            kind: "not_found_error",
            message: format!("model {model:?} is not served here"),
        })
}

/// The headers every request to an upstream carries: the client's API
/// headers that are passed on, `anthropic-version` when the client sent
/// none, and the upstream's own key (marked sensitive: never logged).
pub(crate) fn upstream_headers(
    up: &Upstream,
    hs: &mut axum::http::HeaderMap,
    pass: &[(header::HeaderName, HeaderValue)],
) {
    for (n, v) in pass {
        hs.insert(n.clone(), v.clone());
    }
    let wire = api(up.dialect);
    for &(name, value) in wire.required_headers() {
        if !hs.contains_key(name) {
            hs.insert(name, HeaderValue::from_static(value));
        }
    }
    if let Some(secret) = &up.credential {
        let (name, value) = wire.upstream_key(&secret.0);
        if let Ok(mut v) = HeaderValue::from_str(&value) {
            v.set_sensitive(true);
            hs.insert(name, v);
        }
    }
}

/// Phase 5: forward, and stream the answer back as it comes.
async fn forward(
    gw: &Arc<Gateway>,
    cfg: &Config,
    up: &Upstream,
    ctx: &mut Ctx,
) -> Result<Response, GatewayError> {
    let (Some(c), Some(pending)) = (&ctx.caller, &ctx.pending) else {
        return Err(unphased());
    };
    let uri = format!("{}{}", up.url.trim_end_matches('/'), ctx.path);
    let mut req = axum::http::Request::post(&uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(pending.observed.body.clone()))
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    upstream_headers(up, req.headers_mut(), &c.pass);
    let upstream_err = |status: StatusCode, message: String| GatewayError::Upstream {
        status,
        upstream: up.name.clone(),
        message,
    };
    let timeout = Duration::from_secs(cfg.upstream_timeout_secs);
    let resp = match tokio::time::timeout(timeout, gw.client.request(req)).await {
        Err(_) => {
            return Err(upstream_err(
                StatusCode::GATEWAY_TIMEOUT,
                format!("no response within {}s", timeout.as_secs()),
            ));
        }
        Ok(Err(e)) => {
            return Err(upstream_err(
                StatusCode::BAD_GATEWAY,
                format!("request failed: {e}"),
            ));
        }
        Ok(Ok(r)) => r,
    };
    let (parts, body) = resp.into_parts();
    let body = Body::new(body);
    if parts.status.is_server_error() {
        // The model server's own message, briefly; the client gets 502.
        let text =
            tokio::time::timeout(Duration::from_secs(5), axum::body::to_bytes(body, 64 << 10))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .chars()
                        .take(300)
                        .collect::<String>()
                })
                .unwrap_or_default();
        return Err(upstream_err(
            StatusCode::BAD_GATEWAY,
            format!("answered {}: {}", parts.status.as_u16(), text.trim()),
        ));
    }
    let streaming = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = match (c.withhold, streaming) {
        (false, _) => body,
        (true, true) => crate::withhold::strip_stream(ctx.dialect, body),
        (true, false) => {
            let bytes = axum::body::to_bytes(body, 64 << 20).await.map_err(|e| {
                upstream_err(StatusCode::BAD_GATEWAY, format!("reading the answer: {e}"))
            })?;
            let stripped = crate::withhold::strip_json(ctx.dialect, &bytes);
            Body::from(stripped.unwrap_or_else(|| bytes.to_vec()))
        }
    };
    let status = parts.status.as_u16();
    // From here the answer's end completes the request (phase 6).
    let done = ctx.pending.take().ok_or_else(unphased)?;
    let g = Arc::clone(gw);
    let tapped = Tapped::new(
        body,
        Meter::new(ctx.dialect, streaming),
        Duration::from_secs(cfg.stream_idle_timeout_secs),
        Box::new(move |r, outcome| complete(&g, done, Some(r), Some(outcome), status)),
    );
    let mut out = Response::new(Body::new(tapped));
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

/// What `complete` needs of a request once its answer is underway.
pub(crate) struct Done {
    observed: Observed,
    key: Option<(String, String)>,
    rates: Option<(f64, f64)>,
    estimate: u32,
    started: Instant,
}

/// Phase 6: the answer's tokens are charged; the request goes to the
/// detector and the event log. Called once per request read: by the tap
/// when the answer ends, or by [`handle`] when it got an error instead.
fn complete(
    gw: &Gateway,
    mut d: Done,
    response: Option<distillguard_core::Response>,
    outcome: Option<Outcome>,
    status: u16,
) -> Option<crate::tap::Ack> {
    if let Some(o) = outcome {
        gw.metrics.answer(o, response.as_ref());
    }
    if let (Some((key, account)), Some((_, tpm)), Some(r)) = (&d.key, d.rates, &response) {
        // The answer, and the prompt beyond its estimate.
        let extra = r.input_tokens.map_or(0, |i| i.saturating_sub(d.estimate));
        let cost = f64::from(r.output_tokens.unwrap_or(0)) + f64::from(extra);
        charge(gw, key, account, Unit::Tokens, cost, tpm);
    }
    // A Responses answer: remembered, for the turns that continue it.
    if status == 200
        && let (Some(id), Some(req)) = (
            response.as_ref().and_then(|r| r.id.as_deref()),
            d.observed.request.as_ref(),
        )
    {
        let entry = gw.chains.remember(id, &d.observed.account, req);
        if let Some(sh) = &gw.shared
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (sh, id) = (Arc::clone(sh), id.to_string());
            rt.spawn(async move {
                let _ = sh.keep_chain(&id, &entry).await;
            });
        }
    }
    if gw.log.is_none() && gw.detector.is_none() && gw.bus.is_none() {
        return None;
    }
    d.observed.response = response;
    d.observed.status = status;
    d.observed.latency_ms = d.started.elapsed().as_secs_f64() * 1000.0;
    let o = Arc::new(d.observed);
    let ack = gw.log.as_ref().and_then(|log| log.write(Arc::clone(&o)));
    if let Some(bus) = &gw.bus {
        bus.publish(Arc::new(Published::Served(Arc::clone(&o))));
    }
    if let Some(det) = &gw.detector {
        det.submit(o);
    }
    ack
}

/// One request through the phases, in order (see the module doc).
pub(crate) async fn handle(
    gw: Arc<Gateway>,
    dialect: Dialect,
    path: &'static str,
    req: Request,
) -> Response {
    let cfg = gw.config();
    let mut ctx = Ctx {
        dialect,
        path,
        started: Instant::now(),
        caller: None,
        model: None,
        budget: None,
        pending: None,
    };
    let result = async {
        let c = ctx.caller.insert(authenticate(&gw, &cfg, &req)?);
        enforce(&gw, &cfg, c).await?;
        read(&gw, &cfg, req, &mut ctx).await?;
        let up = route(&cfg, &ctx)?;
        forward(&gw, &cfg, up, &mut ctx).await
    }
    .await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            fail(&gw, &mut ctx, &e);
            e.into_response(dialect)
        }
    };
    logging(&gw, &ctx, resp)
}

/// Phase 6 for a request read but not answered: it still reaches the log
/// and the detector, with the status it got (not acknowledged: an answer
/// that failed has nothing to wait for).
fn fail(gw: &Gateway, ctx: &mut Ctx, e: &GatewayError) {
    if let Some(done) = ctx.pending.take() {
        let outcome = matches!(e, GatewayError::Upstream { .. }).then_some(Outcome::UpstreamError);
        let _ = complete(gw, done, None, outcome, e.status().as_u16());
    }
}

/// Phase 7, always: the request's id, the access line (who, what, how it
/// ended; never a secret or prompt text: the key's id, not the key; the
/// path, not the body) and the request metrics.
fn logging(gw: &Gateway, ctx: &Ctx, mut resp: Response) -> Response {
    let id = request_id();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let elapsed = ctx.started.elapsed().as_secs_f64();
    let c = ctx.caller.as_ref();
    tracing::info!(
        target: "distillguard::access",
        request_id = %id,
        path = ctx.path,
        status = resp.status().as_u16(),
        account = c.map(|c| c.account.as_str()),
        key_id = c.and_then(|c| c.key.as_ref()).map(|k| k.id.as_str()),
        client = c.and_then(|c| c.ip.as_deref()),
        model = ctx.model.as_deref(),
        upstream = resp
            .headers()
            .get("x-distillguard-upstream")
            .and_then(|v| v.to_str().ok()),
        latency_ms = (elapsed * 1e4).round() / 10.0,
        "request"
    );
    gw.metrics
        .record(ctx.dialect, resp.status().as_u16(), elapsed);
    resp
}

/// A request's id (echoed in `x-request-id` and the access log): unique in
/// the process, and not repeated across restarts.
pub(crate) fn request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u64> = OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ u64::from(std::process::id()).rotate_left(32)
    });
    // SplitMix64 of seed + counter: distinct for distinct counters.
    let mut z = seed.wrapping_add(
        NEXT.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("req_{:016x}", z ^ (z >> 31))
}
