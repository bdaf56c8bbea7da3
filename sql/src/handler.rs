//! One client connection: the pgwire handlers (startup, simple and extended query, COPY), all
//! answered by the connection's [`Session`].

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::catalog::Catalog;
use crate::errors::user_error;
use crate::metrics::GATEWAY;
use crate::params;
use crate::prepared::Prepared;
use crate::session::Session;

pub struct Connection {
    session: Arc<Session>,
    /// The server's registry of cancel keys; the connection registers at startup.
    cancels: Arc<ConnectionManager>,
    /// Whether a client session started here (a socket may carry only a cancel request).
    started: AtomicBool,
}

impl Connection {
    pub fn new(catalog: Arc<Catalog>, cancels: Arc<ConnectionManager>) -> Arc<Connection> {
        Arc::new(Connection {
            session: Session::new(catalog),
            cancels,
            started: AtomicBool::new(false),
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.started.load(Ordering::Relaxed) {
            GATEWAY.connections.dec();
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let timer = GATEWAY.statement("simple");
        let result = self.simple_query(client, query).await;
        timer.finish(&result);
        result
    }
}

impl Connection {
    async fn simple_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        // A query text seen before runs its kept plan, as a prepared statement would.
        if let Some(prepared) = self.session.cached(query) {
            return Ok(vec![
                self.session
                    .execute(&prepared, Vec::new(), &Format::UnifiedText)
                    .await?,
            ]);
        }
        let statements = vecraft_planner::parse::parse_sql(query)
            .map_err(|e| user_error("42601", e.to_string()))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        if let [DFStatement::Statement(s)] = statements.as_slice() {
            if !matches!(s.as_ref(), Statement::Deallocate { .. }) {
                let prepared = self.session.prepare(query, &[]).await?;
                return Ok(vec![
                    self.session
                        .execute(&prepared, Vec::new(), &Format::UnifiedText)
                        .await?,
                ]);
            }
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            // DEALLOCATE names protocol-level prepared statements too (psycopg sends it).
            if let DFStatement::Statement(s) = &statement {
                if let Statement::Deallocate { name, .. } = s.as_ref() {
                    if !name.value.eq_ignore_ascii_case("all") {
                        client.portal_store().rm_statement(&name.value);
                    }
                }
            }
            responses.push(self.session.run(statement).await?);
        }
        Ok(responses)
    }
}

#[async_trait]
impl QueryParser for Session {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Arc<Prepared>>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.prepare(sql, types).await.map(Some)
    }

    fn get_parameter_types(&self, stmt: &Arc<Prepared>) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types())
    }

    fn get_result_schema(
        &self,
        stmt: &Arc<Prepared>,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(stmt.result_fields(column_format.unwrap_or(&Format::UnifiedText)))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Arc<Prepared>;
    type QueryParser = Session;

    fn query_parser(&self) -> Arc<Session> {
        self.session.clone()
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Arc<Prepared>>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let timer = GATEWAY.statement("extended");
        let result = self.execute_portal(portal).await;
        timer.finish(&result);
        result
    }
}

impl Connection {
    async fn execute_portal(&self, portal: &Portal<Arc<Prepared>>) -> PgWireResult<Response> {
        let prepared = &portal.statement.statement;
        let mut values = Vec::with_capacity(portal.parameter_len());
        for (i, bytes) in portal.parameters.iter().enumerate() {
            let declared = portal.statement.parameter_types.get(i).cloned().flatten();
            let declared = declared.filter(|t| *t != Type::UNKNOWN);
            values.push(params::decode(
                bytes.as_deref(),
                portal.parameter_format.format_for(i),
                declared.as_ref(),
                &prepared.param_target(i),
            )?);
        }
        self.session
            .execute(prepared, values, &portal.result_column_format)
            .await
    }
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.copy_data(&data.data);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let tag = self.session.copy_done()?;
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.copy_abort();
        user_error("57014", format!("COPY from stdin failed: {}", fail.message))
    }
}

/// Startup trusts the client (no users are configured yet) and registers its cancel key, so
/// a CancelRequest on another socket interrupts the statement running here (57014).
#[async_trait]
impl NoopStartupHandler for Connection {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.cancels.clone())
    }

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
        self.started.store(true, Ordering::Relaxed);
        GATEWAY.connections.inc();
        GATEWAY.connections_total.inc();
        Ok(())
    }
}

/// The handlers pgwire asks for, all served by the connection.
pub struct Handlers(pub Arc<Connection>);

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.0.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.0.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.0.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.0.cancels.clone()))
    }
}
