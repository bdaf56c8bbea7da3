//! PostgreSQL's `json`, `jsonb` and `uuid`: text in Arrow, their PostgreSQL type named in
//! field metadata ([`PG_TYPE_KEY`]), so the gateway describes them by their own OIDs and
//! clients decode them (psycopg turns `jsonb` into a dict, asyncpg `uuid` into a UUID).
//!
//! Each has an input function (`json_in`, `jsonb_in`, `uuid_in`) that a cast to it
//! becomes ([`crate::casts`]) and that writes apply to the columns they fill
//! ([`conform_batch`]): `json` is checked, `jsonb` checked and put in its normal form, `uuid`
//! checked and put in lower-case hyphenated form. `->`, `->>`, `@>` and `?` on them are
//! planned as the functions here ([`crate::operators`]); `gen_random_uuid()` makes version 4
//! uuids.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use vecraft_storage::schema::{MAX_CHARS_KEY, PG_TYPE_KEY};

use crate::error::{INVALID_TEXT_REPRESENTATION, VectorError};
use crate::functions::{all_constant, answer};
use crate::json::{self, Path};

/// The text-backed PostgreSQL types, by the name their metadata gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextType {
    Json,
    Jsonb,
    Uuid,
}

impl TextType {
    pub fn name(self) -> &'static str {
        match self {
            TextType::Json => "json",
            TextType::Jsonb => "jsonb",
            TextType::Uuid => "uuid",
        }
    }

    /// The type a field's metadata names, if it is one of these.
    pub fn of_field(field: &Field) -> Option<TextType> {
        match field.metadata().get(PG_TYPE_KEY).map(String::as_str) {
            Some("json") => Some(TextType::Json),
            Some("jsonb") => Some(TextType::Jsonb),
            Some("uuid") => Some(TextType::Uuid),
            _ => None,
        }
    }

    /// The type of a SQL type name (`JSONB`, `uuid`, …), if it is one of these.
    pub fn of_sql_name(name: &str) -> Option<TextType> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(TextType::Json),
            "jsonb" => Some(TextType::Jsonb),
            "uuid" => Some(TextType::Uuid),
            _ => None,
        }
    }

    /// A text field that carries this type.
    pub fn field(self, name: &str, nullable: bool) -> Field {
        Field::new(name, DataType::Utf8, nullable)
            .with_metadata([(PG_TYPE_KEY.to_string(), self.name().to_string())].into())
    }

    /// `text` as a value of this type, in the form it is kept in.
    pub fn input(self, text: &str) -> Result<String, VectorError> {
        match self {
            TextType::Json => json::parse(text).map(|_| text.to_string()),
            TextType::Jsonb => json::normal_jsonb(text),
            TextType::Uuid => uuid_text(text),
        }
    }

    /// The input function (`jsonb_in`, …): what a cast to this type becomes.
    pub fn input_udf(self) -> Arc<ScalarUDF> {
        udf(TextFn::Input(self))
    }
}

/// `text` as PostgreSQL reads a uuid: 32 hex digits, a hyphen allowed after any group of
/// four, optionally in braces; kept lower-case and hyphenated.
pub fn uuid_text(text: &str) -> Result<String, VectorError> {
    let bad = || {
        VectorError::new(
            INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type uuid: \"{text}\""),
        )
        .with_literal(text)
    };
    let inner = match text.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}').ok_or_else(bad)?,
        None => text,
    };
    let mut bytes = [0u8; 16];
    let mut digits = inner.chars().peekable();
    for (i, byte) in bytes.iter_mut().enumerate() {
        let mut next = || digits.next().and_then(|d| d.to_digit(16));
        let (hi, lo) = (next().ok_or_else(bad)?, next().ok_or_else(bad)?);
        *byte = (hi * 16 + lo) as u8;
        if i % 2 == 1 && i < 15 && digits.peek() == Some(&'-') {
            digits.next();
        }
    }
    if digits.next().is_some() {
        return Err(bad());
    }
    Ok(uuid::Uuid::from_bytes(bytes).hyphenated().to_string())
}

/// The functions of this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TextFn {
    Input(TextType),
    /// `->`: the selected value, of the document's type.
    Get,
    /// `->>`: the selected value as text.
    GetText,
    /// `@>`
    Contains,
    /// `?`
    Exists,
    GenRandomUuid,
}

impl TextFn {
    fn name(self) -> &'static str {
        match self {
            TextFn::Input(TextType::Json) => "json_in",
            TextFn::Input(TextType::Jsonb) => "jsonb_in",
            TextFn::Input(TextType::Uuid) => "uuid_in",
            TextFn::Get => "jsonb_object_field",
            TextFn::GetText => "jsonb_object_field_text",
            TextFn::Contains => "jsonb_contains",
            TextFn::Exists => "jsonb_exists",
            TextFn::GenRandomUuid => "gen_random_uuid",
        }
    }

    fn arity(self) -> usize {
        match self {
            TextFn::GenRandomUuid => 0,
            TextFn::Input(_) => 1,
            _ => 2,
        }
    }
}

