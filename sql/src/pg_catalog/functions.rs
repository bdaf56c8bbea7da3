//! The functions drivers and psql call: `version()`, `to_regtype`, `format_type`,
//! `current_schema()`, `pg_backend_pid()`, `pg_sleep`, …

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, StringArray, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, ScalarValue, internal_err, plan_err};
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use vecraft_planner::error::VectorError;

use super::types::{format_type, type_oid, version_string};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum CatalogFn {
    Version,
    ToRegtype,
    FormatType,
    CurrentSchema,
    CurrentDatabase,
    BackendPid,
    TableIsVisible,
    /// Every type is in `pg_catalog` or `public`, both on the search path.
    TypeIsVisible,
    UserById,
    EncodingToChar,
    ObjDescription,
    ColDescription,
    /// `pg_partition_ancestors(rel)`: a relation that is no partition is its only ancestor.
    PartitionAncestors,
    /// `pg_advisory_xact_lock(key)`: a lock held until the transaction ends. Each statement is
    /// its own transaction here (see `session.rs`), so it is granted at once and released when
    /// the statement ends; it does not wait for a session-level lock (`advisory_locks.rs`)
    /// another session holds. Answers void (`''`).
    AdvisoryXactLock,
    /// `pg_try_advisory_xact_lock(key)`: granted (true), as above.
    TryAdvisoryXactLock,
    /// `pg_get_expr(tree, relation[, pretty])`: the text of a stored expression. Expressions
    /// are kept as their text here, so that is what it gives.
    GetExpr,
    /// `current_schemas(include_implicit)`: the search path, `pg_catalog` first if asked.
    CurrentSchemas,
    /// `array_upper(array, dimension)`: the last subscript of a one-dimensional array.
    ArrayUpper,
    /// `x::regclass` of a value known only when the statement runs: a relation's name (as
    /// `'name'::regclass` reads it) or an OID, as an OID.
    RegclassIn,
    /// There is one collation, on the search path.
    CollationIsVisible,
    /// `pg_typeof(x)`: the name of the argument's type, as `format_type` prints it.
    TypeOf,
    /// `current_setting(name[, missing_ok])`: what `SHOW name` answers.
    CurrentSetting,
    /// `set_config(name, value, is_local)`: only for the settings Vecraft accepts and ignores
    /// (asyncpg turns `jit` off this way); others are changed with `SET`.
    SetConfig,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct CatalogUdf {
    function: CatalogFn,
    signature: Signature,
}

impl CatalogUdf {
    pub(super) fn new(function: CatalogFn) -> Self {
        let signature = match function {
            CatalogFn::Version
            | CatalogFn::CurrentSchema
            | CatalogFn::CurrentDatabase
            | CatalogFn::BackendPid => Signature::nullary(Volatility::Stable),
            CatalogFn::ToRegtype => Signature::exact(vec![DataType::Utf8], Volatility::Stable),
            CatalogFn::FormatType => Signature::any(2, Volatility::Stable),
            CatalogFn::ObjDescription | CatalogFn::ColDescription => {
                Signature::variadic_any(Volatility::Stable)
            }
            CatalogFn::TableIsVisible
            | CatalogFn::TypeIsVisible
            | CatalogFn::UserById
            | CatalogFn::EncodingToChar
            | CatalogFn::PartitionAncestors => Signature::any(1, Volatility::Stable),
            CatalogFn::CurrentSchemas
            | CatalogFn::RegclassIn
            | CatalogFn::CollationIsVisible
            | CatalogFn::TypeOf => Signature::any(1, Volatility::Stable),
            CatalogFn::ArrayUpper => Signature::any(2, Volatility::Immutable),
            CatalogFn::CurrentSetting => Signature::variadic_any(Volatility::Stable),
            CatalogFn::SetConfig => Signature::any(3, Volatility::Volatile),
            CatalogFn::AdvisoryXactLock | CatalogFn::TryAdvisoryXactLock | CatalogFn::GetExpr => {
                Signature::variadic_any(Volatility::Volatile)
            }
        };
        CatalogUdf {
            function,
            signature,
        }
    }
}

impl ScalarUDFImpl for CatalogUdf {
    fn name(&self) -> &str {
        match self.function {
            CatalogFn::Version => "version",
            CatalogFn::ToRegtype => "to_regtype",
            CatalogFn::FormatType => "format_type",
            CatalogFn::CurrentSchema => "current_schema",
            CatalogFn::CurrentDatabase => "current_database",
            CatalogFn::BackendPid => "pg_backend_pid",
            CatalogFn::TableIsVisible => "pg_table_is_visible",
            CatalogFn::TypeIsVisible => "pg_type_is_visible",
            CatalogFn::UserById => "pg_get_userbyid",
            CatalogFn::EncodingToChar => "pg_encoding_to_char",
            CatalogFn::ObjDescription => "obj_description",
            CatalogFn::ColDescription => "col_description",
            CatalogFn::PartitionAncestors => "pg_partition_ancestors",
            CatalogFn::AdvisoryXactLock => "pg_advisory_xact_lock",
            CatalogFn::TryAdvisoryXactLock => "pg_try_advisory_xact_lock",
            CatalogFn::GetExpr => "pg_get_expr",
            CatalogFn::CurrentSchemas => "current_schemas",
            CatalogFn::ArrayUpper => "array_upper",
            CatalogFn::RegclassIn => "regclass_in",
            CatalogFn::CollationIsVisible => "pg_collation_is_visible",
            CatalogFn::TypeOf => "pg_typeof",
            CatalogFn::CurrentSetting => "current_setting",
            CatalogFn::SetConfig => "set_config",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.function {
            CatalogFn::ToRegtype | CatalogFn::PartitionAncestors | CatalogFn::RegclassIn => {
                DataType::UInt32
            }
            CatalogFn::BackendPid | CatalogFn::ArrayUpper => DataType::Int32,
            CatalogFn::CurrentSchemas => DataType::new_list(DataType::Utf8, true),
            CatalogFn::TableIsVisible
            | CatalogFn::TypeIsVisible
            | CatalogFn::CollationIsVisible
            | CatalogFn::TryAdvisoryXactLock => DataType::Boolean,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = |v: ScalarValue| Ok(ColumnarValue::Scalar(v));
        match self.function {
            CatalogFn::Version => scalar(ScalarValue::Utf8(Some(version_string()))),
            CatalogFn::CurrentSchema => {
                let first = search_path(&args.config_options).into_iter().next();
                scalar(ScalarValue::Utf8(first.or(Some("public".into()))))
            }
            CatalogFn::CurrentDatabase => scalar(ScalarValue::Utf8(Some("postgres".into()))),
            CatalogFn::BackendPid => scalar(ScalarValue::Int32(Some(std::process::id() as i32))),
            CatalogFn::TableIsVisible
            | CatalogFn::TypeIsVisible
            | CatalogFn::CollationIsVisible => scalar(ScalarValue::Boolean(Some(true))),
            CatalogFn::RegclassIn => {
                let values = args.args[0].to_array(rows)?;
                if values.data_type().is_integer() {
                    let oids = datafusion::arrow::compute::cast(&values, &DataType::UInt32)?;
                    return Ok(ColumnarValue::Array(oids));
                }
                let names = datafusion::arrow::compute::cast(&values, &DataType::Utf8)?;
                let oids: UInt32Array = names
                    .as_string::<i32>()
                    .iter()
                    .map(|n| n.map(super::rewrite::relation_oid))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(oids)))
            }
            CatalogFn::UserById => {
                let oids = args.args[0].to_array(rows)?;
                let oids = datafusion::arrow::compute::cast(&oids, &DataType::Int64)?;
                let oids = datafusion::arrow::array::AsArray::as_primitive::<
                    datafusion::arrow::datatypes::Int64Type,
                >(&oids);
                let names: StringArray = oids.iter().map(|o| o.map(role_name)).collect();
                Ok(ColumnarValue::Array(Arc::new(names)))
            }
            CatalogFn::EncodingToChar => scalar(ScalarValue::Utf8(Some("UTF8".into()))),
            CatalogFn::ObjDescription | CatalogFn::ColDescription => {
                scalar(ScalarValue::Utf8(None))
            }
            CatalogFn::AdvisoryXactLock => scalar(ScalarValue::Utf8(Some(String::new()))),
            CatalogFn::CurrentSchemas => {
                let implicit = args.args[0].to_array(rows)?;
                let implicit = datafusion::arrow::compute::cast(&implicit, &DataType::Boolean)?;
                let mut lists = datafusion::arrow::array::ListBuilder::new(
                    datafusion::arrow::array::StringBuilder::new(),
                );
                let path = search_path(&args.config_options);
                for row in implicit.as_boolean().iter() {
                    if row == Some(true) {
                        lists.values().append_value("pg_catalog");
                    }
                    for schema in &path {
                        lists.values().append_value(schema);
                    }
                    lists.append(true);
                }
                Ok(ColumnarValue::Array(Arc::new(lists.finish())))
            }
            CatalogFn::ArrayUpper => {
                let arrays = args.args[0].to_array(rows)?;
                let dims = args.args[1].to_array(rows)?;
                let dims = datafusion::arrow::compute::cast(&dims, &DataType::Int64)?;
                let dims = dims.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let lengths = datafusion::functions_nested::length::array_length_udf()
                    .invoke_with_args(ScalarFunctionArgs {
                        args: vec![ColumnarValue::Array(arrays)],
                        ..args
                    })?
                    .to_array(rows)?;
                let lengths = datafusion::arrow::compute::cast(&lengths, &DataType::Int64)?;
                let lengths = lengths.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let upper: datafusion::arrow::array::Int32Array = lengths
                    .iter()
                    .zip(dims.iter())
                    .map(|(n, d)| match (n, d) {
                        (Some(n), Some(1)) if n > 0 => Some(n as i32),
                        _ => None, // an empty array, or a dimension it does not have
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(upper)))
            }
            CatalogFn::GetExpr => match args.args.first() {
                Some(tree) => {
                    let tree = tree.to_array(rows)?;
                    let text = datafusion::arrow::compute::cast(&tree, &DataType::Utf8)?;
                    Ok(ColumnarValue::Array(text))
                }
                None => plan_err!("pg_get_expr takes an expression and a relation"),
            },
            CatalogFn::TryAdvisoryXactLock => scalar(ScalarValue::Boolean(Some(true))),
            CatalogFn::CurrentSetting => {
                let name = constant_text(&args.args, 0, "current_setting")?;
                let missing_ok = match args.args.get(1) {
                    Some(ColumnarValue::Scalar(ScalarValue::Boolean(ok))) => ok.unwrap_or(false),
                    _ => false,
                };
                let name = name.to_lowercase();
                match crate::settings::show_value_in(&args.config_options, &name) {
                    Ok(value) => scalar(ScalarValue::Utf8(Some(value))),
                    Err(_) if missing_ok => scalar(ScalarValue::Utf8(None)),
                    Err(_) => Err(VectorError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                    .into()),
                }
            }
            CatalogFn::SetConfig => {
                let name = constant_text(&args.args, 0, "set_config")?.to_lowercase();
                let value = constant_text(&args.args, 1, "set_config")?;
                if !crate::settings::is_ignored(&name) || name == "search_path" {
                    let message = format!("set_config('{name}', …) is not supported; use SET");
                    return Err(VectorError::new("0A000", message).into());
                }
                scalar(ScalarValue::Utf8(Some(value)))
            }
            CatalogFn::TypeOf => {
                let Some(field) = args.arg_fields.first() else {
                    return plan_err!("pg_typeof takes one argument");
                };
                let ty = crate::encode::field_type(field);
                let name = format_type(ty.oid(), -1).unwrap_or_else(|| ty.name().to_string());
                scalar(ScalarValue::Utf8(Some(name)))
            }
            CatalogFn::PartitionAncestors => {
                let rel = args.args[0].to_array(rows)?;
                let oids = datafusion::arrow::compute::cast(&rel, &DataType::UInt32)?;
                Ok(ColumnarValue::Array(oids))
            }
            CatalogFn::ToRegtype => {
                let names = args.args[0].to_array(rows)?;
                let names = datafusion::arrow::compute::cast(&names, &DataType::Utf8)?;
                let names = datafusion::arrow::array::AsArray::as_string::<i32>(&names);
                let oids: UInt32Array = names.iter().map(|n| n.and_then(type_oid)).collect();
                Ok(ColumnarValue::Array(Arc::new(oids)))
            }
            CatalogFn::FormatType => {
                let oids = args.args[0].to_array(rows)?;
                let oids = datafusion::arrow::compute::cast(&oids, &DataType::Int64)?;
                let mods = args.args[1].to_array(rows)?;
                let mods = datafusion::arrow::compute::cast(&mods, &DataType::Int64)?;
                use datafusion::arrow::array::AsArray;
                use datafusion::arrow::datatypes::Int64Type;
                let (oids, mods) = (
                    oids.as_primitive::<Int64Type>(),
                    mods.as_primitive::<Int64Type>(),
                );
                let names: StringArray = oids
                    .iter()
                    .zip(mods.iter())
                    .map(|(o, m)| format_type(o? as u32, m.unwrap_or(-1) as i32))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(names)))
            }
        }
    }
}

