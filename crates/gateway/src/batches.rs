/*!
The Batch APIs through the gateway: OpenAI's `/v1/files` (purpose
`batch`) and `/v1/batches`, and Anthropic's `/v1/messages/batches`.

A batch is half price per answer, so it is where a harvester of millions
of answers goes. Each request in a batch is scored like any other:

1. **who** (phases 1–2, shared with every API): the key, the account, one
   request against the limits, and the verdict: a blocked key or account
   cannot submit a batch (403).
2. **read**: the upload or submission, whole (up to `[batches]
   max_body_bytes`), its requests parsed one by one
   (`distillguard_core::import::batch`) and each normalised as the chat
   handlers do; a request the detector cannot read refuses the batch with
   400 naming its line or index.
3. **count**: the batch's requests are charged to the key's and the
   account's request limits (one was admitted in step 1; the rest are
   charged as debt), so a throttled account is throttled in batches too.
4. **score**: every request goes to the detector, and the submission waits
   until they are scored (`Detector::score_and_wait`). If they pushed the
   account over `block`, the batch is refused with 403 before it reaches
   the upstream.
5. **forward**, then the requests go to the event log with the batch's id
   (the upstream's file or batch id) and their `custom_id`.

Reading a batch back (retrieve, cancel, file content, results) is allowed
to the account that created it only: the upstream sees the gateway's own
key, so the gateway keeps who owns which file and batch (in memory: after a
restart, earlier batches answer 404 through the gateway).
*/

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use distillguard_core::event::BatchRef;
use distillguard_core::import::batch::{BatchKind, BatchLine, parse_line};

use crate::Gateway;
use crate::config::{Action, Config, Upstream};
use crate::dialect::Dialect;
use crate::error::GatewayError;
use crate::limits::Unit;
use crate::observed::{Observed, Published};
use crate::phases::{Caller, admit_one, caller, normalized, now_ms, read_body};

/// Files and batches remembered per owner at most.
const MAX_OWNED: usize = 1 << 20;

/// Who created each file and batch, and on which upstream.
#[derive(Default)]
pub(crate) struct Owners(Mutex<HashMap<String, (String, String)>>);

impl Owners {
    fn insert(&self, id: &str, account: &str, upstream: &str) {
        if let Ok(mut m) = self.0.lock()
            && (m.len() < MAX_OWNED || m.contains_key(id))
        {
            m.insert(id.to_string(), (account.to_string(), upstream.to_string()));
        }
    }

    /// The (owner, upstream) of `id`, if this gateway knows it.
    fn get(&self, id: &str) -> Option<(String, String)> {
        self.0.lock().ok()?.get(id).cloned()
    }
}

/// Records who owns batch (file) `id` and where it is: in this gateway's
/// memory and, with a key store, in the store, where the other replicas
/// sharing it (PostgreSQL) find it.
fn own(gw: &Gateway, id: &str, account: &str, upstream: &str) {
    gw.batch_owners.insert(id, account, upstream);
    let Some(store) = &gw.keys else { return };
    let saved = store
        .lock()
        .map_err(|_| "key store lock poisoned".to_string())
        .and_then(|s| {
            s.set_batch_owner(id, account, upstream)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = saved {
        tracing::warn!(error = %e, "saving a batch owner failed; other replicas will not find it");
    }
}

/// The upstream of `id` if `account` owns it: from this gateway's memory,
/// else from the key store (a batch another replica created).
fn owner_upstream(gw: &Gateway, id: &str, account: &str) -> Option<String> {
    let (owner, up) = gw.batch_owners.get(id).or_else(|| {
        let found = gw.keys.as_ref()?.lock().ok()?.batch_owner(id).ok()??;
        gw.batch_owners.insert(id, &found.0, &found.1);
        Some(found)
    })?;
    (owner == account).then_some(up)
}

/// The configured upstream of that name.
fn upstream_named<'a>(cfg: &'a Config, name: &str) -> Result<&'a Upstream, GatewayError> {
    cfg.upstreams
        .iter()
        .find(|u| u.name == name)
        .ok_or_else(|| not_found("upstream", name))
}

