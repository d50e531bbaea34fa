//! The command-line layer of the configuration: [`RunArgs`], every flag that configures a run,
//! as clap parses it (the `herdsman` and `herdsman check` commands both take it; `cli` wraps
//! it in the full command line). Lives in `config` because `config` turns it into a layer;
//! `cli` only re-exports it.
//!
//! clap only handles structure here. Every value is kept raw (`Option<String>`, or an empty `Vec`
//! for repeatable flags) so that "not given" stays distinguishable from "given", and so that bad
//! values are reported by the config validator together with every other problem, with a fix.
//! Boolean switches are `Option<bool>` too: `--factory` means `Some(true)`, absence `None`, so a
//! flag never gets OR-merged into what the file or the environment said. Each `--x` / `--no-x`
//! pair is generated once by [`switch!`]: clap's `overrides_with` leaves at most one of the two
//! set, so the last one given wins.

use clap::Args;
use std::path::PathBuf;

/// Defines a flattened `--x` / `--no-x` pair of switches, each `Option<bool>` (`Some(true)`
/// when given, `None` when not), each overriding the other so the last one given wins, and a
/// `resolved()` that reads the pair as one `Option<bool>`.
macro_rules! switch {
    (
        $(#[$meta:meta])*
        $name:ident:
        $(#[doc = $yes_doc:literal])*
        $yes:ident,
        $(#[doc = $no_doc:literal])*
        $no:ident
    ) => {
        $(#[$meta])*
        #[derive(Args, Debug, Clone, Default)]
        pub struct $name {
            $(#[doc = $yes_doc])*
            #[arg(
                long,
                num_args = 0,
                default_missing_value = "true",
                overrides_with = stringify!($no)
            )]
            pub $yes: Option<bool>,

            $(#[doc = $no_doc])*
            #[arg(
                long,
                num_args = 0,
                default_missing_value = "true",
                overrides_with = stringify!($yes)
            )]
            pub $no: Option<bool>,
        }

        impl $name {
            /// The pair as one switch: `Some(true)` for `--x`, `Some(false)` for `--no-x`
            /// (whichever came last), `None` if neither was given.
            pub fn resolved(&self) -> Option<bool> {
                resolve_pair(self.$yes, self.$no)
            }
        }
    };
}

/// Everything that configures a run. `None` / empty means "not given on the command line".
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// The application, `module:attr` (e.g. `myproject.asgi:application`); `module:factory()`
    /// calls a factory. Required here, in the file (`app = ...`) or in HERDSMAN_APP.
    #[arg(value_name = "APP")]
    pub app: Option<String>,

    /// TOML configuration file [default: none; env HERDSMAN_CONFIG].
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Number of workers, or `auto` for one per usable CPU [default: auto].
    #[arg(
        short = 'w',
        long,
        value_name = "N|auto",
        allow_negative_numbers = true
    )]
    pub workers: Option<String>,

    /// Address to listen on: HOST:PORT, [V6]:PORT, unix:PATH or fd://N; repeatable
    /// [default: 127.0.0.1:8000].
    #[arg(short = 'b', long, value_name = "ADDR")]
    pub bind: Vec<String>,

    /// Application interface: auto, asgi or wsgi [default: auto].
    #[arg(long, value_name = "auto|asgi|wsgi")]
    pub interface: Option<String>,

    /// gunicorn's worker class, for unchanged gunicorn command lines: uvicorn's worker
    /// (uvicorn.workers.UvicornWorker, uvicorn_worker.UvicornWorker, or their H11 variants)
    /// means interface asgi; any other class is refused, naming herdsman's equivalent
    /// [default: none].
    #[arg(short = 'k', long, value_name = "CLASS")]
    pub worker_class: Option<String>,

    /// The HTTP server the workers run the app on: uvicorn, or native (herdsman's own engine,
    /// a Rust extension module built and shipped with herdsman) [default: uvicorn].
    #[arg(long, value_name = "uvicorn|native")]
    pub engine: Option<String>,

    /// Python threads running the WSGI app in each worker of the native engine, 1 to 1024, as
    /// gunicorn's --threads; accepted but unused with uvicorn (a warning) [default: 4].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<String>,

    /// How workers are started: exec (a fresh interpreter each) or zygote (forked from a warm
    /// Python process per generation; see docs/zygote.md) [default: exec].
    #[arg(long, value_name = "exec|zygote")]
    pub spawn: Option<String>,

    #[command(flatten)]
    pub preload: PreloadSwitch,

    #[command(flatten)]
    pub factory: FactorySwitch,

    /// Python interpreter [default: the python beside herdsman, else $VIRTUAL_ENV/bin/python,
    /// else python3 on PATH].
    #[arg(long, value_name = "PATH")]
    pub python: Option<String>,

    /// Directory the workers run in and import the app from [default: current directory].
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<String>,

    #[command(flatten)]
    pub reload: ReloadSwitch,

    /// With --reload: a directory to watch instead of the app's directory; repeatable, as
    /// uvicorn's --reload-dir [default: the app's directory].
    #[arg(long, value_name = "DIR")]
    pub reload_dir: Vec<String>,

    /// With --reload: a file to watch besides the .py files (a template, a .env); repeatable, as
    /// gunicorn's --reload-extra-file [default: none].
    #[arg(long, value_name = "FILE")]
    pub reload_extra_file: Vec<String>,

    /// With --reload: a glob pattern of file names to watch besides *.py (e.g. '*.html');
    /// repeatable, as uvicorn's --reload-include [default: *.py only].
    #[arg(long, value_name = "PATTERN")]
    pub reload_include: Vec<String>,

    /// Comma-separated directories put first on the workers' sys.path, as gunicorn's
    /// --pythonpath (relative ones from the workers' directory) [default: none].
    #[arg(long, value_name = "DIRS")]
    pub pythonpath: Option<String>,

    /// Extra environment variable for the workers; repeatable [default: none].
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Kill a worker silent for this long, e.g. 30s, 500ms, 2m; bare number = seconds; 0 = never,
    /// as gunicorn [default: 30s].
    #[arg(
        short = 't',
        long,
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    pub timeout: Option<String>,

    /// Time a stopping worker gets before SIGKILL [default: 30s].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub graceful_timeout: Option<String>,

    /// On SIGTERM, keep serving this long while /readyz answers 503 (so load balancers
    /// deregister the instance), then stop gracefully; 0 = stop at once [default: 0].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub drain_before_stop: Option<String>,

    /// Time a new worker gets to import the app and become ready [default: 60s].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub boot_timeout: Option<String>,

    /// Consecutive boot failures before giving up at first start (or rolling a reload back) [default: 3].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub startup_attempts: Option<String>,

    /// Extra workers that may boot at once while replacing others, 1 to 64 [default: 1].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_surge: Option<String>,

    /// Most workers allowed (workers, ctl scale, TTIN), or auto = min(32 per CPU, memory / 32 MiB),
    /// at least 4 [default: auto].
    #[arg(long, value_name = "N|auto", allow_negative_numbers = true)]
    pub max_workers: Option<String>,

    /// ASGI lifespan protocol: auto (use it if the app supports it), on (required: a failing
    /// startup fails the boot), off [default: auto; off for WSGI apps].
    #[arg(long, value_name = "auto|on|off")]
    pub lifespan: Option<String>,

    /// Recycle a worker after this many requests; 0 = never [default: 0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_requests: Option<String>,

    /// Up to this many extra requests per worker, drawn at random [default: 0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_requests_jitter: Option<String>,

    /// Recycle a worker whose memory (PSS) stays above this, e.g. 512MiB, 1GB; 0 or off = never
    /// [default: off].
    #[arg(long, value_name = "SIZE", allow_negative_numbers = true)]
    pub max_worker_memory: Option<String>,

    /// Recycle a worker this long after it became ready, e.g. 6h; 0 = never [default: 0].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub max_worker_lifetime: Option<String>,

    /// Up to this much extra lifetime per worker, drawn at random [default: 0].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub max_worker_lifetime_jitter: Option<String>,

    /// How often worker memory is sampled for --max-worker-memory, at least 100ms
    /// [default: 5s].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub memory_check_interval: Option<String>,

    /// listen(2) backlog, 1 to 65535 [default: 2048].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub backlog: Option<String>,

    /// Most connections a worker serves at once; beyond it new ones wait in the listen queue
    /// (never refused), as gunicorn's --worker-connections, 1 to 1000000 [default: 1000].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub worker_connections: Option<String>,

    /// Close a keep-alive connection idle for this long, 0 to 1h, e.g. 5s; bare number =
    /// seconds (gunicorn's default is 2s, uvicorn's 5s) [default: 5s].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub keep_alive: Option<String>,

    /// Longest request line in bytes, answered 414 beyond it; 0 = no limit, at most 8190, as
    /// gunicorn [default: 4094].
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub limit_request_line: Option<String>,

    /// Most header fields in a request, answered 431 beyond it; 0 = no limit, at most 32768, as
    /// gunicorn [default: 100].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub limit_request_fields: Option<String>,

    /// Longest header field (name, colon and value) in bytes, answered 431 beyond it; 0 = no
    /// limit (the native engine still caps a request head at 64 KiB), as gunicorn
    /// [default: 8190].
    #[arg(
        long = "limit-request-field_size",
        alias = "limit-request-field-size",
        value_name = "BYTES",
        allow_negative_numbers = true
    )]
    pub limit_request_field_size: Option<String>,

    /// Peers whose X-Forwarded-For and X-Forwarded-Proto are believed: comma-separated
    /// addresses and networks, or * for every peer; sets FORWARDED_ALLOW_IPS for the workers
    /// [default: the workers' FORWARDED_ALLOW_IPS, else 127.0.0.1,::1].
    #[arg(long, value_name = "IPS")]
    pub forwarded_allow_ips: Option<String>,

    #[command(flatten)]
    pub proxy_protocol: ProxyProtocolSwitch,

    /// Peers whose PROXY protocol header is read (with --proxy-protocol): comma-separated
    /// addresses and networks, or * (gunicorn's --proxy-allow-from) [default: 127.0.0.1,::1].
    #[arg(long, value_name = "IPS")]
    pub proxy_allow_from: Option<String>,

    /// The path prefix the app is mounted under behind a proxy that strips it, e.g. /api: ASGI's
    /// root_path, WSGI's SCRIPT_NAME (uvicorn's --root-path) [default: none].
    #[arg(long, value_name = "PATH")]
    pub root_path: Option<String>,

    /// A path each new worker GETs from its own app before it counts as ready, e.g. /healthz: only
    /// a 2xx or 3xx answer makes it ready (catches what loads on the first request, such as
    /// Django's views) [default: none].
    #[arg(long, value_name = "PATH")]
    pub ready_path: Option<String>,

    /// Which HTTP versions the native engine serves (granian's --http): auto (HTTP/1.1, HTTP/2
    /// with prior knowledge, and ALPN h2 then http/1.1 over TLS), 1 (HTTP/1.1 only) or 2 (HTTP/2
    /// only); the uvicorn engine serves HTTP/1.1 only [default: auto].
    #[arg(long, value_name = "auto|1|2")]
    pub http: Option<String>,

    /// HTTP/2: most requests (streams) in flight at once on one connection (native engine)
    /// [default: 200].
    #[arg(long, value_name = "N")]
    pub http2_max_concurrent_streams: Option<String>,

    /// HTTP/2: the request body bytes a stream may send before the app reads them, e.g. 1MiB
    /// (native engine) [default: 1MiB].
    #[arg(long, value_name = "SIZE")]
    pub http2_initial_stream_window_size: Option<String>,

    /// HTTP/2: the request body bytes all the streams of a connection together may send before
    /// the app reads them (native engine) [default: 1MiB].
    #[arg(long, value_name = "SIZE")]
    pub http2_initial_connection_window_size: Option<String>,

    /// HTTP/2: the largest request head (header names and values, 32 bytes more each) a
    /// connection accepts; a larger one gets 431 (native engine) [default: 64KiB].
    #[arg(long, value_name = "SIZE")]
    pub http2_max_header_list_size: Option<String>,

    /// HTTP/2: PING an idle connection this often and close it when the answer does not come
    /// within the same time, e.g. 30s; 0 is off (native engine) [default: 0].
    #[arg(long, value_name = "DURATION")]
    pub http2_keep_alive_interval: Option<String>,
    /// TLS: the certificate (PEM, the chain after it) every bind serves, a unix: bind included,
    /// as gunicorn; needs --keyfile [default: none, plain HTTP].
    #[arg(long, value_name = "FILE")]
    pub certfile: Option<String>,

    /// TLS: the private key (PEM, not encrypted) of --certfile [default: none].
    #[arg(long, value_name = "FILE")]
    pub keyfile: Option<String>,

    /// TLS: the CA certificates (PEM) client certificates are verified against, with
    /// --cert-reqs 1 or 2 [default: none].
    #[arg(long, value_name = "FILE")]
    pub ca_certs: Option<String>,

    /// TLS client certificates, as gunicorn: 0 not asked for, 1 optional (verified if sent),
    /// 2 required [default: 0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub cert_reqs: Option<String>,

    /// TLS cipher suites, colon-separated (OpenSSL's syntax under uvicorn; suite names only
    /// under the native engine) [default: the TLS library's].
    #[arg(long, value_name = "CIPHERS")]
    pub ciphers: Option<String>,

    /// Lowest TLS version: TLS, TLS_SERVER or TLSv1_2 for TLS 1.2, TLSv1_3 for TLS 1.3 only
    /// (gunicorn's deprecated --ssl-version) [default: TLS_SERVER].
    #[arg(long, value_name = "VERSION")]
    pub ssl_version: Option<String>,

    /// trace, debug, info, warning, error or critical [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Master log format: text or json [default: text].
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<String>,

    /// Write the master's log to FILE (appending) instead of stderr; SIGUSR1 reopens it
    /// [default: stderr].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<String>,

    #[command(flatten)]
    pub access_log: AccessLogSwitch,

    /// Write the access log to PATH (appending; `-`: standard output), as gunicorn's
    /// --access-logfile; turns the access log on unless --no-access-log is given
    /// [default: standard output].
    #[arg(long = "access-logfile", value_name = "PATH|-")]
    pub access_log_file: Option<String>,

    /// The access log line, in gunicorn's format (its atoms, e.g. '%(h)s "%(r)s" %(s)s %(M)s'), or
    /// `json` for one JSON object per line [default: gunicorn's default format].
    #[arg(long = "access-logformat", value_name = "FORMAT")]
    pub access_log_format: Option<String>,

    #[command(flatten)]
    pub capture_output: CaptureOutputSwitch,

    /// Write the master's pid to FILE at start, remove it at exit [default: none].
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: Option<String>,

    /// A name for the process titles `ps` and `top` show: `herdsman: master [NAME]` and
    /// `herdsman: worker [NAME]` (gunicorn's -n/--name) [default: none: titles unchanged].
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub proc_name: Option<String>,

    /// Run the workers as this user (name or uid); the master keeps its own [default: the
    /// master's user].
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,

    /// Run the workers with this group (name or gid) [default: the user's primary group].
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,

    /// The workers' umask, in octal, e.g. 027 or 0o027 [default: the master's].
    #[arg(short = 'm', long, value_name = "OCTAL")]
    pub umask: Option<String>,

    #[command(flatten)]
    pub no_new_privs: NoNewPrivsSwitch,

    /// Control socket for `herdsman ctl` [default: $XDG_RUNTIME_DIR/herdsman-UID/PID.sock, or
    /// under /tmp].
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<String>,

    /// Serve /metrics, /livez and /readyz on HOST:PORT or unix:PATH; off = none [default: off].
    #[arg(long, value_name = "ADDR")]
    pub admin_bind: Option<String>,

    /// Ready workers /readyz needs: a number, or all = the target count [default: all].
    #[arg(long, value_name = "N|all", allow_negative_numbers = true)]
    pub ready_min: Option<String>,

    /// gunicorn flags that change nothing here, accepted with a warning (or refused): hidden.
    #[command(flatten)]
    pub gunicorn_compat: super::compat::GunicornCompat,
}

