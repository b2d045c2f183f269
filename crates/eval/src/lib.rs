/*!
The scoreboard every detector is judged on.

Given an analysis report, the ground truth and (optionally) the event log,
it answers: which attack accounts were flagged (throttle or above), how
many honest accounts were, how early each campaign was stopped (requests
it had served when its first account was flagged), and the same numbers
for a per-key rate limiter ([`baseline`]), so every report says how much
better than a rate limit it is. Definitions are in `docs/scoreboard.md`.
*/

pub mod baseline;
pub mod table;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use distillguard_core::reader::parse_record;
use distillguard_core::{
    AccountRecord, Label, LineError, ReadError, Report, Timestamp, TruthRecord,
};
use serde::{Deserialize, Serialize};

use baseline::{RateLimiter, limits_of};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("report {path}: {reason}")]
    Report { path: String, reason: String },
    #[error("truth: {0}")]
    Truth(String),
}

/// The three columns the scoreboard needs from each event.
#[derive(Debug, Default)]
pub struct EventIndex {
    /// (ts, account, key) in time order.
    pub events: Vec<(i64, u32, u32)>,
    pub accounts: Vec<String>,
    pub keys: Vec<String>,
    pub malformed: Vec<LineError>,
    pub lines: u64,
}

#[derive(Deserialize)]
struct Light<'a> {
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    account_id: Cow<'a, str>,
    #[serde(default, borrow)]
    api_key_id: Option<Cow<'a, str>>,
}

impl EventIndex {
    /// Reads event logs (only `ts`, `account_id`, `api_key_id`); bad lines
    /// are kept as located errors, or end the read when `strict`.
    pub fn load(paths: &[&Path], strict: bool) -> Result<EventIndex, EvalError> {
        let mut idx = EventIndex::default();
        let mut acct_ids: HashMap<String, u32> = HashMap::new();
        let mut key_ids: HashMap<String, u32> = HashMap::new();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        for path in paths {
            let stats = distillguard_core::parallel::par_read(path, workers, light, |item| {
                match item {
                    Ok((ts, account, key)) => {
                        let n = acct_ids.len() as u32;
                        let a = *acct_ids.entry(account.clone()).or_insert_with(|| {
                            idx.accounts.push(account.clone());
                            n
                        });
                        // Requests without a key count against the account.
                        let key = key.unwrap_or_else(|| format!("account:{account}"));
                        let n = key_ids.len() as u32;
                        let k = *key_ids.entry(key.clone()).or_insert_with(|| {
                            idx.keys.push(key);
                            n
                        });
                        idx.events.push((ts.0, a, k));
                    }
                    Err(e) if strict => return Err(ReadError::Strict(e)),
                    Err(e) => idx.malformed.push(e),
                }
                Ok(())
            })?;
            idx.lines += stats.lines;
        }
        idx.events.sort_by_key(|e| e.0);
        Ok(idx)
    }
}

type LightEvent = (Timestamp, String, Option<String>);

fn light(line: &str) -> Result<LightEvent, distillguard_core::EventError> {
    let l: Light = parse_record(line)?;
    let ts = Timestamp::parse(&l.ts).map_err(|e| distillguard_core::EventError::Field {
        path: "ts".into(),
        reason: e.to_string(),
    })?;
    Ok((
        ts,
        l.account_id.into_owned(),
        l.api_key_id.map(Cow::into_owned),
    ))
}

