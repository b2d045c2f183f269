//! The verdict board: verdicts shared through a JetStream key-value
//! bucket. Detector workers post accounts' and keys' verdicts, operators'
//! overrides are posted by the gateway that took them, and every gateway
//! watches the bucket and enforces what is on it.
//!
//! Keys are `account.<id>`, `key.<id>`, `override.<id>`,
//! `campaign.<id>` (a confirmed campaign: its size in `reason`) and
//! `member.<id>` (an account blocked with a campaign the cluster's linker
//! confirmed: the campaign's id in `reason`). An id made of
//! letters, digits, `_` and `-` is written as is; any other (an IP
//! address, an IPv6 prefix) as `=` and its bytes in hex, which no plain id
//! starts with.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::BusError;

/// The bucket's default name.
pub const BUCKET: &str = "distillguard_verdicts";

/// What a board entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Account,
    Key,
    Override,
    /// A confirmed campaign (workers post it as it forms and grows).
    Campaign,
    /// An account blocked with a campaign the cluster's linker confirmed
    /// (its campaign's id in `reason`). Apart from `account.<id>`, which
    /// the account's worker posts, so that neither overwrites the other.
    Member,
}

impl Scope {
    /// Its slot in a [`View`].
    fn index(self) -> usize {
        match self {
            Scope::Account => 0,
            Scope::Key => 1,
            Scope::Override => 2,
            Scope::Campaign => 3,
            Scope::Member => 4,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Key => "key",
            Scope::Override => "override",
            Scope::Campaign => "campaign",
            Scope::Member => "member",
        }
    }
}

/// One verdict on the board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Posted {
    /// `allow`, `monitor`, `throttle` or `block`.
    pub verdict: String,
    #[serde(default)]
    pub risk: f64,
    /// In a confirmed campaign.
    #[serde(default)]
    pub campaign: bool,
    /// An account's: the highest verdict any of its keys reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<String>,
    /// When it was posted (ms since the epoch).
    pub at_ms: i64,
    /// Who posted it: a worker's name, or an operator.
    pub by: String,
    #[serde(default)]
    pub reason: String,
}

