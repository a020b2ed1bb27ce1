//! Dubbo's routing rules as they are kept in Dubbo's config center on etcd: condition routers and tag
//! routers in the YAML Dubbo Admin writes, read into this crate's routing model ([`crate::RuleSet`]).
//!
//! - [`config_key`]: where the rules are (`/dubbo/config/dubbo/<key>`) and which rule a key holds
//!   ([`RuleKey`]); values are at most [`MAX_RULE_BYTES`] of UTF-8;
//! - [`ConditionRouterRule`] (`<app>.condition-router`, `<interface>:<version>:<group>.condition-router`)
//!   and [`TagRouterRule`] (`<app>.tag-router`): the YAML, checked field by field against Dubbo's model;
//! - [`RuleStore`]: the last good rule per key (a bad value is rejected with its key, the previous rule stays
//!   in force), and the [`RuleIndex`] a watcher publishes with its snapshots;
//! - [`RuleIndex::rule_set_for`]: Dubbo's router chain for one service and consumer application (tag router,
//!   then service, provider-application and consumer-application condition routers) as one `RuleSet`.
//!
//! Pure: no IO; the watcher does the reading. Every Dubbo fact is sourced in the module that relies on it.
//!
//! ```
//! use mesh_balance::dubbo_rules::{ChainQuery, RuleStore, StoreChange};
//! let mut store = RuleStore::default();
//! let change = store.put(
//!     b"/dubbo/config/dubbo/com.foo.Svc::.condition-router",
//!     b"scope: service\nkey: com.foo.Svc\nforce: true\nconditions:\n  - method = find* => host != 10.1.2.3\n",
//! );
//! assert!(matches!(change, StoreChange::Changed { .. }));
//! let query = ChainQuery { consumer_app: Some("web"), ..ChainQuery::for_service_key("com.foo.Svc") };
//! let rules = store.index().rule_set_for(&query).expect("a rule applies")?;
//! assert_eq!(rules.conditions.len(), 1);
//! # Ok::<(), mesh_balance::RuleError>(())
//! ```

mod chain;
mod condition_router;
pub mod config_key;
mod error;
mod header;
mod store;
mod tag_router;
mod yaml;

pub use chain::{
    provider_application, ChainQuery, RuleIndex, APP_ROUTER_ORDER, PROVIDER_APP_ROUTER_ORDER,
    SERVICE_ROUTER_ORDER,
};
pub use condition_router::ConditionRouterRule;
pub use config_key::{rule_text, ConfigLayout, RuleKey, ServiceRuleKey, MAX_RULE_BYTES};
pub use error::DubboRuleError;
pub use header::RuleHeader;
pub use store::{RuleRejected, RuleStore, StoreChange};
pub use tag_router::TagRouterRule;
