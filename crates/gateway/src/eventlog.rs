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
*/

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TryRecvError, TrySendError, sync_channel};

use serde::Deserialize;

use crate::observed::Observed;

/// The `[log]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub path: PathBuf,
    #[serde(default = "default_max")]
    pub max_bytes: u64,
    #[serde(default = "default_keep")]
    pub keep: u32,
}

fn default_max() -> u64 {
    256 << 20
}
fn default_keep() -> u32 {
    8
}

pub struct EventLog {
    tx: Option<SyncSender<Arc<Observed>>>,
    writer: Option<std::thread::JoinHandle<()>>,
    pub dropped: AtomicU64,
}

/// On shutdown, the writer drains its queue and flushes before the
/// process exits.
impl Drop for EventLog {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
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
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cfg.path)?;
    let len = f.metadata()?.len();
    Ok((std::io::BufWriter::new(f), len))
}

impl EventLog {
    pub fn start(cfg: LogConfig) -> std::io::Result<EventLog> {
        let (tx, rx) = sync_channel::<Arc<Observed>>(65_536);
        let (mut w, mut size) = open(&cfg)?;
        let writer = std::thread::Builder::new()
            .name("distillguard-eventlog".into())
            .spawn(move || {
                // Naps on an empty queue rather than blocking on it, so that
                // senders never pay a wake-up (see the detector).
                loop {
                    let mut batch = Vec::new();
                    while batch.len() < 4096 {
                        match rx.try_recv() {
                            Ok(o) => batch.push(o),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                if batch.is_empty() {
                                    let _ = w.flush();
                                    return;
                                }
                                break;
                            }
                        }
                    }
                    if batch.is_empty() {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        continue;
                    }
                    for o in batch {
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
                        if writeln!(w, "{l}").is_ok() {
                            size += l.len() as u64 + 1;
                        }
                    }
                    let _ = w.flush();
                }
            })?;
        Ok(EventLog {
            tx: Some(tx),
            writer: Some(writer),
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues a request; never blocks.
    pub fn write(&self, o: Arc<Observed>) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(o) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
