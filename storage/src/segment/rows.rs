//! Rows in and out of segments: checking an upsert batch against the schema (types, nulls,
//! dimensions, NaN) before it touches any state, and gathering chosen rows back out as Arrow
//! arrays for search results and scans.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, RecordBatch, new_null_array};
use arrow::buffer::NullBuffer;
use arrow::compute::{cast, interleave};
use arrow::datatypes::{DataType, Float32Type};
use roaring::RoaringBitmap;

use crate::distance::{inv_norm, validate_vector};
use crate::error::{Error, Result};
use crate::key::{Key, keys_of};
use crate::schema::{CollectionSchema, ColumnType, VectorElement, vector_array};
use crate::segment::Segment;
use crate::segment::memory::MemVectors;

/// An upsert batch split into what a segment stores: keys, payload columns, flat vectors.
pub struct NormalizedRows {
    pub keys: Vec<Key>,
    pub payload: RecordBatch,
    pub vectors: Vec<MemVectors>,
}

/// Validates `batch` against `schema` (columns found by name; missing nullable columns are
/// NULL) and splits it. Nothing is changed anywhere if this fails.
pub fn normalize(schema: &CollectionSchema, batch: &RecordBatch) -> Result<NormalizedRows> {
    for field in batch.schema().fields() {
        schema.column_index(field.name())?;
    }
    let column = |name: &str| {
        batch
            .schema()
            .index_of(name)
            .ok()
            .map(|i| batch.column(i).clone())
    };
    let rows = batch.num_rows();
    let mut payload = Vec::new();
    let mut vectors = Vec::new();
    for def in &schema.columns {
        let given = column(&def.name);
        if let Some(array) = &given {
            if !def.nullable && array.null_count() > 0 {
                return Err(not_null(&def.name));
            }
        } else if !def.nullable {
            return Err(not_null(&def.name));
        }
        match def.ty {
            ColumnType::Vector(spec) => {
                vectors.push(flatten_vectors(given.as_ref(), rows, spec.dims)?);
            }
            ty => {
                let array = match given {
                    Some(a) => coerce(&a, &ty.arrow_type(), &def.name)?,
                    None => new_null_array(&ty.arrow_type(), rows),
                };
                payload.push(array);
            }
        }
    }
    let payload = RecordBatch::try_new(schema.payload_schema(), payload)?;
    let pk_pos = schema
        .payload_columns()
        .iter()
        .position(|&c| c == schema.primary_key);
    let keys = keys_of(payload.column(pk_pos.expect("the primary key is a payload column")))?;
    Ok(NormalizedRows {
        keys,
        payload,
        vectors,
    })
}

fn not_null(column: &str) -> Error {
    Error::InvalidArgument(format!(
        "null value in column \"{column}\" violates not-null constraint"
    ))
}

fn coerce(array: &ArrayRef, to: &DataType, column: &str) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    if !arrow::compute::can_cast_types(array.data_type(), to) {
        return Err(Error::InvalidArgument(format!(
            "column \"{column}\" is of type {to} but expression is of type {}",
            array.data_type()
        )));
    }
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(array, to, &options)
        .map_err(|e| Error::InvalidArgument(format!("column \"{column}\": {e}")))
}

