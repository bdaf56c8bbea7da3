//! Shard behaviour: visibility of upserts and deletes, replay, filtered search, recall, keys,
//! a model check; and the helpers the other shard tests share. Sealing in the background,
//! snapshots, compaction, truncation and index changes are in `maintain_tests.rs`.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{Applied, DISTANCE_COLUMN, SearchRequest, Shard, ShardOptions};
use crate::command::Command;
use crate::distance::Metric;
use crate::error::Error;
use crate::filter::{CmpOp, Filter, Scalar};
use crate::key::Key;
use crate::schema::{
    CollectionSchema, ColumnDef, ColumnType, VectorElement, VectorSpec, vector_array,
    vector_arrow_type,
};

pub(super) fn schema(dims: usize, metric: Metric) -> CollectionSchema {
    CollectionSchema::new(
        vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new(
                "embedding",
                ColumnType::Vector(VectorSpec {
                    metric,
                    ..VectorSpec::new(dims)
                }),
                true,
            ),
            ColumnDef::new("category", ColumnType::Int64, true),
            ColumnDef::new("tag", ColumnType::Text, true),
        ],
        "id",
    )
    .unwrap()
}

pub(super) fn batch(ids: &[i64], vectors: &[Vec<f32>]) -> RecordBatch {
    let dims = vectors[0].len();
    let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
    let vec_array = vector_array(dims, flat, None);
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("embedding", vector_arrow_type(dims), true),
        Field::new("category", DataType::Int64, true),
        Field::new("tag", DataType::Utf8, true),
    ]);
    let categories: Int64Array = ids.iter().map(|i| Some(i % 100)).collect();
    let tags: StringArray = ids.iter().map(|i| Some(format!("t{}", i % 3))).collect();
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(vec_array),
            Arc::new(categories),
            Arc::new(tags),
        ],
    )
    .unwrap()
}

pub(super) fn mixture(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let flat = crate::synthetic::gaussian_mixture(n, dims, seed);
    flat.chunks_exact(dims).map(|v| v.to_vec()).collect()
}

pub(super) fn opts(threshold: usize) -> ShardOptions {
    ShardOptions {
        seal_threshold_rows: threshold,
        background_seal: false,
        live_index: true,
        merge_min_segments: 0,
        checkpoint_log_bytes: 0,
    }
}

pub(super) fn ids_of(batch: &RecordBatch) -> Vec<i64> {
    let col = batch.column_by_name("id").unwrap();
    col.as_primitive::<Int64Type>().values().to_vec()
}

pub(super) fn load(shard: &Shard, vectors: &[Vec<f32>], per_batch: usize, first_index: u64) -> u64 {
    let mut index = first_index;
    for (b, chunk) in vectors.chunks(per_batch).enumerate() {
        upsert(shard, index, b * per_batch, chunk);
        index += 1;
    }
    index
}

/// Upserts `vectors` as ids `first_id..` in the log entry at `index`.
pub(super) fn upsert(shard: &Shard, index: u64, first_id: usize, vectors: &[Vec<f32>]) {
    let ids: Vec<i64> = (first_id..first_id + vectors.len())
        .map(|id| id as i64)
        .collect();
    shard
        .apply(index, &Command::Upsert(batch(&ids, vectors)))
        .unwrap();
}

pub(super) fn search(shard: &Shard, q: &[f32], k: usize, filter: Option<Filter>) -> Vec<i64> {
    let mut req = SearchRequest::new("embedding", q.to_vec(), k);
    req.filter = filter;
    ids_of(&shard.search(&req).unwrap())
}

