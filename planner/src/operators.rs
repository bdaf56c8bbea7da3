//! pgvector's operators, planned as our UDFs: `<->` L2, `<=>` cosine, `<#>` negative inner
//! product, `<+>` L1; and on vectors, `+`, `-`, `*`, `||` and the comparisons
//! ([`crate::vector_math`]); on `json` and `jsonb`, `->`, `->>`, `@>` and `?`
//! ([`crate::text_types`]); and `^@`, PostgreSQL's starts-with.
//!
//! DataFusion's own SQL planner would refuse `<->`/`<#>` and, worse, plan `<=>` as MySQL's
//! null-safe equality (`IS NOT DISTINCT FROM`), so this `ExprPlanner` must see every binary
//! operator first. It only works with a PostgreSQL-dialect parse (the dialect tokenises `<->`
//! and the custom operators).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, ExprSchemable, Operator, lit};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::functions::VectorFn;
use crate::text_types::{self, TextType};
use crate::vector_math::VectorMath;

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
    /// `ARRAY['[1,2]'::vector, '[3,4]', NULL]`: an array with a vector among its elements is
    /// an array of vectors (`vector[]`), its text literals and NULLs read as vectors, as
    /// PostgreSQL resolves an array's element type from its typed elements.
    fn plan_array_literal(
        &self,
        exprs: Vec<Expr>,
        schema: &DFSchema,
    ) -> Result<PlannerResult<Vec<Expr>>> {
        let untyped = |e: &Expr| {
            matches!(
                e,
                Expr::Literal(ScalarValue::Utf8(_) | ScalarValue::Null, _)
            )
        };
        if exprs.iter().all(untyped) {
            return Ok(PlannerResult::Original(exprs));
        }
        if !exprs.iter().any(|e| !untyped(e) && is_vector(e, schema)) {
            return Ok(PlannerResult::Original(exprs));
        }
        // Vectors of one declared length stay `vector(n)`. Otherwise every element is cast
        // to `vector` (a literal is not held to a column's length, as in PostgreSQL), so
        // vectors of other lengths meet in one array and the functions reading them say what
        // is wrong.
        let types = exprs
            .iter()
            .map(|e| e.get_type(schema))
            .collect::<Result<Vec<_>>>()?;
        let sized = matches!(types[0], DataType::FixedSizeList(..));
        if sized && types.iter().all(|t| t == &types[0]) {
            return Ok(PlannerResult::Original(exprs));
        }
        // `halfvec[]` when the first typed element is a halfvec, else `vector[]`.
        let first_typed = types
            .iter()
            .find(|t| !matches!(t, DataType::Utf8 | DataType::Null));
        let element = match first_typed.and_then(crate::halfvec::half_target) {
            Some(_) => DataType::new_list(DataType::Float16, true),
            None => crate::functions::unsized_vector(),
        };
        let cast = |e: Expr| Expr::Cast(Cast::new(Box::new(e), element.clone()));
        let exprs = exprs
            .into_iter()
            .map(|e| match untyped(&e) {
                // A vector literal's type is its length's (`vector(n)`): cast again.
                true => cast(cast(e)),
                false => cast(e),
            })
            .collect();
        Ok(PlannerResult::Original(exprs))
    }

    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        if let Some(planned) = json_operator(&expr, schema) {
            return Ok(PlannerResult::Planned(planned));
        }
        let expr = uuid_literals(expr, schema);
        if expr.op == BinaryOperator::PGStartsWith {
            // `a ^@ b`, PostgreSQL's operator for starts_with(a, b) (vecs asks with it).
            let starts_with = datafusion::functions::string::starts_with();
            return Ok(PlannerResult::Planned(
                starts_with.call(vec![expr.left, expr.right]),
            ));
        }
        if let Some(planned) = sparse_operator(&expr, schema) {
            return Ok(PlannerResult::Planned(planned));
        }
        let expr = match bit_operator(expr, schema) {
            Ok(planned) => return Ok(PlannerResult::Planned(planned)),
            Err(expr) => expr,
        };
        if let Some(f) = operator_function(&expr.op) {
            let left = typed_like(expr.left, &expr.right, schema);
            let right = typed_like(expr.right, &left, schema);
            return Ok(PlannerResult::Planned(f.udf().call(vec![left, right])));
        }
        let vectors = is_vector(&expr.left, schema) && fits_vector(&expr.right, schema)
            || is_vector(&expr.right, schema) && fits_vector(&expr.left, schema);
        if !vectors {
            return Ok(PlannerResult::Original(expr));
        }
        let (left, right) = (expr.left, expr.right);
        let math = |m: VectorMath| m.udf().call(vec![left.clone(), right.clone()]);
        let compared = |op: Operator| {
            let order = math(VectorMath::Cmp);
            Expr::BinaryExpr(BinaryExpr::new(Box::new(order), op, Box::new(lit(0i32))))
        };
        Ok(PlannerResult::Planned(match expr.op {
            BinaryOperator::Plus => math(VectorMath::Add),
            BinaryOperator::Minus => math(VectorMath::Subtract),
            BinaryOperator::Multiply => math(VectorMath::Multiply),
            BinaryOperator::StringConcat => math(VectorMath::Concat),
            BinaryOperator::Lt => compared(Operator::Lt),
            BinaryOperator::LtEq => compared(Operator::LtEq),
            BinaryOperator::Eq => compared(Operator::Eq),
            BinaryOperator::NotEq => compared(Operator::NotEq),
            BinaryOperator::GtEq => compared(Operator::GtEq),
            BinaryOperator::Gt => compared(Operator::Gt),
            op => {
                return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }));
            }
        }))
    }
}

