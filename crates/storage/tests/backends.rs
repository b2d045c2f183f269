//! One suite, both backends: every behaviour of the `Store` trait is
//! checked against SQLite and against the PostgreSQL at `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`). Each PostgreSQL
//! test runs in a schema of its own, dropped afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use distillguard_storage::testing::{Schema, database_url};
use distillguard_storage::{Checkpoint, Override, SavedVerdict, Snapshot, Store, StoreError};

/// A schema of this test's own (see `distillguard_storage::testing`).
fn schema() -> Schema {
    Schema::new().expect("PostgreSQL at DATABASE_URL (.ci/run starts it)")
}

fn keys_are_created_verified_listed_and_revoked(s: &dyn Store) {
    let (rec, key) = s.create_key("acct_1", "tier2", "cli:ann@host").unwrap();
    assert!(key.starts_with(&format!("dg_{}_", rec.id)));
    assert_eq!(rec.id.len(), 12);
    assert_eq!(s.verify(&key).unwrap().unwrap().account, "acct_1");
    assert_eq!(s.verify(&key).unwrap().unwrap().tier, "tier2");
    // A wrong secret, a malformed key, an unknown id: no.
    let last = key.as_bytes()[key.len() - 1];
    let wrong = format!(
        "{}{}",
        &key[..key.len() - 1],
        if last == b'0' { '1' } else { '0' }
    );
    assert!(s.verify(&wrong).unwrap().is_none());
    assert!(s.verify("sk-nothing").unwrap().is_none());
    assert!(s.verify("dg_000000000000_00").unwrap().is_none());
    let (rec2, _) = s.create_key("acct_2", "tier1", "cli:ann@host").unwrap();
    let listed = s.keys().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|k| k.id == rec2.id && k.account == "acct_2")
    );
    s.revoke_key(&rec.id, "cli:bob@host", "leaked in a ticket")
        .unwrap();
    assert!(s.verify(&key).unwrap().is_none());
    assert!(
        s.keys()
            .unwrap()
            .iter()
            .any(|k| k.id == rec.id && k.revoked)
    );
    assert!(matches!(
        s.revoke_key("nope", "cli:bob@host", ""),
        Err(StoreError::NoSuchKey(_))
    ));
}

fn overrides_are_set_replaced_listed_and_cleared(s: &dyn Store) {
    let o = |v: &str| Override {
        account: "acct_9".into(),
        verdict: v.into(),
        reason: "ticket 12".into(),
        created: 5,
    };
    s.set_override(&o("block"), "admin:ab12").unwrap();
    s.set_override(&o("allow"), "admin:ab12").unwrap();
    assert_eq!(s.overrides().unwrap(), vec![o("allow")]);
    assert!(
        s.clear_override("acct_9", "admin:ab12", "resolved")
            .unwrap()
    );
    assert!(!s.clear_override("acct_9", "admin:ab12", "again").unwrap());
    assert!(s.overrides().unwrap().is_empty());
}

fn verdicts_are_replaced_as_a_whole_per_source(s: &dyn Store) {
    let v = |a: &str, verdict: &str| SavedVerdict {
        source: "gw-1".into(),
        account: a.into(),
        verdict: verdict.into(),
        risk: 0.9,
        campaign: a == "b",
        updated: 7,
    };
    s.save_verdicts("gw-1", &[v("a", "block"), v("b", "throttle")])
        .unwrap();
    assert_eq!(s.verdicts().unwrap().len(), 2);
    s.save_verdicts("gw-1", &[v("b", "block")]).unwrap();
    assert_eq!(s.verdicts().unwrap(), vec![v("b", "block")]);
    // Another replica's save keeps this one's rows.
    let mut other = v("b", "monitor");
    other.source = "gw-2".into();
    s.save_verdicts("gw-2", std::slice::from_ref(&other))
        .unwrap();
    assert_eq!(s.verdicts().unwrap(), vec![v("b", "block"), other.clone()]);
    s.save_verdicts("gw-1", &[]).unwrap();
    assert_eq!(s.verdicts().unwrap(), vec![other]);
}

