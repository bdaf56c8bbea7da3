//! `'[1,2,3]'::vector(3)`: casts of text literals to the vector type, which Arrow cannot cast,
//! become vector literals while the plan is analysed. A malformed literal fails here with
//! pgvector's error, as it fails in PostgreSQL at parse time. Casts of vectors to text become
//! `vector_out`, pgvector's text form; casts of other text to a vector, `vector_in`; casts of
//! arrays of numbers to a vector, `array_to_vector`. Casts to and from `sparsevec` become its
//! functions, and `ORDER BY` a sparsevec sorts by its key. Casts to `json`, `jsonb` and `uuid` become their
//! input functions.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::metadata::FieldMetadata;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;
use vecraft_storage::schema::{VectorElement, VectorSpec, is_bit, is_sparsevec, vector_array};

use crate::bit_udfs::BitFn;
use crate::bits::{BitLength, BitString, bit_scalar};
use crate::functions::VectorFn;
use crate::halfvec::{half_target, parse_halfvec};
use crate::sparsevec::{SparseVec, declared_dims, sparse_scalar};
use crate::sparsevec_udfs::SparseFn;
use crate::text_types::TextType;
use crate::types::is_real_array_field;
use crate::vector_text::{check_dims, parse_vector};

#[derive(Debug, Default)]
pub struct VectorCasts;

impl AnalyzerRule for VectorCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let rewritten = plan.transform_up_with_subqueries(|node| {
            // Keep each rewritten expression's output name, so parents that refer to it by
            // name still find it; then recompute the schema (a child's types may have changed).
            let preserver = NamePreserver::new(&node);
            let input = input_schema(&node)?;
            let node = node.map_expressions(|e| {
                let saved = preserver.save(&e);
                one_dimensional(&e)?;
                let rewritten = e.transform_up(|mut e| {
                    // The first rule that takes the expression rewrites it.
                    for rule in RULES {
                        let rewritten = rule(e, &input)?;
                        if rewritten.transformed {
                            return Ok(rewritten);
                        }
                        e = rewritten.data;
                    }
                    Ok(Transformed::no(e))
                })?;
                Ok(rewritten.update_data(|e| saved.restore(e)))
            })?;
            let node = node.data.recompute_schema()?;
            let node = sparse_order(values_of_their_columns_types(node)?)?;
            Ok(Transformed::yes(node))
        })?;
        Ok(rewritten.data)
    }

    fn name(&self) -> &str {
        "vector_casts"
    }
}

/// A rewrite of one expression (of the columns `input`), if it is the rule's to make.
type Rule = fn(Expr, &DFSchema) -> Result<Transformed<Expr>>;

/// The rules, in the order they are tried.
const RULES: [Rule; 8] = [
    sparse_cast,
    bit_cast,
    to_halfvec,
    rewrite_cast,
    text_to_vector,
    array_to_vector,
    text_to_array,
    vector_to_text,
];

/// A VALUES list keeps the column types it was planned with, but a vector literal of a
/// `vector` (or `halfvec`) column without dimensions became `vector(n)` above: such a value
/// is cast back to its column's type, so every row has the type of the list.
fn values_of_their_columns_types(node: LogicalPlan) -> Result<LogicalPlan> {
    let LogicalPlan::Values(mut values) = node else {
        return Ok(node);
    };
    let empty = DFSchema::empty();
    for row in &mut values.values {
        for (value, field) in row.iter_mut().zip(values.schema.fields()) {
            let declared = field.data_type();
            let any_length = matches!(vector_target(declared), Some(None))
                || matches!(half_target(declared), Some(None));
            if any_length && value.get_type(&empty)? != *declared {
                let cast = Cast::new(Box::new(value.clone()), declared.clone());
                *value = Expr::Cast(cast);
            }
        }
    }
    Ok(LogicalPlan::Values(values))
}

