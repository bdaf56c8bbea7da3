//! `search_path`: the schemas an unqualified table name is looked up in, in order, as
//! PostgreSQL follows it. `SET search_path TO app, public` keeps the list in the session's
//! settings (`vecraft.search_path`, so `SHOW`, `current_setting` and `current_schema()` read
//! it); before a statement is planned, each unqualified table name it reads or writes is
//! qualified with the first schema on the path that has such a table, and a table it creates
//! goes to the first schema on the path that exists. Schemas that do not exist (`"$user"`)
//! are skipped, as PostgreSQL skips them. With the default path nothing changes: unqualified
//! names are `public`'s.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CopySource, CreateTable, Expr, Ident, ObjectName, ObjectNamePart, ObjectType,
    Query, Set, Statement, TableConstraint, Value, Visit, Visitor, visit_relations_mut,
};
use pgwire::error::PgWireResult;
use vecraft_planner::knn::VecraftOptions;
use vecraft_storage::names::qualified;

use crate::errors::{to_pg, user_error};
use crate::idents::{PUBLIC, quote_ident};
use crate::session::Session;

/// The setting that holds the path.
pub const SETTING: &str = "vecraft.search_path";

/// PostgreSQL's default path.
pub const DEFAULT: &str = "\"$user\", public";

/// The schema names of a path as `SHOW` prints it (`app, "My Schema", public`).
pub fn schemas_of(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut current, mut quoted) = (String::new(), false);
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            c if !quoted && c.is_whitespace() => {}
            c if !quoted => current.push(c.to_ascii_lowercase()),
            c => current.push(c),
        }
    }
    out.push(current);
    out.retain(|s| !s.is_empty());
    out
}

/// The value `SET search_path TO …` gives, as `SHOW` prints it; `None` for `DEFAULT`.
fn path_text(values: &[Expr]) -> PgWireResult<Option<String>> {
    let mut names = Vec::with_capacity(values.len());
    for value in values {
        let name = match value {
            Expr::Identifier(Ident {
                value,
                quote_style: None,
                ..
            }) if value.eq_ignore_ascii_case("default") && values.len() == 1 => return Ok(None),
            Expr::Identifier(id) => crate::idents::ident(id),
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => s.clone(),
                _ => return Err(invalid(value)),
            },
            _ => return Err(invalid(value)),
        };
        names.push(quote_ident(&name));
    }
    Ok(Some(names.join(", ")))
}

fn invalid(value: &Expr) -> pgwire::error::PgWireError {
    user_error(
        "22023",
        format!("invalid value for parameter \"search_path\": \"{value}\""),
    )
}

impl Session {
    /// `SET search_path …`: keeps the path; `false` for another setting.
    pub(crate) fn set_search_path(&self, set: &Set) -> PgWireResult<bool> {
        let Set::SingleAssignment {
            variable, values, ..
        } = set
        else {
            return Ok(false);
        };
        if !variable.to_string().eq_ignore_ascii_case("search_path") {
            return Ok(false);
        }
        let path = path_text(values)?.unwrap_or_else(|| DEFAULT.to_string());
        self.keep_search_path(&path)?;
        Ok(true)
    }

    /// The search path a client asks for at startup: a `search_path` parameter (JDBC's
    /// `currentSchema`) or `-c search_path=…` in `options` (libpq's `options`).
    pub fn startup_search_path(&self, parameters: &BTreeMap<String, String>) -> PgWireResult<()> {
        let from_options = parameters.get("options").and_then(|options| {
            let mut words = options.split_whitespace();
            let mut found = None;
            while let Some(word) = words.next() {
                let setting = match word {
                    "-c" => words.next(),
                    w => w.strip_prefix("-c").or_else(|| w.strip_prefix("--")),
                };
                if let Some(path) = setting.and_then(|s| s.strip_prefix("search_path=")) {
                    found = Some(path.replace("\\,", ","));
                }
            }
            found
        });
        match parameters.get("search_path").cloned().or(from_options) {
            Some(path) => self.keep_search_path(&path), // shown as the client gave it
            None => Ok(()),
        }
    }

    /// Keeps `path` (as `SHOW` prints it) as the session's search path.
    fn keep_search_path(&self, path: &str) -> PgWireResult<()> {
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let set = state.config_mut().options_mut().set(SETTING, path);
        set.map_err(|e| to_pg(&e))?;
        drop(state);
        // Kept plans named the tables the old path found.
        self.prepared.lock().clear();
        Ok(())
    }