/// The upstream holding `id` when `account` owns it (404 otherwise, as
/// for an id that does not exist).
fn owned_upstream<'a>(
    gw: &Gateway,
    cfg: &'a Config,
    id: &str,
    account: &str,
    what: &str,
) -> Result<&'a Upstream, GatewayError> {
    let name = owner_upstream(gw, id, account).ok_or_else(|| not_found(what, id))?;
    upstream_named(cfg, &name)
}

fn bad(message: String) -> GatewayError {
    GatewayError::Downstream {
        status: StatusCode::BAD_REQUEST,
        kind: "invalid_request_error",
        message,
    }
}

fn not_found(what: &str, id: &str) -> GatewayError {
    GatewayError::Downstream {
        status: StatusCode::NOT_FOUND,
        kind: "not_found_error",
        message: format!("no {what} {id:?} for this account"),
    }
}

/// One request of a batch, read and normalised.
struct Item {
    custom_id: String,
    endpoint: &'static str,
    body: Bytes,
    request: distillguard_core::Request,
}

/// Reads batch lines (`parse_line` of `kind`) from `text`, a slice of
/// `whole`; `place` names line or index for errors.
fn items(
    kind: BatchKind,
    whole: &Bytes,
    text: &str,
    cfg: &Config,
    dialect: Dialect,
) -> Result<(Vec<Item>, String), GatewayError> {
    let mut out = Vec::new();
    let mut upstream: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let place = |i: usize, many: bool| match (kind, many) {
            (BatchKind::Anthropic, true) => format!("requests[{i}]"),
            _ => format!("line {}", n + 1),
        };
        let reqs = match parse_line(kind, line) {
            Ok(BatchLine::Requests(r)) => r,
            Ok(BatchLine::Result(_)) => {
                return Err(bad(format!("{}: a result, not a request", place(0, false))));
            }
            Err(e) => return Err(bad(format!("{}: {e}", place(0, false)))),
        };
        let many = reqs.len() > 1 || kind == BatchKind::Anthropic;
        for (i, r) in reqs.into_iter().enumerate() {
            let raw = r.body.get();
            let api = Dialect::from_endpoint(r.endpoint).unwrap_or(dialect);
            let request = normalized(raw.as_bytes(), api)
                .map_err(|e| bad(format!("{}: {e}", place(i, many))))?;
            let model = request
                .model
                .clone()
                .ok_or_else(|| bad(format!("{}: missing \"model\"", place(i, many))))?;
            let up = cfg
                .route(api, &model)
                .ok_or_else(|| GatewayError::Downstream {
                    status: StatusCode::NOT_FOUND,
                    kind: "not_found_error",
                    message: format!("{}: model {model:?} is not served here", place(i, many)),
                })?;
            match &upstream {
                None => upstream = Some(up.name.clone()),
                Some(u) if *u != up.name => {
                    return Err(bad(format!(
                        "{}: model {model:?} is served by another upstream than the batch's first request",
                        place(i, many)
                    )));
                }
                Some(_) => {}
            }
            out.push(Item {
                custom_id: r.custom_id,
                endpoint: r.endpoint,
                body: whole.slice_ref(raw.as_bytes()),
                request,
            });
        }
    }
    let upstream = upstream.ok_or_else(|| bad("the batch holds no request".into()))?;
    Ok((out, upstream))
}

/// The multipart form of a file upload: its `purpose` and its file's bytes
/// (as a slice of `body`).
fn multipart(content_type: &str, body: &Bytes) -> Result<(String, Bytes), GatewayError> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad("a file upload is multipart/form-data with a boundary".into()))?;
    let delim = format!("--{boundary}");
    let data: &[u8] = body;
    let find = |hay: &[u8], from: usize, needle: &[u8]| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let (mut purpose, mut file) = (None, None);
    let mut at =
        find(data, 0, delim.as_bytes()).ok_or_else(|| bad("empty multipart body".into()))?;
    loop {
        let start = at + delim.len();
        if data.get(start..start + 2) == Some(b"--") {
            break;
        }
        let head_end = find(data, start, b"\r\n\r\n")
            .ok_or_else(|| bad("a multipart part without headers".into()))?;
        let head = String::from_utf8_lossy(&data[start..head_end]).to_ascii_lowercase();
        let content = head_end + 4;
        let next = find(data, content, format!("\r\n{delim}").as_bytes())
            .ok_or_else(|| bad("a multipart part is not closed".into()))?;
        let name = head
            .split(';')
            .find_map(|p| p.trim().strip_prefix("name="))
            .map(|n| {
                n.split(['\r', '\n'])
                    .next()
                    .unwrap_or(n)
                    .trim_matches('"')
                    .to_string()
            });
        match name.as_deref() {
            Some("purpose") => {
                purpose = Some(
                    String::from_utf8_lossy(&data[content..next])
                        .trim()
                        .to_string(),
                )
            }
            Some("file") => file = Some(body.slice(content..next)),
            _ => {}
        }
        at = next + 2;
    }
    match (purpose, file) {
        (Some(p), Some(f)) => Ok((p, f)),
        _ => Err(bad("a file upload needs the fields purpose and file".into())),
    }
}

