//! The node's Flight server: routes each Raft message to its group's `Raft` handle, proposes
//! writes to the shard replicas this node leads, answers reads of its replicas with Arrow
//! batches (after checking the read's consistency), and hands other actions (`meta.*`) to
//! whoever registered for them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, RaftError};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use openraft::{BasicNode, Raft, ServerState};
use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tonic::codegen::Bytes;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status, Streaming};

use super::auth::ClusterSecret;
use super::tls::ClusterTls;
use super::{
    APPEND, CHECKPOINT, ELECT, Failure, GroupId, HAND_OVER, MAX_MESSAGE_BYTES, MEMBERS, PING,
    PRE_VOTE, Pong, ReadKind, ReadTicket, STATUS, VOTE, WRITE,
};
use vecraft_storage::error::Refusal;
use vecraft_storage::shard::Applied;

use crate::local::LocalShard;
use crate::raft::{
    HandoffError, MAX_COMMAND_BYTES, NodeId, PreVote, Request as Proposal, TypeConfig,
};
use crate::read::{BOUNDED_WAIT_MS, Consistency};
use crate::shard_handle::ShardStatus;

/// Answers one kind of action this server does not know itself (the meta manager's).
pub trait ActionHandler: Send + Sync {
    fn handle(&self, body: Bytes) -> BoxFuture<'static, Result<Bytes, Status>>;
}

/// The Raft groups (and their shard replicas) this node serves, by id, and the handlers of
/// other actions.
#[derive(Clone, Default)]
pub struct RaftService {
    groups: Arc<RwLock<HashMap<GroupId, Arc<LocalShard>>>>,
    handlers: Arc<RwLock<HashMap<String, Arc<dyn ActionHandler>>>>,
    serving: Arc<Serving>,
    /// Set once the node drains; its pings say so.
    draining: Arc<AtomicBool>,
}

/// Stops the server on its way out of a drain (`RaftService::stop_serving`).
struct Serving {
    stop: watch::Sender<bool>,
    stopped: watch::Sender<bool>,
}

impl Default for Serving {
    fn default() -> Serving {
        Serving {
            stop: watch::channel(false).0,
            stopped: watch::channel(false).0,
        }
    }
}

type Reply<T> = Result<T, Failure>;

impl RaftService {
    pub fn register(&self, group: GroupId, member: Arc<LocalShard>) {
        self.groups.write().insert(group, member);
    }

    pub fn unregister(&self, group: &str) -> Option<Arc<LocalShard>> {
        self.groups.write().remove(group)
    }

    /// The groups this node has a member of.
    pub fn groups(&self) -> Vec<GroupId> {
        self.groups.read().keys().cloned().collect()
    }

    pub fn member(&self, group: &str) -> Option<Arc<LocalShard>> {
        self.groups.read().get(group).cloned()
    }

    /// Stops the server as a node leaving a drain does: no new connection or call is taken
    /// (peers told so with HTTP/2's `GoAway`, then refused), the calls in flight are
    /// answered, and this returns once they were. A node that exits without it resets the
    /// connections its calls are on, and a write in flight there is of unknown outcome.
    pub async fn stop_serving(&self) {
        self.serving.stop.send_replace(true);
        let _ = self.serving.stopped.subscribe().wait_for(|s| *s).await;
    }

    /// Makes the node's pings say that it drains (`Pong`).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Hands action `kind` to `handler`.
    pub fn handle(&self, kind: &str, handler: Arc<dyn ActionHandler>) {
        self.handlers.write().insert(kind.to_string(), handler);
    }

    fn raft(&self, group: &str) -> Result<Raft<TypeConfig>, Status> {
        Ok(self.member_or_not_found(group)?.group().raft().clone())
    }

    fn member_or_not_found(&self, group: &str) -> Result<Arc<LocalShard>, Status> {
        self.member(group)
            .ok_or_else(|| Status::not_found(format!("no Raft group {group} on this node")))
    }

