//! The configuration's unit tests, through its whole path: parsing, merging, validation and the command
//! line, without files (except the shipped examples), environment or a process. Tests of one file's own
//! decisions sit in that file.

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::cli::{ConsumerArgs, ProviderArgs};
use super::cpus::default_cores;
use super::error::ConfigError;
use super::keys::*;
use super::merge::{load_on, merge, parse_toml, Overrides};
use super::names::{BalancerName, RegisterModeName, SerializationName};
use super::schema::{CallPolicyConfig, ConsumerConfig, EtcdSection, ProviderConfig, RawRuntime};
use super::Role;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const EIGHT: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7];

fn err_of(text: &str) -> String {
    parse_toml(text).unwrap_err().to_string()
}

/// Loads for `role` on an 8-CPU machine and returns the error line.
fn load_err(text: &str, role: Role) -> ConfigError {
    load_on(Some(text), &Overrides::default(), role, EIGHT).unwrap_err()
}

const ETCD: &str = "[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n";

#[test]
fn defaults() {
    let c = parse_toml("").unwrap();
    assert_eq!(c.runtime.cores, default_cores());
    assert_eq!(c.runtime.shards, c.runtime.cores.len());
    assert_eq!(c.runtime.read_buffer_bytes, 65536);
    assert_eq!(c.runtime.max_connections_per_shard, 10_000);
    assert_eq!(c.runtime.io_uring_depth, 4096);
    assert!(c.consumer.is_none() && c.provider.is_none() && c.etcd.is_none());

    let c = parse_toml("[consumer]\n[provider]\n[etcd]\n").unwrap();
    let consumer = c.consumer.unwrap();
    assert_eq!(consumer.listen, addr("127.0.0.1:20000"));
    assert!(consumer.providers.is_empty());
    assert_eq!(consumer.upstream_connections, 2);
    assert_eq!(consumer.request_timeout_ms, 5000);
    assert_eq!(consumer.connect_timeout_ms, 1000);
    assert_eq!(consumer.max_head_bytes, 8192);
    assert_eq!(consumer.max_headers, 64);
    assert_eq!(consumer.max_body_bytes, 1 << 20);
    assert_eq!(consumer.max_form_fields, 64);
    assert_eq!(consumer.max_frame_bytes, 8 << 20);
    // The Dubbo port is off unless asked for.
    assert_eq!(consumer.dubbo_listen, None);
    assert_eq!(consumer.dubbo_idle_timeout_ms, 180_000);
    assert_eq!(consumer.dubbo_max_inflight_per_connection, 4096);
    let p = c.provider.unwrap();
    assert_eq!(p.listen, addr("127.0.0.1:30000"));
    assert_eq!(p.advertise, None);
    assert_eq!(p.advertise_addr(), p.listen);
    assert_eq!(p.dubbo, addr("127.0.0.1:20880"));
    assert_eq!(p.serialization, SerializationName::Hessian2);
    assert_eq!(consumer.balancer, BalancerName::Auto);
    assert_eq!((consumer.application.as_deref(), consumer.host), (None, None));
    assert_eq!(p.services, [DEFAULT_SERVICE]);
    assert_eq!(p.weight, 100);
    assert_eq!(p.max_concurrency, None);
    assert_eq!(p.upstream_connections, 4);
    assert_eq!(p.request_timeout_ms, 5000);
    assert_eq!(p.drain_timeout_ms, 10_000);
    assert_eq!(p.max_frame_bytes, 8 << 20);
    assert!(p.register);
    assert_eq!(p.register_mode, RegisterModeName::All);
    assert!(p.write_mapping);
    let e = c.etcd.unwrap();
    assert!(e.endpoints.is_empty());
    assert_eq!(e.root, "/dubbo");
    assert_eq!(
        (e.services_root.as_str(), e.mapping_root.as_str()),
        ("/services", "/dubbo")
    );
    assert_eq!(e.lease_ttl_s, 10);
}

#[test]
fn default_consumer_with_etcd_is_valid_and_shards_follow_cores() {
    let c = load_on(Some(ETCD), &Overrides::default(), Role::Consumer, EIGHT).unwrap();
    assert!(c.consumer.is_some());
    let c = parse_toml("[runtime]\ncores = \"2-5\"\n").unwrap();
    assert_eq!((c.runtime.cores, c.runtime.shards), (vec![2, 3, 4, 5], 4));
    let c = parse_toml("[runtime]\ncores = [3, 1]\nshards = 6\n").unwrap();
    assert_eq!((c.runtime.cores.clone(), c.runtime.shards), (vec![3, 1], 6));
}