fn plain(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The bucket key of an id.
pub fn key_of(scope: Scope, id: &str) -> String {
    if plain(id) {
        return format!("{}.{id}", scope.prefix());
    }
    let mut s = format!("{}.=", scope.prefix());
    for b in id.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The scope and id of a bucket key (`None`: not a board key).
pub fn parse_key(key: &str) -> Option<(Scope, String)> {
    let (p, id) = key.split_once('.')?;
    let scope = match p {
        "account" => Scope::Account,
        "key" => Scope::Key,
        "override" => Scope::Override,
        "campaign" => Scope::Campaign,
        "member" => Scope::Member,
        _ => return None,
    };
    match id.strip_prefix('=') {
        None => plain(id).then(|| (scope, id.to_string())),
        Some(hex) => {
            if hex.len() % 2 != 0 {
                return None;
            }
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            String::from_utf8(bytes?).ok().map(|s| (scope, s))
        }
    }
}

/// The bucket, opened (or created: one value per key, file storage).
#[derive(Clone)]
pub struct Board {
    kv: kv::Store,
}

impl Board {
    /// `replicas`: the copies JetStream keeps, when it makes the bucket.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: u8,
    ) -> Result<Board, BusError> {
        let err = |e: &dyn std::fmt::Display| BusError::Stream {
            stream: format!("KV_{bucket}"),
            reason: e.to_string(),
        };
        // The bucket's stream is made here, as a key-value bucket's would
        // be: the client's own creation first asks for account details
        // that JetStream servers before 2.10 do not give in the form it
        // expects.
        if js.get_key_value(bucket).await.is_err() {
            js.get_or_create_stream(jetstream::stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                storage: jetstream::stream::StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                num_replicas: usize::from(replicas.max(1)),
                ..Default::default()
            })
            .await
            .map_err(|e| err(&e))?;
        }
        let kv = js.get_key_value(bucket).await.map_err(|e| err(&e))?;
        Ok(Board { kv })
    }

    /// Posts (replaces) a verdict.
    pub async fn post(&self, scope: Scope, id: &str, p: &Posted) -> Result<(), BusError> {
        let key = key_of(scope, id);
        let body = serde_json::to_vec(p).map_err(|e| BusError::Publish {
            subject: key.clone(),
            reason: e.to_string(),
        })?;
        self.kv
            .put(key.as_str(), body.into())
            .await
            .map(drop)
            .map_err(|e| BusError::Publish {
                subject: key,
                reason: e.to_string(),
            })
    }

    /// Removes a verdict (an override lifted).
    pub async fn clear(&self, scope: Scope, id: &str) -> Result<(), BusError> {
        let key = key_of(scope, id);
        self.kv
            .delete(key.as_str())
            .await
            .map_err(|e| BusError::Publish {
                subject: key,
                reason: e.to_string(),
            })
    }

    /// Every entry now on the board, then every change, to `apply`
    /// (`None`: removed). Returns when the watch ends (the connection was
    /// lost for good).
    pub async fn follow(
        &self,
        mut apply: impl FnMut(Scope, String, Option<Posted>),
    ) -> Result<(), BusError> {
        let mut w = self
            .kv
            .watch_with_history(">")
            .await
            .map_err(|e| BusError::Stream {
                stream: "verdict board".into(),
                reason: e.to_string(),
            })?;
        while let Some(entry) = w.next().await {
            let Ok(entry) = entry else { continue };
            let Some((scope, id)) = parse_key(&entry.key) else {
                continue;
            };
            let value = match entry.operation {
                kv::Operation::Put => serde_json::from_slice::<Posted>(&entry.value).ok(),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            apply(scope, id, value);
        }
        Ok(())
    }
}

/// The board's entries, one map per scope (looked up by `&str`, without
/// allocating: a gateway reads it on every request).
pub type View = [std::collections::HashMap<String, Posted>; 5];

/// A gateway's view of the board: kept up to date by a thread of its own
/// (reconnecting when NATS is away), and read on every request.
pub struct Watcher {
    pub view: Arc<std::sync::RwLock<View>>,
    /// Changes applied (for `/metrics`).
    pub applied: Arc<std::sync::atomic::AtomicU64>,
    /// Milliseconds from posting to arrival of the latest change.
    pub last_delay_ms: Arc<std::sync::atomic::AtomicI64>,
    posts: tokio::sync::mpsc::UnboundedSender<(Scope, String, Option<Posted>)>,
}

impl Watcher {
    /// Starts following the board `bucket` at `url` (made with `replicas`
    /// copies if missing).
    pub fn start(url: &str, bucket: &str, replicas: u8) -> Result<Watcher, BusError> {
        let view: Arc<std::sync::RwLock<_>> = Arc::default();
        let applied: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let last_delay_ms: Arc<std::sync::atomic::AtomicI64> = Arc::default();
        let (posts, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (url, bucket) = (url.to_string(), bucket.to_string());
        let (v, a, d) = (
            Arc::clone(&view),
            Arc::clone(&applied),
            Arc::clone(&last_delay_ms),
        );
        std::thread::Builder::new()
            .name("distillguard-board".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    tracing::error!("the verdict board thread has no runtime");
                    return;
                };
                rt.block_on(async move {
                    loop {
                        match follow_once(&url, &bucket, replicas, &v, &a, &d, &mut rx).await {
                            Ok(true) => return,
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the verdict board is unreachable; retrying")
                            }
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                });
            })
            .map_err(BusError::Thread)?;
        Ok(Watcher {
            view,
            applied,
            last_delay_ms,
            posts,
        })
    }

    /// `f` of the entry of an id, if there is one (read in place).
    pub fn lookup<R>(&self, scope: Scope, id: &str, f: impl FnOnce(&Posted) -> R) -> Option<R> {
        self.view
            .read()
            .ok()
            .and_then(|m| m[scope.index()].get(id).map(f))
    }

    /// Entries on the board.
    pub fn len(&self) -> usize {
        self.view
            .read()
            .map_or(0, |m| m.iter().map(|s| s.len()).sum())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Posts (or with `None` removes) an entry, in the background.
    pub fn post(&self, scope: Scope, id: &str, p: Option<Posted>) {
        let _ = self.posts.send((scope, id.to_string(), p));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One connection's life: follows the board and sends posts. `Ok(true)`:
/// the watcher was dropped (stop); `Ok(false)`: the watch ended (retry).
async fn follow_once(
    url: &str,
    bucket: &str,
    replicas: u8,
    view: &Arc<std::sync::RwLock<View>>,
    applied: &Arc<std::sync::atomic::AtomicU64>,
    delay: &Arc<std::sync::atomic::AtomicI64>,
    posts: &mut tokio::sync::mpsc::UnboundedReceiver<(Scope, String, Option<Posted>)>,
) -> Result<bool, BusError> {
    let client = crate::connect(url).await?;
    let board = Board::open(&jetstream::new(client), bucket, replicas).await?;
    let b2 = board.clone();
    let follow = board.follow(|scope, id, value| {
        if let Ok(mut m) = view.write() {
            match value {
                Some(p) => {
                    delay.store(now_ms() - p.at_ms, std::sync::atomic::Ordering::Relaxed);
                    m[scope.index()].insert(id, p);
                }
                None => {
                    m[scope.index()].remove(&id);
                }
            }
        }
        applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    tokio::pin!(follow);
    loop {
        tokio::select! {
            r = &mut follow => return r.map(|()| false),
            p = posts.recv() => match p {
                None => return Ok(true),
                Some((scope, id, Some(p))) => {
                    if let Err(e) = b2.post(scope, &id, &p).await {
                        tracing::warn!(error = %e, "posting to the verdict board failed");
                    }
                }
                Some((scope, id, None)) => {
                    if let Err(e) = b2.clear(scope, &id).await {
                        tracing::warn!(error = %e, "clearing on the verdict board failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_bucket_keys() {
        for id in [
            "acct_1",
            "203.0.113.7",
            "2001:db8::/64",
            "a.b",
            "=x",
            "ключ",
        ] {
            for s in [
                Scope::Account,
                Scope::Key,
                Scope::Override,
                Scope::Campaign,
                Scope::Member,
            ] {
                let k = key_of(s, id);
                assert!(
                    k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-=".contains(&b)),
                    "{k}"
                );
                assert_eq!(parse_key(&k), Some((s, id.to_string())), "{k}");
            }
        }
        assert_eq!(key_of(Scope::Account, "acct_1"), "account.acct_1");
        assert_eq!(parse_key("other.x"), None);
        assert_eq!(parse_key("account.=zz"), None);
        assert_eq!(parse_key("account.a.b"), None);
    }
}
