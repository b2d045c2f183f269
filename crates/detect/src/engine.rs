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

use distillguard_sketches::fxhash::FastMap;

use distillguard_core::report::{
    AccountReport, Escalation, KeyReport, Reason, Report, Timeline, Verdict,
};
use distillguard_core::time::MS_PER_DAY;
use distillguard_core::{AccountInfo, Event, Invalid, ModelRelease, Timestamp};
use distillguard_sketches::Fingerprint;
use distillguard_sketches::countmin::CountMin;
use serde::{Deserialize, Serialize};

use crate::signals::account::{self, AccountProfile, Observation};
use crate::signals::request::{Text, capability, elicitation, harvesting, learned, shape};

pub use crate::features::{BASE_FEATURES, FEATURES, NB, NF, NON_NEGATIVE};

impl crate::reorder::Timed for RequestSignals {
    fn order_key(&self) -> (i64, u64) {
        (self.ts.0, self.account_key)
    }
}

/// What the fold needs from one event.
#[derive(Debug, Clone)]
pub struct RequestSignals {
    pub ts: Timestamp,
    pub account_id: String,
    /// Hash of the account id: the tie-break of the time order.
    pub account_key: u64,
    pub model: u64,
    pub max_tokens: u32,
    /// Output tokens of the answer (0 when the log has none).
    pub output_tokens: u32,
    /// Elicitation strength in [0, 1] (see [`account::Observation::elicit`]).
    pub elicit: f32,
    /// The system prompt itself asks for reasoning.
    pub elicit_in_system: bool,
    pub reasoning_param: bool,
    pub capability: capability::Capability,
    pub logprobs: bool,
    pub multi_sample: bool,
    /// The explicitly set sampling parameters' key (`None`: defaults).
    pub settings_key: Option<u64>,
    pub single_shot: bool,
    pub refers_back: bool,
    pub template: Option<[u64; 2]>,
    /// Hash of the exact last user turn (re-sent prompts).
    pub exact: u64,
    /// Hash of the system prompt when it is long enough to be an
    /// application's own (0: none, or a short default).
    pub system: u64,
    /// The client's ASN organisation when it is a hosting provider (kept for
    /// the account's origin; honest home networks are not kept).
    pub hosting_org: Option<String>,
    pub client_country: Option<String>,
    pub account: Option<AccountInfo>,
    /// Model name, kept only to match releases.
    pub model_name: Option<String>,
    /// The request's entity inside its account: its API key, or its
    /// client ([`stream_key`]).
    pub stream: u64,
    /// A short label of the entity for reasons (API key id and user agent).
    pub stream_label: String,
    /// The API key's id, when the request had one.
    pub key_id: Option<String>,
}

/// The entity a request belongs to inside its account: its API key, or,
/// for traffic without keys, its client (user agent and system prompt). A
/// reseller's account carries its customers' keys and a harvesting key side
/// by side; their averages hide the harvest, the key's own profile does
/// not. The client IP is left out on purpose: phones and home routers
/// change address within a person's session, and proxy pools rotate it per
/// request, which would split one script into thousands of entities.
pub fn stream_key(api_key: Option<&str>, user_agent: Option<&str>, system: Option<&str>) -> u64 {
    let h = |x: Option<&str>| x.map_or(0, |t| distillguard_sketches::hash_exact(t.as_bytes()));
    match api_key {
        Some(k) => distillguard_sketches::mix64(h(Some(k)) ^ 0x4b45_5900),
        None => {
            distillguard_sketches::mix64(h(user_agent).rotate_left(21) ^ h(system).rotate_left(42))
        }
    }
}

fn stream_label(api_key: Option<&str>, user_agent: Option<&str>) -> String {
    // Built with `push_str`, not `format!`: it runs on every request.
    let (k, ua) = (
        api_key.unwrap_or("–"),
        user_agent.unwrap_or("no user agent"),
    );
    let mut l = String::with_capacity(4 + k.len() + 4 + ua.len());
    l.push_str("key ");
    l.push_str(k);
    l.push_str(" · ");
    l.push_str(ua);
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
pub fn time_order<T: crate::reorder::Timed>(items: &[T]) -> Vec<u32> {
    let mut keys: Vec<(i64, u64, u32)> = items
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (ts, account) = p.order_key();
            (ts, account, i as u32)
        })
        .collect();
    keys.sort_unstable();
    keys.into_iter().map(|k| k.2).collect()
}

/// Elicitation strength of a request: 1 when a phrase list matches (the
/// fast path), else the learned classifier's probability of the user turn
/// or the system prompt, whichever is higher; and whether the system
/// prompt itself asks for reasoning. System prompts repeat (a product
/// sends one on every request), so their phrase scan and probability are
/// cached per thread by the prompt's hash: (phrase hit, probability).
fn elicitation_of(e: &Event, user: &Text, system: Option<(&str, u64)>) -> (f32, bool) {
    thread_local! {
        static CACHE: std::cell::RefCell<FastMap<u64, (bool, f32)>> =
            std::cell::RefCell::new(FastMap::default());
    }
    let user_hit = elicitation::detect(user, None).is_some();
    let model = learned::Model::embedded();
    CACHE.with(|cell| {
        let Ok(mut cache) = cell.try_borrow_mut() else {
            let system_hit = system.is_some_and(|(s, _)| {
                elicitation::detect(&Text::default(), Some(&Text::new(s))).is_some()
            });
            return (user_hit as u8 as f32, system_hit);
        };
        // Below the model's threshold a probability is kept as a soft
        // score (an account's mean sees a wording the model half-knows);
        // at or above it, it counts as a match.
        let norm = |p: f32| if p >= model.threshold { 1.0 } else { p };
        let s = match system {
            Some((sys, h)) => {
                let (hit, p) = match cache.get(&h) {
                    Some(v) => *v,
                    None => {
                        let hit =
                            elicitation::detect(&Text::default(), Some(&Text::new(sys))).is_some();
                        let p = if hit { 1.0 } else { model.probability(sys) };
                        if cache.len() >= 4096 {
                            cache.clear();
                        }
                        cache.insert(h, (hit, p));
                        (hit, p)
                    }
                };
                if hit { 1.0 } else { norm(p) }
            }
            None => 0.0,
        };
        // When either side matched, the answer is 1 whatever the other.
        let u = if user_hit || s >= 1.0 {
            1.0
        } else {
            norm(model.probability(&e.request.last_user_text))
        };
        (u.max(s), s >= 1.0)
    })
}

