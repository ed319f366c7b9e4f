//! HTTPS for `sessionflow ingest` exposed directly (rustls, ring): the certificate chain and
//! key from PEM files named by `ingest.tls_cert_file` and `ingest.tls_key_file`, HTTP/1.1 by
//! ALPN, TLS 1.2 and 1.3.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, IngestTls};

/// The acceptor for `files`; a file that cannot be read, holds no certificate or key, or a
/// key that does not match the certificate is a configuration error naming the key.
pub fn acceptor(files: &IngestTls) -> Result<TlsAcceptor, ConfigError> {
    let invalid = |key: &'static str, problem: String| ConfigError::Invalid { key, problem };
    let cert_path = files.cert_file.display();
    let chain = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid("ingest.tls_cert_file", format!("{cert_path}: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(
            "ingest.tls_cert_file",
            format!("{cert_path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| {
        invalid(
            "ingest.tls_key_file",
            format!("{}: {e} (a PEM private key)", files.key_file.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("ingest.tls_cert_file", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            invalid(
                "ingest.tls_key_file",
                format!("does not serve with {cert_path}: {e}"),
            )
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/tls")
            .join(name)
    }

    fn problem(cert: &str, key: &str) -> (&'static str, String) {
        let files = IngestTls {
            cert_file: data(cert),
            key_file: data(key),
        };
        match acceptor(&files) {
            Err(ConfigError::Invalid { key, problem }) => (key, problem),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("{cert} with {key} was accepted"),
        }
    }

    #[test]
    fn the_test_certificate_and_its_key_serve() {
        let files = IngestTls {
            cert_file: data("server.pem"),
            key_file: data("server.key"),
        };
        assert!(acceptor(&files).is_ok());
    }

    #[test]
    fn unreadable_empty_or_mismatched_files_name_their_key() {
        let (key, problem) = problem("missing.pem", "server.key");
        assert_eq!(key, "ingest.tls_cert_file");
        assert!(problem.contains("missing.pem"), "{problem}");
        // A file with no certificate in it (the key file).
        assert_eq!(
            problem_key("server.key", "server.key"),
            "ingest.tls_cert_file"
        );
        // The CA's certificate does not go with the server's key.
        assert_eq!(problem_key("ca.pem", "server.key"), "ingest.tls_key_file");
        // A key file with no key in it.
        assert_eq!(
            problem_key("server.pem", "server.pem"),
            "ingest.tls_key_file"
        );
    }

    fn problem_key(cert: &str, key: &str) -> &'static str {
        problem(cert, key).0
    }
}
