//! `distillguard link`: the linker of a cluster. It folds every detector
//! worker's link records from NATS JetStream into campaigns, with the
//! rules `analyze` links by, and posts them to the board every gateway
//! enforces (see `docs/scale.md`).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::detect::{ClusterArgs, host, service};

#[derive(Args)]
pub(crate) struct LinkArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// This linker's name (on the board and in logs; default: the host).
    #[arg(long)]
    name: Option<String>,
    /// A worker silent (no record, no watermark) for this long no longer
    /// holds the others' records back; at start, records are held this
    /// long so that every live worker is heard first.
    #[arg(long, default_value_t = 10_000)]
    worker_timeout_ms: u64,
    /// On shutdown, write every campaign member here (JSONL: account_id,
    /// campaign_id), e.g. to compare with `analyze`.
    #[arg(long)]
    members_out: Option<std::path::PathBuf>,
}

pub(crate) fn run(a: LinkArgs) -> Result<ExitCode> {
    let c = a.cluster.resolve()?;
    if !c.bus.linker {
        tracing::warn!(
            "the cluster's config does not say [cluster.nats] linker = true: workers send link records only when it does (or with `detect --linker`)"
        );
    }
    if !c.link.enabled {
        anyhow::bail!("[link] enabled = false: there is nothing for a linker to do");
    }
    let known = distillguard_gateway::detector::Known::load(c.accounts.as_deref(), None)?;
    let cfg = distillguard_worker::linker::LinkerConfig {
        bus: c.bus,
        name: a.name.unwrap_or_else(|| format!("{}/linker", host())),
        reorder_ms: c.reorder_ms,
        worker_timeout: Duration::from_millis(a.worker_timeout_ms.max(1)),
        link: c.link,
        accounts: known.records.accounts,
        members_out: a.members_out,
    };
    let progress = Arc::new(distillguard_worker::linker::LinkerProgress::default());
    let p = Arc::clone(&progress);
    let line = move || {
        serde_json::json!({
            "folded": p.folded.load(Ordering::Relaxed),
            "duplicates": p.duplicates.load(Ordering::Relaxed),
            "late": p.late.load(Ordering::Relaxed),
            "posted": p.posted.load(Ordering::Relaxed),
        })
    };
    service(line, |shutdown| async move {
        distillguard_worker::linker::run(cfg, shutdown, progress)
            .await
            .context("linker")
    })
}
