//! How a worker's failure to boot is classified, worded for the log, and mapped to the master's
//! exit code when it gives up.

use crate::exit;
use crate::sys::reap::ExitStatus;
use crate::worker::BootErrorKind;

/// Why a worker did not become ready.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The worker said why (`boot_error`), or its exit code did.
    Reported {
        kind: BootErrorKind,
        message: String,
    },
    /// It did not become ready within the boot timeout.
    Timeout,
    /// It exited or died before becoming ready without saying why.
    Died(ExitStatus),
    /// It died within moments of becoming ready.
    DiedAfterReady(ExitStatus),
    /// The interpreter could not be executed at all.
    Exec(String),
    /// The process could not be created (fork failed).
    Spawn(String),
}

impl Failure {
    pub fn from_exit(reported: Option<(BootErrorKind, String)>, status: ExitStatus) -> Failure {
        match (reported, status) {
            (Some((kind, message)), _) => Failure::Reported { kind, message },
            (None, ExitStatus::Code(code)) => match BootErrorKind::from_exit_code(code) {
                Some(kind) => Failure::Reported {
                    kind,
                    message: format!("worker exited with code {code}"),
                },
                None => Failure::Died(status),
            },
            (None, status) => Failure::Died(status),
        }
    }

    /// Retrying cannot help: the interpreter or the engine is missing.
    pub fn is_hopeless(&self) -> bool {
        matches!(
            self,
            Failure::Exec(_)
                | Failure::Reported {
                    kind: BootErrorKind::Dependency,
                    ..
                }
        )
    }

    /// The master's exit code when it gives up at first start because of this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Reported {
                kind: BootErrorKind::Import | BootErrorKind::Interface,
                ..
            } => exit::APP_LOAD,
            Failure::Reported {
                kind: BootErrorKind::Dependency,
                ..
            }
            | Failure::Exec(_) => exit::PYTHON_ENV,
            _ => exit::WORKER_BOOT,
        }
    }

    /// What to tell the user when giving up or rolling back.
    pub fn give_up_hint(&self) -> String {
        match self {
            Failure::Reported { kind: BootErrorKind::Import, message } => {
                let first = message.lines().next().unwrap_or_default();
                let first = first.trim_end_matches(SAME_TRACEBACK);
                match message.contains('\n') || message.ends_with(SAME_TRACEBACK) {
                    true => format!("the application could not be imported ({first}; its traceback is above)"),
                    false => format!("the application could not be imported: {first}"),
                }
            }
            Failure::Reported { kind: BootErrorKind::Interface, message } => message.clone(),
            Failure::Reported { kind: BootErrorKind::Dependency, message } => message.clone(),
            Failure::Reported { kind: BootErrorKind::Lifespan, .. } => {
                "the application's lifespan startup failed (its traceback is above)".into()
            }
            Failure::Reported { message, .. } => message.clone(),
            Failure::Timeout => {
                "workers never became ready within the boot timeout (raise --boot-timeout if the app is just slow to import)".into()
            }
            Failure::Died(status) => format!("workers died before becoming ready ({status})"),
            Failure::DiedAfterReady(status) => {
                format!("workers died right after becoming ready ({status})")
            }
            // The error carries its fix (`ExecError::exec_fix`): nothing about uvicorn, which
            // an interpreter that cannot even start says nothing about.
            Failure::Exec(error) => format!("workers could not be started: {error}"),
            Failure::Spawn(error) => format!("workers could not be started: {error}"),
        }
    }
}

/// What a boot error's message ends with when its traceback was printed for an earlier one.
pub const SAME_TRACEBACK: &str = " (the same traceback as the previous failure)";

/// One log line for one failed boot attempt.
pub fn describe_boot_failure(failure: &Failure) -> String {
    match failure {
        Failure::Reported { kind, message } => {
            format!("worker failed to boot ({}): {message}", kind_name(*kind))
        }
        Failure::Timeout => "worker failed to boot: boot timeout".into(),
        Failure::Died(status) => {
            format!("worker failed to boot: it exited before becoming ready ({status})")
        }
        Failure::DiedAfterReady(status) => {
            format!("worker died right after becoming ready ({status}); counted as a failed boot")
        }
        Failure::Exec(error) => format!("worker could not be started: {error}"),
        Failure::Spawn(error) => format!("worker could not be started: {error}"),
    }
}

fn kind_name(kind: BootErrorKind) -> &'static str {
    match kind {
        BootErrorKind::Import => "import error",
        BootErrorKind::Dependency => "missing dependency",
        BootErrorKind::Lifespan => "lifespan startup failed",
        BootErrorKind::Interface => "not an ASGI or WSGI app",
        BootErrorKind::Readiness => "readiness probe failed",
        BootErrorKind::Tls => "TLS setup failed",
        BootErrorKind::Other => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_failure() {
        let import = Failure::from_exit(None, ExitStatus::Code(10));
        assert_eq!(import.exit_code(), exit::APP_LOAD);
        let dep = Failure::from_exit(
            Some((BootErrorKind::Dependency, "m".into())),
            ExitStatus::Code(11),
        );
        assert!(dep.is_hopeless());
        assert_eq!(dep.exit_code(), exit::PYTHON_ENV);
        let died = Failure::from_exit(None, ExitStatus::Code(1));
        assert_eq!(died, Failure::Died(ExitStatus::Code(1)));
        assert_eq!(died.exit_code(), exit::WORKER_BOOT);
        assert_eq!(Failure::Timeout.exit_code(), exit::WORKER_BOOT);
        assert_eq!(Failure::Exec("x".into()).exit_code(), exit::PYTHON_ENV);
    }
}
