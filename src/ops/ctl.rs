//! `herdsman ctl`: sends one request to a running master's control socket and prints the answer,
//! for people by default or unchanged with `--json`.
//!
//! Without `--socket` it looks in this user's private directory
//! (`${XDG_RUNTIME_DIR:-/tmp}/herdsman-<uid>/`) for sockets a master answers on: exactly one is
//! used; none or several is an error that says what to pass. `--pid` picks one of several: the
//! socket named after that master's pid (given as a number or as the master's `--pid` file).
//! Exit codes ([`CODES`]): 0 the
//! master did it, 1 the master reported a failure, 2 usage, 3 no master could be reached.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::control::{is_gone, own_private_dir, private_dirs};
use super::protocol::{Request, Status};
use super::render;

/// The master did what was asked.
pub const OK: i32 = 0;
/// The master answered with a failure (a reload that failed or was refused, a bad request).
pub const FAILED: i32 = 1;
/// Bad command line, a bad `--pid`, or several masters and no `--pid` or `--socket`.
pub const USAGE: i32 = 2;
/// No master could be reached: no socket, nobody listening, permission denied, or no answer.
pub const UNREACHABLE: i32 = 3;

/// Every exit code of `herdsman ctl`, for the docs test.
pub const CODES: &[(i32, &str, &str)] = &[
    (OK, "OK", "the master did what was asked"),
    (FAILED, "FAILED", "the master answered with a failure"),
    (
        USAGE,
        "USAGE",
        "bad command line, a bad --pid, or several masters and no --pid or --socket",
    ),
    (
        UNREACHABLE,
        "UNREACHABLE",
        "no master could be reached, or it did not answer in time",
    ),
];

/// `herdsman ctl [--socket PATH] [--json] [--timeout DURATION] COMMAND`; the options may also
/// follow the command (`herdsman ctl status --json`), as with kubectl or systemctl.
#[derive(Args, Debug, Clone)]
pub struct CtlArgs {
    /// The master's control socket [default: the only running master of this user, found in
    /// ${XDG_RUNTIME_DIR:-/tmp}/herdsman-UID/].
    #[arg(long, value_name = "PATH", global = true, conflicts_with = "pid")]
    pub socket: Option<PathBuf>,

    /// The master to talk to when several run: its pid, or its pidfile (the master's `--pid
    /// FILE`); its socket is looked for where `--socket` would default to.
    #[arg(long, value_name = "PID|FILE", global = true)]
    pub pid: Option<String>,

    /// Print the master's answer as JSON, unchanged.
    #[arg(long, global = true)]
    pub json: bool,

    /// How long to wait for the answer, e.g. 30s, 10m [default: 30s; 15m for reload].
    #[arg(long, value_name = "DURATION", global = true)]
    pub timeout: Option<String>,

    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum CtlCommand {
    /// Show the master and its workers.
    Status,
    /// Reload the configuration and replace every worker; waits for the outcome.
    Reload,
    /// Set the target number of workers.
    Scale {
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        workers: u32,
    },
    /// Stop gracefully, like SIGTERM.
    Stop,
    /// Stop quickly, like SIGQUIT.
    Quit,
    /// Make /readyz answer 503 while the workers keep serving.
    Drain,
    /// End a drain.
    Undrain,
}

impl CtlCommand {
    fn request(&self) -> Request {
        match self {
            CtlCommand::Status => Request::Status,
            CtlCommand::Reload => Request::Reload,
            CtlCommand::Scale { workers } => Request::Scale { workers: *workers },
            CtlCommand::Stop => Request::Stop,
            CtlCommand::Quit => Request::Quit,
            CtlCommand::Drain => Request::Drain,
            CtlCommand::Undrain => Request::Undrain,
        }
    }

    fn default_timeout(&self) -> Duration {
        match self {
            CtlCommand::Reload => Duration::from_secs(15 * 60),
            _ => Duration::from_secs(30),
        }
    }
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("--timeout {given:?} is not a duration such as 30s or 10m")]
    Timeout { given: String },
    #[error("no running herdsman found in {}; pass --socket PATH", dir.display())]
    NoMaster { dir: PathBuf },
    #[error(
        "several herdsman masters run for this user: {}; pass --pid PID (the number in a \
         socket's name, or the master's pidfile) or --socket PATH",
        list(sockets)
    )]
    Several { sockets: Vec<PathBuf> },
    #[error("--pid {given:?}: {why}")]
    Pid { given: String, why: String },
    #[error(
        "no running herdsman master with pid {pid} has its control socket in {}; pass --socket \
         PATH if it was started with --control-socket",
        dir.display()
    )]
    NoSuchMaster { pid: u32, dir: PathBuf },
    #[error("could not connect to {}{}", path.display(), connect_hint(.source))]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not send the request to {}", path.display())]
    Send {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no answer from the master at {} within {}", path.display(), humantime::format_duration(*timeout))]
    NoAnswer { path: PathBuf, timeout: Duration },
    #[error(
        "the master at {} closed the connection without answering (only the master's user and \
         root may use the control socket; its log says more)",
        path.display()
    )]
    Closed { path: PathBuf },
    #[error("the answer from {} is not JSON: {line:?}", path.display())]
    Garbled { path: PathBuf, line: String },
}

