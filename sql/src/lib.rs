//! `vecraft-sql`: the gateway. The PostgreSQL wire protocol (pgwire) in front of the planner:
//! per-connection DataFusion sessions, DDL on the node's catalog of collections, rows encoded
//! as PostgreSQL text, errors mapped to SQLSTATEs (`errors.rs`).
//!
//! This slice speaks the simple query protocol (what psql uses). The extended protocol,
//! COPY, the pg_catalog tables psql's `\d` reads, auth and TLS come next (issue #3).

pub mod catalog;
pub mod ddl;
pub mod encode;
pub mod errors;
pub mod handler;
pub mod server;
