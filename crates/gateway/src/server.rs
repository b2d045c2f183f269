/*!
The HTTP server loop, one per listener, with the deadlines a public
listener needs.

- **Headers**: a client has `header_timeout` to send a request's head; a
  connection that sends half a head (slowloris) is closed then, so that
  half-sent requests cannot hold the connection cap. Idle keep-alive
  connections wait under the same deadline.
- **Bodies**: the read phase reads a body under its own deadline (408) and
  under a budget of body bytes held across all connections (see
  [`BodyBudget`]).
- **Shutdown** comes from the caller (as in mini-redis): the loop stops
  accepting, asks every connection to finish its request in flight, and
  closes whatever is left when `drain` has passed.
*/

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::listener::Peer;

/// The server's deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// To receive a request's whole head (and between keep-alive requests).
    pub header: Duration,
    /// After shutdown is asked for, the longest wait for requests in flight.
    pub drain: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains for at
/// most `deadlines.drain`. Returns whether every connection finished in
/// time (false: some were closed at the deadline).
pub async fn run<L>(
    mut listener: L,
    app: Router,
    deadlines: Deadlines,
    tls: Option<Arc<crate::tls::Listener>>,
    shutdown: impl Future<Output = ()>,
) -> bool
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(deadlines.header)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(Peer(addr)));
            app.clone().oneshot(req.map(Body::new))
        });
        let watcher = graceful.watcher();
        let acceptor = tls.as_ref().map(|t| t.current());
        let http = http.clone();
        let header = deadlines.header;
        tokio::spawn(async move {
            // A client that goes away, a failed handshake or a head that
            // times out ends the connection; there is nothing to answer.
            match acceptor {
                None => {
                    let _ = watcher
                        .watch(http.serve_connection(TokioIo::new(io), service))
                        .await;
                }
                Some(a) => {
                    // The handshake is part of the head's deadline.
                    if let Ok(Ok(stream)) = tokio::time::timeout(header, a.accept(io)).await {
                        let _ = watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await;
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::time::timeout(deadlines.drain, graceful.shutdown())
        .await
        .is_ok()
}

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
