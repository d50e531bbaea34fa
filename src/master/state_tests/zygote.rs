//! What the state machine learns from the zygote spawner: a spawn that ends without a worker
//! because its zygote failed to boot counts like the worker's own boot failure, and a reload
//! whose zygote cannot import the new code fails before any worker of it exists.

use super::*;
use crate::master::exits::Failure;

fn import_failure() -> Failure {
    Failure::Reported {
        kind: BootErrorKind::Import,
        message: "cannot import app".into(),
    }
}

#[test]
fn a_zygote_import_failure_at_first_start_gives_up_like_a_worker_import_failure() {
    let (mut h, actions) = H::new(1);
    assert_eq!(spawned(&actions), vec![1]);
    let actions = h.ev(Event::SpawnAborted {
        id: 1,
        failure: import_failure(),
    });
    assert!(spawned(&actions).is_empty(), "backs off before retrying");
    assert!(h.m.workers().is_empty(), "the record is gone");
    assert_eq!(spawned(&h.advance(Duration::from_secs(1))), vec![2]);
    h.ev(Event::SpawnAborted {
        id: 2,
        failure: import_failure(),
    });
    assert_eq!(spawned(&h.advance(Duration::from_secs(2))), vec![3]);
    let actions = h.ev(Event::SpawnAborted {
        id: 3,
        failure: import_failure(),
    });
    assert_eq!(exit_code(&actions), Some(exit::APP_LOAD));
}

#[test]
fn a_reload_that_cannot_start_keeps_the_workers_and_reports_the_failure() {
    let mut h = started(2);
    assert_eq!(h.ev(Event::ReloadRequested), vec![Action::LoadConfig]);
    assert!(
        h.ev(Event::ReloadRequested).is_empty(),
        "coalesced behind it"
    );
    let actions = h.ev(Event::ReloadCannotStart {
        reason: "the new code does not import".into(),
    });
    assert!(actions.contains(&Action::ReloadFailed {
        reason: "the new code does not import".into()
    }));
    assert!(signalled(&actions, WorkerSignal::Term).is_empty());
    assert!(spawned(&actions).is_empty());
    assert_eq!(
        actions.iter().filter(|a| **a == Action::LoadConfig).count(),
        1,
        "the reload requested meanwhile follows"
    );
    assert_eq!(h.m.generation(), 0);
    assert_eq!(h.ready_count(), 2);
    assert_eq!(h.m.snapshot(h.now).reload_failures, 1);
}

#[test]
fn a_reload_that_cannot_start_during_a_stop_changes_nothing() {
    let mut h = started(1);
    h.ev(Event::ReloadRequested);
    h.ev(Event::Stop(StopMode::Graceful));
    let actions = h.ev(Event::ReloadCannotStart { reason: "x".into() });
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::ReloadFailed { .. } | Action::LoadConfig)));
}
