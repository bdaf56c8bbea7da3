//! `kill -9` while clients write: every acknowledged row is there after a restart on the same
//! directory, and KNN queries run through the index again.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Node, connect};

fn start(dir: &Path) -> Node {
    crate::support::single_node(dir)
}

fn vector(i: i64) -> String {
    format!("[{},{},{}]", i % 97, (i * 7) % 31, i / 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_rows_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let port = server.sql_port;
    let client = connect(port).await;
    client
        .batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, embedding vector(3))")
        .await
        .unwrap();
    // Two writers insert batches; each remembers what was acknowledged, and counts it in
    // `acked_rows` (a row is visible to a count before its INSERT is acknowledged).
    let acked_rows = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..2i64 {
        let client = connect(port).await;
        let acked_rows = Arc::clone(&acked_rows);
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for batch in 0.. {
                let ids: Vec<i64> = (0..50).map(|i| w * 1_000_000 + batch * 50 + i).collect();
                let values: Vec<String> = ids
                    .iter()
                    .map(|i| format!("({i}, '{}')", vector(*i)))
                    .collect();
                let sql = format!("INSERT INTO items VALUES {}", values.join(","));
                match client.execute(sql.as_str(), &[]).await {
                    Ok(n) => {
                        assert_eq!(n, 50);
                        acked.extend(ids);
                        acked_rows.fetch_add(50, Ordering::Relaxed);
                    }
                    Err(_) => return acked, // the server is gone
                }
            }
            acked
        }));
    }
    // Kill once enough is acknowledged, while the writers are still going.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = acked_rows.load(Ordering::Relaxed);
        if n >= 3_000 {
            break;
        }
        assert!(Instant::now() < deadline, "writers too slow: {n} rows");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() >= 3_000);

    let mut server = start(dir.path());
    let client = connect(server.sql_port).await;
    let present: Vec<i64> = client
        .query("SELECT id FROM items", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let present: std::collections::HashSet<i64> = present.into_iter().collect();
    let lost: Vec<&i64> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged rows lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // The index works: an index search gives the exact answer's first row, and it is the
    // row whose vector was asked for.
    client
        .batch_execute("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)")
        .await
        .unwrap();
    let probe = acked[acked.len() / 2];
    let knn = format!(
        "SELECT id FROM items ORDER BY embedding <-> '{}' LIMIT 1",
        vector(probe)
    );
    let plan: Vec<String> = client
        .simple_query(&format!("EXPLAIN {knn}"))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert!(plan.join("\n").contains("CollectionSearchExec"), "{plan:?}");
    let nearest: i64 = client.query_one(knn.as_str(), &[]).await.unwrap().get(0);
    assert_eq!(vector(nearest), vector(probe));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
