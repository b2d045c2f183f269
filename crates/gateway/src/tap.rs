/*!
The answer on its way back: metered, watched, and accounted when it ends.

[`Tapped`] wraps the response body that goes to the client. As frames pass
it:
- **meters** them ([`Meter`]): tokens, whether reasoning came back (after
  any withholding: what the client received), tool calls, the finish reason.
  It reads the `usage` an upstream reports (OpenAI's last chunk, Anthropic's
  `message_start` and `message_delta`, a JSON answer's `usage`); without it,
  output tokens are estimated at four characters each;
- **watches for stalls**: no frame for `idle` (a slow drip, a hung
  upstream) ends the answer;
- **turns upstream faults into API errors**: a reset or a stall mid-stream
  ends an SSE answer with an error event in the API's format (`data:
  {"error": …}` for OpenAI, `event: error` for Anthropic), which the
  official SDKs raise as exceptions. SSE is passed on whole events at a
  time, so that a client never sees half an event before the error; a
  JSON answer is cut off, so the client sees a broken read, never a hang;
- **accounts** when the body ends, fails or is dropped (the client went
  away): the callback gets the metered [`Response`] and the [`Outcome`].
  That is where the event is completed and sent to the detector, so the
  response never waits for scoring.

Cost: one JSON parse per SSE event, and a copy of a non-streamed JSON answer
(up to 8 MiB) to read its `usage` at the end.
*/

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use distillguard_core::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde_json::Value;

use crate::dialect::{Dialect, Metered, api};

/// How an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream finished and the client got everything.
    Complete,
    /// The upstream failed part-way (reset, broken body).
    UpstreamError,
    /// The upstream sent nothing for the idle timeout.
    Stalled,
    /// The client closed the connection first.
    ClientGone,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Complete,
        Outcome::UpstreamError,
        Outcome::Stalled,
        Outcome::ClientGone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Stalled => "stalled",
            Outcome::ClientGone => "client_gone",
        }
    }
}

/// Largest JSON answer kept to read its usage.
const JSON_CAP: usize = 8 << 20;

/// Reads an answer's accounting from its bytes (JSON or SSE).
pub struct Meter {
    dialect: Dialect,
    sse: bool,
    /// SSE: the incomplete line; JSON: the body so far.
    buf: Vec<u8>,
    metered: Metered,
}

impl Meter {
    pub fn new(dialect: Dialect, sse: bool) -> Meter {
        Meter {
            dialect,
            sse,
            buf: Vec::new(),
            metered: Metered::default(),
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.sse {
            if self.buf.len() + bytes.len() <= JSON_CAP {
                self.buf.extend_from_slice(bytes);
            }
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[start..start + nl];
            start += nl + 1;
            let Some(data) = line
                .strip_prefix(b"data:")
                .map(|d| d.strip_prefix(b" ").unwrap_or(d))
            else {
                continue;
            };
            let data = data.strip_suffix(b"\r").unwrap_or(data);
            if let Ok(v) = serde_json::from_slice::<Value>(data) {
                api(self.dialect).meter_event(&v, &mut self.metered);
            }
        }
        self.buf.drain(..start);
    }

    /// The answer's accounting.
    pub fn finish(self) -> Response {
        if !self.sse {
            return std::str::from_utf8(&self.buf)
                .ok()
                .and_then(|t| distillguard_core::normalize::normalize_response(t).ok())
                .map(|mut r| {
                    estimate(&mut r);
                    r
                })
                .unwrap_or_default();
        }
        let Metered {
            mut out,
            tools,
            chars,
        } = self.metered;
        out.output_chars = chars;
        out.tool_calls += tools.len() as u32;
        estimate(&mut out);
        out
    }
}

/// Output tokens at four characters each when the upstream reported none.
fn estimate(r: &mut Response) {
    if r.output_tokens.is_none() && r.output_chars > 0 {
        r.output_tokens = Some(r.output_chars.div_ceil(4).min(u64::from(u32::MAX)) as u32);
    }
}

/// Called once when the answer ends; may return an acknowledgement to
/// wait for before the client gets the answer's last bytes (the event
/// log's `sync` durability).
pub type OnEnd = Box<dyn FnOnce(Response, Outcome) -> Option<Ack> + Send>;

/// Resolves once the request's event-log line is on disk; an error means
/// it could not be logged.
pub type Ack = tokio::sync::oneshot::Receiver<()>;

enum State {
    Open,
    /// Send this error event, then end.
    Failing(Option<Bytes>),
    /// The answer is complete upstream; its last frame (if any) waits for
    /// the log's acknowledgement.
    Syncing {
        last: Option<Frame<Bytes>>,
        ack: Ack,
    },
    Done,
}

/// The response body the client reads; see the module doc.
pub struct Tapped {
    inner: Body,
    meter: Option<Meter>,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    state: State,
    outcome: Outcome,
    on_end: Option<OnEnd>,
    /// SSE: the incomplete event, held until its blank line.
    held: Vec<u8>,
}

/// End of the last complete SSE event in `b` (after its blank line).
fn event_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).rev().find_map(|i| {
        if b[i] != b'\n' || i == 0 {
            return None;
        }
        if b[i - 1] == b'\n' {
            return Some(i + 1);
        }
        (i >= 3 && &b[i - 3..i] == b"\r\n\r").then_some(i + 1)
    })
}

