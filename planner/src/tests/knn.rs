//! KNN queries over a real storage shard: the rewrite happens (EXPLAIN), its answers equal an
//! exact scan's, filters travel into the search, and the session settings reach it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::prelude::SessionContext;
use vecraft_storage::command::Command;
use vecraft_storage::schema::{
    CollectionSchema, ColumnDef, ColumnType, VectorSpec, vector_array, vector_arrow_type,
};
use vecraft_storage::shard::{Shard, ShardOptions};
use vecraft_storage::synthetic::gaussian_mixture;

use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::error::Result as DfResult;
use vecraft_storage::filter::Filter;
use vecraft_storage::shard::SearchRequest;

use super::ids;
use crate::collection::{CollectionSource, Consistency, ShardSource, ShardTrace};
use crate::table::CollectionTable;
use crate::{new_session, sql};

const DIMS: usize = 8;
const ROWS: usize = 3000;

/// Counts how the planner reads the collection, to tell an index search from a scan.
#[derive(Debug)]
struct Counting {
    inner: ShardSource,
    scans: AtomicUsize,
    searches: AtomicUsize,
}

impl CollectionSource for Counting {
    fn schema(&self) -> CollectionSchema {
        self.inner.schema()
    }

    fn scan(
        &self,
        projection: Option<&[String]>,
        filter: Option<&Filter>,
        read: Consistency,
    ) -> DfResult<Vec<RecordBatch>> {
        self.scans.fetch_add(1, Ordering::Relaxed);
        self.inner.scan(projection, filter, read)
    }

    fn search(&self, request: &SearchRequest, read: Consistency) -> DfResult<RecordBatch> {
        self.searches.fetch_add(1, Ordering::Relaxed);
        self.inner.search(request, read)
    }

    /// As a one-shard collection traces its search, for the plan's metrics.
    fn search_traced(
        &self,
        request: &SearchRequest,
        read: Consistency,
    ) -> DfResult<(RecordBatch, Vec<ShardTrace>)> {
        let batch = self.search(request, read)?;
        let trace = ShardTrace {
            rows: batch.num_rows(),
            elapsed: std::time::Duration::from_micros(1),
        };
        Ok((batch, vec![trace]))
    }
}

fn session_with_items(dir: &std::path::Path) -> (SessionContext, Vec<f32>) {
    let (ctx, queries, _) = counted_session(dir);
    (ctx, queries)
}

fn counted_session(dir: &std::path::Path) -> (SessionContext, Vec<f32>, Arc<Counting>) {
    let schema = CollectionSchema::new(
        vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new("embedding", ColumnType::Vector(VectorSpec::new(DIMS)), true),
            ColumnDef::new("category", ColumnType::Int64, true),
            ColumnDef::new("tag", ColumnType::Text, true),
        ],
        "id",
    )
    .unwrap();
    let opts = ShardOptions {
        seal_threshold_rows: 1_000_000,
        background_seal: false,
        live_index: true,
        merge_min_segments: 0,
        checkpoint_log_bytes: 0,
    };
    let shard = Shard::open(dir, Some(schema), opts).unwrap();
    let data = gaussian_mixture(ROWS + 10, DIMS, 3);
    let ids: Vec<i64> = (0..ROWS as i64).collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("embedding", vector_arrow_type(DIMS), true),
            Field::new("category", DataType::Int64, true),
            Field::new("tag", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(vector_array(DIMS, data[..ROWS * DIMS].to_vec(), None)),
            Arc::new(ids.iter().map(|i| Some(i % 10)).collect::<Int64Array>()),
            Arc::new(
                ids.iter()
                    .map(|i| Some(format!("t{}", i % 3)))
                    .collect::<StringArray>(),
            ),
        ],
    )
    .unwrap();
    shard.apply(1, &Command::Upsert(batch)).unwrap();
    shard.flush().unwrap();
    let ctx = new_session();
    let source = Arc::new(Counting {
        inner: ShardSource(shard),
        scans: AtomicUsize::new(0),
        searches: AtomicUsize::new(0),
    });
    ctx.register_table("items", Arc::new(CollectionTable::new(source.clone())))
        .unwrap();
    (ctx, data[ROWS * DIMS..].to_vec(), source)
}

fn vector_text(v: &[f32]) -> String {
    crate::vector_text::format_vector(v)
}

