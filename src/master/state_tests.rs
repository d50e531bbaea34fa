//! Unit tests of the supervision state machine, driven with an injected clock. Spawn requests
//! are answered at once with pid 1000 + worker id.

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

#[test]
fn starts_the_target_number_of_workers() {
    let (h, actions) = H::new(3);
    assert_eq!(spawned(&actions), vec![1, 2, 3]);
    assert_eq!(
        h.m.workers().iter().map(|w| w.pid).collect::<Vec<_>>(),
        vec![Some(1001), Some(1002), Some(1003)]
    );
}

#[test]
fn a_crashed_ready_worker_is_replaced_at_once() {
    let mut h = started(2);
    for _ in 0..3 {
        h.advance(Duration::from_secs(2));
        for id in [1, 2] {
            h.msg(
                id,
                WorkerMessage::Heartbeat {
                    requests: 1,
                    in_flight: 0,
                },
            );
        }
    }
    let actions = h.exit(1, KILLED);
    assert_eq!(spawned(&actions), vec![3]);
    assert!(exit_code(&actions).is_none());
}

#[test]
fn reaping_an_unknown_child_changes_nothing() {
    let mut h = started(2);
    let actions = h.ev(Event::Exited {
        pid: 4242,
        status: ExitStatus::Code(0),
    });
    assert!(actions.is_empty());
    assert_eq!(h.ready_count(), 2);
}

#[test]
fn import_failures_at_first_start_back_off_then_give_up_with_app_load() {
    let (mut h, _) = H::new(1);
    h.msg(1, boot_error(BootErrorKind::Import));
    let actions = h.exit(1, ExitStatus::Code(10));
    assert!(spawned(&actions).is_empty(), "backs off before retrying");
    assert_eq!(h.m.next_deadline(), Some(h.now + Duration::from_secs(1)));
    assert!(spawned(&h.advance(Duration::from_millis(999))).is_empty());
    assert_eq!(spawned(&h.advance(Duration::from_millis(1))), vec![2]);
    h.exit(2, ExitStatus::Code(10));
    let actions = h.advance(Duration::from_secs(2));
    assert_eq!(spawned(&actions), vec![3]);
    let actions = h.exit(3, ExitStatus::Code(10));
    assert_eq!(exit_code(&actions), Some(exit::APP_LOAD));
}

#[test]
fn a_missing_dependency_gives_up_at_once() {
    let (mut h, _) = H::new(2);
    h.msg(1, boot_error(BootErrorKind::Dependency));
    let actions = h.exit(1, ExitStatus::Code(11));
    assert_eq!(signalled(&actions, WorkerSignal::Quit), vec![2]);
    assert!(actions.contains(&Action::CloseListeners));
    let actions = h.exit(2, ExitStatus::Code(11));
    assert_eq!(exit_code(&actions), Some(exit::PYTHON_ENV));
}

#[test]
fn an_exec_failure_gives_up_with_python_env() {
    let mut policy = test_policy();
    policy.target = 1;
    let now = Instant::now();
    let mut m = Master::new(policy, now);
    let actions = m.on_event(Event::Tick, now);
    assert_eq!(spawned(&actions), vec![1]);
    let actions = m.on_event(
        Event::SpawnFailed {
            id: 1,
            error: "ENOENT".into(),
            exec_failed: true,
        },
        now,
    );
    assert_eq!(exit_code(&actions), Some(exit::PYTHON_ENV));
}

#[test]
fn lifespan_failure_gives_up_with_worker_boot() {
    let (mut h, _) = H::new(1);
    for id in 1..=3 {
        h.msg(id, boot_error(BootErrorKind::Lifespan));
        let actions = h.exit(id, ExitStatus::Code(12));
        if id == 3 {
            assert_eq!(exit_code(&actions), Some(exit::WORKER_BOOT));
        } else {
            h.advance(Duration::from_secs(60));
        }
    }
}

#[test]
fn a_worker_that_never_becomes_ready_is_dumped_then_killed() {
    let (mut h, _) = H::new(1);
    let actions = h.advance(Duration::from_secs(20));
    assert_eq!(signalled(&actions, WorkerSignal::Dump), vec![1]);
    assert!(
        spawned(&actions).is_empty(),
        "it keeps its place until reaped"
    );
    let actions = h.advance(Duration::from_millis(500));
    assert_eq!(signalled(&actions, WorkerSignal::Kill), vec![1]);
    let actions = h.exit(1, KILLED);
    assert!(spawned(&actions).is_empty(), "a boot timeout backs off too");
    assert_eq!(spawned(&h.advance(Duration::from_secs(1))), vec![2]);
}

