/*!
The one verdict pipeline: every place that turns requests into verdicts
(`analyze`, the gateway's detector, the scale-out workers) runs this, and
none keeps a copy of it.

Data flows one way:

1. [`record`] (any thread): an event becomes a [`Record`]: the detection
   engine's per-request signals, the linker's keys, and the partner
   indicators it matched. No prompt text survives this step.
2. [`Pipeline::process`] (one thread, records in time order): the engine
   scores the account (and its streams), the linker folds the request's
   keys, and the account's verdict comes out with campaign membership
   applied by one rule, [`Pipeline::campaign_at`]: a member of a confirmed
   campaign is blocked from `max(joined, confirmed)`.
3. [`Pipeline::finish`]: the report (accounts, campaigns, dormant members),
   with the same membership rule applied to every account.

Because the live path (the gateway asks for each account's verdict after
each request) and the batch path (`analyze` reads the report at the end)
call the same rule on the same linker state, a log replayed through both
gives the same verdicts (`crates/gateway/tests/parity.rs` replays a
simulated world through the gateway's detector and through `analyze`).
*/

pub mod known;
pub mod links;
pub mod training;

pub use known::{Known, KnownError, Skipped};
pub use links::Links;

use std::collections::{BTreeMap, HashMap};

use distillguard_core::report::{Reason, Report, Verdict};
use distillguard_core::{AccountInfo, Event, Timestamp};
use distillguard_detect::engine::{Engine, RequestSignals, pre};
use distillguard_detect::reorder::Timed;
use distillguard_detect::signals::request::capability::Capability;
use distillguard_link::{Activity, Key, LinkRecord};
use distillguard_stix::Intel;

/// One request as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The engine's per-request signals.
    pub pre: RequestSignals,
    /// The linker's keys (empty when linking is off).
    pub keys: Vec<Key>,
    /// Partner indicators matched (indices into the intel's sources).
    pub intel: Vec<u16>,
    /// The API it came through (for reports split by API; never scored).
    pub dialect: distillguard_core::Dialect,
    /// Sent in a batch (for reports; never scored).
    pub batch: bool,
}

impl Timed for Record {
    fn order_key(&self) -> (i64, u64) {
        self.pre.order_key()
    }
}

/// What the per-request step computes besides the engine's signals.
pub struct PerRequest<'a> {
    pub intel: &'a Intel,
    /// Link keys (off when linking is: they cost allocations per request).
    pub link_keys: bool,
}

/// The per-request step (pure: run it on any thread).
pub fn record(e: &Event, per: &PerRequest) -> Record {
    let p = pre(e);
    let intel = per.intel;
    let keys = if per.link_keys || !intel.is_empty() {
        distillguard_link::event_keys(e, p.template)
    } else {
        Vec::new()
    };
    let hits = if intel.is_empty() {
        Vec::new()
    } else {
        let template = keys
            .iter()
            .find(|k| k.kind == distillguard_link::Kind::Template)
            .map(|k| k.label.render());
        intel.match_request(&e.account_id, e.client.ip.as_deref(), template.as_deref())
    };
    Record {
        pre: p,
        keys: if per.link_keys { keys } else { Vec::new() },
        intel: hits,
        dialect: e.dialect,
        batch: e.batch.is_some(),
    }
}

/// The verdicts after a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The engine's index of the account.
    pub account: u32,
    /// The account's verdict: its own traffic's or one of its keys',
    /// raised to block for a member of a confirmed campaign.
    pub verdict: Verdict,
    /// The account's own verdict (its whole traffic, and its campaign),
    /// not raised by a key: what to enforce on its other keys when a key
    /// is acted on alone.
    pub own: Verdict,
    /// The verdict of the request's key (its own traffic).
    pub key: Verdict,
    pub risk: f64,
    /// In a confirmed campaign (blocked with it).
    pub campaign: bool,
}

