/*!
`distillguard analyze`: event logs → per-request signals (on every core)
→ time order → detection engine → campaign linker → report.
*/

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use distillguard_core::report::{Report, Verdict};
use distillguard_core::{AccountInfo, AccountRecord, ReadError, RecordReader};
use distillguard_detect::engine::{Engine, Pre, Weights, pre};
use distillguard_detect::signals::request::capability::Capability;
use distillguard_link::{Activity, Key, Linker, campaign};
use distillguard_stix::Intel;

use crate::config::AnalyzeConfig;
use crate::{Format, progress, report_bad_lines};

/// One request as the fold sees it: the engine's record, the linker's keys
/// and the partner indicators it matched.
pub(crate) type Record = (Pre, Vec<Key>, Vec<u16>);

/// What the per-request work computes besides the engine's record.
pub(crate) struct PerRequest<'a> {
    pub intel: &'a Intel,
    /// Link keys (off when linking is: they cost allocations per request).
    pub link_keys: bool,
}

/// Per-request work, on the parsing threads.
pub(crate) fn record(
    line: &str,
    per: &PerRequest,
) -> Result<Record, distillguard_core::EventError> {
    let e = distillguard_core::parse_event_line(line)?;
    let p = pre(&e);
    let intel = per.intel;
    let keys = if per.link_keys || !intel.is_empty() {
        distillguard_link::event_keys(&e, p.template)
    } else {
        Vec::new()
    };
    let hits = if intel.is_empty() {
        Vec::new()
    } else {
        let template = keys
            .iter()
            .find(|k| k.kind == distillguard_link::Kind::Template)
            .map(|k| k.label.render());
        intel.match_request(&e.account_id, e.client.ip.as_deref(), template.as_deref())
    };
    let keys = if per.link_keys { keys } else { Vec::new() };
    Ok((p, keys, hits))
}

/// The engine and the linker, folded together in time order.
pub(crate) struct Fold {
    pub engine: Engine,
    linker: Linker,
    /// Engine index → linker index.
    link_of: Vec<u32>,
    link_ids: HashMap<String, u32>,
    link_names: Vec<String>,
    /// Partner indicator matches: account id → source → requests (0 for
    /// an account-record match).
    intel_hits: HashMap<String, std::collections::BTreeMap<u16, u64>>,
    intel_sources: Vec<distillguard_stix::import::Source>,
}

impl Fold {
    /// `accounts`: the account records; all are registered with the linker
    /// (in id order), so that accounts that never send a request can still
    /// be linked through their payment methods.
    pub fn new(
        engine: Engine,
        link: distillguard_link::Config,
        accounts: &HashMap<String, AccountInfo>,
        intel: &Intel,
    ) -> Fold {
        let mut linker = Linker::new(link);
        let mut ids: Vec<&String> = accounts.keys().collect();
        ids.sort();
        let mut link_ids = HashMap::with_capacity(ids.len());
        let mut link_names = Vec::with_capacity(ids.len());
        for (i, id) in ids.into_iter().enumerate() {
            link_ids.insert(id.clone(), i as u32);
            link_names.push(id.clone());
            if let Some(info) = accounts.get(id) {
                linker.register(i as u32, info);
            }
        }
        let mut intel_hits: HashMap<String, std::collections::BTreeMap<u16, u64>> = HashMap::new();
        if !intel.is_empty() {
            for (id, info) in accounts {
                if let Some(pm) = info.payment_fingerprint.as_deref() {
                    for s in intel.match_payment(pm) {
                        intel_hits
                            .entry(id.clone())
                            .or_default()
                            .entry(s)
                            .or_insert(0);
                    }
                }
            }
        }
        Fold {
            engine,
            linker,
            link_of: Vec::new(),
            link_ids,
            link_names,
            intel_hits,
            intel_sources: intel.sources.clone(),
        }
    }

