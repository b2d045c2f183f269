/*!
The gateway's configuration file (TOML): parsed with unknown keys
rejected, then validated, with errors that name the field.

```toml
listen = "127.0.0.1:8080"
internal_listen = "127.0.0.1:9090" # optional: /metrics, /healthz and /admin/… here only
max_body_bytes = 1048576          # larger requests get 413
max_connections = 10000           # open connections at most; beyond, clients wait
upstream_timeout_secs = 120       # to the answer's head
stream_idle_timeout_secs = 30     # between chunks of an answer (a stalled upstream is cut off)
header_timeout_secs = 10          # to send a request's head (slow clients are closed)
body_timeout_secs = 30            # to send its body once the head is in (408)
max_inflight_body_bytes = 268435456 # bodies held across all connections (503 beyond)
drain_timeout_secs = 30           # on shutdown, the wait for requests in flight
trusted_proxies = []              # CIDRs whose X-Forwarded-For is believed (default: none)
keys_db = "distillguard.db"       # API keys (distillguard keys create; it must exist); 401 without one
# auth = "none"                   # instead of keys_db: no authentication (local testing only)

[limits]                          # per key and per account; defaults from the tier
throttle_divisor = 10             # the throttle action divides both rates by this
[limits.tiers.tier2]              # override or add a tier
rpm = 300
tpm = 2000000

[admin]                           # /admin/… (verdict overrides, allowlist, reload)
token_sha256 = "…"                # distillguard keys admin-token prints a token and this hash

[[upstreams]]
name = "local-vllm"
url = "http://127.0.0.1:8000"     # or https:// (verified: system roots, plus [tls] upstream_ca)
dialect = "openai"                # or "anthropic"
models = ["atlas-3", "atlas-2-pro"]
# api_key_env = "UPSTREAM_KEY"    # the upstream's own key, from the environment
```
*/

use std::num::{NonZeroU64, NonZeroUsize};

use serde::Deserialize;

pub use crate::dialect::Dialect;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub name: String,
    pub url: String,
    pub dialect: Dialect,
    pub models: Vec<String>,
    /// The environment variable holding the upstream's API key, sent as
    /// `Authorization: Bearer` (OpenAI) or `x-api-key` (Anthropic). The
    /// key itself is never in the file.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The key, read from `api_key_env` at load.
    #[serde(skip)]
    pub credential: Option<Secret>,
}

/// A secret that `Debug` does not print.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Serve `/metrics`, `/healthz` and `/admin/…` on this address (for
    /// example a private interface) and not on `listen`.
    #[serde(default)]
    pub internal_listen: Option<String>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Open connections at most; beyond, clients wait in the backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_timeout")]
    pub upstream_timeout_secs: u64,
    #[serde(default = "default_idle")]
    pub stream_idle_timeout_secs: u64,
    /// Seconds a client has to send a request's head (and the longest a
    /// keep-alive connection idles); the connection is closed after.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: NonZeroU64,
    /// Seconds a client has to send a request's body once its head is in;
    /// 408 after.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: NonZeroU64,
    /// Request body bytes held across all connections at once; a request
    /// that would exceed it gets 503 (stalled uploads cannot grow memory).
    #[serde(default = "default_inflight_body")]
    pub max_inflight_body_bytes: NonZeroUsize,
    /// Seconds a shutdown waits for requests in flight before closing them.
    #[serde(default = "default_drain")]
    pub drain_timeout_secs: u64,
    /// Replaced by `trusted_proxies` (kept to explain the change).
    #[serde(default)]
    pub trust_forwarded_for: Option<bool>,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed. The client's
    /// address is the nearest hop not in these ranges; a request from any
    /// other peer is known by its TCP address, which it cannot forge.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::client_ip::Cidr>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub admin: Option<Admin>,
    /// The analyst's web console at `/ui` (on with `[admin]`: its login is
    /// the admin token).
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Endpoints for other gateways (`POST /v1/events`, `/v1/verdicts`,
    /// `/v1/auth`).
    #[serde(default)]
    pub integrations: Option<Integrations>,
    /// How clients authenticate: `"keys"` (the default: API keys from
    /// `keys_db`, which must exist) or `"none"` (local testing only: no
    /// authentication, and each client address is its own account).
    #[serde(default)]
    pub auth: Auth,
    /// The API key store (`distillguard keys create` writes it).
    #[serde(default)]
    pub keys_db: Option<String>,
    /// Inline detection.
    #[serde(default)]
    pub detect: Detect,
    /// Campaign linking in the detector (the `[link]` table of `analyze`).
    #[serde(default)]
    pub link: distillguard_link::Config,
    /// What each verdict does.
    #[serde(default)]
    pub actions: Actions,
    /// The event log (opt-in: it holds raw request bodies).
    #[serde(default)]
    pub log: Option<crate::eventlog::LogConfig>,
    /// TLS on the listener and extra roots for `https://` upstreams.
    #[serde(default)]
    pub tls: crate::tls::TlsConfig,
    /// The Batch APIs (OpenAI files and batches, Anthropic message batches).
    #[serde(default)]
    pub batches: Batches,
    /// Running as one of several replicas (limits shared in Redis).
    #[serde(default)]
    pub cluster: Cluster,
    pub upstreams: Vec<Upstream>,
}

