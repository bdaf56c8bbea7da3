//! One client connection: its own DataFusion session (a `SET` is seen only here), the shared
//! catalog, and the simple query protocol — each statement planned and run, rows sent in text
//! format with PostgreSQL's command tags.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ObjectType, Statement};
use futures::{Sink, stream};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use vecraft_planner::table::CollectionTable;

use crate::catalog::Catalog;
use crate::ddl::schema_of;
use crate::encode;
use crate::errors::{to_pg, user_error};

pub struct Connection {
    catalog: Arc<Catalog>,
    session: SessionContext,
    registered: Mutex<HashSet<String>>,
}

impl Connection {
    pub fn new(catalog: Arc<Catalog>) -> Arc<Connection> {
        Arc::new(Connection {
            catalog,
            session: vecraft_planner::new_session(),
            registered: Mutex::new(HashSet::new()),
        })
    }

    /// Makes the session's tables match the catalog (other connections create and drop).
    fn sync_tables(&self) -> PgWireResult<()> {
        let mut registered = self.registered.lock().unwrap_or_else(|p| p.into_inner());
        let names: HashSet<String> = self.catalog.names().into_iter().collect();
        for gone in registered.difference(&names).cloned().collect::<Vec<_>>() {
            self.session
                .deregister_table(gone.as_str())
                .map_err(|e| to_pg(&e))?;
            registered.remove(&gone);
        }
        for name in names {
            if registered.contains(&name) {
                continue;
            }
            if let Some(c) = self.catalog.get(&name) {
                let table = Arc::new(CollectionTable::new(c));
                self.session
                    .register_table(name.as_str(), table)
                    .map_err(|e| to_pg(&e))?;
                registered.insert(name);
            }
        }
        Ok(())
    }

    async fn run(&self, statement: DFStatement) -> PgWireResult<Response> {
        if let DFStatement::Statement(s) = &statement {
            if let Some(response) = self.ddl(s)? {
                return Ok(response);
            }
        }
        self.sync_tables()?;
        let tag = tag_of(&statement);
        let frame = vecraft_planner::statement(&self.session, statement)
            .await
            .map_err(|e| to_pg(&e))?;
        let schema = frame.schema().as_arrow().clone();
        let batches = frame.collect().await.map_err(|e| to_pg(&e))?;
        match tag {
            Some(command @ ("INSERT" | "DELETE" | "UPDATE")) => {
                let count = batches
                    .first()
                    .and_then(|b| {
                        datafusion::arrow::array::AsArray::as_primitive_opt::<
                            datafusion::arrow::datatypes::UInt64Type,
                        >(b.column(0))
                        .map(|c| c.value(0))
                    })
                    .unwrap_or(0) as usize;
                let tag = if command == "INSERT" {
                    Tag::new("INSERT").with_oid(0)
                } else {
                    Tag::new(command)
                };
                Ok(Response::Execution(tag.with_rows(count)))
            }
            Some(command) => Ok(Response::Execution(Tag::new(command))),
            None => {
                let fields = encode::fields(&schema);
                let mut rows = Vec::new();
                for batch in &batches {
                    rows.extend(encode::rows(batch, &fields)?);
                }
                Ok(Response::Query(QueryResponse::new(
                    fields,
                    stream::iter(rows.into_iter().map(Ok)),
                )))
            }
        }
    }

    /// Statements the gateway answers itself.
    fn ddl(&self, statement: &Statement) -> PgWireResult<Option<Response>> {
        Ok(Some(match statement {
            Statement::CreateTable(create) => {
                let name = create.name.to_string().to_lowercase();
                if !Catalog::valid_name(&name) {
                    let message =
                        format!("invalid name \"{name}\": use lowercase letters, digits and _");
                    return Err(user_error("42602", message));
                }
                let created = self
                    .catalog
                    .create(&name, schema_of(create)?)
                    .map_err(|e| to_pg(&e))?;
                if !created && !create.if_not_exists {
                    return Err(user_error(
                        "42P07",
                        format!("relation \"{name}\" already exists"),
                    ));
                }
                Response::Execution(Tag::new("CREATE TABLE"))
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                if_exists,
                names,
                ..
            } => {
                for name in names {
                    let name = name.to_string().to_lowercase();
                    let dropped = self.catalog.drop_collection(&name).map_err(|e| to_pg(&e))?;
                    if !dropped && !if_exists {
                        return Err(user_error(
                            "42P01",
                            format!("table \"{name}\" does not exist"),
                        ));
                    }
                }
                self.sync_tables()?;
                Response::Execution(Tag::new("DROP TABLE"))
            }
            Statement::CreateExtension(_) => Response::Execution(Tag::new("CREATE EXTENSION")),
            Statement::CreateIndex(_) => Response::Execution(Tag::new("CREATE INDEX")),
            _ => return Ok(None),
        }))
    }
}

/// The command tag of a statement that returns no rows; `None` for queries.
fn tag_of(statement: &DFStatement) -> Option<&'static str> {
    let DFStatement::Statement(s) = statement else {
        return None;
    };
    match s.as_ref() {
        Statement::Insert(_) => Some("INSERT"),
        Statement::Delete(_) => Some("DELETE"),
        Statement::Update { .. } => Some("UPDATE"),
        Statement::Set(_) => Some("SET"),
        _ => None,
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let statements = vecraft_planner::parse::parse_sql(query)
            .map_err(|e| user_error("42601", e.to_string()))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            responses.push(self.run(statement).await?);
        }
        Ok(responses)
    }
}

#[async_trait]
impl NoopStartupHandler for Connection {
    async fn post_startup<C>(
        &self,
        _client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(())
    }
}

/// The handlers pgwire asks for, all served by the connection.
pub struct Handlers(pub Arc<Connection>);

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.0.clone()
    }
}
