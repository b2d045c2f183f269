/*!
`upstream-mock`: a deterministic model server that speaks the OpenAI and
Anthropic APIs, for tests, demos and benchmarks of the gateway.

Endpoints:
- `POST /v1/chat/completions` (OpenAI): JSON or SSE streaming
  (`"stream": true`), with `reasoning_content` when reasoning is on;
- `POST /v1/messages` (Anthropic): JSON or the SSE event sequence
  (`message_start` … `message_stop`), with a `thinking` block when
  reasoning is on;
- `GET /v1/models`;
- the Batch APIs (`batches.rs`): `POST /v1/files`, `GET /v1/files/{id}`
  and `…/content`, `POST /v1/batches`, `GET /v1/batches/{id}`, and
  `POST /v1/messages/batches`, `GET …/{id}` and `…/{id}/results`; a batch
  completes at once, with the answers its requests get one by one.

Answers are a pure function of the request (model, last user message,
`max_tokens`). The same request gives the same bytes, except for the
server-assigned id, which is also derived from the request. Text comes
from one of two sources:
- `Canned`: fluent-looking filler built from the prompt. It costs
  microseconds, for benchmarks.
- `Teacher`: the reference teacher model, with a KGW watermark under a
  key. Answers through the gateway are then watermarked end to end, and
  `distillguard watermark detect` finds the watermark.

Latency is configurable: a delay before the first token, and one between
streamed chunks.

Faults can be injected, for the gateway's fault tests and for demos
([`Fault`]): an error status, a connection reset part-way through the
answer, a slow drip of bytes, or a server that never answers.
*/

mod batches;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use distillguard_teacher::Teacher;
use distillguard_watermark::Scheme;
use distillguard_watermark::tokenizer::Tokenizer;
use futures_util::stream;
use serde_json::{Value, json};

/// Where answer text comes from.
pub enum Source {
    Canned,
    /// The teacher, watermarked with the scheme.
    Teacher {
        teacher: Box<Teacher>,
        tokenizer: Box<Tokenizer>,
        scheme: Scheme,
    },
}

/// A fault the mock injects into every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an error body in the API's format.
    Status(u16),
    /// Send the first 256 bytes of the answer, then (100 ms later) reset the
    /// connection.
    Reset,
    /// Send the answer 16 bytes at a time, this long apart.
    Drip(Duration),
    /// Accept the request and never answer.
    Hang,
}

/// A `--fault` that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFault(pub String);

impl std::str::FromStr for Fault {
    type Err = BadFault;
    /// `status:503`, `reset`, `drip:2000` (milliseconds), `hang`.
    fn from_str(s: &str) -> Result<Fault, BadFault> {
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let num = |what: &str| {
            arg.parse::<u64>()
                .map_err(|_| BadFault(format!("fault {name:?} needs {what}, as in {name}:N")))
        };
        match name {
            "status" => {
                let n = num("a status")?;
                if !(400..=599).contains(&n) {
                    return Err(BadFault(format!("fault status {n}: use 400 to 599")));
                }
                Ok(Fault::Status(n as u16))
            }
            "reset" => Ok(Fault::Reset),
            "drip" => Ok(Fault::Drip(Duration::from_millis(num("milliseconds")?))),
            "hang" => Ok(Fault::Hang),
            _ => Err(BadFault(format!(
                "unknown fault {s:?}: use status:CODE, reset, drip:MS or hang"
            ))),
        }
    }
}

/// Server settings.
pub struct Config {
    /// Injected into every answer (`None`: behave).
    pub fault: Option<Fault>,
    pub models: Vec<String>,
    pub first_token: Duration,
    pub between_chunks: Duration,
    pub reasoning: bool,
    pub source: Source,
}

struct App {
    cfg: Config,
    /// Files and batches (the Batch APIs).
    store: std::sync::Mutex<batches::Store>,
}

