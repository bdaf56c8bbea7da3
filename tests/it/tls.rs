//! TLS on the SQL port, on Vecraft and on PostgreSQL 18 (a build with OpenSSL) holding the
//! same certificate, made by `vecraft cert`, under the same rules: only clients that use TLS
//! get in (PostgreSQL: `hostssl` lines only; Vecraft: `[tls] require = true`, and on a
//! second node the same `hostssl` lines as `[[access]]` entries). tokio-postgres
//! (over rustls, which always checks the chain and the name) here, then the real clients of
//! `compat/tls/` (psycopg, asyncpg, psql 18, the JDBC driver) against each; last, Vecraft
//! re-reads its certificate on SIGHUP.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use vecraft_sqllogictest::oracle::Oracle;

use crate::support::{Node, select_one, serve_args};

/// The rules, in pg_hba.conf's words: TLS or nothing.
const HBA: &str = "\
hostssl  all  compat_tls_mallory  127.0.0.1/32  reject
hostssl  all  postgres  127.0.0.1/32  trust
hostssl  all  all       127.0.0.1/32  scram-sha-256
";

/// The same for Vecraft: `require` turns the `host` lines into `hostssl` ones.
const CONFIG: &str = r#"
[tls]
require = true

[[access]]
type = "host"
user = "compat_tls_mallory"
address = "127.0.0.1/32"
method = "reject"

[[access]]
type = "host"
user = "postgres"
address = "127.0.0.1/32"
method = "trust"

[[access]]
type = "host"
user = "all"
address = "127.0.0.1/32"
method = "scram-sha-256"
"#;

/// The pg_hba.conf lines themselves, as `[[access]]` entries: `hostssl` matches TLS clients
/// only, so a plain one finds no rule.
const HOSTSSL_CONFIG: &str = r#"
[[access]]
type = "hostssl"
user = "compat_tls_mallory"
address = "127.0.0.1/32"
method = "reject"

[[access]]
type = "hostssl"
user = "postgres"
address = "127.0.0.1/32"
method = "trust"

[[access]]
type = "hostssl"
user = "all"
address = "127.0.0.1/32"
method = "scram-sha-256"
"#;

/// Makes `dir/ca.crt` (once) and `dir/server.crt` and `.key` with `vecraft cert`.
pub(crate) fn make_certificates(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_vecraft"))
        .args(["cert", "--dir", dir.to_str().unwrap(), "--name", "server"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client that trusts the CA at `ca` only.
pub(crate) fn trusting(ca: &Path) -> MakeRustlsConnect {
    MakeRustlsConnect::new(client_config(ca))
}

/// rustls settings for a client that trusts the CA at `ca` only.
fn client_config(ca: &Path) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// What clients that break the protocol's TLS rules get: the connection ends, without a
/// login. Bytes sent after an SSLRequest before the handshake (they would pass as if they
/// were encrypted) are not read as a startup; a direct TLS handshake without the
/// `postgresql` ALPN protocol ends once the handshake is done.
async fn tls_rule_breakers_are_dropped(port: u16, ca: &Path) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ssl_request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let startup = b"\0\0\0\x29\0\x03\0\0user\0postgres\0database\0postgres\0\0";
    socket
        .write_all(&[&ssl_request[..], &startup[..]].concat())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection ends");
    assert_eq!(answer.first(), Some(&b'S'));
    assert!(!answer.contains(&b'Z'), "no login: {answer:?}");

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca)));
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    if let Ok(mut tls) = connector.connect(name, tcp).await {
        tls.write_all(startup).await.unwrap();
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection ends");
        assert!(answer.is_empty(), "nothing is answered: {answer:?}");
    }
}

/// `SELECT 1` as `user` over TLS, trusting `ca`: `Ok(())`, or the SQLSTATE and message (or
/// `none` and the client's own error).
async fn over_tls(
    port: u16,
    ca: &Path,
    user: &str,
    password: &str,
) -> Result<(), (String, String)> {
    over_tls_with(&port.to_string(), ca, user, password).await
}

/// [`over_tls`], `port` followed by more settings.
async fn over_tls_with(
    port: &str,
    ca: &Path,
    user: &str,
    password: &str,
) -> Result<(), (String, String)> {
    let dsn = format!(
        "host=127.0.0.1 port={port} user={user} password='{password}' dbname=postgres \
         sslmode=require connect_timeout=30"
    );
    select_one(&dsn, trusting(ca)).await
}

/// What tokio-postgres gets from the server on `port` that holds the certificate of `ca`.
async fn tokio_postgres_over_tls(port: u16, ca: &Path, stranger: &Path) {
    assert_eq!(over_tls(port, ca, "postgres", "").await, Ok(()));
    let plain = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable");
    let no_entry = "no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", \
                    database \"postgres\", no encryption";
    let refusal = select_one(&plain, NoTls).await;
    assert_eq!(refusal, Err(("28000".into(), no_entry.into())));
    // A client that trusts another CA stops at the handshake: the chain is checked.
    let (code, why) = over_tls(port, stranger, "postgres", "").await.unwrap_err();
    assert_eq!(code, "none");
    assert!(why.contains("InvalidCertificate(UnknownIssuer)"), "{why}");
    let superuser =
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require");
    let (admin, connection) = tokio_postgres::connect(&superuser, trusting(ca))
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute("DROP ROLE IF EXISTS tls_alice; CREATE USER tls_alice PASSWORD 'right'")
        .await
        .unwrap();
    assert_eq!(over_tls(port, ca, "tls_alice", "right").await, Ok(()));
    // SCRAM-SHA-256-PLUS: bound to the server's certificate (tokio-postgres-rustls hands
    // tokio-postgres the tls-server-end-point hash).
    let bound = format!("{port} channel_binding=require");
    assert_eq!(
        over_tls_with(&bound, ca, "tls_alice", "right").await,
        Ok(())
    );
    let wrong = over_tls(port, ca, "tls_alice", "wrong").await.unwrap_err();
    let message = "password authentication failed for user \"tls_alice\"";
    assert_eq!(wrong, ("28P01".into(), message.into()));
}