fn udf(function: TextFn) -> Arc<ScalarUDF> {
    let volatility = match function {
        TextFn::GenRandomUuid => Volatility::Volatile,
        _ => Volatility::Immutable,
    };
    let signature = match function.arity() {
        0 => Signature::nullary(volatility),
        n => Signature::any(n, volatility),
    };
    Arc::new(ScalarUDF::new_from_impl(TextUdf {
        function,
        signature,
    }))
}

/// `doc -> path`, or `doc ->> path` when `text`.
pub fn get(doc: Expr, path: Expr, text: bool) -> Expr {
    udf(if text { TextFn::GetText } else { TextFn::Get }).call(vec![doc, path])
}

/// `doc @> other`.
pub fn contains(doc: Expr, other: Expr) -> Expr {
    udf(TextFn::Contains).call(vec![doc, other])
}

/// `doc ? key`.
pub fn exists(doc: Expr, key: Expr) -> Expr {
    udf(TextFn::Exists).call(vec![doc, key])
}

/// Every function of this module, for registration.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    [
        TextFn::Input(TextType::Json),
        TextFn::Input(TextType::Jsonb),
        TextFn::Input(TextType::Uuid),
        TextFn::Get,
        TextFn::GetText,
        TextFn::Contains,
        TextFn::Exists,
        TextFn::GenRandomUuid,
    ]
    .into_iter()
    .map(udf)
    .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TextUdf {
    function: TextFn,
    signature: Signature,
}

impl ScalarUDFImpl for TextUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.function {
            TextFn::Contains | TextFn::Exists => DataType::Boolean,
            _ => DataType::Utf8,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = self.name();
        Ok(Arc::new(match self.function {
            TextFn::Input(t) => t.field(name, true),
            TextFn::GenRandomUuid => TextType::Uuid.field(name, false),
            // `->` gives the document's own type.
            TextFn::Get => match args.arg_fields.first().and_then(|f| TextType::of_field(f)) {
                Some(TextType::Json) => TextType::Json.field(name, true),
                _ => TextType::Jsonb.field(name, true),
            },
            TextFn::GetText => Field::new(name, DataType::Utf8, true),
            TextFn::Contains | TextFn::Exists => Field::new(name, DataType::Boolean, true),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if self.function == TextFn::GenRandomUuid {
            let ids: StringArray = (0..rows)
                .map(|_| Some(uuid::Uuid::new_v4().hyphenated().to_string()))
                .collect();
            return Ok(ColumnarValue::Array(Arc::new(ids)));
        }
        let constant = all_constant(&args.args);
        let n = if constant { 1 } else { rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let doc = text_array(&arrays[0])?;
        let result: ArrayRef = match self.function {
            TextFn::Input(t) => Arc::new(map_text(&doc, n, |_, s| Ok(Some(t.input(s)?)))?),
            TextFn::Get | TextFn::GetText => {
                let text = self.function == TextFn::GetText;
                let path = &arrays[1];
                Arc::new(map_text(&doc, n, |row, s| {
                    let Some(path) = path_at(path, row)? else {
                        return Ok(None);
                    };
                    let value = json::parse(s)?;
                    Ok(json::get(&value, &path).and_then(|v| match text {
                        true => json::as_text(v),
                        false => Some(json::jsonb_text(v)),
                    }))
                })?)
            }
            TextFn::Contains | TextFn::Exists => {
                let other = text_array(&arrays[1])?;
                Arc::new(compare(&doc, &other, n, self.function)?)
            }
            TextFn::GenRandomUuid => unreachable!("answered above"),
        };
        answer(result, constant)
    }
}

/// The rows of a text-like argument as Utf8.
fn text_array(array: &ArrayRef) -> Result<StringArray> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// `f` over each non-null row of `texts`, NULL staying NULL.
fn map_text(
    texts: &StringArray,
    rows: usize,
    mut f: impl FnMut(usize, &str) -> Result<Option<String>>,
) -> Result<StringArray> {
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        out.push(if texts.is_null(row) {
            None
        } else {
            f(row, texts.value(row))?
        });
    }
    Ok(StringArray::from(out))
}

/// The path of `->` at `row`: a key for text, a position for an integer.
fn path_at(path: &ArrayRef, row: usize) -> Result<Option<Path<'_>>> {
    let row = if path.len() == 1 { 0 } else { row };
    if path.is_null(row) {
        return Ok(None);
    }
    match path.data_type() {
        DataType::Utf8 => Ok(Some(Path::Key(path.as_string::<i32>().value(row)))),
        DataType::Utf8View => Ok(Some(Path::Key(path.as_string_view().value(row)))),
        DataType::LargeUtf8 => Ok(Some(Path::Key(path.as_string::<i64>().value(row)))),
        t if t.is_integer() => {
            let index = cast(path, &DataType::Int64)?;
            Ok(Some(Path::Index(
                index
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .value(row),
            )))
        }
        other => exec_err!("operator -> does not take {other}"),
    }
}

/// `@>` or `?` for each row.
fn compare(doc: &StringArray, other: &StringArray, rows: usize, f: TextFn) -> Result<BooleanArray> {
    fn at(a: &StringArray, row: usize) -> Option<&str> {
        let row = if a.len() == 1 { 0 } else { row };
        (!a.is_null(row)).then(|| a.value(row))
    }
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let (Some(a), Some(b)) = (at(doc, row), at(other, row)) else {
            out.push(None);
            continue;
        };
        let a = json::parse(a)?;
        out.push(Some(match f {
            TextFn::Contains => json::contains(&a, &json::parse(b)?),
            _ => json::exists(&a, b),
        }));
    }
    Ok(BooleanArray::from(out))
}

