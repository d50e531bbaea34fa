//! `/metrics`: the master's picture ([`Snapshot`]) in the Prometheus text exposition format
//! (version 0.0.4): each family once, `# HELP` then `# TYPE` then its samples; names
//! `herdsman_...`; counters end in `_total`; label values escaped (`\\`, `\"`, `\n`).
//!
//! Families with a fixed label set (workers by state, restarts by reason) list every value from
//! the start, zeros included, so that `rate()` and alerts work before the first event. Per-worker
//! RSS and CPU time are read from /proc at scrape time by the caller ([`ProcSample`]), not kept.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::exchange::{Snapshot, WorkerId};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Worker states, as [`super::WorkerStatus::state`] names them.
const STATES: [&str; 6] = [
    "booting",
    "ready",
    "recycling",
    "dumping",
    "stopping",
    "killed",
];

/// What /proc says about one worker at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    pub rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
}

impl ProcSample {
    pub fn read(pid: i32) -> ProcSample {
        ProcSample {
            rss_bytes: crate::sys::proc::rss_bytes(pid),
            cpu_seconds: crate::sys::proc::cpu_seconds(pid),
        }
    }
}

/// Counters the operations layer keeps itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpsCounters {
    /// Reloads refused because the new configuration was invalid.
    pub reloads_refused: u64,
    /// Connections closed for lack of room, by listener.
    pub shed_control: u64,
    pub shed_admin: u64,
}

/// Everything `render` needs besides the snapshot.
pub struct Extra<'a> {
    pub samples: &'a BTreeMap<WorkerId, ProcSample>,
    pub counters: OpsCounters,
    pub ready: bool,
    pub draining: bool,
}

/// The whole exposition.
pub fn render(s: &Snapshot, extra: &Extra<'_>) -> String {
    let mut out = Out(String::with_capacity(4096));
    master(&mut out, s, extra);
    restarts(&mut out, s);
    durations(&mut out, s, extra.counters);
    workers(&mut out, s, extra.samples);
    out.family(
        "herdsman_ops_connections_shed_total",
        "counter",
        "Connections to the control socket or the admin listener closed for lack of room.",
    );
    let shed = [
        ("control", extra.counters.shed_control),
        ("admin", extra.counters.shed_admin),
    ];
    for (listener, count) in shed {
        out.sample(
            "herdsman_ops_connections_shed_total",
            &[("listener", listener)],
            count as f64,
        );
    }
    out.0
}

fn master(out: &mut Out, s: &Snapshot, extra: &Extra<'_>) {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let gauges = [
        (
            "herdsman_master_uptime_seconds",
            "Seconds since the master started.",
            s.uptime.as_secs_f64(),
        ),
        (
            "herdsman_generation",
            "Configuration generation new workers start from (0 at start, one more per reload).",
            s.generation as f64,
        ),
        (
            "herdsman_workers_target",
            "Target number of workers.",
            f64::from(s.target),
        ),
        (
            "herdsman_workers_ready",
            "Workers serving now.",
            s.ready() as f64,
        ),
        (
            "herdsman_ready",
            "1 when /readyz answers 200.",
            flag(extra.ready),
        ),
        (
            "herdsman_draining",
            "1 while drained by an operator (herdsman ctl drain).",
            flag(extra.draining),
        ),
        (
            "herdsman_reloading",
            "1 while a reload is in progress.",
            flag(s.reloading),
        ),
        (
            "herdsman_stopping",
            "1 while the master is stopping.",
            flag(s.stopping),
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    }
    out.family("herdsman_workers", "gauge", "Workers by state.");
    for state in STATES {
        let n = s.workers.iter().filter(|w| w.state == state).count();
        out.sample("herdsman_workers", &[("state", state)], n as f64);
    }
}

fn restarts(out: &mut Out, s: &Snapshot) {
    let name = "herdsman_worker_restarts_total";
    out.family(name, "counter", "Worker exits by reason.");
    for &reason in &s.restart_reasons {
        let n = s.restarts.get(reason).copied().unwrap_or(0);
        out.sample(name, &[("reason", reason)], n as f64);
    }
    for (reason, n) in &s.restarts {
        if !s.restart_reasons.contains(reason) {
            out.sample(name, &[("reason", *reason)], *n as f64);
        }
    }
}

fn durations(out: &mut Out, s: &Snapshot, counters: OpsCounters) {
    let boot = "herdsman_worker_boot_duration_seconds";
    out.family(
        boot,
        "summary",
        "Time from spawn to ready of workers that became ready.",
    );
    out.sample(&format!("{boot}_sum"), &[], s.boot_seconds_total);
    out.sample(&format!("{boot}_count"), &[], s.boots as f64);
    let reloads = "herdsman_reloads_total";
    out.family(
        reloads,
        "counter",
        "Reloads by result: completed, rolled_back (new workers failed), refused (invalid config).",
    );
    let results = [
        ("completed", s.reloads),
        ("rolled_back", s.reload_failures),
        ("refused", counters.reloads_refused),
    ];
    for (result, n) in results {
        out.sample(reloads, &[("result", result)], n as f64);
    }
    let reload = "herdsman_reload_duration_seconds";
    out.family(reload, "summary", "Duration of completed reloads.");
    out.sample(&format!("{reload}_sum"), &[], s.reload_seconds_total);
    out.sample(&format!("{reload}_count"), &[], s.reloads as f64);
    let dropped = "herdsman_access_log_lines_dropped_total";
    out.family(
        dropped,
        "counter",
        "Access log lines the workers could not write (destination failed or too slow).",
    );
    out.sample(dropped, &[], s.access_log_dropped as f64);
}