    /// A search or scan of this node's replica of a shard, as Arrow batches (`DoGet`).
    async fn read(
        &self,
        ticket: Ticket,
    ) -> Result<BoxStream<'static, Result<FlightData, Status>>, Status> {
        let ticket: ReadTicket = decode(&ticket.ticket)?;
        let member = self
            .member(&ticket.group)
            .ok_or_else(|| refused(Failure::NoGroup))?;
        may_read(&member, ticket.read, ticket.min_applied)
            .await
            .map_err(refused)?;
        if matches!(ticket.kind, ReadKind::Snapshot) {
            return Ok(super::snapshot_stream::serve(member));
        }
        let batches = tokio::task::spawn_blocking(move || match ticket.kind {
            ReadKind::Search(request) => member.shard().search(&request).map(|b| vec![b]),
            ReadKind::Scan { projection, filter } => {
                member.shard().scan(projection.as_deref(), filter.as_ref())
            }
            ReadKind::Snapshot => unreachable!("answered above"),
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| {
            // A refusal (bad column, bad vector) is the same on every replica: final.
            refused(match Refusal::of(&e) {
                Some(refusal) => Failure::Refused(refusal),
                None => Failure::Unavailable(e.to_string()),
            })
        })?;
        let stream = FlightDataEncoderBuilder::new()
            .build(stream::iter(batches.into_iter().map(Ok::<RecordBatch, _>)))
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Box::pin(stream))
    }

    async fn act(&self, action: Action) -> Result<Bytes, Status> {
        match action.r#type.as_str() {
            APPEND => {
                let (group, rpc): (GroupId, AppendEntriesRequest<TypeConfig>) =
                    decode(&action.body)?;
                let member = self.member_or_not_found(&group)?;
                let answer = member.group().raft().append_entries(rpc).await;
                // A leader of an older term, deposed without knowing, is no leader to hear.
                if !matches!(answer, Ok(AppendEntriesResponse::HigherVote(_))) {
                    member.group().heard_from_leader();
                }
                encode(&answer)
            }
            VOTE => {
                let (group, rpc): (GroupId, VoteRequest<NodeId>) = decode(&action.body)?;
                encode(&self.raft(&group)?.vote(rpc).await)
            }
            PRE_VOTE => {
                let (group, ask): (GroupId, PreVote) = decode(&action.body)?;
                let granted = match self.member(&group) {
                    Some(member) => member.group().grants_pre_vote(ask).await,
                    None => false,
                };
                encode(&granted)
            }
            WRITE => {
                let (group, command): (GroupId, Vec<u8>) = decode(&action.body)?;
                let reply: Reply<(Applied, u64)> = match self.member(&group) {
                    Some(member) => write(&member, command).await,
                    None => Err(Failure::NoGroup),
                };
                encode(&reply)
            }
            STATUS => {
                let group: GroupId = decode(&action.body)?;
                let reply: Reply<ShardStatus> = self
                    .member(&group)
                    .map(|m| m.shard_status())
                    .ok_or(Failure::NoGroup);
                encode(&reply)
            }
            CHECKPOINT => {
                let group: GroupId = decode(&action.body)?;
                let reply: Reply<u64> = match self.member(&group) {
                    Some(member) => tokio::task::spawn_blocking(move || member.checkpoint())
                        .await
                        .map_err(|e| Failure::Unavailable(e.to_string()))
                        .and_then(|r| r.map_err(|e| Failure::Unavailable(e.to_string()))),
                    None => Err(Failure::NoGroup),
                };
                encode(&reply)
            }
            MEMBERS => {
                let (group, voters): (GroupId, BTreeMap<NodeId, String>) = decode(&action.body)?;
                let reply: Reply<()> = match self.member(&group) {
                    Some(member) => set_voters(member.group().raft(), voters).await,
                    None => Err(Failure::NoGroup),
                };
                encode(&reply)
            }
            HAND_OVER => {
                let (group, to): (GroupId, NodeId) = decode(&action.body)?;
                let reply: Reply<NodeId> = match self.member(&group) {
                    Some(member) => hand_over(&member, to).await,
                    None => Err(Failure::NoGroup),
                };
                encode(&reply)
            }
            ELECT => {
                let (group, term): (GroupId, u64) = decode(&action.body)?;
                let reply: Reply<()> = match self.member(&group) {
                    Some(member) => member
                        .group()
                        .campaign(term)
                        .await
                        .map_err(Failure::Unavailable),
                    None => Err(Failure::NoGroup),
                };
                encode(&reply)
            }
            PING => encode(&Pong {
                draining: self.draining.load(Ordering::Relaxed),
            }),
            other => {
                let handler = self.handlers.read().get(other).cloned();
                match handler {
                    Some(handler) => handler.handle(action.body).await,
                    None => Err(Status::unimplemented(format!("unknown action {other}"))),
                }
            }
        }
    }
}

