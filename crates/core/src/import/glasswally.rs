/*!
The labelled log shipped by Glasswally (MIT licence), one JSON object per
line: `account_id, timestamp, model, prompt, system_prompt, token_count,
max_tokens, client_ip, asn_number, asn_org, user_agent, h2_settings_fp,
campaign_label`.

Mapping: the prompt (and the system prompt) becomes an OpenAI Chat
Completions body with `model` and `max_tokens`; `token_count` is taken as the
response's output tokens (the source does not document it; it is far larger
than the prompts' lengths); `h2_settings_fp`, an HTTP/2 SETTINGS
fingerprint, fills `client.tls_fingerprint`, the transport-fingerprint slot.
An account is an attack account when any of its lines carries a
`campaign_label`.
*/

use serde::{Deserialize, Serialize};

use crate::error::EventError;
use crate::report::{Label, TruthRecord};
use crate::time::Timestamp;

/// One Glasswally record.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub account_id: String,
    pub timestamp: String,
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub token_count: Option<u32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub client_ip: Option<String>,
    #[serde(default)]
    pub asn_number: Option<u32>,
    #[serde(default)]
    pub asn_org: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub h2_settings_fp: Option<String>,
    #[serde(default)]
    pub campaign_label: Option<String>,
}

#[derive(Serialize)]
struct Msg<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    messages: Vec<Msg<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Serialize)]
struct Usage {
    completion_tokens: u32,
}

#[derive(Serialize)]
struct Resp {
    object: &'static str,
    usage: Usage,
}

#[derive(Serialize)]
struct Client<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asn_org: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_fingerprint: Option<&'a str>,
}

#[derive(Serialize)]
struct Line<'a> {
    id: String,
    ts: Timestamp,
    account_id: &'a str,
    endpoint: &'static str,
    request: Body<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Resp>,
    client: Client<'a>,
}

impl Record {
    /// The record's time (microseconds are truncated to milliseconds).
    pub fn ts(&self) -> Result<Timestamp, EventError> {
        Timestamp::parse(&self.timestamp).map_err(|e| EventError::Field {
            path: "timestamp".into(),
            reason: e.to_string(),
        })
    }

    /// The event-log line (without newline) for this record; `n` numbers it.
    pub fn to_event_line(&self, n: u64) -> Result<String, EventError> {
        self.to_event_line_at(n, self.ts()?)
    }

    /// The event-log line with its time replaced by `ts` (see [`spread`]).
    pub fn to_event_line_at(&self, n: u64, ts: Timestamp) -> Result<String, EventError> {
        if self.account_id.is_empty() {
            return Err(EventError::Field {
                path: "account_id".into(),
                reason: "must not be empty".into(),
            });
        }
        let mut messages = Vec::with_capacity(2);
        if let Some(s) = self.system_prompt.as_deref().filter(|s| !s.is_empty()) {
            messages.push(Msg {
                role: "system",
                content: s,
            });
        }
        messages.push(Msg {
            role: "user",
            content: &self.prompt,
        });
        let line = Line {
            id: format!("glasswally-{n}"),
            ts,
            account_id: &self.account_id,
            endpoint: "/v1/chat/completions",
            request: Body {
                model: self.model.as_deref(),
                messages,
                max_tokens: self.max_tokens,
            },
            response: self.token_count.map(|t| Resp {
                object: "chat.completion",
                usage: Usage {
                    completion_tokens: t,
                },
            }),
            client: Client {
                ip: self.client_ip.as_deref(),
                user_agent: self.user_agent.as_deref(),
                asn: self.asn_number,
                asn_org: self.asn_org.as_deref(),
                tls_fingerprint: self.h2_settings_fp.as_deref(),
            },
        };
        serde_json::to_string(&line).map_err(|e| EventError::Invalid(e.to_string()))
    }
}

/// The records' times stretched over `hours` from the first one, order
/// kept. Glasswally's log spans 0.11 s, so every timing signal is
/// meaningless on it as shipped; spread over a day, its accounts' requests
/// are as far apart as a day's traffic (records whose time does not parse
/// keep theirs: their line is refused later anyway).
pub fn spread(records: &[Record], hours: f64) -> Vec<Option<Timestamp>> {
    let ts: Vec<Option<Timestamp>> = records.iter().map(|r| r.ts().ok()).collect();
    let lo = ts.iter().flatten().map(|t| t.0).min().unwrap_or(0);
    let hi = ts.iter().flatten().map(|t| t.0).max().unwrap_or(0);
    let span = (hi - lo).max(1) as f64;
    let target = hours * 3_600_000.0;
    ts.into_iter()
        .map(|t| t.map(|t| Timestamp(lo + ((t.0 - lo) as f64 / span * target) as i64)))
        .collect()
}

/// Truth records from a set of records: attack if any line is labelled.
pub fn truth_of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<TruthRecord> {
    let mut by: std::collections::BTreeMap<&str, Option<&str>> = Default::default();
    for r in records {
        let e = by.entry(r.account_id.as_str()).or_insert(None);
        if e.is_none() {
            *e = r.campaign_label.as_deref();
        }
    }
    by.into_iter()
        .map(|(a, c)| TruthRecord {
            family: None,
            kind: None,
            bad_keys: None,
            account_id: a.to_string(),
            label: if c.is_some() {
                Label::Attack
            } else {
                Label::Benign
            },
            campaign: c.map(str::to_string),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::parse_event_line;

    const LINE: &str = r#"{"account_id": "sk-7a", "timestamp": "2026-02-27T20:08:29.150463+00:00", "model": "gpt-4o", "prompt": "Think out loud: how does a compiler work?", "system_prompt": "Act as an AI teacher.", "system_prompt_hash": "fde9", "token_count": 24, "max_tokens": 4096, "client_ip": "153.32.197.98", "asn_number": 24940, "asn_org": "Hetzner", "user_agent": "aiohttp/3.9.1", "h2_settings_fp": "2:32953:3:100", "campaign_label": "campaign_0002"}"#;

    #[test]
    fn converts_into_a_valid_event() {
        let r: Record = serde_json::from_str(LINE).unwrap();
        let e = parse_event_line(&r.to_event_line(7).unwrap()).unwrap();
        assert_eq!(e.account_id, "sk-7a");
        assert_eq!(e.ts.to_string(), "2026-02-27T20:08:29.150Z");
        assert_eq!(
            e.request.system_prompt.as_deref(),
            Some("Act as an AI teacher.")
        );
        assert_eq!(
            e.request.last_user_text,
            "Think out loud: how does a compiler work?"
        );
        assert_eq!(e.request.sampling.max_tokens, Some(4096));
        assert_eq!(e.response.unwrap().output_tokens, Some(24));
        assert_eq!(e.client.asn, Some(24940));
        assert_eq!(e.client.tls_fingerprint.as_deref(), Some("2:32953:3:100"));
        let t = truth_of([&r]);
        assert_eq!(
            (t[0].label, t[0].campaign.as_deref()),
            (Label::Attack, Some("campaign_0002"))
        );
    }

    #[test]
    fn bad_timestamps_name_the_field() {
        let r: Record =
            serde_json::from_str(&LINE.replace("2026-02-27T20:08:29.150463+00:00", "yesterday"))
                .unwrap();
        assert!(
            r.to_event_line(0)
                .unwrap_err()
                .to_string()
                .contains("`timestamp`")
        );
    }
}