fn every_operator_action_is_audited_with_who_what_and_why(s: &dyn Store) {
    let (rec, _) = s.create_key("acct_1", "tier3", "cli:ann@host").unwrap();
    s.revoke_key(&rec.id, "cli:bob@host", "rotated").unwrap();
    let o = Override {
        account: "acct_7".into(),
        verdict: "block".into(),
        reason: "campaign 3 confirmed".into(),
        created: 11,
    };
    s.set_override(&o, "admin:cd34 (carol)").unwrap();
    assert!(
        s.clear_override("acct_7", "admin:cd34 (carol)", "appeal upheld")
            .unwrap()
    );
    // A removal of nothing changed nothing, and is not logged.
    assert!(!s.clear_override("acct_8", "admin:cd34", "").unwrap());
    // Neither are the detector's own saves.
    s.save_verdicts("gw-1", &[]).unwrap();
    let log = s.audit_log(10).unwrap();
    let seen: Vec<(&str, &str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e.actor.as_str(),
                e.action.as_str(),
                e.target.as_str(),
                e.detail.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "admin:cd34 (carol)",
                "override.clear",
                "acct_7",
                "appeal upheld"
            ),
            (
                "admin:cd34 (carol)",
                "override.set",
                "acct_7",
                "block: campaign 3 confirmed"
            ),
            ("cli:bob@host", "key.revoke", rec.id.as_str(), "rotated"),
            (
                "cli:ann@host",
                "key.create",
                rec.id.as_str(),
                "account acct_1, tier tier3"
            ),
        ]
    );
    assert!(log.iter().all(|e| e.at > 1_700_000_000));
    assert_eq!(s.audit_log(1).unwrap().len(), 1);
    // A failed action leaves no row.
    let _ = s.revoke_key("nope", "cli:eve@host", "");
    assert_eq!(s.audit_log(100).unwrap().len(), 4);
}

fn the_schema_is_versioned(s: &dyn Store) {
    assert_eq!(s.schema_version().unwrap(), 6);
}

fn worker_snapshots_are_kept_per_stream_and_partition_range(s: &dyn Store) {
    assert_eq!(s.snapshot("EVENTS", "0-3").unwrap(), None);
    let snap = |data: &[u8], seq| Snapshot {
        stream: "EVENTS".into(),
        partitions: "0-3".into(),
        checkpoints: vec![
            Checkpoint {
                partition: 0,
                seq,
                events: 7,
            },
            Checkpoint {
                partition: 3,
                seq: u64::from(u32::MAX) + 5,
                events: 0,
            },
        ],
        data: data.to_vec(),
    };
    // Bytes of every value, a megabyte of them.
    let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    s.save_snapshot(&snap(&big, 10)).unwrap();
    assert_eq!(s.snapshot("EVENTS", "0-3").unwrap(), Some(snap(&big, 10)));
    // Another range, another stream: apart. A later save replaces.
    assert_eq!(s.snapshot("EVENTS", "4-7").unwrap(), None);
    assert_eq!(s.snapshot("OTHER", "0-3").unwrap(), None);
    s.save_snapshot(&snap(b"\x00\xff", 20)).unwrap();
    assert_eq!(
        s.snapshot("EVENTS", "0-3").unwrap(),
        Some(snap(b"\x00\xff", 20))
    );
}

fn batch_owners_are_recorded_and_replaced(s: &dyn Store) {
    assert_eq!(s.batch_owner("file-1").unwrap(), None);
    s.set_batch_owner("file-1", "acct_1", "openai-a").unwrap();
    s.set_batch_owner("batch_9", "acct_2", "openai-b").unwrap();
    assert_eq!(
        s.batch_owner("file-1").unwrap(),
        Some(("acct_1".to_string(), "openai-a".to_string()))
    );
    // The upstream named the id again: the latest record holds.
    s.set_batch_owner("file-1", "acct_3", "openai-b").unwrap();
    assert_eq!(
        s.batch_owner("file-1").unwrap(),
        Some(("acct_3".to_string(), "openai-b".to_string()))
    );
    assert_eq!(s.batch_owner("batch_9").unwrap().unwrap().0, "acct_2");
}