/// `'{{1}}'::real[]::vector`: pgvector's 22000 for an array of more than one dimension cast
/// to a vector type (arrays of arrays are not read here otherwise).
fn one_dimensional(expr: &Expr) -> Result<()> {
    expr.apply(|e| {
        let Expr::Cast(Cast { expr: inner, field }) = e else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let to_vector = vector_target(field.data_type()).is_some()
            || half_target(field.data_type()).is_some()
            || is_sparsevec(field.data_type());
        if let (true, Expr::Cast(Cast { expr: literal, .. })) = (to_vector, inner.as_ref())
            && let Expr::Literal(ScalarValue::Utf8(Some(text)), _) = literal.as_ref()
            && text
                .trim_start()
                .strip_prefix('{')
                .is_some_and(|t| t.trim_start().starts_with('{'))
        {
            return Err(crate::error::VectorError::data("array must be 1-D").into());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
}

/// `ORDER BY` a sparse vector sorts by its key ([`SparseFn::SortKey`]), whose byte order is
/// pgvector's comparison (a struct's own order, field by field, is not).
fn sparse_order(node: LogicalPlan) -> Result<LogicalPlan> {
    let LogicalPlan::Sort(mut sort) = node else {
        return Ok(node);
    };
    for order in &mut sort.expr {
        if is_sparsevec(&order.expr.get_type(sort.input.schema())?) {
            order.expr = SparseFn::SortKey.call(vec![order.expr.clone()]);
        }
    }
    Ok(LogicalPlan::Sort(sort))
}

/// Casts to and from `sparsevec`: a text literal read now (a malformed one fails at its
/// position); anything else by [`SparseFn::ToSparse`]; a sparse vector to a vector, halfvec
/// or text by their functions.
fn sparse_cast(expr: Expr, input: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if is_sparsevec(field.data_type()) {
        let dims = declared_dims(field);
        return Ok(Transformed::yes(
            match (text_literal(inner), inner.as_ref()) {
                (Some(text), _) => {
                    // The declared dimension is checked after the input, as PostgreSQL applies a
                    // typmod: that error has no position.
                    let v = SparseVec::parse(text, None).map_err(|e| e.with_literal(text))?;
                    crate::sparsevec::check_expected(dims, v.dim)?;
                    Expr::Literal(sparse_scalar(Some(v))?, None)
                }
                (_, Expr::Literal(value, _)) if value.is_null() => {
                    Expr::Literal(sparse_scalar(None)?, None)
                }
                _ => SparseFn::ToSparse.cast(inner.as_ref().clone(), dims),
            },
        ));
    }
    let from_sparse = inner.get_type(input).is_ok_and(|t| is_sparsevec(&t));
    if !from_sparse {
        return Ok(Transformed::no(expr));
    }
    let inner = inner.as_ref().clone();
    let target = field.data_type();
    let rewritten = if let Some(dims) = vector_target(target) {
        Some(SparseFn::ToVector.cast(inner, dims))
    } else if let Some(dims) = half_target(target) {
        Some(SparseFn::ToHalfvec.cast(inner, dims))
    } else {
        as_text(SparseFn::Text.call(vec![inner]), target)
    };
    Ok(rewritten.map_or_else(|| Transformed::no(expr), Transformed::yes))
}

/// The text of a string literal (`'…'`), if `e` is one.
fn text_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(text))
            | ScalarValue::LargeUtf8(Some(text))
            | ScalarValue::Utf8View(Some(text)),
            _,
        ) => Some(text),
        _ => None,
    }
}

/// A cast to `target` of a value whose text form `text` (a `Utf8` output function) gives:
/// that text, in `target`'s kind of string; `None` when `target` is no text type.
fn as_text(text: Expr, target: &DataType) -> Option<Expr> {
    match target {
        DataType::Utf8 => Some(text),
        DataType::Utf8View | DataType::LargeUtf8 => {
            Some(Expr::Cast(Cast::new(Box::new(text), target.clone())))
        }
        _ => None,
    }
}

