//! Recycling by requests, lifetime and memory, always through the one replacement path.

use super::*;

#[test]
fn max_requests_recycles_through_the_replacement_path() {
    let mut h = started_with(2, |p| p.recycle.max_requests = Some(100));
    let actions = h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 99,
            in_flight: 0,
            access_log_dropped: 0,
        },
    );
    assert!(actions.is_empty());
    let actions = h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 100,
            in_flight: 3,
            access_log_dropped: 0,
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
                access_log_dropped: 0,
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
            access_log_dropped: 0,
        },
    );
    h.advance(Duration::from_secs(29));
    h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 0,
            in_flight: 0,
            access_log_dropped: 0,
        },
    );
    h.advance(Duration::from_secs(29));
    h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 0,
            in_flight: 0,
            access_log_dropped: 0,
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
