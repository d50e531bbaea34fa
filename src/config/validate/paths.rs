//! The keys whose values name places: the listeners (`bind`, `admin_bind`), the interpreter,
//! `chdir`, the control socket and the files (`log_file`, `pidfile`). With `user` and `group` (see
//! `account`), these are the only checks that look at the system: `chdir` is an existing directory, an
//! absolute `python` exists, the control socket path fits in a unix socket address, and the
//! directories of the files exist. Each problem names the key and a fix, like every other.

use std::path::{Path, PathBuf};

use super::Validator;
use crate::config::bind;
use crate::config::error::Invalid;
use crate::config::keys::Key;
use crate::config::layer::{Raw, Sourced};
use crate::config::values;
use crate::config::{defaults, BindSpec};

impl Validator<'_> {
    pub(super) fn binds(&mut self) -> Vec<BindSpec> {
        let layer = self.layer;
        let Some(given) = layer.get(Key::Bind) else {
            let default = bind::parse(defaults::BIND).expect("the default bind spec is valid");
            return vec![default];
        };
        let items = match &given.value {
            Raw::List(items) => items.as_slice(),
            _ => std::slice::from_ref(given),
        };
        if items.is_empty() {
            let invalid = Invalid::examples("needs at least one address", &["\"127.0.0.1:8000\""]);
            self.errors
                .push(invalid.at(&given.origin, Key::Bind.name()));
        }
        items.iter().filter_map(|item| self.bind(item)).collect()
    }

    pub(super) fn bind(&mut self, item: &Sourced<Raw>) -> Option<BindSpec> {
        let spec = match &item.value {
            Raw::Text(text) => bind::parse(text),
            other => Err(Invalid::examples(
                format!("entries must be strings, got {}", other.describe()),
                &[
                    "\"127.0.0.1:8000\"",
                    "[\"127.0.0.1:8000\", \"unix:/run/app.sock\"]",
                ],
            )),
        };
        match spec {
            Ok(spec) => Some(spec),
            Err(invalid) => self.reject(invalid, &item.origin, Key::Bind.name()),
        }
    }

    pub(super) fn python(&mut self) -> Option<PathBuf> {
        let path = self.path(Key::Python, "\"/srv/app/.venv/bin/python\"")?;
        if !path.is_absolute() {
            return Some(path);
        }
        let found = std::fs::metadata(&path).map(|meta| meta.is_file());
        match found {
            Ok(true) => Some(path),
            Ok(false) => self.reject_path(Key::Python, "is not a file", &path),
            Err(source) => self.reject_path(Key::Python, missing(&source), &path),
        }
    }

    pub(super) fn chdir(&mut self) -> Option<PathBuf> {
        let path = self.path(Key::Chdir, "\"/srv/app\"")?;
        match std::fs::metadata(&path).map(|meta| meta.is_dir()) {
            Ok(true) => Some(path),
            Ok(false) => self.reject_path(Key::Chdir, "is not a directory", &path),
            Err(source) => self.reject_path(Key::Chdir, missing(&source), &path),
        }
    }

    /// A path that fits in `sun_path`; its directory is checked when the socket is created.
    pub(super) fn control_socket(&mut self) -> Option<PathBuf> {
        let path = self.path(Key::ControlSocket, "\"/run/myproject/herdsman.sock\"")?;
        let (len, max) = (path.as_os_str().len(), crate::addr::max_unix_path_len());
        if len <= max {
            return Some(path);
        }
        let problem = format!(
            "{} is {len} bytes long, longer than a unix socket address holds ({max})",
            path.display()
        );
        let invalid = Invalid::advice(problem, "choose a shorter path");
        self.reject_path_with(Key::ControlSocket, invalid)
    }

    /// `HOST:PORT`, `[V6]:PORT` or `unix:PATH`; `off` (or nothing) for no admin listener.
    pub(super) fn admin_bind(&mut self) -> Option<BindSpec> {
        const EXAMPLES: &[&str] = &["\"127.0.0.1:9191\"", "\"unix:/run/myproject/admin.sock\""];
        let layer = self.layer;
        let given = layer.get(Key::AdminBind)?;
        let parsed = match &given.value {
            Raw::Text(text) if text.trim().eq_ignore_ascii_case("off") => return None,
            Raw::Text(text) => bind::parse(text.trim()),
            other => Err(Invalid::examples(
                format!(
                    "must be an address string or \"off\", got {}",
                    other.describe()
                ),
                EXAMPLES,
            )),
        };
        let parsed = parsed.and_then(|spec| match spec {
            BindSpec::Fd(fd) => Err(Invalid::examples(
                format!("cannot be an inherited socket (fd://{fd}): give an address to bind"),
                EXAMPLES,
            )),
            spec => Ok(spec),
        });
        match parsed {
            Ok(spec) => Some(spec),
            Err(invalid) => self.reject(invalid, &given.origin, Key::AdminBind.name()),
        }
    }

    /// A file herdsman writes (`log_file`, `pidfile`): its directory must exist and the path
    /// must not be a directory. The file itself is opened at start.
    pub(super) fn file_path(&mut self, key: Key, example: &str) -> Option<PathBuf> {
        let path = self.path(key, example)?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if path.is_dir() {
            return self.reject_path(key, "is a directory", &path);
        }
        match std::fs::metadata(dir).map(|meta| meta.is_dir()) {
            Ok(true) => Some(path),
            Ok(false) => self.reject_path(key, "is in something that is not a directory", &path),
            Err(source) => {
                let what = format!("is in a directory that {}", missing(&source));
                self.reject_path(key, &what, &path)
            }
        }
    }

    pub(super) fn path(&mut self, key: Key, example: &str) -> Option<PathBuf> {
        let layer = self.layer;
        let given = layer.get(key)?;
        match values::text(&given.value, example) {
            Ok(text) => Some(PathBuf::from(text)),
            Err(invalid) => self.reject(invalid, &given.origin, key.name()),
        }
    }

    pub(super) fn reject_path<T>(&mut self, key: Key, what: &str, path: &Path) -> Option<T> {
        let problem = format!("{} {what}", path.display());
        let invalid = Invalid::advice(problem, "fix the path, or create it before starting");
        self.reject_path_with(key, invalid)
    }

    pub(super) fn reject_path_with<T>(&mut self, key: Key, invalid: Invalid) -> Option<T> {
        let layer = self.layer;
        let given = layer.get(key).expect("only given paths are checked");
        self.reject(invalid, &given.origin, key.name())
    }
}

/// What a failed `stat` means for the user.
pub(super) fn missing(source: &std::io::Error) -> &'static str {
    match source.kind() {
        std::io::ErrorKind::NotFound => "does not exist",
        std::io::ErrorKind::PermissionDenied => "cannot be reached (permission denied)",
        _ => "cannot be checked",
    }
}