/// Whether the API's extended reasoning was asked for (any effort or
/// budget but an explicit "none"/"minimal"/"disabled").
fn reasoning_param(e: &Event) -> bool {
    e.request.sampling.reasoning.as_deref().is_some_and(|r| {
        !matches!(
            r.trim().to_ascii_lowercase().as_str(),
            "" | "none" | "minimal" | "disabled" | "0"
        )
    })
}

/// Per-request signals of one event (pure: safe to run on any thread).
pub fn pre(e: &Event) -> RequestSignals {
    let user = Text::new(&e.request.last_user_text);
    let system = e
        .request
        .system_prompt
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| (s, distillguard_sketches::hash_exact(s.as_bytes())));
    let h = harvesting::measure(e, 0);
    let s = shape::measure(e, &user);
    let (elicit, elicit_in_system) = elicitation_of(e, &user, system);
    RequestSignals {
        ts: e.ts,
        account_id: e.account_id.clone(),
        model: distillguard_sketches::hash_bytes(e.model.as_deref().unwrap_or("").as_bytes()),
        max_tokens: e.request.sampling.max_tokens.unwrap_or(0),
        output_tokens: e
            .response
            .as_ref()
            .and_then(|r| r.output_tokens)
            .unwrap_or(0),
        elicit,
        elicit_in_system,
        reasoning_param: reasoning_param(e),
        capability: capability::classify(e, &user),
        logprobs: h.logprobs,
        multi_sample: h.samples > 1,
        settings_key: h.explicit.then_some(h.settings_key),
        single_shot: s.single_shot,
        refers_back: s.refers_back,
        template: Fingerprint::edges(&e.request.last_user_text).filter(|k| k[0] != 0),
        exact: distillguard_sketches::hash_exact(e.request.last_user_text.as_bytes()),
        system: system
            .filter(|(s, _)| s.chars().nth(SYSTEM_MIN_CHARS - 1).is_some())
            .map_or(0, |(_, h)| h),
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
        key_id: e.api_key_id.clone(),
    }
}

/// The score's model (`weights.json`): monotone trees over [`FEATURES`],
/// and the verdict thresholds set with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// How they were obtained (command, worlds, seeds).
    pub provenance: String,
    /// The features the model reads, in order (must be this build's
    /// [`FEATURES`]).
    pub features: Vec<String>,
    pub model: crate::trees::Forest,
    /// Verdict thresholds chosen with the model (on the training data).
    #[serde(default)]
    pub thresholds: Thresholds,
    /// How the thresholds were set: the false-positive budget and the
    /// honest score tail they were read off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

impl Weights {
    /// The embedded defaults (`weights.json`, written by `distillguard fit`).
    pub fn embedded() -> Weights {
        serde_json::from_str(include_str!("weights.json")).unwrap_or_else(|_| Weights {
            provenance: "fallback: the embedded weights did not parse".into(),
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            model: crate::trees::Forest {
                bias: -8.0,
                trees: Vec::new(),
            },
            thresholds: Thresholds::default(),
            calibration: None,
        })
    }

    /// Checks that the model reads this build's features and is monotone.
    pub fn check(&self) -> Result<(), Invalid> {
        let ours: Vec<&str> = FEATURES.to_vec();
        if self
            .features
            .iter()
            .map(String::as_str)
            .ne(ours.iter().copied())
        {
            return Err(Invalid(format!(
                "the model was fitted on features [{}]; this build scores [{}] (refit with `distillguard fit`)",
                self.features.join(", "),
                ours.join(", ")
            )));
        }
        if !self.model.is_monotone() {
            return Err("the model is not increasing in every feature".into());
        }
        self.thresholds.validate()
    }
}

/// How a fit set its thresholds (see `crate::fit::fit_tail`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// False-positive budget per honest account at `throttle` (`block`
    /// at a tenth of it, `monitor` at a hundred times it).
    pub budget: f64,
    pub tail: crate::fit::TailFit,
    /// Honest training accounts at or above `throttle` (the budget
    /// expects `budget × honest`).
    pub honest_flagged: u64,
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
    pub fn validate(&self) -> Result<(), Invalid> {
        let ok = |x: f64| (0.0..=1.0).contains(&x);
        if !(ok(self.monitor) && ok(self.throttle) && ok(self.block)) {
            return Err("thresholds must lie in [0, 1]".into());
        }
        if !(self.monitor <= self.throttle && self.throttle <= self.block) {
            return Err(Invalid(format!(
                "need monitor ≤ throttle ≤ block (got {}, {}, {})",
                self.monitor, self.throttle, self.block
            )));
        }
        Ok(())
    }
}

/// Accounts a template opening/closing must be seen in to count as shared.
pub const SHARED_ACCOUNTS: u32 = 5;

/// System prompts shorter than this are defaults ("You are a helpful
/// assistant."), shared by everyone; they never count as shared.
pub const SYSTEM_MIN_CHARS: usize = 60;

/// `max_tokens` below this never counts as "the model's maximum".
pub const AT_MAX_FLOOR: u32 = 4096;

/// Keys tracked below an account once it shows a second one.
pub const KEY_SLOTS: usize = 4;

/// Accounts that may hold key slots at once (each holds up to
/// [`KEY_SLOTS`]): the memory of key profiles is capped, whatever the
/// traffic (about 2 KiB per slot).
pub const MAX_SLOT_ACCOUNTS: usize = 1 << 18;

/// A key's own profile and verdict (see [`stream_key`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Slot {
    key: u64,
    label: String,
    key_id: Option<String>,
    profile: AccountProfile,
    shared: u32,
    informative: u32,
    /// Highest risk once the key had `min_requests`.
    max_risk: f64,
    last_risk: f64,
    verdict: Option<Verdict>,
    flagged_at: Option<Timestamp>,
    score_cache: (u64, f64),
}

