//! The shared backend: a PostgreSQL database that every replica uses.
//!
//! The blocking `postgres` client runs its own small runtime, which must
//! not be entered from inside the gateway's. So one thread owns the
//! connection, and calls reach it over a channel: any thread (async or
//! not) can call the store. A dropped connection is made again on the
//! next call.

use crate::{
    AuditEntry, Checkpoint, KeyRecord, Override, SavedVerdict, Snapshot, Store, StoreError,
    audited, new_key, secret_matches, split_key,
};
use ::postgres::{Client, Config, GenericClient, NoTls, Row};
use std::sync::mpsc;
use std::time::Duration;

/// The schema, one step per version (as the SQLite backend's).
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        secret_sha256 BYTEA NOT NULL,
        account TEXT NOT NULL,
        tier TEXT NOT NULL,
        created BIGINT NOT NULL,
        revoked BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE TABLE verdicts (
        account TEXT PRIMARY KEY,
        verdict TEXT NOT NULL,
        risk DOUBLE PRECISION NOT NULL,
        campaign BOOLEAN NOT NULL,
        updated BIGINT NOT NULL
    );
    CREATE TABLE overrides (
        account TEXT PRIMARY KEY,
        verdict TEXT NOT NULL,
        reason TEXT NOT NULL,
        created BIGINT NOT NULL
    );",
    "CREATE TABLE audit_log (
        seq BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_log_target ON audit_log (target);",
    "ALTER TABLE verdicts ADD COLUMN source TEXT NOT NULL DEFAULT '';
    ALTER TABLE verdicts DROP CONSTRAINT verdicts_pkey;
    ALTER TABLE verdicts ADD PRIMARY KEY (source, account);",
    "CREATE TABLE checkpoints (
        stream TEXT NOT NULL,
        partition INTEGER NOT NULL,
        seq BIGINT NOT NULL,
        events BIGINT NOT NULL,
        updated BIGINT NOT NULL,
        PRIMARY KEY (stream, partition)
    );",
    "CREATE TABLE batch_owners (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        upstream TEXT NOT NULL,
        created BIGINT NOT NULL
    );",
    "CREATE TABLE worker_snapshots (
        stream TEXT NOT NULL,
        partitions TEXT NOT NULL,
        checkpoints TEXT NOT NULL,
        data BYTEA NOT NULL,
        updated BIGINT NOT NULL,
        PRIMARY KEY (stream, partitions)
    );",
];

/// An advisory lock id for migrations, so that replicas starting at once
/// apply each step once ("distillg" in ASCII).
const MIGRATION_LOCK: i64 = 0x6469_7374_696c_6c67;

/// A call on the connection; it answers whether the connection is broken.
type Job = Box<dyn FnOnce(Result<&mut Client, ::postgres::Error>) -> bool + Send>;

pub struct Postgres {
    jobs: mpsc::Sender<Job>,
    /// The server and database, without credentials (for errors and logs).
    at: String,
}

/// `host:port/db` of a config, without user or password.
fn describe(c: &Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            ::postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            ::postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgresql://{host}:{port}/{}",
        c.get_dbname().unwrap_or_default()
    )
}

fn audit(c: &mut impl GenericClient, e: &AuditEntry) -> Result<(), ::postgres::Error> {
    c.execute(
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        &[&e.at, &e.actor, &e.action, &e.target, &e.detail],
    )
    .map(drop)
}

fn key_record(r: &Row, from: usize) -> Result<KeyRecord, ::postgres::Error> {
    Ok(KeyRecord {
        id: r.try_get(from)?,
        account: r.try_get(from + 1)?,
        tier: r.try_get(from + 2)?,
        created: r.try_get(from + 3)?,
        revoked: r.try_get(from + 4)?,
    })
}

/// Applies the migrations the database lacks, under an advisory lock.
fn migrate(c: &mut Client) -> Result<Result<(), (i64, i64)>, ::postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)",
    )?;
    let at: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .try_get(0)?;
    let known = MIGRATIONS.len() as i32;
    if at > known {
        return Ok(Err((i64::from(at), i64::from(known))));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(at.max(0) as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)",
            &[&(i as i32 + 1), &crate::now_secs()],
        )?;
    }
    tx.commit()?;
    Ok(Ok(()))
}

