//! The embedded backend: one SQLite file in WAL mode, owner-only.

use crate::{
    AuditEntry, Checkpoint, KeyRecord, Override, SavedVerdict, Snapshot, Store, StoreError,
    audited, new_key, secret_matches, split_key,
};
use rusqlite::{Connection, OptionalExtension, params};

/// The schema, one step per version. Version 1 is the tables of the
/// releases before versioning (`IF NOT EXISTS`, so their files adopt it).
const MIGRATIONS: &[&str] = &[
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
    "CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_log_target ON audit_log (target);",
    "CREATE TABLE verdicts_by_source (
        source TEXT NOT NULL,
        account TEXT NOT NULL,
        verdict TEXT NOT NULL,
        risk REAL NOT NULL,
        campaign INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        PRIMARY KEY (source, account)
    );
    INSERT INTO verdicts_by_source SELECT '', account, verdict, risk, campaign, updated FROM verdicts;
    DROP TABLE verdicts;
    ALTER TABLE verdicts_by_source RENAME TO verdicts;",
    "CREATE TABLE checkpoints (
        stream TEXT NOT NULL,
        partition INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        events INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        PRIMARY KEY (stream, partition)
    );",
    "CREATE TABLE batch_owners (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        upstream TEXT NOT NULL,
        created INTEGER NOT NULL
    );",
    "CREATE TABLE worker_snapshots (
        stream TEXT NOT NULL,
        partitions TEXT NOT NULL,
        checkpoints TEXT NOT NULL,
        data BLOB NOT NULL,
        updated INTEGER NOT NULL,
        PRIMARY KEY (stream, partitions)
    );",
];

pub struct Sqlite {
    conn: Connection,
    path: String,
}

/// Creates `path` owner-only if it does not exist (SQLite would create it
/// with the process's umask, often world-readable).
fn create_private(path: &str) -> std::io::Result<()> {
    match crate::owner_only().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn audit(c: &Connection, e: &AuditEntry) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![e.at, e.actor, e.action, e.target, e.detail],
    )
    .map(drop)
}

impl Sqlite {
    /// Opens the store at `path`, which must exist.
    pub fn open_existing(path: &str) -> Result<Sqlite, StoreError> {
        if path != ":memory:" && !std::path::Path::new(path).exists() {
            return Err(StoreError::Missing(path.to_string()));
        }
        Sqlite::open(path)
    }

    /// Opens (creating if needed, readable by its owner only) the store at
    /// `path` (`:memory:` for tests), and brings its schema up to date.
    pub fn open(path: &str) -> Result<Sqlite, StoreError> {
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
        let mut conn = Connection::open(path).map_err(db)?;
        // Other connections (the gateway's detector, a second process
        // opening the file at the same moment) wait rather than fail; set
        // first, since switching to WAL takes a lock too.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        migrate(&mut conn, path)?;
        Ok(Sqlite {
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

    /// A write transaction that takes the write lock at its start
    /// (`IMMEDIATE`), waiting for another process's: a deferred one that
    /// read first (a statement's schema lookup) would fail at once when
    /// another process wrote meanwhile.
    fn write_tx(&self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)
            .map_err(self.db())
    }

    /// The connection, for this crate's tests of the file itself.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// Applies the migrations the file lacks, each in its own immediate
/// transaction (a second process opening at once waits, then sees them).
fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let db = |source| StoreError::Db {
        path: path.to_string(),
        source,
    };
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)",
    )
    .map_err(db)?;
    let known = MIGRATIONS.len() as i64;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let at: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(db)?;
        if at > known {
            return Err(StoreError::Schema {
                at: path.to_string(),
                found: at,
                known,
            });
        }
        if at >= version {
            continue;
        }
        tx.execute_batch(sql).map_err(db)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied) VALUES (?1, ?2)",
            params![version, crate::now_secs()],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
    }
    Ok(())
}

fn key_record(r: &rusqlite::Row<'_>, from: usize) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        id: r.get(from)?,
        account: r.get(from + 1)?,
        tier: r.get(from + 2)?,
        created: r.get(from + 3)?,
        revoked: r.get::<_, i64>(from + 4)? != 0,
    })
}

