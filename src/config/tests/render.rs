//! `render` output reads back through `load` to the same `Config`, and the shipped example
//! file is valid and states the real defaults.

use super::*;
use crate::config::SpawnMode;
use crate::config::{
    render, AppSpec, BindSpec, Http, HttpVersion, Interface, LogFormat, LogLevel, ReadyMin,
    WorkerCount,
};
use std::path::Path;
use std::time::Duration;

/// Renders `config`, loads the text back as a file, and returns what was loaded.
fn round_trip(config: &Config) -> (Config, String) {
    let text = render(config);
    let file = ConfigFile::new(&text);
    let mut loaded = load_ok(&file.args(&[]), &[]);
    assert_eq!(loaded.config_file.as_deref(), Some(file.path.as_path()));
    loaded.config_file = config.config_file.clone();
    (loaded, text)
}

#[test]
fn defaults_round_trip() {
    let config = load_ok(&args(&["main:app"]), &[]);
    let (loaded, text) = round_trip(&config);
    assert_eq!(loaded, config, "{text}");
    for key in crate::config::Key::ALL {
        assert!(
            text.contains(&format!("{} = ", key.name())),
            "{key:?} missing from:\n{text}"
        );
    }
}

#[test]
fn every_non_default_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        app: AppSpec {
            module: "pkg.web".into(),
            attr: "api.create".into(),
            factory: true,
        },
        workers: WorkerCount::Fixed(7.try_into().unwrap()),
        max_workers: WorkerCount::Auto,
        lifespan: crate::config::Lifespan::Auto,
        binds: vec![
            BindSpec::Tcp {
                host: "::1".into(),
                port: 0,
            },
            BindSpec::Tcp {
                host: "localhost".into(),
                port: 9000,
            },
            BindSpec::Unix("run/app \"quoted\".sock".into()),
            BindSpec::Fd(5),
        ],
        interface: Interface::Asgi,
        worker_class: Some("uvicorn_worker.UvicornWorker".into()),
        engine: crate::config::Engine::Native,
        threads: Some(1024),
        spawn: SpawnMode::Zygote,
        pythonpath: vec!["src".into(), "/opt/lib".into()],
        reload: true,
        reload_dirs: vec!["src".into()],
        reload_extra_files: vec!["templates/base.html".into()],
        reload_includes: vec!["*.html".into(), "*.j[0-9]".into()],
        preload: true,
        python: Some("python3.12".into()),
        chdir: Some(dir.path().to_path_buf()),
        env: env(&[
            ("B", "two words"),
            ("A", "quote\" and \\ backslash\nnewline"),
        ]),
        timeout: Duration::from_millis(1500),
        graceful_timeout: Duration::ZERO,
        drain_before_stop: Duration::from_secs(15),
        boot_timeout: Duration::from_secs(3 * 3600 + 1),
        startup_attempts: 9,
        max_surge: 64,
        max_requests: Some(1000),
        max_requests_jitter: 50,
        max_worker_memory: Some(3 << 29),
        max_worker_lifetime: Some(Duration::from_secs(6 * 3600 + 30)),
        max_worker_lifetime_jitter: Duration::from_millis(90_500),
        memory_check_interval: Duration::from_millis(100),
        backlog: 65535,
        worker_connections: 2,
        keep_alive: Duration::from_secs(75),
        limit_request_line: 0,
        limit_request_fields: 32768,
        limit_request_field_size: 16380,
        forwarded_allow_ips: Some("10.0.0.0/8,*".into()),
        proxy_protocol: true,
        proxy_allow_from: "10.1.2.3,fd00::/8".into(),
        root_path: "/api".into(),
        ready_path: Some("/healthz?full=1".into()),
        tls: None,
        http: Http {
            version: HttpVersion::Two,
            max_concurrent_streams: 100,
            initial_stream_window_size: 65_535,
            initial_connection_window_size: 4 << 20,
            max_header_list_size: 32 << 10,
            keep_alive_interval: Some(Duration::from_secs(30)),
        },
        log_level: LogLevel::Critical,
        log_format: LogFormat::Json,
        access_log: false,
        access_log_file: Some(dir.path().join("access.log")),
        access_log_format: r#"%(h)s "%(r)s" \ %({x-id}i)s"#.into(),
        log_file: Some(dir.path().join("master.log")),
        capture_output: true,
        pidfile: Some(dir.path().join("herdsman.pid")),
        proc_name: Some("my site".into()),
        user: Some(crate::config::User {
            given: "root".into(),
            uid: 0,
            name: Some("root".into()),
            gid: Some(0),
            home: Some("/root".into()),
            groups: vec![0],
        }),
        group: Some(crate::config::Group {
            given: "0".into(),
            gid: 0,
        }),
        umask: Some(0o027),
        no_new_privs: false,
        control_socket: Some("run/ctl \"q\".sock".into()),
        admin_bind: Some(BindSpec::Tcp {
            host: "::1".into(),
            port: 9191,
        }),
        ready_min: ReadyMin::AtLeast(2.try_into().unwrap()),
        config_file: Some("/etc/herdsman.toml".into()),
        gunicorn: None,
        notes: Vec::new(),
    };
    let (loaded, text) = round_trip(&config);
    assert_eq!(loaded, config, "{text}");
    assert!(text.contains("# read from /etc/herdsman.toml"), "{text}");
    assert!(text.contains("max_worker_memory = \"1536MiB\"\n"), "{text}");
}

