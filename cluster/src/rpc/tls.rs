//! TLS between the nodes of a cluster: mutual, with the cluster's CA. Each node presents its
//! certificate both ways (as the server of its Flight port, and as a client of its peers'),
//! and takes only peers whose certificate that CA signed; the secret of `auth.rs` still goes
//! with every call. Without it, the secret and every row cross the network in clear text.
//!
//! A node's certificate must name the host its peers reach it at (its advertised Flight
//! address) and allow both server and client use; `vecraft cert` makes such certificates.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// How long a peer's TLS handshake may take before the server drops the connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster's CA and this node's certificate and key (PEM), as read at start.
#[derive(Clone)]
pub struct ClusterTls {
    ca: Certificate,
    identity: Identity,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls")
    }
}

impl ClusterTls {
    /// Reads the CA's certificate at `ca`, and this node's chain at `cert` and key at `key`.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<ClusterTls, String> {
        let ca = pem(ca, "CERTIFICATE", "cluster CA")?;
        let cert = pem(cert, "CERTIFICATE", "TLS certificate")?;
        let key = pem(key, "PRIVATE KEY", "TLS key")?;
        Ok(ClusterTls {
            ca: Certificate::from_pem(ca),
            identity: Identity::from_pem(cert, key),
        })
    }

    /// What the Flight server answers a handshake with: this node's certificate, and a
    /// demand for the peer's, signed by the CA.
    pub(super) fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// What a call to a peer checks (its certificate, signed by the CA, names the host
    /// called) and shows (this node's certificate).
    pub(super) fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

/// The PEM text of `path`, which must hold a block of `label` (`PRIVATE KEY` also matches
/// `EC PRIVATE KEY` and `RSA PRIVATE KEY`); `what` names the file in errors.
fn pem(path: &Path, label: &str, what: &str) -> Result<Vec<u8>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let begins = String::from_utf8_lossy(&text)
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.ends_with(&format!("{label}-----")));
    match begins {
        true => Ok(text),
        false => Err(format!(
            "{what} {}: no PEM block \"{label}\" in it",
            path.display()
        )),
    }
}
