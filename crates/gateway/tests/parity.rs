//! One verdict pipeline: a log replayed through the gateway's detector
//! path (requests as the gateway observes them, folded live on the detector
//! thread) and through `analyze`'s path (the gateway's own event-log lines,
//! parsed and folded to a report) gives every account the same verdict.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distillguard_core::Verdict;
use distillguard_detect::engine::{Engine, Weights};
use distillguard_gateway::detector::{Detector, Feed, Forgetting, Known};
use distillguard_gateway::observed::Observed;
use distillguard_pipeline::{PerRequest, Pipeline};

/// A small simulated world's lines, as the gateway would have observed them.
fn observed() -> Vec<Observed> {
    let corpus = distillguard_simulator::Corpus::embedded().unwrap();
    let mut s = distillguard_simulator::Scenario::load("small").unwrap();
    // Fewer humans: the campaigns are what the comparison is about.
    if let Some(b) = s.benign.as_mut() {
        b.accounts = 120;
    }
    let world = distillguard_simulator::build(&s, 7, &corpus);
    let mut out = Vec::new();
    world
        .for_each_chunk(|chunk| -> Result<(), ()> {
            for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_slice(line).unwrap();
                let e = distillguard_core::parse_event_line(std::str::from_utf8(line).unwrap())
                    .unwrap();
                out.push(Observed {
                    id: format!("ev_{}", out.len()),
                    ts_ms: e.ts.0,
                    account: e.account_id.clone(),
                    key_id: e.api_key_id.clone(),
                    // The simulator writes each dialect on its own endpoint.
                    path: e.dialect.endpoint(),
                    dialect: e.dialect,
                    body: serde_json::to_vec(&v["request"]).unwrap().into(),
                    request: None,
                    ip: e.client.ip.clone(),
                    user_agent: e.client.user_agent.clone(),
                    response: e.response.clone(),
                    status: e.status.unwrap_or(200),
                    latency_ms: e.latency_ms.unwrap_or(0.0),
                    batch: e.batch.clone(),
                });
            }
            Ok(())
        })
        .unwrap();
    out
}

/// `analyze`'s path: the gateway's event-log lines, parsed and folded by
/// one pipeline.
fn analyzed(obs: &[Observed], link: distillguard_link::Config) -> distillguard_core::Report {
    let w = Weights::embedded();
    let intel = distillguard_stix::Intel::default();
    let per = PerRequest {
        intel: &intel,
        link_keys: true,
    };
    let mut pipe = Pipeline::new(
        Engine::new(&w, w.thresholds, &[], HashMap::new()),
        link,
        &HashMap::new(),
        &intel,
    );
    for o in obs {
        let e = distillguard_core::parse_event_line(&o.log_line()).unwrap();
        pipe.process(&distillguard_pipeline::record(&e, &per));
    }
    pipe.finish(true)
}

