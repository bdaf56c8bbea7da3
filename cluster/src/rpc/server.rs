//! The node's Flight server: routes each Raft message to its group's `Raft` handle, and
//! answers searches of its shard replicas with Arrow batches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::TryStreamExt;
use futures::stream::{self, BoxStream};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{BasicNode, Raft, Snapshot, SnapshotMeta, Vote};
use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::codegen::Bytes;
use tonic::{Request, Response, Status, Streaming};

use super::{APPEND, GroupId, MAX_MESSAGE_BYTES, SNAPSHOT, VOTE};
use vecraft_storage::shard::{SearchRequest, Shard};

use crate::raft::{NodeId, SnapshotData, TypeConfig};

/// The Raft groups (and their shards) this node serves, by id.
#[derive(Clone, Default)]
pub struct RaftService {
    groups: Arc<RwLock<HashMap<GroupId, (Raft<TypeConfig>, Arc<Shard>)>>>,
}

impl RaftService {
    pub fn register(&self, group: GroupId, raft: Raft<TypeConfig>, shard: Arc<Shard>) {
        self.groups.write().insert(group, (raft, shard));
    }

    pub fn unregister(&self, group: &str) {
        self.groups.write().remove(group);
    }

    fn shard(&self, group: &str) -> Result<Arc<Shard>, Status> {
        let groups = self.groups.read();
        let (_, shard) = groups
            .get(group)
            .ok_or_else(|| Status::not_found(format!("no shard {group} on this node")))?;
        Ok(Arc::clone(shard))
    }

    fn group(&self, group: &str) -> Result<Raft<TypeConfig>, Status> {
        self.groups
            .read()
            .get(group)
            .map(|(raft, _)| raft.clone())
            .ok_or_else(|| Status::not_found(format!("no Raft group {group} on this node")))
    }

    /// A search of this node's replica of a shard, as Arrow batches (`DoGet`).
    async fn search(
        &self,
        ticket: Ticket,
    ) -> Result<BoxStream<'static, Result<FlightData, Status>>, Status> {
        let (group, request): (GroupId, SearchRequest) = decode(&ticket.ticket)?;
        let shard = self.shard(&group)?;
        let batch = tokio::task::spawn_blocking(move || shard.search(&request))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let stream = FlightDataEncoderBuilder::new()
            .build(stream::once(async { Ok(batch) }))
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Box::pin(stream))
    }

    async fn act(&self, action: Action) -> Result<Bytes, Status> {
        match action.r#type.as_str() {
            APPEND => {
                let (group, rpc): (GroupId, AppendEntriesRequest<TypeConfig>) =
                    decode(&action.body)?;
                encode(&self.group(&group)?.append_entries(rpc).await)
            }
            VOTE => {
                let (group, rpc): (GroupId, VoteRequest<NodeId>) = decode(&action.body)?;
                encode(&self.group(&group)?.vote(rpc).await)
            }
            SNAPSHOT => {
                type Body = (
                    GroupId,
                    Vote<NodeId>,
                    SnapshotMeta<NodeId, BasicNode>,
                    Vec<u8>,
                );
                let (group, vote, meta, bytes): Body = decode(&action.body)?;
                let snapshot = Snapshot {
                    meta,
                    snapshot: Box::new(SnapshotData::Stream(bytes)),
                };
                encode(
                    &self
                        .group(&group)?
                        .install_full_snapshot(vote, snapshot)
                        .await,
                )
            }
            other => Err(Status::unimplemented(format!("unknown action {other}"))),
        }
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Status> {
    postcard::from_bytes(body).map_err(|e| Status::invalid_argument(format!("bad message: {e}")))
}

fn encode<T: Serialize>(reply: &T) -> Result<Bytes, Status> {
    postcard::to_stdvec(reply)
        .map(Bytes::from)
        .map_err(|e| Status::internal(format!("cannot encode the reply: {e}")))
}

/// Serves `service` on `listener` until the process ends (or the runtime stops).
pub fn serve(listener: std::net::TcpListener, service: RaftService) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let server = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    crate::raft::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("inside the runtime");
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let _ = tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(incoming)
            .await;
    });
    Ok(addr)
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
        let types = [APPEND, VOTE, SNAPSHOT].map(|t| {
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
        Ok(Response::new(self.search(request.into_inner()).await?))
    }

    async fn do_put(&self, _request: Request<Streaming<FlightData>>) -> Unsupported<PutResult> {
        unsupported()
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Unsupported<FlightData> {
        unsupported()
    }
}
