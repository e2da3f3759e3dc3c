//! The raft node as a `CatalogBackend`: writes go through the leader's log, reads are
//! linearizable reads of the local state machine.
//!
//! - **Writes** are proposed to the local raft. On a node that is not the leader, the
//!   proposal is forwarded once over the `ClientWrite` RPC to the leader this node knows
//!   of; when there is none yet, or it has changed, the call waits and tries again until
//!   `request_timeout`, then fails as `unavailable`. Every command is idempotent, so a
//!   retry after a lost reply is safe.
//! - **Reads** are linearizable, on every node: the leader confirms its leadership with
//!   a quorum (`ensure_linearizable`); any other node asks the leader for its read index
//!   (the `ReadIndex` RPC), waits until it has applied that far, and reads its own state
//!   machine. So a read sees every write acknowledged before it started, wherever
//!   either was made, and the read itself never crosses the network with the data.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use zaqar_proto::ZaqarError;

use crate::backend::{CatalogBackend, CatalogResult};
use crate::model::{
    flavor_not_found, pool_in_use, project_limits_not_found, validate_flavor_name,
    validate_listing, validate_pool_name, validate_project, validate_queue, FlavorSpec, ListQueues,
    Placement, PoolSpec, ProjectLimitsSpec, QueuePage,
};
use crate::raft::node::{stopped, RaftCatalog};
use crate::raft::types::{
    CheckIsLeaderError, ClientWriteError, Command, CommandResult, ForwardToLeader, RaftError,
};
use crate::watch::Watch;

const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_millis(300);
/// An attempt that takes longer is abandoned and made again (a stale leader may hold
/// a proposal until it learns of the new term).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The time left to a call, and the pauses between its attempts.
struct Deadline {
    at: Instant,
    pause: Duration,
}

impl Deadline {
    fn after(timeout: Duration) -> Self {
        Deadline {
            at: Instant::now() + timeout,
            pause: FIRST_PAUSE,
        }
    }

    fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Sleeps before the next attempt; false when no time is left for one.
    async fn pause(&mut self) -> bool {
        let pause = self.pause.min(self.remaining());
        tokio::time::sleep(pause).await;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        !self.remaining().is_zero()
    }
}

/// The leader's address when it is known and is not this node.
fn remote_leader(node_id: u64, leader: ForwardToLeader) -> Option<String> {
    match (leader.leader_id, leader.leader_node) {
        (Some(id), Some(node)) if id != node_id => Some(node.addr),
        _ => None,
    }
}

impl RaftCatalog {
    /// A fatal raft error ends the call when the node has stopped; openraft also reports
    /// a reply lost in a change of leader as fatal, and that call is retried.
    fn fatal(&self, fatal: impl std::fmt::Display, problem: &mut String) -> CatalogResult<()> {
        if self.raft.metrics().borrow().running_state.is_err() {
            return Err(stopped(fatal));
        }
        *problem = fatal.to_string();
        Ok(())
    }

