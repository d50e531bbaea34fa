//! Every bind form served by real workers (IPv4, IPv6, unix, inherited fd, several at once), the
//! listeners being the master's (workers never bind), the backlog reaching the socket, and F15:
//! an address or unix path that is taken makes herdsman exit with code 5 and clobber nothing,
//! while a stale socket file from a dead run is replaced.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::http::{get, get_unix};
use common::{children_of, message, records_with, Herdsman, Start, WAIT};
use serde_json::Value;

const BIND_EXIT: i32 = 5;

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn unix_bind(path: &Path) -> String {
    format!("unix:{}", path.display())
}

/// The inode of the socket at `/proc/PID/fd/FD`, if that fd is a socket.
fn socket_inode(pid: i32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let text = link.to_str()?;
    text.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every socket inode `pid` holds, with its fd number.
fn socket_fds(pid: i32) -> Vec<(i32, u64)> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/PID/fd");
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|fd| Some((fd, socket_inode(pid, fd)?)))
        .collect()
}

/// Inodes and local ports of every listening TCP socket on the host (/proc/net/tcp and tcp6).
fn listening_tcp() -> Vec<(u64, u16)> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Ok(inode)) = (port, cols[9].parse()) {
                found.push((inode, port));
            }
        }
    }
    found
}

/// The inode of the listening unix socket bound at `path` (/proc/net/unix).
fn listening_unix_inode(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/unix").ok()?;
    let want = path.to_str()?;
    text.lines().skip(1).find_map(|line| {
        // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 = listening.
        let cols: Vec<&str> = line.split_whitespace().collect();
        let listening = u32::from_str_radix(cols.get(3)?, 16).ok()? & 0x10000 != 0;
        (listening && cols.get(7) == Some(&want))
            .then(|| cols.get(6)?.parse().ok())
            .flatten()
    })
}

fn answered_by_worker(resp: &common::http::Response, workers: &[i32]) {
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        workers.contains(&resp.pid()),
        "answered by pid {}, not one of the workers {workers:?}",
        resp.pid()
    );
}

fn listening_addresses(h: &Herdsman) -> Vec<String> {
    records_with(&h.log.lines(), "listening")
        .iter()
        .filter_map(|r| r.get("address").and_then(Value::as_str).map(String::from))
        .collect()
}

#[test]
fn ipv4_port_zero_gets_a_real_port_and_serves() {
    let h = Herdsman::start(&["-w", "1", "asgi_app:app"]);
    let workers = h.wait_serving();
    let addr = h.addr();
    assert!(addr.ip().is_loopback() && addr.is_ipv4(), "{addr}");
    assert_ne!(addr.port(), 0, "the real port is logged, not 0");
    answered_by_worker(&get(addr, "/").expect("GET /"), &workers);
    assert!(h.finish().success());
}

#[test]
fn ipv6_loopback_serves() {
    // Precondition: this machine has IPv6 loopback.
    if let Err(e) = TcpListener::bind("[::1]:0") {
        return common::skip(&format!(
            "this machine cannot bind [::1]:0 ({e}), so there is no IPv6 loopback to test"
        ));
    }
    let h = Start::new(&["-w", "1", "-b", "[::1]:0", "asgi_app:app"])
        .no_default_bind()
        .spawn();
    let workers = h.wait_serving();
    let addr = h.addr();
    assert!(addr.is_ipv6() && addr.ip().is_loopback(), "{addr}");
    assert_ne!(addr.port(), 0);
    answered_by_worker(&get(addr, "/").expect("GET / over IPv6"), &workers);
    assert!(h.finish().success());
}

#[test]
fn unix_socket_has_mode_0660_serves_and_is_removed_at_exit() {
    let dir = temp_dir();
    let path = dir.path().join("app.sock");
    let h = Start::new(&["-w", "1", "-b", &unix_bind(&path), "asgi_app:app"])
        .no_default_bind()
        .spawn();
    let workers = h.wait_serving();
    let meta = std::fs::symlink_metadata(&path).expect("the socket file exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o660,
        "mode {:o}",
        meta.permissions().mode()
    );
    assert_eq!(listening_addresses(&h), vec![unix_bind(&path)]);
    answered_by_worker(&get_unix(&path, "/").expect("GET / over unix"), &workers);
    assert!(h.finish().success());
    assert!(
        std::fs::symlink_metadata(&path).is_err(),
        "the socket file is removed at exit"
    );
}

/// Clears FD_CLOEXEC so a child inherits `fd`.
fn make_inheritable(fd: i32) {
    // SAFETY: fcntl on an fd this test owns, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        assert!(flags >= 0, "F_GETFD failed");
        assert_eq!(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC), 0);
    }
}

