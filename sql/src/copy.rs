//! `COPY table [(columns)] FROM STDIN` in PostgreSQL's text, CSV and binary formats (vectors
//! in pgvector's text form, or its binary form in binary COPY).
//!
//! Rows are parsed as the data arrives and written in batches of [`BATCH_ROWS`], each one
//! durable before the next is parsed, so memory stays bounded for any size of load. Unlike
//! PostgreSQL, a COPY that fails part-way keeps the batches written before the failure; the
//! error says how many rows that was. After an error the rest of the data is read and
//! dropped, and the error is reported when the client ends the COPY, as PostgreSQL does.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use vecraft_cluster::local::LocalCollection;
use vecraft_storage::command::Command;
use vecraft_storage::schema::{ColumnType, vector_array};

use crate::errors::{to_pg, user_error};
use crate::params::vector_binary;
use crate::session::Session;

/// Rows parsed before they are written as one batch.
pub const BATCH_ROWS: usize = 8192;

const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

#[derive(Debug, Clone, PartialEq)]
enum Format {
    Text {
        delimiter: u8,
        null: String,
    },
    Csv {
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: String,
        header: bool,
    },
    Binary,
}

pub struct CopyIn {
    collection: Arc<LocalCollection>,
    columns: Vec<(String, ColumnType)>,
    format: Format,
    /// Bytes received and not parsed yet (an incomplete line or tuple).
    pending: Vec<u8>,
    /// Parsed values, column by column, not written yet.
    values: Vec<Values>,
    rows: usize,
    written: u64,
    /// Whether the header (binary signature, CSV header line) was consumed.
    started: bool,
    ended: bool,
    error: Option<PgWireError>,
}

enum Values {
    Int32(Vec<Option<i32>>),
    Int64(Vec<Option<i64>>),
    Float32(Vec<Option<f32>>),
    Float64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    Timestamp(Vec<Option<i64>>),
    Vector {
        dims: usize,
        values: Vec<f32>,
        valid: Vec<bool>,
    },
}

impl Session {
    /// Starts `COPY … FROM STDIN`: the client sends CopyData next.
    pub(crate) fn start_copy(&self, statement: &Statement) -> PgWireResult<Response> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = statement
        else {
            return Err(user_error("XX000", "not a COPY"));
        };
        if *to || *target != CopyTarget::Stdin {
            return Err(user_error("0A000", "only COPY … FROM STDIN is supported"));
        }
        let CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Err(user_error("0A000", "COPY (query) FROM is not valid"));
        };
        let name = table_name.to_string().to_lowercase();
        let Some(collection) = self.catalog.get(&name) else {
            return Err(user_error(
                "42P01",
                format!("relation \"{name}\" does not exist"),
            ));
        };
        let schema = collection.shard().schema();
        let names: Vec<String> = if columns.is_empty() {
            let key = schema.hidden_key.then_some(schema.primary_key);
            (0..schema.columns.len())
                .filter(|i| Some(*i) != key)
                .map(|i| schema.columns[i].name.clone())
                .collect()
        } else {
            columns.iter().map(|c| c.value.to_lowercase()).collect()
        };
        let mut targets = Vec::with_capacity(names.len());
        for n in names {
            let Ok(def) = schema.column(&n) else {
                return Err(user_error(
                    "42703",
                    format!("column \"{n}\" of relation \"{name}\" does not exist"),
                ));
            };
            targets.push((n, def.ty));
        }
        let format = copy_format(options, legacy_options)?;
        let binary = format == Format::Binary;
        let values = targets.iter().map(|(_, t)| Values::new(*t)).collect();
        let width = targets.len();
        *self.copy.lock() = Some(CopyIn {
            collection,
            columns: targets,
            format,
            pending: Vec::new(),
            values,
            rows: 0,
            written: 0,
            started: false,
            ended: false,
            error: None,
        });
        let column_format = i8::from(binary);
        Ok(Response::CopyIn(CopyResponse::new(
            column_format,
            width,
            futures::stream::empty(),
        )))
    }

    pub(crate) fn copy_data(&self, data: &[u8]) {
        if let Some(copy) = self.copy.lock().as_mut() {
            if copy.error.is_none() {
                if let Err(e) = copy.receive(data) {
                    copy.error = Some(e);
                }
            }
        }
    }

    /// Ends the COPY: writes what is left and returns its tag, or the error met on the way.
    pub(crate) fn copy_done(&self) -> PgWireResult<Tag> {
        let Some(mut copy) = self.copy.lock().take() else {
            return Err(user_error("08P01", "no COPY in progress"));
        };
        if copy.error.is_none() {
            if let Err(e) = copy.finish() {
                copy.error = Some(e);
            }
        }
        match copy.error.take() {
            Some(e) => Err(copy.annotate(e)),
            None => Ok(Tag::new("COPY").with_rows(copy.written as usize)),
        }
    }

    pub(crate) fn copy_abort(&self) {
        self.copy.lock().take();
    }
}

fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> PgWireResult<Format> {
    let mut kind = "text".to_string();
    let (mut delimiter, mut null, mut header, mut quote, mut escape) =
        (None, None, false, b'"', None);
    let byte = |c: char| -> PgWireResult<u8> {
        u8::try_from(c)
            .map_err(|_| user_error("0A000", "COPY delimiters must be one ASCII character"))
    };
    for option in options {
        match option {
            CopyOption::Format(f) => kind = f.value.to_lowercase(),
            CopyOption::Delimiter(c) => delimiter = Some(byte(*c)?),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Quote(c) => quote = byte(*c)?,
            CopyOption::Escape(c) => escape = Some(byte(*c)?),
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => {
                return Err(user_error(
                    "0A000",
                    format!("COPY option {other} is not supported"),
                ));
            }
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => kind = "binary".into(),
            CopyLegacyOption::Delimiter(c) => delimiter = Some(byte(*c)?),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Csv(csv) => {
                kind = "csv".into();
                for o in csv {
                    match o {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = byte(*c)?,
                        CopyLegacyCsvOption::Escape(c) => escape = Some(byte(*c)?),
                        other => {
                            return Err(user_error(
                                "0A000",
                                format!("COPY option {other} is not supported"),
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(user_error(
                    "0A000",
                    format!("COPY option {other} is not supported"),
                ));
            }
        }
    }
    Ok(match kind.as_str() {
        "text" => Format::Text {
            delimiter: delimiter.unwrap_or(b'\t'),
            null: null.unwrap_or_else(|| "\\N".into()),
        },
        "csv" => Format::Csv {
            delimiter: delimiter.unwrap_or(b','),
            quote,
            escape: escape.unwrap_or(quote),
            null: null.unwrap_or_default(),
            header,
        },
        "binary" => Format::Binary,
        other => {
            return Err(user_error(
                "22023",
                format!("COPY format \"{other}\" not recognized"),
            ));
        }
    })
}

impl CopyIn {
    fn receive(&mut self, data: &[u8]) -> PgWireResult<()> {
        self.pending.extend_from_slice(data);
        let consumed = match self.format.clone() {
            Format::Binary => self.parse_binary()?,
            Format::Text { delimiter, null } => {
                self.parse_lines(|line, row| text_fields(line, delimiter, &null, row))?
            }
            Format::Csv {
                delimiter,
                quote,
                escape,
                null,
                header,
            } => self.parse_csv(delimiter, quote, escape, &null, header)?,
        };
        self.pending.drain(..consumed);
        Ok(())
    }

    fn finish(&mut self) -> PgWireResult<()> {
        if !self.pending.is_empty() && self.format != Format::Binary {
            // The last line may lack its newline.
            self.pending.push(b'\n');
            self.receive(&[])?;
        }
        if !self.pending.is_empty() {
            return Err(user_error("22P04", "COPY data ends in the middle of a row"));
        }
        if self.format == Format::Binary && !self.ended {
            return Err(user_error("22P04", "COPY binary data lacks its end marker"));
        }
        self.flush()
    }

    /// The error, with how many rows were written before it.
    fn annotate(&self, e: PgWireError) -> PgWireError {
        match e {
            PgWireError::UserError(mut info) => {
                info.detail = Some(format!(
                    "{} rows of this COPY were written before the error (line {})",
                    self.written,
                    self.written as usize + self.rows + 1
                ));
                PgWireError::UserError(info)
            }
            other => other,
        }
    }

    fn end_row(&mut self) -> PgWireResult<()> {
        self.rows += 1;
        if self.rows >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> PgWireResult<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays = Vec::with_capacity(self.columns.len());
        for ((name, ty), values) in self.columns.iter().zip(self.values.iter_mut()) {
            let array = values.take()?;
            fields.push(Field::new(name, ty.arrow_type(), true));
            arrays.push(array);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| user_error("XX000", e.to_string()))?;
        let storage = |e| to_pg(&vecraft_planner::collection::storage_error(e));
        self.collection
            .write(&Command::Insert(batch))
            .map_err(storage)?;
        self.written += self.rows as u64;
        self.rows = 0;
        Ok(())
    }

    /// Parses complete lines of text COPY; returns the bytes consumed.
    fn parse_lines(
        &mut self,
        split: impl Fn(&str, &mut Vec<Option<String>>) -> PgWireResult<()>,
    ) -> PgWireResult<usize> {
        let mut consumed = 0;
        let mut row = Vec::with_capacity(self.columns.len());
        while let Some(end) = self.pending[consumed..].iter().position(|&b| b == b'\n') {
            let line = std::str::from_utf8(&self.pending[consumed..consumed + end])
                .map_err(|_| user_error("22021", "invalid UTF-8 in COPY data"))?
                .trim_end_matches('\r')
                .to_string();
            consumed += end + 1;
            if line == "\\." {
                self.ended = true;
                continue;
            }
            row.clear();
            split(&line, &mut row)?;
            self.push_text_row(&row)?;
        }
        Ok(consumed)
    }

    fn parse_csv(
        &mut self,
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: &str,
        header: bool,
    ) -> PgWireResult<usize> {
        let mut consumed = 0;
        let mut row = Vec::with_capacity(self.columns.len());
        loop {
            row.clear();
            let Some(used) = csv_record(
                &self.pending[consumed..],
                delimiter,
                quote,
                escape,
                null,
                &mut row,
            )?
            else {
                break;
            };
            consumed += used;
            if !self.started {
                self.started = true;
                if header {
                    continue;
                }
            }
            if row.len() == 1 && row[0].as_deref() == Some("\\.") {
                self.ended = true;
                continue;
            }
            self.push_text_row(&row)?;
        }
        Ok(consumed)
    }

    fn push_text_row(&mut self, row: &[Option<String>]) -> PgWireResult<()> {
        if row.len() != self.columns.len() {
            let problem = if row.len() < self.columns.len() {
                "missing data for column"
            } else {
                "extra data after last expected column"
            };
            return Err(user_error("22P04", problem));
        }
        for (values, value) in self.values.iter_mut().zip(row) {
            values.push_text(value.as_deref())?;
        }
        self.end_row()
    }

    /// Parses complete tuples of binary COPY; returns the bytes consumed.
    fn parse_binary(&mut self) -> PgWireResult<usize> {
        let data = std::mem::take(&mut self.pending);
        let result = self.parse_binary_in(&data);
        self.pending = data;
        result
    }

    fn parse_binary_in(&mut self, data: &[u8]) -> PgWireResult<usize> {
        let bad = || user_error("22P04", "invalid COPY binary data");
        let mut at = 0;
        if !self.started {
            if data.len() < BINARY_SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &data[..BINARY_SIGNATURE.len()] != BINARY_SIGNATURE {
                return Err(user_error("22P04", "COPY file signature not recognized"));
            }
            at = BINARY_SIGNATURE.len() + 4;
            let extension =
                u32::from_be_bytes(data[at..at + 4].try_into().map_err(|_| bad())?) as usize;
            at += 4;
            if data.len() < at + extension {
                return Ok(0);
            }
            at += extension;
            self.started = true;
        }
        loop {
            if self.ended {
                if at < data.len() {
                    return Err(user_error("22P04", "data after the COPY binary end marker"));
                }
                return Ok(at);
            }
            let Some(count) = data.get(at..at + 2) else {
                return Ok(at);
            };
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count == -1 {
                self.ended = true;
                at += 2;
                continue;
            }
            if count as usize != self.columns.len() {
                return Err(user_error(
                    "22P04",
                    format!(
                        "row field count is {count}, expected {}",
                        self.columns.len()
                    ),
                ));
            }
            // Find the whole tuple before taking any of it.
            let mut end = at + 2;
            let mut fields = Vec::with_capacity(self.columns.len());
            for _ in 0..count {
                let Some(len) = data.get(end..end + 4) else {
                    return Ok(at);
                };
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                end += 4;
                if len < 0 {
                    fields.push(None);
                    continue;
                }
                let Some(bytes) = data.get(end..end + len as usize) else {
                    return Ok(at);
                };
                fields.push(Some(bytes));
                end += len as usize;
            }
            for (values, field) in self.values.iter_mut().zip(&fields) {
                values.push_binary(*field)?;
            }
            at = end;
            self.end_row()?;
        }
    }
}

/// Splits one line of text COPY, undoing its backslash escapes.
fn text_fields(
    line: &str,
    delimiter: u8,
    null: &str,
    row: &mut Vec<Option<String>>,
) -> PgWireResult<()> {
    for raw in line.split(delimiter as char) {
        if raw == null {
            row.push(None);
            continue;
        }
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('v') => out.push('\u{b}'),
                Some(other) => out.push(other),
                None => return Err(user_error("22P04", "COPY line ends in a backslash")),
            }
        }
        row.push(Some(out));
    }
    Ok(())
}

/// One CSV record from the start of `data`, if complete: its fields, and the bytes it used.
fn csv_record(
    data: &[u8],
    delimiter: u8,
    quote: u8,
    escape: u8,
    null: &str,
    row: &mut Vec<Option<String>>,
) -> PgWireResult<Option<usize>> {
    let mut field = Vec::new();
    let (mut quoted, mut in_quotes, mut i) = (false, false, 0);
    let finish =
        |field: &mut Vec<u8>, quoted: bool, row: &mut Vec<Option<String>>| -> PgWireResult<()> {
            let text = String::from_utf8(std::mem::take(field))
                .map_err(|_| user_error("22021", "invalid UTF-8 in COPY data"))?;
            row.push(if !quoted && text == null {
                None
            } else {
                Some(text)
            });
            Ok(())
        };
    while i < data.len() {
        let b = data[i];
        if in_quotes {
            i += 1;
            if b == escape && escape != quote {
                // An escape takes the next quote or escape literally.
                match data.get(i) {
                    None => return Ok(None),
                    Some(&n) if n == quote || n == escape => {
                        field.push(n);
                        i += 1;
                    }
                    Some(_) => field.push(b),
                }
            } else if b == quote {
                match data.get(i) {
                    None => return Ok(None), // a closing quote, or the first of a doubled one
                    Some(&n) if n == quote && escape == quote => {
                        field.push(quote);
                        i += 1;
                    }
                    Some(_) => in_quotes = false,
                }
            } else {
                field.push(b);
            }
            continue;
        }
        if b == quote {
            in_quotes = true;
            quoted = true;
        } else if b == delimiter {
            finish(&mut field, quoted, row)?;
            quoted = false;
        } else if b == b'\n' {
            if field.last() == Some(&b'\r') && !quoted {
                field.pop();
            }
            finish(&mut field, quoted, row)?;
            return Ok(Some(i + 1));
        } else {
            field.push(b);
        }
        i += 1;
    }
    Ok(None)
}

impl Values {
    fn new(ty: ColumnType) -> Values {
        match ty {
            ColumnType::Int32 => Values::Int32(Vec::new()),
            ColumnType::Int64 => Values::Int64(Vec::new()),
            ColumnType::Float32 => Values::Float32(Vec::new()),
            ColumnType::Float64 => Values::Float64(Vec::new()),
            ColumnType::Bool => Values::Bool(Vec::new()),
            ColumnType::Text => Values::Text(Vec::new()),
            ColumnType::Timestamp => Values::Timestamp(Vec::new()),
            ColumnType::Vector(spec) => Values::Vector {
                dims: spec.dims,
                values: Vec::new(),
                valid: Vec::new(),
            },
        }
    }

    fn push_text(&mut self, text: Option<&str>) -> PgWireResult<()> {
        let Some(text) = text else {
            self.push_null();
            return Ok(());
        };
        let bad = |ty: &str| {
            user_error(
                "22P02",
                format!("invalid input syntax for type {ty}: \"{text}\""),
            )
        };
        let t = text.trim();
        match self {
            Values::Int32(v) => v.push(Some(t.parse().map_err(|_| bad("integer"))?)),
            Values::Int64(v) => v.push(Some(t.parse().map_err(|_| bad("bigint"))?)),
            Values::Float32(v) => v.push(Some(t.parse().map_err(|_| bad("real"))?)),
            Values::Float64(v) => v.push(Some(t.parse().map_err(|_| bad("double precision"))?)),
            Values::Bool(v) => v.push(Some(match t.to_ascii_lowercase().as_str() {
                "t" | "true" | "yes" | "on" | "1" => true,
                "f" | "false" | "no" | "off" | "0" => false,
                _ => return Err(bad("boolean")),
            })),
            Values::Text(v) => v.push(Some(text.to_string())),
            Values::Timestamp(_) => {
                return Err(user_error(
                    "0A000",
                    "COPY of timestamp columns is not supported yet",
                ));
            }
            Values::Vector {
                dims,
                values,
                valid,
            } => {
                let v = vecraft_planner::vector_text::parse_vector(text)
                    .map_err(|e| user_error(e.sqlstate, e.message.clone()))?;
                push_vector(*dims, values, valid, &v)?;
            }
        }
        Ok(())
    }

    fn push_binary(&mut self, bytes: Option<&[u8]>) -> PgWireResult<()> {
        let Some(b) = bytes else {
            self.push_null();
            return Ok(());
        };
        let bad = || user_error("22P03", "incorrect binary data format");
        let int = || -> PgWireResult<i64> {
            Ok(match b.len() {
                2 => i16::from_be_bytes([b[0], b[1]]) as i64,
                4 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64,
                8 => i64::from_be_bytes(b.try_into().map_err(|_| bad())?),
                _ => return Err(bad()),
            })
        };
        let float = || -> PgWireResult<f64> {
            Ok(match b.len() {
                4 => f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64,
                8 => f64::from_be_bytes(b.try_into().map_err(|_| bad())?),
                _ => return Err(bad()),
            })
        };
        match self {
            Values::Int32(v) => v.push(Some(
                i32::try_from(int()?).map_err(|_| user_error("22003", "integer out of range"))?,
            )),
            Values::Int64(v) => v.push(Some(int()?)),
            Values::Float32(v) => v.push(Some(float()? as f32)),
            Values::Float64(v) => v.push(Some(float()?)),
            Values::Bool(v) => v.push(Some(*b.first().ok_or_else(bad)? != 0)),
            Values::Text(v) => v
                .push(Some(String::from_utf8(b.to_vec()).map_err(|_| {
                    user_error("22021", "invalid UTF-8 in COPY data")
                })?)),
            Values::Timestamp(v) => v.push(Some(int()? + crate::encode::POSTGRES_EPOCH_MICROS)),
            Values::Vector {
                dims,
                values,
                valid,
            } => {
                let v = vector_binary(b).ok_or_else(bad)?;
                push_vector(*dims, values, valid, &v)?;
            }
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match self {
            Values::Int32(v) => v.push(None),
            Values::Int64(v) => v.push(None),
            Values::Float32(v) => v.push(None),
            Values::Float64(v) => v.push(None),
            Values::Bool(v) => v.push(None),
            Values::Text(v) => v.push(None),
            Values::Timestamp(v) => v.push(None),
            Values::Vector {
                dims,
                values,
                valid,
            } => {
                values.extend(std::iter::repeat_n(0.0, *dims));
                valid.push(false);
            }
        }
    }

    /// The values gathered so far as one array; empties the buffer.
    fn take(&mut self) -> PgWireResult<ArrayRef> {
        Ok(match self {
            Values::Int32(v) => Arc::new(Int32Array::from(std::mem::take(v))),
            Values::Int64(v) => Arc::new(Int64Array::from(std::mem::take(v))),
            Values::Float32(v) => Arc::new(Float32Array::from(std::mem::take(v))),
            Values::Float64(v) => Arc::new(Float64Array::from(std::mem::take(v))),
            Values::Bool(v) => Arc::new(BooleanArray::from(std::mem::take(v))),
            Values::Text(v) => Arc::new(StringArray::from(std::mem::take(v))),
            Values::Timestamp(v) => Arc::new(TimestampMicrosecondArray::from(std::mem::take(v))),
            Values::Vector {
                dims,
                values,
                valid,
            } => {
                let nulls = valid
                    .iter()
                    .any(|v| !v)
                    .then(|| datafusion::arrow::buffer::NullBuffer::from(std::mem::take(valid)));
                valid.clear();
                Arc::new(vector_array(*dims, std::mem::take(values), nulls))
            }
        })
    }
}

fn push_vector(
    dims: usize,
    values: &mut Vec<f32>,
    valid: &mut Vec<bool>,
    v: &[f32],
) -> PgWireResult<()> {
    crate::params::check_vector(v, dims)?;
    values.extend_from_slice(v);
    valid.push(true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(data: &str) -> Option<(Vec<Option<String>>, usize)> {
        let mut row = Vec::new();
        csv_record(data.as_bytes(), b',', b'"', b'"', "", &mut row)
            .unwrap()
            .map(|n| (row, n))
    }

    #[test]
    fn csv_records_follow_postgres_quoting() {
        let (row, used) = csv("1,\"[1,2,3]\",,\"\"\nnext").unwrap();
        assert_eq!(
            row,
            vec![
                Some("1".into()),
                Some("[1,2,3]".into()),
                None,
                Some("".into())
            ]
        );
        assert_eq!(used, 16);
        let (row, _) = csv("\"a \"\"quoted\"\" word\",x\n").unwrap();
        assert_eq!(row[0].as_deref(), Some("a \"quoted\" word"));
        assert!(
            csv("1,\"[1,2").is_none(),
            "an open quote waits for more data"
        );
        assert!(csv("1,2").is_none(), "a record ends at its newline");
    }

    #[test]
    fn text_fields_undo_escapes_and_read_nulls() {
        let mut row = Vec::new();
        text_fields("1\t[1,2]\t\\N\ta\\tb", b'\t', "\\N", &mut row).unwrap();
        assert_eq!(
            row,
            vec![
                Some("1".into()),
                Some("[1,2]".into()),
                None,
                Some("a\tb".into())
            ]
        );
    }
}