pub(super) fn exact(shard: &Shard, q: &[f32], k: usize) -> Vec<i64> {
    let mut req = SearchRequest::new("embedding", q.to_vec(), k);
    req.exact = true;
    ids_of(&shard.search(&req).unwrap())
}
#[test]
fn upserts_and_deletes_are_visible_in_search_and_scan() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    let v = |x: f32| vec![x, 0.0];
    shard
        .apply(
            1,
            &Command::Upsert(batch(&[1, 2, 3], &[v(1.0), v(2.0), v(3.0)])),
        )
        .unwrap();
    assert_eq!(search(&shard, &[0.0, 0.0], 2, None), vec![1, 2]);
    // Upsert of key 1 moves it far away: its old version must never come back.
    shard
        .apply(2, &Command::Upsert(batch(&[1], &[v(10.0)])))
        .unwrap();
    assert_eq!(search(&shard, &[0.0, 0.0], 3, None), vec![2, 3, 1]);
    let deleted = shard
        .apply(3, &Command::Delete(vec![Key::Int(2), Key::Int(99)]))
        .unwrap();
    assert_eq!(deleted.rows_deleted, 1);
    assert_eq!(search(&shard, &[0.0, 0.0], 10, None), vec![3, 1]);
    let scanned: Vec<i64> = shard
        .scan(None, None)
        .unwrap()
        .iter()
        .flat_map(ids_of)
        .collect();
    assert_eq!(scanned, vec![3, 1]);
    assert_eq!(shard.count(), 2);
    let hit = shard
        .search(&SearchRequest::new("embedding", vec![0.0, 0.0], 1))
        .unwrap();
    let d = hit
        .column_by_name(DISTANCE_COLUMN)
        .unwrap()
        .as_primitive::<Float64Type>()
        .value(0);
    assert_eq!(d, 3.0);
}

#[test]
fn reapplying_an_index_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    let cmd = Command::Upsert(batch(&[1, 2], &[vec![1.0, 1.0], vec![2.0, 2.0]]));
    assert!(shard.apply(1, &cmd).unwrap().fresh);
    assert!(
        !shard.apply(1, &cmd).unwrap().fresh,
        "a replayed index is skipped"
    );
    shard.apply(2, &Command::Delete(vec![Key::Int(1)])).unwrap();
    assert!(
        !shard.apply(1, &cmd).unwrap().fresh,
        "an old index cannot resurrect a row"
    );
    assert_eq!(shard.count(), 1);
    assert_eq!(shard.applied_index(), 2);
}

#[test]
fn bad_rows_are_refused_and_consume_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    let wrong_dims = Command::Upsert(batch(&[1], &[vec![1.0, 2.0, 3.0]]));
    assert!(matches!(
        shard.apply(1, &wrong_dims),
        Err(Error::DimensionMismatch {
            expected: 2,
            actual: 3
        })
    ));
    let nan = Command::Upsert(batch(&[1], &[vec![f32::NAN, 2.0]]));
    assert!(matches!(shard.apply(2, &nan), Err(Error::InvalidVector(_))));
    assert_eq!(shard.applied_index(), 2);
    assert_eq!(shard.count(), 0);
    let q = SearchRequest::new("embedding", vec![1.0], 3);
    assert!(matches!(
        shard.search(&q),
        Err(Error::DimensionMismatch { .. })
    ));
    let q = SearchRequest::new("nope", vec![1.0, 1.0], 3);
    assert!(matches!(shard.search(&q), Err(Error::UnknownColumn(_))));
}

#[test]
fn sealed_state_survives_reopen_and_the_log_replays_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(700, 8, 1);
    let mut commands = Vec::new();
    for (b, chunk) in data.chunks(100).enumerate() {
        let ids: Vec<i64> = (0..chunk.len()).map(|i| (b * 100 + i) as i64).collect();
        commands.push(Command::Upsert(batch(&ids, chunk)));
    }
    commands.push(Command::Delete((0..50).map(Key::Int).collect()));
    let (before, durable) = {
        let shard = Shard::open(dir.path(), Some(schema(8, Metric::L2)), opts(300)).unwrap();
        for (i, c) in commands.iter().enumerate() {
            shard.apply(i as u64 + 1, c).unwrap();
        }
        let stats = shard.stats();
        assert!(stats.sealed_segments >= 2, "{stats:?}");
        assert!(stats.durable_index < stats.applied_index);
        (exact(&shard, &data[0], 20), stats.durable_index)
    };
    let shard = Shard::open(dir.path(), None, opts(300)).unwrap();
    assert_eq!(shard.applied_index(), durable);
    for (i, c) in commands.iter().enumerate() {
        shard.apply(i as u64 + 1, c).unwrap(); // the caller replays the whole log; old ones skip
    }
    assert_eq!(exact(&shard, &data[0], 20), before);
    assert_eq!(shard.count(), 650);
}

