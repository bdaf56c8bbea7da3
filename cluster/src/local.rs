//! One shard on this node: the `Shard` behind its Raft group, whose log is the shard's storage
//! log, so every acknowledged write survives `kill -9`.
//!
//! Write: check the command against the schema, propose it to the group, and return once it is
//! durable, committed and applied (`raft::Group`). Open: `Shard::open` comes back at its
//! durable index and the group replays the log after it before the shard is handed out.
//! `checkpoint` is a Raft snapshot: the shard seals and persists, then the log it covers is
//! purged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vecraft_storage::Result;
use vecraft_storage::command::Command;
use vecraft_storage::log::{Log, LogOptions};
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::{Applied, Shard, ShardOptions};

use crate::raft::{Group, GroupStatus};

pub struct LocalShard {
    dir: PathBuf,
    shard: Arc<Shard>,
    group: Group,
}

impl LocalShard {
    /// Opens (or creates, with `schema`) the shard in `dir` and replays its log.
    pub fn open(dir: &Path, schema: Option<CollectionSchema>, opts: ShardOptions) -> Result<Self> {
        // The log's directory lock comes first: opening the shard removes files its manifest
        // does not name, which must never happen beside a live instance.
        let (log, _recovery) = Log::open(&dir.join("log"), LogOptions::default())?;
        let shard = Arc::new(Shard::open(&dir.join("shard"), schema, opts)?);
        let group = Group::start(dir, Arc::new(log), Arc::clone(&shard))?;
        Ok(LocalShard {
            dir: dir.to_path_buf(),
            shard,
            group,
        })
    }

    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the shard's Raft group says of itself.
    pub fn status(&self) -> GroupStatus {
        self.group.status()
    }

    /// Whether the shard would take `command` now (schema, types, dimensions, new keys).
    pub fn check(&self, command: &Command) -> Result<()> {
        self.shard.check(command)
    }

    /// Makes `command` durable through the shard's Raft group, applies it, and only then
    /// returns. A command the schema refuses is refused here, before it reaches the log.
    pub fn write(&self, command: &Command) -> Result<Applied> {
        self.shard.check(command)?;
        self.propose(command)
    }

    /// `write` for a command the caller has just checked (`check`).
    pub fn propose(&self, command: &Command) -> Result<Applied> {
        self.group.write(command.encode()?)
    }

    /// Seals and persists the shard, then drops the log it no longer needs. Returns the index
    /// up to which the log was purged.
    pub fn checkpoint(&self) -> Result<u64> {
        self.group.checkpoint()
    }
}

impl std::fmt::Debug for LocalShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalShard")
            .field("dir", &self.dir)
            .finish()
    }
}
