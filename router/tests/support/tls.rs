//! A throw-away CA issuing server certificates, and a TLS client that reports which
//! certificate and ALPN protocol the router chose.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, sync::Arc};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tokio::net::TcpStream;

use super::{TempDir, free_port};

pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let dir =
            std::env::temp_dir().join(format!("siskin-tls-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        Pki {
            ca,
            dir: TempDir(dir),
        }
    }

    /// A certificate for `dns` signed by the CA: (certificate PEM, key PEM, leaf DER).
    pub fn issue_pem(&self, dns: &str) -> (String, String, Vec<u8>) {
        let mut params = CertificateParams::new(vec![dns.to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// Writes `NAME.crt` and `NAME.key` (atomically, by rename) for `dns`; returns the leaf DER.
    pub fn issue(&self, name: &str, dns: &str) -> Vec<u8> {
        let (cert, key, der) = self.issue_pem(dns);
        write_atomically(&self.path(&format!("{name}.crt")), cert.as_bytes());
        write_atomically(&self.path(&format!("{name}.key")), key.as_bytes());
        der
    }

    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.0.join(file)
    }

    pub fn pair(&self, name: &str) -> String {
        format!(
            "{},{}",
            self.path(&format!("{name}.crt")).display(),
            self.path(&format!("{name}.key")).display()
        )
    }

    pub fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Handshakes with `sni`; returns the stream, the leaf certificate served and the ALPN chosen.
pub async fn handshake(
    pki: &Pki,
    port: u16,
    sni: &'static str,
    alpn: &[&[u8]],
) -> Result<(Tls, Vec<u8>, Option<Vec<u8>>), std::io::Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from(sni).unwrap();
    let tls = pki.connector(alpn).connect(name, tcp).await?;
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates().unwrap()[0].to_vec();
    let chosen = conn.alpn_protocol().map(<[u8]>::to_vec);
    Ok((tls, leaf, chosen))
}

impl Pki {
    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }
}

/// An upstream that speaks only TLS (HTTP/1.1 or h2 by ALPN), answering `NAME PATH`, and
/// records the SNI name of each handshake.
pub struct TlsUpstream {
    pub port: u16,
    pub sni: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    pub alpn: Arc<std::sync::Mutex<Vec<Option<Vec<u8>>>>>,
}

impl TlsUpstream {
    pub async fn start(name: &'static str, cert_pem: &str, key_pem: &str) -> TlsUpstream {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let up = TlsUpstream {
            port: listener.local_addr().unwrap().port(),
            sni: Arc::default(),
            alpn: Arc::default(),
        };
        let (sni, alpn) = (up.sni.clone(), up.alpn.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, sni, alpn) = (acceptor.clone(), sni.clone(), alpn.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let conn = tls.get_ref().1;
                    sni.lock()
                        .unwrap()
                        .push(conn.server_name().map(str::to_string));
                    alpn.lock()
                        .unwrap()
                        .push(conn.alpn_protocol().map(<[u8]>::to_vec));
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| async move {
                            let body = format!("{name} {} {:?}", req.uri().path(), req.version());
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body)),
                            ))
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                });
            }
        });
        up
    }
}