#[test]
fn filtered_search_returns_k_rows_even_at_one_percent_selectivity() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(5000, 16, 2);
    let shard = Shard::open(dir.path(), Some(schema(16, Metric::L2)), opts(100_000)).unwrap();
    load(&shard, &data, 1000, 1);
    shard.flush().unwrap();
    assert_eq!(shard.stats().sealed_segments, 1);
    for selectivity_filter in [
        Filter::Compare {
            column: "category".into(),
            op: CmpOp::Eq,
            value: Scalar::Int(7),
        },
        Filter::Compare {
            column: "category".into(),
            op: CmpOp::Lt,
            value: Scalar::Int(30),
        },
        Filter::Compare {
            column: "tag".into(),
            op: CmpOp::Eq,
            value: Scalar::Text("t1".into()),
        },
    ] {
        let got = search(&shard, &data[3], 10, Some(selectivity_filter.clone()));
        assert_eq!(got.len(), 10, "{selectivity_filter:?}");
        let passes = |id: i64| match &selectivity_filter {
            Filter::Compare {
                op: CmpOp::Eq,
                value: Scalar::Int(v),
                ..
            } => id % 100 == *v,
            Filter::Compare { op: CmpOp::Lt, .. } => id % 100 < 30,
            _ => id % 3 == 1,
        };
        assert!(got.iter().all(|&id| passes(id)), "{got:?}");
    }
    // Fewer matches than k: all of them, no more.
    let one = Filter::Compare {
        column: "id".into(),
        op: CmpOp::Eq,
        value: Scalar::Int(4321),
    };
    assert_eq!(search(&shard, &data[0], 10, Some(one)), vec![4321]);
}

/// 100,000 × 128 from a seeded Gaussian mixture: the default ef (40) reaches recall@10 ≥ 0.95.
#[test]
fn recall_at_default_ef_on_100k_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let (n, dims) = (100_000, 128);
    let mut data = mixture(n + 200, dims, 42);
    let queries = data.split_off(n); // same clusters, not in the data
    // Sealed at once: feeding the growing segment's live index would be wasted.
    let options = ShardOptions {
        live_index: false,
        merge_min_segments: 0,
        ..opts(1 << 30)
    };
    let shard = Shard::open(dir.path(), Some(schema(dims, Metric::L2)), options).unwrap();
    load(&shard, &data, 10_000, 1);
    shard.flush().unwrap();
    let mut hits = 0;
    for q in &queries {
        let truth = exact(&shard, q, 10);
        let got = search(&shard, q, 10, None);
        hits += got.iter().filter(|id| truth.contains(id)).count();
    }
    let recall = hits as f64 / (10 * queries.len()) as f64;
    println!("recall@10 at ef 40 on 100k x 128: {recall:.4}");
    assert!(recall >= 0.95, "recall@10 = {recall}");
}

#[test]
fn text_keys_and_null_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let schema = CollectionSchema::new(
        vec![
            ColumnDef::new("name", ColumnType::Text, false),
            ColumnDef::new("v", ColumnType::Vector(VectorSpec::new(2)), true),
        ],
        "name",
    )
    .unwrap();
    let shard = Shard::open(dir.path(), Some(schema.clone()), opts(1000)).unwrap();
    let vectors = vector_array(2, vec![1.0, 1.0, 0.0, 0.0], Some(vec![true, false].into()));
    let b = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("v", vector_arrow_type(2), true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(vectors),
        ],
    )
    .unwrap();
    shard.apply(1, &Command::Upsert(b)).unwrap();
    let got = shard
        .search(&SearchRequest::new("v", vec![0.0, 0.0], 10))
        .unwrap();
    assert_eq!(got.num_rows(), 1, "a NULL vector is never a neighbour");
    let rows = shard.scan(Some(&["v".to_string()]), None).unwrap();
    assert_eq!(
        rows[0].column(0).null_count(),
        1,
        "but scans return it as NULL"
    );
    shard
        .apply(2, &Command::Delete(vec![Key::Text("a".into())]))
        .unwrap();
    assert_eq!(shard.count(), 1);
}