impl Postgres {
    /// Connects to `url` (`postgres://user@host:port/db`, with any
    /// libpq-style parameters such as `options=-csearch_path%3Dx`) and
    /// brings its schema up to date.
    pub fn connect(url: &str) -> Result<Postgres, StoreError> {
        let mut config: Config = url.parse().map_err(|e: ::postgres::Error| {
            // The URL may hold a password: name the scheme only.
            StoreError::Locator {
                at: "postgresql".into(),
                url: "the URL".into(),
                reason: e.to_string(),
            }
        })?;
        if config.get_application_name().is_none() {
            config.application_name("distillguard");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let at = describe(&config);
        // The first connection and the migrations happen on the connection
        // thread too (the caller may be inside an async runtime).
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::sync_channel(1);
        let spawned_at = at.clone();
        std::thread::Builder::new()
            .name("distillguard-postgres".into())
            .spawn(move || {
                let first = config
                    .connect(NoTls)
                    .and_then(|mut c| migrate(&mut c).map(|m| (c, m)));
                match first {
                    Ok((c, Ok(()))) => {
                        let _ = ready_tx.send(Ok(()));
                        serve(config, c, rx);
                    }
                    Ok((_, Err((found, known)))) => {
                        let _ = ready_tx.send(Err(StoreError::Schema {
                            at: spawned_at,
                            found,
                            known,
                        }));
                    }
                    Err(source) => {
                        let _ = ready_tx.send(Err(StoreError::Postgres {
                            at: spawned_at,
                            source,
                        }));
                    }
                }
            })
            .map_err(|e| StoreError::Io {
                path: at.clone(),
                source: e,
            })?;
        ready
            .recv()
            .map_err(|_| StoreError::Gone { at: at.clone() })??;
        Ok(Postgres { jobs, at })
    }

    /// Runs `f` on the connection thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, ::postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |c| {
            let r = c.and_then(f);
            let broken = matches!(&r, Err(e) if broken(e));
            let _ = tx.send(r);
            broken
        });
        let gone = || StoreError::Gone {
            at: self.at.clone(),
        };
        self.jobs.send(job).map_err(|_| gone())?;
        rx.recv()
            .map_err(|_| gone())?
            .map_err(|source| StoreError::Postgres {
                at: self.at.clone(),
                source,
            })
    }
}

impl Postgres {
    /// [`Postgres::call`] for a read, tried once more on a new connection
    /// when the old one turns out closed (a server restart, a proxy's idle
    /// cut): a read is safe to repeat, and the caller never sees the cut.
    fn read<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, ::postgres::Error> + Clone + Send + 'static,
    ) -> Result<T, StoreError> {
        match self.call(f.clone()) {
            Err(StoreError::Postgres { source, .. }) if broken(&source) => self.call(f),
            r => r,
        }
    }
}

/// Whether an error means the connection is gone: closed under us, a
/// socket error, or ended by the server (`FATAL`, such as 57P01 when an administrator or a
/// restart terminates it, or a connection exception, class 08).
fn broken(e: &::postgres::Error) -> bool {
    e.is_closed()
        // A socket the server already closed (reset, broken pipe).
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        || e.as_db_error()
            .is_some_and(|d| d.severity() == "FATAL" || d.code().code().starts_with("08"))
}

/// The connection thread: runs jobs in order, connecting again when the
/// connection was lost. It ends when the store is dropped.
fn serve(config: Config, first: Client, jobs: mpsc::Receiver<Job>) {
    let mut client = Some(first);
    for job in jobs {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = None;
            match config.connect(NoTls) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    job(Err(e));
                    continue;
                }
            }
        }
        if let Some(c) = client.as_mut()
            && job(Ok(c))
        {
            client = None;
        }
    }
}

