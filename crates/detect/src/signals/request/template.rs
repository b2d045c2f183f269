/*!
Template fingerprint: the prompt's structure, with content masked.

Why attackers show it: campaigns build tens of thousands of prompts from a
few templates, varying only the content (numbers, names, tasks, code). The
masked structure stays the same, so their fingerprints share LSH band keys;
honest prompts are worded each in their own way. Counting band keys per
account (concentration) and across accounts (a template in use by many)
are the account- and campaign-level signals.

Measures: a [`Template`] — band keys of the last user turn's MinHash (see
`distillguard_sketches::fingerprint`), whether the text was long enough to
trust, and a hash of the system prompt (a fixed system prompt is a
template too). Cost: one masking pass and 16 multiply-adds per shingle —
about 3–4 µs for a typical prompt (BENCHMARKS.md).
*/

use distillguard_core::Event;
use distillguard_sketches::Fingerprint;
use distillguard_sketches::fingerprint::BANDS;

/// Shingles a prompt needs before its fingerprint is trusted: shorter
/// prompts ("continue", "thanks") collide by chance.
pub const MIN_SHINGLES: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    pub bands: [u64; BANDS],
    /// Hashes of the masked opening and closing (0 when too short).
    pub head: u64,
    pub tail: u64,
    pub informative: bool,
    /// Hash of the system prompt (0 when there is none).
    pub system: u64,
}

/// Fingerprints a request; `scratch` is reused between calls.
pub fn measure(e: &Event, scratch: &mut Vec<u64>) -> Template {
    let f = Fingerprint::of(&e.request.last_user_text, scratch);
    Template {
        bands: f.bands(),
        head: f.head,
        tail: f.tail,
        informative: f.is_informative(MIN_SHINGLES),
        system: e
            .request
            .system_prompt
            .as_deref()
            .map_or(0, |s| distillguard_sketches::hash_bytes(s.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::parse_event_line;

    fn t(user: &str) -> Template {
        let e = parse_event_line(&format!(
            r#"{{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{{"messages":[{{"role":"system","content":"Be brief."}},{{"role":"user","content":"{user}"}}]}}}}"#
        ))
        .unwrap();
        measure(&e, &mut Vec::new())
    }

    fn share(a: &Template, b: &Template) -> bool {
        a.bands.iter().zip(b.bands.iter()).any(|(x, y)| x == y)
    }

    #[test]
    fn one_template_two_contents_share_a_band() {
        let a = t(
            "You are a meticulous teacher. Solve the following problem. Alice buys 12 apples at $3 each and sells 5 at $4 each. What is the profit? Think step by step and show all of your reasoning before the final answer.",
        );
        let b = t(
            "You are a meticulous teacher. Solve the following problem. Bob buys 40 lamps at $7 each and sells 9 at $12 each. What is the profit? Think step by step and show all of your reasoning before the final answer.",
        );
        assert!(a.informative && b.informative);
        assert!(share(&a, &b));
        assert!(a.head == b.head && a.tail == b.tail);
        assert_eq!(a.system, b.system);
        assert_ne!(a.system, 0);
    }

    #[test]
    fn honest_prompts_do_not_and_short_ones_are_not_trusted() {
        let a = t(
            "Can you help me write a cover letter for a junior data analyst role? I have two years of Excel experience.",
        );
        let b = t(
            "My tomato plants have yellow leaves at the bottom, what am I doing wrong with watering?",
        );
        assert!(!share(&a, &b));
        assert!(!t("continue").informative);
    }
}
