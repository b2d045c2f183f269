#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panics are failures
//! End-to-end tests of the `distillguard` binary: one harness, many cases.
//!
//! Each case runs the real binary on real files in a fresh temporary
//! directory, as a user would.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distillguard_core::{EventReader, Label, RecordReader, Timestamp, TruthRecord};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("dg-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = dg(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn simulate_small(dir: &Dir, sub: &str, seed: u64) -> PathBuf {
    let out = dir.path(sub);
    ok(&[
        "simulate",
        "--scenario",
        "small",
        "--seed",
        &seed.to_string(),
        "--corpus",
        "embedded",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--format",
        "json",
    ]);
    out
}

fn read_events(path: &Path) -> Vec<distillguard_core::Event> {
    let mut r = EventReader::open(path).unwrap();
    let mut v = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        v.push(e.unwrap());
    }
    v
}

fn truth(dir: &Path) -> Vec<TruthRecord> {
    RecordReader::<TruthRecord>::open(&dir.join("truth.jsonl"))
        .unwrap()
        .read_all(true)
        .unwrap()
        .0
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let d = Dir::new("det");
    let a = simulate_small(&d, "a", 7);
    let b = simulate_small(&d, "b", 7);
    let c = simulate_small(&d, "c", 8);
    for f in [
        "events.jsonl.gz",
        "accounts.jsonl",
        "truth.jsonl",
        "models.jsonl",
    ] {
        let fa = std::fs::read(a.join(f)).unwrap();
        assert_eq!(
            fa,
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs for the same seed"
        );
        if f != "models.jsonl" {
            assert_ne!(
                fa,
                std::fs::read(c.join(f)).unwrap(),
                "{f} identical for another seed"
            );
        }
    }
}

#[test]
fn simulated_log_is_valid_ordered_and_labelled() {
    let d = Dir::new("valid");
    let out = simulate_small(&d, "s", 3);
    let events = read_events(&out.join("events.jsonl.gz"));
    assert!(events.len() > 15_000, "{}", events.len());
    assert!(
        events.windows(2).all(|w| w[0].ts <= w[1].ts),
        "log is not in time order"
    );
    let t = truth(&out);
    let labels: HashMap<&str, &TruthRecord> =
        t.iter().map(|r| (r.account_id.as_str(), r)).collect();
    // Every event's account is labelled; both dialects and all campaigns occur.
    assert!(
        events
            .iter()
            .all(|e| labels.contains_key(e.account_id.as_str()))
    );
    // Chat Completions, Messages and (for a share of OpenAI keys) Responses.
    let dialects: BTreeSet<_> = events.iter().map(|e| format!("{:?}", e.dialect)).collect();
    assert_eq!(dialects.len(), 3, "{dialects:?}");
    let campaigns: BTreeSet<&str> = t.iter().filter_map(|r| r.campaign.as_deref()).collect();
    assert_eq!(
        campaigns,
        [
            "agentic-multi",
            "coding-pivot",
            "hydra-reseller",
            "low-and-slow",
            "reasoning-harvest"
        ]
        .into_iter()
        .collect()
    );
    // Ids reveal nothing: no campaign name or label in any account id.
    assert!(
        t.iter()
            .all(|r| r.account_id.starts_with("acct_") && r.account_id.len() == 21)
    );
    // Accounts file covers every account, with the fields analyze reads.
    let (accts, bad) =
        RecordReader::<distillguard_core::AccountRecord>::open(&out.join("accounts.jsonl"))
            .unwrap()
            .read_all(true)
            .unwrap();
    assert!(bad.is_empty());
    assert_eq!(accts.len(), t.len());
    assert!(
        accts
            .iter()
            .all(|a| a.created_at.is_some() && a.tier.is_some() && a.signup_program.is_some())
    );
    // `check` agrees: nothing malformed.
    let report = ok(&[
        "check",
        out.join("events.jsonl.gz").to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v[0]["malformed"], 0);
    assert_eq!(v[0]["events"], events.len() as u64);
    assert_eq!(v[0]["out_of_order"], 0);
}

#[test]
fn scenario_behaviours_are_present() {
    let d = Dir::new("behave");
    let out = simulate_small(&d, "s", 5);
    let events = read_events(&out.join("events.jsonl.gz"));
    let t = truth(&out);
    let camp: HashMap<&str, Option<&str>> = t
        .iter()
        .map(|r| (r.account_id.as_str(), r.campaign.as_deref()))
        .collect();
    let models: Vec<distillguard_core::ModelRelease> =
        RecordReader::open(&out.join("models.jsonl"))
            .unwrap()
            .read_all(true)
            .unwrap()
            .0;
    let release = models
        .iter()
        .find(|m| m.model == "atlas-3")
        .unwrap()
        .released_at;
    let camp_ref = &camp;
    let of = |name: &'static str| {
        events
            .iter()
            .filter(move |e| camp_ref[e.account_id.as_str()] == Some(name))
    };

    // (c) pivot: about half the campaign's traffic on the new model within a day of release.
    let after: Vec<_> = of("coding-pivot")
        .filter(|e| e.ts.0 > release.0 + 86_400_000)
        .collect();
    let on_new = after
        .iter()
        .filter(|e| e.model.as_deref() == Some("atlas-3"))
        .count();
    let share = on_new as f64 / after.len() as f64;
    assert!((0.4..0.6).contains(&share), "pivot share {share}");
    assert!(
        events
            .iter()
            .all(|e| e.model.as_deref() != Some("atlas-3") || e.ts >= release)
    );

    // (a) reasoning harvest: elicitation and shared payment methods.
    let elicits = of("reasoning-harvest")
        .filter(|e| {
            let s = e.request.last_user_text.to_lowercase();
            s.contains("step")
                || s.contains("reason")
                || s.contains("chain of thought")
                || s.contains("worked example")
                || s.contains("一步")
                || s.contains("推理")
                || s.contains("rubric")
                || s.contains("score")
        })
        .count();
    assert!(
        elicits * 10 > of("reasoning-harvest").count() * 7,
        "{elicits}"
    );
    let accts: Vec<distillguard_core::AccountRecord> =
        RecordReader::open(&out.join("accounts.jsonl"))
            .unwrap()
            .read_all(true)
            .unwrap()
            .0;
    let pays: BTreeSet<_> = accts
        .iter()
        .filter(|a| camp[a.account_id.as_str()] == Some("reasoning-harvest"))
        .map(|a| a.payment_fingerprint.clone())
        .collect();
    assert!(pays.len() <= 2, "{pays:?}");

    // (b) agentic: tools, images and computer use appear.
    assert!(of("agentic-multi").any(|e| !e.request.tools.is_empty()));
    assert!(of("agentic-multi").any(|e| e.request.images > 0));
    assert!(of("agentic-multi").any(|e| e.request.tools.iter().any(|t| t.starts_with("computer"))));

    // (d) reseller accounts carry both distillation and real conversations.
    let reseller_multi_turn = of("hydra-reseller").filter(|e| e.request.depth > 1).count();
    assert!(reseller_multi_turn > 50, "{reseller_multi_turn}");

    // (e) low-and-slow: every account small.
    let mut per: BTreeMap<&str, u32> = BTreeMap::new();
    for e in of("low-and-slow") {
        *per.entry(e.account_id.as_str()).or_default() += 1;
    }
    assert!(per.values().all(|&n| n < 60), "{:?}", per.values().max());

    // Humans follow their local day: requests at 02:00–05:00 local time are
    // a small fraction of those at 10:00–13:00 (local time from the account's
    // country; humans are the accounts with a human-scale volume).
    let offsets: HashMap<&str, f64> = [
        ("US", -6.0),
        ("IN", 5.5),
        ("GB", 0.0),
        ("DE", 1.0),
        ("BR", -3.0),
        ("CA", -5.0),
        ("FR", 1.0),
        ("JP", 9.0),
        ("KR", 9.0),
        ("AU", 10.0),
    ]
    .into_iter()
    .collect();
    let country: HashMap<&str, &str> = accts
        .iter()
        .filter_map(|a| Some((a.account_id.as_str(), a.country.as_deref()?)))
        .collect();
    let mut volume: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *volume.entry(e.account_id.as_str()).or_default() += 1;
    }
    let humans: Vec<_> = events
        .iter()
        .filter(|e| camp[e.account_id.as_str()].is_none() && volume[e.account_id.as_str()] < 300)
        .collect();
    assert!(humans.len() > 2_000, "{}", humans.len());
    let (mut night, mut day) = (0, 0);
    for e in &humans {
        let Some(off) = country
            .get(e.account_id.as_str())
            .and_then(|c| offsets.get(c))
        else {
            continue;
        };
        let local_h = ((e.ts.0 as f64 / 3.6e6 + off).rem_euclid(24.0)) as u32;
        match local_h {
            2..=4 => night += 1,
            10..=12 => day += 1,
            _ => {}
        }
    }
    eprintln!("humans: {} events, day {day}, night {night}", humans.len());
    assert!(day > 6 * night, "day {day} night {night}");
    let multi = humans
        .iter()
        .filter(|e| e.request.assistant_turns > 0)
        .count();
    assert!(
        multi * 5 > humans.len(),
        "real follow-ups are common among humans"
    );

    // Campaign prompts keep structure but are not literal copies of each other
    // (the reseller is left out: its accounts also forward real end-user chats).
    let attack_texts: Vec<&str> = events
        .iter()
        .filter(|e| {
            matches!(camp[e.account_id.as_str()], Some(c) if c != "hydra-reseller")
                && e.request.depth == 1
                && e.request.last_user_text.len() >= 60
        })
        .map(|e| e.request.last_user_text.as_str())
        .collect();
    let distinct: BTreeSet<&str> = attack_texts.iter().copied().collect();
    assert!(
        distinct.len() * 100 > attack_texts.len() * 97,
        "{} distinct of {}",
        distinct.len(),
        attack_texts.len()
    );
}

