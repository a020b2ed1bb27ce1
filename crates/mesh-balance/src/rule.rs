//! Dubbo condition rules (`when => then`): parsing, validation, canonical
//! [`Display`](std::fmt::Display), and matching of one condition list against a value source.
//!
//! Grammar (Dubbo's `ConditionRouter` syntax, validated more strictly):
//!
//! ```text
//! rule       = [when] "=>" [then] | then          (no "=>": the whole rule is the then part)
//! when, then = "true" | "false" | cond ("&" cond)*
//! cond       = key ("=" | "!=") value ("," value)*
//! ```
//!
//! A blank or `true` when part matches every request; a blank or `false` then part is a blacklist (the
//! matching requests get no provider). Keys may carry Dubbo's `consumer.` / `provider.` prefixes (dropped).
//! Values: `*` (anything), globs with one significant `*` (`find*`, `*Service`, `10.*.1`: like Dubbo, the
//! last `*` splits prefix and suffix), integer ranges `lo~hi` (either side may be open), and `$key`
//! references to the consumer's own attributes (`host = $host`). A condition whose key is absent from the
//! sample does not match (Dubbo 3). With both `=` and `!=` values for one key, `!=` wins.

use std::fmt;

/// Which side of `=>` a token belongs to (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Left of `=>`: matched against the request and the consumer.
    When,
    /// Right of `=>`: matched against each provider.
    Then,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::When => "when",
            Side::Then => "then",
        })
    }
}

/// Why one condition rule text is invalid: the side, the byte offset in that side and the bad token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("empty rule")]
    Empty,
    /// A separator that is not `=`, `!=`, `,` or `&`, or one in the wrong place.
    #[error("{side} part, byte {at}: unexpected `{sep}` before `{token}`")]
    UnexpectedSeparator {
        /// Side of `=>`.
        side: Side,
        /// Byte offset of the separator within the side.
        at: usize,
        /// The separator as written.
        sep: String,
        /// The token after it.
        token: String,
    },
    /// Two tokens without a separator between them (`host = a b`).
    #[error("{side} part, byte {at}: `{token}` needs `=`, `!=`, `,` or `&` before it")]
    MissingSeparator {
        /// Side of `=>`.
        side: Side,
        /// Byte offset of the token.
        at: usize,
        /// The token.
        token: String,
    },
    /// A key with no `= value` (`host & port = 1`, or a rule ending in a key).
    #[error("{side} part: `{key}` has no value")]
    MissingValue {
        /// Side of `=>`.
        side: Side,
        /// The key.
        key: String,
    },
    /// The part ends in a separator (`host = a,`).
    #[error("{side} part: ends with `{sep}`")]
    Trailing {
        /// Side of `=>`.
        side: Side,
        /// The separator.
        sep: String,
    },
    /// A key that cannot be used here (`arguments[x]`, `arguments[0]` in the then part, ...).
    #[error("{side} part: bad key `{key}`: {why}")]
    BadKey {
        /// Side of `=>`.
        side: Side,
        /// The key as written.
        key: String,
        /// Why.
        why: &'static str,
    },
    /// A value that does not parse (`1~x`, `$`).
    #[error("{side} part: bad value `{token}`: {why}")]
    BadValue {
        /// Side of `=>`.
        side: Side,
        /// The value as written.
        token: String,
        /// Why.
        why: &'static str,
    },
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// `method` / `methods`: the invoked method (when), the provider's `method` param (then).
    Method,
    /// `arguments[i]`: the request's i-th argument as text (when part only).
    Argument(usize),
    /// `attachments[name]`: a request attachment (when part only).
    Attachment(String),
    /// `host`: the consumer's host (when) or the provider's IP (then).
    Host,
    /// `port`: the consumer's (when) or the provider's (then) port.
    Port,
    /// `address`: `ip:port`.
    Address,
    /// Any other key: a URL parameter of the consumer (when) or the provider (then), e.g. `application`,
    /// `version`, `group`, `tag` (the provider's tag).
    Param(String),
}

impl Key {
    /// True for keys read from the request rather than from the consumer's fixed attributes.
    pub fn is_request_side(&self) -> bool {
        matches!(self, Key::Method | Key::Argument(_) | Key::Attachment(_))
    }

