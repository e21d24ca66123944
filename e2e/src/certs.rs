//! Certificates for the control plane: a throw-away CA, the API server's serving certificate,
//! an admin client certificate and the service-account signing key. ECDSA P-256, X.509 v3 with
//! the extensions rustls requires (IP SAN, EKU, CA basic constraints).

use std::{net::IpAddr, path::Path};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::{Error, Result, io};

fn cert_err(e: rcgen::Error) -> Error {
    Error::Setup(format!("cannot make test certificates: {e}"))
}

/// Writes `ca.crt`, `apiserver.{crt,key}`, `admin.{crt,key}`, `sa.{key,pub}` into `dir`.
pub(crate) fn write(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(DnType::CommonName, "siskin-test-ca");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(cert_err)?)
        .map_err(cert_err)?;

    let mut server = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .map_err(cert_err)?;
    server
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    server
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let server_key = KeyPair::generate().map_err(cert_err)?;
    let server_crt = server.signed_by(&server_key, &ca).map_err(cert_err)?;

    let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    admin
        .distinguished_name
        .push(DnType::CommonName, "siskin-test-admin");
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    admin.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let admin_key = KeyPair::generate().map_err(cert_err)?;
    let admin_crt = admin.signed_by(&admin_key, &ca).map_err(cert_err)?;

    let sa = KeyPair::generate().map_err(cert_err)?;
    let files = [
        ("ca.crt", ca.pem()),
        ("apiserver.crt", server_crt.pem()),
        ("apiserver.key", server_key.serialize_pem()),
        ("admin.crt", admin_crt.pem()),
        ("admin.key", admin_key.serialize_pem()),
        ("sa.key", sa.serialize_pem()),
        ("sa.pub", sa.public_key_pem()),
    ];
    for (name, pem) in &files {
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(io(format!("write {}", path.display())))?;
    }
    Ok(())
}
