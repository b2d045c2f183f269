/*!
`distillguard fit` and `distillguard lofo`: the score's weights and
thresholds from many labelled worlds, and how they hold on campaign
families they were never fitted on.

`fit` takes randomised worlds (`--random N`, generated in memory from
`--seed`), labelled directories (`distillguard simulate` output, or any log
with a `truth.jsonl`), or both. `--without-family F` leaves every account
of family F out of the fit. `lofo` runs the leave-one-family-out table:
for each family, fit on the training worlds without it, then judge on test
worlds that contain it.
*/

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use distillguard_core::{RecordReader, TruthRecord};
use distillguard_detect::engine::{FEATURES, Weights};
use distillguard_pipeline::training::{self, CampaignJudged, Judged, LabelledWorld, Leave};
use distillguard_pipeline::{PerRequest, Record};
use distillguard_simulator::Corpus;
use distillguard_simulator::random::{FAMILIES, RandomOpts, random_scenario};

use crate::{Format, analyze, beside};

/// Seed of the `i`-th training world of a fit seeded `seed`.
fn train_seed(seed: u64, i: u32) -> u64 {
    seed * 1000 + u64::from(i)
}

/// Seed of the `j`-th test world of family number `f`.
fn test_seed(seed: u64, f: usize, j: u32) -> u64 {
    seed * 1000 + 500 + f as u64 * 20 + u64::from(j)
}

/// A randomised world, rendered and parsed in memory (the same lines
/// `simulate` would write, through the same normaliser `analyze` reads).
pub(crate) fn random_world(seed: u64, opts: &RandomOpts, corpus: &Corpus) -> Result<LabelledWorld> {
    let scenario = random_scenario(seed, opts)?;
    let world = distillguard_simulator::build(&scenario, seed, corpus);
    let mut pres: Vec<Record> = Vec::with_capacity(world.summary.events as usize);
    let mut bad = 0u64;
    let intel = distillguard_stix::Intel::default();
    let per = PerRequest {
        intel: &intel,
        link_keys: true,
    };
    world.map_chunks(
        |chunk: &[u8]| -> Result<(Vec<Record>, u64), std::convert::Infallible> {
            let mut v = Vec::new();
            let mut bad = 0;
            for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                match std::str::from_utf8(line)
                    .ok()
                    .and_then(|l| distillguard_core::parse_event_line(l).ok())
                {
                    Some(e) => v.push(distillguard_pipeline::record(&e, &per)),
                    None => bad += 1,
                }
            }
            Ok((v, bad))
        },
        |_, (v, b)| {
            pres.extend(v);
            bad += b;
            Ok(())
        },
    )?;
    if bad > 0 {
        bail!(
            "world {}: {bad} rendered lines did not parse",
            scenario.name
        );
    }
    let truth = world.truth();
    let bad = bad_keys(&truth);
    let accounts = world
        .account_records()
        .into_iter()
        .map(distillguard_core::AccountRecord::into_parts)
        .collect();
    Ok(LabelledWorld::new(
        scenario.name.clone(),
        pres,
        truth.into_iter().map(truth_row),
        accounts,
        world.models(),
    )
    .with_bad_keys(bad))
}

/// The harvesting keys a truth names.
fn bad_keys(truth: &[TruthRecord]) -> Vec<String> {
    truth
        .iter()
        .filter_map(|t| t.bad_keys.as_ref())
        .flatten()
        .cloned()
        .collect()
}

type TruthRow = (String, bool, Option<String>, Option<String>, Option<String>);

fn truth_row(t: TruthRecord) -> TruthRow {
    (
        t.account_id,
        t.label == distillguard_core::Label::Attack,
        t.campaign,
        t.family,
        t.kind,
    )
}

