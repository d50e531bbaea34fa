//! The keep-alive drain behind real nginx (Debian's package, scripts/deps.sh): nginx with
//! `upstream { keepalive 32; }` in front of herdsman, over TCP and over a unix socket, ASGI and
//! WSGI, while herdsman reloads, upgrades, scales and recycles its workers under keep-alive load.
//!
//! nginx hides some losses: a request that fails on a cached upstream connection before any
//! response byte is sent again on another one (and logged at `error` level as "upstream
//! prematurely closed" or "Connection reset"); only when that fails too does the client get a
//! 502. So each test asserts that the clients saw no failure *and* that nginx neither answered
//! 502/504, nor retried a request upstream, nor logged an error.

mod common;
#[path = "common/load.rs"]
mod load;
#[path = "common/nginx.rs"]
mod nginx;

use std::path::Path;

use common::{both_engines, Engine, Herdsman, Start, WAIT};
use load::{Load, Stats};
use nginx::{Nginx, Report, Upstream};

/// How herdsman listens, and so how nginx reaches it.
#[derive(Clone, Copy, Debug)]
enum Bind {
    Tcp,
    Unix,
}

/// herdsman (2 workers on `engine`, `args` added) and nginx in front of it, both answering.
fn start_behind_nginx(
    engine: Engine,
    bind: Bind,
    scratch: &Path,
    args: &[&str],
) -> (Herdsman, Nginx) {
    let socket = scratch.join("app.sock");
    let unix_bind = format!("unix:{}", socket.display());
    let mut argv = vec!["-w", "2", "--graceful-timeout", "10s"];
    if let Bind::Unix = bind {
        argv.extend(["-b", unix_bind.as_str()]);
    }
    argv.extend(args);
    let mut start = Start::new(&argv)
        .engine(engine)
        .binary(common::installed(scratch));
    if let Bind::Unix = bind {
        start = start.no_default_bind();
    }
    let h = start.spawn();
    h.wait_serving();
    let upstream = match bind {
        Bind::Tcp => Upstream::Tcp(h.addr()),
        Bind::Unix => Upstream::Unix(socket),
    };
    (h, Nginx::start(upstream))
}

fn assert_clean(stats: &Stats, report: &Report, what: &str) {
    eprintln!(
        "{what}: clients ok {} failed {} retried {}; nginx: {} requests, {} 502/504, {} sent \
         upstream twice, {} error lines, {} warnings",
        stats.ok,
        stats.failed,
        stats.retried,
        report.requests,
        report.bad_gateway,
        report.retried,
        report.error_count,
        report.warnings
    );
    for line in &report.errors {
        eprintln!("  nginx: {line}");
    }
    assert!(stats.ok > 0, "{what}: no request succeeded");
    assert_eq!(stats.failed, 0, "{what}: failed: {:?}", stats.errors);
    assert_eq!(
        stats.retried, 0,
        "{what}: requests died on a kept connection"
    );
    assert_eq!(report.bad_gateway, 0, "{what}: nginx answered 502/504");
    assert_eq!(
        report.retried, 0,
        "{what}: nginx sent requests upstream twice"
    );
    assert_eq!(report.error_count, 0, "{what}: nginx logged errors");
}

/// 10 reloads, 3 binary upgrades, a scale-down and a scale-up, under keep-alive load through
/// nginx (and one fresh-connection client beside it).
fn replacements_behind_nginx(engine: Engine, app: &str, bind: Bind) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let (h, nginx) = start_behind_nginx(engine, bind, scratch.path(), &[app]);
    let load = Load::start(nginx.addr, 1, 7, &["/", "/slow?s=0.01"]);
    load.wait_for_more(50, WAIT);
    load::replacements(&h, &load);
    let stats = load.stop();
    let report = nginx.stop();
    assert_clean(
        &stats,
        &report,
        &format!("{app} on {engine} over {bind:?} behind nginx: 10 HUP, 3 USR2, TTOU, TTIN"),
    );
    assert!(h.finish().success());
}

/// max-requests recycling at full keep-alive load through nginx: 12 workers recycled.
fn recycling_behind_nginx(engine: Engine, app: &str, bind: Bind) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let args = ["--max-requests", "300", "--max-requests-jitter", "50", app];
    let (h, nginx) = start_behind_nginx(engine, bind, scratch.path(), &args);
    let load = Load::start(nginx.addr, 0, 8, &["/"]);
    h.wait_records("recycling worker", 12);
    let stats = load.stop();
    let report = nginx.stop();
    assert_clean(
        &stats,
        &report,
        &format!("{app} on {engine} over {bind:?} behind nginx: 12 max-requests recyclings"),
    );
    assert!(h.finish().success());
}

#[test]
fn asgi_over_tcp_behind_nginx_loses_nothing_across_reloads_upgrades_and_scaling() {
    replacements_behind_nginx(Engine::Uvicorn, "asgi_app:app", Bind::Tcp);
}

both_engines! {
    fn wsgi_over_tcp_behind_nginx_loses_nothing_across_reloads_upgrades_and_scaling(engine: Engine) {
        replacements_behind_nginx(engine, "wsgi_app:app", Bind::Tcp);
    }
}

#[test]
fn asgi_over_unix_behind_nginx_loses_nothing_across_reloads_upgrades_and_scaling() {
    replacements_behind_nginx(Engine::Uvicorn, "asgi_app:app", Bind::Unix);
}

both_engines! {
    fn wsgi_over_unix_behind_nginx_loses_nothing_across_reloads_upgrades_and_scaling(engine: Engine) {
        replacements_behind_nginx(engine, "wsgi_app:app", Bind::Unix);
    }
}

#[test]
fn asgi_over_tcp_behind_nginx_loses_nothing_while_max_requests_recycles() {
    recycling_behind_nginx(Engine::Uvicorn, "asgi_app:app", Bind::Tcp);
}

both_engines! {
    fn wsgi_over_tcp_behind_nginx_loses_nothing_while_max_requests_recycles(engine: Engine) {
        recycling_behind_nginx(engine, "wsgi_app:app", Bind::Tcp);
    }
}

#[test]
fn asgi_over_unix_behind_nginx_loses_nothing_while_max_requests_recycles() {
    recycling_behind_nginx(Engine::Uvicorn, "asgi_app:app", Bind::Unix);
}

both_engines! {
    fn wsgi_over_unix_behind_nginx_loses_nothing_while_max_requests_recycles(engine: Engine) {
        recycling_behind_nginx(engine, "wsgi_app:app", Bind::Unix);
    }
}
