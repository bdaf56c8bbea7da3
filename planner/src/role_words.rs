//! PostgreSQL's spellings of role statements that sqlparser reads otherwise or not at all.
//! `CREATE USER`, `ALTER USER` and `DROP USER` are PostgreSQL's aliases of the `… ROLE`
//! statements (sqlparser reads Snowflake's `CREATE USER`), `CREATE USER` implying `LOGIN`;
//! `ENCRYPTED PASSWORD` is `PASSWORD` (every password is stored encrypted). The tokens are
//! rewritten to the `ROLE` forms before parsing.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

/// Rewrites each statement of `tokens` that is a role statement spelt PostgreSQL's way.
pub fn rewrite(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    if !tokens
        .iter()
        .any(|t| is_word(t, "USER") || is_word(t, "ENCRYPTED"))
    {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len() + 2);
    for statement in tokens.split_inclusive(|t| t.token == Token::SemiColon) {
        out.extend(rewrite_statement(statement));
    }
    out
}

fn rewrite_statement(statement: &[TokenWithSpan]) -> Vec<TokenWithSpan> {
    let words: Vec<usize> = (0..statement.len())
        .filter(|&i| !matches!(statement[i].token, Token::Whitespace(_)))
        .collect();
    let word = |n: usize, text: &str| words.get(n).is_some_and(|&i| is_word(&statement[i], text));
    let verb = ["CREATE", "ALTER", "DROP"].into_iter().find(|v| word(0, v));
    let Some(verb) = verb else {
        return statement.to_vec();
    };
    if !word(1, "USER") && !word(1, "ROLE") {
        return statement.to_vec();
    }
    let mut out = statement.to_vec();
    // `CREATE USER name` logs in unless it says NOLOGIN.
    let says_login = statement
        .iter()
        .any(|t| is_word(t, "LOGIN") || is_word(t, "NOLOGIN"));
    if verb == "CREATE" && word(1, "USER") && !says_login && words.len() > 2 {
        let after_name = words[2] + 1;
        let login = [
            Token::Whitespace(Whitespace::Space),
            Token::make_keyword("LOGIN"),
        ];
        for (k, token) in login.into_iter().enumerate() {
            out.insert(after_name + k, TokenWithSpan::wrap(token));
        }
    }
    if word(1, "USER") {
        out[words[1]].token = Token::make_keyword("ROLE");
    }
    // `ENCRYPTED PASSWORD` is `PASSWORD`.
    for i in (0..out.len()).rev() {
        let next_word = out[i + 1..]
            .iter()
            .find(|t| !matches!(t.token, Token::Whitespace(_)));
        if is_word(&out[i], "ENCRYPTED") && next_word.is_some_and(|t| is_word(t, "PASSWORD")) {
            out[i].token = Token::Whitespace(Whitespace::Space);
        }
    }
    out
}

fn is_word(token: &TokenWithSpan, text: &str) -> bool {
    matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

#[cfg(test)]
mod tests {
    use crate::parse::parse_sql;

    fn text(sql: &str) -> String {
        parse_sql(sql).unwrap()[0].to_string()
    }

    #[test]
    fn user_statements_are_role_statements() {
        assert!(text("CREATE USER alice PASSWORD 'x'").contains("CREATE ROLE alice LOGIN"));
        let nologin = text("create user bob nologin");
        assert!(
            nologin.contains("NOLOGIN") && !nologin.contains(" LOGIN"),
            "{nologin}"
        );
        assert!(text("ALTER USER alice WITH PASSWORD 'y'").starts_with("ALTER ROLE alice"));
        assert!(text("DROP USER IF EXISTS alice").starts_with("DROP ROLE IF EXISTS alice"));
        let encrypted = text("CREATE ROLE carol LOGIN ENCRYPTED PASSWORD 'z'");
        assert!(encrypted.contains("PASSWORD 'z'"), "{encrypted}");
    }

    #[test]
    fn other_statements_keep_their_words() {
        assert_eq!(text("SELECT user"), "SELECT user");
        let table = "CREATE TABLE t (encrypted INT, \"user\" INT)";
        assert_eq!(text(table), table);
    }
}
