//! One source of configuration (the file, the environment or the command line) before
//! validation: every key optional, every value still raw and tagged with where it came from, so
//! that validation can say "file F, line L" or "environment variable HERDSMAN_X" when it rejects
//! it. Layers merge key by key (later wins); `env` merges variable by variable.

use super::keys::Key;
use std::fmt;
use std::path::PathBuf;

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A TOML file; `line` is 1-based.
    File { path: PathBuf, line: usize },
    /// An environment variable, e.g. `HERDSMAN_WORKERS`.
    Env(String),
    /// A command-line flag, e.g. `--workers`, or `APP` for the positional argument.
    Cli(String),
    /// A flag in `GUNICORN_CMD_ARGS`, e.g. `--workers`.
    CmdArgs(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "file {}, line {line}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Cli(flag) if flag.starts_with('-') => write!(f, "command line {flag}"),
            Origin::Cli(arg) => write!(f, "command line argument {arg}"),
            Origin::CmdArgs(flag) => write!(f, "GUNICORN_CMD_ARGS {flag}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Sourced<T> {
    pub fn new(value: T, origin: Origin) -> Self {
        Sourced { value, origin }
    }
}

/// A value as a source gave it. The environment and the command line only give `Text` (and
/// `List` / `Table` for `bind` and `env`); a TOML file gives whatever type was written.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Text(String),
    Int(i64),
    Bool(bool),
    List(Vec<Sourced<Raw>>),
    /// `env`: variable name and value, in the order given.
    Table(Vec<(String, Sourced<Raw>)>),
    /// A TOML value no key accepts (float, date-time), described for messages: "a float 2.5".
    Other(String),
}

impl Raw {
    /// What the value is, for "got ..." in messages: `a string "four"`, `an integer 0`.
    pub fn describe(&self) -> String {
        match self {
            Raw::Text(text) => format!("a string {text:?}"),
            Raw::Int(n) => format!("an integer {n}"),
            Raw::Bool(b) => format!("a boolean {b}"),
            Raw::List(_) => "an array".to_string(),
            Raw::Table(_) => "a table".to_string(),
            Raw::Other(description) => description.clone(),
        }
    }
}

/// Declares `Layer` with one optional raw field per key, and the key -> field accessors, from
/// one list so the two cannot drift apart.
macro_rules! layer {
    ($($field:ident => $key:ident),* $(,)?) => {
        /// Every key of one source, each optional.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Layer {
            $(pub $field: Option<Sourced<Raw>>,)*
        }

        impl Layer {
            fn slot_ref(&self, key: Key) -> &Option<Sourced<Raw>> {
                match key {
                    $(Key::$key => &self.$field,)*
                }
            }

            fn slot(&mut self, key: Key) -> &mut Option<Sourced<Raw>> {
                match key {
                    $(Key::$key => &mut self.$field,)*
                }
            }
        }
    };
}

