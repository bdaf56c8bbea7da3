//! Shard maintenance: background sealing while searches and writes run, snapshots installed
//! on an empty replica (and mangled ones refused), compaction, truncation, and index changes
//! rebuilt through `reindex`.

use std::sync::Arc;

use super::tests::{batch, exact, ids_of, load, mixture, opts, schema, search, upsert};
use super::{SearchRequest, Shard, ShardOptions};
use crate::command::Command;
use crate::distance::Metric;
use crate::key::Key;
use crate::schema::HnswParams;

#[test]
fn snapshot_installs_on_an_empty_replica_with_identical_results() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = mixture(2000, 8, 3);
    let source = Shard::open(a.path(), Some(schema(8, Metric::Cosine)), opts(800)).unwrap();
    let next = load(&source, &data, 250, 1);
    source
        .apply(next, &Command::Delete((100..300).map(Key::Int).collect()))
        .unwrap();
    let mut stream = Vec::new();
    let info = source.write_snapshot(&mut stream).unwrap();
    assert_eq!(info.applied_index, next);

    let target = Shard::open(b.path(), Some(schema(8, Metric::Cosine)), opts(800)).unwrap();
    let installed = target.install_snapshot(&mut stream.as_slice()).unwrap();
    assert_eq!(installed, info);
    assert_eq!(target.applied_index(), next);
    for q in data.iter().step_by(97) {
        assert_eq!(search(&source, q, 10, None), search(&target, q, 10, None));
        assert_eq!(exact(&source, q, 10), exact(&target, q, 10));
    }
    drop(target);
    let reopened = Shard::open(b.path(), None, opts(800)).unwrap();
    assert_eq!(reopened.count(), 1800);
    assert_eq!(
        search(&source, &data[5], 10, None),
        search(&reopened, &data[5], 10, None)
    );

    let mut corrupt = stream.clone();
    let at = corrupt.len() / 2;
    corrupt[at] ^= 1;
    let c = tempfile::tempdir().unwrap();
    let victim = Shard::open(c.path(), Some(schema(8, Metric::Cosine)), opts(800)).unwrap();
    assert!(victim.install_snapshot(&mut corrupt.as_slice()).is_err());
    assert_eq!(victim.count(), 0, "a failed install leaves the old state");
}

#[test]
fn compaction_drops_dead_rows_and_keeps_results() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(3000, 8, 4);
    let shard = Shard::open(dir.path(), Some(schema(8, Metric::L2)), opts(1000)).unwrap();
    let next = load(&shard, &data, 500, 1);
    shard
        .apply(
            next,
            &Command::Delete((0..3000).step_by(3).map(Key::Int).collect()),
        )
        .unwrap();
    shard.flush().unwrap();
    let queries: Vec<&Vec<f32>> = data.iter().step_by(111).collect();
    let before: Vec<Vec<i64>> = queries.iter().map(|q| exact(&shard, q, 10)).collect();
    let ids: Vec<u64> = {
        let state = shard.inner.state.read();
        state.slots.iter().map(|s| s.id).collect()
    };
    assert_eq!(ids.len(), 3);
    let merged = shard.compact(&ids).unwrap().unwrap();
    let stats = shard.stats();
    assert_eq!(
        (stats.sealed_segments, stats.dead_rows, stats.live_rows),
        (1, 0, 2000)
    );
    let after: Vec<Vec<i64>> = queries.iter().map(|q| exact(&shard, q, 10)).collect();
    assert_eq!(before, after);
    // The key map follows the rows: deleting and upserting after compaction still works.
    let del = shard
        .apply(next + 1, &Command::Delete(vec![Key::Int(1)]))
        .unwrap();
    assert_eq!(del.rows_deleted, 1, "{:?}", shard.stats());
    assert_eq!(shard.count(), 1999);
    // Deletes live in the log until persisted; flushing makes the log unnecessary.
    assert_eq!(shard.flush().unwrap(), next + 1);
    drop(shard);
    let reopened = Shard::open(dir.path(), None, opts(1000)).unwrap();
    assert_eq!(reopened.count(), 1999);
    assert!(
        reopened
            .inner
            .state
            .read()
            .slots
            .iter()
            .any(|s| s.id == merged)
    );
}

