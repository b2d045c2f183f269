//! The publishing side: a bounded queue, a thread with its own runtime,
//! acknowledged publishes, and the spill file.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::{BusConfig, BusError, ensure_stream, headers};

/// What the bus carries: an event with its id, its account (the
/// partition) and its event-log line (formatted on the bus thread, off
/// the request path).
pub trait Item: Send + Sync + 'static {
    fn id(&self) -> &str;
    fn account(&self) -> &str;
    fn line(&self) -> String;
}

/// Counters, for `/metrics`.
#[derive(Default, Debug)]
pub struct Stats {
    /// Acknowledged by JetStream.
    pub published: AtomicU64,
    /// Appended to the spill file.
    pub spilled: AtomicU64,
    /// Lost: the spill queue was full too, or the spill file could not be
    /// written.
    pub dropped: AtomicU64,
    /// Publishes that failed or timed out (each then spilled).
    pub errors: AtomicU64,
    /// Whether the connection is up.
    pub connected: AtomicBool,
}

/// At most this many publishes wait for their acknowledgement at once.
const IN_FLIGHT: usize = 1024;

pub struct Publisher<T: Item> {
    tx: Option<mpsc::Sender<Arc<T>>>,
    overflow: mpsc::Sender<Arc<T>>,
    stats: Arc<Stats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// On shutdown, the bus thread publishes or spills what is queued, then
/// exits (bounded by the acknowledgement timeout).
impl<T: Item> Drop for Publisher<T> {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<T: Item> Publisher<T> {
    /// Starts the bus thread. It connects in the background (and again
    /// whenever the connection drops); until it is connected, events
    /// spill.
    pub fn start(cfg: BusConfig) -> Result<Publisher<T>, BusError> {
        let (tx, rx) = mpsc::channel(cfg.buffer.get());
        let (overflow, overflow_rx) = mpsc::channel(cfg.buffer.get());
        let stats = Arc::new(Stats::default());
        let s = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("distillguard-bus".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "the bus thread has no runtime; events spill");
                        spill_all(&cfg.spill, rx, overflow_rx, &s);
                        return;
                    }
                };
                rt.block_on(run(cfg, rx, overflow_rx, s));
            })
            .map_err(BusError::Thread)?;
        Ok(Publisher {
            tx: Some(tx),
            overflow,
            stats,
            thread: Some(thread),
        })
    }

    /// Queues an event; never waits. A full queue spills it.
    pub fn publish(&self, item: Arc<T>) {
        let Some(tx) = &self.tx else { return };
        if let Err(e) = tx.try_send(item) {
            let item = match e {
                mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => i,
            };
            if self.overflow.try_send(item).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

/// Appends lines to the spill file, opened for each batch and closed
/// after it: a replay can move the file away at any time, and the next
/// spill starts a new one.
struct Spill {
    path: PathBuf,
    stats: Arc<Stats>,
}

impl Spill {
    fn write<T: Item>(&self, items: &[Arc<T>]) {
        if items.is_empty() {
            return;
        }
        let n = items.len() as u64;
        let done = (|| -> std::io::Result<()> {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = distillguard_storage::owner_only()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let mut w = std::io::BufWriter::new(f);
            for i in items {
                writeln!(w, "{}", i.line())?;
            }
            w.flush()
        })();
        match done {
            Ok(()) => self.stats.spilled.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "writing the spill file failed; events lost");
                self.stats.dropped.fetch_add(n, Ordering::Relaxed)
            }
        };
    }
}

/// Without a runtime: everything queued spills.
fn spill_all<T: Item>(
    path: &std::path::Path,
    mut rx: mpsc::Receiver<Arc<T>>,
    mut overflow: mpsc::Receiver<Arc<T>>,
    stats: &Arc<Stats>,
) {
    let spill = Spill {
        path: path.to_path_buf(),
        stats: Arc::clone(stats),
    };
    while let Some(i) = rx.blocking_recv() {
        let mut batch = vec![i];
        while let Ok(o) = overflow.try_recv() {
            batch.push(o);
        }
        spill.write(&batch);
    }
}

type Acked<T> = std::pin::Pin<Box<dyn std::future::Future<Output = (bool, Arc<T>)> + Send>>;

async fn run<T: Item>(
    cfg: BusConfig,
    mut rx: mpsc::Receiver<Arc<T>>,
    mut overflow: mpsc::Receiver<Arc<T>>,
    stats: Arc<Stats>,
) {
    let spill = Spill {
        path: cfg.spill.clone(),
        stats: Arc::clone(&stats),
    };
    let ack_timeout = Duration::from_millis(cfg.ack_timeout_ms.get());
    // Connects in the background, and again after a drop.
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(cfg.url.as_str())
        .await;
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "the NATS URL is unusable; events spill");
            while let Some(i) = rx.recv().await {
                spill.write(&[i]);
            }
            return;
        }
    };
    // The first connection gets a moment before anything spills (events
    // queue meanwhile); later drops spill at once.
    let connected = || client.connection_state() == async_nats::connection::State::Connected;
    for _ in 0..100 {
        if connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let js = jetstream::new(client.clone());
    let mut stream_ready = false;
    let mut in_flight: FuturesUnordered<Acked<T>> = FuturesUnordered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            biased;
            Some((ok, item)) = in_flight.next(), if !in_flight.is_empty() => {
                if ok {
                    stats.published.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    spill.write(&[item]);
                }
            }
            Some(item) = overflow.recv() => {
                let mut batch = vec![item];
                while let Ok(o) = overflow.try_recv() {
                    batch.push(o);
                }
                spill.write(&batch);
            }
            got = rx.recv(), if open && in_flight.len() < IN_FLIGHT => {
                let Some(item) = got else {
                    open = false;
                    continue;
                };
                let up = connected();
                stats.connected.store(up, Ordering::Relaxed);
                if up && !stream_ready {
                    match ensure_stream(&js, &cfg).await {
                        Ok(_) => stream_ready = true,
                        Err(e) => tracing::warn!(error = %e, "the events stream is not ready; events spill"),
                    }
                }
                if !up || !stream_ready {
                    // Spill what is queued at once rather than one by one.
                    let mut batch = vec![item];
                    while batch.len() < 4096 {
                        match rx.try_recv() {
                            Ok(i) => batch.push(i),
                            Err(_) => break,
                        }
                    }
                    spill.write(&batch);
                    continue;
                }
                let subj = cfg.subject_of(item.account());
                let payload = bytes::Bytes::from(item.line());
                match js.publish_with_headers(subj, headers(item.id()), payload).await {
                    Ok(ack) => in_flight.push(Box::pin(async move {
                        let ok = matches!(tokio::time::timeout(ack_timeout, ack).await, Ok(Ok(_)));
                        (ok, item)
                    })),
                    Err(e) => {
                        tracing::debug!(error = %e, "publishing failed; the event spills");
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        spill.write(&[item]);
                    }
                }
            }
        }
    }
    // The overflow queue's last items.
    let mut rest = Vec::new();
    while let Ok(o) = overflow.try_recv() {
        rest.push(o);
    }
    spill.write(&rest);
    // A client that never connected would wait for ever.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
}
