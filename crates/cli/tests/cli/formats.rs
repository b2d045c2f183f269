//! Other projects' and gateways' logs read directly: Glasswally, LiteLLM,
//! OpenTelemetry GenAI spans, Kong AI Gateway, Helicone.

use distillguard_core::{Label, Timestamp};
use std::io::Read;
use std::path::Path;
use std::process::Command;

use crate::support::*;

#[test]
fn glasswally_logs_import_into_events_and_truth() {
    let d = Dir::new("gw");
    let src = d.path("gw.jsonl");
    write(
        &src,
        concat!(
            r#"{"account_id": "sk-b", "timestamp": "2026-02-27T20:08:29.150463+00:00", "model": "gpt-4o", "prompt": "Think out loud: how does a compiler work?", "system_prompt": "Act as an AI teacher.", "system_prompt_hash": "fde9", "token_count": 24, "max_tokens": 4096, "client_ip": "153.32.197.98", "asn_number": 24940, "asn_org": "Hetzner", "user_agent": "aiohttp/3.9.1", "h2_settings_fp": "2:32953", "campaign_label": "campaign_0002"}"#,
            "\n",
            r#"{"account_id": "sk-a", "timestamp": "2026-02-27T20:08:29.149978+00:00", "model": "gpt-4o", "prompt": "What foods are high in vitamin C?", "system_prompt": null, "token_count": 199, "max_tokens": 256, "client_ip": "63.114.71.189", "asn_number": 4134, "asn_org": "CHINANET", "user_agent": "python-requests/2.31.0", "h2_settings_fp": null, "campaign_label": null}"#,
            "\n",
            r#"{"account_id": "sk-c", "timestamp": "2026-02-27T20:08:29.151Z"}"#,
            "\n",
            r#"{"account_id": "sk-b", "timestamp": "2026-02-27T20:08:29.152Z", "prompt": "Explain step by step.", "campaign_label": null}"#,
            "\n",
        ),
    );
    let out = d.path("out");
    let o = dg(&[
        "import",
        "glasswally",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("gw.jsonl:3: field `prompt`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let events = read_events(&out.join("events.jsonl.gz"));
    // Sorted by time: sk-a's record came second in the file but is earliest.
    let order: Vec<&str> = events.iter().map(|e| e.account_id.as_str()).collect();
    assert_eq!(order, ["sk-a", "sk-b", "sk-b"]);
    let t = truth(&out);
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t[0].account_id.as_str(), t[0].label),
        ("sk-a", Label::Benign)
    );
    // An account is an attacker if any of its records is labelled.
    assert_eq!(
        (t[1].label, t[1].campaign.as_deref()),
        (Label::Attack, Some("campaign_0002"))
    );
    // The real file, when the shared data is present: the counts its README gives.
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/external/glasswally-labeled_5k.jsonl");
    assert!(
        real.exists() || std::env::var_os("CI").is_none(),
        "{} missing under CI",
        real.display()
    );
    if real.exists() {
        let out = d.path("real");
        let s = ok(&[
            "import",
            "glasswally",
            real.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(s.contains("imported 5000 events (0 malformed or skipped) from 231 accounts (30 attack in 5 campaigns)"), "{s}");
    }
}

/// A log written by the real LiteLLM (`examples/litellm/make_sample.py`:
/// LiteLLM 1.110.2's `standard_logging_object` for each call through
/// `litellm.completion` to `upstream-mock`): 40 honest users and a planted
/// harvest of 8 accounts on one step-by-step system prompt. `analyze`
/// reads it directly (gzip, standard input, bad lines named with their
/// place), finds the 8 and nobody else.
#[test]
fn analyze_reads_a_litellm_log_and_finds_the_planted_harvest() {
    use std::io::Write;
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/litellm/sample.jsonl.gz");
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        "--input-format",
        "litellm",
        sample.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]))
    .unwrap();
    assert_eq!(v["stats"]["events"], 336, "{}", v["stats"]);
    assert_eq!(v["stats"]["accounts"], 48);
    assert_flags_the_planted_harvest(&v);

    // From standard input, with a bad line: named with its place, the
    // rest kept.
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&sample).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    lines.insert(2, br#"{"startTime": "soon", "user": "x"}"#);
    let input = lines.join(&b'\n');
    let mut child = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args([
            "analyze",
            "--input-format",
            "litellm",
            "-",
            "--format",
            "json",
            "--quiet",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("<stdin>:3:") && stderr.contains("startTime"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stats"]["events"], 336);
    assert_eq!(v["stats"]["malformed_lines"], 1);
}

/// One OTLP/HTTP JSON export request (as the OpenTelemetry Collector's file
/// exporter writes a line) holding `spans`.
fn otlp_line(spans: Vec<serde_json::Value>) -> String {
    serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "tutor-app"}}]},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"}, "spans": spans}]
    }]})
    .to_string()
}

