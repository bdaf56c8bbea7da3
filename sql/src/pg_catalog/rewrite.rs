//! psql and drivers write catalog queries in PostgreSQL's own dialect. Before planning, this
//! pass turns that dialect into what DataFusion plans:
//!
//! - `pg_*` tables are qualified with `pg_catalog`, which PostgreSQL searches first;
//! - `pg_catalog.f(…)`, `::pg_catalog.text` and `OPERATOR(pg_catalog.~)` lose the qualifier;
//! - `COLLATE pg_catalog.default` (or `"C"`, `"POSIX"`) is dropped: there is one collation;
//! - `'pg_extension'::regclass` becomes the relation's OID;
//! - a column default looked up in `pg_attrdef` becomes `column_default(relid, attnum)`;
//! - asyncpg's type introspection becomes a query DataFusion plans (`asyncpg.rs`);
//! - `::jsonpath` becomes `::text`: the path functions read the text;
//! - a subquery over a catalog table that is always empty here (policies, triggers,
//!   publications, …) becomes NULL, and a query that reads one becomes an empty result of the
//!   same width (unless it aggregates); `ARRAY(SELECT …)` over the catalog is empty. psql's `\d` asks these with arrays and functions DataFusion does not have;
//!   the answer is known without asking.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    AccessExpr, Array, BinaryOperator, DataType, Expr, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, Query, Select, SelectItem, SetExpr, Statement, TableFactor, Value, VisitMut,
    visit_expressions_mut, visit_relations, visit_relations_mut,
};

use super::calls::parse_expr;
use super::tables::{EMPTY_TABLES, is_catalog_table};
use super::types::{
    INFORMATION_SCHEMA_NAMESPACE, PG_CATALOG_NAMESPACE, PUBLIC_NAMESPACE, catalog_table_oid,
    table_oid,
};

/// Rewrites `statement` in place (see the module comment).
pub fn rewrite(statement: &mut DFStatement) {
    let DFStatement::Statement(s) = statement else {
        return;
    };
    super::asyncpg::rewrite(s);
    qualify_tables(s);
    if let Statement::Query(query) = s.as_mut() {
        super::regclass::shown_regclasses(query);
    }
    let _ = s.visit(&mut super::calls::TableFunctions);
    let _ = visit_expressions_mut(s.as_mut(), |e: &mut Expr| {
        rewrite_expr(e);
        ControlFlow::<()>::Continue(())
    });
    if let Statement::Query(query) = s.as_mut()
        && reads_empty_table(query)
    {
        empty_result(query);
    }
}

