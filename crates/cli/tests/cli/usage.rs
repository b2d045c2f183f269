//! The CLI as a new user meets it: `--format` choices that say what they
//! are, reason lines that read as sentences, and a README walkthrough whose
//! commands exist, whose servers do not share a port and whose inputs come
//! from somewhere.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::*;

/// `jsonl` (one entity a line) is offered where a report has entities,
/// and nowhere else; elsewhere it is refused with the possible values.
#[test]
fn only_reports_offer_one_entity_per_line() {
    for cmd in [&["analyze"][..], &["exfil", "analyze"]] {
        let help = ok(&[cmd, &["--help"]].concat());
        assert!(help.contains("jsonl"), "{cmd:?}: {help}");
    }
    for cmd in [
        &["simulate"][..],
        &["check"],
        &["eval"],
        &["scenarios"],
        &["fit"],
        &["lofo"],
        &["keys", "list"],
        &["watermark", "detect"],
        &["exfil", "eval"],
    ] {
        let help = ok(&[cmd, &["--help"]].concat());
        assert!(help.contains("--format"), "{cmd:?} has no --format");
        assert!(!help.contains("analyze only"), "{cmd:?}: {help}");
        let out = dg(&[cmd, &["--format", "jsonl", "--help"]].concat());
        assert_eq!(out.status.code(), Some(2), "{cmd:?} takes --format jsonl");
    }
    let out = dg(&["simulate", "--scenario", "small", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("possible values: table, json"), "{err}");
}

/// Reason lines are sentences about what was counted: none says "0% of
/// requests", and a single request with `max_tokens: 1024` is not "the
/// maximum output length".
#[test]
fn reason_lines_read_as_sentences() {
    let d = Dir::new("reasons");
    let log = d.path("one.jsonl");
    write(
        &log,
        concat!(
            r#"{"ts":"2026-02-24T08:00:00Z","account_id":"acct_1","endpoint":"/v1/chat/completions","#,
            r#""request":{"model":"atlas-3","max_tokens":1024,"messages":[{"role":"user","content":"Explain TCP"}]}}"#,
            "\n"
        ),
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        log.to_str().unwrap(),
        "--all",
        "--format",
        "json",
    ]))
    .unwrap();
    let out = simulate_small(&d, "s", 5);
    let report = analyze_dir(&out, &out.join("events.jsonl.gz"));
    let mut lines = 0;
    for r in [&v, &report] {
        for a in r["accounts"].as_array().unwrap() {
            for reason in a["reasons"].as_array().into_iter().flatten() {
                let detail = reason["detail"].as_str().unwrap();
                lines += 1;
                assert!(
                    !detail.starts_with("0% of") && !detail.starts_with("0 of "),
                    "{}: {detail}",
                    a["account_id"]
                );
            }
        }
    }
    assert!(lines > 100, "only {lines} reason lines were read");
    let one = &v["accounts"][0];
    assert_eq!(one["account_id"], "acct_1");
    let details: Vec<&str> = one["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    assert!(!details.is_empty());
    for detail in details {
        assert!(
            !detail.contains("ask for the model's maximum output length"),
            "{detail}"
        );
    }
}

/// The README's "Try it" block, read as a user would run it.
#[test]
fn the_readme_walkthrough_is_runnable_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme.find("## Try it").unwrap();
    let block = &readme[start..];
    let block = &block[block.find("```sh").unwrap() + 5..];
    let block = &block[..block.find("```").unwrap()];
    // Continuation lines joined.
    let text = block.replace("\\\n", " ");
    let mut produced: BTreeSet<String> = BTreeSet::new();
    let mut ports = Vec::new();
    let mut commands = 0;
    for line in text.lines() {
        let line = line.split("  #").next().unwrap().trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        // Files written by this line: `--out X`, `> X`.
        for w in words.windows(2) {
            if w[0] == "--out" || w[0] == ">" {
                produced.insert(w[1].trim_end_matches('/').to_string());
            }
        }
        if let Some(i) = words.iter().position(|w| *w == "--listen") {
            ports.push(words[i + 1].to_string());
        }
        let Some(rest) = line.strip_prefix("cargo run --release -- ") else {
            continue;
        };
        commands += 1;
        // The subcommand path (`watermark detect`) answers --help.
        let args: Vec<&str> = rest.split_whitespace().collect();
        let path: Vec<&str> = args
            .iter()
            .take(2)
            .copied()
            .take_while(|a| !a.starts_with('-') && !a.contains(['.', '/']))
            .collect();
        let help = ok(&[&path[..], &["--help"]].concat());
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            assert!(
                help.contains(*flag),
                "README: `{rest}`: {flag} is not an option of {path:?}"
            );
        }
        // Inputs: a file argument exists in the repository, or an earlier
        // line wrote it (or the folder it is in).
        for a in &args[path.len()..] {
            let looks_like_file = [".txt", ".json", ".key", ".toml", ".jsonl", ".gz"]
                .iter()
                .any(|e| a.ends_with(e));
            if !looks_like_file || a.starts_with("../shared") || a.starts_with('"') {
                continue;
            }
            let written =
                produced.contains(*a) || produced.iter().any(|p| a.starts_with(&format!("{p}/")));
            let is_out = args
                .windows(2)
                .any(|w| (w[0] == "--out" || w[0] == ">") && w[1] == *a);
            assert!(
                written || is_out || root.join(a).exists(),
                "README: `{rest}` reads {a}, which no earlier line writes"
            );
        }
    }
    assert!(commands >= 20, "{commands} commands in the walkthrough");
    let unique: BTreeSet<&String> = ports.iter().collect();
    assert_eq!(
        unique.len(),
        ports.len(),
        "two servers on one port: {ports:?}"
    );
}

/// The docs describe what is built: no page promises a command "once it
/// lands", and every `distillguard <command>` a page names exists.
#[test]
fn the_docs_speak_of_what_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut pages = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            pages.push(p);
        }
    }
    let help = ok(&["--help"]);
    let commands: BTreeSet<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        commands.contains("analyze") && commands.contains("serve"),
        "{help}"
    );
    for p in &pages {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(
            !text.contains("once it lands"),
            "{} promises the future",
            p.display()
        );
        for (i, _) in text.match_indices("`distillguard ") {
            let word: String = text[i + 14..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            if !word.is_empty() {
                assert!(
                    commands.contains(word.as_str()),
                    "{} names `distillguard {word}`, which is not a command",
                    p.display()
                );
            }
        }
    }
}
