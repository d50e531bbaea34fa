//! Sizing from the three sources, each read directly (not through
//! `std::thread::available_parallelism`, which already folds affinity and quota together and
//! would make the explanation untrue):
//! - the host's online CPUs (`sysconf(_SC_NPROCESSORS_ONLN)`; `available_parallelism` only if
//!   that fails),
//! - the CPUs in this process's affinity mask (`sched_getaffinity`),
//! - the cgroup CPU quota, rounded up (see [`CgroupQuota::cpus_ceil`]).
//!
//! `workers = max(1, min(affinity, ceil(quota / period)))`, with the host count standing in for
//! an unreadable affinity mask. Nothing here fails: a source that cannot be read is left out and
//! the reason is kept as a [`SizingNote`] that `explain` prints.

use std::path::Path;

use nix::sched::{sched_getaffinity, CpuSet};
use nix::unistd::{sysconf, Pid, SysconfVar};

use super::cgroup::find_quota;
use super::types::{CgroupQuota, SizingNote};

/// How many workers `auto` gives, and where the number came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizing {
    pub workers: u32,
    /// Online CPUs of the host.
    pub host_cpus: usize,
    /// CPUs this process may run on; `None` if the mask could not be read.
    pub affinity_cpus: Option<usize>,
    /// The strictest cgroup CPU quota; `None` if unlimited or unknown.
    pub cgroup_quota: Option<CgroupQuota>,
    /// Sources that could not be read, and why.
    pub notes: Vec<SizingNote>,
}

/// Sizes the worker pool for this process. Never fails.
pub fn detect() -> Sizing {
    let mut notes = Vec::new();
    let host_cpus = host_cpus(&mut notes);
    let affinity_cpus = affinity_cpus(&mut notes);
    let read = |path: &Path| std::fs::read_to_string(path);
    let cgroup_quota = find_quota(&read, &mut notes);
    Sizing::from_sources(host_cpus, affinity_cpus, cgroup_quota, notes)
}

impl Sizing {
    /// Combines the sources: `max(1, min(affinity or host, ceil(quota)))`.
    pub(crate) fn from_sources(
        host_cpus: usize,
        affinity_cpus: Option<usize>,
        cgroup_quota: Option<CgroupQuota>,
        notes: Vec<SizingNote>,
    ) -> Sizing {
        let usable = u64::try_from(affinity_cpus.unwrap_or(host_cpus)).unwrap_or(u64::MAX);
        let capped = cgroup_quota
            .as_ref()
            .map_or(usable, |q| usable.min(q.cpus_ceil()));
        let workers = u32::try_from(capped.max(1)).unwrap_or(u32::MAX);
        Sizing {
            workers,
            host_cpus,
            affinity_cpus,
            cgroup_quota,
            notes,
        }
    }

    /// One line saying how the worker count was reached, e.g. "2 workers: 8 CPUs on the host,
    /// 4 in this process's affinity mask, cgroup v2 cpu.max 200000/100000 at
    /// /sys/fs/cgroup/app = 2 CPUs".
    pub fn explain(&self) -> String {
        let mut text = format!(
            "{}: {} on the host, ",
            plural(self.workers as usize, "worker"),
            plural(self.host_cpus, "CPU")
        );
        match self.affinity_cpus {
            Some(count) => text.push_str(&format!("{count} in this process's affinity mask, ")),
            None => text.push_str("affinity mask unknown, "),
        }
        match &self.cgroup_quota {
            Some(quota) => text.push_str(&quota.to_string()),
            None => text.push_str("no cgroup CPU quota"),
        }
        for note in &self.notes {
            text.push_str(&format!("; {note}"));
        }
        text
    }
}

fn plural(count: usize, noun: &str) -> String {
    match count {
        1 => format!("1 {noun}"),
        _ => format!("{count} {noun}s"),
    }
}

/// Online CPUs of the host; `available_parallelism` (or 1) only if sysconf cannot say.
fn host_cpus(notes: &mut Vec<SizingNote>) -> usize {
    let online = sysconf(SysconfVar::_NPROCESSORS_ONLN).ok().flatten();
    match online
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
    {
        Some(count) => count,
        None => {
            notes.push(SizingNote::HostCountFallback);
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// CPUs in this process's affinity mask.
fn affinity_cpus(notes: &mut Vec<SizingNote>) -> Option<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => Some(count_cpus(&set)).filter(|n| *n > 0),
        Err(errno) => {
            notes.push(SizingNote::AffinityUnreadable(errno));
            None
        }
    }
}

fn count_cpus(set: &CpuSet) -> usize {
    (0..CpuSet::count())
        .filter(|cpu| set.is_set(*cpu).unwrap_or(false))
        .count()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use nix::errno::Errno;

    use super::*;
    use crate::sizing::CgroupVersion;

    fn quota(quota: u64, period: u64) -> Option<CgroupQuota> {
        let path = PathBuf::from("/sys/fs/cgroup/app/cpu.max");
        Some(CgroupQuota {
            quota,
            period,
            version: CgroupVersion::V2,
            path,
        })
    }

    fn workers(host: usize, affinity: Option<usize>, quota: Option<CgroupQuota>) -> u32 {
        Sizing::from_sources(host, affinity, quota, Vec::new()).workers
    }

    #[test]
    fn the_smallest_source_wins() {
        assert_eq!(workers(8, Some(4), quota(200_000, 100_000)), 2);
        assert_eq!(workers(8, Some(4), None), 4);
        assert_eq!(workers(8, Some(1), quota(400_000, 100_000)), 1);
        assert_eq!(
            workers(8, None, None),
            8,
            "host count when the mask is unknown"
        );
        assert_eq!(workers(8, None, quota(300_000, 100_000)), 3);
    }

    #[test]
    fn quota_rounds_up_and_never_gives_zero() {
        assert_eq!(workers(8, Some(8), quota(150_000, 100_000)), 2);
        assert_eq!(workers(8, Some(8), quota(10_000, 100_000)), 1);
        assert_eq!(workers(0, None, None), 1);
    }

    #[test]
    fn explain_names_every_source() {
        let sizing = Sizing::from_sources(8, Some(4), quota(200_000, 100_000), Vec::new());
        assert_eq!(
            sizing.explain(),
            "2 workers: 8 CPUs on the host, 4 in this process's affinity mask, \
             cgroup v2 cpu.max 200000/100000 at /sys/fs/cgroup/app = 2 CPUs"
        );
    }

    #[test]
    fn explain_gives_the_fallback_reasons() {
        let notes = vec![
            SizingNote::AffinityUnreadable(Errno::EINVAL),
            SizingNote::HostCountFallback,
        ];
        let sizing = Sizing::from_sources(1, None, None, notes);
        assert_eq!(
            sizing.explain(),
            "1 worker: 1 CPU on the host, affinity mask unknown, no cgroup CPU quota; \
             the affinity mask could not be read (EINVAL: Invalid argument), host count used; \
             the online CPU count was unavailable, so the host count is the standard library's \
             estimate"
        );
    }

    #[test]
    fn detect_on_this_machine_is_consistent() {
        let sizing = detect();
        eprintln!("sizing on this machine: {}", sizing.explain());
        assert!(sizing.workers >= 1);
        assert!(sizing.host_cpus >= 1);
        let affinity = sizing
            .affinity_cpus
            .expect("sched_getaffinity works on Linux");
        assert!(sizing.workers as usize <= affinity);
        assert!(sizing
            .explain()
            .starts_with(&format!("{} worker", sizing.workers)));
    }
}
