//! The log store and state machine pass openraft's own storage suite; a log written before
//! shards had Raft groups is refused by name.

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use vecraft_storage::log::{Log, LogOptions};
use vecraft_storage::shard::Shard;

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::{NodeId, TypeConfig};
use crate::tests::{opts, schema};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(&dir.path().join("log"), LogOptions::default()).unwrap();
        let log = Arc::new(log);
        let shard = Shard::open(&dir.path().join("shard"), Some(schema()), opts()).unwrap();
        let (release, _) = std::sync::mpsc::sync_channel(0);
        let state_machine = StateMachine::open(Arc::clone(&log), Arc::new(shard), release.clone())?;
        Ok((dir, LogStore::new(log, release), state_machine))
    }
}

type S = Suite<TypeConfig, LogStore, StateMachine, Builder, tempfile::TempDir>;

/// Runs the suite's tests one by one, each on a fresh log and shard.
macro_rules! suite {
    ($($test:ident),* $(,)?) => {{
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        $(
            runtime.block_on(async {
                let (_dir, log_store, state_machine) = Builder.build().await?;
                S::$test(log_store, state_machine).await
            })
            .unwrap_or_else(|e| panic!("openraft suite, {}: {e}", stringify!($test)));
        )*
    }};
}

/// openraft's storage suite (`Suite::test_store`), less one test:
/// `get_initial_state_membership_from_log_and_sm` appends entry 1 after the log was purged
/// up to 2, which Raft never does and the storage log refuses.
#[test]
fn log_store_and_state_machine_pass_openraft_suite() {
    suite!(
        last_membership_in_log_initial,
        last_membership_in_log,
        last_membership_in_log_multi_step,
        get_membership_initial,
        get_membership_from_log_and_empty_sm,
        get_membership_from_empty_log_and_sm,
        get_membership_from_log_le_sm_last_applied,
        get_membership_from_log_gt_sm_last_applied_1,
        get_membership_from_log_gt_sm_last_applied_2,
        get_initial_state_without_init,
        get_initial_state_with_state,
        get_initial_state_last_log_gt_sm,
        get_initial_state_last_log_lt_sm,
        get_initial_state_log_ids,
        get_initial_state_re_apply_committed,
        save_vote,
        get_log_entries,
        limited_get_log_entries,
        try_get_log_entry,
        initial_logs,
        get_log_state,
        get_log_id,
        last_id_in_log,
        last_applied_state,
        purge_logs_upto_0,
        purge_logs_upto_5,
        purge_logs_upto_20,
        delete_logs_since_11,
        delete_logs_since_0,
        append_to_log,
        snapshot_meta,
        apply_single,
        apply_multiple,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(S::transfer_snapshot(&Builder)).unwrap();
}

#[test]
fn a_log_from_before_raft_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = Log::open(&dir.path().join("log"), LogOptions::default()).unwrap();
        // A bare command record, as the log held before the Raft group (tag 3: truncate).
        log.append(vec![(1, vec![3])]).unwrap();
    }
    let err = crate::local::LocalShard::open(dir.path(), Some(schema()), opts())
        .expect_err("an old log is not replayed as Raft entries");
    assert!(err.to_string().contains("older Vecraft"), "{err}");
}

/// A crash after a new leader recorded its vote but before it wrote an entry of its term
/// leaves a log whose entries are all of earlier terms; on restart the group must still
/// commit and apply them (it writes a no-op of its own term).
#[test]
fn a_leader_that_crashed_before_writing_in_its_term_still_starts() {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};

    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = Log::open(&dir.path().join("log"), LogOptions::default()).unwrap();
        let first = Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(0, 0), 0),
            payload: EntryPayload::Membership(Membership::new(vec![[super::NODE_ID].into()], None)),
        };
        log.append(vec![(0, super::entry::encode(&first))]).unwrap();
        let vote = Vote::new_committed(1, super::NODE_ID);
        log.put_meta(
            super::log_store::VOTE_META,
            &serde_json::to_vec(&vote).unwrap(),
        )
        .unwrap();
    }
    let path = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let opened = crate::local::LocalShard::open(&path, Some(schema()), opts());
        let _ = tx.send(opened.map(|c| c.shard().applied_index()));
    });
    let applied = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the group starts within 30 s")
        .unwrap();
    assert!(
        applied >= 1,
        "the no-op of the new term is applied: {applied}"
    );
}

/// A dropped collection releases its directory at once: open, write, drop, repeat.
#[test]
fn a_dropped_collection_can_be_opened_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for id in 0..10 {
        let c = crate::local::LocalShard::open(dir.path(), Some(schema()), opts()).unwrap();
        assert_eq!(c.shard().count(), id as u64, "every earlier write is there");
        c.write(&crate::tests::row(id)).unwrap();
    }
}