/// The engine and the linker, folded together in time order. Saved and
/// restored whole with `serde` (a detector worker's snapshot).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Pipeline {
    engine: Engine,
    links: Links,
    /// Engine index → linker index.
    link_of: Vec<u32>,
    /// Partner indicator matches: account id → source → requests (0 for
    /// an account-record match).
    intel_hits: HashMap<String, BTreeMap<u16, u64>>,
    intel_sources: Vec<distillguard_stix::import::Source>,
}

/// An engine index whose linker index is not assigned (forgotten).
const NO_LINK: u32 = u32::MAX;

impl Pipeline {
    /// `accounts`: the account records; all are registered with the linker
    /// (in id order), so that accounts that never send a request can still
    /// be linked through their payment methods.
    pub fn new(
        engine: Engine,
        link: distillguard_link::Config,
        accounts: &HashMap<String, AccountInfo>,
        intel: &Intel,
    ) -> Pipeline {
        let links = Links::new(link, accounts);
        let mut intel_hits: HashMap<String, BTreeMap<u16, u64>> = HashMap::new();
        if !intel.is_empty() {
            for (id, info) in accounts {
                if let Some(pm) = info.payment_fingerprint.as_deref() {
                    for s in intel.match_payment(pm) {
                        intel_hits
                            .entry(id.clone())
                            .or_default()
                            .entry(s)
                            .or_insert(0);
                    }
                }
            }
        }
        Pipeline {
            engine,
            links,
            link_of: Vec::new(),
            intel_hits,
            intel_sources: intel.sources.clone(),
        }
    }

    /// Whether campaign linking is on.
    pub fn linking(&self) -> bool {
        self.links.enabled()
    }

    /// Requests folded so far.
    pub fn events(&self) -> u64 {
        self.engine.events
    }

    /// The detection engine (read-only: features, names, risks).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Folds one request (records must come in time order).
    pub fn process(&mut self, r: &Record) -> Outcome {
        let p = &r.pre;
        for &s in &r.intel {
            *self
                .intel_hits
                .entry(p.account_id.clone())
                .or_default()
                .entry(s)
                .or_insert(0) += 1;
        }
        let idx = self.engine.process(p);
        let mut out = Outcome {
            account: idx,
            verdict: self.engine.verdict_of(idx),
            own: self.engine.own_verdict_of(idx),
            key: self.engine.key_now(idx).0,
            risk: self.engine.risk_now(idx),
            campaign: false,
        };
        if !self.links.enabled() {
            return out;
        }
        let li = self.link_index(idx, &p.account_id);
        self.links.observe(
            li,
            p.account.as_ref(),
            &r.keys,
            Activity {
                ts: p.ts,
                output_tokens: p.output_tokens,
                capability: p.capability as u8,
                risk: out.risk,
                flagged: self.engine.is_flagged(idx),
            },
        );
        if self.campaign_at(li).is_some() {
            out.campaign = true;
            out.verdict = Verdict::Block;
            out.own = Verdict::Block;
        }
        out
    }

    fn link_index(&mut self, idx: u32, account: &str) -> u32 {
        if let Some(&li) = self.link_of.get(idx as usize)
            && li != NO_LINK
        {
            return li;
        }
        let li = self.links.index(account);
        let i = idx as usize;
        if i >= self.link_of.len() {
            self.link_of.resize(i + 1, NO_LINK);
        }
        self.link_of[i] = li;
        li
    }