/// One family per per-worker figure: (name, type, help, value).
type WorkerFigure = (
    &'static str,
    &'static str,
    &'static str,
    fn(&super::exchange::WorkerStatus, &ProcSample) -> Option<f64>,
);

const WORKER_FIGURES: [WorkerFigure; 7] = [
    (
        "herdsman_worker_age_seconds",
        "gauge",
        "Seconds since the worker was started.",
        |w, _| Some(w.age.as_secs_f64()),
    ),
    (
        "herdsman_worker_heartbeat_age_seconds",
        "gauge",
        "Seconds since the worker's event loop last reported.",
        |w, _| Some(w.heartbeat_age.as_secs_f64()),
    ),
    (
        "herdsman_worker_requests_total",
        "counter",
        "Requests the worker has served, as of its last heartbeat.",
        |w, _| Some(w.requests as f64),
    ),
    (
        "herdsman_worker_requests_in_flight",
        "gauge",
        "Requests in progress in the worker, as of its last heartbeat.",
        |w, _| Some(w.in_flight as f64),
    ),
    (
        "herdsman_worker_resident_memory_bytes",
        "gauge",
        "Resident set size of the worker, read at scrape time.",
        |_, p| p.rss_bytes.map(|b| b as f64),
    ),
    (
        "herdsman_worker_pss_bytes",
        "gauge",
        "Latest proportional set size sample of the worker (only with max_worker_memory).",
        |w, _| w.pss.map(|b| b as f64),
    ),
    (
        "herdsman_worker_cpu_seconds_total",
        "counter",
        "User and system CPU time of the worker, read at scrape time.",
        |_, p| p.cpu_seconds,
    ),
];

fn workers(out: &mut Out, s: &Snapshot, samples: &BTreeMap<WorkerId, ProcSample>) {
    let info = "herdsman_worker_info";
    out.family(
        info,
        "gauge",
        "One per worker, with its pid, generation and state.",
    );
    for w in &s.workers {
        let (id, gen) = (w.id.to_string(), w.generation.to_string());
        let pid = w.pid.map(|p| p.to_string()).unwrap_or_default();
        let labels = [
            ("worker", id.as_str()),
            ("pid", pid.as_str()),
            ("generation", gen.as_str()),
            ("state", w.state),
        ];
        out.sample(info, &labels, 1.0);
    }
    let none = ProcSample::default();
    for (name, kind, help, value) in WORKER_FIGURES {
        out.family(name, kind, help);
        for w in &s.workers {
            let sample = samples.get(&w.id).unwrap_or(&none);
            if let Some(v) = value(w, sample) {
                out.sample(name, &[("worker", &w.id.to_string())], v);
            }
        }
    }
}

/// The exposition being written.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(self.0, "{sep}{key}=\"{}\"", escape_label(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, `NaN`, `+Inf`, `-Inf` as the format spells them.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::snapshot;

    fn rendered() -> String {
        let mut s = snapshot(2, &["ready", "booting"]);
        s.restarts.insert("crash", 2);
        s.workers[0].pss = Some(1 << 20);
        let samples = BTreeMap::from([(
            1,
            ProcSample {
                rss_bytes: Some(4096),
                cpu_seconds: Some(0.25),
            },
        )]);
        let extra = Extra {
            samples: &samples,
            counters: OpsCounters {
                reloads_refused: 1,
                ..Default::default()
            },
            ready: false,
            draining: true,
        };
        render(&s, &extra)
    }

    #[test]
    fn every_family_has_help_and_type_once_before_its_samples() {
        let text = rendered();
        let mut declared: Vec<String> = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name.clone());
                current = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert!(rest.starts_with(&format!("{current} ")), "{line}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with(&current), "{name} outside {current}");
                assert!(name.starts_with("herdsman_"), "{name}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn samples_carry_the_snapshot() {
        let text = rendered();
        for expected in [
            "herdsman_workers{state=\"ready\"} 1\n",
            "herdsman_workers{state=\"booting\"} 1\n",
            "herdsman_workers{state=\"killed\"} 0\n",
            "herdsman_worker_restarts_total{reason=\"crash\"} 2\n",
            "herdsman_worker_restarts_total{reason=\"liveness\"} 0\n",
            "herdsman_reloads_total{result=\"refused\"} 1\n",
            "herdsman_workers_target 2\n",
            "herdsman_ready 0\n",
            "herdsman_draining 1\n",
            "herdsman_worker_resident_memory_bytes{worker=\"1\"} 4096\n",
            "herdsman_worker_cpu_seconds_total{worker=\"1\"} 0.25\n",
            "herdsman_worker_pss_bytes{worker=\"1\"} 1048576\n",
            "herdsman_worker_info{worker=\"2\",pid=\"101\",generation=\"0\",state=\"booting\"} 1\n",
            "herdsman_worker_boot_duration_seconds_count 0\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(
            !text.contains("herdsman_worker_resident_memory_bytes{worker=\"2\"}"),
            "no sample, no line"
        );
    }

    #[test]
    fn label_values_and_numbers_are_escaped_as_the_format_says() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
    }
}
