//! Exits and boot failures: crashes replaced at once, boot failures backing off then giving up
//! at first start with the exit code that says why, deaths right after ready counted as failed
//! boots (outside SIGKILLs apart).

use super::*;

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
                    access_log_dropped: 0,
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
                access_log_dropped: 0,
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
