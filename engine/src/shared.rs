//! The state one server shares between its tokio thread (listeners, connections) and the app's
//! Python threads: settings, the request pool, the counters the heartbeat reports, the drain phase,
//! the in-flight registry and the access log.
//!
//! Invariants: counters are plain atomics (no lock on the request path besides the registry's);
//! the phase only moves forward (Serving -> Draining -> Aborted); `Done` is signalled to Python
//! once, when the phase is past Serving, no connection is open and no app call is running.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::accesslog::AccessLog;
use crate::inflight::Registry;
use crate::notify::Notifier;
use crate::pool::Pool;

/// Where the server is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// Graceful: no accepting; connections close after their current request or once idle.
    Draining,
    /// Quick: every connection is closed now.
    Aborted,
}

/// The request limits (gunicorn's `limit_request_*`); 0 means no limit.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub request_line: usize,
    pub request_fields: usize,
    pub request_field_size: usize,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub threads: usize,
    /// An idle keep-alive connection is closed after this long.
    pub keep_alive: Duration,
    /// During a drain, an idle connection is closed after this long (docs/protocol.md, drain).
    pub drain_idle: Duration,
    pub limits: Limits,
    /// Request bodies up to this size (with a Content-Length and no `Expect: 100-continue`) are
    /// read before the app is called, so a slow upload does not hold one of its threads.
    pub buffer_body: usize,
    /// `https` with TLS, else `http`.
    pub url_scheme: &'static str,
    /// TLS on every listener; `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Whose proxy headers are applied (`FORWARDED_ALLOW_IPS`).
    pub trusted: crate::http::proxy::Trusted,
    /// The peers whose PROXY header is read; None: the PROXY protocol is off.
    pub proxy_protocol: Option<crate::http::proxy::Trusted>,
    /// Most connections open at once (gunicorn's `worker_connections`).
    pub worker_connections: usize,
    /// Which HTTP versions a connection may speak, and the HTTP/2 settings.
    pub http: Http,
}

/// Which protocols a connection may speak (granian's `--http`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMode {
    /// HTTP/1.1, HTTP/2 with prior knowledge (the connection preface tells them apart), and
    /// ALPN `h2` then `http/1.1` over TLS.
    Auto,
    /// HTTP/1.1 only (ALPN `http/1.1`).
    Http1,
    /// HTTP/2 only (ALPN `h2`).
    Http2,
}

/// The HTTP/2 settings a connection advertises (docs/engine.md, HTTP/2, says why these).
#[derive(Clone, Copy, Debug)]
pub struct Http {
    pub mode: HttpMode,
    /// SETTINGS_MAX_CONCURRENT_STREAMS: requests in flight at once on one connection.
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a stream may send ahead of the app.
    pub initial_stream_window_size: u32,
    /// The connection's flow-control window (all its streams' request bodies together).
    pub initial_connection_window_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: a request head larger than this gets 431.
    pub max_header_list_size: u32,
    /// PING an idle connection this often (closing it when the answer does not come within the
    /// same time); None: no PING.
    pub keep_alive_interval: Option<Duration>,
}

pub struct Shared {
    pub settings: Settings,
    /// The requests waiting for an app thread, and which threads are awake.
    pub pool: Pool,
    /// App calls that returned (heartbeat `requests`, max-requests).
    pub completed: AtomicU64,
    /// Crossing this count notifies Python at once (the master's `report_at`); 0: none.
    pub report_at: AtomicU64,
    /// App calls in progress (heartbeat `in_flight`).
    pub running: AtomicUsize,
    pub connections: AtomicUsize,
    /// Accept loops still running: one may hold a connection it accepted and has not counted yet,
    /// so the server is not finished until every loop has seen the drain and returned.
    pub accepting: AtomicUsize,
    /// One permit per connection that may be open (`worker_connections`): the accept loops
    /// wait for one before accepting, so the connections beyond wait in the listen queue.
    pub slots: Arc<tokio::sync::Semaphore>,
    pub phase: watch::Sender<Phase>,
    pub registry: Registry,
    pub notifier: Notifier,
    pub access: Option<AccessLog>,
    /// ASGI: the bridge to the worker's asyncio loop (None: a WSGI app on the pool's threads).
    pub asgi: Option<crate::asgi::Bridge>,
    pub started: Instant,
    /// Milliseconds since `started` at the tokio loop's last tick.
    pub loop_tick: AtomicU64,
    done_sent: AtomicBool,
    /// Lines for the worker's log from where Python can't be called (the tokio thread); the
    /// runtime takes them every heartbeat.
    pub pending_logs: Mutex<Vec<(&'static str, String)>>,
}

impl Shared {
    pub fn new(
        settings: Settings,
        registry: Registry,
        notifier: Notifier,
        access: Option<AccessLog>,
        asgi: Option<crate::asgi::Bridge>,
    ) -> Shared {
        let slots = settings
            .worker_connections
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let slots = Arc::new(tokio::sync::Semaphore::new(slots));
        Shared {
            pool: Pool::new(settings.threads),
            settings,
            completed: AtomicU64::new(0),
            report_at: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            accepting: AtomicUsize::new(0),
            slots,
            phase: watch::channel(Phase::Serving).0,
            registry,
            notifier,
            access,
            asgi,
            started: Instant::now(),
            loop_tick: AtomicU64::new(0),
            done_sent: AtomicBool::new(false),
            pending_logs: Mutex::new(Vec::new()),
        }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Moves the phase forward (never back).
    pub fn advance(&self, to: Phase) {
        self.phase.send_if_modified(|phase| {
            if *phase < to {
                *phase = to;
                true
            } else {
                false
            }
        });
        self.check_done();
    }

    /// Stopping (drain or abort), with no connection open and no app call running.
    pub fn finished(&self) -> bool {
        self.phase() != Phase::Serving
            && self.accepting.load(Ordering::Acquire) == 0
            && self.connections.load(Ordering::Acquire) == 0
            && self.running.load(Ordering::Acquire) == 0
    }

    /// Tells Python the server has nothing left to do, once.
    pub fn check_done(&self) {
        if self.finished() && !self.done_sent.swap(true, Ordering::AcqRel) {
            self.notifier.send(crate::notify::DONE);
        }
    }

    /// One more app call returned: count it, and tell Python when the master's threshold is met.
    pub fn app_call_done(&self) {
        let count = self.completed.fetch_add(1, Ordering::AcqRel) + 1;
        if count == self.report_at.load(Ordering::Acquire) {
            self.notifier.send(crate::notify::REPORT);
        }
        self.running.fetch_sub(1, Ordering::AcqRel);
        if self.phase() != Phase::Serving {
            self.check_done();
        }
    }

    pub fn log(&self, level: &'static str, message: String) {
        if let Ok(mut logs) = self.pending_logs.lock() {
            if logs.len() < 1000 {
                logs.push((level, message));
            }
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

impl Shared {
    /// The engine thread has ended: tell Python even if app calls are still running.
    pub fn force_done(&self) {
        if !self.done_sent.swap(true, Ordering::AcqRel) {
            self.notifier.send(crate::notify::DONE);
        }
    }
}
