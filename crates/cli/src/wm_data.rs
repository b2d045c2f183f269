/*!
What the watermark commands and experiments share: real text from the
corpus, and a seeded sampler for the reference teacher.
*/

use anyhow::Result;
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
