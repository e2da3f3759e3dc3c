//! Whether the Redis server of a pool keeps what it acknowledged, read from its
//! settings (`CONFIG GET`) at start-up and with every health report: without an
//! append-only file a restart of Redis loses every message posted since its
//! last snapshot, and with a memory limit and an evicting policy Redis drops
//! keys when it is full. A cluster is read on each of its masters.

use zaqar_proto::ErrorCode;

use super::connection::Node;
use super::RedisStore;
use crate::store::StoreResult;

impl RedisStore {
    /// What in the server's settings can lose acknowledged messages; `None`
    /// when nothing can, or when the server does not allow `CONFIG` (some
    /// managed services): it cannot tell then.
    /// A cluster is read node by node (each master), and a gap names its node.
    pub(super) async fn volatility(&self) -> StoreResult<Option<String>> {
        let nodes = self.nodes().await?;
        let mut all = Vec::new();
        for node in &nodes {
            let mut settings = Vec::new();
            for name in ["appendonly", "maxmemory", "maxmemory-policy"] {
                let cmd = redis::cmd("CONFIG").arg("GET").arg(name).clone();
                match self.query_on::<Vec<String>>(node, &cmd).await {
                    Ok(pair) => settings.push(pair.get(1).cloned().unwrap_or_default()),
                    Err(err) if err.code == ErrorCode::Unavailable => return Err(err),
                    Err(err) => {
                        tracing::debug!(error = %err, "CONFIG GET refused: durability unknown");
                        return Ok(None);
                    }
                }
            }
            let gaps = gaps(&settings[0], &settings[1], &settings[2]);
            all.extend(gaps.into_iter().map(|gap| match node {
                Node::TheServer => gap,
                Node::Master { host, port } => format!("{host}:{port}: {gap}"),
            }));
        }
        Ok((!all.is_empty()).then(|| all.join("; ")))
    }
}

/// The settings that lose acknowledged messages, described.
fn gaps(appendonly: &str, maxmemory: &str, policy: &str) -> Vec<String> {
    let mut gaps = Vec::new();
    if appendonly != "yes" {
        gaps.push(format!(
            "appendonly is {appendonly:?}: a restart of Redis loses what it acknowledged \
             since its last snapshot"
        ));
    }
    if maxmemory != "0" && policy != "noeviction" {
        gaps.push(format!(
            "maxmemory-policy is {policy:?} with maxmemory {maxmemory}: Redis evicts keys when full"
        ));
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::gaps;

    #[test]
    fn no_aof_and_evicting_policies_under_a_limit_lose_messages() {
        assert!(gaps("yes", "0", "noeviction").is_empty());
        assert!(
            gaps("yes", "0", "allkeys-lru").is_empty(),
            "no limit, no eviction"
        );
        assert!(gaps("yes", "1073741824", "noeviction").is_empty());
        assert_eq!(gaps("no", "0", "noeviction").len(), 1);
        let both = gaps("no", "1073741824", "volatile-lru");
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[1].contains("volatile-lru"), "{both:?}");
    }
}
