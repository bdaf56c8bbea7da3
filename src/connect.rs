//! How the commands that talk to a running node (`vecraft backup`, `restore`, `backups`)
//! reach it: as libpq does. The DSN's `sslmode` decides whether TLS is tried (`prefer`, the
//! default, and `require`) or not (`disable`). With `--sslrootcert` (or `PGSSLROOTCERT`) the
//! node's certificate must chain to that CA and name the host (libpq's `verify-full`);
//! without it the connection is encrypted but the certificate not checked (libpq's
//! `prefer` and `require`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where the node is, and which CA vouches for it.
#[derive(Clone, Debug, Args)]
pub struct Connection {
    /// The node to ask, as a libpq connection string or URL (sslmode: disable, prefer or
    /// require)
    #[arg(
        long,
        value_name = "DSN",
        default_value = "host=127.0.0.1 port=5433 user=postgres"
    )]
    pub dsn: String,
    /// A CA certificate (PEM) the node's must chain to, for the host named in the DSN
    /// (libpq's verify-full) [default: $PGSSLROOTCERT; none: TLS unchecked]
    #[arg(long, value_name = "FILE")]
    pub sslrootcert: Option<PathBuf>,
}

impl Connection {
    /// A session with the node; its connection runs on a task of its own.
    pub async fn connect(&self) -> Result<Client, String> {
        let root = (self.sslrootcert.clone())
            .or_else(|| std::env::var_os("PGSSLROOTCERT").map(PathBuf::from));
        let tls = connector(root.as_deref())?;
        let (client, connection) = tokio_postgres::connect(&self.dsn, tls).await.map_err(|e| {
            let why = match e.as_db_error() {
                Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
                None => e.to_string(),
            };
            format!("cannot connect to {}: {why}", self.dsn)
        })?;
        tokio::spawn(connection);
        Ok(client)
    }
}

/// TLS as the connection asks for it: checked against the CA at `root`, or not checked.
fn connector(root: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = match root {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--sslrootcert {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(format!(
                    "--sslrootcert {}: no certificate in it",
                    path.display()
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// Takes any certificate, as libpq's `sslmode=require` does: the channel is encrypted, the
/// server not authenticated. The handshake's signatures are still checked (the server holds
/// the key of the certificate it shows).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        tokio_rustls::rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        tokio_rustls::rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
