//! Index tests: graph search against brute force, filters, the file round trip.

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::VectorIndex;
use super::build::{build_graph, indexable_rows};
use super::file::{self, ColumnFile};
use super::graph::brute_force;
use super::vectors::{Query, VectorStore};
use crate::distance::Metric;
use crate::schema::HnswParams;

fn random_vectors(n: usize, dims: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n * dims)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect()
}

fn recall(metric: Metric, n: usize, dims: usize) -> f64 {
    let store = VectorStore::from_vec(dims, random_vectors(n, dims, 7));
    let rows = indexable_rows(&store, metric, &|_| false);
    let graph = build_graph(&store, &rows, metric, HnswParams::default()).unwrap();
    let queries = random_vectors(50, dims, 99);
    let mut hits = 0;
    for q in queries.chunks_exact(dims) {
        let q = Query::new(q.to_vec());
        let exact = brute_force(store.len(), |r| store.score(metric, &q, r), 10, &|_| true);
        let approx = graph.search(&store.view(), metric, &q, 10, 64, &|_| true);
        assert_eq!(approx.len(), 10);
        assert!(
            approx.windows(2).all(|w| w[0].score <= w[1].score),
            "sorted"
        );
        hits += approx
            .iter()
            .filter(|a| exact.iter().any(|e| e.row == a.row))
            .count();
    }
    hits as f64 / 500.0
}

#[test]
fn graph_search_finds_the_true_neighbours_for_every_metric() {
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct, Metric::L1] {
        let r = recall(metric, 3000, 16);
        assert!(r >= 0.9, "{metric:?} recall {r}");
    }
}

#[test]
fn filtered_search_returns_k_passing_rows() {
    let dims = 8;
    let store = VectorStore::from_vec(dims, random_vectors(4000, dims, 3));
    let rows = indexable_rows(&store, Metric::L2, &|_| false);
    let graph = build_graph(&store, &rows, Metric::L2, HnswParams::default()).unwrap();
    let q = Query::new(vec![0.1; dims]);
    // 1% of rows pass.
    let accept = |row: u32| row % 100 == 7;
    let got = graph.search(&store.view(), Metric::L2, &q, 10, 40, &accept);
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|h| accept(h.row)));
    let exact = brute_force(store.len(), |r| store.score(Metric::L2, &q, r), 10, &accept);
    let overlap = got
        .iter()
        .filter(|g| exact.iter().any(|e| e.row == g.row))
        .count();
    assert!(overlap >= 8, "overlap {overlap}");
}

#[test]
fn column_file_round_trips_and_detects_corruption() {
    let dims = 12;
    let store = VectorStore::from_vec(dims, random_vectors(500, dims, 5));
    let rows = indexable_rows(&store, Metric::Cosine, &|r| r == 3);
    assert_eq!(rows.len(), 499);
    let graph = build_graph(&store, &rows, Metric::Cosine, HnswParams::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("col.vec");
    let column = ColumnFile {
        vectors: store.clone(),
        graph: Some((Metric::Cosine, graph.clone())),
    };
    file::write(&path, &column).unwrap();
    let back = file::open(&path).unwrap();
    assert_eq!(back.vectors.data(), store.data());
    let (metric, g) = back.graph.as_ref().unwrap();
    assert_eq!(*metric, Metric::Cosine);
    let q = Query::new(random_vectors(1, dims, 11));
    let a = graph.search(&store.view(), Metric::Cosine, &q, 5, 40, &|_| true);
    let b = g.search(&back.vectors.view(), Metric::Cosine, &q, 5, 40, &|_| true);
    assert_eq!(a, b);
    assert!(a.iter().all(|h| h.row != 3), "the null row is not indexed");

    drop(back);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        file::open(&path),
        Err(crate::error::Error::Corrupt { .. })
    ));
    std::fs::write(&path, &bytes[..10]).unwrap();
    assert!(file::open(&path).is_err());
}

#[test]
fn zero_vectors_rank_last_under_cosine_in_brute_force() {
    let store = VectorStore::from_vec(2, vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    let q = Query::new(vec![1.0, 0.1]);
    let hits = brute_force(
        store.len(),
        |r| store.score(Metric::Cosine, &q, r),
        3,
        &|_| true,
    );
    assert_eq!(
        hits.iter().map(|h| h.row).collect::<Vec<_>>(),
        vec![1, 2, 0]
    );
    assert!(hits[2].score.is_nan());
}
