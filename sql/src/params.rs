//! Bind parameters: the bytes a client sends, in text or binary format, as values of the types
//! the statement's plan expects; and those types as PostgreSQL types for `Describe`.

use std::sync::Arc;

use datafusion::arrow::array::{FixedSizeListArray, Float32Array, ListArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::results::FieldFormat;
use pgwire::error::PgWireResult;
use vecraft_planner::bits::{BitString, bit_scalar};
use vecraft_planner::halfvec::{half_target, halves, parse_halfvec};
use vecraft_planner::sparsevec::{SparseVec, sparse_scalar};
use vecraft_planner::vector_text::parse_vector;
use vecraft_storage::schema::{MAX_DIMS, is_bit, is_sparsevec};

use vecraft_planner::array_text::parse_array;
use vecraft_storage::schema::UTC;

use crate::encode::{POSTGRES_EPOCH_DAYS, POSTGRES_EPOCH_MICROS, VECTOR_OID};
use crate::errors::user_error;

/// The PostgreSQL type a client is told a parameter of `data_type` has. Vectors are `vector`,
/// as PostgreSQL describes them: clients with pgvector's adapter (asyncpg, psycopg) then send
/// its binary form; others send `'[1,2,3]'` as text (or declare `text` themselves at Parse),
/// which is read as pgvector reads it.
pub fn pg_param_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::List(item) if item.data_type() == &DataType::Float16 => {
            crate::encode::halfvec_type()
        }
        DataType::List(item) if item.data_type() == &DataType::Float32 => {
            crate::encode::vector_type()
        }
        other => crate::encode::pg_type(other),
    }
}

/// One parameter as a value of `target`. `declared` is the type the client named at Parse
/// (or that we described), which decides how binary bytes are read.
pub fn decode(
    bytes: Option<&[u8]>,
    format: FieldFormat,
    declared: Option<&Type>,
    target: &DataType,
) -> PgWireResult<ScalarValue> {
    let Some(bytes) = bytes else {
        return ScalarValue::try_from(target).map_err(|e| user_error("22023", e.to_string()));
    };
    if let Some(dims) = half_target(target) {
        return halfvec_value(bytes, format, declared, dims, target);
    }
    if is_sparsevec(target) {
        return sparsevec_value(bytes, format, declared);
    }
    if is_bit(target) {
        return bit_value(bytes, format, declared);
    }
    let value = match format {
        FieldFormat::Text => text_value(utf8(bytes)?, target)?,
        FieldFormat::Binary => {
            let declared = declared.cloned().unwrap_or_else(|| pg_param_type(target));
            binary_value(bytes, &declared, target)?
        }
    };
    if &value.data_type() == target {
        return Ok(value);
    }
    value
        .cast_to(target)
        .map_err(|e| user_error("22P02", format!("parameter does not fit {target}: {e}")))
}

/// A halfvec parameter: pgvector's text form, `halfvec`'s binary form, or a `vector`'s
/// (each element then rounded to a half).
fn halfvec_value(
    bytes: &[u8],
    format: FieldFormat,
    declared: Option<&Type>,
    dims: Option<usize>,
    target: &DataType,
) -> PgWireResult<ScalarValue> {
    let wrong = || user_error("22P03", "incorrect binary data format in bind parameter");
    let to_pg = |e: vecraft_planner::error::VectorError| user_error(e.sqlstate, e.message);
    let values = match declared.map(Type::oid) {
        _ if sent_as_text(format, declared) => parse_halfvec(utf8(bytes)?).map_err(to_pg)?,
        Some(VECTOR_OID) => halves(&vector_binary(bytes).ok_or_else(wrong)?).map_err(to_pg)?,
        _ => halfvec_binary(bytes).ok_or_else(wrong)?,
    };
    if values.is_empty() {
        return Err(user_error(
            "22000",
            "halfvec must have at least 1 dimension",
        ));
    }
    if values.len() > MAX_DIMS {
        let message = format!("halfvec cannot have more than {MAX_DIMS} dimensions");
        return Err(user_error("54000", message));
    }
    let value = vector_scalar(values.clone(), dims.unwrap_or(values.len()))?;
    value
        .cast_to(target)
        .map_err(|e| user_error("22P02", format!("parameter does not fit {target}: {e}")))
}

