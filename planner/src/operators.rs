//! pgvector's operators, planned as our UDFs: `<->` L2, `<=>` cosine, `<#>` negative inner
//! product, `<+>` L1.
//!
//! DataFusion's own SQL planner would refuse `<->`/`<#>` and, worse, plan `<=>` as MySQL's
//! null-safe equality (`IS NOT DISTINCT FROM`), so this `ExprPlanner` must see every binary
//! operator first. It only works with a PostgreSQL-dialect parse (the dialect tokenises `<->`
//! and the custom operators).

use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::functions::VectorFn;

#[derive(Debug, Default)]
pub struct VectorOperators;

/// The function an operator stands for, if it is one of pgvector's.
pub fn operator_function(op: &BinaryOperator) -> Option<VectorFn> {
    match op {
        BinaryOperator::LtDashGt => Some(VectorFn::L2Distance),
        BinaryOperator::Spaceship => Some(VectorFn::CosineDistance),
        BinaryOperator::Custom(name) if name == "<#>" => Some(VectorFn::NegativeInnerProduct),
        BinaryOperator::Custom(name) if name == "<+>" => Some(VectorFn::L1Distance),
        _ => None,
    }
}

impl ExprPlanner for VectorOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        _schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        match operator_function(&expr.op) {
            Some(f) => Ok(PlannerResult::Planned(
                f.udf().call(vec![expr.left, expr.right]),
            )),
            None => Ok(PlannerResult::Original(expr)),
        }
    }
}
