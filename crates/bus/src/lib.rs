/*!
The event bus: the gateway's events on NATS JetStream, for detector
workers on other machines.

- **Subjects** are partitioned by account: `distillguard.events.<p>`, where
  `p` is a stable hash of the account id modulo the partition count
  ([`partition_of`]). Every event of one account lands in one partition,
  so a worker that owns a partition owns its accounts' whole state.
- **Payloads** are event-log lines (`docs/event-log.md`), the format
  `analyze` reads, each with its `id`. The id is also the message's
  `Nats-Msg-Id`, so a publish repeated within the stream's duplicate
  window is stored once, and workers fold each id once.
- **Publishing** ([`Publisher`]) never makes a request wait: events go
  through a bounded queue to a thread of their own, which publishes with
  acknowledgements (many in flight). An event the bus cannot take (the
  queue is full, NATS is down, an acknowledgement fails or times out) is
  appended to the local **spill file**, in the same line format, and
  counted. [`replay`] later publishes a spill file into the bus.
*/

pub mod board;
pub mod publish;
mod replay;

pub use publish::{Item, Publisher, Stats};
pub use replay::{ReplayStats, replay};

use std::num::{NonZeroU8, NonZeroU16, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("JetStream stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("publishing to {subject}: {reason}")]
    Publish { subject: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("starting the bus thread: {0}")]
    Thread(std::io::Error),
    /// A setting the types allow but NATS does not.
    #[error("{field}: {reason}")]
    Config { field: &'static str, reason: String },
}

/// Where events go: the `[cluster]` settings of the bus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// `nats://host:port`.
    pub url: String,
    /// Partitions of the event subjects (every gateway and worker of a
    /// cluster must agree on it).
    #[serde(default = "default_partitions")]
    pub partitions: NonZeroU16,
    /// The JetStream stream holding the events.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// The subjects' prefix: events go to `<prefix>.<partition>` (one
    /// cluster per prefix; streams' subjects must not overlap).
    #[serde(default = "default_prefix")]
    pub subject_prefix: String,
    /// How long the stream keeps events (what a restarted worker can
    /// re-read).
    #[serde(default = "default_max_age")]
    pub max_age_secs: NonZeroU64,
    /// Events queued for the bus thread; more spill.
    #[serde(default = "default_buffer")]
    pub buffer: NonZeroUsize,
    /// Where events the bus cannot take are appended (event-log lines,
    /// owner-only).
    #[serde(default = "default_spill")]
    pub spill: PathBuf,
    /// The verdict board's key-value bucket, which gateways watch.
    #[serde(default = "default_bucket")]
    pub bucket: String,
    /// The wait for a publish's acknowledgement, after which it spills.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_ms: NonZeroU64,
    /// Copies JetStream keeps of the events and the board (1 to 5; needs a
    /// JetStream cluster of as many nodes). One node acknowledges a
    /// message up to 8 ms before writing it, so a hard kill of a lone
    /// node can lose the last acknowledged events; 3 replicas do not.
    #[serde(default = "default_replicas")]
    pub replicas: NonZeroU8,
    /// The cluster runs a linker (`distillguard link`): workers send every
    /// request's link record to `<subject_prefix>.links.<worker>` (stream
    /// `<stream>_LINKS`) and leave campaigns to it, so that a campaign
    /// whose accounts fall in several workers' partitions is found.
    #[serde(default)]
    pub linker: bool,
}

fn default_replicas() -> NonZeroU8 {
    NonZeroU8::MIN
}

fn default_partitions() -> NonZeroU16 {
    NonZeroU16::new(8).unwrap_or(NonZeroU16::MIN)
}
fn default_stream() -> String {
    "DISTILLGUARD_EVENTS".into()
}
fn default_bucket() -> String {
    board::BUCKET.into()
}
fn default_prefix() -> String {
    SUBJECT_PREFIX.into()
}
fn default_max_age() -> NonZeroU64 {
    NonZeroU64::new(7 * 86_400).unwrap_or(NonZeroU64::MIN)
}
fn default_buffer() -> NonZeroUsize {
    NonZeroUsize::new(65_536).unwrap_or(NonZeroUsize::MIN)
}
fn default_spill() -> PathBuf {
    PathBuf::from("distillguard-spill.jsonl")
}
fn default_ack_timeout() -> NonZeroU64 {
    NonZeroU64::new(2_000).unwrap_or(NonZeroU64::MIN)
}

impl BusConfig {
    /// The defaults for a server at `url`.
    pub fn new(url: &str) -> BusConfig {
        BusConfig {
            url: url.into(),
            partitions: default_partitions(),
            stream: default_stream(),
            subject_prefix: default_prefix(),
            bucket: default_bucket(),
            max_age_secs: default_max_age(),
            buffer: default_buffer(),
            spill: default_spill(),
            ack_timeout_ms: default_ack_timeout(),
            replicas: default_replicas(),
            linker: false,
        }
    }
}

/// The subjects' default prefix.
pub const SUBJECT_PREFIX: &str = "distillguard.events";

/// The partition of an account: a stable hash of its id (FNV-1a, mixed),
/// the same in every process and release.
pub fn partition_of(account: &str, partitions: NonZeroU16) -> u16 {
    (distillguard_sketches::hash_bytes(account.as_bytes()) % u64::from(partitions.get())) as u16
}

impl BusConfig {
    /// The subject of a partition.
    pub fn subject(&self, partition: u16) -> String {
        format!("{}.{partition}", self.subject_prefix)
    }

    /// The stream of the workers' link records.
    pub fn links_stream(&self) -> String {
        format!("{}_LINKS", self.stream)
    }

    /// The subject of one worker's link records (its name made a subject
    /// token).
    pub fn links_subject(&self, worker: &str) -> String {
        let token: String = worker
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}.links.{token}", self.subject_prefix)
    }

    /// The subject of an account's events.
    pub fn subject_of(&self, account: &str) -> String {
        self.subject(partition_of(account, self.partitions))
    }

    /// Checks what the types do not: a prefix NATS accepts as a subject.
    pub fn validate(&self) -> Result<(), BusError> {
        let ok = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        let bad = |field, reason| Err(BusError::Config { field, reason });
        if !self.subject_prefix.split('.').all(ok) {
            return bad(
                "subject_prefix",
                format!(
                    "{:?}: dot-separated tokens of letters, digits, '_' and '-'",
                    self.subject_prefix
                ),
            );
        }
        if self.replicas.get() > 5 {
            return bad(
                "replicas",
                format!("{}: JetStream keeps 1 to 5 copies", self.replicas),
            );
        }
        if !ok(&self.stream) {
            return bad(
                "stream",
                format!("{:?}: letters, digits, '_' and '-'", self.stream),
            );
        }
        Ok(())
    }
}