/// The comparison `op` is, if it is one (`=`, `<>`, `<`, `<=`, `>`, `>=`).
fn comparison(op: &BinaryOperator) -> Option<Operator> {
    Some(match op {
        BinaryOperator::Lt => Operator::Lt,
        BinaryOperator::LtEq => Operator::LtEq,
        BinaryOperator::Eq => Operator::Eq,
        BinaryOperator::NotEq => Operator::NotEq,
        BinaryOperator::GtEq => Operator::GtEq,
        BinaryOperator::Gt => Operator::Gt,
        _ => return None,
    })
}

/// A distance or comparison operator with a sparse vector on either side: the other side,
/// if text or a parameter, is read as a sparse vector too.
fn sparse_operator(expr: &RawBinaryExpr, schema: &DFSchema) -> Option<Expr> {
    let compared = comparison(&expr.op);
    let distance = operator_function(&expr.op);
    if compared.is_none() && distance.is_none() {
        return None;
    }
    let is_sparse = |e: &Expr| {
        e.get_type(schema)
            .is_ok_and(|t| vecraft_storage::schema::is_sparsevec(&t))
    };
    if !is_sparse(&expr.left) && !is_sparse(&expr.right) {
        return None;
    }
    let sparse = |e: Expr| match e {
        Expr::Literal(ScalarValue::Utf8(_), _) => {
            let field = crate::types::sparse_field("", None);
            Expr::Cast(Cast::new_from_field(Box::new(e), Arc::new(field)))
        }
        Expr::Placeholder(p) if p.field.is_none() => Expr::Placeholder(Placeholder {
            id: p.id,
            field: Some(Arc::new(crate::types::sparse_field("", None))),
        }),
        e => e,
    };
    let args = vec![sparse(expr.left.clone()), sparse(expr.right.clone())];
    match (distance, compared) {
        (Some(f), _) => Some(f.udf().call(args)),
        (None, Some(op)) => {
            let order = crate::sparsevec_udfs::SparseFn::Cmp.call(args);
            Some(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(order),
                op,
                Box::new(lit(0i32)),
            )))
        }
        (None, None) => None,
    }
}

/// pgvector's `<~>` (Hamming) and `<%>` (Jaccard) on bit strings; and a comparison of a bit
/// string with text, which reads the text as a bit string. `Err` gives back what it is not.
#[allow(clippy::result_large_err)] // the expression comes back whole, as it went in
fn bit_operator(expr: RawBinaryExpr, schema: &DFSchema) -> Result<Expr, RawBinaryExpr> {
    use crate::bit_udfs::BitFn;
    let distance = match &expr.op {
        BinaryOperator::Custom(name) if name == "<~>" => Some(BitFn::Hamming),
        BinaryOperator::Custom(name) if name == "<%>" => Some(BitFn::Jaccard),
        _ => None,
    };
    if let Some(f) = distance {
        return Ok(f.call(vec![expr.left, expr.right]));
    }
    let compares = comparison(&expr.op).is_some();
    let is_text = |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Utf8(Some(_)), _));
    let is_bits = |e: &Expr| {
        e.get_type(schema)
            .is_ok_and(|t| vecraft_storage::schema::is_bit(&t))
    };
    // Only an operand beside text is typed: typing any operand would walk its whole tree.
    let as_bits = |e: Expr| {
        let varying = crate::bits::BitLength::Any.field("");
        Expr::Cast(Cast::new_from_field(Box::new(e), Arc::new(varying)))
    };
    let (left, right) = (expr.left, expr.right);
    let (left, right) = if compares && is_text(&right) && is_bits(&left) {
        (left, as_bits(right))
    } else if compares && is_text(&left) && is_bits(&right) {
        (as_bits(left), right)
    } else {
        return Err(RawBinaryExpr {
            op: expr.op,
            left,
            right,
        });
    };
    Err(RawBinaryExpr {
        op: expr.op,
        left,
        right,
    })
}

