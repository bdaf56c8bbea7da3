//! Parsing SQL the way PostgreSQL with pgvector reads it.
//!
//! sqlparser's PostgreSQL dialect knows `<->`, `<=>` and `<#>`, but splits `<+>` (pgvector's
//! L1 operator) into `<`, `+`, `>`, because it must read `a<+1` as `a < +1`. PostgreSQL's own
//! lexer keeps `<+>` whole (an operator may end in `+` only if it also holds one of
//! ``~!@#%^&|`?``… or, as here, ends in something else). So we tokenise, merge each adjacent
//! `<` `+` `>` into one custom operator, and parse the tokens.
//!
//! Vecraft's own DDL, `CREATE COLLECTION` and `DROP COLLECTION`, is read the same way: the
//! word `COLLECTION` becomes `TABLE` and the parsed statement is marked as a collection's
//! ([`is_collection`]): a `WITH` option named [`COLLECTION_MARKER`] on the CREATE, the
//! `purge` flag on the DROP (PostgreSQL has no `DROP … PURGE`; sqlparser reads one, which
//! then drops the table as `DROP COLLECTION` would — the same thing).

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CreateTableOptions, Expr, Ident, ObjectType, SqlOption, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// The `WITH` option that marks a `CREATE TABLE` parsed from `CREATE COLLECTION`.
pub const COLLECTION_MARKER: &str = "vecraft.collection";

/// Parses `sql` (one or more `;`-separated statements) with PostgreSQL's rules.
pub fn parse_sql(sql: &str) -> Result<Vec<DFStatement>, ParserError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let (tokens, mut collections) = read_collection_words(merge_l1_operator(tokens));
    let mut statements = Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()?;
    collections.reverse();
    for statement in &mut statements {
        let Some((create, collection)) = collections.last().copied() else {
            break;
        };
        let matched = match statement {
            Statement::CreateTable(c) if create => {
                if collection {
                    mark_create(&mut c.table_options);
                }
                true
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                purge,
                ..
            } if !create => {
                *purge |= collection;
                true
            }
            _ => false,
        };
        if matched {
            collections.pop();
        }
    }
    Ok(statements
        .into_iter()
        .map(|s| DFStatement::Statement(Box::new(s)))
        .collect())
}

/// Whether `statement` is a `CREATE COLLECTION` or `DROP COLLECTION`.
pub fn is_collection(statement: &Statement) -> bool {
    match statement {
        Statement::CreateTable(c) => collection_options(&c.table_options).is_some(),
        Statement::Drop {
            object_type: ObjectType::Table,
            purge,
            ..
        } => *purge,
        _ => false,
    }
}

/// A `CREATE COLLECTION`'s `WITH` options (without the marker); `None` for a `CREATE TABLE`.
pub fn collection_options(options: &CreateTableOptions) -> Option<Vec<SqlOption>> {
    let CreateTableOptions::With(options) = options else {
        return None;
    };
    let marker = |o: &SqlOption| matches!(o, SqlOption::KeyValue { key, .. } if key.value == COLLECTION_MARKER);
    options
        .iter()
        .any(marker)
        .then(|| options.iter().filter(|o| !marker(o)).cloned().collect())
}

fn mark_create(options: &mut CreateTableOptions) {
    let marker = SqlOption::KeyValue {
        key: Ident::with_quote('"', COLLECTION_MARKER),
        value: Expr::value(Value::Boolean(true)),
    };
    match options {
        CreateTableOptions::With(list) => list.push(marker),
        other => *other = CreateTableOptions::With(vec![marker]),
    }
}

/// Words that may stand between `CREATE` and `TABLE` (`CREATE OR REPLACE TEMP TABLE`).
const CREATE_MODIFIERS: &[&str] = &[
    "OR",
    "REPLACE",
    "TEMP",
    "TEMPORARY",
    "UNLOGGED",
    "GLOBAL",
    "LOCAL",
    "EXTERNAL",
];

