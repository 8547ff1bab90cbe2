//! Admission control: what bounds the daemon's memory whatever the clients do.
//!
//! Two bounds, both settings of the API (`OCT_MAX_INFLIGHT_BYTES`, `OCT_MAX_CONNECTIONS`):
//! - a budget of bytes in flight across all capture requests: bodies being read,
//!   decompressed and parsed. A request that would go over it is answered 429 with
//!   `Retry-After` (its body is drained, never kept);
//! - a cap on open connections per listener: a connection beyond it gets a canned
//!   `503` with `Retry-After` and `Connection: close`, and is closed gracefully.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A parsed body is counted this many times its size while it is parsed.
pub const PARSE_FACTOR: usize = 3;

/// A JSON body parsed into a `serde_json::Value` tree (OpenClaw batches) is counted
/// this many times its size: every object becomes a map whose nodes take hundreds of
/// bytes for a few dozen of text. OTLP/HTTP JSON is no longer parsed into a tree (it is
/// walked straight into the protobuf structs, `sources::otlp::decode`) and counts
/// `PARSE_FACTOR` times, as protobuf does.
pub const JSON_TREE_FACTOR: usize = 40;

/// The shared budget and connection count.
#[derive(Debug)]
pub struct Admission {
    max_inflight: usize,
    max_connections: usize,
    inflight: AtomicUsize,
    connections: AtomicUsize,
    pub inflight_gauge: Gauge,
    pub connections_gauge: Gauge,
    /// Requests and connections refused by these bounds.
    pub refused_counter: Counter,
}

impl Admission {
    pub fn new(max_inflight: usize, max_connections: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_inflight: max_inflight.max(1),
            max_connections: max_connections.max(1),
            inflight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            inflight_gauge: Gauge::default(),
            connections_gauge: Gauge::default(),
            refused_counter: Counter::default(),
        })
    }

    /// Shows the bounds and their use in `/metrics`.
    pub fn register(&self, metrics: &crate::metrics::Registry) {
        let limit = |v: usize| {
            let g: Gauge = Gauge::default();
            g.set(v as i64);
            g
        };
        metrics.register(
            "openclaw_trace_inflight_bytes",
            "Bytes of capture bodies being read and parsed now",
            self.inflight_gauge.clone(),
        );
        metrics.register(
            "openclaw_trace_inflight_max_bytes",
            "Most bytes of capture bodies in flight at once (OCT_MAX_INFLIGHT_BYTES)",
            limit(self.max_inflight),
        );
        metrics.register(
            "openclaw_trace_http_connections",
            "Open HTTP connections (API and OTLP/HTTP)",
            self.connections_gauge.clone(),
        );
        metrics.register(
            "openclaw_trace_http_connections_max",
            "Most open HTTP connections (OCT_MAX_CONNECTIONS)",
            limit(self.max_connections),
        );
        metrics.register(
            "openclaw_trace_admission_refused",
            "Requests and connections refused by the in-flight budget or the connection cap",
            self.refused_counter.clone(),
        );
    }

    pub fn max_inflight(&self) -> usize {
        self.max_inflight
    }
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// An empty permit; grow it as bytes arrive.
    pub fn permit(self: &Arc<Self>) -> Permit {
        Permit {
            adm: self.clone(),
            held: 0,
        }
    }

    /// True when `n` more bytes fit in the budget now.
    pub fn has_room(&self, n: usize) -> bool {
        fits(self.inflight(), n, self.max_inflight)
    }

    fn connection(self: &Arc<Self>) -> Option<ConnGuard> {
        let ok = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < self.max_connections).then_some(c + 1)
            })
            .is_ok();
        if !ok {
            self.refused_counter.inc();
            return None;
        }
        self.connections_gauge.inc();
        Some(ConnGuard { adm: self.clone() })
    }
}

/// `add` more fits under `max`; a single request larger than the whole budget still
/// goes through when nothing else is in flight.
fn fits(cur: usize, add: usize, max: usize) -> bool {
    cur == 0 || cur.saturating_add(add) <= max
}

/// Bytes of the budget held by one request; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    adm: Arc<Admission>,
    held: usize,
}

impl Permit {
    /// Takes `n` more bytes of the budget; false (and nothing taken) when they do not fit.
    pub fn grow(&mut self, n: usize) -> bool {
        let max = self.adm.max_inflight;
        let held = self.held;
        let ok = self
            .adm
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                // Alone in flight, a request may use the whole budget and more.
                (c == held || c.saturating_add(n) <= max).then_some(c + n)
            })
            .is_ok();
        if ok {
            self.held += n;
            self.adm.inflight_gauge.inc_by(n as i64);
        } else {
            self.adm.refused_counter.inc();
        }
        ok
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.held > 0 {
            self.adm.inflight.fetch_sub(self.held, Ordering::AcqRel);
            self.adm.inflight_gauge.dec_by(self.held as i64);
        }
    }
}

/// One open connection; the count drops with it.
#[derive(Debug)]
pub struct ConnGuard {
    adm: Arc<Admission>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.adm.connections.fetch_sub(1, Ordering::AcqRel);
        self.adm.connections_gauge.dec();
    }
}

