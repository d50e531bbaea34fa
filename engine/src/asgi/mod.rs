//! The ASGI side (ASGI 3: `http`; `lifespan` is run by the runtime in Python), on the worker's
//! asyncio loop: the bridge from the tokio thread to that loop, the exchange one request shares
//! between both sides, the scope, and the `receive` / `send` callables.
//!
//! The bridge batches: the tokio thread queues new requests and wake-ups (a `receive` or `send`
//! that waits) in one list and writes one byte to a pipe only when the list was empty; the loop
//! watches the pipe (`loop.add_reader`) and its callback takes the whole list at once
//! (`Server.asgi_take`), resolves the wake-ups and starts one task per new request. `receive` on
//! a body already read, and `send` below the high-water mark, return an awaitable that is done at
//! once (no future, no loop round trip). Nothing here cares whether the request came over
//! HTTP/1.1 or HTTP/2: only the request head, its body and the response reach this module.
//!
//! Invariants: every request queued reaches the app exactly once, or is answered by the engine
//! (500, or 503 when the bridge is closed); every app call ends with `Send.done` (the runtime's
//! task wrapper guarantees it), which ends its in-flight entry and counts it, exactly once; the
//! exchange's lock is never held while calling into Python.

pub mod call;
pub mod exchange;
pub mod scope;
pub mod ws;

use std::sync::{Arc, Mutex};

use hyper::http::request::Parts;

use crate::http::Peer;
use crate::notify::Notifier;
use exchange::Exchange;

/// A request handed from the tokio thread to the loop.
pub struct Job {
    pub head: Parts,
    pub peer: Peer,
    pub exchange: Arc<Exchange>,
}

pub enum Event {
    Request(Box<Job>),
    /// A `receive` or `send` of this exchange may be able to complete now.
    Wake(Arc<Exchange>),
    /// A WebSocket upgrade request (ws.rs).
    WsRequest(Box<ws::WsJob>),
    WsWake(Arc<ws::WsExchange>),
}

pub struct Bridge {
    queue: Mutex<Vec<Event>>,
    notifier: Notifier,
    /// The WebSockets open, to close on a stop.
    pub sockets: ws::Sockets,
}

/// The byte the bridge writes to the loop's pipe.
const WAKE: u8 = b'a';

impl Bridge {
    pub fn new(notifier: Notifier) -> Bridge {
        Bridge {
            queue: Mutex::new(Vec::with_capacity(64)),
            notifier,
            sockets: ws::Sockets::default(),
        }
    }

    /// Queues an event; the pipe is written only when the queue was empty (the loop's reader
    /// reads the pipe before it takes the queue, so nothing queued is missed).
    pub fn push(&self, event: Event) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = queue.is_empty();
        queue.push(event);
        drop(queue);
        if was_empty {
            self.notifier.send(WAKE);
        }
    }

    pub fn track(&self, exchange: &Arc<ws::WsExchange>) {
        self.sockets.track(exchange);
    }

    pub fn take(&self) -> Vec<Event> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *queue, Vec::with_capacity(64))
    }
}
