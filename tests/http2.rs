//! HTTP/2 in the native engine (docs/engine.md, HTTP/2): h2c with prior knowledge and ALPN `h2`
//! over TLS, to WSGI and ASGI apps, as the `http` setting allows; 100 streams at once on one
//! connection; the request limits; and the drain: GOAWAY, open streams finish, and a client that
//! follows RFC 9113 loses no request across reloads and scaling. The uvicorn engine has no
//! HTTP/2 (its refusal of the settings is tested with the config: src/config/tests/http.rs), so
//! these tests run the native engine only.
//!
//! The clients are curl (its HTTP2 feature), h2load (Debian's nghttp2-client, installed by
//! scripts/deps.sh) and tests/clients/h2_clients.py (python-h2, in the test venv).

mod common;
#[path = "common/script_client.rs"]
mod script_client;

use std::process::{Command, Output, Stdio};

use common::tls::Certs;
use common::{Engine, Herdsman, Start};
use script_client::ScriptClient;
use serde_json::Value;

/// A program the tests need, or a panic saying how to install it.
fn tool(name: &str) -> &str {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{name} is not installed: run `bash scripts/deps.sh` (scripts/test.sh does)"
    );
    name
}

fn start(args: &[&str]) -> Herdsman {
    let mut all = vec!["-w", "1"];
    all.extend_from_slice(args);
    let h = Start::new(&all).engine(Engine::Native).spawn();
    h.wait_serving();
    h
}

/// curl's exit code, its output and the HTTP version it spoke (`-w %{http_version}` after a
/// newline: "2", "1.1", or "0" when no response came).
fn curl(args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(tool("curl"))
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_version}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, version) = text.rsplit_once('\n').unwrap_or(("", ""));
    (
        out.status.code().unwrap_or(-1),
        body.to_string(),
        version.to_string(),
    )
}

