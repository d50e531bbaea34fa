//! The operations interface with real processes: `herdsman ctl` against the control socket
//! (status, reload with its outcome, scale, stop, drain, discovery, file modes, peer
//! credentials), and the admin listener (`/metrics` read by the real Prometheus parser, `/livez`,
//! `/readyz`), including a flood of silent connections that must not delay supervision.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{http, message, run_to_end, Herdsman, Start, WAIT};
use serde_json::Value;

/// The control socket the master logged.
fn control_socket(h: &Herdsman) -> PathBuf {
    let record = h.wait_record("control socket ready", |_| true);
    PathBuf::from(record["path"].as_str().expect("path field"))
}

/// The admin listener's address the master logged.
fn admin_addr(h: &Herdsman) -> SocketAddr {
    let record = h.wait_record("admin listener", |_| true);
    let address = record["address"].as_str().expect("address field");
    address.parse().expect("a TCP address")
}

/// What `herdsman ctl` did: exit code, stdout, stderr.
struct Ctl {
    code: Option<i32>,
    out: String,
    err: String,
}

impl Ctl {
    fn json(&self) -> Value {
        serde_json::from_str(self.out.trim()).unwrap_or_else(|e| {
            panic!("ctl printed no JSON ({e}): {:?} / {:?}", self.out, self.err)
        })
    }

    fn ok(self) -> Ctl {
        assert_eq!(
            self.code,
            Some(0),
            "ctl failed: {:?} / {:?}",
            self.out,
            self.err
        );
        self
    }
}

/// `herdsman ctl --socket SOCKET ARGS...`
fn ctl(socket: &Path, args: &[&str]) -> Ctl {
    let socket = socket.to_str().expect("UTF-8 path");
    ctl_env(&[&["ctl", "--socket", socket], args].concat(), &[])
}

fn ctl_env(args: &[&str], env: &[(&str, &str)]) -> Ctl {
    let (code, out, err) = run_to_end(args, env);
    Ctl { code, out, err }
}

fn status(socket: &Path) -> Value {
    ctl(socket, &["--json", "status"]).ok().json()
}

