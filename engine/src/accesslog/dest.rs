//! Where the writer thread puts the lines, and how (accesslog.py's `_Writer`): a regular file
//! opened with O_APPEND gets each batch in one `write` (the kernel appends it whole, so the
//! workers' lines never interleave); a pipe, a terminal, a socket or standard output gets
//! writes of at most PIPE_BUF bytes cut at line ends (the kernel keeps such writes whole). A
//! failure (cannot open, a write error) never stops the writer: the batch is dropped and counted,
//! and the worker's log says so once per episode, and again when writing works again.
//! Only the writer thread owns a `Destination`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The largest write a pipe keeps whole (POSIX's minimum, Linux's value).
pub const PIPE_BUF: usize = 4096;

/// How bad a notice is, for the worker's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Info,
}

impl Severity {
    /// The worker log's name for it: `warning`, `info`.
    pub fn level(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Where the writer's notices go (the worker's log): called on the writer thread only.
pub type Notice = Box<dyn Fn(Severity, &str) + Send + Sync>;

pub struct Destination {
    path: String,
    file: Option<File>,
    /// A regular file: one write per batch stays whole.
    whole: bool,
    /// What went wrong in the episode of drops under way, if one is.
    failing: Option<String>,
    dropped: Arc<AtomicU64>,
    notice: Notice,
}

impl Destination {
    pub fn new(path: &str, dropped: Arc<AtomicU64>, notice: Notice) -> Destination {
        let path = path.to_string();
        Destination {
            path,
            file: None,
            whole: false,
            failing: None,
            dropped,
            notice,
        }
    }

    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Opens the path afresh ("-": standard output, always written in PIPE_BUF pieces). On
    /// failure the file open until now, if any, stays in use.
    pub fn open(&mut self) {
        let opened = if self.path == "-" {
            io::stdout().as_fd().try_clone_to_owned().map(File::from)
        } else {
            // std opens with O_CLOEXEC; O_APPEND so each write lands whole at the end.
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .open(&self.path)
        };
        match opened {
            Ok(file) => {
                let regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
                self.whole = regular && self.path != "-";
                self.file = Some(file); // the previous one, if any, is closed here
            }
            Err(err) => self.note_failure(&format!("cannot open {}: {err}", self.path)),
        }
    }

    /// Writes one batch of `count` whole lines, or drops it.
    pub fn write(&mut self, data: &[u8], count: u64) {
        let Some(file) = self.file.as_mut() else {
            let why = self
                .failing
                .clone()
                .unwrap_or_else(|| "no destination".into());
            return self.drop_lines(count, &why);
        };
        let written = if self.whole {
            file.write_all(data)
        } else {
            whole_line_chunks(data, PIPE_BUF).try_for_each(|chunk| file.write_all(chunk))
        };
        match written {
            Err(err) => self.drop_lines(count, &err.to_string()),
            Ok(()) => {
                if let Some(why) = self.failing.take() {
                    let dropped = self.dropped.load(Ordering::Relaxed);
                    let text = format!(
                        "access log: writing again after {why}; {dropped} line(s) dropped so far"
                    );
                    (self.notice)(Severity::Info, &text);
                }
            }
        }
    }

    pub fn drop_lines(&mut self, count: u64, why: &str) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
        self.note_failure(why);
    }

    /// Starts an episode of drops, saying so once.
    pub fn note_failure(&mut self, why: &str) {
        if self.failing.is_none() {
            self.failing = Some(why.to_string());
            let text = format!("access log: lines dropped ({why}); the count is in /metrics");
            (self.notice)(Severity::Warning, &text);
        }
    }
}

/// Pieces of `data` of at most `limit` bytes, each ending at a line end (a longer line is its
/// own piece): accesslog.py's `_whole_line_chunks`.
pub fn whole_line_chunks(data: &[u8], limit: usize) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let rest = &data[start..];
        if rest.is_empty() {
            return None;
        }
        if rest.len() <= limit {
            start = data.len();
            return Some(rest);
        }
        let within = rest[..limit].iter().rposition(|b| *b == b'\n');
        let cut = within
            .or_else(|| {
                rest[limit..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map(|p| limit + p)
            })
            .unwrap_or(rest.len() - 1);
        start += cut + 1;
        Some(&rest[..=cut])
    })
}
