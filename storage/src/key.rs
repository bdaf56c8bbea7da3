//! Primary keys: a collection is keyed by one BIGINT, INTEGER or TEXT (uuid) column. An
//! INTEGER key is the same key as the BIGINT of its value.

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Key {
    Int(i64),
    Text(String),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Int(v) => write!(f, "{v}"),
            Key::Text(v) => write!(f, "{v}"),
        }
    }
}

/// Reads every key of a primary-key column; a null key is an error.
pub fn keys_of(column: &ArrayRef) -> Result<Vec<Key>> {
    if column.null_count() > 0 {
        return Err(Error::InvalidArgument(
            "null value in primary key column violates not-null constraint".into(),
        ));
    }
    match column.data_type() {
        DataType::Int64 => Ok(column
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|v| Key::Int(*v))
            .collect()),
        DataType::Int32 => Ok(column
            .as_primitive::<Int32Type>()
            .values()
            .iter()
            .map(|v| Key::Int(i64::from(*v)))
            .collect()),
        DataType::Utf8 => Ok(column
            .as_string::<i32>()
            .iter()
            .map(|v| Key::Text(v.unwrap_or_default().to_string()))
            .collect()),
        other => Err(Error::InvalidArgument(format!(
            "primary key must be BIGINT, INTEGER or TEXT, not {other}"
        ))),
    }
}

/// Builds a key column (all keys must be of one kind).
pub fn keys_to_array(keys: &[Key]) -> Result<ArrayRef> {
    match keys.first() {
        None | Some(Key::Int(_)) => keys
            .iter()
            .map(|k| match k {
                Key::Int(v) => Ok(*v),
                Key::Text(_) => Err(Error::InvalidArgument("mixed key kinds".into())),
            })
            .collect::<Result<Vec<i64>>>()
            .map(|v| std::sync::Arc::new(Int64Array::from(v)) as ArrayRef),
        Some(Key::Text(_)) => keys
            .iter()
            .map(|k| match k {
                Key::Text(v) => Ok(v.as_str()),
                Key::Int(_) => Err(Error::InvalidArgument("mixed key kinds".into())),
            })
            .collect::<Result<Vec<&str>>>()
            .map(|v| std::sync::Arc::new(StringArray::from(v)) as ArrayRef),
    }
}