/// Casts to `bit(n)` and `bit varying(n)` (a text literal read now, padded or truncated as
/// an explicit cast is), and of bit strings to text.
fn bit_cast(expr: Expr, input: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if is_bit(field.data_type()) {
        let length = BitLength::of_field(field).unwrap_or(BitLength::Any);
        return Ok(Transformed::yes(
            match (text_literal(inner), inner.as_ref()) {
                (Some(text), _) => {
                    let bits = BitString::parse(text).map_err(|e| e.with_literal(text))?;
                    Expr::Literal(bit_scalar(Some(bits.fit(length, true)?))?, None)
                }
                (_, Expr::Literal(value, _)) if value.is_null() => {
                    Expr::Literal(bit_scalar(None)?, None)
                }
                _ => BitFn::cast(inner.as_ref().clone(), length, true),
            },
        ));
    }
    if !inner.get_type(input).is_ok_and(|t| is_bit(&t)) {
        return Ok(Transformed::no(expr));
    }
    let text = BitFn::Text.call(vec![inner.as_ref().clone()]);
    Ok(as_text(text, field.data_type()).map_or_else(|| Transformed::no(expr), Transformed::yes))
}

/// The columns the expressions of `node` read: its inputs' together.
fn input_schema(node: &LogicalPlan) -> Result<DFSchema> {
    let mut schema = DFSchema::empty();
    for input in node.inputs() {
        schema.merge(input.schema());
    }
    Ok(schema)
}

/// `v::text` (or `varchar`): pgvector's text form, which Arrow's cast of a list cannot give.
fn vector_to_text(expr: Expr, input: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let to_text = matches!(
        field.data_type(),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    );
    // An expression whose type cannot be told here (a placeholder) stays as it is.
    let from_vector = inner
        .get_type(input)
        .is_ok_and(|t| vector_target(&t).is_some() || half_target(&t).is_some());
    if !(to_text && from_vector) {
        return Ok(Transformed::no(expr));
    }
    let text = VectorFn::Text.udf().call(vec![inner.as_ref().clone()]);
    Ok(as_text(text, field.data_type()).map_or_else(|| Transformed::no(expr), Transformed::yes))
}

/// `x::halfvec(n)`: a text literal read as pgvector's `halfvec_in` reads it; other text read
/// as a vector first; arrays of numbers, vectors and halfvecs by `array_to_halfvec`.
fn to_halfvec(expr: Expr, input: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let Some(dims) = half_target(field.data_type()) else {
        return Ok(Transformed::no(expr));
    };
    let half_array = |e: Expr| {
        let dims = datafusion::prelude::lit(dims.unwrap_or(0) as i64);
        let args = vec![e, dims, datafusion::prelude::lit(false)];
        Ok(Transformed::yes(
            crate::array_to_vector::array_to_halfvec().call(args),
        ))
    };
    if let Expr::Literal(value, _) = inner.as_ref() {
        return match value {
            ScalarValue::Utf8(Some(text))
            | ScalarValue::LargeUtf8(Some(text))
            | ScalarValue::Utf8View(Some(text)) => {
                let v = parse_halfvec(text).map_err(|e| e.with_literal(text))?;
                if let Some(dims) = dims {
                    check_dims(v.len(), dims)?;
                }
                let halves = VectorSpec {
                    element: VectorElement::Float16,
                    ..VectorSpec::new(v.len())
                };
                let reals = ScalarValue::FixedSizeList(Arc::new(vector_array(v.len(), v, None)));
                let literal = reals.cast_to(&halves.arrow_type())?;
                Ok(Transformed::yes(Expr::Literal(literal, None)))
            }
            ScalarValue::Null
            | ScalarValue::Utf8(None)
            | ScalarValue::LargeUtf8(None)
            | ScalarValue::Utf8View(None) => Ok(Transformed::no(expr)),
            _ => half_array(inner.as_ref().clone()),
        };
    }
    match inner.get_type(input)? {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
            let Some(dims) = dims else {
                let message = "text other than a literal cast to halfvec needs its dimensions";
                return Err(crate::error::VectorError::new("0A000", message).into());
            };
            let read = crate::vector_in::vector_in(dims).call(vec![inner.as_ref().clone()]);
            half_array(read)
        }
        _ => half_array(inner.as_ref().clone()),
    }
}

