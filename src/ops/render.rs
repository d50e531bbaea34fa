//! `herdsman ctl status` for people: a header about the master, the last worker exit, then one table
//! row per worker. `--json` skips this and prints the master's answer unchanged.

use std::fmt::Write as _;

use super::protocol::{Status, WorkerRow};

/// The whole text, ending in a newline.
pub fn status(s: &Status) -> String {
    let mut out = String::new();
    let m = &s.master;
    let mut flags = String::new();
    for (on, name) in [
        (m.reloading, "reloading"),
        (m.draining, "draining"),
        (m.stopping, "stopping"),
    ] {
        if on {
            let _ = write!(flags, ", {name}");
        }
    }
    let _ = writeln!(
        out,
        "master pid {}, up {}, generation {}, {}/{} workers ready (target {}, /readyz needs {}){flags}",
        m.pid,
        age(m.uptime_seconds),
        m.generation,
        m.ready,
        m.total,
        m.target,
        m.ready_min,
    );
    let _ = writeln!(out, "last worker exit: {}", last_restart(s));
    let _ = writeln!(out);
    let header = [
        "ID",
        "PID",
        "GEN",
        "STATE",
        "AGE",
        "REQUESTS",
        "IN-FLIGHT",
        "MEMORY",
        "LEAVING",
    ];
    let rows: Vec<[String; 9]> = s.workers.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    line(&mut out, &header.map(String::from), &widths);
    for row in &rows {
        line(&mut out, row, &widths);
    }
    out
}

fn last_restart(s: &Status) -> String {
    let Some(last) = &s.last_restart else {
        return "none".into();
    };
    let pid = last.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    let (unplanned, planned): (Vec<_>, Vec<_>) = s
        .restarts
        .iter()
        .partition(|(reason, _)| UNPLANNED.contains(&reason.as_str()));
    let sum = |v: &[(&String, &u64)]| v.iter().map(|(_, n)| **n).sum::<u64>();
    let (failures, replacements) = (sum(&unplanned), sum(&planned));
    format!(
        "worker {}{pid}, {}, {} ago ({failures} unplanned restart{}, {replacements} planned replacement{})",
        last.worker,
        last.reason,
        age(last.seconds_ago),
        if failures == 1 { "" } else { "s" },
        if replacements == 1 { "" } else { "s" },
    )
}

/// Exit reasons nobody asked for; the others (reload, recycling, scale-down, stop) are planned.
const UNPLANNED: [&str; 4] = ["crash", "boot-failure", "boot-timeout", "liveness"];

fn row(w: &WorkerRow) -> [String; 9] {
    let memory = match (w.pss_bytes, w.rss_bytes) {
        (Some(pss), _) => format!("{} pss", size(pss)),
        (None, Some(rss)) => format!("{} rss", size(rss)),
        (None, None) => "-".into(),
    };
    [
        w.id.to_string(),
        w.pid.map_or("-".into(), |p| p.to_string()),
        w.generation.to_string(),
        w.state.clone(),
        age(w.age_seconds),
        w.requests.to_string(),
        w.in_flight.to_string(),
        memory,
        w.leaving.clone().unwrap_or_else(|| "-".into()),
    ]
}

/// Numbers right-aligned, words left-aligned, two spaces apart.
fn line(out: &mut String, cells: &[String; 9], widths: &[usize; 9]) {
    const LEFT: [bool; 9] = [false, false, false, true, false, false, false, true, true];
    let mut text = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let width = widths[i];
        let _ = match LEFT[i] {
            true => write!(text, "{cell:<width$}  "),
            false => write!(text, "{cell:>width$}  "),
        };
    }
    let _ = writeln!(out, "{}", text.trim_end());
}

/// `45s`, `3m05s`, `2h01m`, `3d04h`.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `512B`, `40.2KiB`, `45.1MiB`, `1.5GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::protocol::{LastRestartRow, MasterStatus};

    #[test]
    fn ages_and_sizes_are_short() {
        assert_eq!(age(4.9), "4s");
        assert_eq!(age(185.0), "3m05s");
        assert_eq!(age(7260.0), "2h01m");
        assert_eq!(age(2.0 * 86400.0 + 3600.0), "2d01h");
        assert_eq!(size(512), "512B");
        assert_eq!(size(47_290_000), "45.1MiB");
        assert_eq!(size(3 << 29), "1.5GiB");
    }

    #[test]
    fn status_has_a_header_and_an_aligned_table() {
        let worker = |id, state: &str, leaving: Option<&str>| WorkerRow {
            id,
            pid: Some(4000 + id as i32),
            generation: 1,
            state: state.into(),
            age_seconds: 65.0,
            heartbeat_age_seconds: 0.5,
            requests: 12_345,
            in_flight: 2,
            rss_bytes: Some(40 << 20),
            pss_bytes: None,
            cpu_seconds: Some(1.0),
            leaving: leaving.map(String::from),
        };
        let s = Status {
            master: MasterStatus {
                pid: 42,
                uptime_seconds: 3700.0,
                generation: 1,
                target: 2,
                ready: 1,
                total: 2,
                ready_min: 2,
                reloading: true,
                stopping: false,
                draining: true,
            },
            workers: vec![
                worker(3, "ready", None),
                worker(4, "stopping", Some("reload")),
            ],
            restarts: [("crash".to_string(), 1)].into(),
            last_restart: Some(LastRestartRow {
                worker: 2,
                pid: Some(4002),
                reason: "crash".into(),
                seconds_ago: 12.0,
            }),
        };
        let text = status(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "master pid 42, up 1h01m, generation 1, 1/2 workers ready (target 2, /readyz needs 2), reloading, draining"
        );
        assert_eq!(
            lines[1],
            "last worker exit: worker 2 (pid 4002), crash, 12s ago (1 unplanned restart, 0 planned replacements)"
        );
        assert_eq!(
            lines[3],
            "ID   PID  GEN  STATE       AGE  REQUESTS  IN-FLIGHT  MEMORY       LEAVING"
        );
        assert_eq!(
            lines[5],
            " 4  4004    1  stopping  1m05s     12345          2  40.0MiB rss  reload"
        );
    }
}