impl Slot {
    /// A slot for the key of `p`, its profile empty but shaped like the
    /// account's `like` (the same origin and tier).
    fn fresh(p: &RequestSignals, like: &AccountProfile) -> Slot {
        Slot {
            key: p.stream,
            label: p.stream_label.clone(),
            key_id: p.key_id.clone(),
            profile: like.empty_like(),
            score_cache: (0, f64::NAN),
            ..Default::default()
        }
    }
}

/// An account's key slots (at most [`KEY_SLOTS`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Slots(Vec<Slot>);

impl std::ops::Deref for Slots {
    type Target = Vec<Slot>;
    fn deref(&self) -> &Vec<Slot> {
        &self.0
    }
}

impl std::ops::DerefMut for Slots {
    fn deref_mut(&mut self) -> &mut Vec<Slot> {
        &mut self.0
    }
}

/// A verdict that only escalates, with the time it was first flagged.
fn escalate(
    old: Option<Verdict>,
    requests: u32,
    risk: f64,
    t: &Thresholds,
    ts: Timestamp,
    flagged_at: &mut Option<Timestamp>,
) -> Verdict {
    let verdict = if requests < t.min_requests {
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
    let v = old.map_or(verdict, |o| o.max(verdict));
    if v.is_flagged() && flagged_at.is_none() {
        *flagged_at = Some(ts);
    }
    v
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AccountState {
    profile: AccountProfile,
    first_stream: u64,
    first_label: String,
    first_key: Option<String>,
    /// Key slots, allocated only for accounts with more than one key
    /// (boxed: one pointer for the accounts without).
    slots: Option<Box<Slots>>,
    /// Signup and origin features ([`account::origin`]).
    origin: [f32; 5],
    /// Requests whose system prompt asks for reasoning and is used by ≥
    /// `SHARED_ACCOUNTS` accounts.
    shared_system: u32,
    /// The last system prompt counted for this account (each account is
    /// counted once per prompt it switches to).
    last_system: u64,
    /// The last score and its cache key.
    score_cache: (u64, f64),
    shared: u32,
    informative: u32,
    risk: f64,
    /// The risk after the latest request: the account's or its key's.
    last_risk: f64,
    max_risk: f64,
    /// Highest risk once the account had `min_requests` (what verdicts use).
    max_risk_after_min: f64,
    /// The verdict in force: the account's own or one of its keys'.
    verdict: Option<Verdict>,
    flagged_at: Option<Timestamp>,
    monitored_at: Option<Timestamp>,
    /// The verdict of the account's whole traffic alone.
    own_verdict: Option<Verdict>,
    own_flagged_at: Option<Timestamp>,
    /// The verdict and risk of the latest request's key.
    last_key: (Verdict, f64),
    /// The account's history, when the engine keeps timelines.
    timeline: Option<Box<Timeline>>,
}

/// The engine: feed [`RequestSignals`] records in time order. It is
/// saved and restored whole (`serde`): a detector worker's snapshot.
#[derive(Serialize, Deserialize)]
pub struct Engine {
    model: crate::trees::Forest,
    /// Score cache keys (see [`crate::trees::Binner`]).
    binner: crate::trees::Binner,
    pub thresholds: Thresholds,
    releases: Vec<(u64, i64)>,
    accounts_info: HashMap<String, AccountInfo>,
    ids: FastMap<String, u32>,
    names: Vec<String>,
    state: Vec<AccountState>,
    model_max: FastMap<u64, u32>,
    edges: CountMin,
    /// Accounts per system prompt.
    systems: CountMin,
    /// Exact prompts seen lately (the last 4–8 million).
    exacts: distillguard_sketches::bloom::Rotating,
    /// Requests per key (which keys are heavy enough for a slot).
    key_requests: CountMin,
    /// Accounts holding key slots (capped at [`MAX_SLOT_ACCOUNTS`]).
    slot_accounts: usize,
    /// Indices of forgotten accounts, reused by new ones ([`Engine::forget`]).
    free: Vec<u32>,
    /// Accounts forgotten so far.
    pub forgotten: u64,
    pub events: u64,
    /// Whether each account's history is kept ([`Engine::keep_timelines`]).
    timelines: bool,
}

/// Width of a risk histogram bin on the −log10(1 − risk) scale.
pub const HISTOGRAM_STEP: f64 = 0.1;
/// Bins of the risk histogram (the last holds risk ≥ 1 − 10⁻⁵).
pub const HISTOGRAM_BINS: usize = 50;

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
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
            model: weights.model.clone(),
            binner: crate::trees::Binner::new(&weights.model, NF),
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
            ids: FastMap::default(),
            names: Vec::new(),
            state: Vec::new(),
            model_max: FastMap::default(),
            edges: CountMin::new(20),
            systems: CountMin::new(18),
            exacts: distillguard_sketches::bloom::Rotating::new(26, 4_000_000),
            key_requests: CountMin::new(18),
            slot_accounts: 0,
            free: Vec::new(),
            forgotten: 0,
            events: 0,
            timelines: false,
        }
    }

    /// Keeps each account's history from now on: its escalations with the
    /// reasons of the moment, its risk over time and its requests per hour
    /// and day (a [`Timeline`], at most about 1.5 KiB an account). Off by
    /// default: analyses of millions of accounts do not pay for it.
    pub fn keep_timelines(&mut self, on: bool) {
        self.timelines = on;
    }

    /// Folds one request; returns the account's index.
    pub fn process(&mut self, p: &RequestSignals) -> u32 {
        self.events += 1;
        let n = self.free.last().copied().unwrap_or(self.names.len() as u32);
        let idx = *self.ids.entry(p.account_id.clone()).or_insert(n);
        if idx == n {
            let info = self.accounts_info.get(&p.account_id).or(p.account.as_ref());
            let (origin, _) = account::origin(
                info,
                p.ts,
                p.hosting_org.as_deref(),
                p.client_country.as_deref(),
            );
            let st = AccountState {
                origin: origin.map(|v| v as f32),
                profile: AccountProfile::for_tier(info.and_then(|i| i.tier.as_deref())),
                ..Default::default()
            };
            if self.free.last() == Some(&n) {
                self.free.pop();
                self.names[n as usize] = p.account_id.clone();
                self.state[n as usize] = st;
            } else {
                self.names.push(p.account_id.clone());
                self.state.push(st);
            }
        }
        let max = self.model_max.entry(p.model).or_insert(0);
        *max = (*max).max(p.max_tokens);
        // At the model's largest output seen so far, and a large one: a
        // first request of 1,024 tokens is not "the maximum".
        let at_max = p.max_tokens >= AT_MAX_FLOOR && p.max_tokens as f64 >= 0.95 * *max as f64;
        let ts = p.ts.0;
        let fresh = |at: i64| ts >= at && ts - at < MS_PER_DAY;
        let mut obs = Observation {
            ts: p.ts,
            elicit: p.elicit,
            elicit_in_system: p.elicit_in_system,
            reasoning_param: p.reasoning_param,
            capability: p.capability,
            logprobs: p.logprobs,
            multi_sample: p.multi_sample,
            at_max_tokens: at_max,
            settings_key: p.settings_key,
            single_shot: p.single_shot,
            refers_back: p.refers_back,
            template: p.template,
            exact: p.exact,
            fresh_template: false,
            new_model: self
                .releases
                .iter()
                .any(|(m, at)| *m == p.model && fresh(*at)),
            release_window: self.releases.iter().any(|(_, at)| fresh(*at)),
            output_tokens: p.output_tokens,
        };
        let (model, binner) = (&self.model, &self.binner);
        // Rescore only when a feature crossed one of the model's cut points.
        let score = |x: &[f64; NF], cache: &mut (u64, f64)| {
            let k = binner.key(x);
            if k != cache.0 || cache.1.is_nan() {
                *cache = (k, sigmoid(model.logit(x)));
            }
            cache.1
        };
        let seen_exact = self.exacts.insert(p.exact);
        let st = &mut self.state[idx as usize];
        let own_repeat = p
            .template
            .is_some_and(|e| e.iter().any(|k| st.profile.holds_template(*k)));
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
        obs.fresh_template = p.template.is_some() && (wide || own_repeat) && !seen_exact;
        if p.system != 0 {
            let est = if st.last_system == p.system {
                self.systems.estimate(p.system)
            } else {
                st.last_system = p.system;
                self.systems.add(p.system)
            };
            st.shared_system += (p.elicit_in_system && est >= SHARED_ACCOUNTS) as u32;
        }
        let t = self.thresholds;
        let key_requests = self.key_requests.add(p.stream);
        // Keys below the account: slots open when a second key shows up
        // (the account's history until then is the first key's).
        if st.profile.requests == 0 {
            st.first_stream = p.stream;
            st.first_label = p.stream_label.clone();
            st.first_key = p.key_id.clone();
        } else if st.slots.is_none()
            && p.stream != st.first_stream
            && self.slot_accounts < MAX_SLOT_ACCOUNTS
        {
            self.slot_accounts += 1;
            let mut slots = Vec::with_capacity(KEY_SLOTS);
            slots.push(Slot {
                key: st.first_stream,
                label: std::mem::take(&mut st.first_label),
                key_id: st.first_key.take(),
                profile: st.profile.clone(),
                shared: st.shared - wide as u32,
                informative: st.informative - p.template.is_some() as u32,
                max_risk: st.max_risk_after_min,
                last_risk: st.last_risk,
                verdict: st.own_verdict,
                flagged_at: st.own_flagged_at,
                score_cache: (0, f64::NAN),
            });
            st.slots = Some(Box::new(Slots(slots)));
        }
        st.profile.observe(&obs);
        let risk = score(
            &features(
                &st.profile,
                &st.origin,
                st.shared,
                st.informative,
                st.shared_system,
            ),
            &mut st.score_cache,
        );
        st.risk = risk;
        st.max_risk = st.max_risk.max(risk);
        st.own_verdict = Some(escalate(
            st.own_verdict,
            st.profile.requests,
            risk,
            &t,
            p.ts,
            &mut st.own_flagged_at,
        ));
        // The key's own risk counts once the key alone has enough requests.
        let mut key_risk = 0.0;
        st.last_key = (st.own_verdict.unwrap_or(Verdict::Allow), risk);
        if let Some(slots) = st.slots.as_mut() {
            let at = match slots.iter().position(|s| s.key == p.stream) {
                Some(i) => Some(i),
                None if slots.len() < KEY_SLOTS => {
                    slots.push(Slot::fresh(p, &st.profile));
                    Some(slots.len() - 1)
                }
                None => {
                    // A key heavier than the lightest unflagged tracked one
                    // takes its slot (Space-Saving's rule). Both weights are
                    // the keys' whole counts, not requests since a key took
                    // its slot: otherwise a key that just entered is the
                    // lightest, the next key evicts it, and an account with
                    // many keys of like weight churns its slots without any
                    // key ever gathering a profile.
                    let counts = &self.key_requests;
                    let lightest = slots
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| !s.verdict.is_some_and(Verdict::is_flagged))
                        .map(|(i, s)| (i, counts.estimate(s.key)))
                        .min_by_key(|&(_, n)| n);
                    match lightest {
                        Some((i, n)) if key_requests > n => {
                            slots[i] = Slot::fresh(p, &st.profile);
                            Some(i)
                        }
                        _ => None,
                    }
                }
            };
            if let Some(i) = at {
                let s = &mut slots[i];
                s.informative += p.template.is_some() as u32;
                s.shared += wide as u32;
                s.profile.observe(&obs);
                let r = score(
                    &features(
                        &s.profile,
                        &st.origin,
                        s.shared,
                        s.informative,
                        st.shared_system,
                    ),
                    &mut s.score_cache,
                );
                s.last_risk = r;
                s.verdict = Some(escalate(
                    s.verdict,
                    s.profile.requests,
                    r,
                    &t,
                    p.ts,
                    &mut s.flagged_at,
                ));
                if s.profile.requests >= t.min_requests {
                    s.max_risk = s.max_risk.max(r);
                    key_risk = r;
                }
                st.last_key = (s.verdict.unwrap_or(Verdict::Allow), r);
            }
        }
        let risk = risk.max(key_risk);
        st.last_risk = risk;
        if st.profile.requests >= t.min_requests {
            st.max_risk_after_min = st.max_risk_after_min.max(risk);
        }
        // The account's verdict: its own, or a key's (a key reaches its
        // own verdict on its own requests).
        let keys_max = st.slots.as_ref().map_or(Verdict::Allow, |slots| {
            slots
                .iter()
                .filter_map(|s| s.verdict)
                .max()
                .unwrap_or(Verdict::Allow)
        });
        let v = st
            .own_verdict
            .unwrap_or(Verdict::Allow)
            .max(keys_max)
            .max(st.verdict.unwrap_or(Verdict::Allow));
        if v.is_flagged() && st.flagged_at.is_none() {
            st.flagged_at = Some(p.ts);
        }
        if v >= Verdict::Monitor && st.monitored_at.is_none() {
            st.monitored_at = Some(p.ts);
        }
        let before = st.verdict.unwrap_or(Verdict::Allow);
        st.verdict = Some(v);
        if self.timelines {
            let requests = st.profile.requests;
            // Named only on a change: the per-request path allocates nothing.
            let by = (v != before).then(|| {
                if v > st.own_verdict.unwrap_or(Verdict::Allow) {
                    format!("key {}", p.key_id.as_deref().unwrap_or(&p.stream_label))
                } else {
                    "score".to_string()
                }
            });
            let t = st.timeline.get_or_insert_with(Box::default);
            t.count(p.ts);
            t.record_risk(p.ts, risk, requests);
            if let Some(by) = by {
                let mut reasons = self.reasons(&self.state[idx as usize]);
                reasons.truncate(Timeline::REASONS);
                if let Some(t) = self.state[idx as usize].timeline.as_mut() {
                    t.escalate(Escalation {
                        ts: p.ts,
                        verdict: v,
                        risk: round4(risk),
                        requests,
                        by,
                        reasons,
                    });
                }
            }
        }
        idx
    }

    /// Records an escalation the engine did not make (a campaign's block,
    /// an operator's decision) in the account's timeline, if it keeps one.
    pub fn note_escalation(&mut self, account: &str, e: Escalation) {
        if let Some(t) = self
            .ids
            .get(account)
            .and_then(|&i| self.state.get_mut(i as usize))
            .and_then(|st| st.timeline.as_mut())
        {
            t.escalate(e);
        }
    }

    /// Accounts tracked now (forgotten ones excluded).
    pub fn live_accounts(&self) -> usize {
        self.ids.len()
    }

    /// When the account last sent a request (ms since the epoch).
    pub fn last_seen(&self, idx: u32) -> i64 {
        self.state[idx as usize].profile.last_seen()
    }

    /// Whether the account may be forgotten: it is tracked, has no account
    /// record (records are the operator's, and linking keys on them), and
    /// nothing about it ever rose to `monitor`. What is forgotten is then
    /// only an honest-looking history, which a returning client rebuilds.
    pub fn forgettable(&self, idx: u32) -> bool {
        let (Some(st), Some(name)) = (self.state.get(idx as usize), self.names.get(idx as usize))
        else {
            return false;
        };
        !name.is_empty()
            && !self.accounts_info.contains_key(name)
            && st.verdict.is_none_or(|v| v == Verdict::Allow)
            && st.own_verdict.is_none_or(|v| v == Verdict::Allow)
            && st.monitored_at.is_none()
            && st.flagged_at.is_none()
            && st.max_risk < self.thresholds.monitor
            && st.last_key.0 == Verdict::Allow
    }

    /// Frees a [`Engine::forgettable`] account's state; its index is reused
    /// by the next new account. Bounds memory where accounts are not
    /// provisioned (one per client address without keys): without it, a
    /// stream of fresh addresses grows the engine for ever. Returns whether
    /// it was forgotten.
    pub fn forget(&mut self, idx: u32) -> bool {
        if !self.forgettable(idx) {
            return false;
        }
        let name = std::mem::take(&mut self.names[idx as usize]);
        self.ids.remove(&name);
        let st = std::mem::take(&mut self.state[idx as usize]);
        if st.slots.is_some() {
            self.slot_accounts = self.slot_accounts.saturating_sub(1);
        }
        self.free.push(idx);
        self.forgotten += 1;
        true
    }

    /// The account's current terms (what the weights multiply; for fitting).
    pub fn feature_vector(&self, idx: u32) -> [f64; NF] {
        account_features(&self.state[idx as usize])
    }

    /// The account's current base features ([`BASE_FEATURES`]).
    pub fn base_vector(&self, idx: u32) -> [f64; NB] {
        let st = &self.state[idx as usize];
        base_features(
            &st.profile,
            &st.origin,
            st.shared,
            st.informative,
            st.shared_system,
        )
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

    /// The highest risk the account reached once it had `min_requests`
    /// (what verdicts are taken on).
    pub fn max_risk_of(&self, idx: u32) -> f64 {
        self.state[idx as usize].max_risk_after_min
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
            .filter(|(n, _)| !n.is_empty())
            .map(|(n, s)| (n.as_str(), s.max_risk_after_min, s.profile.requests))
    }

    /// The verdict of the account's whole traffic alone (not raised by a
    /// key): what to enforce on the account when a key is acted on alone.
    pub fn own_verdict_of(&self, idx: u32) -> Verdict {
        self.state[idx as usize]
            .own_verdict
            .unwrap_or(Verdict::Allow)
    }

    /// The verdict and risk of the latest request's key (the account's own
    /// while it has one key).
    pub fn key_now(&self, idx: u32) -> (Verdict, f64) {
        self.state[idx as usize].last_key
    }

    /// The report: every account with its verdict, risk and reasons, and
    /// its keys (`all`: also accounts and keys that stayed "allow").
    pub fn report(&self, all: bool) -> Report {
        self.report_including(all, &|_| false)
    }

    /// As [`Engine::report`], with the accounts named by `also` included
    /// whatever their verdict (campaign members and partner-indicator
    /// matches, whose verdicts are raised afterwards). Reasons are built
    /// only for the accounts reported: at a million accounts, building
    /// them all took gigabytes.
    pub fn report_including(&self, all: bool, also: &dyn Fn(&str) -> bool) -> Report {
        let mut accounts: Vec<AccountReport> = Vec::new();
        let mut keys: Vec<KeyReport> = Vec::new();
        for (i, st) in self.state.iter().enumerate() {
            let verdict = st.verdict.unwrap_or(Verdict::Allow);
            let name = &self.names[i];
            if name.is_empty() {
                continue; // forgotten
            }
            match st.slots.as_deref() {
                Some(slots) => {
                    for s in slots.iter() {
                        let v = s.verdict.unwrap_or(Verdict::Allow);
                        if all || v > Verdict::Allow {
                            keys.push(KeyReport {
                                key_id: s.key_id.clone().unwrap_or_else(|| s.label.clone()),
                                account_id: name.clone(),
                                risk: round4(s.max_risk),
                                verdict: v,
                                flagged_at: s.flagged_at,
                                requests: u64::from(s.profile.requests),
                                reasons: self.reasons_of(st, Some(s)),
                            });
                        }
                    }
                }
                None => {
                    let v = st.own_verdict.unwrap_or(Verdict::Allow);
                    if all || v > Verdict::Allow {
                        keys.push(KeyReport {
                            key_id: st
                                .first_key
                                .clone()
                                .unwrap_or_else(|| st.first_label.clone()),
                            account_id: name.clone(),
                            risk: round4(st.max_risk_after_min),
                            verdict: v,
                            flagged_at: st.own_flagged_at,
                            requests: u64::from(st.profile.requests),
                            reasons: Vec::new(),
                        });
                    }
                }
            }
            if !all && verdict == Verdict::Allow && !also(name) {
                continue;
            }
            accounts.push(AccountReport {
                account_id: name.clone(),
                risk: round4(Engine::top_stream(st).map_or(st.max_risk, |s| s.max_risk)),
                verdict,
                flagged_at: st.flagged_at,
                reasons: self.reasons(st),
                campaign_id: None,
                samples: Vec::new(),
                timeline: st.timeline.as_deref().cloned(),
            });
        }
        accounts.sort_by(|a, b| {
            b.risk
                .total_cmp(&a.risk)
                .then(a.account_id.cmp(&b.account_id))
        });
        keys.sort_by(|a, b| {
            b.verdict
                .cmp(&a.verdict)
                .then(b.risk.total_cmp(&a.risk))
                .then(a.key_id.cmp(&b.key_id))
        });
        let mut stats = serde_json::Map::new();
        stats.insert("events".into(), self.events.into());
        stats.insert("accounts".into(), (self.ids.len() as u64).into());
        if self.forgotten > 0 {
            stats.insert("accounts_forgotten".into(), self.forgotten.into());
        }
        for v in [Verdict::Monitor, Verdict::Throttle, Verdict::Block] {
            let n = self.state.iter().filter(|s| s.verdict == Some(v)).count() as u64;
            stats.insert(format!("verdict_{}", v.as_str()), n.into());
        }
        stats.insert(
            "keys_flagged".into(),
            (keys.iter().filter(|k| k.verdict.is_flagged()).count() as u64).into(),
        );
        let t = self.thresholds;
        stats.insert(
            "thresholds".into(),
            serde_json::json!({"monitor": t.monitor, "throttle": t.throttle, "block": t.block,
                               "min_requests": t.min_requests}),
        );
        stats.insert("risk_histogram".into(), self.risk_histogram());
        Report {
            version: 1,
            stats,
            accounts,
            campaigns: Vec::new(),
            keys,
        }
    }

    /// Every tracked account's highest risk (once it had `min_requests`;
    /// its latest before), binned on −log10(1 − risk) in steps of
    /// [`HISTOGRAM_STEP`]: the thresholds sit at 0.99 and above, where a
    /// linear scale puts everything in one bar.
    fn risk_histogram(&self) -> serde_json::Value {
        let mut counts = vec![0u64; HISTOGRAM_BINS];
        for (n, st) in self.names.iter().zip(&self.state) {
            if n.is_empty() {
                continue;
            }
            let r = if st.profile.requests >= self.thresholds.min_requests {
                st.max_risk_after_min
            } else {
                st.last_risk
            };
            let x = -(1.0 - r.clamp(0.0, 1.0)).max(1e-12).log10();
            let b = ((x / HISTOGRAM_STEP) as usize).min(HISTOGRAM_BINS - 1);
            counts[b] += 1;
        }
        serde_json::json!({"scale": "-log10(1-risk)", "step": HISTOGRAM_STEP, "counts": counts})
    }

    /// The key whose risk went above the account's own, if any.
    fn top_stream(st: &AccountState) -> Option<&Slot> {
        st.slots.as_deref().and_then(|slots| {
            slots
                .iter()
                .filter(|s| s.max_risk > st.max_risk)
                .max_by(|a, b| a.max_risk.total_cmp(&b.max_risk))
        })
    }

    /// Reasons from the account's whole traffic, or from its riskiest key
    /// when that key scored higher than the account (its lines say so).
    fn reasons(&self, st: &AccountState) -> Vec<Reason> {
        self.reasons_of(st, Engine::top_stream(st))
    }

    /// Reasons from a key's own traffic (`Some`), or the account's.
    fn reasons_of(&self, st: &AccountState, slot: Option<&Slot>) -> Vec<Reason> {
        let (profile, shared, informative, prefix) = match slot {
            Some(s) => (
                &s.profile,
                s.shared,
                s.informative,
                format!(
                    "on {} ({} of {} requests): ",
                    s.label, s.profile.requests, st.profile.requests
                ),
            ),
            None => (&st.profile, st.shared, st.informative, String::new()),
        };
        let x = base_features(profile, &st.origin, shared, informative, st.shared_system);
        let mut contrib = [0.0; NF];
        self.model.contributions(&x, &mut contrib);
        let mut details: Vec<String> = profile
            .features()
            .into_iter()
            .map(|f| format!("{prefix}{}", f.detail))
            .collect();
        details.push(format!(
            "{prefix}{} prompts open or close like prompts of ≥ {SHARED_ACCOUNTS} other accounts",
            account::of(shared, informative)
        ));
        details.push(format!(
            "{} requests carry a system prompt that asks for reasoning and that ≥ {SHARED_ACCOUNTS} accounts use",
            account::of(st.shared_system, st.profile.requests)
        ));
        details.extend(origin_details(&st.origin));
        let mut r: Vec<Reason> = BASE_FEATURES
            .iter()
            .enumerate()
            .map(|(i, n)| Reason {
                signal: n.to_string(),
                value: (x[i] * 1e4).round() / 1e4,
                contribution: (contrib[i] * 1e4).round() / 1e4,
                detail: details[i].clone(),
            })
            .collect();
        r.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        r
    }
}

