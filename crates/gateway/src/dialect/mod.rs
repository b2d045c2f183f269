/*!
What the gateway knows of each API it speaks, one module per API (as
TensorZero keeps one file per provider): how its answers are metered, how
its errors and mid-stream failures are written, how reasoning is withheld
from its answers, how an upstream of it takes its key, and how a finished
answer is summarised for the event log.

The [`Dialect`] itself is the core's (the normaliser and the importers
read the same three APIs); a fourth API is one new file implementing
[`Api`] and one arm in [`api`].
*/

use axum::http::{HeaderName, StatusCode};
use distillguard_core::Response;
use serde_json::Value;

pub use distillguard_core::Dialect;

mod anthropic;
mod openai;
mod responses;

/// An answer's accounting while it streams.
#[derive(Debug, Default)]
pub(crate) struct Metered {
    pub out: Response,
    /// Streamed tool calls seen, as (choice, index) (OpenAI's chunks name
    /// a call on each of its deltas).
    pub tools: Vec<(u64, u64)>,
    /// Characters of visible answer text.
    pub chars: u64,
}

/// One API's wire format, as the gateway needs it.
pub(crate) trait Api: Sync {
    /// Folds one streamed event's JSON into the answer's accounting.
    fn meter_event(&self, v: &Value, m: &mut Metered);
    /// The SSE event that ends a stream whose upstream failed mid-answer
    /// (the official SDKs raise it as an exception).
    fn stream_error(&self, why: &str) -> String;
    /// An error body: `kind` is the gateway's (OpenAI's) error type, which
    /// the API may map to its own.
    fn error_body(&self, status: StatusCode, kind: &str, message: &str) -> Value;
    /// The header carrying an upstream's own key, and its value.
    fn upstream_key(&self, secret: &str) -> (HeaderName, String);
    /// Headers the API's upstreams require, sent when the client sent none.
    fn required_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// An answer's accounting as a body of the API's shape, which the
    /// normaliser reads back into the same [`Response`] (text left out).
    fn summary(&self, r: &Response) -> Value;
    /// Removes reasoning from a whole JSON answer.
    fn strip_answer(&self, v: &mut Value);
    /// Removes reasoning from one streamed event; false drops the event.
    /// `dropped` holds the indices of the blocks or items dropped so far,
    /// so that later ones are renumbered.
    fn strip_event(&self, v: &mut Value, dropped: &mut Vec<u64>) -> bool;
}

/// The module of an API.
pub(crate) fn api(d: Dialect) -> &'static dyn Api {
    match d {
        Dialect::OpenAi => &openai::OpenAi,
        Dialect::Anthropic => &anthropic::Anthropic,
        Dialect::Responses => &responses::Responses,
    }
}

/// The API whose error format suits a path outside the API routes
/// (Anthropic's under `/v1/messages`, else OpenAI's).
pub(crate) fn of_path(path: &str) -> Dialect {
    if path.starts_with("/v1/messages") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}

/// A count from a JSON number, saturated to `u32`.
pub(crate) fn num(v: &Value) -> Option<u32> {
    v.as_u64().map(|n| n.min(u64::from(u32::MAX)) as u32)
}

/// Renumbers `v[field]` past the blocks dropped before it.
fn renumber(v: &mut Value, field: &str, dropped: &[u64]) {
    if let Some(i) = v[field].as_u64() {
        let shift = dropped.iter().filter(|&&d| d < i).count() as u64;
        v[field] = Value::from(i - shift);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_dialect_summarises_an_answer_the_normaliser_reads_back() {
        let r = Response {
            input_tokens: Some(12),
            output_tokens: Some(300),
            reasoning_tokens: Some(100),
            reasoning_returned: true,
            finish_reason: Some("stop".into()),
            choices: 1,
            tool_calls: 2,
            output_chars: 0,
            id: None,
        };
        for d in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Responses] {
            let back =
                distillguard_core::normalize::normalize_response(&api(d).summary(&r).to_string())
                    .unwrap();
            assert_eq!(back.input_tokens, r.input_tokens, "{d:?}");
            assert_eq!(back.output_tokens, r.output_tokens, "{d:?}");
            assert_eq!(back.tool_calls, 2, "{d:?}");
            assert!(back.reasoning_returned, "{d:?}");
            assert_eq!(back.finish_reason.as_deref(), Some("stop"), "{d:?}");
        }
        let mut with_id = r.clone();
        with_id.id = Some("resp_1".into());
        let back = distillguard_core::normalize::normalize_response(
            &api(Dialect::Responses).summary(&with_id).to_string(),
        )
        .unwrap();
        assert_eq!(back.id.as_deref(), Some("resp_1"));
        assert_eq!(back.reasoning_tokens, Some(100));
    }

    #[test]
    fn errors_are_written_in_each_apis_format() {
        let o = api(Dialect::OpenAi).error_body(StatusCode::FORBIDDEN, "permission_error", "no");
        assert_eq!(o["error"]["type"], "permission_error");
        assert_eq!(o["error"]["message"], "no");
        assert_eq!(
            api(Dialect::Responses).error_body(StatusCode::FORBIDDEN, "permission_error", "no"),
            o
        );
        let a = api(Dialect::Anthropic).error_body(StatusCode::NOT_FOUND, "x", "gone");
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "not_found_error");
        assert!(
            api(Dialect::Anthropic)
                .stream_error("cut")
                .starts_with("event: error\n")
        );
        assert!(
            api(Dialect::OpenAi)
                .stream_error("cut")
                .starts_with("data: ")
        );
    }

    #[test]
    fn paths_outside_the_api_routes_answer_in_the_matching_format() {
        assert_eq!(of_path("/v1/messages/batches/x"), Dialect::Anthropic);
        assert_eq!(of_path("/v1/nothing"), Dialect::OpenAi);
    }
}
