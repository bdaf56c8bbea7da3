//! openraft's network for a group whose members are on other nodes: each message is a Flight
//! `DoAction` to the member's node, over one pooled HTTP/2 channel per node.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightData, Ticket};
use futures::{StreamExt, TryStreamExt};
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot, Vote};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::codegen::Bytes;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::auth::ClusterSecret;
use super::tls::ClusterTls;
use super::{APPEND, Failure, GroupId, MAX_MESSAGE_BYTES, PRE_VOTE, ReadTicket, VOTE};

use crate::raft::{Canvass, NodeId, PreVote, TypeConfig};

/// How long a connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Every connection is pinged this often, in use or not.
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
/// A connection whose ping is not answered within this is closed, and the calls on it fail
/// at once. A node that is paused or cut off still holds its connections open (its kernel
/// even accepts new ones), so without this a call to it would wait out its whole deadline
/// (30 s for a write) instead of moving to another replica.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// One lazily connected channel per peer node, shared by every group on this node; every
/// call carries the cluster's secret.
#[derive(Clone)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    pub(super) secret: ClusterSecret,
    /// Calls go over TLS with the cluster's CA (`tls.rs`).
    tls: Option<ClusterTls>,
}

impl Peers {
    pub fn new(secret: ClusterSecret) -> Peers {
        Peers::with_tls(secret, None)
    }

    /// Peers called over TLS when `tls` is given.
    pub fn with_tls(secret: ClusterSecret, tls: Option<ClusterTls>) -> Peers {
        Peers {
            channels: Arc::default(),
            secret,
            tls,
        }
    }

    pub(super) fn client(&self, addr: &str) -> Result<FlightServiceClient<Channel>, NetworkError> {
        let mut channels = self.channels.lock();
        let channel = match channels.get(addr) {
            Some(channel) => channel.clone(),
            None => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
                    .map_err(|e| NetworkError::new(&e))?;
                if let Some(tls) = &self.tls {
                    endpoint = endpoint
                        .tls_config(tls.client())
                        .map_err(|e| NetworkError::new(&e))?;
                }
                let channel = endpoint
                    .connect_timeout(CONNECT_TIMEOUT)
                    .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                    .keep_alive_while_idle(true)
                    .tcp_nodelay(true)
                    .connect_lazy();
                channels.insert(addr.to_string(), channel.clone());
                channel
            }
        };
        Ok(FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// Why a call got no answer.
#[derive(Debug)]
pub enum CallError {
    /// No connection to the node: the call was never delivered.
    Unreachable(String),
    /// Delivered, or maybe delivered, and then the answer was lost: the outcome is unknown.
    Lost(String),
    /// The node answered with a refusal.
    Failed(Failure),
    Timeout,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(m) => write!(f, "unreachable: {m}"),
            CallError::Lost(m) => write!(f, "no answer: {m}"),
            CallError::Failed(failure) => write!(f, "{failure}"),
            CallError::Timeout => f.write_str("timed out"),
        }
    }
}

impl CallError {
    pub(super) fn of(status: &Status) -> CallError {
        if !status.details().is_empty()
            && let Ok(failure) = postcard::from_bytes::<Failure>(status.details())
        {
            return CallError::Failed(failure);
        }
        if status.code() == Code::NotFound {
            return CallError::Failed(Failure::NoGroup);
        }
        if status.code() == Code::Unauthenticated {
            // Never acted on: the peer checks the secret before it reads the request.
            return CallError::Unreachable(format!(
                "the node refused this node's cluster secret: {}",
                status.message()
            ));
        }
        let text = format!("{status}");
        // Not connected, or refused by a server that stops (HTTP/2 guarantees a stream it
        // refuses, or one past its `GoAway`, was not processed: h2 fails those, and the calls
        // that came after the `GoAway`, with the `GoAway` itself; a stream the server took
        // fails otherwise, if at all).
        let never_sent = (status.code() == Code::Unavailable
            && (text.contains("connect") || text.contains("Connection refused")))
            || text.contains("REFUSED_STREAM")
            || text.contains("refused stream before processing")
            || (text.contains("kind: GoAway(") && text.contains("Remote)"))
            || canceled_before_sent(status);
        if never_sent {
            CallError::Unreachable(status.message().to_string())
        } else {
            CallError::Lost(text)
        }
    }
}

