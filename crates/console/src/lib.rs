/*!
The analyst's console: the web pages a trust & safety analyst judges
campaigns on before acting.

One UI, served two ways:
- **offline**, read-only, over a report of `analyze` (`distillguard console
  REPORT.json`), bound to the loopback address by default;
- **live**, by the gateway on its internal listener at `/ui`, over the
  detector's current state, with login by an admin token (a session
  cookie, `HttpOnly`, `SameSite=Strict`, and a CSRF token for every action)
  and the operator's actions through the same decisions the admin API
  makes, each written to the audit log.

The pages are one HTML file, one script and one style sheet, compiled into
the binary (`include_str!`): nothing is fetched from a CDN, so the console
works on an air-gapped network, and there is no front-end build to
reproduce. The data comes from JSON endpoints under `api/` that filter,
sort and paginate on the server ([`index::Index`]), so a report of 30,000
accounts sends a page of 50 rows, not the report.
*/

pub mod activity;
pub mod exfil;
pub mod index;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use distillguard_core::report::Report;
use serde::Deserialize;
use serde_json::{Value, json};

pub use index::{Index, ListQuery};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// The session cookie's name.
pub const COOKIE: &str = "dg_console";
/// How long a login lasts without use.
const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 256;

/// An operator's action on an account or a key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// `account` or `key`.
    pub target: String,
    pub id: String,
    /// `block`; `allow` (the allowlist: the detector's block is lifted and
    /// does not come back until the decision is cleared); or `clear` (the
    /// operator's decision is removed, the detector's verdict applies).
    pub decision: String,
    /// Why (required: it goes into the audit log).
    pub reason: String,
}

/// Why the live gateway did not carry out an action (or read its audit
/// log), by whose fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The action is wrong (answered 400).
    #[error("{0}")]
    Invalid(String),
    /// Nothing to act on (answered 404): clearing where no decision is.
    #[error("{0}")]
    NotFound(String),
    /// The gateway could not do it (answered 500): the store failed, or
    /// there is none.
    #[error("{0}")]
    Failed(String),
}

impl ActionError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ActionError::Invalid(_) => StatusCode::BAD_REQUEST,
            ActionError::NotFound(_) => StatusCode::NOT_FOUND,
            ActionError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// What the live gateway offers the console.
pub trait Live: Send + Sync + 'static {
    /// The detector's current state as a report (campaigns, keys, and
    /// every account above `allow`, with timelines where kept).
    fn snapshot(&self) -> Report;
    /// The actor name of an admin token, if it is valid.
    fn login(&self, token: &str) -> Option<String>;
    /// Applies an action as `actor`; the result says what is now in force.
    fn act(&self, action: &Action, actor: &str) -> Result<Value, ActionError>;
    /// The latest audit log entries, newest first.
    fn audit(&self, limit: usize) -> Result<Value, ActionError>;
    /// The detector's health: queue, drops, faults, verdict changes.
    fn health(&self) -> Value;
    /// The verdict an account or key has now, with the operator's decision.
    fn decision(&self, target: &str, id: &str) -> Value;
}

struct Session {
    actor: String,
    csrf: String,
    used: Instant,
}

enum Mode {
    Offline(Arc<Index>),
    Live {
        live: Arc<dyn Live>,
        cache: RwLock<Option<(Instant, Arc<Index>)>>,
        sessions: Mutex<HashMap<String, Session>>,
    },
}

/// The console's state.
pub struct Console {
    mode: Mode,
    /// An exfiltration report shown beside the campaigns (offline).
    exfil: Option<exfil::ExfilIndex>,
    /// The identity STIX bundles are produced under.
    producer: String,
}

/// How long a live snapshot is reused between pages.
const SNAPSHOT_TTL: Duration = Duration::from_secs(2);

impl Console {
    /// A read-only console over a report.
    pub fn offline(report: Report, source: impl Into<String>) -> Console {
        Console {
            mode: Mode::Offline(Arc::new(Index::new(report, source))),
            exfil: None,
            producer: "distillguard".into(),
        }
    }

    /// A live console over a gateway.
    pub fn live(live: Arc<dyn Live>) -> Console {
        Console {
            mode: Mode::Live {
                live,
                cache: RwLock::new(None),
                sessions: Mutex::new(HashMap::new()),
            },
            exfil: None,
            producer: "distillguard".into(),
        }
    }

