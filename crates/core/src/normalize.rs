/*!
Normalisation of OpenAI Chat Completions, Anthropic Messages and OpenAI
Responses bodies.

Responses bodies carry `input` (a string, or a list of items: messages,
`function_call`, `function_call_output`, `reasoning`) and `instructions`
instead of `messages` and `system`; they are recognised by that, or by
the `/v1/responses` endpoint.

Both dialects are read in one pass into a union of their fields (each body
is a subset of it), then the dialect is decided: by `endpoint` when the line
gives one, else by shape (fields and content types only one dialect has).
Unknown fields are skipped (forward compatible); a field of the wrong type
is an error that names its JSON path, found by a second, slower parse only
when the fast one fails.
*/

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::EventError;
use crate::event::{AccountInfo, ClientInfo, Dialect, Event, Request, Response, Sampling};
use crate::time::Timestamp;

/// The outer shape of a log line. Bodies are parsed in the same pass (the
/// union structs need no dialect to parse; it is decided afterwards), so a
/// line's bytes are scanned once: holding them as raw values first and
/// parsing them again cost a tenth of a read.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(default, borrow)]
    ts: Option<&'a RawValue>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default, borrow)]
    request: Option<Body<'a>>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    api_key_id: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default, borrow)]
    response: Option<ResponseBody<'a>>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    latency_ms: Option<f64>,
    #[serde(default)]
    client: Option<ClientInfo>,
    #[serde(default)]
    account: Option<AccountInfo>,
    #[serde(default)]
    batch: Option<crate::event::BatchRef>,
}

/// The marker of an event-log line that carries an event already
/// normalised (see [`normalized_line`]).
const NORMALIZED: &str = "\"form\":\"normalized\"";

/// An event as one event-log line in its normalised form: the [`Event`]
/// itself, marked `"form":"normalized"`. What a gateway puts on the bus
/// for events it was handed already parsed (`POST /v1/events` in a foreign
/// format, OTLP spans), whose API body it never saw; every reader of the
/// event log reads it back as the same event.
pub fn normalized_line(e: &Event) -> String {
    let text = serde_json::to_string(e).unwrap_or_default();
    match text.strip_prefix('{') {
        Some(rest) => format!("{{{NORMALIZED},{rest}"),
        None => text,
    }
}

/// Parses one event-log line into a normalised [`Event`].
pub fn parse_event_line(line: &str) -> Result<Event, EventError> {
    // The normalised form opens with its marker (as `normalized_line`
    // writes it), so the common form pays one prefix comparison.
    if let Some(rest) = line.trim_start().strip_prefix('{')
        && rest.trim_start().starts_with(NORMALIZED)
    {
        let e: Event = crate::json::parse_at(line, None)?;
        if e.account_id.is_empty() {
            return Err(EventError::Field {
                path: "account_id".into(),
                reason: "must not be empty".into(),
            });
        }
        return Ok(e);
    }
    let raw: Line = crate::json::parse_at(line, None)?;
    let ts_raw = raw.ts.ok_or(EventError::Missing("ts"))?;
    let ts_text: &str = serde_json::from_str(ts_raw.get()).map_err(|_| EventError::Field {
        path: "ts".into(),
        reason: "expected an RFC 3339 timestamp string".into(),
    })?;
    let ts = Timestamp::parse(ts_text).map_err(|e| EventError::Field {
        path: "ts".into(),
        reason: e.to_string(),
    })?;
    let account_id = raw.account_id.ok_or(EventError::Missing("account_id"))?;
    if account_id.is_empty() {
        return Err(EventError::Field {
            path: "account_id".into(),
            reason: "must not be empty".into(),
        });
    }
    let body = raw.request.ok_or(EventError::Missing("request"))?;
    let hinted = raw.endpoint.as_deref().and_then(Dialect::from_endpoint);
    let (dialect, mut request) = request_from_body(body, hinted)?;
    if request.model.is_none() {
        request.model = raw.model.clone();
    }
    let response = raw.response.map(response_from_body);
    Ok(Event {
        id: raw.id,
        ts,
        account_id,
        api_key_id: raw.api_key_id,
        endpoint: raw.endpoint,
        dialect,
        model: request.model.clone(),
        request,
        response,
        status: raw.status,
        latency_ms: raw.latency_ms,
        client: raw.client.unwrap_or_default(),
        account: raw.account,
        batch: raw.batch,
    })
}

fn typed<'a, T: Deserialize<'a>>(text: &'a str, prefix: &str) -> Result<T, EventError> {
    crate::json::parse_at(text, Some(prefix))
}

// ---------------------------------------------------------------------------
// Request bodies: the union of both dialects.

