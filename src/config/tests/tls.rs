//! The TLS values and file checks: certificates made here with rcgen, broken on purpose.

use crate::config::keys::Key;
use crate::config::layer::Raw;
use crate::config::tls::*;
use crate::config::{CertReqs, Tls, TlsVersion};
use std::path::{Path, PathBuf};

/// A self-signed certificate and its key, written to `dir`.
fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

fn tls(certfile: &Path, keyfile: &Path) -> Tls {
    Tls {
        certfile: certfile.into(),
        keyfile: keyfile.into(),
        ca_certs: None,
        cert_reqs: CertReqs::None,
        ciphers: None,
        min_version: TlsVersion::Tls12,
    }
}

#[test]
fn a_matching_pair_and_a_ca_file_load() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair(dir.path(), "server");
    let mut config = tls(&cert, &key);
    config.ca_certs = Some(cert.clone());
    assert_eq!(check_files(&config), vec![]);
}

#[test]
fn each_broken_file_is_named_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair(dir.path(), "server");
    let (_, other_key) = pair(dir.path(), "other");
    let problems = check_files(&tls(&cert, &other_key));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, Key::Keyfile);
    assert!(problems[0]
        .problem
        .contains("is not the key of the certificate"));

    let swapped = check_files(&tls(&key, &cert));
    let text: Vec<String> = swapped.iter().map(ToString::to_string).collect();
    assert!(
        text[0].contains("holds a private key, not a certificate"),
        "{text:?}"
    );
    assert!(
        text[1].contains("holds a certificate, not a private key"),
        "{text:?}"
    );

    let missing = dir.path().join("missing.pem");
    let problems = check_files(&tls(&missing, &key));
    assert!(problems[0].problem.contains("missing.pem: does not exist"));

    let encrypted = dir.path().join("enc.key");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let problems = check_files(&tls(&cert, &encrypted));
    assert!(problems[0].problem.contains("encrypted with a password"));

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not pem at all\n").unwrap();
    let mut config = tls(&cert, &key);
    config.ca_certs = Some(garbage);
    let problems = check_files(&config);
    assert_eq!(problems[0].key, Key::CaCerts);
    assert!(problems[0].problem.contains("holds no PEM certificate"));
}

#[test]
fn values_take_gunicorns_spellings() {
    let text = |s: &str| Raw::Text(s.into());
    assert_eq!(cert_reqs(&Raw::Int(2)), Ok(CertReqs::Required));
    assert_eq!(cert_reqs(&text("CERT_OPTIONAL")), Ok(CertReqs::Optional));
    assert!(cert_reqs(&Raw::Int(3)).is_err());
    assert_eq!(ssl_version(&text("TLS_SERVER")), Ok(TlsVersion::Tls12));
    assert_eq!(
        ssl_version(&text("PROTOCOL_TLSv1_2")),
        Ok(TlsVersion::Tls12)
    );
    assert_eq!(ssl_version(&Raw::Int(17)), Ok(TlsVersion::Tls12));
    assert_eq!(ssl_version(&text("tlsv1_3")), Ok(TlsVersion::Tls13));
    let old = ssl_version(&text("TLSv1")).unwrap_err();
    assert!(old.problem.contains("older than TLS 1.2"), "{old:?}");
    assert!(
        old.problem.contains("TLSv1_3"),
        "names what is accepted: {old:?}"
    );

    let named = ciphers(&text("ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384")).unwrap();
    assert_eq!(
        named.suites,
        Some(vec![
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384"
        ])
    );
    assert_eq!(native_ciphers_problem(&named), None);
    let expression = ciphers(&text("HIGH:!aNULL")).unwrap();
    assert_eq!(expression.suites, None);
    let problem = native_ciphers_problem(&expression).unwrap();
    assert!(problem.problem.contains("HIGH, !aNULL"), "{problem:?}");
}
