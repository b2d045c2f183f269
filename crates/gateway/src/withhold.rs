/*!
The withhold-reasoning action: an account under watch still gets answers,
but not the reasoning traces a distilled student learns most from.

- OpenAI: `reasoning_content` (and `reasoning`) is removed from
  `choices[].message` and, when streaming, from each chunk's `delta`.
- Anthropic: `thinking` and `redacted_thinking` blocks are removed from
  `content` and, when streaming, their `content_block_*` events are dropped.
  The indices of the blocks after them are renumbered, so that clients see
  a consistent stream.
- OpenAI Responses: `reasoning` output items are removed (their summaries
  and their `encrypted_content`, which could be handed back to continue
  the reasoning); when streaming, the reasoning items' events and the
  summary events are dropped, the `output_index` of later items is
  renumbered, and the final `response` object loses its reasoning items.

Streams are rewritten event by event, as they pass. An event is held only
until its line is complete.
*/

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use serde_json::Value;

use crate::dialect::{Dialect, api};

/// Strips reasoning from a whole JSON answer of `dialect`.
pub fn strip_json(dialect: Dialect, body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    api(dialect).strip_answer(&mut v);
    serde_json::to_vec(&v).ok()
}

/// Rewrites SSE events (one `data:` JSON per event) of one API, keeping
/// state across events for the indices of the blocks dropped so far.
pub struct SseStripper {
    dialect: Dialect,
    pending: Vec<u8>,
    /// Indices of dropped reasoning blocks or items so far.
    dropped: Vec<u64>,
}

impl SseStripper {
    pub fn new(dialect: Dialect) -> SseStripper {
        SseStripper {
            dialect,
            pending: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// Feeds bytes; returns what can be sent now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..end + 2).collect();
            if let Some(kept) = self.event(&event) {
                out.extend_from_slice(&kept);
            }
        }
        out
    }

    /// Whatever is left at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.event(&rest).unwrap_or_default()
    }

    fn event(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        let text = String::from_utf8_lossy(raw);
        let mut out = String::new();
        for line in text.split_inclusive('\n') {
            let Some(data) = line
                .strip_prefix("data: ")
                .or_else(|| line.strip_prefix("data:"))
            else {
                out.push_str(line);
                continue;
            };
            let data = data.trim_end_matches(['\r', '\n']);
            let Ok(mut v) = serde_json::from_str::<Value>(data) else {
                out.push_str(line);
                continue;
            };
            if !api(self.dialect).strip_event(&mut v, &mut self.dropped) {
                return None;
            }
            out.push_str("data: ");
            out.push_str(&v.to_string());
            out.push('\n');
        }
        Some(out.into_bytes())
    }
}

/// Wraps a streaming body of `dialect` so that reasoning is stripped as it
/// passes. (SSE events end with a blank line; an unterminated tail is not
/// sent.)
pub fn strip_stream(dialect: Dialect, body: Body) -> Body {
    let mut stripper = SseStripper::new(dialect);
    Body::from_stream(
        body.into_data_stream()
            .map(move |r| r.map(|b| Bytes::from(stripper.feed(&b)))),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_answers_lose_reasoning_only() {
        let o = br#"{"choices":[{"message":{"role":"assistant","content":"4","reasoning_content":"2+2"}}]}"#;
        let s = String::from_utf8(strip_json(Dialect::OpenAi, o).unwrap()).unwrap();
        assert!(s.contains("\"content\":\"4\"") && !s.contains("reasoning"));
        let a = br#"{"content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"4"}]}"#;
        let s = String::from_utf8(strip_json(Dialect::Anthropic, a).unwrap()).unwrap();
        assert!(!s.contains("thinking") && s.contains("\"text\":\"4\""));
    }

    #[test]
    fn anthropic_streams_drop_thinking_blocks_and_renumber() {
        let events = [
            r#"{"type":"message_start"}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"secret"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"hi"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let stream: String = events
            .iter()
            .map(|e| format!("event: x\ndata: {e}\n\n"))
            .collect();
        let mut st = SseStripper::new(Dialect::Anthropic);
        // Fed in awkward pieces.
        let mut out = Vec::new();
        for piece in stream.as_bytes().chunks(7) {
            out.extend(st.feed(piece));
        }
        out.extend(st.finish());
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("secret") && !text.contains("thinking"));
        assert!(
            text.contains(r#""index":0,"delta":{"text":"hi","type":"text_delta"}"#)
                || text.contains(r#""delta":{"text":"hi","type":"text_delta"},"index":0"#),
            "{text}"
        );
        assert_eq!(text.matches("data: ").count(), 5);
        // OpenAI deltas keep their content.
        let mut st = SseStripper::new(Dialect::OpenAi);
        let o = st.feed(b"data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"x\",\"content\":\"y\"}}]}\n\ndata: [DONE]\n\n");
        let o = String::from_utf8(o).unwrap();
        assert!(
            !o.contains("reasoning") && o.contains("\"content\":\"y\"") && o.contains("[DONE]")
        );
    }
}
