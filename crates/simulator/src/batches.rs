/*!
Delivery through the Batch APIs: a share of the accounts that run scripts,
honest and attacking alike, send their single-shot work as batches (half
price per answer) instead of one request at a time.

An account's eligible requests in each six-hour window of the clock go out
as one batch, submitted when the window's first request would have been
sent: the batch's requests carry that time (a millisecond apart, in their
original order), the batch's id and a `custom_id`. Which accounts batch is
decided by a hash of the account id, not a random draw, so the rest of a
world stays the same bytes.

Honest batch users are the document pipelines, evaluation harnesses and
LLM judges of the product population; attacking ones are campaigns'
harvests. A detector that read "bursts" as harvesting would flag the
honest ones, which is why both are here.
*/

use crate::world::{Kind, SimAccount, Spec};

/// Per mille of eligible accounts that use batches.
pub const PER_MILLE: u64 = 250;

/// The span of one batch.
pub const WINDOW_MS: i64 = 6 * distillguard_core::time::MS_PER_HOUR;

fn hash(s: &str, salt: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ salt;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Whether this request of this account goes out in a batch.
pub fn batched(a: &SimAccount, kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Batch { .. } | Kind::Eval { .. } | Kind::Judge { .. } | Kind::Distill { .. }
    ) && hash(&a.id, 0xBA7C) % 1000 < PER_MILLE
}

/// The id of the batch holding a batched request of `a` at `ts`.
pub fn batch_id(a: &SimAccount, ts: i64) -> String {
    format!(
        "batch_{:016x}",
        hash(&a.id, ts.div_euclid(WINDOW_MS) as u64)
    )
}

/// Moves batched requests to their batch's submission time.
pub fn deliver(specs: &mut [Spec], accounts: &[SimAccount]) {
    let mut idx: Vec<usize> = (0..specs.len())
        .filter(|&i| {
            accounts
                .get(specs[i].account as usize)
                .is_some_and(|a| batched(a, &specs[i].kind))
        })
        .collect();
    idx.sort_unstable_by_key(|&i| {
        let s = &specs[i];
        (s.account, s.ts.div_euclid(WINDOW_MS), s.ts, s.seq)
    });
    let mut k = 0;
    while k < idx.len() {
        let first = specs[idx[k]];
        let window = first.ts.div_euclid(WINDOW_MS);
        let mut n = 0i64;
        while k < idx.len() {
            let s = &mut specs[idx[k]];
            if s.account != first.account || s.ts.div_euclid(WINDOW_MS) != window {
                break;
            }
            // Within the window: the first request's time, then 1 ms apart.
            s.ts = (first.ts + n).min((window + 1) * WINDOW_MS - 1);
            n += 1;
            k += 1;
        }
    }
}
