//! The TLS keys into one `Tls` (config/tls.rs judges the values and the files): `certfile` and
//! `keyfile` come together, the other TLS keys need them, `cert_reqs` 1 or 2 needs `ca_certs`,
//! and the native engine needs `ciphers` as suite names. The files are loaded only when the
//! keys themselves are fine, so one mistake is reported once.

use super::Validator;
use crate::config::error::Invalid;
use crate::config::keys::Key;
use crate::config::tls;
use crate::config::{CertReqs, Engine, Tls, TlsVersion};

/// The keys that only mean something with `certfile`.
const OPTIONS: [Key; 4] = [Key::CaCerts, Key::CertReqs, Key::Ciphers, Key::SslVersion];

impl Validator<'_> {
    pub(super) fn tls(&mut self, engine: Engine) -> Option<Tls> {
        let certfile = self.path(Key::Certfile, "\"/etc/ssl/certs/example.pem\"");
        let keyfile = self.path(Key::Keyfile, "\"/etc/ssl/private/example.key\"");
        let ca_certs = self.path(Key::CaCerts, "\"/etc/ssl/certs/clients-ca.pem\"");
        let cert_reqs = self.value(Key::CertReqs, CertReqs::None, tls::cert_reqs);
        let ciphers = self.value(Key::Ciphers, None, |raw| tls::ciphers(raw).map(Some));
        let min_version = self.value(Key::SslVersion, TlsVersion::Tls12, tls::ssl_version);
        let (certfile, keyfile) = match (certfile, keyfile) {
            (Some(certfile), Some(keyfile)) => (certfile, keyfile),
            (None, None) => return self.options_without_certfile(),
            (Some(_), None) => return self.missing_pair(Key::Certfile, Key::Keyfile),
            (None, Some(_)) => return self.missing_pair(Key::Keyfile, Key::Certfile),
        };
        let before = self.errors.len();
        if cert_reqs != CertReqs::None && ca_certs.is_none() {
            let invalid = Invalid::advice(
                format!(
                    "is {}, but no ca_certs says which CA client certificates must come from",
                    cert_reqs.as_int()
                ),
                "set ca_certs to the PEM file of that CA, or set cert_reqs to 0",
            );
            self.reject_key(Key::CertReqs, invalid);
        }
        // The uvicorn engine hands a connection to the loop's TLS transport as it accepts it,
        // before a PROXY header could be read off it (the native engine reads the header, then
        // runs the handshake).
        let proxied = matches!(
            self.layer.get(Key::ProxyProtocol).map(|given| &given.value),
            Some(crate::config::layer::Raw::Bool(true))
        );
        if proxied && engine == Engine::Uvicorn {
            let invalid = Invalid::advice(
                "is on with TLS (certfile), which the uvicorn engine does not serve together",
                "serve the app with engine = \"native\" (WSGI apps), or let the proxy terminate TLS",
            );
            self.reject_key(Key::ProxyProtocol, invalid);
        }
        if let Some(problem) = ciphers.as_ref().filter(|_| engine == Engine::Native) {
            if let Some(invalid) = tls::native_ciphers_problem(problem) {
                self.reject_key(Key::Ciphers, invalid);
            }
        }
        // Absolute: the workers may chdir before the engine reads them.
        let absolute = |path: std::path::PathBuf| std::path::absolute(&path).unwrap_or(path);
        let tls = Tls {
            certfile: absolute(certfile),
            keyfile: absolute(keyfile),
            ca_certs: ca_certs.map(absolute),
            cert_reqs,
            ciphers,
            min_version,
        };
        if self.errors.len() == before {
            for problem in tls::check_files(&tls) {
                self.reject_key(problem.key, problem.invalid());
            }
        }
        Some(tls)
    }

    /// `given` without `missing`: gunicorn would fail at the first connection; refuse now.
    fn missing_pair(&mut self, given: Key, missing: Key) -> Option<Tls> {
        let invalid = Invalid::advice(
            format!("is set but `{}` is not: TLS needs both", missing.name()),
            format!(
                "set {} too (the certificate and its private key), or remove {}",
                missing.flag(),
                given.flag()
            ),
        );
        self.reject_key(given, invalid);
        None
    }

    /// A TLS option set while TLS is off would do nothing: someone meant TLS to be on.
    fn options_without_certfile(&mut self) -> Option<Tls> {
        for key in OPTIONS {
            if self.layer.get(key).is_some() {
                let invalid = Invalid::advice(
                    "has no effect without certfile and keyfile (TLS is off)",
                    format!(
                        "set certfile and keyfile to serve TLS, or remove {}",
                        key.flag()
                    ),
                );
                self.reject_key(key, invalid);
            }
        }
        None
    }
}
