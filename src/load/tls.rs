//! TLS of the HTTP clients that talk to the target: the public roots plus the CA bundles an
//! environment names (`services.*.tls.ca-file`, the token endpoint's `ca-file`), and a client
//! certificate when a service asks for one. Certificate checks are never turned off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};
use crate::trial::Environment;

/// What every client of an environment trusts and presents: one rustls configuration, used by
/// the load engine's connections and by every `reqwest` client alike.
#[derive(Clone)]
pub struct ClientTls {
    /// The public roots, the environment's CAs and its client certificate.
    config: Arc<rustls::ClientConfig>,
    identity: bool,
    /// The files they came from, for messages.
    pub files: Vec<PathBuf>,
}

impl Default for ClientTls {
    fn default() -> ClientTls {
        ClientTls {
            config: client_config(Vec::new(), None).expect("the public roots make a config"),
            identity: false,
            files: Vec::new(),
        }
    }
}

/// A client certificate chain and its key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The public roots (webpki) plus `extra` CAs, presenting `identity` when asked; HTTP/1.1.
fn client_config(
    extra: Vec<CertificateDer<'static>>,
    identity: Option<Identity>,
) -> std::result::Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for c in extra {
        roots.add(c)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("files", &self.files)
            .field("identity", &self.identity)
            .finish()
    }
}

fn read(env_file: &Path, field: &str, file: &Path) -> Result<(PathBuf, Vec<u8>)> {
    let path = if file.is_absolute() {
        file.to_path_buf()
    } else {
        env_file.parent().unwrap_or(Path::new(".")).join(file)
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::Usage(format!(
            "{}: {field}: cannot read {}: {e}",
            env_file.display(),
            path.display()
        ))
    })?;
    Ok((path, bytes))
}

impl ClientTls {
    /// The TLS settings of an environment, files read and parsed (errors name the file, the
    /// field and the problem).
    pub fn of(env: &Environment) -> Result<ClientTls> {
        let mut files = Vec::new();
        let mut extra = Vec::new();
        let mut client_identity = None;
        let file = &env.file;
        let services = &env.spec.services;
        let named = [
            ("provisioning", Some(&services.provisioning)),
            ("verification", Some(&services.verification)),
            ("management", services.management.as_ref()),
        ];
        let mut ca_files: Vec<(String, PathBuf)> = Vec::new();
        let mut identity: Option<(String, PathBuf, PathBuf)> = None;
        for (name, svc) in named {
            let Some(t) = svc.and_then(|s| s.tls.as_ref()) else {
                continue;
            };
            if let Some(ca) = &t.ca_file {
                ca_files.push((format!("services.{name}.tls.ca-file"), ca.clone()));
            }
            match (&t.client_cert, &t.client_key) {
                (Some(c), Some(k)) => {
                    let field = format!("services.{name}.tls");
                    if let Some((other, oc, ok)) = &identity {
                        if oc != c || ok != k {
                            return Err(Error::Usage(format!(
                                "{}: {field}: a different client certificate than {other}: one client certificate per environment",
                                file.display()
                            )));
                        }
                    }
                    identity = Some((field, c.clone(), k.clone()));
                }
                (None, None) => {}
                _ => {
                    return Err(Error::Usage(format!(
                        "{}: services.{name}.tls: give both client-cert and client-key",
                        file.display()
                    )))
                }
            }
        }
        if let Some(g) = services
            .provisioning
            .auth
            .as_ref()
            .and_then(|a| a.oauth2_password.ca_file.as_ref())
        {
            ca_files.push((
                "services.provisioning.auth.oauth2-password.ca-file".into(),
                g.clone(),
            ));
        }
        for (field, ca) in ca_files {
            let (path, pem) = read(file, &field, &ca)?;
            let bad = |e: &dyn std::fmt::Display| {
                Error::Usage(format!(
                    "{}: {field}: {} is not a PEM certificate bundle: {e}",
                    file.display(),
                    path.display()
                ))
            };
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(&e))?;
            if certs.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: {field}: {} holds no certificate",
                    file.display(),
                    path.display()
                )));
            }
            extra.extend(certs);
            files.push(path);
        }
        if let Some((field, cert, key)) = identity {
            let (cp, cert) = read(file, &format!("{field}.client-cert"), &cert)?;
            let (kp, key) = read(file, &format!("{field}.client-key"), &key)?;
            let bad = |e: &dyn std::fmt::Display| {
                Error::Usage(format!(
                    "{}: {field}: {} and {} are not a PEM certificate and key: {e}",
                    file.display(),
                    cp.display(),
                    kp.display()
                ))
            };
            let chain = CertificateDer::pem_slice_iter(&cert)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(&e))?;
            if chain.is_empty() {
                return Err(bad(&"no certificate"));
            }
            let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| bad(&e))?;
            client_identity = Some((chain, key));
            files.push(cp);
        }
        let identity = client_identity.is_some();
        let config = client_config(extra, client_identity)
            .map_err(|e| Error::Usage(format!("{}: TLS settings: {e}", file.display())))?;
        Ok(ClientTls {
            config,
            identity,
            files,
        })
    }

    /// The public roots and the CAs of a PEM bundle (a deployment's own CA, given by value).
    pub fn trusting(ca_pem: &[u8]) -> Result<ClientTls> {
        let certs = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Usage(format!("not a PEM certificate bundle: {e}")))?;
        let config =
            client_config(certs, None).map_err(|e| Error::Usage(format!("TLS settings: {e}")))?;
        Ok(ClientTls {
            config,
            identity: false,
            files: Vec::new(),
        })
    }

    /// The rustls configuration (public roots, these CAs, the identity).
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// A `reqwest` client builder on the same configuration.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().use_preconfigured_tls((*self.config).clone())
    }
}
