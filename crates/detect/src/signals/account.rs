/*!
Per-account behavioural fingerprints, in fixed memory.

An [`AccountProfile`] folds each request's signals ([`Observation`]) into
counters and small sketches, then reports named [`Feature`]s, each a value
in [0, 1] (higher = more like harvesting) with one line a human can
check. State is a fixed size (about 500 bytes, asserted in a test) however
long the account lives. Every feature below says what it measures and why
attackers show it; each costs O(1) per request (the top-k updates scan at
most eight slots).

Lifetime counts are used, not sliding windows: verdicts are taken as events
stream in, so a feature at request *n* describes the account's first *n*
requests; `flagged_at` then answers "from which request on".
*/

use distillguard_core::time::{MS_PER_DAY, MS_PER_HOUR};
use distillguard_core::{AccountInfo, Timestamp};
use distillguard_sketches::topk::TopK;

use super::request::capability::Capability;

/// What the account-level features need from one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub ts: Timestamp,
    /// How strongly the request asks for written-out reasoning, in [0, 1]:
    /// 1 for a phrase-list match, else the learned classifier's probability
    /// (the higher of the user turn's and the system prompt's).
    pub elicit: f32,
    /// The system prompt itself asks for reasoning.
    pub elicit_in_system: bool,
    /// The API's extended reasoning was asked for (`reasoning_effort`,
    /// `thinking`).
    pub reasoning_param: bool,
    pub capability: Capability,
    pub logprobs: bool,
    pub multi_sample: bool,
    pub at_max_tokens: bool,
    /// Key of the sampling settings the request set explicitly (`None`:
    /// it left every one to the API's defaults).
    pub settings_key: Option<u64>,
    pub single_shot: bool,
    pub refers_back: bool,
    /// The template's opening and closing keys (its fixed wording), when
    /// the prompt was long enough to have them.
    pub template: Option<[u64; 2]>,
    /// Hash of the exact last user turn (re-sent prompts).
    pub exact: u64,
    /// The prompt reuses a template (its opening or closing is the
    /// account's own or ≥ 5 accounts') with content never seen before
    /// anywhere: the shape of a templated harvest, unlike a copy-pasted
    /// problem that many people send word for word.
    pub fresh_template: bool,
    /// The request used a model released less than 24 h before it.
    pub new_model: bool,
    /// A model was released in the 24 h before this request (so a
    /// `new_model` share can be judged).
    pub release_window: bool,
    /// Output tokens of the answer, when the log has them.
    pub output_tokens: u32,
}

/// Names of the behavioural features, in [`AccountProfile::values`] order.
pub const FEATURES: [&str; 16] = [
    "evidence",
    "pace",
    "novelty",
    "elicitation",
    "harvest_shape",
    "templated_harvest",
    "reasoning_requested",
    "template_concentration",
    "capability_concentration",
    "uniform_params",
    "harvesting_params",
    "single_shot",
    "timing_regularity",
    "round_the_clock",
    "pivot",
    "volume",
];

/// Pseudo-requests of the prior that rates start from: a rate over few
/// requests is pulled towards what a typical account shows, so that an
/// account's third request does not weigh like its three-hundredth.
pub const PRIOR_REQUESTS: f64 = 2.0;

/// A rate shrunk towards `prior` by [`PRIOR_REQUESTS`].
fn shrunk(k: f64, n: f64, prior: f64) -> f64 {
    (k + PRIOR_REQUESTS * prior) / (n + PRIOR_REQUESTS)
}

/// One named feature's value and the line a human reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: &'static str,
    /// In [0, 1]; higher looks more like harvesting.
    pub value: f64,
    pub detail: String,
}

/// Fixed-size state of one account.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AccountProfile {
    pub requests: u32,
    first_ts: i64,
    last_ts: i64,
    /// Sum of the requests' elicitation strengths.
    elicit_sum: f32,
    /// Requests at strength ≥ 0.5, and of those, through the system prompt.
    elicit_hits: u32,
    /// Sum over single-shot requests of their elicitation strength.
    shape_sum: f32,
    /// Sum over fresh-template requests of their elicitation strength.
    templated_sum: f32,
    /// Distinct exact prompts (64 one-byte registers).
    distinct: distillguard_sketches::hll::Hll<6>,
    elicit_system: u32,
    reasoning_param: u32,
    caps: [u32; 9],
    logprobs: u32,
    multi_sample: u32,
    at_max: u32,
    single_shot: u32,
    refers_back: u32,
    informative: u32,
    /// Informative requests whose opening or closing repeats an earlier one.
    repeats: u32,
    templates: TopK<8>,
    /// Requests that set sampling parameters explicitly, and their settings.
    explicit: u32,
    settings: TopK<4>,
    /// UTC hours of the day with any request (bit h = hour h; only presence
    /// is read, so a bit mask replaces 24 counters).
    hours: u32,
    /// Welford over log10 of inter-arrival seconds.
    gap_n: u32,
    gap_mean: f64,
    gap_m2: f64,
    in_release_window: u32,
    on_new_model: u32,
    /// The tier's requests per day (0: not set, judged as tier1's).
    daily_cap: u32,
    output_tokens: u64,
    /// The current UTC day and its counts.
    day: i64,
    day_requests: u32,
    day_tokens: u64,
    peak_day_requests: u32,
    peak_day_tokens: u64,
    /// Earlier active days and their requests (the account's own history).
    past_days: u32,
    past_requests: u64,
}