#[test]
fn heartbeats_keep_a_worker_alive_and_silence_gets_it_replaced() {
    let mut h = started(1);
    for _ in 0..5 {
        assert!(h.advance(Duration::from_secs(20)).is_empty());
        h.msg(
            1,
            WorkerMessage::Heartbeat {
                requests: 1,
                in_flight: 1,
            },
        );
    }
    let actions = h.advance(Duration::from_secs(30));
    assert_eq!(signalled(&actions, WorkerSignal::Dump), vec![1]);
    assert_eq!(
        spawned(&actions),
        vec![2],
        "the replacement starts at once, without backoff"
    );
    let actions = h.advance(Duration::from_millis(500));
    assert_eq!(signalled(&actions, WorkerSignal::Kill), vec![1]);
    assert!(spawned(&h.exit(1, KILLED)).is_empty());
}

#[test]
fn graceful_stop_terms_everyone_and_exits_when_all_are_reaped() {
    let mut h = started(2);
    let actions = h.ev(Event::Stop(StopMode::Graceful));
    assert_eq!(actions[0], Action::CloseListeners);
    assert_eq!(signalled(&actions, WorkerSignal::Term), vec![1, 2]);
    assert!(
        spawned(&h.exit(1, ExitStatus::Code(0))).is_empty(),
        "no replacement while stopping"
    );
    assert_eq!(exit_code(&h.exit(2, ExitStatus::Code(0))), Some(exit::OK));
}

#[test]
fn graceful_stop_kills_stragglers_at_the_deadline() {
    let mut h = started(1);
    h.ev(Event::Stop(StopMode::Graceful));
    assert!(h.advance(Duration::from_millis(9_999)).is_empty());
    let actions = h.advance(Duration::from_millis(1));
    assert_eq!(signalled(&actions, WorkerSignal::Kill), vec![1]);
    assert_eq!(exit_code(&h.exit(1, KILLED)), Some(exit::OK));
}

#[test]
fn a_second_stop_escalates_and_a_third_kills() {
    let mut h = started(2);
    h.ev(Event::Stop(StopMode::Graceful));
    let actions = h.ev(Event::Stop(StopMode::Graceful));
    assert_eq!(signalled(&actions, WorkerSignal::Quit), vec![1, 2]);
    assert_eq!(h.m.next_deadline(), Some(h.now + Duration::from_secs(5)));
    let actions = h.ev(Event::Stop(StopMode::Quick));
    assert_eq!(signalled(&actions, WorkerSignal::Kill), vec![1, 2]);
}

#[test]
fn reload_replaces_one_at_a_time_and_never_dips_below_target() {
    let mut h = started(3);
    assert_eq!(h.ev(Event::ReloadRequested), vec![Action::LoadConfig]);
    let actions = h.ev(reload(1));
    assert_eq!(spawned(&actions), vec![4], "surge of one");
    assert!(
        signalled(&actions, WorkerSignal::Term).is_empty(),
        "nothing retired before a new one is ready"
    );
    let mut retired = Vec::new();
    let mut next = 4;
    while h
        .m
        .workers()
        .iter()
        .any(|w| w.generation == 0 && w.retiring.is_none())
    {
        let actions = h.ready(next);
        retired.extend(signalled(&actions, WorkerSignal::Term));
        assert!(h.ready_count() >= 3);
        for id in signalled(&actions, WorkerSignal::Term) {
            let actions = h.exit(id, ExitStatus::Code(0));
            if let Some(&id) = spawned(&actions).first() {
                next = id;
            }
        }
    }
    assert_eq!(retired, vec![1, 2, 3], "oldest first");
    assert!(h
        .m
        .workers()
        .iter()
        .all(|w| w.generation == 1 && w.phase == Phase::Ready));
}

