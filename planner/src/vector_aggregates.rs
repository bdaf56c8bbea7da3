//! pgvector's `avg(vector)` and `sum(vector)`: the element-wise mean and sum, as pgvector's
//! README computes a centroid (`SELECT avg(embedding) FROM items`).
//!
//! DataFusion checks an aggregate's argument types while planning the SQL, before any
//! analyzer rule could swap the function, and `avg`/`sum` take only numbers. So every `avg`
//! and `sum` the SQL names is planned as [`VectorOr`] ([`VectorAggregates::plan_aggregate`]),
//! which answers for a vector argument and hands everything else, method by method, to
//! DataFusion's own function.
//!
//! As in pgvector, `avg` sums in double precision and rounds once to real; `sum` adds in real
//! precision; a result out of real's range is 22003 `value out of range: overflow`; rows of
//! different lengths are 22000 (`expected n dimensions, not m` for `avg`, `different vector
//! dimensions n and m` for `sum`); NULLs are skipped; no rows give NULL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::expr::AggregateFunctionParams;
use datafusion::logical_expr::function::AggregateFunctionSimplification;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::planner::{
    ExprPlanner, PlannerResult, RawAggregateExpr, RawWindowExpr,
};
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Expr, GroupsAccumulator, Operator,
    ReversedUDAF, SetMonotonicity, Signature, StatisticsArgs, Volatility, WindowFunctionDefinition,
};

use crate::error::{NUMERIC_VALUE_OUT_OF_RANGE, VectorError};
use crate::functions::Operand;

/// Plans `avg` and `sum` as [`VectorOr`].
#[derive(Debug)]
pub struct VectorAggregates;

impl ExprPlanner for VectorAggregates {
    fn plan_aggregate(
        &self,
        mut expr: RawAggregateExpr,
    ) -> Result<PlannerResult<RawAggregateExpr>> {
        if let Some(udaf) = VectorOr::wrap(&expr.func) {
            // Handed on (not `Planned`): DataFusion builds the call, with this function.
            expr.func = udaf;
        }
        Ok(PlannerResult::Original(expr))
    }

    fn plan_window(&self, mut expr: RawWindowExpr) -> Result<PlannerResult<RawWindowExpr>> {
        if let WindowFunctionDefinition::AggregateUDF(func) = &expr.func_def
            && let Some(udaf) = VectorOr::wrap(func)
        {
            expr.func_def = WindowFunctionDefinition::AggregateUDF(udaf);
        }
        Ok(PlannerResult::Original(expr))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Avg,
    Sum,
}

/// `avg` or `sum`: of vectors here, of anything else DataFusion's (`inner`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorOr {
    kind: Kind,
    inner: Arc<AggregateUDF>,
    signature: Signature,
}

/// A vector: `vector(n)` (a fixed-size list of reals) or `vector` (a list of them), or a
/// halfvec (of halves).
fn is_vector(t: &DataType) -> bool {
    match t {
        DataType::FixedSizeList(item, _) | DataType::List(item) => {
            matches!(item.data_type(), DataType::Float32 | DataType::Float16)
        }
        _ => false,
    }
}

/// How PostgreSQL names an argument's type in "function … does not exist".
fn type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Boolean => "boolean",
        DataType::Date32 => "date",
        DataType::Timestamp(_, None) => "timestamp without time zone",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        DataType::List(_) | DataType::LargeList(_) => "anyarray",
        DataType::Struct(_) => "record",
        _ => "unknown",
    }
}

impl VectorOr {
    /// `func` as [`VectorOr`], if it is `avg` or `sum`.
    fn wrap(func: &Arc<AggregateUDF>) -> Option<Arc<AggregateUDF>> {
        let kind = match func.name() {
            "avg" => Kind::Avg,
            "sum" => Kind::Sum,
            _ => return None,
        };
        let udaf = VectorOr {
            kind,
            inner: Arc::clone(func),
            signature: Signature::user_defined(Volatility::Immutable),
        };
        Some(Arc::new(AggregateUDF::new_from_impl(udaf)))
    }

    fn inner(&self) -> &dyn AggregateUDFImpl {
        self.inner.inner().as_ref()
    }
}

