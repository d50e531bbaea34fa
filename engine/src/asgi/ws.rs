//! The ASGI `websocket` scope: the upgrade request handed to the app as `websocket.connect`, the
//! 101 the engine answers on `websocket.accept` (with the app's subprotocol and headers), a 403 on
//! `websocket.close` before it, and the frames both ways once hyper hands the connection over,
//! through tokio-tungstenite (which reassembles fragmented messages, answers pings, runs the
//! close handshake and enforces the message size limit, uvicorn's `ws_max_size`: 16 MiB).
//! On a stop every open WebSocket is closed with the code the worker's reason calls for
//! (`close_all`: 1012 when the worker is replaced, 1001 when the server stops), as under uvicorn.
//!
//! Invariants: as for `http` (mod.rs): the app call ends with `WsSend.done` exactly once; the
//! lock is never held across an await or a call into Python; a receive waiter is resolved only on
//! the loop.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, UPGRADE};
use hyper::http::request::Parts;
use hyper::{HeaderMap, StatusCode};
use hyper_util::rt::TokioIo;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::Event;
use crate::http::body::Kind;
use crate::http::conn::Counted;
use crate::http::service::Reply;
use crate::http::Peer;
use crate::server::Server;
use crate::shared::{Phase, Shared};

/// uvicorn's `ws_max_size` default: a bigger message closes the connection with 1009.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// The WebSocket read buffer: 16 KiB reads (hyper reads HTTP in 8 KiB to 400 KiB).
const READ_BUFFER: usize = 16 * 1024;
/// How long a close we sent waits for the client's close frame before the connection is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A WebSocket upgrade request (RFC 6455 over HTTP/1.1).
pub fn is_upgrade(head: &Parts) -> bool {
    let has = |name: HeaderName, token: &str| {
        head.headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    head.method == hyper::Method::GET
        && head.version == hyper::Version::HTTP_11
        && has(UPGRADE, "websocket")
        && has(CONNECTION, "upgrade")
        && head.headers.contains_key("sec-websocket-key")
}

pub enum In {
    Connect,
    Text(String),
    Bytes(Bytes),
    Disconnect(u16),
}

enum Out {
    Send(Message),
    Close(u16, String),
}

pub struct WsJob {
    pub head: Parts,
    pub peer: Peer,
    pub exchange: Arc<WsExchange>,
}

pub struct WsExchange {
    pub shared: Arc<Shared>,
    pub key: u64,
    state: Mutex<WsState>,
}

struct WsState {
    incoming: VecDeque<In>,
    /// The last message was a disconnect: `receive` keeps saying it.
    disconnected: Option<u16>,
    receive_waiter: Option<Py<PyAny>>,
    wake_queued: bool,
    reply: Option<oneshot::Sender<Reply>>,
    head: Option<Parts>,
    accept_key: String,
    out: Option<mpsc::UnboundedSender<Out>>,
    accepted: bool,
    /// A close was sent (by the app, or on a stop): later sends go nowhere.
    closing: bool,
    /// The worker stopped during the handshake: the close to send once the app accepts.
    close_on_accept: Option<u16>,
    finished: bool,
}

impl WsExchange {
    fn state(&self) -> MutexGuard<'_, WsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tokio side: a message for the app.
    fn push(self: &Arc<Self>, message: In) {
        let mut state = self.state();
        if state.disconnected.is_some() {
            return;
        }
        state.incoming.push_back(message);
        if state.receive_waiter.is_none() || state.wake_queued {
            return;
        }
        state.wake_queued = true;
        drop(state);
        if let Some(bridge) = &self.shared.asgi {
            bridge.push(Event::WsWake(self.clone()));
        }
    }

    fn next(&self, state: &mut WsState) -> Option<In> {
        if let Some(code) = state.disconnected {
            return Some(In::Disconnect(code));
        }
        let message = state.incoming.pop_front()?;
        if let In::Disconnect(code) = message {
            state.disconnected = Some(code);
        }
        Some(message)
    }

    /// The loop side: resolves a waiting `receive`.
    pub fn resolve(&self, py: Python<'_>) {
        let mut state = self.state();
        state.wake_queued = false;
        let Some(waiter) = state.receive_waiter.take() else {
            return;
        };
        if is_done(py, &waiter) {
            return;
        }
        let Some(message) = self.next(&mut state) else {
            state.receive_waiter = Some(waiter);
            return;
        };
        drop(state);
        if let Ok(message) = to_python(py, message) {
            let _ = waiter
                .bind(py)
                .call_method1(pyo3::intern!(py, "set_result"), (message,));
        }
    }

    /// Sends a close with `code` if the socket is open (a stop); one still in its handshake gets
    /// it as soon as the app accepts.
    pub fn close(&self, code: u16) {
        let mut state = self.state();
        if !state.accepted {
            state.close_on_accept = Some(code);
        } else if !state.closing {
            state.closing = true;
            if let Some(out) = &state.out {
                let _ = out.send(Out::Close(code, String::new()));
            }
        }
    }
}

fn is_done(py: Python<'_>, waiter: &Py<PyAny>) -> bool {
    waiter
        .bind(py)
        .call_method0(pyo3::intern!(py, "done"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true)
}

fn to_python(py: Python<'_>, message: In) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    match message {
        In::Connect => d.set_item("type", "websocket.connect")?,
        In::Text(text) => {
            d.set_item("type", "websocket.receive")?;
            d.set_item("text", text)?;
        }
        In::Bytes(data) => {
            d.set_item("type", "websocket.receive")?;
            d.set_item("bytes", PyBytes::new(py, &data))?;
        }
        In::Disconnect(code) => {
            d.set_item("type", "websocket.disconnect")?;
            d.set_item("code", code)?;
        }
    }
    Ok(d)
}

/// Held by the request's service future: dropped before the app answered the handshake, the
/// client has gone.
struct Watch(Arc<WsExchange>);

impl Drop for Watch {
    fn drop(&mut self) {
        if self.0.state().reply.is_some() {
            self.0.push(In::Disconnect(1006));
        }
    }
}

/// The tokio side of one upgrade request.
pub async fn call(shared: &Arc<Shared>, slot: Arc<Counted>, mut head: Parts, peer: Peer) -> Reply {
    let Some(bridge) = &shared.asgi else {
        unreachable!("ws::call without a bridge");
    };
    if shared.phase() != Phase::Serving || bridge.sockets.closed().is_some() {
        // The worker is stopping and has told its WebSockets to go: this one goes elsewhere.
        let mut reply = Reply::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping\n",
            true,
        );
        reply.head = Some(head);
        return reply;
    }
    let Some(key) = shared.registry.begin(head.method.as_str(), head.uri.path()) else {
        let mut reply = Reply::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "request quarantined: it kept killing workers\n",
            true,
        );
        reply.head = Some(head);
        return reply;
    };
    let upgrade = head.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let accept_key = head
        .headers
        .get("sec-websocket-key")
        .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()))
        .unwrap_or_default();
    let (tx, rx) = oneshot::channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let exchange = Arc::new(WsExchange {
        shared: shared.clone(),
        key,
        state: Mutex::new(WsState {
            incoming: VecDeque::from([In::Connect]),
            disconnected: None,
            receive_waiter: None,
            wake_queued: false,
            reply: Some(tx),
            head: None,
            accept_key,
            out: Some(out_tx),
            accepted: false,
            closing: false,
            close_on_accept: None,
            finished: false,
        }),
    });
    shared.running.fetch_add(1, Ordering::AcqRel);
    bridge.track(&exchange);
    let watch = Watch(exchange.clone());
    bridge.push(Event::WsRequest(Box::new(WsJob {
        head,
        peer,
        exchange: exchange.clone(),
    })));
    let reply = rx.await;
    drop(watch);
    let reply = match reply {
        Ok(reply) => reply,
        Err(_) => {
            return Reply::plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is stopping\n",
                true,
            )
        }
    };
    if reply.status == StatusCode::SWITCHING_PROTOCOLS {
        match upgrade {
            Some(upgrade) => {
                tokio::spawn(pump(exchange, slot, upgrade, out_rx));
            }
            None => exchange.push(In::Disconnect(1006)),
        }
    }
    reply
}

