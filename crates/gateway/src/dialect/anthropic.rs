//! Anthropic Messages (`/v1/messages`).

use axum::http::{HeaderName, StatusCode};
use distillguard_core::Response;
use serde_json::{Value, json};

use super::{Api, Metered, num, renumber};

pub(crate) struct Anthropic;

/// The `anthropic-version` an upstream gets when the client sent none.
const VERSION: &str = "2023-06-01";

/// Anthropic's error type for a status (its SDKs pick the exception by it).
fn kind_of(status: StatusCode, kind: &str) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ if kind == "invalid_request_error" => "invalid_request_error",
        _ => "api_error",
    }
}

fn is_thinking(kind: Option<&str>) -> bool {
    matches!(kind, Some("thinking" | "redacted_thinking"))
}

impl Api for Anthropic {
    /// `message_start` (input tokens), block starts (thinking, tool use),
    /// text deltas, and `message_delta` (stop reason, output tokens).
    fn meter_event(&self, v: &Value, m: &mut Metered) {
        let out = &mut m.out;
        match v["type"].as_str() {
            Some("message_start") => {
                out.choices = 1;
                let u = &v["message"]["usage"];
                out.input_tokens = num(&u["input_tokens"]).or(out.input_tokens);
            }
            Some("content_block_start") => match v["content_block"]["type"].as_str() {
                k if is_thinking(k) => out.reasoning_returned = true,
                Some("tool_use") => out.tool_calls += 1,
                _ => {}
            },
            Some("content_block_delta") => {
                if let Some(t) = v["delta"]["text"].as_str() {
                    m.chars += t.chars().count() as u64;
                }
            }
            Some("message_delta") => {
                if let Some(s) = v["delta"]["stop_reason"].as_str() {
                    out.finish_reason = Some(s.to_string());
                }
                out.output_tokens = num(&v["usage"]["output_tokens"]).or(out.output_tokens);
            }
            _ => {}
        }
    }

    fn stream_error(&self, why: &str) -> String {
        format!(
            "event: error\ndata: {}\n\n",
            json!({"type": "error", "error": {"type": "api_error", "message": why}})
        )
    }

    fn error_body(&self, status: StatusCode, kind: &str, message: &str) -> Value {
        json!({"type": "error", "error": {"type": kind_of(status, kind), "message": message}})
    }

    fn upstream_key(&self, secret: &str) -> (HeaderName, String) {
        (HeaderName::from_static("x-api-key"), secret.to_string())
    }

    fn required_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", VERSION)]
    }

    fn summary(&self, r: &Response) -> Value {
        let mut content = Vec::new();
        if r.reasoning_returned {
            content.push(json!({"type": "thinking", "thinking": "[not logged]"}));
        }
        for _ in 0..r.tool_calls {
            content.push(json!({"type": "tool_use"}));
        }
        json!({
            "type": "message",
            "content": content,
            "stop_reason": r.finish_reason,
            "usage": {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens},
        })
    }

    /// `thinking` and `redacted_thinking` blocks leave `content`.
    fn strip_answer(&self, v: &mut Value) {
        if let Some(content) = v.get_mut("content").and_then(Value::as_array_mut) {
            content.retain(|b| !is_thinking(b["type"].as_str()));
        }
    }

    /// A thinking block's `content_block_*` events are dropped, and the
    /// blocks after it renumbered, so that clients see a consistent stream.
    fn strip_event(&self, v: &mut Value, dropped: &mut Vec<u64>) -> bool {
        let index = v["index"].as_u64();
        match v["type"].as_str() {
            Some("content_block_start") => {
                if is_thinking(v["content_block"]["type"].as_str()) {
                    if let Some(i) = index {
                        dropped.push(i);
                    }
                    return false;
                }
            }
            Some("content_block_delta" | "content_block_stop") => {
                if index.is_some_and(|i| dropped.contains(&i)) {
                    return false;
                }
            }
            _ => return true,
        }
        renumber(v, "index", dropped);
        true
    }
}
