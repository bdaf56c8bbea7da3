//! Who may call a node's Flight port: members of its cluster, which all hold the cluster's
//! secret. Every request carries it (`authorization: Bearer <secret>`); the server checks it
//! on the request's headers, before the body is read, and answers anything else with
//! `Unauthenticated`. Without it, anyone who reached the port could read every row, write,
//! drop collections, or depose leaders with crafted Raft messages.
//!
//! Without TLS (`tls.rs`, `--cluster-ca`) the secret travels in clear text: on networks
//! others can see, turn TLS on or keep the port on a private network.

use std::fmt;
use std::sync::Arc;

use tonic::metadata::AsciiMetadataValue;
use tonic::{Request, Status};

/// The shortest secret a node accepts: 128 bits as hex.
pub const MIN_SECRET_CHARS: usize = 32;

const HEADER: &str = "authorization";

/// The cluster's shared secret (never printed: `Debug` shows its length only).
#[derive(Clone)]
pub struct ClusterSecret {
    bearer: Arc<str>,
    header: AsciiMetadataValue,
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClusterSecret({} chars)",
            self.bearer.len() - "Bearer ".len()
        )
    }
}

impl ClusterSecret {
    /// `secret` as the cluster's: at least [`MIN_SECRET_CHARS`] visible ASCII characters.
    pub fn new(secret: &str) -> Result<ClusterSecret, String> {
        if secret.len() < MIN_SECRET_CHARS || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "a cluster secret is at least {MIN_SECRET_CHARS} visible ASCII characters \
                 (vecraft local-cluster makes one; `openssl rand -hex 16` does too)"
            ));
        }
        let bearer: Arc<str> = format!("Bearer {secret}").into();
        let mut header: AsciiMetadataValue = bearer
            .parse()
            .map_err(|_| "a cluster secret must be visible ASCII".to_string())?;
        header.set_sensitive(true);
        Ok(ClusterSecret { bearer, header })
    }

    /// A new random secret (for `vecraft local-cluster` and tests).
    pub fn generate() -> ClusterSecret {
        let hex: String = (0..4)
            .map(|_| format!("{:016x}", rand::random::<u64>()))
            .collect();
        ClusterSecret::new(&hex).expect("64 hex digits make a secret")
    }

    /// The secret itself, to hand to a node this one starts.
    pub fn expose(&self) -> &str {
        &self.bearer["Bearer ".len()..]
    }

    /// Puts the secret on an outgoing request.
    pub fn sign<T>(&self, request: &mut Request<T>) {
        request.metadata_mut().insert(HEADER, self.header.clone());
    }

    /// Lets `request` through if it carries the secret.
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let given = request
            .metadata()
            .get(HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, self.bearer.as_bytes()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "this port is for the nodes of a Vecraft cluster (wrong or missing cluster secret)",
            ))
        }
    }
}

/// Whether `a` equals `b`, taking the same time wherever they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_passes() {
        let secret = ClusterSecret::generate();
        let mut signed = Request::new(());
        secret.sign(&mut signed);
        assert!(secret.check(signed).is_ok());
        assert!(secret.check(Request::new(())).is_err(), "no header");
        let other = ClusterSecret::generate();
        let mut wrong = Request::new(());
        other.sign(&mut wrong);
        let refused = secret.check(wrong).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }

    #[test]
    fn weak_secrets_are_refused() {
        assert!(ClusterSecret::new("short").is_err());
        assert!(ClusterSecret::new(&"x".repeat(31)).is_err());
        assert!(ClusterSecret::new(&format!("{} ", "x".repeat(32))).is_err());
        assert!(ClusterSecret::new(&"x".repeat(32)).is_ok());
    }
}
