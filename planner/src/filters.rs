//! DataFusion filter expressions → the storage engine's `Filter`, so `WHERE` clauses run inside
//! the scan and, for a KNN query, inside the index search (k rows come back when k match).
//!
//! A filter is pushed (DataFusion then drops its own copy) only when storage evaluates it
//! exactly as DataFusion would: plain columns or lossless integer casts compared with literals,
//! IN lists, IS NULL, AND/OR/NOT, and the result must validate against the collection's schema
//! (so no vector columns). Anything else stays with DataFusion.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use vecraft_storage::filter::{CmpOp, Filter, Scalar};
use vecraft_storage::schema::CollectionSchema;

/// The storage form of `expr`, or `None` if storage cannot evaluate it exactly.
pub fn pushable_filter(expr: &Expr, schema: &CollectionSchema) -> Option<Filter> {
    let arrow = schema.arrow_schema();
    let filter = Conversion { schema: &arrow }.filter(expr)?;
    filter.validate(schema).ok().map(|_| filter)
}

struct Conversion<'a> {
    schema: &'a Schema,
}

impl Conversion<'_> {
    fn filter(&self, expr: &Expr) -> Option<Filter> {
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                op: op @ (Operator::And | Operator::Or),
                ..
            }) => {
                // `a AND b AND c` becomes one node: long chains stay shallow.
                let mut parts = Vec::new();
                self.flatten(expr, *op, &mut parts)?;
                Some(if *op == Operator::And {
                    Filter::And(parts)
                } else {
                    Filter::Or(parts)
                })
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => self.comparison(left, *op, right),
            Expr::Not(inner) => Some(Filter::Not(Box::new(self.filter(inner)?))),
            Expr::IsNull(inner) => Some(Filter::IsNull {
                column: self.column(inner)?,
                negated: false,
            }),
            Expr::IsNotNull(inner) => Some(Filter::IsNull {
                column: self.column(inner)?,
                negated: true,
            }),
            Expr::InList(list) => Some(Filter::In {
                column: self.column(&list.expr)?,
                values: list.list.iter().map(literal).collect::<Option<Vec<_>>>()?,
                negated: list.negated,
            }),
            Expr::Literal(ScalarValue::Boolean(Some(b)), _) => Some(Filter::Literal(*b)),
            _ => None,
        }
    }

    fn flatten(&self, expr: &Expr, op: Operator, parts: &mut Vec<Filter>) -> Option<()> {
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: inner,
                right,
            }) if *inner == op => {
                self.flatten(left, op, parts)?;
                self.flatten(right, op, parts)
            }
            other => {
                parts.push(self.filter(other)?);
                Some(())
            }
        }
    }

    fn comparison(&self, left: &Expr, op: Operator, right: &Expr) -> Option<Filter> {
        let op_of = |op: Operator| match op {
            Operator::Eq => Some(CmpOp::Eq),
            Operator::NotEq => Some(CmpOp::NotEq),
            Operator::Lt => Some(CmpOp::Lt),
            Operator::LtEq => Some(CmpOp::LtEq),
            Operator::Gt => Some(CmpOp::Gt),
            Operator::GtEq => Some(CmpOp::GtEq),
            _ => None,
        };
        if let (Some(column), Some(value)) = (self.column(left), literal(right)) {
            return Some(Filter::Compare {
                column,
                op: op_of(op)?,
                value,
            });
        }
        // `5 < x` is `x > 5`.
        let (column, value) = (self.column(right)?, literal(left)?);
        Some(Filter::Compare {
            column,
            op: op_of(op.swap()?)?,
            value,
        })
    }

    /// A plain column, or one under a cast that loses nothing and that storage compares the
    /// same way (small integers widened to BIGINT or DOUBLE). Float casts stay with DataFusion:
    /// storage compares a REAL column in `f32`, DataFusion after widening it.
    fn column(&self, expr: &Expr) -> Option<String> {
        match expr {
            Expr::Column(c) => Some(c.name.clone()),
            Expr::Cast(cast) => {
                let Expr::Column(c) = cast.expr.as_ref() else {
                    return None;
                };
                let from = self.schema.field_with_name(&c.name).ok()?.data_type();
                let lossless = matches!(
                    (from, cast.field.data_type()),
                    (
                        DataType::Int8 | DataType::Int16 | DataType::Int32,
                        DataType::Int64 | DataType::Float64
                    )
                );
                lossless.then(|| c.name.clone())
            }
            _ => None,
        }
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
        ScalarValue::Float32(Some(v)) if v.is_finite() && *v != 0.0 => Scalar::Float(*v as f64),
        ScalarValue::Float64(Some(v)) if v.is_finite() && *v != 0.0 => Scalar::Float(*v),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Scalar::Text(s.clone()),
        ScalarValue::TimestampMicrosecond(Some(v), None) => Scalar::Timestamp(*v),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{cast, col, lit};
    use vecraft_storage::schema::{ColumnDef, ColumnType, VectorSpec};

    fn schema() -> CollectionSchema {
        let vector = ColumnType::Vector(VectorSpec::new(2));
        CollectionSchema::new(
            vec![
                ColumnDef::new("id", ColumnType::Int64, false),
                ColumnDef::new("v", vector, true),
                ColumnDef::new("small", ColumnType::Int32, true),
                ColumnDef::new("price", ColumnType::Float64, true),
                ColumnDef::new("real", ColumnType::Float32, true),
            ],
            "id",
        )
        .unwrap()
    }

    #[test]
    fn pushes_only_what_storage_evaluates_exactly() {
        let s = schema();
        assert!(pushable_filter(&col("id").eq(lit(3i64)), &s).is_some());
        assert!(pushable_filter(&cast(col("small"), DataType::Int64).eq(lit(3i64)), &s).is_some());
        // Lossy or float casts, vector columns, zero/NaN floats: DataFusion keeps them.
        assert!(pushable_filter(&cast(col("price"), DataType::Int64).eq(lit(1i64)), &s).is_none());
        assert!(
            pushable_filter(&cast(col("real"), DataType::Float64).eq(lit(0.1f64)), &s).is_none()
        );
        assert!(pushable_filter(&col("v").is_not_null(), &s).is_none());
        assert!(pushable_filter(&col("price").eq(lit(0.0f64)), &s).is_none());
        assert!(pushable_filter(&col("price").eq(lit(f64::NAN)), &s).is_none());
    }

    #[test]
    fn long_or_chains_stay_one_level_deep() {
        let s = schema();
        let chain = (0..1000i64)
            .map(|i| col("id").eq(lit(i)))
            .reduce(|a, b| a.or(b))
            .unwrap();
        match pushable_filter(&chain, &s) {
            Some(Filter::Or(parts)) => assert_eq!(parts.len(), 1000),
            other => panic!("{other:?}"),
        }
    }
}
