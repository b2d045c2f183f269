/*!
OpenTelemetry GenAI spans as events: OTLP/HTTP JSON export requests
(`{"resourceSpans": [...]}`), one per line, as the OpenTelemetry
Collector's file exporter writes them. Each span that carries `gen_ai.*`
attributes is one request; every other span is skipped.

Mapping (the GenAI semantic conventions; what a span lacks stays empty):
- **account**: the span's `user.id` (or the older `enduser.id`), else the
  resource's. A GenAI span without one is a bad line (named), since an
  application's spans say who its user was only when it sets it.
- **request**: `gen_ai.request.model`, `max_tokens`, `temperature`,
  `top_p`, `seed`, `choice.count`, `stop_sequences`; messages from
  `gen_ai.system_instructions` and `gen_ai.input.messages` (JSON parts),
  else the older span events (`gen_ai.system.message`,
  `gen_ai.user.message`, `gen_ai.assistant.message`, `gen_ai.tool.message`,
  with `content` in their attributes), else OpenLLMetry's
  `gen_ai.prompt.N.role`/`.content`. Content is recorded only when the
  instrumentation is told to (for example
  `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`); without it
  the prompt-based signals see empty text.
- **response**: `gen_ai.usage.input_tokens`/`output_tokens`,
  `gen_ai.response.finish_reasons`, `gen_ai.response.id`, and the answer's
  length from `gen_ai.output.messages` or `gen_ai.choice` events.
- **dialect**: Anthropic when `gen_ai.provider.name` (or `gen_ai.system`)
  says so, else OpenAI Chat Completions.
- **time**: `startTimeUnixNano`; latency from `endTimeUnixNano`.
- **status**: a span status of error (code 2) with an `http.response.status_code`
  gives that code; a span without an error, 200 only when it has a response
  (usage or finish reasons), else empty.
*/

use serde_json::{Map, Value, json};

use crate::error::EventError;
use crate::event::{Dialect, Event};
use crate::time::Timestamp;

/// An attribute list (`[{key, value: {stringValue|intValue|…}}]`) as a map
/// of plain JSON values.
fn attributes(list: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for a in list.and_then(Value::as_array).into_iter().flatten() {
        if let (Some(k), Some(v)) = (a.get("key").and_then(Value::as_str), a.get("value")) {
            out.insert(k.to_string(), any_value(v));
        }
    }
    out
}

/// An OTLP `AnyValue` as plain JSON.
fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = v.get("intValue") {
        // int64 is a string in OTLP JSON.
        return match i {
            Value::String(s) => s.parse::<i64>().map_or(Value::Null, Value::from),
            other => other.clone(),
        };
    }
    if let Some(d) = v.get("doubleValue") {
        return d.clone();
    }
    if let Some(b) = v.get("boolValue") {
        return b.clone();
    }
    if let Some(a) = v.get("arrayValue") {
        return Value::Array(
            a.get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(any_value)
                .collect(),
        );
    }
    if let Some(kv) = v.get("kvlistValue") {
        return Value::Object(attributes(kv.get("values")));
    }
    Value::Null
}

fn nanos(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let t: Vec<String> = parts.iter().filter_map(text_of).collect();
            (!t.is_empty()).then(|| t.join("\n"))
        }
        Value::Object(o) => o.get("content").or_else(|| o.get("text")).and_then(text_of),
        _ => None,
    }
}

/// A JSON attribute that may hold JSON text.
fn json_attr(a: &Map<String, Value>, key: &str) -> Option<Value> {
    match a.get(key)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        other => Some(other.clone()),
    }
}

/// Messages (role, text) of a span, from the newest convention it uses.
fn messages(
    a: &Map<String, Value>,
    events: &[(String, Map<String, Value>)],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(sys) = json_attr(a, "gen_ai.system_instructions")
        .as_ref()
        .and_then(text_of)
    {
        out.push(("system".to_string(), sys));
    }
    if let Some(Value::Array(ms)) = json_attr(a, "gen_ai.input.messages") {
        for m in ms {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
            let text = m.get("parts").and_then(text_of).unwrap_or_default();
            out.push((role.to_string(), text));
        }
        return out;
    }
    for (name, ea) in events {
        let role = match name.as_str() {
            "gen_ai.system.message" => "system",
            "gen_ai.user.message" => "user",
            "gen_ai.assistant.message" => "assistant",
            "gen_ai.tool.message" => "tool",
            _ => continue,
        };
        let text = ea
            .get("content")
            .and_then(text_of)
            .or_else(|| {
                ea.get("gen_ai.event.content")
                    .and_then(Value::as_str)
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                    .as_ref()
                    .and_then(text_of)
            })
            .unwrap_or_default();
        out.push((role.to_string(), text));
    }
    if out.is_empty() {
        for i in 0.. {
            let role = a
                .get(&format!("gen_ai.prompt.{i}.role"))
                .and_then(Value::as_str);
            let content = a
                .get(&format!("gen_ai.prompt.{i}.content"))
                .and_then(text_of);
            if role.is_none() && content.is_none() {
                break;
            }
            out.push((
                role.unwrap_or("user").to_string(),
                content.unwrap_or_default(),
            ));
        }
    }
    out
}

