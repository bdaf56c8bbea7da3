//! TLS on the SQL port: the node's certificate chain and private key (PEM files), read at
//! start and again on SIGHUP, as PostgreSQL rereads `ssl_cert_file` and `ssl_key_file` on a
//! reload.
//!
//! A client asks for TLS with an SSLRequest (answered `S`) or starts it at once
//! (`sslnegotiation=direct`, PostgreSQL 17's way, which must name the `postgresql` ALPN
//! protocol); `socket.rs` does the negotiation. Whether a plain client may log in is for the
//! access rules (`auth::hba`: `hostssl`, `hostnossl` and `require_tls`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// The ALPN protocol name PostgreSQL clients offer (and a direct TLS connection must name).
pub const POSTGRESQL_ALPN: &[u8] = b"postgresql";

/// The SQL port's TLS: what a handshake is answered with, replaced on [`ServerTls::reload`].
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    acceptor: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the certificate chain at `cert` and the key at `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, String> {
        let config = server_config(cert, key)?;
        Ok(ServerTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            acceptor: RwLock::new(TlsAcceptor::from(Arc::new(config))),
        })
    }

    /// What new connections are answered with.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.read().clone()
    }

    /// Reads the files again. A change that does not load keeps the one in use (PostgreSQL
    /// keeps its SSL context likewise) and says why.
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.cert, &self.key)?;
        *self.acceptor.write() = TlsAcceptor::from(Arc::new(config));
        Ok(())
    }

    /// What the node's log says at start.
    pub fn describe(&self) -> String {
        format!(
            "TLS: certificate {}, key {} (re-read on SIGHUP)",
            self.cert.display(),
            self.key.display()
        )
    }
}

/// A rustls server configuration of the chain at `cert` and the key at `key`, naming the
/// `postgresql` ALPN protocol.
fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in it",
            cert.display()
        ));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "TLS certificate {} with key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![POSTGRESQL_ALPN.to_vec()];
    Ok(config)
}
