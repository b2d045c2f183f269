/*!
Storage: API keys, operators' verdict overrides, the detector's saved
verdicts and the audit log of operator actions, behind one [`Store`] trait
with two backends:

- [`Sqlite`], an embedded file (the default: one process, nothing to run);
- [`Postgres`], shared by every gateway replica (`postgres://…`).

[`open`] picks the backend from the locator: a `postgres://` or
`postgresql://` URL, else a file path. Both run the same versioned
migrations (`schema_migrations`), and one test suite
(`tests/backends.rs`) runs against both.

A key looks like `dg_<id>_<secret>`. The id is 12 hex digits and public,
so that an operator can list and revoke keys. The secret is 32 hex digits
from the system's randomness. Only the SHA-256 of the secret is stored.
A presented key is checked by looking its id up and comparing hashes in
constant time, so the time taken says nothing about how much of a guess
was right. The key itself is returned once, at creation, and is never
stored or logged.

Overrides are an operator's decisions about an account (`block`,
`allow` for an allowlisted account, …), kept with who-knows-why text and
a time, so that they outlive a gateway restart. Every operator action
(a key created or revoked, an override set or removed) writes an audit
row (who, when, what, why) in the same transaction as the change, so the
log cannot miss a change that happened.
*/

mod postgres;
mod sqlite;

pub use postgres::Postgres;
pub use sqlite::Sqlite;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key store {path}: {source}")]
    Db {
        path: String,
        source: rusqlite::Error,
    },
    #[error("key store {at}: {source}")]
    Postgres {
        /// The server and database, without credentials.
        at: String,
        source: ::postgres::Error,
    },
    #[error("key store {at}: its connection thread is gone")]
    Gone { at: String },
    #[error("key store {at}: {url}: {reason}")]
    Locator {
        at: String,
        url: String,
        reason: String,
    },
    #[error(
        "key store {at}: schema version {found} is newer than this build knows ({known}); upgrade distillguard"
    )]
    Schema { at: String, found: i64, known: i64 },
    #[error("reading system randomness: {0}")]
    Random(std::io::Error),
    #[error("no key with id {0}")]
    NoSuchKey(String),
    #[error("key store {0}: no such file (distillguard keys create makes one)")]
    Missing(String),
    #[error("key store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// An operator's verdict for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub account: String,
    /// `allow`, `monitor`, `throttle` or `block` (checked by the caller).
    pub verdict: String,
    pub reason: String,
    /// Seconds since the epoch.
    pub created: i64,
}

/// The detector's verdict for an account, saved so that a restarted
/// gateway keeps enforcing it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedVerdict {
    /// The detector that saved it (a replica's name): replicas sharing a
    /// store each keep their own rows, and a reader takes the strictest.
    pub source: String,
    pub account: String,
    /// `monitor`, `throttle` or `block`.
    pub verdict: String,
    pub risk: f64,
    pub campaign: bool,
    /// Seconds since the epoch.
    pub updated: i64,
}

/// A key's public record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub account: String,
    pub tier: String,
    /// Seconds since the epoch.
    pub created: i64,
    pub revoked: bool,
}

/// One operator action, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Seconds since the epoch.
    pub at: i64,
    /// Who: `cli:<user>@<host>`, or `admin:<token id>` with the operator
    /// name the admin call gave.
    pub actor: String,
    /// What: `key.create`, `key.revoke`, `override.set`, `override.clear`.
    pub action: String,
    /// On what: a key id or an account.
    pub target: String,
    /// Why, and the detail of the change (a verdict, a tier).
    pub detail: String,
}

/// How far a detector worker has folded one partition of the event
/// stream: every event of the partition up to stream sequence `seq` is
/// folded (and then acknowledged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub partition: u16,
    pub seq: u64,
    /// Events of the partition folded, in all (distinct ids).
    pub events: u64,
}

/// A detector worker's state when it had folded everything it had received
/// from its partitions: the state (`data`, opaque here) and, per partition,
/// the stream sequence it covers. A worker restarted on the same
/// partitions loads it and reads on from there, instead of folding the
/// stream again from its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub stream: String,
    /// The partition range, as `FIRST-LAST`.
    pub partitions: String,
    pub checkpoints: Vec<Checkpoint>,
    pub data: Vec<u8>,
}

/// The checkpoints of a snapshot as stored: `partition:seq:events` joined
/// by commas.
pub(crate) fn checkpoints_text(all: &[Checkpoint]) -> String {
    all.iter()
        .map(|c| format!("{}:{}:{}", c.partition, c.seq, c.events))
        .collect::<Vec<_>>()
        .join(",")
}

