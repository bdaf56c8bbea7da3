//! `CROSS JOIN LATERAL (SELECT … ORDER BY embedding <-> outer.v LIMIT k)`: the k nearest rows
//! for each outer row. DataFusion decorrelates lateral subqueries whose outer references are
//! in filters, not ones that sort by them; this rule plans that shape as a ranking instead:
//! each outer row numbered, joined with every inner row, the inner rows ranked per outer row
//! by the subquery's own ORDER BY (outer references now plain columns), and the ranks the
//! subquery's OFFSET and LIMIT keep. The answer is PostgreSQL's nested loop's, row for row.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef, Result, TableReference};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::Sort as SortExpr;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, Filter, Join, JoinType, Limit, LogicalPlan, LogicalPlanBuilder, Sort,
    SubqueryAlias, col, lit,
};
use datafusion::optimizer::AnalyzerRule;

/// The helper columns the plan adds and takes away again.
const OUTER_ROW: &str = "__lateral_outer_row";
const RANK: &str = "__lateral_rank";

#[derive(Debug, Default)]
pub struct LateralTopK;

impl AnalyzerRule for LateralTopK {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        Ok(plan
            .transform_up_with_subqueries(|node| match node {
                LogicalPlan::Join(join) => ranked(join),
                other => Ok(Transformed::no(other)),
            })?
            .data)
    }

    fn name(&self) -> &str {
        "lateral_top_k"
    }
}

/// The parts of a lateral subquery of the shape this rule plans.
struct TopK {
    alias: TableReference,
    skip: usize,
    fetch: usize,
    order: Vec<SortExpr>,
    /// The subquery's conditions on the outer row.
    correlated: Option<Expr>,
    input: Arc<LogicalPlan>,
}

/// `SubqueryAlias(alias, Subquery(Limit([Projection(columns)] Sort(input))))` whose outer
/// references are in the sort keys and in the input's filters, each reading the input's
/// output columns.
fn top_k(right: &LogicalPlan) -> Option<TopK> {
    let LogicalPlan::SubqueryAlias(SubqueryAlias { input, alias, .. }) = right else {
        return None;
    };
    let LogicalPlan::Subquery(subquery) = input.as_ref() else {
        return None;
    };
    let LogicalPlan::Limit(limit @ Limit { input: sorted, .. }) = subquery.subquery.as_ref() else {
        return None;
    };
    // `SELECT name … ORDER BY embedding <-> …`: DataFusion sorts below the projection that
    // drops the sort's columns; the columns it keeps are read from below it.
    let sorted = match sorted.as_ref() {
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            &p.input
        }
        _ => sorted,
    };
    let LogicalPlan::Sort(Sort {
        expr,
        input,
        fetch: None,
    }) = sorted.as_ref()
    else {
        return None;
    };
    let skip = match limit.get_skip_type().ok()? {
        datafusion::logical_expr::logical_plan::SkipType::Literal(n) => n,
        _ => return None,
    };
    let fetch = match limit.get_fetch_type().ok()? {
        datafusion::logical_expr::logical_plan::FetchType::Literal(Some(n)) => n,
        _ => return None,
    };
    // The subquery's WHERE conditions on the outer row are applied after the join.
    let mut correlated = Vec::new();
    let input = Arc::unwrap_or_clone(Arc::clone(input))
        .transform_down(|node| match node {
            LogicalPlan::Filter(filter) if filter.predicate.contains_outer() => {
                let (outer, local): (Vec<&Expr>, Vec<&Expr>) = split_conjunction(&filter.predicate)
                    .into_iter()
                    .partition(|e| e.contains_outer());
                correlated.extend(outer.into_iter().cloned());
                let plan = match conjunction(local.into_iter().cloned()) {
                    Some(local) => LogicalPlan::Filter(Filter::try_new(local, filter.input)?),
                    None => Arc::unwrap_or_clone(filter.input),
                };
                Ok(Transformed::yes(plan))
            }
            other => Ok(Transformed::no(other)),
        })
        .ok()?
        .data;
    if input.contains_outer_reference() {
        return None;
    }
    let input = widened(input, &correlated)?;
    let inner = input.schema();
    let order = expr
        .iter()
        .map(|key| {
            let e = outside(&key.expr, inner, alias)?;
            Some(SortExpr::new(e, key.asc, key.nulls_first))
        })
        .collect::<Option<Vec<_>>>()?;
    let correlated = correlated
        .iter()
        .map(|e| outside(e, inner, alias))
        .collect::<Option<Vec<_>>>()?;
    Some(TopK {
        alias: alias.clone(),
        skip,
        fetch,
        order,
        correlated: conjunction(correlated),
        input: Arc::new(input),
    })
}

