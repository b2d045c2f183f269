/*!
Scenario files: every behaviour of the simulator is a knob here.

A scenario is TOML (files in `scenarios/`, embedded in the binary for the
built-in names). Structs deny unknown fields so a misspelt knob is an error,
not a silent default; after parsing, [`Scenario::validate`] checks ranges and
cross-references (a pivot must name a model the scenario releases). Every
knob has a default, so a scenario only says what it changes.
`docs/scenarios.md` documents each one.
*/

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;

use distillguard_core::{Invalid, Timestamp};
use serde::{Deserialize, Serialize};

/// Built-in scenarios, embedded from `scenarios/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("small", include_str!("../../../scenarios/small.toml")),
    ("default", include_str!("../../../scenarios/default.toml")),
    ("incident", include_str!("../../../scenarios/incident.toml")),
    (
        "benign-infra",
        include_str!("../../../scenarios/benign-infra.toml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("unknown scenario {0:?}: not a built-in ({1}) and no such file")]
    Unknown(String, String),
    // The cause is in the message, not a `source` too: a report of the
    // error chain would say it twice.
    #[error("cannot read scenario {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("scenario {name}: {error}")]
    Parse {
        name: String,
        error: Box<toml::de::Error>,
    },
    #[error("scenario {name}: {field}: {why}")]
    Invalid {
        name: String,
        field: String,
        why: String,
    },
}

/// Weights by name (normalised when drawn; need not sum to 1).
pub type Weights = BTreeMap<String, f64>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Start of simulated time (RFC 3339).
    pub start: String,
    /// Length of simulated time in days.
    pub days: f64,
    /// `auto` (shared ShareGPT file if present, else embedded sample),
    /// `embedded`, or a path to a ShareGPT-format `.jsonl(.gz)`.
    #[serde(default = "d_auto")]
    pub corpus: String,
    #[serde(default)]
    pub output: OutputKnobs,
    pub models: Vec<ModelSpec>,
    #[serde(default)]
    pub benign: Option<BenignSpec>,
    #[serde(default)]
    pub products: Vec<ProductSpec>,
    #[serde(default)]
    pub campaigns: Vec<CampaignSpec>,
}

fn d_auto() -> String {
    "auto".into()
}

/// What is written into each event line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputKnobs {
    /// Cap on the characters of one message's text in a request body
    /// (history included): keeps logs realistic in shape but bounded.
    pub max_message_chars: usize,
    /// Characters of answer text kept in the logged response body.
    pub response_chars: usize,
    /// Share of requests that fail (429 / 500 / 529) with an error body.
    pub error_rate: f64,
    /// Share of accounts whose record is written to `accounts.jsonl`
    /// (1: every account; 0: a log with no account records at all).
    pub account_records: f64,
    /// Whether lines carry the network fields a gateway may not log: ASN,
    /// ASN organisation, country and TLS fingerprint.
    pub network_fields: bool,
}

impl Default for OutputKnobs {
    fn default() -> Self {
        OutputKnobs {
            max_message_chars: 1000,
            response_chars: 200,
            error_rate: 0.004,
            account_records: 1.0,
            network_fields: true,
        }
    }
}

/// A model the provider serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    /// Days after `start` the model is released; negative = before the
    /// scenario (already in use).
    #[serde(default = "d_released")]
    pub released_day: f64,
    /// The model's output cap (what "max_tokens at the maximum" means).
    #[serde(default = "d_max_out")]
    pub max_output_tokens: u32,
    /// Whether the model can return reasoning (thinking) traces.
    #[serde(default)]
    pub reasoning: bool,
    /// Popularity among benign users before newer models appear.
    #[serde(default = "d_one")]
    pub share: f64,
}

fn d_released() -> f64 {
    -120.0
}
fn d_max_out() -> u32 {
    8192
}
fn d_one() -> f64 {
    1.0
}

