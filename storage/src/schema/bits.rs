//! PostgreSQL's bit strings (`bit(n)`, `bit varying(n)`), which pgvector measures with Hamming
//! and Jaccard distances and makes with `binary_quantize`. In Arrow, a struct of the packed
//! bytes (first bit in the high bit of the first byte, as PostgreSQL packs them, the rest of
//! the last byte zero) and the length in bits: byte order, then length, is PostgreSQL's order
//! of bit strings, so Arrow sorts and compares them as PostgreSQL does.

use arrow::datatypes::{DataType, Field, Fields};

/// The field metadata key of a bit column's length: `n` for `bit(n)` (exactly `n` bits),
/// `..n` for `bit varying(n)` (at most `n`).
pub const BITS_KEY: &str = "vecraft.bits";

/// Arrow's type of a bit string.
pub fn bit_arrow_type() -> DataType {
    DataType::Struct(bit_fields())
}

/// The two fields of a bit string: `bytes`, `bits`.
pub fn bit_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("bits", DataType::Int32, true),
    ])
}

/// Whether `data_type` is a bit string's.
pub fn is_bit(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Struct(fields) if fields == &bit_fields())
}
