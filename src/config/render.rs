//! The effective configuration as TOML text, for `herdsman check`. Every key appears, in the
//! order of `Key::ALL`; the unset optional paths (`python`, `chdir`, `control_socket`) and an
//! unset `threads` appear as comments saying what is used instead, and a recycling limit that is
//! off appears as `0  # off`. The output is a valid config file: `load` reads it back to the same
//! `Config` (apart from `config_file`).

use crate::config::{
    defaults, AppSpec, BindSpec, Config, Interface, LogFormat, LogLevel, ReadyMin, WorkerCount,
};
use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::Duration;

/// `config` as a TOML document.
pub fn render(config: &Config) -> String {
    let mut out = String::from("# herdsman: effective configuration\n");
    match &config.config_file {
        Some(path) => out.push_str(&format!("# read from {}\n", path.display())),
        None => out.push_str("# no config file read\n"),
    }
    if let Some(file) = &config.gunicorn {
        let hooks = match file.hooks.is_empty() {
            true => "none".to_string(),
            false => file.hooks.join(", "),
        };
        out.push_str(&format!(
            "# a gunicorn config file; its server hooks: {hooks}\n"
        ));
    }
    let mut line = |key: &str, value: String| {
        writeln!(out, "{key} = {value}").expect("writing to a String cannot fail");
    };
    let app = AppSpec {
        factory: false,
        ..config.app.clone()
    };
    line("app", quote(&app.to_string()));
    line("factory", config.app.factory.to_string());
    line("workers", workers(config.workers));
    line("max_workers", workers(config.max_workers));
    line("lifespan", quote(config.lifespan.as_str()));
    line("bind", binds(&config.binds));
    line("interface", quote(config.interface.as_str()));
    line("engine", quote(config.engine.as_str()));
    match config.threads {
        Some(n) => line("threads", n.to_string()),
        None => line("# threads", format!("(not set: {})", defaults::THREADS)),
    }
    match &config.worker_class {
        Some(class) => line("worker_class", quote(class)),
        None => line("# worker_class", "(not set: none)".into()),
    }
    if config.pythonpath.is_empty() {
        line("# pythonpath", "(not set: none)".into());
    } else {
        line("pythonpath", quote(&config.pythonpath.join(",")));
    }
    line("reload", config.reload.to_string());
    let list = |paths: &[std::path::PathBuf]| {
        let items: Vec<String> = paths
            .iter()
            .map(|p| quote(&p.display().to_string()))
            .collect();
        format!("[{}]", items.join(", "))
    };
    if config.reload_dirs.is_empty() {
        line("# reload_dir", "(not set: the app's directory)".into());
    } else {
        line("reload_dir", list(&config.reload_dirs));
    }
    line("reload_extra_file", list(&config.reload_extra_files));
    let patterns: Vec<std::path::PathBuf> = config.reload_includes.iter().map(Into::into).collect();
    line("reload_include", list(&patterns));
    line("spawn", quote(config.spawn.as_str()));
    line("preload", config.preload.to_string());
    render_rest(config, &mut out);
    out
}

/// The keys after `interface`: paths, durations, numbers, logging, then `env` last because a
/// non-empty `env` is written as a `[env]` table.
fn render_rest(config: &Config, out: &mut String) {
    let mut line = |key: &str, value: String| {
        writeln!(out, "{key} = {value}").expect("writing to a String cannot fail");
    };
    optional_path(&mut line, "python", config.python.as_deref());
    optional_path(&mut line, "chdir", config.chdir.as_deref());
    line("timeout", duration(config.timeout));
    line("graceful_timeout", duration(config.graceful_timeout));
    line("drain_before_stop", duration(config.drain_before_stop));
    line("boot_timeout", duration(config.boot_timeout));
    line("startup_attempts", config.startup_attempts.to_string());
    recycling(&mut line, config);
    line("backlog", config.backlog.to_string());
    line("worker_connections", config.worker_connections.to_string());
    line("keep_alive", duration(config.keep_alive));
    line("limit_request_line", config.limit_request_line.to_string());
    line(
        "limit_request_fields",
        config.limit_request_fields.to_string(),
    );
    line(
        "limit_request_field_size",
        config.limit_request_field_size.to_string(),
    );
    line("root_path", quote(&config.root_path));
    let ready = config.ready_path.clone();
    optional(
        &mut line,
        "ready_path",
        ready,
        "no probe: ready once the app is served",
    );
    tls(&mut line, config.tls.as_ref());
    http(&mut line, &config.http, config.engine);
    let trusted = config.forwarded_allow_ips.clone();
    optional(
        &mut line,
        "forwarded_allow_ips",
        trusted,
        "the workers' FORWARDED_ALLOW_IPS, else 127.0.0.1,::1",
    );
    line("proxy_protocol", config.proxy_protocol.to_string());
    line("proxy_allow_from", quote(&config.proxy_allow_from));
    line("log_level", quote(config.log_level.as_str()));
    line("log_format", quote(config.log_format.as_str()));
    optional(&mut line, "log_file", path(&config.log_file), "stderr");
    line("access_log", config.access_log.to_string());
    let access_file = path(&config.access_log_file);
    optional(&mut line, "access_log_file", access_file, "standard output");
    line("access_log_format", quote(&config.access_log_format));
    line("capture_output", config.capture_output.to_string());
    hygiene(&mut line, config);
    operations(&mut line, config);
    env_table(config, out);
}

