//! What a worker runs: the [`WorkerSpec`] of a generation (interpreter, runtime arguments,
//! environment, identity), built once from the config and reused for every spawn; the runtime's
//! argv (docs/protocol.md "How a worker is started") and the environment a worker inherits (the
//! master's, less the variables that belong to the master). The engine options are only added
//! for the native engine: a uvicorn worker's argv is what it was before there were two engines.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use super::engine_lib::WorkerEngine;
use crate::config::{defaults, Config, SpawnMode, User};
use crate::sys::environ::OsVar;
use crate::sys::exec::Identity;

/// Environment variables a worker must never inherit: socket activation, the systemd notify and
/// watchdog contract belong to the master, and herdsman's own settings are the master's.
const PRIVATE_ENV: &[&str] = &[
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
];

/// What every worker of one generation runs: built once from the config, reused per spawn.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The interpreter, as resolved (absolute, or as given by the user).
    pub python: PathBuf,
    /// Runtime arguments common to every worker of the generation.
    pub args: Vec<String>,
    /// The complete environment of a worker, byte for byte (a non-UTF-8 value passes).
    pub env: Vec<OsVar>,
    /// Who the worker becomes (a root master with `user` or `group` set); `None`: the master's.
    pub identity: Option<Identity>,
    /// The worker's umask; `None`: the master's.
    pub umask: Option<u32>,
    /// The worker starts with the no_new_privs flag (`no_new_privs`).
    pub no_new_privs: bool,
    /// Whether the worker's stdout and stderr are captured by the master.
    pub capture_output: bool,
    /// Exec'd, or forked from the generation's zygote.
    pub spawn: SpawnMode,
    /// With the zygote: the app is imported before the fork.
    pub preload: bool,
    /// The master's log format, for a zygote's own lines (it writes where the master does,
    /// never into a capture pipe, so they are not re-rendered).
    pub log_format: crate::config::LogFormat,
}

impl WorkerSpec {
    /// `python` is the already resolved interpreter, `engine` is `config.engine` resolved
    /// (`engine_lib::resolve`: for the native engine, with its library), which the argv follows;
    /// `env` is the master's environment ([`env_snapshot_os`](crate::sys::environ::env_snapshot_os)).
    pub fn new(
        config: &Config,
        python: PathBuf,
        engine: &WorkerEngine,
        env: &[OsVar],
    ) -> WorkerSpec {
        let root = nix::unistd::geteuid().is_root();
        WorkerSpec {
            python,
            args: runtime_args(config, engine),
            env: worker_env(
                env,
                &account_env(config.user.as_ref()),
                &configured_env(config),
            ),
            identity: identity(config, root),
            umask: config.umask,
            no_new_privs: config.no_new_privs,
            capture_output: config.capture_output,
            log_format: config.log_format,
            spawn: config.spawn,
            preload: config.preload,
        }
    }
}

/// What a root master changes in its workers; a master that is not root changes nothing
/// (configuration load made sure it was not asked to).
fn identity(config: &Config, root: bool) -> Option<Identity> {
    if !root || (config.user.is_none() && config.group.is_none()) {
        return None;
    }
    let gid = crate::config::workers_gid(config.user.as_ref(), config.group.as_ref())
        .expect("configuration load gives a user without a primary group a `group`");
    let groups = match &config.user {
        Some(user) => user.groups.clone(),
        None => vec![gid],
    };
    Some(Identity {
        groups,
        gid,
        uid: config.user.as_ref().map(|user| user.uid),
    })
}

/// HOME, USER and LOGNAME of the workers' account, so libraries that look there (caches,
/// `~` expansion) find the worker's own home, not the master's.
fn account_env(user: Option<&User>) -> Vec<(String, String)> {
    let Some(user) = user else {
        return Vec::new();
    };
    let mut env = Vec::new();
    if let Some(home) = &user.home {
        env.push(("HOME".to_string(), home.display().to_string()));
    }
    if let Some(name) = &user.name {
        env.push(("USER".to_string(), name.clone()));
        env.push(("LOGNAME".to_string(), name.clone()));
    }
    env
}

/// How often an idle worker (nothing changed since its last heartbeat) still sends one: a few
/// per `timeout`, so a silent worker is still judged by it, and at most every 7.5 s, so that 16
/// idle workers wake the master about twice a second instead of 16 times.
pub fn idle_heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(heartbeat_interval(timeout), Duration::from_millis(7500))
}

/// The timeout the heartbeat periods follow: the default one when there is none (`timeout = 0`),
/// so that status and metrics stay fresh.
fn beat_basis(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        defaults::TIMEOUT
    } else {
        timeout
    }
}

/// The heartbeat period: often enough that a few can be missed before `timeout`, at most 1 s.
pub fn heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