impl Store for Sqlite {
    fn create_key(
        &self,
        account: &str,
        tier: &str,
        actor: &str,
    ) -> Result<(KeyRecord, String), StoreError> {
        let k = new_key()?;
        let e = audited::key_created(actor, &k.id, account, tier);
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO api_keys (id, secret_sha256, account, tier, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![k.id, k.hash, account, tier, e.at],
        )
        .map_err(self.db())?;
        audit(&tx, &e).map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        let key = format!("dg_{}_{}", k.id, k.secret);
        Ok((
            KeyRecord {
                id: k.id,
                account: account.into(),
                tier: tier.into(),
                created: e.at,
                revoked: false,
            },
            key,
        ))
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, account, tier, created, revoked FROM api_keys ORDER BY created, id",
            )
            .map_err(self.db())?;
        let rows = st.query_map([], |r| key_record(r, 0)).map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }

    fn revoke_key(&self, id: &str, actor: &str, why: &str) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        let n = tx
            .execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1", params![id])
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchKey(id.into()));
        }
        audit(&tx, &audited::key_revoked(actor, id, why)).map_err(self.db())?;
        tx.commit().map_err(self.db())
    }

    fn verify(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        let Some((id, secret)) = split_key(presented) else {
            return Ok(None);
        };
        let row: Option<(Vec<u8>, KeyRecord)> = self
            .conn
            .query_row(
                "SELECT secret_sha256, id, account, tier, created, revoked FROM api_keys WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, key_record(r, 1)?)),
            )
            .optional()
            .map_err(self.db())?;
        Ok(row.and_then(|(h, rec)| (secret_matches(&h, secret) && !rec.revoked).then_some(rec)))
    }

    fn set_override(&self, o: &Override, actor: &str) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT OR REPLACE INTO overrides (account, verdict, reason, created) VALUES (?1, ?2, ?3, ?4)",
            params![o.account, o.verdict, o.reason, o.created],
        )
        .map_err(self.db())?;
        let e = audited::override_set(actor, o);
        audit(&tx, &e).map_err(self.db())?;
        tx.commit().map_err(self.db())
    }

    fn clear_override(&self, account: &str, actor: &str, why: &str) -> Result<bool, StoreError> {
        let tx = self.write_tx()?;
        let n = tx
            .execute("DELETE FROM overrides WHERE account = ?1", params![account])
            .map_err(self.db())?;
        if n > 0 {
            audit(&tx, &audited::override_cleared(actor, account, why)).map_err(self.db())?;
        }
        tx.commit().map_err(self.db())?;
        Ok(n > 0)
    }

    fn overrides(&self) -> Result<Vec<Override>, StoreError> {
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

    fn save_verdicts(&self, source: &str, all: &[SavedVerdict]) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        tx.execute("DELETE FROM verdicts WHERE source = ?1", params![source])
            .map_err(self.db())?;
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO verdicts (source, account, verdict, risk, campaign, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(self.db())?;
            for v in all {
                st.execute(params![
                    source, v.account, v.verdict, v.risk, v.campaign, v.updated
                ])
                .map_err(self.db())?;
            }
        }
        tx.commit().map_err(self.db())
    }

    fn verdicts(&self) -> Result<Vec<SavedVerdict>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT source, account, verdict, risk, campaign, updated FROM verdicts ORDER BY account, source",
            )
            .map_err(self.db())?;
        let rows = st
            .query_map([], |r| {
                Ok(SavedVerdict {
                    source: r.get(0)?,
                    account: r.get(1)?,
                    verdict: r.get(2)?,
                    risk: r.get(3)?,
                    campaign: r.get(4)?,
                    updated: r.get(5)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }

    fn record(&self, e: &AuditEntry) -> Result<(), StoreError> {
        audit(&self.conn, e).map_err(self.db())
    }

    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT at, actor, action, target, detail FROM audit_log ORDER BY seq DESC LIMIT ?1",
            )
            .map_err(self.db())?;
        let rows = st
            .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(AuditEntry {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    detail: r.get(4)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }

    fn save_checkpoints(&self, stream: &str, all: &[Checkpoint]) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        {
            let mut st = tx
                .prepare(
                    "INSERT OR REPLACE INTO checkpoints (stream, partition, seq, events, updated) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(self.db())?;
            let now = crate::now_secs();
            for c in all {
                st.execute(params![
                    stream,
                    c.partition,
                    i64::try_from(c.seq).unwrap_or(i64::MAX),
                    i64::try_from(c.events).unwrap_or(i64::MAX),
                    now
                ])
                .map_err(self.db())?;
            }
        }
        tx.commit().map_err(self.db())
    }

    fn checkpoints(&self, stream: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT partition, seq, events FROM checkpoints WHERE stream = ?1 ORDER BY partition",
            )
            .map_err(self.db())?;
        let rows = st
            .query_map(params![stream], |r| {
                Ok(Checkpoint {
                    partition: r.get(0)?,
                    seq: r.get::<_, i64>(1)?.max(0) as u64,
                    events: r.get::<_, i64>(2)?.max(0) as u64,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }

    fn set_batch_owner(&self, id: &str, account: &str, upstream: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO batch_owners (id, account, upstream, created) VALUES (?1, ?2, ?3, ?4)",
                params![id, account, upstream, crate::now_secs()],
            )
            .map(|_| ())
            .map_err(self.db())
    }

    fn batch_owner(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT account, upstream FROM batch_owners WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db())
    }

    fn save_snapshot(&self, s: &Snapshot) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO worker_snapshots (stream, partitions, checkpoints, data, updated) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    s.stream,
                    s.partitions,
                    crate::checkpoints_text(&s.checkpoints),
                    s.data,
                    crate::now_secs()
                ],
            )
            .map(|_| ())
            .map_err(self.db())
    }

    fn snapshot(&self, stream: &str, partitions: &str) -> Result<Option<Snapshot>, StoreError> {
        self.conn
            .query_row(
                "SELECT checkpoints, data FROM worker_snapshots WHERE stream = ?1 AND partitions = ?2",
                params![stream, partitions],
                |r| {
                    Ok(Snapshot {
                        stream: stream.to_string(),
                        partitions: partitions.to_string(),
                        checkpoints: crate::checkpoints_of(&r.get::<_, String>(0)?),
                        data: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.db())
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(self.db())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_secrets_hash_is_stored() {
        let s = Sqlite::open(":memory:").unwrap();
        let (_, key) = s.create_key("acct_1", "tier2", "test").unwrap();
        let secret = key.rsplit('_').next().unwrap();
        let stored: Vec<u8> = s
            .conn()
            .query_row("SELECT secret_sha256 FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, secret.as_bytes());
        assert_eq!(stored.len(), 32);
    }

    #[test]
    fn a_store_file_is_private_in_wal_mode_and_never_made_by_a_typo() {
        let dir = std::env::temp_dir().join(format!("dg-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.db");
        let p = path.to_str().unwrap();
        assert!(matches!(
            Sqlite::open_existing(p),
            Err(StoreError::Missing(_))
        ));
        assert!(!path.exists(), "opening a missing store must not create it");
        let s = Sqlite::open(p).unwrap();
        s.create_key("acct_1", "tier1", "test").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let mode: String = s
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(s);
        assert_eq!(Sqlite::open_existing(p).unwrap().keys().unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn processes_opening_a_new_file_at_once_all_succeed() {
        let dir = std::env::temp_dir().join(format!("dg-store-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.db");
        let opened: Vec<_> = (0..6)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || {
                    Sqlite::open(p.to_str().unwrap()).and_then(|s| s.schema_version())
                })
            })
            .collect();
        for t in opened {
            assert_eq!(t.join().unwrap().unwrap(), MIGRATIONS.len() as i64);
        }
        // Writers on their own connections, at once: each waits its turn.
        let writers: Vec<_> = (0..4u16)
            .map(|w| {
                let p = path.clone();
                std::thread::spawn(move || {
                    let s = Sqlite::open(p.to_str().unwrap()).unwrap();
                    for i in 0..50u64 {
                        let c = Checkpoint {
                            partition: w,
                            seq: i,
                            events: i,
                        };
                        s.save_checkpoints("S", &[c]).unwrap();
                        s.checkpoints("S").unwrap();
                    }
                })
            })
            .collect();
        for t in writers {
            t.join().unwrap();
        }
        let s = Sqlite::open(path.to_str().unwrap()).unwrap();
        assert_eq!(s.checkpoints("S").unwrap().len(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_from_before_versioning_is_adopted_with_its_rows() {
        let dir = std::env::temp_dir().join(format!("dg-store-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.db");
        let p = path.to_str().unwrap();
        {
            // The schema as the releases before versioning made it.
            let c = Connection::open(p).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute(
                "INSERT INTO overrides VALUES ('acct_old', 'block', 'ticket 1', 3)",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO verdicts VALUES ('acct_v', 'throttle', 0.7, 0, 4)",
                [],
            )
            .unwrap();
        }
        let s = Sqlite::open_existing(p).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(s.overrides().unwrap()[0].account, "acct_old");
        let v = &s.verdicts().unwrap()[0];
        assert_eq!((v.source.as_str(), v.account.as_str()), ("", "acct_v"));
        // Opening again applies nothing twice.
        drop(s);
        let s = Sqlite::open_existing(p).unwrap();
        let n: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
        // A newer schema than this build knows is refused, not written to.
        s.conn()
            .execute("INSERT INTO schema_migrations VALUES (99, 0)", [])
            .unwrap();
        drop(s);
        assert!(matches!(
            Sqlite::open_existing(p),
            Err(StoreError::Schema { found: 99, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
