//! SQL schemas: `CREATE SCHEMA [IF NOT EXISTS] s`, `DROP SCHEMA [IF EXISTS] s [CASCADE]`,
//! and tables in them (`s.t`), as vecs (`vecs.docs`) and llama-index (`schema_name=`) use
//! them. A schema is a name in the catalog (a directory on a single node, an entry of the
//! meta document in a cluster); a collection in it is named `qualified(s, t)`
//! (`vecraft_storage::names`) and is registered with DataFusion as `s.t`. `public` always
//! exists and cannot be dropped. Unqualified names are looked up along `search_path`
//! (`search_path.rs`), which is `public` alone unless a client sets it.

use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{ObjectName, SchemaName};
use pgwire::api::results::{Response, Tag};
use pgwire::error::PgWireResult;
use vecraft_storage::names::split_qualified;

use crate::errors::{to_pg, user_error};
use crate::idents::{PUBLIC, ident};
use crate::session::Session;

impl Session {
    pub(crate) fn create_schema(
        &self,
        name: &SchemaName,
        if_not_exists: bool,
    ) -> PgWireResult<Response> {
        let (SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _)) = name else {
            let message = "CREATE SCHEMA AUTHORIZATION is not supported";
            return Err(user_error("0A000", message));
        };
        let name = schema_name(name)?;
        let created = name != PUBLIC && self.catalog.create_schema(&name).map_err(|e| to_pg(&e))?;
        if !created && !if_not_exists {
            let message = format!("schema \"{name}\" already exists");
            return Err(user_error("42P06", message));
        }
        Ok(Response::Execution(Tag::new("CREATE SCHEMA")))
    }

    /// Drops `names`; with `cascade`, the collections in them first.
    pub(crate) async fn drop_schemas(
        &self,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
    ) -> PgWireResult<Response> {
        for name in names {
            let name = schema_name(name)?;
            if name == PUBLIC {
                let message = "DROP SCHEMA public is not supported: unqualified names mean it";
                return Err(user_error("0A000", message));
            }
            if !self.catalog.has_schema(&name) {
                if if_exists {
                    continue;
                }
                let message = format!("schema \"{name}\" does not exist");
                return Err(user_error("3F000", message));
            }
            let inside: Vec<String> = (self.catalog.names().into_iter())
                .filter(|c| split_qualified(c).0 == Some(name.as_str()))
                .collect();
            if !inside.is_empty() && !cascade {
                return Err(user_error(
                    "2BP01",
                    format!("cannot drop schema {name} because other objects depend on it"),
                ));
            }
            for collection in inside {
                let catalog = Arc::clone(&self.catalog);
                tokio::task::spawn_blocking(move || catalog.drop_collection(&collection))
                    .await
                    .map_err(|e| user_error("XX000", format!("drop stopped: {e}")))?
                    .map_err(|e| to_pg(&e))?;
            }
            self.catalog.drop_schema(&name).map_err(|e| to_pg(&e))?;
        }
        Ok(Response::Execution(Tag::new("DROP SCHEMA")))
    }
}

/// A schema's name: one identifier.
pub(crate) fn schema_name(name: &ObjectName) -> PgWireResult<String> {
    match name.0.as_slice() {
        [part] => match part.as_ident() {
            Some(i) => Ok(ident(i)),
            None => Err(user_error("42601", format!("improper schema name: {name}"))),
        },
        _ => Err(user_error(
            "42601",
            format!("improper qualified name (too many dotted names): {name}"),
        )),
    }
}

/// How DataFusion finds collection `name`: `t` in the default schema (`public`), or `s.t`,
/// registering schema `s` with DataFusion on first use.
pub(crate) fn table_reference(ctx: &SessionContext, name: &str) -> TableReference {
    match split_qualified(name) {
        (None, table) => TableReference::bare(table),
        (Some(schema), table) => {
            if let Some(catalog) = ctx.catalog("datafusion")
                && catalog.schema(schema).is_none()
            {
                let _ = catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()));
            }
            TableReference::partial(schema, table)
        }
    }
}
