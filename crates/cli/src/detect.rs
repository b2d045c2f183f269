//! `distillguard detect`: a detector worker of a cluster. It folds the
//! events of its partitions from NATS JetStream through the verdict
//! pipeline and posts verdicts to the board every gateway enforces (see
//! `docs/scale.md`).

use std::io::{self, Write};
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

/// What a worker and the linker share: the cluster's config and bus.
#[derive(Args)]
pub(crate) struct ClusterArgs {
    /// The cluster's gateway config: its `[cluster.nats]` (server,
    /// partitions, stream, subjects, board, linker), `keys_db` (where
    /// checkpoints go), `[detect]` (thresholds, account records, model
    /// releases) and `[link]` apply, so that workers judge as the gateways
    /// would. Flags given here win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The NATS server.
    #[arg(long)]
    nats: Option<String>,
    /// The events stream (default DISTILLGUARD_EVENTS; the link records'
    /// is its name with `_LINKS`).
    #[arg(long)]
    stream: Option<String>,
    /// The subjects' prefix (default distillguard.events).
    #[arg(long)]
    subject_prefix: Option<String>,
    /// The verdict board's bucket (default distillguard_verdicts).
    #[arg(long)]
    bucket: Option<String>,
    /// The cluster runs a linker (`distillguard link`): workers send link
    /// records and leave campaigns to it (as `[cluster.nats] linker`).
    #[arg(long)]
    linker: bool,
    /// Event time held back to put events (or link records) from several
    /// sources in order.
    #[arg(long, default_value_t = 2000)]
    reorder_ms: u64,
    /// Account records (JSONL), as `[detect] accounts` of the gateway.
    #[arg(long)]
    accounts: Option<PathBuf>,
}

/// The cluster's settings, from the config and the flags.
pub(crate) struct Cluster {
    pub gw: Option<distillguard_gateway::Config>,
    pub bus: distillguard_bus::BusConfig,
    pub detect: distillguard_gateway::config::Detect,
    pub link: distillguard_link::Config,
    pub accounts: Option<PathBuf>,
    pub reorder_ms: i64,
}

impl ClusterArgs {
    pub(crate) fn resolve(self) -> Result<Cluster> {
        let gw = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                Some(
                    distillguard_gateway::Config::from_toml(&text)
                        .with_context(|| format!("config {}", p.display()))?,
                )
            }
            None => None,
        };
        let from_config = gw.as_ref().and_then(|c| c.cluster.nats.clone());
        let mut bus = from_config
            .unwrap_or_else(|| distillguard_bus::BusConfig::new("nats://127.0.0.1:4222"));
        if let Some(u) = self.nats {
            bus.url = u;
        }
        if let Some(s) = self.stream {
            bus.stream = s;
        }
        if let Some(s) = self.subject_prefix {
            bus.subject_prefix = s;
        }
        if let Some(b) = self.bucket {
            bus.bucket = b;
        }
        bus.linker |= self.linker;
        bus.validate()?;
        let detect = gw.as_ref().map(|c| c.detect.clone()).unwrap_or_default();
        Ok(Cluster {
            accounts: self.accounts.or(detect.accounts.clone()),
            link: gw.as_ref().map(|c| c.link).unwrap_or_default(),
            gw,
            bus,
            detect,
            reorder_ms: i64::try_from(self.reorder_ms).unwrap_or(i64::MAX),
        })
    }
}