/// The fields of an event line the bus needs.
#[derive(Deserialize)]
pub struct Head {
    pub id: Option<String>,
    pub account_id: String,
}

/// Connects to `url`, failing at once when it does not answer.
pub async fn connect(url: &str) -> Result<async_nats::Client, BusError> {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| BusError::Connect {
            url: url.into(),
            reason: e.to_string(),
        })
}

/// Creates the events stream, or checks the one there: file storage,
/// subjects `distillguard.events.*`, kept `max_age_secs`, duplicates of an
/// id dropped within two minutes.
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &BusConfig,
) -> Result<jetstream::stream::Stream, BusError> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.*", cfg.subject_prefix)],
        max_age: Duration::from_secs(cfg.max_age_secs.get()),
        duplicate_window: Duration::from_secs(120),
        storage: jetstream::stream::StorageType::File,
        num_replicas: usize::from(cfg.replicas.get()),
        ..Default::default()
    })
    .await
    .map_err(|e| BusError::Stream {
        stream: cfg.stream.clone(),
        reason: e.to_string(),
    })
}

/// Creates the stream of the workers' link records, or checks the one
/// there: subjects `<prefix>.links.*` (apart from the events'
/// `<prefix>.*`), kept as long as the events, which is what a restarted
/// linker rebuilds from.
pub async fn ensure_links_stream(
    js: &jetstream::Context,
    cfg: &BusConfig,
) -> Result<jetstream::stream::Stream, BusError> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: cfg.links_stream(),
        subjects: vec![format!("{}.links.*", cfg.subject_prefix)],
        max_age: Duration::from_secs(cfg.max_age_secs.get()),
        storage: jetstream::stream::StorageType::File,
        num_replicas: usize::from(cfg.replicas.get()),
        ..Default::default()
    })
    .await
    .map_err(|e| BusError::Stream {
        stream: cfg.links_stream(),
        reason: e.to_string(),
    })
}

/// The headers of an event's message: its id, for deduplication.
fn headers(id: &str) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(async_nats::header::NATS_MESSAGE_ID, id);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        let n = NonZeroU16::new(8).unwrap_or(NonZeroU16::MIN);
        // Fixed: a cluster's processes and releases must agree.
        assert_eq!(partition_of("acct_1", n), partition_of("acct_1", n));
        let mut per = [0u32; 8];
        for i in 0..8000 {
            per[usize::from(partition_of(&format!("acct_{i}"), n))] += 1;
        }
        assert!(per.iter().all(|&c| (800..1200).contains(&c)), "{per:?}");
        let cfg = BusConfig::new("nats://127.0.0.1:4222");
        assert_eq!(cfg.subject(3), "distillguard.events.3");
        assert!(cfg.validate().is_ok());
        let mut bad = cfg.clone();
        bad.subject_prefix = "a..b".into();
        assert!(bad.validate().is_err());
        bad.subject_prefix = "a.*".into();
        assert!(bad.validate().is_err());
        assert_eq!(
            cfg.links_subject("host/p0-3"),
            "distillguard.events.links.host_p0-3"
        );
        assert_eq!(cfg.links_stream(), "DISTILLGUARD_EVENTS_LINKS");
        let one = NonZeroU16::MIN;
        assert_eq!(partition_of("anything", one), 0);
    }
}
