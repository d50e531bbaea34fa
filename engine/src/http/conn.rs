//! One connection: hyper's HTTP/1.1 or HTTP/2 state machine (the `http` setting: auto tells
//! them apart by the HTTP/2 connection preface, `sniff`, which covers h2c with prior knowledge
//! and TLS connections whose ALPN chose `h2`), plus what hyper does not do for us: the
//! keep-alive timeout and the drain (docs/protocol.md, "the keep-alive drain"; docs/engine.md,
//! HTTP/2). HTTP/1.1 is served with upgrades on (`with_upgrades`), so an upgrade the service
//! grants takes the connection over.
//!
//! Invariants: a connection is closed by us only when no request is in progress on it (`busy` is
//! 0) and it has been idle for the window of the phase (keep-alive timeout while serving, the
//! drain's idle window while draining), through hyper's graceful shutdown, which closes an idle
//! connection at once; an HTTP/2 connection gets that graceful shutdown (GOAWAY) as soon as the
//! drain begins, busy or not: its open streams finish, and the streams the client opens after
//! the GOAWAY are refused by the protocol, so the client retries them on a new connection. A
//! quick stop (Aborted) drops a connection whatever it is doing. A connection is counted from
//! the moment it is accepted (`Counted::new`, before its task is spawned, so a draining server
//! never sees zero connections and ends while an accepted one waits for its first poll) until
//! its task ends, however it ends (the guard's drop).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::prefixed::Prefixed;
use super::Peer;
use crate::shared::{Http, HttpMode, Phase, Shared};

/// How often a draining connection with a request in progress is looked at again.
const DRAIN_TICK: Duration = Duration::from_millis(10);
/// hyper's read buffer limit, which bounds the request head (line and fields together).
const MAX_HEAD: usize = 64 * 1024;
/// Longest a client may take to send a request head (HTTP/1.1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// What every HTTP/2 connection begins with (RFC 9113, 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Most bytes one read takes while the protocol is told apart (hyper's first read is as large).
const SNIFF_READ: usize = 8192;

/// What the service and a request's `Finish` tell the connection task.
pub struct ConnState {
    pub busy: AtomicU32,
    pub last_done_ms: AtomicU64,
    pub wake: Notify,
    /// The connection's slot: a WebSocket keeps it after hyper hands the connection over.
    pub counted: Arc<Counted>,
    /// The connection speaks HTTP/2 (known from its preface, or from `http = 2`).
    pub h2: AtomicBool,
}

/// One open connection in `Shared::connections`, holding one of the worker's
/// `worker_connections` slots, for as long as this lives.
pub struct Counted(Arc<Shared>, Option<OwnedSemaphorePermit>);

impl Counted {
    pub fn new(shared: Arc<Shared>, slot: OwnedSemaphorePermit) -> Counted {
        shared.connections.fetch_add(1, Ordering::AcqRel);
        Counted(shared, Some(slot))
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.0
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        drop(self.1.take()); // the accept loop may take the next connection
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
        self.0.check_done();
    }
}

/// A hyper connection future that can be asked to finish gracefully (HTTP/1.1: after the
/// request in progress; HTTP/2: GOAWAY, then after the open streams).
trait Graceful: Future {
    fn shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown()
    }
}

impl<I, S, B, E> Graceful for http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Http2ServerConnExec<S::Future, B>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown()
    }
}

pub async fn serve<IO>(counted: Counted, mut io: IO, peer: Peer)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = counted.0.clone();
    let http = shared.settings.http;
    let accepted_ms = shared.now_ms();
    let (speaks_h2, first) = match http.mode {
        HttpMode::Http1 => (false, Vec::new()),
        HttpMode::Http2 => (true, Vec::new()),
        HttpMode::Auto => {
            let mut first = Vec::new();
            let sniffed = tokio::select! {
                sniffed = sniff(&mut io, &mut first) => sniffed,
                _ = quiet_too_long(&shared, accepted_ms) => return,
            };
            match sniffed {
                Ok(Some(h2)) => (h2, first),
                _ => return, // closed, or failed, before saying anything
            }
        }
    };
    let state = Arc::new(ConnState {
        busy: AtomicU32::new(0),
        last_done_ms: AtomicU64::new(accepted_ms),
        wake: Notify::new(),
        counted: Arc::new(counted),
        h2: AtomicBool::new(speaks_h2),
    });
    let service = {
        let (shared, state) = (shared.clone(), state.clone());
        service_fn(move |mut request: Request<Incoming>| {
            if request.version() == Version::HTTP_2 {
                authority_as_host(&mut request);
            }
            super::service::handle(shared.clone(), state.clone(), peer, request)
        })
    };
    let io = TokioIo::new(Prefixed::new(first, io));
    if speaks_h2 {
        drive(
            &shared,
            &state,
            h2_builder(&http).serve_connection(io, service),
        )
        .await
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(true)
            .max_buf_size(MAX_HEAD)
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let conn = builder.serve_connection(io, service).with_upgrades();
        drive(&shared, &state, conn).await
    }
}

