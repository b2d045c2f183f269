/*!
The gateway's listener: a cap on open connections, and `TCP_NODELAY`.

At `max_connections` open connections the gateway stops accepting; new
clients wait in the kernel's backlog until one closes (as mini-redis
does), so that a flood of idle or slow clients cannot exhaust memory or
file descriptors. Every accepted socket gets `TCP_NODELAY`: streamed
answers go out chunk by chunk, and Nagle's algorithm would hold small
chunks back waiting for acknowledgements.
*/

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A TCP listener with a connection cap.
pub struct Capped {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    max: usize,
}

impl Capped {
    pub fn new(inner: TcpListener, max: usize) -> Capped {
        let max = max.max(1);
        Capped {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A handle that reports open connections (for `/metrics`).
    pub fn gauge(&self) -> OpenConnections {
        OpenConnections {
            permits: Arc::clone(&self.permits),
            max: self.max,
        }
    }
}

/// Open connections, read from the cap's semaphore.
#[derive(Clone)]
pub struct OpenConnections {
    permits: Arc<Semaphore>,
    max: usize,
}

impl OpenConnections {
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// An accepted connection; it frees its place in the cap when dropped.
pub struct Conn {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for Capped {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            // The semaphore is never closed.
            let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                continue;
            };
            // Retries and backs off on accept errors (too many files…).
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let _ = stream.set_nodelay(true);
            return (
                Conn {
                    stream,
                    _permit: permit,
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The client's address, for handlers (`ConnectInfo<Peer>`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, Capped>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Capped>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// For embedding the router in a plain `axum::serve`.
impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
