//! `vecraft-sql`: the gateway. The PostgreSQL wire protocol (pgwire) in front of the planner:
//! per-connection sessions (`session.rs`), the simple and extended query protocols with plans
//! kept across executions (`prepared.rs`, `params.rs`), COPY FROM STDIN (`copy.rs`), DDL on
//! the node's catalog of collections, rows encoded as PostgreSQL text or binary (`encode.rs`),
//! errors mapped to SQLSTATEs (`errors.rs`), the gateway's metrics (`metrics.rs`).
//!
//! The system catalog drivers and psql read is `pg_catalog/`.
//!
//! What a client may take of the node is bounded here (README "Limits"): frames are checked
//! before pgwire decodes them (`frames.rs`); sockets, sessions and prepared statements are
//! counted (`limits.rs`, `server.rs`); queries draw memory from pools (`memory.rs`); deep
//! statements run on a stack of their own (`stack.rs`). Still to come: roles, passwords, TLS.

pub mod advisory_locks;
pub mod auth;
pub mod backup_schedule;
pub mod backups;
pub mod catalog;
pub mod collections;
pub mod copy;
pub mod ddl;
pub mod drain;
pub mod encode;
pub mod errors;
pub mod explain;
pub mod foreign_keys;
pub mod frames;
pub mod handler;
pub mod idents;
pub mod index;
pub mod limits;
pub mod local_settings;
pub mod memory;
pub mod meta_members;
pub mod metrics;
pub mod numeric;
pub mod params;
pub mod pg_catalog;
pub mod positions;
pub mod prepared;
pub mod privileges;
pub mod rates;
pub mod roles;
pub mod schemas;
pub mod search_path;
pub mod sequences;
pub mod server;
pub mod session;
pub mod settings;
pub mod socket;
mod sql_prepare;
pub mod stack;
pub mod tls;
pub mod transactions;
mod txn_resolver;
