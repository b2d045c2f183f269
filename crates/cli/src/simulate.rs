/*!
`distillguard simulate` and `distillguard scenarios`: labelled worlds of
API traffic, from a built-in scenario, a TOML file, or the randomised
family (`random`).
*/

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use distillguard_simulator::random::{FAMILIES, RandomOpts, random_scenario};
use distillguard_simulator::scenario::BUILTIN;
use distillguard_simulator::{Corpus, Scenario};

use crate::{Format, progress};

/// How to draw a randomised world (`--scenario random`).
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct RandomArgs {
    /// Randomised worlds: size (1.0 ≈ 4,000 honest accounts and campaigns
    /// of their families' usual sizes).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Randomised worlds: a campaign family that must appear (repeatable).
    #[arg(long = "family", value_name = "FAMILY")]
    pub family: Vec<String>,
    /// Randomised worlds: a campaign family that must not appear (repeatable).
    #[arg(long = "without-family", value_name = "FAMILY")]
    pub without_family: Vec<String>,
}

impl RandomArgs {
    pub fn opts(&self) -> RandomOpts {
        RandomOpts {
            scale: self.scale,
            include: self.family.clone(),
            without: self.without_family.clone(),
            extra_campaigns: None,
        }
    }
}

/// A scenario by name: a built-in, `random` (drawn from the seed), or a file.
pub(crate) fn load(name: &str, seed: u64, random: &RandomArgs) -> Result<Scenario> {
    if name == "random" {
        return Ok(random_scenario(seed, &random.opts())?);
    }
    if !random.family.is_empty() || !random.without_family.is_empty() {
        bail!("--family and --without-family apply to --scenario random only");
    }
    Ok(Scenario::load(name)?)
}

#[derive(clap::Args)]
pub(crate) struct SimulateArgs {
    /// A built-in scenario (small, default, incident, benign-infra),
    /// `random` (a randomised world drawn from the seed), or a TOML file.
    #[arg(long, default_value = "small")]
    scenario: String,
    /// Same seed, same scenario, same corpus: same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Human prompts: `auto` (../shared ShareGPT file if found, else the
    /// embedded sample), `embedded`, or a path. Overrides the scenario's.
    #[arg(long)]
    corpus: Option<String>,
    #[command(flatten)]
    random: RandomArgs,
    /// Summary format on standard output (`json`: the summary as one
    /// JSON object).
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn run(a: SimulateArgs) -> Result<ExitCode> {
    let scenario = load(&a.scenario, a.seed, &a.random)?;
    let corpus_spec = a.corpus.unwrap_or_else(|| scenario.corpus.clone());
    let corpus =
        Corpus::load(&corpus_spec).with_context(|| format!("loading corpus {corpus_spec:?}"))?;
    for e in corpus.skipped.iter().take(5) {
        let _ = writeln!(io::stderr(), "warning: corpus line skipped: {e}");
    }
    if !a.quiet {
        let _ = writeln!(
            io::stderr(),
            "scenario {} (seed {}), corpus: {} ({} conversations)",
            scenario.name,
            a.seed,
            corpus.source,
            corpus.conversations.len()
        );
    }
    let started = std::time::Instant::now();
    let bar = progress::Bar::new(!a.quiet);
    let summary = distillguard_simulator::simulate(&scenario, a.seed, &corpus, &a.out, &bar)?;
    drop(bar);
    let secs = started.elapsed().as_secs_f64();
    let mut stdout = io::stdout().lock();
    match a.format {
        Format::Json => {
            serde_json::to_writer(&mut stdout, &summary)?;
            writeln!(stdout)?;
        }
        Format::Table => {
            writeln!(
                stdout,
                "wrote {} events ({} accounts: {} benign, {} attack) to {} in {secs:.1}s",
                summary.events,
                summary.accounts,
                summary.benign_accounts,
                summary.attack_accounts,
                a.out.display()
            )?;
            writeln!(
                stdout,
                "span {} … {}; {:.0} MB of JSON, {:.0} MB gzipped",
                summary.start,
                summary.end,
                summary.bytes_uncompressed as f64 / 1e6,
                summary.bytes_written as f64 / 1e6
            )?;
            writeln!(
                stdout,
                "{:<24}{:>10}{:>14}",
                "campaign", "accounts", "distill reqs"
            )?;
            for (name, c) in &summary.campaigns {
                writeln!(stdout, "{name:<24}{:>10}{:>14}", c.accounts, c.events)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub(crate) struct ScenariosArgs {
    /// A scenario to print as TOML (a built-in, or `random`); none: list them.
    name: Option<String>,
    /// `random`: the seed the world is drawn from.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    random: RandomArgs,
    /// Output: `table` for people, `json` for tools.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub(crate) fn scenarios(a: ScenariosArgs) -> Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    match a.name.as_deref() {
        Some("random") => {
            let s = load("random", a.seed, &a.random)?;
            write!(stdout, "{}", toml::to_string(&s)?)?;
        }
        Some(n) => match BUILTIN.iter().find(|(b, _)| *b == n) {
            Some((_, text)) => write!(stdout, "{text}")?,
            None => bail!(
                "no built-in scenario {n:?}; built-ins: {}, random",
                BUILTIN.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
            ),
        },
        None => {
            let mut rows = BTreeMap::new();
            for (n, _) in BUILTIN {
                let s = Scenario::load(n)?;
                rows.insert(
                    BUILTIN.iter().position(|b| b.0 == *n).unwrap_or(0),
                    (s.name, s.description),
                );
            }
            let random = format!(
                "a randomised world per seed (--seed N, --scale X, --family F, --without-family F); families: {}",
                FAMILIES.join(", ")
            );
            if a.format == Format::Table {
                for (n, d) in rows.values() {
                    writeln!(stdout, "{n:<14}{d}")?;
                }
                writeln!(stdout, "{:<14}{random}", "random")?;
            } else {
                let mut list: Vec<serde_json::Value> = rows
                    .values()
                    .map(|(n, d)| serde_json::json!({"name": n, "description": d}))
                    .collect();
                list.push(serde_json::json!({"name": "random", "description": random, "families": FAMILIES}));
                serde_json::to_writer(&mut stdout, &list)?;
                writeln!(stdout)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