/// Forwards a request to `up` with `body`, passing the content type and the
/// API's headers; the answer comes back as it is (a 5xx becomes 502).
async fn forward(
    gw: &Gateway,
    up: &Upstream,
    method: Method,
    path_and_query: &str,
    content_type: Option<HeaderValue>,
    pass: &[(header::HeaderName, HeaderValue)],
    body: Body,
) -> Result<(StatusCode, axum::http::HeaderMap, Body), GatewayError> {
    let uri = format!("{}{}", up.url.trim_end_matches('/'), path_and_query);
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(&uri)
        .body(body)
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let hs = req.headers_mut();
    if let Some(ct) = content_type {
        hs.insert(header::CONTENT_TYPE, ct);
    }
    crate::phases::upstream_headers(up, hs, pass);
    let err = |status, message: String| GatewayError::Upstream {
        status,
        upstream: up.name.clone(),
        message,
    };
    let timeout = Duration::from_secs(gw.config().upstream_timeout_secs);
    let resp = match tokio::time::timeout(timeout, gw.client.request(req)).await {
        Err(_) => {
            return Err(err(
                StatusCode::GATEWAY_TIMEOUT,
                format!("no response within {}s", timeout.as_secs()),
            ));
        }
        Ok(Err(e)) => return Err(err(StatusCode::BAD_GATEWAY, format!("request failed: {e}"))),
        Ok(Ok(r)) => r,
    };
    let (parts, body) = resp.into_parts();
    if parts.status.is_server_error() {
        return Err(err(
            StatusCode::BAD_GATEWAY,
            format!("answered {}", parts.status.as_u16()),
        ));
    }
    Ok((parts.status, parts.headers, Body::new(body)))
}

/// A JSON answer of at most 1 MiB (files and batches objects), read whole.
async fn json_of(body: Body) -> Result<(Bytes, serde_json::Value), GatewayError> {
    let b = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| GatewayError::Upstream {
            status: StatusCode::BAD_GATEWAY,
            upstream: "batch".into(),
            message: format!("reading the answer: {e}"),
        })?;
    let v = serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null);
    Ok((b, v))
}

fn respond(status: StatusCode, headers: &axum::http::HeaderMap, body: Body) -> Response {
    let mut out = Response::new(body);
    *out.status_mut() = status;
    if let Some(v) = headers.get(header::CONTENT_TYPE) {
        out.headers_mut().insert(header::CONTENT_TYPE, v.clone());
    }
    out
}

