//! The typed, validated configuration the rest of herdsman runs on. Everything here is already
//! checked: a `Config` value is always usable. Defaults live in `defaults` below, in one place,
//! and docs/configuration.md documents each of them.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::addr::BindSpec;

/// Defaults for every key that has one. docs/configuration.md and config/herdsman.toml must agree.
pub mod defaults {
    use super::{
        BindSpec, Engine, Interface, Lifespan, LogFormat, LogLevel, ReadyMin, SpawnMode,
        WorkerCount,
    };
    use std::path::PathBuf;
    use std::time::Duration;
    /// `factory`: `app` is the application itself, not a factory to call.
    pub const FACTORY: bool = false;
    /// `workers`: one per CPU this process may use.
    pub const WORKERS: WorkerCount = WorkerCount::Auto;
    /// `bind`: gunicorn's default address.
    pub const BIND: &str = "127.0.0.1:8000";
    /// `interface`: detect ASGI or WSGI from the application object.
    pub const INTERFACE: Interface = Interface::Auto;
    /// `engine`: uvicorn, the engine every release so far has served with; the native engine is
    /// opt-in while it is new.
    pub const ENGINE: Engine = Engine::Uvicorn;
    /// `threads`: Python threads running the WSGI app in each worker of the native engine. With
    /// the engine's pool (engine/src/pool.rs) a CPU-bound app measured the same with 4 as with 1
    /// (Flask JSON, one worker: 11.5-12.6k req/s either way), and an app that blocks gets 4 calls
    /// at once.
    pub const THREADS: u32 = 4;
    /// `max_workers`: derived from the CPUs and memory (src/sizing/bounds.rs).
    pub const MAX_WORKERS: WorkerCount = WorkerCount::Auto;
    /// `lifespan`: as uvicorn, used when the app supports it.
    pub const LIFESPAN: Lifespan = Lifespan::Auto;
    /// `spawn`: every worker is a fresh interpreter (fork and exec); `zygote` is opt-in.
    pub const SPAWN: SpawnMode = SpawnMode::Exec;
    /// `preload`: with `spawn = "zygote"`, the app is imported in each worker after the fork
    /// (safe for apps that open connections or threads at import).
    pub const PRELOAD: bool = false;
    /// `timeout`: liveness, the longest a worker's event loop may go without a heartbeat.
    pub const TIMEOUT: Duration = Duration::from_secs(30);
    /// `graceful_timeout`: how long a stopping worker may take before SIGKILL.
    pub const GRACEFUL_TIMEOUT: Duration = Duration::from_secs(30);
    /// `drain_before_stop`: on SIGTERM, how long to keep serving while reporting not-ready
    /// before the graceful stop begins; zero stops at once.
    pub const DRAIN_BEFORE_STOP: Duration = Duration::ZERO;
    /// `boot_timeout`: how long a new worker may take to import the app and become ready.
    pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
    /// `backlog`: listen(2) backlog of every listener herdsman binds.
    pub const BACKLOG: u32 = 2048;
    /// `startup_attempts`: consecutive boot failures (of any worker), before any worker was ever ready,
    /// after which the master gives up and exits.
    pub const STARTUP_ATTEMPTS: u32 = 3;
    /// `max_surge`: extra workers that may boot at once while replacing others (reload,
    /// recycling): one keeps memory bounded, and capacity never dips either way.
    pub const MAX_SURGE: u32 = 1;
    /// `max_requests`: recycle a worker after this many requests; `None` (0 in the file) = never.
    pub const MAX_REQUESTS: Option<u64> = None;
    /// `max_requests_jitter`: up to this many more requests, drawn per worker, so workers
    /// started together are not recycled together.
    pub const MAX_REQUESTS_JITTER: u64 = 0;
    /// `max_worker_memory`: recycle a worker whose proportional set size (PSS) stays above this
    /// many bytes; `None` = never.
    pub const MAX_WORKER_MEMORY: Option<u64> = None;
    /// `max_worker_lifetime`: recycle a worker this long after it became ready; `None` = never.
    pub const MAX_WORKER_LIFETIME: Option<Duration> = None;
    /// `max_worker_lifetime_jitter`: up to this much longer, drawn per worker.
    pub const MAX_WORKER_LIFETIME_JITTER: Duration = Duration::ZERO;
    /// `memory_check_interval`: how often worker memory is sampled when `max_worker_memory` is
    /// set; a worker is recycled after 3 consecutive samples over the limit.
    pub const MEMORY_CHECK_INTERVAL: Duration = Duration::from_secs(5);
    /// `log_level`.
    pub const LOG_LEVEL: LogLevel = LogLevel::Info;
    /// `log_format`: text, for terminals.
    pub const LOG_FORMAT: LogFormat = LogFormat::Text;
    /// `access_log`: one line per request (when neither `access_log` nor `access_log_file` is
    /// given).
    pub const ACCESS_LOG: bool = true;
    /// `access_log_format`: gunicorn's default.
    pub const ACCESS_LOG_FORMAT: &str = super::super::access_format::DEFAULT;
    /// `capture_output`: workers write straight to the master's stdout and stderr (or the log
    /// file), untouched; journald and container runtimes collect them as they are.
    pub const CAPTURE_OUTPUT: bool = false;
    /// `no_new_privs`: workers run with the kernel's no_new_privs flag, so neither they nor
    /// anything they exec can gain privileges (setuid and setgid bits, file capabilities).
    pub const NO_NEW_PRIVS: bool = true;
    // `log_file`, `pidfile`, `user`, `group` and `umask` have no default value: unset means
    // stderr, no pidfile, and the master's own user, group and umask.
    /// `control_socket`: `None` = `<pid>.sock` in the private directory
    /// `${XDG_RUNTIME_DIR:-/tmp}/herdsman-<uid>/`, where `herdsman ctl` finds it.
    pub const CONTROL_SOCKET: Option<PathBuf> = None;
    /// `admin_bind`: no admin HTTP listener (metrics and health endpoints are opt-in).
    pub const ADMIN_BIND: Option<BindSpec> = None;
    /// `ready_min`: `/readyz` wants every worker of the target count ready.
    pub const READY_MIN: ReadyMin = ReadyMin::All;
    /// What `timeout = 0` (no timeout, as gunicorn's) stands for in the master's deadlines: a
    /// worker silent for ten years. Finite, so deadline arithmetic cannot overflow.
    pub const NO_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    /// `keep_alive`: uvicorn's default, which herdsman's workers always had (gunicorn's is 2s).
    pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
    /// gunicorn's request limits.
    pub const LIMIT_REQUEST_LINE: u32 = 4094;
    pub const LIMIT_REQUEST_FIELDS: u32 = 100;
    pub const LIMIT_REQUEST_FIELD_SIZE: u32 = 8190;
    /// `worker_connections`: gunicorn's default.
    pub const WORKER_CONNECTIONS: u32 = 1000;
    /// `proxy_allow_from`: gunicorn's default (its `proxy_allow_ips`).
    pub const PROXY_ALLOW_FROM: &str = "127.0.0.1,::1";
    /// `http` and the `http2_*` keys (native engine; docs/engine.md, HTTP/2, says why these).
    /// Every version the engine has: HTTP/2 costs an HTTP/1.1 client nothing (the connection
    /// preface tells them apart), as granian's `--http auto`.
    pub const HTTP: super::HttpVersion = super::HttpVersion::Auto;
    /// hyper's and granian's default; hypercorn's is 100. Each stream is a request waiting for
    /// one of the worker's threads, so more only queues.
    pub const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 200;
    /// hyper's and granian's 1 MiB (the protocol's own 64 KiB makes an upload wait for a round
    /// trip every 64 KiB).
    pub const HTTP2_INITIAL_STREAM_WINDOW_SIZE: u32 = 1 << 20;
    pub const HTTP2_INITIAL_CONNECTION_WINDOW_SIZE: u32 = 1 << 20;
    /// hypercorn's 64 KiB: the bound the HTTP/1.1 side puts on a whole request head (hyper's read
    /// buffer), so an HTTP/2 client gets no more room than an HTTP/1.1 one; the per-field
    /// `limit_request_*` apply to both.
    pub const HTTP2_MAX_HEADER_LIST_SIZE: u32 = 64 << 10;
    /// No PING: an idle connection is closed after `keep_alive`, as an HTTP/1.1 one (hyper's and
    /// granian's default).
    pub const HTTP2_KEEP_ALIVE_INTERVAL: Option<Duration> = None;
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The application to serve.
    pub app: AppSpec,
    /// How many workers to run.
    pub workers: WorkerCount,
    /// The most workers allowed; `Auto`: this machine's bound (src/sizing/bounds.rs).
    pub max_workers: WorkerCount,
    /// The ASGI lifespan protocol mode, passed to uvicorn.
    pub lifespan: Lifespan,
    /// Listeners, in the order given. Never empty.
    pub binds: Vec<BindSpec>,
    /// ASGI or WSGI, or detect it.
    pub interface: Interface,
    /// gunicorn's worker class as given (a uvicorn worker: it made `interface` asgi).
    pub worker_class: Option<String>,
    /// The HTTP server the workers run the app on.
    pub engine: Engine,
    /// Python threads running the WSGI app in each worker of the native engine, as given;
    /// `None`: not set, `defaults::THREADS`. Kept unresolved so that a value set for uvicorn,
    /// which does not use it, can be warned about.
    pub threads: Option<u32>,
    /// How workers are started (docs/zygote.md).
    pub spawn: SpawnMode,
    /// Directories put first on the workers' `sys.path`, in order (gunicorn's `pythonpath`).
    pub pythonpath: Vec<String>,
    /// Reload when the source changes (development; `master::watch`).
    pub reload: bool,
    /// Directories watched for `.py` changes; empty: the app's directory.
    pub reload_dirs: Vec<PathBuf>,
    /// Files watched besides the `.py` ones.
    pub reload_extra_files: Vec<PathBuf>,
    /// Glob patterns of file names `reload` watches besides `*.py` (`*.html`).
    pub reload_includes: Vec<String>,
    /// With `spawn = "zygote"`: import the app in the zygote, before the fork.
    pub preload: bool,
    /// The Python interpreter; `None` means the `python` beside the herdsman executable, else
    /// `$VIRTUAL_ENV/bin/python`, else `python3` on PATH (`worker::python`).
    pub python: Option<PathBuf>,
    /// Directory the workers run in (and import the app from). `None`: the master's cwd.
    pub chdir: Option<PathBuf>,
    /// Extra environment variables for the workers, in order.
    pub env: Vec<(String, String)>,
    /// Liveness timeout: no heartbeat for this long gets a worker dumped and killed.
    pub timeout: Duration,
    /// Graceful stop deadline for workers.
    pub graceful_timeout: Duration,
    /// Serving time between SIGTERM and the graceful stop, with `/readyz` answering 503.
    pub drain_before_stop: Duration,
    /// Deadline for a new worker to become ready.
    pub boot_timeout: Duration,
    /// Consecutive boot failures (of any worker), before any worker was ever ready (or during a
    /// reload: then the reload is rolled back), before giving up.
    pub startup_attempts: u32,
    /// Extra workers allowed to boot at once while replacing others.
    pub max_surge: u32,
    /// Recycle a worker after this many requests (plus its jitter); `None`: never.
    pub max_requests: Option<u64>,
    /// Per-worker random extra requests before recycling, 0..=this.
    pub max_requests_jitter: u64,
    /// Recycle a worker whose PSS stays above this many bytes; `None`: never.
    pub max_worker_memory: Option<u64>,
    /// Recycle a worker this long after it became ready (plus its jitter); `None`: never.
    pub max_worker_lifetime: Option<Duration>,
    /// Per-worker random extra lifetime, 0..=this.
    pub max_worker_lifetime_jitter: Duration,
    /// How often worker memory is sampled when `max_worker_memory` is set.
    pub memory_check_interval: Duration,
    /// listen(2) backlog.
    pub backlog: u32,
    /// Most connections one worker serves at once; beyond it they wait in the listen queue.
    pub worker_connections: u32,
    /// An idle keep-alive connection is closed after this long (both engines).
    pub keep_alive: Duration,
    /// gunicorn's request limits, in bytes and fields; 0 = no limit.
    pub limit_request_line: u32,
    pub limit_request_fields: u32,
    pub limit_request_field_size: u32,
    /// `FORWARDED_ALLOW_IPS` for the workers, normalized (`a,b,c`); `None`: not set, the workers
    /// keep theirs.
    pub forwarded_allow_ips: Option<String>,
    /// Read a PROXY protocol header at the start of each connection from `proxy_allow_from`.
    pub proxy_protocol: bool,
    /// The peers whose PROXY header is read, normalized (`a,b,c`).
    pub proxy_allow_from: String,
    /// The mount prefix (`/api`), or empty: ASGI `root_path`, WSGI `SCRIPT_NAME`.
    pub root_path: String,
    /// The readiness probe's path (`/healthz`, a query allowed); `None`: no probe.
    pub ready_path: Option<String>,
    /// TLS served by the engine in every worker, on every bind; `None`: plain HTTP.
    pub tls: Option<Tls>,
    /// The HTTP versions the native engine serves, and its HTTP/2 settings.
    pub http: Http,
    /// Master and worker log level.
    pub log_level: LogLevel,
    /// Master log format.
    pub log_format: LogFormat,
    /// Where the master logs; `None`: stderr. Reopened on SIGUSR1.
    pub log_file: Option<PathBuf>,
    /// Whether the workers write an access log line per request: `access_log` if given, else on
    /// when `access_log_file` is given, else the default.
    pub access_log: bool,
    /// Where access lines go (absolute, since workers may chdir); `None`: standard output.
    pub access_log_file: Option<PathBuf>,
    /// gunicorn's format, or `json`.
    pub access_log_format: String,
    /// Capture each worker's stdout and stderr, prefix every line with the worker id, and write
    /// it where the master logs.
    pub capture_output: bool,
    /// The pidfile the master writes at start and removes at exit; `None`: none.
    pub pidfile: Option<PathBuf>,
    /// The name in the process titles (`-n/--name`); `None`: the titles are left as started.
    pub proc_name: Option<String>,
    /// The account the workers run as (the master keeps its own); `None`: the master's.
    pub user: Option<User>,
    /// The group the workers run as; `None`: the user's primary group, or the master's.
    pub group: Option<Group>,
    /// The workers' umask; `None`: the master's.
    pub umask: Option<u32>,
    /// Set the no_new_privs flag in each worker (and zygote) before it execs.
    pub no_new_privs: bool,
    /// Where the control socket is created; `None`: the private per-user directory.
    pub control_socket: Option<PathBuf>,
    /// Where the admin HTTP listener (metrics, health) listens; `None`: nowhere. Never `Fd`.
    pub admin_bind: Option<BindSpec>,
    /// Ready workers `/readyz` needs.
    pub ready_min: ReadyMin,
    /// Where the configuration file came from, if one was read (for reloads and messages).
    pub config_file: Option<PathBuf>,
    /// A Python config file (`gunicorn.conf.py`) was read: its hooks and ignored settings.
    pub gunicorn: Option<GunicornFile>,
    /// Warnings found while loading: gunicorn flags given that change nothing here.
    pub notes: Vec<String>,
}