#[test]
fn unknown_keys_name_the_full_path() {
    let e = err_of("[consumer]\nlistn = \"127.0.0.1:1\"\n");
    assert_eq!(
        e,
        "unknown key `consumer.listn` (line 2, column 1); did you mean `consumer.listen`?"
    );
    // Dotted keys and inline tables give the same path.
    assert!(err_of("consumer.listn = 1\n").starts_with("unknown key `consumer.listn` (line 1, column 10)"));
    assert!(
        err_of("consumer = { listn = 1 }\n").starts_with("unknown key `consumer.listn` (line 1, column 14)")
    );
    assert_eq!(
        err_of("[consumer]\nserialization = \"fastjson\"\n"),
        "unknown key `consumer.serialization` (line 2, column 1); `serialization` belongs in \
         [provider]: did you mean `provider.serialization`?"
    );
    assert_eq!(
        err_of("[etcd]\nxyz = 1\n"),
        "unknown key `etcd.xyz` (line 2, column 1); [etcd] keys are endpoints, root, services_root, mapping_root, lease_ttl_s, publish_interval_ms, \
         ca_file, cert_file, key_file, user, password"
    );
    assert_eq!(
        err_of("[consumr]\n"),
        "unknown key `consumr` (line 1, column 2); did you mean `[consumer]`?"
    );
    assert_eq!(
        err_of("listen = \"1.2.3.4:5\"\n"),
        "unknown key `listen` (line 1, column 1); keys belong in a section: did you mean \
         `consumer.listen` or `provider.listen` or `admin.listen`?"
    );
    assert!(err_of("[consumer.tls]\nx = 1\n").starts_with("unknown key `consumer.tls` (line 1, column 11)"));
    assert!(err_of("[consumer]\ntls.x = 1\n").starts_with("unknown key `consumer.tls` (line 2, column 1)"));
    // The first error in file order is reported.
    assert!(err_of("[runtime]\nzzz = 1\n[consumer]\naaa = 1\n").starts_with("unknown key `runtime.zzz`"));
    let e = parse_toml("[provider]\nwieght = 1\n").unwrap_err();
    assert_eq!(e.key(), Some("provider.wieght"));
}

#[test]
fn type_errors_name_the_key() {
    assert_eq!(
        err_of("[consumer]\nlisten = \"abc\"\n"),
        "consumer.listen: invalid socket address syntax, got \"abc\" (line 2, column 1)"
    );
    assert_eq!(
        err_of("[runtime]\ncores = [1, \"a\"]\n"),
        "runtime.cores: invalid type: string \"a\", expected usize, got [1, \"a\"] (line 2, column 1)"
    );
    assert!(err_of("[runtime]\ncores = \"1-x\"\n").starts_with("runtime.cores: invalid CPU list \"1-x\""));
    assert_eq!(
        err_of("[provider]\nweight = -1\n"),
        "provider.weight: invalid value: integer `-1`, expected u32 (line 2, column 1)"
    );
    assert_eq!(
        err_of("[provider]\nregister = \"no\"\n"),
        "provider.register: invalid type: string \"no\", expected a boolean (line 2, column 1)"
    );
    assert_eq!(
        err_of("consumer = 5\n"),
        "consumer: must be a table (a [consumer] section), got integer (line 1, column 1)"
    );
    let e = parse_toml("[[etcd]]\n").unwrap_err();
    assert_eq!(e.key(), Some("etcd"));
}

#[test]
fn syntax_errors_are_one_line_with_position() {
    let e = err_of("[consumer\n");
    assert!(
        e.starts_with("TOML syntax error (line 1, column 10): invalid table header"),
        "{e}"
    );
    assert!(!e.contains('\n'));
    let e = err_of("[consumer]\nupstream_connections = 1\nupstream_connections = 2\n");
    assert!(e.contains("duplicate key") && e.contains("line 3"), "{e}");
}