fn worker_pids(status: &Value) -> Vec<i64> {
    let mut pids: Vec<i64> = status["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter_map(|w| w["pid"].as_i64())
        .collect();
    pids.sort_unstable();
    pids
}

fn wall_time(record: &Value) -> SystemTime {
    let text = record["timestamp"].as_str().expect("timestamp");
    humantime::parse_rfc3339(text).expect("RFC 3339 timestamp")
}

#[test]
fn status_follows_boot_crash_and_reload() {
    let h = Herdsman::start(&["-w", "2", "asgi_app:app"]);
    let socket = control_socket(&h);
    let early = status(&socket);
    assert_eq!(early["ok"], true);
    assert_eq!(early["master"]["target"], 2);
    assert_eq!(early["master"]["pid"], h.pid);
    let pids = h.wait_serving();
    let s = status(&socket);
    assert_eq!(s["master"]["ready"], 2, "{s}");
    assert_eq!(s["master"]["generation"], 0);
    assert_eq!(s["last_restart"], Value::Null);
    let mut expected: Vec<i64> = pids.iter().map(|&p| i64::from(p)).collect();
    expected.sort_unstable();
    assert_eq!(worker_pids(&s), expected);
    for w in s["workers"].as_array().unwrap() {
        assert_eq!(w["state"], "ready", "{w}");
        assert!(
            w["rss_bytes"].as_u64().unwrap_or(0) > 0,
            "RSS from /proc: {w}"
        );
    }

    let victim = pids[0];
    common::signal(victim, libc::SIGKILL);
    h.wait_records("worker ready", 3);
    let s = status(&socket);
    assert_eq!(s["last_restart"]["reason"], "crash", "{s}");
    assert_eq!(s["last_restart"]["pid"], victim);
    assert_eq!(s["restarts"]["crash"], 1);

    let reloaded = ctl(&socket, &["reload"]).ok();
    assert!(
        reloaded.out.contains("generation 1 is serving"),
        "{}",
        reloaded.out
    );
    let s = status(&socket);
    assert_eq!(s["master"]["generation"], 1, "{s}");
    let workers = s["workers"].as_array().unwrap();
    let new: Vec<&Value> = workers.iter().filter(|w| w["generation"] == 1).collect();
    assert_eq!(new.len(), 2, "{s}");
    assert!(new.iter().all(|w| w["state"] == "ready"), "{s}");
    for old in workers.iter().filter(|w| w["generation"] == 0) {
        assert_eq!(old["leaving"], "reload", "the old ones are retired: {s}");
    }
    // Once the old workers are gone, the table shows the new ones only.
    h.wait_records("worker exited", 2);

    let human = ctl(&socket, &["status"]).ok().out;
    assert!(human.contains(&format!("master pid {}", h.pid)), "{human}");
    assert!(
        human.contains("generation 1, 2/2 workers ready (target 2"),
        "{human}"
    );
    let header = human
        .lines()
        .find(|l| l.starts_with("ID"))
        .expect("table header");
    for column in [
        "PID",
        "GEN",
        "STATE",
        "AGE",
        "REQUESTS",
        "IN-FLIGHT",
        "MEMORY",
        "LEAVING",
    ] {
        assert!(header.contains(column), "{header}");
    }
    for pid in new.iter().filter_map(|w| w["pid"].as_i64()) {
        assert!(human.contains(&format!(" {pid} ")), "{pid} in:\n{human}");
    }
    h.finish();
}

#[test]
fn reload_reports_a_broken_config_and_keeps_the_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = "app = \"asgi_app:app\"\nworkers = 2\n";
    let file = common::write_file(dir.path(), "herdsman.toml", good);
    let h = Start::new(&["-c", file.to_str().unwrap()]).spawn();
    let socket = control_socket(&h);
    h.wait_serving();
    let before = worker_pids(&status(&socket));

    std::fs::write(&file, "app = \"asgi_app:app\"\nworkers = 0\n").unwrap();
    let failed = ctl(&socket, &["reload"]);
    assert_eq!(failed.code, Some(1), "{:?} / {:?}", failed.out, failed.err);
    assert!(
        failed
            .err
            .contains("line 2: `workers` must be at least 1, got 0"),
        "{}",
        failed.err
    );
    assert!(
        failed.err.contains("the current workers keep serving"),
        "{}",
        failed.err
    );
    let s = status(&socket);
    assert_eq!(worker_pids(&s), before, "old workers unchanged");
    assert_eq!(s["master"]["generation"], 0);

    let json = ctl(&socket, &["--json", "reload"]);
    assert_eq!(json.code, Some(1));
    assert_eq!(json.json()["ok"], false);

    std::fs::write(&file, good).unwrap();
    let ok = ctl(&socket, &["--json", "reload"]).ok().json();
    assert_eq!(ok, serde_json::json!({"ok": true, "generation": 1}));
    h.finish();
}

#[test]
fn scale_then_stop() {
    let mut h = Herdsman::start(&["-w", "1", "asgi_app:app"]);
    let socket = control_socket(&h);
    h.wait_serving();
    let scaled = ctl(&socket, &["scale", "3"]).ok();
    assert_eq!(scaled.out.trim(), "target workers: 1 -> 3");
    h.wait_records("worker ready", 3);
    let s = status(&socket);
    assert_eq!(
        (s["master"]["target"].clone(), s["master"]["ready"].clone()),
        (3.into(), 3.into())
    );
    let usage = ctl(&socket, &["scale", "0"]);
    assert_eq!(usage.code, Some(2), "{}", usage.err);

    let stopped = ctl(&socket, &["--json", "stop"]).ok().json();
    assert_eq!(stopped["stopping"], "graceful");
    let status = h.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0));
    assert!(!socket.exists(), "the control socket is removed at exit");
    let gone = ctl(&socket, &["status"]);
    assert_eq!(gone.code, Some(3), "{}", gone.err);
    assert!(gone.err.contains("no such socket"), "{}", gone.err);
    h.finish();
}

