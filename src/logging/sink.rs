//! Where the master's log goes: stderr, or a file opened for appending (`log_file`) that
//! SIGUSR1 reopens at the same path (after logrotate moved it away). Two kinds of writes arrive:
//! - the master's own records, one `write` per record from the tracing subscriber;
//! - captured worker output (`capture_output`), one line at a time.
//!
//! Neither may ever crash or wedge the master. A write that fails (ENOSPC on a full disk, EIO,
//! EPIPE) drops the record and counts it; the next write that succeeds is preceded by one line
//! saying how many were dropped. Captured worker output is never allowed to block: on a pipe it
//! goes through a private non-blocking open of that pipe, on a socket with `MSG_DONTWAIT`, and
//! what does not fit now is dropped (and counted), so a slow reader of the master's stderr
//! cannot stall the master and, through it, the workers whose pipes it must keep draining. The
//! master's own records keep blocking writes to stderr (they are few, and losing them to a
//! momentarily full pipe would hide what the master did).
//!
//! The sink is process-global because the tracing subscriber is; the master is single-threaded,
//! so its lock is never contended, and nothing logs while holding it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::LogFormat;

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// The destination and its failure bookkeeping.
struct Sink {
    format: LogFormat,
    target: Target,
    /// For captured output to stderr: how to write without blocking (decided on first use).
    relay: Option<Relay>,
    /// Records dropped since the last write that succeeded.
    dropped: u64,
    /// A write stopped in the middle of a line: the next one starts on a fresh line.
    broken_line: bool,
}

enum Target {
    Stderr,
    File { path: PathBuf, file: File },
}

/// How captured output reaches stderr without blocking.
enum Relay {
    /// A second, non-blocking open file description of the pipe or FIFO that is our stderr.
    Private(OwnedFd),
    /// Our stderr is a socket (journald): `send` with `MSG_DONTWAIT`.
    Socket,
    /// A terminal or a regular file: plain writes, which do not wait on a reader.
    Plain,
}

/// Opens `path` for appending (created 0644 if missing), close-on-exec.
pub fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Installs the destination: `path`'s file, or stderr.
pub fn install(format: LogFormat, path: Option<&Path>) -> io::Result<()> {
    let target = match path {
        Some(path) => Target::File {
            path: path.to_path_buf(),
            file: open_log(path)?,
        },
        None => Target::Stderr,
    };
    *lock() = Some(Sink {
        format,
        target,
        relay: None,
        dropped: 0,
        broken_line: false,
    });
    Ok(())
}

fn lock() -> std::sync::MutexGuard<'static, Option<Sink>> {
    // A panic while holding the lock cannot leave the sink inconsistent: keep using it.
    SINK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What [`reopen`] did.
pub enum Reopened {
    /// Logs go to stderr: nothing to reopen.
    NoFile,
    /// The file at `path` is open anew; the old one is closed.
    Done { path: PathBuf },
    /// Opening failed; the old file is kept.
    Failed { path: PathBuf, error: io::Error },
}

/// Opens the log file's path again (creating it if it was moved away) and switches to it.
pub fn reopen() -> Reopened {
    let path = match lock().as_ref().map(|sink| &sink.target) {
        Some(Target::File { path, .. }) => path.clone(),
        _ => return Reopened::NoFile,
    };
    match open_log(&path) {
        Ok(new) => {
            if let Some(Sink {
                target: Target::File { file, .. },
                ..
            }) = lock().as_mut()
            {
                *file = new;
            }
            Reopened::Done { path }
        }
        Err(error) => Reopened::Failed { path, error },
    }
}

/// The log file, for workers to write to directly (their stdout and stderr when output is not
/// captured); `None` when logs go to stderr. Valid until the next [`reopen`].
pub fn file_fd() -> Option<RawFd> {
    match lock().as_ref().map(|sink| &sink.target) {
        Some(Target::File { file, .. }) => Some(file.as_raw_fd()),
        _ => None,
    }
}

/// The log's format (text until the sink is installed).
pub fn format() -> LogFormat {
    lock().as_ref().map_or(LogFormat::Text, |sink| sink.format)
}

/// Writes one master record (already formatted, newline included). Never fails.
pub fn write_record(record: &[u8]) {
    let mut guard = lock();
    let Some(sink) = guard.as_mut() else {
        let _ = io::stderr().write_all(record);
        return;
    };
    sink.write(record, false);
}

/// Writes one line of captured worker output without blocking; returns whether it was written.
pub fn write_captured(line: &[u8]) -> bool {
    let mut guard = lock();
    let Some(sink) = guard.as_mut() else {
        return io::stderr().write_all(line).is_ok();
    };
    sink.write(line, true)
}

