//! Committing a transaction's writes atomically, across shards and collections, and
//! finishing what a dead gateway left half done.
//!
//! A transaction that touches one shard is one Raft entry there (`Command::Atomic`). One
//! that touches several is committed in two phases over the shards' own Raft groups:
//!
//! 1. **Prepare**, first on the coordinator (the first shard it touches), then on the others
//!    at once: each shard checks its part, keeps it durably and locks its keys.
//! 2. **Decide** on the coordinator: `Resolve { commit: true }` there is the commit point. Its
//!    group records the first resolution of a transaction and answers every later one with
//!    it, so the decision is made once even when several parties race to make it.
//! 3. **Resolve** the others, which then show the writes.
//!
//! A failure before the decision aborts (the coordinator first, so its record says so). A
//! gateway that dies between the steps leaves prepared parts: every gateway runs
//! [`resolve_pending`], which asks the coordinator of each transaction prepared longer than
//! [`PENDING_TIMEOUT`] to abort it (answered with the decision if one was made) and applies
//! the answer. A COMMIT whose decision the gateway could not learn answers 08007, never a
//! success it cannot vouch for.
//!
//! Between the decision and the last shard's resolution, a reader may see one shard's part
//! and not yet another's (read committed, without a global snapshot).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vecraft_storage::command::Command;
use vecraft_storage::error::Refusal;
use vecraft_storage::shard::{Applied, parse_txn_hex};
use vecraft_storage::txn::{Coordinator, TxnId, TxnWrite};
use vecraft_storage::{Error, Result};

use crate::collection::Collection;
use crate::metrics::WRITES;
use crate::shard_handle::ShardHandle;

/// How long a transaction may stay prepared before the shards ask its coordinator to abort
/// it: far above a commit's own round trips, well below what a client waits for.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a transaction whose coordinator no catalog knows stays prepared before it is
/// aborted (its coordinator's collection was dropped).
const ORPHAN_AFTER: Duration = Duration::from_secs(60);

/// One shard's part of a transaction.
struct ShardPart {
    at: Coordinator,
    shard: Arc<dyn ShardHandle>,
    write: TxnWrite,
}

/// Commits each collection's write (`(catalog name, collection, write)`): all of them, or
/// none.
pub fn commit(writes: Vec<(String, Arc<Collection>, TxnWrite)>) -> Result<()> {
    let mut parts = Vec::new();
    for (name, collection, write) in writes {
        let split = collection.split_txn(&write)?;
        for (i, (write, shard)) in split.into_iter().zip(collection.shards()).enumerate() {
            let Some(write) = write else { continue };
            let at = Coordinator {
                collection: name.clone(),
                shard: i as u32,
            };
            let shard = Arc::clone(shard);
            parts.push(ShardPart { at, shard, write });
        }
    }
    let started = Instant::now();
    match parts.as_slice() {
        [] => return Ok(()),
        [only] => {
            let command = Command::Atomic(only.write.clone());
            only.shard.check(&command)?;
            only.shard.propose(&command)?;
        }
        _ => two_phases(&parts, rand::random())?,
    }
    for part in parts {
        WRITES.written(&Command::Atomic(part.write), started.elapsed());
    }
    Ok(())
}