    fn parse(raw: &str, side: Side) -> Result<Key, ParseError> {
        let name = raw
            .strip_prefix("consumer.")
            .or_else(|| raw.strip_prefix("provider."))
            .unwrap_or(raw);
        let bad = |why| ParseError::BadKey {
            side,
            key: raw.to_owned(),
            why,
        };
        let key = if let Some(rest) = name.strip_prefix("arguments[") {
            let idx = rest.strip_suffix(']').ok_or(bad("missing `]`"))?;
            Key::Argument(idx.parse().map_err(|_| bad("argument index is not a number"))?)
        } else if let Some(rest) = name.strip_prefix("attachments[") {
            let k = rest.strip_suffix(']').ok_or(bad("missing `]`"))?;
            if k.is_empty() {
                return Err(bad("empty attachment name"));
            }
            Key::Attachment(k.to_owned())
        } else {
            match name {
                "" => return Err(bad("empty key")),
                "method" | "methods" => Key::Method,
                "host" => Key::Host,
                "port" => Key::Port,
                "address" => Key::Address,
                other => Key::Param(other.to_owned()),
            }
        };
        if side == Side::Then && matches!(key, Key::Argument(_) | Key::Attachment(_)) {
            return Err(bad(
                "request arguments and attachments can only be matched in the when part",
            ));
        }
        Ok(key)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Method => f.write_str("method"),
            Key::Argument(i) => write!(f, "arguments[{i}]"),
            Key::Attachment(k) => write!(f, "attachments[{k}]"),
            Key::Host => f.write_str("host"),
            Key::Port => f.write_str("port"),
            Key::Address => f.write_str("address"),
            Key::Param(k) => f.write_str(k),
        }
    }
}

/// One value pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `*`.
    Any,
    /// A literal.
    Exact(String),
    /// `abc*`.
    Prefix(String),
    /// `*abc`.
    Suffix(String),
    /// `ab*cd` (split at the last `*`).
    PrefixSuffix(String, String),
    /// `lo~hi` over integers, inclusive; either side may be open.
    Range(Option<i64>, Option<i64>),
    /// `$key`: the consumer's own value for `key`, resolved when the route table is built.
    Ref(String),
}

impl Pattern {
    fn parse(tok: &str, side: Side) -> Result<Pattern, ParseError> {
        let bad = |why| ParseError::BadValue {
            side,
            token: tok.to_owned(),
            why,
        };
        if let Some((lo, hi)) = tok.split_once('~') {
            let num = |s: &str| -> Result<Option<i64>, ParseError> {
                if s.is_empty() {
                    Ok(None)
                } else {
                    s.parse()
                        .map(Some)
                        .map_err(|_| bad("range bounds must be integers"))
                }
            };
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo.is_none() && hi.is_none() {
                return Err(bad("range needs at least one bound"));
            }
            return Ok(Pattern::Range(lo, hi));
        }
        if let Some(r) = tok.strip_prefix('$') {
            if r.is_empty() {
                return Err(bad("empty `$` reference"));
            }
            return Ok(Pattern::Ref(r.to_owned()));
        }
        Ok(glob(tok))
    }

    /// Matches `value`, with `$` references already resolved (see [`Pattern::resolve`]); an unresolved
    /// reference matches nothing.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(s) => value == s,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
            Pattern::Suffix(s) => value.ends_with(s.as_str()),
            Pattern::PrefixSuffix(p, s) => {
                value.len() >= p.len() + s.len()
                    && value.starts_with(p.as_str())
                    && value.ends_with(s.as_str())
            }
            Pattern::Range(lo, hi) => match value.parse::<i64>() {
                Ok(v) => lo.is_none_or(|lo| v >= lo) && hi.is_none_or(|hi| v <= hi),
                Err(_) => false,
            },
            Pattern::Ref(_) => false,
        }
    }

    /// Replaces a `$key` reference by the consumer's value for `key` (as a glob, like Dubbo); references
    /// the consumer has no value for stay unresolved and match nothing.
    pub fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Pattern {
        match self {
            Pattern::Ref(k) => match lookup(k) {
                Some(v) if !v.is_empty() => glob(&v),
                _ => self.clone(),
            },
            other => other.clone(),
        }
    }
}