fn runtime_args(config: &Config, engine: &WorkerEngine) -> Vec<String> {
    let app = &config.app;
    let mut args = vec![
        "--app".to_string(),
        format!("{}:{}", app.module, app.attr),
        "--interface".to_string(),
        config.interface.as_str().to_string(),
        "--lifespan".to_string(),
        config.lifespan.as_str().to_string(),
        "--heartbeat-interval".to_string(),
        seconds(heartbeat_interval(beat_basis(config.timeout))),
        "--idle-heartbeat-interval".to_string(),
        seconds(idle_heartbeat_interval(beat_basis(config.timeout))),
        "--graceful-timeout".to_string(),
        seconds(config.graceful_timeout),
        "--log-level".to_string(),
        config.log_level.as_str().to_string(),
        // The worker's own log lines in the master's format; as JSON records when the master
        // captures them, which it then renders in its own format (`output`).
        "--log-format".to_string(),
        match config.capture_output {
            true => "json".to_string(),
            false => config.log_format.as_str().to_string(),
        },
        // uvicorn calls listen() again on every socket it serves; without this it would replace
        // the configured backlog with its own default.
        "--backlog".to_string(),
        config.backlog.to_string(),
        "--keep-alive".to_string(),
        seconds(config.keep_alive),
        "--limit-request-line".to_string(),
        config.limit_request_line.to_string(),
        "--limit-request-fields".to_string(),
        config.limit_request_fields.to_string(),
        "--limit-request-field-size".to_string(),
        config.limit_request_field_size.to_string(),
        "--worker-connections".to_string(),
        config.worker_connections.to_string(),
    ];
    match engine {
        WorkerEngine::Native { lib } => {
            let threads = config.threads.unwrap_or(defaults::THREADS);
            args.extend(["--engine".into(), "native".into()]);
            args.extend(["--engine-lib".into(), lib.display().to_string()]);
            args.extend(["--threads".into(), threads.to_string()]);
            http_args(&config.http, &mut args);
        }
        // a2wsgi's pool for WSGI apps; not set, the runtime keeps a2wsgi's own default.
        WorkerEngine::Uvicorn => {
            if let Some(threads) = config.threads {
                args.extend(["--threads".into(), threads.to_string()]);
            }
        }
    }
    if app.factory {
        args.push("--factory".into());
    }
    if config.access_log {
        let file = config.access_log_file.as_ref();
        args.push("--access-log-file".into());
        args.push(file.map_or_else(|| "-".into(), |p| p.display().to_string()));
        args.push("--access-log-format".into());
        args.push(config.access_log_format.clone());
    }
    if let Some(dir) = &config.chdir {
        args.push("--chdir".into());
        args.push(dir.display().to_string());
    }
    if let Some(name) = &config.proc_name {
        args.push("--proc-name".into());
        args.push(name.clone());
    }
    if let Some(path) = &config.ready_path {
        args.push("--ready-path".into());
        args.push(path.clone());
    }
    if config.proxy_protocol {
        args.push("--proxy-protocol".into());
        args.push("--proxy-allow-from".into());
        args.push(config.proxy_allow_from.clone());
    }
    if !config.root_path.is_empty() {
        args.push("--root-path".into());
        args.push(config.root_path.clone());
    }
    if let Some(tls) = &config.tls {
        tls_args(tls, engine, &mut args);
    }
    for dir in &config.pythonpath {
        args.push("--pythonpath".into());
        args.push(dir.clone());
    }
    args.extend(super::gunicorn_cfg::worker_args(config));
    args
}

/// The HTTP versions and HTTP/2 settings, for the native engine only (uvicorn has no HTTP/2:
/// validation refused asking it for any).
fn http_args(http: &crate::config::Http, args: &mut Vec<String>) {
    args.extend(["--http".into(), http.version.as_str().into()]);
    let streams = http.max_concurrent_streams.to_string();
    args.extend(["--http2-max-concurrent-streams".into(), streams]);
    let window = http.initial_stream_window_size.to_string();
    args.extend(["--http2-initial-stream-window-size".into(), window]);
    let window = http.initial_connection_window_size.to_string();
    args.extend(["--http2-initial-connection-window-size".into(), window]);
    let headers = http.max_header_list_size.to_string();
    args.extend(["--http2-max-header-list-size".into(), headers]);
    let ping = http.keep_alive_interval.map_or_else(|| "0".into(), seconds);
    args.extend(["--http2-keep-alive-interval".into(), ping]);
}

