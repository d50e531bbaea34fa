//! The access log keys: `access_log` (on/off), `access_log_file` (a path, or `-` for standard
//! output) and `access_log_format` (gunicorn's format, checked here).

use std::path::PathBuf;

use super::super::access_format;
use super::super::error::Invalid;
use super::super::keys::Key;
use super::super::types::defaults;
use super::super::values;
use super::Validator;

impl Validator<'_> {
    /// `access_log` if given; else on when `access_log_file` is given (as gunicorn's
    /// `--access-logfile` turns it on); else the default.
    pub(super) fn access_log_enabled(&mut self) -> bool {
        if self.layer.get(Key::AccessLog).is_some() {
            return self.value(Key::AccessLog, defaults::ACCESS_LOG, values::boolean);
        }
        self.layer.get(Key::AccessLogFile).is_some() || defaults::ACCESS_LOG
    }

    /// `None` for `-` (standard output) or unset; else the path, made absolute against the
    /// master's working directory (workers may run elsewhere: `chdir`).
    pub(super) fn access_log_file(&mut self) -> Option<PathBuf> {
        let given = self.layer.get(Key::AccessLogFile)?;
        if matches!(values::text(&given.value, "\"-\""), Ok("-")) {
            return None;
        }
        let path = self.file_path(Key::AccessLogFile, "\"/var/log/herdsman/access.log\"")?;
        match std::path::absolute(&path) {
            Ok(absolute) => Some(absolute),
            Err(_) => Some(path),
        }
    }

    pub(super) fn access_log_format(&mut self) -> String {
        let default = defaults::ACCESS_LOG_FORMAT.to_string();
        let layer = self.layer;
        let Some(given) = layer.get(Key::AccessLogFormat) else {
            return default;
        };
        let example = "'%(h)s \"%(r)s\" %(s)s %(M)sms'";
        let checked = values::text(&given.value, example).and_then(|text| {
            access_format::check(text)
                .map(|()| text.to_string())
                .map_err(|problem| Invalid::advice(problem, "fix the format"))
        });
        match checked {
            Ok(format) => format,
            Err(invalid) => self
                .reject(invalid, &given.origin, Key::AccessLogFormat.name())
                .unwrap_or(default),
        }
    }
}
