//! The shape of a collection: its primary key, vector columns (with metric and HNSW
//! parameters) and scalar payload columns, validated before anything reaches hnsw_rs.
//!
//! Limits follow pgvector so the same DDL is accepted and refused in the same places:
//! `m` in 2..=100, `ef_construction` in 4..=1000 and at least `2 * m`, `ef_search` in
//! 1..=1000, at most 16,000 dimensions.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::distance::Metric;
use crate::error::{Error, Result};

pub const MAX_DIMS: usize = 16_000;
pub const DEFAULT_M: usize = 16;
pub const DEFAULT_EF_CONSTRUCTION: usize = 64;
pub const DEFAULT_EF_SEARCH: usize = 40;
pub const MAX_EF_SEARCH: usize = 1000;

pub use crate::names::valid_collection_name;

mod bits;
mod sparse;
mod vector;

pub use bits::{BITS_KEY, bit_arrow_type, bit_fields, is_bit};
pub use sparse::{
    DIMS_KEY, MAX_SPARSE_DIMS, MAX_SPARSE_NNZ, is_sparsevec, sparsevec_arrow_type, sparsevec_fields,
};
pub use vector::{HnswParams, VectorElement, VectorSpec, vector_array, vector_arrow_type};

/// The column types a collection can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Bool,
    Int32,
    Int64,
    Float32,
    Float64,
    Text,
    /// Microseconds since the epoch, without time zone (PostgreSQL `timestamp`).
    Timestamp,
    Vector(VectorSpec),
    /// PostgreSQL `json`: the text as given, checked to be JSON.
    Json,
    /// PostgreSQL `jsonb`: JSON kept in PostgreSQL's normal form (keys sorted and unique).
    Jsonb,
    /// PostgreSQL `uuid`: kept as its lower-case hyphenated text.
    Uuid,
    /// PostgreSQL `timestamptz`: microseconds since the epoch, an instant (shown in UTC).
    TimestampTz,
    /// PostgreSQL `date`: days since the epoch.
    Date,
    /// PostgreSQL `numeric(precision, scale)`, exact; `None` for an unconstrained `numeric`,
    /// kept as [`UNCONSTRAINED_NUMERIC`].
    Numeric(Option<NumericSpec>),
    /// PostgreSQL `varchar(n)` (`n` characters at most) or `varchar`: text.
    Varchar(Option<u32>),
    /// A one-dimensional PostgreSQL array (`text[]`, `integer[]`, …) of scalars.
    Array(ArrayElement),
    /// pgvector's `vector` without dimensions: vectors of any length, kept as payload (Arrow
    /// `List<Float32>`) and searched exactly; no index can be built on them, as in pgvector.
    VectorUnsized,
    /// pgvector's `sparsevec(n)` (`None`: any dimension), kept as payload ([`sparse`]).
    SparseVec(Option<u32>),
    /// PostgreSQL's `bit(n)` (`varying: false`, exactly `n` bits) or `bit varying(n)` (at
    /// most `n`; `None`: any), kept as payload ([`bits`]).
    Bit {
        length: Option<u32>,
        varying: bool,
    },
}

/// The declared precision and scale of a `numeric(p, s)` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumericSpec {
    pub precision: u8,
    pub scale: i8,
}

/// Exact numbers keep at most this many digits (Arrow's `Decimal128`).
pub const MAX_NUMERIC_PRECISION: u8 = 38;

/// An unconstrained `numeric`: 38 digits, 10 of them after the point. (PostgreSQL keeps any
/// number of digits; this is DataFusion's `numeric` and what clients print back trimmed.)
pub const UNCONSTRAINED_NUMERIC: NumericSpec = NumericSpec {
    precision: 38,
    scale: 10,
};

/// The element types an array column can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrayElement {
    Bool,
    Int32,
    Int64,
    Float64,
    Text,
}

impl ArrayElement {
    pub fn arrow_type(self) -> DataType {
        match self {
            ArrayElement::Bool => DataType::Boolean,
            ArrayElement::Int32 => DataType::Int32,
            ArrayElement::Int64 => DataType::Int64,
            ArrayElement::Float64 => DataType::Float64,
            ArrayElement::Text => DataType::Utf8,
        }
    }
}

impl ColumnType {
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Text
            | ColumnType::Json
            | ColumnType::Jsonb
            | ColumnType::Uuid
            | ColumnType::Varchar(_) => DataType::Utf8,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            ColumnType::Date => DataType::Date32,
            ColumnType::Numeric(spec) => {
                let spec = spec.unwrap_or(UNCONSTRAINED_NUMERIC);
                DataType::Decimal128(spec.precision, spec.scale)
            }
            ColumnType::Array(element) => DataType::new_list(element.arrow_type(), true),
            ColumnType::VectorUnsized => DataType::new_list(DataType::Float32, true),
            ColumnType::SparseVec(_) => sparsevec_arrow_type(),
            ColumnType::Bit { .. } => bit_arrow_type(),
            ColumnType::Vector(spec) => spec.arrow_type(),
        }
    }
}