/// Reads and checks a report file.
pub fn load_report(path: &Path) -> Result<Report, EvalError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Report {
        path: name.clone(),
        reason: e.to_string(),
    })?;
    let report: Report = serde_json::from_str(&text).map_err(|e| EvalError::Report {
        path: name.clone(),
        reason: e.to_string(),
    })?;
    if report.version != distillguard_core::report::REPORT_VERSION {
        return Err(EvalError::Report {
            path: name,
            reason: format!(
                "version {} is not supported (this build reads {})",
                report.version,
                distillguard_core::report::REPORT_VERSION
            ),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for a in &report.accounts {
        if !seen.insert(a.account_id.as_str()) {
            return Err(EvalError::Report {
                path: name,
                reason: format!("account {:?} appears twice", a.account_id),
            });
        }
        if !(0.0..=1.0).contains(&a.risk) {
            return Err(EvalError::Report {
                path: name,
                reason: format!(
                    "account {:?}: risk {} is outside [0, 1]",
                    a.account_id, a.risk
                ),
            });
        }
    }
    Ok(report)
}

/// Account-level confusion counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub true_negatives: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignScore {
    pub campaign: String,
    pub accounts: u64,
    pub flagged: u64,
    pub recall: f64,
    /// Requests of the campaign's accounts in the log.
    pub requests: Option<u64>,
    pub first_flagged_at: Option<Timestamp>,
    /// Requests the campaign had served when first flagged (inclusive).
    pub served_before_detection: Option<u64>,
    pub served_before_detection_pct: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    pub name: String,
    pub flagged: u64,
    pub counts: Counts,
    /// None when nothing was flagged.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub benign_false_positive_rate: Option<f64>,
    pub campaigns: Vec<CampaignScore>,
    /// Over flagged attack accounts: own requests served until flagged.
    pub account_delay_median: Option<u64>,
    pub account_delay_p90: Option<u64>,
}

/// How well one true campaign was recovered as a linked campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkScore {
    pub campaign: String,
    pub accounts: u64,
    /// The reported campaign holding most of its accounts.
    pub matched: Option<String>,
    /// Share of the true campaign's accounts in `matched`.
    pub completeness: f64,
    /// Share of `matched`'s accounts that belong to this true campaign.
    pub purity: f64,
    pub detected_at: Option<Timestamp>,
    /// Requests the campaign had served when `matched` was confirmed.
    pub served_before_detection: Option<u64>,
    pub served_before_detection_pct: Option<f64>,
}

/// Campaign linking, judged against the truth's campaigns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkScores {
    pub reported_campaigns: u64,
    /// Reported campaigns whose accounts are mostly honest.
    pub honest_campaigns: u64,
    /// Honest accounts placed in any campaign.
    pub honest_accounts_linked: u64,
    pub campaigns: Vec<LinkScore>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scoreboard {
    pub version: u32,
    pub truth_accounts: u64,
    pub attack_accounts: u64,
    pub benign_accounts: u64,
    pub events: Option<u64>,
    pub malformed_lines: u64,
    pub detector: Scores,
    pub baseline: Option<Scores>,
    /// Campaign linking (when the report has campaigns or the truth has any).
    pub linking: LinkScores,
    /// API keys scored on their own (when the truth names bad keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeyScores>,
    pub baseline_policy: Vec<(String, baseline::Limits)>,
    pub warnings: Vec<String>,
}

/// Key-level detection: the truth's harvesting keys, and the honest keys
/// (of honest accounts, and of attack accounts: a reseller's customers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyScores {
    pub bad_keys: u64,
    pub bad_keys_flagged: u64,
    pub recall: Option<f64>,
    /// Keys of attack accounts that carry no harvest (from the event log).
    pub attack_account_honest_keys: Option<u64>,
    pub attack_account_honest_keys_flagged: u64,
    pub attack_account_honest_key_fpr: Option<f64>,
    /// Keys of honest accounts (from the event log).
    pub honest_account_keys: Option<u64>,
    pub honest_account_keys_flagged: u64,
}

