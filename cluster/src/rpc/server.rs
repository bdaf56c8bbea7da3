//! The node's Flight server: routes each Raft message to its group's `Raft` handle, proposes
//! writes to the shard replicas this node leads, answers reads of its replicas with Arrow
//! batches (after checking the read's consistency), and hands other actions (`meta.*`) to
//! whoever registered for them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
use openraft::Raft;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tonic::codegen::Bytes;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status, Streaming};

use super::auth::ClusterSecret;
use super::leading::{may_read, write};
use super::membership::{hand_over, set_voters};
use super::tls::ClusterTls;
use super::{
    APPEND, CHECKPOINT, ELECT, Failure, GroupId, HAND_OVER, MAX_MESSAGE_BYTES, MEMBERS, PING,
    PRE_VOTE, Pong, ReadKind, ReadTicket, STATUS, VOTE, WRITE,
};
use vecraft_storage::error::Refusal;
use vecraft_storage::shard::Applied;

use crate::local::LocalShard;
use crate::raft::{NodeId, PreVote, TypeConfig};
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

pub(super) type Reply<T> = Result<T, Failure>;

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