fn glob(tok: &str) -> Pattern {
    if tok == "*" {
        return Pattern::Any;
    }
    match tok.rfind('*') {
        None => Pattern::Exact(tok.to_owned()),
        Some(i) if i + 1 == tok.len() => Pattern::Prefix(tok[..i].to_owned()),
        Some(0) => Pattern::Suffix(tok[1..].to_owned()),
        Some(i) => Pattern::PrefixSuffix(tok[..i].to_owned(), tok[i + 1..].to_owned()),
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Any => f.write_str("*"),
            Pattern::Exact(s) => f.write_str(s),
            Pattern::Prefix(p) => write!(f, "{p}*"),
            Pattern::Suffix(s) => write!(f, "*{s}"),
            Pattern::PrefixSuffix(p, s) => write!(f, "{p}*{s}"),
            Pattern::Range(lo, hi) => {
                if let Some(lo) = lo {
                    write!(f, "{lo}")?;
                }
                f.write_str("~")?;
                if let Some(hi) = hi {
                    write!(f, "{hi}")?;
                }
                Ok(())
            }
            Pattern::Ref(k) => write!(f, "${k}"),
        }
    }
}

/// `key = matches` and/or `key != mismatches` (all values for one key merged, like Dubbo).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Condition {
    /// What is matched.
    pub key: Key,
    /// `=` values: one must match (when there are any).
    pub matches: Vec<Pattern>,
    /// `!=` values: none may match.
    pub mismatches: Vec<Pattern>,
}

impl Condition {
    /// Dubbo's matcher: an absent value never matches; `!=` is checked before `=`.
    pub fn test(&self, value: Option<&str>) -> bool {
        let Some(v) = value else { return false };
        if self.mismatches.iter().any(|p| p.matches(v)) {
            return false;
        }
        self.matches.is_empty() || self.matches.iter().any(|p| p.matches(v))
    }

    /// The condition with `$` references resolved.
    pub fn resolve(&self, lookup: &impl Fn(&str) -> Option<String>) -> Condition {
        Condition {
            key: self.key.clone(),
            matches: self.matches.iter().map(|p| p.resolve(lookup)).collect(),
            mismatches: self.mismatches.iter().map(|p| p.resolve(lookup)).collect(),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, ps: &[Pattern]| -> fmt::Result {
            for (i, p) in ps.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{p}")?;
            }
            Ok(())
        };
        if !self.matches.is_empty() {
            write!(f, "{} = ", self.key)?;
            list(f, &self.matches)?;
        }
        if !self.mismatches.is_empty() {
            if !self.matches.is_empty() {
                f.write_str(" & ")?;
            }
            write!(f, "{} != ", self.key)?;
            list(f, &self.mismatches)?;
        }
        Ok(())
    }
}

/// One parsed `when => then` rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConditionRule {
    /// All must hold for the rule to apply; empty = every request.
    pub when: Vec<Condition>,
    /// All must hold for a provider to stay; `None` = blacklist (no provider).
    pub then: Option<Vec<Condition>>,
}

impl ConditionRule {
    /// Parses one rule in Dubbo syntax (see the module docs).
    pub fn parse(text: &str) -> Result<ConditionRule, ParseError> {
        if text.trim().is_empty() {
            return Err(ParseError::Empty);
        }
        let (when, then) = match text.find("=>") {
            Some(i) => (&text[..i], &text[i + 2..]),
            None => ("", text),
        };
        let when = when.trim();
        let then = then.trim();
        let when = if when.is_empty() || when == "true" {
            Vec::new()
        } else {
            parse_conditions(when, Side::When)?
        };
        let then = if then.is_empty() || then == "false" {
            None
        } else {
            Some(parse_conditions(then, Side::Then)?)
        };
        Ok(ConditionRule { when, then })
    }
}

impl std::str::FromStr for ConditionRule {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        ConditionRule::parse(s)
    }
}

impl fmt::Display for ConditionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, cs: &[Condition]| -> fmt::Result {
            for (i, c) in cs.iter().enumerate() {
                if i > 0 {
                    f.write_str(" & ")?;
                }
                write!(f, "{c}")?;
            }
            Ok(())
        };
        if !self.when.is_empty() {
            join(f, &self.when)?;
            f.write_str(" ")?;
        }
        f.write_str("=> ")?;
        match &self.then {
            None => f.write_str("false"),
            Some(cs) => join(f, cs),
        }
    }
}