impl Sink {
    fn write(&mut self, bytes: &[u8], nonblocking: bool) -> bool {
        if self.broken_line && !self.emit(b"\n", nonblocking) {
            self.dropped += 1;
            return false;
        }
        if self.dropped > 0 {
            let report = self.drop_report();
            if !self.emit(report.as_bytes(), nonblocking) {
                self.dropped += 1;
                return false;
            }
            self.dropped = 0;
        }
        let written = self.emit(bytes, nonblocking);
        if !written {
            self.dropped += 1;
        }
        written
    }

    /// Writes all of `bytes` or reports failure; a partial write leaves `broken_line` set.
    fn emit(&mut self, bytes: &[u8], nonblocking: bool) -> bool {
        let mut done = 0;
        while done < bytes.len() {
            match self.write_some(&bytes[done..], nonblocking) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.broken_line = done > 0 && done < bytes.len();
        done == bytes.len()
    }

    fn write_some(&mut self, bytes: &[u8], nonblocking: bool) -> io::Result<usize> {
        match &mut self.target {
            Target::File { file, .. } => file.write(bytes),
            Target::Stderr if !nonblocking => io::stderr().write(bytes),
            Target::Stderr => {
                let relay = self.relay.get_or_insert_with(Relay::for_stderr);
                relay.write(bytes)
            }
        }
    }

    /// One line saying how many records were lost, in the log's own format.
    fn drop_report(&self) -> String {
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        let message = "log records were dropped: the log could not be written";
        match self.format {
            LogFormat::Json => format!(
                "{{\"timestamp\":\"{now}\",\"level\":\"WARN\",\"message\":\"{message}\",\"dropped\":{}}}\n",
                self.dropped
            ),
            LogFormat::Text => format!("{now}  WARN {message} dropped={}\n", self.dropped),
        }
    }
}

impl Relay {
    fn for_stderr() -> Relay {
        // SAFETY: fstat on fd 2 into a zeroed stat buffer we own.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(2, &mut stat) } != 0 {
            return Relay::Plain;
        }
        match stat.st_mode & libc::S_IFMT {
            libc::S_IFIFO => private_pipe().map_or(Relay::Plain, Relay::Private),
            libc::S_IFSOCK => Relay::Socket,
            _ => Relay::Plain,
        }
    }

    fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        let n = match self {
            // SAFETY: writing from a slice we borrow, within its bounds.
            Relay::Private(fd) => unsafe {
                libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len())
            },
            // SAFETY: as above; MSG_NOSIGNAL keeps a closed reader from raising SIGPIPE.
            Relay::Socket => unsafe {
                let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
                libc::send(2, bytes.as_ptr().cast(), bytes.len(), flags)
            },
            Relay::Plain => return io::stderr().write(bytes),
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// Opens our stderr pipe again through /proc: a new open file description of the same pipe,
/// so `O_NONBLOCK` on it does not change the description the workers share.
fn private_pipe() -> Option<OwnedFd> {
    let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: the path is a NUL-terminated literal; the result is a new fd we own.
    let fd = unsafe { libc::open(c"/proc/self/fd/2".as_ptr(), flags) };
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reports_follow_the_format() {
        let sink = |format| Sink {
            format,
            target: Target::Stderr,
            relay: None,
            dropped: 3,
            broken_line: false,
        };
        let json = sink(LogFormat::Json).drop_report();
        let record: serde_json::Value = serde_json::from_str(json.trim()).expect("valid JSON");
        assert_eq!(record["dropped"], 3);
        assert_eq!(record["level"], "WARN");
        let text = sink(LogFormat::Text).drop_report();
        assert!(text
            .ends_with("WARN log records were dropped: the log could not be written dropped=3\n"));
    }

    #[test]
    fn a_failing_file_counts_drops_and_reports_them_once_it_works() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.log");
        let mut sink = Sink {
            format: LogFormat::Text,
            target: Target::File {
                path: "/dev/full".into(),
                file: open_log(Path::new("/dev/full")).unwrap(),
            },
            relay: None,
            dropped: 0,
            broken_line: false,
        };
        assert!(!sink.write(b"one\n", false));
        assert!(!sink.write(b"two\n", true));
        assert_eq!(sink.dropped, 2);
        sink.target = Target::File {
            path: good.clone(),
            file: open_log(&good).unwrap(),
        };
        assert!(sink.write(b"three\n", false));
        let text = std::fs::read_to_string(&good).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with("dropped=2"), "{text}");
        assert_eq!(lines[1], "three");
        assert_eq!(sink.dropped, 0);
    }
}
