/*!
The admin API, for the trust & safety team: override a verdict, allowlist
an account, reload the config. It is on only when `[admin] token_sha256`
is set, and every call needs `Authorization: Bearer <admin token>`
(compared by hash, in constant time). Without the section, `/admin/…`
answers 404.

- `GET /admin/accounts/{id}`: the verdict in force, the detector's (with
  risk and campaign membership) and any override;
- `PUT /admin/accounts/{id}/override` `{"verdict": "block", "reason": "…"}`
  and `DELETE` the same: an operator's verdict, which wins over the
  detector's;
- `PUT /admin/allowlist/{id}` `{"reason": "…"}` and `DELETE`: an override
  to `allow` (the account is never acted on; it is still scored);
- `GET /admin/overrides`: all of them;
- `GET /admin/audit?limit=N`: the newest operator actions (who, when,
  what, why), newest first;
- `POST /admin/reload`: re-reads the config file. Upstreams, limits,
  actions, timeouts, the body cap, `fail_closed` and the admin token take
  effect at once for new requests; the listen address, the key store,
  detection settings and the log need a restart, and the answer lists
  those that changed.

Overrides are kept in the key store's database, so they outlive a restart.
Every change (an override set or removed, a reload) is written to the
store's audit log in the same transaction. The actor is the token's id
(the first 8 hex digits of its hash) and, when the caller names one in
`X-Distillguard-Operator`, that name: `admin:1a2b3c4d (carol)`.
*/

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use distillguard_console::ActionError;
use distillguard_core::Verdict;
use distillguard_storage::{AuditEntry, Override, Store, StoreError};
use serde::Deserialize;
use serde_json::json;

use crate::{Config, Decision, Gateway};

pub(crate) fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/accounts/{id}", get(account))
        .route(
            "/accounts/{id}/override",
            put(set_override).delete(clear_override),
        )
        .route("/allowlist/{id}", put(allowlist).delete(clear_override))
        .route("/overrides", get(overrides))
        .route("/audit", get(audit_log))
        .route("/reload", post(reload))
}

/// Overrides saved in the store.
pub(crate) fn load_overrides(k: &dyn Store) -> Result<HashMap<String, Decision>, StoreError> {
    Ok(k.overrides()?
        .into_iter()
        .filter_map(|o| {
            let v = Verdict::parse(&o.verdict)?;
            Some((
                o.account,
                Decision {
                    verdict: v,
                    reason: o.reason,
                    created: o.created,
                },
            ))
        })
        .collect())
}

/// An admin call's error: a status and a message, as `{"error": …}`.
#[derive(Debug)]
pub struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn err(status: StatusCode, message: impl Into<String>) -> AdminError {
    AdminError(status, message.into())
}

fn fail<T>(status: StatusCode, message: impl Into<String>) -> Result<T, AdminError> {
    Err(err(status, message))
}

type Answer = Result<Response, AdminError>;

/// The admin token check (404 when the admin API is off); the caller's
/// name for the audit log.
fn authorize(gw: &Gateway, h: &HeaderMap) -> Result<String, AdminError> {
    let cfg = gw.config();
    let Some(admin) = &cfg.admin else {
        return Err(err(
            StatusCode::NOT_FOUND,
            "the admin API is off (no [admin] in the config)",
        ));
    };
    let presented = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            err(
                StatusCode::UNAUTHORIZED,
                "admin token required (Authorization: Bearer …)",
            )
        })?;
    let digest = distillguard_storage::sha256_hex(presented.trim());
    if !hash_matches(&digest, &admin.token_sha256) {
        return Err(err(StatusCode::UNAUTHORIZED, "wrong admin token"));
    }
    Ok(actor(&digest, h))
}

/// Whether a presented token's SHA-256 (hex) is the configured one, in
/// constant time (the admin and the integration tokens).
pub(crate) fn hash_matches(digest: &str, configured_sha256: &str) -> bool {
    distillguard_storage::constant_time_eq(
        digest.as_bytes(),
        configured_sha256.to_ascii_lowercase().as_bytes(),
    )
}

/// `admin:<token id>`, with the operator's own name when the call gives
/// one (printable, at most 64 characters; anything else is dropped).
fn actor(digest: &str, h: &HeaderMap) -> String {
    let id = digest.get(..8).unwrap_or(digest);
    let name = h
        .get("x-distillguard-operator")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.len() <= 64 && n.chars().all(|c| !c.is_control()));
    match name {
        Some(n) => format!("admin:{id} ({n})"),
        None => format!("admin:{id}"),
    }
}

pub(crate) fn decision_json(d: &Decision) -> serde_json::Value {
    json!({"verdict": d.verdict, "reason": d.reason, "created": d.created})
}