fn fnv(s: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const WORDS: &[&str] = &[
    "the",
    "answer",
    "depends",
    "on",
    "a",
    "few",
    "things",
    "first",
    "consider",
    "how",
    "it",
    "works",
    "in",
    "practice",
    "then",
    "we",
    "can",
    "look",
    "at",
    "each",
    "step",
    "carefully",
    "and",
    "check",
    "that",
    "result",
    "holds",
    "for",
    "this",
    "case",
    "because",
    "data",
    "shows",
    "clear",
    "pattern",
];

/// The answer (and reasoning) to `prompt`, at most `max_tokens` words or tokens.
fn answer(app: &App, prompt: &str, max_tokens: usize) -> (String, Option<String>, usize) {
    let seed = fnv(prompt);
    let reasoning = app.cfg.reasoning.then(|| {
        format!(
            "Let me think about \"{}\" step by step: restate it, recall what applies, then answer.",
            prompt.chars().take(60).collect::<String>()
        )
    });
    match &app.cfg.source {
        Source::Canned => {
            let n = max_tokens.clamp(1, 4096).min(32 + (seed % 64) as usize);
            let mut x = distillguard_sketches::Xorshift::from_state(seed);
            let words: Vec<&str> = (0..n)
                .map(|_| WORDS[(x.next_u64() % WORDS.len() as u64) as usize])
                .collect();
            let mut text = words.join(" ");
            if let Some(first) = text.get(..1) {
                text = first.to_uppercase() + &text[1..];
            }
            text.push('.');
            (text, reasoning, n)
        }
        Source::Teacher {
            teacher,
            tokenizer,
            scheme,
        } => {
            let p = tokenizer.encode(prompt);
            let mut x = distillguard_sketches::Xorshift::from_state(seed);
            let mut next = move || x.next_f64();
            let ids = teacher.generate(&p, max_tokens.clamp(1, 2048), None, |ctx, cand| {
                distillguard_watermark::scheme::sample_sparse(Some(scheme), ctx, cand, &mut next)
            });
            let text = tokenizer.decode(&ids);
            (text, reasoning, ids.len())
        }
    }
}

fn last_user(messages: &Value) -> String {
    let content = messages
        .as_array()
        .and_then(|m| m.iter().rev().find(|x| x["role"] == "user"))
        .map(|m| m["content"].clone())
        .unwrap_or(Value::Null);
    match content {
        Value::String(s) => s,
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn bad_request(kind: &str, msg: &str, anthropic: bool) -> Response {
    let body = if anthropic {
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": msg}})
    } else {
        json!({"error": {"message": msg, "type": kind, "param": null, "code": null}})
    };
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// Splits text into streaming chunks of about four words.
fn chunks(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    words.chunks(4).map(|c| c.concat()).collect()
}

async fn openai(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    with_fault(app.cfg.fault, false, openai_answer(&app, &body)).await
}

async fn responses(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    with_fault(app.cfg.fault, false, responses_answer(&app, &body)).await
}

async fn anthropic(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    with_fault(app.cfg.fault, true, anthropic_answer(&app, &body)).await
}

/// Applies the configured fault to an answer.
async fn with_fault(
    fault: Option<Fault>,
    anthropic: bool,
    answer: impl std::future::Future<Output = Response>,
) -> Response {
    use futures_util::StreamExt;
    match fault {
        None => answer.await,
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let msg = format!("injected fault: status {code}");
            let body = if anthropic {
                json!({"type": "error", "error": {"type": "api_error", "message": msg}})
            } else {
                json!({"error": {"message": msg, "type": "server_error", "param": null, "code": null}})
            };
            (status, Json(body)).into_response()
        }
        Some(Fault::Reset) => {
            let (parts, body) = answer.await.into_parts();
            let mut left = 256usize;
            let s = body
                .into_data_stream()
                .flat_map(move |r| {
                    let items: Vec<Result<axum::body::Bytes, std::io::Error>> = match r {
                        Err(e) => vec![Err(std::io::Error::other(e))],
                        Ok(_) if left == 0 => vec![Err(std::io::Error::other("injected reset"))],
                        Ok(b) if b.len() < left => {
                            left -= b.len();
                            vec![Ok(b)]
                        }
                        Ok(b) => {
                            let head = b.slice(..left);
                            left = 0;
                            vec![Ok(head), Err(std::io::Error::other("injected reset"))]
                        }
                    };
                    stream::iter(items)
                })
                // The bytes before the reset are flushed first, so that the
                // client really is mid-answer.
                .then(|item| async move {
                    if item.is_err() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    item
                });
            Response::from_parts(parts, axum::body::Body::from_stream(s))
        }
        Some(Fault::Drip(gap)) => {
            let (parts, body) = answer.await.into_parts();
            let s = body
                .into_data_stream()
                .flat_map(|r| {
                    let pieces: Vec<Result<axum::body::Bytes, axum::Error>> = match r {
                        Err(e) => vec![Err(e)],
                        Ok(b) => (0..b.len())
                            .step_by(16)
                            .map(|i| Ok(b.slice(i..(i + 16).min(b.len()))))
                            .collect(),
                    };
                    stream::iter(pieces)
                })
                .then(move |piece| async move {
                    tokio::time::sleep(gap).await;
                    piece
                });
            Response::from_parts(parts, axum::body::Body::from_stream(s))
        }
    }
}

async fn openai_answer(app: &App, body: &[u8]) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad_request("invalid_request_error", "the body is not JSON", false);
    };
    let Some(model) = req["model"].as_str().map(str::to_string) else {
        return bad_request("invalid_request_error", "missing \"model\"", false);
    };
    if !req["messages"].is_array() {
        return bad_request("invalid_request_error", "missing \"messages\"", false);
    }
    let prompt = last_user(&req["messages"]);
    let max = req["max_completion_tokens"]
        .as_u64()
        .or(req["max_tokens"].as_u64())
        .unwrap_or(256) as usize;
    let (text, reasoning, n) = answer(app, &prompt, max);
    let id = format!(
        "chatcmpl-{:016x}",
        fnv(&format!("{model}\u{0}{prompt}\u{0}{max}"))
    );
    let usage = json!({"prompt_tokens": prompt.split_whitespace().count(), "completion_tokens": n, "total_tokens": prompt.split_whitespace().count() + n});
    tokio::time::sleep(app.cfg.first_token).await;
    if req["stream"].as_bool() != Some(true) {
        let mut message = json!({"role": "assistant", "content": text});
        if let Some(r) = reasoning {
            message["reasoning_content"] = json!(r);
        }
        return Json(json!({
            "id": id, "object": "chat.completion", "created": 1_771_200_000, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": if n >= max { "length" } else { "stop" }}],
            "usage": usage,
        }))
        .into_response();
    }
    let mut events: Vec<Value> = Vec::new();
    let chunk = |delta: Value, finish: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1_771_200_000, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    events.push(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    if let Some(r) = reasoning {
        for c in chunks(&r) {
            events.push(chunk(json!({"reasoning_content": c}), Value::Null));
        }
    }
    for c in chunks(&text) {
        events.push(chunk(json!({"content": c}), Value::Null));
    }
    events.push(chunk(
        json!({}),
        json!(if n >= max { "length" } else { "stop" }),
    ));
    let mut lines: Vec<String> = events.iter().map(Value::to_string).collect();
    lines.push("[DONE]".into());
    sse(
        app.cfg.between_chunks,
        lines.into_iter().map(|d| (None, d)).collect(),
    )
}

/// The last user turn of a Responses `input` (a string, or items).
fn responses_prompt(input: &Value) -> String {
    match input {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let users: Vec<Value> = items
                .iter()
                .filter(|i| i["role"] == "user")
                .cloned()
                .collect();
            last_user(&Value::Array(users))
        }
        _ => String::new(),
    }
}

/// OpenAI Responses (`/v1/responses`): an answer as output items, and, when
/// streaming, its typed events. With reasoning on, a reasoning item comes
/// first: its summary when `reasoning.summary` asks for one, else only
/// `encrypted_content`.
async fn responses_answer(app: &App, body: &[u8]) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad_request("invalid_request_error", "the body is not JSON", false);
    };
    let Some(model) = req["model"].as_str().map(str::to_string) else {
        return bad_request("invalid_request_error", "missing \"model\"", false);
    };
    if !(req["input"].is_string() || req["input"].is_array()) {
        return bad_request("invalid_request_error", "missing \"input\"", false);
    }
    let prompt = responses_prompt(&req["input"]);
    let max = req["max_output_tokens"].as_u64().unwrap_or(256) as usize;
    let (text, reasoning, n) = answer(app, &prompt, max);
    let id = format!(
        "resp_{:016x}",
        fnv(&format!("{model}\u{0}{prompt}\u{0}{max}"))
    );
    let summary_asked = req["reasoning"]["summary"]
        .as_str()
        .is_some_and(|s| !s.is_empty() && s != "none");
    let reasoning_tokens = reasoning
        .as_ref()
        .map_or(0, |r| r.split_whitespace().count());
    let reasoning_item = reasoning.as_ref().map(|r| {
        let summary = if summary_asked {
            json!([{"type": "summary_text", "text": r}])
        } else {
            json!([])
        };
        json!({"id": format!("rs_{id}"), "type": "reasoning", "summary": summary,
               "encrypted_content": "gAAAAA-opaque"})
    });
    let message = json!({"id": format!("msg_{id}"), "type": "message", "status": "completed",
        "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]});
    let input_tokens = prompt.split_whitespace().count();
    let usage = json!({"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": n + reasoning_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + n + reasoning_tokens});
    let status = if n >= max { "incomplete" } else { "completed" };
    let output: Vec<Value> = reasoning_item
        .iter()
        .cloned()
        .chain([message.clone()])
        .collect();
    let whole = |status: &str, output: Vec<Value>, usage: Value| {
        json!({"id": id, "object": "response", "created_at": 1_771_200_000, "status": status,
               "model": model, "output": output, "usage": usage, "parallel_tool_calls": true,
               "tool_choice": "auto", "tools": [], "error": null, "incomplete_details": null})
    };
    tokio::time::sleep(app.cfg.first_token).await;
    if req["stream"].as_bool() != Some(true) {
        return Json(whole(status, output, usage)).into_response();
    }
    let mut events: Vec<(&'static str, Value)> = vec![(
        "response.created",
        json!({"response": whole("in_progress", vec![], Value::Null)}),
    )];
    let mut index = 0;
    if let (Some(item), Some(r)) = (&reasoning_item, &reasoning) {
        let mut empty = item.clone();
        empty["summary"] = json!([]);
        events.push((
            "response.output_item.added",
            json!({"output_index": index, "item": empty}),
        ));
        if summary_asked {
            for c in chunks(r) {
                events.push((
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": item["id"], "output_index": index, "summary_index": 0, "delta": c}),
                ));
            }
        }
        events.push((
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
        index += 1;
    }
    let mut started = message.clone();
    started["content"] = json!([]);
    started["status"] = json!("in_progress");
    events.push((
        "response.output_item.added",
        json!({"output_index": index, "item": started}),
    ));
    for c in chunks(&text) {
        events.push((
            "response.output_text.delta",
            json!({"item_id": message["id"], "output_index": index, "content_index": 0, "delta": c}),
        ));
    }
    events.push((
        "response.output_text.done",
        json!({"item_id": message["id"], "output_index": index, "content_index": 0, "text": text}),
    ));
    events.push((
        "response.output_item.done",
        json!({"output_index": index, "item": message}),
    ));
    events.push((
        if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        },
        json!({"response": whole(status, output, usage)}),
    ));
    let items = events
        .into_iter()
        .enumerate()
        .map(|(seq, (name, mut data))| {
            data["type"] = json!(name);
            data["sequence_number"] = json!(seq);
            (Some(name), data.to_string())
        })
        .collect();
    sse(app.cfg.between_chunks, items)
}

fn sse(gap: Duration, items: Vec<(Option<&'static str>, String)>) -> Response {
    let s = stream::unfold(
        (items.into_iter(), true),
        move |(mut it, first)| async move {
            let (name, data) = it.next()?;
            if !first && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            let mut e = Event::default().data(data);
            if let Some(n) = name {
                e = e.event(n);
            }
            Some((Ok::<Event, Infallible>(e), (it, false)))
        },
    );
    Sse::new(s).into_response()
}

async fn anthropic_answer(app: &App, body: &[u8]) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return bad_request("invalid_request_error", "the body is not JSON", true);
    };
    let Some(model) = req["model"].as_str().map(str::to_string) else {
        return bad_request("invalid_request_error", "model: field required", true);
    };
    let Some(max) = req["max_tokens"].as_u64() else {
        return bad_request("invalid_request_error", "max_tokens: field required", true);
    };
    let max = max as usize;
    let prompt = last_user(&req["messages"]);
    let (text, reasoning, n) = answer(app, &prompt, max);
    let id = format!(
        "msg_{:016x}",
        fnv(&format!("{model}\u{0}{prompt}\u{0}{max}"))
    );
    let stop = if n >= max { "max_tokens" } else { "end_turn" };
    let input = prompt.split_whitespace().count();
    tokio::time::sleep(app.cfg.first_token).await;
    if req["stream"].as_bool() != Some(true) {
        let mut content = Vec::new();
        if let Some(r) = &reasoning {
            content.push(json!({"type": "thinking", "thinking": r, "signature": format!("sig_{:016x}", fnv(r))}));
        }
        content.push(json!({"type": "text", "text": text}));
        return Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": n},
        }))
        .into_response();
    }
    let mut ev: Vec<(Option<&'static str>, String)> = Vec::new();
    let mut push = |name: &'static str, v: Value| ev.push((Some(name), v.to_string()));
    push(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 0}}}),
    );
    let mut index = 0;
    if let Some(r) = &reasoning {
        push(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}}),
        );
        for c in chunks(r) {
            push(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": c}}),
            );
        }
        push(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
        index += 1;
    }
    push(
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
    );
    for c in chunks(&text) {
        push(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": c}}),
        );
    }
    push(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    );
    push(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": n}}),
    );
    push("message_stop", json!({"type": "message_stop"}));
    sse(app.cfg.between_chunks, ev)
}

