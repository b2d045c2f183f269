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
}

pub(crate) fn run(a: ConsoleArgs) -> Result<ExitCode> {
    let report = distillguard_eval::load_report(&a.report)?;
    let name = a.report.file_name().map_or_else(
        || a.report.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let console =
        Arc::new(distillguard_console::Console::offline(report, name).with_producer(a.producer));
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