/// Runs one WebSocket until it closes, holding its connection's `worker_connections` slot.
async fn pump(
    exchange: Arc<WsExchange>,
    _slot: Arc<Counted>,
    upgrade: hyper::upgrade::OnUpgrade,
    mut out: mpsc::UnboundedReceiver<Out>,
) {
    let shared = exchange.shared.clone();
    let Ok(upgraded) = upgrade.await else {
        exchange.push(In::Disconnect(1006));
        return;
    };
    // tungstenite zero-fills its read buffer's free space (128 KiB by default) before each
    // read, a would-block one included: that memset was the biggest cost of a small message.
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .read_buffer_size(READ_BUFFER);
    let mut ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let mut phase = shared.phase.subscribe();
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => exchange.push(In::Text(text.to_string())),
                Some(Ok(Message::Binary(data))) => exchange.push(In::Bytes(data)),
                Some(Ok(Message::Close(frame))) => {
                    // tungstenite has queued the close reply: send it, then the app hears.
                    let _ = ws.flush().await;
                    exchange.push(In::Disconnect(frame.map_or(1005, |f| u16::from(f.code))));
                    return;
                }
                Some(Ok(_)) => {} // ping (answered by tungstenite), pong, raw frame
                Some(Err(WsError::Capacity(_))) => {
                    overflow_close(&mut ws).await;
                    exchange.push(In::Disconnect(1009));
                    return;
                }
                Some(Err(_)) | None => {
                    exchange.push(In::Disconnect(1006));
                    return;
                }
            },
            sending = out.recv() => match sending {
                Some(Out::Send(message)) => {
                    if ws.send(message).await.is_err() {
                        exchange.push(In::Disconnect(1006));
                        return;
                    }
                }
                Some(Out::Close(code, reason)) => {
                    let _ = close(&mut ws, code, &reason).await;
                    exchange.push(In::Disconnect(code));
                    return;
                }
                None => {
                    // The app call ended without a close: 1000, as uvicorn.
                    let _ = close(&mut ws, 1000, "").await;
                    exchange.push(In::Disconnect(1000));
                    return;
                }
            },
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Aborted {
                    exchange.push(In::Disconnect(1006));
                    return;
                }
            }
        }
    }
}

