//! Every error a client sees, mapped to its SQLSTATE in one place.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::error::{ErrorInfo, PgWireError};
use vecraft_planner::error::VectorError;
use vecraft_planner::parse::MAX_EXPRESSION_DEPTH;
use vecraft_storage::Error as StorageError;

/// A PostgreSQL ErrorResponse for `e`: pgvector's codes for vector errors, PostgreSQL's for
/// the rest; `XX000` only for what has no better class.
pub fn to_pg(e: &DataFusionError) -> PgWireError {
    let (code, message) = classify(e);
    let message = redact_paths(&message);
    let (message, detail) = option_bounds(message);
    let mut info = ErrorInfo::new("ERROR".to_owned(), code.to_owned(), message);
    info.detail = detail;
    if let Some(StorageError::Conflict(detail)) = find_storage(e) {
        info.detail = Some(detail.clone());
    }
    if let Some(v) = VectorError::find(e) {
        info.detail = v.detail.clone();
        // Where it is, once the statement's text is at hand (`positions::at`).
        info.position = v.near.as_deref().map(crate::positions::mark);
    }
    PgWireError::UserError(Box::new(info))
}

/// An index option out of its range, in PostgreSQL's words: the range goes to the DETAIL
/// (`value 1 out of bounds for option "m"`, `Valid values are between "2" and "100".`).
fn option_bounds(message: String) -> (String, Option<String>) {
    let split = message
        .split_once(" (valid range is ")
        .and_then(|(head, range)| {
            let (low, high) = range.strip_suffix(')')?.split_once(" to ")?;
            let detail = format!("Valid values are between \"{low}\" and \"{high}\".");
            Some((head.to_string(), Some(detail)))
        });
    split.unwrap_or((message, None))
}

/// An index option out of its range (22023), its range in the DETAIL as PostgreSQL gives it.
pub fn option_error(message: String) -> PgWireError {
    let (message, detail) = option_bounds(message);
    let mut info = ErrorInfo::new("ERROR".to_owned(), "22023".to_owned(), message);
    info.detail = detail;
    PgWireError::UserError(Box::new(info))
}

/// An error raised by the gateway itself.
pub fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

/// An error raised by the gateway itself, with PostgreSQL's DETAIL and HINT lines.
pub fn detailed_error(
    code: &str,
    message: impl Into<String>,
    detail: impl Into<String>,
    hint: Option<&str>,
) -> PgWireError {
    let mut info = ErrorInfo::new("ERROR".to_owned(), code.to_owned(), message.into());
    info.detail = Some(detail.into());
    info.hint = hint.map(str::to_string);
    PgWireError::UserError(Box::new(info))
}

/// The error for SQL that does not parse: 42601, or PostgreSQL's 54001 for a statement nested
/// too deeply to plan (it would overflow the stack; see `vecraft_planner::parse`).
pub fn parse_error(e: ParserError) -> PgWireError {
    match e {
        ParserError::RecursionLimitExceeded => {
            let mut info = ErrorInfo::new(
                "ERROR".to_owned(),
                "54001".to_owned(),
                "stack depth limit exceeded".to_owned(),
            );
            info.hint = Some(format!(
                "Expressions may nest at most {MAX_EXPRESSION_DEPTH} levels deep (each operator \
                 and bracket is a level), brackets at most 50, function calls in function calls \
                 about 20; split the statement.",
            ));
            PgWireError::UserError(Box::new(info))
        }
        other => user_error("42601", other.to_string()),
    }
}

/// The SQLSTATE of a storage error.
fn storage_code(e: &StorageError) -> &'static str {
    match e {
        StorageError::DuplicateKey(_) => "23505",
        StorageError::DimensionMismatch { .. } | StorageError::InvalidVector(_) => "22000",
        StorageError::UnknownColumn(_) => "42703",
        StorageError::InvalidArgument(_) => "22023",
        StorageError::Io { .. } => "58030",
        StorageError::Corrupt { .. } => "XX001",
        // cannot_connect_now: the shard's group has no leader yet, or is shutting down.
        StorageError::Unavailable(_) | StorageError::Closed => "57P03",
        // undefined_table: the statement reached a collection another session dropped.
        StorageError::Dropped => "42P01",
        StorageError::Partial { source, .. } => storage_code(source),
        StorageError::Arrow(_) => "XX000",
        // serialization_failure: retry the transaction, as after PostgreSQL's.
        StorageError::Conflict(_) => "40001",
        // transaction_resolution_unknown: the client must look before it retries.
        StorageError::OutcomeUnknown(_) => "08007",
    }
}

