//! The meta manager: this node's member of the meta group, and the operations on the
//! cluster's metadata it performs when it leads (others answer "not the leader", and the
//! asking `MetaClient` goes to the leader).
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
use vecraft_storage::names::SCHEMA_KEY_SEPARATOR;
use vecraft_storage::schema::{CollectionSchema, ColumnDef, ColumnType, valid_collection_name};

use super::{
    CollectionMeta, MetaOp, MetaReply, MetaState, Restorer, ShardMeta, place, sequence_name,
};
use crate::collection::{MAX_REPLICAS, MAX_SHARDS};
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
        let changed = edit(&mut state, op, &self.dead.lock())
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

/// Applies `op` to `state`; whether it changed anything. `dead` nodes get no new replicas.
fn edit(state: &mut MetaState, op: MetaOp, dead: &BTreeSet<NodeId>) -> Result<bool, String> {
    check(state, &op)?;
    match op {
        MetaOp::Read { .. } => Ok(false),
        MetaOp::Reserve { .. } | MetaOp::Sequences { .. } => {
            Err("a sequence is not part of the document".into())
        }
        MetaOp::Register { id, info } => {
            let changed = state.nodes.get(&id) != Some(&info);
            // What an earlier start of the node was restoring is left half done: drop it.
            let abandoned = |r: &Option<Restorer>| {
                r.is_some_and(|r| r.node == id && r.incarnation != info.incarnation)
            };
            let before = state.collections.len();
            state.collections.retain(|_, c| !abandoned(&c.restoring));
            state.nodes.insert(id, info);
            Ok(changed || state.collections.len() != before)
        }
        MetaOp::Publish { name, by } => {
            let collection = state.collections.get_mut(&name);
            match collection {
                Some(c) if c.restoring == Some(by) => {
                    c.restoring = None;
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
        MetaOp::Create {
            name,
            schema,
            shards,
            replicas,
            restoring,
        } => {
            if state.collections.contains_key(&name) {
                return Ok(false);
            }
            let live: Vec<NodeId> = state
                .nodes
                .iter()
                .filter(|(id, n)| n.storage && !dead.contains(id))
                .map(|(id, _)| *id)
                .collect();
            let mut load = state.load();
            let placement = place(&live, &mut load, shards, replicas)?;
            // The version the document will have names the groups: a collection created
            // again under an old name never meets the old one's replicas.
            let version = state.version + 1;
            let shards = placement
                .into_iter()
                .enumerate()
                .map(|(i, nodes)| ShardMeta {
                    group: format!("{name}.{version}.{i}"),
                    initial: nodes.clone(),
                    replicas: nodes,
                })
                .collect();
            let collection = CollectionMeta {
                schema,
                replicas,
                shards,
                restoring,
            };
            state.collections.insert(name, collection);
            Ok(true)
        }
        MetaOp::Drop { name } => {
            state.privileges.remove(&name);
            Ok(state.collections.remove(&name).is_some())
        }
        MetaOp::CreateSchema { name } => Ok(state.schemas.insert(name)),
        MetaOp::DropSchema { name } => {
            state
                .privileges
                .remove(&super::privileges::schema_object(&name));
            Ok(state.schemas.remove(&name))
        }
        MetaOp::Replace { group, dead, new } => {
            let shard = state
                .collections
                .values_mut()
                .flat_map(|c| c.shards.iter_mut())
                .find(|s| s.group == group)
                .ok_or_else(|| format!("no shard {group}"))?;
            if !shard.replicas.contains(&dead) {
                return Ok(false);
            }
            if shard.replicas.contains(&new) {
                return Err(format!("node {new} already holds a replica of {group}"));
            }
            for slot in shard.replicas.iter_mut().filter(|n| **n == dead) {
                *slot = new;
            }
            // The group has changed members: nobody may initialise it again (a founding
            // member placed back later joins through the leader, as any new replica).
            shard.initial.clear();
            Ok(true)
        }
        MetaOp::SetMetaMembers { members } => {
            let changed = state.meta_members != members;
            state.meta_members = members;
            Ok(changed)
        }
        MetaOp::Role(op) => super::roles::apply(&mut state.roles, op),
        MetaOp::Privileges(op) => Ok(super::privileges::apply(&mut state.privileges, op)),
    }
}

/// Refuses an operation the SQL path would never make, before it touches the document: any
/// member of the cluster can send one, and what it names becomes directories and Raft groups.
fn check(state: &MetaState, op: &MetaOp) -> Result<(), String> {
    let name_ok = |name: &str| {
        if valid_collection_name(name) {
            Ok(())
        } else {
            Err(format!("invalid collection name \"{name}\""))
        }
    };
    match op {
        MetaOp::Read { .. } | MetaOp::Reserve { .. } | MetaOp::Sequences { .. } => Ok(()),
        MetaOp::Register { id, info } => {
            if *id == 0 {
                return Err("node ids are positive".into());
            }
            let addr_ok = super::is_host_port;
            if !addr_ok(&info.rpc) || info.sql.as_deref().is_some_and(|a| !addr_ok(a)) {
                return Err(format!("node {id}: its addresses must be HOST:PORT"));
            }
            Ok(())
        }
        MetaOp::Create {
            name,
            schema,
            shards,
            replicas,
            ..
        } => {
            name_ok(name)?;
            schema.validate().map_err(|e| e.to_string())?;
            if schema.hidden_key {
                return Err("a cluster collection needs a primary key".into());
            }
            if !(1..=MAX_SHARDS).contains(shards) {
                return Err(format!("shards must be between 1 and {MAX_SHARDS}"));
            }
            if !(1..=MAX_REPLICAS).contains(replicas) {
                return Err(format!("replicas must be between 1 and {MAX_REPLICAS}"));
            }
            Ok(())
        }
        MetaOp::Drop { name } | MetaOp::Publish { name, .. } => name_ok(name),
        MetaOp::CreateSchema { name } => name_ok(name),
        MetaOp::DropSchema { name } => {
            name_ok(name)?;
            // Collection keys in schema `name` (a key) start with it and the separator.
            let prefix = format!("{name}{SCHEMA_KEY_SEPARATOR}");
            if state.collections.keys().any(|c| c.starts_with(&prefix)) {
                return Err(format!("schema \"{name}\" is not empty"));
            }
            Ok(())
        }
        MetaOp::Replace { new, .. } => {
            if !state.nodes.get(new).is_some_and(|n| n.storage) {
                return Err(format!("node {new} is not a storage node of the cluster"));
            }
            Ok(())
        }
        MetaOp::Role(op) => super::roles::check(op),
        MetaOp::Privileges(_) => Ok(()),
        MetaOp::SetMetaMembers { members } => {
            if members.is_empty() || members.iter().any(|id| !state.nodes.contains_key(id)) {
                return Err("the meta members must be nodes of the cluster".into());
            }
            Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::NodeInfo;

    fn node(storage: bool) -> NodeInfo {
        NodeInfo {
            rpc: "127.0.0.1:1".into(),
            sql: None,
            storage,
            incarnation: 0,
        }
    }

    fn create(name: &str, shards: usize, replicas: usize) -> MetaOp {
        MetaOp::Create {
            name: name.into(),
            schema: meta_schema(),
            shards,
            replicas,
            restoring: None,
        }
    }

    /// A collection being restored is published only by the process restoring it, and is
    /// dropped when that node registers again as a new process (it restarted mid-restore).
    #[test]
    fn a_restore_is_published_by_its_restorer_and_dropped_when_it_restarts() {
        let none = BTreeSet::new();
        let mut state = MetaState::default();
        let register = |incarnation| MetaOp::Register {
            id: 1,
            info: NodeInfo {
                incarnation,
                ..node(true)
            },
        };
        edit(&mut state, register(7), &none).unwrap();
        let by = Restorer {
            node: 1,
            incarnation: 7,
        };
        for name in ["kept", "cut"] {
            let op = MetaOp::Create {
                name: name.into(),
                schema: meta_schema(),
                shards: 1,
                replicas: 1,
                restoring: Some(by),
            };
            assert!(edit(&mut state, op, &none).unwrap());
        }
        let publish = |name: &str, by| MetaOp::Publish {
            name: name.into(),
            by,
        };
        let other = Restorer {
            incarnation: 8,
            ..by
        };
        assert!(!edit(&mut state, publish("kept", other), &none).unwrap());
        assert!(edit(&mut state, publish("kept", by), &none).unwrap());
        assert_eq!(state.collections["kept"].restoring, None);
        assert!(edit(&mut state, register(7), &none).is_ok());
        assert!(state.collections.contains_key("cut"), "the same process");
        assert!(edit(&mut state, register(8), &none).unwrap());
        assert!(!state.collections.contains_key("cut"), "a restart drops it");
        assert!(
            state.collections.contains_key("kept"),
            "a published one stays"
        );
        assert!(!edit(&mut state, publish("cut", by), &none).unwrap());
    }

    #[test]
    fn create_places_on_live_storage_nodes_and_replace_moves_one_replica() {
        let mut state = MetaState::default();
        for (id, storage) in [(1, true), (2, true), (3, true), (4, false)] {
            let op = MetaOp::Register {
                id,
                info: node(storage),
            };
            assert!(edit(&mut state, op, &BTreeSet::new()).unwrap());
        }
        let dead = BTreeSet::from([3]);
        let e = edit(&mut state, create("docs", 2, 3), &dead).unwrap_err();
        assert!(
            e.contains("has 2"),
            "a dead node and a gateway do not count: {e}"
        );
        assert!(edit(&mut state, create("docs", 2, 2), &dead).unwrap());
        assert!(
            !edit(&mut state, create("docs", 2, 2), &dead).unwrap(),
            "exists"
        );
        let shards = &state.collections["docs"].shards;
        assert_eq!(shards[0].group, "docs.1.0");
        assert!(shards.iter().all(|s| !s.replicas.contains(&3)));
        let group = shards[0].group.clone();
        let replace = MetaOp::Replace {
            group: group.clone(),
            dead: 1,
            new: 3,
        };
        assert!(edit(&mut state, replace.clone(), &dead).unwrap());
        assert!(!edit(&mut state, replace, &dead).unwrap(), "done already");
        let shard = &state.collections["docs"].shards[0];
        assert!(shard.replicas.contains(&3) && !shard.replicas.contains(&1));
        assert!(
            shard.initial.is_empty(),
            "no one initialises a changed group"
        );
        let drop = MetaOp::Drop {
            name: "docs".into(),
        };
        assert!(edit(&mut state, drop.clone(), &dead).unwrap());
        assert!(!edit(&mut state, drop, &dead).unwrap());
    }

    /// What a member of the cluster sends is checked as SQL checks it: names that would be
    /// paths, schemas SQL refuses, made-up nodes and addresses change nothing.
    #[test]
    fn operations_sql_would_refuse_are_refused() {
        let mut state = MetaState::default();
        let none = BTreeSet::new();
        for id in [1, 2] {
            let op = MetaOp::Register {
                id,
                info: node(true),
            };
            edit(&mut state, op, &none).unwrap();
        }
        let before = state.clone();
        for name in ["../../x", "a/b", "", "a%2fb", ".hidden", &"x".repeat(64)] {
            assert!(
                edit(&mut state, create(name, 1, 1), &none).is_err(),
                "{name:?}"
            );
            let drop = MetaOp::Drop { name: name.into() };
            assert!(edit(&mut state, drop, &none).is_err(), "{name:?}");
        }
        let mut schema = meta_schema();
        schema.primary_key = schema.columns.len() + 3;
        let bad_key = MetaOp::Create {
            name: "ok".into(),
            schema,
            shards: 1,
            replicas: 1,
            restoring: None,
        };
        assert!(edit(&mut state, bad_key, &none).is_err());
        for (shards, replicas) in [(0, 1), (MAX_SHARDS + 1, 1), (1, 0), (1, MAX_REPLICAS + 1)] {
            assert!(edit(&mut state, create("ok", shards, replicas), &none).is_err());
        }
        let fake = MetaOp::Register {
            id: 0,
            info: node(true),
        };
        assert!(edit(&mut state, fake, &none).is_err());
        let mut nowhere = node(true);
        nowhere.rpc = "not an address".into();
        let fake = MetaOp::Register {
            id: 9,
            info: nowhere,
        };
        assert!(edit(&mut state, fake, &none).is_err());
        assert_eq!(state, before, "nothing changed");
        edit(&mut state, create("ok", 1, 1), &none).unwrap();
        let group = state.collections["ok"].shards[0].group.clone();
        let dead = state.collections["ok"].shards[0].replicas[0];
        let onto_nobody = MetaOp::Replace {
            group,
            dead,
            new: 77,
        };
        assert!(edit(&mut state, onto_nobody, &none).is_err());
    }
}
