/*!
Detection in the gateway, off the hot path.

Every request, once its answer has ended, goes as an [`Observed`] through
a bounded queue to one detector thread. A response never waits for
scoring; when the queue is full, the request is dropped and counted, never
blocking. The thread normalises the body into an event, computes the
per-request signals, and runs the streaming engine of `distillguard-detect`
and, unless `[link] enabled = false`, the campaign linker of
`distillguard-link`. It publishes each account's verdict into a shared map,
which the **enforce** phase reads on the account's next request.

An account in a confirmed campaign is blocked, like `analyze` blocks it
from `max(joined, detected)`. The thread re-reads campaign membership when
the linker's groups moved (at most once a second), so that members that
are quiet at that moment are blocked on their next request too.

If the detector thread is gone, the gateway fails open (requests pass) or,
with `fail_closed`, answers 503.

With a key store, the verdicts above `allow` are saved into it every ten
seconds when they changed, and when the gateway stops; a restarted gateway
loads them as a floor, so that a blocked account stays blocked while the
engine, which starts from nothing, relearns it. An operator's override
(`allow`) lifts a saved verdict.
*/

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use distillguard_core::Verdict;
use distillguard_detect::engine::{Engine, Thresholds, Weights};
use distillguard_pipeline::{PerRequest, Pipeline};
use distillguard_storage::{SavedVerdict, Store};

use crate::observed::Observed;
use crate::queue::{Feeder, Next, Refused, next};

/// What the detector knows besides requests (account records and model
/// releases), and whether it keeps each account's timeline.
#[derive(Debug, Default)]
pub struct Known {
    pub records: distillguard_pipeline::Known,
    /// Keep each account's timeline (the live console's account pages).
    pub timelines: bool,
}

impl Known {
    /// Reads `[detect] accounts` and `models`; a bad line is an error that
    /// names it (the gateway does not start on half a file).
    pub fn load(
        accounts: Option<&std::path::Path>,
        models: Option<&std::path::Path>,
    ) -> Result<Known, distillguard_pipeline::KnownError> {
        let (records, _) = distillguard_pipeline::Known::load(accounts, models, true)?;
        Ok(Known {
            records,
            timelines: false,
        })
    }
}

/// How long the detector naps on an empty queue.
const NAP: Duration = Duration::from_millis(2);

/// What the detector publishes per account.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// The account's own verdict: its whole traffic's, its campaign's.
    pub verdict: Verdict,
    pub risk: f64,
    /// In a confirmed campaign.
    pub campaign: bool,
    /// The highest verdict any of its keys reached on its own traffic.
    pub keys: Verdict,
}

/// A verdict the detector published: what a feed receives (a scale-out
/// worker posts them to the verdict board).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Account(String, State),
    Key(String, Verdict),
    /// A confirmed campaign, by its report id, and its member count (sent
    /// when it is confirmed and whenever it grows).
    Campaign(String, u32),
    /// A request's link record, for a cluster's linker (only with
    /// [`Feed::links`]).
    Link(Box<distillguard_link::LinkRecord>),
}

/// Where a detector's published changes go (a scale-out worker's).
pub struct Feed {
    pub to: std::sync::mpsc::Sender<Change>,
    /// Also send every request's link record ([`Change::Link`]): a
    /// cluster's linker links the accounts of every worker's partitions.
    pub links: bool,
}

/// What the detector thread is handed.
enum Job {
    Observe(Arc<Observed>),
    /// An event read from elsewhere (the bus).
    Event(Box<distillguard_core::Event>),
    /// Answered once everything queued before it has been scored and
    /// published (a batch waits for its verdict this way).
    Barrier(std::sync::mpsc::SyncSender<()>),
    /// Answered with a report of the state so far (the live console).
    Report(std::sync::mpsc::SyncSender<distillguard_core::Report>),
    /// Answered with the whole state, encoded ([`Detector::snapshot`]).
    Snapshot(std::sync::mpsc::SyncSender<Vec<u8>>),
    /// Replaces the whole state with a snapshot's ([`Detector::restore`]).
    Restore(
        Vec<u8>,
        std::sync::mpsc::SyncSender<Result<(), SnapshotError>>,
    ),
}

