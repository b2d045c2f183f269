/*!
`distillguard analyze`: event logs → per-request signals (on every core)
→ time order → detection engine → campaign linker → report.
*/

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use distillguard_core::report::Report;
use distillguard_core::{ReadError, RecordReader};
use distillguard_detect::engine::{Engine, Weights, time_order};
use distillguard_stix::Intel;

use crate::config::AnalyzeConfig;
use crate::{ReportFormat, progress, report_bad_lines};

pub(crate) use distillguard_pipeline::{PerRequest, Record};

use distillguard_core::EventError;
pub(crate) use distillguard_core::import::{Each, Parse};

/// Per-request work, on the parsing threads.
pub(crate) fn record(
    line: &str,
    parse: Parse,
    per: &PerRequest,
) -> Result<Each<Record>, EventError> {
    Ok(parse
        .events(line)?
        .map(|e| distillguard_pipeline::record(&e, per)))
}

/// The verdict pipeline (`distillguard-pipeline`), as `analyze` folds it.
pub(crate) type Fold = distillguard_pipeline::Pipeline;

/// Malformed lines while reading: the first 20 are printed with their
/// place, the rest counted; strict mode stops at the first.
#[derive(Default)]
struct Malformed(u64);

impl Malformed {
    fn line(&mut self, e: distillguard_core::LineError, strict: bool) -> Result<(), ReadError> {
        if strict {
            return Err(ReadError::Strict(e));
        }
        self.0 += 1;
        if self.0 <= 20 {
            let _ = writeln!(io::stderr(), "malformed: {e}");
        }
        Ok(())
    }

    fn finish(&self) {
        if self.0 > 20 {
            let _ = writeln!(io::stderr(), "malformed: … and {} more", self.0 - 20);
        }
    }
}

/// What reading the logs found besides records.
#[derive(Debug, Default)]
pub(crate) struct ReadSummary {
    /// Records earlier in time than one before them.
    pub out_of_order: u64,
    /// Lines read (blank ones included) and lines that did not parse.
    pub lines: u64,
    pub malformed: u64,
    /// Files whose reading failed part-way (a truncated gzip, an I/O
    /// error), as `file:line`: the lines before the failure were kept.
    pub truncated: Vec<String>,
}

/// Reads event logs in parallel and hands each record to `each`, in file
/// order, with a progress stage per file named `verb`. Malformed lines are
/// reported (strict: the first stops the read). A file that fails part-way
/// is reported with its place and reading goes on with the next.
fn read_each(
    inputs: &[PathBuf],
    parse: Parse,
    strict: bool,
    bar: &progress::Bar,
    per: &PerRequest,
    verb: &str,
    mut each: impl FnMut(Record) -> Result<(), ReadError>,
) -> Result<ReadSummary, ReadError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut bad = Malformed::default();
    let mut sum = ReadSummary::default();
    let mut last = i64::MIN;
    for path in inputs {
        distillguard_core::progress::Progress::stage(
            bar,
            &format!("{verb} {}", path.display()),
            None,
        );
        let read = distillguard_core::parallel::par_read(
            path,
            workers,
            |l| record(l, parse, per),
            |item| {
                distillguard_core::progress::Progress::advance(bar, 1);
                match item {
                    Ok(rs) => rs.try_for_each(|r| {
                        sum.out_of_order += (r.pre.ts.0 < last) as u64;
                        last = last.max(r.pre.ts.0);
                        each(r)
                    }),
                    Err(e) => bad.line(e, strict),
                }
            },
        );
        match read {
            Ok(stats) => sum.lines += stats.lines,
            Err(e) => match e.part_way().filter(|_| !strict) {
                Some((name, line)) => {
                    let _ = writeln!(
                        io::stderr(),
                        "warning: {e}; the lines before it are kept, and reading goes on"
                    );
                    sum.lines += line;
                    sum.truncated.push(format!("{name}:{line}"));
                }
                None => return Err(e),
            },
        }
    }
    bad.finish();
    sum.malformed = bad.0;
    Ok(sum)
}

/// Reads event logs into records (in parallel), in file order.
pub(crate) fn read_records(
    inputs: &[PathBuf],
    parse: Parse,
    strict: bool,
    bar: &progress::Bar,
    per: &PerRequest,
) -> Result<(Vec<Record>, ReadSummary)> {
    let mut recs = Vec::new();
    let sum = read_each(inputs, parse, strict, bar, per, "reading", |r| {
        recs.push(r);
        Ok(())
    })?;
    Ok((recs, sum))
}

