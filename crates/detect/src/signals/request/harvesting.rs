/*!
Harvesting parameters: is the request shaped to extract as much as
possible per call?

Why attackers show it: a distiller wants token log-probabilities (soft
labels), several samples per prompt, and the longest answers the model
allows, with the same sampling settings on every call because a script
sets them once. People mostly leave defaults.

Measures: [`Harvest`] — log-probabilities asked for, `n` > 1, `max_tokens`
relative to the largest value seen for the model (the caller keeps that
running maximum, so no model catalogue is needed), and a key of the
sampling settings so that an account's uniformity can be counted. Cost: a
few field reads and one hash.
*/

use distillguard_core::Event;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Harvest {
    pub logprobs: bool,
    pub samples: u32,
    /// `max_tokens` ÷ the model's largest seen `max_tokens` (0 when unset).
    pub max_tokens_ratio: f32,
    /// Hash of (temperature, top_p, top_k, max_tokens, n, logprobs, stream):
    /// scripts send one value, people many.
    pub settings_key: u64,
    /// Whether the request set a sampling parameter itself (temperature,
    /// top_p, top_k, or — in OpenAI's API, where it is optional —
    /// max_tokens). Anthropic's API requires max_tokens, so it says nothing.
    pub explicit: bool,
}

impl Harvest {
    /// At the model's maximum output (within 5%).
    pub fn at_max(&self) -> bool {
        self.max_tokens_ratio >= 0.95
    }
}

/// Measures one request; `model_max` is the largest `max_tokens` seen for
/// its model so far (including this request).
pub fn measure(e: &Event, model_max: u32) -> Harvest {
    let s = &e.request.sampling;
    let max_tokens_ratio = match (s.max_tokens, model_max) {
        (Some(m), mm) if mm > 0 => m as f32 / mm as f32,
        _ => 0.0,
    };
    let mut key = distillguard_sketches::mix64(
        s.temperature
            .map_or(u32::MAX as u64, |t| t.to_bits() as u64),
    );
    for part in [
        s.top_p.map_or(u32::MAX as u64, |t| t.to_bits() as u64),
        s.top_k.unwrap_or(u32::MAX) as u64,
        s.max_tokens.unwrap_or(u32::MAX) as u64,
        s.n.unwrap_or(1) as u64,
        s.logprobs as u64,
        s.stream as u64,
    ] {
        key = distillguard_sketches::mix64(key ^ part);
    }
    Harvest {
        logprobs: s.logprobs || s.top_logprobs.is_some_and(|k| k > 0),
        samples: s.n.unwrap_or(1).max(1),
        max_tokens_ratio,
        settings_key: key,
        explicit: s.temperature.is_some()
            || s.top_p.is_some()
            || s.top_k.is_some()
            // Anthropic requires `max_tokens`: there it is no choice.
            || (s.max_tokens.is_some() && e.dialect != distillguard_core::Dialect::Anthropic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::parse_event_line;

    fn ev(extra: &str) -> Event {
        parse_event_line(&format!(
            r#"{{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{{"model":"m","messages":[{{"role":"user","content":"q"}}]{extra}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn harvesting_request() {
        let h = measure(
            &ev(r#","logprobs":true,"top_logprobs":5,"n":4,"max_tokens":32000,"temperature":0.7"#),
            32000,
        );
        assert!(h.logprobs && h.at_max());
        assert_eq!(h.samples, 4);
    }

    #[test]
    fn ordinary_request() {
        let h = measure(&ev(r#","max_tokens":1024"#), 32000);
        assert!(!h.logprobs && !h.at_max());
        assert_eq!(h.samples, 1);
        assert!(h.explicit);
        let none = measure(&ev(""), 0);
        assert_eq!(none.max_tokens_ratio, 0.0);
        assert!(!none.explicit, "SDK defaults set nothing");
    }

    #[test]
    fn same_settings_same_key() {
        let a = measure(&ev(r#","max_tokens":4096,"temperature":0.6"#), 8192);
        let b = measure(&ev(r#","max_tokens":4096,"temperature":0.6"#), 8192);
        let c = measure(&ev(r#","max_tokens":4096,"temperature":0.7"#), 8192);
        assert_eq!(a.settings_key, b.settings_key);
        assert_ne!(a.settings_key, c.settings_key);
    }
}
