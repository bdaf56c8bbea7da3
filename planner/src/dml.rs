//! INSERT and DELETE on a collection table.
//!
//! INSERT streams DataFusion's input batches into the collection as `Command::Insert`s (one per
//! batch; a key that exists is refused with a unique violation, as in PostgreSQL). DELETE finds
//! the keys of the rows its WHERE selects and deletes them by key: storage evaluates what it
//! can of the WHERE, and the rest ([`Residual`]) is checked on each row read before its key
//! goes. Each batch is atomic; a statement spanning several batches is not (see the cluster
//! docs for what is atomic).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::{and_kleene, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::sink::DataSink;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{DmlStatement, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CastKind, ConflictTarget, DataType as SqlType, Expr as SqlExpr, Ident, ObjectName,
    OnConflictAction, OnInsert, SetExpr, Statement as SqlStatement, TableObject, Value,
};
use futures::StreamExt;
use vecraft_storage::command::Command;
use vecraft_storage::filter::Filter;
use vecraft_storage::key::keys_of;
use vecraft_storage::schema::Identity;

use crate::collection::{CollectionSource, Consistency, storage_error};

/// What an INSERT does with a row whose key exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertMode {
    /// Refuses the statement: a unique violation.
    Insert,
    /// Replaces the row (ON CONFLICT (key) DO UPDATE of every column).
    Upsert,
    /// Skips the new row (ON CONFLICT DO NOTHING).
    InsertMissing,
    /// Replaces the row but keeps the stored values of these columns (ON CONFLICT (key) DO
    /// UPDATE of the other columns, `upsert.rs`).
    Merge(Vec<String>),
}

/// Writes INSERT input into a collection.
#[derive(Debug)]
pub struct InsertSink {
    pub source: Arc<dyn CollectionSource>,
    pub schema: SchemaRef,
    pub mode: InsertMode,
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "InsertSink")
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let mut rows = 0;
        while let Some(batch) = data.next().await {
            let batch = crate::text_types::conform_batch(batch?, &self.schema)?;
            rows += match self.mode {
                // Reads the stored rows first, where it may block.
                InsertMode::Merge(_) => {
                    crate::collection::blocking(|| self.write(self.merged(batch)?))?
                }
                _ => match self.command(batch) {
                    Some(command) => self.source.write_async(&command).await?,
                    None => 0,
                },
            };
        }
        Ok(rows)
    }
}

impl InsertSink {
    /// Writes one batch already in the table's form; how many rows it stored.
    fn write(&self, batch: RecordBatch) -> Result<u64> {
        match self.command(batch) {
            Some(command) => self.source.write(&command),
            None => Ok(0),
        }
    }

    /// The command that writes `batch` (already in the table's form); `None` for no rows.
    fn command(&self, batch: RecordBatch) -> Option<Command> {
        if batch.num_rows() == 0 {
            return None;
        }
        Some(match self.mode {
            InsertMode::Insert => Command::Insert(batch),
            InsertMode::Upsert | InsertMode::Merge(_) => Command::Upsert(batch),
            InsertMode::InsertMissing => Command::InsertMissing(batch),
        })
    }

    /// `batch` as it will be stored: with the kept columns of existing rows, for a `Merge`.
    fn merged(&self, batch: RecordBatch) -> Result<RecordBatch> {
        match &self.mode {
            InsertMode::Merge(keep) if batch.num_rows() > 0 => {
                crate::upsert::keep_stored(self.source.as_ref(), batch, keep)
            }
            _ => Ok(batch),
        }
    }

    /// Writes one batch of input rows and gives them back as stored (INSERT … RETURNING).
    pub fn write_batch(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let batch = crate::text_types::conform_batch(batch, &self.schema)?;
        let batch = self.merged(batch)?;
        let batch = match self.mode {
            // Only the rows it inserts come back.
            InsertMode::InsertMissing => crate::upsert::missing_rows(self.source.as_ref(), batch)?,
            _ => batch,
        };
        self.write(batch.clone())?;
        Ok(batch)
    }
}

/// The conditions of a WHERE that storage cannot evaluate (`id % 2 = 0`), over the table's
/// `visible` columns: a row read is deleted or updated only if each holds for it.
#[derive(Debug, Clone)]
pub struct Residual {
    pub visible: SchemaRef,
    pub conditions: Vec<Arc<dyn PhysicalExpr>>,
}

