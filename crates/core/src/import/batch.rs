/*!
Batch files (OpenAI's Batch API, Anthropic's Message Batches) as events.

A harvester who wants millions of answers at half price sends them as
batches, so a batch's requests are scored like any other: each becomes an
event carrying the batch id and its `custom_id`.

- **OpenAI input** (the JSONL uploaded with `purpose=batch`), one request
  per line: `{"custom_id", "method": "POST", "url": "/v1/chat/completions",
  "body": {…}}` (`url` may also be `/v1/responses`).
- **OpenAI output** (the results file): `{"id", "custom_id", "response":
  {"status_code", "request_id", "body": {…}} | null, "error": … | null}`.
- **Anthropic input**: the body of `POST /v1/messages/batches`,
  `{"requests": [{"custom_id", "params": {…}}, …]}`, on one line, or one
  `{"custom_id", "params"}` per line.
- **Anthropic results** (`…/batches/{id}/results`): `{"custom_id",
  "result": {"type": "succeeded", "message": {…}} | {"type": "errored", …}}`.

Lines of either kind may be mixed in one file or spread over several; they
are told apart by their fields and joined by `custom_id`
([`Joiner`]).
*/

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::EventError;
use crate::event::Dialect;
use crate::time::Timestamp;

/// Whose batch format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    OpenAi,
    Anthropic,
}

/// One request of a batch: its `custom_id`, endpoint and raw body.
#[derive(Debug, Clone)]
pub struct BatchRequest<'a> {
    pub custom_id: String,
    pub endpoint: &'static str,
    pub body: &'a RawValue,
}

/// One result of a batch: the answer's status and raw body, if any.
#[derive(Debug, Clone)]
pub struct BatchResult<'a> {
    pub custom_id: String,
    pub status: u16,
    pub body: Option<&'a RawValue>,
}

/// What one line of a batch file holds.
#[derive(Debug, Clone)]
pub enum BatchLine<'a> {
    Requests(Vec<BatchRequest<'a>>),
    Result(BatchResult<'a>),
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(default)]
    custom_id: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default, borrow)]
    body: Option<&'a RawValue>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
    #[serde(default, borrow)]
    requests: Option<Vec<AnthropicItem<'a>>>,
    #[serde(default, borrow)]
    response: Option<OpenAiResponse<'a>>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    result: Option<AnthropicResult<'a>>,
}

#[derive(Deserialize)]
struct AnthropicItem<'a> {
    custom_id: String,
    #[serde(borrow)]
    params: &'a RawValue,
}

#[derive(Deserialize)]
struct OpenAiResponse<'a> {
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default, borrow)]
    body: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AnthropicResult<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
}

/// The endpoint a batch line's `url` names (only the APIs scored here).
fn endpoint_of(url: &str) -> Result<&'static str, EventError> {
    match Dialect::from_endpoint(url) {
        Some(Dialect::OpenAi) => Ok(Dialect::OpenAi.endpoint()),
        Some(Dialect::Responses) => Ok(Dialect::Responses.endpoint()),
        _ => Err(EventError::Field {
            path: "url".into(),
            reason: format!(
                "{url:?} is not an endpoint scored here (/v1/chat/completions, /v1/responses)"
            ),
        }),
    }
}

fn need_id(id: Option<String>) -> Result<String, EventError> {
    match id {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(EventError::Field {
            path: "custom_id".into(),
            reason: "must not be empty".into(),
        }),
        None => Err(EventError::Missing("custom_id")),
    }
}

