/*!
Labelled worlds for fitting and judging the score: many worlds, not one.

A [`LabelledWorld`] is a log's per-request records in time order with the
truth about every account (honest, or which campaign and family). Three
things are done with worlds:

- [`samples`]: each account's feature vector at checkpoints of its life,
  labelled, for the fit. Features do not depend on the weights, so the
  samples of a world are computed once per family left out.
- [`judge`]: the fold with given weights and thresholds: which accounts are
  flagged, when, and how much of each campaign was served before its first
  flag; honest accounts' highest risks, for the thresholds.
- [`weigh`]: sample weights that give every campaign of every world the
  same say, and honest accounts of all worlds together the same say as all
  campaigns together. Without it, one campaign of 2,000 small accounts
  would decide the fit.

A family can be left out of both ([`Leave`]), which is how the
leave-one-family-out table is computed: fit on worlds without the family,
judge on worlds with it.
*/

use std::collections::HashMap;

use distillguard_core::{AccountInfo, ModelRelease};
use serde::Serialize;

use distillguard_detect::engine::{self as engine, Engine, NF, Thresholds, Weights};
use distillguard_detect::fit::{self as fit, CHECKPOINTS, Sample};

use crate::{Pipeline, Record};

/// What the truth says of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truth {
    pub attack: bool,
    /// Index into [`LabelledWorld::campaigns`].
    pub campaign: Option<u16>,
    /// Index into [`LabelledWorld::kinds`] (what kind of account).
    pub kind: u16,
}

/// A log's records in time order and its truth.
#[derive(Debug, Default)]
pub struct LabelledWorld {
    pub name: String,
    /// Records in the engine's time order.
    pub records: Vec<Record>,
    pub truth: HashMap<String, Truth>,
    /// (campaign, family) by index.
    pub campaigns: Vec<(String, String)>,
    /// Kinds of accounts by index (0: unknown).
    pub kinds: Vec<String>,
    /// Account records (may be empty: a log without them).
    pub accounts: HashMap<String, AccountInfo>,
    pub models: Vec<ModelRelease>,
    /// API keys the truth names as harvesting (empty: it names none).
    pub bad_keys: std::collections::HashSet<String>,
}

/// A family left out of a fold (its accounts' requests are skipped).
#[derive(Debug, Clone, Copy)]
pub struct Leave<'a>(pub Option<&'a str>);

impl LabelledWorld {
    /// The world with the truth's harvesting keys, so that judging it
    /// scores keys as well as accounts.
    pub fn with_bad_keys(mut self, keys: impl IntoIterator<Item = String>) -> LabelledWorld {
        self.bad_keys.extend(keys);
        self
    }

