/*!
A request as the linker sees it, on its own: the account, the request's
keys and the engine's judgement after it. Detector workers of a cluster
each score the accounts of their own partitions; a campaign spread over
partitions is found by one linker that folds every worker's link records
(`distillguard link`, see `docs/scale.md`). A record is about 200–400
bytes of JSON and carries no prompt text: keys are hashes, labels are
exits, client stacks and fingerprints.
*/

use distillguard_core::{AccountInfo, Timestamp};
use serde::{Deserialize, Serialize};

use crate::keys::Key;
use crate::linker::Activity;

/// One request's link summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRecord {
    /// The event's id (a linker folds each id once: a rebuilt worker
    /// sends its records again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub account: String,
    pub ts: Timestamp,
    pub keys: Vec<Key>,
    /// The account record, when the event carried one (read at the
    /// account's first request, as in one process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<AccountInfo>,
    pub output_tokens: u32,
    pub capability: u8,
    /// The account's risk after the request (account or key, the higher).
    pub risk: f64,
    /// Flagged by the engine on its own (throttle or above).
    pub flagged: bool,
}

impl LinkRecord {
    /// What [`crate::Linker::observe`] takes besides the keys.
    pub fn activity(&self) -> Activity {
        Activity {
            ts: self.ts,
            output_tokens: self.output_tokens,
            capability: self.capability,
            risk: self.risk,
            flagged: self.flagged,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keys::{Kind, Label};

    #[test]
    fn a_record_round_trips_through_json() {
        let r = LinkRecord {
            id: Some("ev_1".into()),
            account: "acct_1".into(),
            ts: Timestamp(1_771_200_000_000),
            keys: vec![
                Key {
                    kind: Kind::Ip,
                    key: u64::MAX - 3,
                    label: Label::Ip("2001:db8::7".parse().unwrap()),
                },
                Key {
                    kind: Kind::Synchrony,
                    key: 7,
                    label: Label::Sync(u64::MAX, -2),
                },
                Key {
                    kind: Kind::Client,
                    key: 9,
                    label: Label::Text("AS1 · curl · -".into()),
                },
            ],
            info: Some(AccountInfo {
                payment_fingerprint: Some("pm_1".into()),
                ..Default::default()
            }),
            output_tokens: 512,
            capability: 2,
            risk: 0.75,
            flagged: true,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        let back: LinkRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
        // A field this build does not know is refused, with its name.
        let bad = line.replacen("{", "{\"extra\":1,", 1);
        let e = serde_json::from_str::<LinkRecord>(&bad).unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
    }
}
