//! A `regclass` value shown to the client prints as the relation's name, as PostgreSQL's
//! `regclassout` prints it: psql's `\d` lists the tables that reference one as
//! `conrelid::pg_catalog.regclass AS ontable`. Elsewhere a `regclass` is an OID here
//! (`regclass_in`, `rewrite.rs`), so only what the statement returns is rewritten: an
//! output column `x::regclass` becomes `regclass_out(x)`, named as PostgreSQL names it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{
    DataType as SqlType, Expr, Ident, ObjectNamePart, Query, SelectItem, SetExpr,
};
use vecraft_storage::names::split_qualified;

use super::Shared;
use super::calls::parse_expr;
use super::indexes::indexes;
use super::types::{catalog_table_oid, table_oid};
use crate::catalog::Catalog;
use crate::idents::quote_ident;

/// Rewrites the output columns of `query` that are `x::regclass` of a non-literal `x`.
pub(super) fn shown_regclasses(query: &mut Query) {
    match query.body.as_mut() {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                shown_regclass(item);
            }
        }
        SetExpr::Query(inner) => shown_regclasses(inner),
        _ => {}
    }
}

fn shown_regclass(item: &mut SelectItem) {
    let (expr, alias) = match item {
        SelectItem::UnnamedExpr(expr) => (expr, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
        _ => return,
    };
    // `x::regclass`, or its text: `x::regclass::text`.
    let regclass: &Expr = match &*expr {
        Expr::Cast {
            expr: inner,
            data_type,
            ..
        } if is_text(data_type) => inner,
        other => other,
    };
    let Expr::Cast {
        expr: inner,
        data_type,
        ..
    } = regclass
    else {
        return;
    };
    if !is_regclass(data_type) || matches!(inner.as_ref(), Expr::Value(_)) {
        return;
    }
    // PostgreSQL names `conrelid::regclass` after its column.
    let alias = alias.or_else(|| match inner.as_ref() {
        Expr::Identifier(id) => Some(id.clone()),
        Expr::CompoundIdentifier(ids) => ids.last().cloned(),
        _ => Some(Ident::new("regclass")),
    });
    let Some(call) = parse_expr(&format!("regclass_out({inner})")) else {
        return;
    };
    *item = match alias {
        Some(alias) => SelectItem::ExprWithAlias { expr: call, alias },
        None => SelectItem::UnnamedExpr(call),
    };
}

fn is_text(data_type: &SqlType) -> bool {
    matches!(
        data_type,
        SqlType::Text | SqlType::Varchar(_) | SqlType::CharacterVarying(_)
    )
}

fn is_regclass(data_type: &SqlType) -> bool {
    match data_type {
        SqlType::Regclass => true,
        SqlType::Custom(name, _) => matches!(name.0.last(),
            Some(ObjectNamePart::Identifier(id)) if id.value.eq_ignore_ascii_case("regclass")),
        _ => false,
    }
}

/// `regclass_out(oid)`: the name of the relation, qualified outside `public` and
/// `pg_catalog`; an OID that names none prints as its number, as in PostgreSQL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct RegclassOut {
    catalog: Shared<Catalog>,
    signature: Signature,
}

impl RegclassOut {
    pub(super) fn new(catalog: Arc<Catalog>) -> Self {
        RegclassOut {
            catalog: Shared(catalog),
            signature: Signature::any(1, Volatility::Stable),
        }
    }

    /// Every relation's OID with its name as `regclassout` prints it.
    fn names(&self) -> Vec<(u32, String)> {
        let shown = |schema: Option<&str>, name: &str| match schema {
            Some(schema) if schema != "public" => {
                format!("{}.{}", quote_ident(schema), quote_ident(name))
            }
            _ => quote_ident(name),
        };
        let catalog = &self.catalog.0;
        let mut names: Vec<(u32, String)> = catalog
            .all()
            .into_iter()
            .map(|(name, _)| {
                let (schema, table) = split_qualified(&name);
                (table_oid(&name), shown(schema, table))
            })
            .collect();
        for index in indexes(catalog) {
            names.push((index.oid, shown(Some(&index.schema), &index.name)));
        }
        names
    }
}

impl ScalarUDFImpl for RegclassOut {
    fn name(&self) -> &str {
        "regclass_out"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let values = args.args[0].to_array(args.number_rows)?;
        let oids = cast(&values, &DataType::Int64)?;
        let names = self.names();
        let name_of = |oid: i64| {
            let oid = u32::try_from(oid).ok()?;
            names
                .iter()
                .find(|(o, _)| *o == oid)
                .map(|(_, n)| n.clone())
                .or_else(|| catalog_name(oid))
        };
        let oids = oids.as_primitive::<Int64Type>();
        let shown: StringArray = (0..oids.len())
            .map(|i| {
                (!oids.is_null(i)).then(|| {
                    let oid = oids.value(i);
                    name_of(oid).unwrap_or_else(|| oid.to_string())
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(shown)))
    }
}

/// The catalog table whose OID is `oid`.
pub(super) fn catalog_name(oid: u32) -> Option<String> {
    super::tables::CATALOG_TABLES
        .iter()
        .flat_map(|tables| tables.iter())
        .find(|name| catalog_table_oid(name) == Some(oid))
        .map(|name| name.to_string())
}
