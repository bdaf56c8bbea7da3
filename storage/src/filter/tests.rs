//! Filter semantics: operators, three-valued logic, coercions, validation.

use super::*;
use crate::schema::{ColumnDef, VectorSpec};
use arrow::datatypes::{Field, Schema};

fn cmp_(column: &str, op: CmpOp, value: Scalar) -> Filter {
    Filter::Compare {
        column: column.into(),
        op,
        value,
    }
}

fn in_(column: &str, values: Vec<Scalar>, negated: bool) -> Filter {
    Filter::In {
        column: column.into(),
        values,
        negated,
    }
}

fn not_(f: Filter) -> Filter {
    Filter::Not(Box::new(f))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

/// Rows 1..=6, with nulls in every column but `id`.
fn sample() -> RecordBatch {
    let ts = TimestampMicrosecondArray::from(vec![
        Some(0),
        Some(1_000_000),
        None,
        Some(-1),
        Some(5),
        Some(1_700_000_000_000_000),
    ]);
    batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6]))),
        (
            "i32",
            Arc::new(Int32Array::from(vec![
                Some(1),
                None,
                Some(3),
                Some(-5),
                Some(i32::MAX),
                Some(0),
            ])),
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![
                Some(1.5),
                Some(2.0),
                None,
                Some(-0.0),
                Some(f64::NAN),
                Some(3.0),
            ])),
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![
                Some(0.1),
                None,
                Some(16_777_216.0),
                Some(2.5),
                Some(-1.0),
                Some(0.0),
            ])),
        ),
        (
            "txt",
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                None,
                Some("a"),
                Some("c"),
                Some(""),
            ])),
        ),
        (
            "flag",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                Some(false),
                None,
            ])),
        ),
        ("ts", Arc::new(ts)),
    ])
}

/// The `id`s of the selected rows.
fn sel(b: &RecordBatch, f: &Filter) -> Vec<i64> {
    let mask = f.evaluate(b).unwrap();
    assert_eq!(mask.len(), b.num_rows());
    assert_eq!(mask.null_count(), 0);
    let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
    (0..mask.len())
        .filter(|&i| mask.value(i))
        .map(|i| ids.value(i))
        .collect()
}

/// Per row: TRUE, FALSE or NULL, told apart by evaluating the filter and its negation.
fn truth(b: &RecordBatch, f: &Filter) -> Vec<Option<bool>> {
    let yes = f.evaluate(b).unwrap();
    let no = not_(f.clone()).evaluate(b).unwrap();
    (0..b.num_rows())
        .map(|i| match (yes.value(i), no.value(i)) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
            _ => panic!("row {i} both true and false"),
        })
        .collect()
}

use CmpOp::*;
use Scalar::{Bool, Float, Int, Null, Text, Timestamp};

#[test]
fn integer_operators() {
    let b = sample();
    assert_eq!(sel(&b, &cmp_("i32", Eq, Int(3))), vec![3]);
    assert_eq!(sel(&b, &cmp_("i32", NotEq, Int(3))), vec![1, 4, 5, 6]);
    assert_eq!(sel(&b, &cmp_("i32", Lt, Int(1))), vec![4, 6]);
    assert_eq!(sel(&b, &cmp_("i32", LtEq, Int(1))), vec![1, 4, 6]);
    assert_eq!(sel(&b, &cmp_("i32", Gt, Int(1))), vec![3, 5]);
    assert_eq!(sel(&b, &cmp_("i32", GtEq, Int(3))), vec![3, 5]);
    assert_eq!(sel(&b, &cmp_("id", GtEq, Int(5))), vec![5, 6]);
}

#[test]
fn int_literal_beyond_int32_range() {
    let b = sample();
    let big = 10_000_000_000;
    assert_eq!(sel(&b, &cmp_("i32", Lt, Int(big))), vec![1, 3, 4, 5, 6]);
    assert_eq!(sel(&b, &cmp_("i32", LtEq, Int(big))), vec![1, 3, 4, 5, 6]);
    assert_eq!(sel(&b, &cmp_("i32", NotEq, Int(big))), vec![1, 3, 4, 5, 6]);
    assert!(sel(&b, &cmp_("i32", Gt, Int(big))).is_empty());
    assert!(sel(&b, &cmp_("i32", Eq, Int(big))).is_empty());
    assert_eq!(sel(&b, &cmp_("i32", Gt, Int(-big))), vec![1, 3, 4, 5, 6]);
    assert!(sel(&b, &cmp_("i32", Lt, Int(-big))).is_empty());
    assert_eq!(sel(&b, &cmp_("i32", Eq, Int(i64::from(i32::MAX)))), vec![5]);
    // The out-of-range answer is still NULL for a NULL row.
    assert_eq!(truth(&b, &cmp_("i32", Lt, Int(big)))[1], None);
}