fn classify(e: &DataFusionError) -> (&'static str, String) {
    if let Some(v) = VectorError::find(e) {
        return (v.sqlstate, v.message.clone());
    }
    if let Some(s) = find_storage(e) {
        return (storage_code(s), s.to_string());
    }
    if let DataFusionError::Context(m, _) = e
        && m.starts_with("Error parsing")
    {
        // A SET whose value does not parse as the setting's type.
        return ("22023", format!("invalid value for parameter: {m}"));
    }
    let root = e.find_root();
    let text = root.to_string();
    if let Some(known) = known_message(&text) {
        return known;
    }
    let code = match root {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::SchemaError(..) => "42703",
        DataFusionError::Plan(m) if m.contains("not found") && m.contains("table") => "42P01",
        DataFusionError::Plan(m)
            if m.contains("Invalid function")
                || m.contains("function") && m.contains("not found") =>
        {
            "42883"
        }
        DataFusionError::Plan(_) => "42601",
        DataFusionError::ArrowError(..) => "22000",
        // A memory pool refused: the query's or the node's share is spent.
        DataFusionError::ResourcesExhausted(_) => {
            return ("53200", format!("out of memory: {}", strip_prefixes(&text)));
        }
        // A SET of a setting nobody knows, or of a value the setting does not take.
        DataFusionError::Configuration(m) if m.contains("not found") || m.contains("find") => {
            "42704"
        }
        DataFusionError::Configuration(_) => "22023",
        _ => "XX000",
    };
    (code, strip_prefixes(&text))
}

/// Errors DataFusion and Arrow raise without a class of their own, recognised by their words,
/// with PostgreSQL's code and message.
fn known_message(text: &str) -> Option<(&'static str, String)> {
    if let Some(missing) = missing_relation(text).or_else(|| missing_column(text)) {
        return Some(missing);
    }
    if text.contains("has null but schema specifies non-nullable") {
        let message = "null value in column violates not-null constraint";
        return Some(("23502", message.into()));
    }
    if text.contains("Scalar subquery returned more than one row") {
        let message = "more than one row returned by a subquery used as an expression";
        return Some(("21000", message.into()));
    }
    if let Some(at) = text.find("regex parse error") {
        let detail = text[at..].lines().last().unwrap_or("").trim();
        return Some(("2201B", format!("invalid regular expression: {detail}")));
    }
    if text.contains("Divide by zero") {
        return Some(("22012", "division by zero".into()));
    }
    // The planner's own words, kept by DataFusion only as text inside its coercion error
    // (`vector_aggregates.rs`).
    if let Some((_, rest)) = text.split_once("External error: function ")
        && let Some((call, _)) = rest.split_once(" does not exist")
    {
        return Some(("42883", format!("function {call} does not exist")));
    }
    // Arrow's "Cannot cast string 'x' to value of Int64 type".
    let (_, rest) = text.split_once("Cannot cast string '")?;
    let (value, rest) = rest.rsplit_once("' to value of ")?;
    let pg_type = match rest.trim_end_matches(" type") {
        "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "Float32" => "real",
        "Float64" => "double precision",
        "Boolean" => "boolean",
        _ => return None,
    };
    let message = format!("invalid input syntax for type {pg_type}: \"{value}\"");
    Some(("22P02", message))
}

/// DataFusion's "table 'datafusion.public.nope' not found": PostgreSQL's 42P01, which names
/// the relation as the statement did.
fn missing_relation(text: &str) -> Option<(&'static str, String)> {
    let (_, rest) = text.split_once("table '")?;
    let (name, _) = rest.split_once("' not found")?;
    let name = name.strip_prefix("datafusion.").unwrap_or(name);
    let name = name.strip_prefix("public.").unwrap_or(name);
    Some(("42P01", format!("relation \"{name}\" does not exist")))
}

/// DataFusion's "No field named x. Valid fields are …": PostgreSQL's 42703 (`column "x"`, or
/// `column t.x` when the statement qualified it).
fn missing_column(text: &str) -> Option<(&'static str, String)> {
    let (_, rest) = text.split_once("No field named ")?;
    let end = [". Valid fields", ". Did you mean", "\n"]
        .iter()
        .filter_map(|stop| rest.find(stop))
        .min()
        .unwrap_or(rest.len());
    let name = rest[..end].trim_end_matches('.');
    let message = match name.rsplit_once('.') {
        Some((qualifier, column)) => {
            // PostgreSQL names the column with the relation it was looked for in.
            let table = qualifier.rsplit_once('.').map_or(qualifier, |(_, t)| t);
            format!(
                "column {}.{} does not exist",
                unquote(table),
                unquote(column)
            )
        }
        None => format!("column \"{}\" does not exist", unquote(name)),
    };
    Some(("42703", message))
}