/// The session's search path, without the `"$user"` schema no role has here.
pub(super) fn search_path(options: &datafusion::common::config::ConfigOptions) -> Vec<String> {
    let path = options
        .extensions
        .get::<vecraft_planner::knn::VecraftOptions>()
        .map(|o| o.search_path.clone())
        .unwrap_or_default();
    let mut schemas = crate::search_path::schemas_of(&path);
    schemas.retain(|s| s != "$user");
    schemas
}

/// The text of argument `at` of `function`, which must be a constant.
fn constant_text(args: &[ColumnarValue], at: usize, function: &str) -> Result<String> {
    match args.get(at) {
        Some(ColumnarValue::Scalar(value)) if !value.is_null() => {
            Ok(value.cast_to(&DataType::Utf8)?.to_string())
        }
        _ => plan_err!("{function} takes a constant text as argument {}", at + 1),
    }
}

/// `pg_sleep(seconds)`: waits on the runtime's timer, holding no thread, so a cancel request
/// ends it at once. (A closed connection does not: the socket is not read while a statement
/// runs.) Returns void, which prints empty as in PostgreSQL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct PgSleep {
    signature: Signature,
}

impl PgSleep {
    /// PostgreSQL would sleep for ever on `'infinity'`; a day is the longest wait taken here.
    const MAX_SECONDS: f64 = 86_400.0;