/// Ordinary human users of the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenignSpec {
    pub accounts: u32,
    /// Median sessions per active day; per-account rates are log-normal
    /// around it, giving many light users and a few heavy ones.
    pub sessions_per_day: f64,
    /// Log-space spread of per-account session rates.
    pub activity_sigma: f64,
    /// Weekend activity relative to weekdays.
    pub weekend_factor: f64,
    /// Mean user turns in a session (geometric; capped by the conversation).
    pub turns_mean: f64,
    /// Share of sessions that continue an old chat from a later turn (with
    /// its recent history) rather than open a new one. Spreads use over
    /// the whole corpus, so real prompts recur across fewer accounts.
    pub continue_rate: f64,
    /// Median think time between turns, seconds (plus reading time).
    pub think_seconds: f64,
    /// Probability a user prompt carries a typo or two.
    pub typo_rate: f64,
    /// Network mix: residential, corporate (NAT shared by colleagues),
    /// university (NAT shared by a campus), mobile (carrier-grade NAT),
    /// cloud (developers calling from a VM), vpn (a commercial VPN's
    /// servers, in hosting networks and often other countries).
    pub network: Weights,
    /// Users per corporate NAT and per university NAT.
    pub corporate_nat_users: NonZeroU32,
    pub university_nat_users: NonZeroU32,
    /// Probability that two accounts share a payment method (families,
    /// small teams): honest sharing the linker must tolerate.
    pub shared_payment_rate: f64,
    /// Mean days until a user tries a newly released model, and the
    /// share of their traffic it then takes.
    pub adopt_days: f64,
    pub adopt_share: f64,
    /// Probability a request asks for extended reasoning.
    pub reasoning_rate: f64,
    /// Probability a prompt asks to think step by step (people do).
    pub step_by_step_rate: f64,
    /// Share of accounts that set a fixed system prompt of their own.
    pub system_prompt_rate: f64,
    /// Share of those system prompts that demand step-by-step reasoning
    /// (a developer's study helper: honest, and eliciting on every call).
    pub reasoning_system_rate: f64,
    /// Share of accounts that ask for extended reasoning on every request
    /// (reasoning models, set once in their code or app).
    pub reasoning_always_rate: f64,
    /// Share of the corpus's conversations people draw from: below 1, a
    /// small community whose prompts recur across accounts (as with the
    /// embedded 398-conversation sample), so honest accounts share
    /// templates too.
    pub corpus_share: f64,
    /// Share of campus users who work through a course's shared problem
    /// set: the same homework text from many accounts behind one NAT,
    /// often with "step by step".
    pub homework_share: f64,
}

impl Default for BenignSpec {
    fn default() -> Self {
        BenignSpec {
            accounts: 1000,
            sessions_per_day: 0.5,
            activity_sigma: 1.1,
            weekend_factor: 0.55,
            turns_mean: 2.2,
            continue_rate: 0.7,
            think_seconds: 45.0,
            typo_rate: 0.08,
            network: [
                ("residential", 0.62),
                ("corporate", 0.14),
                ("university", 0.08),
                ("mobile", 0.11),
                ("cloud", 0.05),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            corporate_nat_users: nz(40),
            university_nat_users: nz(150),
            shared_payment_rate: 0.02,
            adopt_days: 3.0,
            adopt_share: 0.6,
            reasoning_rate: 0.05,
            step_by_step_rate: 0.02,
            system_prompt_rate: 0.0,
            reasoning_system_rate: 0.0,
            reasoning_always_rate: 0.0,
            corpus_share: 1.0,
            homework_share: 0.0,
        }
    }
}

/// Legitimate heavy API customers: the hard negatives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSpec {
    /// `support_bot`, `batch_job`, `eval_harness`, `coding_agent`,
    /// `multi_key_startup`, `tutoring`, `judge_pipeline`, `hackathon`.
    pub kind: String,
    /// How many independent customers of this kind.
    #[serde(default = "d_one_u32")]
    pub accounts: u32,
    /// Mean requests per day per customer (bursty kinds: per run).
    pub requests_per_day: f64,
    /// API keys per account (load balancing spreads requests over them).
    #[serde(default = "d_one_u32")]
    pub keys: u32,
    /// `multi_key_startup`: sibling accounts sharing a payment method.
    #[serde(default = "d_one_u32")]
    pub sibling_accounts: u32,
    /// `eval_harness`: items in the benchmark suite.
    #[serde(default = "d_suite")]
    pub suite_items: NonZeroU32,
    /// `eval_harness`: samples per item (`n`).
    #[serde(default = "d_one_nz")]
    pub samples: NonZeroU32,
    /// `batch_job`: local hour the nightly run starts.
    #[serde(default = "d_batch_hour")]
    pub run_hour: f64,
    /// Share of requests that ask for step-by-step reasoning:
    /// `eval_harness` (chain-of-thought items), `judge_pipeline` (explain
    /// the score first), `hackathon` (the app's template asks for steps).
    /// `tutoring` always asks, in its system prompt.
    #[serde(default = "d_one")]
    pub elicit: f64,
}

