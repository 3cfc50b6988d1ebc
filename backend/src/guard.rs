//! Browser-side safety of every HTTP listener `shardscope` runs (the
//! backend's and the embedded registry's): another site's page may not read
//! or drive the cluster through the user's browser. Checked on each request,
//! in this order, before any handler runs:
//!
//! 1. **Host** (DNS rebinding: an attacker's name re-resolved to this
//!    machine makes the attacker's page same-origin): an IP literal (v4 or
//!    `[v6]`, any port), `localhost` or `*.localhost`, the name `--bind`
//!    gave, or a name listed with `--allowed-host`; else 403. A request with
//!    no Host at all (HTTP/1.0) passes: browsers always send one, and a
//!    client that is not a browser can send any Host it likes anyway.
//! 2. **Origin**, on a WebSocket upgrade and on every method but GET, HEAD
//!    and OPTIONS (cross-site WebSocket hijacking, CSRF): when sent, it must
//!    be `http://` + the request's Host or listed with `--allowed-origin`;
//!    else 403. Without an Origin, a `Sec-Fetch-Site` other than
//!    `same-origin` or `none` is refused too; with neither (curl, the CLI,
//!    nodes) the request passes (the admin token still applies).
//! 3. **POST** must be a request no page can send across sites without a
//!    CORS preflight (which these servers never grant): `Content-Type:
//!    application/json` or the header [`WRITE_HEADER`]; else 415. PUT and
//!    DELETE are preflighted by their method already.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// The header that makes a POST one no other site's page can send without
/// a preflight: `X-ShardScope: 1` (any value).
pub const WRITE_HEADER: &str = "x-shardscope";

/// What [`Guard::wrap`]ped routers accept beyond IP addresses and localhost.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    hosts: Arc<[Authority]>,
    origins: Arc<[Origin]>,
}

/// A `Host` as compared: the name lowercased, without brackets or a
/// trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

/// An `Origin` as compared: scheme and host lowercased, the port explicit.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// Why a request was refused; its text names the flag that would allow it.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Host(String),
    Origin { origin: String, expected: String },
    CrossSite(String),
    SimplePost,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Host(host) => write!(
                f,
                "Host {host:?} is refused: this server answers to IP addresses, localhost and the names \
                 given with --allowed-host (a defence against DNS rebinding). If that name is yours, \
                 start it with --allowed-host {}",
                host_name(host)
            ),
            Refusal::Origin { origin, expected } => write!(
                f,
                "Origin {origin:?} is not this server's ({expected}): a page from another origin may not \
                 open the WebSocket or change anything. If that page is yours, start the server with \
                 --allowed-origin {origin}"
            ),
            Refusal::CrossSite(site) => write!(
                f,
                "Sec-Fetch-Site: {site} without an Origin: a page from another site may not open the \
                 WebSocket or change anything"
            ),
            Refusal::SimplePost => write!(
                f,
                "a POST needs Content-Type: application/json or the header X-ShardScope: 1 (requests \
                 another site's page cannot send), e.g. curl -X POST -H 'X-ShardScope: 1' URL"
            ),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self {
            Refusal::SimplePost => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::FORBIDDEN,
        };
        let headers =
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")];
        (status, headers, format!("{self}\n")).into_response()
    }
}

/// The name part of a Host, for the hint (the whole value if it is not one).
fn host_name(host: &str) -> String {
    parse_authority(host).map(|a| a.host).unwrap_or_else(|| host.to_string())
}