impl Residual {
    /// Which rows of `visible` (a batch of the visible columns) every condition holds for;
    /// NULL selects nothing, as in SQL.
    pub fn mask(&self, visible: &RecordBatch) -> Result<BooleanArray> {
        let mut keep = BooleanArray::from(vec![true; visible.num_rows()]);
        for condition in &self.conditions {
            let mask = condition
                .evaluate(visible)?
                .into_array(visible.num_rows())?;
            keep = and_kleene(&keep, mask.as_boolean())?;
        }
        Ok(keep.iter().map(|v| Some(v == Some(true))).collect())
    }

    /// The visible columns of `batch` (which holds every one of them, and maybe more), as
    /// [`Residual::mask`] reads them.
    pub fn visible_of(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self.visible.fields().iter();
        let columns = columns.map(|f| scanned(batch, f.name()).cloned());
        Ok(RecordBatch::try_new(
            self.visible.clone(),
            columns.collect::<Result<_>>()?,
        )?)
    }

    /// The rows of `batch` (which holds every visible column, and maybe more) every condition
    /// holds for.
    fn keep(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let keep = self.mask(&self.visible_of(batch)?)?;
        Ok(filter_record_batch(batch, &keep)?)
    }
}

/// Deletes the rows `filter` and `residual` select (all rows when neither says); returns how
/// many went.
pub fn delete_where(
    source: &dyn CollectionSource,
    filter: Option<&Filter>,
    residual: Option<&Residual>,
) -> Result<u64> {
    let deleted = delete_scanned(source, filter, residual, &[])?;
    Ok(deleted.iter().map(|(_, count)| count).sum())
}

/// Deletes the rows `filter` selects, as [`delete_where`], and gives back their `visible`
/// columns (DELETE … RETURNING).
pub fn delete_returning(
    source: &dyn CollectionSource,
    filter: Option<&Filter>,
    residual: Option<&Residual>,
    visible: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let columns: Vec<String> = visible.fields().iter().map(|f| f.name().clone()).collect();
    let mut deleted = Vec::new();
    for (batch, _) in delete_scanned(source, filter, residual, &columns)? {
        let rows = visible
            .fields()
            .iter()
            .map(|f| scanned(&batch, f.name()).cloned())
            .collect::<Result<_>>()?;
        deleted.push(RecordBatch::try_new(visible.clone(), rows)?);
    }
    Ok(deleted)
}

/// Deletes by key the rows `filter` and `residual` select, read as of now from the leaders
/// with `columns` and the key (and every visible column, for the residual); each batch read,
/// with how many of its rows went.
fn delete_scanned(
    source: &dyn CollectionSource,
    filter: Option<&Filter>,
    residual: Option<&Residual>,
    columns: &[String],
) -> Result<Vec<(RecordBatch, u64)>> {
    let pk = source.schema().primary_key().name.clone();
    let mut columns = columns.to_vec();
    let visible = residual.iter().flat_map(|r| r.visible.fields().iter());
    for name in visible.map(|f| f.name()).chain([&pk]) {
        if !columns.contains(name) {
            columns.push(name.clone()); // the key and what the residual reads, if not asked for
        }
    }
    let mut batches = source.scan(Some(&columns), filter, Consistency::Strong)?;
    if let Some(residual) = residual {
        batches = batches
            .iter()
            .map(|b| residual.keep(b))
            .collect::<Result<_>>()?;
    }
    let mut keys = Vec::with_capacity(batches.len());
    for batch in &batches {
        keys.push(keys_of(scanned(batch, &pk)?).map_err(storage_error)?);
    }
    // A refusal (a row still referenced) leaves every row in place.
    source.check_delete(&keys.concat())?;
    let mut deleted = Vec::new();
    for (batch, keys) in batches.into_iter().zip(keys) {
        if !keys.is_empty() {
            let count = source.write(&Command::Delete(keys))?;
            deleted.push((batch, count));
        }
    }
    Ok(deleted)
}

/// Column `name` of a batch storage scanned for it.
fn scanned<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        datafusion::error::DataFusionError::Internal(format!("the scan lacks column {name}"))
    })
}

