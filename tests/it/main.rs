//! The `vecraft` binary as users run it: a real process, killed and restarted.

mod crash;
