//! `distillguard eval`: a report scored against the simulated truth.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use distillguard_core::{AccountRecord, RecordReader, TruthRecord};
use distillguard_eval::{EventIndex, Inputs};

use crate::{Format, beside, report_bad_lines};

#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    /// `distillguard analyze --format json` output.
    #[arg(long)]
    report: PathBuf,
    /// truth.jsonl (`{account_id, label, campaign}` per line).
    #[arg(long)]
    truth: PathBuf,
    /// Event logs, for time to detect and the rate-limit baseline
    /// (default: events.jsonl.gz beside the truth file, if present).
    #[arg(long)]
    events: Vec<PathBuf>,
    /// Account records, for the baseline's tier limits (default:
    /// accounts.jsonl beside the truth file, if present).
    #[arg(long)]
    accounts: Option<PathBuf>,
    /// Output: `table` for people, `json` for tools.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Stop at the first malformed line (exit code 2).
    #[arg(long)]
    strict: bool,
}

pub(crate) fn run(a: EvalArgs) -> Result<ExitCode> {
    let EvalArgs {
        report,
        truth,
        events,
        accounts,
        format,
        strict,
    } = a;
    let (report, truth) = (report.as_path(), truth.as_path());
    let rep = distillguard_eval::load_report(report)?;
    let (truth_rows, bad) = RecordReader::<TruthRecord>::open(truth)?.read_all(strict)?;
    report_bad_lines(&bad, "truth");
    if truth_rows.is_empty() {
        bail!("{}: no truth records", truth.display());
    }
    let events = if events.is_empty() {
        beside(truth, "events.jsonl.gz").into_iter().collect()
    } else {
        events
    };
    let index = if events.is_empty() {
        None
    } else {
        let paths: Vec<&Path> = events.iter().map(PathBuf::as_path).collect();
        let ix = EventIndex::load(&paths, strict)?;
        report_bad_lines(&ix.malformed, "events");
        Some(ix)
    };
    let accounts_path = accounts.or_else(|| beside(truth, "accounts.jsonl"));
    let account_rows = match &accounts_path {
        Some(p) => {
            let (rows, bad) = RecordReader::<AccountRecord>::open(p)?.read_all(strict)?;
            report_bad_lines(&bad, "accounts");
            Some(rows)
        }
        None => None,
    };
    let sb = distillguard_eval::evaluate(&Inputs {
        report: &rep,
        truth: &truth_rows,
        events: index.as_ref(),
        accounts: account_rows.as_deref(),
    })?;
    let mut stdout = io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut stdout, &sb)?;
            writeln!(stdout)?;
        }
        Format::Table => write!(stdout, "{}", distillguard_eval::table::render(&sb))?,
    }
    Ok(ExitCode::SUCCESS)
}
