/*!
One request as the gateway saw it, handed off when its answer ends.

The request path only collects what it already has (the raw body, who
sent it, the metered answer) and queues it. Normalising the body into an
[`Event`], computing per-request signals and formatting the log line happen
on the detector and log threads, so none of that adds to a response's
latency.
*/

use std::sync::Arc;

use axum::body::Bytes;
use distillguard_core::{ClientInfo, Event, Response, Timestamp};
use serde_json::{Value, json};

use crate::dialect::{Dialect, api};

/// A finished request.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The event's id: unique across replicas and restarts (see
    /// `state::EventIds`); the bus deduplicates by it.
    pub id: String,
    /// Milliseconds since the epoch, when the request arrived.
    pub ts_ms: i64,
    pub account: String,
    pub key_id: Option<String>,
    pub path: &'static str,
    pub dialect: Dialect,
    /// The raw request body (JSON, checked on arrival).
    pub body: Bytes,
    /// The body, normalised on arrival (`None`: normalise it from `body`).
    pub request: Option<distillguard_core::Request>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The metered answer (`None`: it never came).
    pub response: Option<Response>,
    /// The status the client got.
    pub status: u16,
    /// To the answer's end.
    pub latency_ms: f64,
    /// The batch it came in (its id and `custom_id`).
    pub batch: Option<distillguard_core::event::BatchRef>,
}

impl Observed {
    /// The event the detectors consume (`None` if the body does not
    /// normalise, which the read phase mostly rules out).
    pub fn event(&self) -> Option<Event> {
        let d = self.dialect;
        let (dialect, request) = match &self.request {
            Some(r) => (d, r.clone()),
            None => {
                let text = std::str::from_utf8(&self.body).ok()?;
                distillguard_core::normalize::normalize_request(text, Some(d)).ok()?
            }
        };
        Some(Event {
            id: Some(self.id.clone()),
            ts: Timestamp(self.ts_ms),
            account_id: self.account.clone(),
            api_key_id: self.key_id.clone(),
            endpoint: Some(self.path.to_string()),
            dialect,
            model: request.model.clone(),
            request,
            response: self.response.clone(),
            status: Some(self.status),
            latency_ms: Some(self.latency_ms),
            client: ClientInfo {
                ip: self.ip.clone(),
                user_agent: self.user_agent.clone(),
                ..Default::default()
            },
            account: None,
            batch: self.batch.clone(),
        })
    }

    /// The line of the event-log format (`docs/event-log.md`). The request
    /// body is kept as sent; the answer is kept as its accounting (usage,
    /// finish reason, reasoning and tool-call counts) in the API's own
    /// shape, without its text.
    pub fn log_line(&self) -> String {
        let request: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let response = self.response.as_ref().map(|r| api(self.dialect).summary(r));
        let mut line = json!({
            "id": self.id,
            "ts": Timestamp(self.ts_ms).to_string(),
            "account_id": self.account,
            "api_key_id": self.key_id,
            "endpoint": self.path,
            "request": request,
            "response": response,
            "status": self.status,
            "latency_ms": (self.latency_ms * 1000.0).round() / 1000.0,
            "client": {"ip": self.ip, "user_agent": self.user_agent},
        });
        if let Some(b) = &self.batch {
            line["batch"] = json!({"id": b.id, "custom_id": b.custom_id});
        }
        line.to_string()
    }
}

/// What the gateway puts on the event bus: a request it served (its
/// event-log line, the body as sent), or an event it was handed already
/// parsed (`POST /v1/events`, OTLP spans: the line's normalised form,
/// which every reader of the event log reads back as the same event).
pub enum Published {
    Served(Arc<Observed>),
    /// An event with an id (the bus deduplicates by it).
    Ingested {
        id: String,
        event: Box<Event>,
    },
}

impl distillguard_bus::publish::Item for Published {
    fn id(&self) -> &str {
        match self {
            Published::Served(o) => &o.id,
            Published::Ingested { id, .. } => id,
        }
    }
    fn account(&self) -> &str {
        match self {
            Published::Served(o) => &o.account,
            Published::Ingested { event, .. } => &event.account_id,
        }
    }
    fn line(&self) -> String {
        match self {
            Published::Served(o) => o.log_line(),
            Published::Ingested { event, .. } => {
                distillguard_core::normalize::normalized_line(event)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn observed(d: Dialect, body: &str) -> Observed {
        Observed {
            id: "ev_test_1".into(),
            ts_ms: 1_771_200_000_000,
            account: "acct_1".into(),
            key_id: Some("0123456789ab".into()),
            path: d.endpoint(),
            dialect: d,
            body: Bytes::from(body.to_string()),
            request: None,
            ip: Some("203.0.113.7".into()),
            user_agent: Some("python-httpx/0.27".into()),
            response: Some(Response {
                input_tokens: Some(12),
                output_tokens: Some(300),
                reasoning_tokens: None,
                reasoning_returned: true,
                finish_reason: Some("stop".into()),
                choices: 1,
                tool_calls: 2,
                output_chars: 0,
                id: None,
            }),
            status: 200,
            latency_ms: 12.5,
            batch: None,
        }
    }

    #[test]
    fn the_log_line_replays_into_the_same_event() {
        for (d, body) in [
            (
                Dialect::OpenAi,
                r#"{"model":"atlas-3","messages":[{"role":"user","content":"Explain TCP step by step"}]}"#,
            ),
            (
                Dialect::Anthropic,
                r#"{"model":"atlas-3","max_tokens":64,"messages":[{"role":"user","content":"Explain TCP"}]}"#,
            ),
            (
                Dialect::Responses,
                r#"{"model":"atlas-3","instructions":"Think first.","input":"Explain TCP"}"#,
            ),
        ] {
            let o = observed(d, body);
            let live = o.event().unwrap();
            let replayed = distillguard_core::normalize::parse_event_line(&o.log_line()).unwrap();
            assert_eq!(replayed.request, live.request);
            assert_eq!(replayed.dialect, d);
            assert_eq!(replayed.account_id, "acct_1");
            assert_eq!(replayed.status, Some(200));
            let r = replayed.response.unwrap();
            assert!(r.reasoning_returned);
            assert_eq!((r.output_tokens, r.tool_calls), (Some(300), 2));
            assert_eq!(r.finish_reason.as_deref(), Some("stop"));
            assert_eq!(replayed.client.ip.as_deref(), Some("203.0.113.7"));
        }
    }
}
