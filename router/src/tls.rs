//! TLS termination: certificates chosen by SNI from PEM files, reloaded when the files change
//! (new handshakes get the new certificate; open connections keep theirs), ALPN for h2.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

/// A certificate chain and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl std::str::FromStr for CertificateFiles {
    type Err = String;

    /// `CERT.pem,KEY.pem`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(',') {
            Some((cert, key)) if !cert.is_empty() && !key.is_empty() => Ok(CertificateFiles {
                cert: cert.into(),
                key: key.into(),
            }),
            _ => Err(format!(
                "{s:?}: expected CERT_FILE,KEY_FILE (PEM), e.g. /etc/tls/tls.crt,/etc/tls/tls.key"
            )),
        }
    }
}

/// Why certificates could not be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the expected kind.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate and the key do not belong together, or the key type is unsupported.
    #[error("{cert} and {key}: {reason}")]
    Pair {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate from a Kubernetes Secret does not load.
    #[error("{secret}: {reason}")]
    Secret {
        /// `Secret NAMESPACE/NAME`.
        secret: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No certificate was given.
    #[error("a TLS listener needs at least one --tls-certificate CERT_FILE,KEY_FILE")]
    NoCertificate,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A certificate and its key in PEM, from a Kubernetes Secret of type `kubernetes.io/tls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemPair {
    /// Where it comes from, for errors and logs: `Secret NAMESPACE/NAME`.
    pub source: String,
    /// `tls.crt`: the chain, leaf first.
    pub cert: Vec<u8>,
    /// `tls.key`.
    pub key: Vec<u8>,
}

/// One certificate and the DNS names (subjectAltName) it serves.
#[derive(Clone)]
struct Entry {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
}

/// Loaded certificates, indexed by the DNS names of each leaf's subjectAltName.
struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Served when the client sends no SNI or a name no certificate covers: the first given.
    default: Option<Arc<CertifiedKey>>,
}

impl Certificates {
    fn index<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Certificates {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for e in entries {
            for name in &e.names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(name),
                }
                .or_insert_with(|| e.key.clone());
            }
            default.get_or_insert_with(|| e.key.clone());
        }
        Certificates {
            exact,
            wildcard,
            default,
        }
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What the store is built from: the files (in the order given), then certificates handed in
/// from Kubernetes Secrets (by source, so a bad update keeps the last good one).
#[derive(Default)]
struct Parts {
    files: Vec<Entry>,
    secrets: Vec<(String, Entry)>,
}

/// The certificate store a TLS listener resolves from; swapped whole on reload.
pub struct CertStore {
    current: ArcSwap<Certificates>,
    files: Vec<CertificateFiles>,
    parts: Mutex<Parts>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .field("current", &self.current.load())
            .finish()
    }
}

type Fingerprint = Vec<Option<(SystemTime, u64)>>;

impl CertStore {
    /// Loads every pair; any error refuses the whole set. At least one pair is needed.
    pub fn load(files: Vec<CertificateFiles>) -> Result<CertStore, TlsError> {
        if files.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Self::with_files(files)
    }

    /// Loads the pairs given (maybe none): certificates may also come later from Secrets
    /// ([`CertStore::install_secrets`]). Until one is there, handshakes fail.
    pub fn with_files(files: Vec<CertificateFiles>) -> Result<CertStore, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load_files(&files, &provider)?;
        let parts = Parts {
            files: loaded,
            secrets: Vec::new(),
        };
        Ok(CertStore {
            current: ArcSwap::from_pointee(Certificates::index(&parts.files)),
            files,
            parts: Mutex::new(parts),
            provider,
        })
    }

    fn parts(&self) -> std::sync::MutexGuard<'_, Parts> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, parts: &Parts) {
        let all = parts
            .files
            .iter()
            .chain(parts.secrets.iter().map(|(_, e)| e));
        self.current.store(Arc::new(Certificates::index(all)));
    }

    /// Re-reads the files; on error the certificates in service stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load_files(&self.files, &self.provider)?;
        let mut parts = self.parts();
        parts.files = loaded;
        self.publish(&parts);
        Ok(())
    }

    /// Replaces the certificates that come from Secrets with `pairs`. A pair that does not
    /// load is reported, and the last good certificate from the same source (if any) stays in
    /// service; sources no longer in `pairs` are dropped.
    pub fn install_secrets(&self, pairs: &[PemPair]) -> Vec<TlsError> {
        let mut errors = Vec::new();
        let mut parts = self.parts();
        let mut next = Vec::with_capacity(pairs.len());
        for p in pairs {
            match parse_pair(&p.cert, &p.key, &self.provider) {
                Ok(entry) => next.push((p.source.clone(), entry)),
                Err(e) => {
                    errors.push(TlsError::Secret {
                        secret: p.source.clone(),
                        reason: e.to_string(),
                    });
                    if let Some(old) = parts.secrets.iter().find(|(s, _)| *s == p.source) {
                        next.push(old.clone());
                    }
                }
            }
        }
        parts.secrets = next;
        self.publish(&parts);
        errors
    }

    /// The DNS names served, for logs and the admin port.
    pub fn names(&self) -> Vec<String> {
        let c = self.current.load();
        let mut names: Vec<String> = c
            .exact
            .keys()
            .cloned()
            .chain(c.wildcard.keys().map(|w| format!("*.{w}")))
            .collect();
        names.sort();
        names
    }

    fn fingerprint(&self) -> Fingerprint {
        self.files
            .iter()
            .flat_map(|f| [&f.cert, &f.key])
            .map(|p| crate::config::fingerprint(p))
            .collect()
    }

    /// A rustls server configuration resolving from this store, offering h2 and http/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.current.load();
        let Some(name) = hello.server_name() else {
            return certs.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(c) = certs.exact.get(&name) {
            return Some(c.clone());
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(c) = certs.wildcard.get(parent)
        {
            return Some(c.clone());
        }
        certs.default.clone()
    }
}

fn load_files(
    files: &[CertificateFiles],
    provider: &CryptoProvider,
) -> Result<Vec<Entry>, TlsError> {
    files
        .iter()
        .map(|f| {
            let cert = std::fs::read(&f.cert).map_err(|e| file_error(&f.cert, e))?;
            let key = std::fs::read(&f.key).map_err(|e| file_error(&f.key, e))?;
            parse_pair(&cert, &key, provider).map_err(|e| match e {
                PairError::Cert(reason) => file_error(&f.cert, reason),
                PairError::Key(reason) => file_error(&f.key, reason),
                PairError::Mismatch(reason) => TlsError::Pair {
                    cert: f.cert.clone(),
                    key: f.key.clone(),
                    reason,
                },
            })
        })
        .collect()
}

fn file_error(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// What is wrong with a certificate and key pair, before we know where they came from.
#[derive(Debug, thiserror::Error)]
enum PairError {
    #[error("certificate: {0}")]
    Cert(String),
    #[error("key: {0}")]
    Key(String),
    #[error("{0}")]
    Mismatch(String),
}

fn parse_pair(cert: &[u8], key: &[u8], provider: &CryptoProvider) -> Result<Entry, PairError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| PairError::Cert(e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(PairError::Cert("no CERTIFICATE block".into()));
    };
    let names: Vec<String> = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| PairError::Cert(format!("the first certificate does not parse: {e}")))?
        .valid_dns_names()
        .map(str::to_string)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| PairError::Key(e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| PairError::Key(format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        PairError::Mismatch(format!("the key does not belong to the certificate: {e}"))
    })?;
    Ok(Entry {
        key: Arc::new(certified),
        names,
    })
}

/// Reloads the store when any of its files changes; a bad set keeps the last good one.
pub async fn watch(store: Arc<CertStore>, errors: Arc<std::sync::atomic::AtomicU64>) {
    let mut seen = store.fingerprint();
    loop {
        tokio::time::sleep(RELOAD_POLL).await;
        let now = store.fingerprint();
        if now == seen {
            continue;
        }
        seen = now;
        match store.reload() {
            Ok(()) => tracing::info!(names = ?store.names(), "TLS certificates reloaded"),
            Err(e) => {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "TLS certificates refused; keeping the ones in service");
            }
        }
    }
}

/// How often certificate files are checked for changes.
pub const RELOAD_POLL: std::time::Duration = std::time::Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_flag_needs_both_files() {
        assert_eq!(
            "a.pem,b.pem".parse::<CertificateFiles>(),
            Ok(CertificateFiles {
                cert: "a.pem".into(),
                key: "b.pem".into()
            })
        );
        let e = "a.pem".parse::<CertificateFiles>().unwrap_err();
        assert!(e.contains("CERT_FILE,KEY_FILE"), "{e}");
    }

    #[test]
    fn missing_files_are_named() {
        let e = CertStore::load(vec![CertificateFiles {
            cert: "/nonexistent/tls.crt".into(),
            key: "/nonexistent/tls.key".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/tls.crt: "), "{e}");
        assert!(matches!(
            CertStore::load(vec![]),
            Err(TlsError::NoCertificate)
        ));
    }
}
