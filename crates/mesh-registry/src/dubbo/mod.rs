//! Dubbo's own interface-level registry layout in etcd, pure (no IO): what Java Dubbo 2.7 / 3.x and dubbo-go
//! write and read, so that the agents can join a Dubbo estate (issue 11). Sources: the fact sheet
//! `shared/dubbo-discovery.md`, which cites apache/dubbo, apache/dubbo-spi-extensions and apache/dubbo-go.
//!
//! * [`DubboUrl`]: `protocol://user:password@host:port/path?params`, read like Dubbo's `URL.valueOf` and
//!   written like its `toFullString()` (parameters sorted).
//! * [`KeyEncoding`] / [`decode_component`]: Java `URLEncoder` (Dubbo's `URL.encode`) or Go
//!   `url.QueryEscape` (dubbo-go); one decoder for both.
//! * [`RegistryRoot`]: the keys `/<root>/<encoded interface>/<category>/<encoded URL>` ([`Category`]), built
//!   ([`RegistryRoot::url_key`]) and read ([`RegistryRoot::parse_key`] -> [`RegistryKey`]: a URL, a parent
//!   key Java writes, or other Dubbo data under the root).
//! * [`is_match`]: Dubbo's `UrlUtils.isMatch` (interface, category, `enabled`, group, version, classifier);
//!   [`ServiceKey`] `group/interface:version` and the consumer URL a request stands for.
//! * [`simplify_provider_url`] / [`simplify_consumer_url`]: `simplified=true` + `extra-keys`, with the
//!   default key lists per [`DubboVersion`].
//! * [`discover`]: a provider URL as the consumer uses it (an endpoint of a service key, or why not);
//!   [`ProviderRegistration`] / [`ConsumerRegistration`]: the URLs a provider or consumer agent registers.
//!
//! Dubbo 3 application-level discovery (issue 13; `docs/dubbo3-discovery.md` lists where Java and Go
//! disagree and which side is followed):
//! * [`instance`]: `/services/<app>/<host>:<port>` and its JSON (Java camelCase, dubbo-go PascalCase), the
//!   metadata a consumer reads and the skip rules; [`app_registration`]: what a provider agent publishes.
//! * [`metadata_info`]: `MetadataInfo`/`ServiceInfo` as Hessian values (hessian-lite's field order) and as
//!   dubbo-go JSON; [`revision`]: Java 3.3's revision; [`instance_providers`]: instance + `MetadataInfo` ->
//!   the same [`Discovered`] endpoints as the interface-level path.
//! * [`mapping`]: `/dubbo/mapping/<interface>` and the add-my-application CAS step; [`migration`]:
//!   `MigrationStep` and the APPLICATION_FIRST threshold rule; [`migration_rule`]: the config center's
//!   `<application>.migration` rule (YAML) and the step and threshold it gives a service key.
//!
//! Nothing here panics on any input; keys and URLs longer than [`MAX_KEY_LEN`] / [`MAX_URL_LEN`] or with
//! more than [`MAX_PARAMS`] parameters are refused with [`DubboError::TooLong`].

mod app_error;
mod app_providers;
pub mod app_registration;
mod consumer;
mod encode;
mod error;
pub mod instance;
mod key;
pub mod mapping;
mod matching;
pub mod metadata_info;
pub mod migration;
pub mod migration_rule;
mod provider;
pub mod revision;
mod service_key;
mod simplify;
mod url;

#[cfg(feature = "etcd")]
pub(crate) use app_error::check_application;
pub(crate) use app_error::excerpt;
pub use app_error::{AppDiscoveryError, MetadataCallFailure};
pub use app_providers::{instance_providers, provider_port, provider_url, AppProvider};
pub use consumer::ConsumerRegistration;
pub use encode::{decode_component, KeyEncoding};
pub use error::DubboError;
pub use key::{Category, RegisteredUrl, RegistryKey, RegistryRoot, DEFAULT_ROOT};
pub use matching::{is_match, is_match_category, key_matches};
pub use provider::{
    discover, discover_owned, Discovered, ProviderRegistration, DUBBO_PROTOCOL, DUBBO_PROTOCOL_VERSION,
    RELEASE,
};
pub use service_key::ServiceKey;
pub use simplify::{simplify_consumer_url, simplify_provider_url, DubboVersion, CONSUMER_KEYS};
pub use url::{
    DubboUrl, ANY_VALUE, CATEGORY_KEY, CLASSIFIER_KEY, ENABLED_KEY, GROUP_KEY, INTERFACE_KEY, METHODS_KEY,
    VERSION_KEY,
};

/// The longest etcd key read or written (bytes). A Java provider URL with hundreds of methods is a few KiB;
/// etcd's own request limit is 1.5 MiB.
pub const MAX_KEY_LEN: usize = 64 * 1024;

/// The longest decoded URL read or written (bytes).
pub const MAX_URL_LEN: usize = 64 * 1024;

/// The most parameters a URL may have.
pub const MAX_PARAMS: usize = 1024;