/// The DSN the compat suite gets: the superuser, verify-full against `ca`.
fn verified_dsn(port: u16, ca: &Path) -> String {
    format!(
        "postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.display()
    )
}

#[test]
fn tls_clients_get_in_and_plain_ones_are_refused_as_postgresql_does() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certificates(&certs);
    let stranger = dir.path().join("stranger");
    make_certificates(&stranger);
    let (ca, cert, key) = (
        certs.join("ca.crt"),
        certs.join("server.crt"),
        certs.join("server.key"),
    );

    let oracle = Oracle::start_with_tls(HBA, &cert, &key).expect("PostgreSQL 18 with TLS starts");
    let node = vecraft_with(dir.path(), "required", CONFIG, &cert, &key);
    let hostssl = vecraft_with(dir.path(), "hostssl", HOSTSSL_CONFIG, &cert, &key);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    for port in [oracle.port(), node.sql_port, hostssl.sql_port] {
        runtime.block_on(tokio_postgres_over_tls(port, &ca, &stranger.join("ca.crt")));
        runtime.block_on(tls_rule_breakers_are_dropped(port, &ca));
    }
    for (port, engine) in [(oracle.port(), "postgres"), (node.sql_port, "vecraft")] {
        crate::clients::suite(".venv", "tls", &verified_dsn(port, &ca), engine);
    }

    the_command_line_tools_speak_tls(&node, dir.path(), &ca, &stranger.join("ca.crt"));
    reloads_its_certificate_on_sighup(&node, &certs, &stranger, &runtime);
}

/// `vecraft backups` (as `backup` and `restore`, which connect the same way) reaches a node
/// that takes TLS clients only: checking its certificate against `--sslrootcert`, or
/// encrypting without checking when none is given (libpq's `prefer`); a wrong CA and
/// `sslmode=disable` get no further than the handshake and the rules.
fn the_command_line_tools_speak_tls(node: &Node, dir: &Path, ca: &Path, stranger: &Path) {
    let store = dir.join("backups");
    std::fs::create_dir_all(&store).unwrap();
    let url = format!("file://{}", store.display());
    let backups = |dsn: &str, root: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vecraft"));
        command
            .args(["backups", &url, "--dsn", dsn])
            .env_remove("PGSSLROOTCERT");
        if let Some(root) = root {
            command.arg("--sslrootcert").arg(root);
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let dsn = format!("host=127.0.0.1 port={} user=postgres", node.sql_port);
    for root in [Some(ca), None] {
        let (code, said) = backups(&dsn, root);
        assert_eq!(code, Some(0), "{root:?}: {said}");
    }
    let (code, said) = backups(&dsn, Some(stranger));
    assert_eq!(code, Some(1));
    assert!(said.contains("cannot connect"), "{said}");
    let (code, said) = backups(&format!("{dsn} sslmode=disable"), None);
    assert_eq!(code, Some(1));
    assert!(said.contains("no pg_hba.conf entry"), "{said}");
}

/// A node of its own under `dir/name`, with the config file `config` and the certificate
/// `cert` and its `key` given as flags.
fn vecraft_with(dir: &Path, name: &str, config: &str, cert: &Path, key: &Path) -> Node {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vecraft.toml");
    std::fs::write(&file, config).unwrap();
    let data = dir.join("data");
    let mut args = serve_args(&data);
    args.extend(["--config", file.to_str().unwrap()]);
    args.extend(["--tls-cert", cert.to_str().unwrap()]);
    args.extend(["--tls-key", key.to_str().unwrap()]);
    Node::start(&args)
}

/// The node's files are replaced by a certificate of another CA and the node is sent SIGHUP:
/// new connections then get the new one (clients trusting only the old CA are refused), and
/// a broken file keeps the one in use.
fn reloads_its_certificate_on_sighup(
    node: &Node,
    certs: &Path,
    other: &Path,
    runtime: &tokio::runtime::Runtime,
) {
    let (old_ca, new_ca) = (certs.join("ca.crt"), other.join("ca.crt"));
    let port = node.sql_port;
    for file in ["server.crt", "server.key"] {
        std::fs::copy(other.join(file), certs.join(file)).unwrap();
    }
    node.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while runtime
        .block_on(over_tls(port, &new_ca, "postgres", ""))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        std::thread::sleep(Duration::from_millis(50)); // paces the retries
    }
    assert!(
        runtime
            .block_on(over_tls(port, &old_ca, "postgres", ""))
            .is_err()
    );

    // A key file that does not load: the node says so and keeps serving what it had.
    std::fs::write(certs.join("server.key"), "not a key").unwrap();
    node.signal(libc::SIGHUP);
    let said = node.wait_for_log("the TLS configuration in use stays");
    assert!(said.contains("server.key"), "{said}");
    assert_eq!(
        runtime.block_on(over_tls(port, &new_ca, "postgres", "")),
        Ok(())
    );
}