    pub fn process(&mut self, (p, keys, hits): &Record) {
        for &s in hits {
            *self
                .intel_hits
                .entry(p.account_id.clone())
                .or_default()
                .entry(s)
                .or_insert(0) += 1;
        }
        let idx = self.engine.process(p);
        if !self.linker.cfg.enabled {
            return;
        }
        let li = match self.link_of.get(idx as usize) {
            Some(&li) => li,
            None => {
                let next = self.link_names.len() as u32;
                let li = *self.link_ids.entry(p.account_id.clone()).or_insert(next);
                if li == next {
                    self.link_names.push(p.account_id.clone());
                }
                self.link_of.push(li);
                li
            }
        };
        self.linker.observe(
            li,
            p.account.as_ref(),
            keys,
            Activity {
                ts: p.ts,
                output_tokens: p.output_tokens,
                capability: p.capability as u8,
                risk: self.engine.risk_now(idx),
                flagged: self.engine.is_flagged(idx),
            },
        );
    }

    /// The report: accounts (with campaign membership applied) and campaigns.
    pub fn finish(mut self, all: bool) -> Report {
        if !self.linker.cfg.enabled {
            let mut report = self.engine.report(all);
            self.apply_intel(&mut report);
            return report;
        }
        for li in 0..self.link_names.len() as u32 {
            if self.linker.requests_of(li) == 0 {
                self.linker.link_dormant(li);
            }
        }
        let mut report = self.engine.report(true);
        self.apply_intel(&mut report);
        let names: Vec<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
        let camps = campaign::campaigns(&mut self.linker, &self.link_names, &names);
        campaign::apply(&mut report, &mut self.linker, &camps, &self.link_ids);
        if !all {
            report.accounts.retain(|a| a.verdict != Verdict::Allow);
        }
        report.accounts.sort_by(|a, b| {
            b.verdict
                .is_flagged()
                .cmp(&a.verdict.is_flagged())
                .then(b.risk.total_cmp(&a.risk))
                .then(a.account_id.cmp(&b.account_id))
        });
        // Verdict counts after campaigns raised some.
        let mut counts: HashMap<Verdict, u64> = HashMap::new();
        for a in &report.accounts {
            *counts.entry(a.verdict).or_default() += 1;
        }
        for v in [Verdict::Monitor, Verdict::Throttle, Verdict::Block] {
            report.stats.insert(
                format!("verdict_{}", v.as_str()),
                counts.get(&v).copied().unwrap_or(0).into(),
            );
        }
        let linked: usize = report.campaigns.iter().map(|c| c.accounts.len()).sum();
        report
            .stats
            .insert("campaigns".into(), (report.campaigns.len() as u64).into());
        report
            .stats
            .insert("campaign_accounts".into(), (linked as u64).into());
        report
    }
}

impl Fold {
    /// Accounts that matched partner indicators gain a reason naming them,
    /// and at least "monitor".
    fn apply_intel(&self, report: &mut Report) {
        if self.intel_hits.is_empty() {
            return;
        }
        for a in &mut report.accounts {
            let Some(hits) = self.intel_hits.get(&a.account_id) else {
                continue;
            };
            let names: Vec<String> = hits
                .iter()
                .map(|(s, n)| {
                    let src = &self.intel_sources[*s as usize];
                    if *n == 0 {
                        format!("'{}' ({}) on its account record", src.name, src.id)
                    } else {
                        format!("'{}' ({}) on {n} requests", src.name, src.id)
                    }
                })
                .collect();
            a.reasons.insert(
                0,
                distillguard_core::report::Reason {
                    signal: "intel".into(),
                    value: hits.len() as f64,
                    contribution: 0.0,
                    detail: format!("matches partner indicator {}", names.join(", ")),
                },
            );
            if a.verdict < Verdict::Monitor {
                a.verdict = Verdict::Monitor;
            }
        }
    }
}

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

