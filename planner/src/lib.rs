//! `vecraft-planner`: DataFusion planning for Vecraft's SQL surface.
//!
//! This first slice gives DataFusion pgvector's language: the `vector(n)` type
//! ([`types`]), its text form ([`vector_text`]), its functions ([`functions`]) and operators
//! ([`operators`]), with pgvector's errors and SQLSTATEs ([`error`]); collections as tables
//! ([`table`], reading a [`collection::CollectionSource`]) with filters pushed into storage
//! ([`filters`]); and the KNN rewrite that turns `ORDER BY distance LIMIT k` into an index
//! search ([`knn`]). DDL, DML and the plan cache come next (see issue #3).

pub mod array_text;
pub mod array_to_vector;
pub mod backup_sql;
pub mod bit_udfs;
pub mod bits;
pub mod casts;
pub mod collection;
pub mod direct;
pub mod dml;
pub mod error;
pub mod filters;
pub mod foreign_keys;
pub mod functions;
pub mod guards;
pub mod halfvec;
pub mod insert_select;
pub mod json;
pub mod jsonpath;
pub mod knn;
pub mod lateral;
pub mod names;
pub mod operators;
pub mod params;
pub mod parse;
pub mod placeholders;
pub mod returning;
pub mod role_words;
pub mod sparsevec;
pub mod sparsevec_udfs;
pub mod table;
pub mod text_types;
pub mod transaction;
pub mod types;
pub mod update;
pub mod upsert;
pub mod vector_aggregates;
pub mod vector_in;
pub mod vector_math;
pub mod vector_state;
pub mod vector_text;

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

/// Adds the vector type, functions and operators to a session being built.
pub fn install(mut builder: SessionStateBuilder) -> SessionStateBuilder {
    let mut expr_planners = builder.expr_planners().clone().unwrap_or_default();
    expr_planners.insert(0, Arc::new(operators::VectorOperators));
    expr_planners.insert(0, Arc::new(vector_aggregates::VectorAggregates));
    let mut functions: Vec<_> = builder
        .scalar_functions()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(guards::guard)
        .collect();
    functions.extend(functions::all_udfs());
    functions.extend(text_types::all_udfs());
    functions.push(jsonpath::jsonb_path_match());
    functions.push(Arc::new(array_to_vector::array_to_vector()));
    functions.push(Arc::new(array_to_vector::array_to_halfvec()));
    functions.extend(vector_state::all_udfs());
    functions.extend(sparsevec_udfs::all_udfs());
    functions.extend(bit_udfs::all_udfs());
    functions.extend(vector_math::VectorMath::ALL.iter().map(|f| f.udf()));
    builder
        .with_expr_planners(expr_planners)
        .with_scalar_functions(functions)
        .with_type_planner(Arc::new(types::VectorTypes))
        .with_analyzer_rule(Arc::new(casts::VectorCasts))
        .with_analyzer_rule(Arc::new(lateral::LateralTopK))
        .with_physical_optimizer_rule(Arc::new(knn::KnnRewrite))
}

/// Parses and plans one statement of `sql` in `ctx` (PostgreSQL rules, see [`parse`]).
pub async fn sql(
    ctx: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<datafusion::dataframe::DataFrame> {
    let mut statements = parse::parse_sql(sql)?;
    if statements.len() != 1 {
        return datafusion::common::plan_err!("expected one statement, got {}", statements.len());
    }
    statement(ctx, statements.remove(0)).await
}

/// Plans one parsed statement in `ctx`.
pub async fn statement(
    ctx: &SessionContext,
    statement: datafusion::sql::parser::Statement,
) -> datafusion::error::Result<datafusion::dataframe::DataFrame> {
    let plan = logical_plan(ctx, statement).await?;
    ctx.execute_logical_plan(plan).await
}

/// The logical plan of one parsed statement: DataFusion's, after the rewrites that give it
/// pgvector's literals and PostgreSQL's ON CONFLICT, with RETURNING put back on a write.
pub async fn logical_plan(
    ctx: &SessionContext,
    mut statement: datafusion::sql::parser::Statement,
) -> datafusion::error::Result<datafusion::logical_expr::LogicalPlan> {
    dml::refuse_always_identity(ctx, &statement).await?;
    dml::cast_vector_values(ctx, &mut statement).await?;
    let keep = dml::rewrite_on_conflict(ctx, &mut statement).await?;
    let alias = returning::table_alias(&statement);
    let returning = returning::take_returning(&mut statement);
    let state = ctx.state();
    let plan = match insert_select::plan(ctx, &statement).await? {
        Some(plan) => plan,
        None => state.statement_to_plan(statement).await?,
    };
    let plan = dml::keeping(plan, keep)?;
    match returning {
        Some(items) => returning::plan(&state, plan, &items, alias),
        None => Ok(plan),
    }
}

/// Session settings: PostgreSQL dialect, and the `hnsw.*` and `vecraft.*` settings.
pub fn session_config() -> SessionConfig {
    SessionConfig::new()
        .set_str("datafusion.sql_parser.dialect", "postgres")
        // `timestamptz` values are instants shown in UTC, PostgreSQL's TimeZone here.
        .set_str(
            "datafusion.execution.time_zone",
            vecraft_storage::schema::UTC,
        )
        .with_information_schema(false)
        .with_option_extension(knn::HnswOptions::default())
        .with_option_extension(knn::VecraftOptions::default())
}

/// A session that parses PostgreSQL SQL and knows pgvector's type, functions and operators.
pub fn new_session() -> SessionContext {
    new_session_with(Arc::new(RuntimeEnv::default()))
}

/// A session whose queries take memory from `runtime`'s pool.
pub fn new_session_with(runtime: Arc<RuntimeEnv>) -> SessionContext {
    let config = session_config();
    let state = install(
        SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features(),
    )
    .build();
    SessionContext::new_with_state(state)
}

#[cfg(test)]
mod tests;
