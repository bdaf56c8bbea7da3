//! `CREATE TABLE` (pgvector's way) as a collection schema. A table declared without a primary
//! key gets a hidden row id, so duplicate rows are kept as PostgreSQL keeps them. A column's
//! `DEFAULT` is kept as SQL text and planned by the session ([`column_defaults`]).

use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, CharacterLength, ColumnDef as ColumnDefinition, ColumnOption, CreateTable,
    DataType as SqlType, ExactNumberInfo, GeneratedAs, TableConstraint,
};
use pgwire::error::{PgWireError, PgWireResult};
use vecraft_planner::bits::BitLength;
use vecraft_planner::types::{bit_length, sparse_dims, vector_type};
use vecraft_storage::schema::{
    ArrayElement, CollectionSchema, ColumnDef, ColumnType, Identity, MAX_NUMERIC_PRECISION,
    NumericSpec, VectorElement, VectorSpec,
};

use crate::errors::user_error;
use crate::sequences::{default_sequence, sequence_name, serial_default};
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::lit;

/// The collection schema of a `CREATE TABLE`: like pgvector, no vector index until CREATE
/// INDEX, so loads seal without building graphs.
pub fn schema_of(create: &CreateTable) -> PgWireResult<CollectionSchema> {
    Ok(declared_schema(create)?.without_indexes())
}

/// The schema the columns declare, vector columns indexed with the default metric (L2) and
/// HNSW parameters.
pub fn declared_schema(create: &CreateTable) -> PgWireResult<CollectionSchema> {
    let table = crate::idents::table_name(&create.name)?;
    let mut columns = Vec::new();
    let mut primary_key = None;
    for col in &create.columns {
        let (column, is_key) = column_def(&table, col)?;
        if is_key {
            primary_key = Some(column.name.clone());
        }
        columns.push(column);
    }
    for constraint in &create.constraints {
        if let TableConstraint::PrimaryKey(pk) = constraint {
            if pk.columns.len() != 1 {
                return Err(user_error("0A000", "a primary key must be one column"));
            }
            let name = match &pk.columns[0].column.expr {
                datafusion::sql::sqlparser::ast::Expr::Identifier(i) => crate::idents::ident(i),
                other => other.to_string().to_lowercase(),
            };
            if let Some(c) = columns.iter_mut().find(|c| c.name == name) {
                c.nullable = false;
            }
            primary_key = Some(name);
        }
    }
    let schema = match primary_key {
        Some(pk) => CollectionSchema::new(columns, &pk),
        // Rows are then told apart by a row id Vecraft assigns, as PostgreSQL's ctid.
        None => CollectionSchema::with_row_id(columns),
    };
    schema.map_err(|e| user_error("42P16", e.to_string()))
}

/// One declared column of table `table`, and whether it is declared the primary key.
fn column_def(table: &str, col: &ColumnDefinition) -> PgWireResult<(ColumnDef, bool)> {
    let name = crate::idents::ident(&col.name);
    let ty = column_type(&col.data_type)?;
    // A serial column: NOT NULL, its values drawn from its own sequence.
    let serial = is_serial(&col.data_type);
    let mut nullable = !serial;
    let mut default = serial.then(|| serial_default(&sequence_name(table, &name)));
    let mut identity = None;
    let mut is_key = false;
    for option in &col.options {
        match &option.option {
            ColumnOption::NotNull => nullable = false,
            ColumnOption::Default(expr) => default = Some(expr.to_string()),
            ColumnOption::PrimaryKey(_) => {
                is_key = true;
                nullable = false;
            }
            ColumnOption::Generated {
                generated_as,
                generation_expr: None,
                ..
            } => {
                if !matches!(ty, ColumnType::Int32 | ColumnType::Int64) {
                    let message = "identity column type must be smallint, integer, or bigint";
                    return Err(user_error("22023", message));
                }
                identity = Some(match generated_as {
                    GeneratedAs::Always => Identity::Always,
                    _ => Identity::ByDefault,
                });
                nullable = false;
                default = Some(serial_default(&sequence_name(table, &name)));
            }
            ColumnOption::Generated { .. } => {
                return Err(user_error("0A000", "generated columns are not supported"));
            }
            _ => {}
        }
    }
    let column = ColumnDef::new(name, ty, nullable)
        .with_default(default)
        .with_identity(identity);
    Ok((column, is_key))
}

fn column_type(sql_type: &SqlType) -> PgWireResult<ColumnType> {
    let vector = vector_type(sql_type).map_err(|e| user_error("22023", e.to_string()))?;
    if let Some((element, dims)) = vector {
        return match (element, dims) {
            (VectorElement::Float32, None) => Ok(ColumnType::VectorUnsized),
            (VectorElement::Float16, None) => Err(user_error(
                "0A000",
                "halfvec columns need their dimensions: halfvec(n)",
            )),
            (element, Some(dims)) => Ok(ColumnType::Vector(VectorSpec {
                element,
                ..VectorSpec::new(dims)
            })),
        };
    }
    if let Some(length) = bit_length(sql_type) {
        let (length, varying) = match length {
            BitLength::Exactly(n) => (Some(n as u32), false),
            BitLength::AtMost(n) => (Some(n as u32), true),
            BitLength::Any => (None, true),
        };
        return Ok(ColumnType::Bit { length, varying });
    }
    let sparse = sparse_dims(sql_type).map_err(|e| user_error("22023", e.to_string()))?;
    if let Some(dims) = sparse {
        return Ok(ColumnType::SparseVec(dims.map(|n| n as u32)));
    }
    if let SqlType::Array(element) = sql_type {
        return array_type(sql_type, element);
    }
    Ok(match base_type(sql_type).as_str() {
        "bigint" | "int8" | "bigserial" | "serial8" => ColumnType::Int64,
        "int" | "integer" | "int4" | "smallint" | "int2" | "serial" | "serial4" | "smallserial"
        | "serial2" => ColumnType::Int32,
        "real" | "float4" => ColumnType::Float32,
        "double precision" | "float8" | "float" | "double" => ColumnType::Float64,
        "text" | "char" | "character" | "string" => ColumnType::Text,
        "varchar" | "character varying" => ColumnType::Varchar(varchar_length(sql_type)?),
        "boolean" | "bool" => ColumnType::Bool,
        "timestamp" | "timestamp without time zone" => ColumnType::Timestamp,
        "timestamptz" | "timestamp with time zone" => ColumnType::TimestampTz,
        "date" => ColumnType::Date,
        "numeric" | "decimal" => ColumnType::Numeric(numeric_spec(sql_type)?),
        "json" => ColumnType::Json,
        "jsonb" => ColumnType::Jsonb,
        "uuid" => ColumnType::Uuid,
        _ => return Err(unsupported_type(sql_type)),
    })
}