#[test]
fn truncate_removes_everything_durably() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(600, 4, 5);
    {
        let shard = Shard::open(dir.path(), Some(schema(4, Metric::L2)), opts(250)).unwrap();
        let next = load(&shard, &data, 100, 1);
        assert_eq!(
            shard.apply(next, &Command::Truncate).unwrap().rows_deleted,
            600
        );
        assert_eq!(shard.count(), 0);
        assert!(search(&shard, &data[0], 5, None).is_empty());
    }
    let shard = Shard::open(dir.path(), None, opts(250)).unwrap();
    assert_eq!(shard.count(), 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn searches_run_while_writes_apply_and_background_sealing_swaps_segments() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(4000, 8, 6);
    let options = ShardOptions {
        seal_threshold_rows: 500,
        background_seal: true,
        live_index: true,
        merge_min_segments: 4,
        checkpoint_log_bytes: 0,
    };
    let shard = Arc::new(Shard::open(dir.path(), Some(schema(8, Metric::L2)), options).unwrap());
    let reader = {
        let (shard, q) = (shard.clone(), data[0].clone());
        std::thread::spawn(move || {
            let mut searches = 0;
            loop {
                let done = shard.count() >= 4000;
                let got = search(&shard, &q, 5, None);
                assert!(got.len() <= 5);
                let mut unique = got.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), got.len(), "a key appears twice: {got:?}");
                searches += 1;
                if done {
                    break searches;
                }
            }
        })
    };
    load(&shard, &data, 100, 1);
    assert!(reader.join().unwrap() > 0);
    shard.wait_for_background();
    let stats = shard.stats();
    assert_eq!(stats.last_background_error, None);
    assert!(stats.sealed_segments >= 7, "{stats:?}");
    assert_eq!(exact(&shard, &data[0], 1), vec![0]);
}

#[test]
fn compaction_in_any_id_order_keeps_sealed_segments_ahead_of_frozen_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(900, 4, 8);
    let shard = Shard::open(dir.path(), Some(schema(4, Metric::L2)), opts(300)).unwrap();
    let next = load(&shard, &data, 300, 1); // three sealed segments
    let ids: Vec<u64> = shard
        .inner
        .state
        .read()
        .slots
        .iter()
        .map(|s| s.id)
        .collect();
    // A frozen slot behind them, as when background sealing lags.
    shard
        .apply(next, &Command::Upsert(batch(&[5000], &[vec![0.5; 4]])))
        .unwrap();
    shard.inner.state.write().freeze();
    assert!(shard.compact(&[]).is_err());
    assert!(shard.compact(&[ids[1], ids[1]]).is_err());
    assert_eq!(shard.count(), 901, "refused compactions change nothing");
    shard.compact(&[ids[1], ids[0]]).unwrap();
    shard.flush().unwrap();
    drop(shard);
    let reopened = Shard::open(dir.path(), None, opts(300)).unwrap();
    assert_eq!(reopened.count(), 901);
    assert_eq!(exact(&reopened, &[0.5; 4], 1), vec![5000]);
}

#[test]
fn set_index_changes_the_metric_and_reindex_builds_graphs_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(2500, 8, 9);
    let shard = Shard::open(dir.path(), Some(schema(8, Metric::L2)), opts(1000)).unwrap();
    let next = load(&shard, &data, 500, 1);
    let hnsw = HnswParams {
        m: 8,
        ef_construction: 32,
    };
    let set = Command::SetIndex {
        column: "embedding".into(),
        metric: Metric::Cosine,
        hnsw,
    };
    let bytes = set.encode().unwrap();
    assert_eq!(Command::decode(&bytes).unwrap(), set);
    shard.apply(next, &set).unwrap();
    shard.reindex().unwrap();
    let stats = shard.stats();
    assert_eq!((stats.sealed_segments, stats.live_rows), (1, 2500));
    {
        let state = shard.inner.state.read();
        use crate::segment::Segment;
        let super::state::SlotData::Sealed(seg) = &state.slots[0].data else {
            panic!("one sealed segment");
        };
        // Vector columns are numbered among themselves: `embedding` is the first.
        assert_eq!(seg.index(0).map(|(m, _)| m), Some(Metric::Cosine));
    }
    // Cosine searches now use the graph and agree with brute force.
    let mut hits = 0;
    let queries: Vec<&Vec<f32>> = data.iter().step_by(97).collect();
    for q in &queries {
        let mut req = SearchRequest::new("embedding", q.to_vec(), 10);
        req.metric = Some(Metric::Cosine);
        let got = ids_of(&shard.search(&req).unwrap());
        req.exact = true;
        let truth = ids_of(&shard.search(&req).unwrap());
        hits += got.iter().filter(|id| truth.contains(id)).count();
    }
    let recall = hits as f64 / (queries.len() * 10) as f64;
    assert!(recall >= 0.9, "recall {recall}");
    // The new spec is durable; a bad one is refused and consumes its index.
    let bad = Command::SetIndex {
        column: "tag".into(),
        metric: Metric::L2,
        hnsw,
    };
    assert!(shard.check(&bad).is_err());
    assert!(shard.apply(next + 1, &bad).is_err());
    assert_eq!(shard.applied_index(), next + 1);
    drop(shard);
    let reopened = Shard::open(dir.path(), None, opts(1000)).unwrap();
    let spec = reopened.schema().vector_spec("embedding").unwrap();
    assert_eq!((spec.metric, spec.hnsw), (Metric::Cosine, hnsw));
}