/// Every validation rule, with the message it gives. On an 8-CPU machine.
#[test]
fn every_validation_error_names_its_key() {
    let cases: &[(Role, &str, &str)] = &[
        (Role::Consumer, "[runtime]\ncores = []\n", "runtime.cores: must list at least one CPU"),
        (Role::Consumer, "[runtime]\ncores = [1, 1]\n", "runtime.cores: core 1 is listed twice"),
        (Role::Consumer, "[runtime]\ncores = \"0-8\"\n", "runtime.cores: core 8 is not online (online: 0-7)"),
        (Role::Consumer, "[runtime]\nshards = 0\n", "runtime.shards: must be at least 1, got 0"),
        (Role::Consumer, "[runtime]\nread_buffer_bytes = 100\n", "runtime.read_buffer_bytes: must be between 4096 and 16777216, got 100"),
        (Role::Consumer, "[runtime]\nmax_connections_per_shard = 0\n", "runtime.max_connections_per_shard: must be between 1 and 1000000, got 0"),
        (Role::Provider, "[runtime]\nio_uring_depth = 65536\n", "runtime.io_uring_depth: must be between 64 and 32768, got 65536"),
        (Role::Consumer, "[consumer]\nupstream_connections = 0\n", "consumer.upstream_connections: must be between 1 and 64, got 0"),
        (Role::Consumer, "[consumer]\nupstream_connections = 65\n", "consumer.upstream_connections: must be between 1 and 64, got 65"),
        (Role::Consumer, "[consumer]\nrequest_timeout_ms = 0\n", "consumer.request_timeout_ms: must be between 1 and 600000, got 0"),
        (Role::Consumer, "[consumer]\nconnect_timeout_ms = 600001\n", "consumer.connect_timeout_ms: must be between 1 and 600000, got 600001"),
        (Role::Consumer, "[consumer]\nmax_head_bytes = 10\n", "consumer.max_head_bytes: must be between 1024 and 1048576, got 10"),
        (Role::Consumer, "[consumer]\nmax_headers = 0\n", "consumer.max_headers: must be between 1 and 1024, got 0"),
        (Role::Consumer, "[consumer]\nmax_body_bytes = 0\n", "consumer.max_body_bytes: must be between 1 and 268435456, got 0"),
        (Role::Consumer, "[consumer]\nmax_form_fields = 5000\n", "consumer.max_form_fields: must be between 1 and 4096, got 5000"),
        (Role::Consumer, "[consumer]\nmax_frame_bytes = 1\n", "consumer.max_frame_bytes: must be between 1024 and 1073741824, got 1"),
        (Role::Consumer, "[consumer]\ndubbo_listen = \"127.0.0.1:20000\"\n", "consumer.dubbo_listen: 127.0.0.1:20000 is where consumer.listen (127.0.0.1:20000) takes HTTP"),
        (Role::Consumer, "[consumer]\nlisten = \"0.0.0.0:20000\"\ndubbo_listen = \"127.0.0.1:20000\"\n", "consumer.dubbo_listen: 127.0.0.1:20000 is where consumer.listen (0.0.0.0:20000) takes HTTP"),
        (Role::Consumer, "[consumer]\ndubbo_idle_timeout_ms = 0\n", "consumer.dubbo_idle_timeout_ms: must be between 1 and 3600000, got 0"),
        (Role::Consumer, "[consumer]\ndubbo_max_inflight_per_connection = 0\n", "consumer.dubbo_max_inflight_per_connection: must be between 1 and 1000000, got 0"),
        (Role::Consumer, "[consumer]\nproviders = [\"0.0.0.0:30000\"]\n", "consumer.providers: 0.0.0.0:30000 is not an address one can connect to"),
        (Role::Consumer, "[consumer]\nproviders = [\"10.0.0.1:30000\", \"10.0.0.1:30000\"]\n", "consumer.providers: 10.0.0.1:30000 is listed twice"),
        (Role::Consumer, "[consumer]\n", "etcd: required when consumer.providers is empty"),
        (Role::Consumer, "[etcd]\n", "etcd.endpoints: must list at least one endpoint"),
        (Role::Consumer, "[etcd]\nendpoints = [\"127.0.0.1:2379\"]\n", "etcd.endpoints: \"127.0.0.1:2379\" is not http://host:port"),
        (Role::Consumer, "[etcd]\nendpoints = [\"http://etcd:2379/v3\"]\n", "etcd.endpoints: \"http://etcd:2379/v3\" is not"),
        (Role::Consumer, "[etcd]\nendpoints = [\"http://h:1\"]\nroot = \"x\"\n", "etcd.root: must start with '/', got \"x\""),
        (Role::Consumer, "[etcd]\nendpoints = [\"http://h:1\"]\nroot = \"/x/\"\n", "etcd.root: bad registry root"),
        (Role::Consumer, "[etcd]\nendpoints = [\"http://h:1\"]\nlease_ttl_s = 1\n", "etcd.lease_ttl_s: must be between 2 and 3600, got 1"),
        (Role::Provider, "[provider]\n", "etcd: required for the provider role"),
        (Role::Provider, "[provider]\nlisten = \"0.0.0.0:30000\"\n", "provider.advertise: 0.0.0.0 cannot be advertised; it defaults to provider.listen; set provider.advertise"),
        (Role::Provider, "[provider]\nadvertise = \"[::]:30000\"\n", "provider.advertise: :: cannot be advertised; set it to an address consumers can reach"),
        (Role::Provider, "[provider]\nlisten = \"10.0.0.1:0\"\n", "provider.advertise: port 0 cannot be advertised"),
        (Role::Provider, "[provider]\ndubbo = \"0.0.0.0:20880\"\n", "provider.dubbo: 0.0.0.0:20880 is not an address one can connect to"),
        (Role::Provider, "[provider]\nserialization = \"json\"\n", "provider.serialization: must be \"hessian2\" or \"fastjson\", got \"json\""),
        (Role::Provider, "[provider]\nservices = []\n", "provider.services: must list at least one interface"),
        (Role::Provider, "[provider]\nservices = [\"a b\"]\n", "provider.services: \"a b\" is not a service key"),
        (Role::Provider, "[provider]\nservices = [\"g/:1\"]\n", "provider.services: \"g/:1\" is not a service key"),
        (Role::Provider, "[provider]\napplication = \"my app\"\n", "provider.application: \"my app\" is not an application name"),
        (Role::Provider, "[provider]\nextra_keys = [\"a b\"]\n", "provider.extra_keys: \"a b\" is not a parameter name"),
        (Role::Provider, "[provider]\ntoken = \"a&b\"\n", "provider.token: \"a&b\" cannot go into a Dubbo URL"),
        (Role::Provider, "[provider.params]\nzone = \"a;b\"\n", "provider.params: \"a;b\" cannot go into a Dubbo URL"),
        (Role::Consumer, "[consumer]\nregister_services = [\"/x\"]\n", "consumer.register_services: \"/x\" is not a service key"),
        (Role::Consumer, "[consumer]\nregister_services = [\"a\", \"a\"]\n", "consumer.register_services: \"a\" is listed twice"),
        (Role::Provider, "[provider]\nservices = [\"a\", \"a\"]\n", "provider.services: \"a\" is listed twice"),
        (Role::Provider, "[provider]\nweight = 0\n", "provider.weight: must be between 1 and 10000, got 0"),
        (Role::Provider, "[provider]\nmax_concurrency = 0\n", "provider.max_concurrency: must be between 1 and 100000, got 0"),
        (Role::Provider, "[provider]\nupstream_connections = 0\n", "provider.upstream_connections: must be between 1 and 64, got 0"),
        (Role::Provider, "[provider]\nrequest_timeout_ms = 0\n", "provider.request_timeout_ms: must be between 1 and 600000, got 0"),
        (Role::Provider, "[provider]\ndrain_timeout_ms = 600001\n", "provider.drain_timeout_ms: must be between 0 and 600000, got 600001"),
        (Role::Provider, "[provider]\nmax_frame_bytes = 0\n", "provider.max_frame_bytes: must be between 1024 and 1073741824, got 0"),
    ];
    for (role, body, want) in cases {
        // Add what the role needs so that the case's own error is the first one.
        let mut text = body.to_string();
        if !body.contains("[etcd]") && !want.starts_with("etcd:") {
            text.push_str(ETCD);
        }
        let e = load_err(&text, *role);
        let line = e.to_string();
        assert!(line.starts_with(want), "{text}\n got: {line}\nwant: {want}");
        assert!(!line.contains('\n'));
        let key = want.split(':').next().unwrap();
        assert_eq!(e.key(), Some(key), "{line}");
    }
}