/// Steps 3–4: counts the batch's requests against the limits, scores them
/// and refuses the batch when they pushed the account over `block`.
/// Returns the requests as observed (for the event log once forwarded).
async fn count_and_score(
    gw: &Arc<Gateway>,
    cfg: &Config,
    c: &Caller,
    items: Vec<Item>,
    provisional: &str,
) -> Result<Vec<Observed>, GatewayError> {
    let n = items.len();
    if let (Some(k), Some((rpm, tpm))) = (&c.key, c.rates) {
        let tokens: usize = items.iter().map(|i| i.body.len() / 4).sum();
        let extra = n.saturating_sub(1) as f64;
        crate::phases::charge(gw, &k.id, &k.account, Unit::Requests, extra, rpm);
        crate::phases::charge(gw, &k.id, &k.account, Unit::Tokens, tokens as f64, tpm);
    }
    let ts = now_ms() as i64;
    let observed: Vec<Observed> = items
        .into_iter()
        .map(|i| Observed {
            id: gw.ids.next(),
            ts_ms: ts,
            account: c.account.clone(),
            key_id: c.key.as_ref().map(|k| k.id.clone()),
            path: i.endpoint,
            dialect: Dialect::from_endpoint(i.endpoint).unwrap_or(Dialect::OpenAi),
            body: i.body,
            request: Some(i.request),
            ip: c.ip.clone(),
            user_agent: c.user_agent.clone(),
            response: None,
            status: 200,
            latency_ms: 0.0,
            batch: Some(BatchRef {
                id: provisional.to_string(),
                custom_id: i.custom_id,
            }),
        })
        .collect();
    if gw.detector.is_some() {
        let jobs: Vec<Arc<Observed>> = observed.iter().cloned().map(Arc::new).collect();
        let g = Arc::clone(gw);
        let wait = Duration::from_secs(cfg.batches.score_timeout_secs.get());
        let scored = tokio::task::spawn_blocking(move || {
            g.detector
                .as_ref()
                .is_some_and(|d| d.score_and_wait(jobs, wait))
        })
        .await
        .unwrap_or(false);
        if !scored && cfg.detect.fail_closed {
            return Err(GatewayError::Upstream {
                status: StatusCode::SERVICE_UNAVAILABLE,
                upstream: "detector".into(),
                message: "the batch could not be scored in time and the gateway fails closed"
                    .into(),
            });
        }
        let v = gw.verdict(&c.account, c.key.as_ref().map(|k| k.id.as_str()));
        if cfg.actions.for_verdict(v).contains(&Action::Block) {
            gw.metrics.action(Action::Block);
            gw.rejections.count(&c.account, 403);
            log(gw, &observed, provisional, 403);
            return Err(GatewayError::Downstream {
                status: StatusCode::FORBIDDEN,
                kind: "permission_error",
                message: format!(
                    "batch refused: its {n} requests put account {} over the block threshold (a distillation pattern); contact support",
                    c.account
                ),
            });
        }
    }
    Ok(observed)
}

/// Steps 3–5 of a submission: counted and scored (refused over block),
/// forwarded to `upstream` at `path`, its answer's id owned by the account,
/// its requests logged under that id. Returns the upstream's answer (the
/// JSON parsed too).
#[expect(clippy::too_many_arguments)]
async fn submit(
    gw: &Arc<Gateway>,
    cfg: &Config,
    c: &Caller,
    items: Vec<Item>,
    upstream: &str,
    path: &str,
    content_type: Option<HeaderValue>,
    body: Bytes,
) -> Result<(StatusCode, axum::http::HeaderMap, Bytes, serde_json::Value), GatewayError> {
    let provisional = crate::phases::request_id();
    let observed = count_and_score(gw, cfg, c, items, &provisional).await?;
    let up = upstream_named(cfg, upstream)?;
    let (st, h, b) = forward(
        gw,
        up,
        Method::POST,
        path,
        content_type,
        &c.pass,
        Body::from(body),
    )
    .await?;
    let (bytes, v) = json_of(b).await?;
    let id = v["id"].as_str().unwrap_or(&provisional).to_string();
    if st.is_success() {
        own(gw, &id, &c.account, &up.name);
    }
    log(gw, &observed, &id, st.as_u16());
    Ok((st, h, bytes, v))
}

/// Step 5: the batch's requests to the event log and the bus, under the
/// batch's id.
fn log(gw: &Gateway, observed: &[Observed], id: &str, status: u16) {
    if gw.log.is_none() && gw.bus.is_none() {
        return;
    }
    for o in observed {
        let mut o = o.clone();
        o.status = status;
        if let Some(b) = &mut o.batch {
            b.id = id.to_string();
        }
        let o = Arc::new(o);
        if let Some(bus) = &gw.bus {
            bus.publish(Arc::new(Published::Served(Arc::clone(&o))));
        }
        if let Some(l) = &gw.log {
            let _ = l.write(o);
        }
    }
}

fn header_value(req: &Request, name: header::HeaderName) -> Option<HeaderValue> {
    req.headers().get(name).cloned()
}

