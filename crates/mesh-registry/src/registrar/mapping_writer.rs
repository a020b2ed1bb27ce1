//! Writes the interface-to-application mapping as dubbo-go's etcd metadata report does (fact sheet §5;
//! apache/dubbo-go `metadata/report/etcd/report.go` `RegisterServiceAppMapping`, `metadata/mapping/
//! metadata/service_name_mapping.go`): read `<root>/mapping/<interface>`, add the application
//! ([`add_application`], whole names), write it back only if nobody changed the key meanwhile (created only
//! if still absent: `create_revision == 0`; else only if `mod_revision` is still the one read), and on a
//! conflict read again, at most [`MAPPING_CAS_RETRIES`] times with a random wait below 100 ms between
//! (Java `MetadataServiceNameMapping.map`). The key is persistent (no lease): Dubbo keeps mappings after
//! the provider leaves. Unlike Dubbo, which gives up after its retries, the agent tries again later (with
//! the registrar's backoff) until its name is in, so a burst of providers starting together all end up
//! listed.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};

use crate::dubbo::mapping::{add_application, MappingUpdate, MAPPING_CAS_RETRIES};
use crate::etcd::{bounded, connect, Backoff, EtcdConfig};
use crate::RegistryError;

use super::plan::MappingPlan;
use super::Shared;

/// The longest random wait between two compare-and-swap attempts (Java's `DEFAULT_CAS_RETRY_WAIT_TIME`).
const CAS_WAIT_MAX: Duration = Duration::from_millis(100);

/// What one key's compare-and-swap loop did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mapped {
    /// The application was added; the new value.
    Added(String),
    /// The application was listed already.
    AlreadyThere,
}

/// Why a key's mapping was not written.
#[derive(Debug)]
enum MappingFailure {
    /// etcd failed: try again later.
    Etcd(RegistryError),
    /// Every attempt lost to another writer: try again later.
    Conflicts,
    /// The value there cannot take the application (not UTF-8, too long): not retried.
    Refused(String),
}

impl From<RegistryError> for MappingFailure {
    fn from(e: RegistryError) -> Self {
        MappingFailure::Etcd(e)
    }
}

/// Adds `mapping.application` to every key of `mapping`, retrying failures with backoff until each key is
/// written or refused; `shared.mappings_pending` counts the keys not (yet) listing the application.
pub(super) async fn write_all(cfg: EtcdConfig, mapping: MappingPlan, shared: Arc<Shared>) {
    let mut backoff = Backoff::new(cfg.retry_backoff_max);
    let mut left = mapping.keys.clone();
    let mut last_error = String::new();
    let app = mapping.application.as_str();
    while !left.is_empty() {
        let error = match connect(&cfg).await {
            Err(e) => e.to_string(),
            Ok(mut client) => loop {
                let Some(key) = left.first().cloned() else {
                    break String::new();
                };
                match map_application(&cfg, &mut client, &key, app, &shared).await {
                    Ok(done) => {
                        match done {
                            Mapped::Added(value) => {
                                tracing::info!("mapped {app} at {key} (now {value:?})")
                            }
                            Mapped::AlreadyThere => tracing::debug!("{key} lists {app} already"),
                        }
                        left.remove(0);
                        shared.mappings_pending.fetch_sub(1, Ordering::AcqRel);
                    }
                    Err(MappingFailure::Refused(reason)) => {
                        tracing::warn!("cannot add {app} to the mapping {key}: {reason}; left as it is");
                        left.remove(0);
                    }
                    Err(MappingFailure::Conflicts) => {
                        break format!(
                            "{key}: {MAPPING_CAS_RETRIES} compare-and-swap attempts lost to other writers"
                        )
                    }
                    Err(MappingFailure::Etcd(e)) => break format!("{key}: {e}"),
                }
            },
        };
        if left.is_empty() {
            return;
        }
        let delay = backoff.next_delay();
        if error != last_error {
            tracing::warn!("mapping {app} not written yet ({error}); trying again in {delay:?}");
            last_error = error;
        }
        tokio::time::sleep(delay).await;
    }
}

/// One key's compare-and-swap loop: at most [`MAPPING_CAS_RETRIES`] read-modify-write attempts.
async fn map_application(
    cfg: &EtcdConfig,
    client: &mut Client,
    key: &str,
    app: &str,
    shared: &Shared,
) -> Result<Mapped, MappingFailure> {
    for _ in 0..MAPPING_CAS_RETRIES {
        let got = bounded("get", cfg.request_timeout, client.get(key, None)).await?;
        let (current, mod_revision) = match got.kvs().first() {
            None => (None, 0),
            Some(kv) => {
                let value = kv
                    .value_str()
                    .map_err(|_| MappingFailure::Refused("the value is not UTF-8".into()))?;
                (Some(value.to_owned()), kv.mod_revision())
            }
        };
        let value = match add_application(current.as_deref(), app)
            .map_err(|e| MappingFailure::Refused(e.to_string()))?
        {
            MappingUpdate::AlreadyThere => return Ok(Mapped::AlreadyThere),
            MappingUpdate::Create(v) | MappingUpdate::Replace(v) => v,
        };
        let unchanged = if mod_revision == 0 {
            // Absent when read: create it only if still absent.
            Compare::create_revision(key, CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key, CompareOp::Equal, mod_revision)
        };
        let txn = Txn::new()
            .when([unchanged])
            .and_then([TxnOp::put(key, value.as_str(), None)]);
        if bounded("txn", cfg.request_timeout, client.txn(txn))
            .await?
            .succeeded()
        {
            return Ok(Mapped::Added(value));
        }
        shared.mapping_conflicts.fetch_add(1, Ordering::AcqRel);
        tokio::time::sleep(cas_wait()).await;
    }
    Err(MappingFailure::Conflicts)
}

/// A random wait below [`CAS_WAIT_MAX`] (random bits from std's per-instance hash keys), so that writers
/// that collided do not collide again in step.
fn cas_wait() -> Duration {
    let max = u64::try_from(CAS_WAIT_MAX.as_millis()).unwrap_or(100);
    Duration::from_millis(RandomState::new().hash_one(0u8) % max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_waits_are_below_the_bound_and_vary() {
        let waits: Vec<Duration> = (0..64).map(|_| cas_wait()).collect();
        assert!(waits.iter().all(|w| *w < CAS_WAIT_MAX));
        // 64 draws from 100 values are all equal with probability 100^-63.
        assert!(waits.iter().any(|w| *w != waits[0]));
    }
}
