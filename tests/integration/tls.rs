//! An HTTPS server on 127.0.0.1 with a throwaway certificate authority, for the tests of TLS and
//! of the HTTPS→HTTP redirect rule.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A throwaway certificate authority and a certificate it signed for 127.0.0.1 and localhost,
/// written as PEM files into a folder.
pub struct Identity {
    /// The authority's certificate, for the client's trust store.
    pub ca_file: PathBuf,
    /// The server's certificate and key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    leaf: rcgen::Certificate,
    leaf_key: rcgen::KeyPair,
}

impl Identity {
    pub fn new(dir: &Path) -> Identity {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Ferry test CA");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("leaf params");
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("leaf certificate");
        let ca_file = dir.join("test-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write CA");
        let cert_file = dir.join("server-cert.pem");
        std::fs::write(&cert_file, leaf.pem()).expect("write certificate");
        let key_file = dir.join("server-key.pem");
        std::fs::write(&key_file, leaf_key.serialize_pem()).expect("write key");
        Identity {
            ca_file,
            cert_file,
            key_file,
            leaf,
            leaf_key,
        }
    }
}

pub struct TlsServer {
    pub addr: SocketAddr,
    /// PEM file of the authority that signed the server's certificate.
    pub ca_file: PathBuf,
}

impl TlsServer {
    pub async fn start(router: Router, dir: &Path) -> TlsServer {
        let identity = Identity::new(dir);
        let (leaf, leaf_key, ca_file) = (identity.leaf, identity.leaf_key, identity.ca_file);
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = TowerToHyperService::new(router);
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsServer { addr, ca_file }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}