/// Whether a parameter's bytes are its text: in text format, or in binary from a client that
/// declared `text` or `varchar` (whose binary form is the text).
fn sent_as_text(format: FieldFormat, declared: Option<&Type>) -> bool {
    let text_oids = [Type::TEXT.oid(), Type::VARCHAR.oid()];
    match format {
        FieldFormat::Text => true,
        FieldFormat::Binary => declared.is_some_and(|t| text_oids.contains(&t.oid())),
    }
}

/// A sparsevec parameter: pgvector's text form, or `sparsevec_send`'s binary form.
fn sparsevec_value(
    bytes: &[u8],
    format: FieldFormat,
    declared: Option<&Type>,
) -> PgWireResult<ScalarValue> {
    let to_pg = |e: vecraft_planner::error::VectorError| user_error(e.sqlstate, e.message);
    let value = match sent_as_text(format, declared) {
        true => SparseVec::parse(utf8(bytes)?, None),
        false => SparseVec::from_binary(bytes, None)
            .ok_or_else(|| user_error("22P03", "incorrect binary data format in bind parameter"))?,
    };
    sparse_scalar(Some(value.map_err(to_pg)?)).map_err(|e| user_error("XX000", e.to_string()))
}

/// A bit-string parameter: `0101`, or `bit_send`'s binary form.
fn bit_value(
    bytes: &[u8],
    format: FieldFormat,
    declared: Option<&Type>,
) -> PgWireResult<ScalarValue> {
    let to_pg = |e: vecraft_planner::error::VectorError| user_error(e.sqlstate, e.message);
    let value = match sent_as_text(format, declared) {
        true => BitString::parse(utf8(bytes)?).map_err(to_pg)?,
        false => BitString::from_binary(bytes)
            .ok_or_else(|| user_error("22P03", "incorrect binary data format in bind parameter"))?,
    };
    bit_scalar(Some(value)).map_err(|e| user_error("XX000", e.to_string()))
}

fn utf8(bytes: &[u8]) -> PgWireResult<&str> {
    std::str::from_utf8(bytes).map_err(|_| user_error("22021", "invalid UTF-8 in parameter"))
}

fn invalid(type_name: &str, text: &str) -> pgwire::error::PgWireError {
    user_error(
        "22P02",
        format!("invalid input syntax for type {type_name}: \"{text}\""),
    )
}

/// A text-format parameter, read as PostgreSQL reads that type's text.
fn text_value(text: &str, target: &DataType) -> PgWireResult<ScalarValue> {
    let t = text.trim();
    Ok(match target {
        DataType::Int16 => {
            ScalarValue::Int16(Some(t.parse().map_err(|_| invalid("smallint", text))?))
        }
        DataType::Int32 => {
            ScalarValue::Int32(Some(t.parse().map_err(|_| invalid("integer", text))?))
        }
        DataType::Int64 => {
            ScalarValue::Int64(Some(t.parse().map_err(|_| invalid("bigint", text))?))
        }
        DataType::UInt32 => ScalarValue::UInt32(Some(t.parse().map_err(|_| invalid("oid", text))?)),
        DataType::Float32 => {
            ScalarValue::Float32(Some(float(t).ok_or_else(|| invalid("real", text))? as f32))
        }
        DataType::Float64 => ScalarValue::Float64(Some(
            float(t).ok_or_else(|| invalid("double precision", text))?,
        )),
        DataType::Boolean => {
            ScalarValue::Boolean(Some(boolean(t).ok_or_else(|| invalid("boolean", text))?))
        }
        DataType::FixedSizeList(_, dims) => {
            let v = parse_vector(text).map_err(|e| user_error(e.sqlstate, e.message.clone()))?;
            vector_scalar(v, *dims as usize)?
        }
        // `$1::vector`: a vector of any dimension.
        DataType::List(item) if item.data_type() == &DataType::Float32 => {
            let v = parse_vector(text).map_err(|e| user_error(e.sqlstate, e.message.clone()))?;
            unsized_vector(v)?
        }
        // `{a,b}`: an array, its elements cast to the element type.
        DataType::List(_) => {
            let items = parse_array(text).map_err(|e| user_error(e.sqlstate, e.message.clone()))?;
            let items: Vec<ScalarValue> = items.into_iter().map(ScalarValue::Utf8).collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&items, &DataType::Utf8))
        }
        _ => ScalarValue::Utf8(Some(text.to_string())),
    })
}