impl CtlError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Timeout { .. } | CtlError::Several { .. } | CtlError::Pid { .. } => USAGE,
            _ => UNREACHABLE,
        }
    }
}

fn list(sockets: &[PathBuf]) -> String {
    let names: Vec<String> = sockets.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

fn connect_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::NotFound => ": no such socket (is herdsman running?)",
        io::ErrorKind::ConnectionRefused => ": nobody listens there (the master is gone)",
        io::ErrorKind::PermissionDenied => {
            ": permission denied (the control socket admits the master's user and root)"
        }
        _ => "",
    }
}

/// Runs `herdsman ctl`; returns the exit code.
pub fn run(args: &CtlArgs) -> i32 {
    match exchange(args) {
        Ok(answer) => print(args, &answer),
        Err(e) => {
            eprintln!("herdsman ctl: {}", crate::errors::error_chain(&e));
            e.exit_code()
        }
    }
}

/// Sends the request and returns the answer line.
fn exchange(args: &CtlArgs) -> Result<String, CtlError> {
    let timeout = match &args.timeout {
        Some(given) => humantime::parse_duration(given.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| CtlError::Timeout {
                given: given.clone(),
            })?,
        None => args.command.default_timeout(),
    };
    let (mut stream, path) = match &args.socket {
        Some(path) => (connect(path)?, path.clone()),
        None => {
            let pid = args.pid.as_deref().map(master_pid).transpose()?;
            discover(pid)?
        }
    };
    let send_failed = |source| CtlError::Send {
        path: path.clone(),
        source,
    };
    stream
        .set_write_timeout(Some(timeout))
        .map_err(send_failed)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(send_failed)?;
    let line = args.command.request().to_line();
    stream.write_all(line.as_bytes()).map_err(send_failed)?;
    let mut answer = String::new();
    match BufReader::new(stream).read_line(&mut answer) {
        Ok(0) => return Err(CtlError::Closed { path }),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Err(CtlError::NoAnswer { path, timeout })
        }
        Err(_) => return Err(CtlError::Closed { path }),
    }
    match serde_json::from_str::<Value>(&answer) {
        Ok(_) => Ok(answer),
        Err(_) => Err(CtlError::Garbled { path, line: answer }),
    }
}

fn connect(path: &Path) -> Result<UnixStream, CtlError> {
    UnixStream::connect(path).map_err(|source| CtlError::Connect {
        path: path.to_path_buf(),
        source,
    })
}

/// `--pid`'s master: a number, or a file holding one (a pidfile, as the master's `--pid` writes).
fn master_pid(given: &str) -> Result<u32, CtlError> {
    let bad = |why: String| CtlError::Pid {
        given: given.to_string(),
        why,
    };
    let number = |text: &str| text.trim().parse::<u32>().ok().filter(|&pid| pid > 0);
    if let Some(pid) = number(given) {
        return Ok(pid);
    }
    match std::fs::read_to_string(given) {
        Ok(text) => number(&text).ok_or_else(|| {
            bad(format!(
                "the file holds {:?}, not a pid; give the master's pid or its pidfile",
                text.trim()
            ))
        }),
        Err(e) => Err(bad(format!(
            "neither a pid nor a readable pidfile ({e}); give the master's pid or its pidfile"
        ))),
    }
}