/// The base features of a profile with its account's origin and its
/// shared-template and shared-system-prompt counts.
fn base_features(
    profile: &AccountProfile,
    origin: &[f32; 5],
    shared: u32,
    informative: u32,
    shared_system: u32,
) -> [f64; NB] {
    let v = profile.values();
    let mut x = [0.0; NB];
    let k = v.len();
    x[..k].copy_from_slice(&v);
    x[k] = shared as f64 / (informative as f64 + account::PRIOR_REQUESTS);
    x[k + 1] = (shared_system.min(profile.requests) as f64)
        / (profile.requests as f64 + account::PRIOR_REQUESTS);
    for (i, o) in origin.iter().enumerate() {
        x[k + 2 + i] = f64::from(*o);
    }
    x
}

/// The score's features.
fn features(
    profile: &AccountProfile,
    origin: &[f32; 5],
    shared: u32,
    informative: u32,
    shared_system: u32,
) -> [f64; NF] {
    base_features(profile, origin, shared, informative, shared_system)
}

/// The reason lines of the origin features, from their values.
fn origin_details(o: &[f32; 5]) -> [String; 5] {
    let yes_no = |v: f32, yes: &str, no: &str| {
        if v > 0.0 {
            yes.to_string()
        } else {
            no.to_string()
        }
    };
    [
        if o[0] > 0.0 {
            format!(
                "account {:.0} days old at its first request",
                30.0 * (1.0 - o[0])
            )
        } else {
            "account older than 30 days, or no record".into()
        },
        yes_no(
            o[1],
            "signed up through the education, startup or research programme",
            "standard signup, or no record",
        ),
        yes_no(o[2], "account not verified", "verified, or no record"),
        yes_no(
            o[3],
            "first request from a datacenter (hosting provider's network)",
            "not from a datacenter",
        ),
        yes_no(
            o[4],
            "traffic from another country than the account's",
            "traffic from the account's country, or unknown",
        ),
    ]
}

