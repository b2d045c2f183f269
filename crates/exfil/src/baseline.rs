/*!
Per-principal baselines in fixed memory.

A [`Baseline`] is what is normal for one principal: how many sensitive
bytes it reads on an active day, at which hours it works, from which
networks and with which user agents, which sensitive prefixes it
touches, how much it lists. Everything is a fixed-size array or a small
sketch, so the state is the same size on day 1 and day 400 (about 1 KiB,
asserted in a test, against the 4 KiB).

Daily sensitive bytes are kept as an exponentially weighted mean and
variance of log10(1 + bytes) over active days (α = 1/14: about a month of
memory), which is what a volume spike is measured against; the last 28
days' sensitive bytes are kept whole, for a slow drip.
*/

use distillguard_core::time::{MS_PER_DAY, MS_PER_HOUR};

/// Days of per-day sensitive bytes kept for the slow-drip window.
pub const DRIP_DAYS: usize = 28;
/// Days of per-day sensitive bytes read from outside kept for egress.
pub const EGRESS_DAYS: usize = 7;
/// Networks and user agents remembered per principal.
pub const SEEN: usize = 8;
/// Active days before the slow mean is kept as a drip's reference.
const REFERENCE_DAYS: u32 = 7;
/// Bits of the sensitive-prefix Bloom filter.
const PREFIX_BITS: usize = 1024;

/// A small most-frequent set of 64-bit keys (Space-Saving: a new key
/// replaces the least counted one, inheriting its count), with the time
/// each key was first seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    keys: [u64; SEEN],
    counts: [u32; SEEN],
    len: u8,
}

impl Seen {
    /// Records `key`; returns whether it was already held.
    pub fn observe(&mut self, key: u64) -> bool {
        let n = self.len as usize;
        if let Some(i) = self.keys[..n].iter().position(|k| *k == key) {
            self.counts[i] = self.counts[i].saturating_add(1);
            return true;
        }
        if n < SEEN {
            self.keys[n] = key;
            self.counts[n] = 1;
            self.len += 1;
        } else if let Some(i) = (0..SEEN).min_by_key(|i| self.counts[*i]) {
            self.keys[i] = key;
            self.counts[i] = self.counts[i].saturating_add(1);
        }
        false
    }

    pub fn contains(&self, key: u64) -> bool {
        self.keys[..self.len as usize].contains(&key)
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The sum of `days`, each counted up to `cap`.
fn capped_sum(days: &[u64], cap: f64) -> f64 {
    days.iter().map(|d| (*d as f64).min(cap)).sum()
}

/// The oldest value of a ring by day (`day`'s slot is today's, the next
/// one the oldest) that `held` accepts.
fn oldest_held<T: Copy>(ring: &[T], day: i64, held: impl Fn(&T) -> bool) -> Option<T> {
    let n = ring.len();
    let oldest = (day + 1).rem_euclid(n as i64) as usize;
    (0..n).map(|k| ring[(oldest + k) % n]).find(|v| held(v))
}

/// The sensitive bytes of a spike day against days whose log10(1 + bytes)
/// have this mean and variance: 4 standard deviations above (at least
/// 0.15 decades each), and at least 10× the usual day.
pub fn spike_level(mean: f64, var: f64) -> f64 {
    let sd = var.max(0.0).sqrt().max(0.15);
    let by_sd = 10f64.powf(mean + 4.0 * sd) - 1.0;
    let by_ratio = 10.0 * (10f64.powf(mean) - 1.0);
    by_sd.max(by_ratio)
}

/// Bytes are judged on a log scale: a day of 2 GB against a usual 1 GB is
/// ordinary; 200 GB against 1 GB is not.
fn log_bytes(b: u64) -> f64 {
    (1.0 + b as f64).log10()
}

/// What a finished active day read: the yardstick of the principal's
/// team.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClosedDay {
    pub sensitive: u64,
    pub outside: u64,
}

/// One principal's normal behaviour.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// First and latest access (ms).
    pub first_ts: i64,
    pub last_ts: i64,
    /// Days with any access, finished ones only.
    pub active_days: u32,
    /// EWMA mean and variance of log10(1 + sensitive bytes) per active day.
    mean: f64,
    var: f64,
    /// A slower arithmetic mean of sensitive bytes per active day (α =
    /// 1/60, days capped at 4× the usual): what a slow drip, which moves
    /// the fast mean along with it, is measured against.
    slow_mean: f64,
    /// Largest finished day's sensitive bytes.
    pub peak_day: u64,
    /// The current UTC day and its counts.
    pub day: i64,
    pub day_bytes: u64,
    pub day_sensitive: u64,
    pub day_accesses: u32,
    /// Sensitive bytes per day for the last [`DRIP_DAYS`] days (ring by day).
    drip: [u64; DRIP_DAYS],
    /// Sensitive bytes read from outside the organisation per day for the
    /// last [`EGRESS_DAYS`] days (ring by day; today's slot is today's).
    egress: [u64; EGRESS_DAYS],
    /// Mean sensitive bytes read from outside per active day (arithmetic,
    /// α = 1/60, days capped at 4× the usual day, like `slow_mean`).
    outside_mean: f64,
    /// The outside mean and the usual day as they stood at the end of
    /// each of the last [`EGRESS_DAYS`] days (ring by day; NaN: none): a
    /// move out is judged against the days before it, which it has not
    /// yet moved.
    egress_then: [(f32, f32); EGRESS_DAYS],
    /// The slow mean as it stood at the end of each of the last
    /// [`DRIP_DAYS`] days (ring by day; NaN: no value): a drip is judged
    /// against the usual day from before it began, which the drip itself
    /// has not yet moved.
    slow_then: [f32; DRIP_DAYS],
    /// Accesses per UTC hour of day, over the whole history (saturating).
    hours: [u16; 24],
    pub networks: Seen,
    pub agents: Seen,
    /// Sensitive (bucket, first path segment) pairs ever touched.
    prefixes: [u64; PREFIX_BITS / 64],
    pub prefixes_seen: u32,
    /// List calls on sensitive assets in the current hour, and reads of
    /// sensitive objects in it; the most of either in any earlier hour.
    pub hour: i64,
    pub hour_lists: u32,
    pub hour_reads: u32,
    pub peak_hour_lists: u32,
    /// Last place and time per credential (impossible travel).
    pub last_place: [(u64, u64, i64); 2],
}

