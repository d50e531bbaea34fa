//! One connection: hyper's HTTP/1.1 state machine, plus what hyper does not do for us: the
//! keep-alive timeout and the drain (docs/protocol.md, "the keep-alive drain").
//!
//! Invariants: a connection is closed by us only when no request is in progress on it (`busy` is
//! 0) and it has been idle for the window of the phase (keep-alive timeout while serving, the
//! drain's idle window while draining), through hyper's graceful shutdown, which closes an idle
//! connection at once; a quick stop (Aborted) drops it whatever it is doing. A connection is
//! counted from the moment it is accepted (`Counted::new`, before its task is spawned, so a
//! draining server never sees zero connections and ends while an accepted one waits for its
//! first poll) until its task ends, however it ends (the guard's drop).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::Peer;
use crate::shared::{Phase, Shared};

/// How often a draining connection with a request in progress is looked at again.
const DRAIN_TICK: Duration = Duration::from_millis(10);
/// hyper's read buffer limit, which bounds the request head (line and fields together).
const MAX_HEAD: usize = 64 * 1024;

/// What the service and a request's `Finish` tell the connection task.
pub struct ConnState {
    pub busy: AtomicU32,
    pub last_done_ms: AtomicU64,
    pub wake: Notify,
    /// The connection's slot: a WebSocket keeps it after hyper hands the connection over.
    pub counted: Arc<Counted>,
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

pub async fn serve<IO>(counted: Counted, io: IO, peer: Peer)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = counted.0.clone();
    let state = Arc::new(ConnState {
        busy: AtomicU32::new(0),
        last_done_ms: AtomicU64::new(shared.now_ms()),
        wake: Notify::new(),
        counted: Arc::new(counted),
    });
    let service = {
        let (shared, state) = (shared.clone(), state.clone());
        service_fn(move |request| {
            super::service::handle(shared.clone(), state.clone(), peer, request)
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .max_buf_size(MAX_HEAD)
        .header_read_timeout(Duration::from_secs(30));
    // With upgrades: an ASGI app's WebSockets take the connection over after the 101.
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut phase = shared.phase.subscribe();
    let mut closing = false;
    loop {
        let now_phase = *phase.borrow_and_update();
        if now_phase == Phase::Aborted {
            return; // dropping the connection closes the socket
        }
        let wake = if closing {
            None
        } else {
            Some(next_look(&shared, &state, now_phase))
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
                if idle_expired(&shared, &state, now_phase) {
                    conn.as_mut().graceful_shutdown();
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
