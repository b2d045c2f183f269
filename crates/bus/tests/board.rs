//! The verdict board against the real NATS of the machine (`NATS_URL`,
//! default nats://127.0.0.1:4222; `.ci/run` starts it when it is down).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use distillguard_bus::board::{Board, Posted, Scope};

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

#[tokio::test]
async fn verdicts_posted_are_followed_and_removals_seen() {
    let client = distillguard_bus::connect(&nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let bucket = format!("dgtest_board_{}", std::process::id());
    let board = Board::open(&js, &bucket, 1).await.unwrap();
    let p = |v: &str| Posted {
        verdict: v.into(),
        risk: 0.9,
        campaign: true,
        keys: Some("allow".into()),
        at_ms: 1,
        by: "w1".into(),
        reason: String::new(),
    };
    board
        .post(Scope::Account, "acct_1", &p("throttle"))
        .await
        .unwrap();
    board
        .post(Scope::Account, "acct_1", &p("block"))
        .await
        .unwrap();
    board
        .post(Scope::Key, "2001:db8::/64", &p("block"))
        .await
        .unwrap();
    board
        .post(Scope::Override, "acct_2", &p("allow"))
        .await
        .unwrap();
    board.clear(Scope::Override, "acct_2").await.unwrap();
    board
        .post(Scope::Campaign, "camp_0123456789ab", &p("block"))
        .await
        .unwrap();
    // A follower sees the latest of each, and the removal.
    let seen = std::sync::Mutex::new(Vec::new());
    let follow = board.follow(|s, id, v| {
        seen.lock().unwrap().push((s, id, v.map(|p| p.verdict)));
    });
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), follow).await;
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.contains(&(Scope::Account, "acct_1".into(), Some("block".into()))),
        "{seen:?}"
    );
    assert!(
        !seen.contains(&(Scope::Account, "acct_1".into(), Some("throttle".into()))),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(Scope::Key, "2001:db8::/64".into(), Some("block".into()))),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(Scope::Override, "acct_2".into(), None)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(
            Scope::Campaign,
            "camp_0123456789ab".into(),
            Some("block".into())
        )),
        "{seen:?}"
    );
    js.delete_key_value(&bucket).await.unwrap();
}