/// What herdsman keeps of a `gunicorn.conf.py` besides its settings (docs/gunicorn-config.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GunicornFile {
    /// The file, absolute (the workers execute it again after their `chdir`), or
    /// `python:module.name` as given.
    pub path: PathBuf,
    /// The server hooks it defines, in gunicorn's order; none that herdsman refuses.
    pub hooks: Vec<String>,
    /// Its gunicorn settings that herdsman does not have (one warning at start).
    pub ignored: Vec<String>,
    /// For `python:module.name`: the directory the module's package was imported from, which
    /// the workers and hook processes search too (they may have changed directory since).
    pub import_root: Option<PathBuf>,
}

impl GunicornFile {
    /// Whether it defines hook `name`.
    pub fn has(&self, name: &str) -> bool {
        self.hooks.iter().any(|hook| hook == name)
    }
}

/// `user`: an account, resolved (name service lookups) when the configuration is loaded, so
/// that spawning a worker never needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// As written: a name or a numeric uid.
    pub given: String,
    pub uid: u32,
    /// The account's name, if the uid has a passwd entry.
    pub name: Option<String>,
    /// The primary group of the passwd entry, if there is one.
    pub gid: Option<u32>,
    /// The home directory of the passwd entry, if there is one.
    pub home: Option<PathBuf>,
    /// The workers' supplementary groups: the account's memberships plus the workers' group
    /// (what `initgroups(name, gid)` would set).
    pub groups: Vec<u32>,
}

