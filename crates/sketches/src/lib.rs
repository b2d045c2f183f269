/*!
Fixed-size sketches: what detectors keep instead of raw text.

Privacy by default means prompts are not stored; these summaries are.
Each has a fixed size, so per-account state stays bounded whatever the
traffic.

- [`mask`]: a prompt's structure, with its variable parts (numbers, code,
  quotes, URLs, ids, names) masked, as a stream of token hashes.
- [`fingerprint`]: MinHash over token 3-shingles of the masked prompt (a
  template fingerprint whose LSH bands collide for instances of one
  template), and a 64-bit SimHash.
- [`topk`]: Space-Saving heavy hitters (which templates dominate).
- [`countmin`]: count-min with conservative update (how common a key is
  across all traffic).
- [`hll`]: HyperLogLog distinct counts (how many distinct IPs, templates).
*/

pub mod countmin;
pub mod fingerprint;
pub mod hll;
pub mod mask;
pub mod topk;

pub use fingerprint::{Fingerprint, simhash};
pub use mask::mask_tokens;

/// A fast, well-mixed 64-bit hash step (SplitMix64 finaliser).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, then mixed: stable across runs and platforms.
#[inline]
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h = (h ^ x as u64).wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}
