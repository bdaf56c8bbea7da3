//! The gateway over the wire, with a real PostgreSQL driver (tokio-postgres).

mod cancel;
mod catalog;
mod copy;
mod ddl;
mod extended;
mod limits;
mod races;
mod support;
mod transactions;
mod wire;