#[derive(Deserialize, Default)]
#[serde(expecting = "a JSON object (the raw request body)")]
struct Body<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(default, borrow)]
    messages: Option<Vec<Message<'a>>>,
    /// Anthropic: a string or an array of text blocks.
    #[serde(default, borrow)]
    system: Option<Content<'a>>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<u32>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    tools: Option<Vec<ToolDef>>,
    #[serde(default)]
    reasoning_effort: Option<String>,
    #[serde(default)]
    thinking: Option<Thinking>,
    #[serde(default)]
    stop_sequences: Option<IgnoredAny>,
    #[serde(default)]
    anthropic_version: Option<IgnoredAny>,
    #[serde(default)]
    response_format: Option<IgnoredAny>,
    #[serde(default)]
    frequency_penalty: Option<IgnoredAny>,
    #[serde(default)]
    presence_penalty: Option<IgnoredAny>,
    /// Responses: a string, or a list of items.
    #[serde(default, borrow)]
    input: Option<Content<'a>>,
    #[serde(default, borrow)]
    instructions: Option<Content<'a>>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    reasoning: Option<ReasoningRequest>,
    #[serde(default)]
    previous_response_id: Option<String>,
}

/// Responses `reasoning`: `{effort, summary}`.
#[derive(Deserialize)]
struct ReasoningRequest {
    #[serde(default)]
    effort: Option<String>,
    #[serde(default)]
    summary: Option<String>,
}

