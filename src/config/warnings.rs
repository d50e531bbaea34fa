//! Non-fatal concerns about the configuration, for the master to log after a successful load.
//! Today one: a master running as root that reads a config file others may write. Whoever can
//! write that file chooses the interpreter and the code that root starts, but refusing to run
//! would break setups that are safe for reasons herdsman cannot see, so it is a warning.

use crate::config::Config;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Warnings about `config`'s file, one message each; empty when there is nothing to say.
pub fn file_warnings(config: &Config) -> Vec<String> {
    let Some(path) = &config.config_file else {
        return Vec::new();
    };
    if !nix::unistd::geteuid().is_root() {
        return Vec::new();
    }
    match std::fs::metadata(path) {
        Ok(meta) => writable_warning(path, meta.permissions().mode())
            .into_iter()
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The warning for a root-read file with permission bits `mode`, if it is group/world-writable.
fn writable_warning(path: &Path, mode: u32) -> Option<String> {
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (_, true) => "world-writable",
        (true, false) => "group-writable",
        (false, false) => return None,
    };
    Some(format!(
        "config file {} is {who} (mode {:04o}) and herdsman runs as root: anyone who can write \
         it chooses what runs as root; fix with `chmod go-w {}`",
        path.display(),
        mode & 0o7777,
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_group_or_world_writable_files_warn() {
        let path = Path::new("/etc/herdsman.toml");
        assert_eq!(writable_warning(path, 0o100644), None);
        assert_eq!(writable_warning(path, 0o100600), None);
        let group = writable_warning(path, 0o100664).expect("group-writable warns");
        assert!(group.contains("group-writable (mode 0664)"), "{group}");
        assert!(group.contains("chmod go-w /etc/herdsman.toml"), "{group}");
        let world = writable_warning(path, 0o100666).expect("world-writable warns");
        assert!(world.contains("world-writable"), "{world}");
    }
}