impl Tapped {
    pub fn new(inner: Body, meter: Meter, idle: Duration, on_end: OnEnd) -> Tapped {
        Tapped {
            inner,
            meter: Some(meter),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            state: State::Open,
            outcome: Outcome::ClientGone,
            on_end: Some(on_end),
            held: Vec::new(),
        }
    }

    fn end(&mut self, outcome: Outcome) -> Option<Ack> {
        self.outcome = outcome;
        match (self.on_end.take(), self.meter.take()) {
            (Some(f), Some(m)) => f(m.finish(), outcome),
            _ => None,
        }
    }

    /// The answer is complete: hand `last` out now, or once the log has
    /// acknowledged the request.
    fn finish(&mut self, last: Option<Frame<Bytes>>) -> Option<Frame<Bytes>> {
        match self.end(Outcome::Complete) {
            Some(ack) => {
                self.state = State::Syncing { last, ack };
                None
            }
            None => {
                self.state = State::Done;
                last
            }
        }
    }

    /// What the client gets when the upstream fails mid-answer: an SSE
    /// error event, or (JSON) nothing: the body is cut off.
    fn error_event(&self, why: &str) -> Option<Bytes> {
        let m = self.meter.as_ref()?;
        if !m.sse {
            return None;
        }
        Some(Bytes::from(api(m.dialect).stream_error(why)))
    }

    fn fail(&mut self, outcome: Outcome, why: &str) {
        let ev = self.error_event(why);
        self.outcome = outcome;
        self.state = State::Failing(ev);
    }
}

