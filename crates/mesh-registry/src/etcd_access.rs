//! How the agent proves who it is to etcd and checks who etcd is: TLS (a CA, optionally a client
//! certificate) and user/password authentication. The files are read and checked when a registry thread
//! starts ([`EtcdTls::check`], so a missing or wrong file is an error at start that names the file) and
//! read again at every connect (so certificates rotated on disk are picked up at the next reconnect).

use std::fmt;
use std::path::{Path, PathBuf};

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::RegistryError;

/// TLS to etcd: `https://` endpoints, the server certificates checked against `ca_file`, and a client
/// certificate when etcd runs with `--client-cert-auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file with the CA certificate(s) that signed the etcd servers' certificates. Required: the
    /// agent does not trust the system's roots for etcd (etcd clusters run on a private CA).
    pub ca_file: PathBuf,
    /// PEM file with this agent's client certificate (chain); set together with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl EtcdTls {
    /// TLS with a CA and no client certificate.
    pub fn with_ca(ca_file: impl Into<PathBuf>) -> Self {
        EtcdTls {
            ca_file: ca_file.into(),
            cert_file: None,
            key_file: None,
        }
    }

    /// The same, with a client certificate and its key.
    pub fn with_client_cert(mut self, cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        self.cert_file = Some(cert_file.into());
        self.key_file = Some(key_file.into());
        self
    }

    /// Reads every file and checks that it holds what it should (certificates, a private key), so a
    /// wrong path or a swapped file is reported at start with the file's name.
    pub fn check(&self) -> Result<(), RegistryError> {
        self.read().map(drop)
    }

    /// The client's TLS options, from the files as they are now.
    pub(crate) fn options(&self) -> Result<TlsOptions, RegistryError> {
        let files = self.read()?;
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(files.ca));
        if let Some((cert, key)) = files.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Ok(tls)
    }

    fn read(&self) -> Result<TlsFiles, RegistryError> {
        let ca = read_certificates("etcd CA file", &self.ca_file)?;
        let identity = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((
                read_certificates("etcd client certificate file", cert)?,
                read_private_key("etcd client key file", key)?,
            )),
            (Some(_), None) | (None, Some(_)) => {
                return Err(RegistryError::Config(
                    "the etcd client certificate and key files go together: set both or neither".into(),
                ))
            }
        };
        Ok(TlsFiles { ca, identity })
    }
}

/// The PEM text of the files, checked.
struct TlsFiles {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, RegistryError> {
    std::fs::read(path)
        .map_err(|e| RegistryError::Config(format!("{what} {}: cannot read it: {e}", path.display())))
}

/// The file's bytes, once they are known to hold at least one PEM certificate and nothing unreadable.
fn read_certificates(what: &str, path: &Path) -> Result<Vec<u8>, RegistryError> {
    let pem = read_file(what, path)?;
    let bad = |reason: String| RegistryError::Config(format!("{what} {}: {reason}", path.display()));
    let mut count = 0usize;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(bad(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()
        ));
    }
    Ok(pem)
}

/// The file's bytes, once they are known to hold a PEM private key.
fn read_private_key(what: &str, path: &Path) -> Result<Vec<u8>, RegistryError> {
    let pem = read_file(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        RegistryError::Config(format!(
            "{what} {}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        ))
    })?;
    Ok(pem)
}

/// An etcd user and its password (etcd's `auth enable`). `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    /// The etcd user.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl EtcdAuth {
    /// A user and password.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        EtcdAuth {
            user: user.into(),
            password: password.into(),
        }
    }

    /// Adds the credentials to `options`; the client then authenticates at connect and, when the token
    /// expires (etcd's `--auth-token-ttl`, 5 min by default), again.
    pub(crate) fn apply(&self, options: ConnectOptions) -> ConnectOptions {
        options
            .with_user(self.user.clone(), self.password.clone())
            .with_auto_token_refresh(true)
    }
}

impl fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Whether an endpoint is reached over TLS: `https://`; a scheme-less `host:port` takes TLS when TLS is
/// configured (as etcd-client does).
pub(crate) fn endpoint_scheme(endpoint: &str) -> Scheme {
    if endpoint.starts_with("https://") {
        Scheme::Https
    } else if endpoint.starts_with("http://") {
        Scheme::Http
    } else {
        Scheme::Bare
    }
}

/// An endpoint's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
    /// `host:port`: TLS exactly when TLS is configured.
    Bare,
}

/// The rules between the endpoints' schemes and the TLS settings: `https://` needs a CA file; TLS files
/// with an `http://` endpoint are a mistake (the connection would be plain text), and so is a mix of
/// schemes.
pub(crate) fn check_schemes(endpoints: &[String], tls: Option<&EtcdTls>) -> Result<(), RegistryError> {
    let bad = |m: String| Err(RegistryError::Config(m));
    for e in endpoints {
        match (endpoint_scheme(e), tls) {
            (Scheme::Https, None) => {
                return bad(format!(
                    "etcd endpoint {e:?} is https but no CA file is set: set the CA that signed the etcd \
                     server certificates (etcd.ca_file)"
                ))
            }
            (Scheme::Http, Some(_)) => {
                return bad(format!(
                    "etcd endpoint {e:?} is plain http but TLS files are set: use https:// endpoints \
                     (or remove the TLS files)"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let auth = EtcdAuth::new("agent", "s3cret-pw");
        let shown = format!("{auth:?}");
        assert!(shown.contains("agent") && shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
    }

    #[test]
    fn schemes_and_tls_must_agree() {
        let tls = EtcdTls::with_ca("/ca.pem");
        let eps = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(check_schemes(&eps(&["http://a:1", "b:2"]), None).is_ok());
        assert!(check_schemes(&eps(&["https://a:1", "b:2"]), Some(&tls)).is_ok());
        let e = check_schemes(&eps(&["http://a:1", "https://b:2"]), None).unwrap_err();
        assert!(
            e.to_string().contains("\"https://b:2\" is https but no CA file"),
            "{e}"
        );
        let e = check_schemes(&eps(&["https://a:1", "http://b:2"]), Some(&tls)).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"http://b:2\" is plain http but TLS files are set"),
            "{e}"
        );
        assert_eq!(endpoint_scheme("10.0.0.1:2379"), Scheme::Bare);
    }

    #[test]
    fn files_are_checked_and_named() {
        let dir = std::env::temp_dir().join(format!("mesh-registry-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = EtcdTls::with_ca(&missing).check().unwrap_err().to_string();
        assert!(
            e.contains("etcd CA file") && e.contains("missing.pem") && e.contains("cannot read"),
            "{e}"
        );

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let e = EtcdTls::with_ca(&empty).check().unwrap_err().to_string();
        assert!(e.contains("empty.pem") && e.contains("no PEM certificate"), "{e}");

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (ca, cert_file, key_file) = (dir.join("ca.pem"), dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        assert!(EtcdTls::with_ca(&ca).check().is_ok());
        let both = EtcdTls::with_ca(&ca).with_client_cert(&cert_file, &key_file);
        assert!(both.check().is_ok());
        assert!(both.options().is_ok());
        // Swapped: a certificate where the key should be.
        let swapped = EtcdTls::with_ca(&ca).with_client_cert(&cert_file, &cert_file);
        let e = swapped.check().unwrap_err().to_string();
        assert!(
            e.contains("etcd client key file") && e.contains("no PEM private key"),
            "{e}"
        );
        let half = EtcdTls {
            key_file: None,
            ..both
        };
        assert!(half
            .check()
            .unwrap_err()
            .to_string()
            .contains("set both or neither"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
