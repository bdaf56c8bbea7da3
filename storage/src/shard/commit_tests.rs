//! A shard's part in transactions: a prepared write locks its keys and shows nothing until
//! it commits; the first resolution stands; a write created key taken meanwhile fails the
//! later committer; a prepared transaction survives a restart, durable or replayed.

use super::tests::{batch, ids_of, opts, schema};
use super::{Applied, Shard};
use crate::command::Command;
use crate::distance::Metric;
use crate::error::Error;
use crate::key::Key;
use crate::txn::{Coordinator, TxnWrite};

fn rows(ids: &[i64]) -> arrow::array::RecordBatch {
    let vectors: Vec<Vec<f32>> = ids.iter().map(|i| vec![*i as f32, 1.0]).collect();
    batch(ids, &vectors)
}

fn ids(shard: &Shard) -> Vec<i64> {
    let mut ids: Vec<i64> = shard
        .scan(None, None)
        .unwrap()
        .iter()
        .flat_map(ids_of)
        .collect();
    ids.sort_unstable();
    ids
}

fn insert(ids: &[i64], deletes: &[i64]) -> TxnWrite {
    TxnWrite {
        upserts: Some(rows(ids)),
        deletes: deletes.iter().copied().map(Key::Int).collect(),
        new_keys: ids.iter().copied().map(Key::Int).collect(),
        if_missing: Vec::new(),
        read_versions: Vec::new(),
        truncate: false,
    }
}

fn prepare(txn: u128, write: TxnWrite) -> Command {
    Command::Prepare {
        txn,
        coordinator: Coordinator {
            collection: "items".into(),
            shard: 0,
        },
        decides: true,
        write,
    }
}

fn resolve(txn: u128, commit: bool) -> Command {
    Command::Resolve { txn, commit }
}

fn committed(applied: Applied) -> Option<bool> {
    applied.committed
}

#[test]
fn a_prepared_write_locks_its_keys_and_shows_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    shard.apply(1, &Command::Upsert(rows(&[1, 2]))).unwrap();
    shard.apply(2, &prepare(7, insert(&[3], &[1]))).unwrap();
    assert_eq!(ids(&shard), [1, 2], "nothing shows before the commit");
    assert_eq!(shard.pending_txns().len(), 1);
    // The keys it writes or deletes take no other write meanwhile.
    let blocked = shard.apply(3, &Command::Upsert(rows(&[3])));
    assert!(matches!(blocked, Err(Error::Conflict(_))), "{blocked:?}");
    let blocked = shard.apply(4, &Command::Delete(vec![Key::Int(1)]));
    assert!(matches!(blocked, Err(Error::Conflict(_))), "{blocked:?}");
    let blocked = shard.apply(5, &prepare(8, insert(&[3], &[])));
    assert!(matches!(blocked, Err(Error::Conflict(_))), "{blocked:?}");
    shard.apply(6, &Command::Upsert(rows(&[4]))).unwrap();
    assert_eq!(
        committed(shard.apply(7, &resolve(7, true)).unwrap()),
        Some(true)
    );
    assert_eq!(ids(&shard), [2, 3, 4]);
    // The first resolution stands; the keys are free again.
    assert_eq!(
        committed(shard.apply(8, &resolve(7, false)).unwrap()),
        Some(true)
    );
    assert!(shard.pending_txns().is_empty());
    shard.apply(9, &Command::Delete(vec![Key::Int(3)])).unwrap();
    assert_eq!(ids(&shard), [2, 4]);
}

#[test]
fn a_created_key_taken_meanwhile_fails_the_later_committer() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    shard.apply(1, &Command::Insert(rows(&[5]))).unwrap();
    let refused = shard.apply(2, &Command::Atomic(insert(&[4, 5], &[])));
    assert!(
        matches!(&refused, Err(Error::Conflict(d)) if d.contains("(id)=(5)")),
        "{refused:?}"
    );
    assert_eq!(ids(&shard), [5], "a refused transaction writes nothing");
    shard
        .apply(3, &Command::Atomic(insert(&[4, 6], &[5])))
        .unwrap();
    assert_eq!(ids(&shard), [4, 6]);
    // An abort recorded first (the coordinator timed out) refuses the late prepare.
    assert_eq!(
        committed(shard.apply(4, &resolve(9, false)).unwrap()),
        Some(false)
    );
    let late = shard.apply(5, &prepare(9, insert(&[7], &[])));
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
    let unknown = shard.apply(6, &resolve(10, true));
    assert!(
        matches!(unknown, Err(Error::InvalidArgument(_))),
        "{unknown:?}"
    );
}