enum Streamed {
    Done {
        read: ReadSummary,
        peak: usize,
    },
    /// Too disordered for the window (`None`: not streamable at all).
    Late(Option<distillguard_detect::reorder::Late>),
}

/// Reads and scores in one pass: records go from the parsing threads
/// through the reorder buffer into the fold, so nothing but the buffer's
/// window is held. Stops early when a record is later than the window.
fn stream_fold(
    inputs: &[PathBuf],
    parse: Parse,
    strict: bool,
    bar: &progress::Bar,
    fold: &mut Fold,
    window_ms: i64,
    per: &PerRequest,
) -> Result<Streamed> {
    let mut reorder = distillguard_detect::reorder::Reorder::<Record>::new(window_ms);
    let mut late = None;
    let read = read_each(inputs, parse, strict, bar, per, "scoring", |rec| {
        reorder
            .push(rec, |r| {
                fold.process(&r);
            })
            .map_err(|l| {
                late = Some(l);
                ReadError::Stopped
            })
    });
    let read = match (read, late) {
        (_, Some(l)) => return Ok(Streamed::Late(Some(l))),
        (Err(e), None) => return Err(e.into()),
        (Ok(n), None) => n,
    };
    let peak = reorder.peak;
    reorder.finish(|r| {
        fold.process(&r);
    });
    Ok(Streamed::Done { read, peak })
}

/// A second pass over the logs: up to `n` redacted prompts for each flagged
/// account, in file order. Redaction happens on the worker threads, and only
/// for flagged accounts: no other prompt text is ever kept.
fn add_samples(report: &mut Report, inputs: &[PathBuf], parse: Parse, n: usize) -> Result<()> {
    let flagged: std::collections::HashSet<String> = report
        .accounts
        .iter()
        .filter(|a| a.verdict.is_flagged())
        .map(|a| a.account_id.clone())
        .collect();
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    for path in inputs {
        distillguard_core::parallel::par_read(
            path,
            workers,
            |line| {
                Ok(parse.events(line)?.map(|e| {
                    flagged.contains(&e.account_id).then(|| {
                        (
                            e.account_id,
                            distillguard_detect::redact::redact(&e.request.last_user_text),
                        )
                    })
                }))
            },
            |item| {
                if let Ok(found) = item {
                    let _ = found.try_for_each(|f| {
                        if let Some((account, text)) = f {
                            let v = got.entry(account).or_default();
                            if v.len() < n && !text.is_empty() {
                                v.push(text);
                            }
                        }
                        Ok::<(), ()>(())
                    });
                }
                Ok(())
            },
        )?;
    }
    for a in &mut report.accounts {
        if let Some(v) = got.remove(&a.account_id) {
            a.samples = v;
        }
    }
    // Campaigns carry a few of their members' samples.
    let by_id: HashMap<&str, &Vec<String>> = report
        .accounts
        .iter()
        .filter(|a| !a.samples.is_empty())
        .map(|a| (a.account_id.as_str(), &a.samples))
        .collect();
    for c in &mut report.campaigns {
        let mut s: Vec<String> = Vec::new();
        for id in &c.accounts {
            if let Some(v) = by_id.get(id.as_str()) {
                s.extend(v.iter().take(1).cloned());
            }
            if s.len() >= n.max(3) {
                break;
            }
        }
        c.extra.insert("samples".into(), serde_json::json!(s));
    }
    Ok(())
}