impl AggregateUDFImpl for VectorOr {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if let [t] = arg_types
            && is_vector(t)
        {
            return Ok(arg_types.to_vec());
        }
        let fields: Vec<FieldRef> = arg_types
            .iter()
            .map(|t| Arc::new(Field::new("arg", t.clone(), true)))
            .collect();
        match fields_with_udf(&fields, self.inner.as_ref()) {
            Ok(coerced) => Ok(coerced.iter().map(|f| f.data_type().clone()).collect()),
            Err(_) => {
                let types: Vec<&str> = arg_types.iter().map(type_name).collect();
                let message = format!(
                    "function {}({}) does not exist",
                    self.name(),
                    types.join(", ")
                );
                Err(VectorError::new("42883", message).into())
            }
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] if is_vector(t) => Ok(t.clone()),
            _ => self.inner().return_type(arg_types),
        }
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        match arg_fields {
            // The argument's field, its PostgreSQL type (`vector`) kept.
            [f] if is_vector(f.data_type()) => Ok(Arc::new(
                f.as_ref()
                    .clone()
                    .with_name(self.name())
                    .with_nullable(true),
            )),
            _ => self.inner().return_field(arg_fields),
        }
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match acc_args.expr_fields {
            [f] if is_vector(f.data_type()) => Ok(Box::new(VectorAccumulator {
                kind: self.kind,
                output: acc_args.return_field.data_type().clone(),
                sum: None,
                count: 0,
            })),
            _ => self.inner().accumulator(acc_args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match args.input_fields {
            [f] if is_vector(f.data_type()) => Ok(vec![
                Arc::new(Field::new(
                    format!("{}[sum]", args.name),
                    DataType::new_list(DataType::Float64, true),
                    true,
                )),
                Arc::new(Field::new(
                    format!("{}[count]", args.name),
                    DataType::Int64,
                    true,
                )),
            ]),
            _ => self.inner().state_fields(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        match args.expr_fields {
            [f] if is_vector(f.data_type()) => false,
            _ => self.inner().groups_accumulator_supported(args),
        }
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner().create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match args.expr_fields {
            [f] if is_vector(f.data_type()) => self.accumulator(args),
            _ => self.inner().create_sliding_accumulator(args),
        }
    }

    fn aliases(&self) -> &[String] {
        self.inner().aliases()
    }

    fn schema_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner().schema_name(params)
    }

    fn human_display(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner().human_display(params)
    }

    fn display_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner().display_name(params)
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner().order_sensitivity()
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        self.inner().simplify()
    }

    fn simplify_expr_op_literal(
        &self,
        agg_function: &AggregateFunction,
        arg: &Expr,
        op: Operator,
        lit: &Expr,
        arg_is_left: bool,
    ) -> Result<Option<Expr>> {
        self.inner()
            .simplify_expr_op_literal(agg_function, arg, op, lit, arg_is_left)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        // Both are order-insensitive; the reversed function is this one.
        ReversedUDAF::Identical
    }

    fn is_nullable(&self) -> bool {
        self.inner().is_nullable()
    }

    fn is_descending(&self) -> Option<bool> {
        self.inner().is_descending()
    }

    fn value_from_stats(&self, statistics_args: &StatisticsArgs) -> Option<ScalarValue> {
        if is_vector(statistics_args.return_type) {
            return None;
        }
        self.inner().value_from_stats(statistics_args)
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        if is_vector(data_type) {
            return ScalarValue::try_from(data_type);
        }
        self.inner().default_value(data_type)
    }

    fn supports_null_handling_clause(&self) -> bool {
        self.inner().supports_null_handling_clause()
    }

    fn supports_within_group_clause(&self) -> bool {
        self.inner().supports_within_group_clause()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        if is_vector(data_type) {
            return SetMonotonicity::NotMonotonic;
        }
        self.inner().set_monotonicity(data_type)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner().documentation()
    }
}

/// The running sum (in double precision) and count of the vectors seen.
#[derive(Debug)]
struct VectorAccumulator {
    kind: Kind,
    /// The result's type: the argument's.
    output: DataType,
    sum: Option<Vec<f64>>,
    count: i64,
}

