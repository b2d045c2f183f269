/*!
`distillguard fit-elicitation`: trains the learned elicitation classifier
and measures it on what it was not trained on.

Positives are requests for reasoning generated in many styles and
languages (`distillguard_simulator::content::wording`), attached to real
questions or generated tasks, or written as system prompts. Negatives are
real human prompts (ShareGPT; the ones the phrase lists already call
elicitation are left out), the same prompts with other instructions,
generated tasks, and ordinary system prompts. Conversations are split
70/10/20 into training, validation (the threshold) and test.

Reported: the false-positive rate on the test prompts; the true-positive
rate per language and kind on fresh wordings; and, each from a model
retrained without them, the rate on a held-out style, on held-out
languages, and on the held bank of phrasings no model ever trains on.
*/

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use distillguard_detect::signals::request::Text;
use distillguard_detect::signals::request::elicitation;
use distillguard_detect::signals::request::learned::{self, Model, TrainOpts};
use distillguard_simulator::Corpus;
use distillguard_simulator::content::wording::{self, Bank, Example, Style};
use distillguard_simulator::rng::Rng;
use serde::Serialize;

use crate::Format;

/// Languages held out together in the language experiment.
const HELD_LANGS: &[&str] = &["it", "nl", "pl", "tr", "vi", "id", "ar", "hi", "uk", "sv"];

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Where to write the model (the embedded one is
    /// crates/detect/src/signals/request/elicitation.model).
    #[arg(long)]
    out: PathBuf,
    /// Real prompts for the negatives: auto (../shared ShareGPT if found,
    /// else the embedded sample), embedded, or a path.
    #[arg(long, default_value = "auto")]
    corpus: String,
    /// Seed of the generated examples and of the training order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// False-positive budget on real prompts that sets the threshold.
    #[arg(long, default_value_t = 0.005)]
    fpr: f64,
    /// Skip the held-out experiments (they retrain the model nine times).
    #[arg(long)]
    no_held_out: bool,
    /// Also write the evaluation as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Output: `table` for people, `json` for tools.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

struct Split<'a> {
    train: Vec<&'a str>,
    val: Vec<&'a str>,
    test: Vec<&'a str>,
    /// Real prompts the phrase lists call elicitation (left out).
    phrase_hits: usize,
    total: usize,
}

fn split(corpus: &Corpus) -> Split<'_> {
    let mut s = Split {
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
        phrase_hits: 0,
        total: 0,
    };
    for (i, c) in corpus.conversations.iter().enumerate() {
        let bucket = distillguard_sketches::mix64(i as u64 ^ 0xE11C) % 10;
        for t in c.turns.iter().filter(|t| t.user) {
            let text: &str = &t.text;
            if text.trim().is_empty() {
                continue;
            }
            s.total += 1;
            if elicitation::detect(&Text::new(text), None).is_some() {
                s.phrase_hits += 1;
                continue;
            }
            match bucket {
                0..=6 => s.train.push(text),
                7 => s.val.push(text),
                _ => s.test.push(text),
            }
        }
    }
    s
}

fn featurise(ex: &[Example]) -> Vec<(Vec<u32>, bool, f32)> {
    ex.iter()
        .map(|e| {
            let mut f = Vec::new();
            learned::features(&e.text, &mut f);
            (f, e.label, 1.0)
        })
        .collect()
}

