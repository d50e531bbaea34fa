//! Which engine a generation's workers run, and for `engine = "native"` where the engine's library
//! is: located once per generation in the master, as the interpreter is (`python`), so that a
//! missing library is one clear error from `herdsman check`, at start and on reload, instead of a
//! failed import in every worker. Nothing is looked up for uvicorn. The library is the first file
//! that exists of:
//!
//! 1. `HERDSMAN_ENGINE_LIB`, an explicit override: when it is set, nothing else is tried, and a
//!    path that names no file is the error;
//! 2. `libherdsman_engine.so` in the directory of the running executable: cargo's output, where
//!    `target/<profile>/herdsman` sits beside `target/<profile>/libherdsman_engine.so` (the
//!    workspace builds both);
//! 3. the wheel's layout: the executable is `<venv>/bin/herdsman` and the library
//!    `<venv>/lib/python3.*/site-packages/herdsman/_engine.abi3.so` (or under `lib64/`), the
//!    `python3.*` directories tried in name order.
//!
//! The executable is `std::env::current_exe()`, on Linux /proc/self/exe: a symlinked `herdsman`
//! (`~/.local/bin/herdsman -> /opt/herdsman/target/release/herdsman`) resolves to its target, so
//! the library is looked for beside the target, not beside the link; after the binary was
//! replaced on disk the name ends in " (deleted)", and its directory is still the right one. The
//! path returned is absolute (a relative override is taken from the master's working directory:
//! the workers may `chdir`) and not canonicalized.

use std::path::{Path, PathBuf};

use crate::config::{Engine, ENGINE_LIB_ENV_VAR};

/// The library's name as cargo builds it (`engine/Cargo.toml`, `[lib] name`).
const CARGO_NAME: &str = "libherdsman_engine.so";
/// The library inside the wheel's `site-packages` (the extension module `herdsman._engine`).
const WHEEL_PATH: &str = "site-packages/herdsman/_engine.abi3.so";

#[derive(Debug, thiserror::Error)]
pub enum EngineLibError {
    #[error("{ENGINE_LIB_ENV_VAR} names {path}, which {problem}: point it at the native engine's library (libherdsman_engine.so), or unset it to use the one built or installed with herdsman")]
    Override {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("engine = \"native\" needs the native engine's library, which is not in any of: {}; build it with `cargo build --release` (it is built with the master) or install the herdsman wheel; or set {ENGINE_LIB_ENV_VAR}", .looked_at.join(", "))]
    NotFound { looked_at: Vec<String> },
}

/// The engine the workers of a generation run, with what it needs already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEngine {
    Uvicorn,
    /// The native engine, and the absolute path of its library.
    Native {
        lib: PathBuf,
    },
}

/// Where the library was found, for `herdsman check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Override,
    BesideExecutable,
    Wheel,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Override => "from HERDSMAN_ENGINE_LIB",
            Source::BesideExecutable => "beside the herdsman executable, as cargo builds it",
            Source::Wheel => "in the Python environment herdsman is installed in",
        }
    }
}

/// The engine `engine` names, for `Native` with its library located from the master's
/// environment `env` and the running executable.
pub fn resolve(engine: Engine, env: &[(String, String)]) -> Result<WorkerEngine, EngineLibError> {
    match engine {
        Engine::Uvicorn => Ok(WorkerEngine::Uvicorn),
        Engine::Native => locate(env).map(|(lib, _)| WorkerEngine::Native { lib }),
    }
}

/// The native engine's library, and which rule found it.
pub fn locate(env: &[(String, String)]) -> Result<(PathBuf, Source), EngineLibError> {
    let exe = std::env::current_exe().ok();
    locate_from(env, exe.as_deref())
}

fn locate_from(
    env: &[(String, String)],
    exe: Option<&Path>,
) -> Result<(PathBuf, Source), EngineLibError> {
    let explicit = env.iter().rev().find(|(k, _)| k == ENGINE_LIB_ENV_VAR);
    if let Some((_, path)) = explicit.filter(|(_, v)| !v.is_empty()) {
        return given(Path::new(path)).map(|path| (path, Source::Override));
    }
    let Some(dir) = exe.and_then(Path::parent) else {
        let unknown = "beside the herdsman executable (its path could not be read)".to_string();
        return Err(EngineLibError::NotFound {
            looked_at: vec![unknown],
        });
    };
    let beside = dir.join(CARGO_NAME);
    let mut looked_at = vec![beside.display().to_string()];
    if is_file(&beside) {
        return Ok((beside, Source::BesideExecutable));
    }
    // The wheel installs the executable as `<venv>/bin/herdsman`; elsewhere there is no venv.
    let venv = match dir.file_name() {
        Some(name) if name == "bin" => dir.parent(),
        _ => None,
    };
    let lib_dirs = venv.map(|venv| [venv.join("lib"), venv.join("lib64")]);
    for lib_dir in lib_dirs.into_iter().flatten() {
        looked_at.push(format!("{}/python3.*/{WHEEL_PATH}", lib_dir.display()));
        if let Some(found) = in_python_dirs(&lib_dir) {
            return Ok((found, Source::Wheel));
        }
    }
    Err(EngineLibError::NotFound { looked_at })
}

/// The override, made absolute; an error unless it names a file.
fn given(path: &Path) -> Result<PathBuf, EngineLibError> {
    let problem = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => None,
        Ok(_) => Some("is not a file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist"),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Some("cannot be reached (permission denied)")
        }
        Err(_) => Some("cannot be checked"),
    };
    let absolute = std::path::absolute(path);
    match (problem, absolute) {
        (None, Ok(absolute)) => Ok(absolute),
        (None, Err(_)) => Err(EngineLibError::Override {
            path: path.to_path_buf(),
            problem: "cannot be made absolute (the working directory is gone)",
        }),
        (Some(problem), _) => Err(EngineLibError::Override {
            path: path.to_path_buf(),
            problem,
        }),
    }
}