/// `POST /v1/files`: a batch input file is read, scored, then forwarded.
pub(crate) async fn openai_file(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    run(Dialect::OpenAi, async {
        let cfg = gw.config();
        let c = caller(&gw, &cfg, &req)?;
        admit_one(&gw, &c).await?;
        let ct = header_value(&req, header::CONTENT_TYPE);
        let ct_text = ct
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let (body, _budget) = read_batch_body(&gw, &cfg, req, &c).await?;
        let (purpose, file) = multipart(&ct_text, &body)?;
        let default_up = cfg
            .upstreams
            .iter()
            .find(|u| u.dialect == Dialect::OpenAi)
            .ok_or_else(|| not_found("upstream", "openai"))?;
        if purpose != "batch" {
            // Other purposes carry no requests to answer: passed through.
            let (st, h, b) = forward(
                &gw,
                default_up,
                Method::POST,
                "/v1/files",
                ct,
                &c.pass,
                Body::from(body.clone()),
            )
            .await?;
            let (bytes, v) = json_of(b).await?;
            if let Some(id) = v["id"].as_str() {
                own(&gw, id, &c.account, &default_up.name);
            }
            return Ok(respond(st, &h, Body::from(bytes)));
        }
        let text = std::str::from_utf8(&file)
            .map_err(|e| bad(format!("the batch file is not UTF-8: {e}")))?;
        let (items, upstream) = items(BatchKind::OpenAi, &file, text, &cfg, Dialect::OpenAi)?;
        let (st, h, bytes, _) =
            submit(&gw, &cfg, &c, items, &upstream, "/v1/files", ct, body).await?;
        Ok(respond(st, &h, Body::from(bytes)))
    })
    .await
}

/// `POST /v1/batches`: only on a file the account uploaded.
pub(crate) async fn openai_batch(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    run(Dialect::OpenAi, async {
        let cfg = gw.config();
        let c = caller(&gw, &cfg, &req)?;
        admit_one(&gw, &c).await?;
        let ct = header_value(&req, header::CONTENT_TYPE);
        let (body, _budget) = read_body(&gw, &cfg, req, cfg.max_body_bytes, c.key.as_ref()).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
        let file = v["input_file_id"]
            .as_str()
            .ok_or_else(|| bad("missing \"input_file_id\"".into()))?;
        let up = owned_upstream(&gw, &cfg, file, &c.account, "file")?;
        let (st, h, b) = forward(
            &gw,
            up,
            Method::POST,
            "/v1/batches",
            ct,
            &c.pass,
            Body::from(body.clone()),
        )
        .await?;
        let (bytes, v) = json_of(b).await?;
        register(&gw, &v, &c.account, &up.name);
        Ok(respond(st, &h, Body::from(bytes)))
    })
    .await
}

/// Files and batches named in a batch object belong to its owner.
fn register(gw: &Gateway, v: &serde_json::Value, account: &str, upstream: &str) {
    for f in ["id", "output_file_id", "error_file_id"] {
        if let Some(id) = v[f].as_str() {
            own(gw, id, account, upstream);
        }
    }
}

/// The gateway's own base URL as the client reached it (for the
/// `results_url` Anthropic answers carry, which must not point past it).
fn public_base(gw: &Gateway, req: &Request) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if gw.tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// A message batch's answer with its `results_url` on the gateway.
fn via_gateway(bytes: Bytes, v: &mut serde_json::Value, base: &str) -> Bytes {
    let Some(id) = v["id"].as_str().map(str::to_string) else {
        return bytes;
    };
    if !v["results_url"].is_string() {
        return bytes;
    }
    v["results_url"] = format!("{base}/v1/messages/batches/{id}/results").into();
    Bytes::from(v.to_string())
}

/// `POST /v1/messages/batches`: read, scored, then forwarded.
pub(crate) async fn anthropic_batch(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    run(Dialect::Anthropic, async {
        let cfg = gw.config();
        let c = caller(&gw, &cfg, &req)?;
        admit_one(&gw, &c).await?;
        let base = public_base(&gw, &req);
        let (body, _budget) = read_batch_body(&gw, &cfg, req, &c).await?;
        let text =
            std::str::from_utf8(&body).map_err(|e| bad(format!("the body is not UTF-8: {e}")))?;
        // The body is one JSON object; newlines inside it are whitespace.
        let flat;
        let one_line = if text.contains('\n') {
            flat = text.replace(['\n', '\r'], " ");
            flat.as_str()
        } else {
            text
        };
        let whole = Bytes::copy_from_slice(one_line.as_bytes());
        let one_line = std::str::from_utf8(&whole).map_err(|e| bad(e.to_string()))?;
        if !one_line.trim_start().starts_with('{') || !one_line.contains("\"requests\"") {
            return Err(bad("missing \"requests\"".into()));
        }
        let (items, upstream) = items(
            BatchKind::Anthropic,
            &whole,
            one_line,
            &cfg,
            Dialect::Anthropic,
        )?;
        let json = Some(HeaderValue::from_static("application/json"));
        let (st, h, bytes, mut v) = submit(
            &gw,
            &cfg,
            &c,
            items,
            &upstream,
            "/v1/messages/batches",
            json,
            body,
        )
        .await?;
        let bytes = via_gateway(bytes, &mut v, &base);
        Ok(respond(st, &h, Body::from(bytes)))
    })
    .await
}

