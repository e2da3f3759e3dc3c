//! The replicated catalog itself: pools and placements in memory, changed only by
//! applying [`Command`]s in log order, and read by the local `CatalogBackend` calls.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::model::{FlavorSpec, ListQueues, Placement, PoolSpec, ProjectLimitsSpec, QueuePage};
use crate::raft::types::{Command, CommandResult};
use crate::watch::CatalogEvent;

/// The catalog's data, as a snapshot holds it (and the count of placements, kept as
/// they change: counting them means visiting every project).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredState")]
pub struct CatalogState {
    /// Pools by name.
    pools: BTreeMap<String, PoolSpec>,
    /// project → queue → pool name.
    placements: BTreeMap<String, BTreeMap<String, String>>,
    /// Flavors by name (absent from snapshots taken before flavors existed).
    flavors: BTreeMap<String, FlavorSpec>,
    /// Limits by project (absent from snapshots taken before project limits existed).
    project_limits: BTreeMap<String, ProjectLimitsSpec>,
    /// How many queues `placements` holds.
    #[serde(skip)]
    placed: usize,
}

/// [`CatalogState`] as a snapshot stores it; its count is made once, when it is read.
#[derive(Deserialize)]
struct StoredState {
    pools: BTreeMap<String, PoolSpec>,
    placements: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    flavors: BTreeMap<String, FlavorSpec>,
    #[serde(default)]
    project_limits: BTreeMap<String, ProjectLimitsSpec>,
}

impl From<StoredState> for CatalogState {
    fn from(stored: StoredState) -> Self {
        let placed = stored.placements.values().map(BTreeMap::len).sum();
        CatalogState {
            pools: stored.pools,
            placements: stored.placements,
            flavors: stored.flavors,
            project_limits: stored.project_limits,
            placed,
        }
    }
}

impl CatalogState {
    /// Applies one command. Deterministic: the same commands in the same order give the
    /// same state and results on every node.
    pub fn apply(&mut self, command: Command) -> CommandResult {
        match command {
            Command::RegisterPool(pool) => {
                self.pools.insert(pool.name.clone(), pool);
                CommandResult::Done
            }
            Command::RegisterPoolNode(pool) => {
                match self.pools.get_mut(&pool.name) {
                    Some(existing) => {
                        existing.uri = pool.uri;
                        existing.endpoint = pool.endpoint;
                    }
                    None => {
                        self.pools.insert(pool.name.clone(), pool);
                    }
                }
                CommandResult::Done
            }
            Command::PlaceOn {
                project,
                queue,
                pool,
            } => {
                let placed = self
                    .placements
                    .get(&project)
                    .and_then(|queues| queues.get(&queue));
                if placed.is_none() {
                    if !self.pools.contains_key(&pool) {
                        return CommandResult::UnknownPool(pool);
                    }
                    self.placements
                        .entry(project.clone())
                        .or_default()
                        .insert(queue.clone(), pool);
                    self.placed += 1;
                }
                match self.lookup(&project, &queue) {
                    Some(placement) => CommandResult::Placed(placement),
                    None => unreachable!("{project}/{queue} was placed just above"),
                }
            }
            Command::RemovePool { name } => {
                if !self.pools.contains_key(&name) {
                    return CommandResult::UnknownPool(name);
                }
                let count = self.queues_on(&name);
                if count > 0 {
                    return CommandResult::PoolInUse(count);
                }
                self.pools.remove(&name);
                CommandResult::Done
            }
            Command::PutFlavor(flavor) => {
                self.flavors.insert(flavor.name.clone(), flavor);
                CommandResult::Done
            }
            Command::RemoveFlavor { name } => match self.flavors.remove(&name) {
                Some(_) => CommandResult::Done,
                None => CommandResult::UnknownFlavor(name),
            },
            Command::PutProjectLimits(limits) => {
                self.project_limits.insert(limits.project.clone(), limits);
                CommandResult::Done
            }
            Command::RemoveProjectLimits { project } => {
                match self.project_limits.remove(&project) {
                    Some(_) => CommandResult::Done,
                    None => CommandResult::NoProjectLimits(project),
                }
            }
            Command::RemoveQueue { project, queue } => {
                if let Some(queues) = self.placements.get_mut(&project) {
                    if queues.remove(&queue).is_some() {
                        self.placed -= 1;
                    }
                    if queues.is_empty() {
                        self.placements.remove(&project);
                    }
                }
                CommandResult::Done
            }
        }
    }

