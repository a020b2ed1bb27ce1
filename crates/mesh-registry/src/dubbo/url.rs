//! [`DubboUrl`]: Dubbo's `URL`, read and written as Dubbo reads and writes it.
//!
//! Reading follows Dubbo's `URLStrParser.parseDecodedStr` (J3 `dubbo-common/.../URLStrParser.java`, what
//! `URL.valueOf` calls on the decoded key, fact sheet §1.2), writing follows `URL.toFullString()` (J27/J3
//! `dubbo-common/.../URL.java` `buildString` / `buildParameters`, §1.4):
//!
//! `protocol://[user[:password]@]host[:port][/path][?k=v&k=v...]`
//!
//! * the parameters start at the first `?` and are separated by `&` or `;`; the first `=` of a parameter
//!   ends its name (leading `=` are skipped); a parameter `k` without `=` reads as `k=k` (Dubbo 2.7's rule);
//!   the last of repeated names wins; `default.k=v` also gives `k=v` unless `k` is set (Dubbo's compatibility
//!   rule for old registrations);
//! * the path is everything after the first `/` after `://`; the user info ends at the last `@` of what is
//!   before the path, the port follows the last `:` of the host part (not for `[v6]` literals, nor when a
//!   `%` zone id follows it);
//! * written parameters are sorted by name, values trimmed as Java's `String.trim` does, empty names left
//!   out; the port only when it is not 0 and there is a host; user info only when there is a user.
//!
//! Where Dubbo is lenient with garbage we refuse it: no protocol (Dubbo also accepts `file:/x`, never used in
//! a registry), a port that is not `0..=65535` or is empty, a password without a user. Dubbo 3's parser reads
//! `k=` as `k=k` (`URLStrParser.addParam`); we read it as an empty value, like Dubbo 2.7 and dubbo-go.
//!
//! Parameter order: Java sorts names by UTF-16 code units, this by UTF-8 bytes; the two differ only for
//! names that mix characters above U+FFFF with ones in U+E000..U+FFFF.

use std::collections::BTreeMap;
use std::fmt;

use super::error::excerpt;
use super::service_key::ServiceKey;
use super::{DubboError, MAX_PARAMS, MAX_URL_LEN};

/// The parameter Dubbo reads as the interface when present (else the path is the interface).
pub const INTERFACE_KEY: &str = "interface";
/// The parameter naming the service group.
pub const GROUP_KEY: &str = "group";
/// The parameter naming the service version.
pub const VERSION_KEY: &str = "version";
/// The parameter naming a URL's registry category (default `providers`).
pub const CATEGORY_KEY: &str = "category";
/// The parameter that disables a provider when it is not `true` (case-insensitive).
pub const ENABLED_KEY: &str = "enabled";
/// The parameter matched as Dubbo's classifier (default `*`).
pub const CLASSIFIER_KEY: &str = "classifier";
/// The comma list of a provider's method names.
pub const METHODS_KEY: &str = "methods";
/// The value that matches anything (interface, group, version, category, classifier, `enabled`).
pub const ANY_VALUE: &str = "*";

/// The prefix of old parameter names Dubbo also reads without it (`default.timeout` -> `timeout`).
const DEFAULT_KEY_PREFIX: &str = "default.";

/// A Dubbo URL: `protocol://user:password@host:port/path?params`.
///
/// Build one with [`DubboUrl::new`] and [`DubboUrl::with_param`], read one with [`DubboUrl::parse`], write it
/// with [`DubboUrl::to_full_string`] after checking it with [`DubboUrl::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DubboUrl {
    /// `dubbo`, `tri`, `consumer`, `empty`, ... (never empty in a URL read by [`DubboUrl::parse`]).
    pub protocol: String,
    /// The user of `user:password@`, if any (never `Some("")`).
    pub username: Option<String>,
    /// The password of `user:password@`, if any (never `Some("")`, never without a user).
    pub password: Option<String>,
    /// Host name or IP (`[v6]` literals keep their brackets); may be empty (consumer URLs of some writers).
    pub host: String,
    /// The port; 0 for none.
    pub port: u16,
    /// The path without its leading `/` (usually the interface); empty for none.
    pub path: String,
    /// The parameters, sorted by name. Values may be empty; [`DubboUrl::param`] treats empty as absent.
    pub params: BTreeMap<String, String>,
}