#[derive(Deserialize)]
struct Thinking {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    budget_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
    /// OpenAI assistant tool calls.
    #[serde(default)]
    tool_calls: Option<Vec<IgnoredAny>>,
    /// OpenAI tool result messages.
    #[serde(default)]
    tool_call_id: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ToolDef {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    function: Option<FunctionDef>,
}

#[derive(Deserialize)]
struct FunctionDef {
    #[serde(default)]
    name: Option<String>,
}

/// Message content: a string, or an array of typed parts / blocks.
#[derive(Default)]
enum Content<'a> {
    #[default]
    Empty,
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    /// Anthropic `tool_result` content, a Responses message item's
    /// content (nested content).
    #[serde(default, borrow)]
    content: Option<Box<Content<'a>>>,
    /// A Responses input item's role (messages only).
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    /// A Responses `function_call_output` item's output.
    #[serde(default, borrow)]
    output: Option<Box<Content<'a>>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Content<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Content<'a>, E> {
                Ok(Content::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content<'a>, E> {
                Ok(Content::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content<'a>, E> {
                Ok(Content::Text(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Content<'a>, E> {
                Ok(Content::Empty)
            }
            fn visit_none<E: de::Error>(self) -> Result<Content<'a>, E> {
                Ok(Content::Empty)
            }
            fn visit_some<D2: de::Deserializer<'de>>(
                self,
                d: D2,
            ) -> Result<Content<'a>, D2::Error> {
                d.deserialize_any(V(std::marker::PhantomData))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content<'a>, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(2).min(64));
                while let Some(p) = seq.next_element::<Part<'a>>()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Content<'a>, A::Error> {
                // A single block where an array was expected: accept it.
                let p = Part::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Content::Parts(vec![p]))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Counters collected while walking content.
#[derive(Default)]
struct Walk {
    chars: u64,
    images: u32,
    tool_uses: u32,
    tool_results: u32,
    anthropic_marks: u32,
    openai_marks: u32,
}

impl Content<'_> {
    /// Appends the text parts to `out` (if given) and counts the rest.
    fn walk(&self, out: Option<&mut String>, w: &mut Walk) {
        match self {
            Content::Empty => {}
            Content::Text(t) => {
                w.chars += t.chars().count() as u64;
                if let Some(o) = out {
                    o.push_str(t);
                }
            }
            Content::Parts(parts) => {
                let mut out = out;
                for p in parts {
                    match p.kind.as_deref() {
                        Some("text") | Some("input_text") | Some("output_text") | None => {
                            if let Some(t) = &p.text {
                                w.chars += t.chars().count() as u64;
                                if let Some(o) = out.as_deref_mut() {
                                    if !o.is_empty() {
                                        o.push('\n');
                                    }
                                    o.push_str(t);
                                }
                            }
                        }
                        Some("image") => {
                            w.images += 1;
                            w.anthropic_marks += 1;
                        }
                        Some("image_url") | Some("input_image") => {
                            w.images += 1;
                            w.openai_marks += 1;
                        }
                        Some("tool_use") => {
                            w.tool_uses += 1;
                            w.anthropic_marks += 1;
                        }
                        Some("tool_result") => {
                            w.tool_results += 1;
                            w.anthropic_marks += 1;
                            if let Some(c) = &p.content {
                                // Counted, never taken as the user's words.
                                c.walk(None, w);
                            }
                        }
                        Some("thinking") | Some("redacted_thinking") | Some("document") => {
                            w.anthropic_marks += 1;
                        }
                        Some("input_audio") | Some("file") | Some("input_file") => {
                            w.openai_marks += 1
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
}

/// Normalises a raw request body. `hint` is the dialect the endpoint names.
pub fn normalize_request(
    body: &str,
    hint: Option<Dialect>,
) -> Result<(Dialect, Request), EventError> {
    if !body.trim_start().starts_with('{') {
        return Err(EventError::Field {
            path: "request".into(),
            reason: "expected a JSON object (the raw request body)".into(),
        });
    }
    request_from_body(typed(body, "request")?, hint)
}

fn request_from_body(mut b: Body, hint: Option<Dialect>) -> Result<(Dialect, Request), EventError> {
    if b.messages.is_none() && (b.input.is_some() || hint == Some(Dialect::Responses)) {
        return responses_request(b);
    }
    let messages = b
        .messages
        .take()
        .ok_or(EventError::Missing("request.messages"))?;

    let mut w = Walk::default();
    let mut req = Request {
        model: b.model,
        ..Request::default()
    };
    let mut system = String::new();
    if let Some(s) = &b.system {
        w.anthropic_marks += 1;
        s.walk(Some(&mut system), &mut w);
    }
    let mut last_user: Option<usize> = None;
    for (i, m) in messages.iter().enumerate() {
        match &*m.role {
            "system" | "developer" => {
                w.openai_marks += 1;
                if !system.is_empty() {
                    system.push_str("\n\n");
                }
                if let Some(c) = &m.content {
                    c.walk(Some(&mut system), &mut w);
                }
                continue;
            }
            "user" => {
                req.user_turns += 1;
                last_user = Some(i);
            }
            "assistant" | "model" => req.assistant_turns += 1,
            "tool" | "function" => {
                w.openai_marks += 1;
                w.tool_results += 1;
            }
            _ => {}
        }
        req.depth += 1;
        if let Some(tc) = &m.tool_calls {
            w.openai_marks += 1;
            w.tool_uses += tc.len() as u32;
        }
        if m.tool_call_id.is_some() {
            w.openai_marks += 1;
        }
        if let Some(c) = &m.content {
            c.walk(None, &mut w);
        }
    }
    if let Some(i) = last_user {
        let mut text = String::new();
        if let Some(c) = &messages[i].content {
            let mut scratch = Walk::default();
            c.walk(Some(&mut text), &mut scratch);
        }
        req.last_user_text = text;
    }
    if !system.is_empty() {
        req.system_prompt = Some(system);
    }
    if let Some(tools) = &b.tools {
        for t in tools {
            let name = t
                .function
                .as_ref()
                .and_then(|f| f.name.clone())
                .or_else(|| match (&t.kind, &t.name) {
                    // Anthropic server tools (computer use, bash, editor) are
                    // recognised by their versioned type.
                    (Some(k), _) if k != "function" && k != "custom" => Some(k.clone()),
                    (_, Some(n)) => Some(n.clone()),
                    _ => None,
                });
            if t.function.is_some() {
                w.openai_marks += 1;
            } else if t.name.is_some() {
                w.anthropic_marks += 1;
            }
            if let Some(n) = name {
                req.tools.push(n);
            }
        }
    }
    if b.top_k.is_some() || b.stop_sequences.is_some() || b.anthropic_version.is_some() {
        w.anthropic_marks += 1;
    }
    if b.thinking.is_some() {
        w.anthropic_marks += 1;
    }
    if b.n.is_some()
        || b.logprobs.is_some()
        || b.max_completion_tokens.is_some()
        || b.reasoning_effort.is_some()
        || b.response_format.is_some()
        || b.frequency_penalty.is_some()
        || b.presence_penalty.is_some()
    {
        w.openai_marks += 1;
    }
    req.tool_calls = w.tool_uses;
    req.tool_results = w.tool_results;
    req.images = w.images;
    req.prompt_chars = w.chars;
    let reasoning = match (&b.reasoning_effort, &b.thinking) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(t)) if t.kind.as_deref() != Some("disabled") => Some(
            t.budget_tokens
                .map(|n| n.to_string())
                .unwrap_or_else(|| "enabled".into()),
        ),
        _ => None,
    };
    req.sampling = Sampling {
        max_tokens: b.max_completion_tokens.or(b.max_tokens),
        temperature: b.temperature,
        top_p: b.top_p,
        top_k: b.top_k,
        n: b.n,
        logprobs: b.logprobs.unwrap_or(false),
        top_logprobs: b.top_logprobs,
        seed: b.seed,
        stream: b.stream.unwrap_or(false),
        reasoning,
        reasoning_summary: false,
    };
    let dialect = hint.unwrap_or(if w.anthropic_marks > w.openai_marks {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    });
    Ok((dialect, req))
}

/// A Responses API body (`input` items, `instructions`).
fn responses_request(b: Body) -> Result<(Dialect, Request), EventError> {
    let input = b.input.ok_or(EventError::Missing("request.input"))?;
    let mut w = Walk::default();
    let mut req = Request {
        model: b.model,
        continues: b.previous_response_id.is_some(),
        previous_response_id: b.previous_response_id.clone(),
        ..Request::default()
    };
    let mut system = String::new();
    if let Some(i) = &b.instructions {
        i.walk(Some(&mut system), &mut w);
    }
    let mut last_user: Option<&Content> = None;
    let user_text = Content::Empty;
    let items: &[Part] = match &input {
        // A bare string is one user turn.
        Content::Text(_) => {
            req.user_turns = 1;
            req.depth = 1;
            input.walk(None, &mut w);
            last_user = Some(&input);
            &[]
        }
        Content::Parts(p) => p,
        Content::Empty => &[],
    };
    // An assistant turn is one step of depth, as in Chat Completions,
    // whether it is a message, tool calls, or a message and its calls.
    let mut in_assistant_turn = false;
    for item in items {
        let kind = item.kind.as_deref();
        let calls = matches!(kind, Some("function_call" | "custom_tool_call"));
        let assistant = calls || item.role.as_deref() == Some("assistant");
        let continues_turn = in_assistant_turn && assistant;
        in_assistant_turn = assistant;
        match (kind, item.role.as_deref()) {
            (Some("message") | None, Some(role)) => {
                let content = item.content.as_deref().unwrap_or(&user_text);
                match role {
                    "system" | "developer" => {
                        if !system.is_empty() {
                            system.push_str("\n\n");
                        }
                        content.walk(Some(&mut system), &mut w);
                        continue;
                    }
                    "user" => {
                        req.user_turns += 1;
                        last_user = Some(content);
                    }
                    "assistant" if continues_turn => {}
                    "assistant" => req.assistant_turns += 1,
                    _ => {}
                }
                if !continues_turn {
                    req.depth += 1;
                }
                content.walk(None, &mut w);
            }
            (Some("function_call" | "custom_tool_call"), _) => {
                if !continues_turn {
                    req.depth += 1;
                    req.assistant_turns += 1;
                }
                w.tool_uses += 1;
            }
            (Some("function_call_output" | "custom_tool_call_output"), _) => {
                req.depth += 1;
                w.tool_results += 1;
                // Counted, never taken as the user's words.
                if let Some(o) = &item.output {
                    o.walk(None, &mut w);
                }
            }
            // Reasoning items handed back, item references, server-side
            // tool calls: part of the conversation, not of its text.
            _ => {}
        }
    }
    if let Some(c) = last_user {
        let mut text = String::new();
        c.walk(Some(&mut text), &mut Walk::default());
        req.last_user_text = text;
    }
    if !system.is_empty() {
        req.system_prompt = Some(system);
    }
    if let Some(tools) = &b.tools {
        // Responses tools are flat: `{type: "function", name}`, or a
        // built-in tool by its type (`web_search`, `code_interpreter`, …).
        req.tools = tools
            .iter()
            .filter_map(|t| match (&t.name, &t.kind) {
                (Some(n), _) => Some(n.clone()),
                (None, Some(k)) => Some(k.clone()),
                _ => t.function.as_ref().and_then(|f| f.name.clone()),
            })
            .collect();
    }
    req.tool_calls = w.tool_uses;
    req.tool_results = w.tool_results;
    req.images = w.images;
    req.prompt_chars = w.chars;
    let (effort, summary) = match b.reasoning {
        Some(r) => (r.effort, r.summary),
        None => (None, None),
    };
    let summary = summary.filter(|s| !s.is_empty() && s != "none");
    req.sampling = Sampling {
        max_tokens: b.max_output_tokens.or(b.max_tokens),
        temperature: b.temperature,
        top_p: b.top_p,
        top_k: None,
        n: None,
        logprobs: false,
        top_logprobs: b.top_logprobs,
        seed: None,
        stream: b.stream.unwrap_or(false),
        reasoning: effort.or_else(|| summary.as_ref().map(|_| "default".to_string())),
        reasoning_summary: summary.is_some(),
    };
    Ok((Dialect::Responses, req))
}

// ---------------------------------------------------------------------------
// Response bodies.

#[derive(Deserialize)]
#[serde(expecting = "a JSON object (the raw response body) or null")]
struct ResponseBody<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    /// Anthropic content blocks.
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
    /// Responses output items.
    #[serde(default, borrow)]
    output: Option<Vec<OutputItem<'a>>>,
    /// Responses: `completed`, `incomplete`, `failed`, …
    #[serde(default)]
    status: Option<String>,
    /// Responses: the answer's id (kept for Responses answers only).
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct OutputItem<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
    /// A reasoning item's summary parts (`summary_text`).
    #[serde(default, borrow)]
    summary: Option<Vec<Part<'a>>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    message: Option<ChoiceMessage<'a>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage<'a> {
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens_details: Option<TokenDetails>,
    /// Responses.
    #[serde(default)]
    output_tokens_details: Option<TokenDetails>,
}

#[derive(Deserialize)]
struct TokenDetails {
    #[serde(default)]
    reasoning_tokens: Option<u32>,
}

/// Normalises a raw response body of either dialect.
pub fn normalize_response(body: &str) -> Result<Response, EventError> {
    Ok(response_from_body(typed(body, "response")?))
}

fn response_from_body(r: ResponseBody) -> Response {
    let mut out = Response::default();
    if r.output.is_some() {
        out.id = r.id.clone();
    }
    let mut w = Walk::default();
    if let Some(choices) = &r.choices {
        out.choices = choices.len() as u32;
        for c in choices {
            if out.finish_reason.is_none() {
                out.finish_reason = c.finish_reason.clone();
            }
            if let Some(m) = &c.message {
                if let Some(content) = &m.content {
                    content.walk(None, &mut w);
                }
                if m.reasoning_content
                    .as_deref()
                    .is_some_and(|s| !s.is_empty())
                    || m.reasoning.as_deref().is_some_and(|s| !s.is_empty())
                {
                    out.reasoning_returned = true;
                }
                out.tool_calls += m.tool_calls.as_ref().map_or(0, |t| t.len() as u32);
            }
        }
    }
    if let Some(content) = &r.content {
        out.choices = out.choices.max(1);
        if let Content::Parts(parts) = content {
            for p in parts {
                match p.kind.as_deref() {
                    Some("thinking") | Some("redacted_thinking") => out.reasoning_returned = true,
                    Some("tool_use") => out.tool_calls += 1,
                    _ => {}
                }
            }
        }
        content.walk(None, &mut w);
        if out.finish_reason.is_none() {
            out.finish_reason = r.stop_reason.clone();
        }
    }
    if let Some(items) = &r.output {
        out.choices = out.choices.max(1);
        for item in items {
            match item.kind.as_deref() {
                // A summary the client can read; `encrypted_content` alone
                // is opaque to it.
                Some("reasoning")
                    if item.summary.as_ref().is_some_and(|s| {
                        s.iter()
                            .any(|p| p.text.as_deref().is_some_and(|t| !t.is_empty()))
                    }) =>
                {
                    out.reasoning_returned = true;
                }
                Some("message") => {
                    if let Some(c) = &item.content {
                        c.walk(None, &mut w);
                    }
                }
                Some("function_call" | "custom_tool_call") => out.tool_calls += 1,
                _ => {}
            }
        }
        if out.finish_reason.is_none() {
            out.finish_reason = r.status.clone();
        }
    }
    out.output_chars = w.chars;
    if let Some(u) = r.usage {
        out.input_tokens = u.prompt_tokens.or(u.input_tokens);
        out.output_tokens = u.completion_tokens.or(u.output_tokens);
        out.reasoning_tokens = u
            .completion_tokens_details
            .or(u.output_tokens_details)
            .and_then(|d| d.reasoning_tokens);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normalised_line_reads_back_as_the_same_event() {
        for line in [OPENAI, ANTHROPIC, RESPONSES] {
            let e = parse_event_line(&line.replace('\n', "")).unwrap();
            let n = normalized_line(&e);
            assert!(n.starts_with("{\"form\":\"normalized\","), "{n}");
            assert_eq!(parse_event_line(&n).unwrap(), e);
        }
        // Bad input is still named.
        let bad = "{\"form\":\"normalized\",\"ts\":\"x\"}";
        assert!(parse_event_line(bad).is_err());
    }

    const OPENAI: &str = r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a1","endpoint":"/v1/chat/completions",
      "request":{"model":"atlas-2","messages":[{"role":"system","content":"You are terse."},
        {"role":"user","content":"hi"},{"role":"assistant","content":"hello","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"42"},
        {"role":"user","content":[{"type":"text","text":"Explain step by step"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}],
        "n":3,"logprobs":true,"top_logprobs":5,"max_completion_tokens":8192,"temperature":0,"seed":7,"stream":true,
        "reasoning_effort":"high","tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}}],"future_field":{"x":1}},
      "response":{"id":"r","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok","reasoning_content":"because"},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":20,"completion_tokens":300,"completion_tokens_details":{"reasoning_tokens":200}}},
      "client":{"ip":"203.0.113.9","asn":64500},"unknown_top":[1,2]}"#;

    const ANTHROPIC: &str = r#"{"ts":"2026-02-24T08:00:00.250+01:00","account_id":"a2","model":"fallback-model",
      "request":{"system":[{"type":"text","text":"Be careful."}],"max_tokens":64000,"top_k":5,
        "thinking":{"type":"enabled","budget_tokens":16000},
        "tools":[{"name":"read_file","input_schema":{}},{"type":"computer_20250124","name":"computer","display_width_px":1024}],
        "messages":[{"role":"user","content":"Fix the bug"},
          {"role":"assistant","content":[{"type":"text","text":"Reading."},{"type":"tool_use","id":"t1","name":"read_file","input":{"path":"a.rs"}}]},
          {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"fn main(){}"}]},{"type":"text","text":"go on"},{"type":"image","source":{"type":"url","url":"https://x/s.png"}}]}]},
      "response":{"type":"message","content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"Done."}],"stop_reason":"end_turn","usage":{"input_tokens":900,"output_tokens":1200}}}"#;

    const RESPONSES: &str = r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a3","endpoint":"/v1/responses",
      "request":{"model":"atlas-3","instructions":"Think it through before answering.",
        "input":[{"role":"developer","content":"Use metric units."},
          {"role":"user","content":[{"type":"input_text","text":"How far is the moon?"}]},
          {"type":"message","role":"assistant","content":[{"type":"output_text","text":"384,400 km."}]},
          {"type":"function_call","call_id":"c1","name":"lookup","arguments":"{}"},
          {"type":"function_call_output","call_id":"c1","output":"ok"},
          {"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAAA"},
          {"role":"user","content":"And the sun? Explain step by step."}],
        "tools":[{"type":"function","name":"lookup","parameters":{}},{"type":"web_search"}],
        "reasoning":{"effort":"high","summary":"detailed"},"max_output_tokens":4096,
        "previous_response_id":"resp_0","store":true,"temperature":0.2},
      "response":{"id":"resp_1","object":"response","status":"completed",
        "output":[{"type":"reasoning","id":"rs_2","summary":[{"type":"summary_text","text":"Distance first."}],"encrypted_content":"gAAAB"},
          {"type":"function_call","call_id":"c2","name":"lookup","arguments":"{}"},
          {"type":"message","role":"assistant","content":[{"type":"output_text","text":"About 150 million km."}]}],
        "usage":{"input_tokens":120,"output_tokens":900,"output_tokens_details":{"reasoning_tokens":700}}}}"#;

    #[test]
    fn responses_api_bodies_normalise_into_the_same_vocabulary() {
        let e = parse_event_line(RESPONSES).unwrap();
        assert_eq!(e.dialect, Dialect::Responses);
        let r = &e.request;
        assert_eq!(
            r.system_prompt.as_deref(),
            Some("Think it through before answering.\n\nUse metric units.")
        );
        assert_eq!(r.last_user_text, "And the sun? Explain step by step.");
        assert_eq!((r.depth, r.user_turns, r.assistant_turns), (4, 2, 1));
        assert_eq!((r.tool_calls, r.tool_results), (1, 1));
        assert_eq!(
            r.tools,
            vec!["lookup".to_string(), "web_search".to_string()]
        );
        assert!(r.continues);
        let s = &r.sampling;
        assert_eq!(s.max_tokens, Some(4096));
        assert_eq!(s.reasoning.as_deref(), Some("high"));
        assert!(s.reasoning_summary);
        assert_eq!(s.temperature, Some(0.2));
        let resp = e.response.unwrap();
        assert!(resp.reasoning_returned);
        assert_eq!(resp.tool_calls, 1);
        assert_eq!(resp.reasoning_tokens, Some(700));
        assert_eq!(
            (resp.input_tokens, resp.output_tokens),
            (Some(120), Some(900))
        );
        assert_eq!(resp.finish_reason.as_deref(), Some("completed"));
        assert_eq!(
            resp.output_chars,
            "About 150 million km.".chars().count() as u64
        );
        // (Depth 4: the assistant message and its call are one turn, as in
        // Chat Completions.)
        // A bare string input, found by shape without an endpoint; only an
        // opaque reasoning item back: no readable reasoning.
        let (d, r) = normalize_request(
            r#"{"model":"m","input":"Write a haiku","reasoning":{"summary":"auto"}}"#,
            None,
        )
        .unwrap();
        assert_eq!(d, Dialect::Responses);
        assert_eq!(
            (r.last_user_text.as_str(), r.depth, r.user_turns),
            ("Write a haiku", 1, 1)
        );
        assert!(r.sampling.reasoning_summary && !r.continues);
        let resp = normalize_response(
            r#"{"status":"incomplete","output":[{"type":"reasoning","summary":[],"encrypted_content":"x"}]}"#,
        )
        .unwrap();
        assert!(!resp.reasoning_returned);
        assert_eq!(resp.finish_reason.as_deref(), Some("incomplete"));
        // On its endpoint, a body with neither input nor messages names
        // what is missing; a wrongly typed item names its path.
        let line = r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","endpoint":"/v1/responses","request":{"model":"m"}}"#;
        assert!(
            parse_event_line(line)
                .unwrap_err()
                .to_string()
                .contains("request.input")
        );
        let bad = r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{"model":"m","input":[{"role":"user","content":7}]}}"#;
        assert!(
            parse_event_line(bad)
                .unwrap_err()
                .to_string()
                .contains("request.input[0].content")
        );
    }

    #[test]
    fn a_conversation_reads_the_same_through_chat_completions_and_responses() {
        let chat = r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},
          {"role":"user","content":"Weather in Paris?"},
          {"role":"assistant","content":"Checking.","tool_calls":[{"id":"c1","type":"function","function":{"name":"weather","arguments":"{}"}},{"id":"c2","type":"function","function":{"name":"time","arguments":"{}"}}]},
          {"role":"tool","tool_call_id":"c1","content":"18C, clear"},
          {"role":"tool","tool_call_id":"c2","content":"14:00"},
          {"role":"assistant","content":null,"tool_calls":[{"id":"c3","type":"function","function":{"name":"weather","arguments":"{}"}}]},
          {"role":"tool","tool_call_id":"c3","content":"19C"},
          {"role":"user","content":"Thanks. And tomorrow?"}],
          "tools":[{"type":"function","function":{"name":"weather"}},{"type":"function","function":{"name":"time"}}],
          "max_tokens":300,"temperature":0.3,"reasoning_effort":"high"}"#;
        let responses = r#"{"model":"m","instructions":"Be brief.","input":[
          {"role":"user","content":"Weather in Paris?"},
          {"role":"assistant","content":"Checking."},
          {"type":"function_call","call_id":"c1","name":"weather","arguments":"{}"},
          {"type":"function_call","call_id":"c2","name":"time","arguments":"{}"},
          {"type":"function_call_output","call_id":"c1","output":"18C, clear"},
          {"type":"function_call_output","call_id":"c2","output":"14:00"},
          {"type":"function_call","call_id":"c3","name":"weather","arguments":"{}"},
          {"type":"function_call_output","call_id":"c3","output":"19C"},
          {"role":"user","content":"Thanks. And tomorrow?"}],
          "tools":[{"type":"function","name":"weather"},{"type":"function","name":"time"}],
          "max_output_tokens":300,"temperature":0.3,"reasoning":{"effort":"high"}}"#;
        let (d1, a) = normalize_request(chat, None).unwrap();
        let (d2, b) = normalize_request(responses, None).unwrap();
        assert_eq!((d1, d2), (Dialect::OpenAi, Dialect::Responses));
        assert_eq!(a, b);
        assert_eq!(
            (a.depth, a.assistant_turns, a.tool_calls, a.tool_results),
            (7, 2, 3, 3)
        );
    }

    #[test]
    fn openai_body_round_trips_into_the_event() {
        let e = parse_event_line(OPENAI).unwrap();
        assert_eq!(e.dialect, Dialect::OpenAi);
        assert_eq!(e.model.as_deref(), Some("atlas-2"));
        let r = &e.request;
        assert_eq!(r.system_prompt.as_deref(), Some("You are terse."));
        assert_eq!(r.last_user_text, "Explain step by step");
        assert_eq!((r.depth, r.user_turns, r.assistant_turns), (4, 2, 1));
        assert_eq!((r.tool_calls, r.tool_results, r.images), (1, 1, 1));
        assert_eq!(r.tools, vec!["get_weather".to_string()]);
        let s = &r.sampling;
        assert_eq!(s.n, Some(3));
        assert!(s.logprobs && s.stream);
        assert_eq!(s.top_logprobs, Some(5));
        assert_eq!(s.max_tokens, Some(8192));
        assert_eq!(s.temperature, Some(0.0));
        assert_eq!(s.reasoning.as_deref(), Some("high"));
        let resp = e.response.unwrap();
        assert!(resp.reasoning_returned);
        assert_eq!(resp.output_tokens, Some(300));
        assert_eq!(resp.reasoning_tokens, Some(200));
        assert_eq!(resp.finish_reason.as_deref(), Some("stop"));
        assert_eq!(e.client.asn, Some(64500));
    }

    #[test]
    fn anthropic_body_detected_by_shape() {
        let e = parse_event_line(ANTHROPIC).unwrap();
        assert_eq!(e.dialect, Dialect::Anthropic);
        assert_eq!(e.model.as_deref(), Some("fallback-model"));
        assert_eq!(e.ts.to_string(), "2026-02-24T07:00:00.250Z");
        let r = &e.request;
        assert_eq!(r.system_prompt.as_deref(), Some("Be careful."));
        // Tool results are never taken as the user's own words.
        assert_eq!(r.last_user_text, "go on");
        assert_eq!((r.depth, r.user_turns, r.assistant_turns), (3, 2, 1));
        assert_eq!((r.tool_calls, r.tool_results, r.images), (1, 1, 1));
        assert_eq!(
            r.tools,
            vec!["read_file".to_string(), "computer_20250124".to_string()]
        );
        assert_eq!(r.sampling.max_tokens, Some(64000));
        assert_eq!(r.sampling.reasoning.as_deref(), Some("16000"));
        let resp = e.response.unwrap();
        assert!(resp.reasoning_returned);
        assert_eq!(
            (resp.input_tokens, resp.output_tokens),
            (Some(900), Some(1200))
        );
        assert_eq!(resp.finish_reason.as_deref(), Some("end_turn"));
    }

    #[test]
    fn endpoint_overrides_shape() {
        let line = r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","endpoint":"/v1/messages",
          "request":{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}}"#;
        assert_eq!(parse_event_line(line).unwrap().dialect, Dialect::Anthropic);
        let bare = line.replace(r#""endpoint":"/v1/messages","#, "");
        assert_eq!(parse_event_line(&bare).unwrap().dialect, Dialect::OpenAi);
    }

    fn err(line: &str) -> String {
        parse_event_line(line).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(r#"{"account_id":"a","request":{"messages":[]}}"#).contains("`ts`"));
        assert!(
            err(r#"{"ts":"2026-02-24T08:00:00Z","request":{"messages":[]}}"#)
                .contains("`account_id`")
        );
        assert!(err(r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a"}"#).contains("`request`"));
        let e = err(r#"{"ts":"yesterday","account_id":"a","request":{"messages":[]}}"#);
        assert!(e.contains("ts") && e.contains("RFC 3339"), "{e}");
        let e = err(
            r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{"messages":[{"role":"user","content":5}]}}"#,
        );
        assert!(e.contains("request.messages[0].content"), "{e}");
        let e = err(
            r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{"max_tokens":"lots","messages":[]}}"#,
        );
        assert!(e.contains("request.max_tokens"), "{e}");
        let e = err(r#"{"ts":"2026-02-24T08:00:00Z","account_id":7,"request":{"messages":[]}}"#);
        assert!(e.contains("account_id"), "{e}");
        let e = err(
            r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{"messages":[]},"response":{"usage":{"output_tokens":-3}}}"#,
        );
        assert!(e.contains("response.usage.output_tokens"), "{e}");
        assert!(
            err(r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":"hi"}"#)
                .contains("JSON object")
        );
        assert!(
            err(r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{}}"#)
                .contains("request.messages")
        );
        assert!(err("not json").contains("invalid JSON"));
    }

    #[test]
    fn truncated_bodies_never_panic() {
        for line in [OPENAI, ANTHROPIC] {
            let compact: String = line.split('\n').map(str::trim).collect();
            assert!(parse_event_line(&compact).is_ok());
            for cut in (0..compact.len()).filter(|i| compact.is_char_boundary(*i)) {
                assert!(parse_event_line(&compact[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn mistyped_values_anywhere_are_errors_not_panics() {
        let compact: String = OPENAI.split('\n').map(str::trim).collect();
        // Replace each scalar value in turn with values of other types.
        let v: serde_json::Value = serde_json::from_str(&compact).unwrap();
        let mut paths = Vec::new();
        collect_paths(&v, String::new(), &mut paths);
        for p in &paths {
            for replacement in [
                serde_json::json!(null),
                serde_json::json!(-1),
                serde_json::json!("x"),
                serde_json::json!([{}]),
                serde_json::json!({"a":1}),
            ] {
                let mut w = v.clone();
                *w.pointer_mut(p).unwrap() = replacement;
                let _ = parse_event_line(&w.to_string());
            }
        }
        assert!(paths.len() > 40);
    }

    fn collect_paths(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    collect_paths(x, format!("{at}/{k}"), out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    collect_paths(x, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        if !at.is_empty() {
            out.push(at);
        }
    }

    /// Random byte-level mutations of valid lines (a deterministic
    /// xorshift stream): flips, insertions, deletions, duplicated spans.
    /// Nothing may panic, and whatever is accepted must be a coherent event.
    #[test]
    fn random_mutations_never_panic() {
        let seeds: Vec<Vec<u8>> = [OPENAI, ANTHROPIC]
            .iter()
            .map(|l| {
                l.split('\n')
                    .map(str::trim)
                    .collect::<String>()
                    .into_bytes()
            })
            .collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        const BYTES: &[u8] = b"{}[]\",:0123456789-.eE \\truefalsnul\xff\xc3\xa9";
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut b = seeds[round % 2].clone();
            for _ in 0..1 + next(4) {
                let at = next(b.len());
                match next(4) {
                    0 => b[at] = BYTES[next(BYTES.len())],
                    1 => b.insert(at, BYTES[next(BYTES.len())]),
                    2 => {
                        let end = (at + 1 + next(16)).min(b.len());
                        b.drain(at..end);
                    }
                    _ => {
                        let end = (at + 1 + next(32)).min(b.len());
                        let span = b[at..end].to_vec();
                        b.splice(at..at, span);
                    }
                }
            }
            if let Ok(text) = std::str::from_utf8(&b)
                && let Ok(e) = parse_event_line(text)
            {
                accepted += 1;
                assert!(!e.account_id.is_empty());
                assert!(serde_json::to_string(&e).is_ok());
            }
        }
        // Some mutations (inside strings) stay valid; most do not.
        assert!(accepted > 100 && accepted < 15_000, "{accepted}");
    }

    #[test]
    fn enormous_bodies_are_handled() {
        let big = "word ".repeat(400_000);
        let many: Vec<String> = (0..5_000)
            .map(|i| {
                format!(
                    r#"{{"role":"{}","content":"m{i}"}}"#,
                    if i % 2 == 0 { "user" } else { "assistant" }
                )
            })
            .collect();
        let line = format!(
            r#"{{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{{"messages":[{},{{"role":"user","content":"{big}"}}]}}}}"#,
            many.join(",")
        );
        let e = parse_event_line(&line).unwrap();
        assert_eq!(e.request.depth, 5_001);
        assert_eq!(e.request.last_user_text.len(), big.len());
        // Deep nesting is refused by the JSON parser's recursion limit, not a stack overflow.
        let deep = format!(
            r#"{{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{{"messages":{}}}}}"#,
            "[".repeat(100_000)
        );
        assert!(parse_event_line(&deep).is_err());
    }
}
