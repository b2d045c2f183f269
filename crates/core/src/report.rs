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