fn h2c_json(h: &Herdsman, path: &str) -> Value {
    let url = format!("http://{}{path}", h.addr());
    let (code, body, version) = curl(&["--http2-prior-knowledge", &url]);
    assert_eq!((code, version.as_str()), (0, "2"), "h2c GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

#[test]
fn h2c_with_prior_knowledge_serves_wsgi_with_host_from_authority_and_logs_http_2_0() {
    let h = start(&["wsgi_conformance:app"]);
    let environ = h2c_json(&h, "/?x=1");
    let port = h.addr().port().to_string();
    assert_eq!(environ["SERVER_PROTOCOL"], "HTTP/2", "{environ}");
    assert_eq!(
        environ["HTTP_HOST"],
        h.addr().to_string(),
        ":authority as Host"
    );
    assert_eq!(environ["SERVER_NAME"], "127.0.0.1", "{environ}");
    assert_eq!(environ["SERVER_PORT"], port.as_str(), "{environ}");
    assert_eq!(environ["QUERY_STRING"], "x=1", "{environ}");
    h.wait_line("\"GET /?x=1 HTTP/2.0\" 200");
    // The same port still speaks HTTP/1.1 (`http = auto`).
    let url = format!("http://{}/", h.addr());
    let (code, body, version) = curl(&["--http1.1", &url]);
    assert_eq!((code, version.as_str()), (0, "1.1"), "{body}");
    assert!(body.contains("\"SERVER_PROTOCOL\": \"HTTP/1.1\""), "{body}");
    assert!(h.finish().success());
}

#[test]
fn h2c_with_prior_knowledge_serves_asgi_and_fastapi_apps() {
    let h = start(&["asgi_conformance:app"]);
    let answer = h2c_json(&h, "/scope");
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["scope"]["http_version"], "2", "{answer}");
    let headers = answer["scope"]["headers"].as_array().expect("headers");
    let host = headers.iter().find(|pair| pair[0] == "host");
    assert_eq!(
        host.map(|pair| pair[1].clone()),
        Some(Value::from(h.addr().to_string())),
        ":authority as the host header: {answer}"
    );
    assert!(h.finish().success());

    let h = start(&["fastapi_app:app"]);
    let answer = h2c_json(&h, "/items/7");
    assert_eq!(answer["name"], "item 7", "{answer}");
    assert!(h.finish().success());
}

#[test]
fn http_1_refuses_h2c_and_http_2_refuses_http_1() {
    let h = start(&["--http", "1", "wsgi_app:app"]);
    let url = format!("http://{}/", h.addr());
    let (code, _, version) = curl(&["--http2-prior-knowledge", &url]);
    assert!(
        code != 0 && version != "2",
        "h2c on --http 1: curl {code}, {version}"
    );
    assert_eq!(curl(&["--http1.1", &url]).2, "1.1");
    assert!(h.finish().success());

    let h = start(&["--http", "2", "wsgi_app:app"]);
    let url = format!("http://{}/", h.addr());
    let (code, body, version) = curl(&["--http1.1", &url]);
    assert!(code != 0, "HTTP/1.1 on --http 2: {version} {body}");
    assert_eq!(curl(&["--http2-prior-knowledge", &url]).2, "2");
    assert!(h.finish().success());
}

/// The HTTP version curl gets over TLS from a master started with `http` (None: the default),
/// asking with `flag` (`--http2` offers h2 and http/1.1 by ALPN, `--http1.1` only http/1.1).
fn over_tls(certs: &Certs, http: Option<&str>, flag: &str) -> (i32, String) {
    let mut args: Vec<String> = vec!["--no-access-log".into()];
    args.extend(certs.args());
    if let Some(http) = http {
        args.extend(["--http".into(), http.into()]);
    }
    args.push("wsgi_app:app".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let h = start(&args);
    let url = format!("https://localhost:{}/", h.addr().port());
    let ca = certs.ca.display().to_string();
    let (code, body, version) = curl(&["--cacert", &ca, flag, &url]);
    if code == 0 {
        assert!(body.contains("\"app\": \"wsgi_app\""), "{body}");
    }
    assert!(h.finish().success());
    (code, version)
}

#[test]
fn alpn_over_tls_picks_h2_or_http_1_1_as_the_http_setting_allows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Certs::new(dir.path());
    assert_eq!(
        over_tls(&certs, None, "--http2"),
        (0, "2".into()),
        "auto, h2 offered"
    );
    assert_eq!(
        over_tls(&certs, None, "--http1.1"),
        (0, "1.1".into()),
        "auto, http/1.1 only"
    );
    assert_eq!(
        over_tls(&certs, Some("1"), "--http2"),
        (0, "1.1".into()),
        "--http 1"
    );
    assert_eq!(
        over_tls(&certs, Some("2"), "--http2"),
        (0, "2".into()),
        "--http 2"
    );
    let (code, version) = over_tls(&certs, Some("2"), "--http1.1");
    assert!(
        code != 0,
        "--http 2 served a client offering http/1.1 only: {version}"
    );
}

/// h2load's `requests:` and `status codes:` lines, and the whole output for messages.
fn h2load(args: &[&str]) -> (String, String, String) {
    let out = Command::new(tool("h2load"))
        .args(args)
        .output()
        .expect("run h2load");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or("")
            .to_string()
    };
    (line("requests:"), line("status codes:"), text)
}

/// `/together?n=100` answers 200 only once 100 calls are in the app at the same time: 100
/// streams on one connection reach 100 threads at once.
#[test]
fn a_hundred_streams_on_one_connection_run_at_once() {
    let h = start(&["--threads", "100", "--no-access-log", "wsgi_app:app"]);
    let url = format!("http://{}/together?n=100", h.addr());
    let (requests, statuses, text) = h2load(&["-n", "100", "-c", "1", "-m", "100", &url]);
    assert!(
        requests.contains("100 succeeded, 0 failed"),
        "{requests}\n{text}"
    );
    assert!(
        statuses.starts_with("status codes: 100 2xx"),
        "{statuses}\n{text}"
    );
    assert!(h.finish().success());
}

