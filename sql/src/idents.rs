//! Names as PostgreSQL reads them: unquoted identifiers fold to lower case, quoted ones keep
//! their case (`"Items"` is not `items`), and a table may be qualified with its schema
//! (`public.items`). Every statement the gateway answers itself takes its names from here, so
//! they mean what DataFusion's planning makes of the same names in queries.

use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart};
use pgwire::error::PgWireResult;
use vecraft_storage::names::{MAX_NAME_BYTES, qualified, split_qualified};

use crate::errors::user_error;

/// The schema every collection is in.
pub const PUBLIC: &str = "public";

/// An identifier's name: folded unless quoted, cut to 63 bytes as PostgreSQL cuts it.
pub fn ident(ident: &Ident) -> String {
    let mut name = vecraft_planner::names::ident(ident);
    if name.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// How messages name collection `name`: its table name, without its schema (as
/// PostgreSQL's "relation \"t\" does not exist").
pub fn shown(name: &str) -> &str {
    split_qualified(name).1
}

/// How listings (`SHOW COLLECTIONS`, `vecraft_shards`) name collection `name`: `t` in
/// `public`, `s.t` in schema `s`.
pub fn listed(name: &str) -> String {
    match split_qualified(name) {
        (Some(schema), table) => format!("{schema}.{table}"),
        (None, table) => table.to_string(),
    }
}

/// `name` as PostgreSQL's `quote_ident` writes it: as it is when it reads back the same
/// unquoted (lower case letters, digits, `_`, not starting with a digit), else in double
/// quotes with `"` doubled. (PostgreSQL also quotes its reserved words; this does not.)
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The collection `name` names: `t`, `public.t` or `db.public.t` is `t`; `s.t`, in another
/// schema, is `vecraft_storage::names::qualified(s, t)`. A name with more parts is 42601.
/// (Whether the schema exists is the catalog's to say.)
pub fn table_name(name: &ObjectName) -> PgWireResult<String> {
    let parts = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(i) => Ok(ident(i)),
            ObjectNamePart::Function(_) => Err(user_error(
                "42601",
                format!("improper relation name: {name}"),
            )),
        })
        .collect::<PgWireResult<Vec<_>>>()?;
    match parts.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] | [_, schema, table] => Ok(qualified(schema, table)),
        _ => Err(user_error(
            "42601",
            format!("improper qualified name (too many dotted names): {name}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn name(text: &str) -> PgWireResult<String> {
        let mut parser = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(text)
            .unwrap();
        table_name(&parser.parse_object_name(false).unwrap())
    }

    #[test]
    fn names_fold_unless_quoted_and_may_name_public() {
        assert_eq!(name("Items").unwrap(), "items");
        assert_eq!(name("\"Items\"").unwrap(), "Items");
        assert_eq!(name("public.\"my docs\"").unwrap(), "my docs");
        assert_eq!(name("postgres.PUBLIC.t").unwrap(), "t");
        assert_eq!(name("Other.\"T\"").unwrap(), qualified("other", "T"));
        assert!(name("a.b.c.d").is_err());
        assert_eq!(name(&"x".repeat(70)).unwrap().len(), 63);
    }

    #[test]
    fn names_are_quoted_when_they_must_be() {
        assert_eq!(quote_ident("items"), "items");
        assert_eq!(quote_ident("My Items"), "\"My Items\"");
        assert_eq!(quote_ident("1x"), "\"1x\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
