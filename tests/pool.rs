//! The keep-alive drain against a Python `http.client` pool (tests/clients/pool.py: a LIFO pool
//! of persistent HTTPConnection objects, as urllib3 keeps them, with no retry): herdsman reloads
//! ten times while the pool sends requests; nothing may fail, not even the requests a pool would
//! be allowed to retry (a reused connection that died before any response byte). Two shapes:
//! urllib3's (it checks a pooled connection for a close before reusing it; fewer threads than
//! connections) and bare http.client (no check, every connection busy).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use common::{both_engines, Engine, Start, WAIT};
use serde_json::Value;

/// How the pool uses its connections.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// 8 connections, 4 threads, a pooled connection checked for a server close before reuse.
    Urllib3,
    /// 8 connections, 8 threads, no check.
    Bare,
}

/// What the client printed so far: successes, its summary, whether its output ended.
#[derive(Default)]
struct Progress {
    ok: u64,
    summary: Option<Value>,
    ended: bool,
}

/// The pool client, its progress (successes so far) and its final summary.
struct PoolClient {
    child: Child,
    stdin: Option<ChildStdin>,
    state: Arc<(Mutex<Progress>, Condvar)>,
}

impl PoolClient {
    fn start(port: u16, shape: Shape) -> PoolClient {
        let script = common::repo().join("tests/clients/pool.py");
        let (connections, threads, check) = match shape {
            Shape::Urllib3 => (8, 4, true),
            Shape::Bare => (8, 8, false),
        };
        let mut child = Command::new(common::python())
            .arg(script)
            .args((!check).then_some("--no-check"))
            .args(["--port", &port.to_string()])
            .args(["--connections", &connections.to_string()])
            .args(["--threads", &threads.to_string()])
            .args(["--path", "/", "--path", "/slow?s=0.01"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/clients/pool.py");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let state = Arc::new((Mutex::new(Progress::default()), Condvar::new()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let mut guard = shared.0.lock().expect("pool state");
                if let Some(ok) = value["progress"].as_u64() {
                    guard.ok = ok;
                }
                if value.get("summary").is_some() {
                    guard.summary = Some(value["summary"].clone());
                }
                shared.1.notify_all();
            }
            shared.0.lock().expect("pool state").ended = true;
            shared.1.notify_all();
        });
        PoolClient {
            child,
            stdin,
            state,
        }
    }

    /// Waits until `pred` holds on what the client printed, or panics at `WAIT`.
    fn wait<T>(&self, what: &str, pred: impl Fn(&Progress) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let (lock, grew) = &*self.state;
        let mut guard = lock.lock().expect("pool state");
        loop {
            if let Some(found) = pred(&guard) {
                return found;
            }
            let now = Instant::now();
            assert!(
                now < deadline && !guard.ended,
                "pool client: no {what} within {WAIT:?} (ok so far {})",
                guard.ok
            );
            guard = grew
                .wait_timeout(guard, deadline - now)
                .expect("pool state")
                .0;
        }
    }

    fn wait_for_more(&self, n: u64) {
        let target = self.wait("progress", |s| Some(s.ok)) + n;
        self.wait(&format!("{target} successes"), |s| {
            (s.ok >= target).then_some(())
        });
    }

    /// Closes its stdin (the stop signal) and returns the summary.
    fn stop(mut self) -> Value {
        drop(self.stdin.take());
        let summary = self.wait("summary", |s| s.summary.clone());
        let exited = common::wait_pid_exit(self.child.id() as i32, Instant::now() + WAIT);
        assert!(exited, "the pool client did not exit");
        let status = self.child.wait().expect("reap the pool client");
        assert!(status.success(), "pool client: {status}");
        summary
    }
}

impl Drop for PoolClient {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// 10 reloads while the pool keeps sending, to `app` on `engine`.
fn pool_across_reloads(engine: Engine, app: &str, shape: Shape) {
    let h = Start::new(&["-w", "2", "--graceful-timeout", "10s", app])
        .engine(engine)
        .spawn();
    h.wait_serving();
    let pool = PoolClient::start(h.addr().port(), shape);
    pool.wait_for_more(50);
    for i in 1..=10 {
        h.signal(libc::SIGHUP);
        h.wait_records("reload complete", i);
        pool.wait_for_more(20);
    }
    let started = Instant::now();
    let summary = pool.stop();
    eprintln!(
        "{app} on {engine}: {shape:?} http.client pool across 10 HUP: {summary} (stopped in {:?})",
        started.elapsed()
    );
    let count = |key: &str| summary[key].as_u64().unwrap_or(u64::MAX);
    assert!(count("ok") > 0, "no request succeeded");
    assert_eq!(
        count("failed"),
        0,
        "{app} on {engine}: failed requests: {summary}"
    );
    assert_eq!(
        count("failed_reused_before_response"),
        0,
        "{app} on {engine}: {summary}"
    );
    assert!(h.finish().success());
}

#[test]
fn asgi_urllib3_style_pool_loses_nothing_across_reloads() {
    pool_across_reloads(Engine::Uvicorn, "asgi_app:app", Shape::Urllib3);
}

both_engines! {
    fn wsgi_urllib3_style_pool_loses_nothing_across_reloads(engine: Engine) {
        pool_across_reloads(engine, "wsgi_app:app", Shape::Urllib3);
    }
}

#[test]
fn asgi_bare_http_client_pool_loses_nothing_across_reloads() {
    pool_across_reloads(Engine::Uvicorn, "asgi_app:app", Shape::Bare);
}

both_engines! {
    fn wsgi_bare_http_client_pool_loses_nothing_across_reloads(engine: Engine) {
        pool_across_reloads(engine, "wsgi_app:app", Shape::Bare);
    }
}
