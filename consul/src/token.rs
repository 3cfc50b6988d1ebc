//! A token as Consul's HTTP API carries it: `X-Consul-Token: TOKEN`,
//! `Authorization: Bearer TOKEN`, or `?token=TOKEN`. The embedded registry
//! checks its writes against one; the backend's admin token is the same
//! kind of value, so one token guards administration and registry writes.
//! Fresh tokens (and other random ids) come from [`random_hex`].

use std::sync::Arc;

use axum::http::HeaderMap;

/// A token to check requests against; cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: &str) -> Self {
        Token(token.into())
    }

    /// A fresh token: 128 random bits as 32 hex digits.
    pub fn generate() -> anyhow::Result<Self> {
        Ok(Token::new(&random_hex(16)?))
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

/// `bytes` random bytes from the system, as hex digits.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness from the system: {e}"))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
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
