//! The hand-off of requests from the engine thread to the app's Python threads, and how many of
//! those threads are awake.
//!
//! A thread that finishes a request takes the next queued one itself, with the GIL held
//! (wsgi/run.rs), and parks (without the GIL) only when the queue is empty. A parked thread is
//! woken at once when a request arrives and no thread is awake. Otherwise one more thread is woken
//! only when requests wait through a whole `PROGRESS_TICK` in which no app call completed: the
//! awake threads are then blocked (I/O, a sleep, a lock: the GIL is free) rather than busy with
//! the GIL, so another thread can use it. A CPU-bound app thus runs on one thread at a time,
//! without hand-offs of the GIL between threads that could only wait for it (which cost a fifth
//! of Flask's throughput with four threads, each woken per request), and an app that waits gets
//! up to `threads` calls at once within a few ticks.
//!
//! Invariants: a request pushed is taken by some thread as long as one runs (a thread parks only
//! after seeing the queue empty under the lock a push holds); a thread exits only once the pool
//! is closed and the queue is empty; after `close` every push is refused and handed back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::Notify;

use crate::wsgi::Job;

/// How long queued requests may go without any app call completing before one more thread is
/// woken (tokio's timers have a 1 ms resolution).
pub const PROGRESS_TICK: Duration = Duration::from_millis(1);

pub struct Pool {
    threads: usize,
    tx: Sender<Box<Job>>,
    rx: Receiver<Box<Job>>,
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled on each push, so that the dispatcher watches only while requests are queued.
    queued: Notify,
}

struct State {
    /// Threads waiting in `park`.
    parked: usize,
    /// Wake-ups given to parked threads and not yet taken.
    tokens: usize,
    closed: bool,
}

impl Pool {
    pub fn new(threads: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            threads,
            tx,
            rx,
            state: Mutex::new(State {
                parked: 0,
                tokens: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            queued: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a request (the engine thread); hands it back once the pool is closed.
    pub fn push(&self, job: Box<Job>) -> Result<(), Box<Job>> {
        let mut state = self.state();
        if state.closed {
            return Err(job);
        }
        // The receiver lives in `self`, so the channel is never disconnected.
        self.tx.send(job).map_err(|unsent| unsent.0)?;
        if self.threads - state.parked + state.tokens == 0 {
            Self::give_token(&mut state, &self.wake);
        }
        drop(state);
        self.queued.notify_one();
        Ok(())
    }

    fn give_token(state: &mut State, wake: &Condvar) {
        state.tokens += 1;
        wake.notify_one();
    }

    /// A queued request, if any (an app thread, with the GIL held).
    pub fn try_take(&self) -> Option<Box<Job>> {
        self.rx.try_recv().ok()
    }

    /// Waits (without the GIL) until there may be a request for this thread: true to look at
    /// the queue again, false to exit (closed, and nothing left to take).
    pub fn park(&self) -> bool {
        let mut state = self.state();
        loop {
            if !self.rx.is_empty() {
                return true;
            }
            if state.closed {
                return false;
            }
            state.parked += 1;
            while state.tokens == 0 && !state.closed {
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.tokens > 0 {
                state.tokens -= 1;
            }
            state.parked -= 1;
            if !state.closed {
                return true;
            }
        }
    }

    /// No more requests: every thread exits once the queue is empty.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        self.wake.notify_all();
    }

    /// The engine thread's watcher: wakes one more parked thread when requests wait through a
    /// tick in which no app call completed (`completed` counts them). Runs until the runtime ends.
    pub async fn dispatch(&self, completed: &AtomicU64) {
        loop {
            while self.rx.is_empty() {
                self.queued.notified().await;
            }
            let mut seen = completed.load(Ordering::Acquire);
            while !self.rx.is_empty() {
                tokio::time::sleep(PROGRESS_TICK).await;
                let now = completed.load(Ordering::Acquire);
                if now == seen && !self.rx.is_empty() {
                    let mut state = self.state();
                    if state.parked > state.tokens {
                        Self::give_token(&mut state, &self.wake);
                    }
                }
                seen = now;
            }
        }
    }
}
