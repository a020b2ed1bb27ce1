//! Where a consumer reads an instance's `MetadataInfo`, from the instance alone (pure).
//!
//! Local storage (the default): the instance's MetadataService, `org.apache.dubbo.metadata.MetadataService`
//! with group = the application and version = `dubbo.metadata-service.url-params`' `version` or `1.0.0`, at
//! the instance host and the port [`ServiceInstance::metadata_service_address`] gives (apache/dubbo
//! `StandardMetadataServiceURLBuilder.build`). Remote storage (`dubbo.metadata.storage-type=remote`): the
//! metadata report, read by the resolver from etcd where dubbo-go writes it.

use crate::dubbo::instance::{MetadataStorage, ServiceInstance};
use crate::dubbo::metadata_info::METADATA_SERVICE_VERSION;
use crate::dubbo::AppDiscoveryError;

/// How an instance's metadata is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    /// Call the instance's MetadataService over this protocol (only `dubbo` is supported by the client).
    Service {
        /// The protocol from `dubbo.metadata-service.url-params` (`dubbo` when absent).
        protocol: String,
        /// The MetadataService port.
        port: u16,
        /// The MetadataService version (`version` of the url-params, else `1.0.0`).
        version: String,
    },
    /// Read the application's metadata report (`dubbo.metadata.storage-type=remote`).
    Remote,
}

/// Where and how to read the `MetadataInfo` an instance advertises.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetadataTarget {
    /// The application (the MetadataService's group).
    pub app: String,
    /// The instance host.
    pub host: String,
    /// How to read it.
    pub kind: TargetKind,
}

impl MetadataTarget {
    /// The target of `instance` (its `storage_type`, `metadata_service_address` and url-params `version`).
    /// Errors when its `dubbo.metadata-service.url-params` cannot be read or name no port.
    pub fn of(instance: &ServiceInstance) -> Result<MetadataTarget, AppDiscoveryError> {
        let kind = match instance.storage_type() {
            MetadataStorage::Remote => TargetKind::Remote,
            MetadataStorage::Local => {
                let version = instance
                    .metadata_service_params()?
                    .and_then(|p| p.params.get("version").cloned())
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| METADATA_SERVICE_VERSION.to_owned());
                let (protocol, port) = instance.metadata_service_address()?;
                TargetKind::Service {
                    protocol,
                    port,
                    version,
                }
            }
        };
        Ok(MetadataTarget {
            app: instance.service_name.clone(),
            host: instance.host.clone(),
            kind,
        })
    }

    /// `host:port` (IPv6 in brackets) of a MetadataService target, for connecting and for messages;
    /// `remote:<app>` for a remote one.
    pub fn address(&self) -> String {
        match &self.kind {
            TargetKind::Service { port, .. } if self.host.contains(':') => format!("[{}]:{port}", self.host),
            TargetKind::Service { port, .. } => format!("{}:{port}", self.host),
            TargetKind::Remote => format!("remote:{}", self.app),
        }
    }
}

/// The etcd keys where dubbo-go's metadata report keeps `app`'s `MetadataInfo` of `revision` (JSON, Go
/// tags), newest layout first (apache/dubbo-go `metadata/report/etcd/report.go` `GetAppMetadata`, root
/// `/dubbo`, the default `metadata-report.group`): v3.3.2+ `/dubbo/<app>/<revision>`; v3.0 to v3.2
/// `/dubbo/metadata/<app>/<revision>`; v3.3.0 and v3.3.1 `/dubbo<app>/<revision>` (a missing separator).
/// Java's etcd metadata report stores no application metadata at all.
pub fn report_keys(app: &str, revision: &str) -> [String; 3] {
    [
        format!("/dubbo/{app}/{revision}"),
        format!("/dubbo/metadata/{app}/{revision}"),
        format!("/dubbo{app}/{revision}"),
    ]
}