/// The checkpoints of a stored snapshot (a part that does not read is
/// left out: the worker then finds its partition missing and folds anew).
pub(crate) fn checkpoints_of(text: &str) -> Vec<Checkpoint> {
    text.split(',')
        .filter_map(|p| {
            let mut it = p.split(':');
            Some(Checkpoint {
                partition: it.next()?.parse().ok()?,
                seq: it.next()?.parse().ok()?,
                events: it.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Where keys, overrides, saved verdicts and the audit log live.
///
/// Calls block (the PostgreSQL backend waits for its server); the gateway
/// makes them rarely (key checks are cached, overrides are held in memory)
/// and the detector from its own thread.
pub trait Store: Send {
    /// Creates a key for `account`; returns its record and the key (shown
    /// once). Audited as `key.create` by `actor`.
    fn create_key(
        &self,
        account: &str,
        tier: &str,
        actor: &str,
    ) -> Result<(KeyRecord, String), StoreError>;
    /// Every key, oldest first.
    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Revokes a key by id. Audited as `key.revoke`.
    fn revoke_key(&self, id: &str, actor: &str, why: &str) -> Result<(), StoreError>;
    /// The record of a presented key, if it is valid and not revoked.
    fn verify(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Sets (replaces) an account's override. Audited as `override.set`.
    fn set_override(&self, o: &Override, actor: &str) -> Result<(), StoreError>;
    /// Removes an account's override; whether there was one. Audited as
    /// `override.clear` when there was.
    fn clear_override(&self, account: &str, actor: &str, why: &str) -> Result<bool, StoreError>;
    /// Every override, by account.
    fn overrides(&self) -> Result<Vec<Override>, StoreError>;
    /// Replaces the verdicts saved by `source` with `all` (whose own
    /// `source` is ignored), in one transaction; other sources' rows stay.
    fn save_verdicts(&self, source: &str, all: &[SavedVerdict]) -> Result<(), StoreError>;
    /// Every saved verdict, of every source, by account then source.
    fn verdicts(&self) -> Result<Vec<SavedVerdict>, StoreError>;
    /// Writes an audit entry for an action outside the store (a config
    /// reload).
    fn record(&self, e: &AuditEntry) -> Result<(), StoreError>;
    /// The newest `limit` audit entries, newest first.
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Saves workers' checkpoints of `stream`, in one transaction.
    fn save_checkpoints(&self, stream: &str, all: &[Checkpoint]) -> Result<(), StoreError>;
    /// The checkpoints of `stream`, by partition.
    fn checkpoints(&self, stream: &str) -> Result<Vec<Checkpoint>, StoreError>;
    /// Records who created a batch or batch file (`id`, as the upstream
    /// named it) and the upstream holding it, so that any replica can
    /// answer its owner's reads and refuse everyone else's.
    fn set_batch_owner(&self, id: &str, account: &str, upstream: &str) -> Result<(), StoreError>;
    /// The (account, upstream) of a batch or batch file, if recorded.
    fn batch_owner(&self, id: &str) -> Result<Option<(String, String)>, StoreError>;
    /// Saves (replaces) a detector worker's snapshot of its partitions.
    fn save_snapshot(&self, s: &Snapshot) -> Result<(), StoreError>;
    /// The snapshot of `stream`'s `partitions` (as `0-3`), if one was saved.
    fn snapshot(&self, stream: &str, partitions: &str) -> Result<Option<Snapshot>, StoreError>;
    /// The schema version the store is at.
    fn schema_version(&self) -> Result<i64, StoreError>;
}

/// Whether `locator` names a PostgreSQL server rather than a file.
pub fn is_url(locator: &str) -> bool {
    locator.starts_with("postgres://") || locator.starts_with("postgresql://")
}

/// Opens the store at `locator`, creating a file if needed (a PostgreSQL
/// database must exist; its tables are created).
pub fn open(locator: &str) -> Result<Box<dyn Store>, StoreError> {
    match is_url(locator) {
        true => Ok(Box::new(Postgres::connect(locator)?)),
        false => Ok(Box::new(Sqlite::open(locator)?)),
    }
}

/// Opens the store at `locator`, which must exist: a typo in a path must
/// not serve with an empty store, or list one.
pub fn open_existing(locator: &str) -> Result<Box<dyn Store>, StoreError> {
    match is_url(locator) {
        true => Ok(Box::new(Postgres::connect(locator)?)),
        false => Ok(Box::new(Sqlite::open_existing(locator)?)),
    }
}

fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 15)]));
    }
    s
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// SHA-256 of a secret, as hex (how admin tokens are configured).
pub fn sha256_hex(secret: &str) -> String {
    hex(&digest(secret))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut b = [0u8; N];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(StoreError::Random)?,
        &mut b,
    )
    .map_err(StoreError::Random)?;
    Ok(b)
}

