//! TLS to Redis (`rediss://`): which certificate authorities are trusted, and the client
//! certificate of mutual TLS. One rustls configuration is built when the adapter (or emitter)
//! is created and used by every connection it makes, to servers and to sentinels.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::error::Error;

/// How connections to a `rediss://` Redis check the server, and how they prove who they are.
///
/// Without it, a `rediss://` URL trusts the system's certificate authorities (the system's
/// store: `/etc/ssl/certs` on Debian, the keychain on macOS), which is what managed Redis
/// services (ElastiCache, Azure Cache, Memorystore, Upstash, Redis Cloud) need. A Redis with a
/// certificate of your own CA needs that CA ([`ca_file`](Self::ca_file)); a Redis with
/// `tls-auth-clients yes` (the default of `redis-server`) needs a client certificate
/// ([`client_cert_files`](Self::client_cert_files)).
///
/// Files are read when the adapter is created: a renewed certificate takes effect on the next
/// start. The server's certificate must name the host the URL names (or, behind Sentinel or a
/// Redis Cluster, the address they announce: an IP address unless they announce host names).
///
/// ```
/// use sio_redis::{RedisConfig, TlsConfig};
///
/// let config = RedisConfig::new("rediss://sio:secret@redis.internal:6380").tls(
///     TlsConfig::new()
///         .ca_file("/etc/sio/redis-ca.pem")
///         .client_cert_files("/etc/sio/client.pem", "/etc/sio/client-key.pem"),
/// );
/// # let _ = config;
/// ```
#[derive(Clone, Default)]
pub struct TlsConfig {
    cas: Vec<Pem>,
    client: Option<(Pem, Pem)>,
    without_system_roots: bool,
}

/// PEM from a file, or given.
#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Given(Vec<u8>),
}

impl Pem {
    fn origin(&self) -> String {
        match self {
            Pem::File(path) => format!("file {}", path.display()),
            Pem::Given(_) => "PEM given".to_owned(),
        }
    }

    fn read(&self, what: &'static str) -> Result<Vec<u8>, Error> {
        match self {
            Pem::File(path) => std::fs::read(path).map_err(|err| Error::TlsFile {
                what,
                path: path.clone(),
                reason: err.to_string(),
            }),
            Pem::Given(pem) => Ok(pem.clone()),
        }
    }

    fn certificates(&self, what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
        let bad = |reason: String| Error::Tls {
            what,
            origin: self.origin(),
            reason,
        };
        let certificates = CertificateDer::pem_slice_iter(&self.read(what)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| bad(err.to_string()))?;
        if certificates.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        Ok(certificates)
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Origins only: a given key must not reach a log.
        let origins = |pems: &[&Pem]| pems.iter().map(|p| p.origin()).collect::<Vec<_>>();
        f.debug_struct("TlsConfig")
            .field("cas", &origins(&self.cas.iter().collect::<Vec<_>>()))
            .field(
                "client",
                &self
                    .client
                    .as_ref()
                    .map(|(cert, key)| origins(&[cert, key])),
            )
            .field("without_system_roots", &self.without_system_roots)
            .finish()
    }
}

