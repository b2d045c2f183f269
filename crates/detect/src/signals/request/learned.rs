/*!
A learned elicitation classifier: does this text ask the model to write
out its reasoning, in any words or language?

Why: the phrase lists of [`super::elicitation`] miss new wordings ("walk me
through your thinking one step at a time", "think inside `<reasoning>`
tags", other languages), and a campaign rewords for free. A linear model
over hashed word and character n-grams generalises to wordings it was not
trained on, because they share pieces ("through your think", "reason",
"step", "pensamiento"), while staying cheap enough for every request.

Measures: [`Model::probability`] of a text (a user turn or a system
prompt) being a request for reasoning. Only the opening and the closing of
a long text are read ([`WINDOW`] characters each): that is where such
requests sit, and it bounds the cost. Direction: a higher probability
means more likely an elicitation. Cost: about one hash and one table read
per character of the window, plus one per word (measured in
BENCHMARKS.md).

The model is trained by `distillguard fit elicitation` on generated
requests for reasoning in many styles and languages against real human
prompts (ShareGPT), and evaluated on styles, languages and phrasings held
out of its training (`docs/detection.md`). The embedded default is
`elicitation.model`.
*/

use std::sync::LazyLock;

/// Bits of the hashed feature space.
pub const BITS: u32 = 17;
const SIZE: usize = 1 << BITS;
/// Characters read at each end of a long text.
pub const WINDOW: usize = 200;
/// File magic of a serialised model.
const MAGIC: &[u8; 8] = b"DGELIC01";

/// A linear model over hashed n-grams.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub bias: f32,
    /// Decision threshold on the probability (chosen at training time for
    /// a false-positive budget on real prompts).
    pub threshold: f32,
    weights: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not an elicitation model (bad magic)")]
    Magic,
    #[error("elicitation model: {0} bytes, expected {1}")]
    Size(usize, usize),
}

