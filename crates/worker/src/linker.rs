/*!
The cluster's linker (`distillguard link`): campaigns across every
worker's partitions.

A worker scores the accounts of its own partitions; a hydra's accounts
fall in all of them. With `[cluster.nats] linker = true`, each worker sends
every request's link record (the account, the request's keys, the engine's
risk after it: [`LinkRecord`], no prompt text) to its subject
`<prefix>.links.<worker>` and leaves campaigns alone. The linker folds the
records of all workers in event-time order through the pipeline's own
campaign half ([`distillguard_pipeline::Links`], the code `analyze` links
with), and posts what it confirms to the verdict board: `campaign.<id>`
(its size) and `member.<account>` for every account blocked with it, which
every gateway enforces beside the workers' `account.<id>`.

Like a worker, it rebuilds its state at start by folding every record the
stream keeps; a record's event id is folded once (a rebuilt worker sends
its records again). Records from several workers are put in time order by
a reorder buffer: each worker sends its records in event-time order, and
a caught-up worker sends a watermark once a second (a message with no
record and a `Distillguard-Watermark` header), so the linker releases up to
the oldest newest time among the workers heard from within
`worker_timeout`, less `reorder_ms`. A worker silent for longer (stopped,
dead) no longer holds the others back.
*/

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use distillguard_bus::board::{Board, Posted, Scope};
use distillguard_bus::{BusConfig, BusError};
use distillguard_core::AccountInfo;
use distillguard_detect::reorder::{Reorder, Timed};
use distillguard_link::LinkRecord;
use distillguard_pipeline::Links;

use crate::{FETCH_WAIT, Seen, WorkerError, campaign_entry, fetch, post_backlog, retry};

/// Link records queued by a worker for the bus.
pub(crate) struct Outbox {
    js: jetstream::Context,
    subject: String,
    queued: Vec<LinkRecord>,
    /// The newest record time sent, and when the last message went.
    newest_ts: i64,
    last_sent: Instant,
}

/// The header of a worker's watermark: every record it will still send
/// is at least this recent (ms since the epoch, event time).
pub const WATERMARK: &str = "Distillguard-Watermark";

/// How often a caught-up worker says so when it has nothing to send.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Records per message (one message is a JSON line per record).
const PER_MESSAGE: usize = 256;

impl Outbox {
    pub(crate) fn new(js: jetstream::Context, subject: String) -> Outbox {
        Outbox {
            js,
            subject,
            queued: Vec::new(),
            newest_ts: i64::MIN,
            last_sent: Instant::now(),
        }
    }

    pub(crate) fn push(&mut self, r: LinkRecord) {
        self.queued.push(r);
    }

    /// Publishes what is queued, with acknowledgements; true when nothing
    /// is left (what failed stays queued, in order, for the next call).
    pub(crate) async fn send(&mut self) -> bool {
        while !self.queued.is_empty() {
            let n = self.queued.len().min(PER_MESSAGE);
            let mut body = Vec::with_capacity(n * 320);
            for r in &self.queued[..n] {
                if serde_json::to_writer(&mut body, r).is_ok() {
                    body.push(b'\n');
                }
            }
            let newest = self.queued[..n].iter().map(|r| r.ts.0).max();
            match self.publish(body, None).await {
                Ok(()) => {
                    self.queued.drain(..n);
                    self.newest_ts = self.newest_ts.max(newest.unwrap_or(i64::MIN));
                }
                Err(e) => {
                    tracing::warn!(error = %e, queued = self.queued.len(), "sending link records failed; retrying");
                    return false;
                }
            }
        }
        true
    }

    /// A caught-up worker (nothing held, everything folded and sent) tells
    /// the linker, at most once a second, that its records up to
    /// `horizon` are all sent, so that an idle worker does not hold the
    /// others' records back.
    pub(crate) async fn heartbeat(&mut self, horizon: i64) {
        if !self.queued.is_empty() || self.last_sent.elapsed() < HEARTBEAT {
            return;
        }
        let w = self.newest_ts.max(horizon);
        if let Err(e) = self.publish(Vec::new(), Some(w)).await {
            tracing::debug!(error = %e, "a watermark was not sent");
        }
    }

