//! Campaign activity from the event log (`console REPORT --events LOG`):
//! per ten-minute window, how many of a campaign's members acted, and its
//! requests and output tokens: the synchrony timeline the report alone
//! cannot draw (it keeps only the count of synchronised windows).

use std::collections::{BTreeMap, HashMap, HashSet};

use distillguard_core::Timestamp;
use distillguard_core::report::Report;
use serde::Serialize;

/// The window, as the linker's synchrony keys use.
pub const WINDOW_MS: i64 = 10 * 60 * 1000;
/// Windows kept per campaign at most (the busiest; about three weeks of
/// ten-minute windows).
pub const MAX_WINDOWS: usize = 3_000;

/// One window of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    pub start: Timestamp,
    /// Members with a request in the window.
    pub members: u32,
    pub requests: u32,
    pub output_tokens: u64,
}

/// Folds events into per-campaign windows.
pub struct ActivityBuilder {
    campaign_of: HashMap<String, (u32, u32)>,
    windows: Vec<BTreeMap<i64, (u32, u64)>>,
    seen: HashSet<(u32, i64, u32)>,
    events: u64,
}

impl ActivityBuilder {
    pub fn new(report: &Report) -> ActivityBuilder {
        let mut campaign_of = HashMap::new();
        for (ci, c) in report.campaigns.iter().enumerate() {
            for (mi, m) in c.accounts.iter().enumerate() {
                campaign_of.insert(m.clone(), (ci as u32, mi as u32));
            }
        }
        ActivityBuilder {
            campaign_of,
            windows: vec![BTreeMap::new(); report.campaigns.len()],
            seen: HashSet::new(),
            events: 0,
        }
    }

    /// Whether an account's events count (it is a campaign member).
    pub fn wants(&self, account: &str) -> bool {
        self.campaign_of.contains_key(account)
    }

    /// Counts one request of `account`.
    pub fn add(&mut self, account: &str, ts: Timestamp, output_tokens: u32) {
        let Some(&(c, m)) = self.campaign_of.get(account) else {
            return;
        };
        self.events += 1;
        let w = ts.0.div_euclid(WINDOW_MS);
        let Some(ws) = self.windows.get_mut(c as usize) else {
            return;
        };
        let e = ws.entry(w).or_insert((0, 0));
        e.0 += 1;
        e.1 += u64::from(output_tokens);
        self.seen.insert((c, w, m));
    }

    /// Campaign members' requests counted.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Windows per campaign id, in time order.
    pub fn finish(self, report: &Report) -> HashMap<String, Vec<Window>> {
        let mut members: HashMap<(u32, i64), u32> = HashMap::new();
        for (c, w, _) in &self.seen {
            *members.entry((*c, *w)).or_default() += 1;
        }
        let mut out = HashMap::new();
        for (ci, ws) in self.windows.into_iter().enumerate() {
            let Some(c) = report.campaigns.get(ci) else {
                continue;
            };
            let mut v: Vec<Window> = ws
                .into_iter()
                .map(|(w, (requests, tokens))| Window {
                    start: Timestamp(w * WINDOW_MS),
                    members: members.get(&(ci as u32, w)).copied().unwrap_or(0),
                    requests,
                    output_tokens: tokens,
                })
                .collect();
            if v.len() > MAX_WINDOWS {
                // Keep the busiest windows, in time order.
                v.sort_by(|a, b| b.members.cmp(&a.members).then(a.start.0.cmp(&b.start.0)));
                v.truncate(MAX_WINDOWS);
                v.sort_by_key(|w| w.start.0);
            }
            out.insert(c.campaign_id.clone(), v);
        }
        out
    }
}
