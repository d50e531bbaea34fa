//! Pure parsers for the cgroup files: each takes file contents as `&str` and returns what they
//! say, or `None` when the contents are not what the kernel writes there. No file access here.

use std::path::{Path, PathBuf};

use super::types::CgroupVersion;

/// What one quota file says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    Unlimited,
    Limited { quota: u64, period: u64 },
}

/// Parses cgroup v2 `cpu.max`: "max 100000" or "200000 100000".
pub(crate) fn parse_cpu_max(contents: &str) -> Option<Limit> {
    let mut fields = contents.split_whitespace();
    let quota = fields.next()?;
    let period = fields.next().map_or(Some(100_000), |p| p.parse().ok())?;
    if fields.next().is_some() || period == 0 {
        return None;
    }
    match quota {
        "max" => Some(Limit::Unlimited),
        _ => quota
            .parse()
            .ok()
            .filter(|q| *q > 0)
            .map(|quota| Limit::Limited { quota, period }),
    }
}

/// Parses cgroup v1 `cpu.cfs_quota_us` ("-1" is unlimited) with `cpu.cfs_period_us`.
pub(crate) fn parse_cfs(quota: &str, period: &str) -> Option<Limit> {
    let quota: i64 = quota.trim().parse().ok()?;
    if quota == -1 {
        return Some(Limit::Unlimited);
    }
    let period: u64 = period.trim().parse().ok().filter(|p| *p > 0)?;
    let quota = u64::try_from(quota).ok().filter(|q| *q > 0)?;
    Some(Limit::Limited { quota, period })
}

/// The cgroup v2 path: the `0::/path` line of `/proc/self/cgroup`.
pub(crate) fn v2_path(membership: &str) -> Option<&str> {
    membership.lines().find_map(|line| line.strip_prefix("0::"))
}

/// The cgroup v1 path of the `cpu` controller: `N:cpu,cpuacct:/path`.
pub(crate) fn v1_cpu_path(membership: &str) -> Option<&str> {
    v1_path(membership, "cpu")
}

/// The cgroup v1 path of `controller` (`cpu`, `memory`): `N:cpu,cpuacct:/path`.
pub(crate) fn v1_path<'a>(membership: &'a str, controller: &str) -> Option<&'a str> {
    membership.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then_some(path)
    })
}

/// A cgroup filesystem mount from `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The cgroup path that appears at the mount point (not "/" inside some containers).
    pub(crate) root: String,
    pub(crate) point: PathBuf,
}

/// Finds the `cgroup2` mount (V2) or the `cgroup` mount carrying the `cpu` controller (V1).
pub(crate) fn find_mount(mountinfo: &str, version: CgroupVersion) -> Option<Mount> {
    find_controller_mount(mountinfo, version, "cpu")
}

/// Finds the `cgroup2` mount (V2) or the `cgroup` mount carrying `controller` (V1).
pub(crate) fn find_controller_mount(
    mountinfo: &str,
    version: CgroupVersion,
    controller: &str,
) -> Option<Mount> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let mut tail = after.split(' ');
        let (fstype, _source, options) = (tail.next()?, tail.next()?, tail.next()?);
        let wanted = match version {
            CgroupVersion::V2 => fstype == "cgroup2",
            CgroupVersion::V1 => fstype == "cgroup" && options.split(',').any(|o| o == controller),
        };
        let (root, point) = (fields.get(3)?, fields.get(4)?);
        wanted.then(|| Mount {
            root: unescape(root),
            point: PathBuf::from(unescape(point)),
        })
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The directory of `cgroup_path` under `mount`, and its ancestors up to the mount point.
pub(crate) fn cgroup_dirs(mount: &Mount, cgroup_path: &str) -> Vec<PathBuf> {
    let relative = if mount.root == "/" {
        cgroup_path
    } else {
        match cgroup_path.strip_prefix(mount.root.as_str()) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
            // The mount shows another subtree (a container's own view): use the mount itself.
            _ => "",
        }
    };
    let leaf = mount.point.join(relative.trim_start_matches('/'));
    leaf.ancestors()
        .take_while(|dir| dir.starts_with(&mount.point))
        .map(Path::to_path_buf)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_MOUNTINFO: &str = "\
25 1 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw
26 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
";
    const V1_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpuset rw,nosuid shared:9 - cgroup cgroup rw,cpuset