#[test]
fn validation_errors_carry_the_file_position() {
    let e = load_err(
        "[consumer]\nproviders = [\"10.0.0.1:1\"]\nupstream_connections = 0\n",
        Role::Consumer,
    );
    assert_eq!(
        e.to_string(),
        "consumer.upstream_connections: must be between 1 and 64, got 0 (line 3, column 1)"
    );
    assert!(e.is_in_file());
    // From an override: no position, not "in the file".
    let o = Overrides::default().with(&CONSUMER_UPSTREAM_CONNECTIONS, 0);
    let e = load_on(
        Some("[consumer]\nproviders = [\"10.0.0.1:1\"]\nupstream_connections = 3\n"),
        &o,
        Role::Consumer,
        EIGHT,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "consumer.upstream_connections: must be between 1 and 64, got 0"
    );
    assert!(!e.is_in_file());
}

#[test]
fn sections_of_the_other_role_are_checked_but_not_required() {
    // A consumer with a static provider list needs no etcd and no [provider]...
    let text = "[consumer]\nproviders = [\"10.0.0.1:30000\"]\n";
    let c = load_on(Some(text), &Overrides::default(), Role::Consumer, EIGHT).unwrap();
    assert!(c.provider.is_none());
    // ...but a present [provider] is still range-checked (not for advertise: it is not used).
    let text =
        "[consumer]\nproviders = [\"10.0.0.1:30000\"]\n[provider]\nlisten = \"0.0.0.0:1\"\nweight = 0\n";
    assert_eq!(load_err(text, Role::Consumer).key(), Some("provider.weight"));
    // validate() wants the role's section; load() adds it.
    let c = parse_toml(ETCD).unwrap();
    assert_eq!(
        c.validate_on(Role::Consumer, EIGHT).unwrap_err().key(),
        Some("consumer")
    );
    // Static provider mode.
    let c = load_on(
        Some("[provider]\nregister = false\nlisten = \"0.0.0.0:30000\"\n"),
        &Overrides::default(),
        Role::Provider,
        EIGHT,
    )
    .unwrap();
    assert!(!c.provider.unwrap().register);
}

