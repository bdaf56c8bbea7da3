//! Parameters bound at execution, so a prepared statement keeps its physical plan.
//!
//! Planning costs far more than a vector search (`DESIGN.md`, "The hot path"), so a prepared
//! statement is planned once with each `$n` replaced by a call to a [`ParamFn`]: a volatile
//! function of no arguments that returns the value last stored in its statement's
//! [`ParamSlots`]. Executing again stores the new values and runs the same physical plan. The
//! KNN rule reads a slot as the query vector when the search starts ([`QueryVector`]).
//!
//! Only plans that evaluate expressions while executing may be kept: a `VALUES` list or a
//! `LIMIT $1` is evaluated by the physical planner, so such statements are planned per
//! execution instead ([`template`] says which). The one-row `VALUES ($1, $2, …)` of an
//! `INSERT` is the exception that matters (drivers insert rows one prepared statement at a
//! time): it becomes a projection of its expressions over one empty row, which evaluates them
//! as it runs, so the INSERT keeps its plan too.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::DmlStatement;
use datafusion::logical_expr::{
    ColumnarValue, EmptyRelation, Expr, ExprSchemable, LogicalPlan, Projection, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Values, Volatility, WriteOp,
};
use parking_lot::RwLock;

/// The current values of one statement's parameters (`$1` is slot 0).
#[derive(Debug, Clone, Default)]
pub struct ParamSlots(Arc<RwLock<Vec<ScalarValue>>>);

impl ParamSlots {
    pub fn set(&self, values: Vec<ScalarValue>) {
        *self.0.write() = values;
    }

    pub fn get(&self, index: usize) -> Result<ScalarValue> {
        self.0.read().get(index).cloned().ok_or_else(|| {
            DataFusionError::Execution(format!("no value bound for parameter ${}", index + 1))
        })
    }

    fn same(&self, other: &ParamSlots) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// `$n` in a kept plan: returns the value bound to slot `index` when evaluated.
#[derive(Debug)]
pub struct ParamFn {
    pub index: usize,
    pub slots: ParamSlots,
    name: String,
    data_type: DataType,
    signature: Signature,
}

impl ParamFn {
    pub fn udf(index: usize, data_type: DataType, slots: ParamSlots) -> ScalarUDF {
        ScalarUDF::new_from_impl(ParamFn {
            index,
            slots,
            name: format!("${}", index + 1),
            data_type,
            signature: Signature::nullary(Volatility::Volatile),
        })
    }

    /// The bound value, cast to the parameter's type.
    pub fn value(&self) -> Result<ScalarValue> {
        let value = self.slots.get(self.index)?;
        if value.data_type() == self.data_type {
            Ok(value)
        } else {
            value.cast_to(&self.data_type)
        }
    }
}

impl PartialEq for ParamFn {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
            && self.data_type == other.data_type
            && self.slots.same(&other.slots)
    }
}

impl Eq for ParamFn {}

impl Hash for ParamFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.index.hash(state);
        self.data_type.hash(state);
    }
}

impl ScalarUDFImpl for ParamFn {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.data_type.clone())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value()?))
    }
}

/// `plan` with every `$n` replaced by a [`ParamFn`] reading `slots`, or `None` when the plan
/// must be planned per execution: a parameter of unknown type, a `VALUES` list (other than an
/// INSERT's single row) or a `LIMIT`/`OFFSET` (evaluated while planning), or a statement that
/// is neither a query nor an INSERT.
pub fn template(plan: &LogicalPlan, types: &[DataType], slots: &ParamSlots) -> Option<LogicalPlan> {
    let inserted;
    let plan = match plan {
        LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_)) => {
            inserted = one_row_values_evaluated_late(plan)?;
            &inserted
        }
        _ => plan,
    };
    if matches!(
        plan,
        LogicalPlan::Dml(DmlStatement {
            op: WriteOp::Update | WriteOp::Delete | WriteOp::Ctas,
            ..
        }) | LogicalPlan::Ddl(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_)
    ) {
        return None;
    }
    let mut keepable = true;
    let _ = plan.apply_with_subqueries(|node| {
        let evaluated_while_planning = match node {
            LogicalPlan::Values(_) => true,
            LogicalPlan::Limit(limit) => [&limit.skip, &limit.fetch]
                .into_iter()
                .flatten()
                .any(|e| has_placeholder(e)),
            _ => false,
        };
        if evaluated_while_planning {
            keepable = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if !keepable {
        return None;
    }
    let mut unknown = false;
    let replaced = plan
        .clone()
        .transform_up_with_subqueries(|node| {
            node.map_expressions(|e| {
                e.transform(|e| match &e {
                    Expr::Placeholder(p) => {
                        match placeholder_index(&p.id).and_then(|i| types.get(i).map(|t| (i, t))) {
                            Some((i, t)) if *t != DataType::Null => Ok(Transformed::yes(
                                ParamFn::udf(i, t.clone(), slots.clone()).call(vec![]),
                            )),
                            _ => {
                                unknown = true;
                                Ok(Transformed::no(e))
                            }
                        }
                    }
                    _ => Ok(Transformed::no(e)),
                })
            })
        })
        .ok()?
        .data;
    (!unknown).then_some(replaced)
}

/// `plan` with each one-row `VALUES` replaced by a projection of that row's expressions
/// (cast and named as the `VALUES` columns) over one empty row: the same rows, evaluated when
/// the plan runs rather than when it is planned.
fn one_row_values_evaluated_late(plan: &LogicalPlan) -> Option<LogicalPlan> {
    let rewritten = plan.clone().transform_up(|node| {
        let LogicalPlan::Values(Values { schema, values }) = &node else {
            return Ok(Transformed::no(node));
        };
        let [row] = values.as_slice() else {
            return Ok(Transformed::no(node)); // several rows: `template` refuses them
        };
        let one_row = Arc::new(LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: true,
            schema: Arc::new(DFSchema::empty()),
        }));
        let empty = DFSchema::empty();
        let exprs = row
            .iter()
            .zip(schema.fields())
            .map(|(e, field)| {
                let typed = match e.get_type(&empty)? == *field.data_type() {
                    true => e.clone(),
                    false => e.clone().cast_to(field.data_type(), &empty)?,
                };
                Ok(typed.alias(field.name()))
            })
            .collect::<Result<Vec<_>>>()?;
        let projection = Projection::try_new(exprs, one_row)?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    });
    rewritten.ok().map(|t| t.data)
}

fn has_placeholder(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::Placeholder(_))))
        .unwrap_or(true)
}

/// `$3` → 2.
pub fn placeholder_index(id: &str) -> Option<usize> {
    id.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1)
}