    /// Forgets accounts that are idle and harmless, so that state stays
    /// bounded where accounts are not provisioned (one per client address):
    /// those that sent nothing since `now_ms - idle_ms`, and while more than
    /// `max_live` accounts are tracked, the least recently seen down to 90%
    /// of it. Only accounts without a record, never at `monitor` or above,
    /// unlinked, without partner-indicator matches and not kept by `keep`
    /// are forgotten (see [`Engine::forgettable`]); what they sent counts
    /// again from zero if they return. Returns the ids forgotten.
    ///
    /// Costs a pass over the accounts: call it now and then, not per event.
    pub fn forget_idle(
        &mut self,
        now_ms: i64,
        idle_ms: i64,
        max_live: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Vec<String> {
        let names = self.engine.names();
        let mut cand: Vec<(i64, u32)> = (0..names.len() as u32)
            .filter(|&i| self.engine.forgettable(i))
            .filter(|&i| {
                let name = &names[i as usize];
                !keep(name)
                    && !self.intel_hits.contains_key(name)
                    && self
                        .link_of
                        .get(i as usize)
                        .is_none_or(|&li| li == NO_LINK || self.links.forgettable(li))
            })
            .map(|i| (self.engine.last_seen(i), i))
            .collect();
        cand.sort_unstable();
        let live = self.engine.live_accounts();
        let over = if live > max_live {
            live - max_live * 9 / 10
        } else {
            0
        };
        let cutoff = now_ms.saturating_sub(idle_ms);
        let mut out = Vec::new();
        for (last, i) in cand {
            if last >= cutoff && out.len() >= over {
                break;
            }
            let name = self.engine.names()[i as usize].clone();
            if let Some(li) = self.link_of.get_mut(i as usize)
                && *li != NO_LINK
            {
                let l = std::mem::replace(li, NO_LINK);
                self.links.forget(l, &name);
            }
            if self.engine.forget(i) {
                out.push(name);
            }
        }
        out
    }

    /// The one membership rule: when the account (by linker index) is
    /// blocked with a confirmed campaign, `max(joined, confirmed)`.
    pub fn campaign_at(&mut self, li: u32) -> Option<Timestamp> {
        self.links.campaign_at(li)
    }

    /// Accounts in confirmed campaigns, when membership moved since the
    /// last call (a live user re-reads it then; quiet members are blocked
    /// on their next request).
    pub fn campaign_members_if_moved(&mut self) -> Option<Vec<String>> {
        self.links.members_if_moved()
    }

    /// The confirmed campaigns now: their report ids and member counts.
    pub fn campaign_summaries(&mut self) -> Vec<(String, u32)> {
        self.links.summaries()
    }

    /// Every linked group of two or more accounts: member ids, pooled
    /// evidence, and whether it is a confirmed campaign.
    pub fn groups(&mut self) -> Vec<(Vec<String>, f64, bool)> {
        self.links.groups()
    }

    /// What a cluster's linker needs of a request folded by
    /// [`Pipeline::process`]: its keys and the engine's judgement after it
    /// (`distillguard link` folds these from every worker).
    pub fn link_record(&self, r: &Record, out: &Outcome, id: Option<&str>) -> LinkRecord {
        let p = &r.pre;
        LinkRecord {
            id: id.map(str::to_string),
            account: p.account_id.clone(),
            ts: p.ts,
            keys: r.keys.clone(),
            info: p.account.clone(),
            output_tokens: p.output_tokens,
            capability: p.capability as u8,
            risk: out.risk,
            flagged: self.engine.is_flagged(out.account),
        }
    }

    /// The report at the end of a log: dormant accounts (records that
    /// never sent a request) join their campaigns, then [`Pipeline::report`].
    pub fn finish(mut self, all: bool) -> Report {
        self.links.link_dormant();
        self.report(all)
    }

    /// The report so far: accounts (with campaign membership applied) and
    /// campaigns. Folding may go on afterwards (the live console's view).
    pub fn report(&mut self, all: bool) -> Report {
        if !self.links.enabled() {
            let intel = &self.intel_hits;
            let mut report = self
                .engine
                .report_including(all, &|a| intel.contains_key(a));
            self.apply_intel(&mut report);
            return report;
        }
        let names: Vec<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
        let camps = self.links.campaigns(&names);
        // Accounts whose verdict campaigns or partner indicators may raise
        // are built into the report; the others only when flagged or `all`.
        let members: std::collections::HashSet<&str> = camps
            .iter()
            .flat_map(|c| c.accounts.iter().map(String::as_str))
            .collect();
        let intel = &self.intel_hits;
        let mut report = self
            .engine
            .report_including(all, &|a| members.contains(a) || intel.contains_key(a));
        self.apply_intel(&mut report);
        self.links.apply(&mut report, &camps);
        if !all {
            report.accounts.retain(|a| a.verdict != Verdict::Allow);
        }
        report.accounts.sort_by(|a, b| {
            b.verdict
                .is_flagged()
                .cmp(&a.verdict.is_flagged())
                .then(b.risk.total_cmp(&a.risk))
                .then(a.account_id.cmp(&b.account_id))
        });
        // Verdict counts after campaigns raised some.
        let mut counts: HashMap<Verdict, u64> = HashMap::new();
        for a in &report.accounts {
            *counts.entry(a.verdict).or_default() += 1;
        }
        for v in [Verdict::Monitor, Verdict::Throttle, Verdict::Block] {
            report.stats.insert(
                format!("verdict_{}", v.as_str()),
                counts.get(&v).copied().unwrap_or(0).into(),
            );
        }
        let linked: usize = report.campaigns.iter().map(|c| c.accounts.len()).sum();
        report
            .stats
            .insert("campaigns".into(), (report.campaigns.len() as u64).into());
        report
            .stats
            .insert("campaign_accounts".into(), (linked as u64).into());
        report
    }

    /// Accounts that matched partner indicators gain a reason naming them,
    /// and at least "monitor".
    fn apply_intel(&self, report: &mut Report) {
        if self.intel_hits.is_empty() {
            return;
        }
        for a in &mut report.accounts {
            let Some(hits) = self.intel_hits.get(&a.account_id) else {
                continue;
            };
            let names: Vec<String> = hits
                .iter()
                .map(|(s, n)| {
                    let src = &self.intel_sources[*s as usize];
                    if *n == 0 {
                        format!("'{}' ({}) on its account record", src.name, src.id)
                    } else {
                        format!("'{}' ({}) on {n} requests", src.name, src.id)
                    }
                })
                .collect();
            a.reasons.insert(
                0,
                Reason {
                    signal: "intel".into(),
                    value: hits.len() as f64,
                    contribution: 0.0,
                    detail: format!("matches partner indicator {}", names.join(", ")),
                },
            );
            if a.verdict < Verdict::Monitor {
                a.verdict = Verdict::Monitor;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use distillguard_detect::engine::Weights;

    /// A quiet request of `account` on `key`, `ts_s` minutes in.
    pub(crate) fn line(ts_s: i64, account: &str, key: &str) -> Event {
        let text = format!(
            r#"{{"ts":"{}","account_id":"{account}","api_key_id":"{key}","request":{{"model":"m","messages":[{{"role":"user","content":"what should I cook tonight, take {ts_s}"}}]}}}}"#,
            Timestamp(1_771_200_000_000 + ts_s * 60_000)
        );
        distillguard_core::parse_event_line(&text).unwrap()
    }

    #[test]
    fn the_report_lists_what_was_flagged_unless_asked_for_all() {
        // Two quiet accounts with two keys each: nothing flagged, so the
        // report lists no account and no key (at a million accounts the
        // unflagged keys alone were gigabytes), and `all` lists them all.
        let run = |all: bool| {
            let w = Weights::embedded();
            let engine = Engine::new(&w, w.thresholds, &[], HashMap::new());
            let intel = Intel::default();
            let mut p = Pipeline::new(engine, Default::default(), &HashMap::new(), &intel);
            let per = PerRequest {
                intel: &intel,
                link_keys: true,
            };
            for t in 0..6 {
                for a in ["ann", "bob"] {
                    let e = line(t, a, &format!("{a}_key_{}", t % 2));
                    p.process(&record(&e, &per));
                }
            }
            p.finish(all)
        };
        let quiet = run(false);
        assert!(
            quiet.accounts.is_empty() && quiet.keys.is_empty(),
            "{:?}",
            quiet.keys
        );
        let every = run(true);
        assert_eq!(every.accounts.len(), 2);
        assert_eq!(every.keys.len(), 4);
    }

    /// A pipeline over `accounts` records, with `monitor` as threshold.
    fn pipeline(accounts: &HashMap<String, AccountInfo>, monitor: f64) -> Pipeline {
        let w = Weights::embedded();
        let mut t = w.thresholds;
        t.monitor = monitor;
        let engine = Engine::new(&w, t, &[], accounts.clone());
        Pipeline::new(engine, Default::default(), accounts, &Intel::default())
    }

    fn feed(p: &mut Pipeline, account: &str, minutes: std::ops::Range<i64>) {
        let intel = Intel::default();
        let per = PerRequest {
            intel: &intel,
            link_keys: true,
        };
        for t in minutes {
            p.process(&record(&line(t, account, &format!("{account}_key")), &per));
        }
    }

    const T0: i64 = 1_771_200_000_000;
    const MINUTE: i64 = 60_000;

    #[test]
    fn idle_harmless_accounts_are_forgotten_and_their_places_reused() {
        let mut records = HashMap::new();
        records.insert("rec".to_string(), AccountInfo::default());
        let mut p = pipeline(&records, 0.5);
        feed(&mut p, "ann", 0..4);
        feed(&mut p, "rec", 0..4);
        feed(&mut p, "kept", 0..4);
        feed(&mut p, "bob", 100..104);
        let gone = p.forget_idle(T0 + 104 * MINUTE, 30 * MINUTE, 1_000, &|a| a == "kept");
        // Idle and harmless: ann. Not rec (it has a record), not kept (the
        // caller keeps it), not bob (active).
        assert_eq!(gone, vec!["ann".to_string()]);
        assert_eq!(p.engine().live_accounts(), 3);
        // A newcomer takes ann's place with a fresh history; ann returning
        // starts from zero.
        feed(&mut p, "cat", 104..106);
        feed(&mut p, "ann", 106..107);
        let ann = p.engine().names().iter().position(|n| n == "ann").unwrap();
        assert_eq!(p.engine().requests_of(ann as u32), 1);
        let cat = p.engine().names().iter().position(|n| n == "cat").unwrap();
        assert_eq!(p.engine().requests_of(cat as u32), 2);
        assert_eq!(p.engine().names().len(), 5, "cat reused ann's index");
        let report = p.finish(true);
        let mut ids: Vec<&str> = report
            .accounts
            .iter()
            .map(|a| a.account_id.as_str())
            .collect();
        ids.sort();
        assert_eq!(ids, ["ann", "bob", "cat", "kept", "rec"]);
        assert_eq!(report.stats.get("accounts_forgotten"), Some(&1u64.into()));
    }

    #[test]
    fn above_the_cap_the_least_recently_seen_go_first() {
        let mut p = pipeline(&HashMap::new(), 0.5);
        feed(&mut p, "a", 0..2);
        feed(&mut p, "b", 10..12);
        feed(&mut p, "c", 20..22);
        feed(&mut p, "d", 30..32);
        // Nothing is idle for a day, but 4 > 3 tracked: down to 90% of 3 (2).
        let gone = p.forget_idle(T0 + 40 * MINUTE, 86_400_000, 3, &|_| false);
        assert_eq!(gone, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(p.engine().live_accounts(), 2);
    }

    #[test]
    fn accounts_at_monitor_are_never_forgotten() {
        // With `monitor` at 0 every account is at it: nothing goes, even
        // far above the cap.
        let mut p = pipeline(&HashMap::new(), 0.0);
        feed(&mut p, "a", 0..2);
        feed(&mut p, "b", 0..2);
        let gone = p.forget_idle(T0 + 10_000 * MINUTE, MINUTE, 1, &|_| false);
        assert!(gone.is_empty(), "{gone:?}");
        assert_eq!(p.engine().live_accounts(), 2);
    }
}
