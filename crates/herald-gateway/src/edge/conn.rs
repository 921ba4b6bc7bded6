//! The accept step in front of HTTP: the PROXY header when configured, then the node-wide and
//! per-address caps on HTTP connections, counted from accept until the connection closes or
//! becomes a WebSocket (which is then counted as a socket instead).
//!
//! A connection over a cap is answered with a complete 503 (node-wide) or 429 (per address)
//! JSON error and closed, before any request is read.
//!
//! When the node drains, a kept-alive connection idle between requests is closed at once (its
//! next read ends the stream); a request in flight, or the first on a new connection, is
//! answered with `Connection: close` (`edge::http`), so shutdown never waits for clients to
//! drop idle connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::{error::DispatchError, Protocol};
use herald_protocol::{ErrorBody, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::proxy::{read_header, Proxied};
use super::table::{AddrSlot, AddrTable, Refusal};

/// Open HTTP connections of the node, and their cap.
pub struct HttpConnections {
    open: AtomicUsize,
    max: usize,
}

impl HttpConnections {
    pub fn new(max: usize) -> Arc<HttpConnections> {
        Arc::new(HttpConnections {
            open: AtomicUsize::new(0),
            max,
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn try_open(self: &Arc<Self>) -> Option<HttpSlot> {
        let mut cur = self.open.load(Ordering::Relaxed);
        loop {
            if cur >= self.max {
                return None;
            }
            match self.open.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(HttpSlot {
                        node: self.clone(),
                        addr: None,
                    })
                }
                Err(now) => cur = now,
            }
        }
    }
}

/// One HTTP connection's place in the node-wide and per-address counts.
pub struct HttpSlot {
    node: Arc<HttpConnections>,
    addr: Option<AddrSlot>,
}

impl Drop for HttpSlot {
    fn drop(&mut self) {
        self.node.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The requests of one HTTP connection, shared with the request middleware through the
/// connection's extensions, so a drain closes the connection only while it is idle between
/// requests.
#[derive(Clone, Default)]
pub struct Requests(Arc<RequestCount>);

#[derive(Default)]
pub struct RequestCount {
    in_flight: AtomicUsize,
    started: AtomicUsize,
}

/// One request in flight, for its lifetime.
pub struct RequestGuard(Arc<RequestCount>);

impl Requests {
    pub fn enter(&self) -> RequestGuard {
        self.0.started.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.0.clone())
    }

    /// Served a request and has none in flight: kept alive, waiting for the next.
    fn idle(&self) -> bool {
        self.0.in_flight.load(Ordering::Relaxed) == 0 && self.0.started.load(Ordering::Relaxed) > 0
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that holds its HTTP connection slot while actix-http serves it.
pub struct EdgeStream {
    io: TcpStream,
    slot: Option<HttpSlot>,
    requests: Requests,
    drain: CancellationToken,
    /// Wakes an idle read when the drain starts (made on the first read that waits).
    drained: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl EdgeStream {
    /// The connection's request count, for its extensions (`HttpService::on_connect_ext`).
    pub fn requests(&self) -> Requests {
        self.requests.clone()
    }

    /// The raw stream, for a connection that stops being HTTP (a WebSocket upgrade): its
    /// HTTP slot is released.
    pub fn into_inner(mut self) -> TcpStream {
        self.slot = None;
        self.io
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.io.set_nodelay(on)
    }
}

impl AsyncRead for EdgeStream {
    /// Reads, except that a drain ends an idle connection's stream (end of file: actix-http
    /// closes the connection).
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.drain.is_cancelled() && this.requests.idle() {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => {
                // Registered on every waiting read, busy or not: actix-http's last read after a
                // response may come while the request still counts as in flight, and it is the
                // one a drain must wake.
                if !this.drain.is_cancelled() {
                    let drain = &this.drain;
                    let drained = this
                        .drained
                        .get_or_insert_with(|| Box::pin(drain.clone().cancelled_owned()));
                    if drained.as_mut().poll(cx).is_ready() && this.requests.idle() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl AsyncWrite for EdgeStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What the accept step needs.
pub struct Accept {
    pub metrics: Arc<crate::metrics::Metrics>,
    pub connections: Arc<HttpConnections>,
    pub addrs: Arc<AddrTable>,
    /// Read a PROXY protocol v2 header first.
    pub proxy_protocol: bool,
    pub head_timeout: Duration,
    /// The node's drain (`AppState::drain`).
    pub drain: CancellationToken,
}

fn refusal_response(code: ErrorCode, message: &str, retry_after: u64) -> Vec<u8> {
    let body = serde_json::to_vec(&ErrorBody {
        code,
        message: message.to_string(),
        field: None,
    })
    .unwrap_or_default();
    let status = match code.http_status() {
        429 => "429 Too Many Requests",
        _ => "503 Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: {retry_after}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

async fn refuse(mut io: TcpStream, code: ErrorCode, message: &str) -> DispatchError {
    let resp = refusal_response(code, message, 1);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = io.write_all(&resp).await;
        let _ = io.shutdown().await;
    })
    .await;
    DispatchError::Io(io::Error::other(message.to_string()))
}

impl Accept {
    fn limited(&self, limit: &str) {
        self.metrics.limited.with_label_values(&[limit]).inc();
    }

    /// Admits a new connection, or answers it with a refusal; on success the stream and
    /// the client's connection address (the PROXY header's source, or the TCP peer).
    pub async fn admit(
        &self,
        mut io: TcpStream,
    ) -> Result<(EdgeStream, Protocol, Option<SocketAddr>), DispatchError> {
        let mut peer = io.peer_addr().ok();
        if self.proxy_protocol {
            match read_header(&mut io, self.head_timeout).await {
                Ok(Proxied::Client(addr)) => peer = Some(addr),
                Ok(Proxied::Local | Proxied::Unknown) => {}
                Err(e) => {
                    tracing::info!(peer = ?peer, error = %e, "connection refused: PROXY header required");
                    return Err(DispatchError::Io(io::Error::other(e)));
                }
            }
        }
        let Some(mut slot) = self.connections.try_open() else {
            self.limited("http_connections");
            return Err(refuse(
                io,
                ErrorCode::ServiceUnavailable,
                "this node is at its HTTP connection limit; retry another node",
            )
            .await);
        };
        if let Some(addr) = peer {
            match self.addrs.open_http(addr.ip()) {
                Ok(a) => slot.addr = a,
                Err(Refusal::TableFull) => {
                    self.limited("addr_table_full");
                    return Err(refuse(
                        io,
                        ErrorCode::ServiceUnavailable,
                        "this node tracks too many client addresses; retry later",
                    )
                    .await);
                }
                Err(_) => {
                    self.limited("addr_http_connections");
                    return Err(refuse(
                        io,
                        ErrorCode::RateLimited,
                        "too many connections from this address",
                    )
                    .await);
                }
            }
        }
        Ok((
            EdgeStream {
                io,
                slot: Some(slot),
                requests: Requests::default(),
                drain: self.drain.clone(),
                drained: None,
            },
            Protocol::Http1,
            peer,
        ))
    }
}