/// Snapshot bytes as a peer might send them, whole or mangled: `verify_snapshot` answers
/// every one without panicking, and accepts the real one.
#[test]
fn fuzz_snapshot_verification() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(300, 4, 9);
    let shard = Shard::open(dir.path(), Some(schema(4, Metric::L2)), opts(100)).unwrap();
    let next = load(&shard, &data, 50, 1);
    shard
        .apply(next, &Command::Delete((10..20).map(Key::Int).collect()))
        .unwrap();
    let mut real = Vec::new();
    shard.write_snapshot(&mut real).unwrap();
    let contents = Shard::verify_snapshot(&mut real.as_slice()).unwrap();
    assert_eq!(contents.durable_index, next);
    assert!(Shard::verify_snapshot(&mut &real[..real.len() - 1]).is_err());
    let mut longer = real.clone();
    longer.push(0);
    assert!(
        Shard::verify_snapshot(&mut longer.as_slice()).is_err(),
        "bytes after the manifest"
    );
    crate::fuzz::run("snapshot", &[&real], |input| {
        let _ = Shard::verify_snapshot(&mut &input[..]);
    });
}

/// A snapshot whose segment lacks a file its `meta.json` names (a vector column's file, the
/// row versions) is refused when verified, not when a replica installs it.
#[test]
fn a_snapshot_missing_a_segment_file_is_refused_by_verification() {
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), Some(schema(4, Metric::L2)), opts(100)).unwrap();
    load(&shard, &mixture(300, 4, 9), 50, 1);
    let mut real = Vec::new();
    shard.write_snapshot(&mut real).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let manifest = super::split_snapshot(&mut real.as_slice(), &mut |name, _, body| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(body, &mut bytes).unwrap();
        files.push((name.to_string(), bytes));
        Ok(())
    })
    .unwrap();
    for left_out in ["/vec-0.bin", "/versions.bin"] {
        let mut stream = Vec::new();
        let mut writer = super::SnapshotWriter::start(&mut stream).unwrap();
        let mut dropped = 0;
        for (name, bytes) in &files {
            if name.ends_with(left_out) {
                dropped += 1;
                continue;
            }
            writer
                .file(name, bytes.len() as u64, &mut bytes.as_slice())
                .unwrap();
        }
        writer.finish(&manifest).unwrap();
        assert!(dropped > 0, "the snapshot had {left_out}");
        let refused = Shard::verify_snapshot(&mut stream.as_slice());
        let why = format!("{refused:?}");
        assert!(why.contains(&left_out[1..]), "{left_out}: {why}");
    }
}

#[test]
fn small_sealed_segments_merge_in_the_background_with_deletes_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(800, 8, 7);
    let options = ShardOptions {
        seal_threshold_rows: 1000,
        ..ShardOptions::default() // background work on, merges from 4 small segments
    };
    let shard = Shard::open(dir.path(), Some(schema(8, Metric::L2)), options.clone()).unwrap();
    // Each flush (a snapshot, `VACUUM`) seals 200 rows: small next to a 1000-row seal.
    let mut next = 1;
    for (b, chunk) in data.chunks(200).enumerate() {
        upsert(&shard, next, b * 200, chunk);
        next += 1;
        if b == 1 {
            // Deleted before the merge: the merge leaves these rows out for good.
            let deleted = (0..400).step_by(4).map(Key::Int).collect();
            shard.apply(next, &Command::Delete(deleted)).unwrap();
            next += 1;
        }
        shard.flush().unwrap();
    }
    let queries: Vec<&Vec<f32>> = data.iter().step_by(53).collect();
    let before: Vec<Vec<i64>> = queries.iter().map(|q| exact(&shard, q, 10)).collect();
    shard.wait_for_background();
    let stats = shard.stats();
    assert_eq!(stats.last_background_error, None);
    assert_eq!(
        (stats.sealed_segments, stats.merges, stats.live_rows),
        (1, 1, 700),
        "{stats:?}"
    );
    assert_eq!(stats.dead_rows, 0, "the merge leaves the dead rows out");
    let after: Vec<Vec<i64>> = queries.iter().map(|q| exact(&shard, q, 10)).collect();
    assert_eq!(before, after);
    let found: usize = queries
        .iter()
        .map(|q| {
            let graph = search(&shard, q, 10, None);
            exact(&shard, q, 10)
                .iter()
                .filter(|id| graph.contains(id))
                .count()
        })
        .sum();
    assert!(found * 100 >= queries.len() * 10 * 95, "recall {found}");
    // A key deleted before the merge stays deleted; one written after it replaces its row.
    let row = Command::Upsert(batch(&[4], &data[4..5]));
    assert_eq!(shard.apply(next, &row).unwrap().rows_written, 1);
    assert_eq!(shard.count(), 701);
    drop(shard);
    let reopened = Shard::open(dir.path(), None, options).unwrap();
    assert_eq!(reopened.stats().sealed_segments, 1);
    assert_eq!(
        reopened.count(),
        700,
        "the upsert after the flush lives in the log"
    );
}