#[test]
fn a_reload_whose_workers_fail_rolls_back_without_touching_the_old_ones() {
    let mut h = started(2);
    h.ev(Event::ReloadRequested);
    h.ev(reload(1));
    let mut id = 3;
    let mut all = Vec::new();
    for _ in 0..10 {
        h.msg(id, boot_error(BootErrorKind::Import));
        let actions = h.exit(id, ExitStatus::Code(10));
        all.extend(actions.clone());
        for old in [1, 2] {
            h.msg(
                old,
                WorkerMessage::Heartbeat {
                    requests: 0,
                    in_flight: 0,
                },
            );
        }
        let later = h.advance(Duration::from_secs(10));
        all.extend(later.clone());
        match spawned(&later).first() {
            Some(&next) => id = next,
            None => break,
        }
    }
    assert!(exit_code(&all).is_none(), "the master keeps running");
    assert!(
        signalled(&all, WorkerSignal::Term).is_empty(),
        "old workers untouched"
    );
    assert_eq!(h.ready_count(), 2);
    assert!(h.m.workers().iter().all(|w| w.generation == 0));
    assert_eq!(
        h.ev(Event::ReloadRequested),
        vec![Action::LoadConfig],
        "a later reload works"
    );
}

#[test]
fn reloads_requested_during_a_reload_coalesce_into_one() {
    let mut h = started(1);
    h.ev(Event::ReloadRequested);
    assert!(h.ev(Event::ReloadRequested).is_empty());
    assert!(h.ev(Event::ReloadRequested).is_empty());
    h.ev(reload(1));
    let actions = h.ready(2);
    assert_eq!(signalled(&actions, WorkerSignal::Term), vec![1]);
    assert_eq!(
        actions.iter().filter(|a| **a == Action::LoadConfig).count(),
        1,
        "exactly one more reload"
    );
    assert!(h.exit(1, ExitStatus::Code(0)).is_empty());
}

#[test]
fn scaling_adds_and_retires_the_oldest_never_below_one() {
    let mut h = started(2);
    assert_eq!(spawned(&h.ev(Event::Scale(1))), vec![3]);
    h.ready(3);
    let actions = h.ev(Event::Scale(-1));
    assert_eq!(signalled(&actions, WorkerSignal::Term), vec![1]);
    h.exit(1, ExitStatus::Code(0));
    let actions = h.ev(Event::Scale(-10));
    assert_eq!(signalled(&actions, WorkerSignal::Term), vec![2]);
    assert_eq!(h.m.target(), 1);
}

#[test]
fn set_target_is_absolute_never_below_one_and_ignored_while_stopping() {
    let mut h = started(2);
    assert_eq!(spawned(&h.ev(Event::SetTarget(4))), vec![3, 4]);
    assert_eq!(h.m.target(), 4);
    assert!(
        spawned(&h.ev(Event::SetTarget(4))).is_empty(),
        "same target"
    );
    h.ready(3);
    h.ready(4);
    let actions = h.ev(Event::SetTarget(0));
    assert_eq!(h.m.target(), 1);
    assert_eq!(signalled(&actions, WorkerSignal::Term), vec![1, 2, 3]);
    h.ev(Event::Stop(StopMode::Graceful));
    h.ev(Event::SetTarget(5));
    assert_eq!(h.m.target(), 1, "no scaling while stopping");
}

#[test]
fn stopping_during_boot_failures_still_exits() {
    let (mut h, _) = H::new(1);
    h.exit(1, ExitStatus::Code(10));
    let actions = h.ev(Event::Stop(StopMode::Graceful));
    assert_eq!(exit_code(&actions), Some(exit::OK));
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

#[test]
fn max_requests_recycles_through_the_replacement_path() {
    let mut h = started_with(2, |p| p.recycle.max_requests = Some(100));
    let actions = h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 99,
            in_flight: 0,
        },
    );
    assert!(actions.is_empty());
    let actions = h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 100,
            in_flight: 3,
        },
    );
    assert_eq!(spawned(&actions), vec![3], "the replacement starts first");
    assert!(
        signalled(&actions, WorkerSignal::Term).is_empty(),
        "the old one keeps serving"
    );
    assert_eq!(h.ready_count(), 2);
    complete_replacement(&mut h, 3, 1);
    assert_eq!(h.ready_count(), 2);
}

