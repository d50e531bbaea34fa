//! gunicorn's settings as herdsman keys: the one table ([`SETTINGS`]) from a gunicorn setting
//! name to the key it sets and how its Python value is read, and the conversion of an evaluated
//! `gunicorn.conf.py` (see `pyfile`) into a file `Layer` whose values are located at the line
//! that assigned them. Types are judged later, by the same validation as the TOML file's, and
//! a rejected value is reported under its gunicorn name (`load` renames the key).
//!
//! A gunicorn setting missing from the table is not an error: all of them are named in one
//! warning ("ignored"). The ones herdsman refuses on purpose ([`REFUSED`]) are errors, and so
//! are the hooks it cannot honour ([`REFUSED_HOOKS`]). To support a new gunicorn setting, add
//! its row to [`SETTINGS`].

use super::error::ConfigError;
use super::keys::Key;
use super::layer::{Layer, Origin, Raw, Sourced};
use crate::config::GunicornFile;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// How a gunicorn value becomes a raw herdsman value. `null` (gunicorn's "not set") always
/// leaves the key unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// As written: a string, number, boolean or list.
    As,
    /// A string, or a list of strings: a list (`bind = "a:1"` is `["a:1"]`).
    List,
    /// A string, or a list of strings joined with commas (`forwarded_allow_ips`).
    CommaText,
    /// A name or a number, as text (`user = 1000`).
    Text,
    /// An integer is the mode itself (`umask = 0o027`), written as octal text.
    Octal,
    /// A path, or `"-"` for gunicorn's default stream (stderr): then left unset.
    Stream,
    /// `raw_env`: a list of `KEY=VALUE` strings.
    Env,
}

/// Every gunicorn setting herdsman has: (gunicorn name, key, how its value is read).
pub const SETTINGS: &[(&str, Key, Read)] = &[
    ("wsgi_app", Key::App, Read::As),
    ("bind", Key::Bind, Read::List),
    ("workers", Key::Workers, Read::As),
    ("worker_class", Key::WorkerClass, Read::As),
    ("threads", Key::Threads, Read::As),
    ("timeout", Key::Timeout, Read::As),
    ("graceful_timeout", Key::GracefulTimeout, Read::As),
    ("keepalive", Key::KeepAlive, Read::As),
    ("max_requests", Key::MaxRequests, Read::As),
    ("max_requests_jitter", Key::MaxRequestsJitter, Read::As),
    ("backlog", Key::Backlog, Read::As),
    ("limit_request_line", Key::LimitRequestLine, Read::As),
    ("limit_request_fields", Key::LimitRequestFields, Read::As),
    (
        "limit_request_field_size",
        Key::LimitRequestFieldSize,
        Read::As,
    ),
    (
        "forwarded_allow_ips",
        Key::ForwardedAllowIps,
        Read::CommaText,
    ),
    ("accesslog", Key::AccessLogFile, Read::As),
    ("access_log_format", Key::AccessLogFormat, Read::As),
    ("errorlog", Key::LogFile, Read::Stream),
    ("loglevel", Key::LogLevel, Read::As),
    ("capture_output", Key::CaptureOutput, Read::As),
    ("pidfile", Key::Pidfile, Read::As),
    ("user", Key::User, Read::Text),
    ("group", Key::Group, Read::Text),
    ("umask", Key::Umask, Read::Octal),
    ("chdir", Key::Chdir, Read::As),
    ("pythonpath", Key::Pythonpath, Read::As),
    ("raw_env", Key::Env, Read::Env),
    ("preload_app", Key::Preload, Read::As),
    ("reload", Key::Reload, Read::As),
    ("reload_extra_files", Key::ReloadExtraFile, Read::List),
    ("proc_name", Key::ProcName, Read::As),
    ("certfile", Key::Certfile, Read::As),
    ("keyfile", Key::Keyfile, Read::As),
    ("ca_certs", Key::CaCerts, Read::As),
    ("cert_reqs", Key::CertReqs, Read::As),
    ("ciphers", Key::Ciphers, Read::As),
    ("ssl_version", Key::SslVersion, Read::As),
    ("worker_connections", Key::WorkerConnections, Read::As),
    ("proxy_protocol", Key::ProxyProtocol, Read::As),
    ("proxy_allow_ips", Key::ProxyAllowFrom, Read::CommaText),
];

/// Settings refused when set to a true value: (name, why, fix).
pub const REFUSED: &[(&str, &str, &str)] = &[(
    "daemon",
    "herdsman does not daemonize: it stays in the foreground for its supervisor",
    "remove `daemon = True` and run herdsman under systemd, a container runtime or supervisord",
)];

/// Hooks herdsman cannot honour: (name, why).
pub const REFUSED_HOOKS: &[(&str, &str)] = &[
    (
        "pre_exec",
        "herdsman's in-place upgrade (SIGUSR2) execs the new binary without running Python",
    ),
    (
        "ssl_context",
        "herdsman does not build its TLS context from Python",
    ),
];

/// Hooks run in the workers (python/herdsman/runtime/hooks.py).
pub const WORKER_HOOKS: &[&str] = &[
    "post_fork",
    "post_worker_init",
    "pre_request",
    "post_request",
    "worker_int",
    "worker_abort",
    "worker_exit",
];

