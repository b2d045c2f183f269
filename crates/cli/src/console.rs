//! `distillguard console`: the analyst's web console over a report of
//! `analyze`, offline and read-only (the live console is the gateway's
//! `/ui`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub(crate) struct ConsoleArgs {
    /// A report of `analyze --format json` (with `--timeline` for the
    /// account timelines and campaign activity).
    report: PathBuf,
    /// Where to listen. The console has no login offline: keep it on the
    /// loopback address, or behind your own access control.
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// The organisation STIX bundles are produced by.
    #[arg(long, default_value = "distillguard")]
    producer: String,
    /// The event log the report came from: campaigns' pages gain their
    /// synchrony timeline (members acting per ten-minute window) and
    /// requests and output tokens over time. Read once, at start.
    #[arg(long, value_name = "LOG")]
    events: Vec<PathBuf>,
    /// A report of `exfil analyze --format json`: its principals and alerts
    /// are shown beside the campaigns (an Exfiltration page, and counts on
    /// the overview).
    #[arg(long, value_name = "REPORT")]
    exfil: Option<PathBuf>,
}

/// Reads the campaign members' requests of the logs into windows; a bad
/// line is counted and the first one named, and the rest is kept.
fn read_activity(
    report: &distillguard_core::Report,
    logs: &[PathBuf],
) -> Result<std::collections::HashMap<String, Vec<distillguard_console::activity::Window>>> {
    let mut b = distillguard_console::activity::ActivityBuilder::new(report);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut bad = 0u64;
    let mut first_bad: Option<String> = None;
    for log in logs {
        let wanted = |line: &str| -> Result<(String, i64, u32), distillguard_core::EventError> {
            let e = distillguard_core::parse_event_line(line)?;
            Ok((
                e.account_id,
                e.ts.0,
                e.response.and_then(|r| r.output_tokens).unwrap_or(0),
            ))
        };
        distillguard_core::parallel::par_read(log, workers, wanted, |item| {
            match item {
                Ok((account, ts, tokens)) => {
                    if b.wants(&account) {
                        b.add(&account, distillguard_core::Timestamp(ts), tokens);
                    }
                }
                Err(e) => {
                    bad += 1;
                    if first_bad.is_none() {
                        first_bad = Some(e.to_string());
                    }
                }
            }
            Ok(())
        })
        .with_context(|| format!("reading {}", log.display()))?;
    }
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "events: {} requests of campaign members read into ten-minute windows",
        b.events()
    )?;
    if let Some(f) = first_bad {
        writeln!(err, "events: {bad} malformed lines skipped; the first: {f}")?;
    }
    Ok(b.finish(report))
}

pub(crate) fn run(a: ConsoleArgs) -> Result<ExitCode> {
    let report = distillguard_eval::load_report(&a.report)?;
    let name = a.report.file_name().map_or_else(
        || a.report.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let exfil = a
        .exfil
        .as_deref()
        .map(crate::exfil::load_report)
        .transpose()?;
    let activity = match a.events.is_empty() {
        true => None,
        false => Some(read_activity(&report, &a.events)?),
    };
    let mut console =
        distillguard_console::Console::offline(report, name).with_producer(a.producer);
    if let Some(act) = activity {
        console = console.with_activity(act);
    }
    if let Some(x) = exfil {
        console = console.with_exfil(x);
    }
    let console = Arc::new(console);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("listening on {}", a.listen))?;
        let addr = listener.local_addr()?;
        // The address first, on its own line: scripts read it.
        let mut out = std::io::stdout().lock();
        writeln!(out, "console: http://{addr}/")?;
        out.flush()?;
        drop(out);
        let shutdown = distillguard_gateway::shutdown_signal()?;
        distillguard_console::serve(listener, console, shutdown)
            .await
            .context("serving the console")?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
