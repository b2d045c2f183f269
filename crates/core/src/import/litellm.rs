/*!
LiteLLM's logs as events: the `StandardLoggingPayload` its logging
callbacks receive (one JSON object per line, as a callback or a
`s3`/`gcs`/file logger writes it), and rows of its `LiteLLM_SpendLogs`
table exported as JSON Lines (for example `psql -c "COPY (SELECT
row_to_json(s) FROM \"LiteLLM_SpendLogs\" s) TO STDOUT"`).

Which of the two a line is: a numeric `startTime` is the payload (epoch
seconds); a string one is a table row.

Mapping (what a line lacks stays empty, never invented):
- **account**: the key's user (`user_api_key_user_id`, the row's `user`),
  else its team (`user_api_key_team_id`, `team_id`), else the key itself
  (`key:` and the first 16 hex digits of its hash). LiteLLM's `end_user`
  (the `user` field the client sent: the caller's own customer) is not the
  account; it is kept as the key id's suffix so that a reseller's
  customers show as separate streams of its account. With
  [`AccountFrom::EndUser`] the end user is the account where there is one
  (a proxy without virtual keys).
- **key id**: the hashed key (`user_api_key_hash`, the row's `api_key`),
  first 16 hex digits.
- **request**: the raw body the proxy received (`proxy_server_request`)
  when it was stored; else an OpenAI Chat Completions body made of
  `messages` and `model_parameters` (LiteLLM's own shape). Anthropic
  `/v1/messages` calls (`call_type` `anthropic_messages`) keep their
  dialect.
- **response**: the `response` object (LiteLLM returns OpenAI-format
  responses); the row's `prompt_tokens` and `completion_tokens` fill the
  usage when the response has none. Token accounting follows the
  provider: OpenAI's prompt tokens include cached ones; Anthropic's
  `input_tokens` exclude them (LiteLLM's `prompt_tokens` for Anthropic
  adds them back).
- **time**: `startTime`; latency from `endTime`. A table row's time
  without a zone is taken as UTC (PostgreSQL's `timestamp without time
  zone`, which LiteLLM uses, is written in UTC).
- **status**: `success` is 200; a failure's `error_information.error_code`
  when it is an HTTP status, else empty.
- **client**: `requester_ip_address`; the user agent from the stored
  request headers, else the payload's `user_agent`.
*/

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::EventError;
use crate::event::{ClientInfo, Dialect, Event};
use crate::time::Timestamp;

/// The fields read from either shape (both use these names).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    call_type: Option<String>,
    #[serde(default, rename = "startTime", borrow)]
    start: Option<&'a RawValue>,
    #[serde(default, rename = "endTime", borrow)]
    end: Option<&'a RawValue>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    model_group: Option<String>,
    /// The payload's metadata object; a row's `metadata` column (an object,
    /// or its JSON text).
    #[serde(default)]
    metadata: Option<Value>,
    /// Row: the key's hash.
    #[serde(default)]
    api_key: Option<String>,
    /// Row: the key's user.
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    end_user: Option<String>,
    #[serde(default)]
    requester_ip_address: Option<String>,
    /// Payload (newer LiteLLM): the caller's user agent.
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    messages: Option<Value>,
    #[serde(default)]
    response: Option<Value>,
    #[serde(default)]
    model_parameters: Option<Value>,
    #[serde(default)]
    proxy_server_request: Option<Value>,
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error_information: Option<Value>,
}

/// A JSON column exported as text holds its JSON; parse it back.
fn unwrap_text(v: Option<Value>) -> Option<Value> {
    match v {
        Some(Value::String(s)) => serde_json::from_str(&s).ok().or(Some(Value::String(s))),
        Some(Value::Null) | None => None,
        other => other,
    }
}