fn float(t: &str) -> Option<f64> {
    match t.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "inf" | "+infinity" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

fn boolean(t: &str) -> Option<bool> {
    match t.to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A binary-format parameter, read by the type the client declared.
fn binary_value(bytes: &[u8], declared: &Type, target: &DataType) -> PgWireResult<ScalarValue> {
    let wrong = || {
        user_error(
            "22P03",
            format!(
                "incorrect binary data format in parameter of type {}",
                declared.name()
            ),
        )
    };
    let fixed = |n: usize| -> PgWireResult<&[u8]> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(wrong())
        }
    };
    Ok(match *declared {
        Type::BOOL => ScalarValue::Boolean(Some(fixed(1)?[0] != 0)),
        Type::UUID => ScalarValue::Utf8(Some(
            uuid::Uuid::from_slice(fixed(16)?)
                .map_err(|_| wrong())?
                .hyphenated()
                .to_string(),
        )),
        // jsonb's binary form: version 1, then the text.
        Type::JSONB => match bytes.split_first() {
            Some((1, json)) => ScalarValue::Utf8(Some(utf8(json)?.to_string())),
            _ => return Err(wrong()),
        },
        Type::INT2 => ScalarValue::Int16(Some(i16::from_be_bytes(
            fixed(2)?.try_into().map_err(|_| wrong())?,
        ))),
        Type::INT4 => ScalarValue::Int32(Some(i32::from_be_bytes(
            fixed(4)?.try_into().map_err(|_| wrong())?,
        ))),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(
            fixed(8)?.try_into().map_err(|_| wrong())?,
        ))),
        Type::OID => ScalarValue::UInt32(Some(u32::from_be_bytes(
            fixed(4)?.try_into().map_err(|_| wrong())?,
        ))),
        Type::FLOAT4 => ScalarValue::Float32(Some(f32::from_be_bytes(
            fixed(4)?.try_into().map_err(|_| wrong())?,
        ))),
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(
            fixed(8)?.try_into().map_err(|_| wrong())?,
        ))),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| wrong())?);
            let zone = (*declared == Type::TIMESTAMPTZ).then(|| UTC.into());
            let micros = micros
                .checked_add(POSTGRES_EPOCH_MICROS)
                .ok_or_else(|| user_error("22008", "timestamp out of range"))?;
            ScalarValue::TimestampMicrosecond(Some(micros), zone)
        }
        Type::DATE => {
            let days = i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| wrong())?);
            let days = days
                .checked_add(POSTGRES_EPOCH_DAYS)
                .ok_or_else(|| user_error("22008", "date out of range"))?;
            ScalarValue::Date32(Some(days))
        }
        Type::NUMERIC => {
            ScalarValue::Utf8(Some(crate::numeric::from_binary(bytes).ok_or_else(wrong)?))
        }
        ref t if matches!(t.kind(), postgres_types::Kind::Array(_)) => {
            binary_array(bytes, t, target).ok_or_else(wrong)??
        }
        ref t if t.oid() == VECTOR_OID => {
            let v = vector_binary(bytes).ok_or_else(wrong)?;
            match target {
                DataType::FixedSizeList(_, n) => vector_scalar(v, *n as usize)?,
                DataType::List(item) if item.data_type() == &DataType::Float32 => {
                    unsized_vector(v)?
                }
                _ => return Err(wrong()),
            }
        }
        // A vector in pgvector's binary form from a client that named the type at Parse
        // (pgwire keeps only built-in type OIDs, so it reaches us undeclared). Text never
        // starts with the dimension count: its first byte is `[` or a space.
        _ if is_vector_binary(bytes, target) => {
            let DataType::FixedSizeList(_, dims) = target else {
                return Err(wrong());
            };
            vector_scalar(vector_binary(bytes).ok_or_else(wrong)?, *dims as usize)?
        }
        // text, varchar, name, unknown…: the bytes are the value's text
        _ => text_value(utf8(bytes)?, target)?,
    })
}

