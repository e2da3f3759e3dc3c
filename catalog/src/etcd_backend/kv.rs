//! Bounded, retried access to etcd's KV API for the etcd catalog.
//!
//! Every request the catalog makes is idempotent (reads, puts of a whole value,
//! deletes, and compare-and-set transactions whose retry finds the first try's
//! result), so a request that fails in transit (an unreachable member, a broken
//! connection, a leader election) is tried again, on whichever member the client
//! picks, until [`REQUEST_TIMEOUT`]; then the call is `unavailable`.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, DeleteOptions, GetOptions, GetResponse, KeyValue, KvClient, Txn,
    TxnResponse,
};
use tokio::time::Instant;
use zaqar_proto::ZaqarError;

use crate::backend::CatalogResult;

/// How long establishing a connection to an etcd member may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one catalog call may wait for etcd before it is `unavailable`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The first and the longest pause between two tries of a request.
const RETRY_PAUSES: (Duration, Duration) = (Duration::from_millis(20), Duration::from_millis(500));
/// Keys read per request by [`Kv::scan`]; tiny in tests, so that the conformance
/// suite's listings cross chunk boundaries.
const SCAN_CHUNK: i64 = if cfg!(test) { 3 } else { 500 };

/// A client of the etcd members named in the catalog URI.
#[derive(Clone)]
pub struct Kv {
    client: Client,
}

impl Kv {
    /// A client of `endpoints` (`http://host:port`); connects lazily.
    pub async fn connect(endpoints: &[String]) -> CatalogResult<Kv> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), CONNECT_TIMEOUT);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|err| match err {
                etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
                    ZaqarError::bad_request(format!("invalid etcd endpoint: {err}"))
                }
                err => store_error(err),
            })?;
        Ok(Kv { client })
    }

    /// Runs `attempt` until it succeeds, fails for good, or [`REQUEST_TIMEOUT`] passes.
    /// Only idempotent requests may be retried, and every request here is one.
    async fn call<T, F, Fut>(&self, mut attempt: F) -> CatalogResult<T>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut pause = RETRY_PAUSES.0;
        loop {
            let err =
                match tokio::time::timeout_at(deadline, attempt(self.client.kv_client())).await {
                    Ok(Ok(value)) => return Ok(value),
                    Ok(Err(err)) => err,
                    Err(_) => {
                        return Err(ZaqarError::unavailable(format!(
                            "the etcd catalog did not answer within {REQUEST_TIMEOUT:?}"
                        )))
                    }
                };
            if !is_transient(&err) || Instant::now() + pause >= deadline {
                return Err(store_error(err));
            }
            tracing::debug!(error = %err, "etcd request failed, retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_PAUSES.1);
        }
    }

    pub async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        options: GetOptions,
    ) -> CatalogResult<GetResponse> {
        let key = key.into();
        self.call(|mut kv| {
            let (key, options) = (key.clone(), options.clone());
            async move { kv.get(key, Some(options)).await }
        })
        .await
    }

    pub async fn put(&self, key: String, value: Vec<u8>) -> CatalogResult<()> {
        self.call(|mut kv| {
            let (key, value) = (key.clone(), value.clone());
            async move { kv.put(key, value, None).await }
        })
        .await?;
        Ok(())
    }

    pub async fn delete(&self, key: String, options: DeleteOptions) -> CatalogResult<()> {
        self.call(|mut kv| {
            let (key, options) = (key.clone(), options.clone());
            async move { kv.delete(key, Some(options)).await }
        })
        .await?;
        Ok(())
    }

    pub async fn txn(&self, txn: Txn) -> CatalogResult<TxnResponse> {
        self.call(|mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
    }

    /// Every key-value in `[start, end)`, read in chunks at one revision.
    pub async fn scan(&self, start: Vec<u8>, end: Vec<u8>) -> CatalogResult<Vec<KeyValue>> {
        Ok(self.scan_at(start, end).await?.0)
    }

    /// Every key-value in `[start, end)`, read in chunks at one revision, and that
    /// revision.
    pub async fn scan_at(
        &self,
        mut start: Vec<u8>,
        end: Vec<u8>,
    ) -> CatalogResult<(Vec<KeyValue>, i64)> {
        let mut all = Vec::new();
        let mut revision = 0;
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(SCAN_CHUNK)
                .with_revision(revision);
            let mut response = self.get(start, options).await?;
            revision = response.header().map_or(0, |h| h.revision());
            let more = response.more();
            let kvs = response.take_kvs();
            let next = kvs
                .last()
                .filter(|_| more)
                .map(|last| [last.key(), &[0]].concat());
            all.extend(kvs);
            match next {
                Some(next) => start = next,
                None => return Ok((all, revision)),
            }
        }
    }

    /// A client of etcd's watch API, on the same connection.
    pub fn watch_client(&self) -> etcd_client::WatchClient {
        self.client.watch_client()
    }

    /// The raw client, for tests that write what the catalog would not.
    #[cfg(test)]
    pub fn kv_client(&self) -> KvClient {
        self.client.kv_client()
    }
}

/// A failure in transit, worth trying again: the member could not be reached
/// (`Unavailable`), the connection broke under the request (`Cancelled`), or etcd had
/// no leader for a moment (`Unavailable`).
fn is_transient(err: &etcd_client::Error) -> bool {
    use tonic::Code;
    match err {
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
        ),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// A failure of etcd: unreachable, overloaded, leaderless or compacted stores are all
/// `unavailable`; every catalog call is safe to retry.
fn store_error(err: etcd_client::Error) -> ZaqarError {
    ZaqarError::unavailable(format!("the etcd catalog failed: {err}"))
}
