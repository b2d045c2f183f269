//! `distillguard exfil`: exfiltration of weights and training data from
//! cloud storage (audit logs → per-principal baselines → alerts).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use distillguard_core::{LineError, ReadError};
use distillguard_exfil::eval::{Summary, Truth};
use distillguard_exfil::{ExfilConfig, Report, SourceFormat};

use crate::{Format, ReportFormat};

#[derive(Args)]
pub(crate) struct ExfilArgs {
    #[command(subcommand)]
    cmd: ExfilCommand,
}

#[derive(Subcommand)]
enum ExfilCommand {
    /// Find exfiltration in storage audit logs: per-principal baselines,
    /// alerts with reasons, `flagged_at`.
    Analyze(AnalyzeArgs),
    /// Write a simulated organisation's CloudTrail log with labelled
    /// incidents, its asset map and truth.
    Simulate(SimulateArgs),
    /// Score an exfiltration report against the truth.
    Eval(EvalArgs),
    /// Follow a directory that receives audit logs (CloudTrail's delivery
    /// tree synced from S3, or any `.json`/`.jsonl` files, gzipped or
    /// not): each principal flagged is printed as it happens (JSON
    /// Lines); the report is written when stopped (SIGTERM or Ctrl-C).
    Watch(WatchArgs),
}

#[derive(Args)]
struct WatchArgs {
    /// The directory (read recursively; files are taken in name order,
    /// which is time order for CloudTrail's file names).
    dir: PathBuf,
    #[command(flatten)]
    map: MapArgs,
    /// Seconds between looks at the directory.
    #[arg(long, default_value = "10")]
    poll_secs: std::num::NonZeroU64,
    /// A file is read once it has not changed for this many seconds (a
    /// sync still writing it is left for the next look).
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
    /// Read what the directory holds now, then stop (a backfill).
    #[arg(long)]
    once: bool,
    /// Write the report (JSON) here when stopped.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Remember here which files were read and up to when flags were
    /// printed; a restart reads those files again first, to rebuild the
    /// baselines, without printing their flags again.
    #[arg(long)]
    state: Option<PathBuf>,
}

/// What `analyze` and `watch` read logs with: the map, the HR feeds, the
/// source format, the threads.
#[derive(Args)]
struct MapArgs {
    /// The asset map and detector settings (TOML; docs/exfiltration.md).
    #[arg(long)]
    assets: PathBuf,
    /// An HR feed of departures and teams (CSV with a header, or JSONL;
    /// gzip detected, `-` for standard input), beside the asset map's own
    /// `[[departure]]` and `[[team]]` entries; may be given more than once.
    #[arg(long)]
    hr: Vec<PathBuf>,
    /// auto (decided per line), cloudtrail, gcp or generic.
    #[arg(long, default_value = "auto", value_parser = parse_source)]
    source: SourceFormat,
    /// Parsing threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

impl MapArgs {
    fn workers(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// The asset map with the HR feeds' departures and teams.
    fn load(
        &self,
    ) -> Result<(
        distillguard_exfil::AssetMap,
        distillguard_exfil::DetectConfig,
    )> {
        let text = std::fs::read_to_string(&self.assets)
            .with_context(|| format!("reading {}", self.assets.display()))?;
        let (mut map, cfg) = ExfilConfig::from_toml(&text)
            .with_context(|| format!("asset map {}", self.assets.display()))?;
        for p in &self.hr {
            let (name, mut r) = distillguard_core::reader::open_source(p)?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut r, &mut text)
                .with_context(|| format!("reading HR feed {name}"))?;
            let feed = distillguard_exfil::hr::parse(&name, &text)?;
            map.add_departures(feed.departures);
            map.add_members(feed.members);
        }
        Ok((map, cfg))
    }
}

/// What `exfil watch --state` keeps between runs.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchState {
    /// Files read, in the order they were.
    files: Vec<PathBuf>,
    /// The latest flag printed; flags up to it are not printed again.
    #[serde(default)]
    printed_until: Option<distillguard_core::Timestamp>,
}

