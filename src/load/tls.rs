//! TLS of the HTTP clients that talk to the target: the public roots plus the CA bundles an
//! environment names (`services.*.tls.ca-file`, the token endpoint's `ca-file`), and a client
//! certificate when a service asks for one. Certificate checks are never turned off.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::trial::Environment;

/// What every client of an environment trusts and presents.
#[derive(Clone, Default)]
pub struct ClientTls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    /// The files they came from, for messages.
    pub files: Vec<PathBuf>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("files", &self.files)
            .field("identity", &self.identity.is_some())
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
        let mut tls = ClientTls::default();
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
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Usage(format!(
                    "{}: {field}: {} is not a PEM certificate bundle: {e}",
                    file.display(),
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: {field}: {} holds no certificate",
                    file.display(),
                    path.display()
                )));
            }
            tls.roots.extend(certs);
            tls.files.push(path);
        }
        if let Some((field, cert, key)) = identity {
            let (cp, mut pem) = read(file, &format!("{field}.client-cert"), &cert)?;
            let (kp, key) = read(file, &format!("{field}.client-key"), &key)?;
            pem.push(b'\n');
            pem.extend_from_slice(&key);
            tls.identity = Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                Error::Usage(format!(
                    "{}: {field}: {} and {} are not a PEM certificate and key: {e}",
                    file.display(),
                    cp.display(),
                    kp.display()
                ))
            })?);
            tls.files.push(cp);
        }
        Ok(tls)
    }

    /// A client builder that trusts the public roots and these CAs, and presents the identity.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder();
        for c in &self.roots {
            b = b.add_root_certificate(c.clone());
        }
        if let Some(i) = &self.identity {
            b = b.identity(i.clone());
        }
        b
    }
}
