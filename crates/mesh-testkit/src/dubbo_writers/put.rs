//! Writes [`Registration`]s into a real etcd the way their implementation does: parent keys first (put, or
//! put-if-absent for Java's `createParentIfAbsent`), then the key with its value on its lease, the lease kept
//! alive by a background task until it is revoked or the writer is dropped.
//!
//! One [`DubboEtcdWriter`] is one registry client: Java's shared lease (`globalLeaseId`) is granted by the
//! first Java registration of that writer and shared by the next ones, so several Java processes are several
//! writers. dubbo-go registrations get a lease each. Load tools that share one connection among many simulated
//! processes use [`DubboEtcdWriter::grant_kept_lease`] and [`DubboEtcdWriter::register_on`].
//!
//! [`BlockingWriter`] wraps the same for synchronous tests (its own one-thread runtime runs the keep-alives).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::task::JoinHandle;

use super::{LeaseRule, Registration};

/// How long one etcd request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A key as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// Its lease (None = persistent).
    pub lease: Option<i64>,
}

/// One registry client writing Dubbo registrations.
pub struct DubboEtcdWriter {
    client: Client,
    /// Java's `globalLeaseId`, once granted.
    shared_lease: Option<i64>,
    /// Keep-alive tasks by lease id.
    keepers: HashMap<i64, JoinHandle<()>>,
}

impl std::fmt::Debug for DubboEtcdWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DubboEtcdWriter")
            .field("shared_lease", &self.shared_lease)
            .field("leases", &self.keepers.len())
            .finish()
    }
}

async fn bounded<T, E: std::error::Error + Send + Sync + 'static>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .with_context(|| format!("etcd {what}: no answer in {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("etcd {what}"))
}

impl DubboEtcdWriter {
    /// Connects to `endpoints` (e.g. `http://127.0.0.1:2379`).
    pub async fn connect<S: AsRef<str>>(endpoints: &[S]) -> anyhow::Result<DubboEtcdWriter> {
        let eps: Vec<&str> = endpoints.iter().map(AsRef::as_ref).collect();
        let client = bounded("connect", Client::connect(eps, None)).await?;
        Ok(DubboEtcdWriter {
            client,
            shared_lease: None,
            keepers: HashMap::new(),
        })
    }

    /// The etcd client (a cheap clone sharing the connection).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The Java shared lease, once a Java registration granted it.
    pub fn shared_lease(&self) -> Option<i64> {
        self.shared_lease
    }

    /// Grants a lease of `ttl_secs` and keeps it alive (every `ttl/3`) until [`Self::revoke`] or drop.
    pub async fn grant_kept_lease(&mut self, ttl_secs: i64) -> anyhow::Result<i64> {
        let id = bounded("lease grant", self.client.lease_grant(ttl_secs, None))
            .await?
            .id();
        let (mut keeper, mut stream) = bounded("lease keepalive", self.client.lease_keep_alive(id)).await?;
        let period = Duration::from_millis((ttl_secs.max(1) as u64 * 1000) / 3);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                // A failed round is retried on the next period; the lease outlives one miss.
                if keeper.keep_alive().await.is_ok() {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, stream.message()).await;
                }
            }
        });
        self.keepers.insert(id, task);
        Ok(id)
    }

    /// Writes `r` as its implementation does: parents, then the key on the lease its rule asks for (Java: this
    /// writer's shared lease, granted on first use; dubbo-go: a new lease; persistent: none).
    pub async fn register(&mut self, r: &Registration) -> anyhow::Result<Written> {
        let lease = match r.lease {
            LeaseRule::Persistent => None,
            LeaseRule::OnePerKey { ttl_secs } => Some(self.grant_kept_lease(ttl_secs).await?),
            LeaseRule::SharedPerClient { ttl_secs } => match self.shared_lease {
                Some(id) => Some(id),
                None => {
                    let id = self.grant_kept_lease(ttl_secs).await?;
                    self.shared_lease = Some(id);
                    Some(id)
                }
            },
        };
        self.register_on(r, lease).await
    }

    /// Writes `r`'s parents and key on `lease` (None = persistent), whatever its lease rule says.
    pub async fn register_on(&mut self, r: &Registration, lease: Option<i64>) -> anyhow::Result<Written> {
        for p in &r.parents {
            if p.only_if_absent {
                let txn = Txn::new()
                    .when([Compare::version(p.key.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(p.key.as_str(), p.value.as_str(), None)]);
                bounded("parent put-if-absent", self.client.txn(txn)).await?;
            } else {
                bounded(
                    "parent put",
                    self.client.put(p.key.as_str(), p.value.as_str(), None),
                )
                .await?;
            }
        }
        let value = r.value.value(lease.unwrap_or(0));
        let opts = lease.map(|id| PutOptions::new().with_lease(id));
        bounded("put", self.client.put(r.key.as_str(), value.as_str(), opts)).await?;
        Ok(Written {
            key: r.key.clone(),
            value,
            lease,
        })
    }

    /// Deletes a key (Java `doUnregister`; dubbo-go never does, its keys go with their lease).
    pub async fn unregister(&mut self, key: &str) -> anyhow::Result<()> {
        bounded("delete", self.client.delete(key, None)).await?;
        Ok(())
    }

    /// Stops keeping `lease` alive and revokes it: its keys go at once (a provider process ending cleanly).
    pub async fn revoke(&mut self, lease: i64) -> anyhow::Result<()> {
        if let Some(task) = self.keepers.remove(&lease) {
            task.abort();
        }
        if self.shared_lease == Some(lease) {
            self.shared_lease = None;
        }
        bounded("lease revoke", self.client.lease_revoke(lease)).await?;
        Ok(())
    }

    /// Stops keeping `lease` alive without revoking it: its keys go when the TTL runs out (a provider process
    /// killed).
    pub fn abandon(&mut self, lease: i64) {
        if let Some(task) = self.keepers.remove(&lease) {
            task.abort();
        }
        if self.shared_lease == Some(lease) {
            self.shared_lease = None;
        }
    }

    /// Revokes every lease this writer holds.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let leases: Vec<i64> = self.keepers.keys().copied().collect();
        for lease in leases {
            self.revoke(lease).await?;
        }
        Ok(())
    }
}

