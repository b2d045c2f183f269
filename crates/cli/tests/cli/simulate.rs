//! `simulate` and `scenarios`: the same seed gives the same bytes, logs are
//! valid and labelled, every scenario behaviour is present, bad scenarios
//! are named.

use distillguard_core::{RecordReader, TruthRecord};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::support::*;

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let d = Dir::new("det");
    let a = simulate_small(&d, "a", 7);
    let b = simulate_small(&d, "b", 7);
    let c = simulate_small(&d, "c", 8);
    for f in [
        "events.jsonl.gz",
        "accounts.jsonl",
        "truth.jsonl",
        "models.jsonl",
    ] {
        let fa = std::fs::read(a.join(f)).unwrap();
        assert_eq!(
            fa,
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs for the same seed"
        );
        if f != "models.jsonl" {
            assert_ne!(
                fa,
                std::fs::read(c.join(f)).unwrap(),
                "{f} identical for another seed"
            );
        }
    }
}

#[test]
fn simulated_log_is_valid_ordered_and_labelled() {
    let d = Dir::new("valid");
    let out = simulate_small(&d, "s", 3);
    let events = read_events(&out.join("events.jsonl.gz"));
    assert!(events.len() > 15_000, "{}", events.len());
    assert!(
        events.windows(2).all(|w| w[0].ts <= w[1].ts),
        "log is not in time order"
    );
    let t = truth(&out);
    let labels: HashMap<&str, &TruthRecord> =
        t.iter().map(|r| (r.account_id.as_str(), r)).collect();
    // Every event's account is labelled; both dialects and all campaigns occur.
    assert!(
        events
            .iter()
            .all(|e| labels.contains_key(e.account_id.as_str()))
    );
    // Chat Completions, Messages and (for a share of OpenAI keys) Responses.
    let dialects: BTreeSet<_> = events.iter().map(|e| format!("{:?}", e.dialect)).collect();
    assert_eq!(dialects.len(), 3, "{dialects:?}");
    let campaigns: BTreeSet<&str> = t.iter().filter_map(|r| r.campaign.as_deref()).collect();
    assert_eq!(
        campaigns,
        [
            "agentic-multi",
            "coding-pivot",
            "hydra-reseller",
            "low-and-slow",
            "reasoning-harvest"
        ]
        .into_iter()
        .collect()
    );
    // Ids reveal nothing: no campaign name or label in any account id.
    assert!(
        t.iter()
            .all(|r| r.account_id.starts_with("acct_") && r.account_id.len() == 21)
    );
    // Accounts file covers every account, with the fields analyze reads.
    let (accts, bad) =
        RecordReader::<distillguard_core::AccountRecord>::open(&out.join("accounts.jsonl"))
            .unwrap()
            .read_all(true)
            .unwrap();
    assert!(bad.is_empty());
    assert_eq!(accts.len(), t.len());
    assert!(
        accts
            .iter()
            .all(|a| a.created_at.is_some() && a.tier.is_some() && a.signup_program.is_some())
    );
    // `check` agrees: nothing malformed.
    let report = ok(&[
        "check",
        out.join("events.jsonl.gz").to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v[0]["malformed"], 0);
    assert_eq!(v[0]["events"], events.len() as u64);
    assert_eq!(v[0]["out_of_order"], 0);
}

#[test]
fn scenario_behaviours_are_present() {
    let d = Dir::new("behave");
    let out = simulate_small(&d, "s", 5);
    let events = read_events(&out.join("events.jsonl.gz"));
    let t = truth(&out);
    let camp: HashMap<&str, Option<&str>> = t
        .iter()
        .map(|r| (r.account_id.as_str(), r.campaign.as_deref()))
        .collect();
    let models: Vec<distillguard_core::ModelRelease> =
        RecordReader::open(&out.join("models.jsonl"))
            .unwrap()
            .read_all(true)
            .unwrap()
            .0;
    let release = models
        .iter()
        .find(|m| m.model == "atlas-3")
        .unwrap()
        .released_at;
    let camp_ref = &camp;
    let of = |name: &'static str| {
        events
            .iter()
            .filter(move |e| camp_ref[e.account_id.as_str()] == Some(name))
    };

    // (c) pivot: about half the campaign's traffic on the new model within a day of release.
    let after: Vec<_> = of("coding-pivot")
        .filter(|e| e.ts.0 > release.0 + 86_400_000)
        .collect();
    let on_new = after
        .iter()
        .filter(|e| e.model.as_deref() == Some("atlas-3"))
        .count();
    let share = on_new as f64 / after.len() as f64;
    assert!((0.4..0.6).contains(&share), "pivot share {share}");
    assert!(
        events
            .iter()
            .all(|e| e.model.as_deref() != Some("atlas-3") || e.ts >= release)
    );

    // (a) reasoning harvest: elicitation and shared payment methods.
    let elicits = of("reasoning-harvest")
        .filter(|e| {
            let s = e.request.last_user_text.to_lowercase();
            s.contains("step")
                || s.contains("reason")
                || s.contains("chain of thought")
                || s.contains("worked example")
                || s.contains("一步")
                || s.contains("推理")
                || s.contains("rubric")
                || s.contains("score")
        })
        .count();
    assert!(
        elicits * 10 > of("reasoning-harvest").count() * 7,
        "{elicits}"
    );
    let accts: Vec<distillguard_core::AccountRecord> =
        RecordReader::open(&out.join("accounts.jsonl"))
            .unwrap()
            .read_all(true)
            .unwrap()
            .0;
    let pays: BTreeSet<_> = accts
        .iter()
        .filter(|a| camp[a.account_id.as_str()] == Some("reasoning-harvest"))
        .map(|a| a.payment_fingerprint.clone())
        .collect();
    assert!(pays.len() <= 2, "{pays:?}");

    // (b) agentic: tools, images and computer use appear.
    assert!(of("agentic-multi").any(|e| !e.request.tools.is_empty()));
    assert!(of("agentic-multi").any(|e| e.request.images > 0));
    assert!(of("agentic-multi").any(|e| e.request.tools.iter().any(|t| t.starts_with("computer"))));

    // (d) reseller accounts carry both distillation and real conversations.
    let reseller_multi_turn = of("hydra-reseller").filter(|e| e.request.depth > 1).count();
    assert!(reseller_multi_turn > 50, "{reseller_multi_turn}");

    // (e) low-and-slow: every account small.
    let mut per: BTreeMap<&str, u32> = BTreeMap::new();
    for e in of("low-and-slow") {
        *per.entry(e.account_id.as_str()).or_default() += 1;
    }
    assert!(per.values().all(|&n| n < 60), "{:?}", per.values().max());

    // Humans follow their local day: requests at 02:00–05:00 local time are
    // a small fraction of those at 10:00–13:00 (local time from the account's
    // country; humans are the accounts with a human-scale volume).
    let offsets: HashMap<&str, f64> = [
        ("US", -6.0),
        ("IN", 5.5),
        ("GB", 0.0),
        ("DE", 1.0),
        ("BR", -3.0),
        ("CA", -5.0),
        ("FR", 1.0),
        ("JP", 9.0),
        ("KR", 9.0),
        ("AU", 10.0),
    ]
    .into_iter()
    .collect();
    let country: HashMap<&str, &str> = accts
        .iter()
        .filter_map(|a| Some((a.account_id.as_str(), a.country.as_deref()?)))
        .collect();
    let mut volume: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *volume.entry(e.account_id.as_str()).or_default() += 1;
    }
    let humans: Vec<_> = events
        .iter()
        .filter(|e| camp[e.account_id.as_str()].is_none() && volume[e.account_id.as_str()] < 300)
        .collect();
    assert!(humans.len() > 2_000, "{}", humans.len());
    let (mut night, mut day) = (0, 0);
    for e in &humans {
        let Some(off) = country
            .get(e.account_id.as_str())
            .and_then(|c| offsets.get(c))
        else {
            continue;
        };
        let local_h = ((e.ts.0 as f64 / 3.6e6 + off).rem_euclid(24.0)) as u32;
        match local_h {
            2..=4 => night += 1,
            10..=12 => day += 1,
            _ => {}
        }
    }
    eprintln!("humans: {} events, day {day}, night {night}", humans.len());
    assert!(day > 6 * night, "day {day} night {night}");
    let multi = humans
        .iter()
        .filter(|e| e.request.assistant_turns > 0)
        .count();
    assert!(
        multi * 5 > humans.len(),
        "real follow-ups are common among humans"
    );

    // Campaign prompts keep structure but are not literal copies of each other
    // (the reseller is left out: its accounts also forward real end-user chats).
    let attack_texts: Vec<&str> = events
        .iter()
        .filter(|e| {
            matches!(camp[e.account_id.as_str()], Some(c) if c != "hydra-reseller")
                && e.request.depth == 1
                && e.request.last_user_text.len() >= 60
        })
        .map(|e| e.request.last_user_text.as_str())
        .collect();
    let distinct: BTreeSet<&str> = attack_texts.iter().copied().collect();
    assert!(
        distinct.len() * 100 > attack_texts.len() * 97,
        "{} distinct of {}",
        distinct.len(),
        attack_texts.len()
    );
}

