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