/// The `[cluster]` table: what replicas share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// This replica's name, under which its detector saves verdicts in a
    /// shared store (default: `<hostname>/<listen>`).
    pub node: Option<String>,
    /// Per-key and per-account limits in Redis (`redis://host:port`), so
    /// that every replica enforces one limit; without it, each gateway
    /// keeps its own.
    pub redis_url: Option<String>,
    /// When Redis cannot answer: refuse with 503 (true) or fall back to
    /// the gateway's own limits (false, the default).
    pub redis_fail_closed: bool,
    /// The wait for Redis per admission, after which it counts as down.
    pub redis_timeout_ms: NonZeroU64,
    /// Connections to Redis (each carries one admission at a time).
    pub redis_connections: NonZeroUsize,
    /// `[cluster.nats]`: every request's event is published to NATS
    /// JetStream for detector workers (`distillguard detect`), partitioned
    /// by account; what the bus cannot take spills to a local file.
    pub nats: Option<distillguard_bus::BusConfig>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            node: None,
            redis_url: None,
            redis_fail_closed: false,
            redis_timeout_ms: NonZeroU64::new(50).unwrap_or(NonZeroU64::MIN),
            redis_connections: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            nats: None,
        }
    }
}

impl Config {
    /// This replica's name: `[cluster] node`, else `<hostname>/<listen>`.
    pub fn node_name(&self) -> String {
        self.cluster.node.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("{host}/{}", self.listen)
        })
    }
}

/// The `[batches]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batches {
    /// Proxy the Batch APIs (off: they answer 404).
    pub enabled: bool,
    /// The body cap of a batch upload or submission (a batch is read whole
    /// and scored before it is forwarded, so it is held up to this size).
    pub max_body_bytes: NonZeroUsize,
    /// How long a submission waits for its requests to be scored; past it,
    /// the batch is forwarded (or refused with 503 under `fail_closed`).
    pub score_timeout_secs: NonZeroU64,
}

impl Default for Batches {
    fn default() -> Self {
        Batches {
            enabled: true,
            max_body_bytes: NonZeroUsize::new(200 << 20).unwrap_or(NonZeroUsize::MIN),
            score_timeout_secs: NonZeroU64::new(120).unwrap_or(NonZeroU64::MIN),
        }
    }
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    #[default]
    Keys,
    None,
}

/// One tier's limits (both per key and per account).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimit {
    /// Requests per minute.
    pub rpm: u32,
    /// Tokens per minute (prompt and answer).
    pub tpm: u64,
}

/// The `[limits]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub throttle_divisor: u32,
    /// Overrides and additions to the built-in tiers (`core::tier`).
    pub tiers: std::collections::HashMap<String, TierLimit>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            throttle_divisor: 10,
            tiers: Default::default(),
        }
    }
}

impl LimitsConfig {
    /// The limits of a key's tier (unknown tiers get `tier1`'s).
    pub fn of(&self, tier: &str) -> TierLimit {
        self.tiers.get(tier).copied().unwrap_or_else(|| {
            let l = distillguard_core::tier::limits_of(Some(tier));
            TierLimit {
                rpm: l.rpm,
                tpm: l.tpm,
            }
        })
    }
}

/// The `[console]` table.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console at `/ui` (where the admin API is, and only with
    /// `[admin]`, whose token is its login).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Keep each account's timeline for its page: escalations with the
    /// reasons of the moment, risk over time, requests per day and hour
    /// (at most about 1.5 KiB per tracked account; forgotten accounts
    /// free theirs).
    #[serde(default = "yes")]
    pub timelines: bool,
}

fn yes() -> bool {
    true
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            timelines: true,
        }
    }
}

/// The `[admin]` table: the admin API is on only with a token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// SHA-256 (hex) of the admin token; the token itself is not stored.
    pub token_sha256: String,
}

