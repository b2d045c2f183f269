/*!
Requests refused before they reached a model, counted per account: 400
(a body the detector cannot read: an evasion attempt as often as a bug),
413 (too large) and 429 (over a limit: a key hammering its allowance, or
a campaign pushing past it). They are shown with the account
(`/admin/accounts/{id}`, `"rejected"`) next to the detector's verdict.
The score does not use them yet: a feature needs training worlds that
produce them.

Memory is bounded: at most [`MAX_ACCOUNTS`] accounts are tracked; beyond,
refusals are only counted in total (`untracked`, in `/metrics` as
`distillguard_rejections_untracked_total`).
*/

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Accounts tracked at most.
pub const MAX_ACCOUNTS: usize = 1 << 20;

/// The statuses counted, in the order of the counters.
pub const STATUSES: [u16; 3] = [400, 413, 429];

#[derive(Default)]
pub struct Rejections {
    counts: Mutex<HashMap<String, [u32; 3]>>,
    pub untracked: AtomicU64,
}

impl Rejections {
    /// Counts a refusal of `account`'s request with `status` (others are
    /// ignored).
    pub fn count(&self, account: &str, status: u16) {
        let Some(i) = STATUSES.iter().position(|s| *s == status) else {
            return;
        };
        let Ok(mut m) = self.counts.lock() else {
            return;
        };
        if let Some(c) = m.get_mut(account) {
            c[i] = c[i].saturating_add(1);
        } else if m.len() < MAX_ACCOUNTS {
            let mut c = [0u32; 3];
            c[i] = 1;
            m.insert(account.to_string(), c);
        } else {
            self.untracked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An account's refusals by status (only those that happened).
    pub fn of(&self, account: &str) -> Vec<(u16, u32)> {
        let c = self
            .counts
            .lock()
            .ok()
            .and_then(|m| m.get(account).copied())
            .unwrap_or_default();
        STATUSES
            .iter()
            .zip(c)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| (*s, n))
            .collect()
    }

    /// Accounts tracked.
    pub fn accounts(&self) -> usize {
        self.counts.lock().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_per_account_and_status() {
        let r = Rejections::default();
        for _ in 0..3 {
            r.count("a", 429);
        }
        r.count("a", 400);
        r.count("a", 404);
        r.count("b", 413);
        assert_eq!(r.of("a"), vec![(400, 1), (429, 3)]);
        assert_eq!(r.of("b"), vec![(413, 1)]);
        assert!(r.of("c").is_empty());
        assert_eq!(r.accounts(), 2);
    }
}