/// Options of `analyze`.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Event logs (`.jsonl`, `.jsonl.gz`, or `-` for standard input).
    #[arg(required_unless_present = "scenario", value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Instead of logs: simulate this scenario (a built-in such as
    /// `default`, `random`, or a TOML file) into a temporary directory,
    /// analyze it with its account records and model releases, and end
    /// with a comparison against its truth. The quickest way to see the
    /// whole job.
    #[arg(long, conflicts_with_all = ["inputs", "accounts", "models"])]
    pub scenario: Option<String>,
    /// `--scenario`: the seed of the simulated world.
    #[arg(long, default_value_t = 2, requires = "scenario")]
    pub seed: u64,
    /// Account records (`account_id` plus account fields per line).
    #[arg(long)]
    pub accounts: Option<PathBuf>,
    /// Model releases (`{model, released_at}` per line).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Score weights (`distillguard fit` output; default: embedded).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Configuration file (TOML): `weights = "…"`, `[thresholds]`
    /// monitor / throttle / block / min_requests.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output: `table` for people, `json` for tools, `jsonl` for one
    /// account per line.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
    /// Write the report here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Include accounts whose verdict stayed "allow".
    #[arg(long)]
    pub all: bool,
    /// Redacted prompt samples per flagged account (a second pass over
    /// the logs; 0 = no prompt text in the report at all).
    #[arg(long, default_value_t = 0)]
    pub samples: usize,
    /// Keep each reported account's history in the report: its
    /// escalations with the reasons of that moment, its risk over time,
    /// requests per day and per hour of the day (what `console` draws).
    #[arg(long)]
    pub timeline: bool,
    /// Partners' STIX 2.1 bundles: matching accounts gain a reason
    /// naming the indicator (and at least "monitor").
    #[arg(long)]
    pub intel: Vec<PathBuf>,
    /// Stop at the first malformed line (exit code 2).
    #[arg(long)]
    pub strict: bool,
    /// Exit 2 (after writing the report) when more than this share of the
    /// lines is malformed: a log of another format, or a broken export.
    #[arg(long, default_value_t = 0.1, value_parser = share)]
    pub max_malformed: f64,
    /// No progress or summary on standard error.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub batch: crate::batch_input::BatchOptions,
}

fn share(s: &str) -> Result<f64, distillguard_core::Invalid> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: give a share between 0 and 1").into()),
    }
}

/// `--scenario`: simulates into a temporary directory, points the options
/// at its files, and returns the directory (for the truth).
fn simulated(o: &mut Options) -> Result<Option<PathBuf>> {
    let Some(name) = o.scenario.clone() else {
        return Ok(None);
    };
    let scenario = crate::simulate::load(
        &name,
        o.seed,
        &crate::simulate::RandomArgs {
            scale: 1.0,
            family: Vec::new(),
            without_family: Vec::new(),
        },
    )?;
    let corpus = distillguard_simulator::Corpus::load(&scenario.corpus)
        .with_context(|| format!("loading corpus {:?}", scenario.corpus))?;
    let dir = std::env::temp_dir().join(format!(
        "distillguard-{}-seed{}-{}",
        scenario.name,
        o.seed,
        std::process::id()
    ));
    let bar = progress::Bar::new(!o.quiet);
    let summary = distillguard_simulator::simulate(&scenario, o.seed, &corpus, &dir, &bar)?;
    drop(bar);
    let _ = writeln!(
        io::stderr(),
        "simulated {} (seed {}): {} events from {} accounts ({} attack) into {}",
        scenario.name,
        o.seed,
        summary.events,
        summary.accounts,
        summary.attack_accounts,
        dir.display()
    );
    o.inputs = vec![dir.join("events.jsonl.gz")];
    o.accounts = Some(dir.join("accounts.jsonl"));
    o.models = Some(dir.join("models.jsonl"));
    Ok(Some(dir))
}

/// After `--scenario`: how the report compares with the world's truth.
fn against_truth(report: &Report, dir: &Path) -> Result<String> {
    let (truth, _) =
        RecordReader::<distillguard_core::TruthRecord>::open(&dir.join("truth.jsonl"))?
            .read_all(true)?;
    let flagged: std::collections::HashSet<&str> = report
        .accounts
        .iter()
        .filter(|a| a.verdict.is_flagged())
        .map(|a| a.account_id.as_str())
        .collect();
    let attack: Vec<&distillguard_core::TruthRecord> = truth
        .iter()
        .filter(|t| t.label == distillguard_core::Label::Attack)
        .collect();
    let caught = attack
        .iter()
        .filter(|t| flagged.contains(t.account_id.as_str()))
        .count();
    let honest = truth.len() - attack.len();
    let fp = truth
        .iter()
        .filter(|t| {
            t.label == distillguard_core::Label::Benign && flagged.contains(t.account_id.as_str())
        })
        .count();
    Ok(format!(
        "against the simulated truth: {caught} of {} attack accounts flagged ({:.1}%), {fp} of {honest} honest accounts flagged; `distillguard eval --report R --truth {}` scores a JSON report in full",
        attack.len(),
        100.0 * caught as f64 / attack.len().max(1) as f64,
        dir.join("truth.jsonl").display()
    ))
}

