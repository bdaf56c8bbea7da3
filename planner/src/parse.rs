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
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

/// The `WITH` option that marks a `CREATE TABLE` parsed from `CREATE COLLECTION`.
pub const COLLECTION_MARKER: &str = "vecraft.collection";

/// The deepest expression tree a statement may build. Parsing, planning, optimising and
/// dropping an expression all recurse on its depth, so a deeper one (`1 OR 1 OR …` 100,000
/// times) would overflow a thread's stack and abort the process; it is refused before it is
/// parsed, as PostgreSQL refuses it (54001 "stack depth limit exceeded"). Statements deeper
/// than a few dozen levels run on a stack of their own (the gateway's `stack.rs`).
pub const MAX_EXPRESSION_DEPTH: usize = 5_000;

/// An upper bound on how deep the expressions of `sql` nest (0 for text that does not
/// tokenise: the parser will say what is wrong with it).
pub fn depth_of(sql: &str) -> usize {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_or(0, |tokens| nesting_bound(&tokens))
}

/// Function calls nested in function calls: sqlparser reads each call's arguments more than
/// once (it tries other forms first), so its time doubles with every level — 30 levels of
/// `f(f(f(…)))` would hold a worker for an hour. A call at depth `d` (0 outside any call)
/// costs `2^d - 1`; a statement may spend this much in all, which allows calls nested about
/// 20 deep (and any number of calls that are not nested), and parses within a second.
pub const MAX_CALL_COST: u64 = 1 << 20;

/// Parses `sql` (one or more `;`-separated statements) with PostgreSQL's rules. A statement
/// whose expressions may nest deeper than [`MAX_EXPRESSION_DEPTH`], or whose function calls
/// nest beyond [`MAX_CALL_COST`], is refused with [`ParserError::RecursionLimitExceeded`]
/// before anything recurses on it.
pub fn parse_sql(sql: &str) -> Result<Vec<DFStatement>, ParserError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))?;
    if nesting_bound(&tokens) > MAX_EXPRESSION_DEPTH || call_cost(&tokens) > MAX_CALL_COST {
        return Err(ParserError::RecursionLimitExceeded);
    }
    let tokens = crate::backup_sql::rewrite(merge_l1_operator(tokens))?;
    let tokens = crate::role_words::rewrite(tokens);
    let (tokens, mut collections) = read_collection_words(tokens);
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

