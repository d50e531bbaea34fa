//! File < environment < command line, key by key; `env` merged variable by variable; switches
//! never OR-merged; defaults from `types::defaults` when nothing is given.

use super::*;
use crate::config::{
    defaults, AppSpec, BindSpec, Http, Interface, LogFormat, LogLevel, WorkerCount,
};
use std::time::Duration;

/// One key given by all three sources, and what `get` shows after each is added.
struct Case {
    file: &'static str,
    env: (&'static str, &'static str),
    cli: &'static [&'static str],
    get: fn(&Config) -> String,
    /// After file only, file + env, file + env + command line.
    expect: [&'static str; 3],
}

fn check(case: &Case) {
    let with_app = if case.file.starts_with("app ") {
        ""
    } else {
        "app = \"m:app\"\n"
    };
    let file = ConfigFile::new(&format!("{with_app}{}\n", case.file));
    let env_set = env(&[case.env]);
    let stages = [
        load_ok(&file.args(&[]), &[]),
        load_ok(&file.args(&[]), &env_set),
        load_ok(&file.args(case.cli), &env_set),
    ];
    for (stage, expected) in stages.iter().zip(case.expect) {
        assert_eq!((case.get)(stage), expected, "{}", case.file);
    }
    // The command line also wins over the file alone.
    assert_eq!(
        (case.get)(&load_ok(&file.args(case.cli), &[])),
        case.expect[2]
    );
}

fn debug<T: std::fmt::Debug>(value: T) -> String {
    format!("{value:?}")
}

