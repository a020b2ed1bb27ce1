//! What the provider agent's MetadataService serves, and how it reaches the shards: the application and
//! the `MetadataInfo` of every revision still answered, published from the main side over one crossbeam
//! channel per provider shard and read by each shard at call time (no lock).
//!
//! Which revisions are answered follows Java Dubbo 3.3 (apache/dubbo `dubbo-registry/dubbo-registry-api/
//! src/main/java/org/apache/dubbo/registry/client/AbstractServiceDiscovery.java`): every revision the
//! instance was registered with is put in `metadataInfos` (`reportMetadata`), and
//! `MetadataServiceDelegation.getMetadataInfo(revision)` answers any of them; a scheduled task evicts,
//! while more than `metadata-info-cache.size` (16) are kept, the oldest published more than
//! `metadata-info-cache.expire` (10 minutes) ago (`CommonConstants.DEFAULT_METADATA_INFO_CACHE_SIZE`,
//! `DEFAULT_METADATA_INFO_CACHE_EXPIRE`). So a consumer that saw the previous revision a moment before a
//! change still gets its answer.
//!
//! Use (main side): `let (publisher, receivers) = MetadataPublisher::new(application, shards);` give one
//! [`MetadataReceiver`] to each provider shard ([`super::run`]), then `publisher.publish(info)` for the
//! first `MetadataInfo` and again whenever the exported services (and so the revision) change.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mesh_registry::dubbo::metadata_info::MetadataInfo;

/// Revisions kept at least (Java's `DEFAULT_METADATA_INFO_CACHE_SIZE`).
pub const KEPT_REVISIONS: usize = 16;

/// Age after which a revision beyond [`KEPT_REVISIONS`] is dropped (Java's
/// `DEFAULT_METADATA_INFO_CACHE_EXPIRE`, 10 minutes).
pub const REVISION_EXPIRY: Duration = Duration::from_secs(10 * 60);

/// Revisions kept at most, whatever their age (the agent's own bound; Java has none).
pub const MAX_REVISIONS: usize = 256;

/// One published `MetadataInfo` and when it was published.
#[derive(Debug, Clone)]
struct Published {
    info: Arc<MetadataInfo>,
    at: Instant,
}

/// What the MetadataService answers, as of one publication: the application (its group and
/// `serviceName()`) and the `MetadataInfo` of each revision still answered, newest (current) first.
#[derive(Debug, Clone)]
pub struct ServedMetadata {
    application: String,
    revisions: Vec<Published>,
}

impl ServedMetadata {
    /// Nothing published yet for `application`: every revision is unknown.
    pub fn new(application: impl Into<String>) -> Self {
        ServedMetadata {
            application: application.into(),
            revisions: Vec::new(),
        }
    }

    /// The application: the MetadataService's group and `serviceName()`.
    pub fn application(&self) -> &str {
        &self.application
    }

    /// The current `MetadataInfo` (the last published), if any.
    pub fn current(&self) -> Option<&MetadataInfo> {
        self.revisions.first().map(|p| &*p.info)
    }

    /// The `MetadataInfo` of `revision`, if it is still answered (`getLocalMetadata(revision)` and the
    /// `revision.equals(metadataInfo.getRevision())` check of `MetadataServiceDelegation`).
    pub fn find(&self, revision: &str) -> Option<&MetadataInfo> {
        self.revisions
            .iter()
            .map(|p| &*p.info)
            .find(|info| info.revision == revision)
    }

    /// The revisions answered, newest first.
    pub fn revisions(&self) -> impl Iterator<Item = &str> {
        self.revisions.iter().map(|p| p.info.revision.as_str())
    }

    /// `info` becomes current at `now` (a revision published again moves to the front with the new
    /// time, as Java's `metadataInfos.put` replaces it); then Java's eviction (see the module doc) and
    /// [`MAX_REVISIONS`].
    fn publish(&mut self, info: MetadataInfo, now: Instant) {
        self.revisions.retain(|p| p.info.revision != info.revision);
        self.revisions.insert(
            0,
            Published {
                info: Arc::new(info),
                at: now,
            },
        );
        while self.revisions.len() > KEPT_REVISIONS {
            // The oldest one published more than REVISION_EXPIRY ago (never the current one).
            let oldest_expired = self
                .revisions
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, p)| now.saturating_duration_since(p.at) > REVISION_EXPIRY)
                .min_by_key(|(_, p)| p.at)
                .map(|(i, _)| i);
            match oldest_expired {
                Some(i) => {
                    self.revisions.remove(i);
                }
                None => break,
            }
        }
        self.revisions.truncate(MAX_REVISIONS);
    }
}

/// The main side: publishes each new `MetadataInfo` to every provider shard. `Send`, so it can live in
/// the registrar's thread.
#[derive(Debug)]
pub struct MetadataPublisher {
    served: ServedMetadata,
    senders: Vec<Sender<Arc<ServedMetadata>>>,
}

