/*!
Streaming time order: a bounded reorder buffer in front of the engine.

Verdicts must not depend on the order of lines in a file, so the engine
folds records in one total order: by time, then by account hash, then by
arrival (`distillguard_detect::engine::time_order`). Sorting a whole log gives that
order, but it holds every record in memory before scoring the first one.
Real logs are nearly sorted: a gateway writes requests as they finish, and
several writers interleave by a few seconds. This buffer holds only the
records of the last `window` of time. It releases a record once a record
at least `window` newer has arrived, in the same total order as a full
sort.

If a record arrives after a later one was already released, the stream
was more disordered than the window allows. [`Reorder::push`] then says
so, and the caller falls back to sorting the whole log (files can be read
again). Results are identical either way; only memory and speed differ.
*/

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A record that came too late for the window (the caller sorts instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    /// How far behind the last released record it was, in milliseconds.
    pub behind_ms: i64,
}

/// A held record's order key and its slot in the slab. The heap moves
/// these small entries, not the records (a record is a few hundred bytes,
/// and moving it a dozen times a release was 2% of `analyze`).
type Entry = Reverse<((i64, u64, u64), u32)>;

/// Something the buffer can order: its timestamp and account hash.
pub trait Timed {
    fn order_key(&self) -> (i64, u64);
}

impl<A: Timed, B> Timed for (A, B) {
    fn order_key(&self) -> (i64, u64) {
        self.0.order_key()
    }
}

impl<A: Timed, B, C> Timed for (A, B, C) {
    fn order_key(&self) -> (i64, u64) {
        self.0.order_key()
    }
}

/// The reorder buffer.
pub struct Reorder<T> {
    heap: BinaryHeap<Entry>,
    /// The records, by slot; `free` lists the empty slots.
    slab: Vec<Option<T>>,
    free: Vec<u32>,
    window_ms: i64,
    newest: i64,
    seq: u64,
    last_out: Option<(i64, u64, u64)>,
    /// Most records held at once (reported: the buffer's memory).
    pub peak: usize,
}

impl<T: Timed> Reorder<T> {
    pub fn new(window_ms: i64) -> Reorder<T> {
        Reorder {
            heap: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            window_ms: window_ms.max(0),
            newest: i64::MIN,
            seq: 0,
            last_out: None,
            peak: 0,
        }
    }

    /// Adds a record (in arrival order) and passes every record that can no
    /// longer be overtaken to `emit`, in time order.
    pub fn push(&mut self, item: T, emit: impl FnMut(T)) -> Result<(), Late> {
        let (ts, account) = item.order_key();
        let key = (ts, account, self.seq);
        self.seq += 1;
        if let Some(last) = self.last_out
            && key < last
        {
            return Err(Late {
                behind_ms: last.0 - key.0,
            });
        }
        self.newest = self.newest.max(key.0);
        let slot = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(item);
                i
            }
            None => {
                self.slab.push(Some(item));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((key, slot)));
        self.peak = self.peak.max(self.heap.len());
        let horizon = self.newest.saturating_sub(self.window_ms);
        self.release_before(horizon, emit);
        Ok(())
    }

    /// Releases everything still held, in time order, and goes on: a
    /// record older than those released then comes back as [`Late`]. (A
    /// live consumer flushes when its input goes quiet, so that the last
    /// records are not held until newer ones arrive.)
    pub fn flush(&mut self, mut emit: impl FnMut(T)) {
        while let Some((key, item)) = self.pop() {
            self.last_out = Some(key);
            emit(item);
        }
    }

    /// The earliest record held, out of the heap and the slab.
    fn pop(&mut self) -> Option<((i64, u64, u64), T)> {
        loop {
            let Reverse((key, slot)) = self.heap.pop()?;
            if let Some(item) = self.slab.get_mut(slot as usize).and_then(Option::take) {
                self.free.push(slot);
                return Some((key, item));
            }
        }
    }

    /// Releases, in time order, every record older than `horizon` (for a
    /// consumer that knows, from several inputs, what can still arrive).
    pub fn release_before(&mut self, horizon: i64, mut emit: impl FnMut(T)) {
        while self
            .heap
            .peek()
            .is_some_and(|Reverse((key, _))| key.0 < horizon)
        {
            if let Some((key, item)) = self.pop() {
                self.last_out = Some(key);
                emit(item);
            }
        }
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Whether a record would come too late, without taking it (for a
    /// caller that judges late records out of order rather than sorting).
    pub fn check(&self, item: &T) -> Result<(), Late> {
        let (ts, account) = item.order_key();
        match self.last_out {
            Some(last) if (ts, account, self.seq) < last => Err(Late {
                behind_ms: last.0 - ts,
            }),
            _ => Ok(()),
        }
    }

    /// Releases everything still held, in time order.
    pub fn finish(mut self, mut emit: impl FnMut(T)) {
        while let Some((_, item)) = self.pop() {
            emit(item);
        }
    }
}
