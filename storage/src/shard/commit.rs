//! How a shard applies a transaction's write: at once (`Command::Atomic`), or prepared
//! (checked, kept, its keys locked) and later resolved (`Command::Prepare`, `Command::Resolve`).
//!
//! Every check is made under the state's write lock at the command's log index, so every
//! replica decides the same way. A write goes in whole at one index: the truncation, then the
//! deletions, then the rows.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::txns::{TxnEntry, locked_keys, txn_hex};
use super::{Applied, Shard, only_new_rows};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::segment::rows::{NormalizedRows, normalize};
use crate::txn::{Coordinator, TxnId, TxnWrite};

use super::state::State;

impl State {
    /// Refuses `write` (by transaction `txn`, `None` for one applied at once) when a
    /// prepared transaction holds its keys, or when a key it created is live.
    fn check_txn(&self, txn: Option<TxnId>, write: &TxnWrite, rows: &[Key]) -> Result<()> {
        let pk = &self.schema.primary_key().name;
        let keys = rows.iter().chain(&write.deletes);
        self.txns.check_free(txn, write.truncate, keys, pk)?;
        if write.truncate {
            return Ok(()); // every key is free once the shard is emptied
        }
        if let Some(key) = write.new_keys.iter().find(|k| self.keymap.contains_key(*k)) {
            return Err(Error::Conflict(format!(
                "Key ({pk})=({key}) was committed by another transaction first."
            )));
        }
        let changed = write.read_versions.iter().find(|(key, version)| {
            self.keymap.get(key).map(|&at| self.version_at(at)) != Some(*version)
        });
        match changed {
            Some((key, _)) => Err(Error::Conflict(format!(
                "Key ({pk})=({key}) was changed by another transaction first."
            ))),
            None => Ok(()),
        }
    }

    /// Applies `write` (its rows normalised as `rows`) at log `index`. A row whose key
    /// `write.if_missing` names goes in only if the key is free by then. A truncation leaves
    /// everything in a frozen segment, for the caller to seal (`Shard::persist_truncation`).
    fn write_txn(
        &mut self,
        index: u64,
        write: &TxnWrite,
        rows: Option<NormalizedRows>,
    ) -> Result<Applied> {
        let mut applied = Applied {
            fresh: true,
            ..Applied::default()
        };
        if write.truncate {
            applied.rows_deleted += self.clear();
        }
        applied.rows_deleted += self.delete_keys(&write.deletes);
        if let (Some(rows), Some(batch)) = (rows, &write.upserts) {
            let missing: HashSet<&Key> = write.if_missing.iter().collect();
            let keep: Vec<bool> = rows
                .keys
                .iter()
                .map(|k| !(missing.contains(k) && self.keymap.contains_key(k)))
                .collect();
            let rows = only_new_rows(&self.schema, batch, rows, &keep)?;
            applied.rows_written += self.append_rows(rows, index);
        }
        self.applied_index = index;
        if write.truncate {
            self.freeze(); // frozen at this index: sealed, the shard is durable here
        }
        Ok(applied)
    }
}

impl Shard {
    fn normalized(&self, write: &TxnWrite) -> Result<Option<NormalizedRows>> {
        let schema = self.schema();
        write
            .upserts
            .as_ref()
            .map(|batch| normalize(&schema, batch))
            .transpose()
    }

    /// Applies a transaction confined to this shard: all of it, or (refused) none of it.
    pub(super) fn apply_atomic(&self, index: u64, write: &TxnWrite) -> Result<Applied> {
        let rows = match self.normalized(write) {
            Ok(rows) => rows,
            Err(e) => return self.refuse(index, e),
        };
        // Emptying the shard drops segments, which sealing must not be writing meanwhile.
        let _maintenance = write.truncate.then(|| self.inner.maintenance.lock());
        let applied = {
            let mut state = self.inner.state.write();
            if index <= state.applied_index {
                return Ok(Applied::default());
            }
            let keys = rows.as_ref().map_or(&[][..], |r| &r.keys);
            if let Err(e) = state.check_txn(None, write, keys) {
                state.skip(index);
                return Err(e);
            }
            state.write_txn(index, write, rows)
        };
        let applied = match applied {
            Ok(applied) => applied,
            Err(e) => return self.refuse(index, e),
        };
        if write.truncate {
            self.persist_truncation()?;
        }
        self.inner.after_write();
        Ok(applied)
    }

    /// After a write that emptied the shard: its rows are sealed and the manifest says the
    /// shard is durable at this index, so no replay meets an empty shard missing the rows
    /// the log before it wrote. Caller holds `maintenance`.
    fn persist_truncation(&self) -> Result<()> {
        self.inner.seal_pending_locked()?;
        self.inner.persist_locked()
    }