impl Guard {
    /// A guard for a server bound on `bind` (a name there is allowed too),
    /// allowing `hosts` (`NAME` or `NAME:PORT`) and `origins`
    /// (`scheme://host[:port]`). A value that is neither is an error.
    pub fn new(bind: &str, hosts: &[String], origins: &[String]) -> anyhow::Result<Guard> {
        let mut allowed = Vec::with_capacity(hosts.len() + 1);
        for host in hosts {
            match parse_authority(host) {
                Some(a) => allowed.push(a),
                None => anyhow::bail!("--allowed-host {host:?} is not a host name (NAME or NAME:PORT)"),
            }
        }
        if let Some(a) = parse_authority(bind).filter(|a| a.host.parse::<IpAddr>().is_err()) {
            allowed.push(a);
        }
        let origins = origins
            .iter()
            .map(|o| {
                parse_origin(o.strip_suffix('/').unwrap_or(o))
                    .ok_or_else(|| anyhow::anyhow!("--allowed-origin {o:?} is not an origin like http://host:port"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Guard { hosts: allowed.into(), origins: origins.into() })
    }

    /// `router` with every route (and its fallback) behind the checks.
    pub fn wrap<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), guard))
    }

    /// The checks of this module's doc comment, for one request.
    pub fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = match headers.get(header::HOST) {
            Some(value) => {
                Some(value.to_str().map_err(|_| Refusal::Host(String::from_utf8_lossy(value.as_bytes()).into()))?)
            }
            None => None,
        };
        // An absolute-form target (`GET http://name/ HTTP/1.1`) names a host too.
        let target = uri.authority().map(|a| a.as_str());
        for name in host.iter().chain(target.iter()) {
            if !parse_authority(name).is_some_and(|a| self.allows_host(&a)) {
                return Err(Refusal::Host(name.to_string()));
            }
        }
        let upgrade = headers.contains_key(header::UPGRADE);
        let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if upgrade || changes {
            self.check_origin(host.or(target), headers)?;
        }
        if *method == Method::POST && !non_simple(headers) {
            return Err(Refusal::SimplePost);
        }
        Ok(())
    }

    fn allows_host(&self, a: &Authority) -> bool {
        a.host.parse::<IpAddr>().is_ok()
            || a.host == "localhost"
            || a.host.ends_with(".localhost")
            || self.hosts.iter().any(|h| h.host == a.host && h.port.is_none_or(|p| a.port == Some(p)))
    }

    /// The Origin (or, without one, `Sec-Fetch-Site`) of a guarded request.
    fn check_origin(&self, host: Option<&str>, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(value) = headers.get(header::ORIGIN) else {
            return match headers.get("sec-fetch-site").map(|v| v.to_str().unwrap_or("?")) {
                None | Some("same-origin" | "none") => Ok(()),
                Some(site) => Err(Refusal::CrossSite(site.to_string())),
            };
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let origin = value.to_str().ok().and_then(parse_origin);
        let own = host.and_then(parse_authority).map(|a| Origin { scheme: "http".into(), host: a.host, port: a.port });
        let matches =
            |o: &Origin| own.as_ref().is_some_and(|own| own.same(o)) || self.origins.iter().any(|a| a.same(o));
        match origin {
            Some(o) if matches(&o) => Ok(()),
            _ => Err(Refusal::Origin {
                origin: text.into_owned(),
                expected: host.map_or_else(|| "no Host was sent".into(), |h| format!("http://{h}")),
            }),
        }
    }
}

impl Origin {
    /// Same scheme, host and port (the scheme's default when none is given).
    fn same(&self, other: &Origin) -> bool {
        self.scheme == other.scheme && self.host == other.host && self.effective_port() == other.effective_port()
    }

    fn effective_port(&self) -> Option<u16> {
        self.port.or(match self.scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        })
    }
}

async fn guard(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    match guard.check(req.method(), req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            tracing::debug!(method = %req.method(), uri = %req.uri(), "refused: {refusal}");
            refusal.into_response()
        }
    }
}

/// Whether a POST carries what only a preflighted request can.
fn non_simple(headers: &HeaderMap) -> bool {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    json || headers.contains_key(WRITE_HEADER)
}

/// `host[:port]`, `[v6][:port]`: a name of letters, digits, `-`, `_`, `.`
/// (or a bracketed IPv6 address); `None` for anything else.
fn parse_authority(text: &str) -> Option<Authority> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        (v6, after)
    } else {
        match text.find(':') {
            Some(i) => text.split_at(i),
            None => (text, ""),
        }
    };
    let port = match port {
        "" => None,
        p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    (!host.is_empty() && host.chars().all(name_char)).then_some(Authority { host, port })
}

