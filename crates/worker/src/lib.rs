/*!
Detector workers (`distillguard detect --nats …`): the gateways' events,
read from NATS JetStream by partition, folded through the same detector
and verdict pipeline as a gateway's own, and the verdicts posted to the
verdict board that every gateway enforces.

One worker owns a range of partitions (`--partitions 0-7`). For each, it
is the durable pull consumer `dg-<stream>-p<n>`, re-made at start to read
the partition from the beginning of what the stream keeps: **the state is
rebuilt by folding the retained events again**. The accounts of a
partition are only ever folded by the worker that owns it, so moving a
partition is stopping one worker and starting another on its range.

Delivery is at least once and folding is idempotent:
- events come through a reorder buffer (`reorder_ms` of event time; it
  also releases everything when the input has been quiet for
  `idle_flush_ms`), so that the fold sees the order `analyze` sees;
- an event id already folded is skipped (ids are remembered for the last
  4–8 million events), and so is a stream sequence already seen;
- every `checkpoint_ms`, the worker waits until the detector has folded
  everything handed to it, then saves per partition the highest stream
  sequence below which everything received is folded, with the count of
  events folded, in the store (PostgreSQL or SQLite), and only then
  acknowledges (ack-all) up to it. A restarted worker reads the
  checkpoints, rebuilds, and reports whether it folded at least as many
  events as they cover.
*/

use std::collections::{BTreeSet, HashMap, HashSet};
use std::num::NonZeroU16;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use distillguard_bus::board::{Board, Posted, Scope};
use distillguard_bus::{BusConfig, BusError};
use distillguard_core::Event;
use distillguard_detect::reorder::{Reorder, Timed};
use distillguard_gateway::detector::{Change, Detector, Feed, Forgetting, Known};
use distillguard_storage::{Checkpoint, Store, StoreError};
use futures_util::StreamExt;

pub mod linker;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("partition {partition}: {reason}")]
    Partition { partition: u16, reason: String },
    #[error("partitions {0:?}: beyond the {1} partitions of the stream")]
    Range(RangeInclusive<u16>, u16),
    #[error("the detector stopped")]
    DetectorDown,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What a worker needs.
pub struct WorkerConfig {
    /// The bus (URL, partition count, stream, subjects).
    pub bus: BusConfig,
    /// The partitions this worker owns.
    pub partitions: RangeInclusive<u16>,
    /// Where checkpoints are kept: `postgres://…` or a SQLite file.
    pub store: String,
    /// The worker's name (on the board, in logs).
    pub name: String,
    pub reorder_ms: i64,
    pub idle_flush: Duration,
    pub checkpoint_every: Duration,
    /// Detection settings (as the gateway's `[detect]` and `[link]`).
    pub thresholds: Option<distillguard_detect::engine::Thresholds>,
    pub link: distillguard_link::Config,
    pub known: Known,
    pub forgetting: Forgetting,
    /// Where to write every account's final verdict at the end (JSONL:
    /// `account_id`, `verdict`, `risk`, `campaign`), if anywhere.
    pub verdicts_out: Option<std::path::PathBuf>,
    /// How often the whole state is saved when the worker has caught up
    /// (and always when it stops), so that a restart resumes from it
    /// instead of folding the stream from its start. `None`: never.
    pub snapshot_every: Option<Duration>,
}

/// Counters, readable while the worker runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Events handed to the detector (distinct ids).
    pub folded: AtomicU64,
    /// Deliveries skipped: an id or a sequence already folded.
    pub duplicates: AtomicU64,
    /// Messages that are not event lines (acknowledged and skipped).
    pub malformed: AtomicU64,
    /// Events that came later than the reorder window (folded late).
    pub late: AtomicU64,
    /// Verdicts posted to the board.
    pub posted: AtomicU64,
    /// Checkpoints saved.
    pub checkpoints: AtomicU64,
    /// Events the checkpoints found at start covered (what a rebuild must
    /// reach).
    pub covered_at_start: AtomicU64,
    /// Events folded into the snapshot the worker resumed from (0: it
    /// folded the stream from its start).
    pub resumed_from: AtomicU64,
    /// Snapshots saved.
    pub snapshots: AtomicU64,
}

