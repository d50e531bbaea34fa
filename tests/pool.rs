//! The keep-alive drain against a Python `http.client` pool (tests/clients/pool.py: a LIFO pool
//! of persistent HTTPConnection objects, as urllib3 keeps them, with no retry): herdsman reloads
//! ten times while the pool sends requests; nothing may fail, not even the requests a pool would
//! be allowed to retry (a reused connection that died before any response byte). Two shapes:
//! urllib3's (it checks a pooled connection for a close before reusing it; fewer threads than
//! connections) and bare http.client (no check, every connection busy).

mod common;
#[path = "common/script_client.rs"]
mod script_client;

use std::time::Instant;

use common::{both_engines, Engine, Start};
use script_client::ScriptClient;

/// How the pool uses its connections.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// 8 connections, 4 threads, a pooled connection checked for a server close before reuse.
    Urllib3,
    /// 8 connections, 8 threads, no check.
    Bare,
}

/// tests/clients/pool.py in `shape`, sending to `port` until stopped.
fn pool_client(port: u16, shape: Shape) -> ScriptClient {
    let (connections, threads, check) = match shape {
        Shape::Urllib3 => (8, 4, true),
        Shape::Bare => (8, 8, false),
    };
    let (port, connections, threads) = (
        port.to_string(),
        connections.to_string(),
        threads.to_string(),
    );
    let mut args = vec![
        "--port",
        &port,
        "--connections",
        &connections,
        "--threads",
        &threads,
    ];
    args.extend(["--path", "/", "--path", "/slow?s=0.01"]);
    if !check {
        args.push("--no-check");
    }
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    ScriptClient::start("pool.py", &args)
}

/// 10 reloads while the pool keeps sending, to `app` on `engine`.
fn pool_across_reloads(engine: Engine, app: &str, shape: Shape) {
    let h = Start::new(&["-w", "2", "--graceful-timeout", "10s", app])
        .engine(engine)
        .spawn();
    h.wait_serving();
    let pool = pool_client(h.addr().port(), shape);
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