#[test]
fn precedence_override_over_file_over_default() {
    let file = "[runtime]\ncores = [0, 1]\n\n[consumer]\nlisten = \"127.0.0.1:1111\"\nupstream_connections = 3\n\n[etcd]\nendpoints = [\"http://file:2379\"]\n";
    let none = Overrides::default();
    let (c, _) = merge(Some(file), &none, Role::Consumer).unwrap();
    let consumer = c.consumer.clone().unwrap();
    assert_eq!(consumer.listen, addr("127.0.0.1:1111")); // file
    assert_eq!(consumer.upstream_connections, 3); // file
    assert_eq!(consumer.request_timeout_ms, 5000); // default
    assert_eq!((c.runtime.cores.as_slice(), c.runtime.shards), (&[0, 1][..], 2));

    let o = Overrides::default()
        .with(&RUNTIME_CORES, [0, 1, 2])
        .with(&CONSUMER_LISTEN, "127.0.0.1:2222")
        .with(&CONSUMER_REQUEST_TIMEOUT_MS, 77)
        .with(&CONSUMER_PROVIDERS, ["10.0.0.9:30000"])
        .with(&ETCD_ENDPOINTS, ["http://flag:2379"])
        .with(&ETCD_ROOT, "/p");
    let c = load_on(Some(file), &o, Role::Consumer, EIGHT).unwrap();
    let consumer = c.consumer.unwrap();
    assert_eq!(consumer.listen, addr("127.0.0.1:2222")); // override
    assert_eq!(consumer.upstream_connections, 3); // file
    assert_eq!(consumer.request_timeout_ms, 77); // override over default
    assert_eq!(consumer.providers, [addr("10.0.0.9:30000")]);
    // shards follow the overridden cores, as they were not set anywhere
    assert_eq!(
        (c.runtime.cores.as_slice(), c.runtime.shards),
        (&[0, 1, 2][..], 3)
    );
    let etcd = c.etcd.unwrap();
    assert_eq!(
        (etcd.endpoints.as_slice(), etcd.root.as_str()),
        (&["http://flag:2379".to_owned()][..], "/p")
    );

    // An override of the other role's section applies too (it is checked, not used).
    let o = Overrides::default()
        .with(&PROVIDER_LISTEN, "10.1.1.1:3333")
        .with(&PROVIDER_UPSTREAM_CONNECTIONS, 9);
    let (c, _) = merge(Some(file), &o, Role::Provider).unwrap();
    let p = c.provider.unwrap();
    assert_eq!((p.listen, p.upstream_connections), (addr("10.1.1.1:3333"), 9));
    assert_eq!(c.consumer.unwrap().listen, addr("127.0.0.1:1111"));
}

/// Flags (clap) become overrides of their keys; env goes through clap the same way (tested on the binary).
#[test]
fn clap_args_become_overrides() {
    #[derive(Debug, Parser)]
    struct C {
        #[command(subcommand)]
        cmd: Sub,
    }
    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Consumer(ConsumerArgs),
        Provider(ProviderArgs),
    }
    let parse = |line: &str| C::try_parse_from(line.split_whitespace()).map(|c| c.cmd);
    let consumer = "x consumer --cores 0-1 --shards 4 --listen 127.0.0.1:9 --provider 10.0.0.1:1,10.0.0.2:2 \
                    --provider 10.0.0.3:3 --etcd http://a:1 --etcd-root /q --upstream-connections 5 \
                    --request-timeout-ms 6 --application web --host 10.0.0.7 --dubbo-listen 127.0.0.1:20880";
    let Ok(Sub::Consumer(a)) = parse(consumer) else {
        panic!("not a consumer")
    };
    let o = a.overrides();
    let int = |k| o.get(k).and_then(toml::Value::as_integer);
    let len = |k| o.get(k).and_then(toml::Value::as_array).map(Vec::len);
    let text = |k| o.get(k).and_then(toml::Value::as_str);
    assert_eq!(len(&RUNTIME_CORES), Some(2));
    assert_eq!(int(&RUNTIME_SHARDS), Some(4));
    assert_eq!(len(&CONSUMER_PROVIDERS), Some(3));
    assert_eq!(len(&ETCD_ENDPOINTS), Some(1));
    assert_eq!(int(&CONSUMER_UPSTREAM_CONNECTIONS), Some(5));
    assert_eq!(int(&CONSUMER_REQUEST_TIMEOUT_MS), Some(6));
    assert_eq!(text(&CONSUMER_APPLICATION), Some("web"));
    assert_eq!(text(&CONSUMER_HOST), Some("10.0.0.7"));
    assert_eq!(text(&CONSUMER_DUBBO_LISTEN), Some("127.0.0.1:20880"));
    assert_eq!(o.get(&PROVIDER_LISTEN), None);

    let provider = "x provider --advertise 10.0.0.1:30000 --dubbo 127.0.0.1:1 --serialization fastjson \
                    --service a.B,c.D --weight 300 --max-concurrency 200 --no-register";
    let Ok(Sub::Provider(a)) = parse(provider) else {
        panic!("not a provider")
    };
    let o = a.overrides();
    assert_eq!(o.get(&PROVIDER_REGISTER), Some(&toml::Value::Boolean(false)));
    let c = load_on(None, o, Role::Provider, EIGHT).unwrap();
    let p = c.provider.unwrap();
    assert_eq!(p.services, ["a.B", "c.D"]);
    assert_eq!((p.weight, p.max_concurrency, p.register), (300, Some(200), false));
    assert_eq!(p.serialization, SerializationName::FastJson);
    for bad in ["--serialization json", "--weight -1", "--host db", "--cores 3-1"] {
        assert!(parse(&format!("x provider {bad}")).is_err() || parse(&format!("x consumer {bad}")).is_err());
    }
}