#[test]
fn float_literal_against_int_column() {
    let b = sample();
    assert_eq!(sel(&b, &cmp_("i32", Lt, Float(1.5))), vec![1, 4, 6]);
    assert_eq!(sel(&b, &cmp_("i32", LtEq, Float(1.5))), vec![1, 4, 6]);
    assert_eq!(sel(&b, &cmp_("i32", Gt, Float(1.5))), vec![3, 5]);
    assert_eq!(sel(&b, &cmp_("i32", GtEq, Float(1.5))), vec![3, 5]);
    assert_eq!(sel(&b, &cmp_("i32", Gt, Float(-4.5))), vec![1, 3, 5, 6]);
    assert_eq!(sel(&b, &cmp_("i32", Lt, Float(-4.5))), vec![4]);
    assert_eq!(sel(&b, &cmp_("i32", Eq, Float(3.0))), vec![3]);
    assert!(sel(&b, &cmp_("i32", Eq, Float(3.5))).is_empty());
    assert_eq!(
        sel(&b, &cmp_("i32", NotEq, Float(3.5))),
        vec![1, 3, 4, 5, 6]
    );
    assert_eq!(sel(&b, &cmp_("i32", Lt, Float(1e300))), vec![1, 3, 4, 5, 6]);
    assert_eq!(
        sel(&b, &cmp_("i32", Gt, Float(f64::NEG_INFINITY))),
        vec![1, 3, 4, 5, 6]
    );
    assert_eq!(
        sel(&b, &cmp_("i32", Lt, Float(f64::NAN))),
        vec![1, 3, 4, 5, 6]
    );
    assert!(sel(&b, &cmp_("i32", Eq, Float(f64::NAN))).is_empty());
    assert_eq!(
        sel(&b, &cmp_("id", Lt, Float(9.3e18))),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        sel(&b, &cmp_("id", Gt, Float(-9.3e18))),
        vec![1, 2, 3, 4, 5, 6]
    );
}

#[test]
fn numbers_against_float_columns() {
    let b = sample();
    assert_eq!(sel(&b, &cmp_("f64", Eq, Int(2))), vec![2]);
    assert_eq!(sel(&b, &cmp_("f64", Lt, Int(2))), vec![1, 4]);
    // NaN sorts above every number, as in PostgreSQL.
    assert_eq!(sel(&b, &cmp_("f64", Gt, Float(1.5))), vec![2, 5, 6]);
    assert_eq!(sel(&b, &cmp_("f64", Eq, Float(f64::NAN))), vec![5]);
    // -0.0 = 0.
    assert_eq!(sel(&b, &cmp_("f64", Eq, Int(0))), vec![4]);
    assert_eq!(sel(&b, &cmp_("f64", Eq, Float(-0.0))), vec![4]);
    assert_eq!(sel(&b, &cmp_("f64", NotEq, Float(0.0))), vec![1, 2, 5, 6]);
    assert!(sel(&b, &cmp_("f64", Lt, Float(0.0))).is_empty());
    assert_eq!(sel(&b, &cmp_("f64", LtEq, Float(0.0))), vec![4]);
    assert_eq!(sel(&b, &cmp_("f64", GtEq, Float(0.0))), vec![1, 2, 4, 5, 6]);
    assert_eq!(sel(&b, &cmp_("f64", Gt, Float(-0.0))), vec![1, 2, 5, 6]);
    // REAL column: float literals are rounded to f32, integers compared exactly.
    assert_eq!(sel(&b, &cmp_("f32", Eq, Float(0.1))), vec![1]);
    assert_eq!(sel(&b, &cmp_("f32", Eq, Int(16_777_216))), vec![3]);
    assert!(sel(&b, &cmp_("f32", Eq, Int(16_777_217))).is_empty());
    assert_eq!(
        sel(&b, &cmp_("f32", Lt, Int(16_777_217))),
        vec![1, 3, 4, 5, 6]
    );
    assert_eq!(sel(&b, &cmp_("f32", Lt, Float(1e300))), vec![1, 3, 4, 5, 6]);
    assert!(sel(&b, &cmp_("f32", Gt, Float(1e300))).is_empty());
    assert_eq!(sel(&b, &cmp_("f32", Eq, Int(-1))), vec![5]);
    assert_eq!(sel(&b, &cmp_("f32", LtEq, Float(-0.0))), vec![5, 6]);
}

