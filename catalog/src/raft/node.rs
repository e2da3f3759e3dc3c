//! One raft catalog node: startup from its data directory, the raft service for its
//! peers, cluster bootstrap, membership changes, status and shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, InitializeError};
use openraft::{ChangeMembers, ServerState};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use zaqar_proto::ZaqarError;

use crate::backend::CatalogResult;
use crate::raft::config::{validate_addr, RaftConfig};
use crate::raft::dir_lock::DirLock;
use crate::raft::log_store::LogStore;
use crate::raft::network::{Dialer, Forwarder, NetworkFactory};
use crate::raft::service::RaftGrpc;
use crate::raft::state::CatalogState;
use crate::raft::state_machine::{SharedState, StateMachine};
use crate::raft::types::{ClientWriteError, Node, NodeId, Raft, RaftError};
use crate::watch::EventHub;

/// How long a stopping node waits for its open peer connections to finish.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(2);

/// A running raft catalog node. It serves the raft protocol to its peers and is a
/// [`CatalogBackend`](crate::CatalogBackend) (see `catalog.rs`). Stop it with
/// [`shutdown`](Self::shutdown).
pub struct RaftCatalog {
    pub(crate) node_id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) state: SharedState,
    pub(crate) forwarder: Forwarder,
    pub(crate) request_timeout: Duration,
    /// What the state machine applies, for this node's watchers.
    pub(crate) events: EventHub,
    /// Leader changes and snapshot times, counted as they happen (metrics).
    pub(crate) watched: Arc<super::metrics::RaftWatched>,
    server: Mutex<Option<RunningServer>>,
    /// The lock of the data directory, released by [`shutdown`](Self::shutdown).
    dir_lock: std::sync::Mutex<Option<DirLock>>,
}

struct RunningServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// A node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    pub node_id: NodeId,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Index of the last entry in the latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Index of the last entry removed from the log (it is in a snapshot).
    pub purged_index: Option<u64>,
    /// The voters, `(id, host:port)`, by id.
    pub voters: Vec<(NodeId, String)>,
    /// The learners (non-voting members), `(id, host:port)`, by id.
    pub learners: Vec<(NodeId, String)>,
}

