/*!
The watermark experiments (`distillguard watermark experiment`).

1. **False positives on real text.** Every ShareGPT assistant answer is
   scored under `keys` independent keys (KGW, γ 0.25, h 1). Each (answer,
   key) pair is one test of real, unwatermarked text. The share of tests
   under each p threshold is compared with the threshold itself: an exact
   test must give p < α in at most a share α of tests. The windowed test
   ([`distillguard_watermark::detect_windowed`]) is checked the same way
   under four of the keys.
2. **Detection against length and edits.** For each scheme, the reference
   teacher writes `answers` watermarked answers to real user prompts.
   Detection at p ≤ 1e-6 (FPR 1e-6) is measured on the first 25 … 400
   tokens; after word-level edits (10/20/30% of the words substituted by
   random real words, deleted, or random real words inserted) and after a
   rewrite by a second model (the teacher under another key rewrites
   10/20/30% of the text in spans of 8 tokens), each on the first 150 and
   300 tokens and round-tripped through text; after cropping to the middle
   half; and with 150 marked tokens pasted into 800 tokens of a real
   answer, by the whole-text and the windowed test.
3. **Radioactivity** ([`crate::wm_radio`]): students at 0 … 10%
   contamination over several seeds, the controls' p-value distribution
   with a Kolmogorov–Smirnov test, and students trained on rewritten
   watermarked text.

Everything is seeded: the same corpus gives the same numbers.
*/

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use distillguard_teacher::Teacher;
use distillguard_watermark::tokenizer::Tokenizer;
use distillguard_watermark::{
    Gumbel, Key, Kgw, Scheme, Seeding, Tournament, detect, detect_windowed,
};
use serde_json::json;

use crate::Format;
use crate::wm_data::{Rng, answer_tokens, pick, rewrite, user_prompts};
use crate::wm_radio::{self, RadioOptions, RadioReport};

const THRESHOLDS: [f64; 6] = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6];
const LENGTHS: [usize; 7] = [25, 50, 100, 150, 200, 300, 400];
const EDIT_LENGTHS: [usize; 2] = [150, 300];
const RATES: [f64; 3] = [0.1, 0.2, 0.3];
/// Keys of the windowed test's false-positive run.
const WINDOWED_KEYS: usize = 4;

/// An edit an adversary makes to a copied answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    /// A share of the words replaced by random real words.
    Substitute,
    /// A share of the words deleted.
    Delete,
    /// Random real words inserted after a share of the words.
    Insert,
    /// A share of the text rewritten by a second model (spans of 8 tokens).
    Rewrite,
}

impl Edit {
    const ALL: [Edit; 4] = [Edit::Substitute, Edit::Delete, Edit::Insert, Edit::Rewrite];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Edit::Substitute => "substitute words",
            Edit::Delete => "delete words",
            Edit::Insert => "insert words",
            Edit::Rewrite => "rewrite by a second model",
        }
    }
}

/// Word-level edits of a text, as a person or a script makes them: the
/// text is split at spaces; each word is, with probability `rate`,
/// replaced by a random real word, deleted, or followed by one.
pub(crate) fn edit_words(
    text: &str,
    edit: Edit,
    rate: f64,
    words: &[String],
    rng: &mut Rng,
) -> String {
    let random_word = |rng: &mut Rng| -> &str {
        let i = (rng.next() * words.len() as f64) as usize;
        words
            .get(i.min(words.len().saturating_sub(1)))
            .map_or("the", String::as_str)
    };
    let mut out: Vec<&str> = Vec::new();
    for w in text.split(' ') {
        if rng.next() >= rate {
            out.push(w);
            continue;
        }
        match edit {
            Edit::Substitute => out.push(random_word(rng)),
            Edit::Delete => {}
            Edit::Insert | Edit::Rewrite => {
                out.push(w);
                out.push(random_word(rng));
            }
        }
    }
    out.join(" ")
}

/// Real words (from real answers) for substitutions and insertions.
fn real_words(tok: &Tokenizer, real: &[Vec<u32>]) -> Vec<String> {
    let mut words = Vec::new();
    for t in real.iter().take(2_000) {
        for w in tok.decode(t).split_whitespace() {
            if w.len() <= 14 && words.len() < 50_000 {
                words.push(w.to_string());
            }
        }
    }
    words
}

