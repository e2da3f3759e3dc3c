//! The client side of the raft protocol over tonic: openraft's network to its peers,
//! and the forwarding of writes and read indexes to the leader.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::AnyError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Endpoint;
use tonic::{Code, Status};
use zaqar_proto::cluster_auth::{AuthChannel, ClusterToken};
use zaqar_proto::raft_pb::raft_service_client::RaftServiceClient;
use zaqar_proto::raft_pb::{RaftJson, SnapshotChunk};

use crate::raft::types::{
    CheckIsLeaderError, ClientWriteError, Command, CommandResult, LogId, Node, NodeId, RaftError,
    TypeConfig,
};

/// Largest gRPC message between raft nodes (a batch of entries or a snapshot chunk).
pub const MAX_MESSAGE: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

pub fn from_json<T: DeserializeOwned>(json: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(json)
}

/// How this node reaches its peers: the cluster token every call carries, and the
/// local address its connections leave from.
#[derive(Clone, Debug)]
pub struct Dialer {
    token: ClusterToken,
    source_ip: Option<IpAddr>,
}

impl Dialer {
    /// Calls carrying `token`, from `source_ip` (none: the address the system picks).
    pub fn new(token: ClusterToken, source_ip: Option<IpAddr>) -> Self {
        Dialer { token, source_ip }
    }

    /// A client of the raft service at `addr` (`host:port`). Connects on first use
    /// and reconnects after failures.
    pub fn connect(
        &self,
        addr: &str,
    ) -> Result<RaftServiceClient<AuthChannel>, tonic::transport::Error> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(self.source_ip);
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_with_connector_lazy(connector);
        Ok(RaftServiceClient::new(self.token.attach(channel))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }
}

/// openraft's factory of connections to peers.
pub struct NetworkFactory(pub Dialer);

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerConnection {
        PeerConnection {
            target,
            node: node.clone(),
            client: self.0.connect(&node.addr).map_err(|err| err.to_string()),
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerConnection {
    target: NodeId,
    node: Node,
    client: Result<RaftServiceClient<AuthChannel>, String>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Node, RaftError<E>>>;

impl PeerConnection {
    /// Runs one RPC within `ttl` and decodes its JSON `Result`: a remote raft error
    /// becomes a `RemoteError`, a failed call a network error.
    async fn call<T, E, F, Fut>(&self, ttl: Duration, rpc: F) -> RpcResult<T, E>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftServiceClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftJson>, Status>>,
    {
        let client = self.client.clone().map_err(|err| {
            RPCError::Unreachable(Unreachable::new(&AnyError::error(format!(
                "bad address {:?} of node {}: {err}",
                self.node.addr, self.target
            ))))
        })?;
        let reply = match tokio::time::timeout(ttl, rpc(client)).await {
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
            Ok(Err(status)) => return Err(status_to_rpc_error(&status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<T, RaftError<E>> =
            from_json(&reply.json).map_err(|err| RPCError::Network(NetworkError::new(&err)))?;
        result.map_err(|err| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                err,
            ))
        })
    }
}

/// A refused or broken connection means the peer is down: openraft backs off.
fn status_to_rpc_error<E: std::error::Error>(status: &Status) -> RPCError<NodeId, Node, E> {
    let err = AnyError::error(format!("{:?}: {}", status.code(), status.message()));
    match status.code() {
        Code::Unavailable => RPCError::Unreachable(Unreachable::new(&err)),
        _ => RPCError::Network(NetworkError::new(&err)),
    }
}

fn encode<T: Serialize, E: std::error::Error>(
    value: &T,
) -> Result<RaftJson, RPCError<NodeId, Node, E>> {
    to_json(value)
        .map(|json| RaftJson { json })
        .map_err(|err| RPCError::Network(NetworkError::new(&err)))
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let request = encode(&rpc)?;
        self.call(option.hard_ttl(), |mut client| async move {
            client.append_entries(request).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let json_error = |err: serde_json::Error| RPCError::Network(NetworkError::new(&err));
        let chunk = SnapshotChunk {
            vote_json: to_json(&rpc.vote).map_err(json_error)?,
            meta_json: to_json(&rpc.meta).map_err(json_error)?,
            offset: rpc.offset,
            data: rpc.data,
            done: rpc.done,
        };
        self.call(option.hard_ttl(), |mut client| async move {
            client.install_snapshot(chunk).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let request = encode(&rpc)?;
        self.call(option.hard_ttl(), |mut client| async move {
            client.vote(request).await
        })
        .await
    }
}

/// Clients of the peers this node forwards to, by address.
pub struct Forwarder {
    dialer: Dialer,
    clients: Mutex<HashMap<String, RaftServiceClient<AuthChannel>>>,
}

impl Forwarder {
    pub fn new(dialer: Dialer) -> Self {
        Forwarder {
            dialer,
            clients: Mutex::default(),
        }
    }

    fn client(&self, addr: &str) -> Result<RaftServiceClient<AuthChannel>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(addr) {
            return Ok(client.clone());
        }
        let client = self
            .dialer
            .connect(addr)
            .map_err(|err| format!("bad address {addr:?}: {err}"))?;
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Proposes `command` on the node at `addr`, which should be the leader. The outer
    /// error is a failed call, the inner one the remote raft's answer (e.g. that it is
    /// not the leader).
    pub async fn client_write(
        &self,
        addr: &str,
        command: &Command,
    ) -> Result<Result<CommandResult, RaftError<ClientWriteError>>, String> {
        let request = RaftJson {
            json: to_json(command).map_err(|err| err.to_string())?,
        };
        let reply = self.client(addr)?.client_write(request).await;
        decode_reply(addr, reply)
    }

    /// Asks the node at `addr`, which should be the leader, for the log id a
    /// linearizable read must wait for.
    pub async fn read_index(
        &self,
        addr: &str,
    ) -> Result<Result<Option<LogId>, RaftError<CheckIsLeaderError>>, String> {
        let request = RaftJson {
            json: b"null".to_vec(),
        };
        let reply = self.client(addr)?.read_index(request).await;
        decode_reply(addr, reply)
    }
}

fn decode_reply<T: DeserializeOwned>(
    addr: &str,
    reply: Result<tonic::Response<RaftJson>, Status>,
) -> Result<T, String> {
    let reply = reply.map_err(|status| {
        format!(
            "raft node {addr}: {:?}: {}",
            status.code(),
            status.message()
        )
    })?;
    from_json(&reply.into_inner().json)
        .map_err(|err| format!("raft node {addr} sent an undecodable reply: {err}"))
}
