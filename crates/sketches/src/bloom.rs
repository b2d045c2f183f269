/*!
Bloom filters: "has this been seen before?" in fixed memory.

[`Bloom`] answers for everything inserted, with false positives rising as
it fills. [`Rotating`] keeps two generations of `capacity` insertions each
and forgets the older one when the newer fills, so a stream that never
ends keeps a steady false-positive rate and remembers at least the last
`capacity` items. Cost: two hashes and one cache line per call.
*/

use crate::mix64;

const PROBES: u32 = 3;

/// One cache line of bits: every probe of an item falls in one line, so
/// a call costs one cache miss, not three (a blocked Bloom filter; its
/// false-positive rate is a little above the classic one's at the same
/// size).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
#[repr(align(64))]
struct Line([u64; 8]);

/// A Bloom filter of 2^`log2_bits` bits.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Bloom {
    lines: Vec<Line>,
    mask: u64,
}

impl Bloom {
    pub fn new(log2_bits: u32) -> Bloom {
        let n = 1usize << log2_bits.clamp(9, 36);
        Bloom {
            lines: vec![Line::default(); n / 512],
            mask: (n / 512) as u64 - 1,
        }
    }

    /// The line of `h` and its probes' (word, bit) positions in it.
    fn probes(&self, h: u64) -> (usize, [(usize, u64); PROBES as usize]) {
        let x = mix64(h);
        let line = (x & self.mask) as usize;
        let y = mix64(x ^ 0xB10C);
        let mut p = [(0usize, 0u64); PROBES as usize];
        for (i, slot) in p.iter_mut().enumerate() {
            let b = (y >> (i * 9)) & 511;
            *slot = ((b / 64) as usize, 1u64 << (b % 64));
        }
        (line, p)
    }

    /// Inserts `h`; returns whether it was (probably) there before.
    pub fn insert(&mut self, h: u64) -> bool {
        let (line, probes) = self.probes(h);
        let words = &mut self.lines[line].0;
        let mut present = true;
        for (w, bit) in probes {
            present &= words[w] & bit != 0;
            words[w] |= bit;
        }
        present
    }

    /// Whether `h` was (probably) inserted.
    pub fn contains(&self, h: u64) -> bool {
        let (line, probes) = self.probes(h);
        let words = &self.lines[line].0;
        probes.iter().all(|&(w, bit)| words[w] & bit != 0)
    }

    fn clear(&mut self) {
        self.lines.iter_mut().for_each(|l| *l = Line::default());
    }
}

/// Two Bloom generations that forget the older one as the newer fills.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Rotating {
    new: Bloom,
    old: Bloom,
    inserted: u64,
    capacity: u64,
}

impl Rotating {
    /// Each generation holds `capacity` items in 2^`log2_bits` bits.
    pub fn new(log2_bits: u32, capacity: u64) -> Rotating {
        Rotating {
            new: Bloom::new(log2_bits),
            old: Bloom::new(log2_bits),
            inserted: 0,
            capacity: capacity.max(1),
        }
    }

    /// Inserts `h`; returns whether it was (probably) seen within the last
    /// one to two generations.
    pub fn insert(&mut self, h: u64) -> bool {
        let before = self.old.contains(h);
        let present = self.new.insert(h) || before;
        self.inserted += 1;
        if self.inserted >= self.capacity {
            std::mem::swap(&mut self.new, &mut self.old);
            self.new.clear();
            self.inserted = 0;
        }
        present
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_it_saw_and_rarely_imagines() {
        let mut b = Bloom::new(20);
        for i in 0..50_000u64 {
            assert!(!b.insert(i * 7919) || i > 0);
        }
        assert!((0..50_000u64).all(|i| b.contains(i * 7919)));
        let false_hits = (1_000_000..1_100_000u64)
            .filter(|i| b.contains(*i * 7919))
            .count();
        assert!(false_hits < 1_000, "{false_hits}");
    }

    #[test]
    fn rotation_forgets_the_old_generation_only() {
        let mut r = Rotating::new(16, 1_000);
        r.insert(42);
        for i in 0..999u64 {
            r.insert(1_000_000 + i);
        }
        // 42 moved to the old generation: still remembered.
        assert!(r.insert(42));
        for i in 0..2_000u64 {
            r.insert(2_000_000 + i);
        }
        // Two generations later it is gone (allowing for false positives).
        let mut r2 = Rotating::new(16, 1_000);
        r2.insert(7);
        for i in 0..2_000u64 {
            r2.insert(5_000_000 + i);
        }
        assert!(!r2.insert(7));
    }
}