fn checkpoints_are_kept_per_stream_and_partition(s: &dyn Store) {
    let c = |partition, seq, events| Checkpoint {
        partition,
        seq,
        events,
    };
    assert!(s.checkpoints("EVENTS").unwrap().is_empty());
    s.save_checkpoints("EVENTS", &[c(0, 10, 4), c(3, 12, 5)])
        .unwrap();
    s.save_checkpoints("OTHER", &[c(0, 99, 1)]).unwrap();
    // A later save moves a partition on and leaves the others.
    s.save_checkpoints("EVENTS", &[c(3, 40, 20)]).unwrap();
    assert_eq!(
        s.checkpoints("EVENTS").unwrap(),
        vec![c(0, 10, 4), c(3, 40, 20)]
    );
    assert_eq!(s.checkpoints("OTHER").unwrap(), vec![c(0, 99, 1)]);
    // Sequences beyond what a signed column holds are kept at its top.
    s.save_checkpoints("BIG", &[c(1, u64::MAX, 0)]).unwrap();
    assert_eq!(s.checkpoints("BIG").unwrap()[0].seq, i64::MAX as u64);
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let s = distillguard_storage::Sqlite::open(":memory:").unwrap();
                    super::$name(&s);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let schema = super::schema();
                    let s = distillguard_storage::open(&schema.url()).unwrap();
                    super::$name(s.as_ref());
                }
            )*
        }
    };
}

suite!(
    keys_are_created_verified_listed_and_revoked,
    overrides_are_set_replaced_listed_and_cleared,
    verdicts_are_replaced_as_a_whole_per_source,
    every_operator_action_is_audited_with_who_what_and_why,
    the_schema_is_versioned,
    checkpoints_are_kept_per_stream_and_partition,
    worker_snapshots_are_kept_per_stream_and_partition_range,
    batch_owners_are_recorded_and_replaced,
);

#[test]
fn replicas_opening_one_database_at_once_migrate_it_once() {
    let schema = schema();
    let url = schema.url();
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let u = url.clone();
            std::thread::spawn(move || distillguard_storage::open(&u).map(|s| s.schema_version()))
        })
        .collect();
    for t in opened {
        assert_eq!(t.join().unwrap().unwrap().unwrap(), 6);
    }
    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 6);
}

#[test]
fn a_key_made_by_one_replica_is_valid_at_the_other() {
    let schema = schema();
    let a = distillguard_storage::open(&schema.url()).unwrap();
    let b = distillguard_storage::open(&schema.url()).unwrap();
    let (rec, key) = a.create_key("acct_1", "tier1", "test").unwrap();
    assert_eq!(b.verify(&key).unwrap().unwrap().id, rec.id);
    b.revoke_key(&rec.id, "test", "").unwrap();
    assert!(a.verify(&key).unwrap().is_none());
}

#[test]
fn a_lost_connection_is_made_again_on_the_next_call() {
    let schema = schema();
    let url = format!("{}&application_name={}", schema.url(), schema.name);
    let s = distillguard_storage::open(&url).unwrap();
    let (_, key) = s.create_key("acct_1", "tier1", "test").unwrap();
    // Kill the store's own backend connection from outside.
    let mut c = ::postgres::Client::connect(&database_url(), ::postgres::NoTls).unwrap();
    let killed: i64 = c
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = $1",
            &[&schema.name],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 1, "the store's connection was found");
    // A read meets the closed connection, connects again and is repeated:
    // the caller does not see the cut.
    assert!(s.verify(&key).unwrap().is_some());
    // A write after a cut reaches the new connection too.
    assert!(s.keys().unwrap().len() == 1);
    c.query_one(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        &[&schema.name],
    )
    .unwrap();
    let first = s.create_key("acct_2", "tier1", "test");
    s.create_key("acct_3", "tier1", "test").unwrap();
    assert!(s.keys().unwrap().len() >= 2, "{first:?}");
}

#[test]
fn an_unreachable_server_is_an_error_naming_it_without_the_password() {
    let e = distillguard_storage::open("postgres://dg:hunter2@127.0.0.1:1/nodb?connect_timeout=2")
        .err()
        .expect("nothing listens on port 1");
    let text = e.to_string();
    assert!(text.contains("127.0.0.1:1/nodb"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
