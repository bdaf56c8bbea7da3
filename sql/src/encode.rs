//! Arrow results as PostgreSQL rows. Text format prints numbers as PostgreSQL does
//! (`float4out`/`float8out`) and vectors in pgvector's form; binary format is PostgreSQL's
//! `send` form of each type, and pgvector's for vectors.

use std::sync::Arc;

use bytes::BufMut;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float16Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use vecraft_planner::bits::{BitLength, BitString, bit_rows};
use vecraft_planner::sparsevec::{SparseVec, sparse_rows};
use vecraft_planner::vector_text::{format_double, format_real, format_vector};
use vecraft_storage::schema::{is_bit, is_sparsevec};

/// The OID Vecraft gives pgvector's `vector` type (pgvector's is assigned at `CREATE
/// EXTENSION`; clients look it up by name).
pub const VECTOR_OID: u32 = 16385;

/// The OID Vecraft gives pgvector's `halfvec` type.
pub const HALFVEC_OID: u32 = 16400;

/// The OID Vecraft gives pgvector's `sparsevec` type.
pub const SPARSEVEC_OID: u32 = 16410;

/// Whether `oid` is one of pgvector's types (kept in the `public` schema, as pgvector's are).
pub fn is_pgvector_type(oid: u32) -> bool {
    oid == VECTOR_OID || oid == HALFVEC_OID || oid == SPARSEVEC_OID
}

/// pgvector's `sparsevec` type as a wire type.
pub fn sparsevec_type() -> Type {
    Type::new(
        "sparsevec".into(),
        SPARSEVEC_OID,
        postgres_types::Kind::Simple,
        "public".into(),
    )
}

/// Row `row` of a column of bit strings.
fn bits(array: &ArrayRef, row: usize) -> Option<BitString> {
    bit_rows(array.slice(row, 1).as_ref()).ok()?.pop()?
}

/// Row `row` of a column of sparse vectors.
fn sparse(array: &ArrayRef, row: usize) -> Option<SparseVec> {
    sparse_rows(array.slice(row, 1).as_ref()).ok()?.pop()?
}

/// pgvector's `vector` type as a wire type.
pub fn vector_type() -> Type {
    Type::new(
        "vector".into(),
        VECTOR_OID,
        postgres_types::Kind::Simple,
        "public".into(),
    )
}

/// pgvector's `halfvec` type as a wire type.
pub fn halfvec_type() -> Type {
    Type::new(
        "halfvec".into(),
        HALFVEC_OID,
        postgres_types::Kind::Simple,
        "public".into(),
    )
}

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The PostgreSQL type of a result column: pgvector's `vector` for vectors (clients that
/// know it, like pgvector-python, decode it; others read its text), `"char"` for Int8.
pub(crate) fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float16 => {
            halfvec_type()
        }
        DataType::FixedSizeList(..) => vector_type(),
        t if is_sparsevec(t) => sparsevec_type(),
        t if is_bit(t) => Type::BIT,
        DataType::Int8 => Type::CHAR,
        DataType::Boolean => Type::BOOL,
        DataType::Int16 => Type::INT2,
        DataType::Int32 => Type::INT4,
        DataType::Int64 | DataType::UInt64 => Type::INT8,
        DataType::UInt32 => Type::OID,
        DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Date32 => Type::DATE,
        DataType::Decimal128(..) => Type::NUMERIC,
        // Arrays (catalog columns such as `indkey`, `array_agg` results). A list of `real`s
        // stays text: it is also what an unsized `'[…]'::vector` is.
        DataType::List(item) => match item.data_type() {
            DataType::Float16 => halfvec_type(), // a halfvec without dimensions
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Type::TEXT_ARRAY,
            DataType::Int16 => Type::INT2_ARRAY,
            DataType::Int32 => Type::INT4_ARRAY,
            DataType::Int64 => Type::INT8_ARRAY,
            DataType::UInt32 => Type::OID_ARRAY,
            DataType::Float64 => Type::FLOAT8_ARRAY,
            DataType::Boolean => Type::BOOL_ARRAY,
            _ => Type::TEXT,
        },
        _ => Type::TEXT,
    }
}

