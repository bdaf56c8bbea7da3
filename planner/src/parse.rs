//! Parsing SQL the way PostgreSQL with pgvector reads it.
//!
//! sqlparser's PostgreSQL dialect knows `<->`, `<=>` and `<#>`, but splits `<+>` (pgvector's
//! L1 operator) into `<`, `+`, `>`, because it must read `a<+1` as `a < +1`. PostgreSQL's own
//! lexer keeps `<+>` whole (an operator may end in `+` only if it also holds one of
//! ``~!@#%^&|`?``… or, as here, ends in something else). So we tokenise, merge each adjacent
//! `<` `+` `>` into one custom operator, and parse the tokens.

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// Parses `sql` (one or more `;`-separated statements) with PostgreSQL's rules.
pub fn parse_sql(sql: &str) -> Result<Vec<DFStatement>, ParserError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    let statements = Parser::new(&dialect)
        .with_tokens_with_locations(merge_l1_operator(tokens))
        .parse_statements()?;
    Ok(statements
        .into_iter()
        .map(|s| DFStatement::Statement(Box::new(s)))
        .collect())
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
