//! Transactions over two shards under `kill -9`: clients commit transactions whose rows
//! span both shards of a collection while the coordinating gateway, or the leader of one of
//! the shards, is killed at a random point of the commits, then restarted. Afterwards every
//! transaction is visible whole or not at all, every acknowledged COMMIT is visible whole, and
//! a transaction refused before its COMMIT is absent.
//!
//! Short mode (CI): 4 kills. Long mode: `VECRAFT_TXN_KILL_ROUNDS=40`; the seed of the kill
//! points is printed and taken from `VECRAFT_TXN_KILL_SEED` when set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Rows per transaction: with two shards, a transaction all on one shard is rare (2 in 256).
const ROWS_PER_TXN: i64 = 8;

/// What a client knows of the transactions it ran.
#[derive(Default)]
struct History {
    /// COMMIT answered success.
    acked: Vec<i64>,
    /// COMMIT failed or never answered: either outcome is allowed.
    unknown: Vec<i64>,
    /// An INSERT failed, so the transaction was rolled back before its COMMIT.
    rolled_back: Vec<i64>,
}

fn insert_group(group: i64) -> String {
    let values: Vec<String> = (0..ROWS_PER_TXN)
        .map(|i| {
            let id = group * 100 + i;
            format!("({id}, {group}, '{}')", vector(id, 4))
        })
        .collect();
    format!("INSERT INTO items VALUES {}", values.join(","))
}

/// Commits transactions through the gateway on `port`, groups `first..`, until `stop` (or
/// until its gateway dies); `committed` counts the acknowledged ones.
async fn commit_loop(
    port: u16,
    first: i64,
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicUsize>,
) -> History {
    let client = connect(port).await;
    let mut history = History::default();
    for group in first.. {
        if stop.load(Ordering::Relaxed) || client.is_closed() {
            break;
        }
        if client.batch_execute("BEGIN").await.is_err() {
            continue;
        }
        if client.batch_execute(&insert_group(group)).await.is_err() {
            let _ = client.batch_execute("ROLLBACK").await;
            history.rolled_back.push(group);
            continue;
        }
        match client.batch_execute("COMMIT").await {
            Ok(()) => {
                history.acked.push(group);
                committed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                history.unknown.push(group);
                let _ = client.batch_execute("ROLLBACK").await;
            }
        }
    }
    history
}

/// Rows per group, as a strong read sees them.
async fn group_sizes(client: &Client) -> BTreeMap<i64, i64> {
    let sql = "SELECT grp, count(*) FROM items GROUP BY grp";
    rows(client, sql)
        .await
        .iter()
        .map(|r| {
            let n = |i: usize| r[i].as_deref().unwrap().parse::<i64>().unwrap();
            (n(0), n(1))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_over_two_shards_stay_whole_when_gateways_and_leaders_die() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let rounds: usize = std::env::var("VECRAFT_TXN_KILL_ROUNDS").map_or(4, |r| {
        r.parse().expect("VECRAFT_TXN_KILL_ROUNDS is a number")
    });
    let seed: u64 = std::env::var("VECRAFT_TXN_KILL_SEED")
        .map_or_else(|_| rand::random(), |s| s.parse().expect("a number"));
    println!("kill rounds {rounds}, seed {seed} (VECRAFT_TXN_KILL_SEED)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = Cluster::start(3, 600_000).joined().await;
    let setup = cluster
        .created(
            "items (id bigint PRIMARY KEY, grp bigint, v vector(4)) \
             WITH (shards = 2, replicas = 3)",
        )
        .await;
    drop(setup);
    let mut histories = Vec::new();
    for round in 0..rounds {
        let any = cluster.client(1 + (round as u64 % 3)).await;
        let leaders = [
            leader_of(&any, "items", 0).await,
            leader_of(&any, "items", 1).await,
        ];
        drop(any);
        // Even rounds kill the gateway the client commits through (one that leads no shard,
        // so only the coordinator dies); odd rounds kill a shard's leader under a client
        // committing through another node.
        let (victim, gateway) = if round % 2 == 0 {
            let gateway = (1..=3)
                .find(|n| !leaders.contains(n))
                .expect("3 nodes, 2 shards");
            (gateway, gateway)
        } else {
            let victim = leaders[rng.random_range(0..2)];
            (victim, (1..=3).find(|n| *n != victim).unwrap())
        };
        let port = cluster.nodes[gateway as usize - 1]
            .as_ref()
            .unwrap()
            .sql_port;
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicUsize::new(0));
        let first = round as i64 * 1_000_000;
        let writer = tokio::spawn(commit_loop(port, first, stop.clone(), committed.clone()));
        // Kill once the client commits steadily, at a random point of a commit.
        let warm = committed.load(Ordering::Relaxed) + 3;
        wait_until("the client to commit", async || {
            committed.load(Ordering::Relaxed) >= warm || writer.is_finished()
        })
        .await;
        let delay_ms = rng.random_range(0..60);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await; // the kill point, not a wait
        cluster.kill(victim);
        println!("round {round}: killed node {victim} (leaders {leaders:?}, gateway {gateway})");
        if victim != gateway {
            // The client goes on through the fail-over, then stops.
            let more = committed.load(Ordering::Relaxed) + 2;
            wait_until("commits after the fail-over", async || {
                committed.load(Ordering::Relaxed) >= more
            })
            .await;
        }
        stop.store(true, Ordering::Relaxed);
        histories.push(writer.await.unwrap());
        cluster.restart(victim);
    }

    // The survivors resolve what the dead left prepared: every transaction whole or absent.
    let client = cluster.client(1).await;
    let acked: Vec<i64> = histories.iter().flat_map(|h| h.acked.clone()).collect();
    let mut sizes = BTreeMap::new();
    wait_until("every transaction to be whole or absent", async || {
        sizes = group_sizes(&client).await;
        sizes.values().all(|n| *n == ROWS_PER_TXN) && acked.iter().all(|g| sizes.contains_key(g))
    })
    .await;
    for group in histories.iter().flat_map(|h| &h.rolled_back) {
        assert!(!sizes.contains_key(group), "rolled-back {group} is absent");
    }
    for group in sizes.keys() {
        let known = acked.contains(group) || histories.iter().any(|h| h.unknown.contains(group));
        assert!(known, "group {group} was committed by a client");
    }
    let unknown: usize = histories.iter().map(|h| h.unknown.len()).sum();
    let unknown_committed = histories
        .iter()
        .flat_map(|h| &h.unknown)
        .filter(|g| sizes.contains_key(g))
        .count();
    println!(
        "{} acknowledged commits all whole; {unknown} commits without an answer, \
         {unknown_committed} of them committed (whole), the rest absent",
        acked.len()
    );
    assert!(acked.len() >= 3 * rounds, "the clients committed");
}
