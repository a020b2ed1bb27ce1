//! Dubbo's service key `group/interface:version`: what a consumer asks for.
//!
//! `BaseServiceMetadata.buildServiceKey(path, group, version)` (J27/J3
//! `dubbo-common/.../BaseServiceMetadata.java`, fact sheet §2.2) writes `group/` only when the group is not
//! empty and `:version` only when the version is not empty; `UrlUtils.parseServiceKey` reads it back (group
//! before the first `/` when that is not the first character, version after the first `:` of the rest when
//! that is not its first character).

use std::fmt;

use super::url::{DubboUrl, CATEGORY_KEY, GROUP_KEY, INTERFACE_KEY, VERSION_KEY};
use super::Category;

/// `group/interface:version`; group and version are never `Some("")`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The group, if any (`*` or a comma list when used as a consumer's pattern).
    pub group: Option<String>,
    /// The interface (`*` for any, as a consumer's pattern).
    pub interface: String,
    /// The version, if any (`*` for any, as a consumer's pattern).
    pub version: Option<String>,
}

impl ServiceKey {
    /// A key; empty group or version count as none.
    pub fn new(group: Option<String>, interface: impl Into<String>, version: Option<String>) -> Self {
        ServiceKey {
            group: group.filter(|g| !g.is_empty()),
            interface: interface.into(),
            version: version.filter(|v| !v.is_empty()),
        }
    }

    /// Reads `group/interface:version` as Dubbo's `UrlUtils.parseServiceKey` does.
    pub fn parse(key: &str) -> ServiceKey {
        let (group, rest) = match key.find('/') {
            Some(i) if i > 0 => (Some(&key[..i]), &key[i + 1..]),
            _ => (None, key),
        };
        let (interface, version) = match rest.find(':') {
            Some(j) if j > 0 => (&rest[..j], Some(&rest[j + 1..])),
            _ => (rest, None),
        };
        ServiceKey::new(group.map(str::to_owned), interface, version.map(str::to_owned))
    }

    /// The consumer URL Dubbo's `UrlUtils.isMatch` compares providers with for this key
    /// (`consumer:///interface?category=providers&group=..&interface=..&version=..`): see
    /// [`super::is_match`].
    pub fn consumer_url(&self) -> DubboUrl {
        let mut url = DubboUrl::new("consumer", "", 0, self.interface.clone())
            .with_param(INTERFACE_KEY, self.interface.clone())
            .with_param(CATEGORY_KEY, Category::Providers.as_str());
        if let Some(group) = &self.group {
            url = url.with_param(GROUP_KEY, group.clone());
        }
        if let Some(version) = &self.version {
            url = url.with_param(VERSION_KEY, version.clone());
        }
        url
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(group) = &self.group {
            write!(f, "{group}/")?;
        }
        f.write_str(&self.interface)?;
        if let Some(version) = &self.version {
            write!(f, ":{version}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_like_build_service_key() {
        let key = |g: Option<&str>, v: Option<&str>| {
            ServiceKey::new(g.map(Into::into), "com.foo.Bar", v.map(Into::into)).to_string()
        };
        assert_eq!(key(Some("g"), Some("1.0.0")), "g/com.foo.Bar:1.0.0");
        assert_eq!(key(None, Some("1.0.0")), "com.foo.Bar:1.0.0");
        assert_eq!(key(Some("g"), None), "g/com.foo.Bar");
        assert_eq!(key(None, None), "com.foo.Bar");
        assert_eq!(key(Some(""), Some("")), "com.foo.Bar");
    }

    #[test]
    fn reads_like_parse_service_key() {
        for text in [
            "g/com.foo.Bar:1.0.0",
            "com.foo.Bar:1.0.0",
            "g/com.foo.Bar",
            "com.foo.Bar",
        ] {
            assert_eq!(ServiceKey::parse(text).to_string(), text);
        }
        let k = ServiceKey::parse("g/a/b:1:2");
        assert_eq!(k.group.as_deref(), Some("g"));
        assert_eq!(k.interface, "a/b");
        assert_eq!(k.version.as_deref(), Some("1:2"));
        // A leading `/` or `:` is not a separator (Dubbo checks `> 0`).
        assert_eq!(ServiceKey::parse("/x").interface, "/x");
        assert_eq!(ServiceKey::parse(":x").interface, ":x");
        assert_eq!(ServiceKey::parse("g/:x").interface, ":x");
        assert_eq!(ServiceKey::parse("").interface, "");
    }

    #[test]
    fn the_consumer_url_carries_the_key() {
        let key = ServiceKey::parse("g/com.foo.Bar:1.0");
        let url = key.consumer_url();
        assert_eq!(
            url.to_full_string(),
            "consumer:///com.foo.Bar?category=providers&group=g&interface=com.foo.Bar&version=1.0"
        );
        assert_eq!(url.service_key(), key);
    }
}
