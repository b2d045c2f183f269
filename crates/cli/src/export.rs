//! `distillguard export stix`: a report's campaigns as STIX 2.1, or an
//! exfiltration report's flagged principals as sightings.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum ExportCommand {
    /// A STIX 2.1 bundle: campaigns, indicators (IP addresses and
    /// prefixes, account ids), infrastructure, relationships, sightings,
    /// and salted hashes of payment, TLS and template fingerprints.
    Stix {
        /// `distillguard analyze --format json` output.
        report: PathBuf,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The producing organisation, named in the bundle.
        #[arg(long, default_value = "distillguard")]
        producer: String,
        /// Salt for fingerprint hashes (default: derived from the report).
        #[arg(long)]
        salt: Option<String>,
    },
}

pub(crate) fn run(what: ExportCommand) -> Result<ExitCode> {
    match what {
        ExportCommand::Stix {
            report,
            out,
            producer,
            salt,
        } => stix(&report, out.as_deref(), producer, salt),
    }
}

fn stix(
    report: &Path,
    out: Option<&Path>,
    producer: String,
    salt: Option<String>,
) -> Result<ExitCode> {
    // An exfiltration report (`exfil analyze`) exports as sightings.
    let text =
        std::fs::read_to_string(report).with_context(|| format!("reading {}", report.display()))?;
    if text.contains("\"kind\": \"exfiltration\"") || text.contains("\"kind\":\"exfiltration\"") {
        let r: distillguard_exfil::Report = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid exfiltration report", report.display()))?;
        let b = distillguard_stix::exfil::bundle(
            &r,
            &distillguard_stix::ExportOptions { producer, salt },
        );
        return write_bundle(&b, out);
    }
    let r = distillguard_eval::load_report(report)?;
    if r.campaigns.is_empty() {
        let _ = writeln!(
            io::stderr(),
            "{}: no campaigns in this report; the bundle holds only the producer",
            report.display()
        );
    }
    let b = distillguard_stix::bundle(&r, &distillguard_stix::ExportOptions { producer, salt });
    write_bundle(&b, out)
}

fn write_bundle(b: &serde_json::Value, out: Option<&Path>) -> Result<ExitCode> {
    let mut text = serde_json::to_string_pretty(b)?;
    text.push('\n');
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
