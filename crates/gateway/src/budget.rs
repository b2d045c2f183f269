//! The budget of request body bytes held across all connections (the
//! read phase takes from it; see [`crate::server`] for the deadlines).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Request body bytes held across all connections, in KiB. A body takes its
/// declared length (or the body cap when it declares none) before it is
/// read, and gives it back when its request has been forwarded; past the
/// budget, new requests get 503 at once instead of memory growing with
/// every stalled upload.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    kib: u32,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX >> 3);
        let kib = kib.clamp(1, u32::MAX >> 3);
        BodyBudget {
            permits: Arc::new(Semaphore::new(kib as usize)),
            kib,
        }
    }

    /// Takes room for a body of up to `bytes`; `None` when the budget is
    /// spent.
    pub fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let want = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.kib);
        Arc::clone(&self.permits).try_acquire_many_owned(want).ok()
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        (self.kib as usize - self.permits.available_permits()) * 1024
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_body_budget_refuses_beyond_its_bytes_and_recovers() {
        let b = BodyBudget::new(10 << 10);
        let first = b.take(6 << 10).unwrap();
        assert_eq!(b.held(), 6 << 10);
        assert!(b.take(6 << 10).is_none(), "only 4 KiB are left");
        let small = b.take(100).unwrap();
        drop(first);
        drop(small);
        assert_eq!(b.held(), 0);
        // A body larger than the whole budget takes all of it, not forever.
        let all = b.take(1 << 30).unwrap();
        assert!(b.take(1).is_none());
        drop(all);
        assert!(b.take(1).is_some());
    }
}
