//! TLS for the tests: a CA, a server certificate for localhost and 127.0.0.1 and a client
//! certificate, all made here with rcgen (no openssl needed), and a rustls client that speaks
//! HTTP/1.1 over them through the plain client in `http`.

use std::io::{self, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::http::{self, Response};

/// The files of one test's certificates, in its directory.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A key that is not the server certificate's.
    pub other_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certs {
    pub fn new(dir: &Path) -> Certs {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "herdsman test CA");
        let ca = params.self_signed(&ca_key).expect("CA certificate");
        let leaf = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.extended_key_usages = vec![purpose];
            let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let (server_pem, server_key) = leaf(names, ExtendedKeyUsagePurpose::ServerAuth);
        let (client_pem, client_key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, text: &str| super::write_file(dir, name, text);
        Certs {
            ca: write("ca.pem", &ca.pem()),
            cert: write("server.pem", &server_pem),
            key: write("server.key", &server_key),
            other_key: write("other.key", &KeyPair::generate().unwrap().serialize_pem()),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client.key", &client_key),
        }
    }

    /// `--certfile CERT --keyfile KEY` as owned strings.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--certfile".into(), self.cert.display().to_string()];
        args.extend(["--keyfile".into(), self.key.display().to_string()]);
        args
    }

    /// A client that trusts the test CA, showing the client certificate if `with_cert`.
    pub fn client(&self, with_cert: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).expect("read CA") {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = if with_cert {
            let chain = CertificateDer::pem_file_iter(&self.client_cert)
                .expect("read client cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("client PEM");
            let key = PrivateKeyDer::from_pem_file(&self.client_key).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }
}

#[allow(deprecated)] // ring, as the engine (engine/src/tls/config.rs)
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// A TLS connection to `addr` as `localhost`; the handshake completes on first use.
pub fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> io::Result<TlsStream> {
    let name = ServerName::try_from("localhost").expect("a valid name");
    let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    Ok(rustls::StreamOwned::new(conn, http::connect(addr)?))
}

/// One HTTPS GET on a connection of its own.
pub fn get(
    addr: SocketAddr,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<Response> {
    http::request(connect(addr, config)?, "GET", path, b"")
}

/// `n` GETs of `path` on one kept-alive connection.
pub fn get_kept_alive(
    addr: SocketAddr,
    path: &str,
    n: usize,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<Vec<Response>> {
    let mut reader = BufReader::new(connect(addr, config)?);
    let mut responses = Vec::new();
    for _ in 0..n {
        let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        reader.get_mut().write_all(head.as_bytes())?;
        responses.push(http::read_response(&mut reader)?);
    }
    Ok(responses)
}
