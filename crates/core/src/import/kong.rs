/*!
Kong AI Gateway's logs as events: one JSON object per line, as Kong's
logging plugins (file-log, http-log, …) write each proxied request, with
the `ai` object its AI plugins add (the "AI audit log").

Mapping (what a line lacks stays empty, never invented):
- **account**: the Kong consumer (`consumer.username`, else `custom_id`,
  else `id`): the customer a credential belongs to. A line without a
  consumer (an unauthenticated route) is a bad line, named.
- **key id**: the credential (`authenticated_entity.id`).
- **request**: the request payload the AI plugin logged
  (`ai.payload.request`, or `ai.<plugin>.payload.request` in later
  versions; JSON text or an object). It is logged only with the plugin's
  `logging.log_payloads`; without it the body is empty and only its model
  (`ai.<plugin>.meta.request_model`) is known.
- **response**: `ai.<plugin>.payload.response` when logged; token counts
  from `ai.<plugin>.usage` (`prompt_tokens`/`completion_tokens`, or the
  singular `prompt_token`/`completion_token` of Kong 3.6–3.8).
- **dialect**: Anthropic when `meta.provider_name` is `anthropic` and the
  payload is in its format; else read by shape.
- **time**: `started_at` (epoch milliseconds); latency `latencies.request`.
- **client**: `client_ip`; the user agent from `request.headers`.
- **status**: `response.status`.
*/

use serde_json::{Map, Value};

use crate::error::EventError;
use crate::event::{ClientInfo, Dialect, Event};
use crate::time::Timestamp;

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

fn u64_at(v: &Value, key: &[&str]) -> Option<u64> {
    key.iter().find_map(|k| v.get(*k).and_then(Value::as_u64))
}

/// The AI plugin's entry of `ai` (the one with `meta`), and its name.
fn plugin(ai: &Map<String, Value>) -> Option<(&str, &Value)> {
    ai.iter()
        .find(|(_, v)| v.get("meta").is_some() || v.get("usage").is_some())
        .map(|(k, v)| (k.as_str(), v))
}

