//! The key table: every configuration key once, with its type, default, range or allowed values, flag,
//! environment variable and one line of help.
//!
//! Everything else is derived from it: the defaults the file reader fills in ([`defaults_of`]), the range
//! checks of validation, the `--help` text of each flag and the list of file-only keys after it, and the
//! key reference in docs/config.md (see `reference.rs`). Rules that tie keys together or check a value's
//! shape (an address one can connect to, a CPU that is online, ...) are code in `validate.rs`; the table
//! carries their wording in `rule`, so the reference and the help say what validation enforces.

use super::names::{BalancerName, MigrationStepName, RegisterModeName, SerializationName};
use super::schema::LogFormat;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
/// The longest timeout of most `*_ms` keys: ten minutes.
const TEN_MINUTES_MS: u64 = 600_000;
const ONE_HOUR_MS: u64 = 3_600_000;

/// `provider.services` default: the benchmark's interface.
pub(crate) const DEFAULT_SERVICE: &str = "com.alibaba.dubbo.performance.demo.provider.IHelloService";

/// A key's built-in default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultValue {
    Int(u64),
    Bool(bool),
    Str(&'static str),
    Strs(&'static [&'static str]),
    /// `[]`.
    EmptyList,
    /// `{}`.
    EmptyTable,
    /// Absent: what that means, in words (`"not set (plain TCP)"`).
    Unset(&'static str),
    /// Computed when the configuration is loaded or the role starts, in words.
    Computed(&'static str),
}

/// The checks of a key's value that the table itself carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    None,
    /// An integer in `min..=max`.
    Range(u64, u64),
    /// 0 (off) or an integer in `min..=max`.
    OffOrRange(u64, u64),
    /// One of these names (an enum, checked when the value is read).
    OneOf(&'static [&'static str]),
}

/// How a flag's value (or each item of a list flag) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parse {
    /// `IP:port`.
    Addr,
    /// An IP address.
    Ip,
    /// A non-negative integer.
    Int,
    /// Text as given.
    Text,
    /// A CPU list, `0-3,6`.
    Cores,
    /// A `provider.serialization` name.
    Serialization,
}

/// A key's command-line flag and environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flag {
    /// `--long`.
    pub(crate) long: &'static str,
    /// The value's name in `--help` and how it is read; `None` for a switch that sets the key to `false`.
    pub(crate) value: Option<(&'static str, Parse)>,
    pub(crate) env: &'static str,
    /// The flag may repeat and takes comma-separated lists.
    pub(crate) list: bool,
    /// `--help` does not show the environment variable's value.
    pub(crate) secret: bool,
}

/// One configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    /// `runtime`, `consumer`, `provider`, `etcd`, or [`SERVICE_POLICY_SECTION`].
    pub(crate) section: &'static str,
    pub(crate) name: &'static str,
    /// The value's type, in words.
    pub(crate) kind: &'static str,
    pub(crate) default: DefaultValue,
    pub(crate) check: Check,
    /// Further rules, enforced in `validate.rs`, in words ("" when none).
    pub(crate) rule: &'static str,
    pub(crate) flag: Option<Flag>,
    /// What the key does, one line.
    pub(crate) help: &'static str,
}

const INT: &str = "integer";
const BOOL: &str = "bool";
const STRING: &str = "string";
const ADDR: &str = "`\"IP:port\"`";
const PATH: &str = "path";

const fn key(
    section: &'static str,
    name: &'static str,
    kind: &'static str,
    default: DefaultValue,
    help: &'static str,
) -> Key {
    Key {
        section,
        name,
        kind,
        default,
        check: Check::None,
        rule: "",
        flag: None,
        help,
    }
}

impl Key {
    const fn range(self, min: u64, max: u64) -> Key {
        Key {
            check: Check::Range(min, max),
            ..self
        }
    }

    const fn off_or_range(self, min: u64, max: u64) -> Key {
        Key {
            check: Check::OffOrRange(min, max),
            ..self
        }
    }

    const fn one_of(self, names: &'static [&'static str]) -> Key {
        Key {
            check: Check::OneOf(names),
            ..self
        }
    }

    const fn rule(self, rule: &'static str) -> Key {
        Key { rule, ..self }
    }

    const fn flag(self, long: &'static str, value: &'static str, parse: Parse, env: &'static str) -> Key {
        let flag = Flag {
            long,
            value: Some((value, parse)),
            env,
            list: false,
            secret: false,
        };
        Key {
            flag: Some(flag),
            ..self
        }
    }

    /// The flag repeats and takes comma-separated lists.
    const fn list(self) -> Key {
        match self.flag {
            Some(f) => Key {
                flag: Some(Flag { list: true, ..f }),
                ..self
            },
            None => self,
        }
    }

    /// `--help` hides the environment variable's value.
    const fn secret(self) -> Key {
        match self.flag {
            Some(f) => Key {
                flag: Some(Flag { secret: true, ..f }),
                ..self
            },
            None => self,
        }
    }

    const fn off_switch(self, long: &'static str, env: &'static str) -> Key {
        let flag = Flag {
            long,
            value: None,
            env,
            list: false,
            secret: false,
        };
        Key {
            flag: Some(flag),
            ..self
        }
    }

    /// `section.name`.
    pub(crate) fn dotted(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }
}

