//! Exits and boot failures: crashes of workers that served replaced at once (within the spawn
//! rate bound, one replacement always booting), boot failures backing off then giving up at
//! first start with the exit code that says why.

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
        serving: Vec::new(),
    });
    assert!(actions.is_empty());
    assert_eq!(h.ready_count(), 2);
}

#[test]
fn workers_that_served_and_die_are_replaced_at_once_never_pausing_the_server() {
    // A query of death: every 100 ms the worker that got the deadly request exits 0 right after
    // becoming ready. Each is replaced at once (no exponential pause), and the server never
    // stops trying.
    let mut h = started(2);
    let mut victim = 1;
    for round in 0..20 {
        h.advance(Duration::from_millis(100));
        let actions = h.exit(victim, ExitStatus::Code(0));
        let new = spawned(&actions);
        assert_eq!(new.len(), 1, "round {round}: replaced at once: {actions:?}");
        victim = new[0];
        h.ready(victim);
    }
    assert_eq!(
        h.ready_count(),
        2,
        "full capacity at once after the last death"
    );
    assert!(!h.m.is_stopping());
}

#[test]
fn three_operator_kills_a_second_apart_are_each_replaced_at_once() {
    let mut h = started(2);
    let mut victim = 1;
    for _ in 0..3 {
        h.advance(Duration::from_secs(1));
        let new = spawned(&h.exit(victim, KILLED));
        assert_eq!(new.len(), 1, "replaced at once");
        h.ready(new[0]);
        victim = new[0];
    }
}

#[test]
fn a_crash_storm_is_held_to_the_spawn_rate_but_one_replacement_always_boots() {
    // Target 2: a bucket of 10 spawns, refilled at 10 per second.
    let mut h = started(2);
    let mut pool = vec![1, 2];
    for round in 0..5 {
        // The whole pool dies at one instant: both replaced at once while tokens last.
        let mut new = Vec::new();
        for &id in &pool {
            new.extend(spawned(&h.exit(id, ExitStatus::Code(0))));
        }
        assert_eq!(new.len(), 2, "round {round}");
        for &id in &new {
            h.ready(id);
        }
        pool = new;
    }
    // The bucket is empty: one replacement boots (never none), the other waits for a token.
    let first = spawned(&h.exit(pool[0], ExitStatus::Code(0)));
    let second = spawned(&h.exit(pool[1], ExitStatus::Code(0)));
    assert_eq!((first.len(), second.len()), (1, 0));
    assert_eq!(
        h.m.next_deadline(),
        Some(h.now + Duration::from_millis(100))
    );
    assert_eq!(spawned(&h.advance(Duration::from_millis(100))).len(), 1);
}

#[test]
fn boot_failures_of_workers_that_never_got_ready_still_back_off() {
    let mut h = started(2);
    let new = spawned(&h.exit(1, ExitStatus::Code(1)));
    assert_eq!(
        new,
        vec![3],
        "a crash of a serving worker: replaced at once"
    );
    // Its replacement fails to boot: back off, though worker 2 serves.
    let actions = h.exit(3, ExitStatus::Code(1));
    assert!(spawned(&actions).is_empty());
    assert_eq!(h.m.next_deadline(), Some(h.now + Duration::from_secs(1)));
}

#[test]
fn a_request_that_kills_three_workers_is_quarantined_then_lifted() {
    let mut h = started(2);
    let die = || vec!["GET /die".to_string()];
    let mut victim = 1;
    let mut quarantines = Vec::new();
    for _ in 0..3 {
        h.advance(Duration::from_millis(100));
        let actions = h.ev(Event::Exited {
            pid: pid(victim),
            status: ExitStatus::Code(0),
            serving: die(),
        });
        quarantines.extend(actions.iter().filter_map(|a| match a {
            Action::Quarantine { requests } => Some(requests.clone()),
            _ => None,
        }));
        victim = spawned(&actions)[0];
        h.ready(victim);
    }
    assert_eq!(quarantines, vec![die()], "quarantined at the third death");
    // A death serving several requests names no single culprit: it does not count.
    assert_eq!(
        h.m.next_deadline()
            .map(|d| d > h.now + Duration::from_secs(29)),
        Some(true)
    );
    let actions = h.advance(Duration::from_secs(60));
    assert!(actions.contains(&Action::Quarantine { requests: vec![] }));
}