fn frac(a: u32, n: u32) -> f64 {
    if n == 0 { 0.0 } else { a as f64 / n as f64 }
}

fn frac_f(a: f64, n: u32) -> f64 {
    if n == 0 { 0.0 } else { a / n as f64 }
}

/// "k of n" for a reason line, "none of n" when nothing was counted (a
/// line that says "0 of 30" reads as a broken sentence).
pub(crate) fn of(k: impl Into<u64>, n: impl Into<u64>) -> String {
    match k.into() {
        0 => format!("none of {}", n.into()),
        k => format!("{k} of {}", n.into()),
    }
}

/// "p% of n" for a reason line, "none of n" when the share rounds to 0%.
fn pct_of(share: f64, n: u32) -> String {
    let pct = (share * 100.0).round();
    if pct <= 0.0 {
        format!("none of {n}")
    } else {
        format!("{pct:.0}% of {n}")
    }
}

impl AccountProfile {
    /// The time of the latest request (ms; 0 before any).
    pub fn last_seen(&self) -> i64 {
        self.last_ts
    }

    pub fn observe(&mut self, o: &Observation) {
        let t = o.ts.0;
        if self.requests == 0 {
            self.first_ts = t;
        } else {
            let gap_s = ((t - self.last_ts).max(0) as f64 / 1000.0).max(0.05);
            let x = gap_s.log10();
            self.gap_n += 1;
            let d = x - self.gap_mean;
            self.gap_mean += d / self.gap_n as f64;
            self.gap_m2 += d * (x - self.gap_mean);
        }
        self.last_ts = self.last_ts.max(t);
        self.requests += 1;
        let e = o.elicit.clamp(0.0, 1.0);
        self.elicit_sum += e;
        if e >= 0.5 {
            self.elicit_hits += 1;
            self.elicit_system += o.elicit_in_system as u32;
        }
        if o.single_shot {
            self.shape_sum += e;
        }
        if o.fresh_template {
            self.templated_sum += e;
        }
        self.distinct.add(o.exact);
        self.reasoning_param += o.reasoning_param as u32;
        self.caps[o.capability as usize] += 1;
        self.logprobs += o.logprobs as u32;
        self.multi_sample += o.multi_sample as u32;
        self.at_max += o.at_max_tokens as u32;
        self.single_shot += o.single_shot as u32;
        self.refers_back += o.refers_back as u32;
        if let Some(edges) = o.template {
            self.informative += 1;
            self.repeats += edges.iter().any(|k| self.templates.count(*k) > 0) as u32;
            for k in edges {
                self.templates.insert(k);
            }
        }
        if let Some(k) = o.settings_key {
            self.explicit += 1;
            self.settings.insert(k);
        }
        self.hours |= 1 << (t.rem_euclid(MS_PER_DAY) / MS_PER_HOUR);
        let day = t.div_euclid(MS_PER_DAY);
        if self.requests > 1 && day != self.day {
            self.past_days += 1;
            self.past_requests += u64::from(self.day_requests);
            self.day_requests = 0;
            self.day_tokens = 0;
        }
        self.day = day;
        self.day_requests += 1;
        self.day_tokens += u64::from(o.output_tokens);
        self.output_tokens += u64::from(o.output_tokens);
        self.peak_day_requests = self.peak_day_requests.max(self.day_requests);
        self.peak_day_tokens = self.peak_day_tokens.max(self.day_tokens);
        if o.release_window {
            self.in_release_window += 1;
            self.on_new_model += o.new_model as u32;
        }
    }

    /// A fresh profile for the account's tier (daily allowance from the
    /// account record's tier; enterprise has no cap, judged as 10M a day).
    pub fn for_tier(tier: Option<&str>) -> AccountProfile {
        AccountProfile {
            daily_cap: distillguard_core::tier::limits_of(tier)
                .rpd
                .unwrap_or(10_000_000),
            ..Default::default()
        }
    }

    /// A fresh profile with this one's tier.
    pub fn empty_like(&self) -> AccountProfile {
        AccountProfile {
            daily_cap: self.daily_cap,
            ..Default::default()
        }
    }

