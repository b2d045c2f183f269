//! The Batch APIs of the mock: OpenAI files and batches, Anthropic message
//! batches. A batch completes at once: its results are the answers the
//! mock gives the same requests one by one.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::App;

/// Uploaded files (their request lines) and batches (their file, or their
/// requests).
#[derive(Default)]
pub(crate) struct Store {
    files: HashMap<String, (String, Vec<Value>)>,
    /// OpenAI batch id → (input file id, endpoint).
    batches: HashMap<String, (String, String)>,
    /// Anthropic batch id → its requests.
    messages: HashMap<String, Vec<Value>>,
}

fn store(app: &App) -> std::sync::MutexGuard<'_, Store> {
    app.store.lock().unwrap_or_else(|p| p.into_inner())
}

fn err(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": "invalid_request_error", "message": message}})),
    )
        .into_response()
}

const CREATED: i64 = 1_771_200_000;

/// `POST /v1/files`: keeps the file's JSON lines (the multipart form is
/// not parsed: its lines that are JSON objects are the file's).
pub(crate) async fn file_create(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    let purpose = if text.contains("name=\"purpose\"\r\n\r\nbatch") {
        "batch"
    } else {
        "user_data"
    };
    let lines: Vec<Value> = text
        .split('\n')
        .filter_map(|l| serde_json::from_str::<Value>(l.trim_end_matches('\r')).ok())
        .filter(Value::is_object)
        .collect();
    let mut s = store(&app);
    let id = format!("file-{:06}", s.files.len() + 1);
    let n = body.len();
    s.files.insert(id.clone(), (purpose.to_string(), lines));
    Json(json!({"id": id, "object": "file", "bytes": n, "created_at": CREATED, "filename": "batch.jsonl", "purpose": purpose, "status": "processed"})).into_response()
}

fn batch_object(id: &str, file: &str, endpoint: &str, n: usize) -> Value {
    json!({
        "id": id, "object": "batch", "endpoint": endpoint, "errors": null,
        "input_file_id": file, "completion_window": "24h", "status": "completed",
        "output_file_id": format!("{file}-out"), "error_file_id": null,
        "created_at": CREATED, "completed_at": CREATED + 60,
        "request_counts": {"total": n, "completed": n, "failed": 0}, "metadata": null,
    })
}

/// `POST /v1/batches`.
pub(crate) async fn batch_create(State(app): State<Arc<App>>, Json(v): Json<Value>) -> Response {
    let Some(file) = v["input_file_id"].as_str() else {
        return err(StatusCode::BAD_REQUEST, "missing input_file_id");
    };
    let endpoint = v["endpoint"]
        .as_str()
        .unwrap_or("/v1/chat/completions")
        .to_string();
    let mut s = store(&app);
    let Some((_, lines)) = s.files.get(file) else {
        return err(StatusCode::NOT_FOUND, "no such file");
    };
    let n = lines.len();
    let id = format!("batch_{:06}", s.batches.len() + 1);
    s.batches
        .insert(id.clone(), (file.to_string(), endpoint.clone()));
    Json(batch_object(&id, file, &endpoint, n)).into_response()
}

/// `GET /v1/batches/{id}` (and `POST …/cancel`).
pub(crate) async fn batch_get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let s = store(&app);
    let Some((file, endpoint)) = s.batches.get(&id) else {
        return err(StatusCode::NOT_FOUND, "no such batch");
    };
    let n = s.files.get(file).map_or(0, |f| f.1.len());
    Json(batch_object(&id, file, endpoint, n)).into_response()
}

/// The mock's own answer to one request body, as JSON.
async fn answer(app: &App, endpoint: &str, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let resp = match endpoint {
        "/v1/messages" => crate::anthropic_answer(app, &bytes).await,
        "/v1/responses" => crate::responses_answer(app, &bytes).await,
        _ => crate::openai_answer(app, &bytes).await,
    };
    let b = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    serde_json::from_slice(&b).unwrap_or(Value::Null)
}

