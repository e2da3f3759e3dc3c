//! Helpers for cluster tests: free ports, spawned processes, a REST client.