/// Parses one Kong log line into an [`Event`].
pub fn parse_line(line: &str) -> Result<Event, EventError> {
    let v: Value = crate::json::parse_at(line, None)?;
    let started = v
        .get("started_at")
        .and_then(Value::as_i64)
        .ok_or(EventError::Missing("started_at"))?;
    let ai = v
        .get("ai")
        .and_then(Value::as_object)
        .ok_or(EventError::Field {
            path: "ai".into(),
            reason: "no AI plugin log (an AI Proxy route logs an `ai` object)".into(),
        })?;
    let (name, entry) = plugin(ai).ok_or(EventError::Field {
        path: "ai".into(),
        reason: "no AI plugin entry with `meta` or `usage`".into(),
    })?;
    let account_id = ["username", "custom_id", "id"]
        .iter()
        .find_map(|k| str_at(&v, &["consumer", k]))
        .map(str::to_string)
        .ok_or(EventError::Field {
            path: "consumer".into(),
            reason: "no consumer (the account): the route is not authenticated".into(),
        })?;
    let meta = entry.get("meta").cloned().unwrap_or(Value::Null);
    let model = str_at(&meta, &["request_model"]).map(str::to_string);
    let anthropic = str_at(&meta, &["provider_name"]).is_some_and(|p| p.contains("anthropic"));
    let body = super::logged_body(ai.get("payload").and_then(|p| p.get("request")))
        .or_else(|| super::logged_body(entry.get("payload").and_then(|p| p.get("request"))));
    let hint = anthropic.then_some(Dialect::Anthropic);
    let (dialect, request) =
        super::logged_request(body, model.as_deref(), hint, "ai.payload.request")?;
    let mut response =
        match super::logged_body(entry.get("payload").and_then(|p| p.get("response"))) {
            Some(r @ Value::Object(_)) => Some(super::response_from_value(
                &r,
                &format!("ai.{name}.payload.response"),
            )?),
            _ => None,
        };
    if let Some(usage) = entry.get("usage") {
        let count = |keys: &[&str]| u64_at(usage, keys).and_then(|n| u32::try_from(n).ok());
        super::fill_usage(
            &mut response,
            count(&["prompt_tokens", "prompt_token"]),
            count(&["completion_tokens", "completion_token"]),
        );
    }
    let headers = v.get("request").and_then(|r| r.get("headers"));
    let user_agent = headers
        .and_then(|h| h.get("user-agent"))
        .and_then(|u| match u {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_string),
            _ => None,
        });
    let model = request.model.clone().or(model);
    Ok(Event {
        id: str_at(&v, &["request", "id"]).map(str::to_string),
        api_key_id: str_at(&v, &["authenticated_entity", "id"]).map(str::to_string),
        model,
        status: v
            .get("response")
            .and_then(|r| r.get("status"))
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok()),
        latency_ms: v
            .get("latencies")
            .and_then(|l| l.get("request"))
            .and_then(Value::as_f64),
        client: ClientInfo {
            ip: str_at(&v, &["client_ip"]).map(str::to_string),
            user_agent,
            ..ClientInfo::default()
        },
        ..super::imported(
            Timestamp::from_millis(started),
            account_id,
            dialect,
            request,
            response,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Kong's documented sample log object (file-log), with
    /// the AI Proxy's `ai` object and payload logging on.
    const LINE: &str = r#"{"workspace":"b4a1e9a2","source":"upstream","upstream_uri":"/v1/chat/completions","client_ip":"192.168.65.1","started_at":1787113201719,
        "request":{"id":"9ec9264afbbbad5fe5c64877d92eeb04","uri":"/v1/chat/completions","method":"POST","size":323,"headers":{"user-agent":"OpenAI/Python 1.54.0","content-type":"application/json"}},
        "response":{"status":200,"size":912},"latencies":{"request":1520,"kong":3,"proxy":1514},
        "consumer":{"id":"0c4d6c0f","username":"acme-research","custom_id":"acct_77"},"authenticated_entity":{"id":"cred-19","consumer_id":"0c4d6c0f"},
        "ai":{"payload":{"request":"{\"model\":\"gpt-4o\",\"max_tokens\":512,\"messages\":[{\"role\":\"system\",\"content\":\"Show every step.\"},{\"role\":\"user\",\"content\":\"Solve 12*13 step by step\"}]}"},
              "proxy":{"payload":{"response":"{\"id\":\"r\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"message\":{\"role\":\"assistant\",\"content\":\"156\"}}]}"},
                       "usage":{"prompt_token":28,"completion_token":14,"total_tokens":42,"cost":0.0},
                       "meta":{"request_model":"gpt-4o","provider_name":"openai","response_model":"gpt-4o-2024-08-06","plugin_id":"546c","llm_latency":1414}}}}"#;

    #[test]
    fn a_kong_ai_log_line_becomes_an_event() {
        let e = parse_line(&LINE.replace('\n', "")).unwrap();
        assert_eq!(e.account_id, "acme-research");
        assert_eq!(e.api_key_id.as_deref(), Some("cred-19"));
        assert_eq!(e.ts.millis(), 1_787_113_201_719);
        assert_eq!(e.latency_ms, Some(1520.0));
        assert_eq!(e.status, Some(200));
        assert_eq!(e.client.ip.as_deref(), Some("192.168.65.1"));
        assert_eq!(e.client.user_agent.as_deref(), Some("OpenAI/Python 1.54.0"));
        assert_eq!(e.request.system_prompt.as_deref(), Some("Show every step."));
        assert_eq!(e.request.sampling.max_tokens, Some(512));
        let r = e.response.unwrap();
        assert_eq!((r.input_tokens, r.output_tokens), (Some(28), Some(14)));
    }

    #[test]
    fn without_payloads_or_a_consumer() {
        // Payload logging off: the model and the usage, no text.
        let line = r#"{"started_at":5,"consumer":{"id":"c1"},"ai":{"proxy":{"usage":{"prompt_tokens":3,"completion_tokens":4},"meta":{"request_model":"claude-3","provider_name":"anthropic"}}}}"#;
        let e = parse_line(line).unwrap();
        assert_eq!(e.account_id, "c1");
        assert_eq!(e.model.as_deref(), Some("claude-3"));
        assert_eq!(e.request.last_user_text, "");
        assert_eq!(e.response.unwrap().output_tokens, Some(4));
        let err = |l: &str| parse_line(l).unwrap_err().to_string();
        assert!(err(r#"{"started_at":5,"ai":{"proxy":{"meta":{}}}}"#).contains("consumer"));
        assert!(err(r#"{"started_at":5,"consumer":{"id":"c"}}"#).contains("ai"));
        assert!(err(r#"{"consumer":{"id":"c"}}"#).contains("started_at"));
    }
}
