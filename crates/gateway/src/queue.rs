/*!
A bounded queue to one named thread: the detector's and the event log's.

Senders on the request path never block: [`Feeder::offer`] drops what a
full queue cannot take and counts it. The thread naps on an empty queue
instead of blocking on it ([`next`]): a blocked receiver would make every
send a futex wake-up, a system call on the request path, where a nap of a
millisecond or two only delays the thread's work by as much. Dropping the
feeder closes the queue and waits for the thread to finish what is queued.
*/

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// The sending side, and the thread it feeds.
pub(crate) struct Feeder<T> {
    tx: Option<SyncSender<T>>,
    thread: Option<JoinHandle<()>>,
}

/// Why an offer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is full.
    Full,
    /// The thread has stopped.
    Closed,
}

impl<T: Send + 'static> Feeder<T> {
    /// Starts thread `name` running `body` over a queue of `capacity`.
    pub(crate) fn spawn(
        name: &str,
        capacity: usize,
        body: impl FnOnce(Receiver<T>) + Send + 'static,
    ) -> std::io::Result<Feeder<T>> {
        let (tx, rx) = sync_channel::<T>(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(rx))?;
        Ok(Feeder {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `item` without blocking. A refused item is counted in
    /// `dropped`, and `warn` is called with the count when it reaches 1, 2,
    /// 4, … (a log line per doubling, not per drop).
    pub(crate) fn offer(
        &self,
        item: T,
        dropped: &AtomicU64,
        warn: impl FnOnce(Refused, u64),
    ) -> Result<(), Refused> {
        let why = match self.tx.as_ref().map(|tx| tx.try_send(item)) {
            Some(Ok(())) => return Ok(()),
            Some(Err(TrySendError::Full(_))) => Refused::Full,
            Some(Err(TrySendError::Disconnected(_))) | None => Refused::Closed,
        };
        let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            warn(why, n);
        }
        Err(why)
    }

    /// Queues `item`, waiting for room; false if the thread has stopped.
    pub(crate) fn send(&self, item: T) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(item).is_ok())
    }

    /// Queues `item`, retrying every `nap` while the queue is full, until
    /// `until`.
    pub(crate) fn send_until(
        &self,
        mut item: T,
        until: std::time::Instant,
        nap: Duration,
    ) -> Result<(), Refused> {
        let Some(tx) = &self.tx else {
            return Err(Refused::Closed);
        };
        loop {
            match tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(i)) if std::time::Instant::now() < until => {
                    item = i;
                    std::thread::sleep(nap);
                }
                Err(TrySendError::Full(_)) => return Err(Refused::Full),
                Err(TrySendError::Disconnected(_)) => return Err(Refused::Closed),
            }
        }
    }
}

impl<T> Drop for Feeder<T> {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the thread takes from its queue next.
pub(crate) enum Next<T> {
    Item(T),
    /// Nothing queued: the caller did its idle work; `next` napped.
    Idle,
    /// Every sender is gone and the queue is empty.
    Closed,
}

/// The next item; on an empty queue, a nap of `nap` first (see the module
/// doc).
pub(crate) fn next<T>(rx: &Receiver<T>, nap: Duration) -> Next<T> {
    match rx.try_recv() {
        Ok(t) => Next::Item(t),
        Err(TryRecvError::Empty) => {
            std::thread::sleep(nap);
            Next::Idle
        }
        Err(TryRecvError::Disconnected) => Next::Closed,
    }
}

/// Takes up to `max` queued items into `out` without waiting; false once
/// every sender is gone (what was queued is still taken first).
pub(crate) fn drain<T>(rx: &Receiver<T>, max: usize, out: &mut Vec<T>) -> bool {
    while out.len() < max {
        match rx.try_recv() {
            Ok(t) => out.push(t),
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_queue_drops_and_counts_and_the_thread_finishes_what_is_queued() {
        let seen = Arc::new(AtomicU64::new(0));
        let s = Arc::clone(&seen);
        let gate = Arc::new(std::sync::Barrier::new(2));
        let g = Arc::clone(&gate);
        let f = Feeder::spawn("test-queue", 2, move |rx: Receiver<u64>| {
            g.wait();
            loop {
                match next(&rx, Duration::from_millis(1)) {
                    Next::Item(n) => {
                        s.fetch_add(n, Ordering::Relaxed);
                    }
                    Next::Idle => {}
                    Next::Closed => return,
                }
            }
        })
        .unwrap();
        let dropped = AtomicU64::new(0);
        let mut warned = Vec::new();
        for i in 1..=5 {
            let _ = f.offer(i, &dropped, |why, n| warned.push((why, n)));
        }
        // Two fit; three are dropped, warned at the first and second.
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
        assert_eq!(warned, vec![(Refused::Full, 1), (Refused::Full, 2)]);
        gate.wait();
        assert!(f.send(10));
        drop(f);
        assert_eq!(seen.load(Ordering::Relaxed), 1 + 2 + 10);
    }

    #[test]
    fn drain_takes_what_is_queued_then_says_when_the_senders_are_gone() {
        let (tx, rx) = sync_channel(8);
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        let mut out = Vec::new();
        assert!(drain(&rx, 3, &mut out));
        assert_eq!(out, [0, 1, 2]);
        drop(tx);
        out.clear();
        assert!(!drain(&rx, 10, &mut out));
        assert_eq!(out, [3, 4]);
    }
}
