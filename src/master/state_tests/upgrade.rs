//! In-place upgrade: workers adopted by the new image serve as they were, the rollout after
//! adoption replaces them like a reload (and keeps them if it fails), and an upgrade waits for
//! a quiet master.

use super::*;

fn adopted(id: u64, phase: crate::master::state::AdoptedPhase) -> crate::master::state::Adopted {
    crate::master::state::Adopted {
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
    use crate::master::state::AdoptedPhase;
    use crate::master::workers::Reason;
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
                access_log_dropped: 0,
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
