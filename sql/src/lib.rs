//! `vecraft-sql`: the gateway. The PostgreSQL wire protocol (pgwire) in front of the planner:
//! per-connection sessions (`session.rs`), the simple and extended query protocols with plans
//! kept across executions (`prepared.rs`, `params.rs`), COPY FROM STDIN (`copy.rs`), DDL on
//! the node's catalog of collections, rows encoded as PostgreSQL text or binary (`encode.rs`),
//! errors mapped to SQLSTATEs (`errors.rs`), the gateway's metrics (`metrics.rs`).
//!
//! The system catalog drivers and psql read is `pg_catalog/`. Still to come (issue #3): auth and TLS.

pub mod catalog;
pub mod collections;
pub mod copy;
pub mod ddl;
pub mod encode;
pub mod errors;
pub mod handler;
pub mod index;
pub mod metrics;
pub mod params;
pub mod pg_catalog;
pub mod prepared;
pub mod server;
pub mod session;
pub mod settings;
pub mod socket;