    fn volume_parts(&self) -> (f64, f64, f64) {
        let cap = if self.daily_cap == 0 {
            distillguard_core::tier::limits_of(None)
                .rpd
                .unwrap_or(5_000)
        } else {
            self.daily_cap
        };
        let share = self.peak_day_requests as f64 / cap.max(1) as f64;
        // 0.1% of the allowance on the busiest day scores 0, 100% scores 1.
        let of_tier = ((share.max(1e-9).log10() + 3.0) / 3.0).clamp(0.0, 1.0);
        // Today against the account's own usual active day (10× scores 1).
        let usual = if self.past_days >= 2 {
            self.past_requests as f64 / self.past_days as f64
        } else {
            0.0
        };
        let surge = if usual > 0.0 {
            (self.day_requests as f64 / usual)
                .max(1e-9)
                .log10()
                .clamp(0.0, 1.0)
        } else {
            0.0
        };
        (of_tier, surge, share)
    }

    /// Volume against the account's tier and its own history: the busiest
    /// day's requests as a share of the tier's daily allowance (log scale),
    /// or today's requests against its usual active day. A harvesting
    /// account runs near the top of what its tier allows, day after day,
    /// or turns on suddenly; a person uses a sliver of it. Campaigns that
    /// spread over thousands of accounts keep this low on purpose, which
    /// is why it is one feature among many. Direction: more volume, more
    /// suspicion (a harvest is worth its volume).
    pub fn volume(&self) -> Feature {
        let (of_tier, surge, share) = self.volume_parts();
        let usual = if self.past_days >= 2 {
            format!(
                "; today {} against {:.0} on a usual day",
                self.day_requests,
                self.past_requests as f64 / self.past_days as f64
            )
        } else {
            String::new()
        };
        Feature {
            name: "volume",
            value: of_tier.max(surge),
            detail: format!(
                "busiest day {} requests ({:.2}% of the tier's daily allowance), {} output tokens ({} on the busiest day){usual}",
                self.peak_day_requests,
                share * 100.0,
                self.output_tokens,
                self.peak_day_tokens
            ),
        }
    }

    /// Whether a template opening/closing key is among those held.
    pub fn holds_template(&self, key: u64) -> bool {
        self.templates.count(key) > 0
    }

    fn evidence_value(&self) -> f64 {
        ((1.0 + self.requests as f64).log10() / 3.0).min(1.0)
    }

    /// Evidence: how many requests the other features rest on (log scale,
    /// 1 at a thousand). Six requests that all ask for steps are chance
    /// more often than sixty are; and the same behaviour over more
    /// requests is more harvested data. It lets the score trust a
    /// behaviour more as it repeats, never less. Direction: more requests,
    /// more suspicion (alone it decides nothing: the trees learn where it
    /// matters).
    pub fn evidence(&self) -> Feature {
        Feature {
            name: "evidence",
            value: self.evidence_value(),
            detail: format!("{} requests so far", self.requests),
        }
    }

    fn pace_value(&self) -> f64 {
        if self.gap_n < 5 {
            return 0.0;
        }
        // Mean log10 gap: 100 s and slower scores 0, 1 s scores ⅔, 0.1 s 1.
        ((2.0 - self.gap_mean) / 3.0).clamp(0.0, 1.0)
    }

    /// Pace: how fast requests follow each other (the geometric mean of
    /// the gaps between them, once there are five). A person reads an
    /// answer and thinks before the next question; a harvest is paced by
    /// its budget and fires as fast as its limits allow. Busy products are
    /// fast too, which is why it only counts beside the others. Direction:
    /// faster, more suspicion.
    pub fn pace(&self) -> Feature {
        Feature {
            name: "pace",
            value: self.pace_value(),
            detail: if self.gap_n < 5 {
                format!("{} gaps between requests so far", self.gap_n)
            } else {
                format!(
                    "requests {:.1} s apart (geometric mean of {} gaps)",
                    10f64.powf(self.gap_mean),
                    self.gap_n
                )
            },
        }
    }

    /// Reasoning elicitation: the mean elicitation strength of the
    /// account's requests (phrase-list matches count 1, others the learned
    /// classifier's probability). Attackers harvest explanation traces on
    /// most requests, in whatever words; people ask for steps now and then.
    /// Direction: more elicitation, more suspicion. Shrunk towards 3% for
    /// young accounts.
    pub fn elicitation(&self) -> Feature {
        let n = self.requests;
        let v = self.elicitation_value();
        let via = if self.elicit_hits > 0 && self.elicit_system > 0 {
            format!(
                " ({:.0}% of them in the system prompt)",
                frac(self.elicit_system, self.elicit_hits) * 100.0
            )
        } else {
            String::new()
        };
        Feature {
            name: "elicitation",
            value: v,
            detail: format!(
                "{} requests ask for step-by-step reasoning{via}; mean elicitation score {:.2}",
                of(self.elicit_hits, n),
                if n == 0 {
                    0.0
                } else {
                    self.elicit_sum as f64 / n as f64
                }
            ),
        }
    }