fn two_phases(parts: &[ShardPart], txn: TxnId) -> Result<()> {
    let prepare = |part: &ShardPart| Command::Prepare {
        txn,
        coordinator: parts[0].at.clone(),
        decides: part.at == parts[0].at,
        write: part.write.clone(),
    };
    // A bad row refuses the whole commit before anything is logged.
    for part in parts {
        part.shard.check(&prepare(part))?;
    }
    let (coordinator, others) = parts.split_first().expect("two parts or more");
    match coordinator.shard.propose(&prepare(coordinator)) {
        Ok(_) => {}
        // Refused: nothing was prepared elsewhere. The abort is recorded all the same, so a
        // replica that replays its log into another answer aborts too.
        Err(e) if Refusal::of(&e).is_some() => {
            abort(&parts[..1], txn);
            return Err(e);
        }
        Err(e) => {
            abort(parts, txn); // it may have been logged before the failure
            return Err(e);
        }
    }
    let prepared = on_each(others, |part| part.shard.propose(&prepare(part)));
    if let Some(e) = prepared.into_iter().find_map(Result::err) {
        abort(parts, txn);
        return Err(e);
    }
    let decision = coordinator
        .shard
        .propose(&Command::Resolve { txn, commit: true });
    match decision {
        Ok(Applied {
            committed: Some(true),
            ..
        }) => {}
        Ok(_) => {
            abort(others, txn);
            return Err(Error::Conflict(
                "The transaction stayed prepared too long and was aborted; retry it.".into(),
            ));
        }
        Err(e) => return Err(Error::OutcomeUnknown(e.to_string())),
    }
    // Decided: a part that fails to hear it now is resolved by `resolve_pending` (and the
    // coordinator then keeps its decision for good, a few bytes).
    let resolved = on_each(others, |part| {
        part.shard.propose(&Command::Resolve { txn, commit: true })
    });
    if resolved.iter().all(Result::is_ok) {
        let _ = coordinator.shard.propose(&Command::Forget { txn });
    }
    Ok(())
}

/// Aborts `txn` on `parts` (the coordinator first, when it is among them); failures are left
/// to `resolve_pending`.
fn abort(parts: &[ShardPart], txn: TxnId) {
    let resolve = Command::Resolve { txn, commit: false };
    if let Some((first, rest)) = parts.split_first() {
        let _ = first.shard.propose(&resolve);
        on_each(rest, |part| part.shard.propose(&resolve));
    }
}

/// Runs `call` for every part at once (each call waits on its shard's group).
fn on_each<T: Send>(
    parts: &[ShardPart],
    call: impl Fn(&ShardPart) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    match parts {
        [only] => vec![call(only)],
        _ => std::thread::scope(|scope| {
            let calls: Vec<_> = parts
                .iter()
                .map(|part| scope.spawn(|| call(part)))
                .collect();
            calls
                .into_iter()
                .map(|c| c.join().unwrap_or_else(|_| Err(Error::Closed)))
                .collect()
        }),
    }
}

/// Finishes the transactions prepared on `collections`' shards longer than `older_than`:
/// each coordinator is asked to abort (it answers with its decision, if it made one), and
/// the answer is applied. Returns how many were resolved. Shards or coordinators that do not
/// answer are tried again on the next call.
pub fn resolve_pending(
    collections: &BTreeMap<String, Arc<Collection>>,
    older_than: Duration,
) -> usize {
    let mut resolved = 0;
    for collection in collections.values() {
        for shard in collection.shards() {
            let Ok(status) = shard.status() else { continue };
            let old = status
                .pending
                .iter()
                .filter(|p| u128::from(p.age_ms) >= older_than.as_millis());
            for pending in old {
                let Some(txn) = parse_txn_hex(&pending.txn) else {
                    continue;
                };
                let at = &pending.coordinator;
                let coordinator = collections
                    .get(&at.collection)
                    .and_then(|c| c.shards().get(at.shard as usize));
                let commit = match coordinator {
                    // Not in this gateway's catalog yet, or dropped: a dropped coordinator's
                    // part is aborted once no catalog can still be catching up.
                    None if pending.age_ms < ORPHAN_AFTER.as_millis() as u64 => continue,
                    None => false,
                    Some(c) => match c.propose(&Command::Resolve { txn, commit: false }) {
                        Ok(applied) => applied.committed == Some(true),
                        Err(_) => continue,
                    },
                };
                if shard.propose(&Command::Resolve { txn, commit }).is_ok() {
                    resolved += 1;
                }
            }
        }
    }
    resolved
}
