//! Row filters over a segment's scalar payload columns: the `WHERE` of a vector search ("the k
//! nearest rows where category = 'a' and price < 10") and of scans.
//!
//! A [`Filter`] is checked once against the collection's schema ([`Filter::validate`]), then
//! evaluated per segment batch with Arrow's vectorised kernels ([`Filter::evaluate`]). It follows
//! SQL's three-valued logic: intermediate results are Kleene `BooleanArray`s in which NULL means
//! "unknown", and only the final mask turns NULL into "not selected".
//!
//! Comparison rules, chosen to match PostgreSQL where it matters:
//! - Integer columns compare exactly with `Int` and `Float` values: `int_col < 1.5` is
//!   `int_col <= 1`, `int_col = 1.5` is FALSE, and values outside the column's range (`int4_col <
//!   1e10`) give a constant answer instead of an error or a wrapped value.
//! - A `Float` value against a `REAL` (Float32) column is rounded to `f32` first (as PostgreSQL
//!   rounds a numeric literal); an `Int` that `f32` cannot hold exactly, or a finite value beyond
//!   `f32`'s range, is compared exactly against the column widened to `f64`.
//! - Floats use Arrow's total order except that `-0.0 = 0.0`: a positive NaN is greater than
//!   every number and equal to itself, as in PostgreSQL.
//! - `x IN ()` is FALSE and `x NOT IN ()` is TRUE for every row, NULL `x` included (the SQL
//!   standard's answer for a quantified comparison over an empty set).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    Scalar as ArrowScalar, StringArray, TimestampMicrosecondArray,
};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::kernels::cmp;
use arrow::compute::{and_kleene, cast, is_not_null, is_null, not, or_kleene};
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::key::Key;
use crate::schema::{CollectionSchema, ColumnType};

/// Deepest nesting of `And`/`Or`/`Not` accepted, so a hostile filter cannot overflow the stack.
pub const MAX_DEPTH: usize = 256;

/// `IN` lists at least this long over integer, timestamp or text columns use one hash lookup
/// per row instead of one comparison kernel per value.
const HASH_IN_THRESHOLD: usize = 16;

/// A literal value in a filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Microseconds since the epoch.
    Timestamp(i64),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// A predicate over a row's scalar columns. Decoding one (from a Flight ticket, say) refuses
/// nesting deeper than [`MAX_DEPTH`] as it goes, before it could overflow the stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    Compare {
        column: String,
        op: CmpOp,
        value: Scalar,
    },
    In {
        column: String,
        values: Vec<Scalar>,
        negated: bool,
    },
    IsNull {
        column: String,
        negated: bool,
    },
    And(#[serde(deserialize_with = "nested_list")] Vec<Filter>),
    Or(#[serde(deserialize_with = "nested_list")] Vec<Filter>),
    Not(#[serde(deserialize_with = "nested_one")] Box<Filter>),
    /// Always true / false (handy for planners).
    Literal(bool),
}

impl From<&Key> for Scalar {
    fn from(key: &Key) -> Scalar {
        match key {
            Key::Int(v) => Scalar::Int(*v),
            Key::Text(v) => Scalar::Text(v.clone()),
        }
    }
}

impl Filter {
    /// `column IN (keys)`: the rows of these keys, when `column` is the primary key (a
    /// shard finds them through its key map).
    pub fn keys_in(column: &str, keys: &[Key]) -> Filter {
        Filter::In {
            column: column.to_string(),
            values: keys.iter().map(Scalar::from).collect(),
            negated: false,
        }
    }

    /// Checks column names and value types against the schema, before any evaluation.
    ///
    /// Unknown column -> `UnknownColumn`; vector column, or a value that cannot be compared with
    /// the column's type -> `InvalidArgument`. Out-of-range numbers are fine.
    pub fn validate(&self, schema: &CollectionSchema) -> Result<()> {
        self.validate_at(schema, 0)
    }

    fn validate_at(&self, schema: &CollectionSchema, depth: usize) -> Result<()> {
        check_depth(depth)?;
        match self {
            Filter::Compare { column, value, .. } => {
                check_schema_values(schema, column, std::slice::from_ref(value))
            }
            Filter::In { column, values, .. } => check_schema_values(schema, column, values),
            Filter::IsNull { column, .. } => check_schema_values(schema, column, &[]),
            Filter::And(fs) | Filter::Or(fs) => {
                fs.iter().try_for_each(|f| f.validate_at(schema, depth + 1))
            }
            Filter::Not(f) => f.validate_at(schema, depth + 1),
            Filter::Literal(_) => Ok(()),
        }
    }

    /// Evaluates over a batch whose columns are found by name. Returns one bool per row, true
    /// only where the predicate is TRUE (FALSE and NULL are false); the result has no nulls.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        Ok(true_only(&self.eval(batch, 0)?))
    }

    /// Names of the columns the filter reads, each once, in order of first appearance.
    pub fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut stack = vec![self];
        while let Some(f) = stack.pop() {
            match f {
                Filter::Compare { column, .. }
                | Filter::In { column, .. }
                | Filter::IsNull { column, .. } => {
                    if !out.contains(column) {
                        out.push(column.clone());
                    }
                }
                Filter::And(fs) | Filter::Or(fs) => stack.extend(fs.iter().rev()),
                Filter::Not(f) => stack.push(f),
                Filter::Literal(_) => {}
            }
        }
        out
    }

    /// The three-valued result: NULL where the predicate is unknown.
    fn eval(&self, batch: &RecordBatch, depth: usize) -> Result<BooleanArray> {
        check_depth(depth)?;
        match self {
            Filter::Compare { column, op, value } => compare(lookup(batch, column)?, *op, value),
            Filter::In {
                column,
                values,
                negated,
            } => negate_if(in_list(lookup(batch, column)?, values)?, *negated),
            Filter::IsNull { column, negated } => {
                let array = lookup(batch, column)?.array;
                Ok(if *negated {
                    is_not_null(array)?
                } else {
                    is_null(array)?
                })
            }
            Filter::And(fs) => fold(fs, batch, depth, true, and_kleene),
            Filter::Or(fs) => fold(fs, batch, depth, false, or_kleene),
            Filter::Not(f) => Ok(not(&f.eval(batch, depth + 1)?)?),
            Filter::Literal(b) => Ok(constant(batch.num_rows(), *b, None)),
        }
    }
}

