//! The admin token. When ShardScope is reachable beyond loopback (or when a
//! token is given), administration (add or remove a node, change the
//! algorithm) and the embedded registry's writes need it; key operations and
//! reads do not. It is a [`Token`] and travels as Consul's do
//! (`Authorization: Bearer`, `X-Consul-Token`, or `?token=` for the page's
//! WebSocket; see [`shardscope_consul::token`]). This module decides when
//! there is one.

use std::net::IpAddr;

use shardscope_consul::token::Token;

/// Environment variable the commands read the token from.
pub const ENV: &str = "SHARDSCOPE_ADMIN_TOKEN";

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
}