use DefaultValue::{Bool, Computed, EmptyList, EmptyTable, Int, Str, Strs, Unset};

// ---- [runtime] -------------------------------------------------------------------------------------------

pub(crate) const RUNTIME_CORES: Key = key(
    "runtime",
    "cores",
    "array of CPU ids, or a string `\"0-3,6\"`",
    Computed("the CPUs this process may run on, at most `available_parallelism()` of them"),
    "CPUs to pin shards to, like 0,1 or 0-3 or 0-3,6",
)
.rule("non-empty, no duplicates, each online")
.flag("cores", "LIST", Parse::Cores, "MESH_CORES");

pub(crate) const RUNTIME_SHARDS: Key = key(
    "runtime",
    "shards",
    INT,
    Computed("number of `cores`"),
    "number of shards; beyond the number of cores they are spread round-robin over the cores",
)
.rule("≥ 1")
.flag("shards", "N", Parse::Int, "MESH_SHARDS");

/// `[runtime]`.
pub(crate) static RUNTIME: &[Key] = &[
    RUNTIME_CORES,
    RUNTIME_SHARDS,
    key(
        "runtime",
        "read_buffer_bytes",
        INT,
        Int(64 * KIB),
        "largest single socket read, through one scratch area per shard (a connection keeps only the bytes it has not consumed yet)",
    )
    .range(4 * KIB, 16 * MIB),
    key(
        "runtime",
        "max_connections_per_shard",
        INT,
        Int(10_000),
        "accepted connections per shard before new ones are refused",
    )
    .range(1, 1_000_000),
    key(
        "runtime",
        "io_uring_depth",
        INT,
        Int(mesh_shard::runtime::DEFAULT_RING_DEPTH as u64),
        "entries of each of a shard's 3 io_uring rings, rounded up to a power of two: about 100 bytes each, all resident (4096: 1.2 MiB per shard); below 4096 the kernel's table of armed polls gets fewer buckets, which costs CPU once thousands of connections wait on one shard",
    )
    .range(64, 32_768)
    .flag("io-uring-depth", "N", Parse::Int, "MESH_IO_URING_DEPTH"),
];

// ---- [consumer] ------------------------------------------------------------------------------------------

pub(crate) const CONSUMER_LISTEN: Key = key(
    "consumer",
    "listen",
    ADDR,
    Str("127.0.0.1:20000"),
    "HTTP listen address",
)
.flag("listen", "ADDR", Parse::Addr, "MESH_LISTEN");

pub(crate) const CONSUMER_DUBBO_LISTEN: Key = key(
    "consumer",
    "dubbo_listen",
    ADDR,
    Unset("not set (no Dubbo port)"),
    "Dubbo port: Dubbo clients in any language call the agent here as if it were the provider",
)
.rule("not the same port as `listen` on an overlapping address")
.flag("dubbo-listen", "ADDR", Parse::Addr, "MESH_DUBBO_LISTEN");

pub(crate) const CONSUMER_APPLICATION: Key = key(
    "consumer",
    "application",
    STRING,
    Unset("not set (condition rules see no `application`)"),
    "the consumer's Dubbo application name, what condition rules see as its `application`",
)
.rule("no whitespace")
.flag("application", "NAME", Parse::Text, "MESH_APPLICATION");

pub(crate) const CONSUMER_HOST: Key = key(
    "consumer",
    "host",
    "`\"IP\"`",
    Computed(
        "the `listen` IP when it is a specific address, else the IPv4 address of the interface of the \
         default route (a UDP socket's route lookup, nothing is sent), else 127.0.0.1",
    ),
    "the IP this consumer advertises, what condition rules see as its `host`",
)
.rule("not unspecified (0.0.0.0 / ::)")
.flag("host", "IP", Parse::Ip, "MESH_HOST");

pub(crate) const CONSUMER_PROVIDERS: Key = key(
    "consumer",
    "providers",
    "array of `\"IP:port\"`",
    EmptyList,
    "static provider agents; none => discovery through etcd",
)
.rule("each connectable (not 0.0.0.0, not port 0), no duplicates")
.flag("provider", "ADDR", Parse::Addr, "MESH_PROVIDERS")
.list();

pub(crate) const CONSUMER_UPSTREAM_CONNECTIONS: Key = key(
    "consumer",
    "upstream_connections",
    INT,
    Int(2),
    "connections per shard per provider agent",
)
.range(1, 64)
.flag(
    "upstream-connections",
    "N",
    Parse::Int,
    "MESH_UPSTREAM_CONNECTIONS",
);

pub(crate) const CONSUMER_REQUEST_TIMEOUT_MS: Key = key(
    "consumer",
    "request_timeout_ms",
    INT,
    Int(5000),
    "whole-call timeout, HTTP request in to answer out",
)
.range(1, TEN_MINUTES_MS)
.flag("request-timeout-ms", "MS", Parse::Int, "MESH_REQUEST_TIMEOUT_MS");