    /// Adds campaign activity read from the event log (offline only).
    pub fn with_activity(mut self, activity: HashMap<String, Vec<activity::Window>>) -> Console {
        if let Mode::Offline(ix) = &mut self.mode
            && let Some(ix) = Arc::get_mut(ix)
        {
            ix.set_activity(activity);
        }
        self
    }

    /// Adds an exfiltration report (`exfil analyze`): its principals and
    /// alerts get their own list and pages, and the overview counts them.
    pub fn with_exfil(mut self, report: distillguard_exfil::Report) -> Console {
        self.exfil = Some(exfil::ExfilIndex::new(report));
        self
    }

    /// Names the organisation STIX bundles are produced by.
    pub fn with_producer(mut self, producer: impl Into<String>) -> Console {
        self.producer = producer.into();
        self
    }

    fn index(&self) -> Arc<Index> {
        match &self.mode {
            Mode::Offline(ix) => ix.clone(),
            Mode::Live { live, cache, .. } => {
                if let Ok(c) = cache.read()
                    && let Some((at, ix)) = c.as_ref()
                    && at.elapsed() < SNAPSHOT_TTL
                {
                    return ix.clone();
                }
                let ix = Arc::new(Index::new(live.snapshot(), "live gateway"));
                if let Ok(mut c) = cache.write() {
                    *c = Some((Instant::now(), ix.clone()));
                }
                ix
            }
        }
    }

    fn invalidate(&self) {
        if let Mode::Live { cache, .. } = &self.mode
            && let Ok(mut c) = cache.write()
        {
            *c = None;
        }
    }
}

/// A JSON error with its status.
struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

type Answer = Result<Response, Fail>;

fn ok(v: Value) -> Answer {
    Ok(axum::Json(v).into_response())
}

fn not_found(what: &str, id: &str) -> Fail {
    Fail(StatusCode::NOT_FOUND, format!("no {what} {id:?} here"))
}

/// The console's routes, to be nested (at `/ui` by the gateway, at the
/// root by `distillguard console`).
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/api/session", get(session))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/overview", get(overview))
        .route("/api/accounts", get(accounts))
        .route("/api/accounts/{id}", get(account))
        .route("/api/campaigns", get(campaigns))
        .route("/api/campaigns/{id}", get(campaign))
        .route("/api/campaigns/{id}/stix", get(campaign_stix))
        .route("/api/campaigns/{id}/block", post(block_campaign))
        .route("/api/keys", get(keys))
        .route("/api/keys/{id}", get(key))
        .route("/api/exfil", get(exfil_list))
        .route("/api/exfil/{principal}", get(exfil_principal))
        .route("/api/search", get(search))
        .route("/api/actions", post(action))
        .route("/api/audit", get(audit))
        .route("/api/health", get(health))
        .with_state(console)
}

/// Headers every page carries: no script or style from elsewhere, no
/// framing, no sniffing, no caching of data.
fn secured(mut r: Response, content_type: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn page(axum::extract::OriginalUri(u): axum::extract::OriginalUri) -> Response {
    // Relative links need the trailing slash: `/ui` → `/ui/`.
    if !u.path().ends_with('/') && !u.path().ends_with(".html") {
        return axum::response::Redirect::permanent(&format!("{}/", u.path())).into_response();
    }
    secured(INDEX_HTML.into_response(), "text/html; charset=utf-8")
}

async fn script() -> Response {
    secured(
        APP_JS.into_response(),
        "application/javascript; charset=utf-8",
    )
}

async fn style() -> Response {
    secured(APP_CSS.into_response(), "text/css; charset=utf-8")
}

fn cookie_of(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// 32 random bytes as hex (the session id and its CSRF token).
fn random_token() -> Result<String, Fail> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| {
            Fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("no randomness for a session: {e}"),
            )
        })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Who is logged in (live), or nobody needs to be (offline). With
