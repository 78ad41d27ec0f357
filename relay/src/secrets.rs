//! Random ids, token hashes and password hashes.

use sha2::{Digest, Sha256};

/// `bytes` random bytes from the OS as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    hex(&buf)
}

/// A 128-bit random id (conversation, site key, agent).
pub fn random_id() -> String {
    random_hex(16)
}

/// A 256-bit random bearer secret (visitor token, session).
pub fn random_token() -> String {
    random_hex(32)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// How bearer secrets are kept in the store: their SHA-256, so a leaked database leaks no
/// usable token. (They are 256 random bits, so no salt or slow hash is needed.)
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random source failed");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with default parameters")
        .to_string()
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    verify_password_in(password, hash, &mut Vec::new())
}

/// [`verify_password`] in `memory`, grown to what the hash's parameters need and kept for the
/// next call: argon2's 19 MiB is allocated once per hashing slot instead of once per login,
/// so the allocator never collects dozens of them.
pub fn verify_password_in(password: &str, hash: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::{Output, PasswordHash};
    use argon2::{Algorithm, Argon2, Params, Version};
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (phc.hash, phc.salt) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(phc.algorithm), Params::try_from(&phc))
    else {
        return false;
    };
    let version = match phc.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_err()
    {
        return false;
    }
    // `Output`'s comparison takes the same time wherever the bytes differ.
    Output::new(&out).is_ok_and(|o| o == expected)
}

/// The identity hash a site's server makes of a user's id: hex HMAC-SHA256 keyed by the
/// site's identity secret as shown (its ASCII bytes).
pub fn identity_hash(secret: &str, user_id: &str) -> String {
    use hmac::Mac;
    hex(&identity_mac(secret, user_id).finalize().into_bytes())
}

fn identity_mac(secret: &str, user_id: &str) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(user_id.as_bytes());
    mac
}

/// Whether `hash` (hex, either case) is the identity hash of `user_id` under `secret`, compared
/// in constant time. An empty secret verifies nothing.
pub fn verify_identity(secret: &str, user_id: &str, hash: &str) -> bool {
    use hmac::Mac;
    if secret.is_empty() || hash.len() != 64 || !hash.is_ascii() {
        return false;
    }
    let Some(bytes) = (0..32)
        .map(|i| u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    identity_mac(secret, user_id).verify_slice(&bytes).is_ok()
}

/// A readable random password for the first agent: 16 characters from a 56-letter alphabet
/// without look-alikes (about 93 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    // 256 % 57 bias is negligible for a one-off demo password.
    buf.iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_hashes_match_rfc_4231_and_verify_only_themselves() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let hash = identity_hash("Jefe", "what do ya want for nothing?");
        assert_eq!(
            hash,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_identity(
            "Jefe",
            "what do ya want for nothing?",
            &hash
        ));
        assert!(verify_identity(
            "Jefe",
            "what do ya want for nothing?",
            &hash.to_uppercase()
        ));
        assert!(!verify_identity(
            "Jefe",
            "what do ya want for nothing!",
            &hash
        ));
        assert!(!verify_identity(
            "Jeff",
            "what do ya want for nothing?",
            &hash
        ));
        assert!(!verify_identity(
            "Jefe",
            "what do ya want for nothing?",
            &hash[..62]
        ));
        assert!(!verify_identity("", "x", &identity_hash("", "x")));
        assert!(!verify_identity("Jefe", "x", &"é".repeat(32)));
    }

    #[test]
    fn ids_are_128_bits_and_distinct() {
        let a = random_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_id());
        assert_eq!(random_token().len(), 64);
    }

    #[test]
    fn token_hash_is_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn passwords_verify() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_eq!(generate_password().len(), 16);
    }

    #[test]
    fn verifying_in_kept_memory_agrees_with_argon2_and_reuses_it() {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let h = hash_password("correct horse");
        // A hash with other parameters (less memory, more passes) verifies too.
        let other = {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let params = argon2::Params::new(8 * 1024, 3, 1, None).unwrap();
            let argon = argon2::Argon2::new(Default::default(), Default::default(), params);
            let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
            argon
                .hash_password(b"correct horse", &salt)
                .unwrap()
                .to_string()
        };
        let mut memory = Vec::new();
        for hash in [&h, &other] {
            for password in ["correct horse", "correct horsf", ""] {
                let theirs = argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &PasswordHash::new(hash).unwrap())
                    .is_ok();
                assert_eq!(verify_password_in(password, hash, &mut memory), theirs);
            }
        }
        // Grown once to the default's 19 MiB, and kept.
        assert_eq!(memory.len(), argon2::Params::default().block_count());
    }
}
