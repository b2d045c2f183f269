/*!
Randomised worlds ("domain randomisation"): a scenario whose every knob is
drawn from a wide range per seed.

A detector fitted on one world learns that world's accidents: in round 1,
campaigns that happened to vary their sampling settings taught the score
that fixed settings look honest. Here each campaign *family* keeps its
structure (how many accounts, how much traffic each, what it targets, how
it hides in the crowd), and every behaviour an attacker chooses is drawn
per world, in both directions: fixed or varied settings; literal,
paraphrased, system-prompt or API-only elicitation in many languages;
templates or real questions; fresh or aged, verified accounts; own or
shared cards; datacenter or residential exits, fixed or rotating; human
hours, bursts or 24×7; single-shot or scripted multi-turn; one key or many;
account records present or absent.

Honest populations are drawn the same way, with the hard look-alikes:
students pasting a shared problem set behind a campus NAT, a tutoring
platform that asks for every step, an LLM-as-judge pipeline, benchmark
harnesses with chain-of-thought prompts, hackathon teams on brand-new
accounts, families sharing a card, developers whose own system prompt asks
for reasoning, coding agents, support bots, batch translators.

The result is an ordinary [`Scenario`]: `distillguard scenarios random
--seed N` prints it as TOML, and the same seed and options give the same
scenario, hence the same bytes.
*/

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use crate::rng::{Rng, label};
use crate::scenario::nz;
use crate::scenario::{
    BenignSpec, CAPABILITIES, CampaignSpec, IdentitySpec, MixSpec, ModelSpec, NetworkSpec,
    OutputKnobs, ParamSpec, PivotSpec, ProductSpec, Scenario, TimingSpec, Weights,
};

/// Campaign families. Each is a structure; its behaviours are drawn.
pub const FAMILIES: &[&str] = &[
    "reasoning-harvest",
    "agentic-multi",
    "coding-pivot",
    "hydra-reseller",
    "low-and-slow",
    "single-key",
    "dataset-replay",
    "tool-trajectory",
    "signup-swarm",
    "sync-network",
];

/// What to draw.
#[derive(Debug, Clone)]
pub struct RandomOpts {
    /// Size: 1.0 is about 4,000 honest accounts and campaigns of their
    /// families' usual sizes; 0.1 is a world for tests.
    pub scale: f64,
    /// Families that must appear.
    pub include: Vec<String>,
    /// Families that never appear.
    pub without: Vec<String>,
    /// Campaigns besides the included ones (None: 2–5 at random).
    pub extra_campaigns: Option<u32>,
}