/// Trains on `pairs` and sets the threshold on validation negatives.
fn train_on(pairs: &[(&'static str, Style)], split: &Split, seed: u64, fpr: f64) -> Model {
    let rng = &mut Rng::derive(&[seed, 0x0074_7261_696e]);
    let n_neg = split.train.len().max(20_000) * 3 / 2;
    let mut ex = wording::positives(rng, &split.train, pairs, Bank::Train, n_neg * 2 / 3);
    ex.extend(wording::negatives(rng, &split.train, n_neg));
    let data = featurise(&ex);
    let mut m = learned::train(
        &data,
        TrainOpts {
            seed,
            ..TrainOpts::default()
        },
    );
    // Threshold: the (1 − fpr) quantile of the validation prompts.
    let mut p: Vec<f32> = split.val.iter().map(|t| m.probability(t)).collect();
    p.sort_by(|a, b| b.total_cmp(a));
    let k = ((p.len() as f64) * fpr).floor() as usize;
    m.threshold = p.get(k).copied().unwrap_or(0.5) + 1e-4;
    m
}

#[derive(Serialize, Default)]
struct Rate {
    hits: u64,
    n: u64,
    rate: f64,
    /// Mean probability (what an account-level average sees).
    mean_probability: f64,
}

fn rate<'a>(m: &Model, ex: impl Iterator<Item = &'a Example>) -> Rate {
    let mut r = Rate::default();
    let mut sum = 0.0;
    for e in ex {
        r.n += 1;
        let p = m.probability(&e.text);
        sum += p as f64;
        r.hits += (p >= m.threshold) as u64;
    }
    r.rate = if r.n == 0 {
        0.0
    } else {
        r.hits as f64 / r.n as f64
    };
    r.mean_probability = if r.n == 0 { 0.0 } else { sum / r.n as f64 };
    r
}

#[derive(Serialize)]
struct Evaluation {
    corpus: String,
    real_prompts: usize,
    real_prompts_matching_phrase_lists: usize,
    threshold: f32,
    test_fpr_real_prompts: Rate,
    test_fpr_by_kind: BTreeMap<String, Rate>,
    test_tpr_by_language: BTreeMap<String, Rate>,
    test_tpr_by_kind: BTreeMap<String, Rate>,
    /// Each style held out of training, measured on it.
    held_out_style_tpr: BTreeMap<String, Rate>,
    held_out_style_fpr: BTreeMap<String, Rate>,
    /// Languages held out of training together, measured on each.
    held_out_language_tpr: BTreeMap<String, Rate>,
    held_out_language_fpr: Option<Rate>,
    /// Phrasings no model trains on (the shipped model).
    held_bank_tpr: Rate,
    held_bank_tpr_by_language: BTreeMap<String, Rate>,
}

pub(crate) fn run(a: Args) -> Result<ExitCode> {
    let corpus =
        Corpus::load(&a.corpus).with_context(|| format!("loading corpus {:?}", a.corpus))?;
    let sp = split(&corpus);
    let all_pairs = wording::train_pairs();
    let _ = writeln!(
        io::stderr(),
        "corpus {}: {} real prompts ({} match the phrase lists and are left out); training…",
        corpus.source,
        sp.total,
        sp.phrase_hits
    );
    let model = train_on(&all_pairs, &sp, a.seed, a.fpr);
    std::fs::write(&a.out, model.to_bytes())
        .with_context(|| format!("writing {}", a.out.display()))?;

    // Test: fresh wordings (another seed), the test prompts.
    let tr = &mut Rng::derive(&[a.seed, 0x7465_7374]);
    let pos = wording::positives(tr, &sp.test, &all_pairs, Bank::Train, 20_000);
    let neg = wording::negatives(tr, &sp.test, sp.test.len().max(2_000));
    let mut by_lang: BTreeMap<String, Vec<&Example>> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, Vec<&Example>> = BTreeMap::new();
    for e in &pos {
        by_lang.entry(e.lang.to_string()).or_default().push(e);
        by_kind.entry(e.kind.to_string()).or_default().push(e);
    }
    let mut neg_kind: BTreeMap<String, Vec<&Example>> = BTreeMap::new();
    for e in &neg {
        neg_kind.entry(e.kind.to_string()).or_default().push(e);
    }
    let real: Vec<Example> = sp
        .test
        .iter()
        .map(|t| Example {
            text: t.to_string(),
            label: false,
            lang: "en",
            style: None,
            kind: "question",
        })
        .collect();
    let hr = &mut Rng::derive(&[a.seed, 0x6865_6c64]);
    let held = wording::held_examples(hr, &sp.test);
    let mut held_lang: BTreeMap<String, Vec<&Example>> = BTreeMap::new();
    for e in &held {
        held_lang.entry(e.lang.to_string()).or_default().push(e);
    }
    let mut ev = Evaluation {
        corpus: corpus.source.clone(),
        real_prompts: sp.total,
        real_prompts_matching_phrase_lists: sp.phrase_hits,
        threshold: model.threshold,
        test_fpr_real_prompts: rate(&model, real.iter()),
        test_fpr_by_kind: neg_kind
            .iter()
            .map(|(k, v)| (k.clone(), rate(&model, v.iter().copied())))
            .collect(),
        test_tpr_by_language: by_lang
            .iter()
            .map(|(k, v)| (k.clone(), rate(&model, v.iter().copied())))
            .collect(),
        test_tpr_by_kind: by_kind
            .iter()
            .map(|(k, v)| (k.clone(), rate(&model, v.iter().copied())))
            .collect(),
        held_out_style_tpr: BTreeMap::new(),
        held_out_style_fpr: BTreeMap::new(),
        held_out_language_tpr: BTreeMap::new(),
        held_out_language_fpr: None,
        held_bank_tpr: rate(&model, held.iter()),
        held_bank_tpr_by_language: held_lang
            .iter()
            .map(|(k, v)| (k.clone(), rate(&model, v.iter().copied())))
            .collect(),
    };
    if !a.no_held_out {
        for s in Style::ALL {
            let _ = writeln!(io::stderr(), "held-out style {}…", s.name());
            let pairs: Vec<_> = all_pairs.iter().copied().filter(|p| p.1 != s).collect();
            let m = train_on(&pairs, &sp, a.seed, a.fpr);
            let only: Vec<_> = all_pairs.iter().copied().filter(|p| p.1 == s).collect();
            let r = &mut Rng::derive(&[a.seed, 0x7374_796c, s as u64]);
            let p = wording::positives(r, &sp.test, &only, Bank::Train, 3_000);
            ev.held_out_style_tpr
                .insert(s.name().into(), rate(&m, p.iter()));
            ev.held_out_style_fpr
                .insert(s.name().into(), rate(&m, real.iter()));
        }
        let _ = writeln!(io::stderr(), "held-out languages…");
        let pairs: Vec<_> = all_pairs
            .iter()
            .copied()
            .filter(|p| !HELD_LANGS.contains(&p.0))
            .collect();
        let m = train_on(&pairs, &sp, a.seed, a.fpr);
        for lang in HELD_LANGS {
            let only: Vec<_> = all_pairs.iter().copied().filter(|p| p.0 == *lang).collect();
            let r = &mut Rng::derive(&[
                a.seed,
                0x6c61_6e67,
                lang.len() as u64,
                lang.as_bytes()[0] as u64,
            ]);
            let p = wording::positives(r, &sp.test, &only, Bank::Train, 1_000);
            ev.held_out_language_tpr
                .insert(lang.to_string(), rate(&m, p.iter()));
        }
        ev.held_out_language_fpr = Some(rate(&m, real.iter()));
    }
    if let Some(p) = &a.report {
        std::fs::write(p, serde_json::to_string_pretty(&ev)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let mut o = io::stdout().lock();
    if a.format != Format::Table {
        serde_json::to_writer(&mut o, &ev)?;
        writeln!(o)?;
        return Ok(ExitCode::SUCCESS);
    }
    let pct = |r: &Rate| {
        format!(
            "{:>6.1}% ({}/{}), mean p {:.3}",
            r.rate * 100.0,
            r.hits,
            r.n,
            r.mean_probability
        )
    };
    writeln!(
        o,
        "wrote {} (threshold {:.3})",
        a.out.display(),
        model.threshold
    )?;
    writeln!(
        o,
        "false positives on held-out real prompts: {}",
        pct(&ev.test_fpr_real_prompts)
    )?;
    for (k, r) in &ev.test_fpr_by_kind {
        writeln!(o, "  negatives, {k:<14}{}", pct(r))?;
    }
    writeln!(o, "fresh wordings, by kind:")?;
    for (k, r) in &ev.test_tpr_by_kind {
        writeln!(o, "  {k:<22}{}", pct(r))?;
    }
    writeln!(o, "fresh wordings, by language:")?;
    for (k, r) in &ev.test_tpr_by_language {
        writeln!(o, "  {k:<22}{}", pct(r))?;
    }
    if !a.no_held_out {
        writeln!(
            o,
            "each style held out of training (TPR on it; FPR on real prompts):"
        )?;
        for (k, r) in &ev.held_out_style_tpr {
            let f = &ev.held_out_style_fpr[k];
            writeln!(o, "  {k:<22}{}   FPR {:.2}%", pct(r), f.rate * 100.0)?;
        }
        writeln!(o, "languages held out of training together:")?;
        for (k, r) in &ev.held_out_language_tpr {
            writeln!(o, "  {k:<22}{}", pct(r))?;
        }
        if let Some(f) = &ev.held_out_language_fpr {
            writeln!(o, "  (FPR on real prompts {:.2}%)", f.rate * 100.0)?;
        }
    }
    writeln!(
        o,
        "held bank (phrasings never trained on): {}",
        pct(&ev.held_bank_tpr)
    )?;
    for (k, r) in &ev.held_bank_tpr_by_language {
        writeln!(o, "  {k:<22}{}", pct(r))?;
    }
    Ok(ExitCode::SUCCESS)
}