    /// Builds a world from records (any order) and truth rows
    /// `(account, attack, campaign, family, kind)`.
    pub fn new(
        name: String,
        mut records: Vec<Record>,
        truth: impl IntoIterator<Item = (String, bool, Option<String>, Option<String>, Option<String>)>,
        accounts: HashMap<String, AccountInfo>,
        models: Vec<ModelRelease>,
    ) -> LabelledWorld {
        let mut campaigns: Vec<(String, String)> = Vec::new();
        let mut index: HashMap<String, u16> = HashMap::new();
        let mut t = HashMap::new();
        let mut kinds: Vec<String> = vec!["unknown".into()];
        for (account, attack, campaign, family, kind) in truth {
            let kind = match kind {
                Some(k) => match kinds.iter().position(|x| *x == k) {
                    Some(i) => i as u16,
                    None => {
                        kinds.push(k);
                        (kinds.len() - 1) as u16
                    }
                },
                None => 0,
            };
            let c = campaign.map(|c| {
                let n = index.len() as u16;
                *index.entry(c.clone()).or_insert_with(|| {
                    campaigns.push((c.clone(), family.clone().unwrap_or(c)));
                    n
                })
            });
            t.insert(
                account,
                Truth {
                    attack,
                    campaign: c,
                    kind,
                },
            );
        }
        let mut keys: Vec<(i64, u64, u32)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.pre.ts.0, r.pre.account_key, i as u32))
            .collect();
        keys.sort_unstable();
        let order: Vec<u32> = keys.into_iter().map(|k| k.2).collect();
        let mut slots: Vec<Option<Record>> = records.drain(..).map(Some).collect();
        let records = order
            .into_iter()
            .filter_map(|k| slots.get_mut(k as usize).and_then(Option::take))
            .collect();
        LabelledWorld {
            name,
            bad_keys: Default::default(),
            records,
            truth: t,
            campaigns,
            kinds,
            accounts,
            models,
        }
    }

    fn skipped(&self, leave: Leave, account: &str) -> bool {
        let Some(f) = leave.0 else { return false };
        self.truth
            .get(account)
            .and_then(|t| t.campaign)
            .is_some_and(|c| self.campaigns[c as usize].1 == f)
    }

    /// The families of this world's campaigns.
    pub fn families(&self) -> Vec<&str> {
        let mut f: Vec<&str> = self.campaigns.iter().map(|c| c.1.as_str()).collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    fn engine(&self, weights: &Weights, thresholds: Thresholds) -> Engine {
        Engine::new(weights, thresholds, &self.models, self.accounts.clone())
    }
}

/// A sample with where it came from (for [`weigh`]).
#[derive(Debug, Clone, Copy)]
pub struct Tagged {
    pub sample: Sample,
    /// The campaign (world, campaign index) of an attack account.
    pub campaign: Option<(u32, u16)>,
    /// The account (world, engine index).
    pub account: (u32, u32),
}

/// Each account's features at [`CHECKPOINTS`] and at its end. `world` is
/// the world's number in the fit (it tags campaigns).
pub fn samples(w: &LabelledWorld, world: u32, leave: Leave) -> Vec<Tagged> {
    let zero = Weights {
        provenance: String::new(),
        features: engine::FEATURES.iter().map(|f| f.to_string()).collect(),
        model: distillguard_detect::trees::Forest::default(),
        thresholds: Thresholds::default(),
        calibration: None,
    };
    let mut engine = w.engine(&zero, Thresholds::default());
    let mut out = Vec::new();
    let mut last: Vec<Option<Tagged>> = Vec::new();
    for r in &w.records {
        let p = &r.pre;
        if w.skipped(leave, &p.account_id) {
            continue;
        }
        let idx = engine.process(p) as usize;
        let t = w.truth.get(&p.account_id).copied().unwrap_or(Truth {
            attack: false,
            campaign: None,
            kind: 0,
        });
        let tagged = Tagged {
            sample: Sample {
                x: engine.feature_vector(idx as u32),
                attack: t.attack,
                weight: 1.0,
            },
            campaign: t.campaign.map(|c| (world, c)),
            account: (world, idx as u32),
        };
        if CHECKPOINTS.contains(&engine.requests_of(idx as u32)) {
            out.push(tagged);
        }
        if last.len() <= idx {
            last.resize(idx + 1, None);
        }
        last[idx] = Some(tagged);
    }
    out.extend(last.into_iter().flatten());
    out
}

/// Weights so that every campaign (of every world) has the same total,
/// and all honest samples together as much as all campaigns together.
pub fn weigh(tagged: &[Tagged]) -> Vec<Sample> {
    weigh_boosted(tagged, &HashMap::new())
}

