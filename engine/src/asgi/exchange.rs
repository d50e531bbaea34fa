//! One ASGI request as both sides see it: the request body the tokio thread reads ahead (up to
//! `BODY_HIGH` bytes, starting only once the app first calls `receive`, so that
//! `Expect: 100-continue` is answered then, as uvicorn does), the response the app sends (whole,
//! or streamed with `more_body`, the app's `send` waiting once `SEND_HIGH` bytes are queued for
//! the client), the client's departure, and the futures a waiting `receive` or `send` holds.
//!
//! Invariants: the lock is never held across an await, a call into Python, or the bridge's push;
//! a waiter is resolved only by the loop (`resolve`, with the GIL); a wake-up is queued for an
//! exchange at most once until the loop has resolved it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use pyo3::prelude::*;
use tokio::sync::{mpsc, oneshot, Notify};

use super::Event;
use crate::http::body::{Aborted, Chunk};
use crate::http::service::Reply;
use crate::shared::Shared;

/// Request body bytes read ahead of the app.
pub const BODY_HIGH: usize = 256 * 1024;
/// Response body bytes queued for the client past which `send` waits...
pub const SEND_HIGH: usize = 512 * 1024;
/// ...until they are down to this.
pub const SEND_LOW: usize = 128 * 1024;

pub struct Exchange {
    pub shared: Arc<Shared>,
    /// The in-flight registry's key for this app call.
    pub key: u64,
    state: Mutex<State>,
    /// The body pump's wake-up: the app asked for the body, consumed some, or the call ended.
    pump: Notify,
    /// Response bytes queued and not yet taken by hyper.
    queued_out: AtomicUsize,
}

pub struct State {
    pub chunks: VecDeque<Bytes>,
    pub chunk_bytes: usize,
    /// No more request body will come (its end, or a bad body).
    pub body_end: bool,
    /// The last `http.request` (more_body false) was received.
    pub body_complete: bool,
    /// The app called `receive` (the pump may read).
    pub asked: bool,
    /// The client went away (or its body was bad): `receive` says `http.disconnect`.
    pub gone: bool,
    /// The whole response was handed to hyper: `receive` says `http.disconnect`.
    pub response_done: bool,
    /// The app call has ended (`Send.done`).
    pub finished: bool,
    pub receive_waiter: Option<Py<PyAny>>,
    pub send_waiter: Option<Py<PyAny>>,
    wake_queued: bool,
    // The response.
    pub reply: Option<oneshot::Sender<Reply>>,
    pub head: Option<Parts>,
    pub started: Option<(hyper::StatusCode, hyper::HeaderMap)>,
    pub stream: Option<mpsc::UnboundedSender<Chunk>>,
}

/// What `receive` answers now, if it can.
pub enum Message {
    Body(Bytes, bool),
    Disconnect,
}

impl Exchange {
    pub fn new(
        shared: Arc<Shared>,
        key: u64,
        reply: oneshot::Sender<Reply>,
        body: Option<Bytes>,
    ) -> Exchange {
        let mut chunks = VecDeque::new();
        let mut chunk_bytes = 0;
        let body_end = body.is_some();
        if let Some(data) = body {
            chunk_bytes = data.len();
            chunks.push_back(data);
        }
        Exchange {
            shared,
            key,
            state: Mutex::new(State {
                chunks,
                chunk_bytes,
                body_end,
                body_complete: false,
                asked: false,
                gone: false,
                response_done: false,
                finished: false,
                receive_waiter: None,
                send_waiter: None,
                wake_queued: false,
                reply: Some(reply),
                head: None,
                started: None,
                stream: None,
            }),
            pump: Notify::new(),
            queued_out: AtomicUsize::new(0),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The message `receive` can answer at once, if any (taking it); marks the body as asked for.
    pub fn next_message(&self, state: &mut State) -> Option<Message> {
        // As uvicorn: once the response is complete (or the client gone), only a disconnect.
        if state.gone || state.response_done {
            return Some(Message::Disconnect);
        }
        if !state.body_complete {
            if !state.chunks.is_empty() {
                let data = if state.chunks.len() == 1 {
                    state.chunks.pop_front().unwrap_or_default()
                } else {
                    let mut joined = BytesMut::with_capacity(state.chunk_bytes);
                    for chunk in state.chunks.drain(..) {
                        joined.extend_from_slice(&chunk);
                    }
                    joined.freeze()
                };
                state.chunk_bytes = 0;
                let more = !state.body_end;
                state.body_complete = !more;
                if more {
                    self.pump.notify_one(); // room again
                }
                return Some(Message::Body(data, more));
            }
            if state.body_end {
                state.body_complete = true;
                return Some(Message::Body(Bytes::new(), false));
            }
            if !state.asked {
                state.asked = true;
                self.pump.notify_one();
            }
            return None;
        }
        None
    }

    /// Whether a `send` must wait for the client now.
    pub fn send_must_wait(&self) -> bool {
        self.queued_out.load(Ordering::Acquire) > SEND_HIGH
    }

    pub fn queued(&self, n: usize) {
        self.queued_out.fetch_add(n, Ordering::AcqRel);
    }

    /// The tokio side: a waiter may be resolvable; queue one wake-up for the loop.
    fn wake(self: &Arc<Self>) {
        let mut state = self.state();
        if state.wake_queued || (state.receive_waiter.is_none() && state.send_waiter.is_none()) {
            return;
        }
        state.wake_queued = true;
        drop(state);
        if let Some(bridge) = &self.shared.asgi {
            bridge.push(Event::Wake(self.clone()));
        }
    }

    /// The loop side: resolves the waiters that can complete.
    pub fn resolve(&self, py: Python<'_>) {
        let mut state = self.state();
        state.wake_queued = false;
        let mut receive = None;
        if let Some(waiter) = &state.receive_waiter {
            let cancelled = waiter
                .bind(py)
                .call_method0(pyo3::intern!(py, "done"))
                .and_then(|d| d.is_truthy())
                .unwrap_or(true);
            if cancelled {
                state.receive_waiter = None;
            } else if let Some(message) = self.next_message(&mut state) {
                receive = state.receive_waiter.take().map(|w| (w, message));
            }
        }
        let send = if state.send_waiter.is_some() && (!self.send_must_wait_low() || state.gone) {
            state.send_waiter.take()
        } else {
            None
        };
        drop(state);
        if let Some((waiter, message)) = receive {
            match super::call::message(py, message) {
                Ok(message) => set_result(py, &waiter, message.into_any()),
                Err(err) => {
                    let _ = waiter
                        .bind(py)
                        .call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),));
                }
            }
        }
        if let Some(waiter) = send {
            set_result(py, &waiter, py.None().into_bound(py));
        }
    }

    fn send_must_wait_low(&self) -> bool {
        self.queued_out.load(Ordering::Acquire) > SEND_LOW
    }

    /// The loop side: the response is complete or the call ended; a waiting `receive` learns of
    /// the disconnect at once.
    pub fn wake_receive_now(&self, py: Python<'_>) {
        let waiter = {
            let mut state = self.state();
            if state.receive_waiter.is_some() && self.peek_disconnect(&state) {
                state.receive_waiter.take()
            } else {
                None
            }
        };
        if let Some(waiter) = waiter {
            if let Ok(message) = super::call::message(py, Message::Disconnect) {
                set_result(py, &waiter, message.into_any());
            }
        }
    }

    fn peek_disconnect(&self, state: &State) -> bool {
        state.gone || state.response_done
    }

    /// The app call ended: the pump stops.
    pub fn finished(&self) {
        self.pump.notify_one();
    }

    /// The tokio side: the client is gone (its connection closed before the response was
    /// handed over, or while the body streamed).
    pub fn client_gone(self: &Arc<Self>) {
        {
            let mut state = self.state();
            if state.gone || state.finished && state.response_done {
                return;
            }
            state.gone = true;
        }
        self.pump.notify_one();
        self.wake();
    }
}