/// `batch` with every json, jsonb and uuid column of `schema` put through its input
/// function: what a write stores is what a cast would have made.
pub fn conform_batch(batch: RecordBatch, schema: &Schema) -> Result<RecordBatch> {
    if !schema.fields().iter().any(|f| {
        TextType::of_field(f).is_some()
            || max_chars(f).is_some()
            || is_vector(f)
            || crate::sparsevec::declared_dims(f).is_some()
            || crate::bits::BitLength::of_field(f).is_some()
    }) {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| conform_column(column, field))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `column` as values of `field`'s type: through its input function if it is json, jsonb
/// or uuid, checked against its length if it is `varchar(n)`, else as it is.
pub fn conform_column(column: &ArrayRef, field: &Field) -> Result<ArrayRef> {
    if is_vector(field) {
        check_vectors(column)?;
        return Ok(column.clone());
    }
    if let Some(n) = max_chars(field) {
        return truncate_spaces(column, n);
    }
    if let Some(length) = crate::bits::BitLength::of_field(field) {
        // `bit(n)`, `bit varying(n)`: a write must fit, as PostgreSQL's assignment casts ask.
        for bits in crate::bits::bit_rows(column.as_ref())?
            .into_iter()
            .flatten()
        {
            bits.fit(length, false)?;
        }
        return Ok(column.clone());
    }
    if let Some(n) = crate::sparsevec::declared_dims(field) {
        // `sparsevec(n)`: pgvector's typmod check, which the column's Arrow type cannot make.
        for v in crate::sparsevec::sparse_rows(column.as_ref())?
            .iter()
            .flatten()
        {
            crate::sparsevec::check_expected(Some(n), v.dim)?;
        }
        return Ok(column.clone());
    }
    let Some(t) = TextType::of_field(field) else {
        return Ok(column.clone());
    };
    let texts = text_array(column)?;
    Ok(Arc::new(map_text(&texts, texts.len(), |_, s| {
        Ok(Some(t.input(s)?))
    })?))
}

/// The `n` of a `varchar(n)` field.
fn max_chars(field: &Field) -> Option<usize> {
    field.metadata().get(MAX_CHARS_KEY)?.parse().ok()
}

/// PostgreSQL's check of a write to a `varchar(n)` column: at most `n` characters, where
/// trailing spaces past `n` are dropped rather than refused.
fn truncate_spaces(column: &ArrayRef, n: usize) -> Result<ArrayRef> {
    let texts = text_array(column)?;
    if texts.iter().flatten().all(|t| t.chars().count() <= n) {
        return Ok(column.clone());
    }
    let cut = map_text(&texts, texts.len(), |_, text| {
        if text.chars().skip(n).any(|c| c != ' ') {
            let message = format!("value too long for type character varying({n})");
            return Err(VectorError::new("22001", message).into());
        }
        Ok(Some(text.chars().take(n).collect()))
    })?;
    Ok(Arc::new(cut))
}

/// A `vector` column without dimensions (`List<Float32>` marked `vector`).
fn is_vector(field: &Field) -> bool {
    field
        .metadata()
        .get(PG_TYPE_KEY)
        .is_some_and(|t| t == "vector")
}

/// pgvector's checks of the vectors written to a column without dimensions (those with
/// dimensions are checked by storage): 1 to 16,000 finite elements, none NULL.
fn check_vectors(column: &ArrayRef) -> Result<()> {
    let Some(lists) = column.as_list_opt::<i32>() else {
        return Ok(());
    };
    for vector in lists.iter().flatten() {
        let error =
            |code, message: &str| -> Result<()> { Err(VectorError::new(code, message).into()) };
        if vector.is_empty() {
            return error("22000", "vector must have at least 1 dimension");
        }
        if vector.len() > vecraft_storage::schema::MAX_DIMS {
            return error("54000", "vector cannot have more than 16000 dimensions");
        }
        if vector.null_count() > 0 {
            return error("22004", "array must not contain nulls");
        }
        let values = cast(&vector, &DataType::Float32)?;
        for x in values
            .as_primitive::<datafusion::arrow::datatypes::Float32Type>()
            .values()
        {
            if x.is_nan() {
                return error("22000", "NaN not allowed in vector");
            }
            if x.is_infinite() {
                return error("22000", "infinite value not allowed in vector");
            }
        }
    }
    Ok(())
}
