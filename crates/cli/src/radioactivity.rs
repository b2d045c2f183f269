/*!
`distillguard watermark radioactivity`: did a suspect model train on our
watermarked outputs?

A model trained on watermarked text inherits a faint bias: its own outputs
land in the green lists a little more often than chance (Sander et al.,
2024, "Watermarking makes language models radioactive"). The test:
1. get the suspect's answers to our prompts (from a file, or by querying
   an OpenAI-compatible endpoint);
2. score every (window, token) tuple of all answers together, once each
   (de-duplicated across answers), with the prompts' tuples excluded;
3. optionally keep only tuples whose window occurs in the watermarked text
   the suspect is believed to have trained on (the filter of Sander et al.);
4. compute the exact p-value, and the same under a control key the
   suspect can never have seen (it must look uniform).

The evidence report (JSON and Markdown) has the parameters, the key's
fingerprint (never the key), the code version, the SHA-256 of every input,
the counts, the p-value and the control run.
*/

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use distillguard_watermark::tokenizer::Tokenizer;
use distillguard_watermark::{Scheme, Scorer, WindowFilter};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Texts from a file: JSONL lines with a `text` field, or plain lines.
pub(crate) fn texts(path: &Path) -> Result<Vec<String>> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        if line.trim_start().starts_with('{') {
            let v: Value = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
            match v.get("text").and_then(Value::as_str) {
                Some(t) => out.push(t.to_string()),
                None => bail!("{}:{}: no \"text\" field", path.display(), i + 1),
            }
        } else {
            out.push(line);
        }
    }
    Ok(out)
}

fn sha256_file(p: &Path) -> Result<String> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Asks an OpenAI-compatible endpoint (`http://host:port[/prefix]` or
/// `https://host[:port][/prefix]`, HTTP/1.1; TLS verified against the
/// system's roots, plus the PEM file in `DISTILLGUARD_SUSPECT_CA` if set)
/// for an answer to `prompt`. `DISTILLGUARD_SUSPECT_API_KEY`, if set, is
/// sent as `Authorization: Bearer` (from the environment, so that it is
/// never in a process listing).
pub(crate) fn ask(url: &str, model: &str, prompt: &str, max_tokens: usize) -> Result<String> {
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => bail!("--suspect-url must start with http:// or https://"),
    };
    let (host, prefix) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 1.0,
    })
    .to_string();
    let path = format!(
        "/{}{}v1/chat/completions",
        prefix,
        if prefix.is_empty() || prefix.ends_with('/') {
            ""
        } else {
            "/"
        }
    );
    let auth = std::env::var("DISTILLGUARD_SUSPECT_API_KEY")
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // A host without a port takes the scheme's.
    let addr = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:{}", if tls { 443 } else { 80 })
    };
    let tcp = TcpStream::connect(&addr).with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
    let resp = if tls {
        let ca = std::env::var_os("DISTILLGUARD_SUSPECT_CA").map(std::path::PathBuf::from);
        let cfg = distillguard_gateway::tls::client_config(ca.as_deref())?;
        let name = addr
            .rsplit_once(':')
            .map_or(addr.as_str(), |(h, _)| h)
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(name)
            .with_context(|| format!("{host}: not a host name"))?;
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name)?;
        exchange(rustls::StreamOwned::new(conn, tcp), &request)?
    } else {
        exchange(tcp, &request)?
    };
    answer_text(url, &resp)
}

