//! A transaction's writes, kept apart from everyone else's until COMMIT, and seen by the
//! transaction's own reads (issue 15). A [`TxnSource`] stands in front of a collection for one
//! session: outside a transaction it passes everything through; inside one, a write is
//! checked (duplicate keys against the collection and the transaction's own rows) and staged,
//! and scans and searches answer from the collection with the transaction's rows laid over
//! it — a touched key shows the transaction's row, or none if it deleted it.
//!
//! COMMIT sends each collection the transaction's net effect on it, committed atomically
//! across shards and collections (`vecraft_cluster::txn`); ROLLBACK drops it; a savepoint
//! marks how many commands there were and what the touched rows were then.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::error::Result;
use parking_lot::Mutex;
use vecraft_storage::command::Command;
use vecraft_storage::filter::Filter;
use vecraft_storage::key::{Key, keys_of};

use vecraft_cluster::collection::Collection;
use vecraft_storage::shard::VERSION_COLUMN;
use vecraft_storage::txn::TxnWrite;

use crate::collection::{CollectionSource, Consistency, storage_error};
use crate::error::VectorError;

mod source;

pub use source::TxnSource;

/// The most rows a transaction may stage: past it a write is refused (54000) rather than
/// the gateway's memory filling with a bulk load that should run outside a transaction.
pub const MAX_STAGED_ROWS: usize = 1_000_000;

/// The rows a transaction has touched in one collection: each key's row now (`None`:
/// deleted), and whether it emptied the collection first.
#[derive(Clone, Debug, Default)]
struct Overlay {
    truncated: bool,
    rows: BTreeMap<Key, Option<RecordBatch>>,
}

impl Overlay {
    fn is_empty(&self) -> bool {
        !self.truncated && self.rows.is_empty()
    }

    /// Whether the collection's own row of `key` is hidden by this transaction.
    fn hides(&self, key: &Key) -> bool {
        self.truncated || self.rows.contains_key(key)
    }

    /// The live rows the transaction wrote, as one batch of `schema`.
    fn live(&self, schema: &SchemaRef) -> Result<Option<RecordBatch>> {
        let rows: Vec<&RecordBatch> = self.rows.values().flatten().collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let rows: Vec<RecordBatch> = rows
            .into_iter()
            .map(|r| RecordBatch::try_new(Arc::clone(schema), r.columns().to_vec()))
            .collect::<std::result::Result<_, _>>()?;
        Ok(Some(concat_batches(schema, &rows)?))
    }
}

/// A savepoint: its name, and the transaction as it was when it was taken (the touched rows
/// shared with the transaction until either changes them).
#[derive(Debug)]
struct Savepoint {
    name: String,
    staged: usize,
    overlays: HashMap<String, Arc<Overlay>>,
}

/// One open transaction: the staged commands, per collection the rows they touched, and the
/// savepoints taken.
#[derive(Debug, Default)]
pub struct Transaction {
    staged: Vec<(String, Command)>,
    overlays: HashMap<String, Arc<Overlay>>,
    savepoints: Vec<Savepoint>,
    /// Rows written so far, held against [`MAX_STAGED_ROWS`].
    staged_rows: usize,
    /// Per collection, the version of each row of the collection the transaction updated or
    /// deleted, as it read it: the commit fails if another write changed one meanwhile.
    read: HashMap<String, HashMap<Key, u64>>,
}

/// A session's transaction, if one is open, shared by the session's collection sources.
#[derive(Debug, Default)]
pub struct TransactionSlot(Mutex<Option<Transaction>>);

fn no_savepoint(name: &str) -> VectorError {
    VectorError::new("3B001", format!("savepoint \"{name}\" does not exist"))
}

impl TransactionSlot {
    /// Opens a transaction (an open one stays as it is, as PostgreSQL's BEGIN inside a block).
    pub fn begin(&self) {
        self.0.lock().get_or_insert_with(Transaction::default);
    }

    pub fn is_open(&self) -> bool {
        self.0.lock().is_some()
    }

    /// Closes the transaction, giving it to COMMIT (or to nothing, for ROLLBACK).
    pub fn take(&self) -> Option<Transaction> {
        self.0.lock().take()
    }