31 25 0:27 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct
";
    const V1_MEMBERSHIP: &str = "5:cpuset:/docker/abc\n4:cpu,cpuacct:/docker/abc\n";

    #[test]
    fn cpu_max_parses_limits_and_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), Some(Limit::Unlimited));
        let limited = Limit::Limited {
            quota: 200_000,
            period: 100_000,
        };
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(limited));
        for bad in [
            "",
            "abc 100000",
            "100 0",
            "100 100 100",
            "-5 100000",
            "0 100000",
            "1.5 1",
        ] {
            assert_eq!(parse_cpu_max(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cfs_parses_limits_and_minus_one() {
        assert_eq!(parse_cfs("-1\n", "100000\n"), Some(Limit::Unlimited));
        let limited = Limit::Limited {
            quota: 150_000,
            period: 100_000,
        };
        assert_eq!(parse_cfs("150000\n", "100000\n"), Some(limited));
        for (q, p) in [
            ("abc", "100000"),
            ("0", "100000"),
            ("-2", "100000"),
            ("1000", "0"),
        ] {
            assert_eq!(parse_cfs(q, p), None, "{q:?} {p:?}");
        }
    }

    #[test]
    fn membership_lines_give_the_paths() {
        assert_eq!(
            v2_path("0::/user.slice/app.service\n"),
            Some("/user.slice/app.service")
        );
        assert_eq!(v2_path(V1_MEMBERSHIP), None);
        assert_eq!(v1_cpu_path(V1_MEMBERSHIP), Some("/docker/abc"));
        assert_eq!(
            v1_cpu_path("5:cpuset:/x\n0::/y\n"),
            None,
            "cpuset is not cpu"
        );
    }

    #[test]
    fn mounts_are_found_by_type_and_option() {
        let v2 = find_mount(V2_MOUNTINFO, CgroupVersion::V2).expect("cgroup2 mount");
        assert_eq!(
            v2,
            Mount {
                root: "/".into(),
                point: "/sys/fs/cgroup".into()
            }
        );
        let v1 = find_mount(V1_MOUNTINFO, CgroupVersion::V1).expect("cpu mount");
        assert_eq!(v1.root, "/docker/abc");
        assert_eq!(v1.point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(find_mount(V2_MOUNTINFO, CgroupVersion::V1), None);
        let escaped = "1 0 0:1 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        let mount = find_mount(escaped, CgroupVersion::V2).expect("escaped mount");
        assert_eq!(mount.point, PathBuf::from("/mnt/my cg"));
    }

    #[test]
    fn dirs_walk_up_to_the_mount_point() {
        let mount = Mount {
            root: "/".into(),
            point: "/sys/fs/cgroup".into(),
        };
        let dirs = cgroup_dirs(&mount, "/a/b");
        let expected: Vec<PathBuf> = ["/sys/fs/cgroup/a/b", "/sys/fs/cgroup/a", "/sys/fs/cgroup"]
            .map(PathBuf::from)
            .into();
        assert_eq!(dirs, expected);
        let container = Mount {
            root: "/docker/abc".into(),
            point: "/cg".into(),
        };
        assert_eq!(
            cgroup_dirs(&container, "/docker/abc"),
            vec![PathBuf::from("/cg")]
        );
        assert_eq!(
            cgroup_dirs(&container, "/docker/abcdef"),
            vec![PathBuf::from("/cg")]
        );
        assert_eq!(cgroup_dirs(&container, "/docker/abc/x").len(), 2);
    }
}
