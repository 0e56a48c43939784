//! TLS to the broker: a rustls client configuration from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Builds a client configuration trusting `ca_file`, with an optional client certificate and key.
pub fn client_config(
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(ca_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("`mqtt.tls.ca_file` {}: {e}", ca_file.display()))?;
    if cas.is_empty() {
        return Err(format!(
            "`mqtt.tls.ca_file` {}: no certificate in it",
            ca_file.display()
        ));
    }
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| format!("`mqtt.tls.ca_file` {}: {e}", ca_file.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_file, key_file)) => {
            let certs = CertificateDer::pem_file_iter(cert_file)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("`mqtt.tls.cert_file` {}: {e}", cert_file.display()))?;
            crate::keys::check_private_file(key_file)
                .map_err(|e| format!("`mqtt.tls.key_file` {e}"))?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| format!("`mqtt.tls.key_file` {}: {e}", key_file.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("`mqtt.tls.cert_file`/`key_file`: {e}"))
        }
    }
}

/// Builds a server configuration from a certificate chain and its private key (PEM).
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<rustls::ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("`http.tls_cert` {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "`http.tls_cert` {}: no certificate in it",
            cert_file.display()
        ));
    }
    crate::keys::check_private_file(key_file).map_err(|e| format!("`http.tls_key` {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("`http.tls_key` {}: {e}", key_file.display()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("`http.tls_cert`/`tls_key`: {e}"))
}