/// A GenAI chat span in the current semantic conventions.
fn genai_span(i: usize, user: &str, system: Option<&str>, question: &str) -> serde_json::Value {
    let s = |k: &str, v: &str| serde_json::json!({"key": k, "value": {"stringValue": v}});
    let n = |k: &str, v: i64| serde_json::json!({"key": k, "value": {"intValue": v.to_string()}});
    let start = 1_764_590_400_000_000_000i64 + i as i64 * 2_000_000_000;
    let mut attrs = vec![
        s("gen_ai.operation.name", "chat"),
        s("gen_ai.provider.name", "openai"),
        s("gen_ai.request.model", "atlas-3"),
        n("gen_ai.request.max_tokens", 1024),
        s("user.id", user),
        s(
            "gen_ai.input.messages",
            &serde_json::json!([{"role": "user", "parts": [{"type": "text", "content": question}]}])
                .to_string(),
        ),
        n("gen_ai.usage.input_tokens", 40),
        n("gen_ai.usage.output_tokens", 300),
    ];
    if let Some(sys) = system {
        attrs.push(s(
            "gen_ai.system_instructions",
            &serde_json::json!([{"type": "text", "content": sys}]).to_string(),
        ));
    }
    serde_json::json!({
        "traceId": format!("{i:032x}"), "spanId": format!("{i:016x}"), "name": "chat atlas-3",
        "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + 900_000_000).to_string(),
        "attributes": attrs, "status": {}
    })
}

/// `analyze --input-format otlp` reads OpenTelemetry GenAI spans (OTLP/HTTP
/// JSON, several spans a line, other spans skipped) and finds a harvest
/// planted among them; a span without an account is named with its place.
#[test]
fn analyze_reads_opentelemetry_genai_spans() {
    let d = Dir::new("otlp");
    let mut lines = Vec::new();
    let mut i = 0;
    for calls in planted_rounds() {
        let mut spans = Vec::new();
        for (account, system, q) in &calls {
            spans.push(genai_span(i, account, *system, q));
            i += 1;
        }
        // A span that is not a GenAI call.
        spans.push(serde_json::json!({"spanId": "ff", "name": "GET /", "startTimeUnixNano": "1"}));
        lines.push(otlp_line(spans));
    }
    let file = d.path("spans.jsonl");
    write(&file, &(lines.join("\n") + "\n"));
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        "--input-format",
        "otlp",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]))
    .unwrap();
    assert_eq!(v["stats"]["events"], i, "{}", v["stats"]);
    assert_eq!(v["stats"]["lines"], 30);
    assert_flags_the_planted_harvest(&v);
    // A GenAI span without user.id: the line is named, the rest kept.
    let mut bad = genai_span(999, "x", None, "hi");
    bad["attributes"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["key"] != "user.id");
    lines.insert(1, otlp_line(vec![bad]));
    write(&file, &(lines.join("\n") + "\n"));
    let out = dg(&[
        "analyze",
        "--input-format",
        "otlp",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spans.jsonl:2:") && stderr.contains("user.id"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stats"]["events"], i);
    assert_eq!(v["stats"]["malformed_lines"], 1);
}