thread_local! {
    /// How deep the filter being decoded on this thread is nested here.
    static DECODING_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One level of a filter being decoded; leaves it when dropped.
struct DecodingLevel;

impl DecodingLevel {
    fn enter() -> std::result::Result<DecodingLevel, String> {
        let depth = DECODING_DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        let level = DecodingLevel;
        if depth > MAX_DEPTH {
            return Err(format!("filter nested more than {MAX_DEPTH} levels deep"));
        }
        Ok(level)
    }
}

impl Drop for DecodingLevel {
    fn drop(&mut self) {
        DECODING_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Decodes a nested filter one level deeper (see [`DecodingLevel`]).
fn nested_one<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Box<Filter>, D::Error> {
    let _level = DecodingLevel::enter().map_err(serde::de::Error::custom)?;
    Box::<Filter>::deserialize(d)
}

/// Decodes nested filters one level deeper (see [`DecodingLevel`]).
fn nested_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<Filter>, D::Error> {
    let _level = DecodingLevel::enter().map_err(serde::de::Error::custom)?;
    Vec::<Filter>::deserialize(d)
}

fn check_depth(depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::InvalidArgument(format!(
            "filter nested more than {MAX_DEPTH} levels deep"
        )));
    }
    Ok(())
}

/// What a column holds, as far as comparisons care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Text,
    Timestamp,
}

impl Kind {
    fn of_column_type(ty: &ColumnType) -> Option<Kind> {
        match ty {
            ColumnType::Bool => Some(Kind::Bool),
            ColumnType::Int32 | ColumnType::Int64 => Some(Kind::Int),
            ColumnType::Float32 | ColumnType::Float64 => Some(Kind::Float),
            // A uuid is kept in one text form, so text equality is uuid equality.
            ColumnType::Text | ColumnType::Uuid | ColumnType::Varchar(_) => Some(Kind::Text),
            ColumnType::Timestamp | ColumnType::TimestampTz => Some(Kind::Timestamp),
            // JSON compares by meaning, not by text; dates, numbers and arrays in their own
            // ways: DataFusion evaluates those filters.
            ColumnType::Vector(_)
            | ColumnType::Json
            | ColumnType::Jsonb
            | ColumnType::Date
            | ColumnType::Numeric(_)
            | ColumnType::Array(_)
            | ColumnType::VectorUnsized
            | ColumnType::SparseVec(_)
            | ColumnType::Bit { .. } => None,
        }
    }

