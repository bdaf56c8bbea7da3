//! A collection: one or more shards (`WITH (shards = n)`), each behind its own Raft group, and
//! the routing between them (`route.rs`): rows go to the shard of their primary key, searches
//! ask every shard (at once) and keep the nearest of their answers, scans read them all. The
//! shards are on this node (`LocalShard`, the embedded single node) or on storage nodes of a
//! cluster (`RemoteShard`); the routing is the same (`ShardHandle`).
//!
//! What is atomic: each shard applies its part of a statement all or nothing. A statement
//! that touches several shards is checked for every one of them before any is written (a bad
//! vector or a wrong column refuses the whole statement; on one node a duplicate key too,
//! whereas in a cluster a shard finds its duplicate keys when it applies its part), but if a
//! shard then fails, the parts already written stay, and the error says how many rows they
//! held.
//!
//! On disk (on a single node): a one-shard collection is the shard itself (`log/`, `shard/`);
//! with more, a `SHARDS` file holds the count and shard `i` lives in `shards/<i>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use vecraft_storage::fsutil::{create_dir_durable, sync_dir, write_atomic};
use vecraft_storage::schema::CollectionSchema;
use vecraft_storage::shard::ShardOptions;
use vecraft_storage::{Error, Result};

use crate::local::LocalShard;
use crate::read::Consistency;
use crate::shard_handle::ShardHandle;

mod reads;
mod writes;

const SHARDS_FILE: &str = "SHARDS";
/// The most shards one collection may have.
pub const MAX_SHARDS: usize = 256;
/// The most replicas one shard may have.
pub const MAX_REPLICAS: usize = 7;

pub struct Collection {
    /// Where a collection of this node's own shards lives; `None` in a cluster.
    dir: Option<PathBuf>,
    shards: Vec<Arc<dyn ShardHandle>>,
    /// The next row id, for a collection whose key is a hidden row id.
    next_row_id: AtomicI64,
    /// Held across checking and writing a statement's parts on several shards, so no other
    /// statement's parts come between.
    routed_writes: tokio::sync::Mutex<()>,
    /// Reads a cluster collection's sequences from the meta group; `None` on a single node,
    /// where they are files under `dir`.
    sequences: Option<SequenceReader>,
}

/// Reads the next value of each of a collection's sequences, by the sequence's name.
pub type SequenceReader = Arc<dyn Fn() -> Result<BTreeMap<String, i64>> + Send + Sync>;

/// What one shard answered for a search or scan, and how long it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardTrace {
    pub rows: usize,
    pub elapsed: Duration,
}

impl ShardTrace {
    fn of(batches: &[RecordBatch], started: Instant) -> ShardTrace {
        ShardTrace {
            rows: batches.iter().map(RecordBatch::num_rows).sum(),
            elapsed: started.elapsed(),
        }
    }
}

/// A shared handle, as the planner and gateway hold it.
pub type CollectionHandle = Arc<Collection>;

impl Collection {
    /// Opens the collection in `dir`, or creates it with `schema` in one shard.
    pub fn open(dir: &Path, schema: Option<CollectionSchema>, opts: ShardOptions) -> Result<Self> {
        match schema {
            Some(schema) if !holds_collection(dir) => Collection::create(dir, schema, 1, opts),
            _ => Collection::open_existing(dir, opts),
        }
    }

    /// Creates the collection in `dir` with `schema` over `shards` shards.
    pub fn create(
        dir: &Path,
        schema: CollectionSchema,
        shards: usize,
        opts: ShardOptions,
    ) -> Result<Self> {
        let staging = Collection::build_staged(dir, schema, shards, &opts)?;
        Collection::publish(&staging, dir, opts)
    }

    /// Writes a new, empty collection of `shards` shards where it is built before it becomes
    /// `dir` ([`staging_dir`]), closed; returns that place. Built aside and renamed into place
    /// ([`Collection::publish`]), a collection is never seen half made: a crash or a failure
    /// halfway leaves a staging directory, which the catalog removes at open.
    pub fn build_staged(
        dir: &Path,
        schema: CollectionSchema,
        shards: usize,
        opts: &ShardOptions,
    ) -> Result<PathBuf> {
        if !(1..=MAX_SHARDS).contains(&shards) {
            return Err(Error::InvalidArgument(format!(
                "shards must be between 1 and {MAX_SHARDS}, not {shards}"
            )));
        }
        let staging = staging_dir(dir);
        let built = match shards {
            1 => Collection::build_one(&staging, schema, opts),
            _ => Collection::build(&staging, &schema, shards, opts),
        };
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        Ok(staging)
    }

    /// Renames the collection built at `staging` to `dir`, durably, and opens it there.
    pub fn publish(staging: &Path, dir: &Path, opts: ShardOptions) -> Result<Self> {
        std::fs::rename(staging, dir).map_err(|e| Error::io("rename into place", dir, e))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Collection::open_existing(dir, opts)
    }

    /// A collection whose shards are elsewhere (a cluster's storage nodes), reached through
    /// `shards`. Its key is never a hidden row id (a cluster refuses those).
    pub fn remote(shards: Vec<Arc<dyn ShardHandle>>) -> Result<Self> {
        Collection::assemble(None, shards)
    }