    /// `SAVEPOINT name` (a name taken again hides the older one until it is released).
    pub fn savepoint(&self, name: &str) -> Result<()> {
        let mut slot = self.0.lock();
        let Some(txn) = slot.as_mut() else {
            let message = "SAVEPOINT can only be used in transaction blocks";
            return Err(VectorError::new("25P01", message).into());
        };
        let savepoint = Savepoint {
            name: name.to_string(),
            staged: txn.staged.len(),
            overlays: txn.overlays.clone(),
        };
        txn.savepoints.push(savepoint);
        Ok(())
    }

    /// Whether the open transaction holds a savepoint `name`.
    pub fn has_savepoint(&self, name: &str) -> bool {
        let slot = self.0.lock();
        slot.as_ref().is_some_and(|t| t.position(name).is_ok())
    }

    /// `RELEASE name`: forgets the savepoint and the ones taken after it; keeps the writes.
    pub fn release(&self, name: &str) -> Result<()> {
        let mut slot = self.0.lock();
        let txn = slot.as_mut().ok_or_else(|| no_savepoint(name))?;
        let at = txn.position(name)?;
        txn.savepoints.truncate(at);
        Ok(())
    }

    /// `ROLLBACK TO name`: the writes since the savepoint are dropped; it stays, as in
    /// PostgreSQL, and the ones taken after it go.
    pub fn rollback_to(&self, name: &str) -> Result<()> {
        let mut slot = self.0.lock();
        let txn = slot.as_mut().ok_or_else(|| no_savepoint(name))?;
        let at = txn.position(name)?;
        txn.savepoints.truncate(at + 1);
        let savepoint = &txn.savepoints[at];
        txn.staged.truncate(savepoint.staged);
        txn.overlays = savepoint.overlays.clone();
        txn.staged_rows = txn.staged.iter().map(|(_, c)| rows_of(c)).sum();
        Ok(())
    }
}

impl Transaction {
    /// The newest savepoint named `name`.
    fn position(&self, name: &str) -> Result<usize> {
        self.savepoints
            .iter()
            .rposition(|s| s.name == name)
            .ok_or_else(|| no_savepoint(name).into())
    }

    /// The number of commands staged.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Commits the transaction: its net effect on each collection it wrote (`collection_of`
    /// finds them by name), all of it or none (`vecraft_cluster::txn`). A key an INSERT
    /// created that another session committed meanwhile fails the COMMIT (40001, the first
    /// committer wins), as does a write that meets another transaction's commit.
    pub fn commit(self, collection_of: impl Fn(&str) -> Option<Arc<Collection>>) -> Result<()> {
        let mut names: Vec<&String> = self.overlays.keys().collect();
        names.sort(); // the first collection's first shard coordinates: the same every time
        let mut writes = Vec::new();
        for name in names {
            let overlay = &self.overlays[name];
            if overlay.is_empty() {
                continue;
            }
            let collection = collection_of(name).ok_or_else(|| {
                VectorError::new("42P01", format!("relation \"{name}\" does not exist"))
            })?;
            let write = self.net_write(name, overlay, &collection.schema())?;
            writes.push((name.clone(), collection, write));
        }
        vecraft_cluster::txn::commit(writes).map_err(storage_error)
    }

    /// The transaction's net effect on collection `name`: its rows as they are now, the
    /// keys it removed, and which of its rows' keys it created (they must still be free).
    fn net_write(
        &self,
        name: &str,
        overlay: &Overlay,
        schema: &vecraft_storage::schema::CollectionSchema,
    ) -> Result<TxnWrite> {
        let (created, if_free) = self.created_keys(name, &schema.primary_key().name)?;
        let read = self.read.get(name);
        let mut write = TxnWrite {
            truncate: overlay.truncated,
            upserts: overlay.live(&schema.arrow_schema())?,
            ..TxnWrite::default()
        };
        for (key, row) in &overlay.rows {
            let made = created.contains(key) || if_free.contains(key);
            if let Some(version) = read.and_then(|r| r.get(key)).filter(|_| !made) {
                write.read_versions.push((key.clone(), *version));
            }
            match row {
                Some(_) if created.contains(key) => write.new_keys.push(key.clone()),
                Some(_) if if_free.contains(key) => write.if_missing.push(key.clone()),
                None if !made => write.deletes.push(key.clone()),
                // Updated rows are written as they are; created and removed again: nothing.
                Some(_) | None => {}
            }
        }
        Ok(write)
    }