pub(crate) const CONSUMER_TOKEN: Key = key(
    "consumer",
    "token",
    STRING,
    Unset("not set"),
    "shared secret sent to provider agents as Dubbo's `token` attachment",
)
.rule("1 ..= 256 printable ASCII, no spaces")
.flag("token", "TOKEN", Parse::Text, "MESH_TOKEN")
.secret();

pub(crate) const CONSUMER_MIGRATION_STEP: Key = key(
    "consumer",
    "migration_step",
    STRING,
    Str(MigrationStepName::ApplicationFirst.name()),
    "Dubbo 3's migration step (`migration.step`): `APPLICATION_FIRST` = application-level addresses when \
     they exist and pass `migration_threshold`, else interface-level; `FORCE_INTERFACE` = interface-level only; \
     `FORCE_APPLICATION` = application-level only; the config center's `<application>.migration` rule wins",
)
.one_of(MigrationStepName::NAMES)
.rule("with etcd; `APPLICATION_FIRST` and `FORCE_APPLICATION` read `etcd.services_root` and the mapping keys")
.flag("migration-step", "STEP", Parse::Text, "MESH_MIGRATION_STEP");

pub(crate) const CONSUMER_MIGRATION_THRESHOLD: Key = key(
    "consumer",
    "migration_threshold",
    "number",
    Unset("Dubbo's 0.0: application-level as soon as it has an address"),
    "APPLICATION_FIRST uses application-level addresses when application-level / interface-level address \
     count >= this (`migration.threshold`)",
)
.rule("a number ≥ 0");

pub(crate) const CONSUMER_PROVIDED_BY: Key = key(
    "consumer",
    "provided_by",
    "table of strings",
    EmptyTable,
    "interface -> the applications that provide it, comma-separated as Dubbo's reference `provided-by`; wins \
     over the mapping key `<etcd.mapping_root>/mapping/<interface>` (Java Dubbo writes none to etcd)",
)
.rule("interface names without whitespace or `/`; application names, no empty one");

pub(crate) const CONSUMER_PROVIDER_SUBSET: Key = key(
    "consumer",
    "provider_subset",
    INT,
    Int(0),
    "providers of each service this consumer lists and connects to, the K best by rendezvous hashing of \
     `subset_seed` and their addresses, so a provider outside them joining or leaving costs it nothing \
     (0 = every provider); keep K x consumers >= providers x a few, or providers sit idle",
)
.off_or_range(1, 100_000)
.rule(
    "every provider for a service with a `dubbo.tag`ged provider, a config-center routing rule that may apply \
     or a `routing` document, and with `balancer = \"consistent_hash\"`; etcd only",
)
.flag("provider-subset", "K", Parse::Int, "MESH_PROVIDER_SUBSET");

pub(crate) const CONSUMER_SUBSET_SEED: Key = key(
    "consumer",
    "subset_seed",
    STRING,
    Unset("`<application>@<hostname>/<host or default-route IP>:<listen port>`"),
    "this consumer's identity for `provider_subset`: consumers with the same seed pick the same providers",
)
.rule("1 ..= 256 bytes")
.flag("subset-seed", "SEED", Parse::Text, "MESH_SUBSET_SEED");

