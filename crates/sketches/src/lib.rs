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
- [`bloom`]: "seen before?" (Bloom filters, one that rotates).
- [`countmin`]: count-min with conservative update (how common a key is
  across all traffic).
- [`hll`]: HyperLogLog distinct counts (how many distinct IPs, templates).
- [`fxhash`]: fast hashing for the tables on the per-request path.
*/

pub mod bloom;
pub mod countmin;
pub mod fingerprint;
pub mod fxhash;
pub mod hll;
pub mod mask;
pub mod topk;

pub use fingerprint::{Fingerprint, simhash};
pub use mask::mask_tokens;

/// The workspace's one small seeded generator: xorshift64 (13, 7, 17).
/// Not for secrets; for shuffles, dropout and sampling that must give the
/// same sequence for the same seed on every machine.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// From a raw state (made odd, so never the all-zero fixed point).
    pub const fn from_state(state: u64) -> Xorshift {
        Xorshift(state | 1)
    }

    /// The next 64 bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A uniform number in [0, 1) from the top 53 bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A fast, well-mixed 64-bit hash step (SplitMix64 finaliser).
#[inline]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, then mixed: stable across runs and platforms.
#[inline]
pub const fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < b.len() {
        h = (h ^ b[i] as u64).wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    mix64(h)
}

/// [`hash_bytes`] of the ASCII-lowercased bytes, without copying them.
#[inline]
pub fn hash_ascii_lower(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h = (h ^ x.to_ascii_lowercase() as u64).wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

/// A fast hash for exact identity of long byte strings (8 bytes a step):
/// not for sketches that need independence, just for "same text?".
#[inline]
pub fn hash_exact(b: &[u8]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0x9FB2_1C65_1E98_DF25)
            .rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix64(h ^ u64::from_le_bytes(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_hash_equals_hash_of_lowercased_bytes() {
        for w in ["Template", "DON'T_stop9", "a", ""] {
            assert_eq!(
                hash_ascii_lower(w.as_bytes()),
                hash_bytes(w.to_ascii_lowercase().as_bytes())
            );
        }
    }

    #[test]
    fn exact_hash_separates_near_texts() {
        let a = hash_exact(b"Solve the following problem: 2 + 2");
        assert_eq!(a, hash_exact(b"Solve the following problem: 2 + 2"));
        assert_ne!(a, hash_exact(b"Solve the following problem: 2 + 3"));
        assert_ne!(hash_exact(b""), hash_exact(b"\0"));
        assert_ne!(hash_exact(b"abcdefgh"), hash_exact(b"abcdefgh\0"));
    }

    #[test]
    fn xorshift_is_the_13_7_17_sequence_and_stays_in_range() {
        // The first outputs from state 1, by hand: 1 ^ 1<<13 = 0x2001; then
        // ^ >>7 (0x40) = 0x2041; then ^ <<17 = 0x4082_2041.
        let mut x = Xorshift::from_state(1);
        assert_eq!(x.next_u64(), 0x4082_2041);
        assert_eq!(Xorshift::from_state(0).next_u64(), 0x4082_2041, "made odd");
        let mut y = Xorshift::from_state(7);
        let mean = (0..100_000)
            .map(|_| y.next_f64())
            .inspect(|u| assert!((0.0..1.0).contains(u)))
            .sum::<f64>()
            / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