impl User {
    /// `user NAME (uid N)`, or `uid N` for a uid without a passwd entry; for messages.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("user {name} (uid {})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

/// `group`: a group, resolved when the configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// As written: a name or a numeric gid.
    pub given: String,
    pub gid: u32,
}

/// The application: `module:attr`, optionally an app factory to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// Dotted module path, e.g. `myproject.asgi`.
    pub module: String,
    /// Attribute path inside the module, e.g. `app` or `api.app`.
    pub attr: String,
    /// Call `attr()` to get the application (`module:factory()` or `--factory`).
    pub factory: bool,
}

/// Worker count: a fixed number or sized from the CPUs this process may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerCount {
    Auto,
    Fixed(NonZeroU32),
}

/// How many ready workers make the server ready (`/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyMin {
    /// The target worker count at the moment (it follows scaling).
    All,
    /// At least this many, and never more than the target.
    AtLeast(NonZeroU32),
}

/// uvicorn's `lifespan` setting: `Auto` uses the protocol if the app speaks it (a startup that
/// raises is logged and the app served), `On` requires it (a startup that raises fails the boot),
/// `Off` never sends it. WSGI apps have no lifespan: `Auto` means off for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifespan {
    Auto,
    On,
    Off,
}

impl Lifespan {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifespan::Auto => "auto",
            Lifespan::On => "on",
            Lifespan::Off => "off",
        }
    }
}