/// After a message over the limit: the close frame (1009), then the rest of what the client is
/// still sending is read and dropped until it closes (or for `CLOSE_WAIT`). Closing the socket
/// with its bytes unread would send a reset, and the client would lose the close frame with it.
async fn overflow_close<S>(ws: &mut WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let frame = CloseFrame {
        code: CloseCode::from(1009),
        reason: "message too big".into(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let raw = ws.get_mut();
    let _ = raw.shutdown().await;
    let mut sink = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while matches!(raw.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Sends a close frame and waits (briefly) for the client's.
async fn close<S>(ws: &mut WebSocketStream<S>, code: u16, reason: &str) -> Result<(), WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    }))
    .await?;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(message)) = ws.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// The loop side: the scope of one upgrade request and its `receive` / `send`.
pub fn start<'py>(
    py: Python<'py>,
    server: &Bound<'py, Server>,
    job: WsJob,
    out: &Bound<'py, PyList>,
) -> PyResult<()> {
    let WsJob {
        head,
        peer,
        exchange,
    } = job;
    let scope = super::scope::build(py, server.get(), &head, &peer)?;
    scope.set_item("type", "websocket")?;
    scope.set_item("scheme", if peer.scheme == "https" { "wss" } else { "ws" })?;
    let _ = scope.del_item("method");
    let subprotocols = PyList::empty(py);
    for value in head.headers.get_all("sec-websocket-protocol") {
        if let Ok(text) = value.to_str() {
            for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                subprotocols.append(token)?;
            }
        }
    }
    scope.set_item("subprotocols", subprotocols)?;
    exchange.state().head = Some(head);
    let Some(lp) = server.get().asgi_loop.get() else {
        return Err(PyRuntimeError::new_err("asgi_start was not called"));
    };
    let receive = WsReceive {
        exchange: exchange.clone(),
        lp: lp.clone_ref(py),
    };
    let send = WsSend {
        exchange,
        server: server.clone().unbind(),
    };
    out.append((scope, receive, send))
}

#[pyclass(frozen, module = "herdsman._engine", name = "WsReceive")]
pub struct WsReceive {
    exchange: Arc<WsExchange>,
    lp: Py<PyAny>,
}

