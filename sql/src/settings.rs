//! `SET` as PostgreSQL clients send it. DataFusion keeps the settings it knows (`hnsw.*`,
//! `vecraft.*`, `datafusion.*`); PostgreSQL's own session settings that drivers and tools set
//! (`application_name`, `extra_float_digits`, …) are accepted and have no effect here; and
//! booleans may be written `on`/`off` as in PostgreSQL. `SHOW name` answers as PostgreSQL
//! does: one column named after the setting.

use datafusion::common::config::{ConfigExtension, ConfigOptions, ExtensionOptions};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{ContextModifier, Expr, Ident, Set, Statement, Value};
use pgwire::error::{PgWireError, PgWireResult};
use vecraft_planner::knn::{HnswOptions, VecraftOptions};

use crate::errors::user_error;

/// PostgreSQL settings accepted and ignored: they change nothing Vecraft does.
const IGNORED: &[&str] = &[
    "application_name",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "extra_float_digits",
    "idle_in_transaction_session_timeout",
    "intervalstyle",
    "lock_timeout",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "timezone",
    "transaction_isolation",
    "default_transaction_isolation",
    "bytea_output",
    "jit",
    "maintenance_work_mem",
    "max_parallel_workers_per_gather",
    "max_parallel_maintenance_workers",
    "work_mem",
    "synchronous_commit",
    // The planner's switches and costs (pgvector's docs use `enable_seqscan = off` to force
    // an index): Vecraft's planner chooses an index search by the query's shape.
    "enable_seqscan",
    "enable_indexscan",
    "enable_indexonlyscan",
    "enable_bitmapscan",
    "enable_hashjoin",
    "enable_mergejoin",
    "enable_nestloop",
    "enable_sort",
    "random_page_cost",
    "seq_page_cost",
    "effective_cache_size",
    // ivfflat indexes are HNSW indexes here: probes have nothing to tune.
    "ivfflat.probes",
    "ivfflat.iterative_scan",
    "ivfflat.max_probes",
];

/// PostgreSQL's limit on a statement's time, kept by the session (see `Session`).
pub const STATEMENT_TIMEOUT: &str = "statement_timeout";
/// PostgreSQL's limit on the time a session may sit idle inside a block: the connection ends
/// with 25P03 (`socket.rs`), and the block with it.
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "idle_in_transaction_session_timeout";
/// The settings in milliseconds the session keeps itself.
pub const TIMEOUTS: [&str; 2] = [STATEMENT_TIMEOUT, IDLE_IN_TRANSACTION_TIMEOUT];

/// The setting (one of [`TIMEOUTS`]) and milliseconds a `SET` sets (`None` for another
/// setting): a number of milliseconds, or a string with a unit (`'100ms'`, `'5s'`, `'1min'`),
/// or `DEFAULT` (`None`: the session's default); 22023 for anything else, as PostgreSQL
/// answers.
pub fn timeout_of(set: &Set) -> PgWireResult<Option<(&'static str, Option<u64>)>> {
    let (name, value) = match set {
        Set::SingleAssignment {
            variable, values, ..
        } => (variable.to_string().to_lowercase(), values.first()),
        _ => return Ok(None),
    };
    let Some(name) = TIMEOUTS.into_iter().find(|t| *t == name) else {
        return Ok(None);
    };
    let text = match value {
        Some(Expr::Value(v)) => match &v.value {
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Some(Expr::Identifier(i)) if i.value.eq_ignore_ascii_case("default") => {
            return Ok(Some((name, None)));
        }
        Some(other) => other.to_string(),
        None => return Ok(Some((name, None))),
    };
    match parse_duration_ms(&text) {
        Some(ms) => Ok(Some((name, Some(ms)))),
        None => Err(user_error(
            "22023",
            format!("invalid value for parameter \"{name}\": \"{text}\""),
        )),
    }
}

/// A duration as PostgreSQL reads a time setting whose unit is milliseconds.
fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = (number * scale).round();
    (ms.is_finite() && (0.0..=i32::MAX as f64).contains(&ms)).then_some(ms as u64)
}

