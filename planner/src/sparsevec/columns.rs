//! Sparse vectors as Arrow columns ([`sparsevec_arrow_type`]) and constants, and the
//! declared dimension a field of them carries.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Int32Array, ListArray, StructArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Int32Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use vecraft_storage::schema::{sparsevec_arrow_type, sparsevec_fields};

use super::SparseVec;

/// A column of sparse vectors, one per row (`None` for NULL).
pub fn sparse_array(rows: &[Option<SparseVec>]) -> ArrayRef {
    let mut dims = Vec::with_capacity(rows.len());
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    let mut offsets = Vec::with_capacity(rows.len());
    for row in rows {
        match row {
            Some(v) => {
                dims.push(v.dim as i32);
                indices.extend_from_slice(&v.indices);
                values.extend_from_slice(&v.values);
                offsets.push(v.indices.len());
            }
            None => {
                dims.push(0);
                offsets.push(0);
            }
        }
    }
    let offsets = OffsetBuffer::from_lengths(offsets);
    let item = |t: DataType| Arc::new(Field::new("item", t, true));
    let indices = ListArray::new(
        item(DataType::Int32),
        offsets.clone(),
        Arc::new(Int32Array::from(indices)),
        None,
    );
    let values = ListArray::new(
        item(DataType::Float32),
        offsets,
        Arc::new(Float32Array::from(values)),
        None,
    );
    let nulls = rows
        .iter()
        .any(Option::is_none)
        .then(|| NullBuffer::from_iter(rows.iter().map(Option::is_some)));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(dims)),
        Arc::new(indices),
        Arc::new(values),
    ];
    Arc::new(StructArray::new(sparsevec_fields(), columns, nulls))
}

/// One sparse vector (or NULL) as a constant.
pub fn sparse_scalar(value: Option<SparseVec>) -> Result<ScalarValue> {
    ScalarValue::try_from_array(&sparse_array(&[value]), 0)
}

/// The rows of a column of sparse vectors.
pub fn sparse_rows(array: &dyn Array) -> Result<Vec<Option<SparseVec>>> {
    if array.data_type() == &DataType::Null {
        return Ok(vec![None; array.len()]);
    }
    if array.data_type() != &sparsevec_arrow_type() {
        return exec_err!("expected sparsevec, found {}", array.data_type());
    }
    let structs = array.as_struct();
    let dims = structs.column(0).as_primitive::<Int32Type>();
    let indices = structs.column(1).as_list::<i32>();
    let values = structs.column(2).as_list::<i32>();
    let index_items = indices.values().as_primitive::<Int32Type>();
    let value_items = values.values().as_primitive::<Float32Type>();
    let mut rows = Vec::with_capacity(structs.len());
    for row in 0..structs.len() {
        if structs.is_null(row) {
            rows.push(None);
            continue;
        }
        let (a, b) = (
            indices.value_offsets()[row] as usize,
            indices.value_offsets()[row + 1] as usize,
        );
        let (c, d) = (
            values.value_offsets()[row] as usize,
            values.value_offsets()[row + 1] as usize,
        );
        let v = SparseVec {
            dim: usize::try_from(dims.value(row)).unwrap_or(0),
            indices: index_items.values()[a..b].to_vec(),
            values: value_items.values()[c..d].to_vec(),
        };
        v.check()?;
        rows.push(Some(v));
    }
    Ok(rows)
}

/// The dimension a field of sparse vectors declares (`sparsevec(n)`), from its metadata.
pub fn declared_dims(field: &Field) -> Option<usize> {
    field
        .metadata()
        .get(vecraft_storage::schema::DIMS_KEY)?
        .parse()
        .ok()
}
