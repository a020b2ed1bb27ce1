//! Runs the built `mesh-agent consumer` / `provider` on config files, environment variables and flags:
//! precedence, `--print-config`, error lines, and the shipped examples in `deploy/config`.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mesh-agent");

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` and exactly the `MESH_*` variables in `env` (any inherited ones removed).
fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MESH_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run mesh-agent");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// Expects success and returns stdout parsed as TOML.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let r = run(args, env);
    assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
    assert_eq!(r.stderr, "");
    r.stdout
        .parse()
        .unwrap_or_else(|e| panic!("stdout is not TOML: {e}\n{}", r.stdout))
}

/// Expects exit 2 with exactly one line on stderr, and returns it without `error: ` and the newline.
fn error_line(args: &[&str], env: &[(&str, &str)]) -> String {
    let r = run(args, env);
    assert_eq!(r.code, Some(2), "{args:?}: stdout {}", r.stdout);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr.lines().count(), 1, "not one line: {}", r.stderr);
    r.stderr
        .strip_prefix("error: ")
        .unwrap_or_else(|| panic!("no `error: ` prefix: {}", r.stderr))
        .trim_end()
        .to_owned()
}

fn get<'a>(t: &'a toml::Table, dotted: &str) -> &'a toml::Value {
    let (section, key) = dotted.split_once('.').expect("dotted key");
    t.get(section)
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("{dotted} missing in {t}"))
}

/// A file in a fresh temporary directory (removed on drop).
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("mesh-agent-config-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write temp file");
        TempFile { dir, path }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const FILE: &str = r#"
[runtime]
cores = [0]

[consumer]
listen = "127.0.0.1:1111"
upstream_connections = 3
request_timeout_ms = 3000

[etcd]
endpoints = ["http://file:2379"]
root = "/from/file"
"#;

#[test]
fn consumer_print_config_merges_flag_env_file_default() {
    let f = TempFile::new("merge", FILE);
    let t = print_config(
        &[
            "consumer",
            "--config",
            f.path(),
            "--print-config",
            "--listen",
            "127.0.0.1:3333",
            "--etcd",
            "http://flag:2379",
        ],
        &[
            ("MESH_LISTEN", "127.0.0.1:2222"),
            ("MESH_UPSTREAM_CONNECTIONS", "7"),
            ("MESH_ETCD", "http://env-a:2379,http://env-b:2379"),
            ("MESH_ETCD_ROOT", "/from/env"),
        ],
    );
    assert_eq!(get(&t, "consumer.listen").as_str(), Some("127.0.0.1:3333")); // flag > env > file
    assert_eq!(get(&t, "consumer.upstream_connections").as_integer(), Some(7)); // env > file
    assert_eq!(get(&t, "consumer.request_timeout_ms").as_integer(), Some(3000)); // file > default
    assert_eq!(get(&t, "consumer.connect_timeout_ms").as_integer(), Some(1000)); // default
    assert_eq!(
        get(&t, "etcd.endpoints").as_array().map(Vec::len),
        Some(1),
        "flag replaces env's list"
    );
    assert_eq!(get(&t, "etcd.root").as_str(), Some("/from/env"));
    assert_eq!(get(&t, "runtime.shards").as_integer(), Some(1));
    assert!(t.get("provider").is_none());

    // The file named by MESH_CONFIG, list variables with spaces and empty items.
    let t = print_config(
        &["consumer", "--print-config"],
        &[
            ("MESH_CONFIG", f.path()),
            ("MESH_PROVIDERS", " 10.0.0.1:30000, 10.0.0.2:30000,"),
            ("MESH_SHARDS", " 3 "),
        ],
    );
    assert_eq!(
        get(&t, "consumer.providers"),
        &toml::Value::Array(vec!["10.0.0.1:30000".into(), "10.0.0.2:30000".into()])
    );
    assert_eq!(get(&t, "consumer.listen").as_str(), Some("127.0.0.1:1111"));
    assert_eq!(get(&t, "runtime.shards").as_integer(), Some(3));
}

#[test]
fn provider_print_config_from_flags_and_env_only() {
    let t = print_config(
        &[
            "provider",
            "--print-config",
            "--cores",
            "0",
            "--service",
            "a.B",
            "--service",
            "c.D,e.F",
            "--weight",
            "300",
        ],
        &[
            ("MESH_ETCD", "http://127.0.0.1:2379"),
            ("MESH_LISTEN", "0.0.0.0:30000"),
            ("MESH_ADVERTISE", "10.0.0.5:30000"),
            ("MESH_DUBBO", "127.0.0.1:20881"),
            ("MESH_SERIALIZATION", "fastjson"),
            ("MESH_SERVICES", "ignored.Because.FlagWins"),
            ("MESH_WEIGHT", "200"),
            ("MESH_MAX_CONCURRENCY", "200"),
        ],
    );
    assert_eq!(get(&t, "provider.listen").as_str(), Some("0.0.0.0:30000"));
    assert_eq!(get(&t, "provider.advertise").as_str(), Some("10.0.0.5:30000"));
    assert_eq!(get(&t, "provider.dubbo").as_str(), Some("127.0.0.1:20881"));
    assert_eq!(get(&t, "provider.serialization").as_str(), Some("fastjson"));
    assert_eq!(
        get(&t, "provider.services"),
        &toml::Value::Array(vec!["a.B".into(), "c.D".into(), "e.F".into()])
    );
    assert_eq!(get(&t, "provider.weight").as_integer(), Some(300));
    assert_eq!(get(&t, "provider.max_concurrency").as_integer(), Some(200));
    assert_eq!(get(&t, "runtime.cores").as_array().map(Vec::len), Some(1));
}

#[test]
fn file_errors_are_one_line_naming_file_and_key() {
    let f = TempFile::new("typo", "[consumer]\nlistn = \"127.0.0.1:1\"\n");
    assert_eq!(
        error_line(&["consumer", "--config", f.path(), "--print-config"], &[]),
        format!(
            "{}: unknown key `consumer.listn` (line 2, column 1); did you mean `consumer.listen`?",
            f.path()
        )
    );

    let f = TempFile::new(
        "range",
        "[consumer]\nproviders = [\"10.0.0.1:30000\"]\nupstream_connections = 0\n",
    );
    assert_eq!(
        error_line(&["consumer", "--config", f.path()], &[]),
        format!(
            "{}: consumer.upstream_connections: must be between 1 and 64, got 0 (line 3, column 1)",
            f.path()
        )
    );
    // The same value from the environment: no file, no position.
    assert_eq!(
        error_line(
            &["consumer", "--provider", "10.0.0.1:30000"],
            &[("MESH_UPSTREAM_CONNECTIONS", "0")]
        ),
        "consumer.upstream_connections: must be between 1 and 64, got 0"
    );

    let f = TempFile::new("type", "[provider]\nlisten = \"nowhere\"\n");
    assert_eq!(
        error_line(&["provider", "--config", f.path()], &[]),
        format!(
            "{}: provider.listen: invalid socket address syntax, got \"nowhere\" (line 2, column 1)",
            f.path()
        )
    );

    let f = TempFile::new("syntax", "[consumer\nlisten = 1\n");
    let line = error_line(&["consumer", "--config", f.path()], &[]);
    assert!(
        line.starts_with(&format!(
            "{}: TOML syntax error (line 1, column 10): invalid table header",
            f.path()
        )),
        "{line}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let missing = std::env::temp_dir().join("mesh-agent-no-such-dir/consumer.toml");
    let missing = missing.to_str().expect("utf-8 path");
    assert_eq!(
        error_line(&["consumer", "--config", missing], &[]),
        format!("cannot read config file {missing}: No such file or directory (os error 2)")
    );
    assert_eq!(
        error_line(&["provider"], &[("MESH_CONFIG", missing)]),
        format!("cannot read config file {missing}: No such file or directory (os error 2)")
    );
}

#[test]
fn roles_need_a_registry_unless_static() {
    let line = error_line(&["provider"], &[]);
    assert!(line.starts_with("etcd: required for the provider role"), "{line}");
    let line = error_line(&["consumer"], &[("MESH_PROVIDERS", ""), ("MESH_ETCD", "")]);
    assert!(
        line.starts_with("etcd: required when consumer.providers is empty"),
        "{line}"
    );
    // Static provider mode: no etcd; 0.0.0.0 is fine as it is not advertised.
    let t = print_config(
        &[
            "provider",
            "--print-config",
            "--no-register",
            "--listen",
            "0.0.0.0:30000",
        ],
        &[],
    );
    assert_eq!(get(&t, "provider.register").as_bool(), Some(false));
    for yes in ["true", "1", "yes"] {
        let t = print_config(&["provider", "--print-config"], &[("MESH_NO_REGISTER", yes)]);
        assert_eq!(get(&t, "provider.register").as_bool(), Some(false));
    }
    let line = error_line(&["provider"], &[("MESH_NO_REGISTER", "false")]);
    assert!(line.starts_with("etcd: required"), "{line}");
    let line = error_line(
        &[
            "provider",
            "--etcd",
            "http://127.0.0.1:2379",
            "--listen",
            "0.0.0.0:30000",
        ],
        &[],
    );
    assert!(
        line.starts_with("provider.advertise: 0.0.0.0 cannot be advertised"),
        "{line}"
    );
}

#[test]
fn a_listen_address_in_use_fails_at_start_naming_it() {
    // Held by a socket without SO_REUSEPORT, so the shards' listeners cannot join it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr").to_string();
    let args = [
        "consumer",
        "--provider",
        "127.0.0.1:1",
        "--listen",
        &addr,
        "--cores",
        "0",
        "--admin-listen",
        "off",
    ];
    // The configuration loaded, the role fails to start: logged at info, then the one error line.
    let r = run(&args, &[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert!(
        lines[0].contains("INFO") && lines[0].contains("configuration loaded"),
        "{}",
        r.stderr
    );
    let line = lines[1].strip_prefix("error: ").expect("error line");
    assert!(line.contains(&addr) || line.contains("in use"), "{line}");
    // Warnings only: just the error line.
    let line = error_line(&args, &[("MESH_LOG", "warn")]);
    assert!(line.contains(&addr) || line.contains("in use"), "{line}");
}

#[test]
fn log_lines_as_json_on_request_and_a_bad_filter_stops_the_start() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr").to_string();
    let args = [
        "consumer",
        "--provider",
        "127.0.0.1:1",
        "--listen",
        &addr,
        "--cores",
        "0",
        "--admin-listen",
        "off",
    ];
    for (flag, env) in [(true, false), (false, true)] {
        let mut argv = args.to_vec();
        let mut vars = vec![("MESH_LOG", "info,mesh_agent=debug")];
        if flag {
            argv.extend(["--log-format", "json"]);
        }
        if env {
            vars.push(("MESH_LOG_FORMAT", "json"));
        }
        let r = run(&argv, &vars);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        let first = r.stderr.lines().next().expect("a log line");
        let event: serde_json::Value =
            serde_json::from_str(first).unwrap_or_else(|e| panic!("not a JSON line ({e}): {}", r.stderr));
        assert_eq!(event["level"], "INFO", "{first}");
        assert_eq!(event["target"], "mesh_agent", "{first}");
        assert_eq!(event["fields"]["message"], "configuration loaded", "{first}");
        assert_eq!(event["fields"]["role"], "consumer", "{first}");
        assert!(
            r.stderr.lines().last().expect("error").starts_with("error: "),
            "{}",
            r.stderr
        );
    }
    let t = print_config(
        &["consumer", "--print-config", "--provider", "10.0.0.1:1"],
        &[("MESH_LOG_FORMAT", "json")],
    );
    assert_eq!(get(&t, "log.format").as_str(), Some("json"));
    let line = error_line(
        &["consumer", "--provider", "10.0.0.1:1", "--log-format", "xml"],
        &[],
    );
    assert!(line.contains("log.format") && line.contains("xml"), "{line}");
    let line = error_line(&args, &[("MESH_LOG", "info,mesh_registry=loud")]);
    assert!(
        line.starts_with("MESH_LOG: \"info,mesh_registry=loud\" is not a log filter"),
        "{line}"
    );
}

/// Every shipped example loads in the binary for its role. The CPUs are overridden with `--cores 0` (the
/// machine running the tests may have fewer CPUs than the box an example is for; the unit test
/// `deploy_examples_load` validates them unchanged against an 8-CPU machine), which also exercises a flag
/// over a file.
#[test]
fn deploy_examples_print() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/config") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let role = if name.starts_with("consumer") {
            "consumer"
        } else {
            "provider"
        };
        let file: toml::Table = std::fs::read_to_string(&path)
            .expect("read example")
            .parse()
            .expect("example is TOML");
        let p = path.to_str().expect("utf-8 path");
        let t = print_config(&[role, "--config", p, "--cores", "0", "--print-config"], &[]);
        assert_eq!(
            get(&t, "runtime.cores").as_array().map(Vec::len),
            Some(1),
            "{name}"
        );
        // Everything else the file says is what is printed.
        for (section, keys) in &file {
            for (key, value) in keys.as_table().expect("sections are tables") {
                if section == "runtime" && key == "cores" {
                    continue;
                }
                let printed = get(&t, &format!("{section}.{key}"));
                assert_eq!(printed, value, "{name}: {section}.{key}");
            }
        }
        count += 1;
    }
    assert_eq!(count, 6, "six examples in {}", dir.display());
}

#[test]
fn consumer_identity_from_flags_and_env() {
    let t = print_config(
        &[
            "consumer",
            "--print-config",
            "--provider",
            "10.0.0.1:30000",
            "--host",
            "10.1.2.3",
        ],
        &[("MESH_APPLICATION", "orders")],
    );
    assert_eq!(get(&t, "consumer.host").as_str(), Some("10.1.2.3"));
    assert_eq!(get(&t, "consumer.application").as_str(), Some("orders"));
    let line = error_line(
        &["consumer", "--provider", "10.0.0.1:30000"],
        &[("MESH_HOST", "0.0.0.0")],
    );
    assert!(
        line.starts_with("consumer.host: 0.0.0.0 cannot be advertised"),
        "{line}"
    );
}

#[test]
fn https_etcd_needs_a_ca_and_the_password_is_never_printed() {
    let line = error_line(&["provider", "--etcd", "https://127.0.0.1:2379"], &[]);
    assert!(
        line.starts_with("etcd.ca_file: required by https:// endpoints"),
        "{line}"
    );
    let r = run(
        &[
            "consumer",
            "--etcd",
            "https://10.0.0.1:2379,https://10.0.0.2:2379",
            "--etcd-ca-file",
            "/etc/etcd/ca.pem",
            "--etcd-user",
            "agent",
            "--print-config",
        ],
        &[("MESH_ETCD_PASSWORD", "s3cret-from-env")],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stdout.contains("s3cret-from-env") && !r.stderr.contains("s3cret-from-env"));
    let t: toml::Table = r.stdout.parse().unwrap();
    assert_eq!(get(&t, "etcd.password").as_str(), Some("<redacted>"));
    assert_eq!(get(&t, "etcd.user").as_str(), Some("agent"));
    assert_eq!(get(&t, "etcd.ca_file").as_str(), Some("/etc/etcd/ca.pem"));
    // --help does not show the variable's value either.
    let help = run(
        &["consumer", "--help"],
        &[("MESH_ETCD_PASSWORD", "s3cret-from-env")],
    );
    assert!(help.stdout.contains("--etcd-password") && !help.stdout.contains("s3cret-from-env"));
}

#[test]
fn an_unknown_balancer_names_the_key_and_the_choices() {
    let f = TempFile::new("balancer", "[consumer]\nbalancer = \"fast\"\n");
    let line = error_line(&["consumer", "--config", f.path()], &[]);
    assert!(
        line.ends_with(
            "consumer.balancer: must be \"auto\", \"adaptive\", \"weighted_random\", \"round_robin\", \
             \"least_active\", \"shortest_response\" or \"consistent_hash\", got \"fast\" (line 2, column 1)"
        ),
        "{line}"
    );
}

/// `--help` carries each flag's range and default and the file-only keys, from the key table.
#[test]
fn help_shows_ranges_defaults_and_file_keys() {
    let r = run(&["consumer", "--help"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for want in [
        "connections per shard per provider agent; 1..=64 [TOML: consumer.upstream_connections; default: 2]",
        "[env: MESH_HOST=]",
        "consumer.request_read_timeout_ms",
        "Precedence: flag > environment variable > config file > default.",
    ] {
        assert!(r.stdout.contains(want), "no {want:?} in\n{}", r.stdout);
    }
}
