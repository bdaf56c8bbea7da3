//! Column builders for the catalog tables: each takes a column's values and makes the Arrow
//! array PostgreSQL's type maps to (`oid` → UInt32, `"char"` → marked text, `int2vector` →
//! a list of Int16, …), and [`table`] puts named columns together.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int16Array, Int32Array, ListArray, RecordBatch, StringArray,
    UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Result;

use crate::encode::char_type_metadata;
use vecraft_storage::schema::PG_TYPE_KEY;

/// Columns of type `"char"` (one byte): held as strings, described to clients as `"char"`.
const CHAR_COLUMNS: &[&str] = &[
    "typtype",
    "typcategory",
    "relkind",
    "relpersistence",
    "relreplident",
    "contype",
    "attstorage",
    "attcompression",
    "attidentity",
    "attgenerated",
    "datlocprovider",
];

/// Columns of PostgreSQL's `int2vector` and `oidvector` types (lists here), which print as
/// space-separated numbers (SQLAlchemy splits `indoption`'s text).
const VECTOR_COLUMNS: &[(&str, &str)] = &[
    ("indkey", "int2vector"),
    ("indoption", "int2vector"),
    ("indclass", "oidvector"),
    ("indcollation", "oidvector"),
];

pub(super) fn u32s(v: Vec<u32>) -> ArrayRef {
    Arc::new(UInt32Array::from(v))
}
pub(super) fn i32s(v: Vec<i32>) -> ArrayRef {
    Arc::new(Int32Array::from(v))
}
pub(super) fn i16s(v: Vec<i16>) -> ArrayRef {
    Arc::new(Int16Array::from(v))
}

/// An `int2vector`/`int2[]` column (`indkey`, `conkey`): one list of column numbers a row.
pub(super) fn i16_lists(v: Vec<Vec<i16>>) -> ArrayRef {
    let lengths: Vec<usize> = v.iter().map(Vec::len).collect();
    let values: Vec<i16> = v.into_iter().flatten().collect();
    Arc::new(datafusion::arrow::array::ListArray::new(
        Arc::new(Field::new("item", DataType::Int16, true)),
        datafusion::arrow::buffer::OffsetBuffer::from_lengths(lengths),
        Arc::new(Int16Array::from(values)),
        None,
    ))
}
/// An `oidvector` column (`indclass`, `indcollation`): one list of OIDs a row.
pub(super) fn u32_lists(v: Vec<Vec<u32>>) -> ArrayRef {
    let lengths: Vec<usize> = v.iter().map(Vec::len).collect();
    let values: Vec<u32> = v.into_iter().flatten().collect();
    Arc::new(datafusion::arrow::array::ListArray::new(
        Arc::new(Field::new("item", DataType::UInt32, true)),
        datafusion::arrow::buffer::OffsetBuffer::from_lengths(lengths),
        Arc::new(UInt32Array::from(values)),
        None,
    ))
}
/// PostgreSQL's one-byte `"char"` columns (`typtype`, `relkind`): strings here, so psql's
/// `relkind IN ('r', 'p')` compares as in PostgreSQL; marked so the wire says `"char"`.
pub(super) fn chars(v: Vec<u8>) -> ArrayRef {
    let v: Vec<String> = v.into_iter().map(|b| (b as char).to_string()).collect();
    Arc::new(StringArray::from(v))
}
pub(super) fn strs(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}
/// A `text[]` column of NULLs (options and ACLs Vecraft does not have).
pub(super) fn texts_null(n: usize) -> ArrayRef {
    let item = Field::new_list_field(DataType::Utf8, true);
    Arc::new(ListArray::new_null(item.into(), n))
}
/// A text column of NULLs.
pub(super) fn strs_null(n: usize) -> ArrayRef {
    Arc::new(StringArray::from(vec![None::<&str>; n]))
}
pub(super) fn bools(v: Vec<bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(v))
}

pub(super) fn table(columns: &[(&str, ArrayRef)]) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| {
            let field = Field::new(*n, a.data_type().clone(), true);
            if CHAR_COLUMNS.contains(n) {
                field.with_metadata(char_type_metadata())
            } else if let Some((_, ty)) = VECTOR_COLUMNS.iter().find(|(c, _)| c == n) {
                field.with_metadata([(PG_TYPE_KEY.to_string(), ty.to_string())].into())
            } else {
                field
            }
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    Ok(RecordBatch::try_new(
        schema,
        columns.iter().map(|(_, a)| a.clone()).collect(),
    )?)
}
