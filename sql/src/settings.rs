//! `SET` as PostgreSQL clients send it. DataFusion keeps the settings it knows (`hnsw.*`,
//! `vecraft.*`, `datafusion.*`); PostgreSQL's own session settings that drivers and tools set
//! (`application_name`, `extra_float_digits`, …) are accepted and have no effect here; and
//! booleans may be written `on`/`off` as in PostgreSQL.

use datafusion::sql::sqlparser::ast::{Expr, Ident, Set, Statement, Value};

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
