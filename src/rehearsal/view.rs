//! The emulator as the twin's instances are: a proxy in front of moto that answers everything
//! moto answers, except that an instance the twin still holds Pending shows as `Pending` in
//! `DescribeAutoScalingGroups` and its targets as `initial` in `DescribeTargetHealth` (moto makes
//! every instance InService and healthy at once). Point a rehearsal environment's
//! `aws.endpoint` here and the readiness gate and the auto-scaling timeline see the spin-up.
//! A joining instance whose VTS is not up stays `healthy`, as the 2025 campaign's did.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, Result};

/// Where an instance stands in the twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Launched, not yet routed to.
    Pending,
    /// Routed to, its VTS not up.
    NotReady,
    /// Serving.
    Serving,
}

/// What the view asks the twin: the phase of an instance it knows.
pub type PhaseOf = Arc<dyn Fn(&str) -> Option<Phase> + Send + Sync>;

/// Brings the twin up to date with the emulator (it starts the instances it has not seen),
/// so an instance launched a moment ago is answered as the twin holds it: Pending.
pub type CatchUp =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

struct ViewState {
    upstream: String,
    client: reqwest::Client,
    phase: PhaseOf,
    catch_up: CatchUp,
}

/// A running view.
pub struct AwsView {
    /// Its address (`http://ADDR` is the endpoint to give the environment).
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for AwsView {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl AwsView {
    /// Serves on `listen`, forwarding to `upstream` (the emulator's endpoint).
    pub async fn start(
        listen: SocketAddr,
        upstream: &str,
        phase: PhaseOf,
        catch_up: CatchUp,
    ) -> Result<AwsView> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::io(format!("binding the emulator's view on {listen}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("the view's address", e))?;
        let state = Arc::new(ViewState {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            phase,
            catch_up,
        });
        let app = axum::Router::new().fallback(answer).with_state(state);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(AwsView {
            addr,
            shutdown: Some(tx),
        })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The rewrite that shows an auto-scaling group's instance as Pending.
pub const ASG_PENDING: (&str, &str) = (
    "<LifecycleState>InService</LifecycleState>",
    "<LifecycleState>Pending</LifecycleState>",
);

/// The rewrite that shows a target as not yet healthy.
pub const TARGET_INITIAL: (&str, &str) = ("<State>healthy</State>", "<State>initial</State>");

/// Rewrites each `<member>` block naming an instance (in `id_tag`) that `change` wants changed.
pub fn rewrite_members(
    xml: &str,
    id_tag: &str,
    change: &dyn Fn(&str) -> Option<(&'static str, &'static str)>,
) -> String {
    let (open, close) = (format!("<{id_tag}>"), format!("</{id_tag}>"));
    xml.split("<member>")
        .map(|block| {
            let id = block.find(&open).and_then(|i| {
                let rest = &block[i + open.len()..];
                rest.find(&close).map(|j| &rest[..j])
            });
            match id.and_then(change) {
                Some((from, to)) => block.replacen(from, to, 1),
                None => block.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("<member>")
}

/// The query protocol's operation (`Action=`).
fn operation(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
}

/// Answers one request as the emulator would, with the instances' phases seen through it.
async fn answer(
    State(state): State<Arc<ViewState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = operation(&body);
    let Forwarded {
        status,
        headers: out,
        body: bytes,
    } = match forward(&state.client, &state.upstream, method, &uri, &headers, body).await {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    if matches!(
        op.as_deref(),
        Some("DescribeAutoScalingGroups" | "DescribeTargetHealth")
    ) {
        (state.catch_up)().await;
    }
    let phase = &state.phase;
    let text = match op.as_deref() {
        Some("DescribeAutoScalingGroups") => {
            let xml = String::from_utf8_lossy(&bytes);
            Some(rewrite_members(&xml, "InstanceId", &|id| {
                (phase(id) == Some(Phase::Pending)).then_some(ASG_PENDING)
            }))
        }
        Some("DescribeTargetHealth") => {
            let xml = String::from_utf8_lossy(&bytes);
            Some(rewrite_members(&xml, "Id", &|id| {
                (phase(id) == Some(Phase::Pending)).then_some(TARGET_INITIAL)
            }))
        }
        _ => None,
    };
    match text {
        Some(t) => (status, out, t).into_response(),
        None => (status, out, bytes).into_response(),
    }
}

/// What an upstream answered to a forwarded request, its hop-by-hop headers dropped.
pub struct Forwarded {
    /// Its status.
    pub status: StatusCode,
    /// Its end-to-end headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

/// Passes a request on to `base` followed by its path and query, with its headers but `host`
/// and `content-length` (set anew), and reads the answer: the one forwarding the view, the
/// twin's balancer and the tests' AWS fault layer share.
pub async fn forward(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> std::result::Result<Forwarded, reqwest::Error> {
    let url = format!(
        "{}{}",
        base.trim_end_matches('/'),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut req = client.request(method, url).body(body);
    for (k, v) in headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await?;
    let status = resp.status();
    let mut out = HeaderMap::new();
    for (k, v) in resp.headers() {
        if !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            out.append(k, v.clone());
        }
    }
    let body = resp.bytes().await?;
    Ok(Forwarded {
        status,
        headers: out,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_members_naming_a_pending_instance_change() {
        let xml = "<Instances><member><InstanceId>i-new</InstanceId><LifecycleState>InService</LifecycleState></member><member><InstanceId>i-old</InstanceId><LifecycleState>InService</LifecycleState></member></Instances>";
        let out = rewrite_members(xml, "InstanceId", &|id| {
            (id == "i-new").then_some(("InService", "Pending"))
        });
        assert_eq!(out, xml.replacen("InService", "Pending", 1));
    }
}