#[test]
fn prepared_transactions_survive_a_restart_durable_or_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let log = [
        Command::Upsert(rows(&[1])),
        prepare(1, insert(&[2], &[])),
        prepare(2, insert(&[3], &[1])),
    ];
    {
        let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
        for (i, c) in log.iter().enumerate() {
            shard.apply(i as u64 + 1, c).unwrap();
        }
        shard.flush().unwrap(); // both prepared ones are in the manifest now
        shard.apply(4, &resolve(1, true)).unwrap(); // replayed after the restart
    }
    let shard = Shard::open(dir.path(), None, opts(1000)).unwrap();
    assert_eq!(shard.applied_index(), 3);
    assert_eq!(shard.pending_txns().len(), 2, "both are prepared again");
    shard.apply(4, &resolve(1, true)).unwrap();
    let blocked = shard.apply(5, &Command::Delete(vec![Key::Int(1)]));
    assert!(
        matches!(blocked, Err(Error::Conflict(_))),
        "a reloaded lock holds"
    );
    shard.apply(6, &resolve(2, true)).unwrap();
    assert_eq!(ids(&shard), [2, 3]);
    shard.flush().unwrap();
    drop(shard);
    let shard = Shard::open(dir.path(), None, opts(1000)).unwrap();
    assert!(shard.pending_txns().is_empty());
    assert_eq!(ids(&shard), [2, 3]);
    // The outcome is still known to whoever asks.
    assert_eq!(
        committed(shard.apply(7, &resolve(2, false)).unwrap()),
        Some(true)
    );
}

#[test]
fn a_truncating_commit_is_durable_at_its_index_and_missing_only_rows_skip_taken_keys() {
    let dir = tempfile::tempdir().unwrap();
    {
        let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
        shard.apply(1, &Command::Upsert(rows(&[1, 2]))).unwrap();
        shard.flush().unwrap();
        shard.apply(2, &Command::Upsert(rows(&[3]))).unwrap();
        let write = TxnWrite {
            truncate: true,
            ..insert(&[4, 5], &[])
        };
        shard.apply(3, &Command::Atomic(write)).unwrap();
        assert_eq!(
            shard.stats().durable_index,
            3,
            "no replay meets an emptied shard"
        );
        // ON CONFLICT DO NOTHING rows: 4 is taken by now, 6 goes in.
        let write = TxnWrite {
            new_keys: Vec::new(),
            if_missing: vec![Key::Int(4), Key::Int(6)],
            ..insert(&[4, 6], &[])
        };
        let applied = shard.apply(4, &Command::Atomic(write)).unwrap();
        assert_eq!(applied.rows_written, 1);
    }
    let shard = Shard::open(dir.path(), None, opts(1000)).unwrap();
    assert_eq!(shard.applied_index(), 3);
    let write = TxnWrite {
        new_keys: Vec::new(),
        if_missing: vec![Key::Int(4), Key::Int(6)],
        ..insert(&[4, 6], &[])
    };
    shard.apply(4, &Command::Atomic(write)).unwrap(); // the log's replay
    assert_eq!(ids(&shard), [4, 5, 6]);
    // 4 keeps its first row: its vector is [4, 1] from either write; the count says it all.
    assert_eq!(shard.count(), 3);
}

#[test]
fn a_decision_is_kept_until_forgotten_and_a_parts_outcome_goes_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    shard.apply(1, &prepare(1, insert(&[1], &[]))).unwrap();
    let part = Command::Prepare {
        txn: 2,
        coordinator: Coordinator::default(),
        decides: false,
        write: insert(&[2], &[]),
    };
    shard.apply(2, &part).unwrap();
    shard.apply(3, &resolve(1, true)).unwrap();
    shard.apply(4, &resolve(2, true)).unwrap();
    shard.flush().unwrap();
    // The decision is still there to answer; the part's outcome is gone (unknown: abort).
    assert_eq!(
        committed(shard.apply(5, &resolve(1, false)).unwrap()),
        Some(true)
    );
    assert_eq!(
        committed(shard.apply(6, &resolve(2, false)).unwrap()),
        Some(false)
    );
    shard.apply(7, &Command::Forget { txn: 1 }).unwrap();
    shard.flush().unwrap();
    assert_eq!(
        committed(shard.apply(8, &resolve(1, false)).unwrap()),
        Some(false)
    );
    assert_eq!(ids(&shard), [1, 2]);
}