/// The TLS keys; all commented out when TLS is off.
fn tls(line: &mut impl FnMut(&str, String), tls: Option<&crate::config::Tls>) {
    let Some(tls) = tls else {
        line("# certfile", "(not set: plain HTTP)".into());
        line("# keyfile", "(not set)".into());
        line("# ca_certs", "(not set: none)".into());
        line("# cert_reqs", "(not set: 0)".into());
        line("# ciphers", "(not set: the TLS library's)".into());
        line("# ssl_version", "(not set: TLS_SERVER)".into());
        return;
    };
    line("certfile", quote(&tls.certfile.display().to_string()));
    line("keyfile", quote(&tls.keyfile.display().to_string()));
    optional_path(line, "ca_certs", tls.ca_certs.as_deref());
    line("cert_reqs", tls.cert_reqs.as_int().to_string());
    match &tls.ciphers {
        Some(ciphers) => line("ciphers", quote(&ciphers.given)),
        None => line("# ciphers", "(not set: the TLS library's)".into()),
    }
    line("ssl_version", quote(tls.min_version.ssl_version()));
}

/// `http` (1 and 2 as TOML integers) and the HTTP/2 settings; with the uvicorn engine, which
/// refuses them (it has no HTTP/2), those are comments showing the native engine's values.
fn http(
    line: &mut impl FnMut(&str, String),
    http: &crate::config::Http,
    engine: crate::config::Engine,
) {
    let version = match http.version {
        crate::config::HttpVersion::Auto => quote("auto"),
        other => other.as_str().to_string(),
    };
    line("http", version);
    let native = engine == crate::config::Engine::Native;
    let mut setting = |key: &str, value: String| match native {
        true => line(key, value),
        false => line(
            &format!("# {key}"),
            format!("{value}  # native engine only"),
        ),
    };
    let streams = http.max_concurrent_streams.to_string();
    setting("http2_max_concurrent_streams", streams);
    let window = size(u64::from(http.initial_stream_window_size));
    setting("http2_initial_stream_window_size", window);
    let window = size(u64::from(http.initial_connection_window_size));
    setting("http2_initial_connection_window_size", window);
    let headers = size(u64::from(http.max_header_list_size));
    setting("http2_max_header_list_size", headers);
    let ping = or_off(http.keep_alive_interval.map(duration));
    setting("http2_keep_alive_interval", ping);
}

/// The control socket, the admin listener and readiness.
fn operations(line: &mut impl FnMut(&str, String), config: &Config) {
    optional_path(line, "control_socket", config.control_socket.as_deref());
    let admin = config.admin_bind.as_ref().map(ToString::to_string);
    line("admin_bind", quote(admin.as_deref().unwrap_or("off")));
    let ready_min = match config.ready_min {
        ReadyMin::All => quote("all"),
        ReadyMin::AtLeast(n) => n.to_string(),
    };
    line("ready_min", ready_min);
}

