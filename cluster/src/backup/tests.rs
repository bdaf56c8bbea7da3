//! Backups of collections on one node to a local directory (`file://`), restored into the same
//! shape and another; incremental uploads; a corrupt object and an interrupted backup.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use rand::{Rng, SeedableRng};
use vecraft_storage::command::Command;
use vecraft_storage::key::Key;
use vecraft_storage::schema::{vector_array, vector_arrow_type};
use vecraft_storage::shard::{SearchRequest, ShardOptions};

use super::{BackupManifest, BackupStore, backup, restore_into};
use crate::collection::Collection;
use crate::read::Consistency;
use crate::tests::schema;

const DIMS: usize = crate::tests::DIMS;

fn opts() -> ShardOptions {
    ShardOptions {
        seal_threshold_rows: 100_000,
        background_seal: false,
        live_index: true,
        merge_min_segments: 0,
        checkpoint_log_bytes: 0,
    }
}

fn insert(c: &Collection, ids: std::ops::Range<i64>, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = ids.end - ids.start;
    let values: Vec<f32> = (0..n as usize * DIMS).map(|_| rng.random()).collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", vector_arrow_type(DIMS), false),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(vector_array(DIMS, values, None)),
        ],
    )
    .unwrap();
    c.write(&Command::Insert(batch)).unwrap();
}

/// The `k` nearest ids and distances to a few fixed queries, exact or through the graphs.
fn answers(c: &Collection, exact: bool) -> Vec<Vec<(i64, f64)>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    (0..5)
        .map(|_| {
            let q: Vec<f32> = (0..DIMS).map(|_| rng.random()).collect();
            let mut request = SearchRequest::new("v", q, 10);
            request.exact = exact;
            request.projection = Some(vec!["id".into()]);
            let batch = c.search(&request, Consistency::Strong).unwrap();
            let ids = batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec();
            let d = arrow::compute::cast(batch.column(1), &DataType::Float64).unwrap();
            let d = d.as_primitive::<Float64Type>().values().to_vec();
            ids.into_iter().zip(d).collect()
        })
        .collect()
}

