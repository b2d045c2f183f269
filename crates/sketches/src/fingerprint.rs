/*!
Template fingerprints over masked tokens.

[`Fingerprint`] is a 16-value MinHash over token 3-shingles: instances of
one template share most shingles (their fixed wording), so their MinHash
agree in many positions. Four LSH bands of four rows each: two requests
share a band key with probability 1 − (1 − J⁴)⁴ — about 88% at Jaccard 0.8,
23% at 0.5, 0.04% at 0.1. Four rows, not two, because band keys are
counted across a whole provider's traffic: with two-row bands, unrelated
prompts that share one common phrase collide often enough that, at 100k
prompts, almost every key recurs in several accounts (measured: 67% of
honest requests, against 15% with four rows). Band keys are what detectors
count: per account (template concentration) and across accounts (a template
in use by many accounts).
[`simhash`] is a 64-bit SimHash of the same shingles, for near-duplicate
checks in 8 bytes. Cost: one hash per shingle and 16 multiply-adds for the
MinHash; nothing is allocated beyond a reused token buffer.
*/

use crate::mask::{Token, mask_tokens};
use crate::mix64;

/// MinHash values kept.
pub const K: usize = 16;
/// Rows per LSH band (K / ROWS bands).
pub const ROWS: usize = 4;
pub const BANDS: usize = K / ROWS;

/// Tokens read from one prompt at most (enough for any template's frame).
pub const MAX_TOKENS: usize = 512;

/// Odd multipliers and offsets of the K hash functions (fixed forever: a
/// change would invalidate stored fingerprints).
const SEEDS: [(u64, u64); K] = {
    let mut s = [(0u64, 0u64); K];
    let mut x: u64 = 0x243F_6A88_85A3_08D3;
    let mut i = 0;
    while i < K {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        s[i] = (z | 1, z.rotate_left(29));
        i += 1;
    }
    s
};

/// Masked tokens hashed into each edge key.
pub const EDGE: usize = 8;

/// A template fingerprint (80 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub mins: [u32; K],
    /// Shingles seen (0: the text was too short to fingerprint).
    pub shingles: u32,
    /// Hash of the first [`EDGE`] masked tokens: a template's fixed opening
    /// (framing, intro), identical across its instances. 0 if too short.
    pub head: u64,
    /// Hash of the last [`EDGE`] masked tokens: its fixed closing
    /// (elicitation, output format). 0 if too short.
    pub tail: u64,
}

fn edge(tokens: &[u64]) -> u64 {
    tokens
        .iter()
        .fold(0x51_7c_c1_b7_27_22_0a_95u64, |h, t| mix64(h ^ t))
}

impl Fingerprint {
    /// Fingerprints `text`; `scratch` is reused between calls.
    pub fn of(text: &str, scratch: &mut Vec<u64>) -> Fingerprint {
        scratch.clear();
        mask_tokens(text, scratch, MAX_TOKENS);
        Fingerprint::of_tokens(scratch)
    }

    /// Only the edge hashes `[head, tail]` (what streaming detection keys on),
    /// without the MinHash; `None` when the prompt is shorter than two edges.
    /// The same values as [`Fingerprint::of`]'s `head` and `tail`.
    pub fn edges(text: &str) -> Option<[u64; 2]> {
        // Only the first and the last EDGE tokens are hashed: the rest
        // are counted (the same edges as hashing every token).
        let mut head = [Token::Hash(0); EDGE];
        let mut tail = [Token::Hash(0); EDGE];
        let mut n = 0usize;
        crate::mask::mask_with(text, MAX_TOKENS, |t| {
            if n < EDGE {
                head[n] = t;
            }
            tail[n % EDGE] = t;
            n += 1;
        });
        if n < 2 * EDGE {
            return None;
        }
        let h: [u64; EDGE] = std::array::from_fn(|k| head[k].hash(text));
        // The ring holds the last EDGE tokens, oldest at n % EDGE.
        let t: [u64; EDGE] = std::array::from_fn(|k| tail[(n + k) % EDGE].hash(text));
        Some([edge(&h), edge(&t)])
    }

