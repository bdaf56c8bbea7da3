//! A shard leader that stops answering without going away (paused with `SIGSTOP`: its
//! connections stay open and its kernel still accepts new ones) holds up only the statements
//! that wait on it. The gateway they run on answers every other session at once, the waiting
//! statements end on their own once the shard has another leader (or at their
//! `statement_timeout`), writes go to the new leader, and the old one, let go on, defers to it.

use super::*;

/// More sessions waiting on the shard than the gateway has runtime threads (4 per core): if
/// a wait held a thread, nothing would be left to answer anyone else.
const WAITING_SESSIONS: usize = 12;

/// The longest a gateway may take to answer `SELECT 1` on an open session during a fault.
const SELECT_1_MS: u128 = 100;
/// The longest a fresh connection and its `SELECT 1` may take during a fault (startup,
/// parameters, the query: several round trips).
const CONNECT_MS: u128 = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_holds_up_only_the_statements_that_wait_on_it() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3, 60_000).joined().await;
    let setup = cluster
        .created("kv (id bigint PRIMARY KEY, v vector(2)) WITH (shards = 1, replicas = 3)")
        .await;
    let leader = leader_of(&setup, "kv", 0).await;
    let gateway = (1..=3).find(|n| *n != leader).unwrap();
    let port = cluster.nodes[gateway as usize - 1]
        .as_ref()
        .unwrap()
        .sql_port;
    // Each session writes once first, so the gateway's router knows the leader.
    let mut waiting = Vec::new();
    for i in 0..WAITING_SESSIONS as i64 {
        let client = connect(port).await;
        let sql = insert("kv", i..i + 1, 2);
        assert_eq!(client.execute(sql.as_str(), &[]).await.unwrap(), 1);
        waiting.push(client);
    }
    let timed = connect(port).await;
    timed
        .batch_execute("SET statement_timeout = '300ms'")
        .await
        .unwrap();
    let probe = connect(port).await;

    cluster.pause(leader);
    let paused = Instant::now();
    // Half the sessions write, half read from the leader (a strong read).
    let statements: Vec<_> = waiting
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(async move {
                let id = 100 + i as i64;
                let answer = match i % 2 {
                    0 => {
                        client
                            .execute(insert("kv", id..id + 1, 2).as_str(), &[])
                            .await
                    }
                    _ => client.execute("SELECT count(*) FROM kv", &[]).await,
                };
                (id, answer.map(|_| ()), paused.elapsed())
            })
        })
        .collect();

    // A statement waiting on the paused leader ends at its statement_timeout, and its
    // session goes on.
    let started = Instant::now();
    let cut = timed.execute("SELECT count(*) FROM kv", &[]).await;
    let cut = cut.expect_err("the read waits on the paused leader");
    assert_eq!(cut.code().map(|c| c.code()), Some("57014"), "{cut}");
    let cut_after = started.elapsed();
    assert!(
        cut_after < Duration::from_secs(2),
        "cut after {cut_after:?}"
    );
    assert_eq!(rows(&timed, "SELECT 2").await, [[Some("2".to_string())]]);

    // Meanwhile the gateway answers other sessions, and new ones, at once.
    let (mut slowest_select, mut slowest_connect, mut probes) = (0, 0, 0);
    while statements.iter().any(|s| !s.is_finished()) {
        assert!(paused.elapsed() < DEADLINE, "the waiting statements ended");
        let asked = Instant::now();
        assert_eq!(rows(&probe, "SELECT 1").await, [[Some("1".to_string())]]);
        slowest_select = slowest_select.max(asked.elapsed().as_millis());
        let asked = Instant::now();
        let fresh = connect(port).await;
        assert_eq!(rows(&fresh, "SELECT 1").await, [[Some("1".to_string())]]);
        slowest_connect = slowest_connect.max(asked.elapsed().as_millis());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await; // pace the probes
    }
    eprintln!(
        "{probes} probes while {WAITING_SESSIONS} statements waited: SELECT 1 at most \
         {slowest_select} ms, a fresh connection and its SELECT 1 at most {slowest_connect} ms"
    );
    assert!(
        probes >= 3,
        "the statements waited for a new leader ({probes} probes)"
    );
    assert!(
        slowest_select <= SELECT_1_MS,
        "SELECT 1 took {slowest_select} ms"
    );
    assert!(
        slowest_connect <= CONNECT_MS,
        "a connection took {slowest_connect} ms"
    );

    // Each waiting statement ended on its own, well inside a call's 30 s deadline:
    // answered by the new leader, or refused with 57P03 (a write whose outcome is unknown).
    let mut acked = BTreeSet::new();
    for statement in statements {
        let (id, answer, ended) = statement.await.unwrap();
        eprintln!(
            "statement {id}: {:?} after {ended:?}",
            answer.as_ref().err()
        );
        assert!(
            ended < Duration::from_secs(10),
            "statement {id} took {ended:?}"
        );
        match answer {
            Ok(()) if id % 2 == 0 => drop(acked.insert(id)),
            Ok(()) => {}
            Err(e) => {
                let code = e.code().map(|c| c.code().to_string());
                assert_eq!(code.as_deref(), Some("57P03"), "{e}");
            }
        }
    }

    // Writes go to the new leader, from any gateway, with the old one still paused.
    let new_leader = leader_of(&probe, "kv", 0).await;
    assert_ne!(new_leader, leader);
    let sql = insert("kv", 200..201, 2);
    assert_eq!(probe.execute(sql.as_str(), &[]).await.unwrap(), 1);
    acked.insert(200);

    // Let go on, the old leader defers to the new one: writes through its own gateway
    // (whose router last saw it lead) are taken, none refused.
    cluster.resume(leader);
    let old = cluster.client(leader).await;
    for id in 300..320 {
        let sql = insert("kv", id..id + 1, 2);
        let written = old.execute(sql.as_str(), &[]).await;
        assert_eq!(written.unwrap(), 1, "write {id} through the old leader");
        acked.insert(id);
    }
    let stored: BTreeSet<i64> = ids(&probe, "SELECT id FROM kv").await.into_iter().collect();
    assert!(
        acked.is_subset(&stored),
        "every acknowledged write is there"
    );
    assert_eq!(leader_of(&old, "kv", 0).await, new_leader);
}