/// The end of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub folded: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub late: u64,
    pub posted: u64,
    pub checkpoints: u64,
    pub covered_at_start: u64,
    pub resumed_from: u64,
    pub snapshots: u64,
    /// Accounts per verdict at the end (allow, monitor, throttle, block).
    pub accounts: [u64; 4],
    pub campaign_members: u64,
}

/// The longest wait for one fetch's answer.
const FETCH_WAIT: Duration = Duration::from_secs(2);

/// Tries `attempt` once a second until it works, or until told to stop
/// (then with its last error): NATS may be away when a worker or the
/// linker starts (a restart by a supervisor during an outage).
pub(crate) async fn retry<T, F>(
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    mut attempt: impl FnMut() -> F,
) -> Result<T, WorkerError>
where
    F: std::future::Future<Output = Result<T, WorkerError>>,
{
    loop {
        match attempt().await {
            Ok(x) => return Ok(x),
            Err(e) => {
                tracing::warn!(error = %e, "the bus is not ready; retrying in 1 s");
                tokio::select! {
                    () = shutdown.as_mut() => return Err(e),
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// One bounded fetch: up to 512 messages with their stream sequences.
/// A fetch in flight when the connection drops is never answered, so it
/// is given up after [`FETCH_WAIT`] (the client reconnects by itself).
pub(crate) async fn fetch(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
) -> Result<Vec<(u64, jetstream::Message)>, String> {
    let batch = async {
        match consumer.fetch().max_messages(512).messages().await {
            Ok(batch) => Ok(batch.collect::<Vec<_>>().await),
            Err(e) => Err(e.to_string()),
        }
    };
    let msgs = tokio::time::timeout(FETCH_WAIT, batch)
        .await
        .map_err(|_| "not answered in time".to_string())??;
    Ok(msgs
        .into_iter()
        .filter_map(|m| {
            let m = m.ok()?;
            let seq = m.info().ok()?.stream_sequence;
            Some((seq, m))
        })
        .collect())
}

/// An event waiting in the reorder buffer.
struct Pending {
    key: (i64, u64),
    partition: u16,
    seq: u64,
    event: Event,
}

impl Timed for Pending {
    fn order_key(&self) -> (i64, u64) {
        self.key
    }
}

/// Ids already folded: two generations of at most `GENERATION` each.
pub(crate) struct Seen {
    now: HashSet<u64>,
    old: HashSet<u64>,
}

const GENERATION: usize = 4_000_000;

impl Seen {
    pub(crate) fn new() -> Seen {
        Seen {
            now: HashSet::new(),
            old: HashSet::new(),
        }
    }

    /// Whether an item with this id (if any) is new; counts it in
    /// `duplicates` if not.
    pub(crate) fn fresh(&mut self, id: Option<&str>, duplicates: &AtomicU64) -> bool {
        let new = id.is_none_or(|i| self.insert(i));
        if !new {
            duplicates.fetch_add(1, Ordering::Relaxed);
        }
        new
    }

    /// Whether `id` is new (and remembers it).
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        let h = distillguard_sketches::hash_exact(id.as_bytes());
        if self.old.contains(&h) || !self.now.insert(h) {
            return false;
        }
        if self.now.len() >= GENERATION {
            self.old = std::mem::take(&mut self.now);
        }
        true
    }
}

/// One partition's delivery state.
struct Part {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    /// Received and not yet folded (in the reorder buffer).
    pending: BTreeSet<u64>,
    /// The newest event time received, and whether the last fetch found
    /// nothing (then the partition holds nothing back).
    newest_ts: i64,
    drained: bool,
    /// The highest sequence received.
    max_seen: u64,
    /// Messages received and not acknowledged, oldest first (ack-all
    /// acknowledges a message and every one before it).
    unacked: std::collections::VecDeque<(u64, jetstream::Message)>,
    events: u64,
}

impl Part {
    /// Everything received up to this sequence is folded.
    fn covered(&self) -> u64 {
        match self.pending.first() {
            Some(&s) => s.saturating_sub(1),
            None => self.max_seen,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A consumer name of the stream and partition (durable names take no
/// dots).
fn consumer_name(stream: &str, p: u16) -> String {
    format!("dg-{stream}-p{p}")
}

/// Parses `a-b` or `a` into a partition range.
pub fn parse_range(s: &str) -> Result<RangeInclusive<u16>, distillguard_core::Invalid> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| distillguard_core::Invalid(format!("{s:?}: give FIRST-LAST, as 0-7")))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| distillguard_core::Invalid(format!("{s:?}: give FIRST-LAST, as 0-7")))?;
    if a > b {
        return Err(distillguard_core::Invalid(format!(
            "{s:?}: the first partition is after the last"
        )));
    }
    Ok(a..=b)
}

/// Runs a worker until `shutdown` completes; then folds and checkpoints
/// what it has, and returns.
pub async fn run(
    mut cfg: WorkerConfig,
    shutdown: impl std::future::Future<Output = ()>,
    progress: Arc<Progress>,
) -> Result<Summary, WorkerError> {
    let parts_n: NonZeroU16 = cfg.bus.partitions;
    if *cfg.partitions.end() >= parts_n.get() {
        return Err(WorkerError::Range(cfg.partitions.clone(), parts_n.get()));
    }
    let store = distillguard_storage::open(&cfg.store)?;
    let at_start: HashMap<u16, Checkpoint> = store
        .checkpoints(&cfg.bus.stream)?
        .into_iter()
        .filter(|c| cfg.partitions.contains(&c.partition))
        .map(|c| (c.partition, c))
        .collect();
    let covered_at_start: u64 = at_start.values().map(|c| c.events).sum();
    progress
        .covered_at_start
        .store(covered_at_start, Ordering::Relaxed);
    let (feed, changes) = std::sync::mpsc::channel::<Change>();
    // With a cluster linker, campaigns are its to find: the worker sends
    // every request's link record instead of linking its partitions alone.
    let link = distillguard_link::Config {
        enabled: cfg.link.enabled && !cfg.bus.linker,
        ..cfg.link
    };
    let detector = Arc::new(Detector::start(
        cfg.thresholds,
        link,
        65_536,
        None,
        std::mem::take(&mut cfg.known),
        cfg.forgetting,
        Some(Feed {
            to: feed,
            links: cfg.bus.linker && cfg.link.enabled,
        }),
    ));
    let mut seen = Seen::new();
    let range = format!("{}-{}", cfg.partitions.start(), cfg.partitions.end());
    let saved = match cfg.snapshot_every {
        Some(_) => load_snapshot(store.as_ref(), &cfg.bus.stream, &range),
        None => None,
    };
    // NATS may be away when a worker starts (a restart by a supervisor
    // during an outage): it waits for it, until told to stop.
    tokio::pin!(shutdown);
    let (client, board, stream) = retry(&mut shutdown, || connect(&cfg)).await?;
    let resume = match saved {
        Some(s) => resume(&detector, &stream, s, &mut seen).await,
        None => HashMap::new(),
    };
    progress
        .resumed_from
        .store(resume.values().map(|c| c.events).sum(), Ordering::Relaxed);
    let mut parts = retry(&mut shutdown, || consumers(&cfg, &stream, &resume)).await?;
    let mut out = Outgoing {
        changes,
        backlog: HashMap::new(),
        links: linker::Outbox::new(
            jetstream::new(client.clone()),
            cfg.bus.links_subject(&cfg.name),
        ),
    };
    tracing::info!(
        worker = %cfg.name,
        partitions = ?cfg.partitions,
        covered_at_start,
        resumed_from = progress.resumed_from.load(Ordering::Relaxed),
        "worker started: reading its partitions"
    );
    let mut last_snapshot = Instant::now();
    // The buffer never releases by itself: the worker releases up to the
    // oldest of its partitions' newest event times (less the window), so
    // that partitions read at different speeds still fold in time order.
    let mut reorder: Reorder<Pending> = Reorder::new(i64::MAX / 4);
    // The newest order key released: an event older than it is late.
    let mut last_out: Option<(i64, u64)> = None;
    let mut last_input = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut stopping = false;
    loop {
        let mut got = 0usize;
        let mut released: Vec<Pending> = Vec::new();
        // Partitions are read in step by event time: one more than a
        // window ahead of the slowest busy one waits, so that the reorder
        // buffer holds a window of events, not the partitions' skew.
        let slowest = slowest_busy(&parts);
        for (p, part) in parts.iter_mut() {
            if let Some(s) = slowest
                && part.newest_ts > s.saturating_add(cfg.reorder_ms.max(1000))
            {
                continue;
            }
            // NATS away: the fetch fails, and is tried again next round
            // (the client reconnects by itself).
            // A fetch in flight when the connection drops is never
            // answered: each is bounded.
            let msgs = match fetch(&part.consumer).await {
                Ok(m) => {
                    part.drained = m.is_empty();
                    m
                }
                Err(e) => {
                    tracing::warn!(partition = *p, error = %e, "fetching failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            for (seq, m) in msgs {
                got += 1;
                if seq <= part.max_seen {
                    // Delivered again (an acknowledgement lost): folded.
                    progress.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                part.max_seen = seq;
                let event = std::str::from_utf8(&m.payload)
                    .ok()
                    .and_then(|t| distillguard_core::parse_event_line(t).ok());
                part.unacked.push_back((seq, m));
                let Some(event) = event else {
                    progress.malformed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if !seen.fresh(event.id.as_deref(), &progress.duplicates) {
                    continue;
                }
                part.pending.insert(seq);
                part.newest_ts = part.newest_ts.max(event.ts.0);
                let key = (
                    event.ts.0,
                    distillguard_sketches::hash_exact(event.account_id.as_bytes()),
                );
                let item = Pending {
                    key,
                    partition: *p,
                    seq,
                    event,
                };
                if last_out.is_some_and(|l| key < l) {
                    // Older than what was folded: folded at once, late.
                    progress.late.fetch_add(1, Ordering::Relaxed);
                    released.push(item);
                } else {
                    // Never released here (the window is unbounded), and
                    // never late (checked above).
                    let _ = reorder.push(item, |_| {});
                }
            }
        }
        if got > 0 {
            last_input = Instant::now();
        }
        // What can still arrive: nothing older than the slowest busy
        // partition's newest event, less the window.
        let horizon = slowest_busy(&parts).map(|t| t.saturating_sub(cfg.reorder_ms));
        if let Some(h) = horizon {
            reorder.release_before(h, |x| released.push(x));
        }
        if stopping || horizon.is_none() || last_input.elapsed() >= cfg.idle_flush {
            reorder.flush(|x| released.push(x));
        }
        // Late ones are older than `last_out`, so the newest is a release.
        last_out = last_out.max(released.iter().map(|x| x.key).max());
        for x in &released {
            if let Some((_, part)) = parts.iter_mut().find(|(q, _)| *q == x.partition) {
                part.pending.remove(&x.seq);
                part.events += 1;
            }
        }
        for x in released {
            if !detector.submit_event(x.event) {
                return Err(WorkerError::DetectorDown);
            }
            progress.folded.fetch_add(1, Ordering::Relaxed);
        }
        // Caught up (every partition drained, nothing held, everything
        // folded, so every link record is out of the detector): once they
        // are sent, the linker need not wait for this worker's records.
        let caught_up = cfg.bus.linker
            && horizon.is_none()
            && reorder.is_empty()
            && detector.processed.load(Ordering::Relaxed)
                >= detector.enqueued.load(Ordering::Relaxed);
        out.post(&board, &cfg.name, &progress).await;
        if out.links.send().await && caught_up {
            out.links
                .heartbeat(now_ms().saturating_sub(cfg.reorder_ms))
                .await;
        }
        if stopping || last_checkpoint.elapsed() >= cfg.checkpoint_every {
            wait_folded(&detector).await?;
            out.post(&board, &cfg.name, &progress).await;
            // An event is acknowledged only once its link record is on the
            // bus too: until then the checkpoint waits.
            if out.links.send().await {
                checkpoint(store.as_ref(), &cfg.bus.stream, &mut parts, &progress).await?;
            }
            last_checkpoint = Instant::now();
        }
        // Everything received is folded and sent on: a snapshot can be
        // taken (when due, and always on the way out).
        let quiet = reorder.is_empty() && parts.iter().all(|(_, p)| p.pending.is_empty());
        if let Some(every) = cfg.snapshot_every
            && quiet
            && (stopping || last_snapshot.elapsed() >= every)
        {
            wait_folded(&detector).await?;
            out.post(&board, &cfg.name, &progress).await;
            if out.links.send().await {
                save_snapshot(
                    &detector,
                    store.as_ref(),
                    &cfg.bus.stream,
                    &range,
                    &parts,
                    &seen,
                    &progress,
                )
                .await;
            }
            last_snapshot = Instant::now();
        }
        if stopping {
            break;
        }
        if got == 0 {
            tokio::select! {
                () = &mut shutdown => stopping = true,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        } else if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
            stopping = true;
        }
    }
    let (accounts, campaign_members) = detector.counts();
    if let Some(path) = &cfg.verdicts_out {
        write_verdicts(path, &detector.states()).map_err(|source| WorkerError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    drop(detector);
    tracing::info!(worker = %cfg.name, folded = progress.folded.load(Ordering::Relaxed), "worker stopped");
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    Ok(Summary {
        folded: progress.folded.load(Ordering::Relaxed),
        duplicates: progress.duplicates.load(Ordering::Relaxed),
        malformed: progress.malformed.load(Ordering::Relaxed),
        late: progress.late.load(Ordering::Relaxed),
        posted: progress.posted.load(Ordering::Relaxed),
        checkpoints: progress.checkpoints.load(Ordering::Relaxed),
        covered_at_start,
        resumed_from: progress.resumed_from.load(Ordering::Relaxed),
        snapshots: progress.snapshots.load(Ordering::Relaxed),
        accounts,
        campaign_members,
    })
}

/// Every account's final verdict, one JSON object per line.
fn write_verdicts(
    path: &std::path::Path,
    states: &[(String, distillguard_gateway::detector::State)],
) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (a, s) in states {
        let line = serde_json::json!({
            "account_id": a,
            "verdict": s.verdict,
            "risk": s.risk,
            "campaign": s.campaign,
        });
        writeln!(w, "{line}")?;
    }
    w.flush()
}

/// The oldest newest-event time among partitions that may still deliver
/// (not drained): nothing older than it, less the window, can arrive. One
/// that has received nothing yet holds everything back.
fn slowest_busy(parts: &[(u16, Part)]) -> Option<i64> {
    parts
        .iter()
        .filter(|(_, p)| !p.drained)
        .map(|(_, p)| p.newest_ts)
        .min()
}

type Connected = (async_nats::Client, Board, jetstream::stream::Stream);

/// Connects, makes sure of the stream and the board, and (re)makes the
/// partitions' consumers so that they deliver from the start.
async fn connect(cfg: &WorkerConfig) -> Result<Connected, WorkerError> {
    let client = distillguard_bus::connect(&cfg.bus.url).await?;
    let js = jetstream::new(client.clone());
    let stream = distillguard_bus::ensure_stream(&js, &cfg.bus).await?;
    if cfg.bus.linker {
        distillguard_bus::ensure_links_stream(&js, &cfg.bus).await?;
    }
    let board = Board::open(&js, &cfg.bus.bucket, cfg.bus.replicas.get()).await?;
    Ok((client, board, stream))
}

/// (Re)makes the partitions' consumers, so that they deliver from the
/// snapshot's place (`resume`) or from the start.
async fn consumers(
    cfg: &WorkerConfig,
    stream: &jetstream::stream::Stream,
    resume: &HashMap<u16, Checkpoint>,
) -> Result<Vec<(u16, Part)>, WorkerError> {
    let mut parts: Vec<(u16, Part)> = Vec::new();
    for p in cfg.partitions.clone() {
        let name = consumer_name(&cfg.bus.stream, p);
        let _ = stream.delete_consumer(&name).await;
        // From the snapshot's place, or from the start.
        let from = resume.get(&p);
        let deliver_policy = match from {
            Some(c) => jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: c.seq + 1,
            },
            None => jetstream::consumer::DeliverPolicy::All,
        };
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name),
                filter_subject: cfg.bus.subject(p),
                ack_policy: jetstream::consumer::AckPolicy::All,
                deliver_policy,
                ack_wait: Duration::from_secs(600),
                max_ack_pending: 1_000_000,
                ..Default::default()
            })
            .await
            .map_err(|e| WorkerError::Partition {
                partition: p,
                reason: e.to_string(),
            })?;
        parts.push((
            p,
            Part {
                consumer,
                pending: BTreeSet::new(),
                newest_ts: i64::MIN,
                drained: false,
                max_seen: from.map_or(0, |c| c.seq),
                unacked: Default::default(),
                events: from.map_or(0, |c| c.events),
            },
        ));
    }
    Ok(parts)
}

/// A worker's snapshot: the detector's state and the ids it has folded.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    detector: Vec<u8>,
    seen_now: Vec<u64>,
    seen_old: Vec<u64>,
}

/// The saved snapshot of these partitions, decoded, and where it stands
/// (`None`: none, or one that does not decode: the worker folds the stream
/// from its start).
fn load_snapshot(store: &dyn Store, stream: &str, range: &str) -> Option<(Saved, Vec<Checkpoint>)> {
    let snap = match store.snapshot(stream, range) {
        Ok(s) => s?,
        Err(e) => {
            tracing::warn!(error = %e, "reading the snapshot failed; folding from the start");
            return None;
        }
    };
    match postcard::from_bytes::<Saved>(&snap.data) {
        Ok(s) => Some((s, snap.checkpoints)),
        Err(e) => {
            tracing::warn!(error = %e, "the snapshot does not decode; folding from the start");
            None
        }
    }
}

/// Restores a snapshot if it fits: the detector's state and the ids
/// folded; returns where each partition resumes. One that does not fit
/// (another build or other settings, or a stream that is behind it: a new
/// stream) is left aside, and the worker folds the stream from its start.
async fn resume(
    detector: &Arc<Detector>,
    stream: &jetstream::stream::Stream,
    (saved, checkpoints): (Saved, Vec<Checkpoint>),
    seen: &mut Seen,
) -> HashMap<u16, Checkpoint> {
    let last = stream
        .get_info()
        .await
        .map(|i| i.state.last_sequence)
        .unwrap_or(0);
    if let Some(c) = checkpoints.iter().find(|c| c.seq > last) {
        tracing::warn!(
            partition = c.partition,
            snapshot_seq = c.seq,
            stream_last = last,
            "the stream is behind the snapshot (a new stream?); folding from the start"
        );
        return HashMap::new();
    }
    let d = Arc::clone(detector);
    let restored =
        tokio::task::spawn_blocking(move || d.restore(saved.detector, Duration::from_secs(600)))
            .await
            .unwrap_or(Err(distillguard_gateway::detector::SnapshotError::Down));
    if let Err(e) = restored {
        tracing::warn!(error = %e, "the snapshot was not restored; folding from the start");
        return HashMap::new();
    }
    seen.now = saved.seen_now.into_iter().collect();
    seen.old = saved.seen_old.into_iter().collect();
    tracing::info!(
        events = checkpoints.iter().map(|c| c.events).sum::<u64>(),
        "resumed from the snapshot"
    );
    checkpoints.into_iter().map(|c| (c.partition, c)).collect()
}

/// Saves the worker's snapshot (everything received is folded): the
/// detector's state, the ids folded, and where each partition stands. A
/// failure is logged; the previous snapshot stays.
async fn save_snapshot(
    detector: &Arc<Detector>,
    store: &dyn Store,
    stream: &str,
    range: &str,
    parts: &[(u16, Part)],
    seen: &Seen,
    progress: &Progress,
) {
    let d = Arc::clone(detector);
    let state = tokio::task::spawn_blocking(move || d.snapshot(Duration::from_secs(600)))
        .await
        .ok()
        .flatten();
    let Some(state) = state else {
        tracing::warn!("the detector gave no snapshot");
        return;
    };
    let saved = Saved {
        detector: state,
        seen_now: seen.now.iter().copied().collect(),
        seen_old: seen.old.iter().copied().collect(),
    };
    let data = match postcard::to_stdvec(&saved) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "the snapshot did not encode");
            return;
        }
    };
    let snap = distillguard_storage::Snapshot {
        stream: stream.to_string(),
        partitions: range.to_string(),
        checkpoints: parts
            .iter()
            .map(|(p, part)| Checkpoint {
                partition: *p,
                seq: part.max_seen,
                events: part.events,
            })
            .collect(),
        data,
    };
    match store.save_snapshot(&snap) {
        Ok(()) => {
            progress.snapshots.fetch_add(1, Ordering::Relaxed);
            tracing::info!(bytes = snap.data.len(), "snapshot saved");
        }
        Err(e) => tracing::warn!(error = %e, "saving the snapshot failed"),
    }
}

/// What a worker's detector publishes, on its way out.
struct Outgoing {
    changes: std::sync::mpsc::Receiver<Change>,
    /// Verdicts not yet on the board (NATS away), newest per id.
    backlog: HashMap<(Scope, String), Posted>,
    /// Link records for the cluster's linker.
    links: linker::Outbox,
}

impl Outgoing {
    async fn post(&mut self, board: &Board, name: &str, progress: &Progress) {
        post_changes(
            &self.changes,
            &mut self.backlog,
            &mut self.links,
            board,
            name,
            progress,
        )
        .await;
    }
}

/// Posts the detector's published changes to the board; what cannot be
/// posted now (NATS away) waits in `backlog`, latest per id, and is tried
/// again next round. Link records go to the outbox.
async fn post_changes(
    changes: &std::sync::mpsc::Receiver<Change>,
    backlog: &mut HashMap<(Scope, String), Posted>,
    links: &mut linker::Outbox,
    board: &Board,
    name: &str,
    progress: &Progress,
) {
    while let Ok(c) = changes.try_recv() {
        let (scope, id, posted) = match c {
            Change::Link(r) => {
                links.push(*r);
                continue;
            }
            Change::Account(a, s) => (
                Scope::Account,
                a,
                Posted {
                    verdict: s.verdict.as_str().into(),
                    risk: s.risk,
                    campaign: s.campaign,
                    keys: Some(s.keys.as_str().into()),
                    at_ms: now_ms(),
                    by: name.into(),
                    reason: String::new(),
                },
            ),
            Change::Key(k, v) => (
                Scope::Key,
                k,
                Posted {
                    verdict: v.as_str().into(),
                    risk: 0.0,
                    campaign: false,
                    keys: None,
                    at_ms: now_ms(),
                    by: name.into(),
                    reason: String::new(),
                },
            ),
            Change::Campaign(id, n) => (
                Scope::Campaign,
                id,
                campaign_entry(name, format!("{n} accounts")),
            ),
        };
        backlog.insert((scope, id), posted);
    }
    post_backlog(board, backlog, &progress.posted, "verdicts").await;
}

/// A board entry blocked with a campaign: a campaign itself (`reason`: its
/// size) or, from the linker, a member (`reason`: its campaign's id).
pub(crate) fn campaign_entry(by: &str, reason: String) -> Posted {
    Posted {
        verdict: "block".into(),
        risk: 1.0,
        campaign: true,
        keys: None,
        at_ms: now_ms(),
        by: by.into(),
        reason,
    }
}

/// Posts what waits in `backlog`, campaigns first (a gateway that sees a
/// member sees its campaign), each in id order, counting in `posted`. At
/// the first failure (the board is away) the rest waits for the next
/// round.
pub(crate) async fn post_backlog(
    board: &Board,
    backlog: &mut HashMap<(Scope, String), Posted>,
    posted: &AtomicU64,
    what: &str,
) {
    let mut keys: Vec<(Scope, String)> = backlog.keys().cloned().collect();
    post_order(&mut keys);
    for k in keys {
        let Some(p) = backlog.get(&k) else { continue };
        match board.post(k.0, &k.1, p).await {
            Ok(()) => {
                backlog.remove(&k);
                posted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, waiting = backlog.len(), "posting {what} failed; retrying");
                return;
            }
        }
    }
}

/// Campaigns before everything else, each kind in id order.
fn post_order(keys: &mut [(Scope, String)]) {
    keys.sort_by(|a, b| (a.0 != Scope::Campaign, &a.1).cmp(&(b.0 != Scope::Campaign, &b.1)));
}

/// Waits until the detector folded everything handed to it.
async fn wait_folded(detector: &Arc<Detector>) -> Result<(), WorkerError> {
    let d = Arc::clone(detector);
    let folded =
        tokio::task::spawn_blocking(move || d.score_and_wait(Vec::new(), Duration::from_secs(300)))
            .await
            .unwrap_or(false);
    if folded {
        Ok(())
    } else {
        Err(WorkerError::DetectorDown)
    }
}

/// Saves the partitions' checkpoints (everything handed to the detector
/// is folded), then acknowledges up to them.
async fn checkpoint(
    store: &dyn Store,
    stream: &str,
    parts: &mut [(u16, Part)],
    progress: &Progress,
) -> Result<(), WorkerError> {
    let all: Vec<Checkpoint> = parts
        .iter()
        .map(|(p, part)| Checkpoint {
            partition: *p,
            seq: part.covered(),
            events: part.events,
        })
        .collect();
    store.save_checkpoints(stream, &all)?;
    progress.checkpoints.fetch_add(1, Ordering::Relaxed);
    for (p, part) in parts.iter_mut() {
        let covered = part.covered();
        let mut last = None;
        while part.unacked.front().is_some_and(|(s, _)| *s <= covered) {
            last = part.unacked.pop_front();
        }
        if let Some((seq, m)) = last {
            // A lost acknowledgement is harmless: the checkpoint covers the
            // event, and the next acknowledgement (ack-all) covers it too.
            if let Err(e) = tokio::time::timeout(FETCH_WAIT, m.ack())
                .await
                .unwrap_or_else(|_| Err("no answer".into()))
            {
                tracing::warn!(partition = *p, seq, error = %e, "acknowledging failed");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_ranges_parse_or_say_why() {
        assert_eq!(parse_range("0-7"), Ok(0..=7));
        assert_eq!(parse_range("3"), Ok(3..=3));
        assert!(parse_range("7-0").is_err());
        assert!(parse_range("a-b").is_err());
    }

    #[test]
    fn campaigns_come_before_their_members_on_the_board() {
        let mut keys = [
            (Scope::Member, "b".to_string()),
            (Scope::Campaign, "z".to_string()),
            (Scope::Member, "a".to_string()),
            (Scope::Campaign, "c".to_string()),
        ];
        post_order(&mut keys);
        let order: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        assert_eq!(order, ["c", "z", "a", "b"]);
    }

    #[test]
    fn ids_are_folded_once() {
        let mut seen = Seen::new();
        assert!(seen.insert("ev_1"));
        assert!(!seen.insert("ev_1"));
        assert!(seen.insert("ev_2"));
    }
}
