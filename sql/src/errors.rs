//! Every error a client sees, mapped to its SQLSTATE in one place.

use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};
use vecraft_planner::error::VectorError;
use vecraft_storage::Error as StorageError;

/// A PostgreSQL ErrorResponse for `e`: pgvector's codes for vector errors, PostgreSQL's for
/// the rest; `XX000` only for what has no better class.
pub fn to_pg(e: &DataFusionError) -> PgWireError {
    let (code, message) = classify(e);
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// An error raised by the gateway itself.
pub fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
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
        StorageError::Partial { source, .. } => storage_code(source),
        StorageError::Arrow(_) => "XX000",
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
        // A SET of a setting nobody knows, or of a value the setting does not take.
        DataFusionError::Configuration(m) if m.contains("not found") || m.contains("find") => {
            "42704"
        }
        DataFusionError::Configuration(_) => "22023",
        _ => "XX000",
    };
    (code, strip_prefixes(&text))
}

fn find_storage(e: &DataFusionError) -> Option<&StorageError> {
    match e {
        DataFusionError::External(inner) => inner.downcast_ref::<StorageError>(),
        DataFusionError::Context(_, inner) => find_storage(inner),
        DataFusionError::Shared(inner) => find_storage(inner),
        _ => None,
    }
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
    ] {
        if let Some(rest) = t.strip_prefix(prefix) {
            t = rest;
        }
    }
    t.to_string()
}