/// A duration in milliseconds as PostgreSQL's `SHOW` prints it (`0`, `100ms`, `5s`, `2min`).
pub fn format_duration_ms(ms: u64) -> String {
    match ms {
        0 => "0".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}min", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

pub enum SetAction {
    /// The gateway answers it: settings with no effect here, and the ones the session keeps
    /// itself (`statement_timeout`).
    Ignore,
    /// Let DataFusion apply it (booleans already spelled `true`/`false`).
    Apply,
}

/// What to do with a `SET`; rewrites `on`/`off` values in place. A value outside pgvector's
/// range for its setting is refused as PostgreSQL refuses it (22023).
pub fn prepare_set(statement: &mut Statement) -> PgWireResult<SetAction> {
    let Statement::Set(set) = statement else {
        return Ok(SetAction::Apply);
    };
    Ok(match set {
        Set::SingleAssignment {
            variable,
            values,
            scope,
            ..
        } => {
            // `SET SESSION x` is `SET x`.
            if *scope == Some(ContextModifier::Session) {
                *scope = None;
            }
            let name = variable.to_string().to_lowercase();
            if name.ends_with("transaction_isolation")
                && let Some(value) = values.first()
            {
                crate::transactions::check_level_name(&value_text(value))?;
            }
            if IGNORED.contains(&name.as_str()) {
                return Ok(SetAction::Ignore);
            }
            if let Some(value) = values.first() {
                check_value(&name, &value_text(value))?;
            }
            for value in values {
                spell_boolean(value);
            }
            SetAction::Apply
        }
        // `SET TRANSACTION ISOLATION LEVEL …` (JDBC, SQLAlchemy): read committed is what each
        // statement sees; stronger levels are refused.
        Set::SetTransaction { modes, .. } => {
            crate::transactions::check_modes(modes)?;
            SetAction::Ignore
        }
        Set::SetTimeZone { .. } | Set::SetNames { .. } | Set::SetNamesDefault {} => {
            SetAction::Ignore
        }
        _ => SetAction::Apply,
    })
}

/// A SET value as written: `40`, `'40'` and `on` all give their text.
fn value_text(value: &Expr) -> String {
    match value {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        Expr::UnaryOp { op, expr } => format!("{op}{}", value_text(expr)),
        other => other.to_string(),
    }
}

/// pgvector's settings with a range, as its GUCs declare them.
const RANGES: &[(&str, f64, f64)] = &[
    ("hnsw.ef_search", 1.0, 1000.0),
    ("hnsw.max_scan_tuples", 1.0, 2_147_483_647.0),
    ("hnsw.scan_mem_multiplier", 1.0, 1000.0),
];

/// The values `hnsw.iterative_scan` takes.
const ITERATIVE_SCANS: &[&str] = &["off", "relaxed_order", "strict_order"];

/// PostgreSQL's checks of a setting's value, with its words.
fn check_value(name: &str, value: &str) -> PgWireResult<()> {
    let invalid = || {
        user_error(
            "22023",
            format!("invalid value for parameter \"{name}\": \"{value}\""),
        )
    };
    if name == "hnsw.iterative_scan" {
        if ITERATIVE_SCANS.contains(&value.to_lowercase().as_str()) {
            return Ok(());
        }
        let PgWireError::UserError(mut info) = invalid() else {
            unreachable!("user_error makes a user error")
        };
        info.hint = Some(format!("Available values: {}.", ITERATIVE_SCANS.join(", ")));
        return Err(PgWireError::UserError(info));
    }
    let Some((_, low, high)) = RANGES.iter().find(|(n, _, _)| *n == name) else {
        return Ok(());
    };
    let number: f64 = value.trim().parse().map_err(|_| invalid())?;
    if number < *low || number > *high {
        return Err(user_error(
            "22023",
            format!(
                "{value} is outside the valid range for parameter \"{name}\" ({low} .. {high})"
            ),
        ));
    }
    Ok(())
}

/// The default value of a setting DataFusion keeps (`hnsw.*`, `vecraft.*`, `datafusion.*`),
/// as text `SET` takes; `None` for names it does not know.
pub fn default_value(name: &str) -> Option<String> {
    let extension = |prefix: &str, entries: Vec<datafusion::common::config::ConfigEntry>| {
        let key = name.strip_prefix(prefix)?.strip_prefix('.')?;
        entries
            .into_iter()
            .find(|e| e.key.trim_start_matches('.') == key)
            .and_then(|e| e.value)
    };
    extension(HnswOptions::PREFIX, HnswOptions::default().entries())
        .or_else(|| extension(VecraftOptions::PREFIX, VecraftOptions::default().entries()))
        .or_else(|| {
            let options = datafusion::common::config::ConfigOptions::default();
            options
                .entries()
                .into_iter()
                .find(|e| e.key == name)
                .and_then(|e| e.value)
        })
}

/// Whether `RESET name` has nothing to undo: a PostgreSQL setting Vecraft accepts and ignores.
pub fn is_ignored(name: &str) -> bool {
    IGNORED.contains(&name)
}

fn spell_boolean(value: &mut Expr) {
    let word = match value {
        Expr::Identifier(Ident { value, .. }) => value.to_lowercase(),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.to_lowercase(),
            _ => return,
        },
        _ => return,
    };
    let spelled = match word.as_str() {
        "on" | "yes" => "true",
        "off" | "no" => "false",
        _ => return,
    };
    *value = Expr::Value(Value::SingleQuotedString(spelled.to_string()).into());
}