    /// The schemas on this session's path that exist, in order.
    fn searched_schemas(&self) -> Vec<String> {
        let state = self.ctx.state();
        let path = state
            .config()
            .options()
            .extensions
            .get::<VecraftOptions>()
            .map_or_else(|| DEFAULT.to_string(), |o| o.search_path.clone());
        schemas_of(&path)
            .into_iter()
            .filter(|s| s == PUBLIC || self.catalog.has_schema(s))
            .collect()
    }

    /// Qualifies `statement`'s unqualified table names by the search path (see the module).
    pub(crate) fn follow_search_path(&self, statement: &mut DFStatement) {
        let DFStatement::Statement(statement) = statement else {
            return;
        };
        let schemas = self.searched_schemas();
        if schemas.first().is_none_or(|s| s == PUBLIC) && schemas.len() <= 1 {
            return; // public alone: unqualified names already mean it
        }
        let ctes = cte_names(statement);
        let find = |name: &str| {
            schemas
                .iter()
                .find(|s| self.catalog.get(&qualified(s, name)).is_some())
                .cloned()
        };
        if let Statement::CreateTable(create) = statement.as_mut()
            && let Some(first) = schemas.first()
        {
            let created = unqualified(&create.name);
            qualify(&mut create.name, |_| Some(first.clone()));
            // The tables its foreign keys reference (itself among them, not made yet).
            let find_or_own = |name: &str| match find(name) {
                None if Some(name) == created.as_deref() => Some(first.clone()),
                found => found,
            };
            for table in referenced_tables(create) {
                qualify(table, find_or_own);
            }
        }
        match statement.as_mut() {
            Statement::Drop {
                object_type: ObjectType::Table,
                names,
                ..
            } => names.iter_mut().for_each(|name| qualify(name, find)),
            Statement::Copy {
                source: CopySource::Table { table_name, .. },
                ..
            } => qualify(table_name, find),
            _ => {}
        }
        let _ = visit_relations_mut(statement.as_mut(), |name: &mut ObjectName| {
            let is_cte = matches!(name.0.as_slice(), [ObjectNamePart::Identifier(id)]
                if ctes.contains(&crate::idents::ident(id)));
            if !is_cte {
                qualify(name, find);
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

/// `name` as `schema.name` when it is unqualified, not a catalog table, and `schema_of`
/// finds a schema other than `public` for it.
fn qualify(name: &mut ObjectName, schema_of: impl Fn(&str) -> Option<String>) {
    let [ObjectNamePart::Identifier(id)] = name.0.as_slice() else {
        return;
    };
    let table = crate::idents::ident(id);
    if is_catalog_name(name) {
        return;
    }
    if let Some(schema) = schema_of(&table).filter(|s| s != PUBLIC) {
        *name = ObjectName::from(vec![Ident::with_quote('"', schema), id.clone()]);
    }
}

/// The table name of an unqualified `name`.
fn unqualified(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(id)] => Some(crate::idents::ident(id)),
        _ => None,
    }
}

/// The tables `create`'s foreign keys reference.
fn referenced_tables(create: &mut CreateTable) -> Vec<&mut ObjectName> {
    let columns = create.columns.iter_mut().flat_map(|c| c.options.iter_mut());
    let mut tables: Vec<&mut ObjectName> = columns
        .filter_map(|o| match &mut o.option {
            ColumnOption::ForeignKey(fk) => Some(&mut fk.foreign_table),
            _ => None,
        })
        .collect();
    tables.extend(create.constraints.iter_mut().filter_map(|c| match c {
        TableConstraint::ForeignKey(fk) => Some(&mut fk.foreign_table),
        _ => None,
    }));
    tables
}

fn is_catalog_name(name: &ObjectName) -> bool {
    matches!(name.0.as_slice(), [ObjectNamePart::Identifier(id)]
        if crate::pg_catalog::is_catalog_table(&id.value))
}

/// The names of the statement's own CTEs, at any depth, which are not tables (a table of
/// the same name as a CTE somewhere in the statement is left to the default schema).
pub(crate) fn cte_names(statement: &Statement) -> Vec<String> {
    struct Ctes(Vec<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            let names = query.with.iter().flat_map(|w| &w.cte_tables);
            self.0
                .extend(names.map(|c| crate::idents::ident(&c.alias.name)));
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(Vec::new());
    let _ = statement.visit(&mut ctes);
    ctes.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_as_show_prints_them() {
        assert_eq!(schemas_of(DEFAULT), ["$user", "public"]);
        assert_eq!(schemas_of("App, public"), ["app", "public"]);
        assert_eq!(schemas_of("\"My \"\"Schema\", x"), ["My \"Schema", "x"]);
    }
}