/// PostgreSQL's errors for statement shapes DataFusion would panic on rather than refuse: a
/// subquery used as a value that selects no column (`(SELECT FROM t)`), which PostgreSQL
/// answers with 42601.
pub fn check_shape(statement: &DFStatement) -> datafusion::error::Result<()> {
    use datafusion::sql::sqlparser::ast::{SetExpr, visit_expressions};
    use std::ops::ControlFlow;
    let DFStatement::Statement(s) = statement else {
        return Ok(());
    };
    let found = visit_expressions(s.as_ref(), |e: &Expr| {
        if let Expr::Subquery(query) = e
            && let SetExpr::Select(select) = query.body.as_ref()
            && select.projection.is_empty()
        {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if found.is_break() {
        let message = "subquery must return only one column";
        return Err(crate::error::VectorError::new("42601", message).into());
    }
    Ok(())
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
            // sqlparser does not know UNLOGGED; a Vecraft table is always logged and
            // replicated, which keeps every promise an unlogged table makes.
            "UNLOGGED" if create => token.token = Token::Whitespace(Whitespace::Space),
            w if create && CREATE_MODIFIERS.contains(&w) => {}
            _ => verb = None,
        }
    }
    (tokens, found)
}

/// An upper bound on the depth of the expression trees the statements in `tokens` parse
/// into, found in one pass without recursion. Every operator (symbol or `AND`, `OR`, `NOT`,
/// `IS`, `UNION`, `JOIN`, …) may add a level, and so may every bracket; items of a list (`,`) are siblings, so
/// a long `VALUES` list or `IN (…)` list stays shallow; a bracketed part adds its own depth to
/// the expression it stands in.
fn nesting_bound(tokens: &[TokenWithSpan]) -> usize {
    // One frame per open bracket: the operators seen in the current list item, and the
    // deepest item so far.
    let mut frames: Vec<(usize, usize)> = vec![(0, 0)];
    let (mut outer_depth, mut deepest) = (0usize, 0usize);
    for token in tokens {
        let nested = frames.len() > 1;
        let frame = frames
            .last_mut()
            .expect("the statement's frame is never popped");
        match &token.token {
            Token::LParen | Token::LBracket => {
                outer_depth += frame.0 + 1;
                frames.push((0, 0));
            }
            Token::RParen | Token::RBracket if nested => {
                let (current, item_max) = frames.pop().expect("more than one frame");
                let inner = current.max(item_max);
                let outer = frames.last_mut().expect("the statement's frame");
                outer_depth -= outer.0 + 1;
                outer.0 += inner + 1;
            }
            Token::Comma => *frame = (0, frame.0.max(frame.1)),
            Token::SemiColon => {
                (frames, outer_depth) = (vec![(0, 0)], 0);
                continue;
            }
            Token::Whitespace(_)
            | Token::Number(..)
            | Token::Period
            | Token::RParen
            | Token::RBracket => {}
            Token::Word(w) => {
                use datafusion::sql::sqlparser::keywords::Keyword;
                if matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::NOT
                        | Keyword::IS
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::SIMILAR
                        | Keyword::BETWEEN
                        | Keyword::IN
                        | Keyword::COLLATE
                        | Keyword::AT
                        | Keyword::WHEN
                        | Keyword::XOR
                        | Keyword::UNION
                        | Keyword::EXCEPT
                        | Keyword::INTERSECT
                        | Keyword::MINUS
                        | Keyword::OVERLAPS
                        | Keyword::NOTNULL
                        | Keyword::DIV
                        | Keyword::REGEXP
                        | Keyword::RLIKE
                        | Keyword::MATCH
                        | Keyword::MEMBER
                        | Keyword::ESCAPE
                        | Keyword::ANY
                        | Keyword::ALL
                        | Keyword::SOME
                        | Keyword::EXISTS
                        | Keyword::JOIN
                ) {
                    frame.0 += 1;
                }
            }
            t if is_literal(t) => {}
            _ => frame.0 += 1, // an operator: `+`, `=`, `::`, `<->`, …
        }
        let frame = frames.last().expect("the statement's frame");
        deepest = deepest.max(outer_depth + frame.0);
    }
    deepest
}

/// What parsing the function calls in `tokens` costs (see [`MAX_CALL_COST`]), in one pass:
/// a bracket right after a word opens a call.
fn call_cost(tokens: &[TokenWithSpan]) -> u64 {
    let mut open: Vec<bool> = Vec::new(); // per open bracket: is it a call's?
    let (mut calls, mut cost) = (0u32, 0u64);
    let mut after_word = false;
    for token in tokens {
        match &token.token {
            Token::Whitespace(_) => continue,
            Token::LParen => {
                if after_word {
                    let level = 1u64.checked_shl(calls).unwrap_or(u64::MAX);
                    cost = cost.saturating_add(level - 1);
                    calls += 1;
                }
                open.push(after_word);
            }
            Token::RParen => {
                let closes_a_call = open.pop() == Some(true);
                calls -= u32::from(closes_a_call);
            }
            Token::SemiColon => (open, calls) = (Vec::new(), 0),
            _ => {}
        }
        after_word = matches!(token.token, Token::Word(_));
    }
    cost
}