#[test]
fn bad_scenarios_and_paths_fail_with_the_place_named() {
    let d = Dir::new("scen");
    let text = ok(&["scenarios", "small"]);
    let custom = d.path("mine.toml");
    write(
        &custom,
        &text.replacen("paraphrase = 0.8", "paraphrase = 1.8", 1),
    );
    let out = dg(&[
        "simulate",
        "--scenario",
        custom.to_str().unwrap(),
        "--out",
        d.path("o").to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("campaigns[4] (low-and-slow).paraphrase") && err.contains("[0, 1]"),
        "{err}"
    );

    write(
        &custom,
        &text.replacen("[benign]", "[benign]\nacounts = 3", 1),
    );
    let err = String::from_utf8_lossy(
        &dg(&[
            "simulate",
            "--scenario",
            custom.to_str().unwrap(),
            "--out",
            d.path("o").to_str().unwrap(),
            "--quiet",
        ])
        .stderr,
    )
    .to_string();
    assert!(
        err.contains("acounts") && err.contains("mine.toml"),
        "{err}"
    );

    let err = String::from_utf8_lossy(&dg(&["check", "/nonexistent/log.jsonl"]).stderr).to_string();
    assert!(err.contains("cannot open /nonexistent/log.jsonl"), "{err}");

    // A custom scenario runs: one campaign, no benign population.
    write(
        &custom,
        "name = \"tiny\"\nstart = \"2026-03-01T00:00:00Z\"\ndays = 1.0\ncorpus = \"embedded\"\n[[models]]\nname = \"m\"\n[[campaigns]]\nname = \"only\"\naccounts = 3\nrequests = 30\ncapabilities = { chat = 1.0 }\n",
    );
    let o = d.path("tiny");
    ok(&[
        "simulate",
        "--scenario",
        custom.to_str().unwrap(),
        "--out",
        o.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(read_events(&o.join("events.jsonl.gz")).len(), 30);
}
