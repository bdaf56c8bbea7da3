//! Prepared statements: parsed and planned once, executed many times.
//!
//! A query keeps its logical plan (with `$n` placeholders) from Parse, and its physical plan
//! from the first execution on, when it can ([`vecraft_planner::params`]): later executions
//! only bind the parameters and run. The physical plan is planned again when a `SET` changed
//! the session's settings, and the whole statement when the catalog changed.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, Response};
use pgwire::error::PgWireResult;
use vecraft_planner::direct::DirectSearch;
use vecraft_planner::names::rename;
use vecraft_planner::params::{ParamSlots, placeholder_index, template};

use crate::encode;
use crate::errors::{to_pg, user_error};
use crate::metrics::GATEWAY;
use crate::session::{
    Answer, MAX_PREPARED, Session, answer_of, gateway_fields, is_gateway_statement,
};
use crate::settings::{SetAction, prepare_set};

/// Longer statement texts are not kept for reuse (a multi-row INSERT would hold its rows).
const MAX_CACHED_SQL_BYTES: usize = 4096;

pub struct Prepared {
    pub sql: String,
    pub statement: DFStatement,
    /// The catalog this was planned against.
    pub catalog_generation: u64,
    /// Whether its expressions nest deep enough to run on a stack of their own (and to
    /// collect its rows there rather than stream them).
    pub deep: bool,
    /// `None` for statements the gateway answers itself (they take no parameters).
    pub query: Option<PlannedQuery>,
    /// The parameter types the client declared at Parse (`None`: left to the server).
    pub declared: Vec<Option<Type>>,
}

pub struct PlannedQuery {
    pub logical: LogicalPlan,
    /// The result's columns as the client is told them: PostgreSQL's names
    /// ([`vecraft_planner::names`]), the plan's types.
    pub schema: SchemaRef,
    /// `$1`'s type first; `None` where nothing in the statement tells.
    pub param_types: Vec<Option<DataType>>,
    pub answer: Answer,
    kept: tokio::sync::Mutex<Kept>,
}

enum Kept {
    NotYet,
    /// This statement is planned per execution (see [`template`]).
    Never,
    Plan {
        physical: Arc<dyn ExecutionPlan>,
        slots: ParamSlots,
        /// Built once with the plan: making one copies the session's function registries.
        task: Arc<TaskContext>,
        settings_generation: u64,
        /// The plan, when it is only a collection search's columns, run without DataFusion's
        /// per-execution work (see [`DirectSearch`]).
        direct: Option<DirectSearch>,
    },
}

/// A deep statement's trees are dropped on a deep stack too: dropping recurses as deep as
/// they nest (see `stack.rs`).
impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.deep {
            return;
        }
        let placeholder = DFStatement::Statement(Box::new(Statement::Commit {
            chain: false,
            end: false,
            modifier: None,
        }));
        let statement = std::mem::replace(&mut self.statement, placeholder);
        let query = self.query.take();
        stacker::grow(crate::stack::DEEP_STACK_BYTES, move || {
            drop((statement, query))
        });
    }
}

impl Prepared {
    /// The types a client is told for the parameters.
    pub fn param_types(&self) -> Vec<Type> {
        self.query.as_ref().map_or_else(Vec::new, |q| {
            q.param_types
                .iter()
                .map(|t| {
                    t.as_ref()
                        .map_or(Type::UNKNOWN, crate::params::pg_param_type)
                })
                .collect()
        })
    }

    /// The result columns; none for statements that return no rows.
    pub fn result_fields(&self, format: &Format) -> Vec<FieldInfo> {
        match (&self.query, &self.statement) {
            (Some(q), _) if q.answer.is_rows() => encode::fields_with(&q.schema, format).to_vec(),
            (None, DFStatement::Statement(s)) => gateway_fields(s, format),
            _ => Vec::new(),
        }
    }

    /// The type a parameter's value must have (text where the statement does not say).
    pub fn param_target(&self, index: usize) -> DataType {
        self.query
            .as_ref()
            .and_then(|q| q.param_types.get(index).cloned().flatten())
            .unwrap_or(DataType::Utf8)
    }
}

impl Session {
    /// The prepared form of `sql` without declared parameter types, if this session has it.
    pub fn cached(&self, sql: &str) -> Option<Arc<Prepared>> {
        let generation = self.catalog.generation();
        let cache = self.prepared.lock();
        let p = cache.get(&(sql.to_string(), Vec::new()))?;
        (p.catalog_generation == generation).then(|| p.clone())
    }

