//! TLS settings, gunicorn's names and meaning: the values of `cert_reqs`, `ssl_version` and
//! `ciphers`, and [`check_files`], which loads `certfile`, `keyfile` and `ca_certs` with rustls
//! (the library the native engine serves with, ring provider) so that a configuration that loads
//! is one whose files both engines can serve: every certificate parses, the key is not encrypted
//! and matches the certificate, and the CA file holds usable certificates. `load` runs it, so
//! `herdsman check`, the start and every reload judge the files alike; the engine reads them
//! again when each worker starts (a reload picks up renewed certificates).
//!
//! Invariants: nothing here panics on any file content; every problem names the key, the file
//! and a fix; a problem with one file does not hide a problem with another.

use std::fmt;
use std::io;
use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::Invalid;
use super::keys::Key;
use super::layer::Raw;
use crate::config::{CertReqs, Ciphers, Tls, TlsVersion};

/// The suites of rustls's ring provider, by IANA name, with OpenSSL's name where it differs.
/// TLS 1.3 suites have one name in both.
pub const SUITES: [(&str, Option<&str>); 9] = [
    ("TLS_AES_256_GCM_SHA384", None),
    ("TLS_AES_128_GCM_SHA256", None),
    ("TLS_CHACHA20_POLY1305_SHA256", None),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Some("ECDHE-ECDSA-AES256-GCM-SHA384"),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Some("ECDHE-ECDSA-AES128-GCM-SHA256"),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Some("ECDHE-ECDSA-CHACHA20-POLY1305"),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Some("ECDHE-RSA-AES256-GCM-SHA384"),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Some("ECDHE-RSA-AES128-GCM-SHA256"),
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Some("ECDHE-RSA-CHACHA20-POLY1305"),
    ),
];

/// `cert_reqs`: gunicorn's integer (Python's `ssl.CERT_NONE`, `CERT_OPTIONAL`,
/// `CERT_REQUIRED`), or those names.
pub fn cert_reqs(raw: &Raw) -> Result<CertReqs, Invalid> {
    let value = match raw {
        Raw::Int(n) => Some(*n),
        Raw::Text(text) => match text.trim().to_ascii_uppercase().as_str() {
            "CERT_NONE" => Some(0),
            "CERT_OPTIONAL" => Some(1),
            "CERT_REQUIRED" => Some(2),
            other => other.parse().ok(),
        },
        _ => None,
    };
    match value {
        Some(0) => Ok(CertReqs::None),
        Some(1) => Ok(CertReqs::Optional),
        Some(2) => Ok(CertReqs::Required),
        _ => Err(Invalid::examples(
            format!(
                "must be 0 (no client certificate), 1 (optional) or 2 (required), got {}",
                raw.describe()
            ),
            &["0", "2"],
        )),
    }
}

/// The `ssl_version` values accepted: each maps to the lowest version served.
const SSL_VERSIONS: &str =
    "TLS, TLS_SERVER, SSLv23, TLSv1_2 (TLS 1.2 and 1.3) or TLSv1_3 (TLS 1.3 only)";

/// `ssl_version`: gunicorn's deprecated setting (a `ssl.PROTOCOL_*` name or its number), as the
/// lowest version served. Versions below TLS 1.2 are refused: neither engine's TLS library
/// serves them any more.
pub fn ssl_version(raw: &Raw) -> Result<TlsVersion, Invalid> {
    let name = match raw {
        Raw::Int(n) => n.to_string(),
        Raw::Text(text) => text.trim().to_string(),
        _ => String::new(),
    };
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("PROTOCOL_").unwrap_or(&upper);
    match bare {
        // PROTOCOL_TLS (= SSLv23, 2), PROTOCOL_TLS_SERVER (17): whatever both ends support.
        "TLS" | "SSLV23" | "TLS_SERVER" | "2" | "17" => Ok(TlsVersion::Tls12),
        // PROTOCOL_TLSv1_2 (5) meant exactly 1.2 in Python; here 1.2 is the floor.
        "TLSV1_2" | "5" => Ok(TlsVersion::Tls12),
        "TLSV1_3" => Ok(TlsVersion::Tls13),
        "TLSV1" | "TLSV1_1" | "SSLV2" | "SSLV3" | "3" | "4" | "1" => Err(Invalid::examples(
            format!(
                "{} asks for a protocol older than TLS 1.2, which herdsman does not serve; \
                 accepted: {SSL_VERSIONS}",
                raw.describe()
            ),
            &["\"TLSv1_2\""],
        )),
        _ => Err(Invalid::examples(
            format!("must be one of {SSL_VERSIONS}, got {}", raw.describe()),
            &["\"TLS_SERVER\"", "\"TLSv1_3\""],
        )),
    }
}

