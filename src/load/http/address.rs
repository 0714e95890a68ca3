//! Where the engine's requests go, parsed once per run: an [`Origin`] (scheme, host, port: what a
//! connection is opened to) and an [`Address`] (an origin and a request target), with the
//! resolution of `Location` references a verification session follows.

use std::sync::Arc;

use http::header::HeaderValue;
use http::uri::PathAndQuery;

/// Where connections go: scheme, host and port, with what a request needs of them.
#[derive(Debug, PartialEq, Eq)]
pub struct Origin {
    pub(super) https: bool,
    pub(super) host: String,
    pub(super) port: u16,
    /// The `Host` header.
    pub(super) authority: HeaderValue,
    /// `scheme://host:port/`, to resolve unusual relative references against.
    pub(super) base: url::Url,
}

impl Origin {
    /// The origin of a URL (`http` or `https`, with a host).
    pub fn of(url: &url::Url) -> Result<Arc<Origin>, String> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("{url}: scheme {other} is neither http nor https")),
        };
        let host = url
            .host_str()
            .ok_or_else(|| format!("{url} has no host"))?
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{url} has no port"))?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let mut base = url.clone();
        base.set_path("/");
        base.set_query(None);
        base.set_fragment(None);
        Ok(Arc::new(Origin {
            https,
            authority: HeaderValue::from_str(&authority)
                .map_err(|_| format!("{url}: {authority} is not a valid Host header"))?,
            host,
            port,
            base,
        }))
    }

    /// `host:port`, as messages name it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The host without IPv6 brackets, for connecting and for TLS server names.
    pub(super) fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// A request target parsed once: an origin and a path with its query.
#[derive(Debug, Clone)]
pub struct Address {
    /// Where the connection goes.
    pub origin: Arc<Origin>,
    /// The request target sent on it.
    pub path: PathAndQuery,
}

impl Address {
    /// The address of an absolute URL.
    pub fn of(url: &url::Url) -> Result<Address, String> {
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        Ok(Address {
            origin: Origin::of(url)?,
            path: PathAndQuery::try_from(path).map_err(|e| format!("{url}: {e}"))?,
        })
    }

    /// The same origin with another absolute path (and query).
    pub fn with_path(&self, path: &str) -> Result<Address, String> {
        Ok(Address {
            origin: self.origin.clone(),
            path: PathAndQuery::try_from(path).map_err(|e| format!("{path}: {e}"))?,
        })
    }

    /// A reference (a `Location`) resolved against this address, as a browser would.
    pub fn join(&self, reference: &str) -> Result<Address, String> {
        let plain = !reference.contains("./") && !reference.contains("://");
        if plain && reference.starts_with('/') && !reference.starts_with("//") {
            return self.with_path(reference);
        }
        if plain && !reference.is_empty() && !reference.starts_with(['?', '#', '/']) {
            let dir = &self.path.path()[..=self.path.path().rfind('/').unwrap_or(0)];
            return self.with_path(&format!("{dir}{reference}"));
        }
        let here = self
            .origin
            .base
            .join(self.path.as_str())
            .map_err(|e| format!("{}: {e}", self.path))?;
        let there = here
            .join(reference)
            .map_err(|e| format!("bad reference {reference:?}: {e}"))?;
        let mut to = Address::of(&there)?;
        if *to.origin == *self.origin {
            to.origin = self.origin.clone();
        }
        Ok(to)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.origin.https { "https" } else { "http" };
        write!(
            f,
            "{scheme}://{}{}",
            self.origin.authority.to_str().unwrap_or("?"),
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(url: &str) -> Address {
        Address::of(&url::Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn references_resolve_as_a_browser_would() {
        let new_session = at("https://v.example:8443/challenge-response/v1/newSession?nonce=x");
        for (reference, want) in [
            (
                "session/1f2e",
                "https://v.example:8443/challenge-response/v1/session/1f2e",
            ),
            ("/other/place", "https://v.example:8443/other/place"),
            (
                "../v2/session/9",
                "https://v.example:8443/challenge-response/v2/session/9",
            ),
            ("http://elsewhere/s/1", "http://elsewhere/s/1"),
        ] {
            let to = new_session.join(reference).unwrap();
            assert_eq!(to.to_string(), want, "{reference}");
            let plain = url::Url::parse(&new_session.to_string())
                .unwrap()
                .join(reference)
                .unwrap();
            assert_eq!(to.to_string(), plain.as_str(), "agrees with the url crate");
        }
        let same = new_session.join("session/1").unwrap();
        assert!(
            Arc::ptr_eq(&same.origin, &new_session.origin),
            "one connection"
        );
    }

    #[test]
    fn the_host_header_carries_a_port_only_when_the_url_does() {
        assert_eq!(at("https://v.example/x").origin.authority, "v.example");
        assert_eq!(at("http://127.0.0.1:9/x").origin.authority, "127.0.0.1:9");
        assert_eq!(at("http://127.0.0.1:9/x").origin.address(), "127.0.0.1:9");
        assert_eq!(at("https://v.example/x").origin.address(), "v.example:443");
    }
}