#[test]
fn text_bool_and_timestamp_operators() {
    let b = sample();
    assert_eq!(sel(&b, &cmp_("txt", Eq, Text("a".into()))), vec![1, 4]);
    assert_eq!(
        sel(&b, &cmp_("txt", NotEq, Text("a".into()))),
        vec![2, 5, 6]
    );
    assert_eq!(sel(&b, &cmp_("txt", Lt, Text("b".into()))), vec![1, 4, 6]);
    assert_eq!(sel(&b, &cmp_("txt", GtEq, Text("b".into()))), vec![2, 5]);
    assert_eq!(sel(&b, &cmp_("flag", Eq, Bool(true))), vec![1, 4]);
    assert_eq!(sel(&b, &cmp_("flag", NotEq, Bool(true))), vec![2, 5]);
    assert_eq!(sel(&b, &cmp_("flag", Lt, Bool(true))), vec![2, 5]);
    assert_eq!(sel(&b, &cmp_("ts", Gt, Timestamp(0))), vec![2, 5, 6]);
    assert_eq!(sel(&b, &cmp_("ts", LtEq, Int(0))), vec![1, 4]);
    assert_eq!(sel(&b, &cmp_("ts", Eq, Timestamp(1_000_000))), vec![2]);
}

#[test]
fn comparing_with_null_selects_nothing() {
    let b = sample();
    for op in [Eq, NotEq, Lt, LtEq, Gt, GtEq] {
        let f = cmp_("i32", op, Null);
        assert!(sel(&b, &f).is_empty());
        assert!(sel(&b, &not_(f)).is_empty());
    }
    assert!(sel(&b, &cmp_("txt", Eq, Null)).is_empty());
}

#[test]
fn in_and_not_in() {
    let b = sample();
    assert_eq!(
        sel(&b, &in_("i32", vec![Int(1), Int(3)], false)),
        vec![1, 3]
    );
    assert_eq!(
        sel(&b, &in_("i32", vec![Int(1), Int(3)], true)),
        vec![4, 5, 6]
    );
    assert_eq!(sel(&b, &in_("i32", vec![Int(1), Null], false)), vec![1]);
    assert!(sel(&b, &in_("i32", vec![Int(1), Null], true)).is_empty());
    assert_eq!(
        truth(&b, &in_("i32", vec![Int(1), Null], false)),
        vec![Some(true), None, None, None, None, None]
    );
    assert_eq!(
        truth(&b, &in_("i32", vec![Int(1)], false)),
        vec![
            Some(true),
            None,
            Some(false),
            Some(false),
            Some(false),
            Some(false)
        ]
    );
    // Empty list: FALSE / TRUE for every row, NULL rows included.
    assert!(sel(&b, &in_("i32", vec![], false)).is_empty());
    assert_eq!(sel(&b, &in_("i32", vec![], true)), vec![1, 2, 3, 4, 5, 6]);
    // Only NULL: unknown everywhere.
    assert!(sel(&b, &in_("i32", vec![Null], false)).is_empty());
    assert!(sel(&b, &in_("i32", vec![Null], true)).is_empty());
    let mixed = vec![Float(1.0), Float(3.5), Int(10_000_000_000)];
    assert_eq!(sel(&b, &in_("i32", mixed, false)), vec![1]);
    let texts = vec![Text("a".into()), Text("c".into())];
    assert_eq!(sel(&b, &in_("txt", texts, false)), vec![1, 4, 5]);
    assert_eq!(
        sel(&b, &in_("f64", vec![Int(0), Float(3.0)], false)),
        vec![4, 6]
    );
    assert_eq!(
        sel(&b, &in_("ts", vec![Int(5), Timestamp(-1)], false)),
        vec![4, 5]
    );
}

