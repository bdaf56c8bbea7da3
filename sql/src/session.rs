//! One client's session: its own DataFusion context (a `SET` is seen only here), the tables
//! it sees (kept in step with the shared catalog), its prepared statements' plans, and the
//! statements the gateway answers itself ([`gateway`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Schema, UInt64Type};
use datafusion::common::config::{ConfigExtension, ExtensionOptions};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, ObjectType, Reset, Statement};
use futures::{StreamExt, stream};
use parking_lot::Mutex;
use pgwire::api::portal::Format;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::error::PgWireResult;
use tokio::time::Instant;
use vecraft_planner::collection::CollectionSource;
use vecraft_planner::foreign_keys::ForeignKeys;
use vecraft_planner::knn::{HnswOptions, VecraftOptions};
use vecraft_planner::parse::collection_options;
use vecraft_planner::table::CollectionTable;
use vecraft_planner::transaction::{TransactionSlot, TxnSource};

use crate::catalog::Catalog;
use crate::collections;
use crate::copy::CopyIn;
use crate::ddl::schema_of;
use crate::encode;
use crate::encode::DeadlineExt;
use crate::errors::{to_pg, user_error};
use crate::handler::internal_error;
use crate::idents::shown;
use crate::limits::Limits;
use crate::prepared::Prepared;
use crate::schemas::table_reference;
use crate::settings::{
    STATEMENT_TIMEOUT, SetAction, TIMEOUTS, format_duration_ms, prepare_set, show_name, show_value,
    timeout_of,
};
use vecraft_storage::names::split_qualified;

mod gateway;

pub use gateway::{gateway_fields, is_gateway_statement, show_fields};

/// A statement's text and the OIDs of its declared parameter types.
type PreparedKey = (String, Vec<u32>);

pub struct Session {
    pub catalog: Arc<Catalog>,
    pub ctx: SessionContext,
    /// The catalog generation the registered tables reflect, their names, and their
    /// foreign keys (what writes through them check).
    tables: Mutex<(u64, HashSet<String>, Arc<ForeignKeys>)>,
    /// Statements prepared before, by text and declared parameter types: an unnamed statement
    /// sent again reuses its plan.
    pub(crate) prepared: Mutex<HashMap<PreparedKey, Arc<Prepared>>>,
    /// Statements SQL's `PREPARE name AS …` prepared, by name (`sql_prepare.rs`).
    pub(crate) sql_statements: Mutex<HashMap<String, Arc<Prepared>>>,
    /// Bumped by every `SET`: kept physical plans carry settings (`hnsw.ef_search`).
    settings_generation: AtomicU64,
    /// The COPY FROM STDIN in progress, if any.
    pub(crate) copy: Mutex<Option<CopyIn>>,
    /// `statement_timeout` in milliseconds; zero for none.
    statement_timeout_ms: AtomicU64,
    /// `idle_in_transaction_session_timeout` in milliseconds (zero for none), and the node's
    /// default for it (what RESET goes back to).
    idle_in_transaction_timeout_ms: AtomicU64,
    idle_in_transaction_default_ms: u64,
    /// The longest COPY line accepted.
    pub(crate) max_copy_line_bytes: usize,
    /// Inside BEGIN … COMMIT/ROLLBACK (`SET LOCAL` lasts until the block ends).
    pub(crate) in_transaction: AtomicBool,
    /// The settings `SET LOCAL` changed in this block, with the values they had.
    pub(crate) local_undo: Mutex<Vec<(String, String)>>,
    /// This session's identity among the gateway's advisory locks.
    advisory_session: u64,
    /// The transaction BEGIN opened, if any: its writes, staged until COMMIT, which the
    /// session's tables lay over what they read (`vecraft_planner::transaction`).
    pub(crate) txn: Arc<TransactionSlot>,
    /// Who logged in (`roles.rs`); `current_user` reads it.
    pub(crate) user: Arc<Mutex<crate::roles::SessionUser>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // A session's advisory locks end with it, as in PostgreSQL.
        self.catalog
            .advisory_locks
            .unlock_all(self.advisory_session);
    }
}

/// How many prepared plans a session keeps for reuse before it forgets them all.
pub const MAX_PREPARED: usize = 256;

