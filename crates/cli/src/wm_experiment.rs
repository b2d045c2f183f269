/*!
The watermark experiments (`distillguard watermark experiment`).

1. **False positives on real text.** Every ShareGPT assistant answer is
   scored under `keys` independent keys (KGW, γ 0.25, h 1). Each (answer,
   key) pair is one test of real, unwatermarked text. The share of tests
   under each p threshold is compared with the threshold itself: an exact
   test must give p < α in at most a share α of tests. The total of scored
   windows is reported too.
2. **Detection against length and edits.** For each scheme, the reference
   teacher writes `answers` watermarked answers to real user prompts.
   Detection at p ≤ 1e-6 (FPR 1e-6) is measured on the first 25 … 400
   tokens, and after 10/20/30% of tokens are substituted (random
   vocabulary), deleted, or the text is cropped to its middle 50%.

3. **Radioactivity.** Students (the same trigram model) are trained on
   real answers plus 0%, 1%, 5% or 10% of watermarked teacher answers
   (KGW, h 1). Each student answers 300 new prompts, and the answers are
   tested as `watermark radioactivity` does: de-duplicated across answers,
   prompts excluded, filtered to the windows of the watermarked text. A
   control key is tested on the same answers.

Everything is seeded: the same corpus gives the same numbers.
*/

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use distillguard_teacher::Teacher;
use distillguard_watermark::tokenizer::Tokenizer;
use distillguard_watermark::{Gumbel, Key, Kgw, Scheme, Seeding, Tournament, detect};
use serde_json::json;

use crate::Format;
use crate::watermark::{Rng, answer_tokens, pick};

const THRESHOLDS: [f64; 6] = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6];
const LENGTHS: [usize; 5] = [25, 50, 100, 200, 400];