/// Scores the report's keys against the truth's bad keys (None when the
/// truth names none).
pub fn score_keys(
    report: &Report,
    truth: &[TruthRecord],
    events: Option<&EventIndex>,
) -> Option<KeyScores> {
    let bad: std::collections::HashSet<&str> = truth
        .iter()
        .filter_map(|t| t.bad_keys.as_ref())
        .flatten()
        .map(String::as_str)
        .collect();
    if bad.is_empty() {
        return None;
    }
    let attack: std::collections::HashSet<&str> = truth
        .iter()
        .filter(|t| t.label == Label::Attack)
        .map(|t| t.account_id.as_str())
        .collect();
    let flagged: HashMap<&str, &str> = report
        .keys
        .iter()
        .filter(|k| k.verdict.is_flagged())
        .map(|k| (k.key_id.as_str(), k.account_id.as_str()))
        .collect();
    let bad_flagged = bad.iter().filter(|k| flagged.contains_key(*k)).count() as u64;
    let mut aahf = 0u64;
    let mut hahf = 0u64;
    for (k, a) in &flagged {
        if bad.contains(k) {
            continue;
        }
        if attack.contains(a) {
            aahf += 1;
        } else {
            hahf += 1;
        }
    }
    let (aah, hah) = match events {
        Some(ix) => {
            let mut seen: std::collections::HashSet<(u32, u32)> = Default::default();
            let (mut aah, mut hah) = (0u64, 0u64);
            for &(_, a, k) in &ix.events {
                if !seen.insert((a, k)) {
                    continue;
                }
                let key = ix.keys[k as usize].as_str();
                if bad.contains(key) || key.starts_with("account:") {
                    continue;
                }
                if attack.contains(ix.accounts[a as usize].as_str()) {
                    aah += 1;
                } else {
                    hah += 1;
                }
            }
            (Some(aah), Some(hah))
        }
        None => (None, None),
    };
    Some(KeyScores {
        bad_keys: bad.len() as u64,
        bad_keys_flagged: bad_flagged,
        recall: ratio(bad_flagged, bad.len() as u64),
        attack_account_honest_keys: aah,
        attack_account_honest_keys_flagged: aahf,
        attack_account_honest_key_fpr: aah.and_then(|n| ratio(aahf, n)),
        honest_account_keys: hah,
        honest_account_keys_flagged: hahf,
    })
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

type CampaignTally<'a> = (u64, u64, Option<Timestamp>, Vec<&'a str>);

/// Scores one set of flags (`account → first flagged time`, None = flagged
/// at an unknown time) against the truth.
pub fn score(
    name: &str,
    flags: &HashMap<&str, Option<Timestamp>>,
    truth: &[TruthRecord],
    events: Option<&EventIndex>,
) -> Scores {
    let mut c = Counts::default();
    // campaign → (accounts, flagged, first flag, account ids)
    let mut per_campaign: BTreeMap<&str, CampaignTally> = BTreeMap::new();
    for t in truth {
        let flagged = flags.get(t.account_id.as_str());
        match (t.label, flagged.is_some()) {
            (Label::Attack, true) => c.true_positives += 1,
            (Label::Attack, false) => c.false_negatives += 1,
            (Label::Benign, true) => c.false_positives += 1,
            (Label::Benign, false) => c.true_negatives += 1,
        }
        if let (Label::Attack, Some(camp)) = (t.label, t.campaign.as_deref()) {
            let e = per_campaign.entry(camp).or_insert((0, 0, None, Vec::new()));
            e.0 += 1;
            e.3.push(t.account_id.as_str());
            if let Some(at) = flagged {
                e.1 += 1;
                if let Some(at) = at {
                    e.2 = Some(e.2.map_or(*at, |x: Timestamp| x.min(*at)));
                }
            }
        }
    }
    // Timestamps of each account's events, for "served before" counts.
    let by_account: HashMap<&str, Vec<i64>> = match events {
        Some(ix) => {
            let mut m: HashMap<&str, Vec<i64>> = HashMap::new();
            for &(ts, a, _) in &ix.events {
                m.entry(ix.accounts[a as usize].as_str())
                    .or_default()
                    .push(ts);
            }
            m
        }
        None => HashMap::new(),
    };
    let served = |accounts: &[&str], until: Timestamp| -> u64 {
        accounts
            .iter()
            .filter_map(|a| by_account.get(a))
            .map(|ts| ts.partition_point(|&t| t <= until.0) as u64)
            .sum()
    };
    let campaigns = per_campaign
        .into_iter()
        .map(|(camp, (n, f, first, accounts))| {
            let requests = events.map(|_| {
                accounts
                    .iter()
                    .filter_map(|a| by_account.get(a))
                    .map(|v| v.len() as u64)
                    .sum::<u64>()
            });
            let before = match (events, first) {
                (Some(_), Some(t)) => Some(served(&accounts, t)),
                _ => None,
            };
            CampaignScore {
                campaign: camp.to_string(),
                accounts: n,
                flagged: f,
                recall: ratio(f, n).unwrap_or(0.0),
                requests,
                first_flagged_at: first,
                served_before_detection: before,
                served_before_detection_pct: match (before, requests) {
                    (Some(b), Some(r)) if r > 0 => Some(100.0 * b as f64 / r as f64),
                    _ => None,
                },
            }
        })
        .collect();
    let mut delays: Vec<u64> = truth
        .iter()
        .filter(|t| t.label == Label::Attack)
        .filter_map(|t| {
            flags
                .get(t.account_id.as_str())
                .copied()
                .flatten()
                .map(|at| (t, at))
        })
        .filter(|_| events.is_some())
        .map(|(t, at)| served(&[t.account_id.as_str()], at))
        .collect();
    delays.sort_unstable();
    let pick = |q: f64| {
        (!delays.is_empty()).then(|| delays[((delays.len() - 1) as f64 * q).round() as usize])
    };
    let flagged = c.true_positives + c.false_positives;
    let precision = ratio(c.true_positives, flagged);
    let recall = ratio(c.true_positives, c.true_positives + c.false_negatives);
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    Scores {
        name: name.to_string(),
        flagged,
        counts: c,
        precision,
        recall,
        f1,
        benign_false_positive_rate: ratio(c.false_positives, c.false_positives + c.true_negatives),
        campaigns,
        account_delay_median: pick(0.5),
        account_delay_p90: pick(0.9),
    }
}