/// Proposes `command` to the group this member leads; returns what it did and its index.
async fn write(member: &LocalShard, command: Vec<u8>) -> Reply<(Applied, u64)> {
    if command.is_empty() || command.len() > MAX_COMMAND_BYTES {
        let e = format!(
            "a write of {} bytes does not fit one log record",
            command.len()
        );
        return Err(Failure::Refused(
            vecraft_storage::error::Refusal::InvalidArgument(e),
        ));
    }
    // A hand-over waits for this write, or this write for the hand-over.
    let _pass = member.group().write_pass().await;
    let raft = member.group().raft();
    let leading = raft.metrics().borrow().state == ServerState::Leader;
    if leading && (member.stands_aside() || cut_off(&raft.metrics().borrow())) {
        // Not proposed, so surely not applied: the router tries the other replicas until
        // one leads, or this one hears from its quorum again.
        return Err(Failure::NotLeader(None));
    }
    let proposed = raft.client_write(Proposal(command));
    let answer = if leading {
        tokio::select! {
            answer = proposed => answer,
            () = stopped_leading(raft) => return Err(Failure::Unavailable(format!(
                "this node stopped leading the shard's group, or heard from no quorum for \
                 {LEADER_CUT_OFF_MS} ms, with the write in flight"
            ))),
        }
    } else {
        // Refused at once ("not the leader").
        proposed.await
    };
    match answer {
        Ok(response) => {
            let index = response.log_id.index;
            response.data.map(|a| (a, index)).map_err(Failure::Refused)
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(Failure::NotLeader(f.leader_id))
        }
        Err(RaftError::Fatal(Fatal::StorageError(e))) => Err(Failure::Stopped(e.to_string())),
        Err(e) => Err(Failure::Unavailable(e.to_string())),
    }
}

/// How long the follower picked in a hand-over has to answer that it campaigns.
const ELECT_TTL: Duration = Duration::from_secs(1);

/// Hands `member`'s leadership to `to` (`raft/handoff.rs`), asking `to` over Flight to
/// campaign once it holds the whole log; the group's leader after it.
pub(crate) async fn hand_over(member: &LocalShard, to: NodeId) -> Reply<NodeId> {
    let Some((group, peers)) = member.peers() else {
        return Err(Failure::Unavailable(
            "a single node's group has no one to hand to".into(),
        ));
    };
    let addr = {
        let m = member.group().raft().metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&to)
            .map(|n| n.addr.clone())
    };
    let Some(addr) = addr else {
        return Err(Failure::Unavailable(format!("node {to} is not a member")));
    };
    let term = member.group().raft().metrics().borrow().current_term;
    let elect = async {
        let reply = peers
            .call::<_, Reply<()>>(&addr, ELECT, &(group, term), ELECT_TTL)
            .await
            .map_err(|e| format!("node {to} was not asked to campaign: {e}"))?;
        reply.map_err(|e| format!("node {to} does not campaign: {e}"))
    };
    member
        .group()
        .hand_over(to, elect)
        .await
        .map_err(|e| match e {
            HandoffError::NotLeader(leader) => Failure::NotLeader(leader),
            e => Failure::Unavailable(format!("leadership not handed to node {to}: {e}")),
        })
}

/// How long a leader may go without a quorum's acknowledgement before the writes waiting on
/// it are given up: by then its followers' lease and election timeout (1.2 to 1.6 s) have
/// passed, and another leader is being elected.
const LEADER_CUT_OFF_MS: u64 = 2_000;

/// Returns once this member no longer leads, or leads without hearing from a quorum for
/// `LEADER_CUT_OFF_MS`. A write waiting on such a leader is answered only when it hears from
/// the new one (which may be never, if it is cut off): its caller is told now that the outcome
/// is unknown, instead of at the end of its call's deadline. openraft publishes metrics on
/// every turn of the group's core, heartbeat ticks included.
async fn stopped_leading(raft: &Raft<TypeConfig>) {
    let mut metrics = raft.metrics();
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.state != ServerState::Leader || cut_off(&m) {
                return;
            }
        }
        if metrics.changed().await.is_err() {
            return; // the group stopped; its writes fail on their own
        }
    }
}