/// `--help` names every key of the role's sections: flags in their own help, which is the table's, and
/// file-only keys in the text after it.
#[test]
fn help_documents_every_key() {
    use clap::{Args as _, Command};
    for (role, cmd) in [
        (
            Role::Consumer,
            ConsumerArgs::augment_args(Command::new("consumer")),
        ),
        (
            Role::Provider,
            ProviderArgs::augment_args(Command::new("provider")),
        ),
    ] {
        cmd.clone().debug_assert();
        let help = cmd.clone().render_long_help().to_string();
        let keys: Vec<_> = SECTIONS
            .iter()
            .filter(|(s, _)| ["runtime", "etcd", "admin", "log", role.section()].contains(s))
            .flat_map(|(_, keys)| keys.iter())
            .collect();
        for k in &keys {
            assert!(
                help.contains(&k.dotted()),
                "{role} --help does not mention {}:\n{help}",
                k.dotted()
            );
        }
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "print_config" || id == "help" || id == "config" {
                continue;
            }
            let long = a.get_long().unwrap();
            let key = keys
                .iter()
                .find(|k| k.flag.is_some_and(|f| f.long == long))
                .unwrap_or_else(|| panic!("{role}: --{long} is no key's flag"));
            let env = key.flag.map(|f| f.env);
            assert_eq!(a.get_env().and_then(|e| e.to_str()), env, "--{long}");
            assert_eq!(
                a.get_help().map(ToString::to_string),
                Some(super::reference::flag_help(key)),
                "--{long}"
            );
        }
    }
}

/// The field names serde's derive gives a struct (it passes them to `deserialize_struct`).
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The key table and the typed sections name the same keys, and the table's defaults make each section.
#[test]
fn key_table_matches_the_sections() {
    let names = |keys: &[super::keys::Key]| keys.iter().map(|k| k.name).collect::<Vec<_>>();
    let sorted = |mut v: Vec<&'static str>| {
        v.sort_unstable();
        v
    };
    for (section, fields) in [
        ("runtime", struct_fields::<RawRuntime>()),
        ("consumer", struct_fields::<ConsumerConfig>()),
        ("provider", struct_fields::<ProviderConfig>()),
        ("etcd", struct_fields::<EtcdSection>()),
        ("admin", struct_fields::<super::AdminConfig>()),
        ("log", struct_fields::<super::LogConfig>()),
    ] {
        assert_eq!(
            sorted(names(keys_of(section))),
            sorted(fields.to_vec()),
            "[{section}]"
        );
    }
    assert_eq!(
        sorted(names(SERVICE_POLICY)),
        sorted(struct_fields::<CallPolicyConfig>().to_vec())
    );
    // Every section made of its defaults alone is valid (with what the role needs).
    let c = parse_toml("[consumer]\n[provider]\n[etcd]\nendpoints = [\"http://e:1\"]\n").unwrap();
    c.validate_on(Role::Provider, EIGHT).unwrap();
    c.validate_on(Role::Consumer, EIGHT).unwrap();
}

