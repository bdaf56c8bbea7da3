//! `COPY table [(columns)] FROM STDIN` in PostgreSQL's text, CSV and binary formats (vectors
//! in pgvector's text form, or its binary form in binary COPY).
//!
//! Rows are parsed as the data arrives and written in batches of [`BATCH_ROWS`], each one
//! durable before the next is parsed, so memory stays bounded for any size of load. Unlike
//! PostgreSQL, a COPY that fails part-way keeps the batches written before the failure; the
//! error says how many rows that was. After an error the rest of the data is read and
//! dropped, and the error is reported when the client ends the COPY, as PostgreSQL does.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use vecraft_planner::collection::CollectionSource;
use vecraft_storage::command::Command;
use vecraft_storage::schema::ColumnType;

use crate::errors::{to_pg, user_error};
use crate::session::Session;

mod lines;
mod values;

use lines::{csv_record, text_fields};
use values::Values;

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
    /// The target, written through its foreign keys.
    collection: Arc<dyn CollectionSource>,
    columns: Vec<(String, ColumnType)>,
    format: Format,
    /// Bytes received and not parsed yet (an incomplete line or tuple).
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no complete line or record, so that a long line
    /// arriving in many pieces is scanned once, not once per piece.
    scanned: usize,
    /// CSV: a record still arriving is read again from its start (its quotes decide where it
    /// ends) only once `pending` has grown to this size, twice what it was at the last try,
    /// so a record arriving in many pieces costs linear time in all.
    reparse_at: usize,
    /// The longest line (or binary tuple) accepted (`max_copy_line_bytes`).
    max_line_bytes: usize,
    /// Parsed values, column by column, not written yet.
    values: Vec<Values>,
    rows: usize,
    written: u64,
    /// Whether the header (binary signature, CSV header line) was consumed.
    started: bool,
    ended: bool,
    error: Option<PgWireError>,
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
        let name = crate::idents::table_name(table_name)?;
        let collection = self.writable(&name)?;
        let schema = collection.schema();
        let names: Vec<String> = if columns.is_empty() {
            let key = schema.hidden_key.then_some(schema.primary_key);
            (0..schema.columns.len())
                .filter(|i| Some(*i) != key)
                .map(|i| schema.columns[i].name.clone())
                .collect()
        } else {
            columns.iter().map(crate::idents::ident).collect()
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
            scanned: 0,
            reparse_at: 0,
            max_line_bytes: self.max_copy_line_bytes,
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
        if let Some(copy) = self.copy.lock().as_mut()
            && copy.error.is_none()
            && let Err(e) = copy.receive(data)
        {
            copy.error = Some(e);
        }
    }

    /// Ends the COPY: writes what is left and returns its tag, or the error met on the way.
    pub(crate) fn copy_done(&self) -> PgWireResult<Tag> {
        let Some(mut copy) = self.copy.lock().take() else {
            return Err(user_error("08P01", "no COPY in progress"));
        };
        if copy.error.is_none()
            && let Err(e) = copy.finish()
        {
            copy.error = Some(e);
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
        if self.format != Format::Binary && !data.contains(&b'\n') && !self.pending.is_empty() {
            // No line ends in this piece: nothing new to parse.
            self.scanned = self.pending.len();
            return self.check_line_length();
        }
        if matches!(self.format, Format::Csv { .. }) && self.pending.len() < self.reparse_at {
            return self.check_line_length();
        }
        self.parse_held()
    }

    /// Parses every complete line or tuple held, and keeps the rest.
    fn parse_held(&mut self) -> PgWireResult<()> {
        let csv = matches!(self.format, Format::Csv { .. });
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
        self.scanned = self.pending.len();
        self.reparse_at = if csv { 2 * self.pending.len() } else { 0 };
        self.check_line_length()
    }

    /// 54000 once the line (or tuple) still arriving is longer than the limit: a client cannot
    /// make the gateway hold one row of any size.
    fn check_line_length(&self) -> PgWireResult<()> {
        if self.pending.len() <= self.max_line_bytes {
            return Ok(());
        }
        Err(user_error(
            "54000",
            format!(
                "COPY line is longer than {} bytes (max_copy_line_bytes)",
                self.max_line_bytes
            ),
        ))
    }

    fn finish(&mut self) -> PgWireResult<()> {
        if self.format != Format::Binary {
            // Whatever is held is read now; the last line may lack its newline.
            self.parse_held()?;
            if !self.pending.is_empty() {
                self.pending.push(b'\n');
                self.parse_held()?;
            }
        }
        if !self.pending.is_empty() {
            return Err(user_error("22P04", "COPY data ends in the middle of a row"));
        }
        if self.format == Format::Binary && !self.ended {
            return Err(user_error("22P04", "COPY binary data lacks its end marker"));
        }
        self.flush()
    }

    /// The error, with how many rows were written before it: in its DETAIL, or in its
    /// CONTEXT when it has a DETAIL of its own (a foreign key's).
    fn annotate(&self, e: PgWireError) -> PgWireError {
        match e {
            PgWireError::UserError(mut info) => {
                let note = format!(
                    "{} rows of this COPY were written before the error (line {})",
                    self.written,
                    self.written as usize + self.rows + 1
                );
                match info.detail {
                    Some(_) => info.where_context = Some(note),
                    None => info.detail = Some(note),
                }
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
            fields.push(ty.arrow_field(name, true));
            arrays.push(array);
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), arrays)
            .map_err(|e| user_error("XX000", e.to_string()))?;
        // json, jsonb and uuid text as their input functions read it.
        let batch =
            vecraft_planner::text_types::conform_batch(batch, &schema).map_err(|e| to_pg(&e))?;
        // The write waits for Raft (and, in a cluster, other nodes): tell the runtime.
        vecraft_planner::collection::blocking(|| self.collection.write(&Command::Insert(batch)))
            .map_err(|e| to_pg(&e))?;
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
        // The bytes before `scanned` hold no newline: look after them only.
        let mut from = self.scanned.min(self.pending.len());
        while let Some(end) = self.pending[from..].iter().position(|&b| b == b'\n') {
            let end = from - consumed + end;
            let line = std::str::from_utf8(&self.pending[consumed..consumed + end])
                .map_err(|_| user_error("22021", "invalid UTF-8 in COPY data"))?
                .trim_end_matches('\r')
                .to_string();
            consumed += end + 1;
            from = consumed;
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