/// How long a strong read waits for the leader to apply the entries already in its log
/// before it commits a no-op of its own to make them commit.
const OWN_LOG_WAIT: Duration = Duration::from_millis(300);

/// Returns once this leader has applied every entry its log held when the read came.
///
/// openraft's read index is the commit index as the leader knows it. A leader restored from
/// its files after a crash (openraft restarts a node that led as leader when no other was
/// elected meanwhile) knows no commit past what its state machine had applied, which may be
/// well behind what it had committed and acknowledged before the crash: a read at that index
/// misses acknowledged writes (the nemesis found such reads, seconds stale). Every committed
/// entry is in the leader's log, so a read that waits until the whole log is applied sees
/// them all; entries still in flight commit within a round trip. A leader whose last entry
/// is of an older term never commits it by counting replicas: after `OWN_LOG_WAIT` it
/// writes a no-op of its own term, whose commit commits everything before it.
async fn applied_own_log(raft: &Raft<TypeConfig>) -> Reply<()> {
    let last = raft.metrics().borrow().last_log_index;
    let applied = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
        m.last_applied.map(|id| id.index) >= last || m.state != ServerState::Leader
    };
    let wait = raft.wait(Some(OWN_LOG_WAIT));
    if wait.metrics(applied, "own log applied").await.is_err() {
        let noop = raft.client_write(Proposal(Vec::new()));
        match tokio::time::timeout(Duration::from_millis(LEADER_CUT_OFF_MS), noop).await {
            Ok(Ok(_)) => {}
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                return Err(Failure::NotLeader(f.leader_id));
            }
            Ok(Err(e)) => return Err(Failure::Unavailable(e.to_string())),
            Err(_) => {
                let e = "the leader could not commit an entry of its term in time";
                return Err(Failure::Unavailable(e.into()));
            }
        }
    }
    match raft.metrics().borrow().state {
        ServerState::Leader => Ok(()),
        _ => Err(Failure::NotLeader(None)),
    }
}

/// Whether a leader has heard from no quorum for `LEADER_CUT_OFF_MS`. One that only cannot
/// hear its followers (they hear it) stands aside before that (`step_aside.rs`), so that
/// they elect another; it leads in name until a higher term reaches it.
fn cut_off(m: &openraft::RaftMetrics<NodeId, BasicNode>) -> bool {
    m.millis_since_quorum_ack
        .is_some_and(|ms| ms > LEADER_CUT_OFF_MS)
}

/// Whether this replica may answer a read at `read` now; waits (briefly) as the level asks.
async fn may_read(member: &LocalShard, read: Consistency, min_applied: u64) -> Reply<()> {
    let raft = member.group().raft();
    match read {
        Consistency::Strong => {
            match raft.ensure_linearizable().await {
                Ok(_) => {}
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    return Err(Failure::NotLeader(f.leader_id));
                }
                Err(e) => return Err(Failure::Unavailable(e.to_string())),
            }
            applied_own_log(raft).await
        }
        Consistency::Bounded => raft
            .wait(Some(Duration::from_millis(BOUNDED_WAIT_MS)))
            .applied_index_at_least(Some(min_applied), "bounded read")
            .await
            .map(|_| ())
            .map_err(|_| Failure::Stale),
        Consistency::Eventual => Ok(()),
    }
}

/// Makes `voters` the group's voting members: new ones join as learners and catch up (log
/// or snapshot) first, then one membership change swaps the set.
pub(crate) async fn set_voters(
    raft: &Raft<TypeConfig>,
    voters: BTreeMap<NodeId, String>,
) -> Reply<()> {
    let leader_only = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Failure::NotLeader(f.leader_id)
        }
        e => Failure::Unavailable(e.to_string()),
    };
    let membership = raft.metrics().borrow().membership_config.clone();
    let known: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
    for (id, addr) in &voters {
        if !known.contains(id) {
            raft.add_learner(*id, BasicNode::new(addr), true)
                .await
                .map_err(leader_only)?;
        }
    }
    let current: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
    let wanted: BTreeSet<NodeId> = voters.keys().copied().collect();
    if current != wanted {
        raft.change_membership(wanted, false)
            .await
            .map_err(leader_only)?;
    }
    Ok(())
}

