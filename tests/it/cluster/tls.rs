//! A cluster whose nodes talk over TLS with the cluster's CA (`--cluster-ca`): rows written
//! through one gateway are read through the others (writes replicate and reads fan out over
//! the Flight port), and the port answers no one else — not a caller without TLS, nor one
//! whose certificate another CA signed, even with the cluster's secret.

use std::path::Path;

use vecraft_cluster::rpc::{CallError, ClusterSecret, ClusterTls, PING, Peers, Pong};

use super::*;
use crate::tls::make_certificates;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_tls_with_the_cluster_ca_and_no_one_else_gets_in() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let certs = tempfile::tempdir().unwrap();
    let (ours, theirs) = (certs.path().join("ours"), certs.path().join("theirs"));
    make_certificates(&ours);
    make_certificates(&theirs);
    let path = |dir: &Path, name: &str| dir.join(name).display().to_string();
    let flags = [
        format!("--cluster-ca={}", path(&ours, "ca.crt")),
        format!("--tls-cert={}", path(&ours, "server.crt")),
        format!("--tls-key={}", path(&ours, "server.key")),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with(3, 3_000, &flags).joined().await;

    let admin = cluster
        .created(
            "docs (id bigint PRIMARY KEY, embedding vector(2)) WITH (shards = 2, replicas = 3)",
        )
        .await;
    let values: Vec<String> = (0..100).map(|i| format!("({i}, '[{i}, 1]')")).collect();
    let insert = format!("INSERT INTO docs VALUES {}", values.join(", "));
    admin.batch_execute(&insert).await.unwrap();
    for id in [2, 3] {
        let client = cluster.client(id).await;
        let count = rows(&client, "SELECT count(*) FROM docs").await;
        assert_eq!(count[0][0].as_deref(), Some("100"), "node {id}");
        let nearest = rows(
            &client,
            "SELECT id FROM docs ORDER BY embedding <-> '[41, 1]' LIMIT 1",
        )
        .await;
        assert_eq!(nearest[0][0].as_deref(), Some("41"), "node {id}");
    }

    let addr = format!("127.0.0.1:{}", cluster.rpc_ports[0]);
    let secret = || ClusterSecret::new(TEST_SECRET).unwrap();
    let tls = |ca: &Path, cert: &Path| {
        let (ca, key) = (ca.join("ca.crt"), cert.join("server.key"));
        Some(ClusterTls::load(&ca, &cert.join("server.crt"), &key).unwrap())
    };
    let ping = async |peers: Peers| -> Result<Pong, CallError> {
        peers.call(&addr, PING, &(), Duration::from_secs(5)).await
    };
    let member = ping(Peers::with_tls(secret(), tls(&ours, &ours))).await;
    assert_eq!(member.unwrap(), Pong { draining: false });
    // No answer at the transport: the connection ends at the handshake (the caller cannot
    // tell whether its request went out before that).
    let unanswered = |e: &Result<Pong, CallError>| {
        matches!(e, Err(CallError::Unreachable(_) | CallError::Lost(_)))
    };
    let plain = ping(Peers::new(secret())).await;
    assert!(unanswered(&plain), "{plain:?}");
    // Trusts our CA, shows a certificate of another.
    let impostor = ping(Peers::with_tls(secret(), tls(&ours, &theirs))).await;
    assert!(unanswered(&impostor), "{impostor:?}");
    let stranger = ping(Peers::with_tls(secret(), tls(&theirs, &theirs))).await;
    assert!(unanswered(&stranger), "{stranger:?}");
}
