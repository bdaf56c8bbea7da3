//! The snapshot service's data path: backups of collections to an object store and restores
//! from them, into the same shape or another.
//!
//! A backup takes a Raft snapshot of every shard (the shard seals and persists, then streams
//! its files at a recorded log index), stores each file once by its content hash, and then
//! writes a manifest naming them (`store.rs` has the layout), so a later backup uploads only
//! new segments and an interrupted one is never seen. A restore rebuilds a collection from a
//! manifest: with as many shards as the backup had, each shard installs its snapshot as it was
//! (segments and graphs reused); with another count, rows are routed anew by their keys. The
//! new collection is built aside and appears whole, or not at all. Retention deletes old
//! backups and the blobs only they named (`retention.rs`).

mod manifest;
pub mod progress;
mod restore;
mod retention;
pub mod store;
mod take;

pub use manifest::{BackupManifest, BlobRef, CollectionBackup, ShardBackup};
pub use restore::{RestoreInfo, restore_into, restore_routed};
pub use retention::{Retained, retain};
pub use store::{BackupStore, StoreOptions};
pub use take::backup;

/// Where backups and restores report their steps (a log line each).
pub type Report<'a> = &'a (dyn Fn(&str) + Sync);

#[cfg(test)]
mod tests;