#[test]
fn inherited_fd_is_adopted_and_served() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("local addr");
    let fd = listener.as_raw_fd();
    make_inheritable(fd);
    let bind = format!("fd://{fd}");
    let h = Start::new(&["-w", "1", "-b", &bind, "asgi_app:app"])
        .no_default_bind()
        .spawn();
    let workers = h.wait_serving();
    assert_eq!(listening_addresses(&h), vec![format!("fd://{fd} ({addr})")]);
    answered_by_worker(
        &get(addr, "/").expect("GET / on the inherited socket"),
        &workers,
    );
    let ours = socket_inode(std::process::id() as i32, fd).expect("our listener's inode");
    assert_eq!(
        socket_inode(workers[0], 3),
        Some(ours),
        "the worker serves the very socket we passed"
    );
    assert!(h.finish().success());
    // The socket still belongs to us: herdsman closed its copy without shutting it down.
    let _client = TcpStream::connect(addr).expect("our listener still accepts connections");
    listener.accept().expect("accept on our listener");
}

#[test]
fn several_binds_are_all_served_in_order() {
    let dir = temp_dir();
    let path = dir.path().join("app.sock");
    let h = Herdsman::start(&["-w", "2", "-b", &unix_bind(&path), "asgi_app:app"]);
    let workers = h.wait_serving();
    let addr = h.addr();
    answered_by_worker(&get(addr, "/").expect("GET / over TCP"), &workers);
    answered_by_worker(&get_unix(&path, "/").expect("GET / over unix"), &workers);
    // The listeners are fds 3, 4, ... in the order of the binds: TCP first, then unix.
    let tcp = listening_tcp()
        .into_iter()
        .find(|(_, port)| *port == addr.port())
        .map(|(inode, _)| inode)
        .expect("the TCP listener in /proc/net/tcp");
    let unix = listening_unix_inode(&path).expect("the unix listener in /proc/net/unix");
    for &pid in &workers {
        assert_eq!(socket_inode(pid, 3), Some(tcp), "worker {pid} fd 3");
        assert_eq!(socket_inode(pid, 4), Some(unix), "worker {pid} fd 4");
    }
    assert!(h.finish().success());
}

#[test]
fn workers_serve_the_masters_listener_and_never_bind() {
    let h = Herdsman::start(&["-w", "2", "asgi_app:app"]);
    let workers = h.wait_serving();
    let addr = h.addr();
    let resp = get(addr, "/fds").expect("GET /fds");
    answered_by_worker(&resp, &workers);
    let fds: Vec<i64> = resp.json()["fds"]
        .as_array()
        .expect("fds")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(
        fds.contains(&3) && fds.contains(&4),
        "listener 3 and channel 4: {fds:?}"
    );

    let master: Vec<u64> = socket_fds(h.pid).iter().map(|(_, i)| *i).collect();
    let listening: Vec<u64> = listening_tcp().iter().map(|(i, _)| *i).collect();
    let port_inode = listening_tcp()
        .into_iter()
        .find(|(_, port)| *port == addr.port())
        .map(|(inode, _)| inode)
        .expect("the listener in /proc/net/tcp");
    assert!(
        master.contains(&port_inode),
        "the master holds the listener"
    );
    for &pid in &workers {
        let held = socket_fds(pid);
        assert_eq!(
            socket_inode(pid, 3),
            Some(port_inode),
            "worker {pid}'s fd 3 is the master's listener"
        );
        let channel = socket_inode(pid, 4).expect("fd 4 is a socket");
        assert!(
            !listening.contains(&channel),
            "worker {pid}'s fd 4 (the channel) is not a listener"
        );
        for (fd, inode) in held {
            if listening.contains(&inode) {
                assert!(
                    master.contains(&inode),
                    "worker {pid} holds a listening socket of its own at fd {fd}"
                );
            }
        }
    }
    assert!(h.finish().success());
}

/// The `Send-Q` that `ss -ltn` shows for the listener bound to `port` (the backlog).
fn ss_backlog(port: u16) -> Option<u32> {
    let out = Command::new("ss").args(["-ltnH"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // State Recv-Q Send-Q Local Peer
        let local = cols.get(3)?;
        local
            .ends_with(&format!(":{port}"))
            .then(|| cols.get(2)?.parse().ok())
            .flatten()
    })
}