impl RaftCatalog {
    /// Starts the node: binds `config.listen_addr`, then as [`start_on`](Self::start_on).
    pub async fn start(config: RaftConfig) -> CatalogResult<RaftCatalog> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen_addr).await.map_err(|err| {
            ZaqarError::unavailable(format!(
                "cannot listen for raft peers on {}: {err}",
                config.listen_addr
            ))
        })?;
        RaftCatalog::start_on(config, listener).await
    }

    /// Starts the node with its raft service on `listener`: opens (or creates) the log
    /// and snapshot in `config.data_dir`, serves the peers, and initializes a new
    /// cluster when this node is the lowest of `config.initial_members` and its log is
    /// empty. Returns without waiting for a leader.
    pub async fn start_on(config: RaftConfig, listener: TcpListener) -> CatalogResult<RaftCatalog> {
        config.validate()?;
        let openraft_config = Arc::new(config.openraft_config()?);
        let dir = config.data_dir.clone();
        let events = EventHub::default();
        let applied = events.clone();
        let repair_log = config.repair_log;
        let (dir_lock, log_store, state_machine) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let lock = DirLock::acquire(&dir)?;
            Ok::<_, std::io::Error>((
                lock,
                LogStore::open(&dir.join("raft-log"), repair_log)?,
                StateMachine::open(&dir.join("raft-snapshot"), applied)?,
            ))
        })
        .await
        .map_err(|err| ZaqarError::internal(format!("raft storage task failed: {err}")))?
        .map_err(|err| {
            let hint = if err.kind() == std::io::ErrorKind::InvalidData {
                " (if the other catalog nodes of the cluster are up, start this node once with \
                 --repair-log: its log is cut at the damage, a copy kept beside it, and the \
                 leader sends it what it lost)"
            } else {
                ""
            };
            ZaqarError::unavailable(format!(
                "cannot open the raft data in {}: {err}{hint}",
                config.data_dir.display()
            ))
        })?;
        let state = state_machine.state();
        let dialer = Dialer::new(config.cluster_token.clone(), config.source_ip);
        let raft = Raft::new(
            config.node_id,
            openraft_config,
            NetworkFactory(dialer.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|err| ZaqarError::unavailable(format!("cannot start the raft node: {err}")))?;

        let incoming = TcpIncoming::from_listener(listener, true, None)
            .map_err(|err| ZaqarError::unavailable(format!("cannot serve raft peers: {err}")))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    config
                        .cluster_token
                        .require(RaftGrpc::new(raft.clone()).into_service()),
                )
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        let watched = super::metrics::RaftWatched::follow(&raft);
        let node = RaftCatalog {
            node_id: config.node_id,
            watched,
            raft,
            state,
            forwarder: Forwarder::new(dialer),
            request_timeout: config.request_timeout,
            events,
            server: Mutex::new(Some(RunningServer { stop, task })),
            dir_lock: std::sync::Mutex::new(Some(dir_lock)),
        };
        if let Err(err) = node.initialize_if_new(&config).await {
            node.shutdown().await;
            return Err(err);
        }
        tracing::info!(node_id = config.node_id, listen = %config.listen_addr,
            advertise = %config.advertise_addr, data_dir = %config.data_dir.display(),
            "raft catalog node started");
        Ok(node)
    }

    async fn initialize_if_new(&self, config: &RaftConfig) -> CatalogResult<()> {
        if !config.initializes() || self.raft.is_initialized().await.map_err(stopped)? {
            return Ok(());
        }
        let members: BTreeMap<NodeId, Node> = config
            .initial_members
            .iter()
            .map(|(id, addr)| (*id, Node::new(addr)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node_id = self.node_id, members = ?config.initial_members,
                    "raft cluster initialized");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(err) => Err(ZaqarError::bad_request(format!(
                "cannot initialize the raft cluster: {err}"
            ))),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> RaftStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let addr = |id: NodeId| {
            let node = membership.get_node(&id);
            (id, node.map(|n| n.addr.clone()).unwrap_or_default())
        };
        RaftStatus {
            node_id: self.node_id,
            state: format!("{:?}", metrics.state),
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            last_applied_index: metrics.last_applied.map(|id| id.index),
            snapshot_index: metrics.snapshot.map(|id| id.index),
            purged_index: metrics.purged.map(|id| id.index),
            voters: membership.voter_ids().map(addr).collect(),
            learners: membership.learner_ids().map(addr).collect(),
        }
    }

    /// Whether this node is the leader, as far as it knows.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Adds a non-voting member that receives the log (on the leader). Returns once the
    /// learner has caught up, so that it can be promoted by
    /// [`change_membership`](Self::change_membership) without stalling the cluster.
    pub async fn add_learner(&self, node_id: NodeId, addr: &str) -> CatalogResult<()> {
        validate_addr(addr)?;
        self.raft
            .add_learner(node_id, Node::new(addr), true)
            .await
            .map_err(membership_error)?;
        tracing::info!(node_id, addr, "raft learner added");
        Ok(())
    }

    /// Makes `voters` the voters of the cluster (on the leader); nodes that were voters
    /// and are not in `voters` leave the cluster. Every new voter must have been added
    /// as a learner first.
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> CatalogResult<()> {
        let changes = ChangeMembers::ReplaceAllVoters(voters.clone());
        self.raft
            .change_membership(changes, false)
            .await
            .map_err(membership_error)?;
        tracing::info!(voters = ?voters, "raft membership changed");
        Ok(())
    }

    /// Adds a voter: [`add_learner`](Self::add_learner), then
    /// [`change_membership`](Self::change_membership) with it among the voters.
    pub async fn add_voter(&self, node_id: NodeId, addr: &str) -> CatalogResult<()> {
        self.add_learner(node_id, addr).await?;
        let mut voters: BTreeSet<NodeId> =
            self.status().voters.into_iter().map(|(id, _)| id).collect();
        voters.insert(node_id);
        self.change_membership(voters).await
    }

    /// Removes a node from the cluster (on the leader): a voter leaves the voters and
    /// the membership, a learner the membership. `not_found` when it is no member.
    pub async fn remove_node(&self, node_id: NodeId) -> CatalogResult<()> {
        let status = self.status();
        let is = |members: &[(NodeId, String)]| members.iter().any(|(id, _)| *id == node_id);
        if is(&status.voters) {
            let voters = status.voters.iter().map(|(id, _)| *id);
            self.change_membership(voters.filter(|id| *id != node_id).collect())
                .await?;
        } else if is(&status.learners) {
            let changes = ChangeMembers::RemoveNodes(BTreeSet::from([node_id]));
            self.raft
                .change_membership(changes, false)
                .await
                .map_err(membership_error)?;
        } else {
            return Err(ZaqarError::not_found(format!(
                "raft node {node_id} is not a member of the catalog cluster"
            )));
        }
        tracing::info!(node_id, "raft node removed");
        Ok(())
    }

    /// Stops serving the peers and stops the raft node. Catalog calls then fail as
    /// `unavailable`. What was acknowledged is on disk already.
    pub async fn shutdown(&self) {
        if let Some(server) = self.server.lock().await.take() {
            let _ = server.stop.send(());
            let abort = server.task.abort_handle();
            if tokio::time::timeout(SERVER_STOP_GRACE, server.task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let Err(err) = self.raft.shutdown().await {
            tracing::warn!(node_id = self.node_id, error = %err, "raft node stopped uncleanly");
        }
        self.dir_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        tracing::info!(node_id = self.node_id, "raft catalog node stopped");
    }

    /// A copy of this node's state machine, without any consistency check.
    #[cfg(test)]
    pub(crate) fn local_state(&self) -> CatalogState {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn read_state<T>(&self, read: impl FnOnce(&CatalogState) -> T) -> T {
        read(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }
}

pub(crate) fn stopped(err: impl std::fmt::Display) -> ZaqarError {
    ZaqarError::unavailable(format!("the raft node has stopped: {err}"))
}

fn membership_error(err: RaftError<ClientWriteError>) -> ZaqarError {
    match err {
        RaftError::APIError(ClientWriteError::ForwardToLeader(leader)) => {
            let leader = match (leader.leader_id, leader.leader_node) {
                (Some(id), Some(node)) => format!("node {id} at {}", node.addr),
                _ => "not known yet".to_string(),
            };
            ZaqarError::unavailable(format!(
                "membership changes go to the raft leader; the leader is {leader}"
            ))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(err)) => match err {
            ChangeMembershipError::InProgress(_) => {
                ZaqarError::unavailable(format!("another membership change is in progress: {err}"))
            }
            ChangeMembershipError::EmptyMembership(_)
            | ChangeMembershipError::LearnerNotFound(_) => {
                ZaqarError::bad_request(format!("invalid membership change: {err}"))
            }
        },
        RaftError::Fatal(fatal) => stopped(fatal),
    }
}
