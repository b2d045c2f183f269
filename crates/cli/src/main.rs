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
mod link;
mod mock;
mod output;
mod progress;
mod radioactivity;
mod serve;
mod simulate;
mod svg;
mod watermark;
mod wm_data;
mod wm_experiment;
mod wm_radio;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use distillguard_core::ReadError;

pub(crate) use output::{Format, ReportFormat, beside, report_bad_lines};

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
    /// The linker of a cluster: links the accounts of every worker's
    /// partitions into campaigns and posts them to the board.
    Link(link::LinkArgs),
    /// The gateway: an OpenAI/Anthropic-compatible proxy in front of model
    /// servers that records every request, detects distillation inline
    /// and enforces verdicts (block, throttle, withhold reasoning).
    Serve(serve::ServeArgs),
    /// A deterministic OpenAI/Anthropic-compatible model server for tests,
    /// demos and benchmarks (optionally the watermarked reference teacher).
    UpstreamMock(mock::MockArgs),
    /// Watermarks: keys, watermarked generation (reference model), detection.
    Watermark {
        #[command(subcommand)]
        cmd: watermark::WatermarkCommand,
    },
    /// Export a report's campaigns for other providers.
    Export {
        #[command(subcommand)]
        what: export::ExportCommand,
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
    Import(import_cmd::ImportArgs),
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
        Command::Import(a) => import_cmd::run(a),
        Command::Scenarios(a) => simulate::scenarios(a),
        Command::Exfil(a) => exfil::run(a),
        Command::Console(a) => console::run(a),
        Command::Analyze(opts) => analyze::run(opts),
        Command::Export { what } => export::run(what),
        Command::Watermark { cmd } => watermark::run(cmd),
        Command::Keys(args) => keys::run(args),
        Command::Bus(args) => bus::run(args),
        Command::Detect(args) => {
            serve::init_logs(serve::LogFormat::Text, tracing::Level::INFO);
            detect::run(args)
        }
        Command::Link(args) => {
            serve::init_logs(serve::LogFormat::Text, tracing::Level::INFO);
            link::run(args)
        }
        Command::Serve(a) => serve::run(a),
        Command::UpstreamMock(a) => mock::run(a),
        Command::Fit(a) => fit::fit(a),
        Command::Lofo(a) => fit::lofo(a),
        Command::FitElicitation(a) => fit_elicitation::run(a),
    }
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