impl DubboUrl {
    /// A URL without user info or parameters.
    pub fn new(
        protocol: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        path: impl Into<String>,
    ) -> Self {
        DubboUrl {
            protocol: protocol.into(),
            host: host.into(),
            port,
            path: path.into(),
            ..DubboUrl::default()
        }
    }

    /// The same URL with one more (or a replaced) parameter.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// Reads a decoded URL (the etcd key segment after [`super::decode_component`]) as Dubbo's
    /// `URL.valueOf` does; see the module documentation for the rules.
    ///
    /// Errors: longer than [`MAX_URL_LEN`] or more than [`MAX_PARAMS`] parameters
    /// ([`DubboError::TooLong`]), no `protocol://` ([`DubboError::MissingProtocol`]), a bad port
    /// ([`DubboError::BadPort`]), a password without a user ([`DubboError::PasswordWithoutUser`]).
    pub fn parse(url: &str) -> Result<DubboUrl, DubboError> {
        if url.len() > MAX_URL_LEN {
            return Err(DubboError::TooLong {
                what: "URL",
                len: url.len(),
                max: MAX_URL_LEN,
            });
        }
        let (body, query) = match url.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (url, None),
        };
        let (protocol, rest) = match body.split_once("://") {
            Some((protocol, rest)) if !protocol.is_empty() => (protocol, rest),
            _ => return Err(DubboError::MissingProtocol { url: excerpt(url) }),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = match info.split_once(':') {
                    Some((user, password)) => (user, password),
                    None => (info, ""),
                };
                if user.is_empty() && !password.is_empty() {
                    return Err(DubboError::PasswordWithoutUser { url: excerpt(url) });
                }
                (non_empty(user), non_empty(password))
            }
        };
        let (host, port) = split_port(hostport).map_err(|port| DubboError::BadPort {
            port: excerpt(port),
            url: excerpt(url),
        })?;
        Ok(DubboUrl {
            protocol: protocol.to_owned(),
            username,
            password,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            params: match query {
                Some(query) => parse_params(query)?,
                None => BTreeMap::new(),
            },
        })
    }

    /// The URL as Dubbo's `toFullString()` writes it (user info included, parameters sorted). Check it
    /// with [`DubboUrl::validate`] first when it must read back the same.
    pub fn to_full_string(&self) -> String {
        self.build(true)
    }

    fn build(&self, with_user: bool) -> String {
        let mut out = String::with_capacity(64 + self.path.len() + 32 * self.params.len());
        if !self.protocol.is_empty() {
            out.push_str(&self.protocol);
            out.push_str("://");
        }
        if let (true, Some(user)) = (with_user, self.username.as_deref()) {
            if !user.is_empty() {
                out.push_str(user);
                if let Some(password) = self.password.as_deref().filter(|p| !p.is_empty()) {
                    out.push(':');
                    out.push_str(password);
                }
                out.push('@');
            }
        }
        if !self.host.is_empty() {
            out.push_str(&self.host);
            if self.port > 0 {
                out.push(':');
                out.push_str(&self.port.to_string());
            }
        }
        if !self.path.is_empty() {
            out.push('/');
            out.push_str(&self.path);
        }
        let mut first = true;
        for (key, value) in self.params.iter().filter(|(k, _)| !k.is_empty()) {
            out.push(if first { '?' } else { '&' });
            first = false;
            out.push_str(key);
            out.push('=');
            out.push_str(java_trim(value));
        }
        out
    }

    /// Checks that [`DubboUrl::to_full_string`] reads back as this URL with [`DubboUrl::parse`] (and so
    /// that Java and Go Dubbo read it as meant): a protocol of URL-scheme characters; no `:`, `@`, `/`,
    /// `?` in the user, no `@`, `/`, `?` in the password, no password without a user; a host without
    /// `/`, `?`, `@` and with `:` only inside `[...]`, and a host when there is a port; no `?` in the path;
    /// parameter names without `&`, `;`, `=` and not `default.k` without `k`; values without `&`, `;` or
    /// leading/trailing whitespace; within [`MAX_URL_LEN`] and [`MAX_PARAMS`].
    pub fn validate(&self) -> Result<(), DubboError> {
        let bad = |part: &'static str, value: &str, reason: &'static str| {
            Err(DubboError::Unwritable {
                part,
                value: excerpt(value),
                reason,
            })
        };
        if self.protocol.is_empty()
            || !self
                .protocol
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
        {
            return bad(
                "protocol",
                &self.protocol,
                "must be non-empty letters, digits, `+`, `.` or `-`",
            );
        }
        match (self.username.as_deref(), self.password.as_deref()) {
            (Some(u), _) if u.is_empty() || u.contains([':', '@', '/', '?']) => {
                return bad("user", u, "must be non-empty, without `:`, `@`, `/` or `?`");
            }
            (None, Some(p)) => return bad("password", p, "needs a user"),
            (_, Some(p)) if p.is_empty() || p.contains(['@', '/', '?']) => {
                return bad("password", p, "must be non-empty, without `@`, `/` or `?`");
            }
            _ => {}
        }
        let bracketed = self.host.starts_with('[') && self.host.ends_with(']');
        if self.host.contains(['/', '?', '@']) || (self.host.contains(':') && !bracketed) {
            return bad(
                "host",
                &self.host,
                "must not contain `/`, `?`, `@`, nor `:` outside `[...]`",
            );
        }
        if self.host.is_empty() && self.port != 0 {
            return bad("port", &self.port.to_string(), "needs a host");
        }
        if self.path.contains('?') {
            return bad("path", &self.path, "must not contain `?`");
        }
        if self.params.len() > MAX_PARAMS {
            return Err(DubboError::TooLong {
                what: "parameter list",
                len: self.params.len(),
                max: MAX_PARAMS,
            });
        }
        for (key, value) in &self.params {
            if key.is_empty() || key.contains(['&', ';', '=']) {
                return bad(
                    "parameter name",
                    key,
                    "must be non-empty, without `&`, `;` or `=`",
                );
            }
            if let Some(base) = key.strip_prefix(DEFAULT_KEY_PREFIX) {
                if !base.is_empty() && !self.params.contains_key(base) {
                    return bad(
                        "parameter name",
                        key,
                        "`default.k` without `k` reads back with `k` added",
                    );
                }
            }
            if value.contains(['&', ';']) || java_trim(value).len() != value.len() {
                return bad(
                    "parameter value",
                    value,
                    "must not contain `&` or `;` nor start or end with whitespace",
                );
            }
        }
        let len = self.to_full_string().len();
        if len > MAX_URL_LEN {
            return Err(DubboError::TooLong {
                what: "URL",
                len,
                max: MAX_URL_LEN,
            });
        }
        Ok(())
    }

    /// A parameter's value; an empty value counts as absent (Dubbo's `StringUtils.isEmpty` checks).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The interface: the `interface` parameter, else the path (Dubbo's `getServiceInterface`; simplified
    /// URLs have no `interface` parameter).
    pub fn service_interface(&self) -> &str {
        self.param(INTERFACE_KEY).unwrap_or(&self.path)
    }

    /// The `group` parameter, if set and not empty.
    pub fn group(&self) -> Option<&str> {
        self.param(GROUP_KEY)
    }

    /// The `version` parameter, if set and not empty.
    pub fn version(&self) -> Option<&str> {
        self.param(VERSION_KEY)
    }

    /// The `category` parameter, `providers` when absent (Dubbo's `DEFAULT_CATEGORY`).
    pub fn category(&self) -> &str {
        self.param(CATEGORY_KEY)
            .unwrap_or(super::Category::Providers.as_str())
    }

    /// The method names of the `methods` parameter (comma-separated, blanks around commas ignored).
    pub fn methods(&self) -> impl Iterator<Item = &str> {
        split_comma_list(self.param(METHODS_KEY).unwrap_or(""))
    }

    /// Dubbo's service key of this URL: `group/interface:version`.
    pub fn service_key(&self) -> ServiceKey {
        ServiceKey::new(
            self.group().map(str::to_owned),
            self.service_interface(),
            self.version().map(str::to_owned),
        )
    }
}