impl RunArgs {
    /// `--factory` / `--no-factory` resolved: the last one given wins; `None` if neither.
    pub fn factory_flag(&self) -> Option<bool> {
        self.factory.resolved()
    }

    /// `--preload` / `--no-preload` resolved, as `factory_flag`.
    pub fn preload_flag(&self) -> Option<bool> {
        self.preload.resolved()
    }

    /// `--access-log` / `--no-access-log` resolved: the last one given wins; `None` if neither.
    pub fn access_log_flag(&self) -> Option<bool> {
        self.access_log.resolved()
    }

    /// `--reload` / `--no-reload` resolved, as `access_log_flag`.
    pub fn reload_flag(&self) -> Option<bool> {
        self.reload.resolved()
    }

    /// `--proxy-protocol` / `--no-proxy-protocol` resolved, as `access_log_flag`.
    pub fn proxy_protocol_flag(&self) -> Option<bool> {
        self.proxy_protocol.resolved()
    }

    /// `--capture-output` / `--no-capture-output` resolved, as `access_log_flag`.
    pub fn capture_output_flag(&self) -> Option<bool> {
        self.capture_output.resolved()
    }

    /// `--no-new-privs` / `--allow-new-privs` resolved, as `access_log_flag`.
    pub fn no_new_privs_flag(&self) -> Option<bool> {
        self.no_new_privs.resolved()
    }
}

