//! INSERT and DELETE through SQL into a durable single-node collection.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::prelude::SessionContext;
use vecraft_cluster::collection::Collection;
use vecraft_storage::schema::{CollectionSchema, ColumnDef, ColumnType, VectorSpec};
use vecraft_storage::shard::ShardOptions;

use super::ids;
use crate::table::CollectionTable;
use crate::{new_session, sql};

fn open(dir: &std::path::Path) -> SessionContext {
    let schema = CollectionSchema::new(
        vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new("embedding", ColumnType::Vector(VectorSpec::new(3)), true),
            ColumnDef::new("tag", ColumnType::Text, true),
        ],
        "id",
    )
    .unwrap();
    let collection = Collection::open(dir, Some(schema), ShardOptions::default()).unwrap();
    let ctx = new_session();
    ctx.register_table(
        "items",
        Arc::new(CollectionTable::new(Arc::new(collection))),
    )
    .unwrap();
    ctx
}

async fn count_of(ctx: &SessionContext, query: &str) -> u64 {
    let b = sql(ctx, query).await.unwrap().collect().await.unwrap();
    b[0].column(0).as_primitive::<UInt64Type>().value(0)
}

#[tokio::test]
async fn insert_and_delete_are_durable_and_insert_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ctx = open(dir.path());
        let n = count_of(
            &ctx,
            "INSERT INTO items VALUES (1, '[1,2,3]', 'a'), (2, '[4,5,6]', 'b'), (3, NULL, 'c')",
        )
        .await;
        assert_eq!(n, 3);
        let dup = sql(&ctx, "INSERT INTO items VALUES (2, '[0,0,0]', 'again')")
            .await
            .unwrap()
            .collect()
            .await;
        let e = dup.expect_err("duplicate key");
        assert!(
            e.to_string()
                .contains("duplicate key value violates unique constraint"),
            "{e}"
        );
        assert_eq!(
            ids(
                &ctx,
                "SELECT id FROM items ORDER BY embedding <-> '[4,5,6]' LIMIT 1"
            )
            .await,
            vec![2]
        );
        // EXPLAIN plans a DELETE without running it.
        sql(&ctx, "EXPLAIN DELETE FROM items WHERE id = 1")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(count_of(&ctx, "DELETE FROM items WHERE id = 1").await, 1);
        assert_eq!(count_of(&ctx, "DELETE FROM items WHERE id = 1").await, 0);
    }
    let ctx = open(dir.path());
    assert_eq!(
        ids(&ctx, "SELECT id FROM items ORDER BY id").await,
        vec![2, 3]
    );
    assert_eq!(count_of(&ctx, "DELETE FROM items").await, 2);
    assert!(ids(&ctx, "SELECT id FROM items").await.is_empty());
}

#[tokio::test]
async fn a_one_row_insert_keeps_its_physical_plan_across_executions() {
    use datafusion::physical_plan::collect;
    use datafusion::physical_plan::execution_plan::reset_plan_states;
    use datafusion::scalar::ScalarValue;

    use crate::params::{ParamSlots, template};

    let dir = tempfile::tempdir().unwrap();
    let ctx = open(dir.path());
    let logical = ctx
        .state()
        .create_logical_plan("INSERT INTO items (id, tag) VALUES ($1, $2)")
        .await
        .unwrap();
    let types: Vec<_> = (1..=2)
        .map(|i| {
            logical.get_parameter_types().unwrap()[&format!("${i}")]
                .clone()
                .unwrap()
        })
        .collect();
    let slots = ParamSlots::default();
    let kept = template(&logical, &types, &slots).expect("an INSERT's one row is kept");
    let physical = ctx.state().create_physical_plan(&kept).await.unwrap();
    for (id, tag) in [(7i64, "seven"), (8, "eight")] {
        slots.set(vec![ScalarValue::Int64(Some(id)), ScalarValue::from(tag)]);
        let plan = reset_plan_states(physical.clone()).unwrap();
        let counts = collect(plan, ctx.task_ctx()).await.unwrap();
        assert_eq!(counts[0].column(0).as_primitive::<UInt64Type>().value(0), 1);
    }
    let stored = sql(&ctx, "SELECT id FROM items WHERE id IN (7, 8)")
        .await
        .unwrap();
    let stored: usize = stored
        .collect()
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(stored, 2);
    let several = ctx
        .state()
        .create_logical_plan("INSERT INTO items (id, tag) VALUES ($1, $2), (9, 'x')")
        .await
        .unwrap();
    assert!(
        template(&several, &types, &slots).is_none(),
        "VALUES of two rows"
    );
}
