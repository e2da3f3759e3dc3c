//! The server side of the raft protocol: `RaftService` over tonic, handing each call to
//! the local openraft node.

use openraft::raft::InstallSnapshotRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};
use zaqar_proto::raft_pb::raft_service_server::{RaftService, RaftServiceServer};
use zaqar_proto::raft_pb::{RaftJson, SnapshotChunk};

use crate::raft::network::{from_json, to_json, MAX_MESSAGE};
use crate::raft::types::{Command, Raft};

/// Serves one raft node to its peers.
pub struct RaftGrpc {
    raft: Raft,
}

impl RaftGrpc {
    pub fn new(raft: Raft) -> Self {
        RaftGrpc { raft }
    }

    /// The tonic service to add to a `tonic::transport::Server`.
    pub fn into_service(self) -> RaftServiceServer<RaftGrpc> {
        RaftServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

type Reply = Result<Response<RaftJson>, Status>;

fn decode<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T, Status> {
    from_json(json).map_err(|err| Status::invalid_argument(format!("undecodable {what}: {err}")))
}

/// The JSON `Result` every call answers with.
fn reply<T: Serialize>(result: &T) -> Reply {
    to_json(result)
        .map(|json| Response::new(RaftJson { json }))
        .map_err(|err| Status::internal(format!("cannot encode a raft reply: {err}")))
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(&self, request: Request<RaftJson>) -> Reply {
        let rpc = decode(&request.into_inner().json, "append-entries request")?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftJson>) -> Reply {
        let rpc = decode(&request.into_inner().json, "vote request")?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<SnapshotChunk>) -> Reply {
        let chunk = request.into_inner();
        let rpc = InstallSnapshotRequest {
            vote: decode(&chunk.vote_json, "snapshot vote")?,
            meta: decode(&chunk.meta_json, "snapshot meta")?,
            offset: chunk.offset,
            data: chunk.data,
            done: chunk.done,
        };
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn client_write(&self, request: Request<RaftJson>) -> Reply {
        let command: Command = decode(&request.into_inner().json, "command")?;
        let result = self.raft.client_write(command).await;
        reply(&result.map(|response| response.data))
    }

    async fn read_index(&self, _request: Request<RaftJson>) -> Reply {
        let result = self.raft.get_read_log_id().await;
        reply(&result.map(|(read_log_id, _applied)| read_log_id))
    }
}
