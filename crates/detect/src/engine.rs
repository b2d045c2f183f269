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
use crate::signals::request::{Text, capability, elicitation, harvesting, shape};

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

/// Features whose weight the fit keeps at zero or above ([`crate::fit::fit_nonneg`]):
/// behaviours the disclosures name as attack signs, which in the training
/// world busy honest products show more than thinly spread campaigns do.
pub const NON_NEGATIVE: [&str; 2] = ["volume", "pivot"];

/// What the fold needs from one event.
#[derive(Debug, Clone)]
pub struct Pre {
    pub ts: Timestamp,
    pub account_id: String,
    /// Hash of the account id: the tie-break of the time order.
    pub account_key: u64,
    pub model: u64,
    pub max_tokens: u32,
    /// Output tokens of the answer (0 when the log has none).
    pub output_tokens: u32,
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
    /// The request's stream inside its account: a hash of API key, user
    /// agent and system prompt ([`stream_key`]).
    pub stream: u64,
    /// A short label of the stream for reasons (API key id and user agent).
    pub stream_label: String,
}

/// The stream a request belongs to inside its account: one API key, one
/// client (user agent) and one system prompt. A reseller's account carries
/// its customers' chat and a harvesting script side by side; their averages
/// hide the script, their streams do not. The client IP is left out on
/// purpose: phones and home routers change address within a person's
/// session, and proxy pools rotate it per request, which would split one
/// script into thousands of streams.
pub fn stream_key(api_key: Option<&str>, user_agent: Option<&str>, system: Option<&str>) -> u64 {
    let h = |x: Option<&str>| x.map_or(0, |t| distillguard_sketches::hash_exact(t.as_bytes()));
    distillguard_sketches::mix64(
        h(api_key) ^ h(user_agent).rotate_left(21) ^ h(system).rotate_left(42),
    )
}

fn stream_label(api_key: Option<&str>, user_agent: Option<&str>) -> String {
    let mut l = format!(
        "key {} · {}",
        api_key.unwrap_or("–"),
        user_agent.unwrap_or("no user agent")
    );
    if l.len() > 72 {
        let mut cut = 72;
        while !l.is_char_boundary(cut) {
            cut -= 1;
        }
        l.truncate(cut);
        l.push('…');
    }
    l
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
    let user = Text::new(&e.request.last_user_text);
    let system = e.request.system_prompt.as_deref().map(Text::new);
    let h = harvesting::measure(e, 0);
    let s = shape::measure(e, &user);
    Pre {
        ts: e.ts,
        account_id: e.account_id.clone(),
        model: distillguard_sketches::hash_bytes(e.model.as_deref().unwrap_or("").as_bytes()),
        max_tokens: e.request.sampling.max_tokens.unwrap_or(0),
        output_tokens: e
            .response
            .as_ref()
            .and_then(|r| r.output_tokens)
            .unwrap_or(0),
        elicits: elicitation::detect(&user, system.as_ref()).is_some(),
        capability: capability::classify(e, &user),
        logprobs: h.logprobs,
        multi_sample: h.samples > 1,
        settings_key: h.settings_key,
        single_shot: s.single_shot,
        refers_back: s.refers_back,
        template: Fingerprint::edges(&e.request.last_user_text, &mut Vec::new())
            .filter(|k| k[0] != 0),
        exact: distillguard_sketches::hash_exact(e.request.last_user_text.as_bytes()),
        account_key: distillguard_sketches::hash_exact(e.account_id.as_bytes()),
        hosting_org: e.client.asn_org.clone().filter(|o| account::is_hosting(o)),
        client_country: e.client.country.clone(),
        account: e.account.clone(),
        model_name: e.model.clone(),
        stream: stream_key(
            e.api_key_id.as_deref(),
            e.client.user_agent.as_deref(),
            e.request.system_prompt.as_deref(),
        ),
        stream_label: stream_label(e.api_key_id.as_deref(), e.client.user_agent.as_deref()),
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
            min_requests: 3,
        }
    }
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

/// Streams tracked below an account once it shows a second one.
pub const STREAM_SLOTS: usize = 2;
/// A new stream may replace a tracked one that has fewer requests than this.
const EVICT_BELOW: u32 = 20;

/// One stream's own profile (see [`stream_key`]).
#[derive(Debug, Clone, Default)]
struct Slot {
    key: u64,
    label: String,
    profile: AccountProfile,
    shared: u32,
    informative: u32,
    max_risk: f64,
}