    fn elicitation_value(&self) -> f64 {
        shrunk(self.elicit_sum as f64, self.requests as f64, 0.03)
    }

    fn shape_value(&self) -> f64 {
        shrunk(self.shape_sum as f64, self.requests as f64, 0.0)
    }

    /// Harvest shape: the share of requests that are each, at once, a
    /// request for reasoning and a single-shot prompt (the elicitation
    /// strength counts). One such request is ordinary; an account made of
    /// them is a harvest: a self-contained prompt, an explanation trace
    /// back, next. People mix: a question with steps, then a follow-up on
    /// the answer, then chat; a conjunction per request tells that apart
    /// better than the two rates apart. Direction: more, more suspicion.
    pub fn harvest_shape(&self) -> Feature {
        Feature {
            name: "harvest_shape",
            value: self.shape_value(),
            detail: format!(
                "{} requests are single-shot requests for reasoning",
                pct_of(frac_f(self.shape_sum as f64, self.requests), self.requests)
            ),
        }
    }

    fn templated_value(&self) -> f64 {
        shrunk(self.templated_sum as f64, self.requests as f64, 0.0)
    }

    /// Templated harvest: the share of requests that ask for reasoning in
    /// a prompt built from a reused template (the account's own, or one ≥ 5
    /// accounts use) around content never seen before. A distiller fills
    /// templates with fresh tasks to get fresh traces; a class pasting the
    /// same homework sends the same words, and a product's template does
    /// not ask for reasoning. Direction: more, more suspicion.
    pub fn templated_harvest(&self) -> Feature {
        Feature {
            name: "templated_harvest",
            value: self.templated_value(),
            detail: format!(
                "{} requests ask for reasoning in a reused template around new content",
                pct_of(
                    frac_f(self.templated_sum as f64, self.requests),
                    self.requests
                )
            ),
        }
    }

    fn novelty_value(&self) -> f64 {
        let n = self.requests as f64;
        if n < 20.0 {
            // Too few to tell re-sends from the estimate's error.
            return 1.0;
        }
        (self.distinct.estimate() / n).clamp(0.0, 1.0)
    }

    /// Novelty: distinct prompts per request. A harvest is worth its new
    /// prompts, so a harvester sends each prompt once; re-sending the same
    /// prompts (a benchmark suite rerun on every release) costs a harvest
    /// its yield, so it is not free to fake. Near 1 for people and
    /// harvesters alike; low only for re-senders. Direction: more novelty,
    /// more suspicion. Counted from 20 requests (a 64-register
    /// HyperLogLog, ±13%).
    pub fn novelty(&self) -> Feature {
        Feature {
            name: "novelty",
            value: self.novelty_value(),
            detail: format!(
                "about {:.0} distinct prompts in {} requests",
                self.distinct.estimate().min(self.requests as f64),
                self.requests
            ),
        }
    }

    /// Extended reasoning asked of the API (`reasoning_effort`, Anthropic
    /// `thinking`): the cheapest way to get reasoning traces, and what
    /// harvesters of reasoning ask for. People use it too, so it is weak
    /// alone. Direction: more, more suspicion.
    pub fn reasoning_requested(&self) -> Feature {
        Feature {
            name: "reasoning_requested",
            value: shrunk(self.reasoning_param as f64, self.requests as f64, 0.05),
            detail: format!(
                "{} requests ask the API for extended reasoning",
                of(self.reasoning_param, self.requests)
            ),
        }
    }

    /// Template concentration: share of prompts that open or close with
    /// exactly the (masked) wording of an earlier prompt of the account.
    /// Scripts fill few templates with fresh content; people word each
    /// prompt their own way. Counting repeats, rather than the top
    /// templates' share, keeps small accounts from looking concentrated.
    /// Direction: more repetition, more suspicion.
    pub fn template_concentration(&self) -> Feature {
        let v = shrunk(self.repeats as f64, self.informative as f64, 0.0);
        Feature {
            name: "template_concentration",
            value: v,
            detail: format!(
                "{} prompts open or close like an earlier one",
                of(self.repeats, self.informative)
            ),
        }
    }

    fn top_capability(&self) -> (usize, u32) {
        self.caps
            .iter()
            .enumerate()
            .filter(|(i, _)| Capability::ALL[*i].high_value())
            .max_by_key(|(_, c)| **c)
            .map_or((8, 0), |(i, c)| (i, *c))
    }

