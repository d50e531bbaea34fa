//! The cgroup CPU quota of this process, from file contents only: every function here takes the
//! text of `/proc/self/cgroup`, `/proc/self/mountinfo` and the quota files, or a closure that
//! reads a file, so it is unit-tested with fixture strings and no real cgroup.
//!
//! cgroup v2: the `0::/path` line of `/proc/self/cgroup`, under the `cgroup2` mount (normally
//! /sys/fs/cgroup): `cpu.max` is "max PERIOD" (unlimited) or "QUOTA PERIOD". A parent's limit
//! caps its children, so every ancestor up to the mount is read and the most restrictive wins.
//! cgroup v1 (only if v2 gave no `cpu.max` at all, e.g. a hybrid host): the line whose controller
//! list holds `cpu`, under the `cgroup` mount with the `cpu` option; `cpu.cfs_quota_us` (-1 is
//! unlimited) and `cpu.cfs_period_us`, walked up the same way.

use std::io;
use std::path::{Path, PathBuf};

use super::parse::{
    cgroup_dirs, find_mount, parse_cfs, parse_cpu_max, v1_cpu_path, v2_path, Limit, Mount,
};
use super::types::{CgroupQuota, CgroupVersion, ReadFile, SizingNote};

/// What the walk up the cgroup tree found.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// At least one ancestor has a quota: the strictest one.
    Limited(CgroupQuota),
    /// Quota files exist and all say unlimited.
    Unlimited,
    /// No readable quota file at any level.
    NoFiles,
}

const PROC_CGROUP: &str = "/proc/self/cgroup";
const PROC_MOUNTINFO: &str = "/proc/self/mountinfo";
const DEFAULT_V2_MOUNT: &str = "/sys/fs/cgroup";

/// The strictest CPU quota over this process's cgroup and its ancestors, v2 first then v1.
/// `None` means unlimited or unknown; why it is unknown goes to `notes`.
pub(crate) fn find_quota(read: ReadFile<'_>, notes: &mut Vec<SizingNote>) -> Option<CgroupQuota> {
    let membership = read_required(read, Path::new(PROC_CGROUP), notes)?;
    let mountinfo = read_required(read, Path::new(PROC_MOUNTINFO), notes).unwrap_or_default();
    if let Some(path) = v2_path(&membership) {
        let mount = find_mount(&mountinfo, CgroupVersion::V2).unwrap_or_else(|| Mount {
            root: "/".to_owned(),
            point: PathBuf::from(DEFAULT_V2_MOUNT),
        });
        match lookup(read, &cgroup_dirs(&mount, path), CgroupVersion::V2, notes) {
            Lookup::Limited(quota) => return Some(quota),
            Lookup::Unlimited => return None,
            Lookup::NoFiles => {}
        }
    }
    let path = v1_cpu_path(&membership)?;
    let Some(mount) = find_mount(&mountinfo, CgroupVersion::V1) else {
        notes.push(SizingNote::CgroupV1MountMissing);
        return None;
    };
    match lookup(read, &cgroup_dirs(&mount, path), CgroupVersion::V1, notes) {
        Lookup::Limited(quota) => Some(quota),
        Lookup::Unlimited | Lookup::NoFiles => None,
    }
}

/// Reads the quota of every directory; the strictest limit wins.
fn lookup(
    read: ReadFile<'_>,
    dirs: &[PathBuf],
    version: CgroupVersion,
    notes: &mut Vec<SizingNote>,
) -> Lookup {
    let mut result = Lookup::NoFiles;
    for dir in dirs {
        let path = quota_file(dir, version);
        let limit = match version {
            CgroupVersion::V2 => read_v2(read, &path, notes),
            CgroupVersion::V1 => read_v1(read, &path, &dir.join("cpu.cfs_period_us"), notes),
        };
        result = match (limit, result) {
            (None, kept) => kept,
            (Some(Limit::Unlimited), Lookup::NoFiles) => Lookup::Unlimited,
            (Some(Limit::Unlimited), kept) => kept,
            (Some(Limit::Limited { quota, period }), kept) => stricter(
                kept,
                CgroupQuota {
                    quota,
                    period,
                    version,
                    path,
                },
            ),
        };
    }
    result
}

fn stricter(kept: Lookup, candidate: CgroupQuota) -> Lookup {
    match kept {
        Lookup::Limited(old) if !candidate.is_stricter_than(&old) => Lookup::Limited(old),
        _ => Lookup::Limited(candidate),
    }
}

fn quota_file(dir: &Path, version: CgroupVersion) -> PathBuf {
    match version {
        CgroupVersion::V2 => dir.join("cpu.max"),
        CgroupVersion::V1 => dir.join("cpu.cfs_quota_us"),
    }
}

fn read_v2(read: ReadFile<'_>, path: &Path, notes: &mut Vec<SizingNote>) -> Option<Limit> {
    let contents = read_optional(read, path, notes)?;
    let limit = parse_cpu_max(&contents);
    note_if_malformed(&limit, path, &contents, notes);
    limit
}