/// [`weigh`], with some honest accounts' samples counting `boost` times
/// (the honest accounts that scored highest: the thresholds are set by
/// them, so the fit must separate attacks from them first).
pub fn weigh_boosted(tagged: &[Tagged], boost: &HashMap<(u32, u32), f64>) -> Vec<Sample> {
    let mut per: HashMap<(u32, u16), f64> = HashMap::new();
    let mut honest = 0.0f64;
    for t in tagged {
        match (t.sample.attack, t.campaign) {
            (true, Some(c)) => *per.entry(c).or_default() += 1.0,
            (true, None) => *per.entry((u32::MAX, 0)).or_default() += 1.0,
            _ => honest += boost.get(&t.account).copied().unwrap_or(1.0),
        }
    }
    let campaigns = per.len().max(1) as f64;
    tagged
        .iter()
        .map(|t| {
            let w = match (t.sample.attack, t.campaign) {
                (true, c) => 1.0 / (campaigns * per[&c.unwrap_or((u32::MAX, 0))]),
                _ => boost.get(&t.account).copied().unwrap_or(1.0) / honest.max(1.0),
            };
            Sample {
                weight: w,
                ..t.sample
            }
        })
        .collect()
}

/// How one world fared under given weights and thresholds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Judged {
    /// Honest accounts' highest risk once they had `min_requests`.
    pub honest_max: Vec<f64>,
    /// The same, with each account's engine index.
    #[serde(skip)]
    pub honest_risks: Vec<(u32, f64)>,
    pub honest_flagged: u64,
    pub honest: u64,
    /// Honest accounts placed in a campaign.
    pub honest_in_campaigns: u64,
    /// Honest accounts that sent most of their requests in batches, and of
    /// those, flagged.
    pub honest_batch: u64,
    pub honest_batch_flagged: u64,
    /// Per campaign: (campaign, family, accounts, flagged accounts,
    /// requests, requests served up to and including the first flag).
    pub campaigns: Vec<CampaignJudged>,
    /// Linked groups of two or more accounts.
    pub groups: Vec<GroupJudged>,
}

/// One linked group at the end of a fold.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupJudged {
    pub world: String,
    pub accounts: u64,
    pub honest: u64,
    pub evidence: f64,
    pub confirmed: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CampaignJudged {
    pub world: String,
    pub campaign: String,
    pub family: String,
    pub accounts: u64,
    pub flagged: u64,
    pub requests: u64,
    /// Requests of the campaign's accounts up to its first flag (all of
    /// them when never flagged).
    pub served_before_flag: u64,
    pub first_flagged: bool,
    /// Accounts that sent most of their requests through the Responses
    /// API, and of those, flagged (the same harvest through another API
    /// should be caught alike).
    pub responses_accounts: u64,
    pub responses_flagged: u64,
    /// Accounts that sent most of their requests in batches, and of those,
    /// flagged.
    pub batch_accounts: u64,
    pub batch_flagged: u64,
    /// The campaign's harvesting keys (as the truth names them) that sent
    /// requests, and of those, flagged; its accounts' other keys (a
    /// reseller's honest customers), and of those, flagged.
    pub bad_keys: u64,
    pub bad_keys_flagged: u64,
    pub honest_keys: u64,
    pub honest_keys_flagged: u64,
    /// The share of the campaign's accounts in the reported campaign that
    /// holds most of them (0: none linked), and that reported campaign's
    /// share of attack accounts (1 when none).
    pub completeness: f64,
    pub purity: f64,
}