/// Reads one line of a batch file (input or results).
pub fn parse_line(kind: BatchKind, line: &str) -> Result<BatchLine<'_>, EventError> {
    let raw: Raw = crate::json::parse_at(line, None)?;
    match kind {
        BatchKind::OpenAi => {
            if let Some(body) = raw.body {
                if let Some(m) = raw.method.as_deref()
                    && !m.eq_ignore_ascii_case("POST")
                {
                    return Err(EventError::Field {
                        path: "method".into(),
                        reason: format!("{m:?}: batch requests are POST"),
                    });
                }
                let url = raw.url.ok_or(EventError::Missing("url"))?;
                return Ok(BatchLine::Requests(vec![BatchRequest {
                    custom_id: need_id(raw.custom_id)?,
                    endpoint: endpoint_of(&url)?,
                    body,
                }]));
            }
            if raw.response.is_some() || raw.error.is_some() {
                let custom_id = need_id(raw.custom_id)?;
                let (status, body) = match raw.response {
                    Some(r) => (r.status_code.unwrap_or(200), r.body),
                    None => (500, None),
                };
                return Ok(BatchLine::Result(BatchResult {
                    custom_id,
                    status,
                    body,
                }));
            }
            Err(EventError::Invalid(
                "neither a batch request (custom_id, url, body) nor a result (custom_id, response)"
                    .into(),
            ))
        }
        BatchKind::Anthropic => {
            if let Some(items) = raw.requests {
                return items
                    .into_iter()
                    .enumerate()
                    .map(|(i, it)| {
                        if it.custom_id.is_empty() {
                            return Err(EventError::Field {
                                path: format!("requests[{i}].custom_id"),
                                reason: "must not be empty".into(),
                            });
                        }
                        Ok(BatchRequest {
                            custom_id: it.custom_id,
                            endpoint: Dialect::Anthropic.endpoint(),
                            body: it.params,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(BatchLine::Requests);
            }
            if let Some(params) = raw.params {
                return Ok(BatchLine::Requests(vec![BatchRequest {
                    custom_id: need_id(raw.custom_id)?,
                    endpoint: Dialect::Anthropic.endpoint(),
                    body: params,
                }]));
            }
            if let Some(r) = raw.result {
                let custom_id = need_id(raw.custom_id)?;
                let (status, body) = match r.kind.as_str() {
                    "succeeded" => (200, r.message),
                    "errored" => (500, None),
                    // Canceled or expired: never answered.
                    _ => (0, None),
                };
                return Ok(BatchLine::Result(BatchResult {
                    custom_id,
                    status,
                    body,
                }));
            }
            Err(EventError::Invalid(
                "neither batch requests (requests, or custom_id and params) nor a result (custom_id, result)"
                    .into(),
            ))
        }
    }
}

/// Who sent a batch, when, and its id: what the files themselves do not say.
#[derive(Debug, Clone)]
pub struct BatchMeta {
    pub account_id: String,
    pub api_key_id: Option<String>,
    pub batch_id: String,
    /// When the batch was submitted; its requests are stamped from here, a
    /// millisecond apart, in file order.
    pub ts: Timestamp,
}

/// Joins a batch's requests to their results by `custom_id`: results are
/// held (raw answer bodies, by id) until the requests are written.
#[derive(Debug, Default)]
pub struct Joiner {
    results: HashMap<String, (u16, Option<String>)>,
}

impl Joiner {
    /// Holds a result for its request.
    pub fn add_result(&mut self, r: &BatchResult) {
        self.results.insert(
            r.custom_id.clone(),
            (r.status, r.body.map(|b| b.get().to_string())),
        );
    }

    /// Results held.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// The event-log line of the `n`th request of the batch, with its
    /// result when one was added.
    pub fn event_line(&self, meta: &BatchMeta, n: u64, r: &BatchRequest) -> String {
        let mut line = serde_json::Map::new();
        line.insert(
            "ts".into(),
            Timestamp(meta.ts.0.saturating_add(n as i64))
                .to_string()
                .into(),
        );
        line.insert("account_id".into(), meta.account_id.clone().into());
        if let Some(k) = &meta.api_key_id {
            line.insert("api_key_id".into(), k.clone().into());
        }
        line.insert("endpoint".into(), r.endpoint.into());
        line.insert(
            "batch".into(),
            serde_json::json!({"id": meta.batch_id, "custom_id": r.custom_id}),
        );
        let mut text = serde_json::Value::Object(line).to_string();
        // The bodies go in as they came (raw JSON), never re-encoded.
        text.pop();
        text.push_str(",\"request\":");
        text.push_str(r.body.get());
        if let Some((status, body)) = self.results.get(&r.custom_id) {
            if *status > 0 {
                text.push_str(&format!(",\"status\":{status}"));
            }
            if let Some(b) = body {
                text.push_str(",\"response\":");
                text.push_str(b);
            }
        }
        text.push('}');
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OPENAI_IN: &str = r#"{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"atlas-3","messages":[{"role":"user","content":"Think step by step: why is the sky blue?"}],"max_tokens":900}}"#;
    const OPENAI_OUT: &str = r#"{"id":"batch_req_1","custom_id":"r1","response":{"status_code":200,"request_id":"q","body":{"id":"c","object":"chat.completion","created":1771200000,"model":"atlas-3","choices":[{"index":0,"message":{"role":"assistant","content":"Rayleigh scattering."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":700,"total_tokens":712}}},"error":null}"#;

    fn meta() -> BatchMeta {
        BatchMeta {
            account_id: "acct_9".into(),
            api_key_id: Some("key_1".into()),
            batch_id: "batch_abc".into(),
            ts: Timestamp(1_771_200_000_000),
        }
    }

    #[test]
    fn an_openai_request_joined_to_its_result_is_an_event() {
        let BatchLine::Requests(reqs) = parse_line(BatchKind::OpenAi, OPENAI_IN).unwrap() else {
            panic!("a request line")
        };
        let BatchLine::Result(res) = parse_line(BatchKind::OpenAi, OPENAI_OUT).unwrap() else {
            panic!("a result line")
        };
        let mut j = Joiner::default();
        j.add_result(&res);
        let line = j.event_line(&meta(), 3, &reqs[0]);
        let e = crate::parse_event_line(&line).unwrap();
        assert_eq!(e.account_id, "acct_9");
        assert_eq!(e.api_key_id.as_deref(), Some("key_1"));
        assert_eq!(e.dialect, Dialect::OpenAi);
        assert_eq!(e.ts, Timestamp(1_771_200_000_003));
        assert_eq!(e.status, Some(200));
        assert_eq!(e.response.unwrap().output_tokens, Some(700));
        let b = e.batch.unwrap();
        assert_eq!((b.id.as_str(), b.custom_id.as_str()), ("batch_abc", "r1"));
    }

    #[test]
    fn anthropic_batches_read_as_one_body_or_one_request_per_line() {
        let body = r#"{"requests":[{"custom_id":"a","params":{"model":"atlas-3","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}},{"custom_id":"b","params":{"model":"atlas-3","max_tokens":500,"messages":[{"role":"user","content":"ho"}]}}]}"#;
        let BatchLine::Requests(reqs) = parse_line(BatchKind::Anthropic, body).unwrap() else {
            panic!()
        };
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].custom_id, "b");
        let one = r#"{"custom_id":"c","params":{"model":"atlas-3","max_tokens":5,"messages":[{"role":"user","content":"x"}]}}"#;
        assert!(matches!(
            parse_line(BatchKind::Anthropic, one).unwrap(),
            BatchLine::Requests(r) if r[0].custom_id == "c"
        ));
        let res = r#"{"custom_id":"a","result":{"type":"succeeded","message":{"id":"m","type":"message","role":"assistant","content":[{"type":"text","text":"hey"}],"usage":{"input_tokens":3,"output_tokens":40}}}}"#;
        let BatchLine::Result(r) = parse_line(BatchKind::Anthropic, res).unwrap() else {
            panic!()
        };
        let mut j = Joiner::default();
        j.add_result(&r);
        let e = crate::parse_event_line(&j.event_line(&meta(), 0, &reqs[0])).unwrap();
        assert_eq!(e.dialect, Dialect::Anthropic);
        assert_eq!(e.response.unwrap().output_tokens, Some(40));
    }

    #[test]
    fn bad_batch_lines_name_the_field() {
        let e = parse_line(
            BatchKind::OpenAi,
            r#"{"custom_id":"r","method":"POST","url":"/v1/embeddings","body":{}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("url"), "{e}");
        let e = parse_line(
            BatchKind::OpenAi,
            r#"{"url":"/v1/chat/completions","body":{}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("custom_id"), "{e}");
        let e = parse_line(
            BatchKind::Anthropic,
            r#"{"requests":[{"custom_id":"","params":{}}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("requests[0].custom_id"), "{e}");
        assert!(parse_line(BatchKind::Anthropic, r#"{"x":1}"#).is_err());
    }
}