fn edit(tokens: &[u32], kind: &str, rate: f64, rng: &mut Rng) -> Vec<u32> {
    match kind {
        "substitute" => tokens
            .iter()
            .map(|&t| {
                if rng.next() < rate {
                    (rng.next() * 100_000.0) as u32
                } else {
                    t
                }
            })
            .collect(),
        "delete" => tokens
            .iter()
            .copied()
            .filter(|_| rng.next() >= rate)
            .collect(),
        _ => {
            let n = tokens.len();
            tokens[n / 4..n - n / 4].to_vec()
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    corpus: &str,
    keys: usize,
    answers: usize,
    train_tokens: usize,
    format: Format,
    plots: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let tok = Tokenizer::cl100k()?;
    let started = std::time::Instant::now();
    // Real answers: all of them for the false-positive run.
    let real = answer_tokens(corpus, &tok, usize::MAX)?;
    let base = Key::from_parts(0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321);
    let mut below = [0u64; THRESHOLDS.len()];
    let mut tests = 0u64;
    let mut windows = 0u64;
    for k in 0..keys {
        let s = Scheme::Kgw(Kgw {
            key: base.derive(&format!("fpr-{k}")),
            gamma: 0.25,
            delta: 2.0,
            seeding: Seeding::LeftHash { h: 1 },
        });
        for t in real.iter().filter(|t| t.len() >= 10) {
            let r = detect(&s, t, 0);
            tests += 1;
            windows += r.tokens_scored as u64;
            for (b, th) in below.iter_mut().zip(THRESHOLDS) {
                *b += u64::from(r.p_value < th);
            }
        }
    }
    let fpr_secs = started.elapsed().as_secs_f64();
    // Detection against length and edits, with the teacher.
    let teacher = Teacher::train(answer_tokens(corpus, &tok, train_tokens)?);
    let c = distillguard_simulator::Corpus::load(corpus).map_err(|e| anyhow::anyhow!("{e}"))?;
    let prompts: Vec<Vec<u32>> = c
        .conversations
        .iter()
        .filter_map(|cv| cv.turns.iter().find(|t| t.user))
        .map(|t| {
            tok.encode(&t.text)
                .into_iter()
                .take(64)
                .collect::<Vec<u32>>()
        })
        .filter(|p| p.len() >= 4)
        .take(answers)
        .collect();
    let key = base.derive("tpr");
    let left = Seeding::LeftHash { h: 1 };
    let schemes = [
        (
            "kgw γ0.25 δ2 h1",
            Scheme::Kgw(Kgw {
                key,
                gamma: 0.25,
                delta: 2.0,
                seeding: left,
            }),
        ),
        (
            "kgw γ0.25 δ2 minhash h4 self-salted",
            Scheme::Kgw(Kgw {
                key,
                gamma: 0.25,
                delta: 2.0,
                seeding: Seeding::MinHash {
                    h: 4,
                    self_salt: true,
                },
            }),
        ),
        (
            "tournament m8 h1",
            Scheme::Tournament(Tournament {
                key,
                layers: 8,
                seeding: left,
            }),
        ),
        ("gumbel h1", Scheme::Gumbel(Gumbel { key, seeding: left })),
    ];
    let mut rows = Vec::new();
    for (name, s) in &schemes {
        let mut rng = Rng::new(42);
        let texts: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| {
                let ids =
                    teacher.generate(p, 400, None, |ctx, cand| pick(Some(s), ctx, cand, &mut rng));
                // Round-trip through text, as a copied answer would be.
                tok.encode(&tok.decode(&ids))
            })
            .collect();
        let rate = |f: &dyn Fn(&[u32], &mut Rng) -> Vec<u32>| {
            let mut r = Rng::new(7);
            let hits = texts
                .iter()
                .filter(|t| detect(s, &f(t, &mut r), 0).p_value <= 1e-6)
                .count();
            hits as f64 / texts.len().max(1) as f64
        };
        let by_len: Vec<f64> = LENGTHS
            .iter()
            .map(|&n| rate(&|t, _| t[..t.len().min(n)].to_vec()))
            .collect();
        let mut edits = Vec::new();
        for kind in ["substitute", "delete"] {
            for r in [0.1, 0.2, 0.3] {
                edits.push((
                    format!("{kind} {:.0}%", r * 100.0),
                    rate(&|t, g| edit(&t[..t.len().min(200)], kind, r, g)),
                ));
            }
        }
        edits.push((
            "crop to middle 50%".into(),
            rate(&|t, g| edit(&t[..t.len().min(400)], "crop", 0.0, g)),
        ));
        let mean_len = texts.iter().map(Vec::len).sum::<usize>() as f64 / texts.len().max(1) as f64;
        rows.push((name.to_string(), by_len, edits, mean_len));
    }
    // Radioactivity.
    let radio = radioactivity(&tok, corpus, &teacher, &c, answers, base)?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(dir) = plots {
        write_plots(dir, tests, &below, &rows, &radio)?;
    }
    let mut out = io::stdout().lock();
    match format {
        Format::Json | Format::Jsonl => {
            let v = json!({
                "false_positives": {
                    "tests": tests, "scored_windows": windows, "keys": keys,
                    "answers": real.iter().filter(|t| t.len() >= 10).count(),
                    "below": THRESHOLDS.iter().zip(below).map(|(t, b)| json!({"alpha": t, "tests_below": b, "rate": b as f64 / tests.max(1) as f64})).collect::<Vec<_>>(),
                    "seconds": fpr_secs,
                },
                "detection_at_fpr_1e-6": rows.iter().map(|(n, l, e, m)| json!({
                    "scheme": n, "mean_tokens": m,
                    "by_length": LENGTHS.iter().zip(l).map(|(n, r)| json!({"tokens": n, "tpr": r})).collect::<Vec<_>>(),
                    "edits_on_200_tokens": e.iter().map(|(k, r)| json!({"edit": k, "tpr": r})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "teacher": {"training_tokens": teacher.trained_tokens, "contexts": teacher.contexts(), "prompts": prompts.len()},
                "radioactivity": radio.iter().map(|r| json!({
                    "contamination": r.0, "student_training_tokens": r.1, "watermarked_tokens": r.2,
                    "answers": r.3, "tuples_scored": r.4, "p_value": r.5, "control_p_value": r.6,
                })).collect::<Vec<_>>(),
                "seconds": secs,
            });
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "False positives: {tests} tests ({} real answers × {keys} keys), {windows} scored windows, {fpr_secs:.1}s",
                real.iter().filter(|t| t.len() >= 10).count()
            )?;
            for (t, b) in THRESHOLDS.iter().zip(below) {
                writeln!(
                    out,
                    "  p < {t:.0e}: {b} tests = {:.2e} (expected at most {t:.0e})",
                    b as f64 / tests.max(1) as f64
                )?;
            }
            writeln!(
                out,
                "\nDetection at p ≤ 1e-6 ({} watermarked teacher answers per scheme)",
                prompts.len()
            )?;
            write!(out, "{:<38}", "scheme")?;
            for n in LENGTHS {
                write!(out, "{:>7}", format!("{n} tok"))?;
            }
            writeln!(out)?;
            for (n, l, _, _) in &rows {
                write!(out, "{n:<38}")?;
                for r in l {
                    write!(out, "{:>6.1}%", r * 100.0)?;
                }
                writeln!(out)?;
            }
            writeln!(
                out,
                "\nEdits (on the first 200 tokens; cropping on the first 400):"
            )?;
            for (n, _, e, _) in &rows {
                let parts: Vec<String> = e
                    .iter()
                    .map(|(k, r)| format!("{k} {:.0}%", r * 100.0))
                    .collect();
                writeln!(out, "  {n}: {}", parts.join(", "))?;
            }
            writeln!(
                out,
                "\nRadioactivity (students answer 300 new prompts; KGW h 1 key; filter = windows of the watermarked text):"
            )?;
            writeln!(
                out,
                "{:>14}{:>16}{:>14}{:>16}{:>12}{:>14}",
                "contamination",
                "student tokens",
                "watermarked",
                "tuples scored",
                "p-value",
                "control p"
            )?;
            for r in &radio {
                writeln!(
                    out,
                    "{:>13.0}%{:>16}{:>14}{:>16}{:>12.2e}{:>14.3}",
                    r.0 * 100.0,
                    r.1,
                    r.2,
                    r.4,
                    r.5,
                    r.6
                )?;
            }
            writeln!(out, "\n{secs:.1}s in all")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// (contamination, student tokens, watermarked tokens, answers, tuples
/// scored, p-value, control p-value) per student.
type RadioRow = (f64, u64, usize, usize, usize, f64, f64);

fn radioactivity(
    tok: &Tokenizer,
    corpus: &str,
    teacher: &Teacher,
    c: &distillguard_simulator::Corpus,
    skip_prompts: usize,
    base_key: Key,
) -> Result<Vec<RadioRow>> {
    let key = base_key.derive("radioactivity");
    let scheme = Scheme::Kgw(Kgw {
        key,
        gamma: 0.25,
        delta: 2.0,
        seeding: Seeding::LeftHash { h: 1 },
    });
    let control = Scheme::Kgw(Kgw {
        key: base_key.derive("radioactivity control"),
        gamma: 0.25,
        delta: 2.0,
        seeding: Seeding::LeftHash { h: 1 },
    });
    let base = answer_tokens(corpus, tok, 1_000_000)?;
    let base_tokens: usize = base.iter().map(Vec::len).sum();
    let user: Vec<Vec<u32>> = c
        .conversations
        .iter()
        .flat_map(|cv| cv.turns.iter().filter(|t| t.user))
        .map(|t| {
            tok.encode(&t.text)
                .into_iter()
                .take(48)
                .collect::<Vec<u32>>()
        })
        .filter(|p| p.len() >= 4)
        .collect();
    // Watermarked teacher answers, enough for 10% of the student's data.
    let want = base_tokens / 9;
    let mut rng = Rng::new(2024);
    let mut marked: Vec<Vec<u32>> = Vec::new();
    let mut have = 0usize;
    for p in user.iter().skip(skip_prompts + 300) {
        if have >= want {
            break;
        }
        let a = teacher.generate(p, 200, None, |ctx, cand| {
            pick(Some(&scheme), ctx, cand, &mut rng)
        });
        have += a.len();
        marked.push(a);
    }
    let queries: Vec<Vec<u32>> = user.iter().skip(skip_prompts).take(300).cloned().collect();
    let filter =
        distillguard_watermark::WindowFilter::from_texts(1, marked.iter().map(Vec::as_slice));
    let mut rows = Vec::new();
    for frac in [0.0, 0.01, 0.05, 0.10] {
        let need = (base_tokens as f64 * frac / (1.0 - frac)) as usize;
        let mut part = Vec::new();
        let mut n = 0usize;
        for m in &marked {
            if n >= need {
                break;
            }
            n += m.len();
            part.push(m.clone());
        }
        let student = Teacher::train(base.iter().cloned().chain(part));
        let mut r = Rng::new(99);
        let outs: Vec<Vec<u32>> = queries
            .iter()
            .map(|q| student.generate(q, 100, None, |ctx, cand| pick(None, ctx, cand, &mut r)))
            .collect();
        let (res, ctl, _) =
            crate::radioactivity::test(&scheme, &control, &queries, &outs, Some(&filter));
        rows.push((
            frac,
            student.trained_tokens,
            n,
            outs.len(),
            res.tokens_scored,
            res.p_value,
            ctl.p_value,
        ));
    }
    Ok(rows)
}

type Row = (String, Vec<f64>, Vec<(String, f64)>, f64);

fn write_plots(
    dir: &std::path::Path,
    tests: u64,
    below: &[u64],
    rows: &[Row],
    radio: &[RadioRow],
) -> Result<()> {
    use crate::svg::{Chart, Series, line_chart};
    std::fs::create_dir_all(dir)?;
    let fpr = Series {
        name: format!("KGW, {tests} tests"),
        points: THRESHOLDS
            .iter()
            .zip(below)
            .filter(|(_, b)| **b > 0)
            .map(|(t, b)| (*t, *b as f64 / tests.max(1) as f64))
            .collect(),
    };
    let chart = Chart {
        title: "Empirical false-positive rate on real answers",
        x_label: "nominal level α",
        y_label: "share of tests with p < α",
        x_log: true,
        y_log: true,
        hlines: Vec::new(),
        diagonal: true,
    };
    std::fs::write(dir.join("fpr.svg"), line_chart(&chart, &[fpr]))?;
    let tpr: Vec<Series> = rows
        .iter()
        .map(|(n, l, _, _)| Series {
            name: n.clone(),
            points: LENGTHS
                .iter()
                .zip(l)
                .map(|(t, r)| (*t as f64, r * 100.0))
                .collect(),
        })
        .collect();
    let chart = Chart {
        title: "Detection at FPR 1e-6 against answer length",
        x_label: "tokens scored (log scale)",
        y_label: "answers detected (%)",
        x_log: true,
        y_log: false,
        hlines: vec![(99.0, "99%".into())],
        diagonal: false,
    };
    std::fs::write(dir.join("tpr.svg"), line_chart(&chart, &tpr))?;
    let rob: Vec<Series> = rows
        .iter()
        .map(|(n, _, e, _)| Series {
            name: n.clone(),
            points: [0.0, 0.1, 0.2, 0.3]
                .iter()
                .map(|&r| {
                    let v = if r == 0.0 {
                        1.0
                    } else {
                        e.iter()
                            .find(|(k, _)| *k == format!("substitute {:.0}%", r * 100.0))
                            .map_or(0.0, |x| x.1)
                    };
                    (r * 100.0, v * 100.0)
                })
                .collect(),
        })
        .collect();
    let chart = Chart {
        title: "Detection at FPR 1e-6 after random token substitution (200 tokens)",
        x_label: "tokens substituted (%)",
        y_label: "answers detected (%)",
        x_log: false,
        y_log: false,
        hlines: Vec::new(),
        diagonal: false,
    };
    std::fs::write(dir.join("robustness.svg"), line_chart(&chart, &rob))?;
    let minus_log = |p: f64| -(p.max(1e-300)).log10();
    let radio_s = [
        Series {
            name: "students, our key".into(),
            points: radio
                .iter()
                .map(|r| (r.0 * 100.0, minus_log(r.5)))
                .collect(),
        },
        Series {
            name: "same answers, control key".into(),
            points: radio
                .iter()
                .map(|r| (r.0 * 100.0, minus_log(r.6)))
                .collect(),
        },
    ];
    let chart = Chart {
        title: "Radioactivity: students trained on watermarked answers",
        x_label: "watermarked share of the student's training text (%)",
        y_label: "−log10 p",
        x_log: false,
        y_log: false,
        hlines: vec![(6.0, "p = 1e-6".into())],
        diagonal: false,
    };
    std::fs::write(dir.join("radioactivity.svg"), line_chart(&chart, &radio_s))?;
    Ok(())
}
