//! The catalogue of configuration keys: one `Key` per setting, with its TOML name, its
//! `HERDSMAN_*` environment variable and its command-line flag. This is the only list of keys;
//! the file and environment readers look names up here, and unknown names get a "did you mean"
//! suggestion computed from it. Two `HERDSMAN_*` variables are not keys: `HERDSMAN_CONFIG` names
//! the file, and `HERDSMAN_ENGINE_LIB` the native engine's library.

/// Prefix of every environment variable herdsman reads.
pub const ENV_PREFIX: &str = "HERDSMAN_";
/// Names the config file; read by `load`, not a key of the file itself.
pub const CONFIG_ENV_VAR: &str = "HERDSMAN_CONFIG";
/// Names the native engine's library, overriding where the master looks for it
/// (`worker::engine_lib`); not a key: the library is found, not configured.
pub const ENGINE_LIB_ENV_VAR: &str = "HERDSMAN_ENGINE_LIB";

/// One configuration setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    App,
    Factory,
    Workers,
    Bind,
    Interface,
    WorkerClass,
    Engine,
    Threads,
    Spawn,
    Preload,
    Python,
    Chdir,
    Pythonpath,
    Reload,
    ReloadDir,
    ReloadExtraFile,
    ReloadInclude,
    Env,
    Timeout,
    GracefulTimeout,
    DrainBeforeStop,
    BootTimeout,
    StartupAttempts,
    MaxSurge,
    MaxWorkers,
    Lifespan,
    MaxRequests,
    MaxRequestsJitter,
    MaxWorkerMemory,
    MaxWorkerLifetime,
    MaxWorkerLifetimeJitter,
    MemoryCheckInterval,
    Backlog,
    WorkerConnections,
    KeepAlive,
    LimitRequestLine,
    LimitRequestFields,
    LimitRequestFieldSize,
    ForwardedAllowIps,
    ProxyProtocol,
    ProxyAllowFrom,
    RootPath,
    ReadyPath,
    Http,
    Http2MaxConcurrentStreams,
    Http2InitialStreamWindowSize,
    Http2InitialConnectionWindowSize,
    Http2MaxHeaderListSize,
    Http2KeepAliveInterval,
    Certfile,
    Keyfile,
    CaCerts,
    CertReqs,
    Ciphers,
    SslVersion,
    LogLevel,
    LogFormat,
    LogFile,
    AccessLog,
    AccessLogFile,
    AccessLogFormat,
    CaptureOutput,
    Pidfile,
    ProcName,
    User,
    Group,
    Umask,
    NoNewPrivs,
    ControlSocket,
    AdminBind,
    ReadyMin,
}

impl Key {
    /// Every key, in the order the docs and `check` present them.
    pub const ALL: [Key; 71] = [
        Key::App,
        Key::Factory,
        Key::Workers,
        Key::Bind,
        Key::Interface,
        Key::WorkerClass,
        Key::Engine,
        Key::Threads,
        Key::Spawn,
        Key::Preload,
        Key::Python,
        Key::Chdir,
        Key::Pythonpath,
        Key::Reload,
        Key::ReloadDir,
        Key::ReloadExtraFile,
        Key::ReloadInclude,
        Key::Env,
        Key::Timeout,
        Key::GracefulTimeout,
        Key::DrainBeforeStop,
        Key::BootTimeout,
        Key::StartupAttempts,
        Key::MaxSurge,
        Key::MaxWorkers,
        Key::Lifespan,
        Key::MaxRequests,
        Key::MaxRequestsJitter,
        Key::MaxWorkerMemory,
        Key::MaxWorkerLifetime,
        Key::MaxWorkerLifetimeJitter,
        Key::MemoryCheckInterval,
        Key::Backlog,
        Key::WorkerConnections,
        Key::KeepAlive,
        Key::LimitRequestLine,
        Key::LimitRequestFields,
        Key::LimitRequestFieldSize,
        Key::ForwardedAllowIps,
        Key::ProxyProtocol,
        Key::ProxyAllowFrom,
        Key::RootPath,
        Key::ReadyPath,
        Key::Http,
        Key::Http2MaxConcurrentStreams,
        Key::Http2InitialStreamWindowSize,
        Key::Http2InitialConnectionWindowSize,
        Key::Http2MaxHeaderListSize,
        Key::Http2KeepAliveInterval,
        Key::Certfile,
        Key::Keyfile,
        Key::CaCerts,
        Key::CertReqs,
        Key::Ciphers,
        Key::SslVersion,
        Key::LogLevel,
        Key::LogFormat,
        Key::LogFile,
        Key::AccessLog,
        Key::AccessLogFile,
        Key::AccessLogFormat,
        Key::CaptureOutput,
        Key::Pidfile,
        Key::ProcName,
        Key::User,
        Key::Group,
        Key::Umask,
        Key::NoNewPrivs,
        Key::ControlSocket,
        Key::AdminBind,
        Key::ReadyMin,
    ];

