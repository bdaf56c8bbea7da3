//! A scan for `pk = v` or `pk IN (…)` finds its rows through the key map: the same rows as a
//! pass over every segment, wherever they live (sealed, frozen, growing), none that are dead.

use super::Shard;
use super::tests::{batch, ids_of, opts, schema};
use crate::command::Command;
use crate::distance::Metric;
use crate::filter::{CmpOp, Filter, Scalar};
use crate::key::Key;

fn scanned(shard: &Shard, filter: &Filter) -> Vec<i64> {
    let batches = shard.scan(None, Some(filter)).unwrap();
    let mut ids: Vec<i64> = batches.iter().flat_map(ids_of).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn key_lookups_find_what_a_full_pass_finds() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(50)).unwrap();
    for (i, chunk) in (0..180i64).collect::<Vec<_>>().chunks(30).enumerate() {
        let vectors: Vec<Vec<f32>> = chunk.iter().map(|v| vec![*v as f32, 0.0]).collect();
        shard
            .apply(i as u64 + 1, &Command::Upsert(batch(chunk, &vectors)))
            .unwrap();
    }
    shard
        .apply(7, &Command::Delete(vec![Key::Int(3), Key::Int(170)]))
        .unwrap();
    let fresh = batch(&[200, 201], &[vec![1.0, 1.0], vec![2.0, 2.0]]);
    shard.apply(8, &Command::Upsert(fresh)).unwrap();
    assert!(shard.stats().sealed_segments > 0 && shard.stats().growing_rows > 0);
    let wanted = [0i64, 3, 49, 50, 99, 170, 179, 179, 201, 500];
    let lookup = Filter::In {
        column: "id".into(),
        values: wanted.iter().map(|v| Scalar::Int(*v)).collect(),
        negated: false,
    };
    // The same predicate in a shape the key map does not serve: a pass over every segment.
    let pass = Filter::And(vec![lookup.clone(), Filter::Literal(true)]);
    assert_eq!(scanned(&shard, &lookup), [0, 49, 50, 99, 179, 201]);
    assert_eq!(scanned(&shard, &lookup), scanned(&shard, &pass));
    let one = Filter::Compare {
        column: "id".into(),
        op: CmpOp::Eq,
        value: Scalar::Int(99),
    };
    assert_eq!(scanned(&shard, &one), [99]);
}