/// What PostgreSQL's `SHOW` answers for the settings clients ask about.
const POSTGRES_SHOWN: &[(&str, &str)] = &[
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
    ("datestyle", "ISO, MDY"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_isolation", "read committed"),
    ("integer_datetimes", "on"),
    ("max_identifier_length", "63"),
    ("extra_float_digits", "1"),
    ("application_name", ""),
    ("jit", "off"),
];

/// The name `SHOW` reports for `variable` (lowercase, dotted).
pub fn show_name(variable: &[Ident]) -> String {
    let parts: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
    match parts.join(" ").as_str() {
        "transaction isolation level" => "transaction_isolation".into(),
        _ => parts.join("."),
    }
}

/// The value of a setting, as `SHOW` prints it; 42704 for names nobody knows.
pub fn show_value(ctx: &SessionContext, name: &str) -> PgWireResult<String> {
    show_value_in(ctx.state().config().options(), name)
}

/// The value of a setting in `options`, as `SHOW` prints it; 42704 for names nobody knows.
pub fn show_value_in(options: &ConfigOptions, name: &str) -> PgWireResult<String> {
    if let Some((_, v)) = POSTGRES_SHOWN.iter().find(|(n, _)| *n == name) {
        return Ok(v.to_string());
    }
    let name = match name {
        "search_path" => crate::search_path::SETTING,
        other => other,
    };
    // DataFusion lists an extension's settings without its prefix; put it back.
    let mut entries = options.entries();
    let prefixed = |prefix: &'static str, list: Vec<datafusion::common::config::ConfigEntry>| {
        list.into_iter().map(move |mut e| {
            e.key = format!("{prefix}.{}", e.key.trim_start_matches('.'));
            e
        })
    };
    if let Some(o) = options.extensions.get::<HnswOptions>() {
        entries.extend(prefixed(HnswOptions::PREFIX, o.entries()));
    }
    if let Some(o) = options.extensions.get::<VecraftOptions>() {
        entries.extend(prefixed(VecraftOptions::PREFIX, o.entries()));
    }
    match entries.into_iter().find(|e| e.key == name) {
        Some(entry) => Ok(match entry.value.as_deref() {
            Some("true") => "on".to_string(),
            Some("false") => "off".to_string(),
            Some(v) => v.to_string(),
            None => String::new(),
        }),
        None => Err(user_error(
            "42704",
            format!("unrecognized configuration parameter \"{name}\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_as_postgres_does() {
        assert_eq!(parse_duration_ms("100"), Some(100));
        assert_eq!(parse_duration_ms("100ms"), Some(100));
        assert_eq!(parse_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_duration_ms("2min"), Some(120_000));
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("soon"), None);
        assert_eq!(parse_duration_ms("-1"), None);
        assert_eq!(parse_duration_ms("5 parsecs"), None);
        assert_eq!(format_duration_ms(100), "100ms");
        assert_eq!(format_duration_ms(5000), "5s");
        assert_eq!(format_duration_ms(120_000), "2min");
        assert_eq!(format_duration_ms(0), "0");
    }
}