fn d_one_u32() -> u32 {
    1
}
fn d_one_nz() -> NonZeroU32 {
    NonZeroU32::MIN
}
fn d_suite() -> NonZeroU32 {
    nz(500)
}

/// A count known to be positive (a literal or a draw from a positive
/// range); 0 would become 1.
pub(crate) fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}
fn d_batch_hour() -> f64 {
    2.0
}

/// A distillation campaign.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    pub name: String,
    /// Accounts the campaign runs.
    pub accounts: u32,
    /// Distillation requests over the campaign's span (all accounts).
    pub requests: u64,
    /// Active span, in days from `start`.
    #[serde(default)]
    pub start_day: f64,
    /// End of the active span in days (default: the scenario's end).
    #[serde(default)]
    pub end_day: Option<f64>,
    /// Log-space spread of per-account volume (0 = equal shares).
    #[serde(default = "d_skew")]
    pub account_skew: f64,
    /// What the prompts target: reasoning, grading, safety_rewrite,
    /// agentic, coding, data_analysis, computer_use, vision, chat.
    pub capabilities: Weights,
    /// The family the campaign belongs to, for leave-one-family-out
    /// evaluation (default: its name).
    #[serde(default)]
    pub family: Option<String>,
    /// Share of prompts that elicit step-by-step reasoning.
    #[serde(default = "d_elicit")]
    pub reasoning_elicitation: f64,
    /// How reasoning is asked for, by weight: `literal` (the common
    /// phrases), `paraphrase` (the campaign's own wordings, in its
    /// languages), `system` (a system prompt demands it), `api` (only the
    /// API's reasoning parameter).
    #[serde(default = "d_style")]
    pub elicitation: Weights,
    /// Distinct wordings the campaign rotates for `paraphrase` and `system`.
    #[serde(default = "d_wordings")]
    pub wordings: NonZeroU32,
    /// Share of those wordings taken from phrasings no classifier trains on.
    #[serde(default = "d_half")]
    pub held_wording: f64,
    /// Share of requests built on real questions (the corpus) instead of
    /// the campaign's templates: a dataset of diverse questions.
    #[serde(default)]
    pub real_questions: f64,
    /// Distinct templates per capability the campaign uses.
    #[serde(default = "d_templates")]
    pub templates: NonZeroU32,
    /// Probability a request paraphrases its template's wording.
    #[serde(default = "d_paraphrase")]
    pub paraphrase: f64,
    /// Languages of the instructions.
    #[serde(default = "d_lang")]
    pub languages: Weights,
    /// Distinct system prompts (0 = none), used with `system_prompt_rate`.
    #[serde(default)]
    pub system_prompts: u32,
    #[serde(default)]
    pub system_prompt_rate: f64,
    /// Share of requests that follow up on a previous answer.
    #[serde(default = "d_followup")]
    pub follow_up_rate: f64,
    #[serde(default)]
    pub timing: TimingSpec,
    #[serde(default)]
    pub identity: IdentitySpec,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub params: ParamSpec,
    /// Model used until a pivot (default: the newest released at start).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub pivot: Option<PivotSpec>,
    /// Hydra reseller: honest end-user traffic mixed into the accounts.
    #[serde(default)]
    pub mix: Option<MixSpec>,
}

impl CampaignSpec {
    /// The campaign's family (its name unless one is given).
    pub fn family(&self) -> &str {
        self.family.as_deref().unwrap_or(&self.name)
    }
}

