//! The raft-replicated catalog: pools and placements in an openraft group of 1, 3 or 5
//! nodes, each keeping its log and snapshot on disk.
//!
//! [`RaftCatalog`] is one node and a [`CatalogBackend`](crate::CatalogBackend): any node
//! accepts writes (forwarded to the leader) and serves linearizable reads (see
//! `catalog.rs`). Nodes talk over the internal `zaqar.raft.v1.RaftService` (gRPC), on
//! their own listen address, separate from the `CatalogService` that api-nodes use.
//!
//! Layout: `types` (openraft type config and the log's commands), `state` (the catalog
//! data and how commands change it), `record_file` + `log_store` (the log on disk),
//! `state_machine` (applying entries, snapshots on disk), `dir_lock` (one process per data directory), `network` + `service` (the
//! RaftService client and server), `config` + `node` (startup, bootstrap, membership),
//! `catalog` (the `CatalogBackend`), `metrics` (Prometheus gauges of the node's status).

mod catalog;
mod config;
mod dir_lock;
mod log_store;
mod metrics;
mod network;
mod node;
mod record_file;
mod service;
mod state;
mod state_machine;
mod types;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod storage_suite;
#[cfg(test)]
pub(crate) mod testing;

pub use config::RaftConfig;
pub use dir_lock::DirLock;
pub use metrics::RaftMetrics;
pub use node::{RaftCatalog, RaftStatus};
pub use types::NodeId;
