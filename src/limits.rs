//! The gateway's limits as a node is told them: flags (`--max-connections …`) or a `[limits]`
//! table in the config file, over the defaults of `vecraft_sql::limits::Limits`.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use vecraft_sql::limits::Limits;

/// Limits on what clients may take (README "Limits"); each overrides its default.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitArgs {
    /// Client sessions at once; more are refused with 53300 [default: 100]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Sessions of max_connections kept for the superuser (postgres) [default: 3]
    #[arg(long, value_name = "N")]
    pub superuser_reserved_connections: Option<usize>,
    /// Largest protocol message (a query, a Bind, a piece of COPY data); larger ends the
    /// connection with 08P01 [default: 268435456]
    #[arg(long, value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Longest COPY line or binary row; longer fails the COPY with 54000 [default: 67108864]
    #[arg(long, value_name = "BYTES")]
    pub max_copy_line_bytes: Option<usize>,
    /// Named prepared statements one session may hold; more fail with 53400 [default: 1000]
    #[arg(long, value_name = "N")]
    pub max_prepared_statements: Option<usize>,
    /// Memory all queries of the node may hold for sorts, joins and aggregates; past it a
    /// query fails with 53200 [default: half the machine's memory]
    #[arg(long, value_name = "BYTES")]
    pub node_memory_bytes: Option<usize>,
    /// Memory one query may hold; past it the query fails with 53200 [default: a quarter of
    /// node_memory_bytes]
    #[arg(long, value_name = "BYTES")]
    pub query_memory_bytes: Option<usize>,
    /// Close sessions idle this long outside a transaction block, with 57P05; 0 never does
    /// [default: 0]
    #[arg(long, value_name = "MS")]
    pub idle_session_timeout_ms: Option<u64>,
    /// Close sessions idle this long inside a transaction block, with 25P03 (the block rolls
    /// back); 0 never does. Sessions may SET idle_in_transaction_session_timeout [default: 0]
    #[arg(long, value_name = "MS")]
    pub idle_in_transaction_session_timeout_ms: Option<u64>,
    /// Drop clients that have not logged in within this time [default: 60000]
    #[arg(long, value_name = "MS")]
    pub startup_timeout_ms: Option<u64>,
}

impl LimitArgs {
    /// These settings, with `other`'s where these have none.
    pub fn or(self, other: LimitArgs) -> LimitArgs {
        LimitArgs {
            max_connections: self.max_connections.or(other.max_connections),
            superuser_reserved_connections: self
                .superuser_reserved_connections
                .or(other.superuser_reserved_connections),
            max_message_bytes: self.max_message_bytes.or(other.max_message_bytes),
            max_copy_line_bytes: self.max_copy_line_bytes.or(other.max_copy_line_bytes),
            max_prepared_statements: self
                .max_prepared_statements
                .or(other.max_prepared_statements),
            node_memory_bytes: self.node_memory_bytes.or(other.node_memory_bytes),
            query_memory_bytes: self.query_memory_bytes.or(other.query_memory_bytes),
            idle_session_timeout_ms: self
                .idle_session_timeout_ms
                .or(other.idle_session_timeout_ms),
            idle_in_transaction_session_timeout_ms: self
                .idle_in_transaction_session_timeout_ms
                .or(other.idle_in_transaction_session_timeout_ms),
            startup_timeout_ms: self.startup_timeout_ms.or(other.startup_timeout_ms),
        }
    }

    /// The limits: these flags, then `file`'s, then the defaults.
    pub fn resolve(&self, file: &LimitArgs) -> Result<Limits, String> {
        let set = self.clone().or(file.clone());
        let d = Limits::default();
        let node_memory_bytes = set.node_memory_bytes.unwrap_or(d.node_memory_bytes);
        let ms = Duration::from_millis;
        let limits = Limits {
            max_connections: set.max_connections.unwrap_or(d.max_connections),
            superuser_reserved_connections: set
                .superuser_reserved_connections
                .unwrap_or(d.superuser_reserved_connections),
            max_message_bytes: set.max_message_bytes.unwrap_or(d.max_message_bytes),
            max_copy_line_bytes: set.max_copy_line_bytes.unwrap_or(d.max_copy_line_bytes),
            max_prepared_statements: set
                .max_prepared_statements
                .unwrap_or(d.max_prepared_statements),
            node_memory_bytes,
            query_memory_bytes: set.query_memory_bytes.unwrap_or(node_memory_bytes / 4),
            idle_session_timeout: set
                .idle_session_timeout_ms
                .map_or(d.idle_session_timeout, ms),
            idle_in_transaction_session_timeout: set
                .idle_in_transaction_session_timeout_ms
                .map_or(d.idle_in_transaction_session_timeout, ms),
            startup_timeout: set.startup_timeout_ms.map_or(d.startup_timeout, ms),
        };
        if limits.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if limits.superuser_reserved_connections >= limits.max_connections {
            return Err("superuser_reserved_connections must be less than max_connections".into());
        }
        if limits.max_message_bytes < 64 << 10 {
            return Err("max_message_bytes must be at least 65536".into());
        }
        if limits.query_memory_bytes > limits.node_memory_bytes {
            return Err("query_memory_bytes must not exceed node_memory_bytes".into());
        }
        Ok(limits)
    }
}