    async fn publish(&mut self, body: Vec<u8>, watermark: Option<i64>) -> Result<(), String> {
        let subject = self.subject.clone();
        let js = &self.js;
        let sent = async {
            let ack = match watermark {
                Some(w) => {
                    let mut h = async_nats::HeaderMap::new();
                    h.insert(WATERMARK, w.to_string().as_str());
                    js.publish_with_headers(subject, h, body.into()).await
                }
                None => js.publish(subject, body.into()).await,
            };
            ack.map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        };
        let r = match tokio::time::timeout(FETCH_WAIT, sent).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("not acknowledged in time".into()),
        };
        if r.is_ok() {
            self.last_sent = Instant::now();
        }
        r
    }
}

/// What the linker needs.
pub struct LinkerConfig {
    /// The bus (the events' stream name and subject prefix name the
    /// links' stream and subjects; the board's bucket).
    pub bus: BusConfig,
    /// Its name (on the board, in logs).
    pub name: String,
    pub reorder_ms: i64,
    /// A worker not heard from (records or watermark) for this long no
    /// longer holds the others' records back; at start, records are held
    /// this long so that every live worker is heard.
    pub worker_timeout: Duration,
    /// The `[link]` settings.
    pub link: distillguard_link::Config,
    /// Account records (registered in id order, as `analyze` does).
    pub accounts: HashMap<String, AccountInfo>,
    /// Where to write every campaign member at the end (JSONL:
    /// `account_id`, `campaign_id`), if anywhere.
    pub members_out: Option<std::path::PathBuf>,
}

/// Counters, readable while the linker runs.
#[derive(Debug, Default)]
pub struct LinkerProgress {
    /// Records folded (distinct event ids).
    pub folded: AtomicU64,
    /// Records skipped: an event id already folded.
    pub duplicates: AtomicU64,
    /// Lines that are not link records.
    pub malformed: AtomicU64,
    /// Records that came later than the reorder window (folded late).
    pub late: AtomicU64,
    /// Entries posted to the board.
    pub posted: AtomicU64,
}

/// The end of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkerSummary {
    pub folded: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub late: u64,
    pub posted: u64,
    /// Workers heard from (their subjects' last token).
    pub workers: Vec<String>,
    /// Confirmed campaigns at the end: id → member count.
    pub campaigns: BTreeMap<String, u32>,
    /// Accounts blocked with a campaign.
    pub members: u64,
}

/// A record waiting in the reorder buffer.
struct Pending {
    key: (i64, u64),
    seq: u64,
    record: LinkRecord,
}

impl Timed for Pending {
    fn order_key(&self) -> (i64, u64) {
        self.key
    }
}

/// One worker's records: the newest time received, and when.
struct Source {
    newest_ts: i64,
    heard: Instant,
}

