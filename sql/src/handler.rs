//! One client connection: the pgwire handlers (startup, simple and extended query, COPY), all
//! answered by the connection's [`Session`].

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use futures::Sink;
use parking_lot::Mutex;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::messages::response::TransactionStatus;

use crate::transactions::InFailedBlock;
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, DEFAULT_NAME, PgWireServerHandlers, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::extendedquery::{
    Close, CloseComplete, Execute, Parse, ParseComplete, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::simplequery::Query;

use crate::auth::Login;
use crate::auth::hba::Access;
use crate::catalog::Catalog;
use crate::errors::user_error;
use crate::limits::{Admission, SessionSlot};
use crate::memory::NodeMemory;
use crate::metrics::GATEWAY;
use crate::params;
use crate::prepared::Prepared;
use crate::session::Session;

mod startup;

pub struct Connection {
    session: Arc<Session>,
    /// The server's registry of cancel keys; the connection registers at startup.
    cancels: Arc<ConnectionManager>,
    /// Whether a client session started here (a socket may carry only a cancel request).
    started: AtomicBool,
    admission: Arc<Admission>,
    /// This session's place under `max_connections`, once it logged in.
    slot: Mutex<Option<SessionSlot>>,
    /// The names of the prepared statements the client holds (bounded by
    /// `max_prepared_statements`).
    named_statements: Mutex<HashSet<String>>,
    /// Who may connect, and how they prove it.
    access: Arc<Access>,
    /// Where the client is in logging in.
    login: Login,
}

impl Connection {
    pub fn new(
        catalog: Arc<Catalog>,
        cancels: Arc<ConnectionManager>,
        admission: Arc<Admission>,
        memory: NodeMemory,
        access: Arc<Access>,
    ) -> Arc<Connection> {
        Arc::new(Connection {
            session: Session::new(catalog, memory.session_runtime(), &admission.limits),
            cancels,
            started: AtomicBool::new(false),
            admission,
            slot: Mutex::new(None),
            named_statements: Mutex::new(HashSet::new()),
            access,
            login: Login::default(),
        })
    }

    /// The connection's session.
    pub fn session(&self) -> Arc<Session> {
        self.session.clone()
    }

    /// Runs one statement under the session's `statement_timeout` (57014 when it passes; the
    /// statement's work stops with its future), once the role's statement rate allows it
    /// (53400 when it does not, `rates.rs`).
    ///
    /// A panic inside the statement (a bug in a dependency or here) is caught and answered as
    /// XX000: it ends that statement, not the connection or the node.
    ///
    /// A `deep` statement runs on a stack of its own (see `stack.rs`).
    async fn timed<T>(
        &self,
        deep: bool,
        statement: impl Future<Output = PgWireResult<T>>,
    ) -> PgWireResult<T> {
        use futures::FutureExt;
        {
            let user = self.session.user.lock();
            let rate = self.session.catalog.statement_rate(&user.name);
            self.admission.statement_rates.admit(&user.name, rate)?;
        }
        let statement = std::panic::AssertUnwindSafe(statement)
            .catch_unwind()
            .map(|outcome| outcome.unwrap_or_else(|panic| Err(internal_error(panic.as_ref()))));
        let statement = crate::stack::on_stack_for(deep, statement);
        match self.session.statement_timeout() {
            None => statement.await,
            Some(limit) => tokio::time::timeout(limit, statement)
                .await
                .unwrap_or_else(|_| Err(statement_timeout_error())),
        }
    }
}

/// The error for a statement that panicked.
pub(crate) fn internal_error(panic: &(dyn std::any::Any + Send)) -> PgWireError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    user_error(
        "XX000",
        format!("internal error: {}", crate::errors::redact_paths(&what)),
    )
}

/// PostgreSQL's error for a statement that ran past `statement_timeout`.
pub fn statement_timeout_error() -> PgWireError {
    user_error("57014", "canceling statement due to statement timeout")
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
    /// pgwire's simple query, after the block a `ROLLBACK TO` makes usable again is marked
    /// so (see [`Connection::resume_block`]).
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // A ROLLBACK TO is never deep: a deep text is not parsed here, off the deep stack.
        if client.transaction_status() == TransactionStatus::Error
            && !crate::stack::is_deep(&query.query)
        {
            let first = vecraft_planner::parse::parse_sql(&query.query)
                .ok()
                .and_then(|mut statements| (!statements.is_empty()).then(|| statements.remove(0)));
            if let Some(first) = first {
                self.resume_block(client, &first);
            }
        }
        let result = self._on_query(client, query).await;
        self.after_error(client, &result);
        result
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let timer = GATEWAY.statement("simple");
        let cached = self.session.cached(query);
        let deep = cached
            .as_ref()
            .map_or_else(|| crate::stack::is_deep(query), |p| p.deep);
        let result = self
            .timed(deep, self.simple_query(client, query, cached))
            .await
            .map_err(|e| crate::positions::at(e, query));
        timer.finish(&result);
        result
    }
}