/// One scheme's detection results: true-positive rates at p ≤ 1e-6.
struct SchemeRow {
    name: String,
    mean_tokens: f64,
    /// Per [`LENGTHS`].
    by_len: Vec<f64>,
    /// (edit, rate, length, rate detected).
    edits: Vec<(Edit, f64, usize, f64)>,
    crop: f64,
    /// 150 marked tokens in 800 real ones: whole-text and windowed test.
    pasted_whole: f64,
    pasted_windowed: f64,
}

impl SchemeRow {
    fn edit(&self, e: Edit, rate: f64, len: usize) -> f64 {
        self.edits
            .iter()
            .find(|x| x.0 == e && (x.1 - rate).abs() < 1e-9 && x.2 == len)
            .map_or(f64::NAN, |x| x.3)
    }
}

/// The experiment's sizes.
pub(crate) struct ExperimentOptions {
    pub corpus: String,
    pub keys: usize,
    pub answers: usize,
    pub train_tokens: usize,
    pub radio: RadioOptions,
}

/// The schemes measured, under `key`.
fn schemes(key: Key) -> Vec<(&'static str, Scheme)> {
    let kgw = |seeding| {
        Scheme::Kgw(Kgw {
            key,
            gamma: 0.25,
            delta: 2.0,
            seeding,
        })
    };
    let left = Seeding::LeftHash { h: 1 };
    let tournament = |layers| {
        Scheme::Tournament(Tournament {
            key,
            layers,
            seeding: left,
        })
    };
    vec![
        ("kgw γ0.25 δ2 h1", kgw(left)),
        ("kgw γ0.25 δ2 h2", kgw(Seeding::LeftHash { h: 2 })),
        (
            "kgw γ0.25 δ2 minhash h4 self-salted",
            kgw(Seeding::MinHash {
                h: 4,
                self_salt: true,
            }),
        ),
        ("tournament m4 h1", tournament(4)),
        ("tournament m8 h1", tournament(8)),
        ("tournament m12 h1", tournament(12)),
        ("gumbel h1", Scheme::Gumbel(Gumbel { key, seeding: left })),
    ]
}

/// The same scheme under another key (the second model's).
fn with_key(s: &Scheme, key: Key) -> Scheme {
    match *s {
        Scheme::Kgw(k) => Scheme::Kgw(Kgw { key, ..k }),
        Scheme::Tournament(t) => Scheme::Tournament(Tournament { key, ..t }),
        Scheme::Gumbel(g) => Scheme::Gumbel(Gumbel { key, ..g }),
    }
}

#[expect(clippy::too_many_arguments)]
fn measure_scheme(
    name: &str,
    s: &Scheme,
    other: &Scheme,
    teacher: &Teacher,
    tok: &Tokenizer,
    prompts: &[Vec<u32>],
    real: &[Vec<u32>],
    words: &[String],
) -> SchemeRow {
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
    let share = |hits: usize| hits as f64 / texts.len().max(1) as f64;
    let found = |t: &[u32]| detect(s, t, 0).p_value <= 1e-6;
    let by_len = LENGTHS
        .iter()
        .map(|&n| share(texts.iter().filter(|t| found(&t[..t.len().min(n)])).count()))
        .collect();
    let mut edits = Vec::new();
    for &len in &EDIT_LENGTHS {
        for e in Edit::ALL {
            for &r in &RATES {
                let mut g = Rng::new(7);
                let hits = texts
                    .iter()
                    .zip(prompts)
                    .filter(|(t, p)| {
                        let t = &t[..t.len().min(len)];
                        let edited = match e {
                            Edit::Rewrite => tok.decode(&rewrite(teacher, other, p, t, r, &mut g)),
                            _ => edit_words(&tok.decode(t), e, r, words, &mut g),
                        };
                        found(&tok.encode(&edited))
                    })
                    .count();
                edits.push((e, r, len, share(hits)));
            }
        }
    }
    let crop = share(
        texts
            .iter()
            .filter(|t| {
                let n = t.len().min(400);
                found(&t[n / 4..n - n / 4])
            })
            .count(),
    );
    // 150 marked tokens pasted into the middle of 800 tokens of real
    // answers (a different run of answers for each text).
    let (mut whole, mut windowed) = (0usize, 0usize);
    for (i, t) in texts.iter().enumerate() {
        let mut filler: Vec<u32> = Vec::with_capacity(900);
        let mut j = i * 7;
        while filler.len() < 800 && !real.is_empty() {
            filler.extend_from_slice(&real[j % real.len()]);
            j += 1;
        }
        filler.truncate(800);
        let half = filler.len() / 2;
        let mut doc = filler[..half].to_vec();
        doc.extend_from_slice(&t[..t.len().min(150)]);
        doc.extend_from_slice(&filler[half..]);
        let doc = tok.encode(&tok.decode(&doc));
        whole += usize::from(found(&doc));
        windowed += usize::from(detect_windowed(s, &doc, 0).p_value <= 1e-6);
    }
    SchemeRow {
        name: name.to_string(),
        mean_tokens: texts.iter().map(Vec::len).sum::<usize>() as f64 / texts.len().max(1) as f64,
        by_len,
        edits,
        crop,
        pasted_whole: share(whole),
        pasted_windowed: share(windowed),
    }
}