async fn account(State(gw): State<Arc<Gateway>>, h: HeaderMap, Path(id): Path<String>) -> Answer {
    authorize(&gw, &h)?;
    let detected = gw.detector.as_ref().and_then(|d| d.state(&id));
    let over = gw.overrides.read().ok().and_then(|m| m.get(&id).cloned());
    Ok(Json(json!({
        "account": id,
        "verdict": gw.verdict(&id, None),
        "detected": detected.map(|s| json!({"verdict": s.verdict, "risk": s.risk, "campaign": s.campaign, "keys": s.keys})),
        "override": over.as_ref().map(decision_json),
        "rejected": gw
            .rejections
            .of(&id)
            .into_iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect::<serde_json::Map<_, _>>(),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetOverride {
    verdict: Verdict,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    #[serde(default)]
    reason: String,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            format!("the body: {e} (expected {{\"verdict\": \"allow|monitor|throttle|block\", \"reason\": \"…\"}})"),
        )
    })
}

/// Records an operator's decision on an account (or, as `key:ID`, on a
/// key): saved, posted to the board, in force at once.
pub(crate) fn decide(
    gw: &Gateway,
    actor: &str,
    account: String,
    verdict: Verdict,
    reason: String,
) -> Result<serde_json::Value, ActionError> {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let d = Decision {
        verdict,
        reason,
        created,
    };
    if let Some(store) = &gw.keys {
        let saved = store.lock().map_err(|_| ()).and_then(|s| {
            s.set_override(
                &Override {
                    account: account.clone(),
                    verdict: verdict.as_str().into(),
                    reason: d.reason.clone(),
                    created,
                },
                actor,
            )
            .map_err(|e| tracing::warn!(error = %e, "saving an override failed"))
        });
        if saved.is_err() {
            return Err(ActionError::Failed("saving the override failed".into()));
        }
    }
    if let Some(b) = &gw.board {
        b.post(
            distillguard_bus::board::Scope::Override,
            &account,
            Some(distillguard_bus::board::Posted {
                verdict: verdict.as_str().into(),
                risk: 0.0,
                campaign: false,
                keys: None,
                at_ms: created.saturating_mul(1000),
                by: actor.into(),
                reason: d.reason.clone(),
            }),
        );
    }
    let body = json!({"account": account, "override": decision_json(&d)});
    if let Ok(mut m) = gw.overrides.write() {
        m.insert(account, d);
    }
    Ok(body)
}

fn put_decision(
    gw: &Gateway,
    actor: &str,
    account: String,
    verdict: Verdict,
    reason: String,
) -> Answer {
    decide(gw, actor, account, verdict, reason)
        .map(|b| Json(b).into_response())
        .map_err(|e| err(e.status(), e.to_string()))
}

async fn set_override(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let actor = authorize(&gw, &h)?;
    let o = parse::<SetOverride>(&body)?;
    put_decision(&gw, &actor, id, o.verdict, o.reason)
}

async fn allowlist(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let actor = authorize(&gw, &h)?;
    let r = reason(&body)?;
    put_decision(&gw, &actor, id, Verdict::Allow, r.reason)
}

/// An optional `{"reason": …}` body.
fn reason(body: &[u8]) -> Result<Reason, AdminError> {
    match body.is_empty() {
        true => Ok(Reason::default()),
        false => parse::<Reason>(body),
    }
}

/// Removes an operator's decision (the detector's verdict applies again);
/// `Ok(None)` when there was none.
pub(crate) fn undecide(
    gw: &Gateway,
    actor: &str,
    id: &str,
    why: &str,
) -> Result<Option<serde_json::Value>, ActionError> {
    if let Some(store) = &gw.keys
        && store
            .lock()
            .map_err(|_| ())
            .and_then(|s| {
                s.clear_override(id, actor, why)
                    .map_err(|e| tracing::warn!(error = %e, "removing an override failed"))
            })
            .is_err()
    {
        return Err(ActionError::Failed("removing the override failed".into()));
    }
    let removed = gw.overrides.write().ok().and_then(|mut m| m.remove(id));
    // One set on another replica is lifted on the board.
    let on_board = gw.board.as_ref().is_some_and(|b| {
        let was = b
            .lookup(distillguard_bus::board::Scope::Override, id, |_| ())
            .is_some();
        b.post(distillguard_bus::board::Scope::Override, id, None);
        was
    });
    Ok((removed.is_some() || on_board)
        .then(|| json!({"account": id, "override": null, "verdict": gw.verdict(id, None)})))
}

async fn clear_override(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let actor = authorize(&gw, &h)?;
    let why = reason(&body)?.reason;
    match undecide(&gw, &actor, &id, &why).map_err(|e| err(e.status(), e.to_string()))? {
        Some(b) => Ok(Json(b).into_response()),
        None => fail(
            StatusCode::NOT_FOUND,
            format!("account {id} has no override"),
        ),
    }
}

async fn overrides(State(gw): State<Arc<Gateway>>, h: HeaderMap) -> Answer {
    authorize(&gw, &h)?;
    let mut list: Vec<serde_json::Value> = gw
        .overrides
        .read()
        .map(|m| {
            m.iter()
                .map(|(a, d)| {
                    let mut v = decision_json(d);
                    v["account"] = json!(a);
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    list.sort_by(|a, b| a["account"].as_str().cmp(&b["account"].as_str()));
    Ok(Json(json!({"overrides": list})).into_response())
}

/// Fields that only a restart changes, named when a reload changed them.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.listen != new.listen {
        out.push("listen");
    }
    if old.internal_listen != new.internal_listen {
        out.push("internal_listen");
    }
    if old.max_connections != new.max_connections {
        out.push("max_connections");
    }
    if old.keys_db != new.keys_db {
        out.push("keys_db");
    }
    // `fail_closed` is the one detection setting a reload changes.
    let detect = |c: &Config| {
        let mut d = c.detect.clone();
        d.fail_closed = false;
        format!("{d:?}")
    };
    if detect(old) != detect(new) {
        out.push("detect");
    }
    if format!("{:?}", old.link) != format!("{:?}", new.link) {
        out.push("link");
    }
    if format!("{:?}", old.log) != format!("{:?}", new.log) {
        out.push("log");
    }
    // Turning TLS on or off, and the upstreams' extra roots, need a
    // restart; a new certificate for a TLS listener does not.
    if old.tls.cert.is_some() != new.tls.cert.is_some() {
        out.push("tls");
    }
    if old.tls.upstream_ca != new.tls.upstream_ca {
        out.push("tls.upstream_ca");
    }
    out
}

/// `limit=N` of a query string (100 without one; at most 10,000).
fn audit_limit(query: Option<&str>) -> Result<usize, AdminError> {
    let mut limit = 100;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("limit", n)) => {
                limit = n.parse().map_err(|_| {
                    err(
                        StatusCode::BAD_REQUEST,
                        format!("limit={n}: give a whole number"),
                    )
                })?;
            }
            _ => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    format!("the query {pair:?}: only limit=N is known"),
                );
            }
        }
    }
    Ok(limit.min(10_000))
}

