//! `distillguard import`: foreign labelled logs into the event log.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use distillguard_core::RecordReader;

use crate::report_bad_lines;

/// `import`'s arguments.
#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// The foreign log's format.
    #[arg(value_enum)]
    pub format: ImportFormat,
    /// The foreign log (`-` for standard input; gzip is detected).
    pub input: PathBuf,
    /// Output directory: events.jsonl.gz (time order) and truth.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Stretch the records' times over this many hours, order kept
    /// (Glasswally's log spans 0.11 s, which no real traffic does).
    #[arg(long)]
    pub spread_hours: Option<f64>,
    /// Stop at the first malformed line (exit code 2).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub(crate) enum ImportFormat {
    /// Glasswally's labelled JSONL (github.com/m0rs3c0d3/Glasswally).
    Glasswally,
}

pub(crate) fn run(a: ImportArgs) -> Result<ExitCode> {
    match a.format {
        ImportFormat::Glasswally => glasswally(&a.input, &a.out, a.spread_hours, a.strict),
    }
}

fn glasswally(
    input: &Path,
    out: &Path,
    spread_hours: Option<f64>,
    strict: bool,
) -> Result<ExitCode> {
    use distillguard_core::import::glasswally::{Record, spread, truth_of};
    if let Some(h) = spread_hours
        && !(h > 0.0 && h <= 24.0 * 366.0)
    {
        bail!("--spread-hours must be in (0, 8784], got {h}");
    }
    let (records, bad) = RecordReader::<Record>::open(input)?.read_all(strict)?;
    report_bad_lines(&bad, "import");
    let times = spread_hours.map(|h| spread(&records, h));
    let mut lines = Vec::with_capacity(records.len());
    let mut kept = Vec::with_capacity(records.len());
    let mut skipped = 0u64;
    for (n, r) in records.iter().enumerate() {
        let at = match times.as_ref().and_then(|t| t[n]) {
            Some(t) => Ok(t),
            None => r.ts(),
        };
        match at.and_then(|ts| Ok((ts, r.to_event_line_at(n as u64, ts)?))) {
            Ok((ts, line)) => {
                lines.push((ts, n, line));
                kept.push(r);
            }
            Err(e) if strict => bail!("{}: record {}: {e}", input.display(), n + 1),
            Err(e) => {
                skipped += 1;
                let _ = writeln!(
                    io::stderr(),
                    "warning: import: {}: record {}: {e}",
                    input.display(),
                    n + 1
                );
            }
        }
    }
    // Stable: records with the same millisecond keep their file order.
    lines.sort_by_key(|(ts, n, _)| (*ts, *n));
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("events.jsonl.gz");
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut gz =
        flate2::write::GzEncoder::new(io::BufWriter::new(file), flate2::Compression::new(6));
    for (_, _, l) in &lines {
        gz.write_all(l.as_bytes())?;
        gz.write_all(b"\n")?;
    }
    gz.finish()?.flush()?;
    let truth = truth_of(kept.iter().copied());
    let tpath = out.join("truth.jsonl");
    let mut t = io::BufWriter::new(
        std::fs::File::create(&tpath).with_context(|| format!("creating {}", tpath.display()))?,
    );
    for r in &truth {
        serde_json::to_writer(&mut t, r)?;
        t.write_all(b"\n")?;
    }
    t.flush()?;
    let attack = truth
        .iter()
        .filter(|r| r.label == distillguard_core::Label::Attack)
        .count();
    let campaigns: std::collections::BTreeSet<_> =
        truth.iter().filter_map(|r| r.campaign.as_deref()).collect();
    writeln!(
        io::stdout().lock(),
        "imported {} events ({} malformed or skipped) from {} accounts ({attack} attack in {} campaigns) into {}",
        lines.len(),
        bad.len() as u64 + skipped,
        truth.len(),
        campaigns.len(),
        out.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
