//! Whether the workers fit in the cgroup memory limit. `workers = "auto"` sizes from CPUs only,
//! and a container with 4 CPUs and 1 GiB cannot hold 4 workers of 400 MiB: the kernel's OOM
//! killer then takes workers one by one, which looks like random crashes. So the master reads
//! the limit at start, and once the first workers are ready it measures them (PSS, so pages
//! shared with the others count once) and warns, with the numbers, when the planned count plus
//! a surge worker for replacements cannot fit. A warning only: the measurement is an early
//! estimate (workers grow as they serve), and the operator knows the traffic.
//!
//! The limit: cgroup v2 `memory.max` of this process's cgroup and every ancestor up to the
//! mount ("max" is unlimited), else cgroup v1 `memory.limit_in_bytes` (a value near 2^63 is
//! unlimited); the smallest wins. Reading takes a closure, as for the CPU quota, so the tests
//! use fixture strings.

use std::fmt;
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use super::parse::{cgroup_dirs, find_controller_mount, v1_path, v2_path, Mount};
use super::types::{CgroupVersion, ReadFile};

/// v1 writes "no limit" as the largest page-aligned counter value; anything from here up is
/// no limit in practice.
const V1_UNLIMITED: u64 = 1 << 62;

/// The strictest memory limit over this process's cgroup and its ancestors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub version: CgroupVersion,
    /// The file it was read from.
    pub path: PathBuf,
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", mib(self.bytes), self.path.display())
    }
}

/// The memory limit of this process's cgroup, if it has one.
pub fn memory_limit() -> Option<MemoryLimit> {
    find_limit(&|path: &Path| std::fs::read_to_string(path))
}

/// Logs the limit at start, so the later warning is not the first word about it.
pub fn log_memory_limit() {
    match memory_limit() {
        Some(limit) => info!(
            limit_bytes = limit.bytes,
            "cgroup memory limit {limit}: whether the workers fit is checked once they are ready"
        ),
        None => debug!("no cgroup memory limit found"),
    }
}

/// Measures the ready workers `pids` and this master, and warns if `target` workers plus
/// `surge` replacements at that size exceed the cgroup memory limit.
pub fn check_fit(pids: &[i32], target: u32, surge: u32) {
    let Some(limit) = memory_limit() else { return };
    let workers: Vec<u64> = pids
        .iter()
        .filter_map(|&pid| crate::sys::proc::pss_bytes(pid))
        .collect();
    let master = crate::sys::proc::pss_bytes(std::process::id() as i32).unwrap_or(0);
    match judge(limit.bytes, &workers, master, target, surge) {
        Some(Verdict::Fits { need }) => debug!(
            need_bytes = need,
            limit_bytes = limit.bytes,
            "the workers fit in the cgroup memory limit"
        ),
        Some(over) => warn!(limit_bytes = limit.bytes, "{}", over.explain(&limit)),
        None => debug!("worker memory could not be measured; memory fit not checked"),
    }
}

/// What the measurement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `need` bytes fit in the limit.
    Fits { need: u64 },
    /// `need` bytes do not fit; `room` workers would, replacements included.
    TooBig {
        need: u64,
        average: u64,
        master: u64,
        target: u32,
        surge: u32,
        room: u32,
    },
}

/// `target + surge` workers of the measured average size plus the master, against `limit`.
/// `None` when no worker could be measured. Pure.
pub fn judge(limit: u64, workers: &[u64], master: u64, target: u32, surge: u32) -> Option<Verdict> {
    if workers.is_empty() {
        return None;
    }
    let average = workers.iter().sum::<u64>() / workers.len() as u64;
    let planned = u64::from(target) + u64::from(surge);
    let need = master.saturating_add(average.saturating_mul(planned));
    if need <= limit {
        return Some(Verdict::Fits { need });
    }
    let room = (limit.saturating_sub(master) / average.max(1)).min(u64::from(u32::MAX)) as u32;
    Some(Verdict::TooBig {
        need,
        average,
        master,
        target,
        surge,
        room,
    })
}