/// `ciphers`: kept as given for OpenSSL (the uvicorn engine), and mapped to the native engine's
/// suites when every entry names one.
pub fn ciphers(raw: &Raw) -> Result<Ciphers, Invalid> {
    let given = super::values::text(
        raw,
        "\"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384\"",
    )?
    .trim()
    .to_string();
    if given.is_empty() {
        return Err(Invalid::advice(
            "is empty",
            "remove it to keep the TLS library's suites, or name some",
        ));
    }
    let suites: Option<Vec<&'static str>> = entries(&given).map(suite).collect();
    Ok(Ciphers { given, suites })
}

fn entries(given: &str) -> impl Iterator<Item = &str> {
    given
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// The IANA name of the suite `entry` names (OpenSSL's or IANA's spelling), if rustls has it.
fn suite(entry: &str) -> Option<&'static str> {
    SUITES.iter().find_map(|(iana, openssl)| {
        let hit = iana.eq_ignore_ascii_case(entry)
            || openssl.is_some_and(|o| o.eq_ignore_ascii_case(entry));
        hit.then_some(*iana)
    })
}

/// Why the native engine cannot take `ciphers`, if it cannot: it takes suite names only.
pub fn native_ciphers_problem(ciphers: &Ciphers) -> Option<Invalid> {
    if ciphers.suites.is_some() {
        return None;
    }
    let unknown: Vec<&str> = entries(&ciphers.given)
        .filter(|e| suite(e).is_none())
        .collect();
    let names: Vec<&str> = SUITES
        .iter()
        .map(|(iana, openssl)| openssl.unwrap_or(iana))
        .collect();
    Some(Invalid::advice(
        format!(
            "names {} that the native engine (rustls) does not have: it takes cipher suite names, \
             not OpenSSL expressions such as HIGH or !aNULL",
            unknown.join(", ")
        ),
        format!(
            "list suites from: {} (OpenSSL or IANA spelling), or remove ciphers to keep the \
             defaults; engine = \"uvicorn\" passes OpenSSL expressions to OpenSSL",
            names.join(":")
        ),
    ))
}

