/*!
What the watermark commands and experiments share: real text from the
corpus, and a seeded sampler for the reference teacher.
*/

use anyhow::Result;
use distillguard_teacher::Teacher;
use distillguard_watermark::Scheme;
use distillguard_watermark::tokenizer::Tokenizer;

/// Answers of the ShareGPT corpus, tokenized, up to `max` tokens in all.
pub(crate) fn answer_tokens(corpus: &str, tok: &Tokenizer, max: usize) -> Result<Vec<Vec<u32>>> {
    let c = distillguard_simulator::Corpus::load(corpus).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    let mut total = 0usize;
    for conv in &c.conversations {
        for t in conv.turns.iter().filter(|t| !t.user) {
            let ids = tok.encode(&t.text);
            total += ids.len();
            out.push(ids);
            if total >= max {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// The sampler's randomness: the workspace's xorshift, its seed spread
/// by a multiply so that nearby seeds start far apart.
pub(crate) struct Rng(distillguard_sketches::Xorshift);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(distillguard_sketches::Xorshift::from_state(
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ))
    }
    pub fn next(&mut self) -> f64 {
        self.0.next_f64()
    }
}

/// Picks the next token from sparse candidates under a scheme (`None`: no
/// watermark, plain sampling).
pub(crate) fn pick(
    scheme: Option<&Scheme>,
    ctx: &[u32],
    cand: &[(u32, f32)],
    rng: &mut Rng,
) -> u32 {
    distillguard_watermark::scheme::sample_sparse(scheme, ctx, cand, &mut || rng.next())
}

/// The user turns of the corpus, tokenized and cut to `max_len` tokens,
/// those of at least 4 tokens, in corpus order.
pub(crate) fn user_prompts(
    c: &distillguard_simulator::Corpus,
    tok: &Tokenizer,
    max_len: usize,
) -> Vec<Vec<u32>> {
    c.conversations
        .iter()
        .flat_map(|cv| cv.turns.iter().filter(|t| t.user))
        .map(|t| {
            tok.encode(&t.text)
                .into_iter()
                .take(max_len)
                .collect::<Vec<u32>>()
        })
        .filter(|p| p.len() >= 4)
        .collect()
}

/// A second model rewrites a share of the text: the text is cut into spans
/// of 8 tokens, and each span is, with probability `rate`, replaced by as
/// many tokens as the reference teacher samples under `other` (another
/// key), given the prompt and the text before it. A trigram model rewrites
/// locally; a real paraphrase changes more, so this is the mild end of
/// paraphrasing.
pub(crate) fn rewrite(
    teacher: &Teacher,
    other: &Scheme,
    prompt: &[u32],
    tokens: &[u32],
    rate: f64,
    rng: &mut Rng,
) -> Vec<u32> {
    let mut ctx = prompt.to_vec();
    for span in tokens.chunks(8) {
        if rng.next() < rate {
            let new = teacher.generate(&ctx, span.len(), None, |c, cand| {
                pick(Some(other), c, cand, rng)
            });
            ctx.extend(new);
        } else {
            ctx.extend_from_slice(span);
        }
    }
    ctx.split_off(prompt.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_watermark::{Key, Kgw, Seeding};

    #[test]
    fn a_rewrite_keeps_the_length_and_replaces_about_its_share() {
        let docs: Vec<Vec<u32>> = (0..300u32)
            .map(|i| (0..40).map(|j| (i * 7 + j * 13) % 97).collect())
            .collect();
        let teacher = Teacher::train(docs);
        let other = Scheme::Kgw(Kgw {
            key: Key::from_parts(1, 2),
            gamma: 0.25,
            delta: 2.0,
            seeding: Seeding::LeftHash { h: 1 },
        });
        let text: Vec<u32> = (0..800u32).map(|i| 1_000 + i).collect();
        let mut rng = Rng::new(9);
        let out = rewrite(&teacher, &other, &[5, 6], &text, 0.3, &mut rng);
        assert_eq!(out.len(), text.len());
        // Tokens ≥ 1,000 never come from the teacher (trained on 0..97).
        let kept = out.iter().filter(|&&t| t >= 1_000).count();
        let rewritten = 800 - kept;
        assert!((160..320).contains(&rewritten), "{rewritten}");
        assert_eq!(rewritten % 8, 0, "whole spans of 8 are rewritten");
        assert_eq!(rewrite(&teacher, &other, &[], &text, 0.0, &mut rng), text);
    }
}