/// `[consumer]`.
pub(crate) static CONSUMER: &[Key] = &[
    CONSUMER_LISTEN,
    CONSUMER_DUBBO_LISTEN,
    CONSUMER_APPLICATION,
    CONSUMER_HOST,
    CONSUMER_PROVIDERS,
    CONSUMER_UPSTREAM_CONNECTIONS,
    CONSUMER_REQUEST_TIMEOUT_MS,
    key(
        "consumer",
        "connect_timeout_ms",
        INT,
        Int(1000),
        "connect timeout to a provider agent",
    )
    .range(1, TEN_MINUTES_MS),
    key(
        "consumer",
        "max_head_bytes",
        INT,
        Int(8 * KIB),
        "HTTP request line + headers cap",
    )
    .range(KIB, MIB),
    key("consumer", "max_headers", INT, Int(64), "HTTP header count cap").range(1, 1024),
    key("consumer", "max_body_bytes", INT, Int(MIB), "HTTP body cap").range(1, 256 * MIB),
    key(
        "consumer",
        "max_form_fields",
        INT,
        Int(64),
        "form field count cap",
    )
    .range(1, 4096),
    key(
        "consumer",
        "max_frame_bytes",
        INT,
        Int(8 * MIB),
        "Dubbo frame body cap, both ways",
    )
    .range(KIB, 1024 * MIB),
    key(
        "consumer",
        "queue_limit",
        INT,
        Int(4096),
        "calls waiting per shard while every provider is at its cap; beyond it, 503",
    )
    .range(0, 1_000_000),
    key(
        "consumer",
        "queue_timeout_ms",
        INT,
        Int(1000),
        "longest wait in that queue before a 503",
    )
    .range(1, TEN_MINUTES_MS),
    key(
        "consumer",
        "idle_timeout_ms",
        INT,
        Int(60_000),
        "close HTTP connections idle (or not reading their answers) this long",
    )
    .range(1, ONE_HOUR_MS),
    key(
        "consumer",
        "request_read_timeout_ms",
        INT,
        Int(10_000),
        "a request must arrive whole within this of its first byte, else 408",
    )
    .range(1, ONE_HOUR_MS),
    key(
        "consumer",
        "dubbo_idle_timeout_ms",
        INT,
        Int(180_000),
        "close Dubbo-port connections with nothing to read this long (Dubbo's default: 3 heartbeats of 60 s)",
    )
    .range(1, ONE_HOUR_MS),
    key(
        "consumer",
        "dubbo_max_inflight_per_connection",
        INT,
        Int(4096),
        "calls in flight per Dubbo-port connection before the agent stops reading it",
    )
    .range(1, 1_000_000),
    key(
        "consumer",
        "retries",
        INT,
        Int(2),
        "further providers tried when a call provably did not run",
    )
    .range(0, 10),
    key(
        "consumer",
        "idempotent",
        BOOL,
        Bool(true),
        "calls may run twice: one lost with its connection is retried elsewhere",
    ),
    key(
        "consumer",
        "services",
        "table of tables",
        EmptyTable,
        "per-service and per-method call policy (keys below)",
    )
    .rule("service names without whitespace"),
    key(
        "consumer",
        "eject_failures",
        INT,
        Int(5),
        "consecutive failures that eject a provider agent, 0 = never",
    )
    .range(0, 1000),
    key(
        "consumer",
        "eject_base_ms",
        INT,
        Int(1000),
        "first ejection, doubled per ejection in a row",
    )
    .range(1, TEN_MINUTES_MS),
    key("consumer", "eject_max_ms", INT, Int(30_000), "longest ejection")
        .range(1, ONE_HOUR_MS)
        .rule("≥ `eject_base_ms`"),
    key(
        "consumer",
        "heartbeat_ms",
        INT,
        Int(5000),
        "heartbeat on idle provider links, dead after 3 times it without data",
    )
    .off_or_range(100, TEN_MINUTES_MS),
    key(
        "consumer",
        "cap_headroom_pct",
        INT,
        Int(5),
        "calls sent beyond a provider's cap (its agent queues them), in percent of it",
    )
    .range(0, 100),
    CONSUMER_TOKEN,
    CONSUMER_MIGRATION_STEP,
    CONSUMER_MIGRATION_THRESHOLD,
    CONSUMER_PROVIDED_BY,
    CONSUMER_PROVIDER_SUBSET,
    CONSUMER_SUBSET_SEED,
    key(
        "consumer",
        "register_services",
        "array of strings",
        EmptyList,
        "service keys this consumer registers a Dubbo consumer URL for (`/<root>/<interface>/consumers/...`, \
         as Java consumers do; Dubbo Admin lists them); empty: none",
    )
    .rule("service keys (`group/interface:version`), no duplicates; needs etcd"),
    key(
        "consumer",
        "simplified",
        BOOL,
        Bool(false),
        "register those consumer URLs simplified (Dubbo's consumer keys, `category`, `check`)",
    ),
    key(
        "consumer",
        "tls_ca",
        PATH,
        Unset("not set (plain TCP)"),
        "TLS to provider agents: PEM file of the CA that signed their certificates",
    ),
    key(
        "consumer",
        "tls_server_name",
        STRING,
        Unset("the provider agent's IP"),
        "name checked in the provider agents' certificates",
    )
    .rule("needs `tls_ca`"),
    key(
        "consumer",
        "tls_cert",
        PATH,
        Unset("not set"),
        "client certificate chain (PEM) for mutual TLS",
    )
    .rule("with `tls_key`; needs `tls_ca`"),
    key(
        "consumer",
        "tls_key",
        PATH,
        Unset("not set"),
        "its private key (PEM)",
    )
    .rule("with `tls_cert`"),
    key(
        "consumer",
        "balancer",
        STRING,
        Str(BalancerName::Auto.name()),
        "how a provider is picked among the routed candidates",
    )
    .one_of(BalancerName::NAMES),
    key(
        "consumer",
        "routing",
        "table of strings",
        EmptyTable,
        "routing rule documents (JSON) per service, used when etcd has none",
    )
    .rule("each a valid rule document"),
];

/// The section name the per-service policy keys are listed under.
pub(crate) const SERVICE_POLICY_SECTION: &str = "consumer.services.<service>";

