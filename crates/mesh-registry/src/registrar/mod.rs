//! Keep this agent's registrations in etcd under one lease, whatever happens to the lease:
//!
//! * interface level: the provider's `/<root>/<interface>/providers/<URL>` keys (and the consumer's
//!   `consumers` keys when it registers), as Java's `EtcdRegistry` writes them (fact sheet §1.1): the key
//!   holds the URL-encoded URL, the value is the decimal lease id, and the parent `/<root>/<interface>` is
//!   written as a persistent key when absent (Dubbo Admin lists interfaces from those);
//! * application level (Dubbo 3): the instance `<services root>/<application>/<host>:<port>`, its value
//!   the instance in Java's camelCase JSON (fact sheet §4.1, `EtcdServiceDiscovery.doRegister`), on the
//!   same lease;
//! * the interface-to-application mapping `<mapping root>/mapping/<interface>` (dubbo-go's, fact sheet §5):
//!   the application added by compare-and-swap, not on the lease (Dubbo keeps mappings).
//!
//! What is registered can change while the registrar runs ([`RegistrarHandle::update`]): the keys are
//! added, removed and rewritten on the current lease, as Dubbo re-registers its instance when the
//! exported services (and so the metadata revision) change.
//!
//! The files: `plan.rs` (pure: the keys and values, and what an update changes), `session.rs` (the
//! thread: lease, keepalive, watches of our keys, updates), `mapping_writer.rs` (the mapping's CAS loop).

mod mapping_writer;
mod plan;
mod session;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::dubbo::instance::{ServiceInstance, INSTANCES_ROOT};
use crate::dubbo::mapping::DEFAULT_MAPPING_ROOT;
use crate::dubbo::DubboUrl;
use crate::etcd::EtcdConfig;
use crate::RegistryError;
use plan::Plan;

/// Default lease TTL of a registration.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// How long a dropped [`RegistrarHandle`] lets its thread try to revoke the lease.
const DROP_REVOKE_TIMEOUT: Duration = Duration::from_secs(2);

/// One Dubbo URL this agent registers (a provider URL, or a consumer URL with `category=consumers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The URL; its interface and `category` (default `providers`) give the key.
    pub url: DubboUrl,
    /// Lease TTL (default 10 s, whole seconds, at least 1 s; etcd may raise very short TTLs to its minimum,
    /// about 2 s by default). All registrations of one registrar share one lease with the smallest TTL.
    pub ttl: Duration,
}

impl Registration {
    /// A registration with the default TTL.
    pub fn new(url: DubboUrl) -> Self {
        Registration {
            url,
            ttl: DEFAULT_TTL,
        }
    }

    /// The same registration with another TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// The Dubbo 3 application instance a registrar keeps, and the interfaces it maps to the instance's
/// application.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRegistration {
    /// The instance (its `service_name` is the application). Written as [`ServiceInstance::to_java_json`].
    pub instance: ServiceInstance,
    /// Where instances live (default `/services`, Java's and dubbo-go's fixed root).
    pub services_root: String,
    /// The interfaces whose mapping gets the application (empty: no mapping is written).
    pub mapped_interfaces: Vec<String>,
    /// The mapping root (default `/dubbo`): the keys are `<mapping_root>/mapping/<interface>`.
    pub mapping_root: String,
}

impl InstanceRegistration {
    /// The instance under `/services`, mapping nothing.
    pub fn new(instance: ServiceInstance) -> Self {
        InstanceRegistration {
            instance,
            services_root: INSTANCES_ROOT.to_owned(),
            mapped_interfaces: Vec::new(),
            mapping_root: DEFAULT_MAPPING_ROOT.to_owned(),
        }
    }

    /// The same under another services root.
    pub fn with_services_root(mut self, root: impl Into<String>) -> Self {
        self.services_root = root.into();
        self
    }

    /// The same, adding the application to the mapping of each of `interfaces` under `root`.
    pub fn with_mapping(mut self, root: impl Into<String>, interfaces: Vec<String>) -> Self {
        self.mapping_root = root.into();
        self.mapped_interfaces = interfaces;
        self
    }
}

/// Everything one registrar keeps in etcd on its one lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Registrations {
    /// Interface-level URLs: one key each, `/<root>/<interface>/<category>/<URL>` (`root` from
    /// [`EtcdConfig::root`]).
    pub urls: Vec<DubboUrl>,
    /// The application-level instance, if any.
    pub instance: Option<InstanceRegistration>,
    /// The lease TTL (whole seconds, at least 1 s).
    pub ttl: Duration,
}

