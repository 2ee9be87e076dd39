//! Bearer tokens of the team's cache: stored as sha256 digests, each allowed to read or to read and
//! write, optionally under a key prefix. A presented token is hashed once and compared with every
//! stored digest in constant time, whichever matches.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Access {
    Read,
    ReadWrite,
}

/// One stored token.
#[derive(Debug, Clone)]
pub struct Token {
    pub name: String,
    pub sha256: [u8; 32],
    pub access: Access,
    /// Where this token's artifacts live in the store: empty, or segments ending in `/`.
    pub prefix: String,
}

/// The tokens of one server.
#[derive(Debug, Clone, Default)]
pub struct Tokens(pub Vec<Token>);

impl Tokens {
    /// The stored token `presented` is, if any, with its index.
    pub fn check(&self, presented: &str) -> Option<(usize, &Token)> {
        let digest = sha256(presented);
        let mut found = None;
        for (index, token) in self.0.iter().enumerate() {
            // Every digest is compared, so the time does not say which one matched.
            if bool::from(token.sha256.ct_eq(&digest)) && found.is_none() {
                found = Some((index, token));
            }
        }
        found
    }
}

pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token (`nxc_` and 64 hex digits: 256 bits from the kernel).
pub fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        filled += rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(format!("nxc_{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str, access: Access) -> Token {
        Token { name: name.into(), sha256: sha256(secret), access, prefix: String::new() }
    }

    #[test]
    fn a_token_is_known_by_its_digest_only() {
        let tokens = Tokens(vec![token("ci", "s3cret", Access::ReadWrite), token("dev", "other", Access::Read)]);
        assert_eq!(tokens.check("other").map(|(i, t)| (i, t.name.as_str())), Some((1, "dev")));
        assert_eq!(tokens.check("s3cret").map(|(_, t)| t.access), Some(Access::ReadWrite));
        assert!(tokens.check("s3cre").is_none());
        assert!(tokens.check("").is_none());
    }

    #[test]
    fn generated_tokens_differ_and_carry_256_bits() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert!(a.starts_with("nxc_"));
    }
}
