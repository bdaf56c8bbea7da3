//! `has_table_privilege`, `has_any_column_privilege`, `has_column_privilege`,
//! `has_schema_privilege` and `has_database_privilege`: what tools ask before they list or
//! open a table (pgAdmin, Metabase's sync, `information_schema`-shy ORMs). They answer from the
//! same roles and grants every statement is checked against (`crate::privileges`), so a tool
//! shows a role what it may read.
//!
//! As in PostgreSQL: the user is the session's unless given first (a name, or `public`); the
//! privilege text is a comma-separated list, any of which will do, each optionally `WITH
//! GRANT OPTION`; a table is a name (resolved along the search path, quoted or not) or an
//! OID (an OID that names nothing answers NULL); superusers and owners hold everything.
//! Column privileges are not kept, so a column's are its table's.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use parking_lot::Mutex;
use vecraft_cluster::meta::privileges::{self, Acls, PUBLIC, Privileges, schema_object};
use vecraft_planner::error::VectorError;
use vecraft_storage::names::{qualified, storage_key};

use super::Shared;
use super::types::{catalog_table_oid, table_oid};
use crate::catalog::Catalog;
use crate::roles::SessionUser;

/// What a function asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Object {
    Table,
    AnyColumn,
    Column,
    Schema,
    Database,
}

impl Object {
    fn name(self) -> &'static str {
        match self {
            Object::Table => "has_table_privilege",
            Object::AnyColumn => "has_any_column_privilege",
            Object::Column => "has_column_privilege",
            Object::Schema => "has_schema_privilege",
            Object::Database => "has_database_privilege",
        }
    }

    /// How many arguments name the object (a column takes its table and its name).
    fn object_args(self) -> usize {
        match self {
            Object::Column => 2,
            _ => 1,
        }
    }

    /// What the privilege `word` of this kind of object is here; `None` for a word it has
    /// no privilege of.
    fn privilege(self, word: &str) -> Option<Held> {
        let table = |word: &str| match word {
            "select" => Some(Held::Granted(Privileges::SELECT)),
            "insert" => Some(Held::Granted(Privileges::INSERT)),
            "update" => Some(Held::Granted(Privileges::UPDATE)),
            "delete" => Some(Held::Granted(Privileges::DELETE)),
            "truncate" => Some(Held::Granted(Privileges::TRUNCATE)),
            "references" | "trigger" | "maintain" => Some(Held::ByOwners),
            _ => None,
        };
        match self {
            Object::Table => table(word),
            Object::AnyColumn | Object::Column => match word {
                "select" | "insert" | "update" | "references" => table(word),
                _ => None,
            },
            Object::Schema => match word {
                "create" => Some(Held::Granted(Privileges::CREATE)),
                // Every role may use every schema here (USAGE is kept, not checked).
                "usage" => Some(Held::ByEveryone),
                _ => None,
            },
            Object::Database => match word {
                // Making schemas is for superusers (the database's owner is one).
                "create" => Some(Held::ByOwners),
                "connect" | "temporary" | "temp" => Some(Held::ByEveryone),
                _ => None,
            },
        }
    }
}

/// Who holds a privilege, besides superusers and the object's owner.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Held {
    /// Roles it was granted to (or PUBLIC).
    Granted(Privileges),
    /// Every role.
    ByEveryone,
    /// No one else: Vecraft grants it to no one.
    ByOwners,
}

/// The ACL key the database's privileges would have (it has no entry: its owner is the
/// bootstrap superuser, as `privileges::owns` says of an object without one).
const DATABASE_KEY: &str = "database postgres";

/// The functions, for a session whose user is `user`.
pub(crate) fn udfs(catalog: &Arc<Catalog>, user: &Arc<Mutex<SessionUser>>) -> Vec<ScalarUDF> {
    [
        Object::Table,
        Object::AnyColumn,
        Object::Column,
        Object::Schema,
        Object::Database,
    ]
    .into_iter()
    .map(|object| {
        ScalarUDF::new_from_impl(HasPrivilege {
            object,
            catalog: Shared(Arc::clone(catalog)),
            user: Shared(Arc::clone(user)),
            // Not folded into a plan the session keeps: a REVOKE must show at the next run.
            signature: Signature::variadic_any(Volatility::Volatile),
        })
    })
    .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct HasPrivilege {
    object: Object,
    catalog: Shared<Catalog>,
    user: Shared<Mutex<SessionUser>>,
    signature: Signature,
}

/// One call's arguments: the role asked about, the object, the privilege text (`None`:
/// NULL, or for the object, some part of it NULL).
struct Call<'a> {
    role: Option<String>,
    object: Option<Vec<ArgValue<'a>>>,
    privilege: Option<String>,
}