#[test]
fn backlog_reaches_the_listening_socket() {
    let usable = Command::new("ss")
        .args(["-ltnH"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        return common::skip("`ss -ltnH` does not run here, so the backlog cannot be observed");
    }
    let h = Herdsman::start(&["-w", "2", "--backlog", "64", "asgi_app:app"]);
    h.wait_serving();
    let port = h.addr().port();
    // uvicorn listens again on the inherited socket while it starts; after every worker is ready
    // the backlog is whatever they last set, and it must be ours (the default is 2048).
    assert_eq!(
        ss_backlog(port),
        Some(64),
        "Send-Q of the listener on port {port}"
    );
    assert!(h.finish().success());
}

// ---- F15: taken addresses and paths ------------------------------------------------------

/// Starts herdsman on `binds` only, expects exit code 5 before any worker; returns the log text.
fn bind_refused(binds: &[&str]) -> String {
    let mut args = vec!["-w", "1"];
    for bind in binds {
        args.extend(["-b", bind]);
    }
    args.push("asgi_app:app");
    let mut h = Start::new(&args).no_default_bind().spawn();
    let status = h.wait_exit(WAIT);
    assert_eq!(status.code(), Some(BIND_EXIT), "log:\n{}", h.log.text());
    // The error is the master's last line; once it is read, so is everything before it.
    h.wait_record("", |r| {
        r.get("level").and_then(Value::as_str) == Some("ERROR")
    });
    let text = h.log.text();
    let lines = h.log.lines();
    assert!(
        records_with(&lines, "starting workers").is_empty(),
        "no worker is started; log:\n{text}"
    );
    let orphans = children_of(std::process::id() as i32);
    assert!(orphans.is_empty(), "nothing was spawned: {orphans:?}");
    let errors: Vec<String> = h
        .log
        .records()
        .iter()
        .filter(|r| r.get("level").and_then(Value::as_str) == Some("ERROR"))
        .map(|r| message(r).to_string())
        .collect();
    assert_eq!(errors.len(), 1, "one clear error; log:\n{text}");
    assert!(h.finish().code() == Some(BIND_EXIT));
    errors.into_iter().next().unwrap_or_default()
}

#[test]
fn port_in_use_exits_5_and_leaves_the_other_server_alone() {
    let other = TcpListener::bind("127.0.0.1:0").expect("occupy a port");
    let addr: SocketAddr = other.local_addr().expect("addr");
    let error = bind_refused(&[&addr.to_string()]);
    assert!(
        error.contains(&addr.to_string()) && error.contains("already in use"),
        "{error}"
    );
    let _client = TcpStream::connect(addr).expect("the other server still listens");
    other.accept().expect("and accepts");
}

#[test]
fn unix_path_of_a_live_server_is_refused_and_untouched() {
    let dir = temp_dir();
    let path = dir.path().join("app.sock");
    let live = UnixListener::bind(&path).expect("a live server");
    let error = bind_refused(&[&unix_bind(&path)]);
    assert!(error.contains("in use by a running server"), "{error}");
    let _client = UnixStream::connect(&path).expect("the live server still answers");
    live.accept().expect("and accepts");
}

#[test]
fn unix_path_holding_a_regular_file_is_refused_and_untouched() {
    let dir = temp_dir();
    let path = dir.path().join("app.sock");
    std::fs::write(&path, "precious").expect("write a file");
    let error = bind_refused(&[&unix_bind(&path)]);
    assert!(error.contains("is not a socket"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), "precious");
}

#[test]
fn unix_path_holding_a_symlink_is_refused_and_untouched() {
    let dir = temp_dir();
    let target: PathBuf = dir.path().join("target");
    let path = dir.path().join("app.sock");
    std::fs::write(&target, "precious").expect("write the target");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let error = bind_refused(&[&unix_bind(&path)]);
    assert!(error.contains("symbolic link"), "{error}");
    assert_eq!(std::fs::read_link(&path).expect("link kept"), target);
    assert_eq!(
        std::fs::read_to_string(&target).expect("target kept"),
        "precious"
    );
}

#[test]
fn stale_unix_socket_is_replaced_and_served() {
    let dir = temp_dir();
    let path = dir.path().join("app.sock");
    drop(UnixListener::bind(&path).expect("bind, then die"));
    assert!(UnixStream::connect(&path).is_err(), "the file is stale");
    let h = Start::new(&["-w", "1", "-b", &unix_bind(&path), "asgi_app:app"])
        .no_default_bind()
        .spawn();
    let workers = h.wait_serving();
    h.wait_record("removed a stale unix socket", |_| true);
    answered_by_worker(&get_unix(&path, "/").expect("GET / over unix"), &workers);
    let mode = std::fs::symlink_metadata(&path)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    assert!(h.finish().success());
}