/// An array in `array_send`'s form (one dimension, or none for `{}`), each element read as
/// its declared element type. `None` if the bytes are not such an array.
fn binary_array(
    bytes: &[u8],
    declared: &Type,
    target: &DataType,
) -> Option<PgWireResult<ScalarValue>> {
    let postgres_types::Kind::Array(element) = declared.kind() else {
        return None;
    };
    let item_type = match target {
        DataType::List(item) => item.data_type().clone(),
        _ => return None,
    };
    let word = |at: usize| Some(i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let dimensions = word(0)?;
    let mut items = Vec::new();
    let mut at = 12;
    if dimensions == 1 {
        let len = usize::try_from(word(12)?).ok()?;
        at = 20;
        for _ in 0..len {
            let size = word(at)?;
            at += 4;
            if size < 0 {
                items.push(ScalarValue::try_from(&item_type).ok()?);
                continue;
            }
            let value = bytes.get(at..at + size as usize)?;
            at += size as usize;
            match decode(Some(value), FieldFormat::Binary, Some(element), &item_type) {
                Ok(v) => items.push(v),
                Err(e) => return Some(Err(e)),
            }
        }
    } else if dimensions != 0 {
        return Some(Err(user_error(
            "0A000",
            "multidimensional arrays are not supported",
        )));
    }
    if at != bytes.len() {
        return None;
    }
    Some(Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &items, &item_type,
    ))))
}

fn is_vector_binary(bytes: &[u8], target: &DataType) -> bool {
    let DataType::FixedSizeList(_, dims) = target else {
        return false;
    };
    let dims = *dims as usize;
    bytes.len() == 4 + 4 * dims
        && bytes.get(0..2) == Some(&(dims as u16).to_be_bytes()[..])
        && !matches!(bytes[0], b'[' | b' ' | b'\t' | b'\n' | b'\r')
}

