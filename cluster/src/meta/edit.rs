//! How a meta operation changes the cluster's document: checked first (`check`: any member
//! of the cluster may send one, and what it names becomes directories and Raft groups), then
//! applied (`edit`). Both are plain functions of the document, so the leader's manager
//! (`manager.rs`) and the tests run the same code.

use std::collections::BTreeSet;

use vecraft_storage::names::SCHEMA_KEY_SEPARATOR;
use vecraft_storage::schema::valid_collection_name;

use super::{CollectionMeta, MetaOp, MetaState, Restorer, ShardMeta, place};
use crate::collection::{MAX_REPLICAS, MAX_SHARDS};
use crate::raft::NodeId;

/// Applies `op` to `state`; whether it changed anything. `dead` nodes get no new replicas.
pub(super) fn edit(
    state: &mut MetaState,
    op: MetaOp,
    dead: &BTreeSet<NodeId>,
) -> Result<bool, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::NodeInfo;
    use crate::meta::meta_schema;

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
