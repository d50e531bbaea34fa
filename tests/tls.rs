//! TLS served by the workers (gunicorn's --certfile, --keyfile, --ca-certs, --cert-reqs), on
//! both engines, with certificates made by the test (tests/common/tls.rs): HTTPS answered with
//! scheme https by a WSGI app (both engines) and an ASGI app (uvicorn), keep-alive reuse over
//! TLS, close_notify when the graceful stop closes an idle connection, required client
//! certificates, and the start refused, naming the file, for a missing certificate, a key that
//! does not match it, or a certificate without its key.

mod common;

use std::io::Read;

use common::tls::{self, Certs};
use common::{both_engines, run_to_end, Engine, Start};

/// One worker of `engine` serving `app` over TLS with `extra` arguments.
fn start(engine: Engine, certs: &Certs, extra: &[&str], app: &str) -> common::Herdsman {
    let mut args: Vec<String> = vec!["-w".into(), "1".into(), "--no-access-log".into()];
    args.extend(certs.args());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(app.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let h = Start::new(&args).engine(engine).spawn();
    h.wait_serving();
    h
}

both_engines! {
    fn a_wsgi_app_is_served_over_https_with_keep_alive_and_close_notify(engine: Engine) {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::new(dir.path());
        let h = start(engine, &certs, &[], "wsgi_app:app");
        let response = tls::get(h.addr(), "/scheme", certs.client(false)).expect("HTTPS GET");
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.json()["scheme"], "https", "{response:?}");
        // Plain HTTP on the TLS port is not served.
        assert!(common::http::get(h.addr(), "/").map(|r| r.status != 200).unwrap_or(true));

        let responses = tls::get_kept_alive(h.addr(), "/", 3, certs.client(false))
            .expect("three requests on one TLS connection");
        assert!(responses.iter().all(|r| r.status == 200), "{responses:?}");
        // An idle kept-alive connection is closed by the graceful stop with close_notify: a
        // clean end of stream (rustls reports a bare TCP close as UnexpectedEof).
        let mut idle = tls::connect(h.addr(), certs.client(false)).unwrap();
        std::io::Write::write_all(&mut idle, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut reader = std::io::BufReader::new(idle);
        assert_eq!(common::http::read_response(&mut reader).unwrap().status, 200);
        assert!(h.finish().success());
        let mut rest = Vec::new();
        let end = reader.read_to_end(&mut rest);
        assert!(end.is_ok(), "no close_notify: {end:?}");
    }

    fn a_required_client_certificate_refuses_clients_without_one(engine: Engine) {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::new(dir.path());
        let ca = certs.ca.display().to_string();
        let h = start(engine, &certs, &["--ca-certs", &ca, "--cert-reqs", "2"], "wsgi_app:app");
        let refused = tls::get(h.addr(), "/", certs.client(false));
        assert!(refused.is_err(), "served without a client certificate: {refused:?}");
        let served = tls::get(h.addr(), "/scheme", certs.client(true)).expect("with a certificate");
        assert_eq!(served.status, 200, "{served:?}");
        // The refused handshake cost nothing: the same worker still serves.
        assert_eq!(h.live_worker_pids(), vec![served.pid()]);
        assert!(h.finish().success());
    }
}

both_engines! {
    fn an_asgi_app_sees_scheme_https(engine: Engine) {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::new(dir.path());
        let h = start(engine, &certs, &[], "asgi_app:app");
        let response = tls::get(h.addr(), "/scheme", certs.client(false)).expect("HTTPS GET");
        assert_eq!(response.json()["scheme"], "https", "{engine}: {response:?}");
        assert!(h.finish().success());
    }
}

/// `herdsman ARGS` and `herdsman check ARGS` both exit 2 with every one of `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    for check in [false, true] {
        let argv: Vec<&str> = if check {
            [&["check"], args].concat()
        } else {
            args.to_vec()
        };
        let (code, _, stderr) = run_to_end(&argv, &[]);
        assert_eq!(code, Some(2), "{argv:?}: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{argv:?}: {needle:?} missing from:\n{stderr}"
            );
        }
    }
}

#[test]
fn bad_tls_files_fail_the_start_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(dir.path());
    let (cert, key) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    let other = certs.other_key.display().to_string();
    let missing = dir.path().join("missing.pem").display().to_string();
    refused(
        &["--certfile", &missing, "--keyfile", &key, "wsgi_app:app"],
        &[
            "--certfile",
            "missing.pem: does not exist",
            "fix: fix the path",
        ],
    );
    refused(
        &["--certfile", &cert, "--keyfile", &other, "wsgi_app:app"],
        &[
            "--keyfile",
            "other.key: is not the key of the certificate in",
            "fix: give the key",
        ],
    );
    refused(
        &["--certfile", &cert, "wsgi_app:app"],
        &[
            "`certfile` is set but `keyfile` is not",
            "fix: set --keyfile too",
        ],
    );
    refused(
        &[
            "--certfile",
            &cert,
            "--keyfile",
            &key,
            "--cert-reqs",
            "2",
            "wsgi_app:app",
        ],
        &["`cert_reqs` is 2, but no ca_certs", "fix: set ca_certs"],
    );
    refused(
        &[
            "--certfile",
            &cert,
            "--keyfile",
            &key,
            "--ssl-version",
            "TLSv1",
            "wsgi_app:app",
        ],
        &["older than TLS 1.2", "TLSv1_3"],
    );
    refused(
        &[
            "--engine",
            "native",
            "--certfile",
            &cert,
            "--keyfile",
            &key,
            "--ciphers",
            "HIGH:!aNULL",
            "wsgi_app:app",
        ],
        &["`ciphers` names HIGH, !aNULL that the native engine (rustls) does not have"],
    );
}