impl TlsConfig {
    /// The system's certificate authorities, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trusts the certificate authorities in this PEM file (one or more certificates):
    /// a self-managed Redis whose certificate your own CA signed.
    ///
    /// ```
    /// let tls = sio_redis::TlsConfig::new().ca_file("/etc/sio/redis-ca.pem");
    /// # let _ = tls;
    /// ```
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cas.push(Pem::File(path.into()));
        self
    }

    /// Also trusts the certificate authorities in this PEM text, for a CA that comes from a
    /// secret store rather than a file.
    ///
    /// ```
    /// # let pem_from_vault = String::new();
    /// let tls = sio_redis::TlsConfig::new().ca_pem(pem_from_vault);
    /// # let _ = tls;
    /// ```
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.cas.push(Pem::Given(pem.into()));
        self
    }

    /// Trusts only the certificate authorities given with [`ca_file`](Self::ca_file) or
    /// [`ca_pem`](Self::ca_pem), not the system's: a certificate of a public CA for another
    /// name then no longer passes for your Redis.
    ///
    /// ```
    /// let tls = sio_redis::TlsConfig::new()
    ///     .ca_file("/etc/sio/redis-ca.pem")
    ///     .without_system_roots();
    /// # let _ = tls;
    /// ```
    pub fn without_system_roots(mut self) -> Self {
        self.without_system_roots = true;
        self
    }

    /// Mutual TLS: presents this certificate (PEM, the chain from the client's certificate up)
    /// with its private key (PEM: PKCS#8, PKCS#1 or SEC1), as a Redis with
    /// `tls-auth-clients yes` requires.
    ///
    /// ```
    /// let tls = sio_redis::TlsConfig::new()
    ///     .client_cert_files("/etc/sio/client.pem", "/etc/sio/client-key.pem");
    /// # let _ = tls;
    /// ```
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Mutual TLS, with the certificate chain and private key given as PEM text.
    ///
    /// ```
    /// # let (cert, key) = (String::new(), String::new());
    /// let tls = sio_redis::TlsConfig::new().client_cert_pem(cert, key);
    /// # let _ = tls;
    /// ```
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client = Some((Pem::Given(cert.into()), Pem::Given(key.into())));
        self
    }

    /// The connector every TLS connection of an adapter uses.
    pub(crate) fn connector(&self) -> Result<TlsConnector, Error> {
        let mut roots = RootCertStore::empty();
        if !self.without_system_roots {
            let system = rustls_native_certs::load_native_certs();
            for err in &system.errors {
                tracing::debug!(target: "sio::redis", %err, "a system certificate store is unreadable");
            }
            let (added, ignored) = roots.add_parsable_certificates(system.certs);
            tracing::debug!(target: "sio::redis", added, ignored, "system certificate authorities");
        }
        for ca in &self.cas {
            for certificate in ca.certificates("CA certificate")? {
                roots.add(certificate).map_err(|err| Error::Tls {
                    what: "CA certificate",
                    origin: ca.origin(),
                    reason: err.to_string(),
                })?;
            }
        }
        if roots.is_empty() {
            return Err(Error::Tls {
                what: "trusted certificate authorities",
                origin: "the system's store and TlsConfig".into(),
                reason: "none: the system has none and no CA was given (TlsConfig::ca_file)".into(),
            });
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| Error::Tls {
                what: "protocol versions",
                origin: "rustls".into(),
                reason: err.to_string(),
            })?
            .with_root_certificates(roots);
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = cert.certificates("client certificate")?;
                let key_pem = key.read("client key")?;
                let bad_key = |reason: String| Error::Tls {
                    what: "client key",
                    origin: key.origin(),
                    reason,
                };
                let key = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|err| bad_key(format!("no PEM private key in it ({err})")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|err| bad_key(format!("does not fit the client certificate: {err}")))?
            }
        };
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_pem_are_checked_when_built() {
        let missing = TlsConfig::new()
            .ca_file("/nonexistent/ca.pem")
            .connector()
            .map(|_| ());
        let Err(Error::TlsFile { what, path, .. }) = missing else {
            panic!("{missing:?}");
        };
        assert_eq!(
            (what, path),
            ("CA certificate", "/nonexistent/ca.pem".into())
        );
        let garbage = TlsConfig::new()
            .ca_pem("not a certificate")
            .connector()
            .map(|_| ());
        assert!(
            matches!(
                garbage,
                Err(Error::Tls {
                    what: "CA certificate",
                    ..
                })
            ),
            "{garbage:?}"
        );
        let none = TlsConfig::new()
            .without_system_roots()
            .connector()
            .map(|_| ());
        assert!(matches!(none, Err(Error::Tls { .. })), "{none:?}");
    }

    #[test]
    fn a_key_never_reaches_debug() {
        let tls = TlsConfig::new().client_cert_pem("CERT", "PRIVATE KEY BYTES");
        let shown = format!("{tls:?}");
        assert!(!shown.contains("PRIVATE KEY BYTES"), "{shown}");
    }
}
