//! Evaluating a Python config file (`-c gunicorn.conf.py`, or gunicorn's `python:module.name`).
//! The master never embeds Python: it runs the app's interpreter once on the runtime's
//! `gunicornconf.py` (shipped inside this binary, passed with `-c`, so `herdsman check` needs no
//! runtime directory), which executes the file as gunicorn does and prints its settings as JSON.
//! The run is bounded by [`EVALUATE_TIMEOUT`]; its failures carry the file's traceback.
//!
//! This is the one place configuration loading waits for another process. At start nothing else
//! runs yet; on a reload the master loop waits for it too (at most the timeout; a config file
//! that only assigns settings takes the interpreter's start-up time, ~30 ms).

use super::gunicorn::Evaluated;
use crate::sys::capture::{self, CaptureError};
use crate::sys::python::{self, PythonError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The runtime module that evaluates the file.
const EVALUATOR: &str = include_str!("../../python/herdsman/runtime/gunicornconf.py");
/// Longest a config file may take to execute.
pub const EVALUATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a Python config file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("no interpreter to run it with")]
    Python(#[source] PythonError),
    #[error("could not run {}", python.display())]
    Run {
        python: PathBuf,
        #[source]
        source: CaptureError,
    },
    #[error("it raised an exception (run by {}):\n{traceback}", python.display())]
    Raised { python: PathBuf, traceback: String },
    #[error("it was still running after {}s (run by {}), so it was killed", timeout.as_secs(), python.display())]
    TimedOut { python: PathBuf, timeout: Duration },
    #[error("{} did not print its settings ({detail}); is it Python 3.9 or later?", python.display())]
    Output { python: PathBuf, detail: String },
}

impl EvalError {
    pub fn fix(&self) -> String {
        match self {
            EvalError::Python(_) => {
                "point --python (or HERDSMAN_PYTHON) at the app's interpreter: \
                 a Python config file is executed by it"
                    .into()
            }
            EvalError::Run { .. } | EvalError::Output { .. } => {
                "check that --python names a working Python 3 interpreter".into()
            }
            EvalError::Raised { .. } => "correct the file at the last line of the traceback; it \
                 runs as gunicorn runs it, with the app's interpreter in herdsman's working \
                 directory (`python FILE` shows the same error)"
                .into(),
            EvalError::TimedOut { .. } => "a config file should only assign settings: move slow \
                 work (network calls, heavy imports) into a hook such as `on_starting`"
                .into(),
        }
    }
}

/// Whether `path` names a Python config file rather than a TOML one.
pub fn is_python(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.starts_with("python:") || path.extension().is_some_and(|ext| ext == "py")
}

/// Runs the file with the interpreter `configured` (`python` from the command line or the
/// environment) resolves to, and reads its settings.
pub fn evaluate(
    target: &Path,
    configured: Option<&str>,
    env: &[(String, String)],
) -> Result<Evaluated, EvalError> {
    let python = python::resolve(configured.map(Path::new), env).map_err(EvalError::Python)?;
    let args = vec![
        "-c".to_string(),
        EVALUATOR.to_string(),
        "evaluate".to_string(),
        target.display().to_string(),
    ];
    let program = python.display().to_string();
    let finished =
        capture::run(&program, &args, env, EVALUATE_TIMEOUT).map_err(|source| EvalError::Run {
            python: python.clone(),
            source,
        })?;
    if finished.timed_out {
        return Err(EvalError::TimedOut {
            python,
            timeout: EVALUATE_TIMEOUT,
        });
    }
    let stderr = String::from_utf8_lossy(&finished.stderr)
        .trim_end()
        .to_string();
    if finished.code != Some(0) {
        let traceback = match stderr.is_empty() {
            true => format!("(no traceback; exit status {:?})", finished.code),
            false => stderr,
        };
        return Err(EvalError::Raised { python, traceback });
    }
    serde_json::from_slice(&finished.stdout).map_err(|e| EvalError::Output {
        python,
        detail: e.to_string(),
    })
}