pub(crate) fn run(mut o: Options) -> Result<ExitCode> {
    let sim_dir = simulated(&mut o)?;
    // Batch files become a temporary event log (removed at the end).
    use crate::batch_input::InputFormat;
    let parse = match o.batch.input_format {
        InputFormat::Litellm => Parse::One(
            distillguard_core::import::litellm::AccountFrom::from(o.batch.litellm_account).parser(),
        ),
        InputFormat::Otlp | InputFormat::OtlpProto => {
            Parse::Many(distillguard_core::import::otel::parse_line)
        }
        InputFormat::Kong => Parse::One(distillguard_core::import::kong::parse_line),
        InputFormat::Helicone => Parse::Many(distillguard_core::import::helicone::parse_line),
        InputFormat::Events | InputFormat::OpenaiBatch | InputFormat::AnthropicBatch => {
            Parse::One(distillguard_core::parse_event_line)
        }
    };
    let converted = match o.batch.input_format {
        InputFormat::Events
        | InputFormat::Litellm
        | InputFormat::Otlp
        | InputFormat::Kong
        | InputFormat::Helicone => None,
        InputFormat::OtlpProto => {
            let c = crate::batch_input::convert_otlp_proto(&o.inputs, o.strict)?;
            o.inputs = vec![c.path.clone()];
            Some(c)
        }
        _ => {
            let c = crate::batch_input::convert(&o.batch, &o.inputs, o.strict)?;
            if !o.quiet {
                let _ = writeln!(
                    io::stderr(),
                    "batch: {} requests, {} results joined by custom_id{}",
                    c.requests,
                    c.results,
                    if c.malformed > 0 {
                        format!(", {} malformed lines", c.malformed)
                    } else {
                        String::new()
                    }
                );
            }
            o.inputs = vec![c.path.clone()];
            Some(c)
        }
    };
    // The config file: parsed (unknown keys are errors), then validated.
    let (config, config_dir): (AnalyzeConfig, Option<PathBuf>) = match &o.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let c: AnalyzeConfig =
                toml::from_str(&text).with_context(|| format!("config {}", p.display()))?;
            if let Err(why) = c.validate() {
                bail!("config {}: {why}", p.display());
            }
            (c, p.parent().map(Path::to_path_buf))
        }
        None => (AnalyzeConfig::default(), None),
    };
    // --weights wins over the config's `weights`, which is relative to the config file.
    let weights_path = o.weights.clone().or_else(|| {
        let w = config.weights.as_ref()?;
        Some(
            config_dir
                .as_ref()
                .map_or_else(|| PathBuf::from(w), |d| d.join(w)),
        )
    });
    let weights = match weights_path {
        Some(p) => {
            let w = serde_json::from_str::<Weights>(
                &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{}: not a weights file", p.display()))?;
            if let Err(why) = w.check() {
                bail!("{}: {why}", p.display());
            }
            w
        }
        None => Weights::embedded(),
    };
    let thresholds = config.thresholds.unwrap_or(weights.thresholds);
    if let Err(why) = thresholds.validate() {
        bail!("config: thresholds: {why}");
    }
    let link = config.link.unwrap_or_default();
    let mut intel = Intel::default();
    for p in &o.intel {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let i = Intel::from_json(&text).with_context(|| format!("intel {}", p.display()))?;
        if i.unsupported > 0 {
            let _ = writeln!(
                io::stderr(),
                "intel {}: {} indicator comparisons not understood, skipped ({} used)",
                p.display(),
                i.unsupported,
                i.comparisons
            );
        }
        intel = intel.merge(i);
    }
    let (known, skipped) =
        distillguard_pipeline::Known::load(o.accounts.as_deref(), o.models.as_deref(), o.strict)?;
    report_bad_lines(&skipped.accounts, "accounts");
    report_bad_lines(&skipped.models, "models");
    let distillguard_pipeline::Known { accounts, models } = known;
    let per = PerRequest {
        intel: &intel,
        link_keys: link.enabled,
    };
    let started = std::time::Instant::now();
    let bar = progress::Bar::new(!o.quiet);
    let window_ms = i64::from(config.reorder_window_secs.unwrap_or(300)) * 1000;
    let new_fold = || {
        let mut engine = Engine::new(&weights, thresholds, &models, accounts.clone());
        engine.keep_timelines(o.timeline);
        Fold::new(engine, link, &accounts, &intel)
    };
    // Stream through the reorder buffer. Sort the whole log instead when it
    // is more out of order than the window, or comes from standard input
    // (which cannot be read a second time).
    let mut fold = new_fold();
    let mut read_secs = 0.0;
    let read;
    let streamed = if o.inputs.iter().all(|p| p.as_os_str() != "-") {
        stream_fold(&o.inputs, parse, o.strict, &bar, &mut fold, window_ms, &per)?
    } else {
        Streamed::Late(None)
    };
    let order_note = match streamed {
        Streamed::Done { read: r, peak } => {
            read = r;
            format!("streamed (reorder buffer peak: {peak} records)")
        }
        Streamed::Late(late) => {
            fold = new_fold();
            let (recs, r) = read_records(&o.inputs, parse, o.strict, &bar, &per)?;
            read = r;
            read_secs = started.elapsed().as_secs_f64();
            distillguard_core::progress::Progress::stage(&bar, "scoring", Some(recs.len() as u64));
            let order = time_order(&recs);
            for (i, &k) in order.iter().enumerate() {
                fold.process(&recs[k as usize]);
                if i % 4096 == 4095 {
                    distillguard_core::progress::Progress::advance(&bar, 4096);
                }
            }
            match late {
                Some(l) => format!(
                    "sorted whole: a line came {:.0}s behind the reorder window",
                    l.behind_ms as f64 / 1000.0
                ),
                None => "sorted whole (standard input)".into(),
            }
        }
    };
    let events = fold.events();
    let secs = started.elapsed().as_secs_f64();
    let mut read = read;
    if let Some(c) = &converted {
        // Batch lines that did not parse never reached the event log.
        read.lines += c.malformed;
        read.malformed += c.malformed;
    }
    let mut report = fold.finish(o.all);
    drop(bar);
    if o.samples > 0 {
        add_samples(&mut report, &o.inputs, parse, o.samples)?;
    }
    let st = &mut report.stats;
    st.insert("seconds".into(), ((secs * 100.0).round() / 100.0).into());
    st.insert("events_out_of_order".into(), read.out_of_order.into());
    st.insert("lines".into(), read.lines.into());
    st.insert("malformed_lines".into(), read.malformed.into());
    if !read.truncated.is_empty() {
        st.insert("truncated_inputs".into(), read.truncated.clone().into());
    }
    if read_secs > 0.0 {
        st.insert(
            "seconds_reading".into(),
            ((read_secs * 100.0).round() / 100.0).into(),
        );
    }
    st.insert("order".into(), order_note.into());
    st.insert(
        "events_per_second".into(),
        ((events as f64 / secs.max(1e-9)).round()).into(),
    );
    st.insert("weights".into(), weights.provenance.clone().into());
    let mut sink: Box<dyn Write> = match &o.out {
        Some(p) => Box::new(io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(io::stdout().lock()),
    };
    match o.format {
        ReportFormat::Json => {
            serde_json::to_writer(&mut sink, &report)?;
            writeln!(sink)?;
        }
        ReportFormat::Jsonl => {
            for a in &report.accounts {
                serde_json::to_writer(&mut sink, a)?;
                writeln!(sink)?;
            }
        }
        ReportFormat::Table => table(&mut sink, &report, events, secs, &weights.provenance)?,
    }
    sink.flush()?;
    if let (Some(p), false) = (&o.out, o.quiet) {
        let flagged = report
            .accounts
            .iter()
            .filter(|a| a.verdict.is_flagged())
            .count();
        let _ = writeln!(
            io::stderr(),
            "{events} events, {} accounts: {flagged} flagged, {} campaigns, {} keys flagged; report written to {} in {secs:.1}s",
            report.stats.get("accounts").cloned().unwrap_or_default(),
            report.campaigns.len(),
            report
                .keys
                .iter()
                .filter(|k| k.verdict.is_flagged())
                .count(),
            p.display()
        );
        if matches!(o.format, ReportFormat::Json) {
            let _ = writeln!(
                io::stderr(),
                "look at it in a browser: distillguard console {}{}",
                p.display(),
                match o.inputs.as_slice() {
                    [log] if log.as_os_str() != "-" => format!(" --events {}", log.display()),
                    _ => String::new(),
                }
            );
        }
    }
    if let Some(dir) = &sim_dir {
        let mut line = against_truth(&report, dir)?;
        // The simulated log is the bulk of the directory (436 MB for
        // `default`); the truth and account records stay for `eval`.
        let log = dir.join("events.jsonl.gz");
        if std::fs::remove_file(&log).is_ok() {
            line.push_str(&format!(
                " (the simulated log was removed; `distillguard simulate --scenario {} --seed {} --out DIR` writes it again)",
                o.scenario.as_deref().unwrap_or("default"),
                o.seed
            ));
        }
        if o.format == ReportFormat::Table && o.out.is_none() {
            writeln!(io::stdout().lock(), "\n{line}")?;
        } else {
            let _ = writeln!(io::stderr(), "{line}");
        }
    }
    Ok(input_verdict(events, &read, o.max_malformed))
}

/// Exit status for what was read (the report is written either way): 2
/// when no event could be read, when a file failed part-way, or when the
/// share of malformed lines is above `max_malformed`.
fn input_verdict(events: u64, read: &ReadSummary, max_malformed: f64) -> ExitCode {
    let mut err = io::stderr().lock();
    let mut code = ExitCode::SUCCESS;
    if events == 0 {
        let _ = writeln!(
            err,
            "error: no valid event was read ({} lines, {} malformed)",
            read.lines, read.malformed
        );
        code = ExitCode::from(2);
    } else if read.lines > 0 {
        let share = read.malformed as f64 / read.lines as f64;
        if share > max_malformed {
            let _ = writeln!(
                err,
                "error: {} of {} lines are malformed ({:.1}%), above --max-malformed {}",
                read.malformed,
                read.lines,
                share * 100.0,
                max_malformed
            );
            code = ExitCode::from(2);
        }
    }
    if !read.truncated.is_empty() {
        let _ = writeln!(
            err,
            "error: {} input(s) ended early: {}",
            read.truncated.len(),
            read.truncated.join(", ")
        );
        code = ExitCode::from(2);
    }
    code
}

fn table(
    sink: &mut dyn Write,
    report: &Report,
    events: u64,
    secs: f64,
    provenance: &str,
) -> Result<()> {
    writeln!(
        sink,
        "{events} events from {} accounts in {secs:.1}s; weights: {provenance}",
        report.stats.get("accounts").cloned().unwrap_or_default(),
    )?;
    if !report.campaigns.is_empty() {
        writeln!(sink, "\n{} campaigns", report.campaigns.len())?;
        writeln!(
            sink,
            "{:<18} {:>9} {:>10}  {:<26}why",
            "campaign", "accounts", "requests", "detected at"
        )?;
        for c in report.campaigns.iter().take(20) {
            let why = c
                .extra
                .get("reasons")
                .and_then(|r| r.get(0))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            let at = c.detected_at.map_or("–".to_string(), |t| t.to_string());
            // A number, not a JSON value: a value's Display ignores the
            // column's width, and the columns ran together.
            let requests = c
                .extra
                .get("requests")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            writeln!(
                sink,
                "{:<18} {:>9} {:>10}  {:<26}{}",
                c.campaign_id,
                c.accounts.len(),
                requests,
                at,
                why
            )?;
        }
        writeln!(sink)?;
    }
    writeln!(
        sink,
        "{:<24} {:>9} {:>7}  {:<26}top reason",
        "account", "verdict", "risk", "flagged at"
    )?;
    for a in report.accounts.iter().take(50) {
        let top = a
            .reasons
            .first()
            .map_or(String::new(), |r| r.detail.clone());
        let at = a.flagged_at.map_or("–".to_string(), |t| t.to_string());
        writeln!(
            sink,
            "{:<24} {:>9} {:>7.3}  {:<26}{}",
            a.account_id,
            a.verdict.as_str(),
            a.risk,
            at,
            top
        )?;
    }
    if report.accounts.len() > 50 {
        writeln!(
            sink,
            "… {} more (use --format json)",
            report.accounts.len() - 50
        )?;
    }
    Ok(())
}