    /// Checks and keeps `txn`'s write, locking its keys, until it is resolved. Preparing it
    /// again changes nothing; preparing a transaction already aborted here is refused.
    pub(super) fn apply_prepare(
        &self,
        index: u64,
        txn: TxnId,
        coordinator: &Coordinator,
        decides: bool,
        write: &TxnWrite,
    ) -> Result<Applied> {
        let locked = match locked_keys(&self.schema(), write) {
            Ok(keys) => keys,
            Err(e) => return self.refuse(index, e),
        };
        let mut state = self.inner.state.write();
        if index <= state.applied_index {
            return Ok(Applied::default());
        }
        let outcome = match state.txns.get(txn) {
            Some(entry) => match entry.outcome {
                Some(o) if !o.commit => Err(Error::Conflict(format!(
                    "Transaction {} was aborted before this shard prepared it.",
                    txn_hex(txn)
                ))),
                _ => Ok(()),
            },
            None => {
                let rows = write.upserts.as_ref().map_or(0, |b| b.num_rows());
                let checked = state.check_txn(Some(txn), write, &locked[..rows]);
                checked.map(|()| {
                    let entry = TxnEntry {
                        prepared_at: index,
                        coordinator: coordinator.clone(),
                        decides,
                        forgotten: None,
                        write: Some(Arc::new(write.clone())),
                        locked,
                        outcome: None,
                        since: Instant::now(),
                    };
                    state.txns.prepare(txn, entry);
                })
            }
        };
        state.skip(index);
        outcome.map(|()| Applied {
            fresh: true,
            ..Applied::default()
        })
    }

    /// Commits or aborts `txn`. The first resolution stands: a later one answers with it
    /// (`Applied::committed`). Aborting a transaction unknown here records the abort;
    /// committing one is refused.
    pub(super) fn apply_resolve(&self, index: u64, txn: TxnId, commit: bool) -> Result<Applied> {
        let (write, decided, coordinator) = {
            let state = self.inner.state.read();
            if index <= state.applied_index {
                return Ok(Applied::default());
            }
            match state.txns.get(txn) {
                Some(e) => (
                    e.write.clone(),
                    e.outcome.map(|o| o.commit),
                    e.coordinator.clone(),
                ),
                None => (None, None, Coordinator::default()),
            }
        };
        let answered = |committed: bool| Applied {
            fresh: true,
            committed: Some(committed),
            ..Applied::default()
        };
        if let Some(committed) = decided {
            self.inner.state.write().skip(index);
            return Ok(answered(committed));
        }
        let write = match (write, commit) {
            (Some(write), true) => write,
            (None, true) => {
                let e = Error::InvalidArgument(format!(
                    "transaction {} is not prepared on this shard",
                    txn_hex(txn)
                ));
                return self.refuse(index, e);
            }
            (_, false) => {
                let mut state = self.inner.state.write();
                state.txns.resolve(txn, false, index, coordinator);
                state.skip(index);
                return Ok(answered(false));
            }
        };
        // Checked when it was prepared, against the same schema.
        let rows = match self.normalized(&write) {
            Ok(rows) => rows,
            Err(e) => return self.refuse(index, e),
        };
        let _maintenance = write.truncate.then(|| self.inner.maintenance.lock());
        let applied = {
            let mut state = self.inner.state.write();
            state.txns.resolve(txn, true, index, coordinator);
            state.write_txn(index, &write, rows)
        };
        // Checked when it was prepared: a failure now is the replica's, not the write's.
        let applied = applied?;
        if write.truncate {
            self.persist_truncation()?;
        }
        self.inner.after_write();
        Ok(Applied {
            committed: Some(true),
            ..applied
        })
    }

    /// `Forget`: the coordinator's decision on `txn` may go once this is durable.
    pub(super) fn apply_forget(&self, index: u64, txn: TxnId) -> Result<Applied> {
        let mut state = self.inner.state.write();
        if index <= state.applied_index {
            return Ok(Applied::default());
        }
        state.txns.forget(txn, index);
        state.skip(index);
        Ok(Applied {
            fresh: true,
            ..Applied::default()
        })
    }

    /// Consumes `index` for a command refused with `e`.
    fn refuse(&self, index: u64, e: Error) -> Result<Applied> {
        self.inner.state.write().skip(index);
        Err(e)
    }

    /// The transactions prepared here and not resolved, oldest first.
    pub fn pending_txns(&self) -> Vec<super::PendingTxn> {
        self.inner.state.read().txns.pending()
    }
}