/// The `[integrations]` table: endpoints for other gateways (ingest,
/// verdicts, forward-auth), on only with a token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Integrations {
    /// SHA-256 (hex) of the integration token (`distillguard keys
    /// admin-token` prints a token and its hash); not the admin token.
    pub token_sha256: String,
    /// Forward-auth: the header naming the account, set by the calling
    /// gateway (else a distillguard key on the request identifies it).
    #[serde(default = "default_account_header")]
    pub account_header: String,
    /// Forward-auth: the header naming the key (optional).
    #[serde(default = "default_key_header")]
    pub key_header: String,
    /// Forward-auth without an account, or with detection down: refuse
    /// (true) or allow (false, the default).
    #[serde(default)]
    pub fail_closed: bool,
    /// Forward-auth: requests a minute a throttled account is let through.
    #[serde(default = "default_throttle_rpm")]
    pub throttle_rpm: std::num::NonZeroU32,
    /// The largest `POST /v1/events` body, after gzip.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: std::num::NonZeroUsize,
}

fn default_account_header() -> String {
    "x-account-id".into()
}
fn default_key_header() -> String {
    "x-api-key-id".into()
}
fn default_throttle_rpm() -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(6).unwrap_or(std::num::NonZeroU32::MIN)
}
fn default_max_batch_bytes() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(32 << 20).unwrap_or(std::num::NonZeroUsize::MIN)
}

/// One action on an account's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Allow, and keep the event.
    Record,
    /// Strip reasoning traces from answers.
    WithholdReasoning,
    /// A tenth of the tier's request rate.
    Throttle,
    /// 403.
    Block,
}

/// The `[actions]` table: actions per verdict, and what a key's verdict
/// applies to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Actions {
    pub monitor: Vec<Action>,
    pub throttle: Vec<Action>,
    pub block: Vec<Action>,
    /// `[actions.scope]`: per verdict, whether an API key's own verdict
    /// (reached on that key's traffic) acts on the key alone (`"key"`, the
    /// default: a reseller's harvesting key is stopped and its customers'
    /// keys keep serving) or on the whole account (`"account"`). The
    /// account's own verdict (its whole traffic, its campaign, an
    /// override) always acts on every key.
    pub scope: Scope,
}

/// What a key's verdict acts on, per verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scope {
    pub monitor: ScopeKind,
    pub throttle: ScopeKind,
    pub block: ScopeKind,
}

impl Default for Scope {
    fn default() -> Self {
        Scope {
            monitor: ScopeKind::Key,
            throttle: ScopeKind::Key,
            block: ScopeKind::Key,
        }
    }
}

/// The key alone, or its whole account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Key,
    Account,
}

impl Scope {
    /// Whether a key's verdict `v` acts on the whole account.
    pub fn account_wide(&self, v: distillguard_core::Verdict) -> bool {
        use distillguard_core::Verdict as V;
        match v {
            V::Allow => false,
            V::Monitor => self.monitor == ScopeKind::Account,
            V::Throttle => self.throttle == ScopeKind::Account,
            V::Block => self.block == ScopeKind::Account,
        }
    }

    /// The verdict a request of an account on a key gets from one
    /// detector's view: the account's own, its keys' highest where that
    /// acts on the whole account, and the key's own.
    pub fn combine(
        &self,
        own: distillguard_core::Verdict,
        keys: distillguard_core::Verdict,
        of_key: distillguard_core::Verdict,
    ) -> distillguard_core::Verdict {
        let wide = match self.account_wide(keys) {
            true => keys,
            false => distillguard_core::Verdict::Allow,
        };
        own.max(wide).max(of_key)
    }
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            monitor: vec![Action::Record],
            throttle: vec![Action::Record, Action::WithholdReasoning, Action::Throttle],
            block: vec![Action::Block],
            scope: Scope::default(),
        }
    }
}

impl Actions {
    pub fn for_verdict(&self, v: distillguard_core::Verdict) -> &[Action] {
        match v {
            distillguard_core::Verdict::Allow => &[],
            distillguard_core::Verdict::Monitor => &self.monitor,
            distillguard_core::Verdict::Throttle => &self.throttle,
            distillguard_core::Verdict::Block => &self.block,
        }
    }
}

