/*!
Count-min sketch with conservative update (Cormode & Muthukrishnan 2005;
Estan & Varghese 2002).

Counts keys over all traffic in fixed memory, never underestimating:
"how many accounts have used this template fingerprint". Width is a power
of two; depth 4. Cost: 4 hashes and 4 counters per update.
*/

use crate::mix64;

const DEPTH: usize = 4;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CountMin {
    mask: usize,
    table: Vec<u32>,
}

impl CountMin {
    /// `width_log2` bits of width per row (memory: 4 · 2^w · 4 bytes).
    pub fn new(width_log2: u32) -> Self {
        let width = 1usize << width_log2.clamp(4, 30);
        CountMin {
            mask: width - 1,
            table: vec![0; width * DEPTH],
        }
    }

    fn slots(&self, key: u64) -> [usize; DEPTH] {
        let mut out = [0; DEPTH];
        let mut h = key;
        for (d, slot) in out.iter_mut().enumerate() {
            h = mix64(h ^ (d as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            *slot = d * (self.mask + 1) + (h as usize & self.mask);
        }
        out
    }

    /// Adds one; returns the new estimate.
    pub fn add(&mut self, key: u64) -> u32 {
        let s = self.slots(key);
        let est = s
            .iter()
            .map(|&i| self.table[i])
            .min()
            .unwrap_or(0)
            .saturating_add(1);
        for i in s {
            if self.table[i] < est {
                self.table[i] = est;
            }
        }
        est
    }

    pub fn estimate(&self, key: u64) -> u32 {
        self.slots(key)
            .iter()
            .map(|&i| self.table[i])
            .min()
            .unwrap_or(0)
    }

    pub fn bytes(&self) -> usize {
        self.table.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_underestimates_and_rarely_overestimates() {
        let mut cm = CountMin::new(14);
        for i in 0..50_000u64 {
            cm.add(i % 5_000);
        }
        for k in 0..5_000u64 {
            let e = cm.estimate(k);
            assert!(e >= 10, "{k}: {e}");
        }
        let over = (0..5_000u64).filter(|&k| cm.estimate(k) > 12).count();
        assert!(over < 50, "{over}");
        assert_eq!(cm.estimate(1 << 50), 0);
    }
}