#[test]
fn recycles_are_one_at_a_time_and_never_dip_below_target() {
    let mut h = started_with(3, |p| p.recycle.max_requests = Some(10));
    let mut spawns = Vec::new();
    for id in 1..=3 {
        spawns.extend(spawned(&h.msg(
            id,
            WorkerMessage::Heartbeat {
                requests: 10,
                in_flight: 0,
            },
        )));
    }
    assert_eq!(spawns, vec![4], "max_surge 1: one replacement at a time");
    complete_replacement(&mut h, 4, 1);
    let next = h.m.workers().iter().map(|w| w.id).max().expect("a worker");
    assert_eq!(
        next, 5,
        "the next replacement started when the first finished"
    );
    complete_replacement(&mut h, 5, 2);
    complete_replacement(&mut h, 6, 3);
    assert_eq!(h.ready_count(), 3);
    assert!(h.m.workers().iter().all(|w| w.id >= 4));
}

#[test]
fn lifetime_recycles_after_becoming_ready() {
    let mut h = started_with(1, |p| {
        p.recycle.max_lifetime = Some(Duration::from_secs(60))
    });
    assert_eq!(
        h.m.next_deadline(),
        Some(h.now + Duration::from_secs(30)),
        "liveness first"
    );
    h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 0,
            in_flight: 0,
        },
    );
    h.advance(Duration::from_secs(29));
    h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 0,
            in_flight: 0,
        },
    );
    h.advance(Duration::from_secs(29));
    h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 0,
            in_flight: 0,
        },
    );
    let actions = h.advance(Duration::from_secs(2));
    assert_eq!(spawned(&actions), vec![2]);
    complete_replacement(&mut h, 2, 1);
}

#[test]
fn memory_recycles_after_three_samples_over_the_limit() {
    let mut h = started_with(2, |p| {
        p.recycle.max_memory = Some(100 << 20);
        p.recycle.memory_interval = Duration::from_secs(5);
    });
    assert_eq!(
        h.m.next_deadline(),
        Some(h.now + Duration::from_secs(5)),
        "the loop wakes for the sample"
    );
    let actions = h.advance(Duration::from_secs(5));
    let Some(Action::MeasureMemory { workers }) = actions.first() else {
        panic!("expected a memory measurement, got {actions:?}");
    };
    assert_eq!(workers, &vec![(1, 1001), (2, 1002)]);
    let over = |h: &mut H, pss: u64| {
        h.ev(Event::Memory {
            samples: vec![(1, Some(pss)), (2, Some(10 << 20))],
        })
    };
    assert!(spawned(&over(&mut h, 200 << 20)).is_empty());
    assert!(
        spawned(&over(&mut h, 50 << 20)).is_empty(),
        "a dip resets the count"
    );
    assert!(spawned(&over(&mut h, 200 << 20)).is_empty());
    assert!(spawned(&over(&mut h, 200 << 20)).is_empty());
    assert_eq!(
        spawned(&over(&mut h, 200 << 20)),
        vec![3],
        "third consecutive sample over"
    );
    complete_replacement(&mut h, 3, 1);
}

#[test]
fn a_stalled_report_is_not_a_heartbeat() {
    let mut h = started(1);
    h.advance(Duration::from_secs(20));
    let stalled = WorkerMessage::Stalled {
        silent: 20.0,
        in_flight: vec![crate::worker::InFlightRequest {
            method: "GET".into(),
            path: "/block".into(),
            age: 20.0,
            blocking: true,
        }],
    };
    assert!(h.msg(1, stalled).is_empty());
    let actions = h.advance(Duration::from_secs(10));
    assert_eq!(
        signalled(&actions, WorkerSignal::Dump),
        vec![1],
        "killed at the liveness timeout all the same"
    );
}

#[test]
fn workers_dying_right_after_ready_back_off_after_the_first() {
    let mut h = started(2);
    let mut delays = Vec::new();
    let mut victim = 1;
    for _ in 0..4 {
        let actions = h.exit(victim, ExitStatus::Code(1));
        let now = h.now;
        let actions = match spawned(&actions).first() {
            Some(_) => actions,
            None => {
                let due = h.m.next_deadline().expect("a retry is scheduled");
                h.advance(due.saturating_duration_since(now))
            }
        };
        delays.push(h.now.saturating_duration_since(now).as_secs());
        victim = spawned(&actions)[0];
        h.ready(victim);
        h.msg(
            2,
            WorkerMessage::Heartbeat {
                requests: 0,
                in_flight: 0,
            },
        );
    }
    assert_eq!(
        delays,
        vec![0, 1, 2, 4],
        "at once, then exponential, though worker 2 is stable"
    );
    assert!(
        !h.m.is_stopping(),
        "the master keeps serving with the others"
    );
}