fn read_v1(
    read: ReadFile<'_>,
    quota_path: &Path,
    period_path: &Path,
    notes: &mut Vec<SizingNote>,
) -> Option<Limit> {
    let quota = read_optional(read, quota_path, notes)?;
    let period = read_optional(read, period_path, notes)?;
    let limit = parse_cfs(&quota, &period);
    let shown = format!("{} / {}", quota.trim(), period.trim());
    note_if_malformed(&limit, quota_path, &shown, notes);
    limit
}

fn note_if_malformed(
    limit: &Option<Limit>,
    path: &Path,
    contents: &str,
    notes: &mut Vec<SizingNote>,
) {
    if limit.is_none() {
        let (path, contents) = (path.to_path_buf(), contents.trim().to_owned());
        notes.push(SizingNote::CgroupFileMalformed { path, contents });
    }
}

/// A file that must exist: any error is noted.
fn read_required(read: ReadFile<'_>, path: &Path, notes: &mut Vec<SizingNote>) -> Option<String> {
    read(path)
        .map_err(|err| {
            notes.push(SizingNote::CgroupFileUnreadable {
                path: path.into(),
                kind: err.kind(),
            })
        })
        .ok()
}

/// A file that may be absent (the root cgroup has no quota files): only other errors are noted.
fn read_optional(read: ReadFile<'_>, path: &Path, notes: &mut Vec<SizingNote>) -> Option<String> {
    match read(path) {
        Ok(contents) => Some(contents),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => {
            notes.push(SizingNote::CgroupFileUnreadable {
                path: path.into(),
                kind: err.kind(),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const V2_MOUNTINFO: &str = "\
25 1 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
26 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
";
    const V1_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpuset rw,nosuid shared:9 - cgroup cgroup rw,cpuset
31 25 0:27 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct
";
    const V1_MEMBERSHIP: &str = "\
5:cpuset:/docker/abc
4:cpu,cpuacct:/docker/abc
1:name=systemd:/docker/abc
";

    /// A file system of fixture files; a value of `Err(kind)` fails reading with that kind.
    struct Fixture(HashMap<PathBuf, Result<String, io::ErrorKind>>);

    impl Fixture {
        fn new(files: &[(&str, &str)]) -> Self {
            let files = files
                .iter()
                .map(|(p, c)| (PathBuf::from(p), Ok(c.to_string())));
            Fixture(files.collect())
        }

        fn deny(mut self, path: &str) -> Self {
            self.0
                .insert(PathBuf::from(path), Err(io::ErrorKind::PermissionDenied));
            self
        }

        fn read(&self, path: &Path) -> io::Result<String> {
            match self.0.get(path) {
                Some(Ok(contents)) => Ok(contents.clone()),
                Some(Err(kind)) => Err(io::Error::from(*kind)),
                None => Err(io::Error::from(io::ErrorKind::NotFound)),
            }
        }

        fn quota(&self) -> (Option<CgroupQuota>, Vec<SizingNote>) {
            let mut notes = Vec::new();
            let quota = find_quota(&|path| self.read(path), &mut notes);
            (quota, notes)
        }
    }

    fn v2(membership: &'static str, files: &[(&'static str, &'static str)]) -> Fixture {
        let mut all = vec![(PROC_CGROUP, membership), (PROC_MOUNTINFO, V2_MOUNTINFO)];
        all.extend_from_slice(files);
        Fixture::new(&all)
    }

    fn quota(quota: u64, period: u64, version: CgroupVersion, path: &str) -> CgroupQuota {
        CgroupQuota {
            quota,
            period,
            version,
            path: PathBuf::from(path),
        }
    }

    #[test]
    fn v2_limit_in_own_cgroup() {
        let fixture = v2(
            "0::/app\n",
            &[("/sys/fs/cgroup/app/cpu.max", "200000 100000\n")],
        );
        let expected = quota(
            200_000,
            100_000,
            CgroupVersion::V2,
            "/sys/fs/cgroup/app/cpu.max",
        );
        assert_eq!(fixture.quota(), (Some(expected), vec![]));
    }

    #[test]
    fn v2_max_everywhere_is_unlimited() {
        let fixture = v2(
            "0::/a/b\n",
            &[
                ("/sys/fs/cgroup/a/b/cpu.max", "max 100000\n"),
                ("/sys/fs/cgroup/a/cpu.max", "max 100000\n"),
            ],
        );
        assert_eq!(fixture.quota(), (None, vec![]));
    }

    #[test]
    fn v2_stricter_parent_wins() {
        let fixture = v2(
            "0::/a/b\n",
            &[
                ("/sys/fs/cgroup/a/b/cpu.max", "400000 100000\n"),
                ("/sys/fs/cgroup/a/cpu.max", "50000 50000\n"),
            ],
        );
        let expected = quota(
            50_000,
            50_000,
            CgroupVersion::V2,
            "/sys/fs/cgroup/a/cpu.max",
        );
        assert_eq!(fixture.quota().0, Some(expected));
    }

    #[test]
    fn v2_stricter_child_wins() {
        let fixture = v2(
            "0::/a/b\n",
            &[
                ("/sys/fs/cgroup/a/b/cpu.max", "150000 100000\n"),
                ("/sys/fs/cgroup/a/cpu.max", "max 100000\n"),
            ],
        );
        let found = fixture.quota().0.expect("a quota");
        assert_eq!((found.quota, found.cpus_ceil()), (150_000, 2));
    }

    #[test]
    fn v1_quota_under_its_mount() {
        let fixture = Fixture::new(&[
            (PROC_CGROUP, V1_MEMBERSHIP),
            (PROC_MOUNTINFO, V1_MOUNTINFO),
            ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "150000\n"),
            ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
        ]);
        let path = "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us";
        assert_eq!(
            fixture.quota(),
            (
                Some(quota(150_000, 100_000, CgroupVersion::V1, path)),
                vec![]
            )
        );
    }

    #[test]
    fn v1_minus_one_is_unlimited() {
        let fixture = Fixture::new(&[
            (PROC_CGROUP, V1_MEMBERSHIP),
            (PROC_MOUNTINFO, V1_MOUNTINFO),
            ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n"),
            ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(fixture.quota(), (None, vec![]));
    }

    #[test]
    fn hybrid_host_without_v2_cpu_max_falls_back_to_v1() {
        let membership = "4:cpu,cpuacct:/docker/abc\n0::/docker/abc\n";
        let mountinfo = format!("{V1_MOUNTINFO}{V2_MOUNTINFO}");
        let fixture = Fixture::new(&[
            (PROC_CGROUP, membership),
            (PROC_MOUNTINFO, &mountinfo),
            ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "300000\n"),
            ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
        ]);
        let found = fixture.quota().0.expect("the v1 quota");
        assert_eq!((found.version, found.cpus_ceil()), (CgroupVersion::V1, 3));
    }

    #[test]
    fn v1_without_mount_is_noted() {
        let fixture = Fixture::new(&[(PROC_CGROUP, V1_MEMBERSHIP), (PROC_MOUNTINFO, V2_MOUNTINFO)]);
        assert_eq!(
            fixture.quota(),
            (None, vec![SizingNote::CgroupV1MountMissing])
        );
    }

    #[test]
    fn malformed_file_is_noted_and_the_parent_still_counts() {
        let fixture = v2(
            "0::/a/b\n",
            &[
                ("/sys/fs/cgroup/a/b/cpu.max", "garbage\n"),
                ("/sys/fs/cgroup/a/cpu.max", "100000 100000\n"),
            ],
        );
        let (found, notes) = fixture.quota();
        assert_eq!(found.expect("parent quota").cpus_ceil(), 1);
        let path = PathBuf::from("/sys/fs/cgroup/a/b/cpu.max");
        assert_eq!(
            notes,
            vec![SizingNote::CgroupFileMalformed {
                path,
                contents: "garbage".into()
            }]
        );
    }

    #[test]
    fn missing_and_unreadable_files() {
        let (found, notes) = Fixture::new(&[]).quota();
        assert_eq!(found, None);
        let kind = io::ErrorKind::NotFound;
        assert_eq!(
            notes,
            vec![SizingNote::CgroupFileUnreadable {
                path: PROC_CGROUP.into(),
                kind
            }]
        );

        let denied = "/sys/fs/cgroup/app/cpu.max";
        let (found, notes) = v2("0::/app\n", &[]).deny(denied).quota();
        assert_eq!(found, None);
        let kind = io::ErrorKind::PermissionDenied;
        assert_eq!(
            notes,
            vec![SizingNote::CgroupFileUnreadable {
                path: denied.into(),
                kind
            }]
        );

        let no_mountinfo = Fixture::new(&[
            (PROC_CGROUP, "0::/app\n"),
            ("/sys/fs/cgroup/app/cpu.max", "100000 100000\n"),
        ]);
        let (found, notes) = no_mountinfo.quota();
        assert_eq!(
            found.map(|q| q.cpus_ceil()),
            Some(1),
            "default v2 mount used"
        );
        assert_eq!(notes.len(), 1, "the missing mountinfo is noted");
    }

    #[test]
    fn quota_display_names_the_file_and_the_rounding() {
        let exact = quota(
            200_000,
            100_000,
            CgroupVersion::V2,
            "/sys/fs/cgroup/app/cpu.max",
        );
        assert_eq!(
            exact.to_string(),
            "cgroup v2 cpu.max 200000/100000 at /sys/fs/cgroup/app = 2 CPUs"
        );
        let half = quota(150_000, 100_000, CgroupVersion::V1, "/cg/cpu.cfs_quota_us");
        assert_eq!(
            half.to_string(),
            "cgroup v1 cpu.cfs_quota_us/cpu.cfs_period_us 150000/100000 at /cg = 1.50 CPUs, \
             rounded up to 2"
        );
    }
}