/// Runs the linker until `shutdown` completes.
pub async fn run(
    cfg: LinkerConfig,
    shutdown: impl std::future::Future<Output = ()>,
    progress: Arc<LinkerProgress>,
) -> Result<LinkerSummary, WorkerError> {
    tokio::pin!(shutdown);
    let (client, board, consumer) = retry(&mut shutdown, || connect(&cfg.bus)).await?;
    tracing::info!(linker = %cfg.name, "linker started: rebuilding from the stream");
    let mut links = Links::new(cfg.link, &cfg.accounts);
    let mut reorder: Reorder<Pending> = Reorder::new(i64::MAX / 4);
    let mut seen = Seen::new();
    let mut sources: HashMap<String, Source> = HashMap::new();
    // Per message sequence: its records still held; acknowledged (ack-all)
    // once none below it is held.
    let mut held: BTreeMap<u64, usize> = BTreeMap::new();
    let mut unacked: std::collections::VecDeque<(u64, jetstream::Message)> = Default::default();
    let mut max_seen = 0u64;
    let mut last_out: Option<(i64, u64)> = None;
    let mut posted_campaigns: HashMap<String, u32> = HashMap::new();
    let mut posted_members: HashMap<String, String> = HashMap::new();
    let mut backlog: HashMap<(Scope, String), Posted> = HashMap::new();
    let mut last_ack = Instant::now();
    let mut first_message: Option<Instant> = None;
    let mut stopping = false;
    loop {
        let msgs = match fetch(&consumer).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "fetching link records failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                Vec::new()
            }
        };
        let drained = msgs.is_empty();
        let mut released: Vec<Pending> = Vec::new();
        if !msgs.is_empty() && first_message.is_none() {
            first_message = Some(Instant::now());
        }
        for (seq, m) in msgs {
            if seq <= max_seen {
                continue;
            }
            max_seen = seq;
            let worker = m
                .subject
                .as_str()
                .rsplit('.')
                .next()
                .unwrap_or("")
                .to_string();
            let mut newest = m
                .headers
                .as_ref()
                .and_then(|h| h.get(WATERMARK))
                .and_then(|v| v.as_str().parse::<i64>().ok())
                .unwrap_or(i64::MIN);
            for line in m.payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let Ok(record) = serde_json::from_slice::<LinkRecord>(line) else {
                    progress.malformed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if !seen.fresh(record.id.as_deref(), &progress.duplicates) {
                    continue;
                }
                newest = newest.max(record.ts.0);
                let key = (
                    record.ts.0,
                    distillguard_sketches::hash_exact(record.account.as_bytes()),
                );
                *held.entry(seq).or_insert(0) += 1;
                let item = Pending { key, seq, record };
                if last_out.is_some_and(|l| key < l) {
                    progress.late.fetch_add(1, Ordering::Relaxed);
                    released.push(item);
                } else {
                    let _ = reorder.push(item, |_| {});
                }
            }
            let s = sources.entry(worker).or_insert(Source {
                newest_ts: i64::MIN,
                heard: Instant::now(),
            });
            s.newest_ts = s.newest_ts.max(newest);
            s.heard = Instant::now();
            unacked.push_back((seq, m));
        }
        // Up to the slowest live worker's newest time, less the window;
        // nothing in the first `worker_timeout` (until every live worker
        // has been heard); everything when no worker is live or when told
        // to stop.
        let settled = first_message.is_some_and(|t| t.elapsed() >= cfg.worker_timeout);
        let horizon = sources
            .values()
            .filter(|s| s.heard.elapsed() < cfg.worker_timeout)
            .map(|s| s.newest_ts)
            .min();
        if stopping && drained {
            reorder.flush(|x| released.push(x));
        } else if settled {
            match horizon {
                Some(h) => {
                    reorder.release_before(h.saturating_sub(cfg.reorder_ms), |x| released.push(x))
                }
                None => reorder.flush(|x| released.push(x)),
            }
        }
        last_out = last_out.max(released.iter().map(|x| x.key).max());
        for x in &released {
            links.fold(&x.record);
            progress.folded.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = held.get_mut(&x.seq) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&x.seq);
                }
            }
        }
        if let Some(camps) = links.campaigns_if_moved() {
            for (id, members) in camps {
                let n = members.len() as u32;
                if posted_campaigns.get(&id) != Some(&n) {
                    posted_campaigns.insert(id.clone(), n);
                    backlog.insert(
                        (Scope::Campaign, id.clone()),
                        campaign_entry(&cfg.name, format!("{n} accounts")),
                    );
                }
                for a in members {
                    if posted_members.get(&a) != Some(&id) {
                        posted_members.insert(a.clone(), id.clone());
                        backlog.insert((Scope::Member, a), campaign_entry(&cfg.name, id.clone()));
                    }
                }
            }
        }
        post_backlog(&board, &mut backlog, &progress.posted, "campaigns").await;
        if (stopping && drained) || last_ack.elapsed() >= Duration::from_secs(1) {
            ack(&mut unacked, &held, max_seen).await;
            last_ack = Instant::now();
        }
        // Told to stop: what the stream holds is folded first.
        if stopping && drained {
            break;
        }
        if stopping {
            continue;
        }
        if drained {
            tokio::select! {
                () = &mut shutdown => stopping = true,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        } else if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
            stopping = true;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    if let Some(path) = &cfg.members_out {
        write_members(path, &posted_members).map_err(|source| WorkerError::Io {
            path: path.display().to_string(),
            source,
        })?;
    }
    let mut workers: Vec<String> = sources.into_keys().collect();
    workers.sort();
    tracing::info!(linker = %cfg.name, folded = progress.folded.load(Ordering::Relaxed), "linker stopped");
    Ok(LinkerSummary {
        folded: progress.folded.load(Ordering::Relaxed),
        duplicates: progress.duplicates.load(Ordering::Relaxed),
        malformed: progress.malformed.load(Ordering::Relaxed),
        late: progress.late.load(Ordering::Relaxed),
        posted: progress.posted.load(Ordering::Relaxed),
        workers,
        campaigns: links.summaries().into_iter().collect(),
        members: posted_members.len() as u64,
    })
}

