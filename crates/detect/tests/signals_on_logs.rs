//! The per-request signals on whole logs: a simulated world and a foreign,
//! labelled log (Glasswally's), so that nothing is tuned to one source.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap};

use distillguard_core::progress::NoProgress;
use distillguard_core::{Event, EventReader, Label, RecordReader, TruthRecord};
use distillguard_detect::signals::request::{Text, capability, elicitation};

/// (requests, eliciting, high-value capability) per group.
type Rates = BTreeMap<String, (u64, u64, u64)>;

fn rates(events: &[Event], label: &HashMap<String, (Label, Option<String>)>) -> Rates {
    let mut out = Rates::new();
    for e in events {
        let (l, c) = label
            .get(&e.account_id)
            .cloned()
            .unwrap_or((Label::Benign, None));
        let group = match l {
            Label::Attack => format!("attack {}", c.unwrap_or_default()),
            Label::Benign => "benign".to_string(),
        };
        let user = Text::new(&e.request.last_user_text);
        let sys = e.request.system_prompt.as_deref().map(Text::new);
        let r = out.entry(group).or_default();
        r.0 += 1;
        r.1 += elicitation::detect(&user, sys.as_ref()).is_some() as u64;
        r.2 += capability::classify(e, &user).high_value() as u64;
    }
    out
}

fn print_rates(r: &Rates) {
    for (g, (n, el, hv)) in r {
        eprintln!(
            "{g:<28} {n:>7}  elicit {:>5.1}%  high-value {:>5.1}%",
            pct(*el, *n),
            pct(*hv, *n)
        );
    }
}

fn pct(a: u64, n: u64) -> f64 {
    100.0 * a as f64 / n.max(1) as f64
}

/// Simulates `small` (embedded corpus) with `seed`: the directory, its events and truth.
fn simulate_small(seed: u64) -> (std::path::PathBuf, Vec<Event>, Vec<TruthRecord>) {
    let dir = std::env::temp_dir().join(format!("dg-detect-{seed}-{}", std::process::id()));
    let scenario = distillguard_simulator::Scenario::load("small").unwrap();
    let corpus = distillguard_simulator::Corpus::embedded().unwrap();
    distillguard_simulator::simulate(&scenario, seed, &corpus, &dir, &NoProgress).unwrap();
    let mut r = EventReader::open(&dir.join("events.jsonl.gz")).unwrap();
    let mut events = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        events.push(e.unwrap());
    }
    let (truth, _) = RecordReader::<TruthRecord>::open(&dir.join("truth.jsonl"))
        .unwrap()
        .read_all(true)
        .unwrap();
    (dir, events, truth)
}

#[test]
fn simulated_world() {
    let (dir, events, truth) = simulate_small(21);
    let label = truth
        .into_iter()
        .map(|t| (t.account_id, (t.label, t.campaign)))
        .collect();
    let r = rates(&events, &label);
    print_rates(&r);
    std::fs::remove_dir_all(&dir).unwrap();
    let (bn, bel, bhv) = r["benign"];
    // Honest traffic elicits now and then (people, the evaluation harness).
    assert!(pct(bel, bn) < 15.0, "benign elicitation {}", pct(bel, bn));
    for (g, (n, el, hv)) in r.iter().filter(|(g, _)| g.starts_with("attack")) {
        assert!(
            pct(*el, *n) > 3.0 * pct(bel, bn),
            "{g}: elicitation does not separate"
        );
        if !g.contains("reseller") {
            assert!(
                pct(*hv, *n) > pct(bhv, bn) + 25.0,
                "{g}: capability does not separate"
            );
        }
    }
}

#[test]
fn foreign_labelled_log() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/external/glasswally-labeled_5k.jsonl");
    if !path.exists() {
        // CI always has ../shared; elsewhere the file may be absent.
        assert!(
            std::env::var_os("CI").is_none(),
            "{} missing under CI",
            path.display()
        );
        eprintln!("skipped: {} not present", path.display());
        return;
    }
    use distillguard_core::import::glasswally::{Record, truth_of};
    let (records, bad) = RecordReader::<Record>::open(&path)
        .unwrap()
        .read_all(false)
        .unwrap();
    assert!(bad.is_empty());
    let events: Vec<Event> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            distillguard_core::parse_event_line(&r.to_event_line(i as u64).unwrap()).unwrap()
        })
        .collect();
    let label = truth_of(records.iter())
        .into_iter()
        .map(|t| (t.account_id, (t.label, t.campaign)))
        .collect();
    let r = rates(&events, &label);
    print_rates(&r);
    // A foreign idea of attacks: elicitation still separates (their benign
    // prompts never ask for reasoning; their campaigns mostly do).
    let (bn, bel, _) = r["benign"];
    assert!(pct(bel, bn) < 2.0, "{}", pct(bel, bn));
    assert_eq!(r.keys().filter(|g| g.starts_with("attack")).count(), 5);
    for (g, (n, el, _)) in r.iter().filter(|(g, _)| g.starts_with("attack")) {
        assert!(pct(*el, *n) > 60.0, "{g}: {}", pct(*el, *n));
    }
}

#[test]
fn account_fingerprints_on_a_simulated_world() {
    use distillguard_detect::engine::{Engine, FEATURES, Weights, pre, time_order};
    let (dir, events, truth) = simulate_small(22);
    let (models, _) =
        RecordReader::<distillguard_core::ModelRelease>::open(&dir.join("models.jsonl"))
            .unwrap()
            .read_all(true)
            .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let label: HashMap<String, Option<String>> = truth
        .into_iter()
        .map(|t| (t.account_id, t.campaign))
        .collect();
    let w = Weights::embedded();
    let mut engine = Engine::new(&w, w.thresholds, &models, HashMap::new());
    let pres: Vec<_> = events.iter().map(pre).collect();
    let mut final_x: HashMap<String, (u32, Vec<f64>)> = HashMap::new();
    for k in time_order(&pres) {
        let p = &pres[k as usize];
        let idx = engine.process(p);
        final_x.insert(
            p.account_id.clone(),
            (engine.requests_of(idx), engine.feature_vector(idx).to_vec()),
        );
    }
    // Median of a feature over the accounts of a group with ≥ 8 requests.
    let median = |group: Option<&str>, name: &str| -> f64 {
        let f = FEATURES.iter().position(|n| *n == name).unwrap();
        let mut v: Vec<f64> = final_x
            .iter()
            .filter(|(a, (n, _))| label[*a].as_deref() == group && *n >= 8)
            .map(|(_, (_, x))| x[f])
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    for name in [
        "elicitation",
        "template_concentration",
        "capability_concentration",
        "uniform_params",
    ] {
        let benign = median(None, name);
        eprint!("{name:<26} benign {benign:.2}");
        for c in [
            "reasoning-harvest",
            "agentic-multi",
            "coding-pivot",
            "low-and-slow",
        ] {
            eprint!("  {c} {:.2}", median(Some(c), name));
        }
        eprintln!();
    }
    // Each of these campaigns stands out from the median honest account on
    // elicitation and on template concentration.
    for c in [
        "reasoning-harvest",
        "agentic-multi",
        "coding-pivot",
        "low-and-slow",
    ] {
        assert!(
            median(Some(c), "elicitation") > median(None, "elicitation") + 0.3,
            "{c}"
        );
        assert!(
            median(Some(c), "template_concentration")
                > median(None, "template_concentration") + 0.2,
            "{c}"
        );
    }
}