#[derive(Debug, Clone, Default)]
struct AccountState {
    profile: AccountProfile,
    first_stream: u64,
    first_label: String,
    /// Allocated only for accounts with more than one stream.
    streams: Option<Box<[Slot; STREAM_SLOTS]>>,
    /// Distinct exact prompts (64 one-byte registers).
    distinct: distillguard_sketches::hll::Hll<6>,
    static_risk: f64,
    shared: u32,
    informative: u32,
    risk: f64,
    /// The risk after the latest request: the account's or its stream's.
    last_risk: f64,
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
                profile: AccountProfile::for_tier(info.and_then(|i| i.tier.as_deref())),
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
            output_tokens: p.output_tokens,
        };
        let (bias, weights) = (self.bias, self.weights);
        let score = |x: &[f64; NF]| {
            sigmoid(
                bias + weights
                    .iter()
                    .zip(x.iter())
                    .map(|(w, v)| w * v)
                    .sum::<f64>(),
            )
        };
        let st = &mut self.state[idx as usize];
        let mut wide = false;
        if let Some(keys) = p.template {
            st.informative += 1;
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
        // Streams below the account: opened when a second one shows up (the
        // account's history until then is the first stream's).
        if st.profile.requests == 0 {
            st.first_stream = p.stream;
            st.first_label = p.stream_label.clone();
        } else if st.streams.is_none() && p.stream != st.first_stream {
            let mut slots: Box<[Slot; STREAM_SLOTS]> = Default::default();
            slots[0] = Slot {
                key: st.first_stream,
                label: std::mem::take(&mut st.first_label),
                profile: st.profile.clone(),
                shared: st.shared - wide as u32,
                informative: st.informative - p.template.is_some() as u32,
                max_risk: st.max_risk,
            };
            slots[1].profile = st.profile.empty_like();
            st.streams = Some(slots);
        }
        st.profile.observe(&obs);
        st.distinct.add(p.exact);
        let risk = score(&features(
            &st.profile,
            st.static_risk,
            st.shared,
            st.informative,
            &st.distinct,
        ));
        st.risk = risk;
        st.max_risk = st.max_risk.max(risk);
        let t = self.thresholds;
        // The stream's own risk counts once the stream alone has enough requests.
        let mut stream_risk = 0.0;
        if let Some(slots) = st.streams.as_mut() {
            let at = match slots.iter().position(|s| s.key == p.stream) {
                Some(i) => Some(i),
                None => {
                    // A new stream takes the slot of the smallest one, if that
                    // one is still small (the account's profile sees all).
                    let (i, small) = slots
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| s.profile.requests)
                        .map_or((0, u32::MAX), |(i, s)| (i, s.profile.requests));
                    (small < EVICT_BELOW).then(|| {
                        slots[i] = Slot {
                            key: p.stream,
                            label: p.stream_label.clone(),
                            profile: st.profile.empty_like(),
                            ..Default::default()
                        };
                        i
                    })
                }
            };
            if let Some(i) = at {
                let s = &mut slots[i];
                s.informative += p.template.is_some() as u32;
                s.shared += wide as u32;
                s.profile.observe(&obs);
                let r = score(&features(
                    &s.profile,
                    st.static_risk,
                    s.shared,
                    s.informative,
                    &st.distinct,
                ));
                if s.profile.requests >= t.min_requests {
                    s.max_risk = s.max_risk.max(r);
                    stream_risk = r;
                }
            }
        }
        let risk = risk.max(stream_risk);
        st.last_risk = risk;
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
        account_features(&self.state[idx as usize])
    }

    /// The account's risk after its latest request (account or stream).
    pub fn risk_now(&self, idx: u32) -> f64 {
        self.state[idx as usize].last_risk
    }

    /// The account's verdict so far.
    pub fn verdict_of(&self, idx: u32) -> Verdict {
        self.state[idx as usize].verdict.unwrap_or(Verdict::Allow)
    }

    /// Whether the account has been flagged (throttle or above).
    pub fn is_flagged(&self, idx: u32) -> bool {
        self.state[idx as usize]
            .verdict
            .is_some_and(|v| v.is_flagged())
    }

    /// Account ids by index.
    pub fn names(&self) -> &[String] {
        &self.names
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
                risk: (Engine::top_stream(st).map_or(st.max_risk, |s| s.max_risk) * 1e4).round()
                    / 1e4,
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

    /// The stream whose risk went above the account's own, if any.
    fn top_stream(st: &AccountState) -> Option<&Slot> {
        st.streams.as_ref().and_then(|slots| {
            slots
                .iter()
                .filter(|s| s.max_risk > st.max_risk)
                .max_by(|a, b| a.max_risk.total_cmp(&b.max_risk))
        })
    }

    /// Reasons from the account's whole traffic, or from its riskiest stream
    /// when that stream scored higher than the account (its lines say so).
    fn reasons(&self, st: &AccountState) -> Vec<Reason> {
        let (profile, shared, informative, prefix) = match Engine::top_stream(st) {
            Some(s) => (
                &s.profile,
                s.shared,
                s.informative,
                format!(
                    "in stream {} ({} of {} requests): ",
                    s.label, s.profile.requests, st.profile.requests
                ),
            ),
            None => (&st.profile, st.shared, st.informative, String::new()),
        };
        let x = features(profile, st.static_risk, shared, informative, &st.distinct);
        let mut details: Vec<String> = profile
            .features()
            .into_iter()
            .map(|f| format!("{prefix}{}", f.detail))
            .collect();
        details.push(format!("signup and origin risk {:.2}", st.static_risk));
        details.push(format!(
            "{prefix}{shared} of {informative} prompts open or close like prompts of ≥ {SHARED_ACCOUNTS} other accounts"
        ));
        details.push(format!("{prefix}{} requests", profile.requests));
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

fn features(
    profile: &AccountProfile,
    static_risk: f64,
    shared: u32,
    informative: u32,
    distinct: &distillguard_sketches::hll::Hll<6>,
) -> [f64; NF] {
    let v = profile.values();
    let n = profile.requests as f64;
    let mut x = [0.0; NF];
    x[..10].copy_from_slice(&v);
    x[10] = static_risk;
    x[11] = if informative == 0 {
        0.0
    } else {
        shared as f64 / informative as f64
    };
    x[12] = ((1.0 + n).ln() / 100f64.ln()).min(1.0);
    // Re-sent prompts: 1 − distinct / requests, once there are enough requests
    // for the distinct-count estimate (±13%) to mean something. (A stream
    // uses its account's distinct count.)
    x[13] = if n < 20.0 {
        0.0
    } else {
        (1.0 - distinct.estimate() / n).clamp(0.0, 1.0)
    };
    x
}

fn account_features(st: &AccountState) -> [f64; NF] {
    features(
        &st.profile,
        st.static_risk,
        st.shared,
        st.informative,
        &st.distinct,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::parse_event_line;

    #[test]
    fn thresholds_are_validated() {
        assert!(Thresholds::default().validate().is_ok());
        let bad = Thresholds {
            monitor: 0.9,
            throttle: 0.5,
            block: 0.99,
            min_requests: 5,
        };
        assert!(bad.validate().unwrap_err().contains("monitor ≤ throttle"));
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
            engine.feature_vector(idx)[10]
        };
        assert!(
            risk("Hetzner Online GmbH") >= 0.3,
            "{}",
            risk("Hetzner Online GmbH")
        );
        assert_eq!(risk("Comcast Cable Communications"), 0.0);
    }

    fn line(ts_s: i64, account: &str, key: &str, ua: &str, text: &str) -> String {
        format!(
            r#"{{"ts":"{}","account_id":"{account}","api_key_id":"{key}","request":{{"model":"m","max_tokens":8192,"messages":[{{"role":"user","content":{}}}]}},"client":{{"user_agent":"{ua}"}}}}"#,
            Timestamp(1_771_200_000_000 + ts_s * 1000),
            serde_json::to_string(text).unwrap()
        )
    }

    #[test]
    fn a_harvesting_stream_inside_a_mixed_account_is_scored_on_its_own() {
        let w = Weights::embedded();
        let mut engine = Engine::new(&w, w.thresholds, &[], HashMap::new());
        let chat = [
            "what should I cook tonight with leftover rice and two eggs",
            "can you make that shorter and friendlier for my aunt",
            "ok and what about a vegetarian version of the same thing",
            "how far is it from lyon to geneva by train",
        ];
        for i in 0..400i64 {
            // The reseller's customers: varied chat through its gateway key.
            let e = line(
                i * 37,
                "reseller",
                "key_gw",
                "Go-http-client/1.1",
                chat[i as usize % 4],
            );
            engine.process(&pre(&parse_event_line(&e).unwrap()));
            // Its own script: one template, step-by-step, on another key.
            if i % 4 == 0 {
                let t = format!(
                    "Solve the following problem. Think step by step and show all of your reasoning before the final answer. Problem {i}: a train leaves at {} and travels {} km.",
                    i % 12,
                    i * 7
                );
                let e = line(i * 37 + 5, "reseller", "key_x", "python-httpx/0.27", &t);
                engine.process(&pre(&parse_event_line(&e).unwrap()));
            }
        }
        let report = engine.report(true);
        let a = &report.accounts[0];
        let whole = engine.feature_vector(0);
        // The account's averages dilute the script (a quarter of its traffic
        // elicits reasoning), its stream does not (all of it does).
        assert!(whole[0] < 0.3, "{}", whole[0]);
        let elicit = a
            .reasons
            .iter()
            .find(|r| r.signal == "elicitation_rate")
            .unwrap();
        assert!(elicit.value > 0.9, "{elicit:?}");
        assert!(
            elicit
                .detail
                .starts_with("in stream key key_x · python-httpx/0.27 (100 of 500 requests)"),
            "{}",
            elicit.detail
        );
    }

    #[test]
    fn a_single_stream_account_opens_no_slots() {
        let w = Weights::embedded();
        let mut engine = Engine::new(&w, w.thresholds, &[], HashMap::new());
        for i in 0..50 {
            let e = line(
                i * 60,
                "solo",
                "key_a",
                "curl/8",
                "hello there, how are you today?",
            );
            engine.process(&pre(&parse_event_line(&e).unwrap()));
        }
        assert!(engine.state[0].streams.is_none());
        let a = &engine.report(true).accounts[0];
        assert!(a.reasons.iter().all(|r| !r.detail.contains("in stream")));
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