/// An argument naming an object: a name, or (for tables) an OID.
enum ArgValue<'a> {
    Name(&'a str),
    Oid(i64),
}

impl ScalarUDFImpl for HasPrivilege {
    fn name(&self) -> &str {
        self.object.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let objects = self.object.object_args();
        let count = args.args.len();
        if count != objects + 1 && count != objects + 2 {
            let message = format!(
                "function {} takes {} or {} arguments",
                self.name(),
                objects + 1,
                objects + 2
            );
            return Err(VectorError::new("42883", message).into());
        }
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let texts: Vec<ArrayRef> = arrays
            .iter()
            .map(|a| cast(a, &DataType::Utf8))
            .collect::<Result<_, _>>()?;
        // OIDs, where an argument is a number (`c.oid`, `'t'::regclass`).
        let oids: Vec<Option<ArrayRef>> = arrays
            .iter()
            .map(|a| match a.data_type().is_integer() {
                true => cast(a, &DataType::Int64).map(Some),
                false => Ok(None),
            })
            .collect::<Result<_, _>>()?;
        let with_role = count == objects + 2;
        let session_role = self.user.0.lock().name.clone();
        let acls = self.catalog.0.privileges();
        let path = super::functions::search_path(&args.config_options);
        let mut answers = Vec::with_capacity(rows);
        for row in 0..rows {
            let text = |i: usize| {
                let t = texts[i].as_string::<i32>();
                (!t.is_null(row)).then(|| t.value(row).to_string())
            };
            let first = usize::from(with_role);
            let object = (first..first + objects)
                .map(|i| {
                    // The text form is checked: an untyped NULL's array has no validity bits.
                    if texts[i].is_null(row) {
                        return None;
                    }
                    Some(match &oids[i] {
                        Some(oids) => ArgValue::Oid(oids.as_primitive::<Int64Type>().value(row)),
                        None => ArgValue::Name(texts[i].as_string::<i32>().value(row)),
                    })
                })
                .collect();
            let role = match with_role {
                true => text(0),
                false => Some(session_role.clone()),
            };
            let call = Call {
                role,
                object,
                privilege: text(count - 1),
            };
            answers.push(self.answer(&call, &acls, &path)?);
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(answers))))
    }
}

impl HasPrivilege {
    /// One row's answer; NULL when an argument is NULL or an OID names nothing.
    fn answer(&self, call: &Call<'_>, acls: &Acls, path: &[String]) -> Result<Option<bool>> {
        let (Some(role), Some(object), Some(text)) = (&call.role, &call.object, &call.privilege)
        else {
            return Ok(None);
        };
        let wanted = self.privileges(text)?;
        let superuser = self.superuser(role)?;
        // A grant option is held by superusers and owners alone: no one grants it here.
        let held = |key: &str, privilege: Held, grant_option: bool| {
            superuser
                || privileges::owns(acls, key, role)
                || !grant_option
                    && match privilege {
                        Held::Granted(p) => privileges::granted(acls, key, role).contains(p),
                        Held::ByEveryone => true,
                        Held::ByOwners => false,
                    }
        };
        let any = |key: &str| wanted.iter().any(|&(p, grant)| held(key, p, grant));
        let key = match (self.object, &object[0]) {
            (Object::Schema, ArgValue::Name(schema)) => self.schema_key(schema)?,
            (Object::Database, ArgValue::Name(name)) => database_key(name)?,
            // By OID: no schema or database has one here.
            (Object::Schema | Object::Database, ArgValue::Oid(_)) => return Ok(None),
            (_, table) => match self.table(table, object.get(1), path)? {
                Some(Relation::Collection(name)) => storage_key(&name).unwrap_or_default(),
                // Everyone reads the system catalogs; only superusers could change them.
                Some(Relation::System) => {
                    let read = Held::Granted(Privileges::SELECT);
                    let reads = wanted.iter().any(|&(p, grant)| p == read && !grant);
                    return Ok(Some(superuser || reads));
                }
                None => return Ok(None),
            },
        };
        Ok(Some(any(&key)))
    }

    /// The relation a table argument names (`None`: an OID that names none); for
    /// `has_column_privilege`, 42703 unless it has the `column` named.
    fn table(
        &self,
        table: &ArgValue<'_>,
        column: Option<&ArgValue<'_>>,
        path: &[String],
    ) -> Result<Option<Relation>> {
        let table = match table {
            ArgValue::Oid(oid) => self.table_by_oid(*oid),
            ArgValue::Name(name) => Some(self.table_by_name(name, path)?),
        };
        if let (Some(table), Some(column)) = (&table, column) {
            self.check_column(table, column)?;
        }
        Ok(table)
    }