impl Baseline {
    pub fn new(ts: i64) -> Baseline {
        Baseline {
            first_ts: ts,
            last_ts: ts,
            slow_then: [f32::NAN; DRIP_DAYS],
            egress_then: [(f32::NAN, f32::NAN); EGRESS_DAYS],
            day: ts.div_euclid(MS_PER_DAY),
            hour: ts.div_euclid(MS_PER_HOUR),
            ..Baseline::default()
        }
    }

    /// Moves the clock to `ts`, closing finished days and hours; returns
    /// the day it closed, if one with any access ended.
    pub fn advance(&mut self, ts: i64) -> Option<ClosedDay> {
        let day = ts.div_euclid(MS_PER_DAY);
        let mut closed = None;
        if day > self.day {
            if self.day_accesses > 0 {
                closed = Some(ClosedDay {
                    sensitive: self.day_sensitive,
                    outside: self.day_outside(),
                });
                self.close_day();
            }
            // Days skipped in between read nothing.
            for d in (self.day + 1)..=day.min(self.day + EGRESS_DAYS as i64) {
                let slot = d.rem_euclid(EGRESS_DAYS as i64) as usize;
                self.egress[slot] = 0;
                self.egress_then[slot] = if self.active_days >= REFERENCE_DAYS {
                    (self.outside_mean as f32, self.usual_day().0 as f32)
                } else {
                    (f32::NAN, f32::NAN)
                };
            }
            for d in (self.day + 1)..=day.min(self.day + DRIP_DAYS as i64) {
                let slot = d.rem_euclid(DRIP_DAYS as i64) as usize;
                self.drip[slot] = 0;
                // A mean of a few days is no reference yet.
                self.slow_then[slot] = if self.active_days >= REFERENCE_DAYS {
                    self.slow_mean as f32
                } else {
                    f32::NAN
                };
            }
            self.day = day;
            self.day_bytes = 0;
            self.day_sensitive = 0;
            self.day_accesses = 0;
        }
        let hour = ts.div_euclid(MS_PER_HOUR);
        if hour > self.hour {
            self.peak_hour_lists = self.peak_hour_lists.max(self.hour_lists);
            self.hour = hour;
            self.hour_lists = 0;
            self.hour_reads = 0;
        }
        self.last_ts = self.last_ts.max(ts);
        closed
    }

