//! `BACKUP`, `SHOW BACKUPS` and `RESTORE`: Vecraft's backup statements, in CockroachDB's
//! shape, which sqlparser does not know.
//!
//! ```sql
//! BACKUP { COLLECTION name [, …] | ALL } TO 'url'
//! SHOW BACKUPS IN 'url'
//! RESTORE [COLLECTION] name FROM 'url' [AS new_name] [WITH (backup = 'id', shards = n, replicas = r)]
//! ```
//! `parse_sql` reads them before sqlparser does, as it reads `CREATE COLLECTION`: each such
//! statement's tokens are replaced by those of `CALL "vecraft.backup"('<the statement as JSON>')`,
//! which sqlparser parses and the gateway recognises ([`of`]). Names stay SQL text (`"My
//! Docs"`, `s.t`) for the gateway to resolve as it resolves every name.

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, SqlOption, Statement,
    Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use serde::{Deserialize, Serialize};

/// The procedure name a backup statement is carried as.
pub const CALL_NAME: &str = "vecraft.backup";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupStatement {
    /// `BACKUP … TO url`; `collections` is `None` for `ALL`.
    Backup {
        collections: Option<Vec<String>>,
        url: String,
    },
    ShowBackups {
        url: String,
    },
    Restore {
        collection: String,
        url: String,
        new_name: Option<String>,
        /// `WITH` options, names lower-cased, values as written.
        options: Vec<(String, String)>,
    },
}

/// The backup statement `statement` carries, if it is one.
pub fn of(statement: &Statement) -> Option<BackupStatement> {
    let Statement::Call(call) = statement else {
        return None;
    };
    let [ObjectNamePart::Identifier(name)] = call.name.0.as_slice() else {
        return None;
    };
    if name.value != CALL_NAME || name.quote_style.is_none() {
        return None;
    }
    let FunctionArguments::List(list) = &call.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))] = list.args.as_slice() else {
        return None;
    };
    let Value::SingleQuotedString(json) = &v.value else {
        return None;
    };
    serde_json::from_str(json).ok()
}

/// Replaces each backup statement in `tokens` by its `CALL`; other statements stay as they are.
pub fn rewrite(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>, ParserError> {
    if !tokens.iter().any(is_backup_word) {
        return Ok(tokens);
    }
    let mut out = Vec::with_capacity(tokens.len());
    for statement in tokens.split_inclusive(|t| t.token == Token::SemiColon) {
        let (body, end) = match statement.split_last() {
            Some((last, body)) if last.token == Token::SemiColon => (body, Some(last)),
            _ => (statement, None),
        };
        if starts_backup(body) {
            out.extend(call_tokens(&parse(body)?)?);
        } else {
            out.extend_from_slice(body);
        }
        out.extend(end.cloned());
    }
    Ok(out)
}

fn is_backup_word(token: &TokenWithSpan) -> bool {
    matches!(&token.token, Token::Word(w) if w.quote_style.is_none()
        && ["BACKUP", "BACKUPS", "RESTORE"].iter().any(|k| w.value.eq_ignore_ascii_case(k)))
}

/// Whether a statement's first words are `BACKUP`, `RESTORE` or `SHOW BACKUPS`.
fn starts_backup(tokens: &[TokenWithSpan]) -> bool {
    let mut words = tokens.iter().filter_map(|t| match &t.token {
        Token::Whitespace(_) => None,
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => Some(String::new()),
    });
    match words.next().as_deref() {
        Some("BACKUP" | "RESTORE") => true,
        Some("SHOW") => words.next().as_deref() == Some("BACKUPS"),
        _ => false,
    }
}

fn parse(tokens: &[TokenWithSpan]) -> Result<BackupStatement, ParserError> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens.to_vec());
    let statement = if word(&mut p, "BACKUP") {
        let collections = if word(&mut p, "ALL") {
            None
        } else {
            if !word(&mut p, "COLLECTION") && !word(&mut p, "TABLE") {
                return p.expected("COLLECTION or ALL", p.peek_token());
            }
            let names = p.parse_comma_separated(|p| p.parse_object_name(false))?;
            Some(names.iter().map(ToString::to_string).collect())
        };
        expect_word(&mut p, "TO")?;
        BackupStatement::Backup {
            collections,
            url: p.parse_literal_string()?,
        }
    } else if word(&mut p, "SHOW") {
        expect_word(&mut p, "BACKUPS")?;
        expect_word(&mut p, "IN")?;
        BackupStatement::ShowBackups {
            url: p.parse_literal_string()?,
        }
    } else {
        expect_word(&mut p, "RESTORE")?;
        let _ = word(&mut p, "COLLECTION") || word(&mut p, "TABLE");
        let collection = p.parse_object_name(false)?.to_string();
        expect_word(&mut p, "FROM")?;
        let url = p.parse_literal_string()?;
        let new_name = match p.parse_keyword(Keyword::AS) {
            true => Some(p.parse_object_name(false)?.to_string()),
            false => None,
        };
        let options = p
            .parse_options(Keyword::WITH)?
            .iter()
            .map(option)
            .collect::<Result<_, _>>()?;
        BackupStatement::Restore {
            collection,
            url,
            new_name,
            options,
        }
    };
    match p.peek_token().token {
        Token::EOF => Ok(statement),
        _ => p.expected("end of statement", p.peek_token()),
    }
}