#[pymethods]
impl WsReceive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let earlier = self.exchange.state().receive_waiter.take();
        if let Some(earlier) = earlier {
            if !is_done(py, &earlier) {
                self.exchange.state().receive_waiter = Some(earlier);
                return Err(PyRuntimeError::new_err(
                    "receive() called again before the previous call completed",
                ));
            }
        }
        let ready = |message: In| -> PyResult<Py<PyAny>> {
            super::call::ready(py, Some(to_python(py, message)?.into_any().unbind()))
        };
        if let Some(message) = self.exchange.next(&mut self.exchange.state()) {
            return ready(message);
        }
        let future = self
            .lp
            .bind(py)
            .call_method0(pyo3::intern!(py, "create_future"))?;
        let mut state = self.exchange.state();
        if let Some(message) = self.exchange.next(&mut state) {
            drop(state);
            return ready(message);
        }
        state.receive_waiter = Some(future.clone().unbind());
        Ok(future.unbind())
    }
}

#[pyclass(frozen, module = "herdsman._engine", name = "WsSend")]
pub struct WsSend {
    exchange: Arc<WsExchange>,
    server: Py<Server>,
}

impl WsSend {
    fn accept(&self, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Some(protocol) = message.get_item("subprotocol")? {
            if !protocol.is_none() {
                let protocol = protocol.cast::<PyString>().map_err(|_| {
                    PyTypeError::new_err("websocket.accept: subprotocol must be a str")
                })?;
                headers.insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_str(&protocol.to_cow()?)
                        .map_err(|_| PyValueError::new_err("websocket.accept: bad subprotocol"))?,
                );
            }
        }
        if let Some(extra) = message.get_item("headers")? {
            for item in extra.try_iter()? {
                let item = item?;
                let name = item.get_item(0)?;
                let value = item.get_item(1)?;
                let (Ok(name), Ok(value)) = (name.cast::<PyBytes>(), value.cast::<PyBytes>())
                else {
                    return Err(PyTypeError::new_err(
                        "websocket.accept: each header is a [name, value] pair of bytes",
                    ));
                };
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| PyValueError::new_err("websocket.accept: bad header name"))?;
                let value = HeaderValue::from_bytes(value.as_bytes())
                    .map_err(|_| PyValueError::new_err("websocket.accept: bad header value"))?;
                headers.append(name, value);
            }
        }
        let mut state = self.exchange.state();
        let Some(reply) = state.reply.take() else {
            return Err(PyRuntimeError::new_err(
                "Unexpected ASGI message 'websocket.accept': the handshake is already done",
            ));
        };
        let accept = HeaderValue::from_str(&state.accept_key)
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        headers.insert("sec-websocket-accept", accept);
        state.accepted = true;
        let head = state.head.take();
        if let Some(code) = state.close_on_accept {
            // Queued before the pump starts: the client hears the 101, then the close.
            state.closing = true;
            if let Some(out) = &state.out {
                let _ = out.send(Out::Close(code, String::new()));
            }
        }
        drop(state);
        let _ = reply.send(Reply {
            status: StatusCode::SWITCHING_PROTOCOLS,
            reason: None,
            headers,
            body: Kind::Full(None),
            head,
        });
        Ok(())
    }

    fn refuse(state: &mut WsState, status: StatusCode, text: &'static str) {
        if let Some(reply) = state.reply.take() {
            let mut answer = Reply::plain(status, text, true);
            answer.head = state.head.take();
            let _ = reply.send(answer);
        }
    }

    fn end(&self, py: Python<'_>, error: Option<PyErr>) {
        let exchange = &self.exchange;
        let shared = &exchange.shared;
        let mut state = exchange.state();
        if state.finished {
            return;
        }
        state.finished = true;
        let unanswered = state.reply.is_some();
        let (method, path) = match &state.head {
            Some(h) => (h.method.as_str().to_string(), h.uri.path().to_string()),
            None => shared.registry.describe(exchange.key),
        };
        let cancelled = error
            .as_ref()
            .is_some_and(|e| e.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>(py));
        if unanswered {
            Self::refuse(
                &mut state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error\n",
            );
        } else if error.is_some() && !state.closing && !cancelled {
            state.closing = true;
            if let Some(out) = &state.out {
                let _ = out.send(Out::Close(1011, String::new()));
            }
        }
        state.out = None; // the pump closes with 1000 if nothing was sent
        state.receive_waiter = None;
        drop(state);
        let server = self.server.get();
        match (&error, cancelled) {
            (Some(err), false) => server.log_app_error(py, err, "ASGI", &method, &path),
            (None, _) if unanswered => server.log_line(
                py,
                "error",
                &format!("ASGI callable returned without sending handshake ({method} {path})"),
            ),
            _ => {}
        }
        shared.registry.end(exchange.key);
        shared.app_call_done();
    }
}