fn store(dir: &Path) -> BackupStore {
    let url = format!("file://{}", dir.display());
    BackupStore::create(&url, &Vec::new(), runtime().handle().clone()).unwrap()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn quiet(_: &str) {}

/// Bytes of every blob in the store at `dir`.
fn blob_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn latest(store: &BackupStore) -> BackupManifest {
    let objects = store.manifests().unwrap();
    let last = objects.last().expect("a backup is listed");
    BackupManifest::decode(&store.read_manifest(last).unwrap(), &last.id).unwrap()
}

#[test]
fn a_backup_restores_with_the_same_answers_in_the_same_shape_and_in_four_shards() {
    let (data, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = Collection::create(&data.path().join("docs"), schema(), 1, opts()).unwrap();
    insert(&source, 0..3000, 1);
    source
        .write(&Command::Delete(vec![Key::Int(7), Key::Int(8)]))
        .unwrap();
    let (exact, graph) = (answers(&source, true), answers(&source, false));
    let store = store(backups.path());
    let manifest = backup(
        &store,
        &[("docs".into(), Arc::new(source))],
        &data.path().join("tmp"),
        &quiet,
    )
    .unwrap();
    assert_eq!(manifest.rows(), 2998);
    assert_eq!(
        latest(&store),
        manifest,
        "the manifest is listed as written"
    );
    let part = manifest.collection("docs").unwrap();

    let (same, info) =
        restore_into(&data.path().join("same"), part, &store, 1, opts(), &quiet).unwrap();
    assert_eq!((info.rows, info.rerouted), (2998, false));
    assert_eq!(same.count(), 2998);
    assert_eq!(answers(&same, true), exact);
    assert_eq!(
        answers(&same, false),
        graph,
        "the graphs are the stored ones"
    );

    let (four, info) =
        restore_into(&data.path().join("four"), part, &store, 4, opts(), &quiet).unwrap();
    assert_eq!(
        (info.rows, info.rerouted, four.shards().len()),
        (2998, true, 4)
    );
    assert_eq!(answers(&four, true), exact);
    // Restored collections take writes and keep them through a reopen.
    insert(&four, 5000..5010, 2);
    drop(four);
    let four = Collection::open_existing(&data.path().join("four"), opts()).unwrap();
    assert_eq!(four.count(), 3008);
}

#[test]
fn a_second_backup_uploads_only_what_is_new_and_a_corrupt_object_is_refused() {
    let (data, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source =
        Arc::new(Collection::create(&data.path().join("docs"), schema(), 1, opts()).unwrap());
    insert(&source, 0..10_000, 1);
    let store = store(backups.path());
    let scratch = data.path().join("tmp");
    let targets = [("docs".to_string(), Arc::clone(&source))];
    let first = backup(&store, &targets, &scratch, &quiet).unwrap();
    let stored = blob_bytes(backups.path());
    assert_eq!(first.uploaded_bytes, stored);

    insert(&source, 10_000..10_100, 2);
    let second = backup(&store, &targets, &scratch, &quiet).unwrap();
    let added = blob_bytes(backups.path()) - stored;
    assert_eq!(second.uploaded_bytes, added);
    assert!(
        added * 100 < stored * 3,
        "1% more rows upload {added} bytes against {stored} stored"
    );
    assert_eq!(second.rows(), 10_100);
    assert_eq!(store.manifests().unwrap().len(), 2);

    // Flip a byte of the largest blob: a restore refuses it and leaves no collection.
    let largest = std::fs::read_dir(backups.path().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&largest, bytes).unwrap();
    let dir = data.path().join("restored");
    let part = second.collection("docs").unwrap();
    let err = restore_into(&dir, part, &store, 1, opts(), &quiet).unwrap_err();
    assert!(
        matches!(err, vecraft_storage::Error::Corrupt { .. }),
        "a corrupt object is corruption: {err}"
    );
    assert!(!dir.exists(), "nothing of the restore is left");
    let staging = crate::collection::staging_dir(&dir);
    assert!(!staging.exists(), "nor of its staging");
}

#[test]
fn an_interrupted_backup_is_never_listed_and_a_retry_completes() {
    let (data, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source =
        Arc::new(Collection::create(&data.path().join("docs"), schema(), 2, opts()).unwrap());
    insert(&source, 0..500, 1);
    let store = store(backups.path());
    let targets = [("docs".to_string(), source)];
    // Once the last shard is uploaded, a file takes the place of the backup's directory: its
    // manifest cannot be written, and the backup fails after its data went, as one cut short
    // would.
    let in_the_way = std::sync::Mutex::new(None);
    let interrupt = |line: &str| {
        if let Some((id, _)) = line
            .strip_prefix("backup ")
            .and_then(|l| l.split_once(": docs shard 1:"))
        {
            let dir = backups.path().join("backups").join(id);
            std::fs::remove_dir_all(&dir).unwrap();
            std::fs::write(&dir, b"in the way").unwrap();
            *in_the_way.lock().unwrap() = Some(dir);
        }
    };
    let err = backup(&store, &targets, &data.path().join("tmp"), &interrupt).unwrap_err();
    assert!(matches!(err, vecraft_storage::Error::Io { .. }), "{err}");
    std::fs::remove_file(in_the_way.lock().unwrap().take().expect("interrupted")).unwrap();
    assert!(blob_bytes(backups.path()) > 0, "its data was uploaded");
    assert!(
        store.manifests().unwrap().is_empty(),
        "and it is not listed"
    );
    let retried = backup(&store, &targets, &data.path().join("tmp"), &quiet).unwrap();
    assert_eq!(
        retried.uploaded_bytes, 0,
        "the retry finds every blob stored"
    );
    assert_eq!(latest(&store).rows(), 500);
}

#[test]
fn a_blob_that_does_not_hash_to_its_name_is_refused_at_its_end() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let file = dir.path().join("file");
    std::fs::write(&file, b"hello world").unwrap();
    let sha256 = super::store::sha256_hex(b"hello world");
    store.put_blob(&sha256, &file).unwrap();
    assert!(store.has_blob(&sha256).unwrap());
    let mut buf = [0u8; 11];
    let mut good = store.blob_reader(&sha256, 11).unwrap();
    good.read_exact(&mut buf).unwrap();
    good.verify().unwrap();

    // Same length, one letter changed: only the hash can tell.
    std::fs::write(dir.path().join("blobs").join(&sha256), b"hello World").unwrap();
    let mut bad = store.blob_reader(&sha256, 11).unwrap();
    bad.read_exact(&mut buf).unwrap();
    let err = bad.verify().unwrap_err();
    assert!(
        matches!(err, vecraft_storage::Error::Corrupt { .. }),
        "{err}"
    );
    let mut short = store.blob_reader(&sha256, 12).unwrap();
    let err = short.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);

    // A directory that is not there: refused for reading, made for a backup.
    let missing = format!("file://{}/not-there", dir.path().display());
    let handle = runtime().handle().clone();
    assert!(BackupStore::open(&missing, &Vec::new(), handle.clone()).is_err());
    assert!(BackupStore::create(&missing, &Vec::new(), handle).is_ok());
    let err = BackupStore::open("gs://bucket/x", &Vec::new(), runtime().handle().clone());
    assert!(matches!(
        err,
        Err(vecraft_storage::Error::InvalidArgument(_))
    ));
}

/// The blobs in the store at `dir`, by name.
fn blob_names(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect()
}

/// The blobs the manifests in `store` name.
fn named_blobs(store: &BackupStore) -> std::collections::BTreeSet<String> {
    let mut named = std::collections::BTreeSet::new();
    for object in store.manifests().unwrap() {
        let manifest = BackupManifest::decode(&store.read_manifest(&object).unwrap(), "").unwrap();
        named.extend(manifest.blobs().map(|blob| blob.sha256.clone()));
    }
    named
}

#[test]
fn retention_keeps_the_newest_backups_and_exactly_the_blobs_they_name() {
    use super::retain;
    use super::retention::{begin_backup, end_backup};

    let (data, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source =
        Arc::new(Collection::create(&data.path().join("docs"), schema(), 1, opts()).unwrap());
    let store = store(backups.path());
    let (scratch, targets) = (
        data.path().join("tmp"),
        [("docs".into(), Arc::clone(&source))],
    );
    let mut exact = Vec::new();
    for round in 0..4i64 {
        insert(&source, round * 1000..(round + 1) * 1000, round as u64);
        // Deletes in the first segment give it a new tombstone file each time: the old one is
        // named by the older backups only.
        let dead = Command::Delete(vec![Key::Int(round * 10), Key::Int(round * 10 + 1)]);
        source.write(&dead).unwrap();
        backup(&store, &targets, &scratch, &quiet).unwrap();
        exact.push(answers(&source, true));
    }
    let ids: Vec<String> = store
        .manifests()
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    let before = blob_names(backups.path());

    let retained = retain(&store, 2, &quiet).unwrap();
    assert_eq!(retained.deleted, ids[..2].to_vec(), "the two oldest go");
    assert!(retained.swept && retained.deleted_blobs > 0, "{retained:?}");
    let kept: Vec<String> = store
        .manifests()
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(kept, ids[2..].to_vec());
    let after = blob_names(backups.path());
    assert_eq!(
        after,
        named_blobs(&store),
        "every named blob, and nothing else, is left"
    );
    assert_eq!(before.len() - after.len(), retained.deleted_blobs);
    for (i, object) in store.manifests().unwrap().iter().enumerate() {
        let manifest = BackupManifest::decode(&store.read_manifest(object).unwrap(), "").unwrap();
        let dir = data.path().join(format!("kept-{i}"));
        let part = manifest.collection("docs").unwrap();
        let (restored, _) = restore_into(&dir, part, &store, 1, opts(), &quiet).unwrap();
        assert_eq!(
            answers(&restored, true),
            exact[2 + i],
            "backup {i} restores whole"
        );
    }

    // A backup in flight: its blobs may not be named yet, so the sweep stands down.
    begin_backup(&store, "in-flight", &quiet).unwrap();
    std::fs::write(backups.path().join("blobs").join("0".repeat(64)), b"orphan").unwrap();
    let retained = retain(&store, 1, &quiet).unwrap();
    assert_eq!((retained.deleted.len(), retained.swept), (1, false));
    assert!(backups.path().join("blobs").join("0".repeat(64)).exists());
    end_backup(&store, "in-flight").unwrap();
    let retained = retain(&store, 1, &quiet).unwrap();
    assert!(retained.swept && retained.deleted.is_empty());
    assert_eq!(blob_names(backups.path()), named_blobs(&store));
}

#[test]
fn a_backup_waits_while_a_sweep_runs_but_not_for_a_dead_one() {
    let (data, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source =
        Arc::new(Collection::create(&data.path().join("docs"), schema(), 1, opts()).unwrap());
    insert(&source, 0..100, 1);
    let store = store(backups.path());
    let (scratch, targets) = (
        data.path().join("tmp"),
        [("docs".into(), Arc::clone(&source))],
    );
    let sweeps = backups.path().join("sweeps");
    std::fs::create_dir_all(&sweeps).unwrap();

    // A dead sweep's mark (two hours old) holds nobody up.
    let dead = std::fs::File::create(sweeps.join("dead")).unwrap();
    dead.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    backup(&store, &targets, &scratch, &quiet).unwrap();

    // A running sweep's mark: the backup says it waits, and goes on once the mark is gone.
    std::fs::write(sweeps.join("running"), b"").unwrap();
    let waiting = std::sync::atomic::AtomicBool::new(false);
    let report = |line: &str| {
        if line.contains("waiting for a retention sweep") {
            waiting.store(true, std::sync::atomic::Ordering::Release);
        }
    };
    std::thread::scope(|scope| {
        let taken = scope.spawn(|| backup(&store, &targets, &scratch, &report).unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !waiting.load(std::sync::atomic::Ordering::Acquire) {
            assert!(
                std::time::Instant::now() < deadline,
                "the backup never waited"
            );
            std::thread::sleep(std::time::Duration::from_millis(10)); // pace the polls
        }
        assert_eq!(
            store.manifests().unwrap().len(),
            1,
            "no manifest while it waits"
        );
        std::fs::remove_file(sweeps.join("running")).unwrap();
        assert_eq!(taken.join().unwrap().rows(), 100);
    });
    assert_eq!(store.manifests().unwrap().len(), 2);
}
