/*!
Per key and per account limits: requests and tokens per minute, by GCRA.

Each limited thing (a key's requests, an account's tokens, …) has a
theoretical arrival time. A request costs one unit of the request limit;
tokens are charged twice: the prompt's estimate (a quarter of the body's
bytes) when the request is admitted, and the answer's tokens, as metered,
when it ends. A minute's allowance is the burst. Over the limit, the
caller gets the seconds to wait, for `Retry-After`.

Why both key and account: a campaign spreads traffic over keys, so each
key's limit alone is not the account's; the account's limit is shared by
all its keys.
*/

use std::collections::HashMap;

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Requests,
    Tokens,
}

/// Whose limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    Key(String),
    Account(String),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Key(k) => write!(f, "key {k}"),
            Who::Account(a) => write!(f, "account {a}"),
        }
    }
}

const MINUTE_MS: f64 = 60_000.0;

#[derive(Default)]
pub struct Limiter {
    /// Theoretical arrival time, ms since the epoch.
    tat: HashMap<(Who, Unit), f64>,
    ops: u64,
}

impl Limiter {
    /// Admits `cost` units at `per_minute` (a minute's allowance as burst;
    /// a cost above it is charged as a whole minute's); else the seconds
    /// to wait.
    pub fn admit(
        &mut self,
        who: &Who,
        unit: Unit,
        cost: f64,
        per_minute: f64,
        now_ms: f64,
    ) -> Result<(), u64> {
        self.gc(now_ms);
        let interval = MINUTE_MS / per_minute.max(1e-9);
        let step = (cost.max(0.0) * interval).min(MINUTE_MS);
        let tat = self
            .tat
            .get(&(who.clone(), unit))
            .copied()
            .unwrap_or(now_ms)
            .max(now_ms);
        let over = tat + step - now_ms - MINUTE_MS;
        if over > 0.0 {
            return Err((over / 1000.0).ceil().max(1.0) as u64);
        }
        self.tat.insert((who.clone(), unit), tat + step);
        Ok(())
    }

    /// Charges `cost` units without a check (tokens known after the
    /// answer); the debt delays the next requests.
    pub fn charge(&mut self, who: &Who, unit: Unit, cost: f64, per_minute: f64, now_ms: f64) {
        let interval = MINUTE_MS / per_minute.max(1e-9);
        let e = self.tat.entry((who.clone(), unit)).or_insert(now_ms);
        *e = e.max(now_ms) + cost.max(0.0) * interval;
    }

    /// Forgets limits whose allowance is whole again (bounded memory).
    fn gc(&mut self, now_ms: f64) {
        self.ops += 1;
        if self.ops % 65_536 == 0 {
            self.tat.retain(|_, t| *t > now_ms);
        }
    }

    pub fn len(&self) -> usize {
        self.tat.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tat.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_burst_then_the_rate() {
        let mut l = Limiter::default();
        let k = Who::Key("k".into());
        // 60 rpm: 60 at once, the 61st waits about a second.
        assert!((0..60).all(|_| l.admit(&k, Unit::Requests, 1.0, 60.0, 0.0).is_ok()));
        assert_eq!(l.admit(&k, Unit::Requests, 1.0, 60.0, 0.0), Err(1));
        assert!(l.admit(&k, Unit::Requests, 1.0, 60.0, 1000.0).is_ok());
        // Other keys and units are separate.
        assert!(
            l.admit(&Who::Key("j".into()), Unit::Requests, 1.0, 60.0, 0.0)
                .is_ok()
        );
        assert!(l.admit(&k, Unit::Tokens, 1.0, 60.0, 0.0).is_ok());
    }

    #[test]
    fn tokens_charged_after_the_answer_delay_the_next_request() {
        let mut l = Limiter::default();
        let a = Who::Account("a".into());
        // 6,000 tokens per minute: 100 per second.
        assert!(l.admit(&a, Unit::Tokens, 100.0, 6000.0, 0.0).is_ok());
        l.charge(&a, Unit::Tokens, 6500.0, 6000.0, 0.0);
        // 6,600 tokens owed against a 6,000 burst: 6 seconds to wait.
        assert_eq!(l.admit(&a, Unit::Tokens, 0.0, 6000.0, 0.0), Err(6));
        assert!(l.admit(&a, Unit::Tokens, 0.0, 6000.0, 6000.0).is_ok());
    }

    #[test]
    fn a_prompt_above_the_minute_is_admitted_on_a_full_allowance_only() {
        let mut l = Limiter::default();
        let a = Who::Account("a".into());
        assert!(l.admit(&a, Unit::Tokens, 1e9, 6000.0, 0.0).is_ok());
        assert!(l.admit(&a, Unit::Tokens, 1.0, 6000.0, 0.0).is_err());
    }
}
