//! Socket activation: systemd (or `systemd-socket-activate`, or any launcher keeping the same
//! contract) binds the sockets itself and passes them as fds 3, 4, ... with `LISTEN_FDS` (how
//! many), `LISTEN_PID` (the process they are meant for) and optionally `LISTEN_FDNAMES`
//! (colon-separated names, `FileDescriptorName=` in the socket unit).
//!
//! Invariants:
//! - The fds are taken only when `LISTEN_PID` is this process: variables inherited by a process
//!   they were not meant for (a shell that started herdsman) are ignored and fds 3.. are left
//!   alone, as `sd_listen_fds` does.
//! - Each fd is checked to be a listening socket before it is owned (the `fd://N` adoption
//!   code), all or nothing; a malformed variable is an error (exit 5), never a guess.
//! - Once taken, `LISTEN_*` are removed from the master's environment, so that a re-executed
//!   master (binary upgrade keeps the pid) cannot take fd numbers that no longer mean the same.
//!   Workers never see them either way.

use tracing::{info, warn};

use crate::addr::BindSpec;
use crate::config::Config;
use crate::sockets::{self, Listener, SocketError};

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: i32 = 3;
/// More sockets than this in `LISTEN_FDS` is taken as a malformed value.
const MAX_FDS: usize = 1024;

/// Why the activation variables cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("socket activation: {var}={value:?} is not a valid number; fix the launcher, or unset {var} to bind the configured addresses")]
    Malformed { var: &'static str, value: String },
    #[error(
        "socket activation: LISTEN_FDS={count} is more sockets than herdsman takes ({MAX_FDS})"
    )]
    TooMany { count: usize },
    #[error("socket activation: LISTEN_FDNAMES names {names} sockets but LISTEN_FDS says {fds}; they must match one to one")]
    Names { names: usize, fds: usize },
    #[error("socket activation: a socket passed in LISTEN_FDS cannot be used; check the ListenStream= lines of the .socket unit (datagram sockets and FIFOs are not supported)")]
    Adopt(#[source] SocketError),
}

/// One socket passed by systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    pub fd: i32,
    /// Its `LISTEN_FDNAMES` entry, if one was given and not empty.
    pub name: Option<String>,
}

/// What the variables say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No socket activation: bind the configured addresses.
    Nothing,
    /// Variables that are not for us (why, for the log): bind the configured addresses.
    Ignored(String),
    /// These sockets are ours.
    Sockets(Vec<Passed>),
}

/// Reads `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` for process `me`. Pure.
pub fn parse(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    me: u32,
) -> Result<Found, ActivationError> {
    let Some(pid) = pid else {
        return Ok(match fds {
            None => Found::Nothing,
            Some(_) => Found::Ignored("LISTEN_FDS is set without LISTEN_PID".into()),
        });
    };
    let pid: u32 = number("LISTEN_PID", pid)?;
    if pid != me {
        return Ok(Found::Ignored(format!(
            "LISTEN_PID={pid} names another process than this one ({me})"
        )));
    }
    let Some(fds) = fds else {
        return Ok(Found::Ignored(
            "LISTEN_PID is set without LISTEN_FDS".into(),
        ));
    };
    let count: usize = number("LISTEN_FDS", fds)?;
    if count == 0 {
        return Ok(Found::Ignored("LISTEN_FDS=0 passes no socket".into()));
    }
    if count > MAX_FDS {
        return Err(ActivationError::TooMany { count });
    }
    let names: Vec<Option<String>> = match names {
        None => vec![None; count],
        Some(text) => text
            .split(':')
            .map(|n| (!n.is_empty()).then(|| n.to_string()))
            .collect(),
    };
    if names.len() != count {
        return Err(ActivationError::Names {
            names: names.len(),
            fds: count,
        });
    }
    let passed = names
        .into_iter()
        .zip(FIRST_FD..)
        .map(|(name, fd)| Passed { fd, name });
    Ok(Found::Sockets(passed.collect()))
}

fn number<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, ActivationError> {
    let malformed = || ActivationError::Malformed {
        var,
        value: value.to_string(),
    };
    // Only plain decimal digits: "+3" or " 3" is not what systemd writes.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    value.parse().map_err(|_| malformed())
}