/// `->`, `->>`, `@>` and `?` on a `json` or `jsonb` value ([`crate::text_types`]).
fn json_operator(expr: &RawBinaryExpr, schema: &DFSchema) -> Option<Expr> {
    let json_op = matches!(
        expr.op,
        BinaryOperator::Arrow
            | BinaryOperator::LongArrow
            | BinaryOperator::AtArrow
            | BinaryOperator::Question
    );
    // Typing an operand walks its whole tree: only for the operators that need it.
    if !json_op {
        return None;
    }
    let is_json = expr.left.to_field(schema).is_ok_and(|(_, f)| {
        matches!(
            TextType::of_field(&f),
            Some(TextType::Json | TextType::Jsonb)
        )
    });
    if !is_json {
        return None;
    }
    let (left, right) = (expr.left.clone(), expr.right.clone());
    match expr.op {
        BinaryOperator::Arrow => Some(text_types::get(left, right, false)),
        BinaryOperator::LongArrow => Some(text_types::get(left, right, true)),
        BinaryOperator::AtArrow => Some(text_types::contains(left, right)),
        BinaryOperator::Question => Some(text_types::exists(left, right)),
        _ => None,
    }
}

/// `id = 'A0EEBC99-…'` on a uuid column: the text is read as a uuid (into its one stored
/// form), as PostgreSQL casts an untyped literal to the column's type.
fn uuid_literals(mut expr: RawBinaryExpr, schema: &DFSchema) -> RawBinaryExpr {
    let compares = comparison(&expr.op).is_some();
    // Only a column is typed here: typing any operand would walk its whole tree.
    let is_uuid_column = |e: &Expr| {
        matches!(e, Expr::Column(_))
            && e.to_field(schema)
                .is_ok_and(|(_, f)| TextType::of_field(&f) == Some(TextType::Uuid))
    };
    let is_text = |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Utf8(Some(_)), _));
    if !compares {
        return expr;
    }
    let uuid = || TextType::Uuid.input_udf();
    if is_uuid_column(&expr.left) && is_text(&expr.right) {
        expr.right = uuid().call(vec![expr.right]);
    } else if is_uuid_column(&expr.right) && is_text(&expr.left) {
        expr.left = uuid().call(vec![expr.left]);
    }
    expr
}

/// Whether `e` is a vector: of a `vector(n)` or `halfvec` type, or a `'[…]'::vector` literal (whose Arrow
/// type, a list of floats, is also `real[]`'s: a literal in pgvector's form tells them apart).
fn is_vector(e: &Expr, schema: &DFSchema) -> bool {
    if let Expr::Cast(cast) = e {
        let to_floats = matches!(cast.field.data_type(), DataType::List(item) if item.data_type() == &DataType::Float32);
        // `x::vector` (`real[]` is marked as such).
        if to_floats {
            return !crate::types::is_real_array_field(&cast.field);
        }
    }
    // The type first: `to_field` also formats the expression's name, which for a long chain
    // of operators (each one asking this of its operand) is quadratic in the chain's length.
    match e.get_type(schema) {
        Ok(DataType::FixedSizeList(item, _)) => {
            matches!(item.data_type(), DataType::Float32 | DataType::Float16)
        }
        // A halfvec without dimensions: no other type is a list of halves.
        Ok(DataType::List(item)) if item.data_type() == &DataType::Float16 => true,
        // A column of `vector` without dimensions: a list of reals marked as a vector.
        Ok(DataType::List(item)) if item.data_type() == &DataType::Float32 => {
            e.to_field(schema).is_ok_and(|(_, f)| is_marked_vector(&f))
        }
        _ => false,
    }
}

/// Whether `field`'s metadata says it holds vectors (a list of reals that is not `real[]`).
fn is_marked_vector(field: &datafusion::arrow::datatypes::Field) -> bool {
    field
        .metadata()
        .get(vecraft_storage::schema::PG_TYPE_KEY)
        .map(String::as_str)
        == Some("vector")
}

/// Whether `e` can be the other operand of a vector: a vector, or text (`'[1,2]'`, `$1`)
/// read as one.
fn fits_vector(e: &Expr, schema: &DFSchema) -> bool {
    is_vector(e, schema)
        || matches!(
            e,
            Expr::Literal(ScalarValue::Utf8(_), _) | Expr::Placeholder(_)
        )
}

/// A parameter of unknown type compared with a vector is a vector of the same dimensions, as
/// PostgreSQL resolves `embedding <-> $1`; clients then learn it from the statement.
fn typed_like(operand: Expr, other: &Expr, schema: &DFSchema) -> Expr {
    match operand {
        Expr::Placeholder(p) if p.field.is_none() => {
            let field = match other.to_field(schema) {
                Ok((_, f)) if matches!(f.data_type(), DataType::FixedSizeList(..)) => Some(f),
                Ok((_, f)) if is_vector(other, schema) => Some(f),
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
