//! The meta manager: this node's member of the meta group, and the operations on the
//! cluster's metadata it performs when it leads (others answer "not the leader", and the
//! asking `MetaClient` goes to the leader). What each operation does to the document is
//! `edit.rs`; this file reads the document, proposes the edited one and keeps the sequences.
//!
//! The document is one row (`key = 'state'`, `value` its JSON) of a two-column shard, so the
//! meta group is an ordinary Raft group over the storage engine: its log, snapshots and
//! recovery are the shards'. Each SQL sequence is a row beside it (`key = 'seq:<name>'`,
//! `value` the next value to reserve), so reserving values does not change the document's
//! version (which makes every gateway re-read its tables).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::future::BoxFuture;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use parking_lot::Mutex;
use tonic::Status;
use tonic::codegen::Bytes;
use vecraft_storage::command::Command;
use vecraft_storage::error::Refusal;
use vecraft_storage::filter::{CmpOp, Filter, Scalar};
use vecraft_storage::key::Key;
use vecraft_storage::schema::{CollectionSchema, ColumnDef, ColumnType};

use super::{MetaOp, MetaReply, MetaState, sequence_name};
use crate::local::LocalShard;
use crate::raft::{NodeId, Request};
use crate::rpc::{ActionHandler, Failure};

const KEY: &str = "state";
/// The key of a sequence's row is this and the sequence's name.
const SEQUENCE_PREFIX: &str = "seq:";
/// The most values one reservation takes.
pub const MAX_RESERVATION: u64 = 1 << 20;

pub type MetaResult = Result<MetaReply, Failure>;

pub struct MetaManager {
    member: Arc<LocalShard>,
    /// One change at a time: each reads the document, edits it and proposes the result.
    changing: tokio::sync::Mutex<()>,
    /// Storage nodes the fail-over manager found dead: new replicas do not go there.
    dead: Mutex<BTreeSet<NodeId>>,
}

/// The meta group's shard: the document as one text row.
pub fn meta_schema() -> CollectionSchema {
    let columns = vec![
        ColumnDef::new("key", ColumnType::Text, false),
        ColumnDef::new("value", ColumnType::Text, false),
    ];
    CollectionSchema::new(columns, "key").expect("the meta schema is valid")
}