impl Verdict {
    fn explain(&self, limit: &MemoryLimit) -> String {
        let Verdict::TooBig {
            need,
            average,
            master,
            target,
            surge,
            room,
        } = *self
        else {
            return String::new();
        };
        let advice = match room {
            0 => "not even one worker fits: raise the memory limit".to_string(),
            // The workers fit; their replacements during a reload or recycling do not.
            r if r > target => {
                format!(
                    "lower `max_surge` to {} or raise the memory limit",
                    r - target
                )
            }
            r if r > surge => {
                format!(
                    "set `workers` to {} or fewer, or raise the memory limit",
                    r - surge
                )
            }
            _ => "raise the memory limit, or lower `workers` and `max_surge`".to_string(),
        };
        format!(
            "the cgroup memory limit {limit} cannot hold {target} workers plus {surge} booting replacement(s) at their measured size: \
             each worker uses about {} (PSS), the master {}, together about {}; \
             the kernel's OOM killer would end workers at random under load; {advice}",
            mib(average),
            mib(master),
            mib(need)
        )
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0}MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// v2 first, then v1, like the CPU quota.
pub(crate) fn find_limit(read: ReadFile<'_>) -> Option<MemoryLimit> {
    let membership = read(Path::new("/proc/self/cgroup")).ok()?;
    let mountinfo = read(Path::new("/proc/self/mountinfo")).unwrap_or_default();
    if let Some(path) = v2_path(&membership) {
        let mount =
            find_controller_mount(&mountinfo, CgroupVersion::V2, "memory").unwrap_or(Mount {
                root: "/".to_owned(),
                point: PathBuf::from("/sys/fs/cgroup"),
            });
        let found = strictest(read, &cgroup_dirs(&mount, path), CgroupVersion::V2);
        if found.is_some() {
            return found;
        }
    }
    let path = v1_path(&membership, "memory")?;
    let mount = find_controller_mount(&mountinfo, CgroupVersion::V1, "memory")?;
    strictest(read, &cgroup_dirs(&mount, path), CgroupVersion::V1)
}

fn strictest(read: ReadFile<'_>, dirs: &[PathBuf], version: CgroupVersion) -> Option<MemoryLimit> {
    let file = match version {
        CgroupVersion::V2 => "memory.max",
        CgroupVersion::V1 => "memory.limit_in_bytes",
    };
    dirs.iter()
        .filter_map(|dir| {
            let path = dir.join(file);
            let bytes = parse_limit(&read(&path).ok()?, version)?;
            Some(MemoryLimit {
                bytes,
                version,
                path,
            })
        })
        .min_by_key(|limit| limit.bytes)
}

/// A limit in bytes; `None` for unlimited or unreadable contents.
fn parse_limit(contents: &str, version: CgroupVersion) -> Option<u64> {
    let text = contents.trim();
    if text == "max" {
        return None;
    }
    let bytes: u64 = text.parse().ok()?;
    match version {
        CgroupVersion::V1 if bytes >= V1_UNLIMITED => None,
        _ => Some(bytes),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io;

    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn workers_that_fit_with_a_surge_worker_are_fine() {
        // 4 workers + 1 surge of 100 MiB and a 20 MiB master: 520 MiB.
        let workers = [90 * MIB, 110 * MIB, 100 * MIB, 100 * MIB];
        assert_eq!(
            judge(520 * MIB, &workers, 20 * MIB, 4, 1),
            Some(Verdict::Fits { need: 520 * MIB })
        );
    }

    #[test]
    fn too_many_workers_for_the_limit_get_a_smaller_count() {
        let workers = [400 * MIB, 400 * MIB];
        let verdict = judge(1024 * MIB, &workers, 24 * MIB, 4, 1).unwrap();
        assert_eq!(
            verdict,
            Verdict::TooBig {
                need: 2024 * MIB,
                average: 400 * MIB,
                master: 24 * MIB,
                target: 4,
                surge: 1,
                room: 2, // (1024 - 24) / 400, one of them kept for the surge
            }
        );
        let limit = MemoryLimit {
            bytes: 1024 * MIB,
            version: CgroupVersion::V2,
            path: "/sys/fs/cgroup/memory.max".into(),
        };
        let text = verdict.explain(&limit);
        assert!(
            text.contains("1024MiB (/sys/fs/cgroup/memory.max)"),
            "{text}"
        );
        assert!(text.contains("about 400MiB (PSS)"), "{text}");
        assert!(text.contains("set `workers` to 1 or fewer"), "{text}");
    }

    #[test]
    fn a_surge_that_does_not_fit_is_told_apart() {
        let limit = MemoryLimit {
            bytes: 200 * MIB,
            version: CgroupVersion::V1,
            path: "memory.limit_in_bytes".into(),
        };
        // 2 workers of 23 MiB fit, 10 replacements on top do not: 8 slots in all.
        let verdict = judge(200 * MIB, &[23 * MIB, 23 * MIB], 6 * MIB, 2, 10).unwrap();
        assert!(
            matches!(verdict, Verdict::TooBig { room: 8, .. }),
            "{verdict:?}"
        );
        let text = verdict.explain(&limit);
        assert!(text.contains("lower `max_surge` to 6"), "{text}");
        let verdict = judge(300 * MIB, &[400 * MIB], 10 * MIB, 1, 1).unwrap();
        assert!(matches!(verdict, Verdict::TooBig { room: 0, .. }));
        assert!(verdict.explain(&limit).contains("not even one worker fits"));
        assert_eq!(judge(300 * MIB, &[], 10 * MIB, 1, 1), None);
    }

    fn fixture(files: &[(&str, &str)]) -> impl Fn(&Path) -> io::Result<String> {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.to_string()))
            .collect();
        move |path: &Path| {
            files
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    const V2_MOUNTINFO: &str =
        "25 1 0:23 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn v2_takes_the_strictest_ancestor() {
        let read = fixture(&[
            ("/proc/self/cgroup", "0::/app/web\n"),
            ("/proc/self/mountinfo", V2_MOUNTINFO),
            ("/sys/fs/cgroup/app/web/memory.max", "max\n"),
            ("/sys/fs/cgroup/app/memory.max", "1073741824\n"),
        ]);
        let limit = find_limit(&read).expect("a limit");
        assert_eq!(limit.bytes, 1 << 30);
        assert_eq!(limit.path, PathBuf::from("/sys/fs/cgroup/app/memory.max"));
    }

    #[test]
    fn unlimited_everywhere_is_no_limit() {
        let read = fixture(&[
            ("/proc/self/cgroup", "0::/app\n"),
            ("/proc/self/mountinfo", V2_MOUNTINFO),
            ("/sys/fs/cgroup/app/memory.max", "max\n"),
        ]);
        assert_eq!(find_limit(&read), None);
    }

    #[test]
    fn v1_memory_controller_and_its_unlimited_value() {
        let mountinfo = "\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
";
        let membership = "4:memory:/docker/abc\n1:cpu:/\n";
        let read = fixture(&[
            ("/proc/self/cgroup", membership),
            ("/proc/self/mountinfo", mountinfo),
            (
                "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
                "536870912\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ]);
        let limit = find_limit(&read).expect("a limit");
        assert_eq!((limit.bytes, limit.version), (512 * MIB, CgroupVersion::V1));
        assert_eq!(
            parse_limit("9223372036854771712", CgroupVersion::V1),
            None,
            "v1's no-limit value"
        );
    }
}