/// Runs the baseline rate limiter over the log: account → first rejection.
pub fn run_baseline(
    ix: &EventIndex,
    tiers: &HashMap<String, String>,
) -> HashMap<String, Timestamp> {
    let mut rl = RateLimiter::default();
    let mut flagged: HashMap<String, Timestamp> = HashMap::new();
    let limits: Vec<baseline::Limits> = ix
        .accounts
        .iter()
        .map(|a| limits_of(tiers.get(a).map(String::as_str)))
        .collect();
    for &(ts, a, k) in &ix.events {
        if !rl.admit(&ix.keys[k as usize], Timestamp(ts), limits[a as usize]) {
            flagged
                .entry(ix.accounts[a as usize].clone())
                .or_insert(Timestamp(ts));
        }
    }
    flagged
}

/// Everything `distillguard eval` needs.
/// Scores the report's campaigns against the truth's: for each true
/// campaign, the reported campaign holding most of its accounts, how
/// complete and pure it is, and how much the campaign had served when that
/// campaign was confirmed.
pub fn score_linking(
    report: &Report,
    truth: &[TruthRecord],
    events: Option<&EventIndex>,
) -> LinkScores {
    let label: HashMap<&str, Option<&str>> = truth
        .iter()
        .map(|t| {
            (
                t.account_id.as_str(),
                (t.label == Label::Attack).then_some(t.campaign.as_deref().unwrap_or("?")),
            )
        })
        .collect();
    // Reported campaign → (size, true campaign → accounts).
    let mut honest_campaigns = 0u64;
    let mut honest_linked = 0u64;
    let mut composition: Vec<(&str, u64, HashMap<&str, u64>)> = Vec::new();
    for c in &report.campaigns {
        let mut by: HashMap<&str, u64> = HashMap::new();
        let mut honest = 0u64;
        for a in &c.accounts {
            match label.get(a.as_str()) {
                Some(Some(camp)) => *by.entry(camp).or_default() += 1,
                _ => honest += 1,
            }
        }
        honest_linked += honest;
        if honest * 2 > c.accounts.len() as u64 {
            honest_campaigns += 1;
        }
        composition.push((c.campaign_id.as_str(), c.accounts.len() as u64, by));
    }
    let mut truth_sizes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in truth {
        if let (Label::Attack, Some(c)) = (t.label, t.campaign.as_deref()) {
            truth_sizes
                .entry(c)
                .or_default()
                .push(t.account_id.as_str());
        }
    }
    let mut by_account: HashMap<&str, Vec<i64>> = HashMap::new();
    if let Some(ix) = events {
        for &(ts, a, _) in &ix.events {
            by_account
                .entry(ix.accounts[a as usize].as_str())
                .or_default()
                .push(ts);
        }
    }
    let campaigns = truth_sizes
        .into_iter()
        .map(|(camp, accounts)| {
            let n = accounts.len() as u64;
            let best = composition
                .iter()
                .filter_map(|(id, size, by)| by.get(camp).map(|k| (*id, *size, *k)))
                .max_by(|a, b| a.2.cmp(&b.2).then(b.0.cmp(a.0)));
            let matched = best.map(|b| b.0.to_string());
            let detected_at = best.and_then(|b| {
                report
                    .campaigns
                    .iter()
                    .find(|c| c.campaign_id == b.0)
                    .and_then(|c| c.detected_at)
            });
            let (served, total) = match (events, detected_at) {
                (Some(_), Some(at)) => {
                    let mut s = 0u64;
                    let mut t = 0u64;
                    for a in &accounts {
                        if let Some(ts) = by_account.get(a) {
                            s += ts.partition_point(|&x| x <= at.0) as u64;
                            t += ts.len() as u64;
                        }
                    }
                    (Some(s), Some(t))
                }
                _ => (None, None),
            };
            LinkScore {
                campaign: camp.to_string(),
                accounts: n,
                matched,
                completeness: best.map_or(0.0, |b| b.2 as f64 / n.max(1) as f64),
                purity: best.map_or(0.0, |b| b.2 as f64 / b.1.max(1) as f64),
                detected_at,
                served_before_detection: served,
                served_before_detection_pct: match (served, total) {
                    (Some(s), Some(t)) if t > 0 => Some(100.0 * s as f64 / t as f64),
                    _ => None,
                },
            }
        })
        .collect();
    LinkScores {
        reported_campaigns: report.campaigns.len() as u64,
        honest_campaigns,
        honest_accounts_linked: honest_linked,
        campaigns,
    }
}

