//! The growing segment's live index: rows are searched through it before they seal, rows it
//! has not taken yet are still found, and columns it cannot serve are scanned.

use std::time::{Duration, Instant};

use super::tests::{exact, load, mixture, opts, schema, search};
use super::{Shard, ShardOptions};
use crate::command::Command;
use crate::distance::Metric;
use crate::filter::{CmpOp, Filter, Scalar};
use crate::key::Key;

/// Fraction of `exact`'s ids that `got` holds.
fn overlap(got: &[i64], exact: &[i64]) -> f64 {
    let shared = got.iter().filter(|id| exact.contains(id)).count();
    shared as f64 / exact.len() as f64
}

#[test]
fn growing_rows_are_searched_through_the_live_index_before_they_seal() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(4000, 8, 11);
    let shard = Shard::open(dir.path(), Some(schema(8, Metric::L2)), opts(50_000)).unwrap();
    let next = load(&shard, &data, 500, 1);
    let stats = shard.stats();
    assert_eq!((stats.sealed_segments, stats.growing_rows), (0, 4000));
    assert_eq!(stats.live_indexed_rows, 4000, "fed as the writes applied");

    let before = shard.stats().searches;
    let mut total = 0.0;
    for q in data.iter().step_by(200) {
        total += overlap(&search(&shard, q, 10, None), &exact(&shard, q, 10));
    }
    let after = shard.stats().searches;
    assert_eq!(
        after.live - before.live,
        20,
        "every search walked the live index"
    );
    assert_eq!(after.graph, before.graph);
    assert!(total / 20.0 >= 0.9, "recall@10 {}", total / 20.0);

    // Deleted rows stay out; a filter passing 1% of rows is answered by a scan.
    shard
        .apply(next, &Command::Delete(vec![Key::Int(600)]))
        .unwrap();
    let got = search(&shard, &data[600], 5, None);
    assert!(!got.contains(&600) && got.len() == 5, "{got:?}");
    let rare = Filter::Compare {
        column: "category".into(),
        op: CmpOp::Eq,
        value: Scalar::Int(7),
    };
    let scans = shard.stats().searches.scan;
    let got = search(&shard, &data[0], 5, Some(rare));
    assert!(
        got.iter().all(|id| id % 100 == 7) && got.len() == 5,
        "{got:?}"
    );
    assert_eq!(shard.stats().searches.scan, scans + 1);
}

#[test]
fn rows_the_background_feeder_has_not_reached_are_found_and_then_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(3000, 8, 12);
    let options = ShardOptions {
        seal_threshold_rows: 50_000,
        background_seal: true,
        live_index: true,
        merge_min_segments: 4,
        checkpoint_log_bytes: 0,
    };
    let shard = Shard::open(dir.path(), Some(schema(8, Metric::Cosine)), options).unwrap();
    load(&shard, &data, 1000, 1);
    // Whether or not the feeder got to it yet, the newest row is its own nearest neighbour.
    assert_eq!(search(&shard, &data[2999], 1, None), vec![2999]);

    let deadline = Instant::now() + Duration::from_secs(60);
    while shard.stats().live_indexed_rows < 3000 {
        assert!(Instant::now() < deadline, "{:?}", shard.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = shard.stats().searches.live;
    assert_eq!(search(&shard, &data[2999], 1, None), vec![2999]);
    assert_eq!(shard.stats().searches.live, before + 1);
    shard.wait_for_background();
    assert_eq!(shard.stats().last_background_error, None);
}

#[test]
fn inner_product_columns_are_scanned_until_they_seal() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(3000, 8, 13);
    let shard = Shard::open(
        dir.path(),
        Some(schema(8, Metric::InnerProduct)),
        opts(50_000),
    )
    .unwrap();
    load(&shard, &data, 1000, 1);
    let before = shard.stats().searches;
    let q = &data[5];
    assert_eq!(search(&shard, q, 10, None), exact(&shard, q, 10));
    let after = shard.stats().searches;
    assert_eq!((after.live, after.scan), (before.live, before.scan + 2));

    shard.flush().unwrap();
    assert_eq!(search(&shard, q, 10, None).len(), 10);
    assert_eq!(
        shard.stats().searches.graph,
        after.graph + 1,
        "sealed: a graph"
    );
}
