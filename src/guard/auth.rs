//! Tokens and scopes. `tend.toml` holds only the SHA-256 of each token; a presented token is
//! hashed and compared against every configured digest in constant time, and the secret itself
//! is never formatted, logged or stored.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// A permission a token may hold; each mutating primitive names the one it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Stage,
    Deploy,
    Rollback,
    Prune,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Stage, Scope::Deploy, Scope::Rollback, Scope::Prune];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Stage => "stage",
            Scope::Deploy => "deploy",
            Scope::Rollback => "rollback",
            Scope::Prune => "prune",
        }
    }

    pub fn parse(text: &str) -> Result<Scope> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| Error::usage(format!("unknown scope `{text}`; scopes are stage, deploy, rollback, prune")))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SHA-256 of a token, as `tend.toml` stores it (64 lowercase hex digits).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &Token) -> Self {
        TokenDigest(Sha256::digest(token.0.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(TokenDigest(bytes))
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({})", self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TokenDigest {
    fn deserialize<D: Deserializer<'de>>(de: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        TokenDigest::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected the SHA-256 of the token as 64 hex digits, found {} characters",
                text.len()
            ))
        })
    }
}

impl Serialize for TokenDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// A secret token. It has no `Display`, its `Debug` is redacted, and it is dropped as soon as
/// its digest is known.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// A token as presented; surrounding white space (a file's trailing newline) is removed.
    pub fn new(secret: impl Into<String>) -> Self {
        Token(secret.into().trim().to_owned())
    }

    /// Reads a token from a file.
    pub fn from_file(path: &Path) -> Result<Self> {
        std::fs::read_to_string(path)
            .map(Token::new)
            .map_err(|e| Error::unauthorized(format!("cannot read token file {}: {e}", path.display())))
    }

    /// A fresh random token of 256 bits.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| Error::failed(format!("cannot get random bytes: {e}")))?;
        Ok(Token(format!("tend_{}", hex::encode(bytes))))
    }

    /// The secret, for the one place that must show it: `tend token new`.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// One `[auth] tokens` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    pub sha256: TokenDigest,
    #[serde(default)]
    pub scopes: BTreeSet<Scope>,
}

impl TokenEntry {
    /// The line to paste into `tend.toml` for this entry.
    pub fn toml_line(&self) -> String {
        let scopes: Vec<String> = self.scopes.iter().map(|s| format!("\"{s}\"")).collect();
        format!(
            "{{ name = \"{}\", sha256 = \"{}\", scopes = [{}] }}",
            self.name,
            self.sha256.to_hex(),
            scopes.join(", ")
        )
    }
}

/// Who is running: the token's name and scopes, or nobody (read-only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    name: Option<String>,
    scopes: BTreeSet<Scope>,
}

impl Principal {
    /// No token: may run read-only primitives only.
    pub fn anonymous() -> Self {
        Principal::default()
    }

    /// The token's name from `tend.toml`; the audit log records this, never the token.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn scopes(&self) -> &BTreeSet<Scope> {
        &self.scopes
    }

    /// Fails with exit 4, naming the scope, when this principal lacks it.
    pub fn require(&self, scope: Scope, what: &str) -> Result<()> {
        if self.scopes.contains(&scope) {
            return Ok(());
        }
        Err(Error::unauthorized(match &self.name {
            None => format!(
                "{what} needs a token with the `{scope}` scope; no token was given (use --token-file or TEND_TOKEN)"
            ),
            Some(name) => format!("{what} needs a token with the `{scope}` scope; token `{name}` does not have it"),
        }))
    }
}

/// Matches presented tokens against the site's digests.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    entries: Vec<TokenEntry>,
}

impl Authorizer {
    pub fn new(entries: Vec<TokenEntry>) -> Self {
        Authorizer { entries }
    }

    /// No token is an anonymous principal; an empty or unknown token is refused (exit 4).
    /// Every configured digest is compared, in constant time, whatever matched earlier.
    pub fn authenticate(&self, token: Option<&Token>) -> Result<Principal> {
        let Some(token) = token else {
            return Ok(Principal::anonymous());
        };
        if token.is_empty() {
            return Err(Error::unauthorized("the token is empty"));
        }
        let digest = TokenDigest::of(token);
        let mut found: Option<&TokenEntry> = None;
        for entry in &self.entries {
            if bool::from(entry.sha256.0.ct_eq(&digest.0)) && found.is_none() {
                found = Some(entry);
            }
        }
        match found {
            Some(entry) => Ok(Principal { name: Some(entry.name.clone()), scopes: entry.scopes.clone() }),
            None => Err(Error::unauthorized("the token does not match any token in [auth]")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: &Token, scopes: &[Scope]) -> TokenEntry {
        TokenEntry { name: "cron".into(), sha256: TokenDigest::of(token), scopes: scopes.iter().copied().collect() }
    }

    #[test]
    fn digest_matches_sha256sum_of_the_token_string() {
        // printf %s abc | sha256sum
        let d = TokenDigest::of(&Token::new("abc"));
        assert_eq!(d.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn right_token_gets_its_scopes_and_nothing_else() {
        let token = Token::generate().unwrap();
        let auth = Authorizer::new(vec![entry(&token, &[Scope::Stage])]);
        let who = auth.authenticate(Some(&token)).unwrap();
        assert_eq!(who.name(), Some("cron"));
        assert!(who.require(Scope::Stage, "stage").is_ok());
        let err = who.require(Scope::Deploy, "swap").unwrap_err();
        assert_eq!(err.message(), "swap needs a token with the `deploy` scope; token `cron` does not have it");
        assert_eq!(err.exit_code(), 4);
    }

    #[test]
    fn wrong_empty_and_prefix_tokens_are_refused() {
        let token = Token::generate().unwrap();
        let auth = Authorizer::new(vec![entry(&token, &Scope::ALL)]);
        let prefix = Token::new(&token.reveal()[..20]);
        for bad in [Token::new("nope"), Token::new(""), prefix] {
            let err = auth.authenticate(Some(&bad)).unwrap_err();
            assert_eq!(err.exit_code(), 4);
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = Token::new("s3cret-value");
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