    /// Capability concentration: share of the most-used high-value skill.
    /// Campaigns target narrow skills (coding, agents, math, grading).
    /// Direction: more concentration, more suspicion.
    pub fn capability_concentration(&self) -> Feature {
        let (i, top) = self.top_capability();
        Feature {
            name: "capability_concentration",
            value: shrunk(top as f64, self.requests as f64, 0.25),
            detail: format!(
                "{} requests target {}",
                of(top, self.requests),
                Capability::ALL[i].name()
            ),
        }
    }

    /// Uniform parameters: share of requests that set the very same
    /// sampling parameters explicitly. A script sets temperature and
    /// max_tokens once and sends them on every call; people who keep their
    /// SDK's defaults send none and score nothing here. Free for an
    /// attacker to avoid (randomised settings), so it can only add
    /// suspicion, never remove it. Direction: more uniform, more suspicion.
    pub fn uniform_params(&self) -> Feature {
        let top = self.settings.top_guaranteed(1) as u32;
        Feature {
            name: "uniform_params",
            value: shrunk(top as f64, self.requests as f64, 0.1),
            detail: format!(
                "{} requests set identical sampling parameters ({} set any)",
                of(top, self.requests),
                self.explicit
            ),
        }
    }

    /// Harvesting parameters: log-probabilities, several samples, or the
    /// model's maximum output on a request (the largest of the three rates).
    /// Direction: more, more suspicion (soft labels, more samples per
    /// prompt, longest answers).
    pub fn harvesting(&self) -> Feature {
        let rates = [
            ("log-probabilities", self.logprobs),
            ("several samples", self.multi_sample),
            ("the model's maximum output length", self.at_max),
        ];
        let (what, k) = rates
            .iter()
            .copied()
            .fold(("", 0), |a, b| if b.1 > a.1 { b } else { a });
        let detail = if k == 0 {
            "no request asks for log-probabilities, several samples or the maximum output length"
                .to_string()
        } else {
            format!("{k} of {} requests ask for {what}", self.requests)
        };
        Feature {
            name: "harvesting_params",
            value: shrunk(k as f64, self.requests as f64, 0.0),
            detail,
        }
    }

    /// Conversation shape: single-shot share, less follow-ups that refer
    /// back to an answer. Harvesters send self-contained prompts.
    /// Direction: more single-shot, more suspicion.
    pub fn single_shot(&self) -> Feature {
        let v = self.single_shot_value();
        Feature {
            name: "single_shot",
            value: v,
            detail: format!(
                "{:.0}% single-shot, {:.0}% follow-ups that refer back",
                frac(self.single_shot, self.requests) * 100.0,
                frac(self.refers_back, self.requests) * 100.0
            ),
        }
    }

    fn single_shot_value(&self) -> f64 {
        let n = self.requests as f64;
        (shrunk(self.single_shot as f64, n, 0.4) - shrunk(self.refers_back as f64, n, 0.0)).max(0.0)
    }

    fn timing_value(&self) -> (f64, f64) {
        let sd = if self.gap_n > 1 {
            (self.gap_m2 / (self.gap_n - 1) as f64).sqrt()
        } else {
            1.0
        };
        // sd of log10 gaps: people ≈ 1–1.5 decades, scripts ≪ 0.5.
        let v = if self.gap_n < 5 {
            0.0
        } else {
            (1.0 - sd / 1.2).clamp(0.0, 1.0)
        };
        (v, sd)
    }

    /// Timing regularity: 1 − the spread of log inter-arrival times. A
    /// script's gaps are alike; a person's range from seconds to days.
    /// Direction: more regular, more suspicion.
    pub fn timing_regularity(&self) -> Feature {
        let (v, sd) = self.timing_value();
        Feature {
            name: "timing_regularity",
            value: v,
            detail: format!(
                "inter-arrival spread {sd:.2} decades over {} gaps",
                self.gap_n
            ),
        }
    }

    fn round_the_clock_value(&self) -> f64 {
        let active = self.hours.count_ones() as f64;
        // Expect a person's 6+ quiet hours once they have sent ~50 requests.
        ((active - 16.0) / 8.0).clamp(0.0, 1.0) * (self.requests as f64 / 50.0).min(1.0)
    }

    /// Round-the-clock activity: share of the 24 UTC hours with requests,
    /// once there are enough requests to tell. People sleep. Direction:
    /// more hours, more suspicion.
    pub fn round_the_clock(&self) -> Feature {
        let active = self.hours.count_ones();
        Feature {
            name: "round_the_clock",
            value: self.round_the_clock_value(),
            detail: format!(
                "active in {active} of 24 hours of the day ({} quiet)",
                24 - active
            ),
        }
    }

    fn pivot_value(&self) -> f64 {
        if self.in_release_window < 10 {
            0.0
        } else {
            frac(self.on_new_model, self.in_release_window)
        }
    }

