//! Installing the subscriber: level, format, destination. Records reach the destination
//! through [`sink`](super::sink), one `write` per record.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use tracing::level_filters::LevelFilter;
use tracing::{error, info};

use super::sink::{self, Reopened};
use crate::config::{LogFormat, LogLevel};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("could not open the log file {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warning => LevelFilter::WARN,
        LogLevel::Error | LogLevel::Critical => LevelFilter::ERROR,
    }
}

/// One master record on its way to the sink.
struct Record;

impl io::Write for Record {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The subscriber formats a whole record, then writes it at once: one call, one record.
        sink::write_record(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens the destination (`log_file`, else stderr) and installs the global subscriber. Safe to
/// call once; a second call keeps the first subscriber.
pub fn init(level: LogLevel, format: LogFormat, log_file: Option<&Path>) -> Result<(), LogError> {
    sink::install(format, log_file).map_err(|source| LogError::Open {
        path: log_file.map(Path::to_path_buf).unwrap_or_default(),
        source,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_max_level(filter(level))
        .with_writer(|| Record)
        .with_target(false);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(log_file.is_none() && io::stderr().is_terminal())
            .try_init(),
    };
    // Already initialised (only possible in tests): keep the first subscriber.
    drop(result);
    Ok(())
}

/// SIGUSR1: reopens the log file at its path (logrotate moved it away) and says so in the new
/// one. Workers are not touched.
pub fn reopen() {
    match sink::reopen() {
        Reopened::NoFile => info!("SIGUSR1: logs go to stderr, there is no log file to reopen"),
        Reopened::Done { path } => info!(path = %path.display(), "log file reopened"),
        Reopened::Failed { path, error } => error!(
            path = %path.display(),
            error = %error,
            "could not reopen the log file; still writing to the previous one"
        ),
    }
}