fn set_result(py: Python<'_>, waiter: &Py<PyAny>, value: Bound<'_, PyAny>) {
    let waiter = waiter.bind(py);
    let done = waiter
        .call_method0(pyo3::intern!(py, "done"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true);
    if !done {
        let _ = waiter.call_method1(pyo3::intern!(py, "set_result"), (value,));
    }
}

/// The tokio side: reads a streamed request body for the app, ahead of it by up to
/// `BODY_HIGH` bytes, once the app has asked; ends with the body, the client, or the call.
pub async fn pump(exchange: Arc<Exchange>, mut body: Incoming) {
    loop {
        loop {
            let notified = exchange.pump.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = exchange.state();
                if state.gone || state.finished {
                    return;
                }
                if state.asked && state.chunk_bytes < BODY_HIGH {
                    break;
                }
            }
            notified.await;
        }
        let frame = loop {
            tokio::select! {
                frame = body.frame() => break frame,
                _ = exchange.pump.notified() => {
                    let state = exchange.state();
                    if state.gone || state.finished {
                        return;
                    }
                }
            }
        };
        let ended = {
            let mut state = exchange.state();
            match frame {
                None => {
                    state.body_end = true;
                    true
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            state.chunk_bytes += data.len();
                            state.chunks.push_back(data);
                        }
                    }
                    false
                }
                Some(Err(_)) => {
                    // A bad body or a client gone mid-body: the app hears a disconnect.
                    state.body_end = true;
                    state.gone = true;
                    true
                }
            }
        };
        exchange.wake();
        if ended {
            return;
        }
    }
}

/// The response body hyper writes for a streamed ASGI response.
pub struct Outgoing {
    rx: mpsc::UnboundedReceiver<Chunk>,
    exchange: Arc<Exchange>,
}

impl Outgoing {
    pub fn new(rx: mpsc::UnboundedReceiver<Chunk>, exchange: Arc<Exchange>) -> Outgoing {
        Outgoing { rx, exchange }
    }

    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        let next = Pin::new(&mut self.rx).poll_recv(cx);
        if let Poll::Ready(Some(Ok(data))) = &next {
            let before = self
                .exchange
                .queued_out
                .fetch_sub(data.len(), Ordering::AcqRel);
            if before > SEND_LOW && before - data.len() <= SEND_LOW {
                self.exchange.wake();
            }
        }
        next
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        // Written out, or dropped because the client left: either way no one reads more.
        let complete = {
            let state = self.exchange.state();
            state.response_done && self.rx.is_empty()
        };
        if !complete {
            self.exchange.client_gone();
        }
    }
}

/// Cuts a streamed response (the app failed after it started).
pub fn abort(stream: &mpsc::UnboundedSender<Chunk>) {
    let _ = stream.send(Err(Aborted));
}

/// Held by the request's service future: dropped before the app's response was handed over,
/// the client has gone.
pub struct Watch(pub Arc<Exchange>);

impl Drop for Watch {
    fn drop(&mut self) {
        let pending = self.0.state().reply.is_some();
        if pending {
            self.0.client_gone();
        }
    }
}