/// A TCP stream carrying its place in the connection count.
pub struct CountedStream {
    inner: TcpStream,
    _guard: ConnGuard,
}

impl tokio::io::AsyncRead for CountedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for CountedStream {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// The OTLP/gRPC listener's connections, at most `max_connections` open at once. One
/// over the cap is closed at once (an HTTP/2 client sees UNAVAILABLE and retries).
pub fn grpc_incoming(
    listener: TcpListener,
    adm: Arc<Admission>,
) -> impl futures_util::Stream<Item = std::io::Result<CountedStream>> {
    futures_util::stream::unfold((listener, adm), |(listener, adm)| async move {
        loop {
            let s = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Some(guard) = adm.connection() {
                let _ = s.set_nodelay(true);
                let io = CountedStream {
                    inner: s,
                    _guard: guard,
                };
                return Some((Ok(io), (listener, adm)));
            }
            drop(s);
        }
    })
}

/// An HTTP/1 listener that holds at most `max_connections` open connections.
pub struct CappedListener {
    inner: TcpListener,
    adm: Arc<Admission>,
    /// Connections being refused right now (each holds a small task), at most.
    refusing: Arc<AtomicUsize>,
}

impl CappedListener {
    pub fn new(inner: TcpListener, adm: Arc<Admission>) -> Self {
        CappedListener {
            inner,
            adm,
            refusing: Arc::new(AtomicUsize::new(0)),
        }
    }
}

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 72\r\n\r\n{\"error\":\"too many connections (OCT_MAX_CONNECTIONS); retry shortly\"}\r\n";

/// Answers a connection over the cap: reads the request head, sends the canned 503, then
/// drains what the client still sends until it closes (so it never sees a reset).
async fn refuse(mut s: TcpStream) {
    let mut buf = [0u8; 2048];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        // Wait for the first bytes of the request, so the answer follows it.
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(REFUSAL).await;
        let _ = s.shutdown().await;
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

impl axum::serve::Listener for CappedListener {
    type Io = CountedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (s, addr) = match self.inner.accept().await {
                Ok(sa) => sa,
                Err(e) => {
                    // Out of descriptors and the like: wait a little, as axum does.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Some(guard) = self.adm.connection() {
                let _ = s.set_nodelay(true);
                return (
                    CountedStream {
                        inner: s,
                        _guard: guard,
                    },
                    addr,
                );
            }
            // Refusals are cheap (a task and 2 KiB, for up to 10 s) but not free: beyond 1,024 of them, close at once.
            let refusing = self.refusing.clone();
            if refusing.fetch_add(1, Ordering::AcqRel) < (self.adm.max_connections * 4).max(1024) {
                tokio::spawn(async move {
                    refuse(s).await;
                    refusing.fetch_sub(1, Ordering::AcqRel);
                });
            } else {
                refusing.fetch_sub(1, Ordering::AcqRel);
                drop(s);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// How long a capture request (OTLP or the native API) may wait for room in a full
/// queue before it is refused (429 / RESOURCE_EXHAUSTED): the second a client would
/// sleep on `Retry-After: 1`, spent waiting for the writer instead, so a burst costs the
/// agent's exporter latency, not a retry.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// Requests waiting for room at once, at most; more are refused at once. This bounds
/// the memory held by waiting requests.
static WAITERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(32);

/// Waits (bounded by `until`) until `n` records of `bytes` fit in the queue.
pub async fn wait_for_room(st: &super::AppState, n: usize, bytes: usize, until: Instant) {
    let has_room = |n, bytes| st.pipeline.has_room(n, bytes);
    if has_room(n, bytes) {
        return;
    }
    let Ok(_permit) = WAITERS.try_acquire() else {
        return;
    };
    while Instant::now() < until && !super::refusing(st) {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if has_room(n, bytes) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_and_given_back() {
        let a = Admission::new(100, 2);
        let mut p1 = a.permit();
        assert!(p1.grow(60));
        let mut p2 = a.permit();
        assert!(!p2.grow(50), "over the budget");
        assert!(p2.grow(40));
        drop(p1);
        assert_eq!(a.inflight(), 40);
        drop(p2);
        assert_eq!(a.inflight(), 0);
        // Alone, a request larger than the budget still goes in.
        let mut big = a.permit();
        assert!(big.grow(500));
        assert!(big.grow(500));
    }

    #[test]
    fn connections_are_capped() {
        let a = Admission::new(100, 2);
        let c1 = a.connection().unwrap();
        let _c2 = a.connection().unwrap();
        assert!(a.connection().is_none());
        drop(c1);
        assert!(a.connection().is_some());
    }
}

/// The peer's address, for handlers that name it (`ConnectInfo<Remote>`).
#[derive(Clone, Copy, Debug)]
pub struct Remote(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, CappedListener>>
    for Remote
{
    fn connect_info(s: axum::serve::IncomingStream<'_, CappedListener>) -> Self {
        Remote(*s.remote_addr())
    }
}
