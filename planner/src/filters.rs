//! DataFusion filter expressions → the storage engine's `Filter`, so `WHERE` clauses run inside
//! the scan and, for a KNN query, inside the index search (k rows come back when k match).
//! Anything not expressible stays with DataFusion (pushdown `Unsupported`).

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use vecraft_storage::filter::{CmpOp, Filter, Scalar};

/// The storage form of `expr`, or `None` if some part of it has none.
pub fn to_storage_filter(expr: &Expr) -> Option<Filter> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => Some(Filter::And(vec![
                to_storage_filter(left)?,
                to_storage_filter(right)?,
            ])),
            Operator::Or => Some(Filter::Or(vec![
                to_storage_filter(left)?,
                to_storage_filter(right)?,
            ])),
            _ => comparison(left, *op, right),
        },
        Expr::Not(inner) => Some(Filter::Not(Box::new(to_storage_filter(inner)?))),
        Expr::IsNull(inner) => Some(Filter::IsNull {
            column: column_name(inner)?,
            negated: false,
        }),
        Expr::IsNotNull(inner) => Some(Filter::IsNull {
            column: column_name(inner)?,
            negated: true,
        }),
        Expr::InList(list) => Some(Filter::In {
            column: column_name(&list.expr)?,
            values: list.list.iter().map(literal).collect::<Option<Vec<_>>>()?,
            negated: list.negated,
        }),
        Expr::Literal(ScalarValue::Boolean(Some(b)), _) => Some(Filter::Literal(*b)),
        _ => None,
    }
}

fn comparison(left: &Expr, op: Operator, right: &Expr) -> Option<Filter> {
    let op_of = |op: Operator| match op {
        Operator::Eq => Some(CmpOp::Eq),
        Operator::NotEq => Some(CmpOp::NotEq),
        Operator::Lt => Some(CmpOp::Lt),
        Operator::LtEq => Some(CmpOp::LtEq),
        Operator::Gt => Some(CmpOp::Gt),
        Operator::GtEq => Some(CmpOp::GtEq),
        _ => None,
    };
    if let (Some(column), Some(value)) = (column_name(left), literal(right)) {
        return Some(Filter::Compare {
            column,
            op: op_of(op)?,
            value,
        });
    }
    // `5 < x` is `x > 5`.
    let (column, value) = (column_name(right)?, literal(left)?);
    Some(Filter::Compare {
        column,
        op: op_of(op.swap()?)?,
        value,
    })
}

/// A plain column, possibly under a numeric widening cast that type coercion added.
fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(cast) if cast.field.data_type().is_numeric() => match cast.expr.as_ref() {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<Scalar> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    Some(match value {
        v if v.is_null() => Scalar::Null,
        ScalarValue::Boolean(Some(b)) => Scalar::Bool(*b),
        ScalarValue::Int8(Some(v)) => Scalar::Int(*v as i64),
        ScalarValue::Int16(Some(v)) => Scalar::Int(*v as i64),
        ScalarValue::Int32(Some(v)) => Scalar::Int(*v as i64),
        ScalarValue::Int64(Some(v)) => Scalar::Int(*v),
        ScalarValue::UInt8(Some(v)) => Scalar::Int(*v as i64),
        ScalarValue::UInt16(Some(v)) => Scalar::Int(*v as i64),
        ScalarValue::UInt32(Some(v)) => Scalar::Int(*v as i64),
        ScalarValue::UInt64(Some(v)) => Scalar::Int(i64::try_from(*v).ok()?),
        ScalarValue::Float32(Some(v)) => Scalar::Float(*v as f64),
        ScalarValue::Float64(Some(v)) => Scalar::Float(*v),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Scalar::Text(s.clone()),
        ScalarValue::TimestampMicrosecond(Some(v), None) => Scalar::Timestamp(*v),
        _ => return None,
    })
}