fn is_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::Placeholder(_)
            | Token::Char(_)
    )
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
    fn deep_expressions_are_refused_before_parsing() {
        // Deep statements are parsed and dropped on a stack of their own in the gateway; so
        // they are here.
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(deep_expressions)
            .unwrap()
            .join()
            .unwrap();
    }

    fn deep_expressions() {
        let refused =
            |sql: &str| matches!(parse_sql(sql), Err(ParserError::RecursionLimitExceeded));
        let chain = |op: &str, n: usize| vec!["1"; n].join(op);
        let max = MAX_EXPRESSION_DEPTH;
        assert!(refused(&format!(
            "SELECT 1 WHERE {}",
            chain(" = 1 OR 1", 100_000)
        )));
        assert!(refused(&format!("SELECT {}", chain("+", 2 * max))));
        assert!(refused(&format!(
            "EXPLAIN SELECT {}",
            chain(" AND ", 2 * max)
        )));
        // A bracketed part counts inside the expression it stands in.
        let half = chain("+", max / 2 + 10);
        assert!(refused(&format!("SELECT ({half}) + {half}")));
        // Long lists are not deep: a bulk INSERT, an IN list, a wide SELECT.
        let rows = vec!["(1, '[1,-2]', -3)"; 50_000].join(", ");
        assert!(!refused(&format!("INSERT INTO t VALUES {rows}")));
        let items = (0..50_000).map(|i| format!("-{i}")).collect::<Vec<_>>();
        assert!(!refused(&format!(
            "SELECT 1 WHERE x IN ({})",
            items.join(",")
        )));
        assert!(!refused(&format!("SELECT {}", items.join(", "))));
        assert!(!refused(&format!("SELECT {}", chain(" + ", max - 10))));
        assert!(depth_of(&format!("SELECT {}", chain(" + ", 100))) >= 99);
        assert_eq!(depth_of("SELECT a, b FROM t"), 0);
        // Set operations nest too (`SELECT 1 UNION ALL SELECT 1 …` is a left-deep tree).
        let unions = vec!["SELECT 1"; 2 * max].join(" UNION ALL ");
        assert!(refused(&unions));
        assert!(depth_of(&vec!["SELECT 1"; 100].join(" UNION ALL ")) >= 99);
        // Calls nested in calls: 16 deep is fine, 30 is not; calls side by side cost nothing.
        let calls = |depth: usize| format!("SELECT {}1{}", "f(".repeat(depth), ")".repeat(depth));
        assert!(!refused(&calls(16)));
        assert!(refused(&calls(30)));
        assert!(refused(&format!(
            "INSERT INTO t VALUES (1,{}1",
            "ES (1,".repeat(40)
        )));
        let rows = vec!["(1, now(), lower(upper('A')))"; 100_000].join(", ");
        assert!(!refused(&format!("INSERT INTO t VALUES {rows}")));
        // Statements are counted apart.
        let one = format!("SELECT {};", chain("+", MAX_EXPRESSION_DEPTH - 10));
        assert!(!refused(&one.repeat(5)));
        // An unbalanced `)` does not underflow the count.
        assert!(!refused("SELECT 1)))"));
    }

    /// SQL text, whole and mangled: parsing never panics, however the text nests.
    #[test]
    fn fuzz_sql_parsing() {
        let seeds: &[&[u8]] = &[
            b"SELECT id, embedding <-> '[1,2,3]' AS d FROM items WHERE tag = 'a' ORDER BY d LIMIT 5",
            b"CREATE COLLECTION docs (id bigint PRIMARY KEY, v vector(3)) WITH (metric = 'cosine')",
            b"INSERT INTO t VALUES (1, '[1,2]'), (2, '[3,4]') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
            b"SELECT ((((1 + 2) * 3) OR (x <+> y)) AND NOT z) FROM a JOIN b ON a.id = b.id; CHECKPOINT",
            b"COPY t (id, v) FROM STDIN WITH (FORMAT csv, HEADER)",
        ];
        vecraft_storage::fuzz::run("sql", seeds, |input| {
            let _ = parse_sql(&String::from_utf8_lossy(input));
        });
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
