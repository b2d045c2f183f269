/*!
The campaign half of the pipeline: the linker, the names of its accounts,
and the one membership rule. [`crate::Pipeline`] folds it beside the
engine; a cluster's linker (`distillguard link`) folds it alone, from the
link records its workers send ([`LinkRecord`]), so that a campaign is
decided by the same code whether one process or many scored its accounts.
*/

use std::collections::HashMap;

use distillguard_core::report::{CampaignReport, Report};
use distillguard_core::{AccountInfo, Timestamp};
use distillguard_link::{Activity, Key, LinkRecord, Linker, campaign};
use distillguard_sketches::fxhash::FastMap;

/// The linker and its accounts' names.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Links {
    linker: Linker,
    ids: FastMap<String, u32>,
    names: Vec<String>,
    /// Indices of forgotten accounts, for reuse.
    free: Vec<u32>,
    seen_generation: u64,
}

impl Links {
    /// `accounts`: the account records; all are registered (in id order),
    /// so that accounts that never send a request can still be linked
    /// through their payment methods.
    pub fn new(cfg: distillguard_link::Config, accounts: &HashMap<String, AccountInfo>) -> Links {
        let mut linker = Linker::new(cfg);
        let mut ids: Vec<&String> = accounts.keys().collect();
        ids.sort();
        let mut by_name = FastMap::with_capacity_and_hasher(ids.len(), Default::default());
        let mut names = Vec::with_capacity(ids.len());
        for (i, id) in ids.into_iter().enumerate() {
            by_name.insert(id.clone(), i as u32);
            names.push(id.clone());
            if linker.cfg.enabled
                && let Some(info) = accounts.get(id)
            {
                linker.register(i as u32, info);
            }
        }
        Links {
            linker,
            ids: by_name,
            names,
            free: Vec::new(),
            seen_generation: 0,
        }
    }

    /// Whether linking is on.
    pub fn enabled(&self) -> bool {
        self.linker.cfg.enabled
    }

    /// The account's index (a new one, or a forgotten account's, for a
    /// newcomer).
    pub fn index(&mut self, account: &str) -> u32 {
        if let Some(&li) = self.ids.get(account) {
            return li;
        }
        let li = match self.free.pop() {
            Some(li) => {
                self.names[li as usize] = account.to_string();
                li
            }
            None => {
                self.names.push(account.to_string());
                (self.names.len() - 1) as u32
            }
        };
        self.ids.insert(account.to_string(), li);
        li
    }

    /// Folds one request of the account at `li`.
    pub fn observe(&mut self, li: u32, info: Option<&AccountInfo>, keys: &[Key], a: Activity) {
        self.linker.observe(li, info, keys, a);
    }

    /// Folds one worker's link record (records in time order). Returns
    /// the account's index.
    pub fn fold(&mut self, r: &LinkRecord) -> u32 {
        let li = self.index(&r.account);
        self.linker
            .observe(li, r.info.as_ref(), &r.keys, r.activity());
        li
    }

    /// Requests folded.
    pub fn events(&self) -> u64 {
        self.linker.events
    }

    /// Whether the account at `li` may be forgotten (never linked).
    pub fn forgettable(&self, li: u32) -> bool {
        self.linker.forgettable(li)
    }

    /// Forgets the account at `li`; its index is reused.
    pub fn forget(&mut self, li: u32, name: &str) {
        if self.linker.forget(li) {
            self.ids.remove(name);
            if let Some(n) = self.names.get_mut(li as usize) {
                n.clear();
            }
            self.free.push(li);
        }
    }

    /// The one membership rule: when the account (by index) is blocked
    /// with a confirmed campaign, `max(joined, confirmed)`.
    pub fn campaign_at(&mut self, li: u32) -> Option<Timestamp> {
        self.linker
            .campaign_flag_at(li)
            .map(|(_, at)| Timestamp(at))
    }

    /// Accounts in confirmed campaigns, when membership moved since the
    /// last call.
    pub fn members_if_moved(&mut self) -> Option<Vec<String>> {
        Some(
            self.campaigns_if_moved()?
                .into_iter()
                .flat_map(|(_, m)| m)
                .collect(),
        )
    }

    /// The confirmed campaigns (report id, blocked members), when
    /// membership moved since the last call.
    pub fn campaigns_if_moved(&mut self) -> Option<Vec<(String, Vec<String>)>> {
        if !self.linker.cfg.enabled || self.linker.generation() == self.seen_generation {
            return None;
        }
        self.seen_generation = self.linker.generation();
        let all = campaign::members(&mut self.linker, &self.names);
        Some(
            all.into_iter()
                .map(|(id, m)| {
                    let names = m
                        .into_iter()
                        .filter(|&li| self.linker.campaign_flag_at(li).is_some())
                        .filter_map(|li| self.names.get(li as usize).cloned())
                        .collect();
                    (id, names)
                })
                .collect(),
        )
    }

    /// The confirmed campaigns now: their report ids and member counts.
    pub fn summaries(&mut self) -> Vec<(String, u32)> {
        if !self.linker.cfg.enabled {
            return Vec::new();
        }
        campaign::summaries(&mut self.linker, &self.names)
    }

    /// Every linked group of two or more accounts: member ids, pooled
    /// evidence, and whether it is a confirmed campaign.
    pub fn groups(&mut self) -> Vec<(Vec<String>, f64, bool)> {
        let names = &self.names;
        self.linker
            .groups()
            .into_iter()
            .map(|(m, e, c)| {
                let ids = m
                    .iter()
                    .filter_map(|&li| names.get(li as usize).cloned())
                    .collect();
                (ids, e, c)
            })
            .collect()
    }

    /// At the end of a log: accounts in the records that never sent a
    /// request join their campaigns.
    pub fn link_dormant(&mut self) {
        if !self.linker.cfg.enabled {
            return;
        }
        for li in 0..self.names.len() as u32 {
            if self.linker.requests_of(li) == 0 && !self.names[li as usize].is_empty() {
                self.linker.link_dormant(li);
            }
        }
    }

    /// The campaign reports (`capabilities` names the capability indices).
    pub fn campaigns(&mut self, capabilities: &[&str]) -> Vec<CampaignReport> {
        campaign::campaigns(&mut self.linker, &self.names, capabilities)
    }

    /// Raises the report's members to their campaigns' verdict.
    pub fn apply(&mut self, report: &mut Report, camps: &[CampaignReport]) {
        campaign::apply(report, &mut self.linker, camps, &self.ids);
    }
}
