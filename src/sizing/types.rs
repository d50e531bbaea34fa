//! The values the sizing files share, kept below them so that the cgroup walk, the parsers,
//! the CPU detection and the memory check import this file and not one another: which cgroup
//! hierarchy a value came from, the CPU quota found, the notes about sources that could not be
//! read, and the file-reading seam (`ReadFile`) that keeps every reader testable with fixtures.
//! Pure data and formatting: no file is read here.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// Reads a whole file; the real one is `std::fs::read_to_string`.
pub(crate) type ReadFile<'a> = &'a dyn Fn(&Path) -> io::Result<String>;

/// Which cgroup hierarchy the quota came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The most restrictive CPU quota found, and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupQuota {
    /// Microseconds of CPU time allowed per period, over all CPUs.
    pub quota: u64,
    /// Length of the period in microseconds (never 0).
    pub period: u64,
    pub version: CgroupVersion,
    /// The file the quota was read from (`cpu.max` or `cpu.cfs_quota_us`).
    pub path: PathBuf,
}

impl CgroupQuota {
    /// CPUs the quota allows, rounded up: 1.5 CPUs of quota keep 2 workers busy at 75 % each,
    /// while rounding down would leave quota unused (and 0.5 would give no worker at all).
    pub fn cpus_ceil(&self) -> u64 {
        self.quota.div_ceil(self.period)
    }

    /// Whether this quota allows fewer CPUs than `other`.
    pub(super) fn is_stricter_than(&self, other: &CgroupQuota) -> bool {
        u128::from(self.quota) * u128::from(other.period)
            < u128::from(other.quota) * u128::from(self.period)
    }
}

impl fmt::Display for CgroupQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (version, file) = match self.version {
            CgroupVersion::V2 => ("v2", "cpu.max"),
            CgroupVersion::V1 => ("v1", "cpu.cfs_quota_us/cpu.cfs_period_us"),
        };
        let dir = self.path.parent().unwrap_or(&self.path).display();
        write!(
            f,
            "cgroup {version} {file} {}/{} at {dir} = ",
            self.quota, self.period
        )?;
        let exact = self.quota as f64 / self.period as f64;
        if self.quota % self.period == 0 {
            write!(f, "{} CPUs", self.cpus_ceil())
        } else {
            write!(f, "{exact:.2} CPUs, rounded up to {}", self.cpus_ceil())
        }
    }
}

/// Why a source was left out of the sizing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizingNote {
    /// sysconf could not count the online CPUs; `available_parallelism` gave the host count.
    HostCountFallback,
    /// sched_getaffinity failed.
    AffinityUnreadable(Errno),
    /// A cgroup or /proc file could not be read.
    CgroupFileUnreadable { path: PathBuf, kind: io::ErrorKind },
    /// A quota file did not hold what the kernel writes there.
    CgroupFileMalformed { path: PathBuf, contents: String },
    /// /proc/self/cgroup names a v1 `cpu` cgroup but no such mount is in mountinfo.
    CgroupV1MountMissing,
}

impl fmt::Display for SizingNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostCountFallback => f.write_str(
                "the online CPU count was unavailable, so the host count is the standard \
                 library's estimate",
            ),
            Self::AffinityUnreadable(errno) => {
                write!(
                    f,
                    "the affinity mask could not be read ({errno}), host count used"
                )
            }
            Self::CgroupFileUnreadable { path, kind } => {
                write!(
                    f,
                    "{} could not be read ({kind}), its quota ignored",
                    path.display()
                )
            }
            Self::CgroupFileMalformed { path, contents } => {
                write!(
                    f,
                    "{} holds {contents:?}, not a quota, ignored",
                    path.display()
                )
            }
            Self::CgroupV1MountMissing => {
                f.write_str("the cgroup v1 cpu controller is not mounted, its quota ignored")
            }
        }
    }
}