/// An array in PostgreSQL's binary form: one dimension from 1, each element in its type's
/// binary form (`array_send`).
fn binary_array(items: &ArrayRef, described: &Type) -> Option<Vec<u8>> {
    let element = match described.kind() {
        postgres_types::Kind::Array(element) => element.clone(),
        _ => return None,
    };
    let mut out = Vec::new();
    out.put_i32(1); // dimensions
    out.put_i32(i32::from(items.null_count() > 0));
    out.put_u32(element.oid());
    out.put_i32(items.len() as i32);
    out.put_i32(1); // lower bound
    for i in 0..items.len() {
        match binary(items, i, &element) {
            Some(bytes) => {
                out.put_i32(bytes.len() as i32);
                out.extend_from_slice(&bytes);
            }
            None => out.put_i32(-1),
        }
    }
    Some(out)
}

/// Field metadata that marks a text column as PostgreSQL's one-byte `"char"` (catalog
/// columns such as `relkind`).
use vecraft_storage::schema::PG_TYPE_KEY;

pub(crate) fn char_type_metadata() -> std::collections::HashMap<String, String> {
    [(PG_TYPE_KEY.to_string(), "char".to_string())].into()
}

/// The PostgreSQL type of a result field: its metadata's, else its data type's.
pub(crate) fn field_type(field: &datafusion::arrow::datatypes::Field) -> Type {
    use vecraft_planner::text_types::TextType;
    match TextType::of_field(field) {
        Some(TextType::Json) => return Type::JSON,
        Some(TextType::Jsonb) => return Type::JSONB,
        Some(TextType::Uuid) => return Type::UUID,
        None => {}
    }
    match field.metadata().get(PG_TYPE_KEY).map(String::as_str) {
        Some("char") => Type::CHAR,
        Some("int2vector") => Type::INT2_VECTOR,
        Some("oidvector") => Type::OID_VECTOR,
        Some("varchar") => Type::VARCHAR,
        Some("vector") => vector_type(),
        Some(vecraft_planner::types::REAL_ARRAY) => Type::FLOAT4_ARRAY,
        _ => match BitLength::of_field(field) {
            Some(BitLength::AtMost(_) | BitLength::Any) => Type::VARBIT,
            _ => pg_type(field.data_type()),
        },
    }
}

/// Row description of `schema`, each column in the format the client asked for.
pub fn fields_with(schema: &Schema, format: &Format) -> Arc<Vec<FieldInfo>> {
    Arc::new(
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                FieldInfo::new(
                    f.name().clone(),
                    None,
                    None,
                    field_type(f),
                    format.format_for(i),
                )
            })
            .collect(),
    )
}

/// The rows of `batch`, each value as PostgreSQL's text.
pub fn rows(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut encoder = DataRowEncoder::new(fields.clone());
    let options = FormatOptions::default();
    for row in 0..batch.num_rows() {
        for (column, field) in batch.columns().iter().zip(fields.iter()) {
            match field.format() {
                // As text, whatever the column's type: pgwire would quote an array's text.
                FieldFormat::Text => encoder.encode_field_with_type_and_format(
                    &match *field.datatype() {
                        Type::INT2_VECTOR | Type::OID_VECTOR => spaced(column, row),
                        // `real[]`, whose Arrow type is also an unsized vector's.
                        Type::FLOAT4_ARRAY if matches!(column.data_type(), DataType::List(_)) => {
                            (!column.is_null(row))
                                .then(|| array_literal(&column.as_list::<i32>().value(row)))
                        }
                        _ => text(column, row),
                    },
                    &Type::TEXT,
                    FieldFormat::Text,
                    &options,
                )?,
                FieldFormat::Binary => encoder.encode_field_with_type_and_format(
                    &binary(column, row, field.datatype()),
                    &Type::BYTEA,
                    FieldFormat::Binary,
                    &options,
                )?,
            }
        }
        out.push(encoder.take_row());
    }
    Ok(out)
}