    fn of_data_type(dt: &DataType) -> Option<Kind> {
        match dt {
            DataType::Boolean => Some(Kind::Bool),
            DataType::Int32 | DataType::Int64 => Some(Kind::Int),
            DataType::Float32 | DataType::Float64 => Some(Kind::Float),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Kind::Text),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Some(Kind::Timestamp),
            _ => None,
        }
    }

    fn accepts(self, value: &Scalar) -> bool {
        matches!(
            (self, value),
            (_, Scalar::Null)
                | (Kind::Bool, Scalar::Bool(_))
                | (Kind::Int | Kind::Float, Scalar::Int(_) | Scalar::Float(_))
                | (Kind::Text, Scalar::Text(_))
                | (Kind::Timestamp, Scalar::Int(_) | Scalar::Timestamp(_))
        )
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Bool => "boolean",
            Kind::Int => "integer",
            Kind::Float => "floating-point",
            Kind::Text => "text",
            Kind::Timestamp => "timestamp",
        }
    }
}

impl Scalar {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "boolean",
            Scalar::Int(_) => "integer",
            Scalar::Float(_) => "floating-point",
            Scalar::Text(_) => "text",
            Scalar::Timestamp(_) => "timestamp",
        }
    }
}

fn not_filterable(column: &str, ty: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!(
        "column \"{column}\" of type {ty} cannot be filtered on"
    ))
}

fn mismatch(column: &str, kind: Kind, value: &Scalar) -> Error {
    Error::InvalidArgument(format!(
        "cannot compare {} column \"{column}\" with a {} value",
        kind.name(),
        value.type_name()
    ))
}

fn check_value(column: &str, kind: Kind, value: &Scalar) -> Result<()> {
    if kind.accepts(value) {
        Ok(())
    } else {
        Err(mismatch(column, kind, value))
    }
}

fn check_schema_values(schema: &CollectionSchema, column: &str, values: &[Scalar]) -> Result<()> {
    let def = schema.column(column)?;
    let kind = Kind::of_column_type(&def.ty).ok_or_else(|| not_filterable(column, "vector"))?;
    values.iter().try_for_each(|v| check_value(column, kind, v))
}

/// A batch column the filter reads.
#[derive(Clone, Copy)]
struct Column<'a> {
    name: &'a str,
    array: &'a ArrayRef,
    kind: Kind,
}

fn lookup<'a>(batch: &'a RecordBatch, name: &'a str) -> Result<Column<'a>> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| Error::UnknownColumn(name.to_string()))?;
    let kind = Kind::of_data_type(array.data_type())
        .ok_or_else(|| not_filterable(name, array.data_type()))?;
    Ok(Column { name, array, kind })
}

/// `len` copies of `value`, NULL where `nulls` says so.
fn constant(len: usize, value: bool, nulls: Option<NullBuffer>) -> BooleanArray {
    let values = if value {
        BooleanBuffer::new_set(len)
    } else {
        BooleanBuffer::new_unset(len)
    };
    BooleanArray::new(values, nulls)
}

/// TRUE stays true; FALSE and NULL become false.
fn true_only(result: &BooleanArray) -> BooleanArray {
    match result.nulls() {
        Some(nulls) => BooleanArray::new(result.values() & nulls.inner(), None),
        None => BooleanArray::new(result.values().clone(), None),
    }
}

fn negate_if(result: BooleanArray, negated: bool) -> Result<BooleanArray> {
    if negated {
        Ok(not(&result)?)
    } else {
        Ok(result)
    }
}

type Kleene = fn(&BooleanArray, &BooleanArray) -> std::result::Result<BooleanArray, ArrowError>;

/// Combines the children with a Kleene operator; no children gives `identity` on every row.
fn fold(
    filters: &[Filter],
    batch: &RecordBatch,
    depth: usize,
    identity: bool,
    op: Kleene,
) -> Result<BooleanArray> {
    let mut acc: Option<BooleanArray> = None;
    for f in filters {
        let next = f.eval(batch, depth + 1)?;
        acc = Some(match acc {
            None => next,
            Some(prev) => op(&prev, &next)?,
        });
    }
    Ok(acc.unwrap_or_else(|| constant(batch.num_rows(), identity, None)))
}

mod compare;
#[cfg(test)]
mod tests;

use compare::*;