/// `[consumer.services."<service>"]` and `[consumer.services."<service>".methods.<method>]`: unset keys fall
/// back to the service's, then to the consumer's.
pub(crate) static SERVICE_POLICY: &[Key] = &[
    key(
        SERVICE_POLICY_SECTION,
        "timeout_ms",
        INT,
        Unset("the service's (for a method), else `consumer.request_timeout_ms`"),
        "the call's timeout, also sent to the provider as Dubbo's `timeout` attachment",
    )
    .range(1, TEN_MINUTES_MS),
    key(
        SERVICE_POLICY_SECTION,
        "retries",
        INT,
        Unset("the service's (for a method), else `consumer.retries`"),
        "further providers tried when a call provably did not run",
    )
    .range(0, 10),
    key(
        SERVICE_POLICY_SECTION,
        "idempotent",
        BOOL,
        Unset("the service's (for a method), else `consumer.idempotent`"),
        "calls may run twice",
    ),
    key(
        SERVICE_POLICY_SECTION,
        "rate_limit",
        INT,
        Unset("the service's (for a method), else no limit"),
        "calls per second the whole agent admits (each method counted on its own); beyond it, 429",
    )
    .range(1, 10_000_000),
    key(
        SERVICE_POLICY_SECTION,
        "methods",
        "table of tables",
        EmptyTable,
        "per-method overrides of the keys above (service level only)",
    ),
];

// ---- [provider] ------------------------------------------------------------------------------------------

pub(crate) const PROVIDER_LISTEN: Key = key(
    "provider",
    "listen",
    ADDR,
    Str("127.0.0.1:30000"),
    "agent-to-agent listen address",
)
.flag("listen", "ADDR", Parse::Addr, "MESH_LISTEN");

pub(crate) const PROVIDER_ADVERTISE: Key = key(
    "provider",
    "advertise",
    ADDR,
    Unset("`listen`"),
    "address registered in etcd",
)
.rule("not unspecified (0.0.0.0 / ::), not port 0, when registering")
.flag("advertise", "ADDR", Parse::Addr, "MESH_ADVERTISE");

pub(crate) const PROVIDER_DUBBO: Key = key(
    "provider",
    "dubbo",
    ADDR,
    Str("127.0.0.1:20880"),
    "the local Dubbo provider",
)
.rule("connectable")
.flag("dubbo", "ADDR", Parse::Addr, "MESH_DUBBO");

pub(crate) const PROVIDER_SERIALIZATION: Key = key(
    "provider",
    "serialization",
    STRING,
    Str(SerializationName::Hessian2.name()),
    "serialization the local provider speaks",
)
.one_of(SerializationName::NAMES)
.flag("serialization", "S", Parse::Serialization, "MESH_SERIALIZATION");

pub(crate) const PROVIDER_SERVICES: Key = key(
    "provider",
    "services",
    "array of strings",
    Strs(&[DEFAULT_SERVICE]),
    "Dubbo service keys served and registered: `interface`, `group/interface`, `interface:version` or \
     `group/interface:version`",
)
.rule("non-empty, no blanks or whitespace, no duplicates")
.flag("service", "NAME", Parse::Text, "MESH_SERVICES")
.list();

pub(crate) const PROVIDER_WEIGHT: Key = key(
    "provider",
    "weight",
    INT,
    Int(100),
    "capacity weight registered in etcd (Dubbo's `weight`)",
)
.range(1, 10_000)
.flag("weight", "N", Parse::Int, "MESH_WEIGHT");

pub(crate) const PROVIDER_MAX_CONCURRENCY: Key = key(
    "provider",
    "max_concurrency",
    INT,
    Unset("not set (nothing advertised)"),
    "the provider's thread cap, registered as Dubbo's `threads` and enforced",
)
.range(1, 100_000)
.flag("max-concurrency", "N", Parse::Int, "MESH_MAX_CONCURRENCY");

pub(crate) const PROVIDER_UPSTREAM_CONNECTIONS: Key = key(
    "provider",
    "upstream_connections",
    INT,
    Int(4),
    "connections per shard to the local provider",
)
.range(1, 64)
.flag(
    "upstream-connections",
    "N",
    Parse::Int,
    "MESH_UPSTREAM_CONNECTIONS",
);

pub(crate) const PROVIDER_REQUEST_TIMEOUT_MS: Key = key(
    "provider",
    "request_timeout_ms",
    INT,
    Int(5000),
    "call timeout towards the local provider",
)
.range(1, TEN_MINUTES_MS)
.flag("request-timeout-ms", "MS", Parse::Int, "MESH_REQUEST_TIMEOUT_MS");

pub(crate) const PROVIDER_TOKEN: Key = key(
    "provider",
    "token",
    STRING,
    Unset("not set"),
    "calls without this Dubbo `token` attachment are refused (status 40)",
)
.rule("1 ..= 256 printable ASCII, no spaces")
.flag("token", "TOKEN", Parse::Text, "MESH_TOKEN")
.secret();

pub(crate) const PROVIDER_APPLICATION: Key = key(
    "provider",
    "application",
    STRING,
    Str("dubbo-mesh-agent"),
    "Dubbo's `application` registered with the provider URLs (tag-router rules are keyed by it)",
)
.rule("no whitespace")
.flag("application", "NAME", Parse::Text, "MESH_APPLICATION");

pub(crate) const PROVIDER_REGISTER: Key = key(
    "provider",
    "register",
    BOOL,
    Bool(true),
    "register in etcd; false is static mode (consumers list this agent in consumer.providers)",
)
.off_switch("no-register", "MESH_NO_REGISTER");

