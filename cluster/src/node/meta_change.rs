//! Adding and removing meta members by a command, at any gateway:
//!
//! ```sql
//! CALL vecraft_add_meta_member(4);
//! CALL vecraft_remove_meta_member(1);
//! ```
//!
//! The gateway sends the change to the meta leader (`meta.members`), which makes it the way
//! it replaces a lost member (`meta_members.rs`): a new member opens on its node, catches up
//! as a learner and gets its vote; a removed one loses it; the document records the voters,
//! and every node learns from it where the meta group is. A leader asked to remove itself
//! first hands its leadership to the member that holds the most of its log and answers
//! "not the leader", so the gateway asks the new one. Both changes are idempotent: adding a
//! member, or removing a node that is none, changes nothing.
//!
//! One change runs at a time, and the automatic replacement of a lost member waits for it.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Status;
use tonic::codegen::Bytes;
use vecraft_storage::error::Refusal;

use super::{ClusterNode, meta_members};
use crate::meta::{META_MEMBERS, MetaManager, MetaMembersChange, MetaState};
use crate::raft::NodeId;
use crate::rpc::{ActionHandler, Failure};

/// How long the leader may take to make a change (a new member opens and catches up).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(100);

impl ClusterNode {
    /// Adds or removes a meta member through the meta leader; the members after it, which
    /// this node's view of the metadata shows when this returns.
    pub async fn change_meta_members(
        self: &Arc<Self>,
        change: MetaMembersChange,
    ) -> vecraft_storage::Result<BTreeSet<NodeId>> {
        let client = Arc::clone(&self.meta_client);
        let changing = async move {
            let members = client.change_members(change).await?;
            Ok::<_, vecraft_storage::Error>((members, client.read(true).await?))
        };
        let (members, state) = crate::raft::run_async(changing).await??;
        self.publish(state);
        Ok(members)
    }
}

/// Answers `meta.members` on this node's meta member.
pub(super) fn serve(node: &Arc<ClusterNode>) {
    node.service
        .handle(META_MEMBERS, Arc::new(ChangeHandler(Arc::downgrade(node))));
}

struct ChangeHandler(Weak<ClusterNode>);

impl ActionHandler for ChangeHandler {
    fn handle(&self, body: Bytes) -> BoxFuture<'static, Result<Bytes, Status>> {
        let node = self.0.upgrade();
        Box::pin(async move {
            let change = postcard::from_bytes::<MetaMembersChange>(&body);
            let reply: Result<BTreeSet<NodeId>, Failure> = match (node, change) {
                (Some(node), Ok(change)) => change_members(&node, change).await,
                (None, _) => Err(Failure::Unavailable("the node is stopping".into())),
                (_, Err(e)) => Err(refused(format!("a malformed change of meta members: {e}"))),
            };
            crate::rpc::encode(&reply)
        })
    }
}

fn refused(message: String) -> Failure {
    Failure::Refused(Refusal::InvalidArgument(message))
}

/// Makes `change` if this member leads the meta group.
async fn change_members(
    node: &Arc<ClusterNode>,
    change: MetaMembersChange,
) -> Result<BTreeSet<NodeId>, Failure> {
    let Some(manager) = node.meta.get() else {
        return Err(Failure::NoGroup);
    };
    let _turn = node.meta_change.lock().await;
    let (voters, leader) = voters_and_leader(manager)?;
    if leader != Some(node.id()) {
        return Err(Failure::NotLeader(leader));
    }
    let state = manager.state()?;
    let Some(wanted) = wanted(node, &state, &voters, change).await? else {
        return Ok(voters);
    };
    eprintln!("vecraft: the meta group's members change from {voters:?} to {wanted:?}");
    let changed = tokio::time::timeout(
        CHANGE_TIMEOUT,
        meta_members::change_voters(node, manager, &state, &voters, wanted),
    );
    match changed.await {
        Ok(Ok(members)) => {
            eprintln!("vecraft: the meta group's members are now {members:?}");
            Ok(members)
        }
        Ok(Err(e)) => Err(Failure::Unavailable(format!(
            "the meta group's members did not change: {e}"
        ))),
        Err(_) => Err(Failure::Unavailable(format!(
            "the meta group's members did not change within {} s",
            CHANGE_TIMEOUT.as_secs()
        ))),
    }
}

/// The meta group's voters and leader as this member sees them; refused while a change of
/// members is still under way (joint consensus).
fn voters_and_leader(manager: &MetaManager) -> Result<(BTreeSet<NodeId>, Option<NodeId>), Failure> {
    let voters = meta_members::Voters::of(manager);
    if voters.joint {
        return Err(Failure::Unavailable(
            "another change of the meta group's members is under way".into(),
        ));
    }
    Ok((voters.ids, voters.leader))
}

/// The voters `change` asks for; `None` when they are the voters already. A leader asked to
/// remove itself hands its leadership over first and answers "not the leader".
async fn wanted(
    node: &Arc<ClusterNode>,
    state: &MetaState,
    voters: &BTreeSet<NodeId>,
    change: MetaMembersChange,
) -> Result<Option<BTreeSet<NodeId>>, Failure> {
    let mut wanted = voters.clone();
    match change {
        MetaMembersChange::Add(id) => {
            if voters.contains(&id) {
                return Ok(None);
            }
            let Some(addr) = state.addr(id) else {
                return Err(refused(format!("node {id} is not in the cluster")));
            };
            if crate::rpc::ping(&node.peers, addr)
                .await
                .is_none_or(|p| p.draining)
            {
                return Err(Failure::Unavailable(format!(
                    "node {id} does not answer, or is stopping"
                )));
            }
            wanted.insert(id);
        }
        MetaMembersChange::Remove(id) => {
            if !voters.contains(&id) {
                return Ok(None);
            }
            if voters.len() == 1 {
                return Err(refused(format!(
                    "node {id} is the meta group's only member"
                )));
            }
            if id == node.id() {
                return Err(hand_over(node).await);
            }
            wanted.remove(&id);
        }
    }
    Ok(Some(wanted))
}

/// Hands the meta leadership to the member holding the most of the log; the answer that
/// sends the gateway to the new leader.
async fn hand_over(node: &Arc<ClusterNode>) -> Failure {
    let manager = node.meta.get().expect("a meta member leads");
    let member = Arc::clone(manager.member());
    let Some(to) = super::drain::successor(&member) else {
        return Failure::NotLeader(None);
    };
    let handing = async move { crate::rpc::hand_over(&member, to).await };
    match crate::raft::run_async(handing).await {
        Ok(Ok(leader)) => Failure::NotLeader(Some(leader)),
        Ok(Err(failure)) => failure,
        Err(e) => Failure::Unavailable(e.to_string()),
    }
}