/// `analyze --input-format otlp-proto` reads the protobuf files of the
/// Collector's file exporter (`format: proto`), here written by the
/// official OpenTelemetry SDK's own encoder, and finds the same planted
/// harvest; a message that does not decode is named with its file, number
/// and byte offset, and the rest is read.
#[test]
fn analyze_reads_opentelemetry_protobuf_files() {
    let venv = venv_with(
        "otel-venv",
        "opentelemetry.exporter.otlp.proto.common.trace_encoder",
        &OTEL_PACKAGES,
    );
    let d = Dir::new("otlp-proto");
    let mut i = 0usize;
    let rounds: Vec<Vec<serde_json::Value>> = planted_rounds()
        .into_iter()
        .map(|calls| {
            calls
                .into_iter()
                .map(|(user, system, question)| {
                    let start = 1_764_590_400_000_000_000i64 + i as i64 * 2_000_000_000;
                    i += 1;
                    serde_json::json!({"user": user, "system": system, "question": question, "start": start})
                })
                .collect()
        })
        .collect();
    let calls = d.path("calls.json");
    write(&calls, &serde_json::to_string(&rounds).unwrap());
    let file = d.path("traces.pb");
    let out = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/otel_file.py"))
        .env("CALLS", &calls)
        .env("OUT", &file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ok {i}"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let analyze = |path: &Path| {
        dg(&[
            "analyze",
            "--input-format",
            "otlp-proto",
            path.to_str().unwrap(),
            "--format",
            "json",
            "--quiet",
        ])
    };
    let out = analyze(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stats"]["events"], i, "{}", v["stats"]);
    assert_flags_the_planted_harvest(&v);
    // A message that is not an export request, then a file cut short.
    let mut bytes = std::fs::read(&file).unwrap();
    let good = bytes.len();
    bytes.extend(3u32.to_be_bytes());
    bytes.extend([0xff, 0xff, 0xff]);
    bytes.extend(100u32.to_be_bytes());
    bytes.extend([0x0a, 0x00]);
    let damaged = d.path("damaged.pb");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = analyze(&damaged);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("damaged.pb:31: invalid value: byte {good}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("damaged.pb:32: invalid value: byte"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stats"]["events"], i);
    assert_eq!(v["stats"]["malformed_lines"], 2);
    assert_flags_the_planted_harvest(&v);
    // Under --strict the first bad message stops the run (exit 2).
    let strict = dg(&[
        "analyze",
        "--input-format",
        "otlp-proto",
        damaged.to_str().unwrap(),
        "--strict",
        "--quiet",
    ]);
    assert_eq!(
        strict.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );
}

/// The Chat Completions body of one planted call (other gateways' logs
/// keep it).
fn planted_request(system: Option<&str>, question: &str) -> serde_json::Value {
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(serde_json::json!({"role": "system", "content": s}));
    }
    messages.push(serde_json::json!({"role": "user", "content": question}));
    serde_json::json!({"model": "atlas-3", "max_tokens": 1024, "messages": messages})
}

/// A Kong AI Gateway log line (file-log, AI Proxy with payload logging),
/// in the shape of Kong's documented sample.
fn kong_line(i: usize, consumer: &str, system: Option<&str>, question: &str) -> String {
    let request = planted_request(system, question);
    serde_json::json!({
        "started_at": 1_787_113_201_719i64 + i as i64 * 2000,
        "client_ip": "198.51.100.20",
        "request": {"id": format!("{i:032x}"), "method": "POST", "uri": "/v1/chat/completions",
                    "headers": {"user-agent": "OpenAI/Python 1.54.0"}},
        "response": {"status": 200},
        "latencies": {"request": 900, "kong": 2, "proxy": 897},
        "consumer": {"id": format!("id-{consumer}"), "username": consumer},
        "authenticated_entity": {"id": format!("cred-{consumer}")},
        "ai": {
            "payload": {"request": request.to_string()},
            "proxy": {
                "usage": {"prompt_tokens": 40, "completion_tokens": 300, "total_tokens": 340},
                "meta": {"request_model": "atlas-3", "provider_name": "openai", "llm_latency": 880}
            }
        }
    })
    .to_string()
}