#[test]
fn quick_sigkills_are_replaced_at_once_up_to_the_worker_count_then_back_off() {
    let mut h = started(2);
    // Both killed together (the OOM killer, F2): both replaced at once.
    assert_eq!(spawned(&h.exit(1, KILLED)), vec![3]);
    assert_eq!(spawned(&h.exit(2, KILLED)), vec![4]);
    h.ready(3);
    h.ready(4);
    // A memory limit too small for even one worker: each replacement is killed right away.
    let actions = h.exit(3, KILLED);
    assert!(
        spawned(&actions).is_empty(),
        "the third quick SIGKILL in a row backs off"
    );
    assert_eq!(h.m.next_deadline(), Some(h.now + Duration::from_secs(1)));
}

#[test]
fn deadlines_are_judged_only_on_tick_after_everything_was_read() {
    let mut h = started(2);
    // The master was paused for 40 s: both heartbeats are waiting in the channels.
    h.now += Duration::from_secs(40);
    let actions = h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 1,
            in_flight: 0,
        },
    );
    assert!(
        signalled(&actions, WorkerSignal::Dump).is_empty(),
        "worker 2's heartbeat is still unread"
    );
    h.msg(
        2,
        WorkerMessage::Heartbeat {
            requests: 1,
            in_flight: 0,
        },
    );
    let actions = h.ev(Event::Tick);
    assert!(
        signalled(&actions, WorkerSignal::Dump).is_empty(),
        "both heartbeats were read"
    );
}

#[test]
fn a_worker_retired_before_its_pid_is_known_is_signalled_once_it_is() {
    let mut policy = test_policy();
    policy.target = 1;
    let now = Instant::now();
    let mut m = Master::new(policy, now);
    m.on_event(Event::Tick, now);
    m.on_event(Event::Spawned { id: 1, pid: 1001 }, now);
    m.on_event(
        Event::Message {
            id: 1,
            message: WorkerMessage::Ready {
                interface: "asgi".into(),
            },
        },
        now,
    );
    // TTIN then TTOU in one wakeup, the spawn answer arriving after the TTOU.
    assert_eq!(spawned(&m.on_event(Event::Scale(1), now)), vec![2]);
    let actions = m.on_event(Event::Scale(-1), now);
    assert!(
        signalled(&actions, WorkerSignal::Term).is_empty(),
        "no pid to signal yet"
    );
    let actions = m.on_event(Event::Spawned { id: 2, pid: 1002 }, now);
    assert_eq!(signalled(&actions, WorkerSignal::Term), vec![2]);
}

#[test]
fn a_worker_with_a_request_limit_is_told_it_when_ready() {
    let mut policy = test_policy();
    policy.target = 1;
    policy.recycle.max_requests = Some(100);
    let now = Instant::now();
    let mut m = Master::new(policy, now);
    m.on_event(Event::Tick, now);
    m.on_event(Event::Spawned { id: 1, pid: 1001 }, now);
    let ready = WorkerMessage::Ready {
        interface: "asgi".into(),
    };
    let actions = m.on_event(
        Event::Message {
            id: 1,
            message: ready,
        },
        now,
    );
    assert_eq!(
        actions,
        vec![
            Action::SendToWorker {
                id: 1,
                line: "{\"type\":\"report_at\",\"requests\":100}".into()
            },
            Action::Serving
        ]
    );
}

// ---- drain before stop ----------------------------------------------------------------------

