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
use vecraft_storage::distance::Metric;
use vecraft_storage::key::Key;
use vecraft_storage::schema::{
    CollectionSchema, ColumnDef, ColumnType, HnswParams, VectorSpec, vector_array,
    vector_arrow_type,
};
use vecraft_storage::shard::{SearchRequest, ShardOptions};

use crate::local::LocalCollection;

const DIMS: usize = 4;
const CRASH_DIR_ENV: &str = "VECRAFT_CLUSTER_CRASH_DIR";
const CRASH_ROUND_ENV: &str = "VECRAFT_CLUSTER_CRASH_ROUND";

pub(crate) fn schema() -> CollectionSchema {
    CollectionSchema::new(
        vec![
            ColumnDef::new("id", ColumnType::Int64, false),
            ColumnDef::new(
                "v",
                ColumnType::Vector(VectorSpec {
                    dims: DIMS,
                    metric: Metric::L2,
                    hnsw: HnswParams::default(),
                }),
                false,
            ),
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
    }
}

fn open(dir: &Path) -> LocalCollection {
    LocalCollection::open(dir, Some(schema()), opts()).unwrap()
}

fn ids(c: &LocalCollection) -> Vec<i64> {
    let mut ids: Vec<i64> = c
        .shard()
        .scan(Some(&["id".to_string()]), None)
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
    let applied = c.shard().applied_index();
    assert!(
        (1001..1005).contains(&applied),
        "1,000 upserts, one delete and a few Raft entries (membership, blanks); the refused \
         write took no index: {applied}"
    );
    assert_eq!(c.checkpoint().unwrap(), applied, "the whole log is purged");
    drop(c);
    // Reopened with an empty log: the shard's state and the snapshot's id take over.
    let c = open(dir.path());
    assert_eq!(ids(&c).len(), 999);
    c.write(&row(5)).unwrap();
    drop(c);
    let c = open(dir.path());
    assert_eq!(ids(&c), (0..1000).collect::<Vec<_>>());
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
        let hit = c.shard().search(&SearchRequest::new("v", q, 1)).unwrap();
        assert_eq!(hit.column(0).as_primitive::<Int64Type>().value(0), probe);
        if round % 3 == 2 {
            c.checkpoint().unwrap();
        }
    }
}