/// The one socket a master answers on, in the private directory (or its fallbacks: a directory
/// another user holds is never looked in); with `pid`, that master's (`<pid>.sock`).
fn discover(pid: Option<u32>) -> Result<(UnixStream, PathBuf), CtlError> {
    let dir = own_private_dir();
    let wanted = pid.map(|pid| format!("{pid}.sock"));
    let mut paths: Vec<PathBuf> = private_dirs(&dir)
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "sock"))
        .filter(|p| {
            wanted
                .as_deref()
                .is_none_or(|name| p.file_name().is_some_and(|f| f == name))
        })
        .collect();
    paths.sort();
    let mut live = Vec::new();
    for path in paths {
        match UnixStream::connect(&path) {
            Ok(stream) => live.push((Ok(stream), path)),
            Err(e) if is_gone(&e) => {}
            Err(e) => live.push((Err(e), path)),
        }
    }
    match (live.len(), pid) {
        (0, Some(pid)) => Err(CtlError::NoSuchMaster { pid, dir }),
        (0, None) => Err(CtlError::NoMaster { dir }),
        (1, _) => {
            let (stream, path) = live.pop().expect("one candidate");
            match stream {
                Ok(stream) => Ok((stream, path)),
                Err(source) => Err(CtlError::Connect { path, source }),
            }
        }
        // Two directories holding the same pid's socket (the fallbacks) are several as well.
        _ => Err(CtlError::Several {
            sockets: live.into_iter().map(|(_, path)| path).collect(),
        }),
    }
}

/// Prints the answer; returns the exit code.
fn print(args: &CtlArgs, answer: &str) -> i32 {
    let value: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
    let ok = value["ok"].as_bool() == Some(true);
    if args.json {
        println!("{}", answer.trim_end());
        return if ok { OK } else { FAILED };
    }
    if !ok {
        let error = value["error"]
            .as_str()
            .unwrap_or("the master reported a failure");
        eprintln!("herdsman ctl: {error}");
        return FAILED;
    }
    println!("{}", human(&args.command, &value));
    OK
}

/// What a successful answer means, in words.
fn human(command: &CtlCommand, v: &Value) -> String {
    match command {
        CtlCommand::Status => match serde_json::from_value::<Status>(v.clone()) {
            Ok(status) => render::status(&status).trim_end().to_string(),
            Err(_) => v.to_string(),
        },
        CtlCommand::Reload => format!(
            "reloaded: generation {} is serving; the previous workers finish their requests and exit",
            v["generation"]
        ),
        CtlCommand::Scale { .. } => format!(
            "target workers: {} -> {}",
            v["previous"], v["target"]
        ),
        CtlCommand::Stop => {
            "stopping gracefully: workers finish their requests, then the master exits".into()
        }
        CtlCommand::Quit => "stopping quickly".into(),
        CtlCommand::Drain => {
            "drained: /readyz answers 503 while the workers keep serving".into()
        }
        CtlCommand::Undrain => "undrained: /readyz follows the workers again".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/exit-codes.md, whose `## herdsman ctl` table documents [`CODES`].
    const DOC: &str = include_str!("../../docs/exit-codes.md");

    #[test]
    fn every_ctl_exit_code_is_documented() {
        let section = DOC
            .split_once("## herdsman ctl")
            .map(|(_, rest)| rest)
            .expect("docs/exit-codes.md has a `## herdsman ctl` section");
        let rows: Vec<Vec<String>> = section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2)
            .map(|line| {
                line.trim_matches('|')
                    .split('|')
                    .map(|cell| cell.trim().trim_matches('`').to_string())
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), CODES.len(), "{rows:?}");
        for (row, (code, name, _)) in rows.iter().zip(CODES) {
            assert_eq!(
                (row[0].as_str(), row[1].as_str()),
                (code.to_string().as_str(), *name)
            );
        }
    }

    #[test]
    fn words_for_each_answer() {
        let v = serde_json::json!({"ok": true, "target": 3, "previous": 2});
        assert_eq!(
            human(&CtlCommand::Scale { workers: 3 }, &v),
            "target workers: 2 -> 3"
        );
        let v = serde_json::json!({"ok": true, "generation": 4});
        assert!(human(&CtlCommand::Reload, &v).starts_with("reloaded: generation 4 is serving"));
    }

    #[test]
    fn usage_and_unreachable_are_distinct() {
        let several = CtlError::Several {
            sockets: vec!["/a.sock".into(), "/b.sock".into()],
        };
        assert_eq!(several.exit_code(), USAGE);
        assert!(several
            .to_string()
            .contains("/a.sock, /b.sock; pass --pid PID"));
        let bad = CtlError::Pid {
            given: "x".into(),
            why: "no".into(),
        };
        assert_eq!(bad.exit_code(), USAGE);
        let absent = CtlError::NoSuchMaster {
            pid: 7,
            dir: "/tmp/herdsman-1".into(),
        };
        assert_eq!(absent.exit_code(), UNREACHABLE);
        let none = CtlError::NoMaster {
            dir: "/tmp/herdsman-1".into(),
        };
        assert_eq!(none.exit_code(), UNREACHABLE);
        assert_eq!(
            none.to_string(),
            "no running herdsman found in /tmp/herdsman-1; pass --socket PATH"
        );
    }
}