/// Folds a world through the pipeline with `weights` and `thresholds`
/// (leaving out a family); `link`: campaign linking's settings (off:
/// detection alone).
pub fn judge(
    w: &LabelledWorld,
    weights: &Weights,
    thresholds: Thresholds,
    link: distillguard_link::Config,
    leave: Leave,
) -> Judged {
    let mut pipe = Pipeline::new(
        w.engine(weights, thresholds),
        link,
        &w.accounts,
        &distillguard_stix::Intel::default(),
    );
    let n = w.campaigns.len();
    let mut requests = vec![0u64; n];
    let mut served = vec![0u64; n];
    let mut first = vec![false; n];
    // Requests per account: (through the Responses API, in batches, all).
    let mut apis: HashMap<&str, (u32, u32, u32)> = HashMap::new();
    // The keys each campaign's accounts used (key, campaign).
    let mut campaign_keys: std::collections::HashSet<(&str, u16)> = Default::default();
    for r in &w.records {
        if w.skipped(leave, &r.pre.account_id) {
            continue;
        }
        if !w.bad_keys.is_empty()
            && let Some(k) = r.pre.key_id.as_deref()
            && let Some(c) = w
                .truth
                .get(&r.pre.account_id)
                .filter(|t| t.attack)
                .and_then(|t| t.campaign)
        {
            campaign_keys.insert((k, c));
        }
        let a = apis.entry(r.pre.account_id.as_str()).or_default();
        a.0 += u32::from(r.dialect == distillguard_core::Dialect::Responses);
        a.1 += u32::from(r.batch);
        a.2 += 1;
        let out = pipe.process(r);
        if let Some(c) = w.truth.get(&r.pre.account_id).and_then(|t| t.campaign) {
            let c = c as usize;
            requests[c] += 1;
            if !first[c] {
                served[c] += 1;
                if out.verdict.is_flagged() {
                    first[c] = true;
                }
            }
        }
    }
    let mut out = Judged::default();
    {
        let engine = pipe.engine();
        for (i, name) in engine.names().iter().enumerate() {
            let t = w.truth.get(name).copied().unwrap_or(Truth {
                attack: false,
                campaign: None,
                kind: 0,
            });
            if !t.attack && engine.requests_of(i as u32) >= thresholds.min_requests {
                out.honest_max.push(engine.max_risk_of(i as u32));
                out.honest_risks
                    .push((i as u32, engine.max_risk_of(i as u32)));
            }
        }
    }
    if pipe.linking() {
        for (members, evidence, confirmed) in pipe.groups() {
            let honest = members
                .iter()
                .filter(|m| !w.truth.get(*m).is_some_and(|t| t.attack))
                .count() as u64;
            out.groups.push(GroupJudged {
                world: w.name.clone(),
                accounts: members.len() as u64,
                honest,
                evidence,
                confirmed,
            });
        }
    }
    // Verdicts as the report gives them (campaign membership applied).
    let report = pipe.finish(true);
    let flagged_keys: std::collections::HashSet<&str> = report
        .keys
        .iter()
        .filter(|k| k.verdict.is_flagged())
        .map(|k| k.key_id.as_str())
        .collect();
    // (bad, bad flagged, other, other flagged) per campaign.
    let mut keys = vec![(0u64, 0u64, 0u64, 0u64); n];
    for (k, c) in &campaign_keys {
        let e = &mut keys[*c as usize];
        let f = u64::from(flagged_keys.contains(k));
        if w.bad_keys.contains(*k) {
            e.0 += 1;
            e.1 += f;
        } else {
            e.2 += 1;
            e.3 += f;
        }
    }
    // Reported campaigns: attack and all members; members per (true
    // campaign, reported campaign).
    let mut reported: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut placed: HashMap<(u16, &str), u64> = HashMap::new();
    for a in &report.accounts {
        let Some(id) = a.campaign_id.as_deref() else {
            continue;
        };
        let t = w.truth.get(&a.account_id);
        let e = reported.entry(id).or_default();
        e.0 += u64::from(t.is_some_and(|t| t.attack));
        e.1 += 1;
        if let Some(c) = t.filter(|t| t.attack).and_then(|t| t.campaign) {
            *placed.entry((c, id)).or_default() += 1;
        }
    }
    let mut best: Vec<Option<(u64, &str)>> = vec![None; n];
    for ((c, id), m) in &placed {
        let b = &mut best[*c as usize];
        // Ties go to the lower id, so the result does not depend on
        // hash order.
        if b.is_none_or(|(bm, bid)| *m > bm || (*m == bm && *id < bid)) {
            *b = Some((*m, id));
        }
    }
    let mut accounts = vec![0u64; n];
    let mut flagged = vec![0u64; n];
    let mut resp = vec![(0u64, 0u64); n];
    let mut batch = vec![(0u64, 0u64); n];
    for a in &report.accounts {
        let Some(t) = w.truth.get(&a.account_id) else {
            continue;
        };
        let f = a.verdict.is_flagged();
        let (r, b, all) = apis.get(a.account_id.as_str()).copied().unwrap_or_default();
        match t.campaign {
            Some(c) if t.attack => {
                accounts[c as usize] += 1;
                flagged[c as usize] += f as u64;
                if 2 * r > all {
                    resp[c as usize].0 += 1;
                    resp[c as usize].1 += f as u64;
                }
                if 2 * b > all {
                    batch[c as usize].0 += 1;
                    batch[c as usize].1 += f as u64;
                }
            }
            _ if !t.attack => {
                out.honest += 1;
                out.honest_flagged += f as u64;
                if 2 * b > all {
                    out.honest_batch += 1;
                    out.honest_batch_flagged += f as u64;
                }
                out.honest_in_campaigns += a.campaign_id.is_some() as u64;
            }
            _ => {}
        }
    }
    for (c, (name, family)) in w.campaigns.iter().enumerate() {
        if leave.0.is_some_and(|f| f == family) && accounts[c] == 0 {
            continue;
        }
        out.campaigns.push(CampaignJudged {
            world: w.name.clone(),
            campaign: name.clone(),
            family: family.clone(),
            accounts: accounts[c],
            flagged: flagged[c],
            requests: requests[c],
            served_before_flag: served[c],
            first_flagged: first[c],
            responses_accounts: resp[c].0,
            responses_flagged: resp[c].1,
            batch_accounts: batch[c].0,
            batch_flagged: batch[c].1,
            bad_keys: keys[c].0,
            bad_keys_flagged: keys[c].1,
            honest_keys: keys[c].2,
            honest_keys_flagged: keys[c].3,
            completeness: best[c].map_or(0.0, |(m, _)| m as f64 / accounts[c].max(1) as f64),
            purity: best[c]
                .and_then(|(_, id)| reported.get(id))
                .map_or(1.0, |(a, all)| *a as f64 / (*all).max(1) as f64),
        });
    }
    out
}

