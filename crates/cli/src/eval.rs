//! `distillguard eval`: a report scored against the simulated truth.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use distillguard_core::{AccountRecord, RecordReader, TruthRecord};
use distillguard_eval::{EventIndex, Inputs};

use crate::{Format, beside, report_bad_lines};

pub(crate) fn run(
    report: &Path,
    truth: &Path,
    events: Vec<PathBuf>,
    accounts: Option<PathBuf>,
    format: Format,
    strict: bool,
) -> Result<ExitCode> {
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
        Format::Json | Format::Jsonl => {
            serde_json::to_writer_pretty(&mut stdout, &sb)?;
            writeln!(stdout)?;
        }
        Format::Table => write!(stdout, "{}", distillguard_eval::table::render(&sb))?,
    }
    Ok(ExitCode::SUCCESS)
}