    /// The TOML key.
    pub fn name(self) -> &'static str {
        match self {
            Key::App => "app",
            Key::Factory => "factory",
            Key::Workers => "workers",
            Key::Bind => "bind",
            Key::Interface => "interface",
            Key::WorkerClass => "worker_class",
            Key::Engine => "engine",
            Key::Threads => "threads",
            Key::Spawn => "spawn",
            Key::Preload => "preload",
            Key::Python => "python",
            Key::Chdir => "chdir",
            Key::Pythonpath => "pythonpath",
            Key::Reload => "reload",
            Key::ReloadDir => "reload_dir",
            Key::ReloadExtraFile => "reload_extra_file",
            Key::ReloadInclude => "reload_include",
            Key::Env => "env",
            Key::Timeout => "timeout",
            Key::GracefulTimeout => "graceful_timeout",
            Key::DrainBeforeStop => "drain_before_stop",
            Key::BootTimeout => "boot_timeout",
            Key::StartupAttempts => "startup_attempts",
            Key::MaxSurge => "max_surge",
            Key::MaxWorkers => "max_workers",
            Key::Lifespan => "lifespan",
            Key::MaxRequests => "max_requests",
            Key::MaxRequestsJitter => "max_requests_jitter",
            Key::MaxWorkerMemory => "max_worker_memory",
            Key::MaxWorkerLifetime => "max_worker_lifetime",
            Key::MaxWorkerLifetimeJitter => "max_worker_lifetime_jitter",
            Key::MemoryCheckInterval => "memory_check_interval",
            Key::Backlog => "backlog",
            Key::WorkerConnections => "worker_connections",
            Key::KeepAlive => "keep_alive",
            Key::LimitRequestLine => "limit_request_line",
            Key::LimitRequestFields => "limit_request_fields",
            Key::LimitRequestFieldSize => "limit_request_field_size",
            Key::ForwardedAllowIps => "forwarded_allow_ips",
            Key::ProxyProtocol => "proxy_protocol",
            Key::ProxyAllowFrom => "proxy_allow_from",
            Key::RootPath => "root_path",
            Key::ReadyPath => "ready_path",
            Key::Http => "http",
            Key::Http2MaxConcurrentStreams => "http2_max_concurrent_streams",
            Key::Http2InitialStreamWindowSize => "http2_initial_stream_window_size",
            Key::Http2InitialConnectionWindowSize => "http2_initial_connection_window_size",
            Key::Http2MaxHeaderListSize => "http2_max_header_list_size",
            Key::Http2KeepAliveInterval => "http2_keep_alive_interval",
            Key::Certfile => "certfile",
            Key::Keyfile => "keyfile",
            Key::CaCerts => "ca_certs",
            Key::CertReqs => "cert_reqs",
            Key::Ciphers => "ciphers",
            Key::SslVersion => "ssl_version",
            Key::LogLevel => "log_level",
            Key::LogFormat => "log_format",
            Key::LogFile => "log_file",
            Key::AccessLog => "access_log",
            Key::AccessLogFile => "access_log_file",
            Key::AccessLogFormat => "access_log_format",
            Key::CaptureOutput => "capture_output",
            Key::Pidfile => "pidfile",
            Key::ProcName => "proc_name",
            Key::User => "user",
            Key::Group => "group",
            Key::Umask => "umask",
            Key::NoNewPrivs => "no_new_privs",
            Key::ControlSocket => "control_socket",
            Key::AdminBind => "admin_bind",
            Key::ReadyMin => "ready_min",
        }
    }

    /// The environment variable, e.g. `HERDSMAN_GRACEFUL_TIMEOUT`.
    pub fn env_var(self) -> String {
        format!("{ENV_PREFIX}{}", self.name().to_ascii_uppercase())
    }

    /// The command-line flag, e.g. `--graceful-timeout`; `APP` for the positional argument.
    pub fn flag(self) -> String {
        match self {
            Key::App => "APP".to_string(),
            Key::AccessLog => "--access-log/--no-access-log".to_string(),
            // gunicorn's flags.
            Key::AccessLogFile => "--access-logfile".to_string(),
            Key::AccessLogFormat => "--access-logformat".to_string(),
            Key::Factory => "--factory/--no-factory".to_string(),
            Key::Preload => "--preload/--no-preload".to_string(),
            Key::Reload => "--reload/--no-reload".to_string(),
            Key::ProxyProtocol => "--proxy-protocol/--no-proxy-protocol".to_string(),
            Key::CaptureOutput => "--capture-output/--no-capture-output".to_string(),
            Key::NoNewPrivs => "--no-new-privs/--allow-new-privs".to_string(),
            // gunicorn's flag for its `pidfile` setting.
            Key::Pidfile => "--pid".to_string(),
            // gunicorn's flag for its `proc_name` setting.
            Key::ProcName => "-n/--name".to_string(),
            Key::WorkerClass => "-k/--worker-class".to_string(),
            // gunicorn spells this one with an underscore (`--limit-request-field-size` works too).
            Key::LimitRequestFieldSize => "--limit-request-field_size".to_string(),
            _ => format!("--{}", self.name().replace('_', "-")),
        }
    }

    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|key| key.name() == name)
    }

    /// The key an environment variable sets; `None` for unknown names and `HERDSMAN_CONFIG`.
    pub fn from_env_var(var: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|key| key.env_var() == var)
    }
}