fn write(path: &Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

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
fn bad_scenarios_and_paths_fail_with_the_place_named() {
    let d = Dir::new("scen");
    let text = ok(&["scenarios", "small"]);
    let custom = d.path("mine.toml");
    write(
        &custom,
        &text.replacen("paraphrase = 0.8", "paraphrase = 1.8", 1),
    );
    let out = dg(&[
        "simulate",
        "--scenario",
        custom.to_str().unwrap(),
        "--out",
        d.path("o").to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("campaigns[4] (low-and-slow).paraphrase") && err.contains("[0, 1]"),
        "{err}"
    );

    write(
        &custom,
        &text.replacen("[benign]", "[benign]\nacounts = 3", 1),
    );
    let err = String::from_utf8_lossy(
        &dg(&[
            "simulate",
            "--scenario",
            custom.to_str().unwrap(),
            "--out",
            d.path("o").to_str().unwrap(),
            "--quiet",
        ])
        .stderr,
    )
    .to_string();
    assert!(
        err.contains("acounts") && err.contains("mine.toml"),
        "{err}"
    );

    let err = String::from_utf8_lossy(&dg(&["check", "/nonexistent/log.jsonl"]).stderr).to_string();
    assert!(err.contains("cannot open /nonexistent/log.jsonl"), "{err}");

    // A custom scenario runs: one campaign, no benign population.
    write(
        &custom,
        "name = \"tiny\"\nstart = \"2026-03-01T00:00:00Z\"\ndays = 1.0\ncorpus = \"embedded\"\n[[models]]\nname = \"m\"\n[[campaigns]]\nname = \"only\"\naccounts = 3\nrequests = 30\ncapabilities = { chat = 1.0 }\n",
    );
    let o = d.path("tiny");
    ok(&[
        "simulate",
        "--scenario",
        custom.to_str().unwrap(),
        "--out",
        o.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(read_events(&o.join("events.jsonl.gz")).len(), 30);
}

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

#[test]
fn template_bands_separate_campaign_traffic_from_honest_traffic() {
    let d = Dir::new("bench");
    let out = simulate_small(&d, "s", 13);
    // The embedded sample has ~900 real user turns for ~3,000 human requests,
    // so honest prompts do recur across a few accounts here; a template used by
    // a campaign's 10–120 accounts recurs across many more.
    let text = ok(&[
        "bench",
        "sketches",
        "--corpus",
        "embedded",
        "--min-accounts",
        "8",
        "--events",
        out.join("events.jsonl.gz").to_str().unwrap(),
    ]);
    assert!(text.contains("prompts/s"), "{text}");
    let pct = |group: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(group))
            .unwrap_or_else(|| panic!("{group}: {text}"));
        let band = line.split("band").nth(1).unwrap().trim_start();
        band.split('%').next().unwrap().trim().parse().unwrap()
    };
    let benign = pct("benign: light accounts");
    for c in ["agentic-multi", "coding-pivot", "low-and-slow"] {
        let p = pct(&format!("attack: {c}"));
        assert!(
            p > 60.0 && p > 3.0 * benign,
            "{c}: {p}% vs benign {benign}%\n{text}"
        );
    }
    assert!(benign < 25.0, "{text}");
}

/// Runs `analyze` on a simulation directory's log; returns the JSON report.
fn analyze_dir(out: &Path, log: &Path) -> serde_json::Value {
    let text = ok(&[
        "analyze",
        log.to_str().unwrap(),
        "--accounts",
        out.join("accounts.jsonl").to_str().unwrap(),
        "--models",
        out.join("models.jsonl").to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
        "--all",
    ]);
    serde_json::from_str(&text).unwrap()
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

/// Python packages the tests use, pinned.
const PY_PACKAGES: [&str; 4] = [
    "stix2-validator==3.3.2",
    "openai==3.54.0",
    "anthropic==2.12.0",
    "prometheus-client==0.26.0",
];

/// A venv under the target directory with [`PY_PACKAGES`], created and
/// filled on first use (CI fills it beforehand; see `.ci/run`). Returns
/// its `bin` folder.
fn py_venv() -> PathBuf {
    // Tests run on threads: one of them fills the venv, the others wait.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stix-venv");
    let bin = venv.join("bin");
    let ready = bin.join("stix2_validator").exists()
        && std::process::Command::new(bin.join("python"))
            .args(["-c", "import openai, anthropic, prometheus_client"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        if !bin.join("pip").exists() {
            let st = std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 -m venv");
            assert!(st.success(), "could not create {}", venv.display());
        }
        let st = std::process::Command::new(bin.join("pip"))
            .args(["install", "-q"])
            .args(PY_PACKAGES)
            .status()
            .expect("pip");
        assert!(st.success(), "pip install {PY_PACKAGES:?} failed");
    }
    bin
}

fn stix2_validator() -> PathBuf {
    py_venv().join("stix2_validator")
}

#[test]
fn campaigns_export_as_valid_stix_and_come_back_as_intel() {
    let d = Dir::new("stix");
    let out = simulate_small(&d, "s", 31);
    let report = analyze_dir(&out, &out.join("events.jsonl.gz"));
    let rpath = d.path("report.json");
    write(&rpath, &report.to_string());
    let bpath = d.path("bundle.json");
    ok(&[
        "export",
        "stix",
        rpath.to_str().unwrap(),
        "--out",
        bpath.to_str().unwrap(),
        "--producer",
        "Example AI",
    ]);
    // Deterministic: the same report gives the same bytes.
    let again = ok(&[
        "export",
        "stix",
        rpath.to_str().unwrap(),
        "--producer",
        "Example AI",
    ]);
    assert_eq!(again, std::fs::read_to_string(&bpath).unwrap());
    let bundle: serde_json::Value = serde_json::from_str(&again).unwrap();
    let objects = bundle["objects"].as_array().unwrap();
    let count = |t: &str| objects.iter().filter(|o| o["type"] == t).count();
    let campaigns = report["campaigns"].as_array().unwrap().len();
    assert!(campaigns >= 4);
    assert_eq!(count("campaign"), campaigns);
    assert!(count("indicator") >= campaigns && count("relationship") > campaigns);
    assert!(count("infrastructure") >= 1 && count("sighting") >= 1);
    assert_eq!(count("extension-definition"), 1);
    // Salted fingerprints only: no raw payment fingerprint, no prompt text.
    assert!(!again.contains("\"pm_") && !again.contains("step by step"));
    // The OASIS validator accepts it.
    let v = std::process::Command::new(stix2_validator())
        .arg(&bpath)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && text.contains("STIX JSON: Valid"),
        "{text}"
    );
    // A partner imports it: the campaign's accounts match, with a reason
    // that names the indicator.
    let with_intel: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        out.join("events.jsonl.gz").to_str().unwrap(),
        "--intel",
        bpath.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]))
    .unwrap();
    let members: usize = report["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["accounts"].as_array().unwrap().len())
        .sum();
    let matched: Vec<&serde_json::Value> = with_intel["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["signal"] == "intel")
        })
        .collect();
    assert!(
        matched.len() * 10 >= members * 9,
        "{} of {members}",
        matched.len()
    );
    let detail = matched[0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["signal"] == "intel")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("indicator--") || detail.contains("campaign--"),
        "{detail}"
    );
    // A broken bundle is a clear error.
    write(&d.path("bad.json"), "{\"type\":\"indicator\"}");
    let bad = dg(&[
        "analyze",
        out.join("events.jsonl.gz").to_str().unwrap(),
        "--intel",
        d.path("bad.json").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a STIX bundle"));
}

#[test]
fn watermarked_answers_are_detected_and_others_are_not() {
    let d = Dir::new("watermark");
    let key = d.path("k.key");
    let printed = ok(&[
        "watermark",
        "keygen",
        "--out",
        key.to_str().unwrap(),
        "--seed",
        "3",
    ]);
    let text = std::fs::read_to_string(&key).unwrap();
    let secret = text.lines().find(|l| !l.starts_with('#')).unwrap();
    assert_eq!(secret.len(), 32);
    assert!(!printed.contains(secret), "keygen printed the key");
    // An existing key is never overwritten.
    let again = dg(&["watermark", "keygen", "--out", key.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not overwriting"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let prompts = d.path("prompts.txt");
    write(
        &prompts,
        "Explain how vaccines train the immune system.\nWrite a haiku about the sea.\n\
         蒸留とは何ですか？段階的に説明してください。\nОбъясни шаг за шагом, как работает дистилляция.\n",
    );
    let answers = d.path("answers.jsonl");
    wm_generate(&key, None, &prompts, 150, &answers);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&answers)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Non-Latin prompts get answers too (a token may end inside a
    // character; the decoder never aborts).
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[2]["prompt"],
        "蒸留とは何ですか？段階的に説明してください。"
    );
    let a = d.path("a.txt");
    write(&a, lines[0]["text"].as_str().unwrap());
    let human = d.path("human.txt");
    write(
        &human,
        "Vaccines expose the immune system to a harmless piece or copy of a pathogen, so that it learns to recognise it. When the real pathogen arrives later, memory cells respond quickly and strongly, which prevents or shortens the illness. Boosters refresh that memory when it fades over the years.",
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "watermark",
        "detect",
        "--key",
        key.to_str().unwrap(),
        "--format",
        "json",
        a.to_str().unwrap(),
        human.to_str().unwrap(),
    ]))
    .unwrap();
    let p = |i: usize| v[i]["p_value"].as_f64().unwrap();
    assert!(p(0) < 1e-6, "{v}");
    assert!(p(1) > 1e-3, "{v}");
    assert!(v[0]["keys"][0]["tokens_scored"].as_u64().unwrap() > 50);
    assert!(
        v[0]["keys"][0]["test"]
            .as_str()
            .unwrap()
            .contains("exact binomial")
    );
    // The wrong key sees nothing; a cohort list includes the right one only
    // if asked, with the correction stated.
    let other = d.path("other.key");
    wm_keygen(&other, 4);
    let w: serde_json::Value = serde_json::from_str(&ok(&[
        "watermark",
        "detect",
        "--key",
        other.to_str().unwrap(),
        "--format",
        "json",
        a.to_str().unwrap(),
    ]))
    .unwrap();
    assert!(w[0]["p_value"].as_f64().unwrap() > 1e-3, "{w}");
    let c: serde_json::Value = serde_json::from_str(&ok(&[
        "watermark",
        "detect",
        "--key",
        key.to_str().unwrap(),
        "--cohort",
        "a",
        "--cohort",
        "b",
        "--format",
        "json",
        a.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(c[0]["keys"].as_array().unwrap().len(), 2);
    assert_eq!(c[0]["correction"], "bonferroni over 2 keys");
    assert_eq!(c[0]["keys"][0]["cohort"], "a");
    // A bad key file names the problem.
    let bad = d.path("bad.key");
    write(&bad, "not a key\n");
    let e = dg(&[
        "watermark",
        "detect",
        "--key",
        bad.to_str().unwrap(),
        a.to_str().unwrap(),
    ]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("line 1"));
}

/// `watermark keygen --seed SEED` into `key`.
fn wm_keygen(key: &Path, seed: u64) {
    ok(&[
        "watermark",
        "keygen",
        "--out",
        key.to_str().unwrap(),
        "--seed",
        &seed.to_string(),
    ]);
}

/// `watermark generate` with the embedded teacher: answers to `prompts`
/// under `key` (or its `cohort`'s key) into `out`.
fn wm_generate(key: &Path, cohort: Option<&str>, prompts: &Path, max_tokens: u32, out: &Path) {
    let max = max_tokens.to_string();
    let mut args = vec!["watermark", "generate", "--key", key.to_str().unwrap()];
    if let Some(c) = cohort {
        args.extend(["--cohort", c]);
    }
    args.extend([
        "--prompts",
        prompts.to_str().unwrap(),
        "--corpus",
        "embedded",
        "--max-tokens",
        &max,
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&args);
}

#[test]
fn radioactivity_reports_evidence_from_files_and_from_an_endpoint() {
    let d = Dir::new("radio");
    let key = d.path("k.key");
    wm_keygen(&key, 5);
    let prompts = d.path("prompts.txt");
    let lines: Vec<String> = (0..6)
        .map(|i| format!("Tell me about topic number {i} in detail."))
        .collect();
    write(&prompts, &(lines.join("\n") + "\n"));
    let marked = d.path("marked.jsonl");
    wm_generate(&key, None, &prompts, 120, &marked);
    // A "suspect" that repeats our watermarked answers is caught; the
    // control key is not fooled.
    let out = d.path("evidence");
    let said = ok(&[
        "watermark",
        "radioactivity",
        "--key",
        key.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--suspect-outputs",
        marked.to_str().unwrap(),
        "--filter",
        marked.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(said.contains("evidence in"), "{said}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("evidence.json")).unwrap()).unwrap();
    assert!(r["p_value"].as_f64().unwrap() < 1e-6, "{r}");
    assert!(r["control"]["p_value"].as_f64().unwrap() > 1e-3, "{r}");
    assert_eq!(r["inputs"].as_array().unwrap().len(), 3);
    assert_eq!(r["inputs"][1]["sha256"].as_str().unwrap().len(), 64);
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret = secret.lines().find(|l| !l.starts_with('#')).unwrap();
    let md = std::fs::read_to_string(d.path("evidence.md")).unwrap();
    assert!(md.contains(r["key_fingerprint"].as_str().unwrap()) && !md.contains(secret));
    // The report states its assumptions, its controls (16 keys, with a
    // KS test) and the known removal attacks.
    assert!(r["assumptions"].as_array().unwrap().len() >= 3, "{r}");
    assert!(r["known_removal_attacks"].as_array().unwrap().len() >= 3);
    let controls = r["controls"]["p_values"].as_array().unwrap();
    assert_eq!(controls.len(), 16);
    assert!(controls.iter().all(|p| p.as_f64().unwrap() > 1e-4), "{r}");
    assert!(r["controls"]["ks_p"].as_f64().unwrap() > 1e-3, "{r}");
    assert!(md.contains("## Assumptions") && md.contains("## Known removal attacks"));
    // Across cohorts: text marked under cohort-3's key names cohort-3 out
    // of eight, corrected for the eight keys.
    let c3 = d.path("c3.jsonl");
    wm_generate(&key, Some("cohort-3"), &prompts, 120, &c3);
    let cohorts: Vec<String> = (0..8).map(|i| format!("cohort-{i}")).collect();
    let prefix = d.path("cohorts");
    let mut args = vec![
        "watermark",
        "radioactivity",
        "--key",
        key.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--suspect-outputs",
        c3.to_str().unwrap(),
        "--filter",
        c3.to_str().unwrap(),
        "--filter-context",
        "2",
        "--out",
        prefix.to_str().unwrap(),
    ];
    for c in &cohorts {
        args.extend(["--cohort", c.as_str()]);
    }
    let said = ok(&args);
    assert!(said.contains("best cohort cohort-3"), "{said}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("cohorts.json")).unwrap()).unwrap();
    assert_eq!(r["best_cohort"], "cohort-3", "{r}");
    assert_eq!(r["correction"], "bonferroni over 8 keys");
    assert_eq!(r["filter_context"], 2);
    assert_eq!(r["keys"].as_array().unwrap().len(), 8);
    assert!(r["p_value"].as_f64().unwrap() < 1e-6, "{r}");
    let others = r["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["cohort"] != "cohort-3")
        .map(|k| k["p_value"].as_f64().unwrap())
        .fold(1.0f64, f64::min);
    assert!(others > 1e-4, "{r}");
    // The same through an OpenAI-compatible endpoint that answers with
    // human text: no evidence.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..6 {
            let (mut s, _) = listener.accept().unwrap();
            // Read the whole request (headers, then Content-Length bytes).
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = std::io::Read::read(&mut s, &mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let body = serde_json::json!({"choices":[{"message":{"role":"assistant","content":"Honestly, it depends on where you live and what the weather is like, but most people start with a short walk and build up from there over a few weeks."}}]}).to_string();
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            std::io::Write::write_all(&mut s, resp.as_bytes()).unwrap();
        }
    });
    let url = format!("http://{addr}");
    ok(&[
        "watermark",
        "radioactivity",
        "--key",
        key.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--suspect-url",
        &url,
        "--out",
        d.path("clean").to_str().unwrap(),
    ]);
    server.join().unwrap();
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("clean.json")).unwrap()).unwrap();
    assert_eq!(c["answers"], 6);
    assert!(c["p_value"].as_f64().unwrap() > 1e-3, "{c}");
}

/// Starts `distillguard upstream-mock` on a free port; returns the child and its URL.
fn start_mock(extra: &[&str]) -> (std::process::Child, String) {
    let mut args = vec!["upstream-mock", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    spawn_with_url(&args)
}

/// Starts the binary with `args`; returns it and the URL that ends its
/// first line of output (a server saying where it listens).
fn spawn_with_url(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (child, url)
}

fn http_post(url: &str, path: &str, body: &str) -> (u16, String) {
    http("POST", url, path, body, "")
}

/// One HTTP/1.1 request; `headers`: extra lines, each ending in `\r\n`.
fn http(method: &str, url: &str, path: &str, body: &str, headers: &str) -> (u16, String) {
    let (status, _, payload) = http_full(method, url, path, body, headers);
    (status, payload)
}
/// Status, head and body.
fn http_full(
    method: &str,
    url: &str,
    path: &str,
    body: &str,
    headers: &str,
) -> (u16, String, String) {
    let host = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, payload) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), payload.to_string())
}

#[test]
fn radioactivity_asks_an_https_endpoint_behind_a_private_ca() {
    let d = Dir::new("radio-tls");
    // A CA and a certificate for 127.0.0.1, as an operator's PKI.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let (ca_pem, cert, key_pem) = (d.path("ca.pem"), d.path("cert.pem"), d.path("key.pem"));
    write(&ca_pem, &ca.pem());
    write(&cert, &leaf.pem());
    write(&key_pem, &leaf_key.serialize_pem());
    // The suspect model behind a TLS gateway.
    let (mut mock, up) = start_mock(&[]);
    let cfg = gateway_config(
        &d,
        "gw.toml",
        &up,
        &["openai"],
        &format!(
            "[detect]\nenabled = false\n[tls]\ncert = \"{}\"\nkey = \"{}\"",
            cert.display(),
            key_pem.display()
        ),
    );
    let (gw, url) = start_gateway(&cfg);
    assert!(url.starts_with("https://"), "{url}");
    let wm = d.path("k.key");
    wm_keygen(&wm, 5);
    let prompts = d.path("prompts.txt");
    write(&prompts, "Tell me about tides.\nTell me about bread.\n");
    let radio = |ca: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_distillguard"));
        c.args([
            "watermark",
            "radioactivity",
            "--key",
            wm.to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
            "--suspect-url",
            &url,
            "--suspect-model",
            "atlas-3",
            "--out",
            d.path("r").to_str().unwrap(),
        ]);
        match ca {
            Some(p) => c.env("DISTILLGUARD_SUSPECT_CA", p),
            None => c.env_remove("DISTILLGUARD_SUSPECT_CA"),
        };
        c.output().unwrap()
    };
    // Verified against the private CA: the answers come back.
    let out = radio(Some(&ca_pem));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path("r.json")).unwrap()).unwrap();
    assert_eq!(r["answers"], 2);
    // Without it, the certificate is refused.
    let out = radio(None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop(gw);
    mock.kill().unwrap();
    let _ = mock.wait();
}

#[test]
fn upstream_mock_speaks_both_apis_and_serves_watermarked_answers() {
    let (mut child, url) = start_mock(&["--reasoning"]);
    let (st, body) = http_post(
        &url,
        "/v1/chat/completions",
        r#"{"model":"atlas-3","messages":[{"role":"user","content":"Explain TCP"}],"max_tokens":20}"#,
    );
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["reasoning_content"].is_string());
    assert_eq!(v["usage"]["completion_tokens"], 20);
    // Deterministic: the same request, the same bytes.
    assert_eq!(http_post(&url, "/v1/chat/completions", r#"{"model":"atlas-3","messages":[{"role":"user","content":"Explain TCP"}],"max_tokens":20}"#).1, body);
    let (_, sse) = http_post(
        &url,
        "/v1/chat/completions",
        r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":8}"#,
    );
    assert!(
        sse.contains("chat.completion.chunk") && sse.contains("data: [DONE]"),
        "{sse}"
    );
    let (_, ev) = http_post(
        &url,
        "/v1/messages",
        r#"{"model":"m","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    for e in [
        "message_start",
        "thinking_delta",
        "text_delta",
        "message_delta",
        "message_stop",
    ] {
        assert!(ev.contains(e), "{e} missing in {ev}");
    }
    let (st, err) = http_post(&url, "/v1/messages", r#"{"model":"m","messages":[]}"#);
    assert_eq!(st, 400);
    assert!(err.contains("invalid_request_error") && err.contains("max_tokens"));
    child.kill().unwrap();
    let _ = child.wait();

    // With a key, the mock answers with the watermarked teacher: detect finds it.
    let d = Dir::new("mockwm");
    let key = d.path("k.key");
    wm_keygen(&key, 9);
    let (mut child, url) = start_mock(&[
        "--watermark-key",
        key.to_str().unwrap(),
        "--corpus",
        "embedded",
    ]);
    // Through the gateway, end to end.
    let cfg = gateway_config(&d, "gateway.toml", &url, &["anthropic"], "");
    let (gw, gw_url) = start_gateway(&cfg);
    let (st, body) = http_post(
        &gw_url,
        "/v1/messages",
        r#"{"model":"atlas-3","max_tokens":200,"messages":[{"role":"user","content":"How do I learn to cook?"}]}"#,
    );
    stop(gw);
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let text = v["content"][0]["text"].as_str().unwrap();
    let f = d.path("answer.txt");
    write(&f, text);
    let r: serde_json::Value = serde_json::from_str(&ok(&[
        "watermark",
        "detect",
        "--key",
        key.to_str().unwrap(),
        "--format",
        "json",
        f.to_str().unwrap(),
    ]))
    .unwrap();
    assert!(r[0]["p_value"].as_f64().unwrap() < 1e-6, "{r}");
}

#[test]
fn keys_are_shown_once_listed_without_secrets_and_revoked() {
    let d = Dir::new("keys");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let out = dg(&[
        "keys",
        "create",
        "--account",
        "acct_9",
        "--tier",
        "tier2",
        "--db",
        db,
    ]);
    assert!(out.status.success());
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(key.starts_with("dg_"), "{key}");
    let id = key.split('_').nth(1).unwrap().to_string();
    let list = ok(&["keys", "list", "--format", "json", "--db", db]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["tier"], "tier2");
    assert!(
        !list.contains(key.rsplit('_').next().unwrap()),
        "the secret was listed"
    );
    ok(&[
        "keys",
        "revoke",
        &id,
        "--db",
        db,
        "--reason",
        "left the company",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["keys", "list", "--format", "json", "--db", db])).unwrap();
    assert_eq!(v[0]["revoked"], true);
    // The table shows when, in RFC 3339 (not epoch seconds), and the JSON
    // keeps both.
    let created = v[0]["created_at"].as_str().unwrap().to_string();
    assert!(
        created.starts_with("20") && created.ends_with('Z'),
        "{created}"
    );
    let table = ok(&["keys", "list", "--db", db]);
    let row = table.lines().nth(1).unwrap();
    assert!(row.contains(&created), "{table}");
    assert!(!row.contains(&v[0]["created"].to_string()), "{table}");
    // Both actions are in the audit log, newest first, with who and why;
    // no secret is.
    let audit = ok(&["keys", "audit", "--format", "json", "--db", db]);
    let v: serde_json::Value = serde_json::from_str(&audit).unwrap();
    assert_eq!(v[0]["action"], "key.revoke", "{audit}");
    assert_eq!(v[0]["target"], id.as_str());
    assert_eq!(v[0]["detail"], "left the company");
    assert_eq!(v[1]["action"], "key.create");
    assert!(
        v[1]["actor"].as_str().unwrap().starts_with("cli:"),
        "{audit}"
    );
    assert!(!audit.contains(key.rsplit('_').next().unwrap()));
    let table = ok(&["keys", "audit", "--db", db]);
    assert!(
        table.lines().count() >= 3 && table.contains("key.revoke"),
        "{table}"
    );
    // A tier that is not built in is accepted with a note (the gateway's
    // [limits.tiers] may define it); a malformed name is refused.
    let custom = dg(&[
        "keys",
        "create",
        "--account",
        "a",
        "--tier",
        "platinum",
        "--db",
        db,
    ]);
    assert!(custom.status.success());
    assert!(String::from_utf8_lossy(&custom.stderr).contains("[limits.tiers.platinum]"));
    let bad = dg(&[
        "keys",
        "create",
        "--account",
        "a",
        "--tier",
        "tier 9!",
        "--db",
        db,
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tier \"tier 9!\""));
    // An empty account is refused; listing a store that does not exist is
    // an error and creates nothing.
    let empty = dg(&["keys", "create", "--account", "", "--db", db]);
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("--account \"\""));
    let missing = d.path("missing.db");
    let out = dg(&["keys", "list", "--db", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    assert!(!missing.exists());
    // An admin token: printed once; the config line with its hash on stderr.
    let t = dg(&["keys", "admin-token"]);
    assert!(t.status.success());
    let token = String::from_utf8_lossy(&t.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&t.stderr).to_string();
    assert!(
        token.starts_with("dgadmin_") && token.len() == 40,
        "{token}"
    );
    assert!(
        err.contains(&format!(
            "token_sha256 = \"{}\"",
            distillguard_storage::sha256_hex(&token)
        )),
        "{err}"
    );
    assert!(!err.contains(&token));
}

/// A new key of `account` in the store `db` (a file or a PostgreSQL URL).
fn create_key(db: &str, account: &str, tier: &str) -> String {
    ok(&[
        "keys",
        "create",
        "--account",
        account,
        "--tier",
        tier,
        "--db",
        db,
    ])
    .trim()
    .to_string()
}

/// Starts `distillguard serve` with `config`; returns the child and its URL.
fn start_gateway(config: &Path) -> (std::process::Child, String) {
    let (child, mut urls) = start_gateway_urls(config, 1);
    (child, urls.remove(0))
}

/// Starts `distillguard serve`; returns the child and the first `n` URLs it
/// prints (the public one, then the internal one).
fn start_gateway_urls(config: &Path, n: usize) -> (std::process::Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let urls = (0..n)
        .map(|_| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            let url = line.trim().rsplit(' ').next().unwrap().to_string();
            assert!(
                url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
                "{line}"
            );
            url
        })
        .collect();
    (child, urls)
}

/// Writes a gateway config `name` in `d`: any free port, the `head` keys
/// and tables, then one upstream per dialect at `upstream` (a mock's URL)
/// serving `atlas-3`.
fn gateway_config(
    d: &Dir,
    name: &str,
    upstream: &str,
    dialects: &[&str],
    head: &str,
) -> std::path::PathBuf {
    // Without a key store, the tests say so (a gateway refuses to start
    // unauthenticated by accident).
    let auth = if head.contains("keys_db") {
        ""
    } else {
        "auth = \"none\"\n"
    };
    let mut text = format!("listen = \"127.0.0.1:0\"\n{auth}{head}\n");
    for dl in dialects {
        text.push_str(&format!(
            "[[upstreams]]\nname = \"up-{dl}\"\nurl = \"{upstream}\"\ndialect = \"{dl}\"\nmodels = [\"atlas-3\"]\n"
        ));
    }
    let p = d.path(name);
    write(&p, &text);
    p
}

#[test]
fn the_official_sdks_work_through_the_gateway_and_get_the_right_errors() {
    let bin = py_venv();
    let d = Dir::new("sdk");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let key_for = |account: &str, tier: &str| create_key(db, account, tier);
    let key = key_for("acct_sdk", "tier2");
    let free = key_for("acct_free", "free");
    let revoked = key_for("acct_gone", "tier1");
    let batchkey = key_for("acct_batch", "tier2");
    ok(&[
        "keys",
        "revoke",
        revoked.split('_').nth(1).unwrap(),
        "--db",
        db,
    ]);
    let (mut mock, up) = start_mock(&["--reasoning"]);
    let both = ["openai", "anthropic"];
    let config = |name: &str, extra: &str| {
        let head = format!("max_body_bytes = 100000\nkeys_db = \"{db}\"\n{extra}");
        gateway_config(&d, name, &up, &both, &head)
    };
    let (mut normal, gw) = start_gateway(&config("normal.toml", ""));
    let (mut blocking, bgw) = start_gateway(&config(
        "blocking.toml",
        "[detect]\nthresholds = { monitor = 0.0, throttle = 0.0, block = 0.0, min_requests = 1 }",
    ));
    let (mut faulty_mock, fup) = start_mock(&["--fault", "reset"]);
    let faulty_cfg = gateway_config(
        &d,
        "faulty.toml",
        &fup,
        &both,
        &format!("keys_db = \"{db}\""),
    );
    let (mut faulty, fgw) = start_gateway(&faulty_cfg);
    let out = Command::new(bin.join("python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/clients.py"))
        .env("GATEWAY", &gw)
        .env("BLOCKING", &bgw)
        .env("FAULTY", &fgw)
        .env("KEY", &key)
        .env("FREE", &free)
        .env("REVOKED", &revoked)
        .env("BATCHKEY", &batchkey)
        .output()
        .unwrap();
    for c in [
        &mut normal,
        &mut blocking,
        &mut mock,
        &mut faulty,
        &mut faulty_mock,
    ] {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// The issue-11 target: one key harvesting through the gateway with the
/// official SDK is blocked within 100 requests, with the default weights
/// and thresholds, both when it asks for reasoning in a system prompt at
/// fixed settings and when it scrapes log-probabilities and samples.
/// Issue 11's gateway target. Not met by the shipped model: the shapes
/// reach risk 0.66–0.82 (monitor is 0.843, throttle 0.9919), because
/// honest chain-of-thought benchmark harnesses and coding agents in the
/// training worlds are as fast, as regular and as fixed in their settings
/// (docs/detection.md, "What is not met"). Run it with `--ignored`.
#[test]
#[ignore = "issue 11 target not met yet: see docs/detection.md"]
fn the_gateway_blocks_a_single_harvesting_key_within_100_requests() {
    let bin = py_venv();
    let d = Dir::new("harvest");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let (mut mock, up) = start_mock(&["--reasoning"]);
    let cfg = gateway_config(
        &d,
        "gw.toml",
        &up,
        &["openai"],
        &format!("max_body_bytes = 100000\nkeys_db = \"{db}\""),
    );
    let (mut gw, url) = start_gateway(&cfg);
    let mut blocked_at = Vec::new();
    for (account, shape) in [("acct_cot", "system"), ("acct_scrape", "scraper")] {
        let key = ok(&[
            "keys",
            "create",
            "--account",
            account,
            "--tier",
            "tier4",
            "--db",
            db,
        ])
        .trim()
        .to_string();
        let out = Command::new(bin.join("python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/harvest.py"))
            .env("GATEWAY", &url)
            .env("KEY", &key)
            .env("SHAPE", shape)
            .env("LIMIT", "150")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        blocked_at.push((
            shape,
            said.parse::<u32>().ok(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        ));
    }
    for c in [&mut gw, &mut mock] {
        let _ = c.kill();
        let _ = c.wait();
    }
    for (shape, at, err) in blocked_at {
        let n = at.unwrap_or_else(|| panic!("{shape}: never blocked in 150 requests\n{err}"));
        assert!(n <= 100, "{shape}: first refused at request {n}");
    }
}

#[test]
fn the_gateway_finishes_in_flight_streams_on_sigterm_and_flushes_its_log() {
    use std::io::{Read, Write};
    let d = Dir::new("shutdown");
    // 60 chunks 50 ms apart: about three seconds of streaming.
    let (mut mock, up) = start_mock(&["--chunk-ms", "50"]);
    let log = d.path("events.jsonl");
    let cfg = gateway_config(
        &d,
        "gateway.toml",
        &up,
        &["openai"],
        &format!("[log]\npath = \"{}\"", log.display()),
    );
    let (gw, url) = start_gateway(&cfg);
    let addr = url.trim_start_matches("http://").to_string();
    let body = r#"{"model":"atlas-3","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"Explain TCP"}]}"#;
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The answer has started…
    let mut first = [0u8; 64];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    // …when the gateway is told to stop.
    terminate(&gw);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("[DONE]"), "the stream was cut: {rest}");
    let _ = mock.kill();
    let _ = mock.wait();
    wait_clean_exit(gw);
    // The request reached the event log before the process ended.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let e = distillguard_core::parse_event_line(text.lines().next().unwrap()).unwrap();
    assert!(e.response.unwrap().output_tokens.unwrap() >= 32);
    // Without keys, the client's address (the TCP peer here) is the account.
    assert_eq!(e.account_id, "ip:127.0.0.1");
    assert_eq!(e.client.ip.as_deref(), Some("127.0.0.1"));
}

/// Sends SIGTERM (a graceful stop).
fn terminate(child: &std::process::Child) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Waits (at most 10 s) for a process to exit with success.
fn wait_clean_exit(mut child: std::process::Child) {
    let started = std::time::Instant::now();
    loop {
        if let Some(c) = child.try_wait().unwrap() {
            assert!(c.success(), "{c:?}");
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the gateway did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Stops a gateway with SIGTERM and waits for it to exit cleanly.
fn stop(child: std::process::Child) {
    terminate(&child);
    wait_clean_exit(child);
}

#[test]
fn the_gateway_writes_an_access_line_per_request_without_secrets_or_prompts() {
    let d = Dir::new("access");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let key = ok(&["keys", "create", "--account", "acct_log", "--db", db])
        .trim()
        .to_string();
    let (mut mock, up) = start_mock(&[]);
    let cfg = gateway_config(
        &d,
        "gw.toml",
        &up,
        &["openai"],
        &format!("keys_db = \"{db}\""),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    let prompt = "zebra-quartz-prompt-text";
    let body = format!(
        r#"{{"model":"atlas-3","max_tokens":5,"messages":[{{"role":"user","content":"{prompt}"}}]}}"#
    );
    let (st, head, _) = http_full(
        "POST",
        &url,
        "/v1/chat/completions",
        &body,
        &format!("Authorization: Bearer {key}\r\n"),
    );
    assert_eq!(st, 200);
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("no x-request-id header")
        .trim()
        .to_string();
    let (st, head, _) = http_full("POST", &url, "/v1/chat/completions", &body, "");
    assert_eq!(st, 401);
    assert!(head.contains("x-request-id: req_"), "{head}");
    terminate(&child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success());
    mock.kill().unwrap();
    let _ = mock.wait();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|v| v["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no access line for {id}: {err}"));
    assert_eq!(access["status"], 200);
    assert_eq!(access["account"], "acct_log");
    assert_eq!(access["path"], "/v1/chat/completions");
    assert_eq!(access["client"], "127.0.0.1");
    assert!(access["key_id"].as_str().is_some_and(|k| key.contains(k)));
    assert!(lines.iter().any(|v| v["status"] == 401));
    assert!(
        lines
            .iter()
            .any(|v| v["message"] == "gateway stopped: every request in flight finished")
    );
    // Never the key's secret, never the prompt.
    let secret = key.rsplit('_').next().unwrap();
    assert!(!err.contains(secret), "{err}");
    assert!(!err.contains(prompt), "{err}");
}

/// Requests answered in full (status 200 and the whole JSON body) while a
/// gateway with an event log in `durability` mode is killed with SIGKILL
/// under load, and the ids found in its log afterwards.
fn kill9_under_load(d: &Dir, up: &str, durability: &str) -> (Vec<String>, Vec<String>) {
    let log = d.path(&format!("events-{durability}.jsonl"));
    let cfg = gateway_config(
        d,
        &format!("gw-{durability}.toml"),
        up,
        &["openai"],
        &format!(
            "[detect]\nenabled = false\n[log]\npath = \"{}\"\ndurability = \"{durability}\"",
            log.display()
        ),
    );
    let (mut gw, url) = start_gateway(&cfg);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (url, stop) = (url.clone(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for n in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("req-{t}-{n}");
                    let body = format!(
                        r#"{{"model":"atlas-3","max_tokens":5,"messages":[{{"role":"user","content":"{id}"}}]}}"#
                    );
                    let host = url.trim_start_matches("http://");
                    let Ok(mut s) = std::net::TcpStream::connect(host) else {
                        break;
                    };
                    let sent = write!(
                        s,
                        "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let mut resp = String::new();
                    if sent.is_err() || s.read_to_string(&mut resp).is_err() {
                        break;
                    }
                    let whole = resp.starts_with("HTTP/1.1 200")
                        && resp
                            .split_once("\r\n\r\n")
                            .is_some_and(|(_, b)| serde_json::from_str::<serde_json::Value>(b).is_ok());
                    if !whole {
                        break;
                    }
                    acked.push(id);
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    gw.kill().unwrap();
    let _ = gw.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let logged: Vec<String> = text
        .lines()
        .filter_map(|l| distillguard_core::parse_event_line(l).ok())
        .map(|e| e.request.last_user_text)
        .collect();
    (acked, logged)
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_request_in_sync_mode() {
    let d = Dir::new("kill9");
    let (mut mock, up) = start_mock(&[]);
    let (acked, logged) = kill9_under_load(&d, &up, "sync");
    let logged: std::collections::HashSet<&String> = logged.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !logged.contains(id)).collect();
    assert!(
        acked.len() > 50,
        "too little load to judge: {}",
        acked.len()
    );
    eprintln!("sync mode: 0 of {} answered requests lost", acked.len());
    assert!(
        lost.is_empty(),
        "{} of {} answered requests are not in the log: {lost:?}",
        lost.len(),
        acked.len()
    );
    // The interval mode, for the record (its loss is bounded by the
    // writer's interval, not zero).
    let (acked, logged) = kill9_under_load(&d, &up, "interval");
    let logged: std::collections::HashSet<&String> = logged.iter().collect();
    let lost = acked.iter().filter(|id| !logged.contains(id)).count();
    eprintln!(
        "interval mode: {lost} of {} answered requests lost",
        acked.len()
    );
    mock.kill().unwrap();
    let _ = mock.wait();
}

#[test]
fn a_blocked_account_stays_blocked_across_a_gateway_restart() {
    let d = Dir::new("restart");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let key = ok(&[
        "keys",
        "create",
        "--account",
        "acct_r",
        "--tier",
        "tier2",
        "--db",
        db,
    ])
    .trim()
    .to_string();
    let token = dg(&["keys", "admin-token"]);
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let (mut mock, up) = start_mock(&[]);
    let config = |name: &str, extra: &str| {
        let head = format!(
            "keys_db = \"{db}\"\n[admin]\ntoken_sha256 = \"{}\"\n{extra}",
            distillguard_storage::sha256_hex(&token)
        );
        gateway_config(&d, name, &up, &["openai"], &head)
    };
    let auth = format!("Authorization: Bearer {key}\r\n");
    let chat = r#"{"model":"atlas-3","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    // First life: the detector blocks at once.
    let (gw, url) = start_gateway(&config(
        "blocking.toml",
        "[detect]\nthresholds = { monitor = 0.0, throttle = 0.0, block = 0.0, min_requests = 1 }",
    ));
    let mut blocked = false;
    for _ in 0..100 {
        if http("POST", &url, "/v1/chat/completions", chat, &auth).0 == 403 {
            blocked = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(blocked);
    stop(gw);
    // Second life, with the embedded thresholds, which would not block one
    // request: the saved verdict still does.
    let (gw, url) = start_gateway(&config("normal.toml", ""));
    let (st, body) = http("POST", &url, "/v1/chat/completions", chat, &auth);
    assert_eq!(st, 403, "{body}");
    // An operator's allowlisting lifts it.
    let admin = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(
        http("PUT", &url, "/admin/allowlist/acct_r", "", &admin).0,
        200
    );
    assert_eq!(
        http("POST", &url, "/v1/chat/completions", chat, &auth).0,
        200
    );
    stop(gw);
    let _ = mock.kill();
    let _ = mock.wait();
}

#[test]
fn the_gateway_caps_open_connections() {
    use std::io::{Read, Write};
    let d = Dir::new("conncap");
    let (mut mock, up) = start_mock(&[]);
    let cfg = gateway_config(&d, "gateway.toml", &up, &["openai"], "max_connections = 2");
    let (gw, url) = start_gateway(&cfg);
    let addr = url.trim_start_matches("http://").to_string();
    // Two idle clients take both places.
    let idle1 = std::net::TcpStream::connect(&addr).unwrap();
    let _idle2 = std::net::TcpStream::connect(&addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // A third is connected by the kernel but not served…
    let mut third = std::net::TcpStream::connect(&addr).unwrap();
    third
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    write!(
        third,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 256];
    assert!(third.read(&mut buf).is_err(), "served beyond the cap");
    // …until a place frees up.
    drop(idle1);
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut resp = String::new();
    third.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (_, metrics) = http("GET", &url, "/metrics", "", "");
    assert!(
        metrics.contains("distillguard_connections_max 2"),
        "{metrics}"
    );
    stop(gw);
    let _ = mock.kill();
    let _ = mock.wait();
}

#[test]
fn metrics_and_admin_can_live_on_an_internal_address_only() {
    let d = Dir::new("internal");
    let (mut mock, up) = start_mock(&[]);
    let token = "dgadmin_internal";
    let head = format!(
        "internal_listen = \"127.0.0.1:0\"\n[admin]\ntoken_sha256 = \"{}\"",
        distillguard_storage::sha256_hex(token)
    );
    let cfg = gateway_config(&d, "gateway.toml", &up, &["openai"], &head);
    let (gw, urls) = start_gateway_urls(&cfg, 2);
    let (public, internal) = (&urls[0], &urls[1]);
    let chat = r#"{"model":"atlas-3","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(http_post(public, "/v1/chat/completions", chat).0, 200);
    // Not on the public address…
    assert_eq!(http("GET", public, "/metrics", "", "").0, 404);
    let auth = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(http("GET", public, "/admin/overrides", "", &auth).0, 404);
    // …but on the internal one, which serves no API.
    let (st, metrics) = http("GET", internal, "/metrics", "", "");
    assert_eq!(st, 200);
    assert!(
        metrics.contains("distillguard_requests_total{api=\"openai\",code=\"200\"} 1"),
        "{metrics}"
    );
    assert_eq!(http("GET", internal, "/admin/overrides", "", &auth).0, 200);
    assert_eq!(http_post(internal, "/v1/chat/completions", chat).0, 404);
    assert_eq!(http("GET", internal, "/healthz", "", "").0, 200);
    // One SIGTERM stops both.
    stop(gw);
    let _ = mock.kill();
    let _ = mock.wait();
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

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private server process (NATS or Redis) of one test, killed with it.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (at most 10 s) until something listens on `port`.
fn listening(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// A NATS server with JetStream keeping its streams in `dir` (so that a
/// restart keeps them).
fn nats_server(port: u16, dir: &Path) -> Server {
    let which = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nats-server");
    let child = Command::new(which)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server (.ci/run installs it)");
    listening(port);
    Server(child)
}

fn redis_server(port: u16) -> Server {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (.ci/run installs it)");
    listening(port);
    Server(child)
}

/// A gauge or counter of a gateway's `/metrics`.
fn metric_of(url: &str, name: &str) -> f64 {
    let (_, page) = http("GET", url, "/metrics", "", "");
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `f` every 100 ms for up to `secs`; true once it holds.
fn within(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    f()
}

/// Starts `distillguard detect` with `config`; returns the child.
fn start_worker(config: &Path, log: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args([
            "detect",
            "--config",
            config.to_str().unwrap(),
            "--name",
            "w1",
        ])
        .args(["--idle-flush-ms", "300", "--checkpoint-ms", "200"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Events folded, per the checkpoints in the store.
fn checkpointed(pg: &str, stream: &str) -> u64 {
    distillguard_storage::open(pg)
        .unwrap()
        .checkpoints(stream)
        .unwrap()
        .iter()
        .map(|c| c.events)
        .sum()
}

#[test]
fn a_cluster_shares_limits_and_verdicts_and_loses_no_event_to_a_kill_or_an_outage() {
    let d = Dir::new("cluster");
    let schema = distillguard_storage::testing::Schema::new()
        .expect("PostgreSQL at DATABASE_URL (.ci/run starts it)");
    let pg = schema.url();
    let (nats_port, redis_port) = (free_port(), free_port());
    let nats_dir = d.path("nats");
    let mut nats = Some(nats_server(nats_port, &nats_dir));
    let mut redis = Some(redis_server(redis_port));
    let key = |account: &str, tier: &str| create_key(&pg, account, tier);
    let hydra: Vec<String> = (0..4).map(|i| key(&format!("hydra_{i}"), "bulk")).collect();
    let honest = key("honest", "bulk");
    let limited = key("limited", "ten");
    let later: Vec<String> = (0..6).map(|i| key(&format!("later_{i}"), "bulk")).collect();
    let token = String::from_utf8(dg(&["keys", "admin-token"]).stdout).unwrap();
    let token = token.trim();
    let (mock, up) = start_mock(&[]);
    let _mock = Server(mock);
    // One cluster config; each gateway its own spill file and event log.
    let detection = "[detect.thresholds]\nmonitor = 0.0\nthrottle = 0.0\nblock = 1.0\nmin_requests = 1\n[link]\nlink_risk = 0.0\n";
    let config = |name: &str| {
        let head = format!(
            "keys_db = \"{pg}\"\ntrusted_proxies = [\"127.0.0.1\"]\n[admin]\ntoken_sha256 = \"{}\"\n\
             [log]\npath = \"{}\"\n\
             [limits.tiers.bulk]\nrpm = 100000\ntpm = 100000000\n[limits.tiers.ten]\nrpm = 10\ntpm = 100000000\n\
             [detect]\nenabled = false\n{detection}\
             [cluster]\nredis_url = \"redis://127.0.0.1:{redis_port}\"\nredis_timeout_ms = 200\n\
             [cluster.nats]\nurl = \"nats://127.0.0.1:{nats_port}\"\npartitions = 4\nspill = \"{}\"\nack_timeout_ms = 500\n",
            distillguard_storage::sha256_hex(token),
            d.path(&format!("{name}.jsonl")).display(),
            d.path(&format!("{name}-spill.jsonl")).display(),
        );
        gateway_config(&d, &format!("{name}.toml"), &up, &["openai"], &head)
    };
    let (cfg_a, cfg_b) = (config("a"), config("b"));
    let (gw_a, urls_a) = start_gateway_urls(&cfg_a, 1);
    let (gw_b, urls_b) = start_gateway_urls(&cfg_b, 1);
    // Killed if the test fails half-way.
    let (gw_a, gw_b) = (Server(gw_a), Server(gw_b));
    let gws = [urls_a[0].clone(), urls_b[0].clone()];
    let worker_log = d.path("worker.log");
    let worker = Server(start_worker(&cfg_a, &worker_log));
    let chat = |i: usize| {
        format!(
            r#"{{"model":"atlas-3","max_tokens":20,"messages":[{{"role":"system","content":"You are a careful solver. Always show every step."}},{{"role":"user","content":"Solve step by step: what is {i} times {}? Explain your reasoning."}}]}}"#,
            i + 7
        )
    };
    let send = |gw: &str, key: &str, ip: &str, i: usize| {
        let h = format!(
            "Authorization: Bearer {key}\r\nX-Forwarded-For: {ip}\r\nUser-Agent: python-httpx/0.27\r\n"
        );
        http("POST", gw, "/v1/chat/completions", &chat(i), &h).0
    };

    // 1. A per-key limit of 10 a minute holds across both gateways (one
    // more if the test outlasts the 6 s the rate frees a request in).
    let statuses: Vec<u16> = (0..30)
        .map(|i| send(&gws[i % 2], &limited, "203.0.113.9", i))
        .collect();
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!((10..=11).contains(&served), "{statuses:?}");

    // 2. A hydra of four accounts, its traffic split over both gateways,
    // is linked by the worker and blocked on both.
    for round in 0..12 {
        for (a, k) in hydra.iter().enumerate() {
            let ip = ["198.51.100.7", "198.51.100.8"][(round + a) % 2];
            let st = send(&gws[(round + a) % 2], k, ip, round * 4 + a);
            assert!(st == 200 || st == 403, "{st}");
        }
    }
    assert_eq!(send(&gws[0], &honest, "203.0.113.50", 1), 200);
    let admin = format!("Authorization: Bearer {token}\r\n");
    let verdict_on = |gw: &str, account: &str| -> serde_json::Value {
        let (_, body) = http("GET", gw, &format!("/admin/accounts/{account}"), "", &admin);
        serde_json::from_str(&body).unwrap()
    };
    let blocked = within(30, || {
        gws.iter()
            .all(|g| (0..4).all(|i| verdict_on(g, &format!("hydra_{i}"))["verdict"] == "block"))
    });
    assert!(
        blocked,
        "not blocked on both: {}",
        std::fs::read_to_string(&worker_log).unwrap_or_default()
    );
    for (i, k) in hydra.iter().enumerate() {
        for g in &gws {
            assert_eq!(send(g, k, "198.51.100.7", 100 + i), 403);
        }
    }
    for g in &gws {
        assert!(metric_of(g, "distillguard_board_changes_total") > 0.0);
    }

    // 3. kill -9 of the worker while events arrive; a new one rebuilds.
    let mut sent_later = 0;
    for (i, k) in later.iter().enumerate().take(3) {
        for r in 0..10 {
            assert_eq!(send(&gws[r % 2], k, &format!("192.0.2.{i}"), 200 + r), 200);
            sent_later += 1;
        }
    }
    // Some progress is checkpointed (and acknowledged) before the kill.
    assert!(within(10, || checkpointed(&pg, "DISTILLGUARD_EVENTS") > 0));
    Command::new("kill")
        .args(["-9", &worker.0.id().to_string()])
        .status()
        .unwrap();
    drop(worker);
    for (i, k) in later.iter().enumerate().skip(3) {
        for r in 0..10 {
            assert_eq!(send(&gws[r % 2], k, &format!("192.0.2.{i}"), 300 + r), 200);
            sent_later += 1;
        }
    }
    assert_eq!(sent_later, 60);
    let mut worker = Server(start_worker(&cfg_a, &worker_log));

    // 4. Redis away: served on local limits, and counted.
    drop(redis.take());
    assert_eq!(send(&gws[0], &honest, "203.0.113.50", 2), 200);
    assert!(metric_of(&gws[0], "distillguard_limits_shared_errors_total") >= 1.0);
    // NATS away: served all the same; the events spill, counted.
    let published = |gws: &[String]| -> f64 {
        gws.iter()
            .map(|g| metric_of(g, "distillguard_bus_published_total"))
            .sum()
    };
    let lines = || -> f64 {
        ["a", "b"]
            .iter()
            .map(|n| {
                std::fs::read_to_string(d.path(&format!("{n}.jsonl")))
                    .map_or(0, |t| t.lines().count())
            })
            .sum::<usize>() as f64
    };
    assert!(
        within(20, || published(&gws) == lines() && lines() > 60.0),
        "{} published, {} logged",
        published(&gws),
        lines()
    );
    // Stopped, not killed: a single JetStream node acknowledges a message
    // up to 8 ms before it writes it, so `kill -9` can lose the last ones
    // (docs/scale.md: replicas).
    if let Some(mut n) = nats.take() {
        terminate(&n.0);
        let _ = n.0.wait();
    }
    for r in 0..4 {
        assert_eq!(send(&gws[r % 2], &honest, "203.0.113.50", 400 + r), 200);
    }
    let spilled = |gws: &[String]| -> f64 {
        gws.iter()
            .map(|g| metric_of(g, "distillguard_bus_spilled_total"))
            .sum()
    };
    assert!(within(10, || spilled(&gws) >= 4.0), "{}", spilled(&gws));
    // NATS back (its streams kept on disk); the spill files replayed.
    nats = Some(nats_server(nats_port, &nats_dir));
    for name in ["a", "b"] {
        let spill = d.path(&format!("{name}-spill.jsonl"));
        if spill.exists() {
            let out = ok(&[
                "bus",
                "replay",
                spill.to_str().unwrap(),
                "--nats",
                &format!("nats://127.0.0.1:{nats_port}"),
                "--partitions",
                "4",
            ]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["removed"], true, "{out}");
        }
    }
    assert!(nats.is_some());

    // Every event the gateways logged is folded exactly once.
    let logged: Vec<distillguard_core::Event> = ["a", "b"]
        .iter()
        .flat_map(|n| read_events(&d.path(&format!("{n}.jsonl"))))
        .collect();
    let ids: BTreeSet<String> = logged.iter().filter_map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), logged.len(), "ids are unique");
    let stream = "DISTILLGUARD_EVENTS";
    let all_folded = within(60, || checkpointed(&pg, stream) == ids.len() as u64);
    assert!(
        all_folded,
        "{} folded of {}: {}",
        checkpointed(&pg, stream),
        ids.len(),
        std::fs::read_to_string(&worker_log).unwrap_or_default()
    );
    terminate(&worker.0);
    let mut out = String::new();
    worker
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(worker.0.wait().unwrap().success());
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        summary["covered_at_start"].as_u64().unwrap() > 0,
        "{summary}\n{}",
        std::fs::read_to_string(&worker_log).unwrap_or_default()
    );

    // The verdicts on the board are those of one `analyze` over the same
    // events.
    let analyze_cfg = d.path("analyze.toml");
    write(
        &analyze_cfg,
        &detection.replace("[detect.thresholds]", "[thresholds]"),
    );
    let logs: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| d.path(&format!("{n}.jsonl")).display().to_string())
        .collect();
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        &logs[0],
        &logs[1],
        "--config",
        analyze_cfg.to_str().unwrap(),
        "--format",
        "json",
        "-q",
    ]))
    .unwrap();
    let accounts = report["accounts"].as_array().unwrap();
    assert!(accounts.len() >= 12, "{}", accounts.len());
    for a in accounts {
        let id = a["account_id"].as_str().unwrap();
        for g in &gws {
            let v = verdict_on(g, id);
            assert_eq!(v["verdict"], a["verdict"], "{id} on {g}: {v} vs {a}");
        }
    }
    drop((gw_a, gw_b));
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

/// nginx (Debian's, with `auth_request`) in front of `upstream-mock`,
/// asking distillguard's forward-auth endpoint before each request, as
/// `examples/nginx/distillguard.conf` shows; the client is the official
/// OpenAI SDK. An allowed account is answered by the model; an account an
/// operator blocked gets 403 (PermissionDeniedError); a throttled one gets
/// 429 with Retry-After (RateLimitError) past its rate.
#[test]
fn nginx_enforces_distillguard_verdicts_with_auth_request() {
    let bin = py_venv();
    let d = Dir::new("nginx");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let allowed = create_key(db, "acct_ok", "tier4");
    let blocked = create_key(db, "acct_bad", "tier4");
    let throttled = create_key(db, "acct_slow", "tier4");
    let tokens: Vec<String> = (0..2)
        .map(|_| {
            let out = String::from_utf8(dg(&["keys", "admin-token"]).stdout).unwrap();
            out.trim().to_string()
        })
        .collect();
    let (admin, integration) = (&tokens[0], &tokens[1]);
    let (mock, up) = start_mock(&[]);
    let _mock = Server(mock);
    let head = format!(
        "keys_db = \"{db}\"\ninternal_listen = \"127.0.0.1:0\"\n\
         [admin]\ntoken_sha256 = \"{}\"\n\
         [integrations]\ntoken_sha256 = \"{}\"\nthrottle_rpm = 2\n",
        distillguard_storage::sha256_hex(admin),
        distillguard_storage::sha256_hex(integration),
    );
    let cfg = gateway_config(&d, "gw.toml", &up, &["openai"], &head);
    let (gw, urls) = start_gateway_urls(&cfg, 2);
    let _gw = Server(gw);
    let internal = &urls[1];
    let auth = format!("Authorization: Bearer {admin}\r\n");
    for (account, verdict) in [("acct_bad", "block"), ("acct_slow", "throttle")] {
        let (st, body) = http(
            "PUT",
            internal,
            &format!("/admin/accounts/{account}/override"),
            &format!(r#"{{"verdict":"{verdict}","reason":"test"}}"#),
            &auth,
        );
        assert_eq!(st, 200, "{body}");
    }
    // nginx from the shipped recipe, its placeholders filled.
    let port = free_port();
    let recipe = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nginx/distillguard.conf"),
    )
    .unwrap();
    let dir = d.path("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = recipe
        .replace("{listen}", &format!("127.0.0.1:{port}"))
        .replace("{upstream}", &format!("{up}/v1/"))
        .replace("{verdicts}", internal)
        .replace("{token}", integration)
        .replace("{dir}", dir.to_str().unwrap());
    let conf_path = dir.join("nginx.conf");
    write(&conf_path, &conf);
    let which = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nginx");
    let nginx = Command::new(which)
        .args(["-e", dir.join("error.log").to_str().unwrap()])
        .args([
            "-p",
            dir.to_str().unwrap(),
            "-c",
            conf_path.to_str().unwrap(),
        ])
        // One process (no workers), so that killing it leaves nothing
        // behind holding the test's output.
        .args(["-g", "daemon off; master_process off;"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx (.ci/run installs nginx-light)");
    let _nginx = Server(nginx);
    listening(port);
    let out = Command::new(bin.join("python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/nginx.py"))
        .env("NGINX", format!("http://127.0.0.1:{port}"))
        .env("ALLOWED", &allowed)
        .env("BLOCKED", &blocked)
        .env("THROTTLED", &throttled)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}\n{}\nnginx: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    let (_, metrics) = http("GET", internal, "/metrics", "", "");
    assert!(
        metrics.contains("distillguard_forward_auth_total{outcome=\"deny\"} 1"),
        "{metrics}"
    );
}

/// The LiteLLM plugin (`integrations/litellm/distillguard_callback.py`)
/// with the real LiteLLM library (PyPI, pinned): its logging callback sends
/// every `litellm.completion` call to `POST /v1/events?format=litellm`, the
/// gateway's detector finds the planted harvest (6 accounts on one
/// step-by-step system prompt), and the plugin's pre-call hook, given
/// LiteLLM's own `UserAPIKeyAuth`, rejects those accounts with 403 and lets
/// the honest one through. (The LiteLLM proxy server itself is not run:
/// its `[proxy]` extra needs packages this machine's mirror lacks.)
#[test]
fn the_litellm_plugin_feeds_the_detector_and_rejects_flagged_accounts() {
    let venv = litellm_venv();
    let d = Dir::new("litellm-plugin");
    let token = String::from_utf8(dg(&["keys", "admin-token"]).stdout).unwrap();
    let token = token.trim();
    let (mock, up) = start_mock(&[]);
    let _mock = Server(mock);
    let head = format!(
        "internal_listen = \"127.0.0.1:0\"\n[integrations]\ntoken_sha256 = \"{}\"\n",
        distillguard_storage::sha256_hex(token)
    );
    let cfg = gateway_config(&d, "gw.toml", &up, &["openai"], &head);
    let (gw, urls) = start_gateway_urls(&cfg, 2);
    let _gw = Server(gw);
    let out = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/litellm_plugin.py"))
        .env("MOCK", format!("{up}/v1"))
        .env("DISTILLGUARD_URL", &urls[1])
        .env("DISTILLGUARD_TOKEN", token)
        .env(
            "PLUGIN_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integrations/litellm"),
        )
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim().ends_with("ok"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// LiteLLM (and FastAPI, which its proxy hooks raise errors with) in a
/// venv of their own; `.ci/run` fills it.
fn litellm_venv() -> PathBuf {
    venv_with("litellm-plugin-venv", "litellm, fastapi", &LITELLM_PACKAGES)
}

/// A venv `name` under the target directory that can `import` the
/// modules named, made and filled with `packages` on first use (tests run
/// on threads: one fills it, the others wait). Returns the venv's folder.
fn venv_with(name: &str, import: &str, packages: &[&str]) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let ready = Command::new(venv.join("bin/python"))
        .args(["-c", &format!("import {import}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        if !venv.join("bin/pip").exists() {
            let st = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let st = Command::new(venv.join("bin/pip"))
            .args(["install", "-q"])
            .args(packages)
            .status()
            .unwrap();
        assert!(st.success(), "pip install {packages:?} failed");
    }
    venv
}

/// Pinned, as `.ci/run` installs them.
const LITELLM_PACKAGES: [&str; 2] = ["litellm==1.110.2", "fastapi==0.165.0"];

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

/// The traffic planted in other gateways' logs, round by round: 8 accounts
/// harvesting on one step-by-step system prompt (`harvest-0`…`7`), and
/// honest users now and then. Each item: (account, system prompt, question).
type Call = (String, Option<&'static str>, String);

fn planted_rounds() -> Vec<Vec<Call>> {
    let system =
        "You are a meticulous tutor. Always reason step by step and show every intermediate step.";
    let honest = [
        "What's a good name for a bakery?",
        "How do I center a div in CSS?",
        "Write a haiku about autumn rain.",
        "Translate good morning into Spanish.",
    ];
    (0..30)
        .map(|round| {
            let mut calls: Vec<Call> = (0..8)
                .map(|a| {
                    let q = format!(
                        "Problem {round}: a train covers {} km in {} minutes. Average speed in km/h? Explain step by step.",
                        37 * round + a,
                        13 + a
                    );
                    (format!("harvest-{a}"), Some(system), q)
                })
                .collect();
            for u in 0..10 {
                if (round + u) % 7 == 0 {
                    calls.push((format!("user-{u}"), None, honest[(round + u) % 4].to_string()));
                }
            }
            calls
        })
        .collect()
}

/// Asserts that a JSON report flags exactly the planted `harvest-0`…`7`.
fn assert_flags_the_planted_harvest(v: &serde_json::Value) {
    let flagged: BTreeSet<&str> = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["verdict"] != "allow")
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    let planted: BTreeSet<String> = (0..8).map(|i| format!("harvest-{i}")).collect();
    assert_eq!(
        flagged,
        planted.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
}

/// The simulated organisation (seed 12, 45 days, scale 0.3) analysed by
/// `exfil analyze` into `d`; returns the report's path.
fn exfil_report(d: &Dir) -> PathBuf {
    let s = d.0.to_str().unwrap();
    ok(&[
        "exfil", "simulate", "--seed", "12", "--days", "45", "--scale", "0.3", "--out", s,
    ]);
    let report = d.path("exfil-report.json");
    ok(&[
        "exfil",
        "analyze",
        &format!("{s}/cloudtrail.jsonl.gz"),
        "--assets",
        &format!("{s}/assets.toml"),
        "--format",
        "json",
        "--out",
        report.to_str().unwrap(),
    ]);
    report
}

/// Flagged principals export as STIX 2.1 sightings that the OASIS
/// validator accepts, byte for byte the same twice, without the
/// organisation's own principals or bucket names.
#[test]
fn an_exfiltration_report_exports_as_valid_stix_sightings() {
    let d = Dir::new("exfil-stix");
    let report = exfil_report(&d);
    let a = ok(&[
        "export",
        "stix",
        report.to_str().unwrap(),
        "--producer",
        "Example AI",
    ]);
    let b = ok(&[
        "export",
        "stix",
        report.to_str().unwrap(),
        "--producer",
        "Example AI",
    ]);
    assert_eq!(a, b);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    let objects = v["objects"].as_array().unwrap();
    let sightings = objects.iter().filter(|o| o["type"] == "sighting").count();
    let indicators = objects.iter().filter(|o| o["type"] == "indicator").count();
    assert!(sightings >= 1 && sightings == indicators, "{a}");
    assert!(
        !a.contains("arn:aws") && !a.contains("acme-checkpoints"),
        "{a}"
    );
    let path = d.path("bundle.json");
    std::fs::write(&path, &a).unwrap();
    // Installed on first use (and by .ci/run beforehand).
    let out = Command::new(stix2_validator()).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("STIX JSON: Valid"),
        "{text}"
    );
}

/// Playwright's Python package, for the console's browser tests (it drives
/// Debian's chromium; no browser is downloaded). CI fills the venv first.
const PLAYWRIGHT: &str = "playwright==1.65.2";

/// A venv with [`PLAYWRIGHT`]; returns its `bin` folder.
fn console_venv() -> PathBuf {
    venv_with("console-venv", "playwright.sync_api", &[PLAYWRIGHT]).join("bin")
}

/// Where the browser tests leave their screenshots (docs/console.md shows
/// copies: `DG_UPDATE_SCREENSHOTS=1` writes them into docs/console).
fn screenshot_dir() -> PathBuf {
    let p = if std::env::var_os("DG_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-shots")
    };
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Runs the browser script; panics with its output unless it says "ok".
fn run_browser(envs: &[(&str, String)]) {
    let bin = console_venv();
    let out = Command::new(bin.join("python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.py"))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SHOTS", screenshot_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `distillguard console` on a report (`extra`: more arguments);
/// returns it and its URL.
fn start_console(report: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let mut args = vec![
        "console",
        report.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    spawn_with_url(&args)
}

fn get_json(url: &str, path: &str) -> serde_json::Value {
    let (status, body) = http("GET", url.trim_end_matches('/'), path, "", "");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// `small` seed 31 simulated into `d` and analysed with `--timeline`;
/// returns the simulation's folder and the report's path.
fn small_report_with_timelines(d: &Dir) -> (PathBuf, PathBuf) {
    let out = simulate_small(d, "s", 31);
    let report = d.path("report.json");
    ok(&[
        "analyze",
        out.join("events.jsonl.gz").to_str().unwrap(),
        "--accounts",
        out.join("accounts.jsonl").to_str().unwrap(),
        "--models",
        out.join("models.jsonl").to_str().unwrap(),
        "--timeline",
        "--format",
        "json",
        "--quiet",
        "--out",
        report.to_str().unwrap(),
    ]);
    (out, report)
}

#[test]
fn the_console_serves_a_report_with_paged_filtered_lists_and_named_errors() {
    let d = Dir::new("console-api");
    let (_, report) = small_report_with_timelines(&d);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let (mut c, url) = start_console(&report, &[]);
    let u = url.trim_end_matches('/');
    // The page and its assets, from the binary, with a strict policy.
    let (status, head, page) = http_full("GET", u, "/", "", "");
    assert_eq!(status, 200);
    assert!(
        page.contains("app.js") && !page.contains("http"),
        "no CDN: {page}"
    );
    assert!(head.contains("default-src 'self'"), "{head}");
    for asset in ["/app.js", "/app.css"] {
        assert_eq!(http("GET", u, asset, "", "").0, 200, "{asset}");
    }
    // The overview counts what the report holds.
    let o = get_json(u, "/api/overview");
    let blocked = r["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["verdict"] == "block")
        .count() as u64;
    assert_eq!(o["verdicts"]["block"], blocked);
    assert_eq!(
        o["campaign_count"],
        r["campaigns"].as_array().unwrap().len()
    );
    assert_eq!(o["histogram"]["counts"].as_array().unwrap().len(), 50);
    let hist: u64 = o["histogram"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(
        hist,
        r["stats"]["accounts"].as_u64().unwrap(),
        "every account"
    );
    assert!(o["thresholds"]["throttle"].as_f64().unwrap() > 0.5);
    // Lists page on the server, sort and filter.
    let page1 = get_json(u, "/api/accounts?limit=7&sort=risk");
    assert_eq!(page1["items"].as_array().unwrap().len(), 7);
    assert_eq!(page1["total"], r["accounts"].as_array().unwrap().len());
    let risks: Vec<f64> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["risk"].as_f64().unwrap())
        .collect();
    assert!(risks.windows(2).all(|w| w[0] >= w[1]), "{risks:?}");
    let page2 = get_json(u, "/api/accounts?limit=7&offset=7&sort=risk");
    assert_ne!(page1["items"][0], page2["items"][0]);
    let camp = r["campaigns"][0]["campaign_id"].as_str().unwrap();
    let members = get_json(u, &format!("/api/accounts?campaign={camp}&limit=500"));
    let in_report = r["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["campaign_id"] == camp)
        .count();
    assert_eq!(members["total"], in_report);
    // An indicator finds the accounts that carry it.
    let ind = r["campaigns"][0]["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| !i["members"].as_array().unwrap().is_empty())
        .unwrap();
    let value = ind["value"].as_str().unwrap();
    let found = get_json(
        u,
        &format!(
            "/api/accounts?limit=500&q={}",
            value.replace('/', "%2F").replace(' ', "%20")
        ),
    );
    let ids: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    let accounts = r["campaigns"][0]["accounts"].as_array().unwrap();
    for m in ind["members"].as_array().unwrap() {
        let id = accounts[m.as_u64().unwrap() as usize].as_str().unwrap();
        assert!(ids.contains(&id), "{id} carries {value}");
    }
    // The campaign page: a graph whose links point at real nodes.
    let cp = get_json(u, &format!("/api/campaigns/{camp}"));
    let nodes: BTreeSet<&str> = cp["graph"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let edges = cp["graph"]["edges"].as_array().unwrap();
    assert!(!edges.is_empty());
    for e in edges {
        assert!(nodes.contains(e[0].as_str().unwrap()) && nodes.contains(e[1].as_str().unwrap()));
    }
    assert!(cp["activity"]["members_with_timeline"].as_u64().unwrap() > 0);
    // An account's page has its timeline: escalations in time order, the
    // last one the verdict in force.
    let aid = r["accounts"][0]["account_id"].as_str().unwrap();
    let ap = get_json(u, &format!("/api/accounts/{aid}"));
    let esc = ap["account"]["timeline"]["escalations"].as_array().unwrap();
    assert!(!esc.is_empty());
    assert_eq!(esc.last().unwrap()["verdict"], ap["account"]["verdict"]);
    // STIX of one campaign.
    let (status, head, stix) = http_full("GET", u, &format!("/api/campaigns/{camp}/stix"), "", "");
    assert_eq!(status, 200);
    assert!(
        head.to_lowercase()
            .contains("content-disposition: attachment")
    );
    assert!(
        stix.contains("\"type\":\"campaign\""),
        "{}",
        &stix[..stix.len().min(300)]
    );
    // Bad input is named; unknown ids are 404; an offline console refuses actions.
    let (status, body) = http("GET", u, "/api/accounts?verdict=bogus", "", "");
    assert_eq!(status, 400);
    assert!(body.contains("verdict"), "{body}");
    let (status, body) = http("GET", u, "/api/accounts?limit=ten", "", "");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http("GET", u, "/api/campaigns?sort=colour", "", "");
    assert_eq!(status, 400);
    assert!(body.contains("sort"), "{body}");
    assert_eq!(http("GET", u, "/api/accounts/nobody", "", "").0, 404);
    let (status, body) = http_post(
        u,
        "/api/actions",
        r#"{"target":"account","id":"x","decision":"block","reason":"r"}"#,
    );
    assert_eq!(status, 403, "{body}");
    let _ = c.kill();
    let _ = c.wait();
}

/// Issue 17: an exfiltration report is shown beside the campaigns: its
/// principals listed, filtered and sorted, each with its alerts.
#[test]
fn the_console_shows_exfiltration_alerts_beside_the_campaigns() {
    let d = Dir::new("console-exfil");
    let (_, report) = small_report_with_timelines(&d);
    let x = exfil_report(&d);
    let xr: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&x).unwrap()).unwrap();
    let principals = xr["principals"].as_array().unwrap();
    let flagged: Vec<&serde_json::Value> = principals
        .iter()
        .filter(|p| !p["flagged_at"].is_null())
        .collect();
    assert!(!flagged.is_empty());
    // Without --exfil there is no such page.
    let (mut plain, purl) = start_console(&report, &[]);
    let (status, body) = http("GET", purl.trim_end_matches('/'), "/api/exfil", "", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("--exfil"), "{body}");
    assert_eq!(get_json(&purl, "/api/session")["exfil"], false);
    let _ = plain.kill();
    let _ = plain.wait();

    let (mut c, url) = start_console(&report, &["--exfil", x.to_str().unwrap()]);
    let u = url.trim_end_matches('/');
    assert_eq!(get_json(u, "/api/session")["exfil"], true);
    let o = get_json(u, "/api/overview");
    assert_eq!(o["exfil"]["flagged"], flagged.len());
    assert_eq!(o["exfil"]["with_alerts"], principals.len());
    assert_eq!(o["exfil"]["principal_days"], xr["stats"]["principal_days"]);
    // The campaigns are still there beside it.
    assert!(o["campaign_count"].as_u64().unwrap() > 0);
    let list = get_json(u, "/api/exfil?flagged=yes&limit=500");
    assert_eq!(list["total"], flagged.len());
    let listed: BTreeSet<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["principal"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = flagged
        .iter()
        .map(|p| p["principal"].as_str().unwrap())
        .collect();
    assert_eq!(listed, expected);
    // Sorted by score, highest first; by sensitive bytes ascending on request.
    let scores: Vec<f64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let by_bytes = get_json(u, "/api/exfil?sort=bytes&order=asc&limit=500");
    let bytes: Vec<u64> = by_bytes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sensitive_bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(bytes.len(), principals.len());
    assert!(bytes.windows(2).all(|w| w[0] <= w[1]));
    // A signal filter keeps exactly the principals with such an alert.
    let signal = flagged[0]["alerts"][0]["signal"].as_str().unwrap();
    let with_signal = principals
        .iter()
        .filter(|p| {
            p["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["signal"] == signal)
        })
        .count();
    let f = get_json(u, &format!("/api/exfil?signal={signal}&limit=500"));
    assert_eq!(f["total"], with_signal);
    // One principal's page holds every alert the report kept.
    let first = flagged[0]["principal"].as_str().unwrap();
    let page = get_json(
        u,
        &format!(
            "/api/exfil/{}",
            first.replace('/', "%2F").replace(':', "%3A")
        ),
    );
    assert_eq!(page["alerts"], flagged[0]["alerts"]);
    assert_eq!(page["flagged_at"], flagged[0]["flagged_at"]);
    // Named errors.
    let (status, body) = http("GET", u, "/api/exfil?flagged=maybe", "", "");
    assert_eq!(status, 400);
    assert!(body.contains("flagged"), "{body}");
    let (status, body) = http("GET", u, "/api/exfil?sort=volume", "", "");
    assert_eq!(status, 400);
    assert!(body.contains("score, flagged_at, bytes, id"), "{body}");
    assert_eq!(http("GET", u, "/api/exfil/nobody", "", "").0, 404);
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn the_console_renders_in_chromium_with_charts_graph_and_timeline() {
    let d = Dir::new("console-browser");
    let (out, report) = small_report_with_timelines(&d);
    let log = out.join("events.jsonl.gz");
    let x = exfil_report(&d);
    let (mut c, url) = start_console(
        &report,
        &[
            "--events",
            log.to_str().unwrap(),
            "--exfil",
            x.to_str().unwrap(),
        ],
    );
    let u = url.trim_end_matches('/');
    let xl = get_json(u, "/api/exfil?flagged=yes&limit=500");
    let principal = xl["items"][0]["principal"].as_str().unwrap().to_string();
    let alerts = get_json(
        u,
        &format!(
            "/api/exfil/{}",
            principal.replace('/', "%2F").replace(':', "%3A")
        ),
    )["alerts"]
        .as_array()
        .unwrap()
        .len();
    let camps = get_json(u, "/api/campaigns?limit=1");
    let camp = camps["items"][0]["campaign_id"]
        .as_str()
        .unwrap()
        .to_string();
    let cp = get_json(u, &format!("/api/campaigns/{camp}"));
    let nodes = cp["graph"]["nodes"].as_array().unwrap().len();
    // The log's windows: every member request of the campaign in one.
    let windows = cp["activity"]["windows"].as_array().unwrap();
    let in_windows: u64 = windows
        .iter()
        .map(|w| w["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(in_windows, cp["summary"]["requests"].as_u64().unwrap());
    assert!(windows.iter().all(|w| w["members"].as_u64().unwrap() >= 1));
    let accts = get_json(u, "/api/accounts?limit=1&verdict=block");
    let account = accts["items"][0]["account_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ap = get_json(u, &format!("/api/accounts/{account}"));
    let escalations = ap["account"]["timeline"]["escalations"]
        .as_array()
        .unwrap()
        .len();
    run_browser(&[
        ("MODE", "offline".into()),
        ("URL", url.clone()),
        ("CAMPAIGN", camp),
        ("NODES", nodes.to_string()),
        ("ACCOUNT", account),
        ("ESCALATIONS", escalations.to_string()),
        ("WINDOWS", windows.len().to_string()),
        ("FLAGGED", xl["total"].to_string()),
        ("PRINCIPAL", principal),
        ("ALERTS", alerts.to_string()),
    ]);
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn blocking_in_the_live_console_stops_the_account_and_lifting_it_serves_it_again() {
    let d = Dir::new("console-live");
    let db = d.path("keys.db");
    let db = db.to_str().unwrap();
    let key = create_key(db, "acct_console", "tier2");
    let token = String::from_utf8(dg(&["keys", "admin-token"]).stdout).unwrap();
    let token = token.trim().to_string();
    let (mut mock, up) = start_mock(&[]);
    let cfg = gateway_config(
        &d,
        "gw.toml",
        &up,
        &["openai"],
        &format!(
            "keys_db = \"{db}\"\ninternal_listen = \"127.0.0.1:0\"\n[admin]\ntoken_sha256 = \"{}\"\n",
            distillguard_storage::sha256_hex(&token)
        ),
    );
    let (mut gw, urls) = start_gateway_urls(&cfg, 2);
    let (public, internal) = (urls[0].clone(), urls[1].clone());
    // Without a session, the data is refused; `/ui` leads to `/ui/`.
    let (status, _) = http("GET", &internal, "/ui/api/overview", "", "");
    assert_eq!(status, 401);
    let (status, head, _) = http_full("GET", &internal, "/ui", "", "");
    assert_eq!(status, 308, "{head}");
    assert!(head.contains("/ui/"), "{head}");
    // The console is only on the internal listener.
    assert_eq!(http("GET", &public, "/ui/", "", "").0, 404);
    run_browser(&[
        ("MODE", "live".into()),
        ("URL", format!("{internal}/ui/")),
        ("TOKEN", token.clone()),
        ("ACCOUNT", "acct_console".into()),
        ("GATEWAY", public.clone()),
        ("KEY", key.clone()),
    ]);
    // A decision on one key stops that key, not the account's other keys.
    let other = create_key(db, "acct_console", "tier2");
    let (status, head, body) = http_full(
        "POST",
        &internal,
        "/ui/api/login",
        &format!(r#"{{"token":"{token}"}}"#),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    assert!(head.to_lowercase().contains("httponly"), "{head}");
    let csrf = serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let key_id = key.split('_').nth(1).unwrap();
    let act = |decision: &str, csrf: &str| {
        http(
            "POST",
            &internal,
            "/ui/api/actions",
            &format!(
                r#"{{"target":"key","id":"{key_id}","decision":"{decision}","reason":"one key harvests"}}"#
            ),
            &format!("Cookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\n"),
        )
    };
    assert_eq!(
        act("block", "wrong").0,
        403,
        "a wrong CSRF token is refused"
    );
    let (status, body) = act("block", &csrf);
    assert_eq!(status, 200, "{body}");
    let chat = |k: &str| {
        http(
            "POST",
            &public,
            "/v1/chat/completions",
            r#"{"model":"atlas-3","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
            &format!("Authorization: Bearer {k}\r\n"),
        )
        .0
    };
    assert_eq!(chat(&key), 403);
    assert_eq!(chat(&other), 200);
    assert_eq!(act("clear", &csrf).0, 200);
    assert_eq!(chat(&key), 200);
    for c in [&mut gw, &mut mock] {
        let _ = c.kill();
        let _ = c.wait();
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

/// The official OpenTelemetry Python SDK and its OTLP/HTTP (protobuf)
/// exporter, pinned as `.ci/run` installs them.
const OTEL_PACKAGES: [&str; 2] = [
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
];

/// Spans exported by the real OpenTelemetry SDK reach the detector through
/// the gateway's `/v1/traces`: the account is scored (blocked at zero
/// thresholds) and the receiver counted every GenAI span, the one without
/// a user as malformed.
#[test]
fn the_opentelemetry_sdk_exports_genai_spans_into_the_detector() {
    let venv = venv_with(
        "otel-venv",
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        &OTEL_PACKAGES,
    );
    let d = Dir::new("otel-sdk");
    let token = "dgint_otel-test";
    let (mut mock, up) = start_mock(&[]);
    let cfg = gateway_config(
        &d,
        "gw.toml",
        &up,
        &["openai"],
        &format!(
            "internal_listen = \"127.0.0.1:0\"\n[integrations]\ntoken_sha256 = \"{}\"\n\
             [detect]\nthresholds = {{ monitor = 0.0, throttle = 0.0, block = 0.0, min_requests = 1 }}\n",
            distillguard_storage::sha256_hex(token)
        ),
    );
    let (mut gw, urls) = start_gateway_urls(&cfg, 2);
    let internal = urls[1].clone();
    let out = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/otel_export.py"))
        .env("ENDPOINT", format!("{internal}/v1/traces"))
        .env("TOKEN", token)
        .env("ACCOUNT", "acct_otel")
        .env("N", "12")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok 12",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let auth = format!("Authorization: Bearer {token}\r\n");
    let mut seen = String::new();
    for _ in 0..100 {
        seen = http("GET", &internal, "/v1/verdicts/acct_otel", "", &auth).1;
        if seen.contains("\"block\"") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen.contains("\"verdict\":\"block\""), "{seen}");
    let metrics = http("GET", &internal, "/metrics", "", "").1;
    assert!(
        metrics.contains("distillguard_ingested_total{line=\"accepted\"} 12")
            && metrics.contains("distillguard_ingested_total{line=\"malformed\"} 1"),
        "{metrics}"
    );
    for c in [&mut gw, &mut mock] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Issue 19's cohort experiment, small: answers watermarked with one
/// cohort's key (each cohort of accounts is served under its own derived
/// key) are traced back to that cohort among 64, at a Bonferroni-corrected
/// p ≤ 1e-6; a person's text names no cohort at any level of note.
#[test]
fn a_leak_is_traced_to_its_cohort_out_of_64() {
    let d = Dir::new("cohorts");
    let key = d.path("k.key");
    wm_keygen(&key, 19);
    let prompts = d.path("prompts.txt");
    write(
        &prompts,
        "How do vaccines work?\nWhy is the sky blue?\nExplain how a hash table handles collisions.\nWhat causes inflation?\nHow does TCP differ from UDP?\nWhy do we have seasons?\n",
    );
    let answers = d.path("answers.jsonl");
    wm_generate(&key, Some("cohort-17"), &prompts, 200, &answers);
    let mut files = Vec::new();
    for (i, l) in std::fs::read_to_string(&answers)
        .unwrap()
        .lines()
        .enumerate()
    {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let f = d.path(&format!("leak-{i}.txt"));
        write(&f, v["text"].as_str().unwrap());
        files.push(f);
    }
    let human = d.path("human.txt");
    write(
        &human,
        "Seasons come from the tilt of the Earth's axis, about 23 degrees. As the Earth goes around the Sun, each hemisphere leans towards it for half the year and away for the other half, so the days are longer and the light more direct in summer. Distance to the Sun barely matters: the Earth is closest in January.",
    );
    let cohorts: Vec<String> = (0..64).map(|i| format!("cohort-{i}")).collect();
    let mut args: Vec<&str> = vec![
        "watermark",
        "detect",
        "--key",
        key.to_str().unwrap(),
        "--format",
        "json",
    ];
    for c in &cohorts {
        args.extend(["--cohort", c.as_str()]);
    }
    for f in &files {
        args.push(f.to_str().unwrap());
    }
    args.push(human.to_str().unwrap());
    let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), files.len() + 1);
    for r in &rows[..files.len()] {
        assert_eq!(r["best_cohort"], "cohort-17", "{r}");
        assert!(r["p_value"].as_f64().unwrap() <= 1e-6, "{r}");
        assert_eq!(r["correction"], "bonferroni over 64 keys");
        assert_eq!(r["keys"].as_array().unwrap().len(), 64);
    }
    let h = &rows[files.len()];
    assert!(h["p_value"].as_f64().unwrap() > 1e-3, "{h}");
}

/// `watermark experiment` on a small budget: every part is measured and
/// plotted, the radioactivity controls are counted as documented, and the
/// same run gives the same numbers (threads and all).
#[test]
fn the_watermark_experiment_measures_every_part_and_repeats_itself() {
    let d = Dir::new("wm-experiment");
    let run = |plots: &str| -> serde_json::Value {
        let out = ok(&[
            "watermark",
            "experiment",
            "--corpus",
            "embedded",
            "--keys",
            "1",
            "--answers",
            "4",
            "--radio-seeds",
            "1",
            "--radio-prompts",
            "20",
            "--radio-answer-tokens",
            "30",
            "--radio-base-tokens",
            "20000",
            "--format",
            "json",
            "--plots",
            plots,
        ]);
        let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
        // Timings are the only numbers allowed to differ.
        v.as_object_mut().unwrap().remove("seconds");
        v["false_positives"]
            .as_object_mut()
            .unwrap()
            .remove("seconds");
        v
    };
    let plots = d.path("plots");
    let v = run(plots.to_str().unwrap());
    for f in [
        "fpr",
        "tpr",
        "robustness",
        "edits",
        "radioactivity",
        "radioactivity-controls",
    ] {
        let svg = std::fs::read_to_string(plots.join(format!("{f}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{f}");
    }
    let rows = v["detection_at_fpr_1e-6"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    for r in rows {
        assert_eq!(r["by_length"].as_array().unwrap().len(), 7, "{r}");
        // 2 lengths × 4 edits × 3 rates.
        assert_eq!(r["edits"].as_array().unwrap().len(), 24, "{r}");
        for e in r["edits"].as_array().unwrap() {
            let t = e["tpr"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&t), "{e}");
        }
    }
    // The default scheme finds every 400-token answer, and the windowed
    // test finds a pasted passage at least as often as the whole-text one.
    let kgw = &rows[0];
    assert_eq!(kgw["scheme"], "kgw γ0.25 δ2 h1");
    assert_eq!(kgw["by_length"][6]["tpr"], 1.0);
    let pasted = &kgw["pasted_150_in_800_real"];
    assert!(pasted["windowed"].as_f64().unwrap() >= pasted["whole_text"].as_f64().unwrap());
    let radio = &v["radioactivity"];
    let levels = radio["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 8, "six levels and two rewritten");
    assert_eq!(radio["students"].as_array().unwrap().len(), 8);
    // 8 students × 20 control keys each.
    assert_eq!(radio["controls"]["wrong_keys"]["count"], 160);
    let hist: u64 = radio["controls"]["wrong_keys"]["histogram_10_bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(hist, 160);
    let p = |i: usize| levels[i]["p_median"].as_f64().unwrap();
    assert!(
        p(5) < p(0),
        "10% contamination beats none: {} vs {}",
        p(5),
        p(0)
    );
    assert_eq!(run(d.path("again").to_str().unwrap()), v);
}

/// Issue 19: a watermarked answer pasted into a longer human document is
/// averaged away by the whole-text test and found by `--windows`, whose
/// p-value stays corrected for its search.
#[test]
fn a_pasted_answer_is_found_by_windowed_detection() {
    let d = Dir::new("windows");
    let key = d.path("k.key");
    wm_keygen(&key, 23);
    let prompts = d.path("prompts.txt");
    write(&prompts, "Why do we have leap years?\n");
    let answers = d.path("answers.jsonl");
    wm_generate(&key, None, &prompts, 150, &answers);
    let line = std::fs::read_to_string(&answers).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let marked = v["text"].as_str().unwrap();
    // A human report around it: varied sentences, about 900 tokens.
    let names = [
        "Ada", "Brook", "Chen", "Dara", "Emeka", "Farah", "Goran", "Hana",
    ];
    let things = [
        "budget",
        "roadmap",
        "hiring plan",
        "audit",
        "release",
        "survey",
        "offsite",
        "backlog",
    ];
    let human: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "On day {} {} reviewed the {} with {} people and noted {} open questions.",
                i + 1,
                names[i % names.len()],
                things[(i * 3) % things.len()],
                (i * 7) % 13 + 2,
                (i * 5) % 9 + 1
            )
        })
        .collect();
    let doc = format!(
        "{}\n\n{marked}\n\n{}",
        human[..20].join(" "),
        human[20..].join(" ")
    );
    let pasted = d.path("pasted.txt");
    write(&pasted, &doc);
    let plain = d.path("plain.txt");
    write(&plain, &human.join(" "));
    let run = |windows: bool| -> Vec<serde_json::Value> {
        let mut args = vec![
            "watermark",
            "detect",
            "--key",
            key.to_str().unwrap(),
            "--format",
            "json",
            pasted.to_str().unwrap(),
            plain.to_str().unwrap(),
        ];
        if windows {
            args.push("--windows");
        }
        serde_json::from_str::<serde_json::Value>(&ok(&args))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let whole = run(false);
    let windowed = run(true);
    let p = |r: &serde_json::Value| r["p_value"].as_f64().unwrap();
    assert!(p(&windowed[0]) <= 1e-6, "{}", windowed[0]);
    assert!(
        p(&windowed[0]) < p(&whole[0]),
        "{} vs {}",
        windowed[0],
        whole[0]
    );
    let w = &windowed[0]["keys"][0]["windowed"];
    assert_eq!(w["whole_text_p_value"].as_f64().unwrap(), p(&whole[0]));
    let best = &w["best_window"];
    assert!(best["tuples"].as_u64().unwrap() >= 32, "{w}");
    // The corrected p-value is at least 2 · windows · the best window's.
    let floor =
        2.0 * w["windows_tested"].as_f64().unwrap() * best["p_value_uncorrected"].as_f64().unwrap();
    assert!(p(&windowed[0]) >= floor.min(1.0) * 0.999_999, "{w}");
    // The human report alone is not flagged either way.
    assert!(
        p(&windowed[1]) > 1e-3 && p(&whole[1]) > 1e-3,
        "{}",
        windowed[1]
    );
    assert!(whole[0]["keys"][0]["windowed"].is_null());
}
