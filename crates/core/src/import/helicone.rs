/*!
Helicone's request logs as events: its `HeliconeRequest` rows, as its
request API answers them (`POST /v1/request/query`, `GET
/v1/request/{id}` with `includeBody`) and as an export writes them: one
row per line, or an API answer (`{"data": [row, …]}`) per line.

Mapping (what a row lacks stays empty, never invented):
- **account**: `request_user_id` (the `Helicone-User-Id` the calling
  application sets for its user), else `helicone_user`. A row with
  neither is a bad line, named.
- **key id**: none (Helicone rows carry no key of the provider's); a
  `Helicone-Property-Key` custom property (`request_properties.Key` or
  `key`, or `properties`) fills it when the application sets one.
- **request**: `request_body` (present with bodies included; without it
  only the model is known). The dialect from `provider` (`ANTHROPIC`)
  or a `/v1/messages` `request_path`, else read by shape.
- **response**: `response_body`; token counts from `prompt_tokens` and
  `completion_tokens` where the body has none. Helicone counts prompt
  tokens as the provider reports them: OpenAI's include cached tokens,
  Anthropic's `input_tokens` exclude them (`prompt_cache_read_tokens`
  holds those).
- **time**: `request_created_at`; latency `delay_ms`; status
  `response_status`; model `request_model`, else `model`.
- **client**: `country_code` (Helicone's geolocation of the caller); no
  address or user agent is in a row.
*/

use serde_json::Value;

use crate::error::EventError;
use crate::event::{ClientInfo, Dialect, Event};
use crate::time::Timestamp;

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn count(v: &Value, key: &str) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_f64)
        .filter(|n| *n >= 0.0 && *n <= f64::from(u32::MAX))
        .map(|n| n as u32)
}

/// A custom property, by any of `names` (Helicone keeps their case).
fn property<'a>(v: &'a Value, names: &[&str]) -> Option<&'a str> {
    ["request_properties", "properties"]
        .iter()
        .find_map(|field| {
            let props = v.get(*field)?.as_object()?;
            names
                .iter()
                .find_map(|n| props.get(*n).and_then(Value::as_str))
                .filter(|s| !s.is_empty())
        })
}

/// One row into an event; its errors named under `at`.
fn row(v: &Value, at: &str) -> Result<Event, EventError> {
    let field = |name: &str| format!("{at}{name}");
    let created = text(v, "request_created_at").ok_or_else(|| EventError::Field {
        path: field("request_created_at"),
        reason: "missing".into(),
    })?;
    let ts = Timestamp::parse(created).map_err(|e| EventError::Field {
        path: field("request_created_at"),
        reason: e.to_string(),
    })?;
    let account_id = text(v, "request_user_id")
        .or_else(|| text(v, "helicone_user"))
        .map(str::to_string)
        .ok_or_else(|| EventError::Field {
            path: field("request_user_id"),
            reason: "no user (the account): set Helicone-User-Id per request".into(),
        })?;
    let model = text(v, "request_model")
        .or_else(|| text(v, "model"))
        .map(str::to_string);
    let anthropic = text(v, "provider").is_some_and(|p| p.eq_ignore_ascii_case("anthropic"))
        || text(v, "request_path").is_some_and(|p| p.ends_with("/v1/messages"));
    let (dialect, request) = super::logged_request(
        super::logged_body(v.get("request_body")),
        model.as_deref(),
        anthropic.then_some(Dialect::Anthropic),
        &field("request_body"),
    )?;
    let mut response = match v.get("response_body") {
        Some(r @ Value::Object(o)) if !o.is_empty() && o.get("error").is_none() => {
            Some(super::response_from_value(r, &field("response_body"))?)
        }
        _ => None,
    };
    super::fill_usage(
        &mut response,
        count(v, "prompt_tokens"),
        count(v, "completion_tokens"),
    );
    let model = request.model.clone().or(model);
    Ok(Event {
        id: text(v, "request_id").map(str::to_string),
        api_key_id: property(v, &["Key", "key", "Api-Key", "api_key"]).map(str::to_string),
        model,
        status: v
            .get("response_status")
            .and_then(Value::as_f64)
            .filter(|s| (100.0..600.0).contains(s))
            .map(|s| s as u16),
        latency_ms: v.get("delay_ms").and_then(Value::as_f64),
        client: ClientInfo {
            country: text(v, "country_code").map(str::to_string),
            ..ClientInfo::default()
        },
        ..super::imported(ts, account_id, dialect, request, response)
    })
}