impl VectorAccumulator {
    fn add(&mut self, v: &[f64], count: i64) -> Result<()> {
        let Some(sum) = &mut self.sum else {
            self.sum = Some(v.to_vec());
            self.count = count;
            return Ok(());
        };
        if sum.len() != v.len() {
            let message = match self.kind {
                Kind::Avg => format!("expected {} dimensions, not {}", sum.len(), v.len()),
                Kind::Sum => {
                    let type_name = match crate::halfvec::half_target(&self.output) {
                        Some(_) => "halfvec",
                        None => "vector",
                    };
                    format!(
                        "different {type_name} dimensions {} and {}",
                        sum.len(),
                        v.len()
                    )
                }
            };
            return Err(VectorError::data(message).into());
        }
        let of_halves = crate::halfvec::half_target(&self.output).is_some();
        for (s, x) in sum.iter_mut().zip(v) {
            match self.kind {
                Kind::Avg => *s += x,
                // `sum` adds reals, as pgvector's `vector_add` (halves, as `halfvec_add`):
                // out of their range is an error at once.
                Kind::Sum => {
                    let mut r = *s as f32 + *x as f32;
                    if of_halves {
                        r = half::f16::from_f32(r).to_f32();
                    }
                    if r.is_infinite() {
                        return Err(overflow());
                    }
                    *s = f64::from(r);
                }
            }
        }
        self.count += count;
        Ok(())
    }
}

fn overflow() -> datafusion::error::DataFusionError {
    VectorError::new(NUMERIC_VALUE_OUT_OF_RANGE, "value out of range: overflow").into()
}

impl Accumulator for VectorAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = Operand::from_array(&values[0])?;
        for row in 0..values[0].len() {
            if let Some(v) = rows.get(row) {
                let v: Vec<f64> = v.iter().map(|x| f64::from(*x)).collect();
                self.add(&v, 1)?;
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let sums = states[0].as_list::<i32>();
        let counts = states[1].as_primitive::<Int64Type>();
        for row in 0..sums.len() {
            if sums.is_null(row) || counts.is_null(row) {
                continue;
            }
            let sum = sums.value(row);
            let sum: Vec<f64> = sum.as_primitive::<Float64Type>().values().to_vec();
            self.add(&sum, counts.value(row))?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let sum = match &self.sum {
            Some(sum) => {
                let values = Arc::new(Float64Array::from(sum.clone()));
                let field = Arc::new(Field::new_list_field(DataType::Float64, true));
                let offsets = OffsetBuffer::from_lengths([sum.len()]);
                ScalarValue::List(Arc::new(ListArray::new(field, offsets, values, None)))
            }
            None => ScalarValue::try_from(&DataType::new_list(DataType::Float64, true))?,
        };
        let count = Int64Array::from(vec![self.count]);
        Ok(vec![sum, ScalarValue::try_from_array(&count, 0)?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let Some(sum) = &self.sum else {
            return ScalarValue::try_from(&self.output);
        };
        let divisor = match self.kind {
            Kind::Avg => self.count as f64,
            Kind::Sum => 1.0,
        };
        let mut out = Vec::with_capacity(sum.len());
        for s in sum {
            let x = (s / divisor) as f32;
            if x.is_infinite() {
                return Err(overflow());
            }
            out.push(x);
        }
        if crate::halfvec::half_target(&self.output).is_some() {
            out = crate::halfvec::halves(&out)?; // a mean past a half's range
        }
        let array = crate::vector_math::vectors(vec![Some(out)], &self.output)?;
        ScalarValue::try_from_array(&array, 0)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    /// A sliding window frame's rows leaving it: taken out of the sum.
    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = Operand::from_array(&values[0])?;
        for row in 0..values[0].len() {
            let (Some(v), Some(sum)) = (rows.get(row), &mut self.sum) else {
                continue;
            };
            for (s, x) in sum.iter_mut().zip(v) {
                *s = match self.kind {
                    Kind::Avg => *s - f64::from(*x),
                    Kind::Sum => f64::from(*s as f32 - *x),
                };
            }
            self.count -= 1;
            if self.count == 0 {
                self.sum = None;
            }
        }
        Ok(())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sum.as_ref().map_or(0, |s| s.len() * 8)
    }
}
