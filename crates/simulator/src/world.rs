/*!
The simulated world: accounts, their streams, and event specs.

Populations add accounts and compact [`Spec`]s (when, who, what kind of
content); nothing is rendered until every spec exists and is sorted by
time. Each spec is rendered from its own random stream, derived from
(seed, account, sequence number), so rendering can run in parallel and
still write the same bytes.
*/

use distillguard_core::{AccountInfo, Label};

use crate::content::templates::Template;
use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct ModelRt {
    pub name: String,
    pub released: i64,
    pub max_output: u32,
    pub reasoning: bool,
    pub share: f64,
}

/// Addresses shared by streams (a campaign's proxy pool is shared by all
/// its accounts, so it is stored once).
pub type IpPool = std::sync::Arc<[(String, u16)]>;

/// How one account sends requests: key, client stack, network.
#[derive(Debug, Clone)]
pub struct Stream {
    pub key: String,
    pub client: u16,
    pub anthropic: bool,
    /// Addresses the stream uses: (ip, network index). One for a fixed
    /// address; a pool for CGNAT or proxies (the spec picks).
    pub ips: IpPool,
}

/// Request parameters of a human or a product.
#[derive(Debug, Clone, Copy)]
pub struct HumanParams {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub stream: f64,
    pub step_by_step: f64,
    pub reasoning: f64,
    /// The account's own fixed system prompt: 0 none, else a seed its
    /// text is drawn from (see `render`); [`REASONING_SYSTEM`] set: the
    /// prompt demands step-by-step reasoning.
    pub system: u32,
}

/// Bit of [`HumanParams::system`]: the system prompt asks for reasoning.
pub const REASONING_SYSTEM: u32 = 1 << 31;

#[derive(Debug, Clone)]
pub enum Profile {
    Human(HumanParams),
    Support {
        brand: u16,
    },
    Batch {
        template: u8,
    },
    Eval {
        suite_seed: u64,
        samples: u32,
        /// Share of the suite's items that ask for chain-of-thought.
        cot: f64,
    },
    CodingAgent,
    Startup {
        brand: u16,
    },
    /// A tutoring product: a system prompt that asks for every step.
    Tutoring {
        brand: u16,
        seed: u32,
    },
    /// An LLM-as-judge evaluation pipeline.
    Judge {
        rubric: u8,
        seed: u32,
    },
    /// A hackathon team's app: one prompt template over its users' input.
    Hackathon {
        app: u8,
        seed: u32,
    },
    Campaign {
        campaign: u16,
        end_user: HumanParams,
    },
}

impl Profile {
    /// What kind of account this is (written to the truth).
    pub fn kind(&self) -> &'static str {
        match self {
            Profile::Human(p) if p.system & REASONING_SYSTEM != 0 => "human-reasoning-system",
            Profile::Human(p) if p.reasoning >= 1.0 => "human-reasoning-always",
            Profile::Human(_) => "human",
            Profile::Support { .. } => "support_bot",
            Profile::Batch { .. } => "batch_job",
            Profile::Eval { .. } => "eval_harness",
            Profile::CodingAgent => "coding_agent",
            Profile::Startup { .. } => "multi_key_startup",
            Profile::Tutoring { .. } => "tutoring",
            Profile::Judge { .. } => "judge_pipeline",
            Profile::Hackathon { .. } => "hackathon",
            Profile::Campaign { .. } => "campaign",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimAccount {
    pub id: String,
    pub info: AccountInfo,
    pub label: Label,
    pub campaign: Option<u16>,
    pub streams: Vec<Stream>,
    pub profile: Profile,
    /// The streams that carry harvesting traffic (an attack account's).
    pub harvest_streams: Vec<u8>,
}

/// What a request carries, compactly.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A human turn of a corpus conversation (history up to `turn`).
    Chat {
        conv: u32,
        turn: u8,
        typo: bool,
        /// How many earlier requests in the world used this same real turn
        /// (0: first use, sent verbatim; later uses are varied).
        reuse: u16,
    },
    Support {
        turns: u8,
    },
    Batch {
        doc: u32,
    },
    Eval {
        item: u32,
    },
    Agent {
        conv: u32,
        step: u8,
    },
    /// A problem of a course's shared problem set, pasted by a student.
    Homework {
        set: u32,
        item: u16,
        step: bool,
    },
    /// A student's question to a tutoring product (`turns` so far).
    Tutor {
        conv: u32,
        turns: u8,
        math: bool,
    },
    /// One answer to grade.
    Judge {
        doc: u32,
        explain: bool,
    },
    /// One use of a hackathon app.
    Hackathon {
        conv: u32,
        elicit: bool,
    },
    Distill {
        cap: u8,
        template: u16,
        lang: u8,
        elicit: bool,
        follow_up: bool,
        paraphrase: bool,
        system: u16,
        /// How reasoning is asked for (`ELICITATION_STYLES` index).
        style: u8,
        /// Which of the campaign's wordings.
        wording: u16,
        /// A real question from the corpus instead of a template
        /// (`NO_CONV`: a template), and its earlier uses in the world.
        conv: u32,
        reuse: u16,
    },
}

/// [`Kind::Distill::conv`] of a templated request.
pub const NO_CONV: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub ts: i64,
    pub account: u32,
    pub seq: u32,
    pub stream: u8,
    pub ip: u16,
    pub model: u8,
    pub kind: Kind,
}

/// A campaign's fixed material.
#[derive(Debug, Clone)]
pub struct CampaignRt {
    pub name: String,
    /// Templates per capability index (empty for unused capabilities).
    pub templates: Vec<Vec<Template>>,
    pub systems: Vec<String>,
    /// Requests for reasoning in the user turn, per language (`LANGUAGES`).
    pub user_wordings: Vec<Vec<String>>,
    /// System prompts that demand reasoning.
    pub system_wordings: Vec<String>,
}

/// Helper to draw an id with a prefix from a dedicated stream.
pub fn new_id(prefix: &str, rng: &mut Rng, hex: usize) -> String {
    format!("{prefix}{}", rng.hex(hex))
}

/// The benign model choice: a preferred established model, and newly
/// released models once adopted.
#[derive(Debug, Clone)]
pub struct ModelHabit {
    pub base: u8,
    /// (model, adoption time).
    pub adopted: Vec<(u8, i64)>,
    pub adopt_share: f64,
}

impl ModelHabit {
    pub fn draw(
        rng: &mut Rng,
        models: &[ModelRt],
        start: i64,
        adopt_days: f64,
        adopt_share: f64,
    ) -> Self {
        let weights: Vec<f64> = models
            .iter()
            .map(|m| if m.released <= start { m.share } else { 0.0 })
            .collect();
        let base = rng.weighted(&weights) as u8;
        let mut adopted = Vec::new();
        for (i, m) in models
            .iter()
            .enumerate()
            .filter(|(_, m)| m.released > start)
        {
            // Seven in ten users try a new model at some point.
            if rng.chance(0.7) {
                let delay = rng.exp(adopt_days) * distillguard_core::time::MS_PER_DAY as f64;
                adopted.push((i as u8, m.released + delay as i64));
            }
        }
        ModelHabit {
            base,
            adopted,
            adopt_share,
        }
    }

    pub fn at(&self, ts: i64, rng: &mut Rng) -> u8 {
        let newest = self
            .adopted
            .iter()
            .filter(|(_, t)| *t <= ts)
            .map(|(m, _)| *m)
            .max();
        match newest {
            Some(m) if rng.chance(self.adopt_share) => m,
            _ => self.base,
        }
    }
}
