//! The `vecraft` binary as users run it: a real process, configured, probed, killed and
//! restarted.

mod backup;
mod bench;
mod clients;
mod cluster;
mod compactor;
mod crash;
mod limits;
mod nemesis;
mod node;
mod security;
mod support;
mod tls;
