//! The `position` of an ErrorResponse: where in the statement's text the error is, as
//! PostgreSQL gives it for a relation, column or function it cannot find (1-based, counted in
//! characters). psql turns it into the `LINE 1: …` and `^` under the word.

use pgwire::error::PgWireError;

/// `e` with its position in `sql` filled in, where PostgreSQL gives one and the name it is
/// about is found in the text.
pub fn at(e: PgWireError, sql: &str) -> PgWireError {
    let PgWireError::UserError(mut info) = e else {
        return e;
    };
    if info.position.as_deref() == Some(NOWHERE) {
        info.position = None;
        return PgWireError::UserError(info);
    }
    if let Some(near) = info.position.as_deref().and_then(|p| p.strip_prefix(MARK)) {
        info.position = find_text(sql, near).map(|p| p.to_string());
    }
    if info.position.is_none() {
        let name = match info.code.as_str() {
            "42P01" => quoted_name(&info.message, "relation \""),
            "42703" => quoted_name(&info.message, "column \"")
                .or_else(|| info.message.strip_prefix("column ")?.split(' ').next()),
            _ => None,
        };
        info.position = name.and_then(|n| find_name(sql, n)).map(|p| p.to_string());
    }
    PgWireError::UserError(info)
}

/// Marks a position still to be found (see [`mark`]); never reaches a client.
const MARK: &str = "\0near:";

/// Marks an error PostgreSQL gives no position, though its words would be found (a relation
/// named in a foreign key); never reaches a client.
pub const NOWHERE: &str = "\0nowhere";

/// The position of an error at `text` in the statement, for [`at`] to find.
pub fn mark(text: &str) -> String {
    format!("{MARK}{text}")
}

/// The 1-based character position of the first `needle` in `sql`, without regard to ASCII
/// case.
fn find_text(sql: &str, needle: &str) -> Option<usize> {
    let byte = sql
        .to_ascii_lowercase()
        .find(&needle.to_ascii_lowercase())?;
    Some(sql[..byte].chars().count() + 1)
}

/// The name between `prefix` and the next `"` of `message`.
fn quoted_name<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    Some(&rest[..rest.find('"')?])
}

/// The 1-based character position of the first place `sql` names `name` outside string
/// literals: `"name"` quoted, or unquoted in any case when `name` is folded (lower case).
/// For `t.x`, the position of `t`.
fn find_name(sql: &str, name: &str) -> Option<usize> {
    let folded = name == name.to_lowercase();
    let quoted = format!("\"{name}\"");
    let chars: Vec<(usize, char)> = sql.char_indices().collect();
    let mut in_string = false;
    for (index, &(byte, c)) in chars.iter().enumerate() {
        if c == '\'' {
            in_string = !in_string;
            continue;
        }
        if in_string {
            continue;
        }
        let rest = &sql[byte..];
        let before_ok = index == 0 || !is_ident_char(chars[index - 1].1);
        if rest.starts_with(&quoted) {
            return Some(index + 1);
        }
        if folded && before_ok && starts_with_word(rest, name) {
            return Some(index + 1);
        }
    }
    None
}

fn starts_with_word(text: &str, word: &str) -> bool {
    text.len() >= word.len()
        && text.is_char_boundary(word.len())
        && text[..word.len()].eq_ignore_ascii_case(word)
        && !text[word.len()..].starts_with(is_ident_char)
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_as_words_outside_strings() {
        assert_eq!(find_name("SELECT * FROM nope", "nope"), Some(15));
        assert_eq!(
            find_name("select 'nope' from nopes, NOPE", "nope"),
            Some(27)
        );
        assert_eq!(find_name("select * from \"Nope\"", "Nope"), Some(15));
        assert_eq!(find_name("select * from Nope", "Nope"), None);
        assert_eq!(find_name("select é, x from t", "x"), Some(11));
    }

    #[test]
    fn a_literal_is_found_as_written() {
        let e = crate::errors::user_error("22P02", "invalid input syntax");
        let PgWireError::UserError(mut info) = e else {
            unreachable!()
        };
        info.position = Some(mark("'it''s'"));
        let found = at(PgWireError::UserError(info), "SELECT 'x', 'it''s'::vector");
        let PgWireError::UserError(info) = found else {
            unreachable!()
        };
        assert_eq!(info.position.as_deref(), Some("13"));
    }
}