/// Reads event logs in parallel and hands each record to `each`, in file
/// order, with a progress stage per file named `verb`. Malformed lines are
/// reported (strict: the first stops the read). Returns how many records
/// came earlier in time than one before them.
fn read_each(
    inputs: &[PathBuf],
    strict: bool,
    bar: &progress::Bar,
    per: &PerRequest,
    verb: &str,
    mut each: impl FnMut(Record) -> Result<(), ReadError>,
) -> Result<u64, ReadError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut bad = Malformed::default();
    let mut out_of_order = 0u64;
    let mut last = i64::MIN;
    for path in inputs {
        distillguard_core::progress::Progress::stage(
            bar,
            &format!("{verb} {}", path.display()),
            None,
        );
        distillguard_core::parallel::par_read(
            path,
            workers,
            |l| record(l, per),
            |item| {
                distillguard_core::progress::Progress::advance(bar, 1);
                match item {
                    Ok(r) => {
                        out_of_order += (r.0.ts.0 < last) as u64;
                        last = last.max(r.0.ts.0);
                        each(r)
                    }
                    Err(e) => bad.line(e, strict),
                }
            },
        )?;
    }
    bad.finish();
    Ok(out_of_order)
}

/// Reads event logs into records (in parallel), in file order.
pub(crate) fn read_records(
    inputs: &[PathBuf],
    strict: bool,
    bar: &progress::Bar,
    per: &PerRequest,
) -> Result<(Vec<Record>, u64)> {
    let mut recs = Vec::new();
    let out_of_order = read_each(inputs, strict, bar, per, "reading", |r| {
        recs.push(r);
        Ok(())
    })?;
    Ok((recs, out_of_order))
}