/// The `[detect]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Detect {
    pub enabled: bool,
    /// Records waiting for the detector; beyond, they are dropped and counted.
    pub queue: usize,
    /// Answer 503 when the detector is down (default: fail open).
    pub fail_closed: bool,
    /// Overrides the embedded thresholds.
    pub thresholds: Option<distillguard_detect::engine::Thresholds>,
    /// Account records (JSONL, the format of `analyze --accounts`): the
    /// account features of the score, and linking by payment method and
    /// e-mail domain. Without them, detection works from requests alone.
    pub accounts: Option<std::path::PathBuf>,
    /// Model releases (JSONL, as `analyze --models`), for the pivot signal.
    pub models: Option<std::path::PathBuf>,
    /// Accounts without a record (one per client address when there are no
    /// keys) that stayed `allow` and unlinked are forgotten after this long
    /// without a request.
    pub forget_idle_secs: NonZeroU64,
    /// Accounts tracked before the least recently seen of those are
    /// forgotten early (down to 90%). Accounts at `monitor` or above, linked,
    /// or with a record are never forgotten, so this bounds what anonymous
    /// honest-looking clients can take, not evidence.
    pub max_accounts: NonZeroUsize,
}

impl Default for Detect {
    fn default() -> Self {
        Detect {
            enabled: true,
            queue: 65_536,
            fail_closed: false,
            thresholds: None,
            accounts: None,
            models: None,
            forget_idle_secs: NonZeroU64::new(86_400).unwrap_or(NonZeroU64::MIN),
            max_accounts: NonZeroUsize::new(1_000_000).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_timeout() -> u64 {
    120
}
fn default_max_connections() -> usize {
    10_000
}
fn default_header_timeout() -> NonZeroU64 {
    NonZeroU64::new(10).unwrap_or(NonZeroU64::MIN)
}
fn default_body_timeout() -> NonZeroU64 {
    NonZeroU64::new(30).unwrap_or(NonZeroU64::MIN)
}
fn default_inflight_body() -> NonZeroUsize {
    NonZeroUsize::new(256 << 20).unwrap_or(NonZeroUsize::MIN)
}
fn default_drain() -> u64 {
    30
}
fn default_idle() -> u64 {
    30
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Parse(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl Config {
    /// Parses and validates.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        c.validate()?;
        for (i, u) in c.upstreams.iter_mut().enumerate() {
            if let Some(var) = &u.api_key_env {
                u.credential = Some(Secret(std::env::var(var).map_err(|_| {
                    ConfigError::Invalid {
                        field: format!("upstreams[{i}].api_key_env"),
                        reason: format!("the environment variable {var} is not set"),
                    }
                })?));
            }
        }
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: String, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        if self.upstreams.is_empty() {
            return bad("upstreams".into(), "at least one upstream is needed");
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad("tls".into(), "cert and key go together");
        }
        match (self.auth, &self.keys_db) {
            (Auth::Keys, None) => {
                return bad(
                    "keys_db".into(),
                    "needed to authenticate clients (distillguard keys create makes one); auth = \"none\" serves without authentication, for local testing only",
                );
            }
            (Auth::None, Some(_)) => {
                return bad("auth".into(), "\"none\" with a keys_db: remove one of them");
            }
            _ => {}
        }
        if self.trust_forwarded_for == Some(true) {
            return bad(
                "trust_forwarded_for".into(),
                "replaced by trusted_proxies = [\"10.0.0.0/8\", …]: X-Forwarded-For is believed only from the proxies listed there",
            );
        }
        if let Some(n) = &self.cluster.nats {
            n.validate().map_err(|e| ConfigError::Invalid {
                field: "cluster.nats".into(),
                reason: e.to_string(),
            })?;
        }
        if let Some(t) = &self.detect.thresholds {
            t.validate()
                .map_err(|distillguard_core::Invalid(reason)| ConfigError::Invalid {
                    field: "detect.thresholds".into(),
                    reason,
                })?;
        }
        self.link
            .validate()
            .map_err(|distillguard_core::Invalid(reason)| ConfigError::Invalid {
                field: "link".into(),
                reason,
            })?;
        if self.max_body_bytes == 0 {
            return bad("max_body_bytes".into(), "must be positive");
        }
        if self.max_connections == 0 {
            return bad("max_connections".into(), "must be positive");
        }
        if self.stream_idle_timeout_secs == 0 {
            return bad("stream_idle_timeout_secs".into(), "must be positive");
        }
        if self.limits.throttle_divisor == 0 {
            return bad("limits.throttle_divisor".into(), "must be at least 1");
        }
        for (name, t) in &self.limits.tiers {
            if t.rpm == 0 || t.tpm == 0 {
                return bad(
                    format!("limits.tiers.{name}"),
                    "rpm and tpm must be positive",
                );
            }
        }
        if let Some(a) = &self.admin
            && (a.token_sha256.len() != 64
                || !a.token_sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return bad(
                "admin.token_sha256".into(),
                "must be 64 hex digits (distillguard keys admin-token prints one)",
            );
        }
        if let Some(i) = &self.integrations {
            if i.token_sha256.len() != 64 || !i.token_sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return bad(
                    "integrations.token_sha256".into(),
                    "must be 64 hex digits (distillguard keys admin-token prints one)",
                );
            }
            if let Some(a) = &self.admin
                && a.token_sha256.eq_ignore_ascii_case(&i.token_sha256)
            {
                return bad(
                    "integrations.token_sha256".into(),
                    "must differ from the admin token's (the integrations' token is handed to other gateways)",
                );
            }
            for (field, h) in [
                ("account_header", &i.account_header),
                ("key_header", &i.key_header),
            ] {
                if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return bad(
                        format!("integrations.{field}"),
                        "must be a valid HTTP header name",
                    );
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            if !(u.url.starts_with("http://") || u.url.starts_with("https://")) {
                return bad(
                    format!("upstreams[{i}].url"),
                    "must start with http:// or https://",
                );
            }
            if u.dialect != u.dialect.upstream() {
                return bad(
                    format!("upstreams[{i}].dialect"),
                    "an upstream speaks \"openai\" or \"anthropic\" (an \"openai\" upstream also serves /v1/responses)",
                );
            }
            if u.models.is_empty() {
                return bad(
                    format!("upstreams[{i}].models"),
                    "list the models it serves",
                );
            }
            for m in &u.models {
                if !seen.insert((m.clone(), u.dialect)) {
                    return bad(
                        format!("upstreams[{i}].models"),
                        &format!(
                            "model {m:?} is already served by another upstream of this dialect"
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether the console is served (it needs the admin API's token).
    pub fn console_on(&self) -> bool {
        self.console.enabled && self.admin.is_some()
    }

    /// The upstream serving `model` to a request of `api` (a Responses
    /// request goes to an OpenAI-dialect upstream).
    pub fn route(&self, api: Dialect, model: &str) -> Option<&Upstream> {
        let dialect = api.upstream();
        self.upstreams
            .iter()
            .find(|u| u.dialect == dialect && u.models.iter().any(|m| m == model))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_shipped_example_config_is_valid() {
        let text = include_str!("../../../examples/gateway.toml");
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert!(c.route(Dialect::Anthropic, "atlas-2-pro").is_some());
        assert_eq!(c.actions.throttle.len(), 3);
    }

    #[test]
    fn parses_defaults_and_rejects_bad_fields() {
        let up = "[[upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ndialect = \"openai\"\nmodels = [\"m\"]\n";
        // No key store, and no word that none is wanted: refused.
        let e = Config::from_toml(up).unwrap_err();
        assert!(e.to_string().starts_with("keys_db: needed"), "{e}");
        let e =
            Config::from_toml(&format!("auth = \"none\"\nkeys_db = \"k.db\"\n{up}")).unwrap_err();
        assert!(e.to_string().starts_with("auth:"), "{e}");
        let e = Config::from_toml(&format!(
            "keys_db = \"k.db\"\ntrust_forwarded_for = true\n{up}"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("trusted_proxies"), "{e}");
        let e = Config::from_toml(&format!(
            "keys_db = \"k.db\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n{up}"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("prefix length"), "{e}");
        let e = Config::from_toml(&format!(
            "keys_db = \"k.db\"\nheader_timeout_secs = 0\n{up}"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("header_timeout_secs"), "{e}");
        let c = Config::from_toml(&format!("auth = \"none\"\n{up}")).unwrap();
        assert_eq!(c.header_timeout_secs.get(), 10);
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert!(c.route(Dialect::OpenAi, "m").is_some());
        assert!(c.route(Dialect::Anthropic, "m").is_none());
        let e = Config::from_toml("listn = \"x\"\nupstreams = []\n").unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let e = Config::from_toml(
            "auth = \"none\"\n[[upstreams]]\nname = \"a\"\nurl = \"ftp://x\"\ndialect = \"openai\"\nmodels = [\"m\"]\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "upstreams[0].url: must start with http:// or https://"
        );
        assert!(c.route(Dialect::Responses, "m").is_some());
        let responses = up.replace("\"openai\"", "\"responses\"");
        let e = Config::from_toml(&format!("auth = \"none\"\n{responses}")).unwrap_err();
        assert!(e.to_string().starts_with("upstreams[0].dialect:"), "{e}");
    }
}