    /// Pivot: share of requests in the 24 h after a model release that use
    /// the new model. Campaigns move within a day; people adopt over days.
    /// Direction: a faster move, more suspicion.
    pub fn pivot(&self) -> Feature {
        Feature {
            name: "pivot",
            value: self.pivot_value(),
            detail: format!(
                "{} requests in the day after a release used the new model",
                of(self.on_new_model, self.in_release_window)
            ),
        }
    }

    /// Requests per day so far (for volume against the account's tier).
    pub fn daily_rate(&self) -> f64 {
        let days = ((self.last_ts - self.first_ts) as f64 / MS_PER_DAY as f64).max(1.0);
        self.requests as f64 / days
    }

    /// The behavioural feature values in [`FEATURES`] order, without the
    /// human-readable lines (the per-event path).
    pub fn values(&self) -> [f64; 16] {
        let n = self.requests as f64;
        let harvest = self.logprobs.max(self.multi_sample).max(self.at_max);
        [
            self.evidence_value(),
            self.pace_value(),
            self.novelty_value(),
            self.elicitation_value(),
            self.shape_value(),
            self.templated_value(),
            shrunk(self.reasoning_param as f64, n, 0.05),
            shrunk(self.repeats as f64, self.informative as f64, 0.0),
            shrunk(self.top_capability().1 as f64, n, 0.25),
            shrunk(self.settings.top_guaranteed(1) as f64, n, 0.1),
            shrunk(harvest as f64, n, 0.0),
            self.single_shot_value(),
            self.timing_value().0,
            self.round_the_clock_value(),
            self.pivot_value(),
            {
                let (of_tier, surge, _) = self.volume_parts();
                of_tier.max(surge)
            },
        ]
    }

    /// All behavioural features.
    pub fn features(&self) -> Vec<Feature> {
        vec![
            self.evidence(),
            self.pace(),
            self.novelty(),
            self.elicitation(),
            self.harvest_shape(),
            self.templated_harvest(),
            self.reasoning_requested(),
            self.template_concentration(),
            self.capability_concentration(),
            self.uniform_params(),
            self.harvesting(),
            self.single_shot(),
            self.timing_regularity(),
            self.round_the_clock(),
            self.pivot(),
            self.volume(),
        ]
    }
}

/// ASN organisations of hosting providers (a datacenter origin).
const HOSTING: &[&str] = &[
    "amazon",
    "google",
    "microsoft",
    "digitalocean",
    "hetzner",
    "ovh",
    "alibaba",
    "tencent",
    "akamai",
    "linode",
    "constant company",
    "vultr",
    "choopa",
    "m247",
    "oracle",
    "leaseweb",
    "contabo",
    "scaleway",
];

/// Whether an ASN organisation name is a hosting provider.
pub fn is_hosting(asn_org: &str) -> bool {
    let o = asn_org.to_lowercase();
    HOSTING.iter().any(|h| o.contains(h))
}

/// Names of the signup and origin features, in [`origin`] order.
pub const ORIGIN_FEATURES: [&str; 5] = [
    "new_account",
    "entry_programme",
    "unverified",
    "datacenter",
    "country_mismatch",
];