impl WatchState {
    fn load(path: &Path) -> Result<WatchState> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("watch state {}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(WatchState::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Written whole beside the file, then renamed over it: a crash
    /// leaves the old state or the new one.
    fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}

#[derive(Args)]
struct AnalyzeArgs {
    /// Audit logs (`.json`, `.jsonl`, gzip detected, `-` for standard input).
    #[arg(required = true)]
    input: Vec<PathBuf>,
    #[command(flatten)]
    map: MapArgs,
    /// Output: `table` for people, `json` for tools, `jsonl` for one
    /// principal per line.
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// Write the report here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop at the first malformed line (exit code 2).
    #[arg(long)]
    strict: bool,
}

fn parse_source(s: &str) -> Result<SourceFormat, distillguard_core::Invalid> {
    SourceFormat::by_name(s).ok_or_else(|| {
        distillguard_core::Invalid(format!(
            "unknown source {s:?}; one of: {}",
            SourceFormat::NAMES.join(", ")
        ))
    })
}

#[derive(Args)]
struct SimulateArgs {
    /// Seed of the simulated organisation (the same seed gives the same bytes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Days of audit log.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(21..=400))]
    days: u32,
    /// Multiplies the organisation's people and jobs (1 ≈ 75 principals).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Output directory: cloudtrail.jsonl.gz, assets.toml, truth.jsonl.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    /// `distillguard exfil analyze --format json` output.
    #[arg(long)]
    report: PathBuf,
    /// truth.jsonl of the simulated organisation.
    #[arg(long)]
    truth: PathBuf,
    /// Output: `table` for people, `json` for tools.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub(crate) fn run(args: ExfilArgs) -> Result<ExitCode> {
    match args.cmd {
        ExfilCommand::Analyze(a) => analyze(a),
        ExfilCommand::Simulate(a) => simulate(a),
        ExfilCommand::Eval(a) => eval(a),
        ExfilCommand::Watch(a) => watch(a),
    }
}

fn analyze(a: AnalyzeArgs) -> Result<ExitCode> {
    let (map, cfg) = a.map.load()?;
    let inputs: Vec<&Path> = a.input.iter().map(PathBuf::as_path).collect();
    let workers = a.map.workers();
    let mut bad: Vec<LineError> = Vec::new();
    let strict = a.strict;
    let started = std::time::Instant::now();
    let (report, stats) =
        distillguard_exfil::analyze(&inputs, a.map.source, map, cfg, workers, |e| {
            if strict {
                return Err(ReadError::Strict(e));
            }
            if bad.len() < 1000 {
                bad.push(e);
            }
            Ok(())
        })?;
    crate::report_bad_lines(&bad, "skipped");
    let secs = started.elapsed().as_secs_f64();
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "read {} lines ({} rejected), {} accesses of {} principals in {:.1} s ({:.0} accesses/s); state {:.0} bytes per principal (largest {})",
        stats.lines,
        stats.rejected,
        report.stats.accesses,
        report.stats.principals,
        secs,
        report.stats.accesses as f64 / secs.max(1e-9),
        report.stats.state_bytes_mean,
        report.stats.state_bytes_max
    );
    drop(err);
    let mut out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    match a.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        ReportFormat::Jsonl => {
            for p in &report.principals {
                serde_json::to_writer(&mut out, p)?;
                writeln!(out)?;
            }
        }
        ReportFormat::Table => write_table(&mut out, &report)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Audit log files under `dir` not read yet and unchanged for `settle`,
/// in name order.
fn arrived(
    dir: &Path,
    read: &std::collections::HashSet<PathBuf>,
    settle: std::time::Duration,
) -> Result<Vec<PathBuf>> {
    const KINDS: [&str; 6] = [
        ".json",
        ".jsonl",
        ".json.gz",
        ".jsonl.gz",
        ".log",
        ".log.gz",
    ];
    let now = std::time::SystemTime::now();
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries = std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("reading {}", d.display()))?;
            let path = e.path();
            let meta = e
                .metadata()
                .with_context(|| format!("reading {}", path.display()))?;
            let name = e.file_name().to_string_lossy().to_string();
            if meta.is_dir() {
                dirs.push(path);
            } else if !name.starts_with('.')
                && KINDS.iter().any(|k| name.ends_with(k))
                && !read.contains(&path)
                && meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_none_or(|age| age >= settle)
            {
                out.push((name, path));
            }
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

fn watch(a: WatchArgs) -> Result<ExitCode> {
    use std::sync::atomic::{AtomicBool, Ordering};
    if !a.dir.is_dir() {
        bail!("{} is not a directory", a.dir.display());
    }
    let (map, cfg) = a.map.load()?;
    let mut stream = distillguard_exfil::Stream::new(map, cfg, a.map.source, a.map.workers());
    // SIGTERM and Ctrl-C set `stop`; the loop ends at the next file.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    {
        let _in = rt.enter();
        let signal = distillguard_gateway::shutdown_signal()?;
        let stop = std::sync::Arc::clone(&stop);
        rt.spawn(async move {
            signal.await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    let settle = std::time::Duration::from_secs(if a.once { 0 } else { a.settle_secs });
    let poll = std::time::Duration::from_secs(a.poll_secs.get());
    let mut read: std::collections::HashSet<PathBuf> = Default::default();
    let mut state = match &a.state {
        Some(p) => WatchState::load(p)?,
        None => WatchState::default(),
    };
    let mut out = io::stdout().lock();
    let mut print = |flags: Vec<distillguard_exfil::detect::Flag>,
                     printed_until: &mut Option<distillguard_core::Timestamp>|
     -> Result<()> {
        for f in flags {
            if printed_until.is_some_and(|t| f.flagged_at <= t.0) {
                continue;
            }
            serde_json::to_writer(&mut out, &f)?;
            writeln!(out)?;
            *printed_until = Some(distillguard_core::Timestamp(f.flagged_at));
        }
        out.flush()?;
        Ok(())
    };
    // The files of an earlier run first, in their order: their flags were
    // printed then.
    let earlier: Vec<PathBuf> = std::mem::take(&mut state.files);
    let read_one = |path: &Path,
                    stream: &mut distillguard_exfil::Stream,
                    read: &mut std::collections::HashSet<PathBuf>,
                    state: &mut WatchState|
     -> Result<()> {
        let mut bad: Vec<LineError> = Vec::new();
        let stats = stream.read(path, |e| {
            if bad.len() < 1000 {
                bad.push(e);
            }
            Ok(())
        })?;
        crate::report_bad_lines(&bad, "skipped");
        read.insert(path.to_path_buf());
        state.files.push(path.to_path_buf());
        let _ = writeln!(
            io::stderr(),
            "read {} ({} lines, {} rejected); {} files read",
            path.display(),
            stats.lines,
            stats.rejected,
            read.len()
        );
        Ok(())
    };
    for path in earlier.iter().filter(|p| p.exists()) {
        read_one(path, &mut stream, &mut read, &mut state)?;
        print(stream.take_flags(), &mut state.printed_until)?;
    }
    while !stop.load(Ordering::Relaxed) {
        for path in arrived(&a.dir, &read, settle)? {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            read_one(&path, &mut stream, &mut read, &mut state)?;
            print(stream.take_flags(), &mut state.printed_until)?;
            if let Some(p) = &a.state {
                state.save(p)?;
            }
        }
        if a.once {
            break;
        }
        let until = std::time::Instant::now() + poll;
        while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    // What the reorder window holds is judged before the report.
    stream.flush();
    print(stream.take_flags(), &mut state.printed_until)?;
    if let Some(p) = &a.state {
        state.save(p)?;
    }
    let report = stream.finish();
    let _ = writeln!(
        io::stderr(),
        "stopped after {} files: {} accesses of {} principals, {} flagged",
        read.len(),
        report.stats.accesses,
        report.stats.principals,
        report
            .principals
            .iter()
            .filter(|p| p.flagged_at.is_some())
            .count()
    );
    if let Some(p) = &a.out {
        let mut f =
            BufWriter::new(File::create(p).with_context(|| format!("creating {}", p.display()))?);
        serde_json::to_writer_pretty(&mut f, &report)?;
        writeln!(f)?;
        f.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn gib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1u64 << 30) as f64)
}

fn write_table(out: &mut dyn Write, r: &Report) -> Result<()> {
    let flagged: Vec<_> = r
        .principals
        .iter()
        .filter(|p| p.flagged_at.is_some())
        .collect();
    writeln!(
        out,
        "{} accesses, {} principals, {} principal-days; {} principals flagged, {} more with signals below the flag",
        r.stats.accesses,
        r.stats.principals,
        r.stats.principal_days,
        flagged.len(),
        r.principals.len() - flagged.len()
    )?;
    if flagged.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<24}  {:>5}  {:>10}  {:>10}  principal / reasons",
        "flagged at", "score", "sens. GiB", "before flag"
    )?;
    for p in flagged {
        let at = p
            .flagged_at
            .map(|t| distillguard_core::Timestamp(t).to_string())
            .unwrap_or_default();
        writeln!(
            out,
            "{at:<24}  {:>5.2}  {:>10}  {:>10}  {}",
            p.score,
            gib(p.sensitive_bytes),
            gib(p.sensitive_bytes_before_flag),
            p.principal
        )?;
        let until = p.flagged_at.unwrap_or(i64::MAX);
        let upto: Vec<_> = p.alerts.iter().filter(|a| a.ts <= until).collect();
        for a in &upto[upto.len().saturating_sub(4)..] {
            writeln!(
                out,
                "{:<57}  - {:?} ({:.1}): {}",
                "", a.signal, a.weight, a.reason
            )?;
        }
    }
    Ok(())
}

fn simulate(a: SimulateArgs) -> Result<ExitCode> {
    use distillguard_simulator::org;
    if !(a.scale.is_finite() && a.scale > 0.0 && a.scale <= 100.0) {
        bail!("--scale must be in (0, 100] (got {})", a.scale);
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let world = org::generate(org::OrgSpec {
        seed: a.seed,
        days: a.days,
        scale: a.scale,
    });
    let path = a.out.join("cloudtrail.jsonl.gz");
    let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut gz = flate2::write::GzEncoder::new(BufWriter::new(f), flate2::Compression::new(6));
    let lines = org::delivery_lines(&world.records);
    for l in &lines {
        gz.write_all(l.as_bytes())?;
        gz.write_all(b"\n")?;
    }
    gz.finish()?.flush()?;
    std::fs::write(a.out.join("assets.toml"), &world.assets_toml)?;
    std::fs::write(a.out.join("hr.csv"), &world.hr_csv)?;
    let mut truth = BufWriter::new(File::create(a.out.join("truth.jsonl"))?);
    for t in &world.truth {
        serde_json::to_writer(&mut truth, t)?;
        writeln!(truth)?;
    }
    truth.flush()?;
    let incidents = world.truth.iter().filter(|t| t.label == "incident").count();
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "wrote {} CloudTrail records ({} delivery lines), {} principals ({incidents} incidents) to {}",
        world.records.len(),
        lines.len(),
        world.truth.len(),
        a.out.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// An `exfil analyze --format json` report from a file.
pub(crate) fn load_report(path: &std::path::Path) -> Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not an exfil analyze --format json report",
            path.display()
        )
    })
}

