/*!
Storage: API keys and operators' verdict overrides in an embedded SQLite
database.

A key looks like `dg_<id>_<secret>`. The id is 12 hex digits and public,
so that an operator can list and revoke keys. The secret is 32 hex digits
from the system's randomness. Only the SHA-256 of the secret is stored.
A presented key is checked by looking its id up and comparing hashes in
constant time, so the time taken says nothing about how much of a guess
was right. The key itself is returned once, at creation, and is never
stored or logged.

Overrides are an operator's decisions about an account (`block`,
`allow` for an allowlisted account, …), kept with who-knows-why text and
a time, so that they outlive a gateway restart.
*/

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key store {path}: {source}")]
    Db {
        path: String,
        source: rusqlite::Error,
    },
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

pub struct KeyStore {
    conn: Connection,
    path: String,
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

/// A new random token (32 hex digits) from the system's randomness.
pub fn random_token() -> Result<String, StoreError> {
    let mut b = [0u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(StoreError::Random)?,
        &mut b,
    )
    .map_err(StoreError::Random)?;
    Ok(hex(&b))
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

/// Creates `path` owner-only if it does not exist (SQLite would create it
/// with the process's umask, often world-readable).
fn create_private(path: &str) -> std::io::Result<()> {
    match owner_only().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl KeyStore {
    /// Opens the store at `path`, which must exist: a typo in a path must
    /// not serve with an empty store, or list one.
    pub fn open_existing(path: &str) -> Result<KeyStore, StoreError> {
        if path != ":memory:" && !std::path::Path::new(path).exists() {
            return Err(StoreError::Missing(path.to_string()));
        }
        KeyStore::open(path)
    }

    /// Opens (creating if needed, readable by its owner only) the store at
    /// `path` (`:memory:` for tests). The database runs in WAL mode.
    pub fn open(path: &str) -> Result<KeyStore, StoreError> {
        let db = |source| StoreError::Db {
            path: path.to_string(),
            source,
        };
        if path != ":memory:" {
            create_private(path).map_err(|source| StoreError::Io {
                path: path.to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        // The gateway's detector saves verdicts on its own connection.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS api_keys (
                id TEXT PRIMARY KEY,
                secret_sha256 BLOB NOT NULL,
                account TEXT NOT NULL,
                tier TEXT NOT NULL,
                created INTEGER NOT NULL,
                revoked INTEGER NOT NULL DEFAULT 0
            );
            CREATE TABLE IF NOT EXISTS verdicts (
                account TEXT PRIMARY KEY,
                verdict TEXT NOT NULL,
                risk REAL NOT NULL,
                campaign INTEGER NOT NULL,
                updated INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS overrides (
                account TEXT PRIMARY KEY,
                verdict TEXT NOT NULL,
                reason TEXT NOT NULL,
                created INTEGER NOT NULL
            );",
        )
        .map_err(db)?;
        Ok(KeyStore {
            conn,
            path: path.to_string(),
        })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Creates a key; returns its record and the key (shown once).
    pub fn create(&self, account: &str, tier: &str) -> Result<(KeyRecord, String), StoreError> {
        let mut b = [0u8; 22];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").map_err(StoreError::Random)?,
            &mut b,
        )
        .map_err(StoreError::Random)?;
        let id = hex(&b[..6]);
        let secret = hex(&b[6..]);
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.conn
            .execute(
                "INSERT INTO api_keys (id, secret_sha256, account, tier, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, digest(&secret), account, tier, created],
            )
            .map_err(self.db())?;
        Ok((
            KeyRecord {
                id: id.clone(),
                account: account.into(),
                tier: tier.into(),
                created,
                revoked: false,
            },
            format!("dg_{id}_{secret}"),
        ))
    }

    pub fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, account, tier, created, revoked FROM api_keys ORDER BY created, id",
            )
            .map_err(self.db())?;
        let rows = st
            .query_map([], |r| {
                Ok(KeyRecord {
                    id: r.get(0)?,
                    account: r.get(1)?,
                    tier: r.get(2)?,
                    created: r.get(3)?,
                    revoked: r.get::<_, i64>(4)? != 0,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }

    pub fn revoke(&self, id: &str) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1", params![id])
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchKey(id.into()));
        }
        Ok(())
    }

    /// Sets (replaces) an account's override.
    pub fn set_override(&self, o: &Override) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO overrides (account, verdict, reason, created) VALUES (?1, ?2, ?3, ?4)",
                params![o.account, o.verdict, o.reason, o.created],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Removes an account's override; whether there was one.
    pub fn clear_override(&self, account: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM overrides WHERE account = ?1", params![account])
            .map_err(self.db())?;
        Ok(n > 0)
    }

    /// Every override, by account.
    pub fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT account, verdict, reason, created FROM overrides ORDER BY account")
            .map_err(self.db())?;
        let rows = st
            .query_map([], |r| {
                Ok(Override {
                    account: r.get(0)?,
                    verdict: r.get(1)?,
                    reason: r.get(2)?,
                    created: r.get(3)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }

    /// Replaces the saved verdicts with `all`, in one transaction.
    pub fn save_verdicts(&mut self, all: &[SavedVerdict]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = |source| StoreError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(db)?;
        tx.execute("DELETE FROM verdicts", []).map_err(db)?;
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO verdicts (account, verdict, risk, campaign, updated) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db)?;
            for v in all {
                st.execute(params![v.account, v.verdict, v.risk, v.campaign, v.updated])
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    pub fn verdicts(&self) -> Result<Vec<SavedVerdict>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT account, verdict, risk, campaign, updated FROM verdicts ORDER BY account",
            )
            .map_err(self.db())?;
        let rows = st
            .query_map([], |r| {
                Ok(SavedVerdict {
                    account: r.get(0)?,
                    verdict: r.get(1)?,
                    risk: r.get(2)?,
                    campaign: r.get(3)?,
                    updated: r.get(4)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }

    /// The record of a presented key, if it is valid and not revoked.
    pub fn verify(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        let Some((id, secret)) = presented
            .strip_prefix("dg_")
            .and_then(|r| r.split_once('_'))
        else {
            return Ok(None);
        };
        let row: Option<(Vec<u8>, KeyRecord)> = self
            .conn
            .query_row(
                "SELECT secret_sha256, id, account, tier, created, revoked FROM api_keys WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get(0)?,
                        KeyRecord {
                            id: r.get(1)?,
                            account: r.get(2)?,
                            tier: r.get(3)?,
                            created: r.get(4)?,
                            revoked: r.get::<_, i64>(5)? != 0,
                        },
                    ))
                },
            )
            .optional()
            .map_err(self.db())?;
        Ok(row.and_then(|(h, rec)| {
            (constant_time_eq(&h, &digest(secret)) && !rec.revoked).then_some(rec)
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_created_verified_listed_and_revoked() {
        let s = KeyStore::open(":memory:").unwrap();
        let (rec, key) = s.create("acct_1", "tier2").unwrap();
        assert!(key.starts_with(&format!("dg_{}_", rec.id)));
        assert_eq!(s.verify(&key).unwrap().unwrap().account, "acct_1");
        // A wrong secret, a malformed key, an unknown id: no.
        let wrong = format!("{}0", &key[..key.len() - 1]);
        let wrong = if wrong == key {
            format!("{}1", &key[..key.len() - 1])
        } else {
            wrong
        };
        assert!(s.verify(&wrong).unwrap().is_none());
        assert!(s.verify("sk-nothing").unwrap().is_none());
        assert!(s.verify("dg_000000000000_00").unwrap().is_none());
        // The secret is not stored: only its hash.
        let secret = key.rsplit('_').next().unwrap();
        let stored: Vec<u8> = s
            .conn
            .query_row("SELECT secret_sha256 FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, secret.as_bytes());
        assert_eq!(stored.len(), 32);
        assert_eq!(s.list().unwrap().len(), 1);
        s.revoke(&rec.id).unwrap();
        assert!(s.verify(&key).unwrap().is_none());
        assert!(s.list().unwrap()[0].revoked);
        assert!(matches!(s.revoke("nope"), Err(StoreError::NoSuchKey(_))));
    }

    #[test]
    fn overrides_are_set_replaced_listed_and_cleared() {
        let s = KeyStore::open(":memory:").unwrap();
        let o = |v: &str| Override {
            account: "acct_9".into(),
            verdict: v.into(),
            reason: "ticket 12".into(),
            created: 5,
        };
        s.set_override(&o("block")).unwrap();
        s.set_override(&o("allow")).unwrap();
        assert_eq!(s.overrides().unwrap(), vec![o("allow")]);
        assert!(s.clear_override("acct_9").unwrap());
        assert!(!s.clear_override("acct_9").unwrap());
        assert!(s.overrides().unwrap().is_empty());
    }

    #[test]
    fn verdicts_are_replaced_as_a_whole() {
        let mut s = KeyStore::open(":memory:").unwrap();
        let v = |a: &str, verdict: &str| SavedVerdict {
            account: a.into(),
            verdict: verdict.into(),
            risk: 0.9,
            campaign: a == "b",
            updated: 7,
        };
        s.save_verdicts(&[v("a", "block"), v("b", "throttle")])
            .unwrap();
        s.save_verdicts(&[v("b", "block")]).unwrap();
        assert_eq!(s.verdicts().unwrap(), vec![v("b", "block")]);
    }

    #[test]
    fn a_store_file_is_private_in_wal_mode_and_never_made_by_a_typo() {
        let dir = std::env::temp_dir().join(format!("dg-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.db");
        let p = path.to_str().unwrap();
        assert!(matches!(
            KeyStore::open_existing(p),
            Err(StoreError::Missing(_))
        ));
        assert!(!path.exists(), "opening a missing store must not create it");
        let s = KeyStore::open(p).unwrap();
        s.create("acct_1", "tier1").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(s);
        assert_eq!(KeyStore::open_existing(p).unwrap().list().unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn constant_time_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
