#![allow(dead_code)]
//! A real nginx (Debian's package, installed by scripts/deps.sh) in front of a herdsman under
//! test, run from a temp dir: its config, pid file, logs and temp paths all live there, so tests
//! run in parallel and nothing of the system's nginx is touched (its service is never started).
//!
//! The proxy is the standard upstream keep-alive set-up (`keepalive 32`, HTTP/1.1, an empty
//! `Connection` header), with one nginx worker. Its access log records the final status *and*
//! every upstream attempt (`$upstream_status`), so a request nginx retried on another upstream
//! connection is visible even when the client got a 200.
//!
//! [`Nginx::stop`] quits it gracefully (SIGQUIT) and reads the logs; dropping an [`Nginx`] that
//! was not stopped SIGKILLs the master and its workers. Either way every nginx process is
//! reaped and checked gone. Include it next to `mod common;` with
//! `#[path = "common/nginx.rs"] mod nginx;`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{assert_gone, children_of, http, signal, wait_pid_exit, WAIT};

/// How nginx reaches herdsman.
pub enum Upstream {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A running nginx master and its worker.
pub struct Nginx {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    workers: Vec<i32>,
}

/// What nginx logged, counted once it has stopped.
#[derive(Debug, Default)]
pub struct Report {
    /// Proxied requests in the access log.
    pub requests: usize,
    /// Final statuses 502 and 504 (what a client behind nginx sees as a failure).
    pub bad_gateway: usize,
    /// Requests nginx sent upstream more than once (several `$upstream_status` entries).
    pub retried: usize,
    /// Error log lines at `error` or worse (`upstream prematurely closed`, `Connection reset`,
    /// `no live upstreams`, ...), the first few of them.
    pub errors: Vec<String>,
    pub error_count: usize,
    /// Error log lines at `warn` (e.g. `upstream server temporarily disabled`).
    pub warnings: usize,
}

/// The nginx executable, or a panic saying how to install it.
pub fn binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!("nginx is not installed: run `bash scripts/deps.sh` (scripts/test.sh does)")
    })
}

fn config(dir: &Path, listen: SocketAddr, upstream: &Upstream) -> String {
    let d = dir.display();
    let server = match upstream {
        Upstream::Tcp(addr) => addr.to_string(),
        Upstream::Unix(path) => format!("unix:{}", path.display()),
    };
    // As root the workers would run as `nobody`, who may not connect to the 0660 unix socket.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    format!(
        r#"daemon off;
master_process on;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$status $upstream_status "$upstream_addr" $request_time "$request"';
    access_log {d}/access.log upstream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream app {{
        server {server};
        keepalive 32;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    )
}

/// A loopback port free a moment ago (nginx binds it next; a lost race is retried).
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr")
}

impl Nginx {
    /// Starts nginx in front of `upstream` and waits until a request through it gets a 200.
    pub fn start(upstream: Upstream) -> Nginx {
        let mut dir = tempfile::tempdir().expect("nginx temp dir");
        for attempt in 1..=5 {
            let addr = free_port();
            let conf = crate::common::write_file(
                dir.path(),
                "nginx.conf",
                &config(dir.path(), addr, &upstream),
            );
            let child = Command::new(binary())
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nginx");
            let mut nginx = Nginx {
                addr,
                dir,
                child: Some(child),
                workers: Vec::new(),
            };
            if nginx.wait_answering() {
                nginx.workers = children_of(nginx.pid()).iter().map(|&(p, _)| p).collect();
                return nginx;
            }
            eprintln!(
                "nginx attempt {attempt} on {addr} exited:\n{}",
                nginx.error_log()
            );
            dir = nginx.into_dir();
        }
        panic!("nginx did not start in 5 attempts");
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("nginx running").id() as i32
    }

    /// Polls a GET through nginx until it answers 200: true, or false if nginx exited (a lost
    /// race for the port). Panics at the deadline.
    fn wait_answering(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(_)) = self.child.as_mut().expect("nginx child").try_wait() {
                self.child = None;
                return false;
            }
            if http::get(self.addr, "/").is_ok_and(|r| r.status == 200) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not answer 200 within {WAIT:?}; error log:\n{}",
                self.error_log()
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    fn into_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Graceful stop (SIGQUIT: nginx finishes its requests), then the logs, counted.
    pub fn stop(mut self) -> Report {
        let pid = self.pid();
        signal(pid, libc::SIGQUIT);
        let exited = wait_pid_exit(pid, Instant::now() + WAIT);
        assert!(exited, "nginx did not quit within {WAIT:?} of SIGQUIT");
        self.kill();
        report(&self.access_log(), &self.error_log())
    }

    /// SIGKILLs the master (if still there) and its workers, reaps them, checks them gone.
    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        let mut pids = self.workers.clone();
        pids.extend(children_of(pid).iter().map(|&(p, _)| p));
        if child.try_wait().ok().flatten().is_none() {
            signal(pid, libc::SIGKILL);
        }
        let _ = child.wait();
        for &worker in &pids {
            signal(worker, libc::SIGKILL);
        }
        // The workers of a killed master were reparented to this (subreaper) process.
        assert_gone(&pids, Duration::from_secs(5));
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.kill();
        } else if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            for &worker in &self.workers {
                signal(worker, libc::SIGKILL);
            }
        }
    }
}

/// Counts the access log (`$status $upstream_status ...`) and the error log.
pub fn report(access: &str, errors: &str) -> Report {
    let mut r = Report::default();
    for line in access.lines() {
        let mut fields = line.splitn(2, ' ');
        let status = fields.next().unwrap_or("");
        let upstream = fields.next().unwrap_or("");
        let upstream = upstream.split(" \"").next().unwrap_or("");
        r.requests += 1;
        if status == "502" || status == "504" {
            r.bad_gateway += 1;
        }
        if upstream.contains(',') {
            r.retried += 1;
        }
    }
    for line in errors.lines() {
        if ["[error]", "[crit]", "[alert]", "[emerg]"]
            .iter()
            .any(|level| line.contains(level))
        {
            r.error_count += 1;
            if r.errors.len() < 10 {
                r.errors.push(line.to_string());
            }
        } else if line.contains("[warn]") {
            r.warnings += 1;
        }
    }
    r
}