/// `analyze --input-format kong` reads Kong AI Gateway logs and finds a
/// harvest planted among honest consumers; a line without a consumer is
/// named with its place.
#[test]
fn analyze_reads_kong_ai_gateway_logs() {
    let d = Dir::new("kong");
    let mut lines = Vec::new();
    for (account, system, q) in planted_rounds().into_iter().flatten() {
        lines.push(kong_line(lines.len(), &account, system, &q));
    }
    let n = lines.len();
    lines.insert(
        3,
        r#"{"started_at": 1787113201719, "ai": {"proxy": {"meta": {}}}}"#.to_string(),
    );
    let file = d.path("kong.jsonl");
    write(&file, &(lines.join("\n") + "\n"));
    let out = dg(&[
        "analyze",
        "--input-format",
        "kong",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kong.jsonl:4:") && stderr.contains("consumer"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stats"]["events"], n, "{}", v["stats"]);
    assert_eq!(v["stats"]["malformed_lines"], 1);
    assert_flags_the_planted_harvest(&v);
}

/// A Helicone request row (its `HeliconeRequest` fields, bodies included).
fn helicone_row(i: usize, user: &str, system: Option<&str>, question: &str) -> serde_json::Value {
    let at = Timestamp(1_787_113_201_719i64 + i as i64 * 2000);
    serde_json::json!({
        "request_id": format!("{i:032x}"),
        "request_created_at": at.to_string(),
        "request_body": planted_request(system, question),
        "request_path": "https://oai.helicone.ai/v1/chat/completions",
        "request_user_id": user,
        "request_properties": {},
        "request_model": "atlas-3",
        "helicone_user": "u-ops",
        "provider": "OPENAI",
        "response_status": 200,
        "response_body": {"id": "r", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Step 1: …"}}]},
        "delay_ms": 900,
        "prompt_tokens": 40,
        "completion_tokens": 300,
        "country_code": "US",
    })
}

/// `analyze --input-format helicone` reads Helicone's request rows, one
/// per line or as its API's answers (`{"data": [...]}`), and finds the
/// planted harvest; a row without a user is named with its line and field.
#[test]
fn analyze_reads_helicone_request_logs() {
    let d = Dir::new("helicone");
    let rows: Vec<serde_json::Value> = planted_rounds()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, (account, system, q))| helicone_row(i, &account, system, &q))
        .collect();
    let n = rows.len();
    // Half as single rows, half as API answers of ten rows.
    let (single, paged) = rows.split_at(n / 2);
    let mut lines: Vec<String> = single.iter().map(|r| r.to_string()).collect();
    for page in paged.chunks(10) {
        lines.push(serde_json::json!({"data": page, "error": null}).to_string());
    }
    lines.insert(
        3,
        r#"{"request_id": "x", "request_created_at": "2026-09-01T10:00:00Z", "request_user_id": null}"#
            .to_string(),
    );
    let file = d.path("helicone.jsonl");
    write(&file, &(lines.join("\n") + "\n"));
    let out = dg(&[
        "analyze",
        "--input-format",
        "helicone",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("helicone.jsonl:4:") && stderr.contains("request_user_id"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stats"]["events"], n, "{}", v["stats"]);
    assert_eq!(v["stats"]["malformed_lines"], 1);
    assert_flags_the_planted_harvest(&v);
}