#[test]
fn long_in_lists_match_the_kernel_path() {
    let b = sample();
    let mut ints: Vec<Scalar> = (-20..20).map(Int).collect();
    ints.extend([Float(3.5), Int(10_000_000_000), Int(i64::from(i32::MAX))]);
    let short = Filter::Or(ints.iter().map(|v| cmp_("i32", Eq, v.clone())).collect());
    for column in ["i32", "id", "ts"] {
        let values: Vec<Scalar> = ints
            .iter()
            .filter(|v| column != "ts" || !matches!(v, Float(_)))
            .cloned()
            .collect();
        let long = in_(column, values.clone(), false);
        let short = Filter::Or(values.iter().map(|v| cmp_(column, Eq, v.clone())).collect());
        assert_eq!(truth(&b, &long), truth(&b, &short), "{column}");
    }
    assert_eq!(sel(&b, &short), vec![1, 3, 4, 5, 6]);
    let mut texts: Vec<Scalar> = (0..20).map(|i| Text(format!("x{i}"))).collect();
    texts.push(Text("".into()));
    texts.push(Text("b".into()));
    assert_eq!(sel(&b, &in_("txt", texts.clone(), false)), vec![2, 6]);
    texts.push(Null);
    assert_eq!(sel(&b, &in_("txt", texts.clone(), false)), vec![2, 6]);
    assert!(sel(&b, &in_("txt", texts, true)).is_empty());
}

#[test]
fn is_null_and_is_not_null() {
    let b = sample();
    let is_null = |column: &str, negated| Filter::IsNull {
        column: column.into(),
        negated,
    };
    assert_eq!(sel(&b, &is_null("i32", false)), vec![2]);
    assert_eq!(sel(&b, &is_null("i32", true)), vec![1, 3, 4, 5, 6]);
    assert_eq!(sel(&b, &is_null("flag", false)), vec![3, 6]);
    assert_eq!(sel(&b, &is_null("id", false)), Vec::<i64>::new());
    assert_eq!(sel(&b, &not_(is_null("txt", false))), vec![1, 2, 4, 5, 6]);
}

#[test]
fn three_valued_logic() {
    // p and q over every combination of TRUE, FALSE and NULL.
    let vals = [Some(true), Some(false), None];
    let p: Vec<Option<bool>> = vals.iter().flat_map(|&a| [a; 3]).collect();
    let q: Vec<Option<bool>> = (0..3).flat_map(|_| vals).collect();
    let b = batch(vec![
        (
            "id",
            Arc::new(Int64Array::from((0..9).collect::<Vec<i64>>())),
        ),
        ("p", Arc::new(BooleanArray::from(p.clone()))),
        ("q", Arc::new(BooleanArray::from(q.clone()))),
    ]);
    let pf = cmp_("p", Eq, Bool(true));
    let qf = cmp_("q", Eq, Bool(true));
    let and = |a: Option<bool>, b: Option<bool>| match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    };
    let or = |a: Option<bool>, b: Option<bool>| match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    };
    let zip = |f: &dyn Fn(Option<bool>, Option<bool>) -> Option<bool>| -> Vec<Option<bool>> {
        p.iter().zip(&q).map(|(a, b)| f(*a, *b)).collect()
    };
    assert_eq!(truth(&b, &pf), p);
    let both = Filter::And(vec![pf.clone(), qf.clone()]);
    assert_eq!(truth(&b, &both), zip(&and));
    let either = Filter::Or(vec![pf.clone(), qf.clone()]);
    assert_eq!(truth(&b, &either), zip(&or));
    let negated: Vec<Option<bool>> = p.iter().map(|a| a.map(|a| !a)).collect();
    assert_eq!(truth(&b, &not_(pf.clone())), negated);
    assert_eq!(truth(&b, &not_(not_(pf.clone()))), p);
    assert_eq!(sel(&b, &Filter::And(vec![])).len(), 9);
    assert!(sel(&b, &Filter::Or(vec![])).is_empty());
    assert_eq!(sel(&b, &Filter::Literal(true)).len(), 9);
    assert!(sel(&b, &Filter::Literal(false)).is_empty());
    let with_true = Filter::And(vec![pf.clone(), Filter::Literal(true)]);
    assert_eq!(truth(&b, &with_true), p);
    let three = Filter::Or(vec![pf, qf, Filter::Literal(false)]);
    assert_eq!(truth(&b, &three), zip(&or));
}

