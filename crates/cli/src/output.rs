//! Output helpers shared by the subcommands: the `--format` choice, bad
//! lines on standard error, files beside an input.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use distillguard_core::LineError;

/// `--format` of the commands that print one result.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns, for people.
    Table,
    /// One JSON document, for programs.
    Json,
}

/// `--format` of the commands that print a report of many entities
/// (`analyze`, `exfil analyze`).
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    /// Aligned columns, for people.
    Table,
    /// The whole report as one JSON document.
    Json,
    /// One account (or principal) per line, as JSON.
    Jsonl,
}

/// `path`'s sibling `name`, if it exists.
pub(crate) fn beside(path: &Path, name: &str) -> Option<PathBuf> {
    let p = path.parent().unwrap_or(Path::new(".")).join(name);
    p.exists().then_some(p)
}

pub(crate) fn report_bad_lines(bad: &[LineError], what: &str) {
    let mut err = io::stderr().lock();
    for e in bad.iter().take(10) {
        let _ = writeln!(err, "warning: {what}: {e}");
    }
    if bad.len() > 10 {
        let _ = writeln!(
            err,
            "warning: {what}: … and {} more malformed lines",
            bad.len() - 10
        );
    }
}
