/*!
The streaming detection engine: events in time order → per-account risk,
verdict timeline and reasons.

Work is split in two. [`pre`] runs every per-request signal on one event and
keeps only what the account fold needs (about 120 bytes, no prompt text);
it is pure, so it runs on every core. [`Engine::process`] folds those records
in timestamp order on one thread: it keeps each model's largest
`max_tokens`, sees model releases, counts template openings and closings
across accounts (count-min), updates the account's fingerprint, scores it
and records when it first reached each verdict.

Scoring is a logistic model over the account's features ([`FEATURES`]);
its weights come from `distillguard fit` on a labelled simulation (see
`docs/detection.md`), and the defaults are embedded.
*/

use std::collections::HashMap;

use distillguard_core::report::{AccountReport, Reason, Report, Verdict};
use distillguard_core::time::MS_PER_DAY;
use distillguard_core::{AccountInfo, Event, ModelRelease, Timestamp};
use distillguard_sketches::Fingerprint;
use distillguard_sketches::countmin::CountMin;
use serde::{Deserialize, Serialize};

use crate::signals::account::{self, AccountProfile, Observation};
use crate::signals::request::{capability, elicitation, harvesting, lower, shape};

/// Features the engine adds to the account profile's own.
const ENGINE_FEATURES: [&str; 4] = [
    "account_risk",
    "shared_template",
    "evidence",
    "prompt_repeats",
];

pub const NF: usize = account::FEATURES.len() + ENGINE_FEATURES.len();

/// Every feature the score reads, in weight order: the profile's
/// behavioural features, then the engine's.
pub const FEATURES: [&str; NF] = {
    let mut out = [""; NF];
    let mut i = 0;
    while i < account::FEATURES.len() {
        out[i] = account::FEATURES[i];
        i += 1;
    }
    let mut j = 0;
    while j < ENGINE_FEATURES.len() {
        out[i + j] = ENGINE_FEATURES[j];
        j += 1;
    }
    out
};

/// What the fold needs from one event.
#[derive(Debug, Clone)]
pub struct Pre {
    pub ts: Timestamp,
    pub account_id: String,
    /// Hash of the account id: the tie-break of the time order.
    pub account_key: u64,
    pub model: u64,
    pub max_tokens: u32,
    pub elicits: bool,
    pub capability: capability::Capability,
    pub logprobs: bool,
    pub multi_sample: bool,
    pub settings_key: u64,
    pub single_shot: bool,
    pub refers_back: bool,
    pub template: Option<[u64; 2]>,
    /// Hash of the exact last user turn (re-sent prompts: benchmark suites).
    pub exact: u64,
    /// The client's ASN organisation when it is a hosting provider (kept for
    /// the account's static risk; honest home networks are not kept).
    pub hosting_org: Option<String>,
    pub client_country: Option<String>,
    pub account: Option<AccountInfo>,
    /// Model name, kept only to match releases.
    pub model_name: Option<String>,
}

/// The processing order of records: by time, ties by account (so the order
/// of lines in the files does not matter), then by position (an account's
/// own same-millisecond requests keep their file order). Sorts small keys,
/// not the records.
pub fn time_order(pres: &[Pre]) -> Vec<u32> {
    let mut keys: Vec<(i64, u64, u32)> = pres
        .iter()
        .enumerate()
        .map(|(i, p)| (p.ts.0, p.account_key, i as u32))
        .collect();
    keys.sort_unstable();
    keys.into_iter().map(|k| k.2).collect()
}

/// Per-request signals of one event (pure: safe to run on any thread).
pub fn pre(e: &Event) -> Pre {
    let user = lower(&e.request.last_user_text);
    let system = e.request.system_prompt.as_deref().map(lower);
    let h = harvesting::measure(e, 0);
    let s = shape::measure(e, &user);
    let f = Fingerprint::of(&e.request.last_user_text, &mut Vec::new());
    Pre {
        ts: e.ts,
        account_id: e.account_id.clone(),
        model: distillguard_sketches::hash_bytes(e.model.as_deref().unwrap_or("").as_bytes()),
        max_tokens: e.request.sampling.max_tokens.unwrap_or(0),
        elicits: elicitation::detect(&user, system.as_deref()).is_some(),
        capability: capability::classify(e, &user),
        logprobs: h.logprobs,
        multi_sample: h.samples > 1,
        settings_key: h.settings_key,
        single_shot: s.single_shot,
        refers_back: s.refers_back,
        template: (f.head != 0).then_some([f.head, f.tail]),
        exact: distillguard_sketches::hash_exact(e.request.last_user_text.as_bytes()),
        account_key: distillguard_sketches::hash_exact(e.account_id.as_bytes()),
        hosting_org: e.client.asn_org.clone().filter(|o| account::is_hosting(o)),
        client_country: e.client.country.clone(),
        account: e.account.clone(),
        model_name: e.model.clone(),
    }
}

