//! The worker argv's TLS options to a `rustls::ServerConfig`: the certificate chain and key, the
//! client-certificate policy, the cipher suites and the lowest version, ALPN by the `http` mode
//! (auto: `h2` then `http/1.1`; rustls takes the first of ours the client offers).
//!
//! `ciphers` arrives as IANA suite names (the master mapped OpenSSL's names and refused the
//! rest). As with OpenSSL, whose cipher list does not touch TLS 1.3, naming no TLS 1.3 suite
//! keeps all of them; naming no TLS 1.2 suite leaves TLS 1.3 only.
//! Invariants: every error names the file or value at fault; nothing here panics.

use std::sync::Arc;

use crate::shared::HttpMode;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ProtocolVersion, RootCertStore, ServerConfig, SupportedCipherSuite};

/// What the runtime passes (python/herdsman/runtime/engines/native.py).
pub struct Options {
    pub certfile: String,
    pub keyfile: String,
    pub ca_certs: Option<String>,
    /// gunicorn's 0 (none), 1 (optional), 2 (required).
    pub cert_reqs: u8,
    /// IANA suite names, separated by `:`.
    pub ciphers: Option<String>,
    /// "1.2" or "1.3".
    pub min_version: String,
}

/// rustls's ring provider. rustls 0.23.48 deprecates it for lacking post-quantum key exchange;
/// aws-lc-rs has that but needs cmake to build (docs/engine.md, TLS).
#[allow(deprecated)]
fn ring() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

pub fn server_config(options: &Options, mode: HttpMode) -> Result<Arc<ServerConfig>, String> {
    let mut provider = ring();
    if let Some(ciphers) = &options.ciphers {
        provider.cipher_suites = suites(&provider.cipher_suites, ciphers)?;
    }
    let versions = versions(options, &provider.cipher_suites)?;
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS versions and ciphers do not fit together: {e}"))?;
    let builder = match options.cert_reqs {
        0 => builder.with_no_client_auth(),
        reqs => {
            let ca = options
                .ca_certs
                .as_deref()
                .ok_or("cert_reqs 1 and 2 need ca_certs")?;
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_certs {ca}: unusable CA certificate: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if reqs == 1 {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("ca_certs {ca}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let certs = certificates(&options.certfile)?;
    let key = PrivateKeyDer::from_pem_file(&options.keyfile).map_err(|e| {
        format!(
            "keyfile {}: no usable PEM private key: {e}",
            options.keyfile
        )
    })?;
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "certfile {} with keyfile {}: {e}",
            options.certfile, options.keyfile
        )
    })?;
    config.alpn_protocols = match mode {
        HttpMode::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        HttpMode::Http1 => vec![b"http/1.1".to_vec()],
        HttpMode::Http2 => vec![b"h2".to_vec()],
    };
    Ok(Arc::new(config))
}

fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{path}: cannot read it: {e}"))?
        .collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(format!("{path}: holds no PEM certificate")),
        Err(e) => Err(format!("{path}: not valid PEM: {e}")),
    }
}

/// The suites `names` lists, in its order, plus every TLS 1.3 suite when it names none.
fn suites(all: &[SupportedCipherSuite], names: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    let mut chosen = Vec::new();
    for name in names.split(':').filter(|n| !n.is_empty()) {
        let found = all.iter().find(|s| iana_name(s).as_deref() == Some(name));
        match found {
            Some(suite) => chosen.push(*suite),
            None => return Err(format!("ciphers: {name} is not a suite this engine has")),
        }
    }
    if !chosen
        .iter()
        .any(|s| s.version() == &rustls::version::TLS13)
    {
        chosen.extend(
            all.iter()
                .filter(|s| s.version() == &rustls::version::TLS13),
        );
    }
    Ok(chosen)
}

/// rustls spells TLS 1.3 suites `TLS13_...`; IANA and OpenSSL, `TLS_...`.
fn iana_name(suite: &SupportedCipherSuite) -> Option<String> {
    let name = suite.suite().as_str()?;
    Some(match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_string(),
    })
}

fn versions(
    options: &Options,
    suites: &[SupportedCipherSuite],
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let has_tls12 = suites
        .iter()
        .any(|s| s.version().version == ProtocolVersion::TLSv1_2);
    match options.min_version.as_str() {
        "1.3" => Ok(vec![&rustls::version::TLS13]),
        "1.2" if has_tls12 => Ok(vec![&rustls::version::TLS12, &rustls::version::TLS13]),
        "1.2" => Ok(vec![&rustls::version::TLS13]),
        other => Err(format!("tls_min_version must be 1.2 or 1.3, got {other:?}")),
    }
}
