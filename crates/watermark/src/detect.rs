/*!
Detection: exact p-values for "this text carries our watermark".

A token sequence (prompt, then the text to test) is scored tuple by tuple:
each (context window, token) pair after the prompt. Three rules keep the
test exact:
- **De-duplication.** A tuple is scored only the first time its PRF input
  (seed, token) occurs. Repeats are not independent draws, and counting them
  would inflate the evidence (Kirchenbauer et al.; Fernandez et al., 2023).
  With min-hash seeding, different windows can share a seed, so the PRF
  input, not the window, is what must be unique.
- **Prompt windows excluded.** Tuples that occur in the prompt are not
  scored, and neither are tokens whose window reaches into the prompt. The
  model was told those tokens; it did not choose them.
- **The exact null distribution.** Under "no watermark" each scored tuple's
  PRF value is an independent uniform. So green counts are Binomial(n, γ),
  tournament g-bits are Binomial(n·m, ½), and Gumbel scores are Gamma(n, 1)
  ([`crate::stats`]).

Every result reports tokens seen, tokens scored, the statistic and the
p-value. Several keys (cohorts) at once are tested with the Bonferroni
correction, stated in the result: p_min × number of keys, capped at 1.
*/

pub use crate::scheme::Scheme;
use crate::scheme::Seeding;
use crate::stats::{binomial_upper, gamma_upper};

/// One test's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub scheme: &'static str,
    pub key_fingerprint: String,
    /// Tokens after the prompt.
    pub tokens_seen: usize,
    /// Distinct (window, token) tuples scored.
    pub tokens_scored: usize,
    /// Green tokens (KGW), g-bits set (tournament), or Σ −ln(1 − r) (Gumbel).
    pub statistic: f64,
    pub p_value: f64,
    /// The exact test used.
    pub test: &'static str,
}

/// A set of u64 tuple hashes (open addressing; no hashing beyond the PRF-
/// quality input, which is already well mixed).
struct Seen {
    slots: Vec<u64>,
    len: usize,
}

impl Seen {
    fn with_capacity(n: usize) -> Seen {
        Seen {
            slots: vec![0; (n * 2).next_power_of_two().max(16)],
            len: 0,
        }
    }

    /// Inserts; false if present. (0 is mapped to 1: an empty slot.)
    fn insert(&mut self, mut h: u64) -> bool {
        if h == 0 {
            h = 1;
        }
        if self.len * 2 >= self.slots.len() {
            let bigger = vec![0; self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, bigger);
            self.len = 0;
            for x in old.into_iter().filter(|&x| x != 0) {
                self.insert(x);
            }
        }
        let mask = self.slots.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = h;
                    self.len += 1;
                    return true;
                }
                x if x == h => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }
}

/// Windows (the h context tokens) of a text we know a suspect trained on:
/// the filter of Sander et al. (2024). Radioactivity is measured only on
/// tuples whose window the suspect saw in our watermarked text, which is
/// where its outputs can carry our bias; other windows only add noise.
#[derive(Default)]
pub struct WindowFilter {
    windows: std::collections::HashSet<u64>,
    h: usize,
}

fn window_hash(w: &[u32]) -> u64 {
    let mut x = 0x243F_6A88_85A3_08D3u64;
    for &t in w {
        x = (x ^ u64::from(t)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
    }
    x
}

impl WindowFilter {
    /// The windows of width `h` in `texts`.
    pub fn from_texts<'a>(h: usize, texts: impl IntoIterator<Item = &'a [u32]>) -> WindowFilter {
        let h = h.max(1);
        let mut windows = std::collections::HashSet::new();
        for t in texts {
            for w in t.windows(h) {
                windows.insert(window_hash(w));
            }
        }
        WindowFilter { windows, h }
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    fn keeps(&self, window: &[u32]) -> bool {
        window.len() >= self.h
            && self
                .windows
                .contains(&window_hash(&window[window.len() - self.h..]))
    }
}

/// Scores a corpus of texts under one scheme, de-duplicating tuples across
/// all of them (a suspect model repeats itself across answers, and
/// repeated tuples are not independent draws).
pub struct Scorer<'a> {
    scheme: &'a Scheme,
    filter: Option<&'a WindowFilter>,
    seen: Seen,
    seen_tokens: usize,
    scored: usize,
    filtered_out: usize,
    stat: f64,
    /// Each scored tuple's token position and statistic, in order, when
    /// windowed scoring asked for them.
    trace: Option<Vec<(u32, f64)>>,
}

