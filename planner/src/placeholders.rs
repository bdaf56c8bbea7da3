//! Types for the parameters DataFusion leaves untyped where PostgreSQL types them: the
//! operand of a cast (`$1::float8`, `$1::vector`) and the argument of a function with one
//! signature (`pg_sleep($1)`). Clients learn these types from ParameterDescription and
//! encode their values by them; an untyped parameter is sent as text, or refused by drivers
//! such as tokio-postgres.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::expr::{Cast, Placeholder, ScalarFunction, TryCast};
use datafusion::logical_expr::{Expr, LogicalPlan, TypeSignature};

/// `plan` with every placeholder that a cast or a one-signature function types, typed.
pub fn type_placeholders(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let typed = node.map_expressions(|e| e.transform_up(|e| Ok(typed_operands(e))))?;
        if typed.transformed {
            // A typed argument may change what an expression returns.
            typed.map_data(|node| node.recompute_schema())
        } else {
            Ok(typed)
        }
    })
    .map(|t| t.data)
}

fn typed_operands(e: Expr) -> Transformed<Expr> {
    match e {
        Expr::Cast(Cast { expr, field }) if untyped(&expr) => {
            let expr = Box::new(with_type(*expr, field.data_type()));
            Transformed::yes(Expr::Cast(Cast { expr, field }))
        }
        Expr::TryCast(TryCast { expr, field }) if untyped(&expr) => {
            let expr = Box::new(with_type(*expr, field.data_type()));
            Transformed::yes(Expr::TryCast(TryCast { expr, field }))
        }
        Expr::ScalarFunction(f) if f.args.iter().any(untyped) => {
            let Some(types) = argument_types(&f.func.signature().type_signature, f.args.len())
            else {
                return Transformed::no(Expr::ScalarFunction(f));
            };
            let args = f
                .args
                .into_iter()
                .zip(types)
                .map(|(a, t)| if untyped(&a) { with_type(a, &t) } else { a })
                .collect();
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(f.func, args)))
        }
        e => Transformed::no(e),
    }
}

fn untyped(e: &Expr) -> bool {
    matches!(e, Expr::Placeholder(Placeholder { field: None, .. }))
}

fn with_type(e: Expr, data_type: &DataType) -> Expr {
    match e {
        Expr::Placeholder(Placeholder { id, field: None }) => {
            let field = Arc::new(Field::new("", data_type.clone(), true));
            Expr::Placeholder(Placeholder::new_with_field(id, Some(field)))
        }
        e => e,
    }
}

/// The argument types a signature allows for `n` arguments, when it allows only one choice.
fn argument_types(signature: &TypeSignature, n: usize) -> Option<Vec<DataType>> {
    match signature {
        TypeSignature::Exact(types) if types.len() == n => Some(types.clone()),
        TypeSignature::Uniform(count, types) if *count == n && types.len() == 1 => {
            Some(vec![types[0].clone(); n])
        }
        TypeSignature::OneOf(choices) => {
            let mut fitting = choices.iter().filter_map(|s| argument_types(s, n));
            let first = fitting.next()?;
            fitting.next().is_none().then_some(first)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn parameter_types(sql: &str) -> Vec<Option<DataType>> {
        let ctx = SessionContext::new();
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        let plan = type_placeholders(plan).unwrap();
        plan.get_parameter_types().unwrap().into_values().collect()
    }

    #[tokio::test]
    async fn casts_and_single_signature_functions_type_their_parameters() {
        assert_eq!(
            parameter_types("SELECT $1::double").await,
            [Some(DataType::Float64)]
        );
        assert_eq!(
            parameter_types("SELECT abs($1::int)").await,
            [Some(DataType::Int32)]
        );
        // Several signatures fit: left to the client, as before.
        assert_eq!(parameter_types("SELECT abs($1)").await, [None]);
    }
}
