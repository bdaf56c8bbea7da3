//! Foreign keys (`REFERENCES`), kept by the gateway as PostgreSQL keeps them.
//!
//! Storage knows nothing of other collections, so a collection that has foreign keys, or is
//! referenced by one, is written through [`Referencing`], which does before each write what
//! PostgreSQL's referential triggers do:
//! - a written row's value must be in the referenced table (23503);
//! - a DELETE of referenced rows is refused while rows reference them (`NO ACTION`,
//!   `RESTRICT`), or first deletes those rows (`CASCADE`, level by level) or sets their column
//!   to NULL (`SET NULL`); every refusal is found before anything is changed;
//!
//! Without transactions (issue 15) a check and the write it guards are two steps: a parent
//! row deleted by another session between them can leave an orphan.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type};
use datafusion::error::Result;
use futures::future::BoxFuture;
use vecraft_storage::command::Command;
use vecraft_storage::filter::Filter;
use vecraft_storage::key::{Key, keys_of};
use vecraft_storage::names::split_qualified;
use vecraft_storage::schema::{CollectionSchema, ForeignKey, OnDelete};
use vecraft_storage::shard::SearchRequest;

use crate::collection::{CollectionSource, Consistency, ShardTrace, storage_error};
use crate::error::VectorError;

/// `foreign_key_violation`
const FOREIGN_KEY_VIOLATION: &str = "23503";
/// How many levels a cascade may go down (a self-referencing tree, one level per step).
const MAX_CASCADE_DEPTH: usize = 1_000;

/// The tables of the catalog, as one statement sees them, and who references whom.
#[derive(Debug, Default)]
pub struct ForeignKeys {
    sources: HashMap<String, Arc<dyn CollectionSource>>,
    /// Each table's own foreign keys.
    keys: HashMap<String, Vec<ForeignKey>>,
    /// Per referenced table: the tables referencing it, with their key.
    referenced_by: HashMap<String, Vec<(String, ForeignKey)>>,
}

impl ForeignKeys {
    pub fn new(tables: impl IntoIterator<Item = (String, Arc<dyn CollectionSource>)>) -> Self {
        let mut this = ForeignKeys::default();
        for (name, source) in tables {
            let keys = source.schema().foreign_keys;
            for key in &keys {
                let children = this.referenced_by.entry(key.table.clone()).or_default();
                children.push((name.clone(), key.clone()));
            }
            if !keys.is_empty() {
                this.keys.insert(name.clone(), keys);
            }
            this.sources.insert(name, source);
        }
        this
    }

    /// Table `name`'s `source` as SQL writes it: through its foreign keys, if it has or is
    /// referenced by any; else as it is.
    pub fn source(
        self: &Arc<Self>,
        name: &str,
        source: Arc<dyn CollectionSource>,
    ) -> Arc<dyn CollectionSource> {
        if !self.keys.contains_key(name) && !self.referenced_by.contains_key(name) {
            return source;
        }
        Arc::new(Referencing {
            inner: source,
            name: name.to_string(),
            keys: Arc::clone(self),
        })
    }