pub(crate) const PROVIDER_REGISTER_MODE: Key = key(
    "provider",
    "register_mode",
    STRING,
    Str(RegisterModeName::All.name()),
    "what is registered, Dubbo's `register-mode`: `interface` = a provider URL key per service (Dubbo 2.7), \
     `instance` = one application instance `<etcd.services_root>/<application>/<host>:<port>` (Dubbo 3), \
     `all` = both (Dubbo 3's default)",
)
.one_of(RegisterModeName::NAMES)
.flag("register-mode", "MODE", Parse::Text, "MESH_REGISTER_MODE");

pub(crate) const PROVIDER_WRITE_MAPPING: Key = key(
    "provider",
    "write_mapping",
    BOOL,
    Bool(true),
    "when the instance is registered: add `application` to `<etcd.mapping_root>/mapping/<interface>` of each \
     service (compare-and-swap, kept after exit), as dubbo-go does, so consumers find the application; \
     Java Dubbo writes no mapping to etcd",
);

/// `[provider]`.
pub(crate) static PROVIDER: &[Key] = &[
    PROVIDER_LISTEN,
    PROVIDER_ADVERTISE,
    PROVIDER_DUBBO,
    PROVIDER_SERIALIZATION,
    PROVIDER_SERVICES,
    PROVIDER_APPLICATION,
    PROVIDER_WEIGHT,
    PROVIDER_MAX_CONCURRENCY,
    PROVIDER_UPSTREAM_CONNECTIONS,
    PROVIDER_REQUEST_TIMEOUT_MS,
    key(
        "provider",
        "drain_timeout_ms",
        INT,
        Int(10_000),
        "on SIGTERM: deregister, then wait at most this for in-flight calls",
    )
    .range(0, TEN_MINUTES_MS),
    key(
        "provider",
        "max_frame_bytes",
        INT,
        Int(8 * MIB),
        "Dubbo frame body cap, both ways",
    )
    .range(KIB, 1024 * MIB),
    PROVIDER_REGISTER,
    PROVIDER_REGISTER_MODE,
    PROVIDER_WRITE_MAPPING,
    key(
        "provider",
        "queue_limit",
        INT,
        Int(1024),
        "calls waiting per shard at `max_concurrency`; beyond it, Dubbo status 100",
    )
    .range(0, 1_000_000),
    key(
        "provider",
        "queue_timeout_ms",
        INT,
        Int(1000),
        "longest wait in that queue",
    )
    .range(1, TEN_MINUTES_MS),
    key(
        "provider",
        "max_inflight_per_connection",
        INT,
        Int(4096),
        "calls in flight per consumer connection before the agent stops reading it",
    )
    .range(1, 1_000_000),
    PROVIDER_TOKEN,
    key(
        "provider",
        "tls_cert",
        PATH,
        Unset("not set (plain TCP)"),
        "TLS on the agent-to-agent port: certificate chain (PEM)",
    )
    .rule("with `tls_key`"),
    key(
        "provider",
        "tls_key",
        PATH,
        Unset("not set"),
        "its private key (PEM)",
    )
    .rule("with `tls_cert`"),
    key(
        "provider",
        "tls_client_ca",
        PATH,
        Unset("not set"),
        "require consumer agents' certificates signed by this CA (mutual TLS)",
    )
    .rule("needs `tls_cert`"),
    key(
        "provider",
        "tag",
        STRING,
        Unset("not set"),
        "Dubbo's `dubbo.tag` of this provider, registered for tag routing",
    )
    .rule("no whitespace"),
    key(
        "provider",
        "params",
        "table of strings",
        EmptyTable,
        "attributes registered for condition routing",
    )
    .rule("names without whitespace"),
    key(
        "provider",
        "warmup_ms",
        INT,
        Int(0),
        "weight warm-up after start for weighted balancers, 0 = none",
    )
    .range(0, 86_400_000),
    key(
        "provider",
        "simplified",
        BOOL,
        Bool(false),
        "register simplified URLs as Dubbo's `simplified = true` does: Dubbo 3.3's provider keys, \
         `extra_keys` and the agent's own (`threads`, `dubbo.tag`, `application`)",
    ),
    key(
        "provider",
        "extra_keys",
        "array of strings",
        EmptyList,
        "with `simplified`: more parameters to keep (Dubbo's `extra-keys`)",
    )
    .rule("names without whitespace"),
];

// ---- [etcd] ----------------------------------------------------------------------------------------------

pub(crate) const ETCD_ENDPOINTS: Key = key(
    "etcd",
    "endpoints",
    "array of strings",
    EmptyList,
    "etcd endpoints",
)
.rule(
    "non-empty, each `http://host:port` or `https://host:port` (host: name, IPv4 or `[IPv6]`; no path), \
     all of one scheme; `https://` needs `ca_file`",
)
.flag("etcd", "URL", Parse::Text, "MESH_ETCD")
.list();

