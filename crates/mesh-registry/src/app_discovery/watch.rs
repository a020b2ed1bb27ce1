//! The etcd side of application-level discovery, run inside the registry watcher's session: the keys it
//! reads and watches (instances under the services root, the mapping keys, the consumer's migration rule),
//! what each put or delete does, and the MetadataService calls (through [`MetadataResolver`]) whose answers
//! complete the instances. Errors follow the interface-level watch: any failed read or watch ends the
//! session, which is read again whole (a resync) after a backoff.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use etcd_client::{Client, GetOptions, KeyValue, WatchOptions, WatchStream};

use super::{AppDiscoveryConfig, ChosenAddresses};
use crate::app_metadata::{MetadataResolver, Resolution, Want};
use crate::dubbo::instance::{InstanceKey, InstanceUse, ServiceInstance, INSTANCES_ROOT};
use crate::dubbo::mapping::parse_mapping;
use crate::dubbo::migration_rule::MigrationRule;
use crate::etcd::bounded;
use crate::RegistryError;

/// One range this side reads and watches.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    /// The key, or the prefix.
    key: String,
    prefix: bool,
}

impl Range {
    fn covers(&self, key: &[u8]) -> bool {
        if self.prefix {
            key.starts_with(self.key.as_bytes())
        } else {
            key == self.key.as_bytes()
        }
    }
}

/// A range read apart from the registry root, to be watched from `revision + 1`.
#[derive(Debug)]
pub(crate) struct ApartRead {
    range: Range,
    revision: i64,
}

impl ApartRead {
    /// The revision of the read.
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }
}

/// Things skipped in one batch, reported in one line per kind.
#[derive(Debug, Default)]
struct Skipped {
    count: usize,
    first: Option<String>,
}

impl Skipped {
    fn add(&mut self, key: &[u8], why: &dyn std::fmt::Display) {
        self.count += 1;
        if self.first.is_none() {
            let key = String::from_utf8_lossy(&key[..key.len().min(200)]).into_owned();
            self.first = Some(format!("{key}: {why}"));
        }
    }

    /// Logs what was skipped since the last report, if anything; `what` is only rendered then (this runs
    /// once per watch event).
    fn report(&mut self, what: &dyn std::fmt::Display) {
        if let Some(first) = self.first.take() {
            tracing::warn!("skipped {} {what}; first: {first}", self.count);
        }
        self.count = 0;
    }
}

/// Application-level discovery's keys and MetadataService calls (see the module documentation).
pub(crate) struct AppWatch {
    config: AppDiscoveryConfig,
    services: Range,
    mapping: Range,
    rule: Option<Range>,
    resolver: MetadataResolver,
    /// Usable instances by etcd key (kept even when their application is not mapped yet).
    instances: HashMap<Vec<u8>, ServiceInstance>,
    /// Instances whose metadata was asked for.
    asked: HashSet<Vec<u8>>,
    /// Instances asked whose revision has had no answer yet (neither resolved nor a first failure).
    waiting: HashSet<Vec<u8>>,
    /// Instance (value's application, host, port) -> etcd key, for the resolver's answers.
    by_id: HashMap<InstanceKey, Vec<u8>>,
    /// Whether the migration rule in force lets some service use application-level addresses.
    rule_uses_applications: bool,
    rule_present: bool,
    skipped_instances: Skipped,
    unaskable: Skipped,
}