/// The version a scan gives a row; a commit that updates the row fails once another write
/// changed it, and goes through while it is as read.
#[test]
fn an_update_of_a_row_changed_since_it_was_read_fails_the_commit() {
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;

    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    shard.apply(1, &Command::Upsert(rows(&[1, 2]))).unwrap();
    let version_of = |shard: &Shard, id: i64| {
        let projection = ["id".to_string(), super::VERSION_COLUMN.to_string()];
        let filter = crate::filter::Filter::In {
            column: "id".into(),
            values: vec![crate::filter::Scalar::Int(id)],
            negated: false,
        };
        let batches = shard.scan(Some(&projection), Some(&filter)).unwrap();
        batches[0].column(1).as_primitive::<UInt64Type>().value(0)
    };
    let update = |id: i64, version: u64| TxnWrite {
        upserts: Some(rows(&[id])),
        read_versions: vec![(Key::Int(id), version)],
        ..TxnWrite::default()
    };
    let (one, two) = (version_of(&shard, 1), version_of(&shard, 2));
    assert_eq!(
        (one, two),
        (1, 1),
        "a row's version is the index that wrote it"
    );
    shard.apply(2, &Command::Upsert(rows(&[1]))).unwrap(); // another session's UPDATE
    let late = shard.apply(3, &Command::Atomic(update(1, one)));
    assert!(
        matches!(&late, Err(Error::Conflict(d)) if d.contains("changed")),
        "{late:?}"
    );
    shard.apply(4, &Command::Atomic(update(2, two))).unwrap();
    shard
        .apply(5, &Command::Atomic(update(1, version_of(&shard, 1))))
        .unwrap();
    assert_ne!(
        version_of(&shard, 2),
        two,
        "a write gives the row a new version"
    );
}

/// Every row's version (`_row_version`) by id.
fn versions(shard: &Shard) -> Vec<(i64, u64)> {
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;

    let projection = ["id".to_string(), super::VERSION_COLUMN.to_string()];
    let mut out: Vec<(i64, u64)> = Vec::new();
    for batch in shard.scan(Some(&projection), None).unwrap() {
        let versions = batch.column(1).as_primitive::<UInt64Type>().values();
        out.extend(ids_of(&batch).into_iter().zip(versions.iter().copied()));
    }
    out.sort_unstable();
    out
}

/// A row's version is the log index that wrote it, whatever the replica sealed, merged or
/// reopened meanwhile: two replicas of one log, one sealing every two rows, merging and
/// restarting, give every row the same version and so decide commits alike. A restore into a
/// new log forgets the versions (its indices start over).
#[test]
fn a_rows_version_is_the_index_that_wrote_it_on_every_replica() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Shard::open(a_dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    let b = Shard::open(b_dir.path(), Some(schema(2, Metric::L2)), opts(2)).unwrap();
    let log = [&[1, 2][..], &[3, 4], &[5, 6], &[1]];
    for (i, ids) in log.iter().enumerate() {
        let command = Command::Upsert(rows(ids));
        a.apply(i as u64 + 1, &command).unwrap();
        b.apply(i as u64 + 1, &command).unwrap();
    }
    b.flush().unwrap();
    let sealed: Vec<u64> = b
        .segments()
        .iter()
        .filter(|s| s.state == "sealed")
        .map(|s| s.id)
        .collect();
    assert!(sealed.len() >= 3, "{:?}", b.segments());
    b.compact(&sealed).unwrap().expect("live rows to merge");
    drop(b);
    let b = Shard::open(b_dir.path(), None, opts(2)).unwrap();
    let want = vec![(1, 4), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)];
    assert_eq!(versions(&a), want);
    assert_eq!(versions(&b), want, "sealed, merged and reopened");

    let update = |id: i64, version: u64| {
        Command::Atomic(TxnWrite {
            upserts: Some(rows(&[id])),
            read_versions: vec![(Key::Int(id), version)],
            ..TxnWrite::default()
        })
    };
    for shard in [&a, &b] {
        let stale = shard.apply(5, &update(1, 1));
        assert!(matches!(&stale, Err(Error::Conflict(_))), "{stale:?}");
        shard.apply(6, &update(2, 1)).unwrap();
    }
    assert_eq!(versions(&a), versions(&b));

    let mut stream = Vec::new();
    a.write_snapshot(&mut stream).unwrap();
    let c_dir = tempfile::tempdir().unwrap();
    let c = Shard::open(c_dir.path(), Some(schema(2, Metric::L2)), opts(1000)).unwrap();
    c.restore_snapshot(&mut stream.as_slice()).unwrap();
    let restored: Vec<(i64, u64)> = (1..=6).map(|id| (id, 0)).collect();
    assert_eq!(versions(&c), restored);
    drop(c);
    let c = Shard::open(c_dir.path(), None, opts(1000)).unwrap();
    assert_eq!(versions(&c), restored, "and stays so on reopen");
}
