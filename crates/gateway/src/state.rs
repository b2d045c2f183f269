/*!
The gateway's state, apart from its server: the config in force, the key
store and its cache, limits, the detector, the operators' overrides, the
event log, the bus and the verdict board; and the verdict a request meets.
*/

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use distillguard_core::Verdict;
use distillguard_storage::{KeyRecord, Store};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::budget::BodyBudget;
use crate::config::{self, Config};
use crate::error::GatewayError;
use crate::error::ServeError;
use crate::{
    admin, batches, chains, detector, eventlog, limits, listener, metrics, observed, rejections,
    shared_limits, tls,
};

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
    pub(crate) cfg: RwLock<Arc<Config>>,
    /// Where the config came from (for reload).
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    /// Keys, overrides and the audit log (SQLite or PostgreSQL).
    pub(crate) keys: Option<Mutex<Box<dyn Store>>>,
    /// SHA-256 of a presented key → its record, when verified.
    pub(crate) key_cache: Mutex<HashMap<String, (KeyRecord, Instant)>>,
    pub(crate) limits: Mutex<limits::Limiter>,
    pub(crate) detector: Option<detector::Detector>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) log: Option<eventlog::EventLog>,
    pub(crate) overrides: RwLock<HashMap<String, Decision>>,
    /// Open connections (when serving through the capped listener).
    pub(crate) connections: Option<listener::OpenConnections>,
    /// Request body bytes held across connections.
    pub(crate) body_budget: BodyBudget,
    /// The listener's certificate (reloadable), with `[tls] cert`.
    pub(crate) tls: Option<Arc<tls::Listener>>,
    /// Requests refused before a model, per account.
    pub(crate) rejections: rejections::Rejections,
    /// Who created which batch file and batch.
    pub(crate) batch_owners: batches::Owners,
    /// Limits shared with the other replicas (`[cluster] redis_url`).
    pub(crate) shared: Option<Arc<shared_limits::Shared>>,
    /// Responses conversations served (their depth behind an answer id).
    pub(crate) chains: chains::Chains,
    /// Ids of the events this process observes.
    pub(crate) ids: EventIds,
    /// The event bus (`[cluster.nats]`).
    pub(crate) bus: Option<distillguard_bus::Publisher<observed::Published>>,
    /// The verdict board the cluster's workers post to (`[cluster.nats]`).
    pub(crate) board: Option<distillguard_bus::board::Watcher>,
}

/// Event ids: a random prefix drawn at start and a counter, so that ids
/// are unique across replicas and restarts without coordination.
pub(crate) struct EventIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl EventIds {
    pub(crate) fn new() -> EventIds {
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
    /// The gateway's state from its config: the key store and the
    /// operators' overrides, the detector, the event log, the bus and the
    /// board, shared limits, the upstream client. `connections` is the
    /// listener's gauge, when serving through the capped listener.
    pub(crate) fn start(
        cfg: Config,
        config_path: Option<PathBuf>,
        connections: Option<listener::OpenConnections>,
    ) -> Result<Arc<Gateway>, ServeError> {
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
                let mut known = detector::Known::load(
                    cfg.detect.accounts.as_deref(),
                    cfg.detect.models.as_deref(),
                )
                .map_err(|e| ServeError::Config(format!("detect.{e}")))?;
                known.timelines = cfg.console_on() && cfg.console.timelines;
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
                    None,
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
        let body_budget = BodyBudget::new(cfg.max_inflight_body_bytes.get());
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
        Ok(gw)
    }

    /// What `/metrics` reports of the gateway's parts, read once.
    pub(crate) fn snapshot(&self) -> metrics::Snapshot<'_> {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        metrics::Snapshot {
            detector: self.detector.as_ref().map(|d| {
                let (accounts, campaign_accounts) = d.counts();
                metrics::DetectorSnapshot {
                    enqueued: get(&d.enqueued),
                    dropped: get(&d.dropped),
                    processed: get(&d.processed),
                    faults: get(&d.faults),
                    up: d.is_alive(),
                    changes: std::array::from_fn(|i| get(&d.changes[i])),
                    accounts,
                    campaign_accounts,
                    tracked: get(&d.tracked),
                    forgotten: get(&d.forgotten),
                }
            }),
            shared_errors: self.shared.as_ref().map_or(0, |s| get(&s.errors)),
            rejections_untracked: get(&self.rejections.untracked),
            bus: self.bus.as_ref().map(|b| &**b.stats()),
            log_dropped: self.log.as_ref().map_or(0, |l| get(&l.dropped)),
            overrides: self.overrides.read().map_or(0, |m| m.len()),
            board: self.board.as_ref().map(|b| metrics::BoardSnapshot {
                applied: get(&b.applied),
                entries: b.len(),
                last_delay_ms: b.last_delay_ms.load(Ordering::Relaxed),
            }),
            connections: self.connections.as_ref().map(|c| (c.open(), c.max())),
        }
    }

    /// The config in force (a reload swaps it; requests keep the one they
    /// started with).
    pub(crate) fn config(&self) -> Arc<Config> {
        self.cfg
            .read()
            .map_or_else(|p| Arc::clone(&p.into_inner()), |c| Arc::clone(&c))
    }

    pub(crate) fn limiter(&self) -> Result<MutexGuard<'_, limits::Limiter>, GatewayError> {
        self.limits
            .lock()
            .map_err(|_| GatewayError::Internal("limiter lock poisoned".into()))
    }

    pub(crate) fn verify_key(&self, presented: &str) -> Result<Option<KeyRecord>, GatewayError> {
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
    pub(crate) fn override_of(&self, account: &str) -> Option<Verdict> {
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
    pub(crate) fn detected(&self, account: &str, key: Option<&str>) -> Verdict {
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
        // A member of a campaign the cluster's linker confirmed.
        let member = b
            .lookup(On::Member, account, |p| parse(Some(&p.verdict)))
            .unwrap_or_default();
        local.max(scope.combine(own.max(member), keys, of_key))
    }

    /// The verdict in force: an operator's override, else the detector's.
    /// A decision on the key (`key:ID`) comes before one on its account:
    /// the more specific wins.
    pub(crate) fn verdict(&self, account: &str, key: Option<&str>) -> Verdict {
        key.and_then(|k| self.override_of(&format!("{KEY_PREFIX}{k}")))
            .or_else(|| self.override_of(account))
            .unwrap_or_else(|| self.detected(account, key))
    }
}

/// How an operator's decision on a key is named among account decisions.
pub(crate) const KEY_PREFIX: &str = "key:";