/// The HTTP server inside each worker. The master treats both alike (docs/protocol.md is the
/// same contract): only the worker's argv differs, and `Native` needs its library located
/// (`worker::engine_lib`) before any worker is spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// uvicorn (WSGI apps through a2wsgi), installed in the app's Python environment.
    Uvicorn,
    /// herdsman's own engine: a CPython extension module (the `engine/` crate).
    Native,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Uvicorn => "uvicorn",
            Engine::Native => "native",
        }
    }
}

/// Which HTTP versions a native-engine connection may speak (`http`, granian's `--http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1, and HTTP/2 with prior knowledge (h2c) or by ALPN `h2` over TLS.
    Auto,
    /// HTTP/1.1 only (ALPN `http/1.1`).
    One,
    /// HTTP/2 only (ALPN `h2`).
    Two,
}

impl HttpVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Auto => "auto",
            HttpVersion::One => "1",
            HttpVersion::Two => "2",
        }
    }
}

/// `http` and the HTTP/2 settings a native-engine connection advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http {
    pub version: HttpVersion,
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE, bytes.
    pub initial_stream_window_size: u32,
    /// The connection's flow-control window, bytes.
    pub initial_connection_window_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, bytes (RFC 9113: names, values and 32 per field).
    pub max_header_list_size: u32,
    /// PING interval (and timeout) of an HTTP/2 connection; `None`: no PING.
    pub keep_alive_interval: Option<Duration>,
}

