//! The accept loop of the main listener, with the limits a public relay needs before any HTTP
//! is read: open connections per client address and in all (a connection over a limit is
//! closed at once, so its file descriptor is free again), and a deadline for a request's
//! headers (a silent or trickling client is cut). Each connection is counted until it closes,
//! WebSockets included: the count rides on the socket itself, which the upgrade keeps.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

/// Connection limits, from the command line.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// Open connections from one client address (IPv6: one /64).
    pub per_address: usize,
    /// Open connections in all.
    pub total: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
}

/// Raises this process's soft limit on open files to its hard limit, and returns what the
/// relay may hold in connections: that limit less room for the database, uploads and logs.
pub fn connection_budget() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    (limit.saturating_sub(RESERVED_FDS) as usize).max(16)
}

/// File descriptors kept for everything but connections.
const RESERVED_FDS: u64 = 128;

/// Connections admitted past the limit while the silent ones cut for them are closing.
const OVERSHOOT: usize = 32;

/// The open connections, per address and in all, and those that have not said a word yet.
#[derive(Default)]
struct Counts {
    by_address: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
    /// Connections in the order they came, to find the oldest silent one when full.
    silent: Mutex<VecDeque<Weak<Hush>>>,
}

/// A connection's standing while it has sent nothing: it can be cut to make room.
#[derive(Default)]
struct Hush {
    spoke: AtomicBool,
    cut: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Hush {
    /// Cuts the connection (its next read fails).
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            w.wake();
        }
    }
}

/// One admitted connection; it frees its place when dropped.
struct Slot {
    counts: Arc<Counts>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .by_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How full the listener is, handed to every request: handlers that open long-lived
/// sockets for strangers (visitors) stop short of the limit, so agents and the health check
/// always find room.
#[derive(Clone)]
pub struct Occupancy {
    counts: Arc<Counts>,
    /// The limit on open connections.
    pub total: usize,
}

impl Occupancy {
    /// Connections open now (the asking one included).
    pub fn open(&self) -> usize {
        self.counts.total.load(Ordering::Relaxed)
    }
}

/// The key an address is counted under (IPv6 hosts get a /64 each).
fn address_key(ip: IpAddr) -> IpAddr {
    crate::guard::address_key(ip)
}

impl Counts {
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &ConnLimits) -> Option<Slot> {
        let key = address_key(ip);
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let mine = map.entry(key).or_default();
        // Full: the oldest connection that has not sent a byte makes room (its slot frees as
        // it closes, a moment later; the descriptors kept aside cover that moment). Whoever
        // speaks at once, like a health check, is served; a crowd of silent ones only
        // pushes out its own kind.
        let open = self.total.load(Ordering::Relaxed);
        let full = open >= limits.total;
        // Cut connections take a moment to close: never more than OVERSHOOT past the limit.
        let overflowing = open >= limits.total + OVERSHOOT;
        if *mine >= limits.per_address || overflowing || (full && !self.cut_oldest_silent()) {
            if *mine == 0 {
                map.remove(&key);
            }
            return None;
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            counts: self.clone(),
            key,
        })
    }

    /// Remembers a new connection as silent, until it speaks.
    fn watch(&self, hush: &Arc<Hush>) {
        let mut silent = self.silent.lock().unwrap_or_else(|p| p.into_inner());
        // Forget those that spoke or closed, from the front, so the queue stays short.
        while silent
            .front()
            .is_some_and(|w| w.upgrade().is_none_or(|h| h.spoke.load(Ordering::Relaxed)))
        {
            silent.pop_front();
        }
        silent.push_back(Arc::downgrade(hush));
    }

    /// Cuts the oldest connection that has not spoken; whether there was one.
    fn cut_oldest_silent(&self) -> bool {
        let mut silent = self.silent.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(weak) = silent.pop_front() {
            if let Some(h) = weak.upgrade() {
                if !h.spoke.load(Ordering::Relaxed) && !h.cut.load(Ordering::Relaxed) {
                    h.cut();
                    return true;
                }
            }
        }
        false
    }
}

/// A TCP stream that holds its place in the counts as long as it lives, and is cut if its
/// client sends nothing at all in time (hyper's header deadline takes over once bytes come).
struct Counted {
    tcp: TcpStream,
    _slot: Slot,
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
    hush: Arc<Hush>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.first_byte.is_some() {
            // The waker first, then the flag: a cut in between still wakes this task.
            *self.hush.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            if self.hush.cut.load(Ordering::SeqCst) {
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if read.is_ready() {
            if buf.filled().len() > before && self.first_byte.take().is_some() {
                self.hush.spoke.store(true, Ordering::Relaxed);
                // The waker is the HTTP task's: kept, it would keep that whole task's memory
                // for as long as the WebSocket it became lives.
                self.hush
                    .waker
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
            }
            return read;
        }
        if let Some(deadline) = self.first_byte.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
        }
        Poll::Pending
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Resolves once the relay is stopping.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets requests in flight end
/// (10 s at most).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let counts = Arc::new(Counts::default());
    let graceful = GracefulShutdown::new();
    // HTTP/1 only: no waiting for a preface to guess the version, so the header deadline
    // counts from the first moment.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut refused: u64 = 0;
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: wait a moment rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let Some(slot) = counts.admit(addr.ip(), &limits) else {
            refused += 1;
            crate::metrics::limited("connections");
            if refused.is_power_of_two() {
                tracing::warn!(
                    address = %addr.ip(),
                    refused,
                    "connection refused: over the per-address or total limit"
                );
            }
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let occupancy = Occupancy {
            counts: counts.clone(),
            total: limits.total,
        };
        let service = app
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
                req.extensions_mut().insert(occupancy.clone());
                req
            });
        let hush = Arc::new(Hush::default());
        counts.watch(&hush);
        let io = TokioIo::new(Counted {
            tcp,
            _slot: slot,
            first_byte: Some(Box::pin(tokio::time::sleep(limits.header_timeout))),
            hush,
        });
        let conn = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after 10 s; stopping anyway");
    }
    Ok(())
}
