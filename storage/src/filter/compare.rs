//! Comparison kernels for `Filter`: typed scalars, exact integer/float comparisons, IN lists.

use super::*;

/// `column op value`, NULL where the column is NULL (or everywhere if `value` is NULL).
pub(super) fn compare(col: Column, op: CmpOp, value: &Scalar) -> Result<BooleanArray> {
    check_value(col.name, col.kind, value)?;
    let array = col.array;
    match (col.kind, value) {
        (_, Scalar::Null) => Ok(BooleanArray::new_null(array.len())),
        (Kind::Int, _) => compare_int(col, op, value),
        (Kind::Float, _) => compare_float(col, op, value),
        (Kind::Bool, Scalar::Bool(b)) => kernel(array, op, Arc::new(BooleanArray::from(vec![*b]))),
        (Kind::Text, Scalar::Text(s)) => kernel(array, op, text_scalar(array.data_type(), s)?),
        (Kind::Timestamp, Scalar::Int(t) | Scalar::Timestamp(t)) => {
            kernel(array, op, timestamp_scalar(array.data_type(), *t))
        }
        _ => Err(mismatch(col.name, col.kind, value)),
    }
}

/// Runs Arrow's comparison kernel against a one-element array.
pub(super) fn kernel(array: &ArrayRef, op: CmpOp, scalar: ArrayRef) -> Result<BooleanArray> {
    if scalar.len() != 1 {
        return Err(Error::InvalidArgument(
            "comparison value must be one element".into(),
        ));
    }
    let rhs = ArrowScalar::new(scalar);
    let result = match op {
        CmpOp::Eq => cmp::eq(array, &rhs),
        CmpOp::NotEq => cmp::neq(array, &rhs),
        CmpOp::Lt => cmp::lt(array, &rhs),
        CmpOp::LtEq => cmp::lt_eq(array, &rhs),
        CmpOp::Gt => cmp::gt(array, &rhs),
        CmpOp::GtEq => cmp::gt_eq(array, &rhs),
    };
    Ok(result?)
}

pub(super) fn text_scalar(dt: &DataType, s: &str) -> Result<ArrayRef> {
    let array: ArrayRef = Arc::new(StringArray::from(vec![s]));
    if dt == &DataType::Utf8 {
        Ok(array)
    } else {
        Ok(cast(&array, dt)?)
    }
}

pub(super) fn timestamp_scalar(dt: &DataType, micros: i64) -> ArrayRef {
    let tz = match dt {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    Arc::new(TimestampMicrosecondArray::from(vec![micros]).with_timezone_opt(tz))
}

/// An integer comparison reduced to what the column can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// The same answer for every non-null row.
    All(bool),
    Cmp(CmpOp, i64),
}

/// The answer when the value is greater than anything the column holds.
pub(super) fn above(op: CmpOp) -> Target {
    Target::All(matches!(op, CmpOp::Lt | CmpOp::LtEq | CmpOp::NotEq))
}

/// The answer when the value is less than anything the column holds.
pub(super) fn below(op: CmpOp) -> Target {
    Target::All(matches!(op, CmpOp::Gt | CmpOp::GtEq | CmpOp::NotEq))
}

/// `int_col op f` as an exact integer comparison.
pub(super) fn float_as_int(op: CmpOp, f: f64) -> Target {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return if f.is_sign_negative() {
            below(op)
        } else {
            above(op)
        };
    }
    let floor = f.floor();
    if floor >= TWO_63 {
        return above(op);
    }
    if floor < -TWO_63 {
        return below(op);
    }
    // In range and integral, so the cast is exact.
    let i = floor as i64;
    if floor == f {
        return Target::Cmp(op, i);
    }
    match op {
        CmpOp::Eq => Target::All(false),
        CmpOp::NotEq => Target::All(true),
        CmpOp::Lt | CmpOp::LtEq => Target::Cmp(CmpOp::LtEq, i),
        CmpOp::Gt | CmpOp::GtEq => Target::Cmp(CmpOp::Gt, i),
    }
}