impl Connection {
    /// Runs a simple query; `cached` is its text's kept plan, if the session has one.
    async fn simple_query<C>(
        &self,
        client: &mut C,
        query: &str,
        cached: Option<Arc<Prepared>>,
    ) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let failed = client.transaction_status() == TransactionStatus::Error;
        // A query text seen before runs its kept plan, as a prepared statement would.
        if let Some(prepared) = cached {
            if failed && let Some(answer) = self.in_failed_block(&prepared.statement).await? {
                return Ok(vec![answer]);
            }
            return Ok(vec![
                self.session
                    .execute(&prepared, Vec::new(), &Format::UnifiedText)
                    .await?,
            ]);
        }
        let statements =
            vecraft_planner::parse::parse_sql(query).map_err(crate::errors::parse_error)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        if failed && let Some(answer) = self.in_failed_block(&statements[0]).await? {
            return Ok(vec![answer]);
        }
        if let [DFStatement::Statement(s)] = statements.as_slice()
            && !matches!(s.as_ref(), Statement::Deallocate { .. })
        {
            let prepared = self.session.prepare(query, &[]).await?;
            return Ok(vec![
                self.session
                    .execute(&prepared, Vec::new(), &Format::UnifiedText)
                    .await?,
            ]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            // DEALLOCATE names protocol-level prepared statements too (psycopg sends it).
            if let DFStatement::Statement(s) = &statement
                && let Statement::Deallocate { name, .. } = s.as_ref()
            {
                let mut held = self.named_statements.lock();
                if name.value.eq_ignore_ascii_case("all") {
                    for statement in held.drain() {
                        client.portal_store().rm_statement(&statement);
                    }
                } else {
                    client.portal_store().rm_statement(&name.value);
                    held.remove(&name.value);
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
        let deep = crate::stack::is_deep(sql);
        crate::stack::on_stack_for(deep, self.prepare(sql, types))
            .await
            .map(Some)
    }

    fn get_parameter_types(&self, stmt: &Arc<Prepared>) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types())
    }

    fn get_result_schema(
        &self,
        stmt: &Arc<Prepared>,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = column_format.unwrap_or(&Format::UnifiedText);
        // `EXECUTE name(…)` answers the rows of the statement it names.
        match self.executed_statement(stmt) {
            Some(named) => Ok(named.result_fields(format)),
            None => Ok(stmt.result_fields(format)),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Arc<Prepared>;
    type QueryParser = Session;

    fn query_parser(&self) -> Arc<Session> {
        self.session.clone()
    }

    /// pgwire's Execute, after the block a `ROLLBACK TO` makes usable again is marked so
    /// (see [`Connection::resume_block`]).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if let Some(Entry::Value(portal)) = client.portal_store().get_portal(name) {
                self.resume_block(client, &portal.statement.statement.statement);
            }
        }
        let result = self._on_execute(client, message).await;
        self.after_error(client, &result);
        result
    }

    /// Parse, with the session's named statements bounded (each holds a plan).
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let named = message.name.clone().filter(|n| !n.is_empty());
        if let Some(name) = &named {
            let max = self.admission.limits.max_prepared_statements;
            let held = self.named_statements.lock();
            if !held.contains(name) && held.len() >= max {
                return Err(user_error(
                    "53400",
                    format!(
                        "too many prepared statements: this session holds {max} \
                         (max_prepared_statements); close or DEALLOCATE some"
                    ),
                ));
            }
        }
        let name = named.clone().unwrap_or_else(|| DEFAULT_NAME.to_owned());
        let parsed = StoredStatement::parse(client, &message, self.query_parser())
            .await
            .map_err(|e| crate::positions::at(e, &message.query))?;
        match parsed {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(&name),
        }
        // Counted once it is held: a Parse that failed holds nothing.
        if let Some(name) = named {
            self.named_statements.lock().insert(name);
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                client.portal_store().rm_statement(name);
                self.named_statements.lock().remove(name);
            }
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client
            .send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Arc<Prepared>>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Arc<Prepared>>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error
            && let Some(answer) = self
                .in_failed_block(&portal.statement.statement.statement)
                .await?
        {
            return Ok(answer);
        }
        let timer = GATEWAY.statement("extended");
        let deep = portal.statement.statement.deep;
        let result = self
            .timed(deep, self.execute_portal(portal))
            .await
            .map_err(|e| crate::positions::at(e, &portal.statement.statement.sql));
        timer.finish(&result);
        result
    }
}

impl Connection {
    /// In a block that an error aborted, `ROLLBACK TO` a savepoint the block holds brings it
    /// back to the savepoint's state, usable again: the status pgwire starts the statement
    /// from is set to in-transaction, so its ReadyForQuery says `T` (pgwire itself never
    /// moves from `E` to `T`). A `ROLLBACK TO` that then fails marks the block failed again.
    fn resume_block<C: ClientInfo>(&self, client: &mut C, statement: &DFStatement) {
        if self.session.resumes_block(statement) {
            client.set_transaction_status(TransactionStatus::Transaction);
        }
    }

    /// A statement that failed and left no block open (a COMMIT that failed: 40001, 08007)
    /// leaves the session idle, as PostgreSQL's does; pgwire would report the block failed.
    fn after_error<C: ClientInfo, T>(&self, client: &mut C, result: &PgWireResult<T>) {
        if result.is_err() && !self.session.txn.is_open() {
            client.set_transaction_status(TransactionStatus::Idle);
        }
    }

    /// In a block that an error aborted: the answer to `statement` if it ends the block as
    /// a rollback (`COMMIT` does), `None` if it runs as it is (`ROLLBACK`); 25P02 otherwise.
    async fn in_failed_block(&self, statement: &DFStatement) -> PgWireResult<Option<Response>> {
        match crate::transactions::in_failed_block(statement)? {
            InFailedBlock::Runs => Ok(None),
            InFailedBlock::RollsBack => {
                let rollback = vecraft_planner::parse::parse_sql("ROLLBACK")
                    .map_err(crate::errors::parse_error)?
                    .remove(0);
                Ok(Some(self.session.run(rollback).await?))
            }
        }
    }

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

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(startup::Startup(self.0.clone()))
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.0.cancels.clone()))
    }
}