/// Copies a vector column (FixedSizeList or List of Float32) into row-major floats, checking
/// every vector's length and values. NULL vectors become zeros and a bit in `nulls`.
fn flatten_vectors(array: Option<&ArrayRef>, rows: usize, dims: usize) -> Result<MemVectors> {
    let mut out = MemVectors {
        dims,
        data: Vec::with_capacity(rows * dims),
        inv_norms: Vec::with_capacity(rows),
        nulls: RoaringBitmap::new(),
        live: None,
    };
    let zeros = vec![0.0f32; dims];
    let mut push = |row: usize, v: Option<&[f32]>| -> Result<()> {
        match v {
            None => {
                out.nulls.insert(row as u32);
                out.data.extend_from_slice(&zeros);
                out.inv_norms.push(0.0);
            }
            Some(v) => {
                validate_vector(v, dims)?;
                out.data.extend_from_slice(v);
                out.inv_norms.push(inv_norm(v));
            }
        }
        Ok(())
    };
    let Some(array) = array else {
        for row in 0..rows {
            push(row, None)?;
        }
        return Ok(out);
    };
    let values_of = |child: &ArrayRef| -> Result<Float32Array> {
        let child = match child.data_type() {
            DataType::Float32 => child.clone(),
            DataType::Float64 | DataType::Float16 | DataType::Int32 | DataType::Int64 => {
                cast(child, &DataType::Float32)?
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "vector elements cannot be {other}"
                )));
            }
        };
        Ok(child.as_primitive::<Float32Type>().clone())
    };
    let mut check_elements = |values: &Float32Array, offsets: &dyn Fn(usize) -> (usize, usize)| {
        for row in 0..rows {
            if array.is_null(row) {
                push(row, None)?;
                continue;
            }
            let (start, len) = offsets(row);
            if values.null_count() > 0 && (start..start + len).any(|i| values.is_null(i)) {
                return Err(Error::InvalidVector(
                    "vector elements cannot be NULL".into(),
                ));
            }
            push(row, Some(&values.values()[start..start + len]))?;
        }
        Ok(())
    };
    match array.data_type() {
        DataType::FixedSizeList(_, size) => {
            let list = array.as_fixed_size_list();
            let size = *size as usize;
            let values = values_of(list.values())?;
            check_elements(&values, &|row| (row * size, size))?;
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let values = values_of(list.values())?;
            let offsets = list.value_offsets();
            check_elements(&values, &|row| {
                let (a, b) = (offsets[row] as usize, offsets[row + 1] as usize);
                (a, b - a)
            })?;
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "a vector column cannot hold {other}"
            )));
        }
    }
    Ok(out)
}

/// Where each row of `rows` sits in the segment's payload batches: (batch, offset).
fn payload_positions(segment: &dyn Segment, rows: &[u32]) -> Vec<(usize, usize)> {
    let mut starts = Vec::with_capacity(segment.payload().len());
    let mut at = 0u32;
    for batch in segment.payload() {
        starts.push(at);
        at += batch.num_rows() as u32;
    }
    rows.iter()
        .map(|&row| {
            let b = starts.partition_point(|&s| s <= row) - 1;
            (b, (row - starts[b]) as usize)
        })
        .collect()
}

/// Gathers `rows` of schema column `column` from `segment`.
pub fn take_column(
    schema: &CollectionSchema,
    segment: &dyn Segment,
    column: usize,
    rows: &[u32],
    positions: &mut Option<Vec<(usize, usize)>>,
) -> Result<ArrayRef> {
    let def = &schema.columns[column];
    if let ColumnType::Vector(spec) = def.ty {
        let i = schema
            .vector_columns()
            .iter()
            .position(|&c| c == column)
            .expect("vector column");
        let vectors = take_vectors(segment, i, spec.dims, rows);
        return match spec.element {
            VectorElement::Float32 => Ok(vectors),
            // Exact: the stored floats are halves.
            VectorElement::Float16 => Ok(cast(&vectors, &spec.arrow_type())?),
        };
    }
    let p = schema
        .payload_columns()
        .iter()
        .position(|&c| c == column)
        .expect("payload column");
    if rows.is_empty() {
        return Ok(new_null_array(&def.ty.arrow_type(), 0).slice(0, 0));
    }
    let positions = positions.get_or_insert_with(|| payload_positions(segment, rows));
    let arrays: Vec<&dyn Array> = segment
        .payload()
        .iter()
        .map(|b| b.column(p).as_ref())
        .collect();
    Ok(interleave(&arrays, positions)?)
}

fn take_vectors(segment: &dyn Segment, i: usize, dims: usize, rows: &[u32]) -> ArrayRef {
    let source = segment.vectors(i);
    let nulls = segment.null_vectors(i);
    let mut values = Vec::with_capacity(rows.len() * dims);
    for &row in rows {
        values.extend_from_slice(source.get(row));
    }
    let validity = (!nulls.is_empty())
        .then(|| NullBuffer::from(rows.iter().map(|r| !nulls.contains(*r)).collect::<Vec<_>>()));
    Arc::new(vector_array(dims, values, validity))
}
