//! An SSH local port forward (`ssh -N -L`) through a jump host, with the system's OpenSSH
//! client: opened, waited for (the local port accepts connections), used, and closed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::trial::model::TunnelSpec;

/// An open tunnel; the forward closes when it is dropped.
pub struct SshTunnel {
    /// The local end (`127.0.0.1:PORT`).
    pub local: SocketAddr,
    child: Child,
}

/// The `ssh` arguments for forwarding `local_port` to `remote_host:remote_port` via `spec`.
pub fn ssh_args(
    spec: &TunnelSpec,
    local_port: u16,
    remote_host: &str,
    remote_port: u16,
) -> Vec<String> {
    let mut args = vec![
        "-N".to_string(),
        "-L".into(),
        format!("127.0.0.1:{local_port}:{remote_host}:{remote_port}"),
        "-o".into(),
        "ExitOnForwardFailure=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "ConnectTimeout=15".into(),
        "-o".into(),
        "ServerAliveInterval=15".into(),
    ];
    if let Some(p) = spec.port {
        args.extend(["-p".into(), p.to_string()]);
    }
    if let Some(i) = &spec.identity {
        args.extend(["-i".into(), i.display().to_string()]);
    }
    for o in &spec.options {
        args.extend(["-o".into(), o.clone()]);
    }
    args.push(spec.ssh.clone());
    args
}

impl SshTunnel {
    /// Opens a forward to `remote_host:remote_port` and waits up to `timeout` for it.
    pub fn open(
        spec: &TunnelSpec,
        remote_host: &str,
        remote_port: u16,
        timeout: Duration,
    ) -> Result<SshTunnel> {
        let local_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("finding a free local port for the SSH tunnel", e))?
            .port();
        let args = ssh_args(spec, local_port, remote_host, remote_port);
        let ssh = std::env::var("TRIALRUNNER_SSH").unwrap_or_else(|_| "ssh".into());
        let mut child = Command::new(&ssh)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Infra(format!(
                    "starting `{ssh}` for the tunnel through {}: {e}",
                    spec.ssh
                ))
            })?;
        let local: SocketAddr = ([127, 0, 0, 1], local_port).into();
        let started = Instant::now();
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| Error::Infra(format!("ssh tunnel: {e}")))?
            {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    use std::io::Read;
                    let _ = s.read_to_string(&mut err);
                }
                return Err(Error::Infra(format!(
                    "the SSH tunnel through {} to {remote_host}:{remote_port} failed ({status}): {}",
                    spec.ssh,
                    err.trim()
                )));
            }
            if TcpStream::connect_timeout(&local, Duration::from_millis(200)).is_ok() {
                return Ok(SshTunnel { local, child });
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Infra(format!(
                    "the SSH tunnel through {} to {remote_host}:{remote_port} was not up after {timeout:?}",
                    spec.ssh
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SshTunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_forwards_to_the_remote_through_the_jump_host() {
        let spec = TunnelSpec {
            ssh: "ubuntu@sentinel.example.com".into(),
            port: Some(2222),
            identity: Some("/k".into()),
            options: vec!["StrictHostKeyChecking=accept-new".into()],
        };
        let a = ssh_args(&spec, 15432, "db.internal", 5432).join(" ");
        assert!(a.starts_with("-N -L 127.0.0.1:15432:db.internal:5432 -o ExitOnForwardFailure=yes -o BatchMode=yes"), "{a}");
        assert!(
            a.ends_with(
                "-p 2222 -i /k -o StrictHostKeyChecking=accept-new ubuntu@sentinel.example.com"
            ),
            "{a}"
        );
    }
}