/// `t::vector(n)` of text that is not a literal (a column, a VALUES list's rows): read row by
/// row by pgvector's input function. (Only to `vector(n)`: `vector` without a dimension has
/// the type of `real[]`, whose text form is another.)
fn text_to_vector(expr: Expr, input: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let Some(Some(dims)) = vector_target(field.data_type()) else {
        return Ok(Transformed::no(expr));
    };
    let from_text = inner
        .get_type(input)
        .is_ok_and(|t| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8));
    if !from_text || dims == 0 || matches!(inner.as_ref(), Expr::Literal(..)) {
        return Ok(Transformed::no(expr));
    }
    let read = crate::vector_in::vector_in(dims).call(vec![inner.as_ref().clone()]);
    Ok(Transformed::yes(read))
}

/// `numbers::vector(n)` of an array of numbers (or of a vector of other dimensions):
/// pgvector's `array_to_vector`, with its checks (`array_to_vector.rs`).
fn array_to_vector(expr: Expr, input: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let Some(dims) = vector_target(field.data_type()) else {
        return Ok(Transformed::no(expr));
    };
    if is_real_array_field(field) {
        return Ok(Transformed::no(expr)); // `v::real[]`: Arrow's cast of the list
    }
    let Ok(from) = inner.get_type(input) else {
        return Ok(Transformed::no(expr));
    };
    match crate::array_to_vector::number_element(&from) {
        Some(element) if crate::array_to_vector::casts_to_vector(element) => {}
        // `smallint[]`: pgvector has no such cast.
        Some(element) => {
            let name = match element {
                DataType::Int16 => "smallint[]",
                _ => "anyarray",
            };
            let message = format!("cannot cast type {name} to vector");
            return Err(crate::error::VectorError::new("42846", message).into());
        }
        None => return Ok(Transformed::no(expr)),
    }
    let dims = datafusion::prelude::lit(dims.unwrap_or(0) as i64);
    let args = vec![
        inner.as_ref().clone(),
        dims,
        datafusion::prelude::lit(false),
    ];
    Ok(Transformed::yes(
        crate::array_to_vector::array_to_vector().call(args),
    ))
}

/// `'{a,b}'::text[]` (and a text value written to an array column): read by PostgreSQL's
/// array input, then each element cast to the element type. (Not to `real[]`, whose Arrow
/// type is the unsized vector's.)
fn text_to_array(expr: Expr, input: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let DataType::List(element) = field.data_type() else {
        return Ok(Transformed::no(expr));
    };
    let from_text = inner
        .get_type(input)
        .is_ok_and(|t| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8));
    if !from_text || (element.data_type() == &DataType::Float32 && !is_real_array_field(field)) {
        return Ok(Transformed::no(expr));
    }
    let texts = crate::array_text::array_in().call(vec![inner.as_ref().clone()]);
    if element.data_type() == &DataType::Utf8 {
        return Ok(Transformed::yes(texts));
    }
    Ok(Transformed::yes(Expr::Cast(Cast::new(
        Box::new(texts),
        field.data_type().clone(),
    ))))
}

/// The target dimension when `data_type` is the vector type: `Some(Some(n))` for
/// `vector(n)`, `Some(None)` for `vector`.
fn vector_target(data_type: &DataType) -> Option<Option<usize>> {
    match data_type {
        DataType::FixedSizeList(f, n) if f.data_type() == &DataType::Float32 => {
            Some(Some(*n as usize))
        }
        DataType::List(f) if f.data_type() == &DataType::Float32 => Some(None),
        _ => None,
    }
}