fn is_sep(c: char) -> bool {
    matches!(c, '&' | '!' | '=' | ',')
}

/// Tokenizes like Dubbo's `([&!=,]*)\s*([^&!=,\s]+)` and runs a small state machine over the tokens.
fn parse_conditions(text: &str, side: Side) -> Result<Vec<Condition>, ParseError> {
    #[derive(PartialEq)]
    enum State {
        WantKey,
        WantValue,
        AfterValue,
    }
    let mut conds: Vec<Condition> = Vec::new();
    let mut cur: Option<(usize, bool)> = None; // (condition index, adding to mismatches)
    let mut cur_key = String::new();
    let mut state = State::WantKey;
    let mut first = true;
    let mut rest = text;
    let mut offset = 0;
    loop {
        let trimmed = rest.trim_start();
        offset += rest.len() - trimmed.len();
        rest = trimmed;
        let sep_len = rest.find(|c: char| !is_sep(c)).unwrap_or(rest.len());
        let sep = &rest[..sep_len];
        let sep_at = offset;
        let after = &rest[sep_len..];
        let after_trim = after.trim_start();
        let tok_at = offset + sep_len + (after.len() - after_trim.len());
        let tok_len = after_trim
            .find(|c: char| is_sep(c) || c.is_whitespace())
            .unwrap_or(after_trim.len());
        let tok = &after_trim[..tok_len];
        if tok.is_empty() {
            if !sep.is_empty() {
                return Err(ParseError::Trailing {
                    side,
                    sep: sep.to_owned(),
                });
            }
            break;
        }
        let unexpected = || ParseError::UnexpectedSeparator {
            side,
            at: sep_at,
            sep: sep.to_owned(),
            token: tok.to_owned(),
        };
        match sep {
            "" if first => {}
            "" => {
                return Err(ParseError::MissingSeparator {
                    side,
                    at: tok_at,
                    token: tok.to_owned(),
                })
            }
            "&" if state == State::AfterValue => {}
            "=" | "!=" if state == State::WantValue => {}
            "," if state == State::AfterValue => {}
            _ => {
                if state == State::WantValue && !matches!(sep, "=" | "!=") && matches!(sep, "&" | ",") {
                    return Err(ParseError::MissingValue { side, key: cur_key });
                }
                return Err(unexpected());
            }
        }
        first = false;
        match sep {
            "" | "&" => {
                let key = Key::parse(tok, side)?;
                cur_key = tok.to_owned();
                let idx = match conds.iter().position(|c| c.key == key) {
                    Some(i) => i,
                    None => {
                        conds.push(Condition {
                            key,
                            matches: Vec::new(),
                            mismatches: Vec::new(),
                        });
                        conds.len() - 1
                    }
                };
                cur = Some((idx, false));
                state = State::WantValue;
            }
            "=" | "!=" | "," => {
                let Some((idx, mis)) = cur.as_mut() else {
                    return Err(unexpected());
                };
                if sep != "," {
                    *mis = sep == "!=";
                }
                let p = Pattern::parse(tok, side)?;
                let c = &mut conds[*idx];
                let list = if *mis { &mut c.mismatches } else { &mut c.matches };
                if !list.contains(&p) {
                    list.push(p);
                }
                state = State::AfterValue;
            }
            _ => return Err(unexpected()),
        }
        let consumed = sep_len + (after.len() - after_trim.len()) + tok_len;
        offset += consumed;
        rest = &rest[consumed..];
    }
    if state == State::WantValue {
        return Err(ParseError::MissingValue { side, key: cur_key });
    }
    Ok(conds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ConditionRule {
        ConditionRule::parse(s).unwrap()
    }

    #[test]
    fn parses_dubbo_examples() {
        let r = p("method = find* => host != 10.1.*");
        assert_eq!(
            r.when,
            [Condition {
                key: Key::Method,
                matches: vec![Pattern::Prefix("find".into())],
                mismatches: vec![]
            }]
        );
        assert_eq!(
            r.then.as_deref(),
            Some(
                &[Condition {
                    key: Key::Host,
                    matches: vec![],
                    mismatches: vec![Pattern::Prefix("10.1.".into())]
                }][..]
            )
        );
        let r = p("host = 10.20.153.10 => host = 10.20.153.11");
        assert_eq!(r.when[0].key, Key::Host);
        assert_eq!(r.to_string(), "host = 10.20.153.10 => host = 10.20.153.11");
        let r = p("=> host != 172.22.3.91");
        assert!(r.when.is_empty());
        assert_eq!(r.to_string(), "=> host != 172.22.3.91");
        let r = p("method = get,set & consumer.application=web => provider.version=2.*&host!=1.2.3.4");
        assert_eq!(r.when[0].matches.len(), 2);
        assert_eq!(r.when[1].key, Key::Param("application".into()));
        assert_eq!(
            r.to_string(),
            "method = get,set & application = web => version = 2.* & host != 1.2.3.4"
        );
        // no `=>`: the whole rule is the then part; blank/false then = blacklist; `true` when = always
        assert!(p("host = 1.1.1.1").when.is_empty());
        assert_eq!(p("host = 1.1.1.1 => false").then, None);
        assert_eq!(p("true => ").to_string(), "=> false");
        // merged keys, ranges, references, arguments, attachments
        let r = p("arguments[0] = 1~100 & attachments[zone]=hz & method != x & method = a* => host = $host");
        assert_eq!(r.when[0].matches, [Pattern::Range(Some(1), Some(100))]);
        assert_eq!(r.when[2].mismatches.len(), 1);
        assert_eq!(r.when[2].matches.len(), 1);
        assert_eq!(r.then.as_ref().unwrap()[0].matches, [Pattern::Ref("host".into())]);
        assert_eq!(p(&r.to_string()), r);
    }

    #[test]
    fn rejects_bad_rules_with_the_token() {
        let e = |s: &str| ConditionRule::parse(s).unwrap_err();
        assert_eq!(e("  "), ParseError::Empty);
        assert!(matches!(e("host = a b"), ParseError::MissingSeparator { token, at: 9, .. } if token == "b"));
        assert!(matches!(
            e("= a => x = 1"),
            ParseError::UnexpectedSeparator { side: Side::When, .. }
        ));
        assert!(matches!(e("a == b"), ParseError::UnexpectedSeparator { sep, .. } if sep == "=="));
        assert!(matches!(
            e("a = b => c = d,"),
            ParseError::Trailing { side: Side::Then, .. }
        ));
        assert!(matches!(e("a & b = c => "), ParseError::MissingValue { key, .. } if key == "a"));
        assert!(matches!(
            e("a = b => c"),
            ParseError::MissingValue { side: Side::Then, .. }
        ));
        assert!(matches!(e("arguments[x] = 1 =>"), ParseError::BadKey { .. }));
        assert!(matches!(
            e("=> arguments[0] = 1"),
            ParseError::BadKey { side: Side::Then, .. }
        ));
        assert!(matches!(e("a = 1~z =>"), ParseError::BadValue { .. }));
        assert!(matches!(e("a = $ =>"), ParseError::BadValue { .. }));
        let msg = e("method = find* => host ! 10.1.*").to_string();
        assert_eq!(msg, "then part, byte 5: unexpected `!` before `10.1.*`");
    }

    #[test]
    fn matching_follows_dubbo() {
        let c = |s: &str| p(&format!("=> {s}")).then.unwrap().remove(0);
        assert!(c("host = 10.1.*").test(Some("10.1.2.3")));
        assert!(!c("host = 10.1.*").test(Some("10.2.2.3")));
        assert!(!c("host != 10.1.*").test(Some("10.1.2.3")));
        assert!(!c("host != 10.1.*").test(None), "absent key never matches");
        assert!(c("x = a,b*").test(Some("bz")));
        assert!(!c("x = a* & x != ab").test(Some("ab")), "!= wins");
        assert!(c("x = a*c").test(Some("abc")) && !c("x = a*c").test(Some("ac*")));
        assert!(
            !c("x = ab*bc").test(Some("abc")),
            "prefix and suffix may not overlap"
        );
        assert!(c("x = 5~").test(Some("7")) && !c("x = 5~").test(Some("4")) && !c("x = ~5").test(Some("z")));
        let r = Pattern::Ref("host".into()).resolve(|k| (k == "host").then(|| "10.0.*".to_owned()));
        assert!(r.matches("10.0.0.1"));
        assert!(!Pattern::Ref("nope".into()).resolve(|_| None).matches("x"));
    }
}