/// The master's listeners: the sockets systemd passed to this process if there are any (the
/// configured `bind` is then not used), else the configured binds. `bind_on_cli` says whether
/// `--bind` was given, which deserves a warning when it is overridden.
pub fn listeners(config: &Config, bind_on_cli: bool) -> Result<Vec<Listener>, ListenError> {
    let var = |name| std::env::var(name).ok();
    let found = parse(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?;
    let passed = match found {
        Found::Nothing => return Ok(sockets::bind_all(&config.binds, config.backlog)?),
        Found::Ignored(why) => {
            info!("socket activation variables ignored: {why}; binding the configured addresses");
            return Ok(sockets::bind_all(&config.binds, config.backlog)?);
        }
        Found::Sockets(passed) => passed,
    };
    adopt(&passed, config.backlog, bind_on_cli)
}

fn adopt(passed: &[Passed], backlog: u32, bind_on_cli: bool) -> Result<Vec<Listener>, ListenError> {
    let specs: Vec<BindSpec> = passed.iter().map(|p| BindSpec::Fd(p.fd)).collect();
    let listeners = sockets::bind_all(&specs, backlog).map_err(ActivationError::Adopt)?;
    let count = listeners.len();
    if bind_on_cli {
        warn!(sockets = count, "socket activation: serving the sockets systemd passed; the --bind given on the command line is not used");
    } else {
        info!(
            sockets = count,
            "socket activation: serving the sockets systemd passed instead of the configured bind"
        );
    }
    for (listener, p) in listeners.iter().zip(passed) {
        info!(fd = p.fd, name = p.name.as_deref().unwrap_or("(unnamed)"), address = %listener.local(), "socket from systemd");
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // The master is still single-threaded here: nothing reads the environment concurrently.
        std::env::remove_var(var);
    }
    Ok(listeners)
}

/// The listeners could not be set up, one way or the other (exit 5).
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    Activation(#[from] ActivationError),
    #[error(transparent)]
    Bind(#[from] SocketError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sockets(found: Found) -> Vec<Passed> {
        match found {
            Found::Sockets(passed) => passed,
            other => panic!("expected sockets, got {other:?}"),
        }
    }

    #[test]
    fn sockets_for_this_process_are_numbered_from_three_with_their_names() {
        let passed = sockets(parse(Some("42"), Some("2"), Some("web:admin"), 42).unwrap());
        assert_eq!(
            passed,
            vec![
                Passed {
                    fd: 3,
                    name: Some("web".into())
                },
                Passed {
                    fd: 4,
                    name: Some("admin".into())
                },
            ]
        );
        let passed = sockets(parse(Some("42"), Some("1"), None, 42).unwrap());
        assert_eq!(passed, vec![Passed { fd: 3, name: None }]);
        let passed = sockets(parse(Some("42"), Some("1"), Some(""), 42).unwrap());
        assert_eq!(passed, vec![Passed { fd: 3, name: None }]);
    }

    #[test]
    fn variables_for_another_process_or_incomplete_are_ignored() {
        assert_eq!(parse(None, None, None, 42).unwrap(), Found::Nothing);
        for (pid, fds) in [
            (Some("41"), Some("1")),
            (None, Some("1")),
            (Some("42"), None),
            (Some("42"), Some("0")),
        ] {
            let found = parse(pid, fds, None, 42).unwrap();
            assert!(
                matches!(found, Found::Ignored(_)),
                "{pid:?} {fds:?}: {found:?}"
            );
        }
        // Another process's variables are ignored even when they are malformed otherwise.
        assert!(matches!(
            parse(Some("41"), Some("x"), Some("a:b:c"), 42),
            Ok(Found::Ignored(_))
        ));
    }

    #[test]
    fn malformed_values_are_errors() {
        for (pid, fds) in [
            ("abc", "1"),
            ("-42", "1"),
            ("", "1"),
            ("42", "one"),
            ("42", "-1"),
            ("42", " 1"),
        ] {
            let err = parse(Some(pid), Some(fds), None, 42).unwrap_err();
            assert!(
                matches!(err, ActivationError::Malformed { .. }),
                "{pid:?} {fds:?}: {err:?}"
            );
        }
        assert!(matches!(
            parse(Some("42"), Some("2"), Some("web"), 42),
            Err(ActivationError::Names { names: 1, fds: 2 })
        ));
        assert!(matches!(
            parse(Some("42"), Some("100000"), None, 42),
            Err(ActivationError::TooMany { .. })
        ));
    }
}