/// Hooks run by the master, each in a short-lived process (`master::hooks`).
pub const MASTER_HOOKS: &[&str] = &[
    "on_starting",
    "when_ready",
    "on_reload",
    "pre_fork",
    "child_exit",
    "nworkers_changed",
    "on_exit",
];

/// What `gunicornconf.py evaluate` prints.
#[derive(Debug, Deserialize)]
pub struct Evaluated {
    pub settings: BTreeMap<String, Value>,
    #[serde(default)]
    pub lines: BTreeMap<String, usize>,
    #[serde(default)]
    pub hooks: Vec<String>,
    /// `python:module.name`: the directory its top-level package was imported from.
    #[serde(default)]
    pub import_root: Option<std::path::PathBuf>,
}

/// The gunicorn name of `key`, if a gunicorn setting sets it.
pub fn setting_name(key: Key) -> Option<&'static str> {
    SETTINGS
        .iter()
        .find(|(_, k, _)| *k == key)
        .map(|(n, _, _)| *n)
}

/// The layer the file makes, what herdsman keeps of it (hooks, ignored names), and the refused
/// settings and hooks. `path` is the file as given; `absolute` the one workers are told.
pub fn layer(
    path: &Path,
    absolute: &Path,
    evaluated: &Evaluated,
) -> (Layer, GunicornFile, Vec<ConfigError>) {
    let origin = |name: &str| Origin::File {
        path: path.to_path_buf(),
        line: evaluated.lines.get(name).copied().unwrap_or(1),
    };
    let mut layer = Layer::default();
    let mut errors = Vec::new();
    let mut ignored = Vec::new();
    for (name, value) in &evaluated.settings {
        if let Some((_, key, read)) = SETTINGS.iter().find(|(n, _, _)| n == name) {
            if let Some(raw) = convert(value, *read, &origin(name), &mut errors) {
                layer.set(*key, Sourced::new(raw, origin(name)));
            }
        } else if let Some((_, why, fix)) = REFUSED.iter().find(|(n, _, _)| n == name) {
            if truthy(value) {
                errors.push(refused(origin(name), name, why, fix));
            }
        } else if !value.is_null() {
            ignored.push(name.clone());
        }
    }
    let mut hooks = Vec::new();
    for name in &evaluated.hooks {
        match REFUSED_HOOKS.iter().find(|(n, _)| n == name) {
            Some((_, why)) => errors.push(refused(origin(name), name, why, "remove the hook")),
            None => hooks.push(name.clone()),
        }
    }
    let file = GunicornFile {
        path: absolute.to_path_buf(),
        hooks,
        ignored,
        import_root: evaluated.import_root.clone(),
    };
    (layer, file, errors)
}

fn refused(origin: Origin, name: &str, why: &str, fix: &str) -> ConfigError {
    ConfigError::Refused {
        origin,
        name: name.to_string(),
        reason: why.to_string(),
        fix: fix.to_string(),
    }
}

fn truthy(value: &Value) -> bool {
    !matches!(value, Value::Null | Value::Bool(false))
        && value.as_i64() != Some(0)
        && value.as_str() != Some("")
}

/// One value, read as `read` says; `None` for gunicorn's "not set".
fn convert(
    value: &Value,
    read: Read,
    origin: &Origin,
    errors: &mut Vec<ConfigError>,
) -> Option<Raw> {
    let item = |v: &Value| Sourced::new(raw(v, origin), origin.clone());
    let raw = match (read, value) {
        (_, Value::Null) => return None,
        (Read::List, Value::String(_)) => Raw::List(vec![item(value)]),
        (Read::CommaText, Value::Array(items)) => {
            let texts: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            match texts {
                Some(texts) => Raw::Text(texts.join(",")),
                None => raw(value, origin),
            }
        }
        (Read::Text, Value::Number(n)) => Raw::Text(n.to_string()),
        (Read::Octal, Value::Number(n)) => match n.as_u64() {
            Some(mode) => Raw::Text(format!("0o{mode:o}")),
            None => raw(value, origin),
        },
        (Read::Stream, Value::String(s)) if s == "-" => return None,
        (Read::Env, Value::Array(items)) => {
            let items = items.iter().map(item).collect();
            super::env::assignments(items, errors)
        }
        _ => raw(value, origin),
    };
    Some(raw)
}

/// A JSON value as the raw value a TOML file would have given.
fn raw(value: &Value, origin: &Origin) -> Raw {
    match value {
        Value::String(s) => Raw::Text(s.clone()),
        Value::Bool(b) => Raw::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(n) => Raw::Int(n),
            None => Raw::Other(format!("a number {n}")),
        },
        Value::Array(items) => Raw::List(
            items
                .iter()
                .map(|v| Sourced::new(raw(v, origin), origin.clone()))
                .collect(),
        ),
        Value::Object(map) => match map.get("float").or_else(|| map.get("other")) {
            Some(Value::String(what)) if map.contains_key("float") => {
                Raw::Other(format!("a float {what}"))
            }
            Some(Value::String(what)) => Raw::Other(what.clone()),
            _ => Raw::Other("an object".into()),
        },
        Value::Null => Raw::Other("None".into()),
    }
}