fn schema() -> CollectionSchema {
    let vector = ColumnType::Vector(VectorSpec::new(3));
    CollectionSchema::new(
        vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new("i32", ColumnType::Int32, true),
            ColumnDef::new("f64", ColumnType::Float64, true),
            ColumnDef::new("txt", ColumnType::Text, true),
            ColumnDef::new("flag", ColumnType::Bool, true),
            ColumnDef::new("ts", ColumnType::Timestamp, true),
            ColumnDef::new("embedding", vector, true),
        ],
        "id",
    )
    .unwrap()
}

#[test]
fn validate_accepts_comparable_values() {
    let s = schema();
    let ok = [
        cmp_("i32", Lt, Int(10_000_000_000)),
        cmp_("i32", Lt, Float(1.5)),
        cmp_("f64", GtEq, Int(3)),
        cmp_("txt", Eq, Null),
        cmp_("ts", Gt, Int(0)),
        cmp_("ts", Gt, Timestamp(0)),
        cmp_("flag", Eq, Bool(false)),
        in_("txt", vec![Text("a".into()), Null], true),
        Filter::And(vec![Filter::Literal(true), not_(cmp_("id", Eq, Int(1)))]),
    ];
    for f in ok {
        f.validate(&s).unwrap_or_else(|e| panic!("{f:?}: {e}"));
    }
}

#[test]
fn validate_rejects_bad_filters() {
    let s = schema();
    let unknown = Filter::Or(vec![Filter::Literal(false), cmp_("nope", Eq, Int(1))]);
    assert!(matches!(unknown.validate(&s), Err(Error::UnknownColumn(c)) if c == "nope"));
    let vector = Filter::IsNull {
        column: "embedding".into(),
        negated: false,
    };
    assert!(matches!(
        vector.validate(&s),
        Err(Error::InvalidArgument(_))
    ));
    let bad = [
        cmp_("i32", Eq, Text("1".into())),
        cmp_("f64", Eq, Bool(true)),
        cmp_("flag", Eq, Int(1)),
        cmp_("txt", Lt, Int(1)),
        cmp_("ts", Lt, Float(1.0)),
        cmp_("i32", Lt, Timestamp(1)),
        not_(in_("id", vec![Int(1), Text("x".into())], false)),
    ];
    for f in bad {
        assert!(
            matches!(f.validate(&s), Err(Error::InvalidArgument(_))),
            "{f:?}"
        );
    }
}

#[test]
fn evaluate_reports_errors_instead_of_panicking() {
    let b = sample();
    let unknown = cmp_("nope", Eq, Int(1));
    assert!(matches!(unknown.evaluate(&b), Err(Error::UnknownColumn(_))));
    let mismatched = in_("i32", vec![Int(1), Text("x".into())], false);
    assert!(matches!(
        mismatched.evaluate(&b),
        Err(Error::InvalidArgument(_))
    ));
    let mut deep = Filter::Literal(true);
    for _ in 0..=MAX_DEPTH {
        deep = not_(deep);
    }
    assert!(matches!(deep.evaluate(&b), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        deep.validate(&schema()),
        Err(Error::InvalidArgument(_))
    ));
    let empty = sample().slice(0, 0);
    assert_eq!(cmp_("i32", Lt, Int(1)).evaluate(&empty).unwrap().len(), 0);
    assert_eq!(Filter::Literal(true).evaluate(&empty).unwrap().len(), 0);
}