    /// Refuses `batch`, rows about to be written into `table`, when a value of one of its
    /// foreign keys is not in the referenced table.
    fn check_parents(&self, table: &str, batch: &RecordBatch) -> Result<()> {
        for key in self.keys.get(table).into_iter().flatten() {
            // A dropped parent (`DROP TABLE … CASCADE`) takes the constraint with it.
            let Some(parent) = self.sources.get(&key.table) else {
                continue;
            };
            let Some(column) = batch.column_by_name(&key.column) else {
                continue;
            };
            let mut wanted = distinct(values_of(column)?.into_iter().flatten());
            if key.table == table {
                // A row may reference a row written with it.
                if let Some(own) = batch.column_by_name(&key.referenced) {
                    let own: HashSet<Key> = values_of(own)?.into_iter().flatten().collect();
                    wanted.retain(|v| !own.contains(v));
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let found = present(parent.as_ref(), &key.referenced, &wanted)?;
            if let Some(missing) = wanted.iter().find(|v| !found.contains(v)) {
                let message = format!(
                    "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
                    shown(table),
                    key.name
                );
                let detail = format!(
                    "Key ({})=({missing}) is not present in table \"{}\".",
                    key.column,
                    shown(&key.table)
                );
                return Err(violation(message, detail));
            }
        }
        Ok(())
    }

    /// Before rows `keys` of `table` are deleted: refuses if rows of a `NO ACTION` or
    /// `RESTRICT` key reference them; then, unless `check_only`, deletes (`CASCADE`) or
    /// clears (`SET NULL`) the rows of the others.
    fn before_delete(
        &self,
        table: &str,
        source: &dyn CollectionSource,
        keys: &[Key],
        check_only: bool,
        depth: usize,
    ) -> Result<()> {
        let Some(children) = self.referenced_by.get(table) else {
            return Ok(());
        };
        if depth > MAX_CASCADE_DEPTH {
            return Err(VectorError::new("54001", "stack depth limit exceeded").into());
        }
        let mut actions = Vec::new();
        for (child_name, key) in children {
            let Some(child) = self.sources.get(child_name) else {
                continue;
            };
            let values = referenced_values(source, &key.referenced, keys)?;
            if values.is_empty() {
                continue;
            }
            let mut rows = referencing(child.as_ref(), &key.column, &values)?;
            if child_name == table {
                rows.retain(|(row, _)| !keys.contains(row)); // going in the same statement
            }
            let Some((_, value)) = rows.first() else {
                continue;
            };
            if matches!(key.on_delete, OnDelete::NoAction | OnDelete::Restrict) {
                let message = format!(
                    "update or delete on table \"{}\" violates foreign key constraint \"{}\" on \
                     table \"{}\"",
                    shown(table),
                    key.name,
                    shown(child_name)
                );
                let detail = format!(
                    "Key ({})=({value}) is still referenced from table \"{}\".",
                    key.referenced,
                    shown(child_name)
                );
                return Err(violation(message, detail));
            }
            let rows: Vec<Key> = rows.into_iter().map(|(row, _)| row).collect();
            actions.push((child_name, key, child, rows));
        }
        for (child_name, key, child, rows) in actions {
            match key.on_delete {
                OnDelete::Cascade => {
                    // What the cascade deletes may itself be referenced.
                    self.before_delete(child_name, child.as_ref(), &rows, check_only, depth + 1)?;
                    if check_only {
                        continue;
                    }
                    child.write(&Command::Delete(rows))?;
                }
                OnDelete::SetNull if check_only => {
                    check_nullable(child.as_ref(), child_name, &key.column)?
                }
                OnDelete::SetNull => set_null(child.as_ref(), child_name, &key.column, &rows)?,
                OnDelete::NoAction | OnDelete::Restrict => unreachable!("refused above"),
            }
        }
        Ok(())
    }
}

/// A collection written as its foreign keys say ([`ForeignKeys`]).
#[derive(Debug)]
struct Referencing {
    inner: Arc<dyn CollectionSource>,
    name: String,
    keys: Arc<ForeignKeys>,
}

impl CollectionSource for Referencing {
    fn schema(&self) -> CollectionSchema {
        self.inner.schema()
    }

    fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<Vec<RecordBatch>> {
        self.inner.scan(projection, filter, read)
    }

    fn search(&self, request: &SearchRequest, read: Consistency) -> Result<RecordBatch> {
        self.inner.search(request, read)
    }

    fn search_traced(
        &self,
        request: &SearchRequest,
        read: Consistency,
    ) -> Result<(RecordBatch, Vec<ShardTrace>)> {
        self.inner.search_traced(request, read)
    }

    fn scan_traced(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> Result<(Vec<RecordBatch>, Vec<ShardTrace>)> {
        self.inner.scan_traced(projection, filter, read)
    }

    fn search_traced_async<'a>(
        &'a self,
        request: &'a SearchRequest,
        read: Consistency,
    ) -> BoxFuture<'a, Result<(RecordBatch, Vec<ShardTrace>)>> {
        self.inner.search_traced_async(request, read)
    }

    fn scan_traced_async<'a>(
        &'a self,
        projection: Option<&'a [String]>,
        filter: Option<&'a Filter>,
        read: Consistency,
    ) -> BoxFuture<'a, Result<(Vec<RecordBatch>, Vec<ShardTrace>)>> {
        self.inner.scan_traced_async(projection, filter, read)
    }

    fn shards(&self) -> usize {
        self.inner.shards()
    }

    fn check_delete(&self, keys: &[Key]) -> Result<()> {
        self.keys
            .before_delete(&self.name, self.inner.as_ref(), keys, true, 0)
    }

    fn write(&self, command: &Command) -> Result<u64> {
        match command {
            Command::Insert(batch) | Command::Upsert(batch) | Command::InsertMissing(batch) => {
                self.keys.check_parents(&self.name, batch)?
            }
            Command::Delete(keys) => {
                self.keys
                    .before_delete(&self.name, self.inner.as_ref(), keys, false, 0)?
            }
            // TRUNCATE's rule is the gateway's: it sees every table the statement empties.
            Command::Truncate | Command::SetIndex { .. } => {}
            // A transaction's parts were checked when its statements staged them.
            Command::Atomic(_)
            | Command::Prepare { .. }
            | Command::Resolve { .. }
            | Command::Forget { .. } => {}
        }
        self.inner.write(command)
    }
}

/// A table's name as PostgreSQL's messages give it: without its schema.
fn shown(name: &str) -> &str {
    split_qualified(name).1
}

fn violation(message: String, detail: String) -> datafusion::error::DataFusionError {
    let mut e = VectorError::new(FOREIGN_KEY_VIOLATION, message);
    e.detail = Some(detail);
    e.into()
}

