//! Serving real apps: raw ASGI, raw WSGI, FastAPI, Flask and an app factory, each through real
//! Python workers over loopback; N workers are N distinct processes, each a child of the master.
//! The WSGI apps are served by both engines (uvicorn's, through a2wsgi, and the native one).

mod common;

use common::http::{get, start_block};
use common::{both_engines, parent_pid, Engine, Herdsman, Start};

/// Serves `app` on `engine` with one worker, checks that the worker said it runs that engine and
/// that `GET /` answers from a worker pid, stops cleanly.
fn serves(engine: Engine, app: &str, expected_name: &str, extra: &[&str]) {
    let mut args = vec!["--log-level", "debug", "-w", "1", app];
    args.extend_from_slice(extra);
    let h = Start::new(&args).engine(engine).spawn();
    let pids = h.wait_serving();
    // The master logs the hello's `engine` as `Some("uvicorn 0.x.y")`.
    let hello = h.wait_record("worker runtime started", |_| true);
    let named = hello["engine"].as_str().unwrap_or("");
    let expected = format!("\"{}", engine.hello_prefix());
    assert!(named.contains(&expected), "{engine}: {hello}");
    let resp = get(h.addr(), "/").expect("GET /");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["app"], expected_name);
    assert_eq!(vec![resp.pid()], pids, "answered by the ready worker");
    assert!(h.finish().success());
}

both_engines! {
    fn serves_a_raw_asgi_app(engine: Engine) {
        serves(engine, "asgi_app:app", "asgi_app", &[]);
    }
}

/// A gunicorn + UvicornWorker command line, unchanged but for the program's name.
#[test]
fn serves_an_asgi_app_under_gunicorns_uvicorn_worker_flag() {
    serves(
        Engine::Uvicorn,
        "asgi_app:app",
        "asgi_app",
        &["-k", "uvicorn.workers.UvicornWorker"],
    );
}

/// gunicorn's `--pythonpath`: the app's module is found in a directory given there, before the
/// working directory (a module of the same name in tests/apps loses), on both engines.
fn serves_from_the_pythonpath(engine: Engine) {
    let dir = tempfile::tempdir().expect("temp dir");
    let module = "import os\n\
        def app(environ, start_response):\n\
        \x20   body = ('{\"app\": \"from_pythonpath\", \"pid\": %d}' % os.getpid()).encode()\n\
        \x20   start_response('200 OK', [('Content-Type', 'application/json')])\n\
        \x20   return [body]\n";
    // Same name as the test app in tests/apps: the pythonpath copy must win.
    std::fs::write(dir.path().join("wsgi_app.py"), module).expect("write the module");
    let pythonpath = format!("{},/nonexistent/herdsman-test", dir.path().display());
    let h = Start::new(&["-w", "1", "--pythonpath", &pythonpath, "wsgi_app:app"])
        .engine(engine)
        .spawn();
    h.wait_serving();
    let resp = get(h.addr(), "/").expect("GET /");
    assert_eq!(resp.json()["app"], "from_pythonpath", "{engine}: {resp:?}");
    assert!(h.finish().success());
}

both_engines! {
    fn serves_an_app_from_the_pythonpath(engine: Engine) {
        serves_from_the_pythonpath(engine);
    }
}

both_engines! {
    fn serves_a_raw_wsgi_app(engine: Engine) {
        serves(engine, "wsgi_app:app", "wsgi_app", &[]);
    }
}

both_engines! {
    fn serves_a_fastapi_app(engine: Engine) {
        let h = Start::new(&["-w", "1", "fastapi_app:app"]).engine(engine).spawn();
        h.wait_serving();
        let resp = get(h.addr(), "/items/42").expect("GET /items/42");
        assert_eq!(resp.status, 200, "{engine}: {resp:?}");
        assert_eq!(resp.json()["item_id"], 42);
        assert!(h.finish().success());
    }
}

both_engines! {
    /// Starlette: the lifespan's state reaches each request, a StreamingResponse streams, a body
    /// is read whole.
    fn serves_a_starlette_app(engine: Engine) {
        let h = Start::new(&["-w", "1", "starlette_app:app"]).engine(engine).spawn();
        h.wait_serving();
        let resp = get(h.addr(), "/").expect("GET /");
        assert_eq!(resp.status, 200, "{engine}: {resp:?}");
        assert_eq!(resp.json()["greeting"], "hello from lifespan", "{engine}");
        let resp = get(h.addr(), "/stream").expect("GET /stream");
        assert_eq!(resp.body, "chunk 0\nchunk 1\nchunk 2\n", "{engine}");
        let resp = common::http::request(
            common::http::connect(h.addr()).expect("connect"),
            "POST",
            "/echo",
            b"posted body",
        )
        .expect("POST /echo");
        assert_eq!(resp.body, "posted body", "{engine}");
        assert!(h.finish().success());
    }
}

both_engines! {
    fn serves_a_flask_app(engine: Engine) {
        serves(engine, "flask_app:app", "flask_app", &[]);
    }
}

both_engines! {
    fn serves_an_app_factory_both_ways(engine: Engine) {
        serves(engine, "asgi_app:create_app()", "asgi_app", &[]);
        serves(engine, "asgi_app:create_app", "asgi_app", &["--factory"]);
    }
}

#[test]
fn n_workers_are_n_distinct_children_of_the_master_and_all_serve() {
    let h = Herdsman::start(&["-w", "3", "asgi_app:app"]);
    let pids = h.wait_serving();
    assert_eq!(pids.len(), 3, "three ready workers: {pids:?}");
    for &pid in &pids {
        assert_eq!(
            parent_pid(pid),
            Some(h.pid),
            "worker {pid} is the master's child"
        );
    }
    // Block the event loop of one worker at a time: a blocked worker cannot accept, so each
    // next request must be answered by a worker not seen yet.
    let addr = h.addr();
    let mut blocked = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (inflight, pid) = start_block(addr, 3.0).expect("start /block");
        assert!(
            !seen.contains(&pid),
            "pid {pid} answered twice while blocked: {seen:?}"
        );
        seen.push(pid);
        blocked.push(inflight);
    }
    seen.sort_unstable();
    let mut expected = pids.clone();
    expected.sort_unstable();
    assert_eq!(seen, expected, "every worker served a request");
    for inflight in blocked {
        assert_eq!(inflight.finish().expect("block body"), "done\n");
    }
    assert!(h.finish().success());
}