    pub fn of_tokens(tokens: &[u64]) -> Fingerprint {
        let mut mins = [u32::MAX; K];
        let mut n = 0u32;
        for w in tokens.windows(3) {
            let sh = mix64(w[0] ^ w[1].rotate_left(21) ^ w[2].rotate_left(42));
            n += 1;
            for (m, (a, b)) in mins.iter_mut().zip(SEEDS.iter()) {
                let v = (sh.wrapping_mul(*a).wrapping_add(*b) >> 32) as u32;
                if v < *m {
                    *m = v;
                }
            }
        }
        let (head, tail) = if tokens.len() >= 2 * EDGE {
            (edge(&tokens[..EDGE]), edge(&tokens[tokens.len() - EDGE..]))
        } else {
            (0, 0)
        };
        Fingerprint {
            mins,
            shingles: n,
            head,
            tail,
        }
    }

    /// Whether there was enough text (at least `min` shingles) to trust it.
    pub fn is_informative(&self, min: u32) -> bool {
        self.shingles >= min
    }

    /// Estimated Jaccard similarity of the two shingle sets.
    pub fn similarity(&self, other: &Fingerprint) -> f64 {
        let same = self
            .mins
            .iter()
            .zip(other.mins.iter())
            .filter(|(a, b)| a == b)
            .count();
        same as f64 / K as f64
    }

