//! The `status` answer, made from the master's [`Snapshot`] plus what /proc says about each
//! worker right now (RSS, CPU time), so `herdsman ctl status` needs no access to the workers.

use std::collections::BTreeMap;

use super::exchange::{Snapshot, WorkerId};
use super::health;
use super::metrics::ProcSample;
use super::protocol::{LastRestartRow, MasterStatus, Status, WorkerRow};
use crate::config::ReadyMin;

/// /proc readings for every worker that has a pid.
pub fn samples(s: &Snapshot) -> BTreeMap<WorkerId, ProcSample> {
    s.workers
        .iter()
        .filter_map(|w| Some((w.id, ProcSample::read(w.pid?))))
        .collect()
}

pub fn build(
    s: &Snapshot,
    samples: &BTreeMap<WorkerId, ProcSample>,
    ready_min: ReadyMin,
    draining: bool,
) -> Status {
    let master = MasterStatus {
        pid: std::process::id(),
        uptime_seconds: s.uptime.as_secs_f64(),
        generation: s.generation,
        target: s.target,
        ready: s.ready(),
        total: s.workers.len(),
        ready_min: health::needed(ready_min, s.target),
        reloading: s.reloading,
        stopping: s.stopping,
        draining,
    };
    let workers = s
        .workers
        .iter()
        .map(|w| {
            let sample = samples.get(&w.id).copied().unwrap_or_default();
            WorkerRow {
                id: w.id,
                pid: w.pid,
                generation: w.generation,
                state: w.state.to_string(),
                age_seconds: w.age.as_secs_f64(),
                heartbeat_age_seconds: w.heartbeat_age.as_secs_f64(),
                requests: w.requests,
                in_flight: w.in_flight,
                rss_bytes: sample.rss_bytes,
                pss_bytes: w.pss,
                cpu_seconds: sample.cpu_seconds,
                leaving: w.leaving.map(str::to_string),
            }
        })
        .collect();
    Status {
        master,
        workers,
        restarts: s
            .restarts
            .iter()
            .map(|(reason, n)| (reason.to_string(), *n))
            .collect(),
        last_restart: s.last_restart.as_ref().map(|r| LastRestartRow {
            worker: r.worker,
            pid: r.pid,
            reason: r.reason.to_string(),
            seconds_ago: r.ago.as_secs_f64(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exchange::LastRestart;
    use crate::ops::testutil::snapshot;
    use std::time::Duration;

    #[test]
    fn status_carries_the_snapshot_and_proc_readings() {
        let mut s = snapshot(2, &["ready", "booting"]);
        s.restarts.insert("crash", 1);
        s.last_restart = Some(LastRestart {
            worker: 7,
            pid: Some(77),
            reason: "crash",
            ago: Duration::from_secs(3),
        });
        let samples = BTreeMap::from([(
            1,
            ProcSample {
                rss_bytes: Some(10),
                cpu_seconds: Some(1.5),
            },
        )]);
        let status = build(&s, &samples, ReadyMin::All, true);
        assert_eq!(status.master.ready, 1);
        assert_eq!(status.master.total, 2);
        assert_eq!(status.master.ready_min, 2);
        assert!(status.master.draining);
        assert_eq!(status.workers[0].rss_bytes, Some(10));
        assert_eq!(status.workers[1].rss_bytes, None);
        assert_eq!(status.workers[1].state, "booting");
        assert_eq!(status.restarts["crash"], 1);
        let last = status.last_restart.clone().expect("last restart");
        assert_eq!((last.worker, last.reason.as_str()), (7, "crash"));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["workers"][0]["cpu_seconds"], 1.5);
    }
}