#[test]
fn every_scalar_key_follows_file_env_cli() {
    let cases = [
        Case {
            file: "app = \"a:f\"",
            env: ("HERDSMAN_APP", "b:e"),
            cli: &["c:c"],
            get: |c| c.app.to_string(),
            expect: ["a:f", "b:e", "c:c"],
        },
        Case {
            file: "factory = true",
            env: ("HERDSMAN_FACTORY", "false"),
            cli: &["--factory"],
            get: |c| debug(c.app.factory),
            expect: ["true", "false", "true"],
        },
        Case {
            file: "workers = 2",
            env: ("HERDSMAN_WORKERS", "3"),
            cli: &["-w", "4"],
            get: |c| debug(c.workers),
            expect: ["Fixed(2)", "Fixed(3)", "Fixed(4)"],
        },
        Case {
            file: "interface = \"wsgi\"",
            env: ("HERDSMAN_INTERFACE", "asgi"),
            cli: &["--interface", "auto"],
            get: |c| debug(c.interface),
            expect: ["Wsgi", "Asgi", "Auto"],
        },
        Case {
            file: "engine = \"native\"",
            env: ("HERDSMAN_ENGINE", "uvicorn"),
            cli: &["--engine", "NATIVE"],
            get: |c| debug(c.engine),
            expect: ["Native", "Uvicorn", "Native"],
        },
        Case {
            file: "threads = 2\nengine = \"native\"",
            env: ("HERDSMAN_THREADS", "8"),
            cli: &["--threads", "16"],
            get: |c| debug(c.threads),
            expect: ["Some(2)", "Some(8)", "Some(16)"],
        },
        Case {
            file: "python = \"py-file\"",
            env: ("HERDSMAN_PYTHON", "py-env"),
            cli: &["--python", "py-cli"],
            get: |c| debug(&c.python),
            expect: ["Some(\"py-file\")", "Some(\"py-env\")", "Some(\"py-cli\")"],
        },
        Case {
            file: "timeout = 10",
            env: ("HERDSMAN_TIMEOUT", "20s"),
            cli: &["-t", "1m"],
            get: |c| debug(c.timeout),
            expect: ["10s", "20s", "60s"],
        },
        Case {
            file: "graceful_timeout = \"5s\"",
            env: ("HERDSMAN_GRACEFUL_TIMEOUT", "6"),
            cli: &["--graceful-timeout", "700ms"],
            get: |c| debug(c.graceful_timeout),
            expect: ["5s", "6s", "700ms"],
        },
        Case {
            file: "drain_before_stop = \"5s\"",
            env: ("HERDSMAN_DRAIN_BEFORE_STOP", "0"),
            cli: &["--drain-before-stop", "20s"],
            get: |c| debug(c.drain_before_stop),
            expect: ["5s", "0ns", "20s"],
        },
        Case {
            file: "boot_timeout = \"2m\"",
            env: ("HERDSMAN_BOOT_TIMEOUT", "90s"),
            cli: &["--boot-timeout", "5"],
            get: |c| debug(c.boot_timeout),
            expect: ["120s", "90s", "5s"],
        },
        Case {
            file: "startup_attempts = 1",
            env: ("HERDSMAN_STARTUP_ATTEMPTS", "2"),
            cli: &["--startup-attempts", "5"],
            get: |c| debug(c.startup_attempts),
            expect: ["1", "2", "5"],
        },
        Case {
            file: "max_surge = 2",
            env: ("HERDSMAN_MAX_SURGE", "3"),
            cli: &["--max-surge", "4"],
            get: |c| debug(c.max_surge),
            expect: ["2", "3", "4"],
        },
        Case {
            file: "max_requests = 1000",
            env: ("HERDSMAN_MAX_REQUESTS", "0"),
            cli: &["--max-requests", "500"],
            get: |c| debug(c.max_requests),
            expect: ["Some(1000)", "None", "Some(500)"],
        },
        Case {
            file: "max_requests_jitter = 10\nmax_requests = 100",
            env: ("HERDSMAN_MAX_REQUESTS_JITTER", "20"),
            cli: &["--max-requests-jitter", "0"],
            get: |c| debug(c.max_requests_jitter),
            expect: ["10", "20", "0"],
        },
        Case {
            file: "max_worker_memory = \"512MiB\"",
            env: ("HERDSMAN_MAX_WORKER_MEMORY", "1GB"),
            cli: &["--max-worker-memory", "off"],
            get: |c| debug(c.max_worker_memory),
            expect: ["Some(536870912)", "Some(1000000000)", "None"],
        },
        Case {
            file: "max_worker_lifetime = \"6h\"",
            env: ("HERDSMAN_MAX_WORKER_LIFETIME", "0"),
            cli: &["--max-worker-lifetime", "90m"],
            get: |c| debug(c.max_worker_lifetime),
            expect: ["Some(21600s)", "None", "Some(5400s)"],
        },
        Case {
            file: "max_worker_lifetime_jitter = 60\nmax_worker_lifetime = \"1h\"",
            env: ("HERDSMAN_MAX_WORKER_LIFETIME_JITTER", "0s"),
            cli: &["--max-worker-lifetime-jitter", "5m"],
            get: |c| debug(c.max_worker_lifetime_jitter),
            expect: ["60s", "0ns", "300s"],
        },
        Case {
            file: "memory_check_interval = \"10s\"",
            env: ("HERDSMAN_MEMORY_CHECK_INTERVAL", "500ms"),
            cli: &["--memory-check-interval", "2"],
            get: |c| debug(c.memory_check_interval),
            expect: ["10s", "500ms", "2s"],
        },
        Case {
            file: "backlog = 10",
            env: ("HERDSMAN_BACKLOG", "20"),
            cli: &["--backlog", "30"],
            get: |c| debug(c.backlog),
            expect: ["10", "20", "30"],
        },
        Case {
            file: "keep_alive = 2",
            env: ("HERDSMAN_KEEP_ALIVE", "0"),
            cli: &["--keep-alive", "75s"],
            get: |c| debug(c.keep_alive),
            expect: ["2s", "0ns", "75s"],
        },
        Case {
            file: "limit_request_line = 0",
            env: ("HERDSMAN_LIMIT_REQUEST_LINE", "8190"),
            cli: &["--limit-request-line", "1024"],
            get: |c| debug(c.limit_request_line),
            expect: ["0", "8190", "1024"],
        },
        Case {
            file: "limit_request_fields = 50",
            env: ("HERDSMAN_LIMIT_REQUEST_FIELDS", "32768"),
            cli: &["--limit-request-fields", "0"],
            get: |c| debug(c.limit_request_fields),
            expect: ["50", "32768", "0"],
        },
        Case {
            file: "limit_request_field_size = 16380",
            env: ("HERDSMAN_LIMIT_REQUEST_FIELD_SIZE", "0"),
            cli: &["--limit-request-field_size", "4096"],
            get: |c| debug(c.limit_request_field_size),
            expect: ["16380", "0", "4096"],
        },
        Case {
            file: "worker_connections = 2",
            env: ("HERDSMAN_WORKER_CONNECTIONS", "20"),
            cli: &["--worker-connections", "200"],
            get: |c| debug(c.worker_connections),
            expect: ["2", "20", "200"],
        },
        Case {
            file: "proxy_protocol = true",
            env: ("HERDSMAN_PROXY_PROTOCOL", "off"),
            cli: &["--proxy-protocol"],
            get: |c| debug(c.proxy_protocol),
            expect: ["true", "false", "true"],
        },
        Case {
            file: "proxy_allow_from = \"10.0.0.0/8\"",
            env: ("HERDSMAN_PROXY_ALLOW_FROM", "*"),
            cli: &["--proxy-allow-from", "192.168.0.1, ::1"],
            get: |c| debug(&c.proxy_allow_from),
            expect: ["\"10.0.0.0/8\"", "\"*\"", "\"192.168.0.1,::1\""],
        },
        Case {
            file: "forwarded_allow_ips = \"10.0.0.0/8, 192.168.1.2\"",
            env: ("HERDSMAN_FORWARDED_ALLOW_IPS", "*"),
            cli: &["--forwarded-allow-ips", "::1,127.0.0.1"],
            get: |c| debug(&c.forwarded_allow_ips),
            expect: [
                "Some(\"10.0.0.0/8,192.168.1.2\")",
                "Some(\"*\")",
                "Some(\"::1,127.0.0.1\")",
            ],
        },
        Case {
            file: "log_level = \"debug\"",
            env: ("HERDSMAN_LOG_LEVEL", "WARN"),
            cli: &["--log-level", "error"],
            get: |c| debug(c.log_level),
            expect: ["Debug", "Warning", "Error"],
        },
        Case {
            file: "log_format = \"json\"",
            env: ("HERDSMAN_LOG_FORMAT", "text"),
            cli: &["--log-format", "json"],
            get: |c| debug(c.log_format),
            expect: ["Json", "Text", "Json"],
        },
        Case {
            file: "access_log = false",
            env: ("HERDSMAN_ACCESS_LOG", "yes"),
            cli: &["--no-access-log"],
            get: |c| debug(c.access_log),
            expect: ["false", "true", "false"],
        },
        Case {
            file: "control_socket = \"/a.sock\"",
            env: ("HERDSMAN_CONTROL_SOCKET", "/b.sock"),
            cli: &["--control-socket", "c.sock"],
            get: |c| debug(&c.control_socket),
            expect: ["Some(\"/a.sock\")", "Some(\"/b.sock\")", "Some(\"c.sock\")"],
        },
        Case {
            file: "admin_bind = \"127.0.0.1:9191\"",
            env: ("HERDSMAN_ADMIN_BIND", "unix:/run/admin.sock"),
            cli: &["--admin-bind", "off"],
            get: |c| debug(&c.admin_bind),
            expect: [
                "Some(Tcp { host: \"127.0.0.1\", port: 9191 })",
                "Some(Unix(\"/run/admin.sock\"))",
                "None",
            ],
        },
        Case {
            file: "ready_min = 2",
            env: ("HERDSMAN_READY_MIN", "ALL"),
            cli: &["--ready-min", "1"],
            get: |c| debug(c.ready_min),
            expect: ["AtLeast(2)", "All", "AtLeast(1)"],
        },
        Case {
            file: "bind = [\"a:1\"]",
            env: ("HERDSMAN_BIND", "b:2, unix:/s"),
            cli: &["-b", "fd://3", "-b", "[::1]:4"],
            get: |c| {
                c.binds
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            expect: ["a:1", "b:2 unix:/s", "fd://3 [::1]:4"],
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn chdir_follows_file_env_cli() {
    let dirs = tempfile::tempdir().expect("create a temporary directory");
    let [a, b, c] = ["a", "b", "c"].map(|name| {
        let dir = dirs.path().join(name);
        std::fs::create_dir(&dir).expect("create a directory");
        dir.to_str().expect("UTF-8 path").to_string()
    });
    let file = ConfigFile::new(&format!("app = \"m:app\"\nchdir = \"{a}\"\n"));
    let env_set = env(&[("HERDSMAN_CHDIR", &b)]);
    assert_eq!(load_ok(&file.args(&[]), &[]).chdir, Some(a.into()));
    assert_eq!(load_ok(&file.args(&[]), &env_set).chdir, Some(b.into()));
    assert_eq!(
        load_ok(&file.args(&["--chdir", &c]), &env_set).chdir,
        Some(c.into())
    );
}

#[test]
fn keys_are_overridden_one_by_one() {
    let file = ConfigFile::new("app = \"m:app\"\nworkers = 2\ntimeout = \"10s\"\nbacklog = 5\n");
    let env_set = env(&[("HERDSMAN_WORKERS", "3")]);
    let config = load_ok(&file.args(&["--backlog", "7"]), &env_set);
    assert_eq!(config.workers, WorkerCount::Fixed(3.try_into().unwrap()));
    assert_eq!(config.timeout, Duration::from_secs(10));
    assert_eq!(config.backlog, 7);
}

#[test]
fn defaults_apply_when_nothing_is_given() {
    let config = load_ok(&args(&["main:app"]), &[]);
    let expected = Config {
        app: AppSpec {
            module: "main".into(),
            attr: "app".into(),
            factory: false,
        },
        workers: WorkerCount::Auto,
        max_workers: WorkerCount::Auto,
        lifespan: crate::config::Lifespan::Auto,
        binds: vec![BindSpec::Tcp {
            host: "127.0.0.1".into(),
            port: 8000,
        }],
        interface: Interface::Auto,
        worker_class: None,
        engine: crate::config::Engine::Uvicorn,
        threads: None,
        spawn: defaults::SPAWN,
        pythonpath: Vec::new(),
        reload: false,
        reload_dirs: Vec::new(),
        reload_extra_files: Vec::new(),
        reload_includes: Vec::new(),
        preload: defaults::PRELOAD,
        python: None,
        chdir: None,
        env: vec![],
        timeout: defaults::TIMEOUT,
        graceful_timeout: defaults::GRACEFUL_TIMEOUT,
        drain_before_stop: defaults::DRAIN_BEFORE_STOP,
        boot_timeout: defaults::BOOT_TIMEOUT,
        startup_attempts: defaults::STARTUP_ATTEMPTS,
        max_surge: defaults::MAX_SURGE,
        max_requests: defaults::MAX_REQUESTS,
        max_requests_jitter: defaults::MAX_REQUESTS_JITTER,
        max_worker_memory: defaults::MAX_WORKER_MEMORY,
        max_worker_lifetime: defaults::MAX_WORKER_LIFETIME,
        max_worker_lifetime_jitter: defaults::MAX_WORKER_LIFETIME_JITTER,
        memory_check_interval: defaults::MEMORY_CHECK_INTERVAL,
        backlog: defaults::BACKLOG,
        worker_connections: defaults::WORKER_CONNECTIONS,
        keep_alive: defaults::KEEP_ALIVE,
        limit_request_line: defaults::LIMIT_REQUEST_LINE,
        limit_request_fields: defaults::LIMIT_REQUEST_FIELDS,
        limit_request_field_size: defaults::LIMIT_REQUEST_FIELD_SIZE,
        forwarded_allow_ips: None,
        proxy_protocol: false,
        proxy_allow_from: defaults::PROXY_ALLOW_FROM.to_string(),
        root_path: String::new(),
        ready_path: None,
        tls: None,
        http: Http::default(),
        log_level: LogLevel::Info,
        log_format: LogFormat::Text,
        log_file: None,
        access_log: true,
        access_log_file: None,
        access_log_format: defaults::ACCESS_LOG_FORMAT.into(),
        capture_output: defaults::CAPTURE_OUTPUT,
        pidfile: None,
        proc_name: None,
        user: None,
        group: None,
        umask: None,
        no_new_privs: defaults::NO_NEW_PRIVS,
        control_socket: None,
        admin_bind: None,
        ready_min: defaults::READY_MIN,
        config_file: None,
        gunicorn: None,
        notes: Vec::new(),
    };
    assert_eq!(config, expected);
}

#[test]
fn env_merges_variable_by_variable() {
    let file =
        ConfigFile::new("app = \"m:app\"\n[env]\nA = \"file\"\nB = \"file\"\nC = \"file\"\n");
    let env_set = env(&[("HERDSMAN_ENV", "B=env;D=env\nC=env")]);
    let config = load_ok(
        &file.args(&["-e", "C=cli", "-e", "E=a=b", "-e", "F="]),
        &env_set,
    );
    let expected = [
        ("A", "file"),
        ("B", "env"),
        ("C", "cli"),
        ("D", "env"),
        ("E", "a=b"),
        ("F", ""),
    ];
    let expected: Vec<(String, String)> = env(&expected);
    assert_eq!(config.env, expected);
}

#[test]
fn switches_are_not_or_merged() {
    let file = ConfigFile::new("app = \"m:app\"\nfactory = true\naccess_log = false\n");
    let config = load_ok(&file.args(&[]), &[]);
    assert!(
        config.app.factory && !config.access_log,
        "absent flags keep the file's values"
    );
    let config = load_ok(&file.args(&["--no-factory", "--access-log"]), &[]);
    assert!(
        !config.app.factory && config.access_log,
        "given flags override both ways"
    );
}

#[test]
fn parentheses_in_the_app_mean_factory() {
    assert!(load_ok(&args(&["m:create()"]), &[]).app.factory);
    assert!(load_ok(&args(&["--factory", "m:create"]), &[]).app.factory);
    let config = load_ok(&args(&["--factory", "m:create()"]), &[]);
    assert_eq!(config.app.attr, "create");
}

#[test]
fn the_file_comes_from_the_flag_before_the_environment() {
    let flagged = ConfigFile::new("app = \"flag:app\"\n");
    let named = ConfigFile::new("app = \"env:app\"\n");
    let named_env = env(&[("HERDSMAN_CONFIG", named.path.to_str().unwrap())]);
    let config = load_ok(&args(&[]), &named_env);
    assert_eq!(
        (config.app.module.as_str(), config.config_file),
        ("env", Some(named.path.clone()))
    );
    let config = load_ok(&flagged.args(&[]), &named_env);
    assert_eq!(
        (config.app.module.as_str(), config.config_file),
        ("flag", Some(flagged.path.clone()))
    );
}

#[test]
fn empty_environment_variables_count_as_unset() {
    let env_set = env(&[
        ("HERDSMAN_WORKERS", ""),
        ("HERDSMAN_CONFIG", ""),
        ("HERDSMAN_APP", "m:a"),
    ]);
    let config = load_ok(&args(&[]), &env_set);
    assert_eq!(config.workers, WorkerCount::Auto);
    assert_eq!(config.config_file, None);
}

#[test]
fn unrelated_environment_variables_are_ignored() {
    let env_set = env(&[
        ("PATH", "/bin"),
        ("HERDSMANX", "1"),
        ("herdsman_workers", "x"),
    ]);
    load_ok(&args(&["m:a"]), &env_set);
}

/// `HERDSMAN_ENGINE_LIB` is read where the library is located, not by the configuration; its
/// typos are still caught.
#[test]
fn the_engine_library_override_is_not_an_unknown_variable() {
    let env_set = env(&[("HERDSMAN_ENGINE_LIB", "/nonexistent/libherdsman_engine.so")]);
    load_ok(&args(&["m:a"]), &env_set);
    let env_set = env(&[("HERDSMAN_ENGINE_LIBRARY", "/x.so")]);
    let errors = load_err(&args(&["m:a"]), &env_set).to_string();
    assert!(
        errors.contains("HERDSMAN_ENGINE_LIBRARY is not a herdsman setting"),
        "{errors}"
    );
}

#[test]
fn a_single_bind_string_in_the_file_is_a_list_of_one() {
    let file = ConfigFile::new("app = \"m:app\"\nbind = \"unix:run/app.sock\"\n");
    let config = load_ok(&file.args(&[]), &[]);
    assert_eq!(config.binds, [BindSpec::Unix("run/app.sock".into())]);
}
