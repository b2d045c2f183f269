//! Watermarks: keys, generation, detection (whole and windowed), the
//! radioactivity test, cohorts, the experiment, and the mock model server.

use std::path::Path;
use std::process::Command;

use crate::support::*;

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