/// Characters of the answer, where the span recorded it.
fn answer_chars(a: &Map<String, Value>, events: &[(String, Map<String, Value>)]) -> Option<u64> {
    if let Some(Value::Array(ms)) = json_attr(a, "gen_ai.output.messages") {
        return Some(
            ms.iter()
                .filter_map(|m| m.get("parts").and_then(text_of))
                .map(|t| t.chars().count() as u64)
                .sum(),
        );
    }
    let choices: Vec<u64> = events
        .iter()
        .filter(|(n, _)| n == "gen_ai.choice")
        .filter_map(|(_, ea)| {
            ea.get("message")
                .or_else(|| ea.get("content"))
                .and_then(text_of)
        })
        .map(|t| t.chars().count() as u64)
        .collect();
    (!choices.is_empty()).then(|| choices.iter().sum())
}

fn is_genai(a: &Map<String, Value>) -> bool {
    a.keys().any(|k| k.starts_with("gen_ai."))
}

/// The GenAI spans of one OTLP/HTTP JSON export request, as events; spans
/// without `gen_ai.*` attributes are skipped. A GenAI span that cannot be
/// read makes the line bad, named by its span.
pub fn parse_line(line: &str) -> Result<Vec<Event>, EventError> {
    let doc: Value = crate::json::parse_at(line, None)?;
    parse_value(&doc)
}

