//! `-c gunicorn.conf.py` (docs/gunicorn-config.md): its settings honoured and its unknown ones
//! named in one warning, precedence file < HERDSMAN_* < GUNICORN_CMD_ARGS < command line, a file
//! that raises refused with its traceback, the worker-side hooks in every worker on both engines
//! (pre/post_request per request, WSGI on both, ASGI on uvicorn), exec'd or forked from the
//! zygote (with and without preload), the master-side hooks (on_starting, when_ready,
//! child_exit with the pid of a worker killed with SIGKILL), and gunicorn's `-c python:module`
//! (imported from the master's directory, also by workers that changed directory).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{both_engines, http, run_to_end, Engine, Start, WAIT};
use serde_json::Value;

const HOOKS: &str = "gunicorn_hooks.conf.py";

fn hooks_file() -> String {
    common::apps_dir().join(HOOKS).display().to_string()
}

/// The markers hook `name` wrote into `dir`: (pid of the writer, what it saw), once at least `n`.
fn marks(dir: &Path, name: &str, n: usize) -> Vec<(i32, Value)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).expect("hook dir").flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = file.strip_prefix(&format!("{name}.")) else {
                continue;
            };
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text.lines().filter(|l| l.ends_with('}')) {
                let seen = serde_json::from_str(line).expect("marker is JSON");
                found.push((pid.parse().expect("pid"), seen));
            }
        }
        if found.len() >= n {
            return found;
        }
        assert!(Instant::now() < deadline, "{name}: {found:?}, wanted {n}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

#[test]
fn file_settings_are_honoured_and_unknown_ones_make_one_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let access = dir.path().join("access.log");
    let conf = write(
        dir.path(),
        "gunicorn.conf.py",
        &format!(
            "import multiprocessing\nbind = '127.0.0.1:0'\nworkers = 3\ntimeout = 7\n\
             keepalive = 3\naccesslog = {access:?}\nspew = False\nstatsd_host = 'localhost:8125'\n\
             helper = multiprocessing.cpu_count()\n"
        ),
    );
    let h = Start::new(&["-c", &conf, "wsgi_app:app"])
        .no_default_bind()
        .spawn();
    let pids = h.wait_serving();
    assert_eq!(pids.len(), 3, "workers = 3 from the file");
    let response = http::get(h.addr(), "/").expect("request");
    assert_eq!(response.status, 200);
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&access)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no access line in {access:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let warnings: Vec<String> = h
        .log
        .lines()
        .into_iter()
        .filter(|l| l.contains("ignored:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("spew, statsd_host"), "{warnings:?}");
    assert!(!warnings[0].contains("helper"), "helpers are not settings");
}

fn check(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let python = common::python().display().to_string();
    let mut argv = vec!["check", "--config-only", "--python", python.as_str()];
    argv.extend_from_slice(args);
    run_to_end(&argv, env)
}

#[test]
fn precedence_is_file_then_herdsman_env_then_gunicorn_cmd_args_then_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = write(
        dir.path(),
        "g.py",
        "wsgi_app = 'wsgi_app:app'\nworkers = 2\ntimeout = 5\ngraceful_timeout = 6\n\
         keepalive = 7\nbacklog = 100\n",
    );
    let env = [
        ("HERDSMAN_TIMEOUT", "8"),
        ("HERDSMAN_BACKLOG", "200"),
        ("GUNICORN_CMD_ARGS", "--timeout 9 --graceful-timeout 10"),
    ];
    let (code, out, err) = check(&["-c", &conf, "--graceful-timeout", "11"], &env);
    assert_eq!(code, Some(0), "{err}");
    for line in [
        "app = \"wsgi_app:app\"",
        "workers = 2",
        "timeout = \"9s\"",
        "graceful_timeout = \"11s\"",
        "keep_alive = \"7s\"",
        "backlog = 200",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} not in:\n{out}");
    }
}

