//! `vecraft backup`, `vecraft restore` and `vecraft backups`: the backup statements from the
//! command line. Each connects to a running node as any PostgreSQL client does, sends the
//! statement (`BACKUP … TO`, `RESTORE … FROM`, `SHOW BACKUPS IN`), and prints what it
//! answered, with the time and rate. While a backup or restore runs, a second connection reads
//! its progress from `vecraft_backup_progress`: a bar on a terminal (bytes, shards, rate,
//! time left), a line per shard done otherwise (`backup_progress.rs`).

use std::time::Instant;

use clap::Args;
use tokio_postgres::SimpleQueryMessage;

use crate::backup_progress as progress;
use crate::connect::Connection;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where the backup goes: file:///abs/dir or s3://bucket/prefix
    #[arg(value_name = "URL")]
    url: String,
    /// A collection to back up (repeatable; SQL names, quoted as in SQL); every one if none
    #[arg(long, value_name = "NAME")]
    collection: Vec<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The collection to restore, as it was named when backed up
    #[arg(value_name = "NAME")]
    collection: String,
    /// Where the backups are: file:///abs/dir or s3://bucket/prefix
    #[arg(value_name = "URL")]
    url: String,
    /// Restore under this name instead
    #[arg(long = "as", value_name = "NAME")]
    new_name: Option<String>,
    /// The backup to restore from [default: the latest that holds the collection]
    #[arg(long, value_name = "ID")]
    backup: Option<String>,
    /// Shards of the restored collection [default: as many as the backup's]
    #[arg(long, value_name = "N")]
    shards: Option<u32>,
    /// Replicas of each shard [default: the node's]
    #[arg(long, value_name = "N")]
    replicas: Option<u32>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Where the backups are: file:///abs/dir or s3://bucket/prefix
    #[arg(value_name = "URL")]
    url: String,
    #[command(flatten)]
    connection: Connection,
}

/// `'text'` as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub async fn backup(args: BackupArgs) -> Result<(), String> {
    let what = match args.collection.as_slice() {
        [] => "ALL".to_string(),
        names => format!("COLLECTION {}", names.join(", ")),
    };
    let sql = format!("BACKUP {what} TO {}", literal(&args.url));
    println!("backup {what} to {}", args.url);
    let watch = progress::watch(&args.connection, "backup", &args.url);
    let rows = run(&args.connection, &sql).await;
    watch.finish().await;
    let rows = rows?;
    report(&rows, "bytes")
}

pub async fn restore(args: RestoreArgs) -> Result<(), String> {
    let mut sql = format!("RESTORE {} FROM {}", args.collection, literal(&args.url));
    if let Some(name) = &args.new_name {
        sql.push_str(&format!(" AS {name}"));
    }
    let mut options = Vec::new();
    if let Some(id) = &args.backup {
        options.push(format!("backup = {}", literal(id)));
    }
    if let Some(n) = args.shards {
        options.push(format!("shards = {n}"));
    }
    if let Some(n) = args.replicas {
        options.push(format!("replicas = {n}"));
    }
    if !options.is_empty() {
        sql.push_str(&format!(" WITH ({})", options.join(", ")));
    }
    println!("restore {} from {}", args.collection, args.url);
    let watch = progress::watch(&args.connection, "restore", &args.url);
    let rows = run(&args.connection, &sql).await;
    watch.finish().await;
    let rows = rows?;
    report(&rows, "bytes")
}

pub async fn list(args: ListArgs) -> Result<(), String> {
    let sql = format!("SHOW BACKUPS IN {}", literal(&args.url));
    let rows = run(&args.connection, &sql).await?;
    if rows.rows.is_empty() {
        println!("no backups in {}", args.url);
    }
    for row in &rows.rows {
        let fields: Vec<String> = rows
            .columns
            .iter()
            .zip(row)
            .map(|(c, v)| format!("{c}={v}"))
            .collect();
        println!("{}", fields.join(" "));
    }
    Ok(())
}

/// What a statement answered, and how long it took.
struct Answer {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    seconds: f64,
}

async fn run(connection: &Connection, sql: &str) -> Result<Answer, String> {
    let client = connection.connect().await?;
    let started = Instant::now();
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => e.to_string(),
        })?;
    let mut answer = Answer {
        columns: Vec::new(),
        rows: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    };
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            answer.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
            let values = (0..row.len()).map(|i| row.get(i).unwrap_or_default().to_string());
            answer.rows.push(values.collect());
        }
    }
    Ok(answer)
}

/// Prints the one row of a BACKUP or RESTORE, with its time and rate over `size_column`.
fn report(answer: &Answer, size_column: &str) -> Result<(), String> {
    let [row] = answer.rows.as_slice() else {
        return Err(format!("expected one row, got {}", answer.rows.len()));
    };
    for (column, value) in answer.columns.iter().zip(row) {
        println!("{column}: {value}");
    }
    let bytes = answer
        .columns
        .iter()
        .position(|c| c == size_column)
        .and_then(|i| row[i].parse::<f64>().ok())
        .unwrap_or(0.0);
    println!(
        "done in {:.1} s ({:.1} MB/s)",
        answer.seconds,
        bytes / 1e6 / answer.seconds.max(1e-9)
    );
    Ok(())
}