/// The GenAI spans of an export request in its OTLP/JSON shape; the first
/// bad span is the error.
pub fn parse_value(doc: &Value) -> Result<Vec<Event>, EventError> {
    let mut out = Vec::new();
    let mut first_bad = None;
    each_span(doc, &mut |r| match r {
        Ok(e) => out.push(e),
        Err(e) => {
            first_bad.get_or_insert(e);
        }
    })?;
    match first_bad {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The GenAI spans of an OTLP protobuf `ExportTraceServiceRequest`
/// ([`super::otlp_proto`]); the first bad span is the error.
pub fn parse_protobuf(b: &[u8]) -> Result<Vec<Event>, EventError> {
    parse_value(&super::otlp_proto::decode_traces(b)?)
}

/// Every GenAI span of an export request (JSON shape), each an event or
/// its located error: a live receiver keeps the good spans of a request
/// and counts the others. Fails only when the request has no
/// `resourceSpans`.
pub fn each_span(
    doc: &Value,
    f: &mut dyn FnMut(Result<Event, EventError>),
) -> Result<(), EventError> {
    let resources = doc
        .get("resourceSpans")
        .and_then(Value::as_array)
        .ok_or(EventError::Missing("resourceSpans"))?;
    for (ri, rs) in resources.iter().enumerate() {
        let resource = attributes(rs.get("resource").and_then(|r| r.get("attributes")));
        let scopes = rs.get("scopeSpans").and_then(Value::as_array);
        for (si, ss) in scopes.into_iter().flatten().enumerate() {
            let spans = ss.get("spans").and_then(Value::as_array);
            for (pi, span) in spans.into_iter().flatten().enumerate() {
                let a = attributes(span.get("attributes"));
                if !is_genai(&a) {
                    continue;
                }
                let place = format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]");
                f(span_event(span, &a, &resource).map_err(|e| match e {
                    EventError::Field { path, reason } => EventError::Field {
                        path: format!("{place}.{path}"),
                        reason,
                    },
                    EventError::Missing(f) => EventError::Field {
                        path: format!("{place}.{f}"),
                        reason: "missing".into(),
                    },
                    other => other,
                }));
            }
        }
    }
    Ok(())
}

fn span_event(
    span: &Value,
    a: &Map<String, Value>,
    resource: &Map<String, Value>,
) -> Result<Event, EventError> {
    let start =
        nanos(span.get("startTimeUnixNano")).ok_or(EventError::Missing("startTimeUnixNano"))?;
    let end = nanos(span.get("endTimeUnixNano"));
    let user = |m: &Map<String, Value>| {
        ["user.id", "enduser.id"]
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
            .map(str::to_string)
    };
    let account_id = user(a)
        .or_else(|| user(resource))
        .ok_or(EventError::Field {
            path: "attributes".into(),
            reason: "no user.id or enduser.id on the span or its resource (the account)".into(),
        })?;
    let events: Vec<(String, Map<String, Value>)> = span
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                attributes(e.get("attributes")),
            )
        })
        .collect();
    let provider = a
        .get("gen_ai.provider.name")
        .or_else(|| a.get("gen_ai.system"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let anthropic = provider.contains("anthropic");
    let model = a.get("gen_ai.request.model").and_then(Value::as_str);
    let msgs = messages(a, &events);
    let mut body = Map::new();
    if let Some(m) = model {
        body.insert("model".into(), m.into());
    }
    for (attr, field) in [
        ("gen_ai.request.max_tokens", "max_tokens"),
        ("gen_ai.request.temperature", "temperature"),
        ("gen_ai.request.top_p", "top_p"),
        ("gen_ai.request.seed", "seed"),
        ("gen_ai.request.frequency_penalty", "frequency_penalty"),
        ("gen_ai.request.presence_penalty", "presence_penalty"),
    ] {
        if let Some(v) = a.get(attr).filter(|v| !v.is_null()) {
            if anthropic && matches!(field, "seed" | "frequency_penalty" | "presence_penalty") {
                continue;
            }
            body.insert(field.into(), v.clone());
        }
    }
    if let Some(Value::Array(stop)) = a.get("gen_ai.request.stop_sequences") {
        body.insert(
            if anthropic { "stop_sequences" } else { "stop" }.into(),
            Value::Array(stop.clone()),
        );
    }
    if !anthropic && let Some(n) = a.get("gen_ai.request.choice.count").and_then(Value::as_u64) {
        body.insert("n".into(), n.into());
    }
    let (system, turns): (Vec<_>, Vec<_>) = msgs.into_iter().partition(|(r, _)| r == "system");
    let turns: Vec<Value> = turns
        .into_iter()
        .map(|(role, text)| json!({"role": if anthropic && role == "tool" { "user".to_string() } else { role }, "content": text}))
        .collect();
    if anthropic {
        if !system.is_empty() {
            let s: Vec<String> = system.into_iter().map(|(_, t)| t).collect();
            body.insert("system".into(), s.join("\n").into());
        }
        body.insert("messages".into(), Value::Array(turns));
    } else {
        let mut all: Vec<Value> = system
            .into_iter()
            .map(|(_, t)| json!({"role": "system", "content": t}))
            .collect();
        all.extend(turns);
        body.insert("messages".into(), Value::Array(all));
    }
    let hint = Some(if anthropic {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    });
    let (dialect, request) = super::request_from_value(&Value::Object(body), hint, "messages")?;
    let input = a.get("gen_ai.usage.input_tokens").and_then(Value::as_u64);
    let output = a.get("gen_ai.usage.output_tokens").and_then(Value::as_u64);
    let finish = match a.get("gen_ai.response.finish_reasons") {
        Some(Value::Array(r)) => r.first().and_then(Value::as_str).map(str::to_string),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let chars = answer_chars(a, &events);
    let answered = input.is_some() || output.is_some() || finish.is_some() || chars.is_some();
    let response = answered.then(|| crate::event::Response {
        input_tokens: input.and_then(|v| u32::try_from(v).ok()),
        output_tokens: output.and_then(|v| u32::try_from(v).ok()),
        finish_reason: finish,
        choices: 1,
        output_chars: chars.unwrap_or(0),
        id: a
            .get("gen_ai.response.id")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..Default::default()
    });
    let error = span
        .get("status")
        .and_then(|s| s.get("code"))
        .is_some_and(|c| c.as_u64() == Some(2) || c.as_str() == Some("STATUS_CODE_ERROR"));
    let http = a
        .get("http.response.status_code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok());
    let status = match (error, http) {
        (_, Some(c)) => Some(c),
        (false, None) if answered => Some(200),
        _ => None,
    };
    Ok(Event {
        id: span
            .get("spanId")
            .and_then(Value::as_str)
            .map(|s| format!("span_{s}")),
        status,
        latency_ms: end.map(|e| (e - start) as f64 / 1e6).filter(|d| *d >= 0.0),
        ..super::imported(
            Timestamp::from_millis(start / 1_000_000),
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

    fn attr(k: &str, v: Value) -> Value {
        let value = match v {
            Value::String(s) => json!({"stringValue": s}),
            Value::Number(n) if n.is_i64() => json!({"intValue": n.to_string()}),
            Value::Number(n) => json!({"doubleValue": n}),
            Value::Array(a) => {
                json!({"arrayValue": {"values": a.into_iter().map(|s| json!({"stringValue": s})).collect::<Vec<_>>()}})
            }
            other => other,
        };
        json!({"key": k, "value": value})
    }

    fn export(spans: Vec<Value>) -> String {
        json!({"resourceSpans": [{
            "resource": {"attributes": [attr("service.name", json!("tutor-app")), attr("user.id", json!("acct_res"))]},
            "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"}, "spans": spans}]
        }]})
        .to_string()
    }

    #[test]
    fn genai_spans_become_events_and_other_spans_are_skipped() {
        let chat = json!({
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "chat gpt-4o", "startTimeUnixNano": "1764590400000000000", "endTimeUnixNano": "1764590401500000000",
            "attributes": [
                attr("gen_ai.operation.name", json!("chat")), attr("gen_ai.provider.name", json!("openai")),
                attr("gen_ai.request.model", json!("gpt-4o")), attr("gen_ai.request.max_tokens", json!(1024)),
                attr("gen_ai.request.temperature", json!(0.0)), attr("user.id", json!("acct_7")),
                attr("gen_ai.system_instructions", json!(r#"[{"type":"text","content":"Always show every step."}]"#)),
                attr("gen_ai.input.messages", json!(r#"[{"role":"user","parts":[{"type":"text","content":"Solve step by step: 12*13"}]}]"#)),
                attr("gen_ai.output.messages", json!(r#"[{"role":"assistant","parts":[{"type":"text","content":"156"}],"finish_reason":"stop"}]"#)),
                attr("gen_ai.usage.input_tokens", json!(20)), attr("gen_ai.usage.output_tokens", json!(3)),
                attr("gen_ai.response.finish_reasons", json!(["stop"])),
            ],
            "status": {}
        });
        let http = json!({"spanId": "aa", "name": "GET /", "startTimeUnixNano": "1", "attributes": [attr("http.request.method", json!("GET"))]});
        // Older: content in span events; Anthropic; the resource's user.
        let old = json!({
            "spanId": "bb", "name": "chat claude", "startTimeUnixNano": "1764590402000000000",
            "attributes": [attr("gen_ai.system", json!("anthropic")), attr("gen_ai.request.model", json!("claude-3"))],
            "events": [
                {"name": "gen_ai.system.message", "attributes": [attr("content", json!("be brief"))]},
                {"name": "gen_ai.user.message", "attributes": [attr("content", json!("hi"))]}
            ],
            "status": {"code": 2}
        });
        let evs = parse_line(&export(vec![chat, http, old])).unwrap();
        assert_eq!(evs.len(), 2);
        let e = &evs[0];
        assert_eq!(e.account_id, "acct_7");
        assert_eq!(e.ts.millis(), 1_764_590_400_000);
        assert_eq!(e.latency_ms, Some(1500.0));
        assert_eq!(e.model.as_deref(), Some("gpt-4o"));
        assert_eq!(e.request.sampling.max_tokens, Some(1024));
        assert_eq!(
            e.request.system_prompt.as_deref(),
            Some("Always show every step.")
        );
        assert!(e.request.last_user_text.contains("12*13"));
        let r = e.response.as_ref().unwrap();
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.output_chars),
            (Some(20), Some(3), 3)
        );
        assert_eq!(e.status, Some(200));
        assert_eq!(e.id.as_deref(), Some("span_eee19b7ec3c1b174"));
        let o = &evs[1];
        assert_eq!(o.account_id, "acct_res");
        assert_eq!(o.dialect, Dialect::Anthropic);
        assert_eq!(o.request.system_prompt.as_deref(), Some("be brief"));
        assert_eq!(o.request.last_user_text, "hi");
        assert_eq!((o.status, o.response.is_none()), (None, true));
    }

    #[test]
    fn a_genai_span_without_an_account_is_named() {
        let line = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
            {"spanId": "cc", "startTimeUnixNano": "5", "attributes": [attr("gen_ai.request.model", json!("m"))]}
        ]}]}]})
        .to_string();
        let err = parse_line(&line).unwrap_err().to_string();
        assert!(
            err.contains("resourceSpans[0].scopeSpans[0].spans[0]") && err.contains("user.id"),
            "{err}"
        );
        assert!(
            parse_line("{}")
                .unwrap_err()
                .to_string()
                .contains("resourceSpans")
        );
        // No GenAI span at all: no event, no error.
        assert!(parse_line(r#"{"resourceSpans":[]}"#).unwrap().is_empty());
    }
}