async fn models(State(app): State<Arc<App>>) -> Response {
    let data: Vec<Value> = app
        .cfg
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_771_200_000, "owned_by": "upstream-mock"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// The router (for embedding in tests or other servers).
pub fn router(cfg: Config) -> Router {
    let app = Arc::new(App {
        cfg,
        store: Default::default(),
    });
    Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/v1/messages", post(anthropic))
        .route("/v1/responses", post(responses))
        .route("/v1/models", get(models))
        .route("/v1/files", post(batches::file_create))
        .route("/v1/files/{id}", get(batches::file_get))
        .route("/v1/files/{id}/content", get(batches::file_content))
        .route("/v1/batches", post(batches::batch_create))
        .route("/v1/batches/{id}", get(batches::batch_get))
        .route("/v1/batches/{id}/cancel", post(batches::batch_get))
        .route("/v1/messages/batches", post(batches::messages_create))
        .route("/v1/messages/batches/{id}", get(batches::messages_get))
        .route(
            "/v1/messages/batches/{id}/results",
            get(batches::messages_results),
        )
        .route(
            "/v1/messages/batches/{id}/cancel",
            post(batches::messages_get),
        )
        // Batch files and submissions are large (OpenAI's files up to 200 MB).
        .layer(axum::extract::DefaultBodyLimit::max(256 << 20))
        .with_state(app)
}

/// Serves on `listener` until `shutdown` resolves (the caller binds, so it
/// knows the address, and decides when to stop, as mini-redis does).
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Streamed chunks go out as they are written, as model servers do.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(cfg))
        .with_graceful_shutdown(shutdown)
        .await
}