impl Registrations {
    /// Interface-level URLs only.
    pub fn urls(urls: Vec<DubboUrl>, ttl: Duration) -> Self {
        Registrations {
            urls,
            instance: None,
            ttl,
        }
    }

    /// The same with an application instance.
    pub fn with_instance(mut self, instance: InstanceRegistration) -> Self {
        self.instance = Some(instance);
        self
    }
}

impl From<Vec<Registration>> for Registrations {
    /// The URLs, with the smallest of their TTLs.
    fn from(regs: Vec<Registration>) -> Self {
        let ttl = regs.iter().map(|r| r.ttl).min().unwrap_or(DEFAULT_TTL);
        Registrations::urls(regs.into_iter().map(|r| r.url).collect(), ttl)
    }
}

/// Starts the registrar thread (`mesh-registry-reg`): grant a lease, put every key with it, keep it alive
/// every TTL/3 and watch the keys. Whenever the lease is lost (keepalive answers TTL 0, lease not found)
/// it grants a new lease and puts the keys again; a key deleted by someone else is put again at once. When
/// the etcd member fails instead (stream error, no keepalive answer for TTL/2, the member died or hangs) the
/// next session keeps the same lease alive through another member, and falls back to a new lease if etcd
/// no longer knows it. The mappings of [`InstanceRegistration::mapped_interfaces`] are written beside
/// (compare-and-swap, retried until written).
///
/// Timing: a lease revoked from outside is noticed within TTL/3 (next keepalive) or at once through the
/// deleted keys, and replaced immediately; while etcd is unreachable it retries with backoff up to
/// [`EtcdConfig::retry_backoff_max`] but at least every TTL/3, so registration returns at most that long
/// after etcd does (and a lease etcd restored is kept).
///
/// Errors: the OS refused the thread or the runtime, or the configuration/registrations are invalid
/// ([`std::io::ErrorKind::InvalidInput`] wrapping [`RegistryError::Config`]).
pub fn spawn_registrar(cfg: EtcdConfig, regs: Vec<Registration>) -> std::io::Result<RegistrarHandle> {
    spawn_registrations(cfg, regs.into())
}

/// [`spawn_registrar`] for any [`Registrations`]: interface-level URLs and/or a Dubbo 3 instance (and its
/// mappings).
pub fn spawn_registrations(cfg: EtcdConfig, regs: Registrations) -> std::io::Result<RegistrarHandle> {
    let invalid = |e: RegistryError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    cfg.validate().map_err(invalid)?;
    let plan = Plan::new(&cfg, &regs, 0).map_err(invalid)?;
    let watched = plan.ranges.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shared = Arc::new(Shared::default());
    // Pending from the start: `is_mapped` must not say true before the thread has even begun writing.
    let mappings = plan.mapping.as_ref().map_or(0, |m| m.keys.len());
    shared.mappings_pending.store(mappings, Ordering::Release);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel::<Command>();
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let thread_shared = Arc::clone(&shared);
    let thread_cfg = cfg.clone();
    let thread = std::thread::Builder::new()
        .name("mesh-registry-reg".into())
        .spawn(move || {
            let result = runtime.block_on(session::run(&thread_cfg, plan, &thread_shared, cmd_rx));
            drop(runtime);
            let _ = done_tx.send(result);
        })?;
    Ok(RegistrarHandle {
        cmd: Some(cmd_tx),
        done: done_rx,
        thread: Some(thread),
        shared,
        cfg,
        watched,
    })
}

/// What the handle tells the thread.
#[derive(Debug)]
enum Command {
    /// Register this instead.
    Update(Plan),
    /// Revoke the lease by this deadline and stop.
    Stop(Instant),
}

/// The running registrar. Dropping it revokes the lease in the background (best effort, 2 s) without
/// waiting; [`RegistrarHandle::deregister`] waits.
#[derive(Debug)]
#[must_use = "dropping the handle deregisters"]
pub struct RegistrarHandle {
    cmd: Option<mpsc::UnboundedSender<Command>>,
    done: crossbeam_channel::Receiver<Result<(), RegistryError>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    cfg: EtcdConfig,
    /// The prefixes the thread watches for deletions of our keys (fixed at start).
    watched: Vec<String>,
}

