//! The engine as Python sees it: `Server(app, listen_fds, ...)`, started by the runtime's native
//! adapter (python/herdsman/runtime/engines/native.py), which keeps the worker contract (channel,
//! heartbeats, signals) in Python and asks the server for its counters.
//!
//! Threads: one engine thread runs the tokio runtime (created by `start`, so after any fork:
//! the zygote forks before a server exists); the app's threads are Python threads the runtime
//! starts, each calling `run_thread`. Invariants: the engine thread never takes the GIL; `start`
//! returns only once every listener is adopted (or with the error); once the runtime has ended,
//! every app thread is told to exit.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::accesslog::{AccessLog, Format};
use crate::http::listen;
use crate::inflight::Registry;
use crate::notify::Notifier;
use crate::shared::{Http, HttpMode, Limits, Phase, Settings, Shared};

pyo3::create_exception!(
    _engine,
    TlsError,
    pyo3::exceptions::PyException,
    "The TLS files or settings could not be used (the message names the file)."
);

/// How often the engine thread records that it runs (the heartbeat reports its silence).
const TICK: Duration = Duration::from_millis(100);

#[pyclass(frozen, module = "herdsman._engine", name = "Server")]
pub struct Server {
    pub shared: Arc<Shared>,
    pub app: Py<PyAny>,
    pub errors: Py<PyAny>,
    pub file_wrapper: Py<PyAny>,
    /// `SCRIPT_NAME`: the mount prefix (`root_path`), or empty.
    pub script_name: Py<PyString>,
    log: Py<PyAny>,
    /// ASGI: the worker's asyncio loop (`asgi_start`), where `receive` and `send` make futures.
    pub asgi_loop: std::sync::OnceLock<Py<PyAny>>,
    /// ASGI: the lifespan's state, copied into each request's scope.
    pub asgi_state: std::sync::OnceLock<Py<PyDict>>,
    fds: Vec<i32>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (app, listen_fds, *, log, errors, threads=1, notify_fd=-1, inflight_fd=None,
        access_log=None, access_log_format=None, keep_alive=5.0, drain_idle=1.0, buffer_body=65536,
        limit_request_line=4094, limit_request_fields=100, limit_request_field_size=8190,
        forwarded_allow_ips="127.0.0.1,::1", root_path="", certfile=None, keyfile=None,
        ca_certs=None, cert_reqs=0, ciphers=None, tls_min_version="1.2", worker_connections=1000,
        proxy_allow_from=None, interface="wsgi", asgi_fd=-1, http="auto",
        http2_max_concurrent_streams=200, http2_initial_stream_window_size=1048576,
        http2_initial_connection_window_size=1048576, http2_max_header_list_size=65536,
        http2_keep_alive_interval=0.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        listen_fds: Vec<i32>,
        log: Py<PyAny>,
        errors: Py<PyAny>,
        threads: usize,
        notify_fd: i32,
        inflight_fd: Option<i32>,
        access_log: Option<String>,
        access_log_format: Option<String>,
        keep_alive: f64,
        drain_idle: f64,
        buffer_body: usize,
        limit_request_line: usize,
        limit_request_fields: usize,
        limit_request_field_size: usize,
        forwarded_allow_ips: &str,
        root_path: &str,
        certfile: Option<String>,
        keyfile: Option<String>,
        ca_certs: Option<String>,
        cert_reqs: u8,
        ciphers: Option<String>,
        tls_min_version: &str,
        worker_connections: usize,
        proxy_allow_from: Option<&str>,
        interface: &str,
        asgi_fd: i32,
        http: &str,
        http2_max_concurrent_streams: u32,
        http2_initial_stream_window_size: u32,
        http2_initial_connection_window_size: u32,
        http2_max_header_list_size: u32,
        http2_keep_alive_interval: f64,
    ) -> PyResult<Server> {
        let asgi = match interface {
            "wsgi" => None,
            "asgi" => Some(crate::asgi::Bridge::new(
                Notifier::new(asgi_fd).map_err(|e| PyOSError::new_err(format!("asgi fd: {e}")))?,
            )),
            other => {
                return Err(PyValueError::new_err(format!(
                    "interface must be \"wsgi\" or \"asgi\", not {other:?}"
                )))
            }
        };
        if threads == 0 {
            return Err(PyValueError::new_err("threads must be at least 1"));
        }
        let seconds = |s: f64, what: &str| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!("{what} must be a number of seconds >= 0"))
            })
        };
        let http = Http {
            mode: match http {
                "auto" => HttpMode::Auto,
                "1" => HttpMode::Http1,
                "2" => HttpMode::Http2,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "http must be auto, 1 or 2, got {other:?}"
                    )))
                }
            },
            max_concurrent_streams: http2_max_concurrent_streams,
            initial_stream_window_size: http2_initial_stream_window_size,
            initial_connection_window_size: http2_initial_connection_window_size,
            max_header_list_size: http2_max_header_list_size,
            keep_alive_interval: match seconds(
                http2_keep_alive_interval,
                "http2_keep_alive_interval",
            )? {
                interval if interval.is_zero() => None,
                interval => Some(interval),
            },
        };
        let tls = match (certfile, keyfile) {
            (Some(certfile), Some(keyfile)) => {
                let options = crate::tls::Options {
                    certfile,
                    keyfile,
                    ca_certs,
                    cert_reqs,
                    ciphers,
                    min_version: tls_min_version.to_string(),
                };
                Some(crate::tls::server_config(&options, http.mode).map_err(TlsError::new_err)?)
            }
            (None, None) => None,
            _ => return Err(TlsError::new_err("certfile and keyfile go together")),
        };
        let settings = Settings {
            threads,
            keep_alive: seconds(keep_alive, "keep_alive")?,
            drain_idle: seconds(drain_idle, "drain_idle")?,
            limits: Limits {
                request_line: limit_request_line,
                request_fields: limit_request_fields,
                request_field_size: limit_request_field_size,
            },
            buffer_body,
            url_scheme: if tls.is_some() { "https" } else { "http" },
            tls,
            trusted: crate::http::proxy::Trusted::parse(forwarded_allow_ips),
            proxy_protocol: proxy_allow_from.map(crate::http::proxy::Trusted::parse),
            worker_connections: worker_connections.max(1),
            http,
        };
        let access = match access_log {
            Some(path) => {
                let spec = access_log_format
                    .unwrap_or_else(|| crate::accesslog::DEFAULT_FORMAT.to_string());
                let format = Format::compile(&spec)
                    .map_err(|e| PyValueError::new_err(format!("access log format: {e}")))?;
                let warn_log = log.clone_ref(py);
                let warn = Box::new(move |severity: crate::accesslog::Severity, message: &str| {
                    let message = message.to_string();
                    Python::attach(|py| {
                        let _ = warn_log.bind(py).call1((severity.level(), message));
                    });
                });
                Some(
                    AccessLog::open(&path, format, warn)
                        .map_err(|e| PyOSError::new_err(format!("access log {path}: {e}")))?,
                )
            }
            None => None,
        };
        let registry = Registry::new(inflight_fd)
            .map_err(|e| PyOSError::new_err(format!("in-flight file: {e}")))?;
        let notifier =
            Notifier::new(notify_fd).map_err(|e| PyOSError::new_err(format!("notify fd: {e}")))?;
        let shared = Arc::new(Shared::new(settings, registry, notifier, access, asgi));
        let file_wrapper = py
            .get_type::<crate::wsgi::file::FileWrapper>()
            .into_any()
            .unbind();
        Ok(Server {
            script_name: PyString::new(py, root_path).unbind(),
            shared,
            app,
            errors,
            file_wrapper,
            log,
            asgi_loop: std::sync::OnceLock::new(),
            asgi_state: std::sync::OnceLock::new(),
            fds: listen_fds,
            thread: Mutex::new(None),
        })
    }

    /// Starts the engine thread and adopts the listeners; returns once it serves.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_some() {
            return Err(PyRuntimeError::new_err("the server is already started"));
        }
        let shared = self.shared.clone();
        let fds = self.fds.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let handle = std::thread::Builder::new()
            .name("herdsman-engine".into())
            .spawn(move || engine_thread(shared, fds, ready_tx))
            .map_err(|e| PyOSError::new_err(format!("cannot start the engine thread: {e}")))?;
        *thread = Some(handle);
        drop(thread);
        match py.detach(move || ready_rx.recv()) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(PyOSError::new_err(why)),
            Err(_) => Err(PyRuntimeError::new_err(
                "the engine thread ended while starting",
            )),
        }
    }

    /// The body of each of the app's threads (started by the runtime): returns when the server
    /// has ended.
    fn run_thread(&self, py: Python<'_>) {
        crate::wsgi::run::serve_thread(py, self);
    }

    /// ASGI: the loop the app runs on, and the lifespan's state (None: no lifespan); before
    /// `start`.
    #[pyo3(signature = (event_loop, state=None))]
    fn asgi_start(&self, event_loop: Py<PyAny>, state: Option<Py<PyDict>>) -> PyResult<()> {
        if self.shared.asgi.is_none() {
            return Err(PyRuntimeError::new_err("the server serves a WSGI app"));
        }
        if self.asgi_loop.set(event_loop).is_err() {
            return Err(PyRuntimeError::new_err("asgi_start was already called"));
        }
        if let Some(state) = state {
            let _ = self.asgi_state.set(state);
        }
        Ok(())
    }

    /// ASGI, on the loop when its pipe is readable: the waiting `receive`/`send` calls that can
    /// complete are completed, and the new requests are returned as `[(scope, receive, send)]`.
    fn asgi_take<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyList>> {
        crate::asgi::call::take(slf.py(), slf)
    }

    /// ASGI: sends a close frame with `code` on every open WebSocket (1012 when the worker is
    /// replaced, 1001 on a stop); returns how many were open.
    fn close_websockets(&self, code: u16) -> usize {
        self.shared
            .asgi
            .as_ref()
            .map_or(0, |bridge| bridge.sockets.close_all(code))
    }

    /// Graceful stop: no more accepting; connections close after their request or once idle.
    fn drain(&self) {
        self.shared.advance(Phase::Draining);
    }

    /// Quick stop: every connection closes now.
    fn abort(&self) {
        self.shared.advance(Phase::Aborted);
    }

    /// `(completed, in_flight, connections, access_log_dropped, engine_silent_seconds)`.
    fn stats(&self) -> (u64, usize, usize, u64, f64) {
        let s = &self.shared;
        let silent = s
            .now_ms()
            .saturating_sub(s.loop_tick.load(Ordering::Acquire)) as f64
            / 1000.0;
        (
            s.completed.load(Ordering::Acquire),
            s.registry.len(),
            s.connections.load(Ordering::Acquire),
            s.access.as_ref().map_or(0, |a| a.dropped()),
            silent,
        )
    }

    /// The master's `report_at`: notify when this many requests have completed.
    fn set_report_at(&self, requests: u64) {
        self.shared.report_at.store(requests, Ordering::Release);
        if self.shared.completed.load(Ordering::Acquire) >= requests {
            self.shared.notifier.send(crate::notify::REPORT);
        }
    }

    fn set_quarantined(&self, requests: Vec<String>) {
        self.shared.registry.set_quarantined(requests);
    }

    /// `[(method, path, seconds)]` of the app calls in progress.
    fn in_flight(&self) -> Vec<(String, String, f64)> {
        self.shared.registry.snapshot()
    }

    /// Log lines the engine thread could not write itself: `[(level, message)]`.
    fn take_logs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let lines = std::mem::take(
            &mut *self
                .shared
                .pending_logs
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        PyList::new(py, lines)
    }

    fn reopen_logs(&self) {
        if let Some(access) = &self.shared.access {
            access.reopen();
        }
    }

    /// After the server ended: flush the access log and join the engine thread, within `wait`.
    fn close(&self, py: Python<'_>, wait: f64) {
        let wait = Duration::from_secs_f64(wait.max(0.0));
        self.shared.advance(Phase::Aborted);
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(|| {
            if let Some(access) = &self.shared.access {
                access.close(wait);
            }
            if let Some(handle) = handle {
                let deadline = std::time::Instant::now() + wait;
                while !handle.is_finished() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if handle.is_finished() {
                    let _ = handle.join();
                }
            }
        });
    }
}