    /// The prepared form of `sql`, from this session's cache when the same text (and declared
    /// types) was prepared before against the same catalog.
    pub async fn prepare(
        &self,
        sql: &str,
        declared: &[Option<Type>],
    ) -> PgWireResult<Arc<Prepared>> {
        let key = (
            sql.to_string(),
            declared
                .iter()
                .map(|t| t.as_ref().map_or(0, |t| t.oid()))
                .collect::<Vec<_>>(),
        );
        let generation = self.catalog.generation();
        if let Some(p) = self.prepared.lock().get(&key)
            && p.catalog_generation == generation
        {
            return Ok(p.clone());
        }
        let planned = match self.plan_statement(sql, declared).await {
            // A table another gateway of the cluster created a moment ago: look again.
            Err(e) if undefined_table(&e) && self.catalog.refresh() => {
                self.plan_statement(sql, declared).await
            }
            planned => planned,
        };
        let prepared = Arc::new(planned?);
        if sql.len() > MAX_CACHED_SQL_BYTES || prepared.deep {
            return Ok(prepared); // a bulk INSERT's text: planned once, not worth keeping
        }
        let mut cache = self.prepared.lock();
        if cache.len() >= MAX_PREPARED {
            cache.clear();
        }
        cache.insert(key, prepared.clone());
        Ok(prepared)
    }

