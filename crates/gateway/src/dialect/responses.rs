//! OpenAI Responses (`/v1/responses`), served by OpenAI-dialect upstreams.

use axum::http::{HeaderName, StatusCode};
use distillguard_core::Response;
use serde_json::{Value, json};

use super::{Api, Metered, num, renumber};

pub(crate) struct Responses;

/// Removes reasoning items from a Responses `output` (their summaries and
/// their `encrypted_content`, which could be handed back to continue the
/// reasoning).
fn strip_output(v: &mut Value) {
    if let Some(output) = v.get_mut("output").and_then(Value::as_array_mut) {
        output.retain(|i| i["type"] != "reasoning");
    }
}

impl Api for Responses {
    /// Typed events: text and reasoning deltas, function-call items, the
    /// answer's id, and the final `response` with its status and usage.
    fn meter_event(&self, v: &Value, m: &mut Metered) {
        let out = &mut m.out;
        if !v["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("response."))
        {
            return;
        }
        out.choices = 1;
        match v["type"].as_str() {
            Some("response.output_text.delta") => {
                if let Some(t) = v["delta"].as_str() {
                    m.chars += t.chars().count() as u64;
                }
            }
            Some("response.reasoning_summary_text.delta" | "response.reasoning_text.delta")
                if v["delta"].as_str().is_some_and(|d| !d.is_empty()) =>
            {
                out.reasoning_returned = true;
            }
            Some("response.output_item.added")
                if matches!(
                    v["item"]["type"].as_str(),
                    Some("function_call" | "custom_tool_call")
                ) =>
            {
                out.tool_calls += 1;
            }
            Some("response.created") => {
                out.id = v["response"]["id"].as_str().map(str::to_string);
            }
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                let r = &v["response"];
                if let Some(id) = r["id"].as_str() {
                    out.id = Some(id.to_string());
                }
                if let Some(s) = r["status"].as_str() {
                    out.finish_reason = Some(s.to_string());
                }
                let u = &r["usage"];
                out.input_tokens = num(&u["input_tokens"]).or(out.input_tokens);
                out.output_tokens = num(&u["output_tokens"]).or(out.output_tokens);
                out.reasoning_tokens =
                    num(&u["output_tokens_details"]["reasoning_tokens"]).or(out.reasoning_tokens);
            }
            _ => {}
        }
    }

    fn stream_error(&self, why: &str) -> String {
        super::openai::OpenAi.stream_error(why)
    }

    fn error_body(&self, status: StatusCode, kind: &str, message: &str) -> Value {
        super::openai::OpenAi.error_body(status, kind, message)
    }

    fn upstream_key(&self, secret: &str) -> (HeaderName, String) {
        super::openai::OpenAi.upstream_key(secret)
    }

    fn summary(&self, r: &Response) -> Value {
        let mut output = Vec::new();
        if r.reasoning_returned {
            output.push(json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "[not logged]"}]}));
        }
        for _ in 0..r.tool_calls {
            output.push(json!({"type": "function_call"}));
        }
        let mut usage = json!({"input_tokens": r.input_tokens, "output_tokens": r.output_tokens});
        if let Some(n) = r.reasoning_tokens {
            usage["output_tokens_details"] = json!({"reasoning_tokens": n});
        }
        json!({
            "id": r.id,
            "object": "response",
            "status": r.finish_reason,
            "output": output,
            "usage": usage,
        })
    }

    fn strip_answer(&self, v: &mut Value) {
        strip_output(v);
    }

    /// Reasoning items' events and the summary events are dropped, the
    /// `output_index` of later items renumbered, and the final `response`
    /// object loses its reasoning items.
    fn strip_event(&self, v: &mut Value, dropped: &mut Vec<u64>) -> bool {
        let kind = v["type"].as_str().unwrap_or("");
        let Some(kind) = kind.strip_prefix("response.") else {
            return true;
        };
        if kind.starts_with("reasoning") {
            // reasoning_summary_text.delta, reasoning_summary_part.added, …
            return false;
        }
        let index = v["output_index"].as_u64();
        if matches!(kind, "output_item.added" | "output_item.done")
            && v["item"]["type"] == "reasoning"
        {
            if let Some(i) = index
                && !dropped.contains(&i)
            {
                dropped.push(i);
            }
            return false;
        }
        if index.is_some_and(|i| dropped.contains(&i)) {
            return false;
        }
        renumber(v, "output_index", dropped);
        if let Some(r) = v.get_mut("response") {
            strip_output(r);
        }
        true
    }
}
