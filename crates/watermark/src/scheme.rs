/*!
The watermarking schemes, as an inference engine uses them: on token ids
and logits or probabilities, model-agnostic.

- [`Kgw`] (Kirchenbauer et al., 2023): a keyed "green list" of a γ share
  of the vocabulary, reseeded at every step from the context. Generation
  adds δ to the logits of green tokens. Seeding comes from the left token
  (`LeftHash`) or from a min-hash over a window of h tokens, optionally
  salted with the candidate token itself (`MinHash { self_salt }`, which
  makes the green list harder to learn from outputs). Membership is one PRF
  call: no permutation of the vocabulary is built.
- [`Tournament`] (SynthID-Text, Dathathri et al., 2024): 2^m candidates
  drawn from the model's distribution play m knockout rounds. Each round
  compares keyed bits g_l(context, token), and the winner is emitted. The
  distribution is left nearly unchanged, and the emitted tokens' g-bits
  lean to 1.
- [`Gumbel`] (Aaronson, 2022): the token maximising r_v^(1/p_v), with
  r_v = PRF(context, v) uniform. Distortion-free: with the key unknown, the
  output is an exact sample of the model. Detection sums −ln(1 − r) over
  the emitted tokens.

Every scheme is deterministic given the key and the context (tournament
candidates come from the caller's random source).
*/

use crate::key::{Key, unit};

/// How the context seeds the PRF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeding {
    /// The previous `h` tokens, in order (h = 1: the left token).
    LeftHash { h: usize },
    /// The minimum PRF value over the previous `h` tokens; with
    /// `self_salt`, the candidate token joins the window.
    MinHash { h: usize, self_salt: bool },
}

impl Seeding {
    pub fn width(self) -> usize {
        match self {
            Seeding::LeftHash { h } | Seeding::MinHash { h, .. } => h.max(1),
        }
    }

    /// The context seed for `token` after `window` (the last `width()`
    /// tokens). `None` when the window is too short.
    #[inline]
    pub fn seed(self, key: &Key, window: &[u32], token: u32) -> Option<u64> {
        let h = self.width();
        if window.len() < h {
            return None;
        }
        let w = &window[window.len() - h..];
        Some(match self {
            Seeding::LeftHash { .. } => {
                let mut x = 0x9E37_79B9_7F4A_7C15u64;
                for &t in w {
                    x = (x ^ u64::from(t))
                        .wrapping_mul(0xBF58_476D_1CE4_E5B9)
                        .rotate_left(27);
                }
                x
            }
            Seeding::MinHash { self_salt, .. } => {
                let mut m = w
                    .iter()
                    .map(|&t| key.prf_token(t))
                    .min()
                    .unwrap_or(u64::MAX);
                if self_salt {
                    m = m.min(key.prf_token(token));
                }
                m
            }
        })
    }
}

/// KGW green-list watermark.
#[derive(Debug, Clone, Copy)]
pub struct Kgw {
    pub key: Key,
    /// Share of the vocabulary that is green.
    pub gamma: f64,
    /// Logit bias added to green tokens.
    pub delta: f32,
    pub seeding: Seeding,
}

impl Kgw {
    fn threshold(&self) -> u64 {
        (self.gamma.clamp(0.0, 1.0) * 18_446_744_073_709_551_616.0) as u64
    }

    /// Whether `token` is green after `window` (`None`: window too short).
    #[inline]
    pub fn is_green(&self, window: &[u32], token: u32) -> Option<bool> {
        let seed = self.seeding.seed(&self.key, window, token)?;
        Some(self.is_green_seeded(seed, token))
    }

    /// Whether `token` is green under an already computed seed.
    #[inline]
    pub fn is_green_seeded(&self, seed: u64, token: u32) -> bool {
        self.key.prf(seed, token) < self.threshold()
    }

    /// Adds δ to the logits of the green tokens for the next step.
    pub fn bias(&self, window: &[u32], logits: &mut [f32]) {
        for (v, l) in logits.iter_mut().enumerate() {
            if self.is_green(window, v as u32) == Some(true) {
                *l += self.delta;
            }
        }
    }
}