/// False positives of real answers: tests below each threshold, by the
/// whole-text test under `keys` keys and the windowed test under
/// [`WINDOWED_KEYS`] of them.
struct FalsePositives {
    tests: u64,
    windows: u64,
    below: [u64; THRESHOLDS.len()],
    windowed_tests: u64,
    windowed_below: [u64; THRESHOLDS.len()],
    answers: usize,
    seconds: f64,
}

fn false_positives(real: &[Vec<u32>], base: Key, keys: usize) -> FalsePositives {
    let started = std::time::Instant::now();
    let mut f = FalsePositives {
        tests: 0,
        windows: 0,
        below: [0; THRESHOLDS.len()],
        windowed_tests: 0,
        windowed_below: [0; THRESHOLDS.len()],
        answers: real.iter().filter(|t| t.len() >= 10).count(),
        seconds: 0.0,
    };
    for k in 0..keys {
        let s = Scheme::Kgw(Kgw {
            key: base.derive(&format!("fpr-{k}")),
            gamma: 0.25,
            delta: 2.0,
            seeding: Seeding::LeftHash { h: 1 },
        });
        for t in real.iter().filter(|t| t.len() >= 10) {
            let r = detect(&s, t, 0);
            f.tests += 1;
            f.windows += r.tokens_scored as u64;
            for (b, th) in f.below.iter_mut().zip(THRESHOLDS) {
                *b += u64::from(r.p_value < th);
            }
            if k < WINDOWED_KEYS {
                let w = detect_windowed(&s, t, 0);
                f.windowed_tests += 1;
                for (b, th) in f.windowed_below.iter_mut().zip(THRESHOLDS) {
                    *b += u64::from(w.p_value < th);
                }
            }
        }
    }
    f.seconds = started.elapsed().as_secs_f64();
    f
}