/// Turns `CREATE COLLECTION` / `DROP COLLECTION` into `… TABLE`. Returns the tokens and, for
/// each statement that creates or drops a table or collection, in order: (is a CREATE, is a
/// collection). Only a statement's first word counts, so `ALTER TABLE t DROP collection`
/// (a column) is left alone.
fn read_collection_words(
    mut tokens: Vec<TokenWithSpan>,
) -> (Vec<TokenWithSpan>, Vec<(bool, bool)>) {
    let mut found = Vec::new();
    let mut words_in_statement = 0usize;
    let mut verb: Option<bool> = None; // Some(is_create) while reading `CREATE … TABLE`
    for token in tokens.iter_mut() {
        let word = match &token.token {
            Token::Whitespace(_) => continue,
            Token::SemiColon => {
                (words_in_statement, verb) = (0, None);
                continue;
            }
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            _ => {
                (words_in_statement, verb) = (words_in_statement + 1, None);
                continue;
            }
        };
        words_in_statement += 1;
        if words_in_statement == 1 {
            if word == "CHECKPOINT" {
                // PostgreSQL's CHECKPOINT, which sqlparser does not know: read as a VACUUM of
                // every collection, which is what Vecraft does for it.
                token.token = Token::make_keyword("VACUUM");
            }
            verb = match word.as_str() {
                "CREATE" => Some(true),
                "DROP" => Some(false),
                _ => None,
            };
            continue;
        }
        let Some(create) = verb else { continue };
        match word.as_str() {
            "TABLE" | "COLLECTION" => {
                let collection = word == "COLLECTION";
                found.push((create, collection));
                if collection {
                    token.token = Token::make_keyword("TABLE");
                }
                verb = None;
            }
            w if create && CREATE_MODIFIERS.contains(&w) => {}
            _ => verb = None,
        }
    }
    (tokens, found)
}

/// Replaces each run `<` `+` `>` (nothing between) with the custom operator `<+>`.
fn merge_l1_operator(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let run = tokens
            .get(i..i + 3)
            .map(|t| (&t[0].token, &t[1].token, &t[2].token));
        if let Some((Token::Lt, Token::Plus, Token::Gt)) = run {
            let mut merged = tokens[i].clone();
            merged.token = Token::CustomBinaryOperator("<+>".into());
            merged.span.end = tokens[i + 2].span.end;
            out.push(merged);
            i += 3;
        } else {
            out.push(tokens[i].clone());
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_parse_as_marked_tables() {
        let parsed = |sql: &str| match parse_sql(sql).unwrap().remove(0) {
            DFStatement::Statement(s) => *s,
            other => panic!("{other}"),
        };
        let create =
            parsed("CREATE COLLECTION docs (id bigint PRIMARY KEY) WITH (metric = 'cosine')");
        assert!(is_collection(&create));
        let Statement::CreateTable(c) = &create else {
            panic!()
        };
        assert_eq!(collection_options(&c.table_options).unwrap().len(), 1);
        assert!(!is_collection(&parsed(
            "CREATE TABLE docs (id bigint) WITH (fillfactor = 70)"
        )));
        assert!(is_collection(&parsed("DROP COLLECTION IF EXISTS docs")));
        assert!(!is_collection(&parsed("DROP TABLE docs")));
        // Statements in one text keep their own marks; a column may be called collection.
        let many = parse_sql(
            "CREATE TEMP TABLE a (collection int); CREATE COLLECTION b (id int); \
             ALTER TABLE a DROP collection; DROP TABLE a",
        )
        .unwrap();
        let marks: Vec<bool> = many
            .iter()
            .map(|s| match s {
                DFStatement::Statement(s) => is_collection(s),
                _ => false,
            })
            .collect();
        assert_eq!(marks, [false, true, false, false]);
    }

    #[test]
    fn l1_operator_is_one_token_but_less_than_plus_is_not() {
        let text = |sql: &str| parse_sql(sql).unwrap()[0].to_string();
        assert!(text("SELECT a <+> b").contains("a <+> b"));
        assert!(text("SELECT a < +1").contains("a < +1"));
        assert!(text("SELECT a<+1").contains("a < +1"));
        assert!(
            text("SELECT '<+>' <-> b").contains("'<+>' <-> b"),
            "strings are untouched"
        );
    }
}
