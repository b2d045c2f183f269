/*!
Watermarks for generated text, and the evidence that a text or a model
carries them.

A model-agnostic library: an inference engine calls it with token ids and
logits (or probabilities), and detection needs only token ids and the key.

- [`key`]: 128-bit keys, the SipHash-2-4 keyed PRF, key files,
  fingerprints (what logs and reports show), per-cohort derivation.
- [`scheme`]: KGW green lists (left-hash or self-salted min-hash seeding),
  SynthID-style tournament sampling, Gumbel-max (distortion-free).
- [`detect`]: scoring with de-duplicated (window, token) tuples, prompt
  windows excluded, exact p-values, and several keys with the Bonferroni
  correction; windowed scoring for text marked only in part.
- [`stats`]: the exact binomial and gamma tails.
- [`tokenizer`] (feature `tokenizer`, on by default): an offline BPE
  (`cl100k_base`) to score text from anywhere.
*/

pub mod detect;
pub mod key;
pub mod scheme;
pub mod stats;
#[cfg(feature = "tokenizer")]
pub mod tokenizer;

pub use detect::{
    Scheme, Score, Scorer, WindowFilter, WindowedScore, bonferroni, detect, detect_many,
    detect_windowed,
};
pub use key::Key;
pub use scheme::{Gumbel, Kgw, Seeding, Tournament};