/// `write`, also checks the CSRF token of an action.
fn authorize(c: &Console, h: &HeaderMap, write: bool) -> Result<Option<String>, Fail> {
    let Mode::Live { sessions, .. } = &c.mode else {
        if write {
            return Err(Fail(
                StatusCode::FORBIDDEN,
                "this console is read-only: it shows a report; act through the live gateway's console".into(),
            ));
        }
        return Ok(None);
    };
    let unauthorized = || {
        Fail(
            StatusCode::UNAUTHORIZED,
            "log in with an admin token".into(),
        )
    };
    let id = cookie_of(h).ok_or_else(unauthorized)?;
    let mut s = sessions.lock().map_err(|_| {
        Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "sessions poisoned".into(),
        )
    })?;
    let Some(session) = s.get_mut(&id) else {
        return Err(unauthorized());
    };
    if session.used.elapsed() > SESSION_IDLE {
        s.remove(&id);
        return Err(unauthorized());
    }
    if write {
        let given = h
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same(given, &session.csrf) {
            return Err(Fail(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token".into(),
            ));
        }
    }
    session.used = Instant::now();
    Ok(Some(session.actor.clone()))
}

async fn session(State(c): State<Arc<Console>>, h: HeaderMap) -> Answer {
    match &c.mode {
        Mode::Offline(ix) => {
            ok(json!({"mode": "offline", "source": ix.source, "exfil": c.exfil.is_some()}))
        }
        Mode::Live { sessions, .. } => {
            let who = cookie_of(&h).and_then(|id| {
                sessions.lock().ok().and_then(|s| {
                    s.get(&id)
                        .filter(|s| s.used.elapsed() <= SESSION_IDLE)
                        .map(|s| (s.actor.clone(), s.csrf.clone()))
                })
            });
            match who {
                Some((actor, csrf)) => ok(json!({"mode": "live", "actor": actor, "csrf": csrf})),
                None => ok(json!({"mode": "live", "actor": null})),
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Fail> {
    serde_json::from_slice(body).map_err(|e| Fail(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

async fn login(State(c): State<Arc<Console>>, body: axum::body::Bytes) -> Answer {
    let Mode::Live { live, sessions, .. } = &c.mode else {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            "an offline console has no login".into(),
        ));
    };
    let l: Login = parse(&body)?;
    let Some(actor) = live.login(&l.token) else {
        tracing::warn!("console login refused");
        return Err(Fail(
            StatusCode::UNAUTHORIZED,
            "not a valid admin token".into(),
        ));
    };
    let id = random_token()?;
    let csrf = random_token()?;
    {
        let mut s = sessions.lock().map_err(|_| {
            Fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "sessions poisoned".into(),
            )
        })?;
        s.retain(|_, v| v.used.elapsed() <= SESSION_IDLE);
        if s.len() >= MAX_SESSIONS
            && let Some(oldest) = s.iter().min_by_key(|(_, v)| v.used).map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        s.insert(
            id.clone(),
            Session {
                actor: actor.clone(),
                csrf: csrf.clone(),
                used: Instant::now(),
            },
        );
    }
    tracing::info!(actor = %actor, "console login");
    let mut r = axum::Json(json!({"mode": "live", "actor": actor, "csrf": csrf})).into_response();
    let cookie = format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

async fn logout(State(c): State<Arc<Console>>, h: HeaderMap) -> Answer {
    authorize(&c, &h, true)?;
    if let (Mode::Live { sessions, .. }, Some(id)) = (&c.mode, cookie_of(&h))
        && let Ok(mut s) = sessions.lock()
    {
        s.remove(&id);
    }
    let mut r = axum::Json(json!({"logged_out": true})).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("dg_console=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(r)
}

async fn overview(State(c): State<Arc<Console>>, h: HeaderMap) -> Answer {
    authorize(&c, &h, false)?;
    let mut v = c.index().overview().clone();
    if let Mode::Live { live, .. } = &c.mode {
        v["health"] = live.health();
    }
    if let Some(x) = &c.exfil {
        v["exfil"] = x.overview().clone();
    }
    ok(v)
}

fn no_exfil() -> Fail {
    Fail(
        StatusCode::NOT_FOUND,
        "no exfiltration report here: start the console with --exfil EXFIL.json".into(),
    )
}

async fn exfil_list(
    State(c): State<Arc<Console>>,
    h: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    authorize(&c, &h, false)?;
    let x = c.exfil.as_ref().ok_or_else(no_exfil)?;
    ok(x.list(&query(q)?).map_err(bad)?)
}

async fn exfil_principal(
    State(c): State<Arc<Console>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    authorize(&c, &h, false)?;
    let x = c.exfil.as_ref().ok_or_else(no_exfil)?;
    x.principal(&id)
        .map_or_else(|| Err(not_found("principal", &id)), ok)
}

fn bad(e: index::QueryError) -> Fail {
    Fail(StatusCode::BAD_REQUEST, e.to_string())
}

/// A list query, with a bad parameter named.
fn query(
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<ListQuery, Fail> {
    q.map(|Query(q)| q)
        .map_err(|e| Fail(StatusCode::BAD_REQUEST, e.body_text()))
}

async fn accounts(
    State(c): State<Arc<Console>>,
    h: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    authorize(&c, &h, false)?;
    ok(c.index().accounts(&query(q)?).map_err(bad)?)
}

async fn campaigns(
    State(c): State<Arc<Console>>,
    h: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    authorize(&c, &h, false)?;
    ok(c.index().campaigns(&query(q)?).map_err(bad)?)
}

async fn keys(
    State(c): State<Arc<Console>>,
    h: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    authorize(&c, &h, false)?;
    ok(c.index().keys(&query(q)?).map_err(bad)?)
}

async fn account(State(c): State<Arc<Console>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    authorize(&c, &h, false)?;
    let ix = c.index();
    let mut v = match ix.account(&id) {
        Some(v) => v,
        // Live: an account below `monitor` is not in the snapshot, but an
        // operator may still act on it.
        None if matches!(c.mode, Mode::Live { .. }) => json!({"account": {"account_id": id,
            "risk": 0.0, "verdict": "allow", "reasons": []}, "keys": [], "campaign": null}),
        None => return Err(not_found("account", &id)),
    };
    if let Mode::Live { live, .. } = &c.mode {
        v["decision"] = live.decision("account", &id);
    }
    ok(v)
}

async fn key(State(c): State<Arc<Console>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    authorize(&c, &h, false)?;
    let ix = c.index();
    let mut v = ix.key(&id).ok_or_else(|| not_found("key", &id))?;
    if let Mode::Live { live, .. } = &c.mode {
        v["decision"] = live.decision("key", &id);
    }
    ok(v)
}

async fn campaign(State(c): State<Arc<Console>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    authorize(&c, &h, false)?;
    ok(c.index()
        .campaign(&id)
        .ok_or_else(|| not_found("campaign", &id))?)
}

async fn campaign_stix(
    State(c): State<Arc<Console>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    authorize(&c, &h, false)?;
    let b = c
        .index()
        .campaign_stix(&id, &c.producer)
        .ok_or_else(|| not_found("campaign", &id))?;
    let mut r = axum::Json(b).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.stix.json\"",
        id.replace(|ch: char| !ch.is_ascii_alphanumeric() && ch != '_', "_")
    )) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

async fn search(
    State(c): State<Arc<Console>>,
    h: HeaderMap,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    authorize(&c, &h, false)?;
    let Query(q) = q.map_err(|e| Fail(StatusCode::BAD_REQUEST, e.body_text()))?;
    ok(c.index().search(&q.q))
}

fn live_of(c: &Console) -> Result<&Arc<dyn Live>, Fail> {
    match &c.mode {
        Mode::Live { live, .. } => Ok(live),
        Mode::Offline(_) => Err(Fail(
            StatusCode::FORBIDDEN,
            "this console is read-only: it shows a report".into(),
        )),
    }
}

fn check_action(a: &Action) -> Result<(), Fail> {
    let bad = |m: String| Err(Fail(StatusCode::BAD_REQUEST, m));
    if !matches!(a.target.as_str(), "account" | "key") {
        return bad(format!("target: {:?} is not account or key", a.target));
    }
    if a.id.trim().is_empty() {
        return bad("id: empty".into());
    }
    if !matches!(a.decision.as_str(), "block" | "allow" | "clear") {
        return bad(format!(
            "decision: {:?} is not block, allow or clear",
            a.decision
        ));
    }
    if a.reason.trim().is_empty() {
        return bad("reason: required (it goes into the audit log)".into());
    }
    Ok(())
}

async fn action(State(c): State<Arc<Console>>, h: HeaderMap, body: axum::body::Bytes) -> Answer {
    let actor = authorize(&c, &h, true)?.unwrap_or_default();
    let live = live_of(&c)?;
    let a: Action = parse(&body)?;
    check_action(&a)?;
    let r = live
        .act(&a, &actor)
        .map_err(|e| Fail(e.status(), e.to_string()))?;
    c.invalidate();
    ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignBlock {
    reason: String,
    /// The member count the analyst confirmed; refused if the campaign
    /// changed size since.
    confirm_count: usize,
}

async fn block_campaign(
    State(c): State<Arc<Console>>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let actor = authorize(&c, &h, true)?.unwrap_or_default();
    let live = live_of(&c)?;
    let b: CampaignBlock = parse(&body)?;
    if b.reason.trim().is_empty() {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            "reason: required (it goes into the audit log)".into(),
        ));
    }
    let ix = c.index();
    let members: Vec<String> = ix
        .report
        .campaigns
        .iter()
        .find(|x| x.campaign_id == id)
        .map(|x| x.accounts.clone())
        .ok_or_else(|| not_found("campaign", &id))?;
    if members.len() != b.confirm_count {
        return Err(Fail(
            StatusCode::CONFLICT,
            format!(
                "the campaign has {} members now, not the {} confirmed; review it again",
                members.len(),
                b.confirm_count
            ),
        ));
    }
    let mut done = 0usize;
    for m in &members {
        let a = Action {
            target: "account".into(),
            id: m.clone(),
            decision: "block".into(),
            reason: format!("campaign {id}: {}", b.reason),
        };
        live.act(&a, &actor).map_err(|e| {
            Fail(
                StatusCode::BAD_GATEWAY,
                format!("after {done} blocked: {e}"),
            )
        })?;
        done += 1;
    }
    c.invalidate();
    ok(json!({"campaign_id": id, "blocked": done}))
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit(
    State(c): State<Arc<Console>>,
    h: HeaderMap,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    authorize(&c, &h, false)?;
    let live = live_of(&c)?;
    let Query(q) = q.map_err(|e| Fail(StatusCode::BAD_REQUEST, e.body_text()))?;
    ok(live
        .audit(q.limit.unwrap_or(100).clamp(1, 1000))
        .map_err(|e| Fail(e.status(), e.to_string()))?)
}

async fn health(State(c): State<Arc<Console>>, h: HeaderMap) -> Answer {
    authorize(&c, &h, false)?;
    ok(live_of(&c)?.health())
}

/// Serves a console until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(console))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use distillguard_core::report::{AccountReport, CampaignReport, Verdict};
    use tower::ServiceExt;

    /// The gateway's side, recorded: what the console asked of it.
    #[derive(Default)]
    struct Recorder {
        acted: Mutex<Vec<(Action, String)>>,
    }

    impl Live for Recorder {
        fn snapshot(&self) -> Report {
            let acct = |id: &str| AccountReport {
                account_id: id.into(),
                risk: 0.99,
                verdict: Verdict::Block,
                flagged_at: None,
                reasons: Vec::new(),
                campaign_id: Some("camp_r".into()),
                samples: Vec::new(),
                timeline: None,
            };
            Report {
                version: 1,
                stats: serde_json::Map::new(),
                accounts: vec![acct("m1"), acct("m2"), acct("m3")],
                campaigns: vec![CampaignReport {
                    campaign_id: "camp_r".into(),
                    accounts: vec!["m1".into(), "m2".into(), "m3".into()],
                    detected_at: None,
                    score: None,
                    extra: serde_json::Map::new(),
                }],
                keys: Vec::new(),
            }
        }
        fn login(&self, token: &str) -> Option<String> {
            (token == "sesame").then(|| "admin:test".to_string())
        }
        fn act(&self, action: &Action, actor: &str) -> Result<Value, ActionError> {
            self.acted
                .lock()
                .map_err(|_| ActionError::Failed("poisoned".into()))?
                .push((action.clone(), actor.to_string()));
            Ok(json!({"ok": true}))
        }
        fn audit(&self, _limit: usize) -> Result<Value, ActionError> {
            Ok(json!({"entries": []}))
        }
        fn health(&self) -> Value {
            json!({"detector": "up"})
        }
        fn decision(&self, _target: &str, _id: &str) -> Value {
            json!({"in_force": "allow"})
        }
    }

    async fn call(
        app: &Router,
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let head = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            head,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn live_actions_need_a_session_and_its_csrf_token_and_a_campaign_block_its_count() {
        let rec = Arc::new(Recorder::default());
        let app = router(Arc::new(Console::live(rec.clone())));
        // Nothing without a session.
        let (s, _, _) = call(&app, "GET", "/api/overview", "", &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _, _) = call(&app, "POST", "/api/login", r#"{"token":"wrong"}"#, &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, head, v) = call(&app, "POST", "/api/login", r#"{"token":"sesame"}"#, &[]).await;
        assert_eq!(s, StatusCode::OK);
        let set = head.get(header::SET_COOKIE).unwrap().to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        let csrf = v["csrf"].as_str().unwrap().to_string();
        assert_eq!(csrf.len(), 64);
        let (s, _, v) = call(&app, "GET", "/api/overview", "", &[("cookie", &cookie)]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["health"]["detector"], "up");
        // An action: without the token, with a wrong one, without a reason.
        let block = r#"{"target":"account","id":"m1","decision":"block","reason":"ring"}"#;
        let (s, _, _) = call(&app, "POST", "/api/actions", block, &[("cookie", &cookie)]).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _, _) = call(
            &app,
            "POST",
            "/api/actions",
            block,
            &[("cookie", &cookie), ("x-csrf-token", "0")],
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let ok_headers = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
        let (s, _, v) = call(
            &app,
            "POST",
            "/api/actions",
            r#"{"target":"account","id":"m1","decision":"block","reason":" "}"#,
            &ok_headers,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().starts_with("reason"), "{v}");
        let (s, _, v) = call(
            &app,
            "POST",
            "/api/actions",
            r#"{"target":"team","id":"m1","decision":"block","reason":"r"}"#,
            &ok_headers,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["error"].as_str().unwrap().starts_with("target"), "{v}");
        assert!(rec.acted.lock().unwrap().is_empty());
        let (s, _, _) = call(&app, "POST", "/api/actions", block, &ok_headers).await;
        assert_eq!(s, StatusCode::OK);
        // A campaign block with a stale count is refused; the right count
        // blocks every member, each with the campaign and the reason.
        let (s, _, v) = call(
            &app,
            "POST",
            "/api/campaigns/camp_r/block",
            r#"{"reason":"ring","confirm_count":2}"#,
            &ok_headers,
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        let (s, _, v) = call(
            &app,
            "POST",
            "/api/campaigns/camp_r/block",
            r#"{"reason":"ring","confirm_count":3}"#,
            &ok_headers,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["blocked"], 3);
        let acted = rec.acted.lock().unwrap().clone();
        assert_eq!(acted.len(), 4);
        assert!(acted.iter().all(|(_, who)| who == "admin:test"));
        let members: Vec<&str> = acted[1..].iter().map(|(a, _)| a.id.as_str()).collect();
        assert_eq!(members, ["m1", "m2", "m3"]);
        assert!(
            acted[1..]
                .iter()
                .all(|(a, _)| a.reason == "campaign camp_r: ring")
        );
        // After logout the session is gone.
        let (s, _, _) = call(&app, "POST", "/api/logout", "", &ok_headers).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, _) = call(&app, "GET", "/api/overview", "", &[("cookie", &cookie)]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn an_offline_console_reads_without_login_and_never_acts() {
        let app = router(Arc::new(Console::offline(
            Recorder::default().snapshot(),
            "r",
        )));
        let (s, _, v) = call(&app, "GET", "/api/session", "", &[]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["mode"], "offline");
        let (s, _, _) = call(&app, "GET", "/api/campaigns/camp_r", "", &[]).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, _) = call(&app, "POST", "/api/login", r#"{"token":"sesame"}"#, &[]).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = call(
            &app,
            "POST",
            "/api/campaigns/camp_r/block",
            r#"{"reason":"r","confirm_count":3}"#,
            &[],
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, head, _) = call(&app, "GET", "/", "", &[]).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            head.get(header::CONTENT_SECURITY_POLICY)
                .unwrap()
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
    }
}
