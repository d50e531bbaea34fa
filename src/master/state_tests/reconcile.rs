//! Spawning towards the target, scaling (relative and absolute, never below one) and the
//! `Serving` announcement.

use super::*;

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
fn at_most_max_booting_workers_boot_at_once() {
    let mut policy = test_policy();
    policy.target = 10;
    policy.max_booting = 3;
    let now = Instant::now();
    let mut m = Master::new(policy, now);
    assert_eq!(spawned(&m.on_event(Event::Tick, now)), vec![1, 2, 3]);
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
    assert_eq!(spawned(&actions), vec![4], "one ready, one more boots");
}

#[test]
fn spawning_a_large_pool_is_linear_in_the_workers() {
    // The old loop counted every worker per spawn: 100000 workers took minutes (O(n^2)).
    let mut policy = test_policy();
    policy.target = 100_000;
    policy.max_booting = 100_000;
    let now = Instant::now();
    let mut m = Master::new(policy, now);
    let started = Instant::now();
    let actions = m.on_event(Event::Tick, now);
    assert_eq!(spawned(&actions).len(), 100_000);
    m.on_event(Event::Tick, now);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
