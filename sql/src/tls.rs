//! TLS on the SQL port: the node's certificate chain and private key (PEM files), read at
//! start and again on SIGHUP, as PostgreSQL rereads `ssl_cert_file` and `ssl_key_file` on a
//! reload.
//!
//! A client asks for TLS with an SSLRequest (answered `S`) or starts it at once
//! (`sslnegotiation=direct`, PostgreSQL 17's way, which must name the `postgresql` ALPN
//! protocol); `socket.rs` does the negotiation. Whether a plain client may log in is for the
//! access rules (`auth::hba`: `hostssl`, `hostnossl` and `require_tls`).
//!
//! Each certificate comes with its `tls-server-end-point` data (RFC 5929): the hash of the
//! certificate that SCRAM-SHA-256-PLUS binds a login to (`auth::scram`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use parking_lot::RwLock;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// The ALPN protocol name PostgreSQL clients offer (and a direct TLS connection must name).
pub const POSTGRESQL_ALPN: &[u8] = b"postgresql";

/// Where a TLS connection keeps its `tls-server-end-point` data (base64) among pgwire's
/// client metadata, from the handshake to the login.
const END_POINT_METADATA: &str = "vecraft.tls_server_end_point";

/// The SQL port's TLS: what a handshake is answered with, replaced on [`ServerTls::reload`].
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Current>,
}

/// A configuration in use, and its certificate's `tls-server-end-point` data (`None`: a
/// signature whose hash RFC 5929 does not settle, such as Ed25519's; no channel binding).
#[derive(Clone)]
pub struct Current {
    pub acceptor: TlsAcceptor,
    pub end_point: Option<Vec<u8>>,
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
        Ok(ServerTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(current(cert, key)?),
        })
    }

    /// What a new connection is answered with.
    pub fn current(&self) -> Current {
        self.current.read().clone()
    }

    /// Reads the files again. A change that does not load keeps the one in use (PostgreSQL
    /// keeps its SSL context likewise) and says why.
    pub fn reload(&self) -> Result<(), String> {
        *self.current.write() = current(&self.cert, &self.key)?;
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

/// Notes a connection's `tls-server-end-point` data in its client `metadata`.
pub fn note_end_point(metadata: &mut HashMap<String, String>, end_point: Option<&[u8]>) {
    if let Some(data) = end_point {
        metadata.insert(END_POINT_METADATA.into(), BASE64.encode(data));
    }
}

/// The `tls-server-end-point` data noted in a connection's client `metadata`.
pub fn end_point_of(metadata: &HashMap<String, String>) -> Option<Vec<u8>> {
    BASE64.decode(metadata.get(END_POINT_METADATA)?).ok()
}

fn current(cert: &Path, key: &Path) -> Result<Current, String> {
    let (config, leaf) = server_config(cert, key)?;
    Ok(Current {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        end_point: end_point(&leaf),
    })
}

/// A rustls server configuration of the chain at `cert` and the key at `key`, naming the
/// `postgresql` ALPN protocol; and the chain's first certificate (the server's own).
fn server_config(cert: &Path, key: &Path) -> Result<(ServerConfig, Vec<u8>), String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in it",
            cert.display()
        ));
    }
    let leaf = chain[0].to_vec();
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
    Ok((config, leaf))
}

/// RFC 5929's `tls-server-end-point` of the certificate `der`: its hash by the hash of its
/// signature algorithm, SHA-256 for MD5 and SHA-1 (as OpenSSL and so PostgreSQL compute it);
/// `None` for a signature that names no hash of its own (RSA-PSS, Ed25519).
fn end_point(der: &[u8]) -> Option<Vec<u8>> {
    /// 1.2.840.113549.1.1: PKCS #1 signatures (RSA).
    const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    /// 1.2.840.10045.4: ECDSA signatures.
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let oid = signature_algorithm(der)?;
    let digest = match (oid.strip_prefix(PKCS1), oid.strip_prefix(ECDSA)) {
        (Some([4 | 5 | 11]), _) | (_, Some([1] | [3, 2])) => Sha256::digest(der).to_vec(),
        (Some([12]), _) | (_, Some([3, 3])) => Sha384::digest(der).to_vec(),
        (Some([13]), _) | (_, Some([3, 4])) => Sha512::digest(der).to_vec(),
        _ => return None,
    };
    Some(digest)
}

/// The OID (its DER contents) of a certificate's `signatureAlgorithm`: the second field of
/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`.
fn signature_algorithm(der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (SEQUENCE, certificate, _) = der_element(der)? else {
        return None;
    };
    let (_, _tbs, rest) = der_element(certificate)?;
    let (SEQUENCE, algorithm, _) = der_element(rest)? else {
        return None;
    };
    match der_element(algorithm)? {
        (OID, oid, _) => Some(oid),
        _ => None,
    }
}

/// The first DER element of `der`: its tag, its contents, and what follows it.
fn der_element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = match first {
        short if short < 0x80 => (usize::from(short), rest),
        long => {
            let bytes = usize::from(long & 0x7f);
            if bytes == 0 || bytes > 4 || rest.len() < bytes {
                return None;
            }
            let (length, rest) = rest.split_at(bytes);
            let length = length.iter().fold(0usize, |l, &b| l << 8 | usize::from(b));
            (length, rest)
        }
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate's outline: an empty `tbsCertificate`, the algorithm `oid`, an empty
    /// signature.
    fn outline(oid: &[u8]) -> Vec<u8> {
        let algorithm = [&[0x06, oid.len() as u8][..], oid].concat();
        let algorithm = [&[0x30, algorithm.len() as u8][..], &algorithm].concat();
        let body = [&[0x30, 0x00][..], &algorithm, &[0x03, 0x01, 0x00]].concat();
        [&[0x30, body.len() as u8][..], &body].concat()
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        let ecdsa_sha256 = outline(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
        let expected = Sha256::digest(&ecdsa_sha256).to_vec();
        assert_eq!(end_point(&ecdsa_sha256), Some(expected));
        let rsa_sha384 = outline(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c]);
        assert_eq!(end_point(&rsa_sha384).map(|h| h.len()), Some(48));
        let rsa_sha1 = outline(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05]);
        assert_eq!(end_point(&rsa_sha1).map(|h| h.len()), Some(32));
        let ed25519 = outline(&[0x2b, 0x65, 0x70]);
        assert_eq!(end_point(&ed25519), None);
        for broken in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &ecdsa_sha256[..9],
        ] {
            assert_eq!(end_point(broken), None, "{broken:?}");
        }
    }
}