    /// The keys the transaction's INSERTs on `name` created, and those its `INSERT … ON
    /// CONFLICT DO NOTHING`s created (written at commit only if still free): not ones it had
    /// deleted (or emptied the collection of) before.
    fn created_keys(&self, name: &str, pk: &str) -> Result<(HashSet<Key>, HashSet<Key>)> {
        let (mut truncated, mut deleted) = (false, HashSet::new());
        let (mut created, mut if_free) = (HashSet::new(), HashSet::new());
        for (_, command) in self.staged.iter().filter(|(n, _)| n == name) {
            match command {
                Command::Truncate => truncated = true,
                Command::Delete(keys) => deleted.extend(keys.iter().cloned()),
                Command::Insert(batch) | Command::InsertMissing(batch) if !truncated => {
                    let into = match command {
                        Command::Insert(_) => &mut created,
                        _ => &mut if_free,
                    };
                    let keys = batch_keys(batch, pk)?;
                    into.extend(keys.into_iter().filter(|k| !deleted.contains(k)));
                }
                _ => {}
            }
        }
        Ok((created, if_free))
    }

    /// Checks and stages `command` on collection `name` (`base`); the rows it writes or
    /// deletes.
    fn stage(&mut self, name: &str, base: &dyn CollectionSource, command: &Command) -> Result<u64> {
        let rows = rows_of(command);
        if self.staged_rows.saturating_add(rows) > MAX_STAGED_ROWS {
            let message = format!(
                "a transaction writes at most {MAX_STAGED_ROWS} rows: load larger sets outside \
                 a transaction block (each statement then commits on its own)"
            );
            return Err(VectorError::new("54000", message).into());
        }
        let schema = base.schema();
        let pk = schema.primary_key().name.clone();
        // Shared with the savepoints taken since it last changed: copied on this write.
        let overlay = Arc::make_mut(self.overlays.entry(name.to_string()).or_default());
        let count = match command {
            Command::Insert(batch) => {
                let keys = batch_keys(batch, &pk)?;
                let live = live_keys(overlay, &keys, &base_versions(overlay, base, &pk, &keys)?);
                let mut seen = HashSet::with_capacity(keys.len());
                for key in &keys {
                    if live.contains(key) || !seen.insert(key) {
                        let e = vecraft_storage::Error::DuplicateKey(key.to_string());
                        return Err(storage_error(e));
                    }
                }
                put_rows(overlay, batch, &keys);
                keys.len()
            }
            Command::InsertMissing(batch) => {
                let keys = batch_keys(batch, &pk)?;
                let live = live_keys(overlay, &keys, &base_versions(overlay, base, &pk, &keys)?);
                let mut seen = HashSet::with_capacity(keys.len());
                let new: Vec<bool> = keys
                    .iter()
                    .map(|k| !live.contains(k) && seen.insert(k.clone()))
                    .collect();
                let rows = filter_record_batch(batch, &BooleanArray::from(new.clone()))?;
                let new_keys: Vec<Key> = keys
                    .into_iter()
                    .zip(&new)
                    .filter_map(|(k, n)| n.then_some(k))
                    .collect();
                put_rows(overlay, &rows, &new_keys);
                let n = new_keys.len();
                self.staged_rows += rows.num_rows();
                self.staged
                    .push((name.to_string(), Command::InsertMissing(rows)));
                return Ok(n as u64);
            }
            Command::Upsert(batch) => {
                let keys = batch_keys(batch, &pk)?;
                let versions = base_versions(overlay, base, &pk, &keys)?;
                first_reads(self.read.entry(name.to_string()).or_default(), versions);
                put_rows(overlay, batch, &keys);
                keys.len()
            }
            Command::Delete(keys) => {
                let versions = base_versions(overlay, base, &pk, keys)?;
                let live = live_keys(overlay, keys, &versions);
                first_reads(self.read.entry(name.to_string()).or_default(), versions);
                for key in keys {
                    overlay.rows.insert(key.clone(), None);
                }
                live.len()
            }
            Command::Truncate => {
                *overlay = Overlay {
                    truncated: true,
                    rows: BTreeMap::new(),
                };
                0
            }
            // An index is the collection's, not the transaction's: built at once.
            Command::SetIndex { .. } => return base.write(command),
            Command::Atomic(_)
            | Command::Prepare { .. }
            | Command::Resolve { .. }
            | Command::Forget { .. } => {
                let message = "a transaction's commit cannot be staged in a transaction";
                return Err(VectorError::new("XX000", message).into());
            }
        };
        self.staged_rows += rows;
        self.staged.push((name.to_string(), command.clone()));
        Ok(count as u64)
    }
}