#[test]
fn etcd_tls_and_credentials_rules() {
    let base = "[etcd]\nendpoints = [\"https://a:1\", \"https://b:2\"]\n";
    let cases: &[(&str, &str)] = &[
        (
            "[etcd]\nendpoints = [\"http://a:1\", \"https://etcd:2379\"]\n",
            "etcd.endpoints: mixes http:// and https://",
        ),
        (base, "etcd.ca_file: required by https:// endpoints"),
        (
            "[etcd]\nendpoints = [\"http://a:1\"]\nca_file = \"/ca.pem\"\n",
            "etcd.endpoints: are http:// but etcd TLS files are set",
        ),
        (
            "ca_file = \"/ca.pem\"\ncert_file = \"/c.pem\"\n",
            "etcd.key_file: must be set together with etcd.cert_file",
        ),
        (
            "ca_file = \"/ca.pem\"\nkey_file = \"/k.pem\"\n",
            "etcd.cert_file: must be set together with etcd.key_file",
        ),
        (
            "ca_file = \"/ca.pem\"\nuser = \"agent\"\n",
            "etcd.password: required with etcd.user",
        ),
        (
            "ca_file = \"/ca.pem\"\npassword = \"pw\"\n",
            "etcd.user: required with etcd.password",
        ),
        (
            "ca_file = \"/ca.pem\"\nuser = \"a b\"\npassword = \"pw\"\n",
            "etcd.user: must be a non-empty name",
        ),
        (
            "ca_file = \"/ca.pem\"\nuser = \"a\"\npassword = \"<redacted>\"\n",
            "etcd.password: is the <redacted> placeholder",
        ),
    ];
    for (body, want) in cases {
        let text = if body.starts_with("[etcd]") {
            body.to_string()
        } else {
            format!("{base}{body}")
        };
        let e = load_err(&text, Role::Consumer);
        assert!(e.to_string().starts_with(want), "{text}\n got: {e}\nwant: {want}");
        assert_eq!(e.key(), Some(want.split(':').next().unwrap()), "{e}");
    }
    let full = format!(
        "{base}ca_file = \"/ca.pem\"\ncert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\nuser = \"agent\"\npassword = \"s3cret\"\n"
    );
    let c = load_on(Some(&full), &Overrides::default(), Role::Consumer, EIGHT).unwrap();
    let e = c.etcd.as_ref().unwrap();
    assert_eq!(e.password.as_ref().unwrap().expose(), "s3cret");
    assert_eq!(e.ca_file.as_deref(), Some(Path::new("/ca.pem")));
    // Neither Debug nor --print-config shows the password.
    assert!(!format!("{c:?}").contains("s3cret"));
    let printed = c.to_toml().unwrap();
    assert!(
        printed.contains("password = \"<redacted>\"") && !printed.contains("s3cret"),
        "{printed}"
    );
    // Plain http without TLS files or credentials stays valid.
    load_on(
        Some("[etcd]\nendpoints = [\"http://a:1\"]\n"),
        &Overrides::default(),
        Role::Consumer,
        EIGHT,
    )
    .unwrap();
}

#[test]
fn named_values_are_enums_read_once() {
    assert_eq!(
        err_of("[consumer]\nbalancer = \"fastest\"\n"),
        "consumer.balancer: must be \"auto\", \"adaptive\", \"weighted_random\", \"round_robin\", \
         \"least_active\", \"shortest_response\" or \"consistent_hash\", got \"fastest\" (line 2, column 1)"
    );
    assert_eq!(
        err_of("[provider]\nserialization = \"json\"\n"),
        "provider.serialization: must be \"hessian2\" or \"fastjson\", got \"json\" (line 2, column 1)"
    );
    assert_eq!(
        err_of("[provider]\nserialization = 1\n"),
        "provider.serialization: invalid type: integer `1`, expected a string (line 2, column 1)"
    );
    let c = parse_toml("[consumer]\nbalancer = \"least_active\"\n").unwrap();
    assert_eq!(c.consumer.unwrap().balancer, BalancerName::LeastActive);
}

#[test]
fn consumer_identity_keys() {
    let text = "[consumer]\nproviders = [\"10.0.0.1:1\"]\napplication = \"orders\"\nhost = \"10.1.2.3\"\n";
    let c = load_on(Some(text), &Overrides::default(), Role::Consumer, EIGHT).unwrap();
    let consumer = c.consumer.unwrap();
    assert_eq!(consumer.application.as_deref(), Some("orders"));
    assert_eq!(consumer.host, Some("10.1.2.3".parse().unwrap()));
    let bad = [
        (
            "application = \"my app\"\n",
            "consumer.application: \"my app\" is not an application name",
        ),
        (
            "host = \"0.0.0.0\"\n",
            "consumer.host: 0.0.0.0 cannot be advertised",
        ),
        (
            "host = \"db.local\"\n",
            "consumer.host: invalid IP address syntax, got \"db.local\"",
        ),
    ];
    for (line, want) in bad {
        let text = format!("[consumer]\nproviders = [\"10.0.0.1:1\"]\n{line}");
        let e = load_err(&text, Role::Consumer).to_string();
        assert!(e.starts_with(want), "{e}");
    }
    // From flags.
    let o = Overrides::default()
        .with(&CONSUMER_APPLICATION, "web")
        .with(&CONSUMER_HOST, "10.0.0.9")
        .with(&CONSUMER_PROVIDERS, ["10.0.0.1:1"]);
    let c = load_on(None, &o, Role::Consumer, EIGHT)
        .unwrap()
        .consumer
        .unwrap();
    assert_eq!(c.application.as_deref(), Some("web"));
    assert_eq!(c.host, Some("10.0.0.9".parse().unwrap()));
}

