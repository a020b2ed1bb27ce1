//! A blocking etcd client for tests' own reads and writes: a fresh connection per call (so it works across
//! etcd restarts), every call bounded by 5 s. A failed call panics: in a test it is a failed test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, GetOptions};

use crate::etcd::EtcdServer;

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Blocking puts, gets, deletes and lease calls against one etcd endpoint.
#[derive(Debug)]
pub struct BlockingKv {
    url: String,
    rt: tokio::runtime::Runtime,
}

impl BlockingKv {
    /// A client of `etcd`'s client URL.
    pub fn new(etcd: &EtcdServer) -> Self {
        Self::with_url(etcd.client_url())
    }

    /// A client of the etcd at `url`.
    pub fn with_url(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        BlockingKv {
            url: url.to_owned(),
            rt,
        }
    }

    /// Runs `f` on a fresh connection, within `CALL_TIMEOUT` (5 s).
    pub fn run<T, F: Future<Output = Result<T, etcd_client::Error>>>(
        &self,
        f: impl FnOnce(Client) -> F,
    ) -> T {
        self.rt.block_on(async {
            let call = async {
                let client = Client::connect([self.url.as_str()], None).await?;
                f(client).await
            };
            tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .expect("etcd call timed out")
                .unwrap()
        })
    }

    pub fn put(&self, key: &str, value: &str) {
        let (k, v) = (key.to_owned(), value.to_owned());
        self.run(|mut c| async move { c.put(k, v, None).await });
    }

    /// `(value, lease)` of `key`.
    pub fn get(&self, key: &str) -> Option<(String, i64)> {
        let k = key.to_owned();
        let r = self.run(|mut c| async move { c.get(k, None).await });
        r.kvs()
            .first()
            .map(|kv| (kv.value_str().unwrap().to_owned(), kv.lease()))
    }

    /// The keys under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let p = prefix.to_owned();
        let r = self.run(|mut c| async move { c.get(p, Some(GetOptions::new().with_prefix())).await });
        r.kvs()
            .iter()
            .map(|kv| kv.key_str().unwrap().to_owned())
            .collect()
    }

    /// How many keys are under `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.keys(prefix).len()
    }

    pub fn delete(&self, key: &str) {
        let k = key.to_owned();
        self.run(|mut c| async move { c.delete(k, None).await });
    }

    pub fn revoke(&self, lease: i64) {
        self.run(|mut c| async move { c.lease_revoke(lease).await });
    }

    /// Remaining TTL of `lease` (-1 when it does not exist).
    pub fn lease_ttl(&self, lease: i64) -> i64 {
        self.run(|mut c| async move { c.lease_time_to_live(lease, None).await })
            .ttl()
    }
}