impl Default for RandomOpts {
    fn default() -> Self {
        RandomOpts {
            scale: 1.0,
            include: Vec::new(),
            without: Vec::new(),
            extra_campaigns: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RandomError {
    #[error("unknown campaign family {0:?} (families: {1})")]
    UnknownFamily(String, String),
    #[error("scale must be in (0, 10], got {0}")]
    Scale(f64),
    #[error("family {0:?} is both included and excluded")]
    Conflict(String),
}

fn w(pairs: &[(&str, f64)]) -> Weights {
    pairs
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(k, v)| (k.to_string(), *v))
        .collect()
}

/// A random subset of weights over `names` (at least one positive).
fn mix(r: &mut Rng, names: &[&str], keep: f64) -> Weights {
    let mut out = Weights::new();
    for n in names {
        if r.chance(keep) {
            out.insert(n.to_string(), round2(r.range_f64(0.1, 1.0)));
        }
    }
    if out.is_empty() {
        out.insert(r.pick_str(names).to_string(), 1.0);
    }
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Scales an account count, keeping at least `min`.
fn scaled(n: f64, scale: f64, min: u32) -> u32 {
    ((n * scale).round() as u32).max(min)
}

/// Draws the behaviours every campaign chooses, in both directions.
fn behaviour(r: &mut Rng, c: &mut CampaignSpec) {
    // Sampling settings: fixed (one temperature, or none at all) or varied.
    c.params.temperature = if r.chance(0.2) {
        None
    } else {
        Some((r.range_f64(0.0, 1.2) * 10.0).round() as f32 / 10.0)
    };
    c.params.vary = if r.chance(0.5) {
        0.0
    } else {
        round2(r.range_f64(0.3, 1.0))
    };
    c.params.max_tokens_at_max = round2(if r.chance(0.4) {
        r.range_f64(0.0, 0.2)
    } else {
        r.range_f64(0.3, 1.0)
    });
    c.params.logprobs = if r.chance(0.2) {
        round2(r.range_f64(0.3, 1.0))
    } else {
        0.0
    };
    c.params.n = *r.pick(&[1, 1, 1, 1, 2, 4]);
    c.params.reasoning = round2(r.range_f64(0.0, 1.0));
    c.params.anthropic = round2(r.range_f64(0.0, 1.0));
    c.params.stream = round2(r.range_f64(0.0, 1.0));
    // How reasoning is asked for: one main style, sometimes a mix.
    let styles = ["literal", "paraphrase", "system", "api"];
    c.elicitation = if r.chance(0.7) {
        w(&[(r.pick_str(&styles), 1.0)])
    } else {
        mix(r, &styles, 0.5)
    };
    c.wordings = nz(*r.pick(&[1, 1, 2, 3, 5, 8, 20]));
    c.held_wording = round2(r.range_f64(0.0, 1.0));
    // Languages: English, English and one other, or one other alone.
    let langs = crate::content::wording::LANGS;
    c.languages = match r.below(4) {
        0 | 1 => w(&[("en", 1.0)]),
        2 => w(&[("en", 0.6), (r.pick_str(&langs[1..]), 0.4)]),
        _ => w(&[(r.pick_str(&langs[1..]), 1.0)]),
    };
    // Templates or real questions.
    c.real_questions = *r.pick(&[0.0, 0.0, 0.3, 0.7, 1.0]);
    c.templates = nz(*r.pick(&[1, 2, 4, 6, 10, 20]));
    c.paraphrase = round2(r.range_f64(0.0, 0.9));
    c.follow_up_rate = round2(if r.chance(0.6) {
        r.range_f64(0.0, 0.05)
    } else {
        r.range_f64(0.1, 0.5)
    });
    // Identity.
    let id = &mut c.identity;
    id.age_days = round2(if r.chance(0.5) {
        r.range_f64(1.0, 30.0)
    } else {
        r.range_f64(90.0, 900.0)
    });
    id.verified = round2(r.range_f64(0.3, 1.0));
    id.signup = mix(r, &["standard", "education", "startup", "research"], 0.4);
    id.tiers = mix(r, &["free", "tier1", "tier2", "tier3", "tier4"], 0.4);
    id.countries = mix(
        r,
        &["US", "SG", "DE", "CA", "GB", "IN", "BR", "HK", "JP", "NL"],
        0.3,
    );
    // Exits: datacenter or residential, fixed or rotating per request.
    c.network.kind = r
        .pick_str(&["datacenter", "residential_proxy", "mixed", "residential"])
        .to_string();
    c.network.sticky = round2(if r.chance(0.5) {
        r.range_f64(0.0, 0.3)
    } else {
        r.range_f64(0.7, 1.0)
    });
    c.network.clients = nz(r.range_u64(1, 4) as u32);
    // Timing.
    c.timing.mode = r
        .pick_str(&["synchronized", "bursty", "steady", "human"])
        .to_string();
    c.timing.windows_per_day = round2(r.range_f64(1.0, 10.0));
    c.timing.window_minutes = round2(r.range_f64(10.0, 90.0));
    c.timing.participation = round2(r.range_f64(0.3, 1.0));
    c.timing.regularity = round2(r.range_f64(0.0, 0.9));
    c.timing.utc_offset = (r.range_f64(-8.0, 9.0)).round();
    c.timing.session_requests = round2(r.range_f64(2.0, 10.0));
    c.timing.think_seconds = round2(r.range_f64(20.0, 180.0));
    // The stealthy corner: every incidental tell avoided at once (no
    // log-probabilities or samples, short outputs, no API reasoning, aged
    // verified standard accounts on their own cards, home addresses).
    // What is left is the harvest itself: requests for reasoning, at
    // volume and pace, on prompts of its own.
    if r.chance(0.25) {
        c.params.logprobs = 0.0;
        c.params.n = 1;
        c.params.max_tokens_at_max = 0.0;
        c.params.reasoning = 0.0;
        let id = &mut c.identity;
        id.age_days = round2(r.range_f64(120.0, 900.0));
        id.verified = 1.0;
        id.signup = w(&[("standard", 1.0)]);
        id.payment_fingerprints = 0;
        c.network.kind = "residential".into();
    }
}

fn blank(name: String, family: &str) -> CampaignSpec {
    CampaignSpec {
        name,
        family: Some(family.to_string()),
        accounts: 1,
        requests: 1,
        start_day: 0.0,
        end_day: None,
        account_skew: 0.5,
        capabilities: w(&[("reasoning", 1.0)]),
        reasoning_elicitation: 0.6,
        elicitation: w(&[("literal", 1.0)]),
        wordings: nz(3),
        held_wording: 0.5,
        real_questions: 0.0,
        templates: nz(6),
        paraphrase: 0.3,
        languages: w(&[("en", 1.0)]),
        system_prompts: 0,
        system_prompt_rate: 0.0,
        follow_up_rate: 0.05,
        timing: TimingSpec::default(),
        identity: IdentitySpec::default(),
        network: NetworkSpec::default(),
        params: ParamSpec::default(),
        model: None,
        pivot: None,
        mix: None,
    }
}

/// One campaign of `family`, its behaviours drawn, at `scale`.
fn campaign(
    r: &mut Rng,
    family: &str,
    i: usize,
    scale: f64,
    days: f64,
    new_model: Option<&str>,
) -> CampaignSpec {
    let mut c = blank(format!("{family}-{i}"), family);
    behaviour(r, &mut c);
    // Every skill a campaign may target but plain chat.
    let high: Vec<&str> = CAPABILITIES
        .iter()
        .copied()
        .filter(|c| *c != "chat")
        .collect();
    let per_account: f64;
    match family {
        "reasoning-harvest" => {
            c.accounts = scaled(r.range_f64(20.0, 120.0), scale, 3);
            per_account = r.range_f64(150.0, 800.0);
            c.capabilities = mix(r, &["reasoning", "grading", "safety_rewrite"], 0.6);
            c.reasoning_elicitation = round2(r.range_f64(0.6, 1.0));
            c.identity.payment_fingerprints = (c.accounts / r.range_u64(4, 15) as u32).max(1);
            if r.chance(0.5) {
                c.timing.mode = "synchronized".into();
            }
            c.system_prompts = r.range_u64(0, 6) as u32;
            c.system_prompt_rate = round2(r.range_f64(0.0, 0.6));
        }
        "agentic-multi" => {
            c.accounts = scaled(r.range_f64(80.0, 500.0), scale, 4);
            per_account = r.range_f64(60.0, 400.0);
            c.account_skew = round2(r.range_f64(0.3, 1.0));
            c.capabilities = mix(r, &high, 0.6);
            c.reasoning_elicitation = round2(r.range_f64(0.2, 0.8));
            c.follow_up_rate = round2(r.range_f64(0.1, 0.5));
        }
        "coding-pivot" => {
            c.accounts = scaled(r.range_f64(10.0, 60.0), scale, 2);
            per_account = r.range_f64(800.0, 4000.0);
            c.capabilities = mix(r, &["coding", "agentic"], 0.7);
            c.reasoning_elicitation = round2(r.range_f64(0.1, 0.7));
            c.identity.payment_fingerprints = (c.accounts / r.range_u64(3, 12) as u32).max(1);
            if let Some(m) = new_model {
                c.pivot = Some(PivotSpec {
                    model: m.to_string(),
                    share: round2(r.range_f64(0.3, 0.9)),
                    within_hours: round2(r.range_f64(3.0, 24.0)),
                });
            }
        }
        "hydra-reseller" => {
            c.accounts = scaled(r.range_f64(5.0, 40.0), scale, 2);
            per_account = r.range_f64(200.0, 1500.0);
            c.capabilities = mix(r, &high, 0.4);
            c.reasoning_elicitation = round2(r.range_f64(0.4, 1.0));
            c.identity.keys = r.range_u64(1, 6) as u32;
            c.mix = Some(MixSpec {
                benign_per_attack: round2(r.range_f64(0.5, 5.0)),
                end_users: r.range_u64(20, 200) as u32,
                separate_key: round2(r.range_f64(0.3, 1.0)),
                keys: r.range_u64(1, 40) as u32,
            });
            c.identity.age_days = round2(r.range_f64(60.0, 700.0));
            c.timing.mode = r.pick_str(&["steady", "bursty"]).to_string();
        }
        "low-and-slow" => {
            c.accounts = scaled(r.range_f64(300.0, 2500.0), scale, 10);
            per_account = r.range_f64(8.0, 40.0);
            c.account_skew = round2(r.range_f64(0.1, 0.5));
            c.capabilities = mix(r, &["reasoning", "coding", "data_analysis", "grading"], 0.5);
            c.reasoning_elicitation = round2(r.range_f64(0.4, 1.0));
            c.identity.payment_fingerprints = (c.accounts / r.range_u64(3, 20) as u32).max(1);
            c.timing.mode = "human".into();
            c.network.kind = r
                .pick_str(&["residential_proxy", "residential", "mixed"])
                .to_string();
            c.network.ips = nz((c.accounts * 2).max(50));
        }
        "single-key" => {
            c.accounts = r.range_u64(1, 4) as u32;
            per_account = r.range_f64(300.0, 3000.0);
            c.capabilities = mix(r, &["reasoning", "coding", "grading", "data_analysis"], 0.4);
            c.reasoning_elicitation = round2(r.range_f64(0.7, 1.0));
            c.identity.keys = 1;
            c.timing.mode = r.pick_str(&["steady", "bursty", "human"]).to_string();
        }
        "dataset-replay" => {
            c.accounts = scaled(r.range_f64(10.0, 200.0), scale, 2);
            per_account = r.range_f64(40.0, 600.0);
            c.capabilities = mix(r, &["reasoning", "coding", "chat"], 0.6);
            c.real_questions = round2(r.range_f64(0.7, 1.0));
            c.reasoning_elicitation = round2(r.range_f64(0.5, 1.0));
            c.elicitation = if r.chance(0.5) {
                w(&[("system", 1.0)])
            } else {
                mix(r, &["paraphrase", "system", "api"], 0.6)
            };
            c.identity.age_days = round2(r.range_f64(120.0, 900.0));
            c.identity.verified = round2(r.range_f64(0.8, 1.0));
            c.network.kind = r
                .pick_str(&["residential", "residential_proxy", "mixed"])
                .to_string();
            c.timing.mode = r.pick_str(&["human", "bursty", "steady"]).to_string();
        }
        "tool-trajectory" => {
            c.accounts = r.range_u64(1, 3) as u32;
            per_account = r.range_f64(2000.0, 8000.0);
            c.capabilities = mix(
                r,
                &["agentic", "coding", "computer_use", "data_analysis"],
                0.6,
            );
            c.reasoning_elicitation = round2(r.range_f64(0.0, 0.6));
            c.follow_up_rate = round2(r.range_f64(0.5, 0.95));
            c.identity.keys = r.range_u64(20, 150) as u32;
            c.identity.age_days = round2(r.range_f64(60.0, 700.0));
            c.identity.tiers = w(&[("tier4", 0.5), ("enterprise", 0.5)]);
            c.timing.mode = r.pick_str(&["steady", "bursty"]).to_string();
        }
        "signup-swarm" => {
            c.accounts = scaled(r.range_f64(300.0, 1500.0), scale, 10);
            per_account = r.range_f64(10.0, 60.0);
            c.account_skew = round2(r.range_f64(0.1, 0.4));
            c.capabilities = mix(r, &["reasoning", "coding", "grading"], 0.5);
            c.reasoning_elicitation = round2(r.range_f64(0.4, 1.0));
            c.identity.email_domains = vec![format!("mail-{}.example", r.hex(6))];
            c.identity.payment_fingerprints = r.range_u64(5, 30) as u32;
            c.identity.signup_window_hours = Some(round2(r.range_f64(0.5, 3.0)));
            c.identity.age_days = round2(r.range_f64(1.0, 20.0));
            c.timing.mode = "human".into();
            c.network.kind = r.pick_str(&["residential_proxy", "mixed"]).to_string();
            c.network.ips = nz((c.accounts * 2).max(50));
        }
        _ => {
            // sync-network
            c.accounts = scaled(r.range_f64(30.0, 100.0), scale, 3);
            per_account = r.range_f64(60.0, 400.0);
            c.capabilities = mix(r, &["reasoning", "grading", "coding"], 0.5);
            c.reasoning_elicitation = round2(r.range_f64(0.5, 1.0));
            c.identity.payment_fingerprints = r.range_u64(2, 5) as u32;
            c.timing.mode = "synchronized".into();
            c.timing.participation = round2(r.range_f64(0.6, 1.0));
            c.system_prompts = r.range_u64(3, 12) as u32;
            c.system_prompt_rate = 1.0;
        }
    }
    c.requests = ((c.accounts as f64 * per_account * scale.max(0.25)).round() as u64)
        .max(c.accounts as u64 * 3);
    // Active for part or all of the world; some harvests run as one
    // intense stretch of hours (as fast as their limits allow).
    if r.chance(if family == "single-key" { 0.6 } else { 0.25 }) {
        // Minutes to hours: a script run as fast as its limits allow (10
        // to 600 requests a minute per account, log-uniform).
        let per_account = c.requests as f64 / f64::from(c.accounts.max(1));
        let rpm = 10f64 * 60f64.powf(r.f64());
        let minutes = per_account / rpm;
        c.start_day = round2(r.range_f64(0.0, days - 0.4));
        c.end_day = Some((c.start_day + (minutes / 1440.0).max(0.002)).min(days));
        c.timing.mode = "steady".to_string();
        c.timing.regularity = round2(r.range_f64(0.0, 0.9));
    } else if r.chance(0.4) && days > 2.0 {
        c.start_day = round2(r.range_f64(0.0, days / 2.0));
        if r.chance(0.5) {
            c.end_day = Some(round2(r.range_f64(c.start_day + 1.0, days)));
        }
    }
    c
}

fn product(r: &mut Rng, kind: &str, scale: f64) -> ProductSpec {
    let mut p = ProductSpec {
        kind: kind.to_string(),
        accounts: 1,
        requests_per_day: 100.0,
        keys: 1,
        sibling_accounts: 1,
        suite_items: nz(500),
        samples: NonZeroU32::MIN,
        run_hour: round2(r.range_f64(0.0, 6.0)),
        elicit: 1.0,
    };
    let s = scale.max(0.05);
    match kind {
        "support_bot" => {
            p.accounts = r.range_u64(1, 4) as u32;
            p.requests_per_day = (r.range_f64(1000.0, 12000.0) * s).round();
            p.keys = r.range_u64(1, 4) as u32;
        }
        "batch_job" => {
            p.accounts = r.range_u64(1, 3) as u32;
            p.requests_per_day = (r.range_f64(1000.0, 12000.0) * s).round();
        }
        "eval_harness" => {
            p.accounts = r.range_u64(1, 3) as u32;
            p.requests_per_day = (r.range_f64(300.0, 2000.0) * s).round();
            p.suite_items = nz(r.range_u64(100, 1000) as u32);
            p.samples = nz(*r.pick(&[1, 1, 2, 4]));
            p.elicit = round2(r.range_f64(0.0, 1.0));
        }
        "coding_agent" => {
            p.accounts = r.range_u64(1, 3) as u32;
            p.requests_per_day = (r.range_f64(1000.0, 9000.0) * s).round();
            p.keys = r.range_u64(1, 8) as u32;
        }
        "multi_key_startup" => {
            p.accounts = r.range_u64(1, 2) as u32;
            p.requests_per_day = (r.range_f64(50.0, 300.0) * s).round();
            p.keys = r.range_u64(2, 5) as u32;
            p.sibling_accounts = r.range_u64(2, 4) as u32;
        }
        "tutoring" => {
            p.accounts = r.range_u64(1, 2) as u32;
            p.requests_per_day = (r.range_f64(500.0, 6000.0) * s).round();
            p.keys = r.range_u64(5, 200) as u32;
        }
        "judge_pipeline" => {
            p.accounts = r.range_u64(1, 3) as u32;
            p.requests_per_day = (r.range_f64(200.0, 3000.0) * s).round();
            p.elicit = round2(r.range_f64(0.0, 1.0));
        }
        _ => {
            // hackathon
            p.accounts = r.range_u64(2, 12) as u32;
            p.requests_per_day = round2(r.range_f64(20.0, 300.0));
            p.elicit = round2(r.range_f64(0.0, 0.6));
        }
    }
    p.requests_per_day = p.requests_per_day.max(5.0);
    p
}

/// A randomised world.
pub fn random_scenario(seed: u64, opts: &RandomOpts) -> Result<Scenario, RandomError> {
    let families = FAMILIES.join(", ");
    for f in opts.include.iter().chain(opts.without.iter()) {
        if !FAMILIES.contains(&f.as_str()) {
            return Err(RandomError::UnknownFamily(f.clone(), families));
        }
    }
    if let Some(f) = opts.include.iter().find(|f| opts.without.contains(f)) {
        return Err(RandomError::Conflict(f.clone()));
    }
    if !(opts.scale > 0.0 && opts.scale <= 10.0) {
        return Err(RandomError::Scale(opts.scale));
    }
    let r = &mut Rng::derive(&[seed, label("random-world")]);
    let scale = opts.scale;
    let days = round2(r.range_f64(3.0, 7.0));
    let month = r.range_u64(1, 11);
    let day = r.range_u64(1, 27);
    let start = format!("2026-{month:02}-{day:02}T00:00:00Z");
    let release = r.chance(0.75).then(|| round2(r.range_f64(0.5, days - 0.5)));
    let mut models = vec![
        ModelSpec {
            name: "atlas-2".into(),
            released_day: -300.0,
            max_output_tokens: *r.pick(&[4096, 8192, 16384]),
            reasoning: false,
            share: 1.0,
        },
        ModelSpec {
            name: "atlas-2-pro".into(),
            released_day: -120.0,
            max_output_tokens: *r.pick(&[16384, 32000, 64000]),
            reasoning: true,
            share: round2(r.range_f64(0.5, 2.0)),
        },
    ];
    if let Some(d) = release {
        models.push(ModelSpec {
            name: "atlas-3".into(),
            released_day: d,
            max_output_tokens: *r.pick(&[32000, 64000, 128000]),
            reasoning: true,
            share: 0.0,
        });
    }
    let net = |r: &mut Rng| -> Weights {
        w(&[
            ("residential", r.range_f64(0.3, 0.8)),
            ("corporate", r.range_f64(0.05, 0.3)),
            ("university", r.range_f64(0.02, 0.25)),
            ("mobile", r.range_f64(0.05, 0.25)),
            ("cloud", r.range_f64(0.01, 0.15)),
            ("vpn", r.range_f64(0.0, 0.15)),
        ])
        .into_iter()
        .map(|(k, v)| (k, round2(v)))
        .collect()
    };
    let benign = BenignSpec {
        accounts: scaled(r.range_f64(3000.0, 6000.0), scale, 50),
        sessions_per_day: round2(r.range_f64(0.15, 1.0)),
        activity_sigma: round2(r.range_f64(0.8, 1.4)),
        weekend_factor: round2(r.range_f64(0.4, 0.9)),
        turns_mean: round2(r.range_f64(1.5, 3.0)),
        continue_rate: round2(r.range_f64(0.5, 0.8)),
        think_seconds: round2(r.range_f64(20.0, 90.0)),
        typo_rate: round2(r.range_f64(0.02, 0.15)),
        network: net(r),
        corporate_nat_users: nz(r.range_u64(10, 80) as u32),
        university_nat_users: nz(r.range_u64(50, 300) as u32),
        shared_payment_rate: round2(r.range_f64(0.0, 0.08)),
        adopt_days: round2(r.range_f64(0.5, 6.0)),
        adopt_share: round2(r.range_f64(0.3, 0.9)),
        reasoning_rate: round2(r.range_f64(0.0, 0.3)),
        step_by_step_rate: round2(r.range_f64(0.0, 0.08)),
        system_prompt_rate: round2(r.range_f64(0.0, 0.4)),
        reasoning_system_rate: round2(r.range_f64(0.0, 0.08)),
        reasoning_always_rate: round2(r.range_f64(0.0, 0.3)),
        corpus_share: if r.chance(0.5) {
            1.0
        } else {
            round2(r.range_f64(0.02, 0.3))
        },
        homework_share: round2(r.range_f64(0.0, 0.6)),
    };
    let mut products = Vec::new();
    for kind in crate::scenario::PRODUCT_KINDS {
        if r.chance(0.6) {
            products.push(product(r, kind, scale));
        }
    }
    // Campaigns: the included families, then a few drawn from the rest.
    let allowed: Vec<&str> = FAMILIES
        .iter()
        .copied()
        .filter(|f| !opts.without.iter().any(|x| x == f))
        .collect();
    let mut chosen: Vec<String> = opts.include.clone();
    let extra = opts
        .extra_campaigns
        .unwrap_or_else(|| r.range_u64(2, 5) as u32);
    for _ in 0..extra {
        if allowed.is_empty() {
            break;
        }
        chosen.push(r.pick_str(&allowed).to_string());
    }
    let new_model = release.map(|_| "atlas-3");
    let mut campaigns = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for f in &chosen {
        let i = counts.entry(f.clone()).or_insert(0);
        *i += 1;
        campaigns.push(campaign(r, f, *i, scale, days, new_model));
    }
    let output = OutputKnobs {
        account_records: *r.pick(&[1.0, 1.0, 0.5, 0.0]),
        network_fields: r.chance(0.8),
        error_rate: round2(r.range_f64(0.0, 0.01) * 100.0) / 100.0,
        ..OutputKnobs::default()
    };
    let s = Scenario {
        name: format!("random-{seed}"),
        description: format!(
            "A randomised world (seed {seed}, scale {scale}): {} campaigns of families {}.",
            campaigns.len(),
            chosen.join(", ")
        ),
        start,
        days,
        corpus: "auto".into(),
        output,
        models,
        benign: Some(benign),
        products,
        campaigns,
    };
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_worlds_validate_and_are_reproducible() {
        for seed in 0..40 {
            let s = random_scenario(seed, &RandomOpts::default()).unwrap();
            s.validate("random")
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let again = random_scenario(seed, &RandomOpts::default()).unwrap();
            assert_eq!(format!("{s:?}"), format!("{again:?}"));
        }
    }

    #[test]
    fn families_can_be_required_and_excluded() {
        let opts = RandomOpts {
            include: vec!["single-key".into()],
            without: vec!["low-and-slow".into()],
            ..RandomOpts::default()
        };
        for seed in 0..20 {
            let s = random_scenario(seed, &opts).unwrap();
            assert!(s.campaigns.iter().any(|c| c.family() == "single-key"));
            assert!(s.campaigns.iter().all(|c| c.family() != "low-and-slow"));
        }
        let bad = RandomOpts {
            include: vec!["nope".into()],
            ..RandomOpts::default()
        };
        assert!(
            random_scenario(1, &bad)
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
    }

    #[test]
    fn behaviours_are_drawn_in_both_directions() {
        // Over many worlds, campaigns both fix and vary their settings, and
        // use every elicitation style.
        let mut fixed = 0;
        let mut varied = 0;
        let mut styles = std::collections::BTreeSet::new();
        for seed in 0..60 {
            for c in random_scenario(seed, &RandomOpts::default())
                .unwrap()
                .campaigns
            {
                if c.params.vary == 0.0 {
                    fixed += 1;
                } else {
                    varied += 1;
                }
                styles.extend(c.elicitation.keys().cloned());
            }
        }
        assert!(fixed > 20 && varied > 20, "{fixed} {varied}");
        assert_eq!(styles.len(), 4, "{styles:?}");
    }
}
