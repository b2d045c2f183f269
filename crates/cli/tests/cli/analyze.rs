//! `analyze`, `eval` and `fit`: detection end to end on simulated worlds,
//! bad input named with its place, batches, the Responses API, the report
//! and the table.

use distillguard_core::{Label, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use crate::support::*;

#[test]
fn eval_scores_hand_written_reports_and_beats_nothing_with_nothing() {
    let d = Dir::new("eval");
    let out = simulate_small(&d, "s", 11);
    let t = truth(&out);
    let events = read_events(&out.join("events.jsonl.gz"));
    // A perfect report: every attack account flagged at its first request.
    let mut first: HashMap<&str, Timestamp> = HashMap::new();
    for e in &events {
        first.entry(e.account_id.as_str()).or_insert(e.ts);
    }
    let accounts: Vec<serde_json::Value> = t
        .iter()
        .filter(|r| r.label == Label::Attack)
        .map(|r| serde_json::json!({"account_id": r.account_id, "risk": 0.99, "verdict": "block", "flagged_at": first.get(r.account_id.as_str()), "reasons": []}))
        .collect();
    let perfect = d.path("perfect.json");
    write(
        &perfect,
        &serde_json::json!({"version": 1, "stats": {}, "accounts": accounts, "campaigns": []})
            .to_string(),
    );
    let json = ok(&[
        "eval",
        "--report",
        perfect.to_str().unwrap(),
        "--truth",
        out.join("truth.jsonl").to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["detector"]["precision"], 1.0);
    assert_eq!(v["detector"]["recall"], 1.0);
    assert_eq!(v["detector"]["benign_false_positive_rate"], 0.0);
    for c in v["detector"]["campaigns"].as_array().unwrap() {
        assert_eq!(c["recall"], 1.0);
        // Flagged at its very first request: exactly one request served.
        assert!(c["served_before_detection"].as_u64().unwrap() >= 1);
        assert!(
            c["served_before_detection_pct"].as_f64().unwrap() < 1.0,
            "{c}"
        );
    }
    // The baseline ran (events found beside truth) and misses the low-and-slow swarm entirely.
    let base = &v["baseline"];
    assert!(base.is_object());
    let lns = base["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["campaign"] == "low-and-slow")
        .unwrap();
    assert_eq!(lns["flagged"], 0);
    assert!(base["recall"].as_f64().unwrap() < 0.5);

    // An empty report: recall 0, precision undefined; the table says so.
    let empty = d.path("empty.json");
    write(
        &empty,
        r#"{"version":1,"stats":{},"accounts":[],"campaigns":[]}"#,
    );
    let table = ok(&[
        "eval",
        "--report",
        empty.to_str().unwrap(),
        "--truth",
        out.join("truth.jsonl").to_str().unwrap(),
    ]);
    assert!(
        table.contains("recall") && table.contains("0.0%") && table.contains("never"),
        "{table}"
    );

    // A report of the wrong version is refused with a clear message.
    let v2 = d.path("v2.json");
    write(&v2, r#"{"version":2,"accounts":[]}"#);
    let bad = dg(&[
        "eval",
        "--report",
        v2.to_str().unwrap(),
        "--truth",
        out.join("truth.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("version 2 is not supported"));
}

#[test]
fn malformed_lines_are_reported_with_place_and_strict_stops() {
    let d = Dir::new("bad");
    let log = d.path("log.jsonl");
    write(
        &log,
        concat!(
            r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{"model":"m","messages":[{"role":"user","content":"hi"}]}}"#,
            "\n",
            "{\"ts\": \"2026-02-24T08:00:01Z\", \"account_id\": \"a\"\n",
            r#"{"ts":"2026-02-24T08:00:02Z","account_id":"a","request":{"messages":[{"role":"user","content":7}]}}"#,
            "\n",
            r#"{"ts":"2026-02-24","account_id":"b","request":{"messages":[]}}"#,
            "\n",
            r#"{"ts":"2026-02-24T08:00:03Z","account_id":"b","endpoint":"/v1/messages","request":{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"yo"}]}}"#,
            "\n",
        ),
    );
    let out = dg(&[
        "check",
        log.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let name = log.display().to_string();
    assert!(err.contains(&format!("{name}:2: invalid JSON")), "{err}");
    assert!(
        err.contains(&format!("{name}:3: field `request.messages[0].content`")),
        "{err}"
    );
    assert!(err.contains(&format!("{name}:4: field `ts`")), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v[0]["events"].as_u64(), v[0]["malformed"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(
        (v[0]["openai"].as_u64(), v[0]["anthropic"].as_u64()),
        (Some(1), Some(1))
    );

    let strict = dg(&["check", log.to_str().unwrap(), "--strict", "--quiet"]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&strict.stderr).contains(&format!("{name}:2:")));

    // Standard input and gzip both work.
    let mut child = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args(["check", "-", "--format", "json", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(&log).unwrap()).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&gz.finish().unwrap())
        .unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v[0]["file"], "<stdin>");
    assert_eq!(v[0]["events"], 2);
}

#[test]
fn damaged_inputs_keep_what_was_read_and_exit_2() {
    let d = Dir::new("damaged");
    let world = simulate_small(&d, "w", 3);
    let full = std::fs::read(world.join("events.jsonl.gz")).unwrap();
    // A gzip cut short (a copy that did not finish), in the simulator's
    // multi-member form and as one member, as other tools write it.
    let cut = d.path("cut.jsonl.gz");
    std::fs::write(&cut, &full[..full.len() * 6 / 10]).unwrap();
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(&full[..])
        .read_to_end(&mut text)
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&text).unwrap();
    let one = gz.finish().unwrap();
    let cut_one = d.path("cut-one.jsonl.gz");
    std::fs::write(&cut_one, &one[..one.len() / 2]).unwrap();
    let good = d.path("good.jsonl");
    write(
        &good,
        concat!(
            r#"{"ts":"2027-01-01T08:00:00Z","account_id":"zz_after","request":{"model":"m","messages":[{"role":"user","content":"hi"}]}}"#,
            "\n"
        ),
    );
    for damaged in [&cut, &cut_one] {
        let out = dg(&[
            "analyze",
            damaged.to_str().unwrap(),
            good.to_str().unwrap(),
            "--all",
            "--format",
            "json",
            "--quiet",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("read failed after line"), "{err}");
        // The report is still written, with what came before the damage
        // and the file after it.
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let lines = v["stats"]["lines"].as_u64().unwrap();
        assert!(lines > 100, "{lines}");
        let truncated = v["stats"]["truncated_inputs"][0].as_str().unwrap();
        assert!(
            truncated.starts_with(&damaged.display().to_string()),
            "{truncated}"
        );
        let accounts = v["accounts"].as_array().unwrap();
        assert!(accounts.iter().any(|a| a["account_id"] == "zz_after"));
        assert!(accounts.len() > 10);
        let check = dg(&[
            "check",
            damaged.to_str().unwrap(),
            good.to_str().unwrap(),
            "--quiet",
        ]);
        assert_eq!(check.status.code(), Some(2));
        let out = String::from_utf8_lossy(&check.stdout);
        assert!(
            out.contains("truncated: reading failed after line"),
            "{out}"
        );
        assert!(out.contains("good.jsonl: 1 events"), "{out}");
    }
    // Nothing valid: exit 2, and the report counts the malformed lines.
    let junk = d.path("junk.jsonl");
    write(&junk, "not json\n{\"ts\": 1}\n[]\n");
    let out = dg(&[
        "analyze",
        junk.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no valid event was read"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stats"]["malformed_lines"], 3);
    // Mostly junk: above --max-malformed (10% by default), unless allowed.
    let mixed = d.path("mixed.jsonl");
    write(
        &mixed,
        &format!(
            "{}not json\nnot json\n",
            std::fs::read_to_string(&good).unwrap()
        ),
    );
    let out = dg(&[
        "analyze",
        mixed.to_str().unwrap(),
        "--quiet",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("above --max-malformed"));
    let out = dg(&[
        "analyze",
        mixed.to_str().unwrap(),
        "--quiet",
        "--format",
        "json",
        "--max-malformed",
        "0.7",
    ]);
    assert!(out.status.success());
    // A missing file: its OS error once.
    let out = dg(&["analyze", d.path("nope.jsonl").to_str().unwrap(), "--quiet"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

/// A Chat Completions line as the same exchange through the Responses
/// API (the request's messages as input items, the answer as output
/// items), or `None` for other dialects. Fields the Responses API lacks
/// (`n`, `logprobs`, `top_logprobs`, `seed`) are removed from `line`.
fn as_responses(line: &mut serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::{Value, json};
    if line["endpoint"] != "/v1/chat/completions" {
        return None;
    }
    let req = line["request"].as_object_mut()?;
    for k in ["n", "logprobs", "top_logprobs", "seed"] {
        req.remove(k);
    }
    let mut body = serde_json::Map::new();
    let mut input = Vec::new();
    let mut instructions = Vec::new();
    for m in req.get("messages")?.as_array()? {
        match m["role"].as_str()? {
            "system" | "developer" => instructions.push(m["content"].clone()),
            "tool" => input.push(json!({"type": "function_call_output", "call_id": m["tool_call_id"], "output": m["content"]})),
            _ => {
                input.push(json!({"role": m["role"], "content": m["content"]}));
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    input.push(json!({"type": "function_call", "call_id": c["id"], "name": c["function"]["name"], "arguments": "{}"}));
                }
            }
        }
    }
    if let Some(Value::String(t)) = instructions.first() {
        body.insert("instructions".into(), json!(t));
    }
    body.insert("input".into(), Value::Array(input));
    for (from, to) in [
        ("model", "model"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stream", "stream"),
        ("tools", "tools"),
        ("max_tokens", "max_output_tokens"),
        ("max_completion_tokens", "max_output_tokens"),
    ] {
        if let Some(v) = req.get(from) {
            body.insert(to.into(), v.clone());
        }
    }
    if let Some(e) = req.get("reasoning_effort") {
        body.insert("reasoning".into(), json!({"effort": e}));
    }
    let mut twin = line.clone();
    twin["endpoint"] = json!("/v1/responses");
    twin["request"] = Value::Object(body);
    if let Some(r) = line.get("response").filter(|r| !r.is_null()) {
        let msg = &r["choices"][0]["message"];
        let mut output = Vec::new();
        if let Some(t) = msg["reasoning_content"].as_str() {
            output.push(
                json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": t}]}),
            );
        }
        for _ in 0..msg["tool_calls"].as_array().map_or(0, Vec::len) {
            output.push(json!({"type": "function_call", "name": "f", "arguments": "{}"}));
        }
        output.push(json!({"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": msg["content"].as_str().unwrap_or("")}]}));
        let u = &r["usage"];
        twin["response"] = json!({"object": "response", "status": "completed", "output": output,
            "usage": {"input_tokens": u["prompt_tokens"], "output_tokens": u["completion_tokens"],
                      "output_tokens_details": u["completion_tokens_details"]}});
    }
    Some(twin)
}

#[test]
fn a_harvest_through_the_responses_api_is_scored_like_its_chat_completions_twin() {
    let d = Dir::new("responses-twin");
    let world = simulate_small(&d, "w", 4);
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(world.join("events.jsonl.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let (mut chat, mut resp) = (String::new(), String::new());
    let mut converted = 0;
    // The world has Responses-API clients of its own; they stay as they are.
    let native = text
        .lines()
        .filter(|l| l.contains("\"endpoint\":\"/v1/responses\""))
        .count();
    assert!(native > 0);
    for l in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
        let twin = as_responses(&mut v);
        chat.push_str(&v.to_string());
        chat.push('\n');
        match twin {
            Some(t) => {
                converted += 1;
                resp.push_str(&t.to_string());
            }
            None => resp.push_str(&v.to_string()),
        }
        resp.push('\n');
    }
    assert!(converted > 1000, "{converted}");
    let (chat_log, resp_log) = (d.path("chat.jsonl"), d.path("responses.jsonl"));
    write(&chat_log, &chat);
    write(&resp_log, &resp);
    let check = ok(&[
        "check",
        resp_log.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]);
    let c: serde_json::Value = serde_json::from_str(&check).unwrap();
    assert_eq!(c[0]["malformed"], 0);
    assert_eq!(c[0]["responses"], converted + native);
    let report = |log: &Path| -> serde_json::Value {
        serde_json::from_str(&ok(&[
            "analyze",
            log.to_str().unwrap(),
            "--accounts",
            world.join("accounts.jsonl").to_str().unwrap(),
            "--all",
            "--format",
            "json",
            "-q",
        ]))
        .unwrap()
    };
    let (a, b) = (report(&chat_log), report(&resp_log));
    let by_id = |r: &serde_json::Value| -> std::collections::BTreeMap<String, (String, f64)> {
        r["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["account_id"].as_str().unwrap().to_string(),
                    (
                        x["verdict"].as_str().unwrap().to_string(),
                        x["risk"].as_f64().unwrap(),
                    ),
                )
            })
            .collect()
    };
    let (a, b) = (by_id(&a), by_id(&b));
    assert_eq!(a.len(), b.len());
    let flagged = |m: &std::collections::BTreeMap<String, (String, f64)>| -> Vec<String> {
        m.iter()
            .filter(|(_, (v, _))| v == "throttle" || v == "block")
            .map(|(k, _)| k.clone())
            .collect()
    };
    assert!(
        flagged(&a).len() > 10,
        "the small world's harvests are flagged"
    );
    // The same exchange through either API is the same evidence: every
    // account gets the same verdict and risk.
    assert_eq!(flagged(&a), flagged(&b));
    for (id, (verdict, risk)) in &a {
        let (v2, r2) = &b[id];
        assert_eq!(verdict, v2, "{id}");
        assert!((risk - r2).abs() < 1e-9, "{id}: {risk} vs {r2}");
    }
}

#[test]
fn simulate_analyze_eval_finds_campaigns_and_spares_honest_accounts() {
    let d = Dir::new("pipeline");
    let out = simulate_small(&d, "s", 31);
    let report = analyze_dir(&out, &out.join("events.jsonl.gz"));
    let rpath = d.path("report.json");
    write(&rpath, &report.to_string());
    let sb: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--report",
        rpath.to_str().unwrap(),
        "--truth",
        out.join("truth.jsonl").to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    let det = &sb["detector"];
    assert!(det["recall"].as_f64().unwrap() >= 0.9, "{det}");
    assert!(det["precision"].as_f64().unwrap() >= 0.95, "{det}");
    assert!(
        det["benign_false_positive_rate"].as_f64().unwrap() <= 0.005,
        "{det}"
    );
    for c in det["campaigns"].as_array().unwrap() {
        assert!(c["recall"].as_f64().unwrap() >= 0.75, "{c}");
        assert!(
            c["served_before_detection_pct"].as_f64().unwrap() < 5.0,
            "{c}"
        );
    }
    assert!(sb["baseline"]["recall"].as_f64().unwrap() < 0.2);
    // Every flagged account says why, with a human-readable line per signal.
    let flagged: Vec<&serde_json::Value> = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["verdict"] == "block" || a["verdict"] == "throttle")
        .collect();
    assert!(!flagged.is_empty());
    for a in flagged {
        assert!(a["flagged_at"].is_string());
        let reasons = a["reasons"].as_array().unwrap();
        assert!(
            reasons
                .iter()
                .all(|r| !r["detail"].as_str().unwrap().is_empty())
        );
        if a["risk"].as_f64().unwrap() == 0.0 {
            // Never sent a request: blocked through its campaign alone.
            assert_eq!(reasons.len(), 1, "{a}");
            assert_eq!(reasons[0]["signal"], "campaign");
            assert!(a["campaign_id"].is_string());
        } else {
            assert!(reasons.len() >= 10, "{a}");
        }
    }
    // Campaigns: every simulated one recovered, complete and pure; campaign
    // members carry the campaign's id; no honest account is linked.
    let link = &sb["linking"];
    assert_eq!(link["honest_accounts_linked"], 0, "{link}");
    for c in link["campaigns"].as_array().unwrap() {
        assert!(c["completeness"].as_f64().unwrap() >= 0.9, "{c}");
        assert!(c["purity"].as_f64().unwrap() >= 0.95, "{c}");
    }
    let camps = report["campaigns"].as_array().unwrap();
    assert_eq!(camps.len(), link["campaigns"].as_array().unwrap().len());
    for c in camps {
        assert!(
            c["detected_at"].is_string() && c["reasons"][0].is_string(),
            "{c}"
        );
        let id = c["campaign_id"].as_str().unwrap();
        let member = c["accounts"][0].as_str().unwrap();
        let acct = report["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account_id"] == member)
            .unwrap();
        assert_eq!(acct["campaign_id"], id);
    }
    // No prompt text in the report (privacy by default).
    let text = report.to_string();
    assert!(
        !text.contains("step by step") && !text.contains("Solve the following"),
        "prompt text leaked"
    );
}

#[test]
fn verdicts_do_not_depend_on_file_order() {
    let d = Dir::new("shuffle");
    let out = simulate_small(&d, "s", 33);
    let mut lines: Vec<String> = Vec::new();
    let mut gz = flate2::read::MultiGzDecoder::new(
        std::fs::File::open(out.join("events.jsonl.gz")).unwrap(),
    );
    let mut all = String::new();
    gz.read_to_string(&mut all).unwrap();
    lines.extend(all.lines().map(str::to_string));
    // A deterministic shuffle.
    let mut x: u64 = 0x2545F4914F6CDD1D;
    for i in (1..lines.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        lines.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let shuffled = d.path("shuffled.jsonl");
    write(&shuffled, &(lines.join("\n") + "\n"));
    let a = analyze_dir(&out, &out.join("events.jsonl.gz"));
    let b = analyze_dir(&out, &shuffled);
    assert_eq!(a["accounts"], b["accounts"]);
    assert!(b["stats"]["events_out_of_order"].as_u64().unwrap() > 0);
    // The sorted log streams through the reorder buffer; the shuffled one is
    // far out of order and is sorted whole.
    let order = |v: &serde_json::Value| v["stats"]["order"].as_str().unwrap().to_string();
    assert!(order(&a).starts_with("streamed"), "{}", order(&a));
    assert!(order(&b).starts_with("sorted whole"), "{}", order(&b));
    // Local disorder (neighbours within the same minute swapped, as writers
    // interleave) still streams, with the same verdicts.
    let mut near: Vec<&str> = all.lines().collect();
    let ts = |l: &str| l.split("\"ts\":\"").nth(1).map(|t| t[..16].to_string());
    let mut swapped = 0;
    let mut i = 0;
    while i + 1 < near.len() {
        if ts(near[i]) == ts(near[i + 1]) {
            near.swap(i, i + 1);
            swapped += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    assert!(swapped > 10, "{swapped}");
    let nearly = d.path("nearly.jsonl");
    write(&nearly, &(near.join("\n") + "\n"));
    let c = analyze_dir(&out, &nearly);
    assert!(order(&c).starts_with("streamed"), "{}", order(&c));
    assert!(c["stats"]["events_out_of_order"].as_u64().unwrap() > 0);
    assert_eq!(a["accounts"], c["accounts"]);
    // JSONL output: one account per line; strict mode stops on a bad line.
    let jsonl = ok(&[
        "analyze",
        shuffled.to_str().unwrap(),
        "--format",
        "jsonl",
        "--quiet",
    ]);
    assert!(
        jsonl
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
    write(&shuffled, &(lines[..10].join("\n") + "\nnot json\n"));
    let strict = dg(&["analyze", shuffled.to_str().unwrap(), "--strict", "--quiet"]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("shuffled.jsonl:11"));
}

#[test]
fn analyze_config_file_is_checked_and_applied() {
    let d = Dir::new("config");
    let out = simulate_small(&d, "s", 34);
    let log = out.join("events.jsonl.gz");
    let cfg = d.path("dg.toml");
    write(
        &cfg,
        "[thresholds]\nmonitor = 0.5\nthrottle = 0.999999\nblock = 1.0\nmin_requests = 5\n",
    );
    let strict_text = ok(&[
        "analyze",
        log.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]);
    let v: serde_json::Value = serde_json::from_str(&strict_text).unwrap();
    let loose = analyze_dir(&out, &log);
    let flagged = |r: &serde_json::Value| {
        r["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["verdict"] == "block" || a["verdict"] == "throttle")
            .count()
    };
    assert!(
        flagged(&v) < flagged(&loose),
        "a stricter threshold flags fewer accounts"
    );
    write(&cfg, "[thresholds]\nthrottle = 0.9\nblock = 0.5\n");
    let bad = dg(&[
        "analyze",
        log.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("throttle ≤ block"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    write(&cfg, "[thresholds]\nthrotle = 0.9\n");
    let typo = dg(&[
        "analyze",
        log.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&typo.stderr).to_string();
    assert!(err.contains("dg.toml") && err.contains("throtle"), "{err}");
}

/// Fit on randomised worlds without a family, then judge a world with it:
/// the leave-one-family-out path end to end (`fit --without-family`,
/// `simulate --scenario random --family`, `analyze --weights`, `eval`), on
/// worlds small enough for a test. The bounds are the measured values of
/// these seeds less a margin; docs/detection.md has the full table.
#[test]
fn fit_without_a_family_then_catch_it_in_a_world_that_has_it() {
    let d = Dir::new("lofo");
    let w = d.path("w.json");
    let w_s = w.to_str().unwrap();
    let fit = ok(&[
        "fit",
        "--random",
        "4",
        "--seed",
        "3",
        "--scale",
        "0.12",
        "--corpus",
        "embedded",
        "--without-family",
        "reasoning-harvest",
        "--out",
        w_s,
        "-q",
    ]);
    assert!(fit.contains("monotone trees"), "{fit}");
    let weights: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&w).unwrap()).unwrap();
    assert!(
        weights["provenance"]
            .as_str()
            .unwrap()
            .contains("--without-family reasoning-harvest")
    );
    let t = d.path("t");
    ok(&[
        "simulate",
        "--scenario",
        "random",
        "--seed",
        "3600",
        "--scale",
        "0.12",
        "--corpus",
        "embedded",
        "--family",
        "reasoning-harvest",
        "--out",
        t.to_str().unwrap(),
        "-q",
    ]);
    let truth = t.join("truth.jsonl");
    assert!(
        std::fs::read_to_string(&truth)
            .unwrap()
            .contains("\"family\":\"reasoning-harvest\"")
    );
    let report = d.path("r.json");
    ok(&[
        "analyze",
        t.join("events.jsonl.gz").to_str().unwrap(),
        "--accounts",
        t.join("accounts.jsonl").to_str().unwrap(),
        "--weights",
        w_s,
        "--format",
        "json",
        "--out",
        report.to_str().unwrap(),
        "-q",
    ]);
    let sb: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--report",
        report.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    let camp = sb["detector"]["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["campaign"]
                .as_str()
                .unwrap()
                .starts_with("reasoning-harvest")
        })
        .cloned()
        .unwrap();
    let recall = camp["recall"].as_f64().unwrap();
    assert!(recall >= 0.9, "left-out family recall {recall}: {camp}");
    let fp = sb["detector"]["counts"]["false_positives"]
        .as_u64()
        .unwrap();
    let honest = sb["benign_accounts"].as_u64().unwrap();
    assert!(fp <= 1, "{fp} false positives of {honest} honest accounts");
}

/// A simulated world's events, raw, grouped by account (file order).
fn raw_by_account(world: &Path) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(world.join("events.jsonl.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut by: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        by.entry(v["account_id"].as_str().unwrap().to_string())
            .or_default()
            .push(v);
    }
    by
}

/// `analyze` of batch files sent by `account`: its verdict.
fn batch_verdict(world: &Path, format: &str, account: &str, at: &str, files: &[&Path]) -> String {
    let mut args = vec![
        "analyze",
        "--input-format",
        format,
        "--batch-account",
        account,
        "--batch-time",
        at,
        "--accounts",
        world.join("accounts.jsonl").to_str().unwrap(),
        "--all",
        "--format",
        "json",
        "-q",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.extend(files.iter().map(|f| f.to_str().unwrap().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    let a = &r["accounts"][0];
    assert_eq!(a["account_id"], account);
    a["verdict"].as_str().unwrap().to_string()
}

#[test]
fn harvests_sent_as_batches_are_flagged_and_honest_batches_are_not() {
    // A simulated world's accounts replayed as batches: every request of
    // the account submitted at once, with its answer in the results file.
    let d = Dir::new("batches");
    let world = simulate_small(&d, "w", 4);
    let labels: HashMap<String, Label> = truth(&world)
        .into_iter()
        .map(|t| (t.account_id, t.label))
        .collect();
    let by = raw_by_account(&world);
    let heaviest =
        |label: Label, endpoint: &str, n: usize| -> Vec<(String, Vec<serde_json::Value>)> {
            let mut v: Vec<(String, Vec<serde_json::Value>)> = by
                .iter()
                .filter(|(a, _)| labels[a.as_str()] == label)
                .map(|(a, es)| {
                    let es: Vec<serde_json::Value> = es
                        .iter()
                        .filter(|e| e["endpoint"] == endpoint)
                        .cloned()
                        .collect();
                    (a.clone(), es)
                })
                .filter(|(_, es)| es.len() >= 50)
                .collect();
            v.sort_by_key(|(a, es)| (std::cmp::Reverse(es.len()), a.clone()));
            v.truncate(n);
            v
        };
    // OpenAI: the uploaded input file and the results file.
    let openai = |a: &str, es: &[serde_json::Value]| -> String {
        let (input, output) = (
            d.path(&format!("{a}.in.jsonl")),
            d.path(&format!("{a}.out.jsonl")),
        );
        let (mut i, mut o) = (String::new(), String::new());
        for (n, e) in es.iter().enumerate() {
            let id = format!("req-{n}");
            i += &serde_json::json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": e["request"]}).to_string();
            i.push('\n');
            if !e["response"].is_null() {
                o += &serde_json::json!({"id": format!("batch_req_{n}"), "custom_id": id, "response": {"status_code": 200, "request_id": "x", "body": e["response"]}, "error": null}).to_string();
                o.push('\n');
            }
        }
        write(&input, &i);
        write(&output, &o);
        batch_verdict(
            &world,
            "openai-batch",
            a,
            es[0]["ts"].as_str().unwrap(),
            &[&input, &output],
        )
    };
    // Anthropic: the create body on one line, and the results.
    let anthropic = |a: &str, es: &[serde_json::Value]| -> String {
        let (input, output) = (
            d.path(&format!("{a}.abatch.json")),
            d.path(&format!("{a}.aresults.jsonl")),
        );
        let requests: Vec<serde_json::Value> = es
            .iter()
            .enumerate()
            .map(|(n, e)| serde_json::json!({"custom_id": format!("m{n}"), "params": e["request"]}))
            .collect();
        write(
            &input,
            &serde_json::json!({ "requests": requests }).to_string(),
        );
        let mut o = String::new();
        for (n, e) in es
            .iter()
            .enumerate()
            .filter(|(_, e)| !e["response"].is_null())
        {
            o += &serde_json::json!({"custom_id": format!("m{n}"), "result": {"type": "succeeded", "message": e["response"]}}).to_string();
            o.push('\n');
        }
        write(&output, &o);
        batch_verdict(
            &world,
            "anthropic-batch",
            a,
            es[0]["ts"].as_str().unwrap(),
            &[&input, &output],
        )
    };
    let flagged = |v: &str| v == "throttle" || v == "block";
    for (endpoint, send) in [
        (
            "/v1/chat/completions",
            &openai as &dyn Fn(&str, &[serde_json::Value]) -> String,
        ),
        ("/v1/messages", &anthropic),
    ] {
        let attacks = heaviest(Label::Attack, endpoint, 3);
        let honest = heaviest(Label::Benign, endpoint, 3);
        assert!(!attacks.is_empty() && !honest.is_empty(), "{endpoint}");
        for (a, es) in &attacks {
            let v = send(a, es);
            assert!(
                flagged(&v),
                "{endpoint}: attack {a} ({} requests) got {v}",
                es.len()
            );
        }
        for (a, es) in &honest {
            let v = send(a, es);
            assert!(
                !flagged(&v),
                "{endpoint}: honest {a} ({} requests) got {v}",
                es.len()
            );
        }
    }
}

#[test]
fn batch_input_needs_its_account_and_names_bad_lines() {
    let d = Dir::new("batch-bad");
    let input = d.path("in.jsonl");
    write(
        &input,
        "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n{\"custom_id\":\"b\",\"url\":\"/v1/embeddings\",\"body\":{}}\n",
    );
    let out = dg(&[
        "analyze",
        "--input-format",
        "openai-batch",
        input.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch-account"));
    let out = dg(&[
        "analyze",
        "--input-format",
        "openai-batch",
        "--batch-account",
        "acct_1",
        input.to_str().unwrap(),
        "--format",
        "json",
        "-q",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in.jsonl:2") && err.contains("url"), "{err}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["stats"]["events"], 1);
    // One line of two is malformed: above --max-malformed 0.1, exit 2.
    assert_eq!(r["stats"]["malformed_lines"], 1);
    assert_eq!(out.status.code(), Some(2), "{err}");
}

/// The table's columns stay apart: a campaign's accounts and requests are
/// two numbers (they once ran together, `300043463` for 3,000 and 43,463).
#[test]
fn the_analyze_table_keeps_its_columns_apart() {
    let d = Dir::new("table");
    let sim = d.path("sim");
    ok(&[
        "simulate",
        "--scenario",
        "small",
        "--seed",
        "3",
        "--out",
        sim.to_str().unwrap(),
    ]);
    let log = sim.join("events.jsonl.gz");
    let accounts = sim.join("accounts.jsonl");
    let args = |json: bool| {
        let mut a = vec![
            "analyze".to_string(),
            log.to_str().unwrap().to_string(),
            "--accounts".into(),
            accounts.to_str().unwrap().to_string(),
            "--quiet".into(),
        ];
        if json {
            a.extend(["--format".into(), "json".into()]);
        }
        a
    };
    let run = |json: bool| {
        let a = args(json);
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let v: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
    let table = run(false);
    let campaigns = v["campaigns"].as_array().unwrap();
    assert!(!campaigns.is_empty(), "{table}");
    for c in campaigns.iter().take(20) {
        let id = c["campaign_id"].as_str().unwrap();
        let row = table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in\n{table}"));
        let f: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            f[1],
            c["accounts"].as_array().unwrap().len().to_string(),
            "{row}"
        );
        assert_eq!(f[2], c["requests"].to_string(), "{row}");
    }
    // Account rows: the id and the verdict never touch.
    for a in v["accounts"].as_array().unwrap().iter().take(50) {
        let id = a["account_id"].as_str().unwrap();
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{id} not in\n{table}"));
        assert_eq!(
            row.split_whitespace().nth(1),
            a["verdict"].as_str(),
            "{row}"
        );
    }
}

#[test]
fn analyze_with_out_says_what_it_wrote_and_how_to_look_at_it() {
    let d = Dir::new("analyze-out");
    let out = simulate_small(&d, "s", 5);
    let log = out.join("events.jsonl.gz");
    let report = d.path("r.json");
    let o = dg(&[
        "analyze",
        log.to_str().unwrap(),
        "--format",
        "json",
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty(), "the report went to the file");
    let err = String::from_utf8_lossy(&o.stderr);
    let summary = err
        .lines()
        .find(|l| l.contains("report written to"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        summary.contains("flagged") && summary.contains("campaigns"),
        "{summary}"
    );
    assert!(
        err.contains(&format!(
            "distillguard console {} --events {}",
            report.display(),
            log.display()
        )),
        "{err}"
    );
    // Quiet is quiet.
    let o = dg(&[
        "analyze",
        log.to_str().unwrap(),
        "--format",
        "json",
        "--out",
        report.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success() && o.stderr.is_empty() && o.stdout.is_empty());
}