/// A new random token (32 hex digits) from the system's randomness.
pub fn random_token() -> Result<String, StoreError> {
    Ok(hex(&random_bytes::<16>()?))
}

/// A new key: its id, its secret, and the secret's hash.
struct NewKey {
    id: String,
    secret: String,
    hash: Vec<u8>,
}

fn new_key() -> Result<NewKey, StoreError> {
    let b = random_bytes::<22>()?;
    let secret = hex(&b[6..]);
    Ok(NewKey {
        id: hex(&b[..6]),
        hash: digest(&secret),
        secret,
    })
}

/// Splits a presented key into id and secret.
fn split_key(presented: &str) -> Option<(&str, &str)> {
    presented
        .strip_prefix("dg_")
        .and_then(|r| r.split_once('_'))
}

/// Whether a stored hash matches the presented secret (constant time).
fn secret_matches(stored: &[u8], secret: &str) -> bool {
    constant_time_eq(stored, &digest(secret))
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Options for files holding secrets or raw prompts (key stores, event
/// logs, watermark keys): a file they create is readable by its owner only
/// (mode 0600), whatever the process's umask.
pub fn owner_only() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The audit entry of an action, now.
fn entry(actor: &str, action: &str, target: &str, detail: String) -> AuditEntry {
    AuditEntry {
        at: now_secs(),
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        detail,
    }
}

/// The audit entries of the store's own actions: one wording for both
/// backends.
mod audited {
    use super::{AuditEntry, Override, entry};

    pub(crate) fn key_created(actor: &str, id: &str, account: &str, tier: &str) -> AuditEntry {
        entry(
            actor,
            "key.create",
            id,
            format!("account {account}, tier {tier}"),
        )
    }

    pub(crate) fn key_revoked(actor: &str, id: &str, why: &str) -> AuditEntry {
        entry(actor, "key.revoke", id, why.into())
    }

    pub(crate) fn override_set(actor: &str, o: &Override) -> AuditEntry {
        entry(
            actor,
            "override.set",
            &o.account,
            format!("{}: {}", o.verdict, o.reason),
        )
    }

    pub(crate) fn override_cleared(actor: &str, account: &str, why: &str) -> AuditEntry {
        entry(actor, "override.clear", account, why.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn locators_pick_the_backend() {
        assert!(is_url("postgres://u@h/db"));
        assert!(is_url("postgresql://h/db"));
        assert!(!is_url("keys.db"));
        assert!(!is_url("/var/lib/postgres/keys.db"));
    }

    #[test]
    fn keys_split_into_id_and_secret() {
        assert_eq!(split_key("dg_abc_def"), Some(("abc", "def")));
        assert_eq!(split_key("sk-abc"), None);
        assert_eq!(split_key("dg_abc"), None);
    }
}

/// A PostgreSQL schema of its own for one test (its tables are dropped
/// with it), so that tests share a server without seeing each other.
#[doc(hidden)]
pub mod testing {
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The test server: `DATABASE_URL`, else the local default.
    pub fn database_url() -> String {
        std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    pub struct Schema {
        pub name: String,
    }

    /// Runs `sql` on the test server, from a thread of its own (a test may
    /// be inside an async runtime, which the blocking client must not
    /// enter).
    fn run(sql: &str) -> Result<(), ::postgres::Error> {
        std::thread::scope(|s| {
            s.spawn(|| {
                ::postgres::Client::connect(&database_url(), ::postgres::NoTls)?.batch_execute(sql)
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    impl Schema {
        /// Creates `dg_test_<pid>_<n>` on the test server.
        pub fn new() -> Result<Schema, ::postgres::Error> {
            static N: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "dg_test_{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}");
            run(&sql)?;
            Ok(Schema { name })
        }

        /// The URL of a connection whose tables live in this schema.
        pub fn url(&self) -> String {
            let base = database_url();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-csearch_path%3D{}", self.name)
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            let _ = run(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}