/// Limits at the edges of their types, and sizes no unit holds exactly, read back unchanged.
#[test]
fn recycling_extremes_round_trip() {
    let base = load_ok(&args(&["main:app"]), &[]);
    let configs = [
        Config {
            max_requests: Some(u64::MAX),
            max_requests_jitter: u64::MAX,
            max_worker_memory: Some(u64::MAX),
            max_worker_lifetime: Some(Duration::from_secs(24 * 3600)),
            max_worker_lifetime_jitter: Duration::from_millis(1),
            memory_check_interval: Duration::from_secs(24 * 3600),
            ..base.clone()
        },
        Config {
            max_requests: Some(1),
            max_worker_memory: Some((1 << 20) + 1),
            max_worker_lifetime: Some(Duration::from_millis(1)),
            ..base.clone()
        },
        Config {
            max_worker_memory: Some(2_000_000_000),
            ..base
        },
    ];
    for config in configs {
        let (loaded, text) = round_trip(&config);
        assert_eq!(loaded, config, "{text}");
    }
}

#[test]
fn rendered_defaults_look_like_this() {
    let config = load_ok(&args(&["main:app"]), &[]);
    assert_eq!(
        render(&config),
        r#"# herdsman: effective configuration
# no config file read
app = "main:app"
factory = false
workers = "auto"
max_workers = "auto"
lifespan = "auto"
bind = ["127.0.0.1:8000"]
interface = "auto"
engine = "uvicorn"
# threads = (not set: 4)
# worker_class = (not set: none)
# pythonpath = (not set: none)
reload = false
# reload_dir = (not set: the app's directory)
reload_extra_file = []
reload_include = []
spawn = "exec"
preload = false
# python = (not set: the python beside the herdsman executable, else $VIRTUAL_ENV/bin/python, else python3 on PATH)
# chdir = (not set: the current directory)
timeout = "30s"
graceful_timeout = "30s"
drain_before_stop = "0s"
boot_timeout = "1m"
startup_attempts = 3
max_surge = 1
max_requests = 0  # off
max_requests_jitter = 0
max_worker_memory = 0  # off
max_worker_lifetime = 0  # off
max_worker_lifetime_jitter = "0s"
memory_check_interval = "5s"
backlog = 2048
worker_connections = 1000
keep_alive = "5s"
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
root_path = ""
# ready_path = (not set: no probe: ready once the app is served)
# certfile = (not set: plain HTTP)
# keyfile = (not set)
# ca_certs = (not set: none)
# cert_reqs = (not set: 0)
# ciphers = (not set: the TLS library's)
# ssl_version = (not set: TLS_SERVER)
http = "auto"
# http2_max_concurrent_streams = 200  # native engine only
# http2_initial_stream_window_size = "1MiB"  # native engine only
# http2_initial_connection_window_size = "1MiB"  # native engine only
# http2_max_header_list_size = "64KiB"  # native engine only
# http2_keep_alive_interval = 0  # off  # native engine only
# forwarded_allow_ips = (not set: the workers' FORWARDED_ALLOW_IPS, else 127.0.0.1,::1)
proxy_protocol = false
proxy_allow_from = "127.0.0.1,::1"
log_level = "info"
log_format = "text"
# log_file = (not set: stderr)
access_log = true
# access_log_file = (not set: standard output)
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
capture_output = false
# pidfile = (not set: no pidfile)
# proc_name = (not set: process titles as started)
# user = (not set: the master's user)
# group = (not set: the user's primary group, or the master's group)
# umask = (not set: the master's umask)
no_new_privs = true
# control_socket = (not set: ${XDG_RUNTIME_DIR:-/tmp}/herdsman-UID/PID.sock)
admin_bind = "off"
ready_min = "all"
env = {}
"#
    );
}

fn example_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/herdsman.toml")
}

#[test]
fn the_example_file_loads() {
    let path = example_file();
    let config = load_ok(&args(&["-c", path.to_str().unwrap()]), &[]);
    assert_eq!(config.app.to_string(), "myproject.asgi:application");
}

/// Uncommenting every `# key = value` line of the example (paths aside, they name directories
/// of an imaginary project) must give exactly the defaults: the example documents them.
#[test]
fn the_example_file_states_the_real_defaults() {
    let text = std::fs::read_to_string(example_file()).expect("read the example file");
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => format!("{rest}\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    for key in crate::config::Key::ALL {
        let shown = uncommented.contains(&format!("\n{} = ", key.name()))
            || uncommented.contains(&format!("\n# {} = ", key.name()))
            || uncommented.contains(&format!("[{}]", key.name()));
        assert!(shown, "{key:?} missing from the example");
    }
    let file = ConfigFile::new(&uncommented);
    let mut loaded = load_ok(&file.args(&[]), &[]);
    loaded.env.clear();
    let mut defaults = load_ok(&args(&["myproject.asgi:application"]), &[]);
    defaults.config_file = loaded.config_file.clone();
    assert_eq!(loaded, defaults, "{uncommented}");
}

/// `key = value` or `[env]` / `NAME = value` lines, except the keys unset by default whose example
/// shows a value (the example paths, the account, `threads`).
fn is_setting(line: &str) -> bool {
    let key = line.split(" = ").next().unwrap_or("");
    let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let example_path = [
        "python",
        "chdir",
        "log_file",
        "pidfile",
        "proc_name",
        "user",
        "group",
        "umask",
        "control_socket",
        "threads",
        "forwarded_allow_ips",
        "worker_class",
        "pythonpath",
        "reload_dir",
        "ready_path",
        // Native engine only: the example's engine is uvicorn, which refuses them.
        "http2_max_concurrent_streams",
        "http2_initial_stream_window_size",
        "http2_initial_connection_window_size",
        "http2_max_header_list_size",
        "http2_keep_alive_interval",
        "certfile",
        "keyfile",
        "ca_certs",
        "cert_reqs",
        "ciphers",
        "ssl_version",
    ]
    .contains(&key);
    (is_key && line.contains(" = ") && !example_path) || line == "[env]"
}