/// Two ready workers under a policy with `drain_before_stop = drain`.
fn started_with_drain(drain: Duration) -> H {
    let mut policy = test_policy();
    policy.drain_before_stop = drain;
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

#[test]
fn serving_is_announced_once() {
    let (mut h, actions) = H::new(2);
    assert!(!actions.contains(&Action::Serving));
    assert!(
        !h.ready(1).contains(&Action::Serving),
        "one of two is not all"
    );
    assert!(h.ready(2).contains(&Action::Serving));
    h.exit(1, ExitStatus::Code(1));
    assert!(!h.ready(3).contains(&Action::Serving), "said once only");
}

#[test]
fn a_graceful_stop_drains_first_then_stops_at_the_deadline() {
    let mut h = started_with_drain(Duration::from_secs(5));
    let actions = h.ev(Event::Stop(StopMode::Graceful));
    assert!(actions.is_empty(), "nothing stops yet: {actions:?}");
    assert!(h.m.is_draining() && !h.m.is_stopping());
    assert!(
        h.m.snapshot(h.now).stopping,
        "/readyz must see it as stopping"
    );
    assert_eq!(h.m.next_deadline(), Some(h.now + Duration::from_secs(5)));
    // Workers are still replaced while draining; reloads and scaling are not taken.
    assert_eq!(spawned(&h.exit(1, ExitStatus::Code(1))), vec![3]);
    assert!(h.ev(Event::ReloadRequested).is_empty());
    assert!(h.ev(Event::Scale(1)).is_empty());
    assert!(h.advance(Duration::from_millis(4_999)).is_empty());
    let actions = h.advance(Duration::from_millis(1));
    assert_eq!(actions[0], Action::CloseListeners);
    assert_eq!(signalled(&actions, WorkerSignal::Term), vec![2, 3]);
    assert!(!h.m.is_draining() && h.m.is_stopping());
    h.exit(2, ExitStatus::Code(0));
    assert_eq!(exit_code(&h.exit(3, ExitStatus::Code(0))), Some(exit::OK));
}

#[test]
fn a_second_stop_request_ends_the_drain_at_once() {
    let mut h = started_with_drain(Duration::from_secs(60));
    h.ev(Event::Stop(StopMode::Graceful));
    let actions = h.ev(Event::Stop(StopMode::Graceful));
    assert_eq!(signalled(&actions, WorkerSignal::Term), vec![1, 2]);
    assert!(!h.m.is_draining());
    let mut h = started_with_drain(Duration::from_secs(60));
    h.ev(Event::Stop(StopMode::Graceful));
    let actions = h.ev(Event::Stop(StopMode::Quick));
    assert_eq!(signalled(&actions, WorkerSignal::Quit), vec![1, 2]);
}

#[test]
fn quick_stops_and_masters_that_never_served_do_not_drain() {
    let mut h = started_with_drain(Duration::from_secs(60));
    let actions = h.ev(Event::Stop(StopMode::Quick));
    assert_eq!(signalled(&actions, WorkerSignal::Quit), vec![1, 2]);
    let mut policy = test_policy();
    policy.drain_before_stop = Duration::from_secs(60);
    let now = Instant::now();
    let mut h = H {
        m: Master::new(policy, now),
        now,
    };
    h.ev(Event::Tick);
    let actions = h.ev(Event::Stop(StopMode::Graceful));
    assert_eq!(
        signalled(&actions, WorkerSignal::Term),
        vec![1, 2],
        "booting: stop at once"
    );
}

// ---- in-place upgrade: adoption ---------------------------------------------------------

fn adopted(id: u64, phase: super::state::AdoptedPhase) -> super::state::Adopted {
    super::state::Adopted {
        id,
        pid: pid(id),
        generation: 4,
        phase,
        age: Duration::from_secs(60),
        ready_for: Some(Duration::from_secs(59)),
        requests: 10,
        timeout: Duration::from_secs(30),
    }
}

/// A new image that adopted workers 7 and 8 (ready, generation 4) and worker 6 (retiring).
fn adopted_master() -> H {
    use super::state::AdoptedPhase;
    use super::workers::Reason;
    let now = Instant::now();
    let workers = vec![
        adopted(
            6,
            AdoptedPhase::Stopping {
                reason: Reason::ScaleDown,
                kill_in: Duration::from_secs(3),
            },
        ),
        adopted(7, AdoptedPhase::Ready),
        adopted(8, AdoptedPhase::Ready),
    ];
    let m = Master::adopt(test_policy(), 4, 9, Duration::from_secs(600), workers, now);
    H { m, now }
}

#[test]
fn adopted_workers_serve_as_they_were_and_nothing_starts_before_the_rollout() {
    let mut h = adopted_master();
    assert!(h.ev(Event::Tick).is_empty(), "the target is met: no spawn");
    assert_eq!(h.ready_count(), 2);
    assert_eq!(h.m.generation(), 4);
    assert_eq!(h.m.next_worker_id(), 9);
    assert_eq!(h.m.upgrade_blocker(), None, "serving: may upgrade again");
    assert!(h.m.uptime(h.now) >= Duration::from_secs(600));
    // The retiring one keeps its deadline: killed when it passes.
    let actions = h.advance(Duration::from_secs(3));
    assert_eq!(signalled(&actions, WorkerSignal::Kill), vec![6]);
    // Heartbeats are judged from the adoption, by each worker's own timeout.
    let actions = h.advance(Duration::from_secs(26));
    assert!(signalled(&actions, WorkerSignal::Dump).is_empty());
    let actions = h.advance(Duration::from_secs(2));
    assert_eq!(signalled(&actions, WorkerSignal::Dump), vec![7, 8]);
}

#[test]
fn the_rollout_after_adoption_replaces_the_adopted_workers_one_at_a_time() {
    let mut h = adopted_master();
    let actions = h.ev(reload(5));
    assert_eq!(spawned(&actions), vec![9], "new ids continue, surge of one");
    assert!(h.m.upgrade_blocker().is_some(), "rolling out");
    let actions = h.ready(9);
    assert_eq!(
        signalled(&actions, WorkerSignal::Term),
        vec![7],
        "oldest first"
    );
    let actions = h.exit(7, ExitStatus::Code(0));
    assert_eq!(spawned(&actions), vec![10]);
    let actions = h.ready(10);
    assert_eq!(signalled(&actions, WorkerSignal::Term), vec![8]);
    assert!(
        actions.contains(&Action::Reloaded { generation: 5 }),
        "{actions:?}"
    );
}

#[test]
fn a_failed_rollout_after_adoption_keeps_the_adopted_workers() {
    let mut h = adopted_master();
    h.exit(6, ExitStatus::Code(0));
    h.ev(reload(5));
    let mut id = 9;
    let mut all = Vec::new();
    for _ in 0..10 {
        h.msg(id, boot_error(BootErrorKind::Import));
        all.extend(h.exit(id, ExitStatus::Code(10)));
        for old in [7, 8] {
            let beat = WorkerMessage::Heartbeat {
                requests: 0,
                in_flight: 0,
            };
            h.msg(old, beat);
        }
        let later = h.advance(Duration::from_secs(10));
        all.extend(later.clone());
        match spawned(&later).first() {
            Some(&next) => id = next,
            None => break,
        }
    }
    assert!(
        exit_code(&all).is_none(),
        "an adopted master never gives up"
    );
    assert!(
        all.iter().any(|a| matches!(a, Action::ReloadFailed { .. })),
        "{all:?}"
    );
    assert!(
        signalled(&all, WorkerSignal::Term).is_empty(),
        "adopted ones untouched"
    );
    assert_eq!(h.ready_count(), 2);
    assert_eq!(h.m.generation(), 4, "back to the adopted generation");
    assert_eq!(h.m.upgrade_blocker(), None);
    // An adopted worker that dies now is replaced from the adopted generation.
    let actions = h.exit(7, ExitStatus::Code(1));
    assert_eq!(spawned(&actions).len(), 1);
    let id = spawned(&actions)[0];
    let generation =
        h.m.workers()
            .iter()
            .find(|w| w.id == id)
            .map(|w| w.generation);
    assert_eq!(generation, Some(4));
}

#[test]
fn an_upgrade_waits_for_a_quiet_master() {
    let (mut h, actions) = H::new(2);
    assert_eq!(
        h.m.upgrade_blocker(),
        Some("the master is still starting its workers")
    );
    for id in spawned(&actions) {
        h.ready(id);
    }
    assert_eq!(h.m.upgrade_blocker(), None);
    h.ev(Event::ReloadRequested);
    assert_eq!(h.m.upgrade_blocker(), Some("a reload is in progress"));
    let mut h = started(1);
    h.ev(Event::Stop(StopMode::Graceful));
    assert_eq!(h.m.upgrade_blocker(), Some("the master is stopping"));
}

mod zygote;