/// Every campaign member and its campaign, one JSON object per line, in
/// account order.
fn write_members(path: &std::path::Path, members: &HashMap<String, String>) -> std::io::Result<()> {
    use std::io::Write;
    let mut all: Vec<(&String, &String)> = members.iter().collect();
    all.sort();
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (a, c) in all {
        let line = serde_json::json!({"account_id": a, "campaign_id": c});
        writeln!(w, "{line}")?;
    }
    w.flush()
}

/// The last message sequence none of whose records is still held.
fn covered(held: &BTreeMap<u64, usize>, max_seen: u64) -> u64 {
    held.keys().next().map_or(max_seen, |s| s.saturating_sub(1))
}

/// Acknowledges (ack-all) up to the last message none of whose records is
/// still held.
async fn ack(
    unacked: &mut std::collections::VecDeque<(u64, jetstream::Message)>,
    held: &BTreeMap<u64, usize>,
    max_seen: u64,
) {
    let covered = covered(held, max_seen);
    let mut last = None;
    while unacked.front().is_some_and(|(s, _)| *s <= covered) {
        last = unacked.pop_front();
    }
    if let Some((seq, m)) = last
        && let Err(e) = tokio::time::timeout(FETCH_WAIT, m.ack())
            .await
            .unwrap_or_else(|_| Err("no answer".into()))
    {
        tracing::warn!(seq, error = %e, "acknowledging link records failed");
    }
}

/// Connects, makes sure of the links' stream and the board, and (re)makes
/// the linker's consumer so that it delivers from the start.
async fn connect(
    bus: &BusConfig,
) -> Result<
    (
        async_nats::Client,
        Board,
        jetstream::consumer::Consumer<pull::Config>,
    ),
    WorkerError,
> {
    let client = distillguard_bus::connect(&bus.url).await?;
    let js = jetstream::new(client.clone());
    let stream = distillguard_bus::ensure_links_stream(&js, bus).await?;
    let board = Board::open(&js, &bus.bucket, bus.replicas.get()).await?;
    let name = format!("dg-{}-linker", bus.links_stream());
    let _ = stream.delete_consumer(&name).await;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name),
            ack_policy: jetstream::consumer::AckPolicy::All,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ack_wait: Duration::from_secs(600),
            max_ack_pending: 1_000_000,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            WorkerError::Bus(BusError::Stream {
                stream: bus.links_stream(),
                reason: e.to_string(),
            })
        })?;
    Ok((client, board, consumer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_acknowledged_only_when_none_of_its_records_is_held() {
        let mut held = BTreeMap::new();
        // Nothing held: everything received is covered.
        assert_eq!(covered(&held, 9), 9);
        // A record of message 7 still in the buffer: up to 6.
        held.insert(7u64, 1usize);
        held.insert(8u64, 2usize);
        assert_eq!(covered(&held, 9), 6);
        held.remove(&7);
        assert_eq!(covered(&held, 9), 7);
    }
}