/// `max_surge` and the recycling limits; a limit that is off is `0`, the value that turns it off.
fn recycling(line: &mut impl FnMut(&str, String), config: &Config) {
    line("max_surge", config.max_surge.to_string());
    line("max_requests", or_off(config.max_requests.map(integer)));
    line("max_requests_jitter", integer(config.max_requests_jitter));
    line(
        "max_worker_memory",
        or_off(config.max_worker_memory.map(size)),
    );
    let lifetime = config.max_worker_lifetime.map(duration);
    line("max_worker_lifetime", or_off(lifetime));
    let lifetime_jitter = duration(config.max_worker_lifetime_jitter);
    line("max_worker_lifetime_jitter", lifetime_jitter);
    line(
        "memory_check_interval",
        duration(config.memory_check_interval),
    );
}

/// `pidfile` and the workers' identity; unset ones as comments saying what is used instead.
fn hygiene(line: &mut impl FnMut(&str, String), config: &Config) {
    optional(line, "pidfile", path(&config.pidfile), "no pidfile");
    let name = config.proc_name.clone();
    optional(line, "proc_name", name, "process titles as started");
    let user = config.user.as_ref().map(|u| u.given.clone());
    optional(line, "user", user, "the master's user");
    let group = config.group.as_ref().map(|g| g.given.clone());
    let primary = "the user's primary group, or the master's group";
    optional(line, "group", group, primary);
    let umask = config.umask.map(super::account::format_umask);
    optional(line, "umask", umask, "the master's umask");
    line("no_new_privs", config.no_new_privs.to_string());
}

fn path(path: &Option<std::path::PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.to_string_lossy().into_owned())
}

/// `key = "value"`, or a comment saying what is used when it is not set.
fn optional(line: &mut impl FnMut(&str, String), key: &str, value: Option<String>, unset: &str) {
    match value {
        Some(value) => line(key, quote(&value)),
        None => line(&format!("# {key}"), format!("(not set: {unset})")),
    }
}

/// The value of a limit, or `0  # off`.
fn or_off(value: Option<String>) -> String {
    value.unwrap_or_else(|| "0  # off".to_string())
}

/// A byte size, `"512MiB"`, or `"1000001"` (bytes) when no unit holds it exactly.
fn size(bytes: u64) -> String {
    quote(&super::size::format(bytes))
}

/// A whole number; one past TOML's 64-bit signed integers as a string, which reads back the same.
fn integer(n: u64) -> String {
    match i64::try_from(n) {
        Ok(_) => n.to_string(),
        Err(_) => quote(&n.to_string()),
    }
}

fn optional_path(line: &mut impl FnMut(&str, String), key: &str, path: Option<&Path>) {
    match path {
        Some(path) => line(key, quote(&path.to_string_lossy())),
        None => {
            let instead = match key {
                "python" => {
                    "the python beside the herdsman executable, else $VIRTUAL_ENV/bin/python, else python3 on PATH"
                }
                "control_socket" => "${XDG_RUNTIME_DIR:-/tmp}/herdsman-UID/PID.sock",
                "ca_certs" => "none",
                _ => "the current directory",
            };
            line(&format!("# {key}"), format!("(not set: {instead})"));
        }
    }
}

fn env_table(config: &Config, out: &mut String) {
    if config.env.is_empty() {
        out.push_str("env = {}\n");
        return;
    }
    out.push_str("\n[env]\n");
    for (name, value) in &config.env {
        writeln!(out, "{name} = {}", quote(value)).expect("writing to a String cannot fail");
    }
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn workers(count: WorkerCount) -> String {
    match count {
        WorkerCount::Auto => quote("auto"),
        WorkerCount::Fixed(n) => n.to_string(),
    }
}

fn binds(binds: &[BindSpec]) -> String {
    let items: Vec<String> = binds.iter().map(|b| quote(&b.to_string())).collect();
    format!("[{}]", items.join(", "))
}

fn duration(value: Duration) -> String {
    quote(&humantime::format_duration(value).to_string())
}

/// The names used in configuration (and on the worker runtime's command line).
impl Interface {
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Auto => "auto",
            Interface::Asgi => "asgi",
            Interface::Wsgi => "wsgi",
        }
    }
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The spec as written in configuration: `module:attr`, or `module:attr()` for a factory.
impl fmt::Display for AppSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let call = if self.factory { "()" } else { "" };
        write!(f, "{}:{}{call}", self.module, self.attr)
    }
}
