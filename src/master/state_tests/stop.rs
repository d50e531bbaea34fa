//! Stopping: TERM all then SIGKILL at the deadline, escalation on a second and third request,
//! and the drain before a graceful stop.

use super::*;

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
fn stopping_during_boot_failures_still_exits() {
    let (mut h, _) = H::new(1);
    h.exit(1, ExitStatus::Code(10));
    let actions = h.ev(Event::Stop(StopMode::Graceful));
    assert_eq!(exit_code(&actions), Some(exit::OK));
}

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