/// A problem with one of the TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsProblem {
    /// The key that names the file.
    pub key: Key,
    /// What is wrong, starting with the file's path.
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` {}; fix: {}",
            self.key.name(),
            self.problem,
            self.fix
        )
    }
}

impl TlsProblem {
    fn new(key: Key, path: &Path, what: impl fmt::Display, fix: impl Into<String>) -> TlsProblem {
        TlsProblem {
            key,
            problem: format!("{}: {what}", path.display()),
            fix: fix.into(),
        }
    }

    pub fn invalid(&self) -> Invalid {
        Invalid::advice(self.problem.clone(), self.fix.clone())
    }
}

/// Loads the files of `tls` as the native engine will; every problem found, or none.
pub fn check_files(tls: &Tls) -> Vec<TlsProblem> {
    let mut problems = Vec::new();
    let certs = certificates(Key::Certfile, &tls.certfile).map_err(|p| problems.push(p));
    let key = private_key(&tls.keyfile).map_err(|p| problems.push(p));
    if let (Ok(certs), Ok(key)) = (certs, key) {
        problems.extend(key_matches(tls, certs, key).err());
    }
    if let Some(ca) = &tls.ca_certs {
        problems.extend(certificates(Key::CaCerts, ca).err());
    }
    problems
}

fn read(key: Key, path: &Path) -> Result<Vec<u8>, TlsProblem> {
    std::fs::read(path).map_err(|err| {
        let (what, fix) = match err.kind() {
            io::ErrorKind::NotFound => ("does not exist", "fix the path"),
            io::ErrorKind::PermissionDenied => (
                "cannot be read (permission denied)",
                "make it readable by the master and the workers' user",
            ),
            _ => ("cannot be read", "give a readable PEM file"),
        };
        TlsProblem::new(key, path, format!("{what} ({err})"), fix)
    })
}

/// Every certificate of a PEM file (`certfile`, `ca_certs`); at least one.
fn certificates(key: Key, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsProblem> {
    let bytes = read(key, path)?;
    let certs: Result<Vec<_>, pem::Error> = CertificateDer::pem_slice_iter(&bytes).collect();
    let certs = certs.map_err(|err| {
        TlsProblem::new(key, path, format!("is not valid PEM ({err})"), pem_fix())
    })?;
    if certs.is_empty() {
        let what = if contains(&bytes, b"PRIVATE KEY-----") {
            "holds a private key, not a certificate"
        } else {
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        };
        return Err(TlsProblem::new(key, path, what, pem_fix()));
    }
    if key == Key::CaCerts {
        let mut roots = rustls::RootCertStore::empty();
        for cert in &certs {
            if let Err(err) = roots.add(cert.clone()) {
                let what = format!("holds a CA certificate that cannot be used ({err})");
                return Err(TlsProblem::new(key, path, what, pem_fix()));
            }
        }
    }
    Ok(certs)
}

fn pem_fix() -> &'static str {
    "give PEM certificates (-----BEGIN CERTIFICATE-----), the server's first, then its chain"
}

/// The private key of `keyfile`, refusing an encrypted one clearly.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsProblem> {
    let bytes = read(Key::Keyfile, path)?;
    if contains(&bytes, b"ENCRYPTED PRIVATE KEY") || contains(&bytes, b"Proc-Type: 4,ENCRYPTED") {
        return Err(TlsProblem::new(
            Key::Keyfile,
            path,
            "is encrypted with a password, which herdsman cannot ask for",
            "decrypt it into a file only the server's users can read: \
             openssl pkey -in KEY -out KEY.plain; chmod 600 KEY.plain",
        ));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| {
        let what = match err {
            pem::Error::NoItemsFound if contains(&bytes, b"BEGIN CERTIFICATE") => {
                "holds a certificate, not a private key".to_string()
            }
            pem::Error::NoItemsFound => "holds no PEM private key".to_string(),
            other => format!("is not a valid PEM private key ({other})"),
        };
        TlsProblem::new(
            Key::Keyfile,
            path,
            what,
            "give the certificate's key in PEM (-----BEGIN PRIVATE KEY-----, or RSA / EC)",
        )
    })
}

/// The key loads (RSA, ECDSA, Ed25519) and is the one the certificate was issued for.
fn key_matches(
    tls: &Tls,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(), TlsProblem> {
    use rustls::{CertificateError, Error, InconsistentKeys};
    match rustls::sign::CertifiedKey::from_der(certs, key, &provider()) {
        Ok(_) => Ok(()),
        Err(Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(TlsProblem::new(
            Key::Keyfile,
            &tls.keyfile,
            format!(
                "is not the key of the certificate in {}",
                tls.certfile.display()
            ),
            "give the key the certificate was issued for, or the certificate of this key",
        )),
        Err(Error::InvalidCertificate(CertificateError::BadEncoding)) => Err(TlsProblem::new(
            Key::Certfile,
            &tls.certfile,
            "its first certificate is not a valid X.509 certificate",
            pem_fix(),
        )),
        Err(err) => Err(TlsProblem::new(
            Key::Keyfile,
            &tls.keyfile,
            format!("cannot be used ({err})"),
            "give an RSA, ECDSA (P-256, P-384) or Ed25519 key",
        )),
    }
}

/// rustls's ring provider, as the native engine uses it. rustls 0.23.48 deprecates it for lacking
/// post-quantum key exchange; aws-lc-rs has that but needs cmake to build, which a fresh Debian
/// machine lacks (docs/engine.md, TLS).
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