#[test]
fn the_gateway_and_analyze_give_the_same_verdicts() {
    let obs = observed();
    assert!(obs.len() > 5_000, "{}", obs.len());
    let link = distillguard_link::Config::default();
    // analyze's path: the gateway's event-log lines, parsed and folded.
    let report = analyzed(&obs, link);

    // The gateway's path: the detector thread, fed as requests end.
    let (feed, changes) = std::sync::mpsc::channel();
    let d = Detector::start(
        None,
        link,
        obs.len() + 16,
        None,
        Known::default(),
        Forgetting::default(),
        Some(Feed {
            to: feed,
            links: false,
        }),
    );
    for o in obs.iter().cloned() {
        d.submit(Arc::new(o));
    }
    let until = Instant::now() + Duration::from_secs(120);
    while d.processed.load(std::sync::atomic::Ordering::Relaxed) < obs.len() as u64 {
        assert!(Instant::now() < until, "the detector did not keep up");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The idle detector brings campaign membership up to date.
    std::thread::sleep(Duration::from_millis(300));

    let mut flagged = 0;
    for a in &report.accounts {
        let s = d
            .state(&a.account_id)
            .unwrap_or_else(|| panic!("{} unseen", a.account_id));
        let live = s.verdict.max(s.keys);
        assert_eq!(
            live, a.verdict,
            "{}: gateway {live:?}, analyze {:?}",
            a.account_id, a.verdict
        );
        assert_eq!(s.campaign, a.campaign_id.is_some(), "{}", a.account_id);
        flagged += a.verdict.is_flagged() as u32;
    }
    assert!(
        flagged > 10,
        "too few flagged accounts to compare: {flagged}"
    );
    assert!(report.accounts.iter().any(|a| a.verdict == Verdict::Allow));

    // The campaigns the feed announced (latest size per id) are the
    // report's, by id and size: what workers post to the board.
    let mut announced = std::collections::BTreeMap::new();
    for c in changes.try_iter() {
        if let distillguard_gateway::detector::Change::Campaign(id, n) = c {
            announced.insert(id, u64::from(n));
        }
    }
    let reported: std::collections::BTreeMap<String, u64> = report
        .campaigns
        .iter()
        .map(|c| (c.campaign_id.clone(), c.accounts.len() as u64))
        .collect();
    assert!(!reported.is_empty(), "no campaign to compare");
    assert_eq!(announced, reported);
}

/// The cluster's path: two detectors, each with the accounts of half the
/// partitions and its own linking off, send their link records; merged in
/// time order (what the linker's reorder buffer releases) and folded by
/// the pipeline's campaign half, they give the campaigns of the one
/// pipeline `analyze` runs, by id and size, although each detector alone
/// sees only part of every campaign.
#[test]
fn a_linker_fed_by_two_workers_finds_the_campaigns_of_one_process() {
    // In time order, as a worker's reorder buffer releases them.
    let mut obs = observed();
    obs.sort_by_key(|o| {
        (
            o.ts_ms,
            distillguard_sketches::hash_exact(o.account.as_bytes()),
        )
    });
    let link = distillguard_link::Config::default();
    let report = analyzed(&obs, link);
    let reported: std::collections::BTreeMap<String, u32> = report
        .campaigns
        .iter()
        .map(|c| (c.campaign_id.clone(), c.accounts.len() as u32))
        .collect();
    assert!(reported.len() >= 2, "too few campaigns: {reported:?}");

    let two = std::num::NonZeroU16::new(2).unwrap();
    let mut records = Vec::new();
    let mut split_campaigns = 0;
    for half in 0..2u16 {
        let mine: Vec<Observed> = obs
            .iter()
            .filter(|o| distillguard_bus::partition_of(&o.account, two) == half)
            .cloned()
            .collect();
        let (feed, changes) = std::sync::mpsc::channel();
        let d = Detector::start(
            None,
            distillguard_link::Config {
                enabled: false,
                ..link
            },
            mine.len() + 16,
            None,
            Known::default(),
            Forgetting::default(),
            Some(Feed {
                to: feed,
                links: true,
            }),
        );
        for o in &mine {
            d.submit(Arc::new(o.clone()));
        }
        assert!(d.score_and_wait(Vec::new(), Duration::from_secs(120)));
        let mut n = 0;
        for c in changes.try_iter() {
            match c {
                distillguard_gateway::detector::Change::Link(r) => {
                    records.push(*r);
                    n += 1;
                }
                distillguard_gateway::detector::Change::Campaign(..) => split_campaigns += 1,
                _ => {}
            }
        }
        assert_eq!(n, mine.len(), "one link record per request");
    }
    assert_eq!(split_campaigns, 0, "a worker linked on its own");
    // Every record's id is its event's; the merge is by (time, account).
    records.sort_by_key(|r| {
        (
            r.ts.0,
            distillguard_sketches::hash_exact(r.account.as_bytes()),
        )
    });
    let mut links = distillguard_pipeline::Links::new(link, &HashMap::new());
    for r in &records {
        assert!(r.id.as_deref().is_some_and(|i| i.starts_with("ev_")));
        links.fold(r);
    }
    let linked: std::collections::BTreeMap<String, u32> = links.summaries().into_iter().collect();
    assert_eq!(linked, reported);
}

/// A detector restored from a snapshot taken halfway through a world, fed
/// the second half, ends where the detector that folded it all ends: every
/// account's published state and the report (accounts, keys, campaigns)
/// equal. A snapshot taken under other thresholds is refused and leaves
/// the state as it was.
#[test]
fn a_detector_restored_from_a_snapshot_goes_on_as_if_never_stopped() {
    let mut obs = observed();
    obs.sort_by_key(|o| o.ts_ms);
    let half = obs.len() / 2;
    let link = distillguard_link::Config::default();
    let start = |t: Option<distillguard_detect::engine::Thresholds>| {
        Detector::start(
            t,
            link,
            obs.len() + 16,
            None,
            Known::default(),
            Forgetting::default(),
            None,
        )
    };
    let feed = |d: &Detector, part: &[Observed]| {
        for o in part {
            d.submit(Arc::new(o.clone()));
        }
        assert!(d.score_and_wait(Vec::new(), Duration::from_secs(120)));
    };
    let whole = start(None);
    feed(&whole, &obs[..half]);
    let snap = whole.snapshot(Duration::from_secs(60)).expect("a snapshot");
    assert!(snap.len() > 10_000, "{} bytes", snap.len());
    feed(&whole, &obs[half..]);

    let resumed = start(None);
    resumed
        .restore(snap.clone(), Duration::from_secs(60))
        .unwrap();
    feed(&resumed, &obs[half..]);
    let (a, b) = (whole.states(), resumed.states());
    assert_eq!(a.len(), b.len());
    assert_eq!(a, b);
    let report = |d: &Detector| {
        let mut r = d.report(Duration::from_secs(60)).unwrap();
        r.stats.clear();
        serde_json::to_string(&r).unwrap()
    };
    assert_eq!(report(&whole), report(&resumed));
    assert!(a.iter().any(|(_, s)| s.verdict.is_flagged()));

    // Other thresholds: refused, nothing changed.
    let w = Weights::embedded();
    let mut other = w.thresholds;
    other.monitor = 0.1;
    let strict = start(Some(other));
    assert_eq!(
        strict.restore(snap, Duration::from_secs(60)),
        Err(distillguard_gateway::detector::SnapshotError::Mismatch)
    );
    assert!(strict.states().is_empty());
}

/// Snapshots are read back field by field with no field names: a change to
/// the layout of the detector's state (a field added, removed or
/// retyped anywhere in the engine, the key profiles, the sketches or the
/// linker) would misread old snapshots. The encoded length of a small
/// fixed state is pinned here; when it moves, bump `SNAPSHOT_VERSION` in
/// `detector.rs` (old snapshots are then refused and workers rebuild) and
/// update the length. (Map order varies between processes; the length
/// does not.)
#[test]
fn the_snapshot_layout_is_pinned_to_its_version() {
    let obs = observed();
    let d = Detector::start(
        None,
        distillguard_link::Config::default(),
        1024,
        None,
        Known::default(),
        Forgetting::default(),
        None,
    );
    for o in obs.iter().take(500) {
        d.submit(Arc::new(o.clone()));
    }
    assert!(d.score_and_wait(Vec::new(), Duration::from_secs(60)));
    let n = d.snapshot(Duration::from_secs(60)).unwrap().len();
    assert_eq!(
        (distillguard_gateway::detector::SNAPSHOT_VERSION, n),
        (1, 15_067_239),
        "the detector's state changed its encoding: bump SNAPSHOT_VERSION and pin the new length"
    );
}