/// The field metadata key that names a column's PostgreSQL type where its Arrow type alone
/// does not tell (`json`, `jsonb`, `uuid` are all text in Arrow).
pub const PG_TYPE_KEY: &str = "vecraft.pg_type";

/// The field metadata key of a `varchar(n)` column's `n`: writes longer than that are refused.
pub const MAX_CHARS_KEY: &str = "vecraft.max_chars";

/// The time zone of `timestamptz` values in Arrow.
pub const UTC: &str = "UTC";

impl ColumnType {
    /// The PostgreSQL type name kept in field metadata ([`PG_TYPE_KEY`]), if the Arrow type
    /// is ambiguous.
    pub fn pg_type_name(&self) -> Option<&'static str> {
        match self {
            ColumnType::Json => Some("json"),
            ColumnType::Jsonb => Some("jsonb"),
            ColumnType::Uuid => Some("uuid"),
            ColumnType::Varchar(_) => Some("varchar"),
            ColumnType::VectorUnsized => Some("vector"),
            _ => None,
        }
    }

    /// An Arrow field of this type, its PostgreSQL type in the metadata where needed.
    pub fn arrow_field(&self, name: &str, nullable: bool) -> Field {
        let field = Field::new(name, self.arrow_type(), nullable);
        let mut metadata = std::collections::HashMap::new();
        if let Some(pg) = self.pg_type_name() {
            metadata.insert(PG_TYPE_KEY.to_string(), pg.to_string());
        }
        if let ColumnType::Varchar(Some(n)) = self {
            metadata.insert(MAX_CHARS_KEY.to_string(), n.to_string());
        }
        if let ColumnType::SparseVec(Some(n)) = self {
            metadata.insert(DIMS_KEY.to_string(), n.to_string());
        }
        if let ColumnType::Bit { length, varying } = self {
            let length = length.map_or(String::new(), |n| n.to_string());
            let bits = if *varying {
                format!("..{length}")
            } else {
                length
            };
            metadata.insert(BITS_KEY.to_string(), bits);
        }
        field.with_metadata(metadata)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    /// The SQL text of the column's `DEFAULT` expression: what the gateway writes when an
    /// INSERT leaves the column out. (Storage never evaluates it.)
    #[serde(default)]
    pub default: Option<String>,
    /// An identity column (`GENERATED … AS IDENTITY`): its `default` draws from its sequence,
    /// and SQL shows it as an identity rather than as a default.
    #[serde(default)]
    pub identity: Option<Identity>,
}

/// How an identity column takes values an INSERT gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Identity {
    /// `GENERATED ALWAYS`: refuses them.
    Always,
    /// `GENERATED BY DEFAULT`: keeps them.
    ByDefault,
}

impl ColumnDef {
    pub fn new(name: impl Into<String>, ty: ColumnType, nullable: bool) -> Self {
        ColumnDef {
            name: name.into(),
            ty,
            nullable,
            default: None,
            identity: None,
        }
    }

    /// The `DEFAULT` SQL shows: an identity column's is its identity, not a default.
    pub fn shown_default(&self) -> Option<&str> {
        match self.identity {
            Some(_) => None,
            None => self.default.as_deref(),
        }
    }

    /// This column as an identity column.
    pub fn with_identity(mut self, identity: Option<Identity>) -> Self {
        self.identity = identity;
        self
    }

    /// This column with `DEFAULT default` (SQL text).
    pub fn with_default(mut self, default: Option<String>) -> Self {
        self.default = default;
        self
    }
}

/// A collection's schema. Column 0..n in declaration order; one of them is the primary key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionSchema {
    pub columns: Vec<ColumnDef>,
    /// Index into `columns` of the primary key (BIGINT or TEXT, never null).
    pub primary_key: usize,
    /// The primary key is a row id Vecraft assigns (a table declared without one) and SQL
    /// does not show.
    #[serde(default)]
    pub hidden_key: bool,
    /// Vector columns with no index yet (pgvector's way: a table has none until `CREATE
    /// INDEX`): their segments are sealed without a graph and searched exactly.
    #[serde(default)]
    pub unindexed: Vec<String>,
    /// The columns that hold another table's values (`REFERENCES`), checked by the gateway.
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKey>,
}