impl MetadataPublisher {
    /// A publisher for `application` and one receiver per provider shard (`shards` of them).
    pub fn new(application: impl Into<String>, shards: usize) -> (MetadataPublisher, Vec<MetadataReceiver>) {
        let (senders, receivers) = (0..shards)
            .map(|_| {
                let (tx, rx) = crossbeam_channel::unbounded();
                (tx, MetadataReceiver::new(rx))
            })
            .unzip();
        let publisher = MetadataPublisher {
            served: ServedMetadata::new(application),
            senders,
        };
        (publisher, receivers)
    }

    /// `info` becomes the current revision (earlier ones stay answered as Java keeps them), and every
    /// shard gets the new state. A shard that has stopped is skipped.
    pub fn publish(&mut self, info: MetadataInfo) {
        self.publish_at(info, Instant::now());
    }

    fn publish_at(&mut self, info: MetadataInfo, now: Instant) {
        self.served.publish(info, now);
        let served = Arc::new(self.served.clone());
        for tx in &self.senders {
            let _ = tx.send(served.clone());
        }
    }

    /// What the shards now serve.
    pub fn served(&self) -> &ServedMetadata {
        &self.served
    }
}

/// One provider shard's end: the latest published state, taken at call time.
#[derive(Debug)]
pub struct MetadataReceiver {
    rx: Receiver<Arc<ServedMetadata>>,
    latest: RefCell<Option<Arc<ServedMetadata>>>,
}

impl MetadataReceiver {
    fn new(rx: Receiver<Arc<ServedMetadata>>) -> Self {
        MetadataReceiver {
            rx,
            latest: RefCell::new(None),
        }
    }

    /// A receiver nothing is ever published to (a provider agent that serves no metadata: every
    /// MetadataService call is answered "not found").
    pub fn none() -> Self {
        MetadataReceiver::new(crossbeam_channel::never())
    }

    /// The latest published state (`None` before the first publication).
    pub fn latest(&self) -> Option<Arc<ServedMetadata>> {
        if let Some(newest) = self.rx.try_iter().last() {
            *self.latest.borrow_mut() = Some(newest);
        }
        self.latest.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_registry::dubbo::metadata_info::ServiceInfo;

    fn info(app: &str, services: &[&str]) -> MetadataInfo {
        MetadataInfo::new(
            app,
            services.iter().map(|s| ServiceInfo {
                name: (*s).to_owned(),
                group: None,
                version: None,
                protocol: Some("dubbo".into()),
                port: 20880,
                path: Some((*s).to_owned()),
                params: Default::default(),
            }),
        )
    }

    #[test]
    fn every_shard_sees_the_latest_publication() {
        let (mut publisher, receivers) = MetadataPublisher::new("demo", 3);
        assert!(receivers.iter().all(|r| r.latest().is_none()));
        let first = info("demo", &["a.A"]);
        let second = info("demo", &["a.A", "b.B"]);
        publisher.publish(first.clone());
        publisher.publish(second.clone());
        for r in &receivers {
            let served = r.latest().unwrap();
            assert_eq!(served.application(), "demo");
            assert_eq!(served.current(), Some(&second));
            // The previous revision is still answered, as Java keeps it.
            assert_eq!(served.find(&first.revision), Some(&first));
            assert_eq!(served.find("nope"), None);
            // Read again without news: the same state.
            assert_eq!(r.latest().unwrap().current(), Some(&second));
        }
        assert!(MetadataReceiver::none().latest().is_none());
    }

    #[test]
    fn a_revision_published_again_becomes_current_once() {
        let mut served = ServedMetadata::new("demo");
        let (a, b) = (info("demo", &["a.A"]), info("demo", &["b.B"]));
        let t = Instant::now();
        served.publish(a.clone(), t);
        served.publish(b.clone(), t);
        served.publish(a.clone(), t);
        let revs: Vec<&str> = served.revisions().collect();
        assert_eq!(revs, [a.revision.as_str(), b.revision.as_str()]);
    }

    #[test]
    fn beyond_sixteen_revisions_only_expired_ones_are_dropped() {
        let mut served = ServedMetadata::new("demo");
        let t0 = Instant::now();
        let infos: Vec<MetadataInfo> = (0..20).map(|i| info("demo", &[&format!("s.S{i}")])).collect();
        // 20 revisions within a minute: none has expired, all are kept.
        for (i, x) in infos.iter().enumerate() {
            served.publish(x.clone(), t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(served.revisions().count(), 20);
        // Eleven minutes later, one more: the oldest expired ones go until 16 are left.
        let later = t0 + Duration::from_secs(11 * 60);
        let newest = info("demo", &["z.Z"]);
        served.publish(newest.clone(), later);
        assert_eq!(served.revisions().count(), KEPT_REVISIONS);
        assert_eq!(served.current(), Some(&newest));
        for gone in &infos[..5] {
            assert!(served.find(&gone.revision).is_none());
        }
        for kept in &infos[5..] {
            assert!(served.find(&kept.revision).is_some());
        }
    }

    #[test]
    fn never_more_than_the_hard_bound() {
        let mut served = ServedMetadata::new("demo");
        let t0 = Instant::now();
        for i in 0..(MAX_REVISIONS + 10) {
            served.publish(info("demo", &[&format!("s.S{i}")]), t0);
        }
        assert_eq!(served.revisions().count(), MAX_REVISIONS);
    }
}