/// The rows a command carries (a DELETE counts its keys).
fn rows_of(command: &Command) -> usize {
    match command {
        Command::Insert(b) | Command::Upsert(b) | Command::InsertMissing(b) => b.num_rows(),
        Command::Delete(keys) => keys.len(),
        Command::Atomic(write) | Command::Prepare { write, .. } => write.rows(),
        Command::Truncate
        | Command::SetIndex { .. }
        | Command::Resolve { .. }
        | Command::Forget { .. } => 0,
    }
}

/// The primary keys of `batch`'s rows.
fn batch_keys(batch: &RecordBatch, pk: &str) -> Result<Vec<Key>> {
    let column = batch
        .column_by_name(pk)
        .ok_or_else(|| VectorError::new("XX000", format!("a write without its key {pk}")))?;
    keys_of(column).map_err(storage_error)
}

/// Each row of `batch` as the row of its key (a repeated key: the last row).
fn put_rows(overlay: &mut Overlay, batch: &RecordBatch, keys: &[Key]) {
    debug_assert_eq!(batch.num_rows(), keys.len());
    for (i, key) in keys.iter().enumerate() {
        overlay.rows.insert(key.clone(), Some(batch.slice(i, 1)));
    }
}

/// Which of `keys` are live in the transaction: its own rows, and the collection's rows it
/// has not hidden (`versions`, from [`base_versions`]).
fn live_keys(overlay: &Overlay, keys: &[Key], versions: &HashMap<Key, u64>) -> HashSet<Key> {
    keys.iter()
        .filter(|k| matches!(overlay.rows.get(*k), Some(Some(_))) || versions.contains_key(*k))
        .cloned()
        .collect()
}

/// The versions of the collection's rows of those of `keys` the transaction has not hidden
/// (its own rows and deletions stand in front of them): one scan, by key.
fn base_versions(
    overlay: &Overlay,
    base: &dyn CollectionSource,
    pk: &str,
    keys: &[Key],
) -> Result<HashMap<Key, u64>> {
    let unhidden: Vec<Key> = keys.iter().filter(|k| !overlay.hides(k)).cloned().collect();
    let mut versions = HashMap::new();
    if unhidden.is_empty() {
        return Ok(versions);
    }
    let filter = Filter::keys_in(pk, &unhidden);
    let projection = [pk.to_string(), VERSION_COLUMN.to_string()];
    for batch in base.scan(Some(&projection), Some(&filter), Consistency::Strong)? {
        let found = batch
            .column_by_name(VERSION_COLUMN)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| VectorError::new("XX000", "a scan without row versions"))?;
        let keys = keys_of(batch.column(0)).map_err(storage_error)?;
        versions.extend(keys.into_iter().zip(found.values().iter().copied()));
    }
    Ok(versions)
}

/// Records the versions of the rows an UPDATE or DELETE is about to change, for the commit
/// to check; a row read before keeps the version it had then.
fn first_reads(read: &mut HashMap<Key, u64>, versions: HashMap<Key, u64>) {
    for (key, version) in versions {
        read.entry(key).or_insert(version);
    }
}