/// DataFusion quotes names that need it (`"Items"`); PostgreSQL's messages add their own.
fn unquote(name: &str) -> &str {
    name.strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(name)
}

fn find_storage(e: &DataFusionError) -> Option<&StorageError> {
    match e {
        DataFusionError::External(inner) => inner.downcast_ref::<StorageError>(),
        DataFusionError::Context(_, inner) => find_storage(inner),
        DataFusionError::Shared(inner) => find_storage(inner),
        _ => None,
    }
}

/// `text` with every absolute path cut to its last two parts (`…/seg-3/meta.json`): a client
/// learns which file, not where the server keeps its data.
pub fn redact_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('/') {
        let boundary = rest[..start]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '(' | '='));
        let end = rest[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | ',' | ';'))
            .map_or(rest.len(), |n| start + n);
        let token = rest[start..end].trim_end_matches([':', '.']);
        let end = start + token.len();
        if boundary && token.matches('/').count() >= 3 {
            let parts: Vec<&str> = token.rsplitn(3, '/').collect();
            out.push_str(&rest[..start]);
            out.push_str("…/");
            out.push_str(parts[1]);
            out.push('/');
            out.push_str(parts[0]);
        } else {
            out.push_str(&rest[..end.max(start + 1)]);
        }
        rest = &rest[end.max(start + 1)..];
    }
    out.push_str(rest);
    out
}

/// DataFusion prefixes messages with its error kind ("Error during planning: …").
fn strip_prefixes(text: &str) -> String {
    let mut t = text;
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "SQL error: ",
        "This feature is not implemented: ",
        "Invalid or Unsupported Configuration: ",
        "Execution error: ",
        "External error: ",
        "Resources exhausted: ",
    ] {
        if let Some(rest) = t.strip_prefix(prefix) {
            t = rest;
        }
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unclassed_errors_get_postgres_codes() {
        let code = |text: &str| known_message(text);
        assert_eq!(
            code("Cast error: Cannot cast string 'x' to value of Int64 type"),
            Some((
                "22P02",
                "invalid input syntax for type bigint: \"x\"".into()
            ))
        );
        assert_eq!(
            code("Arrow error: Divide by zero error").unwrap().0,
            "22012"
        );
        assert_eq!(
            code("Scalar subquery returned more than one row")
                .unwrap()
                .0,
            "21000"
        );
        assert_eq!(
            code("regex parse error:\n    (\n    ^\nerror: unclosed group"),
            Some((
                "2201B",
                "invalid regular expression: error: unclosed group".into()
            ))
        );
        assert_eq!(
            code("Error during planning: table 'datafusion.public.nope' not found"),
            Some(("42P01", "relation \"nope\" does not exist".into()))
        );
        assert_eq!(
            code("Schema error: No field named nope. Valid fields are t.id, t.embedding."),
            Some(("42703", "column \"nope\" does not exist".into()))
        );
        assert_eq!(
            code("Schema error: No field named t.\"Nope\". Valid fields are t.id."),
            Some(("42703", "column t.Nope does not exist".into()))
        );
        assert_eq!(
            code(
                "Schema error: No field named pg_catalog.pg_type.typx. Did you mean 'pg_catalog.pg_type.typlen'?.\nValid fields are a."
            ),
            Some(("42703", "column pg_type.typx does not exist".into()))
        );
        assert_eq!(code("something else"), None);
    }

    #[test]
    fn paths_are_cut_to_their_last_parts() {
        assert_eq!(
            redact_paths("open /srv/vecraft/items/shard/seg-1/meta.json: No such file"),
            "open …/seg-1/meta.json: No such file"
        );
        assert_eq!(
            redact_paths("lock \"/tmp/x/y/log/LOCK\" held"),
            "lock \"…/log/LOCK\" held"
        );
        assert_eq!(
            redact_paths("a / b and 1/2 and /x/y"),
            "a / b and 1/2 and /x/y"
        );
        assert_eq!(redact_paths("no paths"), "no paths");
    }
}