/// `GET /v1/files/{id}/content`: an input file's lines, or for an output
/// file (`{input}-out`) the results.
pub(crate) async fn file_content(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let (input, out) = match id.strip_suffix("-out") {
        Some(i) => (i.to_string(), true),
        None => (id.clone(), false),
    };
    let lines = match store(&app).files.get(&input) {
        Some((_, l)) => l.clone(),
        None => return err(StatusCode::NOT_FOUND, "no such file"),
    };
    let mut text = String::new();
    for (n, l) in lines.iter().enumerate() {
        let line = if out {
            let mut body = l["body"].clone();
            if let Some(o) = body.as_object_mut() {
                o.remove("stream");
            }
            let a = answer(&app, l["url"].as_str().unwrap_or_default(), &body).await;
            json!({"id": format!("batch_req_{n}"), "custom_id": l["custom_id"], "response": {"status_code": 200, "request_id": format!("req_{n}"), "body": a}, "error": null})
        } else {
            l.clone()
        };
        text.push_str(&line.to_string());
        text.push('\n');
    }
    ([(header::CONTENT_TYPE, "application/jsonl")], text).into_response()
}

/// `GET /v1/files/{id}`.
pub(crate) async fn file_get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match store(&app).files.get(&id) {
        Some((purpose, _)) => Json(json!({"id": id, "object": "file", "bytes": 0, "created_at": CREATED, "filename": "batch.jsonl", "purpose": purpose, "status": "processed"})).into_response(),
        None => err(StatusCode::NOT_FOUND, "no such file"),
    }
}

fn message_batch(id: &str, n: usize, base: &str) -> Value {
    json!({
        "id": id, "type": "message_batch", "processing_status": "ended",
        "request_counts": {"processing": 0, "succeeded": n, "errored": 0, "canceled": 0, "expired": 0},
        "created_at": "2026-02-16T00:00:00Z", "ended_at": "2026-02-16T00:01:00Z",
        "expires_at": "2026-02-17T00:00:00Z", "archived_at": null, "cancel_initiated_at": null,
        "results_url": format!("{base}/v1/messages/batches/{id}/results"),
    })
}

fn base(h: &HeaderMap) -> String {
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// `POST /v1/messages/batches`.
pub(crate) async fn messages_create(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Json(v): Json<Value>,
) -> Response {
    let Some(reqs) = v["requests"].as_array() else {
        return err(StatusCode::BAD_REQUEST, "missing requests");
    };
    let mut s = store(&app);
    let id = format!("msgbatch_{:06}", s.messages.len() + 1);
    s.messages.insert(id.clone(), reqs.clone());
    Json(message_batch(&id, reqs.len(), &base(&h))).into_response()
}

/// `GET /v1/messages/batches/{id}` (and `POST …/cancel`).
pub(crate) async fn messages_get(
    State(app): State<Arc<App>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match store(&app).messages.get(&id) {
        Some(r) => Json(message_batch(&id, r.len(), &base(&h))).into_response(),
        None => err(StatusCode::NOT_FOUND, "no such batch"),
    }
}

/// `GET /v1/messages/batches/{id}/results`.
pub(crate) async fn messages_results(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Response {
    let Some(reqs) = store(&app).messages.get(&id).cloned() else {
        return err(StatusCode::NOT_FOUND, "no such batch");
    };
    let mut text = String::new();
    for r in &reqs {
        let mut params = r["params"].clone();
        if let Some(o) = params.as_object_mut() {
            o.remove("stream");
        }
        let m = answer(&app, "/v1/messages", &params).await;
        text.push_str(
            &json!({"custom_id": r["custom_id"], "result": {"type": "succeeded", "message": m}})
                .to_string(),
        );
        text.push('\n');
    }
    ([(header::CONTENT_TYPE, "application/x-jsonl")], text).into_response()
}