impl Server {
    pub fn log_line(&self, py: Python<'_>, level: &str, message: &str) {
        let _ = self.log.bind(py).call1((level, message));
    }

    /// An exception from the app: logged with its traceback, as uvicorn logs one.
    pub fn log_app_error(
        &self,
        py: Python<'_>,
        err: &PyErr,
        interface: &str,
        method: &str,
        path: &str,
    ) {
        let traceback = py
            .import("traceback")
            .and_then(|tb| {
                tb.call_method1(
                    "format_exception",
                    (err.get_type(py), err.value(py), err.traceback(py)),
                )
            })
            .and_then(|lines| PyString::new(py, "").call_method1("join", (lines,)))
            .and_then(|text| text.extract::<String>())
            .unwrap_or_else(|_| err.to_string());
        let message = format!("Exception in {interface} application ({method} {path})");
        let _ = self.log.bind(py).call1(("error", message, traceback));
    }
}

fn engine_thread(
    shared: Arc<Shared>,
    fds: Vec<i32>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(format!("cannot start the engine's runtime: {err}")));
            return;
        }
    };
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(serve(shared.clone(), fds, ready));
    }));
    if served.is_err() {
        shared.log(
            "error",
            "engine bug: the engine thread panicked; the worker stops".into(),
        );
    }
    drop(runtime); // closes every connection still open
    shared.advance(Phase::Aborted);
    shared.pool.close();
    shared.force_done();
}

async fn serve(
    shared: Arc<Shared>,
    fds: Vec<i32>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let mut listeners = Vec::new();
    for fd in &fds {
        match listen::adopt(*fd) {
            Ok(listener) => listeners.push(listener),
            Err(err) => {
                let _ = ready.send(Err(format!("listening socket fd {fd}: {err}")));
                return;
            }
        }
    }
    for listener in listeners {
        let open = listen::Accepting::new(shared.clone());
        tokio::spawn(listen::accept_loop(open, listener));
    }
    let watcher = shared.clone();
    tokio::spawn(async move { watcher.pool.dispatch(&watcher.completed).await });
    let _ = ready.send(Ok(()));
    let mut phase = shared.phase.subscribe();
    let mut tick = tokio::time::interval(TICK);
    loop {
        let now = *phase.borrow_and_update();
        if now == Phase::Aborted || shared.finished() {
            return;
        }
        tokio::select! {
            _ = phase.changed() => {}
            _ = tick.tick() => shared.loop_tick.store(shared.now_ms(), Ordering::Release),
        }
    }
}
