//! Keys whose value is one of a few names (`consumer.balancer`, `consumer.migration_step`,
//! `provider.serialization`, `provider.register_mode`): enums parsed
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
    /// `provider.register_mode`: what the provider agent registers in etcd, Dubbo 3's `register-mode`.
    RegisterModeName {
        /// Both (Dubbo 3's default for an interface registry URL).
        All => "all",
        /// Interface-level only: one provider URL key per service (Dubbo 2.7's model).
        Interface => "interface",
        /// Application-level only: one instance per agent under `etcd.services_root`.
        Instance => "instance",
    }
}

impl RegisterModeName {
    /// Whether the provider URL keys (`/<root>/<interface>/providers/<URL>`) are registered.
    pub(crate) fn registers_interfaces(self) -> bool {
        matches!(self, RegisterModeName::All | RegisterModeName::Interface)
    }

    /// Whether the application instance (`<services_root>/<application>/<host>:<port>`) is registered.
    pub(crate) fn registers_instance(self) -> bool {
        matches!(self, RegisterModeName::All | RegisterModeName::Instance)
    }
}

named_enum! {
    /// `consumer.migration_step`: which addresses the consumer uses, Dubbo 3's `MigrationStep` (names as
    /// Dubbo spells them, matched exactly as its `Enum.valueOf`).
    MigrationStepName {
        /// Application-level addresses when there are some that pass the threshold, else interface-level
        /// (Dubbo 3's default).
        ApplicationFirst => "APPLICATION_FIRST",
        /// Interface-level addresses only (Dubbo 2.7's model; no MetadataService call).
        ForceInterface => "FORCE_INTERFACE",
        /// Application-level addresses only.
        ForceApplication => "FORCE_APPLICATION",
    }
}

impl MigrationStepName {
    /// The registry's step.
    pub(crate) fn step(self) -> mesh_registry::dubbo::migration::MigrationStep {
        use mesh_registry::dubbo::migration::MigrationStep;
        match self {
            MigrationStepName::ApplicationFirst => MigrationStep::ApplicationFirst,
            MigrationStepName::ForceInterface => MigrationStep::ForceInterface,
            MigrationStepName::ForceApplication => MigrationStep::ForceApplication,
        }
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
        for n in RegisterModeName::NAMES {
            assert_eq!(n.parse::<RegisterModeName>().unwrap().name(), *n);
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

#[cfg(test)]
mod register_mode_tests {
    use super::RegisterModeName;

    /// Dubbo's meaning of each mode (`ConfigValidationUtils.genCompatibleRegistries`): `all` and `instance`
    /// add the application-level registry, `all` and `interface` keep the interface-level one.
    #[test]
    fn modes_register_what_dubbo_registers() {
        let what = |m: RegisterModeName| (m.registers_interfaces(), m.registers_instance());
        assert_eq!(what(RegisterModeName::All), (true, true));
        assert_eq!(what(RegisterModeName::Interface), (true, false));
        assert_eq!(what(RegisterModeName::Instance), (false, true));
        assert_eq!(RegisterModeName::NAMES[0], "all", "Dubbo's default comes first");
        assert!("INSTANCE".parse::<RegisterModeName>().is_err());
    }
}
