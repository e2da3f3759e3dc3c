//! The rate and quotas of each project as this api-node applies them:
//! `[project_limits]` merged with what an operator set for the project in the catalog
//! (`zaqar admin project-limits`, see [`ProjectLimits::quotas`]).
//!
//! The catalog is asked about a project at most once per `refresh_seconds` (10 s by
//! default). Only a project's first request waits for the answer (concurrent first
//! requests share one question); later ones get the known quotas at once, while a
//! background task asks again once they are due. When the catalog cannot answer, the
//! last known quotas stay; a project never seen gets those of `[project_limits]` and
//! is asked about again after [`RETRY_AFTER`]. At most `max_tracked_projects` projects
//! are remembered: past it, those due to be asked again are forgotten first, then a
//! tenth of the others (a forgotten project's next request asks the catalog again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use zaqar_proto::limits::ProjectLimitOverrides;

use crate::operations::Services;
use crate::rate_limit::{ProjectLimits, ProjectQuotas};

/// How soon the catalog is asked again after it could not answer.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The quotas known per project.
pub struct QuotaCache {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    capacity: usize,
}

/// One project's quotas: empty until the first answer (or failure) arrives.
#[derive(Default)]
struct Slot {
    known: OnceCell<Known>,
    /// A background task is asking the catalog again.
    refreshing: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    quotas: ProjectQuotas,
    /// When to ask the catalog again.
    due: Instant,
}

impl QuotaCache {
    /// A cache of at most `capacity` projects.
    pub fn new(capacity: usize) -> QuotaCache {
        QuotaCache {
            slots: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn slot(&self, project: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(project) {
            return slot.clone();
        }
        self.make_room(&mut slots);
        let slot = Arc::new(Slot::default());
        slots.insert(project.to_string(), slot.clone());
        slot
    }

    fn store(&self, project: String, known: Known) {
        let slot = Slot {
            known: OnceCell::new_with(Some(known)),
            refreshing: AtomicBool::new(false),
        };
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if !slots.contains_key(&project) {
            self.make_room(&mut slots);
        }
        slots.insert(project, Arc::new(slot));
    }

    /// Forgets projects while `slots` is full: those due to be asked again (or never
    /// answered), then, if that freed less than a tenth, any others up to a tenth.
    fn make_room(&self, slots: &mut HashMap<String, Arc<Slot>>) {
        if slots.len() < self.capacity {
            return;
        }
        let now = Instant::now();
        slots.retain(|_, slot| slot.known.get().is_some_and(|known| known.due > now));
        let wanted = (self.capacity / 10).max(1);
        let excess = (slots.len() + wanted).saturating_sub(self.capacity);
        let victims: Vec<String> = slots.keys().take(excess).cloned().collect();
        for project in victims {
            slots.remove(&project);
        }
    }

    /// How many projects are remembered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The rate and quotas of `project` (a client project, not a topic namespace).
pub async fn quotas_of(services: &Arc<Services>, project: &str) -> ProjectQuotas {
    let limits = &services.project_limits;
    let Some(refresh) = limits.refresh_interval() else {
        return limits.quotas(project, &ProjectLimitOverrides::default());
    };
    let slot = services.quotas.slot(project);
    if let Some(known) = slot.known.get() {
        if known.due <= Instant::now() && !slot.refreshing.swap(true, Ordering::AcqRel) {
            let (services, project, previous) =
                (services.clone(), project.to_string(), known.quotas);
            tokio::spawn(async move {
                let known = ask(&services, &project, Some(previous), refresh).await;
                services.quotas.store(project, known);
            });
        }
        return known.quotas;
    }
    let first = slot
        .known
        .get_or_init(|| ask(services, project, None, refresh));
    first.await.quotas
}

/// Asks the catalog for the limits an operator set for `project`, and makes its quotas.
async fn ask(
    services: &Services,
    project: &str,
    previous: Option<ProjectQuotas>,
    refresh: Duration,
) -> Known {
    let limits: &ProjectLimits = &services.project_limits;
    let now = Instant::now();
    match services.router.project_limits(project).await {
        Ok(stored) => {
            let operator = stored
                .map(|json| {
                    ProjectLimitOverrides::from_stored_json(&json).unwrap_or_else(|err| {
                        tracing::warn!(project, %json, error = %err,
                            "the catalog's limits of the project are not readable: ignored");
                        ProjectLimitOverrides::default()
                    })
                })
                .unwrap_or_default();
            Known {
                quotas: limits.quotas(project, &operator),
                due: now + refresh,
            }
        }
        Err(err) => {
            // A catalog too old to keep project limits answers so every time.
            let retry = if err.code.retryable() {
                RETRY_AFTER.min(refresh)
            } else {
                refresh
            };
            tracing::debug!(project, error = %err,
                "the catalog did not give the project's limits: the last known apply");
            Known {
                quotas: previous
                    .unwrap_or_else(|| limits.quotas(project, &ProjectLimitOverrides::default())),
                due: now + retry,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(due_in: Duration) -> Known {
        Known {
            quotas: ProjectLimits::new(&Default::default(), &Default::default())
                .quotas("p", &ProjectLimitOverrides::default()),
            due: Instant::now() + due_in,
        }
    }

    #[test]
    fn the_cache_stays_bounded_and_forgets_what_is_due_first() {
        let cache = QuotaCache::new(10);
        for i in 0..5 {
            cache.store(format!("fresh{i}"), known(Duration::from_secs(60)));
        }
        for i in 0..5 {
            cache.store(format!("due{i}"), known(Duration::ZERO));
        }
        assert_eq!(cache.len(), 10);
        // Full: the due ones go, the fresh stay.
        cache.store("new".into(), known(Duration::from_secs(60)));
        assert_eq!(cache.len(), 6);
        for i in 0..5 {
            assert!(cache
                .slots
                .lock()
                .unwrap()
                .contains_key(&format!("fresh{i}")));
        }
        // A flood of fresh projects never grows it.
        for i in 0..1_000 {
            cache.slot(&format!("flood{i}"));
            assert!(cache.len() <= 10);
        }
    }
}