/// Why a snapshot was not restored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SnapshotError {
    #[error("the snapshot does not decode: {0}")]
    Decode(String),
    #[error(
        "the snapshot was taken by another build or under other settings (model, thresholds, [link])"
    )]
    Mismatch,
    #[error("the detector did not answer")]
    Down,
}

/// The snapshot format's version (a change of the state's layout bumps
/// it, and older snapshots are then refused: the worker folds anew). The
/// test `the_snapshot_layout_is_pinned_to_its_version` fails when the
/// layout moves and this was not bumped.
pub const SNAPSHOT_VERSION: u64 = 1;

/// A detector's state as saved: the pipeline and what it published.
#[derive(serde::Serialize)]
struct SnapshotOut<'a> {
    config: u64,
    pipeline: &'a Pipeline,
    published: &'a HashMap<String, State>,
    published_keys: &'a HashMap<String, Verdict>,
    published_campaigns: &'a HashMap<String, u32>,
}

/// [`SnapshotOut`], read back (the same fields in the same order).
#[derive(serde::Deserialize)]
struct SnapshotIn {
    config: u64,
    pipeline: Pipeline,
    published: HashMap<String, State>,
    published_keys: HashMap<String, Verdict>,
    published_campaigns: HashMap<String, u32>,
}

/// What a snapshot must have been taken under to be restored: this build's
/// snapshot format and model, the thresholds and the linking settings.
fn config_id(weights: &Weights, t: &Thresholds, link: &distillguard_link::Config) -> u64 {
    let text = format!(
        "{SNAPSHOT_VERSION}|{}|{}|{}|{}",
        weights.provenance,
        weights.features.join(","),
        serde_json::to_string(t).unwrap_or_default(),
        serde_json::to_string(link).unwrap_or_default()
    );
    distillguard_sketches::hash_exact(text.as_bytes())
}

/// When the detector forgets harmless accounts ([`Pipeline::forget_idle`]).
#[derive(Debug, Clone, Copy)]
pub struct Forgetting {
    /// Forgotten after this long without a request.
    pub idle: Duration,
    /// Tracked accounts before the least recently seen are forgotten early.
    pub max_accounts: usize,
}

impl Default for Forgetting {
    fn default() -> Self {
        Forgetting {
            idle: Duration::from_secs(86_400),
            max_accounts: 1_000_000,
        }
    }
}

/// How often idle accounts are looked for.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The detector handle.
pub struct Detector {
    /// The queue to the detection thread (`None`: it could not start).
    queue: Option<Feeder<Job>>,
    states: Arc<RwLock<HashMap<String, State>>>,
    /// Keys above `allow`, by key id.
    keys: Arc<RwLock<HashMap<String, Verdict>>>,
    pub enqueued: AtomicU64,
    pub dropped: AtomicU64,
    /// Requests scored so far.
    pub processed: Arc<AtomicU64>,
    /// Requests whose scoring panicked (skipped; detection goes on).
    pub faults: Arc<AtomicU64>,
    /// Verdict changes published, by verdict (allow … block).
    pub changes: Arc<[AtomicU64; 4]>,
    /// Accounts tracked now, and forgotten so far.
    pub tracked: Arc<AtomicU64>,
    pub forgotten: Arc<AtomicU64>,
    alive: Arc<AtomicBool>,
}

/// The thread's state.
struct Worker {
    /// The verdict pipeline `analyze` runs too.
    pipeline: Pipeline,
    intel: distillguard_stix::Intel,
    /// What was last published per account.
    published: HashMap<String, State>,
    states: Arc<RwLock<HashMap<String, State>>>,
    keys: Arc<RwLock<HashMap<String, Verdict>>>,
    published_keys: HashMap<String, Verdict>,
    /// Campaigns sent to the feed, with their sizes then.
    published_campaigns: HashMap<String, u32>,
    changes: Arc<[AtomicU64; 4]>,
    last_scan: Instant,
    /// Saved verdicts from before a restart: a floor under the engine's.
    carried: HashMap<String, State>,
    store: Option<Box<dyn Store>>,
    /// Where published changes go, if anywhere.
    feed: Option<std::sync::mpsc::Sender<Change>>,
    /// Send every request's link record to the feed.
    links: bool,
    /// What a snapshot must match to be restored ([`config_id`]).
    config: u64,
    /// The time idleness is measured against.
    clock: EventClock,
    /// This replica's name for its saved verdicts.
    source: String,
    dirty: bool,
    last_save: Instant,
    forgetting: Forgetting,
    last_forget: Instant,
    tracked: Arc<AtomicU64>,
    forgotten: Arc<AtomicU64>,
}

