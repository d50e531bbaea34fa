//! Which Python interpreter runs the workers, resolved once per generation in the master, so that
//! a missing interpreter is one clear error instead of a failed exec per worker. In order:
//!
//! 1. `--python` (or `python` in the config): a path, or a bare name looked up on `PATH`;
//! 2. the Python environment herdsman itself is installed in: `python` (else `python3`) in the
//!    directory of the running executable, as `pip install herdsman` puts `bin/herdsman` beside
//!    the venv's `bin/python`;
//! 3. the activated virtualenv, `$VIRTUAL_ENV/bin/python`;
//! 4. `python3` on `PATH`.
//!
//! The path is returned as found, never canonicalized: a venv's `bin/python` is usually a symlink
//! to the base interpreter, and Python finds its venv from the path it was started by.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error("the Python interpreter {path} does not exist or is not executable: point --python (or `python` in the config) at one that has uvicorn installed")]
    NotExecutable { path: PathBuf },
    #[error("no `{name}` found on PATH: install herdsman into your app's virtualenv (`pip install herdsman`), activate the virtualenv, or pass --python /path/to/python")]
    NotOnPath { name: String },
}

/// Where the interpreter came from, for `herdsman check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Configured,
    BesideExecutable,
    VirtualEnv,
    Path,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Configured => "from --python or `python` in the config",
            Source::BesideExecutable => "the Python environment herdsman is installed in",
            Source::VirtualEnv => "the activated virtualenv, $VIRTUAL_ENV",
            Source::Path => "python3 on PATH",
        }
    }
}

/// Resolves the interpreter from the configured value, the directory of the running executable
/// and the master's environment.
pub fn resolve(
    configured: Option<&Path>,
    env: &[(String, String)],
) -> Result<PathBuf, PythonError> {
    resolve_with_source(configured, env).map(|(path, _)| path)
}

/// [`resolve`], saying which rule chose the interpreter.
pub fn resolve_with_source(
    configured: Option<&Path>,
    env: &[(String, String)],
) -> Result<(PathBuf, Source), PythonError> {
    // On Linux this reads /proc/self/exe: the real path, symlinks resolved, still right after
    // the file was replaced by an upgrade (the last component then ends in " (deleted)").
    let exe = std::env::current_exe().ok();
    resolve_from(configured, env, exe.as_deref())
}

fn resolve_from(
    configured: Option<&Path>,
    env: &[(String, String)],
    exe: Option<&Path>,
) -> Result<(PathBuf, Source), PythonError> {
    let lookup = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if let Some(path) = configured {
        let found = if path.components().count() > 1 || path.is_absolute() {
            executable(path)
        } else {
            on_path(&path.display().to_string(), lookup("PATH"))
        };
        return found.map(|path| (path, Source::Configured));
    }
    if let Some(python) = exe.and_then(beside_executable) {
        return Ok((python, Source::BesideExecutable));
    }
    if let Some(venv) = lookup("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let candidate = Path::new(venv).join("bin/python");
        if is_executable(&candidate) {
            return Ok((candidate, Source::VirtualEnv));
        }
    }
    on_path("python3", lookup("PATH")).map(|path| (path, Source::Path))
}

/// `python` or `python3` in the directory of the executable `exe`.
fn beside_executable(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    ["python", "python3"]
        .iter()
        .map(|name| dir.join(name))
        .find(|candidate| is_executable(candidate))
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

    fn script(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn prefers_configured_then_virtualenv_then_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let py = script(&bin, "python");
        let venv = vec![("VIRTUAL_ENV".to_string(), dir.path().display().to_string())];
        assert_eq!(
            resolve_from(None, &venv, None).expect("venv python"),
            (py.clone(), Source::VirtualEnv)
        );
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
            resolve_from(None, &path, None),
            Err(PythonError::NotOnPath { .. })
        ));
    }

    #[test]
    fn the_environment_herdsman_is_installed_in_comes_before_virtual_env_and_path() {
        let installed = tempfile::tempdir().expect("temp dir");
        let exe = script(installed.path(), "herdsman");
        let own = script(installed.path(), "python");
        let other = tempfile::tempdir().expect("temp dir");
        let other_py = script(other.path(), "python");
        script(other.path(), "python3");
        let env = vec![
            ("VIRTUAL_ENV".to_string(), "/nonexistent".to_string()),
            ("PATH".to_string(), other.path().display().to_string()),
        ];
        assert_eq!(
            resolve_from(None, &env, Some(&exe)).expect("beside the executable"),
            (own, Source::BesideExecutable)
        );
        // An explicit --python still wins.
        assert_eq!(
            resolve_from(Some(&other_py), &env, Some(&exe)).expect("configured"),
            (other_py, Source::Configured)
        );
    }

    #[test]
    fn python3_beside_the_executable_counts_and_a_lone_binary_falls_through() {
        let installed = tempfile::tempdir().expect("temp dir");
        let exe = script(installed.path(), "herdsman");
        let path = vec![("PATH".to_string(), "/nonexistent".to_string())];
        assert!(matches!(
            resolve_from(None, &path, Some(&exe)),
            Err(PythonError::NotOnPath { .. })
        ));
        let py3 = script(installed.path(), "python3");
        assert_eq!(
            resolve_from(None, &path, Some(&exe)).expect("python3 beside"),
            (py3, Source::BesideExecutable)
        );
    }
}