/// A labelled directory: `events.jsonl.gz` (or `events.jsonl`) and
/// `truth.jsonl`, with `accounts.jsonl` and `models.jsonl` when present.
pub(crate) fn dir_world(dir: &Path) -> Result<LabelledWorld> {
    let events = ["events.jsonl.gz", "events.jsonl"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .with_context(|| format!("{}: no events.jsonl(.gz)", dir.display()))?;
    let (truth, _) = RecordReader::<TruthRecord>::open(&dir.join("truth.jsonl"))?.read_all(true)?;
    let (known, _) = distillguard_pipeline::Known::load(
        beside(&events, "accounts.jsonl").as_deref(),
        beside(&events, "models.jsonl").as_deref(),
        true,
    )?;
    let distillguard_pipeline::Known { accounts, models } = known;
    let bar = crate::progress::Bar::new(false);
    let (recs, _) = analyze::read_records(
        &[events],
        analyze::Parse::One(distillguard_core::parse_event_line),
        true,
        &bar,
        &analyze::PerRequest {
            intel: &distillguard_stix::Intel::default(),
            link_keys: true,
        },
    )?;
    let bad = bad_keys(&truth);
    Ok(LabelledWorld::new(
        dir.display().to_string(),
        recs,
        truth.into_iter().map(truth_row),
        accounts,
        models,
    )
    .with_bad_keys(bad))
}

/// Glasswally's labelled log, its times spread over `hours`, no account
/// records (the log has none).
pub(crate) fn glasswally_world(path: &Path, hours: f64) -> Result<LabelledWorld> {
    use distillguard_core::import::glasswally::{Record, spread, truth_of};
    let (records, _) = RecordReader::<Record>::open(path)?.read_all(false)?;
    let times = spread(&records, hours);
    let mut pres = Vec::with_capacity(records.len());
    let intel = distillguard_stix::Intel::default();
    let per = PerRequest {
        intel: &intel,
        link_keys: true,
    };
    for (n, (r, t)) in records.iter().zip(times).enumerate() {
        let Some(t) = t else { continue };
        if let Ok(e) = r
            .to_event_line_at(n as u64, t)
            .and_then(|l| distillguard_core::parse_event_line(&l))
        {
            pres.push(distillguard_pipeline::record(&e, &per));
        }
    }
    let truth = truth_of(records.iter()).into_iter().map(truth_row);
    Ok(LabelledWorld::new(
        format!("glasswally (spread over {hours} h)"),
        pres,
        truth,
        HashMap::new(),
        Vec::new(),
    ))
}

#[derive(clap::Args)]
pub(crate) struct FitArgs {
    /// Labelled directories (events, truth.jsonl; accounts.jsonl and
    /// models.jsonl when present), besides or instead of `--random`.
    dirs: Vec<PathBuf>,
    /// Randomised worlds to generate (in memory) and fit on.
    #[arg(long, default_value_t = 0)]
    random: u32,
    /// Seed of the randomised worlds (world i has seed 1000·seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Size of each randomised world (1.0 ≈ 4,000 honest accounts).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Leave every account of this campaign family out of the fit (repeatable).
    #[arg(long = "without-family", value_name = "FAMILY")]
    without_family: Vec<String>,
    /// False-positive budget per honest account at the throttle threshold
    /// (block at a tenth of it, monitor at a hundred times it).
    #[arg(long, default_value_t = 1e-4)]
    fp_budget: f64,
    /// Human prompts of the randomised worlds: auto, embedded, or a path.
    #[arg(long, default_value = "auto")]
    corpus: String,
    /// Where to write the weights (JSON; `analyze --weights` reads it).
    #[arg(long)]
    out: PathBuf,
    /// Also list the honest training accounts that scored highest, with
    /// what drove them (they set the thresholds).
    #[arg(long, default_value_t = 0)]
    explain: usize,
    /// Output: `table` for people, `json` for tools.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// No progress or summary on standard error.
    #[arg(long, short)]
    quiet: bool,
}

fn check_budget(b: f64) -> Result<()> {
    if !(b > 0.0 && b < 0.1) {
        bail!("--fp-budget must be in (0, 0.1), got {b}");
    }
    Ok(())
}

fn say(quiet: bool, msg: std::fmt::Arguments) {
    if !quiet {
        let _ = writeln!(io::stderr(), "{msg}");
    }
}

pub(crate) fn fit(a: FitArgs) -> Result<ExitCode> {
    check_budget(a.fp_budget)?;
    if a.random == 0 && a.dirs.is_empty() {
        bail!("nothing to fit on: give labelled directories, or --random N");
    }
    if a.without_family.len() > 1 {
        bail!("--without-family: one family at a time");
    }
    for f in &a.without_family {
        if a.random > 0 && !FAMILIES.contains(&f.as_str()) {
            bail!("unknown family {f:?} (families: {})", FAMILIES.join(", "));
        }
    }
    let mut worlds = Vec::new();
    for d in &a.dirs {
        say(a.quiet, format_args!("reading {}", d.display()));
        worlds.push(dir_world(d)?);
    }
    if a.random > 0 {
        let corpus =
            Corpus::load(&a.corpus).with_context(|| format!("loading corpus {:?}", a.corpus))?;
        let opts = RandomOpts {
            scale: a.scale,
            ..RandomOpts::default()
        };
        for i in 0..a.random {
            let seed = train_seed(a.seed, i);
            say(
                a.quiet,
                format_args!("world {}/{} (random, seed {seed})", i + 1, a.random),
            );
            worlds.push(random_world(seed, &opts, &corpus)?);
        }
    }
    let leave = Leave(a.without_family.first().map(String::as_str));
    let provenance = format!(
        "distillguard fit{}{} --fp-budget {}{}",
        if a.random > 0 {
            format!(
                " --random {} --seed {} --scale {}",
                a.random, a.seed, a.scale
            )
        } else {
            String::new()
        },
        a.dirs
            .iter()
            .map(|d| format!(" {}", d.display()))
            .collect::<String>(),
        a.fp_budget,
        leave
            .0
            .map_or(String::new(), |f| format!(" --without-family {f}"))
    );
    say(a.quiet, format_args!("fitting on {} worlds…", worlds.len()));
    let (weights, summary) =
        training::fit_worlds(&worlds, leave, a.fp_budget, &provenance, Default::default());
    let mut text = serde_json::to_string_pretty(&weights)?;
    text.push('\n');
    std::fs::write(&a.out, text).with_context(|| format!("writing {}", a.out.display()))?;
    let mut o = io::stdout().lock();
    if a.format != Format::Table {
        serde_json::to_writer(
            &mut o,
            &serde_json::json!({"weights": weights, "summary": summary}),
        )?;
        writeln!(o)?;
        return Ok(ExitCode::SUCCESS);
    }
    let t = weights.thresholds;
    writeln!(
        o,
        "fitted {} monotone trees ({} nodes) on {} samples ({} campaigns, {} honest accounts)",
        weights.model.trees.len(),
        weights.model.nodes(),
        summary.samples,
        summary.campaigns,
        summary.honest_accounts
    )?;
    writeln!(
        o,
        "thresholds at a false-positive budget of {} per honest account: monitor {:.6} throttle {:.6} block {:.6}",
        a.fp_budget, t.monitor, t.throttle, t.block
    )?;
    if let Some(c) = &weights.calibration {
        writeln!(
            o,
            "  honest tail: {} of {} accounts, shape {:.3}, scale {:.3}; {} honest training accounts at or above throttle",
            c.tail.tail, c.tail.honest, c.tail.shape, c.tail.scale, c.honest_flagged
        )?;
    }
    writeln!(o, "wrote {}", a.out.display())?;
    if a.explain > 0 {
        explain(&mut o, &worlds, &weights, a.explain)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The `n` highest-scoring honest accounts of the worlds, with the terms
/// that contributed most.
fn explain(o: &mut dyn Write, worlds: &[LabelledWorld], w: &Weights, n: usize) -> Result<()> {
    let mut all: Vec<training::AccountDetail> = worlds
        .iter()
        .flat_map(|x| training::details(x, w, w.thresholds, Leave(None)))
        .filter(|d| !d.attack)
        .collect();
    all.sort_by(|a, b| b.max_risk.total_cmp(&a.max_risk));
    writeln!(o, "highest-scoring honest training accounts:")?;
    for d in all.iter().take(n) {
        let x: Vec<f64> = FEATURES
            .iter()
            .map(|f| d.features.get(*f).copied().unwrap_or(0.0))
            .collect();
        let mut contrib = vec![0.0; x.len()];
        w.model.contributions(&x, &mut contrib);
        let mut c: Vec<(String, f64)> = FEATURES
            .iter()
            .zip(contrib)
            .map(|(k, v)| (k.to_string(), v))
            .filter(|(_, v)| *v > 0.05)
            .collect();
        c.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = c
            .iter()
            .take(6)
            .map(|(k, v)| format!("{k} {v:+.2}"))
            .collect();
        writeln!(
            o,
            "  {:<24}{:>7} req  risk {:.4}  {}",
            d.kind,
            d.requests,
            d.max_risk,
            top.join(", ")
        )?;
    }
    Ok(())
}

#[derive(clap::Args)]
pub(crate) struct LofoArgs {
    /// Randomised training worlds per seed.
    #[arg(long, default_value_t = 12)]
    train_worlds: u32,
    /// Test worlds per family (each contains the family) per seed.
    #[arg(long, default_value_t = 3)]
    test_worlds: u32,
    /// Seeds (each a full repetition; the table gives the spread).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    seeds: Vec<u64>,
    /// Size of each randomised world (1.0 = full size).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Honest accounts' false-positive budget that sets the thresholds.
    #[arg(long, default_value_t = 1e-4)]
    fp_budget: f64,
    /// Families to leave out (default: every family).
    #[arg(long = "family", value_name = "FAMILY")]
    family: Vec<String>,
    /// Glasswally's labelled log (judged with the all-family fit, times
    /// spread over 24 h); default: ../shared/data/external/… when present.
    #[arg(long)]
    glasswally: Option<PathBuf>,
    /// Prompt corpus of the worlds: `auto` (../shared ShareGPT when present), `embedded`, or a file.
    #[arg(long, default_value = "auto")]
    corpus: String,
    /// Write the full results (JSON) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write every test account's features and risk (JSON Lines) into
    /// this directory, one file per row and seed (for reading misses).
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Output: `table` for people, `json` for tools.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// No progress or summary on standard error.
    #[arg(long, short)]
    quiet: bool,
}

/// One row of the table: a family (or "all", or an outside log), one seed.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    row: String,
    seed: u64,
    campaigns: u64,
    accounts: u64,
    flagged: u64,
    recall: f64,
    /// Recall of the account score alone (no campaigns).
    recall_alone: f64,
    /// Attack accounts speaking mostly the Responses API, and their recall.
    responses_accounts: u64,
    responses_recall: f64,
    /// Attack accounts sending mostly in batches, and their recall; honest
    /// ones, and how many were flagged.
    batch_accounts: u64,
    batch_recall: f64,
    honest_batch: u64,
    honest_batch_flagged: u64,
    honest: u64,
    honest_flagged: u64,
    honest_fpr: f64,
    /// Honest accounts placed in a campaign.
    honest_in_campaigns: u64,
    /// Share of each campaign's requests served before its first flag.
    served_median: f64,
    served_max: f64,
    campaigns_under_1pct: u64,
    /// The strongest pooled evidence of a linked group that is mostly
    /// honest (how close honest groups come to `confirm_evidence`), and
    /// that group's size.
    honest_group_evidence: f64,
    honest_group_accounts: u64,
    /// Harvesting keys of the family's campaigns whose accounts also carry
    /// other keys (resellers), and of those flagged by their own verdict;
    /// those accounts' other keys (honest customers), and of those flagged.
    bad_keys: u64,
    bad_keys_flagged: u64,
    honest_keys: u64,
    honest_keys_flagged: u64,
    /// Per campaign of two or more accounts, the share of its accounts in
    /// the reported campaign holding most of them: the median and the
    /// lowest; the lowest purity (attack share) of those reported campaigns.
    completeness_median: f64,
    completeness_min: f64,
    purity_min: f64,
    thresholds: distillguard_detect::engine::Thresholds,
    detail: Vec<CampaignJudged>,
    groups: Vec<distillguard_pipeline::training::GroupJudged>,
}

fn row(
    name: &str,
    seed: u64,
    judged: &[Judged],
    alone: &[Judged],
    family: Option<&str>,
    w: &Weights,
) -> Row {
    let alone_camps: Vec<&CampaignJudged> = alone
        .iter()
        .flat_map(|j| j.campaigns.iter())
        .filter(|c| family.is_none_or(|f| c.family == f))
        .collect();
    let alone_flagged: u64 = alone_camps.iter().map(|c| c.flagged).sum();
    let alone_accounts: u64 = alone_camps.iter().map(|c| c.accounts).sum();
    let camps: Vec<&CampaignJudged> = judged
        .iter()
        .flat_map(|j| j.campaigns.iter())
        .filter(|c| family.is_none_or(|f| c.family == f))
        .collect();
    let accounts: u64 = camps.iter().map(|c| c.accounts).sum();
    let flagged: u64 = camps.iter().map(|c| c.flagged).sum();
    let honest: u64 = judged.iter().map(|j| j.honest).sum();
    let honest_flagged: u64 = judged.iter().map(|j| j.honest_flagged).sum();
    let mut served: Vec<f64> = camps
        .iter()
        .map(|c| {
            if c.first_flagged {
                c.served_before_flag as f64 / c.requests.max(1) as f64
            } else {
                1.0
            }
        })
        .collect();
    served.sort_by(|a, b| a.total_cmp(b));
    let mut mostly_honest: Vec<&distillguard_pipeline::training::GroupJudged> = judged
        .iter()
        .flat_map(|j| j.groups.iter())
        .filter(|g| 2 * g.honest > g.accounts)
        .collect();
    mostly_honest.sort_by(|a, b| b.evidence.total_cmp(&a.evidence));
    // Keys are judged where an account carries harvesting and honest keys
    // (a reseller); elsewhere an account's keys are all its own and its
    // verdict is theirs.
    let resellers: Vec<&&CampaignJudged> = camps.iter().filter(|c| c.honest_keys > 0).collect();
    // A campaign of one account has nothing to link.
    let mut complete: Vec<f64> = camps
        .iter()
        .filter(|c| c.accounts >= 2)
        .map(|c| c.completeness)
        .collect();
    complete.sort_by(|a, b| a.total_cmp(b));
    Row {
        row: name.to_string(),
        seed,
        campaigns: camps.len() as u64,
        accounts,
        flagged,
        recall: flagged as f64 / accounts.max(1) as f64,
        recall_alone: alone_flagged as f64 / alone_accounts.max(1) as f64,
        responses_accounts: camps.iter().map(|c| c.responses_accounts).sum(),
        responses_recall: camps.iter().map(|c| c.responses_flagged).sum::<u64>() as f64
            / camps
                .iter()
                .map(|c| c.responses_accounts)
                .sum::<u64>()
                .max(1) as f64,
        batch_accounts: camps.iter().map(|c| c.batch_accounts).sum(),
        batch_recall: camps.iter().map(|c| c.batch_flagged).sum::<u64>() as f64
            / camps.iter().map(|c| c.batch_accounts).sum::<u64>().max(1) as f64,
        honest_batch: judged.iter().map(|j| j.honest_batch).sum(),
        honest_batch_flagged: judged.iter().map(|j| j.honest_batch_flagged).sum(),
        honest,
        honest_flagged,
        honest_fpr: honest_flagged as f64 / honest.max(1) as f64,
        honest_in_campaigns: judged.iter().map(|j| j.honest_in_campaigns).sum(),
        served_median: served.get(served.len() / 2).copied().unwrap_or(0.0),
        served_max: served.last().copied().unwrap_or(0.0),
        campaigns_under_1pct: served.iter().filter(|s| **s < 0.01).count() as u64,
        honest_group_evidence: mostly_honest.first().map_or(0.0, |g| g.evidence),
        honest_group_accounts: mostly_honest.first().map_or(0, |g| g.accounts),
        bad_keys: resellers.iter().map(|c| c.bad_keys).sum(),
        bad_keys_flagged: resellers.iter().map(|c| c.bad_keys_flagged).sum(),
        honest_keys: resellers.iter().map(|c| c.honest_keys).sum(),
        honest_keys_flagged: resellers.iter().map(|c| c.honest_keys_flagged).sum(),
        completeness_median: complete.get(complete.len() / 2).copied().unwrap_or(0.0),
        completeness_min: complete.first().copied().unwrap_or(0.0),
        purity_min: camps
            .iter()
            .filter(|c| c.accounts >= 2 && c.completeness > 0.0)
            .map(|c| c.purity)
            .fold(1.0, f64::min),
        thresholds: w.thresholds,
        detail: camps.into_iter().cloned().collect(),
        groups: judged
            .iter()
            .flat_map(|j| j.groups.iter())
            .filter(|g| g.honest > 0 && g.accounts >= 3)
            .cloned()
            .collect(),
    }
}

/// Writes every account's details of `worlds` under `dir/name.jsonl`.
fn dump(dir: Option<&Path>, name: &str, worlds: &[LabelledWorld], w: &Weights) -> Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.jsonl"));
    let mut out = io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    for world in worlds {
        for d in training::details(world, w, w.thresholds, Leave(None)) {
            serde_json::to_writer(&mut out, &d)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn default_glasswally() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .take(4)
        .map(|a| a.join("shared/data/external/glasswally-labeled_5k.jsonl"))
        .find(|p| p.exists())
}

pub(crate) fn lofo(a: LofoArgs) -> Result<ExitCode> {
    check_budget(a.fp_budget)?;
    let families: Vec<String> = if a.family.is_empty() {
        FAMILIES.iter().map(|f| f.to_string()).collect()
    } else {
        a.family.clone()
    };
    for f in &families {
        if !FAMILIES.contains(&f.as_str()) {
            bail!("unknown family {f:?} (families: {})", FAMILIES.join(", "));
        }
    }
    let corpus =
        Corpus::load(&a.corpus).with_context(|| format!("loading corpus {:?}", a.corpus))?;
    let glasswally = a
        .glasswally
        .clone()
        .or_else(default_glasswally)
        .map(|p| glasswally_world(&p, 24.0))
        .transpose()?;
    let mut rows: Vec<Row> = Vec::new();
    let link = distillguard_link::Config::default();
    for &seed in &a.seeds {
        let opts = RandomOpts {
            scale: a.scale,
            ..RandomOpts::default()
        };
        let mut train = Vec::new();
        for i in 0..a.train_worlds {
            say(
                a.quiet,
                format_args!("seed {seed}: training world {}/{}", i + 1, a.train_worlds),
            );
            train.push(random_world(train_seed(seed, i), &opts, &corpus)?);
        }
        let mut all_tests: Vec<LabelledWorld> = Vec::new();
        for (fi, f) in FAMILIES.iter().enumerate() {
            if !families.iter().any(|x| x == f) {
                continue;
            }
            let with = RandomOpts {
                include: vec![f.to_string()],
                ..opts.clone()
            };
            let mut tests = Vec::new();
            for j in 0..a.test_worlds {
                say(
                    a.quiet,
                    format_args!("seed {seed}: {f}: test world {}/{}", j + 1, a.test_worlds),
                );
                tests.push(random_world(test_seed(seed, fi, j), &with, &corpus)?);
            }
            say(
                a.quiet,
                format_args!("seed {seed}: {f}: fitting without it…"),
            );
            let prov = format!("lofo seed {seed} without {f}");
            let (w, _) = training::fit_worlds(
                &train,
                Leave(Some(f)),
                a.fp_budget,
                &prov,
                Default::default(),
            );
            let judged = training::judge_all(&tests, &w, w.thresholds, link, Leave(None));
            let alone = training::judge_all(
                &tests,
                &w,
                w.thresholds,
                training::detection_alone(),
                Leave(None),
            );
            rows.push(row(f, seed, &judged, &alone, Some(f), &w));
            dump(a.dump.as_deref(), &format!("{f}-{seed}"), &tests, &w)?;
            all_tests.extend(tests);
        }
        say(a.quiet, format_args!("seed {seed}: all families…"));
        let (w, _) = training::fit_worlds(
            &train,
            Leave(None),
            a.fp_budget,
            "lofo all",
            Default::default(),
        );
        let judged = training::judge_all(&all_tests, &w, w.thresholds, link, Leave(None));
        let alone = training::judge_all(
            &all_tests,
            &w,
            w.thresholds,
            training::detection_alone(),
            Leave(None),
        );
        rows.push(row(
            "all families (in distribution)",
            seed,
            &judged,
            &alone,
            None,
            &w,
        ));
        dump(a.dump.as_deref(), &format!("all-{seed}"), &all_tests, &w)?;
        if let Some(g) = &glasswally {
            let j = training::judge(g, &w, w.thresholds, link, Leave(None));
            let alone = training::judge(
                g,
                &w,
                w.thresholds,
                training::detection_alone(),
                Leave(None),
            );
            rows.push(row(
                "Glasswally (24 h spread, no records)",
                seed,
                &[j],
                &[alone],
                None,
                &w,
            ));
            dump(
                a.dump.as_deref(),
                &format!("glasswally-{seed}"),
                std::slice::from_ref(g),
                &w,
            )?;
        }
    }
    if let Some(p) = &a.out {
        std::fs::write(p, serde_json::to_string_pretty(&rows)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let mut o = io::stdout().lock();
    if a.format != Format::Table {
        serde_json::to_writer(&mut o, &rows)?;
        writeln!(o)?;
        return Ok(ExitCode::SUCCESS);
    }
    write_table(&mut o, &rows, a.seeds.len())?;
    Ok(ExitCode::SUCCESS)
}

/// The table, one line per row name, spread over seeds as min–max.
fn write_table(o: &mut dyn Write, rows: &[Row], seeds: usize) -> Result<()> {
    let mut by: BTreeMap<usize, (String, Vec<&Row>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for r in rows {
        let i = match order.iter().position(|n| *n == r.row) {
            Some(i) => i,
            None => {
                order.push(r.row.clone());
                order.len() - 1
            }
        };
        by.entry(i)
            .or_insert_with(|| (r.row.clone(), Vec::new()))
            .1
            .push(r);
    }
    let span = |v: Vec<f64>, pct: bool| -> String {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let f = |x: f64| {
            if pct {
                format!("{:.1}%", x * 100.0)
            } else {
                format!("{x:.2e}")
            }
        };
        if (hi - lo).abs() < 1e-12 {
            f(lo)
        } else {
            format!("{}–{}", f(lo), f(hi))
        }
    };
    writeln!(
        o,
        "| family left out | campaigns | accounts | recall | recall, score alone | recall, Responses-API accounts | recall, batch accounts | honest FPR (flagged/honest) | honest batch accounts flagged | honest in campaigns | served before first flag: median, max | campaigns flagged before 1% |"
    )?;
    writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    for (name, rs) in by.values() {
        let camps: u64 = rs.iter().map(|r| r.campaigns).sum();
        let accts: u64 = rs.iter().map(|r| r.accounts).sum();
        let hf: u64 = rs.iter().map(|r| r.honest_flagged).sum();
        let h: u64 = rs.iter().map(|r| r.honest).sum();
        let under: u64 = rs.iter().map(|r| r.campaigns_under_1pct).sum();
        let hc: u64 = rs.iter().map(|r| r.honest_in_campaigns).sum();
        // Recall of a subset of attack accounts, "—" when there are none.
        let subset = |accounts: fn(&Row) -> u64, recall: fn(&Row) -> f64| {
            let n: u64 = rs.iter().map(|r| accounts(r)).sum();
            if n == 0 {
                "—".to_string()
            } else {
                format!(
                    "{} (of {n})",
                    span(rs.iter().map(|r| recall(r)).collect(), true)
                )
            }
        };
        let resp = subset(|r| r.responses_accounts, |r| r.responses_recall);
        let batch = subset(|r| r.batch_accounts, |r| r.batch_recall);
        let hb: u64 = rs.iter().map(|r| r.honest_batch).sum();
        let hbf: u64 = rs.iter().map(|r| r.honest_batch_flagged).sum();
        writeln!(
            o,
            "| {name} | {camps} | {accts} | {} | {} | {resp} | {batch} | {} ({hf}/{h}) | {hbf}/{hb} | {hc} | {}, {} | {under}/{camps} |",
            span(rs.iter().map(|r| r.recall).collect(), true),
            span(rs.iter().map(|r| r.recall_alone).collect(), true),
            span(rs.iter().map(|r| r.honest_fpr).collect(), false),
            span(rs.iter().map(|r| r.served_median).collect(), true),
            span(rs.iter().map(|r| r.served_max).collect(), true),
        )?;
    }
    // Keys and campaigns (issue 12's targets), on the same rows.
    writeln!(
        o,
        "\n| family left out | resellers' harvesting keys flagged | resellers' other keys flagged | campaign completeness: median, lowest | purity of those campaigns, lowest |"
    )?;
    writeln!(o, "|---|---|---|---|---|")?;
    for (name, rs) in by.values() {
        let count = |n: fn(&Row) -> u64, of: fn(&Row) -> u64| {
            let (n, of): (u64, u64) = (
                rs.iter().map(|r| n(r)).sum(),
                rs.iter().map(|r| of(r)).sum(),
            );
            if of == 0 {
                "—".to_string()
            } else {
                format!("{:.1}% ({n}/{of})", 100.0 * n as f64 / of as f64)
            }
        };
        writeln!(
            o,
            "| {name} | {} | {} | {}, {} | {} |",
            count(|r| r.bad_keys_flagged, |r| r.bad_keys),
            count(|r| r.honest_keys_flagged, |r| r.honest_keys),
            span(rs.iter().map(|r| r.completeness_median).collect(), true),
            span(rs.iter().map(|r| r.completeness_min).collect(), true),
            span(rs.iter().map(|r| r.purity_min).collect(), true),
        )?;
    }
    if seeds > 1 {
        writeln!(o, "\n(ranges: minimum–maximum over {seeds} seeds)")?;
    }
    Ok(())
}