    /// Commits `command` through the leader and returns what applying it produced.
    async fn propose(&self, command: Command) -> CatalogResult<CommandResult> {
        let mut deadline = Deadline::after(self.request_timeout);
        let mut problem = "no raft leader is known".to_string();
        loop {
            let remaining = deadline.remaining().min(ATTEMPT_TIMEOUT);
            let local = tokio::time::timeout(remaining, self.raft.client_write(command.clone()));
            match local.await {
                Err(_) => problem = format!("no answer in {remaining:?}"),
                Ok(Ok(response)) => return Ok(response.data),
                Ok(Err(RaftError::Fatal(fatal))) => self.fatal(fatal, &mut problem)?,
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(leader)))) => {
                    if let Some(addr) = remote_leader(self.node_id, leader) {
                        let forwarded = self.forwarder.client_write(&addr, &command);
                        match tokio::time::timeout(remaining, forwarded).await {
                            Err(_) => problem = format!("no answer from {addr} in {remaining:?}"),
                            Ok(Ok(Ok(result))) => return Ok(result),
                            Ok(Ok(Err(err))) => problem = format!("the leader at {addr}: {err}"),
                            Ok(Err(err)) => problem = err,
                        }
                    }
                }
                Ok(Err(RaftError::APIError(err @ ClientWriteError::ChangeMembershipError(_)))) => {
                    problem = err.to_string();
                }
            }
            if !deadline.pause().await {
                break;
            }
        }
        Err(ZaqarError::unavailable(format!(
            "the catalog write did not reach a raft leader in {:?}: {problem}",
            self.request_timeout
        )))
    }

    /// Returns once this node's state machine holds every write acknowledged before the
    /// call (see the module documentation).
    async fn read_barrier(&self) -> CatalogResult<()> {
        let mut deadline = Deadline::after(self.request_timeout);
        let mut problem = "no raft leader is known".to_string();
        loop {
            let remaining = deadline.remaining().min(ATTEMPT_TIMEOUT);
            let local = tokio::time::timeout(remaining, self.raft.ensure_linearizable());
            match local.await {
                Err(_) => problem = format!("no answer in {remaining:?}"),
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(RaftError::Fatal(fatal))) => self.fatal(fatal, &mut problem)?,
                Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(err)))) => {
                    problem = err.to_string();
                }
                Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(leader)))) => {
                    if let Some(addr) = remote_leader(self.node_id, leader) {
                        let asked = self.forwarder.read_index(&addr);
                        match tokio::time::timeout(remaining, asked).await {
                            Err(_) => problem = format!("no answer from {addr} in {remaining:?}"),
                            Ok(Ok(Ok(read_log_id))) => {
                                let index = read_log_id.map(|id| id.index);
                                let wait = self.raft.wait(Some(deadline.remaining()));
                                let applied =
                                    wait.applied_index_at_least(index, "linearizable read");
                                return match applied.await {
                                    Ok(_) => Ok(()),
                                    Err(openraft::metrics::WaitError::ShuttingDown) => {
                                        Err(stopped("shutting down"))
                                    }
                                    Err(err) => Err(ZaqarError::unavailable(format!(
                                        "this catalog node did not catch up with the leader: {err}"
                                    ))),
                                };
                            }
                            Ok(Ok(Err(err))) => problem = format!("the leader at {addr}: {err}"),
                            Ok(Err(err)) => problem = err,
                        }
                    }
                }
            }
            if !deadline.pause().await {
                break;
            }
        }
        Err(ZaqarError::unavailable(format!(
            "the catalog read found no raft leader in {:?}: {problem}",
            self.request_timeout
        )))
    }
}

#[async_trait]
impl CatalogBackend for RaftCatalog {
    async fn put_flavor(&self, flavor: FlavorSpec) -> CatalogResult<()> {
        let flavor = flavor.validated()?;
        let name = flavor.name.clone();
        self.propose(Command::PutFlavor(flavor)).await?;
        tracing::info!(flavor = %name, "flavor stored");
        Ok(())
    }

    async fn get_flavor(&self, name: &str) -> CatalogResult<FlavorSpec> {
        validate_flavor_name(name)?;
        self.read_barrier().await?;
        self.read_state(|state| state.flavor(name))
            .ok_or_else(|| flavor_not_found(name))
    }

    async fn list_flavors(&self) -> CatalogResult<Vec<FlavorSpec>> {
        self.read_barrier().await?;
        Ok(self.read_state(|state| state.flavors()))
    }

    async fn remove_flavor(&self, name: &str) -> CatalogResult<()> {
        validate_flavor_name(name)?;
        let command = Command::RemoveFlavor {
            name: name.to_string(),
        };
        match self.propose(command).await? {
            CommandResult::Done => Ok(()),
            CommandResult::UnknownFlavor(_) => Err(flavor_not_found(name)),
            other => Err(ZaqarError::internal(format!(
                "a flavor removal was answered with {other:?}"
            ))),
        }
    }

    async fn put_project_limits(&self, limits: ProjectLimitsSpec) -> CatalogResult<()> {
        let limits = limits.validated()?;
        let (project, json) = (limits.project.clone(), limits.limits_json.clone());
        self.propose(Command::PutProjectLimits(limits)).await?;
        tracing::info!(project = %project, limits = %json, "project limits stored");
        Ok(())
    }

    async fn get_project_limits(&self, project: &str) -> CatalogResult<Option<ProjectLimitsSpec>> {
        validate_project(project)?;
        self.read_barrier().await?;
        Ok(self.read_state(|state| state.project_limits(project)))
    }

