//! Privileges as PostgreSQL checks them (`vecraft_cluster::meta::privileges` keeps them):
//! `GRANT/REVOKE {SELECT | INSERT | UPDATE | DELETE | TRUNCATE | ALL} ON [TABLE] t, … | ALL
//! TABLES IN SCHEMA s TO role | PUBLIC`, `GRANT {CREATE | USAGE | ALL} ON SCHEMA s`; a
//! collection belongs to the role that made it, which alone (with superusers) may drop, alter
//! or index it and grant on it.
//!
//! Each statement's needs are read off its syntax tree before it runs, at every execution (a
//! prepared statement meets a REVOKE made after it was prepared): SELECT on every collection
//! it reads, INSERT/UPDATE/DELETE/TRUNCATE on the one it writes (with SELECT where it reads
//! that one too: a WHERE, a RETURNING), ownership for DDL. Superusers are not checked.
//! Refusals are PostgreSQL's 42501 "permission denied for table t" and "must be owner of
//! table t".

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Action, CopySource, FromTable, GrantObjects, Grantee, GranteeName, GranteesType, ObjectName,
    ObjectType, OnConflictAction, OnInsert, Privileges as Granted, Statement, TableFactor,
    TableObject, visit_relations,
};
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use vecraft_cluster::meta::privileges::{self, PUBLIC, PrivilegeOp, Privileges, schema_object};
use vecraft_storage::names::{split_qualified, storage_key};

use crate::errors::{to_pg, user_error};
use crate::session::Session;

/// What a statement needs of the session's role.
#[derive(Debug, Default, PartialEq)]
struct Needs {
    /// Privileges on collections, by their catalog names.
    on_tables: Vec<(String, Privileges)>,
    /// Collections it must own (DDL).
    owns: Vec<String>,
    /// A schema it makes a collection in (`CREATE` on it).
    creates_in: Option<String>,
    /// Only a superuser may (CREATE SCHEMA, CHECKPOINT, backups, meta members).
    superuser: Option<String>,
}

impl Session {
    /// 42501 unless the session's role may run `statement` (names already resolved along
    /// the search path).
    pub(crate) fn check_privileges(&self, statement: &Statement) -> PgWireResult<()> {
        if self.is_superuser() {
            return Ok(());
        }
        let needs = needs_of(statement, &crate::search_path::cte_names(statement))?;
        match self.refusal(&needs) {
            // A GRANT another gateway of the cluster made a moment ago: look again.
            Some(_) if self.catalog.refresh() => self.refusal(&needs).map_or(Ok(()), Err),
            refused => refused.map_or(Ok(()), Err),
        }
    }

    /// Why the session's role may not do what `needs` says, if it may not.
    fn refusal(&self, needs: &Needs) -> Option<PgWireError> {
        let user = self.user().name;
        let acls = self.catalog.privileges();
        if let Some(what) = &needs.superuser {
            return Some(denied(what));
        }
        for table in &needs.owns {
            if self.catalog.get(table).is_some() && !privileges::owns(&acls, &acl_key(table), &user)
            {
                return Some(denied(&format!("must be owner of table {}", shown(table))));
            }
        }
        for (table, wanted) in &needs.on_tables {
            if self.catalog.get(table).is_some()
                && !privileges::allowed(&acls, &acl_key(table), &user, *wanted)
            {
                let message = format!("permission denied for table {}", shown(table));
                return Some(denied(&message));
            }
        }
        if let Some(schema) = &needs.creates_in {
            let object = schema_object(&storage_key(schema).unwrap_or_default());
            if !privileges::allowed(&acls, &object, &user, Privileges::CREATE) {
                return Some(denied(&format!("permission denied for schema {schema}")));
            }
        }
        None
    }

    /// A collection the session just made belongs to its role (the bootstrap superuser's
    /// need no entry, nor do those of a name the embedded default let in).
    pub(crate) async fn record_owner(&self, table: &str) -> PgWireResult<()> {
        let user = self.user();
        if user.open || user.name == vecraft_cluster::meta::roles::BOOTSTRAP {
            return Ok(());
        }
        let op = PrivilegeOp::Own {
            object: acl_key(table),
            owner: user.name,
        };
        self.change_privileges(op).await.map(|_| ())
    }