async fn plan_text(ctx: &SessionContext, query: &str) -> String {
    let batches = sql(ctx, &format!("EXPLAIN {query}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let plans = batches[0].column(1).as_string::<i32>();
    (0..plans.len())
        .map(|i| plans.value(i).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn order_by_distance_limit_becomes_an_index_search() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, queries) = session_with_items(dir.path());
    let q = vector_text(&queries[..DIMS]);
    // The search answers in distance order, so no sort is left above it, except where
    // DataFusion spreads a computed projection over partitions (the second shape).
    for (shape, sort_left) in [
        (
            format!("SELECT id FROM items ORDER BY embedding <-> '{q}' LIMIT 5"),
            false,
        ),
        (
            format!("SELECT id, embedding <-> '{q}' AS d FROM items ORDER BY d LIMIT 5"),
            true,
        ),
        (
            format!(
                "SELECT id FROM items WHERE category = 3 ORDER BY l2_distance(embedding, '{q}') LIMIT 5"
            ),
            false,
        ),
    ] {
        let plan = plan_text(&ctx, &shape).await;
        assert!(plan.contains("CollectionSearchExec"), "{shape}\n{plan}");
        assert_eq!(plan.contains("SortExec"), sort_left, "{shape}\n{plan}");
        assert_eq!(ids(&ctx, &shape).await.len(), 5, "{shape}");
    }
    // Not a KNN shape: descending, or no LIMIT, or a metric of an expression.
    for shape in [
        format!("SELECT id FROM items ORDER BY embedding <-> '{q}' DESC LIMIT 5"),
        format!("SELECT id FROM items ORDER BY (embedding <-> '{q}') + 1 LIMIT 5"),
        format!("SELECT id FROM items ORDER BY embedding <-> '{q}' NULLS FIRST LIMIT 5"),
    ] {
        let plan = plan_text(&ctx, &shape).await;
        assert!(!plan.contains("CollectionSearchExec"), "{shape}\n{plan}");
    }
}

#[tokio::test]
async fn exact_search_equals_a_full_scan_and_the_index_is_close() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, queries) = session_with_items(dir.path());
    let mut overlap = 0;
    for q in queries.chunks_exact(DIMS) {
        let q = vector_text(q);
        let scanned = ids(
            &ctx,
            &format!("SELECT id FROM items ORDER BY (embedding <-> '{q}') + 0 LIMIT 10"),
        )
        .await;
        let indexed = ids(
            &ctx,
            &format!("SELECT id FROM items ORDER BY embedding <-> '{q}' LIMIT 10"),
        )
        .await;
        overlap += indexed.iter().filter(|i| scanned.contains(i)).count();
        sql(&ctx, "SET vecraft.exact_search = true")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let exact = ids(
            &ctx,
            &format!("SELECT id FROM items ORDER BY embedding <-> '{q}' LIMIT 10"),
        )
        .await;
        sql(&ctx, "SET vecraft.exact_search = false")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(exact, scanned);
    }
    assert!(overlap >= 95, "recall@10 over 10 queries: {overlap}/100");
}

#[tokio::test]
async fn filters_run_inside_the_search_and_settings_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, queries) = session_with_items(dir.path());
    let q = vector_text(&queries[..DIMS]);
    let query = format!(
        "SELECT id, category FROM items WHERE category = 7 AND tag <> 't0' ORDER BY embedding <-> '{q}' LIMIT 10"
    );
    let batches = sql(&ctx, &query).await.unwrap().collect().await.unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(
        rows, 10,
        "k rows come back when k match (1 in 15 rows does)"
    );
    for b in &batches {
        assert!(
            b.column(1)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .all(|c| *c == 7)
        );
        assert!(
            b.column(0)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .all(|id| id % 3 != 0)
        );
    }
    sql(&ctx, "SET hnsw.ef_search = 123")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let plan = plan_text(&ctx, &query).await;
    assert!(plan.contains("ef=123"), "{plan}");
}

#[tokio::test]
async fn a_knn_query_reads_the_index_not_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, queries, source) = counted_session(dir.path());
    let q = vector_text(&queries[..DIMS]);
    let got = ids(
        &ctx,
        &format!("SELECT id FROM items ORDER BY embedding <-> '{q}' LIMIT 3"),
    )
    .await;
    assert_eq!(got.len(), 3);
    assert_eq!(source.searches.load(Ordering::Relaxed), 1);
    assert_eq!(source.scans.load(Ordering::Relaxed), 0);
    ids(&ctx, "SELECT id FROM items WHERE category = 1").await;
    assert_eq!(source.scans.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn shapes_found_in_review_plan_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, queries) = session_with_items(dir.path());
    let q = vector_text(&queries[..DIMS]);
    // A vector column's IS NOT NULL stays with DataFusion (storage cannot filter vectors).
    let got = ids(
        &ctx,
        &format!(
            "SELECT id FROM items WHERE embedding IS NOT NULL ORDER BY embedding <-> '{q}' LIMIT 5"
        ),
    )
    .await;
    assert_eq!(got.len(), 5);
    // A rewritten cast keeps its name, so ORDER BY a select-list position still resolves.
    let got = ids(
        &ctx,
        &format!("SELECT id, embedding <-> '{q}'::vector({DIMS}) FROM items ORDER BY 2 LIMIT 5"),
    )
    .await;
    assert_eq!(got.len(), 5);
}

