//! The Python worker runtime (the `herdsman` package and its launcher, from `python/`),
//! embedded in the binary by `build.rs` and written at start into a private directory (mode
//! 0700, owned by the master, removed when the master exits), so that users need nothing from
//! herdsman in their Python environment.
//!
//! A root master's workers may run as another user (`user`), who must be able to read the
//! runtime: then the directories are 0755 (Python's importer lists a directory to find a module
//! in it) and the files 0444, all still owned by root so nobody else can change them, and the
//! directory is made where every user can reach it: `$XDG_RUNTIME_DIR` or the system temp
//! directory only if all their ancestors are searchable by everyone, else `/tmp`.
//!
//! The master holds a lock in its directory for its whole life, and a new one first removes the
//! directories whose lock nobody holds any more (`reclaim`): a master that was SIGKILLed leaves
//! its directory behind only until the next start.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::reclaim::{self, Reclaimed};

/// The runtime's files, shipped inside the binary: (path relative to the runtime directory,
/// contents), sorted by path.
pub const FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/runtime_files.rs"));
/// The launcher the master runs with the app's interpreter.
const LAUNCHER: &str = "herdsman_worker.py";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not create the runtime directory")]
    CreateDir(#[source] io::Error),
    #[error("could not lock the runtime directory {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not write the worker runtime to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The private directory holding the runtime; removed on drop.
pub struct RuntimeDir {
    dir: tempfile::TempDir,
    script: PathBuf,
    /// Holds the directory's lock (released when the master's process ends, however).
    _lock: fs::File,
    reclaimed: Reclaimed,
}

impl RuntimeDir {
    /// Creates the directory under `$XDG_RUNTIME_DIR` if set, else the system temp directory;
    /// for a root master, readable by every user (see the module doc).
    pub fn create() -> Result<RuntimeDir, RuntimeError> {
        let root = nix::unistd::geteuid().is_root();
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        let candidates = xdg.into_iter().chain([std::env::temp_dir()]);
        let mut usable = candidates.filter(|p| p.is_dir());
        let parent = match root {
            true => usable
                .find(|p| searchable_by_all(p))
                .unwrap_or_else(|| PathBuf::from("/tmp")),
            false => usable.next().unwrap_or_else(std::env::temp_dir),
        };
        let reclaimed = reclaim::reclaim(&parent);
        let (dir_mode, file_mode) = if root { (0o755, 0o444) } else { (0o700, 0o400) };
        let dir = tempfile::Builder::new()
            .prefix(reclaim::PREFIX)
            .permissions(fs::Permissions::from_mode(dir_mode))
            .tempdir_in(parent)
            .map_err(RuntimeError::CreateDir)?;
        let lock = reclaim::lock(dir.path()).map_err(|source| RuntimeError::Lock {
            path: dir.path().to_path_buf(),
            source,
        })?;
        for (relative, text) in FILES {
            let path = dir.path().join(relative);
            write_file(&path, text, dir_mode, file_mode)
                .map_err(|source| RuntimeError::Write { path, source })?;
        }
        let script = dir.path().join(LAUNCHER);
        Ok(RuntimeDir {
            dir,
            script,
            _lock: lock,
            reclaimed,
        })
    }

    /// The directories of dead masters removed before this one was made, and those that
    /// could not be (for the caller to log).
    pub fn reclaimed(&self) -> &Reclaimed {
        &self.reclaimed
    }

    pub fn script(&self) -> &Path {
        &self.script
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes one runtime file read-only, creating its package directories with `dir_mode`.
fn write_file(path: &Path, text: &str, dir_mode: u32, file_mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(parent)?;
        }
    }
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(file_mode))
}

/// Whether every directory from `/` down to `path` lets everyone through (`o+x`).
fn searchable_by_all(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    path.ancestors()
        .all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_and_the_package_are_embedded() {
        let paths: Vec<&str> = FILES.iter().map(|(path, _)| *path).collect();
        assert!(paths.contains(&LAUNCHER), "{paths:?}");
        assert!(paths.contains(&"herdsman/runtime/main.py"), "{paths:?}");
        assert!(paths
            .iter()
            .all(|p| !p.contains("__pycache__") && !p.contains("tests/")));
    }

    #[test]
    fn every_file_is_written_read_only_under_its_package() {
        let runtime = RuntimeDir::create().expect("temp dir is writable");
        assert!(runtime.script().is_file());
        for (relative, text) in FILES {
            let path = runtime.path().join(relative);
            assert_eq!(fs::read_to_string(&path).expect("written"), *text);
            let mode = fs::metadata(&path).expect("written").permissions().mode();
            assert_eq!(mode & 0o222, 0, "{relative} is writable: {mode:o}");
        }
    }
}