layer! {
    app => App,
    factory => Factory,
    workers => Workers,
    bind => Bind,
    interface => Interface,
    worker_class => WorkerClass,
    engine => Engine,
    threads => Threads,
    spawn => Spawn,
    preload => Preload,
    python => Python,
    chdir => Chdir,
    pythonpath => Pythonpath,
    reload => Reload,
    reload_dir => ReloadDir,
    reload_extra_file => ReloadExtraFile,
    reload_include => ReloadInclude,
    env => Env,
    timeout => Timeout,
    graceful_timeout => GracefulTimeout,
    drain_before_stop => DrainBeforeStop,
    boot_timeout => BootTimeout,
    startup_attempts => StartupAttempts,
    max_surge => MaxSurge,
    max_workers => MaxWorkers,
    lifespan => Lifespan,
    max_requests => MaxRequests,
    max_requests_jitter => MaxRequestsJitter,
    max_worker_memory => MaxWorkerMemory,
    max_worker_lifetime => MaxWorkerLifetime,
    max_worker_lifetime_jitter => MaxWorkerLifetimeJitter,
    memory_check_interval => MemoryCheckInterval,
    backlog => Backlog,
    worker_connections => WorkerConnections,
    keep_alive => KeepAlive,
    limit_request_line => LimitRequestLine,
    limit_request_fields => LimitRequestFields,
    limit_request_field_size => LimitRequestFieldSize,
    forwarded_allow_ips => ForwardedAllowIps,
    proxy_protocol => ProxyProtocol,
    proxy_allow_from => ProxyAllowFrom,
    root_path => RootPath,
    ready_path => ReadyPath,
    http => Http,
    http2_max_concurrent_streams => Http2MaxConcurrentStreams,
    http2_initial_stream_window_size => Http2InitialStreamWindowSize,
    http2_initial_connection_window_size => Http2InitialConnectionWindowSize,
    http2_max_header_list_size => Http2MaxHeaderListSize,
    http2_keep_alive_interval => Http2KeepAliveInterval,
    certfile => Certfile,
    keyfile => Keyfile,
    ca_certs => CaCerts,
    cert_reqs => CertReqs,
    ciphers => Ciphers,
    ssl_version => SslVersion,
    log_level => LogLevel,
    log_format => LogFormat,
    log_file => LogFile,
    access_log => AccessLog,
    access_log_file => AccessLogFile,
    access_log_format => AccessLogFormat,
    capture_output => CaptureOutput,
    pidfile => Pidfile,
    proc_name => ProcName,
    user => User,
    group => Group,
    umask => Umask,
    no_new_privs => NoNewPrivs,
    control_socket => ControlSocket,
    admin_bind => AdminBind,
    ready_min => ReadyMin,
}

impl Layer {
    /// The value given for `key`, if any.
    pub fn get(&self, key: Key) -> Option<&Sourced<Raw>> {
        self.slot_ref(key).as_ref()
    }

    /// Sets `key`, replacing what this layer had for it.
    pub fn set(&mut self, key: Key, value: Sourced<Raw>) {
        *self.slot(key) = Some(value);
    }

    /// The same layer with every origin (nested ones too) passed through `relocate`.
    pub fn relocate(mut self, relocate: &dyn Fn(&Origin) -> Origin) -> Layer {
        for key in Key::ALL {
            if let Some(value) = self.slot(key).take() {
                self.set(key, relocate_value(value, relocate));
            }
        }
        self
    }

    /// Lays `over` on top of `self`: every key `over` has replaces ours, except `env`, where
    /// `over` replaces ours variable by variable.
    pub fn merge(mut self, over: Layer) -> Layer {
        for key in Key::ALL {
            let Some(value) = over.slot_ref(key).clone() else {
                continue;
            };
            let merged = match (key, self.slot(key).take()) {
                (Key::Env, Some(under)) => merge_env(under, value),
                _ => value,
            };
            self.set(key, merged);
        }
        self
    }
}

/// `over`'s variables replace `under`'s of the same name in place; new ones are appended. A
/// malformed side (not a table) is kept as given so validation reports it.
fn merge_env(under: Sourced<Raw>, over: Sourced<Raw>) -> Sourced<Raw> {
    let (Raw::Table(mut merged), Raw::Table(overrides)) = (under.value, &over.value) else {
        return over;
    };
    for (name, value) in overrides {
        match merged.iter_mut().find(|(existing, _)| existing == name) {
            Some(entry) => entry.1 = value.clone(),
            None => merged.push((name.clone(), value.clone())),
        }
    }
    Sourced::new(Raw::Table(merged), over.origin)
}

fn relocate_value(value: Sourced<Raw>, relocate: &dyn Fn(&Origin) -> Origin) -> Sourced<Raw> {
    let raw = match value.value {
        Raw::List(items) => Raw::List(
            items
                .into_iter()
                .map(|item| relocate_value(item, relocate))
                .collect(),
        ),
        Raw::Table(entries) => Raw::Table(
            entries
                .into_iter()
                .map(|(name, item)| (name, relocate_value(item, relocate)))
                .collect(),
        ),
        other => other,
    };
    Sourced::new(raw, relocate(&value.origin))
}