pub(crate) const ETCD_ROOT: Key = key(
    "etcd",
    "root",
    STRING,
    Str("/dubbo"),
    "Dubbo's registry root (the registry URL's `group`): providers are `/<root>/<interface>/providers/<URL>`",
)
.rule("starts with `/`, does not end with `/`, no empty segment")
.flag("etcd-root", "ROOT", Parse::Text, "MESH_ETCD_ROOT");

pub(crate) const ETCD_SERVICES_ROOT: Key = key(
    "etcd",
    "services_root",
    STRING,
    Str("/services"),
    "root of Dubbo 3 application instances: `<services_root>/<application>/<host>:<port>` (Java and dubbo-go \
     both fix it at `/services`)",
)
.rule("starts with `/`, does not end with `/`, no empty segment");

pub(crate) const ETCD_MAPPING_ROOT: Key = key(
    "etcd",
    "mapping_root",
    STRING,
    Str("/dubbo"),
    "root of the interface-to-application mapping: `<mapping_root>/mapping/<interface>` (dubbo-go's \
     metadata-report root, `/` + its `group`)",
)
.rule("starts with `/`, does not end with `/`, no empty segment");

/// `[etcd]`.
pub(crate) static ETCD: &[Key] = &[
    ETCD_ENDPOINTS,
    ETCD_ROOT,
    ETCD_SERVICES_ROOT,
    ETCD_MAPPING_ROOT,
    key(
        "etcd",
        "lease_ttl_s",
        "integer (seconds)",
        Int(10),
        "registration lease TTL: how long a crashed provider stays registered",
    )
    .range(2, 3600),
    key(
        "etcd",
        "publish_interval_ms",
        INT,
        Int(0),
        "consumer: least time between two registry snapshots handed to the shards; a change within it of the \
         last one is held, at most 1.5 times it, and goes out with the changes after it (0 = a snapshot per etcd \
         batch)",
    )
    .range(0, 1000),
    key(
        "etcd",
        "ca_file",
        PATH,
        Unset("not set (plain http)"),
        "TLS to etcd: PEM file of the CA that signed the etcd servers' certificates",
    )
    .rule("required by `https://` endpoints, refused with `http://` ones; read at start")
    .flag("etcd-ca-file", "PATH", Parse::Text, "MESH_ETCD_CA_FILE"),
    key(
        "etcd",
        "cert_file",
        PATH,
        Unset("not set"),
        "client certificate chain (PEM) for etcd's --client-cert-auth",
    )
    .rule("with `key_file`; needs `ca_file`")
    .flag("etcd-cert-file", "PATH", Parse::Text, "MESH_ETCD_CERT_FILE"),
    key(
        "etcd",
        "key_file",
        PATH,
        Unset("not set"),
        "its private key (PEM)",
    )
    .rule("with `cert_file`")
    .flag("etcd-key-file", "PATH", Parse::Text, "MESH_ETCD_KEY_FILE"),
    key(
        "etcd",
        "user",
        STRING,
        Unset("not set (no authentication)"),
        "etcd user when etcd has authentication enabled",
    )
    .rule("with `password`")
    .flag("etcd-user", "USER", Parse::Text, "MESH_ETCD_USER"),
    key(
        "etcd",
        "password",
        STRING,
        Unset("not set"),
        "the etcd user's password; prefer MESH_ETCD_PASSWORD; printed as <redacted>",
    )
    .rule("with `user`; not the `<redacted>` placeholder of --print-config")
    .flag("etcd-password", "PASSWORD", Parse::Text, "MESH_ETCD_PASSWORD")
    .secret(),
];

// ---- [admin] --------------------------------------------------------------------------------------------

pub(crate) const ADMIN_LISTEN: Key = key(
    "admin",
    "listen",
    "`\"IP:port\"` or `\"off\"`",
    Computed("`127.0.0.1:9901` for the consumer, `127.0.0.1:9902` for the provider (taken: no admin listener, said once)"),
    "admin HTTP listener: GET /metrics (Prometheus), /ready, /live, /registry, /config; POST /drain",
)
.rule("an `IP:port` (failing to bind it stops the agent), or `off`")
.flag("admin-listen", "ADDR", Parse::Text, "MESH_ADMIN_LISTEN");

pub(crate) const ADMIN_METRICS: Key = key(
    "admin",
    "metrics",
    BOOL,
    Bool(true),
    "the shards count calls, attempts and refusals for /metrics; false (or `admin.listen = off`, where nobody \
     could read them): no per-call recording, the per-call series stay at 0",
)
.off_switch("no-metrics", "MESH_NO_METRICS");

/// `[admin]`.
pub(crate) static ADMIN: &[Key] = &[ADMIN_LISTEN, ADMIN_METRICS];

// ---- [log] ----------------------------------------------------------------------------------------------

pub(crate) const LOG_FORMAT: Key = key(
    "log",
    "format",
    STRING,
    Str("text"),
    "log lines on stderr: `text` (human-readable) or `json` (one JSON object per line); levels and targets \
     come from MESH_LOG (EnvFilter syntax, e.g. `info,mesh_registry=debug`; default `info`)",
)
.one_of(LogFormat::NAMES)
.flag("log-format", "FORMAT", Parse::Text, "MESH_LOG_FORMAT");