/// Qualifies unqualified catalog table names (not the names of the statement's own CTEs).
fn qualify_tables(s: &mut Statement) {
    let ctes: Vec<String> = match s {
        Statement::Query(q) => q
            .with
            .iter()
            .flat_map(|w| &w.cte_tables)
            .map(|c| c.alias.name.value.clone())
            .collect(),
        _ => Vec::new(),
    };
    let _ = visit_relations_mut(s, |name: &mut ObjectName| {
        if let [ObjectNamePart::Identifier(id)] = name.0.as_slice()
            && is_catalog_table(&id.value)
            && !ctes.contains(&id.value)
        {
            *name = ObjectName::from(vec![Ident::new("pg_catalog"), id.clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
}

fn rewrite_expr(e: &mut Expr) {
    if let Expr::Subquery(query) = e
        && let Some(call) = super::defaults::attrdef_lookup(query)
    {
        *e = call; // a column default looked up in pg_attrdef
        return;
    }
    match e {
        Expr::Function(f) => {
            f.name = unqualified(&f.name);
            let catalog_array = f.name.to_string().eq_ignore_ascii_case("array")
                && matches!(&f.args, FunctionArguments::Subquery(q) if reads_only_catalog(q));
            if catalog_array {
                // `ARRAY(SELECT …)` over the catalog: psql asks it about options and roles
                // Vecraft never has.
                *e = empty_array();
            } else if let Some(call) = super::calls::rewrite_call(f) {
                *e = call;
            }
        }
        // There is one collation; other COLLATE clauses reach DataFusion, which refuses them.
        Expr::Collate { expr, collation } if is_default_collation(collation) => {
            *e = std::mem::replace(expr.as_mut(), null())
        }
        // `reloptions || ARRAY(SELECT …)` (psql's `\\d+`): the options alone.
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } if is_empty_array(right) => *e = std::mem::replace(left.as_mut(), null()),
        Expr::BinaryOp { op, .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(path) = op
                && let Some(plain) = builtin_operator(path)
            {
                *op = plain;
            }
        }
        Expr::Cast {
            expr, data_type, ..
        } => {
            *data_type = unqualified_type(data_type);
            if is_type(data_type, "jsonpath") {
                // A path is read by the function it is given to (`jsonb_path_match`).
                *data_type = DataType::Text;
            }
            if let Expr::Value(v) = expr.as_ref()
                && let Value::SingleQuotedString(name) = &v.value
            {
                if let Some(value) = named_object(data_type, name) {
                    *e = value;
                }
            } else if is_type(data_type, "regclass") {
                // A name known only when the statement runs (`CAST($1 AS REGCLASS)`), or an
                // OID: `regclass_in` reads either.
                if let Some(call) = parse_expr(&format!("regclass_in({expr})")) {
                    *e = call;
                }
            }
        }
        // `B'0101'`: PostgreSQL's bit-string literal, a `bit varying` of its digits.
        Expr::Value(v) if matches!(v.value, Value::SingleQuotedByteStringLiteral(_)) => {
            if let Value::SingleQuotedByteStringLiteral(digits) = &v.value {
                *e = Expr::Cast {
                    kind: datafusion::sql::sqlparser::ast::CastKind::DoubleColon,
                    expr: Box::new(Expr::value(Value::SingleQuotedString(digits.clone()))),
                    data_type: DataType::VarBit(None),
                    array: false,
                    format: None,
                };
            }
        }
        Expr::Subquery(query) if reads_empty_table(query) => *e = null(),
        Expr::Subquery(query) if reads_only_catalog(query) => aggregate_lookup(query),
        // `(record).field`: DataFusion reads a field of a struct with `get_field`.
        Expr::CompoundFieldAccess { root, access_chain } => {
            if let [AccessExpr::Dot(Expr::Identifier(field))] = access_chain.as_slice() {
                let sql = format!("get_field({root}, '{}')", field.value.replace('\'', "''"));
                if let Some(get) = parse_expr(&sql) {
                    *e = get;
                }
            }
        }
        _ => {}
    }
}

fn null() -> Expr {
    Expr::value(Value::Null)
}

fn empty_array() -> Expr {
    Expr::Array(Array {
        elem: Vec::new(),
        named: true,
    })
}

fn is_empty_array(e: &Expr) -> bool {
    matches!(e, Expr::Array(a) if a.elem.is_empty())
}

fn is_default_collation(collation: &ObjectName) -> bool {
    let name = unqualified(collation).to_string().to_lowercase();
    matches!(
        name.trim_matches('"'),
        "default" | "c" | "posix" | "ucs_basic"
    )
}

/// Whether every relation `query` reads is in `pg_catalog` (names are qualified by then).
fn reads_only_catalog(query: &Query) -> bool {
    visit_relations(query, |name: &ObjectName| match name.0.first() {
        Some(ObjectNamePart::Identifier(schema))
            if name.0.len() == 2 && schema.value.eq_ignore_ascii_case("pg_catalog") =>
        {
            ControlFlow::Continue(())
        }
        _ => ControlFlow::Break(()),
    })
    .is_continue()
}

/// `pg_catalog.f` → `f`; other names unchanged.
pub(super) fn unqualified(name: &ObjectName) -> ObjectName {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(schema), last]
            if schema.value.eq_ignore_ascii_case("pg_catalog") =>
        {
            ObjectName(vec![last.clone()])
        }
        _ => name.clone(),
    }
}

fn unqualified_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Custom(name, modifiers) => {
            let name = unqualified(name);
            match name.to_string().to_lowercase().as_str() {
                "text" | "name" => DataType::Text,
                "int2" => DataType::SmallInt(None),
                "int4" => DataType::Int(None),
                "int8" => DataType::BigInt(None),
                "bool" => DataType::Boolean,
                _ => DataType::Custom(name, modifiers.clone()),
            }
        }
        other => other.clone(),
    }
}

fn is_type(data_type: &DataType, name: &str) -> bool {
    match data_type {
        DataType::Custom(n, _) => n.to_string().eq_ignore_ascii_case(name),
        DataType::Regclass => name == "regclass",
        _ => false,
    }
}

/// The operator `OPERATOR(pg_catalog.op)` names, when DataFusion has it.
fn builtin_operator(path: &[String]) -> Option<BinaryOperator> {
    let op = match path {
        [schema, op] if schema.eq_ignore_ascii_case("pg_catalog") => op.as_str(),
        [op] => op.as_str(),
        _ => return None,
    };
    Some(match op {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        _ => return None,
    })
}