/// `--json`, `--socket` and `--timeout` work after the command too (`ctl status --json`).
#[test]
fn ctl_options_may_follow_the_command() {
    let mut h = Herdsman::start(&["-w", "1", "asgi_app:app"]);
    let socket = control_socket(&h);
    let socket = socket.to_str().expect("UTF-8 path");
    h.wait_serving();
    let after = |args: &[&str]| {
        let args = [&["ctl"], args, &["--json", "--socket", socket]].concat();
        ctl_env(&args, &[]).ok().json()
    };
    let s = after(&["status"]);
    assert_eq!(s["master"]["pid"], h.pid, "{s}");
    assert_eq!(after(&["drain"])["ok"], true);
    assert_eq!(after(&["undrain"])["ok"], true);
    assert_eq!(after(&["scale", "2"])["ok"], true);
    let reloaded = after(&["reload", "--timeout", "60s"]);
    assert_eq!(reloaded, serde_json::json!({"ok": true, "generation": 1}));
    assert_eq!(after(&["stop"])["stopping"], "graceful");
    assert_eq!(h.wait_exit(WAIT).code(), Some(0));
    h.finish();
}

#[test]
fn ctl_finds_the_one_master_of_this_user_or_the_one_pid_names() {
    let h = Herdsman::start(&["-w", "1", "asgi_app:app"]);
    let socket = control_socket(&h);
    let runtime = h.dir.path().to_str().unwrap().to_string();
    let env = [("XDG_RUNTIME_DIR", runtime.as_str())];
    let found = ctl_env(&["ctl", "--json", "status"], &env).ok().json();
    assert_eq!(found["master"]["pid"], h.pid);

    // A socket nobody listens on any more (a killed master) is skipped.
    let stale = socket.with_file_name("1.sock");
    drop(UnixListener::bind(&stale).unwrap());
    ctl_env(&["ctl", "status"], &env).ok();
    // Two live ones: ctl asks which.
    let other = socket.with_file_name("2.sock");
    let _other = UnixListener::bind(&other).unwrap();
    let several = ctl_env(&["ctl", "status"], &env);
    assert_eq!(several.code, Some(2), "{}", several.err);
    assert!(several.err.contains("pass --pid PID"), "{}", several.err);
    assert!(
        several.err.contains(&*other.to_string_lossy()),
        "{}",
        several.err
    );
    // --pid picks one of them: by number, or from a pidfile as the master's --pid writes it.
    let pid = h.pid.to_string();
    let by_pid = ctl_env(&["ctl", "--json", "status", "--pid", &pid], &env)
        .ok()
        .json();
    assert_eq!(by_pid["master"]["pid"], h.pid);
    let pidfile = h.dir.path().join("master.pid");
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    let pidfile = pidfile.to_str().unwrap();
    let by_file = ctl_env(&["ctl", "--json", "--pid", pidfile, "status"], &env)
        .ok()
        .json();
    assert_eq!(by_file["master"]["pid"], h.pid);
    // A pid no master answers for, and a --pid that is neither a pid nor a pidfile.
    let absent = ctl_env(&["ctl", "--pid", "999999", "status"], &env);
    assert_eq!(absent.code, Some(3), "{}", absent.err);
    assert!(
        absent
            .err
            .contains("no running herdsman master with pid 999999"),
        "{}",
        absent.err
    );
    let bad = ctl_env(&["ctl", "--pid", "no-such-file", "status"], &env);
    assert_eq!(bad.code, Some(2), "{}", bad.err);
    assert!(
        bad.err.contains("neither a pid nor a readable pidfile"),
        "{}",
        bad.err
    );

    let empty = tempfile::tempdir().unwrap();
    let env = [("XDG_RUNTIME_DIR", empty.path().to_str().unwrap())];
    let none = ctl_env(&["ctl", "status"], &env);
    assert_eq!(none.code, Some(3), "{}", none.err);
    assert!(
        none.err.contains("no running herdsman found in"),
        "{}",
        none.err
    );
    h.finish();
}

