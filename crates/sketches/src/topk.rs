/*!
Space-Saving heavy hitters in a fixed array (Metwally et al. 2005).

Keeps the `N` most frequent keys of a stream with counts that overestimate
by at most the smallest count held. A detector uses it for "which template
fingerprints dominate this account's traffic". Cost: a linear scan of `N`
slots per insert (N is small, 8–16), 12 bytes per slot.
*/

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "TopKState", into = "TopKState")]
pub struct TopK<const N: usize> {
    keys: [u64; N],
    counts: [u32; N],
    /// Overestimate bound of each slot (the count it inherited).
    errors: [u32; N],
    len: usize,
}

/// A [`TopK`] as it is saved (arrays of any `N` as lists).
#[derive(serde::Serialize, serde::Deserialize)]
struct TopKState {
    keys: Vec<u64>,
    counts: Vec<u32>,
    errors: Vec<u32>,
    len: usize,
}

impl<const N: usize> From<TopK<N>> for TopKState {
    fn from(t: TopK<N>) -> TopKState {
        TopKState {
            keys: t.keys.to_vec(),
            counts: t.counts.to_vec(),
            errors: t.errors.to_vec(),
            len: t.len,
        }
    }
}

impl<const N: usize> TryFrom<TopKState> for TopK<N> {
    type Error = String;
    fn try_from(s: TopKState) -> Result<TopK<N>, String> {
        let bad = || format!("a top-{N} sketch with {} slots", s.keys.len());
        if s.len > N {
            return Err(bad());
        }
        Ok(TopK {
            keys: s.keys.as_slice().try_into().map_err(|_| bad())?,
            counts: s.counts.as_slice().try_into().map_err(|_| bad())?,
            errors: s.errors.as_slice().try_into().map_err(|_| bad())?,
            len: s.len,
        })
    }
}

impl<const N: usize> Default for TopK<N> {
    fn default() -> Self {
        TopK {
            keys: [0; N],
            counts: [0; N],
            errors: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> TopK<N> {
    /// Counts one occurrence of `key`; returns its (over)estimated count.
    pub fn insert(&mut self, key: u64) -> u32 {
        if let Some(i) = self.keys[..self.len].iter().position(|&k| k == key) {
            self.counts[i] = self.counts[i].saturating_add(1);
            return self.counts[i];
        }
        if self.len < N {
            let i = self.len;
            self.keys[i] = key;
            self.counts[i] = 1;
            self.errors[i] = 0;
            self.len += 1;
            return 1;
        }
        // Replace the smallest: the newcomer inherits its count.
        let (i, _) = self
            .counts
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| **c)
            .unwrap_or((0, &0));
        self.keys[i] = key;
        self.errors[i] = self.counts[i];
        self.counts[i] = self.counts[i].saturating_add(1);
        self.counts[i]
    }

    /// The count held for `key` (0 if not held).
    pub fn count(&self, key: u64) -> u32 {
        self.keys[..self.len]
            .iter()
            .position(|&k| k == key)
            .map_or(0, |i| self.counts[i])
    }

    /// Held entries, most frequent first: (key, count, overestimate bound).
    pub fn entries(&self) -> Vec<(u64, u32, u32)> {
        let mut v: Vec<(u64, u32, u32)> = (0..self.len)
            .map(|i| (self.keys[i], self.counts[i], self.errors[i]))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Guaranteed (lower-bound) count of the top `m` keys together.
    pub fn top_guaranteed(&self, m: usize) -> u64 {
        self.entries()
            .iter()
            .take(m)
            .map(|(_, c, e)| (c - e) as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_heavy_hitters_in_a_noisy_stream() {
        let mut t = TopK::<8>::default();
        let mut x: u64 = 1;
        for i in 0..10_000u64 {
            // 30% key 7, 20% key 9, the rest unique noise.
            let key = match i % 10 {
                0..=2 => 7,
                3 | 4 => 9,
                _ => {
                    x = crate::mix64(x);
                    x | 1 << 40
                }
            };
            t.insert(key);
        }
        let e = t.entries();
        assert_eq!((e[0].0, e[1].0), (7, 9));
        assert!(e[0].1 >= 3000 && e[0].1 - e[0].2 <= 3000);
        assert!(t.top_guaranteed(2) >= 4000 && t.top_guaranteed(2) <= 5000);
        assert_eq!(std::mem::size_of::<TopK<8>>(), 8 * 16 + 8);
    }

    #[test]
    fn uniform_traffic_has_no_heavy_hitter() {
        let mut t = TopK::<8>::default();
        for i in 0..5_000u64 {
            t.insert(crate::mix64(i));
        }
        assert!(t.top_guaranteed(3) <= 3);
    }
}
