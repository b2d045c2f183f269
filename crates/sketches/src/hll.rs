/*!
HyperLogLog distinct counting (Flajolet et al. 2007) with 2^P one-byte
registers, linear counting for small cardinalities.

"How many distinct IPs / templates has this account used" in 64 bytes
(P = 6, ~13% standard error) or 256 bytes (P = 8, ~6.5%). Cost: one hash
and one register update per item.
*/

use crate::mix64;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hll<const P: u32> {
    regs: Vec<u8>,
}

impl<const P: u32> Default for Hll<P> {
    fn default() -> Self {
        Hll {
            regs: vec![0; 1 << P],
        }
    }
}

impl<const P: u32> Hll<P> {
    pub fn add(&mut self, key: u64) {
        let h = mix64(key);
        let idx = (h >> (64 - P)) as usize;
        let rest = h << P | 1 << (P - 1);
        let rank = rest.leading_zeros() as u8 + 1;
        if rank > self.regs[idx] {
            self.regs[idx] = rank;
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = (1u64 << P) as f64;
        let alpha = match P {
            4 => 0.673,
            5 => 0.697,
            6 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m),
        };
        // 2^-r built from its exponent bits: exact, and `powi` was 2% of
        // `analyze` (the engine reads the estimate at every request).
        let sum: f64 = self
            .regs
            .iter()
            .map(|&r| f64::from_bits((1023 - u64::from(r).min(1022)) << 52))
            .sum();
        let raw = alpha * m * m / sum;
        let zeros = self.regs.iter().filter(|&&r| r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }

    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.regs.iter_mut().zip(other.regs.iter()) {
            *a = (*a).max(*b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_of_two_bits_equal_powi() {
        for r in 0u8..=64 {
            assert_eq!(
                f64::from_bits((1023 - u64::from(r).min(1022)) << 52),
                2f64.powi(-(r as i32))
            );
        }
    }

    #[test]
    fn estimates_within_error() {
        for n in [1u64, 10, 100, 1_000, 100_000] {
            let mut h = Hll::<8>::default();
            for i in 0..n {
                h.add(i);
                h.add(i); // duplicates do not count
            }
            let e = h.estimate();
            let err = (e - n as f64).abs() / n as f64;
            assert!(err < 0.2, "n={n} e={e}");
        }
        let mut a = Hll::<6>::default();
        let mut b = Hll::<6>::default();
        (0..500).for_each(|i| a.add(i));
        (250..750).for_each(|i| b.add(i));
        a.merge(&b);
        assert!((a.estimate() - 750.0).abs() < 200.0);
    }
}