#[pymethods]
impl WsSend {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let message = message
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("send() takes a dict (an ASGI message)"))?;
        let kind: String = message
            .get_item("type")?
            .ok_or_else(|| PyValueError::new_err("an ASGI message without a \"type\""))?
            .extract()?;
        match kind.as_str() {
            "websocket.accept" => self.accept(message)?,
            "websocket.send" => {
                let text = message.get_item("text")?.filter(|t| !t.is_none());
                let data = message.get_item("bytes")?.filter(|b| !b.is_none());
                let frame = match (text, data) {
                    (Some(text), _) => Message::text(text.extract::<String>()?),
                    (None, Some(data)) => Message::binary(Bytes::copy_from_slice(
                        data.cast::<PyBytes>()
                            .map_err(|_| {
                                PyTypeError::new_err("websocket.send: bytes must be bytes")
                            })?
                            .as_bytes(),
                    )),
                    (None, None) => {
                        return Err(PyValueError::new_err(
                            "websocket.send needs \"text\" or \"bytes\"",
                        ))
                    }
                };
                let state = self.exchange.state();
                if !state.accepted {
                    return Err(PyRuntimeError::new_err(
                        "Expected ASGI message 'websocket.accept' or 'websocket.close', but got 'websocket.send'.",
                    ));
                }
                if !state.closing {
                    if let Some(out) = &state.out {
                        let _ = out.send(Out::Send(frame));
                    }
                }
            }
            "websocket.close" => {
                let code: u16 = match message.get_item("code")? {
                    Some(code) if !code.is_none() => code.extract()?,
                    _ => 1000,
                };
                let reason: String = match message.get_item("reason")? {
                    Some(reason) if !reason.is_none() => reason.extract()?,
                    _ => String::new(),
                };
                let mut state = self.exchange.state();
                if !state.accepted {
                    // Rejected before the handshake: 403, as uvicorn.
                    Self::refuse(&mut state, StatusCode::FORBIDDEN, "Forbidden\n");
                    state.disconnected = Some(code);
                } else if !state.closing {
                    state.closing = true;
                    if let Some(out) = &state.out {
                        let _ = out.send(Out::Close(code, reason));
                    }
                }
            }
            other => {
                return Err(PyRuntimeError::new_err(format!(
                    "Unexpected ASGI message '{other}' sent for a websocket scope"
                )))
            }
        }
        super::call::ready(py, None)
    }

    #[pyo3(signature = (error=None))]
    fn done(&self, py: Python<'_>, error: Option<Bound<'_, PyAny>>) {
        let error = error.filter(|e| !e.is_none()).map(PyErr::from_value);
        self.end(py, error);
    }
}

/// The open WebSockets of a server, to close on a stop.
#[derive(Default)]
pub struct Sockets(Mutex<Open>);

#[derive(Default)]
struct Open {
    all: Vec<Weak<WsExchange>>,
    /// `close_all` was called with this code: the worker is stopping.
    closed: Option<u16>,
}

impl Sockets {
    fn open(&self) -> MutexGuard<'_, Open> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn track(&self, exchange: &Arc<WsExchange>) {
        let closed = {
            let mut open = self.open();
            open.all.retain(|w| w.strong_count() > 0);
            open.all.push(Arc::downgrade(exchange));
            open.closed
        };
        if let Some(code) = closed {
            exchange.close(code); // the stop came between the check in `call` and here
        }
    }

    pub fn closed(&self) -> Option<u16> {
        self.open().closed
    }

    /// Closes every open WebSocket with `code` (those in their handshake once accepted); how
    /// many were open.
    pub fn close_all(&self, code: u16) -> usize {
        let all: Vec<Arc<WsExchange>> = {
            let mut open = self.open();
            open.closed = Some(code);
            open.all.iter().filter_map(Weak::upgrade).collect()
        };
        for exchange in &all {
            exchange.close(code);
        }
        all.len()
    }
}