/// Like Dubbo's `toString()`: the URL without user info.
impl fmt::Display for DubboUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.build(false))
    }
}

/// Splits a comma list as Dubbo's `COMMA_SPLIT_PATTERN` (`\s*[,]+\s*`) does, dropping empty items.
pub(crate) fn split_comma_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Java's `String.trim`: strips characters up to U+0020 at both ends.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// `host[:port]` -> (host, port); `Err(port text)` when the port is not a number in `0..=65535`.
fn split_port(hostport: &str) -> Result<(&str, u16), &str> {
    let Some(colon) = hostport.rfind(':') else {
        return Ok((hostport, 0));
    };
    // `[::1]`: the last `:` is inside the literal.
    if hostport.starts_with('[') && hostport.ends_with(']') {
        return Ok((hostport, 0));
    }
    let port = &hostport[colon + 1..];
    // An IPv6 zone id (`fe80::1%en0`): Dubbo reads no port.
    if port.contains('%') {
        return Ok((hostport, 0));
    }
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(port);
    }
    let value: u16 = port.parse().map_err(|_| port)?;
    Ok((&hostport[..colon], value))
}

/// Dubbo's `parseDecodedParams` + `addParam` (see the module documentation).
fn parse_params(query: &str) -> Result<BTreeMap<String, String>, DubboError> {
    let mut params = BTreeMap::new();
    for part in query.split(['&', ';']) {
        let part = part.trim_start_matches('=');
        if part.is_empty() {
            continue;
        }
        let (name, value) = part.split_once('=').unwrap_or((part, part));
        if let Some(base) = name.strip_prefix(DEFAULT_KEY_PREFIX) {
            params.entry(base.to_owned()).or_insert_with(|| value.to_owned());
        }
        params.insert(name.to_owned(), value.to_owned());
        if params.len() > MAX_PARAMS {
            return Err(DubboError::TooLong {
                what: "parameter list",
                len: query.split(['&', ';']).count(),
                max: MAX_PARAMS,
            });
        }
    }
    Ok(params)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn url(s: &str) -> DubboUrl {
        DubboUrl::parse(s).unwrap()
    }

    #[test]
    fn reads_a_provider_url() {
        let u = url("dubbo://192.168.1.10:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=demo-provider&methods=sayHello,sayHelloAsync&side=provider");
        assert_eq!(u.protocol, "dubbo");
        assert_eq!(u.host, "192.168.1.10");
        assert_eq!(u.port, 20880);
        assert_eq!(u.path, "org.apache.dubbo.demo.DemoService");
        assert_eq!(u.username, None);
        assert_eq!(u.param("application"), Some("demo-provider"));
        assert_eq!(u.methods().collect::<Vec<_>>(), ["sayHello", "sayHelloAsync"]);
        assert_eq!(u.service_interface(), "org.apache.dubbo.demo.DemoService");
        assert_eq!(u.category(), "providers");
    }

    #[test]
    fn reads_user_info_ipv6_and_odd_parameters() {
        let u = url("tri://admin:s3:cret@[::1]:50051/a/b?x=1;y=2&&=z&w=a=b&bare&e=");
        assert_eq!(u.username.as_deref(), Some("admin"));
        assert_eq!(u.password.as_deref(), Some("s3:cret"));
        assert_eq!(u.host, "[::1]");
        assert_eq!(u.port, 50051);
        assert_eq!(u.path, "a/b");
        let params: Vec<(&str, &str)> = u.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            params,
            [
                ("bare", "bare"),
                ("e", ""),
                ("w", "a=b"),
                ("x", "1"),
                ("y", "2"),
                ("z", "z")
            ]
        );
        assert_eq!(u.param("e"), None, "empty counts as absent");
        assert_eq!(url("dubbo://[::1]/p").host, "[::1]");
        assert_eq!(url("dubbo://fe80::1%en0/p").host, "fe80::1%en0");
        assert_eq!(url("consumer:///Svc?k=v").host, "");
        assert_eq!(url("consumer:///Svc?k=v").path, "Svc");
        assert_eq!(url("dubbo://h").path, "");
        assert_eq!(url("dubbo://@h:1").username, None);
    }

    #[test]
    fn default_prefixed_names_also_set_the_plain_name_unless_set() {
        let u = url("dubbo://h:1/p?default.timeout=1&default.retries=2&retries=3");
        assert_eq!(u.param("timeout"), Some("1"));
        assert_eq!(u.param("retries"), Some("3"));
        let u = url("dubbo://h:1/p?retries=3&default.retries=2");
        assert_eq!(u.param("retries"), Some("3"));
        assert_eq!(u.param("default.retries"), Some("2"));
    }

    #[test]
    fn the_last_repeated_parameter_wins() {
        assert_eq!(url("dubbo://h:1/p?a=1&a=2").param("a"), Some("2"));
    }

    #[test]
    fn refuses_urls_dubbo_cannot_use() {
        for (bad, want) in [
            ("192.168.1.10:20880/x", "MissingProtocol"),
            ("://h:1/x", "MissingProtocol"),
            ("dubbo:/h:1/x", "MissingProtocol"),
            ("dubbo://h:x1/p", "BadPort"),
            ("dubbo://h:65536/p", "BadPort"),
            ("dubbo://h:-1/p", "BadPort"),
            ("dubbo://h:/p", "BadPort"),
            ("dubbo://h:123456/p", "BadPort"),
            ("dubbo://:pw@h:1/p", "PasswordWithoutUser"),
        ] {
            let e = DubboUrl::parse(bad).unwrap_err();
            assert!(format!("{e:?}").starts_with(want), "{bad}: {e:?}");
        }
        let e = DubboUrl::parse("dubbo://h:x1/p").unwrap_err();
        assert_eq!(e.to_string(), "bad port \"x1\" in URL \"dubbo://h:x1/p\"");
    }

    #[test]
    fn limits_length_and_parameter_count() {
        let long = format!("dubbo://h:1/p?k={}", "v".repeat(MAX_URL_LEN));
        assert!(matches!(
            DubboUrl::parse(&long),
            Err(DubboError::TooLong { what: "URL", .. })
        ));
        let most: Vec<String> = (0..MAX_PARAMS).map(|i| format!("k{i}=v")).collect();
        let most = format!("dubbo://h:1/p?{}", most.join("&"));
        assert_eq!(DubboUrl::parse(&most).map(|u| u.params.len()), Ok(MAX_PARAMS));
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("k{i}=v")).collect();
        let many = format!("dubbo://h:1/p?{}", many.join("&"));
        assert!(matches!(
            DubboUrl::parse(&many),
            Err(DubboError::TooLong {
                what: "parameter list",
                ..
            })
        ));
    }

    #[test]
    fn writes_like_to_full_string() {
        let u = DubboUrl::new("dubbo", "10.0.0.1", 20880, "com.foo.Bar")
            .with_param("side", "provider")
            .with_param("application", "app")
            .with_param("methods", "a,b")
            .with_param("note", "  trimmed ");
        assert_eq!(
            u.to_full_string(),
            "dubbo://10.0.0.1:20880/com.foo.Bar?application=app&methods=a,b&note=trimmed&side=provider"
        );
        let mut with_user = u.clone();
        with_user.username = Some("u".into());
        with_user.password = Some("p".into());
        assert!(with_user
            .to_full_string()
            .starts_with("dubbo://u:p@10.0.0.1:20880/"));
        assert!(
            with_user.to_string().starts_with("dubbo://10.0.0.1:20880/"),
            "Display hides user info like Dubbo's toString"
        );
        assert_eq!(
            DubboUrl::new("consumer", "", 0, "Svc").to_full_string(),
            "consumer:///Svc"
        );
        assert_eq!(DubboUrl::new("dubbo", "h", 0, "").to_full_string(), "dubbo://h");
    }

    #[test]
    fn validate_names_the_unwritable_part() {
        let ok = DubboUrl::new("dubbo", "h", 1, "p");
        assert_eq!(ok.validate(), Ok(()));
        let cases: Vec<(DubboUrl, &str)> = vec![
            (DubboUrl::new("", "h", 1, "p"), "protocol"),
            (DubboUrl::new("du bbo", "h", 1, "p"), "protocol"),
            (DubboUrl::new("dubbo", "h/x", 1, "p"), "host"),
            (DubboUrl::new("dubbo", "h:2", 1, "p"), "host"),
            (DubboUrl::new("dubbo", "", 1, "p"), "port"),
            (DubboUrl::new("dubbo", "h", 1, "p?q"), "path"),
            (ok.clone().with_param("a&b", "1"), "parameter name"),
            (ok.clone().with_param("", "1"), "parameter name"),
            (ok.clone().with_param("default.x", "1"), "parameter name"),
            (ok.clone().with_param("a", "1;2"), "parameter value"),
            (ok.clone().with_param("a", " 1"), "parameter value"),
            (
                DubboUrl {
                    password: Some("p".into()),
                    ..ok.clone()
                },
                "password",
            ),
            (
                DubboUrl {
                    username: Some("a@b".into()),
                    ..ok.clone()
                },
                "user",
            ),
        ];
        for (u, part) in cases {
            match u.validate() {
                Err(DubboError::Unwritable { part: p, .. }) => assert_eq!(p, part, "{u:?}"),
                other => panic!("{u:?}: {other:?}"),
            }
        }
        assert_eq!(
            ok.clone()
                .with_param("default.x", "1")
                .with_param("x", "2")
                .validate(),
            Ok(())
        );
    }

    #[test]
    fn service_interface_falls_back_to_the_path() {
        let simplified = url("dubbo://h:1/com.foo.Bar?application=a&group=");
        assert_eq!(simplified.service_interface(), "com.foo.Bar");
        assert_eq!(simplified.group(), None);
        let with_interface = url("dubbo://h:1/bar-path?interface=com.foo.Bar&group=g&version=1.0");
        assert_eq!(with_interface.service_interface(), "com.foo.Bar");
        assert_eq!(with_interface.service_key().to_string(), "g/com.foo.Bar:1.0");
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z][a-zA-Z0-9._-]{0,12}".prop_filter("no default.", |k| !k.starts_with("default."))
    }

    fn value() -> impl Strategy<Value = String> {
        // Anything but the separators; no whitespace at the ends (Java trims on output).
        "([!-%'-:<-~é中][ -%'-:<-~é中]{0,15}[!-%'-:<-~é中])?"
    }

    prop_compose! {
        pub(crate) fn any_url()(
            protocol in "[a-z][a-z0-9+.-]{0,8}",
            user in proptest::option::of("[a-zA-Z0-9._~-]{1,8}"),
            password in proptest::option::of("[a-zA-Z0-9._~:-]{1,8}"),
            host in "[a-z0-9.-]{1,20}|\\[[0-9a-f:]{2,20}\\]",
            port in any::<u16>(),
            path in "([a-zA-Z0-9._$/-]{0,30})",
            params in proptest::collection::btree_map(name(), value(), 0..12),
        ) -> DubboUrl {
            DubboUrl {
                protocol,
                password: user.as_ref().and(password),
                username: user,
                host,
                port,
                path,
                params,
            }
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(u in any_url()) {
            prop_assert_eq!(u.validate(), Ok(()));
            let text = u.to_full_string();
            prop_assert_eq!(DubboUrl::parse(&text), Ok(u), "{}", text);
        }

        #[test]
        fn valid_urls_round_trip_whatever_their_parts(
            protocol in "[ -~]{0,6}",
            host in "[ -~]{0,8}",
            port in any::<u16>(),
            path in "[ -~]{0,8}",
            params in proptest::collection::btree_map("[ -~]{0,5}", "[ -~é]{0,5}", 0..5),
        ) {
            let u = DubboUrl { protocol, username: None, password: None, host, port, path, params };
            if u.validate().is_ok() {
                prop_assert_eq!(DubboUrl::parse(&u.to_full_string()), Ok(u));
            }
        }
    }
}