/// The one-row `count` result DataFusion's DML plans return.
pub fn count_batch(count: u64) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    Ok(RecordBatch::try_new(
        schema,
        vec![Arc::new(UInt64Array::from(vec![count]))],
    )?)
}

/// PostgreSQL's 428C9 for an INSERT that gives a `GENERATED ALWAYS` identity column a value
/// (PostgreSQL's `OVERRIDING SYSTEM VALUE` is not parsed here).
pub async fn refuse_always_identity(ctx: &SessionContext, statement: &DFStatement) -> Result<()> {
    let DFStatement::Statement(inner) = statement else {
        return Ok(());
    };
    let SqlStatement::Insert(insert) = inner.as_ref() else {
        return Ok(());
    };
    let (TableObject::TableName(name), Some(_)) = (&insert.table, &insert.source) else {
        return Ok(()); // DEFAULT VALUES gives no value
    };
    let Ok(provider) = ctx.table_provider(name.to_string()).await else {
        return Ok(());
    };
    let Some(table) = provider.downcast_ref::<crate::table::CollectionTable>() else {
        return Ok(());
    };
    let schema = table.collection_schema();
    for column in schema.visible_columns() {
        let given = insert.columns.is_empty()
            || insert
                .columns
                .iter()
                .any(|c| crate::names::last_part(c) == column.name);
        if column.identity == Some(Identity::Always) && given {
            let name = &column.name;
            let message = format!("cannot insert a non-DEFAULT value into column \"{name}\"");
            let detail =
                format!("Column \"{name}\" is an identity column defined as GENERATED ALWAYS.");
            return Err(crate::error::VectorError::new("428C9", message)
                .with_detail(&detail)
                .into());
        }
    }
    Ok(())
}

/// `INSERT … VALUES ('[1,2,3]', …)` into a vector column: DataFusion checks VALUES against the
/// table with Arrow's casts, which cannot turn text into a vector, so such literals get an
/// explicit `::vector(n)` here (the analyzer then makes them vector literals, `casts.rs`).
/// Statements this does not recognise are left as they are.
pub async fn cast_vector_values(ctx: &SessionContext, statement: &mut DFStatement) -> Result<()> {
    let DFStatement::Statement(inner) = statement else {
        return Ok(());
    };
    if let SqlStatement::Update(update) = inner.as_mut() {
        cast_vector_assignments(ctx, update).await;
        return Ok(());
    }
    let SqlStatement::Insert(insert) = inner.as_mut() else {
        return Ok(());
    };
    let TableObject::TableName(name) = &insert.table else {
        return Ok(());
    };
    let Ok(provider) = ctx.table_provider(name.to_string()).await else {
        return Ok(());
    };
    let schema = provider.schema();
    let targets: Vec<Option<usize>> = if insert.columns.is_empty() {
        (0..schema.fields().len()).map(Some).collect()
    } else {
        insert
            .columns
            .iter()
            .map(|c| schema.index_of(&crate::names::last_part(c)).ok())
            .collect()
    };
    let Some(query) = insert.source.as_mut() else {
        return Ok(());
    };
    let SetExpr::Values(values) = query.body.as_mut() else {
        return Ok(());
    };
    for row in &mut values.rows {
        for (value, target) in row.iter_mut().zip(&targets) {
            let Some(field) = target.map(|t| schema.field(t)) else {
                continue;
            };
            check_literal_type(value, field)?;
            cast_text_to_column(value, field.data_type());
        }
    }
    Ok(())
}

/// PostgreSQL's 42804 for a literal that no assignment cast takes to the column's type: a
/// boolean into a number column, a number into a boolean one (DataFusion would cast them).
fn check_literal_type(value: &SqlExpr, field: &Field) -> Result<()> {
    let SqlExpr::Value(v) = value else {
        return Ok(());
    };
    let column = field.data_type();
    let given = match &v.value {
        Value::Boolean(_) if column.is_numeric() => "boolean",
        Value::Number(n, _) if *column == DataType::Boolean => {
            if n.contains(['.', 'e', 'E']) {
                "numeric"
            } else {
                "integer"
            }
        }
        _ => return Ok(()),
    };
    let expected = match column {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        DataType::Int64 => "bigint",
        DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Boolean => "boolean",
        _ => "numeric",
    };
    let message = format!(
        "column \"{}\" is of type {expected} but expression is of type {given}",
        field.name()
    );
    Err(crate::error::VectorError::new("42804", message).into())
}