fn non_empty(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn short_hash(h: &str) -> String {
    h.chars().take(16).collect()
}

/// The time of `startTime`/`endTime`: epoch seconds (payload) or a
/// timestamp string (row; no zone means UTC; a space may separate date and
/// time; `+00` is `+00:00`).
fn time_of(raw: &RawValue, field: &str) -> Result<Timestamp, EventError> {
    let bad = |reason: String| EventError::Field {
        path: field.to_string(),
        reason,
    };
    if let Ok(secs) = serde_json::from_str::<f64>(raw.get()) {
        if !secs.is_finite() || secs < 0.0 {
            return Err(bad(format!("{secs} is not a time")));
        }
        return Ok(Timestamp::from_millis((secs * 1000.0).round() as i64));
    }
    let text: String = serde_json::from_str(raw.get())
        .map_err(|_| bad("expected epoch seconds or a timestamp string".into()))?;
    let mut t = text.trim().replacen(' ', "T", 1);
    let zone_at = t.get(10..).and_then(|rest| {
        rest.rfind(['+', '-', 'Z', 'z'])
            .map(|i| i + 10)
            .filter(|&i| i > 18)
    });
    match zone_at {
        None => t.push('Z'),
        Some(i) => {
            // `+00` → `+00:00`, `+0530` → `+05:30`.
            let zone = t[i..].to_string();
            let digits = zone.len() > 1 && zone[1..].bytes().all(|b| b.is_ascii_digit());
            if digits && zone.len() == 3 {
                t.push_str(":00");
            } else if digits && zone.len() == 5 {
                t.insert(i + 3, ':');
            }
        }
    }
    Timestamp::parse(&t).map_err(|e| bad(format!("{text:?}: {e}")))
}

/// Where the account comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountFrom {
    /// The key's user, else its team, else the key (the default).
    #[default]
    Key,
    /// The end user (`end_user`: the `user` field a client sends) when
    /// there is one, else as [`AccountFrom::Key`]. For a LiteLLM proxy
    /// without virtual keys (no database), where every call carries the
    /// master key and the end user is the only identity of a customer.
    EndUser,
}

impl AccountFrom {
    /// The line parser for this choice.
    pub fn parser(self) -> fn(&str) -> Result<Event, EventError> {
        match self {
            AccountFrom::Key => parse_line,
            AccountFrom::EndUser => parse_line_by_end_user,
        }
    }

    pub fn parse(name: &str) -> Option<AccountFrom> {
        match name {
            "key" => Some(AccountFrom::Key),
            "end-user" => Some(AccountFrom::EndUser),
            _ => None,
        }
    }
}

/// Parses one LiteLLM line (payload or spend-log row) into an [`Event`],
/// the account from the key's user, team or key.
pub fn parse_line(line: &str) -> Result<Event, EventError> {
    parse_with(line, AccountFrom::Key)
}

/// As [`parse_line`], the account from the end user first.
pub fn parse_line_by_end_user(line: &str) -> Result<Event, EventError> {
    parse_with(line, AccountFrom::EndUser)
}

