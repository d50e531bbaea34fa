//! Unit tests of the supervision state machine, driven with an injected clock. Spawn requests
//! are answered at once with pid 1000 + worker id.
//!
//! This file is the harness (`H`, an injected clock and helpers); the tests are split like
//! `state/`, one file per concern: `reconcile`, `failures`, `liveness`, `stop`, `reload`,
//! `recycle`, `upgrade`, `zygote`.

use std::time::{Duration, Instant};

use super::event::{Action, Event, StopMode, WorkerSignal};
use super::policy::test_policy;
use super::state::Master;
use super::workers::Phase;
use crate::exit;
use crate::sys::reap::ExitStatus;
use crate::worker::{BootErrorKind, WorkerMessage};

struct H {
    m: Master,
    now: Instant,
}

const KILLED: ExitStatus = ExitStatus::Signaled {
    signal: libc::SIGKILL,
    core_dumped: false,
};

fn pid(id: u64) -> i32 {
    1000 + id as i32
}

impl H {
    fn new(target: u32) -> (H, Vec<Action>) {
        let mut policy = test_policy();
        policy.target = target;
        let now = Instant::now();
        let mut h = H {
            m: Master::new(policy, now),
            now,
        };
        let actions = h.ev(Event::Tick);
        (h, actions)
    }

    /// Feeds an event, answering every spawn request like the loop would.
    fn ev(&mut self, event: Event) -> Vec<Action> {
        let mut all = Vec::new();
        let mut queue = vec![event];
        while let Some(e) = queue.pop() {
            for a in self.m.on_event(e, self.now) {
                if let Action::Spawn { id, .. } = a {
                    queue.push(Event::Spawned { id, pid: pid(id) });
                }
                all.push(a);
            }
        }
        all
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.ev(Event::Tick)
    }

    fn msg(&mut self, id: u64, message: WorkerMessage) -> Vec<Action> {
        self.ev(Event::Message { id, message })
    }

    fn ready(&mut self, id: u64) -> Vec<Action> {
        self.msg(
            id,
            WorkerMessage::Ready {
                interface: "asgi".into(),
            },
        )
    }

    fn exit(&mut self, id: u64, status: ExitStatus) -> Vec<Action> {
        self.ev(Event::Exited {
            pid: pid(id),
            status,
            serving: Vec::new(),
        })
    }

    fn ready_count(&self) -> usize {
        self.m
            .workers()
            .iter()
            .filter(|w| w.phase == Phase::Ready)
            .count()
    }
}

fn reload(generation: u64) -> Event {
    Event::Reload {
        generation,
        policy: Box::new(test_policy()),
        workers_changed: false,
    }
}

fn spawned(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn signalled(actions: &[Action], sig: WorkerSignal) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal { id, signal, .. } if *signal == sig => Some(*id),
            _ => None,
        })
        .collect()
}

fn exit_code(actions: &[Action]) -> Option<i32> {
    actions.iter().find_map(|a| match a {
        Action::Exit(code) => Some(*code),
        _ => None,
    })
}

fn boot_error(kind: BootErrorKind) -> WorkerMessage {
    WorkerMessage::BootError {
        kind,
        message: "boom".into(),
        traceback: None,
    }
}

fn started(target: u32) -> H {
    let (mut h, actions) = H::new(target);
    for id in spawned(&actions) {
        h.ready(id);
    }
    assert_eq!(h.ready_count(), target as usize);
    h
}

fn started_with(target: u32, tweak: impl FnOnce(&mut super::policy::Policy)) -> H {
    let mut policy = test_policy();
    policy.target = target;
    tweak(&mut policy);
    let now = Instant::now();
    let mut h = H {
        m: Master::new(policy, now),
        now,
    };
    for id in spawned(&h.ev(Event::Tick)) {
        h.ready(id);
    }
    h
}

/// Drives a replacement to its end: the new worker becomes ready, the old one is retired.
fn complete_replacement(h: &mut H, new: u64, old: u64) {
    let actions = h.ready(new);
    assert_eq!(
        signalled(&actions, WorkerSignal::Term),
        vec![old],
        "old retired only now"
    );
    assert!(
        h.ready_count() >= h.m.target() as usize,
        "capacity never below target"
    );
    h.exit(old, ExitStatus::Code(0));
}

mod failures;
mod liveness;
mod reconcile;
mod recycle;
mod reload;
mod stop;
mod upgrade;
mod zygote;
