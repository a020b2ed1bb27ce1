//! Which provider URLs a consumer takes: Dubbo's `UrlUtils.isMatch(consumerUrl, providerUrl)` and
//! `isMatchCategory` (J27/J3 `dubbo-common/src/main/java/org/apache/dubbo/common/utils/UrlUtils.java`, fact
//! sheet §2.3), in Dubbo's order:
//!
//! 1. interface: equal, or either side `*`;
//! 2. category: the provider's (default `providers`) against the consumer's list (default `providers`);
//! 3. `enabled`: a provider whose `enabled` is set and not `true` (case-insensitive) is refused unless the
//!    consumer says `enabled=*`;
//! 4. group: the consumer's is `*`, equal to the provider's (both absent counts as equal), or a comma list
//!    holding it;
//! 5. version: the consumer's is `*` or equal to the provider's (both absent counts as equal);
//! 6. classifier: the consumer's (default `*`) is `*` or equal to the provider's (default `*`).
//!
//! An empty parameter counts as absent, as Dubbo's `StringUtils.isEmpty` checks do.

use super::url::{split_comma_list, DubboUrl, ANY_VALUE, CLASSIFIER_KEY, ENABLED_KEY};
use super::Category;

/// The prefix that excludes a category from a consumer's list (`-routers`).
const REMOVE_VALUE_PREFIX: char = '-';

/// Whether a consumer subscribed with `consumer` takes the provider URL `provider` (Dubbo's
/// `UrlUtils.isMatch`; see the module documentation). Build `consumer` from a request with
/// [`super::ServiceKey::consumer_url`].
pub fn is_match(consumer: &DubboUrl, provider: &DubboUrl) -> bool {
    let (ci, pi) = (consumer.service_interface(), provider.service_interface());
    if !(ci == ANY_VALUE || pi == ANY_VALUE || ci == pi) {
        return false;
    }
    if !is_match_category(provider.category(), consumer.category()) {
        return false;
    }
    if !provider_enabled(provider) && consumer.param(ENABLED_KEY) != Some(ANY_VALUE) {
        return false;
    }
    let group_matches = match (consumer.group(), provider.group()) {
        (Some(ANY_VALUE), _) => true,
        (cg, pg) if cg == pg => true,
        (Some(list), Some(pg)) => split_comma_list(list).any(|g| g == pg),
        _ => false,
    };
    let version_matches = consumer.version() == Some(ANY_VALUE) || consumer.version() == provider.version();
    let classifier_matches =
        classifier(consumer) == ANY_VALUE || classifier(consumer) == classifier(provider);
    group_matches && version_matches && classifier_matches
}

/// Whether a consumer asking for `request` takes providers registered under `provider` (rules 1, 4 and 5
/// of [`is_match`] on service keys: the interface equal or `*`; the group `*`, equal, or a comma list holding
/// it; the version `*` or equal; absent matches only absent).
pub fn key_matches(request: &super::ServiceKey, provider: &super::ServiceKey) -> bool {
    let interface = request.interface == ANY_VALUE || request.interface == provider.interface;
    let group = match (request.group.as_deref(), provider.group.as_deref()) {
        (Some(ANY_VALUE), _) => true,
        (rg, pg) if rg == pg => true,
        (Some(list), Some(pg)) => split_comma_list(list).any(|g| g == pg),
        _ => false,
    };
    let version = request.version.as_deref() == Some(ANY_VALUE) || request.version == provider.version;
    interface && group && version
}

/// Dubbo's `isMatchCategory(category, categories)`: an empty list takes only `providers`; a list holding
/// `*` takes everything; a list holding a `-x` takes everything but the `-x`s; otherwise the list must hold
/// the category. Like Dubbo, "holding" is a substring test on the raw list.
pub fn is_match_category(category: &str, categories: &str) -> bool {
    if categories.is_empty() {
        category == Category::Providers.as_str()
    } else if categories.contains(ANY_VALUE) {
        true
    } else if categories.contains(REMOVE_VALUE_PREFIX) {
        !categories.contains(&format!("{REMOVE_VALUE_PREFIX}{category}"))
    } else {
        categories.contains(category)
    }
}

/// Dubbo's `getParameter("classifier", "*")`.
fn classifier(url: &DubboUrl) -> &str {
    url.param(CLASSIFIER_KEY).unwrap_or(ANY_VALUE)
}