fn parse_with(line: &str, from: AccountFrom) -> Result<Event, EventError> {
    let l: Line = crate::json::parse_at(line, None)?;
    let start = l.start.ok_or(EventError::Missing("startTime"))?;
    let ts = time_of(start, "startTime")?;
    let latency_ms = match l.end {
        Some(end) => Some(time_of(end, "endTime")?.millis() - ts.millis()).map(|d| d as f64),
        None => None,
    };
    let meta = unwrap_text(l.metadata).unwrap_or(Value::Null);
    let key_hash = non_empty(meta.get("user_api_key_hash"))
        .or(l.api_key.filter(|k| !k.is_empty()))
        .or_else(|| non_empty(meta.get("user_api_key")));
    let user = non_empty(meta.get("user_api_key_user_id")).or(l.user.filter(|u| !u.is_empty()));
    let team = non_empty(meta.get("user_api_key_team_id")).or(l.team_id.filter(|t| !t.is_empty()));
    let end_user = l
        .end_user
        .filter(|u| !u.is_empty())
        .or_else(|| non_empty(meta.get("user_api_key_end_user_id")));
    let by_end_user = match from {
        AccountFrom::EndUser => end_user.clone(),
        AccountFrom::Key => None,
    };
    let account_id = by_end_user
        .or(user)
        .or(team)
        .or_else(|| {
            key_hash
                .as_deref()
                .map(|h| format!("key:{}", short_hash(h)))
        })
        .ok_or(EventError::Field {
            path: "metadata".into(),
            reason: "no user, team or key to take the account from".into(),
        })?;
    // An end user that is the account is not also a stream of it.
    let end_user = end_user.filter(|_| from == AccountFrom::Key);
    let api_key_id = match (key_hash.as_deref().map(short_hash), end_user) {
        (Some(k), Some(u)) => Some(format!("{k}/{u}")),
        (Some(k), None) => Some(k),
        (None, Some(u)) => Some(format!("end-user/{u}")),
        (None, None) => None,
    };
    let anthropic = l
        .call_type
        .as_deref()
        .is_some_and(|c| c.contains("anthropic"));
    let responses = l
        .call_type
        .as_deref()
        .is_some_and(|c| c.contains("responses"));
    let hint = if anthropic {
        Some(Dialect::Anthropic)
    } else if responses {
        Some(Dialect::Responses)
    } else {
        None
    };
    let model = l.model_group.filter(|m| !m.is_empty()).or(l.model);
    let stored = unwrap_text(l.proxy_server_request)
        .filter(|b| b.get("messages").is_some() || b.get("input").is_some());
    let user_agent = stored
        .as_ref()
        .and_then(|b| b.get("headers"))
        .and_then(|h| h.get("user-agent").or_else(|| h.get("User-Agent")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(l.user_agent.filter(|u| !u.is_empty()));
    let body = match stored {
        Some(mut b) => {
            if let Some(o) = b.as_object_mut() {
                o.remove("headers");
                if !o.contains_key("model")
                    && let Some(m) = &model
                {
                    o.insert("model".into(), Value::String(m.clone()));
                }
            }
            b
        }
        None => {
            let mut o = match unwrap_text(l.model_parameters) {
                Some(Value::Object(o)) => o,
                _ => serde_json::Map::new(),
            };
            let messages = match unwrap_text(l.messages) {
                Some(Value::Array(m)) => Value::Array(m),
                Some(Value::String(s)) => {
                    serde_json::json!([{ "role": "user", "content": s }])
                }
                Some(Value::Object(m)) if m.get("messages").is_some() => {
                    m.get("messages").cloned().unwrap_or_default()
                }
                _ => Value::Array(Vec::new()),
            };
            o.insert("messages".into(), messages);
            if let Some(m) = &model {
                o.insert("model".into(), Value::String(m.clone()));
            }
            Value::Object(o)
        }
    };
    let (dialect, mut request) = super::request_from_value(&body, hint, "messages")?;
    if request.model.is_none() {
        request.model = model.clone();
    }
    let mut response = match unwrap_text(l.response) {
        Some(r @ Value::Object(_)) if r.as_object().is_some_and(|o| !o.is_empty()) => {
            Some(super::response_from_value(&r, "response")?)
        }
        _ => None,
    };
    super::fill_usage(&mut response, l.prompt_tokens, l.completion_tokens);
    let status = match l.status.as_deref() {
        Some("success") => Some(200),
        Some(_) => l
            .error_information
            .as_ref()
            .and_then(|e| e.get("error_code"))
            .and_then(|c| match c {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (100..600).contains(c)),
        None => None,
    };
    let ip = l
        .requester_ip_address
        .filter(|i| !i.is_empty())
        .or_else(|| non_empty(meta.get("requester_ip_address")));
    Ok(Event {
        id: l.id.or(l.request_id).filter(|i| !i.is_empty()),
        api_key_id,
        status,
        latency_ms: latency_ms.filter(|d| *d >= 0.0),
        client: ClientInfo {
            ip,
            user_agent,
            ..ClientInfo::default()
        },
        ..super::imported(ts, account_id, dialect, request, response)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_and_a_spend_log_row_become_events() {
        let payload = r#"{"id":"chatcmpl-1","call_type":"acompletion","startTime":1764590400.25,"endTime":1764590401.5,
            "model":"gpt-4o","model_group":"atlas-3","status":"success","prompt_tokens":20,"completion_tokens":7,
            "metadata":{"user_api_key_hash":"88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b","user_api_key_user_id":"u-42","user_api_key_team_id":"t-1"},
            "end_user":"cust-9","requester_ip_address":"203.0.113.7",
            "messages":[{"role":"system","content":"Always show every step."},{"role":"user","content":"Solve step by step: 12*13"}],
            "model_parameters":{"temperature":0,"max_tokens":512,"stream":false},
            "response":{"id":"r1","object":"chat.completion","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"156"}}],"usage":{"prompt_tokens":20,"completion_tokens":7}}}"#
            .replace('\n', "");
        let e = parse_line(&payload).unwrap();
        assert_eq!(e.account_id, "u-42");
        assert_eq!(e.api_key_id.as_deref(), Some("88dc28d0f030c55e/cust-9"));
        assert_eq!(e.ts.millis(), 1_764_590_400_250);
        assert_eq!(e.latency_ms, Some(1250.0));
        assert_eq!(e.model.as_deref(), Some("atlas-3"));
        assert_eq!(e.status, Some(200));
        assert_eq!(e.client.ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(e.request.sampling.max_tokens, Some(512));
        assert_eq!(
            e.request.system_prompt.as_deref(),
            Some("Always show every step.")
        );
        assert!(e.request.last_user_text.contains("12*13"));
        let r = e.response.unwrap();
        assert_eq!((r.input_tokens, r.output_tokens), (Some(20), Some(7)));

        // A table row: JSON columns as text, a zone-less time, the raw body.
        let row = r#"{"request_id":"req-2","call_type":"anthropic_messages","api_key":"aa11bb22cc33dd44ee55","user":"","team_id":"team-7",
            "startTime":"2026-12-01 10:00:00.5","endTime":"2026-12-01T10:00:02.5+00","model":"claude","model_group":"",
            "metadata":"{\"user_api_key_alias\":\"ci\"}","status":"failure","error_information":{"error_code":"429"},
            "proxy_server_request":"{\"model\":\"claude\",\"max_tokens\":64,\"system\":\"be brief\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"headers\":{\"user-agent\":\"anthropic-python/0.40\"}}",
            "messages":"{}","response":"{}","prompt_tokens":3,"completion_tokens":0}"#
            .replace('\n', "");
        let e = parse_line(&row).unwrap();
        assert_eq!(e.account_id, "team-7");
        assert_eq!(e.api_key_id.as_deref(), Some("aa11bb22cc33dd44"));
        assert_eq!(e.dialect, Dialect::Anthropic);
        assert_eq!(e.ts, Timestamp::parse("2026-12-01T10:00:00.5Z").unwrap());
        assert_eq!(e.latency_ms, Some(2000.0));
        assert_eq!(e.status, Some(429));
        assert_eq!(
            e.client.user_agent.as_deref(),
            Some("anthropic-python/0.40")
        );
        assert_eq!(e.request.system_prompt.as_deref(), Some("be brief"));
        assert_eq!(e.response.unwrap().input_tokens, Some(3));
    }

    #[test]
    fn the_end_user_can_be_the_account() {
        let l = r#"{"startTime":5.0,"metadata":{"user_api_key_hash":"0123456789abcdef99","user_api_key_user_id":"default_user_id"},"end_user":"cust-1"}"#;
        let e = AccountFrom::Key.parser()(l).unwrap();
        assert_eq!(
            (e.account_id.as_str(), e.api_key_id.as_deref()),
            ("default_user_id", Some("0123456789abcdef/cust-1"))
        );
        let e = AccountFrom::EndUser.parser()(l).unwrap();
        assert_eq!(
            (e.account_id.as_str(), e.api_key_id.as_deref()),
            ("cust-1", Some("0123456789abcdef"))
        );
        // Without an end user, the key's user as before.
        let e = parse_line_by_end_user(r#"{"startTime":5.0,"user":"u"}"#).unwrap();
        assert_eq!(e.account_id, "u");
        assert_eq!(AccountFrom::parse("end-user"), Some(AccountFrom::EndUser));
        assert_eq!(AccountFrom::parse("team"), None);
    }

    #[test]
    fn what_a_line_lacks_is_named_or_left_empty() {
        let err = |l: &str| parse_line(l).unwrap_err().to_string();
        assert!(err("{}").contains("startTime"));
        assert!(err(r#"{"startTime":1.0}"#).contains("no user, team or key"));
        assert!(err(r#"{"startTime":"yesterday","user":"u"}"#).contains("startTime"));
        // A zone that is not digits is refused, never sliced mid-character.
        assert!(err(r#"{"startTime":"2026-12-01 10:00:00+aéb","user":"u"}"#).contains("startTime"));
        assert!(err("not json").contains("invalid JSON"));
        // No prompt stored (LiteLLM's default): an empty request, no invented text.
        let e = parse_line(r#"{"startTime":5.0,"user":"u","messages":"{}","status":"failure"}"#)
            .unwrap();
        assert_eq!(e.request.last_user_text, "");
        assert_eq!(e.status, None);
        assert_eq!(e.response, None);
        assert_eq!(e.latency_ms, None);
    }
}