/// This host's name.
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[derive(Args)]
pub(crate) struct DetectArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The partitions this worker owns: FIRST-LAST (as 0-3) or one
    /// (default: all of them).
    #[arg(long)]
    partitions: Option<String>,
    /// Partitions of the event subjects in all (default 8).
    #[arg(long)]
    of: Option<NonZeroU16>,
    /// Where checkpoints are kept: `postgres://…` or a SQLite file
    /// (default: the config's keys_db, else distillguard.db).
    #[arg(long)]
    store: Option<String>,
    /// This worker's name (on the board and in logs; default: the host
    /// and the partitions).
    #[arg(long)]
    name: Option<String>,
    /// Quiet input for this long releases everything held.
    #[arg(long, default_value_t = 1000)]
    idle_flush_ms: u64,
    /// How often progress is checkpointed and acknowledged.
    #[arg(long, default_value_t = 1000)]
    checkpoint_ms: u64,
    /// Model releases (JSONL), as `[detect] models`.
    #[arg(long)]
    models: Option<PathBuf>,
    /// On shutdown, write every account's verdict here (JSONL: account_id,
    /// verdict, risk, campaign), e.g. to compare with `analyze`.
    #[arg(long)]
    verdicts_out: Option<PathBuf>,
    /// Save the whole state to the store this often once caught up (and
    /// when stopped), so that a restart on the same partitions resumes
    /// from it instead of folding the stream from its start; 0: never.
    #[arg(long, default_value_t = 300)]
    snapshot_secs: u64,
}

pub(crate) fn run(a: DetectArgs) -> Result<ExitCode> {
    let c = a.cluster.resolve()?;
    let mut bus = c.bus;
    if let Some(n) = a.of {
        bus.partitions = n;
    }
    let partitions = match &a.partitions {
        Some(r) => distillguard_worker::parse_range(r)?,
        None => 0..=bus.partitions.get() - 1,
    };
    let models = a.models.or(c.detect.models.clone());
    let known =
        distillguard_gateway::detector::Known::load(c.accounts.as_deref(), models.as_deref())?;
    let store = a
        .store
        .or_else(|| c.gw.as_ref().and_then(|g| g.keys_db.clone()))
        .unwrap_or_else(|| "distillguard.db".into());
    let name = a
        .name
        .unwrap_or_else(|| format!("{}/p{}-{}", host(), partitions.start(), partitions.end()));
    let cfg = distillguard_worker::WorkerConfig {
        bus,
        partitions,
        store,
        name,
        reorder_ms: c.reorder_ms,
        idle_flush: Duration::from_millis(a.idle_flush_ms),
        checkpoint_every: Duration::from_millis(a.checkpoint_ms.max(1)),
        thresholds: c.detect.thresholds,
        link: c.link,
        known,
        forgetting: distillguard_gateway::detector::Forgetting {
            idle: Duration::from_secs(c.detect.forget_idle_secs.get()),
            max_accounts: c.detect.max_accounts.get(),
        },
        verdicts_out: a.verdicts_out,
        snapshot_every: (a.snapshot_secs > 0).then(|| Duration::from_secs(a.snapshot_secs)),
    };
    let progress = Arc::new(distillguard_worker::Progress::default());
    let p = Arc::clone(&progress);
    let line = move || {
        serde_json::json!({
            "folded": p.folded.load(Ordering::Relaxed),
            "duplicates": p.duplicates.load(Ordering::Relaxed),
            "posted": p.posted.load(Ordering::Relaxed),
            "checkpoints": p.checkpoints.load(Ordering::Relaxed),
        })
    };
    service(line, |shutdown| async move {
        distillguard_worker::run(cfg, shutdown, progress)
            .await
            .context("detector worker")
    })
}

/// SIGTERM or Ctrl-C.
pub(crate) type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs a cluster service (a worker, the linker) until SIGTERM or
/// Ctrl-C: a progress line on standard error every ten seconds, and its
/// JSON summary on standard output at the end.
pub(crate) fn service<S, F>(
    progress: impl Fn() -> serde_json::Value + Send + 'static,
    run: impl FnOnce(Shutdown) -> F,
) -> Result<ExitCode>
where
    S: serde::Serialize,
    F: std::future::Future<Output = Result<S>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = rt.block_on(async {
        let shutdown: Shutdown = Box::pin(distillguard_gateway::shutdown_signal()?);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let _ = writeln!(io::stderr(), "{}", progress());
            }
        });
        run(shutdown).await
    })?;
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, &summary)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}