/// A `WITH` option as (lower-cased name, value as written).
fn option(option: &SqlOption) -> Result<(String, String), ParserError> {
    let SqlOption::KeyValue { key, value } = option else {
        return Err(ParserError::ParserError(format!(
            "expected name = value, found {option}"
        )));
    };
    let value = match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    };
    Ok((key.value.to_lowercase(), value))
}

/// Takes the unquoted word `expected` if it comes next.
fn word(p: &mut Parser, expected: &str) -> bool {
    let next = p.peek_token();
    let matched = matches!(&next.token, Token::Word(w)
        if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(expected));
    if matched {
        p.next_token();
    }
    matched
}

fn expect_word(p: &mut Parser, expected: &str) -> Result<(), ParserError> {
    match word(p, expected) {
        true => Ok(()),
        false => p.expected(expected, p.peek_token()),
    }
}

/// The tokens of `CALL "vecraft.backup"('<statement as JSON>')`.
fn call_tokens(statement: &BackupStatement) -> Result<Vec<TokenWithSpan>, ParserError> {
    let json = serde_json::to_string(statement).expect("a backup statement serialises");
    let sql = format!("CALL \"{CALL_NAME}\"('{}')", json.replace('\'', "''"));
    Tokenizer::new(&PostgreSqlDialect {}, &sql)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sql: &str) -> Vec<Option<BackupStatement>> {
        crate::parse::parse_sql(sql)
            .unwrap()
            .iter()
            .map(|s| match s {
                datafusion::sql::parser::Statement::Statement(s) => of(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn backup_statements_parse_beside_others_and_keep_their_names_as_written() {
        let got = read(
            "SELECT 1; BACKUP COLLECTION docs, \"My Docs\", s.t TO 's3://b/p'; \
             backup all to 'file:///tmp/x'; SHOW BACKUPS IN 'file:///tmp/x'; \
             RESTORE COLLECTION docs FROM 'file:///tmp/x' AS docs2 \
             WITH (backup = '20261205T000000000Z-abcdef', shards = 4, Replicas = 1)",
        );
        assert_eq!(got[0], None);
        assert_eq!(
            got[1],
            Some(BackupStatement::Backup {
                collections: Some(vec!["docs".into(), "\"My Docs\"".into(), "s.t".into()]),
                url: "s3://b/p".into()
            })
        );
        assert_eq!(
            got[2],
            Some(BackupStatement::Backup {
                collections: None,
                url: "file:///tmp/x".into()
            })
        );
        assert_eq!(
            got[3],
            Some(BackupStatement::ShowBackups {
                url: "file:///tmp/x".into()
            })
        );
        assert_eq!(
            got[4],
            Some(BackupStatement::Restore {
                collection: "docs".into(),
                url: "file:///tmp/x".into(),
                new_name: Some("docs2".into()),
                options: vec![
                    ("backup".into(), "20261205T000000000Z-abcdef".into()),
                    ("shards".into(), "4".into()),
                    ("replicas".into(), "1".into()),
                ],
            })
        );
    }

    #[test]
    fn a_malformed_backup_statement_is_a_syntax_error_and_a_url_with_quotes_survives() {
        for bad in [
            "BACKUP docs TO 'x'",
            "BACKUP COLLECTION docs",
            "BACKUP ALL TO 'x' extra",
            "SHOW BACKUPS 'x'",
            "RESTORE docs FROM",
        ] {
            assert!(crate::parse::parse_sql(bad).is_err(), "{bad} is refused");
        }
        let got = read("BACKUP ALL TO 'file:///tmp/it''s'");
        assert_eq!(
            got[0],
            Some(BackupStatement::Backup {
                collections: None,
                url: "file:///tmp/it's".into()
            })
        );
        // A column named `backup` is not a statement.
        assert_eq!(read("SELECT backup FROM t"), vec![None]);
    }
}