#[inline]
fn mix(h: u64) -> u64 {
    let h = (h ^ (h >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

/// The text's features: hashed bucket ids (duplicates kept; the model
/// counts each once per occurrence, scaled by the feature count).
pub fn features(text: &str, out: &mut Vec<u32>) {
    out.clear();
    each_feature(text, &mut |f| out.push(f));
}

/// Calls `emit` with each of the text's features, in [`features`]' order.
fn each_feature(text: &str, emit: &mut impl FnMut(u32)) {
    // Byte offsets of the two windows, found from each end without
    // walking a long prompt's middle.
    let head_end = text
        .char_indices()
        .nth(WINDOW)
        .map_or(text.len(), |(i, _)| i);
    let tail_start = text
        .char_indices()
        .rev()
        .nth(WINDOW - 1)
        .map_or(0, |(i, _)| i);
    if tail_start <= head_end {
        window_features(text.chars(), emit);
    } else {
        window_features(text[..head_end].chars(), emit);
        window_features(text[tail_start..].chars(), emit);
    }
}

fn window_features(chars: std::str::Chars, emit: &mut impl FnMut(u32)) {
    // Character 4-grams over the lowercased text with runs of whitespace
    // collapsed, and words (letters and digits) as unigrams and bigrams.
    let mut st = Grams::default();
    let text = chars.as_str();
    if text.is_ascii() {
        // Most prompts: the same features without decoding characters or
        // Unicode tables.
        for &b in text.as_bytes() {
            st.push_ascii(b.to_ascii_lowercase(), emit);
        }
        st.flush(emit);
        return;
    }
    for c in chars {
        // ASCII (most prompts) lowercases to one character without
        // `to_lowercase`'s iterator.
        if c.is_ascii() {
            st.push(c.to_ascii_lowercase(), emit);
        } else {
            for c in c.to_lowercase() {
                st.push(c, emit);
            }
        }
    }
    st.flush(emit);
}

const MASK: u64 = (SIZE as u64) - 1;

/// The running state of [`window_features`].
struct Grams {
    ring: [u64; 4],
    n: usize,
    word: u64,
    word_len: u32,
    prev_word: u64,
    last_space: bool,
}

impl Default for Grams {
    fn default() -> Self {
        Grams {
            ring: [0; 4],
            n: 0,
            word: 0,
            word_len: 0,
            prev_word: 0,
            last_space: true,
        }
    }
}

impl Grams {
    fn flush(&mut self, emit: &mut impl FnMut(u32)) {
        if self.word_len > 0 {
            let w = mix(self.word ^ 0x5752_4400);
            emit((w & MASK) as u32);
            if self.prev_word != 0 {
                emit((mix(w ^ self.prev_word.rotate_left(17) ^ 0x4249_4752) & MASK) as u32);
            }
            self.prev_word = w;
            self.word = 0;
            self.word_len = 0;
        }
    }

    /// [`Grams::push`] of an ASCII character (the same features).
    #[inline]
    fn push_ascii(&mut self, b: u8, emit: &mut impl FnMut(u32)) {
        // `char::is_whitespace` on ASCII.
        let space = matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r');
        if space && self.last_space {
            return;
        }
        self.last_space = space;
        let c = if space { b' ' } else { b };
        if c.is_ascii_alphanumeric() {
            self.word = self.word.wrapping_mul(0x100_0000_01B3) ^ u64::from(c);
            self.word_len += 1;
        } else {
            self.flush(emit);
            if !space {
                self.prev_word = 0;
            }
        }
        self.gram(u64::from(c), emit);
    }

    /// Adds a character to the 4-gram ring and emits the 4-gram ending here.
    #[inline]
    fn gram(&mut self, c: u64, emit: &mut impl FnMut(u32)) {
        let n = self.n;
        self.ring[n % 4] = c;
        self.n += 1;
        if self.n >= 4 {
            let r = &self.ring;
            let h = ((r[(n + 1) % 4] * 0x1_0000_0001)
                .wrapping_add(r[(n + 2) % 4] << 21)
                .wrapping_add(r[(n + 3) % 4] << 42))
                ^ r[n % 4].rotate_left(11);
            emit((mix(h ^ 0x4348_3400) & MASK) as u32);
        }
    }

    #[inline]
    fn push(&mut self, c: char, emit: &mut impl FnMut(u32)) {
        let space = c.is_whitespace();
        if space && self.last_space {
            return;
        }
        self.last_space = space;
        let c = if space { ' ' } else { c };
        if c.is_alphanumeric() {
            self.word = self.word.wrapping_mul(0x100_0000_01B3) ^ c as u64;
            self.word_len += 1;
            // Scripts without spaces (CJK): each character ends a word.
            if (c as u32) >= 0x2E80 {
                self.flush(emit);
            }
        } else {
            self.flush(emit);
            // Bigrams stay within a phrase: a space keeps the previous
            // word, punctuation drops it.
            if !space {
                self.prev_word = 0;
            }
        }
        self.gram(c as u64, emit);
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Model {
    /// An untrained model (every text scores 0.5 below its threshold).
    pub fn zero() -> Model {
        Model {
            bias: 0.0,
            threshold: 1.0,
            weights: vec![0.0; SIZE],
        }
    }

    /// The logit of a feature list.
    pub fn logit_of(&self, feats: &[u32]) -> f32 {
        if feats.is_empty() {
            return self.bias;
        }
        let s: f32 = feats.iter().map(|&f| self.weights[f as usize]).sum();
        self.bias + s / (feats.len() as f32).sqrt()
    }

    /// Probability that `text` asks for reasoning. The weights are summed
    /// as the features come (no list), in [`Model::logit_of`]'s order, so
    /// the result is the same to the bit.
    pub fn probability(&self, text: &str) -> f32 {
        let (mut sum, mut n) = (0f32, 0usize);
        each_feature(text, &mut |f| {
            sum += self.weights[f as usize];
            n += 1;
        });
        let logit = if n == 0 {
            self.bias
        } else {
            self.bias + sum / (n as f32).sqrt()
        };
        sigmoid(logit)
    }

    /// Whether `text` asks for reasoning, at the model's threshold.
    pub fn elicits(&self, text: &str) -> bool {
        !text.is_empty() && self.probability(text) >= self.threshold
    }

    /// Serialises: magic, bias, threshold, scale, then one signed byte per
    /// weight (quantised; the model file stays small).
    pub fn to_bytes(&self) -> Vec<u8> {
        let max = self
            .weights
            .iter()
            .fold(0f32, |m, w| m.max(w.abs()))
            .max(1e-9);
        let scale = max / 127.0;
        let mut out = Vec::with_capacity(20 + SIZE);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.bias.to_le_bytes());
        out.extend_from_slice(&self.threshold.to_le_bytes());
        out.extend_from_slice(&scale.to_le_bytes());
        out.extend(
            self.weights
                .iter()
                .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8 as u8),
        );
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Model, ModelError> {
        if b.len() < 20 || &b[..8] != MAGIC {
            return Err(ModelError::Magic);
        }
        if b.len() != 20 + SIZE {
            return Err(ModelError::Size(b.len(), 20 + SIZE));
        }
        let f = |i: usize| f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let (bias, threshold, scale) = (f(8), f(12), f(16));
        Ok(Model {
            bias,
            threshold,
            weights: b[20..].iter().map(|&q| q as i8 as f32 * scale).collect(),
        })
    }

    /// The embedded model (`elicitation.model`); an unreadable one means
    /// an untrained model that never fires (tested not to happen).
    pub fn embedded() -> &'static Model {
        static M: LazyLock<Model> = LazyLock::new(|| {
            Model::from_bytes(include_bytes!("elicitation.model")).unwrap_or_else(|_| Model::zero())
        });
        &M
    }
}

/// Training options.
#[derive(Debug, Clone, Copy)]
pub struct TrainOpts {
    pub epochs: u32,
    /// L2 penalty per example.
    pub l2: f32,
    pub learning_rate: f32,
    /// Share of an example's features dropped at each step: the model
    /// must not hang on one exact n-gram (new wordings share only some).
    pub dropout: f32,
    pub seed: u64,
}

impl Default for TrainOpts {
    fn default() -> Self {
        TrainOpts {
            epochs: 6,
            l2: 1e-5,
            learning_rate: 0.2,
            dropout: 0.3,
            seed: 1,
        }
    }
}

/// Trains a logistic model with AdaGrad over examples `(features, label,
/// weight)`. Deterministic: the order is a seeded shuffle.
pub fn train(examples: &[(Vec<u32>, bool, f32)], opts: TrainOpts) -> Model {
    let mut m = Model::zero();
    m.threshold = 0.5;
    let mut g2 = vec![1e-6f32; SIZE];
    let mut g2b = 1e-6f32;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut x = distillguard_sketches::Xorshift::from_state(opts.seed);
    for _ in 0..opts.epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, (x.next_u64() % (i as u64 + 1)) as usize);
        }
        let mut kept: Vec<u32> = Vec::new();
        for &i in &order {
            let (f, y, w) = &examples[i];
            kept.clear();
            let cut = (opts.dropout.clamp(0.0, 0.95) * u32::MAX as f32) as u32;
            for &k in f {
                if (x.next_u64() as u32) >= cut {
                    kept.push(k);
                }
            }
            let f = &kept;
            let p = sigmoid(m.logit_of(f));
            let g = (p - if *y { 1.0 } else { 0.0 }) * w;
            let norm = 1.0 / (f.len().max(1) as f32).sqrt();
            for &k in f {
                let k = k as usize;
                let gk = g * norm + opts.l2 * m.weights[k];
                g2[k] += gk * gk;
                m.weights[k] -= opts.learning_rate * gk / g2[k].sqrt();
            }
            g2b += g * g;
            m.bias -= opts.learning_rate * g / g2b.sqrt();
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_model_loads_and_round_trips() {
        let m = Model::embedded();
        assert!(m.threshold < 1.0, "the embedded model did not load");
        let back = Model::from_bytes(&m.to_bytes()).unwrap();
        assert!((back.bias - m.bias).abs() < 1e-6);
        assert!(matches!(Model::from_bytes(b"nope"), Err(ModelError::Magic)));
    }

    #[test]
    fn features_read_both_ends_of_a_long_text_only() {
        let mut f = Vec::new();
        let long = format!("{} middle {}", "a ".repeat(500), "b ".repeat(500));
        features(&long, &mut f);
        let n_long = f.len();
        features(&"a ".repeat(200), &mut f);
        assert!(n_long < 3 * f.len(), "{n_long} vs {}", f.len());
        features("", &mut f);
        assert!(f.is_empty());
        // Case and runs of spaces do not matter.
        let mut g = Vec::new();
        features("Think  STEP by step", &mut f);
        features("think step by step", &mut g);
        assert_eq!(f, g);
    }

    #[test]
    fn training_learns_a_separable_toy_problem_deterministically() {
        let pos = [
            "walk me through your reasoning",
            "explain your reasoning steps",
            "show your reasoning first",
        ];
        let neg = [
            "what is the weather today",
            "write a poem about cats",
            "translate hello to french",
        ];
        let mut ex = Vec::new();
        for (i, t) in pos.iter().chain(neg.iter()).enumerate() {
            let mut f = Vec::new();
            features(t, &mut f);
            ex.push((f, i < 3, 1.0));
        }
        let m = train(&ex, TrainOpts::default());
        assert!(m.probability("please show your reasoning") > 0.5);
        assert!(m.probability("write a poem about dogs") < 0.5);
        assert_eq!(train(&ex, TrainOpts::default()), m);
        // Summing as features come equals scoring the feature list.
        let long = "Explain, step by step, why the sky is blue. ".repeat(20) + "Пошагово.";
        for t in ["please show your reasoning", "", long.as_str()] {
            let mut f = Vec::new();
            features(t, &mut f);
            let listed = sigmoid(m.logit_of(&f));
            assert_eq!(m.probability(t).to_bits(), listed.to_bits(), "{t}");
        }
    }

    #[test]
    fn the_ascii_path_gives_the_features_of_the_char_path() {
        let every: String = (0u8..128).map(char::from).collect();
        for t in [
            "Hello,  World!\tStep-by-step\n\nexplain 42 x2_y",
            "  a",
            "",
            "A\x0b\x0cB\rC  ",
            every.as_str(),
        ] {
            let mut fast = Vec::new();
            features(t, &mut fast);
            let mut slow = Vec::new();
            let mut st = Grams::default();
            for c in t.chars() {
                st.push(c.to_ascii_lowercase(), &mut |f| slow.push(f));
            }
            st.flush(&mut |f| slow.push(f));
            assert_eq!(fast, slow, "{t:?}");
        }
    }
}
