//! A collection on one node keeps every acknowledged write through `kill -9`, replays its log
//! on open, and purges the log at a checkpoint.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use rand::Rng;
use vecraft_storage::command::Command;
use vecraft_storage::key::Key;
use vecraft_storage::schema::{
    CollectionSchema, ColumnDef, ColumnType, VectorSpec, vector_array, vector_arrow_type,
};
use vecraft_storage::shard::{SearchRequest, ShardOptions};

use crate::collection::Collection;
use crate::read::Consistency;

pub(crate) const DIMS: usize = 4;
const CRASH_DIR_ENV: &str = "VECRAFT_CLUSTER_CRASH_DIR";
const CRASH_ROUND_ENV: &str = "VECRAFT_CLUSTER_CRASH_ROUND";

pub(crate) fn schema() -> CollectionSchema {
    CollectionSchema::new(
        vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new("v", ColumnType::Vector(VectorSpec::new(DIMS)), false),
        ],
        "id",
    )
    .unwrap()
}

pub(crate) fn row(id: i64) -> Command {
    let v: Vec<f32> = (0..DIMS).map(|d| (id as f32) * 0.001 + d as f32).collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", vector_arrow_type(DIMS), false),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![id])),
            Arc::new(vector_array(DIMS, v, None)),
        ],
    )
    .unwrap();
    Command::Upsert(batch)
}

pub(crate) fn opts() -> ShardOptions {
    ShardOptions {
        seal_threshold_rows: 300,
        background_seal: true,
        live_index: true,
        merge_min_segments: 4,
        checkpoint_log_bytes: 0,
    }
}

fn open(dir: &Path) -> Collection {
    Collection::open(dir, Some(schema()), opts()).unwrap()
}

fn ids(c: &Collection) -> Vec<i64> {
    let mut ids: Vec<i64> = c
        .scan(Some(&["id".to_string()]), None, Consistency::Strong)
        .unwrap()
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort();
    ids
}

#[test]
fn writes_survive_reopen_through_the_log_and_checkpoints_purge_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = open(dir.path());
        for id in 0..1000 {
            c.write(&row(id)).unwrap();
        }
        c.write(&Command::Delete(vec![Key::Int(5)])).unwrap();
        let bad = Command::Upsert(RecordBatch::new_empty(Arc::new(Schema::new(vec![
            Field::new("nope", DataType::Int64, true),
        ]))));
        assert!(c.write(&bad).is_err(), "refused before it is logged");
    }
    let c = open(dir.path());
    assert_eq!(ids(&c).len(), 999);
    let applied = c.shards()[0].stats().unwrap().applied_index;
    assert!(
        (1001..1008).contains(&applied),
        "1,000 upserts, one delete and a few Raft entries (membership, blanks); the refused \
         write took no index: {applied}"
    );
    assert_eq!(
        c.checkpoint().unwrap(),
        [applied],
        "the whole log is purged"
    );
    drop(c);
    // Reopened with an empty log: the shard's state and the snapshot's id take over.
    let c = open(dir.path());
    assert_eq!(ids(&c).len(), 999);
    c.write(&row(5)).unwrap();
    drop(c);
    let c = open(dir.path());
    assert_eq!(ids(&c), (0..1000).collect::<Vec<_>>());
}

/// With `checkpoint_log_bytes` set, a member checkpoints on its own once it applied that
/// much: no CHECKPOINT runs, yet the log is purged up to a snapshot, and a reopen finds every
/// row.
#[test]
fn a_log_past_its_limit_is_checkpointed_and_purged_on_its_own() {
    use crate::local::LocalShard;
    let dir = tempfile::tempdir().unwrap();
    let opts = ShardOptions {
        checkpoint_log_bytes: 64 << 10,
        ..opts()
    };
    let member = LocalShard::open(dir.path(), Some(schema()), opts.clone()).unwrap();
    let purged = || member.group().raft().metrics().borrow().purged;
    // A one-row upsert is an entry of about 600 bytes (an Arrow IPC message).
    for id in 0..10 {
        member.write(&row(id)).unwrap();
    }
    assert_eq!(purged(), None, "10 rows are far from 64 KiB of log");
    for id in 10..1000 {
        member.write(&row(id)).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while purged().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was never purged"
        );
        std::thread::sleep(std::time::Duration::from_millis(10)); // pace the polls
    }
    let status = member.group_status();
    assert!(
        status.snapshot_index >= purged().map(|id| id.index),
        "the purge follows a snapshot: {status:?}"
    );
    drop(member);
    let member = LocalShard::open(dir.path(), Some(schema()), opts).unwrap();
    assert_eq!(member.shard().count(), 1000);
}