/// The wheel's library under the first `python3.*` directory of `lib_dir` that has it.
fn in_python_dirs(lib_dir: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(lib_dir)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3."))
        .map(|entry| entry.path())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| dir.join(WHEEL_PATH))
        .find(|candidate| is_file(candidate))
}

fn is_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) -> PathBuf {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, b"\x7fELF").expect("write");
        path.to_path_buf()
    }

    fn override_env(path: &Path) -> Vec<(String, String)> {
        vec![(ENGINE_LIB_ENV_VAR.to_string(), path.display().to_string())]
    }

    #[test]
    fn uvicorn_looks_nothing_up() {
        let env = override_env(Path::new("/nonexistent/lib.so"));
        assert_eq!(
            resolve(Engine::Uvicorn, &env).ok(),
            Some(WorkerEngine::Uvicorn)
        );
    }

    #[test]
    fn cargo_output_beside_the_executable_is_found() {
        let dir = tempfile::tempdir().expect("temp dir");
        let exe = touch(&dir.path().join("target/debug/herdsman"));
        let lib = touch(&dir.path().join("target/debug/libherdsman_engine.so"));
        assert_eq!(
            locate_from(&[], Some(&exe)).expect("found"),
            (lib, Source::BesideExecutable)
        );
    }

    #[test]
    fn the_wheel_layout_is_found_under_lib_or_lib64() {
        let venv = tempfile::tempdir().expect("temp dir");
        let exe = touch(&venv.path().join("bin/herdsman"));
        std::fs::create_dir_all(venv.path().join("lib/python3.11/site-packages")).expect("mkdir");
        let lib = touch(&venv.path().join("lib64/python3.12").join(WHEEL_PATH));
        assert_eq!(
            locate_from(&[], Some(&exe)).expect("found"),
            (lib, Source::Wheel)
        );
        let first = touch(&venv.path().join("lib/python3.10").join(WHEEL_PATH));
        touch(&venv.path().join("lib/python3.13").join(WHEEL_PATH));
        assert_eq!(locate_from(&[], Some(&exe)).expect("found").0, first);
    }

    #[test]
    fn the_override_wins_and_is_made_absolute() {
        let dir = tempfile::tempdir().expect("temp dir");
        let exe = touch(&dir.path().join("herdsman"));
        touch(&dir.path().join(CARGO_NAME));
        let other = touch(&dir.path().join("elsewhere/engine.so"));
        assert_eq!(
            locate_from(&override_env(&other), Some(&exe)).expect("override"),
            (other, Source::Override)
        );
        // A relative override is taken from the working directory (the crate root in tests).
        let relative = Path::new("Cargo.toml");
        let (path, _) = locate_from(&override_env(relative), Some(&exe)).expect("override");
        assert!(
            path.is_absolute() && path.ends_with("Cargo.toml"),
            "{path:?}"
        );
        // Empty counts as unset, as for every HERDSMAN_* variable.
        let empty = vec![(ENGINE_LIB_ENV_VAR.to_string(), String::new())];
        assert_eq!(
            locate_from(&empty, Some(&exe)).expect("beside").1,
            Source::BesideExecutable
        );
    }

    #[test]
    fn a_missing_override_is_the_error_even_with_a_library_beside() {
        let dir = tempfile::tempdir().expect("temp dir");
        let exe = touch(&dir.path().join("herdsman"));
        touch(&dir.path().join(CARGO_NAME));
        let missing = dir.path().join("nope.so");
        let error = locate_from(&override_env(&missing), Some(&exe)).expect_err("missing");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "HERDSMAN_ENGINE_LIB names {}, which does not exist: point it at",
                missing.display()
            )),
            "{text}"
        );
        let error = locate_from(&override_env(dir.path()), Some(&exe)).expect_err("a directory");
        assert!(error.to_string().contains("which is not a file"), "{error}");
    }

    #[test]
    fn not_found_names_every_place_and_the_fix() {
        let venv = tempfile::tempdir().expect("temp dir");
        let exe = touch(&venv.path().join("bin/herdsman"));
        let error = locate_from(&[], Some(&exe)).expect_err("nothing there");
        let root = venv.path().display();
        let expected = format!(
            "engine = \"native\" needs the native engine's library, which is not in any of: \
             {root}/bin/libherdsman_engine.so, \
             {root}/lib/python3.*/site-packages/herdsman/_engine.abi3.so, \
             {root}/lib64/python3.*/site-packages/herdsman/_engine.abi3.so; \
             build it with `cargo build --release` (it is built with the master) or install the \
             herdsman wheel; or set HERDSMAN_ENGINE_LIB"
        );
        assert_eq!(error.to_string(), expected);
        // Outside a bin/ directory there is no venv to look in.
        let dir = tempfile::tempdir().expect("temp dir");
        let exe = touch(&dir.path().join("target/release/herdsman"));
        let EngineLibError::NotFound { looked_at } = locate_from(&[], Some(&exe)).unwrap_err()
        else {
            panic!("not found");
        };
        let beside = dir.path().join("target/release/libherdsman_engine.so");
        assert_eq!(looked_at, [beside.display().to_string()]);
    }

    #[test]
    fn native_resolves_to_an_absolute_library() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lib = touch(&dir.path().join("libherdsman_engine.so"));
        let engine = resolve(Engine::Native, &override_env(&lib)).expect("override");
        assert_eq!(engine, WorkerEngine::Native { lib });
    }
}