impl Session {
    /// A session whose queries take memory from `runtime`'s pool.
    pub fn new(catalog: Arc<Catalog>, runtime: Arc<RuntimeEnv>, limits: &Limits) -> Arc<Session> {
        let ctx = vecraft_planner::new_session_with(runtime);
        // Registering a schema and functions on a fresh context cannot fail.
        let installed = crate::pg_catalog::install(&ctx, catalog.clone());
        ctx.register_udf(crate::sequences::nextval_udf(catalog.clone()));
        let advisory_session = catalog.advisory_locks.session_id();
        for udf in crate::advisory_locks::udfs(&catalog.advisory_locks, advisory_session) {
            ctx.register_udf(udf);
        }
        let user = Arc::new(Mutex::new(crate::roles::SessionUser::default()));
        for udf in crate::roles::user_udfs(&user) {
            ctx.register_udf(udf);
        }
        for udf in crate::pg_catalog::has_privilege_udfs(&catalog, &user) {
            ctx.register_udf(udf);
        }
        debug_assert!(installed.is_ok(), "{installed:?}");
        let idle_in_transaction_ms = limits.idle_in_transaction_session_timeout.as_millis() as u64;
        Arc::new(Session {
            catalog,
            ctx,
            tables: Mutex::new((u64::MAX, HashSet::new(), Arc::default())),
            prepared: Mutex::new(HashMap::new()),
            sql_statements: Mutex::new(HashMap::new()),
            settings_generation: AtomicU64::new(0),
            copy: Mutex::new(None),
            statement_timeout_ms: AtomicU64::new(0),
            idle_in_transaction_timeout_ms: AtomicU64::new(idle_in_transaction_ms),
            idle_in_transaction_default_ms: idle_in_transaction_ms,
            max_copy_line_bytes: limits.max_copy_line_bytes,
            in_transaction: AtomicBool::new(false),
            local_undo: Mutex::new(Vec::new()),
            advisory_session,
            txn: Arc::default(),
            user,
        })
    }