impl<'a> Scorer<'a> {
    pub fn new(scheme: &'a Scheme) -> Scorer<'a> {
        Scorer {
            scheme,
            filter: None,
            seen: Seen::with_capacity(1024),
            seen_tokens: 0,
            scored: 0,
            filtered_out: 0,
            stat: 0.0,
            trace: None,
        }
    }

    /// Scores only tuples whose window is in `filter`.
    pub fn with_filter(mut self, filter: &'a WindowFilter) -> Scorer<'a> {
        self.filter = Some(filter);
        self
    }

    /// Tuples dropped by the filter so far.
    pub fn filtered_out(&self) -> usize {
        self.filtered_out
    }

    /// Adds one text: its prompt's `prompt_len` tokens first, then the
    /// text to test.
    pub fn add(&mut self, tokens: &[u32], prompt_len: usize) {
        let scheme = self.scheme;
        let h = scheme.seeding().width();
        let prompt_len = prompt_len.min(tokens.len());
        self.seen_tokens += tokens.len() - prompt_len;
        let pt: Vec<u64> = match scheme.seeding() {
            Seeding::MinHash { .. } => tokens.iter().map(|&t| scheme.key().prf_token(t)).collect(),
            Seeding::LeftHash { .. } => Vec::new(),
        };
        // The PRF input of a tuple: (seed, token), hashed. Two tuples with the
        // same PRF input are one draw, however different their windows.
        let draw_id = |seed: u64, token: u32| {
            (seed ^ u64::from(token).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .wrapping_mul(0xBF58_476D_1CE4_E5B9)
                .rotate_left(31)
        };
        // Tuples inside the prompt are known to the model: never scored.
        for t in h..prompt_len {
            if let Some(seed) = scheme.seed_at(tokens, &pt, t) {
                self.seen.insert(draw_id(seed, tokens[t]));
            }
        }
        let start = prompt_len.max(h);
        // A token whose window reaches into the prompt is not scored either.
        let first = if prompt_len > 0 {
            start.max(prompt_len + h)
        } else {
            start
        };
        for t in first..tokens.len() {
            let tok = tokens[t];
            if let Some(f) = self.filter
                && !f.keeps(&tokens[..t])
            {
                self.filtered_out += 1;
                continue;
            }
            let Some(seed) = scheme.seed_at(tokens, &pt, t) else {
                continue;
            };
            if !self.seen.insert(draw_id(seed, tok)) {
                continue;
            }
            self.scored += 1;
            let x = match scheme {
                Scheme::Kgw(k) => f64::from(u8::from(k.is_green_seeded(seed, tok))),
                Scheme::Tournament(tr) => {
                    let mask = if tr.layers >= 64 {
                        u64::MAX
                    } else {
                        (1u64 << tr.layers) - 1
                    };
                    f64::from((tr.g_bits_seeded(seed, tok) & mask).count_ones())
                }
                Scheme::Gumbel(g) => -(1.0 - g.r_seeded(seed, tok)).ln(),
            };
            self.stat += x;
            if let Some(trace) = &mut self.trace {
                trace.push((u32::try_from(t - prompt_len).unwrap_or(u32::MAX), x));
            }
        }
    }

    /// The result over everything added.
    pub fn finish(&self) -> Score {
        let (scored, stat, scheme) = (self.scored, self.stat, self.scheme);
        let (p, test) = tail(scheme, scored, stat);
        Score {
            scheme: scheme.name(),
            key_fingerprint: scheme.key_fingerprint(),
            tokens_seen: self.seen_tokens,
            tokens_scored: scored,
            statistic: stat,
            p_value: p,
            test,
        }
    }
}

/// The exact upper tail of `stat` over `scored` independent tuples under
/// "no watermark", and the test's name.
fn tail(scheme: &Scheme, scored: usize, stat: f64) -> (f64, &'static str) {
    match scheme {
        Scheme::Kgw(k) => (
            binomial_upper(stat.round() as u64, scored as u64, k.gamma),
            "exact binomial tail: P(X ≥ green), X ~ Binomial(scored, γ)",
        ),
        Scheme::Tournament(tr) => (
            binomial_upper(
                stat.round() as u64,
                scored as u64 * u64::from(tr.layers),
                0.5,
            ),
            "exact binomial tail of g-bit matches: P(X ≥ ones), X ~ Binomial(scored · layers, 1/2)",
        ),
        Scheme::Gumbel(_) => (
            gamma_upper(scored as u64, stat),
            "exact gamma tail: P(S ≥ Σ −ln(1 − r)), S ~ Gamma(scored, 1)",
        ),
    }
}

/// The fewest scored tuples a window of [`detect_windowed`] holds.
pub const MIN_WINDOW: usize = 32;

/// [`detect_windowed`]'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowedScore {
    /// The whole text's test, as [`detect`] gives it.
    pub whole: Score,
    /// Windows tested (every size and offset).
    pub windows: usize,
    /// The best window: its first and last token (after the prompt,
    /// inclusive), scored tuples, and its own uncorrected p-value.
    pub best: Option<(usize, usize, usize, f64)>,
    /// The p-value corrected for the search: min(1, 2 · p_whole,
    /// 2 · windows · p_best).
    pub p_value: f64,
}

/// Scores the whole text and every window of it, for text where only a part
/// carries the watermark: an answer pasted into a longer document, or
/// edited heavily in places.
///
/// Windows are runs of 32, 64, 128, … scored tuples (fewer than the
/// text's), at offsets of half their length, and the last window of each
/// size ends at the text's end. The result is still an exact test: half of
/// the level goes to the whole text and half is split evenly among the
/// windows (a weighted Bonferroni correction), so the corrected p-value is
/// min(1, 2 · p_whole, 2 · windows · p_best). On text marked throughout it
/// costs a factor of two against [`detect`]; on a marked passage in
/// unmarked text it finds what the whole-text test averages away.
pub fn detect_windowed(scheme: &Scheme, tokens: &[u32], prompt_len: usize) -> WindowedScore {
    let mut s = Scorer::new(scheme);
    s.seen = Seen::with_capacity(tokens.len());
    s.trace = Some(Vec::with_capacity(tokens.len()));
    s.add(tokens, prompt_len);
    let whole = s.finish();
    let trace = s.trace.take().unwrap_or_default();
    let n = trace.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f64);
    for (_, x) in &trace {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + x);
    }
    // Expected statistic per tuple under the null: windows at or below it
    // cannot be the best, and their tails are not computed.
    let mean = match scheme {
        Scheme::Kgw(k) => k.gamma,
        Scheme::Tournament(t) => f64::from(t.layers) / 2.0,
        Scheme::Gumbel(_) => 1.0,
    };
    let mut windows = 0usize;
    let mut best: Option<(usize, usize, usize, f64)> = None;
    let mut w = MIN_WINDOW;
    while w < n {
        let stride = w / 2;
        let mut starts: Vec<usize> = (0..=n - w).step_by(stride).collect();
        if starts.last() != Some(&(n - w)) {
            starts.push(n - w);
        }
        for a in starts {
            windows += 1;
            let stat = prefix[a + w] - prefix[a];
            if stat <= mean * w as f64 {
                continue;
            }
            let (p, _) = tail(scheme, w, stat);
            if best.is_none_or(|b| p < b.3) {
                best = Some((trace[a].0 as usize, trace[a + w - 1].0 as usize, w, p));
            }
        }
        w *= 2;
    }
    let p_value = match best {
        Some(b) => (2.0 * whole.p_value).min(2.0 * windows as f64 * b.3),
        None => 2.0 * whole.p_value,
    }
    .min(1.0);
    WindowedScore {
        whole,
        windows,
        best,
        p_value,
    }
}