    /// GRANT or REVOKE.
    pub(crate) async fn grant_or_revoke(&self, statement: &Statement) -> PgWireResult<Response> {
        let (granted, objects, grantees, grant) = match statement {
            Statement::Grant(g) if g.with_grant_option => {
                return Err(user_error("0A000", "WITH GRANT OPTION is not supported"));
            }
            Statement::Grant(g) => (&g.privileges, &g.objects, &g.grantees, true),
            Statement::Revoke(r) => (&r.privileges, &r.objects, &r.grantees, false),
            _ => return Err(user_error("XX000", "not a GRANT or REVOKE")),
        };
        let Some(objects) = objects else {
            return Err(user_error("0A000", "role membership is not supported"));
        };
        let (mut objects, on_schemas) = self.grant_objects(objects)?;
        let privileges = privileges_of(granted, on_schemas)?;
        let grantees = self.grantees(grantees)?;
        if !self.is_superuser() {
            objects = self.own_objects(objects, on_schemas)?;
        }
        let op = match grant {
            true => PrivilegeOp::Grant {
                objects,
                grantees,
                privileges,
            },
            false => PrivilegeOp::Revoke {
                objects,
                grantees,
                privileges,
            },
        };
        self.change_privileges(op).await?;
        Ok(Response::Execution(Tag::new(if grant {
            "GRANT"
        } else {
            "REVOKE"
        })))
    }

    /// Of `objects`, those the session's role may grant on: the ones it owns. As in
    /// PostgreSQL, one it holds some privilege on is passed over (nothing is granted on it;
    /// PostgreSQL warns), and one it holds nothing on is 42501.
    fn own_objects(&self, objects: Vec<String>, on_schemas: bool) -> PgWireResult<Vec<String>> {
        let (acls, user) = (self.catalog.privileges(), self.user().name);
        let mut owned = Vec::new();
        for object in objects {
            if privileges::owns(&acls, &object, &user) {
                owned.push(object);
                continue;
            }
            if privileges::granted(&acls, &object, &user).is_empty() {
                let kind = if on_schemas { "schema" } else { "table" };
                let name = object.strip_prefix("schema ").unwrap_or(&object);
                return Err(denied(&format!("permission denied for {kind} {name}")));
            }
        }
        Ok(owned)
    }

    /// The ACL keys a GRANT names, and whether they are schemas.
    fn grant_objects(&self, objects: &GrantObjects) -> PgWireResult<(Vec<String>, bool)> {
        let tables = |names: Vec<String>| -> PgWireResult<Vec<String>> {
            names.iter().map(|n| Ok(acl_key(n))).collect()
        };
        match objects {
            GrantObjects::Tables(names) => {
                let mut keys = Vec::new();
                for name in names {
                    let table = crate::idents::table_name(name)?;
                    if self.catalog.get(&table).is_none() {
                        let message = format!("relation \"{}\" does not exist", shown(&table));
                        return Err(user_error("42P01", message));
                    }
                    keys.push(table);
                }
                Ok((tables(keys)?, false))
            }
            GrantObjects::AllTablesInSchema { schemas } => {
                let schemas = self.schema_names(schemas)?;
                let inside = |t: &String| {
                    let schema = split_qualified(t).0.unwrap_or(crate::idents::PUBLIC);
                    schemas.iter().any(|s| s == schema)
                };
                let names = self.catalog.names().into_iter().filter(inside).collect();
                Ok((tables(names)?, false))
            }
            GrantObjects::Schemas(names) => {
                let schemas = self.schema_names(names)?;
                let keys = schemas
                    .iter()
                    .map(|s| schema_object(&storage_key(s).unwrap_or_default()))
                    .collect();
                Ok((keys, true))
            }
            other => Err(user_error(
                "0A000",
                format!("not supported: GRANT ON {other}"),
            )),
        }
    }

    /// Schema names that exist (3F000 for one that does not).
    fn schema_names(&self, names: &[ObjectName]) -> PgWireResult<Vec<String>> {
        names
            .iter()
            .map(|name| {
                let name = crate::schemas::schema_name(name)?;
                match self.catalog.has_schema(&name) {
                    true => Ok(name),
                    false => Err(user_error(
                        "3F000",
                        format!("schema \"{name}\" does not exist"),
                    )),
                }
            })
            .collect()
    }

    /// The roles a GRANT names (PUBLIC as [`PUBLIC`]); 42704 for one that does not exist.
    fn grantees(&self, grantees: &[Grantee]) -> PgWireResult<Vec<String>> {
        grantees
            .iter()
            .map(|grantee| {
                let name = match (&grantee.grantee_type, &grantee.name) {
                    (GranteesType::Public, _) => return Ok(PUBLIC.to_string()),
                    (_, Some(GranteeName::ObjectName(name))) => match name.0.as_slice() {
                        [part] => part.as_ident().map(crate::idents::ident),
                        _ => None,
                    },
                    _ => None,
                };
                let Some(name) = name else {
                    return Err(user_error(
                        "0A000",
                        format!("not supported: grantee {grantee}"),
                    ));
                };
                if name == PUBLIC {
                    return Ok(name);
                }
                match self.catalog.role(&name) {
                    Some(_) => Ok(name),
                    None => Err(user_error(
                        "42704",
                        format!("role \"{name}\" does not exist"),
                    )),
                }
            })
            .collect()
    }

