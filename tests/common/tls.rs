//! A TLS front for a plain-HTTP test server, with its own CA (as Veraison's docker deployment
//! has): certificates made with rcgen, TLS terminated with tokio-rustls, bytes copied through.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A TLS listener in front of `backend`, and the CA that signed its certificate.
pub struct TlsFront {
    /// `127.0.0.1:PORT` of the TLS side.
    pub addr: SocketAddr,
    /// The CA certificate (PEM), to trust.
    pub ca_pem: String,
}

impl TlsFront {
    /// Starts on the current runtime; the certificate names `localhost` and `127.0.0.1`.
    pub async fn start(backend: SocketAddr) -> TlsFront {
        TlsFront::start_with_handshake_delay(backend, std::time::Duration::ZERO, None).await
    }

    /// The same front, waiting `delay` after each accept before it answers the client's hello;
    /// each wait, as measured, is pushed to `waited`.
    pub async fn start_with_handshake_delay(
        backend: SocketAddr,
        delay: std::time::Duration,
        waited: Option<Arc<std::sync::Mutex<Vec<std::time::Duration>>>>,
    ) -> TlsFront {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "trialrunner test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let waited = waited.clone();
                tokio::spawn(async move {
                    if !delay.is_zero() {
                        let began = std::time::Instant::now();
                        tokio::time::sleep(delay).await;
                        if let Some(w) = &waited {
                            w.lock().unwrap().push(began.elapsed());
                        }
                    }
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront {
            addr,
            ca_pem: ca.pem(),
        }
    }

    /// Writes the CA certificate into `dir`; returns its path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.ca_pem).unwrap();
        p
    }
}
