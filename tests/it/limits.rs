//! The node's limits on the real binary: what took the whole process down before (a stack
//! overflow, running out of descriptors) now costs the client an error and nothing more.

use std::time::{Duration, Instant};

use tokio::net::TcpSocket;

use crate::support::{Node, connect, http_get, serve_args};

/// A node whose clients must log in within 2 s.
fn args(dir: &std::path::Path) -> Vec<&str> {
    let mut args = serve_args(dir);
    args.extend(["--startup-timeout-ms", "2000"]);
    args
}

/// A statement of 100,000 `OR` terms (about 700 KB) is refused with 54001, and the node
/// answers the next statement.
#[tokio::test]
async fn a_deep_statement_is_refused_and_the_node_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(&args(dir.path()));
    let client = connect(node.sql_port).await;
    let sql = format!("SELECT 1 WHERE {}", vec!["1=1"; 100_000].join(" OR "));
    let e = client.simple_query(&sql).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("54001"), "{e:?}");
    let e = client.prepare(&sql).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("54001"), "{e:?}");
    let one: i64 = client
        .query_one("SELECT 1::bigint", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
    assert!(node.child.try_wait().unwrap().is_none(), "the node runs");
}

/// `GET /healthz`: the whole response, or `None` if the connection closed without one.
async fn healthz(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    (!response.is_empty()).then_some(response)
}

/// Raises this test process's descriptor limit to `wanted` (root may raise the hard limit
/// too), or as far as it may go; returns it.
fn raise_own_descriptors(wanted: usize) -> usize {
    let mut rlim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim), 0);
        let raised = libc::rlimit {
            rlim_cur: wanted as libc::rlim_t,
            rlim_max: rlim.rlim_max.max(wanted as libc::rlim_t),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            rlim.rlim_cur = rlim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rlim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim);
    }
    rlim.rlim_cur as usize
}

/// 30,000 sockets that never log in (as many as this process may open, when fewer: 19,000
/// under a hard limit of 20,000), against a node allowed 512 descriptors: the node keeps
/// running, closes what it cannot hold, drops the rest when their startup time is up, and
/// serves a real client again; 300 idle HTTP connections do not stop `/healthz` either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_thousand_idle_sockets_do_not_exhaust_the_node() {
    let dir = tempfile::tempdir().unwrap();
    // Sockets are held until their startup time is up: long enough here that the node fills
    // its budget, and refuses, even when other tests keep it slow to accept.
    let mut args = serve_args(dir.path());
    args.extend(["--startup-timeout-ms", "10000"]);
    let mut node = Node::start_with_descriptors(512, &args);
    let wanted = 30_000.min(raise_own_descriptors(32_000).saturating_sub(1_000));
    eprintln!("opening {wanted} idle sockets");
    assert!(
        wanted >= 5_000,
        "this machine lets a process open {wanted} sockets"
    );
    // Spread over several source addresses: one has about 28,000 ephemeral ports.
    let mut held = Vec::with_capacity(wanted);
    for i in 0..wanted {
        let source = std::net::SocketAddr::from(([127, 0, 0, 1 + (i % 4) as u8], 0));
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(source).unwrap();
        if let Ok(stream) = socket.connect(([127, 0, 0, 1], node.sql_port).into()).await {
            held.push(stream);
        }
    }
    assert!(
        held.len() >= wanted / 2,
        "{} of {wanted} connected",
        held.len()
    );
    let mut idle_http = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", node.http_port)).await {
            idle_http.push(s);
        }
    }
    assert!(node.child.try_wait().unwrap().is_none(), "the node runs");
    // A real client gets in once the sockets the node held ran out of startup time.
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        let dsn = format!("host=127.0.0.1 port={} user=postgres", node.sql_port);
        match tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "no session within 60 s: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await; // pace the retries
            }
        }
    };
    let one: i64 = client
        .query_one("SELECT 1::bigint", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
    // /healthz answers once the idle HTTP connections were closed (10 s of silence).
    loop {
        let probe = tokio::time::timeout(Duration::from_secs(5), healthz(node.http_port));
        if let Ok(Some(response)) = probe.await {
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            assert!(response.ends_with("ok\n"), "{response}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz did not answer within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // pace the retries
    }
    // The sockets past the budget are refused as the node reaches them in its accept queue,
    // which on a busy machine can be after the client above got in: wait for the count.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = http_get(node.http_port, "/metrics").await;
        let refused = metrics
            .lines()
            .find(|l| l.starts_with("vecraft_connections_refused_total{reason=\"sockets\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if refused > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no socket beyond the budget was refused within 60 s: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await; // pace the polls
    }
    drop(held);
    assert!(node.child.try_wait().unwrap().is_none(), "the node runs");
    let _ = connect(node.sql_port).await;
}