    /// What watchers hear of `command`, applied with `result` (flavor records are not
    /// watched: placement caches do not hold them).
    pub fn event_of(&self, command: &Command, result: &CommandResult) -> Option<CatalogEvent> {
        match (command, result) {
            (Command::RegisterPool(pool) | Command::RegisterPoolNode(pool), _) => {
                self.pool(&pool.name).map(CatalogEvent::PoolChanged)
            }
            (Command::PlaceOn { .. }, CommandResult::Placed(placement)) => {
                Some(CatalogEvent::Placed {
                    project: placement.project.clone(),
                    queue: placement.queue.clone(),
                    pool: placement.pool.clone(),
                })
            }
            (Command::RemoveQueue { project, queue }, _) => Some(CatalogEvent::Unplaced {
                project: project.clone(),
                queue: queue.clone(),
            }),
            (Command::RemovePool { name }, CommandResult::Done) => {
                Some(CatalogEvent::PoolRemoved(name.clone()))
            }
            _ => None,
        }
    }

    /// All pools, sorted by name.
    pub fn pools(&self) -> Vec<PoolSpec> {
        self.pools.values().cloned().collect()
    }

    pub fn pool(&self, name: &str) -> Option<PoolSpec> {
        self.pools.get(name).cloned()
    }

    /// All flavors, sorted by name.
    pub fn flavors(&self) -> Vec<FlavorSpec> {
        self.flavors.values().cloned().collect()
    }

    pub fn flavor(&self, name: &str) -> Option<FlavorSpec> {
        self.flavors.get(name).cloned()
    }

    /// Every project's limits, sorted by project.
    pub fn all_project_limits(&self) -> Vec<ProjectLimitsSpec> {
        self.project_limits.values().cloned().collect()
    }

    pub fn project_limits(&self, project: &str) -> Option<ProjectLimitsSpec> {
        self.project_limits.get(project).cloned()
    }

    pub fn lookup(&self, project: &str, queue: &str) -> Option<Placement> {
        let pool = self.placements.get(project)?.get(queue)?;
        Some(self.placement(project, queue, pool))
    }