/// SynthID-style tournament sampling.
#[derive(Debug, Clone, Copy)]
pub struct Tournament {
    pub key: Key,
    /// Knockout rounds (2^m candidates; at most 16 are played).
    pub layers: u32,
    pub seeding: Seeding,
}

impl Tournament {
    /// The keyed bits of all rounds for `token` after `window`: bit `l` of
    /// one PRF output is round `l`'s g-value (bits of a PRF output are
    /// independent and uniform; at most 64 rounds).
    #[inline]
    pub fn g_bits(&self, window: &[u32], token: u32) -> Option<u64> {
        let seed = self.seeding.seed(&self.key, window, token)?;
        Some(self.g_bits_seeded(seed, token))
    }

    /// [`Tournament::g_bits`] under an already computed seed.
    #[inline]
    pub fn g_bits_seeded(&self, seed: u64, token: u32) -> u64 {
        self.key.prf(seed ^ 0xD6E8_FEB8_6659_FD93, token)
    }

    /// The keyed bit of round `l` for `token` after `window`.
    #[inline]
    pub fn g(&self, window: &[u32], token: u32, l: u32) -> Option<bool> {
        Some((self.g_bits(window, token)? >> (l % 64)) & 1 == 1)
    }

    /// Samples the next token: 2^m candidates drawn from `probs` with the
    /// caller's uniform source, then m knockout rounds on g-bits (ties go
    /// to the first of the pair).
    pub fn sample(&self, window: &[u32], probs: &[f32], uniform: &mut impl FnMut() -> f64) -> u32 {
        let ids: Vec<u32> = (0..probs.len() as u32).collect();
        self.sample_among(window, &ids, probs, uniform) as u32
    }

    /// [`Tournament::sample`] over sparse candidates: `ids[i]` has
    /// probability `probs[i]`; returns the winner's index.
    pub fn sample_among(
        &self,
        window: &[u32],
        ids: &[u32],
        probs: &[f32],
        uniform: &mut impl FnMut() -> f64,
    ) -> usize {
        // 2^m draws from one cumulative table (a binary search each), not
        // 2^m passes over the candidates.
        let mut cdf = Vec::with_capacity(probs.len());
        let mut total = 0.0f64;
        for &p in probs {
            total += f64::from(p.max(0.0));
            cdf.push(total);
        }
        let last = probs.len().saturating_sub(1);
        let mut cand: Vec<usize> = (0..(1usize << self.layers.min(16)))
            .map(|_| {
                let x = uniform() * total;
                cdf.partition_point(|&c| c <= x).min(last)
            })
            .collect();
        for l in 0..self.layers {
            cand = cand
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => {
                        let ga = self.g(window, ids[*a], l).unwrap_or(false);
                        let gb = self.g(window, ids[*b], l).unwrap_or(false);
                        if gb && !ga { *b } else { *a }
                    }
                    [a] => *a,
                    _ => 0,
                })
                .collect();
        }
        cand.first().copied().unwrap_or(0)
    }
}

/// Gumbel-max (distortion-free) sampling.
#[derive(Debug, Clone, Copy)]
pub struct Gumbel {
    pub key: Key,
    pub seeding: Seeding,
}

impl Gumbel {
    /// r_v for `token` after `window`, uniform in (0, 1).
    #[inline]
    pub fn r(&self, window: &[u32], token: u32) -> Option<f64> {
        let seed = self.seeding.seed(&self.key, window, token)?;
        Some(self.r_seeded(seed, token))
    }

    /// [`Gumbel::r`] under an already computed seed.
    #[inline]
    pub fn r_seeded(&self, seed: u64, token: u32) -> f64 {
        unit(self.key.prf(seed, token)).max(f64::MIN_POSITIVE)
    }

    /// The token maximising r_v^(1/p_v), i.e. ln(r_v)/p_v.
    pub fn sample(&self, window: &[u32], probs: &[f32]) -> u32 {
        let mut best = (f64::NEG_INFINITY, 0u32);
        for (v, &p) in probs.iter().enumerate() {
            if p <= 0.0 {
                continue;
            }
            let Some(r) = self.r(window, v as u32) else {
                return argmax(probs);
            };
            let score = r.ln() / f64::from(p);
            if score > best.0 {
                best = (score, v as u32);
            }
        }
        best.1
    }
}