/// One request from tests/clients/h2_clients.py with `headers` extra fields of `size` bytes.
fn once(h: &Herdsman, headers: usize, size: usize) -> Value {
    let out = Command::new(common::python())
        .arg(common::repo().join("tests/clients/h2_clients.py"))
        .args(["--port", &h.addr().port().to_string(), "--once"])
        .args(["--headers", &headers.to_string()])
        .args(["--header-size", &size.to_string()])
        .output()
        .expect("run h2_clients.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("its JSON line")
}

#[test]
fn http2_requests_get_431_past_the_request_limits_and_the_header_list_size() {
    let h = start(&[
        "--limit-request-fields",
        "20",
        "--http2-max-header-list-size",
        "32KiB",
        "wsgi_app:app",
    ]);
    // A field past limit_request_field_size (8190), as HTTP/1.1.
    let url = format!("http://{}/", h.addr());
    let big = format!("X-Big: {}", "a".repeat(9000));
    let args = [
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "\n%{http_code}",
        "-H",
    ];
    let (code, _, status) = curl(&[&args[..], &[big.as_str(), url.as_str()]].concat());
    assert_eq!((code, status.as_str()), (0, "431"), "one field too large");
    // More fields than limit_request_fields.
    assert_eq!(once(&h, 25, 10)["status"], 431, "too many fields");
    // Each field fits, the whole head does not fit the header list size (32 KiB).
    assert_eq!(
        once(&h, 10, 5000)["status"],
        431,
        "a head past the list size"
    );
    // The same connection setup is served as usual below the limits.
    assert_eq!(once(&h, 5, 5000)["status"], 200, "below every limit");
    assert!(h.finish().success());
}

/// 5 reloads, a scale-down and a scale-up while 4 HTTP/2 connections keep 10 streams each in
/// flight to `app`: every request succeeds, the connections of retiring workers got GOAWAY, and
/// those workers exit well before the graceful timeout.
fn h2_clients_across_reloads_and_scaling(app: &str) {
    let h = Start::new(&[
        "-w",
        "2",
        "--graceful-timeout",
        "10s",
        "--no-access-log",
        app,
    ])
    .engine(Engine::Native)
    .spawn();
    h.wait_serving();
    let port = h.addr().port().to_string();
    let args = [
        "--port",
        &port,
        "--connections",
        "4",
        "--streams",
        "10",
        "--path",
        "/",
        "--path",
        "/slow?s=0.01",
    ];
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let clients = ScriptClient::start("h2_clients.py", &args);
    clients.wait_for_more(50);
    for i in 1..=5 {
        h.signal(libc::SIGHUP);
        h.wait_records("reload complete", i);
        clients.wait_for_more(20);
    }
    for (n, sig) in [(1, libc::SIGTTOU), (2, libc::SIGTTIN)] {
        h.signal(sig);
        h.wait_records("target worker count changed", n);
        clients.wait_for_more(20);
    }
    h.wait_records("worker ready", 2 + 5 * 2 + 1);
    // Every retired worker has drained and exited while the clients kept sending (without the
    // GOAWAY their busy connections would hold them until the graceful timeout's quick stop).
    h.wait_records("worker exited", 5 * 2 + 1);
    clients.wait_for_more(20);
    let summary = clients.stop();
    eprintln!("{app}: HTTP/2 clients across 5 HUP, TTOU, TTIN: {summary}");
    let count = |key: &str| summary[key].as_u64().unwrap_or(u64::MAX);
    assert!(count("ok") > 0, "no request succeeded: {summary}");
    assert_eq!(count("failed"), 0, "{app}: failed requests: {summary}");
    assert!(count("goaways") > 0, "no connection got GOAWAY: {summary}");
    assert!(h.finish().success());
}

#[test]
fn wsgi_http2_clients_lose_nothing_across_reloads_and_scaling() {
    h2_clients_across_reloads_and_scaling("wsgi_app:app");
}

#[test]
fn asgi_http2_clients_lose_nothing_across_reloads_and_scaling() {
    h2_clients_across_reloads_and_scaling("asgi_app:app");
}