    async fn change_privileges(&self, op: PrivilegeOp) -> PgWireResult<bool> {
        let catalog = std::sync::Arc::clone(&self.catalog);
        tokio::task::spawn_blocking(move || catalog.change_privileges(op))
            .await
            .map_err(|e| user_error("XX000", format!("privilege change stopped: {e}")))?
            .map_err(|e| to_pg(&e))
    }
}

/// The privileges a GRANT or REVOKE names.
fn privileges_of(granted: &Granted, on_schemas: bool) -> PgWireResult<Privileges> {
    let actions = match granted {
        Granted::All { .. } if on_schemas => return Ok(Privileges::ALL_SCHEMA),
        Granted::All { .. } => return Ok(Privileges::ALL_TABLE),
        Granted::Actions(actions) => actions,
    };
    let mut all = Privileges::default();
    for action in actions {
        let one = match action {
            Action::Select { columns: None } => Privileges::SELECT,
            Action::Insert { columns: None } => Privileges::INSERT,
            Action::Update { columns: None } => Privileges::UPDATE,
            Action::Delete => Privileges::DELETE,
            Action::Truncate => Privileges::TRUNCATE,
            Action::Create { obj_type: None } => Privileges::CREATE,
            Action::Usage => Privileges::USAGE,
            other => {
                return Err(user_error(
                    "0A000",
                    format!("not supported: privilege {other}"),
                ));
            }
        };
        let fits = match on_schemas {
            true => Privileges::ALL_SCHEMA.contains(one),
            false => Privileges::ALL_TABLE.contains(one),
        };
        if !fits {
            let kind = if on_schemas { "schema" } else { "relation" };
            let message = format!("invalid privilege type {} for {kind}", one.name());
            return Err(user_error("0LP01", message));
        }
        all = all.union(one);
    }
    Ok(all)
}

