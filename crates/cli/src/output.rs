//! Output helpers shared by the subcommands: the `--format` choice, bad
//! lines on standard error, files beside an input.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use distillguard_core::LineError;

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    /// One account per line (analyze only).
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