/// Weights of the logistic score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// How they were obtained (command, scenario, seed).
    pub provenance: String,
    pub bias: f64,
    /// By feature name (all of [`FEATURES`]).
    pub weights: std::collections::BTreeMap<String, f64>,
    /// Verdict thresholds chosen with the weights (on the training data).
    #[serde(default)]
    pub thresholds: Thresholds,
}

impl Weights {
    /// The embedded defaults (`weights.json`, written by `distillguard fit`).
    pub fn embedded() -> Weights {
        serde_json::from_str(include_str!("weights.json")).unwrap_or(Weights {
            provenance: "fallback: the embedded weights did not parse".into(),
            bias: -8.0,
            weights: Default::default(),
            thresholds: Thresholds::default(),
        })
    }

    pub fn vector(&self) -> [f64; NF] {
        let mut w = [0.0; NF];
        for (i, n) in FEATURES.iter().enumerate() {
            w[i] = self.weights.get(*n).copied().unwrap_or(0.0);
        }
        w
    }
}

/// Verdict thresholds on the risk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub monitor: f64,
    pub throttle: f64,
    pub block: f64,
    /// No throttle or block before an account has sent this many requests.
    pub min_requests: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            monitor: 0.5,
            throttle: 0.9,
            block: 0.98,
            min_requests: 5,
        }
    }
}

/// The `analyze` configuration file (TOML). Every field is optional: the
/// defaults are the embedded weights and the thresholds fitted with them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A weights file from `distillguard fit` (relative to the config file).
    #[serde(default)]
    pub weights: Option<String>,
    /// Overrides the thresholds that come with the weights.
    #[serde(default)]
    pub thresholds: Option<Thresholds>,
}

impl Thresholds {
    /// Checks that 0 ≤ monitor ≤ throttle ≤ block ≤ 1.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |x: f64| (0.0..=1.0).contains(&x);
        if !(ok(self.monitor) && ok(self.throttle) && ok(self.block)) {
            return Err("thresholds must lie in [0, 1]".into());
        }
        if !(self.monitor <= self.throttle && self.throttle <= self.block) {
            return Err(format!(
                "need monitor ≤ throttle ≤ block (got {}, {}, {})",
                self.monitor, self.throttle, self.block
            ));
        }
        Ok(())
    }
}

/// Accounts a template opening/closing must be seen in to count as shared.
pub const SHARED_ACCOUNTS: u32 = 5;

#[derive(Debug, Clone, Default)]
struct AccountState {
    profile: AccountProfile,
    /// Distinct exact prompts (64 one-byte registers).
    distinct: distillguard_sketches::hll::Hll<6>,
    static_risk: f64,
    shared: u32,
    informative: u32,
    risk: f64,
    max_risk: f64,
    /// Highest risk once the account had `min_requests` (what verdicts use).
    max_risk_after_min: f64,
    verdict: Option<Verdict>,
    flagged_at: Option<Timestamp>,
    monitored_at: Option<Timestamp>,
}