switch! {
    /// `--preload` / `--no-preload`.
    PreloadSwitch:
    /// With `--spawn zygote`: import the app once in the zygote, before forking the workers
    /// (memory shared copy-on-write, fast replacements) [default: no].
    preload,
    /// Import the app in each worker after the fork (undoes `preload = true`).
    no_preload
}

switch! {
    /// `--factory` / `--no-factory`.
    FactorySwitch:
    /// Call APP to get the application (an app factory) [default: no].
    factory,
    /// Use APP as the application itself, not a factory (undoes `factory = true`).
    no_factory
}

switch! {
    /// `--access-log` / `--no-access-log`.
    AccessLogSwitch:
    /// Log one line per request, written by the workers [default: on].
    access_log,
    /// Do not log requests.
    no_access_log
}

switch! {
    /// `--reload` / `--no-reload`.
    ReloadSwitch:
    /// For development: reload (as on SIGHUP) when a .py file under the app's directory (or
    /// --reload-dir) or a --reload-extra-file changes [default: no].
    reload,
    /// Do not watch the source (undoes `reload = true`).
    no_reload
}

switch! {
    /// `--proxy-protocol` / `--no-proxy-protocol`.
    ProxyProtocolSwitch:
    /// Read a PROXY protocol header (HAProxy v1 or v2) at the start of every connection from
    /// --proxy-allow-from; its source address becomes the client's [default: off].
    proxy_protocol,
    /// Do not read PROXY protocol headers (undoes `proxy_protocol = true`).
    no_proxy_protocol
}

switch! {
    /// `--capture-output` / `--no-capture-output`.
    CaptureOutputSwitch:
    /// Capture the workers' stdout and stderr into the master's log, each line a record naming
    /// the worker [default: off: workers write to the master's stdout/stderr].
    capture_output,
    /// Let the workers write to the master's stdout and stderr directly.
    no_capture_output
}

switch! {
    /// `--no-new-privs` / `--allow-new-privs`.
    NoNewPrivsSwitch:
    /// Start the workers with the kernel's no_new_privs flag: neither they nor what they exec
    /// can gain privileges through setuid/setgid bits or file capabilities [default: on].
    no_new_privs,
    /// Let the workers exec setuid/setgid helpers that need the privileges they grant (undoes
    /// `no_new_privs = true`, the default).
    allow_new_privs
}

/// clap's `overrides_with` leaves at most one of a `--x` / `--no-x` pair set.
fn resolve_pair(yes: Option<bool>, no: Option<bool>) -> Option<bool> {
    match (yes, no) {
        (Some(true), _) => Some(true),
        (_, Some(true)) => Some(false),
        _ => None,
    }
}
