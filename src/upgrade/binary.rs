//! Which file an upgrade executes, and with which arguments, decided once when the master
//! starts: the path the master was started as (`argv[0]`; made absolute against the working
//! directory, or looked up on `PATH`, at start), else the running executable. An upgrade then
//! executes whatever file is at that path by then: the new binary installed over the old one,
//! or a symlink switched to a new version (symlinks are not resolved at start for that reason).
//! The arguments are the original ones, unchanged, so the new image reads the same
//! configuration the same way and `ps` shows the same command line.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

use super::error::UpgradeError;

#[derive(Debug, Clone)]
pub struct Binary {
    path: PathBuf,
    argv: Vec<OsString>,
}

impl Binary {
    /// The path and arguments of this process, as it was started.
    pub fn remember() -> Binary {
        let argv: Vec<OsString> = crate::sys::proctitle::original_args().to_vec();
        let path = argv
            .first()
            .and_then(|arg0| locate(arg0))
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_default();
        Binary { path, argv }
    }

    /// A binary at `path` started with `argv` (tests).
    #[cfg(test)]
    pub(crate) fn at(path: &Path, argv: &[&str]) -> Binary {
        Binary {
            path: path.to_path_buf(),
            argv: argv.iter().map(OsString::from).collect(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The original argument vector, `argv[0]` included.
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// Checks that an executable regular file is at the path now.
    pub fn check(&self) -> Result<(), UpgradeError> {
        let path = self.path.clone();
        let meta = std::fs::metadata(&self.path).map_err(|source| UpgradeError::Missing {
            path: path.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(UpgradeError::NotAFile { path });
        }
        access(&self.path, AccessFlags::X_OK)
            .map_err(|source| UpgradeError::NotExecutable { path, source })
    }
}

/// `argv[0]` as an absolute path to an existing file: a path as given (relative ones against
/// the working directory), a bare name looked up on `PATH` the way the shell did.
fn locate(arg0: &OsStr) -> Option<PathBuf> {
    let found = if arg0.as_bytes().contains(&b'/') {
        std::env::current_dir().ok()?.join(arg0)
    } else {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths)
            .map(|dir| dir.join(arg0))
            .find(|candidate| access(candidate.as_path(), AccessFlags::X_OK).is_ok())?
    };
    (found.is_absolute() && found.is_file()).then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn this_test_binary_is_found_and_executable() {
        let binary = Binary::remember();
        assert!(binary.path().is_absolute(), "{binary:?}");
        binary
            .check()
            .expect("the running test binary is executable");
        assert!(!binary.argv().is_empty());
    }

    #[test]
    fn missing_and_non_executable_files_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("herdsman");
        let binary = Binary {
            path: path.clone(),
            argv: vec![path.clone().into()],
        };
        assert!(matches!(binary.check(), Err(UpgradeError::Missing { .. })));
        std::fs::write(&path, "not a program").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        // Root may execute a file only if some execute bit is set: refused either way.
        assert!(matches!(
            binary.check(),
            Err(UpgradeError::NotExecutable { .. })
        ));
        let dir_binary = Binary {
            path: dir.path().to_path_buf(),
            argv: vec![],
        };
        assert!(matches!(
            dir_binary.check(),
            Err(UpgradeError::NotAFile { .. })
        ));
    }

    #[test]
    fn bare_names_are_looked_up_on_path_and_paths_made_absolute() {
        let sh = locate(OsStr::new("sh")).expect("sh is on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert_eq!(locate(OsStr::new("no-such-program-herdsman")), None);
        assert_eq!(
            locate(OsStr::new("/bin/sh")),
            Some(PathBuf::from("/bin/sh"))
        );
    }
}
