/*!
When requests happen: the timing models of humans and scripts.

Humans follow a day (local-time diurnal curve, quieter weekends) in
sessions with think time between turns. Scripts run 24×7, either as a
Poisson stream or close to a fixed period. Coordinated campaigns fire in
shared windows across accounts (the synchrony that SynchroTrap-style
detectors look for).
*/

use distillguard_core::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND};

use crate::rng::Rng;

/// Relative activity of a human by local hour (0 = midnight).
pub const DIURNAL: [f64; 24] = [
    0.25, 0.12, 0.07, 0.05, 0.05, 0.08, 0.2, 0.45, 0.8, 1.0, 1.1, 1.1, 0.95, 1.0, 1.1, 1.1, 1.0,
    0.9, 0.75, 0.7, 0.75, 0.75, 0.6, 0.4,
];

/// Business hours of a company's users (support desks, offices).
pub const OFFICE: [f64; 24] = [
    0.05, 0.03, 0.02, 0.02, 0.03, 0.05, 0.15, 0.5, 0.9, 1.0, 1.0, 1.0, 0.8, 0.9, 1.0, 1.0, 0.9,
    0.7, 0.4, 0.25, 0.2, 0.15, 0.1, 0.07,
];

/// A moment inside local day `day` (UTC ms of that local midnight) drawn
/// from an hourly activity curve.
pub fn in_day(rng: &mut Rng, local_midnight: i64, curve: &[f64; 24]) -> i64 {
    let hour = rng.weighted(curve) as i64;
    local_midnight + hour * MS_PER_HOUR + rng.below(MS_PER_HOUR as u64) as i64
}

/// Session starts of a human over [start, end): Poisson sessions per
/// local day at `per_day` (× `weekend` on Saturdays and Sundays).
pub fn human_sessions(
    rng: &mut Rng,
    start: i64,
    end: i64,
    utc_offset_h: f64,
    per_day: f64,
    weekend: f64,
    curve: &[f64; 24],
) -> Vec<i64> {
    let offset = (utc_offset_h * MS_PER_HOUR as f64) as i64;
    let mut out = Vec::new();
    // Local midnights covering the span.
    let mut midnight = (start + offset).div_euclid(MS_PER_DAY) * MS_PER_DAY - offset;
    while midnight < end {
        let weekday = ((midnight + offset).div_euclid(MS_PER_DAY) + 3).rem_euclid(7);
        let rate = if weekday >= 5 {
            per_day * weekend
        } else {
            per_day
        };
        for _ in 0..rng.poisson(rate) {
            let t = in_day(rng, midnight, curve);
            if t >= start && t < end {
                out.push(t);
            }
        }
        midnight += MS_PER_DAY;
    }
    out.sort_unstable();
    out
}

/// `n` script requests over [start, end): `regularity` 0 is a Poisson
/// stream, 1 a fixed period; rescaled to fill the span.
pub fn steady(rng: &mut Rng, n: u64, start: i64, end: i64, regularity: f64) -> Vec<i64> {
    if n == 0 || end <= start {
        return Vec::new();
    }
    let mut acc = 0.0;
    let mut raw = Vec::with_capacity(n as usize);
    for _ in 0..n {
        acc += regularity + (1.0 - regularity) * rng.exp(1.0);
        raw.push(acc);
    }
    let total = acc + regularity + (1.0 - regularity) * rng.exp(1.0);
    let span = (end - start) as f64;
    raw.into_iter()
        .map(|x| start + (x / total * span) as i64)
        .collect()
}

/// Shared campaign windows over [start, end): about `per_day` a day,
/// each `minutes` long, at random times.
pub fn windows(rng: &mut Rng, start: i64, end: i64, per_day: f64, minutes: f64) -> Vec<(i64, i64)> {
    let len = (minutes * MS_PER_MINUTE as f64) as i64;
    let days = (end - start) as f64 / MS_PER_DAY as f64;
    let count = ((per_day * days).round() as u64).max(1);
    let mut out: Vec<(i64, i64)> = (0..count)
        .map(|_| {
            let s = start + rng.below((end - start - len).max(1) as u64) as i64;
            (s, (s + len).min(end))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Think time of a human between turns: reading the answer, then typing.
pub fn think_ms(rng: &mut Rng, median_s: f64, answer_chars: usize) -> i64 {
    let read = (answer_chars as f64 / 25.0).min(300.0);
    let think = rng.lognormal(median_s, 0.8).min(1800.0);
    ((read + think) * MS_PER_SECOND as f64) as i64 + 1500
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY0: i64 = 1_771_804_800_000; // 2026-02-23T00:00:00Z, a Monday

    #[test]
    fn human_sessions_follow_the_local_day() {
        let mut r = Rng::new(1);
        let t = human_sessions(
            &mut r,
            DAY0,
            DAY0 + 28 * MS_PER_DAY,
            9.0,
            20.0,
            0.5,
            &DIURNAL,
        );
        let night = t
            .iter()
            .filter(|&&x| {
                let h = ((x + 9 * MS_PER_HOUR).rem_euclid(MS_PER_DAY)) / MS_PER_HOUR;
                (2..5).contains(&h)
            })
            .count();
        let day = t
            .iter()
            .filter(|&&x| {
                let h = ((x + 9 * MS_PER_HOUR).rem_euclid(MS_PER_DAY)) / MS_PER_HOUR;
                (10..13).contains(&h)
            })
            .count();
        assert!(day > 8 * night, "day {day} night {night}");
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        assert!(t.iter().all(|x| (DAY0..DAY0 + 28 * MS_PER_DAY).contains(x)));
    }

    #[test]
    fn steady_fills_the_span_and_regular_is_regular() {
        let mut r = Rng::new(2);
        let reg = steady(&mut r, 1000, DAY0, DAY0 + MS_PER_DAY, 1.0);
        let gaps: Vec<i64> = reg.windows(2).map(|w| w[1] - w[0]).collect();
        let (lo, hi) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
        assert!(hi - lo <= 2, "{lo} {hi}");
        let poi = steady(&mut r, 1000, DAY0, DAY0 + MS_PER_DAY, 0.0);
        let gaps: Vec<i64> = poi.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().max().unwrap() > &(3 * 86_400));
        assert!(poi.iter().all(|x| (DAY0..DAY0 + MS_PER_DAY).contains(x)));
    }
}
