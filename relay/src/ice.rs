//! ICE servers handed to each browser: STUN URLs as configured, and TURN URLs with short-lived
//! credentials minted per the TURN REST API convention that coturn's `use-auth-secret` checks:
//! username `expiry:id`, password base64(HMAC-SHA1(secret, username)).

use escalera_protocol::IceServer;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The ICE part of the configuration.
#[derive(Clone, Debug, Default)]
pub struct IceConfig {
    /// `stun:` URLs.
    pub stun: Vec<String>,
    /// `turn:` / `turns:` URLs.
    pub turn: Vec<String>,
    /// The secret shared with the TURN server (coturn `static-auth-secret`).
    pub turn_secret: Option<String>,
    /// How long minted credentials last, in seconds.
    pub turn_ttl_secs: u64,
}

impl IceConfig {
    /// The servers for one client at `now_secs`; `who` goes into the TURN username.
    pub fn servers(&self, now_secs: u64, who: &str) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun.is_empty() {
            servers.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if !self.turn.is_empty() {
            let (username, credential) = match &self.turn_secret {
                Some(secret) => {
                    let (u, c) = turn_credential(secret, now_secs + self.turn_ttl_secs, who);
                    (Some(u), Some(c))
                }
                None => (None, None),
            };
            servers.push(IceServer {
                urls: self.turn.clone(),
                username,
                credential,
            });
        }
        servers
    }
}

/// A TURN REST API credential valid until `expiry` (Unix seconds).
pub fn turn_credential(secret: &str, expiry: u64, who: &str) -> (String, String) {
    let username = format!("{expiry}:{who}");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let password = base64(&mac.finalize().into_bytes());
    (username, password)
}

/// Standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_matches_a_known_vector() {
        // python3: base64(hmac.new(b"north", b"1700003600:alice", sha1).digest())
        let (user, pass) = turn_credential("north", 1_700_003_600, "alice");
        assert_eq!(user, "1700003600:alice");
        assert_eq!(pass, "wjwSXO2ch1B6VaLTLMy2Avn5O9o=");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn servers_from_config() {
        let cfg = IceConfig {
            stun: vec!["stun:127.0.0.1:3478".into()],
            turn: vec!["turn:127.0.0.1:3478".into()],
            turn_secret: Some("north".into()),
            turn_ttl_secs: 3600,
        };
        let s = cfg.servers(1_700_000_000, "alice");
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].username.as_deref(), Some("1700003600:alice"));
        assert_eq!(
            s[1].credential.as_deref(),
            Some("wjwSXO2ch1B6VaLTLMy2Avn5O9o=")
        );
        assert!(IceConfig::default().servers(0, "x").is_empty());
    }
}
