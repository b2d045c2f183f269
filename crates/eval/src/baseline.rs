/*!
The baseline every report is compared with: a per-key rate limiter.

This is what a provider has without distillguard. Policy (documented in
`docs/scoreboard.md`): each API key (the account when a request names no
key) gets its account tier's limits — requests per minute enforced by GCRA
(a burst of one minute's allowance, refilling continuously) and requests
per UTC day. An account is "flagged" by the baseline at the first request
any of its keys had rejected. Attackers that spread traffic over many
small keys and accounts never trip it, which is the point of the
comparison.
*/

use std::collections::HashMap;

use distillguard_core::Timestamp;
use distillguard_core::time::{MS_PER_DAY, MS_PER_MINUTE};

pub use distillguard_core::tier::{Limits, TIER_LIMITS, limits_of};

#[derive(Debug, Clone, Copy)]
struct KeyState {
    /// GCRA theoretical arrival time, ms.
    tat: i64,
    day: i64,
    today: u32,
}

/// Streaming per-key limiter; feed requests in time order.
#[derive(Debug, Default)]
pub struct RateLimiter {
    keys: HashMap<String, KeyState>,
}

impl RateLimiter {
    /// Whether this request is admitted (and records it if so).
    pub fn admit(&mut self, key: &str, ts: Timestamp, limits: Limits) -> bool {
        let t = ts.0;
        let interval = (MS_PER_MINUTE / limits.rpm.max(1) as i64).max(1);
        let burst = MS_PER_MINUTE; // a minute's allowance at once
        let day = t.div_euclid(MS_PER_DAY);
        let st = self.keys.entry(key.to_string()).or_insert(KeyState {
            tat: t,
            day,
            today: 0,
        });
        if st.day != day {
            st.day = day;
            st.today = 0;
        }
        let tat = st.tat.max(t);
        if tat - t > burst - interval {
            return false;
        }
        if let Some(rpd) = limits.rpd
            && st.today >= rpd
        {
            return false;
        }
        st.tat = tat + interval;
        st.today += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_admits_a_minute_burst_then_the_rate() {
        let mut rl = RateLimiter::default();
        let l = Limits {
            rpm: 60,
            tpm: 0,
            rpd: None,
        };
        let t0 = 1_000_000_000_000;
        // 60 at once are admitted, the 61st is not.
        let admitted = (0..61).filter(|_| rl.admit("k", Timestamp(t0), l)).count();
        assert_eq!(admitted, 60);
        // One second later exactly one more fits.
        assert!(rl.admit("k", Timestamp(t0 + 1000), l));
        assert!(!rl.admit("k", Timestamp(t0 + 1000), l));
        // Other keys are independent.
        assert!(rl.admit("other", Timestamp(t0), l));
    }

    #[test]
    fn steady_traffic_under_the_rate_is_never_rejected() {
        let mut rl = RateLimiter::default();
        let l = Limits {
            rpm: 60,
            tpm: 0,
            rpd: None,
        };
        assert!((0..10_000).all(|i| rl.admit("k", Timestamp(i * 1000), l)));
    }

    #[test]
    fn daily_cap_resets_at_utc_midnight() {
        let mut rl = RateLimiter::default();
        let l = Limits {
            rpm: 10_000,
            tpm: 0,
            rpd: Some(3),
        };
        let day = MS_PER_DAY * 20_000;
        assert!((0..3).all(|i| rl.admit("k", Timestamp(day + i * 60_000), l)));
        assert!(!rl.admit("k", Timestamp(day + 3_600_000), l));
        assert!(rl.admit("k", Timestamp(day + MS_PER_DAY), l));
        assert_eq!(limits_of(Some("nope")), limits_of(Some("tier1")));
        assert_eq!(limits_of(Some("enterprise")).rpd, None);
    }
}