/// `Some(Some(dims))` for a `vector(dims)` column, `Some(None)` for a `vector` column
/// without dimensions (a list of reals), `None` for other columns.
fn vector_column(data_type: &DataType) -> Option<Option<i32>> {
    match data_type {
        DataType::FixedSizeList(_, dims) => Some(Some(*dims)),
        DataType::List(item) if item.data_type() == &DataType::Float32 => Some(None),
        _ => None,
    }
}

/// A text literal written to a vector column is read as a vector (to a `sparsevec` or bit
/// string column, as one), which Arrow's cast of text cannot do.
fn cast_text_to_column(value: &mut SqlExpr, column: &DataType) {
    if let Some(dims) = vector_column(column) {
        cast_text_to_vector(value, dims);
        return;
    }
    let is_text =
        matches!(value, SqlExpr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)));
    // A bit string is read as `bit varying`: its length is checked on the write.
    let data_type = if vecraft_storage::schema::is_sparsevec(column) {
        SqlType::Custom(ObjectName::from(vec![Ident::new("sparsevec")]), vec![])
    } else if vecraft_storage::schema::is_bit(column) {
        SqlType::VarBit(None)
    } else {
        return;
    };
    if is_text {
        *value = SqlExpr::Cast {
            kind: CastKind::DoubleColon,
            expr: Box::new(value.clone()),
            data_type,
            array: false,
            format: None,
        };
    }
}

/// `'[…]'` becomes `'[…]'::vector(dims)`, or `'[…]'::vector::vector` for a column without
/// dimensions (whose rows may have different ones: a list each, not a vector literal of
/// its own length); other expressions are left alone.
fn cast_text_to_vector(value: &mut SqlExpr, dims: Option<i32>) {
    let is_text =
        matches!(value, SqlExpr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)));
    if !is_text {
        return;
    }
    let cast = |expr: SqlExpr, data_type: SqlType| SqlExpr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(expr),
        data_type,
        array: false,
        format: None,
    };
    let modifiers = dims.map(|d| vec![d.to_string()]).unwrap_or_default();
    let vector = SqlType::Custom(ObjectName::from(vec![Ident::new("vector")]), modifiers);
    *value = cast(value.clone(), vector);
    if dims.is_none() {
        let any_length = SqlType::Custom(ObjectName::from(vec![Ident::new("vector")]), vec![]);
        *value = cast(value.clone(), any_length);
    }
}

/// `UPDATE t SET embedding = '[…]'`: the same for assignments to vector columns.
async fn cast_vector_assignments(
    ctx: &SessionContext,
    update: &mut datafusion::sql::sqlparser::ast::Update,
) {
    let Ok(provider) = ctx.table_provider(update.table.relation.to_string()).await else {
        return;
    };
    let schema = provider.schema();
    for assignment in &mut update.assignments {
        let target = target_name(&assignment.target);
        if let Ok(field) = schema.field_with_name(&target) {
            cast_text_to_column(&mut assignment.value, field.data_type());
        }
    }
}

/// The column an assignment sets, as PostgreSQL folds its name.
fn target_name(target: &datafusion::sql::sqlparser::ast::AssignmentTarget) -> String {
    match target {
        datafusion::sql::sqlparser::ast::AssignmentTarget::ColumnName(name) => {
            crate::names::last_part(name)
        }
        other => other.to_string().to_lowercase(),
    }
}

