/*!
The gateway's event log: every request as a line of the event-log format
(`docs/event-log.md`), so that `distillguard analyze` can replay what the
gateway saw.

It is opt-in (`[log] path`), because the log holds raw request bodies, and
raw prompt text is not persisted unless configured. Lines go through a
bounded queue to a writer thread (a full queue drops and counts, never
blocking); the writer thread formats them, off the request path. The
file rotates at `max_bytes`: `path` becomes `path.1`, and
older ones shift up to `keep`.

Durability (`durability`):
- `"interval"` (the default): the writer hands each batch to the OS as
  soon as it is formed, and naps `flush_interval_ms` when the queue is
  empty. A killed gateway (`kill -9`) loses only lines still in the
  queue: requests answered within about one interval of the kill. A
  machine crash also loses what the OS had not yet written to disk.
- `"sync"`: a request's answer is not complete for the client (its last
  bytes are held) until its line has been written and `fdatasync`ed;
  batches share one sync (group commit). Nothing acknowledged is lost,
  by a kill or a crash. A line that cannot be written, or a full queue,
  fails the answer instead of dropping the line.
*/

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::Receiver;

use serde::Deserialize;

use crate::observed::Observed;
use crate::queue::{Feeder, drain};

/// The `[log]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub path: PathBuf,
    #[serde(default = "default_max")]
    pub max_bytes: u64,
    #[serde(default = "default_keep")]
    pub keep: u32,
    #[serde(default)]
    pub durability: Durability,
    /// The writer's nap when its queue is empty (the loss window of
    /// `interval`).
    #[serde(default = "default_interval")]
    pub flush_interval_ms: std::num::NonZeroU64,
}

/// What a request's answer waits for (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    #[default]
    Interval,
    Sync,
}

fn default_interval() -> std::num::NonZeroU64 {
    std::num::NonZeroU64::new(5).unwrap_or(std::num::NonZeroU64::MIN)
}

fn default_max() -> u64 {
    256 << 20
}
fn default_keep() -> u32 {
    8
}

type Item = (Arc<Observed>, Option<tokio::sync::oneshot::Sender<()>>);

/// On shutdown (drop), the writer drains its queue and flushes before the
/// process exits.
pub struct EventLog {
    queue: Feeder<Item>,
    sync: bool,
    pub dropped: AtomicU64,
}

fn rotate(cfg: &LogConfig) -> std::io::Result<()> {
    let name = |i: u32| {
        let mut p = cfg.path.clone().into_os_string();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    };
    for i in (1..cfg.keep.max(1)).rev() {
        if name(i).exists() {
            std::fs::rename(name(i), name(i + 1))?;
        }
    }
    std::fs::rename(&cfg.path, name(1))
}

fn open(cfg: &LogConfig) -> std::io::Result<(std::io::BufWriter<std::fs::File>, u64)> {
    if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Raw prompts: readable by the owner only.
    let f = distillguard_storage::owner_only()
        .create(true)
        .append(true)
        .open(&cfg.path)?;
    let len = f.metadata()?.len();
    Ok((std::io::BufWriter::new(f), len))
}

impl EventLog {
    pub fn start(cfg: LogConfig) -> std::io::Result<EventLog> {
        let sync = cfg.durability == Durability::Sync;
        let nap = std::time::Duration::from_millis(cfg.flush_interval_ms.get());
        let (mut w, mut size) = open(&cfg)?;
        let queue = Feeder::spawn(
            "distillguard-eventlog",
            65_536,
            move |rx: Receiver<Item>| {
                // What is queued, in batches of up to 4096 (one flush, and
                // with `sync` one fdatasync, each); a nap when nothing is.
                loop {
                    let mut batch = Vec::new();
                    let more = drain(&rx, 4096, &mut batch);
                    if batch.is_empty() {
                        if !more {
                            let _ = w.flush();
                            return;
                        }
                        std::thread::sleep(nap);
                        continue;
                    }
                    let mut acks = Vec::new();
                    let mut failed = false;
                    for (o, ack) in batch {
                        acks.extend(ack);
                        let l = o.log_line();
                        if size > 0 && size + l.len() as u64 + 1 > cfg.max_bytes {
                            let _ = w.flush();
                            if rotate(&cfg).is_ok()
                                && let Ok((nw, ns)) = open(&cfg)
                            {
                                w = nw;
                                size = ns;
                            }
                        }
                        match writeln!(w, "{l}") {
                            Ok(()) => size += l.len() as u64 + 1,
                            Err(e) => {
                                failed = true;
                                tracing::warn!(error = %e, "writing the event log failed");
                            }
                        }
                    }
                    let mut done = w.flush();
                    if sync && done.is_ok() {
                        done = w.get_ref().sync_data();
                    }
                    if let Err(e) = &done {
                        tracing::warn!(error = %e, "flushing the event log failed");
                    }
                    // Acknowledged only when on disk (a dropped sender
                    // fails the answer).
                    if done.is_ok() && !failed {
                        for a in acks {
                            let _ = a.send(());
                        }
                    }
                }
            },
        )?;
        Ok(EventLog {
            queue,
            sync,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues a request; never blocks. With `sync`, returns what the
    /// answer must wait for.
    pub fn write(&self, o: Arc<Observed>) -> Option<crate::tap::Ack> {
        let (ack, wait) = match self.sync {
            true => {
                let (a, w) = tokio::sync::oneshot::channel();
                (Some(a), Some(w))
            }
            false => (None, None),
        };
        let _ = self.queue.offer((o, ack), &self.dropped, |_, n| {
            tracing::warn!(dropped = n, "event log queue full: lines dropped");
        });
        wait
    }
}
