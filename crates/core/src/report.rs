/*!
The analysis report (`distillguard analyze --format json`) and the ground
truth (`truth.jsonl`) that the scoreboard compares it with.

The report is versioned; readers accept unknown fields so that later
versions can add to it without breaking older tools.
*/

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// What to do with an account, in increasing severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    #[default]
    Allow,
    Monitor,
    Throttle,
    Block,
}

impl Verdict {
    /// Throttle and above count as "flagged" (stopped, at least partly).
    pub fn is_flagged(self) -> bool {
        self >= Verdict::Throttle
    }

    /// The verdict a name (`allow` … `block`) stands for.
    pub fn parse(name: &str) -> Option<Verdict> {
        [
            Verdict::Allow,
            Verdict::Monitor,
            Verdict::Throttle,
            Verdict::Block,
        ]
        .into_iter()
        .find(|v| v.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Monitor => "monitor",
            Verdict::Throttle => "throttle",
            Verdict::Block => "block",
        }
    }
}

/// A name that is not a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a verdict (allow, monitor, throttle or block)")]
pub struct UnknownVerdict(pub String);

impl std::str::FromStr for Verdict {
    type Err = UnknownVerdict;

    fn from_str(s: &str) -> Result<Verdict, UnknownVerdict> {
        Verdict::parse(s).ok_or_else(|| UnknownVerdict(s.to_string()))
    }
}

/// One signal's part in an account's risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub signal: String,
    pub value: f64,
    pub contribution: f64,
    /// One line a human can check.
    pub detail: String,
}

/// One account's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountReport {
    pub account_id: String,
    pub risk: f64,
    pub verdict: Verdict,
    /// The `ts` of the event at which the account first reached throttle.
    #[serde(default)]
    pub flagged_at: Option<Timestamp>,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    #[serde(default)]
    pub campaign_id: Option<String>,
    /// Redacted prompt samples (only with `analyze --samples N`, flagged
    /// accounts only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
    /// The account's history (only with `analyze --timeline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
}

/// What the engine remembers of an account's history when asked to
/// (`analyze --timeline`, the live console), so that an analyst sees when
/// and why it escalated rather than a reconstruction. Bounded: at most
/// [`Timeline::MAX_ESCALATIONS`] escalations, [`Timeline::MAX_POINTS`] risk
/// points and [`Timeline::MAX_DAYS`] days.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Timeline {
    /// Every change of the verdict in force, with the reasons of that moment.
    #[serde(default)]
    pub escalations: Vec<Escalation>,
    /// The risk after a request, thinned evenly over the account's requests.
    #[serde(default)]
    pub risk: Vec<RiskPoint>,
    /// Requests per UTC hour of the day.
    #[serde(default)]
    pub hours: [u32; 24],
    /// Requests per UTC day (the latest [`Timeline::MAX_DAYS`] active days).
    #[serde(default)]
    pub days: Vec<DayCount>,
    /// The spacing of the kept risk points, in requests (not reported).
    #[serde(skip)]
    stride: u32,
}

impl Timeline {
    pub const MAX_ESCALATIONS: usize = 8;
    pub const MAX_POINTS: usize = 64;
    pub const MAX_DAYS: usize = 92;
    /// Reasons kept per escalation.
    pub const REASONS: usize = 4;

    /// Counts one request at `ts` into the hour and day histograms.
    pub fn count(&mut self, ts: Timestamp) {
        let day = ts.0.div_euclid(crate::time::MS_PER_DAY);
        let hour = (ts.0.rem_euclid(crate::time::MS_PER_DAY) / 3_600_000) as usize;
        if let Some(h) = self.hours.get_mut(hour) {
            *h = h.saturating_add(1);
        }
        let start = Timestamp(day * crate::time::MS_PER_DAY);
        match self.days.iter_mut().rev().find(|d| d.day == start) {
            Some(d) => d.requests = d.requests.saturating_add(1),
            None => {
                // Records come in time order (within the reorder window):
                // a new day goes at its place, the oldest falls off.
                let at = self.days.partition_point(|d| d.day < start);
                self.days.insert(
                    at,
                    DayCount {
                        day: start,
                        requests: 1,
                    },
                );
                if self.days.len() > Self::MAX_DAYS {
                    self.days.remove(0);
                }
            }
        }
    }

