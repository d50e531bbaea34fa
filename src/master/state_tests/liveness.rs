//! Liveness: boot timeouts and silent workers are dumped then killed, heartbeats keep workers
//! alive, a stall report is not a heartbeat, and deadlines are judged only on `Tick`.

use super::*;

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
                access_log_dropped: 0,
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
fn deadlines_are_judged_only_on_tick_after_everything_was_read() {
    let mut h = started(2);
    // The master was paused for 40 s: both heartbeats are waiting in the channels.
    h.now += Duration::from_secs(40);
    let actions = h.msg(
        1,
        WorkerMessage::Heartbeat {
            requests: 1,
            in_flight: 0,
            access_log_dropped: 0,
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
            access_log_dropped: 0,
        },
    );
    let actions = h.ev(Event::Tick);
    assert!(
        signalled(&actions, WorkerSignal::Dump).is_empty(),
        "both heartbeats were read"
    );
}
