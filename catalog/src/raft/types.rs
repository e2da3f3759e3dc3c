//! The openraft type configuration of the catalog and the commands its log carries.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::model::{FlavorSpec, Placement, PoolSpec, ProjectLimitsSpec};

/// A catalog node's raft id.
pub type NodeId = u64;
/// What the cluster knows of a node: the `host:port` its raft service listens on.
pub type Node = openraft::BasicNode;

/// A change to the catalog: one raft log entry.
///
/// Commands are validated before they are proposed, and the state machine decides their
/// outcome deterministically from the state they are applied to (so a placement's
/// compare-and-set is decided once, in log order, on every node). Every command is
/// idempotent, so a write retried after a lost reply does no harm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds the pool or replaces the pool of the same name.
    RegisterPool(PoolSpec),
    /// A pool-node's registration: adds the pool when it is new, else changes only its
    /// URI and endpoint.
    RegisterPoolNode(PoolSpec),
    /// Places the queue on `pool` unless it is placed already.
    PlaceOn {
        project: String,
        queue: String,
        pool: String,
    },
    /// Forgets the queue's placement.
    RemoveQueue { project: String, queue: String },
    /// Removes the pool unless queues are placed on it.
    RemovePool { name: String },
    /// Adds the flavor or replaces the flavor of the same name.
    PutFlavor(FlavorSpec),
    /// Removes the flavor record (its pools keep their flavor).
    RemoveFlavor { name: String },
    /// Sets a project's limits, replacing what it had.
    PutProjectLimits(ProjectLimitsSpec),
    /// Removes a project's limits.
    RemoveProjectLimits { project: String },
}

/// What applying a [`Command`] (or a raft-internal entry) produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Applied; nothing to report.
    Done,
    /// The placement in force after a [`Command::PlaceOn`].
    Placed(Placement),
    /// [`Command::PlaceOn`] named this pool, which does not exist; nothing changed.
    UnknownPool(String),
    /// [`Command::RemovePool`] named a pool that holds this many queues; nothing changed.
    PoolInUse(u64),
    /// [`Command::RemoveFlavor`] named a flavor that does not exist; nothing changed.
    UnknownFlavor(String),
    /// [`Command::RemoveProjectLimits`] named a project without limits; nothing changed.
    NoProjectLimits(String),
}

openraft::declare_raft_types!(
    /// The catalog's raft types: [`Command`] entries, [`CommandResult`] replies, `u64` node
    /// ids, snapshots as in-memory byte buffers, tokio.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A catalog raft node.
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;
pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, Node>;
pub type ForwardToLeader = openraft::error::ForwardToLeader<NodeId, Node>;
