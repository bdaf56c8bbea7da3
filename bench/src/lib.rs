//! vecraft-bench: drives any PostgreSQL-wire server that speaks pgvector's SQL (Vecraft, or
//! PostgreSQL + pgvector) through tokio-postgres, and reports load time, recall, QPS and
//! latency, side by side when two servers run.
//!
//! The flow: `dataset` (generated or read, with `truth`) → `server::load` (binary COPY,
//! index) → `run` (rounds of `query` passes over an `ef_search` sweep) → `report` (medians,
//! tables, JSON) and `plot` (SVG).

pub mod cli;
pub mod dataset;
pub mod files;
pub mod plot;
pub mod progress;
pub mod query;
pub mod report;
pub mod run;
pub mod server;
pub mod stats;
pub mod synthetic;
pub mod truth;
pub mod vectors;
