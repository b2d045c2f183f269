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
    pub elicits: bool,
    pub capability: Capability,
    pub logprobs: bool,
    pub multi_sample: bool,
    pub at_max_tokens: bool,
    pub settings_key: u64,
    pub single_shot: bool,
    pub refers_back: bool,
    /// The template's opening and closing keys (its fixed wording), when
    /// the prompt was long enough to have them.
    pub template: Option<[u64; 2]>,
    /// The request used a model released less than 24 h before it.
    pub new_model: bool,
    /// A model was released in the 24 h before this request (so a
    /// `new_model` share can be judged).
    pub release_window: bool,
    /// Output tokens of the answer, when the log has them.
    pub output_tokens: u32,
}

/// Names of the behavioural features, in [`AccountProfile::values`] order.
pub const FEATURES: [&str; 10] = [
    "elicitation_rate",
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

/// One named feature's value and the line a human reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: &'static str,
    /// In [0, 1]; higher looks more like harvesting.
    pub value: f64,
    pub detail: String,
}

/// Fixed-size state of one account.
#[derive(Debug, Clone, Default)]
pub struct AccountProfile {
    pub requests: u32,
    first_ts: i64,
    last_ts: i64,
    elicit: u32,
    high_value: u32,
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

impl AccountProfile {
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
        self.elicit += o.elicits as u32;
        self.high_value += o.capability.high_value() as u32;
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
        self.settings.insert(o.settings_key);
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
    /// is why it is one feature among many.
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

    /// Reasoning elicitation rate. Attackers harvest explanation traces on
    /// most requests; people ask for steps now and then.
    pub fn elicitation(&self) -> Feature {
        let v = frac(self.elicit, self.requests);
        Feature {
            name: "elicitation_rate",
            value: v,
            detail: format!(
                "{:.0}% of {} requests ask for step-by-step reasoning",
                v * 100.0,
                self.requests
            ),
        }
    }

    /// Template concentration: share of prompts that open or close with
    /// exactly the (masked) wording of an earlier prompt of the account.
    /// Scripts fill few templates with fresh content; people word each
    /// prompt their own way. Counting repeats, rather than the top
    /// templates' share, keeps small accounts from looking concentrated.
    pub fn template_concentration(&self) -> Feature {
        let v = frac(self.repeats, self.informative);
        Feature {
            name: "template_concentration",
            value: v,
            detail: format!(
                "{:.0}% of {} prompts open or close like an earlier one",
                v * 100.0,
                self.informative
            ),
        }
    }

    /// Capability concentration: share of the most-used high-value skill.
    /// Campaigns target narrow skills (coding, agents, math, grading).
    pub fn capability_concentration(&self) -> Feature {
        let (i, top) = self
            .caps
            .iter()
            .enumerate()
            .filter(|(i, _)| Capability::ALL[*i].high_value())
            .max_by_key(|(_, c)| **c)
            .map_or((8, 0), |(i, c)| (i, *c));
        let v = frac(top, self.requests);
        Feature {
            name: "capability_concentration",
            value: v,
            detail: format!(
                "{:.0}% of requests target {}",
                v * 100.0,
                Capability::ALL[i].name()
            ),
        }
    }

    /// Uniform parameters: share of the single most common sampling
    /// setting. A script sets temperature and max_tokens once — but people
    /// who keep their SDK's defaults are uniform too (measured on the
    /// simulated world: honest median 0.78, campaigns 0.44–0.63), so this
    /// is weak alone and matters only with the others.
    pub fn uniform_params(&self) -> Feature {
        let top = self.settings.top_guaranteed(1) as u32;
        let v = frac(top, self.requests);
        Feature {
            name: "uniform_params",
            value: v,
            detail: format!(
                "{:.0}% of requests use identical sampling settings",
                v * 100.0
            ),
        }
    }