/// `'name'::regclass`, `'name'::regnamespace`, `'name'::regtype`, `'name'::regproc`: the
/// relation's OID, the schema's OID, the type's OID, the function's name (the catalog's function columns hold names).
fn named_object(data_type: &DataType, name: &str) -> Option<Expr> {
    let oid = |oid: u32| Expr::value(Value::Number(oid.to_string(), false));
    if is_type(data_type, "regclass") {
        Some(oid(relation_oid(name)))
    } else if is_type(data_type, "regnamespace") {
        namespace_oid(name).map(oid)
    } else if is_type(data_type, "regtype") {
        super::types::type_oid(name).map(oid)
    } else if is_type(data_type, "regproc") {
        let function = name.rsplit('.').next().unwrap_or(name).to_string();
        Some(Expr::value(Value::SingleQuotedString(function)))
    } else {
        None
    }
}

/// A schema's OID by name, as `'public'::regnamespace` gives it.
fn namespace_oid(name: &str) -> Option<u32> {
    match name.trim_matches('"') {
        "pg_catalog" => Some(PG_CATALOG_NAMESPACE),
        "public" => Some(PUBLIC_NAMESPACE),
        "information_schema" => Some(INFORMATION_SCHEMA_NAMESPACE),
        other => Some(super::types::schema_oid(other)),
    }
}

/// A relation's OID by name, as `'name'::regclass` gives it (folded to lower case unless
/// quoted). An unknown name gets an OID no relation has, so lookups by it find nothing.
pub fn relation_oid(name: &str) -> u32 {
    let folded;
    let name = if name.starts_with('"') {
        name.trim_matches('"')
    } else {
        folded = name.to_lowercase();
        &folded
    };
    let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
    let name = name.strip_prefix("public.").unwrap_or(name);
    catalog_table_oid(name).unwrap_or_else(|| table_oid(name))
}

/// Whether `query`'s own FROM joins (not outer-joins) a table that is always empty here, in
/// every branch of a UNION.
fn reads_empty_table(query: &Query) -> bool {
    set_reads_empty_table(&query.body)
}

fn set_reads_empty_table(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select_reads_empty_table(select),
        SetExpr::SetOperation { left, right, .. } => {
            set_reads_empty_table(left) && set_reads_empty_table(right)
        }
        SetExpr::Query(query) => reads_empty_table(query),
        _ => false,
    }
}

/// Whether `select` joins an always-empty catalog table and so returns no rows: not when it
/// aggregates (`count(*)` over no rows is one row, 0).
fn select_reads_empty_table(select: &Select) -> bool {
    use datafusion::sql::sqlparser::ast::JoinOperator::*;
    if aggregates(select) {
        return false;
    }
    select.from.iter().any(|from| {
        is_empty_table(&from.relation)
            || from.joins.iter().any(|j| {
                matches!(j.join_operator, Inner(_) | Join(_) | CrossJoin(_))
                    && is_empty_table(&j.relation)
            })
    })
}

/// `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)` (JDBC's type list): a
/// scalar subquery that looks one catalog row up by its OID. DataFusion plans a correlated
/// scalar subquery only when it aggregates, so its value is taken with `max`, which is the
/// same for the one row (or none) such a lookup finds.
fn aggregate_lookup(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    if aggregates(select) || select.distinct.is_some() {
        return;
    }
    let [SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. }] =
        select.projection.as_mut_slice()
    else {
        return;
    };
    if let Some(max) = parse_expr(&format!("max({item})")) {
        *item = max;
    }
}

fn aggregates(select: &Select) -> bool {
    use datafusion::sql::sqlparser::ast::GroupByExpr;
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    let aggregate_call = select.projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            calls_aggregate(e)
        }
        _ => false,
    });
    grouped || select.having.is_some() || aggregate_call
}

/// Whether `e` calls an aggregate at its own level (an aggregate inside a subquery, as in
/// psql's publication query, belongs to that subquery).
fn calls_aggregate(e: &Expr) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "min",
        "max",
        "avg",
        "string_agg",
        "array_agg",
        "bool_and",
        "bool_or",
        "every",
        "json_agg",
    ];
    match e {
        Expr::Function(f) => {
            AGGREGATES.contains(&unqualified(&f.name).to_string().to_lowercase().as_str())
        }
        Expr::Nested(e) | Expr::UnaryOp { expr: e, .. } | Expr::Cast { expr: e, .. } => {
            calls_aggregate(e)
        }
        Expr::BinaryOp { left, right, .. } => calls_aggregate(left) || calls_aggregate(right),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            operand.as_deref().is_some_and(calls_aggregate)
                || conditions
                    .iter()
                    .any(|w| calls_aggregate(&w.condition) || calls_aggregate(&w.result))
                || else_result.as_deref().is_some_and(calls_aggregate)
        }
        _ => false,
    }
}

