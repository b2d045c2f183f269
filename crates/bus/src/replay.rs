//! Replaying a spill file into the bus.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::{BusConfig, BusError, Head, ensure_stream, headers};

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// Lines acknowledged by the bus.
    pub published: u64,
    /// Lines that are not events (line number and why); they are kept in
    /// the moved file, which is then not removed.
    pub malformed: Vec<(u64, String)>,
    /// Where the file was moved while it was replayed (removed when every
    /// line was published).
    pub moved_to: PathBuf,
    pub removed: bool,
}

/// Publishes every line of the spill file at `path` into the bus, with
/// acknowledgements, each under its own id (so that a line already in the
/// stream within its duplicate window is not stored twice).
///
/// The file is first moved aside (`<path>.replaying`), so that a gateway
/// spilling meanwhile starts a new file, and is removed when every line
/// was published. A file already named `….replaying` (an interrupted
/// replay) is replayed in place. Fails, keeping the file, on the first
/// publish the bus does not acknowledge.
pub async fn replay(cfg: &BusConfig, path: &Path) -> Result<ReplayStats, BusError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| BusError::Io { path: p, source }
    };
    let client = crate::connect(&cfg.url).await?;
    let js = jetstream::new(client.clone());
    ensure_stream(&js, cfg).await?;
    let moved = match path.extension().is_some_and(|e| e == "replaying") {
        true => path.to_path_buf(),
        false => {
            let mut m = path.as_os_str().to_os_string();
            m.push(".replaying");
            let m = PathBuf::from(m);
            if m.exists() {
                return Err(BusError::Io {
                    path: m.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "an interrupted replay's file: replay it first",
                    ),
                });
            }
            std::fs::rename(path, &m).map_err(io(path))?;
            m
        }
    };
    let file = std::fs::File::open(&moved).map_err(io(&moved))?;
    let mut stats = ReplayStats {
        moved_to: moved.clone(),
        ..Default::default()
    };
    let mut in_flight = FuturesUnordered::new();
    let wait = Duration::from_millis(cfg.ack_timeout_ms.get());
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.map_err(io(&moved))?;
        if line.trim().is_empty() {
            continue;
        }
        let head: Head = match serde_json::from_str(&line) {
            Ok(h) => h,
            Err(e) => {
                stats.malformed.push((n, e.to_string()));
                continue;
            }
        };
        let Some(id) = head.id else {
            stats
                .malformed
                .push((n, "no \"id\" (spill files carry one per event)".into()));
            continue;
        };
        let subj = cfg.subject_of(&head.account_id);
        let ack = js
            .publish_with_headers(subj.clone(), headers(&id), line.into())
            .await
            .map_err(|e| BusError::Publish {
                subject: subj.clone(),
                reason: format!("line {n}: {e}"),
            })?;
        in_flight.push(async move {
            match tokio::time::timeout(wait, ack).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(BusError::Publish {
                    subject: subj,
                    reason: format!("line {n}: {e}"),
                }),
                Err(_) => Err(BusError::Publish {
                    subject: subj,
                    reason: format!("line {n}: no acknowledgement within {wait:?}"),
                }),
            }
        });
        if in_flight.len() >= 256
            && let Some(r) = in_flight.next().await
        {
            r?;
            stats.published += 1;
        }
    }
    while let Some(r) = in_flight.next().await {
        r?;
        stats.published += 1;
    }
    if stats.malformed.is_empty() {
        std::fs::remove_file(&moved).map_err(io(&moved))?;
        stats.removed = true;
    }
    Ok(stats)
}
