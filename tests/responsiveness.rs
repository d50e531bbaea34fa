//! The master loop answers at once (issue 13): every child that exited is reaped in the wakeup
//! that noticed the first one, and the request counts the workers report are the ones served.
//! Both are cases a hand mutation of the master once slipped past the suite with: reaping one
//! child per wakeup, a worker reporting `requests=0`. Each test observes events (log records,
//! `ctl status` answers), never a fixed sleep.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::http::get;
use common::{both_engines, field_i64, record_time, run_to_end, signal, Engine, Herdsman, Start};
use serde_json::Value;

const READY: &str = "worker ready";
const KILLED: &str = "worker was killed by SIGKILL";

fn pid_of(record: &Value) -> Option<i32> {
    field_i64(record, "pid").map(|p| p as i32)
}

fn control_socket(h: &Herdsman) -> PathBuf {
    let record = h.wait_record("control socket ready", |_| true);
    PathBuf::from(record["path"].as_str().expect("path field"))
}

/// `herdsman ctl --socket SOCKET status --json`, parsed.
fn status(socket: &Path) -> Value {
    let socket = socket.to_str().expect("UTF-8 path");
    let (code, out, err) = run_to_end(&["ctl", "--socket", socket, "status", "--json"], &[]);
    assert_eq!(code, Some(0), "ctl status failed: {out:?} / {err:?}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

/// Every worker of a master SIGKILLed in one go, while the master is otherwise idle (ready
/// workers send a heartbeat every few seconds at most): the SIGCHLDs coalesce into one
/// wakeup, and that wakeup must reap them all. A master that reaps one child per wakeup only
/// finds the next death when something else wakes it, here the first replacement's messages
/// (its `hello`, its `ready`), so a death would be logged after a replacement got ready.
#[test]
fn every_worker_killed_at_once_is_reaped_in_the_same_wakeup() {
    const N: usize = 4;
    let n = N.to_string();
    let h = Herdsman::start(&["-w", &n, "asgi_app:app"]);
    let old = h.wait_serving();
    assert_eq!(old.len(), N, "{old:?}");

    for &pid in &old {
        signal(pid, libc::SIGKILL);
    }
    let deaths = h.wait_records(KILLED, N);
    let mut reported: Vec<i32> = deaths.iter().filter_map(pid_of).collect();
    reported.sort_unstable();
    let mut expected = old.clone();
    expected.sort_unstable();
    assert_eq!(reported, expected, "each killed worker reported once");

    let fresh = |r: &Value| pid_of(r).is_some_and(|p| !old.contains(&p));
    let lines = h
        .log
        .wait_for("N replacements ready", common::WAIT, |lines| {
            let ready = common::records_with(lines, READY);
            (ready.iter().filter(|r| fresh(r)).count() >= N).then(|| lines.to_vec())
        });
    // In log order: the position of the last death and of the first replacement's ready.
    let records: Vec<Value> = lines
        .iter()
        .filter_map(|l| common::parse_record(l))
        .collect();
    let starts = |r: &Value, prefix: &str| common::message(r).starts_with(prefix);
    let last_death = records
        .iter()
        .rposition(|r| starts(r, KILLED))
        .expect("deaths logged");
    let first_ready = records
        .iter()
        .position(|r| starts(r, READY) && fresh(r))
        .expect("replacements logged");
    let times: Vec<_> = deaths.iter().map(record_time).collect();
    let (first, last) = (times.iter().min().unwrap(), times.iter().max().unwrap());
    let spread = last.duration_since(*first).unwrap_or_default();
    eprintln!("{N} deaths logged within {spread:?}");
    assert!(
        last_death < first_ready,
        "a death was only reaped after a replacement got ready (one child reaped per wakeup?)"
    );
    assert!(
        spread < Duration::from_millis(500),
        "the deaths of workers killed together were logged {spread:?} apart"
    );
    assert!(h.finish().success());
}

both_engines! {
    /// The request counts a worker reports (heartbeats, `ctl status`, /metrics) are the
    /// requests it answered: N requests to the one worker show as N, within a heartbeat.
    fn the_worker_reports_the_requests_it_served(engine: Engine) {
        const N: u64 = 7;
        let app = match engine {
            Engine::Uvicorn => "asgi_app:app",
            Engine::Native => "wsgi_app:app",
        };
        let h = Start::new(&["-w", "1", app]).engine(engine).spawn();
        let socket = control_socket(&h);
        let pids = h.wait_serving();
        assert_eq!(pids.len(), 1, "{pids:?}");
        let addr = h.addr();
        for _ in 0..N {
            let resp = get(addr, "/").expect("GET /");
            assert_eq!(resp.status, 200, "{resp:?}");
        }
        // At most one heartbeat interval (about a second at the default timeout) away.
        let deadline = Instant::now() + Duration::from_secs(10);
        let counted = loop {
            let status = status(&socket);
            let requests = status["workers"][0]["requests"].as_u64();
            if requests >= Some(N) || Instant::now() >= deadline {
                break requests;
            }
            // Polled: the count arrives with the worker's next heartbeat, an event the
            // master does not log.
            std::thread::park_timeout(Duration::from_millis(100));
        };
        assert_eq!(counted, Some(N), "the worker served {N} requests but reports {counted:?}");
        assert!(h.finish().success());
    }
}
