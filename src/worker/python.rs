//! Which Python interpreter runs the workers: `--python` if given, else the active virtualenv's
//! (`$VIRTUAL_ENV/bin/python`), else `python3` on `PATH`. Resolved once per generation, in the
//! master, so a missing interpreter is one clear error instead of a failed exec per worker.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error("the Python interpreter {path} does not exist or is not executable: point --python (or `python` in the config) at one that has uvicorn installed")]
    NotExecutable { path: PathBuf },
    #[error("no `{name}` found on PATH: install Python 3, activate your virtualenv, or pass --python /path/to/python")]
    NotOnPath { name: String },
}

/// Resolves the interpreter from the configured value and the master's environment.
pub fn resolve(
    configured: Option<&Path>,
    env: &[(String, String)],
) -> Result<PathBuf, PythonError> {
    let lookup = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if let Some(path) = configured {
        return if path.components().count() > 1 || path.is_absolute() {
            executable(path)
        } else {
            on_path(&path.display().to_string(), lookup("PATH"))
        };
    }
    if let Some(venv) = lookup("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let candidate = Path::new(venv).join("bin/python");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    on_path("python3", lookup("PATH"))
}

fn executable(path: &Path) -> Result<PathBuf, PythonError> {
    if is_executable(path) {
        Ok(path.to_path_buf())
    } else {
        Err(PythonError::NotExecutable {
            path: path.to_path_buf(),
        })
    }
}

fn on_path(name: &str, path_var: Option<&str>) -> Result<PathBuf, PythonError> {
    path_var
        .unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| PythonError::NotOnPath {
            name: name.to_string(),
        })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_configured_then_virtualenv_then_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let py = bin.join("python");
        std::fs::write(&py, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let venv = vec![("VIRTUAL_ENV".to_string(), dir.path().display().to_string())];
        assert_eq!(resolve(None, &venv).expect("venv python"), py);
        assert_eq!(resolve(Some(&py), &[]).expect("configured"), py);
        let missing = dir.path().join("nope/python");
        assert!(matches!(
            resolve(Some(&missing), &venv),
            Err(PythonError::NotExecutable { .. })
        ));
        let path = vec![("PATH".to_string(), bin.display().to_string())];
        assert_eq!(
            resolve(Some(Path::new("python")), &path).expect("on PATH"),
            py
        );
        assert!(matches!(
            resolve(None, &path),
            Err(PythonError::NotOnPath { .. })
        ));
    }
}