/// Sends `request`, reads the whole answer (the server closes).
fn exchange(mut s: impl Read + Write, request: &str) -> Result<Vec<u8>> {
    s.write_all(request.as_bytes())?;
    let mut resp = Vec::new();
    match s.read_to_end(&mut resp) {
        Ok(_) => {}
        // A TLS server that closes without close_notify: what came is all.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !resp.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(resp)
}

fn answer_text(url: &str, resp: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(resp);
    let (head, payload) = text.split_once("\r\n\r\n").context("no HTTP response")?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        bail!(
            "{url}: HTTP {status}: {}",
            payload.chars().take(200).collect::<String>()
        );
    }
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    let v: Value = serde_json::from_str(&payload).context("the endpoint's answer is not JSON")?;
    v["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .context("no choices[0].message.content in the answer")
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The test on tokenized answers under one key: its result, and how many
/// tuples the filter left out.
pub(crate) fn test(
    scheme: &Scheme,
    prompts: &[Vec<u32>],
    answers: &[Vec<u32>],
    filter: Option<&WindowFilter>,
) -> (distillguard_watermark::Score, usize) {
    let mut sc = Scorer::new(scheme);
    if let Some(f) = filter {
        sc = sc.with_filter(f);
    }
    for (i, a) in answers.iter().enumerate() {
        let mut t = prompts.get(i).cloned().unwrap_or_default();
        let pl = t.len();
        t.extend_from_slice(a);
        sc.add(&t, pl);
    }
    (sc.finish(), sc.filtered_out())
}

pub(crate) struct Options {
    /// The keys to test: the key itself, or one per cohort (named).
    pub schemes: Vec<(Option<String>, Scheme)>,
    /// Keys that never marked anything: their p-values must look uniform.
    pub controls: Vec<Scheme>,
    pub prompts: PathBuf,
    pub suspect_outputs: Option<PathBuf>,
    pub suspect_url: Option<String>,
    pub suspect_model: String,
    pub max_tokens: usize,
    pub filter: Option<PathBuf>,
    /// Tokens each filter window spans.
    pub filter_context: usize,
    pub out: PathBuf,
    pub params: Value,
}

pub(crate) fn run(o: Options) -> Result<ExitCode> {
    let tok = Tokenizer::cl100k()?;
    let prompt_texts = texts(&o.prompts)?;
    let mut inputs = vec![
        json!({"role": "prompts", "path": o.prompts.display().to_string(), "sha256": sha256_file(&o.prompts)?}),
    ];
    let answers: Vec<String> = match (&o.suspect_outputs, &o.suspect_url) {
        (Some(f), None) => {
            inputs.push(json!({"role": "suspect outputs", "path": f.display().to_string(), "sha256": sha256_file(f)?}));
            texts(f)?
        }
        (None, Some(url)) => {
            let mut v = Vec::with_capacity(prompt_texts.len());
            for (i, p) in prompt_texts.iter().enumerate() {
                v.push(
                    ask(url, &o.suspect_model, p, o.max_tokens)
                        .with_context(|| format!("prompt {}", i + 1))?,
                );
            }
            inputs.push(json!({"role": "suspect endpoint", "url": url, "model": o.suspect_model}));
            v
        }
        _ => bail!("give exactly one of --suspect-outputs and --suspect-url"),
    };
    let filter = match &o.filter {
        Some(f) => {
            inputs.push(json!({"role": "filter (our watermarked text)", "path": f.display().to_string(), "sha256": sha256_file(f)?}));
            let t: Vec<Vec<u32>> = texts(f)?.iter().map(|x| tok.encode(x)).collect();
            Some(WindowFilter::from_texts(
                o.filter_context,
                t.iter().map(Vec::as_slice),
            ))
        }
        None => None,
    };
    // Prompts are paired with answers by line when both come from files of
    // equal length; otherwise answers are scored without a prompt.
    let prompts: Vec<Vec<u32>> = if prompt_texts.len() == answers.len() {
        prompt_texts.iter().map(|p| tok.encode(p)).collect()
    } else {
        Vec::new()
    };
    let ans: Vec<Vec<u32>> = answers.iter().map(|a| tok.encode(a)).collect();
    let keys: Vec<(Option<String>, distillguard_watermark::Score, usize)> = o
        .schemes
        .iter()
        .map(|(name, s)| {
            let (r, filtered) = test(s, &prompts, &ans, filter.as_ref());
            (name.clone(), r, filtered)
        })
        .collect();
    let controls: Vec<distillguard_watermark::Score> = o
        .controls
        .iter()
        .map(|c| test(c, &prompts, &ans, filter.as_ref()).0)
        .collect();
    let Some(best) = keys
        .iter()
        .min_by(|a, b| a.1.p_value.total_cmp(&b.1.p_value))
    else {
        bail!("no key to test");
    };
    let (best_name, r, filtered) = (&best.0, &best.1, best.2);
    let p_value = distillguard_watermark::bonferroni(r.p_value, keys.len());
    let correction = if keys.len() > 1 {
        format!("bonferroni over {} keys", keys.len())
    } else {
        "none (one key)".to_string()
    };
    let control_p: Vec<f64> = controls.iter().map(|c| c.p_value).collect();
    let (ks_d, ks_p) = distillguard_watermark::stats::ks_uniform(&control_p);
    let first_control = controls.first();
    let assumptions = [
        "Under the null hypothesis the suspect's answers are independent of our key: whatever it was trained on, it never saw text marked with this key.",
        "Each distinct (context window, token) tuple is then green with probability γ, independently of the others; repeats are not independent, so tuples are de-duplicated across all answers, and tuples from the prompts, or reaching into them, are excluded.",
        "The filter (when given) is chosen from our own watermarked text, never from the suspect's answers, so it cannot bias the test.",
        "A small p-value says the answers carry our key's bias; that the bias came from training on our outputs (and not, say, from a copy of our answers in the suspect's prompts or context) is an inference the investigator must support.",
    ];
    let removal = [
        "Paraphrasing the watermarked text before training removes part of the signal: in our experiment (docs/watermark.md), a second model rewriting half of the text in spans of 8 tokens weakens the evidence at every contamination level.",
        "Targeted paraphrasing of the tokens that carry the watermark, and neutralising the watermark at inference time (the student is steered away from the green lists), can remove radioactivity (Pan et al., ACL 2025).",
        "Filtering or de-duplicating the stolen data, mixing it with much more other data, or distilling through an intermediate model dilutes the signal; the test then needs more answers from the suspect.",
        "A wider context (h > 1) makes the bias harder to learn and easier to lose; this test uses the generation's own scheme parameters.",
    ];
    let report = json!({
        "question": "Did the suspect model train on text watermarked with this key?",
        "tool": format!("distillguard {}", env!("CARGO_PKG_VERSION")),
        "key_fingerprint": r.key_fingerprint,
        "best_cohort": best_name,
        "parameters": o.params,
        "inputs": inputs,
        "answers": ans.len(),
        "tokens_seen": r.tokens_seen,
        "tokens_scored": r.tokens_scored,
        "tuples_outside_filter": filtered,
        "filter_context": filter.as_ref().map(|_| o.filter_context),
        "statistic": r.statistic,
        "test": r.test,
        "p_value": p_value,
        "correction": correction,
        "keys": keys.iter().map(|(name, s, _)| json!({
            "cohort": name, "key_fingerprint": s.key_fingerprint, "tokens_scored": s.tokens_scored,
            "statistic": s.statistic, "p_value": s.p_value,
        })).collect::<Vec<_>>(),
        "control": {
            "what": "the same answers scored under a key derived for control, never used to watermark; its p-value should look uniform",
            "key_fingerprint": first_control.map(|c| c.key_fingerprint.clone()),
            "tokens_scored": first_control.map(|c| c.tokens_scored),
            "p_value": first_control.map(|c| c.p_value),
        },
        "controls": {
            "what": "the same answers under every control key; under the null their p-values are uniform, and a Kolmogorov–Smirnov test against the uniform distribution says whether they look it",
            "p_values": control_p,
            "ks_d": ks_d,
            "ks_p": ks_p,
        },
        "assumptions": assumptions,
        "known_removal_attacks": removal,
        "method": "Tuples (context window, token) of all answers are scored once each (de-duplicated across answers); tuples from the prompts and tokens whose window reaches into a prompt are excluded; with a filter, only windows that occur in our watermarked text are kept (Sander et al., 2024). The p-value is exact under the null hypothesis that the answers are independent of the key; with several cohort keys it is the smallest key's p-value times the number of keys (Bonferroni).",
    });
    let json_path = o.out.with_extension("json");
    let md_path = o.out.with_extension("md");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let bullets = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("- {i}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let cohort_line = match best_name {
        Some(c) => format!(
            " The best-fitting cohort is **{c}** ({correction}; its own p = {:.3e}).",
            r.p_value
        ),
        None => String::new(),
    };
    let md = format!(
        "# Radioactivity evidence\n\n**Question.** Did the suspect model train on text watermarked with key `{}`?\n\n**Test.** {}\n\n**Result.** p = {:.3e}.{cohort_line}\n\n**Controls.** {} keys that never marked anything, on the same answers: p = {}; Kolmogorov–Smirnov against uniform: D = {ks_d:.3}, p = {ks_p:.3}.\n\n| | |\n|---|---|\n| answers | {} |\n| tokens seen | {} |\n| tuples scored (distinct) | {} |\n| tuples outside the filter | {} |\n| statistic | {} |\n| tool | distillguard {} |\n\n## Assumptions\n{}\n\n## Known removal attacks\n{}\n\n**Parameters.** `{}`\n\n**Inputs.**\n{}\n\n**Method.** {}\n",
        r.key_fingerprint,
        r.test,
        p_value,
        control_p.len(),
        control_p
            .iter()
            .map(|p| format!("{p:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        ans.len(),
        r.tokens_seen,
        r.tokens_scored,
        filtered,
        r.statistic,
        env!("CARGO_PKG_VERSION"),
        bullets(&assumptions),
        bullets(&removal),
        o.params,
        report["inputs"]
            .as_array()
            .map(|a| a
                .iter()
                .map(|i| format!("- {i}"))
                .collect::<Vec<_>>()
                .join("\n"))
            .unwrap_or_default(),
        report["method"].as_str().unwrap_or(""),
    );
    std::fs::write(&md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    writeln!(
        io::stdout().lock(),
        "p = {:.3e} over {} distinct tuples of {} answers{} (control keys: KS p = {ks_p:.3}); evidence in {} and {}",
        p_value,
        r.tokens_scored,
        ans.len(),
        best_name
            .as_ref()
            .map(|c| format!(", best cohort {c}"))
            .unwrap_or_default(),
        json_path.display(),
        md_path.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