impl Store for Postgres {
    fn create_key(
        &self,
        account: &str,
        tier: &str,
        actor: &str,
    ) -> Result<(KeyRecord, String), StoreError> {
        let k = new_key()?;
        let e = audited::key_created(actor, &k.id, account, tier);
        let rec = KeyRecord {
            id: k.id.clone(),
            account: account.into(),
            tier: tier.into(),
            created: e.at,
            revoked: false,
        };
        let key = format!("dg_{}_{}", k.id, k.secret);
        let r = rec.clone();
        self.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO api_keys (id, secret_sha256, account, tier, created) VALUES ($1, $2, $3, $4, $5)",
                &[&r.id, &k.hash, &r.account, &r.tier, &r.created],
            )?;
            audit(&mut tx, &e)?;
            tx.commit()
        })?;
        Ok((rec, key))
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT id, account, tier, created, revoked FROM api_keys ORDER BY created, id",
                &[],
            )?
            .iter()
            .map(|r| key_record(r, 0))
            .collect()
        })
    }

    fn revoke_key(&self, id: &str, actor: &str, why: &str) -> Result<(), StoreError> {
        let e = audited::key_revoked(actor, id, why);
        let n = self.call(move |c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE api_keys SET revoked = TRUE WHERE id = $1",
                &[&e.target],
            )?;
            if n > 0 {
                audit(&mut tx, &e)?;
                tx.commit()?;
            }
            Ok(n)
        })?;
        match n {
            0 => Err(StoreError::NoSuchKey(id.into())),
            _ => Ok(()),
        }
    }

    fn verify(&self, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
        let Some((id, secret)) = split_key(presented) else {
            return Ok(None);
        };
        let id = id.to_string();
        let row = self.read(move |c| {
            c.query_opt(
                "SELECT secret_sha256, id, account, tier, created, revoked FROM api_keys WHERE id = $1",
                &[&id],
            )?
            .map(|r| Ok((r.try_get::<_, Vec<u8>>(0)?, key_record(&r, 1)?)))
            .transpose()
        })?;
        Ok(row.and_then(|(h, rec)| (secret_matches(&h, secret) && !rec.revoked).then_some(rec)))
    }

    fn set_override(&self, o: &Override, actor: &str) -> Result<(), StoreError> {
        let e = audited::override_set(actor, o);
        let o = o.clone();
        self.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO overrides (account, verdict, reason, created) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account) DO UPDATE SET verdict = EXCLUDED.verdict, reason = EXCLUDED.reason, created = EXCLUDED.created",
                &[&o.account, &o.verdict, &o.reason, &o.created],
            )?;
            audit(&mut tx, &e)?;
            tx.commit()
        })
    }

    fn clear_override(&self, account: &str, actor: &str, why: &str) -> Result<bool, StoreError> {
        let e = audited::override_cleared(actor, account, why);
        self.call(move |c| {
            let mut tx = c.transaction()?;
            let n = tx.execute("DELETE FROM overrides WHERE account = $1", &[&e.target])?;
            if n > 0 {
                audit(&mut tx, &e)?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT account, verdict, reason, created FROM overrides ORDER BY account",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(Override {
                    account: r.try_get(0)?,
                    verdict: r.try_get(1)?,
                    reason: r.try_get(2)?,
                    created: r.try_get(3)?,
                })
            })
            .collect()
        })
    }

    fn save_verdicts(&self, source: &str, all: &[SavedVerdict]) -> Result<(), StoreError> {
        let all = all.to_vec();
        let source = source.to_string();
        self.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM verdicts WHERE source = $1", &[&source])?;
            let st = tx.prepare(
                "INSERT INTO verdicts (source, account, verdict, risk, campaign, updated) VALUES ($1, $2, $3, $4, $5, $6)",
            )?;
            for v in &all {
                tx.execute(
                    &st,
                    &[&source, &v.account, &v.verdict, &v.risk, &v.campaign, &v.updated],
                )?;
            }
            tx.commit()
        })
    }

    fn verdicts(&self) -> Result<Vec<SavedVerdict>, StoreError> {
        self.read(|c| {
            c.query(
                "SELECT source, account, verdict, risk, campaign, updated FROM verdicts ORDER BY account, source",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(SavedVerdict {
                    source: r.try_get(0)?,
                    account: r.try_get(1)?,
                    verdict: r.try_get(2)?,
                    risk: r.try_get(3)?,
                    campaign: r.try_get(4)?,
                    updated: r.try_get(5)?,
                })
            })
            .collect()
        })
    }

    fn record(&self, e: &AuditEntry) -> Result<(), StoreError> {
        let e = e.clone();
        self.call(move |c| audit(c, &e))
    }

    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            c.query(
                "SELECT at, actor, action, target, detail FROM audit_log ORDER BY seq DESC LIMIT $1",
                &[&limit],
            )?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    target: r.try_get(3)?,
                    detail: r.try_get(4)?,
                })
            })
            .collect()
        })
    }

    fn save_checkpoints(&self, stream: &str, all: &[Checkpoint]) -> Result<(), StoreError> {
        let stream = stream.to_string();
        let all = all.to_vec();
        self.call(move |c| {
            let mut tx = c.transaction()?;
            let st = tx.prepare(
                "INSERT INTO checkpoints (stream, partition, seq, events, updated) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (stream, partition) DO UPDATE SET seq = EXCLUDED.seq, events = EXCLUDED.events, updated = EXCLUDED.updated",
            )?;
            let now = crate::now_secs();
            for k in &all {
                tx.execute(
                    &st,
                    &[
                        &stream,
                        &i32::from(k.partition),
                        &i64::try_from(k.seq).unwrap_or(i64::MAX),
                        &i64::try_from(k.events).unwrap_or(i64::MAX),
                        &now,
                    ],
                )?;
            }
            tx.commit()
        })
    }

    fn checkpoints(&self, stream: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let stream = stream.to_string();
        self.read(move |c| {
            c.query(
                "SELECT partition, seq, events FROM checkpoints WHERE stream = $1 ORDER BY partition",
                &[&stream],
            )?
            .iter()
            .map(|r| {
                Ok(Checkpoint {
                    partition: u16::try_from(r.try_get::<_, i32>(0)?).unwrap_or(0),
                    seq: r.try_get::<_, i64>(1)?.max(0) as u64,
                    events: r.try_get::<_, i64>(2)?.max(0) as u64,
                })
            })
            .collect()
        })
    }

    fn set_batch_owner(&self, id: &str, account: &str, upstream: &str) -> Result<(), StoreError> {
        let (id, account, upstream) = (id.to_string(), account.to_string(), upstream.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT INTO batch_owners (id, account, upstream, created) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET account = EXCLUDED.account, upstream = EXCLUDED.upstream",
                &[&id, &account, &upstream, &crate::now_secs()],
            )
            .map(|_| ())
        })
    }

    fn save_snapshot(&self, s: &Snapshot) -> Result<(), StoreError> {
        let s = s.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO worker_snapshots (stream, partitions, checkpoints, data, updated) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (stream, partitions) DO UPDATE SET checkpoints = EXCLUDED.checkpoints, data = EXCLUDED.data, updated = EXCLUDED.updated",
                &[
                    &s.stream,
                    &s.partitions,
                    &crate::checkpoints_text(&s.checkpoints),
                    &s.data,
                    &crate::now_secs(),
                ],
            )
            .map(|_| ())
        })
    }

    fn snapshot(&self, stream: &str, partitions: &str) -> Result<Option<Snapshot>, StoreError> {
        let (stream, partitions) = (stream.to_string(), partitions.to_string());
        self.read(move |c| {
            c.query_opt(
                "SELECT checkpoints, data FROM worker_snapshots WHERE stream = $1 AND partitions = $2",
                &[&stream, &partitions],
            )?
            .map(|r| {
                Ok(Snapshot {
                    stream: stream.clone(),
                    partitions: partitions.clone(),
                    checkpoints: crate::checkpoints_of(&r.try_get::<_, String>(0)?),
                    data: r.try_get(1)?,
                })
            })
            .transpose()
        })
    }

    fn batch_owner(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            c.query_opt(
                "SELECT account, upstream FROM batch_owners WHERE id = $1",
                &[&id],
            )?
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .transpose()
        })
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            let v: i32 = c
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    &[],
                )?
                .try_get(0)?;
            Ok(i64::from(v))
        })
    }
}
