//! TLS between the agents (rustls): server authentication against a CA, the server name check, and
//! mutual TLS. Certificates are made for each run with rcgen; loopback only.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use mesh_testkit::process::free_port;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

mod common;
use common::*;

/// A CA (certificate, key) and a leaf certificate for `names`, signed by it, as PEM files in `dir`.
struct Pki {
    ca: String,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        Pki {
            ca: ca.to_string_lossy().into_owned(),
            ca_cert,
            ca_key,
        }
    }

    /// Writes `<name>.pem` and `<name>.key` for a certificate valid for `names`; returns their paths.
    fn leaf(&self, dir: &Path, name: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.to_string_lossy().into_owned(), k.to_string_lossy().into_owned())
    }
}

fn toml_path(p: &str) -> String {
    format!("{p:?}")
}

#[test]
fn agents_talk_tls_and_refuse_what_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let other = Pki::new(dir.path(), "other");
    let (pcert, pkey) = pki.leaf(dir.path(), "provider", &["127.0.0.1", "provider.mesh"]);
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let pa = free_port().unwrap();
    let pcfg = dir.path().join("provider.toml");
    std::fs::write(
        &pcfg,
        format!(
            "[provider]\ntls_cert = {}\ntls_key = {}\n",
            toml_path(&pcert),
            toml_path(&pkey)
        ),
    )
    .unwrap();
    let _provider = provider_agent(
        pa,
        sim_port,
        &["--no-register", "--config", pcfg.to_str().unwrap()],
    );
    let p = addr(pa).to_string();

    let consumer_with = |name: &str, text: String| {
        let port = free_port().unwrap();
        let f = dir.path().join(format!("{name}.toml"));
        std::fs::write(&f, text).unwrap();
        let g = consumer_agent(port, &["--provider", &p, "--config", f.to_str().unwrap()]);
        (g, port)
    };
    // Verified by the IP address (an IP SAN), and by a DNS name.
    let (_ok, ok) = consumer_with("ok", format!("[consumer]\ntls_ca = {}\n", toml_path(&pki.ca)));
    assert_eq!(
        call(ok, IFACE, "tls"),
        (200, mesh_dubbo::java_string_hash("tls").to_string())
    );
    let (_named, named) = consumer_with(
        "named",
        format!(
            "[consumer]\ntls_ca = {}\ntls_server_name = \"provider.mesh\"\n",
            toml_path(&pki.ca)
        ),
    );
    assert_eq!(call(named, IFACE, "n").0, 200);
    // A certificate from another CA, a name the certificate does not have, and plain TCP to a TLS port:
    // clear errors, no hang.
    let (_wrong_ca, wrong_ca) = consumer_with(
        "wrong-ca",
        format!("[consumer]\ntls_ca = {}\n", toml_path(&other.ca)),
    );
    let (status, body) = call(wrong_ca, IFACE, "x");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("TLS handshake"), "{body}");
    let (_wrong_name, wrong_name) = consumer_with(
        "wrong-name",
        format!(
            "[consumer]\ntls_ca = {}\ntls_server_name = \"elsewhere.mesh\"\n",
            toml_path(&pki.ca)
        ),
    );
    let (status, body) = call(wrong_name, IFACE, "x");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("TLS handshake"), "{body}");
    let (_plain, plain) = consumer_with("plain", "[consumer]\neject_failures = 0\n".to_owned());
    let (status, body) = call(plain, IFACE, "x");
    assert!(status == 502 || status == 503, "{status} {body}");
    // The verified consumer is still served.
    assert_eq!(call(ok, IFACE, "again").0, 200);
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mesh");
    let other = Pki::new(dir.path(), "other");
    let (pcert, pkey) = pki.leaf(dir.path(), "provider", &["127.0.0.1"]);
    let (ccert, ckey) = pki.leaf(dir.path(), "consumer", &["consumer.mesh"]);
    let (rogue_cert, rogue_key) = other.leaf(dir.path(), "rogue", &["consumer.mesh"]);
    let (_sim, sim_port) = sim(&["--latency-ms", "1"]);
    let pa = free_port().unwrap();
    let pcfg = dir.path().join("provider.toml");
    std::fs::write(
        &pcfg,
        format!(
            "[provider]\ntls_cert = {}\ntls_key = {}\ntls_client_ca = {}\n",
            toml_path(&pcert),
            toml_path(&pkey),
            toml_path(&pki.ca)
        ),
    )
    .unwrap();
    let _provider = provider_agent(
        pa,
        sim_port,
        &["--no-register", "--config", pcfg.to_str().unwrap()],
    );
    let p = addr(pa).to_string();
    let consumer_with = |name: &str, text: String| {
        let port = free_port().unwrap();
        let f = dir.path().join(format!("{name}.toml"));
        std::fs::write(&f, text).unwrap();
        (
            consumer_agent(port, &["--provider", &p, "--config", f.to_str().unwrap()]),
            port,
        )
    };
    let ca = toml_path(&pki.ca);
    let (_good, good) = consumer_with(
        "good",
        format!(
            "[consumer]\ntls_ca = {ca}\ntls_cert = {}\ntls_key = {}\n",
            toml_path(&ccert),
            toml_path(&ckey)
        ),
    );
    assert_eq!(call(good, IFACE, "m").0, 200);
    for (name, text) in [
        (
            "anonymous",
            format!("[consumer]\ntls_ca = {ca}\neject_failures = 0\n"),
        ),
        (
            "rogue",
            format!(
                "[consumer]\ntls_ca = {ca}\ntls_cert = {}\ntls_key = {}\neject_failures = 0\n",
                toml_path(&rogue_cert),
                toml_path(&rogue_key)
            ),
        ),
    ] {
        let (_g, port) = consumer_with(name, text);
        let (status, body) = call(port, IFACE, "x");
        assert!(status == 502 || status == 503, "{name}: {status} {body}");
    }
    assert_eq!(call(good, IFACE, "again").0, 200);
}

#[test]
fn bad_tls_settings_stop_the_agent_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        "[consumer]\nproviders = [\"127.0.0.1:1\"]\ntls_ca = \"/nonexistent/ca.pem\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-agent"))
        .args(["consumer", "--config", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("consumer.tls_ca") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
    std::fs::write(&f, "[provider]\nregister = false\ntls_cert = \"/x.pem\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-agent"))
        .args(["provider", "--config", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("provider.tls_key"), "{err}");
}