#[test]
fn a_file_that_raises_or_refuses_fails_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = write(
        dir.path(),
        "bad.py",
        "workers = 2\nraise RuntimeError('no db')\n",
    );
    let (code, _, err) = check(&["-c", &conf, "wsgi_app:app"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot read the Python config file"), "{err}");
    assert!(
        err.contains("line 2") && err.contains("RuntimeError: no db"),
        "{err}"
    );
    assert!(err.contains("fix:"), "{err}");
    let conf = write(
        dir.path(),
        "refused.py",
        "daemon = True\nkeepalive = 'soon'\n",
    );
    let (code, _, err) = check(&["-c", &conf, "wsgi_app:app"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("line 1: `daemon` is refused"), "{err}");
    assert!(err.contains("line 2: `keepalive`"), "{err}");
    let (code, _, err) = check(
        &["wsgi_app:app"],
        &[("GUNICORN_CMD_ARGS", "--no-such-flag")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("GUNICORN_CMD_ARGS") && err.contains("--no-such-flag"),
        "{err}"
    );
}

/// Serves `app` with the hooks file and `extra` options; checks post_fork and post_worker_init
/// ran once in each worker before it served, pre/post_request around each request, worker_exit
/// at the stop.
fn worker_hooks(engine: Engine, app: &str, extra: &[&str]) {
    let hooks = hooks_file();
    let mut args = vec!["-c", hooks.as_str()];
    args.extend_from_slice(extra);
    args.push(app);
    worker_hooks_of(Start::new(&args).engine(engine));
}

/// [`worker_hooks`] of a master started as `start` says, with a hooks file.
fn worker_hooks_of(start: Start) {
    let dir = tempfile::tempdir().expect("temp dir");
    let hook_dir = dir.path().display().to_string();
    let mut h = start.env("HOOK_DIR", &hook_dir).spawn();
    let pids: BTreeSet<i32> = h.wait_serving().into_iter().collect();
    assert_eq!(pids.len(), 2);
    for hook in ["post_fork", "post_worker_init"] {
        let seen: BTreeSet<i32> = marks(dir.path(), hook, 2).iter().map(|(p, _)| *p).collect();
        assert_eq!(seen, pids, "{hook} ran in each worker");
    }
    for (pid, seen) in marks(dir.path(), "post_fork", 2) {
        assert_eq!(seen["pid"], pid);
        assert_eq!(seen["master"], h.pid);
        assert_eq!(seen["timeout"], 20.0, "cfg has the effective settings");
    }
    for i in 0..3 {
        let response = http::get(h.addr(), &format!("/?n={i}")).expect("request");
        assert_eq!(response.status, 200);
    }
    let pre = marks(dir.path(), "pre_request", 3);
    let post = marks(dir.path(), "post_request", 3);
    assert_eq!((pre.len(), post.len()), (3, 3));
    for (pid, seen) in &pre {
        assert!(pids.contains(pid));
        assert_eq!(seen["method"], "GET");
        assert_eq!(seen["path"], "/");
        assert!(seen["uri"].as_str().unwrap().starts_with("/?n="), "{seen}");
        assert!(seen["headers"].get("HOST").is_some(), "{seen}");
    }
    for (_, seen) in &post {
        assert_eq!(seen["status"], 200);
        assert!(seen["length"].as_u64().unwrap() > 0, "{seen}");
    }
    h.signal(libc::SIGTERM);
    h.wait_exit(WAIT);
    let exited: BTreeSet<i32> = marks(dir.path(), "worker_exit", 2)
        .iter()
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(exited, pids, "worker_exit ran in each worker");
}

both_engines! {
    fn wsgi_worker_hooks_run_in_each_worker_and_around_each_request(engine: Engine) {
        worker_hooks(engine, "wsgi_app:app", &[]);
    }
}

both_engines! {
    fn worker_hooks_run_in_each_zygote_forked_worker(engine: Engine) {
        worker_hooks(engine, "wsgi_app:app", &["--spawn", "zygote"]);
    }
}

both_engines! {
    fn worker_hooks_run_in_each_zygote_forked_worker_with_preload(engine: Engine) {
        worker_hooks(engine, "wsgi_app:app", &["--spawn", "zygote", "--preload"]);
    }
}

both_engines! {
    fn asgi_request_hooks_run(engine: Engine) {
        worker_hooks(engine, "asgi_app:app", &[]);
    }

    fn asgi_request_hooks_run_in_zygote_forked_workers_with_preload(engine: Engine) {
        worker_hooks(engine, "asgi_app:app", &["--spawn", "zygote", "--preload"]);
    }
}

/// A package `herdsman_test_conf` in a fresh directory, whose module `hooks` is the hooks file
/// and `broken` raises at line 2.
fn config_package() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let package = dir.path().join("herdsman_test_conf");
    std::fs::create_dir(&package).expect("package dir");
    std::fs::write(package.join("__init__.py"), "").expect("write __init__");
    std::fs::copy(common::apps_dir().join(HOOKS), package.join("hooks.py")).expect("copy hooks");
    std::fs::write(
        package.join("broken.py"),
        "workers = 2\nraise RuntimeError('no db')\n",
    )
    .expect("write broken");
    dir
}

/// `-c python:herdsman_test_conf.hooks` with the master in the package's directory and the
/// workers in tests/apps (`--chdir`): the master imports it from its own directory, and the
/// workers, which cannot see that directory on their path, import the same module; its settings
/// (`workers = 2`) and every hook apply, master-side ones included.
#[test]
fn python_module_config_is_imported_in_master_and_workers() {
    let package = config_package();
    let start = Start::new(&["-c", "python:herdsman_test_conf.hooks", "wsgi_app:app"])
        .current_dir(package.path());
    worker_hooks_of(start);
}

#[test]
fn python_module_config_that_raises_shows_its_own_traceback() {
    let package = config_package();
    let path = package.path().display().to_string();
    let env = [("PYTHONPATH", path.as_str())];
    let (code, _, err) = check(
        &["-c", "python:herdsman_test_conf.broken", "wsgi_app:app"],
        &env,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("broken.py\", line 2") && err.contains("RuntimeError: no db"),
        "{err}"
    );
    assert!(
        !err.contains("importlib") && !err.contains("<string>"),
        "runtime frames are trimmed: {err}"
    );
    let (code, _, err) = check(
        &["-c", "python:herdsman_test_conf.missing", "wsgi_app:app"],
        &env,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("No module named 'herdsman_test_conf.missing'") && !err.contains("<string>"),
        "{err}"
    );
    let (code, out, err) = check(
        &["-c", "python:herdsman_test_conf.hooks", "wsgi_app:app"],
        &env,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.lines().any(|l| l == "timeout = \"20s\""), "{out}");
}

#[test]
fn master_hooks_run_and_child_exit_sees_a_killed_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hook_dir = dir.path().display().to_string();
    let hooks = hooks_file();
    let h = Start::new(&["-c", &hooks, "wsgi_app:app"])
        .env("HOOK_DIR", &hook_dir)
        .spawn();
    let pids = h.wait_serving();
    let starting = marks(dir.path(), "on_starting", 1);
    assert_eq!(starting[0].1["master"], h.pid);
    // on_starting ran (and ended) before the first worker started.
    let started = starting[0].1["t"].as_f64().unwrap();
    for (_, seen) in marks(dir.path(), "post_fork", 2) {
        assert!(
            seen["t"].as_f64().unwrap() >= started,
            "{seen} before on_starting"
        );
    }
    let ready = marks(dir.path(), "when_ready", 1);
    assert_eq!(ready[0].1["workers"], 2);
    let victim = pids[0];
    common::signal(victim, libc::SIGKILL);
    let deadline = Instant::now() + WAIT;
    loop {
        let exits = marks(dir.path(), "child_exit", 1);
        if let Some((_, seen)) = exits.iter().find(|(_, s)| s["pid"] == victim) {
            assert_eq!(seen["master"], h.pid);
            assert!(seen["age"].as_u64().is_some(), "{seen}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no child_exit for {victim}: {exits:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- a gunicorn deployment, switched by changing one word -----------------------------------

/// A WSGI app as a deploy would have it: it answers what it sees (its version, pid, client,
/// scheme, mount prefix and port), so each flag's effect can be read off one response.
fn parity_app(version: u32) -> String {
    format!(
        r#"import json, os

VERSION = {version}


def app(environ, start_response):
    seen = {{"version": VERSION, "pid": os.getpid(), "client": environ.get("REMOTE_ADDR"),
            "scheme": environ["wsgi.url_scheme"], "script_name": environ.get("SCRIPT_NAME"),
            "port": environ.get("SERVER_PORT"), "env": os.environ.get("PARITY_ENV")}}
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
"#
    )
}

/// The deploy's gunicorn.conf.py: settings gunicorn users put there, and hooks that leave a
/// marker per process in HOOK_DIR.
const PARITY_CONF: &str = r#"import os

workers = 2
threads = 4
keepalive = 5
limit_request_line = 1024
limit_request_fields = 20
limit_request_field_size = 512
forwarded_allow_ips = "127.0.0.1"
proc_name = "parity"
raw_env = ["PARITY_ENV=from-conf"]
worker_connections = 100
statsd_host = "localhost:8125"


def _mark(name, pid):
    open(os.path.join(os.environ["HOOK_DIR"], "%s.%d" % (name, pid)), "w").close()


def on_starting(server):
    _mark("on_starting", server.pid)


def post_fork(server, worker):
    _mark("post_fork", worker.pid)


def post_worker_init(worker):
    _mark("post_worker_init", worker.pid)


def child_exit(server, worker):
    _mark("child_exit", worker.pid)
"#;

/// An HTTPS GET with extra headers, from the loopback address `from` (127.0.0.2 is not in
/// forwarded_allow_ips).
fn https_from(
    from: std::net::IpAddr,
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    certs: &common::tls::Certs,
) -> std::io::Result<http::Response> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&addr.into(), WAIT)?;
    let tcp: std::net::TcpStream = socket.into();
    tcp.set_read_timeout(Some(WAIT))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let conn =
        rustls::ClientConnection::new(certs.client(false), name).map_err(std::io::Error::other)?;
    http::request_with(
        rustls::StreamOwned::new(conn, tcp),
        "GET",
        path,
        headers,
        b"",
    )
}

fn markers(dir: &Path, hook: &str) -> BTreeSet<i32> {
    std::fs::read_dir(dir)
        .expect("hook dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_prefix(&format!("{hook}."))?.parse().ok())
        .collect()
}

/// issue 17's "done when": a gunicorn command line, unchanged but for the program's name, with a
/// gunicorn.conf.py and its hooks, over TLS with a certificate made here. Each behaviour is read
/// from the outside: TLS and the scheme, proxy headers believed only from the allowed address,
/// gunicorn's 414 and 431, `raw_env`, the process titles, the hooks in every worker (and
/// child_exit for one killed), and `--reload` picking up an edit.
fn gunicorn_deployment(engine: Engine) {
    let dir = tempfile::tempdir().expect("temp dir");
    let code = dir.path().join("code");
    let hooks = dir.path().join("hooks");
    std::fs::create_dir_all(&code).expect("code dir");
    std::fs::create_dir_all(&hooks).expect("hook dir");
    write(&code, "parity_app.py", &parity_app(1));
    let conf = write(dir.path(), "gunicorn.conf.py", PARITY_CONF);
    let certs = common::tls::Certs::new(dir.path());
    let code_dir = code.display().to_string();
    let (cert, key) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    // What a unit file says, `gunicorn` replaced by `herdsman` (the bind comes from the harness).
    let argv = [
        "-c",
        &conf,
        "--certfile",
        &cert,
        "--keyfile",
        &key,
        "--timeout",
        "0",
        "--graceful-timeout",
        "10",
        "--pythonpath",
        &code_dir,
        "--reload",
        "--reload-dir",
        &code_dir,
        "--worker-tmp-dir",
        "/dev/shm",
        "--access-logfile",
        "-",
        "parity_app:app",
    ];
    let h = Start::new(&argv)
        .engine(engine)
        .env("HOOK_DIR", hooks.to_str().expect("utf-8"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .spawn();
    let workers: BTreeSet<i32> = h.wait_serving().into_iter().collect();
    assert_eq!(workers.len(), 2, "workers = 2 from the file");
    let addr = h.addr();
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let other = std::net::IpAddr::from([127, 0, 0, 2]);
    let forwarded = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "http"),
    ];

    // TLS, and X-Forwarded-* believed from 127.0.0.1 only.
    let seen = https_from(loopback, addr, "/", &forwarded, &certs)
        .expect("HTTPS GET")
        .json();
    assert_eq!(
        (seen["client"].as_str(), seen["scheme"].as_str()),
        (Some("203.0.113.9"), Some("http")),
        "{seen}"
    );
    assert_eq!(seen["env"], "from-conf", "raw_env: {seen}");
    let seen = https_from(other, addr, "/", &forwarded, &certs)
        .expect("HTTPS GET")
        .json();
    assert_eq!(
        (seen["client"].as_str(), seen["scheme"].as_str()),
        (Some("127.0.0.2"), Some("https")),
        "{seen}"
    );

    // gunicorn's limits, from the file.
    let long = format!("/{}", "a".repeat(1100));
    let resp = https_from(loopback, addr, &long, &[], &certs).expect("long line");
    assert_eq!(resp.status, 414, "limit_request_line 1024");
    let many: Vec<(String, String)> = (0..25).map(|i| (format!("X-F{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let resp = https_from(loopback, addr, "/", &many, &certs).expect("many fields");
    assert_eq!(resp.status, 431, "limit_request_fields 20");

    // The titles, and every worker's hooks.
    let cmdline = |pid: i32| {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim()
            .to_string()
    };
    assert_eq!(cmdline(h.pid), "herdsman: master [parity]");
    for &pid in &workers {
        assert_eq!(cmdline(pid), "herdsman: worker [parity]");
    }
    assert_eq!(markers(&hooks, "on_starting").len(), 1);
    assert_eq!(
        markers(&hooks, "post_fork"),
        workers,
        "post_fork in each worker"
    );
    assert_eq!(markers(&hooks, "post_worker_init"), workers);
    let log = h.log.text();
    assert!(
        log.contains("gunicorn's --worker-tmp-dir changes nothing here"),
        "{log}"
    );
    assert!(
        log.contains("statsd_host"),
        "the file's unknown setting is named: {log}"
    );

    // --reload: the old workers go (child_exit sees each), then new ones serve the edit.
    write(&code, "parity_app.py", &parity_app(2));
    h.wait_record("reload complete", |_| true);
    let deadline = Instant::now() + WAIT;
    while markers(&hooks, "child_exit") != workers && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        markers(&hooks, "child_exit"),
        workers,
        "child_exit for each replaced worker"
    );
    let seen = https_from(loopback, addr, "/", &[], &certs)
        .expect("HTTPS GET")
        .json();
    assert_eq!(seen["version"], 2, "{seen}");
    assert!(
        !workers.contains(&(seen["pid"].as_i64().unwrap_or(0) as i32)),
        "{seen}"
    );
    assert!(h.finish().success());
}

both_engines! {
    fn a_gunicorn_deployment_switches_by_changing_one_word(engine: Engine) {
        gunicorn_deployment(engine);
    }
}