/// Runs `script` with the test Python as root, with `args`; returns its stdout.
fn python_as_root(script: &str, args: &[&str]) -> String {
    let child = Command::new(common::python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let out = wait_output(child);
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_output(child: std::process::Child) -> std::process::Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => out.expect("child output"),
        Err(_) => {
            common::signal(pid, libc::SIGKILL);
            panic!("child {pid} did not finish within {WAIT:?}");
        }
    }
}

/// Connects as uid 65534 (nobody) while keeping filesystem access as root (fsuid 0, allowed
/// because the saved uid stays 0), so the connection reaches the master and only the peer
/// credential check can refuse it. Prints what the master answered (nothing, if refused).
const CONNECT_AS_NOBODY: &str = r#"
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
os.setresuid(65534, 65534, 0)
libc.setfsuid(0)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"cmd":"status"}\n')
    answer = s.recv(65536)
except (BrokenPipeError, ConnectionResetError):
    answer = b''  # closed before or after the request arrived: no answer either way
print("euid", os.geteuid(), "answer", repr(answer))
"#;

/// A plain setuid to nobody: the directory and socket modes keep it out.
const SETUID_NOBODY: &str = r#"
import os, socket, sys
os.setresuid(65534, 65534, 65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
    print("connected")
except PermissionError:
    print("permission denied")
"#;

#[test]
fn the_control_socket_is_private_and_checks_peer_credentials() {
    let h = Herdsman::start(&["-w", "1", "asgi_app:app"]);
    let socket = control_socket(&h);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&socket), 0o600);
    let dir = socket.parent().unwrap();
    assert_eq!(mode(dir), 0o700);
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        dir.file_name().unwrap().to_string_lossy(),
        format!("herdsman-{euid}")
    );
    if euid != 0 {
        h.finish();
        return common::skip(&format!(
            "the other-uid part: it needs root to switch to uid 65534 (running as {euid})"
        ));
    }
    let path = socket.to_str().unwrap();
    let out = python_as_root(SETUID_NOBODY, &[path]);
    assert_eq!(out.trim(), "permission denied");
    let out = python_as_root(CONNECT_AS_NOBODY, &[path]);
    assert_eq!(
        out.trim(),
        "euid 65534 answer b''",
        "refused without an answer"
    );
    let warned = h.wait_record(
        "control socket: refused a connection from uid 65534",
        |_| true,
    );
    assert_eq!(warned["level"], "WARN", "{warned}");
    assert_eq!(status(&socket)["ok"], true, "root is still served");
    h.finish();
}

/// Parses an exposition with prometheus_client's own parser; returns its samples as
/// `{family, type, name, labels, value}` objects.
const PARSE_METRICS: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