/// pgvector's binary form: `u16` dimensions, `u16` unused, then big-endian `f32`s.
pub fn vector_binary(bytes: &[u8]) -> Option<Vec<f32>> {
    let dims = u16::from_be_bytes(bytes.get(0..2)?.try_into().ok()?) as usize;
    let body = bytes.get(4..)?;
    if body.len() != dims * 4 {
        return None;
    }
    Some(
        body.chunks_exact(4)
            .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// pgvector's binary form of a halfvec (`halfvec_recv`): `u16` dimensions, `u16` unused, the
/// big-endian halves; read as the reals they are.
pub fn halfvec_binary(bytes: &[u8]) -> Option<Vec<f32>> {
    let dims = u16::from_be_bytes(bytes.get(0..2)?.try_into().ok()?) as usize;
    let body = bytes.get(4..)?;
    if body.len() != dims * 2 {
        return None;
    }
    let halves = body
        .chunks_exact(2)
        .map(|c| half::f16::from_be_bytes([c[0], c[1]]).to_f32());
    Some(halves.collect())
}

/// pgvector's checks of a value for a `vector(dims)` column.
pub fn check_vector(values: &[f32], dims: usize) -> PgWireResult<()> {
    if values.len() != dims {
        return Err(user_error(
            "22000",
            format!("expected {dims} dimensions, not {}", values.len()),
        ));
    }
    if values.iter().any(|x| !x.is_finite()) {
        return Err(user_error(
            "22000",
            "NaN and infinite values are not allowed in vector",
        ));
    }
    Ok(())
}

/// A vector value of any dimension (`$1::vector`, a `vector` column): pgvector's checks.
fn unsized_vector(values: Vec<f32>) -> PgWireResult<ScalarValue> {
    check_vector(&values, values.len())?;
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    Ok(ScalarValue::List(Arc::new(ListArray::new(
        item,
        datafusion::arrow::buffer::OffsetBuffer::from_lengths([values.len()]),
        Arc::new(Float32Array::from(values)),
        None,
    ))))
}

/// A vector value of a `vector(dims)` slot: pgvector's checks, then a `FixedSizeList`.
fn vector_scalar(values: Vec<f32>, dims: usize) -> PgWireResult<ScalarValue> {
    check_vector(&values, dims)?;
    // One row of a fixed-size list, built in place: the values move in, nothing is cast or
    // copied (this runs for every execution of a prepared kNN query).
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let fixed = FixedSizeListArray::try_new(
        item,
        dims as i32,
        Arc::new(Float32Array::from(values)),
        None,
    )
    .map_err(|e| user_error("XX000", e.to_string()))?;
    Ok(ScalarValue::FixedSizeList(Arc::new(fixed)))
}

/// `$n::vector` (or any cast of `$n`) where the client declared `$n` an array of numbers
/// (psycopg sends a Python list of floats as `float8[]`): `$n` is read as that array and then
/// cast — to a vector with pgvector's checks — as PostgreSQL plans it. Other declared types
/// are left to the plan.
pub fn cast_declared_arrays(
    statement: &mut datafusion::sql::parser::Statement,
    declared: &[Option<Type>],
) {
    use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};
    let datafusion::sql::parser::Statement::Statement(statement) = statement else {
        return;
    };
    let array_type = |placeholder: &str| -> Option<&'static str> {
        let index = placeholder
            .strip_prefix('$')?
            .parse::<usize>()
            .ok()?
            .checked_sub(1)?;
        let declared = declared.get(index)?.as_ref()?;
        Some(match *declared {
            Type::INT2_ARRAY => "smallint[]",
            Type::INT4_ARRAY => "integer[]",
            Type::INT8_ARRAY => "bigint[]",
            Type::FLOAT4_ARRAY => "real[]",
            Type::FLOAT8_ARRAY => "double precision[]",
            Type::NUMERIC_ARRAY => "numeric[]",
            _ => return None,
        })
    };
    let _ = visit_expressions_mut(statement.as_mut(), |e: &mut Expr| {
        if let Expr::Cast { expr: inner, .. } = e
            && let Expr::Value(v) = inner.as_ref()
            && let Value::Placeholder(p) = &v.value
            && let Some(array) = array_type(p)
            && let Some(typed) = parse_cast(p, array)
        {
            **inner = typed;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `CAST(placeholder AS array)` as an expression.
fn parse_cast(placeholder: &str, array: &str) -> Option<datafusion::sql::sqlparser::ast::Expr> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("CAST({placeholder} AS {array})"))
        .ok()?
        .parse_expr()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_type(dims: i32) -> DataType {
        DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dims)
    }

    #[test]
    fn vectors_decode_from_text_and_pgvector_binary() {
        let text = decode(Some(b"[1,2.5,3]"), FieldFormat::Text, None, &vector_type(3)).unwrap();
        let mut binary = vec![0u8, 3, 0, 0];
        for x in [1.0f32, 2.5, 3.0] {
            binary.extend_from_slice(&x.to_be_bytes());
        }
        let vector = crate::encode::vector_type();
        let bin = decode(
            Some(&binary),
            FieldFormat::Binary,
            Some(&vector),
            &vector_type(3),
        )
        .unwrap();
        assert_eq!(text, bin);
        let err = decode(Some(b"[1,2]"), FieldFormat::Text, None, &vector_type(3)).unwrap_err();
        assert!(
            err.to_string().contains("expected 3 dimensions, not 2"),
            "{err}"
        );
    }

    #[test]
    fn halfvecs_decode_from_text_halfvec_binary_and_vector_binary() {
        let halfvec =
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float16, true)), 2);
        let text = decode(Some(b"[1.1,-2]"), FieldFormat::Text, None, &halfvec).unwrap();
        let mut halves = vec![0u8, 2, 0, 0];
        for x in [1.1f32, -2.0] {
            halves.extend_from_slice(&half::f16::from_f32(x).to_be_bytes());
        }
        let binary = decode(Some(&halves), FieldFormat::Binary, None, &halfvec).unwrap();
        let mut reals = vec![0u8, 2, 0, 0];
        for x in [1.1f32, -2.0] {
            reals.extend_from_slice(&x.to_be_bytes());
        }
        let vector = crate::encode::vector_type();
        let from_vector =
            decode(Some(&reals), FieldFormat::Binary, Some(&vector), &halfvec).unwrap();
        assert_eq!(text, binary);
        assert_eq!(text, from_vector);
        assert_eq!(text.data_type(), halfvec);
        let empty = decode(Some(&[0, 0, 0, 0]), FieldFormat::Binary, None, &halfvec).unwrap_err();
        assert!(
            empty.to_string().contains("at least 1 dimension"),
            "{empty}"
        );
        let big = decode(Some(b"[70000,1]"), FieldFormat::Text, None, &halfvec).unwrap_err();
        assert!(
            big.to_string().contains("out of range for type halfvec"),
            "{big}"
        );
    }

    #[test]
    fn numbers_decode_in_both_formats() {
        let text = decode(Some(b" 42 "), FieldFormat::Text, None, &DataType::Int64).unwrap();
        let bin = decode(
            Some(&42i32.to_be_bytes()),
            FieldFormat::Binary,
            Some(&Type::INT4),
            &DataType::Int64,
        )
        .unwrap();
        assert_eq!(text, ScalarValue::Int64(Some(42)));
        assert_eq!(bin, ScalarValue::Int64(Some(42)));
        assert!(decode(Some(b"4x"), FieldFormat::Text, None, &DataType::Int64).is_err());
        assert_eq!(
            decode(None, FieldFormat::Text, None, &DataType::Int32).unwrap(),
            ScalarValue::Int32(None)
        );
    }
}