/// A halfvec column: written as Arrow halves, searched as the reals they are, and read back
/// as the same halves from a growing segment, a sealed one, and after reopening.
#[test]
fn halfvec_columns_give_back_their_halves() {
    let dir = tempfile::tempdir().unwrap();
    let spec = VectorSpec {
        element: VectorElement::Float16,
        ..VectorSpec::new(2)
    };
    let schema = CollectionSchema::new(
        vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new("v", ColumnType::Vector(spec), true),
        ],
        "id",
    )
    .unwrap();
    let halves = |ids: &[i64], values: Vec<f32>| {
        let reals = vector_array(2, values, None);
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("v", spec.arrow_type(), true),
            ])),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                arrow::compute::cast(&reals, &spec.arrow_type()).unwrap(),
            ],
        )
        .unwrap()
    };
    let stored = |shard: &Shard| {
        let rows = shard.scan(Some(&["v".to_string()]), None).unwrap();
        let mut out = Vec::new();
        for batch in &rows {
            assert_eq!(batch.column(0).data_type(), &spec.arrow_type());
            let values = batch.column(0).as_fixed_size_list().values().clone();
            let values = values.as_primitive::<arrow::datatypes::Float16Type>();
            out.extend(values.values().iter().map(|h| h.to_f32()));
        }
        out.sort_by(f32::total_cmp);
        out
    };
    let expected = vec![-2.0, 0.099975586, 1.5, 65504.0];
    {
        let shard = Shard::open(dir.path(), Some(schema), opts(2)).unwrap();
        shard
            .apply(1, &Command::Upsert(halves(&[1], vec![0.1, 1.5])))
            .unwrap();
        shard
            .apply(2, &Command::Upsert(halves(&[2], vec![65504.0, -2.0])))
            .unwrap();
        assert_eq!(stored(&shard), expected);
        let nearest = shard
            .search(&SearchRequest::new("v", vec![0.0, 1.0], 1))
            .unwrap();
        assert_eq!(ids_of(&nearest), [1]);
        shard.flush().unwrap();
        assert!(shard.stats().sealed_segments >= 1, "{:?}", shard.stats());
    }
    let shard = Shard::open(dir.path(), None, opts(2)).unwrap();
    assert_eq!(stored(&shard), expected);
}

/// Random upserts, deletes, seals, compactions and reopens against a plain map: scans return
/// exactly the model's rows, and exact search returns the model's nearest, every time.
#[test]
fn randomized_operations_match_a_model() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(77);
    let mut model: BTreeMap<i64, Vec<f32>> = BTreeMap::new();
    let mut shard = Shard::open(dir.path(), Some(schema(3, Metric::L2)), opts(40)).unwrap();
    let mut log: Vec<Command> = Vec::new();
    for step in 0..400 {
        let index = log.len() as u64 + 1;
        let cmd = if rng.random_bool(0.7) {
            let ids: Vec<i64> = (0..rng.random_range(1..8))
                .map(|_| rng.random_range(0..120))
                .collect();
            let vectors: Vec<Vec<f32>> = ids
                .iter()
                .map(|_| (0..3).map(|_| rng.random_range(-10.0f32..10.0)).collect())
                .collect();
            for (id, v) in ids.iter().zip(&vectors) {
                model.insert(*id, v.clone());
            }
            Command::Upsert(batch(&ids, &vectors))
        } else {
            let keys: Vec<i64> = (0..rng.random_range(1..6))
                .map(|_| rng.random_range(0..120))
                .collect();
            for k in &keys {
                model.remove(k);
            }
            Command::Delete(keys.into_iter().map(Key::Int).collect())
        };
        shard.apply(index, &cmd).unwrap();
        log.push(cmd);
        match step % 97 {
            13 => {
                let sealed: Vec<u64> = {
                    let state = shard.inner.state.read();
                    state
                        .slots
                        .iter()
                        .filter(|s| matches!(s.data, super::state::SlotData::Sealed(_)))
                        .map(|s| s.id)
                        .collect()
                };
                if sealed.len() >= 2 {
                    shard.compact(&sealed[..2]).unwrap();
                }
            }
            50 => {
                // Crash-restart: reopen and replay the whole log (old indexes are skipped).
                drop(shard);
                shard = Shard::open(dir.path(), None, opts(40)).unwrap();
                for (i, c) in log.iter().enumerate() {
                    shard.apply(i as u64 + 1, c).unwrap();
                }
            }
            _ => {}
        }
        let mut scanned: Vec<i64> = shard
            .scan(None, None)
            .unwrap()
            .iter()
            .flat_map(ids_of)
            .collect();
        scanned.sort();
        assert_eq!(
            scanned,
            model.keys().copied().collect::<Vec<_>>(),
            "step {step}"
        );
        let q: Vec<f32> = (0..3).map(|_| rng.random_range(-10.0f32..10.0)).collect();
        let mut want: Vec<(f64, i64)> = model
            .iter()
            .map(|(id, v)| (Metric::L2.distance(&q, v), *id))
            .collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let got = exact(&shard, &q, 5);
        let want_ids: Vec<i64> = want.iter().take(5).map(|w| w.1).collect();
        assert_eq!(got.len(), want_ids.len(), "step {step}");
        // Ties aside, the same rows in the same order.
        for (g, w) in got.iter().zip(&want_ids) {
            let (dg, dw) = (
                Metric::L2.distance(&q, &model[g]),
                Metric::L2.distance(&q, &model[w]),
            );
            assert!(
                (dg - dw).abs() < 1e-5,
                "step {step}: {got:?} vs {want_ids:?}"
            );
        }
    }
}