/// One account at the end of a fold, for reading what scored how.
#[derive(Debug, Clone, Serialize)]
pub struct AccountDetail {
    pub world: String,
    pub account: String,
    pub attack: bool,
    pub kind: String,
    pub family: Option<String>,
    pub requests: u32,
    pub max_risk: f64,
    pub flagged: bool,
    /// Features at the account's end, by name.
    pub features: std::collections::BTreeMap<String, f64>,
}

/// Every account of a world after a fold (for diagnostics and docs).
pub fn details(
    w: &LabelledWorld,
    weights: &Weights,
    thresholds: Thresholds,
    leave: Leave,
) -> Vec<AccountDetail> {
    let mut engine = w.engine(weights, thresholds);
    for r in &w.records {
        if !w.skipped(leave, &r.pre.account_id) {
            engine.process(&r.pre);
        }
    }
    engine
        .names()
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let t = w.truth.get(name).copied().unwrap_or(Truth {
                attack: false,
                campaign: None,
                kind: 0,
            });
            let x = engine.feature_vector(i as u32);
            AccountDetail {
                world: w.name.clone(),
                account: name.clone(),
                attack: t.attack,
                kind: w.kinds.get(t.kind as usize).cloned().unwrap_or_default(),
                family: t.campaign.map(|c| w.campaigns[c as usize].1.clone()),
                requests: engine.requests_of(i as u32),
                max_risk: engine.max_risk_of(i as u32),
                flagged: engine.is_flagged(i as u32),
                features: engine::FEATURES
                    .iter()
                    .zip(x.iter())
                    .map(|(n, v)| (n.to_string(), (v * 1e4).round() / 1e4))
                    .collect(),
            }
        })
        .collect()
}