/// `input` giving also the columns of its own input that `conditions` read (`WHERE q.id <>
/// p.id` in a subquery that selects other columns): its projection widened; `None` if it is
/// no projection and does not give them already.
fn widened(input: LogicalPlan, conditions: &[Expr]) -> Option<LogicalPlan> {
    let mut needed = Vec::new();
    for condition in conditions {
        for column in condition.column_refs() {
            if !input.schema().has_column(column) && !needed.contains(column) {
                needed.push(column.clone());
            }
        }
    }
    if needed.is_empty() {
        return Some(input);
    }
    let LogicalPlan::Projection(projection) = input else {
        return None;
    };
    if !needed
        .iter()
        .all(|c| projection.input.schema().has_column(c))
    {
        return None;
    }
    let mut exprs = projection.expr;
    exprs.extend(needed.into_iter().map(Expr::Column));
    let widened = datafusion::logical_expr::Projection::try_new(exprs, projection.input).ok()?;
    Some(LogicalPlan::Projection(widened))
}

/// `e` as it reads outside the subquery: outer references as plain columns, the input's
/// columns under the subquery's alias. `None` if it reads a column the input does not give.
fn outside(e: &Expr, inner: &DFSchemaRef, alias: &TableReference) -> Option<Expr> {
    let mut readable = true;
    let rewritten = e
        .clone()
        .transform_up(|e| {
            Ok(match e {
                Expr::OuterReferenceColumn(_, column) => Transformed::yes(Expr::Column(column)),
                Expr::Column(c) if inner.has_column(&c) => {
                    Transformed::yes(Expr::Column(Column::new(Some(alias.clone()), c.name)))
                }
                Expr::Column(c) => {
                    readable = false;
                    Transformed::no(Expr::Column(c))
                }
                other => Transformed::no(other),
            })
        })
        .ok()?
        .data;
    readable.then_some(rewritten)
}

/// An inner lateral join with a [`TopK`] on its right, planned as a ranking.
fn ranked(join: Join) -> Result<Transformed<LogicalPlan>> {
    let shape = match (join.join_type, join.on.is_empty()) {
        (JoinType::Inner, true) => top_k(&join.right),
        _ => None,
    };
    let Some(k) = shape else {
        return Ok(Transformed::no(LogicalPlan::Join(join)));
    };
    let outer_columns: Vec<Expr> = join
        .left
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let numbered = LogicalPlanBuilder::from(Arc::clone(&join.left))
        .window(vec![row_number().alias(OUTER_ROW)])?
        .build()?;
    let inner = LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(k.input, k.alias.clone())?);
    // The subquery's own columns (not those widened in for its conditions).
    let inner_columns: Vec<Expr> = join
        .right
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let rank = row_number()
        .partition_by(vec![col(OUTER_ROW)])
        .order_by(k.order)
        .build()?
        .alias(RANK);
    let kept = col(RANK)
        .gt(lit(k.skip as u64))
        .and(col(RANK).lt_eq(lit(k.skip.saturating_add(k.fetch) as u64)));
    let mut plan = LogicalPlanBuilder::from(numbered).cross_join(inner)?;
    if let Some(condition) = k.correlated {
        plan = plan.filter(condition)?;
    }
    let mut plan = plan.window(vec![rank])?.filter(kept)?;
    if let Some(on) = join.filter {
        plan = plan.filter(on)?;
    }
    let columns = outer_columns
        .into_iter()
        .chain(inner_columns)
        .collect::<Vec<_>>();
    Ok(Transformed::yes(plan.project(columns)?.build()?))
}
