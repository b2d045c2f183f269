/*!
Sources in foreign formats, converted into the event log or read as
events directly.

Each importer turns another tool's records into event-log lines (and truth
records where the source is labelled), or, for other gateways' logs
(LiteLLM, OpenTelemetry, Kong, Helicone), into events line by line ([`Parse`]), so
every command, the ingest endpoint and the scoreboard work on them
unchanged.
*/

use serde_json::Value;

use crate::error::EventError;
use crate::event::{Dialect, Event, Request, Response};

pub mod batch;
pub mod glasswally;
pub mod helicone;
pub mod kong;
pub mod litellm;
pub mod otel;
pub mod otlp_proto;

/// How a line of a log becomes events: one a line, or several (an
/// OpenTelemetry export request holds many spans).
#[derive(Clone, Copy)]
pub enum Parse {
    One(fn(&str) -> Result<Event, EventError>),
    Many(fn(&str) -> Result<Vec<Event>, EventError>),
}

impl Parse {
    /// The parser of a log format by name (`events`, `litellm`, `otlp`,
    /// `kong`, `helicone`); LiteLLM's account from `account`.
    pub fn by_name(format: &str, account: litellm::AccountFrom) -> Option<Parse> {
        Some(match format {
            "events" => Parse::One(crate::parse_event_line),
            "litellm" => Parse::One(account.parser()),
            "otlp" => Parse::Many(otel::parse_line),
            "kong" => Parse::One(kong::parse_line),
            "helicone" => Parse::Many(helicone::parse_line),
            _ => return None,
        })
    }

    /// The events of one line.
    pub fn events(self, line: &str) -> Result<Each<Event>, EventError> {
        Ok(match self {
            Parse::One(p) => Each::One(p(line)?),
            Parse::Many(p) => Each::Many(p(line)?),
        })
    }
}

/// What one line gives: a value, or several (no allocation for one).
pub enum Each<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Each<T> {
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Each<U> {
        match self {
            Each::One(t) => Each::One(f(t)),
            Each::Many(v) => Each::Many(v.into_iter().map(f).collect()),
        }
    }

    pub fn try_for_each<E>(self, mut f: impl FnMut(T) -> Result<(), E>) -> Result<(), E> {
        match self {
            Each::One(t) => f(t),
            Each::Many(v) => v.into_iter().try_for_each(f),
        }
    }
}

/// An error inside a body nested in a log line, named under `at`.
/// An imported request: what every format gives (its API, its body and
/// answer, the account), with the rest left empty for the format to fill
/// where it has it, never invented.
fn imported(
    ts: crate::Timestamp,
    account_id: String,
    dialect: Dialect,
    request: Request,
    response: Option<Response>,
) -> Event {
    Event {
        id: None,
        ts,
        account_id,
        api_key_id: None,
        endpoint: Some(dialect.endpoint().to_string()),
        dialect,
        model: request.model.clone(),
        request,
        response,
        status: None,
        latency_ms: None,
        client: crate::event::ClientInfo::default(),
        account: None,
        batch: None,
    }
}

fn under(at: &str, e: EventError) -> EventError {
    match e {
        EventError::Field { path, reason } => EventError::Field {
            path: format!("{at} ({path})"),
            reason,
        },
        other => other,
    }
}

/// A request body given as JSON (a log's copy of it), normalised; its
/// errors named under `at`. The body is written out and read again: the
/// normaliser reads text, as the event log holds it.
fn request_from_value(
    body: &Value,
    hint: Option<Dialect>,
    at: &str,
) -> Result<(Dialect, Request), EventError> {
    let text = serde_json::to_string(body).map_err(|e| EventError::Invalid(e.to_string()))?;
    crate::normalize::normalize_request(&text, hint).map_err(|e| under(at, e))
}

/// A body a log kept as JSON text or as an object.
fn logged_body(v: Option<&Value>) -> Option<Value> {
    match v? {
        Value::String(s) => serde_json::from_str(s).ok(),
        o @ Value::Object(_) => Some(o.clone()),
        _ => None,
    }
}

/// A request as a gateway's log kept it (or did not: payload logging off):
/// what is missing is left empty, except the model the log names beside
/// it; normalised, errors named under `at`.
fn logged_request(
    body: Option<Value>,
    model: Option<&str>,
    hint: Option<Dialect>,
    at: &str,
) -> Result<(Dialect, Request), EventError> {
    let mut body = match body {
        Some(Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    if !body.contains_key("messages") && !body.contains_key("input") {
        body.insert("messages".into(), Value::Array(Vec::new()));
    }
    if !body.contains_key("model")
        && let Some(m) = model
    {
        body.insert("model".into(), Value::String(m.to_string()));
    }
    request_from_value(&Value::Object(body), hint, at)
}

/// A response body given as JSON, normalised; its errors named under `at`.
fn response_from_value(body: &Value, at: &str) -> Result<Response, EventError> {
    let text = serde_json::to_string(body).map_err(|e| EventError::Invalid(e.to_string()))?;
    crate::normalize::normalize_response(&text).map_err(|e| under(at, e))
}

/// Token counts a log gives beside the response body: they fill what the
/// body lacks (a response is made when there is none).
fn fill_usage(response: &mut Option<Response>, input: Option<u32>, output: Option<u32>) {
    if input.is_some() || output.is_some() {
        let r = response.get_or_insert_with(Response::default);
        r.input_tokens = r.input_tokens.or(input);
        r.output_tokens = r.output_tokens.or(output);
    }
}