/// TLS for the engine, which reads the files itself when the worker starts (a reload serves
/// renewed ones). The native engine gets `ciphers` as IANA suite names (validation made sure
/// they map); uvicorn gets them as written, for OpenSSL.
fn tls_args(tls: &crate::config::Tls, engine: &WorkerEngine, args: &mut Vec<String>) {
    args.extend(["--certfile".into(), tls.certfile.display().to_string()]);
    args.extend(["--keyfile".into(), tls.keyfile.display().to_string()]);
    if let Some(ca) = &tls.ca_certs {
        args.extend(["--ca-certs".into(), ca.display().to_string()]);
    }
    args.extend(["--cert-reqs".into(), tls.cert_reqs.as_int().to_string()]);
    if let Some(ciphers) = &tls.ciphers {
        let text = match (engine, &ciphers.suites) {
            (WorkerEngine::Native { .. }, Some(suites)) => suites.join(":"),
            _ => ciphers.given.clone(),
        };
        args.extend(["--ciphers".into(), text]);
    }
    args.extend(["--tls-min-version".into(), tls.min_version.as_str().into()]);
}

/// The configured `env` entries, then `forwarded_allow_ips` as `FORWARDED_ALLOW_IPS` (both
/// engines read it), which wins over an `env` entry of that name.
fn configured_env(config: &Config) -> Vec<(String, String)> {
    let mut env = config.env.clone();
    if let Some(trusted) = &config.forwarded_allow_ips {
        env.retain(|(k, _)| k != FORWARDED_ALLOW_IPS);
        env.push((FORWARDED_ALLOW_IPS.to_string(), trusted.clone()));
    }
    env
}

/// The variable uvicorn's proxy headers (and the native engine's) read.
const FORWARDED_ALLOW_IPS: &str = "FORWARDED_ALLOW_IPS";

fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The master's environment without the private variables, then the account's variables, then
/// the configured entries.
fn worker_env(
    master: &[OsVar],
    account: &[(String, String)],
    extra: &[(String, String)],
) -> Vec<OsVar> {
    let private = |k: &OsStr| {
        PRIVATE_ENV.iter().any(|p| k == OsStr::new(p)) || k.as_bytes().starts_with(b"HERDSMAN_")
    };
    let mut env: Vec<OsVar> = master
        .iter()
        .filter(|(k, _)| !private(k))
        .cloned()
        .collect();
    for (key, value) in account.iter().chain(extra) {
        env.retain(|(k, _)| k != key.as_str());
        env.push((key.into(), value.into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn os_env(pairs: &[(&str, &str)]) -> Vec<OsVar> {
        pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn a_variable_that_is_not_utf8_passes_byte_for_byte() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let latin1 = OsString::from_vec(b"caf\xe9".to_vec());
        let master = vec![(OsString::from("NAME"), latin1.clone())];
        assert_eq!(worker_env(&master, &[], &[]), [("NAME".into(), latin1)]);
    }

    #[test]
    fn worker_env_drops_private_variables_and_applies_overrides() {
        let master = os_env(&[
            ("PATH", "/bin"),
            ("LISTEN_FDS", "2"),
            ("NOTIFY_SOCKET", "/run/x"),
            ("HERDSMAN_WORKERS", "4"),
            ("KEEP", "old"),
        ]);
        let got = worker_env(&master, &[], &env(&[("KEEP", "new"), ("ADDED", "1")]));
        assert_eq!(
            got,
            os_env(&[("PATH", "/bin"), ("KEEP", "new"), ("ADDED", "1")])
        );
    }

    #[test]
    fn the_account_sets_home_and_user_unless_configured() {
        let user = User {
            given: "nobody".into(),
            uid: 65534,
            name: Some("nobody".into()),
            gid: Some(65534),
            home: Some("/nonexistent".into()),
            groups: vec![65534],
        };
        let master = os_env(&[("HOME", "/root"), ("USER", "root"), ("PATH", "/bin")]);
        let got = worker_env(
            &master,
            &account_env(Some(&user)),
            &env(&[("HOME", "/srv/app")]),
        );
        assert_eq!(
            got,
            os_env(&[
                ("PATH", "/bin"),
                ("USER", "nobody"),
                ("LOGNAME", "nobody"),
                ("HOME", "/srv/app")
            ])
        );
    }

    fn config(argv: &[&str]) -> Config {
        let argv = [&["herdsman"], argv, &["m:a"]].concat();
        let args = <crate::cli::Cli as clap::Parser>::parse_from(argv).run;
        crate::config::load(&args, &[]).expect("valid configuration")
    }

    #[test]
    fn tls_goes_to_both_engines_with_ciphers_in_the_form_each_takes() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let config = config(&[
            "--certfile",
            cert,
            "--keyfile",
            key,
            "--ciphers",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "--ssl-version",
            "TLSv1_3",
        ]);
        let value = |args: &[String], flag: &str| {
            let at = args.iter().position(|a| a == flag).expect(flag);
            args[at + 1].clone()
        };
        let uvicorn = runtime_args(&config, &WorkerEngine::Uvicorn);
        let lib = PathBuf::from("/lib/engine.so");
        let native = runtime_args(&config, &WorkerEngine::Native { lib });
        for args in [&uvicorn, &native] {
            assert_eq!(value(args, "--certfile"), cert);
            assert_eq!(value(args, "--keyfile"), key);
            assert_eq!(value(args, "--cert-reqs"), "0");
            assert_eq!(value(args, "--tls-min-version"), "1.3");
        }
        assert_eq!(value(&uvicorn, "--ciphers"), "ECDHE-RSA-AES128-GCM-SHA256");
        assert_eq!(
            value(&native, "--ciphers"),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
    }

    /// The values following each `--engine`, `--engine-lib` and `--threads` in `args`.
    fn engine_options(args: &[String]) -> Vec<(&str, &str)> {
        let options = ["--engine", "--engine-lib", "--threads"];
        args.windows(2)
            .filter(|pair| options.contains(&pair[0].as_str()))
            .map(|pair| (pair[0].as_str(), pair[1].as_str()))
            .collect()
    }

    #[test]
    fn uvicorn_workers_get_no_engine_options() {
        let uvicorn = runtime_args(&config(&["--threads", "8"]), &WorkerEngine::Uvicorn);
        assert_eq!(
            engine_options(&uvicorn),
            [("--threads", "8")],
            "a2wsgi's pool"
        );
        let uvicorn = runtime_args(&config(&[]), &WorkerEngine::Uvicorn);
        assert_eq!(engine_options(&uvicorn), [], "not set: a2wsgi's default");
        let format = crate::config::defaults::ACCESS_LOG_FORMAT;
        let today = [
            "--app",
            "m:a",
            "--interface",
            "auto",
            "--lifespan",
            "auto",
            "--heartbeat-interval",
            "1.000",
            "--idle-heartbeat-interval",
            "7.500",
            "--graceful-timeout",
            "30.000",
            "--log-level",
            "info",
            "--log-format",
            "text",
            "--backlog",
            "2048",
            "--keep-alive",
            "5.000",
            "--limit-request-line",
            "4094",
            "--limit-request-fields",
            "100",
            "--limit-request-field-size",
            "8190",
            "--worker-connections",
            "1000",
            "--access-log-file",
            "-",
            "--access-log-format",
            format,
        ];
        assert_eq!(
            uvicorn, today,
            "the argv from before there were two engines"
        );
    }

    #[test]
    fn native_workers_get_the_engine_its_library_and_threads() {
        let lib = WorkerEngine::Native {
            lib: "/opt/herdsman/libherdsman_engine.so".into(),
        };
        let args = runtime_args(&config(&["--engine", "native", "--threads", "16"]), &lib);
        assert_eq!(
            engine_options(&args),
            [
                ("--engine", "native"),
                ("--engine-lib", "/opt/herdsman/libherdsman_engine.so"),
                ("--threads", "16"),
            ]
        );
        let args = runtime_args(&config(&["--engine", "native"]), &lib);
        assert!(
            engine_options(&args).contains(&("--threads", "4")),
            "the default: {args:?}"
        );
        let http = rest_after(&args, "--http");
        assert_eq!(
            http,
            [
                "auto",
                "--http2-max-concurrent-streams",
                "200",
                "--http2-initial-stream-window-size",
                "1048576",
                "--http2-initial-connection-window-size",
                "1048576",
                "--http2-max-header-list-size",
                "65536",
                "--http2-keep-alive-interval",
                "0",
            ],
            "the HTTP/2 defaults"
        );
        // Without the six engine items and the twelve HTTP ones, it is what a uvicorn worker
        // gets.
        let uvicorn = runtime_args(&config(&["--engine", "native"]), &WorkerEngine::Uvicorn);
        let mut rest = args.clone();
        let at = rest.iter().position(|a| a == "--engine").expect("--engine");
        rest.drain(at..at + 18);
        assert_eq!(rest, uvicorn);
    }

    /// The eleven items after `flag` in `args`.
    fn rest_after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        let at = args.iter().position(|a| a == flag).expect(flag);
        args[at + 1..at + 12].iter().map(String::as_str).collect()
    }

    #[test]
    fn heartbeat_interval_is_bounded() {
        assert_eq!(
            heartbeat_interval(Duration::from_secs(30)),
            Duration::from_secs(1)
        );
        assert_eq!(
            heartbeat_interval(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            heartbeat_interval(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn idle_heartbeats_are_a_few_per_timeout_and_at_most_every_7_5_s() {
        let idle = |ms| idle_heartbeat_interval(Duration::from_millis(ms));
        assert_eq!(idle(30_000), Duration::from_millis(7500));
        assert_eq!(idle(120_000), Duration::from_millis(7500));
        assert_eq!(idle(2_000), Duration::from_millis(500));
        assert_eq!(idle(100), Duration::from_millis(50));
    }
}