/// Signup and origin, known before any behaviour, as five features, each
/// in [0, 1] and each only ever adding suspicion (accounts are cheap to
/// make, and the disclosures' accounts were new, came through abused entry
/// programmes, skipped verification, ran from datacenters, or did not
/// match their stated country). Honest accounts show each of them
/// sometimes (students, developers on VMs, travellers), so each weighs
/// little alone, and a log without account records scores none of the
/// record-based ones:
/// - `new_account`: 1 for an account created the day of its first
///   request, falling to 0 at 30 days;
/// - `entry_programme`: signed up through the education, startup or
///   research programme;
/// - `unverified`;
/// - `datacenter`: the first request came from a hosting provider's ASN;
/// - `country_mismatch`: the account's country differs from the traffic's.
pub fn origin(
    info: Option<&AccountInfo>,
    first_seen: Timestamp,
    asn_org: Option<&str>,
    client_country: Option<&str>,
) -> ([f64; 5], String) {
    let mut v = [0.0; 5];
    let mut why = Vec::new();
    if let Some(a) = info {
        if let Some(c) = a.created_at {
            let age = (first_seen.0 - c.0) as f64 / MS_PER_DAY as f64;
            if age < 30.0 {
                v[0] = 1.0 - age.max(0.0) / 30.0;
                why.push(format!("{age:.0} days old"));
            }
        }
        if let Some(p) = a.signup_program.as_deref()
            && matches!(p, "education" | "startup" | "research")
        {
            v[1] = 1.0;
            why.push(format!("{p} programme"));
        }
        if a.verified == Some(false) {
            v[2] = 1.0;
            why.push("unverified".into());
        }
        if let (Some(ac), Some(cc)) = (a.country.as_deref(), client_country)
            && ac != cc
        {
            v[4] = 1.0;
            why.push(format!("account {ac}, traffic from {cc}"));
        }
    }
    if let Some(org) = asn_org.filter(|o| is_hosting(o)) {
        v[3] = 1.0;
        why.push(format!("datacenter origin ({org})"));
    }
    let detail = if why.is_empty() {
        "no signup or origin risk".into()
    } else {
        why.join(", ")
    };
    (v, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_reason_lines_read_as_sentences() {
        assert_eq!(of(0u32, 30u32), "none of 30");
        assert_eq!(of(3u32, 30u32), "3 of 30");
        assert_eq!(pct_of(0.004, 250), "none of 250");
        assert_eq!(pct_of(0.5, 10), "50% of 10");
    }

    fn obs(ts: i64) -> Observation {
        Observation {
            ts: Timestamp(ts),
            elicit: 0.0,
            elicit_in_system: false,
            reasoning_param: false,
            capability: Capability::Chat,
            logprobs: false,
            multi_sample: false,
            at_max_tokens: false,
            settings_key: None,
            single_shot: true,
            refers_back: false,
            template: None,
            exact: ts as u64,
            fresh_template: false,
            new_model: false,
            release_window: false,
            output_tokens: 500,
        }
    }

    /// A harvesting script: every 90 s ± a little, 24×7, one template,
    /// step-by-step, coding, max tokens, the same settings.
    fn script() -> AccountProfile {
        let mut p = AccountProfile::default();
        for i in 0..2_000i64 {
            let mut o = obs(1_771_200_000_000 + i * 90_000 + (i * 7919 % 13) * 1000);
            o.elicit = if i % 10 != 0 { 1.0 } else { 0.02 };
            o.capability = Capability::Coding;
            o.at_max_tokens = true;
            o.settings_key = Some(42);
            let key = 100 + (i % 3) as u64;
            o.template = Some([key, key + 10]);
            o.release_window = i > 1_500;
            o.new_model = i > 1_500 && i % 2 == 0;
            p.observe(&o);
        }
        p
    }

    /// A person: a few sessions a day in daytime, varied prompts and
    /// settings, follow-ups.
    fn person() -> AccountProfile {
        let mut p = AccountProfile::default();
        let mut x: u64 = 7;
        let mut next = |n: u64| {
            x = distillguard_sketches::mix64(x);
            x % n
        };
        for day in 0..14i64 {
            for s in 0..(1 + next(3) as i64) {
                let mut t = 1_771_200_000_000
                    + day * MS_PER_DAY
                    + (9 + s * 4 + next(3) as i64) * MS_PER_HOUR;
                for turn in 0..(1 + next(4)) {
                    let mut o = obs(t);
                    o.elicit = if next(30) == 0 { 1.0 } else { 0.02 };
                    o.capability = Capability::ALL[next(9) as usize];
                    o.settings_key = (next(2) == 0).then(|| next(3));
                    o.single_shot = turn == 0;
                    o.refers_back = turn > 0 && next(2) == 0;
                    let key = 1_000 + next(1_000_000);
                    o.template = Some([key, key + 1]);
                    p.observe(&o);
                    t += (30 + next(600) as i64) * 1000;
                }
            }
        }
        p
    }

    #[test]
    fn a_script_looks_like_one() {
        let p = script();
        let f = |name: &str| p.features().into_iter().find(|f| f.name == name).unwrap();
        assert!(f("elicitation").value > 0.85);
        assert!(
            f("template_concentration").value > 0.9,
            "{:?}",
            f("template_concentration")
        );
        assert!(f("capability_concentration").value > 0.95);
        assert!(f("uniform_params").value > 0.95);
        assert!(f("harvesting_params").value > 0.95);
        assert!(
            f("timing_regularity").value > 0.6,
            "{:?}",
            f("timing_regularity")
        );
        assert!(f("round_the_clock").value > 0.9);
        assert!((f("pivot").value - 0.5).abs() < 0.05);
        // About 960 requests a day on tier1's 5,000 (19%).
        assert!(f("volume").value > 0.7, "{:?}", f("volume"));
        assert!(
            f("template_concentration")
                .detail
                .contains("open or close like")
        );
    }

    #[test]
    fn a_person_does_not() {
        let p = person();
        for f in p.features() {
            let limit = match f.name {
                "uniform_params" => 0.6,
                "capability_concentration" => 0.3,
                "single_shot" => 0.7,
                // How much was seen, not how it looks: a chatty person
                // has as much of it as a script.
                "evidence" => 1.0,
                // People ask new questions too; the feature exists so that
                // re-sending (its low end) earns nothing.
                "novelty" => 1.0,
                _ => 0.25,
            };
            assert!(f.value <= limit, "{} = {} ({})", f.name, f.value, f.detail);
        }
    }

    #[test]
    fn fast_values_match_the_explained_features() {
        for p in [script(), person(), AccountProfile::default()] {
            let slow: Vec<f64> = p.features().iter().map(|f| f.value).collect();
            assert_eq!(p.values().to_vec(), slow);
            let names: Vec<&str> = p.features().iter().map(|f| f.name).collect();
            assert_eq!(names, FEATURES.to_vec());
        }
    }

    #[test]
    fn volume_is_judged_against_the_tier_and_the_accounts_own_days() {
        // The same 960 requests a day: a large share of tier1, a sliver of tier4.
        let mut small = AccountProfile::for_tier(Some("tier1"));
        let mut big = AccountProfile::for_tier(Some("tier4"));
        for i in 0..960i64 {
            small.observe(&obs(1_771_200_000_000 + i * 90_000));
            big.observe(&obs(1_771_200_000_000 + i * 90_000));
        }
        assert!(small.volume().value > 0.7, "{:?}", small.volume());
        assert!(big.volume().value < 0.35, "{:?}", big.volume());
        assert!(
            small
                .volume()
                .detail
                .contains("960 requests (19.20% of the tier's daily allowance)")
        );
        assert!(small.volume().detail.contains("480000 output tokens"));
        // A quiet account that suddenly sends 20× its usual day.
        let mut p = AccountProfile::for_tier(Some("tier4"));
        for day in 0..5i64 {
            for i in 0..10 {
                p.observe(&obs(1_771_200_000_000 + day * MS_PER_DAY + i * 60_000));
            }
        }
        let before = p.volume().value;
        for i in 0..200 {
            p.observe(&obs(1_771_200_000_000 + 5 * MS_PER_DAY + i * 30_000));
        }
        assert!(before < 0.1, "{before}");
        assert!(p.volume().value > 0.95, "{:?}", p.volume());
        assert!(
            p.volume()
                .detail
                .contains("today 200 against 10 on a usual day")
        );
    }

    #[test]
    fn state_is_small_and_fixed() {
        assert!(
            std::mem::size_of::<AccountProfile>() <= 600,
            "{}",
            std::mem::size_of::<AccountProfile>()
        );
    }

    #[test]
    fn origin_parts_add_up_and_explain() {
        let fresh = AccountInfo {
            created_at: Some(Timestamp(0)),
            signup_program: Some("education".into()),
            verified: Some(false),
            country: Some("US".into()),
            ..Default::default()
        };
        let (v, why) = origin(
            Some(&fresh),
            Timestamp(3 * MS_PER_DAY),
            Some("Hetzner Online GmbH"),
            Some("SG"),
        );
        assert_eq!(v, [0.9, 1.0, 1.0, 1.0, 1.0]);
        assert!(
            why.contains("education programme") && why.contains("datacenter origin"),
            "{why}"
        );
        let old = AccountInfo {
            created_at: Some(Timestamp(0)),
            country: Some("US".into()),
            verified: Some(true),
            ..Default::default()
        };
        let (v, why) = origin(
            Some(&old),
            Timestamp(400 * MS_PER_DAY),
            Some("Comcast Cable Communications"),
            Some("US"),
        );
        assert_eq!(v, [0.0; 5]);
        assert_eq!(why, "no signup or origin risk");
        // Without an account record only the origin network can speak.
        let (v, _) = origin(None, Timestamp(0), Some("Amazon.com, Inc."), None);
        assert_eq!(v, [0.0, 0.0, 0.0, 1.0, 0.0]);
        assert!(is_hosting("Amazon.com, Inc.") && !is_hosting("Deutsche Telekom"));
    }

    #[test]
    fn few_requests_are_pulled_towards_the_prior() {
        // Three eliciting requests say less than thirty.
        let mut a = AccountProfile::default();
        let mut b = AccountProfile::default();
        for i in 0..30i64 {
            let mut o = obs(1_771_200_000_000 + i * 60_000);
            o.elicit = 1.0;
            if i < 3 {
                a.observe(&o);
            }
            b.observe(&o);
        }
        let (ea, eb) = (a.elicitation().value, b.elicitation().value);
        assert!(ea < eb && ea > 0.5 && eb > 0.9, "{ea} {eb}");
        assert!(a.elicitation().detail.starts_with("3 of 3 requests ask"));
    }

    #[test]
    fn default_settings_are_not_uniform_but_a_scripts_fixed_ones_are() {
        let mut person = AccountProfile::default();
        let mut script = AccountProfile::default();
        for i in 0..40i64 {
            let o = obs(1_771_200_000_000 + i * 60_000);
            person.observe(&o);
            script.observe(&Observation {
                settings_key: Some(7),
                ..o
            });
        }
        assert!(person.uniform_params().value < 0.01);
        assert!(script.uniform_params().value > 0.9);
        assert!(person.harvesting().detail.starts_with("no request asks"));
    }
}