/// The `real[]` an array literal reads as.
fn real_array(text: &str) -> Result<ScalarValue> {
    let items = crate::array_text::parse_array(text).map_err(|e| e.with_literal(text))?;
    let mut reals = Vec::with_capacity(items.len());
    for item in items {
        let real = match item {
            None => None,
            Some(s) => Some(s.trim().parse::<f32>().map_err(|_| {
                crate::error::VectorError::syntax_of("real", &s).with_literal(text)
            })?),
        };
        reals.push(ScalarValue::Float32(real));
    }
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &reals,
        &DataType::Float32,
    )))
}

/// `'{"[1,2]","[3,4]"}'::vector[]` (or `vector(n)[]`, `halfvec[]`): an array literal of
/// vectors, each read and checked as a vector (or halfvec) literal is.
fn vector_array_literal(
    text: &str,
    dims: Option<usize>,
    element: &DataType,
) -> Result<ScalarValue> {
    let items = crate::array_text::parse_array(text).map_err(|e| e.with_literal(text))?;
    let mut vectors = Vec::with_capacity(items.len());
    for item in items {
        let Some(item) = item else {
            vectors.push(ScalarValue::try_from(element)?);
            continue;
        };
        let v = match half_target(element) {
            Some(_) => parse_halfvec(&item),
            None => parse_vector(&item),
        };
        let v = v.map_err(|e| e.with_literal(text))?;
        if let Some(dims) = dims {
            check_dims(v.len(), dims)?;
        }
        let floats = ScalarValue::FixedSizeList(Arc::new(vector_array(v.len(), v, None)));
        vectors.push(floats.cast_to(element)?);
    }
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &vectors, element,
    )))
}

fn rewrite_cast(expr: Expr, _input: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if let Some(t) = TextType::of_field(field) {
        // `x::jsonb`: Arrow's cast would keep any text; the input function checks it.
        return Ok(Transformed::yes(
            t.input_udf().call(vec![inner.as_ref().clone()]),
        ));
    }
    let Expr::Literal(value, _) = inner.as_ref() else {
        return Ok(Transformed::no(expr));
    };
    let text = match value {
        ScalarValue::Utf8(Some(t))
        | ScalarValue::LargeUtf8(Some(t))
        | ScalarValue::Utf8View(Some(t)) => t,
        // NULL::vector stays a (foldable) NULL cast.
        _ => return Ok(Transformed::no(expr)),
    };
    if let DataType::List(element) = field.data_type()
        && let Some(dims) = vector_target(element.data_type()).or(half_target(element.data_type()))
    {
        let vectors = vector_array_literal(text, dims, element.data_type())?;
        return Ok(Transformed::yes(Expr::Literal(vectors, None)));
    }
    let Some(target) = vector_target(field.data_type()) else {
        return Ok(Transformed::no(expr));
    };
    if is_real_array_field(field) {
        // `'{1,2,3}'::real[]`, which keeps its mark (it prints as an array, not a vector).
        let metadata = FieldMetadata::from(field.metadata());
        return Ok(Transformed::yes(Expr::Literal(
            real_array(text)?,
            Some(metadata),
        )));
    }
    if target.is_none() && text.trim_start().starts_with('{') {
        // `'{1,2,3}'::real[]`: an array literal (real[] is the unsized vector's type here).
        return Ok(Transformed::yes(Expr::Literal(real_array(text)?, None)));
    }
    let v = parse_vector(text).map_err(|e| e.with_literal(text))?;
    if let Some(dims) = target {
        check_dims(v.len(), dims)?;
    }
    let dims = v.len();
    let literal = ScalarValue::FixedSizeList(Arc::new(vector_array(dims, v, None)));
    Ok(Transformed::yes(Expr::Literal(literal, None)))
}