pub(super) fn int_target(op: CmpOp, value: &Scalar) -> Option<Target> {
    match value {
        Scalar::Int(v) => Some(Target::Cmp(op, *v)),
        Scalar::Float(f) => Some(float_as_int(op, *f)),
        _ => None,
    }
}

/// Narrows a comparison to a column whose values lie in `lo..=hi`.
pub(super) fn within(target: Target, lo: i64, hi: i64) -> Target {
    match target {
        Target::Cmp(op, v) if v > hi => above(op),
        Target::Cmp(op, v) if v < lo => below(op),
        other => other,
    }
}

pub(super) fn int_range(dt: &DataType) -> (i64, i64) {
    match dt {
        DataType::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    }
}

pub(super) fn int_scalar(dt: &DataType, v: i64) -> Result<ArrayRef> {
    match dt {
        DataType::Int32 => {
            let v = i32::try_from(v)
                .map_err(|_| Error::InvalidArgument(format!("{v} out of range for integer")))?;
            Ok(Arc::new(Int32Array::from(vec![v])))
        }
        _ => Ok(Arc::new(Int64Array::from(vec![v]))),
    }
}

pub(super) fn compare_int(col: Column, op: CmpOp, value: &Scalar) -> Result<BooleanArray> {
    let array = col.array;
    let target = int_target(op, value).ok_or_else(|| mismatch(col.name, col.kind, value))?;
    let (lo, hi) = int_range(array.data_type());
    match within(target, lo, hi) {
        Target::All(b) => Ok(constant(array.len(), b, array.logical_nulls())),
        Target::Cmp(op, v) => kernel(array, op, int_scalar(array.data_type(), v)?),
    }
}

pub(super) fn compare_float(col: Column, op: CmpOp, value: &Scalar) -> Result<BooleanArray> {
    let wide = match value {
        Scalar::Int(v) => *v as f64,
        Scalar::Float(f) => *f,
        _ => return Err(mismatch(col.name, col.kind, value)),
    };
    let (array, literal) = float_operands(col.array, value, wide)?;
    if wide == 0.0 {
        signed_zero(&array, op)
    } else {
        kernel(&array, op, literal)
    }
}

/// The column (widened to f64 when an f32 literal would be wrong) and the literal, same type.
pub(super) fn float_operands(
    array: &ArrayRef,
    value: &Scalar,
    wide: f64,
) -> Result<(ArrayRef, ArrayRef)> {
    if array.data_type() != &DataType::Float32 {
        return Ok((array.clone(), Arc::new(Float64Array::from(vec![wide]))));
    }
    match narrow_f32(value) {
        Some(f) => Ok((array.clone(), Arc::new(Float32Array::from(vec![f])))),
        None => Ok((
            cast(array, &DataType::Float64)?,
            Arc::new(Float64Array::from(vec![wide])),
        )),
    }
}

/// The value as `f32`, or `None` if rounding would change an integer or overflow a finite float.
pub(super) fn narrow_f32(value: &Scalar) -> Option<f32> {
    match value {
        Scalar::Int(v) => {
            let f = *v as f32;
            (f as i128 == i128::from(*v)).then_some(f)
        }
        Scalar::Float(x) => {
            let f = *x as f32;
            (f.is_finite() || !x.is_finite()).then_some(f)
        }
        _ => None,
    }
}

pub(super) fn float_scalar(dt: &DataType, f: f64) -> ArrayRef {
    match dt {
        DataType::Float32 => Arc::new(Float32Array::from(vec![f as f32])),
        _ => Arc::new(Float64Array::from(vec![f])),
    }
}

