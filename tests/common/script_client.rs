//! A load client from tests/clients run as a child process until the test stops it: it prints
//! JSON lines, `{"progress": N}` (successes so far) as it goes and `{"summary": {...}}` once its
//! stdin is closed, then exits (tests/clients/pool.py, tests/clients/h2_clients.py).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use serde_json::Value;

use crate::common::WAIT;

/// What the client printed so far: successes, its summary, whether its output ended.
#[derive(Default)]
struct Progress {
    ok: u64,
    summary: Option<Value>,
    ended: bool,
}

pub struct ScriptClient {
    /// The script's file name, for messages.
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    state: Arc<(Mutex<Progress>, Condvar)>,
}

impl ScriptClient {
    /// Starts `tests/clients/<script>` with `args` on the tests' Python.
    pub fn start(script: &str, args: &[String]) -> ScriptClient {
        let mut child = Command::new(crate::common::python())
            .arg(crate::common::repo().join("tests/clients").join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start tests/clients/{script}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let state = Arc::new((Mutex::new(Progress::default()), Condvar::new()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let mut guard = shared.0.lock().expect("client state");
                if let Some(ok) = value["progress"].as_u64() {
                    guard.ok = ok;
                }
                if value.get("summary").is_some() {
                    guard.summary = Some(value["summary"].clone());
                }
                shared.1.notify_all();
            }
            shared.0.lock().expect("client state").ended = true;
            shared.1.notify_all();
        });
        ScriptClient {
            name: script.to_string(),
            child,
            stdin,
            state,
        }
    }

    /// Waits until `pred` holds on what the client printed, or panics at `WAIT` (or when the
    /// client's output ends first).
    fn wait<T>(&self, what: &str, pred: impl Fn(&Progress) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let (lock, grew) = &*self.state;
        let mut guard = lock.lock().expect("client state");
        loop {
            if let Some(found) = pred(&guard) {
                return found;
            }
            let now = Instant::now();
            assert!(
                now < deadline && !guard.ended,
                "{}: no {what} within {WAIT:?} (ok so far {})",
                self.name,
                guard.ok
            );
            guard = grew
                .wait_timeout(guard, deadline - now)
                .expect("client state")
                .0;
        }
    }

    /// Waits for `n` more successes than the client has reported so far.
    pub fn wait_for_more(&self, n: u64) {
        let target = self.wait("progress", |s| Some(s.ok)) + n;
        self.wait(&format!("{target} successes"), |s| {
            (s.ok >= target).then_some(())
        });
    }

    /// Closes its stdin (the stop signal) and returns the summary, once the client has exited
    /// with success.
    pub fn stop(mut self) -> Value {
        drop(self.stdin.take());
        let summary = self.wait("summary", |s| s.summary.clone());
        let exited = crate::common::wait_pid_exit(self.child.id() as i32, Instant::now() + WAIT);
        assert!(exited, "{} did not exit", self.name);
        let status = self.child.wait().expect("reap the client");
        assert!(status.success(), "{}: {status}", self.name);
        summary
    }
}

impl Drop for ScriptClient {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