/// Whether hyper gave the call up because its connection closed before the call was written
/// ("operation was canceled" caused by "connection closed": the request was still queued
/// for the connection; one already written fails otherwise). A peer that stops serving
/// closes its connections so.
fn canceled_before_sent(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let cause = e.source();
        if e.to_string() == "operation was canceled"
            && cause.is_some_and(|c| c.to_string() == "connection closed")
        {
            return true;
        }
        source = cause;
    }
    false
}

impl Peers {
    /// Sends `body` as action `kind` to the node at `addr` and decodes its one result,
    /// within `ttl`.
    pub async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        addr: &str,
        kind: &str,
        body: &B,
        ttl: Duration,
    ) -> Result<R, CallError> {
        let client = self
            .client(addr)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let answer = call(client, &self.secret, kind, body, ttl).await;
        self.forget_if_broken(addr, &answer);
        answer
    }

    /// Drops the pooled channel to `addr` after a transport failure, so the next call
    /// connects afresh (a node that restarted on the same address is reached again at once).
    /// A call that only timed out keeps the channel: Raft's calls have a heartbeat's deadline,
    /// and on a loaded machine a fresh connection per late heartbeat kept replication from
    /// ever catching up; a connection its peer stopped answering is closed by the keepalive.
    pub(super) fn forget_if_broken<T>(&self, addr: &str, answer: &Result<T, CallError>) {
        if matches!(answer, Err(CallError::Unreachable(_) | CallError::Lost(_))) {
            self.channels.lock().remove(addr);
        }
    }

    /// Reads (searches or scans) a replica on the node at `addr`: its Arrow batches.
    pub async fn read(
        &self,
        addr: &str,
        ticket: &ReadTicket,
        ttl: Duration,
    ) -> Result<Vec<RecordBatch>, CallError> {
        self.do_get(addr, ticket, ttl, async |data| {
            let data = data.map_err(FlightError::from);
            let mut stream = FlightRecordBatchStream::new_from_flight_data(data);
            let mut batches = Vec::new();
            while let Some(batch) = stream.next().await {
                batches.push(batch.map_err(|e| match e {
                    FlightError::Tonic(s) => CallError::of(&s),
                    e => CallError::Lost(e.to_string()),
                })?);
            }
            if let (true, Some(schema)) = (batches.is_empty(), stream.schema()) {
                // No rows: the schema alone came.
                batches.push(RecordBatch::new_empty(Arc::clone(schema)));
            }
            Ok(batches)
        })
        .await
    }

    /// Streams the snapshot of a replica on the node at `addr` (a ticket of kind `Snapshot`)
    /// into `tx`, chunk by chunk; what the snapshot held. `started` is set once a chunk went
    /// to `tx` (after which the call cannot be retried elsewhere).
    pub async fn read_snapshot(
        &self,
        addr: &str,
        ticket: &ReadTicket,
        ttl: Duration,
        tx: &tokio::sync::mpsc::Sender<Vec<u8>>,
        started: &std::sync::atomic::AtomicBool,
    ) -> Result<vecraft_storage::shard::SnapshotInfo, CallError> {
        self.do_get(addr, ticket, ttl, async |mut stream| {
            while let Some(message) = stream.message().await.map_err(|s| CallError::of(&s))? {
                if let Some(info) = super::snapshot_stream::info_of(&message) {
                    return info.map_err(|e| CallError::Lost(e.to_string()));
                }
                started.store(true, std::sync::atomic::Ordering::Release);
                let chunk = message.data_body.to_vec();
                if tx.send(chunk).await.is_err() {
                    return Err(CallError::Lost("the snapshot's reader stopped".into()));
                }
            }
            Err(CallError::Lost("the snapshot stream ended early".into()))
        })
        .await
    }

    /// Sends `ticket` to the node at `addr` as a signed `DoGet` and hands the answer's stream
    /// to `consume`, all within `ttl`; a transport failure drops the pooled channel.
    async fn do_get<T>(
        &self,
        addr: &str,
        ticket: &ReadTicket,
        ttl: Duration,
        consume: impl AsyncFnOnce(tonic::Streaming<FlightData>) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let mut client = self
            .client(addr)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let ticket = postcard::to_stdvec(ticket).map_err(|e| CallError::Lost(e.to_string()))?;
        let read = async {
            let mut request = tonic::Request::new(Ticket {
                ticket: Bytes::from(ticket),
            });
            self.secret.sign(&mut request);
            let stream = client
                .do_get(request)
                .await
                .map_err(|s| CallError::of(&s))?
                .into_inner();
            consume(stream).await
        };
        let answer = tokio::time::timeout(ttl, read)
            .await
            .map_err(|_| CallError::Timeout)
            .and_then(|a| a);
        self.forget_if_broken(addr, &answer);
        answer
    }
}

