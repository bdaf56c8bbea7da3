//! TLS as a node is told it: `--tls-cert`, `--tls-key` and `--require-tls`, or a `[tls]`
//! table in the config file (`cert`, `key`, `require`); and the SIGHUP that re-reads the
//! files.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde::Deserialize;
use vecraft_sql::tls::ServerTls;

/// Where the PEM files are, as the config file (`[tls]`) and the flags give them.
#[derive(Clone, Debug, Default, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct TlsArgs {
    /// The SQL port's certificate chain (PEM): clients may then ask for TLS (sslmode=require,
    /// verify-full); re-read on SIGHUP
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1); re-read on SIGHUP
    #[arg(long = "tls-key", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Refuse clients that do not use TLS (28000, as a pg_hba.conf of hostssl lines only)
    #[arg(long = "require-tls")]
    #[serde(default)]
    pub require: bool,
}

impl TlsArgs {
    /// These, with what they leave out taken from `file`.
    pub fn or(self, file: TlsArgs) -> TlsArgs {
        let (cert, key) = match self.cert.is_some() {
            true => (self.cert, self.key),
            false => (file.cert, file.key),
        };
        TlsArgs {
            cert,
            key,
            require: self.require || file.require,
        }
    }

    /// The node's TLS, loaded; `None` when no certificate is given.
    pub fn load(&self) -> Result<Option<Arc<ServerTls>>, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => ServerTls::load(cert, key).map(|t| Some(Arc::new(t))),
            (None, None) if self.require => {
                Err("--require-tls needs a certificate: --tls-cert and --tls-key".into())
            }
            (None, None) => Ok(None),
            _ => Err("TLS needs both --tls-cert and --tls-key".into()),
        }
    }
}

/// Re-reads the certificate and key (if the node has TLS) on every SIGHUP, for as long as
/// the process runs; a change that does not load is said and the one in use stays. The
/// handler is in place when this returns: SIGHUP, which service managers send to reload,
/// no longer ends the process.
pub fn reload_on_sighup(tls: Option<Arc<ServerTls>>) -> Result<(), String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP: {e}"))?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match tls.as_deref().map(ServerTls::reload) {
                    None => eprintln!("vecraft: SIGHUP: nothing to re-read (no TLS)"),
                    Some(Ok(())) => eprintln!("vecraft: SIGHUP: TLS certificate and key re-read"),
                    Some(Err(e)) => {
                        eprintln!("vecraft: SIGHUP: {e}; the TLS configuration in use stays")
                    }
                }
            }
        });
    }
    Ok(())
}