/// A foreign key: `column` holds values of `table`'s column `referenced` (PostgreSQL's
/// `REFERENCES`). A write must find its value there; a DELETE of a referenced row does what
/// `on_delete` says to the rows that hold its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// The constraint's name (`{table}_{column}_fkey` unless named).
    pub name: String,
    pub column: String,
    /// The referenced table's qualified name, as the catalog keys it.
    pub table: String,
    pub referenced: String,
    pub on_delete: OnDelete,
}

/// What a DELETE of a referenced row does to the rows that reference it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// Refused while any row references it (PostgreSQL's default, and `RESTRICT`).
    NoAction,
    Restrict,
    /// The referencing rows are deleted too.
    Cascade,
    /// The referencing rows' column is set to NULL.
    SetNull,
}

impl OnDelete {
    /// `pg_constraint.confdeltype`'s letter.
    pub fn code(self) -> u8 {
        match self {
            OnDelete::NoAction => b'a',
            OnDelete::Restrict => b'r',
            OnDelete::Cascade => b'c',
            OnDelete::SetNull => b'n',
        }
    }

    /// The clause `pg_get_constraintdef` ends with (none for the default).
    pub fn clause(self) -> &'static str {
        match self {
            OnDelete::NoAction => "",
            OnDelete::Restrict => " ON DELETE RESTRICT",
            OnDelete::Cascade => " ON DELETE CASCADE",
            OnDelete::SetNull => " ON DELETE SET NULL",
        }
    }
}

/// The name of the row-id column of a table declared without a primary key.
pub const ROW_ID_COLUMN: &str = "_vecraft_rowid";

impl CollectionSchema {
    /// Builds and validates a schema.
    pub fn new(columns: Vec<ColumnDef>, primary_key: &str) -> Result<Self> {
        let pk = columns
            .iter()
            .position(|c| c.name == primary_key)
            .ok_or_else(|| Error::UnknownColumn(primary_key.to_string()))?;
        let schema = CollectionSchema {
            columns,
            primary_key: pk,
            hidden_key: false,
            unindexed: Vec::new(),
            foreign_keys: Vec::new(),
        };
        schema.validate()?;
        Ok(schema)
    }

