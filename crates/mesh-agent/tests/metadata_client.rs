//! The consumer side's MetadataService client and resolver (`mesh_registry::app_metadata`) against the
//! real provider agent binary, which answers `org.apache.dubbo.metadata.MetadataService` itself: real
//! etcd, the provider simulator behind the agent, loopback only, bounded waits, processes stopped by
//! their guards.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use mesh_registry::app_metadata::{
    ClientSettings, MetadataResolver, MetadataServiceClient, MetadataTarget, Resolution, ResolverConfig, Want,
};
use mesh_registry::dubbo::app_registration::AppRegistration;
use mesh_registry::dubbo::instance::{ServiceInstance, REVISION_KEY};
use mesh_registry::dubbo::metadata_info::MetadataInfo;
use mesh_registry::dubbo::{instance_providers, AppDiscoveryError, Discovered, MetadataCallFailure};
use mesh_testkit::etcd::EtcdServer;
use mesh_testkit::process::free_port;

mod common;
use common::*;

const APP: &str = "meta-app";

/// An instance of the agent as a Java 3 provider would register it, with no url-params: the consumer then
/// calls the MetadataService on the instance port with `dubbo` and version 1.0.0 (Java's
/// `generateUrlWithoutMetadata`).
fn instance(port: u16, revision: &str) -> ServiceInstance {
    let mut i = ServiceInstance::new(APP, "127.0.0.1", port);
    i.metadata.insert(REVISION_KEY.into(), revision.into());
    i
}

#[test]
fn the_consumer_resolves_the_provider_agents_metadata_info() {
    let etcd = EtcdServer::start().unwrap();
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let port = free_port().unwrap();
    let _agent = provider_agent(
        port,
        sim_port,
        &[
            "--etcd",
            etcd.client_url(),
            "--application",
            APP,
            "--service",
            IFACE,
            "--service",
            "g1/org.example.Other:2.0",
        ],
    );
    wait_until("both provider URLs in etcd", Duration::from_secs(15), || {
        registered_provider_urls(&etcd).len() == 2
    });
    let expected: MetadataInfo = AppRegistration {
        application: APP.into(),
        host: "127.0.0.1".into(),
        port,
        provider_urls: registered_provider_urls(&etcd),
    }
    .metadata_info();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut resolver = MetadataResolver::new(ResolverConfig::default());
        let i = instance(port, &expected.revision);
        assert_eq!(resolver.want(&i), Want::Pending);
        let resolution = tokio::time::timeout(Duration::from_secs(20), resolver.next())
            .await
            .expect("an outcome within 20 s");
        let Resolution::Resolved { key, info, instances } = resolution else {
            panic!("{resolution:?}");
        };
        assert_eq!(key.revision, expected.revision);
        assert_eq!(
            *info, expected,
            "the agent's MetadataInfo, as the consumer reads it"
        );
        assert_eq!(instances, vec![i.key()]);
        assert_eq!(resolver.counters().calls, 1);

        // What the consumer builds from it: the agent's port for both services.
        let endpoints: Vec<String> = instance_providers(&i, &info)
            .into_iter()
            .filter_map(|p| match p.discovered {
                Discovered::Provider { service, endpoint } => Some(format!("{service} {}", endpoint.addr)),
                _ => None,
            })
            .collect();
        assert_eq!(
            endpoints,
            [
                format!("{IFACE} 127.0.0.1:{port}"),
                format!("g1/org.example.Other:2.0 127.0.0.1:{port}")
            ]
        );

        // An unknown revision: null (Java's MetadataServiceDelegation); another group: not found.
        let client = MetadataServiceClient::new(ClientSettings::default());
        let target = MetadataTarget::of(&i).unwrap();
        match client.get_metadata_info(&target, "0123456789abcdef").await {
            Err(AppDiscoveryError::MetadataCall { failure, .. }) => {
                assert_eq!(failure, MetadataCallFailure::Null)
            }
            other => panic!("{other:?}"),
        }
        let mut other = target.clone();
        other.app = "other-app".into();
        match client.get_metadata_info(&other, &expected.revision).await {
            Err(AppDiscoveryError::MetadataCall {
                failure: MetadataCallFailure::Status { status, message },
                ..
            }) => {
                assert_eq!(status, 70);
                assert!(message.contains("Not found exported service"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    });
}