/// A key column's values (NULL as `None`), as keys compare: integers of any width alike, and
/// text (text, varchar, uuid).
fn values_of(column: &ArrayRef) -> Result<Vec<Option<Key>>> {
    let n = column.len();
    let value = |i: usize| -> Option<Key> {
        if column.is_null(i) {
            return None;
        }
        Some(match column.data_type() {
            DataType::Int64 => Key::Int(column.as_primitive::<Int64Type>().value(i)),
            DataType::Int32 => Key::Int(column.as_primitive::<Int32Type>().value(i).into()),
            DataType::Int16 => Key::Int(column.as_primitive::<Int16Type>().value(i).into()),
            DataType::Utf8 => Key::Text(column.as_string::<i32>().value(i).to_string()),
            DataType::LargeUtf8 => Key::Text(column.as_string::<i64>().value(i).to_string()),
            DataType::Utf8View => Key::Text(column.as_string_view().value(i).to_string()),
            _ => return None,
        })
    };
    match column.data_type() {
        DataType::Int64
        | DataType::Int32
        | DataType::Int16
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => Ok((0..n).map(value).collect()),
        other => datafusion::common::not_impl_err!("a foreign key of type {other}"),
    }
}

/// `values` without repeats, in their first order.
fn distinct(values: impl IntoIterator<Item = Key>) -> Vec<Key> {
    let mut seen = HashSet::new();
    values
        .into_iter()
        .filter(|v| seen.insert(v.clone()))
        .collect()
}

/// Which of `values` column `column` of `source` holds.
fn present(source: &dyn CollectionSource, column: &str, values: &[Key]) -> Result<HashSet<Key>> {
    let projection = [column.to_string()];
    let filter = Filter::keys_in(column, values);
    let mut found = HashSet::new();
    for batch in source.scan(Some(&projection), Some(&filter), Consistency::Strong)? {
        found.extend(values_of(batch.column(0))?.into_iter().flatten());
    }
    Ok(found)
}

/// The values of column `column` in rows `keys` of `source` (the keys themselves when it is
/// the primary key).
fn referenced_values(
    source: &dyn CollectionSource,
    column: &str,
    keys: &[Key],
) -> Result<Vec<Key>> {
    let schema = source.schema();
    let pk = &schema.primary_key().name;
    if column == pk {
        return Ok(keys.to_vec());
    }
    let projection = [column.to_string()];
    let mut values = Vec::new();
    for batch in source.scan(
        Some(&projection),
        Some(&Filter::keys_in(pk, keys)),
        Consistency::Strong,
    )? {
        values.extend(values_of(batch.column(0))?.into_iter().flatten());
    }
    Ok(distinct(values))
}

/// The rows of `source` whose `column` holds one of `values`: each row's key, with its value.
fn referencing(
    source: &dyn CollectionSource,
    column: &str,
    values: &[Key],
) -> Result<Vec<(Key, Key)>> {
    let schema = source.schema();
    let pk = schema.primary_key().name.clone();
    let projection = [pk.clone(), column.to_string()];
    let mut rows = Vec::new();
    for batch in source.scan(
        Some(&projection),
        Some(&Filter::keys_in(column, values)),
        Consistency::Strong,
    )? {
        let keys = keys_of(column_of(&batch, &pk)?).map_err(storage_error)?;
        let held = values_of(column_of(&batch, column)?)?;
        rows.extend(
            keys.into_iter()
                .zip(held)
                .filter_map(|(k, v)| Some((k, v?))),
        );
    }
    Ok(rows)
}

fn column_of<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        datafusion::error::DataFusionError::Internal(format!("the scan lacks column {name}"))
    })
}

/// Refuses `ON DELETE SET NULL` of a column that may not be NULL.
fn check_nullable(source: &dyn CollectionSource, table: &str, column: &str) -> Result<()> {
    if source.schema().column(column).is_ok_and(|c| !c.nullable) {
        let message = format!(
            "null value in column \"{column}\" of relation \"{}\" violates not-null constraint",
            shown(table)
        );
        return Err(VectorError::new("23502", message).into());
    }
    Ok(())
}

/// `ON DELETE SET NULL`: rows `keys` of `table` written again with `column` NULL.
fn set_null(source: &dyn CollectionSource, table: &str, column: &str, keys: &[Key]) -> Result<()> {
    check_nullable(source, table, column)?;
    let schema = source.schema();
    let pk = schema.primary_key().name.clone();
    let every: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
    for batch in source.scan(
        Some(&every),
        Some(&Filter::keys_in(&pk, keys)),
        Consistency::Strong,
    )? {
        let Some(at) = batch.schema().index_of(column).ok() else {
            continue;
        };
        let mut columns = batch.columns().to_vec();
        columns[at] = new_null_array(columns[at].data_type(), batch.num_rows());
        let cleared = RecordBatch::try_new(batch.schema(), columns)?;
        source.write(&Command::Upsert(cleared))?;
    }
    Ok(())
}