impl Drop for DubboEtcdWriter {
    fn drop(&mut self) {
        for (_, task) in self.keepers.drain() {
            task.abort();
        }
    }
}

/// [`DubboEtcdWriter`] for synchronous code: a one-worker runtime of its own keeps the leases alive between
/// calls. Dropping it stops the keep-alives (the leases then expire; call [`BlockingWriter::close`] to
/// revoke them at once).
#[derive(Debug)]
pub struct BlockingWriter {
    writer: Option<DubboEtcdWriter>,
    rt: tokio::runtime::Runtime,
}

impl BlockingWriter {
    /// Connects to `endpoint`.
    pub fn connect(endpoint: &str) -> anyhow::Result<BlockingWriter> {
        let rt = crate::runtime(1, "dubbo-writer").context("writer runtime")?;
        let writer = rt.block_on(DubboEtcdWriter::connect(&[endpoint]))?;
        Ok(BlockingWriter {
            writer: Some(writer),
            rt,
        })
    }

    fn parts(&mut self) -> anyhow::Result<(&tokio::runtime::Runtime, &mut DubboEtcdWriter)> {
        let w = self.writer.as_mut().context("writer closed")?;
        Ok((&self.rt, w))
    }

    /// See [`DubboEtcdWriter::register`].
    pub fn register(&mut self, r: &Registration) -> anyhow::Result<Written> {
        let (rt, w) = self.parts()?;
        rt.block_on(w.register(r))
    }

    /// See [`DubboEtcdWriter::register_on`].
    pub fn register_on(&mut self, r: &Registration, lease: Option<i64>) -> anyhow::Result<Written> {
        let (rt, w) = self.parts()?;
        rt.block_on(w.register_on(r, lease))
    }

    /// See [`DubboEtcdWriter::grant_kept_lease`].
    pub fn grant_kept_lease(&mut self, ttl_secs: i64) -> anyhow::Result<i64> {
        let (rt, w) = self.parts()?;
        rt.block_on(w.grant_kept_lease(ttl_secs))
    }

    /// See [`DubboEtcdWriter::unregister`].
    pub fn unregister(&mut self, key: &str) -> anyhow::Result<()> {
        let (rt, w) = self.parts()?;
        rt.block_on(w.unregister(key))
    }

    /// See [`DubboEtcdWriter::revoke`].
    pub fn revoke(&mut self, lease: i64) -> anyhow::Result<()> {
        let (rt, w) = self.parts()?;
        rt.block_on(w.revoke(lease))
    }

    /// See [`DubboEtcdWriter::abandon`].
    pub fn abandon(&mut self, lease: i64) {
        if let Some(w) = self.writer.as_mut() {
            w.abandon(lease);
        }
    }