fn argmax(p: &[f32]) -> u32 {
    p.iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |b, (i, &x)| {
            if x > b.1 { (i, x) } else { b }
        })
        .0 as u32
}

/// Inverse-CDF draw from `probs` with uniform `u`.
pub fn draw(probs: &[f32], u: f64) -> u32 {
    let total: f64 = probs.iter().map(|&p| f64::from(p.max(0.0))).sum();
    let mut x = u * total;
    for (i, &p) in probs.iter().enumerate() {
        x -= f64::from(p.max(0.0));
        if x < 0.0 {
            return i as u32;
        }
    }
    probs.len().saturating_sub(1) as u32
}

/// A scheme with its key, as detection needs it.
#[derive(Debug, Clone, Copy)]
pub enum Scheme {
    Kgw(Kgw),
    Tournament(Tournament),
    Gumbel(Gumbel),
}

impl Scheme {
    pub(crate) fn seeding(&self) -> Seeding {
        match self {
            Scheme::Kgw(k) => k.seeding,
            Scheme::Tournament(t) => t.seeding,
            Scheme::Gumbel(g) => g.seeding,
        }
    }

    pub(crate) fn key(&self) -> &crate::key::Key {
        match self {
            Scheme::Kgw(k) => &k.key,
            Scheme::Tournament(t) => &t.key,
            Scheme::Gumbel(g) => &g.key,
        }
    }

    /// The seed of position `t` of `tokens`. `pt` holds each token's PRF
    /// value when the seeding is a min-hash (computed once per text).
    #[inline]
    pub(crate) fn seed_at(&self, tokens: &[u32], pt: &[u64], t: usize) -> Option<u64> {
        match self.seeding() {
            Seeding::MinHash { h, self_salt } if pt.len() == tokens.len() => {
                let h = h.max(1);
                if t < h {
                    return None;
                }
                let m = pt[t - h..t].iter().copied().min().unwrap_or(u64::MAX);
                Some(if self_salt { m.min(pt[t]) } else { m })
            }
            s => s.seed(
                self.key(),
                &tokens[t.saturating_sub(s.width())..t],
                tokens[t],
            ),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Kgw(_) => "kgw",
            Scheme::Tournament(_) => "tournament",
            Scheme::Gumbel(_) => "gumbel",
        }
    }

    pub fn key_fingerprint(&self) -> String {
        match self {
            Scheme::Kgw(k) => k.key.fingerprint(),
            Scheme::Tournament(t) => t.key.fingerprint(),
            Scheme::Gumbel(g) => g.key.fingerprint(),
        }
    }
}

/// Samples the next token from a model's sparse candidates (`(token,
/// probability)` pairs, as engines that keep a top-k do) under a scheme,
/// or plainly with `None`. KGW reweights green candidates by e^δ,
/// Gumbel-max takes the argmax of ln(r)/p, the tournament plays its rounds.
pub fn sample_sparse(
    scheme: Option<&Scheme>,
    window: &[u32],
    cand: &[(u32, f32)],
    uniform: &mut impl FnMut() -> f64,
) -> u32 {
    let ids: Vec<u32> = cand.iter().map(|c| c.0).collect();
    let probs: Vec<f32> = cand.iter().map(|c| c.1).collect();
    let i = match scheme {
        None => draw(&probs, uniform()) as usize,
        Some(Scheme::Kgw(k)) => {
            let boost = k.delta.exp();
            let w: Vec<f32> = cand
                .iter()
                .map(|&(t, p)| {
                    if k.is_green(window, t) == Some(true) {
                        p * boost
                    } else {
                        p
                    }
                })
                .collect();
            draw(&w, uniform()) as usize
        }
        Some(Scheme::Gumbel(g)) => {
            let mut best = (f64::NEG_INFINITY, 0usize);
            for (j, &(t, p)) in cand.iter().enumerate() {
                let r = g
                    .r(window, t)
                    .unwrap_or_else(|| uniform().max(f64::MIN_POSITIVE));
                let s = r.ln() / f64::from(p.max(1e-12));
                if s > best.0 {
                    best = (s, j);
                }
            }
            best.1
        }
        Some(Scheme::Tournament(t)) => t.sample_among(window, &ids, &probs, uniform),
    };
    ids.get(i).copied().unwrap_or(0)
}