fn eval(a: EvalArgs) -> Result<ExitCode> {
    let report = load_report(&a.report)?;
    let (truth, bad) = distillguard_core::RecordReader::<Truth>::open(&a.truth)?.read_all(false)?;
    crate::report_bad_lines(&bad, "truth");
    let s = distillguard_exfil::eval::evaluate(&report, &truth);
    let mut out = io::stdout().lock();
    match a.format {
        Format::Table => write_summary(&mut out, &s)?,
        _ => {
            serde_json::to_writer_pretty(&mut out, &s)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_summary(out: &mut dyn Write, s: &Summary) -> Result<()> {
    writeln!(
        out,
        "{:<14}  {:>7}  {:>10}  {:>12}  {:>9}  principal",
        "incident", "flagged", "GiB out", "out by flag", "min to flag"
    )?;
    for i in &s.incidents {
        writeln!(
            out,
            "{:<14}  {:>7}  {:>10}  {:>11.1}%  {:>9}  {}",
            i.incident,
            if i.flagged { "yes" } else { "NO" },
            gib(i.bytes),
            i.share_before_flag * 100.0,
            i.minutes_to_flag
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "—".into()),
            i.principal
        )?;
    }
    writeln!(
        out,
        "\n{} of {} incidents flagged before 10% of their bytes left; {} false alerts in {} principal-days ({:.2} per 1,000)",
        s.under_10pct,
        s.incidents.len(),
        s.false_alerts,
        s.principal_days,
        s.false_alerts_per_1000_principal_days
    )?;
    for f in &s.false_alert_principals {
        writeln!(
            out,
            "  false alert ×{}: {} ({})",
            f.alerts, f.principal, f.role
        )?;
        for r in &f.reasons {
            writeln!(out, "      {r}")?;
        }
    }
    Ok(())
}