/// `INSERT … ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c, …` that sets every column but the
/// key from the new row is an upsert: planned as a replacing insert. One that sets some of
/// them is too, and the others are returned: a row whose key exists keeps its values of those
/// ([`keeping`], `upsert.rs`). `ON CONFLICT [(key)] DO
/// NOTHING` is planned as an overwriting insert, which the table reads as "insert the new
/// keys" (`InsertMode::InsertMissing`; SQL has no INSERT OVERWRITE of its own, and one
/// written is refused here). Other ON CONFLICT forms are refused (0A000) rather than
/// half-done.
pub async fn rewrite_on_conflict(
    ctx: &SessionContext,
    statement: &mut DFStatement,
) -> Result<Vec<String>> {
    let DFStatement::Statement(inner) = statement else {
        return Ok(Vec::new());
    };
    let SqlStatement::Insert(insert) = inner.as_mut() else {
        return Ok(Vec::new());
    };
    if insert.overwrite {
        return datafusion::common::not_impl_err!(
            "INSERT OVERWRITE is not supported; use TRUNCATE"
        );
    }
    let Some(on) = &insert.on else {
        return Ok(Vec::new());
    };
    let unsupported = |what: &str| {
        datafusion::common::not_impl_err!(
            "{what} is not supported; use ON CONFLICT (key) DO UPDATE SET every column = EXCLUDED.column"
        )
    };
    let OnInsert::OnConflict(conflict) = on else {
        return unsupported("ON DUPLICATE KEY UPDATE");
    };
    let update = match &conflict.action {
        OnConflictAction::DoUpdate(update) => update,
        OnConflictAction::DoNothing => {
            if let Some(ConflictTarget::OnConstraint(_)) = conflict.conflict_target {
                return unsupported("ON CONFLICT ON CONSTRAINT");
            }
            insert.on = None;
            insert.overwrite = true;
            return Ok(Vec::new());
        }
    };
    if update.selection.is_some() {
        return unsupported("ON CONFLICT DO UPDATE … WHERE");
    }
    let TableObject::TableName(name) = &insert.table else {
        return Ok(Vec::new());
    };
    let provider = ctx.table_provider(name.to_string()).await?;
    let schema = provider.schema();
    let mut assigned = Vec::new();
    for a in &update.assignments {
        let target = target_name(&a.target);
        let from_new_row = matches!(&a.value, SqlExpr::CompoundIdentifier(parts)
            if parts.len() == 2
                && parts[0].value.eq_ignore_ascii_case("excluded")
                && crate::names::ident(&parts[1]) == target);
        if !from_new_row {
            return unsupported(&format!("ON CONFLICT DO UPDATE SET {a}"));
        }
        assigned.push(target);
    }
    let key_columns: Vec<String> = match &conflict.conflict_target {
        Some(ConflictTarget::Columns(c)) => c.iter().map(crate::names::ident).collect(),
        None => Vec::new(),
        Some(ConflictTarget::OnConstraint(_)) => return unsupported("ON CONFLICT ON CONSTRAINT"),
    };
    let keep: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name())
        .filter(|n| !key_columns.contains(n) && !assigned.contains(n))
        .cloned()
        .collect();
    let on_the_key = match provider.downcast_ref::<crate::table::CollectionTable>() {
        Some(table) => key_columns == [table.collection_schema().primary_key().name.clone()],
        None => false,
    };
    if key_columns.is_empty() {
        let message = "ON CONFLICT DO UPDATE requires inference specification or constraint name";
        return Err(crate::error::VectorError::new("42601", message).into());
    }
    if !on_the_key {
        // The primary key is the one unique constraint a collection has.
        let message =
            "there is no unique or exclusion constraint matching the ON CONFLICT specification";
        return Err(crate::error::VectorError::new("42P10", message).into());
    }
    insert.on = None;
    insert.replace_into = true;
    Ok(keep)
}

/// `plan`, an INSERT, writing to a table that keeps the `keep` columns of existing rows
/// ([`rewrite_on_conflict`]); any plan as it is when `keep` is empty.
pub fn keeping(plan: LogicalPlan, keep: Vec<String>) -> Result<LogicalPlan> {
    if keep.is_empty() {
        return Ok(plan);
    }
    let LogicalPlan::Dml(dml) = plan else {
        return datafusion::common::plan_err!("ON CONFLICT belongs to an INSERT");
    };
    let provider = source_as_provider(&dml.target)?;
    let Some(table) = provider.downcast_ref::<crate::table::CollectionTable>() else {
        return datafusion::common::plan_err!("ON CONFLICT needs a collection");
    };
    let target = provider_as_source(Arc::new(table.keeping(keep)));
    Ok(LogicalPlan::Dml(DmlStatement { target, ..dml }))
}
