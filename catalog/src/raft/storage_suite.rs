//! openraft's own storage test suite, run against our log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use crate::raft::log_store::LogStore;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{StorageError, TypeConfig};

/// A fresh log store and state machine in a temporary directory (the guard).
struct OnDisk;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for OnDisk {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let log = LogStore::open(&dir.path().join("raft-log"), false).expect("open the log");
        let machine = StateMachine::open(
            &dir.path().join("raft-snapshot"),
            crate::watch::EventHub::default(),
        )
        .expect("open the state machine");
        Ok((dir, log, machine))
    }
}

/// Not a tokio test: the suite runs each case on a runtime of its own.
#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(OnDisk).unwrap();
}
