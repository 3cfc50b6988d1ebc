//! The admin token. When ShardScope is reachable beyond loopback (or when a
//! token is given), administration (add or remove a node, change the
//! algorithm) and the embedded registry's writes need it; key operations and
//! reads do not. It is sent as `Authorization: Bearer TOKEN`, as Consul's
//! `X-Consul-Token: TOKEN`, or as `?token=TOKEN` (the page's WebSocket).

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderMap;

/// Environment variable the commands read the token from.
pub const ENV: &str = "SHARDSCOPE_ADMIN_TOKEN";

/// A token to check requests against; cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: &str) -> Self {
        Token(token.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token (compared in constant time).
    pub fn accepts(&self, presented: Option<&str>) -> bool {
        let Some(presented) = presented else { return false };
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Whether `bind` keeps a listener on this machine (127.0.0.0/8, ::1, localhost).
pub fn is_loopback(bind: &str) -> bool {
    bind.eq_ignore_ascii_case("localhost") || bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The token a server bound on `bind` uses: the one given (an empty one is
/// an error), else a fresh random one when `bind` is not loopback (the
/// `bool` says it was generated, so the caller prints it), else none.
pub fn resolve(bind: &str, given: Option<&str>) -> anyhow::Result<Option<(Token, bool)>> {
    match given {
        Some("") => anyhow::bail!("the admin token is empty; give a non-empty --admin-token or {ENV}"),
        Some(t) => Ok(Some((Token::new(t), false))),
        None if is_loopback(bind) => Ok(None),
        None => Ok(Some((generate()?, true))),
    }
}

/// 128 random bits, as 32 hex digits.
fn generate() -> anyhow::Result<Token> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for an admin token: {e}"))?;
    Ok(Token::new(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// The token a request carries: `Authorization: Bearer`, `X-Consul-Token`,
/// or the `token` query parameter (percent-decoded).
pub fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let from_header =
        header("authorization").and_then(|v| v.strip_prefix("Bearer ")).or_else(|| header("x-consul-token"));
    match from_header {
        Some(t) => Some(t.to_string()),
        None => form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_binds_need_no_token_and_others_get_one() {
        for bind in ["127.0.0.1", "127.0.0.2", "::1", "localhost"] {
            assert_eq!(resolve(bind, None).unwrap(), None, "{bind}");
        }
        for bind in ["0.0.0.0", "::", "192.168.1.5", "my-host.example"] {
            let (token, generated) = resolve(bind, None).unwrap().expect("a token");
            assert!(generated);
            assert_eq!(token.as_str().len(), 32);
            assert_ne!(resolve(bind, None).unwrap().unwrap().0, token, "fresh each time");
        }
        assert_eq!(resolve("127.0.0.1", Some("s3")).unwrap(), Some((Token::new("s3"), false)));
        assert!(resolve("0.0.0.0", Some("")).is_err());
    }

    #[test]
    fn tokens_are_read_from_headers_or_the_query() {
        let token = Token::new("s3cret");
        let mut headers = HeaderMap::new();
        assert!(!token.accepts(presented(&headers, None).as_deref()));
        assert!(token.accepts(presented(&headers, Some("a=1&token=s3cret")).as_deref()));
        assert!(!token.accepts(presented(&headers, Some("token=s3cre")).as_deref()));
        let odd = Token::new("a b&c");
        assert!(odd.accepts(presented(&headers, Some("token=a%20b%26c")).as_deref()));
        headers.insert("x-consul-token", "s3cret".parse().unwrap());
        assert!(token.accepts(presented(&headers, None).as_deref()));
        headers.insert("authorization", "Bearer wrong".parse().unwrap());
        assert!(!token.accepts(presented(&headers, None).as_deref()), "the bearer token is the one presented");
    }
}
