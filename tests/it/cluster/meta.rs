//! The meta group outlives the loss of its members, one at a time: a member lost for good is
//! replaced by a spare node without an operator, and DDL works throughout. With three
//! members and no replacement, a second loss would stop every DDL. A spare made a member
//! stays one across its restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_meta_members_are_replaced_by_spares_and_ddl_goes_on() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // Nodes 1 to 3 are the meta group; 4 and 5 are spares.
    let mut cluster = Cluster::start(5, 3_000).joined().await;
    let client = cluster.client(1).await;
    let members = async |client: &Client| {
        ids(
            client,
            "SELECT node FROM vecraft_nodes WHERE meta ORDER BY node",
        )
        .await
    };
    assert_eq!(members(&client).await, [1, 2, 3]);

    // DDL through node 1, which stays, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let ddl = tokio::spawn({
        let (client, stop) = (cluster.client(1).await, Arc::clone(&stop));
        async move {
            let (mut done, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let create = format!("CREATE SCHEMA s{done}");
                match client.batch_execute(&create).await {
                    Ok(()) => done += 1,
                    Err(e) => failed.push(format!("{create}: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await; // pace the DDL
            }
            (done, failed)
        }
    });

    for (lost, now) in [(3, [1, 2, 4]), (2, [1, 4, 5])] {
        cluster.kill(lost);
        let killed = Instant::now();
        wait_until("the lost member to be replaced", async || {
            members(&client).await == now
        })
        .await;
        eprintln!(
            "meta member {lost} replaced {:?} after its kill",
            killed.elapsed()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (done, failed) = ddl.await.unwrap();
    assert_eq!(failed, Vec::<String>::new(), "no DDL fails");
    assert!(done > 20, "DDL went on: {done} schemas");
    // The members left (1, 4, 5) have the meta group's quorum, the original two of them gone.
    client
        .batch_execute("CREATE SCHEMA after_both")
        .await
        .unwrap();
    let names = rows(&client, "SELECT nspname FROM pg_namespace").await;
    let made = names
        .iter()
        .filter_map(|r| r[0].as_deref())
        .filter(|n| {
            *n == "after_both"
                || n.strip_prefix('s')
                    .is_some_and(|i| i.parse::<u64>().is_ok())
        })
        .count();
    assert_eq!(made, done + 1, "every schema made is there");

    // A spare made a member keeps its member across a restart, whatever its flags say: with
    // node 5 gone too, nodes 1 and 4 are the quorum.
    cluster.kill(4);
    cluster.restart(4);
    cluster.kill(5);
    client
        .batch_execute("CREATE SCHEMA after_restart")
        .await
        .unwrap();
    assert_eq!(members(&client).await, [1, 4, 5], "no spare is left");
}