enum Streamed {
    Done {
        out_of_order: u64,
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
    strict: bool,
    bar: &progress::Bar,
    fold: &mut Fold,
    window_ms: i64,
    per: &PerRequest,
) -> Result<Streamed> {
    let mut reorder = distillguard_detect::reorder::Reorder::<Record>::new(window_ms);
    let mut late = None;
    let read = read_each(inputs, strict, bar, per, "scoring", |rec| {
        reorder.push(rec, |r| fold.process(&r)).map_err(|l| {
            late = Some(l);
            ReadError::Stopped
        })
    });
    let out_of_order = match (read, late) {
        (_, Some(l)) => return Ok(Streamed::Late(Some(l))),
        (Err(e), None) => return Err(e.into()),
        (Ok(n), None) => n,
    };
    let peak = reorder.peak;
    reorder.finish(|r| fold.process(&r));
    Ok(Streamed::Done { out_of_order, peak })
}

pub(crate) fn read_accounts(
    path: Option<&Path>,
    strict: bool,
) -> Result<HashMap<String, AccountInfo>> {
    let Some(p) = path else {
        return Ok(Default::default());
    };
    let (rows, bad) = RecordReader::<AccountRecord>::open(p)?.read_all(strict)?;
    report_bad_lines(&bad, "accounts");
    Ok(rows.into_iter().map(AccountRecord::into_parts).collect())
}

pub(crate) fn read_models(
    path: Option<&Path>,
    strict: bool,
) -> Result<Vec<distillguard_core::ModelRelease>> {
    let Some(p) = path else { return Ok(Vec::new()) };
    let (rows, bad) = RecordReader::<distillguard_core::ModelRelease>::open(p)?.read_all(strict)?;
    report_bad_lines(&bad, "models");
    Ok(rows)
}

/// A second pass over the logs: up to `n` redacted prompts for each flagged
/// account, in file order. Redaction happens on the worker threads, and only
/// for flagged accounts: no other prompt text is ever kept.
fn add_samples(report: &mut Report, inputs: &[PathBuf], n: usize) -> Result<()> {
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
                let e = distillguard_core::parse_event_line(line)?;
                Ok(flagged.contains(&e.account_id).then(|| {
                    (
                        e.account_id,
                        distillguard_detect::redact::redact(&e.request.last_user_text),
                    )
                }))
            },
            |item| {
                if let Ok(Some((account, text))) = item {
                    let v = got.entry(account).or_default();
                    if v.len() < n && !text.is_empty() {
                        v.push(text);
                    }
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
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
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
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
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
    /// Partners' STIX 2.1 bundles: matching accounts gain a reason
    /// naming the indicator (and at least "monitor").
    #[arg(long)]
    pub intel: Vec<PathBuf>,
    /// Stop at the first malformed line (exit code 2).
    #[arg(long)]
    pub strict: bool,
    #[arg(long, short)]
    pub quiet: bool,
}

pub(crate) fn run(o: Options) -> Result<ExitCode> {
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
        Some(p) => serde_json::from_str::<Weights>(
            &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{}: not a weights file", p.display()))?,
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
    let accounts = read_accounts(o.accounts.as_deref(), o.strict)?;
    let models = read_models(o.models.as_deref(), o.strict)?;
    let per = PerRequest {
        intel: &intel,
        link_keys: link.enabled,
    };
    let started = std::time::Instant::now();
    let bar = progress::Bar::new(!o.quiet);
    let window_ms = i64::from(config.reorder_window_secs.unwrap_or(300)) * 1000;
    let new_fold = || {
        Fold::new(
            Engine::new(&weights, thresholds, &models, accounts.clone()),
            link,
            &accounts,
            &intel,
        )
    };
    // Stream through the reorder buffer. Sort the whole log instead when it
    // is more out of order than the window, or comes from standard input
    // (which cannot be read a second time).
    let mut fold = new_fold();
    let mut read_secs = 0.0;
    let out_of_order;
    let streamed = if o.inputs.iter().all(|p| p.as_os_str() != "-") {
        stream_fold(&o.inputs, o.strict, &bar, &mut fold, window_ms, &per)?
    } else {
        Streamed::Late(None)
    };
    let order_note = match streamed {
        Streamed::Done {
            out_of_order: n,
            peak,
        } => {
            out_of_order = n;
            format!("streamed (reorder buffer peak: {peak} records)")
        }
        Streamed::Late(late) => {
            fold = new_fold();
            let (recs, n) = read_records(&o.inputs, o.strict, &bar, &per)?;
            out_of_order = n;
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
    let events = fold.engine.events;
    let secs = started.elapsed().as_secs_f64();
    let mut report = fold.finish(o.all);
    drop(bar);
    if o.samples > 0 {
        add_samples(&mut report, &o.inputs, o.samples)?;
    }
    let st = &mut report.stats;
    st.insert("seconds".into(), ((secs * 100.0).round() / 100.0).into());
    st.insert("events_out_of_order".into(), out_of_order.into());
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
        Format::Json => {
            serde_json::to_writer(&mut sink, &report)?;
            writeln!(sink)?;
        }
        Format::Jsonl => {
            for a in &report.accounts {
                serde_json::to_writer(&mut sink, a)?;
                writeln!(sink)?;
            }
        }
        Format::Table => table(&mut sink, &report, events, secs, &weights.provenance)?,
    }
    sink.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The processing order of records (see `engine::time_order`).
fn time_order(recs: &[Record]) -> Vec<u32> {
    let mut keys: Vec<(i64, u64, u32)> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.0.ts.0, r.0.account_key, i as u32))
        .collect();
    keys.sort_unstable();
    keys.into_iter().map(|k| k.2).collect()
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
            "{:<18}{:>9}{:>10}  {:<26}why",
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
            writeln!(
                sink,
                "{:<18}{:>9}{:>10}  {:<26}{}",
                c.campaign_id,
                c.accounts.len(),
                c.extra.get("requests").cloned().unwrap_or_default(),
                at,
                why
            )?;
        }
        writeln!(sink)?;
    }
    writeln!(
        sink,
        "{:<24}{:>9}{:>7}  {:<26}top reason",
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
            "{:<24}{:>9}{:>7.3}  {:<26}{}",
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