    fn close_day(&mut self) {
        // Winsorised at 3 σ above the mean: one exfiltration day must not
        // become the yardstick the next day is measured against.
        let mut x = log_bytes(self.day_sensitive);
        if self.active_days >= 2 {
            x = x.min(self.mean + 3.0 * self.var.max(0.0).sqrt().max(0.15));
        }
        self.active_days += 1;
        // The slow reference is arithmetic (days counted up to 4× the
        // usual day), so that an honest principal's 28 days add up to about
        // 28 of its usual days.
        let cap = 4.0 * (10f64.powf(self.mean) - 1.0).max(1.0);
        let capped = (self.day_sensitive as f64).min(cap);
        let outside = (self.day_outside() as f64).min(cap);
        if self.active_days == 1 {
            self.mean = x;
            self.slow_mean = self.day_sensitive as f64;
            self.outside_mean = self.day_outside() as f64;
            self.var = 0.25;
        } else {
            let slow = (1.0 / self.active_days as f64).max(1.0 / 60.0);
            self.slow_mean += slow * (capped - self.slow_mean);
            self.outside_mean += slow * (outside - self.outside_mean);
            let a = (1.0 / self.active_days as f64).max(1.0 / 14.0);
            let d = x - self.mean;
            self.mean += a * d;
            self.var = (1.0 - a) * (self.var + a * d * d);
        }
        self.peak_day = self.peak_day.max(self.day_sensitive);
    }

    /// Records an access's hour and amounts (after the detectors have
    /// judged it against the state before it); `outside`: the sensitive
    /// bytes went to a place outside the organisation.
    pub fn record(&mut self, ts: i64, bytes: u64, sensitive: u64, outside: bool) {
        let h = (ts.rem_euclid(MS_PER_DAY) / MS_PER_HOUR) as usize;
        self.hours[h] = self.hours[h].saturating_add(1);
        self.day_accesses += 1;
        self.day_bytes += bytes;
        self.day_sensitive += sensitive;
        let slot = self.day.rem_euclid(DRIP_DAYS as i64) as usize;
        self.drip[slot] += sensitive;
        if outside {
            self.egress[self.day.rem_euclid(EGRESS_DAYS as i64) as usize] += sensitive;
        }
    }

    /// Today's sensitive bytes read from outside the organisation.
    pub fn day_outside(&self) -> u64 {
        self.egress[self.day.rem_euclid(EGRESS_DAYS as i64) as usize]
    }

    /// The mean sensitive bytes an active day sent outside the
    /// organisation, and the usual day, as they stood [`EGRESS_DAYS`] days
    /// ago (or the oldest values held): before anything in the egress
    /// window moved them.
    pub fn usual_outside_before_window(&self) -> (f64, f64) {
        oldest_held(&self.egress_then, self.day, |(o, u)| {
            o.is_finite() && u.is_finite()
        })
        .map_or((self.outside_mean, self.usual_day().0), |(o, u)| {
            (f64::from(o), f64::from(u))
        })
    }

    /// Sensitive bytes read from outside over the last [`EGRESS_DAYS`]
    /// days, today included, each day counted up to `cap`: a sustained
    /// move of data out, not one burst (a volume spike's business).
    pub fn egress_capped(&self, cap: f64) -> f64 {
        capped_sum(&self.egress, cap)
    }

    /// The usual sensitive bytes of an active day (the geometric mean the
    /// log-scale EWMA holds), and its spread in decades.
    pub fn usual_day(&self) -> (f64, f64) {
        (10f64.powf(self.mean) - 1.0, self.var.max(0.0).sqrt())
    }

    /// The share of days since the first access that were active.
    pub fn active_share(&self) -> f64 {
        let days = ((self.last_ts - self.first_ts) / MS_PER_DAY).max(1) as f64;
        (f64::from(self.active_days) / days).min(1.0)
    }

    /// The mean sensitive bytes of an active day over about two months.
    pub fn usual_long(&self) -> f64 {
        self.slow_mean
    }

    /// The usual day as it stood [`DRIP_DAYS`] days ago (or the oldest
    /// value held), before anything in the drip window moved it.
    pub fn usual_before_window(&self) -> f64 {
        oldest_held(&self.slow_then, self.day, |v| v.is_finite() && *v > 0.0)
            .map_or(self.slow_mean, f64::from)
    }

    /// Sensitive bytes a day would need to be a spike: 4 standard
    /// deviations above the usual day on the log scale, and at least 10×
    /// it; `None` while there is too little history.
    pub fn spike_level(&self, learning_days: u32) -> Option<f64> {
        (self.active_days >= learning_days).then(|| spike_level(self.mean, self.var))
    }