    /// How long a statement may run, if limited (`SET statement_timeout`).
    pub fn statement_timeout(&self) -> Option<Duration> {
        match self.statement_timeout_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// How long the session may sit idle inside a block; zero for ever.
    pub fn idle_in_transaction_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_in_transaction_timeout_ms.load(Ordering::Acquire))
    }

    /// The session's own setting `name` (one of `settings::TIMEOUTS`), in milliseconds.
    pub(crate) fn timeout_ms(&self, name: &str) -> &AtomicU64 {
        debug_assert!(TIMEOUTS.contains(&name), "{name}");
        match name {
            STATEMENT_TIMEOUT => &self.statement_timeout_ms,
            _ => &self.idle_in_transaction_timeout_ms,
        }
    }

    /// What RESET sets the session's own setting `name` to.
    pub(crate) fn timeout_default_ms(&self, name: &str) -> u64 {
        match name {
            STATEMENT_TIMEOUT => 0,
            _ => self.idle_in_transaction_default_ms,
        }
    }

    pub fn settings_generation(&self) -> u64 {
        self.settings_generation.load(Ordering::Acquire)
    }

    pub fn settings_changed(&self) {
        self.settings_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Makes the session's tables match the catalog (other sessions create and drop).
    pub fn sync_tables(&self) -> PgWireResult<()> {
        let generation = self.catalog.generation();
        let mut tables = self.tables.lock();
        if tables.0 == generation {
            return Ok(());
        }
        let registered = &mut tables.1;
        let names: HashSet<String> = self.catalog.names().into_iter().collect();
        // Each table as this session sees it: its transaction's writes over the table's rows
        // (foreign keys look up the other tables the same way).
        let sources: HashMap<String, Arc<dyn CollectionSource>> = self
            .catalog
            .all()
            .into_iter()
            .map(|(name, c)| {
                let source = self.in_transaction_source(&name, c);
                (name, source)
            })
            .collect();
        let keys = Arc::new(ForeignKeys::new(sources.clone()));
        for gone in registered.clone() {
            // Re-register every table: one may have been dropped and created again.
            self.ctx
                .deregister_table(table_reference(&self.ctx, &gone))
                .map_err(|e| to_pg(&e))?;
            registered.remove(&gone);
        }
        for name in names {
            if let Some(c) = self.catalog.get(&name) {
                // Planned at CREATE TABLE; a default that no longer plans must not make
                // every table of the session unreadable.
                let defaults =
                    crate::ddl::column_defaults(&self.ctx, &name, &c.schema()).unwrap_or_default();
                let source = match sources.get(&name) {
                    Some(source) => keys.source(&name, source.clone()),
                    None => continue,
                };
                let table = Arc::new(CollectionTable::new(source).with_defaults(defaults));
                self.ctx
                    .register_table(table_reference(&self.ctx, &name), table)
                    .map_err(|e| to_pg(&e))?;
                registered.insert(name);
            }
        }
        tables.0 = generation;
        tables.2 = keys;
        Ok(())
    }

    /// Collection `name` as SQL writes it: through its foreign keys (COPY).
    pub(crate) fn writable(&self, name: &str) -> PgWireResult<Arc<dyn CollectionSource>> {
        let collection = self.collection(name)?;
        self.sync_tables()?;
        let source = self.in_transaction_source(name, collection);
        Ok(self.tables.lock().2.source(name, source))
    }

    /// Collection `name` as this session's transaction sees it and writes to it.
    pub(crate) fn in_transaction_source(
        &self,
        name: &str,
        collection: Arc<vecraft_cluster::collection::Collection>,
    ) -> Arc<dyn CollectionSource> {
        Arc::new(TxnSource::new(name, collection, self.txn.clone()))
    }

    /// Runs one statement of a simple query.
    pub async fn run(&self, mut statement: DFStatement) -> PgWireResult<Response> {
        self.follow_search_path(&mut statement);
        if let DFStatement::Statement(s) = &mut statement {
            self.check_privileges(s)?;
            if is_gateway_statement(s) {
                return self.run_gateway(s, &Format::UnifiedText).await;
            }
            if let SetAction::Ignore = prepare_set(s)? {
                return self.run_gateway(s, &Format::UnifiedText).await;
            }
        }
        self.sync_tables()?;
        crate::pg_catalog::rewrite(&mut statement);
        vecraft_planner::parse::check_shape(&statement).map_err(|e| to_pg(&e))?;
        let names = vecraft_planner::names::output_names(&mut statement);
        let answer = answer_of(&statement);
        let frame = vecraft_planner::statement(&self.ctx, statement)
            .await
            .map_err(|e| to_pg(&e))?;
        let schema = vecraft_planner::names::rename(frame.schema().as_arrow(), names.as_deref());
        let verbosity = crate::explain::verbosity(frame.logical_plan());
        let batches = frame.collect().await.map_err(|e| to_pg(&e))?;
        if let Some(verbose) = verbosity {
            let plan = crate::explain::query_plan(&batches, verbose).map_err(|e| to_pg(&e))?;
            return self.respond(
                Answer::Rows("SELECT"),
                &crate::explain::schema(),
                &[plan],
                &Format::UnifiedText,
            );
        }
        self.respond(answer, &schema, &batches, &Format::UnifiedText)
    }

    /// The response to a statement that produced `batches`.
    pub fn respond(
        &self,
        answer: Answer,
        schema: &Schema,
        batches: &[RecordBatch],
        format: &Format,
    ) -> PgWireResult<Response> {
        match answer {
            Answer::Count(command) => {
                let count = batches
                    .first()
                    .and_then(|b| b.column(0).as_primitive_opt::<UInt64Type>())
                    .map_or(0, |c| c.value(0)) as usize;
                let tag = if command == "INSERT" {
                    Tag::new("INSERT").with_oid(0)
                } else {
                    Tag::new(command)
                };
                Ok(Response::Execution(tag.with_rows(count)))
            }
            Answer::Done(command) => {
                if command == "SET" {
                    self.settings_changed();
                }
                Ok(Response::Execution(Tag::new(command)))
            }
            Answer::Rows(command) => {
                let fields = encode::fields_with(schema, format);
                let mut rows = Vec::new();
                for batch in batches {
                    rows.extend(encode::rows(batch, &fields)?);
                }
                let mut response =
                    QueryResponse::new(fields, stream::iter(rows.into_iter().map(Ok)));
                response.set_command_tag(command);
                Ok(Response::Query(response))
            }
        }
    }

    /// The response to a query whose rows come from `batches` as they are produced: the first
    /// batch is awaited here (so an error in planning or the first search is the statement's
    /// error), the rest stream to the client as pgwire sends them, and a batch that comes past
    /// the statement's deadline ends the result with 57014. A `deep` statement's rows are all
    /// computed here, on the stack it runs on, and sent from memory.
    pub async fn respond_stream(
        &self,
        schema: &Schema,
        mut batches: SendableRecordBatchStream,
        format: &Format,
        deep: bool,
    ) -> PgWireResult<Response> {
        let fields = encode::fields_with(schema, format);
        let first = batches.next().await.transpose().map_err(|e| to_pg(&e))?;
        let deadline = self.statement_timeout().map(|t| Instant::now() + t);
        let rest = batches.map(|batch| batch.map_err(|e| to_pg(&e)));
        let rest = if deep {
            let all: Vec<_> = rest.collect().await;
            stream::iter(all).boxed()
        } else {
            rest.boxed()
        };
        let rows = stream::iter(first.map(Ok))
            .chain(rest)
            .take_until_deadline(deadline)
            .map({
                let fields = fields.clone();
                move |batch| batch.and_then(|b| encode::rows(&b, &fields))
            })
            .flat_map(|rows| match rows {
                Ok(rows) => stream::iter(rows.into_iter().map(Ok)).left_stream(),
                Err(e) => stream::iter([Err(e)]).right_stream(),
            });
        // A panic while later rows are produced ends the result with XX000, as one before the
        // first row does (`Connection::timed`), not the connection.
        let rows = std::panic::AssertUnwindSafe(rows)
            .catch_unwind()
            .map(|row| row.unwrap_or_else(|panic| Err(internal_error(panic.as_ref()))));
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }

    /// The collection `name`, or PostgreSQL's "relation does not exist" (42P01).
    pub(crate) fn collection(
        &self,
        name: &str,
    ) -> PgWireResult<Arc<vecraft_cluster::collection::Collection>> {
        self.catalog
            .get(name)
            .ok_or_else(|| user_error("42P01", format!("relation \"{name}\" does not exist")))
    }
}