/// Sends `body` as action `kind` through `client` and decodes the one result, within `ttl`.
async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
    mut client: FlightServiceClient<Channel>,
    secret: &ClusterSecret,
    kind: &str,
    body: &B,
    ttl: Duration,
) -> Result<R, CallError> {
    let body = postcard::to_stdvec(body).map_err(|e| CallError::Lost(e.to_string()))?;
    let mut action = tonic::Request::new(Action {
        r#type: kind.to_string(),
        body: Bytes::from(body),
    });
    secret.sign(&mut action);
    let reply = async {
        let mut results = client
            .do_action(action)
            .await
            .map_err(|s| CallError::of(&s))?
            .into_inner();
        let first = results.next().await;
        let result = first
            .ok_or_else(|| CallError::Lost(Missing.to_string()))?
            .map_err(|s| CallError::of(&s))?;
        postcard::from_bytes(&result.body).map_err(|e| CallError::Lost(e.to_string()))
    };
    tokio::time::timeout(ttl, reply)
        .await
        .map_err(|_| CallError::Timeout)?
}

/// The network of one group.
#[derive(Clone)]
pub struct FlightNetwork {
    group: GroupId,
    peers: Peers,
    silence: Silence,
}

impl FlightNetwork {
    /// The group's network; while `silence` is on, it sends its members no entries.
    pub fn new(group: GroupId, peers: Peers, silence: Silence) -> FlightNetwork {
        FlightNetwork {
            group,
            peers,
            silence,
        }
    }
}

/// A group's pre-votes over Flight (`raft/prevote.rs`).
pub struct FlightCanvass {
    group: GroupId,
    peers: Peers,
}

/// How long a voter has to answer a pre-vote: a shorter wait than a vote's, as a member cut
/// off from the others asks again soon anyway.
const PRE_VOTE_TTL: Duration = Duration::from_millis(500);

impl FlightCanvass {
    pub fn new(group: GroupId, peers: Peers) -> FlightCanvass {
        FlightCanvass { group, peers }
    }
}

impl Canvass for FlightCanvass {
    fn canvass(
        &self,
        voters: Vec<(NodeId, String)>,
        ask: PreVote,
        needed: usize,
    ) -> futures::future::BoxFuture<'static, bool> {
        let answers: futures::stream::FuturesUnordered<_> = voters
            .into_iter()
            .map(|(_, addr)| {
                let (peers, body) = (self.peers.clone(), (self.group.clone(), ask));
                async move {
                    let granted = peers.call::<_, bool>(&addr, PRE_VOTE, &body, PRE_VOTE_TTL);
                    granted.await.unwrap_or(false)
                }
            })
            .collect();
        Box::pin(enough_say_yes(answers, needed))
    }
}

