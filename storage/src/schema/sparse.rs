//! pgvector's `sparsevec` in Arrow: a struct of the vector's dimension and its non-zero
//! elements (0-based indices in ascending order, and their values), so its type alone tells
//! it from every other column type. A `sparsevec` column is payload: it is kept, filtered
//! and searched exactly, never indexed by a graph.

use arrow::datatypes::{DataType, Field, Fields};

/// pgvector's limit on a sparse vector's dimension.
pub const MAX_SPARSE_DIMS: usize = 1_000_000_000;

/// pgvector's limit on a sparse vector's non-zero elements.
pub const MAX_SPARSE_NNZ: usize = 16_000;

/// The field metadata key of a `sparsevec(n)` column's `n`: writes of other dimensions are
/// refused (Arrow's type cannot carry it, as `FixedSizeList` carries a vector's).
pub const DIMS_KEY: &str = "vecraft.dims";

/// Arrow's type of a `sparsevec` value.
pub fn sparsevec_arrow_type() -> DataType {
    DataType::Struct(sparsevec_fields())
}

/// The three fields of a `sparsevec` struct: `dim`, `indices`, `values`.
pub fn sparsevec_fields() -> Fields {
    Fields::from(vec![
        Field::new("dim", DataType::Int32, true),
        Field::new("indices", DataType::new_list(DataType::Int32, true), true),
        Field::new("values", DataType::new_list(DataType::Float32, true), true),
    ])
}

/// Whether `data_type` is `sparsevec`'s.
pub fn is_sparsevec(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Struct(fields) if fields == &sparsevec_fields())
}