/// What a planned statement answers, besides an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Rows, and a tag of this command and their number: `SELECT n`, or a write's RETURNING
    /// rows with `INSERT 0 n`, `UPDATE n`, `DELETE n`.
    Rows(&'static str),
    /// A write's tag with the number of rows it wrote (its plan returns one `count`).
    Count(&'static str),
    /// The tag alone (`SET`).
    Done(&'static str),
}

impl Answer {
    pub fn is_rows(self) -> bool {
        matches!(self, Answer::Rows(_))
    }

    /// Whether the statement is a query: its rows may stream to the client as they are
    /// produced, and its plan may be kept (a write's rows are all written before any is sent).
    pub fn is_query(self) -> bool {
        self == Answer::Rows("SELECT")
    }

    /// Whether the statement's physical plan may be kept between executions: a query's, or
    /// a plain INSERT's (`vecraft_planner::params::template` says which plans can be).
    pub fn keeps_plan(self) -> bool {
        matches!(self, Answer::Rows("SELECT") | Answer::Count("INSERT"))
    }
}

/// What `statement` answers.
pub fn answer_of(statement: &DFStatement) -> Answer {
    let DFStatement::Statement(s) = statement else {
        return Answer::Rows("SELECT");
    };
    let returning = vecraft_planner::returning::has_returning(statement);
    match (s.as_ref(), returning) {
        // PostgreSQL's INSERT tag carries an oid, always 0.
        (Statement::Insert(_), true) => Answer::Rows("INSERT 0"),
        (Statement::Insert(_), false) => Answer::Count("INSERT"),
        (Statement::Delete(_), true) => Answer::Rows("DELETE"),
        (Statement::Delete(_), false) => Answer::Count("DELETE"),
        (Statement::Update(_), true) => Answer::Rows("UPDATE"),
        (Statement::Update(_), false) => Answer::Count("UPDATE"),
        (Statement::Set(_), _) => Answer::Done("SET"),
        _ => Answer::Rows("SELECT"),
    }
}