/// What the thread tells the handle.
#[derive(Debug, Default)]
struct Shared {
    registered: AtomicBool,
    /// The lease the keys were last put with (0: none yet).
    lease: AtomicI64,
    /// The number of the last update asked for (0: the registrations the registrar started with).
    asked: AtomicU64,
    /// The number of the update whose keys are in etcd.
    in_etcd: AtomicU64,
    /// Mapping keys of the current registrations not yet known to list the application.
    mappings_pending: AtomicUsize,
    /// Compare-and-swaps of a mapping that lost to another writer (and were retried).
    mapping_conflicts: AtomicU64,
}

impl RegistrarHandle {
    /// Whether every key is in etcd under a lease whose last keepalive (or grant) succeeded. False before
    /// the first registration, from the moment a loss or an etcd error is noticed until the keys are put
    /// again, and after deregistration. (After an update it may still be the previous registrations':
    /// see [`RegistrarHandle::is_up_to_date`].)
    pub fn is_registered(&self) -> bool {
        self.shared.registered.load(Ordering::Acquire)
    }

    /// Whether the keys in etcd are those of the last [`RegistrarHandle::update`] (and registered).
    pub fn is_up_to_date(&self) -> bool {
        self.is_registered()
            && self.shared.in_etcd.load(Ordering::Acquire) == self.shared.asked.load(Ordering::Acquire)
    }

    /// Whether every mapping of the last registrations lists the application (true when none is asked for).
    pub fn is_mapped(&self) -> bool {
        self.shared.mappings_pending.load(Ordering::Acquire) == 0
    }

    /// How many compare-and-swap writes of a mapping found the key changed by another writer since it was
    /// read (each was read and tried again).
    pub fn mapping_conflicts(&self) -> u64 {
        self.shared.mapping_conflicts.load(Ordering::Acquire)
    }

    /// The lease the keys were last put with, if any (it may since have been lost).
    pub fn lease_id(&self) -> Option<i64> {
        Some(self.shared.lease.load(Ordering::Acquire)).filter(|&l| l != 0)
    }

    /// Registers `regs` instead of what is registered now: keys no longer wanted are deleted, new ones put,
    /// and changed values (the instance, when its revision changes) rewritten, in one transaction on the
    /// current lease (or with the next lease if there is none now); mappings of new interfaces are added.
    /// Returns at once; [`RegistrarHandle::is_up_to_date`] tells when etcd has it. The lease keeps its
    /// TTL; a new TTL applies from the next lease.
    ///
    /// Errors: the registrations are invalid, or need a watch this registrar did not start with (an
    /// instance for a registrar started with URLs only, or the reverse: start a new registrar then)
    /// ([`RegistryError::Config`]); the thread has stopped ([`RegistryError::ThreadGone`]).
    pub fn update(&self, regs: Registrations) -> Result<(), RegistryError> {
        let mut plan = Plan::new(&self.cfg, &regs, 0)?;
        if let Some(range) = plan.ranges.iter().find(|r| !self.watched.contains(r)) {
            return Err(RegistryError::Config(format!(
                "this registrar does not watch {range} (it started without keys there): start a new \
                 registrar for these registrations"
            )));
        }
        let cmd = self.cmd.as_ref().ok_or(RegistryError::ThreadGone)?;
        plan.number = self.shared.asked.fetch_add(1, Ordering::AcqRel) + 1;
        cmd.send(Command::Update(plan))
            .map_err(|_| RegistryError::ThreadGone)
    }

    /// Revokes the lease (etcd then deletes the keys, and watchers see them go) and stops the thread,
    /// all within `timeout`. If etcd cannot be reached in time the keys stay until the lease's TTL runs
    /// out, and the error says why ([`RegistryError::Timeout`] or [`RegistryError::Etcd`]). Mappings stay.
    pub fn deregister(mut self, timeout: Duration) -> Result<(), RegistryError> {
        let deadline = Instant::now() + timeout;
        if let Some(cmd) = self.cmd.take() {
            let _ = cmd.send(Command::Stop(deadline));
        }
        // A little slack over the thread's own deadline, so its answer (not ours) explains a timeout.
        let wait = timeout + Duration::from_millis(200);
        match self.done.recv_timeout(wait) {
            Ok(result) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
                result
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(RegistryError::Timeout {
                op: "deregister",
                after: timeout,
            }),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(RegistryError::ThreadGone),
        }
    }
}

impl Drop for RegistrarHandle {
    fn drop(&mut self) {
        // The thread sees the closed channel and revokes with a short deadline of its own.
        self.cmd.take();
    }
}
