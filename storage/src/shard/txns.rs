//! The transactions a shard holds between their two steps (`Command::Prepare`, then
//! `Command::Resolve`), and the keys they lock meanwhile.
//!
//! A prepared transaction's keys take no other write until it is resolved: another
//! transaction's commit or a plain write on one of them is refused (40001, retry) rather than
//! let a commit that was already promised overwrite it. A prepared truncation locks the
//! whole shard.
//!
//! Durability follows the shard's own rule (state at `durable_index`, log replayed after it):
//! the manifest records every transaction prepared at or before the durable index, with its
//! write while its resolution is not durable yet, so a replayed `Resolve` finds what it
//! commits. Once durable, a part's write is dropped. The coordinator keeps a commit decision
//! until `Forget` says every part heard it (shards that have not may ask it); an abort is
//! kept a while and then forgotten, which is safe: a transaction unknown to its coordinator
//! is aborted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::schema::CollectionSchema;
use crate::segment::rows::normalize;
use crate::txn::{Coordinator, TxnId, TxnWrite};

/// How long an abort is kept (once durable), so a late prepare of the transaction is refused.
const ABORT_KEPT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub commit: bool,
    /// The log index of the resolution.
    pub index: u64,
    pub at: Instant,
}

pub struct TxnEntry {
    pub prepared_at: u64,
    pub coordinator: Coordinator,
    /// This shard is the coordinator: its outcome is the decision others ask for.
    pub decides: bool,
    /// The index of the `Forget` applied: the decision may go once that is durable.
    pub forgotten: Option<u64>,
    /// What commits; dropped once the resolution is durable (`None` too for an abort
    /// recorded before any prepare).
    pub write: Option<Arc<TxnWrite>>,
    /// The keys the transaction locks while unresolved.
    pub locked: Vec<Key>,
    pub outcome: Option<Outcome>,
    /// When this replica learned of it (its age decides when the shards ask for its outcome).
    pub since: Instant,
}

/// A transaction prepared here and not resolved, as the shard's status reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingTxn {
    /// The id in hex.
    pub txn: String,
    pub coordinator: Coordinator,
    pub age_ms: u64,
}

/// A transaction as the manifest records it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PersistedTxn {
    pub txn: String,
    pub prepared_at: u64,
    pub coordinator: Coordinator,
    #[serde(default)]
    pub decides: bool,
    /// `Some` once resolved (at or before the manifest's durable index).
    pub outcome: Option<bool>,
    /// The write (`TxnWrite::encode_into`, base64) while unresolved.
    pub write: Option<String>,
}

pub fn txn_hex(txn: TxnId) -> String {
    format!("{txn:032x}")
}

pub fn parse_txn_hex(text: &str) -> Option<TxnId> {
    TxnId::from_str_radix(text, 16).ok()
}

#[derive(Default)]
pub struct Txns {
    entries: BTreeMap<TxnId, TxnEntry>,
    locks: HashMap<Key, TxnId>,
    /// The prepared transaction that truncates the shard, if one does.
    truncating: Option<TxnId>,
}

fn conflict(detail: String) -> Error {
    Error::Conflict(detail)
}

impl Txns {
    pub fn get(&self, txn: TxnId) -> Option<&TxnEntry> {
        self.entries.get(&txn)
    }

