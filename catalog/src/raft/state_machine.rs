//! The raft state machine of one node: the [`CatalogState`] in memory, made durable by
//! snapshots on disk.
//!
//! `apply` changes only memory; what makes it durable is the log (fsynced before an
//! entry is committed) plus the latest snapshot (written atomically before openraft
//! purges the entries it covers). On restart the state is the snapshot's, and openraft
//! applies the log entries after it again, up to the committed log id the log store
//! kept (and the rest once the leader confirms them).

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};

use crate::raft::record_file::{read_all, write_atomically};
use crate::raft::state::CatalogState;
use crate::raft::types::{
    CommandResult, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::watch::{CatalogEvent, EventHub};

/// The catalog state shared between the state machine (the writer) and readers.
pub type SharedState = Arc<RwLock<CatalogState>>;

/// The snapshot file: two records, the JSON `SnapshotMeta` and the JSON `CatalogState`.
struct SnapshotFile {
    path: PathBuf,
    /// Last log id of the snapshot on disk; a snapshot built concurrently with the
    /// install of a newer one must not replace it.
    stored: Mutex<Option<LogId>>,
}

impl SnapshotFile {
    fn load(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let Some(mut records) = read_all(&self.path)? else {
            return Ok(None);
        };
        if records.len() != 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds {} records, not 2",
                    self.path.display(),
                    records.len()
                ),
            ));
        }
        let data = records.pop().unwrap_or_default();
        let meta = serde_json::from_slice(&records[0])
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        Ok(Some((meta, data)))
    }

    /// Stores the snapshot unless a newer one is stored; whether it was stored.
    fn store(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<bool> {
        let mut stored = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        if stored.is_some() && *stored > meta.last_log_id {
            return Ok(false);
        }
        let meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        write_atomically(&self.path, &[meta_json, data.to_vec()])?;
        *stored = meta.last_log_id;
        Ok(true)
    }
}

/// A node's state machine.
pub struct StateMachine {
    state: SharedState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Arc<SnapshotFile>,
    /// Every applied change, for this node's watchers.
    events: EventHub,
}

impl StateMachine {
    /// Opens the state machine whose snapshot is kept at `path`: the state of that
    /// snapshot, or an empty catalog.
    pub fn open(path: &Path, events: EventHub) -> io::Result<StateMachine> {
        let snapshot = Arc::new(SnapshotFile {
            path: path.to_path_buf(),
            stored: Mutex::new(None),
        });
        let mut machine = StateMachine {
            state: SharedState::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot,
            events,
        };
        if let Some((meta, data)) = machine.snapshot.load()? {
            let state = serde_json::from_slice(&data)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
            *machine
                .snapshot
                .stored
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = meta.last_log_id;
            machine.restore(&meta, state);
            tracing::debug!(path = %path.display(), last_log_id = ?meta.last_log_id,
                "raft snapshot loaded");
        }
        Ok(machine)
    }

    /// The state the catalog reads.
    pub fn state(&self) -> SharedState {
        self.state.clone()
    }

    fn restore(&mut self, meta: &SnapshotMeta, state: CatalogState) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = state;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
    }
}

/// Builds a snapshot from a copy of the state taken when the builder was made.
pub struct SnapshotBuilder {
    state: CatalogState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    file: Arc<SnapshotFile>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data =
            serde_json::to_vec(&self.state).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let snapshot_id = match self.last_applied {
            Some(last) => format!("{}-{}-{nanos}", last.leader_id, last.index),
            None => format!("--{nanos}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let (file, stored_meta, stored_data) = (self.file.clone(), meta.clone(), data.clone());
        tokio::task::spawn_blocking(move || file.store(&stored_meta, &stored_data))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(),
            queues = self.state.queue_count(), "raft snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let mut results = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            results.push(match entry.payload {
                EntryPayload::Blank => CommandResult::Done,
                EntryPayload::Normal(command) => {
                    let result = state.apply(command.clone());
                    if let Some(event) = state.event_of(&command, &result) {
                        self.events.publish(event);
                    }
                    result
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResult::Done
                }
            });
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            state: self
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            file: self.snapshot.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state: CatalogState = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let (file, stored_meta) = (self.snapshot.clone(), meta.clone());
        tokio::task::spawn_blocking(move || file.store(&stored_meta, &data))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.restore(meta, state);
        // The state changed wholesale: watchers start over.
        self.events.publish(CatalogEvent::Reset);
        tracing::info!(last_log_id = ?meta.last_log_id, "raft snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let file = self.snapshot.clone();
        let loaded = tokio::task::spawn_blocking(move || file.load())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