/// The engine: feed [`Pre`] records in time order.
pub struct Engine {
    weights: [f64; NF],
    bias: f64,
    pub thresholds: Thresholds,
    releases: Vec<(u64, i64)>,
    accounts_info: HashMap<String, AccountInfo>,
    ids: HashMap<String, u32>,
    names: Vec<String>,
    state: Vec<AccountState>,
    model_max: HashMap<u64, u32>,
    edges: CountMin,
    pub events: u64,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Engine {
    pub fn new(
        weights: &Weights,
        thresholds: Thresholds,
        releases: &[ModelRelease],
        accounts: HashMap<String, AccountInfo>,
    ) -> Engine {
        Engine {
            weights: weights.vector(),
            bias: weights.bias,
            thresholds,
            releases: releases
                .iter()
                .map(|r| {
                    (
                        distillguard_sketches::hash_bytes(r.model.as_bytes()),
                        r.released_at.0,
                    )
                })
                .collect(),
            accounts_info: accounts,
            ids: HashMap::new(),
            names: Vec::new(),
            state: Vec::new(),
            model_max: HashMap::new(),
            edges: CountMin::new(20),
            events: 0,
        }
    }

    /// Folds one request; returns the account's index.
    pub fn process(&mut self, p: &Pre) -> u32 {
        self.events += 1;
        let n = self.ids.len() as u32;
        let idx = *self.ids.entry(p.account_id.clone()).or_insert(n);
        if idx == n {
            self.names.push(p.account_id.clone());
            let info = self.accounts_info.get(&p.account_id).or(p.account.as_ref());
            let risk = account::account_risk(
                info,
                p.ts,
                p.hosting_org.as_deref(),
                p.client_country.as_deref(),
            );
            self.state.push(AccountState {
                static_risk: risk.value,
                ..Default::default()
            });
        }
        let max = self.model_max.entry(p.model).or_insert(0);
        *max = (*max).max(p.max_tokens);
        let at_max = p.max_tokens > 0 && p.max_tokens as f64 >= 0.95 * *max as f64;
        let ts = p.ts.0;
        let fresh = |at: i64| ts >= at && ts - at < MS_PER_DAY;
        let obs = Observation {
            ts: p.ts,
            elicits: p.elicits,
            capability: p.capability,
            logprobs: p.logprobs,
            multi_sample: p.multi_sample,
            at_max_tokens: at_max,
            settings_key: p.settings_key,
            single_shot: p.single_shot,
            refers_back: p.refers_back,
            template: p.template,
            new_model: self
                .releases
                .iter()
                .any(|(m, at)| *m == p.model && fresh(*at)),
            release_window: self.releases.iter().any(|(_, at)| fresh(*at)),
        };
        let st = &mut self.state[idx as usize];
        if let Some(keys) = p.template {
            st.informative += 1;
            let mut wide = false;
            for k in keys {
                // Count each account once per key (while the account holds it).
                let est = if st.profile.holds_template(k) {
                    self.edges.estimate(k)
                } else {
                    self.edges.add(k)
                };
                wide |= est >= SHARED_ACCOUNTS;
            }
            st.shared += wide as u32;
        }
        st.profile.observe(&obs);
        st.distinct.add(p.exact);
        let x = features(st);
        let risk = sigmoid(
            self.bias
                + self
                    .weights
                    .iter()
                    .zip(x.iter())
                    .map(|(w, v)| w * v)
                    .sum::<f64>(),
        );
        st.risk = risk;
        st.max_risk = st.max_risk.max(risk);
        let t = &self.thresholds;
        if st.profile.requests >= t.min_requests {
            st.max_risk_after_min = st.max_risk_after_min.max(risk);
        }
        let verdict = if st.profile.requests < t.min_requests {
            if risk >= t.monitor {
                Verdict::Monitor
            } else {
                Verdict::Allow
            }
        } else if risk >= t.block {
            Verdict::Block
        } else if risk >= t.throttle {
            Verdict::Throttle
        } else if risk >= t.monitor {
            Verdict::Monitor
        } else {
            Verdict::Allow
        };
        // Verdicts only escalate while streaming: a stopped account stays stopped.
        let v = st.verdict.map_or(verdict, |old| old.max(verdict));
        if v.is_flagged() && st.flagged_at.is_none() {
            st.flagged_at = Some(p.ts);
        }
        if v >= Verdict::Monitor && st.monitored_at.is_none() {
            st.monitored_at = Some(p.ts);
        }
        st.verdict = Some(v);
        idx
    }

    /// The account's current feature vector (for fitting).
    pub fn feature_vector(&self, idx: u32) -> [f64; NF] {
        features(&self.state[idx as usize])
    }

    pub fn requests_of(&self, idx: u32) -> u32 {
        self.state[idx as usize].profile.requests
    }

    /// Highest risk each account reached, by account id.
    pub fn max_risks(&self) -> impl Iterator<Item = (&str, f64, u32)> {
        self.names
            .iter()
            .zip(self.state.iter())
            .map(|(n, s)| (n.as_str(), s.max_risk_after_min, s.profile.requests))
    }

    /// The report: every account with its verdict, risk and reasons
    /// (`all`: also accounts that stayed "allow").
    pub fn report(&self, all: bool) -> Report {
        let mut accounts: Vec<AccountReport> = Vec::new();
        for (i, st) in self.state.iter().enumerate() {
            let verdict = st.verdict.unwrap_or(Verdict::Allow);
            if !all && verdict == Verdict::Allow {
                continue;
            }
            accounts.push(AccountReport {
                account_id: self.names[i].clone(),
                risk: (st.max_risk * 1e4).round() / 1e4,
                verdict,
                flagged_at: st.flagged_at,
                reasons: self.reasons(st),
                campaign_id: None,
                samples: Vec::new(),
            });
        }
        accounts.sort_by(|a, b| {
            b.risk
                .total_cmp(&a.risk)
                .then(a.account_id.cmp(&b.account_id))
        });
        let mut stats = serde_json::Map::new();
        stats.insert("events".into(), self.events.into());
        stats.insert("accounts".into(), (self.state.len() as u64).into());
        for v in [Verdict::Monitor, Verdict::Throttle, Verdict::Block] {
            let n = self.state.iter().filter(|s| s.verdict == Some(v)).count() as u64;
            stats.insert(format!("verdict_{}", v.as_str()), n.into());
        }
        Report {
            version: 1,
            stats,
            accounts,
            campaigns: Vec::new(),
        }
    }

    fn reasons(&self, st: &AccountState) -> Vec<Reason> {
        let x = features(st);
        let mut details: Vec<String> = st
            .profile
            .features()
            .into_iter()
            .map(|f| f.detail)
            .collect();
        details.push(format!("signup and origin risk {:.2}", st.static_risk));
        details.push(format!(
            "{} of {} prompts open or close like prompts of ≥ {SHARED_ACCOUNTS} other accounts",
            st.shared, st.informative
        ));
        details.push(format!("{} requests", st.profile.requests));
        details.push(format!(
            "about {:.0} distinct prompts in {} requests",
            st.distinct.estimate(),
            st.profile.requests
        ));
        let mut r: Vec<Reason> = FEATURES
            .iter()
            .enumerate()
            .map(|(i, n)| Reason {
                signal: n.to_string(),
                value: (x[i] * 1e4).round() / 1e4,
                contribution: (self.weights[i] * x[i] * 1e4).round() / 1e4,
                detail: details[i].clone(),
            })
            .collect();
        r.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        r
    }
}

fn features(st: &AccountState) -> [f64; NF] {
    let v = st.profile.values();
    let n = st.profile.requests as f64;
    let mut x = [0.0; NF];
    x[..9].copy_from_slice(&v);
    x[9] = st.static_risk;
    x[10] = if st.informative == 0 {
        0.0
    } else {
        st.shared as f64 / st.informative as f64
    };
    x[11] = ((1.0 + n).ln() / 100f64.ln()).min(1.0);
    // Re-sent prompts: 1 − distinct / requests, once there are enough requests
    // for the distinct-count estimate (±13%) to mean something.
    x[12] = if n < 20.0 {
        0.0
    } else {
        (1.0 - st.distinct.estimate() / n).clamp(0.0, 1.0)
    };
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_validates_and_rejects_unknown_fields() {
        let c: Config = toml_like(
            r#"{"weights":"w.json","thresholds":{"monitor":0.5,"throttle":0.9,"block":0.99,"min_requests":8}}"#,
        );
        assert_eq!(c.thresholds.unwrap().min_requests, 8);
        assert!(c.thresholds.unwrap().validate().is_ok());
        let bad = Thresholds {
            monitor: 0.9,
            throttle: 0.5,
            block: 0.99,
            min_requests: 5,
        };
        assert!(bad.validate().unwrap_err().contains("monitor ≤ throttle"));
        assert!(serde_json::from_str::<Config>(r#"{"wieghts":"x"}"#).is_err());
        // Partial thresholds take defaults for the rest.
        let c: Config = toml_like(r#"{"thresholds":{"throttle":0.95}}"#);
        assert_eq!(
            c.thresholds.unwrap().min_requests,
            Thresholds::default().min_requests
        );
    }

    fn toml_like(json: &str) -> Config {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn datacenter_origin_reaches_the_account_risk() {
        let line = |org: &str| {
            format!(
                r#"{{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{{"messages":[{{"role":"user","content":"hi"}}]}},"client":{{"asn_org":"{org}"}}}}"#
            )
        };
        let w = Weights::embedded();
        let risk = |org: &str| {
            let e = distillguard_core::parse_event_line(&line(org)).unwrap();
            let mut engine = Engine::new(&w, w.thresholds, &[], HashMap::new());
            let idx = engine.process(&pre(&e));
            engine.feature_vector(idx)[9]
        };
        assert!(
            risk("Hetzner Online GmbH") >= 0.3,
            "{}",
            risk("Hetzner Online GmbH")
        );
        assert_eq!(risk("Comcast Cable Communications"), 0.0);
    }

    #[test]
    fn embedded_weights_cover_every_feature() {
        let w = Weights::embedded();
        assert!(!w.provenance.starts_with("fallback"), "{}", w.provenance);
        for f in FEATURES {
            assert!(w.weights.contains_key(f), "{f}");
        }
    }
}