#[test]
fn absurd_k_and_ef_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    shard
        .apply(
            1,
            &Command::Upsert(batch(&[1, 2], &[vec![1.0, 0.0], vec![2.0, 0.0]])),
        )
        .unwrap();
    let got = shard
        .search(&SearchRequest::new("embedding", vec![0.0, 0.0], usize::MAX))
        .unwrap();
    assert_eq!(ids_of(&got), vec![1, 2]);
    let mut req = SearchRequest::new("embedding", vec![0.0, 0.0], 1);
    req.ef = 1_000_000;
    assert!(matches!(shard.search(&req), Err(Error::InvalidArgument(_))));
    let none = shard
        .search(&SearchRequest::new("embedding", vec![0.0, 0.0], 0))
        .unwrap();
    assert_eq!(none.num_rows(), 0);
}

#[test]
fn insert_refuses_existing_and_repeated_keys_whole() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    let v = |x: f32| vec![x, 0.0];
    shard
        .apply(1, &Command::Insert(batch(&[1, 2], &[v(1.0), v(2.0)])))
        .unwrap();
    let clash = Command::Insert(batch(&[3, 2], &[v(3.0), v(9.0)]));
    assert!(matches!(shard.check(&clash), Err(Error::DuplicateKey(k)) if k == "2"));
    assert!(matches!(
        shard.apply(2, &clash),
        Err(Error::DuplicateKey(_))
    ));
    let repeated = Command::Insert(batch(&[4, 4], &[v(4.0), v(4.0)]));
    assert!(matches!(
        shard.apply(3, &repeated),
        Err(Error::DuplicateKey(_))
    ));
    assert_eq!(
        shard.applied_index(),
        3,
        "refused inserts consume their index"
    );
    assert_eq!(shard.count(), 2, "nothing of a refused insert is applied");
    let decoded = Command::decode(&clash.encode().unwrap()).unwrap();
    assert_eq!(decoded, clash);
}

#[test]
fn insert_missing_skips_existing_and_repeated_keys_and_replays_alike() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    let v = |x: f32| vec![x, 0.0];
    shard
        .apply(1, &Command::Insert(batch(&[1, 2], &[v(1.0), v(2.0)])))
        .unwrap();
    let some_new = Command::InsertMissing(batch(&[2, 3, 3], &[v(9.0), v(3.0), v(8.0)]));
    shard.check(&some_new).unwrap();
    let applied = shard.apply(2, &some_new).unwrap();
    assert_eq!(applied.rows_written, 1, "only key 3, from its first row");
    assert_eq!(shard.count(), 3);
    assert_eq!(
        exact(&shard, &[2.0, 0.0], 1),
        vec![2],
        "key 2 kept its old vector"
    );
    assert_eq!(
        exact(&shard, &[3.0, 0.0], 1),
        vec![3],
        "key 3 has its first row's"
    );
    let none_new = Command::InsertMissing(batch(&[1], &[v(7.0)]));
    assert_eq!(shard.apply(3, &none_new).unwrap().rows_written, 0);
    assert_eq!(
        shard.apply(3, &none_new).unwrap(),
        Applied::default(),
        "a replay"
    );
    assert_eq!(
        Command::decode(&some_new.encode().unwrap()).unwrap(),
        some_new
    );
}