    pub(super) fn new() -> Self {
        PgSleep {
            signature: Signature::uniform(1, vec![DataType::Float64], Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for PgSleep {
    fn name(&self) -> &str {
        "pg_sleep"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8) // void, whose text is empty
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        internal_err!("pg_sleep is asynchronous and runs through AsyncFuncExec")
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for PgSleep {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let seconds = args.args[0].to_array(rows)?;
        let seconds = seconds.as_primitive::<Float64Type>();
        // Called once per row, as PostgreSQL does; NULL sleeps not at all.
        let mut total = 0.0;
        for s in seconds.iter().flatten() {
            if s.is_nan() {
                return plan_err!("pg_sleep: invalid duration NaN");
            }
            total += s.max(0.0);
        }
        tokio::time::sleep(Duration::from_secs_f64(total.min(Self::MAX_SECONDS))).await;
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(vec![
            "";
            rows
        ]))))
    }
}

/// A role's name by OID, as `pg_get_userbyid` gives it (PostgreSQL's words for an unknown one).
fn role_name(oid: i64) -> String {
    match oid {
        BOOTSTRAP_SUPERUSER => "postgres".into(),
        DATABASE_OWNER_ROLE => "pg_database_owner".into(),
        other => format!("unknown (OID={other})"),
    }
}

/// The superuser every connection is trusted as.
pub(super) const BOOTSTRAP_SUPERUSER: i64 = 10;
/// PostgreSQL's `pg_database_owner`, which owns schema `public`.
pub(super) const DATABASE_OWNER_ROLE: i64 = 6171;
