//! Transactions over a collection of several shards on this node: a commit shows on every
//! shard or on none; a part left prepared by a gateway that died is resolved as its
//! coordinator decided.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::Int64Type;
use vecraft_storage::command::Command;
use vecraft_storage::error::Error;
use vecraft_storage::key::Key;
use vecraft_storage::txn::{Coordinator, TxnWrite};

use crate::collection::Collection;
use crate::read::Consistency;
use crate::route::shard_of;
use crate::tests::{opts, row, schema};
use crate::txn::{commit, resolve_pending};

const SHARDS: usize = 4;

fn rows(ids: &[i64]) -> RecordBatch {
    let batches: Vec<RecordBatch> = ids
        .iter()
        .map(|id| match row(*id) {
            Command::Upsert(batch) => batch,
            _ => unreachable!("row() is an upsert"),
        })
        .collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn inserts(ids: &[i64]) -> TxnWrite {
    TxnWrite {
        upserts: Some(rows(ids)),
        new_keys: ids.iter().copied().map(Key::Int).collect(),
        ..TxnWrite::default()
    }
}

fn ids(collection: &Collection) -> Vec<i64> {
    let batches = collection.scan(None, None, Consistency::Strong).unwrap();
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort_unstable();
    ids
}

fn open(dir: &std::path::Path) -> Arc<Collection> {
    Arc::new(Collection::create(dir, schema(), SHARDS, opts()).unwrap())
}

/// Ids from `from` on shards `a` and `b` of the collection (`n` of each).
fn ids_on(a: usize, b: usize, n: usize, from: i64) -> Vec<i64> {
    let on = |s: usize| {
        (from..)
            .filter(move |i| shard_of(&Key::Int(*i), SHARDS) == s)
            .take(n)
    };
    on(a).chain(on(b)).collect()
}

#[test]
fn a_commit_over_several_shards_shows_on_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let items = open(&dir.path().join("items"));
    let spread: Vec<i64> = (0..40).collect();
    commit(vec![("items".into(), items.clone(), inserts(&spread))]).unwrap();
    assert_eq!(ids(&items), spread);
    // One key was taken by another session meanwhile: nothing of the transaction shows.
    items.write(&row(100)).unwrap();
    let e = commit(vec![(
        "items".into(),
        items.clone(),
        inserts(&[100, 101, 102, 103, 104, 105]),
    )]);
    assert!(matches!(e, Err(Error::Conflict(_))), "{e:?}");
    assert_eq!(ids(&items).len(), 41);
    // Deletes and rows on every shard go together.
    let write = TxnWrite {
        deletes: (0..20).map(Key::Int).collect(),
        ..inserts(&[200, 201, 202, 203])
    };
    commit(vec![("items".into(), items.clone(), write)]).unwrap();
    let expected: Vec<i64> = (20..40).chain([100, 200, 201, 202, 203]).collect();
    assert_eq!(ids(&items), expected);
    assert!(
        items
            .shards()
            .iter()
            .all(|s| s.status().unwrap().pending.is_empty())
    );
}

#[test]
fn parts_left_prepared_are_resolved_as_the_coordinator_decided() {
    let dir = tempfile::tempdir().unwrap();
    let items = open(&dir.path().join("items"));
    let collections = BTreeMap::from([("items".to_string(), items.clone())]);
    let shards = items.shards();
    let coordinator = Coordinator {
        collection: "items".into(),
        shard: 0,
    };
    let prepare = |txn: u128, shard: usize, ids: &[i64]| {
        let command = Command::Prepare {
            txn,
            coordinator: coordinator.clone(),
            decides: shard == 0,
            write: inserts(ids),
        };
        shards[shard].propose(&command).unwrap();
    };
    // Transaction 1: prepared on shards 0 and 1, decided (committed) on 0, then the gateway
    // died. Transaction 2: prepared on both, never decided.
    let one = ids_on(0, 1, 2, 0);
    prepare(1, 0, &one[..2]);
    prepare(1, 1, &one[2..]);
    let decided = shards[0].propose(&Command::Resolve {
        txn: 1,
        commit: true,
    });
    assert_eq!(decided.unwrap().committed, Some(true));
    let two = ids_on(0, 1, 2, 1_000);
    prepare(2, 0, &two[..2]);
    prepare(2, 1, &two[2..]);
    assert_eq!(
        ids(&items),
        one[..2],
        "only the decided coordinator's part shows"
    );
    // Not old enough yet: nothing is touched.
    assert_eq!(resolve_pending(&collections, Duration::from_secs(3600)), 0);
    let resolved = resolve_pending(&collections, Duration::ZERO);
    assert_eq!(resolved, 3, "one part of 1, both of 2");
    let mut expected = one.clone();
    expected.sort_unstable();
    assert_eq!(ids(&items), expected, "1 committed everywhere, 2 nowhere");
    assert!(
        shards
            .iter()
            .all(|s| s.status().unwrap().pending.is_empty())
    );
    // The decision stands: a late attempt to commit 2 learns it was aborted.
    let late = shards[0].propose(&Command::Resolve {
        txn: 2,
        commit: true,
    });
    assert_eq!(late.unwrap().committed, Some(false));
}