/// Linking off: the account score alone (what thresholds are set on).
pub fn detection_alone() -> distillguard_link::Config {
    distillguard_link::Config {
        enabled: false,
        ..Default::default()
    }
}

/// How [`fit_worlds`] fits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct FitOpts {
    pub trees: distillguard_detect::trees::TrainOpts,
    /// Rounds of hard-negative reweighting.
    pub hard_negative_rounds: usize,
}

impl Default for FitOpts {
    fn default() -> Self {
        FitOpts {
            trees: distillguard_detect::trees::TrainOpts::default(),
            hard_negative_rounds: 1,
        }
    }
}

/// What a fit over worlds produced besides the weights.
#[derive(Debug, Clone, Serialize)]
pub struct FitSummary {
    pub samples: usize,
    pub campaigns: usize,
    pub honest_accounts: u64,
    pub honest_flagged: u64,
}

/// Fits weights on worlds (leaving out a family), then sets the thresholds
/// from the tail of the honest accounts' highest risks over all of them at
/// `budget` per honest account (throttle), a tenth of it (block) and a
/// hundred times it (monitor).
pub fn fit_worlds(
    worlds: &[LabelledWorld],
    leave: Leave,
    budget: f64,
    provenance: &str,
    opts: FitOpts,
) -> (Weights, FitSummary) {
    let tagged: Vec<Tagged> = std::thread::scope(|scope| {
        let handles: Vec<_> = worlds
            .iter()
            .enumerate()
            .map(|(i, w)| scope.spawn(move || samples(w, i as u32, leave)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let campaigns: std::collections::HashSet<(u32, u16)> =
        tagged.iter().filter_map(|t| t.campaign).collect();
    let draft = |boost: &HashMap<(u32, u32), f64>| -> (Weights, usize) {
        let weighted = weigh_boosted(&tagged, boost);
        let examples: Vec<distillguard_detect::trees::Example> = weighted
            .iter()
            .map(|s| distillguard_detect::trees::Example {
                x: &s.x,
                attack: s.attack,
                weight: s.weight * weighted.len() as f64 / 2.0,
            })
            .collect();
        let model = distillguard_detect::trees::train(&examples, NF, opts.trees);
        (
            Weights {
                provenance: provenance.to_string(),
                features: engine::FEATURES.iter().map(|f| f.to_string()).collect(),
                model,
                thresholds: Thresholds::default(),
                calibration: None,
            },
            weighted.len(),
        )
    };
    // Hard negatives: after each round, the honest accounts in the top
    // 0.2% of honest risks count twice as much in the next (up to eight
    // times). The thresholds are set by the top of the honest scores, not
    // by their average.
    // The honest accounts' risks under a draft, detection alone.
    let judge = |w: &Weights| judge_all(worlds, w, Thresholds::default(), detection_alone(), leave);
    let mut boost: HashMap<(u32, u32), f64> = HashMap::new();
    let (mut weights, mut n_samples) = draft(&boost);
    for _ in 0..opts.hard_negative_rounds {
        let judged = judge(&weights);
        let mut risks: Vec<(f64, (u32, u32))> = judged
            .iter()
            .enumerate()
            .flat_map(|(wi, j)| {
                j.honest_risks
                    .iter()
                    .map(move |(a, r)| (*r, (wi as u32, *a)))
            })
            .collect();
        risks.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top = (risks.len() / 500).max(1);
        for (_, acct) in risks.iter().take(top) {
            let b = boost.entry(*acct).or_insert(1.0);
            *b = (*b * 2.0).min(8.0);
        }
        (weights, n_samples) = draft(&boost);
    }
    let judged = judge(&weights);
    let honest_max: Vec<f64> = judged
        .iter()
        .flat_map(|j| j.honest_max.iter().copied())
        .collect();
    let tail = fit::fit_tail(&honest_max);
    // The tail's estimate, and never below the empirical quantile: a fit
    // that pushed its hardest negatives down can bend the tail's shape.
    let mut sorted = honest_max.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let empirical = |b: f64| {
        let k = (sorted.len() as f64 * b).floor() as usize;
        sorted.get(k).map_or(0.0, |r| (r + 1e-9).min(1.0))
    };
    let at = |b: f64| tail.threshold(b).max(empirical(b));
    let throttle = at(budget);
    let thresholds = Thresholds {
        monitor: round9(at(budget * 100.0).min(throttle)),
        throttle: round9(throttle),
        block: round9(at(budget / 10.0).max(throttle)),
        min_requests: Thresholds::default().min_requests,
    };
    let honest_flagged = honest_max
        .iter()
        .filter(|r| **r >= thresholds.throttle)
        .count() as u64;
    weights.thresholds = thresholds;
    weights.calibration = Some(engine::Calibration {
        budget,
        tail,
        honest_flagged,
    });
    let summary = FitSummary {
        samples: n_samples,
        campaigns: campaigns.len(),
        honest_accounts: judged.iter().map(|j| j.honest).sum(),
        honest_flagged,
    };
    (weights, summary)
}

/// Judges every world (two at a time).
pub fn judge_all(
    worlds: &[LabelledWorld],
    weights: &Weights,
    thresholds: Thresholds,
    link: distillguard_link::Config,
    leave: Leave,
) -> Vec<Judged> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = worlds
            .iter()
            .map(|w| scope.spawn(move || judge(w, weights, thresholds, link, leave)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::PerRequest;

    fn rec(ts_s: i64, account: &str, key: &str) -> Record {
        let intel = distillguard_stix::Intel::default();
        crate::record(
            &crate::tests::line(ts_s, account, key),
            &PerRequest {
                intel: &intel,
                link_keys: true,
            },
        )
    }

    /// A reseller ("ann", in campaign c) harvests on one key and serves a
    /// customer on another; "bob" is honest. Keys are counted per
    /// campaign: the harvesting key as bad, the customer's as the
    /// account's other key; bob's keys in neither.
    #[test]
    fn keys_are_judged_against_the_truth_s_harvesting_keys() {
        let mut records = Vec::new();
        for t in 0..8 {
            records.push(rec(t, "ann", &format!("ann_key_{}", t % 2)));
            records.push(rec(t, "bob", "bob_key"));
        }
        let truth = [
            (
                "ann".to_string(),
                true,
                Some("c".to_string()),
                Some("fam".to_string()),
                None,
            ),
            ("bob".to_string(), false, None, None, None),
        ];
        let world = LabelledWorld::new("w".into(), records, truth, HashMap::new(), Vec::new())
            .with_bad_keys(["ann_key_0".to_string()]);
        let w = Weights::embedded();
        let judge_with = |t: Thresholds| judge(&world, &w, t, Default::default(), Leave(None));
        // Everything flagged: both of ann's keys, one of each kind.
        let all = Thresholds {
            monitor: 0.0,
            throttle: 0.0,
            block: 0.0,
            min_requests: 1,
        };
        let j = judge_with(all);
        let c = &j.campaigns[0];
        assert_eq!(
            (
                c.bad_keys,
                c.bad_keys_flagged,
                c.honest_keys,
                c.honest_keys_flagged
            ),
            (1, 1, 1, 1),
            "{c:?}"
        );
        // Nothing flagged: the counts stay, the flags go.
        let none = Thresholds {
            monitor: 2.0,
            throttle: 2.0,
            block: 2.0,
            min_requests: 1,
        };
        let c = judge_with(none).campaigns[0].clone();
        assert_eq!(
            (
                c.bad_keys,
                c.bad_keys_flagged,
                c.honest_keys,
                c.honest_keys_flagged
            ),
            (1, 0, 1, 0),
            "{c:?}"
        );
        // One account in the campaign, linked to nothing: no reported
        // campaign holds it.
        assert_eq!((c.completeness, c.purity), (0.0, 1.0));
    }
}