#[test]
fn service_policy_ranges_come_from_the_table() {
    let text =
        "[consumer]\nproviders = [\"10.0.0.1:1\"]\n[consumer.services.\"a.B\".methods.get.methods.x]\n";
    assert_eq!(
        load_err(text, Role::Consumer).to_string(),
        "consumer.services.a.B.methods.get.methods: a method has no methods"
    );
    let text =
        "[consumer]\nproviders = [\"10.0.0.1:1\"]\n[consumer.services.\"a.B\".methods.get]\nretries = 11\n";
    assert_eq!(
        load_err(text, Role::Consumer).to_string(),
        "consumer.services.a.B.methods.get.retries: must be between 0 and 10, got 11"
    );
    let text = "[consumer]\nproviders = [\"10.0.0.1:1\"]\nheartbeat_ms = 50\n";
    assert_eq!(
        load_err(text, Role::Consumer).to_string(),
        "consumer.heartbeat_ms: must be between 100 and 600000, got 50 (line 3, column 1)"
    );
    let text = "[consumer]\nproviders = [\"10.0.0.1:1\"]\nheartbeat_ms = 0\n";
    load_on(Some(text), &Overrides::default(), Role::Consumer, EIGHT).unwrap();
}

#[test]
fn printed_config_parses_back_to_the_same() {
    let file = "[runtime]\ncores = [0]\n[provider]\nadvertise = \"10.0.0.1:30000\"\nmax_concurrency = 200\n[consumer]\nproviders = [\"10.0.0.1:30000\"]\n[etcd]\nendpoints = [\"http://e:2379\"]\n[consumer.services.\"a.B\"]\nretries = 1\n[consumer.services.\"a.B\".methods.get]\nrate_limit = 5\n\n";
    let c = load_on(Some(file), &Overrides::default(), Role::Provider, EIGHT).unwrap();
    let text = c.to_toml().unwrap();
    assert_eq!(parse_toml(&text).unwrap(), c, "{text}");
}

/// The shipped examples: each parses, validates for its role on a machine with as many CPUs as it
/// pins, and sets what its name says.
#[test]
fn deploy_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let role = if name.starts_with("consumer") {
            Role::Consumer
        } else {
            Role::Provider
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let c = load_on(Some(&text), &Overrides::default(), role, EIGHT)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want_cores = match name.as_str() {
            "consumer-2core" => 2,
            "consumer-8core" | "provider-8core" => 8,
            "provider-small" => 1,
            "provider-medium" => 2,
            "provider-large" => 3,
            other => panic!("unexpected example {other}"),
        };
        assert_eq!(c.runtime.cores.len(), want_cores, "{name}");
        assert_eq!(c.runtime.shards, want_cores, "{name}");
        if role == Role::Provider {
            let p = c.provider.unwrap();
            let want_weight = match name.as_str() {
                "provider-small" => 100,
                "provider-medium" => 200,
                "provider-large" => 300,
                _ => 800,
            };
            assert_eq!(p.weight, want_weight, "{name}");
            assert_eq!(p.max_concurrency, Some(200), "{name}");
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "consumer-2core",
            "consumer-8core",
            "provider-8core",
            "provider-large",
            "provider-medium",
            "provider-small"
        ]
    );
}

/// `provider.register_mode` takes Dubbo's three names (file, flag, environment's path), nothing else; the
/// application-level roots are checked like `etcd.root`.
#[test]
fn register_mode_and_application_level_roots() {
    let provider = |text: &str| {
        load_on(
            Some(&format!("{ETCD}{text}")),
            &Overrides::default(),
            Role::Provider,
            EIGHT,
        )
        .map(|c| c.provider.unwrap())
    };
    for (name, mode) in [
        ("interface", RegisterModeName::Interface),
        ("instance", RegisterModeName::Instance),
        ("all", RegisterModeName::All),
    ] {
        let p = provider(&format!(
            "[provider]\nregister_mode = \"{name}\"\nwrite_mapping = false\n"
        ))
        .unwrap();
        assert_eq!((p.register_mode, p.write_mapping), (mode, false));
    }
    assert_eq!(
        provider("[provider]\nregister_mode = \"INSTANCE\"\n")
            .unwrap_err()
            .to_string(),
        "provider.register_mode: must be \"all\", \"interface\" or \"instance\", got \"INSTANCE\" \
         (line 4, column 1)"
    );
    let e = provider("services_root = \"services\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("etcd.services_root: must start with '/'"), "{e}");
    let e = provider("mapping_root = \"/dubbo/\"\n").unwrap_err().to_string();
    assert!(e.starts_with("etcd.mapping_root: "), "{e}");
    let c = load_on(
        Some(&format!(
            "{ETCD}services_root = \"/a/services\"\nmapping_root = \"/meta\"\n"
        )),
        &Overrides::default(),
        Role::Provider,
        EIGHT,
    )
    .unwrap();
    let e = c.etcd.unwrap();
    assert_eq!(
        (e.services_root.as_str(), e.mapping_root.as_str()),
        ("/a/services", "/meta")
    );

    let flag = Overrides::default().with(&PROVIDER_REGISTER_MODE, "instance");
    let c = load_on(Some(ETCD), &flag, Role::Provider, EIGHT).unwrap();
    assert_eq!(c.provider.unwrap().register_mode, RegisterModeName::Instance);
    let flag = Overrides::default().with(&PROVIDER_REGISTER_MODE, "both");
    assert!(load_on(Some(ETCD), &flag, Role::Provider, EIGHT).is_err());
}