    pub fn validate(&self) -> Result<()> {
        if self.columns.is_empty() {
            return Err(Error::InvalidArgument(
                "a collection needs at least one column".into(),
            ));
        }
        let mut seen = HashSet::new();
        for col in &self.columns {
            if col.name.is_empty() {
                return Err(Error::InvalidArgument(
                    "column names cannot be empty".into(),
                ));
            }
            if !seen.insert(col.name.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "column \"{}\" specified more than once",
                    col.name
                )));
            }
            if let ColumnType::Numeric(Some(spec)) = &col.ty {
                let precision = spec.precision;
                if precision == 0 || precision > MAX_NUMERIC_PRECISION {
                    return Err(Error::InvalidArgument(format!(
                        "NUMERIC precision {precision} must be between 1 and {MAX_NUMERIC_PRECISION}"
                    )));
                }
                if spec.scale < 0 || spec.scale as u8 > precision {
                    return Err(Error::InvalidArgument(format!(
                        "NUMERIC scale {} must be between 0 and precision {precision}",
                        spec.scale
                    )));
                }
            }
            if let ColumnType::Vector(spec) = &col.ty {
                if spec.dims == 0 || spec.dims > MAX_DIMS {
                    return Err(Error::InvalidArgument(format!(
                        "dimensions for type vector must be between 1 and {MAX_DIMS}"
                    )));
                }
                spec.hnsw.validate()?;
            }
        }
        let pk = self
            .columns
            .get(self.primary_key)
            .ok_or_else(|| Error::InvalidArgument("primary key column out of range".into()))?;
        if !matches!(
            pk.ty,
            ColumnType::Int64
                | ColumnType::Int32
                | ColumnType::Text
                | ColumnType::Uuid
                | ColumnType::Varchar(_)
        ) {
            return Err(Error::InvalidArgument(format!(
                "primary key \"{}\" must be BIGINT, INTEGER, TEXT or UUID",
                pk.name
            )));
        }
        if pk.nullable {
            return Err(Error::InvalidArgument(
                "the primary key cannot be nullable".into(),
            ));
        }
        Ok(())
    }

    pub fn column_index(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| Error::UnknownColumn(name.to_string()))
    }

    pub fn column(&self, name: &str) -> Result<&ColumnDef> {
        Ok(&self.columns[self.column_index(name)?])
    }

    pub fn primary_key(&self) -> &ColumnDef {
        &self.columns[self.primary_key]
    }

    /// The vector spec of `name`, or an error if it is not a vector column.
    pub fn vector_spec(&self, name: &str) -> Result<VectorSpec> {
        match self.column(name)?.ty {
            ColumnType::Vector(spec) => Ok(spec),
            _ => Err(Error::InvalidArgument(format!(
                "column \"{name}\" is not a vector"
            ))),
        }
    }

    /// Indices of the vector columns, in declaration order.
    pub fn vector_columns(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| matches!(self.columns[i].ty, ColumnType::Vector(_)))
            .collect()
    }

    /// Indices of the non-vector columns (primary key included), in declaration order:
    /// the columns a segment keeps as Arrow payload.
    pub fn payload_columns(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| !matches!(self.columns[i].ty, ColumnType::Vector(_)))
            .collect()
    }

    /// The Arrow schema of a full row.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| c.ty.arrow_field(&c.name, c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// A schema whose key is a hidden row id, appended after `columns`.
    pub fn with_row_id(mut columns: Vec<ColumnDef>) -> Result<Self> {
        columns.push(ColumnDef::new(ROW_ID_COLUMN, ColumnType::Int64, false));
        let mut schema = CollectionSchema::new(columns, ROW_ID_COLUMN)?;
        schema.hidden_key = true;
        Ok(schema)
    }

    /// This schema with no vector column indexed until `with_index` names it.
    pub fn without_indexes(mut self) -> Self {
        self.unindexed = self
            .vector_columns()
            .into_iter()
            .map(|i| self.columns[i].name.clone())
            .collect();
        self
    }

    /// Whether segments build a graph for vector column `name`.
    pub fn is_indexed(&self, name: &str) -> bool {
        !self.unindexed.iter().any(|c| c == name)
    }

    /// The columns SQL sees (every column but a hidden row id), in declaration order.
    pub fn visible_columns(&self) -> impl Iterator<Item = &ColumnDef> {
        let hidden = self.hidden_key.then_some(self.primary_key);
        (self.columns.iter().enumerate())
            .filter(move |(i, _)| Some(*i) != hidden)
            .map(|(_, c)| c)
    }

    /// The Arrow schema SQL sees: every column but a hidden row id.
    pub fn visible_arrow_schema(&self) -> SchemaRef {
        let all = self.arrow_schema();
        if !self.hidden_key {
            return all;
        }
        let fields: Vec<_> = all
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.primary_key)
            .map(|(_, f)| f.clone())
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The Arrow schema of the payload columns only.
    pub fn payload_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.payload_columns()
                .into_iter()
                .map(|i| {
                    let c = &self.columns[i];
                    c.ty.arrow_field(&c.name, c.nullable)
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// Replaces the metric and HNSW parameters of a vector column (CREATE INDEX).
    pub fn with_index(&self, column: &str, metric: Metric, hnsw: HnswParams) -> Result<Self> {
        hnsw.validate()?;
        let idx = self.column_index(column)?;
        let mut next = self.clone();
        next.unindexed.retain(|c| c != column);
        match &mut next.columns[idx].ty {
            ColumnType::Vector(spec) => {
                spec.metric = metric;
                spec.hnsw = hnsw;
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "column \"{column}\" is not a vector"
                )));
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(dims: usize) -> ColumnType {
        ColumnType::Vector(VectorSpec::new(dims))
    }

    #[test]
    fn accepts_a_typical_collection() {
        let schema = CollectionSchema::new(
            vec![
                ColumnDef::new("id", ColumnType::Int64, false),
                ColumnDef::new("embedding", vector(3), true),
                ColumnDef::new("tag", ColumnType::Text, true),
            ],
            "id",
        )
        .unwrap();
        assert_eq!(schema.vector_columns(), vec![1]);
        assert_eq!(schema.payload_columns(), vec![0, 2]);
        assert_eq!(schema.payload_schema().fields().len(), 2);
        assert_eq!(schema.vector_spec("embedding").unwrap().dims, 3);
    }

    #[test]
    fn refuses_what_pgvector_refuses() {
        let bad_m = HnswParams {
            m: 300,
            ef_construction: 1000,
        };
        assert!(
            bad_m.validate().is_err(),
            "m > 100 must never reach hnsw_rs"
        );
        let small_ef = HnswParams {
            m: 16,
            ef_construction: 20,
        };
        assert!(small_ef.validate().is_err());
        let cols = |ty| {
            vec![
                ColumnDef::new("id", ColumnType::Int64, false),
                ColumnDef::new("v", ty, true),
            ]
        };
        assert!(CollectionSchema::new(cols(vector(0)), "id").is_err());
        assert!(CollectionSchema::new(cols(vector(MAX_DIMS + 1)), "id").is_err());
        assert!(
            CollectionSchema::new(cols(vector(3)), "v").is_err(),
            "vector key"
        );
        assert!(CollectionSchema::new(cols(vector(3)), "nope").is_err());
        let dup = vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new("id", ColumnType::Text, true),
        ];
        assert!(CollectionSchema::new(dup, "id").is_err());
    }
}
