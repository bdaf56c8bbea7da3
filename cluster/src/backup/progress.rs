//! How far each running backup and restore on this node has got: what the SQL view
//! `vecraft_backup_progress` shows (as PostgreSQL's `pg_stat_progress_*` views show long
//! commands), and what `vecraft backup`/`restore` poll to draw their progress bars.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The operations running now, in the order they started.
static RUNNING: Mutex<Vec<Weak<Counters>>> = Mutex::new(Vec::new());

/// One running operation; it leaves the list when dropped.
pub struct Progress(Arc<Counters>);

struct Counters {
    operation: &'static str,
    url: String,
    target: String,
    started: Instant,
    /// Known for a restore (its manifest says); a backup's is not known until it is done.
    total_bytes: Option<u64>,
    done_bytes: AtomicU64,
    total_shards: u64,
    done_shards: AtomicU64,
}

/// What an operation had done when asked.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressRow {
    /// `backup` or `restore`.
    pub operation: &'static str,
    pub url: String,
    /// The collections backed up, or the collection restored.
    pub target: String,
    pub elapsed: Duration,
    pub total_bytes: Option<u64>,
    pub done_bytes: u64,
    pub total_shards: u64,
    pub done_shards: u64,
}

impl Progress {
    /// Registers an operation over `total_shards` shards (and `total_bytes`, if known).
    pub fn start(
        operation: &'static str,
        url: &str,
        target: &str,
        total_shards: usize,
        total_bytes: Option<u64>,
    ) -> Progress {
        let counters = Arc::new(Counters {
            operation,
            url: url.to_string(),
            target: target.to_string(),
            started: Instant::now(),
            total_bytes,
            done_bytes: AtomicU64::new(0),
            total_shards: total_shards as u64,
            done_shards: AtomicU64::new(0),
        });
        let mut running = RUNNING.lock();
        running.retain(|c| c.strong_count() > 0);
        running.push(Arc::downgrade(&counters));
        Progress(counters)
    }

    pub fn add_bytes(&self, bytes: u64) {
        self.0.done_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn shard_done(&self) {
        let done = self.0.done_shards.fetch_add(1, Ordering::Relaxed) + 1;
        debug_assert!(done <= self.0.total_shards, "no more shards than counted");
    }

    /// The operations running now, oldest first.
    pub fn running() -> Vec<ProgressRow> {
        let running: Vec<Arc<Counters>> = RUNNING.lock().iter().filter_map(Weak::upgrade).collect();
        running.iter().map(|c| c.row()).collect()
    }
}

impl Counters {
    fn row(&self) -> ProgressRow {
        ProgressRow {
            operation: self.operation,
            url: self.url.clone(),
            target: self.target.clone(),
            elapsed: self.started.elapsed(),
            total_bytes: self.total_bytes,
            done_bytes: self.done_bytes.load(Ordering::Relaxed),
            total_shards: self.total_shards,
            done_shards: self.done_shards.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let me = Arc::as_ptr(&self.0);
        RUNNING
            .lock()
            .retain(|c| c.strong_count() > 0 && c.as_ptr() != me);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_is_listed_while_it_runs() {
        let mine = |rows: Vec<ProgressRow>| rows.into_iter().filter(|r| r.url == "file:///p");
        let progress = Progress::start("restore", "file:///p", "docs", 2, Some(100));
        progress.add_bytes(40);
        progress.shard_done();
        let rows: Vec<ProgressRow> = mine(Progress::running()).collect();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(
            (row.operation, row.total_bytes, row.done_bytes),
            ("restore", Some(100), 40)
        );
        assert_eq!((row.total_shards, row.done_shards), (2, 1));
        drop(progress);
        assert_eq!(mine(Progress::running()).count(), 0);
    }
}
