/*!
Detection signals, one module each.

`request/` holds per-request signals: functions of one event
(`distillguard_core::Event`), cheap enough to run on every request.
`account` folds them into per-account behavioural fingerprints in fixed
memory.
*/

pub mod account;
pub mod request;

use std::collections::HashMap;

use distillguard_core::time::MS_PER_DAY;
use distillguard_core::{Event, ModelRelease};

use account::Observation;
use request::{capability, elicitation, harvesting, lower, shape, template};

/// Turns events into [`Observation`]s: runs every per-request signal and
/// keeps the little global state they need (each model's largest
/// `max_tokens` so far, the model releases).
#[derive(Debug, Default)]
pub struct Extractor {
    model_max: HashMap<String, u32>,
    releases: Vec<(String, i64)>,
    scratch: Vec<u64>,
}

impl Extractor {
    pub fn new(releases: &[ModelRelease]) -> Self {
        Extractor {
            releases: releases
                .iter()
                .map(|r| (r.model.clone(), r.released_at.0))
                .collect(),
            ..Default::default()
        }
    }

    /// All per-request signals of `e`, as an account observation.
    pub fn observe(&mut self, e: &Event) -> Observation {
        let user = lower(&e.request.last_user_text);
        let system = e.request.system_prompt.as_deref().map(lower);
        let model = e.model.as_deref().unwrap_or("");
        let max = self.model_max.entry(model.to_string()).or_insert(0);
        *max = (*max).max(e.request.sampling.max_tokens.unwrap_or(0));
        let h = harvesting::measure(e, *max);
        let s = shape::measure(e, &user);
        let t = template::measure(e, &mut self.scratch);
        let ts = e.ts.0;
        let fresh = |at: i64| ts >= at && ts - at < MS_PER_DAY;
        Observation {
            ts: e.ts,
            elicits: elicitation::detect(&user, system.as_deref()).is_some(),
            capability: capability::classify(e, &user),
            logprobs: h.logprobs,
            multi_sample: h.samples > 1,
            at_max_tokens: h.at_max(),
            settings_key: h.settings_key,
            single_shot: s.single_shot,
            refers_back: s.refers_back,
            template: (t.head != 0).then_some([t.head, t.tail]),
            new_model: self.releases.iter().any(|(m, at)| m == model && fresh(*at)),
            release_window: self.releases.iter().any(|(_, at)| fresh(*at)),
        }
    }
}