fn d_skew() -> f64 {
    0.5
}
fn d_elicit() -> f64 {
    0.6
}
fn d_templates() -> NonZeroU32 {
    nz(6)
}
fn d_paraphrase() -> f64 {
    0.3
}
fn d_lang() -> Weights {
    [("en".to_string(), 1.0)].into_iter().collect()
}
fn d_followup() -> f64 {
    0.05
}
fn d_style() -> Weights {
    [("literal".to_string(), 1.0)].into_iter().collect()
}
fn d_wordings() -> NonZeroU32 {
    nz(3)
}
fn d_half() -> f64 {
    0.5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimingSpec {
    /// `synchronized` (bursts shared by the accounts), `bursty` (each
    /// account's own bursts), `steady` (24×7 script) or `human` (diurnal
    /// sessions with think time).
    pub mode: String,
    /// synchronized / bursty: bursts per day, their length, and (synchronized)
    /// the chance each account joins a burst.
    pub windows_per_day: f64,
    pub window_minutes: f64,
    pub participation: f64,
    /// steady: 0 = Poisson arrivals, 1 = a fixed period (cron-like).
    pub regularity: f64,
    /// human: the operators' UTC offset in hours.
    pub utc_offset: f64,
    /// human: mean requests per session and seconds between them.
    pub session_requests: f64,
    pub think_seconds: f64,
}

impl Default for TimingSpec {
    fn default() -> Self {
        TimingSpec {
            mode: "steady".into(),
            windows_per_day: 6.0,
            window_minutes: 25.0,
            participation: 0.8,
            regularity: 0.3,
            utc_offset: 8.0,
            session_requests: 6.0,
            think_seconds: 60.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySpec {
    /// Median account age at the campaign start, days.
    pub age_days: f64,
    /// Signup programmes (standard, education, startup, research).
    pub signup: Weights,
    pub tiers: Weights,
    /// Distinct payment methods shared by the accounts (0 = each its own).
    pub payment_fingerprints: u32,
    /// Probability an account is verified.
    pub verified: f64,
    /// Email domains drawn from (empty: consumer webmail mix).
    pub email_domains: Vec<String>,
    /// Account country (ISO code) mix.
    pub countries: Weights,
    /// API keys per account (harvesting keys, for a reseller).
    pub keys: u32,
    /// Accounts signed up within this many hours of each other (a batch
    /// of registrations), instead of spread by `age_days`.
    pub signup_window_hours: Option<f64>,
}

impl Default for IdentitySpec {
    fn default() -> Self {
        IdentitySpec {
            age_days: 20.0,
            signup: [("standard".to_string(), 1.0)].into_iter().collect(),
            tiers: [("tier1".to_string(), 0.6), ("tier2".to_string(), 0.4)]
                .into_iter()
                .collect(),
            payment_fingerprints: 0,
            verified: 0.7,
            email_domains: Vec::new(),
            countries: [("US".to_string(), 1.0)].into_iter().collect(),
            keys: 1,
            signup_window_hours: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    /// `datacenter`, `residential_proxy`, `mixed` or `residential`.
    pub kind: String,
    /// Size of the campaign's IP pool.
    pub ips: NonZeroU32,
    /// Probability a request keeps its account's last IP (sticky sessions).
    pub sticky: f64,
    /// Client stacks (user agent + TLS fingerprint) the campaign uses.
    pub clients: NonZeroU32,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            kind: "datacenter".into(),
            ips: nz(20),
            sticky: 0.8,
            clients: NonZeroU32::MIN,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParamSpec {
    /// Share of requests whose `max_tokens` is the model's maximum.
    pub max_tokens_at_max: f64,
    /// Fixed temperature (None: varied like a human's).
    pub temperature: Option<f32>,
    pub logprobs: f64,
    pub top_logprobs: u32,
    /// Choices per request.
    pub n: u32,
    pub stream: f64,
    /// Share of requests asking for extended reasoning.
    pub reasoning: f64,
    /// Share of requests via the Anthropic Messages dialect.
    pub anthropic: f64,
    /// Share of requests whose temperature, top_p and max_tokens are drawn
    /// afresh (a script that randomises its settings).
    pub vary: f64,
}

impl Default for ParamSpec {
    fn default() -> Self {
        ParamSpec {
            max_tokens_at_max: 0.7,
            temperature: Some(0.7),
            logprobs: 0.0,
            top_logprobs: 5,
            n: 1,
            stream: 0.2,
            reasoning: 0.5,
            anthropic: 0.5,
            vary: 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PivotSpec {
    /// The newly released model the campaign moves to.
    pub model: String,
    /// Share of traffic moved.
    pub share: f64,
    /// Hours after the release by which the move is complete.
    #[serde(default = "d_within")]
    pub within_hours: f64,
}

fn d_within() -> f64 {
    24.0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixSpec {
    /// Honest end-user requests per distillation request.
    pub benign_per_attack: f64,
    /// Distinct end users behind the reseller (per account).
    #[serde(default = "d_end_users")]
    pub end_users: u32,
    /// Probability the distillation stream uses its own API keys
    /// (`identity.keys` of them) instead of the customers'.
    #[serde(default = "d_sep")]
    pub separate_key: f64,
    /// API keys the customers' traffic is spread over.
    #[serde(default = "d_one_u32")]
    pub keys: u32,
}

fn d_end_users() -> u32 {
    60
}
fn d_sep() -> f64 {
    0.6
}

/// What campaigns may target (defined with the content that targets it).
pub use crate::content::CAPABILITIES;

/// Languages campaigns may write in (the first nine also have template
/// wordings; the others write the template in English with their own
/// elicitation).
pub const LANGUAGES: &[&str] = crate::content::wording::LANGS;
pub const ELICITATION_STYLES: &[&str] = &["literal", "paraphrase", "system", "api"];
pub const PRODUCT_KINDS: &[&str] = &[
    "support_bot",
    "batch_job",
    "eval_harness",
    "coding_agent",
    "multi_key_startup",
    "tutoring",
    "judge_pipeline",
    "hackathon",
];
const TIMING_MODES: &[&str] = &["synchronized", "bursty", "steady", "human"];
const NETWORK_KINDS: &[&str] = &["datacenter", "residential_proxy", "mixed", "residential"];
const BENIGN_NETWORKS: &[&str] = &[
    "residential",
    "corporate",
    "university",
    "mobile",
    "cloud",
    "vpn",
];
const SIGNUPS: &[&str] = &["standard", "education", "startup", "research"];

impl Scenario {
    /// A built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Scenario::parse(name_or_path, text);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            return Err(ScenarioError::Unknown(
                name_or_path.to_string(),
                names.join(", "),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Read {
            path: name_or_path.to_string(),
            error,
        })?;
        Scenario::parse(name_or_path, &text)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            name: origin.to_string(),
            error: Box::new(e),
        })?;
        s.validate(origin)?;
        Ok(s)
    }

    pub fn start_ts(&self) -> Timestamp {
        Timestamp::parse(&self.start).unwrap_or_default()
    }

    /// Checks ranges and cross-references, naming the offending knob.
    pub fn validate(&self, origin: &str) -> Result<(), ScenarioError> {
        let bad = |field: String, why: String| {
            Err(ScenarioError::Invalid {
                name: origin.to_string(),
                field,
                why,
            })
        };
        if let Err(e) = Timestamp::parse(&self.start) {
            return bad("start".into(), e.to_string());
        }
        if !(gt(self.days, 0.0) && self.days <= 366.0) {
            return bad("days".into(), "must be in (0, 366]".into());
        }
        if self.models.is_empty() {
            return bad("models".into(), "at least one model is needed".into());
        }
        if !self.models.iter().any(|m| m.released_day <= 0.0) {
            return bad(
                "models".into(),
                "at least one model must be released before the start".into(),
            );
        }
        let o = &self.output;
        if !(0.0..=0.5).contains(&o.error_rate) {
            return bad("output.error_rate".into(), "must be in [0, 0.5]".into());
        }
        if !(0.0..=1.0).contains(&o.account_records) {
            return bad(
                "output.account_records".into(),
                "must be a share in [0, 1]".into(),
            );
        }
        if o.max_message_chars < 16 {
            return bad(
                "output.max_message_chars".into(),
                "must be at least 16".into(),
            );
        }
        for (i, m) in self.models.iter().enumerate() {
            if m.name.is_empty() || m.max_output_tokens == 0 || !ge(m.share, 0.0) {
                return bad(
                    format!("models[{i}]"),
                    "needs a name, max_output_tokens > 0 and share ≥ 0".into(),
                );
            }
        }
        let model_known = |m: &str| self.models.iter().any(|x| x.name == m);
        if let Some(b) = &self.benign {
            check_weights(&b.network, BENIGN_NETWORKS)
                .or_else(|Invalid(why)| bad("benign.network".into(), why))?;
            for (k, v) in [
                ("typo_rate", b.typo_rate),
                ("continue_rate", b.continue_rate),
                ("shared_payment_rate", b.shared_payment_rate),
                ("adopt_share", b.adopt_share),
                ("reasoning_rate", b.reasoning_rate),
                ("step_by_step_rate", b.step_by_step_rate),
                ("system_prompt_rate", b.system_prompt_rate),
                ("reasoning_system_rate", b.reasoning_system_rate),
                ("homework_share", b.homework_share),
                ("reasoning_always_rate", b.reasoning_always_rate),
                ("corpus_share", b.corpus_share),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return bad(
                        format!("benign.{k}"),
                        "must be a probability in [0, 1]".into(),
                    );
                }
            }
            if !gt(b.sessions_per_day, 0.0) || !ge(b.turns_mean, 1.0) {
                return bad(
                    "benign".into(),
                    "sessions_per_day must be > 0 and turns_mean ≥ 1".into(),
                );
            }
        }
        for (i, p) in self.products.iter().enumerate() {
            let at = format!("products[{i}]");
            if !PRODUCT_KINDS.contains(&p.kind.as_str()) {
                return bad(
                    format!("{at}.kind"),
                    format!("{:?} is not one of {}", p.kind, PRODUCT_KINDS.join(", ")),
                );
            }
            if !gt(p.requests_per_day, 0.0) || p.keys == 0 {
                return bad(at, "requests_per_day must be > 0 and keys ≥ 1".into());
            }
            if !(0.0..=1.0).contains(&p.elicit) {
                return bad(format!("{at}.elicit"), "must be a share in [0, 1]".into());
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in self.campaigns.iter().enumerate() {
            let at = format!("campaigns[{i}] ({})", c.name);
            if !names.insert(c.name.as_str()) {
                return bad(at, "campaign names must be unique".into());
            }
            if c.accounts == 0 || c.requests == 0 {
                return bad(at, "accounts and requests must be ≥ 1".into());
            }
            if !gt(c.end_day.unwrap_or(f64::INFINITY), c.start_day)
                || c.start_day < 0.0
                || c.start_day >= self.days
            {
                return bad(
                    format!("{at}.start_day"),
                    "need 0 ≤ start_day < days and end_day > start_day".into(),
                );
            }
            check_weights(&c.capabilities, CAPABILITIES)
                .or_else(|Invalid(why)| bad(format!("{at}.capabilities"), why))?;
            check_weights(&c.languages, LANGUAGES)
                .or_else(|Invalid(why)| bad(format!("{at}.languages"), why))?;
            check_weights(&c.identity.signup, SIGNUPS)
                .or_else(|Invalid(why)| bad(format!("{at}.identity.signup"), why))?;
            check_weights(&c.elicitation, ELICITATION_STYLES)
                .or_else(|Invalid(why)| bad(format!("{at}.elicitation"), why))?;
            if let Some(w) = c.identity.signup_window_hours
                && !gt(w, 0.0)
            {
                return bad(
                    format!("{at}.identity.signup_window_hours"),
                    "must be > 0".into(),
                );
            }
            for (k, v) in [
                ("reasoning_elicitation", c.reasoning_elicitation),
                ("paraphrase", c.paraphrase),
                ("system_prompt_rate", c.system_prompt_rate),
                ("follow_up_rate", c.follow_up_rate),
                ("timing.participation", c.timing.participation),
                ("timing.regularity", c.timing.regularity),
                ("identity.verified", c.identity.verified),
                ("network.sticky", c.network.sticky),
                ("params.max_tokens_at_max", c.params.max_tokens_at_max),
                ("params.logprobs", c.params.logprobs),
                ("params.stream", c.params.stream),
                ("params.reasoning", c.params.reasoning),
                ("params.anthropic", c.params.anthropic),
                ("params.vary", c.params.vary),
                ("held_wording", c.held_wording),
                ("real_questions", c.real_questions),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return bad(
                        format!("{at}.{k}"),
                        "must be a probability in [0, 1]".into(),
                    );
                }
            }
            if !TIMING_MODES.contains(&c.timing.mode.as_str()) {
                return bad(
                    format!("{at}.timing.mode"),
                    format!(
                        "{:?} is not one of {}",
                        c.timing.mode,
                        TIMING_MODES.join(", ")
                    ),
                );
            }
            if !NETWORK_KINDS.contains(&c.network.kind.as_str()) {
                return bad(
                    format!("{at}.network.kind"),
                    format!(
                        "{:?} is not one of {}",
                        c.network.kind,
                        NETWORK_KINDS.join(", ")
                    ),
                );
            }
            if c.identity.keys == 0 {
                return bad(format!("{at}.identity.keys"), "must be ≥ 1".into());
            }
            if c.params.n == 0 {
                return bad(format!("{at}.params.n"), "must be ≥ 1".into());
            }
            if matches!(c.timing.mode.as_str(), "synchronized" | "bursty")
                && !(gt(c.timing.windows_per_day, 0.0) && gt(c.timing.window_minutes, 0.0))
            {
                return bad(
                    format!("{at}.timing"),
                    "windows_per_day and window_minutes must be > 0".into(),
                );
            }
            if let Some(m) = &c.model
                && !model_known(m)
            {
                return bad(format!("{at}.model"), format!("unknown model {m:?}"));
            }
            if let Some(p) = &c.pivot {
                match self.models.iter().find(|x| x.name == p.model) {
                    None => {
                        return bad(
                            format!("{at}.pivot.model"),
                            format!("unknown model {:?}", p.model),
                        );
                    }
                    Some(m) if m.released_day <= 0.0 => {
                        return bad(
                            format!("{at}.pivot.model"),
                            format!(
                                "{:?} is released before the start; a pivot needs a release inside the scenario",
                                p.model
                            ),
                        );
                    }
                    _ => {}
                }
                if !(0.0..=1.0).contains(&p.share) || !gt(p.within_hours, 0.0) {
                    return bad(
                        format!("{at}.pivot"),
                        "share in [0, 1], within_hours > 0".into(),
                    );
                }
            }
            if let Some(m) = &c.mix
                && (!ge(m.benign_per_attack, 0.0)
                    || m.end_users == 0
                    || m.keys == 0
                    || !(0.0..=1.0).contains(&m.separate_key))
            {
                return bad(
                    format!("{at}.mix"),
                    "benign_per_attack ≥ 0, end_users ≥ 1, keys ≥ 1, separate_key in [0, 1]".into(),
                );
            }
        }
        Ok(())
    }
}

/// `a > b`, false when either is NaN (a NaN knob is never valid).
fn gt(a: f64, b: f64) -> bool {
    a > b
}

/// `a >= b`, false when either is NaN.
fn ge(a: f64, b: f64) -> bool {
    a >= b
}

fn check_weights(w: &Weights, allowed: &[&str]) -> Result<(), Invalid> {
    if w.is_empty() || w.values().sum::<f64>() <= 0.0 {
        return Err("needs at least one positive weight".into());
    }
    for (k, v) in w {
        if !allowed.contains(&k.as_str()) {
            return Err(Invalid(format!(
                "{k:?} is not one of {}",
                allowed.join(", ")
            )));
        }
        if !ge(*v, 0.0) {
            return Err(Invalid(format!("weight of {k:?} must be ≥ 0")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_validate() {
        for (name, _) in BUILTIN {
            let s = Scenario::load(name).unwrap();
            assert_eq!(&s.name, name);
        }
    }

    #[test]
    fn a_count_of_zero_is_refused_where_it_is_written() {
        let base = BUILTIN[0].1;
        let zero = base.replacen("ips = 6 }", "ips = 0 }", 1);
        assert_ne!(zero, base);
        let e = Scenario::parse("t.toml", &zero).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("line 70") && text.contains("nonzero"),
            "{text}"
        );
        // The cause is said once, not again as a source.
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn errors_name_the_knob() {
        let base = BUILTIN[0].1;
        let typo = base.replacen("days =", "dayz =", 1);
        let e = Scenario::parse("t.toml", &typo).unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("dayz"), "{e}");
        let e = Scenario::parse(
            "t.toml",
            &base.replacen("mode = \"synchronized\"", "mode = \"sometimes\"", 1),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("timing.mode") && e.contains("sometimes"), "{e}");
        let e = Scenario::load("nope").unwrap_err().to_string();
        assert!(e.contains("small, default, incident"), "{e}");
    }
}