fn account_features(st: &AccountState) -> [f64; NF] {
    features(
        &st.profile,
        &st.origin,
        st.shared,
        st.informative,
        st.shared_system,
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
        assert!(bad.validate().unwrap_err().0.contains("monitor ≤ throttle"));
    }

    fn base(name: &str) -> usize {
        BASE_FEATURES.iter().position(|n| *n == name).unwrap()
    }

    #[test]
    fn datacenter_origin_reaches_the_origin_features() {
        let line = |org: &str| {
            format!(
                r#"{{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{{"messages":[{{"role":"user","content":"hi"}}]}},"client":{{"asn_org":"{org}"}}}}"#
            )
        };
        let w = Weights::embedded();
        let origin = |org: &str| {
            let e = distillguard_core::parse_event_line(&line(org)).unwrap();
            let mut engine = Engine::new(&w, w.thresholds, &[], HashMap::new());
            let idx = engine.process(&pre(&e));
            engine.base_vector(idx)[base("datacenter")]
        };
        assert_eq!(origin("Hetzner Online GmbH"), 1.0);
        assert_eq!(origin("Comcast Cable Communications"), 0.0);
    }

    /// With timelines on, an account that escalates keeps each change,
    /// in time order, with the reasons of that moment; the last one is the
    /// verdict in force. Off, nothing is kept.
    #[test]
    fn timelines_record_every_escalation_with_its_reasons() {
        let w = Weights::embedded();
        let t = Thresholds {
            monitor: 0.3,
            throttle: 0.6,
            block: 0.9,
            min_requests: 3,
        };
        let run = |keep: bool| {
            let mut engine = Engine::new(&w, t, &[], HashMap::new());
            engine.keep_timelines(keep);
            for i in 0..300 {
                let text = format!(
                    "Solve problem {i} and think step by step, showing all your reasoning before the answer."
                );
                let e =
                    parse_event_line(&line(i * 3, "harvester", "k", "python-httpx/0.27", &text))
                        .unwrap();
                engine.process(&pre(&e));
            }
            engine.report(true)
        };
        let r = run(true);
        let a = &r.accounts[0];
        let tl = a.timeline.as_ref().unwrap();
        assert!(!tl.escalations.is_empty());
        assert!(
            tl.escalations
                .windows(2)
                .all(|w| w[0].ts <= w[1].ts && w[0].verdict < w[1].verdict)
        );
        assert_eq!(tl.escalations.last().unwrap().verdict, a.verdict);
        assert!(
            tl.escalations
                .iter()
                .all(|e| !e.reasons.is_empty() && e.reasons.len() <= Timeline::REASONS)
        );
        assert_eq!(tl.hours.iter().sum::<u32>(), 300);
        assert_eq!(tl.days.iter().map(|d| d.requests).sum::<u32>(), 300);
        assert!(tl.risk.len() <= Timeline::MAX_POINTS && tl.risk[0].requests == 1);
        assert!(run(false).accounts.iter().all(|a| a.timeline.is_none()));
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
        let whole = engine.base_vector(0);
        let at = FEATURES.iter().position(|f| *f == "elicitation").unwrap();
        // The account's averages dilute the script (a fifth of its traffic
        // elicits reasoning), its key does not (all of it does).
        assert!(whole[at] < 0.3, "{}", whole[at]);
        let elicit = a
            .reasons
            .iter()
            .find(|r| r.signal == "elicitation")
            .unwrap();
        assert!(elicit.value > 0.9, "{elicit:?}");
        assert!(
            elicit
                .detail
                .starts_with("on key key_x · python-httpx/0.27 (100 of 500 requests)"),
            "{}",
            elicit.detail
        );
    }

    #[test]
    fn many_keys_of_like_weight_do_not_churn_the_slots() {
        // A reseller: ten customer keys in turn, and one key twice as busy
        // as any of them. The busy key keeps a slot and gathers its whole
        // history; slots do not pass from key to key at every request.
        let w = Weights::embedded();
        let mut engine = Engine::new(&w, w.thresholds, &[], HashMap::new());
        let mut t = 0;
        for round in 0..30 {
            for k in 0..10 {
                t += 7;
                let e = line(
                    t,
                    "reseller",
                    &format!("key_c{k}"),
                    "Go-http-client/1.1",
                    "hello",
                );
                engine.process(&pre(&parse_event_line(&e).unwrap()));
            }
            for _ in 0..2 {
                t += 7;
                let q = format!("question {round}: why is the sky blue?");
                let e = line(t, "reseller", "key_busy", "python-httpx/0.27", &q);
                engine.process(&pre(&parse_event_line(&e).unwrap()));
            }
        }
        let report = engine.report(true);
        let busy = report.keys.iter().find(|k| k.key_id == "key_busy");
        let busy = busy.expect("the busiest key holds a slot");
        assert!(busy.requests >= 55, "{}", busy.requests);
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
        assert!(engine.state[0].slots.is_none());
        let a = &engine.report(true).accounts[0];
        assert!(a.reasons.iter().all(|r| !r.detail.starts_with("on key")));
    }

    /// One request of a test account: `k` is its number, `more` whether it
    /// shows more of `behaviour`.
    fn request(k: i64, behaviour: &str, more: bool) -> String {
        let topics = [
            "how do I keep basil alive on a windowsill",
            "what is a good name for a grey cat",
            "summarise the causes of the first world war",
            "write a haiku about the sea",
            "how do I convert a string to an int in python",
            "which is healthier, rice or quinoa",
        ];
        let mut text = format!("{} ({k})", topics[k as usize % topics.len()]);
        // A person's day: requests spread irregularly over waking hours.
        let mut ts = 1_771_200_000_000
            + (k / 6) * 86_400_000
            + (8 + (k * 7) % 11) * 3_600_000
            + (k * 7919 % 3_000) * 1000;
        let mut extra = String::new();
        let mut history = r#"{"role":"user","content":"hi"},{"role":"assistant","content":"Hello! How can I help?"},"#.to_string();
        let mut client =
            r#""ip":"24.1.2.3","asn_org":"Comcast Cable Communications","country":"US""#
                .to_string();
        let mut account = String::new();
        if more {
            match behaviour {
                "elicitation" => text.push_str(". Think step by step and show your reasoning."),
                "reasoning_requested" => extra.push_str(r#","reasoning_effort":"high""#),
                "uniform_params" => extra.push_str(r#","temperature":0.7,"max_tokens":2048"#),
                "harvesting_params" => extra.push_str(r#","logprobs":true,"top_logprobs":5,"n":4"#),
                "single_shot" => history.clear(),
                "capability_concentration" => {
                    text = format!(
                        "Write a python function that parses CSV rows ({k}) and fix the bug in the code"
                    )
                }
                "timing_regularity" | "round_the_clock" => ts = 1_771_200_000_000 + k * 1_800_000,
                "datacenter" => {
                    client = r#""ip":"95.216.1.2","asn_org":"Hetzner Online GmbH","country":"US""#
                        .to_string()
                }
                "new_account" => {
                    account = r#","account":{"created_at":"2026-02-15T00:00:00Z"}"#.to_string()
                }
                "entry_programme" => {
                    account = r#","account":{"signup_program":"education"}"#.to_string()
                }
                "unverified" => account = r#","account":{"verified":false}"#.to_string(),
                "country_mismatch" => account = r#","account":{"country":"SG"}"#.to_string(),
                _ => {}
            }
        }
        format!(
            r#"{{"ts":"{}","account_id":"a","request":{{"model":"m","messages":[{history}{{"role":"user","content":{}}}]{extra}}},"client":{{{client}}}{account}}}"#,
            Timestamp(ts),
            serde_json::to_string(&text).unwrap()
        )
    }

    /// Risk and the behaviour's feature after 60 requests, `share` of them
    /// showing more of the behaviour.
    fn with_share(behaviour: &str, share: f64) -> (f64, f64) {
        let w = Weights::embedded();
        let mut engine = Engine::new(&w, w.thresholds, &[], HashMap::new());
        let mut idx = 0;
        for k in 0..60i64 {
            let more = (k as f64 + 0.5) / 60.0 < share;
            let e = parse_event_line(&request(k, behaviour, more)).unwrap();
            idx = engine.process(&pre(&e));
        }
        (
            engine.risk_now(idx).max(engine.max_risk_of(idx)),
            engine.base_vector(idx)[base(behaviour)],
        )
    }

    /// Every feature's direction: an account that shows more of a
    /// suspicious behaviour never scores lower, on the feature and on the
    /// risk (all weights are at zero or above).
    #[test]
    fn more_of_an_attack_behaviour_never_lowers_the_score() {
        let w = Weights::embedded();
        assert!(w.model.is_monotone());
        for behaviour in [
            "elicitation",
            "reasoning_requested",
            "uniform_params",
            "harvesting_params",
            "single_shot",
            "capability_concentration",
            "timing_regularity",
            "round_the_clock",
            "datacenter",
            "new_account",
            "entry_programme",
            "unverified",
            "country_mismatch",
        ] {
            let mut last = (0.0, 0.0);
            for share in [0.0, 0.25, 0.5, 0.75, 1.0] {
                let (risk, x) = with_share(behaviour, share);
                assert!(
                    x >= last.1 - 1e-9,
                    "{behaviour} at {share}: feature {x} < {}",
                    last.1
                );
                assert!(
                    risk >= last.0 - 1e-9,
                    "{behaviour} at {share}: risk {risk} < {}",
                    last.0
                );
                last = (risk, x);
            }
            let (_, all) = with_share(behaviour, 1.0);
            let (_, none) = with_share(behaviour, 0.0);
            assert!(
                all > none,
                "{behaviour}: the feature does not see it ({none} → {all})"
            );
        }
    }

    #[test]
    fn the_embedded_model_reads_this_builds_features_and_is_monotone() {
        let w = Weights::embedded();
        assert!(!w.provenance.starts_with("fallback"), "{}", w.provenance);
        w.check().unwrap();
        assert!(w.model.trees.len() >= 50, "{}", w.model.trees.len());
    }
}