    async fn plan_statement(&self, sql: &str, declared: &[Option<Type>]) -> PgWireResult<Prepared> {
        let generation = self.catalog.generation();
        let mut statements =
            vecraft_planner::parse::parse_sql(sql).map_err(crate::errors::parse_error)?;
        if statements.len() != 1 {
            return Err(user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let mut statement = statements.remove(0);
        self.follow_search_path(&mut statement);
        crate::params::cast_declared_arrays(&mut statement, declared);
        if let DFStatement::Statement(s) = &mut statement {
            let ignored_set = matches!(prepare_set(s)?, SetAction::Ignore);
            if ignored_set || is_gateway_statement(s) {
                return Ok(Prepared {
                    sql: sql.to_string(),
                    statement,
                    catalog_generation: generation,
                    deep: crate::stack::is_deep(sql),
                    query: None,
                    declared: declared.to_vec(),
                });
            }
        }
        self.sync_tables()?;
        crate::pg_catalog::rewrite(&mut statement);
        vecraft_planner::parse::check_shape(&statement).map_err(|e| to_pg(&e))?;
        let names = vecraft_planner::names::output_names(&mut statement);
        let answer = answer_of(&statement);
        let logical = vecraft_planner::logical_plan(&self.ctx, statement.clone())
            .await
            .and_then(vecraft_planner::placeholders::type_placeholders)
            .map_err(|e| to_pg(&e))?;
        let types = logical.get_parameter_types().map_err(|e| to_pg(&e))?;
        let mut param_types = Vec::new();
        for (id, data_type) in types {
            let Some(index) = placeholder_index(&id) else {
                return Err(user_error("42P02", format!("there is no parameter {id}")));
            };
            if param_types.len() <= index {
                param_types.resize(index + 1, None);
            }
            param_types[index] = data_type;
        }
        for index in limit_params(&logical) {
            if let Some(t @ None) = param_types.get_mut(index) {
                *t = Some(DataType::Int64); // LIMIT $n / OFFSET $n take a bigint
            }
        }
        let live = reads_live_tables(&logical);
        let schema = match crate::explain::verbosity(&logical) {
            Some(_) => crate::explain::schema(),
            None => Arc::new(rename(logical.schema().as_arrow(), names.as_deref())),
        };
        Ok(Prepared {
            sql: sql.to_string(),
            statement: statement.clone(),
            catalog_generation: generation,
            deep: crate::stack::is_deep(sql),
            declared: declared.to_vec(),
            query: Some(PlannedQuery {
                logical,
                schema,
                param_types,
                answer,
                kept: tokio::sync::Mutex::new(if live { Kept::Never } else { Kept::NotYet }),
            }),
        })
    }

    /// Runs `prepared` with `params` bound, results in `format`.
    pub async fn execute(
        &self,
        prepared: &Arc<Prepared>,
        params: Vec<ScalarValue>,
        format: &Format,
    ) -> PgWireResult<Response> {
        if let DFStatement::Statement(s) = &prepared.statement {
            self.check_privileges(s)?;
        }
        let Some(query) = &prepared.query else {
            if !params.is_empty() {
                return Err(user_error("08P01", "this statement takes no parameters"));
            }
            let DFStatement::Statement(s) = &prepared.statement else {
                return Err(user_error("XX000", "not a gateway statement"));
            };
            return self.run_gateway(s, format).await;
        };
        if prepared.catalog_generation != self.catalog.generation() {
            // Tables changed under the plan: plan the text again.
            let again = Arc::new(
                self.plan_statement(&prepared.sql, &prepared.declared)
                    .await?,
            );
            return Box::pin(self.execute(&again, params, format)).await;
        }
        if params.len() != query.param_types.len() {
            return Err(user_error(
                "08P01",
                format!(
                    "bind message supplies {} parameters, but prepared statement requires {}",
                    params.len(),
                    query.param_types.len()
                ),
            ));
        }
        let schema = Arc::clone(&query.schema);
        if let Some(verbose) = crate::explain::verbosity(&query.logical) {
            let plan = query.logical.clone();
            let plan = plan
                .with_param_values(ParamValues::List(
                    params.into_iter().map(Into::into).collect(),
                ))
                .map_err(|e| to_pg(&e))?;
            let frame = self.ctx.execute_logical_plan(plan).await;
            let batches = frame.map_err(|e| to_pg(&e))?.collect().await;
            let batches = batches.map_err(|e| to_pg(&e))?;
            let plan = crate::explain::query_plan(&batches, verbose).map_err(|e| to_pg(&e))?;
            return self.respond(Answer::Rows("SELECT"), &schema, &[plan], format);
        }
        if query.answer.keeps_plan()
            && let Some(batches) = self.run_kept(query, &params).await?
        {
            return self.respond(query.answer, &schema, &batches, format);
        }
        let plan = query
            .logical
            .clone()
            .with_param_values(ParamValues::List(
                params.into_iter().map(Into::into).collect(),
            ))
            .map_err(|e| to_pg(&e))?;
        let frame = self
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| to_pg(&e))?;
        if query.answer.is_query() {
            let batches = frame.execute_stream().await.map_err(|e| to_pg(&e))?;
            return self
                .respond_stream(&schema, batches, format, prepared.deep)
                .await;
        }
        let batches = frame.collect().await.map_err(|e| to_pg(&e))?;
        self.respond(query.answer, &schema, &batches, format)
    }

    /// Runs the kept physical plan of `query` (planning it first if needed); `None` when the
    /// statement is planned per execution instead.
    async fn run_kept(
        &self,
        query: &PlannedQuery,
        params: &[ScalarValue],
    ) -> PgWireResult<Option<Vec<datafusion::arrow::array::RecordBatch>>> {
        // `state_ref`, not `state()`: cloning a session state costs more than a search.
        let cache_on = self
            .ctx
            .state_ref()
            .read()
            .config()
            .options()
            .extensions
            .get::<vecraft_planner::knn::VecraftOptions>()
            .is_none_or(|o| o.plan_cache);
        if !cache_on {
            return Ok(None);
        }
        let mut kept = query.kept.lock().await;
        let settings = self.settings_generation();
        let stale = match &*kept {
            Kept::Never => return Ok(None),
            Kept::NotYet => true,
            Kept::Plan {
                settings_generation,
                ..
            } => *settings_generation != settings,
        };
        if stale {
            let slots = ParamSlots::default();
            let types: Vec<DataType> = query
                .param_types
                .iter()
                .map(|t| t.clone().unwrap_or(DataType::Null))
                .collect();
            let Some(plan) = template(&query.logical, &types, &slots) else {
                *kept = Kept::Never;
                return Ok(None);
            };
            match self.ctx.state().create_physical_plan(&plan).await {
                Ok(physical) => {
                    GATEWAY.plans_built.inc();
                    *kept = Kept::Plan {
                        direct: DirectSearch::of(&physical),
                        physical,
                        slots,
                        task: self.ctx.task_ctx(),
                        settings_generation: settings,
                    }
                }
                Err(_) => {
                    // Something in the plan needs its values while planning.
                    *kept = Kept::Never;
                    return Ok(None);
                }
            }
        }
        let Kept::Plan {
            physical,
            slots,
            task,
            direct,
            ..
        } = &*kept
        else {
            return Ok(None);
        };
        slots.set(params.to_vec());
        if !stale {
            GATEWAY.plans_reused.inc();
        }
        // Collected while `kept` is held: the plan reads its parameters from the shared
        // slots as it runs, so a stream left to run later could read another execution's.
        if let Some(direct) = direct {
            GATEWAY.plans_direct.inc();
            return direct.run(task).await.map(Some).map_err(|e| to_pg(&e));
        }
        let plan = reset_plan_states(physical.clone()).map_err(|e| to_pg(&e))?;
        let batches = collect(plan, task.clone()).await.map_err(|e| to_pg(&e))?;
        Ok(Some(batches))
    }
}

/// The parameters used in `LIMIT` or `OFFSET`, which DataFusion leaves untyped.
fn limit_params(plan: &LogicalPlan) -> Vec<usize> {
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Limit(limit) = node {
            for e in [&limit.skip, &limit.fetch].into_iter().flatten() {
                let _ = e.apply(|e| {
                    if let Expr::Placeholder(p) = e {
                        found.extend(placeholder_index(&p.id));
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Whether `plan` reads a table whose rows change without DDL (`vecraft_shards`, …): such a
/// plan is built again at every execution.
fn reads_live_tables(plan: &LogicalPlan) -> bool {
    plan.exists(|node| {
        Ok(matches!(node, LogicalPlan::TableScan(scan)
            if crate::pg_catalog::LIVE_TABLES.contains(&scan.table_name.table())))
    })
    .unwrap_or(true)
}

fn undefined_table(e: &pgwire::error::PgWireError) -> bool {
    matches!(e, pgwire::error::PgWireError::UserError(info) if info.code == "42P01")
}