    /// LSH band keys (band index mixed in, so bands never collide with each other).
    pub fn bands(&self) -> [u64; BANDS] {
        let mut out = [0u64; BANDS];
        for (b, slot) in out.iter_mut().enumerate() {
            let mut h = (b as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for r in 0..ROWS {
                h = mix64(h ^ self.mins[b * ROWS + r] as u64);
            }
            *slot = h;
        }
        out
    }
}

/// 64-bit SimHash of the masked token 3-shingles.
pub fn simhash(tokens: &[u64]) -> u64 {
    let mut acc = [0i32; 64];
    for w in tokens.windows(3) {
        let h = mix64(w[0] ^ w[1].rotate_left(21) ^ w[2].rotate_left(42));
        for (bit, a) in acc.iter_mut().enumerate() {
            *a += if h >> bit & 1 == 1 { 1 } else { -1 };
        }
    }
    acc.iter()
        .enumerate()
        .fold(0u64, |s, (bit, a)| if *a > 0 { s | 1 << bit } else { s })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(s: &str) -> Fingerprint {
        Fingerprint::of(s, &mut Vec::new())
    }

    fn collide(a: &Fingerprint, b: &Fingerprint) -> bool {
        a.bands().iter().zip(b.bands().iter()).any(|(x, y)| x == y)
    }

    /// Attack: one template, fresh content each time.
    fn templated(i: u64) -> String {
        let names = ["Alice", "Bob", "Chen", "Dmitri", "Emma"];
        let items = ["apple", "ticket", "lamp", "book"];
        format!(
            "You are a world-class expert and meticulous teacher. Solve the following problem.\n\n{} buys {} {}s at ${} each and sells {} of them at ${} each. What is the profit?\n\nThink step by step and show all of your reasoning before the final answer. Put the final result in \\boxed{{}}.",
            names[(i % 5) as usize],
            3 + i % 40,
            items[(i % 4) as usize],
            2 + i % 17,
            1 + i % 9,
            5 + i % 23
        )
    }

    #[test]
    fn edges_alone_equal_the_full_fingerprints_edges() {
        let mut v = Vec::new();
        for text in [
            "Solve the following problem. Think step by step and show all of your reasoning before the final answer: 12 apples cost $3.",
            "short prompt",
            "请一步一步地思考，并在给出最终答案前展示完整的推理过程。这是一个很长的问题。",
            // Words of other alphabets at both ends (lowercased when hashed).
            "Объясни ПОШАГОВО, как решать такие задачи: 12 яблок, 3 груши, Москва и Париж. Покажи все рассуждения до конца, пожалуйста",
            // Exactly two edges' worth of tokens, then one fewer.
            "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen",
            "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen",
        ] {
            let f = Fingerprint::of(text, &mut v);
            let e = Fingerprint::edges(text);
            assert_eq!(e, (f.head != 0).then_some([f.head, f.tail]), "{text}");
        }
        // Past MAX_TOKENS the tail is the last token before the cap, as
        // with every token hashed.
        let long: String = (0..3 * MAX_TOKENS)
            .map(|i| format!("word{} and Then ", i % 7))
            .collect();
        let mut all = Vec::new();
        mask_tokens(&long, &mut all, MAX_TOKENS);
        assert_eq!(all.len(), MAX_TOKENS);
        assert_eq!(
            Fingerprint::edges(&long),
            Some([edge(&all[..EDGE]), edge(&all[MAX_TOKENS - EDGE..])])
        );
        assert!(Fingerprint::edges("one two three").is_none());
        assert!(Fingerprint::edges("short prompt").is_none());
    }

    #[test]
    fn instances_of_a_template_collide_and_honest_prompts_do_not() {
        let base = fp(&templated(0));
        let hits = (1..200)
            .filter(|i| collide(&base, &fp(&templated(*i))))
            .count();
        // Instances here have Jaccard ≈ 0.75–0.8: ~80–88% expected.
        assert!(hits >= 150, "{hits}");
        assert!(base.similarity(&fp(&templated(7))) > 0.6);
        // Honest, differently worded prompts.
        let honest = [
            "Can you help me write a cover letter for a junior data analyst role? I have two years of Excel experience.",
            "What is the difference between a process and a thread in operating systems?",
            "My tomato plants have yellow leaves at the bottom, what am I doing wrong?",
            "Write a haiku about autumn rain in Kyoto",
            "How do I center a div horizontally and vertically with flexbox?",
            "Summarize the plot of Pride and Prejudice in five sentences.",
        ];
        for (i, a) in honest.iter().enumerate() {
            assert!(!collide(&base, &fp(a)), "{a}");
            for b in &honest[i + 1..] {
                assert!(!collide(&fp(a), &fp(b)), "{a} ~ {b}");
            }
        }
    }

    #[test]
    fn edges_are_a_templates_fixed_wording() {
        let (a, b) = (fp(&templated(3)), fp(&templated(8)));
        assert_eq!((a.head, a.tail), (b.head, b.tail));
        assert_ne!(a.head, 0);
        let c = fp(
            "Can you help me write a cover letter for a junior data analyst role? I have two years of Excel experience and like numbers.",
        );
        assert_ne!(c.head, a.head);
        assert_ne!(c.tail, a.tail);
        assert_eq!(fp("too short to have edges").head, 0);
    }

    #[test]
    fn short_text_is_flagged_uninformative_and_simhash_is_stable() {
        assert!(!fp("hi").is_informative(4));
        assert!(fp(&templated(1)).is_informative(4));
        let mut t1 = Vec::new();
        crate::mask_tokens(&templated(1), &mut t1, 512);
        let mut t2 = Vec::new();
        crate::mask_tokens(&templated(2), &mut t2, 512);
        let mut t3 = Vec::new();
        crate::mask_tokens(
            "What is the difference between a process and a thread in operating systems?",
            &mut t3,
            512,
        );
        let (a, b, c) = (simhash(&t1), simhash(&t2), simhash(&t3));
        assert!((a ^ b).count_ones() < 12, "{}", (a ^ b).count_ones());
        assert!((a ^ c).count_ones() > 16, "{}", (a ^ c).count_ones());
        // Pinned: fingerprints must not change between versions.
        let pinned = fp("Think step by step and show your work please.");
        assert_eq!(
            &pinned.mins[..4],
            &[383_395_154, 67_778_774, 1_746_523_981, 306_772_548]
        );
    }
}