/// The known name closest to `given`, if it is close enough to be a plausible typo.
pub fn suggest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given = given.to_ascii_lowercase().replace('-', "_");
    let budget = (given.chars().count() / 3).clamp(1, 3);
    known
        .into_iter()
        .map(|name| (edit_distance(&given, &name.to_ascii_lowercase()), name))
        .filter(|(distance, _)| *distance <= budget)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The TOML key closest to `given`.
pub fn suggest_key(given: &str) -> Option<&'static str> {
    suggest(given, Key::ALL.map(Key::name))
}

/// Edit distance over chars (optimal string alignment: insertions, deletions, substitutions
/// and swaps of two neighbours each cost 1, so `asig` is one edit from `asgi`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for key in Key::ALL {
            assert_eq!(Key::from_name(key.name()), Some(key));
            assert_eq!(Key::from_env_var(&key.env_var()), Some(key));
        }
        assert_eq!(Key::from_env_var(CONFIG_ENV_VAR), None);
    }

    #[test]
    fn flags_follow_the_key_names() {
        assert_eq!(Key::GracefulTimeout.flag(), "--graceful-timeout");
        assert_eq!(Key::Env.flag(), "--env");
        assert_eq!(Key::MaxRequestsJitter.flag(), "--max-requests-jitter");
        assert_eq!(Key::MaxWorkerMemory.env_var(), "HERDSMAN_MAX_WORKER_MEMORY");
        assert_eq!(Key::AdminBind.flag(), "--admin-bind");
        assert_eq!(Key::ControlSocket.env_var(), "HERDSMAN_CONTROL_SOCKET");
        assert_eq!(Key::App.flag(), "APP");
        assert_eq!(Key::Pidfile.flag(), "--pid");
        assert_eq!(Key::Pidfile.env_var(), "HERDSMAN_PIDFILE");
        assert_eq!(Key::LogFile.flag(), "--log-file");
    }

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(suggest_key("graceful_timout"), Some("graceful_timeout"));
        assert_eq!(suggest_key("graceful-timeout"), Some("graceful_timeout"));
        assert_eq!(suggest_key("worker"), Some("workers"));
        assert_eq!(suggest_key("Workers"), Some("workers"));
        assert_eq!(suggest_key("binds"), Some("bind"));
        assert_eq!(suggest_key("completely_unrelated"), None);
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("asig", "asgi"), 1);
    }
}
