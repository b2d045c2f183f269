/*!
The HTTP server loop, one per listener, with the deadlines a public
listener needs.

- **Headers**: a client has `header_timeout` to send a request's head; a
  connection that sends half a head (slowloris) is closed then, so that
  half-sent requests cannot hold the connection cap. Idle keep-alive
  connections wait under the same deadline.
- **Bodies**: the read phase reads a body under its own deadline (408) and
  under a budget of body bytes held across all connections (see
  [`BodyBudget`](crate::budget::BodyBudget)).
- **Shutdown** comes from the caller (as in mini-redis): the loop stops
  accepting, asks every connection to finish its request in flight, and
  closes whatever is left when `drain` has passed.
*/

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tower::ServiceExt;

use crate::config::Config;
use crate::error::ServeError;
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

/// A future that resolves on Ctrl-C or SIGTERM, for callers to hand to
/// [`serve`] as its shutdown. The handlers are installed here, before it is
/// first polled, so that a signal sent as soon as the address is printed
/// already stops the server gracefully.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, ServeError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(ServeError::Serve)?;
        let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Serve)?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves until `shutdown` resolves; then requests in flight get
/// `drain_timeout_secs` to finish, and the rest are closed. `ready` gets
/// the public address and, with `internal_listen`, the internal one.
pub async fn serve(
    cfg: Config,
    config_path: Option<PathBuf>,
    ready: impl FnOnce(std::net::SocketAddr, Option<std::net::SocketAddr>),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = bind(&cfg.listen).await?;
    let internal = match &cfg.internal_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    ready(
        listener.local_addr().map_err(ServeError::Serve)?,
        match &internal {
            Some(l) => Some(l.local_addr().map_err(ServeError::Serve)?),
            None => None,
        },
    );
    let deadlines = Deadlines {
        header: Duration::from_secs(cfg.header_timeout_secs.get()),
        drain: Duration::from_secs(cfg.drain_timeout_secs),
    };
    if cfg.auth == crate::config::Auth::None {
        tracing::warn!(
            "auth = \"none\": requests are not authenticated and each client address is an account; for local testing only"
        );
    }
    tracing::info!(
        upstreams = cfg.upstreams.len(),
        trusted_proxies = cfg.trusted_proxies.len(),
        detection = cfg.detect.enabled,
        event_log = cfg.log.is_some(),
        "gateway started"
    );
    let listener = crate::listener::Capped::new(listener, cfg.max_connections);
    let gauge = listener.gauge();
    let (public, internal_app, tls) = crate::routes::router_with(cfg, config_path, Some(gauge))?;
    // One shutdown stops both servers (a watch channel, as mini-redis
    // broadcasts its shutdown).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown asked: no new connections; draining");
        let _ = stop_tx.send(true);
    });
    let main = run(
        listener,
        public,
        deadlines,
        tls.clone(),
        stopped(stop_rx.clone()),
    );
    let drained = match (internal, internal_app) {
        (Some(l), Some(app)) => {
            let side = run(l, app, deadlines, tls, stopped(stop_rx));
            let (a, b) = tokio::join!(main, side);
            a && b
        }
        _ => main.await,
    };
    if drained {
        tracing::info!("gateway stopped: every request in flight finished");
    } else {
        tracing::warn!(
            drain_timeout_secs = deadlines.drain.as_secs(),
            "gateway stopped: requests still in flight at the drain deadline were closed"
        );
    }
    Ok(())
}
