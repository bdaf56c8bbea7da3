//! pgvector's functions and operators through DataFusion SQL, with the values pgvector gives.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Int64Type, Schema};
use datafusion::datasource::MemTable;
use vecraft_storage::schema::{vector_array, vector_arrow_type};

use crate::error::VectorError;
use crate::{new_session, sql as run_sql};

async fn one_f64(sql: &str) -> Option<f64> {
    let batches = run_sql(&new_session(), sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let col = batches[0].column(0);
    let col = col.as_primitive::<Float64Type>();
    col.is_valid(0).then(|| col.value(0))
}

async fn error_of(sql: &str) -> VectorError {
    let result = match run_sql(&new_session(), sql).await {
        Ok(df) => df.collect().await.map(|_| ()),
        Err(e) => Err(e),
    };
    let e = result.expect_err(sql);
    VectorError::find(&e)
        .unwrap_or_else(|| panic!("{sql}: not a vector error: {e}"))
        .clone()
}

#[tokio::test]
async fn distance_functions_and_operators_give_pgvector_values() {
    let cases: &[(&str, f64)] = &[
        ("SELECT l2_distance('[1,2,3]', '[4,5,6]')", 27f64.sqrt()),
        ("SELECT '[1,2,3]' <-> '[4,5,6]'", 27f64.sqrt()),
        ("SELECT inner_product('[1,2,3]', '[4,5,6]')", 32.0),
        ("SELECT '[1,2,3]' <#> '[4,5,6]'", -32.0),
        ("SELECT cosine_distance('[1,1]', '[2,2]')", 0.0),
        ("SELECT '[1,0]' <=> '[-1,0]'", 2.0),
        ("SELECT l1_distance('[1,2,3]', '[4,5,6]')", 9.0),
        ("SELECT '[1,2,3]' <+> '[4,5,6]'", 9.0),
        ("SELECT vector_norm('[3,4]')", 5.0),
        (
            "SELECT '[1,2,3]'::vector(3) <-> '[4,5,6]'::vector",
            27f64.sqrt(),
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(one_f64(sql).await, Some(*want), "{sql}");
    }
    assert!(
        one_f64("SELECT cosine_distance('[0,0]', '[1,1]')")
            .await
            .unwrap()
            .is_nan()
    );
    assert_eq!(one_f64("SELECT l2_distance(NULL, '[1]')").await, None);
}

#[tokio::test]
async fn vector_dims_and_normalize() {
    let ctx = new_session();
    let b = ctx
        .sql("SELECT vector_dims('[1,2,3]'::vector(3))")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(b[0].column(0).as_primitive::<Int32Type>().value(0), 3);
    let b = ctx
        .sql("SELECT l2_normalize(CAST(make_array(3.0, 4.0) AS vector(2)))")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let list = b[0].column(0).as_fixed_size_list();
    let values = list.value(0);
    let values = values.as_primitive::<datafusion::arrow::datatypes::Float32Type>();
    assert_eq!(values.values().to_vec(), vec![0.6, 0.8]);
}

#[tokio::test]
async fn bad_vectors_fail_with_pgvector_sqlstates() {
    let e = error_of("SELECT l2_distance('[1,2]', '[1,2,3]')").await;
    assert_eq!(
        (e.sqlstate, e.message.as_str()),
        ("22000", "different vector dimensions 2 and 3")
    );
    assert_eq!(
        error_of("SELECT '[1,2' <-> '[1,2]'").await.sqlstate,
        "22P02"
    );
    assert_eq!(error_of("SELECT '[NaN]' <-> '[1]'").await.sqlstate, "22000");
    let e = error_of("SELECT '[1,2]'::vector(3)").await;
    assert_eq!(
        (e.sqlstate, e.message.as_str()),
        ("22000", "expected 3 dimensions, not 2")
    );
    assert_eq!(error_of("SELECT 'x'::vector").await.sqlstate, "22P02");
}

#[tokio::test]
async fn nearest_neighbours_by_operator_over_a_table() {
    let ctx = new_session();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("embedding", vector_arrow_type(2), true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(vector_array(2, vec![1.0, 0.0, 5.0, 5.0, 0.0, 2.0], None)),
        ],
    )
    .unwrap();
    ctx.register_table(
        "items",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    let sql =
        "SELECT id, embedding <-> '[0,0]' AS d FROM items ORDER BY embedding <-> '[0,0]' LIMIT 2";
    let b = run_sql(&ctx, sql).await.unwrap().collect().await.unwrap();
    let ids: Vec<i64> = b
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, vec![1, 3]);
    let sql = "SELECT id FROM items ORDER BY embedding <=> '[1,1]' LIMIT 1";
    let b = run_sql(&ctx, sql).await.unwrap().collect().await.unwrap();
    assert_eq!(b[0].column(0).as_primitive::<Int64Type>().value(0), 2);
}

/// Distances printed as PostgreSQL prints float8, against values read off PostgreSQL 18 +
/// pgvector 0.8.6 (`bench/peers/pg_up.sh`); the storage crate checks the sums bit
/// for bit at many dimensions (`distance::pg_order`).
#[tokio::test]
async fn distances_print_as_pgvector_prints_them() {
    use crate::vector_text::format_double;
    let cases: &[(&str, &str)] = &[
        (
            "SELECT '[0.1,0.2,0.3]'::vector <-> '[0.3,0.2,0.1]'",
            "0.28284273565538476",
        ),
        (
            "SELECT '[0.1,0.2,0.3]'::vector <=> '[0.3,0.2,0.1]'",
            "0.285714316124816",
        ),
        (
            "SELECT l2_distance('[1,2,3]'::vector, '[4,5,6]')",
            "5.196152422706632",
        ),
        ("SELECT cosine_distance('[0,0]'::vector, '[1,1]')", "NaN"),
        ("SELECT '[1,2,3]'::vector <#> '[4,5,6]'", "-32"),
    ];
    for (sql, want) in cases {
        let got = one_f64(sql).await.expect(sql);
        assert_eq!(format_double(got), *want, "{sql}");
    }
}

#[tokio::test]
async fn l2_normalize_prints_as_pgvector() {
    let b = run_sql(
        &new_session(),
        "SELECT l2_normalize('[0.1,0.2,0.3]'::vector(3))",
    )
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    let list = b[0].column(0).as_fixed_size_list().value(0);
    let values = list.as_primitive::<datafusion::arrow::datatypes::Float32Type>();
    let text = crate::vector_text::format_vector(values.values());
    assert_eq!(text, "[0.26726124,0.5345225,0.80178374]");
}
