//! The consumer URL a consumer agent registers for a service it calls, as a Java Dubbo consumer does
//! (`consumer://<ip>/<interface>?...&category=consumers&check=false`, fact sheet §2.5; J27
//! `RegistryProtocol` / J3 `DynamicDirectory.setRegisteredConsumerUrl`), so Dubbo Admin and other tools see
//! who calls what. Simplified with [`super::simplify_consumer_url`] when asked.

use std::net::IpAddr;

use super::key::Category;
use super::provider::{DUBBO_PROTOCOL_VERSION, RELEASE};
use super::url::{DubboUrl, CATEGORY_KEY, GROUP_KEY, INTERFACE_KEY, METHODS_KEY, VERSION_KEY};
use super::ServiceKey;

/// What a consumer agent announces for one service key it calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRegistration {
    /// The service key it calls.
    pub service: ServiceKey,
    /// The consumer's IP (Dubbo's consumer URLs have no port).
    pub host: IpAddr,
    /// Dubbo's `application`.
    pub application: String,
    /// Dubbo's `timestamp` (Unix milliseconds).
    pub timestamp_ms: u64,
}

impl ConsumerRegistration {
    /// The consumer URL, with the parameters a Java consumer registers (no `pid`).
    pub fn url(&self) -> DubboUrl {
        let host = match self.host {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let interface = self.service.interface.clone();
        let mut url = DubboUrl::new("consumer", host, 0, interface.clone())
            .with_param("application", self.application.clone())
            .with_param(CATEGORY_KEY, Category::Consumers.as_str())
            .with_param("check", "false")
            .with_param("dubbo", DUBBO_PROTOCOL_VERSION)
            .with_param(INTERFACE_KEY, interface)
            .with_param(METHODS_KEY, "*")
            .with_param("release", RELEASE)
            .with_param("side", "consumer")
            .with_param("timestamp", self.timestamp_ms.to_string());
        if let Some(group) = &self.service.group {
            url = url.with_param(GROUP_KEY, group.clone());
        }
        if let Some(version) = &self.service.version {
            url = url.with_param(VERSION_KEY, version.clone());
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::{
        is_match_category, simplify_consumer_url, KeyEncoding, RegistryKey, RegistryRoot, CONSUMER_KEYS,
    };

    fn registration() -> ConsumerRegistration {
        ConsumerRegistration {
            service: ServiceKey::parse("g/com.foo.Svc:1.0"),
            host: "10.0.0.7".parse().unwrap(),
            application: "shop".into(),
            timestamp_ms: 1_764_900_000_000,
        }
    }

    #[test]
    fn a_consumer_url_lands_under_consumers_and_is_not_a_provider() {
        let url = registration().url();
        assert_eq!(
            url.to_full_string(),
            format!(
                "consumer://10.0.0.7/com.foo.Svc?application=shop&category=consumers&check=false\
                 &dubbo=2.0.2&group=g&interface=com.foo.Svc&methods=*&release={RELEASE}&side=consumer\
                 &timestamp=1764900000000&version=1.0"
            )
        );
        let root = RegistryRoot::default();
        let key = root.url_key(&url, KeyEncoding::JavaUrlEncoder).unwrap();
        assert!(key.starts_with("/dubbo/com.foo.Svc/consumers/consumer%3A%2F%2F10.0.0.7%2Fcom.foo.Svc%3F"));
        match root.parse_key(key.as_bytes()) {
            Ok(RegistryKey::Url(u)) => {
                assert_eq!(u.category, Category::Consumers);
                assert!(!is_match_category(u.url.category(), ""));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn simplified_it_keeps_dubbos_consumer_keys() {
        let simple = simplify_consumer_url(&registration().url());
        let kept: Vec<&str> = simple.params.keys().map(String::as_str).collect();
        for k in &kept {
            assert!(
                CONSUMER_KEYS.contains(k) || ["category", "check"].contains(k),
                "{k}"
            );
        }
        assert_eq!(simple.param("category"), Some("consumers"));
        assert_eq!(simple.service_key(), ServiceKey::parse("g/com.foo.Svc:1.0"));
        assert!(simple.to_full_string().len() < registration().url().to_full_string().len());
    }
}
