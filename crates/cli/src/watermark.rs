/*!
`distillguard watermark`: keys, watermarked generation with the reference
teacher model, detection on any text, and the experiments of
`docs/watermark.md`.
*/

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use distillguard_teacher::Teacher;
use distillguard_watermark::tokenizer::Tokenizer;
use distillguard_watermark::{
    Gumbel, Key, Kgw, Scheme, Score, Seeding, Tournament, WindowedScore, bonferroni, detect_many,
    detect_windowed,
};

use crate::Format;
use crate::wm_data::{Rng, answer_tokens, pick};

#[derive(Subcommand)]
pub(crate) enum WatermarkCommand {
    /// Create a key file (32 hex digits; keep it secret). Prints the
    /// key's fingerprint, never the key.
    Keygen {
        /// Where to write the key (readable by its owner only; never over an existing file).
        #[arg(long)]
        out: PathBuf,
        /// Derive the key from a seed instead of the system's randomness
        /// (reproducible experiments only).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Score texts: per file, tokens seen and scored, and the exact p-value.
    Detect {
        #[command(flatten)]
        params: Params,
        /// Text files (`-` for standard input); each file is one text.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also score every window of 32, 64, … tuples, for text marked only
        /// in part (an answer pasted into a longer document); the p-value is
        /// corrected for the search (half the level to the whole text, half
        /// split among the windows).
        #[arg(long)]
        windows: bool,
        /// Output: `table` for people, `json` for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Did a suspect model train on our watermarked outputs? Scores its
    /// answers to our prompts and writes an evidence report (JSON + Markdown)
    /// with the test, its assumptions, 16 control keys and the known removal
    /// attacks. With several `--cohort`s, every cohort's key is tested and
    /// the best fitting one is named (Bonferroni-corrected).
    Radioactivity {
        #[command(flatten)]
        params: Params,
        /// Prompts, one per line (or JSONL with "text").
        #[arg(long)]
        prompts: PathBuf,
        /// The suspect's answers (JSONL with "text", or one per line, in prompt order).
        #[arg(long)]
        suspect_outputs: Option<PathBuf>,
        /// An OpenAI-compatible endpoint to ask (http://host:port).
        #[arg(long)]
        suspect_url: Option<String>,
        /// The model name to ask the suspect endpoint for.
        #[arg(long, default_value = "suspect")]
        suspect_model: String,
        /// Tokens per answer at most.
        #[arg(long, default_value_t = 200)]
        max_tokens: usize,
        /// Our watermarked text the suspect is believed to have trained on
        /// (keeps only its windows: the filter of Sander et al.).
        #[arg(long)]
        filter: Option<PathBuf>,
        /// Tokens of context a window of the filter spans (default: the
        /// scheme's context). A suspect that conditions on more than the
        /// scheme's window learns our bias where that wider context occurs
        /// in our text; the experiment's primary test uses context + 1.
        #[arg(long)]
        filter_context: Option<usize>,
        /// Report path prefix (writes PREFIX.json and PREFIX.md).
        #[arg(long)]
        out: PathBuf,
    },
    /// The experiments of docs/watermark.md: the empirical false-positive
    /// rate on real answers, detection against length and edits, and
    /// radioactivity over many seeds with its controls.
    Experiment {
        /// Training and test text: auto (../shared, else embedded), embedded, or a path.
        #[arg(long, default_value = "auto")]
        corpus: String,
        /// Keys per real answer in the false-positive run (tests = answers × keys).
        #[arg(long, default_value_t = 24)]
        keys: usize,
        /// Watermarked answers per scheme in the detection run.
        #[arg(long, default_value_t = 200)]
        answers: usize,
        /// Tokens the teacher trains on.
        #[arg(long, default_value_t = 3_000_000)]
        train_tokens: usize,
        /// Radioactivity: seeds per contamination level (each its own key,
        /// watermarked text and student sampling).
        #[arg(long, default_value_t = 10)]
        radio_seeds: usize,
        /// Radioactivity: held-out prompts each student answers.
        #[arg(long, default_value_t = 2_000)]
        radio_prompts: usize,
        /// Radioactivity: tokens per student answer.
        #[arg(long, default_value_t = 200)]
        radio_answer_tokens: usize,
        /// Radioactivity: real answer tokens every student trains on.
        #[arg(long, default_value_t = 1_000_000)]
        radio_base_tokens: usize,
        /// Output: `table` for people, `json` for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Also write the plots (SVG) into this directory.
        #[arg(long)]
        plots: Option<PathBuf>,
    },
    /// Generate watermarked answers with the reference teacher model.
    Generate {
        #[command(flatten)]
        params: Params,
        /// Prompts, one per line.
        #[arg(long)]
        prompts: PathBuf,
        /// Training text for the teacher: auto (../shared, else embedded), embedded, or a path.
        #[arg(long, default_value = "auto")]
        corpus: String,
        /// Tokens of answers the teacher trains on.
        #[arg(long, default_value_t = 3_000_000)]
        train_tokens: usize,
        /// Tokens per answer at most.
        #[arg(long, default_value_t = 200)]
        max_tokens: usize,
        /// Seed of the sampling randomness.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the answers (JSONL: prompt, text).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Control keys of a radioactivity report.
const RADIOACTIVITY_CONTROLS: usize = 16;

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub(crate) enum SchemeName {
    Kgw,
    Tournament,
    Gumbel,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub(crate) enum SeedingName {
    Left,
    Minhash,
}

/// Scheme parameters (detection must use the generation's).
#[derive(Args, Clone)]
pub(crate) struct Params {
    /// Key file.
    #[arg(long)]
    key: PathBuf,
    /// Cohorts: derive one key per cohort and test them all (Bonferroni).
    #[arg(long)]
    cohort: Vec<String>,
    /// Watermark scheme: `kgw` (green lists), `tournament` or `gumbel`.
    #[arg(long, value_enum, default_value = "kgw")]
    scheme: SchemeName,
    /// KGW: green share of the vocabulary.
    #[arg(long, default_value_t = 0.25)]
    gamma: f64,
    /// KGW: logit bias of green tokens.
    #[arg(long, default_value_t = 2.0)]
    delta: f32,
    /// Context width h.
    #[arg(long, default_value_t = 1)]
    context: usize,
    /// How the context seeds the scheme: `left` (the previous h tokens) or `minhash` (the smallest hash among them).
    #[arg(long, value_enum, default_value = "left")]
    seeding: SeedingName,
    /// Min-hash seeding: include the candidate token (self-salting).
    #[arg(long)]
    self_salt: bool,
    /// Tournament: knockout rounds.
    #[arg(long, default_value_t = 8)]
    layers: u32,
}

impl Params {
    fn seeding(&self) -> Seeding {
        match self.seeding {
            SeedingName::Left => Seeding::LeftHash {
                h: self.context.max(1),
            },
            SeedingName::Minhash => Seeding::MinHash {
                h: self.context.max(1),
                self_salt: self.self_salt,
            },
        }
    }

    fn scheme(&self, key: Key) -> Scheme {
        let seeding = self.seeding();
        match self.scheme {
            SchemeName::Kgw => Scheme::Kgw(Kgw {
                key,
                gamma: self.gamma,
                delta: self.delta,
                seeding,
            }),
            SchemeName::Tournament => Scheme::Tournament(Tournament {
                key,
                layers: self.layers,
                seeding,
            }),
            SchemeName::Gumbel => Scheme::Gumbel(Gumbel { key, seeding }),
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.gamma > 0.0 && self.gamma < 1.0) {
            bail!("--gamma must lie strictly between 0 and 1");
        }
        if self.layers == 0 || self.layers > 16 {
            bail!("--layers must be 1 to 16");
        }
        Ok(())
    }

    /// The parameters, for evidence reports (never the key).
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "scheme": match self.scheme { SchemeName::Kgw => "kgw", SchemeName::Tournament => "tournament", SchemeName::Gumbel => "gumbel" },
            "gamma": self.gamma,
            "delta": self.delta,
            "context": self.context,
            "seeding": match self.seeding { SeedingName::Left => "left-hash", SeedingName::Minhash => "min-hash" },
            "self_salt": self.self_salt,
            "layers": self.layers,
            "cohorts": self.cohort,
        })
    }

    /// For commands that use one key: (the key file's key, the key to use:
    /// itself, or its one `--cohort`'s).
    fn single_key(&self, command: &str) -> Result<(Key, Key)> {
        self.validate()?;
        let base = read_key(&self.key)?;
        let key = match self.cohort.as_slice() {
            [] => base,
            [c] => base.derive(c),
            _ => bail!("{command} takes at most one --cohort"),
        };
        Ok((base, key))
    }

    /// The schemes to test: the key itself, or one per cohort.
    fn schemes(&self) -> Result<Vec<Scheme>> {
        self.validate()?;
        let key = read_key(&self.key)?;
        Ok(if self.cohort.is_empty() {
            vec![self.scheme(key)]
        } else {
            self.cohort
                .iter()
                .map(|c| self.scheme(key.derive(c)))
                .collect()
        })
    }
}

fn read_key(p: &Path) -> Result<Key> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading key file {}", p.display()))?;
    Key::parse(&text).with_context(|| format!("key file {}", p.display()))
}

pub(crate) fn run(cmd: WatermarkCommand) -> Result<ExitCode> {
    match cmd {
        WatermarkCommand::Keygen { out, seed } => keygen(&out, seed),
        WatermarkCommand::Detect {
            params,
            files,
            windows,
            format,
        } => detect_files(&params, &files, windows, format),
        WatermarkCommand::Radioactivity {
            params,
            prompts,
            suspect_outputs,
            suspect_url,
            suspect_model,
            max_tokens,
            filter,
            filter_context,
            out,
        } => {
            params.validate()?;
            let base = read_key(&params.key)?;
            let schemes = if params.cohort.is_empty() {
                vec![(None, params.scheme(base))]
            } else {
                params
                    .cohort
                    .iter()
                    .map(|c| (Some(c.clone()), params.scheme(base.derive(c))))
                    .collect()
            };
            // The first control key is the one earlier reports used.
            let controls = (0..RADIOACTIVITY_CONTROLS)
                .map(|j| {
                    let label = match j {
                        0 => "radioactivity control".to_string(),
                        j => format!("radioactivity control {j}"),
                    };
                    params.scheme(base.derive(&label))
                })
                .collect();
            crate::radioactivity::run(crate::radioactivity::Options {
                schemes,
                controls,
                prompts,
                suspect_outputs,
                suspect_url,
                suspect_model,
                max_tokens,
                filter,
                filter_context: filter_context.unwrap_or(params.context).max(1),
                out,
                params: params.describe(),
            })
        }
        WatermarkCommand::Experiment {
            corpus,
            keys,
            answers,
            train_tokens,
            radio_seeds,
            radio_prompts,
            radio_answer_tokens,
            radio_base_tokens,
            format,
            plots,
        } => crate::wm_experiment::run(
            &crate::wm_experiment::ExperimentOptions {
                corpus,
                keys,
                answers,
                train_tokens,
                radio: crate::wm_radio::RadioOptions {
                    seeds: radio_seeds,
                    prompts: radio_prompts,
                    answer_tokens: radio_answer_tokens,
                    base_tokens: radio_base_tokens,
                },
            },
            format,
            plots.as_deref(),
        ),
        WatermarkCommand::Generate {
            params,
            prompts,
            corpus,
            train_tokens,
            max_tokens,
            seed,
            out,
        } => generate(
            &params,
            &prompts,
            &corpus,
            train_tokens,
            max_tokens,
            seed,
            &out,
        ),
    }
}

fn keygen(out: &Path, seed: Option<u64>) -> Result<ExitCode> {
    let mut b = [0u8; 16];
    match seed {
        Some(s) => {
            let k = Key::from_parts(s, s.rotate_left(32) ^ 0x5eed);
            b[..8].copy_from_slice(&k.siphash(b"keygen/0").to_le_bytes());
            b[8..].copy_from_slice(&k.siphash(b"keygen/1").to_le_bytes());
        }
        None => {
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut b))
                .context("reading /dev/urandom")?;
        }
    }
    let key = Key::from_bytes(b);
    // Created new (never over a key) and readable by its owner only.
    let mut f = match distillguard_storage::owner_only()
        .write(true)
        .create_new(true)
        .open(out)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            bail!("{} exists; not overwriting a key", out.display())
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", out.display())),
    };
    f.write_all(key.to_file_text().as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    writeln!(
        io::stdout().lock(),
        "key {} written to {}",
        key.fingerprint(),
        out.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn detect_files(
    params: &Params,
    files: &[PathBuf],
    windows: bool,
    format: Format,
) -> Result<ExitCode> {
    let schemes = params.schemes()?;
    // With cohorts, each key is named by its cohort, and the best-fitting
    // cohort is named with the corrected p-value: a leak narrowed to the
    // accounts that saw that cohort's key.
    let names: Vec<Option<&str>> = match params.cohort.is_empty() {
        true => vec![None; schemes.len()],
        false => params.cohort.iter().map(|c| Some(c.as_str())).collect(),
    };
    let best_of = |scores: &[distillguard_watermark::detect::Score]| {
        scores
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.p_value.total_cmp(&b.1.p_value))
            .map(|(i, _)| i)
    };
    let tok = Tokenizer::cl100k()?;
    let mut rows = Vec::new();
    for f in files {
        let text = if f.as_os_str() == "-" {
            let mut s = String::new();
            io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
            s
        } else {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        };
        let tokens = tok.encode(&text);
        let (scores, corrected, found_in) = if windows {
            // Each key's p-value is its windowed one; the keys are then
            // corrected as before.
            let w: Vec<WindowedScore> = schemes
                .iter()
                .map(|s| detect_windowed(s, &tokens, 0))
                .collect();
            let scores: Vec<Score> = w
                .iter()
                .map(|x| Score {
                    p_value: x.p_value,
                    ..x.whole.clone()
                })
                .collect();
            let min = scores.iter().map(|s| s.p_value).fold(1.0f64, f64::min);
            let corrected = bonferroni(min, schemes.len());
            (scores, corrected, w.into_iter().map(Some).collect())
        } else {
            let (scores, corrected) = detect_many(&schemes, &tokens, 0);
            (scores, corrected, vec![None; schemes.len()])
        };
        rows.push((f.display().to_string(), scores, corrected, found_in));
    }
    let mut out = io::stdout().lock();
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(file, scores, corrected, found_in)| {
                    let best = best_of(scores);
                    serde_json::json!({
                        "file": file,
                        "p_value": corrected,
                        "correction": if scores.len() > 1 { format!("bonferroni over {} keys", scores.len()) } else { "none (one key)".to_string() },
                        "best_cohort": best.and_then(|i| names.get(i).copied().flatten()),
                        "keys": scores.iter().zip(&names).zip(found_in).map(|((s, cohort), w)| serde_json::json!({
                            "cohort": cohort,
                            "scheme": s.scheme,
                            "key_fingerprint": s.key_fingerprint,
                            "tokens_seen": s.tokens_seen,
                            "tokens_scored": s.tokens_scored,
                            "statistic": s.statistic,
                            "p_value": s.p_value,
                            "test": s.test,
                            "windowed": w.as_ref().map(|w| serde_json::json!({
                                "whole_text_p_value": w.whole.p_value,
                                "windows_tested": w.windows,
                                "best_window": w.best.map(|(first, last, tuples, p)| serde_json::json!({
                                    "first_token": first, "last_token": last, "tuples": tuples, "p_value_uncorrected": p,
                                })),
                                "correction": "min(1, 2·p_whole, 2·windows·p_best_window)",
                            })),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<40}{:>8}{:>8}{:>12}  key",
                "file", "seen", "scored", "p-value"
            )?;
            for (file, scores, corrected, _) in &rows {
                let best = best_of(scores).map(|i| {
                    let s = &scores[i];
                    let label = names[i].map_or_else(
                        || s.key_fingerprint.clone(),
                        |c| format!("cohort {c} ({})", s.key_fingerprint),
                    );
                    (s.tokens_seen, s.tokens_scored, label)
                });
                if let Some((seen, scored, fp)) = best {
                    writeln!(
                        out,
                        "{file:<40}{seen:>8}{scored:>8}{corrected:>12.3e}  {fp}"
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(
    params: &Params,
    prompts: &Path,
    corpus: &str,
    train_tokens: usize,
    max_tokens: usize,
    seed: u64,
    out: &Path,
) -> Result<ExitCode> {
    let (_, key) = params.single_key("generate")?;
    let scheme = params.scheme(key);
    let tok = Tokenizer::cl100k()?;
    let teacher = Teacher::train(answer_tokens(corpus, &tok, train_tokens)?);
    let text = std::fs::read_to_string(prompts)
        .with_context(|| format!("reading {}", prompts.display()))?;
    let mut rng = Rng::new(seed);
    let mut w = io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    let mut n = 0usize;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let prompt = tok.encode(line);
        let ids = teacher.generate(&prompt, max_tokens, None, |ctx, cand| {
            pick(Some(&scheme), ctx, cand, &mut rng)
        });
        let answer = tok.decode(&ids);
        serde_json::to_writer(&mut w, &serde_json::json!({"prompt": line, "text": answer}))?;
        writeln!(w)?;
        n += 1;
    }
    w.flush()?;
    let _ = writeln!(
        io::stderr(),
        "{n} answers from the teacher ({} training tokens, {} contexts), key {}",
        teacher.trained_tokens,
        teacher.contexts(),
        key.fingerprint()
    );
    Ok(ExitCode::SUCCESS)
}
