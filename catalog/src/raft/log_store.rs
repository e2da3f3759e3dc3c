//! The raft log and vote of one node on disk: a [`RecordFile`] of log operations
//! (vote, append, truncate, purge, committed), replayed into memory on open.
//!
//! Every operation is appended to the file and fsynced before openraft is told it is
//! done (except the committed pointer, which may lag safely). The file is rewritten
//! from memory when dead records (truncated or purged entries, old votes) outnumber
//! the live ones, so its size follows the log that openraft keeps after compaction.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::raft::record_file::RecordFile;
use crate::raft::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Records beyond twice the live ones (plus this slack) trigger a rewrite of the file.
const REWRITE_SLACK: usize = 1000;

/// One operation on the log, as the file holds it.
#[derive(Debug, Serialize, Deserialize)]
enum Record {
    Vote(Vote),
    Committed(Option<LogId>),
    Entry(Entry),
    /// Entries at and after this index are gone.
    TruncateSince(u64),
    /// Entries up to this log id (inclusive) are gone.
    PurgeUpto(LogId),
}

/// The state the records add up to.
#[derive(Debug, Default)]
struct Log {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

impl Log {
    fn replay(&mut self, record: Record) {
        match record {
            Record::Vote(vote) => self.vote = Some(vote),
            Record::Committed(committed) => self.committed = committed,
            Record::Entry(entry) => {
                self.entries.insert(entry.log_id.index, entry);
            }
            Record::TruncateSince(index) => {
                self.entries.split_off(&index);
            }
            Record::PurgeUpto(log_id) => {
                self.entries = self.entries.split_off(&(log_id.index + 1));
                if self.last_purged < Some(log_id) {
                    self.last_purged = Some(log_id);
                }
            }
        }
    }

    /// The fewest records that replay to this state.
    fn records(&self) -> Vec<Record> {
        let mut records = Vec::with_capacity(self.entries.len() + 3);
        records.extend(self.vote.map(Record::Vote));
        records.push(Record::Committed(self.committed));
        records.extend(self.last_purged.map(Record::PurgeUpto));
        records.extend(self.entries.values().cloned().map(Record::Entry));
        records
    }
}

struct Shared {
    log: RwLock<Log>,
    file: Mutex<RecordFile>,
}

/// A node's raft log store; clones share the same log (openraft's log reader is one).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Opens the log in `path`, creating an empty one if there is none. A log
    /// damaged before its end is refused, or with `repair` cut at the damage
    /// ([`RecordFile::open_repairing`]).
    pub fn open(path: &Path, repair: bool) -> io::Result<LogStore> {
        let (file, records) = if repair {
            RecordFile::open_repairing(path)?
        } else {
            RecordFile::open(path)?
        };
        let mut log = Log::default();
        for bytes in records {
            let record: Record = serde_json::from_slice(&bytes)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
            log.replay(record);
        }
        tracing::debug!(path = %path.display(), entries = log.entries.len(), "raft log opened");
        Ok(LogStore {
            shared: Arc::new(Shared {
                log: RwLock::new(log),
                file: Mutex::new(file),
            }),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self
            .shared
            .log
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Changes the log in memory, then appends `records` to the file (fsynced when
    /// `sync`), rewriting the file when that pays off.
    async fn write(
        &self,
        change: impl FnOnce(&mut Log),
        records: Vec<Record>,
        sync: bool,
    ) -> io::Result<()> {
        change(
            &mut self
                .shared
                .log
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = shared.file.lock().unwrap_or_else(PoisonError::into_inner);
            file.append(&encode(&records)?, sync)?;
            let log = shared.log.read().unwrap_or_else(PoisonError::into_inner);
            if file.len() > 2 * (log.entries.len() + 3) + REWRITE_SLACK {
                file.rewrite(&encode(&log.records())?)?;
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }
}

fn encode(records: &[Record]) -> io::Result<Vec<Vec<u8>>> {
    records
        .iter()
        .map(|record| serde_json::to_vec(record).map_err(io::Error::other))
        .collect()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.read(|log| log.entries.range(range).map(|(_, e)| e.clone()).collect()))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(self.read(|log| {
            let last = log.entries.values().next_back().map(|e| e.log_id);
            LogState {
                last_purged_log_id: log.last_purged,
                last_log_id: last.or(log.last_purged),
            }
        }))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.write(|log| log.vote = Some(vote), vec![Record::Vote(vote)], true)
            .await
            .map_err(|err| StorageIOError::write_vote(&err).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.read(|log| log.vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced: a committed pointer that lags after a crash only delays re-applying.
        let record = Record::Committed(committed);
        self.write(|log| log.committed = committed, vec![record], false)
            .await
            .map_err(|err| StorageIOError::write(&err).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read(|log| log.committed))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let records = entries.iter().cloned().map(Record::Entry).collect();
        let insert = |log: &mut Log| {
            for entry in entries {
                log.entries.insert(entry.log_id.index, entry);
            }
        };
        match self.write(insert, records, true).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(err) => {
                let storage_err = StorageIOError::write_logs(&err).into();
                callback.log_io_completed(Err(err));
                Err(storage_err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let record = Record::TruncateSince(log_id.index);
        self.write(
            |log| {
                log.entries.split_off(&log_id.index);
            },
            vec![record],
            true,
        )
        .await
        .map_err(|err| StorageIOError::write_logs(&err).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let record = Record::PurgeUpto(log_id);
        self.write(
            |log| log.replay(Record::PurgeUpto(log_id)),
            vec![record],
            true,
        )
        .await
        .map_err(|err| StorageIOError::write_logs(&err).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{blank_ent, log_id};

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        store.blocking_append(entries).await.unwrap();
    }

    #[tokio::test]
    async fn a_reopened_log_has_the_same_vote_entries_and_pointers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log");
        let mut store = LogStore::open(&path, false).unwrap();
        store.save_vote(&Vote::new(3, 1)).await.unwrap();
        let entries = (1..=10).map(|i| blank_ent::<TypeConfig>(3, 1, i)).collect();
        append(&mut store, entries).await;
        store.truncate(log_id(3, 1, 8)).await.unwrap();
        store.purge(log_id(3, 1, 2)).await.unwrap();
        store.save_committed(Some(log_id(3, 1, 6))).await.unwrap();
        drop(store);

        let mut store = LogStore::open(&path, false).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(3, 1, 6)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(3, 1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(3, 1, 7)));
        let indexes: Vec<u64> = store
            .try_get_log_entries(0..100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(indexes, [3, 4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn the_file_is_rewritten_when_dead_records_pile_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log");
        let mut store = LogStore::open(&path, false).unwrap();
        for i in 1..=(2 * REWRITE_SLACK as u64) {
            append(&mut store, vec![blank_ent::<TypeConfig>(1, 1, i)]).await;
            store.save_committed(Some(log_id(1, 1, i))).await.unwrap();
        }
        store
            .purge(log_id(1, 1, 2 * REWRITE_SLACK as u64 - 5))
            .await
            .unwrap();
        let records = store.shared.file.lock().unwrap().len();
        assert!(
            records < REWRITE_SLACK,
            "{records} records after compaction"
        );
        drop(store);
        let mut store = LogStore::open(&path, false).unwrap();
        assert_eq!(store.try_get_log_entries(..).await.unwrap().len(), 5);
    }
}
