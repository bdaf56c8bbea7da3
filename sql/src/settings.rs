//! `SET` as PostgreSQL clients send it. DataFusion keeps the settings it knows (`hnsw.*`,
//! `vecraft.*`, `datafusion.*`); PostgreSQL's own session settings that drivers and tools set
//! (`application_name`, `extra_float_digits`, …) are accepted and have no effect here; and
//! booleans may be written `on`/`off` as in PostgreSQL. `SHOW name` answers as PostgreSQL
//! does: one column named after the setting.

use datafusion::common::config::{ConfigExtension, ExtensionOptions};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr, Ident, Set, Statement, Value};
use pgwire::error::PgWireResult;
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
];

pub enum SetAction {
    /// Answer `SET` and change nothing.
    Ignore,
    /// Let DataFusion apply it (booleans already spelled `true`/`false`).
    Apply,
}

/// What to do with a `SET`; rewrites `on`/`off` values in place.
pub fn prepare_set(statement: &mut Statement) -> SetAction {
    let Statement::Set(set) = statement else {
        return SetAction::Apply;
    };
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = variable.to_string().to_lowercase();
            if IGNORED.contains(&name.as_str()) {
                return SetAction::Ignore;
            }
            for value in values {
                spell_boolean(value);
            }
            SetAction::Apply
        }
        Set::SetTimeZone { .. } | Set::SetNames { .. } | Set::SetNamesDefault {} => {
            SetAction::Ignore
        }
        _ => SetAction::Apply,
    }
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
    ("search_path", "\"$user\", public"),
    ("max_identifier_length", "63"),
    ("extra_float_digits", "1"),
    ("application_name", ""),
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
    if let Some((_, v)) = POSTGRES_SHOWN.iter().find(|(n, _)| *n == name) {
        return Ok(v.to_string());
    }
    let state = ctx.state();
    let options = state.config().options();
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
