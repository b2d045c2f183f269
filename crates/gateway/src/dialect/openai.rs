//! OpenAI Chat Completions (`/v1/chat/completions`).

use axum::http::{HeaderName, StatusCode, header};
use distillguard_core::Response;
use serde_json::{Value, json};

use super::{Api, Metered, num};

pub(crate) struct OpenAi;

impl Api for OpenAi {
    /// A chunk: text deltas, `reasoning_content`/`reasoning` deltas, tool
    /// calls by (choice, index), the finish reason, and the last chunk's
    /// `usage`.
    fn meter_event(&self, v: &Value, m: &mut Metered) {
        if let Some(choices) = v["choices"].as_array() {
            for c in choices {
                let i = c["index"].as_u64().unwrap_or(0);
                m.out.choices = m.out.choices.max(i as u32 + 1);
                let d = &c["delta"];
                if let Some(t) = d["content"].as_str() {
                    m.chars += t.chars().count() as u64;
                }
                for k in ["reasoning_content", "reasoning"] {
                    if d[k].as_str().is_some_and(|s| !s.is_empty()) {
                        m.out.reasoning_returned = true;
                    }
                }
                for t in d["tool_calls"].as_array().into_iter().flatten() {
                    let id = (i, t["index"].as_u64().unwrap_or(0));
                    if !m.tools.contains(&id) {
                        m.tools.push(id);
                    }
                }
                if let Some(f) = c["finish_reason"].as_str() {
                    m.out.finish_reason = Some(f.to_string());
                }
            }
        }
        let u = &v["usage"];
        if u.is_object() {
            let out = &mut m.out;
            out.input_tokens = num(&u["prompt_tokens"]).or(out.input_tokens);
            out.output_tokens = num(&u["completion_tokens"]).or(out.output_tokens);
            out.reasoning_tokens =
                num(&u["completion_tokens_details"]["reasoning_tokens"]).or(out.reasoning_tokens);
        }
    }

    fn stream_error(&self, why: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"error": {"message": why, "type": "api_error", "param": null, "code": "upstream_error"}})
        )
    }

    fn error_body(&self, _status: StatusCode, kind: &str, message: &str) -> Value {
        json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
    }

    fn upstream_key(&self, secret: &str) -> (HeaderName, String) {
        (header::AUTHORIZATION, format!("Bearer {secret}"))
    }

    fn summary(&self, r: &Response) -> Value {
        let mut message = json!({"role": "assistant", "content": null});
        if r.reasoning_returned {
            message["reasoning_content"] = json!("[not logged]");
        }
        if r.tool_calls > 0 {
            message["tool_calls"] = Value::Array(vec![json!({}); r.tool_calls as usize]);
        }
        let mut usage =
            json!({"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens});
        if let Some(n) = r.reasoning_tokens {
            usage["completion_tokens_details"] = json!({"reasoning_tokens": n});
        }
        json!({
            "choices": [{"index": 0, "message": message, "finish_reason": r.finish_reason}],
            "usage": usage,
        })
    }

    /// `reasoning_content` (and `reasoning`) leave every `choices[].message`.
    fn strip_answer(&self, v: &mut Value) {
        for c in v
            .get_mut("choices")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(m) = c.get_mut("message").and_then(Value::as_object_mut) {
                m.remove("reasoning_content");
                m.remove("reasoning");
            }
        }
    }

    /// The same, from each chunk's `delta`; no chunk is dropped.
    fn strip_event(&self, v: &mut Value, _dropped: &mut Vec<u64>) -> bool {
        for c in v
            .get_mut("choices")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) {
                d.remove("reasoning_content");
                d.remove("reasoning");
            }
        }
        true
    }
}