/// A kept plan runs through the same search node again and again (`reset_plan_states` keeps
/// a leaf as it is), so each run adds to the node's per-shard metrics instead of registering
/// another pair: a connection that repeats a prepared search must not grow without bound.
#[tokio::test]
async fn a_search_run_again_adds_to_one_pair_of_shard_metrics() {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::physical_plan::execution_plan::reset_plan_states;
    use datafusion::physical_plan::{ExecutionPlan, collect};

    let dir = tempfile::tempdir().unwrap();
    let (ctx, queries) = session_with_items(dir.path());
    let q = vector_text(&queries[..DIMS]);
    let query = format!("SELECT id FROM items ORDER BY embedding <-> '{q}' LIMIT 5");
    let plan = sql(&ctx, &query)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    for _ in 0..3 {
        let again = reset_plan_states(plan.clone()).unwrap();
        let batches = collect(again, ctx.task_ctx()).await.unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
    }
    let mut search: Option<Arc<dyn ExecutionPlan>> = None;
    plan.apply(|node| {
        if node.name() == "CollectionSearchExec" {
            search = Some(node.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    let metrics = search.expect("a search node").metrics().unwrap();
    let mut names: Vec<String> = metrics
        .iter()
        .map(|m| m.value().name().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["shard0_rows", "shard0_time"]);
    let rows = metrics.sum_by_name("shard0_rows").unwrap().as_usize();
    assert_eq!(rows, 15, "three runs of 5 rows each");
}

/// A kept plan whose query vector is a parameter cast to a vector (`$1::vector`, as many
/// clients write it) still searches, and answers as the query with the vector written in.
#[tokio::test]
async fn a_kept_plan_searches_with_a_parameter_cast_to_a_vector() {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::physical_plan::collect;
    use datafusion::physical_plan::execution_plan::reset_plan_states;

    use crate::params::{ParamSlots, template};

    let dir = tempfile::tempdir().unwrap();
    let (ctx, queries) = session_with_items(dir.path());
    let q = vector_text(&queries[..DIMS]);
    let want = ids(
        &ctx,
        &format!("SELECT id FROM items ORDER BY embedding <-> '{q}' LIMIT 5"),
    )
    .await;
    // The parameter declared text (vector_in reads it), or typed `vector` as the gateway
    // infers it for an untyped one (a list of floats, which array_to_vector checks).
    let list_type = DataType::List(Arc::new(Field::new("item", DataType::Float32, true)));
    let text = datafusion::common::ScalarValue::from(q.as_str());
    let floats = queries[..DIMS].iter().map(|&x| Some(x));
    let list = datafusion::common::ScalarValue::List(Arc::new(
        datafusion::arrow::array::ListArray::from_iter_primitive::<
            datafusion::arrow::datatypes::Float32Type,
            _,
            _,
        >([Some(floats)]),
    ));
    let cases = [
        ("$1::vector".to_string(), DataType::Utf8, text.clone()),
        (format!("$1::vector({DIMS})"), DataType::Utf8, text),
        ("$1::vector".to_string(), list_type, list),
    ];
    for (param, ty, value) in cases {
        let query = format!("SELECT id FROM items ORDER BY embedding <-> {param} LIMIT 5");
        let logical = ctx.state().create_logical_plan(&query).await.unwrap();
        let types = [ty];
        let slots = ParamSlots::default();
        let kept = template(&logical, &types, &slots).expect("a search is kept");
        let physical = ctx.state().create_physical_plan(&kept).await.unwrap();
        let mut searches = false;
        physical
            .apply(|node| {
                searches |= node.name() == "CollectionSearchExec";
                Ok(TreeNodeRecursion::Continue)
            })
            .unwrap();
        assert!(searches, "{param}: no search in the plan");
        slots.set(vec![value]);
        let batches = collect(reset_plan_states(physical).unwrap(), ctx.task_ctx())
            .await
            .unwrap_or_else(|e| panic!("{param}: {e}"));
        let got: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(got, want, "{param}");
    }
}