impl MetaManager {
    pub fn new(member: Arc<LocalShard>) -> MetaManager {
        MetaManager {
            member,
            changing: tokio::sync::Mutex::new(()),
            dead: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn member(&self) -> &Arc<LocalShard> {
        &self.member
    }

    /// Whether this member leads the meta group now.
    pub fn leads(&self) -> bool {
        self.member.group_status().state == "leader"
    }

    pub fn set_dead(&self, dead: BTreeSet<NodeId>) {
        *self.dead.lock() = dead;
    }

    /// The document as this member has applied it.
    pub fn state(&self) -> Result<MetaState, Failure> {
        let Some(text) = self.row(KEY)? else {
            return Ok(MetaState::default());
        };
        serde_json::from_str(&text)
            .map_err(|e| Failure::Unavailable(format!("the meta document does not parse: {e}")))
    }

    /// The value of row `key` of the meta shard, as this member has applied it.
    fn row(&self, key: &str) -> Result<Option<String>, Failure> {
        let value = vec!["value".to_string()];
        let filter = Filter::Compare {
            column: "key".into(),
            op: CmpOp::Eq,
            value: Scalar::Text(key.into()),
        };
        let batches = self
            .member
            .shard()
            .scan(Some(&value), Some(&filter))
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        Ok(batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| b.column(0).as_string::<i32>().value(0).to_string()))
    }

    pub async fn apply(&self, op: MetaOp) -> MetaResult {
        match op {
            MetaOp::Read { strong: false } => {
                let state = self.state()?;
                // A follower that has applied nothing yet (restarted, and no leader has
                // reached it) would answer with an empty document.
                if state.version == 0 && !self.leads() {
                    let e = "this meta member has applied no document yet";
                    return Err(Failure::Unavailable(e.into()));
                }
                Ok(MetaReply::State(state))
            }
            MetaOp::Read { strong: true } => {
                self.confirm_leader().await?;
                self.state().map(MetaReply::State)
            }
            MetaOp::Reserve { sequence, count } => self.reserve(&sequence, count).await,
            MetaOp::Sequences { prefix } => {
                self.confirm_leader().await?;
                self.sequences(&prefix).map(MetaReply::Sequences)
            }
            op => self.change(op).await,
        }
    }

    /// Every sequence whose name starts with `prefix`, by the rest of its name, with the next
    /// value it gives (as this member has applied them).
    fn sequences(&self, prefix: &str) -> Result<BTreeMap<String, i64>, Failure> {
        let columns = vec!["key".to_string(), "value".to_string()];
        let batches = self
            .member
            .shard()
            .scan(Some(&columns), None)
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        let prefix = format!("{SEQUENCE_PREFIX}{prefix}");
        let mut found = BTreeMap::new();
        for batch in &batches {
            let keys = batch.column(0).as_string::<i32>().iter();
            let values = batch.column(1).as_string::<i32>().iter();
            for (key, value) in keys.zip(values) {
                let (Some(name), Some(value)) = (key.and_then(|k| k.strip_prefix(&prefix)), value)
                else {
                    continue;
                };
                let next = value.parse::<i64>().map_err(|e| {
                    Failure::Unavailable(format!("sequence {name} holds {value:?}: {e}"))
                })?;
                found.insert(name.to_string(), next);
            }
        }
        Ok(found)
    }

    /// Reserves `count` values of `sequence` (from 1 for a new one); the first of them.
    async fn reserve(&self, sequence: &str, count: u64) -> MetaResult {
        let refuse = |why: String| Failure::Refused(Refusal::InvalidArgument(why));
        if sequence.is_empty() || !(1..=MAX_RESERVATION).contains(&count) {
            return Err(refuse(format!(
                "cannot reserve {count} values of \"{sequence}\""
            )));
        }
        let _turn = self.changing.lock().await;
        self.confirm_leader().await?;
        let key = format!("{SEQUENCE_PREFIX}{sequence}");
        let first = match self.row(&key)? {
            None => 1,
            Some(text) => text.parse::<i64>().map_err(|e| {
                Failure::Unavailable(format!("sequence {sequence} holds {text:?}: {e}"))
            })?,
        };
        let Some(next) = first.checked_add(count as i64) else {
            return Err(refuse(format!(
                "nextval: reached maximum value of sequence \"{sequence}\" ({})",
                i64::MAX
            )));
        };
        self.propose_row(&key, &next.to_string()).await?;
        Ok(MetaReply::Reserved(first))
    }

    /// Confirms this member leads, and has applied everything committed before now.
    async fn confirm_leader(&self) -> Result<(), Failure> {
        match self.member.group().raft().ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(Failure::NotLeader(f.leader_id))
            }
            Err(e) => Err(Failure::Unavailable(e.to_string())),
        }
    }

    async fn change(&self, op: MetaOp) -> MetaResult {
        let _turn = self.changing.lock().await;
        self.confirm_leader().await?;
        let mut state = self.state()?;
        let before = state.collections.clone();
        let changed = super::edit::edit(&mut state, op, &self.dead.lock())
            .map_err(|e| Failure::Refused(Refusal::InvalidArgument(e)))?;
        if changed {
            state.version += 1;
            let json =
                serde_json::to_string(&state).map_err(|e| Failure::Unavailable(e.to_string()))?;
            self.propose_row(KEY, &json).await?;
            // A collection gone (dropped, or an abandoned restore) takes its sequences.
            let gone = before
                .iter()
                .filter(|(name, _)| !state.collections.contains_key(*name));
            for first in gone.filter_map(|(_, c)| c.shards.first()) {
                let prefix = sequence_name(&first.group, "");
                self.delete_rows(&format!("{SEQUENCE_PREFIX}{prefix}"))
                    .await?;
            }
        }
        Ok(MetaReply::Done(changed))
    }

    /// Deletes the rows whose keys start with `prefix`, through the group.
    async fn delete_rows(&self, prefix: &str) -> Result<(), Failure> {
        let key = vec!["key".to_string()];
        let batches = self
            .member
            .shard()
            .scan(Some(&key), None)
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        let keys: Vec<Key> = batches
            .iter()
            .flat_map(|b| b.column(0).as_string::<i32>().iter().flatten())
            .filter(|k| k.starts_with(prefix))
            .map(|k| Key::Text(k.to_string()))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.write(Command::Delete(keys)).await
    }

    /// Makes row `key` hold `value`, through the group.
    async fn propose_row(&self, key: &str, value: &str) -> Result<(), Failure> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![key])),
                Arc::new(StringArray::from(vec![value])),
            ],
        )
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
        self.write(Command::Upsert(batch)).await
    }

    /// Proposes `command` to the group and waits until it is applied.
    async fn write(&self, command: Command) -> Result<(), Failure> {
        let command = command
            .encode()
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        let _pass = self.member.group().write_pass().await;
        match self
            .member
            .group()
            .raft()
            .client_write(Request(command))
            .await
        {
            Ok(response) => response.data.map(|_| ()).map_err(Failure::Refused),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Failure::NotLeader(f.leader_id))
            }
            Err(e) => Err(Failure::Unavailable(e.to_string())),
        }
    }
}

impl ActionHandler for Arc<MetaManager> {
    fn handle(&self, body: Bytes) -> BoxFuture<'static, Result<Bytes, Status>> {
        let manager = Arc::clone(self);
        Box::pin(async move {
            let op: MetaOp = postcard::from_bytes(&body)
                .map_err(|e| Status::invalid_argument(format!("bad meta operation: {e}")))?;
            let reply = manager.apply(op).await;
            crate::rpc::encode(&reply)
        })
    }
}