/// Event time, running on with the wall clock between events: what
/// "idle for a day" is measured against. Live, it is the wall clock. A
/// worker rebuilding from a week of stream, or a replay, folds days of
/// events in minutes, and its accounts are idle by their events' time, not
/// by the wall clock (against which every one of them would be days idle
/// and forgotten). Never ahead of the wall clock.
#[derive(Debug, Clone, Copy, Default)]
struct EventClock {
    newest: Option<(i64, Instant)>,
}

impl EventClock {
    fn saw(&mut self, ts: i64) {
        if self.newest.is_none_or(|(n, _)| ts >= n) {
            self.newest = Some((ts, Instant::now()));
        }
    }

    fn now(&self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        match self.newest {
            Some((ts, at)) => ts
                .saturating_add(i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX))
                .min(wall),
            None => wall,
        }
    }
}

/// How often changed verdicts are saved.
const SAVE_EVERY: Duration = Duration::from_secs(10);

/// Loads saved verdicts (a store that cannot be read carries nothing).
/// Replicas sharing a store each saved their own: an account carries the
/// strictest of them.
fn load(store: &dyn Store) -> HashMap<String, State> {
    let mut out: HashMap<String, State> = HashMap::new();
    for v in store.verdicts().unwrap_or_default() {
        let Some(verdict) = Verdict::parse(&v.verdict) else {
            continue;
        };
        let s = out.entry(v.account).or_insert(State {
            verdict,
            risk: v.risk,
            campaign: v.campaign,
            keys: Verdict::Allow,
        });
        s.verdict = s.verdict.max(verdict);
        s.risk = s.risk.max(v.risk);
        s.campaign |= v.campaign;
    }
    out
}

