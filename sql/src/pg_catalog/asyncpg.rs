//! asyncpg's type introspection. Before it binds a value of a type it has no codec for (any
//! array, `text[]` included), asyncpg asks for the type and, recursively, its element, base
//! and attribute types in one query: a recursive CTE named `typeinfo_tree` whose rows carry
//! correlated subqueries over `pg_type`, `pg_attribute` and `pg_range` that DataFusion cannot
//! plan. Vecraft's types have no domains, ranges or composites, so the same answer — the types
//! asked for at depth 0 and the element types of arrays among them at depth 1, in columns of
//! the same names — comes from a plain query, which replaces it. `$1` (the OIDs) stays.

use datafusion::sql::sqlparser::ast::{Query, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// The name asyncpg gives its introspection CTE.
const MARKER: &str = "typeinfo_tree";

/// The rows of one depth: the types `oids` selects.
fn level(depth: u8, oids: &str) -> String {
    format!(
        "SELECT t.oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind, \
           CAST(NULL AS oid) AS basetype, t.typelem AS elemtype, \
           CASE WHEN t.typelem <> 0 THEN t.typdelim END AS elemdelim, \
           CAST(NULL AS oid) AS range_subtype, CAST(NULL AS oid[]) AS attrtypoids, \
           CAST(NULL AS text[]) AS attrnames, {depth} AS depth, \
           CAST(NULL AS text) AS basetype_name, \
           CASE WHEN t.typelem <> 0 THEN format_type(t.typelem, NULL) ELSE '-' END \
             AS elemtype_name, \
           CAST(NULL AS text) AS range_subtype_name \
         FROM pg_catalog.pg_type t \
         JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace \
         WHERE t.oid IN ({oids})"
    )
}

/// The replacement of asyncpg's introspection query.
fn replacement() -> String {
    let asked = "SELECT o FROM unnest($1::oid[]) AS a(o)";
    let elements =
        format!("SELECT typelem FROM pg_catalog.pg_type WHERE typelem <> 0 AND oid IN ({asked})");
    format!(
        "SELECT * FROM ({} UNION ALL {}) AS ti ORDER BY depth DESC",
        level(0, asked),
        level(1, &elements)
    )
}

/// `statement` with asyncpg's introspection query replaced; other statements as they are.
pub(super) fn rewrite(statement: &mut Statement) {
    let Statement::Query(query) = statement else {
        return;
    };
    if !is_introspection(query) {
        return;
    }
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, &replacement());
    match parsed.as_deref() {
        Ok([replacement]) => *statement = replacement.clone(),
        // The replacement is a constant of this file, parsed by its test.
        _ => debug_assert!(false, "asyncpg's replacement query parses"),
    }
}

fn is_introspection(query: &Query) -> bool {
    query.with.as_ref().is_some_and(|with| {
        with.recursive
            && with
                .cte_tables
                .iter()
                .any(|cte| cte.alias.name.value == MARKER)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replacement_parses_and_keeps_the_parameter() {
        let parsed = Parser::parse_sql(&PostgreSqlDialect {}, &replacement()).unwrap();
        assert_eq!(parsed.len(), 1);
        assert!(parsed[0].to_string().contains("$1"));
        let mut asked = Parser::parse_sql(
            &PostgreSqlDialect {},
            "WITH RECURSIVE typeinfo_tree(oid) AS (SELECT 1) SELECT * FROM typeinfo_tree",
        )
        .unwrap()
        .remove(0);
        rewrite(&mut asked);
        assert_eq!(asked, parsed[0]);
    }
}
