//! The progress of a backup or restore that `vecraft backup`/`restore` started, read from the
//! node's `vecraft_backup_progress` view over a second connection while the statement runs: a
//! bar on a terminal (bytes, shards, rate, time left; a restore knows its size, a backup only
//! its shards), and otherwise a line each time a shard is done.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::connect::Connection;

/// How often the view is read: a display's pace, not a synchronisation.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A watch running beside the statement.
pub struct Watch {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Watch {
    /// Stops watching (the statement answered) and clears the bar.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Watches the `operation` (`backup` or `restore`) on `url` that the node at `connection`
/// runs. A watch that cannot connect shows nothing: the statement's answer still comes.
pub fn watch(connection: &Connection, operation: &'static str, url: &str) -> Watch {
    let (stop, mut stopped) = oneshot::channel();
    let (connection, url) = (connection.clone(), url.to_string());
    let task = tokio::spawn(async move {
        let Ok(client) = connection.connect().await else {
            return;
        };
        let mut shown = Shown::new(operation);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            if let Some(now) = read(&client, operation, &url).await {
                shown.update(&now);
            }
        }
        shown.clear();
    });
    Watch { stop, task }
}

/// One row of `vecraft_backup_progress`.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    total_bytes: Option<u64>,
    done_bytes: u64,
    total_shards: u64,
    done_shards: u64,
}

async fn read(client: &Client, operation: &str, url: &str) -> Option<Row> {
    let sql = "SELECT total_bytes, done_bytes, total_shards, done_shards \
               FROM vecraft_backup_progress WHERE operation = $1 AND url = $2 LIMIT 1";
    let row = client.query_opt(sql, &[&operation, &url]).await.ok()??;
    let count = |i: usize| row.get::<_, Option<i64>>(i).map(|n| n.max(0) as u64);
    Some(Row {
        total_bytes: count(0),
        done_bytes: count(1).unwrap_or(0),
        total_shards: count(2).unwrap_or(0),
        done_shards: count(3).unwrap_or(0),
    })
}

/// What was shown so far: a bar on a terminal, or the last line printed.
struct Shown {
    operation: &'static str,
    bar: Option<ProgressBar>,
    started: std::time::Instant,
    last_shards: u64,
}

impl Shown {
    fn new(operation: &'static str) -> Shown {
        Shown {
            operation,
            bar: None,
            started: std::time::Instant::now(),
            last_shards: 0,
        }
    }

    fn update(&mut self, now: &Row) {
        if !std::io::stderr().is_terminal() {
            if now.done_shards > self.last_shards {
                self.last_shards = now.done_shards;
                eprintln!("{}", self.line(now));
            }
            return;
        }
        let bar = self.bar.get_or_insert_with(|| new_bar(now));
        bar.set_message(format!(
            "{}: shard {}/{}, {:.1} MB",
            self.operation,
            now.done_shards,
            now.total_shards,
            now.done_bytes as f64 / 1e6
        ));
        match now.total_bytes {
            Some(_) => bar.set_position(now.done_bytes),
            None => bar.set_position(now.done_shards),
        }
    }

    /// A log line: shards, bytes and rate so far.
    fn line(&self, now: &Row) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let size = match now.total_bytes {
            Some(total) => format!(
                "{:.1}/{:.1} MB",
                now.done_bytes as f64 / 1e6,
                total as f64 / 1e6
            ),
            None => format!("{:.1} MB", now.done_bytes as f64 / 1e6),
        };
        format!(
            "{}: shard {}/{} done, {size}, {:.1} MB/s",
            self.operation,
            now.done_shards,
            now.total_shards,
            now.done_bytes as f64 / 1e6 / seconds
        )
    }

    fn clear(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A bar over the bytes when the size is known (a restore), else over the shards (a backup).
fn new_bar(now: &Row) -> ProgressBar {
    let (len, template) = match now.total_bytes {
        Some(total) => (
            total,
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        ),
        None => (
            now.total_shards,
            "{msg} [{bar:30}] {pos}/{len} shards ({elapsed})",
        ),
    };
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}