    /// Writes a new collection of one shard in `dir` (the shard's own layout, with no
    /// `SHARDS` file) and closes it again.
    fn build_one(dir: &Path, schema: CollectionSchema, opts: &ShardOptions) -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io("remove", dir, e))?;
        }
        drop(LocalShard::open(dir, Some(schema), opts.clone())?);
        Ok(())
    }

    /// Stops every shard kept on this node for good (see [`ShardHandle::close`]).
    pub fn close(&self) {
        for shard in &self.shards {
            shard.close();
        }
    }

    /// Writes a new collection of `shards` shards in `dir` and closes it again.
    fn build(
        dir: &Path,
        schema: &CollectionSchema,
        shards: usize,
        opts: &ShardOptions,
    ) -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io("remove", dir, e))?;
        }
        create_dir_durable(dir)?;
        write_atomic(&dir.join(SHARDS_FILE), shards.to_string().as_bytes())?;
        for i in 0..shards {
            LocalShard::open(
                &shard_dir(dir, shards, i),
                Some(schema.clone()),
                opts.clone(),
            )?;
        }
        Ok(())
    }

    /// Opens the collection in `dir` (one that exists).
    pub fn open_existing(dir: &Path, opts: ShardOptions) -> Result<Self> {
        let count = shard_count(dir)?;
        let shards = (0..count)
            .map(|i| {
                LocalShard::open(&shard_dir(dir, count, i), None, opts.clone())
                    .map(|s| Arc::new(s) as Arc<dyn ShardHandle>)
            })
            .collect::<Result<Vec<_>>>()?;
        Collection::assemble(Some(dir), shards)
    }

    fn assemble(dir: Option<&Path>, shards: Vec<Arc<dyn ShardHandle>>) -> Result<Self> {
        assert!(!shards.is_empty(), "a collection has a shard");
        debug_assert!(
            shards.windows(2).all(|p| p[0].schema() == p[1].schema()),
            "every shard of a collection has its schema"
        );
        let mut max_row_id = 0;
        for shard in &shards {
            max_row_id = max_row_id.max(max_row_id_of(shard.as_ref())?);
        }
        Ok(Collection {
            dir: dir.map(Path::to_path_buf),
            shards,
            next_row_id: AtomicI64::new(max_row_id + 1),
            routed_writes: tokio::sync::Mutex::const_new(()),
            sequences: None,
        })
    }

    /// Gives a cluster collection the reader of its sequences.
    pub fn with_sequences(mut self, reader: SequenceReader) -> Self {
        self.sequences = Some(reader);
        self
    }

    /// The next value of each of the collection's sequences, by the sequence's name (what a
    /// backup keeps of them).
    pub fn sequences(&self) -> Result<BTreeMap<String, i64>> {
        if let Some(read) = &self.sequences {
            return read();
        }
        let mut sequences = BTreeMap::new();
        let Some(dir) = self.dir.as_ref().map(|d| d.join("sequences")) else {
            return Ok(sequences);
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(sequences),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| Error::io("list", &dir, e))?.path();
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
            let next = text
                .trim()
                .parse::<i64>()
                .map_err(|e| Error::corrupt(&path, e.to_string()))?;
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            sequences.insert(name.to_string(), next);
        }
        Ok(sequences)
    }

    /// Where the collection's files are, on a single node.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn shards(&self) -> &[Arc<dyn ShardHandle>] {
        &self.shards
    }

    pub fn schema(&self) -> Arc<CollectionSchema> {
        self.shards[0].schema()
    }

    /// Live rows, over every shard that answers.
    pub fn count(&self) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.status().ok())
            .map(|s| s.rows)
            .sum()
    }

    /// Seals and persists every shard and purges the logs they no longer need. Returns, per
    /// shard, the index up to which its log was purged.
    pub fn checkpoint(&self) -> Result<Vec<u64>> {
        self.shards.iter().map(|s| s.checkpoint()).collect()
    }

    /// Rebuilds every shard's older segments with the current index parameters.
    pub fn reindex(&self) -> Result<()> {
        self.shards.iter().try_for_each(|s| s.reindex())
    }
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("dir", &self.dir)
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// Where a collection of several shards is built before it is renamed to `dir`.
pub fn staging_dir(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    dir.with_file_name(format!(".{name}.creating"))
}

/// Where shard `i` of a collection of `shards` shards in `dir` lives.
pub fn shard_dir(dir: &Path, shards: usize, i: usize) -> PathBuf {
    if shards == 1 {
        dir.to_path_buf()
    } else {
        dir.join("shards").join(i.to_string())
    }
}

/// Whether `dir` holds a collection: several shards (a `SHARDS` file) or one (its log).
fn holds_collection(dir: &Path) -> bool {
    dir.join(SHARDS_FILE).exists() || dir.join("log").exists()
}

fn shard_count(dir: &Path) -> Result<usize> {
    let path = dir.join(SHARDS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(n),
            _ => Err(Error::corrupt(
                &path,
                format!("not a shard count: {text:?}"),
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

/// The largest row id in a shard of a collection keyed by a hidden row id (0 when empty or
/// keyed by the user).
fn max_row_id_of(shard: &dyn ShardHandle) -> Result<i64> {
    let schema = shard.schema();
    if !schema.hidden_key {
        return Ok(0);
    }
    let key = schema.columns[schema.primary_key].name.clone();
    let mut max = 0;
    for batch in shard.scan(Some(&[key]), None, Consistency::Strong)? {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        if let Some(m) = arrow::compute::max(ids) {
            max = max.max(m);
        }
        debug_assert_eq!(ids.null_count(), 0, "row ids are never null");
    }
    Ok(max)
}