/// Reads the connection's first bytes until they tell HTTP/2's preface (true) from anything
/// else, HTTP/1.x (false); None: the client closed first. Each read takes whatever the socket
/// holds (up to `SNIFF_READ`), and every byte read is handed on: hyper's HTTP/1.1 parser sees
/// what it would have read itself, so a request it refuses is answered and closed with nothing
/// of it left unread (a close with unread bytes is a reset, which can lose the answer).
async fn sniff<IO: AsyncRead + Unpin>(
    io: &mut IO,
    first: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    loop {
        let n = first.len().min(H2_PREFACE.len());
        if first[..n] != H2_PREFACE[..n] {
            return Ok(Some(false));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some(true));
        }
        first.reserve(SNIFF_READ);
        if io.read_buf(first).await? == 0 {
            return Ok(None);
        }
    }
}

/// Ends when a connection that has sent nothing (or not enough to tell its protocol) since
/// `since_ms` has been quiet for the window of the phase, as `drive` closes an idle connection;
/// at once on a quick stop.
async fn quiet_too_long(shared: &Shared, since_ms: u64) {
    let mut phase = shared.phase.subscribe();
    loop {
        let now_phase = *phase.borrow_and_update();
        if now_phase == Phase::Aborted {
            return;
        }
        let quiet = Duration::from_millis(shared.now_ms().saturating_sub(since_ms));
        let left = window(shared, now_phase).saturating_sub(quiet);
        tokio::select! {
            _ = tokio::time::sleep(left) => return,
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// hyper's HTTP/2 server builder with the `http2_*` settings.
fn h2_builder(http: &Http) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(http.max_concurrent_streams)
        .initial_stream_window_size(http.initial_stream_window_size)
        .initial_connection_window_size(http.initial_connection_window_size)
        .max_header_list_size(http.max_header_list_size)
        .keep_alive_interval(http.keep_alive_interval);
    if let Some(interval) = http.keep_alive_interval {
        builder.keep_alive_timeout(interval);
    }
    builder
}

/// HTTP/2 has no Host header of its own (RFC 9113, 8.3.1: `:authority`, which hyper puts in
/// the URI): a request without Host gets one from `:authority`, so the app (`HTTP_HOST`,
/// `SERVER_NAME`, the ASGI `host` header) and the proxy rules see what an HTTP/1.1 client sends.
fn authority_as_host(request: &mut Request<Incoming>) {
    if request.headers().contains_key(HOST) {
        return;
    }
    let authority = request.uri().authority().map(|a| a.as_str().to_owned());
    if let Some(value) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
        request.headers_mut().insert(HOST, value);
    }
}

/// Runs the connection until it ends: the keep-alive timeout, the drain and the quick stop.
async fn drive<C: Graceful>(shared: &Arc<Shared>, state: &ConnState, conn: C) {
    tokio::pin!(conn);
    let mut phase = shared.phase.subscribe();
    let mut closing = false;
    loop {
        let now_phase = *phase.borrow_and_update();
        if now_phase == Phase::Aborted {
            return; // dropping the connection closes the socket
        }
        if !closing && now_phase == Phase::Draining && state.h2.load(Ordering::Acquire) {
            conn.as_mut().shutdown(); // GOAWAY now; the open streams finish
            closing = true;
        }
        let wake = if closing {
            None
        } else {
            Some(next_look(shared, state, now_phase))
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = state.wake.notified() => {}
            _ = sleep_until(wake) => {
                if idle_expired(shared, state, now_phase) {
                    conn.as_mut().shutdown();
                    closing = true;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn window(shared: &Shared, phase: Phase) -> Duration {
    match phase {
        Phase::Serving => shared.settings.keep_alive,
        _ => shared.settings.drain_idle,
    }
}

/// When to look at the connection again.
fn next_look(shared: &Shared, state: &ConnState, phase: Phase) -> Instant {
    let now = Instant::now();
    if state.busy.load(Ordering::Acquire) > 0 {
        // `Finish` wakes the task when the request ends; this is only a backstop.
        return now
            + if phase == Phase::Serving {
                shared.settings.keep_alive
            } else {
                DRAIN_TICK
            };
    }
    let idle_for = Duration::from_millis(
        shared
            .now_ms()
            .saturating_sub(state.last_done_ms.load(Ordering::Acquire)),
    );
    now + window(shared, phase).saturating_sub(idle_for)
}

fn idle_expired(shared: &Shared, state: &ConnState, phase: Phase) -> bool {
    if state.busy.load(Ordering::Acquire) > 0 {
        return false;
    }
    let idle_for = shared
        .now_ms()
        .saturating_sub(state.last_done_ms.load(Ordering::Acquire));
    Duration::from_millis(idle_for) >= window(shared, phase)
}
