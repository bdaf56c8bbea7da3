//! Scheduled backups: every `every`, the node in charge (a single node; in a cluster, the meta
//! group's leader, so one node takes each backup however many are configured) backs every
//! collection up to `url`, then keeps the newest `keep` backups there and deletes the rest with
//! the blobs only they named (`vecraft_cluster::backup::retain`). Each step is a line of the
//! node's log; the metrics count the outcomes and the time of the last success.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, register_int_counter_vec, register_int_gauge};
use tokio::time::{Instant, MissedTickBehavior};
use vecraft_cluster::backup::{BackupStore, backup, retain};

use crate::backups::report;
use crate::catalog::Catalog;

/// Where, how often, and how many to keep.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupSchedule {
    pub url: String,
    pub every: Duration,
    pub keep: usize,
}

struct ScheduleMetrics {
    /// Scheduled backups, by outcome (ok, failed).
    runs: IntCounterVec,
    last_success_seconds: IntGauge,
    /// Objects retention deleted, by kind (backup, blob).
    deleted: IntCounterVec,
}

static METRICS: LazyLock<ScheduleMetrics> = LazyLock::new(|| {
    let once = "metric registers once";
    ScheduleMetrics {
        runs: register_int_counter_vec!(
            "vecraft_scheduled_backups_total",
            "Scheduled backups, by outcome (ok, failed)",
            &["outcome"]
        )
        .expect(once),
        last_success_seconds: register_int_gauge!(
            "vecraft_scheduled_backup_last_success_seconds",
            "Unix time of the last scheduled backup that completed"
        )
        .expect(once),
        deleted: register_int_counter_vec!(
            "vecraft_backup_retention_deleted_total",
            "Objects retention deleted from backup stores, by kind (backup, blob)",
            &["kind"]
        )
        .expect(once),
    }
});

/// Runs `schedule` on this runtime for as long as it runs; `leads` says whether this node is
/// the one to take the backups now.
pub fn spawn(
    catalog: Arc<Catalog>,
    schedule: BackupSchedule,
    leads: impl Fn() -> bool + Send + Sync + 'static,
) {
    assert!(schedule.keep >= 1 && !schedule.every.is_zero());
    LazyLock::force(&METRICS);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(Instant::now() + schedule.every, schedule.every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !leads() {
                continue;
            }
            let (catalog, schedule) = (Arc::clone(&catalog), schedule.clone());
            let handle = tokio::runtime::Handle::current();
            let ran = tokio::task::spawn_blocking(move || {
                let _entered = handle.enter();
                run_once(&catalog, &schedule)
            })
            .await;
            let outcome = match ran {
                Ok(Ok(())) => "ok",
                Ok(Err(e)) => {
                    report(&format!("scheduled backup failed: {e}"));
                    "failed"
                }
                Err(e) => {
                    report(&format!("scheduled backup stopped: {e}"));
                    "failed"
                }
            };
            METRICS.runs.with_label_values(&[outcome]).inc();
        }
    });
}

/// One scheduled backup and the retention after it.
fn run_once(catalog: &Catalog, schedule: &BackupSchedule) -> vecraft_storage::Result<()> {
    let handle = tokio::runtime::Handle::current();
    let store = BackupStore::create(&schedule.url, &catalog.backup_store(), handle)?;
    let targets = catalog.all();
    if targets.is_empty() {
        report("scheduled backup: no collection to back up");
    } else {
        let manifest = backup(&store, &targets, &catalog.scratch_dir(), &report)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        METRICS
            .last_success_seconds
            .set(now.map_or(0, |d| d.as_secs() as i64));
        report(&format!(
            "scheduled backup {} to {}: {} rows",
            manifest.id,
            schedule.url,
            manifest.rows()
        ));
    }
    let retained = retain(&store, schedule.keep, &report)?;
    let deleted = &METRICS.deleted;
    deleted
        .with_label_values(&["backup"])
        .inc_by(retained.deleted.len() as u64);
    deleted
        .with_label_values(&["blob"])
        .inc_by(retained.deleted_blobs as u64);
    Ok(())
}
