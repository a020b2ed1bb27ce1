//! Keys whose value is one of a few names (`consumer.balancer`, `provider.serialization`): enums parsed
//! once, when the value is read, with an error naming the allowed values.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `"a" or "b"`, `"a", "b" or "c"`.
fn quoted_choice(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every accepted name, the default first.
            pub(crate) const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name as written in the file.
            pub(crate) const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("must be {}, got {s:?}", quoted_choice(Self::NAMES))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

named_enum! {
    /// `consumer.balancer`: how a provider is picked among the routed candidates.
    BalancerName {
        /// `round_robin` by weight when a service's providers register different weights, else `adaptive`.
        Auto => "auto",
        /// Power of two choices over in-flight calls and latency.
        Adaptive => "adaptive",
        WeightedRandom => "weighted_random",
        /// Smooth weighted round robin.
        RoundRobin => "round_robin",
        LeastActive => "least_active",
        ShortestResponse => "shortest_response",
        /// On the first argument.
        ConsistentHash => "consistent_hash",
    }
}

named_enum! {
    /// `provider.serialization`: what the local Dubbo provider speaks.
    SerializationName {
        Hessian2 => "hessian2",
        FastJson => "fastjson",
    }
}

impl SerializationName {
    /// The codec's serialization.
    pub(crate) fn codec(self) -> mesh_dubbo::Serialization {
        match self {
            SerializationName::Hessian2 => mesh_dubbo::Serialization::Hessian2,
            SerializationName::FastJson => mesh_dubbo::Serialization::FastJson,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_errors_list_the_allowed_values() {
        for n in BalancerName::NAMES {
            assert_eq!(n.parse::<BalancerName>().unwrap().name(), *n);
        }
        for n in SerializationName::NAMES {
            assert_eq!(n.parse::<SerializationName>().unwrap().name(), *n);
        }
        assert_eq!(
            "json".parse::<SerializationName>().unwrap_err(),
            "must be \"hessian2\" or \"fastjson\", got \"json\""
        );
        assert_eq!(
            "fast".parse::<BalancerName>().unwrap_err(),
            "must be \"auto\", \"adaptive\", \"weighted_random\", \"round_robin\", \"least_active\", \
             \"shortest_response\" or \"consistent_hash\", got \"fast\""
        );
        assert_eq!(quoted_choice(&["a"]), "\"a\"");
    }

    /// Every balancer name is one the shard runtime knows.
    #[test]
    fn every_balancer_name_is_known_to_the_shard() {
        for n in BalancerName::NAMES {
            assert!(mesh_shard::balancer_named(n).is_some(), "{n}");
        }
    }
}