/// `scheme://host[:port]` (an Origin header: no path); `None` for `null`
/// and anything else.
fn parse_origin(text: &str) -> Option<Origin> {
    let (scheme, authority) = text.split_once("://")?;
    let scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    if scheme.is_empty() || !scheme.chars().all(scheme_char) {
        return None;
    }
    let Authority { host, port } = parse_authority(authority)?;
    Some(Origin { scheme: scheme.to_ascii_lowercase(), host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn check(guard: &Guard, method: Method, pairs: &[(&str, &str)]) -> Result<(), Refusal> {
        guard.check(&method, &Uri::from_static("/nodes"), &headers(pairs))
    }

    #[test]
    fn hosts_ip_literals_localhost_and_listed_names_pass_others_are_refused() {
        let guard = Guard::new("0.0.0.0", &["kv.example".into(), "pinned.example:8080".into()], &[]).unwrap();
        for host in [
            "127.0.0.1:8080",
            "192.168.1.5",
            "[::1]:8080",
            "[fe80::1]",
            "localhost:1",
            "LOCALHOST",
            "app.localhost:9",
            "localhost.",
            "kv.example:1234",
            "KV.Example.",
            "pinned.example:8080",
        ] {
            assert_eq!(check(&guard, Method::GET, &[("host", host)]), Ok(()), "{host}");
        }
        for host in [
            "evil.example:8080",
            "pinned.example:8081",
            "pinned.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "[not-v6]:80",
            "::1",
            "a b",
            "evil@127.0.0.1",
            "127.0.0.1:99999",
            "",
        ] {
            assert!(matches!(check(&guard, Method::GET, &[("host", host)]), Err(Refusal::Host(_))), "{host}");
        }
        // No Host at all (HTTP/1.0) passes; an absolute-form target is checked too.
        assert_eq!(check(&guard, Method::GET, &[]), Ok(()));
        let absolute = Uri::from_static("http://evil.example/kv");
        assert!(guard.check(&Method::GET, &absolute, &headers(&[("host", "127.0.0.1")])).is_err());
        // A bind by name allows that name.
        let named = Guard::new("my-box.lan", &[], &[]).unwrap();
        assert_eq!(check(&named, Method::GET, &[("host", "my-box.lan:8080")]), Ok(()));
        assert!(Guard::new("127.0.0.1", &["http://x/".into()], &[]).is_err());
        assert!(Guard::new("127.0.0.1", &[], &["not an origin".into()]).is_err());
    }

    #[test]
    fn upgrades_and_writes_need_their_own_origin_or_a_listed_one() {
        let guard = Guard::new("127.0.0.1", &[], &["https://dash.example/".into()]).unwrap();
        let ws = |origin: &str| {
            let mut pairs = vec![("host", "127.0.0.1:8080"), ("upgrade", "websocket")];
            pairs.extend((!origin.is_empty()).then_some(("origin", origin)));
            check(&guard, Method::GET, &pairs)
        };
        assert_eq!(ws(""), Ok(()), "no Origin: not a browser");
        assert_eq!(ws("http://127.0.0.1:8080"), Ok(()));
        assert_eq!(ws("https://dash.example"), Ok(()));
        assert_eq!(ws("https://dash.example:443"), Ok(()));
        for foreign in
            ["http://evil.example", "http://127.0.0.1:8081", "https://127.0.0.1:8080", "null", "http://dash.example"]
        {
            assert!(matches!(ws(foreign), Err(Refusal::Origin { .. })), "{foreign}");
        }
        // Default ports: http://localhost is Host `localhost`.
        let local = [("host", "localhost"), ("origin", "http://localhost:80"), ("x-shardscope", "1")];
        assert_eq!(check(&guard, Method::POST, &local), Ok(()));
        // Writes: DELETE with a foreign Origin, or cross-site without one.
        let foreign = [("host", "127.0.0.1:8080"), ("origin", "http://evil.example")];
        assert!(matches!(check(&guard, Method::DELETE, &foreign), Err(Refusal::Origin { .. })));
        let cross = [("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")];
        assert!(matches!(check(&guard, Method::PUT, &cross), Err(Refusal::CrossSite(_))));
        assert_eq!(
            check(&guard, Method::PUT, &[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-origin")]),
            Ok(())
        );
        // Reads are not checked for Origin (the browser keeps the answer from a foreign page).
        assert_eq!(check(&guard, Method::GET, &foreign), Ok(()));
    }

    #[test]
    fn a_post_must_be_one_that_needs_a_preflight() {
        let guard = Guard::default();
        let host = ("host", "127.0.0.1:8080");
        for simple in [
            vec![host],
            vec![host, ("content-type", "text/plain")],
            vec![host, ("content-type", "application/x-www-form-urlencoded")],
        ] {
            assert_eq!(check(&guard, Method::POST, &simple), Err(Refusal::SimplePost));
        }
        assert_eq!(check(&guard, Method::POST, &[host, ("content-type", "Application/JSON; charset=utf-8")]), Ok(()));
        assert_eq!(check(&guard, Method::POST, &[host, ("x-shardscope", "1")]), Ok(()));
        assert_eq!(check(&guard, Method::PUT, &[host, ("content-type", "text/plain")]), Ok(()));
    }
}
