//! What the state machine hears ([`Event`]) and what it asks for ([`Action`]). The loop turns
//! signals, reaped children and channel messages into events, and applies actions with system
//! calls; nothing else crosses between the two.

use super::exits::Failure;
use super::policy::Policy;
use crate::sys::reap::ExitStatus;
use crate::worker::WorkerMessage;

/// A stable worker identity, distinct from the pid, never reused during a master's life.
pub type WorkerId = u64;

/// How to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Finish in-flight requests, up to the graceful timeout.
    Graceful,
    /// Cancel in-flight requests, run lifespan shutdown, exit.
    Quick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A stop was requested (SIGTERM: graceful; SIGINT/SIGQUIT: quick).
    Stop(StopMode),
    /// Change the target worker count by this much (SIGTTIN +1, SIGTTOU -1); never below 1.
    Scale(i64),
    /// Set the target worker count (`herdsman ctl scale N`); never below 1.
    SetTarget(u32),
    /// A reload was requested (SIGHUP).
    ReloadRequested,
    /// The loop built generation `generation` from a freshly loaded config: roll over to it,
    /// deciding from now on with `policy`. Its target applies only if the config changed the
    /// worker count (`workers_changed`); otherwise the current target (scaled by TTIN/TTOU)
    /// stays.
    Reload {
        generation: u64,
        policy: Box<Policy>,
        workers_changed: bool,
    },
    /// The reload could not start (the config is invalid); the current generation stays.
    ReloadAborted,
    /// The new generation could not be started at all (its zygote failed to import the new
    /// code): the reload failed before any worker of it existed; the current generation stays.
    ReloadCannotStart { reason: String },
    /// A spawn asked for by [`Action::Spawn`] succeeded.
    Spawned { id: WorkerId, pid: i32 },
    /// A spawn failed before a process existed (exec failed, fork failed).
    SpawnFailed {
        id: WorkerId,
        error: String,
        exec_failed: bool,
    },
    /// A spawn asked for by [`Action::Spawn`] produced no worker, for a reason that counts like
    /// the worker's own boot failure (the zygote it was to be forked from failed to boot).
    SpawnAborted { id: WorkerId, failure: Failure },
    /// A worker sent a message.
    Message {
        id: WorkerId,
        message: WorkerMessage,
    },
    /// A worker's channel reached end-of-file.
    ChannelClosed { id: WorkerId },
    /// A child was reaped; `serving`: the requests its in-flight file listed ("METHOD PATH").
    Exited {
        pid: i32,
        status: ExitStatus,
        serving: Vec<String>,
    },
    /// Memory samples asked for by [`Action::MeasureMemory`]: PSS in bytes, `None` if unreadable.
    Memory {
        samples: Vec<(WorkerId, Option<u64>)>,
    },
    /// Time passed (a deadline may have expired).
    Tick,
}

/// A signal sent to one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerSignal {
    /// SIGTERM: graceful stop.
    Term,
    /// SIGQUIT: quick stop.
    Quit,
    /// SIGUSR2: dump the Python traceback of every thread.
    Dump,
    /// SIGKILL.
    Kill,
}

impl WorkerSignal {
    pub fn number(self) -> i32 {
        match self {
            WorkerSignal::Term => libc::SIGTERM,
            WorkerSignal::Quit => libc::SIGQUIT,
            WorkerSignal::Dump => libc::SIGUSR2,
            WorkerSignal::Kill => libc::SIGKILL,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The quarantined requests ("METHOD PATH") changed: tell every worker, and write them into
    /// the in-flight file of every worker started from now on.
    Quarantine { requests: Vec<String> },
    /// Start worker `id` from generation `generation`'s spec; answer with `Spawned`,
    /// `SpawnFailed` or `SpawnAborted` (with the zygote, possibly later: once it is ready).
    Spawn { id: WorkerId, generation: u64 },
    /// Signal a worker that has not been reaped yet.
    Signal {
        id: WorkerId,
        pid: i32,
        signal: WorkerSignal,
    },
    /// Load the config again and answer with `Reload` or `ReloadAborted`.
    LoadConfig,
    /// Every worker of the first start is ready (emitted once): the moment to say `READY=1`.
    Serving,
    /// A reload finished: generation `generation` serves with every worker ready.
    Reloaded { generation: u64 },
    /// A reload was rolled back; the previous generation keeps serving.
    ReloadFailed { reason: String },
    /// Send one line (a JSON message, docs/protocol.md) to a worker over its channel.
    SendToWorker { id: WorkerId, line: String },
    /// Read the PSS of these workers and answer with `Memory`.
    MeasureMemory { workers: Vec<(WorkerId, i32)> },
    /// Stop listening: close the master's copies of the listeners (at the start of a stop).
    CloseListeners,
    /// Exit the master with this code (every worker is gone).
    Exit(i32),
}
