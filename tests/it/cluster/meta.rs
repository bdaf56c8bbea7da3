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

/// The meta members each gateway lists.
async fn meta_members(client: &Client) -> Vec<i64> {
    let sql = "SELECT node FROM vecraft_nodes WHERE meta ORDER BY node";
    ids(client, sql).await
}

/// The SQLSTATE and message a statement fails with.
async fn failure(client: &Client, sql: &str) -> (String, String) {
    let e = client.simple_query(sql).await.expect_err(sql);
    let db = e.as_db_error().expect("a server error");
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_members_are_added_and_removed_by_a_command() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // No automatic replacement gets in the way: nodes are judged lost after 10 minutes.
    let mut cluster = Cluster::start(4, 600_000).joined().await;
    // Node 4 is no member: its gateway sends the changes to the meta leader.
    let (spare, other) = (cluster.client(4).await, cluster.client(2).await);
    assert_eq!(meta_members(&spare).await, [1, 2, 3]);

    spare
        .batch_execute("CALL vecraft_add_meta_member(4)")
        .await
        .unwrap();
    assert_eq!(meta_members(&spare).await, [1, 2, 3, 4], "shown at once");
    wait_until("every gateway to list node 4", async || {
        meta_members(&other).await == [1, 2, 3, 4]
    })
    .await;
    // Idempotent, and a node that is not in the cluster is refused.
    spare
        .batch_execute("CALL vecraft_add_meta_member(4)")
        .await
        .unwrap();
    let refused = failure(&spare, "CALL vecraft_add_meta_member(9)").await;
    assert_eq!(
        refused,
        ("22023".into(), "node 9 is not in the cluster".into())
    );
    let malformed = failure(&spare, "CALL vecraft_add_meta_member('4')").await;
    assert_eq!(malformed.0, "22023");

    // The founding members go one by one, whichever of them leads (a leader asked to remove
    // itself hands over first), until node 4 is the only member; DDL works after each.
    for (removed, left) in [(1, vec![2, 3, 4]), (2, vec![3, 4]), (3, vec![4])] {
        let call = format!("CALL vecraft_remove_meta_member({removed})");
        spare.batch_execute(&call).await.unwrap();
        assert_eq!(meta_members(&spare).await, left);
        let create = format!("CREATE SCHEMA without_{removed}");
        spare.batch_execute(&create).await.unwrap();
    }
    let last = failure(&spare, "CALL vecraft_remove_meta_member(4)").await;
    assert_eq!(
        last,
        (
            "22023".into(),
            "node 4 is the meta group's only member".into()
        )
    );
    // The removed members are not needed: with two of them down, DDL goes on through node 4.
    cluster.kill(1);
    cluster.kill(3);
    spare.batch_execute("CREATE SCHEMA alone").await.unwrap();
    // A removed member that restarts with its old flags and files does not take the group
    // back, and its gateway finds node 4 through node 2, which was a member after it (a
    // node's `--meta-peers` must name one node that knows the group).
    cluster.restart(1);
    let returned = cluster.client(1).await;
    wait_until("node 1's gateway to list node 4 alone", async || {
        meta_members(&returned).await == [4]
    })
    .await;
    returned.batch_execute("CREATE SCHEMA back").await.unwrap();
    let sql = "SELECT nspname FROM pg_namespace \
               WHERE nspname LIKE 'without_%' OR nspname IN ('alone', 'back') ORDER BY 1";
    wait_until("every schema to reach node 4's gateway", async || {
        let schemas = rows(&spare, sql).await;
        let schemas: Vec<_> = schemas.iter().filter_map(|r| r[0].clone()).collect();
        schemas == ["alone", "back", "without_1", "without_2", "without_3"]
    })
    .await;
}

#[tokio::test]
async fn a_single_node_has_no_meta_members_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let node = crate::support::single_node(dir.path());
    let client = crate::support::connect(node.sql_port).await;
    let (code, message) = failure(&client, "CALL vecraft_add_meta_member(2)").await;
    assert_eq!(code, "0A000");
    assert!(
        message.starts_with("a single node has no meta group"),
        "{message}"
    );
    // Any other procedure is unknown, as in PostgreSQL.
    assert_eq!(
        sqlstate(&client, "CALL no_such_procedure(1)").await,
        "42883"
    );
}