/// Scores `tokens` (the prompt's `prompt_len` tokens first, then the text
/// to test) under one scheme.
pub fn detect(scheme: &Scheme, tokens: &[u32], prompt_len: usize) -> Score {
    let mut s = Scorer::new(scheme);
    s.seen = Seen::with_capacity(tokens.len());
    s.add(tokens, prompt_len);
    s.finish()
}

/// The Bonferroni correction of the smallest of `keys` p-values: p_min ×
/// keys, at most 1.
pub fn bonferroni(p_min: f64, keys: usize) -> f64 {
    (p_min * keys.max(1) as f64).min(1.0)
}

/// Several keys (cohorts) at once: each key's result and the
/// Bonferroni-corrected p-value of the best one (p_min × keys, at most 1).
pub fn detect_many(schemes: &[Scheme], tokens: &[u32], prompt_len: usize) -> (Vec<Score>, f64) {
    let scores: Vec<Score> = schemes
        .iter()
        .map(|s| detect(s, tokens, prompt_len))
        .collect();
    let min = scores.iter().map(|s| s.p_value).fold(1.0f64, f64::min);
    (scores, bonferroni(min, schemes.len()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::Key;
    use crate::scheme::{Gumbel, Kgw, Tournament, draw};

    const V: usize = 2_000;

    /// A toy "language model": a fixed, peaked distribution that shifts with
    /// the previous token, so text is neither uniform nor deterministic.
    fn probs(prev: u32) -> Vec<f32> {
        let mut p: Vec<f32> = (0..V)
            .map(|v| {
                let d = (v as i64 - (prev as i64 * 7919 % V as i64)).rem_euclid(V as i64) as f32;
                (-d / 40.0).exp() + 0.001
            })
            .collect();
        let s: f32 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= s);
        p
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn key() -> Key {
        Key::from_parts(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)
    }

    fn generate(
        n: usize,
        seed: u64,
        mut step: impl FnMut(&[u32], &[f32], &mut Rng) -> u32,
    ) -> Vec<u32> {
        let mut rng = Rng(seed);
        let mut out = vec![(seed % V as u64) as u32];
        for _ in 0..n {
            let p = probs(*out.last().unwrap());
            let t = step(&out, &p, &mut rng);
            out.push(t);
        }
        out
    }

    fn kgw() -> Kgw {
        Kgw {
            key: key(),
            gamma: 0.25,
            delta: 2.0,
            seeding: Seeding::LeftHash { h: 1 },
        }
    }

    fn softmax_with(p: &[f32], bias: &[f32]) -> Vec<f32> {
        let logits: Vec<f32> = p.iter().zip(bias).map(|(x, b)| x.ln() + b).collect();
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
        let s: f32 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    #[test]
    fn kgw_text_is_detected_and_plain_text_is_not() {
        let k = kgw();
        let marked = generate(200, 7, |ctx, p, rng| {
            let mut bias = vec![0f32; V];
            k.bias(ctx, &mut bias);
            draw(&softmax_with(p, &bias), rng.next())
        });
        let plain = generate(200, 7, |_, p, rng| draw(p, rng.next()));
        let s = detect(&Scheme::Kgw(k), &marked, 1);
        assert!(s.p_value < 1e-6, "{s:?}");
        assert_eq!(s.tokens_seen, 200);
        assert!(s.tokens_scored <= 200 && s.tokens_scored > 100);
        let q = detect(&Scheme::Kgw(k), &plain, 1);
        assert!(q.p_value > 1e-3, "{q:?}");
        // A different key sees nothing.
        let other = Kgw {
            key: key().derive("other"),
            ..k
        };
        assert!(detect(&Scheme::Kgw(other), &marked, 1).p_value > 1e-3);
    }

    #[test]
    fn repeated_tuples_and_prompt_tuples_are_not_scored() {
        let k = kgw();
        // The same bigram a thousand times is one scored tuple.
        let rep: Vec<u32> = (0..1000).map(|i| if i % 2 == 0 { 5 } else { 9 }).collect();
        let s = detect(&Scheme::Kgw(k), &rep, 0);
        assert_eq!(s.tokens_scored, 2);
        // Text that copies its prompt scores nothing.
        let prompt: Vec<u32> = (0..50).collect();
        let mut tokens = prompt.clone();
        tokens.extend(prompt.iter().copied());
        let s = detect(&Scheme::Kgw(k), &tokens, 50);
        assert_eq!(s.tokens_seen, 50);
        assert_eq!(s.tokens_scored, 0, "{s:?}");
        assert_eq!(s.p_value, 1.0);
    }

    #[test]
    fn green_share_of_random_tuples_is_gamma() {
        let k = kgw();
        let mut rng = Rng(99);
        let n = 200_000;
        let green = (0..n)
            .filter(|_| {
                let a = (rng.next() * 50_000.0) as u32;
                let b = (rng.next() * 50_000.0) as u32;
                k.is_green(&[a], b).unwrap()
            })
            .count();
        let share = green as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.005, "{share}");
    }

    #[test]
    fn min_hash_self_salted_seeding_also_detects() {
        let k = Kgw {
            seeding: Seeding::MinHash {
                h: 4,
                self_salt: true,
            },
            ..kgw()
        };
        let marked = generate(300, 11, |ctx, p, rng| {
            let mut bias = vec![0f32; V];
            k.bias(ctx, &mut bias);
            draw(&softmax_with(p, &bias), rng.next())
        });
        let s = detect(&Scheme::Kgw(k), &marked, 1);
        assert!(s.p_value < 1e-6, "{s:?}");
    }

    #[test]
    fn gumbel_and_tournament_text_is_detected() {
        let g = Gumbel {
            key: key(),
            seeding: Seeding::LeftHash { h: 1 },
        };
        let marked = generate(200, 3, |ctx, p, _| g.sample(ctx, p));
        let s = detect(&Scheme::Gumbel(g), &marked, 1);
        assert!(s.p_value < 1e-6, "{s:?}");
        let plain = generate(200, 3, |_, p, rng| draw(p, rng.next()));
        assert!(detect(&Scheme::Gumbel(g), &plain, 1).p_value > 1e-3);

        let t = Tournament {
            key: key(),
            layers: 8,
            seeding: Seeding::LeftHash { h: 1 },
        };
        let marked = generate(200, 5, |ctx, p, rng| t.sample(ctx, p, &mut || rng.next()));
        let s = detect(&Scheme::Tournament(t), &marked, 1);
        assert!(s.p_value < 1e-6, "{s:?}");
        let plain = generate(200, 5, |_, p, rng| draw(p, rng.next()));
        assert!(detect(&Scheme::Tournament(t), &plain, 1).p_value > 1e-3);
    }

    #[test]
    fn many_keys_are_corrected() {
        let k = kgw();
        let marked = generate(150, 17, |ctx, p, rng| {
            let mut bias = vec![0f32; V];
            k.bias(ctx, &mut bias);
            draw(&softmax_with(p, &bias), rng.next())
        });
        let cohorts: Vec<Scheme> = (0..10)
            .map(|i| {
                Scheme::Kgw(Kgw {
                    key: key().derive(&format!("c{i}")),
                    ..k
                })
            })
            .chain([Scheme::Kgw(k)])
            .collect();
        let (scores, corrected) = detect_many(&cohorts, &marked, 1);
        let best = scores.iter().map(|s| s.p_value).fold(1.0, f64::min);
        assert_eq!(corrected, (best * 11.0).min(1.0));
        assert_eq!(scores[10].p_value, best, "the right cohort scores best");
    }

    #[test]
    fn a_marked_passage_in_plain_text_is_found_by_its_window() {
        let k = kgw();
        let plain_before = generate(500, 21, |_, p, rng| draw(p, rng.next()));
        let marked = generate(128, 22, |ctx, p, rng| {
            let mut bias = vec![0f32; V];
            k.bias(ctx, &mut bias);
            draw(&softmax_with(p, &bias), rng.next())
        });
        let plain_after = generate(500, 23, |_, p, rng| draw(p, rng.next()));
        let mut text = plain_before.clone();
        text.extend_from_slice(&marked);
        text.extend_from_slice(&plain_after);
        let s = Scheme::Kgw(k);
        let w = detect_windowed(&s, &text, 1);
        assert!(w.whole.p_value > 1e-6, "{w:?}");
        assert!(w.p_value < 1e-6, "{w:?}");
        assert!(w.p_value < w.whole.p_value);
        // The best window lies on the marked passage (tokens ~500..628
        // after the one-token prompt).
        let (first, last, scored, _) = w.best.unwrap();
        assert!(first >= 400 && last <= 730, "{first}..{last}");
        assert!(scored >= MIN_WINDOW);
        // Windows of 32, 64, …, at half-length offsets, each size ending
        // at the text's end.
        let n = w.whole.tokens_scored;
        let mut expected = 0;
        let mut size = MIN_WINDOW;
        while size < n {
            let starts = (n - size) / (size / 2) + 1;
            expected += starts + usize::from((n - size) % (size / 2) != 0);
            size *= 2;
        }
        assert_eq!(w.windows, expected);
        // Text marked throughout pays at most the factor 2 of the split.
        let all = generate(300, 24, |ctx, p, rng| {
            let mut bias = vec![0f32; V];
            k.bias(ctx, &mut bias);
            draw(&softmax_with(p, &bias), rng.next())
        });
        let w = detect_windowed(&s, &all, 1);
        assert!(w.p_value <= 2.0 * w.whole.p_value);
        assert!(w.p_value < 1e-6);
    }

    #[test]
    fn windowed_p_values_of_plain_text_stay_valid() {
        // Under "no watermark" the corrected p-value must be at most as often
        // below α as α says (the correction is conservative).
        let k = kgw();
        let s = Scheme::Kgw(k);
        let mut rng = Rng(5);
        let texts = 600;
        let (mut below_05, mut below_01) = (0, 0);
        for _ in 0..texts {
            let t: Vec<u32> = (0..400).map(|_| (rng.next() * 50_000.0) as u32).collect();
            let w = detect_windowed(&s, &t, 0);
            below_05 += usize::from(w.p_value < 0.05);
            below_01 += usize::from(w.p_value < 0.01);
            assert!(w.p_value >= w.whole.p_value.min(1.0) || w.best.is_some());
        }
        // Binomial(600, 0.05) exceeds 45 with probability < 1%.
        assert!(below_05 <= 45, "{below_05}");
        assert!(below_01 <= 14, "{below_01}");
    }
}
