//! What a node is told at start: built-in defaults, then a TOML file (`--config`), then
//! flags, each overriding the one before.
//!
//! ```toml
//! listen = "127.0.0.1:5433"    # PostgreSQL clients
//! http = "127.0.0.1:9090"      # /metrics, /healthz, /readyz
//! data_dir = "./vecraft-data"  # relative to the working directory
//!
//! [limits]                     # see README "Limits"
//! max_connections = 100
//!
//! [backup_store]               # settings of s3:// backup URLs (README "Backups")
//! aws_endpoint = "http://127.0.0.1:9000"
//! aws_region = "us-east-1"
//!
//! [backup_schedule]            # scheduled backups (README "Backups")
//! to = "s3://backups/vecraft"
//! every = "1h"
//! keep = 24
//!
//! [tls]                        # TLS on the SQL port (README "Security")
//! cert = "server.crt"
//! key = "server.key"
//! require = true               # refuse clients without TLS
//!
//! [[access]]                   # who may connect, pg_hba.conf's way (README "Security")
//! type = "host"
//! user = "all"
//! address = "10.0.0.0/8"
//! method = "scram-sha-256"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use vecraft_sql::auth::hba::RuleConfig;

use crate::limits::LimitArgs;
use crate::schedule::ScheduleArgs;
use crate::tls::TlsArgs;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";
pub const DEFAULT_HTTP: &str = "127.0.0.1:9090";
pub const DEFAULT_DATA_DIR: &str = "vecraft-data";

/// The settings a node runs with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    /// The `[limits]` table, resolved against the flags by the caller.
    pub limits: LimitArgs,
    /// Settings of the object stores backups go to (`object_store`'s keys: `aws_endpoint`,
    /// `aws_region`, `aws_access_key_id`, …), over the `AWS_*` environment variables.
    pub backup_store: BTreeMap<String, String>,
    /// Scheduled backups (the `[backup_schedule]` table and `--backup-*` flags), unresolved.
    pub backup_schedule: ScheduleArgs,
    /// Who may connect (`[[access]]` entries; none: the embedded default).
    pub access: Vec<RuleConfig>,
    /// A file holding the secret `/metrics` asks for.
    pub metrics_token_file: Option<PathBuf>,
    /// TLS on the SQL port, unloaded.
    pub tls: TlsArgs,
}

/// Settings as a file or the flags give them; absent ones fall through.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub limits: LimitArgs,
    #[serde(default)]
    pub backup_store: BTreeMap<String, String>,
    #[serde(default)]
    pub backup_schedule: ScheduleArgs,
    #[serde(default)]
    pub access: Vec<RuleConfig>,
    pub metrics_token_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: TlsArgs,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: DEFAULT_LISTEN.parse().expect("default address parses"),
            http: DEFAULT_HTTP.parse().expect("default address parses"),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            limits: LimitArgs::default(),
            backup_store: BTreeMap::new(),
            backup_schedule: ScheduleArgs::default(),
            access: Vec::new(),
            metrics_token_file: None,
            tls: TlsArgs::default(),
        }
    }
}

impl NodeConfig {
    /// The defaults, overridden by the file at `file` (if any), then by `flags`.
    pub fn resolve(file: Option<&Path>, flags: Overrides) -> Result<NodeConfig, String> {
        let mut config = NodeConfig::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("config file {}: {e}", path.display()))?;
            config.apply(parse(&text).map_err(|e| format!("config file {}: {e}", path.display()))?);
        }
        config.apply(flags);
        Ok(config)
    }

    fn apply(&mut self, o: Overrides) {
        self.listen = o.listen.unwrap_or(self.listen);
        self.http = o.http.unwrap_or(self.http);
        self.data_dir = o.data_dir.unwrap_or(std::mem::take(&mut self.data_dir));
        self.limits = o.limits.or(std::mem::take(&mut self.limits));
        self.backup_store.extend(o.backup_store);
        self.backup_schedule = o
            .backup_schedule
            .or(std::mem::take(&mut self.backup_schedule));
        if !o.access.is_empty() {
            self.access = o.access;
        }
        self.metrics_token_file = o.metrics_token_file.or(self.metrics_token_file.take());
        self.tls = o.tls.or(std::mem::take(&mut self.tls));
    }
}

fn parse(text: &str) -> Result<Overrides, String> {
    toml::from_str(text).map_err(|e| e.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:6000\"\ndata_dir = \"/srv/v\"\n").unwrap();
        let flags = Overrides {
            data_dir: Some("/flag".into()),
            ..Overrides::default()
        };
        let config = NodeConfig::resolve(Some(&path), flags).unwrap();
        assert_eq!(config.listen, "0.0.0.0:6000".parse().unwrap());
        assert_eq!(config.http, DEFAULT_HTTP.parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("/flag"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let e = parse("listen = \"nowhere\"").unwrap_err();
        assert!(e.contains("invalid socket address"), "{e}");
        let e = parse("lisen = \"127.0.0.1:1\"").unwrap_err();
        assert!(e.contains("unknown field `lisen`"), "{e}");
        let missing = NodeConfig::resolve(Some(Path::new("/no/such.toml")), Overrides::default());
        assert!(missing.unwrap_err().contains("/no/such.toml"));
    }
}