    /// Sensitive bytes over the last `days` days (≤ [`DRIP_DAYS`]), today
    /// included.
    pub fn recent_total(&self, days: usize) -> u64 {
        let today = self.day.rem_euclid(DRIP_DAYS as i64) as usize;
        (0..days.min(DRIP_DAYS))
            .map(|k| self.drip[(today + DRIP_DAYS - k) % DRIP_DAYS])
            .sum()
    }

    /// Sensitive bytes over the last [`DRIP_DAYS`] days, today included.
    pub fn drip_total(&self) -> u64 {
        self.drip.iter().sum()
    }

    /// The same, each day counted up to `cap` bytes: sustained elevation,
    /// not one burst (a burst is a volume spike's business).
    pub fn drip_total_capped(&self, cap: f64) -> f64 {
        capped_sum(&self.drip, cap)
    }

    /// Share of the principal's accesses that fell in UTC hour `h`.
    pub fn hour_share(&self, h: usize) -> f64 {
        let total: u32 = self.hours.iter().map(|c| u32::from(*c)).sum();
        if total == 0 {
            0.0
        } else {
            f64::from(self.hours[h % 24]) / f64::from(total)
        }
    }

    fn prefix_bits(key: u64) -> [(usize, u64); 2] {
        [key, key.rotate_left(21) ^ 0x9e37_79b9_7f4a_7c15].map(|k| {
            let bit = (k % PREFIX_BITS as u64) as usize;
            (bit / 64, 1u64 << (bit % 64))
        })
    }

    /// Whether a sensitive prefix has been touched (a Bloom filter: a
    /// false "yes" is possible once hundreds are held, never a false "no").
    pub fn has_prefix(&self, key: u64) -> bool {
        Self::prefix_bits(key)
            .iter()
            .all(|(w, m)| self.prefixes[*w] & m != 0)
    }

    /// Records a sensitive prefix; returns whether it had been seen.
    pub fn touch_prefix(&mut self, key: u64) -> bool {
        let seen = self.has_prefix(key);
        for (w, m) in Self::prefix_bits(key) {
            self.prefixes[w] |= m;
        }
        if !seen {
            self.prefixes_seen += 1;
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_small_and_fixed() {
        assert!(
            std::mem::size_of::<Baseline>() <= 1024,
            "{}",
            std::mem::size_of::<Baseline>()
        );
    }

    #[test]
    fn a_steady_reader_sets_the_spike_level_above_its_days() {
        let mut b = Baseline::new(0);
        for day in 0..20 {
            let ts = day * MS_PER_DAY + 10 * MS_PER_HOUR;
            b.advance(ts);
            b.record(ts, 2_000_000_000, 2_000_000_000, false);
        }
        b.advance(20 * MS_PER_DAY);
        let level = b.spike_level(7).unwrap();
        assert!(level >= 20e9, "{level}");
        assert!(b.spike_level(30).is_none());
        let (usual, _) = b.usual_day();
        assert!((usual / 2e9 - 1.0).abs() < 0.01, "{usual}");
    }

    #[test]
    fn the_drip_window_forgets_old_days() {
        let mut b = Baseline::new(0);
        assert_eq!(b.advance(0), None);
        b.record(0, 5, 5, true);
        assert_eq!(
            b.advance(3 * MS_PER_DAY),
            Some(ClosedDay {
                sensitive: 5,
                outside: 5
            })
        );
        b.record(3 * MS_PER_DAY, 7, 7, false);
        assert_eq!(b.drip_total(), 12);
        assert_eq!(b.recent_total(3), 7);
        assert_eq!(b.recent_total(4), 12);
        assert_eq!(b.egress_capped(f64::MAX), 5.0);
        assert_eq!(b.egress_capped(2.0), 2.0);
        b.advance(8 * MS_PER_DAY);
        assert_eq!(b.egress_capped(f64::MAX), 0.0);
        assert_eq!(b.drip_total(), 12);
        b.advance(40 * MS_PER_DAY);
        assert_eq!(b.drip_total(), 0);
    }

    #[test]
    fn seen_keeps_the_frequent_keys() {
        let mut s = Seen::default();
        for _ in 0..5 {
            s.observe(1);
        }
        for k in 2..20 {
            assert!(!s.observe(k));
        }
        assert!(s.contains(1));
        assert_eq!(s.len(), SEEN);
    }

    #[test]
    fn prefixes_are_remembered() {
        let mut b = Baseline::new(0);
        assert!(!b.touch_prefix(42));
        assert!(b.touch_prefix(42));
        assert_eq!(b.prefixes_seen, 1);
    }
}
