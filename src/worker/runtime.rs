//! The Python worker runtime, embedded in the binary and written at start into a private
//! directory (mode 0700, owned by the master, removed when the master exits), so that users need
//! nothing from herdsman in their Python environment.
//!
//! A root master's workers may run as another user (`user`), who must be able to read the
//! script: then the directory is 0711 and the script 0444 (still owned by root, so nobody else
//! can change them, and the random directory name cannot be listed), and the directory is made
//! where every user can reach it: `$XDG_RUNTIME_DIR` or the system temp directory only if all
//! their ancestors are searchable by everyone, else `/tmp`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The runtime's source, shipped inside the binary.
pub const SOURCE: &str = include_str!("runtime/herdsman_worker.py");
const FILE_NAME: &str = "herdsman_worker.py";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not create the runtime directory")]
    CreateDir(#[source] io::Error),
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
        let (dir_mode, file_mode) = if root { (0o711, 0o444) } else { (0o700, 0o400) };
        let dir = tempfile::Builder::new()
            .prefix("herdsman-")
            .permissions(fs::Permissions::from_mode(dir_mode))
            .tempdir_in(parent)
            .map_err(RuntimeError::CreateDir)?;
        let script = dir.path().join(FILE_NAME);
        write_readonly(&script, SOURCE, file_mode).map_err(|source| RuntimeError::Write {
            path: script.clone(),
            source,
        })?;
        Ok(RuntimeDir { dir, script })
    }

    pub fn script(&self) -> &Path {
        &self.script
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn write_readonly(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Whether every directory from `/` down to `path` lets everyone through (`o+x`).
fn searchable_by_all(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    path.ancestors()
        .all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}
