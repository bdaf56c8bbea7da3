//! The write path's metrics: commands made durable, rows they carried, and how long a write
//! took from the caller's hand-off to its acknowledgement (log fsync and apply included).
//! Only acknowledged writes are counted.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntCounterVec};
use prometheus::{
    exponential_buckets, register_histogram, register_int_counter, register_int_counter_vec,
};
use vecraft_storage::command::Command;

pub(crate) struct WriteMetrics {
    commands: IntCounterVec,
    rows: IntCounter,
    duration_seconds: Histogram,
}

/// Registered once, in the default registry the exporter serves. Registration fails only on
/// a duplicate name, which would be a bug here.
pub(crate) static WRITES: LazyLock<WriteMetrics> = LazyLock::new(|| WriteMetrics {
    commands: register_int_counter_vec!(
        "vecraft_write_commands_total",
        "Commands made durable and applied, by kind",
        &["kind"]
    )
    .expect("metric registers once"),
    rows: register_int_counter!(
        "vecraft_write_rows_total",
        "Rows carried by durable inserts, upserts and deletes"
    )
    .expect("metric registers once"),
    duration_seconds: register_histogram!(
        "vecraft_write_duration_seconds",
        "Time from a write's hand-off to its acknowledgement (log fsync and apply)",
        exponential_buckets(0.000_05, 2.0, 18).expect("valid buckets")
    )
    .expect("metric registers once"),
});

impl WriteMetrics {
    /// Counts a write acknowledged after `took` (refused and failed writes are not counted).
    pub(crate) fn written(&self, command: &Command, took: Duration) {
        self.duration_seconds.observe(took.as_secs_f64());
        let (kind, rows) = match command {
            Command::Upsert(batch) => ("upsert", batch.num_rows()),
            Command::Insert(batch) => ("insert", batch.num_rows()),
            Command::InsertMissing(batch) => ("insert_missing", batch.num_rows()),
            Command::Delete(keys) => ("delete", keys.len()),
            Command::Truncate => ("truncate", 0),
            Command::SetIndex { .. } => ("set_index", 0),
            // A transaction's part on a shard, committed (at once or in two phases).
            Command::Atomic(write) | Command::Prepare { write, .. } => {
                ("transaction", write.rows())
            }
            Command::Resolve { .. } | Command::Forget { .. } => ("resolve", 0),
        };
        self.commands.with_label_values(&[kind]).inc();
        self.rows.inc_by(rows as u64);
    }
}