    /// A page of the project's placed queues, sorted by name (byte order).
    pub fn list_queues(&self, project: &str, params: &ListQueues) -> QueuePage {
        let Some(queues) = self.placements.get(project) else {
            return QueuePage::default();
        };
        let matches = |queue: &&String| queue.contains(params.name_filter.as_str());
        let count = match (params.with_count, params.name_filter.is_empty()) {
            (false, _) => 0,
            (true, true) => queues.len() as u64,
            (true, false) => queues.keys().filter(matches).count() as u64,
        };
        let start = if params.marker.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(params.marker.clone())
        };
        let queues = queues
            .range((start, Bound::Unbounded))
            .filter(|(queue, _)| matches(queue))
            .take(params.limit as usize)
            .map(|(queue, pool)| self.placement(project, queue, pool))
            .collect();
        QueuePage { queues, count }
    }

    /// Number of queues placed on `pool`, over all projects.
    pub fn queues_on(&self, pool: &str) -> u64 {
        let on_pool = |queues: &BTreeMap<String, String>| {
            queues.values().filter(|placed| *placed == pool).count() as u64
        };
        self.placements.values().map(on_pool).sum()
    }

    /// Number of placed queues, over all projects.
    pub fn queue_count(&self) -> usize {
        self.placed
    }

    fn placement(&self, project: &str, queue: &str, pool: &str) -> Placement {
        let endpoint = self.pools.get(pool).map(|p| p.endpoint.clone());
        Placement::new(project, queue, pool.into(), endpoint.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str) -> PoolSpec {
        crate::conformance::pool(name, 1, "")
    }

    fn place(queue: &str, pool: &str) -> Command {
        Command::PlaceOn {
            project: "p".into(),
            queue: queue.into(),
            pool: pool.into(),
        }
    }

    #[test]
    fn the_first_placement_wins_and_unknown_pools_change_nothing() {
        let mut state = CatalogState::default();
        assert_eq!(
            state.apply(place("q", "a")),
            CommandResult::UnknownPool("a".into())
        );
        assert_eq!(state, CatalogState::default());

        state.apply(Command::RegisterPool(pool("a")));
        state.apply(Command::RegisterPool(pool("b")));
        let first = state.apply(place("q", "a"));
        assert_eq!(state.apply(place("q", "b")), first);
        // Even a vanished pool does not make an existing placement fail.
        assert_eq!(state.apply(place("q", "gone")), first);
        let CommandResult::Placed(placement) = first else {
            panic!("{first:?}")
        };
        assert_eq!(placement.endpoint, "http://a.example:7001");
    }

    #[test]
    fn removing_the_last_queue_of_a_project_leaves_no_trace() {
        let mut state = CatalogState::default();
        state.apply(Command::RegisterPool(pool("a")));
        let empty = state.clone();
        state.apply(place("q", "a"));
        assert_eq!(state.queue_count(), 1);
        let remove = Command::RemoveQueue {
            project: "p".into(),
            queue: "q".into(),
        };
        assert_eq!(state.apply(remove.clone()), CommandResult::Done);
        assert_eq!(state.apply(remove), CommandResult::Done);
        assert_eq!(state, empty);
    }

    #[test]
    fn a_pool_holding_queues_is_not_removed() {
        let mut state = CatalogState::default();
        let remove = |name: &str| Command::RemovePool { name: name.into() };
        assert_eq!(
            state.apply(remove("a")),
            CommandResult::UnknownPool("a".into())
        );
        state.apply(Command::RegisterPool(pool("a")));
        state.apply(place("q", "a"));
        let before = state.clone();
        assert_eq!(state.apply(remove("a")), CommandResult::PoolInUse(1));
        assert_eq!(state, before);
        state.apply(Command::RemoveQueue {
            project: "p".into(),
            queue: "q".into(),
        });
        assert_eq!(state.apply(remove("a")), CommandResult::Done);
        assert_eq!(state, CatalogState::default());
    }

    #[test]
    fn a_pool_node_registration_keeps_the_admin_fields_of_a_known_pool() {
        let mut state = CatalogState::default();
        let new = PoolSpec {
            weight: 7,
            ..pool("a")
        };
        let command = Command::RegisterPoolNode(new.clone());
        let result = state.apply(command.clone());
        assert_eq!(state.pool("a"), Some(new.clone()));
        assert_eq!(
            state.event_of(&command, &result),
            Some(CatalogEvent::PoolChanged(new))
        );
        state.apply(Command::RegisterPool(PoolSpec {
            weight: 0,
            flavor: "slow".into(),
            options_json: r#"{"x":1}"#.into(),
            ..pool("a")
        }));
        state.apply(Command::RegisterPoolNode(PoolSpec {
            uri: "redis://other:6379".into(),
            endpoint: "http://other:7001".into(),
            ..pool("a")
        }));
        let stored = state.pool("a").unwrap();
        assert_eq!(
            (
                stored.weight,
                stored.flavor.as_str(),
                stored.options_json.as_str()
            ),
            (0, "slow", r#"{"x":1}"#)
        );
        assert_eq!(
            (stored.uri.as_str(), stored.endpoint.as_str()),
            ("redis://other:6379", "http://other:7001")
        );
    }

    #[test]
    fn a_snapshot_from_before_flavors_still_loads() {
        let old = r#"{"pools":{},"placements":{}}"#;
        let state: CatalogState = serde_json::from_str(old).unwrap();
        assert_eq!(state, CatalogState::default());
    }

    #[test]
    fn removing_an_unknown_flavor_changes_nothing() {
        let mut state = CatalogState::default();
        let remove = Command::RemoveFlavor { name: "f".into() };
        assert_eq!(
            state.apply(remove),
            CommandResult::UnknownFlavor("f".into())
        );
        assert_eq!(state, CatalogState::default());
    }

    #[test]
    fn a_state_survives_its_json_form() {
        let mut state = CatalogState::default();
        state.apply(Command::RegisterPool(pool("a")));
        state.apply(place("q", "a"));
        state.apply(Command::PutFlavor(FlavorSpec {
            name: "f".into(),
            capabilities: vec!["FIFO".into()],
        }));
        let json = serde_json::to_vec(&state).unwrap();
        assert_eq!(
            serde_json::from_slice::<CatalogState>(&json).unwrap(),
            state
        );
    }
}
