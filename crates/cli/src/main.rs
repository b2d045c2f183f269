/*!
`distillguard`: the command-line front of the workspace.

Thin by design: parse arguments, call the library crates, print results
(tables for people on a terminal, JSON for programs) and report errors.
Results go to standard output, progress and diagnostics to standard error.
Exit codes: 0 success, 1 failure, 2 bad usage or bad input under `--strict`.
*/

/// mimalloc: parsing allocates many short strings on every core; glibc malloc
/// took about 15% of a `check` run, mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod analyze;
mod batch_input;
mod bench;
mod bus;
mod check;
mod config;
mod console;
mod detect;
mod eval;
mod exfil;
mod export;
mod fit;
mod fit_elicitation;
mod import_cmd;
mod keys;
mod mock;
mod output;
mod progress;
mod radioactivity;
mod simulate;
mod svg;
mod watermark;
mod wm_data;
mod wm_experiment;
mod wm_radio;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use distillguard_core::ReadError;

pub(crate) use output::{Format, beside, report_bad_lines};

#[derive(Parser)]
#[command(
    name = "distillguard",
    version,
    about = "Detect, stop and prove distillation attacks on LLM APIs",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum ExportCommand {
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

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum ImportFormat {
    /// Glasswally's labelled JSONL (github.com/m0rs3c0d3/Glasswally).
    Glasswally,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum BenchTarget {
    /// Template masking, MinHash and LSH bands.
    Sketches,
    /// Campaign linking over `--accounts` synthetic accounts.
    Link,
    /// Watermark detection speed (tokens per second on one core).
    Watermark,
    /// Detector state per account, measured at `--accounts` accounts.
    Accounts,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate API traffic with labelled distillation campaigns.
    Simulate(simulate::SimulateArgs),
    /// Detect distillation: score every account of event logs, in time order.
    Analyze(analyze::Options),
    /// API keys of the gateway (stored hashed), and the audit log of
    /// operator actions, in a SQLite file or PostgreSQL.
    Keys(keys::KeysArgs),
    /// The event bus of a cluster (NATS JetStream): replay a spill file.
    Bus(bus::BusArgs),
    /// A detector worker of a cluster: folds its partitions' events from
    /// NATS JetStream and posts verdicts to the board the gateways enforce.
    Detect(detect::DetectArgs),
    /// The gateway: an OpenAI/Anthropic-compatible proxy in front of model
    /// servers that records every request, detects distillation inline
    /// and enforces verdicts (block, throttle, withhold reasoning).
    Serve {
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
    },
    /// A deterministic OpenAI/Anthropic-compatible model server for tests,
    /// demos and benchmarks (optionally the watermarked reference teacher).
    UpstreamMock {
        /// Address to listen on (port 0: any free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// Models listed by /v1/models (any model name is answered).
        #[arg(long, default_value = "atlas-2-pro,atlas-3")]
        models: String,
        /// Delay before the first token (ms).
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Delay between streamed chunks (ms).
        #[arg(long, default_value_t = 0)]
        chunk_ms: u64,
        /// Add reasoning (OpenAI `reasoning_content`, Anthropic `thinking` blocks).
        #[arg(long)]
        reasoning: bool,
        /// Answer with the reference teacher, watermarked with this key
        /// (KGW γ 0.25 δ 2, h 1); default: canned filler text.
        #[arg(long)]
        watermark_key: Option<PathBuf>,
        /// Teacher training text: auto, embedded, or a path.
        #[arg(long, default_value = "auto")]
        corpus: String,
        /// Inject a fault into every answer: status:CODE, reset (after 256
        /// bytes), drip:MS (16 bytes every MS ms) or hang.
        #[arg(long)]
        fault: Option<distillguard_mock::Fault>,
    },
    /// Watermarks: keys, watermarked generation (reference model), detection.
    Watermark {
        #[command(subcommand)]
        cmd: watermark::WatermarkCommand,
    },
    /// Export a report's campaigns for other providers.
    Export {
        #[command(subcommand)]
        what: ExportCommand,
    },
    /// Fit the score's weights and thresholds on many labelled worlds
    /// (randomised, or labelled directories), leaving a family out if asked.
    Fit(fit::FitArgs),
    /// Leave-one-family-out: for each campaign family, fit on worlds
    /// without it and judge on worlds with it.
    Lofo(fit::LofoArgs),
    /// Train the learned elicitation classifier and measure it on styles,
    /// languages and phrasings held out of its training.
    FitElicitation(fit_elicitation::Args),
    /// Score an analysis report against the ground truth.
    Eval(eval::EvalArgs),
    /// Validate event logs: count events, report malformed lines.
    Check(check::CheckArgs),
    /// Convert a log in a foreign format into the event log (and truth).
    Import {
        /// The foreign log's format.
        #[arg(value_enum)]
        format: ImportFormat,
        /// The foreign log (`-` for standard input; gzip is detected).
        input: PathBuf,
        /// Output directory: events.jsonl.gz (time order) and truth.jsonl.
        #[arg(long)]
        out: PathBuf,
        /// Stretch the records' times over this many hours, order kept
        /// (Glasswally's log spans 0.11 s, which no real traffic does).
        #[arg(long)]
        spread_hours: Option<f64>,
        /// Stop at the first malformed line (exit code 2).
        #[arg(long)]
        strict: bool,
    },
    /// Measure the sketches: fingerprint speed on real prompts, and how
    /// template bands are shared across accounts in a labelled log.
    Bench {
        /// What to measure.
        #[arg(value_enum)]
        target: BenchTarget,
        /// Prompts to fingerprint (default: auto, as for simulate).
        #[arg(long, default_value = "auto")]
        corpus: String,
        /// A labelled event log (with truth.jsonl beside it) to measure band sharing on.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Accounts a band must be seen in to count as "shared".
        #[arg(long, default_value_t = 5)]
        min_accounts: usize,
        /// Also print the openings of the most shared honest prompts (raw
        /// prompt text: off by default, for simulated data).
        #[arg(long)]
        show_examples: bool,
        /// `accounts` target: how many accounts to hold.
        #[arg(long, default_value_t = 1_000_000)]
        accounts: u32,
    },
    /// List the built-in scenarios, or print one as TOML to start your own.
    Scenarios(simulate::ScenariosArgs),
    /// Exfiltration of weights and training data from cloud storage:
    /// analyze audit logs (CloudTrail, GCP, generic), simulate an
    /// organisation, evaluate.
    Exfil(exfil::ExfilArgs),
    /// The analyst's web console over a report (offline, read-only; the
    /// live console is the gateway's `/ui`).
    Console(console::ConsoleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<io::Error>()
                && io.kind() == io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            let strict = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<ReadError>(), Some(ReadError::Strict(_))));
            let _ = writeln!(io::stderr(), "error: {e:#}");
            if strict {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Simulate(a) => simulate::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Check(a) => check::run(a),
        Command::Import {
            format: ImportFormat::Glasswally,
            input,
            out,
            spread_hours,
            strict,
        } => import_cmd::glasswally(&input, &out, spread_hours, strict),
        Command::Bench {
            target: BenchTarget::Sketches,
            corpus,
            events,
            min_accounts,
            show_examples,
            ..
        } => bench::sketches(&corpus, events, min_accounts, show_examples),
        Command::Bench {
            target: BenchTarget::Accounts,
            accounts,
            ..
        } => bench::accounts(accounts),
        Command::Bench {
            target: BenchTarget::Link,
            accounts,
            ..
        } => bench::link(accounts),
        Command::Bench {
            target: BenchTarget::Watermark,
            ..
        } => bench::watermark(),
        Command::Scenarios(a) => simulate::scenarios(a),
        Command::Exfil(a) => exfil::run(a),
        Command::Console(a) => console::run(a),
        Command::Analyze(opts) => analyze::run(opts),
        Command::Export {
            what:
                ExportCommand::Stix {
                    report,
                    out,
                    producer,
                    salt,
                },
        } => export::stix(&report, out.as_deref(), producer, salt),
        Command::Watermark { cmd } => watermark::run(cmd),
        Command::Keys(args) => keys::run(args),
        Command::Bus(args) => bus::run(args),
        Command::Detect(args) => {
            init_logs(LogFormat::Text, tracing::Level::INFO);
            detect::run(args)
        }
        Command::Serve {
            config,
            log_format,
            log_level,
        } => {
            init_logs(log_format, log_level);
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
            let shutdown = rt.block_on(async { distillguard_gateway::shutdown_signal() })?;
            rt.block_on(distillguard_gateway::serve(
                cfg,
                Some(config.clone()),
                |addr, internal| {
                    let mut out = io::stdout().lock();
                    let _ = writeln!(out, "distillguard gateway listening on {scheme}://{addr}");
                    if let Some(i) = internal {
                        let _ =
                            writeln!(out, "internal endpoints (metrics, admin) on {scheme}://{i}");
                    }
                    let _ = out.flush();
                },
                shutdown,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::UpstreamMock {
            listen,
            models,
            latency_ms,
            chunk_ms,
            reasoning,
            watermark_key,
            corpus,
            fault,
        } => mock::run(
            &listen,
            &models,
            (latency_ms, chunk_ms),
            reasoning,
            watermark_key.as_deref(),
            &corpus,
            fault,
        ),
        Command::Fit(a) => fit::fit(a),
        Command::Lofo(a) => fit::lofo(a),
        Command::FitElicitation(a) => fit_elicitation::run(a),
    }
}

/// The operators' log format of `serve`.
/// Operators' logs on standard error.
fn init_logs(format: LogFormat, level: tracing::Level) {
    let log = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(level)
        .with_ansi(false);
    match format {
        LogFormat::Json => log.json().flatten_event(true).init(),
        LogFormat::Text => log.init(),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every subcommand says what it is for (`--help`
    /// with an empty line is a question the user cannot answer).
    #[test]
    fn every_argument_has_help() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let said = a
                    .get_help()
                    .or(a.get_long_help())
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                if said.trim().is_empty() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in c.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "distillguard", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
