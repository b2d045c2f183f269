/*!
A small teacher language model: an interpolated trigram model over BPE
token ids, trained from real assistant answers (the ShareGPT turns in
`../shared`, or the sample embedded in the simulator).

It is a **stand-in** for a provider's model. Its job is to make the whole
watermark path run here: train, generate with a watermark, detect, and
train students on the outputs for the radioactivity test. It is not meant
to write well. An inference engine uses the watermark library the same
way on a real model's logits.

The model: Witten-Bell interpolation of trigram, bigram and unigram
estimates. Each context keeps at most 64 continuations (the most
frequent), and the unigram level the 512 most frequent tokens. So
[`Teacher::next`] returns a sparse distribution of at most about 640
candidates. Training and generation are deterministic (ties break by
token id).
*/

use std::collections::HashMap;

/// Continuations kept per context.
const KEEP: usize = 64;
/// Unigram candidates.
const TOP: usize = 512;

/// One context's continuations.
struct Ctx {
    /// Times the context was seen.
    n: u32,
    /// Distinct continuations seen (before truncation).
    types: u32,
    /// The most frequent continuations and their counts.
    next: Vec<(u32, u32)>,
}

/// The trained model.
pub struct Teacher {
    tri: HashMap<u64, Ctx>,
    bi: HashMap<u32, Ctx>,
    top: Vec<(u32, u32)>,
    /// Token ids seen in training.
    pub trained_tokens: u64,
}

fn pair(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

fn compact(m: HashMap<u32, u32>) -> Ctx {
    let n: u32 = m.values().sum();
    let mut next: Vec<(u32, u32)> = m.into_iter().collect();
    next.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let types = next.len() as u32;
    next.truncate(KEEP);
    Ctx { n, types, next }
}

impl Teacher {
    /// Trains on token sequences (one per document).
    pub fn train<I: IntoIterator<Item = Vec<u32>>>(docs: I) -> Teacher {
        let mut tri: HashMap<u64, HashMap<u32, u32>> = HashMap::new();
        let mut bi: HashMap<u32, HashMap<u32, u32>> = HashMap::new();
        let mut uni: HashMap<u32, u32> = HashMap::new();
        let mut n = 0u64;
        for d in docs {
            for (i, &t) in d.iter().enumerate() {
                n += 1;
                *uni.entry(t).or_default() += 1;
                if i >= 1 {
                    *bi.entry(d[i - 1]).or_default().entry(t).or_default() += 1;
                }
                if i >= 2 {
                    *tri.entry(pair(d[i - 2], d[i - 1]))
                        .or_default()
                        .entry(t)
                        .or_default() += 1;
                }
            }
        }
        let mut top: Vec<(u32, u32)> = uni.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(TOP);
        Teacher {
            tri: tri.into_iter().map(|(k, m)| (k, compact(m))).collect(),
            bi: bi.into_iter().map(|(k, m)| (k, compact(m))).collect(),
            top,
            trained_tokens: n,
        }
    }

    /// The next-token distribution after `context`: (token, probability)
    /// pairs summing to 1, in decreasing probability (ties by id).
    pub fn next(&self, context: &[u32]) -> Vec<(u32, f32)> {
        // Contributions of every level, summed per token after one sort by
        // token (no hashing: this is the generator's inner loop, and the
        // sums come out in the same order on every run).
        let mut p: Vec<(u32, f64)> = Vec::with_capacity(self.top.len() + 2 * KEEP);
        let mut rest = 1.0f64;
        let levels: [Option<&Ctx>; 2] = [
            match context {
                [.., a, b] => self.tri.get(&pair(*a, *b)),
                _ => None,
            },
            context.last().and_then(|b| self.bi.get(b)),
        ];
        for ctx in levels.into_iter().flatten() {
            let kept: u32 = ctx.next.iter().map(|x| x.1).sum();
            if ctx.n == 0 || kept == 0 {
                continue;
            }
            let w = f64::from(ctx.n) / f64::from(ctx.n + ctx.types);
            for &(t, c) in &ctx.next {
                p.push((t, rest * w * f64::from(c) / f64::from(kept)));
            }
            rest *= 1.0 - w;
        }
        let kept: u64 = self.top.iter().map(|x| u64::from(x.1)).sum::<u64>().max(1);
        for &(t, c) in &self.top {
            p.push((t, rest * c as f64 / kept as f64));
        }
        // Stable: a token's contributions keep their level order.
        p.sort_by_key(|x| x.0);
        let mut merged: Vec<(u32, f64)> = Vec::with_capacity(p.len());
        for (t, x) in p {
            match merged.last_mut() {
                Some(last) if last.0 == t => last.1 += x,
                _ => merged.push((t, x)),
            }
        }
        let sum: f64 = merged
            .iter()
            .map(|x| x.1)
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        let mut out: Vec<(u32, f32)> = merged
            .into_iter()
            .map(|(t, x)| (t, (x / sum) as f32))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    pub fn generate(
        &self,
        prompt: &[u32],
        max: usize,
        stop: Option<u32>,
        mut pick: impl FnMut(&[u32], &[(u32, f32)]) -> u32,
    ) -> Vec<u32> {
        let mut ctx = prompt.to_vec();
        let mut out = Vec::with_capacity(max);
        for _ in 0..max {
            let cand = self.next(&ctx);
            if cand.is_empty() {
                break;
            }
            let t = pick(&ctx, &cand);
            if Some(t) == stop {
                break;
            }
            ctx.push(t);
            out.push(t);
        }
        out
    }

    /// Distinct contexts kept (a size measure).
    pub fn contexts(&self) -> usize {
        self.tri.len() + self.bi.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<Vec<u32>> {
        // "the cat sat on the mat" patterns with variations.
        (0..200)
            .map(|i| vec![1, 2, 3 + (i % 3), 4, 1, 5 + (i % 2), 6])
            .collect()
    }

    #[test]
    fn distributions_sum_to_one_and_follow_the_data() {
        let m = Teacher::train(corpus());
        let p = m.next(&[4, 1]);
        let s: f32 = p.iter().map(|x| x.1).sum();
        assert!((s - 1.0).abs() < 1e-4, "{s}");
        // After "4 1" the data continues with 5 or 6 (5 + i%2).
        assert!(p[0].0 == 5 || p[0].0 == 6, "{p:?}");
        assert!(p[0].1 > 0.3);
        // Unseen contexts back off to unigrams.
        let q = m.next(&[999, 998]);
        assert!(!q.is_empty() && (q.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn generation_is_deterministic_with_a_deterministic_picker() {
        let m = Teacher::train(corpus());
        let greedy = |_: &[u32], c: &[(u32, f32)]| c[0].0;
        let a = m.generate(&[1, 2], 10, Some(6), greedy);
        let b = m.generate(&[1, 2], 10, Some(6), greedy);
        assert_eq!(a, b);
        assert!(!a.is_empty() && !a.contains(&6));
    }
}