    /// Every key (and value) under `prefix`, sorted by key.
    pub fn list(&mut self, prefix: &str) -> anyhow::Result<Vec<(String, String)>> {
        let (rt, w) = self.parts()?;
        rt.block_on(async move {
            let opts = etcd_client::GetOptions::new().with_prefix();
            let resp = bounded("get", w.client.get(prefix, Some(opts))).await?;
            Ok(resp
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        String::from_utf8_lossy(kv.value()).into_owned(),
                    )
                })
                .collect())
        })
    }

    /// The lease attached to `key` (0 = none), None when the key is absent.
    pub fn lease_of(&mut self, key: &str) -> anyhow::Result<Option<i64>> {
        let (rt, w) = self.parts()?;
        rt.block_on(async move {
            let resp = bounded("get", w.client.get(key, None)).await?;
            Ok(resp.kvs().first().map(|kv| kv.lease()))
        })
    }

    /// Revokes every lease and disconnects.
    pub fn close(mut self) -> anyhow::Result<()> {
        match self.writer.take() {
            Some(w) => self.rt.block_on(w.close()),
            None => Ok(()),
        }
    }
}

impl Drop for BlockingWriter {
    fn drop(&mut self) {
        // Abort the keep-alive tasks inside the runtime's context.
        let _guard = self.rt.enter();
        self.writer.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo_writers::{self as dw, Provider};
    use crate::etcd::EtcdServer;

    const IFACE: &str = "com.example.Echo";

    #[test]
    fn writes_like_java_and_go_into_real_etcd() -> anyhow::Result<()> {
        let etcd = EtcdServer::start()?;
        let mut w = BlockingWriter::connect(etcd.client_url())?;

        // Two Java providers of one process share one lease; the value is its id.
        let a = w.register(&dw::java27_provider(
            dw::DEFAULT_ROOT,
            &Provider::new(IFACE, "127.0.0.1", 20880),
        ))?;
        let b = w.register(&dw::java33_provider(
            dw::DEFAULT_ROOT,
            &Provider::new(IFACE, "127.0.0.1", 20881),
        ))?;
        let shared = a.lease.context("java key has a lease")?;
        assert_eq!(b.lease, Some(shared));
        assert_eq!(a.value, shared.to_string());
        assert_eq!(w.lease_of(&a.key)?, Some(shared));

        // dubbo-go: a lease per key, empty value.
        let g1 = w.register(&dw::dubbo_go_provider(
            "dubbo",
            &Provider::new(IFACE, "127.0.0.1", 20882),
        ))?;
        let g2 = w.register(&dw::dubbo_go_provider(
            "dubbo",
            &Provider::new(IFACE, "127.0.0.1", 20883),
        ))?;
        assert_ne!(g1.lease, g2.lease);
        assert_ne!(g1.lease, Some(shared));
        assert_eq!(g1.value, "");

        let all = w.list("/dubbo")?;
        let service = format!("/dubbo/{IFACE}");
        let value_of = |k: &str| all.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        // The service path was created by Java first (hash value) and then overwritten with "" by dubbo-go.
        assert_eq!(value_of(&service).as_deref(), Some(""));
        assert_eq!(value_of("/dubbo").as_deref(), Some(""));
        assert_eq!(
            value_of(&format!("{service}/configurators")),
            Some(dw::java_string_hash_code(&format!("{service}/configurators")).to_string())
        );
        assert_eq!(value_of(&format!("{service}/providers")).as_deref(), Some(""));
        let providers = all
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{service}/providers/")))
            .count();
        assert_eq!(providers, 4);

        // A later Java registration leaves the existing service key alone (put-if-absent).
        w.register(&dw::java27_provider(
            dw::DEFAULT_ROOT,
            &Provider::new(IFACE, "127.0.0.1", 20884),
        ))?;
        assert_eq!(w.list(&service)?.first().map(|(_, v)| v.as_str()), Some(""));

        // Revoking the Java lease removes the Java keys and nothing else.
        w.revoke(shared)?;
        assert_eq!(w.lease_of(&a.key)?, None);
        assert_eq!(w.lease_of(&b.key)?, None);
        assert!(w.lease_of(&g1.key)?.is_some());
        // A Java persistent parent that exists is left alone (put-if-absent).
        let mut fresh = BlockingWriter::connect(etcd.client_url())?;
        let other = fresh.register(&dw::java27_provider(
            "/dubbo",
            &Provider::new("com.example.Other", "127.0.0.1", 1),
        ))?;
        let other_service = "/dubbo/com.example.Other";
        assert_eq!(
            fresh.list(other_service)?.first().map(|(_, v)| v.clone()),
            Some(dw::java_string_hash_code(other_service).to_string())
        );
        assert!(other.lease.is_some());
        fresh.close()?;
        w.close()?;
        Ok(())
    }
}
