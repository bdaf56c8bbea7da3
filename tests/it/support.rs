//! What the binary's tests share: starting a node on ports it picks, connecting with a
//! deadline, logging in, plain HTTP GETs, reading `/metrics`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, NoTls, Socket};

/// `SELECT 1` in a new session of `dsn` over `tls`: `Ok(())`, or the server's SQLSTATE and
/// message (`none` and the client's own error when the server said nothing).
pub async fn select_one<T>(dsn: &str, tls: T) -> Result<(), (String, String)>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let refused = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => ("none".to_string(), format!("{e:?}")),
    };
    let (client, connection) = tokio_postgres::connect(dsn, tls).await.map_err(refused)?;
    let connection = tokio::spawn(connection);
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .map_err(refused)?
        .get(0);
    assert_eq!(one, 1);
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// A `vecraft` process, with the ports it bound (it is given port 0 and says which it got).
pub struct Node {
    pub child: Child,
    pub sql_port: u16,
    pub http_port: u16,
    /// Every line the node wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// A node a failing test leaves running is killed, not leaked.
impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Node {
    /// Runs `vecraft` with `args`, which must make it listen on port 0 for both SQL and
    /// HTTP, and waits (with a deadline) for the line that names the bound addresses.
    pub fn start(args: &[&str]) -> Node {
        Node::spawn(Command::new(env!("CARGO_BIN_EXE_vecraft")).args(args))
    }

    /// [`Node::start`] with environment variables `env` set.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Node {
        Node::start_program(env!("CARGO_BIN_EXE_vecraft").as_ref(), args, env)
    }

    /// [`Node::start_with_env`] of the `vecraft` binary at `program` (a release build).
    pub fn start_program(program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut command = Command::new(program);
        Node::spawn(command.args(args).envs(env.iter().copied()))
    }

    /// [`Node::start`] with the process's open-descriptor limit set to `nofile` (soft and
    /// hard, so the node cannot raise it).
    pub fn start_with_descriptors(nofile: u32, args: &[&str]) -> Node {
        let script = format!("ulimit -n {nofile} && exec \"$0\" \"$@\"");
        Node::spawn(
            Command::new("sh")
                .args(["-c", &script, env!("CARGO_BIN_EXE_vecraft")])
                .args(args),
        )
    }

    /// The first line of the node's log that contains `text`, waited for (with a deadline).
    pub fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no log line with {text:?}");
            std::thread::sleep(Duration::from_millis(20)); // paces the look
        }
    }

    /// Sends `signal` to the node's process (`SIGSTOP`, `SIGCONT`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: a plain kill(2) of the child this harness started and has not reaped.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(
            sent,
            0,
            "signal {signal} reaches process {}",
            self.child.id()
        );
    }

    fn spawn(command: &mut Command) -> Node {
        // Log lines the tests read come at the binary's default levels, unless the test
        // sets them itself.
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env_remove("RUST_LOG");
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vecraft starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            // Keep draining, so the node never blocks on a full pipe.
            let echo = std::env::var_os("VECRAFT_TEST_LOG").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[vecraft {}] {line}", std::process::id());
                }
                if let Some(ports) = serving_ports(&line) {
                    let _ = tx.send(ports);
                }
                kept.lock().unwrap().push(line);
            }
        });
        let (sql_port, http_port) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("vecraft says where it serves");
        Node {
            child,
            sql_port,
            http_port,
            log,
        }
    }
}

/// A single node (`vecraft serve`) on ports it picks, with its data in `dir`.
pub fn single_node(dir: &std::path::Path) -> Node {
    Node::start(&serve_args(dir))
}

/// The arguments of [`single_node`]; more may follow.
pub fn serve_args(dir: &std::path::Path) -> Vec<&str> {
    let dir = dir.to_str().expect("a UTF-8 temporary path");
    vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        dir,
    ]
}

/// The ports in `vecraft: serving PostgreSQL on ADDR, metrics on http://ADDR/metrics`.
fn serving_ports(line: &str) -> Option<(u16, u16)> {
    let rest = line.strip_prefix("vecraft: serving PostgreSQL on ")?;
    let (sql, rest) = rest.split_once(", metrics on http://")?;
    let http = rest.strip_suffix("/metrics")?;
    let port = |addr: &str| addr.rsplit_once(':')?.1.parse().ok();
    Some((port(sql)?, port(http)?))
}

/// Connects once the server accepts, with a deadline.
pub async fn connect(port: u16) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    let dsn = format!("host=127.0.0.1 port={port} user=postgres");
    loop {
        match tokio_postgres::connect(&dsn, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                return client;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await; // pace the retries
            }
            Err(e) => panic!("vecraft did not accept connections: {e}"),
        }
    }
}

/// `GET path` on `port`: the status code and the body.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_with(port, path, "").await
}

/// [`http_get`] with `headers` (each line ending in CRLF) in the request.
pub async fn http_get_with(port: u16, path: &str, headers: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the HTTP port accepts");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The value of the sample `name` (with its labels, as exposed) in a `/metrics` body.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `sample`, with 0 for a sample not exposed yet.
pub fn metric(metrics: &str, name: &str) -> f64 {
    sample(metrics, name).unwrap_or(0.0)
}

/// The node's `/metrics` once `ready` holds of them, polled with a 60 s deadline; the
/// failure names `what` was waited for and shows the last metrics.
pub async fn metrics_when(http_port: u16, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = http_get(http_port, "/metrics").await;
        if ready(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "{what}:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await; // pace the polls
    }
}