    /// Records the risk after the account's `requests`-th request. Points
    /// are kept every `stride` requests; when full, every other point is
    /// dropped and the stride doubles, so the series always spans the whole
    /// history in at most [`Timeline::MAX_POINTS`] points.
    pub fn record_risk(&mut self, ts: Timestamp, risk: f64, requests: u32) {
        let stride = self.stride.max(1);
        if requests != 1 && requests % stride != 0 {
            return;
        }
        if self.risk.len() >= Self::MAX_POINTS {
            let s = stride.saturating_mul(2);
            self.stride = s;
            self.risk.retain(|p| p.requests == 1 || p.requests % s == 0);
            if requests != 1 && requests % s != 0 {
                return;
            }
        }
        self.risk.push(RiskPoint {
            ts,
            risk: (risk * 1e4).round() / 1e4,
            requests,
        });
    }

    /// Records a change of verdict (the reasons are the top few, by
    /// contribution). The first escalations are kept; a later one
    /// replaces the last when full, so the verdict in force is never lost.
    pub fn escalate(&mut self, e: Escalation) {
        if self.escalations.len() >= Self::MAX_ESCALATIONS {
            self.escalations.pop();
        }
        self.escalations.push(e);
    }
}

/// One change of an account's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub ts: Timestamp,
    pub verdict: Verdict,
    pub risk: f64,
    /// Requests the account had sent by then.
    pub requests: u32,
    /// What raised it: "score", "key KEY", "campaign CAMPAIGN", "operator".
    pub by: String,
    /// The reasons in force at that moment (the top few).
    #[serde(default)]
    pub reasons: Vec<Reason>,
}

/// The risk after one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskPoint {
    pub ts: Timestamp,
    pub risk: f64,
    pub requests: u32,
}

/// Requests on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DayCount {
    /// The day's start.
    pub day: Timestamp,
    pub requests: u32,
}

/// One API key's verdict (or, for traffic without keys, one client: user
/// agent and system prompt). Keys are scored like accounts, on their own
/// traffic, so a reseller's harvesting key stands out from its customers'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyReport {
    /// The API key's id (`api_key_id` in the log), or a client label.
    pub key_id: String,
    pub account_id: String,
    pub risk: f64,
    pub verdict: Verdict,
    #[serde(default)]
    pub flagged_at: Option<Timestamp>,
    /// Requests seen on the key while it was tracked.
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub reasons: Vec<Reason>,
}

/// A linked group of accounts (filled by campaign linking).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    pub campaign_id: String,
    pub accounts: Vec<String>,
    #[serde(default)]
    pub detected_at: Option<Timestamp>,
    #[serde(default)]
    pub score: Option<f64>,
    /// Everything else a campaign report says (capabilities, indicators, …).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    #[serde(default)]
    pub stats: serde_json::Map<String, serde_json::Value>,
    pub accounts: Vec<AccountReport>,
    #[serde(default)]
    pub campaigns: Vec<CampaignReport>,
    /// Keys above `allow` (every tracked key with `--all`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyReport>,
}

/// Report versions this build reads.
pub const REPORT_VERSION: u32 = 1;

/// Ground-truth label of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Benign,
    Attack,
}