fn parse_metrics(text: &str) -> Vec<Value> {
    let mut child = Command::new(common::python())
        .args(["-c", PARSE_METRICS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let out = wait_output(child);
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn metric(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
}

fn scrape(admin: SocketAddr) -> Vec<Value> {
    let response = http::get(admin, "/metrics").expect("GET /metrics");
    assert_eq!(response.status, 200);
    let content_type = response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    assert_eq!(
        content_type,
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_metrics(&response.body)
}

/// The admin endpoints have no authentication: an `admin_bind` others can reach is warned about
/// by `herdsman check` and at start (before anything is bound: here the start then stops at a
/// taken loopback port, so nothing listens beyond loopback); loopback stays silent.
#[test]
fn an_admin_bind_beyond_loopback_is_warned_about() {
    let warning = "is not a loopback address: /metrics, /livez and /readyz answer anyone";
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let python = common::python();
    let python = python.to_str().expect("UTF-8 path");
    for (bind, exposed) in [
        ("0.0.0.0:9191", true),
        ("[::]:9191", true),
        ("127.0.0.1:9191", false),
        ("localhost:9191", false),
    ] {
        let (code, _, err) = run_to_end(
            &["check", "--config-only", "--admin-bind", bind, "m:a"],
            &[],
        );
        assert_eq!(code, Some(0), "{bind}: {err}");
        assert_eq!(err.contains(warning), exposed, "check, {bind}: {err}");
        if exposed {
            assert!(err.contains("bind it to 127.0.0.1 (e.g. admin_bind = \"127.0.0.1:9191\") or keep the port behind a firewall"), "{err}");
        }
        let start = [
            "--admin-bind",
            bind,
            "-b",
            &taken,
            "--python",
            python,
            "m:a",
        ];
        let (code, _, err) = run_to_end(&start, &[]);
        assert_eq!(code, Some(5), "{bind}: the start stops at the bind: {err}");
        assert_eq!(err.contains(warning), exposed, "start, {bind}: {err}");
    }
    drop(holder);
}

#[test]
fn metrics_parse_and_count_a_crash() {
    let h = Herdsman::start(&["-w", "2", "--admin-bind", "127.0.0.1:0", "asgi_app:app"]);
    let admin = admin_addr(&h);
    let pids = h.wait_serving();
    let samples = scrape(admin);
    let family_type = |family: &str| {
        samples
            .iter()
            .find(|s| s["family"] == family)
            .map(|s| s["type"].as_str().unwrap().to_string())
    };
    assert_eq!(
        family_type("herdsman_worker_restarts").as_deref(),
        Some("counter")
    );
    assert_eq!(family_type("herdsman_workers").as_deref(), Some("gauge"));
    assert_eq!(
        family_type("herdsman_reload_duration_seconds").as_deref(),
        Some("summary")
    );
    let crash = [("reason", "crash")];
    assert_eq!(
        metric(&samples, "herdsman_worker_restarts_total", &crash),
        Some(0.0)
    );
    assert_eq!(
        metric(&samples, "herdsman_workers", &[("state", "ready")]),
        Some(2.0)
    );
    assert_eq!(metric(&samples, "herdsman_workers_ready", &[]), Some(2.0));
    assert_eq!(metric(&samples, "herdsman_ready", &[]), Some(1.0));
    let rss = samples
        .iter()
        .filter(|s| s["name"] == "herdsman_worker_resident_memory_bytes")
        .count();
    assert_eq!(rss, 2, "one RSS sample per worker");
    assert!(metric(&samples, "herdsman_master_uptime_seconds", &[]).unwrap() > 0.0);

    common::signal(pids[1], libc::SIGKILL);
    h.wait_records("worker ready", 3);
    let samples = scrape(admin);
    assert_eq!(
        metric(&samples, "herdsman_worker_restarts_total", &crash),
        Some(1.0)
    );
    let boots = metric(&samples, "herdsman_worker_boot_duration_seconds_count", &[]);
    assert_eq!(boots, Some(3.0));
    h.finish();
}

#[test]
fn readyz_follows_drain_while_the_app_keeps_serving() {
    let h = Herdsman::start(&["-w", "2", "--admin-bind", "127.0.0.1:0", "asgi_app:app"]);
    let admin = admin_addr(&h);
    let socket = control_socket(&h);
    h.wait_serving();
    let app = h.addr();
    assert_eq!(http::get(admin, "/readyz").unwrap().status, 200);
    let live = http::get(admin, "/livez").unwrap();
    assert_eq!(live.status, 200);
    assert_eq!(live.body.trim(), format!("alive: master pid {}", h.pid));

    let drained = ctl(&socket, &["drain"]).ok();
    assert!(
        drained.out.contains("/readyz answers 503"),
        "{}",
        drained.out
    );
    let ready = http::get(admin, "/readyz").unwrap();
    assert_eq!(ready.status, 503);
    assert!(
        ready.body.starts_with("not ready: drained"),
        "{}",
        ready.body
    );
    assert_eq!(
        http::get(app, "/").unwrap().status,
        200,
        "the app still serves"
    );
    assert_eq!(status(&socket)["master"]["draining"], true);

    ctl(&socket, &["undrain"]).ok();
    assert_eq!(http::get(admin, "/readyz").unwrap().status, 200);
    assert_eq!(http::get(admin, "/nope").unwrap().status, 404);
    let post = http::request(http::connect(admin).unwrap(), "POST", "/livez", b"").unwrap();
    assert_eq!(post.status, 405);
    h.finish();
}

#[test]
fn a_flood_of_silent_admin_connections_does_not_delay_supervision() {
    let h = Herdsman::start(&["-w", "2", "--admin-bind", "127.0.0.1:0", "asgi_app:app"]);
    let admin = admin_addr(&h);
    let pids = h.wait_serving();
    // 200 connections that never send a byte (slowloris), opened from a thread while a worker
    // is killed.
    let flood = std::thread::spawn(move || {
        (0..200)
            .map(|_| TcpStream::connect_timeout(&admin, WAIT).expect("connect"))
            .collect::<Vec<_>>()
    });
    let victim = pids[0];
    let killed_at = SystemTime::now();
    let started = Instant::now();
    common::signal(victim, libc::SIGKILL);
    let flood = flood.join().expect("flood thread");
    let exit = h.wait_record("worker was killed by SIGKILL", |r| r["pid"] == victim);
    let reaped_after = wall_time(&exit)
        .duration_since(killed_at)
        .unwrap_or_default();
    assert!(
        reaped_after < Duration::from_secs(2),
        "reaped after {reaped_after:?}"
    );
    let replacement = h.wait_record_for("worker ready", Duration::from_secs(20), |r| {
        r["pid"]
            .as_i64()
            .is_some_and(|p| !pids.contains(&(p as i32)))
    });
    let ready_after = wall_time(&replacement)
        .duration_since(killed_at)
        .unwrap_or_default();
    assert!(
        ready_after < Duration::from_secs(15),
        "replacement ready after {ready_after:?}"
    );

    // The silent connections are still open: a real client gets in (the oldest silent one
    // makes room) and is answered.
    let live = http::get(admin, "/livez").expect("GET /livez during the flood");
    assert_eq!(live.status, 200);
    assert!(started.elapsed() < WAIT);
    drop(flood);
    let samples = scrape(admin);
    let shed = metric(
        &samples,
        "herdsman_ops_connections_shed_total",
        &[("listener", "admin")],
    );
    assert!(
        shed.unwrap_or(0.0) >= 100.0,
        "most of the flood was shed: {shed:?}"
    );
    assert!(h
        .log
        .records()
        .iter()
        .all(|r| !message(r).starts_with("accept failed")));
    h.finish();
}

fn master_fds_and_threads(pid: i32) -> (usize, String) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .expect("Threads")
        .trim()
        .to_string();
    (fds, threads)
}

/// Polls `ctl status` until nothing is in progress and `n` workers serve, all of them ready.
fn wait_settled(h: &Herdsman, socket: &Path, n: u64) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = status(socket);
        let m = &s["master"];
        if m["reloading"] == false
            && m["target"] == n
            && m["ready"] == n
            && m["total"] == n
            && s["workers"].as_array().is_some_and(|w| w.len() as u64 == n)
        {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not settled at {n} workers: {s}\n{}",
            h.log.text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// F10: a storm of 1000 signals (250 each of HUP, TTIN, USR1 and TTOU, interleaved, as fast as
/// they can be sent): the master does not crash, reloads coalesce (far fewer generations than
/// HUPs), the worker count ends exactly at its target, and the master holds no more file
/// descriptors or threads than before.
#[test]
fn f10_a_storm_of_1000_signals_coalesces_and_ends_exact() {
    let h = Herdsman::start(&["-w", "2", "asgi_app:app"]);
    let socket = control_socket(&h);
    h.wait_serving();
    let before = master_fds_and_threads(h.pid);
    for _ in 0..250 {
        for sig in [libc::SIGHUP, libc::SIGTTIN, libc::SIGUSR1, libc::SIGTTOU] {
            h.signal(sig);
        }
    }
    // TTIN and TTOU may coalesce in the kernel (a pending signal is not queued twice), so the
    // target after the storm is whatever the master counted: it must be met exactly. Then back
    // to 2, to compare the master's own resources with the same worker count.
    h.wait_records("reload complete", 1);
    let s = status(&socket);
    let target = s["master"]["target"].as_u64().expect("target");
    assert!(target >= 1, "{s}");
    wait_settled(&h, &socket, target);
    assert_eq!(
        ctl(&socket, &["--json", "scale", "2"]).ok().json()["ok"],
        true
    );
    let s = wait_settled(&h, &socket, 2);
    let generation = s["master"]["generation"].as_u64().expect("generation");
    assert!(
        (1..250).contains(&generation),
        "250 HUPs coalesce into fewer reloads: generation {generation}"
    );
    let response = http::get(h.addr(), "/").expect("served after the storm");
    assert_eq!(response.status, 200);
    let after = master_fds_and_threads(h.pid);
    assert_eq!(
        after, before,
        "the master's (fds, threads) before and after the storm"
    );
    eprintln!("F10: {generation} generations for 250 HUPs; master (fds, threads) {after:?}");
    assert!(h.finish().success());
}

/// Anyone can create `herdsman-<uid>` first in a shared /tmp: a directory of another user
/// (planted as root, chowned to nobody) or a symlink to a directory of the planter's choice. The
/// master neither refuses to start (as it did: exit 5) nor uses it: its control socket goes into
/// a fresh private fallback beside it, it says so, and `herdsman ctl` finds it there without
/// looking into the planted one.
#[test]
fn a_planted_control_directory_neither_stops_the_master_nor_is_used() {
    let root = nix::unistd::geteuid().is_root();
    let uid = nix::unistd::geteuid().as_raw();
    let mut plants = vec!["symlink"];
    if root {
        plants.push("another user's directory");
    }
    for plant in plants {
        let base = tempfile::tempdir().expect("temp dir");
        let planted = base.path().join(format!("herdsman-{uid}"));
        let elsewhere = base.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        match plant {
            "symlink" => std::os::unix::fs::symlink(&elsewhere, &planted).expect("symlink"),
            _ => {
                std::fs::create_dir(&planted).expect("mkdir");
                std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).expect("chown");
            }
        }
        let xdg = base.path().to_str().expect("utf-8 temp path");
        let h = Start::new(&["-w", "1", "asgi_app:app"])
            .env("XDG_RUNTIME_DIR", xdg)
            .spawn();
        h.wait_serving();
        let warning = h.wait_record("not using the control socket directory", |_| true);
        assert_eq!(warning["level"].as_str(), Some("WARN"), "{warning}");
        let socket = control_socket(&h);
        let fallback = socket.parent().expect("a directory").to_path_buf();
        assert_ne!(fallback, planted, "{plant}: {warning}");
        assert!(
            fallback
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("herdsman-{uid}."))),
            "{}",
            fallback.display()
        );
        let meta = std::fs::symlink_metadata(&fallback).expect("fallback");
        assert!(meta.is_dir(), "{}", fallback.display());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::read_dir(&elsewhere).expect("read").count(),
            0,
            "{plant}: nothing was put where the symlink points"
        );
        let found = ctl_env(&["ctl", "--json", "status"], &[("XDG_RUNTIME_DIR", xdg)])
            .ok()
            .json();
        assert_eq!(found["master"]["pid"], h.pid, "{plant}");
        assert!(h.finish().success());
    }
}