/// Whether `needed` of `answers` say yes, as soon as they have (or all said what they say).
pub(super) async fn enough_say_yes(
    mut answers: futures::stream::FuturesUnordered<impl Future<Output = bool>>,
    needed: usize,
) -> bool {
    let mut yes = 0;
    while yes < needed {
        match answers.next().await {
            Some(granted) => yes += usize::from(granted),
            None => return false,
        }
    }
    true
}

/// On while a leader that heard from no quorum stands aside (`step_aside.rs`): its group's
/// network then sends no entries, heartbeats or snapshots, so its followers' leases run out.
#[derive(Clone, Debug, Default)]
pub struct Silence(Arc<AtomicBool>);

impl Silence {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// This group's link to one member.
pub struct Link {
    group: GroupId,
    target: NodeId,
    addr: String,
    peers: Peers,
    silence: Silence,
}

impl RaftNetworkFactory<TypeConfig> for FlightNetwork {
    type Network = Link;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Link {
        Link {
            group: self.group.clone(),
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            silence: self.silence.clone(),
        }
    }
}

impl Link {
    /// Sends `body` as action `kind` and decodes the one result, within `ttl`.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &mut self,
        kind: &str,
        body: &B,
        ttl: Duration,
    ) -> Result<R, CallError> {
        self.peers.call(&self.addr, kind, body, ttl).await
    }

    /// Sends a Raft request to the target's member of this group and returns its answer.
    async fn raft_call<Req: Serialize + Send, Resp: DeserializeOwned + Send>(
        &mut self,
        kind: &str,
        rpc: Req,
        action: RPCTypes,
        option: RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let ttl = option.hard_ttl();
        let body = (self.group.clone(), rpc);
        let reply: Result<Resp, RaftError<NodeId>> = self
            .call(kind, &body, ttl)
            .await
            .map_err(|e| self.rpc_error(e, action, ttl))?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn timeout(&self, action: RPCTypes, ttl: Duration) -> Timeout<NodeId> {
        Timeout {
            action,
            id: self.target,
            target: self.target,
            timeout: ttl,
        }
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        e: CallError,
        action: RPCTypes,
        ttl: Duration,
    ) -> RPCError<NodeId, BasicNode, E> {
        match e {
            CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Text(m))),
            CallError::Timeout => RPCError::Timeout(self.timeout(action, ttl)),
            e => RPCError::Network(NetworkError::new(&Text(e.to_string()))),
        }
    }
}

/// Why a leader standing aside sent nothing (openraft backs off and tries again later).
const STANDS_ASIDE: &str = "this leader heard from no quorum and stands aside";

struct Missing;

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the peer sent no reply")
    }
}

/// A message as an error, for openraft's error types.
#[derive(Debug)]
struct Text(String);

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Text {}

impl RaftNetwork<TypeConfig> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        if self.silence.is_on() {
            return Err(RPCError::Unreachable(Unreachable::new(&Text(
                STANDS_ASIDE.into(),
            ))));
        }
        self.raft_call(APPEND, rpc, RPCTypes::AppendEntries, option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.raft_call(VOTE, rpc, RPCTypes::Vote, option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        if self.silence.is_on() {
            let why = Text(STANDS_ASIDE.into());
            return Err(StreamingError::Unreachable(Unreachable::new(&why)));
        }
        let ttl = option.hard_ttl();
        let data = snapshot.snapshot;
        let write =
            move |out: &mut dyn std::io::Write| data.write_to(out).map_err(std::io::Error::other);
        let header = (self.group.clone(), vote, snapshot.meta);
        let push = self.peers.push_snapshot(&self.addr, &header, write, ttl);
        let target = self.target;
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            reply = push => reply.map_err(|e| match e {
                CallError::Unreachable(m) => StreamingError::Unreachable(Unreachable::new(&Text(m))),
                CallError::Timeout => StreamingError::Timeout(self.timeout(RPCTypes::InstallSnapshot, ttl)),
                e => StreamingError::Network(NetworkError::new(&Text(e.to_string()))),
            })?,
        };
        reply.map_err(|e| StreamingError::RemoteError(RemoteError::new(target, e)))
    }
}
