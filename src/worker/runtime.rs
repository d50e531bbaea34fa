//! The Python worker runtime, embedded in the binary and written at start into a private
//! directory (mode 0700, owned by the master, removed when the master exits), so that users need
//! nothing from herdsman in their Python environment.

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
    /// Creates the directory under `$XDG_RUNTIME_DIR` if set, else the system temp directory.
    pub fn create() -> Result<RuntimeDir, RuntimeError> {
        let parent = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("herdsman-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .map_err(RuntimeError::CreateDir)?;
        let script = dir.path().join(FILE_NAME);
        write_readonly(&script, SOURCE).map_err(|source| RuntimeError::Write {
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

fn write_readonly(path: &Path, text: &str) -> io::Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o400))
}