    async fn list_project_limits(&self) -> CatalogResult<Vec<ProjectLimitsSpec>> {
        self.read_barrier().await?;
        Ok(self.read_state(|state| state.all_project_limits()))
    }

    async fn remove_project_limits(&self, project: &str) -> CatalogResult<()> {
        validate_project(project)?;
        let command = Command::RemoveProjectLimits {
            project: project.to_string(),
        };
        match self.propose(command).await? {
            CommandResult::Done => {
                tracing::info!(project, "project limits removed");
                Ok(())
            }
            CommandResult::NoProjectLimits(_) => Err(project_limits_not_found(project)),
            other => Err(ZaqarError::internal(format!(
                "a project limits removal was answered with {other:?}"
            ))),
        }
    }

    async fn add_pool(&self, pool: PoolSpec) -> CatalogResult<()> {
        let pool = pool.validated()?;
        let (name, weight, flavor) = (pool.name.clone(), pool.weight, pool.flavor.clone());
        self.propose(Command::RegisterPool(pool)).await?;
        tracing::info!(pool = %name, weight, flavor = %flavor, "pool registered");
        Ok(())
    }

    async fn register_pool(&self, pool: PoolSpec) -> CatalogResult<PoolSpec> {
        let pool = pool.validated()?;
        let name = pool.name.clone();
        self.propose(Command::RegisterPoolNode(pool)).await?;
        let stored = self.get_pool(&name).await?;
        tracing::info!(pool = %name, weight = stored.weight, flavor = %stored.flavor,
            endpoint = %stored.endpoint, "pool-node registered");
        Ok(stored)
    }

    fn watch(&self) -> CatalogResult<Watch> {
        Ok(self.events.subscribe())
    }

    async fn remove_pool(&self, name: &str) -> CatalogResult<()> {
        validate_pool_name(name)?;
        let command = Command::RemovePool {
            name: name.to_string(),
        };
        match self.propose(command).await? {
            CommandResult::Done => {
                tracing::info!(pool = %name, "pool removed");
                Ok(())
            }
            CommandResult::UnknownPool(_) => Err(ZaqarError::not_found(format!(
                "pool {name:?} does not exist"
            ))),
            CommandResult::PoolInUse(count) => Err(pool_in_use(name, count)),
            other => Err(ZaqarError::internal(format!(
                "a pool removal was answered with {other:?}"
            ))),
        }
    }

    async fn list_pools(&self) -> CatalogResult<Vec<PoolSpec>> {
        self.read_barrier().await?;
        Ok(self.read_state(|state| state.pools()))
    }

    async fn get_pool(&self, name: &str) -> CatalogResult<PoolSpec> {
        self.read_barrier().await?;
        self.read_state(|state| state.pool(name))
            .ok_or_else(|| ZaqarError::not_found(format!("pool {name:?} does not exist")))
    }

    async fn lookup(&self, project: &str, queue: &str) -> CatalogResult<Option<Placement>> {
        validate_queue(project, queue)?;
        self.read_barrier().await?;
        Ok(self.read_state(|state| state.lookup(project, queue)))
    }

    async fn place_on(&self, project: &str, queue: &str, pool: &str) -> CatalogResult<Placement> {
        validate_queue(project, queue)?;
        let command = Command::PlaceOn {
            project: project.to_string(),
            queue: queue.to_string(),
            pool: pool.to_string(),
        };
        match self.propose(command).await? {
            CommandResult::Placed(placement) => Ok(placement),
            CommandResult::UnknownPool(pool) => Err(ZaqarError::not_found(format!(
                "pool {pool:?} does not exist"
            ))),
            other => Err(ZaqarError::internal(format!(
                "a placement was answered with {other:?}"
            ))),
        }
    }

    async fn remove_queue(&self, project: &str, queue: &str) -> CatalogResult<()> {
        validate_queue(project, queue)?;
        let command = Command::RemoveQueue {
            project: project.to_string(),
            queue: queue.to_string(),
        };
        self.propose(command).await?;
        tracing::debug!(project, queue, "queue placement removed");
        Ok(())
    }

    async fn list_queues(&self, project: &str, params: &ListQueues) -> CatalogResult<QueuePage> {
        validate_listing(project, params)?;
        self.read_barrier().await?;
        Ok(self.read_state(|state| state.list_queues(project, params)))
    }
}
