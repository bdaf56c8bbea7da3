//! Vector columns: their element type (`vector` or `halfvec`), dimensions, metric and HNSW
//! parameters, and the Arrow arrays that carry their values.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use serde::{Deserialize, Serialize};

use super::{DEFAULT_EF_CONSTRUCTION, DEFAULT_M};
use crate::distance::Metric;
use crate::error::{Error, Result};

/// HNSW build parameters of one vector column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node on the upper layers (layer 0 keeps `2 * m`).
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: DEFAULT_M,
            ef_construction: DEFAULT_EF_CONSTRUCTION,
        }
    }
}

impl HnswParams {
    pub fn validate(&self) -> Result<()> {
        if !(2..=100).contains(&self.m) {
            return Err(Error::InvalidArgument(format!(
                "value {} out of bounds for option \"m\" (valid range is 2 to 100)",
                self.m
            )));
        }
        if !(4..=1000).contains(&self.ef_construction) {
            return Err(Error::InvalidArgument(format!(
                "value {} out of bounds for option \"ef_construction\" (valid range is 4 to 1000)",
                self.ef_construction
            )));
        }
        if self.ef_construction < 2 * self.m {
            return Err(Error::InvalidArgument(
                "ef_construction must be greater than or equal to 2 * m".into(),
            ));
        }
        Ok(())
    }
}

/// A `vector(dims)` (or `halfvec(dims)`) column and how it is indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorSpec {
    pub dims: usize,
    pub metric: Metric,
    pub hnsw: HnswParams,
    /// What an element is to SQL: pgvector's `vector` (4-byte floats) or `halfvec` (2-byte).
    #[serde(default)]
    pub element: VectorElement,
}

/// The element type of a vector column. A `halfvec` value is kept as the 4-byte floats its
/// halves are exactly (searched by the same kernels and graphs); at the storage engine's
/// boundary it is Arrow `FixedSizeList<Float16>`, so every value read back is the half the
/// client wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorElement {
    #[default]
    Float32,
    Float16,
}

impl VectorElement {
    /// pgvector's name of the type.
    pub fn type_name(self) -> &'static str {
        match self {
            VectorElement::Float32 => "vector",
            VectorElement::Float16 => "halfvec",
        }
    }

    pub fn arrow_type(self) -> DataType {
        match self {
            VectorElement::Float32 => DataType::Float32,
            VectorElement::Float16 => DataType::Float16,
        }
    }
}

impl VectorSpec {
    /// A `vector(dims)` column, indexed for L2 with the default HNSW parameters.
    pub fn new(dims: usize) -> VectorSpec {
        VectorSpec {
            dims,
            metric: Metric::L2,
            hnsw: HnswParams::default(),
            element: VectorElement::Float32,
        }
    }

    /// Arrow's type for a value of this column.
    pub fn arrow_type(&self) -> DataType {
        DataType::FixedSizeList(
            Arc::new(Field::new("item", self.element.arrow_type(), true)),
            self.dims as i32,
        )
    }
}

/// Arrow's type for a `vector(dims)` value: `FixedSizeList<Float32>`.
pub fn vector_arrow_type(dims: usize) -> DataType {
    DataType::FixedSizeList(vector_item_field(), dims as i32)
}

fn vector_item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, true))
}

/// A `vector(dims)` column from row-major `values` (`nulls`: validity per row, if any).
pub fn vector_array(
    dims: usize,
    values: Vec<f32>,
    nulls: Option<arrow::buffer::NullBuffer>,
) -> arrow::array::FixedSizeListArray {
    assert!(
        dims > 0 && values.len().is_multiple_of(dims),
        "vector values are whole rows"
    );
    arrow::array::FixedSizeListArray::new(
        vector_item_field(),
        dims as i32,
        Arc::new(arrow::array::Float32Array::from(values)),
        nulls,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_written_before_halfvec_reads_as_a_vector() {
        let json = r#"{"dims":3,"metric":"l2","hnsw":{"m":16,"ef_construction":64}}"#;
        let spec: VectorSpec = serde_json::from_str(json).unwrap();
        assert_eq!(spec, VectorSpec::new(3));
        let half = VectorSpec {
            element: VectorElement::Float16,
            ..VectorSpec::new(3)
        };
        let again: VectorSpec =
            serde_json::from_str(&serde_json::to_string(&half).unwrap()).unwrap();
        assert_eq!(again, half);
        assert_eq!(half.arrow_type().to_string(), "FixedSizeList(3 x Float16)");
    }
}