pub(crate) fn run(
    o: &ExperimentOptions,
    format: Format,
    plots: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let tok = Tokenizer::cl100k()?;
    let started = std::time::Instant::now();
    // Real answers: all of them for the false-positive run.
    let real = answer_tokens(&o.corpus, &tok, usize::MAX)?;
    let base = Key::from_parts(0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321);
    let fp = false_positives(&real, base, o.keys);
    // Detection against length and edits, with the teacher.
    let teacher = Teacher::train(answer_tokens(&o.corpus, &tok, o.train_tokens)?);
    let c = distillguard_simulator::Corpus::load(&o.corpus).map_err(|e| anyhow::anyhow!("{e}"))?;
    let first_turns: Vec<Vec<u32>> = c
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
        .take(o.answers)
        .collect();
    let words = real_words(&tok, &real);
    let key = base.derive("tpr");
    let other_key = base.derive("second model");
    let list = schemes(key);
    // One thread per scheme; each has its own seeded randomness, so the
    // numbers do not depend on the schedule.
    let rows: Vec<SchemeRow> = std::thread::scope(|sc| {
        let handles: Vec<_> = list
            .iter()
            .map(|(name, s)| {
                let (teacher, tok, prompts, real, words) =
                    (&teacher, &tok, &first_turns, &real, &words);
                sc.spawn(move || {
                    let other = with_key(s, other_key);
                    measure_scheme(name, s, &other, teacher, tok, prompts, real, words)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a scheme's measurement panicked"))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    // Radioactivity.
    let prompts = user_prompts(&c, &tok, 48);
    let radio = wm_radio::run(&teacher, &real, &prompts, o.answers, base, &o.radio);
    let secs = started.elapsed().as_secs_f64();
    if let Some(dir) = plots {
        write_plots(dir, &fp, &rows, &radio)?;
    }
    let mut out = io::stdout().lock();
    match format {
        Format::Json => {
            let below = |b: &[u64], tests: u64| {
                THRESHOLDS
                    .iter()
                    .zip(b)
                    .map(|(t, b)| json!({"alpha": t, "tests_below": b, "rate": *b as f64 / tests.max(1) as f64}))
                    .collect::<Vec<_>>()
            };
            let v = json!({
                "false_positives": {
                    "tests": fp.tests, "scored_windows": fp.windows, "keys": o.keys,
                    "answers": fp.answers,
                    "below": below(&fp.below, fp.tests),
                    "windowed": {"keys": WINDOWED_KEYS.min(o.keys), "tests": fp.windowed_tests, "below": below(&fp.windowed_below, fp.windowed_tests)},
                    "seconds": fp.seconds,
                },
                "detection_at_fpr_1e-6": rows.iter().map(|r| json!({
                    "scheme": r.name, "mean_tokens": r.mean_tokens,
                    "by_length": LENGTHS.iter().zip(&r.by_len).map(|(n, t)| json!({"tokens": n, "tpr": t})).collect::<Vec<_>>(),
                    "edits": r.edits.iter().map(|(e, rate, len, t)| json!({"edit": e.name(), "rate": rate, "tokens": len, "tpr": t})).collect::<Vec<_>>(),
                    "crop_to_middle_half": r.crop,
                    "pasted_150_in_800_real": {"whole_text": r.pasted_whole, "windowed": r.pasted_windowed},
                })).collect::<Vec<_>>(),
                "teacher": {"training_tokens": teacher.trained_tokens, "contexts": teacher.contexts(), "prompts": first_turns.len()},
                "radioactivity": radio.to_json(),
                "seconds": secs,
            });
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "False positives: {} tests ({} real answers × {} keys), {} scored windows, {:.1}s",
                fp.tests, fp.answers, o.keys, fp.windows, fp.seconds
            )?;
            for ((t, b), wb) in THRESHOLDS.iter().zip(fp.below).zip(fp.windowed_below) {
                writeln!(
                    out,
                    "  p < {t:.0e}: {b} tests = {:.2e}; windowed {wb} of {} = {:.2e} (expected at most {t:.0e})",
                    b as f64 / fp.tests.max(1) as f64,
                    fp.windowed_tests,
                    wb as f64 / fp.windowed_tests.max(1) as f64
                )?;
            }
            writeln!(
                out,
                "\nDetection at p ≤ 1e-6 ({} watermarked teacher answers per scheme)",
                first_turns.len()
            )?;
            write!(out, "{:<38}", "scheme")?;
            for n in LENGTHS {
                write!(out, "{:>8}", format!("{n} tok"))?;
            }
            writeln!(out)?;
            for r in &rows {
                write!(out, "{:<38}", r.name)?;
                for t in &r.by_len {
                    write!(out, "{:>7.1}%", t * 100.0)?;
                }
                writeln!(out)?;
            }
            for &len in &EDIT_LENGTHS {
                writeln!(out, "\nEdits on the first {len} tokens (10 / 20 / 30%):")?;
                for r in &rows {
                    let parts: Vec<String> = Edit::ALL
                        .iter()
                        .map(|&e| {
                            let v: Vec<String> = RATES
                                .iter()
                                .map(|&x| format!("{:.1}", r.edit(e, x, len) * 100.0))
                                .collect();
                            format!("{} {}", e.name(), v.join("/"))
                        })
                        .collect();
                    writeln!(out, "  {}: {}", r.name, parts.join("; "))?;
                }
            }
            writeln!(
                out,
                "\nCropped to the middle half of 400 tokens; 150 marked tokens pasted into 800 real ones (whole text / windowed):"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "  {}: crop {:.1}%; pasted {:.1}% / {:.1}%",
                    r.name,
                    r.crop * 100.0,
                    r.pasted_whole * 100.0,
                    r.pasted_windowed * 100.0
                )?;
            }
            writeln!(out)?;
            radio.write_table(&mut out)?;
            writeln!(out, "\n{secs:.1}s in all")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_plots(
    dir: &std::path::Path,
    fp: &FalsePositives,
    rows: &[SchemeRow],
    radio: &RadioReport,
) -> Result<()> {
    use crate::svg::{Chart, Series, line_chart};
    std::fs::create_dir_all(dir)?;
    let rate_series = |name: String, below: &[u64], tests: u64| Series {
        name,
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
    let series = [
        rate_series(format!("KGW, {} tests", fp.tests), &fp.below, fp.tests),
        rate_series(
            format!("KGW windowed, {} tests", fp.windowed_tests),
            &fp.windowed_below,
            fp.windowed_tests,
        ),
    ];
    std::fs::write(dir.join("fpr.svg"), line_chart(&chart, &series))?;
    let tpr: Vec<Series> = rows
        .iter()
        .map(|r| Series {
            name: r.name.clone(),
            points: LENGTHS
                .iter()
                .zip(&r.by_len)
                .map(|(t, v)| (*t as f64, v * 100.0))
                .collect(),
        })
        .collect();
    let chart = Chart {
        title: "Detection at FPR 1e-6 against answer length",
        x_label: "tokens (log scale)",
        y_label: "answers detected (%)",
        x_log: true,
        y_log: false,
        hlines: vec![(99.0, "99%".into())],
        diagonal: false,
    };
    std::fs::write(dir.join("tpr.svg"), line_chart(&chart, &tpr))?;
    let at = |r: &SchemeRow, e: Edit, len: usize| -> Vec<(f64, f64)> {
        let unedited = LENGTHS
            .iter()
            .position(|&l| l == len)
            .map_or(f64::NAN, |i| r.by_len[i]);
        std::iter::once((0.0, unedited * 100.0))
            .chain(
                RATES
                    .iter()
                    .map(|&x| (x * 100.0, r.edit(e, x, len) * 100.0)),
            )
            .collect()
    };
    let rob: Vec<Series> = rows
        .iter()
        .map(|r| Series {
            name: r.name.clone(),
            points: at(r, Edit::Substitute, 300),
        })
        .collect();
    let chart = Chart {
        title: "Detection at FPR 1e-6 after random word substitution (300 tokens)",
        x_label: "words substituted (%)",
        y_label: "answers detected (%)",
        x_log: false,
        y_log: false,
        hlines: vec![(90.0, "90%".into())],
        diagonal: false,
    };
    std::fs::write(dir.join("robustness.svg"), line_chart(&chart, &rob))?;
    if let Some(r) = rows.first() {
        let edits: Vec<Series> = EDIT_LENGTHS
            .iter()
            .flat_map(|&len| {
                Edit::ALL.iter().map(move |&e| Series {
                    name: format!("{}, {len} tokens", e.name()),
                    points: at(r, e, len),
                })
            })
            .collect();
        let title = format!("{}: detection at FPR 1e-6 after edits", r.name);
        let chart = Chart {
            title: &title,
            x_label: "share edited (%)",
            y_label: "answers detected (%)",
            x_log: false,
            y_log: false,
            hlines: vec![(90.0, "90%".into())],
            diagonal: false,
        };
        std::fs::write(dir.join("edits.svg"), line_chart(&chart, &edits))?;
    }
    radio.write_plots(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words() -> Vec<String> {
        ["alpha", "beta", "gamma"]
            .iter()
            .map(|w| w.to_string())
            .collect()
    }

    #[test]
    fn word_edits_touch_about_their_share_of_the_words() {
        let text: Vec<String> = (0..2_000).map(|i| format!("w{i}")).collect();
        let text = text.join(" ");
        let mut rng = Rng::new(3);
        let sub = edit_words(&text, Edit::Substitute, 0.2, &words(), &mut rng);
        let changed = sub
            .split(' ')
            .zip(text.split(' '))
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(sub.split(' ').count(), 2_000);
        assert!((330..470).contains(&changed), "{changed}");
        let del = edit_words(&text, Edit::Delete, 0.2, &words(), &mut rng);
        let n = del.split(' ').count();
        assert!((1_530..1_670).contains(&n), "{n}");
        let ins = edit_words(&text, Edit::Insert, 0.2, &words(), &mut rng);
        let n = ins.split(' ').count();
        assert!((2_330..2_470).contains(&n), "{n}");
        // Nothing at rate 0.
        assert_eq!(
            edit_words(&text, Edit::Substitute, 0.0, &words(), &mut rng),
            text
        );
    }
}