/// The child: writes rows from 4 threads and prints `acked <id>` after each write returns.
#[test]
#[ignore]
fn crash_child() {
    let (Some(dir), Some(round)) = (
        std::env::var_os(CRASH_DIR_ENV),
        std::env::var_os(CRASH_ROUND_ENV),
    ) else {
        return;
    };
    let round: i64 = round.to_string_lossy().parse().unwrap();
    let c = Arc::new(open(Path::new(&dir)));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..100_000i64 {
                    let id = round * 1_000_000 + i * 4 + t;
                    c.write(&row(id)).unwrap();
                    println!("acked {id}");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn run_child_until(dir: &Path, round: i64, target: usize) -> Vec<i64> {
    let mut child = Process::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::crash_child",
            "--nocapture",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir)
        .env(CRASH_ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(id) = line.strip_prefix("acked ").and_then(|s| s.parse().ok()) {
            acked.push(id);
            if acked.len() >= target {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(acked.len(), target, "the child stopped early");
    acked
}

#[test]
fn every_acknowledged_write_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut acked_all: Vec<i64> = Vec::new();
    for round in 0..8 {
        let target = rng.random_range(50..=600);
        acked_all.extend(run_child_until(dir.path(), round, target));
        let c = open(dir.path());
        let present = ids(&c);
        let missing: Vec<&i64> = acked_all
            .iter()
            .filter(|id| present.binary_search(id).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: lost {} acknowledged rows, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        // The index answers: the nearest row to an acknowledged row's vector is itself.
        let probe = acked_all[rng.random_range(0..acked_all.len())];
        let Command::Upsert(batch) = row(probe) else {
            unreachable!()
        };
        let v = batch.column(1).as_fixed_size_list().value(0);
        let q = v
            .as_primitive::<arrow::datatypes::Float32Type>()
            .values()
            .to_vec();
        let hit = c
            .search(&SearchRequest::new("v", q, 1), Consistency::Strong)
            .unwrap();
        assert_eq!(hit.column(0).as_primitive::<Int64Type>().value(0), probe);
        if round % 3 == 2 {
            c.checkpoint().unwrap();
        }
    }
}

/// Rows `ids` with vectors spread over the space (deterministic).
fn rows(ids: std::ops::Range<i64>) -> RecordBatch {
    let v: Vec<f32> = ids
        .clone()
        .flat_map(|id| {
            (0..DIMS as i64).map(move |d| ((id * 7919 + d * 104_729) % 1000) as f32 * 0.01)
        })
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", vector_arrow_type(DIMS), false),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(vector_array(DIMS, v, None)),
        ],
    )
    .unwrap()
}

/// The ids and distances of an answer.
fn answer(batch: &RecordBatch) -> Vec<(i64, f64)> {
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let distances = batch
        .column(batch.num_columns() - 1)
        .as_primitive::<arrow::datatypes::Float64Type>();
    ids.values()
        .iter()
        .copied()
        .zip(distances.values().iter().copied())
        .collect()
}

#[test]
fn a_sharded_collection_spreads_rows_and_answers_like_one_shard() {
    let (one_dir, four_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = Collection::create(one_dir.path(), schema(), 1, opts()).unwrap();
    let four = Collection::create(four_dir.path(), schema(), 4, opts()).unwrap();
    let staging = crate::collection::staging_dir(four_dir.path());
    assert!(!staging.exists(), "built aside, then renamed into place");
    for c in [&one, &four] {
        c.write(&Command::Insert(rows(0..1000))).unwrap();
        c.write(&Command::Delete(
            (0..1000).step_by(10).map(Key::Int).collect(),
        ))
        .unwrap();
        c.write(&Command::Upsert(rows(995..1005))).unwrap();
    }
    let per_shard: Vec<u64> = four
        .shards()
        .iter()
        .map(|s| s.status().unwrap().rows)
        .collect();
    assert!(
        per_shard.iter().all(|n| (150..350).contains(n)),
        "{per_shard:?}"
    );
    assert_eq!(per_shard.iter().sum::<u64>(), one.count());
    assert_eq!(ids(&four), ids(&one));

    // Exact search: the k nearest over four shards are the one shard's, distances included.
    let probe = vec![5.0, 1.0, 7.5, 3.0];
    for k in [1, 10, 50] {
        let mut request = SearchRequest::new("v", probe.clone(), k);
        request.exact = true;
        request.projection = Some(vec!["id".into()]);
        let want = one.search(&request, Consistency::Strong).unwrap();
        let got = four.search(&request, Consistency::Strong).unwrap();
        let (mut want, mut got) = (answer(&want), answer(&got));
        assert_eq!(got.len(), k);
        // Rows at equal distances may come in either order.
        let key = |(id, d): &(i64, f64)| (d.to_bits(), *id);
        want.sort_by_key(key);
        got.sort_by_key(key);
        assert_eq!(got, want, "k = {k}");
    }

    // A duplicate key on any shard refuses the whole statement: no shard writes its part.
    four.write(&Command::Insert(rows(2000..2200))).unwrap();
    let refused = four.write(&Command::Insert(rows(2150..2300)));
    assert!(
        matches!(refused, Err(vecraft_storage::Error::DuplicateKey(_))),
        "{refused:?}"
    );
    assert_eq!(
        four.count(),
        one.count() + 200,
        "the refused insert wrote nothing"
    );

    // Reopened, it is four shards again, with every row.
    drop(four);
    let four = Collection::open(four_dir.path(), None, opts()).unwrap();
    assert_eq!(four.shards().len(), 4);
    assert_eq!(four.count(), one.count() + 200);
}