/// A value in PostgreSQL's binary (`send`) form of the type the column was described with,
/// or `None` for NULL. (A column described before planning finished, as `vector` without
/// dimensions is, may hold a more precise type: the description wins.)
fn binary(array: &ArrayRef, row: usize, described: &Type) -> Option<Vec<u8>> {
    if array.is_null(row) || array.data_type() == &DataType::Null {
        return None;
    }
    let mut out = Vec::new();
    if *described == Type::TEXT {
        out.extend_from_slice(text(array, row)?.as_bytes());
        return Some(out);
    }
    if matches!(described.kind(), postgres_types::Kind::Array(_))
        && matches!(array.data_type(), DataType::List(_))
    {
        return binary_array(&array.as_list::<i32>().value(row), described);
    }
    if *described == Type::JSONB {
        out.push(1); // jsonb's binary form: a version byte, then the text
        out.extend_from_slice(text(array, row)?.as_bytes());
        return Some(out);
    }
    if *described == Type::UUID {
        let id = uuid::Uuid::parse_str(&text(array, row)?).ok()?;
        out.extend_from_slice(id.as_bytes());
        return Some(out);
    }
    if *described == Type::CHAR {
        // One byte; PostgreSQL's '\0' (no identity, say) is the empty string in text.
        out.push(text(array, row)?.bytes().next().unwrap_or(0));
        return Some(out);
    }
    match array.data_type() {
        DataType::Boolean => out.put_u8(u8::from(array.as_boolean().value(row))),
        DataType::Int8 => out.put_i8(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => out.put_i16(array.as_primitive::<Int16Type>().value(row)),
        DataType::FixedSizeList(..) => {
            vector_binary(&array.as_fixed_size_list().value(row), &mut out)?
        }
        t if is_sparsevec(t) => out.extend_from_slice(&sparse(array, row)?.to_binary()),
        t if is_bit(t) => out.extend_from_slice(&bits(array, row)?.to_binary()),
        // A vector of a column without dimensions, described as `vector`; a halfvec.
        DataType::List(item)
            if matches!(item.data_type(), DataType::Float32 | DataType::Float16) =>
        {
            vector_binary(&array.as_list::<i32>().value(row), &mut out)?
        }
        DataType::Int32 => out.put_i32(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => out.put_i64(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt64 => out.put_i64(array.as_primitive::<UInt64Type>().value(row) as i64),
        DataType::UInt32 => out.put_u32(array.as_primitive::<UInt32Type>().value(row)),
        DataType::Float32 => out.put_f32(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => out.put_f64(array.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(..) => {
            out.put_i64(timestamp_micros(array, row)?.saturating_sub(POSTGRES_EPOCH_MICROS))
        }
        DataType::Date32 => out.put_i32(
            array
                .as_primitive::<Date32Type>()
                .value(row)
                .saturating_sub(POSTGRES_EPOCH_DAYS),
        ),
        DataType::Decimal128(precision, scale) => out.extend_from_slice(&crate::numeric::binary(
            array.as_primitive::<Decimal128Type>().value(row),
            *precision,
            *scale,
        )),
        // text (vectors too, as their column type says): the bytes of the text form
        _ => out.extend_from_slice(text(array, row)?.as_bytes()),
    }
    Some(out)
}

/// pgvector's binary form of one vector's `values`: `u16` dimensions, `u16` unused, the
/// big-endian `f32`s. A halfvec's is `halfvec_send`'s: the same header, then its halves.
fn vector_binary(values: &ArrayRef, out: &mut Vec<u8>) -> Option<()> {
    if values.data_type() == &DataType::Float16 {
        out.put_u16(values.len() as u16);
        out.put_u16(0);
        for x in values.as_primitive::<Float16Type>().values() {
            out.put_u16(x.to_bits());
        }
        return Some(());
    }
    let values = datafusion::arrow::compute::cast(values, &DataType::Float32).ok()?;
    out.put_u16(values.len() as u16);
    out.put_u16(0);
    for x in values.as_primitive::<Float32Type>().values() {
        out.put_f32(*x);
    }
    Some(())
}

fn text(array: &ArrayRef, row: usize) -> Option<String> {
    if array.is_null(row) || array.data_type() == &DataType::Null {
        return None;
    }
    Some(match array.data_type() {
        DataType::Boolean => if array.as_boolean().value(row) {
            "t"
        } else {
            "f"
        }
        .to_string(),
        DataType::Int8 => (array.as_primitive::<Int8Type>().value(row) as u8 as char).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::Float32 => format_real(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => format_double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(_, None) => timestamp(timestamp_micros(array, row)?),
        // An instant, shown in UTC (the session's TimeZone, which Vecraft does not change).
        DataType::Timestamp(_, Some(_)) => {
            format!("{}+00", timestamp(timestamp_micros(array, row)?))
        }
        DataType::Date32 => date(array.as_primitive::<Date32Type>().value(row).into()),
        DataType::Decimal128(precision, scale) => crate::numeric::text(
            array.as_primitive::<Decimal128Type>().value(row),
            *precision,
            *scale,
        ),
        DataType::FixedSizeList(_, _) => {
            let v = array.as_fixed_size_list().value(row);
            let v = datafusion::arrow::compute::cast(&v, &DataType::Float32).ok()?;
            format_vector(v.as_primitive::<Float32Type>().values())
        }
        // A vector whose dimensions are not in its type (`'[1,2]'::vector`), a halfvec's.
        DataType::List(item)
            if matches!(item.data_type(), DataType::Float32 | DataType::Float16) =>
        {
            let v = array.as_list::<i32>().value(row);
            let v = datafusion::arrow::compute::cast(&v, &DataType::Float32).ok()?;
            format_vector(v.as_primitive::<Float32Type>().values())
        }
        DataType::List(_) => array_literal(&array.as_list::<i32>().value(row)),
        t if is_sparsevec(t) => sparse(array, row)?.format(),
        t if is_bit(t) => bits(array, row)?.format(),
        _ => datafusion::arrow::util::display::array_value_to_string(array, row).ok()?,
    })
}

/// An `int2vector` or `oidvector` as PostgreSQL prints one: `1 2`.
fn spaced(array: &ArrayRef, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    let DataType::List(_) = array.data_type() else {
        return text(array, row);
    };
    let items = array.as_list::<i32>().value(row);
    let items: Vec<String> = (0..items.len()).filter_map(|i| text(&items, i)).collect();
    Some(items.join(" "))
}

/// An array as PostgreSQL prints one: `{1,2}`, `{a,"b c",NULL}`, `{}`.
fn array_literal(items: &ArrayRef) -> String {
    let quoted = |t: String| {
        let plain = !t.is_empty()
            && !t.eq_ignore_ascii_case("null")
            && !t.contains(['{', '}', ',', '"', '\\', ' ']);
        if plain {
            t
        } else {
            format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
        }
    };
    let items: Vec<String> = (0..items.len())
        .map(|i| text(items, i).map_or_else(|| "NULL".to_string(), quoted))
        .collect();
    format!("{{{}}}", items.join(","))
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub const POSTGRES_EPOCH_DAYS: i32 = 10_957;

/// A timestamp of any unit as microseconds since 1970 (what PostgreSQL keeps).
fn timestamp_micros(array: &ArrayRef, row: usize) -> Option<i64> {
    Some(match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .saturating_mul(1_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().value(row)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .value(row)
            .div_euclid(1_000),
        _ => return None,
    })
}

/// `YYYY-MM-DD`, as PostgreSQL prints `date`.
fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, as PostgreSQL prints `timestamp`.
fn timestamp(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (secs, frac) = (rest / 1_000_000, rest % 1_000_000);
    let base = format!(
        "{} {:02}:{:02}:{:02}",
        date(days),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac == 0 {
        base
    } else {
        format!("{base}.{}", format!("{frac:06}").trim_end_matches('0'))
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A stream of results that ends with 57014 once a deadline passes.
pub trait DeadlineExt: futures::Stream + Sized {
    fn take_until_deadline<T>(
        self,
        deadline: Option<tokio::time::Instant>,
    ) -> futures::stream::BoxStream<'static, PgWireResult<T>>
    where
        Self: futures::Stream<Item = PgWireResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        use futures::StreamExt;
        let Some(deadline) = deadline else {
            return self.boxed();
        };
        let sleep = Box::pin(tokio::time::sleep_until(deadline));
        futures::stream::unfold(Some((self.boxed(), sleep)), |state| async move {
            let (mut items, mut sleep) = state?;
            tokio::select! {
                biased;
                _ = &mut sleep => Some((Err(crate::handler::statement_timeout_error()), None)),
                item = items.next() => item.map(|item| (item, Some((items, sleep)))),
            }
        })
        .boxed()
    }
}

impl<S: futures::Stream> DeadlineExt for S {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_postgres() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_700_000_000_123_400), "2023-11-14 22:13:20.1234");
        assert_eq!(timestamp(-1), "1969-12-31 23:59:59.999999");
        assert_eq!(date(i64::from(POSTGRES_EPOCH_DAYS)), "2000-01-01");
    }
}