/// What `statement` needs; `ctes` are names its WITH clauses define (not collections).
fn needs_of(statement: &Statement, ctes: &[String]) -> PgWireResult<Needs> {
    let mut needs = Needs::default();
    let mut reads = relations(statement, ctes)?;
    // The written collection: the privilege, and SELECT too where the statement reads it.
    let mut write = |name: &ObjectName, privilege: Privileges, reads_it: bool| {
        let table = crate::idents::table_name(name)?;
        if let Some(at) = reads.iter().position(|r| *r == table) {
            reads.remove(at); // named once as the target
        }
        needs.on_tables.push((table.clone(), privilege));
        if reads_it {
            needs.on_tables.push((table, Privileges::SELECT));
        }
        Ok::<(), PgWireError>(())
    };
    match statement {
        Statement::Insert(insert) => {
            if let TableObject::TableName(name) = &insert.table {
                let upsert = matches!(&insert.on, Some(OnInsert::OnConflict(c))
                    if matches!(c.action, OnConflictAction::DoUpdate(_)));
                let privilege = match upsert {
                    true => Privileges::INSERT.union(Privileges::UPDATE),
                    false => Privileges::INSERT,
                };
                write(name, privilege, insert.returning.is_some())?;
            }
        }
        Statement::Update(update) => {
            if let TableFactor::Table { name, .. } = &update.table.relation {
                let reads_it = update.selection.is_some() || update.returning.is_some();
                write(name, Privileges::UPDATE, reads_it)?;
            }
        }
        Statement::Delete(delete) => {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            if let Some(TableFactor::Table { name, .. }) = from.first().map(|t| &t.relation) {
                let reads_it = delete.selection.is_some() || delete.returning.is_some();
                write(name, Privileges::DELETE, reads_it)?;
            }
        }
        Statement::Copy {
            source: CopySource::Table { table_name, .. },
            to,
            ..
        } => match to {
            // The parser does not list COPY's table among the relations.
            true => write(table_name, Privileges::SELECT, false)?,
            false => write(table_name, Privileges::INSERT, false)?,
        },
        Statement::Truncate(truncate) => {
            for target in &truncate.table_names {
                write(&target.name, Privileges::TRUNCATE, false)?;
            }
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => {
            for name in names {
                needs.owns.push(crate::idents::table_name(name)?);
            }
            reads.clear();
        }
        Statement::CreateIndex(create) => {
            needs
                .owns
                .push(crate::idents::table_name(&create.table_name)?);
            reads.clear();
        }
        Statement::AlterTable(alter) => {
            needs.owns.push(crate::idents::table_name(&alter.name)?);
            reads.clear();
        }
        Statement::Vacuum(vacuum) => match &vacuum.table_name {
            Some(name) => needs.owns.push(crate::idents::table_name(name)?),
            None => needs.superuser = Some("permission denied to execute CHECKPOINT".into()),
        },
        Statement::CreateTable(create) => {
            let table = crate::idents::table_name(&create.name)?;
            let schema = split_qualified(&table).0.unwrap_or(crate::idents::PUBLIC);
            needs.creates_in = Some(schema.to_string());
            // What it reads (AS SELECT, a foreign key's table) needs SELECT; itself nothing.
            reads.retain(|r| *r != table);
        }
        Statement::Explain { statement, .. } => return needs_of(statement, ctes),
        Statement::CreateSchema { .. } => {
            needs.superuser = Some("permission denied for database postgres".into());
        }
        Statement::Drop {
            object_type: ObjectType::Schema,
            names,
            ..
        } => {
            let name = names.first().map(|n| n.to_string()).unwrap_or_default();
            needs.superuser = Some(format!("must be owner of schema {name}"));
        }
        Statement::Call(_) => {
            needs.superuser = Some("permission denied to run this procedure".into());
        }
        _ => {}
    }
    needs
        .on_tables
        .extend(reads.into_iter().map(|t| (t, Privileges::SELECT)));
    Ok(needs)
}

/// The catalog names of the relations `statement` names (CTEs left out), once per mention.
fn relations(statement: &Statement, ctes: &[String]) -> PgWireResult<Vec<String>> {
    let mut found = Vec::new();
    let mut bad = None;
    let _ = visit_relations(statement, |name: &ObjectName| {
        match crate::idents::table_name(name) {
            Ok(table) if ctes.contains(&table) => {}
            Ok(table) => found.push(table),
            Err(e) => bad = Some(e),
        }
        ControlFlow::<()>::Continue(())
    });
    match bad {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

/// The ACL key of the collection a catalog name names.
fn acl_key(table: &str) -> String {
    storage_key(table).unwrap_or_default()
}

/// A table's name as PostgreSQL's messages show it: without its schema.
fn shown(table: &str) -> &str {
    split_qualified(table).1
}

fn denied(message: &str) -> PgWireError {
    user_error("42501", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(sql: &str) -> Needs {
        let statement = vecraft_planner::parse::parse_sql(sql).unwrap().remove(0);
        let datafusion::sql::parser::Statement::Statement(s) = statement else {
            panic!("{sql}");
        };
        needs_of(&s, &crate::search_path::cte_names(&s)).unwrap()
    }

    fn tables(needs: &Needs) -> Vec<(&str, &str)> {
        let mut found: Vec<_> = (needs.on_tables.iter())
            .map(|(t, p)| (t.as_str(), p.name()))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn reads_need_select_on_every_table_named() {
        let join = of("SELECT * FROM a JOIN b ON a.id = b.id WHERE a.id IN (SELECT id FROM c)");
        assert_eq!(
            tables(&join),
            [("a", "SELECT"), ("b", "SELECT"), ("c", "SELECT")]
        );
        let cte = of("WITH recent AS (SELECT * FROM a) SELECT * FROM recent");
        assert_eq!(tables(&cte), [("a", "SELECT")]);
        let explained = of("EXPLAIN ANALYZE DELETE FROM a");
        assert_eq!(tables(&explained), [("a", "DELETE")]);
    }

    #[test]
    fn writes_need_their_privilege_and_select_where_they_read_the_table() {
        assert_eq!(tables(&of("DELETE FROM a")), [("a", "DELETE")]);
        let filtered = of("DELETE FROM a WHERE id = 1");
        assert_eq!(tables(&filtered), [("a", "DELETE"), ("a", "SELECT")]);
        let upsert = of(
            "INSERT INTO a SELECT * FROM b ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v \
             RETURNING id",
        );
        let insert_update = Privileges::INSERT.union(Privileges::UPDATE);
        assert_eq!(upsert.on_tables[0], ("a".to_string(), insert_update));
        assert_eq!(tables(&upsert)[1..], [("a", "SELECT"), ("b", "SELECT")]);
        assert_eq!(tables(&of("COPY a FROM STDIN")), [("a", "INSERT")]);
        assert_eq!(tables(&of("COPY a TO STDOUT")), [("a", "SELECT")]);
    }

    #[test]
    fn ddl_needs_ownership_or_create_on_the_schema() {
        assert_eq!(of("DROP TABLE a, b").owns, ["a", "b"]);
        assert_eq!(of("CREATE INDEX ON a (v)").owns, ["a"]);
        let create = of("CREATE TABLE s.t AS SELECT * FROM a");
        assert_eq!(create.creates_in.as_deref(), Some("s"));
        assert_eq!(tables(&create), [("a", "SELECT")]);
        assert!(of("CREATE SCHEMA s").superuser.is_some());
        assert!(of("CHECKPOINT").superuser.is_some());
    }
}