#[test]
fn fewer_small_segments_than_the_minimum_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(300, 8, 8);
    let options = ShardOptions {
        seal_threshold_rows: 1000,
        ..ShardOptions::default() // background work on, merges from 4 small segments
    };
    let shard = Shard::open(dir.path(), Some(schema(8, Metric::L2)), options).unwrap();
    for (b, chunk) in data.chunks(100).enumerate() {
        upsert(&shard, b as u64 + 1, b * 100, chunk);
        shard.flush().unwrap();
    }
    shard.wait_for_background();
    let stats = shard.stats();
    assert_eq!((stats.sealed_segments, stats.merges), (3, 0), "{stats:?}");
}

/// Four sealed segments of 900 rows (not small next to a 1000-row seal); a delete of half
/// the rows makes them small, and the compactor merges them with no statement asking.
#[test]
fn deletes_alone_set_off_the_compactor_which_leaves_no_dead_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(3600, 8, 9);
    let options = ShardOptions {
        seal_threshold_rows: 1000,
        ..ShardOptions::default()
    };
    let shard = Shard::open(dir.path(), Some(schema(8, Metric::L2)), options).unwrap();
    for (b, chunk) in data.chunks(900).enumerate() {
        upsert(&shard, b as u64 + 1, b * 900, chunk);
        shard.flush().unwrap();
    }
    shard.wait_for_background();
    assert_eq!(
        (shard.stats().sealed_segments, shard.stats().merges),
        (4, 0)
    );
    let deleted = (0..3600).step_by(2).map(Key::Int).collect();
    shard.apply(5, &Command::Delete(deleted)).unwrap();
    let queries: Vec<&Vec<f32>> = data.iter().step_by(97).collect();
    let before: Vec<Vec<i64>> = queries.iter().map(|q| exact(&shard, q, 10)).collect();
    shard.wait_for_background();
    let stats = shard.stats();
    assert_eq!(stats.last_background_error, None);
    assert_eq!(
        (stats.sealed_segments, stats.dead_rows, stats.live_rows),
        (1, 0, 1800),
        "{stats:?}"
    );
    let after: Vec<Vec<i64>> = queries.iter().map(|q| exact(&shard, q, 10)).collect();
    assert_eq!(before, after);
}

/// A segment with a fifth of its rows dead is rewritten alone; one with fewer dead rows than
/// the minimum is left.
#[test]
fn a_segment_a_fifth_dead_is_rewritten_without_its_dead_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixture(900, 8, 10);
    let options = ShardOptions {
        seal_threshold_rows: 1000,
        ..ShardOptions::default()
    };
    let shard = Shard::open(dir.path(), Some(schema(8, Metric::L2)), options).unwrap();
    upsert(&shard, 1, 0, &data);
    shard.flush().unwrap();
    let few = (0..50).map(Key::Int).collect();
    shard.apply(2, &Command::Delete(few)).unwrap();
    shard.wait_for_background();
    assert_eq!((shard.stats().dead_rows, shard.stats().merges), (50, 0));
    let more = (50..200).map(Key::Int).collect();
    shard.apply(3, &Command::Delete(more)).unwrap();
    let q = &data[300];
    let before = exact(&shard, q, 10);
    shard.wait_for_background();
    let stats = shard.stats();
    assert_eq!(
        (
            stats.sealed_segments,
            stats.dead_rows,
            stats.live_rows,
            stats.merges
        ),
        (1, 0, 700, 1),
        "{stats:?}"
    );
    assert_eq!(exact(&shard, q, 10), before);
}
