//! The admin token. When ShardScope is reachable beyond loopback (or when a
//! token is given), administration (add or remove a node, change the
//! algorithm) and the embedded registry's writes need it; key operations and
//! reads do not. It is a [`Token`] and travels as Consul's do
//! (`Authorization: Bearer`, `X-Consul-Token`, or `?token=` for the page's
//! WebSocket; see [`shardscope_consul::token`]). This module decides when
//! there is one.
//!
//! The node token: `serve`'s embedded registry always guards the storage
//! nodes' registrations and ShardScope's KV (`shardscope/`) with a second
//! token, made on the first start and kept (mode 0600) in
//! `DATA_DIR/registry/token`, so no other local process can register an
//! impostor node. The nodes `serve` launches get it as `CONSUL_HTTP_TOKEN`;
//! one started by hand reads it with `CONSUL_HTTP_TOKEN_FILE`.

use std::path::{Path, PathBuf};

use shardscope_consul::token::Token;

/// The node token's file in the embedded registry's data dir.
pub const NODE_TOKEN_FILE: &str = "token";

/// Environment variable the commands read the token from.
pub const ENV: &str = "SHARDSCOPE_ADMIN_TOKEN";

/// Whether `bind` keeps a listener on this machine (127.0.0.0/8, ::1, localhost).
pub use shardscope_consul::api::is_loopback;

/// The token a server bound on `bind` uses: the one given (an empty one is
/// an error), else a fresh random one when `bind` is not loopback (the
/// `bool` says it was generated, so the caller prints it), else none.
pub fn resolve(bind: &str, given: Option<&str>) -> anyhow::Result<Option<(Token, bool)>> {
    match given {
        Some("") => anyhow::bail!("the admin token is empty; give a non-empty --admin-token or {ENV}"),
        Some(t) => Ok(Some((Token::new(t), false))),
        None if is_loopback(bind) => Ok(None),
        None => Ok(Some((Token::generate()?, true))),
    }
}

/// The embedded registry's node token, kept in `registry_dir`
/// ([`NODE_TOKEN_FILE`]), and the file's path; made the first time.
pub fn node_token(registry_dir: &Path) -> anyhow::Result<(Token, PathBuf)> {
    let path = registry_dir.join(NODE_TOKEN_FILE);
    let valid = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic());
    let make = || Ok(Token::generate()?.as_str().to_string());
    let token = shardscope_consul::file::load_or_make(&path, "registry node token", 0o600, valid, make)?;
    Ok((Token::new(&token), std::path::absolute(&path).unwrap_or(path)))
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
