//! `distillguard bus`: the event bus of a cluster (NATS JetStream).

use std::io::{self, Write};
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Args)]
pub(crate) struct BusArgs {
    #[command(subcommand)]
    cmd: BusCommand,
}

#[derive(Subcommand)]
enum BusCommand {
    /// Publish a gateway's spill file (events the bus could not take
    /// while NATS was down) into the bus. The file is moved aside while it
    /// is replayed and removed when every line was acknowledged; events
    /// already in the stream within its duplicate window are not stored
    /// twice, and workers fold each event id once.
    Replay {
        /// The spill file (`[cluster.nats] spill` of the gateway).
        file: PathBuf,
        /// The NATS server.
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats: String,
        /// Partitions of the event subjects (as the gateways' config).
        #[arg(long, default_value_t = NonZeroU16::new(8).unwrap_or(NonZeroU16::MIN))]
        partitions: NonZeroU16,
        /// The events stream.
        #[arg(long, default_value = "DISTILLGUARD_EVENTS")]
        stream: String,
        /// The subjects' prefix (as the gateways' config).
        #[arg(long, default_value = distillguard_bus::SUBJECT_PREFIX)]
        subject_prefix: String,
    },
}

pub(crate) fn run(args: BusArgs) -> Result<ExitCode> {
    match args.cmd {
        BusCommand::Replay {
            file,
            nats,
            partitions,
            stream,
            subject_prefix,
        } => {
            let mut cfg = distillguard_bus::BusConfig::new(&nats);
            cfg.partitions = partitions;
            cfg.stream = stream;
            cfg.subject_prefix = subject_prefix;
            cfg.validate()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let stats = rt
                .block_on(distillguard_bus::replay(&cfg, &file))
                .with_context(|| format!("replaying {}", file.display()))?;
            let mut err = io::stderr().lock();
            for (line, why) in &stats.malformed {
                writeln!(err, "{}:{line}: {why}", stats.moved_to.display())?;
            }
            let mut out = io::stdout().lock();
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "published": stats.published,
                    "malformed": stats.malformed.len(),
                    "file": stats.moved_to,
                    "removed": stats.removed,
                })
            )?;
            Ok(match stats.malformed.is_empty() {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(1),
            })
        }
    }
}