/// Whether `relation` is `pg_catalog.t` for an always-empty `t` (names are qualified by now).
fn is_empty_table(relation: &TableFactor) -> bool {
    let TableFactor::Table { name, .. } = relation else {
        return false;
    };
    match name.0.as_slice() {
        [
            ObjectNamePart::Identifier(schema),
            ObjectNamePart::Identifier(table),
        ] => {
            schema.value.eq_ignore_ascii_case("pg_catalog")
                && EMPTY_TABLES.contains(&table.value.as_str())
        }
        _ => false,
    }
}

/// Replaces `query` by `SELECT NULL AS …, … WHERE false`: no rows, the same columns.
fn empty_result(query: &mut Query) {
    let width = first_select(query).map_or(0, |s| s.projection.len());
    let mut columns = Vec::with_capacity(width);
    for i in 0..width {
        let name = first_select(query)
            .and_then(|s| column_name(&s.projection[i]))
            .unwrap_or_else(|| format!("column{}", i + 1));
        columns.push(format!(
            "CAST(NULL AS TEXT) AS \"{}\"",
            name.replace('"', "")
        ));
    }
    let sql = format!("SELECT {} WHERE false", columns.join(", "));
    if let Ok(mut parsed) = vecraft_planner::parse::parse_sql(&sql)
        && let Some(DFStatement::Statement(s)) = parsed.pop()
        && let Statement::Query(empty) = *s
    {
        *query = *empty;
    }
}

fn first_select(query: &Query) -> Option<&Select> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            SetExpr::Select(s) => return Some(s),
            SetExpr::SetOperation { left, .. } => body = left,
            _ => return None,
        }
    }
}

fn column_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
        SelectItem::UnnamedExpr(Expr::Identifier(id)) => Some(id.value.clone()),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => {
            ids.last().map(|i| i.value.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut s = vecraft_planner::parse::parse_sql(sql).unwrap().remove(0);
        rewrite(&mut s);
        s.to_string()
    }

    #[test]
    fn unqualified_catalog_tables_are_qualified() {
        assert_eq!(
            rewritten("SELECT oid FROM pg_type t, items"),
            "SELECT oid FROM pg_catalog.pg_type t, items"
        );
    }

    #[test]
    fn psql_dialect_becomes_datafusion_sql() {
        assert_eq!(
            rewritten(
                "SELECT pg_catalog.pg_get_userbyid(1) FROM pg_catalog.pg_class c \
                 WHERE c.relname OPERATOR(pg_catalog.~) '^(items)$' COLLATE pg_catalog.default \
                 AND c.oid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid::pg_catalog.text = ''"
            ),
            "SELECT pg_get_userbyid(1) FROM pg_catalog.pg_class c \
             WHERE c.relname ~ '^(items)$' AND c.oid = 1259 AND c.oid::TEXT = ''"
        );
    }

    #[test]
    fn array_subqueries_about_options_are_empty() {
        assert_eq!(
            rewritten(
                "SELECT pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x \
                 from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_catalog.pg_class c"
            ),
            "SELECT array_to_string(c.reloptions, ', ') FROM pg_catalog.pg_class c"
        );
    }

    #[test]
    fn user_queries_keep_their_meaning() {
        // A user's ARRAY subquery, own schema and CTE named like a catalog table, and a count.
        for sql in [
            "SELECT ARRAY(SELECT id FROM items)",
            "SELECT * FROM public.pg_trigger",
            "WITH pg_roles AS (SELECT 1 AS a) SELECT a FROM pg_roles",
            "SELECT count(*) FROM pg_catalog.pg_trigger",
            "SELECT name COLLATE \"de_DE\" FROM items",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }

    #[test]
    fn reads_of_tables_that_are_always_empty_answer_no_rows() {
        assert_eq!(
            rewritten(
                "SELECT pol.polname, pol.polpermissive AS p FROM pg_policy pol WHERE pol.polrelid = 1"
            ),
            "SELECT CAST(NULL AS TEXT) AS \"polname\", CAST(NULL AS TEXT) AS \"p\" WHERE false"
        );
        assert_eq!(
            rewritten(
                "SELECT a.attname, (SELECT c.collname FROM pg_collation c WHERE c.oid = a.attcollation) FROM pg_attribute a"
            ),
            "SELECT a.attname, NULL FROM pg_catalog.pg_attribute a"
        );
    }
}
