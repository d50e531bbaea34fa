//! The command-line layer: what `RunArgs` gave, as raw values tagged with their flag. Only
//! options actually given appear in the layer, so an absent flag never overrides the file or the
//! environment (and switches are never OR-merged).

use super::env::assignments;
use super::error::ConfigError;
use super::flags::RunArgs;
use super::keys::Key;
use super::layer::{Layer, Origin, Raw, Sourced};

/// The layer the command line makes, and the problems found in it (malformed `-e`).
pub fn read(args: &RunArgs) -> (Layer, Vec<ConfigError>) {
    let mut layer = Layer::default();
    let mut errors = args
        .gunicorn_compat
        .refusals(|flag| Origin::Cli(flag.to_string()));
    for (key, value) in texts(args) {
        if let Some(text) = value {
            layer.set(key, Sourced::new(Raw::Text(text.clone()), flag(key)));
        }
    }
    switch(
        &mut layer,
        Key::Factory,
        args.factory_flag(),
        "--factory",
        "--no-factory",
    );
    switch(
        &mut layer,
        Key::Preload,
        args.preload_flag(),
        "--preload",
        "--no-preload",
    );
    let access = args.access_log_flag();
    switch(
        &mut layer,
        Key::AccessLog,
        access,
        "--access-log",
        "--no-access-log",
    );
    switch(
        &mut layer,
        Key::ProxyProtocol,
        args.proxy_protocol_flag(),
        "--proxy-protocol",
        "--no-proxy-protocol",
    );
    switch(
        &mut layer,
        Key::Reload,
        args.reload_flag(),
        "--reload",
        "--no-reload",
    );
    for (key, values) in [
        (Key::ReloadDir, &args.reload_dir),
        (Key::ReloadExtraFile, &args.reload_extra_file),
        (Key::ReloadInclude, &args.reload_include),
    ] {
        if !values.is_empty() {
            layer.set(key, Sourced::new(Raw::List(items(key, values)), flag(key)));
        }
    }
    let capture = args.capture_output_flag();
    switch(
        &mut layer,
        Key::CaptureOutput,
        capture,
        "--capture-output",
        "--no-capture-output",
    );
    let no_new_privs = args.no_new_privs_flag();
    switch(
        &mut layer,
        Key::NoNewPrivs,
        no_new_privs,
        "--no-new-privs",
        "--allow-new-privs",
    );
    if !args.bind.is_empty() {
        let binds = Raw::List(items(Key::Bind, &args.bind));
        layer.set(Key::Bind, Sourced::new(binds, flag(Key::Bind)));
    }
    if !args.env.is_empty() {
        let table = assignments(items(Key::Env, &args.env), &mut errors);
        layer.set(Key::Env, Sourced::new(table, flag(Key::Env)));
    }
    (layer, errors)
}

/// The single-valued options, by key.
fn texts(args: &RunArgs) -> [(Key, &Option<String>); 59] {
    [
        (Key::App, &args.app),
        (Key::Workers, &args.workers),
        (Key::Interface, &args.interface),
        (Key::WorkerClass, &args.worker_class),
        (Key::Engine, &args.engine),
        (Key::Threads, &args.threads),
        (Key::Spawn, &args.spawn),
        (Key::Python, &args.python),
        (Key::Chdir, &args.chdir),
        (Key::Pythonpath, &args.pythonpath),
        (Key::Timeout, &args.timeout),
        (Key::GracefulTimeout, &args.graceful_timeout),
        (Key::DrainBeforeStop, &args.drain_before_stop),
        (Key::BootTimeout, &args.boot_timeout),
        (Key::StartupAttempts, &args.startup_attempts),
        (Key::MaxSurge, &args.max_surge),
        (Key::MaxWorkers, &args.max_workers),
        (Key::Lifespan, &args.lifespan),
        (Key::MaxRequests, &args.max_requests),
        (Key::MaxRequestsJitter, &args.max_requests_jitter),
        (Key::MaxWorkerMemory, &args.max_worker_memory),
        (Key::MaxWorkerLifetime, &args.max_worker_lifetime),
        (
            Key::MaxWorkerLifetimeJitter,
            &args.max_worker_lifetime_jitter,
        ),
        (Key::MemoryCheckInterval, &args.memory_check_interval),
        (Key::Backlog, &args.backlog),
        (Key::WorkerConnections, &args.worker_connections),
        (Key::KeepAlive, &args.keep_alive),
        (Key::LimitRequestLine, &args.limit_request_line),
        (Key::LimitRequestFields, &args.limit_request_fields),
        (Key::LimitRequestFieldSize, &args.limit_request_field_size),
        (Key::ForwardedAllowIps, &args.forwarded_allow_ips),
        (Key::ProxyAllowFrom, &args.proxy_allow_from),
        (Key::RootPath, &args.root_path),
        (Key::ReadyPath, &args.ready_path),
        (Key::Http, &args.http),
        (
            Key::Http2MaxConcurrentStreams,
            &args.http2_max_concurrent_streams,
        ),
        (
            Key::Http2InitialStreamWindowSize,
            &args.http2_initial_stream_window_size,
        ),
        (
            Key::Http2InitialConnectionWindowSize,
            &args.http2_initial_connection_window_size,
        ),
        (
            Key::Http2MaxHeaderListSize,
            &args.http2_max_header_list_size,
        ),
        (Key::Http2KeepAliveInterval, &args.http2_keep_alive_interval),
        (Key::Certfile, &args.certfile),
        (Key::Keyfile, &args.keyfile),
        (Key::CaCerts, &args.ca_certs),
        (Key::CertReqs, &args.cert_reqs),
        (Key::Ciphers, &args.ciphers),
        (Key::SslVersion, &args.ssl_version),
        (Key::LogLevel, &args.log_level),
        (Key::LogFormat, &args.log_format),
        (Key::LogFile, &args.log_file),
        (Key::AccessLogFile, &args.access_log_file),
        (Key::AccessLogFormat, &args.access_log_format),
        (Key::Pidfile, &args.pidfile),
        (Key::ProcName, &args.proc_name),
        (Key::User, &args.user),
        (Key::Group, &args.group),
        (Key::Umask, &args.umask),
        (Key::ControlSocket, &args.control_socket),
        (Key::AdminBind, &args.admin_bind),
        (Key::ReadyMin, &args.ready_min),
    ]
}

fn flag(key: Key) -> Origin {
    Origin::Cli(key.flag())
}

/// A `--x` / `--no-x` pair, resolved, located at the flag that decided it.
fn switch(layer: &mut Layer, key: Key, value: Option<bool>, yes: &str, no: &str) {
    if let Some(on) = value {
        let origin = Origin::Cli(if on { yes } else { no }.to_string());
        layer.set(key, Sourced::new(Raw::Bool(on), origin));
    }
}

/// The values of a repeatable flag, each located at the flag.
fn items(key: Key, values: &[String]) -> Vec<Sourced<Raw>> {
    values
        .iter()
        .map(|value| Sourced::new(Raw::Text(value.clone()), flag(key)))
        .collect()
}