/// `column op 0` with `-0.0 = 0.0` (Arrow's total order alone would separate them).
pub(super) fn signed_zero(array: &ArrayRef, op: CmpOp) -> Result<BooleanArray> {
    let neg = || float_scalar(array.data_type(), -0.0);
    let pos = || float_scalar(array.data_type(), 0.0);
    match op {
        CmpOp::Lt => kernel(array, CmpOp::Lt, neg()),
        CmpOp::LtEq => kernel(array, CmpOp::LtEq, pos()),
        CmpOp::Gt => kernel(array, CmpOp::Gt, pos()),
        CmpOp::GtEq => kernel(array, CmpOp::GtEq, neg()),
        CmpOp::Eq | CmpOp::NotEq => {
            let low = kernel(array, CmpOp::GtEq, neg())?;
            let high = kernel(array, CmpOp::LtEq, pos())?;
            negate_if(and_kleene(&low, &high)?, op == CmpOp::NotEq)
        }
    }
}

/// `column IN (values)` with SQL's NULL rules (see the module docs for the empty list).
pub(super) fn in_list(col: Column, values: &[Scalar]) -> Result<BooleanArray> {
    values
        .iter()
        .try_for_each(|v| check_value(col.name, col.kind, v))?;
    let len = col.array.len();
    let present: Vec<&Scalar> = values.iter().filter(|v| **v != Scalar::Null).collect();
    let matched = match present.is_empty() {
        true => constant(len, false, None),
        false => any_equal(col, &present)?,
    };
    if present.len() < values.len() {
        // A NULL in the list turns every "no match" into "unknown".
        Ok(or_kleene(&matched, &BooleanArray::new_null(len))?)
    } else {
        Ok(matched)
    }
}

/// OR of `column = v` over the (non-empty, NULL-free) values.
pub(super) fn any_equal(col: Column, values: &[&Scalar]) -> Result<BooleanArray> {
    if values.len() >= HASH_IN_THRESHOLD
        && let Some(result) = hash_in(col.array, values)
    {
        return Ok(result);
    }
    let mut acc: Option<BooleanArray> = None;
    for v in values {
        let eq = compare(col, CmpOp::Eq, v)?;
        acc = Some(match acc {
            None => eq,
            Some(prev) => or_kleene(&prev, &eq)?,
        });
    }
    acc.ok_or_else(|| Error::InvalidArgument("IN list has no values".into()))
}

/// One hash lookup per row, for the column types where equality is plain value equality.
pub(super) fn hash_in(array: &ArrayRef, values: &[&Scalar]) -> Option<BooleanArray> {
    let bits = match array.data_type() {
        DataType::Int32 => {
            let set: HashSet<i32> = values
                .iter()
                .filter_map(|v| int_eq_target(v))
                .filter_map(|v| i32::try_from(v).ok())
                .collect();
            let column = array.as_primitive_opt::<Int32Type>()?;
            column.values().iter().map(|v| set.contains(v)).collect()
        }
        DataType::Int64 => {
            let set: HashSet<i64> = values.iter().filter_map(|v| int_eq_target(v)).collect();
            let column = array.as_primitive_opt::<Int64Type>()?;
            column.values().iter().map(|v| set.contains(v)).collect()
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let set: HashSet<i64> = values.iter().filter_map(|v| timestamp_value(v)).collect();
            let column = array.as_primitive_opt::<TimestampMicrosecondType>()?;
            column.values().iter().map(|v| set.contains(v)).collect()
        }
        DataType::Utf8 => {
            let set: HashSet<&str> = values.iter().filter_map(|v| text_value(v)).collect();
            let column = array.as_string_opt::<i32>()?;
            BooleanBuffer::collect_bool(column.len(), |i| set.contains(column.value(i)))
        }
        _ => return None,
    };
    Some(BooleanArray::new(bits, array.logical_nulls()))
}

/// The integer an integer column must equal to match `v`, if any can.
pub(super) fn int_eq_target(v: &Scalar) -> Option<i64> {
    match int_target(CmpOp::Eq, v)? {
        Target::Cmp(_, i) => Some(i),
        Target::All(_) => None,
    }
}

pub(super) fn timestamp_value(v: &Scalar) -> Option<i64> {
    match v {
        Scalar::Int(t) | Scalar::Timestamp(t) => Some(*t),
        _ => None,
    }
}

pub(super) fn text_value(v: &Scalar) -> Option<&str> {
    match v {
        Scalar::Text(s) => Some(s.as_str()),
        _ => None,
    }
}
