//! pgvector's operators, planned as our UDFs: `<->` L2, `<=>` cosine, `<#>` negative inner
//! product, `<+>` L1.
//!
//! DataFusion's own SQL planner would refuse `<->`/`<#>` and, worse, plan `<=>` as MySQL's
//! null-safe equality (`IS NOT DISTINCT FROM`), so this `ExprPlanner` must see every binary
//! operator first. It only works with a PostgreSQL-dialect parse (the dialect tokenises `<->`
//! and the custom operators).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable};
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
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        match operator_function(&expr.op) {
            Some(f) => {
                let left = typed_like(expr.left, &expr.right, schema);
                let right = typed_like(expr.right, &left, schema);
                Ok(PlannerResult::Planned(f.udf().call(vec![left, right])))
            }
            None => Ok(PlannerResult::Original(expr)),
        }
    }
}

/// A parameter of unknown type compared with a vector is a vector of the same dimensions, as
/// PostgreSQL resolves `embedding <-> $1`; clients then learn it from the statement.
fn typed_like(operand: Expr, other: &Expr, schema: &DFSchema) -> Expr {
    match operand {
        Expr::Placeholder(p) if p.field.is_none() => {
            let field = match other.to_field(schema) {
                Ok((_, f)) if matches!(f.data_type(), DataType::FixedSizeList(..)) => Some(f),
                _ => None,
            };
            Expr::Placeholder(Placeholder {
                id: p.id,
                field: field.map(|f| Arc::new(f.as_ref().clone().with_name(""))),
            })
        }
        other => other,
    }
}