/// A refusal, as a status whose details carry the `Failure`.
pub(super) fn refused(failure: Failure) -> Status {
    let details = postcard::to_stdvec(&failure).unwrap_or_default();
    Status::with_details(
        Code::FailedPrecondition,
        failure.to_string(),
        details.into(),
    )
}

/// A request's body, or a final refusal of it (every replica would refuse it the same way).
pub(super) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Status> {
    postcard::from_bytes(body).map_err(|e| {
        refused(Failure::Refused(Refusal::InvalidArgument(format!(
            "bad message: {e}"
        ))))
    })
}

pub(crate) fn encode<T: Serialize>(reply: &T) -> Result<Bytes, Status> {
    postcard::to_stdvec(reply)
        .map(Bytes::from)
        .map_err(|e| Status::internal(format!("cannot encode the reply: {e}")))
}

/// How many of a connection's calls its peer may reset before this node reads them.
const MAX_PENDING_RESETS: usize = 4096;

/// Serves `service` on `listener` until the process ends (or the runtime stops, or
/// [`RaftService::stop_serving`]), to callers
/// that hold `secret` only (checked on each request's headers, before its body is read).
pub fn serve(
    listener: std::net::TcpListener,
    service: RaftService,
    secret: ClusterSecret,
) -> std::io::Result<SocketAddr> {
    serve_with_tls(listener, service, secret, None)
}

/// [`serve`], over TLS when `tls` is given: then only peers with a certificate of the
/// cluster's CA get to make a call.
pub fn serve_with_tls(
    listener: std::net::TcpListener,
    service: RaftService,
    secret: ClusterSecret,
    tls: Option<ClusterTls>,
) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let service_serving = Arc::clone(&service.serving);
    let server = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let server = InterceptedService::new(server, move |request| secret.check(request));
    let serving = Arc::clone(&service_serving);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server()).map_err(|e| {
            let why = format!("the cluster's TLS certificate or key: {e}");
            std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
        })?;
    }
    crate::raft::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("inside the runtime");
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let _ = builder
            // A peer's calls that time out while this node cannot answer (paused, cut off)
            // are reset by the peer, and reach this node together once it can. At h2's
            // default of 20 such resets the whole connection goes, with every call on it
            // (`GoAway … too_many_resets`). This loosens h2's guard against rapid resets on
            // this port, which only the cluster's nodes should reach (resets are counted
            // before the secret is checked).
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
            .add_service(server)
            .serve_with_incoming_shutdown(incoming, stopping(serving.stop.subscribe()))
            .await;
        serving.stopped.send_replace(true);
    });
    Ok(addr)
}

async fn stopping(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

type Unsupported<T> = Result<Response<BoxStream<'static, Result<T, Status>>>, Status>;

fn unsupported<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not served by a Vecraft node (yet)"))
}

#[tonic::async_trait]
impl FlightService for RaftService {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let body = self.act(request.into_inner()).await?;
        let reply = arrow_flight::Result { body };
        Ok(Response::new(Box::pin(stream::once(async { Ok(reply) }))))
    }

    async fn list_actions(&self, _request: Request<Empty>) -> Unsupported<ActionType> {
        let types = [APPEND, VOTE, WRITE, STATUS, CHECKPOINT, MEMBERS, PING].map(|t| {
            Ok(ActionType {
                r#type: t.to_string(),
                description: String::new(),
            })
        });
        Ok(Response::new(Box::pin(stream::iter(types))))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Unsupported<HandshakeResponse> {
        unsupported()
    }

    async fn list_flights(&self, _request: Request<Criteria>) -> Unsupported<FlightInfo> {
        unsupported()
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unsupported()
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unsupported()
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unsupported()
    }

    async fn do_get(&self, request: Request<Ticket>) -> Unsupported<FlightData> {
        Ok(Response::new(self.read(request.into_inner()).await?))
    }

    /// A snapshot pushed to a member on this node (`snapshot_push.rs`).
    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Unsupported<PutResult> {
        let reply = super::snapshot_push::receive(self, request.into_inner()).await?;
        Ok(Response::new(Box::pin(stream::once(async { Ok(reply) }))))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Unsupported<FlightData> {
        unsupported()
    }
}
