//! The gateway over the wire, with a real PostgreSQL driver (tokio-postgres).

mod copy;
mod extended;
mod support;
mod wire;