/// Dubbo's `getParameter("enabled", true)`: absent or empty is `true`, otherwise Java's
/// `Boolean.parseBoolean` (only `true`, any case, is true).
fn provider_enabled(provider: &DubboUrl) -> bool {
    provider
        .param(ENABLED_KEY)
        .is_none_or(|v| v.eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dubbo::ServiceKey;

    fn provider(params: &str) -> DubboUrl {
        let sep = if params.is_empty() { "" } else { "&" };
        DubboUrl::parse(&format!(
            "dubbo://10.0.0.1:20880/com.foo.Bar?interface=com.foo.Bar{sep}{params}"
        ))
        .unwrap()
    }

    fn wants(key: &str) -> DubboUrl {
        ServiceKey::parse(key).consumer_url()
    }

    #[test]
    fn interface_must_match_unless_either_is_star() {
        assert!(is_match(&wants("com.foo.Bar"), &provider("")));
        assert!(!is_match(&wants("com.foo.Baz"), &provider("")));
        assert!(is_match(&wants("*"), &provider("")));
        let star_provider = DubboUrl::parse("dubbo://h:1/*").unwrap();
        assert!(is_match(&wants("com.foo.Baz"), &star_provider));
        // A simplified URL has no `interface` parameter: its path is the interface.
        let simplified = DubboUrl::parse("dubbo://h:1/com.foo.Bar?application=a").unwrap();
        assert!(is_match(&wants("com.foo.Bar"), &simplified));
    }

    #[test]
    fn group_star_exact_and_comma_list() {
        let blue = provider("group=blue");
        assert!(is_match(&wants("blue/com.foo.Bar"), &blue));
        assert!(is_match(&wants("*/com.foo.Bar"), &blue));
        assert!(is_match(&wants("red, blue/com.foo.Bar"), &blue));
        assert!(is_match(&wants("red,blue/com.foo.Bar"), &blue));
        assert!(!is_match(&wants("red/com.foo.Bar"), &blue));
        assert!(
            !is_match(&wants("com.foo.Bar"), &blue),
            "no group only takes no group"
        );
        assert!(!is_match(&wants("blue/com.foo.Bar"), &provider("")));
        assert!(is_match(&wants("com.foo.Bar"), &provider("group=")));
        // The provider's `*` is not a wildcard for the group (only the consumer's is).
        assert!(!is_match(&wants("blue/com.foo.Bar"), &provider("group=*")));
    }

    #[test]
    fn version_star_or_exact() {
        let v1 = provider("version=1.0.0");
        assert!(is_match(&wants("com.foo.Bar:1.0.0"), &v1));
        assert!(is_match(&wants("com.foo.Bar:*"), &v1));
        assert!(!is_match(&wants("com.foo.Bar:1.0"), &v1));
        assert!(!is_match(&wants("com.foo.Bar"), &v1));
        assert!(!is_match(&wants("com.foo.Bar:1.0.0"), &provider("")));
        assert!(
            !is_match(&wants("com.foo.Bar:1.0.0,2.0.0"), &v1),
            "no version lists"
        );
        assert!(is_match(
            &wants("g/com.foo.Bar:1.0.0"),
            &provider("group=g&version=1.0.0")
        ));
    }

    #[test]
    fn disabled_providers_only_for_enabled_star() {
        for disabled in ["enabled=false", "enabled=no", "enabled=0"] {
            assert!(
                !is_match(&wants("com.foo.Bar"), &provider(disabled)),
                "{disabled}"
            );
            let admin = wants("com.foo.Bar").with_param("enabled", "*");
            assert!(is_match(&admin, &provider(disabled)), "{disabled}");
        }
        assert!(is_match(&wants("com.foo.Bar"), &provider("enabled=TRUE")));
        assert!(is_match(&wants("com.foo.Bar"), &provider("enabled=")));
    }

    #[test]
    fn categories_are_matched_like_dubbo() {
        assert!(!is_match(&wants("com.foo.Bar"), &provider("category=consumers")));
        assert!(!is_match(&wants("com.foo.Bar"), &provider("category=routers")));
        let subscribe = wants("com.foo.Bar").with_param("category", "providers,configurators,routers");
        assert!(is_match(&subscribe, &provider("category=routers")));
        assert!(!is_match(&subscribe, &provider("category=consumers")));
        assert!(is_match_category("providers", ""));
        assert!(!is_match_category("routers", ""));
        assert!(is_match_category("anything", "*"));
        assert!(is_match_category("providers", "-routers"));
        assert!(!is_match_category("routers", "-routers"));
        assert!(is_match_category("consumers", "providers,consumers"));
    }

    #[test]
    fn classifier_must_match_when_the_consumer_sets_one() {
        let c = wants("com.foo.Bar").with_param("classifier", "jdk8");
        assert!(is_match(&c, &provider("classifier=jdk8")));
        assert!(!is_match(&c, &provider("classifier=jdk11")));
        assert!(!is_match(&c, &provider("")));
        assert!(is_match(&wants("com.foo.Bar"), &provider("classifier=jdk11")));
    }
}