pub(crate) const LOG_ACCESS_EVERY: Key = key(
    "log",
    "access_every",
    INT,
    Int(0),
    "consumer access log: one `info` line at target `mesh_access` (service, method, provider, outcome, \
     status, duration_us, retries, request_bytes) for one call in N per shard, the first included; 0 = off",
)
.off_or_range(1, 1_000_000)
.flag("access-log-every", "N", Parse::Int, "MESH_ACCESS_LOG_EVERY");

/// `[log]`.
pub(crate) static LOG: &[Key] = &[LOG_FORMAT, LOG_ACCESS_EVERY];

/// The file's sections with their keys, in file order.
pub(crate) static SECTIONS: &[(&str, &[Key])] = &[
    ("runtime", RUNTIME),
    ("consumer", CONSUMER),
    ("provider", PROVIDER),
    ("etcd", ETCD),
    ("admin", ADMIN),
    ("log", LOG),
];

/// The keys of `section` (empty for an unknown section).
pub(crate) fn keys_of(section: &str) -> &'static [Key] {
    SECTIONS
        .iter()
        .find(|(s, _)| *s == section)
        .map_or(&[], |(_, keys)| keys)
}

/// The defaults of `keys` that are values (not unset, not computed), as the file would spell them.
pub(crate) fn defaults_of(keys: &[Key]) -> toml::Table {
    keys.iter()
        .filter_map(|k| {
            let v = match k.default {
                Int(n) => toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
                Bool(b) => toml::Value::Boolean(b),
                Str(s) => toml::Value::String(s.to_owned()),
                Strs(list) => toml::Value::Array(
                    list.iter()
                        .map(|s| toml::Value::String((*s).to_owned()))
                        .collect(),
                ),
                EmptyList => toml::Value::Array(Vec::new()),
                EmptyTable => toml::Value::Table(toml::Table::new()),
                Unset(_) | Computed(_) => return None,
            };
            Some((k.name.to_owned(), v))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn all() -> impl Iterator<Item = &'static Key> {
        SECTIONS
            .iter()
            .flat_map(|(_, keys)| keys.iter())
            .chain(SERVICE_POLICY)
    }

    #[test]
    fn every_key_is_documented_once_in_its_section() {
        let mut seen = std::collections::BTreeSet::new();
        for (section, keys) in SECTIONS {
            for k in *keys {
                assert_eq!(k.section, *section, "{}", k.name);
                assert!(seen.insert(k.dotted()), "{} is listed twice", k.dotted());
            }
        }
        for k in all() {
            assert!(!k.help.is_empty(), "{} has no help", k.dotted());
            assert!(!k.kind.is_empty(), "{} has no type", k.dotted());
            assert!(!k.help.contains('\n'), "{}: help is one line", k.dotted());
        }
    }

    #[test]
    fn defaults_are_in_range_and_allowed() {
        for k in all() {
            match (k.check, k.default) {
                (Check::Range(min, max), Int(d)) => {
                    assert!(min <= max && (min..=max).contains(&d), "{}: {d}", k.dotted());
                }
                (Check::OffOrRange(min, max), Int(d)) => {
                    assert!(d == 0 || (min..=max).contains(&d), "{}: {d}", k.dotted());
                }
                (Check::OneOf(names), Str(d)) => {
                    assert!(names.contains(&d), "{}: {d}", k.dotted());
                }
                (Check::Range(min, max) | Check::OffOrRange(min, max), Unset(_)) => {
                    assert!(min <= max, "{}", k.dotted());
                }
                (Check::Range(..) | Check::OffOrRange(..) | Check::OneOf(_), d) => {
                    panic!("{}: a checked key with default {d:?}", k.dotted())
                }
                (Check::None, _) => {}
            }
        }
    }

    #[test]
    fn flags_are_unique_per_role_and_env_names_follow_them() {
        for role in ["consumer", "provider"] {
            let mut longs = std::collections::BTreeSet::new();
            let mut ids = std::collections::BTreeSet::new();
            for k in RUNTIME.iter().chain(keys_of(role)).chain(ETCD) {
                if let Some(f) = k.flag {
                    assert!(longs.insert(f.long), "{role}: --{} twice", f.long);
                    // The key's name is its clap argument's id.
                    assert!(ids.insert(k.name), "{role}: {} twice", k.name);
                    assert!(f.env.starts_with("MESH_"), "{}", k.dotted());
                }
            }
        }
    }

    #[test]
    fn defaults_table_holds_every_value_default() {
        let t = defaults_of(CONSUMER);
        assert_eq!(t["listen"].as_str(), Some("127.0.0.1:20000"));
        assert_eq!(t["max_frame_bytes"].as_integer(), Some(8 << 20));
        assert_eq!(t["balancer"].as_str(), Some("auto"));
        assert!(t.get("token").is_none() && t.get("host").is_none());
        assert!(keys_of("nowhere").is_empty());
    }
}
