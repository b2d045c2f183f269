/*!
Detection in the gateway, off the hot path.

Every request becomes an event. Its per-request signals are computed on
the request's own task (microseconds), and the record goes through a
bounded queue to one detector thread running the streaming engine of
`distillguard-detect`. A response never waits for scoring. When the queue
is full, the record is dropped and counted, never blocking. The thread
publishes each account's verdict into a shared map, which the
**enforce** phase reads on the account's next request.

If the detector thread is gone, the gateway fails open (requests pass) or,
with `fail_closed`, answers 503.
*/

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, RwLock};

use distillguard_core::Verdict;
use distillguard_detect::engine::{Engine, Pre, Thresholds, Weights};

/// The detector handle.
pub struct Detector {
    tx: SyncSender<Pre>,
    verdicts: Arc<RwLock<HashMap<String, Verdict>>>,
    pub enqueued: AtomicU64,
    pub dropped: AtomicU64,
    alive: Arc<AtomicBool>,
}

impl Detector {
    /// Starts the detector thread with the embedded weights.
    pub fn start(thresholds: Option<Thresholds>, capacity: usize) -> Detector {
        let (tx, rx) = sync_channel::<Pre>(capacity.max(1));
        let verdicts: Arc<RwLock<HashMap<String, Verdict>>> = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let (v, a) = (Arc::clone(&verdicts), Arc::clone(&alive));
        let weights = Weights::embedded();
        let t = thresholds.unwrap_or(weights.thresholds);
        let spawned = std::thread::Builder::new()
            .name("distillguard-detector".into())
            .spawn(move || {
                let mut engine = Engine::new(&weights, t, &[], HashMap::new());
                let mut last: HashMap<u32, Verdict> = HashMap::new();
                for p in rx {
                    let idx = engine.process(&p);
                    let verdict = engine.verdict_of(idx);
                    if last.get(&idx) != Some(&verdict) {
                        last.insert(idx, verdict);
                        if let Ok(mut m) = v.write() {
                            m.insert(p.account_id.clone(), verdict);
                        }
                    }
                }
                a.store(false, Ordering::Relaxed);
            });
        if spawned.is_err() {
            alive.store(false, Ordering::Relaxed);
        }
        Detector {
            tx,
            verdicts,
            enqueued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            alive,
        }
    }

    /// Queues a record; never blocks (a full queue drops and counts).
    pub fn submit(&self, p: Pre) {
        match self.tx.try_send(p) {
            Ok(()) => {
                self.enqueued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.alive.store(false, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// The account's latest verdict (allow if never seen).
    pub fn verdict(&self, account: &str) -> Verdict {
        self.verdicts
            .read()
            .ok()
            .and_then(|m| m.get(account).copied())
            .unwrap_or(Verdict::Allow)
    }
}