impl std::fmt::Debug for AppWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppWatch")
            .field("services", &self.services)
            .field("instances", &self.instances.len())
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl AppWatch {
    pub(crate) fn new(config: &AppDiscoveryConfig) -> Self {
        AppWatch {
            services: Range {
                key: config.services_prefix(),
                prefix: true,
            },
            mapping: Range {
                key: config.mapping_prefix(),
                prefix: true,
            },
            rule: config.rule_key().map(|key| Range { key, prefix: false }),
            resolver: MetadataResolver::new(config.metadata.clone()),
            config: config.clone(),
            instances: HashMap::new(),
            asked: HashSet::new(),
            waiting: HashSet::new(),
            by_id: HashMap::new(),
            rule_uses_applications: false,
            rule_present: false,
            skipped_instances: Skipped::default(),
            unaskable: Skipped::default(),
        }
    }

    /// The builder this side feeds.
    pub(crate) fn chosen(config: &AppDiscoveryConfig) -> ChosenAddresses {
        ChosenAddresses::migrating(config.migration, config.provided_by.clone())
    }

    fn ranges(&self) -> impl Iterator<Item = &Range> + '_ {
        [&self.services, &self.mapping]
            .into_iter()
            .chain(self.rule.as_ref())
    }

    /// After the registry root (`range`, a prefix) was read: takes this side's keys from that read, and reads
    /// the ranges outside it on their own (one that cannot be read, e.g. not allowed by etcd's auth, is left
    /// out this session, as the routing rules are). Returns those read, to be watched by
    /// [`AppWatch::watch_apart`].
    pub(crate) async fn read(
        &mut self,
        client: &mut Client,
        request_timeout: Duration,
        range: &str,
        registry_kvs: &[KeyValue],
        chosen: &mut ChosenAddresses,
    ) -> Result<Vec<ApartRead>, RegistryError> {
        let (inside, apart): (Vec<Range>, Vec<Range>) =
            self.ranges().cloned().partition(|r| r.key.starts_with(range));
        // dubbo-go's remote metadata (`storage-type=remote`) is read through this session's client.
        self.resolver.set_metadata_report(Some(client.kv_client()));
        self.resync(&inside, registry_kvs, chosen);
        let mut reads = Vec::new();
        for r in apart {
            let options = r.prefix.then(|| GetOptions::new().with_prefix());
            let response = match bounded("get", request_timeout, client.get(r.key.as_str(), options)).await {
                Ok(response) => response,
                // As the config center's rules: a user allowed to read the registry root only (etcd auth)
                // still discovers interface-level providers; what was read before stays.
                Err(e) => {
                    tracing::warn!(
                        "{} not read ({e}); application-level discovery goes on without it this \
                         session",
                        r.key
                    );
                    continue;
                }
            };
            let Some(revision) = response.header().map(|h| h.revision()) else {
                return Err(RegistryError::WatchEnded("get response without header".into()));
            };
            self.resync(std::slice::from_ref(&r), response.kvs(), chosen);
            reads.push(ApartRead { range: r, revision });
        }
        self.report(chosen);
        Ok(reads)
    }

    /// Adds a watch for each range read apart to the session's watch stream (events are told apart by key).
    pub(crate) async fn watch_apart(
        stream: &mut WatchStream,
        request_timeout: Duration,
        reads: &[ApartRead],
    ) -> Result<(), RegistryError> {
        for read in reads {
            let mut options = WatchOptions::new().with_start_revision(read.revision + 1);
            if read.range.prefix {
                options = options.with_prefix();
            }
            bounded(
                "watch",
                request_timeout,
                stream.watch(read.range.key.as_str(), Some(options)),
            )
            .await?;
        }
        Ok(())
    }

    /// Replaces what is known under `ranges` by a whole read (`kvs` may hold other keys too).
    fn resync(&mut self, ranges: &[Range], kvs: &[KeyValue], chosen: &mut ChosenAddresses) {
        let present: HashSet<&[u8]> = kvs.iter().map(KeyValue::key).collect();
        let mut known: Vec<Vec<u8>> = Vec::new();
        if ranges.contains(&self.services) {
            known.extend(self.instances.keys().cloned());
        }
        if ranges.contains(&self.mapping) {
            if let Some(lists) = chosen.app_level() {
                known.extend(
                    lists
                        .mapped_interfaces()
                        .map(|i| format!("{}{i}", self.mapping.key).into_bytes()),
                );
            }
        }
        if let Some(rule) = self
            .rule
            .as_ref()
            .filter(|r| ranges.contains(r) && self.rule_present)
        {
            known.push(rule.key.clone().into_bytes());
        }
        for key in known.iter().filter(|k| !present.contains(k.as_slice())) {
            self.delete(key, chosen);
        }
        for kv in kvs {
            if ranges.iter().any(|r| r.covers(kv.key())) {
                self.put(kv.key(), kv.value(), chosen);
            }
        }
    }

    /// A put; false when `key` is none of this side's keys.
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8], chosen: &mut ChosenAddresses) -> bool {
        if self.services.covers(key) {
            self.put_instance(key, value, chosen);
        } else if self.mapping.covers(key) {
            let Some(interface) = self.mapping_interface(key) else {
                return true;
            };
            match std::str::from_utf8(value)
                .map_err(|_| "not UTF-8".to_owned())
                .and_then(|v| parse_mapping(v).map_err(|e| e.to_string()))
            {
                Ok(apps) => {
                    chosen.set_mapping(&interface, apps);
                    self.ask_wanted(chosen);
                }
                Err(e) => tracing::warn!("mapping {interface}: {e}; the mapping before stays"),
            }
        } else if self.rule.as_ref().is_some_and(|r| r.covers(key)) {
            let text = String::from_utf8_lossy(value);
            match MigrationRule::parse(&text) {
                Ok(rule) => {
                    self.rule_present = true;
                    self.set_rule(rule, chosen);
                }
                Err(e) => tracing::warn!(
                    "migration rule {}: {e}; the rule before stays in force",
                    String::from_utf8_lossy(key)
                ),
            }
        } else {
            return false;
        }
        true
    }

    /// A delete; false when `key` is none of this side's keys.
    pub(crate) fn delete(&mut self, key: &[u8], chosen: &mut ChosenAddresses) -> bool {
        if self.services.covers(key) {
            self.drop_instance(key, chosen);
        } else if self.mapping.covers(key) {
            if let Some(interface) = self.mapping_interface(key) {
                chosen.set_mapping(&interface, Vec::new());
            }
        } else if self.rule.as_ref().is_some_and(|r| r.covers(key)) {
            self.rule_present = false;
            self.set_rule(None, chosen);
        } else {
            return false;
        }
        true
    }

    /// Waits for the next MetadataService outcome (cancel-safe; pends forever when nothing is wanted).
    pub(crate) async fn next(&mut self) -> Resolution {
        self.resolver.next().await
    }

    /// Applies a MetadataService outcome.
    pub(crate) fn resolved(&mut self, resolution: Resolution, chosen: &mut ChosenAddresses) {
        match resolution {
            Resolution::Resolved { key, info, instances } => {
                let keys: Vec<Vec<u8>> = instances
                    .iter()
                    .filter_map(|id| self.by_id.get(id).cloned())
                    .collect();
                for k in &keys {
                    self.waiting.remove(k);
                }
                chosen.set_metadata(&keys, &info);
                tracing::info!(
                    "metadata of {} revision {} resolved: {} service(s), {} instance(s)",
                    key.app,
                    key.revision,
                    info.services.len(),
                    keys.len()
                );
            }
            Resolution::Failed {
                key,
                error,
                attempts,
                given_up,
                ..
            } => {
                let instances = &self.instances;
                self.waiting.retain(|k| {
                    instances.get(k).is_none_or(|i| {
                        i.service_name != key.app || i.revision() != Some(key.revision.as_str())
                    })
                });
                // The first failure and the one that gives up are logged; the retries between are not.
                if attempts == 1 || given_up {
                    tracing::warn!(
                        "metadata of {} revision {}: {error} (attempt {attempts}{})",
                        key.app,
                        key.revision,
                        if given_up {
                            ", given up: retried rarely"
                        } else {
                            ", retrying"
                        }
                    );
                }
            }
        }
        chosen.set_settling(!self.waiting.is_empty());
        self.report(chosen);
    }

    /// One line per kind of thing skipped since the last report.
    pub(crate) fn report(&mut self, chosen: &mut ChosenAddresses) {
        let under = &self.services.key;
        self.skipped_instances
            .report(&format_args!("instance key(s) under {under}"));
        self.unaskable.report(
            &"instance(s) whose MetadataService cannot be called (another of the same revision can be)",
        );
        if let Some((count, first)) = chosen.take_skipped() {
            tracing::warn!("skipped {count} service(s) of instances that cannot be called; first: {first}");
        }
    }

    fn mapping_interface(&self, key: &[u8]) -> Option<String> {
        let rest = key.strip_prefix(self.mapping.key.as_bytes())?;
        let interface = std::str::from_utf8(rest).ok()?;
        (!interface.is_empty() && !interface.contains('/')).then(|| interface.to_owned())
    }

    fn put_instance(&mut self, key: &[u8], value: &[u8], chosen: &mut ChosenAddresses) {
        let parsed = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(self.services.key.as_str()))
            .ok_or_else(|| "not UTF-8".to_owned())
            .and_then(|rest| {
                // `InstanceKey::parse` reads the default root; another root is checked the same way.
                InstanceKey::parse(&format!("{INSTANCES_ROOT}/{rest}")).map_err(|e| e.to_string())
            })
            .and_then(|_| {
                ServiceInstance::from_json(value)
                    .map(|(instance, _shape)| instance)
                    .map_err(|e| e.to_string())
            });
        let instance = match parsed {
            Ok(instance) => instance,
            Err(why) => {
                self.skipped_instances.add(key, &why);
                self.drop_instance(key, chosen);
                return;
            }
        };
        if let InstanceUse::Skip(why) = instance.usability() {
            self.skipped_instances.add(key, &why);
            self.drop_instance(key, chosen);
            return;
        }
        if let Some(old) = self.instances.get(key) {
            if *old == instance {
                return; // the same value put again
            }
            let old_id = old.key();
            if old_id != instance.key() {
                self.resolver.forget(&old_id);
                self.by_id.remove(&old_id);
            }
        }
        self.by_id.insert(instance.key(), key.to_vec());
        self.instances.insert(key.to_vec(), instance.clone());
        self.asked.remove(key);
        self.waiting.remove(key);
        chosen.put_instance(key, instance, None);
        self.ask(key, chosen);
    }

    fn drop_instance(&mut self, key: &[u8], chosen: &mut ChosenAddresses) {
        if let Some(old) = self.instances.remove(key) {
            let id = old.key();
            self.resolver.forget(&id);
            if self.by_id.get(&id).is_some_and(|k| k == key) {
                self.by_id.remove(&id);
            }
        }
        self.asked.remove(key);
        self.waiting.remove(key);
        chosen.set_settling(!self.waiting.is_empty());
        chosen.remove_instance(key);
    }

    fn set_rule(&mut self, rule: Option<MigrationRule>, chosen: &mut ChosenAddresses) {
        self.rule_uses_applications = rule.as_ref().is_some_and(MigrationRule::may_use_applications);
        match &rule {
            Some(r) => tracing::info!(
                "migration rule for {} in force: step {}, threshold {}, force {}, delay {} s, {} \
                 interface and {} application entries",
                self.config.application.as_deref().unwrap_or("?"),
                r.settings
                    .step
                    .map_or("(the consumer's)".to_owned(), |s| s.to_string()),
                r.settings
                    .threshold
                    .map_or("(the consumer's)".to_owned(), |t| t.to_string()),
                r.settings.force.unwrap_or(false),
                r.settings.delay.unwrap_or(0),
                r.interfaces.len(),
                r.applications.len()
            ),
            None => tracing::info!(
                "no migration rule for {}: the consumer's step {}",
                self.config.application.as_deref().unwrap_or("?"),
                self.config.migration.step
            ),
        }
        chosen.set_rule(rule);
        self.ask_wanted(chosen);
    }

    /// Asks for the metadata of every instance not asked yet whose application is mapped to an
    /// interface (after a mapping or rule change).
    fn ask_wanted(&mut self, chosen: &mut ChosenAddresses) {
        let due: Vec<Vec<u8>> = self
            .instances
            .keys()
            .filter(|k| !self.asked.contains(*k))
            .cloned()
            .collect();
        for key in due {
            self.ask(&key, chosen);
        }
    }

    /// Asks for the metadata of the instance at `key` when its application is mapped to an interface and
    /// some step in force may use application-level addresses (as Dubbo, a consumer on FORCE_INTERFACE
    /// calls no MetadataService).
    fn ask(&mut self, key: &[u8], chosen: &mut ChosenAddresses) {
        if !(self.config.step_uses_applications() || self.rule_uses_applications) {
            return;
        }
        let (Some(lists), Some(instance)) = (chosen.app_level(), self.instances.get(key)) else {
            return;
        };
        if self.asked.contains(key) || !lists.is_mapped(&instance.service_name) {
            return;
        }
        self.asked.insert(key.to_vec());
        match self.resolver.want(instance) {
            Want::Ready(info) => chosen.set_metadata(&[key.to_vec()], &info),
            Want::Pending => {
                self.waiting.insert(key.to_vec());
            }
            Want::PendingUnaskable(e) => self.unaskable.add(key, &e),
            Want::Skip(why) => self.skipped_instances.add(key, &why),
        }
        chosen.set_settling(!self.waiting.is_empty());
    }
}