pub struct Inputs<'a> {
    pub report: &'a Report,
    pub truth: &'a [TruthRecord],
    pub events: Option<&'a EventIndex>,
    pub accounts: Option<&'a [AccountRecord]>,
}

/// Builds the scoreboard: detector scores, and baseline scores when the
/// event log is given.
pub fn evaluate(inp: &Inputs) -> Result<Scoreboard, EvalError> {
    let mut warnings = Vec::new();
    let mut truth_ids = std::collections::HashSet::new();
    for t in inp.truth {
        if !truth_ids.insert(t.account_id.as_str()) {
            return Err(EvalError::Truth(format!(
                "account {:?} appears twice",
                t.account_id
            )));
        }
        if t.label == Label::Attack && t.campaign.is_none() {
            warnings.push(format!(
                "attack account {} has no campaign: counted in account scores only",
                t.account_id
            ));
        }
    }
    let mut flags: HashMap<&str, Option<Timestamp>> = HashMap::new();
    let mut unknown = 0u64;
    let mut no_time = 0u64;
    for a in &inp.report.accounts {
        if !truth_ids.contains(a.account_id.as_str()) {
            unknown += 1;
            continue;
        }
        if a.verdict.is_flagged() {
            if a.flagged_at.is_none() {
                no_time += 1;
            }
            flags.insert(a.account_id.as_str(), a.flagged_at);
        }
    }
    if unknown > 0 {
        warnings.push(format!(
            "{unknown} report accounts are not in the truth file and were ignored"
        ));
    }
    if no_time > 0 {
        warnings.push(format!(
            "{no_time} flagged accounts have no flagged_at: their time to detect is unknown"
        ));
    }
    if inp.events.is_none() {
        warnings.push(
            "no event log given: time to detect and the rate-limit baseline are not computed"
                .into(),
        );
    }
    let detector = score("distillguard", &flags, inp.truth, inp.events);
    let baseline = inp.events.map(|ix| {
        let tiers: HashMap<String, String> = inp
            .accounts
            .unwrap_or(&[])
            .iter()
            .filter_map(|r| r.tier.clone().map(|t| (r.account_id.clone(), t)))
            .collect();
        let b = run_baseline(ix, &tiers);
        let bflags: HashMap<&str, Option<Timestamp>> =
            b.iter().map(|(k, v)| (k.as_str(), Some(*v))).collect();
        score("rate-limit baseline", &bflags, inp.truth, inp.events)
    });
    if inp.events.is_some() && inp.accounts.is_none() {
        warnings.push("no accounts file: the baseline gives every key tier1 limits".into());
    }
    let attack = inp
        .truth
        .iter()
        .filter(|t| t.label == Label::Attack)
        .count() as u64;
    let linking = score_linking(inp.report, inp.truth, inp.events);
    let keys = score_keys(inp.report, inp.truth, inp.events);
    Ok(Scoreboard {
        version: 1,
        truth_accounts: inp.truth.len() as u64,
        attack_accounts: attack,
        benign_accounts: inp.truth.len() as u64 - attack,
        events: inp.events.map(|e| e.events.len() as u64),
        malformed_lines: inp.events.map_or(0, |e| e.malformed.len() as u64),
        detector,
        baseline,
        linking,
        keys,
        baseline_policy: baseline::TIER_LIMITS
            .iter()
            .map(|(n, l)| (n.to_string(), *l))
            .collect(),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::{AccountReport, Verdict};

    fn truth() -> Vec<TruthRecord> {
        let mut t = Vec::new();
        for i in 0..4 {
            t.push(TruthRecord {
                family: None,
                kind: None,
                bad_keys: None,
                account_id: format!("a{i}"),
                label: Label::Attack,
                campaign: Some("c1".into()),
            });
        }
        t.push(TruthRecord {
            family: None,
            kind: None,
            bad_keys: None,
            account_id: "x0".into(),
            label: Label::Attack,
            campaign: Some("c2".into()),
        });
        for i in 0..95 {
            t.push(TruthRecord {
                family: None,
                kind: None,
                bad_keys: None,
                account_id: format!("b{i}"),
                label: Label::Benign,
                campaign: None,
            });
        }
        t
    }

    fn acct(id: &str, verdict: Verdict, at: Option<i64>) -> AccountReport {
        AccountReport {
            account_id: id.into(),
            risk: 0.5,
            verdict,
            flagged_at: at.map(Timestamp),
            reasons: vec![],
            campaign_id: None,
            samples: Vec::new(),
            timeline: None,
        }
    }

    #[test]
    fn arithmetic_on_a_hand_made_case() {
        // Flag 3 of 4 in c1 (one only "monitor"), none in c2, 1 benign.
        let report = Report {
            version: 1,
            stats: Default::default(),
            accounts: vec![
                acct("a0", Verdict::Block, Some(30)),
                acct("a1", Verdict::Throttle, Some(10)),
                acct("a2", Verdict::Block, Some(50)),
                acct("a3", Verdict::Monitor, None),
                acct("b7", Verdict::Throttle, Some(5)),
                acct("b8", Verdict::Monitor, None),
                acct("ghost", Verdict::Block, Some(1)),
            ],
            campaigns: vec![],
            keys: Vec::new(),
        };
        let t = truth();
        // c1's accounts each send one request at t = 0, 10, 20, …, 90.
        let mut ix = EventIndex::default();
        for i in 0..4u32 {
            ix.accounts.push(format!("a{i}"));
            ix.keys.push(format!("k{i}"));
        }
        for n in 0..10i64 {
            ix.events.push((n * 10, (n % 4) as u32, (n % 4) as u32));
        }
        let sb = evaluate(&Inputs {
            report: &report,
            truth: &t,
            events: Some(&ix),
            accounts: None,
        })
        .unwrap();
        let d = &sb.detector;
        assert_eq!(
            d.counts,
            Counts {
                true_positives: 3,
                false_positives: 1,
                false_negatives: 2,
                true_negatives: 94
            }
        );
        assert_eq!(d.precision, Some(0.75));
        assert_eq!(d.recall, Some(0.6));
        assert!((d.f1.unwrap() - 2.0 * 0.75 * 0.6 / 1.35).abs() < 1e-12);
        assert_eq!(d.benign_false_positive_rate, Some(1.0 / 95.0));
        let c1 = &d.campaigns[0];
        assert_eq!(
            (c1.campaign.as_str(), c1.accounts, c1.flagged),
            ("c1", 4, 3)
        );
        assert_eq!(c1.recall, 0.75);
        // First flag at t = 10: events at 0 and 10 were served (inclusive).
        assert_eq!(c1.first_flagged_at, Some(Timestamp(10)));
        assert_eq!(c1.served_before_detection, Some(2));
        assert_eq!(c1.requests, Some(10));
        assert_eq!(c1.served_before_detection_pct, Some(20.0));
        let c2 = &d.campaigns[1];
        assert_eq!((c2.flagged, c2.served_before_detection), (0, None));
        // Own requests until flagged: a1 at 10 → {10}: 1; a0 at 30 → {0}: 1; a2 at 50 → {20}: 1.
        assert_eq!(d.account_delay_median, Some(1));
        assert!(
            sb.warnings
                .iter()
                .any(|w| w.contains("1 report accounts are not in the truth"))
        );
    }

    #[test]
    fn nothing_flagged_gives_undefined_precision_not_nan() {
        let report = Report {
            version: 1,
            stats: Default::default(),
            accounts: vec![],
            campaigns: vec![],
            keys: Vec::new(),
        };
        let t = truth();
        let sb = evaluate(&Inputs {
            report: &report,
            truth: &t,
            events: None,
            accounts: None,
        })
        .unwrap();
        assert_eq!(sb.detector.precision, None);
        assert_eq!(sb.detector.recall, Some(0.0));
        assert_eq!(sb.detector.benign_false_positive_rate, Some(0.0));
        assert!(sb.baseline.is_none());
        let json = serde_json::to_string(&sb).unwrap();
        assert!(!json.contains("NaN"));
    }

    #[test]
    fn baseline_flags_a_key_that_bursts_and_spares_one_that_spreads() {
        let mut ix = EventIndex {
            accounts: vec!["loud".into(), "quiet".into()],
            keys: vec!["k-loud".into(), "k-quiet".into()],
            ..Default::default()
        };
        for i in 0..200i64 {
            ix.events.push((i * 100, 0, 0)); // 600 per minute
            ix.events.push((i * 5_000, 1, 1)); // 12 per minute
        }
        ix.events.sort_by_key(|e| e.0);
        let flagged = run_baseline(&ix, &HashMap::new());
        assert!(flagged.contains_key("loud"));
        assert!(!flagged.contains_key("quiet"));
        // tier1 (60/min, a minute's burst): request i at 100·i ms has used
        // 900·i ms of the 59,000 ms burst tolerance; i = 66 is the first refused.
        assert_eq!(flagged["loud"], Timestamp(6_600));
    }

    #[test]
    fn duplicate_truth_is_an_error() {
        let mut t = truth();
        t.push(t[0].clone());
        let report = Report {
            version: 1,
            stats: Default::default(),
            accounts: vec![],
            campaigns: vec![],
            keys: Vec::new(),
        };
        assert!(
            evaluate(&Inputs {
                report: &report,
                truth: &t,
                events: None,
                accounts: None
            })
            .is_err()
        );
    }
}