    /// Refuses a write of `keys` (a truncation too when `truncate`) by anyone but `txn` while
    /// a prepared transaction holds them. `pk` names the key column for the message.
    pub fn check_free<'a>(
        &self,
        txn: Option<TxnId>,
        truncate: bool,
        mut keys: impl Iterator<Item = &'a Key>,
        pk: &str,
    ) -> Result<()> {
        let other = |holder: &TxnId| Some(*holder) != txn;
        if self.truncating.as_ref().is_some_and(other) {
            return Err(conflict(
                "A transaction that empties the table is being committed.".into(),
            ));
        }
        if truncate && self.unresolved().any(|(id, _)| other(id)) {
            return Err(conflict(
                "A transaction that writes to the table is being committed.".into(),
            ));
        }
        match keys.find(|k| self.locks.get(*k).is_some_and(other)) {
            Some(key) => Err(conflict(format!(
                "Key ({pk})=({key}) is being written by a transaction being committed."
            ))),
            None => Ok(()),
        }
    }

    fn unresolved(&self) -> impl Iterator<Item = (&TxnId, &TxnEntry)> {
        self.entries.iter().filter(|(_, e)| e.outcome.is_none())
    }

    /// Keeps `entry` (unresolved) and locks its keys.
    pub fn prepare(&mut self, txn: TxnId, entry: TxnEntry) {
        debug_assert!(entry.outcome.is_none() && entry.write.is_some());
        for key in &entry.locked {
            let holder = self.locks.insert(key.clone(), txn);
            debug_assert!(holder.is_none_or(|h| h == txn), "a key has one holder");
        }
        if entry.write.as_ref().is_some_and(|w| w.truncate) {
            self.truncating = Some(txn);
        }
        self.entries.insert(txn, entry);
    }

    /// Records `txn`'s outcome (at log `index`) and releases its keys.
    pub fn resolve(&mut self, txn: TxnId, commit: bool, index: u64, coordinator: Coordinator) {
        let outcome = Outcome {
            commit,
            index,
            at: Instant::now(),
        };
        let entry = self.entries.entry(txn).or_insert_with(|| TxnEntry {
            prepared_at: index,
            coordinator,
            // An abort of a transaction never prepared here answers for it, as a decision.
            decides: true,
            forgotten: None,
            write: None,
            locked: Vec::new(),
            outcome: None,
            since: outcome.at,
        });
        debug_assert!(entry.outcome.is_none(), "a transaction is resolved once");
        entry.outcome = Some(outcome);
        for key in std::mem::take(&mut entry.locked) {
            self.locks.remove(&key);
        }
        if self.truncating == Some(txn) {
            self.truncating = None;
        }
    }

    /// The unresolved transactions, oldest first.
    pub fn pending(&self) -> Vec<PendingTxn> {
        let mut pending: Vec<(&TxnId, &TxnEntry)> = self.unresolved().collect();
        pending.sort_by_key(|(_, e)| e.since);
        pending
            .into_iter()
            .map(|(id, e)| PendingTxn {
                txn: txn_hex(*id),
                coordinator: e.coordinator.clone(),
                age_ms: e.since.elapsed().as_millis() as u64,
            })
            .collect()
    }

    /// What the manifest at `durable` records: the state as of that log index.
    pub fn persisted(&self, durable: u64) -> Result<Vec<PersistedTxn>> {
        let mut out = Vec::new();
        for (id, e) in &self.entries {
            if e.prepared_at > durable || e.forgotten.is_some_and(|f| f <= durable) {
                continue; // the log replays it, or it is gone by then
            }
            let resolved = e.outcome.filter(|o| o.index <= durable);
            let write = match (resolved, &e.write) {
                (None, Some(write)) => {
                    let mut bytes = Vec::new();
                    write.encode_into(&mut bytes)?;
                    Some(STANDARD.encode(bytes))
                }
                (None, None) => unreachable!("an unresolved transaction keeps its write"),
                (Some(_), _) => None,
            };
            out.push(PersistedTxn {
                txn: txn_hex(*id),
                prepared_at: e.prepared_at,
                coordinator: e.coordinator.clone(),
                decides: e.decides,
                outcome: resolved.map(|o| o.commit),
                write,
            });
        }
        Ok(out)
    }

    /// `Forget` at log `index`: the coordinator's decision on `txn` is no longer needed.
    pub fn forget(&mut self, txn: TxnId, index: u64) {
        if let Some(entry) = self.entries.get_mut(&txn)
            && entry.outcome.is_some()
        {
            entry.forgotten = Some(index);
        }
    }

    /// After a manifest at `durable` is stored: writes whose resolution it covers are
    /// dropped, and so are the outcomes nobody needs: a part's (only the coordinator is
    /// asked), a forgotten decision, an abort kept long enough.
    pub fn forget_durable(&mut self, durable: u64) {
        self.entries.retain(|_, e| match e.outcome {
            Some(o) if o.index <= durable => {
                e.write = None;
                let unneeded = !e.decides || e.forgotten.is_some_and(|f| f <= durable);
                !unneeded && (o.commit || o.at.elapsed() < ABORT_KEPT)
            }
            _ => true,
        });
    }

    /// The transactions a manifest recorded, their keys locked again.
    pub fn load(schema: &CollectionSchema, persisted: &[PersistedTxn]) -> Result<Txns> {
        let bad = |d: &str| Error::InvalidArgument(format!("manifest transaction: {d}"));
        let mut txns = Txns::default();
        let now = Instant::now();
        for p in persisted {
            let id = parse_txn_hex(&p.txn).ok_or_else(|| bad("id is not hex"))?;
            if txns.entries.contains_key(&id) {
                return Err(bad("an id twice"));
            }
            match (p.outcome, &p.write) {
                (Some(commit), _) => {
                    txns.resolve(id, commit, p.prepared_at, p.coordinator.clone());
                    if let Some(entry) = txns.entries.get_mut(&id) {
                        entry.decides = p.decides;
                    }
                }
                (None, Some(text)) => {
                    let bytes = STANDARD.decode(text).map_err(|_| bad("not base64"))?;
                    let (write, _) = TxnWrite::decode(&bytes)?;
                    let locked = locked_keys(schema, &write)?;
                    if locked.iter().any(|k| txns.locks.contains_key(k)) {
                        return Err(bad("a key locked by two transactions"));
                    }
                    let entry = TxnEntry {
                        prepared_at: p.prepared_at,
                        coordinator: p.coordinator.clone(),
                        decides: p.decides,
                        forgotten: None,
                        write: Some(Arc::new(write)),
                        locked,
                        outcome: None,
                        since: now,
                    };
                    txns.prepare(id, entry);
                }
                (None, None) => return Err(bad("unresolved without its write")),
            }
        }
        Ok(txns)
    }
}

/// The keys `write` locks: its rows' keys as the shard stores them, and its deletions.
pub fn locked_keys(schema: &CollectionSchema, write: &TxnWrite) -> Result<Vec<Key>> {
    let mut keys = match &write.upserts {
        Some(batch) => normalize(schema, batch)?.keys,
        None => Vec::new(),
    };
    keys.extend(write.deletes.iter().cloned());
    Ok(keys)
}