/// Parses one line: a row, or an API answer holding rows in `data`.
pub fn parse_line(line: &str) -> Result<Vec<Event>, EventError> {
    let v: Value = crate::json::parse_at(line, None)?;
    match v.get("data") {
        Some(Value::Array(rows)) => rows
            .iter()
            .enumerate()
            .map(|(i, r)| row(r, &format!("data[{i}].")))
            .collect(),
        // `GET /v1/request/{id}` answers one row in `data`.
        Some(r @ Value::Object(_)) => Ok(vec![row(r, "data.")?]),
        _ => Ok(vec![row(&v, "")?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of Helicone's `HeliconeRequest` (its OpenAPI schema),
    /// with bodies included.
    const ROW: &str = r#"{"response_id":"r-1","response_created_at":"2026-09-01T10:00:02.100Z","response_status":200,
        "response_model":"gpt-4o-2024-08-06","request_id":"5f0c8d1e-1","request_created_at":"2026-09-01T10:00:00.500Z",
        "request_body":{"model":"gpt-4o","temperature":0,"max_tokens":2048,"messages":[{"role":"system","content":"Reason step by step."},{"role":"user","content":"Is 221 prime?"}]},
        "response_body":{"id":"c","object":"chat.completion","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"221 = 13 × 17, so no."}}],"usage":{"prompt_tokens":21,"completion_tokens":12,"total_tokens":33}},
        "request_path":"https://oai.helicone.ai/v1/chat/completions","request_user_id":"acct_9","request_properties":{"Key":"key_prod"},
        "request_model":"gpt-4o","model_override":null,"helicone_user":"u-77","provider":"OPENAI","delay_ms":1600,
        "time_to_first_token":300,"total_tokens":33,"prompt_tokens":21,"prompt_cache_write_tokens":0,"prompt_cache_read_tokens":0,
        "completion_tokens":12,"reasoning_tokens":0,"prompt_audio_tokens":null,"completion_audio_tokens":null,"cost":0.0004,
        "prompt_id":null,"prompt_version":null,"llmSchema":null,"country_code":"SG","asset_ids":null,"asset_urls":null,
        "scores":null,"properties":{},"assets":[],"target_url":"https://api.openai.com/v1/chat/completions","model":"gpt-4o",
        "cache_reference_id":null,"cache_enabled":false,"ai_gateway_body_mapping":null}"#;

    #[test]
    fn a_helicone_row_becomes_an_event() {
        let line = ROW.replace('\n', "");
        let e = parse_line(&line).unwrap().remove(0);
        assert_eq!(e.account_id, "acct_9");
        assert_eq!(e.api_key_id.as_deref(), Some("key_prod"));
        assert_eq!(e.id.as_deref(), Some("5f0c8d1e-1"));
        assert_eq!(e.ts, Timestamp::parse("2026-09-01T10:00:00.500Z").unwrap());
        assert_eq!(e.dialect, Dialect::OpenAi);
        assert_eq!(
            e.request.system_prompt.as_deref(),
            Some("Reason step by step.")
        );
        assert_eq!(e.request.sampling.max_tokens, Some(2048));
        assert_eq!((e.status, e.latency_ms), (Some(200), Some(1600.0)));
        assert_eq!(e.client.country.as_deref(), Some("SG"));
        let r = e.response.unwrap();
        assert_eq!((r.input_tokens, r.output_tokens), (Some(21), Some(12)));
        // The API's answer: rows in `data`.
        let many = parse_line(&format!("{{\"data\":[{line},{line}],\"error\":null}}")).unwrap();
        assert_eq!(many.len(), 2);
    }

    #[test]
    fn without_bodies_an_anthropic_row_keeps_its_model_and_counts() {
        let line = r#"{"request_id":"x","request_created_at":"2026-09-01T10:00:00Z","request_user_id":null,
            "helicone_user":"u-5","provider":"ANTHROPIC","request_path":"/v1/messages","request_model":"claude-sonnet-4",
            "response_status":200,"prompt_tokens":40,"completion_tokens":900,"prompt_cache_read_tokens":1200}"#
            .replace('\n', "");
        let e = parse_line(&line).unwrap().remove(0);
        assert_eq!(e.account_id, "u-5");
        assert_eq!(e.dialect, Dialect::Anthropic);
        assert_eq!(e.model.as_deref(), Some("claude-sonnet-4"));
        assert_eq!(e.request.last_user_text, "");
        assert_eq!(e.api_key_id, None);
        assert_eq!(e.response.unwrap().output_tokens, Some(900));
    }

    #[test]
    fn bad_rows_are_named_with_their_field() {
        let err = |l: &str| parse_line(l).unwrap_err().to_string();
        assert!(
            err(r#"{"request_created_at":"2026-09-01T10:00:00Z"}"#).contains("request_user_id")
        );
        assert!(err(r#"{"request_user_id":"a"}"#).contains("request_created_at"));
        assert!(
            err(r#"{"request_user_id":"a","request_created_at":"yesterday"}"#)
                .contains("request_created_at")
        );
        let e = err(
            r#"{"data":[{"request_user_id":"a","request_created_at":"2026-09-01T10:00:00Z"},{"request_user_id":"b"}]}"#,
        );
        assert!(e.contains("data[1].request_created_at"), "{e}");
    }
}