/// `text[]`, `integer[]`, …: one-dimensional arrays of the scalar types arrays can hold.
fn array_type(sql_type: &SqlType, element: &ArrayElemTypeDef) -> PgWireResult<ColumnType> {
    let element = match element {
        ArrayElemTypeDef::SquareBracket(t, _) | ArrayElemTypeDef::AngleBracket(t) => t,
        _ => return Err(unsupported_type(sql_type)),
    };
    Ok(ColumnType::Array(match column_type(element)? {
        ColumnType::Bool => ArrayElement::Bool,
        ColumnType::Int32 => ArrayElement::Int32,
        ColumnType::Int64 => ArrayElement::Int64,
        ColumnType::Float64 => ArrayElement::Float64,
        ColumnType::Text | ColumnType::Varchar(None) => ArrayElement::Text,
        _ => return Err(unsupported_type(sql_type)),
    }))
}

fn unsupported_type(sql_type: &SqlType) -> PgWireError {
    let name = sql_type.to_string().to_lowercase();
    user_error("0A000", format!("type {name} is not supported"))
}

/// `n` of `varchar(n)`, which PostgreSQL bounds by 10,485,760.
fn varchar_length(sql_type: &SqlType) -> PgWireResult<Option<u32>> {
    let length = match sql_type {
        SqlType::Varchar(Some(CharacterLength::IntegerLength { length, .. }))
        | SqlType::CharacterVarying(Some(CharacterLength::IntegerLength { length, .. })) => *length,
        _ => return Ok(None),
    };
    if !(1..=10_485_760).contains(&length) {
        let message = if length == 0 {
            "length for type varchar must be at least 1".to_string()
        } else {
            "length for type varchar cannot exceed 10485760".to_string()
        };
        return Err(user_error("22023", message));
    }
    Ok(Some(length as u32))
}

/// `numeric(p, s)`'s precision and scale, or `None` for `numeric`.
fn numeric_spec(sql_type: &SqlType) -> PgWireResult<Option<NumericSpec>> {
    let info = match sql_type {
        SqlType::Numeric(info) | SqlType::Decimal(info) | SqlType::Dec(info) => info,
        _ => return Ok(None),
    };
    let (precision, scale) = match info {
        ExactNumberInfo::None => return Ok(None),
        ExactNumberInfo::Precision(p) => (*p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
    };
    if !(1..=u64::from(MAX_NUMERIC_PRECISION)).contains(&precision) {
        return Err(user_error(
            "22023",
            format!("NUMERIC precision {precision} must be between 1 and {MAX_NUMERIC_PRECISION}"),
        ));
    }
    if scale < 0 || scale as u64 > precision {
        return Err(user_error(
            "22023",
            format!("NUMERIC scale {scale} must be between 0 and precision {precision}"),
        ));
    }
    Ok(Some(NumericSpec {
        precision: precision as u8,
        scale: scale as i8,
    }))
}

/// A type's name without its modifiers, lower case.
fn base_type(sql_type: &SqlType) -> String {
    let name = sql_type.to_string().to_lowercase();
    name.split('(').next().unwrap_or("").trim().to_string()
}

/// Whether a column of this type draws its values from a sequence of its own.
fn is_serial(sql_type: &SqlType) -> bool {
    matches!(
        base_type(sql_type).as_str(),
        "serial" | "serial4" | "bigserial" | "serial8" | "smallserial" | "serial2"
    )
}

/// The `DEFAULT` expressions of `schema`'s columns, planned in `ctx`: what an INSERT that
/// leaves a column out writes there. A default that does not plan is an error (at CREATE
/// TABLE, before anything is made).
pub fn column_defaults(
    ctx: &datafusion::prelude::SessionContext,
    table: &str,
    schema: &CollectionSchema,
) -> datafusion::error::Result<std::collections::HashMap<String, datafusion::prelude::Expr>> {
    let empty = datafusion::common::DFSchema::empty();
    let planned = |column: &str, default: &str| match default_sequence(default) {
        // A serial or identity column draws from its own sequence, whatever its name.
        Some(_) => Ok(ctx.udf("nextval")?.call(vec![lit(table), lit(column)])),
        None => ctx.parse_sql_expr(default, &empty),
    };
    schema
        .columns
        .iter()
        .filter_map(|c| c.default.as_ref().map(|d| (c, d)))
        .map(|(c, default)| Ok((c.name.clone(), planned(&c.name, default)?)))
        .collect()
}
