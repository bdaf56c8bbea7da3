//! Automatic checkpoints: once a member has applied commands of `limit_bytes` since its last
//! snapshot, it takes one (the shard seals and persists) and openraft purges the log the
//! snapshot covers (`max_in_snapshot_log_to_keep` is 0; a leader keeps what a follower's
//! replication still reads). So every member's log stays bounded without anyone running
//! CHECKPOINT — the shard groups' and the meta group's (a whole document per DDL) alike. The
//! growing segment seals at whatever size it has then, so the limit is kept well above what a
//! seal threshold of rows takes in the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::Raft;

use super::{SNAPSHOT_RETRIGGER, TypeConfig};

/// Watches `raft`'s member while it runs: `applied_bytes` counts what it applied since its
/// last snapshot began (the state machine zeroes it then).
pub(super) fn watch(raft: Raft<TypeConfig>, applied_bytes: Arc<AtomicU64>, limit_bytes: u64) {
    if limit_bytes == 0 {
        return;
    }
    let over = move || applied_bytes.load(Ordering::Relaxed) >= limit_bytes;
    super::spawn(async move {
        let mut metrics = raft.metrics();
        // Every applied entry changes the metrics; a stopped group drops them.
        while metrics.changed().await.is_ok() {
            if !over() {
                continue;
            }
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            // A trigger while a snapshot is being built is dropped: look again once one began
            // (it zeroes the count), or after a while.
            let _ = raft
                .wait(Some(SNAPSHOT_RETRIGGER))
                .metrics(|_| !over(), "a snapshot to begin")
                .await;
        }
    });
}
