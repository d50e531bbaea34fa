//! Exit codes of the `herdsman` binary: one named constant each, documented in one table
//! (docs/exit-codes.md mirrors it). Scripts and supervisors rely on these numbers: never reuse one
//! for a different meaning.

/// Clean stop: a graceful or quick stop requested by a signal, or `check` found no problem.
pub const OK: i32 = 0;
/// An unexpected operating-system failure in the master (fork impossible, poll failed, ...).
pub const FAILURE: i32 = 1;
/// Bad command line or configuration: nothing was started.
pub const USAGE: i32 = 2;
/// Workers could not boot at first start (never became ready, crashed in lifespan startup, boot
/// timeout), after the startup attempts were used up. Same number as gunicorn's WORKER_BOOT_ERROR.
pub const WORKER_BOOT: i32 = 3;
/// The application failed to import or load at first start. Same number as gunicorn's
/// APP_LOAD_ERROR.
pub const APP_LOAD: i32 = 4;
/// A listening socket could not be set up (address in use, unix path taken, bad `fd://`).
pub const BIND: i32 = 5;
/// The Python environment is unusable: the interpreter cannot be started, or the engine
/// (uvicorn) or the WSGI adapter is not installed in it.
pub const PYTHON_ENV: i32 = 6;

/// Every code with its meaning, for `--help` texts and the docs test.
pub const TABLE: &[(i32, &str, &str)] = &[
    (OK, "OK", "clean stop, or `check` found no problem"),
    (
        FAILURE,
        "FAILURE",
        "unexpected operating-system failure in the master",
    ),
    (
        USAGE,
        "USAGE",
        "bad command line or configuration; nothing was started",
    ),
    (
        WORKER_BOOT,
        "WORKER_BOOT",
        "workers could not boot at first start",
    ),
    (
        APP_LOAD,
        "APP_LOAD",
        "the application failed to import at first start",
    ),
    (BIND, "BIND", "a listening socket could not be set up"),
    (
        PYTHON_ENV,
        "PYTHON_ENV",
        "the Python interpreter, uvicorn or a2wsgi is missing or unusable",
    ),
];