impl HttpBody for Tapped {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Syncing { last, ack } => {
                    let acked = match Pin::new(ack).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(r) => r.is_ok(),
                    };
                    let last = last.take();
                    this.state = State::Done;
                    if !acked {
                        // Not on disk: the client must not take the answer
                        // as complete.
                        return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other(
                            "the request could not be logged durably",
                        )))));
                    }
                    return Poll::Ready(last.map(Ok));
                }
                State::Failing(ev) => {
                    let ev = ev.take();
                    this.state = State::Done;
                    let outcome = this.outcome;
                    // A failed answer is not acknowledged: nothing to wait for.
                    let _ = this.end(outcome);
                    return Poll::Ready(match ev {
                        Some(b) => Some(Ok(Frame::data(b))),
                        None => Some(Err(axum::Error::new(std::io::Error::other(
                            "the upstream failed mid-answer",
                        )))),
                    });
                }
                State::Open => {}
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                    let sse = this.meter.as_ref().is_some_and(|m| m.sse);
                    let Some(d) = frame.data_ref() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    if let Some(m) = this.meter.as_mut() {
                        m.feed(d);
                    }
                    if !sse {
                        // A body of known length may be dropped as soon as
                        // its last byte is out, without a final poll.
                        if this.inner.is_end_stream() {
                            match this.finish(Some(frame)) {
                                Some(f) => return Poll::Ready(Some(Ok(f))),
                                None => continue,
                            }
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    this.held.extend_from_slice(d);
                    if let Some(end) = event_end(&this.held) {
                        let rest = this.held.split_off(end);
                        let whole = std::mem::replace(&mut this.held, rest);
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(whole)))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.fail(
                        Outcome::UpstreamError,
                        &format!("the model server failed mid-answer: {e}"),
                    );
                }
                Poll::Ready(None) => {
                    let tail = (!this.held.is_empty())
                        .then(|| Frame::data(Bytes::from(std::mem::take(&mut this.held))));
                    let waiting = tail.is_none();
                    match this.finish(tail) {
                        Some(f) => return Poll::Ready(Some(Ok(f))),
                        None if waiting && matches!(this.state, State::Done) => {
                            return Poll::Ready(None);
                        }
                        None => continue,
                    }
                }
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let secs = this.idle.as_secs_f64();
                    this.fail(
                        Outcome::Stalled,
                        &format!("the model server sent nothing for {secs}s; answer cut off"),
                    );
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The upstream's (a JSON answer keeps its `Content-Length`; an error
    /// event is only ever added to SSE, which has no length).
    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Open => self.inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for Tapped {
    fn drop(&mut self) {
        // Dropped before its end: the client went away, unless the
        // upstream's body was all read (hyper stops at a known length).
        if self.on_end.is_some() {
            let o = if self.inner.is_end_stream() && self.held.is_empty() {
                Outcome::Complete
            } else {
                Outcome::ClientGone
            };
            let _ = self.end(o);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn metered(d: Dialect, sse: bool, chunks: &[&str]) -> Response {
        let mut m = Meter::new(d, sse);
        for c in chunks {
            m.feed(c.as_bytes());
        }
        m.finish()
    }

    #[test]
    fn openai_stream_usage_reasoning_and_tools_across_split_chunks() {
        let r = metered(
            Dialect::OpenAi,
            true,
            &[
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\nda",
                "ta: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello there\",\"tool_calls\":[{\"index\":0},{\"index\":1}]}}]}\n\n",
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":41,\"completion_tokens_details\":{\"reasoning_tokens\":30}}}\n\ndata: [DONE]\n\n",
            ],
        );
        assert!(r.reasoning_returned);
        assert_eq!(r.tool_calls, 2);
        assert_eq!(r.output_chars, 11);
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.reasoning_tokens),
            (Some(9), Some(41), Some(30))
        );
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn openai_stream_without_usage_is_estimated_and_plain_answers_show_no_reasoning() {
        let r = metered(
            Dialect::OpenAi,
            true,
            &[
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"abcdefghi\"}}]}\n\ndata: [DONE]\n\n",
            ],
        );
        assert!(!r.reasoning_returned);
        assert_eq!(r.output_tokens, Some(3));
    }

    #[test]
    fn anthropic_stream_and_json_answers() {
        let r = metered(
            Dialect::Anthropic,
            true,
            &[
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
                "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\"}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Done.\"}}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":77}}\n\n",
            ],
        );
        assert!(r.reasoning_returned);
        assert_eq!((r.input_tokens, r.output_tokens), (Some(12), Some(77)));
        assert_eq!(r.finish_reason.as_deref(), Some("end_turn"));
        let j = metered(
            Dialect::Anthropic,
            false,
            &[
                "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}],",
                "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":3,\"output_tokens\":5}}",
            ],
        );
        assert!(!j.reasoning_returned);
        assert_eq!(j.output_tokens, Some(5));
    }

    #[test]
    fn event_ends_are_found_for_both_line_endings() {
        assert_eq!(event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(event_end(b"data: a\r\n\r\nx"), Some(11));
        assert_eq!(event_end(b"data: a\n"), None);
    }

    #[test]
    fn garbage_is_metered_as_nothing() {
        let r = metered(
            Dialect::OpenAi,
            true,
            &["data: {not json\n\n", "\u{0}\u{1}"],
        );
        assert_eq!(r.output_tokens, None);
        assert_eq!(
            metered(Dialect::OpenAi, false, &["<html>"]),
            Response::default()
        );
    }
}
