/*!
Fast hashing for hash tables on the per-request path.

`std`'s default hasher (SipHash-1-3 with a random key) costs more than the
table lookup it serves when the key is a `u64` that is already a hash, or
a short account id: on `analyze`, the linker's and the engine's tables
spent about a twentieth of the run in it.

- [`Fx`]: the multiply-rotate of rustc's FxHash, a word at a time, with a
  final avalanche so that low bits (table slots, Bloom bits) depend on
  every input bit. Deterministic ([`FxBuild`]): for values that must be the
  same on every run and machine.
- [`Seeded`]: the same function started from a random per-table seed, for
  tables whose keys an outsider influences (prompt hashes, account ids):
  without the seed, keys cannot be chosen to pile into one slot. Like
  `std`'s hasher, iteration order differs between runs, so nothing may
  depend on it.
*/

use std::hash::{BuildHasher, Hash, Hasher};

/// See the module doc.
#[derive(Default, Clone, Copy)]
pub struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ (rest.len() as u64) << 59);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn finish(&self) -> u64 {
        crate::mix64(self.0)
    }
}

impl Fx {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// Deterministic [`Fx`] tables.
pub type FxBuild = std::hash::BuildHasherDefault<Fx>;

/// The deterministic [`Fx`] hash of a value.
pub fn hash_of<T: Hash + ?Sized>(x: &T) -> u64 {
    let mut h = Fx::default();
    x.hash(&mut h);
    h.finish()
}

/// [`Fx`] from a random seed drawn when the table is made (see the module
/// doc).
#[derive(Clone, Copy)]
pub struct Seeded(u64);

impl Default for Seeded {
    fn default() -> Self {
        Seeded(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }
}

impl BuildHasher for Seeded {
    type Hasher = Fx;
    #[inline]
    fn build_hasher(&self) -> Fx {
        Fx(self.0)
    }
}

/// A hash map with [`Seeded`] hashing.
pub type FastMap<K, V> = std::collections::HashMap<K, V, Seeded>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fx_is_deterministic_and_separates_values() {
        assert_eq!(
            hash_of("arn:aws:iam::1:user/a"),
            hash_of("arn:aws:iam::1:user/a")
        );
        assert_ne!(hash_of("a"), hash_of("b"));
        // The length of a short tail counts: "a" and "a\0" differ.
        assert_ne!(hash_of(&b"a"[..]), hash_of(&b"a\0"[..]));
    }

    #[test]
    fn seeded_tables_differ_in_seed_and_agree_within_one() {
        let (a, b) = (Seeded::default(), Seeded::default());
        assert_ne!(a.hash_one(42u64), b.hash_one(42u64));
        assert_eq!(a.hash_one(42u64), a.hash_one(42u64));
        let mut m: FastMap<u64, u32> = FastMap::default();
        for i in 0..10_000u64 {
            m.insert(crate::mix64(i), i as u32);
        }
        assert!((0..10_000u64).all(|i| m[&crate::mix64(i)] == i as u32));
    }
}