/// Reading back (retrieve, content, results, cancel): the owner only; the
/// answer is passed through as it streams.
pub(crate) async fn read_back(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let dialect = crate::dialect::of_path(&path);
    run(dialect, async {
        let cfg = gw.config();
        let c = caller(&gw, &cfg, &req)?;
        admit_one(&gw, &c).await?;
        // The id: the segment after the collection.
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let id = match segs.as_slice() {
            ["v1", "files" | "batches", id, ..] => *id,
            ["v1", "messages", "batches", id, ..] => *id,
            _ => return Err(not_found("resource", &path)),
        };
        let up = owned_upstream(&gw, &cfg, id, &c.account, "file or batch")?;
        let base = public_base(&gw, &req);
        let method = req.method().clone();
        let pq = req
            .uri()
            .path_and_query()
            .map_or(path.clone(), |p| p.as_str().to_string());
        let ct = header_value(&req, header::CONTENT_TYPE);
        let (body, _budget) = read_body(&gw, &cfg, req, cfg.max_body_bytes, c.key.as_ref()).await?;
        let (st, h, b) = forward(&gw, up, method, &pq, ct, &c.pass, Body::from(body)).await?;
        let is_batch_object = matches!(
            segs.as_slice(),
            ["v1", "batches", _] | ["v1", "batches", _, "cancel"]
        );
        if is_batch_object && st.is_success() {
            let (bytes, v) = json_of(b).await?;
            register(&gw, &v, &c.account, &up.name);
            return Ok(respond(st, &h, Body::from(bytes)));
        }
        let is_message_batch = matches!(
            segs.as_slice(),
            ["v1", "messages", "batches", _] | ["v1", "messages", "batches", _, "cancel"]
        );
        if is_message_batch && st.is_success() {
            let (bytes, mut v) = json_of(b).await?;
            return Ok(respond(
                st,
                &h,
                Body::from(via_gateway(bytes, &mut v, &base)),
            ));
        }
        Ok(respond(st, &h, b))
    })
    .await
}

/// A batch upload's body, under the batch size cap.
async fn read_batch_body(
    gw: &Gateway,
    cfg: &Config,
    req: Request,
    c: &Caller,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), GatewayError> {
    read_body(
        gw,
        cfg,
        req,
        cfg.batches.max_body_bytes.get(),
        c.key.as_ref(),
    )
    .await
}

/// Runs a handler and answers its error in the API's format, with the
/// request's id and an access line.
async fn run(
    dialect: Dialect,
    f: impl std::future::Future<Output = Result<Response, GatewayError>>,
) -> Response {
    let started = Instant::now();
    let mut resp = match f.await {
        Ok(r) => r,
        Err(e) => e.into_response(dialect),
    };
    let id = crate::phases::request_id();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    tracing::info!(
        target: "distillguard::access",
        request_id = %id,
        status = resp.status().as_u16(),
        latency_ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0,
        "batch request"
    );
    resp.into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_multipart_upload_gives_its_purpose_and_file() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{\"a\":1}\n{\"b\":2}\n\r\n--XyZ--\r\n",
        );
        let (p, f) = multipart("multipart/form-data; boundary=XyZ", &body).unwrap();
        assert_eq!(p, "batch");
        assert_eq!(&f[..], b"{\"a\":1}\n{\"b\":2}\n");
        assert!(multipart("multipart/form-data", &body).is_err());
        assert!(
            multipart(
                "multipart/form-data; boundary=XyZ",
                &Bytes::from_static(b"--XyZ\r\nno end")
            )
            .is_err()
        );
    }
}