    /// The ACL key of the schema `name` (taken as written: PostgreSQL neither folds nor
    /// unquotes it); 3F000 when there is none. The system schemas belong to the bootstrap
    /// superuser, as schemas without an entry do.
    fn schema_key(&self, name: &str) -> Result<String> {
        let system = ["pg_catalog", "information_schema"].contains(&name);
        if !system && !self.catalog.0.has_schema(name) {
            let message = format!("schema \"{name}\" does not exist");
            return Err(VectorError::new("3F000", message).into());
        }
        Ok(schema_object(&storage_key(name).unwrap_or_default()))
    }

    /// The privileges `text` lists, each with whether it asks for the grant option; 22023
    /// for a word this kind of object has no privilege of.
    fn privileges(&self, text: &str) -> Result<Vec<(Held, bool)>> {
        text.split(',')
            .map(|item| {
                let item = item.trim();
                let lower = item.to_lowercase();
                let (word, grant) = match lower.strip_suffix("with grant option") {
                    Some(word) => (word.trim_end(), true),
                    None => (lower.as_str(), false),
                };
                match self.object.privilege(word) {
                    Some(p) => Ok((p, grant)),
                    None => {
                        let message = format!("unrecognized privilege type: \"{item}\"");
                        Err(VectorError::new("22023", message).into())
                    }
                }
            })
            .collect()
    }

    /// Whether `role` is a superuser; 42704 for a name that is no role (`public` is one here).
    fn superuser(&self, role: &str) -> Result<bool> {
        if role == PUBLIC {
            return Ok(false);
        }
        let session = self.user.0.lock().clone();
        match self.catalog.0.is_superuser(role) {
            Some(superuser) => Ok(superuser),
            // Let in under a name that is no role by the embedded default: may do anything.
            None if session.open && session.name == role => Ok(true),
            None => {
                let message = format!("role \"{role}\" does not exist");
                Err(VectorError::new("42704", message).into())
            }
        }
    }

    /// The relation a name names, along the search path; 42P01 when none.
    fn table_by_name(&self, text: &str, path: &[String]) -> Result<Relation> {
        let missing = || -> datafusion::error::DataFusionError {
            let message = format!("relation \"{text}\" does not exist");
            VectorError::new("42P01", message).into()
        };
        let name = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(text)
            .and_then(|mut p| p.parse_object_name(false))
            .map_err(|_| missing())?;
        let name = crate::idents::table_name(&name).map_err(|_| missing())?;
        let (schema, table) = vecraft_storage::names::split_qualified(&name);
        let candidates: Vec<String> = match schema {
            Some(_) => vec![name.clone()],
            None => path.iter().map(|s| qualified(s, table)).collect(),
        };
        if let Some(found) = candidates.iter().find(|c| self.catalog.0.get(c).is_some()) {
            return Ok(Relation::Collection(found.clone()));
        }
        let system = match schema {
            None | Some("pg_catalog") | Some("information_schema") => catalog_table_oid(table),
            Some(_) => None,
        };
        system.map(|_| Relation::System).ok_or_else(missing)
    }

    /// The relation whose OID is `oid`, if any.
    fn table_by_oid(&self, oid: i64) -> Option<Relation> {
        let oid = u32::try_from(oid).ok()?;
        let collection = self
            .catalog
            .0
            .names()
            .into_iter()
            .find(|n| table_oid(n) == oid);
        match collection {
            Some(name) => Some(Relation::Collection(name)),
            None => super::regclass::catalog_name(oid).map(|_| Relation::System),
        }
    }

    /// 42703 unless `table` has the column `column` names (a system table's are not checked).
    fn check_column(&self, table: &Relation, column: &ArgValue<'_>) -> Result<()> {
        let (Relation::Collection(name), ArgValue::Name(column)) = (table, column) else {
            return Ok(());
        };
        // A name, taken as written (PostgreSQL neither folds nor unquotes it).
        let schema = self.catalog.0.get(name).map(|c| c.schema());
        let known = schema.is_some_and(|s| s.columns.iter().any(|c| c.name == *column));
        match known {
            true => Ok(()),
            false => {
                let shown = vecraft_storage::names::split_qualified(name).1;
                let message = format!("column \"{column}\" of relation \"{shown}\" does not exist");
                Err(VectorError::new("42703", message).into())
            }
        }
    }
}

/// The ACL key of the database `name`; 3D000 for any but `postgres`, the only one.
fn database_key(name: &str) -> Result<String> {
    if name != "postgres" {
        let message = format!("database \"{name}\" does not exist");
        return Err(VectorError::new("3D000", message).into());
    }
    Ok(DATABASE_KEY.to_string())
}

/// What a table argument names.
enum Relation {
    /// A collection, by its catalog name.
    Collection(String),
    /// A table of `pg_catalog` or `information_schema`.
    System,
}
