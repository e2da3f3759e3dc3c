//! What workers count: per-operation tallies kept by each worker (merged at the end) and
//! shared per-role counters read by the live progress line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::histogram::Histogram;

/// The kinds of workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Producer,
    Consumer,
    Observer,
    Popper,
    /// Lists the project's queues (the first page).
    Lister,
    /// Reads a queue's stats.
    StatsReader,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Producer,
        Role::Consumer,
        Role::Observer,
        Role::Popper,
        Role::Lister,
        Role::StatsReader,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Observer => "observer",
            Role::Popper => "popper",
            Role::Lister => "lister",
            Role::StatsReader => "stats_reader",
        }
    }

    /// The operations this role performs, in report order.
    pub fn ops(self) -> &'static [Op] {
        match self {
            Role::Producer => &[Op::Post],
            Role::Consumer => &[Op::Claim, Op::Delete],
            Role::Observer => &[Op::List],
            Role::Popper => &[Op::Pop],
            Role::Lister => &[Op::ListQueues],
            Role::StatsReader => &[Op::Stats],
        }
    }

    /// The operation whose messages are this role's messages: posted, deleted (not
    /// merely claimed), listed, popped (for listers: queues listed; for stats readers:
    /// the messages the stats counted).
    pub fn message_op(self) -> Op {
        match self {
            Role::Producer => Op::Post,
            Role::Consumer => Op::Delete,
            Role::Observer => Op::List,
            Role::Popper => Op::Pop,
            Role::Lister => Op::ListQueues,
            Role::StatsReader => Op::Stats,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The REST calls of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// POST /v2/queues/{q}/messages with a batch.
    Post,
    /// POST /v2/queues/{q}/claims?limit=N.
    Claim,
    /// DELETE /v2/queues/{q}/messages/{id}?claim_id=C.
    Delete,
    /// GET /v2/queues/{q}/messages?limit=N&marker=M&include_claimed=true.
    List,
    /// DELETE /v2/queues/{q}/messages?pop=N.
    Pop,
    /// GET /v2/queues?limit=N.
    ListQueues,
    /// GET /v2/queues/{q}/stats.
    Stats,
}

impl Op {
    pub const COUNT: usize = 7;

    pub fn name(self) -> &'static str {
        match self {
            Op::Post => "post",
            Op::Claim => "claim",
            Op::Delete => "delete",
            Op::List => "list",
            Op::Pop => "pop",
            Op::ListQueues => "list_queues",
            Op::Stats => "stats",
        }
    }

    pub fn role(self) -> Role {
        match self {
            Op::Post => Role::Producer,
            Op::Claim | Op::Delete => Role::Consumer,
            Op::List => Role::Observer,
            Op::Pop => Role::Popper,
            Op::ListQueues => Role::Lister,
            Op::Stats => Role::StatsReader,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The tally of one operation: requests answered 2xx (with their latencies and the
/// messages they carried) and errors (non-2xx answers and transport failures).
#[derive(Debug, Clone, Default)]
pub struct OpStats {
    pub ok: u64,
    pub errors: u64,
    pub messages: u64,
    pub latency: Histogram,
    /// The first error seen, to tell the user why errors happen.
    pub first_error: Option<String>,
}

impl OpStats {
    pub fn requests(&self) -> u64 {
        self.ok + self.errors
    }

    pub fn merge(&mut self, other: &OpStats) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.messages += other.messages;
        self.latency.merge(&other.latency);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// Tallies of every operation, one per worker and one for the whole run.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    ops: [OpStats; Op::COUNT],
}

impl Tally {
    pub fn op(&self, op: Op) -> &OpStats {
        &self.ops[op.index()]
    }

    /// Counts a successful request of `op` that moved `messages` messages.
    pub fn ok(&mut self, live: &Live, op: Op, latency: Duration, messages: u64) {
        let stats = &mut self.ops[op.index()];
        stats.ok += 1;
        stats.messages += messages;
        stats.latency.record(latency);
        live.add(op.role(), false);
    }

    /// Counts a failed request of `op`; its latency is not recorded.
    pub fn error(&mut self, live: &Live, op: Op, error: impl FnOnce() -> String) {
        let stats = &mut self.ops[op.index()];
        stats.errors += 1;
        if stats.first_error.is_none() {
            stats.first_error = Some(error());
        }
        live.add(op.role(), true);
    }

    pub fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.merge(theirs);
        }
    }
}

/// Requests and errors so far per role, shared by all workers, for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    requests: [AtomicU64; Role::ALL.len()],
    errors: [AtomicU64; Role::ALL.len()],
}

impl Live {
    fn add(&self, role: Role, error: bool) {
        self.requests[role.index()].fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors[role.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (requests, errors) of `role` so far.
    pub fn get(&self, role: Role) -> (u64, u64) {
        (
            self.requests[role.index()].load(Ordering::Relaxed),
            self.errors[role.index()].load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_count_and_merge() {
        let live = Live::default();
        let mut a = Tally::default();
        a.ok(&live, Op::Post, Duration::from_millis(2), 5);
        a.error(&live, Op::Post, || "503".into());
        let mut b = Tally::default();
        b.ok(&live, Op::Delete, Duration::from_millis(1), 1);
        b.error(&live, Op::Post, || "timeout".into());
        a.merge(&b);
        let post = a.op(Op::Post);
        assert_eq!((post.ok, post.errors, post.messages), (1, 2, 5));
        assert_eq!(post.requests(), 3);
        assert_eq!(post.first_error.as_deref(), Some("503"));
        assert_eq!(a.op(Op::Delete).ok, 1);
        assert_eq!(live.get(Role::Producer), (3, 2));
        assert_eq!(live.get(Role::Consumer), (1, 0));
        assert_eq!(live.get(Role::Observer), (0, 0));
    }

    #[test]
    fn every_op_belongs_to_the_role_that_lists_it() {
        for role in Role::ALL {
            for op in role.ops() {
                assert_eq!(op.role(), role);
            }
            assert!(role.ops().contains(&role.message_op()));
        }
    }
}