/// The newest operator actions from the store's audit log.
async fn audit_log(State(gw): State<Arc<Gateway>>, h: HeaderMap, uri: axum::http::Uri) -> Answer {
    authorize(&gw, &h)?;
    let limit = audit_limit(uri.query())?;
    let Some(store) = &gw.keys else {
        return fail(
            StatusCode::NOT_FOUND,
            "no key store (keys_db), so no audit log",
        );
    };
    let log = store
        .lock()
        .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "key store lock poisoned"))?
        .audit_log(limit)
        .map_err(|e| {
            tracing::warn!(error = %e, "reading the audit log failed");
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the audit log failed",
            )
        })?;
    let entries: Vec<serde_json::Value> = log
        .iter()
        .map(|e: &AuditEntry| {
            json!({"at": e.at, "actor": e.actor, "action": e.action, "target": e.target, "detail": e.detail})
        })
        .collect();
    Ok(Json(json!({"audit": entries})).into_response())
}

async fn reload(State(gw): State<Arc<Gateway>>, h: HeaderMap) -> Answer {
    let actor = authorize(&gw, &h)?;
    let Some(path) = &gw.config_path else {
        return fail(
            StatusCode::CONFLICT,
            "this gateway was not started from a config file",
        );
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {e}", path.display()),
            );
        }
    };
    let new = match Config::from_toml(&text) {
        Ok(c) => c,
        // The old config stays in force.
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("{}: {e}; the old config stays in force", path.display()),
            );
        }
    };
    // A renewed certificate takes effect now; a broken one is refused.
    if let Some(t) = &gw.tls
        && let Err(e) = t.reload(&new.tls)
    {
        return fail(
            StatusCode::BAD_REQUEST,
            format!("{e}; the old config and certificate stay in force"),
        );
    }
    let old = gw.config();
    let pending = restart_needed(&old, &new);
    if let Ok(mut c) = gw.cfg.write() {
        *c = Arc::new(new);
    }
    gw.metrics.reloaded();
    if let Some(store) = &gw.keys
        && let Ok(s) = store.lock()
        && let Err(e) = s.record(&AuditEntry {
            at: distillguard_storage::now_secs(),
            actor,
            action: "config.reload".into(),
            target: path.display().to_string(),
            detail: match pending.is_empty() {
                true => String::new(),
                false => format!("restart needed for {}", pending.join(", ")),
            },
        })
    {
        tracing::warn!(error = %e, "writing the audit log failed");
    }
    Ok(Json(json!({"reloaded": true, "restart_needed": pending})).into_response())
}
