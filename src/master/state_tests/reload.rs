//! Reloads: one worker at a time without dipping below the target, the rollback of a reload
//! whose workers fail, and reload requests coalescing.

use super::*;

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
                    access_log_dropped: 0,
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