impl Default for Http {
    fn default() -> Http {
        Http {
            version: defaults::HTTP,
            max_concurrent_streams: defaults::HTTP2_MAX_CONCURRENT_STREAMS,
            initial_stream_window_size: defaults::HTTP2_INITIAL_STREAM_WINDOW_SIZE,
            initial_connection_window_size: defaults::HTTP2_INITIAL_CONNECTION_WINDOW_SIZE,
            max_header_list_size: defaults::HTTP2_MAX_HEADER_LIST_SIZE,
            keep_alive_interval: defaults::HTTP2_KEEP_ALIVE_INTERVAL,
        }
    }
}

/// How a worker process comes to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnMode {
    /// Fork and exec a fresh interpreter for every worker.
    Exec,
    /// Fork every worker from a warm Python process (one per generation).
    Zygote,
}

impl SpawnMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SpawnMode::Exec => "exec",
            SpawnMode::Zygote => "zygote",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    Auto,
    Asgi,
    Wsgi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// TLS, gunicorn's `certfile`, `keyfile`, `ca_certs`, `cert_reqs`, `ciphers` and `ssl_version`.
/// Checked when loaded (config/tls.rs): both files parse and the key matches the certificate; the
/// engine reads the files again when each worker starts, so a reload picks up renewed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The certificate chain, PEM, end-entity first.
    pub certfile: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1), not encrypted.
    pub keyfile: PathBuf,
    /// The CA certificates client certificates are verified against.
    pub ca_certs: Option<PathBuf>,
    pub cert_reqs: CertReqs,
    pub ciphers: Option<Ciphers>,
    /// The lowest protocol version served.
    pub min_version: TlsVersion,
}

/// gunicorn's `cert_reqs` (Python's `ssl.CERT_*`): whether clients must show a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertReqs {
    /// 0: not asked for.
    None,
    /// 1: asked for and verified when sent; a client without one is served.
    Optional,
    /// 2: a client without a valid certificate is refused in the handshake.
    Required,
}

impl CertReqs {
    /// gunicorn's integer.
    pub fn as_int(self) -> u8 {
        match self {
            CertReqs::None => 0,
            CertReqs::Optional => 1,
            CertReqs::Required => 2,
        }
    }
}

/// `ciphers`: as given (OpenSSL's cipher list syntax, passed to uvicorn's `ssl` module), and the
/// IANA names of the suites it names when every entry is a suite the native engine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphers {
    pub given: String,
    /// `None`: some entry is not a plain suite name (`HIGH`, `!aNULL`, a suite rustls lacks).
    pub suites: Option<Vec<&'static str>>,
}

/// The lowest TLS version served (what `ssl_version` maps to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// As the worker runtime's `--tls-min-version` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }

    /// As `ssl_version` spells it.
    pub fn ssl_version(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1_2",
            TlsVersion::Tls13 => "TLSv1_3",
        }
    }
}