    /// Harvesting parameters: log-probabilities, several samples, or the
    /// model's maximum output on a request (the largest of the three rates).
    pub fn harvesting(&self) -> Feature {
        let rates = [
            ("log-probabilities", frac(self.logprobs, self.requests)),
            ("several samples", frac(self.multi_sample, self.requests)),
            (
                "the maximum output length",
                frac(self.at_max, self.requests),
            ),
        ];
        let (what, v) = rates
            .iter()
            .copied()
            .fold(("nothing", 0.0), |a, b| if b.1 > a.1 { b } else { a });
        Feature {
            name: "harvesting_params",
            value: v,
            detail: format!("{:.0}% of requests ask for {what}", v * 100.0),
        }
    }

    /// Conversation shape: single-shot share, less follow-ups that refer
    /// back to an answer. Harvesters send self-contained prompts.
    pub fn single_shot(&self) -> Feature {
        let v = (frac(self.single_shot, self.requests) - frac(self.refers_back, self.requests))
            .max(0.0);
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

    /// Timing regularity: 1 − the spread of log inter-arrival times. A
    /// script's gaps are alike; a person's range from seconds to days.
    pub fn timing_regularity(&self) -> Feature {
        let sd = if self.gap_n > 1 {
            (self.gap_m2 / (self.gap_n - 1) as f64).sqrt()
        } else {
            1.0
        };
        // sd of log10 gaps: people ≈ 1–1.5 decades, scripts ≪ 0.5.
        let v = (1.0 - sd / 1.2).clamp(0.0, 1.0);
        Feature {
            name: "timing_regularity",
            value: if self.gap_n < 5 { 0.0 } else { v },
            detail: format!(
                "inter-arrival spread {sd:.2} decades over {} gaps",
                self.gap_n
            ),
        }
    }

    /// Round-the-clock activity: share of the 24 UTC hours with requests,
    /// once there are enough requests to tell. People sleep.
    pub fn round_the_clock(&self) -> Feature {
        let active = self.hours.count_ones();
        let quiet = 24 - active;
        // Expect a person's 6+ quiet hours once they have sent ~50 requests.
        let evidence = (self.requests as f64 / 50.0).min(1.0);
        let v = ((active as f64 - 16.0) / 8.0).clamp(0.0, 1.0) * evidence;
        Feature {
            name: "round_the_clock",
            value: v,
            detail: format!("active in {active} of 24 hours of the day ({quiet} quiet)"),
        }
    }

    /// Pivot: share of requests in the 24 h after a model release that use
    /// the new model. Campaigns move within a day; people adopt over days.
    pub fn pivot(&self) -> Feature {
        let v = if self.in_release_window < 10 {
            0.0
        } else {
            frac(self.on_new_model, self.in_release_window)
        };
        Feature {
            name: "pivot",
            value: v,
            detail: format!(
                "{} of {} requests in the day after a release used the new model",
                self.on_new_model, self.in_release_window
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
    pub fn values(&self) -> [f64; 10] {
        let n = self.requests;
        let high = self
            .caps
            .iter()
            .enumerate()
            .filter(|(i, _)| Capability::ALL[*i].high_value())
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0);
        let harvest = frac(self.logprobs, n)
            .max(frac(self.multi_sample, n))
            .max(frac(self.at_max, n));
        let sd = if self.gap_n > 1 {
            (self.gap_m2 / (self.gap_n - 1) as f64).sqrt()
        } else {
            1.0
        };
        let active = self.hours.count_ones() as f64;
        [
            frac(self.elicit, n),
            frac(self.repeats, self.informative),
            frac(high, n),
            frac(self.settings.top_guaranteed(1) as u32, n),
            harvest,
            (frac(self.single_shot, n) - frac(self.refers_back, n)).max(0.0),
            if self.gap_n < 5 {
                0.0
            } else {
                (1.0 - sd / 1.2).clamp(0.0, 1.0)
            },
            ((active - 16.0) / 8.0).clamp(0.0, 1.0) * (n as f64 / 50.0).min(1.0),
            if self.in_release_window < 10 {
                0.0
            } else {
                frac(self.on_new_model, self.in_release_window)
            },
            {
                let (of_tier, surge, _) = self.volume_parts();
                of_tier.max(surge)
            },
        ]
    }

    /// All behavioural features.
    pub fn features(&self) -> Vec<Feature> {
        vec![
            self.elicitation(),
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

/// Account risk from signup and origin, known before any behaviour: young
/// accounts, the abused entry programmes (education, startup, research),
/// unverified accounts, datacenter origins, and a client country that
/// differs from the account's. Each part adds a share; the result is in
/// [0, 1]. Honest accounts have some of these (students, developers on
/// VMs), so this weighs little alone.
pub fn account_risk(
    info: Option<&AccountInfo>,
    first_seen: Timestamp,
    asn_org: Option<&str>,
    client_country: Option<&str>,
) -> Feature {
    let mut v = 0.0;
    let mut why = Vec::new();
    if let Some(a) = info {
        if let Some(c) = a.created_at {
            let age = (first_seen.0 - c.0) as f64 / MS_PER_DAY as f64;
            if age < 30.0 {
                v += 0.3 * (1.0 - age.max(0.0) / 30.0);
                why.push(format!("{age:.0} days old"));
            }
        }
        if let Some(p) = a.signup_program.as_deref()
            && matches!(p, "education" | "startup" | "research")
        {
            v += 0.15;
            why.push(format!("{p} programme"));
        }
        if a.verified == Some(false) {
            v += 0.1;
            why.push("unverified".into());
        }
        if let (Some(ac), Some(cc)) = (a.country.as_deref(), client_country)
            && ac != cc
        {
            v += 0.15;
            why.push(format!("account {ac}, traffic from {cc}"));
        }
    }
    if asn_org.is_some_and(is_hosting) {
        v += 0.3;
        why.push(format!(
            "datacenter origin ({})",
            asn_org.unwrap_or_default()
        ));
    }
    Feature {
        name: "account_risk",
        value: f64::min(v, 1.0),
        detail: if why.is_empty() {
            "no signup or origin risk".into()
        } else {
            why.join(", ")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(ts: i64) -> Observation {
        Observation {
            ts: Timestamp(ts),
            elicits: false,
            capability: Capability::Chat,
            logprobs: false,
            multi_sample: false,
            at_max_tokens: false,
            settings_key: 1,
            single_shot: true,
            refers_back: false,
            template: None,
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
            o.elicits = i % 10 != 0;
            o.capability = Capability::Coding;
            o.at_max_tokens = true;
            o.settings_key = 42;
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
                    o.elicits = next(30) == 0;
                    o.capability = Capability::ALL[next(9) as usize];
                    o.settings_key = next(3);
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
        assert!(f("elicitation_rate").value > 0.85);
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
    fn account_risk_adds_up_and_explains() {
        let fresh = AccountInfo {
            created_at: Some(Timestamp(0)),
            signup_program: Some("education".into()),
            verified: Some(false),
            country: Some("US".into()),
            ..Default::default()
        };
        let r = account_risk(
            Some(&fresh),
            Timestamp(2 * MS_PER_DAY),
            Some("Hetzner Online GmbH"),
            Some("SG"),
        );
        assert!(r.value > 0.9, "{r:?}");
        assert!(r.detail.contains("education programme") && r.detail.contains("datacenter origin"));
        let old = AccountInfo {
            created_at: Some(Timestamp(0)),
            country: Some("US".into()),
            verified: Some(true),
            ..Default::default()
        };
        let r = account_risk(
            Some(&old),
            Timestamp(400 * MS_PER_DAY),
            Some("Comcast Cable Communications"),
            Some("US"),
        );
        assert_eq!(r.value, 0.0);
        assert!(is_hosting("Amazon.com, Inc.") && !is_hosting("Deutsche Telekom"));
    }
}