#[test]
fn selectivity_one_percent_of_ten_thousand() {
    let n = 10_000i64;
    let b = batch(vec![
        ("id", Arc::new(Int64Array::from((0..n).collect::<Vec<_>>()))),
        (
            "cat",
            Arc::new(Int32Array::from(
                (0..n).map(|i| (i % 100) as i32).collect::<Vec<_>>(),
            )),
        ),
        (
            "name",
            Arc::new(StringArray::from(
                (0..n).map(|i| format!("n{}", i % 100)).collect::<Vec<_>>(),
            )),
        ),
    ]);
    let count = |f: &Filter| {
        let ids = sel(&b, f);
        assert!(ids.iter().all(|id| id % 100 == 7), "{f:?}");
        ids.len()
    };
    assert_eq!(count(&cmp_("cat", Eq, Int(7))), 100);
    let range = Filter::And(vec![cmp_("cat", GtEq, Float(6.5)), cmp_("cat", Lt, Int(8))]);
    assert_eq!(count(&range), 100);
    let ids: Vec<Scalar> = (0..100).map(|i| Int(i * 100 + 7)).collect();
    assert_eq!(count(&in_("id", ids, false)), 100);
    let short = vec![Int(7), Float(7.5), Int(10_000_000_000), Null];
    assert_eq!(count(&in_("cat", short, false)), 100);
    assert_eq!(count(&in_("name", vec![Text("n7".into())], false)), 100);
    let others: Vec<Scalar> = (0..100).filter(|&i| i != 7).map(Int).collect();
    assert_eq!(count(&in_("cat", others, true)), 100);
    let names: Vec<Scalar> = (0..100)
        .filter(|&i| i != 7)
        .map(|i| Text(format!("n{i}")))
        .collect();
    assert_eq!(count(&in_("name", names.clone(), true)), 100);
    let mut with_null = names;
    with_null.push(Null);
    assert_eq!(count(&in_("name", with_null, true)), 0);
}

#[test]
fn columns_are_listed_once_in_order() {
    let f = Filter::And(vec![
        cmp_("b", Eq, Int(1)),
        Filter::Or(vec![
            in_("a", vec![], false),
            not_(Filter::IsNull {
                column: "b".into(),
                negated: true,
            }),
        ]),
        Filter::Literal(true),
        cmp_("c", Eq, Null),
    ]);
    assert_eq!(f.columns(), vec!["b", "a", "c"]);
    assert!(Filter::Literal(false).columns().is_empty());
}

#[test]
fn serde_round_trip() {
    let f = Filter::And(vec![
        in_("txt", vec![Text("a".into()), Null, Float(1.5)], true),
        not_(cmp_("ts", Lt, Timestamp(-3))),
    ]);
    let json = serde_json::to_string(&f).unwrap();
    assert_eq!(serde_json::from_str::<Filter>(&json).unwrap(), f);
}

/// A filter nested past `MAX_DEPTH` is refused while it is decoded, however deep it goes
/// (100,000 `Not`s take a few hundred kilobytes), on a thread with a small stack.
#[test]
fn deep_filters_are_refused_while_decoding() {
    fn nested(levels: usize) -> Vec<u8> {
        // postcard: a variant is its index as a varint (Not = 5, Literal = 6), then its fields.
        let mut bytes = vec![5u8; levels];
        bytes.extend_from_slice(&[6, 1]);
        bytes
    }
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            let decode = |bytes: Vec<u8>| postcard::from_bytes::<Filter>(&bytes);
            let shallow = decode(nested(MAX_DEPTH)).unwrap();
            assert!(matches!(shallow, Filter::Not(_)));
            for levels in [MAX_DEPTH + 1, 100_000] {
                assert!(decode(nested(levels)).is_err(), "{levels} levels");
            }
            // The count went back to zero after the refusals: the same depth decodes again.
            assert!(decode(nested(MAX_DEPTH)).is_ok());
        })
        .unwrap()
        .join()
        .expect("decoding stays within a small stack");
}

/// Filters as a Flight ticket carries them, mangled: decoding never panics.
#[test]
fn fuzz_filter_decoding() {
    let seed = Filter::And(vec![
        Filter::Compare {
            column: "category".into(),
            op: CmpOp::Lt,
            value: Scalar::Int(5),
        },
        Filter::Not(Box::new(Filter::In {
            column: "tag".into(),
            values: vec![Scalar::Text("a".into()), Scalar::Null],
            negated: false,
        })),
        Filter::Or(vec![Filter::IsNull {
            column: "tag".into(),
            negated: true,
        }]),
    ]);
    let bytes = postcard::to_stdvec(&seed).unwrap();
    assert_eq!(postcard::from_bytes::<Filter>(&bytes).unwrap(), seed);
    crate::fuzz::run("filter", &[&bytes], |input| {
        let _ = postcard::from_bytes::<Filter>(input);
    });
}