impl Detector {
    /// Starts the detector thread with the embedded weights.
    /// `store`: where verdicts are saved and loaded from (the key store),
    /// with this replica's name for its rows;
    /// `known`: account records and model releases;
    /// `feed`: where every published change is sent, if anywhere (a
    /// scale-out worker posts them to the verdict board, and sends the
    /// link records on to the cluster's linker).
    pub fn start(
        thresholds: Option<Thresholds>,
        link: distillguard_link::Config,
        capacity: usize,
        store: Option<(&str, String)>,
        known: Known,
        forgetting: Forgetting,
        feed: Option<Feed>,
    ) -> Detector {
        let links = feed.as_ref().is_some_and(|f| f.links);
        let feed = feed.map(|f| f.to);
        let (store, source) = match store {
            Some((p, source)) => (distillguard_storage::open(p).ok(), source),
            None => (None, String::new()),
        };
        let carried = store.as_deref().map(load).unwrap_or_default();
        let states: Arc<RwLock<HashMap<String, State>>> = Arc::new(RwLock::new(carried.clone()));
        let alive = Arc::new(AtomicBool::new(true));
        let processed = Arc::new(AtomicU64::new(0));
        let changes: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let weights = Weights::embedded();
        let t = thresholds.unwrap_or(weights.thresholds);
        // Every account record is registered with the linker (in id
        // order), so that accounts can link through their payment methods.
        let intel = distillguard_stix::Intel::default();
        let records = &known.records;
        let mut engine = Engine::new(&weights, t, &records.models, records.accounts.clone());
        engine.keep_timelines(known.timelines);
        let config = config_id(&weights, &t, &link);
        let pipeline = Pipeline::new(engine, link, &records.accounts, &intel);
        let keys: Arc<RwLock<HashMap<String, Verdict>>> = Arc::default();
        let tracked = Arc::new(AtomicU64::new(0));
        let forgotten = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            pipeline,
            intel,
            published_campaigns: HashMap::new(),
            published: carried.clone(),
            states: Arc::clone(&states),
            keys: Arc::clone(&keys),
            published_keys: HashMap::new(),
            changes: Arc::clone(&changes),
            last_scan: Instant::now(),
            carried,
            store,
            feed,
            links,
            config,
            clock: EventClock::default(),
            source,
            dirty: false,
            last_save: Instant::now(),
            forgetting,
            last_forget: Instant::now(),
            tracked: Arc::clone(&tracked),
            forgotten: Arc::clone(&forgotten),
        };
        let faults = Arc::new(AtomicU64::new(0));
        let (a, n, f) = (
            Arc::clone(&alive),
            Arc::clone(&processed),
            Arc::clone(&faults),
        );
        let spawned = Feeder::spawn("distillguard-detector", capacity, move |rx| {
            worker.run(rx, &n, &f);
            a.store(false, Ordering::Relaxed);
        });
        let queue = match spawned {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::warn!(error = %e, "the detection thread did not start");
                alive.store(false, Ordering::Relaxed);
                None
            }
        };
        Detector {
            queue,
            states,
            keys,
            enqueued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            processed,
            faults,
            changes,
            tracked,
            forgotten,
            alive,
        }
    }

    /// Queues an event read from elsewhere (the bus), waiting while the
    /// queue is full: a worker must fold every event it acknowledges, so
    /// it is held back instead of dropping. False if detection is down.
    pub fn submit_event(&self, e: distillguard_core::Event) -> bool {
        let Some(q) = &self.queue else { return false };
        if q.send(Job::Event(Box::new(e))) {
            self.enqueued.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.alive.store(false, Ordering::Relaxed);
            false
        }
    }

    /// Queues a request; never blocks (a full queue drops and counts).
    pub fn submit(&self, o: Arc<Observed>) {
        let Some(q) = &self.queue else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let sent = q.offer(Job::Observe(o), &self.dropped, |why, n| match why {
            Refused::Full => {
                tracing::warn!(dropped = n, "detection queue full: requests go unscored");
            }
            Refused::Closed => {
                tracing::warn!(dropped = n, "detection is down: requests go unscored");
            }
        });
        match sent {
            Ok(()) => {
                self.enqueued.fetch_add(1, Ordering::Relaxed);
            }
            Err(Refused::Closed) => self.alive.store(false, Ordering::Relaxed),
            Err(Refused::Full) => {}
        }
    }

    /// Scores `items` (waiting for room in the queue instead of dropping)
    /// and returns once they are scored and their verdicts published, or
    /// `false` if that did not happen within `deadline` (or detection is
    /// down). Blocks: call it off the async runtime.
    pub fn score_and_wait(&self, items: Vec<Arc<Observed>>, deadline: Duration) -> bool {
        let Some(q) = &self.queue else { return false };
        let until = Instant::now() + deadline;
        for o in items {
            match q.send_until(Job::Observe(o), until, NAP) {
                Ok(()) => {
                    self.enqueued.fetch_add(1, Ordering::Relaxed);
                }
                Err(Refused::Full) => return false,
                Err(Refused::Closed) => {
                    self.alive.store(false, Ordering::Relaxed);
                    return false;
                }
            }
        }
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if q.send_until(Job::Barrier(done), until, NAP).is_err() {
            return false;
        }
        wait.recv_timeout(until.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// The account's own latest verdict (allow if never seen).
    pub fn verdict(&self, account: &str) -> Verdict {
        self.state(account).map_or(Verdict::Allow, |s| s.verdict)
    }

    /// The verdict for a request of `account` on `key`: the account's own,
    /// its keys' where `scope` makes them account-wide, and the key's own.
    pub fn verdict_for(
        &self,
        account: &str,
        key: Option<&str>,
        scope: &crate::config::Scope,
    ) -> Verdict {
        let s = self.state(account);
        let of_key = key
            .and_then(|k| self.keys.read().ok().and_then(|m| m.get(k).copied()))
            .unwrap_or(Verdict::Allow);
        scope.combine(
            s.map_or(Verdict::Allow, |s| s.verdict),
            s.map_or(Verdict::Allow, |s| s.keys),
            of_key,
        )
    }

    pub fn state(&self, account: &str) -> Option<State> {
        self.states
            .read()
            .ok()
            .and_then(|m| m.get(account).copied())
    }

    /// Every account's published state, by account id.
    pub fn states(&self) -> Vec<(String, State)> {
        let mut v: Vec<(String, State)> = self
            .states
            .read()
            .map(|m| m.iter().map(|(a, s)| (a.clone(), *s)).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// A report of the detector's state now (accounts above `allow`, keys,
    /// campaigns, timelines where kept), once the requests queued before
    /// the call are scored; `None` when detection is down or it took longer
    /// than `deadline`.
    pub fn report(&self, deadline: Duration) -> Option<distillguard_core::Report> {
        let q = self.queue.as_ref()?;
        let (to, from) = sync_channel(1);
        let started = Instant::now();
        q.send_until(Job::Report(to), started + deadline, NAP)
            .ok()?;
        from.recv_timeout(deadline.saturating_sub(started.elapsed()))
            .ok()
    }

    /// The detector's whole state, encoded, once everything queued before
    /// has been folded (a worker saves it to resume from; `None`: the
    /// detector did not answer within `deadline`).
    pub fn snapshot(&self, deadline: Duration) -> Option<Vec<u8>> {
        let q = self.queue.as_ref()?;
        let (to, from) = sync_channel(1);
        let started = Instant::now();
        q.send_until(Job::Snapshot(to), started + deadline, NAP)
            .ok()?;
        from.recv_timeout(deadline.saturating_sub(started.elapsed()))
            .ok()
    }

    /// Replaces the detector's state with a snapshot's (before any event is
    /// handed to it). A snapshot of another build or other settings is
    /// refused, and the state is left as it was.
    pub fn restore(&self, snapshot: Vec<u8>, deadline: Duration) -> Result<(), SnapshotError> {
        let q = self.queue.as_ref().ok_or(SnapshotError::Down)?;
        let (to, from) = sync_channel(1);
        let started = Instant::now();
        q.send_until(Job::Restore(snapshot, to), started + deadline, NAP)
            .map_err(|_| SnapshotError::Down)?;
        from.recv_timeout(deadline.saturating_sub(started.elapsed()))
            .map_err(|_| SnapshotError::Down)?
    }

    /// Accounts per verdict (allow … block) and in campaigns.
    pub fn counts(&self) -> ([u64; 4], u64) {
        let mut c = [0u64; 4];
        let mut camp = 0;
        if let Ok(m) = self.states.read() {
            for s in m.values() {
                c[s.verdict as usize] += 1;
                camp += u64::from(s.campaign);
            }
        }
        (c, camp)
    }
}

/// On shutdown the thread scores what is queued, saves the verdicts, and
/// ends before the process does.
impl Drop for Detector {
    fn drop(&mut self) {
        // The feeder closes the queue and joins the thread.
        self.queue.take();
    }
}

impl Worker {
    /// Drains the queue, and naps when it is empty instead of blocking on
    /// it: a blocked receiver would make every request's send a futex
    /// wake-up (a system call on the request path); a nap of a millisecond
    /// or two only delays verdicts by as much.
    ///
    /// A request whose scoring panics is skipped and counted, and
    /// detection goes on: one malformed request must not switch detection
    /// off for everyone.
    fn run(mut self, rx: Receiver<Job>, processed: &AtomicU64, faults: &AtomicU64) {
        loop {
            match next(&rx, NAP) {
                Next::Item(Job::Barrier(done)) => {
                    self.rescan(true);
                    let _ = done.try_send(());
                }
                Next::Item(Job::Report(to)) => {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.pipeline.report(false)
                    }));
                    match r {
                        Ok(r) => {
                            let _ = to.try_send(r);
                        }
                        Err(_) => {
                            faults.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Next::Item(Job::Snapshot(to)) => {
                    let out = SnapshotOut {
                        config: self.config,
                        pipeline: &self.pipeline,
                        published: &self.published,
                        published_keys: &self.published_keys,
                        published_campaigns: &self.published_campaigns,
                    };
                    match postcard::to_stdvec(&out) {
                        Ok(b) => {
                            let _ = to.try_send(b);
                        }
                        Err(e) => tracing::warn!(error = %e, "the detector's state did not encode"),
                    }
                }
                Next::Item(Job::Restore(bytes, to)) => {
                    let _ = to.try_send(self.restore(&bytes));
                }
                Next::Item(Job::Observe(o)) => {
                    self.score(&o.account, || o.event(), faults);
                    processed.fetch_add(1, Ordering::Relaxed);
                }
                Next::Item(Job::Event(e)) => {
                    let account = e.account_id.clone();
                    self.score(&account, || Some(*e), faults);
                    processed.fetch_add(1, Ordering::Relaxed);
                }
                Next::Idle => {
                    // Idle: campaign membership is brought up to date now.
                    self.rescan(true);
                    self.forget(true);
                    if self.dirty && self.last_save.elapsed() >= SAVE_EVERY {
                        self.save();
                    }
                }
                Next::Closed => {
                    self.rescan(true);
                    if self.dirty {
                        self.save();
                    }
                    return;
                }
            }
        }
    }

    /// Replaces the state with a snapshot's (see [`Detector::restore`]).
    fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let s: SnapshotIn =
            postcard::from_bytes(bytes).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if s.config != self.config {
            return Err(SnapshotError::Mismatch);
        }
        self.pipeline = s.pipeline;
        self.published = s.published;
        self.published_keys = s.published_keys;
        self.published_campaigns = s.published_campaigns;
        if let Ok(mut m) = self.states.write() {
            m.clone_from(&self.published);
        }
        if let Ok(mut m) = self.keys.write() {
            m.clone_from(&self.published_keys);
        }
        self.tracked.store(
            self.pipeline.engine().live_accounts() as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Scores one request; one whose scoring panics is skipped and
    /// counted, and detection goes on.
    fn score(
        &mut self,
        account: &str,
        event: impl FnOnce() -> Option<distillguard_core::Event>,
        faults: &AtomicU64,
    ) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(e) = event() {
                self.process(&e);
            }
        }));
        if r.is_err() {
            let n = faults.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                faults = n,
                account = %account,
                "scoring a request failed; it was skipped and detection goes on"
            );
        }
    }

    fn process(&mut self, e: &distillguard_core::Event) {
        self.clock.saw(e.ts.0);
        let per = PerRequest {
            intel: &self.intel,
            link_keys: self.pipeline.linking() || self.links,
        };
        let r = distillguard_pipeline::record(e, &per);
        let out = self.pipeline.process(&r);
        if self.links
            && let Some(f) = &self.feed
        {
            let rec = self.pipeline.link_record(&r, &out, e.id.as_deref());
            let _ = f.send(Change::Link(Box::new(rec)));
        }
        let keys = self
            .published
            .get(&e.account_id)
            .map_or(Verdict::Allow, |s| s.keys)
            .max(out.key);
        let state = State {
            verdict: out.own,
            risk: out.risk,
            campaign: out.campaign,
            keys,
        };
        if let Some(k) = &e.api_key_id
            && out.key > Verdict::Allow
            && self.published_keys.get(k) != Some(&out.key)
        {
            self.published_keys.insert(k.clone(), out.key);
            if let Ok(mut m) = self.keys.write() {
                m.insert(k.clone(), out.key);
            }
            if let Some(f) = &self.feed {
                let _ = f.send(Change::Key(k.clone(), out.key));
            }
        }
        self.publish(&e.account_id, state);
        self.rescan(false);
        self.forget(false);
    }

    /// Forgets idle harmless accounts (every minute, or at once, at most
    /// every second, while more than `max_accounts` are tracked), and their
    /// published `allow` states with them.
    fn forget(&mut self, idle: bool) {
        let live = self.pipeline.engine().live_accounts();
        self.tracked.store(live as u64, Ordering::Relaxed);
        let since = self.last_forget.elapsed();
        let every = FORGET_EVERY.min(self.forgetting.idle);
        let due = since >= every
            || (live > self.forgetting.max_accounts && since >= Duration::from_secs(1));
        if !due || (idle && since < every) {
            return;
        }
        self.last_forget = Instant::now();
        let now = self.clock.now();
        let idle_ms = i64::try_from(self.forgetting.idle.as_millis()).unwrap_or(i64::MAX);
        let (carried, published) = (&self.carried, &self.published);
        // Saved verdicts and anything published above allow are kept.
        let keep = |a: &str| {
            carried.contains_key(a)
                || published
                    .get(a)
                    .is_some_and(|s| s.verdict > Verdict::Allow || s.campaign)
        };
        let gone = self
            .pipeline
            .forget_idle(now, idle_ms, self.forgetting.max_accounts, &keep);
        if gone.is_empty() {
            return;
        }
        for a in &gone {
            self.published.remove(a);
        }
        if let Ok(mut m) = self.states.write() {
            for a in &gone {
                m.remove(a);
            }
        }
        self.forgotten
            .fetch_add(gone.len() as u64, Ordering::Relaxed);
        self.tracked.store(
            self.pipeline.engine().live_accounts() as u64,
            Ordering::Relaxed,
        );
        tracing::debug!(forgotten = gone.len(), "idle accounts forgotten");
    }

    /// Saves the verdicts above `allow`.
    fn save(&mut self) {
        self.dirty = false;
        self.last_save = Instant::now();
        let Some(store) = &self.store else { return };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut all: Vec<SavedVerdict> = self
            .published
            .iter()
            .filter(|(_, s)| s.verdict > Verdict::Allow || s.campaign)
            .map(|(a, s)| SavedVerdict {
                source: self.source.clone(),
                account: a.clone(),
                verdict: s.verdict.as_str().into(),
                risk: s.risk,
                campaign: s.campaign,
                updated: now,
            })
            .collect();
        all.sort_by(|a, b| a.account.cmp(&b.account));
        // A failed save is retried at the next change.
        if let Err(e) = store.save_verdicts(&self.source, &all) {
            tracing::warn!(error = %e, "saving verdicts failed; retried at the next change");
            self.dirty = true;
        }
    }

    fn publish(&mut self, account: &str, state: State) {
        // A verdict saved before a restart is a floor.
        let state = match self.carried.get(account) {
            Some(c) => State {
                verdict: state.verdict.max(c.verdict),
                campaign: state.campaign || c.campaign,
                risk: state.risk.max(c.risk),
                keys: state.keys,
            },
            None => state,
        };
        let old = self.published.get(account).copied();
        // A campaign member stays blocked.
        let state = match old {
            Some(o) if o.campaign => State {
                verdict: Verdict::Block,
                campaign: true,
                ..state
            },
            _ => state,
        };
        let changed = old.is_none_or(|o| {
            o.verdict != state.verdict || o.campaign != state.campaign || o.keys != state.keys
        });
        // The risk alone moves with every request; publishing each move
        // would take the write lock each time, so it is refreshed with
        // verdict changes and when it moved by 0.05.
        if !changed && old.is_some_and(|o| (o.risk - state.risk).abs() < 0.05) {
            return;
        }
        self.published.insert(account.to_string(), state);
        if changed {
            self.changes[state.verdict as usize].fetch_add(1, Ordering::Relaxed);
            self.dirty = true;
            if let Some(f) = &self.feed {
                let _ = f.send(Change::Account(account.to_string(), state));
            }
        }
        if let Ok(mut m) = self.states.write() {
            m.insert(account.to_string(), state);
        }
    }

    /// Blocks every member of confirmed campaigns when groups moved (at
    /// most once a second while requests arrive; at once when idle).
    fn rescan(&mut self, force: bool) {
        if !force && self.last_scan.elapsed() < Duration::from_secs(1) {
            return;
        }
        let Some(members) = self.pipeline.campaign_members_if_moved() else {
            return;
        };
        self.last_scan = Instant::now();
        let Ok(mut m) = self.states.write() else {
            return;
        };
        for name in members {
            let s = m.entry(name.clone()).or_insert(State {
                verdict: Verdict::Allow,
                risk: 0.0,
                campaign: false,
                keys: Verdict::Allow,
            });
            if !s.campaign {
                s.campaign = true;
                s.verdict = Verdict::Block;
                self.changes[Verdict::Block as usize].fetch_add(1, Ordering::Relaxed);
                self.published.insert(name.clone(), *s);
                self.dirty = true;
                if let Some(f) = &self.feed {
                    let _ = f.send(Change::Account(name.clone(), *s));
                }
            }
        }
        drop(m);
        if let Some(f) = &self.feed {
            for (id, n) in self.pipeline.campaign_summaries() {
                if self.published_campaigns.get(&id) != Some(&n) {
                    let _ = f.send(Change::Campaign(id.clone(), n));
                    self.published_campaigns.insert(id, n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    #[test]
    fn idleness_runs_on_event_time_never_ahead_of_the_wall_clock() {
        // Before any event: the wall clock.
        let mut c = EventClock::default();
        assert!((c.now() - wall()).abs() < 1_000);
        // A replay of last February: February, not today.
        let feb = 1_771_200_000_000;
        c.saw(feb);
        c.saw(feb - 5_000);
        assert!((c.now() - feb).abs() < 1_000, "{}", c.now() - feb);
        // An event stamped in the future does not run the clock ahead.
        c.saw(wall() + 86_400_000);
        assert!(c.now() <= wall());
    }
}
