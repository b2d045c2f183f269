//! `distillguard export stix`: a report's campaigns as STIX 2.1.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

pub(crate) fn stix(
    report: &Path,
    out: Option<&Path>,
    producer: String,
    salt: Option<String>,
) -> Result<ExitCode> {
    let r = distillguard_eval::load_report(report)?;
    if r.campaigns.is_empty() {
        let _ = writeln!(
            io::stderr(),
            "{}: no campaigns in this report; the bundle holds only the producer",
            report.display()
        );
    }
    let b = distillguard_stix::bundle(&r, &distillguard_stix::ExportOptions { producer, salt });
    let mut text = serde_json::to_string_pretty(&b)?;
    text.push('\n');
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
