//! Roles and grants in a cluster: made through one gateway, they hold on every other at once
//! (a login, and a refused statement, read the meta group again before they answer), a REVOKE
//! within the watch interval, and all of it after a node restarts.

use super::*;

/// The superuser trusted on loopback (the harness connects as it), everyone else by password.
const ACCESS: &str = r#"
[[access]]
type = "host"
user = "postgres"
address = "127.0.0.1"
method = "trust"

[[access]]
type = "host"
user = "all"
address = "127.0.0.1"
method = "scram-sha-256"
"#;

/// A session of `user` on `port`, or the server's SQLSTATE.
async fn login(port: u16, user: &str, password: &str) -> Result<Client, String> {
    let dsn = format!("host=127.0.0.1 port={port} user={user} password={password}");
    match tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Err(e) => Err(e.code().map_or(e.to_string(), |c| c.code().to_string())),
    }
}

/// The SQLSTATE of a statement, or "ok".
async fn outcome(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => "ok".into(),
        Err(e) => e.code().map_or(e.to_string(), |c| c.code().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_grants_reach_every_gateway_at_once_and_outlive_a_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("access.toml");
    std::fs::write(&path, ACCESS).unwrap();
    let flag = format!("--config={}", path.display());
    let mut cluster = Cluster::start_with(3, 3_000, &[&flag]).joined().await;
    let port = |cluster: &Cluster, id: usize| cluster.nodes[id - 1].as_ref().unwrap().sql_port;
    let admin = cluster
        .created("docs (id bigint PRIMARY KEY, embedding vector(2))")
        .await;

    admin
        .batch_execute("CREATE ROLE alice LOGIN PASSWORD 'one'")
        .await
        .unwrap();
    for id in [2, 3] {
        assert!(
            login(port(&cluster, id), "alice", "one").await.is_ok(),
            "node {id}"
        );
    }
    admin
        .batch_execute("ALTER ROLE alice PASSWORD 'two'")
        .await
        .unwrap();
    for id in [2, 3] {
        let old = login(port(&cluster, id), "alice", "one").await.err();
        assert_eq!(old.as_deref(), Some("28P01"), "node {id}");
        assert!(
            login(port(&cluster, id), "alice", "two").await.is_ok(),
            "node {id}"
        );
    }

    let alice = login(port(&cluster, 3), "alice", "two").await.unwrap();
    let read = "SELECT count(*) FROM docs";
    assert_eq!(outcome(&alice, read).await, "42501");
    admin
        .batch_execute("GRANT SELECT ON docs TO alice")
        .await
        .unwrap();
    assert_eq!(outcome(&alice, read).await, "ok", "a GRANT holds at once");
    admin
        .batch_execute("REVOKE SELECT ON docs FROM alice")
        .await
        .unwrap();
    wait_until("the REVOKE to reach node 3", async || {
        outcome(&alice, read).await == "42501"
    })
    .await;

    cluster.kill(2);
    cluster.restart(2);
    let alice = login(port(&cluster, 2), "alice", "two").await.unwrap();
    assert_eq!(outcome(&alice, read).await, "42501");
    admin
        .batch_execute("GRANT SELECT ON docs TO alice")
        .await
        .unwrap();
    assert_eq!(outcome(&alice, read).await, "ok");
}
