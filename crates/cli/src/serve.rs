//! `distillguard serve`: the gateway, with the operators' log on standard
//! error and Ctrl-C or SIGTERM as its shutdown.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// `serve`'s arguments.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Gateway configuration (TOML; see docs/gateway.md).
    #[arg(long)]
    config: PathBuf,
    /// Operators' log on standard error: one access line per request,
    /// warnings for faults; `json` for a log shipper.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// The least severe level logged (`warn`: faults only, no access
    /// lines).
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
}

/// The operators' log format.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Operators' logs on standard error.
pub(crate) fn init_logs(format: LogFormat, level: tracing::Level) {
    let log = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(level)
        .with_ansi(false);
    match format {
        LogFormat::Json => log.json().flatten_event(true).init(),
        LogFormat::Text => log.init(),
    }
}

pub(crate) fn run(a: ServeArgs) -> Result<ExitCode> {
    init_logs(a.log_format, a.log_level);
    let config = a.config;
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    let cfg = distillguard_gateway::Config::from_toml(&text)
        .with_context(|| format!("config {}", config.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scheme = if cfg.tls.cert.is_some() {
        "https"
    } else {
        "http"
    };
    // The signal handlers are installed before the address is printed.
    let shutdown = rt.block_on(async { distillguard_gateway::shutdown_signal() })?;
    rt.block_on(distillguard_gateway::serve(
        cfg,
        Some(config.clone()),
        |addr, internal| {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "distillguard gateway listening on {scheme}://{addr}");
            if let Some(i) = internal {
                let _ = writeln!(out, "internal endpoints (metrics, admin) on {scheme}://{i}");
            }
            let _ = out.flush();
        },
        shutdown,
    ))?;
    Ok(ExitCode::SUCCESS)
}