/// A line of `truth.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRecord {
    pub account_id: String,
    pub label: Label,
    #[serde(default)]
    pub campaign: Option<String>,
    /// The campaign's family (leave-one-family-out evaluation groups
    /// campaigns by it); absent: the campaign is its own family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// The account's harvesting API keys, when the log's maker knows
    /// them (an attack account's other keys carry honest traffic, as a
    /// reseller's customers' do). Absent: every key of an attack account
    /// harvests, and no key of an honest one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_keys: Option<Vec<String>>,
    /// What kind of account it is, when the log's maker knows (the
    /// simulator: `human`, `support_bot`, `tutoring`, …, or the family):
    /// for reading which honest look-alikes score highest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_stays_bounded_and_spans_the_whole_history() {
        let mut t = Timeline::default();
        let start = 1_771_200_000_000i64;
        for i in 1..=100_000u32 {
            let ts = Timestamp(start + i64::from(i) * 60_000);
            t.count(ts);
            t.record_risk(ts, f64::from(i) / 100_000.0, i);
        }
        assert!(t.risk.len() <= Timeline::MAX_POINTS, "{}", t.risk.len());
        assert!(t.risk.len() >= Timeline::MAX_POINTS / 2);
        assert_eq!(t.risk[0].requests, 1);
        // The last point is near the end: the series spans the history.
        let last = t.risk.last().unwrap().requests;
        assert!(last > 100_000 - 100_000 / 32, "{last}");
        assert!(t.risk.windows(2).all(|w| w[0].requests < w[1].requests));
        // 100,000 minutes: 70 days, one request a minute.
        assert_eq!(t.days.len(), 70);
        assert_eq!(t.days.iter().map(|d| d.requests).sum::<u32>(), 100_000);
        assert_eq!(t.hours.iter().sum::<u32>(), 100_000);
        assert!(t.hours.iter().all(|&h| h > 4_000));
        for v in [Verdict::Monitor, Verdict::Throttle, Verdict::Block]
            .into_iter()
            .cycle()
            .take(20)
        {
            t.escalate(Escalation {
                ts: Timestamp(start),
                verdict: v,
                risk: 0.9,
                requests: 1,
                by: "score".into(),
                reasons: Vec::new(),
            });
        }
        assert_eq!(t.escalations.len(), Timeline::MAX_ESCALATIONS);
        assert_eq!(t.escalations[0].verdict, Verdict::Monitor);
        // The latest change is kept.
        assert_eq!(t.escalations.last().unwrap().verdict, Verdict::Throttle);
        let back: Timeline = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back.risk, t.risk);
        assert_eq!(back.days, t.days);
    }

    #[test]
    fn days_beyond_the_limit_drop_the_oldest() {
        let mut t = Timeline::default();
        for d in 0..(Timeline::MAX_DAYS as i64 + 10) {
            t.count(Timestamp(d * crate::time::MS_PER_DAY + 5));
        }
        assert_eq!(t.days.len(), Timeline::MAX_DAYS);
        assert_eq!(t.days[0].day, Timestamp(10 * crate::time::MS_PER_DAY));
        // A late request for a day already dropped is not re-added at the front
        // at the cost of a newer day.
        t.count(Timestamp(0));
        assert_eq!(t.days.len(), Timeline::MAX_DAYS);
    }

    #[test]
    fn report_round_trips_and_keeps_unknown_campaign_fields() {
        let text = r#"{"version":1,"stats":{"events":10},"accounts":[
            {"account_id":"a","risk":0.9,"verdict":"block","flagged_at":"2026-02-24T08:00:00Z",
             "reasons":[{"signal":"template_concentration","value":0.93,"contribution":0.4,"detail":"93% of 41,200 requests share 3 templates"}],
             "campaign_id":"c1","future":true}],
            "campaigns":[{"campaign_id":"c1","accounts":["a"],"capabilities":["coding"]}]}"#;
        let r: Report = serde_json::from_str(text).unwrap();
        assert_eq!(r.accounts[0].verdict, Verdict::Block);
        assert!(r.accounts[0].verdict.is_flagged());
        assert!(!Verdict::Monitor.is_flagged());
        assert_eq!(r.campaigns[0].extra["capabilities"][0], "coding");
        let again: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }
}
